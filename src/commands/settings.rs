//! The settings stage: the one reader of the process environment (`UPDATER_PYTHON`,
//! `UPDATER_CRASH_AT`, `UPDATER_FRAMEWORK_FAIL_AT`, `UPDATER_HOOK_TIMEOUT_SECS`,
//! `UPDATER_NO_FORKSERVER`, `UPDATER_MACHINE_ID_FILE`, `UPDATER_NOW`, `RUST_LOG`, `JOURNAL_STREAM`,
//! `DOCKER_CONFIG`, `HOME`, `UPDATER_FROM_VERSION` (Compose modules), the working directory; the
//! one writer too: `SSL_CERT_FILE`, see
//! [`prepare_git`]) and of the installed global index's settings (`repository_url`,
//! `branch`, `require_signed`, `python`, `run`, `window`; and the inhibit switch, see [`inhibit`]). Each command resolves them here, once, into
//! [`RepoSettings`] (where to sync from and whom to trust) and [`RunSettings`] (how to run
//! modules); nothing below `commands` looks at either source again.
//!
//! The order of every rung is the SPEC's: the command line first, then the environment (only
//! the test and debug overrides), then the installed index, then the built-in default.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::{Config, RunMode, Verbosity, DEFAULT_REPO_URL};
use crate::git;
use crate::global_index::GlobalIndex;
use crate::layout::Layout;

