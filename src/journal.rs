//! The intent journal `.updater/journal.json`: one entry per module whose update is in flight,
//! written durably before each step that changes it, and removed once the module is committed or
//! rolled back. The next run reads it first and repairs (see `recover`).
//!
//! Which copy sits where is decided by inode, not by the recorded step: the staged copy's inode
//! is recorded before the swap, and `renameat2(RENAME_EXCHANGE)` keeps inodes, so recovery can
//! tell whether the swap happened even when the process died right after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fs;

/// How far a module's update got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Copying into staging and snapshotting `backup_paths`; nothing installed has changed.
    Staging,
    /// The staged copy is (about to be) swapped in; its entry may have run. Not committed:
    /// recovery puts the old copy and the `backup_paths` back.
    Swapped,
    /// Entry and health check passed; the new copy stays. Recovery finishes the clean-up.
    Committed,
    /// The update failed after the swap and the old copy is back, but the old copy's rollback
    /// step (or entry) has yet to run to restart what the new copy's entry stopped (see
    /// `lifecycle`). Recovery runs it (again: it must be idempotent).
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub step: Step,
    /// Version being installed.
    pub version: String,
    /// Inode of the staged copy's root directory, once it exists.
    #[serde(default)]
    pub new_ino: Option<u64>,
    /// Whether an installed copy existed before (an update rather than an install).
    pub had_old: bool,
    /// The `backup_paths` snapshotted into staging (restored on rollback).
    #[serde(default)]
    pub backup_paths: Vec<PathBuf>,
    /// Whether the working paths are `staging/<name>/{tree,paths,discard}` (this version). An
    /// entry without it was written by the previous version, whose working paths were
    /// `staging/<name>`, `staging/<name>.paths` and `staging/<name>.discard`; recovery still
    /// finds them there.
    #[serde(default)]
    pub per_module_dir: bool,
    /// Whether the new copy's steps run after the swap (an update whose entry runs): undoing
    /// it must then restart the old copy (step [`Step::Restart`]). Absent in entries written
    /// before the lifecycle existed, and when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_old: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    modules: BTreeMap<String, Entry>,
}

/// The journal, shared by the threads that apply modules in parallel.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    doc: Mutex<Doc>,
}

impl Journal {
    /// Reads the journal; a missing one is empty. A corrupt one is an error naming the file.
    pub fn load(path: &Path) -> Result<Journal> {
        let doc = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            Ok(text) => parse(&text).with_context(|| {
                format!(
                    "the journal {} is corrupt; run `updater doctor`, check the modules it names, then remove it",
                    path.display()
                )
            })?,
        };
        Ok(Journal {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })
    }

    /// Entries of interrupted updates, by module name.
    pub fn entries(&self) -> BTreeMap<String, Entry> {
        self.lock().modules.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().modules.is_empty()
    }

    /// Records `entry` for `name`, durably, before the step it describes is taken.
    pub fn set(&self, name: &str, entry: Entry) -> Result<()> {
        let mut doc = self.lock();
        doc.modules.insert(name.to_string(), entry);
        self.write(&doc)
    }

    /// Forgets `name` (its update is committed or rolled back).
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut doc = self.lock();
        if doc.modules.remove(name).is_some() {
            self.write(&doc)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Doc> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.doc.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, doc: &Doc) -> Result<()> {
        if doc.modules.is_empty() {
            fs::remove_all(&self.path)?;
            return fs::sync_parent(&self.path);
        }
        let value = serde_json::to_value(doc)
            .with_context(|| format!("serializing {}", self.path.display()))?;
        fs::write_json_atomic(&self.path, &value)
    }
}

/// Parses journal text; public for the property tests.
fn parse(text: &str) -> Result<Doc> {
    let doc: Doc = serde_json::from_str(text)?;
    // Names become paths during repair: anything but one path component of module-name
    // characters is refused. Names longer than a module name may be (128 bytes) but within
    // NAME_MAX were accepted by the previous version: they load, and recovery sets them aside.
    if let Some(bad) = doc.modules.keys().find(|n| !journal_name(n)) {
        anyhow::bail!("{bad:?} is not a module name");
    }
    Ok(doc)
}

/// A module name of the previous version: module-name characters, at most 255 bytes.
fn journal_name(name: &str) -> bool {
    name.len() <= 255
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether `text` is a readable journal (for `doctor` and the parser tests).
pub fn validate(text: &str) -> Result<usize> {
    Ok(parse(text)?.modules.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_remove_round_trip_and_empty_journal_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        let j = Journal::load(&p).unwrap();
        let e = Entry {
            step: Step::Swapped,
            version: "1.0.0".into(),
            new_ino: Some(42),
            had_old: true,
            backup_paths: vec![PathBuf::from("/etc/x")],
            per_module_dir: true,
            restart_old: true,
        };
        j.set("m", e.clone()).unwrap();
        assert_eq!(Journal::load(&p).unwrap().entries()["m"], e);
        j.remove("m").unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn journal_names_that_are_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        std::fs::write(
            &p,
            r#"{"modules":{"../../victim":{"step":"staging","version":"1.0.0","had_old":true}}}"#,
        )
        .unwrap();
        let e = format!("{:#}", Journal::load(&p).unwrap_err());
        assert!(
            e.contains("journal.json") && e.contains("not a module name"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_journal_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        std::fs::write(&p, "{\"modules\": {\"m\": {\"step\": \"nope\"").unwrap();
        let e = format!("{:#}", Journal::load(&p).unwrap_err());
        assert!(e.contains("journal.json") && e.contains("corrupt"), "{e}");
    }
}
