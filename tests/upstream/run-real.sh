#!/bin/sh
# Run the real HOMESERVER repository (homeserversltd/updates) through `updater sync --run enabled`
# in a sandbox, as non-root (started as root, it runs itself again as $RUN_AS, default nobody), into a scratch install root named `updates` (SPEC §10).
#
#   tests/upstream/run-real.sh CHECKOUT [COMMIT]
#
# CHECKOUT is a local clone of homeserversltd/updates (never modified: it is cloned into a scratch
# directory); COMMIT defaults to its HEAD. The binary is $UPDATER_BIN, else
# ${CARGO_TARGET_DIR:-<this repo>/target}/debug/updater.
#
# The sandbox: updater runs modules with `--python <scratch>/sandbox/python3`, a wrapper around the
# real interpreter ($REAL_PYTHON, else python3 on PATH) that loads a `sitecustomize` hook. The hook
# lets every module import for real (framework, `updates.*`, third-party packages), records which
# module files executed and under which package name, and replaces each module's `main` with a stub
# that records its `args` and returns {"success": true} -- the real `main` never runs, so nothing
# on this machine is touched (the interpreter is also given as UPDATER_PYTHON, and a module that ran
# without the hook seeing it is reported as a SANDBOX BREACH; running as non-root is the backstop).
# A fake `systemctl` first on updater's PATH answers the group probe
# (`is-active`) from $ACTIVE_SERVICES (default: gogs) and records every call.
#
# Prints one line per module: imported yes/no (and as which package), reached main yes/no (with
# its args), updater's result and error; then the same for `updater check --run enabled`
# (which should call main(["--check"]) of the check modules). Exit status 0 when every module
# imported and reached main, or was legitimately not run (standby, held); else 1.
# KEEP=1 keeps the scratch directory (its path is printed). ENABLE_DISABLED=1 then enables, on the
# scratch machine, every module the repository ships with `enabled: false` and syncs again, so that
# those modules are shown to import and reach main too.
set -eu

usage() {
    echo "usage: $0 CHECKOUT [COMMIT]   (env: UPDATER_BIN, REAL_PYTHON, ACTIVE_SERVICES, KEEP, ENABLE_DISABLED)" >&2
    exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
checkout=$1
commit=${2:-HEAD}
[ -d "$checkout" ] || { echo "run-real: $checkout is not a directory" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
updater=${UPDATER_BIN:-${CARGO_TARGET_DIR:-$project/target}/debug/updater}

# As root: clone the checkout for $RUN_AS (default nobody) and run this script again as that user.
if [ "$(id -u)" = 0 ]; then
    run_as=${RUN_AS:-nobody}
    sha=$(git -c safe.directory='*' -C "$checkout" rev-parse --verify "$commit^{commit}") ||
        { echo "run-real: no commit $commit in $checkout" >&2; exit 2; }
    stage=$(mktemp -d "${TMPDIR:-/tmp}/updater-run-real-src.XXXXXXXX")
    git -c safe.directory='*' clone -q --no-checkout "$checkout" "$stage/src"
    chown -R "$run_as" "$stage"
    chmod 755 "$stage"
    set +e
    runuser -u "$run_as" -- env PATH="$PATH" HOME="$stage" TMPDIR="${TMPDIR:-/tmp}" \
        UPDATER_BIN="$updater" ${REAL_PYTHON:+REAL_PYTHON="$REAL_PYTHON"} \
        ${UPDATER_NO_FORKSERVER:+UPDATER_NO_FORKSERVER="$UPDATER_NO_FORKSERVER"} \
        ACTIVE_SERVICES="${ACTIVE_SERVICES:-gogs}" KEEP="${KEEP:-0}" \
        sh "$here/run-real.sh" "$stage/src" "$sha"
    rc=$?
    rm -rf "$stage"
    exit $rc
fi
[ -x "$updater" ] || { echo "run-real: no updater binary at $updater (cargo build, or set UPDATER_BIN)" >&2; exit 2; }
real_python=${REAL_PYTHON:-$(command -v python3 || true)}
[ -n "$real_python" ] && [ -x "$real_python" ] || { echo "run-real: no python3 (set REAL_PYTHON)" >&2; exit 2; }
active=${ACTIVE_SERVICES:-gogs}

work=$(mktemp -d "${TMPDIR:-/tmp}/updater-run-real.XXXXXXXX")
HOME=$work/home
export HOME
mkdir -p "$HOME"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT INT TERM

# 1. The repository at COMMIT, on a branch of its own, in a scratch clone.
# (A checkout owned by another user is refused by git's safe.directory check, in upload-pack too.)
git -c safe.directory='*' clone -q --no-checkout --upload-pack="git -c safe.directory='*' upload-pack" \
    "$checkout" "$work/src"
sha=$(git -C "$work/src" rev-parse --verify "$commit^{commit}") || { echo "run-real: no commit $commit in $checkout" >&2; exit 2; }
git -C "$work/src" checkout -q -b updater-run-real "$sha"
root="$work/root/updates"
mkdir -p "$work/root" "$work/sandbox/site" "$work/bin"

# 2. Fake systemctl, first on updater's PATH.
cat > "$work/bin/systemctl" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >> '$work/systemctl.calls'
if [ "\$1" = is-active ]; then
    for a in "\$@"; do last=\$a; done
    for s in $active; do [ "\$s" = "\$last" ] && exit 0; done
    exit 3
fi
exit 0
EOF
chmod 755 "$work/bin/systemctl"

# 3. The interpreter wrapper: the hook via PYTHONPATH; -I/-E/-S would drop it, so they are removed
#    from the interpreter's options (recorded in sandbox.log).
cat > "$work/sandbox/python3" <<EOF
#!/bin/sh
n=\$#; i=0; stop=0
while [ \$i -lt \$n ]; do
    a=\$1; shift; i=\$((i + 1))
    if [ \$stop = 0 ]; then
        case \$a in
            -c|-m|-|--) stop=1 ;;
            -X|-W) set -- "\$@" "\$a"; a=\$1; shift; i=\$((i + 1)) ;;
            --*) ;;
            -*) b=\$(printf '%s' "\$a" | tr -d 'IES')
                if [ "\$b" != "\$a" ]; then printf 'stripped %s\n' "\$a" >> '$work/sandbox.log'; fi
                [ "\$b" = - ] && continue
                a=\$b ;;
            *) stop=1 ;;
        esac
    fi
    set -- "\$@" "\$a"
