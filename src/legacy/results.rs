//! What a legacy run tells people and programs: each child's result, its final log line, the
//! summary and the `--json` document (fields as upstream's, `lastApplied` included).

use std::path::Path;

use serde_json::Value;

use super::Manifest;

/// What happened to one child of the entrypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyResult {
    Applied,
    Failed,
    Refused,
    Skipped,
}

impl LegacyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyResult::Applied => "applied",
            LegacyResult::Failed => "failed",
            LegacyResult::Refused => "refused",
            LegacyResult::Skipped => "skipped",
        }
    }
}

/// The outcome of one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildReport {
    pub name: String,
    pub result: LegacyResult,
    pub error: Option<String>,
    pub duration_ms: Option<u128>,
    /// When it was applied (`YYYY-MM-DDTHH:MM:SSZ`), for `lastApplied`.
    pub applied_at: Option<String>,
}

impl ChildReport {
    pub(super) fn new(name: &str, result: LegacyResult, error: Option<String>) -> ChildReport {
        ChildReport {
            name: name.to_string(),
            result,
            error,
            duration_ms: None,
            applied_at: None,
        }
    }
}

/// Logs one child's final line.
pub(super) fn log_report(r: &ChildReport) {
    let reason = r.error.as_deref().unwrap_or("unknown reason");
    match r.result {
        LegacyResult::Applied => log::info!("✓ Module {} applied", r.name),
        LegacyResult::Failed | LegacyResult::Refused => {
            log::error!("✗ Module {} failed: {reason}", r.name)
        }
        LegacyResult::Skipped => log::info!("Module {} skipped: {reason}", r.name),
    }
}

/// Counts of a run (`summary` of the `--json` document, fields in its order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LegacySummary {
    pub applied: usize,
    /// Failed or refused.
    pub failed: usize,
    pub skipped: usize,
    /// Of `failed`, those refused (checksum).
    pub refused: usize,
}

pub fn summarize(reports: &[ChildReport]) -> LegacySummary {
    let mut s = LegacySummary::default();
    for r in reports {
        match r.result {
            LegacyResult::Applied => s.applied += 1,
            LegacyResult::Failed => s.failed += 1,
            LegacyResult::Refused => {
                s.failed += 1;
                s.refused += 1;
            }
            LegacyResult::Skipped => s.skipped += 1,
        }
    }
    s
}

/// The `--json` document of a legacy run.
#[derive(Debug, serde::Serialize)]
pub struct LegacyDocument<'a> {
    pub command: &'static str,
    pub manifest: &'a Path,
    pub entrypoint: &'a str,
    pub modules: Vec<LegacyRow<'a>>,
    pub summary: LegacySummary,
}

/// One child in [`LegacyDocument`].
#[derive(Debug, serde::Serialize)]
pub struct LegacyRow<'a> {
    pub name: &'a str,
    pub result: &'static str,
    pub error: Option<&'a str>,
    pub duration_ms: Option<u128>,
    /// The upstream spelling.
    #[serde(rename = "lastApplied")]
    pub last_applied: Option<&'a str>,
}

/// The `--json` document of a legacy run.
pub fn json_document(manifest: &Manifest, reports: &[ChildReport]) -> Value {
    let modules = reports
        .iter()
        .map(|r| LegacyRow {
            name: &r.name,
            result: r.result.as_str(),
            error: r.error.as_deref(),
            duration_ms: r.duration_ms,
            last_applied: r.applied_at.as_deref(),
        })
        .collect();
    crate::report::to_value(&LegacyDocument {
        command: "legacy",
        manifest: &manifest.path,
        entrypoint: &manifest.entrypoint,
        modules,
        summary: summarize(reports),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_document_has_the_fields_of_before_in_their_order() {
        let doc = LegacyDocument {
            command: "legacy",
            manifest: Path::new("/srv/updates/manifest.json"),
            entrypoint: "all_services",
            modules: vec![LegacyRow {
                name: "adblock",
                result: LegacyResult::Applied.as_str(),
                error: None,
                duration_ms: Some(12),
                last_applied: Some("2024-06-10T15:23:00Z"),
            }],
            summary: LegacySummary {
                applied: 1,
                failed: 2,
                skipped: 3,
                refused: 1,
            },
        };
        let expected = json!({
            "command": "legacy",
            "manifest": "/srv/updates/manifest.json",
            "entrypoint": "all_services",
            "modules": [{
                "name": "adblock",
                "result": "applied",
                "error": null,
                "duration_ms": 12,
                "lastApplied": "2024-06-10T15:23:00Z",
            }],
            "summary": {"applied": 1, "failed": 2, "skipped": 3, "refused": 1},
        });
        assert_eq!(
            crate::report::to_value(&doc).to_string(),
            expected.to_string()
        );
    }
}
