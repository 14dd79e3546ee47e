#!/bin/sh
# Example health check (metadata.health). It runs after a successful entry
# point; a non-zero exit rolls the module back to its previous copy.
set -eu

if [ -f "${UPDATER_MODULE_DIR:-.}/index.json" ]; then
    echo "dashboard: healthy"
    exit 0
fi
echo "dashboard: index.json missing from ${UPDATER_MODULE_DIR:-.}" >&2
exit 1
