//! The framework files (SPEC §10): the repository root's `__init__.py`, `index.py`, `utils/`,
//! `setup_venv.sh`, `requirements.txt` (those that exist, or exactly the repository index's
//! `metadata.framework`), installed into the install root as ONE unit with a module's guarantees,
//! before any module; and `updateManager.sh`, which is updater's own wrapper, never the
//! repository's.
//!
//! Layout, all under `.updater/framework/` (names no module path can take):
//! `gen-<N>/` holds one complete framework version; `current` is a symlink to the installed one
//! and `previous` to the one it replaced (the backup); `displaced-<N>/` keeps whatever real files
//! (a Python-orchestrator install) or foreign links stood at the root names, never deleted. Each
//! root entry `<root>/<name>` is a symlink to `.updater/framework/current/<name>`, so switching
//! `current` with one atomic rename switches every framework file at once.
//!
//! Every step is written first to `.updater/framework/journal.json`; the next run rolls an
//! uncommitted install back (old `current`, displaced files back at the root, new links and the
//! new generation removed) or finishes a committed one, so the root holds the complete old
//! framework or the complete new one.

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

/// The crash points of a framework install, in order (`UPDATER_CRASH_AT=<point>`).
pub const POINTS: &[&str] = &[
    "framework_journal",
    "framework_staged",
    "framework_switching",
    "framework_moved",
    "framework_linked",
    "framework_switched",
    "framework_committing",
    "framework_committed",
    "framework_recovering",
];

/// In debug builds, `UPDATER_FRAMEWORK_FAIL_AT=<point>` makes the install fail with an error at
/// that point (one of [`POINTS`] from `framework_staged` to `framework_switched`), to test the
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

/// The link a root entry gets: `.updater/framework/current/<name>`, relative to the root.
fn link_target(name: &str) -> PathBuf {
    Path::new(".updater/framework/current").join(name)
}

/// Whether `<root>/<name>` is one of our links.
fn is_our_link(layout: &Layout, name: &str) -> bool {
    std::fs::read_link(layout.root.join(name)).is_ok_and(|t| t == link_target(name))
}

