//! The machine's choices survive updates (SPEC §3). When a module is updated, values this machine
//! owns are carried from the installed `index.json` into the staged copy before the swap, so the
//! swap stays atomic: `metadata.enabled` when the machine set it, `repo`, `config.repository`,
//! every component's `enabled`, every `has_run` matched by `id`, and every JSON pointer named in
//! `metadata.preserve`. Also here: the record of which `enabled` values the machine set
//! (`.updater/machine.json`), and the execute bit for `*.sh` in a staged module.
//!
//! How the machine's own `enabled` is told from the repository's (`.updater/machine.json`):
//! `updater enable`/`disable` record the machine's value; and after each sync, the modules whose
//! installed copy says `enabled: false` only because the repository shipped it are recorded as
//! such. An installed `enabled: false` is a hold unless it is recorded as the repository's: so a
//! machine coming from the Python orchestrator, or an index edited by hand, keeps its holds (the
//! safe reading), while a repository-side `false` never becomes a hold and the repository's later
//! `true` releases it (SPEC §3, §4).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::fs;
use crate::layout::Layout;
use crate::module;
pub use crate::output::escape;

/// The `enabled` values this machine chose (`updater enable`/`disable`), by module name, and the
/// modules whose installed `enabled: false` came from the repository.
#[derive(Debug, Clone, Default)]
pub struct MachineChoices {
    path: PathBuf,
    pub enabled: BTreeMap<String, bool>,
    /// Installed modules whose `enabled: false` is the repository's, not the machine's.
    pub repository_disabled: BTreeSet<String>,
}

/// `.updater/machine.json`.
pub fn choices_file(layout: &Layout) -> PathBuf {
    layout.state_dir().join("machine.json")
}

impl MachineChoices {
    /// Reads the machine's choices; a missing file holds none. A corrupt file is an error
    /// naming it.
    pub fn load(layout: &Layout) -> Result<MachineChoices> {
        let path = choices_file(layout);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(MachineChoices {
                    path,
                    ..MachineChoices::default()
                });
            }
            other => other.with_context(|| format!("reading {}", path.display()))?,
        };
        let (enabled, repository_disabled) = parse_choices(&text).with_context(|| {
            format!(
                "{} is not a valid machine-choices file (expected {{\"enabled\": {{\"<module>\": true|false}}, \"repository_disabled\": [\"<module>\", ...]}})",
                path.display()
            )
        })?;
        Ok(MachineChoices {
            path,
            enabled,
            repository_disabled,
        })
    }

    /// Modules held on this machine: those it disabled, and every installed module whose copy
    /// says `enabled: false` without that being recorded as the repository's.
    pub fn holds(&self, layout: &Layout) -> Result<BTreeSet<String>> {
        let mut out: BTreeSet<String> = self
            .enabled
            .iter()
            .filter(|(_, on)| !**on)
            .map(|(n, _)| n.clone())
            .collect();
        for (name, index) in module::installed(&layout.modules())? {
            if let Ok(m) = index {
                if !m.enabled && !self.repository_disabled.contains(&name) {
                    out.insert(name);
                }
            }
        }
        Ok(out)
    }

    /// After a sync: records, for each module just installed, whether its `enabled: false`
    /// is the repository's (the machine did not choose `false`). Saves when anything changed.
    pub fn note_installed(&mut self, layout: &Layout, names: &[&str]) -> Result<()> {
        let mut changed = false;
        for name in names {
            let Ok(m) = module::ModuleIndex::load(&layout.module(name)) else {
                continue;
            };
            let repository_false = !m.enabled && self.enabled.get(*name) != Some(&false);
            changed |= if repository_false {
                self.repository_disabled.insert(name.to_string())
            } else {
                self.repository_disabled.remove(*name)
            };
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the file atomically.
    pub fn save(&mut self) -> Result<()> {
        let enabled: Map<String, Value> = self
            .enabled
            .iter()
            .map(|(n, on)| (n.clone(), Value::Bool(*on)))
            .collect();
        let mut doc = Map::new();
        doc.insert("enabled".into(), Value::Object(enabled));
        doc.insert(
            "repository_disabled".into(),
            Value::Array(
                self.repository_disabled
                    .iter()
                    .map(|n| Value::String(n.clone()))
                    .collect(),
            ),
        );
        fs::write_json_atomic(&self.path, &Value::Object(doc))
    }

    /// Records that the machine set module `name` to `enabled`, and saves.
    pub fn record(layout: &Layout, name: &str, enabled: bool) -> Result<()> {
        let mut choices = MachineChoices::load(layout)?;
        choices.enabled.insert(name.to_string(), enabled);
        choices.repository_disabled.remove(name);
        choices.save()
    }
}

type Choices = (BTreeMap<String, bool>, BTreeSet<String>);

fn parse_choices(text: &str) -> Result<Choices> {
    let value: Value = serde_json::from_str(text)?;
    let Some(Value::Object(map)) = value.get("enabled") else {
        bail!("`enabled` is missing or not an object");
    };
    let mut out = BTreeMap::new();
    for (name, v) in map {
        if !module::valid_name(name) {
            bail!("{} is not a module name", escape(name));
        }
        match v {
            Value::Bool(b) => out.insert(name.clone(), *b),
            other => bail!("`enabled.{name}` must be true or false, not {other}"),
        };
    }
    let mut repository_disabled = BTreeSet::new();
    match value.get("repository_disabled") {
        None => {}
        Some(Value::Array(names)) => {
            for n in names {
                match n.as_str() {
                    Some(name) if module::valid_name(name) => {
                        repository_disabled.insert(name.to_string());
                    }
                    _ => bail!("`repository_disabled` holds {n}, which is not a module name"),
                }
            }
        }
        Some(other) => bail!("`repository_disabled` must be a list of module names, not {other}"),
    }
    Ok((out, repository_disabled))
}

/// Longest value shown in a "kept" log line.
const MAX_SHOWN: usize = 120;

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > MAX_SHOWN {
        let cut: String = text.chars().take(MAX_SHOWN).collect();
        escape(&format!("{cut}…")).into_owned()
    } else {
        escape(&text).into_owned()
    }
}

