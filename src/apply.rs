//! Applying a plan (SPEC §1 step 4–5): each module to install or update goes through a
//! [`Transaction`], its entry point and health check run under the §5 contract, and it is
//! committed or rolled back. Modules are scheduled by priority and dependencies; orphans are
//! removed with `--prune` (kept as their backup).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::fault;
use crate::fs;
use crate::journal::Journal;
use crate::layout::Layout;
use crate::module::ModuleIndex;
use crate::plan::{Action, Decision, ModulePlan, Plan};
use crate::report::Outcome;
use crate::runner::{self, Program, RunSpec};
use crate::schedule::{self, Node};
use crate::transaction::Transaction;

/// Settings for applying.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub jobs: usize,
    /// Python interpreter for `index.py` modules.
    pub python: PathBuf,
    /// Show which modules are running (on a terminal, for people).
    pub progress: bool,
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

/// The interpreter for `main(args)` modules: `$UPDATER_PYTHON`, else `python3` on PATH.
pub fn default_python() -> PathBuf {
    std::env::var_os("UPDATER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
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
        .filter(|m| m.action == Action::Install)
        .collect();
    let nodes: Vec<Node> = installs
        .iter()
        .filter_map(|m| {
            m.repo_index.as_ref().map(|idx| Node {
                name: m.name.clone(),
                priority: idx.priority,
                depends_on: idx.depends_on.clone(),
            })
        })
        .collect();
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
            return Outcome {
                result: "skipped",
                error: Some("the run was asked to stop (SIGTERM/SIGINT) before it started".into()),
                duration_ms: None,
            };
        }
        match plan.get(name) {
            Some(m) => {
                progress.update(name, true);
                let o = install_one(layout, &journal, m, opts);
                progress.update(name, false);
                o
            }
            None => Outcome {
                result: "skipped",
                error: Some("not in the plan".into()),
                duration_ms: None,
            },
        }
    };
    let mut outcomes = schedule::run(&nodes, opts.jobs, external, work)?;
    for o in &outcomes {
        if o.1.result == "skipped" {
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
                    result: "removed",
                    error: None,
                    duration_ms: Some(start.elapsed().as_millis()),
                }
            }
            Err(e) => {
                log::error!("Module {} could not be removed: {e:#}", m.name);
                Outcome {
                    result: "skipped",
                    error: Some(format!("{e:#}")),
                    duration_ms: Some(start.elapsed().as_millis()),
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

fn install_one(layout: &Layout, journal: &Journal, m: &ModulePlan, opts: &ApplyOptions) -> Outcome {
    let start = Instant::now();
    let result = try_install(layout, journal, m, opts);
    let duration_ms = Some(start.elapsed().as_millis());
    let to = m.available.as_deref().unwrap_or("?");
    match result {
        Ok(()) => {
            log::info!("✓ Module {} updated to {to}", m.name);
            Outcome {
                result: "applied",
                error: None,
                duration_ms,
            }
        }
        Err(e) => {
            let reason = format!("{e:#}");
            match &m.installed {
                Some(old) => log::error!("✗ Module {} failed: {reason}; it stays at {old}", m.name),
                None => log::error!("✗ Module {} failed: {reason}; it was not installed", m.name),
            }
            Outcome {
                result: "rolled_back",
                error: Some(reason),
                duration_ms,
            }
        }
    }
}

fn try_install(
    layout: &Layout,
    journal: &Journal,
    m: &ModulePlan,
    opts: &ApplyOptions,
) -> Result<()> {
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
    txn.swap()?;
    let module_dir = layout.module(name);
    let env = environment(layout, m, &module_dir, txn.old_copy().as_deref());
    let log_file = layout.logs().join(format!("{name}.log"));
    fs::remove_all(&log_file)?;

    let entry = runner::resolve_entry(&module_dir, index.entry.as_deref())
        .with_context(|| format!("finding the entry point of {name}"))?;
    fault::point("entry_started", name);
    let pgid_file = crate::transaction::pgid_file(layout, name);
    let step = Step {
        name,
        module_dir: &module_dir,
        env: &env,
        index,
        log_file: &log_file,
        opts,
        pgid_file: &pgid_file,
    };
    match &entry {
        Some(program) => step.run("entry point", program)?,
        None => log::info!("Module {name} has no entry point; its files are installed"),
    }
    fault::point("entry_done", name);
    if let Some(health) = &index.health {
        step.run("health check", &health_program(&module_dir, health))?;
    }
    fault::point("health_done", name);
    txn.commit()
}

/// A health check runs as `python main(args)` when it is a `.py` file, else as an executable.
fn health_program(module_dir: &Path, rel: &str) -> Program {
    let path = module_dir.join(rel);
    if rel.ends_with(".py") {
        Program::PythonMain(path)
    } else {
        Program::Executable(path)
    }
}

/// What every program of one module's update shares: name, directory, environment, timeout,
/// log file.
struct Step<'a> {
    name: &'a str,
    module_dir: &'a Path,
    env: &'a [(String, String)],
    index: &'a ModuleIndex,
    log_file: &'a Path,
    opts: &'a ApplyOptions,
    pgid_file: &'a Path,
}

impl Step<'_> {
    /// Runs the entry point or health check; an unsuccessful run is an error saying why.
    fn run(&self, what: &str, program: &Program) -> Result<()> {
        let name = self.name;
        let outcome = runner::run(&RunSpec {
            module: name,
            module_dir: self.module_dir,
            program,
            args: None,
            env: self.env,
            timeout: self.index.timeout,
            log_file: self.log_file,
            python: &self.opts.python,
            pgid_file: Some(self.pgid_file),
        })
        .with_context(|| format!("running the {what} of {name}"))?;
        if outcome.success {
            log::debug!(
                "Module {name}: {what} succeeded in {} ms",
                outcome.duration.as_millis()
            );
            Ok(())
        } else {
            anyhow::bail!(
                "{what} failed: {}",
                outcome.reason.unwrap_or_else(|| "unknown reason".into())
            )
        }
    }
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
