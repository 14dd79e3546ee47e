//! Deciding what happens to each module (SPEC §4): compares the repository's modules with the
//! installed ones and produces one decision per module, with the reason for every `invalid`.
//! Reads only; never changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fs;
use crate::module::{self, ModuleIndex};

/// The §4 decision for one module (serialized as the word [`Decision::as_str`] gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    New,
    Update,
    UpToDate,
    LocalAhead,
    Orphaned,
    Held,
    Invalid,
    /// The version carries `metadata.rollout` and this machine is outside its phase.
    Deferred,
    /// The version's `metadata.targets` does not select this machine.
    NotTargeted,
}

impl Decision {
    /// The word used in output and JSON (the same as its serde form; a unit test holds them
    /// together).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::New => "new",
            Decision::Update => "update",
            Decision::UpToDate => "up_to_date",
            Decision::LocalAhead => "local_ahead",
            Decision::Orphaned => "orphaned",
            Decision::Held => "held",
            Decision::Invalid => "invalid",
            Decision::Deferred => "deferred",
            Decision::NotTargeted => "not_targeted",
        }
    }
}

/// What `sync` does about a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Install (new) or replace (update, or downgrade with `--allow-downgrade`).
    Install,
    /// Remove an orphaned module (`--prune`).
    Remove,
}

/// One module's row of the plan.
#[derive(Debug, Clone)]
pub struct ModulePlan {
    pub name: String,
    pub decision: Decision,
    pub action: Action,
    /// Installed version, as read from the installed copy.
    pub installed: Option<String>,
    /// Version in the repository.
    pub available: Option<String>,
    /// Why the module is invalid.
    pub error: Option<String>,
    /// The repository copy's directory, and its index when readable and the module is to be
    /// installed (action `Install`; None otherwise, so a plan of 10,000 up-to-date modules
    /// holds one index per module). Both indexes are slim ([`ModuleIndex::slim`]).
    pub repo_dir: Option<PathBuf>,
    pub repo_index: Option<ModuleIndex>,
    /// The installed copy's index, when readable.
    pub installed_index: Option<ModuleIndex>,
    /// For `deferred`: this machine's bucket (None without a machine id) and the percent.
    pub rollout: Option<(Option<u8>, u8)>,
}

/// The decisions for all modules, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub modules: Vec<ModulePlan>,
    /// Non-fatal findings (stray files under `modules/`, bad priorities), each naming the file.
    pub warnings: Vec<String>,
    /// Content updates a check found in the modules' own `main(["--check"])` (SPEC §10).
    pub content_updates: usize,
}

impl Plan {
    pub fn to_apply(&self) -> impl Iterator<Item = &ModulePlan> {
        self.modules.iter().filter(|m| m.action != Action::Nothing)
    }

    pub fn invalid_count(&self) -> usize {
        self.modules
            .iter()
            .filter(|m| m.decision == Decision::Invalid)
            .count()
    }

    pub fn get(&self, name: &str) -> Option<&ModulePlan> {
        self.modules.iter().find(|m| m.name == name)
    }
}

/// Options that change what sync would do.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub allow_downgrade: bool,
    pub prune: bool,
    /// `--force`: prune even when the guard would refuse.
    pub force: bool,
    /// Modules the machine itself disabled (`updater disable`): held. An installed copy with
    /// `enabled: false` that is not listed came so from the repository and is still updated.
    pub holds: BTreeSet<String>,
    /// This machine, for `metadata.rollout` and `metadata.targets` (`fleet`); `None`: every
    /// version is taken (no fleet rules applied).
    pub machine: Option<crate::fleet::Machine>,
    /// When set (`MachineChoices::repository_disabled`), every installed copy that says
    /// `enabled: false` and is not listed here is held too, as `MachineChoices::holds` would
    /// say, decided from the plan's own scan instead of reading every index once more.
    pub repository_disabled: Option<BTreeSet<String>>,
}

