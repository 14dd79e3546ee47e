//! The module-management verbs that the admin UI drives through `updateManager.sh` (SPEC §2,
//! §10): `list` (`--list-modules`, `--all-status`), `--module-status M`, `enable`/`disable` with
//! the upstream success lines, `component enable|disable`, and `set-branch`. They print the
//! upstream formats (log lines the UI parses) and edit the installed module index under the run
//! lock, atomically, keeping every other key in its order.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::commands;
use crate::config::Config;
use crate::fs;
use crate::git;
use crate::layout::Layout;
use crate::module::{self, ModuleIndex};
use crate::output;
use crate::recover;
use crate::report;
use crate::state::State;
use crate::ExitStatus;

/// Refuses what is not a module name, or holds `..` (SPEC §10), in the UI's wording.
fn check_module_name(name: &str) -> Result<()> {
    if !module::valid_name(name) || name.contains("..") {
        bail!(
            "Invalid module name: {name} is not a module name (expected {}, without '..')",
            module::NAME_RULE
        );
    }
    Ok(())
}

/// Refuses a branch name with `..`, `/`, control characters or anything git does not accept in
/// a branch name, in the UI's wording.
fn check_branch_name(branch: &str) -> Result<()> {
    let bad = branch.is_empty()
        || branch.contains("..")
        || branch.contains('/')
        || branch.starts_with('-')
        || branch.chars().any(|c| c.is_control() || c.is_whitespace())
        || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"));
    if bad {
        bail!("Invalid branch name: {branch} (no '..', '/', spaces or control characters)");
    }
    Ok(())
}

/// The installed module's directory, or why there is none.
fn installed_dir(layout: &Layout, name: &str) -> Result<std::path::PathBuf> {
    check_module_name(name)?;
    let dir = layout.module(name);
    if !dir.is_dir() {
        bail!(
            "Module '{name}' not found in {}",
            layout.modules().display()
        );
    }
    Ok(dir)
}

/// Logs what a repair would do: a listing right after a crash must not pass an interrupted
/// update off as installed.
fn warn_pending(layout: &Layout) -> Vec<String> {
    let pending = recover::pending(layout).unwrap_or_else(|e| {
        vec![format!(
            "the journal of an interrupted run cannot be read: {e:#}"
        )]
    });
    for p in &pending {
        log::warn!("Pending repair (the next sync does it): {p}");
    }
    pending
}

fn string_at<'a>(doc: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut obj = doc;
    for key in parents {
        obj = obj.get(*key)?.as_object()?;
    }
    obj.get(*last)?.as_str()
}

/// The module's own source: `repo`, else `config.repository` (as upstream reads them).
fn source_branch(doc: &Map<String, Value>) -> Option<(String, String)> {
    for at in [&["repo"][..], &["config", "repository"][..]] {
        let mut p = at.to_vec();
        p.push("branch");
        if let Some(branch) = string_at(doc, &p) {
            p.pop();
            p.push("default_branch");
            let default = string_at(doc, &p).unwrap_or(branch);
            return Some((branch.to_string(), default.to_string()));
        }
    }
    None
}

/// One row of the list.
struct Row {
    name: String,
    enabled: bool,
    version: String,
    description: String,
    branch: Option<(String, String)>,
}

/// One module of the `--json` document of `list` (and the head of `module-status`'s).
#[derive(Debug, Serialize)]
pub struct ListRow<'a> {
    pub name: &'a str,
    pub enabled: bool,
    pub version: &'a str,
    pub description: &'a str,
    pub branch: Option<&'a str>,
    pub default_branch: Option<&'a str>,
}

impl<'a> ListRow<'a> {
    fn of(r: &'a Row) -> ListRow<'a> {
        ListRow {
            name: &r.name,
            enabled: r.enabled,
            version: &r.version,
            description: &r.description,
            branch: r.branch.as_ref().map(|b| b.0.as_str()),
            default_branch: r.branch.as_ref().map(|b| b.1.as_str()),
        }
    }
}

/// The `--json` document of `list` / `--list-modules` / `--all-status`.
#[derive(Debug, Serialize)]
pub struct ListDocument<'a> {
    pub command: &'static str,
    pub modules_path: &'a Path,
    pub modules: Vec<ListRow<'a>>,
    pub total: usize,
    pub enabled: usize,
    pub disabled: usize,
    pub pending_repairs: Vec<String>,
}

