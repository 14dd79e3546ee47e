//! A module: its name rules, its `index.json` (SPEC §3) and the safety checks on its tree
//! (symlinks that leave it, devices, entry paths). Everything here validates before any path is
//! built from repository content.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::fs;
use crate::version::Version;

/// Default `metadata.priority`.
pub const DEFAULT_PRIORITY: i64 = 100;
/// The largest module `index.json` read.
pub const MAX_INDEX_BYTES: u64 = 4 << 20;
/// Default `metadata.group_order`.
pub const DEFAULT_GROUP_ORDER: i64 = 99;
/// Default `metadata.timeout_secs`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Default `metadata.health_interval_secs`: the pause between two attempts of a health check.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The largest `metadata.health_retries` accepted (a typo such as 1000000 would make a failed
/// update wait for weeks before its rollback).
pub const MAX_HEALTH_RETRIES: u64 = 1000;
/// The largest `metadata.health_interval_secs` accepted (one hour).
pub const MAX_HEALTH_INTERVAL_SECS: u64 = 3600;

/// What a module name is, for messages (SPEC §3).
pub const NAME_RULE: &str = "[A-Za-z0-9][A-Za-z0-9._-]*, at most 128 bytes";

/// Refuses what [`valid_name`] refuses, saying what a name must be.
pub fn check_name(name: &str) -> Result<()> {
    if !valid_name(name) {
        bail!("{name:?} is not a module name (expected {NAME_RULE})");
    }
    Ok(())
}

/// Whether `name` is a module name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 bytes
/// (SPEC §3). The cap stays far below NAME_MAX (255) so that no working name built from a module
/// name can exceed a kernel limit; longer names are invalid, reported and skipped.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The modules installed in `modules_dir`: every directory whose name is a module name, with its
/// index or why it cannot be read, sorted by name. Other entries are not modules and are left
/// out (`doctor` reports them). A missing directory holds no modules.
pub fn installed(modules_dir: &Path) -> Result<Vec<(String, Result<ModuleIndex>)>> {
    let mut out = Vec::new();
    for os_name in fs::list_dir(modules_dir)? {
        let Some(name) = os_name.to_str().filter(|n| valid_name(n)) else {
            continue;
        };
        let dir = modules_dir.join(name);
        if !dir.is_dir() {
            continue;
        }
        out.push((name.to_string(), ModuleIndex::load(&dir)));
    }
    Ok(out)
}

/// A module's parsed `index.json`. The raw document is kept so rewrites keep every key (but
/// in a plan, see [`ModuleIndex::slim`]).
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    pub path: PathBuf,
    pub doc: Map<String, Value>,
    pub version: Version,
    pub enabled: bool,
    pub priority: i64,
    pub depends_on: Vec<String>,
    pub entry: Option<String>,
    pub health: Option<String>,
    /// `metadata.prepare`: runs from the staged copy before the swap (see `lifecycle`).
    pub prepare: Option<String>,
    /// `metadata.rollback`: restarts this copy after a failed update to another one (see
    /// `lifecycle`); without it, the entry point does.
    pub rollback: Option<String>,
    /// `metadata.health_retries` (default 0): how many times a failed health check is tried
    /// again, so `health_retries + 1` attempts in all.
    pub health_retries: u32,
    /// `metadata.health_interval_secs` (default 5): the pause between two attempts.
    pub health_interval: Duration,
    pub timeout: Duration,
    pub backup_paths: Vec<PathBuf>,
    /// `metadata.group`: alternative implementations of one service; one of them runs (SPEC §5).
    pub group: Option<String>,
    /// `metadata.group_order` (default 99): lower is tried first.
    pub group_order: i64,
    /// `metadata.service_name` (default: the module name): the systemd unit probed for a group.
    pub service_name: Option<String>,
    /// Non-fatal problems (a bad priority, say), each naming the file.
    pub warnings: Vec<String>,
    /// Whether `doc` was cut down to what a plan reads ([`ModuleIndex::slim`]).
    pub slim: bool,
}

