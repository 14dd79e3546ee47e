//! The state file `.updater/state.json`: the last commit this machine applied and the last
//! result of each module (for `status`, retries and the rewind check). Written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fs;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModuleState {
    /// `applied`, `rolled_back`, `skipped`, `removed` or `rollback`.
    pub result: String,
    /// The version the result concerns (the one tried, or the one put back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When (UTC, ISO 8601).
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The commit the last sync applied from, even partly (the rewind check's anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Modules the last check or sync found to install or update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates_available: Option<usize>,
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleState>,
    #[serde(skip)]
    path: PathBuf,
    /// Read by [`State::load_head`]: `modules` was not read, so the state cannot be saved.
    #[serde(skip)]
    head_only: bool,
}

impl State {
    /// Reads the state file; a missing one is an empty state. A corrupt one is an error naming
    /// the file (it is never silently discarded).
    pub fn load(path: &Path) -> Result<State> {
        let Some(text) = crate::fs::read_optional(path)? else {
            return Ok(State {
                path: path.to_path_buf(),
                ..State::default()
            });
        };
        let mut state = parse(&text).with_context(|| {
            format!(
                "{} is not a valid state file (remove it to start afresh)",
                path.display()
            )
        })?;
        state.path = path.to_path_buf();
        Ok(state)
    }

    /// [`State::load`] without the per-module results (`modules` is left empty): what a check
    /// needs (the last commit, the updates-available figure), without reading the results of
    /// 10,000 modules. Such a state cannot be saved; [`State::set_updates_available`] writes
    /// that figure.
    pub fn load_head(path: &Path) -> Result<State> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            last_commit: Option<String>,
            #[serde(default)]
            last_run: Option<String>,
            #[serde(default)]
            updates_available: Option<usize>,
            #[serde(default, rename = "modules")]
            _modules: serde::de::IgnoredAny,
        }
        let Some(text) = crate::fs::read_optional(path)? else {
            return Ok(State {
                path: path.to_path_buf(),
                ..State::default()
            });
        };
        let parsed = (|| -> Result<State> {
            if !text.trim_start().starts_with('{') {
                anyhow::bail!("expected a JSON object");
            }
            let head: Head = serde_json::from_str(&text)?;
            let state = State {
                last_commit: head.last_commit,
                last_run: head.last_run,
                updates_available: head.updates_available,
                ..State::default()
            };
            check_commit(&state)?;
            Ok(state)
        })()
        .with_context(|| {
            format!(
                "{} is not a valid state file (remove it to start afresh)",
                path.display()
            )
        })?;
        Ok(State {
            path: path.to_path_buf(),
            head_only: true,
            ..parsed
        })
    }

    /// Sets `updates_available` in the state file at `path` (read whole, then rewritten).
    pub fn set_updates_available(path: &Path, available: Option<usize>) -> Result<()> {
        let mut state = State::load(path)?;
        state.updates_available = available;
        state.save()
    }

    pub fn save(&self) -> Result<()> {
        if self.head_only {
            anyhow::bail!(
                "{}: refusing to save a state read without its module results",
                self.path.display()
            );
        }
        let value = serde_json::to_value(self)
            .with_context(|| format!("serializing {}", self.path.display()))?;
        fs::write_json_atomic(&self.path, &value)
    }

    pub fn record(&mut self, name: &str, result: &str, version: Option<&str>, error: Option<&str>) {
        self.modules.insert(
            name.to_string(),
            ModuleState {
                result: result.to_string(),
                version: version.map(str::to_string),
                time: crate::clock::now_iso8601(),
                error: error.map(str::to_string),
            },
        );
    }
}

/// Parses state text: an object whose `last_commit`, if any, is a commit id.
fn parse(text: &str) -> Result<State> {
    // Straight into the typed struct (no intermediate `Value`: a state file of 10,000 modules
    // would be held twice).
    if !text.trim_start().starts_with('{') {
        anyhow::bail!("expected a JSON object");
    }
    let state: State = serde_json::from_str(text)?;
    check_commit(&state)?;
    Ok(state)
}

/// `last_commit`, if any, is a commit id.
fn check_commit(state: &State) -> Result<()> {
    if let Some(c) = &state.last_commit {
        let hex = c.len() == 40 || c.len() == 64;
        if !hex || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!("last_commit {c:?} is not a commit id");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut s = State::load(&p).unwrap();
        s.last_commit = Some("ab".repeat(20));
        s.record("m", "applied", Some("1.0.0"), None);
        s.save().unwrap();
        let back = State::load(&p).unwrap();
        assert_eq!(back.modules["m"].result, "applied");
        assert_eq!(back.last_commit, Some("ab".repeat(20)));
        for bad in ["[\"zz\"]", "{\"last_commit\": \"zz\"}"] {
            std::fs::write(&p, bad).unwrap();
            let e = format!("{:#}", State::load(&p).unwrap_err());
            assert!(e.contains("state.json"), "{e}");
        }
        std::fs::write(&p, "{\"modules\": 3").unwrap();
        let e = format!("{:#}", State::load(&p).unwrap_err());
        assert!(e.contains("state.json"), "{e}");
    }
}