/// The `--json` document of `--module-status M`.
#[derive(Debug, Serialize)]
pub struct ModuleStatusDocument<'a> {
    pub command: &'static str,
    pub name: &'a str,
    pub enabled: bool,
    pub version: &'a str,
    pub description: &'a str,
    pub branch: Option<&'a str>,
    pub default_branch: Option<&'a str>,
    pub components: Vec<ComponentRow<'a>>,
    pub last_result: Option<&'a str>,
    pub last_time: Option<&'a str>,
    pub pending_repairs: Vec<String>,
}

/// One component in [`ModuleStatusDocument`].
#[derive(Debug, Serialize)]
pub struct ComponentRow<'a> {
    pub name: &'a str,
    pub enabled: bool,
    pub description: &'a str,
}

/// The `--json` document of a change made by a management verb (`enable`, `disable`,
/// `component`, `set-branch`): the command and what it set.
#[derive(Debug, Serialize)]
pub struct ChangeDocument<'a> {
    pub command: &'a str,
    pub module: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<&'a str>,
    /// `set-branch`: the repository URL the branch was checked on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
}

fn row(name: &str, index: &ModuleIndex) -> Row {
    let description = string_at(&index.doc, &["metadata", "description"])
        .filter(|d| !d.trim().is_empty())
        .unwrap_or("No description");
    Row {
        name: name.to_string(),
        enabled: index.enabled,
        version: index.version.to_string(),
        description: description.to_string(),
        branch: source_branch(&index.doc),
    }
}

fn status_word(enabled: bool) -> &'static str {
    if enabled {
        "ENABLED"
    } else {
        "DISABLED"
    }
}

