#!/usr/bin/env bash
# Builds updater's Debian package into <target dir>/debian/ with cargo-deb (metadata:
# [package.metadata.deb] in Cargo.toml; README "Install").
#
#   dist/debian/build-deb.sh                          for this machine's architecture
#   dist/debian/build-deb.sh --features vendored      libgit2, OpenSSL and zlib built in
#   dist/debian/build-deb.sh --target aarch64-unknown-linux-gnu
#                                                     arm64 (needs that Rust target and a cross
#                                                     linker, see README "Building for arm64")
#
# The man page and the completion scripts are generated from a binary built for this machine
# (they do not depend on the architecture) into <release dir>/deb-assets/, where the metadata's
# `target/release/deb-assets/...` assets point; the packaged updater.service runs /usr/bin/updater.
# Needs cargo-deb (`cargo install cargo-deb --locked`). Prints the path of the .deb last.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=""
features=()
while [ $# -gt 0 ]; do
    case $1 in
        --target) target=${2:?--target needs a triple}; shift 2 ;;
        --features) features=(--features "${2:?--features needs a list}"); shift 2 ;;
        *) echo "usage: $0 [--target TRIPLE] [--features LIST]" >&2; exit 2 ;;
    esac
done
command -v cargo-deb >/dev/null || { echo "build-deb: cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }

tdir=${CARGO_TARGET_DIR:-target}
# The binary for this machine: the package's own when not cross-building.
cargo build --release --locked "${features[@]}"
host_bin=$tdir/release/updater
products=$tdir/${target:+$target/}release
assets=$products/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
"$host_bin" man | gzip -9n >"$assets/updater.1.gz"
"$host_bin" completions bash >"$assets/updater.bash"
"$host_bin" completions zsh >"$assets/_updater"
"$host_bin" completions fish >"$assets/updater.fish"
sed 's|^ExecStart=/usr/local/bin/updater |ExecStart=/usr/bin/updater |' dist/systemd/updater.service >"$assets/updater.service"
grep -q '^ExecStart=/usr/bin/updater ' "$assets/updater.service" || {
    echo "build-deb: dist/systemd/updater.service has no ExecStart=/usr/local/bin/updater line to rewrite" >&2
    exit 1
}

out=$tdir/debian
mkdir -p "$out"
if [ -z "$target" ]; then
    deb=$(cargo deb --no-build --locked --output "$out" "${features[@]}")
else
    deb=$(cargo deb --target "$target" --locked --output "$out" "${features[@]}")
    # dpkg-shlibdeps, run on a foreign binary with the cross toolchain's libc, writes
    # `libc6:arm64 (>= …)`; in the package's own architecture that is plain `libc6 (>= …)`.
    arch=$(dpkg-deb --field "$deb" Architecture)
    if dpkg-deb --field "$deb" Depends | grep -q ":$arch\b"; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        dpkg-deb -R "$deb" "$tmp/root"
        sed -i "/^Depends:/ s/:$arch\b//g" "$tmp/root/DEBIAN/control"
        dpkg-deb --root-owner-group -Zxz -b "$tmp/root" "$deb" >/dev/null
    fi
fi
echo "$deb"