/// What the process environment says, read once per process.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$UPDATER_PYTHON` (non-empty): the interpreter below `--python` (see `python`).
    pub python: Option<PathBuf>,
    /// `$UPDATER_CRASH_AT`: the fault point to die at (debug builds; see `fault`).
    pub crash_at: Option<String>,
    /// `$UPDATER_FRAMEWORK_FAIL_AT`: the framework install point to fail at (debug builds; see
    /// `framework`).
    pub framework_fail_at: Option<String>,
    /// `$UPDATER_HOOK_TIMEOUT_SECS` (a positive whole number): each post-sync hook's timeout.
    pub hook_timeout: Option<Duration>,
    /// The working directory: a relative `--repo-url` path is made absolute against it.
    pub cwd: Option<PathBuf>,
    /// `$UPDATER_NO_FORKSERVER` unset, empty or "0": `main(args)` modules may run through the
    /// fork-server (`runner::RunSpec::fork_server`); anything else always starts a fresh interpreter.
    pub fork_server: bool,
    /// `$UPDATER_MACHINE_ID_FILE` (non-empty): read instead of `/etc/machine-id` (tests).
    pub machine_id_file: Option<PathBuf>,
    /// `$UPDATER_NOW` (`YYYY-MM-DDTHH:MM:SSZ`): the test hook that stands in for the clock when
    /// deciding the update window (see [`now_unix`]).
    pub now: Option<String>,
    /// `$RUST_LOG` (non-empty): log filter directives laid over `-q`/`-v` (see `logging`).
    pub rust_log: Option<String>,
    /// `$JOURNAL_STREAM` (`DEV:INODE`, set by systemd): when it names the stream the log goes
    /// to, log lines are written for journald (see `logging`).
    pub journal_stream: Option<String>,
    /// `$DOCKER_CONFIG` (non-empty): the directory of the Docker config file (see
    /// [`docker_config_file`]).
    pub docker_config: Option<PathBuf>,
    /// `$HOME` (non-empty): `~/.docker/config.json` when `$DOCKER_CONFIG` is unset.
    pub home: Option<PathBuf>,
    /// `$UPDATER_FROM_VERSION`, as the runner sets it for a module's programs (empty for a new
    /// module): `updater compose up` takes a failed first install down again.
    pub from_version: Option<String>,
    /// This binary (`/proc/self/exe`): the program of Docker Compose modules' steps.
    pub exe: Option<PathBuf>,
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Reads the environment (once; later calls return the first reading) and arms the fault
/// points from it. `lib::run` calls this before anything else.
pub fn environment() -> &'static Environment {
    ENVIRONMENT.get_or_init(|| {
        let env = Environment {
            python: std::env::var_os(crate::python::PYTHON_VAR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            crash_at: std::env::var("UPDATER_CRASH_AT").ok(),
            framework_fail_at: std::env::var("UPDATER_FRAMEWORK_FAIL_AT").ok(),
            hook_timeout: std::env::var("UPDATER_HOOK_TIMEOUT_SECS")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            cwd: std::env::current_dir().ok(),
            fork_server: crate::runner::fork_server_enabled(
                std::env::var_os(crate::runner::NO_FORK_SERVER_VAR).as_deref(),
            ),
            machine_id_file: std::env::var_os("UPDATER_MACHINE_ID_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            now: std::env::var(NOW_VAR).ok().filter(|v| !v.is_empty()),
            rust_log: std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            journal_stream: std::env::var("JOURNAL_STREAM")
                .ok()
                .filter(|v| !v.is_empty()),
            docker_config: std::env::var_os("DOCKER_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            from_version: std::env::var("UPDATER_FROM_VERSION").ok(),
            exe: std::env::current_exe().ok(),
        };
        crate::logging::arm(env.rust_log.clone(), env.journal_stream.clone());
        crate::fault::arm(env.crash_at.clone());
        crate::framework::arm_failure(env.framework_fail_at.clone());
        env
    })
}

/// The Docker config file whose `auths` give registry credentials to Compose modules (as the
/// docker CLI finds it): `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn docker_config_file() -> Option<PathBuf> {
    let env = environment();
    match (&env.docker_config, &env.home) {
        (Some(dir), _) => Some(dir.join("config.json")),
        (None, Some(home)) => Some(home.join(".docker").join("config.json")),
        (None, None) => None,
    }
}

/// The clone updater syncs: `--local-repo`, else `<modules-path>/.updater/repo`.
pub fn clone_path(cfg: &Config, layout: &Layout) -> PathBuf {
    cfg.local_repo
        .clone()
        .unwrap_or_else(|| layout.default_clone())
}

/// Progress is for people: only on a terminal, never under `--json` or `-q`.
pub fn show_progress(cfg: &Config) -> bool {
    !cfg.json
        && cfg.verbosity != Verbosity::Quiet
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Where to sync from and whom to trust.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// `--repo-url`, else the installed index's `metadata.repository_url`, else the upstream
    /// repository; normalized.
    pub url: String,
    /// `--branch`, else the installed index's `metadata.branch`; `None`: the remote's default.
    pub branch: Option<String>,
    /// The clone (see [`clone_path`]).
    pub clone: PathBuf,
    /// Whether the clone is updater's own (`<modules-path>/.updater/repo`).
    pub default_clone: bool,
    /// `--require-signed` or `metadata.require_signed`: the allowed-signers file to verify
    /// against (`--allowed-signers`, else `<modules-path>/.updater/allowed_signers`).
    pub allowed_signers: Option<PathBuf>,
    /// Show transfer progress.
    pub progress: bool,
}

impl RepoSettings {
    pub fn resolve(cfg: &Config, layout: &Layout, installed: Option<&GlobalIndex>) -> RepoSettings {
        let url = cfg
            .repo_url
            .clone()
            .or_else(|| installed.and_then(|i| i.repository_url().map(str::to_string)))
            .unwrap_or_else(|| DEFAULT_REPO_URL.to_string());
        let branch = cfg
            .branch
            .clone()
            .or_else(|| installed.and_then(|i| i.branch().map(str::to_string)));
        let clone = clone_path(cfg, layout);
        let require_signed = cfg.require_signed || installed.is_some_and(|i| i.require_signed());
        let allowed_signers = require_signed.then(|| {
            cfg.allowed_signers
                .clone()
                .unwrap_or_else(|| layout.state_dir().join("allowed_signers"))
        });
        prepare_git(&url);
        // -v: where everything comes from and goes to.
        let source = |cli: bool, index: bool| {
            if cli {
                "the command line"
            } else if index {
                "the installed index"
            } else {
                "the default"
            }
        };
        log::debug!(
            "Install root {}: index {}, state {}",
            cfg.modules_path.display(),
            layout.index().display(),
            layout.state_dir().display()
        );
        log::debug!(
            "Repository {url} (from {}), {}, clone {}{}",
            source(
                cfg.repo_url.is_some(),
                installed.is_some_and(|i| i.repository_url().is_some())
            ),
            match &branch {
                Some(b) => format!(
                    "branch {b} (from {})",
                    source(cfg.branch.is_some(), installed.is_some())
                ),
                None => "the remote's default branch".to_string(),
            },
            clone.display(),
            if clone == layout.default_clone() {
                " (updater's own)"
            } else {
                " (--local-repo)"
            }
        );
        match &allowed_signers {
            Some(file) => log::debug!(
                "Signed commits required; allowed signers {}",
                file.display()
            ),
            None => log::debug!("Signed commits not required"),
        }
        RepoSettings {
            url: git::normalize_url(&url, environment().cwd.as_deref()),
            branch,
            default_clone: clone == layout.default_clone(),
            clone,
            allowed_signers,
            progress: show_progress(cfg),
        }
    }
}

/// Prepares the process for libgit2, once, before its first use: for a remote that is not
/// https/http, `SSL_CERT_FILE` is pointed at `/dev/null`, so libgit2's OpenSSL start-up does
/// not parse the system's CA bundle (50-60 ms of every run, for a check that never runs: no TLS
/// peer is verified). No `git2::opts` setting can do this: git2 initialises OpenSSL (and probes
/// the certificate paths into these same variables) on its first call, before any option could
/// be set. This runs in the settings stage, on the main thread, before the git worker, the
/// fork server or any output thread starts and before libgit2 is first used; entry points get a
/// clean environment, so the variable reaches no module.
pub fn prepare_git(url: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !git::uses_tls(url) {
            std::env::set_var("SSL_CERT_FILE", "/dev/null");
        }
    });
}

