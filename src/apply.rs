//! Applying a plan (SPEC §1 step 4–5): each module to install or update goes through a
//! [`Transaction`], its entry point and health check run under the §5 contract, and it is
//! committed or rolled back. Modules are scheduled by priority and dependencies; orphans are
//! removed with `--prune` (kept as their backup). Under `--run enabled`, every other enabled
//! module's entry point runs too, after the installs of its priority (a failure restores its
//! `backup_paths`; its files did not change). Of a group's enabled members only one runs (§5).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::RunMode;
use crate::fs;
use crate::groups;
use crate::journal::Journal;
use crate::layout::Layout;
use crate::lifecycle;
use crate::outcome::{ModuleResult, Outcome, Restart};
use crate::plan::{Action, Decision, ModulePlan, Plan};
use crate::preserve::{self, escape};
use crate::runner::RunOutcome;
use crate::schedule::{self, Node};
use crate::snapshot;
use crate::transaction::{self, Transaction};

/// Settings for applying.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub jobs: usize,
    /// Python interpreter for `index.py` modules.
    pub python: PathBuf,
    /// Show which modules are running (on a terminal, for people).
    pub progress: bool,
    /// `--run updated|enabled` (SPEC §5).
    pub run: RunMode,
    /// The `enabled` values this machine chose (`updater enable`/`disable`), carried into
    /// updated copies.
    pub machine_enabled: BTreeMap<String, bool>,
}

/// Which modules are running, for people watching a terminal (stderr).
struct Progress {
    enabled: bool,
    total: usize,
    state: std::sync::Mutex<(usize, Vec<String>)>,
}

