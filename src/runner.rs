//! Runs one module's entry point or health check under the SPEC §5 contract.
//!
//! A program runs with the module directory as working directory, stdin from `/dev/null`, a clean
//! environment (see [`PASSED_ENV`] plus [`RunSpec::env`]), in a process group of its own, and under
//! a timeout that kills that whole group. Its stdout and stderr are read line by line: each line goes
//! to the run's log (`log::info!("[module] line")`) and, raw, to the module's log file, which also
//! gets a header line (what runs) and a footer line (the outcome).
//!
//! Output that outlives the run (reliability defect #15): a program's stdout and stderr are the
//! module's log file itself (opened for appending), not pipes. A follower thread reads the file as
//! it grows and echoes the program's lines into the run's log until the program ended. A daemon the
//! program started (`nohup mydaemon &`, a Python `subprocess.Popen` that outlives `main`) keeps
//! writing to that file after updater exited instead of dying of SIGPIPE on a pipe nobody reads.
//!
//! Two kinds of program exist ([`Program`]): an executable, which succeeds on exit status 0, and a
//! Python file defining `main(args)`, which runs in its own interpreter under an embedded shim
//! (`runner_shim.py`, which documents the import context of SPEC §10: `updates` is the install
//! root, the module is `updates.modules.<name>`). The shim reports its verdict (ok or fail, a
//! reason, and the `details` `main` returned in a dict) on a channel of its own: a verdict file in a
//! private directory of this run, which the shim opens close-on-exec before any module code runs and
//! which the runner reads once the process ended. Nothing the module prints can forge or hide it.
//! Python programs get `PATH` = [`DEFAULT_PATH`] and `PYTHONUNBUFFERED=1` (SPEC §10).
//!
//! A fresh interpreter costs 30 to 180 ms to start (more behind a pyenv shim), so `main(args)`
//! modules normally run in a process forked from a warm one: a fork-server per interpreter, started
//! by the first such run and kept for the life of this process (section "Fork-server" below, and
//! `runner_forkserver.py`). Each module still gets a process (group) of its own, with the same
//! working directory, environment, stdin, output handling, timeout and verdict as in a fresh
//! interpreter; the shim code that imports the module and calls `main` is the same. Whenever the
//! fork-server cannot take a run before any of the module ran (it cannot start, died, the run's
//! variables or a version-manager file could make a fresh interpreter differ), the run uses a fresh
//! interpreter; `UPDATER_NO_FORKSERVER=1` makes every run do so.
//!
//! Concurrent runs from several threads are independent (std opens every file and pipe
//! close-on-exec, so one module's child never holds another's log file or verdict); the only
//! process-global state is the set of fork-servers, which serve concurrent runs.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

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

/// How often the follower looks for new output in the log file while the program runs.
const FOLLOW_PAUSE: Duration = Duration::from_millis(20);

/// Longest verdict file read (the shim caps `details` at 64 KiB of JSON).
const MAX_VERDICT: u64 = 256 * 1024;

/// Longest line kept whole; longer ones are split.
const MAX_LINE: u64 = 64 * 1024;

/// Longest reason kept from the shim's verdict.
const MAX_REASON: usize = 400;

/// Most retries of a start that fails with "Text file busy": the file was just written, and a child
/// forked meanwhile by another thread still holds a write descriptor to it until that child execs.
const START_RETRIES: u32 = 20;

/// The Python side of [`Program::PythonMain`].
const PYTHON_SHIM: &str = include_str!("runner_shim.py");

/// How to start a module's entry point or health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// An executable file inside the module (absolute path), run directly.
    Executable(PathBuf),
    /// A Python file (absolute path; normally `index.py`) defining `main(args)`, run in its own
    /// Python process.
    PythonMain(PathBuf),
}

impl Program {
    /// The file that runs.
    pub fn path(&self) -> &Path {
        match self {
            Program::Executable(path) | Program::PythonMain(path) => path,
        }
    }
}

/// Finds a module's entry point, SPEC §5 order: `declared` (`metadata.entry`, relative to the
/// module), else `index.py` (run as [`Program::PythonMain`]), else an executable `update`, else
/// `Ok(None)`.
///
/// A declared entry ending in `.py` runs as [`Program::PythonMain`], any other as
/// [`Program::Executable`]. Also resolves a declared health check the same way.
///
/// Errors, each naming the path: the module directory is missing; the declared entry is absolute,
/// leaves the module, does not exist or is not a regular file; an entry to run as an executable has
/// no execute bit; `index.py` is not a regular file.
pub fn resolve_entry(module_dir: &Path, declared: Option<&str>) -> Result<Option<Program>> {
    let module_dir = std::path::absolute(module_dir)
        .with_context(|| format!("cannot resolve module directory {}", module_dir.display()))?;
    match fs::metadata(&module_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "module directory {} is not a directory",
            module_dir.display()
        ),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read module directory {}", module_dir.display()))
        }
    }

    if let Some(declared) = declared {
        let relative = Path::new(declared);
        let inside = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if declared.is_empty() || !inside {
            bail!(
                "declared entry {declared:?} of {} is not a relative path inside the module",
                module_dir.display()
            );
        }
        let path = module_dir.join(relative);
        let Some(meta) = file_metadata(&path, "declared entry")? else {
            bail!("declared entry {} does not exist", path.display());
        };
        if !meta.is_file() {
            bail!("declared entry {} is not a regular file", path.display());
        }
        if declared.ends_with(".py") {
            return Ok(Some(Program::PythonMain(path)));
        }
        ensure_executable(&path, &meta)?;
        return Ok(Some(Program::Executable(path)));
    }

    let index = module_dir.join("index.py");
    if let Some(meta) = file_metadata(&index, "entry")? {
        if !meta.is_file() {
            bail!("entry {} is not a regular file", index.display());
        }
        return Ok(Some(Program::PythonMain(index)));
    }

    let update = module_dir.join("update");
    match file_metadata(&update, "entry")? {
        None => Ok(None),
        Some(meta) => {
            if !meta.is_file() {
                bail!("entry {} is not a regular file", update.display());
            }
            ensure_executable(&update, &meta)?;
            Ok(Some(Program::Executable(update)))
        }
    }
}

/// Metadata of `path` (following symlinks), `None` when it does not exist.
fn file_metadata(path: &Path, what: &str) -> Result<Option<fs::Metadata>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot inspect {what} {}", path.display())),
    }
}

fn ensure_executable(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        bail!(
            "entry {} is not executable (mode {:04o})",
            path.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

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

/// Runs `spec.program` to completion or timeout (SPEC §5).
///
/// A program that cannot be started, fails or times out is an `Ok` outcome with `success: false`.
/// `Err` means the runner itself could not do its job (log file, threads, waiting), after having
/// killed and reaped whatever it started.
pub fn run(spec: &RunSpec) -> Result<RunOutcome> {
    let outcome = run_in(&SERVERS, spec);
    if let Some(p) = spec.pgid_file {
        crate::recover::forget_process_group(p);
    }
    outcome
}

/// [`run`], with `registry` as the source of fork-servers.
fn run_in(registry: &Registry, spec: &RunSpec) -> Result<RunOutcome> {
    let output = Arc::new(Output::open(spec.module, spec.log_file)?);
    output.note(&format!("=== {}: {}", spec.module, describe(spec)));
    let started = Instant::now();
    let verdict = match spec.program {
        Program::Executable(path) => run_executable(spec, path, &output).map(|v| (v, None)),
        Program::PythonMain(file) => run_python_main(registry, spec, file, &output),
    };
    let duration = started.elapsed();
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(err) => {
            output.note(&format!(
                "=== {}: runner error after {}: {err:#}",
                spec.module,
                seconds(duration)
            ));
            return Err(err);
        }
    };
    let (verdict, details) = verdict;
    let outcome = match verdict {
        Verdict::Success => RunOutcome {
            success: true,
            reason: None,
            duration,
            details,
        },
        Verdict::Failure(reason) => RunOutcome {
            success: false,
            reason: Some(reason),
            duration,
            details,
        },
    };
    output.note(&format!(
        "=== {}: {} after {}",
        spec.module,
        match &outcome.reason {
            None => "success".to_string(),
            Some(reason) => format!("failure: {reason}"),
        },
        seconds(duration)
    ));
    Ok(outcome)
}

/// The header line's account of what runs.
fn describe(spec: &RunSpec) -> String {
    let mut text = String::new();
    match spec.program {
        Program::Executable(path) => {
            let _ = write!(text, "running {}", path.display());
            for arg in spec.args.unwrap_or_default() {
                let _ = write!(text, " {arg:?}");
            }
        }
        Program::PythonMain(file) => {
            let args = match spec.args {
                None => "None".to_string(),
                Some(args) => format!("{args:?}"),
            };
            let _ = write!(
                text,
                "running main({args}) of {} with {}",
                file.display(),
                spec.python.display()
            );
        }
    }
    text
}

/// What a program reported, before timing is added.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure(String),
}

fn run_executable(spec: &RunSpec, path: &Path, output: &Arc<Output>) -> Result<Verdict> {
    let mut command = Command::new(path);
    command.args(spec.args.unwrap_or_default());
    Ok(match run_process(spec, command, &base_env(), output)? {
        Ended::NotStarted(reason) => Verdict::Failure(reason),
        Ended::TimedOut => Verdict::Failure(timeout_reason(spec.timeout)),
        Ended::Exited(status) if status.success() => Verdict::Success,
        Ended::Exited(status) => Verdict::Failure(status_reason(status)),
    })
}

/// Runs `main(args)` of the Python file `file`: in a process forked by the fork-server of
/// `spec.python` when it can, else in a fresh interpreter. Both end in the same [`Verdict`], with
/// the `details` `main` returned.
fn run_python_main(
    registry: &Registry,
    spec: &RunSpec,
    file: &Path,
    output: &Arc<Output>,
) -> Result<(Verdict, Option<serde_json::Value>)> {
    // The shim resolves paths itself, but its working directory is the module directory, so a
    // relative one would be resolved twice.
    let module_dir = std::path::absolute(spec.module_dir).with_context(|| {
        format!(
            "cannot resolve module directory {}",
            spec.module_dir.display()
        )
    })?;
    let file = module_dir.join(file);
    let python = locate(spec.python);
    let verdict_dir = tempfile::Builder::new()
        .prefix("updater-verdict-")
        .tempdir()
        .context("cannot create a directory for the verdict of a Python run")?;
    let verdict_file = verdict_dir.path().join("verdict");
    File::create(&verdict_file)
        .with_context(|| format!("cannot create verdict file {}", verdict_file.display()))?;
    let request = ShimRequest {
        module_dir: &module_dir,
        file: &file,
        verdict: &verdict_file,
    };
    if fork_server_wanted() {
        match server_key(spec, &python, &module_dir) {
            Err(why) => log::debug!(
                "[{}] python fork-server not used: {why}; running a fresh interpreter",
                spec.module
            ),
            Ok(key) => match registry.server(&key) {
                None => log::debug!(
                    "[{}] no python fork-server for {}; running a fresh interpreter",
                    spec.module,
                    python.display()
                ),
                Some(server) => match run_forked(&server, spec, &request, output)? {
                    Forked::Ran(verdict) => {
                        server.troubles.store(0, Ordering::Relaxed);
                        note_path(PythonPath::ForkServer);
                        return Ok(verdict);
                    }
                    Forked::Fallback {
                        why,
                        server_trouble,
                    } => {
                        log::debug!(
                            "[{}] python fork-server {} not used: {why}; running a fresh \
                             interpreter",
                            spec.module,
                            server.pid
                        );
                        if server_trouble {
                            registry.trouble(&key, &server);
                        }
                    }
                },
            },
        }
    }
    note_path(PythonPath::Fresh);
    run_python_fresh(spec, &python, &request, output)
}