/// The machine-id file read when `--machine-id` is not given.
pub const MACHINE_ID_FILE: &str = "/etc/machine-id";

/// This machine for phased rollouts and targets (`fleet`): the id from `--machine-id`, else
/// `$UPDATER_MACHINE_ID_FILE`, else `/etc/machine-id` (unreadable: no id, with a warning; a
/// phased version is then deferred); the hostname from the kernel; the labels of
/// `<modules-path>/.updater/labels`, each overridden by a `--label` (a bad labels file is an
/// error naming it); `--phased`.
pub fn machine(cfg: &Config, layout: &Layout) -> anyhow::Result<crate::fleet::Machine> {
    let id = match &cfg.machine_id {
        Some(id) => Some(id.clone()),
        None => {
            let file = environment()
                .machine_id_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(MACHINE_ID_FILE));
            match crate::fleet::read_machine_id(&file) {
                Ok(Some(id)) => Some(id),
                Ok(None) => {
                    log::debug!("{} does not exist: no machine id", file.display());
                    None
                }
                Err(e) => {
                    log::warn!("no machine id: {e:#}");
                    None
                }
            }
        }
    };
    let hostname = crate::fleet::read_machine_id(Path::new("/proc/sys/kernel/hostname"))
        .ok()
        .flatten();
    let mut labels = crate::fleet::read_labels(&layout.state_dir().join("labels"))?;
    labels.extend(cfg.labels.iter().cloned());
    Ok(crate::fleet::Machine {
        id,
        hostname,
        labels,
        phased: cfg.phased,
    })
}

/// How to run modules.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The interpreter of `main(args)` modules (see [`python`]).
    pub python: PathBuf,
    /// `--run`, else the installed index's `metadata.run`, else `updated`.
    pub run: RunMode,
}

impl RunSettings {
    /// Resolves them (a bad `metadata.run` is logged here, once).
    pub fn resolve(cfg: &Config, installed: Option<&GlobalIndex>) -> RunSettings {
        let settings = RunSettings {
            python: python(cfg, installed),
            run: run_mode(cfg.run, installed),
        };
        log::debug!(
            "Run mode {}; main(args) modules run with {}",
            format!("{:?}", settings.run).to_lowercase(),
            settings.python.display()
        );
        settings
    }
}