/// Carries the machine's values from `installed` into `staged` (both module index documents);
/// `machine_enabled` is the `enabled` value the machine chose, if any. Returns one line per
/// value carried, `<where> = <value>`, escaped.
pub fn carry(
    installed: &Map<String, Value>,
    staged: &mut Map<String, Value>,
    machine_enabled: Option<bool>,
) -> Vec<String> {
    let mut carried = Vec::new();
    let mut doc = Value::Object(std::mem::take(staged));
    let old = Value::Object(installed.clone());
    if let Some(on) = machine_enabled {
        if doc.pointer("/metadata/enabled") != Some(&Value::Bool(on))
            && set_pointer(&mut doc, "/metadata/enabled", Value::Bool(on)).is_ok()
        {
            carried.push(format!("metadata.enabled = {on}"));
        }
    }
    let mut pointers: Vec<String> = vec!["/repo".into(), "/config/repository".into()];
    for base in ["/config/components", "/config/target_paths/components"] {
        if let Some(Value::Object(components)) = old.pointer(base) {
            for name in components.keys() {
                pointers.push(format!("{base}/{}/enabled", pointer_token(name)));
            }
        }
    }
    for source in [&old, &doc] {
        if let Some(Value::Array(list)) = source.pointer("/metadata/preserve") {
            for p in list.iter().filter_map(Value::as_str) {
                if !pointers.iter().any(|x| x == p) {
                    pointers.push(p.to_string());
                }
            }
        }
    }
    for p in &pointers {
        if !p.starts_with('/') || p.starts_with("/metadata/schema_version") {
            log::warn!(
                "metadata.preserve entry {} is not a JSON pointer this tool carries (it must start with / and not name metadata.schema_version); ignored",
                escape(p)
            );
            continue;
        }
        let Some(value) = old.pointer(p) else {
            continue;
        };
        // A component's `enabled` is carried only when the new copy still has that component.
        if p.ends_with("/enabled") && p.contains("components/") {
            let parent = &p[..p.len() - "/enabled".len()];
            if !doc.pointer(parent).is_some_and(Value::is_object) {
                continue;
            }
        }
        if doc.pointer(p) == Some(value) {
            continue;
        }
        match set_pointer(&mut doc, p, value.clone()) {
            Ok(()) => carried.push(format!("{} = {}", escape(p), shown(value))),
            Err(why) => log::warn!("could not keep {}: {why}", escape(p)),
        }
    }
    carry_has_run(&old, &mut doc, &mut carried);
    if let Value::Object(map) = doc {
        *staged = map;
    }
    carried
}

