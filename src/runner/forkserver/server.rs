//! One running fork-server process (`server.py`): its start and "ready" handshake, its liveness,
//! and its end.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;
#[cfg(test)]
use std::{fs, process::ExitStatus, time::Instant};
use tempfile::TempDir;

use super::key::ServerKey;
use super::protocol::Reply;
use crate::runner::process::spawn;
use crate::runner::reason::{io_message, one_line, short_duration, status_reason};
use crate::runner::shim::PYTHON_SHIM;

/// The Python side of the fork-server.
const FORK_SERVER: &str = include_str!("server.py");

/// How long a fork-server may take to start (a pyenv shim is slow; a busy machine slower).
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

/// Locks `mutex`, also after a panic elsewhere held it.
pub(in crate::runner) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent: a panic elsewhere changes nothing.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fork-server.
pub(in crate::runner) struct ForkServer {
    process: Mutex<Child>,
    pub(in crate::runner) pid: u32,
    /// The read end of the server's stdout, not read after "ready": closing it tells the server
    /// to exit.
    stdout: Mutex<Option<BufReader<ChildStdout>>>,
    /// Private (0700): the socket; removed when dropped.
    pub(in crate::runner) _dir: TempDir,
    pub(in crate::runner) socket: PathBuf,
    /// Runs in a row that could not use it.
    pub(in crate::runner) troubles: AtomicU32,
}

impl ForkServer {
    pub(in crate::runner) fn start(key: &ServerKey) -> Result<ForkServer> {
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
            Ok((Ok(line), reader))
                if line.strip_suffix('\n').map(Reply::parse) == Some(Reply::Ready) =>
            {
                Ok(reader)
            }
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
    pub(in crate::runner) fn exited(&self) -> bool {
        !matches!(lock(&self.process).try_wait(), Ok(None))
    }

    /// What this process's descriptor on the server's stdout pipe is (`pipe:[N]`).
    #[cfg(test)]
    pub(in crate::runner) fn pipes(&self) -> Vec<String> {
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
    pub(in crate::runner) fn close_and_wait(&self, within: Duration) -> Option<ExitStatus> {
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