/// The run mode: `--run`, else the installed index's `metadata.run` (`updated` or `enabled`;
/// anything else is a warning and the default), else `updated`.
pub fn run_mode(cli: Option<RunMode>, installed: Option<&GlobalIndex>) -> RunMode {
    if let Some(m) = cli {
        return m;
    }
    let value = installed
        .and_then(|i| i.doc.get("metadata"))
        .and_then(|m| m.get("run"));
    match value {
        None | Some(serde_json::Value::Null) => RunMode::default(),
        Some(v) => match v.as_str().and_then(RunMode::parse) {
            Some(m) => m,
            None => {
                log::warn!(
                    "{}: `metadata.run` {} is not \"updated\" or \"enabled\"; using updated",
                    installed
                        .map(|i| i.path.display().to_string())
                        .unwrap_or_default(),
                    crate::output::escape(&v.to_string())
                );
                RunMode::default()
            }
        },
    }
}

/// The interpreter of `main(args)` modules: `--python`, `$UPDATER_PYTHON`, the installed
/// index's `metadata.python`, the install root's venv, `python3` (see `python::choose`).
pub fn python(cfg: &Config, installed: Option<&GlobalIndex>) -> PathBuf {
    crate::python::choose(
        cfg.python.as_deref(),
        environment().python.as_deref().map(Path::new),
        installed.and_then(crate::python::index_python),
        &cfg.modules_path,
    )
}

/// The test hook for the clock of the update window (see [`Environment::now`]).
pub const NOW_VAR: &str = "UPDATER_NOW";
/// The inhibit switch, under `<modules-path>/.updater/`.
pub const INHIBIT_FILE: &str = "inhibit";
/// The most bytes of the inhibit file read as its reason.
const INHIBIT_READ_MAX: u64 = 4096;
/// The most characters of the reason shown.
const INHIBIT_REASON_MAX: usize = 200;

/// Updates are inhibited: `<modules-path>/.updater/inhibit` exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inhibit {
    /// The inhibit file.
    pub path: PathBuf,
    /// Its content: trimmed, at most 200 characters, control characters escaped; a note in
    /// parentheses when it is empty, unreadable or not a regular file.
    pub reason: String,
}

impl Inhibit {
    /// The line a run prints.
    pub fn line(&self) -> String {
        format!(
            "Updates inhibited: {} (remove {} to allow them)",
            self.reason,
            crate::output::escape(&self.path.display().to_string())
        )
    }
}

/// Whether updates are inhibited. Anything at the path inhibits (a directory, a dangling
/// link, an unreadable file too): the switch fails safe and this never errors.
pub fn inhibit(layout: &Layout) -> Option<Inhibit> {
    use std::io::Read;
    let path = layout.state_dir().join(INHIBIT_FILE);
    std::fs::symlink_metadata(&path).ok()?;
    let reason = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {
            let mut bytes = Vec::new();
            match std::fs::File::open(&path)
                .and_then(|f| f.take(INHIBIT_READ_MAX).read_to_end(&mut bytes))
            {
                Ok(_) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let text = text.trim();
                    if text.is_empty() {
                        "(no reason given)".to_string()
                    } else {
                        let capped: String = text.chars().take(INHIBIT_REASON_MAX).collect();
                        let more = if capped.len() < text.len() { "…" } else { "" };
                        format!("{}{more}", crate::output::escape(&capped))
                    }
                }
                Err(e) => format!("(the file is unreadable: {e})"),
            }
        }
        Ok(_) => "(not a regular file)".to_string(),
        Err(e) => format!("(the file is unreadable: {e})"),
    };
    Some(Inhibit { path, reason })
}