/// `has_run` of every entry with an `id` in a top-level list (`migrations`, and lists such as
/// `targets` and `interactables` that follow the same pattern), matched by `id`.
fn carry_has_run(old: &Value, doc: &mut Value, carried: &mut Vec<String>) {
    let Value::Object(old_map) = old else { return };
    let Value::Object(new_map) = doc else { return };
    for (key, list) in old_map {
        let Value::Array(old_items) = list else {
            continue;
        };
        let Some(Value::Array(new_items)) = new_map.get_mut(key) else {
            continue;
        };
        for item in old_items {
            let (Some(id), Some(has_run)) = (item.get("id"), item.get("has_run")) else {
                continue;
            };
            for new in new_items.iter_mut() {
                if new.get("id") == Some(id) && new.get("has_run") != Some(has_run) {
                    if let Value::Object(n) = new {
                        n.insert("has_run".into(), has_run.clone());
                        carried.push(format!(
                            "{}[id={}].has_run = {}",
                            escape(key),
                            shown(id),
                            shown(has_run)
                        ));
                    }
                }
            }
        }
    }
}

/// Escapes one JSON-pointer token (RFC 6901).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Sets the value at JSON pointer `p`, creating missing object members on the way. An array
/// index must exist. Fails (changing nothing) when the path crosses a non-container.
fn set_pointer(doc: &mut Value, p: &str, value: Value) -> std::result::Result<(), String> {
    let tokens: Vec<String> = p
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = tokens.split_last() else {
        return Err("the empty pointer names the whole document".into());
    };
    // Check the whole path first so a failure changes nothing.
    {
        let mut cur: Option<&Value> = Some(doc);
        for t in path {
            match cur {
                None => break,
                Some(Value::Object(m)) => cur = m.get(t),
                Some(Value::Array(a)) => match t.parse::<usize>().ok().and_then(|i| a.get(i)) {
                    Some(v) => cur = Some(v),
                    None => return Err(format!("no element {t} in a list")),
                },
                Some(_) => return Err("the path crosses a value that is not an object".into()),
            }
        }
        match cur {
            None | Some(Value::Object(_)) => {}
            Some(Value::Array(a)) => {
                if last
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < a.len())
                    .is_none()
                {
                    return Err(format!("no element {last} in a list"));
                }
            }
            Some(_) => return Err("the path crosses a value that is not an object".into()),
        }
    }
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Value::Object(m) => m
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("{t} is not an index"))?;
                a.get_mut(i).ok_or_else(|| format!("no element {t}"))?
            }
            _ => return Err("the path crosses a value that is not an object".into()),
        };
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| format!("no element {last}"))?;
            *slot = value;
            Ok(())
        }
        _ => Err("the path crosses a value that is not an object".into()),
    }
}

/// Carries the machine's values into the staged copy's `index.json` (rewritten atomically only
/// when something was carried) and logs each one. Returns the staged copy's `metadata.enabled`.
pub fn carry_into_staged(
    name: &str,
    installed_dir: &Path,
    staged_dir: &Path,
    machine_enabled: Option<bool>,
) -> Result<bool> {
    let staged_index = staged_dir.join("index.json");
    let text = fs::read_to_string(&staged_index)?;
    let mut staged: Map<String, Value> = match serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", staged_index.display()))?
    {
        Value::Object(m) => m,
        _ => bail!("{}: expected a JSON object", staged_index.display()),
    };
    // The installed copy was read when planning; an unreadable one has nothing to carry.
    if let Ok(installed) = module::ModuleIndex::load(installed_dir) {
        let carried = carry(&installed.doc, &mut staged, machine_enabled);
        for line in &carried {
            log::info!("Module {}: kept this machine's {line}", escape(name));
        }
        if !carried.is_empty() {
            fs::write_json_atomic(&staged_index, &Value::Object(staged.clone()))?;
        }
    }
    Ok(!matches!(
        staged.get("metadata").and_then(|m| m.get("enabled")),
        Some(Value::Bool(false))
    ))
}

