//! The Python fork-server: warm interpreters that fork `main(args)` module processes.
//!
//! One warm interpreter per (interpreter, parent directory of the module, base environment),
//! started by the first `main(args)` run that can use it and kept for the life of the process. It
//! runs `server.py`, which documents the Python side and the protocol: one unix-socket
//! connection per run, a JSON request line, then "ready" / "go" / "pid N" / "start" / "status S".
//!
//! The server keeps module processes forked ahead of their runs (its children, each in a process
//! group of its own). One of them accepts the run's connection, sets itself up as a fresh
//! interpreter would be, and answers "ready"; on "go" it answers its pid, and on "start" (sent once the runner recorded its
//! process group, `RunSpec::pgid_file`) it runs the module, and when it ends the
//! server reports its wait status. The module process opens the module's log file (for appending)
//! as its stdout and stderr, and the run's verdict file, exactly as a fresh interpreter would, so its
//! output and verdict reach the runner the same way. Until "start"
//! nothing of the module has run: any trouble up to there means a fresh interpreter instead. After
//! "go", the run is the fork-server's: the runner enforces the timeout by killing the module
//! process's group, which the server keeps unreaped (waitid WNOWAIT) until the runner closes the
//! connection, so the group id cannot have been reused. If the server dies meanwhile, the run ends
//! when the module process is gone (within the timeout), and the shim's verdict file decides.
//!
//! The server exits when this process goes away: its stdout is a pipe whose read end (close-on-exec,
//! so no program started here inherits it) only this process holds, and it polls for that reader to
//! disappear. Module processes close every descriptor they do not need (the listening socket, the
//! server's connections) before the module runs.
//!
//! The files: [`key`] decides whether a run may use a fork-server and which one, [`registry`] holds
//! the servers, [`server`] starts and ends one, [`protocol`] is the typed socket protocol, and
//! [`run`] is one run through a server.

mod key;
mod protocol;
mod registry;
mod run;
mod server;

pub use key::{fork_server_enabled, NO_FORK_SERVER_VAR};
pub(super) use key::{fork_server_wanted, modules_dir_key, note_path, server_key, PythonPath};
#[cfg(test)]
pub(super) use key::{FORCED_PATH, USED_PATH};
pub(super) use registry::{Registry, SERVERS};
pub(super) use run::{run_forked, Forked};
#[cfg(test)]
pub(super) use server::lock;
#[cfg(test)]
pub(super) use server::ForkServer;