/// One side's scan of a `modules/` directory (the clone's, read from the commit's trees by
/// `index_cache`, or the install root's).
#[derive(Debug, Default)]
pub struct Side {
    /// name → the module index, or why it cannot be read.
    pub modules: BTreeMap<String, std::result::Result<ModuleIndex, String>>,
    /// Entries with names that are not module names: (shown name, reason).
    pub bad_names: Vec<(String, String)>,
    pub warnings: Vec<String>,
    /// Whether the `modules/` directory exists at all (the prune guard's question).
    pub present: bool,
}

/// One entry of a `modules/` listing, as the directory (or the commit's tree) has it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: std::ffi::OsString,
    pub is_dir: bool,
    pub is_symlink: bool,
}

/// Lists the directory `dir` (entry types from the listing itself: no stat per module); a
/// missing directory lists nothing.
pub fn list_modules_dir(dir: &Path) -> Result<Vec<Listed>> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
        Ok(rd) => rd
            .map(|e| {
                e.map(|e| {
                    let t = e.file_type().ok();
                    Listed {
                        name: e.file_name(),
                        is_dir: t.is_some_and(|t| t.is_dir()),
                        is_symlink: t.is_some_and(|t| t.is_symlink()),
                    }
                })
            })
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display())),
    }
}

fn scan(dir: &Path, check_trees: bool) -> Result<Side> {
    let entries = list_modules_dir(dir)?;
    let mut side = scan_entries(dir, entries, check_trees, |_, path| ModuleIndex::load(path));
    side.present = fs::exists_no_follow(dir);
    Ok(side)
}

/// Sorts out the entries of the `modules/` directory `dir`: names that are not module names
/// (invalid rows), entries that are not directories (warnings), and every module with its
/// index as `load(name, module dir)` reads it. `check_trees`: a module that is not a real
/// directory is invalid (the repository side). `present` is left false.
pub fn scan_entries(
    dir: &Path,
    mut entries: Vec<Listed>,
    check_trees: bool,
    mut load: impl FnMut(&str, &Path) -> Result<ModuleIndex>,
) -> Side {
    let mut side = Side::default();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for Listed {
        name: os_name,
        is_dir,
        is_symlink,
    } in entries
    {
        let path = dir.join(&os_name);
        let name = match os_name.to_str() {
            Some(n) if module::valid_name(n) => n.to_string(),
            _ => {
                let shown = os_name.to_string_lossy().into_owned();
                if is_dir || is_symlink {
                    side.bad_names.push((
                        shown,
                        format!(
                            "{} is not a valid module name (expected {}); skipped",
                            path.display(),
                            module::NAME_RULE
                        ),
                    ));
                } else {
                    side.warnings.push(format!(
                        "{} is not a module directory; skipped",
                        path.display()
                    ));
                }
                continue;
            }
        };
        if !is_dir && !is_symlink {
            side.warnings.push(format!(
                "{} is not a module directory; skipped",
                path.display()
            ));
            continue;
        }
        let result = (|| -> Result<ModuleIndex> {
            if check_trees && !is_dir {
                anyhow::bail!("{} is not a directory (a symlink?)", path.display());
            }
            load(&name, &path)
        })()
        .map_err(|e| format!("{e:#}"));
        if let Ok(index) = &result {
            side.warnings.extend(index.warnings.iter().cloned());
        }
        side.modules.insert(name, result);
    }
    side
}

/// Decides every module. `repo_modules` is `<clone>/modules`, `installed_modules` is
/// `<modules-path>/modules`; either may be missing.
pub fn plan(repo_modules: &Path, installed_modules: &Path, opts: PlanOptions) -> Result<Plan> {
    plan_with(repo_modules, installed_modules, &BTreeMap::new(), opts)
}

/// [`plan`], with some installed copies read from elsewhere: `overrides` maps a module name to
/// the directory holding its real installed copy, or to None when it is not really installed
/// (used while an interrupted update awaits repair).
pub fn plan_with(
    repo_modules: &Path,
    installed_modules: &Path,
    overrides: &BTreeMap<String, Option<PathBuf>>,
    opts: PlanOptions,
) -> Result<Plan> {
    if fs::exists_no_follow(repo_modules)
        && !std::fs::symlink_metadata(repo_modules)
            .map(|m| m.is_dir())
            .unwrap_or(false)
    {
        anyhow::bail!("{}", not_a_directory(repo_modules));
    }
    let repo = scan(repo_modules, true)?;
    let installed = scan(installed_modules, false)?;
    let mut plan = plan_sides(repo, installed, repo_modules, overrides, opts)?;
    check_installables(&mut plan);
    Ok(plan)
}