/// What the shim is told (see `runner_shim.py`), besides the variables.
struct ShimRequest<'a> {
    module_dir: &'a Path,
    file: &'a Path,
    verdict: &'a Path,
}

impl ShimRequest<'_> {
    /// The request as JSON; `None` when a path is not UTF-8 (JSON cannot carry it).
    fn to_json(&self, spec: &RunSpec) -> Option<serde_json::Map<String, serde_json::Value>> {
        use serde_json::Value;
        let text = |path: &Path| path.to_str().map(|s| Value::String(s.to_string()));
        let (root, name) = match install_root(self.module_dir) {
            Some((root, name)) => (text(&root)?, Value::String(name)),
            None => (Value::Null, Value::Null),
        };
        let args = match spec.args {
            None => Value::Null,
            Some(args) => Value::Array(args.iter().cloned().map(Value::String).collect()),
        };
        let mut map = serde_json::Map::new();
        map.insert("dir".into(), text(self.module_dir)?);
        map.insert("file".into(), text(self.file)?);
        map.insert("args".into(), args);
        map.insert("root".into(), root);
        map.insert("name".into(), name);
        map.insert("verdict".into(), text(self.verdict)?);
        Some(map)
    }

    /// Reads the verdict the shim wrote: `None` when it wrote none (it did not get that far).
    fn read_verdict(&self) -> Option<ShimVerdict> {
        let mut text = Vec::new();
        let read =
            File::open(self.verdict).and_then(|file| file.take(MAX_VERDICT).read_to_end(&mut text));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(ShimVerdict::parse(&text)),
        }
    }
}

/// The shim's verdict.
#[derive(Debug, Clone, PartialEq)]
struct ShimVerdict {
    verdict: Verdict,
    details: Option<serde_json::Value>,
}

impl ShimVerdict {
    /// Reads `{"ok": bool, "reason": str|null, "details": ...}`.
    fn parse(text: &[u8]) -> ShimVerdict {
        let value: serde_json::Value = match serde_json::from_slice(text) {
            Ok(value) => value,
            Err(err) => {
                return ShimVerdict {
                    verdict: Verdict::Failure(format!("unreadable verdict from python: {err}")),
                    details: None,
                }
            }
        };
        let details = value.get("details").filter(|d| !d.is_null()).cloned();
        let verdict = match value.get("ok").and_then(serde_json::Value::as_bool) {
            Some(true) => Verdict::Success,
            Some(false) => {
                let reason = value
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .map(|reason| one_line(reason, MAX_REASON))
                    .filter(|reason| !reason.is_empty())
                    .unwrap_or_else(|| "main() failed".to_string());
                Verdict::Failure(reason)
            }
            None => Verdict::Failure("unreadable verdict from python: no \"ok\"".to_string()),
        };
        ShimVerdict { verdict, details }
    }
}

/// The install root and module name of a module directory `<root>/modules/<name>` (SPEC §10), or
/// `None` for a module elsewhere (or with a name that is not UTF-8).
pub fn install_root(module_dir: &Path) -> Option<(PathBuf, String)> {
    let name = module_dir.file_name()?.to_str()?;
    let modules = module_dir.parent()?;
    if modules.file_name()? != "modules" {
        return None;
    }
    Some((modules.parent()?.to_path_buf(), name.to_string()))
}

/// `python` as it will be started: a bare name is looked up in the caller's `PATH` (the program
/// gets [`DEFAULT_PATH`], which may not hold the caller's interpreter); anything else, or a name
/// found nowhere, as given.
fn locate(python: &Path) -> PathBuf {
    if python.components().count() != 1 || python.is_absolute() {
        return python.to_path_buf();
    }
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(python);
        if fs::metadata(&candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        {
            return std::path::absolute(&candidate).unwrap_or(candidate);
        }
    }
    python.to_path_buf()
}

/// Runs `main(args)` in a fresh interpreter under the embedded shim.
fn run_python_fresh(
    spec: &RunSpec,
    python: &Path,
    request: &ShimRequest,
    output: &Arc<Output>,
) -> Result<(Verdict, Option<serde_json::Value>)> {
    let Some(json) = request.to_json(spec) else {
        return Ok((
            Verdict::Failure(format!(
                "cannot run {}: a path is not UTF-8",
                request.file.display()
            )),
            None,
        ));
    };
    let mut command = Command::new(python);
    // -u: unbuffered, so output is logged as it comes and survives a kill; -B: write no
    // __pycache__ into the installed module.
    command
        .arg("-u")
        .arg("-B")
        .arg("-c")
        .arg(PYTHON_SHIM)
        .arg(serde_json::Value::Object(json).to_string());
    let ended = run_process(spec, command, &python_env(), output)?;
    Ok(match ended {
        Ended::NotStarted(reason) => (Verdict::Failure(reason), None),
        Ended::TimedOut => (Verdict::Failure(timeout_reason(spec.timeout)), None),
        Ended::Exited(status) => python_verdict(status, request.read_verdict()),
    })
}

/// The variables every Python program gets: [`base_env`] with `PATH` = [`DEFAULT_PATH`] and
/// `PYTHONUNBUFFERED=1` (SPEC §10).
fn python_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<_> = base_env()
        .into_iter()
        .filter(|(name, _)| name != "PATH" && name != "PYTHONUNBUFFERED")
        .collect();
    env.push((OsString::from("PATH"), OsString::from(DEFAULT_PATH)));
    env.push((OsString::from("PYTHONUNBUFFERED"), OsString::from("1")));
    env
}

fn python_verdict(
    status: ExitStatus,
    verdict: Option<ShimVerdict>,
) -> (Verdict, Option<serde_json::Value>) {
    match verdict {
        Some(ShimVerdict {
            verdict: Verdict::Success,
            details,
        }) if status.success() => (Verdict::Success, details),
        Some(ShimVerdict {
            verdict: Verdict::Success,
            details,
        }) => (
            Verdict::Failure(format!(
                "main() succeeded but python then ended: {}",
                status_reason(status)
            )),
            details,
        ),
        Some(ShimVerdict { verdict, details }) => (verdict, details),
        None if status.success() => (
            Verdict::Failure("python exited before main() returned (exit status 0)".to_string()),
            None,
        ),
        None => (
            Verdict::Failure(format!("python ended: {}", status_reason(status))),
            None,
        ),
    }
}

/// How a child process ended.
enum Ended {
    /// It could not be started; the reason says why.
    NotStarted(String),
    /// The timeout expired; its process group was killed and it was reaped.
    TimedOut,
    Exited(ExitStatus),
}

/// Starts `command` under the SPEC §5 rules with the environment `env` plus `spec.env`, its stdout
/// and stderr on the module's log file (followed into the run's log), and waits for it (or kills its
/// process group at the timeout).
fn run_process(
    spec: &RunSpec,
    mut command: Command,
    env: &[(OsString, OsString)],
    output: &Arc<Output>,
) -> Result<Ended> {
    let program = command.get_program().to_owned();
    if !spec.module_dir.is_dir() {
        return Ok(Ended::NotStarted(format!(
            "could not start {}: module directory {} is not a directory",
            Path::new(&program).display(),
            spec.module_dir.display()
        )));
    }
    let (stdout, stderr) = output.program_output()?;
    command
        .current_dir(spec.module_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    clean_env(&mut command, env, spec.env);

    let follower = Follower::start(output)?;
    let child = match spawn(&mut command) {
        Ok(child) => child,
        Err(err) => {
            return Ok(Ended::NotStarted(format!(
                "could not start {}: {}",
                Path::new(&program).display(),
                io_message(&err)
            )))
        }
    };
    let started = Instant::now();
    if let Some(p) = spec.pgid_file {
        crate::recover::record_process_group(p, child.id() as i32);
    }
    // Only the child holds the log file as its output now.
    drop(command);
    // From here on the guard kills and reaps the child on every early return.
    let mut child = Reaper::new(child);

    let deadline = started.checked_add(spec.timeout);
    let mut pause = Duration::from_millis(1);
    let ended = loop {
        let waited = child
            .child
            .try_wait()
            .with_context(|| format!("cannot wait for {}", Path::new(&program).display()))?;
        if let Some(status) = waited {
            child.reaped = true;
            break Ended::Exited(status);
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            // Not reaped yet, so the group id cannot have been reused.
            child.kill_group();
            child.child.wait().with_context(|| {
                format!("cannot reap timed-out {}", Path::new(&program).display())
            })?;
            child.reaped = true;
            break Ended::TimedOut;
        }
        let left = deadline.map_or(pause, |deadline| deadline - now);
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // What the program wrote is in the file: echo the rest. Later writes (of a background
    // process it left) stay in the file only.
    follower.finish();
    Ok(ended)
}

/// Starts `command`, retrying for a while on "Text file busy" (see [`START_RETRIES`]).
fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut pause = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(err)
                if attempt < START_RETRIES
                    && rustix::io::Errno::from_io_error(&err)
                        == Some(rustix::io::Errno::TXTBSY) =>
            {
                attempt += 1;
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Clears the environment, then sets `base` (see [`base_env`], [`python_env`]) and `extra`.
fn clean_env(command: &mut Command, base: &[(OsString, OsString)], extra: &[(String, String)]) {
    command.env_clear();
    command.envs(base.iter().map(|(name, value)| (name, value)));
    for (name, value) in extra {
        command.env(name, value);
    }
}

/// The variables every program gets: the non-empty [`PASSED_ENV`] ones of the caller, and `PATH`
/// ([`DEFAULT_PATH`] when the caller has none).
fn base_env() -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            if !value.is_empty() {
                env.push((OsString::from(name), value));
            }
        }
    }
    if std::env::var_os("PATH").is_none_or(|path| path.is_empty()) {
        env.push((OsString::from("PATH"), OsString::from(DEFAULT_PATH)));
    }
    env
}

/// A started child that is killed (whole process group) and reaped when dropped unreaped.
struct Reaper {
    child: Child,
    reaped: bool,
}

impl Reaper {
    fn new(child: Child) -> Self {
        Reaper {
            child,
            reaped: false,
        }
    }

