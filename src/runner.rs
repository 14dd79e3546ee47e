//! Runs one module's entry point or health check under the SPEC §5 contract.
//!
//! A program runs with the module directory as working directory, stdin from `/dev/null`, a clean
//! environment (see [`PASSED_ENV`] plus [`RunSpec::env`]), in a process group of its own, and under
//! a timeout that kills that whole group. Its stdout and stderr are read line by line: each line goes
//! to the run's log (`log::info!("[module] line")`) and, raw, to the module's log file, which also
//! gets a header line (what runs) and a footer line (the outcome).
//!
//! Two kinds of program exist ([`Program`]): an executable, which succeeds on exit status 0, and a
//! Python file defining `main(args)`, which runs in its own interpreter under an embedded shim
//! (`runner_shim.py`) that imports the module directory as a package, calls `main`, and reports the
//! verdict as its last stderr line `UPDATER-RESULT: ok` or `UPDATER-RESULT: fail <reason>`.
//!
//! The Python path is confined to the private `run_python_main`: it hands lines to an `Output` and
//! returns a `Verdict`. A later fork-server (one warm interpreter forking a child per module)
//! replaces that function's body only: feed the forked child's output to the same `Output`, kill its
//! process group on timeout, and keep the shim's verdict protocol (`parse_result_line`). The public
//! interface does not change.
//!
//! Nothing here touches process-global state: concurrent runs from several threads are independent
//! (std creates every pipe close-on-exec, so one module's child never holds another's output).

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// SPEC §5 default timeout of an entry point or health check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

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

/// How long output readers may lag behind the end of the program before their pipes are given up
/// (a background process may keep stdout/stderr open forever).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Longest line kept whole; longer ones are split.
const MAX_LINE: u64 = 64 * 1024;

/// Longest reason kept from the shim.
const MAX_REASON: usize = 400;

/// Most retries of a start that fails with "Text file busy": the file was just written, and a child
/// forked meanwhile by another thread still holds a write descriptor to it until that child execs.
const START_RETRIES: u32 = 20;

/// The Python side of [`Program::PythonMain`].
const PYTHON_SHIM: &str = include_str!("runner_shim.py");

/// Prefix of the shim's verdict line on stderr.
const RESULT_MARKER: &str = "UPDATER-RESULT: ";

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
    /// Extra arguments (legacy mode): argv of an executable, the `args` list of `main(args)`.
    pub args: &'a [String],
    /// Variables set on top of the clean environment (the `UPDATER_*` ones).
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    /// Per-module log file: created (with its parent directories) or appended to.
    pub log_file: &'a Path,
    /// Python interpreter for [`Program::PythonMain`], a path or a name looked up in `PATH`.
    pub python: &'a Path,
}

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
}

