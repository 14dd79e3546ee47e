//! Whether a `main(args)` run may use a fork-server ([`fork_server_wanted`], `UPDATER_NO_FORKSERVER`)
//! and which one ([`ServerKey`]: runs with equal keys share one; a run whose key cannot be made
//! uses a fresh interpreter), and which way a run took ([`PythonPath`], seen by tests).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::runner::process::python_env;
use crate::runner::spec::RunSpec;

/// What a fork-server is for: runs with equal keys share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(in crate::runner) struct ServerKey {
    pub(in crate::runner) python: PathBuf,
    /// The server's working directory: the parent of the module directory, so that a launcher that
    /// looks at its directory and its parents (pyenv's `.python-version`) sees what it would see
    /// for a fresh interpreter.
    pub(in crate::runner) cwd: PathBuf,
    /// [`python_env`] when the server started.
    pub(in crate::runner) env: Vec<(OsString, OsString)>,
}

/// The fork-server key for `spec`, or why this run should use a fresh interpreter.
pub(in crate::runner) fn server_key(
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
    Ok(dir_key(python, cwd))
}

/// The key of the fork-server that runs of modules in `modules_dir` (absolute) with `python`
/// (located) share: what [`server_key`] gives each of them. A relative `python` with a directory
/// part has none (see there).
pub(in crate::runner) fn modules_dir_key(python: &Path, modules_dir: &Path) -> Option<ServerKey> {
    if python.is_relative() && python.components().count() > 1 {
        return None;
    }
    Some(dir_key(python, modules_dir))
}

fn dir_key(python: &Path, cwd: &Path) -> ServerKey {
    ServerKey {
        python: python.to_path_buf(),
        cwd: cwd.to_path_buf(),
        env: python_env(),
    }
}

/// Set to anything but "" or "0", `main(args)` modules always run in a fresh interpreter.
pub const NO_FORK_SERVER_VAR: &str = "UPDATER_NO_FORKSERVER";

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
pub(in crate::runner) enum PythonPath {
    Fresh,
    ForkServer,
}

#[cfg(test)]
thread_local! {
    /// Tests: the way `main(args)` runs on this thread must take (`None`: as in production).
    pub(in crate::runner) static FORCED_PATH: std::cell::Cell<Option<PythonPath>> = const { std::cell::Cell::new(None) };
    /// Tests: the way the last `main(args)` run on this thread took.
    pub(in crate::runner) static USED_PATH: std::cell::Cell<Option<PythonPath>> = const { std::cell::Cell::new(None) };
}

/// Whether this `main(args)` run should try the fork-server (`RunSpec::fork_server`, which the
/// settings stage derives from [`NO_FORK_SERVER_VAR`]).
pub(in crate::runner) fn fork_server_wanted(spec: &RunSpec) -> bool {
    #[cfg(test)]
    if let Some(path) = FORCED_PATH.with(|forced| forced.get()) {
        return path == PythonPath::ForkServer;
    }
    spec.fork_server
}

/// Whether [`NO_FORK_SERVER_VAR`], with this value, leaves the fork-server on (the settings stage
/// reads the variable: `commands::settings::Environment::fork_server`).
pub fn fork_server_enabled(no_fork_server: Option<&std::ffi::OsStr>) -> bool {
    no_fork_server.is_none_or(|value| value.is_empty() || value == "0")
}

pub(in crate::runner) fn note_path(path: PythonPath) {
    #[cfg(test)]
    USED_PATH.with(|used| used.set(Some(path)));
    #[cfg(not(test))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_forkserver_variable() {
        use std::ffi::OsStr;
        assert!(fork_server_enabled(None));
        assert!(fork_server_enabled(Some(OsStr::new(""))));
        assert!(fork_server_enabled(Some(OsStr::new("0"))));
        assert!(!fork_server_enabled(Some(OsStr::new("1"))));
        assert!(!fork_server_enabled(Some(OsStr::new("yes"))));
    }
}