/// The current time for the update window, in seconds since the epoch: `$UPDATER_NOW` when
/// set (a test hook; malformed is an error naming it), else the clock.
pub fn now_unix() -> anyhow::Result<i64> {
    match &environment().now {
        Some(v) => crate::window::parse_instant(v).ok_or_else(|| {
            anyhow::anyhow!(
                "${NOW_VAR} {:?} is not a time YYYY-MM-DDTHH:MM:SSZ",
                crate::output::escape(v).as_ref()
            )
        }),
        None => Ok(crate::clock::unix_seconds(std::time::SystemTime::now())),
    }
}

/// The update window is closed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    /// The window's SPEC.
    pub spec: String,
    /// When it opens next, seconds since the epoch.
    pub next_open: i64,
}

impl ClosedWindow {
    /// The line a run prints.
    pub fn line(&self) -> String {
        format!(
            "Outside the update window {:?} (UTC): checking only; it opens next at {}",
            self.spec,
            crate::clock::iso8601_unix(self.next_open)
        )
    }
}

/// The update window: `--window`, else the installed index's `metadata.window` (a string; a
/// malformed one is an error naming the index file), else none (always open).
pub fn window(
    cfg: &Config,
    installed: Option<&GlobalIndex>,
) -> anyhow::Result<Option<crate::window::Schedule>> {
    if let Some(w) = &cfg.window {
        return Ok(Some(w.clone()));
    }
    let Some(index) = installed else {
        return Ok(None);
    };
    match index.doc.get("metadata").and_then(|m| m.get("window")) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(spec)) => crate::window::Schedule::parse(spec)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: metadata.window {e}", index.path.display())),
        Some(_) => anyhow::bail!(
            "{}: metadata.window is not a string (expected e.g. \"Sat 02:00-06:00\")",
            index.path.display()
        ),
    }
}