/// Why a `modules` that is not a directory is refused.
pub fn not_a_directory(repo_modules: &Path) -> String {
    format!(
        "{} is not a directory (a symlink?); refusing to read modules through it",
        repo_modules.display()
    )
}

/// Decides every module from two scanned sides (`repo_modules` names where the repository's
/// copies are). The deep checks of the modules to install read their trees, so they are a
/// separate step: [`check_installables`], once the clone's work tree is known to be exact.
pub fn plan_sides(
    repo: Side,
    mut installed: Side,
    repo_modules: &Path,
    overrides: &BTreeMap<String, Option<PathBuf>>,
    opts: PlanOptions,
) -> Result<Plan> {
    let Side {
        modules: mut repo_side,
        bad_names: repo_bad_names,
        warnings: repo_warnings,
        present: repo_present,
    } = repo;
    // Installed copies saying `enabled: false` that the repository did not ship so: held.
    let mut holds = opts.holds.clone();
    if let Some(repository_disabled) = &opts.repository_disabled {
        for (name, m) in &installed.modules {
            if let Ok(m) = m {
                if !m.enabled && !repository_disabled.contains(name) {
                    holds.insert(name.clone());
                }
            }
        }
    }
    for (name, at) in overrides {
        match at {
            Some(dir) => {
                let m = ModuleIndex::load(dir).map_err(|e| format!("{e:#}"));
                installed.modules.insert(name.clone(), m);
            }
            None => {
                installed.modules.remove(name);
            }
        }
    }
    let mut plan = Plan::default();
    plan.warnings.extend(repo_warnings);
    plan.warnings.append(&mut installed.warnings);

    // Both sides' names, in order: a merge of two sorted key lists (no set of 20,000 inserts).
    let names: Vec<String> = {
        let mut out = Vec::with_capacity(repo_side.len().max(installed.modules.len()));
        let (mut a, mut b) = (
            repo_side.keys().peekable(),
            installed.modules.keys().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(x), Some(y)) if x > y => b.next(),
                (Some(_), Some(_)) => {
                    b.next();
                    a.next()
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next.cloned());
        }
        out
    };
    let mut dep_errors = dependency_errors(&repo_side, &names);
    // Compose modules whose projects collide are invalid too (README "Docker Compose modules"),
    // also with an installed module the repository no longer has (its containers still run).
    let gone = installed
        .modules
        .iter()
        .filter(|(n, _)| !repo_side.contains_key(*n));
    let docs = repo_side
        .iter()
        .chain(gone)
        .filter_map(|(n, m)| m.as_ref().ok().map(|m| (n.as_str(), &m.doc)));
    for (name, e) in crate::compose::project_collisions(docs) {
        dep_errors.entry(name).or_insert(e);
    }

    plan.modules
        .reserve_exact(names.len() + repo_bad_names.len() + installed.bad_names.len());
    for name in &names {
        let r = repo_side.remove(name);
        let i = installed.modules.remove(name);
        let held = holds.contains(name.as_str());
        let (mut decision, mut action, mut error) = decide(
            r.as_ref(),
            i.as_ref(),
            dep_errors.get(name.as_str()),
            held,
            &opts,
        );
        let repo_dir = r.as_ref().map(|_| repo_modules.join(name));
        let mut repo_index = r.and_then(Result::ok);
        let mut installed_index = i.and_then(Result::ok);
        let mut rollout = None;
        // The fleet rules (targets, then rollout) of the version that would be installed; a bad
        // value makes the module invalid whatever the decision.
        if let (Some(machine), Some(idx)) = (&opts.machine, repo_index.as_ref()) {
            if !matches!(decision, Decision::Invalid | Decision::Held) {
                let meta = idx.doc.get("metadata").and_then(|m| m.as_object());
                let verdict = match meta {
                    Some(meta) => crate::fleet::decide(
                        machine,
                        &idx.path,
                        meta,
                        name,
                        &idx.version.to_string(),
                    ),
                    None => Ok(crate::fleet::Verdict::Take),
                };
                match verdict {
                    Err(e) => {
                        (decision, action, error) =
                            (Decision::Invalid, Action::Nothing, Some(format!("{e:#}")))
                    }
                    Ok(_) if action != Action::Install => {}
                    Ok(crate::fleet::Verdict::Take) => {}
                    Ok(crate::fleet::Verdict::NotTargeted) => {
                        (decision, action) = (Decision::NotTargeted, Action::Nothing)
                    }
                    Ok(crate::fleet::Verdict::Deferred { bucket, percent }) => {
                        (decision, action) = (Decision::Deferred, Action::Nothing);
                        rollout = Some((bucket, percent));
                    }
                }
            }
        }
        let available = repo_index.as_ref().map(|m| m.version.to_string());
        // A plan holds no whole JSON documents (10,000 modules would be tens of megabytes),
        // and the repository's index only of the modules it installs.
        if action != Action::Install {
            repo_index = None;
        }
        if let Some(idx) = repo_index.as_mut() {
            idx.slim();
        }
        if let Some(idx) = installed_index.as_mut() {
            idx.slim();
        }
        plan.modules.push(ModulePlan {
            name: name.clone(),
            decision,
            action,
            installed: installed_index.as_ref().map(|m| m.version.to_string()),
            available,
            error,
            repo_dir,
            repo_index,
            installed_index,
            rollout,
        });
    }
    for (name, reason) in repo_bad_names.into_iter().chain(installed.bad_names) {
        plan.modules.push(ModulePlan {
            name,
            decision: Decision::Invalid,
            action: Action::Nothing,
            installed: None,
            available: None,
            error: Some(reason),
            repo_dir: None,
            repo_index: None,
            installed_index: None,
            rollout: None,
        });
    }
    plan.modules.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.prune && !opts.force {
        prune_guard(repo_present, repo_modules, &plan)?;
    }
    Ok(plan)
}

