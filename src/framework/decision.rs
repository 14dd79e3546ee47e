//! The framework's plan and report: what the repository offers against what is installed
//! (`new`, `update`, `up_to_date`, `local_ahead`, or a repair of missing files or earlier-layout
//! links at the same version), logged as the Python orchestrator did, and the [`Row`] a run
//! reports (first in `modules`, `"kind": "framework"`).

use anyhow::Result;
use serde_json::{json, Value};

use super::entries::{installed_path, legacy_links, Offer};
use super::points::ROW_NAME;
use crate::fs;
use crate::layout::Layout;
use crate::outcome::{ModuleResult, Outcome};
use crate::version::Version;

/// What a run decided (and did) about the framework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `new`, `update`, `up_to_date`, `local_ahead` or `invalid`.
    pub decision: &'static str,
    pub installed: Option<String>,
    pub available: Option<String>,
    /// `applied`, `rolled_back` or None (nothing done).
    pub result: Option<&'static str>,
    pub error: Option<String>,
    pub duration_ms: Option<u128>,
}

impl Row {
    /// Whether the framework is in a state modules can run against (nothing failed).
    pub fn is_ok(&self) -> bool {
        self.decision != "invalid" && self.result != Some("rolled_back")
    }

    /// Whether the installed index may take the repository index's `metadata` (its
    /// `schema_version` is the framework's): not when the framework was refused, rolled back, or
    /// is ahead of the repository.
    pub fn index_takes_repository_metadata(&self) -> bool {
        self.is_ok() && self.decision != "local_ahead"
    }

    /// The `--json` row (in `modules`, first; `kind` tells it from a module of the same name).
    pub fn json(&self) -> Value {
        json!({
            "name": ROW_NAME,
            "kind": "framework",
            "decision": self.decision,
            "installed": self.installed,
            "available": self.available,
            "result": self.result,
            "error": self.error,
            "duration_ms": self.duration_ms,
        })
    }
}

/// Inserts the framework row first in a report document's `modules`.
pub fn add_row(doc: &mut Value, row: Option<&Row>) {
    if let (Some(row), Some(Value::Array(modules))) = (row, doc.get_mut("modules")) {
        modules.insert(0, row.json());
    }
}

/// The outcomes of a sync whose framework could not be installed: every module it would apply
/// is skipped (modules import the framework), with the reason.
pub fn skip_all(plan: &crate::plan::Plan) -> std::collections::BTreeMap<String, Outcome> {
    log::error!("No module is applied: the framework files could not be installed");
    plan.to_apply()
        .map(|m| {
            let o = Outcome::new(
                ModuleResult::Skipped,
                Some("the framework files could not be installed".to_string()),
            );
            (m.name.clone(), o)
        })
        .collect()
}

/// Why an install at the same version is needed (logged), if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repair {
    None,
    /// A framework file is missing from the install root.
    Missing,
    /// The root entries are links of the earlier symlink layout.
    Links,
}

/// The decision for the framework and whether it must be installed; None when the repository
/// has no framework files (nothing to report).
pub(super) fn decide(
    layout: &Layout,
    offer: &Offer,
    installed: Option<&str>,
) -> Result<Option<(&'static str, bool, Repair)>> {
    if offer.entries.is_empty() {
        return Ok(None);
    }
    let present: Vec<bool> = offer
        .entries
        .iter()
        .map(|n| std::fs::metadata(layout.root.join(n)).is_ok())
        .collect();
    let any_missing = present.iter().any(|p| !p);
    let links = !legacy_links(layout)?.is_empty();
    let ever = fs::exists_no_follow(&installed_path(layout))
        || fs::exists_no_follow(&layout.framework().join("current"));
    if present.iter().all(|p| !p) && !ever && !links {
        return Ok(Some(("new", true, Repair::None)));
    }
    let ord = match (&offer.version, installed) {
        (Some(r), Some(i)) => match (Version::parse(r), Version::parse(i)) {
            (Ok(r), Ok(i)) => Some(r.cmp(&i)),
            (Ok(_), Err(e)) => {
                log::warn!("the installed index's schema_version cannot be read ({e}); the framework will be reinstalled");
                Some(std::cmp::Ordering::Greater)
            }
            _ => None,
        },
        (Some(_), None) => Some(std::cmp::Ordering::Greater),
        _ => None,
    };
    let repair = if any_missing {
        Repair::Missing
    } else if links {
        Repair::Links
    } else {
        Repair::None
    };
    Ok(Some(match ord {
        Some(std::cmp::Ordering::Greater) => ("update", true, repair),
        Some(std::cmp::Ordering::Less) if !any_missing => {
            if links {
                log::warn!("The framework files are still links into .updater/framework/ (an earlier updater's layout); they become real files with the next framework update the repository offers");
            }
            ("local_ahead", false, Repair::None)
        }
        _ if repair != Repair::None => ("update", true, repair),
        _ => ("up_to_date", false, Repair::None),
    }))
}

pub(super) fn log_decision(row: &Row, repair: Repair) {
    let installed = row.installed.as_deref().unwrap_or("none");
    let available = row.available.as_deref().unwrap_or("none");
    match row.decision {
        "new" | "update" => {
            log::info!("Orchestrator needs update: {installed} → {available}");
            match repair {
                Repair::Missing => log::info!(
                    "Some framework files are missing from the install root; reinstalling them"
                ),
                Repair::Links => log::info!(
                    "The framework files are links into .updater/framework/ (an earlier updater's layout); reinstalling them as real files"
                ),
                Repair::None => {}
            }
        }
        "local_ahead" => log::warn!(
            "Orchestrator is ahead of the repository: installed {installed}, repository {available}"
        ),
        _ => log::info!("Orchestrator is up to date: {installed}"),
    }
}
