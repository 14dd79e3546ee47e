//! What one run is ([`RunSpec`]) and how it ended ([`RunOutcome`]), with the fixed parts of every
//! program's environment ([`DEFAULT_PATH`], [`PASSED_ENV`]) and the check arguments.

use std::path::Path;
use std::time::Duration;

use super::entry::Program;

/// `PATH` given to programs when the caller has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Caller variables passed through to programs (when set); everything else is cleared.
/// `PYENV_*` keep a pyenv-shimmed `python3` working.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "TZ",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

/// One run of an entry point or health check.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    /// Module name, the prefix of its lines in the run's log.
    pub module: &'a str,
    /// Working directory.
    pub module_dir: &'a Path,
    pub program: &'a Program,
    /// Arguments: argv of an executable, and what `main(args)` gets: `None` is `main(None)` (a
    /// sync; an executable gets no arguments), `Some(list)` is `main(list)` (legacy mode passes
    /// its `args`; a check asks with `Some(&["--check"])`, see [`CHECK_ARGS`]).
    pub args: Option<&'a [String]>,
    /// Variables set on top of the clean environment (the `UPDATER_*` ones).
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    /// Per-module log file: created (with its parent directories) or appended to.
    pub log_file: &'a Path,
    /// Python interpreter for [`Program::PythonMain`], a path or a name looked up in `PATH`.
    pub python: &'a Path,
    /// Where to record the process group of the started program (written right after it
    /// starts, removed when the run returns), so that the run after a SIGKILLed updater can kill
    /// what is left of it (`recover::record_process_group`, `recover::kill_leftover_groups`).
    pub pgid_file: Option<&'a Path>,
    /// Whether a `main(args)` module may run in a process forked by a warm interpreter (the
    /// fork-server); `false` always starts a fresh one. The settings stage decides:
    /// `commands::settings::environment().fork_server` (`UPDATER_NO_FORKSERVER=1` turns it off).
    pub fork_server: bool,
}

/// The arguments of `main(["--check"])`, for a check that asks modules (SPEC §10).
pub fn check_args() -> Vec<String> {
    vec![CHECK_ARGS[0].to_string()]
}

/// `["--check"]`.
pub const CHECK_ARGS: &[&str] = &["--check"];

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub success: bool,
    /// Why it failed, one line, e.g. "exit status 3", "timed out after 2s (process group killed)",
    /// "main() returned False", "main() raised ValueError: boom",
    /// "main() returned {\"success\": false, ...}", "killed by signal 9",
    /// "could not start /x/update: Permission denied". `None` on success.
    pub reason: Option<String>,
    pub duration: Duration,
    /// What a Python `main` returned beyond `success` when it returned a dict (e.g. `updated`,
    /// `rollback_success`, `message`): JSON values kept, others as their `repr`; at most 64 KiB
    /// of JSON, else `{"truncated": true, "bytes": N}`. `None` for executables and other returns.
    pub details: Option<serde_json::Value>,
}
