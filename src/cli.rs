//! The command line (SPEC §2): clap definitions, and their translation into a validated
//! [`Config`]. Both the subcommand and the upstream flag forms are accepted.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{Command, Config, Verbosity};

pub mod completion;
pub mod man;

const EXAMPLES: &str = "\
Examples:
  updater                                   sync (same as `updater sync`)
  updater check                             show what would change (same as --check-only)
  updater check --json --exit-code          machine-readable; exit 100 when updates exist
  updater sync --repo-url ./updates --modules-path /tmp/demo
                                            install from a local checkout into a scratch root
  updater status                            list installed modules and their last result
  updater disable adblock                   hold a module at its installed version
  updater rollback adblock                  put back the copy its last update replaced
  updater list                              installed modules in the admin UI's format
  updater component disable website frontend
                                            turn one component of a module off
  updater set-branch website develop        follow another branch of the module's own source
  updater --legacy                          run the legacy manifest mode

Exit codes: 0 success, 1 could not proceed (or an invalid module in check), 2 usage error,
3 some modules failed or were skipped (they are at their old copy), 100 updates available
(check --exit-code).";

const DESCRIPTION: &str = "\
Keeps the modules installed on a machine in step with a git repository, atomically and safely.

updater syncs a local clone of the updates repository, compares each module's schema_version
with the installed copy, swaps changed modules in atomically, runs their entry points (in
parallel, by priority and dependency), rolls back whatever fails, and rewrites the global
index.json so it records exactly what is installed. A failed module keeps its old code and is
retried next run; a lock stops concurrent runs; a crash at any instant leaves every module
either its complete old copy or its complete new one.";

/// Keeps the modules installed on this machine in step with a git repository.
#[derive(Debug, Parser)]
#[command(name = "updater", version, about, long_about = DESCRIPTION, after_help = EXAMPLES,
          max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CommandArg>,

    /// Detect only (same as `updater check`)
    #[arg(long, conflicts_with = "legacy")]
    pub check_only: bool,

    /// Run the legacy manifest mode (same as `updater legacy`)
    #[arg(long)]
    pub legacy: bool,

    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(flatten)]
    pub verbs: UpstreamVerbs,
}

/// The Python orchestrator's module-management spellings (SPEC §2, §10), at most one per call.
#[derive(Debug, Args)]
#[group(id = "upstream_verb", multiple = false)]
pub struct UpstreamVerbs {
    /// List installed modules in the upstream format (same as `updater list`)
    #[arg(long)]
    pub list_modules: bool,

    /// Same as --list-modules
    #[arg(long)]
    pub all_status: bool,

    /// Status of one module (of all without MODULE)
    #[arg(long, value_name = "MODULE", num_args = 0..=1, default_missing_value = "")]
    pub module_status: Option<String>,

    /// Same as `updater enable MODULE`
    #[arg(long, value_name = "MODULE")]
    pub enable_module: Option<String>,

    /// Same as `updater disable MODULE`
    #[arg(long, value_name = "MODULE")]
    pub disable_module: Option<String>,

    /// Same as `updater component enable MODULE COMPONENT`
    #[arg(long, num_args = 2, value_names = ["MODULE", "COMPONENT"])]
    pub enable_component: Option<Vec<String>>,

    /// Same as `updater component disable MODULE COMPONENT`
    #[arg(long, num_args = 2, value_names = ["MODULE", "COMPONENT"])]
    pub disable_component: Option<Vec<String>>,

    /// Same as `updater set-branch MODULE BRANCH`
    #[arg(long, num_args = 2, value_names = ["MODULE", "BRANCH"])]
    pub set_module_branch: Option<Vec<String>>,
}