done
PYTHONPATH='$work/sandbox/site'
HS_SANDBOX_RECORD='$work/record.jsonl'
HS_SANDBOX_ROOT='$root'
export PYTHONPATH HS_SANDBOX_RECORD HS_SANDBOX_ROOT
exec '$real_python' "\$@"
EOF
chmod 755 "$work/sandbox/python3"

# 4. The hook. Identifies a module by the file that executes (<root>/modules/<name>/__init__.py or
#    index.py), whatever package name the runner gives it.
cat > "$work/sandbox/site/sitecustomize.py" <<'EOF'
"""updater run-real sandbox: record module imports, stub every module's main (never run it)."""
import json
import os
import sys
from importlib import machinery

_RECORD = os.environ.get("HS_SANDBOX_RECORD")
_ROOT = os.path.realpath(os.environ.get("HS_SANDBOX_ROOT", "/nonexistent"))
_MODULES = os.path.join(_ROOT, "modules") + os.sep


def _write(rec):
    if not _RECORD:
        return
    rec["pid"] = os.getpid()
    with open(_RECORD, "a") as f:
        f.write(json.dumps(rec, sort_keys=True, default=repr) + "\n")


def _module_of(mod):
    path = getattr(mod, "__file__", None)
    if not path:
        return None
    path = os.path.realpath(path)
    if not path.startswith(_MODULES):
        return None
    parts = path[len(_MODULES):].split(os.sep)
    if len(parts) == 2 and parts[1] in ("__init__.py", "index.py"):
        return parts[0]
    return None


def _stub(name, as_name):
    def main(args=None):
        _write({"event": "main", "module": name, "args": args, "as": as_name})
        return {"success": True, "sandbox": "stub main: the real main was not run"}

    main.__hs_sandbox_stub__ = True
    return main


_original_exec = machinery.SourceFileLoader.exec_module


def _exec_module(self, module):
    name = _module_of(module)
    if name is None:
        return _original_exec(self, module)
    try:
        _original_exec(self, module)
    except BaseException as e:
        _write({"event": "import_failed", "module": name, "as": module.__name__,
                "error": f"{type(e).__name__}: {e}"})
        raise
    _write({"event": "imported", "module": name, "as": module.__name__})
    if callable(getattr(module, "main", None)) and not getattr(module.main, "__hs_sandbox_stub__", False):
        module.main = _stub(name, module.__name__)


machinery.SourceFileLoader.exec_module = _exec_module
EOF

