//! The start gate of an executable whose process group is recorded (`RunSpec::pgid_file`): the
//! started process waits, between its fork and its exec, until the runner has recorded its process
//! group, so that none of the program's own code runs unrecorded (a SIGKILLed updater in that
//! window would leave a group the next run cannot kill).
//!
//! `std`'s `spawn` returns only once the child has exec'd, so the record cannot be made after it
//! returns. Instead the child (in `pre_exec`, after `std` made its process group) writes its pid on
//! one pipe and blocks reading another; a thread of the runner reads the pid, records the group
//! (`recover::record_process_group`) and answers one byte. The child then execs. End of file on its
//! pipe, or a new parent (updater died while another of its children still held the pipe), makes
//! the child fail its start (`_exit` by `std`) without running the program. The child uses only
//! async-signal-safe calls (getpid, getppid, close, write, poll, read).
//!
//! Gated starts are one at a time ([`GATED_STARTS`]): a child forked while another waits at its
//! gate inherits that one's pipe ends until it execs; two waiting children would hold each other's
//! and only notice a dead updater at their next parent check, holding its lock meanwhile.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{getpid, getppid, Pid};

/// How often a gated child that has no answer yet checks that updater is still its parent.
const PARENT_CHECK: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 200_000_000,
};

/// Held from a gate's installation until its command is spawned: one gated start at a time.
static GATED_STARTS: Mutex<()> = Mutex::new(());

/// The runner's side of a gate installed on a command; drop it once the command is spawned (or
/// could not be), which lets its recording thread end.
pub(super) struct Gate {
    /// The child's ends of the two pipes (the parent's copies, closed on drop).
    _child_ends: (OwnedFd, OwnedFd),
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Gate {
    /// Makes `command` wait before its exec until its process group (the child's pid, as
    /// `process_group(0)` makes it) is recorded in `record`.
    pub(super) fn install(command: &mut Command, record: PathBuf) -> io::Result<Gate> {
        // A panic elsewhere while holding it leaves nothing to repair: the lock guards no data.
        let one_at_a_time = GATED_STARTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pid_read, pid_write) = pipe_with(PipeFlags::CLOEXEC)?;
        let (go_read, go_write) = pipe_with(PipeFlags::CLOEXEC)?;
        let parent = getpid();
        let (child_write, child_read) = (pid_write.as_raw_fd(), go_read.as_raw_fd());
        let parent_ends = (pid_read.as_raw_fd(), go_write.as_raw_fd());
        // SAFETY: the hook runs in the forked child, where only async-signal-safe calls are
        // allowed: `wait_for_record` makes raw system calls only and allocates nothing. The two
        // descriptors stay open in the parent (in the returned `Gate`) until spawn has returned,
        // so the child inherits them; the parent's ends stay open in the recording thread until
        // then too (it ends only at end of file on `pid_read`, which `Gate` holds open).
        unsafe {
            command.pre_exec(move || {
                // The child's copies of the parent's ends: without them, end of file on its pipe
                // tells the child at once that updater died (a blocked child must not hold the
                // run's lock or anything else for long).
                rustix::io::close(parent_ends.0);
                rustix::io::close(parent_ends.1);
                wait_for_record(parent, child_write, child_read)
            });
        }
        thread::Builder::new()
            .name("updater-gate".to_string())
            .spawn(move || record_each(File::from(pid_read), File::from(go_write), &record))?;
        Ok(Gate {
            _child_ends: (pid_write, go_read),
            _one_at_a_time: one_at_a_time,
        })
    }
}

/// The runner's thread: for each pid a gated child sends (one per start attempt), records its
/// group, then lets it go. Ends at end of file (every copy of the child's end closed) or on error
/// (then the child gets end of file and does not start).
fn record_each(mut pids: File, mut go: File, record: &std::path::Path) {
    let mut raw = [0u8; 4];
    while pids.read_exact(&mut raw).is_ok() {
        crate::recover::record_process_group(record, i32::from_ne_bytes(raw));
        if go.write_all(b"g").is_err() {
            return;
        }
    }
}

/// The child's side (between fork and exec): sends its pid, waits for the answer.
fn wait_for_record(parent: Pid, pid_write: RawFd, go_read: RawFd) -> io::Result<()> {
    // SAFETY: both descriptors were inherited open from the parent and nothing else in this
    // single-threaded child closes them before exec.
    let (pid_write, go_read) = unsafe {
        (
            BorrowedFd::borrow_raw(pid_write),
            BorrowedFd::borrow_raw(go_read),
        )
    };
    let pid = getpid().as_raw_nonzero().get().to_ne_bytes();
    loop {
        match rustix::io::write(pid_write, &pid) {
            Ok(4) => break,
            Err(Errno::INTR) => continue,
            // A pipe takes 4 bytes at once (PIPE_BUF); anything else is a failure.
            Ok(_) => return Err(Errno::PIPE.into()),
            Err(err) => return Err(err.into()),
        }
    }
    loop {
        let mut fds = [PollFd::new(&go_read, PollFlags::IN)];
        match poll(&mut fds, Some(&PARENT_CHECK)) {
            Ok(0) => {
                if getppid() != Some(parent) {
                    return Err(Errno::PIPE.into());
                }
            }
            Ok(_) => {
                let mut byte = [0u8; 1];
                match rustix::io::read(go_read, &mut byte) {
                    Ok(1) => return Ok(()),
                    Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                    // End of file: the runner is gone or gave up.
                    Ok(_) => return Err(Errno::PIPE.into()),
                    Err(err) => return Err(err.into()),
                }
            }
            Err(Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}
