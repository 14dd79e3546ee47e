//! The framework files (SPEC §10): the repository root's `__init__.py`, `index.py`, `utils/`,
//! `setup_venv.sh`, `requirements.txt` (those that exist, or exactly the repository index's
//! `metadata.framework`), installed into the install root as ONE unit with a module's guarantees,
//! before any module; and `updateManager.sh`, which is updater's own wrapper, never the
//! repository's.
//!
//! The root entries are REAL files and directories: upstream finds its root config with
//! `os.path.join(os.path.dirname(__file__), "..", "index.json")`, and through a symlinked `utils/`
//! the kernel would resolve that `..` inside the link's target, not in the install root.
//!
//! Layout, all under `.updater/framework/` (names no module path can take): `swap-<N>/` stages
//! one complete, synced copy of the new version; `backup/` is the version the last install
//! replaced; `installed.json` names the entries updater installed (ours to back up and replace);
//! `displaced-<N>/` keeps whatever else stood at those names (a Python-orchestrator install), never
//! deleted; `journal.json` is the install in progress.
//!
//! Each root entry is switched with ONE rename-class operation, then a directory sync: an entry
//! that exists is exchanged with its staged copy (`renameat2(RENAME_EXCHANGE)`, so the old one
//! lands in `swap-<N>/`), a new one is renamed in (`RENAME_NOREPLACE`), an entry of ours the new
//! version no longer has is renamed into `swap-<N>/`. A SET of entries cannot switch in one
//! syscall: between the first and the last switch the root holds a mix, and a process that
//! imports the framework at that instant may see it. What makes the unit all-or-nothing is the
//! journal, written before staging, before the first switch (the whole plan, with the inode of
//! every staged and every old entry: rename and exchange keep inodes, so after a crash each entry
//! shows which side of its switch it is on) and at the commit. A failure rolls back in the same
//! run; after a crash the next run (under the run lock, before anything else) switches back every
//! entry that moved (uncommitted) or finishes the clean-up (committed): after repair the root
//! holds the complete old set or the complete new one, never a mix.
//!
//! A machine with the earlier symlink layout (root entries linking to
//! `.updater/framework/current/<name>`, `current`/`previous` links to `gen-<N>/`) is migrated by
//! its next sync: its links are exchanged for real files like any entry, the old generation's
//! real files become `backup/`, and `current`, `previous` and `gen-*` are removed after the commit.
//! A journal that design left (a crash before updater was upgraded) is repaired its own way first
//! (`EarlierJournal`). While the installed framework is ahead of the repository (`local_ahead`)
//! nothing is installed, so such links stay until the repository offers a framework update.
//!
//! Files: `entries` (which files make the framework, their checks, what is installed),
//! `decision` (the plan and the reported [`Row`]), `stage` (staging and the per-entry switch),
//! `journal` and `repair` (the install in progress and its repair after a crash), `wrapper` (our
//! `updateManager.sh`), `points` (the crash points and the injected failures).

mod decision;
mod entries;
mod journal;
mod points;
mod repair;
mod stage;
mod wrapper;

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::global_index::GlobalIndex;
use crate::layout::Layout;

pub use decision::{add_row, skip_all, Row};
pub use entries::{validate_entry, DEFAULT_ENTRIES};
pub use journal::pending;
pub use points::{arm_failure, POINTS, ROW_NAME};
pub use repair::recover;
pub use wrapper::{ensure_wrapper, wrapper_text, WRAPPER_MARKER};

use decision::{decide, log_decision, Repair};
use entries::{installed_version, offer, set_installed_schema};
use stage::install_unit;

/// The framework decision of a run. `install` (sync) installs it when needed; check only
/// reports. Returns None when the repository has no framework files. Errors only for what stops
/// the run (the install root cannot be read or repaired); a refused repository or a failed install
/// is a row with decision `invalid` or result `rolled_back`, and nothing installed changed.
pub fn step(
    layout: &Layout,
    repo_root: &Path,
    repo_index: Option<&GlobalIndex>,
    installed: Option<&GlobalIndex>,
    install: bool,
) -> Result<Option<Row>> {
    let installed_v = installed_version(installed);
    let offer = match offer(repo_root, repo_index) {
        Ok(o) => o,
        Err(e) => {
            let error = format!("{e:#}");
            log::error!("The framework files of the repository are refused: {error}");
            return Ok(Some(Row {
                decision: "invalid",
                installed: installed_v,
                available: None,
                result: None,
                error: Some(error),
                duration_ms: None,
            }));
        }
    };
    let Some((decision, needed, repair)) = decide(layout, &offer, installed_v.as_deref())? else {
        return Ok(None);
    };
    let mut row = Row {
        decision,
        installed: installed_v,
        available: offer.version.clone(),
        result: None,
        error: None,
        duration_ms: None,
    };
    log_decision(
        &row,
        if decision == "new" {
            Repair::None
        } else {
            repair
        },
    );
    if !needed || !install {
        return Ok(Some(row));
    }
    let started = Instant::now();
    match install_unit(layout, repo_root, &offer) {
        Ok(()) => {
            row.result = Some("applied");
            log::info!(
                "Framework installed: {} ({})",
                offer.version.as_deref().unwrap_or("no version"),
                offer.entries.join(", ")
            );
            if let Some(v) = &offer.version {
                // Only now does the installed index take the new schema_version (finish_commit
                // did already unless its clean-up failed); the machine's branch, channel and
                // repository_url stay as they are.
                set_installed_schema(layout, v)?;
            }
        }
        Err(e) => {
            let error = format!("{e:#}");
            log::error!("Framework update failed and was rolled back: {error}");
            row.result = Some("rolled_back");
            row.error = Some(error);
        }
    }
    row.duration_ms = Some(started.elapsed().as_millis());
    Ok(Some(row))
}
