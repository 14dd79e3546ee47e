//! What a run tells people and programs (SPEC §6b): the decision log lines with the upstream
//! wording, the results, the closing line, and the `--json` document.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::git::SyncedRepo;
use crate::plan::{Action, Decision, Plan};

/// What happened to one module in a sync (SPEC §6b `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        matches!(word, "applied" | "ran" | "standby" | "removed" | "rollback")
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
}

impl Outcome {
    /// An outcome without duration or details.
    pub fn new(result: ModuleResult, error: Option<String>) -> Outcome {
        Outcome {
            result,
            error,
            duration_ms: None,
            details: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.result.is_success()
    }
}

/// The closing line of a successful run, which the admin UI looks for.
pub const SUCCESS_LINE: &str = "✓ Update system completed successfully";

/// Logs one line per module with the upstream wording, then the `Found N …` line.
pub fn log_decisions(plan: &Plan) {
    log_decision_lines(plan);
    log_found(plan, false);
}

/// The closing decision lines: `Found N modules to update: …` when there are any; then
/// `Updates are available` when `content_updates` (a check's content updates) or modules to
/// apply exist, else `No updates available`. Sync does not say `Updates are available`.
pub fn log_found(plan: &Plan, check: bool) -> bool {
    let names: Vec<&str> = plan.to_apply().map(|m| m.name.as_str()).collect();
    if !names.is_empty() {
        log::info!(
            "Found {} modules to update: {}",
            names.len(),
            names.join(", ")
        );
    }
    let any = !names.is_empty() || (check && plan.content_updates > 0);
    if !any {
        log::info!("No updates available");
    } else if check {
        log::info!("Updates are available");
    }
    any
}

/// Logs one line per module with the upstream wording (and the plan's warnings).
pub fn log_decision_lines(plan: &Plan) {
    crate::metrics::note_plan(plan);
    for w in &plan.warnings {
        log::warn!("{w}");
    }
    for m in &plan.modules {
        let installed = m.installed.as_deref().unwrap_or("none");
        let available = m.available.as_deref().unwrap_or("none");
        match m.decision {
            Decision::New | Decision::Update => {
                log::info!("Module {} needs update: {installed} → {available}", m.name)
            }
            Decision::UpToDate => log::info!("Module {} is up to date: {installed}", m.name),
            Decision::LocalAhead => {
                if m.action == Action::Install {
                    log::warn!(
                        "Module {} needs update: {installed} → {available} (downgrade allowed)",
                        m.name
                    )
                } else {
                    log::warn!(
                        "Module {} is ahead of the repository: installed {installed}, repository {available} (pass --allow-downgrade to install it)",
                        m.name
                    )
                }
            }
            Decision::Orphaned => {
                if m.action == Action::Remove {
                    log::info!(
                        "Module {} is no longer in the repository and will be removed",
                        m.name
                    )
                } else {
                    log::info!(
                        "Module {} is installed but no longer in the repository (pass --prune to remove it)",
                        m.name
                    )
                }
            }
            Decision::Held => log::info!(
                "Module {} is held at {installed} (enabled: false); skipping",
                m.name
            ),
            Decision::Invalid => log::error!(
                "Module {} is invalid: {}",
                m.name,
                m.error.as_deref().unwrap_or("unknown reason")
            ),
        }
    }
}

/// Counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub to_apply: usize,
    pub applied: usize,
    pub failed: usize,
    pub skipped: usize,
    pub invalid: usize,
    /// Group members that did not run because another one runs (not a failure).
    pub standby: usize,
}

pub fn summarize(plan: &Plan, outcomes: &BTreeMap<String, Outcome>) -> Summary {
    let count = |r: ModuleResult| outcomes.values().filter(|o| o.result == r).count();
    Summary {
        to_apply: plan.to_apply().count(),
        applied: count(ModuleResult::Applied) + count(ModuleResult::Removed),
        failed: count(ModuleResult::RolledBack) + count(ModuleResult::Failed),
        skipped: count(ModuleResult::Skipped),
        invalid: plan.invalid_count(),
        standby: count(ModuleResult::Standby),
    }
}

/// The `--json` document of SPEC §6b.
pub fn json_document(
    command: &str,
    repo: &SyncedRepo,
    plan: &Plan,
    outcomes: &BTreeMap<String, Outcome>,
) -> Value {
    let modules: Vec<Value> = plan
        .modules
        .iter()
        .map(|m| {
            let o = outcomes.get(&m.name);
            json!({
                "name": m.name,
                "decision": m.decision.as_str(),
                "installed": m.installed,
                "available": m.available,
                "result": o.and_then(|o| o.result.json_word()),
                "error": o.and_then(|o| o.error.clone()).or_else(|| m.error.clone()),
                "duration_ms": o.and_then(|o| o.duration_ms),
                "details": o.and_then(|o| o.details.clone()),
            })
        })
        .collect();
    let s = summarize(plan, outcomes);
    json!({
        "command": command,
        "repository": { "url": repo.url, "branch": repo.branch, "commit": repo.commit },
        "modules": modules,
        "summary": {
            "to_apply": s.to_apply,
            "applied": s.applied,
            "failed": s.failed,
            "skipped": s.skipped,
            "invalid": s.invalid,
            "standby": s.standby,
        },
    })
}

/// Prints a JSON document on stdout (through the one printer, `output`).
pub fn print_json(value: &Value) {
    crate::output::json(value);
}
