//! The framework files (SPEC §10): the repository root's `__init__.py`, `index.py`, `utils/`,
//! `setup_venv.sh`, `requirements.txt` (those that exist, or exactly the repository index's
//! `metadata.framework`), installed into the install root as ONE unit with a module's guarantees,
//! before any module; and `updateManager.sh`, which is updater's own wrapper, never the
//! repository's.
//!
//! The root entries are REAL files and directories: upstream finds its root config with
//! `os.path.join(os.path.dirname(__file__), "..", "index.json")`, and through a symlinked `utils/`
//! the kernel would resolve that `..` inside the link's target, not in the install root.
//!
//! Layout, all under `.updater/framework/` (names no module path can take): `swap-<N>/` stages
//! one complete, synced copy of the new version; `backup/` is the version the last install
//! replaced; `installed.json` names the entries updater installed (ours to back up and replace);
//! `displaced-<N>/` keeps whatever else stood at those names (a Python-orchestrator install), never
//! deleted; `journal.json` is the install in progress.
//!
//! Each root entry is switched with ONE rename-class operation, then a directory sync: an entry
//! that exists is exchanged with its staged copy (`renameat2(RENAME_EXCHANGE)`, so the old one
//! lands in `swap-<N>/`), a new one is renamed in (`RENAME_NOREPLACE`), an entry of ours the new
//! version no longer has is renamed into `swap-<N>/`. A SET of entries cannot switch in one
//! syscall: between the first and the last switch the root holds a mix, and a process that
//! imports the framework at that instant may see it. What makes the unit all-or-nothing is the
//! journal, written before staging, before the first switch (the whole plan, with the inode of
//! every staged and every old entry: rename and exchange keep inodes, so after a crash each entry
//! shows which side of its switch it is on) and at the commit. A failure rolls back in the same
//! run; after a crash the next run (under the run lock, before anything else) switches back every
//! entry that moved (uncommitted) or finishes the clean-up (committed): after repair the root
//! holds the complete old set or the complete new one, never a mix.
//!
//! A machine with the earlier symlink layout (root entries linking to
//! `.updater/framework/current/<name>`, `current`/`previous` links to `gen-<N>/`) is migrated by
//! its next sync: its links are exchanged for real files like any entry, the old generation's
//! real files become `backup/`, and `current`, `previous` and `gen-*` are removed after the commit.
//! A journal that design left (a crash before updater was upgraded) is repaired its own way first
//! (`EarlierJournal`). While the installed framework is ahead of the repository (`local_ahead`)
//! nothing is installed, so such links stay until the repository offers a framework update.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fault;
use crate::fs;
use crate::global_index::GlobalIndex;
use crate::layout::Layout;
use crate::version::Version;

/// The framework entries taken when the repository index names none (those that exist).
pub const DEFAULT_ENTRIES: &[&str] = &[
    "__init__.py",
    "index.py",
    "utils",
    "setup_venv.sh",
    "requirements.txt",
];

/// Root names a framework entry may never take: the modules, the indexes, our state, our wrapper,
/// the virtualenv, the legacy manifest.
const RESERVED: &[&str] = &[
    "modules",
    "index.json",
    "updateManager.sh",
    "venv",
    "manifest.json",
];

/// At most this many entries in `metadata.framework`.
const MAX_ENTRIES: usize = 64;

/// The crash points of a framework install, in order (`UPDATER_CRASH_AT=<point>`):
/// `framework_first_switched` comes after the first root entry was switched and
/// `framework_before_last` before the last one (both with the root holding a mix of old and new
/// entries, which the repair must undo), `framework_finishing` in the clean-up after the commit.
pub const POINTS: &[&str] = &[
    "framework_journal",
    "framework_staged",
    "framework_switching",
    "framework_first_switched",
    "framework_before_last",
    "framework_switched",
    "framework_committing",
    "framework_finishing",
    "framework_committed",
    "framework_recovering",
];

/// In debug builds, `UPDATER_FRAMEWORK_FAIL_AT=<point>` makes the install fail with an error at
/// that point (`framework_staged`, `framework_before_last` or `framework_switched`), to test the
/// in-process rollback as a full disk would trigger it. Release builds never fail here.
fn fail_point(name: &str) -> Result<()> {
    #[cfg(debug_assertions)]
    {
        if std::env::var("UPDATER_FRAMEWORK_FAIL_AT").is_ok_and(|p| p == name) {
            bail!("injected failure at {name} (UPDATER_FRAMEWORK_FAIL_AT)");
        }
    }
    let _ = name;
    Ok(())
}

/// The name of the framework's row in reports and of its crash points' subject.
pub const ROW_NAME: &str = "framework";

/// Marker line that identifies updater's own `updateManager.sh`.
pub const WRAPPER_MARKER: &str =
    "# updater-wrapper: written by updater; never replaced by the repository's updateManager.sh";

