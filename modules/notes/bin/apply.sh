#!/bin/sh
# Example entry point declared with metadata.entry (a path inside the module).
# A module that edits system files lists them in configuration.backup_paths
# (absolute paths); the updater snapshots them before this runs and puts them
# back if it fails. This example changes nothing, so the list is empty.
set -eu

echo "notes: would apply notes ${UPDATER_FROM_VERSION:-none} -> ${UPDATER_TO_VERSION:-?}"
exit 0
