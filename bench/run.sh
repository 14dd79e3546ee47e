#!/usr/bin/env bash
# Benchmark harness for updater: every figure is printed beside its floor, measured in the same
# run, as a ratio. See bench/README.md.
#
#   bench/run.sh                 everything (sizes 10,100,1000,10000; several minutes)
#   bench/run.sh --smoke         every scenario on 10 modules, 1 repetition (CI; < 60 s)
#   bench/run.sh --sizes 10,100 --reps 3
#   bench/run.sh --help          all options (of bench/bench.py)
#
# Environment: UPDATER_BIN=path  use this binary instead of building target/release/updater
#              BENCH_KEEP=1      keep the scratch directory (its path is printed)
#              TMPDIR            where the scratch directory goes (default /tmp); every
#                                measurement runs there, so it should be the disk the real
#                                install root would be on
#              BENCH_NO_TMPFS=1  do the (unmeasured) initial installs on that disk too, not in
#                                /dev/shm (much slower: each installed module costs fsyncs)
#
# Exit status: 0 when every command ran (missed targets do not fail the run); 1 when a command
# (updater, git, the floors) failed; 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

for a in "$@"; do
    case "$a" in
        -h|--help) exec python3 "$here/bench.py" --help ;;
    esac
done

if [ -z "${UPDATER_BIN:-}" ]; then
    echo "bench: building the release binary (cargo build --release)" >&2
    (cd "$top" && cargo build --release --quiet)
    target=${CARGO_TARGET_DIR:-$top/target}
    case $target in /*) ;; *) target=$top/$target ;; esac
    UPDATER_BIN="$target/release/updater"
fi
[ -x "$UPDATER_BIN" ] || { echo "bench: $UPDATER_BIN is not an executable" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/updater-bench.XXXXXX")
# Initial installs (setup, never measured) run on tmpfs when there is one: see bench.py.
setup=
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ -z "${BENCH_NO_TMPFS:-}" ]; then
    setup=$(mktemp -d /dev/shm/updater-bench-setup.XXXXXX)
else
    setup="$work/setup"
    mkdir -p "$setup"
fi
daemon_pid=
cleanup() {
    case "$setup" in /dev/shm/*) rm -rf "$setup" ;; esac
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "bench: scratch directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A frozen copy, so a concurrent `cargo build` cannot swap the binary in the middle of a run.
cp "$UPDATER_BIN" "$work/updater"

# A real git daemon on 127.0.0.1 serving every repository the benchmark creates under srv/.
mkdir -p "$work/srv"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$(git --exec-path)/git-daemon" --reuseaddr --base-path="$work/srv" --export-all \
    --listen=127.0.0.1 --port="$port" >"$work/git-daemon.log" 2>&1 &
daemon_pid=$!

python3 "$here/bench.py" --work "$work" --bin "$work/updater" --git-port "$port" \
    --git-daemon-pid "$daemon_pid" --setup "$setup" "$@"