fn gen_number(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The generation `link` (`current` or `previous`) points to, if any.
fn link_gen(layout: &Layout, link: &str) -> Result<Option<String>> {
    let path = layout.framework().join(link);
    match std::fs::read_link(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(t) => {
            let t = t.to_string_lossy().to_string();
            if gen_number(&t, "gen-").is_none() {
                bail!(
                    "{} points to {:?}, not to a framework generation",
                    path.display(),
                    t
                );
            }
            Ok(Some(t))
        }
    }
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
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

/// Reads the framework journal; names in it become paths, so every one is validated.
fn load_journal(layout: &Layout) -> Result<Option<Journal>> {
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
    let j: Journal = serde_json::from_str(&text).with_context(corrupt)?;
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
        return Err(anyhow::anyhow!("a name in it is not a framework name")).with_context(corrupt);
    }
    Ok(Some(j))
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

/// The decision for the framework and whether it must be installed; None when the repository
/// has no framework files (nothing to report).
fn decide(layout: &Layout, offer: &Offer, installed: Option<&str>) -> Option<(&'static str, bool)> {
    if offer.entries.is_empty() {
        return None;
    }
    let present: Vec<bool> = offer
        .entries
        .iter()
        .map(|n| std::fs::metadata(layout.root.join(n)).is_ok())
        .collect();
    let any_missing = present.iter().any(|p| !p);
    if present.iter().all(|p| !p) && !fs::exists_no_follow(&layout.framework().join("current")) {
        return Some(("new", true));
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
    Some(match ord {
        Some(std::cmp::Ordering::Greater) => ("update", true),
        Some(std::cmp::Ordering::Less) if !any_missing => ("local_ahead", false),
        _ if any_missing => ("update", true),
        _ => ("up_to_date", false),
    })
}

fn log_decision(row: &Row, missing: bool) {
    let installed = row.installed.as_deref().unwrap_or("none");
    let available = row.available.as_deref().unwrap_or("none");
    match row.decision {
        "new" | "update" => {
            log::info!("Orchestrator needs update: {installed} → {available}");
            if missing {
                log::info!(
                    "Some framework files are missing from the install root; reinstalling them"
                );
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
    let Some((decision, needed)) = decide(layout, &offer, installed_v.as_deref()) else {
        return Ok(None);
    };
    let missing = offer
        .entries
        .iter()
        .any(|n| std::fs::metadata(layout.root.join(n)).is_err());
    let mut row = Row {
        decision,
        installed: installed_v,
        available: offer.version.clone(),
        result: None,
        error: None,
        duration_ms: None,
    };
    log_decision(&row, missing && decision != "new");
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
                // Only now does the installed index take the new schema_version; the machine's
                // branch, channel and repository_url stay as they are.
                let mut index = GlobalIndex::load(&layout.index())?
                    .unwrap_or_else(|| GlobalIndex::empty(&layout.index()));
                index.set_metadata("schema_version", v);
                index.save()?;
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

fn next_number(layout: &Layout) -> Result<u64> {
    let mut max = 0;
    for name in fs::list_dir(&layout.framework())? {
        let n = name.to_string_lossy();
        if let Some(k) = gen_number(&n, "gen-").or_else(|| gen_number(&n, "displaced-")) {
            max = max.max(k);
        }
    }
    Ok(max + 1)
}

/// Installs the offered framework as one unit (see the module documentation). On error the
/// old framework is put back before returning.
fn install_unit(layout: &Layout, repo_root: &Path, offer: &Offer) -> Result<()> {
    let dir = layout.framework();
    fs::create_dir_all(&dir)?;
    let n = next_number(layout)?;
    let mut j = Journal {
        step: Step::Staging,
        new_gen: format!("gen-{n}"),
        old_gen: link_gen(layout, "current")?,
        displaced: format!("displaced-{n}"),
        entries: offer.entries.clone(),
        moved: Vec::new(),
        links_created: Vec::new(),
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

fn stage_and_switch(layout: &Layout, repo_root: &Path, j: &mut Journal) -> Result<()> {
    let dir = layout.framework();
    let gen = dir.join(&j.new_gen);
    fs::remove_all(&gen)?;
    fs::create_dir_all(&gen)?;
    for name in &j.entries {
        fs::copy_tree(&repo_root.join(name), &gen.join(name), false)
            .with_context(|| format!("staging framework entry {name}"))?;
    }
    fs::make_sh_executable(&gen)?;
    fs::sync_path(&gen)?;
    fs::sync_path(&dir)?;
    fault::point("framework_staged", ROW_NAME);
    fail_point("framework_staged")?;

    for name in &j.entries {
        let root_entry = layout.root.join(name);
        match std::fs::symlink_metadata(&root_entry) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                j.links_created.push(name.clone())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("inspecting {}", root_entry.display()))
            }
            Ok(_) if is_our_link(layout, name) => {}
            Ok(_) => j.moved.push(name.clone()),
        }
    }
    j.step = Step::Switching;
    save_journal(layout, j)?;
    fault::point("framework_switching", ROW_NAME);

    let displaced = dir.join(&j.displaced);
    for name in &j.moved {
        fs::create_dir_all(&displaced)?;
        let from = layout.root.join(name);
        fs::rename(&from, &displaced.join(name))
            .with_context(|| format!("moving {} aside", from.display()))?;
        log::info!(
            "Moved the existing {} to {} (kept, never deleted)",
            from.display(),
            displaced.join(name).display()
        );
        fault::point("framework_moved", ROW_NAME);
        fs::symlink_atomic(&link_target(name), &from)?;
    }
    for name in &j.links_created {
        fs::symlink_atomic(&link_target(name), &layout.root.join(name))?;
    }
    fault::point("framework_linked", ROW_NAME);
    fail_point("framework_linked")?;
    fs::symlink_atomic(Path::new(&j.new_gen), &dir.join("current"))?;
    fault::point("framework_switched", ROW_NAME);
    fail_point("framework_switched")?;
    Ok(())
}

/// Puts the framework that was installed before an uncommitted install back. Idempotent.
fn undo(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    let current = dir.join("current");
    if link_gen(layout, "current")?.as_deref() == Some(j.new_gen.as_str()) {
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
        if is_our_link(layout, name) {
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
        fs::rename(&kept, &at)?;
    }
    for name in &j.links_created {
        if is_our_link(layout, name) {
            fs::remove_all(&layout.root.join(name))?;
        }
    }
    fs::sync_path(&layout.root)?;
    fs::remove_all(&dir.join(&j.new_gen))?;
    if fs::list_dir(&displaced)?.is_empty() {
        fs::remove_all(&displaced)?;
    }
    fs::sync_path(&dir)?;
    remove_journal(layout)
}

/// After the switch: links of names the new framework no longer has are removed, `previous`
/// names the replaced generation, and generations neither current nor previous are removed.
/// Displaced files are kept. Idempotent.
fn finish_commit(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    for name in fs::list_dir(&layout.root)? {
        let name = name.to_string_lossy().to_string();
        if !j.entries.contains(&name)
            && validate_entry(&name).is_ok()
            && is_our_link(layout, &name)
            && std::fs::metadata(layout.root.join(&name)).is_err()
        {
            fs::remove_all(&layout.root.join(&name))?;
        }
    }
    fs::sync_path(&layout.root)?;
    if let Some(old) = &j.old_gen {
        if old != &j.new_gen {
            fs::symlink_atomic(Path::new(old), &dir.join("previous"))?;
        }
    }
    let keep = [link_gen(layout, "current")?, link_gen(layout, "previous")?];
    for name in fs::list_dir(&dir)? {
        let name = name.to_string_lossy().to_string();
        if gen_number(&name, "gen-").is_some() && !keep.iter().any(|k| k.as_ref() == Some(&name)) {
            fs::remove_all(&dir.join(&name))?;
        }
    }
    fs::sync_path(&dir)
}

/// Repairs an interrupted framework install (under the run lock, before anything else runs).
pub fn recover(layout: &Layout) -> Result<()> {
    // Temp names of interrupted atomic writes and link switches.
    for name in fs::list_dir(&layout.framework())? {
        if name.to_string_lossy().starts_with(".tmp-") {
            fs::remove_all(&layout.framework().join(name))?;
        }
    }
    let Some(j) = load_journal(layout)? else {
        return Ok(());
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

/// What a repair would do (for check).
pub fn pending(layout: &Layout) -> Result<Vec<String>> {
    Ok(match load_journal(layout)? {
        None => Vec::new(),
        Some(j) if j.step == Step::Committed => {
            vec!["framework: an interrupted commit will be completed".to_string()]
        }
        Some(j) => vec![format!(
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
