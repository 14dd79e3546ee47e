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

/// `.updater/staging/<name>/`: the one directory holding every working path of module `name`'s
/// transaction (LESSONS: never a suffix on a name the user controls, so no module's working paths
/// can be another module's). Nothing but these per-module directories lives in `staging/`.
pub fn work_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.staging().join(name)
}

/// `.updater/staging/<name>/tree`: the incoming copy before the swap, the outgoing one after it.
pub fn staged_dir(layout: &Layout, name: &str) -> PathBuf {
    work_dir(layout, name).join("tree")
}

/// `.updater/staging/<name>/paths`: the snapshot of the module's `backup_paths`.
pub fn paths_snapshot_dir(layout: &Layout, name: &str) -> PathBuf {
    work_dir(layout, name).join("paths")
}

/// `.updater/running/<name>`: where the runner records the process group of the module's entry
/// or health check while it runs (`runner::RunSpec::pgid_file`), so that the next run can kill
/// what a SIGKILLed run left running (see `recover`). `running/` holds nothing else.
pub fn pgid_file(layout: &Layout, name: &str) -> PathBuf {
    layout.running().join(name)
}

/// The working paths of one journaled transaction. Entries written by the previous version
/// (`per_module_dir: false`) used suffixed names next to each other in `staging/`; recovery
/// still finds them there.
struct Work {
    tree: PathBuf,
    paths: PathBuf,
    discard: PathBuf,
    /// The per-module directory (new layout), removed as a whole on clean-up.
    dir: Option<PathBuf>,
}

fn work(layout: &Layout, name: &str, entry: &Entry) -> Work {
    if entry.per_module_dir {
        let dir = work_dir(layout, name);
        Work {
            tree: dir.join("tree"),
            paths: dir.join("paths"),
            discard: dir.join("discard"),
            dir: Some(dir),
        }
    } else {
        Work {
            tree: layout.staging().join(name),
            paths: layout.staging().join(format!("{name}.paths")),
            discard: layout.staging().join(format!("{name}.discard")),
            dir: None,
        }
    }
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
            per_module_dir: true,
            restart_old: false,
        };
        journal.set(name, entry.clone())?;
        fault::at(fault::Point::JournalStaging, name);
        let mut txn = Transaction {
            layout,
            journal,
            name: name.to_string(),
            entry,
            swapped: false,
            done: false,
        };
        let staged = staged_dir(layout, name);
        let dir = work_dir(layout, name);
        fs::remove_all(&dir)?;
        fs::create_dir_all(&dir)?;
        fs::copy_tree(source, &staged, false).with_context(|| format!("staging module {name}"))?;
        if !backup_paths.is_empty() {
            snapshot::take(&paths_snapshot_dir(layout, name), backup_paths)
                .with_context(|| format!("snapshotting the backup_paths of module {name}"))?;
        }
        txn.entry.new_ino = inode(&staged);
        fault::at(fault::Point::Staged, name);
        Ok(txn)
    }

    /// Swaps the staged copy in: one `RENAME_EXCHANGE` for an update, one rename for a new
    /// module; then the parent directories are synced.
    pub fn swap(&mut self) -> Result<()> {
        let staged = staged_dir(self.layout, &self.name);
        let installed = self.layout.module(&self.name);
        self.entry.step = Step::Swapped;
        self.journal.set(&self.name, self.entry.clone())?;
        fault::at(fault::Point::Swapping, &self.name);
        if self.entry.had_old {
            fs::exchange(&staged, &installed)?;
        } else {
            fs::create_dir_all(&self.layout.modules())?;
            fs::rename(&staged, &installed)?;
        }
        self.swapped = true;
        fault::at(fault::Point::Swapped, &self.name);
        Ok(())
    }

    /// Before [`swap`](Self::swap): the new copy's steps will run, so undoing this update must
    /// also restart the old copy (`lifecycle`). Recorded with the swap's journal entry; then a
    /// rollback leaves the entry at `Step::Restart` for the caller (or the next run's repair)
    /// to finish with the restart. No effect for a new module (no old copy to restart).
    pub fn restart_old_on_rollback(&mut self) {
        self.entry.restart_old = self.entry.had_old;
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
        fault::at(fault::Point::Committing, &self.name);
        self.done = true;
        finish_commit(self.layout, &self.name, &self.entry)?;
        self.journal.remove(&self.name)?;
        fault::at(fault::Point::Committed, &self.name);
        Ok(())
    }

    /// Puts back the old copy and the system paths, and forgets the transaction.
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.rollback_inner()
    }

    fn rollback_inner(&self) -> Result<()> {
        undo(self.layout, &self.name, &self.entry)?;
        if self.entry.restart_old && self.swapped {
            let restart = Entry {
                step: Step::Restart,
                ..self.entry.clone()
            };
            self.journal.set(&self.name, restart)?;
        } else {
            self.journal.remove(&self.name)?;
        }
        fault::at(fault::Point::RolledBack, &self.name);
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
        work(layout, name, entry).tree
    } else {
        installed
    })
}

