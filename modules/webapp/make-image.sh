#!/bin/sh
# Builds the example image offline and pushes it to a registry on 127.0.0.1:5000:
#   a static busybox (Debian: busybox-static) with one page, `docker import`ed as
#   127.0.0.1:5000/example/webapp:<tag> (default 1). Start a registry first, e.g. Debian's
#   docker-registry: `docker-registry serve /etc/docker/registry/config.yml` (it listens on :5000).
set -eu
tag=${1:-1}
busybox=$(command -v busybox)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/www"
cp "$busybox" "$work/root/bin/busybox"
printf '<h1>webapp %s</h1>\n' "$tag" > "$work/root/www/index.html"
tar -C "$work/root" -cf "$work/image.tar" .
docker import "$work/image.tar" "127.0.0.1:5000/example/webapp:$tag"
docker push "127.0.0.1:5000/example/webapp:$tag"
