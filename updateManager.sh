#!/usr/bin/env bash
# updater-wrapper: v1
# updateManager.sh — updater's own wrapper, with the upstream wrapper's options (SPEC §2, §10).
# The line above marks this file as updater's wrapper: installing the framework never replaces a
# file that carries it.
#
#   updateManager.sh                      full update        (updater sync --run enabled)
#   updateManager.sh --full               the same (the admin UI's cron line)
#   updateManager.sh --check              detect only        (updater check)
#   updateManager.sh --legacy             manifest mode      (updater legacy)
#   updateManager.sh --enable M           updater --enable-module M
#   updateManager.sh --disable M          updater --disable-module M
#   updateManager.sh --status [M]         updater --module-status M  /  --all-status
#   updateManager.sh --enable-component M C    / --disable-component M C
#   updateManager.sh --list-modules       updater --list-modules
#   updateManager.sh --set-module-branch M B
#   updateManager.sh --help | -h          this help
#
# When this script stands in an install root (beside modules/, .updater/ or index.json, and not
# in updater's source tree), it passes `--modules-path <its directory>` to the binary, unless
# UPDATER_ARGS names one.
#
# Full and legacy runs send all their output to $UPDATER_LOG_FILE (default
# /var/log/homeserver/update.log, created 0664 if missing, truncated first): the admin UI's only
# view of progress. If it cannot be opened, the output stays where it was.
#
# Environment:
#   UPDATER_BIN       path of the updater binary (default: `updater` on PATH, else
#                     target/release/updater or target/debug/updater next to this script)
#   UPDATER_ARGS      extra options passed to the binary, split on whitespace,
#                     e.g. UPDATER_ARGS="--modules-path /srv/updates --branch stable"
#   UPDATER_LOG_FILE  the log of full and legacy runs (default /var/log/homeserver/update.log)
#
# The binary's exit code is passed through; the last line is `✓ Update system completed
# successfully` or `✗ Update system failed with exit code N`. `--check` exits 100 when run with
# UPDATER_ARGS=--exit-code and updates are available; that is a successful check.
set -u

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
log_file=${UPDATER_LOG_FILE:-/var/log/homeserver/update.log}

usage() {
    cat <<USAGE
Usage: $(basename -- "$0") [OPTION]

Update operations:
  (no option), --full   run a full update (updater sync --run enabled)
  --check               only report which modules need an update (updater check)
  --legacy              run the legacy manifest mode (updater legacy)
  -h, --help            show this help and exit

Module management:
  --enable MODULE                      enable a module
  --disable MODULE                     disable a module (hold it at its version)
  --enable-component MODULE COMPONENT  enable a component of a module
  --disable-component MODULE COMPONENT disable a component of a module
  --list-modules                       list installed modules
  --set-module-branch MODULE BRANCH    set a module's source branch (checked on its remote)
  --status [MODULE]                    status of one module, or of all

Full and legacy runs write their output to $log_file.

Environment:
  UPDATER_BIN       the updater binary to run (default: updater on PATH,
                    else target/release/updater or target/debug/updater here)
  UPDATER_ARGS      extra options for the binary, e.g. "--modules-path /srv/updates"
  UPDATER_LOG_FILE  the log of full and legacy runs
USAGE
}

usage_error() {
    echo "Error: $1" >&2
    usage >&2
    exit 1
}

find_updater() {
    if [ -n "${UPDATER_BIN:-}" ]; then
        printf '%s\n' "$UPDATER_BIN"
        return 0
    fi
    if command -v updater >/dev/null 2>&1; then
        command -v updater
        return 0
    fi
    local candidate
    for candidate in "$script_dir/target/release/updater" "$script_dir/target/debug/updater"; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# An operand: present, and not an option.
operand() {
    [ "$#" -ge 1 ] && [ -n "$1" ] && [ "${1#-}" = "$1" ]
}

args=()
mode=manage
case "${1-}" in
    "" | --full)
        [ "$#" -le 1 ] || usage_error "too many arguments: $*"
        mode=full
        args=(sync --run enabled)
        ;;
    --check)
        [ "$#" -eq 1 ] || usage_error "too many arguments: $*"
        mode=check
        args=(check)
        ;;
    --legacy)
        [ "$#" -eq 1 ] || usage_error "too many arguments: $*"
        mode=legacy
        args=(legacy)
        ;;
    -h | --help)
        [ "$#" -eq 1 ] || usage_error "too many arguments: $*"
        usage
        exit 0
        ;;
    --enable | --disable)
        { [ "$#" -eq 2 ] && operand "$2"; } || usage_error "$1 requires a module name"
        args=("$1-module" "$2")
        ;;
    --enable-component | --disable-component)
        { [ "$#" -eq 3 ] && operand "$2" && operand "$3"; } \
            || usage_error "$1 requires a module and a component name"
        args=("$1" "$2" "$3")
        ;;
    --set-module-branch)
        { [ "$#" -eq 3 ] && operand "$2" && operand "$3"; } \
            || usage_error "$1 requires a module name and a branch"
        args=("$1" "$2" "$3")
        ;;
    --list-modules)
        [ "$#" -eq 1 ] || usage_error "too many arguments: $*"
        args=(--list-modules)
        ;;
    --status)
        if [ "$#" -eq 1 ]; then
            args=(--all-status)
        elif [ "$#" -eq 2 ] && operand "$2"; then
            args=(--module-status "$2")
        else
            usage_error "--status takes at most one module name"
        fi
        ;;
    *)
        usage_error "unknown option: $1"
        ;;
esac

extra_args=()
if [ -n "${UPDATER_ARGS:-}" ]; then
    # Word-splitting is intended here; globbing is not.
    read -r -a extra_args <<<"$UPDATER_ARGS"
fi

# The install root this wrapper stands in (updater's own source tree is not one).
names_modules_path=no
for a in ${extra_args[@]+"${extra_args[@]}"}; do
    case "$a" in --modules-path | --modules-path=*) names_modules_path=yes ;; esac
done
if [ "$names_modules_path" = no ] && [ ! -e "$script_dir/Cargo.toml" ] \
    && { [ -d "$script_dir/modules" ] || [ -d "$script_dir/.updater" ] || [ -f "$script_dir/index.json" ]; }; then
    args+=(--modules-path "$script_dir")
fi

# Full and legacy runs: all output to the log file the admin UI reads.
if [ "$mode" = full ] || [ "$mode" = legacy ]; then
    log_dir=$(dirname -- "$log_file")
    mkdir -p -- "$log_dir" 2>/dev/null || true
    if [ ! -e "$log_file" ]; then
        (umask 002 && : >>"$log_file") 2>/dev/null && chmod 0664 -- "$log_file" 2>/dev/null
    fi
    if { : >"$log_file"; } 2>/dev/null; then
        exec >>"$log_file" 2>&1
    else
        echo "Warning: cannot write $log_file; output stays here" >&2
    fi
fi

if ! updater_bin=$(find_updater); then
    echo "Error: updater binary not found (set UPDATER_BIN, put updater on PATH, or run cargo build)" >&2
    echo "✗ Update system failed with exit code 127"
    exit 127
fi

"$updater_bin" "${args[@]}" ${extra_args[@]+"${extra_args[@]}"}
status=$?

if [ "$status" -eq 0 ] || { [ "$mode" = check ] && [ "$status" -eq 100 ]; }; then
    echo "✓ Update system completed successfully"
else
    echo "✗ Update system failed with exit code $status"
fi
exit "$status"