/// `Some` when the update window (see [`window`]) is closed at [`now_unix`].
pub fn closed_window(
    cfg: &Config,
    installed: Option<&GlobalIndex>,
) -> anyhow::Result<Option<ClosedWindow>> {
    let Some(schedule) = window(cfg, installed)? else {
        return Ok(None);
    };
    let now = now_unix()?;
    Ok((!schedule.is_open(now)).then(|| ClosedWindow {
        spec: schedule.spec().to_string(),
        next_open: schedule.next_open(now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut v = vec!["updater", "--modules-path", "/srv/updates"];
        v.extend_from_slice(args);
        crate::cli::Cli::try_parse_from(v)
            .expect("arguments parse")
            .into_config()
            .expect("arguments are valid")
    }

    fn index(text: &str) -> GlobalIndex {
        GlobalIndex::parse(Path::new("/srv/updates/index.json"), text).expect("index parses")
    }

    #[test]
    fn repository_settings_take_the_command_line_then_the_installed_index_then_the_default() {
        let layout = Layout::new(Path::new("/srv/updates"));
        let installed = index(
            r#"{"metadata": {"repository_url": "https://example.org/u.git", "branch": "dev",
                "require_signed": true}}"#,
        );
        // Nothing given, nothing installed: upstream, the remote's default branch, the own clone,
        // no signature check.
        let s = RepoSettings::resolve(&config(&["check"]), &layout, None);
        assert_eq!(s.url, DEFAULT_REPO_URL);
        assert_eq!(s.branch, None);
        assert_eq!(s.clone, layout.default_clone());
        assert!(s.default_clone);
        assert_eq!(s.allowed_signers, None);
        // The installed index's settings.
        let s = RepoSettings::resolve(&config(&["check"]), &layout, Some(&installed));
        assert_eq!(s.url, "https://example.org/u.git");
        assert_eq!(s.branch.as_deref(), Some("dev"));
        assert_eq!(
            s.allowed_signers,
            Some(layout.state_dir().join("allowed_signers"))
        );
        // The command line beats them.
        let cfg = config(&[
            "--repo-url",
            "https://example.com/other.git",
            "--branch",
            "main",
            "--local-repo",
            "/tmp/clone",
            "--allowed-signers",
            "/etc/updater/signers",
            "check",
        ]);
        let s = RepoSettings::resolve(&cfg, &layout, Some(&installed));
        assert_eq!(s.url, "https://example.com/other.git");
        assert_eq!(s.branch.as_deref(), Some("main"));
        assert_eq!(s.clone, PathBuf::from("/tmp/clone"));
        assert!(!s.default_clone);
        assert_eq!(
            s.allowed_signers,
            Some(PathBuf::from("/etc/updater/signers"))
        );
    }

    #[test]
    fn run_settings_take_the_command_line_then_the_installed_index() {
        let installed =
            index(r#"{"metadata": {"run": "enabled", "python": "/opt/py/bin/python3"}}"#);
        let s = RunSettings::resolve(&config(&["sync"]), Some(&installed));
        assert_eq!(s.run, RunMode::Enabled);
        let s = RunSettings::resolve(
            &config(&["--run", "updated", "--python", "/usr/bin/python3", "sync"]),
            Some(&installed),
        );
        assert_eq!(s.run, RunMode::Updated);
        assert_eq!(s.python, PathBuf::from("/usr/bin/python3"));
    }

    #[test]
    fn run_mode_comes_from_the_command_line_then_the_index() {
        let idx = |t: &str| GlobalIndex::parse(Path::new("/i.json"), t).unwrap();
        let enabled = idx(r#"{"metadata": {"run": "enabled"}}"#);
        let bad = idx(r#"{"metadata": {"run": "always\n"}}"#);
        assert_eq!(run_mode(None, None), RunMode::Updated);
        assert_eq!(run_mode(None, Some(&enabled)), RunMode::Enabled);
        assert_eq!(
            run_mode(Some(RunMode::Updated), Some(&enabled)),
            RunMode::Updated
        );
        assert_eq!(run_mode(None, Some(&bad)), RunMode::Updated);
    }

    #[test]
    fn the_window_comes_from_the_command_line_then_the_index_and_a_bad_index_window_names_the_file()
    {
        let installed = index(r#"{"metadata": {"window": "Sat 02:00-06:00"}}"#);
        let w = window(&config(&["sync"]), Some(&installed)).unwrap();
        assert_eq!(
            w.map(|w| w.spec().to_string()).as_deref(),
            Some("Sat 02:00-06:00")
        );
        let w = window(
            &config(&["--window", "Sun 01:00-02:00", "sync"]),
            Some(&installed),
        );
        assert_eq!(
            w.unwrap().map(|w| w.spec().to_string()).as_deref(),
            Some("Sun 01:00-02:00")
        );
        assert_eq!(window(&config(&["sync"]), None).unwrap(), None);
        for bad in [
            r#"{"metadata": {"window": "Sat"}}"#,
            r#"{"metadata": {"window": 5}}"#,
        ] {
            let e = window(&config(&["sync"]), Some(&index(bad))).unwrap_err();
            assert!(
                format!("{e:#}").contains("/srv/updates/index.json: metadata.window"),
                "{e:#}"
            );
        }
    }

    #[test]
    fn an_inhibit_file_inhibits_with_its_reason_escaped_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(inhibit(&layout), None);
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        let path = layout.state_dir().join(INHIBIT_FILE);
        std::fs::write(&path, "  disk swap\n\u{1b}[31m tonight \n").unwrap();
        let i = inhibit(&layout).unwrap();
        assert!(
            !i.reason.contains('\u{1b}') && !i.reason.contains('\n'),
            "{i:?}"
        );
        assert!(i.reason.starts_with("disk swap"), "{i:?}");
        assert!(i.line().contains("remove "), "{}", i.line());
        std::fs::write(&path, "x".repeat(100_000)).unwrap();
        assert!(inhibit(&layout).unwrap().reason.chars().count() <= INHIBIT_REASON_MAX + 1);
        std::fs::write(&path, "").unwrap();
        assert_eq!(inhibit(&layout).unwrap().reason, "(no reason given)");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(inhibit(&layout).unwrap().reason, "(not a regular file)");
    }
}