/// The project's wrapper, embedded.
const WRAPPER: &str = include_str!("../updateManager.sh");

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
pub fn skip_all(
    plan: &crate::plan::Plan,
) -> std::collections::BTreeMap<String, crate::report::Outcome> {
    log::error!("No module is applied: the framework files could not be installed");
    plan.to_apply()
        .map(|m| {
            let o = crate::report::Outcome::new(
                crate::report::ModuleResult::Skipped,
                Some("the framework files could not be installed".to_string()),
            );
            (m.name.clone(), o)
        })
        .collect()
}

/// What the repository offers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    entries: Vec<String>,
    version: Option<String>,
}

/// Checks one entry of `metadata.framework` (or a default name): a single name at the repository
/// root (a trailing `/` is allowed), no `.`/`..`, no leading dot, only `[A-Za-z0-9._+-]`, at most
/// 128 bytes, and none of the reserved names. Returns the name without the slash.
pub fn validate_entry(raw: &str) -> Result<String> {
    let name = raw.strip_suffix('/').unwrap_or(raw);
    let shown = raw.escape_debug();
    if name.is_empty() {
        bail!("framework entry \"{shown}\" is empty");
    }
    if name.starts_with('/') {
        bail!("framework entry \"{shown}\" is an absolute path");
    }
    if name.split('/').any(|c| c == "..") {
        bail!("framework entry \"{shown}\" contains `..`");
    }
    if name.contains('/') {
        bail!("framework entry \"{shown}\" must name a file or directory at the repository root");
    }
    if name.len() > 128 {
        bail!("framework entry \"{shown}\" is longer than 128 bytes");
    }
    if name.starts_with('.') {
        bail!("framework entry \"{shown}\" starts with a dot (`.updater`, `.git` and the like are never framework files)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        bail!("framework entry \"{shown}\" has characters outside [A-Za-z0-9._+-]");
    }
    if RESERVED.contains(&name) {
        bail!("framework entry \"{shown}\" is reserved (modules, index.json, updateManager.sh, venv and manifest.json are never framework files)");
    }
    Ok(name.to_string())
}

/// Reads the repository's framework list and version, and checks every entry in the clone.
fn offer(repo_root: &Path, repo_index: Option<&GlobalIndex>) -> Result<Offer> {
    let index_path = repo_root.join("index.json");
    let meta = repo_index.and_then(|i| i.doc.get("metadata"));
    let version = match meta.and_then(|m| m.get("schema_version")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            Version::from_json(v)
                .with_context(|| {
                    format!(
                        "{}: metadata.schema_version cannot be read",
                        index_path.display()
                    )
                })?
                .to_string(),
        ),
    };
    let entries = match meta.and_then(|m| m.get("framework")) {
        None | Some(Value::Null) => DEFAULT_ENTRIES
            .iter()
            .filter(|n| fs::exists_no_follow(&repo_root.join(n)))
            .map(|n| n.to_string())
            .collect(),
        Some(Value::Array(list)) => {
            if list.len() > MAX_ENTRIES {
                bail!(
                    "{}: metadata.framework has more than {MAX_ENTRIES} entries",
                    index_path.display()
                );
            }
            let mut out: Vec<String> = Vec::new();
            for v in list {
                let Value::String(s) = v else {
                    bail!(
                        "{}: metadata.framework must be a list of names, found {v}",
                        index_path.display()
                    );
                };
                let name = validate_entry(s)
                    .with_context(|| format!("{}: metadata.framework", index_path.display()))?;
                if out.contains(&name) {
                    bail!(
                        "{}: metadata.framework names {name} twice",
                        index_path.display()
                    );
                }
                out.push(name);
            }
            out
        }
        Some(other) => bail!(
            "{}: metadata.framework must be a list of names, found {other}",
            index_path.display()
        ),
    };
    for name in &entries {
        check_repo_entry(repo_root, name)?;
    }
    Ok(Offer { entries, version })
}

/// A framework entry in the clone must exist, and be a regular file, a directory whose tree
/// passes the module checks (no symlink leaving it, no device, socket or fifo), or a symlink
/// that resolves inside the repository.
fn check_repo_entry(repo_root: &Path, name: &str) -> Result<()> {
    let path = repo_root.join(name);
    let meta = std::fs::symlink_metadata(&path).with_context(|| {
        format!(
            "framework entry {name}: {} is missing from the repository",
            path.display()
        )
    })?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(&path)
            .with_context(|| format!("reading symlink {}", path.display()))?;
        let real_root = std::fs::canonicalize(repo_root)
            .with_context(|| format!("resolving {}", repo_root.display()))?;
        let inside = !target.is_absolute()
            && std::fs::canonicalize(&path).ok().is_some_and(|t| {
                t.starts_with(&real_root) && !t.starts_with(real_root.join(".git"))
            });
        if !inside {
            bail!(
                "framework entry {name}: symlink {} points outside the repository (to {}); refused",
                path.display(),
                target.display()
            );
        }
    } else if ft.is_dir() {
        crate::module::check_tree(&path)
            .with_context(|| format!("framework entry {name} is refused"))?;
    } else if !ft.is_file() {
        bail!(
            "framework entry {name}: {} is a device, socket or fifo",
            path.display()
        );
    }
    Ok(())
}