/// Makes sure the new copy (identified by inode) is not installed, puts the old copy back,
/// restores the `backup_paths` snapshot when the entry may have run, and removes staging.
/// Idempotent, so it serves both rollback and crash recovery.
pub fn undo(layout: &Layout, name: &str, entry: &Entry) -> Result<()> {
    let w = work(layout, name, entry);
    let installed = layout.module(name);
    let new_installed = entry.new_ino.is_some() && inode(&installed) == entry.new_ino;
    if new_installed {
        if entry.had_old && fs::exists_no_follow(&w.tree) {
            fs::exchange(&w.tree, &installed)?;
        } else {
            fs::remove_all(&w.discard)?;
            fs::rename(&installed, &w.discard)?;
        }
    }
    if entry.step != Step::Staging && !entry.backup_paths.is_empty() && w.paths.exists() {
        snapshot::restore(&w.paths, &entry.backup_paths)
            .with_context(|| format!("restoring the backup_paths of module {name}"))?;
    }
    cleanup(&w)
}

/// Completes a commit: the old copy (in staging) replaces the module's previous backup, and the
/// snapshot is dropped. Idempotent.
pub fn finish_commit(layout: &Layout, name: &str, entry: &Entry) -> Result<()> {
    let w = work(layout, name, entry);
    let is_old_copy = fs::exists_no_follow(&w.tree) && inode(&w.tree) != entry.new_ino;
    if is_old_copy {
        let backup = layout.backup_of(name);
        fs::create_dir_all(&layout.backup())?;
        fs::remove_all(&w.discard)?;
        if fs::exists_no_follow(&backup) {
            fs::rename(&backup, &w.discard)?;
        }
        fs::rename(&w.tree, &backup)?;
        fault::at(fault::Point::BackupKept, name);
    }
    cleanup(&w)
}

fn cleanup(w: &Work) -> Result<()> {
    match &w.dir {
        Some(dir) => {
            fs::remove_all(dir)?;
            fs::sync_parent(dir)
        }
        None => {
            fs::remove_all(&w.tree)?;
            fs::remove_all(&w.paths)?;
            fs::remove_all(&w.discard)
        }
    }
}

/// Sets aside what recovery could not finish for module `name` (LESSONS: a recovery that can
/// always finish): its working paths are moved into a new `.updater/quarantine/<time>-<n>/`
/// (as `tree`, `paths`, `discard`), with a `reason.txt` naming the module, the journal entry and
/// the error. The caller then removes the journal entry; `doctor` reports the directory until a
/// person deletes it. Returns the directory.
pub fn quarantine(
    layout: &Layout,
    name: &str,
    entry: &Entry,
    why: &anyhow::Error,
) -> Result<PathBuf> {
    let base = layout.quarantine();
    fs::create_dir_all(&base)?;
    let stamp = chrono_free_stamp();
    let mut n = 0u32;
    let dir = loop {
        let d = base.join(format!("{stamp}-{n}"));
        match std::fs::symlink_metadata(&d) {
            Err(_) => break d,
            Ok(_) => n += 1,
        }
    };
    fs::create_dir_all(&dir)?;
    let w = work(layout, name, entry);
    for (from, to) in [
        (&w.tree, "tree"),
        (&w.paths, "paths"),
        (&w.discard, "discard"),
    ] {
        if fs::exists_no_follow(from) {
            fs::rename(from, &dir.join(to))?;
        }
    }
    let new_installed = entry.new_ino.is_some() && inode(&layout.module(name)) == entry.new_ino;
    let installed = if new_installed {
        format!(
            "the new, uncommitted copy of version {} (the copy from before the update is tree/ here)",
            entry.version
        )
    } else {
        "the copy from before the update".to_string()
    };
    let reason = format!(
        "module: {name}\nerror: {why:#}\ninstalled: {installed}\njournal entry: {}\n",
        serde_json::to_string(entry).unwrap_or_default()
    );
    fs::write_atomic(&dir.join("reason.txt"), reason.as_bytes())?;
    if let Some(d) = &w.dir {
        fs::remove_all(d)?;
    }
    Ok(dir)
}

/// Seconds since the epoch, for quarantine directory names (sortable, short, no locale).
fn chrono_free_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