impl ModuleIndex {
    /// Reads `<module_dir>/index.json`. Every error names the file and the bad value.
    pub fn load(module_dir: &Path) -> Result<ModuleIndex> {
        let path = module_dir.join("index.json");
        // Never read through a symlink (it could name a fifo or a device and hang the run, or a
        // file outside the module), and never read an absurdly large file. O_NOFOLLOW refuses
        // a symlink, O_NONBLOCK keeps a fifo from blocking the open; the type is checked on the
        // open file.
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                rustix::fs::OFlags::NOFOLLOW.bits() as i32
                    | rustix::fs::OFlags::NONBLOCK.bits() as i32,
            )
            .open(&path)
            .map_err(|e| fs::open_error(&path, e))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "{} is not a regular file (a fifo or device?)",
                path.display()
            );
        }
        if meta.len() > MAX_INDEX_BYTES {
            bail!("{} is larger than {MAX_INDEX_BYTES} bytes", path.display());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&path, bytes)
    }

    /// Parses the bytes of the file `path` (read from a file or from a git blob), with the
    /// same errors as [`ModuleIndex::load`].
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<ModuleIndex> {
        if bytes.len() as u64 > MAX_INDEX_BYTES {
            bail!("{} is larger than {MAX_INDEX_BYTES} bytes", path.display());
        }
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        Self::parse(path, &text)
    }

    /// The keys of `metadata` a plan reads from the raw document (the fleet rules, and
    /// `compose`, from which `lifecycle::steps` makes a Compose module's steps); a plan keeps
    /// only these ([`ModuleIndex::slim`]).
    pub const PLAN_KEYS: &'static [&'static str] = &["rollout", "targets", "compose"];

    /// Drops the raw document but for `metadata`'s [`ModuleIndex::PLAN_KEYS`], so that a plan
    /// of 10,000 modules does not hold 10,000 JSON documents. A slim index refuses to be
    /// written back ([`ModuleIndex::set_enabled`]); read the file again to rewrite it.
    pub fn slim(&mut self) {
        if self.slim {
            return;
        }
        let mut meta = Map::new();
        if let Some(Value::Object(m)) = self.doc.get_mut("metadata") {
            for key in Self::PLAN_KEYS {
                if let Some(v) = m.remove(*key) {
                    meta.insert((*key).to_string(), v);
                }
            }
        }
        let mut doc = Map::new();
        if !meta.is_empty() {
            doc.insert("metadata".into(), Value::Object(meta));
        }
        self.doc = doc;
        self.slim = true;
    }

    pub fn parse(path: &Path, text: &str) -> Result<ModuleIndex> {
        let shown = path.display();
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{shown} is not valid JSON"))?;
        let Value::Object(doc) = value else {
            bail!("{shown}: expected a JSON object at the top level");
        };
        let empty = Map::new();
        let meta = match doc.get("metadata") {
            Some(Value::Object(m)) => m,
            Some(_) => bail!("{shown}: `metadata` must be an object"),
            None => bail!("{shown}: `metadata.schema_version` is missing"),
        };
        let version = match meta.get("schema_version") {
            None => bail!("{shown}: `metadata.schema_version` is missing"),
            Some(v) => Version::from_json(v)
                .with_context(|| format!("{shown}: metadata.schema_version"))?,
        };
        let mut warnings = Vec::new();
        let enabled = match meta.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => bail!("{shown}: `metadata.enabled` must be true or false, not {other}"),
        };
        let priority = match meta.get("priority") {
            None => DEFAULT_PRIORITY,
            Some(v) => match v.as_i64() {
                Some(p) => p,
                None => {
                    warnings.push(format!(
                        "{shown}: `metadata.priority` {v} is not an integer; using {DEFAULT_PRIORITY}"
                    ));
                    DEFAULT_PRIORITY
                }
            },
        };
        let timeout = match meta.get("timeout_secs") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(v) => match v.as_u64() {
                Some(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    warnings.push(format!(
                        "{shown}: `metadata.timeout_secs` {v} is not a positive integer; using {}",
                        DEFAULT_TIMEOUT.as_secs()
                    ));
                    DEFAULT_TIMEOUT
                }
            },
        };
        let depends_on = match meta.get("depends_on") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(n) if valid_name(n) => names.push(n.to_string()),
                        _ => bail!(
                            "{shown}: `metadata.depends_on` entry {item} is not a module name"
                        ),
                    }
                }
                names
            }
            Some(other) => {
                bail!("{shown}: `metadata.depends_on` must be a list of module names, not {other}")
            }
        };
        let group = optional_string(path, meta, "group")?;
        let service_name = optional_string(path, meta, "service_name")?;
        let group_order = match meta.get("group_order") {
            None | Some(Value::Null) => DEFAULT_GROUP_ORDER,
            Some(v) => match v.as_i64() {
                Some(o) => o,
                None => {
                    warnings.push(format!(
                        "{shown}: `metadata.group_order` {v} is not an integer; using {DEFAULT_GROUP_ORDER}"
                    ));
                    DEFAULT_GROUP_ORDER
                }
            },
        };
        let entry = relative_path_field(path, meta, "entry")?;
        let health = relative_path_field(path, meta, "health")?;
        let prepare = relative_path_field(path, meta, "prepare")?;
        let rollback = relative_path_field(path, meta, "rollback")?;
        let health_retries = bounded_integer(path, meta, "health_retries", 0, MAX_HEALTH_RETRIES)?
            .unwrap_or(0) as u32;
        let health_interval = bounded_integer(
            path,
            meta,
            "health_interval_secs",
            0,
            MAX_HEALTH_INTERVAL_SECS,
        )?
        .map_or(DEFAULT_HEALTH_INTERVAL, Duration::from_secs);
        let config = match doc.get("configuration") {
            Some(Value::Object(c)) => c,
            _ => &empty,
        };
        let backup_paths = match config.get("backup_paths") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut paths = Vec::new();
                for item in items {
                    let p = item.as_str().map(PathBuf::from);
                    match p {
                        Some(p) if p.is_absolute() && !has_parent_component(&p) => paths.push(p),
                        _ => bail!("{shown}: `configuration.backup_paths` entry {item} is not an absolute path"),
                    }
                }
                paths
            }
            Some(other) => bail!("{shown}: `configuration.backup_paths` must be a list of absolute paths, not {other}"),
        };
        Ok(ModuleIndex {
            path: path.to_path_buf(),
            doc,
            version,
            enabled,
            priority,
            depends_on,
            entry,
            health,
            prepare,
            rollback,
            health_retries,
            health_interval,
            timeout,
            backup_paths,
            group,
            group_order,
            service_name,
            warnings,
            slim: false,
        })
    }

    /// The declared program paths (`entry`, `health`, `prepare`, `rollback`) with their keys,
    /// for the checks before a copy is installed ([`check_declared_file`]).
    pub fn declared_programs(&self) -> Vec<(&'static str, &str)> {
        [
            ("entry", &self.entry),
            ("health", &self.health),
            ("prepare", &self.prepare),
            ("rollback", &self.rollback),
        ]
        .into_iter()
        .filter_map(|(key, rel)| rel.as_deref().map(|r| (key, r)))
        .collect()
    }

    /// Sets `metadata.enabled` and rewrites the file atomically, keeping every other key.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        if self.slim {
            bail!(
                "{}: refusing to rewrite it from a plan's cut-down copy",
                self.path.display()
            );
        }
        if let Some(Value::Object(meta)) = self.doc.get_mut("metadata") {
            meta.insert("enabled".into(), Value::Bool(enabled));
        }
        self.enabled = enabled;
        fs::write_json_atomic(&self.path, &Value::Object(self.doc.clone()))
    }
}