/// The whole tree is validated only for modules that would be copied and run: that is where an
/// escaping symlink or a missing entry could do harm, and it keeps a no-op check from walking
/// every file of every module. Reads the work tree at each row's `repo_dir`: call it only once
/// that is known to be exactly the commit planned from.
pub fn check_installables(plan: &mut Plan) {
    for row in plan.modules.iter_mut() {
        if row.action != Action::Install {
            continue;
        }
        let Some(dir) = row.repo_dir.as_ref() else {
            continue;
        };
        if let Err(e) = check_installable(dir, row.repo_index.as_ref()) {
            row.decision = Decision::Invalid;
            row.action = Action::Nothing;
            row.error = Some(format!("{e:#}"));
        }
    }
}

/// Refuses a `--prune` that looks like a mistake rather than an intent: the repository has no
/// `modules/` at all (a wrong URL or branch, an emptied checkout), or pruning would remove more
/// than half of the installed modules. `--force` overrides it. The plan is refused as a whole,
/// so nothing changes.
fn prune_guard(repo_present: bool, repo_modules: &Path, plan: &Plan) -> Result<()> {
    let removing = plan
        .modules
        .iter()
        .filter(|m| m.action == Action::Remove)
        .count();
    if removing == 0 {
        return Ok(());
    }
    if !repo_present {
        anyhow::bail!(
            "refusing --prune: the repository has no modules/ directory ({} is missing), so it would remove all {removing} installed modules; check --repo-url and --branch, or pass --prune --force",
            repo_modules.display()
        );
    }
    let installed = plan
        .modules
        .iter()
        .filter(|m| m.installed_index.is_some())
        .count();
    if removing * 2 > installed {
        anyhow::bail!(
            "refusing --prune: it would remove {removing} of the {installed} installed modules (more than half); pass --prune --force if that is intended"
        );
    }
    Ok(())
}

/// The deep checks a module must pass before it is copied and run.
fn check_installable(dir: &Path, index: Option<&ModuleIndex>) -> Result<()> {
    module::check_tree(dir)?;
    if let Some(index) = index {
        for (key, rel) in index.declared_programs() {
            module::check_declared_file(dir, key, rel)?;
        }
    }
    Ok(())
}

