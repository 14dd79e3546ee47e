//! What happened to each module in a run: the [`ModuleResult`] vocabulary (SPEC §6b `result`,
//! and the words of the state file) and the [`Outcome`] of one module. `apply` and `schedule`
//! produce them; `report`, `state`, `metrics` and `hooks` read them.

use serde_json::Value;

/// The word `updater rollback` records in the state file for a module it put back (a success:
/// the kept copy was put back on request). Not a result a sync produces.
pub const ROLLBACK_WORD: &str = "rollback";

/// What happened to one module in a sync (SPEC §6b `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleResult {
    /// Installed or updated, entry point and health check passed, committed.
    Applied,
    /// An install or update failed and the old copy was put back.
    RolledBack,
    /// Under `--run enabled`: an unchanged module's entry point failed; its `backup_paths` were
    /// restored, its files were untouched.
    Failed,
    /// Under `--run enabled`: an unchanged module's entry point ran and succeeded. Shown as
    /// `result: null` in JSON (the SPEC's "nothing to do" for the module's files).
    Ran,
    /// Not run because of a dependency, a stop request or an error before it started.
    Skipped,
    /// A group member that did not run because another member of its group runs (SPEC §5).
    Standby,
    /// Removed with `--prune` (kept as its backup).
    Removed,
}

impl ModuleResult {
    /// Every result.
    pub const ALL: [ModuleResult; 7] = [
        ModuleResult::Applied,
        ModuleResult::RolledBack,
        ModuleResult::Failed,
        ModuleResult::Ran,
        ModuleResult::Skipped,
        ModuleResult::Standby,
        ModuleResult::Removed,
    ];

    /// The word used in logs and in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleResult::Applied => "applied",
            ModuleResult::RolledBack => "rolled_back",
            ModuleResult::Failed => "failed",
            ModuleResult::Ran => "ran",
            ModuleResult::Skipped => "skipped",
            ModuleResult::Standby => "standby",
            ModuleResult::Removed => "removed",
        }
    }

    /// The `result` of the JSON row: `null` for a run that changed no files.
    pub fn json_word(self) -> Option<&'static str> {
        match self {
            ModuleResult::Ran => None,
            other => Some(other.as_str()),
        }
    }

    /// Whether the module is where this run wanted it: dependants may run, and it does not make
    /// the exit code 3. `standby` is not a failure (SPEC §5).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            ModuleResult::Applied
                | ModuleResult::Ran
                | ModuleResult::Standby
                | ModuleResult::Removed
        )
    }

    /// Whether a result word recorded in the state file means success. `rollback` is what
    /// `updater rollback` records (the kept copy was put back on request).
    pub fn word_is_success(word: &str) -> bool {
        word == ROLLBACK_WORD
            || ModuleResult::ALL
                .iter()
                .any(|r| r.is_success() && r.as_str() == word)
    }
}

/// The result of one module in a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: ModuleResult,
    pub error: Option<String>,
    pub duration_ms: Option<u128>,
    /// What a Python `main` returned beyond `success` (SPEC §6b `details`); `None` when nothing.
    pub details: Option<Value>,
    /// An update that failed after its swap: how the old copy was restarted (`lifecycle`).
    /// `None` for every other outcome.
    pub rollback: Option<Restart>,
}

/// How the old copy was restarted after a failed update (`lifecycle::restart_old`): the
/// `rollback` object of the module's `--json` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restart {
    /// Whether a program ran: false for a new module (no old copy) or an old copy that has
    /// neither a rollback step nor an entry point.
    pub ran: bool,
    /// Whether the restart succeeded (true when nothing had to run).
    pub ok: bool,
    /// Which step of the old copy ran: `"rollback"` or `"entry"`; `None` when none ran.
    pub step: Option<&'static str>,
    /// The version the module was rolled back to (`None` for a new module).
    pub version: Option<String>,
    /// Why the restart failed.
    pub error: Option<String>,
}

impl Restart {
    /// Nothing to restart (a new module): `ran: false, ok: true`.
    pub fn nothing(version: Option<String>) -> Restart {
        Restart {
            ran: false,
            ok: true,
            step: None,
            version,
            error: None,
        }
    }

    /// The words of the human result line: "rolled back to X; old version restarted", …
    pub fn describe(&self) -> String {
        let to = match &self.version {
            Some(v) => format!("rolled back to {v}"),
            None => "it was not installed".to_string(),
        };
        match (self.ran, self.ok, &self.error) {
            (true, true, _) => format!(
                "{to}; old version restarted (its {})",
                match self.step {
                    Some("rollback") => "rollback step",
                    _ => "entry point",
                }
            ),
            (false, true, _) if self.version.is_some() => {
                format!("{to}; the old copy has no rollback step or entry point to restart")
            }
            (false, true, _) => to,
            (_, false, e) => format!(
                "{to}; restart FAILED: {}",
                e.as_deref().unwrap_or("unknown reason")
            ),
        }
    }
}

impl Outcome {
    /// An outcome without duration or details.
    pub fn new(result: ModuleResult, error: Option<String>) -> Outcome {
        Outcome {
            result,
            error,
            duration_ms: None,
            details: None,
            rollback: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.result.is_success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_agree_with_the_results() {
        for r in ModuleResult::ALL {
            assert_eq!(ModuleResult::word_is_success(r.as_str()), r.is_success());
            assert_eq!(
                serde_json::to_value(r).expect("serialize"),
                Value::String(r.as_str().to_string())
            );
        }
        assert!(ModuleResult::word_is_success(ROLLBACK_WORD));
        assert!(!ModuleResult::word_is_success("unknown"));
    }
}
