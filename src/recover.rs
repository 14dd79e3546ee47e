//! Repair of whatever an interrupted earlier run left (SPEC §7, LESSONS 1): every journaled
//! module is finished (if it was committed) or put back to its old copy and `backup_paths`; stray
//! staging, half-made clones and temp files are removed. Runs under the lock, first thing in
//! every command that writes. Idempotent: a crash during repair is repaired by the next run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fault;
use crate::fs;
use crate::journal::{Journal, Step};
use crate::layout::Layout;
use crate::transaction;

/// What a repair did, for the log.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Modules put back to their old copy (they are retried in the same run).
    pub rolled_back: Vec<String>,
    /// Modules whose commit was completed.
    pub completed: Vec<String>,
    /// Leftover paths removed.
    pub removed: Vec<String>,
    /// Modules whose repair could not be finished: what was found is kept in the directory
    /// under `.updater/quarantine/` (reported by `doctor`), and the journal entry is gone.
    pub quarantined: Vec<(String, PathBuf)>,
}

/// Describes what a repair would do, without doing it (for `check` and `doctor`).
pub fn pending(layout: &Layout) -> Result<Vec<String>> {
    let journal = Journal::load(&layout.journal())?;
    let mut out: Vec<String> = journal
        .entries()
        .into_iter()
        .map(|(name, e)| match e.step {
            Step::Committed => format!(
                "module {name}: an interrupted commit of {} will be completed",
                e.version
            ),
            Step::Restart => format!(
                "module {name}: its update to {} failed; the old copy's rollback step will run to restart it, then the update is retried",
                e.version
            ),
            _ => format!(
                "module {name}: an interrupted update to {} will be rolled back and retried",
                e.version
            ),
        })
        .collect();
    let journaled = journal.entries();
    for name in fs::list_dir(&layout.staging())? {
        if name.to_str().is_some_and(|n| journaled.contains_key(n)) {
            continue;
        }
        out.push(format!(
            "leftover staging {} will be removed",
            layout.staging().join(name).display()
        ));
    }
    Ok(out)
}

/// For `check` while a repair is pending: each interrupted, uncommitted module mapped to where
/// its pre-run copy is (None: it was not installed), so decisions describe what is really
/// installed once the repair is done.
pub fn pending_overrides(layout: &Layout) -> Result<BTreeMap<String, Option<PathBuf>>> {
    let journal = Journal::load(&layout.journal())?;
    Ok(journal
        .entries()
        .into_iter()
        .filter(|(_, e)| e.step != Step::Committed)
        .map(|(name, e)| {
            let at = transaction::pre_run_copy(layout, &name, &e);
            (name, at)
        })
        .collect())
}

/// Records that the process group `pgid` (its leader is the process `pgid`) runs a module's
/// program: `"<pgid> <start time>"` in `path`, the start time (clock ticks after boot, from
/// `/proc/<pgid>/stat`) guarding against a reused pid. Failure to record is a warning only.
pub fn record_process_group(path: &Path, pgid: i32) {
    let start = proc_stat(pgid).map(|s| s.start).unwrap_or(0);
    // Only a SIGKILL of this process must not lose it: no sync (see `fs::write_replace`).
    if let Err(e) = fs::write_replace(path, format!("{pgid} {start}\n").as_bytes()) {
        log::warn!("cannot record the process group of a running entry: {e:#}");
    }
}

/// Removes a record made by [`record_process_group`] once its run has ended.
pub fn forget_process_group(path: &Path) {
    if let Err(e) = fs::remove_all(path) {
        log::warn!("{e:#}");
    }
}

/// What `/proc/<pid>/stat` says about a process.
struct ProcStat {
    zombie: bool,
    pgrp: i32,
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        zombie: f.first()? == &"Z" || f.first()? == &"X",
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Whether a live (not zombie) process is in group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .any(|s| s.pgrp == pgid && !s.zombie)
}

