//! The validated configuration of one run, produced by `cli` and consumed by everything else.

use std::path::PathBuf;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Sync,
    Check,
    Legacy,
    Status,
    Enable(String),
    Disable(String),
    Rollback(String),
    Doctor,
    Checksum(String),
    Completions(clap_complete::Shell),
    Man,
    /// `complete-modules` (hidden): installed module names, for the completion scripts.
    CompleteModules,
    /// `list` / `--list-modules` / `--all-status`: the upstream module list (SPEC §10).
    List,
    /// `--module-status M`: one module in the upstream status format.
    ModuleStatus(String),
    /// `component enable|disable MODULE NAME` / `--enable-component` / `--disable-component`.
    Component {
        module: String,
        component: String,
        enabled: bool,
    },
    /// `set-branch MODULE BRANCH` / `--set-module-branch`.
    SetBranch {
        module: String,
        branch: String,
    },
    /// `compose prepare|up|rollback` (hidden): a Docker Compose module's lifecycle step.
    Compose {
        step: crate::compose::Step,
        dir: Option<PathBuf>,
        module: Option<String>,
        docker_config: Option<PathBuf>,
    },
}

impl Command {
    /// The name used in output (`"command"` in JSON).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Sync => "sync",
            Command::Check => "check",
            Command::Legacy => "legacy",
            Command::Status => "status",
            Command::Enable(_) => "enable",
            Command::Disable(_) => "disable",
            Command::Rollback(_) => "rollback",
            Command::Doctor => "doctor",
            Command::Checksum(_) => "checksum",
            Command::Completions(_) => "completions",
            Command::Man => "man",
            Command::CompleteModules => "complete-modules",
            Command::List => "list",
            Command::ModuleStatus(_) => "module-status",
            Command::Component { .. } => "component",
            Command::SetBranch { .. } => "set-branch",
            Command::Compose { .. } => "compose",
        }
    }
}

/// `--run updated|enabled` (SPEC §5): which entry points a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Only the modules this run installed or updated.
    #[default]
    Updated,
    /// Also every other enabled module, every run.
    Enabled,
}

impl RunMode {
    /// Reads `updated` or `enabled`.
    pub fn parse(s: &str) -> Option<RunMode> {
        match s {
            "updated" => Some(RunMode::Updated),
            "enabled" => Some(RunMode::Enabled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
    Trace,
}

/// Upstream repository used when neither `--repo-url` nor the installed index names one.
pub const DEFAULT_REPO_URL: &str = "https://github.com/homeserversltd/updates.git";

#[derive(Debug, Clone)]
pub struct Config {
    pub command: Command,
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub local_repo: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    /// Absolute install root.
    pub modules_path: PathBuf,
    pub jobs: usize,
    pub json: bool,
    pub exit_code: bool,
    pub allow_downgrade: bool,
    pub prune: bool,
    pub wait: bool,
    pub verbosity: Verbosity,
    /// Require SSH-signed commits (SPEC §9); also on with `metadata.require_signed`.
    pub require_signed: bool,
    /// OpenSSH allowed-signers file [default: <modules-path>/.updater/allowed_signers].
    pub allowed_signers: Option<PathBuf>,
    /// Accept a remote tip that does not descend from the last applied commit.
    pub allow_rewind: bool,
    /// Write a Prometheus textfile-collector file after the run.
    pub metrics_file: Option<PathBuf>,
    /// The total time git network work may take (`--git-timeout`, default 10 min).
    pub git_timeout: std::time::Duration,
    /// `--python`: the interpreter for `main(args)` modules (see `commands::settings::python`).
    pub python: Option<PathBuf>,
    /// `--run`; `None`: the installed index's `metadata.run`, else `updated`.
    pub run: Option<RunMode>,
    /// `--force`: let `--prune` remove what its guard would refuse.
    pub force: bool,
    /// `--machine-id` (see `commands::settings::machine`).
    pub machine_id: Option<String>,
    /// `--phased`.
    pub phased: crate::fleet::Phased,
    /// `--label KEY=VALUE`, in order.
    pub labels: Vec<(String, String)>,
    /// `--window`: the weekly window a sync may apply in; `None`: the installed index's
    /// `metadata.window`, else always (see `commands::settings::gate`).
    pub window: Option<crate::window::Schedule>,
}
