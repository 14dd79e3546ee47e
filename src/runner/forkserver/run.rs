//! One run in a process forked by a fork-server: the request, "ready", "go", the module process's
//! pid, its record (`RunSpec::pgid_file`) before "start", its status, the timeout kill of its process group, and the verdict.

use anyhow::Result;
use std::io;
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{Reply, Request, ServerConn};
use super::server::ForkServer;
use crate::runner::output::{Follower, Output};
use crate::runner::process::{kill_process_group, poll_until, process_gone};
use crate::runner::reason::{io_message, one_line, timeout_reason, Verdict};
use crate::runner::shim::{python_verdict, ShimRequest, ShimVerdict, MAX_REASON};
use crate::runner::spec::RunSpec;

/// How long the fork-server may take to answer before the run gives it up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a killed module process's status.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How a run offered to a fork-server went.
pub(in crate::runner) enum Forked {
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

/// Runs `main(args)` of `file` in a process forked by `server`; see the module comment of
/// `forkserver`.
pub(in crate::runner) fn run_forked(
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
    if let Err(err) = conn.send(&Request::Run(message)) {
        return fallback(
            format!("cannot send the request: {}", io_message(&err)),
            true,
        );
    }
    match conn.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT)) {
        Ok(Some(line)) => match Reply::parse(&line) {
            Reply::Ready => {}
            reply => {
                // An error is about this run's request; anything else is the server's fault.
                let trouble = !matches!(reply, Reply::Error(_));
                return fallback(format!("it said {}", one_line(&line, MAX_REASON)), trouble);
            }
        },
        Ok(None) => return fallback("it closed the connection".to_string(), true),
        Err(err) => return fallback(format!("no answer: {}", io_message(&err)), true),
    }
    let follower = Follower::start(output)?;
    let started = Instant::now();
    if let Err(err) = conn.send(&Request::Go) {
        // The module process is gone: it will not run anything.
        return fallback(format!("cannot send go: {}", io_message(&err)), true);
    }
    let pid = match conn.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT)) {
        Ok(Some(line)) => match Reply::parse(&line) {
            Reply::Pid(pid) => pid,
            // An error, or the end of the module process before it answered "go" with its pid
            // (it runs nothing before): nothing ran.
            Reply::Error(_) | Reply::Status(_) | Reply::BadStatus(_) => {
                return fallback(format!("it said {}", one_line(&line, MAX_REASON)), false)
            }
            Reply::Ready | Reply::Unknown(_) => {
                return Ok(Forked::Ran((
                    Verdict::Failure(format!(
                        "python fork-server said {} instead of the pid of main()'s process",
                        one_line(&line, 80)
                    )),
                    None,
                )))
            }
        },
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
    // The module process waits for "start": none of the module runs before its group is recorded.
    if let Some(p) = spec.pgid_file {
        crate::recover::record_process_group(p, pid.as_raw_nonzero().get());
    }
    if let Err(err) = conn.send(&Request::Start) {
        // The module process gets end of file (or a partial line) and exits: nothing ran.
        return fallback(format!("cannot send start: {}", io_message(&err)), true);
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
            Ok(Some(line)) => match Reply::parse(&line) {
                Reply::Status(status) => {
                    child.ended = true;
                    break ForkEnded::Exited(status);
                }
                _ => log::debug!("[{}] python fork-server said {line:?}", spec.module),
            },
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                // The server keeps the process unreaped until the connection closes, so the group
                // id is still its own.
                child.kill_group();
                let until = Instant::now() + KILL_WAIT;
                while let Ok(Some(line)) = child.conn.recv(Some(until)) {
                    if let Reply::Status(_) = Reply::parse(&line) {
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
        let gone = poll_until(deadline, || Ok(process_gone(pid).then_some(())))?;
        if gone.is_none() {
            kill_process_group(pid);
            ended = ForkEnded::TimedOut;
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

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if !self.ended {
            self.kill_group();
        }
    }
}