/// `metadata.<key>`: an optional string.
fn optional_string(path: &Path, meta: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!(
            "{}: `metadata.{key}` must be a string, not {other}",
            path.display()
        ),
    }
}

/// `metadata.<key>`: an optional integer in `min..=max`; anything else is an error naming the
/// file, the field and the value (the module is invalid).
fn bounded_integer(
    path: &Path,
    meta: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => bail!(
                "{}: `metadata.{key}` {v} is not an integer from {min} to {max}",
                path.display()
            ),
        },
    }
}

fn has_parent_component(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::ParentDir))
}

/// `metadata.<key>`: a relative path that stays inside the module (no `..`, not absolute).
fn relative_path_field(
    path: &Path,
    meta: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>> {
    let shown = path.display();
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let p = Path::new(s);
            if s.is_empty() || p.is_absolute() || has_parent_component(p) {
                bail!("{shown}: `metadata.{key}` {s:?} leaves the module (it must be a relative path inside it)");
            }
            Ok(Some(s.clone()))
        }
        Some(other) => bail!("{shown}: `metadata.{key}` must be a path string, not {other}"),
    }
}

/// Checks a module tree before it is copied or run: the root is a real directory, no symlink
/// points outside the module (absolute targets included), and there are no devices, sockets or
/// fifos. The error names the offending path.
pub fn check_tree(module_dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(module_dir)
        .with_context(|| format!("inspecting {}", module_dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symlink or a file)",
            module_dir.display()
        );
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = module_dir.join(&rel);
        for name in fs::list_dir(&dir)? {
            let rel_child = rel.join(&name);
            let path = module_dir.join(&rel_child);
            let m = std::fs::symlink_metadata(&path)
                .with_context(|| format!("inspecting {}", path.display()))?;
            let ft = m.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .with_context(|| format!("reading symlink {}", path.display()))?;
                if !link_stays_inside(&rel, &target) || !resolves_inside(module_dir, &rel, &target)
                {
                    bail!(
                        "symlink {} points outside the module (to {})",
                        path.display(),
                        target.display()
                    );
                }
            } else if ft.is_dir() {
                stack.push(rel_child);
            } else if !ft.is_file() {
                bail!("{} is a device, socket or fifo", path.display());
            }
        }
    }
    Ok(())
}