/// Kills what a SIGKILLed earlier run left running: for every group recorded in
/// `.updater/running/`, SIGKILL the group and wait until none of it is left, before anything is
/// undone or retried (so an old entry never overlaps its retry). A group whose leader pid now
/// belongs to another process (another start time) is left alone. Outside systemd nothing else
/// does this; under systemd, `KillMode=mixed` already has.
pub fn kill_leftover_groups(layout: &Layout) -> Result<Vec<String>> {
    let mut killed = Vec::new();
    let dir = layout.running();
    for name in fs::list_dir(&dir)? {
        let path = dir.join(&name);
        if let Some(pgid) = leftover_group(&path) {
            if let Some(pg) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while group_alive(pgid) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let shown = name.to_string_lossy();
            if group_alive(pgid) {
                log::error!("process group {pgid} of module {shown} survived SIGKILL");
            } else {
                log::warn!(
                    "Killed process group {pgid} left running by an interrupted run (module {shown})"
                );
            }
            killed.push(shown.into_owned());
        }
        fs::remove_all(&path)?;
    }
    Ok(killed)
}

/// The process group recorded in `path` when it still runs and is the one recorded (for
/// `doctor`, and before a kill).
pub fn leftover_group(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pgid: i32 = it.next()?.parse().ok().filter(|p| *p > 1)?;
    let start: u64 = it.next()?.parse().ok()?;
    let ours = match proc_stat(pgid) {
        Some(s) => s.start == start && s.pgrp == pgid,
        // The leader is gone; the kernel does not reuse a pid still used as a group id.
        None => true,
    };
    (ours && group_alive(pgid)).then_some(pgid)
}

/// Repairs the install root. Must be called with the run lock held.
pub fn recover(layout: &Layout) -> Result<Repaired> {
    // First what still runs: an old entry must not overlap the repair or the retry.
    kill_leftover_groups(layout)?;
    let journal = Journal::load(&layout.journal())?;
    let mut repaired = Repaired::default();
    for (name, entry) in journal.entries() {
        fault::at(fault::Point::Recovering, &name);
        let result = if !crate::module::valid_name(&name) {
            Err(anyhow::anyhow!(
                "{name:?} is not a module name any more (longer than 128 bytes); it cannot be repaired in place"
            ))
        } else if entry.step == Step::Committed {
            transaction::finish_commit(layout, &name, &entry)
        } else {
            transaction::undo(layout, &name, &entry)
        };
        // Lifecycle: an update whose entry may have run leaves the entry at `Restart`, for
        // `lifecycle::restart_pending` to restart the old copy once the repair is done.
        let restart = entry.restart_old && entry.step != Step::Committed;
        match result {
            Ok(()) if entry.step == Step::Committed => {
                log::warn!(
                    "Completed the interrupted commit of module {name} ({})",
                    entry.version
                );
                repaired.completed.push(name.clone());
            }
            Ok(()) => {
                log::warn!(
                    "Repaired the interrupted update of module {name} to {}: its old copy is back; it will be retried",
                    entry.version
                );
                repaired.rolled_back.push(name.clone());
            }
            Err(e) => {
                // Never retried forever: what is there is set aside for a person.
                let dir =
                    transaction::quarantine(layout, &name, &entry, &e).with_context(|| {
                        format!(
                            "setting aside the interrupted update of module {name} after: {e:#}"
                        )
                    })?;
                log::error!(
                    "Could not repair the interrupted update of module {name} to {}: {e:#}; what was left is kept in {} (see `updater doctor`)",
                    entry.version,
                    dir.display()
                );
                repaired.quarantined.push((name.clone(), dir));
                journal.remove(&name)?;
                continue;
            }
        }
        if restart {
            let step = Step::Restart;
            journal.set(&name, crate::journal::Entry { step, ..entry })?;
        } else {
            journal.remove(&name)?;
        }
    }
    // Anything else in staging belongs to no journaled update.
    for name in fs::list_dir(&layout.staging())? {
        let p = layout.staging().join(&name);
        fs::remove_all(&p)?;
        repaired.removed.push(p.display().to_string());
    }
    // Half-made clones and temp files of interrupted atomic writes.
    for dir in [layout.state_dir(), layout.root.clone()] {
        for name in fs::list_dir(&dir)? {
            let n = name.to_string_lossy();
            if n.starts_with(".clone-") || n.starts_with(".tmp-") {
                let p = dir.join(&name);
                fs::remove_all(&p)?;
                repaired.removed.push(p.display().to_string());
            }
        }
    }
    for p in &repaired.removed {
        log::debug!("removed leftover {p}");
    }
    Ok(repaired)
}