/// The link an earlier updater made at a root entry: `.updater/framework/current/<name>`.
fn legacy_link_target(name: &str) -> PathBuf {
    Path::new(".updater/framework/current").join(name)
}

/// Whether `<root>/<name>` is a link of the earlier symlink layout (migrated to real files).
fn is_legacy_link(layout: &Layout, name: &str) -> bool {
    std::fs::read_link(layout.root.join(name)).is_ok_and(|t| t == legacy_link_target(name))
}

/// The root names that are links of the earlier symlink layout.
fn legacy_links(layout: &Layout) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in fs::list_dir(&layout.root)? {
        let name = name.to_string_lossy().to_string();
        if validate_entry(&name).is_ok_and(|v| v == name) && is_legacy_link(layout, &name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn gen_number(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The generation the earlier layout's `current` link points to, if any (a link to anything
/// but `gen-<N>` is not ours and is ignored).
fn legacy_current_gen(layout: &Layout) -> Option<PathBuf> {
    let t = std::fs::read_link(layout.framework().join("current")).ok()?;
    let t = t.to_str()?;
    gen_number(t, "gen-").map(|_| layout.framework().join(t))
}

/// A path's identity (device, inode): kept by rename and exchange, so it tells after a crash
/// which side of a switch an entry is on.
fn identity(path: &Path) -> Option<[u64; 2]> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| [m.dev(), m.ino()])
}

// ---------------------------------------------------------------------------------------------
// what is installed

/// `.updater/framework/installed.json`: the root entries updater installed (so that they are
/// ours to back up and replace; anything else at those names is moved aside and kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Installed {
    entries: Vec<String>,
    version: Option<String>,
}

fn installed_path(layout: &Layout) -> PathBuf {
    layout.framework().join("installed.json")
}

fn load_installed(layout: &Layout) -> Result<Option<Installed>> {
    let p = installed_path(layout);
    let text = match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("reading {}", p.display()))?,
    };
    let corrupt = || {
        format!(
            "{} is corrupt (it lists the framework files updater installed); remove it and sync again",
            p.display()
        )
    };
    let i: Installed = serde_json::from_str(&text).with_context(corrupt)?;
    if !i
        .entries
        .iter()
        .all(|n| validate_entry(n).is_ok_and(|v| &v == n))
    {
        return Err(anyhow::anyhow!("a name in it is not a framework name")).with_context(corrupt);
    }
    Ok(Some(i))
}

// ---------------------------------------------------------------------------------------------
// journal

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Staging,
    Switching,
    Committed,
}

/// How one root entry is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// The root entry exists: exchanged with the staged one (RENAME_EXCHANGE).
    Replace,
    /// No root entry: the staged one is renamed in (RENAME_NOREPLACE).
    Create,
    /// An entry of ours the new framework no longer has: renamed into the swap directory.
    Remove,
}