type Scanned = std::result::Result<ModuleIndex, String>;

fn decide(
    repo: Option<&Scanned>,
    installed: Option<&Scanned>,
    dep_error: Option<&String>,
    held: bool,
    opts: &PlanOptions,
) -> (Decision, Action, Option<String>) {
    use Decision::*;
    let invalid = |e: &str| (Invalid, Action::Nothing, Some(e.to_string()));
    if let Some(Err(e)) = installed {
        return invalid(&format!("installed copy: {e}"));
    }
    let installed = installed.and_then(|x| x.as_ref().ok());
    if let Some(i) = installed {
        // Only the machine's own `disable` holds a module. An `enabled: false` that came from
        // the repository installs and updates the module without running it (SPEC §3).
        if !i.enabled && held {
            return (Held, Action::Nothing, None);
        }
    }
    let repo = match repo {
        None => {
            // Installed, gone from the repository.
            let action = if opts.prune {
                Action::Remove
            } else {
                Action::Nothing
            };
            return (Orphaned, action, None);
        }
        Some(Err(e)) => return invalid(e),
        Some(Ok(r)) => r,
    };
    if let Some(e) = dep_error {
        return invalid(e);
    }
    match installed {
        None => (New, Action::Install, None),
        Some(i) => match repo.version.cmp(&i.version) {
            std::cmp::Ordering::Greater => (Update, Action::Install, None),
            std::cmp::Ordering::Equal => (UpToDate, Action::Nothing, None),
            std::cmp::Ordering::Less => {
                let action = if opts.allow_downgrade {
                    Action::Install
                } else {
                    Action::Nothing
                };
                (LocalAhead, action, None)
            }
        },
    }
}

