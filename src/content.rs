//! Content updates in a check (SPEC §10): with `--run enabled`, `check` calls
//! `main(["--check"])` of the enabled modules named in the installed index's
//! `metadata.check_modules` (default: `os`, `website`, `sbin`, `migrations`) that are installed,
//! enabled and Python `main` modules, and counts a truthy `update_available`,
//! `website_update_available`, `tab_updates_available`, `updated` or `pending_migrations` in the
//! returned dict as an update.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::config::RunMode;
use crate::global_index::GlobalIndex;
use crate::layout::Layout;
use crate::plan::{Decision, Plan};
use crate::preserve::escape;
use crate::runner::{self, Program, RunSpec};

/// Modules asked for content updates when the installed index names none (today's upstream).
pub const DEFAULT_CHECK_MODULES: &[&str] = &["os", "website", "sbin", "migrations"];

/// Keys of a module's check result that announce an update when truthy.
pub const UPDATE_KEYS: &[&str] = &[
    "update_available",
    "website_update_available",
    "tab_updates_available",
    "updated",
    "pending_migrations",
];

/// One module's content check.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentCheck {
    /// Whether it reported something to apply.
    pub update: bool,
    /// What its `main` returned beyond `success`, when known.
    pub details: Option<Value>,
    /// Why the check itself failed.
    pub error: Option<String>,
}

/// `metadata.check_modules` of the installed index (names only), else the default list.
pub fn check_modules(installed: Option<&GlobalIndex>) -> Vec<String> {
    let listed = installed
        .and_then(|i| i.doc.get("metadata"))
        .and_then(|m| m.get("check_modules"))
        .and_then(Value::as_array);
    match listed {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| crate::module::valid_name(n))
            .map(str::to_string)
            .collect(),
        None => DEFAULT_CHECK_MODULES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// Whether a JSON value is truthy the way Python reads it.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Whether a module's check result announces an update.
pub fn announces_update(details: &Value) -> bool {
    UPDATE_KEYS
        .iter()
        .any(|k| details.get(*k).is_some_and(truthy))
}

/// Runs the content checks (only under `--run enabled`); modules not installed, disabled, held,
/// invalid or without a Python `main` are left out.
pub fn check(
    layout: &Layout,
    installed: Option<&GlobalIndex>,
    plan: &Plan,
    run: RunMode,
    python: &Path,
) -> Result<BTreeMap<String, ContentCheck>> {
    let mut out = BTreeMap::new();
    if run != RunMode::Enabled {
        return Ok(out);
    }
    for name in check_modules(installed) {
        let Some(m) = plan.get(&name) else { continue };
        let Some(index) = m.installed_index.as_ref() else {
            continue;
        };
        if !index.enabled || matches!(m.decision, Decision::Held | Decision::Invalid) {
            continue;
        }
        let dir = layout.module(&name);
        let file = match runner::resolve_entry(&dir, index.entry.as_deref()) {
            Ok(Some(Program::PythonMain(file))) => file,
            _ => continue,
        };
        let version = index.version.to_string();
        let env = vec![
            ("UPDATER_MODULE".to_string(), name.clone()),
            ("UPDATER_FROM_VERSION".to_string(), version.clone()),
            ("UPDATER_TO_VERSION".to_string(), version),
            (
                "UPDATER_MODULE_DIR".to_string(),
                dir.to_string_lossy().into_owned(),
            ),
            ("UPDATER_BACKUP_DIR".to_string(), String::new()),
            (
                "UPDATER_MODULES_PATH".to_string(),
                layout.root.to_string_lossy().into_owned(),
            ),
        ];
        // `logs/check/` is a directory: no module's own `logs/<name>.log` can be it.
        let log_file = layout.logs().join("check").join(format!("{name}.log"));
        let args = ["--check".to_string()];
        let program = Program::PythonMain(file);
        let result = runner::run(&RunSpec {
            module: &name,
            module_dir: &dir,
            program: &program,
            args: Some(&args),
            env: &env,
            timeout: index.timeout,
            log_file: &log_file,
            python,
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        });
        let shown = escape(&name);
        let check = match result {
            Ok(o) if o.success => {
                let details = crate::apply::details_of(&o);
                let update = details.as_ref().is_some_and(announces_update);
                if update {
                    log::info!("Module {shown} has content updates available");
                } else {
                    log::info!("Module {shown}: no content updates");
                }
                ContentCheck {
                    update,
                    details,
                    error: None,
                }
            }
            Ok(o) => {
                let reason = o.reason.unwrap_or_else(|| "unknown reason".into());
                log::warn!(
                    "Module {shown}: its content check failed: {}",
                    escape(&reason)
                );
                ContentCheck {
                    update: false,
                    details: None,
                    error: Some(reason),
                }
            }
            Err(e) => {
                log::warn!("Module {shown}: its content check could not run: {e:#}");
                ContentCheck {
                    update: false,
                    details: None,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        out.insert(name, check);
    }
    Ok(out)
}

/// Adds each content check to its module's row of a `--json` check document: `details`, and
/// `content_update` (true when it announced an update).
pub fn annotate(doc: &mut Value, checks: &BTreeMap<String, ContentCheck>) {
    let Some(rows) = doc.get_mut("modules").and_then(Value::as_array_mut) else {
        return;
    };
    for row in rows {
        let Some(name) = row.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some(c) = checks.get(name) {
            if let Value::Object(r) = row {
                r.insert("details".into(), c.details.clone().unwrap_or(Value::Null));
                r.insert("content_update".into(), Value::Bool(c.update));
                if let Some(e) = &c.error {
                    r.insert("error".into(), Value::String(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthy_update_keys_count_and_others_do_not() {
        assert!(announces_update(&json!({"update_available": true})));
        assert!(announces_update(&json!({"pending_migrations": 2})));
        assert!(announces_update(&json!({"tab_updates_available": [1]})));
        assert!(!announces_update(
            &json!({"pending_migrations": 0, "updated": false})
        ));
        assert!(!announces_update(
            &json!({"upgradable": 5, "success": true})
        ));
        assert!(!announces_update(&json!("update_available")));
    }

    #[test]
    fn default_list_unless_the_index_names_one() {
        assert_eq!(check_modules(None), DEFAULT_CHECK_MODULES);
        let i = GlobalIndex::parse(
            Path::new("/i.json"),
            r#"{"metadata": {"check_modules": ["a", "../x", 3]}}"#,
        )
        .unwrap();
        assert_eq!(check_modules(Some(&i)), ["a"]);
    }
}
