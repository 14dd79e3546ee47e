#!/usr/bin/env bash
# CI for the Debian package (.ci/run calls it; needs root, apt's lintian and crates.io for
# cargo-deb): builds the package (dist/debian/build-deb.sh), runs lintian (fails on any error or
# warning), installs it with `dpkg -i`, checks what the package put on the machine (the binary
# runs, `systemd-analyze verify` on the installed units, the timer enabled by postinst, the man
# page, completions, updateManager.sh), installs it again (the upgrade path), then removes and
# purges it and checks that the timer's links are gone. Works without a running systemd.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "deb-ci: needs root (dpkg -i)" >&2; exit 1; }
if dpkg -s updater >/dev/null 2>&1; then
    echo "deb-ci: a package named updater is already installed; not touching it" >&2
    exit 1
fi
for tool in lintian systemd-analyze deb-systemd-helper man; do
    command -v "$tool" >/dev/null || { echo "deb-ci: $tool is missing" >&2; exit 1; }
done
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
    echo "deb-ci: installing cargo-deb $cargo_deb_version"
    cargo install cargo-deb --locked --version "$cargo_deb_version" --quiet
fi

deb=$(dist/debian/build-deb.sh | tail -n 1)
[ -f "$deb" ] || { echo "deb-ci: build-deb.sh printed no package: $deb" >&2; exit 1; }
echo "deb-ci: built $deb ($(du -k "$deb" | cut -f1) KiB)"
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends
dpkg-deb --contents "$deb" | awk '{print $1, $6}'

echo "== lintian"
lintian --fail-on error,warning --info "$deb"
echo "lintian: no errors, no warnings"

installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        dpkg --purge updater >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

fail() { echo "deb-ci: $*" >&2; exit 1; }

echo "== dpkg -i"
installed=1
dpkg -i "$deb"
[ "$(command -v updater)" = /usr/bin/updater ] || fail "updater is not /usr/bin/updater"
version=$(updater --version)
echo "$version"
[ "$version" = "updater $(dpkg-deb --field "$deb" Version | sed 's/-[^-]*$//')" ] || fail "updater --version: $version"
[ -L /etc/systemd/system/timers.target.wants/updater.timer ] || fail "postinst did not enable updater.timer"
[ ! -e /etc/systemd/system/multi-user.target.wants/updater.service ] || fail "postinst enabled updater.service"
out=$(systemd-analyze verify /usr/lib/systemd/system/updater.service /usr/lib/systemd/system/updater.timer 2>&1) \
    || { echo "$out"; fail "systemd-analyze verify failed"; }
if printf '%s\n' "$out" | grep -E 'updater\.(service|timer)' >/dev/null; then
    echo "$out"
    fail "systemd-analyze verify warns about the installed units"
fi
echo "systemd-analyze verify: installed units clean"
[ "$(man -w updater)" = /usr/share/man/man1/updater.1.gz ] || fail "man -w updater: $(man -w updater)"
zcat /usr/share/man/man1/updater.1.gz | grep -q '^.SH "EXIT STATUS"' || fail "the installed man page has no EXIT STATUS"
bash -c 'source /usr/share/bash-completion/completions/updater && complete -p updater' | grep -q _updater_with_modules \
    || fail "bash completion is not registered"
[ -s /usr/share/zsh/vendor-completions/_updater ] && [ -s /usr/share/fish/vendor_completions.d/updater.fish ] \
    || fail "zsh or fish completion missing"
/usr/share/updater/updateManager.sh --help >/dev/null || fail "updateManager.sh --help"
[ -s /usr/share/doc/updater/README.md ] || fail "README missing"

echo "== dpkg -i again (upgrade path)"
dpkg -i "$deb" >/dev/null
[ -L /etc/systemd/system/timers.target.wants/updater.timer ] || fail "the timer is no longer enabled after a reinstall"

echo "== dpkg -r, dpkg --purge"
dpkg -r updater >/dev/null
[ ! -e /usr/bin/updater ] || fail "/usr/bin/updater left after removal"
dpkg --purge updater >/dev/null
installed=0
for link in /etc/systemd/system/timers.target.wants/updater.timer /etc/systemd/system/updater.timer; do
    [ ! -e "$link" ] && [ ! -L "$link" ] || fail "$link left after purge"
done
echo "deb-ci: package built, lintian clean, installed, verified, removed"