/// Runs `spec.program` to completion or timeout (SPEC §5).
///
/// A program that cannot be started, fails or times out is an `Ok` outcome with `success: false`.
/// `Err` means the runner itself could not do its job (log file, threads, waiting), after having
/// killed and reaped whatever it started.
pub fn run(spec: &RunSpec) -> Result<RunOutcome> {
    let output = Arc::new(Output::open(spec.module, spec.log_file)?);
    output.note(&format!("=== {}: {}", spec.module, describe(spec)));
    let started = Instant::now();
    let verdict = match spec.program {
        Program::Executable(path) => run_executable(spec, path, &output),
        Program::PythonMain(file) => run_python_main(spec, file, &output),
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
    let outcome = match verdict {
        Verdict::Success => RunOutcome {
            success: true,
            reason: None,
            duration,
        },
        Verdict::Failure(reason) => RunOutcome {
            success: false,
            reason: Some(reason),
            duration,
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
            for arg in spec.args {
                let _ = write!(text, " {arg:?}");
            }
        }
        Program::PythonMain(file) => {
            let _ = write!(
                text,
                "running main({:?}) of {} with {}",
                spec.args,
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
    command.args(spec.args);
    Ok(match run_process(spec, command, output)? {
        Ended::NotStarted(reason) => Verdict::Failure(reason),
        Ended::TimedOut => Verdict::Failure(timeout_reason(spec.timeout)),
        Ended::Exited(status) if status.success() => Verdict::Success,
        Ended::Exited(status) => Verdict::Failure(status_reason(status)),
    })
}

/// Runs `main(args)` of the Python file `file` in a fresh interpreter under the embedded shim.
///
/// This is the one function a fork-server would replace (see the module documentation).
fn run_python_main(spec: &RunSpec, file: &Path, output: &Arc<Output>) -> Result<Verdict> {
    // The shim resolves paths itself, but its working directory is the module directory, so a
    // relative one would be resolved twice.
    let module_dir = std::path::absolute(spec.module_dir).with_context(|| {
        format!(
            "cannot resolve module directory {}",
            spec.module_dir.display()
        )
    })?;
    let file = module_dir.join(file);
    let mut command = Command::new(spec.python);
    // -u: unbuffered, so output is logged as it comes and survives a kill; -B: write no
    // __pycache__ into the installed module.
    command
        .arg("-u")
        .arg("-B")
        .arg("-c")
        .arg(PYTHON_SHIM)
        .arg(&module_dir)
        .arg(&file)
        .args(spec.args);
    output.capture_result_line();
    let ended = run_process(spec, command, output)?;
    let result_line = output.take_result_line();
    Ok(match ended {
        Ended::NotStarted(reason) => Verdict::Failure(reason),
        Ended::TimedOut => Verdict::Failure(timeout_reason(spec.timeout)),
        Ended::Exited(status) => python_verdict(status, result_line.as_deref()),
    })
}

fn python_verdict(status: ExitStatus, result_line: Option<&str>) -> Verdict {
    match result_line.map(parse_result_line) {
        Some(Verdict::Success) if status.success() => Verdict::Success,
        Some(Verdict::Success) => Verdict::Failure(format!(
            "main() succeeded but python then ended: {}",
            status_reason(status)
        )),
        Some(failure) => failure,
        None if status.success() => {
            Verdict::Failure("python exited before main() returned (exit status 0)".to_string())
        }
        None => Verdict::Failure(format!("python ended: {}", status_reason(status))),
    }
}

/// Reads the shim's verdict line, without its [`RESULT_MARKER`] prefix: `ok` or `fail <reason>`.
fn parse_result_line(line: &str) -> Verdict {
    if line.trim() == "ok" {
        return Verdict::Success;
    }
    let reason = line.strip_prefix("fail").unwrap_or(line).trim();
    let reason = if reason.is_empty() {
        "main() failed".to_string()
    } else {
        one_line(reason, MAX_REASON)
    };
    Verdict::Failure(reason)
}

/// How a child process ended.
enum Ended {
    /// It could not be started; the reason says why.
    NotStarted(String),
    /// The timeout expired; its process group was killed and it was reaped.
    TimedOut,
    Exited(ExitStatus),
}

/// Starts `command` under the SPEC §5 rules, feeds its output to `output`, waits for it (or kills
/// its process group at the timeout), then gives its output readers [`OUTPUT_GRACE`] to finish.
fn run_process(spec: &RunSpec, mut command: Command, output: &Arc<Output>) -> Result<Ended> {
    let program = command.get_program().to_owned();
    if !spec.module_dir.is_dir() {
        return Ok(Ended::NotStarted(format!(
            "could not start {}: module directory {} is not a directory",
            Path::new(&program).display(),
            spec.module_dir.display()
        )));
    }
    command
        .current_dir(spec.module_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    clean_env(&mut command, spec.env);

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
    // From here on the guard kills and reaps the child on every early return.
    let mut child = Reaper::new(child);

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0;
    if let Some(stdout) = child.child.stdout.take() {
        spawn_reader(stdout, Stream::Stdout, output, done_tx.clone())?;
        readers += 1;
    }
    if let Some(stderr) = child.child.stderr.take() {
        spawn_reader(stderr, Stream::Stderr, output, done_tx.clone())?;
        readers += 1;
    }
    drop(done_tx);

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

    let grace_end = Instant::now() + OUTPUT_GRACE;
    while readers > 0 {
        match done_rx.recv_timeout(grace_end.saturating_duration_since(Instant::now())) {
            Ok(()) => readers -= 1,
            Err(RecvTimeoutError::Disconnected) => readers = 0,
            Err(RecvTimeoutError::Timeout) => break,
        }
    }
    if readers > 0 {
        output.detach();
    }
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

/// Clears the environment but for [`PASSED_ENV`] (PATH defaulting to [`DEFAULT_PATH`]), then sets
/// `extra`.
fn clean_env(command: &mut Command, extra: &[(String, String)]) {
    command.env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            if !value.is_empty() {
                command.env(name, value);
            }
        }
    }
    if std::env::var_os("PATH").is_none_or(|path| path.is_empty()) {
        command.env("PATH", DEFAULT_PATH);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Starts a thread that reads `pipe` line by line into `output`, then signals `done`. It outlives
/// the run if something keeps the pipe open; by then `output` is detached and it only drains.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    stream: Stream,
    output: &Arc<Output>,
    done: mpsc::Sender<()>,
) -> Result<()> {
    let output = Arc::clone(output);
    let name = match stream {
        Stream::Stdout => "runner-stdout",
        Stream::Stderr => "runner-stderr",
    };
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => output.line(stream, &line),
                    Err(err) => {
                        log::warn!("[{}] cannot read its output: {err}", output.module);
                        break;
                    }
                }
            }
            let _ = done.send(());
        })
        .with_context(|| format!("cannot start the {name} reader thread"))?;
    Ok(())
}

/// Where a run's output goes: the run's log and the module's log file.
struct Output {
    module: String,
    log_path: PathBuf,
    state: Mutex<OutputState>,
}

struct OutputState {
    /// `None` after a write error (reported once).
    file: Option<File>,
    /// Set once the run is over: later lines from lingering processes are dropped.
    detached: bool,
    /// Whether stderr lines starting with [`RESULT_MARKER`] are the shim's verdict.
    capture_result: bool,
    /// The last verdict line seen, without the marker.
    result_line: Option<String>,
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
            state: Mutex::new(OutputState {
                file: Some(file),
                detached: false,
                capture_result: false,
                result_line: None,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, OutputState> {
        // A panic while holding the lock leaves nothing inconsistent: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One line of the program's output, newline included or not.
    fn line(&self, stream: Stream, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        let mut state = self.state();
        if state.detached {
            return;
        }
        if stream == Stream::Stderr && state.capture_result {
            if let Some(result) = text.strip_prefix(RESULT_MARKER) {
                state.result_line = Some(result.to_string());
                return;
            }
        }
        log::info!("[{}] {text}", self.module);
        self.write(&mut state, &text);
    }

    /// A line of the runner's own (header, footer, notices): to the log file only.
    fn note(&self, text: &str) {
        let mut state = self.state();
        self.write(&mut state, text);
    }

    fn write(&self, state: &mut OutputState, text: &str) {
        let Some(file) = state.file.as_mut() else {
            return;
        };
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        if let Err(err) = file.write_all(line.as_bytes()) {
            log::warn!(
                "[{}] cannot write log file {}: {err}; no more output goes there",
                self.module,
                self.log_path.display()
            );
            state.file = None;
        }
    }

    fn capture_result_line(&self) {
        self.state().capture_result = true;
    }

    fn take_result_line(&self) -> Option<String> {
        self.state().result_line.take()
    }

    /// Drops all later output: the program ended but something still holds its stdout/stderr.
    fn detach(&self) {
        let mut state = self.state();
        if state.detached {
            return;
        }
        let notice = "output still open after the program ended (a background process holds \
                      it); ignoring the rest";
        log::warn!("[{}] {notice}", self.module);
        self.write(&mut state, &format!("=== {}: {notice}", self.module));
        state.detached = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tempfile::TempDir;

    /// A module directory (named `name`) and a log file path, in a fresh temporary directory.
    struct Fixture {
        _tmp: TempDir,
        dir: PathBuf,
        log: PathBuf,
    }

    fn fixture(name: &str) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).expect("create module dir");
        let log = tmp
            .path()
            .join("logs")
            .join("nested")
            .join(format!("{name}.log"));
        Fixture {
            _tmp: tmp,
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
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = vec![
            ("UPDATER_MODULE".to_string(), "demo".to_string()),
            ("UPDATER_TO_VERSION".to_string(), "1.2.0".to_string()),
        ];
        run(&RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program,
            args: &args,
            env: &env,
            timeout,
            log_file: &f.log,
            python: Path::new("python3"),
        })
        .expect("run")
    }

    fn run_quick(f: &Fixture, program: &Program) -> RunOutcome {
        run_program(f, program, &[], Duration::from_secs(30))
    }

    fn log_text(f: &Fixture) -> String {
        fs::read_to_string(&f.log).expect("read log file")
    }

    /// The program's own lines in the log file (header, footer and notices left out).
    fn output_lines(f: &Fixture) -> Vec<String> {
        log_text(f)
            .lines()
            .filter(|line| !line.starts_with("=== "))
            .map(str::to_string)
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

        let f = fixture("mod");
        let program = Program::PythonMain(f.dir.join("index.py"));
        let outcome = run(&RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &program,
            args: &[],
            env: &[],
            timeout: Duration::from_secs(5),
            log_file: &f.log,
            python: Path::new("/nonexistent/python3"),
        })
        .expect("run");
        assert_eq!(
            failure(&outcome),
            "could not start /nonexistent/python3: No such file or directory"
        );
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
        assert!(log_text(&f).contains("output still open"));
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

    fn python_case(source: &str) -> (RunOutcome, String) {
        let f = fixture("py-mod");
        let program = index_py(&f, source);
        let outcome = run_quick(&f, &program);
        let log = log_text(&f);
        (outcome, log)
    }

    #[test]
    fn python_main_failures() {
        let cases = [
            ("def main(args):\n    return None\n", "main() returned None"),
            ("def main(args):\n    pass\n", "main() returned None"),
            (
                "def main(args):\n    return False\n",
                "main() returned False",
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
            let (outcome, log) = python_case(source);
            assert_eq!(
                failure(&outcome),
                expected,
                "source:\n{source}\nlog:\n{log}"
            );
            assert!(!log.contains(RESULT_MARKER), "{log}");
            assert!(log.contains(&format!("failure: {expected} after")), "{log}");
        }

        let (outcome, log) = python_case("def main(args):\n    raise ValueError('boom')\n");
        assert!(!outcome.success);
        assert!(log.contains("Traceback (most recent call last)"), "{log}");

        let (outcome, log) = python_case("def main(args:\n    return True\n");
        let reason = failure(&outcome);
        assert!(
            reason.starts_with("importing index.py raised SyntaxError"),
            "{reason}"
        );
        assert!(log.contains("SyntaxError"), "{log}");
    }

    #[test]
    fn python_main_successes() {
        let sources = [
            "def main(args):\n    return True\n",
            "def main(args):\n    return {'success': True, 'version': '2'}\n",
            "def main(args):\n    return {'changed': 3}\n",
            "def main(args):\n    return 0\n",
            "def main(args):\n    return ''\n",
            "import sys\ndef main(args):\n    sys.exit(0)\n",
        ];
        for source in sources {
            let (outcome, log) = python_case(source);
            assert!(
                outcome.success,
                "source:\n{source}\noutcome: {outcome:?}\nlog:\n{log}"
            );
            assert!(log.contains("=== demo: success after"), "{log}");
        }
    }

    #[test]
    fn python_main_gets_args_env_cwd_and_its_output_is_logged() {
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
    }

    #[test]
    fn python_package_imports_work_with_an_awkward_directory_name() {
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
    }

    #[test]
    fn python_timeout_kills_the_interpreter() {
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
    }

    #[test]
    fn python_output_is_unbuffered_and_a_dead_interpreter_fails() {
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
    }

    // ---- helpers -------------------------------------------------------------------------

    #[test]
    fn verdict_parsing_and_formatting() {
        assert_eq!(parse_result_line("ok"), Verdict::Success);
        assert_eq!(
            parse_result_line("fail main() returned None"),
            Verdict::Failure("main() returned None".to_string())
        );
        assert_eq!(
            parse_result_line("fail"),
            Verdict::Failure("main() failed".to_string())
        );
        assert_eq!(short_duration(Duration::from_secs(2)), "2s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(short_duration(DEFAULT_TIMEOUT), "1800s");
        assert_eq!(one_line("a\n b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 8), "abcde...");
        let err = io::Error::from_raw_os_error(13);
        assert_eq!(io_message(&err), "Permission denied");
    }
}