    /// SIGKILLs the child's process group (its id is the child's pid). Only call while the child
    /// is unreaped, so the id still names this group.
    fn kill_group(&mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        // Pid 1 would mean "every process we may signal": never send that.
        match pid.filter(|pid| !pid.is_init()) {
            Some(pid) => {
                if let Err(err) =
                    rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
                {
                    if err != rustix::io::Errno::SRCH {
                        log::warn!("cannot kill process group {}: {err}", pid.as_raw_nonzero());
                        let _ = self.child.kill();
                    }
                }
            }
            None => {
                let _ = self.child.kill();
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// Where a run's output goes: the module's log file (the program writes there itself; the runner
/// adds its header, footer and notices) and, echoed by a [`Follower`], the run's log.
struct Output {
    module: String,
    log_path: PathBuf,
    state: Mutex<OutputState>,
}

struct OutputState {
    /// `None` after a write error (reported once).
    file: Option<File>,
}

impl Output {
    fn open(module: &str, log_path: &Path) -> Result<Self> {
        if let Some(parent) = log_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create log directory {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("cannot open log file {}", log_path.display()))?;
        Ok(Output {
            module: module.to_string(),
            log_path: log_path.to_path_buf(),
            state: Mutex::new(OutputState { file: Some(file) }),
        })
    }

    fn state(&self) -> MutexGuard<'_, OutputState> {
        // A panic while holding the lock leaves nothing inconsistent: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the log file is empty or ends with a newline (also when it cannot be read).
    fn ends_with_newline(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(file) = File::open(&self.log_path) else {
            return true;
        };
        let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let mut last = [b'\n'];
        len == 0 || file.read_at(&mut last, len - 1).is_err() || last[0] == b'\n'
    }

    /// The program's stdout and stderr: the log file, opened for appending (one open file
    /// description for both, so their lines interleave in the order written).
    fn program_output(&self) -> Result<(Stdio, Stdio)> {
        let file = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open log file {}", self.log_path.display()))?;
        let copy = file
            .try_clone()
            .with_context(|| format!("cannot duplicate log file {}", self.log_path.display()))?;
        Ok((Stdio::from(file), Stdio::from(copy)))
    }

    /// One line of the program's output (read back from the log file): to the run's log, split
    /// into pieces of at most [`MAX_LINE`] bytes.
    fn echo(&self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            log::info!("[{}] ", self.module);
        }
        // MAX_LINE is a small constant: the conversion cannot truncate.
        for piece in raw.chunks(MAX_LINE as usize) {
            log::info!("[{}] {}", self.module, String::from_utf8_lossy(piece));
        }
    }

    /// A line of the runner's own (header, footer, notices): to the log file only.
    fn note(&self, text: &str) {
        let mut state = self.state();
        let Some(file) = state.file.as_mut() else {
            return;
        };
        let mut line = String::with_capacity(text.len() + 2);
        // The program's last line may lack its newline: ours start on a line of their own.
        if !self.ends_with_newline() {
            line.push('\n');
        }
        line.push_str(text);
        line.push('\n');
        if let Err(err) = file.write_all(line.as_bytes()) {
            log::warn!(
                "[{}] cannot write log file {}: {err}; no more notes go there",
                self.module,
                self.log_path.display()
            );
            state.file = None;
        }
    }
}

/// Echoes what a program appends to the module's log file into the run's log, line by line (lines
/// longer than [`MAX_LINE`] are split), from where the file ended when it started until
/// [`Follower::finish`].
struct Follower {
    stop: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Follower {
    fn start(output: &Arc<Output>) -> Result<Follower> {
        let mut file = File::open(&output.log_path).with_context(|| {
            format!(
                "cannot open log file {} to follow it",
                output.log_path.display()
            )
        })?;
        let mut offset = file
            .seek(io::SeekFrom::End(0))
            .with_context(|| format!("cannot read log file {}", output.log_path.display()))?;
        let output = Arc::clone(output);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("runner-follow".to_string())
            .spawn(move || {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(FOLLOW_PAUSE),
                        Err(RecvTimeoutError::Timeout)
                    );
                    loop {
                        // Truncated by someone else: start over from its beginning.
                        if file.metadata().is_ok_and(|meta| meta.len() < offset) {
                            offset = 0;
                            pending.clear();
                        }
                        let read = file
                            .seek(io::SeekFrom::Start(offset))
                            .and_then(|_| file.read(&mut buf));
                        let read = match read {
                            Ok(0) => break,
                            Ok(read) => read,
                            Err(err) => {
                                log::warn!(
                                    "[{}] cannot follow log file {}: {err}",
                                    output.module,
                                    output.log_path.display()
                                );
                                return;
                            }
                        };
                        offset += read as u64;
                        pending.extend_from_slice(&buf[..read]);
                        let mut start = 0;
                        while let Some(at) = pending[start..].iter().position(|&b| b == b'\n') {
                            output.echo(&pending[start..start + at + 1]);
                            start += at + 1;
                        }
                        pending.drain(..start);
                        while pending.len() as u64 >= MAX_LINE {
                            let rest = pending.split_off(MAX_LINE as usize);
                            output.echo(&pending);
                            pending = rest;
                        }
                    }
                    if last {
                        if !pending.is_empty() {
                            output.echo(&pending);
                        }
                        return;
                    }
                }
            })
            .context("cannot start the log follower thread")?;
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }

    /// Echoes what is in the file now and stops.
    fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn status_reason(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        if status.core_dumped() {
            format!("killed by signal {signal} (core dumped)")
        } else {
            format!("killed by signal {signal}")
        }
    } else {
        status.to_string()
    }
}

fn timeout_reason(timeout: Duration) -> String {
    format!(
        "timed out after {} (process group killed)",
        short_duration(timeout)
    )
}

/// `2s`, `1.5s`, `250ms`.
fn short_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        let text = format!("{:.3}", duration.as_secs_f64());
        format!("{}s", text.trim_end_matches('0'))
    }
}

/// `0.12s`.
fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

/// An I/O error's message without the ` (os error N)` suffix.
fn io_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// `text` on one line, at most `limit` characters.
fn one_line(text: &str, limit: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= limit {
        return joined;
    }
    let mut cut: String = joined.chars().take(limit.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

// ---- Fork-server -----------------------------------------------------------------------------
//
// One warm interpreter per (interpreter, parent directory of the module, base environment),
// started by the first `main(args)` run that can use it and kept for the life of the process. It
// runs `runner_forkserver.py`, which documents the Python side and the protocol: one unix-socket
// connection per run, a JSON request line, then "ready" / "go" / "pid N" / "status S".
//
// The server keeps module processes forked ahead of their runs (its children, each in a process
// group of its own). One of them accepts the run's connection, sets itself up as a fresh
// interpreter would be, and answers "ready"; on "go" it runs the module, and when it ends the
// server reports its wait status. The module process opens the module's log file (for appending)
// as its stdout and stderr, and the run's verdict file, exactly as a fresh interpreter would, so its
// output and verdict reach the runner the same way. Until "go"
// nothing of the module has run: any trouble up to there means a fresh interpreter instead. After
// it, the run is the fork-server's: the runner enforces the timeout by killing the module
// process's group, which the server keeps unreaped (waitid WNOWAIT) until the runner closes the
// connection, so the group id cannot have been reused. If the server dies meanwhile, the run ends
// when the module process is gone (within the timeout), and the shim's verdict file decides.
//
// The server exits when this process goes away: its stdout is a pipe whose read end (close-on-exec,
// so no program started here inherits it) only this process holds, and it polls for that reader to
// disappear. Module processes close every descriptor they do not need (the listening socket, the
// server's connections) before the module runs.

/// The Python side of the fork-server.
const FORK_SERVER: &str = include_str!("runner_forkserver.py");

/// Set to anything but "" or "0", `main(args)` modules always run in a fresh interpreter.
const NO_FORK_SERVER_VAR: &str = "UPDATER_NO_FORKSERVER";

/// How long a fork-server may take to start (a pyenv shim is slow; a busy machine slower).
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the fork-server may take to answer before the run gives it up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a killed module process's status.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Most fork-servers started for one key (a dead one is replaced on the next run).
const MAX_SERVER_STARTS: u32 = 3;

/// Runs in a row that could not use a live fork-server before it is replaced.
const MAX_TROUBLES: u32 = 3;

/// Most keys with a fork-server; runs beyond use fresh interpreters.
const MAX_SERVERS: usize = if cfg!(test) { 256 } else { 8 };

/// Longest socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

/// Longest line the fork-server may send.
const MAX_SERVER_LINE: usize = 4096;

/// Files that make a version manager (pyenv, asdf, mise) pick an interpreter for their directory: a
/// fresh interpreter started in such a module directory may not be the fork-server's.
const VERSION_FILES: &[&str] = &[
    ".python-version",
    ".tool-versions",
    ".mise.toml",
    "mise.toml",
];

/// Which way a `main(args)` module ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PythonPath {
    Fresh,
    ForkServer,
}

#[cfg(test)]
thread_local! {
    /// Tests: the way `main(args)` runs on this thread must take (`None`: as in production).
    static FORCED_PATH: std::cell::Cell<Option<PythonPath>> = const { std::cell::Cell::new(None) };
    /// Tests: the way the last `main(args)` run on this thread took.
    static USED_PATH: std::cell::Cell<Option<PythonPath>> = const { std::cell::Cell::new(None) };
}

/// Whether `main(args)` modules should try the fork-server ([`NO_FORK_SERVER_VAR`]).
fn fork_server_wanted() -> bool {
    #[cfg(test)]
    if let Some(path) = FORCED_PATH.with(|forced| forced.get()) {
        return path == PythonPath::ForkServer;
    }
    fork_server_enabled(std::env::var_os(NO_FORK_SERVER_VAR).as_deref())
}

/// Whether [`NO_FORK_SERVER_VAR`], with this value, leaves the fork-server on.
fn fork_server_enabled(no_fork_server: Option<&std::ffi::OsStr>) -> bool {
    no_fork_server.is_none_or(|value| value.is_empty() || value == "0")
}

fn note_path(path: PythonPath) {
    #[cfg(test)]
    USED_PATH.with(|used| used.set(Some(path)));
    #[cfg(not(test))]
    let _ = path;
}

/// What a fork-server is for: runs with equal keys share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    python: PathBuf,
    /// The server's working directory: the parent of the module directory, so that a launcher that
    /// looks at its directory and its parents (pyenv's `.python-version`) sees what it would see
    /// for a fresh interpreter.
    cwd: PathBuf,
    /// [`python_env`] when the server started.
    env: Vec<(OsString, OsString)>,
}