/// Unknown dependencies and cycles among the repository's modules, as an error per module.
/// `known`: every module name of both sides, sorted.
fn dependency_errors(
    modules: &BTreeMap<String, Scanned>,
    known: &[String],
) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    let deps: BTreeMap<&str, &[String]> = modules
        .iter()
        .filter_map(|(n, m)| {
            m.as_ref()
                .ok()
                .map(|m| (n.as_str(), m.depends_on.as_slice()))
        })
        .collect();
    for (name, ds) in &deps {
        let unknown: Vec<&str> = ds
            .iter()
            .map(String::as_str)
            .filter(|d| known.binary_search_by(|k| k.as_str().cmp(d)).is_err())
            .collect();
        if !unknown.is_empty() {
            errors.insert(
                name.to_string(),
                format!(
                    "{}: `metadata.depends_on` names no module: {}",
                    modules_index_path(modules, name),
                    unknown.join(", ")
                ),
            );
        } else if ds.iter().any(|d| d == name) {
            errors.insert(
                name.to_string(),
                format!("dependency cycle: {name} → {name}"),
            );
        }
    }
    // Cycles: depth-first search with colours; every module on a cycle gets the cycle's path.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&str, Colour> = deps.keys().map(|k| (*k, Colour::White)).collect();
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
        colour: &mut BTreeMap<&'a str, Colour>,
        stack: &mut Vec<&'a str>,
        errors: &mut BTreeMap<String, String>,
    ) {
        colour.insert(n, Colour::Grey);
        stack.push(n);
        for d in deps.get(n).copied().unwrap_or(&[]) {
            let d = d.as_str();
            match colour.get(d).copied() {
                Some(Colour::White) => visit(d, deps, colour, stack, errors),
                Some(Colour::Grey) if d != n => {
                    let start = stack.iter().position(|x| *x == d).unwrap_or(0);
                    let mut path: Vec<&str> = stack[start..].to_vec();
                    path.push(d);
                    let msg = format!("dependency cycle: {}", path.join(" → "));
                    for m in &stack[start..] {
                        errors.entry(m.to_string()).or_insert_with(|| msg.clone());
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n, Colour::Black);
    }
    let names: Vec<&str> = deps.keys().copied().collect();
    for n in names {
        if colour.get(n) == Some(&Colour::White) {
            visit(n, &deps, &mut colour, &mut Vec::new(), &mut errors);
        }
    }
    errors
}

fn modules_index_path(modules: &BTreeMap<String, Scanned>, name: &str) -> String {
    match modules.get(name) {
        Some(Ok(m)) => m.path.display().to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decision_serializes_as_its_word() {
        use Decision::*;
        for d in [
            New,
            Update,
            UpToDate,
            LocalAhead,
            Orphaned,
            Held,
            Invalid,
            Deferred,
            NotTargeted,
        ] {
            assert_eq!(
                serde_json::to_value(d).expect("serialize"),
                serde_json::Value::String(d.as_str().to_string())
            );
        }
    }

    use super::*;
    use serde_json::json;

    fn module(root: &Path, name: &str, meta: serde_json::Value) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("index.json"),
            json!({ "metadata": meta }).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn every_row_of_the_table() {
        let t = tempfile::tempdir().unwrap();
        let (r, i) = (t.path().join("r"), t.path().join("i"));
        module(&r, "new", json!({"schema_version": "1.0.0"}));
        module(&r, "upd", json!({"schema_version": "1.1"}));
        module(&i, "upd", json!({"schema_version": "1.0.0"}));
        module(&r, "same", json!({"schema_version": "v2.0.0"}));
        module(&i, "same", json!({"schema_version": "2.0"}));
        module(&r, "ahead", json!({"schema_version": "1.0.0-rc.1"}));
        module(&i, "ahead", json!({"schema_version": "1.0.0"}));
        module(&i, "orphan", json!({"schema_version": "1.0.0"}));
        module(&r, "held", json!({"schema_version": "9.0.0"}));
        module(
            &i,
            "held",
            json!({"schema_version": "1.0.0", "enabled": false}),
        );
        module(&r, "badver", json!({"schema_version": "one"}));
        module(
            &r,
            "baddep",
            json!({"schema_version": "1.0.0", "depends_on": ["ghost"]}),
        );
        std::fs::create_dir_all(r.join("bad name")).unwrap();
        let holds: BTreeSet<String> = ["held".to_string()].into();
        let p = plan(
            &r,
            &i,
            PlanOptions {
                holds: holds.clone(),
                ..PlanOptions::default()
            },
        )
        .unwrap();
        let d = |n: &str| p.get(n).unwrap().decision;
        assert_eq!(d("new"), Decision::New);
        assert_eq!(d("upd"), Decision::Update);
        assert_eq!(d("same"), Decision::UpToDate);
        assert_eq!(d("ahead"), Decision::LocalAhead);
        assert_eq!(d("orphan"), Decision::Orphaned);
        assert_eq!(d("held"), Decision::Held);
        assert_eq!(d("badver"), Decision::Invalid);
        assert!(p
            .get("badver")
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .contains("\"one\""));
        assert_eq!(d("baddep"), Decision::Invalid);
        assert!(p
            .get("baddep")
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .contains("ghost"));
        assert_eq!(d("bad name"), Decision::Invalid);
        let apply: Vec<&str> = p.to_apply().map(|m| m.name.as_str()).collect();
        assert_eq!(apply, vec!["new", "upd"]);

        let p = plan(
            &r,
            &i,
            PlanOptions {
                allow_downgrade: true,
                prune: true,
                force: false,
                holds,
                machine: None,
                repository_disabled: None,
            },
        )
        .unwrap();
        let apply: Vec<&str> = p.to_apply().map(|m| m.name.as_str()).collect();
        assert_eq!(apply, vec!["ahead", "new", "orphan", "upd"]);

        // Without the machine's hold, a repository-side `enabled: false` is updated.
        let p = plan(&r, &i, PlanOptions::default()).unwrap();
        assert_eq!(p.get("held").unwrap().decision, Decision::Update);
    }

    #[test]
    fn prune_guard_refuses_a_missing_modules_dir_and_mass_removal() {
        let t = tempfile::tempdir().unwrap();
        let (r, i) = (t.path().join("r"), t.path().join("i"));
        for n in ["a", "b", "c"] {
            module(&i, n, json!({"schema_version": "1.0.0"}));
        }
        let prune = |force| PlanOptions {
            prune: true,
            force,
            ..PlanOptions::default()
        };
        let e = format!("{:#}", plan(&r, &i, prune(false)).unwrap_err());
        assert!(e.contains("no modules/ directory"), "{e}");
        module(&r, "a", json!({"schema_version": "1.0.0"}));
        let e = format!("{:#}", plan(&r, &i, prune(false)).unwrap_err());
        assert!(e.contains("2 of the 3"), "{e}");
        assert_eq!(plan(&r, &i, prune(true)).unwrap().to_apply().count(), 2);
        module(&r, "b", json!({"schema_version": "1.0.0"}));
        assert_eq!(plan(&r, &i, prune(false)).unwrap().to_apply().count(), 1);
    }

    #[test]
    fn cycles_name_the_modules() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        module(&r, "a", json!({"schema_version": "1", "depends_on": ["b"]}));
        module(&r, "b", json!({"schema_version": "1", "depends_on": ["c"]}));
        module(&r, "c", json!({"schema_version": "1", "depends_on": ["a"]}));
        module(&r, "d", json!({"schema_version": "1", "depends_on": ["a"]}));
        module(
            &r,
            "self",
            json!({"schema_version": "1", "depends_on": ["self"]}),
        );
        let p = plan(&r, &t.path().join("none"), PlanOptions::default()).unwrap();
        for n in ["a", "b", "c"] {
            let e = p.get(n).unwrap().error.clone().unwrap();
            assert!(
                e.contains("dependency cycle") && e.contains("a") && e.contains("c"),
                "{e}"
            );
        }
        assert!(p
            .get("self")
            .unwrap()
            .error
            .clone()
            .unwrap()
            .contains("self → self"));
        // d is not on the cycle: it is decided normally, and skipped at apply time.
        assert_eq!(p.get("d").unwrap().decision, Decision::New);
    }

    #[test]
    fn fleet_rules_change_only_installs_and_bad_values_are_invalid() {
        let t = tempfile::tempdir().unwrap();
        let (r, i) = (t.path().join("r"), t.path().join("i"));
        let nobody = json!({"machine_ids": ["someone-else"]});
        module(
            &r,
            "phased",
            json!({"schema_version": "1", "rollout": {"percent": 0}}),
        );
        module(
            &r,
            "other",
            json!({"schema_version": "1", "targets": nobody}),
        );
        // Installed at the repository's version: targets that exclude it change nothing.
        module(
            &r,
            "same",
            json!({"schema_version": "1", "targets": nobody}),
        );
        module(&i, "same", json!({"schema_version": "1"}));
        module(
            &r,
            "bad",
            json!({"schema_version": "1", "rollout": {"percent": 7.5}}),
        );
        module(&i, "bad", json!({"schema_version": "1"}));
        let machine = crate::fleet::Machine {
            id: Some("m1".into()),
            ..crate::fleet::Machine::default()
        };
        let opts = PlanOptions {
            machine: Some(machine),
            ..PlanOptions::default()
        };
        let p = plan(&r, &i, opts).unwrap();
        let d = |n: &str| p.get(n).unwrap().decision;
        assert_eq!(d("phased"), Decision::Deferred);
        let bucket = crate::fleet::bucket("m1", "phased", "1.0.0");
        assert_eq!(p.get("phased").unwrap().rollout, Some((Some(bucket), 0)));
        assert_eq!(d("other"), Decision::NotTargeted);
        assert_eq!(d("same"), Decision::UpToDate);
        assert_eq!(d("bad"), Decision::Invalid);
        assert!(p
            .get("bad")
            .unwrap()
            .error
            .clone()
            .unwrap()
            .contains("index.json"));
        assert_eq!(p.to_apply().count(), 0);
        // Without a machine (no fleet rules), both would install.
        let p = plan(&r, &i, PlanOptions::default()).unwrap();
        assert_eq!(p.to_apply().count(), 2);
    }

    #[test]
    fn missing_entry_file_is_invalid() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        module(&r, "m", json!({"schema_version": "1", "entry": "bin/nope"}));
        let p = plan(&r, &t.path().join("i"), PlanOptions::default()).unwrap();
        assert!(p
            .get("m")
            .unwrap()
            .error
            .clone()
            .unwrap()
            .contains("does not exist"));
    }
}
