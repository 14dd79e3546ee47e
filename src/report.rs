//! What a run tells people and programs (SPEC §6b): the decision log lines with the upstream
//! wording, the results, the closing line, and the `--json` document.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::git::SyncedRepo;
use crate::plan::{Action, Decision, Plan};

/// The result of applying one module in a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `applied`, `rolled_back`, `skipped` or `removed`.
    pub result: &'static str,
    pub error: Option<String>,
    pub duration_ms: Option<u128>,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.result == "applied" || self.result == "removed"
    }
}

/// The closing line of a successful run, which the admin UI looks for.
pub const SUCCESS_LINE: &str = "✓ Update system completed successfully";

/// Logs one line per module with the upstream wording, then the `Found N …` line.
pub fn log_decisions(plan: &Plan) {
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
    let names: Vec<&str> = plan.to_apply().map(|m| m.name.as_str()).collect();
    if names.is_empty() {
        log::info!("No updates available");
    } else {
        log::info!(
            "Found {} modules to update: {}",
            names.len(),
            names.join(", ")
        );
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
}

pub fn summarize(plan: &Plan, outcomes: &BTreeMap<String, Outcome>) -> Summary {
    let count = |r: &str| outcomes.values().filter(|o| o.result == r).count();
    Summary {
        to_apply: plan.to_apply().count(),
        applied: count("applied") + count("removed"),
        failed: count("rolled_back"),
        skipped: count("skipped"),
        invalid: plan.invalid_count(),
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
                "result": o.map(|o| o.result),
                "error": o.and_then(|o| o.error.clone()).or_else(|| m.error.clone()),
                "duration_ms": o.and_then(|o| o.duration_ms),
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
        },
    })
}

/// Prints a JSON document on stdout (through the one printer, `output`).
pub fn print_json(value: &Value) {
    crate::output::json(value);
}