impl UpstreamVerbs {
    /// The command one of these flags asks for, if any.
    fn command(self) -> Option<Command> {
        let pair = |v: Vec<String>| -> (String, String) {
            let mut it = v.into_iter();
            // clap enforces exactly two values (num_args = 2).
            (it.next().unwrap_or_default(), it.next().unwrap_or_default())
        };
        if self.list_modules || self.all_status {
            return Some(Command::List);
        }
        if let Some(m) = self.module_status {
            return Some(if m.is_empty() {
                Command::List
            } else {
                Command::ModuleStatus(m)
            });
        }
        if let Some(m) = self.enable_module {
            return Some(Command::Enable(m));
        }
        if let Some(m) = self.disable_module {
            return Some(Command::Disable(m));
        }
        if let Some(v) = self.enable_component {
            let (module, component) = pair(v);
            return Some(Command::Component {
                module,
                component,
                enabled: true,
            });
        }
        if let Some(v) = self.disable_component {
            let (module, component) = pair(v);
            return Some(Command::Component {
                module,
                component,
                enabled: false,
            });
        }
        if let Some(v) = self.set_module_branch {
            let (module, branch) = pair(v);
            return Some(Command::SetBranch { module, branch });
        }
        None
    }
}

/// `enable` or `disable`, for `updater component`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    Enable,
    Disable,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Updates repository: https, ssh, git://, file:// or a plain path
    /// [default: the installed index's metadata.repository_url, else the upstream repository]
    #[arg(long, global = true, value_name = "URL")]
    pub repo_url: Option<String>,

    /// Branch to follow [default: the installed index's metadata.branch, else the remote's default]
    #[arg(long, global = true, value_name = "NAME")]
    pub branch: Option<String>,

    /// Where the local clone lives [default: <modules-path>/.updater/repo]
    #[arg(long, global = true, value_name = "PATH")]
    pub local_repo: Option<PathBuf>,

    /// Install root holding modules/ and index.json
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/var/local/lib/updates"
    )]
    pub modules_path: PathBuf,

    /// Legacy manifest [default: <modules-path>/manifest.json]
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// Entry points run at once, at most [default: number of CPUs]
    #[arg(long, short = 'j', global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,

    /// Print one JSON document on stdout (log lines go to stderr)
    #[arg(long, global = true)]
    pub json: bool,

    /// check: exit 100 when updates are available
    #[arg(long, global = true)]
    pub exit_code: bool,

    /// Install an older repository version over a newer installed one
    #[arg(long, global = true)]
    pub allow_downgrade: bool,

    /// Remove installed modules that are gone from the repository
    #[arg(long, global = true)]
    pub prune: bool,

    /// Entry points to run: `updated` (installed or updated by this run) or `enabled` (also
    /// every other enabled module) [default: the installed index's metadata.run, else updated]
    #[arg(long, global = true, value_name = "MODE", value_parser = ["updated", "enabled"])]
    pub run: Option<String>,

    /// With --prune: remove even when the repository has no modules/ or more than half of the
    /// installed modules would go
    #[arg(long, global = true)]
    pub force: bool,

    /// This machine's id for phased rollouts and targets [default: /etc/machine-id]
    #[arg(long, global = true, value_name = "ID")]
    pub machine_id: Option<String>,

    /// Phased rollouts (metadata.rollout): `always` takes every phased version now, `never`
    /// none still being phased [default: honour the rollout]
    #[arg(long, global = true, value_name = "WHEN", value_parser = ["always", "never"])]
    pub phased: Option<String>,

    /// A label KEY=VALUE for metadata.targets (repeatable; beats <modules-path>/.updater/labels)
    #[arg(long, global = true, value_name = "KEY=VALUE")]
    pub label: Vec<String>,

    /// Wait for a running updater instead of exiting 1
    #[arg(long, global = true)]
    pub wait: bool,

    /// Accept only commits carrying an SSH signature by an allowed signer (SPEC §9)
    #[arg(long, global = true)]
    pub require_signed: bool,

    /// OpenSSH allowed-signers file [default: <modules-path>/.updater/allowed_signers]
    #[arg(long, global = true, value_name = "PATH")]
    pub allowed_signers: Option<PathBuf>,

    /// Accept a remote tip that does not descend from the last applied commit
    #[arg(long, global = true)]
    pub allow_rewind: bool,

    /// Give up git network work (clone, fetch) that takes longer than SECS in all [default: 600]
    #[arg(long, global = true, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub git_timeout: Option<u64>,

    /// Write Prometheus metrics (node_exporter textfile format) to PATH after the run
    #[arg(long, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Python interpreter for index.py main(args) modules [default: the installed index's
    /// metadata.python, else <modules-path>/venv/bin/python3 when it exists, else python3]
    #[arg(long, global = true, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Apply only inside this weekly window, UTC (e.g. "Sat 02:00-06:00" or
    /// "Mon-Fri 22:00-05:00", several separated by ","); outside it sync only checks
    /// [default: the installed index's metadata.window, else always]
    #[arg(long, global = true, value_name = "SPEC")]
    pub window: Option<String>,

    /// Only warnings and errors
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail: -v decisions and paths, -vv also git and process detail ($RUST_LOG
    /// refines, e.g. RUST_LOG=updater::git=trace)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

const SYNC_EXAMPLES: &str = "\
Examples:
  updater sync                              sync from the installed index's repository
  updater sync --prune                      also remove modules that left the repository
  updater sync --repo-url ./updates --modules-path /tmp/demo
                                            install from a local checkout into a scratch root
  updater sync --window 'Sat 02:00-06:00'   apply only inside a weekly window (UTC)
  updater sync --run enabled -j 4           run every enabled module's entry, 4 at once";

const CHECK_EXAMPLES: &str = "\
Examples:
  updater check                             what a sync would change
  updater check --json --exit-code          machine-readable; exit 100 when updates exist";

const LEGACY_EXAMPLES: &str = "\
Examples:
  updater legacy                            run the modules of <modules-path>/manifest.json
  updater legacy --manifest /srv/manifest.json --json";

const STATUS_EXAMPLES: &str = "\
Examples:
  updater status                            installed modules and their last result
  updater status --json --modules-path /tmp/demo";

const ENABLE_EXAMPLES: &str = "\
Examples:
  updater enable adblock                    release the hold on adblock
  updater --enable-module adblock           the same, in the admin UI's spelling";

const DISABLE_EXAMPLES: &str = "\
Examples:
  updater disable adblock                   hold adblock at its installed version
  updater --disable-module adblock          the same, in the admin UI's spelling";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  updater rollback adblock                  put back the copy adblock's last update replaced
  updater rollback adblock --modules-path /tmp/demo";

const DOCTOR_EXAMPLES: &str = "\
Examples:
  updater doctor                            exit 1 when something needs attention
  updater doctor --modules-path /tmp/demo";

const CHECKSUM_EXAMPLES: &str = "\
Examples:
  updater checksum adblock                  the value for adblock's legacy manifest entry";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  updater completions bash > /etc/bash_completion.d/updater
  updater completions zsh > /usr/local/share/zsh/site-functions/_updater
  updater completions fish > ~/.config/fish/completions/updater.fish

bash, zsh and fish also complete the names of installed modules (those under --modules-path
when it is on the command line) for enable, disable, rollback, checksum, set-branch and
component.";

const MAN_EXAMPLES: &str = "\
Examples:
  updater man | man -l -                    read it now
  updater man > /usr/local/share/man/man1/updater.1";

const LIST_EXAMPLES: &str = "\
Examples:
  updater list                              name, ENABLED|DISABLED, version, description
  updater --list-modules                    the same, in the admin UI's spelling";

const COMPONENT_EXAMPLES: &str = "\
Examples:
  updater component disable website frontend
                                            turn the frontend component of website off
  updater --enable-component website frontend
                                            turn it on, in the admin UI's spelling";

const SET_BRANCH_EXAMPLES: &str = "\
Examples:
  updater set-branch website develop        follow website's develop branch
  updater --set-module-branch website main  the same, in the admin UI's spelling";

#[derive(Debug, Subcommand)]
pub enum CommandArg {
    /// Sync the repository and install or update modules (the default)
    #[command(after_help = SYNC_EXAMPLES)]
    Sync,
    /// Sync the repository and report what would change; installs nothing
    #[command(after_help = CHECK_EXAMPLES)]
    Check,
    /// Run the installed modules listed in the legacy manifest
    #[command(after_help = LEGACY_EXAMPLES)]
    Legacy,
    /// Show installed modules: version, enabled, last result and when
    #[command(after_help = STATUS_EXAMPLES)]
    Status,
    /// Release a hold: set metadata.enabled to true in the installed copy
    #[command(after_help = ENABLE_EXAMPLES)]
    Enable {
        #[arg(value_name = "MODULE")]
        name: String,
    },
    /// Hold a module: set metadata.enabled to false in the installed copy
    #[command(after_help = DISABLE_EXAMPLES)]
    Disable {
        #[arg(value_name = "MODULE")]
        name: String,
    },
    /// Put back the copy that a module's last update replaced, with its index entry
    #[command(after_help = ROLLBACK_EXAMPLES)]
    Rollback {
        #[arg(value_name = "MODULE")]
        name: String,
    },
    /// Report anything inconsistent in the install root (read-only)
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor,
    /// Print the legacy-manifest checksum of an installed module directory
    #[command(after_help = CHECKSUM_EXAMPLES)]
    Checksum {
        #[arg(value_name = "MODULE")]
        name: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(after_help = MAN_EXAMPLES)]
    Man,
    /// List installed modules in the upstream format: name, ENABLED|DISABLED, version, description
    #[command(after_help = LIST_EXAMPLES)]
    List,
    /// Enable or disable a component (config.components.NAME.enabled) of an installed module
    #[command(after_help = COMPONENT_EXAMPLES)]
    Component {
        #[arg(value_enum)]
        action: Toggle,
        module: String,
        #[arg(value_name = "COMPONENT")]
        name: String,
    },
    /// Set an installed module's own source branch (it must exist on the module's repository)
    #[command(after_help = SET_BRANCH_EXAMPLES)]
    SetBranch { module: String, branch: String },
    /// The installed module names, one a line (for the completion scripts; read-only, no lock)
    #[command(name = "complete-modules", hide = true)]
    CompleteModules,
    /// A Docker Compose module's lifecycle step, run by updater itself (prepare, up, rollback)
    #[command(hide = true)]
    Compose {
        #[arg(value_parser = ["prepare", "up", "rollback"])]
        step: String,
        /// The module directory [default: the working directory]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The module name [default: the directory's name]
        #[arg(long)]
        module: Option<String>,
        /// The Docker config directory [default: $DOCKER_CONFIG, else ~/.docker]
        #[arg(long)]
        docker_config: Option<PathBuf>,
    },
}

impl Cli {
    /// Validates the arguments into a [`Config`].
    pub fn into_config(self) -> Result<Config> {
        let explicit = self.command.is_some() || self.check_only || self.legacy;
        let verb = self.verbs.command();
        let command = match (self.command, self.check_only, self.legacy) {
            (Some(_), true, _) | (Some(_), _, true) => {
                bail!("--check-only and --legacy cannot be combined with a command")
            }
            (None, true, _) => Command::Check,
            (None, _, true) => Command::Legacy,
            (None, false, false) | (Some(CommandArg::Sync), _, _) => Command::Sync,
            (Some(CommandArg::Check), _, _) => Command::Check,
            (Some(CommandArg::Legacy), _, _) => Command::Legacy,
            (Some(CommandArg::Status), _, _) => Command::Status,
            (Some(CommandArg::Enable { name }), _, _) => Command::Enable(name),
            (Some(CommandArg::Disable { name }), _, _) => Command::Disable(name),
            (Some(CommandArg::Rollback { name }), _, _) => Command::Rollback(name),
            (Some(CommandArg::Doctor), _, _) => Command::Doctor,
            (Some(CommandArg::Checksum { name }), _, _) => Command::Checksum(name),
            (Some(CommandArg::Completions { shell }), _, _) => Command::Completions(shell),
            (Some(CommandArg::Man), _, _) => Command::Man,
            (Some(CommandArg::CompleteModules), _, _) => Command::CompleteModules,
            (Some(CommandArg::List), _, _) => Command::List,
            (
                Some(CommandArg::Component {
                    action,
                    module,
                    name,
                }),
                _,
                _,
            ) => Command::Component {
                module,
                component: name,
                enabled: action == Toggle::Enable,
            },
            (Some(CommandArg::SetBranch { module, branch }), _, _) => {
                Command::SetBranch { module, branch }
            }
            (
                Some(CommandArg::Compose {
                    step,
                    dir,
                    module,
                    docker_config,
                }),
                _,
                _,
            ) => Command::Compose {
                step: crate::compose::Step::parse(&step)
                    .ok_or_else(|| anyhow::anyhow!("unknown compose step"))?,
                dir: dir.map(absolute),
                module,
                docker_config: docker_config.map(absolute),
            },
        };
        let command = match verb {
            Some(_) if explicit => {
                bail!("the upstream module-management options cannot be combined with a command")
            }
            Some(v) => v,
            None => command,
        };
        if self.global.exit_code && command != Command::Check {
            bail!("--exit-code applies to check only");
        }
        let g = self.global;
        let verbosity = if g.quiet {
            Verbosity::Quiet
        } else {
            match g.verbose {
                0 => Verbosity::Normal,
                1 => Verbosity::Verbose,
                _ => Verbosity::Trace,
            }
        };
        if let Some(url) = &g.repo_url {
            if url.trim().is_empty() {
                bail!("--repo-url must not be empty");
            }
        }
        if let Some(b) = &g.branch {
            if b.trim().is_empty() || b.starts_with('-') || b.contains("..") || b.contains(' ') {
                bail!("--branch {b:?} is not a valid branch name");
            }
        }
        if let Some(id) = &g.machine_id {
            crate::fleet::check_word("--machine-id", id)?;
        }
        let mut labels = Vec::new();
        for l in &g.label {
            labels.push(crate::fleet::parse_label(l).map_err(|e| e.context("--label"))?);
        }
        let modules_path = absolute(g.modules_path);
        let jobs = g.jobs.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Ok(Config {
            command,
            repo_url: g.repo_url,
            branch: g.branch,
            local_repo: g.local_repo.map(absolute),
            manifest: g.manifest.map(absolute),
            modules_path,
            jobs,
            json: g.json,
            exit_code: g.exit_code,
            allow_downgrade: g.allow_downgrade,
            prune: g.prune,
            wait: g.wait,
            verbosity,
            require_signed: g.require_signed,
            allowed_signers: g.allowed_signers.map(absolute),
            allow_rewind: g.allow_rewind,
            metrics_file: g.metrics_file.map(absolute),
            git_timeout: std::time::Duration::from_secs(g.git_timeout.unwrap_or(600)),
            // A relative path with a directory part is taken from here; a bare name is looked
            // up in PATH when the module runs.
            python: g.python.map(|p| {
                if p.components().count() > 1 {
                    absolute(p)
                } else {
                    p
                }
            }),
            run: g.run.as_deref().and_then(crate::config::RunMode::parse),
            force: g.force,
            machine_id: g.machine_id,
            phased: g
                .phased
                .as_deref()
                .and_then(crate::fleet::Phased::parse)
                .unwrap_or_default(),
            labels,
            window: match g.window.as_deref() {
                Some(spec) => Some(
                    crate::window::Schedule::parse(spec)
                        .map_err(|e| anyhow::anyhow!("--window {e}"))?,
                ),
                None => None,
            },
        })
    }
}

/// `updater completions SHELL`: prints a completion script generated from these definitions
/// (see [`completion`]).
pub fn completions(shell: clap_complete::Shell) -> Result<crate::ExitStatus> {
    crate::output::write_bytes(crate::output::Stream::Stdout, &completion::script(shell));
    Ok(crate::ExitStatus::Success)
}

/// `updater man`: prints the man page (roff), see [`man`].
pub fn man() -> Result<crate::ExitStatus> {
    crate::output::write_bytes(crate::output::Stream::Stdout, &man::render()?);
    Ok(crate::ExitStatus::Success)
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["updater"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().into_config().unwrap()
    }

    #[test]
    fn flag_and_subcommand_forms_agree() {
        assert_eq!(parse(&[]).command, Command::Sync);
        assert_eq!(parse(&["sync"]).command, Command::Sync);
        assert_eq!(parse(&["--check-only"]).command, Command::Check);
        assert_eq!(parse(&["check"]).command, Command::Check);
        assert_eq!(parse(&["--legacy"]).command, Command::Legacy);
        assert_eq!(parse(&["legacy"]).command, Command::Legacy);
        assert_eq!(parse(&["enable", "x"]).command, Command::Enable("x".into()));
    }

    #[test]
    fn options_are_global() {
        let a = parse(&["check", "--json", "--modules-path", "/m"]);
        let b = parse(&["--json", "--modules-path", "/m", "check"]);
        assert!(a.json && b.json);
        assert_eq!(a.modules_path, b.modules_path);
    }

    #[test]
    fn bad_usage_is_rejected() {
        assert!(Cli::try_parse_from(["updater", "--nope"]).is_err());
        assert!(Cli::try_parse_from(["updater", "--check-only", "--legacy"]).is_err());
        assert!(Cli::try_parse_from(["updater", "--jobs", "0"]).is_err());
        let c = Cli::try_parse_from(["updater", "--check-only", "sync"]).unwrap();
        assert!(c.into_config().is_err());
        let c = Cli::try_parse_from(["updater", "sync", "--exit-code"]).unwrap();
        assert!(c.into_config().is_err(), "--exit-code is for check only");
        assert!(Cli::try_parse_from(["updater", "completions", "nosh"]).is_err());
        assert!(Cli::try_parse_from(["updater", "--list-modules", "--all-status"]).is_err());
        let c = Cli::try_parse_from(["updater", "--list-modules", "check"]).unwrap();
        assert!(c.into_config().is_err());
    }

    #[test]
    fn upstream_spellings_map_to_the_verbs() {
        assert_eq!(parse(&["--list-modules"]).command, Command::List);
        assert_eq!(parse(&["--all-status"]).command, Command::List);
        assert_eq!(parse(&["--module-status"]).command, Command::List);
        assert_eq!(
            parse(&["--module-status", "web"]).command,
            Command::ModuleStatus("web".into())
        );
        assert_eq!(
            parse(&["--enable-module", "web"]).command,
            Command::Enable("web".into())
        );
        assert_eq!(
            parse(&["--disable-module", "web"]).command,
            Command::Disable("web".into())
        );
        let comp = |enabled| Command::Component {
            module: "web".into(),
            component: "front".into(),
            enabled,
        };
        assert_eq!(
            parse(&["--enable-component", "web", "front"]).command,
            comp(true)
        );
        assert_eq!(
            parse(&["--disable-component", "web", "front"]).command,
            comp(false)
        );
        assert_eq!(
            parse(&["component", "disable", "web", "front"]).command,
            comp(false)
        );
        let branch = Command::SetBranch {
            module: "web".into(),
            branch: "dev".into(),
        };
        assert_eq!(
            parse(&["--set-module-branch", "web", "dev"]).command,
            branch
        );
        assert_eq!(parse(&["set-branch", "web", "dev"]).command, branch);
        assert_eq!(parse(&["list"]).command, Command::List);
    }
}