/// Whose the root entry was before the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Owner {
    /// Installed by updater: becomes the backup.
    Ours,
    /// A link of the earlier symlink layout: its generation's real files become the backup.
    Link,
    /// Anything else (a Python-orchestrator install): moved to `displaced-<N>/`, never deleted.
    Foreign,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Switch {
    name: String,
    kind: Kind,
    /// The owner of the root entry before the switch (None for `create`).
    old: Option<Owner>,
    /// Identity of the staged entry (`replace`, `create`).
    staged_id: Option<[u64; 2]>,
    /// Identity of the old root entry (`replace`, `remove`).
    old_id: Option<[u64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    step: Step,
    /// `swap-<n>/` stages the new version and then holds the old one; `displaced-<n>/` keeps
    /// foreign files.
    n: u64,
    entries: Vec<String>,
    /// The plan of the switch, written (with `step: switching`) before the first entry moves.
    #[serde(default)]
    switches: Vec<Switch>,
    version: Option<String>,
}

impl Journal {
    fn swap(&self, layout: &Layout) -> PathBuf {
        layout.framework().join(format!("swap-{}", self.n))
    }
    fn displaced(&self, layout: &Layout) -> PathBuf {
        layout.framework().join(format!("displaced-{}", self.n))
    }
}

fn journal_path(layout: &Layout) -> PathBuf {
    layout.framework().join("journal.json")
}

fn save_journal(layout: &Layout, j: &Journal) -> Result<()> {
    let value = serde_json::to_value(j).context("serializing the framework journal")?;
    fs::write_json_atomic(&journal_path(layout), &value)
}

fn remove_journal(layout: &Layout) -> Result<()> {
    let p = journal_path(layout);
    fs::remove_all(&p)?;
    fs::sync_parent(&p)
}

/// The journal of an install by the earlier symlink design (`gen-<N>/`, `current`, links),
/// left by a crash before updater was upgraded: repaired the way that design did.
#[derive(Debug, Clone, Deserialize)]
struct EarlierJournal {
    step: Step,
    new_gen: String,
    old_gen: Option<String>,
    displaced: String,
    entries: Vec<String>,
    #[serde(default)]
    moved: Vec<String>,
    #[serde(default)]
    links_created: Vec<String>,
    version: Option<String>,
}

/// A framework journal on disk.
enum Pending {
    Now(Journal),
    Earlier(EarlierJournal),
}

/// Reads the framework journal; names in it become paths, so every one is validated.
fn load_journal(layout: &Layout) -> Result<Option<Pending>> {
    let p = journal_path(layout);
    let text = match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("reading {}", p.display()))?,
    };
    let corrupt = || {
        format!(
            "the framework journal {} is corrupt; run `updater doctor`, check the root's framework files, then remove it",
            p.display()
        )
    };
    let doc: Value = serde_json::from_str(&text).with_context(corrupt)?;
    if doc.get("new_gen").is_some() {
        let j: EarlierJournal = serde_json::from_value(doc).with_context(corrupt)?;
        let gens_ok = gen_number(&j.new_gen, "gen-").is_some()
            && j.old_gen
                .as_deref()
                .is_none_or(|g| gen_number(g, "gen-").is_some())
            && gen_number(&j.displaced, "displaced-").is_some();
        let names_ok = j
            .entries
            .iter()
            .chain(&j.moved)
            .chain(&j.links_created)
            .all(|n| validate_entry(n).is_ok_and(|v| &v == n));
        if !gens_ok || !names_ok {
            return Err(anyhow::anyhow!("a name in it is not a framework name"))
                .with_context(corrupt);
        }
        return Ok(Some(Pending::Earlier(j)));
    }
    let j: Journal = serde_json::from_value(doc).with_context(corrupt)?;
    let names_ok = j
        .entries
        .iter()
        .chain(j.switches.iter().map(|s| &s.name))
        .all(|n| validate_entry(n).is_ok_and(|v| &v == n));
    let ids_ok = j.switches.iter().all(|s| match s.kind {
        Kind::Replace => s.staged_id.is_some() && s.old_id.is_some() && s.old.is_some(),
        Kind::Create => s.staged_id.is_some(),
        Kind::Remove => s.old_id.is_some() && s.old.is_some(),
    });
    if !names_ok || !ids_ok || j.n == 0 || j.n > 1 << 60 {
        return Err(anyhow::anyhow!(
            "a name in it is not a framework name, or a switch is incomplete"
        ))
        .with_context(corrupt);
    }
    Ok(Some(Pending::Now(j)))
}

// ---------------------------------------------------------------------------------------------
// plan, install, repair

/// The installed framework version: the installed index's `metadata.schema_version`.
fn installed_version(installed: Option<&GlobalIndex>) -> Option<String> {
    installed
        .and_then(|i| i.doc.get("metadata"))
        .and_then(|m| m.get("schema_version"))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

/// Why an install at the same version is needed (logged), if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    None,
    /// A framework file is missing from the install root.
    Missing,
    /// The root entries are links of the earlier symlink layout.
    Links,
}

