//! One module's install or update as a transaction (SPEC §7): stage a synced copy, snapshot the
//! declared system paths, swap the copy in with one atomic exchange, and then either `commit()`
//! (the old copy becomes the module's backup) or roll back (old copy and system paths put back).
//! Dropping an uncommitted transaction rolls it back. Every step is journaled first, and the
//! same `undo`/`finish_commit` functions serve the crash recovery of the next run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fault;
use crate::fs;
use crate::journal::{Entry, Journal, Step};
use crate::layout::Layout;
use crate::snapshot;

/// `.updater/staging/<name>`: the incoming copy before the swap, the outgoing one after it.
pub fn staged_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.staging().join(name)
}

/// `.updater/staging/<name>.paths`: the snapshot of the module's `backup_paths`.
pub fn paths_snapshot_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.staging().join(format!("{name}.paths"))
}

fn discard_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.staging().join(format!("{name}.discard"))
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// A module update in flight. See the module documentation.
pub struct Transaction<'a> {
    layout: &'a Layout,
    journal: &'a Journal,
    name: String,
    entry: Entry,
    swapped: bool,
    done: bool,
}

impl<'a> Transaction<'a> {
    /// Copies `source` into staging (synced) and snapshots `backup_paths`. Nothing installed
    /// changes; on error the staging is cleaned up and the journal entry removed.
    pub fn stage(
        layout: &'a Layout,
        journal: &'a Journal,
        name: &str,
        source: &Path,
        version: &str,
        backup_paths: &[PathBuf],
    ) -> Result<Transaction<'a>> {
        let installed = layout.module(name);
        let entry = Entry {
            step: Step::Staging,
            version: version.to_string(),
            new_ino: None,
            had_old: fs::exists_no_follow(&installed),
            backup_paths: backup_paths.to_vec(),
        };
        journal.set(name, entry.clone())?;
        fault::point("journal_staging", name);
        let mut txn = Transaction {
            layout,
            journal,
            name: name.to_string(),
            entry,
            swapped: false,
            done: false,
        };
        let staged = staged_dir(layout, name);
        fs::create_dir_all(&layout.staging())?;
        fs::remove_all(&staged)?;
        fs::copy_tree(source, &staged, false).with_context(|| format!("staging module {name}"))?;
        if !backup_paths.is_empty() {
            snapshot::take(&paths_snapshot_dir(layout, name), backup_paths)
                .with_context(|| format!("snapshotting the backup_paths of module {name}"))?;
        }
        txn.entry.new_ino = inode(&staged);
        fault::point("staged", name);
        Ok(txn)
    }

    /// Swaps the staged copy in: one `RENAME_EXCHANGE` for an update, one rename for a new
    /// module; then the parent directories are synced.
    pub fn swap(&mut self) -> Result<()> {
        let staged = staged_dir(self.layout, &self.name);
        let installed = self.layout.module(&self.name);
        self.entry.step = Step::Swapped;
        self.journal.set(&self.name, self.entry.clone())?;
        fault::point("swapping", &self.name);
        if self.entry.had_old {
            fs::exchange(&staged, &installed)?;
        } else {
            fs::create_dir_all(&self.layout.modules())?;
            fs::rename(&staged, &installed)?;
        }
        self.swapped = true;
        fault::point("swapped", &self.name);
        Ok(())
    }

    /// Where the previously installed copy is while the transaction is open (none for a new
    /// module). Passed to entry points as `UPDATER_BACKUP_DIR`.
    pub fn old_copy(&self) -> Option<PathBuf> {
        (self.entry.had_old && self.swapped).then(|| staged_dir(self.layout, &self.name))
    }

    /// Keeps the new copy. The old one becomes the module's backup (for `rollback`).
    pub fn commit(mut self) -> Result<()> {
        self.entry.step = Step::Committed;
        self.journal.set(&self.name, self.entry.clone())?;
        fault::point("committing", &self.name);
        self.done = true;
        finish_commit(self.layout, &self.name, &self.entry)?;
        self.journal.remove(&self.name)?;
        fault::point("committed", &self.name);
        Ok(())
    }

    /// Puts back the old copy and the system paths, and forgets the transaction.
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.rollback_inner()
    }

    fn rollback_inner(&self) -> Result<()> {
        undo(self.layout, &self.name, &self.entry)?;
        self.journal.remove(&self.name)?;
        fault::point("rolled_back", &self.name);
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.rollback_inner() {
                log::error!(
                    "rolling back module {} failed: {e:#}; the next run will repair it",
                    self.name
                );
            }
        }
    }
}

/// Where the copy that was installed before an interrupted, uncommitted update lives now (None
/// when the module was not installed before). Lets `check` report what a repair will restore.
pub fn pre_run_copy(layout: &Layout, name: &str, entry: &Entry) -> Option<PathBuf> {
    if !entry.had_old {
        return None;
    }
    let installed = layout.module(name);
    let new_installed = entry.new_ino.is_some() && inode(&installed) == entry.new_ino;
    Some(if new_installed {
        staged_dir(layout, name)
    } else {
        installed
    })
}

/// Makes sure the new copy (identified by inode) is not installed, puts the old copy back,
/// restores the `backup_paths` snapshot when the entry may have run, and removes staging.
/// Idempotent, so it serves both rollback and crash recovery.
pub fn undo(layout: &Layout, name: &str, entry: &Entry) -> Result<()> {
    let staged = staged_dir(layout, name);
    let installed = layout.module(name);
    let new_installed = entry.new_ino.is_some() && inode(&installed) == entry.new_ino;
    if new_installed {
        if entry.had_old && fs::exists_no_follow(&staged) {
            fs::exchange(&staged, &installed)?;
        } else {
            let discard = discard_dir(layout, name);
            fs::remove_all(&discard)?;
            fs::rename(&installed, &discard)?;
        }
    }
    if entry.step != Step::Staging && !entry.backup_paths.is_empty() {
        let snap = paths_snapshot_dir(layout, name);
        if snap.exists() {
            snapshot::restore(&snap, &entry.backup_paths)
                .with_context(|| format!("restoring the backup_paths of module {name}"))?;
        }
    }
    cleanup_staging(layout, name)
}

/// Completes a commit: the old copy (in staging) replaces the module's previous backup, and the
/// snapshot is dropped. Idempotent.
pub fn finish_commit(layout: &Layout, name: &str, entry: &Entry) -> Result<()> {
    let staged = staged_dir(layout, name);
    let is_old_copy = fs::exists_no_follow(&staged) && inode(&staged) != entry.new_ino;
    if is_old_copy {
        let backup = layout.backup_of(name);
        fs::create_dir_all(&layout.backup())?;
        let discard = discard_dir(layout, name);
        fs::remove_all(&discard)?;
        if fs::exists_no_follow(&backup) {
            fs::rename(&backup, &discard)?;
        }
        fs::rename(&staged, &backup)?;
        fault::point("backup_kept", name);
    }
    cleanup_staging(layout, name)
}

fn cleanup_staging(layout: &Layout, name: &str) -> Result<()> {
    fs::remove_all(&staged_dir(layout, name))?;
    fs::remove_all(&paths_snapshot_dir(layout, name))?;
    fs::remove_all(&discard_dir(layout, name))?;
    Ok(())
}
