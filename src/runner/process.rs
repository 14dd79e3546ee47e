//! Process supervision (SPEC §5): starts a program in its own process group with a clean
//! environment, stdin from `/dev/null` and its output on the module's log file, waits for it under
//! the timeout, and kills the whole group when it expires. The one process-group kill
//! ([`kill_process_group`]) and the one wait-with-deadline loop ([`poll_until`]) of the runner.

use anyhow::{Context, Result};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::output::{Follower, Output};
use super::reason::io_message;
use super::spec::{RunSpec, DEFAULT_PATH, PASSED_ENV};

/// Most retries of a start that fails with "Text file busy": the file was just written, and a child
/// forked meanwhile by another thread still holds a write descriptor to it until that child execs.
const START_RETRIES: u32 = 20;

/// How a child process ended.
pub(super) enum Ended {
    /// It could not be started; the reason says why.
    NotStarted(String),
    /// The timeout expired; its process group was killed and it was reaped.
    TimedOut,
    Exited(ExitStatus),
}

/// Starts `command` under the SPEC §5 rules with the environment `env` plus `spec.env`, its stdout
/// and stderr on the module's log file (followed into the run's log), and waits for it (or kills its
/// process group at the timeout).
pub(super) fn run_process(
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

    // The program's own code must not run before its process group is recorded.
    let gate = match spec.pgid_file {
        Some(record) => Some(
            Gate::install(&mut command, record.to_path_buf())
                .context("cannot set up the start of a program")?,
        ),
        None => None,
    };
    let follower = Follower::start(output)?;
    let spawned = spawn(&mut command);
    drop(gate);
    let child = match spawned {
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
    log::trace!(
        "process: {} started as pid {} (its own process group)",
        Path::new(&program).display(),
        child.id()
    );
    // Only the child holds the log file as its output now.
    drop(command);
    // From here on the guard kills and reaps the child on every early return.
    let mut child = Reaper::new(child);

    let deadline = started.checked_add(spec.timeout);
    let waited = wait_exit(&mut child.child, deadline)
        .with_context(|| format!("cannot wait for {}", Path::new(&program).display()))?;
    let ended = match waited {
        Some(status) => {
            child.reaped = true;
            Ended::Exited(status)
        }
        None => {
            // Not reaped yet, so the group id cannot have been reused.
            child.kill_group();
            child.child.wait().with_context(|| {
                format!("cannot reap timed-out {}", Path::new(&program).display())
            })?;
            child.reaped = true;
            Ended::TimedOut
        }
    };
    // What the program wrote is in the file: echo the rest. Later writes (of a background
    // process it left) stay in the file only.
    follower.finish();
    Ok(ended)
}

/// Starts `command`, retrying for a while on "Text file busy" (see [`START_RETRIES`]).
pub(super) fn spawn(command: &mut Command) -> io::Result<Child> {
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
pub(super) fn base_env() -> Vec<(OsString, OsString)> {
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

/// The variables every Python program gets: [`base_env`] with `PATH` = [`DEFAULT_PATH`] and
/// `PYTHONUNBUFFERED=1` (SPEC §10).
pub(super) fn python_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<_> = base_env()
        .into_iter()
        .filter(|(name, _)| name != "PATH" && name != "PYTHONUNBUFFERED")
        .collect();
    env.push((OsString::from("PATH"), OsString::from(DEFAULT_PATH)));
    env.push((OsString::from("PYTHONUNBUFFERED"), OsString::from("1")));
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

    /// SIGKILLs the child's process group (its id is the child's pid), or the child alone when
    /// the group cannot be signalled. Only call while the child is unreaped, so the id still names
    /// this group.
    fn kill_group(&mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if !pid.is_some_and(kill_process_group) {
            let _ = self.child.kill();
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

/// Whether `pid` no longer names a live process (gone, or a zombie waiting to be reaped).
pub(super) fn process_gone(pid: rustix::process::Pid) -> bool {
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

/// SIGKILLs the process group `pgid` (a group leader's pid, still unreaped or known to be ours).
/// Returns whether the group is dead or signalled: `false` for pid 1 (which would mean "every
/// process we may signal", never sent) and when the signal could not be sent (logged).
pub(super) fn kill_process_group(pgid: rustix::process::Pid) -> bool {
    if pgid.is_init() {
        return false;
    }
    match rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL) {
        Ok(()) => true,
        Err(rustix::io::Errno::SRCH) => true,
        Err(err) => {
            log::warn!("cannot kill process group {}: {err}", pgid.as_raw_nonzero());
            false
        }
    }
}

/// Waits until `child` exits (then its status; it is reaped) or `deadline` has passed (then
/// `None`; it is not reaped, so its process group id cannot have been reused). Sleeps in `poll`
/// on a pidfd, so the end is seen at once; where pidfds are missing (Linux before 5.3), falls
/// back to [`poll_until`].
pub(super) fn wait_exit(
    child: &mut Child,
    deadline: Option<Instant>,
) -> Result<Option<ExitStatus>> {
    let pidfd = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
    let Some(pidfd) = pidfd else {
        return poll_until(deadline, || Ok(child.try_wait()?));
    };
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = match deadline {
            None => None,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                Some(deadline - now)
            }
        };
        let timeout = left.and_then(|d| rustix::event::Timespec::try_from(d).ok());
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return poll_until(deadline, || Ok(child.try_wait()?)),
        }
    }
}

/// Calls `check` until it returns `Some` (then that) or `deadline` has passed (then `None`),
/// pausing between calls (1 ms, doubling up to 50 ms, never past the deadline). `None` as the
/// deadline waits for as long as it takes. The runner's one wait-with-deadline loop.
pub(super) fn poll_until<T>(
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(found) = check()? {
            return Ok(Some(found));
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(None);
        }
        let left = deadline.map_or(pause, |deadline| deadline - now);
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn kill_process_group_kills_the_leader_and_what_it_started() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pid_file = tmp.path().join("pid");
        let mut leader = Command::new("/bin/sh")
            .arg("-c")
            .arg("sleep 1000 & echo $! > \"$1\"; wait")
            .arg("sh")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let grandchild = poll_until(Some(Instant::now() + Duration::from_secs(30)), || {
            Ok(fs::read_to_string(&pid_file)
                .ok()
                .filter(|text| text.ends_with('\n'))
                .and_then(|text| text.trim().parse::<i32>().ok()))
        })
        .expect("poll")
        .and_then(rustix::process::Pid::from_raw)
        .expect("the background sleep's pid");
        let pgid = rustix::process::Pid::from_child(&leader);

        assert!(kill_process_group(pgid));
        let status = leader.wait().expect("reap the leader");
        assert_eq!(status.signal(), Some(9), "{status:?}");
        let gone = poll_until(Some(Instant::now() + Duration::from_secs(30)), || {
            Ok(process_gone(grandchild).then_some(()))
        })
        .expect("poll");
        if gone.is_none() {
            let _ = rustix::process::kill_process(grandchild, rustix::process::Signal::KILL);
        }
        assert!(gone.is_some(), "the group's background process survived");
        // The group is gone: killing it again is no error.
        assert!(kill_process_group(pgid));
    }

    #[test]
    fn kill_process_group_never_signals_pid_1() {
        // killpg(1) would reach every process we may signal: refused before any signal is sent.
        let init = rustix::process::Pid::from_raw(1).expect("pid 1");
        assert!(!kill_process_group(init));
    }

    #[test]
    fn wait_exit_returns_the_status_or_none_at_the_deadline_without_reaping() {
        let mut done = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh");
        let status = wait_exit(&mut done, None).expect("wait").expect("a status");
        assert_eq!(status.code(), Some(3));

        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = sleeper.id();
        let waited = wait_exit(
            &mut sleeper,
            Some(Instant::now() + Duration::from_millis(20)),
        )
        .expect("wait");
        assert!(waited.is_none());
        // Not reaped: the process is still there to be killed and reaped by its owner.
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        sleeper.kill().expect("kill");
        let status = wait_exit(&mut sleeper, None)
            .expect("wait")
            .expect("a status");
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn poll_until_returns_the_first_find_or_none_at_the_deadline() {
        let mut calls = 0;
        let found = poll_until(None, || {
            calls += 1;
            Ok((calls == 3).then_some("third"))
        })
        .expect("poll");
        assert_eq!((found, calls), (Some("third"), 3));

        let mut calls = 0;
        let found: Option<()> = poll_until(Some(Instant::now()), || {
            calls += 1;
            Ok(None)
        })
        .expect("poll");
        assert_eq!((found, calls), (None, 1), "checked once, then the deadline");

        let err =
            poll_until::<()>(None, || anyhow::bail!("cannot wait")).expect_err("the check's error");
        assert_eq!(err.to_string(), "cannot wait");
    }
}
