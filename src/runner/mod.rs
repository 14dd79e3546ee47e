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
//! (`shim.py`, which documents the import context of SPEC §10: `updates` is the install
//! root, the module is `updates.modules.<name>`). The shim reports its verdict (ok or fail, a
//! reason, and the `details` `main` returned in a dict) on a channel of its own: a verdict file in a
//! private directory of this run, which the shim opens close-on-exec before any module code runs and
//! which the runner reads once the process ended. Nothing the module prints can forge or hide it.
//! Python programs get `PATH` = [`DEFAULT_PATH`] and `PYTHONUNBUFFERED=1` (SPEC §10).
//!
//! A fresh interpreter costs 30 to 180 ms to start (more behind a pyenv shim), so `main(args)`
//! modules normally run in a process forked from a warm one: a fork-server per interpreter, started
//! by the first such run and kept for the life of this process ([`forkserver`], and
//! `forkserver/server.py`). Each module still gets a process (group) of its own, with the same
//! working directory, environment, stdin, output handling, timeout and verdict as in a fresh
//! interpreter; the shim code that imports the module and calls `main` is the same. Whenever the
//! fork-server cannot take a run before any of the module ran (it cannot start, died, the run's
//! variables or a version-manager file could make a fresh interpreter differ), the run uses a fresh
//! interpreter; `UPDATER_NO_FORKSERVER=1` makes every run do so.
//!
//! Concurrent runs from several threads are independent (std opens every file and pipe
//! close-on-exec, so one module's child never holds another's log file or verdict); the only
//! process-global state is the set of fork-servers, which serve concurrent runs.
//!
//! The folder: [`entry`] finds what to run, [`spec`] says what a run is and how it ended,
//! [`process`] starts and supervises one process (an executable waits at its [`gate`] until its process
//! group is recorded), [`output`] carries its output, [`shim`] is the
//! Python verdict protocol, [`pymain`] picks a fresh interpreter or a fork-server
//! ([`forkserver`]) for a `main(args)` module, and [`reason`] words a failure.

mod entry;
mod forkserver;
mod gate;
mod output;
mod process;
mod pymain;
mod reason;
mod shim;
mod spec;
#[cfg(test)]
mod tests;

pub use entry::{install_root, resolve_entry, Program};
pub use forkserver::{fork_server_enabled, NO_FORK_SERVER_VAR};
pub use spec::{check_args, RunOutcome, RunSpec, CHECK_ARGS, DEFAULT_PATH, PASSED_ENV};

use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use forkserver::{Registry, SERVERS};
use output::Output;
use process::{base_env, run_process, Ended};
use pymain::run_python_main;
use reason::{seconds, status_reason, timeout_reason, Verdict};

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

/// Starts the Python fork-server early, in the background, when a module in `modules_dir` has an
/// `index.py` (whose `main(args)` will run through it), so that the interpreter's start overlaps
/// the git sync and the plan (`sync --run enabled`, where every enabled module runs every time).
/// A run that reaches the fork-server first waits for that start rather than making its own.
pub fn prewarm_fork_server(python: &Path, modules_dir: &Path) {
    let has_python = crate::fs::list_dir(modules_dir)
        .unwrap_or_default()
        .iter()
        .any(|name| modules_dir.join(name).join("index.py").is_file());
    if has_python {
        let _ = pymain::prewarm_in(&SERVERS, python, modules_dir);
    }
}

/// [`run`], with `registry` as the source of fork-servers.
fn run_in(registry: &Registry, spec: &RunSpec) -> Result<RunOutcome> {
    let output = Arc::new(Output::open(spec.module, spec.log_file)?);
    output.note(&format!("=== {}: {}", spec.module, describe(spec)));
    log::trace!("process: [{}] {}", spec.module, describe(spec));
    let started = Instant::now();
    let verdict = match spec.program {
        Program::Executable(path) => {
            run_executable(spec, path, spec.args.unwrap_or_default(), &output).map(|v| (v, None))
        }
        Program::Exec(path, args) => run_executable(spec, path, args, &output).map(|v| (v, None)),
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
    let ended = format!(
        "{} after {}",
        match &outcome.reason {
            None => "success".to_string(),
            Some(reason) => format!("failure: {reason}"),
        },
        seconds(duration)
    );
    output.note(&format!("=== {}: {ended}", spec.module));
    log::trace!("process: [{}] {ended}", spec.module);
    Ok(outcome)
}

/// The header line's account of what runs.
fn describe(spec: &RunSpec) -> String {
    let mut text = String::new();
    match spec.program {
        Program::Executable(path) | Program::Exec(path, _) => {
            let _ = write!(text, "running {}", path.display());
            let args = match spec.program {
                Program::Exec(_, args) => args.as_slice(),
                _ => spec.args.unwrap_or_default(),
            };
            for arg in args {
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

fn run_executable(
    spec: &RunSpec,
    path: &Path,
    args: &[String],
    output: &Arc<Output>,
) -> Result<Verdict> {
    let mut command = Command::new(path);
    command.args(args);
    Ok(match run_process(spec, command, &base_env(), output)? {
        Ended::NotStarted(reason) => Verdict::Failure(reason),
        Ended::TimedOut => Verdict::Failure(timeout_reason(spec.timeout)),
        Ended::Exited(status) if status.success() => Verdict::Success,
        Ended::Exited(status) => Verdict::Failure(status_reason(status)),
    })
}
