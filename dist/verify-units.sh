#!/usr/bin/env bash
# Verifies the shipped systemd units with `systemd-analyze verify`. The service's ExecStart is
# pointed at a built binary first, since verify checks that the executable exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
case $target in /*) ;; *) target=$here/../$target ;; esac
bin=${UPDATER_BIN:-$target/debug/updater}
[ -x "$bin" ] || cargo build -q --manifest-path "$here/../Cargo.toml"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/systemd/updater.service" "$here/systemd/updater.timer" "$tmp/"
sed -i "s|/usr/local/bin/updater|$bin|" "$tmp/updater.service"
out=$(systemd-analyze verify "$tmp/updater.service" "$tmp/updater.timer" 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; treat any output about our units as a failure.
if printf '%s\n' "$out" | grep -E 'updater\.(service|timer)' >/dev/null; then
    echo "$out"
    exit 1
fi
echo "systemd units verified"