impl Progress {
    fn update(&self, name: &str, started: bool) {
        if !self.enabled {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if started {
            st.1.push(name.to_string());
        } else {
            st.1.retain(|n| n != name);
            st.0 += 1;
        }
        let running = if st.1.is_empty() {
            "-".to_string()
        } else {
            st.1.join(", ")
        };
        crate::output::err(&format!(
            "[{}/{}] running: {}",
            st.0,
            self.total,
            crate::output::escape(&running)
        ));
    }
}

/// Applies every module of `plan` whose action is not `Nothing`; returns each one's outcome.
pub fn apply(
    layout: &Layout,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<BTreeMap<String, Outcome>> {
    let journal = Journal::load(&layout.journal())?;
    fs::create_dir_all(&layout.staging())?;
    fs::create_dir_all(&layout.logs())?;
    let installs: Vec<&ModulePlan> = plan
        .to_apply()
        .filter(|m| m.action == Action::Install && m.repo_index.is_some())
        .collect();
    let installing: BTreeSet<&str> = installs.iter().map(|m| m.name.as_str()).collect();
    // Unchanged modules whose entry point runs too (`--run enabled`).
    let run_only: Vec<&ModulePlan> = match opts.run {
        RunMode::Updated => Vec::new(),
        RunMode::Enabled => plan
            .modules
            .iter()
            .filter(|m| {
                m.action == Action::Nothing
                    && m.decision != Decision::Invalid
                    && m.decision != Decision::Held
                    && m.installed_index.as_ref().is_some_and(|i| i.enabled)
            })
            .collect(),
    };
    let standby = group_standby(plan, &installs, &run_only, opts);
    let mut nodes: Vec<Node> = installs
        .iter()
        .filter_map(|m| {
            m.repo_index.as_ref().map(|idx| Node {
                name: m.name.clone(),
                priority: idx.priority,
                depends_on: idx.depends_on.clone(),
                phase: 0,
            })
        })
        .collect();
    let mut outcomes_before: BTreeMap<String, Outcome> = BTreeMap::new();
    for m in &run_only {
        if let Some(reason) = standby.get(&m.name) {
            log::info!("Module {} is on standby: {reason}", escape(&m.name));
            outcomes_before.insert(
                m.name.clone(),
                Outcome::new(ModuleResult::Standby, Some(reason.clone())),
            );
        } else if let Some(idx) = &m.installed_index {
            nodes.push(Node {
                name: m.name.clone(),
                priority: idx.priority,
                depends_on: idx.depends_on.clone(),
                phase: 1,
            });
        }
    }
    let external = |dep: &str| -> std::result::Result<(), String> {
        match plan.get(dep) {
            Some(m) if m.decision == Decision::Invalid => {
                Err(format!("dependency {dep} is invalid"))
            }
            Some(m) if m.installed_index.is_some() => Ok(()),
            _ => Err(format!("dependency {dep} is not installed")),
        }
    };
    let progress = Progress {
        enabled: opts.progress,
        total: nodes.len(),
        state: std::sync::Mutex::new((0, Vec::new())),
    };
    let work = |name: &str| -> Outcome {
        if crate::signals::stop_requested() {
            return Outcome::new(
                ModuleResult::Skipped,
                Some("the run was asked to stop (SIGTERM/SIGINT) before it started".into()),
            );
        }
        match plan.get(name) {
            Some(m) => {
                progress.update(name, true);
                let o = if installing.contains(name) {
                    install_one(layout, &journal, m, opts, standby.get(name))
                } else {
                    run_one(layout, m, opts)
                };
                progress.update(name, false);
                o
            }
            None => Outcome::new(ModuleResult::Skipped, Some("not in the plan".into())),
        }
    };
    let mut outcomes = schedule::run(&nodes, opts.jobs, external, work)?;
    outcomes.extend(outcomes_before);
    for o in &outcomes {
        if o.1.result == ModuleResult::Skipped {
            log::warn!(
                "Module {} skipped: {}",
                o.0,
                o.1.error.as_deref().unwrap_or("")
            );
        }
    }
    for m in plan.to_apply().filter(|m| m.action == Action::Remove) {
        let start = Instant::now();
        let outcome = match remove_one(layout, &m.name) {
            Ok(()) => {
                log::info!(
                    "Module {} removed (kept as its backup; `updater rollback {}` restores it)",
                    m.name,
                    m.name
                );
                Outcome {
                    duration_ms: Some(start.elapsed().as_millis()),
                    ..Outcome::new(ModuleResult::Removed, None)
                }
            }
            Err(e) => {
                log::error!("Module {} could not be removed: {e:#}", m.name);
                Outcome {
                    duration_ms: Some(start.elapsed().as_millis()),
                    ..Outcome::new(ModuleResult::Skipped, Some(format!("{e:#}")))
                }
            }
        };
        outcomes.insert(m.name.clone(), outcome);
    }
    Ok(outcomes)
}

/// Moves an orphaned module to its backup slot (replacing the previous backup).
fn remove_one(layout: &Layout, name: &str) -> Result<()> {
    let installed = layout.module(name);
    let backup = layout.backup_of(name);
    fs::create_dir_all(&layout.backup())?;
    fs::remove_all(&backup)?;
    fs::rename(&installed, &backup)
}

/// Of the enabled modules sharing a group, which ones do not run, and why. Only groups with a
/// member that would run in this run are probed. Members are every enabled module of the
/// group, installed or being installed (held ones are not enabled).
fn group_standby(
    plan: &Plan,
    installs: &[&ModulePlan],
    run_only: &[&ModulePlan],
    opts: &ApplyOptions,
) -> BTreeMap<String, String> {
    let installing: BTreeSet<&str> = installs.iter().map(|m| m.name.as_str()).collect();
    let mut groups: BTreeMap<String, Vec<groups::Member>> = BTreeMap::new();
    for m in &plan.modules {
        let (index, enabled) = if installing.contains(m.name.as_str()) {
            let Some(idx) = m.repo_index.as_ref() else {
                continue;
            };
            let on = opts
                .machine_enabled
                .get(&m.name)
                .copied()
                .unwrap_or(idx.enabled);
            (idx, on)
        } else {
            let Some(idx) = m.installed_index.as_ref() else {
                continue;
            };
            (
                idx,
                idx.enabled && m.decision != Decision::Held && m.decision != Decision::Invalid,
            )
        };
        let Some(group) = &index.group else { continue };
        if !enabled {
            continue;
        }
        groups
            .entry(group.clone())
            .or_default()
            .push(groups::Member {
                name: m.name.clone(),
                order: index.group_order,
                service: index.service_name.clone().unwrap_or_else(|| m.name.clone()),
            });
    }
    let runs: BTreeSet<&str> = installing
        .iter()
        .copied()
        .chain(run_only.iter().map(|m| m.name.as_str()))
        .collect();
    groups.retain(|_, members| members.iter().any(|m| runs.contains(m.name.as_str())));
    let mut standby = BTreeMap::new();
    for r in groups::resolve(groups, groups::systemctl_is_active) {
        for name in &r.members {
            if let Some(reason) = r.standby_reason(name) {
                standby.insert(name.clone(), reason);
            }
        }
    }
    standby
}

/// How an install that succeeded ended.
enum Installed {
    /// The entry point (if any) and health check ran and passed.
    Ran(Option<serde_json::Value>),
    /// Installed without running: `enabled: false` in the new copy.
    Disabled,
    /// Installed without running: another member of its group runs.
    Standby(String),
    /// The entry point or health check failed after the swap: the old copy is back and was
    /// restarted (`lifecycle::restart_old`).
    RolledBack(anyhow::Error, Restart),
}

fn install_one(
    layout: &Layout,
    journal: &Journal,
    m: &ModulePlan,
    opts: &ApplyOptions,
    standby: Option<&String>,
) -> Outcome {
    let start = Instant::now();
    let result = try_install(layout, journal, m, opts, standby);
    let duration_ms = Some(start.elapsed().as_millis());
    let to = m.available.as_deref().unwrap_or("?");
    let name = escape(&m.name);
    let mut rollback = None;
    let (result, error, details) = match result {
        Ok(Installed::Ran(details)) => {
            log::info!("✓ Module {name} updated to {to}");
            (ModuleResult::Applied, None, details)
        }
        Ok(Installed::RolledBack(e, restart)) => {
            let reason = format!("{e:#}");
            let line = format!("✗ Module {name} failed: {reason}; {}", restart.describe());
            log::error!("{line}");
            rollback = Some(restart);
            (ModuleResult::RolledBack, Some(reason), None)
        }
        Ok(Installed::Disabled) => {
            log::info!(
                "✓ Module {name} installed at {to}; not run (its index says enabled: false)"
            );
            (ModuleResult::Applied, None, None)
        }
        Ok(Installed::Standby(reason)) => {
            log::info!("✓ Module {name} installed at {to}; on standby: {reason}");
            (ModuleResult::Standby, Some(reason), None)
        }
        Err(e) => {
            let reason = format!("{e:#}");
            match &m.installed {
                Some(old) => log::error!("✗ Module {name} failed: {reason}; it stays at {old}"),
                None => log::error!("✗ Module {name} failed: {reason}; it was not installed"),
            }
            (ModuleResult::RolledBack, Some(reason), None)
        }
    };
    Outcome {
        result,
        error,
        duration_ms,
        details,
        rollback,
    }
}

fn try_install(
    layout: &Layout,
    journal: &Journal,
    m: &ModulePlan,
    opts: &ApplyOptions,
    standby: Option<&String>,
) -> Result<Installed> {
    let (Some(index), Some(source)) = (m.repo_index.as_ref(), m.repo_dir.as_ref()) else {
        anyhow::bail!("the repository copy of {} is unreadable", m.name);
    };
    let name = m.name.as_str();
    let to = index.version.to_string();
    match &m.installed {
        Some(from) => log::info!("Updating module {name}: {from} → {to}"),
        None => log::info!("Installing module {name}: {to}"),
    }
    let mut txn = Transaction::stage(layout, journal, name, source, &to, &index.backup_paths)?;
    let staged = transaction::staged_dir(layout, name);
    let machine_enabled = opts.machine_enabled.get(name).copied();
    let enabled = if m.installed_index.is_some() {
        preserve::carry_into_staged(name, &layout.module(name), &staged, machine_enabled)
            .with_context(|| format!("keeping this machine's values of {name}"))?
    } else {
        index.enabled
    };
    preserve::make_scripts_executable(&staged)?;
    // Lifecycle: `prepare` runs from the staged copy (when the entry will run); its failure
    // drops `txn`, which discards the staging.
    if enabled && standby.is_none() {
        let installed = layout.module(name);
        let old = fs::exists_no_follow(&installed).then_some(installed.as_path());
        let env = environment(layout, m, &staged, old);
        lifecycle::prepare(layout, name, index, &staged, &env, &opts.python)?;
        txn.restart_old_on_rollback();
    }
    txn.swap()?;
    if !enabled {
        txn.commit()?;
        return Ok(Installed::Disabled);
    }
    if let Some(reason) = standby {
        txn.commit()?;
        return Ok(Installed::Standby(reason.clone()));
    }
    let module_dir = layout.module(name);
    let old = txn.old_copy();
    let env = environment(layout, m, &module_dir, old.as_deref());
    let ran = lifecycle::run_entry_and_health(
        layout,
        name,
        index,
        &module_dir,
        &env,
        &opts.python,
        lifecycle::Run::Install,
    );
    match ran {
        Ok(details) => {
            txn.commit()?;
            Ok(Installed::Ran(details))
        }
        // Lifecycle: the old copy comes back, then its rollback step (or entry) restarts it.
        Err(e) => {
            txn.rollback()?;
            let restart = match &old {
                Some(_) => lifecycle::restart_old(layout, journal, name, &to, &opts.python),
                None => Restart::nothing(None),
            };
            Ok(Installed::RolledBack(e, restart))
        }
    }
}

/// `--run enabled`: runs an unchanged, enabled module's entry point (and health check). Its
/// `backup_paths` are snapshotted first and restored when it fails; its files are not touched.
fn run_one(layout: &Layout, m: &ModulePlan, opts: &ApplyOptions) -> Outcome {
    let start = Instant::now();
    let result = try_run(layout, m, opts);
    let duration_ms = Some(start.elapsed().as_millis());
    let name = escape(&m.name);
    let (result, error, details) = match result {
        Ok(details) => {
            log::info!("✓ Module {name} ran");
            (ModuleResult::Ran, None, details)
        }
        Err(e) => {
            let reason = format!("{e:#}");
            log::error!(
                "✗ Module {name} failed: {reason}; its backup_paths were restored, its files are unchanged"
            );
            (ModuleResult::Failed, Some(reason), None)
        }
    };
    Outcome {
        result,
        error,
        duration_ms,
        details,
        rollback: None,
    }
}

fn try_run(
    layout: &Layout,
    m: &ModulePlan,
    opts: &ApplyOptions,
) -> Result<Option<serde_json::Value>> {
    let Some(index) = m.installed_index.as_ref() else {
        anyhow::bail!("the installed copy of {} is unreadable", m.name);
    };
    let name = m.name.as_str();
    let module_dir = layout.module(name);
    let steps = lifecycle::steps(index, &module_dir)
        .with_context(|| format!("finding the entry point of {name}"))?;
    if steps.entry.is_none() {
        log::debug!("Module {name} has no entry point; nothing to run");
        return Ok(None);
    }
    log::info!("Running module {name} ({})", index.version);
    // The snapshot's directory name starts with a dot, which no module name can.
    let snap = if index.backup_paths.is_empty() {
        None
    } else {
        let dir = tempfile::Builder::new()
            .prefix(".run-")
            .tempdir_in(layout.staging())
            .with_context(|| {
                format!(
                    "creating a snapshot directory in {}",
                    layout.staging().display()
                )
            })?;
        snapshot::take(dir.path(), &index.backup_paths)
            .with_context(|| format!("snapshotting the backup_paths of module {name}"))?;
        Some(dir)
    };
    let version = index.version.to_string();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let env = vec![
        ("UPDATER_MODULE".to_string(), name.to_string()),
        ("UPDATER_FROM_VERSION".to_string(), version.clone()),
        ("UPDATER_TO_VERSION".to_string(), version),
        ("UPDATER_MODULE_DIR".to_string(), s(&module_dir)),
        ("UPDATER_BACKUP_DIR".to_string(), String::new()),
        ("UPDATER_MODULES_PATH".to_string(), s(&layout.root)),
    ];
    let result = lifecycle::run_entry_and_health(
        layout,
        name,
        index,
        &module_dir,
        &env,
        &opts.python,
        lifecycle::Run::Unchanged,
    );
    if result.is_err() {
        if let Some(dir) = &snap {
            snapshot::restore(dir.path(), &index.backup_paths).with_context(|| {
                format!("restoring the backup_paths of module {name} after its failure")
            })?;
        }
    }
    result
}

/// What a Python `main` returned beyond `success` (SPEC §6b `details`).
pub fn details_of(outcome: &RunOutcome) -> Option<serde_json::Value> {
    outcome.details.clone()
}

/// The `UPDATER_*` variables of SPEC §5.
fn environment(
    layout: &Layout,
    m: &ModulePlan,
    module_dir: &Path,
    old: Option<&Path>,
) -> Vec<(String, String)> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("UPDATER_MODULE".into(), m.name.clone()),
        (
            "UPDATER_FROM_VERSION".into(),
            m.installed.clone().unwrap_or_default(),
        ),
        (
            "UPDATER_TO_VERSION".into(),
            m.available.clone().unwrap_or_default(),
        ),
        ("UPDATER_MODULE_DIR".into(), s(module_dir)),
        ("UPDATER_BACKUP_DIR".into(), old.map(s).unwrap_or_default()),
        ("UPDATER_MODULES_PATH".into(), s(&layout.root)),
    ]
}
