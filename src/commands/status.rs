//! `updater status`: what is installed, from the module directories and the state file, without
//! taking the lock (a read-only look that works during a run).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::layout::Layout;
use crate::module;
use crate::output;
use crate::recover;
use crate::state::State;
use crate::ExitStatus;

/// The `--json` document of `updater status`.
#[derive(Debug, Serialize)]
pub struct StatusDocument<'a> {
    pub command: &'static str,
    pub modules_path: &'a Path,
    pub last_commit: Option<&'a str>,
    pub last_run: Option<&'a str>,
    pub modules: Vec<StatusRow>,
    pub pending_repairs: Vec<String>,
}

/// One installed module in [`StatusDocument`].
#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub name: String,
    pub version: Option<String>,
    pub enabled: Option<bool>,
    pub last_result: Option<String>,
    pub last_time: Option<String>,
    pub last_error: Option<String>,
    /// Why the module's index could not be read.
    pub error: Option<String>,
    pub has_backup: bool,
}

/// `updater status`.
pub fn status(cfg: &Config) -> Result<ExitStatus> {
    let layout = Layout::new(&cfg.modules_path);
    let state = State::load(&layout.state_file())?;
    // Right after a crash the module directory may hold an uncommitted copy: say so.
    let pending = recover::pending(&layout)?;
    let interrupted = recover::pending_overrides(&layout)?;
    let mut rows = Vec::new();
    for (name, index) in module::installed(&layout.modules())? {
        let (version, enabled, error) = match index {
            Ok(m) => (Some(m.version.to_string()), Some(m.enabled), None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        };
        let last = state.modules.get(&name);
        let last_result = if interrupted.contains_key(&name) {
            Some("interrupted (pending repair)".to_string())
        } else {
            last.map(|l| l.result.clone())
        };
        rows.push(StatusRow {
            version,
            enabled,
            last_result,
            last_time: last.map(|l| l.time.clone()),
            last_error: last.and_then(|l| l.error.clone()),
            error,
            has_backup: layout.backup_of(&name).exists(),
            name,
        });
    }
    if cfg.json {
        crate::report::print_json(&crate::report::to_value(&StatusDocument {
            command: "status",
            modules_path: &layout.root,
            last_commit: state.last_commit.as_deref(),
            last_run: state.last_run.as_deref(),
            modules: rows,
            pending_repairs: pending,
        }));
        return Ok(ExitStatus::Success);
    }
    for p in &pending {
        output::out(&format!(
            "Pending repair (the next sync does it): {}",
            output::escape(p)
        ));
    }
    if rows.is_empty() {
        output::out(&format!(
            "No modules installed in {}",
            output::escape(&layout.modules().display().to_string())
        ));
        return Ok(ExitStatus::Success);
    }
    let text = |v: Option<&str>| match v {
        None => "-".to_string(),
        Some(s) => output::escape(s).into_owned(),
    };
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                text(Some(&r.name)),
                text(r.version.as_deref()),
                r.enabled.map_or_else(|| "-".to_string(), |e| e.to_string()),
                text(r.last_result.as_deref()),
                text(r.last_time.as_deref()),
            ]
        })
        .collect();
    let header = ["MODULE", "VERSION", "ENABLED", "LAST RESULT", "WHEN"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        output::out(cells.join("  ").trim_end());
    }
    if let Some(c) = &state.last_commit {
        output::out(&format!("\nLast synced commit: {}", output::escape(c)));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_document_has_the_fields_of_before_in_their_order() {
        let doc = StatusDocument {
            command: "status",
            modules_path: Path::new("/srv/updates"),
            last_commit: Some("abc"),
            last_run: None,
            modules: vec![StatusRow {
                name: "web".into(),
                version: Some("1.0.0".into()),
                enabled: Some(true),
                last_result: Some("applied".into()),
                last_time: None,
                last_error: None,
                error: None,
                has_backup: false,
            }],
            pending_repairs: vec!["x".into()],
        };
        let expected = json!({
            "command": "status",
            "modules_path": "/srv/updates",
            "last_commit": "abc",
            "last_run": null,
            "modules": [{
                "name": "web",
                "version": "1.0.0",
                "enabled": true,
                "last_result": "applied",
                "last_time": null,
                "last_error": null,
                "error": null,
                "has_backup": false,
            }],
            "pending_repairs": ["x"],
        });
        assert_eq!(
            crate::report::to_value(&doc).to_string(),
            expected.to_string()
        );
    }
}