/// Whether a symlink in directory `link_dir` (relative to the module root) with `target` resolves,
/// lexically, to a place inside the module.
fn link_stays_inside(link_dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    for c in link_dir.join(target).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Whether a symlink in `link_dir` (relative to the module root) with `target` resolves inside
/// the module when the kernel follows it: each component is looked up in the real tree and
/// symlinks met on the way are expanded (at most 40 of them), so a chain such as `s -> .` with
/// `t -> s/s/../..` is caught. Components that do not exist are taken lexically (nothing below
/// them can be a symlink).
fn resolves_inside(root: &Path, link_dir: &Path, target: &Path) -> bool {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    enum Part {
        Up,
        Name(OsString),
    }
    fn parts(p: &Path) -> Option<Vec<Part>> {
        let mut out = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => out.push(Part::Name(n.to_os_string())),
                Component::ParentDir => out.push(Part::Up),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(out)
    }
    let mut stack: Vec<OsString> = link_dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let Some(first) = parts(target) else {
        return false;
    };
    let mut pending: VecDeque<Part> = first.into();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part {
            Part::Up => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            Part::Name(n) => {
                let here: PathBuf = stack.iter().collect::<PathBuf>().join(&n);
                let full = root.join(&here);
                match std::fs::symlink_metadata(&full) {
                    Ok(m) if m.file_type().is_symlink() => {
                        hops += 1;
                        let Ok(t) = std::fs::read_link(&full) else {
                            return false;
                        };
                        let Some(expanded) = parts(&t) else {
                            return false;
                        };
                        if hops > 40 {
                            return false;
                        }
                        for p in expanded.into_iter().rev() {
                            pending.push_front(p);
                        }
                    }
                    _ => stack.push(n),
                }
            }
        }
    }
    true
}