/// The decision for the framework and whether it must be installed; None when the repository
/// has no framework files (nothing to report).
fn decide(
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

fn log_decision(row: &Row, repair: Repair) {
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

/// The framework decision of a run. `install` (sync) installs it when needed; check only
/// reports. Returns None when the repository has no framework files. Errors only for what stops
/// the run (the install root cannot be read or repaired); a refused repository or a failed install
/// is a row with decision `invalid` or result `rolled_back`, and nothing installed changed.
pub fn step(
    layout: &Layout,
    repo_root: &Path,
    repo_index: Option<&GlobalIndex>,
    installed: Option<&GlobalIndex>,
    install: bool,
) -> Result<Option<Row>> {
    let installed_v = installed_version(installed);
    let offer = match offer(repo_root, repo_index) {
        Ok(o) => o,
        Err(e) => {
            let error = format!("{e:#}");
            log::error!("The framework files of the repository are refused: {error}");
            return Ok(Some(Row {
                decision: "invalid",
                installed: installed_v,
                available: None,
                result: None,
                error: Some(error),
                duration_ms: None,
            }));
        }
    };
    let Some((decision, needed, repair)) = decide(layout, &offer, installed_v.as_deref())? else {
        return Ok(None);
    };
    let mut row = Row {
        decision,
        installed: installed_v,
        available: offer.version.clone(),
        result: None,
        error: None,
        duration_ms: None,
    };
    log_decision(
        &row,
        if decision == "new" {
            Repair::None
        } else {
            repair
        },
    );
    if !needed || !install {
        return Ok(Some(row));
    }
    let started = Instant::now();
    match install_unit(layout, repo_root, &offer) {
        Ok(()) => {
            row.result = Some("applied");
            log::info!(
                "Framework installed: {} ({})",
                offer.version.as_deref().unwrap_or("no version"),
                offer.entries.join(", ")
            );
            if let Some(v) = &offer.version {
                // Only now does the installed index take the new schema_version (finish_commit
                // did already unless its clean-up failed); the machine's branch, channel and
                // repository_url stay as they are.
                set_installed_schema(layout, v)?;
            }
        }
        Err(e) => {
            let error = format!("{e:#}");
            log::error!("Framework update failed and was rolled back: {error}");
            row.result = Some("rolled_back");
            row.error = Some(error);
        }
    }
    row.duration_ms = Some(started.elapsed().as_millis());
    Ok(Some(row))
}

/// Sets the installed index's `metadata.schema_version` (the framework's version), unless it is
/// already that.
fn set_installed_schema(layout: &Layout, v: &str) -> Result<()> {
    let mut index =
        GlobalIndex::load(&layout.index())?.unwrap_or_else(|| GlobalIndex::empty(&layout.index()));
    if installed_version(Some(&index)).as_deref() != Some(v) {
        index.set_metadata("schema_version", v);
        index.save()?;
    }
    Ok(())
}

/// A number no swap, displaced or (earlier layout) generation directory has taken.
fn next_number(layout: &Layout) -> Result<u64> {
    let mut max = 0;
    for name in fs::list_dir(&layout.framework())? {
        let n = name.to_string_lossy();
        if let Some(k) = ["gen-", "displaced-", "swap-"]
            .iter()
            .find_map(|p| gen_number(&n, p))
        {
            max = max.max(k);
        }
    }
    Ok(max + 1)
}

/// Installs the offered framework as one unit (see the module documentation). On error the
/// old framework is put back before returning.
fn install_unit(layout: &Layout, repo_root: &Path, offer: &Offer) -> Result<()> {
    fs::create_dir_all(&layout.framework())?;
    let mut j = Journal {
        step: Step::Staging,
        n: next_number(layout)?,
        entries: offer.entries.clone(),
        switches: Vec::new(),
        version: offer.version.clone(),
    };
    save_journal(layout, &j)?;
    fault::point("framework_journal", ROW_NAME);
    if let Err(e) = stage_and_switch(layout, repo_root, &mut j) {
        if let Err(u) = undo(layout, &j) {
            log::error!("rolling back the framework failed: {u:#}; the next run will repair it");
        }
        return Err(e);
    }
    j.step = Step::Committed;
    if let Err(e) = save_journal(layout, &j) {
        // Not recorded as committed: put the old framework back, as the next run would.
        j.step = Step::Switching;
        if let Err(u) = undo(layout, &j) {
            log::error!("rolling back the framework failed: {u:#}; the next run will repair it");
        }
        return Err(e);
    }
    fault::point("framework_committing", ROW_NAME);
    // The new framework is in place; what is left is clean-up, which the next run completes.
    if let Err(e) = finish_commit(layout, &j).and_then(|()| remove_journal(layout)) {
        log::warn!("finishing the framework commit: {e:#}; the next run completes it");
    }
    fault::point("framework_committed", ROW_NAME);
    Ok(())
}

/// Stages the new version in `swap-<n>/`, journals the plan, then switches every root entry
/// with one rename-class operation each.
fn stage_and_switch(layout: &Layout, repo_root: &Path, j: &mut Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    fs::remove_all(&swap)?;
    fs::create_dir_all(&swap)?;
    for name in &j.entries {
        fs::copy_tree(&repo_root.join(name), &swap.join(name), false)
            .with_context(|| format!("staging framework entry {name}"))?;
    }
    fs::make_sh_executable(&swap)?;
    fs::sync_path(&swap)?;
    fs::sync_path(&dir)?;
    fault::point("framework_staged", ROW_NAME);
    fail_point("framework_staged")?;

    // The plan: each entry's kind, whose the old one is, and the identities that tell after a
    // crash which side of its switch it is on.
    let ours: Vec<String> = load_installed(layout)?
        .map(|i| i.entries)
        .unwrap_or_default();
    let links = legacy_links(layout)?;
    let owner = |name: &String| {
        if links.contains(name) {
            Owner::Link
        } else if ours.contains(name) {
            Owner::Ours
        } else {
            Owner::Foreign
        }
    };
    let mut switches = Vec::new();
    for name in &j.entries {
        let at = layout.root.join(name);
        let staged_id = identity(&swap.join(name));
        if staged_id.is_none() {
            bail!(
                "the staged framework entry {name} is missing from {}",
                swap.display()
            );
        }
        match std::fs::symlink_metadata(&at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => switches.push(Switch {
                name: name.clone(),
                kind: Kind::Create,
                old: None,
                staged_id,
                old_id: None,
            }),
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", at.display())),
            Ok(_) => switches.push(Switch {
                name: name.clone(),
                kind: Kind::Replace,
                old: Some(owner(name)),
                staged_id,
                old_id: identity(&at),
            }),
        }
    }
    // Entries of ours (or links of the earlier layout) that the new framework no longer has.
    let mut gone: Vec<&String> = ours.iter().chain(&links).collect();
    gone.sort();
    gone.dedup();
    for name in gone {
        let at = layout.root.join(name);
        if j.entries.contains(name) || !fs::exists_no_follow(&at) {
            continue;
        }
        switches.push(Switch {
            name: name.clone(),
            kind: Kind::Remove,
            old: Some(owner(name)),
            staged_id: None,
            old_id: identity(&at),
        });
    }
    j.switches = switches;
    j.step = Step::Switching;
    save_journal(layout, j)?;
    fault::point("framework_switching", ROW_NAME);

    let last = j.switches.len().saturating_sub(1);
    for (i, s) in j.switches.iter().enumerate() {
        if i == last && i > 0 {
            fault::point("framework_before_last", ROW_NAME);
            fail_point("framework_before_last")?;
        }
        let at = layout.root.join(&s.name);
        let kept = swap.join(&s.name);
        match s.kind {
            Kind::Replace => fs::exchange(&at, &kept)?,
            Kind::Create => fs::rename_noreplace(&kept, &at)?,
            Kind::Remove => fs::rename_noreplace(&at, &kept)?,
        }
        if i == 0 {
            fault::point("framework_first_switched", ROW_NAME);
        }
    }
    fs::sync_path(&layout.root)?;
    fault::point("framework_switched", ROW_NAME);
    fail_point("framework_switched")?;
    Ok(())
}

/// Puts the framework that was installed before an uncommitted install back: every entry that
/// was switched (told by its identity) is switched back, then the swap directory, which holds
/// only the new version by then, is removed. Idempotent.
fn undo(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    for s in j.switches.iter().rev() {
        let at = layout.root.join(&s.name);
        let kept = swap.join(&s.name);
        match s.kind {
            Kind::Replace if identity(&at) == s.staged_id => fs::exchange(&at, &kept)?,
            Kind::Create if identity(&at) == s.staged_id => fs::rename_noreplace(&at, &kept)?,
            Kind::Remove if !fs::exists_no_follow(&at) && identity(&kept) == s.old_id => {
                fs::rename_noreplace(&kept, &at)?
            }
            _ => {}
        }
    }
    fs::sync_path(&layout.root)?;
    // Never remove an old entry: whatever identity an old root entry had must be back at the root.
    for s in &j.switches {
        if s.old_id.is_some() && identity(&swap.join(&s.name)) == s.old_id {
            bail!(
                "cannot put the framework entry {} back at {}: it stays in {}",
                s.name,
                layout.root.join(&s.name).display(),
                swap.join(&s.name).display()
            );
        }
    }
    fs::remove_all(&swap)?;
    fs::sync_path(&dir)?;
    remove_journal(layout)
}

/// After the switch: foreign files go to `displaced-<n>/` (kept, never deleted), the real files
/// of an earlier layout's generation replace its links in the swap directory, `installed.json`
/// names the new entries, the swap directory (now the replaced version) becomes `backup/`, and
/// what the earlier layout left (`current`, `previous`, `gen-*`) is removed. Idempotent.
fn finish_commit(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    if swap.is_dir() {
        let displaced = j.displaced(layout);
        let old_gen = legacy_current_gen(layout);
        for s in &j.switches {
            let kept = swap.join(&s.name);
            match s.old {
                Some(Owner::Foreign) if fs::exists_no_follow(&kept) => {
                    fs::create_dir_all(&displaced)?;
                    fs::rename_noreplace(&kept, &displaced.join(&s.name))?;
                    log::info!(
                        "Moved the existing {} to {} (kept, never deleted)",
                        layout.root.join(&s.name).display(),
                        displaced.join(&s.name).display()
                    );
                }
                Some(Owner::Link) => {
                    // The backup holds the old generation's real files, not a dangling link.
                    let real = old_gen.as_ref().map(|g| g.join(&s.name));
                    if let Some(real) = real.filter(|r| fs::exists_no_follow(r)) {
                        if std::fs::read_link(&kept).is_ok_and(|t| t == legacy_link_target(&s.name))
                        {
                            fs::remove_all(&kept)?;
                        }
                        if !fs::exists_no_follow(&kept) {
                            fs::rename_noreplace(&real, &kept)?;
                        }
                    }
                }
                _ => {}
            }
        }
        fault::point("framework_finishing", ROW_NAME);
        let installed = Installed {
            entries: j.entries.clone(),
            version: j.version.clone(),
        };
        let value = serde_json::to_value(&installed).context("serializing installed.json")?;
        fs::write_json_atomic(&installed_path(layout), &value)?;
        let backup = dir.join("backup");
        fs::remove_all(&backup)?;
        fs::sync_path(&dir)?;
        fs::rename_noreplace(&swap, &backup)?;
    } else if load_installed(layout)?.is_none_or(|i| i.entries != j.entries) {
        // Crashed after the backup took the swap directory's place but before the journal went.
        let installed = Installed {
            entries: j.entries.clone(),
            version: j.version.clone(),
        };
        let value = serde_json::to_value(&installed).context("serializing installed.json")?;
        fs::write_json_atomic(&installed_path(layout), &value)?;
    }
    // The installed index takes the new schema_version now, before the journal goes: a repair
    // that completes the commit leaves no reason to install the same version again.
    if let Some(v) = &j.version {
        set_installed_schema(layout, v)?;
    }
    // The earlier symlink layout, once no root entry links into it.
    if legacy_links(layout)?.is_empty() {
        for name in fs::list_dir(&dir)? {
            let name = name.to_string_lossy().to_string();
            if name == "current" || name == "previous" || gen_number(&name, "gen-").is_some() {
                fs::remove_all(&dir.join(&name))?;
            }
        }
    }
    fs::sync_path(&dir)
}

/// Repairs an interrupted framework install (under the run lock, before anything else runs).
pub fn recover(layout: &Layout) -> Result<()> {
    // Temp names of interrupted atomic writes.
    for name in fs::list_dir(&layout.framework())? {
        if name.to_string_lossy().starts_with(".tmp-") {
            fs::remove_all(&layout.framework().join(name))?;
        }
    }
    let j = match load_journal(layout)? {
        None => return Ok(()),
        Some(Pending::Earlier(j)) => {
            fault::point("framework_recovering", ROW_NAME);
            return undo_earlier(layout, &j);
        }
        Some(Pending::Now(j)) => j,
    };
    fault::point("framework_recovering", ROW_NAME);
    if j.step == Step::Committed {
        finish_commit(layout, &j)?;
        remove_journal(layout)?;
        log::warn!("Completed the interrupted commit of the framework files");
    } else {
        undo(layout, &j)?;
        log::warn!("Repaired the interrupted framework update: the previous framework files are back; it will be retried");
    }
    Ok(())
}

/// Repairs an install the earlier symlink design left interrupted. Committed: `current` names
/// the new generation, so only the journal goes (the installed index takes its version; the next
/// sync turns the links into real files). Not committed: `current` back to the old generation,
/// the files it moved aside back at the root, its new links and generation removed, as that
/// design did. Idempotent.
fn undo_earlier(layout: &Layout, j: &EarlierJournal) -> Result<()> {
    let dir = layout.framework();
    if j.step == Step::Committed {
        if let Some(v) = &j.version {
            set_installed_schema(layout, v)?;
        }
        remove_journal(layout)?;
        log::warn!(
            "Completed the interrupted commit of the framework files (earlier symlink layout)"
        );
        return Ok(());
    }
    let current = dir.join("current");
    let now = std::fs::read_link(&current).ok();
    if now.as_deref() == Some(Path::new(&j.new_gen)) {
        match &j.old_gen {
            Some(old) => fs::symlink_atomic(Path::new(old), &current)?,
            None => {
                fs::remove_all(&current)?;
                fs::sync_path(&dir)?;
            }
        }
    }
    let displaced = dir.join(&j.displaced);
    for name in &j.moved {
        let kept = displaced.join(name);
        let at = layout.root.join(name);
        if !fs::exists_no_follow(&kept) {
            continue;
        }
        if is_legacy_link(layout, name) {
            fs::remove_all(&at)?;
        }
        if fs::exists_no_follow(&at) {
            log::error!(
                "cannot put {} back: {} exists; it stays in {}",
                name,
                at.display(),
                kept.display()
            );
            continue;
        }
        fs::rename_noreplace(&kept, &at)?;
    }
    for name in &j.links_created {
        if is_legacy_link(layout, name) {
            fs::remove_all(&layout.root.join(name))?;
        }
    }
    fs::sync_path(&layout.root)?;
    fs::remove_all(&dir.join(&j.new_gen))?;
    if fs::list_dir(&displaced)?.is_empty() {
        fs::remove_all(&displaced)?;
    }
    fs::sync_path(&dir)?;
    remove_journal(layout)?;
    log::warn!("Repaired the interrupted framework update (earlier symlink layout): the previous framework files are back; it will be retried");
    Ok(())
}

/// What a repair would do (for check).
pub fn pending(layout: &Layout) -> Result<Vec<String>> {
    Ok(match load_journal(layout)? {
        None => Vec::new(),
        Some(Pending::Earlier(j)) if j.step == Step::Committed => {
            vec!["framework: an interrupted commit (earlier symlink layout) will be completed".to_string()]
        }
        Some(Pending::Earlier(j)) => vec![format!(
            "framework: an interrupted update to {} (earlier symlink layout) will be rolled back and retried",
            j.version.as_deref().unwrap_or("a new version")
        )],
        Some(Pending::Now(j)) if j.step == Step::Committed => {
            vec!["framework: an interrupted commit will be completed".to_string()]
        }
        Some(Pending::Now(j)) => vec![format!(
            "framework: an interrupted update to {} will be rolled back and retried",
            j.version.as_deref().unwrap_or("a new version")
        )],
    })
}

// ---------------------------------------------------------------------------------------------
// the wrapper

/// The wrapper as updater writes it: the project's `updateManager.sh` with the marker line after
/// its first (shebang) line.
pub fn wrapper_text() -> String {
    if WRAPPER.contains(WRAPPER_MARKER) {
        return WRAPPER.to_string();
    }
    match WRAPPER.split_once('\n') {
        Some((first, rest)) if first.starts_with("#!") => {
            format!("{first}\n{WRAPPER_MARKER}\n{rest}")
        }
        _ => format!("{WRAPPER_MARKER}\n{WRAPPER}"),
    }
}

/// Writes updater's wrapper to `<root>/updateManager.sh` (0755, atomically) when it is missing,
/// is not ours (no marker line: the repository's, which runs the Python orchestrator), or is an
/// older copy of ours. A replaced foreign wrapper is kept under `.updater/framework/`.
pub fn ensure_wrapper(layout: &Layout) -> Result<()> {
    let path = layout.wrapper();
    let want = wrapper_text();
    let meta = std::fs::symlink_metadata(&path).ok();
    let current = match &meta {
        Some(m) if m.is_file() => std::fs::read(&path).ok(),
        _ => None,
    };
    let mode_ok = meta.as_ref().is_some_and(|m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777 == 0o755
    });
    if current.as_deref() == Some(want.as_bytes()) && mode_ok {
        return Ok(());
    }
    let ours = current.as_deref().is_some_and(|c| {
        String::from_utf8_lossy(c)
            .lines()
            .any(|l| l == WRAPPER_MARKER)
    });
    if meta.is_some() && !ours {
        // Kept (a copy) before ours replaces it in one rename: the path is never missing.
        let keep = layout.framework().join("replaced-updateManager.sh");
        match current.as_deref() {
            Some(bytes) => fs::write_atomic(&keep, bytes)?,
            None => log::warn!("{} is not a regular file; replacing it", path.display()),
        }
        log::warn!(
            "Replacing {} (not updater's wrapper) with updater's own; the old one is kept at {}",
            path.display(),
            keep.display()
        );
    }
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        bail!(
            "{} is a directory; cannot write updater's wrapper there",
            path.display()
        );
    }
    fs::write_atomic_mode(&path, want.as_bytes(), 0o755)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_could_escape_or_collide_are_refused() {
        for bad in [
            "",
            "/etc",
            "../x",
            "a/../b",
            "utils/x.py",
            ".updater",
            ".git",
            "modules",
            "modules/",
            "index.json",
            "updateManager.sh",
            "venv",
            "manifest.json",
            "a\nb",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_entry(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(validate_entry("utils/").unwrap(), "utils");
        assert_eq!(validate_entry("__init__.py").unwrap(), "__init__.py");
    }

    #[test]
    fn a_journal_naming_paths_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.framework()).unwrap();
        for bad in [
            r#"{"step":"switching","n":1,"entries":["../../etc"],"version":null}"#,
            r#"{"step":"switching","n":1,"entries":["utils"],"switches":[{"name":"../x","kind":"create","old":null,"staged_id":[1,2],"old_id":null}],"version":null}"#,
            r#"{"step":"switching","n":1,"entries":["utils"],"switches":[{"name":"utils","kind":"replace","old":"ours","staged_id":[1,2],"old_id":null}],"version":null}"#,
            r#"{"step":"switching","n":0,"entries":[],"version":null}"#,
            // The earlier symlink design's journal, validated as strictly.
            r#"{"step":"switching","new_gen":"../../etc","old_gen":null,"displaced":"displaced-1","entries":[],"version":null}"#,
            r#"{"step":"switching","new_gen":"gen-1","old_gen":null,"displaced":"displaced-1","entries":["utils"],"moved":["../x"],"version":null}"#,
            r#"{"step":"nope"}"#,
        ] {
            std::fs::write(journal_path(&layout), bad).unwrap();
            let e = format!("{:#}", recover(&layout).unwrap_err());
            assert!(e.contains("journal.json") && e.contains("corrupt"), "{e}");
        }
    }

    #[test]
    fn wrapper_text_carries_the_marker_after_the_shebang() {
        let t = wrapper_text();
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("#!"));
        assert!(t.lines().any(|l| l == WRAPPER_MARKER));
    }
}
