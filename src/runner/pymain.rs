//! Runs a `main(args)` module: in a process forked by the fork-server of its interpreter when it
//! can, else in a fresh interpreter under the shim. Both end in the same [`Verdict`].

use anyhow::{Context, Result};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::forkserver::{
    fork_server_wanted, modules_dir_key, note_path, run_forked, server_key, Forked, PythonPath,
    Registry,
};
use super::output::Output;
use super::process::{python_env, run_process, Ended};
use super::reason::{timeout_reason, Verdict};
use super::shim::{python_verdict, ShimRequest, PYTHON_SHIM};
use super::spec::{RunSpec, DEFAULT_PATH};

/// Starts, in a thread of its own, the fork-server that `main(args)` modules in `modules_dir` run
/// with `python` will use, so that the interpreter's start overlaps the caller's other work (the
/// first run for that server waits for the start instead of making its own). Returns the thread,
/// or `None` when such runs would not use a fork-server.
pub(super) fn prewarm_in(
    registry: &'static Registry,
    python: &Path,
    modules_dir: &Path,
) -> Option<std::thread::JoinHandle<()>> {
    let modules_dir = std::path::absolute(modules_dir).ok()?;
    let key = modules_dir_key(&locate(python), &modules_dir)?;
    std::thread::Builder::new()
        .name("forkserver-prewarm".to_string())
        .spawn(move || {
            let _ = registry.server(&key);
        })
        .ok()
}

/// Runs `main(args)` of the Python file `file`: in a process forked by the fork-server of
/// `spec.python` when it can, else in a fresh interpreter. Both end in the same [`Verdict`], with
/// the `details` `main` returned.
pub(super) fn run_python_main(
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
    if fork_server_wanted(spec) {
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

/// `python` as it will be started: a bare name is looked up in the caller's `PATH` (the program
/// gets [`DEFAULT_PATH`], which may not hold the caller's interpreter); anything else, or a name
/// found nowhere, as given.
pub(super) fn locate(python: &Path) -> PathBuf {
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