/// Gives every `*.sh` regular file under `dir` the execute bit wherever it has the read bit
/// (the repository commits some as 0644), and syncs each file changed. Symlinks are not followed.
pub fn make_scripts_executable(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in fs::list_dir(&d)? {
            let path = d.join(&name);
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("inspecting {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && name.to_string_lossy().ends_with(".sh") {
                let mode = meta.permissions().mode() & 0o7777;
                let want = mode | ((mode & 0o444) >> 2);
                if want != mode {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
                        .with_context(|| format!("making {} executable", path.display()))?;
                    fs::sync_path(&path)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn carries_every_machine_value_and_keeps_key_order() {
        let installed = obj(json!({
            "metadata": {"schema_version": "1.0.0", "enabled": false,
                         "preserve": ["/config/secret", "/metadata/schema_version"]},
            "repo": {"url": "https://x/y.git", "branch": "dev"},
            "config": {
                "repository": {"branch": "beta"},
                "secret": "s3",
                "components": {"a": {"enabled": false}, "gone": {"enabled": false}},
                "target_paths": {"components": {"t/1": {"enabled": true}}}
            },
            "migrations": [{"id": "01", "has_run": true}, {"id": "02", "has_run": true}]
        }));
        let mut staged = obj(json!({
            "zeta": 1,
            "metadata": {"schema_version": "2.0.0", "enabled": true},
            "repo": {"url": "https://x/y.git", "branch": "master"},
            "config": {
                "repository": {"branch": "master"},
                "components": {"a": {"enabled": true, "new": 1}},
                "target_paths": {"components": {"t/1": {"enabled": false}}}
            },
            "migrations": [{"id": "02", "has_run": false}, {"id": "03", "has_run": false}],
            "alpha": 2
        }));
        let carried = carry(&installed, &mut staged, Some(false));
        let v = Value::Object(staged.clone());
        assert_eq!(v["metadata"]["enabled"], false);
        assert_eq!(v["metadata"]["schema_version"], "2.0.0");
        assert_eq!(v["repo"]["branch"], "dev");
        assert_eq!(v["config"]["repository"]["branch"], "beta");
        assert_eq!(v["config"]["secret"], "s3");
        assert_eq!(
            v["config"]["components"]["a"],
            json!({"enabled": false, "new": 1})
        );
        assert!(v["config"]["components"].get("gone").is_none());
        assert_eq!(
            v["config"]["target_paths"]["components"]["t/1"]["enabled"],
            true
        );
        assert_eq!(
            v["migrations"],
            json!([{"id": "02", "has_run": true}, {"id": "03", "has_run": false}])
        );
        let keys: Vec<&String> = staged.keys().collect();
        assert_eq!(
            keys,
            ["zeta", "metadata", "repo", "config", "migrations", "alpha"]
        );
        assert_eq!(carried.len(), 7, "{carried:?}");
    }

    #[test]
    fn no_machine_choice_keeps_the_repository_enabled() {
        let installed = obj(json!({"metadata": {"schema_version": "1", "enabled": false}}));
        let mut staged = obj(json!({"metadata": {"schema_version": "2", "enabled": true}}));
        assert!(carry(&installed, &mut staged, None).is_empty());
        assert_eq!(staged["metadata"]["enabled"], true);
    }

    #[test]
    fn a_pointer_through_a_scalar_changes_nothing() {
        let mut doc = json!({"a": 1, "l": [1]});
        assert!(set_pointer(&mut doc, "/a/b", json!(2)).is_err());
        assert!(set_pointer(&mut doc, "/l/5", json!(2)).is_err());
        assert!(set_pointer(&mut doc, "", json!(2)).is_err());
        assert_eq!(doc, json!({"a": 1, "l": [1]}));
        set_pointer(&mut doc, "/n/m", json!(3)).unwrap();
        assert_eq!(doc["n"]["m"], 3);
    }
}
