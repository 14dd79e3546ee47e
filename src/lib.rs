//! `updater` keeps the modules installed on a machine in step with a git repository.
//!
//! The pipeline of one run, one module per concept, data flowing one way:
//! `fs::RunLock` (lock) → `recover` → `git` (sync) → `plan` → `apply` (`schedule`,
//! `transaction`, `runner`) → `global_index` / `state` / `report`. `commands` strings them
//! together for each command (one file per command; `commands::settings` is the only reader of
//! the environment and of the installed index's settings; `perms` holds the permission rules);
//! `cli` turns arguments into a validated `config::Config`; `outcome` is the typed result of each
//! module; `output` is the only printer. See "Architecture" in the README.

pub mod apply;
pub mod checksum;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compose;
pub mod config;
pub mod content;
pub mod doctor;
pub mod fault;
pub mod fleet;
pub mod framework;
pub mod fs;
pub mod git;
pub mod global_index;
pub mod groups;
pub mod hooks;
pub mod index_cache;
pub mod journal;
pub mod layout;
pub mod legacy;
pub mod lifecycle;
pub mod logging;
pub mod manage;
pub mod metrics;
pub mod module;
pub mod outcome;
pub mod output;
pub mod perms;
pub mod plan;
pub mod preserve;
pub mod progress;
pub mod python;
pub mod recover;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod signals;
pub mod snapshot;
pub mod state;
pub mod transaction;
pub mod trust;
pub mod version;
pub mod window;

use anyhow::Result;

use config::{Command, Config};

/// The process exit codes of SPEC §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success (for check: whether or not updates exist, unless `--exit-code`).
    Success,
    /// 1: the run could not proceed; for check, also: a module is invalid.
    Failure,
    /// 2: usage error.
    Usage,
    /// 3: some modules failed, were skipped or are invalid; they are at their old copy.
    Partial,
    /// 100: check `--exit-code`: updates are available and no module is invalid.
    UpdatesAvailable,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Partial => 3,
            ExitStatus::UpdatesAvailable => 100,
        }
    }
}

/// Runs one command. Errors mean the run could not proceed (exit 1). With `--metrics-file`,
/// the metrics are written after check, sync and legacy, whatever their outcome.
pub fn run(cfg: &Config) -> Result<ExitStatus> {
    // The environment is read here, once, before anything can depend on it.
    commands::settings::environment();
    // Log records go to stderr when stdout carries data: a JSON document, or what shells and
    // packaging read (completion names and scripts, the man page).
    let stdout_is_data = cfg.json
        || matches!(
            cfg.command,
            Command::Completions(_) | Command::Man | Command::CompleteModules
        );
    logging::init(cfg.verbosity, stdout_is_data);
    if matches!(cfg.command, Command::Sync | Command::Legacy) {
        signals::install()?;
    }
    let started = std::time::Instant::now();
    let result = dispatch(cfg);
    if let Err(e) = &result {
        if cfg.json && !output::json_printed() {
            // SPEC §6b: a run that cannot proceed still prints one document naming the cause.
            output::json(&report::to_value(&report::ErrorDocument {
                command: cfg.command.name(),
                modules_path: &cfg.modules_path,
                error: format!("{e:#}"),
                exit_code: ExitStatus::Failure.code(),
            }));
        }
    }
    if let Some(path) = &cfg.metrics_file {
        if matches!(
            cfg.command,
            Command::Sync | Command::Check | Command::Legacy
        ) {
            let code = match &result {
                Ok(s) => s.code(),
                Err(_) => ExitStatus::Failure.code(),
            };
            let layout = layout::Layout::new(&cfg.modules_path);
            if let Err(e) =
                metrics::write(path, cfg.command.name(), code, started.elapsed(), &layout)
            {
                log::error!("writing metrics: {e:#}");
            }
        }
    }
    result
}

fn dispatch(cfg: &Config) -> Result<ExitStatus> {
    match &cfg.command {
        Command::Sync => commands::sync(cfg),
        Command::Check => commands::check(cfg),
        Command::Legacy => legacy::run(cfg),
        Command::Status => commands::status(cfg),
        Command::Enable(name) => manage::set_module_enabled(cfg, name, true),
        Command::Disable(name) => manage::set_module_enabled(cfg, name, false),
        Command::Rollback(name) => commands::rollback(cfg, name),
        Command::Doctor => doctor::command(cfg),
        Command::Checksum(name) => checksum::command(cfg, name),
        Command::Completions(shell) => cli::completions(*shell),
        Command::Man => cli::man(),
        Command::CompleteModules => cli::completion::list_modules(cfg),
        Command::List => manage::list(cfg),
        Command::ModuleStatus(name) => manage::module_status(cfg, name),
        Command::Component {
            module,
            component,
            enabled,
        } => manage::set_component(cfg, module, component, *enabled),
        Command::SetBranch { module, branch } => manage::set_branch(cfg, module, branch),
        Command::Compose {
            step,
            dir,
            module,
            docker_config,
        } => commands::compose(
            *step,
            dir.as_ref(),
            module.as_deref(),
            docker_config.as_ref(),
        ),
    }
}