/// The fork-server key for `spec`, or why this run should use a fresh interpreter.
fn server_key(
    spec: &RunSpec,
    python: &Path,
    module_dir: &Path,
) -> std::result::Result<ServerKey, String> {
    // The server's environment is the base one; a variable of the run's that could change how
    // the interpreter or its launcher starts would make the forked process differ.
    if let Some((name, _)) = spec
        .env
        .iter()
        .find(|(name, _)| !name.starts_with("UPDATER_"))
    {
        return Err(format!("the variable {name} may change how python starts"));
    }
    // A relative path with a directory part is resolved against the working directory, which
    // differs.
    if python.is_relative() && python.components().count() > 1 {
        return Err(format!(
            "the interpreter {} is a relative path",
            python.display()
        ));
    }
    if !module_dir.is_dir() {
        return Err(format!("{} is not a directory", module_dir.display()));
    }
    if let Some(name) = VERSION_FILES
        .iter()
        .find(|name| module_dir.join(name).exists())
    {
        return Err(format!("the module has a {name} file"));
    }
    let Some(cwd) = module_dir.parent() else {
        return Err(format!("{} has no parent", module_dir.display()));
    };
    Ok(ServerKey {
        python: python.to_path_buf(),
        cwd: cwd.to_path_buf(),
        env: python_env(),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent: a panic elsewhere changes nothing.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process-wide fork-servers.
static SERVERS: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Fork-servers by key, each started lazily by the first run that wants it.
struct Registry {
    slots: Mutex<HashMap<ServerKey, Arc<Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    server: Option<Arc<ForkServer>>,
    starts: u32,
    /// A start failed: this key uses fresh interpreters from now on.
    broken: bool,
}

impl Registry {
    fn new() -> Self {
        Registry {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The live server for `key`, started if needed; `None` when there is none to be had.
    fn server(&self, key: &ServerKey) -> Option<Arc<ForkServer>> {
        let slot = {
            let mut slots = lock(&self.slots);
            if !slots.contains_key(key) && slots.len() >= MAX_SERVERS {
                return None;
            }
            Arc::clone(slots.entry(key.clone()).or_default())
        };
        // Held while the server starts: the other runs for this key wait for it, not start their own.
        let mut slot = lock(&slot);
        if let Some(server) = &slot.server {
            return Some(Arc::clone(server));
        }
        if slot.broken || slot.starts >= MAX_SERVER_STARTS {
            return None;
        }
        slot.starts += 1;
        match ForkServer::start(key) {
            Ok(server) => {
                log::debug!(
                    "python fork-server {} started for {} in {}",
                    server.pid,
                    key.python.display(),
                    key.cwd.display()
                );
                let server = Arc::new(server);
                slot.server = Some(Arc::clone(&server));
                Some(server)
            }
            Err(err) => {
                log::debug!(
                    "cannot start a python fork-server with {}: {err:#}; main(args) modules \
                     run in fresh interpreters",
                    key.python.display()
                );
                slot.broken = true;
                None
            }
        }
    }

    /// A run could not use `server`: when it is dead, or failed [`MAX_TROUBLES`] runs in a row,
    /// forget it, so that the next run starts another. Runs still using it keep it until they end.
    fn trouble(&self, key: &ServerKey, server: &Arc<ForkServer>) {
        let troubles = server.troubles.fetch_add(1, Ordering::Relaxed) + 1;
        if !server.exited() && troubles < MAX_TROUBLES {
            return;
        }
        let Some(slot) = lock(&self.slots).get(key).map(Arc::clone) else {
            return;
        };
        let mut slot = lock(&slot);
        if slot
            .server
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, server))
        {
            log::debug!("python fork-server {} retired", server.pid);
            slot.server = None;
        }
    }

    #[cfg(test)]
    fn server_pids(&self) -> Vec<u32> {
        let slots: Vec<_> = lock(&self.slots).values().map(Arc::clone).collect();
        slots
            .iter()
            .filter_map(|slot| lock(slot).server.as_ref().map(|server| server.pid))
            .collect()
    }
}

/// A running fork-server.
struct ForkServer {
    process: Mutex<Child>,
    pid: u32,
    /// The read end of the server's stdout, not read after "ready": closing it tells the server
    /// to exit.
    stdout: Mutex<Option<BufReader<ChildStdout>>>,
    /// Private (0700): the socket; removed when dropped.
    _dir: TempDir,
    socket: PathBuf,
    /// Runs in a row that could not use it.
    troubles: AtomicU32,
}

impl ForkServer {
    fn start(key: &ServerKey) -> Result<ForkServer> {
        let dir = tempfile::Builder::new()
            .prefix("updater-py-")
            .tempdir()
            .context("cannot create its directory")?;
        let socket = dir.path().join("s");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!("socket path {} is too long", socket.display());
        }
        let mut base = serde_json::Map::new();
        for (name, value) in &key.env {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                bail!("variable {} is not UTF-8", name.to_string_lossy());
            };
            base.insert(
                name.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
        let mut command = Command::new(&key.python);
        command
            .arg("-u")
            .arg("-B")
            .arg("-c")
            .arg(FORK_SERVER)
            .arg(PYTHON_SHIM)
            .arg(&socket)
            .arg(serde_json::Value::Object(base).to_string())
            .current_dir(&key.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not in this process's group: a terminal's Ctrl-C is for updater, which lets running
            // modules finish.
            .process_group(0)
            .env_clear()
            .envs(key.env.iter().map(|(name, value)| (name, value)));
        let mut child = spawn(&mut command)
            .map_err(|err| anyhow::anyhow!("cannot start it: {}", io_message(&err)))?;
        let pid = child.id();
        match Self::handshake(&mut child, pid) {
            Ok(stdout) => Ok(ForkServer {
                process: Mutex::new(child),
                pid,
                stdout: Mutex::new(Some(stdout)),
                _dir: dir,
                socket,
                troubles: AtomicU32::new(0),
            }),
            Err(err) => {
                // Its module processes go with it (they wait on its stdout or on it).
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// Waits for the server's "ready"; returns its stdout, to keep open.
    fn handshake(child: &mut Child, pid: u32) -> Result<BufReader<ChildStdout>> {
        let stdout = child.stdout.take().context("its stdout is not piped")?;
        let stderr = child.stderr.take().context("its stderr is not piped")?;
        thread::Builder::new()
            .name("forkserver-stderr".to_string())
            .spawn(move || {
                // The server's own complaints (module output goes to its log file).
                for line in BufReader::new(stderr).split(b'\n') {
                    match line {
                        Ok(line) => {
                            log::debug!(
                                "python fork-server {pid}: {}",
                                String::from_utf8_lossy(&line)
                            )
                        }
                        Err(_) => break,
                    }
                }
            })
            .context("cannot start its stderr reader thread")?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("forkserver-start".to_string())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let read = reader.read_line(&mut line);
                let _ = tx.send((read.map(|_| line), reader));
            })
            .context("cannot start its stdout reader thread")?;
        match rx.recv_timeout(SERVER_START_TIMEOUT) {
            Ok((Ok(line), reader)) if line == "ready\n" => Ok(reader),
            Ok((Ok(line), _)) if line.is_empty() => {
                let status = child.wait().map(status_reason).unwrap_or_default();
                bail!(
                    "it ended before it was ready ({status}; its stderr is logged at debug level)"
                )
            }
            Ok((Ok(line), _)) => bail!("it said {:?} instead of ready", one_line(&line, 80)),
            Ok((Err(err), _)) => bail!("cannot read its stdout: {err}"),
            Err(_) => bail!("not ready after {}", short_duration(SERVER_START_TIMEOUT)),
        }
    }

    /// Whether the server process has ended.
    fn exited(&self) -> bool {
        !matches!(lock(&self.process).try_wait(), Ok(None))
    }

    /// What this process's descriptor on the server's stdout pipe is (`pipe:[N]`).
    #[cfg(test)]
    fn pipes(&self) -> Vec<String> {
        use std::os::fd::AsRawFd;
        let mut fds = Vec::new();
        if let Some(stdout) = lock(&self.stdout).as_ref() {
            fds.push(stdout.get_ref().as_raw_fd());
        }
        fds.iter()
            .filter_map(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).ok())
            .map(|link| link.display().to_string())
            .collect()
    }

    /// Closes the server's stdout, as the end of this process would, and waits up to `within`
    /// for it to exit by itself.
    #[cfg(test)]
    fn close_and_wait(&self, within: Duration) -> Option<ExitStatus> {
        drop(lock(&self.stdout).take());
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = lock(&self.process).try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Only the server: module processes of runs in progress (own process groups) carry on.
        drop(lock(&self.stdout).take());
        let process = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Ok(None) = process.try_wait() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// How a run offered to a fork-server went.
enum Forked {
    /// The module ran (or was meant to run) in a forked process.
    Ran((Verdict, Option<serde_json::Value>)),
    /// Nothing of the module ran; it should run in a fresh interpreter.
    Fallback {
        why: String,
        /// The server itself may be at fault (rather than this run's request).
        server_trouble: bool,
    },
}

/// How a forked module process ended.
enum ForkEnded {
    TimedOut,
    Exited(ExitStatus),
    /// The server went away while it ran: its output ended, its status is unknown.
    Lost,
}

/// Runs `main(args)` of `file` in a process forked by `server`; see the section comment.
fn run_forked(
    server: &ForkServer,
    spec: &RunSpec,
    request: &ShimRequest,
    output: &Arc<Output>,
) -> Result<Forked> {
    fn fallback(why: String, server_trouble: bool) -> Result<Forked> {
        Ok(Forked::Fallback {
            why,
            server_trouble,
        })
    }

    let (Some(mut message), Some(log_path)) = (request.to_json(spec), output.log_path.to_str())
    else {
        return fallback("a path is not UTF-8".to_string(), false);
    };
    let mut conn = match UnixStream::connect(&server.socket) {
        Ok(stream) => ServerConn::new(stream),
        Err(err) => return fallback(format!("cannot connect: {}", io_message(&err)), true),
    };
    let env: serde_json::Map<String, serde_json::Value> = spec
        .env
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect();
    message.insert("env".into(), serde_json::Value::Object(env));
    message.insert("out".into(), log_path.into());
    message.insert("err".into(), log_path.into());
    if let Err(err) = conn.send(&serde_json::Value::Object(message).to_string()) {
        return fallback(
            format!("cannot send the request: {}", io_message(&err)),
            true,
        );
    }
    match conn.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT)) {
        Ok(Some(line)) if line == "ready" => {}
        Ok(Some(line)) => {
            let trouble = !line.starts_with("error ");
            return fallback(format!("it said {}", one_line(&line, MAX_REASON)), trouble);
        }
        Ok(None) => return fallback("it closed the connection".to_string(), true),
        Err(err) => return fallback(format!("no answer: {}", io_message(&err)), true),
    }
    let follower = Follower::start(output)?;
    let started = Instant::now();
    if let Err(err) = conn.send("go") {
        // The module process is gone: it will not run anything.
        return fallback(format!("cannot send go: {}", io_message(&err)), true);
    }
    let pid = match conn.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT)) {
        Ok(Some(line)) => {
            let pid = line
                .strip_prefix("pid ")
                .and_then(|pid| pid.trim().parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw)
                .filter(|pid| !pid.is_init());
            match pid {
                Some(pid) => pid,
                // An error, or the end of the module process before it answered "go" with
                // its pid (it runs nothing before): nothing ran.
                None if line.starts_with("error ") || line.starts_with("status ") => {
                    return fallback(format!("it said {}", one_line(&line, MAX_REASON)), false)
                }
                None => {
                    return Ok(Forked::Ran((
                        Verdict::Failure(format!(
                            "python fork-server said {} instead of the pid of main()'s process",
                            one_line(&line, 80)
                        )),
                        None,
                    )))
                }
            }
        }
        // The module process may or may not have read "go": it cannot run again.
        Ok(None) | Err(_) => {
            return Ok(Forked::Ran((
                Verdict::Failure(
                    "python fork-server ended before reporting main()'s process".to_string(),
                ),
                None,
            )))
        }
    };
    if let Some(p) = spec.pgid_file {
        crate::recover::record_process_group(p, pid.as_raw_nonzero().get());
    }
    // From here on the guard kills the module process's group on every early return.
    let mut child = ForkedChild {
        conn,
        pid,
        ended: false,
    };

    let deadline = started.checked_add(spec.timeout);
    let mut ended = loop {
        match child.conn.recv(deadline) {
            Ok(Some(line)) => match parse_status(&line) {
                Some(status) => {
                    child.ended = true;
                    break ForkEnded::Exited(status);
                }
                None => log::debug!("[{}] python fork-server said {line:?}", spec.module),
            },
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                // The server keeps the process unreaped until the connection closes, so the group
                // id is still its own.
                child.kill_group();
                let until = Instant::now() + KILL_WAIT;
                while let Ok(Some(line)) = child.conn.recv(Some(until)) {
                    if parse_status(&line).is_some() {
                        break;
                    }
                }
                child.ended = true;
                break ForkEnded::TimedOut;
            }
            Ok(None) | Err(_) => {
                // The server is gone; the process runs on.
                log::debug!(
                    "[{}] python fork-server {} went away while main() ran",
                    spec.module,
                    server.pid
                );
                child.ended = true;
                break ForkEnded::Lost;
            }
        }
    };
    let pid = child.pid;
    // Closing the connection lets the server reap the process.
    drop(child);

    if let ForkEnded::Lost = ended {
        // Nobody reports the process's end: wait until it is gone (it was the server's child;
        // init reaps it now), within the timeout.
        let mut pause = Duration::from_millis(1);
        while !process_gone(pid) {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                kill_process_group(pid);
                ended = ForkEnded::TimedOut;
                break;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
    follower.finish();
    let verdict = request.read_verdict();
    Ok(Forked::Ran(match ended {
        ForkEnded::TimedOut => (Verdict::Failure(timeout_reason(spec.timeout)), None),
        ForkEnded::Exited(status) => python_verdict(status, verdict),
        // Without a status, the shim's verdict is all there is.
        ForkEnded::Lost => match verdict {
            Some(ShimVerdict { verdict, details }) => (verdict, details),
            None => (
                Verdict::Failure(
                    "python ended without a verdict while its fork-server was gone".to_string(),
                ),
                None,
            ),
        },
    }))
}

/// Whether `pid` no longer names a live process (gone, or a zombie waiting to be reaped).
fn process_gone(pid: rustix::process::Pid) -> bool {
    if rustix::process::test_kill_process(pid).is_err() {
        return true;
    }
    match fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

/// `status N`: a wait status.
fn parse_status(line: &str) -> Option<ExitStatus> {
    let raw = line.strip_prefix("status ")?.trim().parse::<i32>().ok()?;
    Some(ExitStatus::from_raw(raw))
}

/// A run's connection to the fork-server: lines both ways.
struct ServerConn {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl ServerConn {
    fn new(stream: UnixStream) -> Self {
        ServerConn {
            stream,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.stream.write_all(&bytes)
    }

    /// The next line, without its newline; `None` at the end of the stream; a `TimedOut` error
    /// once `deadline` has passed.
    fn recv(&mut self, deadline: Option<Instant>) -> io::Result<Option<String>> {
        loop {
            if let Some(at) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..at]).into_owned()));
            }
            if self.pending.len() > MAX_SERVER_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    Some(left)
                }
            };
            self.stream.set_read_timeout(timeout)?;
            let mut buf = [0u8; 512];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(read) => self.pending.extend_from_slice(&buf[..read]),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// A forked module process, whose group is killed when this is dropped before it ended.
struct ForkedChild {
    conn: ServerConn,
    pid: rustix::process::Pid,
    ended: bool,
}

impl ForkedChild {
    /// SIGKILLs the module process's group (its id is the process's pid: the process made the
    /// group before it answered "ready").
    fn kill_group(&self) {
        kill_process_group(self.pid);
    }
}

fn kill_process_group(pid: rustix::process::Pid) {
    if let Err(err) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        if err != rustix::io::Errno::SRCH {
            log::warn!("cannot kill process group {}: {err}", pid.as_raw_nonzero());
        }
    }
}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if !self.ended {
            self.kill_group();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicU64;
    use tempfile::TempDir;

    /// A module directory (named `name`) and a log file path, in a fresh temporary directory.
    struct Fixture {
        _tmp: Option<TempDir>,
        dir: PathBuf,
        log: PathBuf,
    }

    fn fixture(name: &str) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut f = fixture_in(tmp.path(), name);
        f._tmp = Some(tmp);
        f
    }

    /// A module directory `name` in `parent` (which modules share, like their fork-server).
    fn fixture_in(parent: &Path, name: &str) -> Fixture {
        let dir = parent.join(name);
        fs::create_dir(&dir).expect("create module dir");
        let log = parent
            .join("logs")
            .join("nested")
            .join(format!("{name}.log"));
        Fixture {
            _tmp: None,
            dir,
            log,
        }
    }

    fn write(path: &Path, content: &str, mode: u32) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(path, content).expect("write file");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// An executable shell script `name` in the module.
    fn script(f: &Fixture, name: &str, body: &str) -> Program {
        let path = f.dir.join(name);
        write(&path, &format!("#!/bin/sh\n{body}"), 0o755);
        Program::Executable(path)
    }

    /// `index.py` in the module.
    fn index_py(f: &Fixture, source: &str) -> Program {
        let path = f.dir.join("index.py");
        write(&path, source, 0o644);
        Program::PythonMain(path)
    }

    fn run_program(f: &Fixture, program: &Program, args: &[&str], timeout: Duration) -> RunOutcome {
        run_env(&SERVERS, f, program, args, &[], timeout)
    }

    /// Runs `program` with `extra` variables besides UPDATER_MODULE and UPDATER_TO_VERSION. When
    /// the thread forces a way of running `main(args)`, checks that the run took it.
    fn run_env(
        registry: &Registry,
        f: &Fixture,
        program: &Program,
        args: &[&str],
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> RunOutcome {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut env = vec![
            ("UPDATER_MODULE".to_string(), "demo".to_string()),
            ("UPDATER_TO_VERSION".to_string(), "1.2.0".to_string()),
        ];
        env.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        USED_PATH.with(|used| used.set(None));
        let outcome = run_in(
            registry,
            &RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program,
                args: Some(&args),
                env: &env,
                timeout,
                log_file: &f.log,
                python: Path::new("python3"),
                pgid_file: None,
            },
        )
        .expect("run");
        if let (Program::PythonMain(_), Some(forced)) = (program, forced_path()) {
            assert_eq!(
                used_path(),
                Some(forced),
                "the run did not take the forced way; log:\n{}",
                log_text(f)
            );
        }
        outcome
    }

    fn forced_path() -> Option<PythonPath> {
        FORCED_PATH.with(|forced| forced.get())
    }

    fn used_path() -> Option<PythonPath> {
        USED_PATH.with(|used| used.get())
    }

    /// Makes `main(args)` runs on this thread take `path` (`None`: as in production).
    fn force_path(path: Option<PythonPath>) {
        FORCED_PATH.with(|forced| forced.set(path));
    }

    /// Runs `check` twice: with `main(args)` in fresh interpreters, then through the fork-server.
    fn on_both_paths(check: impl Fn(PythonPath)) {
        for path in [PythonPath::Fresh, PythonPath::ForkServer] {
            force_path(Some(path));
            check(path);
        }
        force_path(None);
    }

    fn run_quick(f: &Fixture, program: &Program) -> RunOutcome {
        run_program(f, program, &[], Duration::from_secs(30))
    }

    fn log_text(f: &Fixture) -> String {
        String::from_utf8_lossy(&fs::read(&f.log).expect("read log file")).into_owned()
    }

    /// The program's own lines in the log file (header, footer and notices left out).
    fn output_lines(f: &Fixture) -> Vec<String> {
        log_text(f)
            .lines()
            .filter(|line| !line.starts_with("=== "))
            .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string())
            .collect()
    }

    fn failure(outcome: &RunOutcome) -> &str {
        assert!(!outcome.success, "expected a failure, got {outcome:?}");
        outcome.reason.as_deref().expect("failure has a reason")
    }

    fn assert_success(outcome: &RunOutcome, f: &Fixture) {
        assert!(
            outcome.success && outcome.reason.is_none(),
            "expected success, got {outcome:?}; log:\n{}",
            log_text(f)
        );
    }

    /// Whether `pid` names a live (not zombie) process.
    fn alive(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                // "pid (comm) S ...": the state follows the last ')'.
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !(state.starts_with('Z') || state.starts_with('X'))
            }
        }
    }

    fn wait_dead(pid: i32, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if !alive(pid) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        !alive(pid)
    }

    fn read_pid(path: &Path) -> i32 {
        fs::read_to_string(path)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    /// Kills a background process a test left behind (by its recorded pid).
    fn kill_leftover(pid: i32) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    // ---- resolve_entry -------------------------------------------------------------------

    #[test]
    fn resolve_entry_order() {
        let f = fixture("mod");
        assert_eq!(resolve_entry(&f.dir, None).expect("empty"), None);

        write(&f.dir.join("update"), "#!/bin/sh\n", 0o755);
        assert_eq!(
            resolve_entry(&f.dir, None).expect("update"),
            Some(Program::Executable(f.dir.join("update")))
        );

        write(
            &f.dir.join("index.py"),
            "def main(args):\n    return True\n",
            0o644,
        );
        assert_eq!(
            resolve_entry(&f.dir, None).expect("index.py"),
            Some(Program::PythonMain(f.dir.join("index.py")))
        );

        write(&f.dir.join("bin/run"), "#!/bin/sh\n", 0o700);
        assert_eq!(
            resolve_entry(&f.dir, Some("bin/run")).expect("declared"),
            Some(Program::Executable(f.dir.join("bin/run")))
        );
        assert_eq!(
            resolve_entry(&f.dir, Some("./bin/run")).expect("declared with ./"),
            Some(Program::Executable(f.dir.join("bin/run")))
        );

        write(
            &f.dir.join("tools/go.py"),
            "def main(args):\n    return True\n",
            0o644,
        );
        assert_eq!(
            resolve_entry(&f.dir, Some("tools/go.py")).expect("declared .py"),
            Some(Program::PythonMain(f.dir.join("tools/go.py")))
        );
    }

    #[test]
    fn resolve_entry_errors_name_the_path() {
        let f = fixture("mod");
        let err = format!("{:#}", resolve_entry(&f.dir, Some("nope.sh")).unwrap_err());
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            err.contains(&f.dir.join("nope.sh").display().to_string()),
            "{err}"
        );

        write(&f.dir.join("run.sh"), "#!/bin/sh\n", 0o644);
        let err = format!("{:#}", resolve_entry(&f.dir, Some("run.sh")).unwrap_err());
        assert!(
            err.contains("not executable") && err.contains("run.sh"),
            "{err}"
        );

        fs::create_dir(f.dir.join("subdir")).expect("mkdir");
        let err = format!("{:#}", resolve_entry(&f.dir, Some("subdir")).unwrap_err());
        assert!(
            err.contains("not a regular file") && err.contains("subdir"),
            "{err}"
        );

        for escaping in ["../other/update", "/bin/sh", "a/../../b", ""] {
            let err = format!("{:#}", resolve_entry(&f.dir, Some(escaping)).unwrap_err());
            assert!(err.contains("inside the module"), "{escaping}: {err}");
        }

        write(&f.dir.join("update"), "#!/bin/sh\n", 0o644);
        let err = format!("{:#}", resolve_entry(&f.dir, None).unwrap_err());
        assert!(err.contains("not executable"), "{err}");
        assert!(
            err.contains(&f.dir.join("update").display().to_string()),
            "{err}"
        );

        let missing = f.dir.join("missing");
        let err = format!("{:#}", resolve_entry(&missing, None).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    // ---- executables ---------------------------------------------------------------------

    #[test]
    fn shell_entry_success_and_log_file() {
        let f = fixture("mod");
        let program = script(
            &f,
            "update",
            "echo \"hello $1\"\necho to-stderr >&2\nprintf 'crlf\\r\\n'\nprintf '\\377bad\\n'\nprintf 'no newline'\n",
        );
        let outcome = run_program(&f, &program, &["world"], Duration::from_secs(30));
        assert_success(&outcome, &f);
        let lines = output_lines(&f);
        for expected in [
            "hello world",
            "to-stderr",
            "crlf",
            "\u{FFFD}bad",
            "no newline",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected:?} in {lines:?}"
            );
        }
        let log = log_text(&f);
        let header = format!(
            "=== demo: running {} \"world\"",
            f.dir.join("update").display()
        );
        assert!(log.starts_with(&header), "{log}");
        assert!(
            log.trim_end()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("=== demo: success after"),
            "{log}"
        );

        // A second run appends.
        run_quick(&f, &program);
        assert_eq!(log_text(&f).matches("=== demo: running").count(), 2);
    }

    #[test]
    fn nonzero_exit_fails_with_its_status() {
        let f = fixture("mod");
        let program = script(&f, "update", "echo failing\nexit 3\n");
        let outcome = run_quick(&f, &program);
        assert_eq!(failure(&outcome), "exit status 3");
        assert!(log_text(&f).contains("=== demo: failure: exit status 3 after"));
    }

    #[test]
    fn signal_death_is_reported() {
        let f = fixture("mod");
        let program = script(&f, "update", "kill -9 $$\n");
        assert_eq!(failure(&run_quick(&f, &program)), "killed by signal 9");
    }

    #[test]
    fn unstartable_programs_fail_with_a_reason() {
        let f = fixture("mod");
        let path = f.dir.join("update");
        write(&path, "#!/bin/sh\n", 0o644);
        let reason = failure(&run_quick(&f, &Program::Executable(path.clone()))).to_string();
        assert_eq!(
            reason,
            format!("could not start {}: Permission denied", path.display())
        );

        // With the fork-server wanted, it cannot start either, and the fresh path says why.
        on_both_paths(|_| {
            let f = fixture("mod");
            let program = index_py(&f, "def main(args):\n    return True\n");
            let outcome = run(&RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program: &program,
                args: None,
                env: &[],
                timeout: Duration::from_secs(5),
                log_file: &f.log,
                python: Path::new("/nonexistent/python3"),
                pgid_file: None,
            })
            .expect("run");
            assert_eq!(
                failure(&outcome),
                "could not start /nonexistent/python3: No such file or directory"
            );
            assert_eq!(used_path(), Some(PythonPath::Fresh));
        });
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let f = fixture("mod");
        let program = script(
            &f,
            "update",
            "sleep 60 &\necho $! > grandchild.pid\necho started\nsleep 60\n",
        );
        let started = Instant::now();
        let outcome = run_program(&f, &program, &[], Duration::from_secs(1));
        let elapsed = started.elapsed();
        assert_eq!(
            failure(&outcome),
            "timed out after 1s (process group killed)"
        );
        assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
        assert!(outcome.duration >= Duration::from_secs(1));
        let grandchild = read_pid(&f.dir.join("grandchild.pid"));
        let dead = wait_dead(grandchild, Duration::from_secs(3));
        if !dead {
            kill_leftover(grandchild);
        }
        assert!(dead, "grandchild {grandchild} survived the timeout");
        assert!(output_lines(&f).contains(&"started".to_string()));
        assert!(log_text(&f).contains("failure: timed out after 1s"));
    }

    #[test]
    fn background_process_holding_output_does_not_hang() {
        let f = fixture("mod");
        let program = script(&f, "update", "sleep 30 &\necho $! > bg.pid\necho done\n");
        let started = Instant::now();
        let outcome = run_quick(&f, &program);
        let elapsed = started.elapsed();
        let bg = read_pid(&f.dir.join("bg.pid"));
        kill_leftover(bg);
        assert_success(&outcome, &f);
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        assert!(output_lines(&f).contains(&"done".to_string()));
    }

    #[test]
    fn environment_is_clean() {
        let f = fixture("mod");
        let outcome = run_quick(&f, &Program::Executable(PathBuf::from("/usr/bin/env")));
        assert_success(&outcome, &f);
        let lines = output_lines(&f);
        let names: BTreeSet<&str> = lines
            .iter()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        let allowed: BTreeSet<&str> = PASSED_ENV
            .iter()
            .copied()
            .chain(["UPDATER_MODULE", "UPDATER_TO_VERSION"])
            .collect();
        assert!(names.is_subset(&allowed), "unexpected variables: {names:?}");
        assert!(
            lines.contains(&"UPDATER_MODULE=demo".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"UPDATER_TO_VERSION=1.2.0".to_string()),
            "{lines:?}"
        );
        assert!(names.contains("PATH"), "{names:?}");
        // cargo sets CARGO_MANIFEST_DIR for the test process at run time; it must not leak.
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert!(!names.contains("CARGO_MANIFEST_DIR"));
        }
        match std::env::var("PATH") {
            Ok(path) if !path.is_empty() => {
                assert!(lines.contains(&format!("PATH={path}")), "{lines:?}")
            }
            _ => assert!(lines.contains(&format!("PATH={DEFAULT_PATH}")), "{lines:?}"),
        }
    }

    #[test]
    fn cwd_is_module_dir_and_stdin_is_dev_null() {
        let f = fixture("mod");
        let program = script(
            &f,
            "update",
            "pwd -P\nif read -r line; then echo \"read:$line\"; exit 1; fi\necho stdin-eof\nreadlink /proc/$$/fd/0\n",
        );
        let outcome = run_quick(&f, &program);
        assert_success(&outcome, &f);
        let lines = output_lines(&f);
        let cwd = fs::canonicalize(&f.dir).expect("canonicalize");
        assert_eq!(lines[0], cwd.display().to_string());
        assert_eq!(&lines[1..], ["stdin-eof", "/dev/null"]);
    }

    #[test]
    fn parallel_runs_keep_their_output_apart() {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                thread::spawn(move || {
                    let f = fixture(&format!("mod{i}"));
                    let program = script(
                        &f,
                        "update",
                        &format!("for n in $(seq 1 200); do echo \"mod{i} line $n\"; done\n"),
                    );
                    let outcome = run_quick(&f, &program);
                    assert_success(&outcome, &f);
                    let lines = output_lines(&f);
                    assert_eq!(lines.len(), 200, "mod{i}");
                    let prefix = format!("mod{i} line ");
                    assert!(lines.iter().all(|l| l.starts_with(&prefix)), "mod{i}");
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
    }

    // ---- Python main(args) ---------------------------------------------------------------

    /// Runs `source` as index.py of a new module in `parent`.
    fn python_case(parent: &Path, source: &str) -> (RunOutcome, String) {
        static CASES: AtomicU64 = AtomicU64::new(0);
        let f = fixture_in(
            parent,
            &format!("py-mod-{}", CASES.fetch_add(1, Ordering::Relaxed)),
        );
        let program = index_py(&f, source);
        let outcome = run_quick(&f, &program);
        let log = log_text(&f);
        (outcome, log)
    }

    #[test]
    fn python_main_failures() {
        on_both_paths(|_| {
            let parent = tempfile::tempdir().expect("tempdir");
            let cases = [
                ("def main(args):\n    return None\n", "main() returned None"),
                ("def main(args):\n    pass\n", "main() returned None"),
                (
                    "def main(args):\n    return False\n",
                    "main() returned False twice",
                ),
                (
                    "def main(args):\n    return {'success': False, 'error': 'disk full'}\n",
                    "main() returned {\"success\": false, \"error\": \"disk full\"}",
                ),
                (
                    "def main(args):\n    return {'success': 0}\n",
                    "main() returned {\"success\": 0}",
                ),
                (
                    "def main(args):\n    raise ValueError('boom')\n",
                    "main() raised ValueError: boom",
                ),
                ("VALUE = 1\n", "index.py does not define main(args)"),
                ("main = 3\n", "index.py: main is not callable"),
                (
                    "import sys\ndef main(args):\n    sys.exit(2)\n",
                    "main() called sys.exit(2)",
                ),
                (
                    "import os\nos._exit(0)\n",
                    "python exited before main() returned (exit status 0)",
                ),
                (
                    "def main():\n    return True\n",
                    "main() raised TypeError: main() takes 0 positional arguments but 1 was given",
                ),
            ];
            for (source, expected) in cases {
                let (outcome, log) = python_case(parent.path(), source);
                assert_eq!(
                    failure(&outcome),
                    expected,
                    "source:\n{source}\nlog:\n{log}"
                );
                assert!(!log.contains("UPDATER-RESULT"), "{log}");
                assert!(log.contains(&format!("failure: {expected} after")), "{log}");
            }

            let (outcome, log) = python_case(
                parent.path(),
                "def main(args):\n    raise ValueError('boom')\n",
            );
            assert!(!outcome.success);
            assert!(log.contains("Traceback (most recent call last)"), "{log}");

            let (outcome, log) = python_case(parent.path(), "def main(args:\n    return True\n");
            let reason = failure(&outcome);
            assert!(
                reason.starts_with("importing index.py raised SyntaxError"),
                "{reason}"
            );
            assert!(log.contains("SyntaxError"), "{log}");
        });
    }

    #[test]
    fn python_main_successes() {
        on_both_paths(|_| {
            let parent = tempfile::tempdir().expect("tempdir");
            let sources = [
                "def main(args):\n    return True\n",
                "def main(args):\n    return {'success': True, 'version': '2'}\n",
                "def main(args):\n    return {'changed': 3}\n",
                "def main(args):\n    return 0\n",
                "def main(args):\n    return ''\n",
                "import sys\ndef main(args):\n    sys.exit(0)\n",
            ];
            for source in sources {
                let (outcome, log) = python_case(parent.path(), source);
                assert!(
                    outcome.success,
                    "source:\n{source}\noutcome: {outcome:?}\nlog:\n{log}"
                );
                assert!(log.contains("=== demo: success after"), "{log}");
            }
        });
    }

    #[test]
    fn python_main_gets_args_env_cwd_and_its_output_is_logged() {
        on_both_paths(|_| {
            let f = fixture("py-mod");
            let program = index_py(
                &f,
                "import json, os, sys\n\
                 def main(args):\n    \
                     print('args', json.dumps(args))\n    \
                     print('argv', json.dumps(sys.argv[1:]))\n    \
                     print('module', os.environ.get('UPDATER_MODULE'))\n    \
                     print('cwd', os.getcwd())\n    \
                     print('warning', file=sys.stderr)\n    \
                     return True\n",
            );
            let outcome = run_program(
                &f,
                &program,
                &["--force", "two words"],
                Duration::from_secs(30),
            );
            assert_success(&outcome, &f);
            let lines = output_lines(&f);
            let cwd = fs::canonicalize(&f.dir).expect("canonicalize");
            for expected in [
                "args [\"--force\", \"two words\"]".to_string(),
                "argv [\"--force\", \"two words\"]".to_string(),
                "module demo".to_string(),
                format!("cwd {}", cwd.display()),
                "warning".to_string(),
            ] {
                assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
            }
            assert!(
                !f.dir.join("__pycache__").exists(),
                "-B: no bytecode in the module"
            );
        });
    }

    #[test]
    fn python_package_imports_work_with_an_awkward_directory_name() {
        on_both_paths(|_| {
            let f = fixture("my-mod.v2");
            write(&f.dir.join("helper.py"), "VALUE = 41\n", 0o644);
            write(&f.dir.join("sub/__init__.py"), "", 0o644);
            write(
                &f.dir.join("sub/deep.py"),
                "from .. import helper\nNAME = 'deep'\n",
                0o644,
            );
            let program = index_py(
                &f,
                "from . import helper\n\
                 from .sub import deep\n\
                 import helper as plain\n\
                 def main(args):\n    \
                     print('value', helper.VALUE + 1, deep.NAME, plain.VALUE)\n    \
                     return True\n",
            );
            let outcome = run_quick(&f, &program);
            assert_success(&outcome, &f);
            assert!(output_lines(&f).contains(&"value 42 deep 41".to_string()));

            // A declared .py entry below the module directory, with its own relative imports.
            write(
                &f.dir.join("tools/util.py"),
                "def answer():\n    return 7\n",
                0o644,
            );
            write(
                &f.dir.join("tools/go.py"),
                "from . import util\nfrom .. import helper\n\
                 def main(args):\n    print('answer', util.answer(), helper.VALUE)\n    return True\n",
                0o644,
            );
            let program = resolve_entry(&f.dir, Some("tools/go.py"))
                .expect("resolve")
                .expect("entry");
            let outcome = run_quick(&f, &program);
            assert_success(&outcome, &f);
            assert!(output_lines(&f).contains(&"answer 7 41".to_string()));
        });
    }

    #[test]
    fn python_timeout_kills_the_interpreter() {
        on_both_paths(|_| {
            let f = fixture("py-mod");
            let program = index_py(
                &f,
                "import time\ndef main(args):\n    time.sleep(60)\n    return True\n",
            );
            let started = Instant::now();
            let outcome = run_program(&f, &program, &[], Duration::from_secs(2));
            assert_eq!(
                failure(&outcome),
                "timed out after 2s (process group killed)"
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn python_output_is_unbuffered_and_a_dead_interpreter_fails() {
        on_both_paths(|_| {
            let f = fixture("py-mod");
            let program = index_py(
                &f,
                "import os, signal\ndef main(args):\n    print('before the kill')\n    \
                 os.kill(os.getpid(), signal.SIGKILL)\n",
            );
            let outcome = run_quick(&f, &program);
            assert_eq!(failure(&outcome), "python ended: killed by signal 9");
            // -u: what main printed before dying is in the log.
            assert!(
                output_lines(&f).contains(&"before the kill".to_string()),
                "{}",
                log_text(&f)
            );
        });
    }

    // ---- fork-server ---------------------------------------------------------------------

    /// The lines of the log file that start with `prefix`, without it.
    fn tagged(f: &Fixture, prefix: &str) -> Vec<String> {
        output_lines(f)
            .iter()
            .filter_map(|line| line.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    #[test]
    fn forked_process_matches_a_fresh_interpreter() {
        let f = fixture("my-mod.v2");
        write(&f.dir.join("helper.py"), "VALUE = 1\n", 0o644);
        let program = index_py(
            &f,
            "import json, os, signal, sys\n\
             from . import helper\n\
             def main(args):\n    \
                 state = {\n        \
                     'env': sorted(os.environ.items()),\n        \
                     'path': sys.path,\n        \
                     'argv': sys.argv,\n        \
                     'cwd': os.getcwd(),\n        \
                     'modules': sorted(sys.modules),\n        \
                     'fds': sorted(os.listdir('/proc/self/fd')),\n        \
                     'pgid': os.getpgid(0) == os.getpid(),\n        \
                     'sid': os.getsid(0) == os.getsid(os.getppid()),\n        \
                     'bytecode': sys.dont_write_bytecode,\n        \
                     'flags': [sys.flags.dont_write_bytecode, sys.flags.isolated, sys.flags.no_site],\n        \
                     'streams': [[s.isatty(), s.encoding, s.errors, s.line_buffering, \
                                  getattr(s, 'write_through', None), s.fileno()] \
                                 for s in (sys.stdin, sys.stdout, sys.stderr)],\n        \
                     'stdin': os.readlink('/proc/self/fd/0'),\n        \
                     'out': [os.stat(1).st_mode >> 12, os.stat(2).st_mode >> 12],\n        \
                     'signals': [str(signal.getsignal(s)) for s in (signal.SIGINT, \
                                 signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)],\n        \
                     'mask': sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),\n        \
                     'umask': os.umask(0o22),\n        \
                     'main': sys.modules['__main__'].__name__,\n        \
                     'package': __name__,\n    \
                 }\n    \
                 print('STATE', json.dumps(state, sort_keys=True))\n    \
                 return True\n",
        );
        let mut states = Vec::new();
        for path in [PythonPath::Fresh, PythonPath::ForkServer] {
            force_path(Some(path));
            let outcome = run_program(&f, &program, &["a b", "--x"], Duration::from_secs(30));
            assert_success(&outcome, &f);
            states.push(tagged(&f, "STATE "));
        }
        force_path(None);
        assert_eq!(states[0].len(), 1, "{}", log_text(&f));
        assert_eq!(states[1].len(), 2, "{}", log_text(&f));
        let fresh: serde_json::Value = serde_json::from_str(&states[0][0]).expect("json");
        let forked: serde_json::Value = serde_json::from_str(&states[1][1]).expect("json");
        let (Some(fresh), Some(forked)) = (fresh.as_object(), forked.as_object()) else {
            panic!("not objects");
        };
        for (key, value) in fresh {
            assert_eq!(Some(value), forked.get(key), "{key} differs");
        }
        assert_eq!(fresh.len(), forked.len());
        assert!(!f.dir.join("__pycache__").exists());
    }

    #[test]
    fn forked_environment_is_clean_and_does_not_carry_over() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        force_path(Some(PythonPath::ForkServer));
        let dump = "import os\ndef main(args):\n    \
                    for name in sorted(os.environ):\n        \
                        print('VAR', name + '=' + os.environ[name])\n    \
                    return True\n";
        let first = fixture_in(parent.path(), "first");
        let program = index_py(&first, dump);
        let extra = [
            ("UPDATER_FROM_VERSION", "1.0.0"),
            ("UPDATER_BACKUP_DIR", "/backup"),
        ];
        let outcome = run_env(
            &registry,
            &first,
            &program,
            &[],
            &extra,
            Duration::from_secs(30),
        );
        assert_success(&outcome, &first);
        let vars = tagged(&first, "VAR ");
        assert!(vars.contains(&"UPDATER_FROM_VERSION=1.0.0".to_string()));
        assert!(vars.contains(&"UPDATER_BACKUP_DIR=/backup".to_string()));

        // Same server, without those: nothing of the first run remains.
        let second = fixture_in(parent.path(), "second");
        let program = index_py(&second, dump);
        let outcome = run_env(
            &registry,
            &second,
            &program,
            &[],
            &[],
            Duration::from_secs(30),
        );
        assert_success(&outcome, &second);
        assert_eq!(registry.server_pids().len(), 1);
        let forked = tagged(&second, "VAR ");
        let names: BTreeSet<&str> = forked
            .iter()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        assert!(!names.contains("UPDATER_FROM_VERSION"), "{names:?}");
        assert!(!names.contains("UPDATER_BACKUP_DIR"), "{names:?}");
        assert!(
            names.iter().all(|name| !name.starts_with("CARGO")),
            "{names:?}"
        );
        assert!(forked.contains(&"UPDATER_MODULE=demo".to_string()));
        let cwd = fs::canonicalize(&second.dir).expect("canonicalize");
        if names.contains("PWD") {
            assert!(
                forked.contains(&format!("PWD={}", cwd.display())),
                "{forked:?}"
            );
        }

        // Exactly what a fresh interpreter gets.
        force_path(Some(PythonPath::Fresh));
        let outcome = run_env(
            &registry,
            &second,
            &program,
            &[],
            &[],
            Duration::from_secs(30),
        );
        force_path(None);
        assert_success(&outcome, &second);
        let all = tagged(&second, "VAR ");
        assert_eq!(&all[forked.len()..], &forked[..]);
    }

    #[test]
    fn forked_runs_from_six_threads_share_one_server_and_keep_their_output_apart() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        thread::scope(|scope| {
            for i in 0..6 {
                let (parent, registry) = (parent.path(), &registry);
                scope.spawn(move || {
                    force_path(Some(PythonPath::ForkServer));
                    let f = fixture_in(parent, &format!("mod{i}"));
                    let program = index_py(
                        &f,
                        &format!(
                            "import sys, time\n\
                             def main(args):\n    \
                                 for n in range(1, 201):\n        \
                                     print('mod{i} line', n)\n        \
                                     print('mod{i} err', n, file=sys.stderr)\n        \
                                     if n % 50 == 0:\n            \
                                         time.sleep(0.01)\n    \
                                 return True\n"
                        ),
                    );
                    let outcome =
                        run_env(registry, &f, &program, &[], &[], Duration::from_secs(60));
                    assert_success(&outcome, &f);
                    let lines = output_lines(&f);
                    assert_eq!(lines.len(), 400, "mod{i}: {lines:?}");
                    for n in 1..=200 {
                        assert!(lines.contains(&format!("mod{i} line {n}")), "mod{i} {n}");
                        assert!(lines.contains(&format!("mod{i} err {n}")), "mod{i} {n}");
                    }
                });
            }
        });
        assert_eq!(registry.server_pids().len(), 1);
    }

    #[test]
    fn forked_modules_do_not_see_each_others_imports() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        force_path(Some(PythonPath::ForkServer));
        let first = fixture_in(parent.path(), "first");
        write(&first.dir.join("probe_mod.py"), "STATE = []\n", 0o644);
        let program = index_py(
            &first,
            "import json, sys\nimport probe_mod\n\
             def main(args):\n    \
                 json.LEAKED = True\n    \
                 probe_mod.STATE.append(1)\n    \
                 sys.modules['leaked_module'] = probe_mod\n    \
                 return True\n",
        );
        let outcome = run_env(
            &registry,
            &first,
            &program,
            &[],
            &[],
            Duration::from_secs(30),
        );
        assert_success(&outcome, &first);
        let second = fixture_in(parent.path(), "second");
        let program = index_py(
            &second,
            "import json, sys\n\
             def main(args):\n    \
                 print('leaks', hasattr(json, 'LEAKED'), 'leaked_module' in sys.modules, \
                       'probe_mod' in sys.modules, \
                       any(name.startswith('_updater_module_first') for name in sys.modules))\n    \
                 return True\n",
        );
        let outcome = run_env(
            &registry,
            &second,
            &program,
            &[],
            &[],
            Duration::from_secs(30),
        );
        force_path(None);
        assert_success(&outcome, &second);
        assert_eq!(
            tagged(&second, "leaks "),
            ["False False False False".to_string()]
        );
        assert_eq!(registry.server_pids().len(), 1);
    }

    #[test]
    fn forked_timeout_kills_the_process_group() {
        let f = fixture("py-mod");
        let program = index_py(
            &f,
            "import os, subprocess, time\n\
             def main(args):\n    \
                 child = subprocess.Popen(['sleep', '60'])\n    \
                 with open('pids', 'w') as out:\n        \
                     out.write('%d %d\\n' % (os.getpid(), child.pid))\n    \
                 print('started', flush=True)\n    \
                 time.sleep(60)\n    \
                 return True\n",
        );
        force_path(Some(PythonPath::ForkServer));
        let started = Instant::now();
        let outcome = run_program(&f, &program, &[], Duration::from_secs(1));
        force_path(None);
        let elapsed = started.elapsed();
        assert_eq!(
            failure(&outcome),
            "timed out after 1s (process group killed)"
        );
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        let pids: Vec<i32> = fs::read_to_string(f.dir.join("pids"))
            .expect("pids")
            .split_whitespace()
            .map(|pid| pid.parse().expect("pid"))
            .collect();
        for pid in &pids {
            let dead = wait_dead(*pid, Duration::from_secs(3));
            if !dead {
                kill_leftover(*pid);
            }
            assert!(dead, "{pid} survived the timeout");
        }
        assert!(output_lines(&f).contains(&"started".to_string()));
        assert!(log_text(&f).contains("failure: timed out after 1s"));
    }

    #[test]
    fn fork_server_death_falls_back_and_a_new_one_starts() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        let f = fixture_in(parent.path(), "mod");
        let program = index_py(
            &f,
            "import time\ndef main(args):\n    \
                 if args:\n        \
                     open('started', 'w').close()\n        \
                     time.sleep(float(args[0]))\n    \
                 print('ran')\n    \
                 return True\n",
        );
        force_path(Some(PythonPath::ForkServer));
        let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
        assert_success(&outcome, &f);
        let pids = registry.server_pids();
        assert_eq!(pids.len(), 1);
        let first = pids[0];

        // Killed while a module runs: the run ends when the module does, by its verdict file.
        let outcome = thread::scope(|scope| {
            let running = scope.spawn(|| {
                force_path(Some(PythonPath::ForkServer));
                run_env(
                    &registry,
                    &f,
                    &program,
                    &["1.5"],
                    &[],
                    Duration::from_secs(30),
                )
            });
            let end = Instant::now() + Duration::from_secs(20);
            while !f.dir.join("started").exists() && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
            kill_leftover(i32::try_from(first).expect("pid"));
            running.join().expect("thread")
        });
        assert_success(&outcome, &f);
        assert!(wait_dead(
            i32::try_from(first).expect("pid"),
            Duration::from_secs(3)
        ));

        // The next run (wanting the fork-server, whatever UPDATER_NO_FORKSERVER says) finds it
        // dead, runs in a fresh interpreter, and retires it.
        force_path(Some(PythonPath::ForkServer));
        USED_PATH.with(|used| used.set(None));
        let outcome = run_in(
            &registry,
            &RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program: &program,
                args: Some(&[]),
                env: &[],
                timeout: Duration::from_secs(30),
                log_file: &f.log,
                python: Path::new("python3"),
                pgid_file: None,
            },
        )
        .expect("run");
        assert_success(&outcome, &f);
        assert_eq!(used_path(), Some(PythonPath::Fresh));
        assert!(registry.server_pids().is_empty());

        // And the one after that has a new server.
        force_path(Some(PythonPath::ForkServer));
        let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
        force_path(None);
        assert_success(&outcome, &f);
        let pids = registry.server_pids();
        assert_eq!(pids.len(), 1);
        assert_ne!(pids[0], first);
        assert_eq!(output_lines(&f), ["ran"; 4]);
    }

    #[test]
    fn runs_the_fork_server_cannot_reproduce_use_a_fresh_interpreter() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        force_path(Some(PythonPath::ForkServer));
        let ok = "def main(args):\n    return True\n";

        let f = fixture_in(parent.path(), "pinned");
        write(&f.dir.join(".python-version"), "system\n", 0o644);
        let program = index_py(&f, ok);
        USED_PATH.with(|used| used.set(None));
        let spec_env = [("UPDATER_MODULE".to_string(), "demo".to_string())];
        let outcome = run_in(
            &registry,
            &RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program: &program,
                args: None,
                env: &spec_env,
                timeout: Duration::from_secs(30),
                log_file: &f.log,
                python: Path::new("python3"),
                pgid_file: None,
            },
        )
        .expect("run");
        assert_success(&outcome, &f);
        assert_eq!(used_path(), Some(PythonPath::Fresh));

        let f = fixture_in(parent.path(), "odd-env");
        let program = index_py(&f, ok);
        let spec_env = [("PYTHONPATH".to_string(), "/elsewhere".to_string())];
        let outcome = run_in(
            &registry,
            &RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program: &program,
                args: None,
                env: &spec_env,
                timeout: Duration::from_secs(30),
                log_file: &f.log,
                python: Path::new("python3"),
                pgid_file: None,
            },
        )
        .expect("run");
        force_path(None);
        assert_success(&outcome, &f);
        assert_eq!(used_path(), Some(PythonPath::Fresh));
        assert!(registry.server_pids().is_empty());
    }

    #[test]
    fn fork_server_exits_when_its_stdout_closes() {
        let f = fixture("mod");
        let key = server_key(
            &RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program: &Program::PythonMain(f.dir.join("index.py")),
                args: None,
                env: &[],
                timeout: Duration::from_secs(30),
                log_file: &f.log,
                python: Path::new("python3"),
                pgid_file: None,
            },
            &locate(Path::new("python3")),
            &f.dir,
        )
        .expect("key");
        let server = ForkServer::start(&key).expect("start");
        let pid = i32::try_from(server.pid).expect("pid");
        assert!(alive(pid));
        assert!(server.socket.exists());
        let status = server.close_and_wait(Duration::from_secs(5));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        assert!(!alive(pid));
        assert!(
            !server._dir.path().exists(),
            "the server removes its directory"
        );
    }

    #[test]
    fn programs_do_not_inherit_the_fork_servers_pipe() {
        let parent = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new();
        let f = fixture_in(parent.path(), "py");
        let program = index_py(&f, "def main(args):\n    return True\n");
        force_path(Some(PythonPath::ForkServer));
        let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
        force_path(None);
        assert_success(&outcome, &f);
        let slot = lock(&registry.slots)
            .values()
            .next()
            .map(Arc::clone)
            .expect("a slot");
        let server = lock(&slot).server.clone().expect("a server");
        let pipes = server.pipes();
        assert_eq!(pipes.len(), 1);
        assert!(pipes[0].starts_with("pipe:"), "{pipes:?}");

        let g = fixture_in(parent.path(), "sh");
        let program = script(
            &g,
            "update",
            "for fd in /proc/$$/fd/*; do echo \"fd $(readlink \"$fd\")\"; done\n",
        );
        let outcome = run_env(&registry, &g, &program, &[], &[], Duration::from_secs(30));
        assert_success(&outcome, &g);
        let links = tagged(&g, "fd ");
        assert!(!links.is_empty());
        for pipe in &pipes {
            assert!(!links.contains(pipe), "{pipe} inherited: {links:?}");
        }
    }

    /// Environment variable naming the file where [`fork_server_helper_process`] reports.
    const HELPER_REPORT: &str = "UPDATER_TEST_FORKSERVER_REPORT";

    /// Not a test on its own: run in a child process by [`fork_server_ends_with_the_process`],
    /// it runs a module the production way and reports the servers it left.
    #[test]
    fn fork_server_helper_process() {
        let Some(report) = std::env::var_os(HELPER_REPORT) else {
            return;
        };
        let f = fixture("mod");
        let program = index_py(&f, "def main(args):\n    return True\n");
        let outcome = run_program(&f, &program, &[], Duration::from_secs(30));
        assert_success(&outcome, &f);
        let path = match used_path() {
            Some(PythonPath::ForkServer) => "fork-server",
            _ => "fresh",
        };
        let pids: Vec<String> = SERVERS
            .server_pids()
            .iter()
            .map(|pid| pid.to_string())
            .collect();
        fs::write(report, format!("{path} {}\n", pids.join(" "))).expect("report");
        // The test harness exits without dropping statics, like the binary.
    }

    #[test]
    fn fork_server_ends_with_the_process() {
        for (no_fork_server, expected) in [(None, "fork-server"), (Some("1"), "fresh")] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let report = tmp.path().join("report");
            let mut command = Command::new(std::env::current_exe().expect("test binary"));
            command
                .args([
                    "--exact",
                    "runner::tests::fork_server_helper_process",
                    "--test-threads=1",
                ])
                .env(HELPER_REPORT, &report)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            match no_fork_server {
                Some(value) => command.env(NO_FORK_SERVER_VAR, value),
                None => command.env_remove(NO_FORK_SERVER_VAR),
            };
            let status = command.status().expect("run the helper");
            assert!(status.success());
            let report = fs::read_to_string(&report).expect("report");
            let mut words = report.split_whitespace();
            assert_eq!(words.next(), Some(expected), "{report}");
            let pids: Vec<i32> = words.map(|pid| pid.parse().expect("pid")).collect();
            assert_eq!(
                pids.len(),
                usize::from(expected == "fork-server"),
                "{report}"
            );
            for pid in pids {
                let dead = wait_dead(pid, Duration::from_secs(5));
                if !dead {
                    kill_leftover(pid);
                }
                assert!(dead, "fork-server {pid} outlived its process");
            }
        }
    }

    #[test]
    fn no_forkserver_variable() {
        use std::ffi::OsStr;
        assert!(fork_server_enabled(None));
        assert!(fork_server_enabled(Some(OsStr::new(""))));
        assert!(fork_server_enabled(Some(OsStr::new("0"))));
        assert!(!fork_server_enabled(Some(OsStr::new("1"))));
        assert!(!fork_server_enabled(Some(OsStr::new("yes"))));
    }

    /// Not a test: `cargo test --lib runner::tests::timing -- --ignored --nocapture` prints the
    /// cost of a run for each way of running a module (`TIMING_PYTHON` picks the interpreter).
    /// Executable and fork-server runs alternate, so that both see the same machine load.
    #[test]
    #[ignore]
    fn timing() {
        const RUNS: usize = 50;
        const FRESH_RUNS: usize = 10;
        let python = std::env::var_os("TIMING_PYTHON").unwrap_or_else(|| "python3".into());
        let f = fixture("mod");
        let executable = script(&f, "update", "true\n");
        let python_main = index_py(&f, "def main(args):\n    return True\n");
        let time = |program: &Program, path: PythonPath| {
            force_path(Some(path));
            let started = Instant::now();
            let outcome = run(&RunSpec {
                module: "demo",
                module_dir: &f.dir,
                program,
                args: None,
                env: &[],
                timeout: Duration::from_secs(30),
                log_file: &f.log,
                python: Path::new(&python),
                pgid_file: None,
            })
            .expect("run");
            assert!(outcome.success);
            force_path(None);
            started.elapsed().as_secs_f64() * 1000.0
        };
        let summary = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            (times[times.len() / 2], mean)
        };
        // Warm-up: starts the fork-server.
        time(&python_main, PythonPath::ForkServer);
        let report = |how: &str, exe: Vec<f64>, forked: Vec<f64>| {
            let ((exe_median, exe_mean), (forked_median, forked_mean)) =
                (summary(exe), summary(forked));
            println!(
                "{how}: median/mean ms per run: executable {exe_median:.2}/{exe_mean:.2}, \
                 fork-server {forked_median:.2}/{forked_mean:.2}; difference {:.2}/{:.2}",
                forked_median - exe_median,
                forked_mean - exe_mean
            );
        };
        let (mut exe, mut forked) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            exe.push(time(&executable, PythonPath::Fresh));
            forked.push(time(&python_main, PythonPath::ForkServer));
        }
        report("alternating", exe, forked);
        let exe = (0..RUNS)
            .map(|_| time(&executable, PythonPath::Fresh))
            .collect();
        let forked = (0..RUNS)
            .map(|_| time(&python_main, PythonPath::ForkServer))
            .collect();
        report("in blocks", exe, forked);
        let (fresh_median, fresh_mean) = summary(
            (0..FRESH_RUNS)
                .map(|_| time(&python_main, PythonPath::Fresh))
                .collect(),
        );
        println!(
            "python {}: fresh interpreter median/mean {fresh_median:.2}/{fresh_mean:.2} ms per run",
            Path::new(&python).display()
        );
    }

    // ---- helpers -------------------------------------------------------------------------

    #[test]
    fn verdict_parsing_and_formatting() {
        let parse = |text: &str| ShimVerdict::parse(text.as_bytes());
        assert_eq!(parse(r#"{"ok": true}"#).verdict, Verdict::Success);
        assert_eq!(
            parse(r#"{"ok": false, "reason": "main() returned None", "details": null}"#),
            ShimVerdict {
                verdict: Verdict::Failure("main() returned None".to_string()),
                details: None
            }
        );
        assert_eq!(
            parse(r#"{"ok": false, "reason": ""}"#).verdict,
            Verdict::Failure("main() failed".to_string())
        );
        assert_eq!(
            parse(r#"{"ok": true, "details": {"updated": true}}"#).details,
            Some(serde_json::json!({"updated": true}))
        );
        for garbage in ["", "UPDATER-RESULT: ok", r#"{"ok": "yes"}"#, "[1]"] {
            let verdict = parse(garbage).verdict;
            assert!(
                matches!(&verdict, Verdict::Failure(reason) if reason.starts_with("unreadable verdict")),
                "{garbage:?}: {verdict:?}"
            );
        }
        assert_eq!(short_duration(Duration::from_secs(2)), "2s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(short_duration(crate::module::DEFAULT_TIMEOUT), "1800s");
        assert_eq!(one_line("a\n b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 8), "abcde...");
        let err = io::Error::from_raw_os_error(13);
        assert_eq!(io_message(&err), "Permission denied");
    }
}