# 5. Run.
run_updater() {
    # UPDATER_PYTHON too: a code path that ignores --python still gets the sandboxed interpreter.
    PATH="$work/bin:$PATH" UPDATER_PYTHON="$work/sandbox/python3" \
        "$updater" --modules-path "$root" --repo-url "$work/src" \
        --branch updater-run-real --python "$work/sandbox/python3" "$@"
}
echo "run-real: $(git -C "$work/src" log -1 --format='%h %ad %s' --date=short) -> $root"
set +e
run_updater sync --run enabled --json > "$work/sync.json" 2> "$work/sync.log"
sync_code=$?
if [ "${ENABLE_DISABLED:-0}" = 1 ]; then
    # Also prove that the modules the repository ships disabled import and reach main: enable
    # them on this machine (`updater enable`) and sync again (they run under --run enabled).
    for idx in "$root"/modules/*/index.json; do
        if "$real_python" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("metadata", {}).get("enabled") is False else 1)' "$idx"; then
            run_updater enable "$(basename "$(dirname "$idx")")" >> "$work/sync.log" 2>&1
        fi
    done
    run_updater sync --run enabled --json > "$work/sync.json" 2>> "$work/sync.log"
    sync_code=$?
fi
: > "$work/record.sync.jsonl"
[ -f "$work/record.jsonl" ] && mv "$work/record.jsonl" "$work/record.sync.jsonl"
run_updater check --run enabled --json > "$work/check.json" 2> "$work/check.log"
check_code=$?
set -e
echo "run-real: sync exit $sync_code, check exit $check_code (logs: $work/sync.log, $work/check.log)"

# 6. Report.
"$real_python" - "$work" "$root" "$sync_code" <<'EOF'
import json, os, sys

work, root, sync_code = sys.argv[1], sys.argv[2], int(sys.argv[3])
CHECK_MODULES = ("os", "website", "sbin", "migrations")  # SPEC §10: today's list


def records(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))
    except OSError:
        pass
    return out


def doc(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"no JSON document: {e}"}


src_modules = sorted(
    n for n in os.listdir(os.path.join(work, "src", "modules"))
    if os.path.isdir(os.path.join(work, "src", "modules", n)) and not n.endswith(".backup")
)
ok = True
for phase, rec_file, doc_file in (("sync", "record.sync.jsonl", "sync.json"), ("check", "record.jsonl", "check.json")):
    recs = records(os.path.join(work, rec_file))
    d = doc(os.path.join(work, doc_file))
    rows = {m.get("name"): m for m in d.get("modules", []) if isinstance(m, dict)}
    print(f"== {phase}" + (f"  (error: {d['error']})" if d.get("error") else ""))
    if not rows:
        try:
            with open(os.path.join(work, phase + ".log"), errors="replace") as f:
                tail = f.read().splitlines()[-3:]
        except OSError:
            tail = []
        for line in tail:
            print(f"   | {line}")
    if phase == "sync" and "framework" in rows:
        fw = rows["framework"]
        print(f"   framework        decision={fw.get('decision')} result={fw.get('result')} error={fw.get('error')}")
    for name in src_modules:
        imp = [r for r in recs if r["module"] == name and r["event"] == "imported"]
        fail = [r for r in recs if r["module"] == name and r["event"] == "import_failed"]
        mains = [r for r in recs if r["module"] == name and r["event"] == "main"]
        row = rows.get(name, {})
        if phase == "check" and not (imp or fail or mains) and name not in CHECK_MODULES:
            continue
        result = row.get("result")
        # A module whose installed index says `enabled: false` (as the repository shipped it) is
        # installed and not run (SPEC §3): nothing to reach.
        try:
            with open(os.path.join(work, "root", "updates", "modules", name, "index.json")) as f:
                shipped_disabled = json.load(f).get("metadata", {}).get("enabled") is False
        except (OSError, ValueError, AttributeError):
            shipped_disabled = False
        if shipped_disabled and not (imp or fail or mains):
            print(f"   {name:<16} installed, not run: its index says enabled: false "
                  f"(decision={row.get('decision')} result={result})")
            continue
        imported = "yes (as %s)" % min((r["as"] for r in imp), key=len) if imp and not fail else "no"
        reached = "yes %s" % json.dumps([r["args"] for r in mains]) if mains else "no"
        err = row.get("error") or (fail[0]["error"] if fail else None)
        print(f"   {name:<16} imported={imported:<38} main={reached:<13} "
              f"decision={row.get('decision')} result={result}" + (f" error={err}" if err else ""))
        if phase == "sync" and not mains and result not in ("standby", "held"):
            ok = False
        # An entry that ran without the hook seeing its module: the sandbox did not hold (the real
        # main may have run, as this non-root user).
        ran = result in ("applied", "failed", "rolled_back") or (phase == "check" and "content_update" in row)
        if ran and not (imp or fail or mains) and not err:
            print(f"   !! SANDBOX BREACH: {name} ran under updater but the hook never saw it")
            ok = False
    if phase == "sync" and sync_code != 0:
        ok = False
print("run-real: " + ("every module imported and reached main (or was standby/held)" if ok else "FAILURES above"))
sys.exit(0 if ok else 1)
EOF
