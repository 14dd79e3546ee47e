//! What a run tells people and programs (SPEC §6b): the decision log lines with the upstream
//! wording, the results, the closing line, and the `--json` document.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::git::SyncedRepo;
use crate::outcome::{ModuleResult, Outcome};
use crate::plan::{Action, Decision, Plan};

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
            Decision::Deferred => {
                let (bucket, percent) = m.rollout.unwrap_or((None, 0));
                log::info!(
                    "Module {} {available} is deferred: this machine's bucket is {} and the rollout is at {percent}% (pass --phased always to take it now)",
                    m.name,
                    bucket.map_or("unknown (no machine id)".to_string(), |b| b.to_string())
                )
            }
            Decision::NotTargeted => log::info!(
                "Module {} {available} does not target this machine; not installed (installed: {installed})",
                m.name
            ),
        }
    }
}

/// Counts for the summary (SPEC §6b `summary`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// The `--json` document of check and sync (SPEC §6b), field for field.
#[derive(Debug, Serialize)]
pub struct RunDocument<'a> {
    pub command: &'a str,
    pub repository: RepositoryRow<'a>,
    pub modules: Vec<ModuleRow<'a>>,
    pub summary: Summary,
}

/// `repository` of [`RunDocument`].
#[derive(Debug, Serialize)]
pub struct RepositoryRow<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
}

/// One of `modules` of [`RunDocument`]. `content` and `framework` rows add their own fields to
/// the serialized document (`content::annotate`, `framework::add_row`).
#[derive(Debug, Serialize)]
pub struct ModuleRow<'a> {
    pub name: &'a str,
    pub decision: Decision,
    pub installed: Option<&'a str>,
    pub available: Option<&'a str>,
    /// `null` for a module whose files this run did not change.
    pub result: Option<&'static str>,
    pub error: Option<String>,
    pub duration_ms: Option<u128>,
    pub details: Option<Value>,
    /// `deferred` only: this machine's bucket (0-99; null without a machine id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Option<u8>>,
    /// `deferred` only: the version's `metadata.rollout.percent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// An update that failed after its swap: how the old copy was restarted
    /// (`{"ran": …, "ok": …, "step": …, "version": …, "error": …}`, see `outcome::Restart`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<crate::outcome::Restart>,
}

/// The `--json` document of SPEC §6b.
pub fn json_document(
    command: &str,
    repo: &SyncedRepo,
    plan: &Plan,
    outcomes: &BTreeMap<String, Outcome>,
) -> Value {
    let modules = plan
        .modules
        .iter()
        .map(|m| {
            let o = outcomes.get(&m.name);
            ModuleRow {
                name: &m.name,
                decision: m.decision,
                installed: m.installed.as_deref(),
                available: m.available.as_deref(),
                result: o.and_then(|o| o.result.json_word()),
                error: o.and_then(|o| o.error.clone()).or_else(|| m.error.clone()),
                duration_ms: o.and_then(|o| o.duration_ms),
                details: o.and_then(|o| o.details.clone()),
                bucket: m.rollout.map(|r| r.0),
                percent: m.rollout.map(|r| r.1),
                rollback: o.and_then(|o| o.rollback.clone()),
            }
        })
        .collect();
    to_value(&RunDocument {
        command,
        repository: RepositoryRow {
            url: &repo.url,
            branch: &repo.branch,
            commit: &repo.commit,
        },
        modules,
        summary: summarize(plan, outcomes),
    })
}

/// The `--json` document of a run that could not proceed (SPEC §6b `error`).
#[derive(Debug, Serialize)]
pub struct ErrorDocument<'a> {
    pub command: &'a str,
    pub modules_path: &'a std::path::Path,
    pub error: String,
    pub exit_code: u8,
}

/// `sync` while updates are inhibited: the one `--json` document (it applies nothing).
#[derive(Serialize)]
pub struct InhibitedDocument<'a> {
    pub command: &'a str,
    pub modules_path: &'a std::path::Path,
    pub inhibited: Value,
    pub exit_code: u8,
}

/// `{"reason": …, "path": …}` of the inhibit switch.
pub fn inhibited_value(i: &crate::commands::settings::Inhibit) -> Value {
    serde_json::json!({ "reason": i.reason, "path": i.path })
}

/// `{"open": false, "spec": …, "next_open": …}` of a closed update window.
pub fn window_value(w: &crate::commands::settings::ClosedWindow) -> Value {
    serde_json::json!({
        "open": false,
        "spec": w.spec,
        "next_open": crate::clock::iso8601_unix(w.next_open),
    })
}

/// A report struct as a JSON value. Cannot fail for the report structs (string keys, no
/// fallible `Serialize`); were it to, the document says so instead of panicking.
pub fn to_value<T: Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc).unwrap_or_else(|e| {
        let mut m = serde_json::Map::new();
        m.insert(
            "error".to_string(),
            Value::String(format!("building the JSON document: {e}")),
        );
        Value::Object(m)
    })
}

/// Prints a JSON document on stdout (through the one printer, `output`).
pub fn print_json(value: &Value) {
    crate::output::json(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text<T: Serialize>(doc: &T) -> String {
        to_value(doc).to_string()
    }

    #[test]
    fn the_run_document_has_the_fields_of_spec_6b_in_their_order() {
        let doc = RunDocument {
            command: "sync",
            repository: RepositoryRow {
                url: "https://x/r.git",
                branch: "main",
                commit: "abc",
            },
            modules: vec![ModuleRow {
                name: "web",
                decision: Decision::Update,
                installed: Some("1.0.0"),
                available: Some("1.1.0"),
                result: ModuleResult::Ran.json_word(),
                error: None,
                duration_ms: Some(5),
                details: None,
                bucket: None,
                percent: None,
                rollback: None,
            }],
            summary: Summary {
                to_apply: 1,
                applied: 2,
                failed: 3,
                skipped: 4,
                invalid: 5,
                standby: 6,
            },
        };
        let expected = json!({
            "command": "sync",
            "repository": {"url": "https://x/r.git", "branch": "main", "commit": "abc"},
            "modules": [{
                "name": "web",
                "decision": "update",
                "installed": "1.0.0",
                "available": "1.1.0",
                "result": null,
                "error": null,
                "duration_ms": 5,
                "details": null,
            }],
            "summary": {
                "to_apply": 1, "applied": 2, "failed": 3, "skipped": 4, "invalid": 5, "standby": 6,
            },
        });
        assert_eq!(text(&doc), expected.to_string());
    }

    #[test]
    fn the_error_and_doctor_documents_have_the_fields_of_before_in_their_order() {
        let doc = ErrorDocument {
            command: "check",
            modules_path: std::path::Path::new("/srv/updates"),
            error: "no".into(),
            exit_code: 1,
        };
        let expected = json!({
            "command": "check", "modules_path": "/srv/updates", "error": "no", "exit_code": 1,
        });
        assert_eq!(text(&doc), expected.to_string());
        let doc = crate::doctor::DoctorDocument {
            command: "doctor",
            ok: false,
            findings: vec![crate::doctor::FindingRow {
                problem: "p",
                fix: "f",
            }],
        };
        let expected = json!({
            "command": "doctor", "ok": false, "findings": [{"problem": "p", "fix": "f"}],
        });
        assert_eq!(text(&doc), expected.to_string());
    }
}
