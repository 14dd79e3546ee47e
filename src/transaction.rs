//! One module's install or update as a transaction (SPEC §7): stage a copy, snapshot the
//! declared system paths, swap the copy in with one atomic exchange, and then either commit (the
//! old copy becomes the module's backup) or roll back (old copy and system paths put back).
//! Dropping an uncommitted transaction rolls it back. Durability is batched per wave (the
//! modules of one priority): [`Transaction::begin_wave`] journals their intent in one write,
//! [`Transaction::stage`] copies without syncing, [`Transaction::seal_wave`] makes every staged
//! copy durable with one `syncfs` and journals them `swapped` in one write (each module is then
//! staged, not yet swapped, until its [`Transaction::swap`]), and [`Transaction::commit_wave`]
//! commits the wave with two `syncfs` and two journal writes. Every step is journaled before it
//! is taken, and the same `undo`/`finish_commit` functions serve the crash recovery of the next
//! run.

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

/// What one module of a wave is staged from.
pub struct Intent {
    pub name: String,
    pub version: String,
    pub backup_paths: Vec<PathBuf>,
}

impl<'a> Transaction<'a> {
    /// Opens the transactions of a wave: one journal write records every module's intent
    /// (`staging`: nothing installed has changed; recovery removes what staging left). Nothing
    /// is copied yet ([`Transaction::stage`]).
    pub fn begin_wave(
        layout: &'a Layout,
        journal: &'a Journal,
        intents: Vec<Intent>,
    ) -> Result<Vec<Transaction<'a>>> {
        let txns: Vec<Transaction<'a>> = intents
            .into_iter()
            .map(|i| Transaction {
                layout,
                journal,
                entry: Entry {
                    step: Step::Staging,
                    version: i.version,
                    new_ino: None,
                    had_old: fs::exists_no_follow(&layout.module(&i.name)),
                    backup_paths: i.backup_paths,
                    per_module_dir: true,
                    restart_old: false,
                },
                name: i.name,
                swapped: false,
                done: false,
            })
            .collect();
        // On error, dropping the transactions forgets them again.
        journal.set_many(txns.iter().map(|t| (t.name.as_str(), t.entry.clone())))?;
        for t in &txns {
            fault::at(fault::Point::JournalStaging, &t.name);
        }
        Ok(txns)
    }

    /// Copies `source` into staging, without syncing it: [`Transaction::seal_wave`] makes the
    /// whole wave durable at once. Nothing installed changes; on error, dropping the
    /// transaction cleans up.
    pub fn stage(&mut self, source: &Path) -> Result<()> {
        let name = &self.name;
        let staged = staged_dir(self.layout, name);
        let dir = work_dir(self.layout, name);
        fs::remove_all(&dir)?;
        fs::create_dir_all(&dir)?;
        fs::copy_tree_unsynced(source, &staged)
            .with_context(|| format!("staging module {name}"))?;
        self.entry.new_ino = inode(&staged);
        fault::at(fault::Point::Staged, name);
        Ok(())
    }

    /// The durability point of a wave, between staging (and whatever the caller changed in the
    /// staged copies) and the first swap: one `syncfs` of the filesystem holding staging makes
    /// every staged copy durable, then one journal write records every module as `swapped`
    /// (with its staged copy's inode). On error nothing was swapped; dropping the
    /// transactions rolls them back.
    pub fn seal_wave(
        layout: &Layout,
        journal: &Journal,
        txns: &mut [Transaction<'a>],
    ) -> Result<()> {
        if txns.is_empty() {
            return Ok(());
        }
        fs::sync_filesystem(&layout.staging())?;
        journal.set_many(txns.iter().map(|t| {
            let mut e = t.entry.clone();
            e.step = Step::Swapped;
            (t.name.as_str(), e)
        }))?;
        for t in txns.iter_mut() {
            t.entry.step = Step::Swapped;
        }
        Ok(())
    }

    /// Swaps the staged copy in: the `backup_paths` are snapshotted (durably: the entry may
    /// change them next), then one `RENAME_EXCHANGE` for an update, one rename for a new module.
    /// The swap itself is not synced here: until the wave's commit syncs it, a power cut may undo
    /// it, and recovery, which tells the copies apart by inode, rolls the module back either way.
    pub fn swap(&mut self) -> Result<()> {
        let name = &self.name;
        if !self.entry.backup_paths.is_empty() {
            // Taken under a temporary name and renamed: recovery restores `paths` only once it
            // is complete.
            let dir = work_dir(self.layout, name);
            let tmp = dir.join("paths.tmp");
            snapshot::take(&tmp, &self.entry.backup_paths)
                .with_context(|| format!("snapshotting the backup_paths of module {name}"))?;
            fs::rename(&tmp, &paths_snapshot_dir(self.layout, name))?;
        }
        let staged = staged_dir(self.layout, name);
        let installed = self.layout.module(name);
        fault::at(fault::Point::Swapping, name);
        if self.entry.had_old {
            fs::exchange_unsynced(&staged, &installed)?;
        } else {
            fs::create_dir_all(&self.layout.modules())?;
            fs::rename_unsynced(&staged, &installed)?;
        }
        self.swapped = true;
        fault::at(fault::Point::Swapped, name);
        Ok(())
    }

    /// Before [`swap`](Self::swap): the new copy's steps will run, so undoing this update must
    /// also restart the old copy (`lifecycle`). Recorded with the swap's journal entry; then a
    /// rollback leaves the entry at `Step::Restart` for the caller (or the next run's repair)
    /// to finish with the restart. No effect for a new module (no old copy to restart).
    pub fn restart_old_on_rollback(&mut self) {
        self.entry.restart_old = self.entry.had_old;
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the previously installed copy is while the transaction is open (none for a new
    /// module). Passed to entry points as `UPDATER_BACKUP_DIR`.
    pub fn old_copy(&self) -> Option<PathBuf> {
        (self.entry.had_old && self.swapped).then(|| staged_dir(self.layout, &self.name))
    }

    /// Keeps the new copies of a wave (every transaction swapped, its entry passed): one
    /// `syncfs` makes the swaps durable, one journal write records them `committed`; then each
    /// old copy becomes its module's backup (for `rollback`), one more `syncfs`, and one journal
    /// write forgets them. Returns each module's result: a module whose clean-up failed is
    /// committed all the same (the next run's recovery finishes it, as after a crash); when
    /// the wave cannot be committed at all, every module of it is rolled back.
    pub fn commit_wave(
        layout: &Layout,
        journal: &Journal,
        mut txns: Vec<Transaction<'a>>,
    ) -> Vec<(String, Result<()>)> {
        if txns.is_empty() {
            return Vec::new();
        }
        let sealed = fs::sync_filesystem(&layout.staging()).and_then(|()| {
            journal.set_many(txns.iter().map(|t| {
                let mut e = t.entry.clone();
                e.step = Step::Committed;
                (t.name.as_str(), e)
            }))
        });
        if let Err(e) = sealed {
            let why = format!("{e:#}");
            return txns
                .into_iter()
                .map(|t| {
                    let name = t.name.clone();
                    drop(t); // rolls back
                    (name, Err(anyhow::anyhow!("committing: {why}")))
                })
                .collect();
        }
        let mut results = Vec::with_capacity(txns.len());
        for t in &mut txns {
            t.entry.step = Step::Committed;
            t.done = true;
            fault::at(fault::Point::Committing, &t.name);
            let r = finish_commit_with(layout, &t.name, &t.entry, false);
            results.push((t.name.clone(), r));
        }
        let finished: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n.as_str())
            .collect();
        let forgotten = fs::sync_filesystem(&layout.staging())
            .and_then(|()| journal.remove_many(finished.iter().copied()));
        if let Err(e) = forgotten {
            // Every module is committed; the next run's recovery finishes the clean-up.
            log::warn!("finishing the commit of this wave: {e:#}; the next run will finish it");
        } else {
            for n in &finished {
                fault::at(fault::Point::Committed, n);
            }
        }
        for (name, r) in &mut results {
            if let Err(e) = r {
                log::warn!(
                    "module {name} is committed, but cleaning up after it failed: {e:#}; the next run will finish it"
                );
                *r = Ok(());
            }
        }
        results
    }

    /// Puts back the old copy and the system paths, and forgets the transaction.
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.rollback_inner()
    }

    fn rollback_inner(&self) -> Result<()> {
        let mut entry = self.entry.clone();
        if !self.swapped {
            // Its entry never ran: nothing of the system paths to put back.
            entry.step = Step::Staging;
        }
        undo(self.layout, &self.name, &entry)?;
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
    finish_commit_with(layout, name, entry, true)
}

/// [`finish_commit`]; `durable: false` syncs nothing (the caller syncs the whole wave once).
fn finish_commit_with(layout: &Layout, name: &str, entry: &Entry, durable: bool) -> Result<()> {
    let w = work(layout, name, entry);
    let is_old_copy = fs::exists_no_follow(&w.tree) && inode(&w.tree) != entry.new_ino;
    if is_old_copy {
        let backup = layout.backup_of(name);
        fs::create_dir_all(&layout.backup())?;
        fs::remove_all(&w.discard)?;
        let rename = if durable {
            fs::rename
        } else {
            fs::rename_unsynced
        };
        if fs::exists_no_follow(&backup) {
            rename(&backup, &w.discard)?;
        }
        rename(&w.tree, &backup)?;
        fault::at(fault::Point::BackupKept, name);
    }
    cleanup_with(&w, durable)
}

fn cleanup(w: &Work) -> Result<()> {
    cleanup_with(w, true)
}

fn cleanup_with(w: &Work, durable: bool) -> Result<()> {
    match &w.dir {
        Some(dir) => {
            fs::remove_all(dir)?;
            if durable {
                fs::sync_parent(dir)?;
            }
            Ok(())
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