/// Checks that a declared program path (entry, health, prepare, rollback) exists inside the
/// module as a file.
pub fn check_declared_file(module_dir: &Path, key: &str, rel: &str) -> Result<()> {
    let path = module_dir.join(rel);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => bail!("`metadata.{key}` {} is not a file", path.display()),
        Err(_) => bail!("`metadata.{key}` {} does not exist", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModuleIndex> {
        ModuleIndex::parse(Path::new("/r/modules/m/index.json"), text)
    }

    #[test]
    fn names() {
        for ok in ["a", "adblock", "A1", "x.y", "a_b-c", "9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", ".hidden", "-x", "_x", "a b", "a/b", "é", "a\nb",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn full_index_parses() {
        let m = parse(
            r#"{"metadata": {"schema_version": "v1.2", "enabled": false, "priority": 5,
                "depends_on": ["base"], "entry": "bin/run", "health": "health.sh", "timeout_secs": 9},
                "configuration": {"backup_paths": ["/etc/x.conf"], "other": 1}}"#,
        )
        .unwrap();
        assert_eq!(m.version.to_string(), "1.2.0");
        assert!(!m.enabled);
        assert_eq!(m.priority, 5);
        assert_eq!(m.depends_on, vec!["base".to_string()]);
        assert_eq!(m.entry.as_deref(), Some("bin/run"));
        assert_eq!(m.health.as_deref(), Some("health.sh"));
        assert_eq!(m.timeout, Duration::from_secs(9));
        assert_eq!(m.backup_paths, vec![PathBuf::from("/etc/x.conf")]);
        assert!(m.warnings.is_empty());
        assert_eq!((m.prepare, m.rollback), (None, None));
        assert_eq!(m.health_retries, 0);
        assert_eq!(m.health_interval, DEFAULT_HEALTH_INTERVAL);
    }

    #[test]
    fn lifecycle_fields_parse() {
        let m = parse(
            r#"{"metadata": {"schema_version": "1", "prepare": "bin/prepare", "rollback": "rb.py",
                "health_retries": 3, "health_interval_secs": 0}}"#,
        )
        .unwrap();
        assert_eq!(m.prepare.as_deref(), Some("bin/prepare"));
        assert_eq!(m.rollback.as_deref(), Some("rb.py"));
        assert_eq!(m.health_retries, 3);
        assert_eq!(m.health_interval, Duration::ZERO);
    }

    #[test]
    fn bad_priority_is_a_warning_naming_the_file() {
        let m = parse(r#"{"metadata": {"schema_version": "1.0.0", "priority": "high"}}"#).unwrap();
        assert_eq!(m.priority, DEFAULT_PRIORITY);
        assert!(m.warnings[0].contains("/r/modules/m/index.json"));
    }

    #[test]
    fn errors_name_file_and_value() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "top level"),
            (r#"{"metadata": {}}"#, "schema_version` is missing"),
            (
                r#"{"metadata": {"schema_version": "banana"}}"#,
                "\"banana\"",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "entry": "../x"}}"#,
                "leaves the module",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "health": "/bin/true"}}"#,
                "leaves the module",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "depends_on": ["../etc"]}}"#,
                "not a module name",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "depends_on": "x"}}"#,
                "list of module names",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "enabled": "no"}}"#,
                "enabled",
            ),
            (
                r#"{"metadata": {"schema_version": "1"}, "configuration": {"backup_paths": ["rel"]}}"#,
                "absolute",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "prepare": "../p"}}"#,
                "`metadata.prepare` \"../p\" leaves the module",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "rollback": "/bin/true"}}"#,
                "`metadata.rollback` \"/bin/true\" leaves the module",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "health_retries": -1}}"#,
                "`metadata.health_retries` -1 is not an integer from 0 to 1000",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "health_retries": "3"}}"#,
                "`metadata.health_retries` \"3\" is not an integer",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "health_retries": 1.5}}"#,
                "`metadata.health_retries` 1.5",
            ),
            (
                r#"{"metadata": {"schema_version": "1", "health_interval_secs": 86400}}"#,
                "`metadata.health_interval_secs` 86400 is not an integer from 0 to 3600",
            ),
        ];
        for (text, needle) in cases {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains("/r/modules/m/index.json"), "{e}");
            assert!(e.contains(needle), "{needle} not in {e}");
        }
    }

    #[test]
    fn symlinks_inside_are_fine_outside_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        std::fs::create_dir_all(m.join("sub")).unwrap();
        std::fs::write(m.join("f"), "x").unwrap();
        std::os::unix::fs::symlink("../f", m.join("sub/ok")).unwrap();
        check_tree(&m).unwrap();
        std::os::unix::fs::symlink("../../etc", m.join("sub/bad")).unwrap();
        let e = format!("{:#}", check_tree(&m).unwrap_err());
        assert!(e.contains("points outside"), "{e}");
        std::fs::remove_file(m.join("sub/bad")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", m.join("abs")).unwrap();
        assert!(check_tree(&m).is_err());
    }

    #[test]
    fn symlink_chains_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        std::fs::create_dir_all(m.join("d")).unwrap();
        std::os::unix::fs::symlink(".", m.join("s")).unwrap();
        std::os::unix::fs::symlink("s/s/d/../d", m.join("ok")).unwrap();
        check_tree(&m).unwrap();
        std::os::unix::fs::symlink("s/s/s/s/../../../../x", m.join("t")).unwrap();
        let e = format!("{:#}", check_tree(&m).unwrap_err());
        assert!(e.contains("points outside"), "{e}");
        std::fs::remove_file(m.join("t")).unwrap();
        // a loop is refused, not followed forever
        std::os::unix::fs::symlink("loop2", m.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1/x", m.join("loop2")).unwrap();
        assert!(check_tree(&m).is_err());
    }

    #[test]
    fn module_root_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("m")).unwrap();
        assert!(check_tree(&dir.path().join("m")).is_err());
    }

    #[test]
    fn a_slim_index_keeps_what_the_plan_and_the_lifecycle_read() {
        let text = r#"{"metadata": {"schema_version": "1", "description": "x",
            "rollout": {"percent": 10}, "compose": {"file": "compose.yaml"}}}"#;
        let mut m = ModuleIndex::parse(Path::new("/m/index.json"), text).unwrap();
        m.slim();
        let meta = m.doc["metadata"].as_object().unwrap();
        assert!(meta.contains_key("compose"));
        assert!(meta.contains_key("rollout"));
        assert!(!meta.contains_key("description"));
    }
}