/// `updater list` / `--list-modules` / `--all-status`: `Available modules:`, one log line per
/// installed module sorted by name (`name ENABLED|DISABLED vX.Y.Z description`, or with a source
/// branch `name ENABLED vX.Y.Z BRANCH branch default_branch description`), then
/// `Total: N modules (E enabled, D disabled)`. Read-only: it takes no lock.
pub fn list(cfg: &Config) -> Result<ExitStatus> {
    let layout = Layout::new(&cfg.modules_path);
    let pending = warn_pending(&layout);
    let mut rows = Vec::new();
    for (name, index) in module::installed(&layout.modules())? {
        // The old copies upstream leaves behind are never modules (SPEC §10).
        if name.ends_with(".backup") {
            continue;
        }
        match index {
            Ok(index) => rows.push(row(&name, &index)),
            Err(e) => log::warn!("Error reading module '{name}': {e:#}"),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let enabled = rows.iter().filter(|r| r.enabled).count();
    if cfg.json {
        output::json(&report::to_value(&ListDocument {
            command: "list",
            modules_path: &layout.root,
            modules: rows.iter().map(ListRow::of).collect(),
            total: rows.len(),
            enabled,
            disabled: rows.len() - enabled,
            pending_repairs: pending,
        }));
        return Ok(ExitStatus::Success);
    }
    log::info!("Available modules:");
    for r in &rows {
        let status = status_word(r.enabled);
        match &r.branch {
            Some((branch, default)) => log::info!(
                "{} {status} v{} BRANCH {branch} {default} {}",
                r.name,
                r.version,
                r.description
            ),
            None => log::info!("{} {status} v{} {}", r.name, r.version, r.description),
        }
    }
    log::info!(
        "Total: {} modules ({enabled} enabled, {} disabled)",
        rows.len(),
        rows.len() - enabled
    );
    Ok(ExitStatus::Success)
}

/// `--module-status M`: `Module:`, `Status: ENABLED|DISABLED`, `Version:`, `Description:`, and
/// its components. Component states are printed in lower case, so that `ENABLED`/`DISABLED`
/// in the output (what the admin UI looks for) is always the module's own state.
pub fn module_status(cfg: &Config, name: &str) -> Result<ExitStatus> {
    let layout = Layout::new(&cfg.modules_path);
    let dir = installed_dir(&layout, name)?;
    let pending = warn_pending(&layout);
    let index = ModuleIndex::load(&dir)?;
    let r = row(name, &index);
    let state = State::load(&layout.state_file())?;
    let last = state.modules.get(name);
    let components = components_of(&index.doc);
    if cfg.json {
        let row = ListRow::of(&r);
        output::json(&report::to_value(&ModuleStatusDocument {
            command: "module-status",
            name: row.name,
            enabled: row.enabled,
            version: row.version,
            description: row.description,
            branch: row.branch,
            default_branch: row.default_branch,
            components: components
                .iter()
                .map(|(n, e, d)| ComponentRow {
                    name: n,
                    enabled: *e,
                    description: d,
                })
                .collect(),
            last_result: last.map(|l| l.result.as_str()),
            last_time: last.map(|l| l.time.as_str()),
            pending_repairs: pending,
        }));
        return Ok(ExitStatus::Success);
    }
    log::info!("Module: {name}");
    log::info!("Status: {}", status_word(r.enabled));
    log::info!("Version: {}", r.version);
    log::info!("Description: {}", r.description);
    if let Some((branch, default)) = &r.branch {
        log::info!("Branch: {branch} (default {default})");
    }
    if let Some(l) = last {
        log::info!("Last result: {} at {}", l.result, l.time);
    }
    if !components.is_empty() {
        log::info!("Components:");
        for (n, enabled, description) in &components {
            let state = if *enabled { "enabled" } else { "disabled" };
            log::info!("  {n:<15} {state:<10} {description}");
        }
    }
    Ok(ExitStatus::Success)
}

/// Components declared in `config.target_paths.components` and `config.components`: name,
/// enabled (default true), description. A name in both is listed once.
fn components_of(doc: &Map<String, Value>) -> Vec<(String, bool, String)> {
    let mut out: Vec<(String, bool, String)> = Vec::new();
    let config = doc.get("config").and_then(Value::as_object);
    let sources = [
        config
            .and_then(|c| c.get("target_paths"))
            .and_then(Value::as_object)
            .and_then(|t| t.get("components"))
            .and_then(Value::as_object),
        config
            .and_then(|c| c.get("components"))
            .and_then(Value::as_object),
    ];
    for comps in sources.into_iter().flatten() {
        for (name, c) in comps {
            if out.iter().any(|(n, _, _)| n == name) {
                continue;
            }
            let enabled = c.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            let description = c
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("No description");
            out.push((name.clone(), enabled, description.to_string()));
        }
    }
    out
}

/// `--enable-module` / `--disable-module` (and `enable` / `disable`): the hold, then the
/// upstream success line `✓ Module 'M' enabled` (or `disabled`).
pub fn set_module_enabled(cfg: &Config, name: &str, enabled: bool) -> Result<ExitStatus> {
    check_module_name(name)?;
    let status = commands::set_enabled(cfg, name, enabled)?;
    log::info!(
        "✓ Module '{name}' {}",
        if enabled { "enabled" } else { "disabled" }
    );
    if cfg.json {
        output::json(&report::to_value(&ChangeDocument {
            command: cfg.command.name(),
            module: name,
            component: None,
            enabled: Some(enabled),
            branch: None,
            url: None,
        }));
    }
    Ok(status)
}

/// Sets `enabled` of component `component` wherever the module declares it
/// (`config.components.C`, `config.target_paths.components.C`); an error when it declares it
/// nowhere.
fn flip_component(doc: &mut Map<String, Value>, component: &str, enabled: bool) -> bool {
    let Some(Value::Object(config)) = doc.get_mut("config") else {
        return false;
    };
    let mut found = false;
    if let Some(Value::Object(comps)) = config.get_mut("components") {
        if let Some(Value::Object(c)) = comps.get_mut(component) {
            c.insert("enabled".into(), Value::Bool(enabled));
            found = true;
        }
    }
    if let Some(Value::Object(paths)) = config.get_mut("target_paths") {
        if let Some(Value::Object(comps)) = paths.get_mut("components") {
            if let Some(Value::Object(c)) = comps.get_mut(component) {
                c.insert("enabled".into(), Value::Bool(enabled));
                found = true;
            }
        }
    }
    found
}

/// `updater component enable|disable MODULE NAME` / `--enable-component` /
/// `--disable-component`: success line `✓ Component 'C' enabled in module 'M'`.
pub fn set_component(
    cfg: &Config,
    module_name: &str,
    component: &str,
    enabled: bool,
) -> Result<ExitStatus> {
    check_module_name(module_name)?;
    let session = commands::open(cfg, true)?;
    let dir = installed_dir(&session.layout, module_name)?;
    let mut index = ModuleIndex::load(&dir)?;
    if !flip_component(&mut index.doc, component, enabled) {
        bail!(
            "Component '{component}' not found in module '{module_name}' ({} declares no \
             config.components.{component} or config.target_paths.components.{component})",
            index.path.display()
        );
    }
    fs::write_json_atomic(&index.path, &Value::Object(index.doc.clone()))?;
    let word = if enabled { "enabled" } else { "disabled" };
    log::info!("✓ Component '{component}' {word} in module '{module_name}'");
    if cfg.json {
        output::json(&report::to_value(&ChangeDocument {
            command: "component",
            module: module_name,
            component: Some(component),
            enabled: Some(enabled),
            branch: None,
            url: None,
        }));
    }
    Ok(ExitStatus::Success)
}

/// Where the module's own repository is declared: `repo`, else `config.repository` (the object
/// holding a string `url`), as a path of keys.
fn source_object(doc: &Map<String, Value>) -> Option<(&'static [&'static str], String)> {
    for at in [&["repo"][..], &["config", "repository"][..]] {
        let mut p = at.to_vec();
        p.push("url");
        if let Some(url) = string_at(doc, &p) {
            return Some((at, url.to_string()));
        }
    }
    None
}

fn object_at_mut<'a>(
    doc: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut obj = doc;
    for key in path {
        obj = obj.get_mut(*key)?.as_object_mut()?;
    }
    Some(obj)
}

