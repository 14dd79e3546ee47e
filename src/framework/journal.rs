//! The framework journal, `.updater/framework/journal.json`: the install in progress (its step,
//! and the plan of the switch with the identity of every staged and every old entry), the earlier
//! symlink design's journal (read, to be repaired its way), and what a repair would do.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entries::{gen_number, validate_entry};
use crate::fs;
use crate::layout::Layout;

/// A path's identity (device, inode): kept by rename and exchange, so it tells after a crash
/// which side of a switch an entry is on.
pub(super) fn identity(path: &Path) -> Option<[u64; 2]> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| [m.dev(), m.ino()])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Step {
    Staging,
    Switching,
    Committed,
}

/// How one root entry is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    /// The root entry exists: exchanged with the staged one (RENAME_EXCHANGE).
    Replace,
    /// No root entry: the staged one is renamed in (RENAME_NOREPLACE).
    Create,
    /// An entry of ours the new framework no longer has: renamed into the swap directory.
    Remove,
}

/// Whose the root entry was before the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Owner {
    /// Installed by updater: becomes the backup.
    Ours,
    /// A link of the earlier symlink layout: its generation's real files become the backup.
    Link,
    /// Anything else (a Python-orchestrator install): moved to `displaced-<N>/`, never deleted.
    Foreign,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Switch {
    pub(super) name: String,
    pub(super) kind: Kind,
    /// The owner of the root entry before the switch (None for `create`).
    pub(super) old: Option<Owner>,
    /// Identity of the staged entry (`replace`, `create`).
    pub(super) staged_id: Option<[u64; 2]>,
    /// Identity of the old root entry (`replace`, `remove`).
    pub(super) old_id: Option<[u64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Journal {
    pub(super) step: Step,
    /// `swap-<n>/` stages the new version and then holds the old one; `displaced-<n>/` keeps
    /// foreign files.
    pub(super) n: u64,
    pub(super) entries: Vec<String>,
    /// The plan of the switch, written (with `step: switching`) before the first entry moves.
    #[serde(default)]
    pub(super) switches: Vec<Switch>,
    pub(super) version: Option<String>,
}

impl Journal {
    pub(super) fn swap(&self, layout: &Layout) -> PathBuf {
        layout.framework().join(format!("swap-{}", self.n))
    }
    pub(super) fn displaced(&self, layout: &Layout) -> PathBuf {
        layout.framework().join(format!("displaced-{}", self.n))
    }
}

pub(super) fn journal_path(layout: &Layout) -> PathBuf {
    layout.framework().join("journal.json")
}

pub(super) fn save_journal(layout: &Layout, j: &Journal) -> Result<()> {
    let value = serde_json::to_value(j).context("serializing the framework journal")?;
    fs::write_json_atomic(&journal_path(layout), &value)
}

pub(super) fn remove_journal(layout: &Layout) -> Result<()> {
    let p = journal_path(layout);
    fs::remove_all(&p)?;
    fs::sync_parent(&p)
}

/// The journal of an install by the earlier symlink design (`gen-<N>/`, `current`, links),
/// left by a crash before updater was upgraded: repaired the way that design did.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct EarlierJournal {
    pub(super) step: Step,
    pub(super) new_gen: String,
    pub(super) old_gen: Option<String>,
    pub(super) displaced: String,
    pub(super) entries: Vec<String>,
    #[serde(default)]
    pub(super) moved: Vec<String>,
    #[serde(default)]
    pub(super) links_created: Vec<String>,
    pub(super) version: Option<String>,
}

/// A framework journal on disk.
pub(super) enum Pending {
    Now(Journal),
    Earlier(EarlierJournal),
}

/// Reads the framework journal; names in it become paths, so every one is validated.
pub(super) fn load_journal(layout: &Layout) -> Result<Option<Pending>> {
    let p = journal_path(layout);
    let text = match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("reading {}", p.display()))?,
    };
    let corrupt = || {
        format!(
            "the framework journal {} is corrupt; run `updater doctor`, check the root's framework files, then remove it",
            p.display()
        )
    };
    let doc: Value = serde_json::from_str(&text).with_context(corrupt)?;
    if doc.get("new_gen").is_some() {
        let j: EarlierJournal = serde_json::from_value(doc).with_context(corrupt)?;
        let gens_ok = gen_number(&j.new_gen, "gen-").is_some()
            && j.old_gen
                .as_deref()
                .is_none_or(|g| gen_number(g, "gen-").is_some())
            && gen_number(&j.displaced, "displaced-").is_some();
        let names_ok = j
            .entries
            .iter()
            .chain(&j.moved)
            .chain(&j.links_created)
            .all(|n| validate_entry(n).is_ok_and(|v| &v == n));
        if !gens_ok || !names_ok {
            return Err(anyhow::anyhow!("a name in it is not a framework name"))
                .with_context(corrupt);
        }
        return Ok(Some(Pending::Earlier(j)));
    }
    let j: Journal = serde_json::from_value(doc).with_context(corrupt)?;
    let names_ok = j
        .entries
        .iter()
        .chain(j.switches.iter().map(|s| &s.name))
        .all(|n| validate_entry(n).is_ok_and(|v| &v == n));
    let ids_ok = j.switches.iter().all(|s| match s.kind {
        Kind::Replace => s.staged_id.is_some() && s.old_id.is_some() && s.old.is_some(),
        Kind::Create => s.staged_id.is_some(),
        Kind::Remove => s.old_id.is_some() && s.old.is_some(),
    });
    if !names_ok || !ids_ok || j.n == 0 || j.n > 1 << 60 {
        return Err(anyhow::anyhow!(
            "a name in it is not a framework name, or a switch is incomplete"
        ))
        .with_context(corrupt);
    }
    Ok(Some(Pending::Now(j)))
}

/// What a repair would do (for check).
pub fn pending(layout: &Layout) -> Result<Vec<String>> {
    Ok(match load_journal(layout)? {
        None => Vec::new(),
        Some(Pending::Earlier(j)) if j.step == Step::Committed => {
            vec!["framework: an interrupted commit (earlier symlink layout) will be completed".to_string()]
        }
        Some(Pending::Earlier(j)) => vec![format!(
            "framework: an interrupted update to {} (earlier symlink layout) will be rolled back and retried",
            j.version.as_deref().unwrap_or("a new version")
        )],
        Some(Pending::Now(j)) if j.step == Step::Committed => {
            vec!["framework: an interrupted commit will be completed".to_string()]
        }
        Some(Pending::Now(j)) => vec![format!(
            "framework: an interrupted update to {} will be rolled back and retried",
            j.version.as_deref().unwrap_or("a new version")
        )],
    })
}
