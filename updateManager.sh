#!/usr/bin/env bash
# updateManager.sh — compatibility wrapper around the `updater` binary (SPEC §2).
#
#   updateManager.sh            full schema-based update   (updater sync)
#   updateManager.sh --check    detect only                (updater check)
#   updateManager.sh --legacy   manifest mode              (updater legacy)
#   updateManager.sh --help     this help
#
# Environment:
#   UPDATER_BIN   path of the updater binary (default: `updater` on PATH, else
#                 target/release/updater or target/debug/updater next to this script)
#   UPDATER_ARGS  extra options passed to the binary, split on whitespace,
#                 e.g. UPDATER_ARGS="--modules-path /srv/updates --branch stable"
#
# The binary's exit code is passed through. `--check` exits 100 when run with
# UPDATER_ARGS=--exit-code and updates are available; that is a successful check.
set -u

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<USAGE
Usage: $(basename -- "$0") [--check | --legacy | --help]

  (no option)   run a full update (updater sync)
  --check       only report which modules need an update (updater check)
  --legacy      run the legacy manifest mode (updater legacy)
  -h, --help    show this help and exit

Environment:
  UPDATER_BIN   the updater binary to run (default: updater on PATH,
                else target/release/updater or target/debug/updater here)
  UPDATER_ARGS  extra options for the binary, e.g. "--modules-path /srv/updates"
USAGE
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

if [ "$#" -gt 1 ]; then
    echo "Error: too many arguments: $*" >&2
    usage >&2
    exit 1
fi

command_name=sync
case "${1-}" in
    "") command_name=sync ;;
    --check) command_name=check ;;
    --legacy) command_name=legacy ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "Error: unknown option: $1" >&2
        usage >&2
        exit 1
        ;;
esac

if ! updater_bin=$(find_updater); then
    echo "Error: updater binary not found (set UPDATER_BIN, put updater on PATH, or run cargo build)" >&2
    echo "✗ Update system failed with exit code 127"
    exit 127
fi

extra_args=()
if [ -n "${UPDATER_ARGS:-}" ]; then
    # Word-splitting is intended here; globbing is not.
    read -r -a extra_args <<<"$UPDATER_ARGS"
fi

"$updater_bin" "$command_name" ${extra_args[@]+"${extra_args[@]}"}
status=$?

if [ "$status" -eq 0 ] || { [ "$command_name" = check ] && [ "$status" -eq 100 ]; }; then
    echo "✓ Update system completed successfully"
else
    echo "✗ Update system failed with exit code $status"
fi
exit "$status"