/// `updater set-branch MODULE BRANCH` / `--set-module-branch`: checks that the branch exists
/// on the module's `repo.url` / `config.repository.url`, then sets `branch` there (and
/// `default_branch`, when missing, to the branch it replaces). Success line
/// `Module 'M' branch set to 'B'`.
pub fn set_branch(cfg: &Config, module_name: &str, branch: &str) -> Result<ExitStatus> {
    check_module_name(module_name)?;
    check_branch_name(branch)?;
    // Ask the remote before taking the lock: a slow server must not hold up a sync.
    let layout = Layout::new(&cfg.modules_path);
    let dir = installed_dir(&layout, module_name)?;
    let index = ModuleIndex::load(&dir)?;
    let Some((_, url)) = source_object(&index.doc) else {
        bail!(
            "Module '{module_name}' has no repository URL ({} declares no repo.url or \
             config.repository.url)",
            index.path.display()
        );
    };
    log::info!("Validating branch '{branch}' exists on {url}");
    // Before libgit2's first use: no CA bundle to load for a non-TLS remote.
    crate::commands::settings::prepare_git(&url);
    let exists = git::remote_has_branch(&url, branch)
        .with_context(|| format!("checking branch '{branch}' of module '{module_name}'"))?;
    if !exists {
        bail!("Branch '{branch}' not found on remote repository {url}");
    }

    let session = commands::open(cfg, true)?;
    let dir = installed_dir(&session.layout, module_name)?;
    let mut index = ModuleIndex::load(&dir)?;
    // Re-read under the lock: the URL must still be the one that was asked.
    let Some((at, now_url)) = source_object(&index.doc) else {
        bail!(
            "Module '{module_name}' changed while its branch was checked: {} declares no \
             repository URL any more",
            index.path.display()
        );
    };
    if now_url != url {
        bail!(
            "Module '{module_name}' changed while its branch was checked: its repository URL \
             is now {now_url}; run the command again"
        );
    }
    let Some(source) = object_at_mut(&mut index.doc, at) else {
        bail!(
            "{}: `{}` is not an object",
            index.path.display(),
            at.join(".")
        );
    };
    let previous = source
        .get("branch")
        .and_then(Value::as_str)
        .map(str::to_string);
    source.insert("branch".into(), Value::String(branch.to_string()));
    if !source.contains_key("default_branch") {
        let default = previous.unwrap_or_else(|| branch.to_string());
        source.insert("default_branch".into(), Value::String(default));
    }
    fs::write_json_atomic(&index.path, &Value::Object(index.doc.clone()))?;
    log::info!("Module '{module_name}' branch set to '{branch}'");
    if cfg.json {
        output::json(&report::to_value(&ChangeDocument {
            command: "set-branch",
            module: module_name,
            component: None,
            enabled: None,
            branch: Some(branch),
            url: Some(&url),
        }));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The management documents keep the fields, and their order, they had as `json!` literals.
    #[test]
    fn json_documents_have_the_same_fields_in_the_same_order_as_before() {
        use serde_json::json;
        let text = |v: &Value| serde_json::to_string(v).expect("serialize");
        let change = |command, component, enabled, branch, url| {
            report::to_value(&ChangeDocument {
                command,
                module: "web",
                component,
                enabled,
                branch,
                url,
            })
        };
        assert_eq!(
            text(&change("enable", None, Some(true), None, None)),
            text(&json!({"command": "enable", "module": "web", "enabled": true}))
        );
        assert_eq!(
            text(&change("component", Some("api"), Some(false), None, None)),
            text(
                &json!({"command": "component", "module": "web", "component": "api", "enabled": false})
            )
        );
        assert_eq!(
            text(&change(
                "set-branch",
                None,
                None,
                Some("dev"),
                Some("https://x/r.git")
            )),
            text(
                &json!({"command": "set-branch", "module": "web", "branch": "dev", "url": "https://x/r.git"})
            )
        );
        let r = Row {
            name: "web".into(),
            enabled: true,
            version: "1.0.0".into(),
            description: "Site".into(),
            branch: Some(("dev".into(), "main".into())),
        };
        let row = ListRow::of(&r);
        let doc = ModuleStatusDocument {
            command: "module-status",
            name: row.name,
            enabled: row.enabled,
            version: row.version,
            description: row.description,
            branch: row.branch,
            default_branch: row.default_branch,
            components: vec![ComponentRow {
                name: "api",
                enabled: false,
                description: "API",
            }],
            last_result: Some("applied"),
            last_time: None,
            pending_repairs: vec![],
        };
        assert_eq!(
            text(&report::to_value(&doc)),
            text(&json!({
                "command": "module-status",
                "name": "web",
                "enabled": true,
                "version": "1.0.0",
                "description": "Site",
                "branch": "dev",
                "default_branch": "main",
                "components": [{"name": "api", "enabled": false, "description": "API"}],
                "last_result": "applied",
                "last_time": null,
                "pending_repairs": [],
            }))
        );
    }

    #[test]
    fn names_with_dots_slashes_or_control_characters_are_refused() {
        for bad in ["a..b", "../x", "a/b", "", "-x", "a\nb"] {
            assert!(check_module_name(bad).is_err(), "{bad:?}");
        }
        check_module_name("website").unwrap();
        for bad in ["a..b", "a/b", "", "-x", "a\nb", "a b", "a\x1b", "x.lock"] {
            assert!(check_branch_name(bad).is_err(), "{bad:?}");
        }
        check_branch_name("develop").unwrap();
        check_branch_name("release-1.2").unwrap();
    }

    #[test]
    fn components_flip_wherever_declared_and_keep_key_order() {
        let mut doc: Map<String, Value> = serde_json::from_str(
            r#"{"metadata": {"schema_version": "1.0.0"},
                "config": {"components": {"front": {"enabled": true, "z": 1}},
                           "target_paths": {"components": {"front": {"enabled": true}}}}}"#,
        )
        .unwrap();
        assert!(flip_component(&mut doc, "front", false));
        assert_eq!(doc["config"]["components"]["front"]["enabled"], false);
        assert_eq!(
            doc["config"]["target_paths"]["components"]["front"]["enabled"],
            false
        );
        let keys: Vec<&String> = doc["config"]["components"]["front"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["enabled", "z"]);
        assert!(!flip_component(&mut doc, "back", true));
    }
}
