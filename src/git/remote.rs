//! Remote access: callbacks that never prompt (an SSH agent or a credential helper, tried once),
//! libgit2's network timeouts, the deadline of the running sync, and asking a remote whether a
//! branch exists.

use anyhow::{anyhow, Context, Result};
use git2::{Cred, CredentialType, Direction, RemoteCallbacks};

/// Callbacks that never prompt: an SSH agent or a configured credential helper is tried once,
/// then the operation fails with a message saying so.
pub(super) fn callbacks<'a>(progress: bool) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0u32;
    cb.credentials(move |url, username, allowed| {
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str(&format!(
                "authentication failed for {url}; updater never prompts: provide credentials \
                 through an SSH agent or a git credential helper"
            )));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some(user) = username {
                return Cred::ssh_key_from_agent(user);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Ok(cfg) = git2::Config::open_default() {
                if let Ok(cred) = Cred::credential_helper(&cfg, url, username) {
                    return Ok(cred);
                }
            }
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(&format!(
            "{url} requires authentication and updater never prompts: provide credentials \
             through an SSH agent or a git credential helper"
        )))
    });
    // Past the sync's deadline, any transfer that still makes progress is stopped here.
    cb.sideband_progress(|_| !past_deadline());
    // Progress for people (`progress`); at -vv, what the transfer brought (`log` trace).
    let mut transfer = crate::progress::Transfer::new(progress);
    let mut told = false;
    cb.transfer_progress(move |p| {
        if past_deadline() {
            return false;
        }
        transfer.update(crate::progress::TransferStats {
            received_objects: p.received_objects(),
            total_objects: p.total_objects(),
            indexed_deltas: p.indexed_deltas(),
            total_deltas: p.total_deltas(),
            received_bytes: p.received_bytes(),
        });
        if !told
            && p.total_objects() > 0
            && p.received_objects() == p.total_objects()
            && p.indexed_deltas() == p.total_deltas()
        {
            told = true;
            log::trace!(
                "git: received {} objects ({} bytes; {} were local), {} deltas",
                p.received_objects(),
                p.received_bytes(),
                p.local_objects(),
                p.total_deltas()
            );
        }
        true
    });
    cb.update_tips(|name, old, new| {
        log::trace!("git: {name} {old} -> {new}");
        true
    });
    cb
}

thread_local! {
    /// The deadline of the sync running on this thread (see [`super::sync`]).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Arms the deadline of the sync running on this (worker) thread.
pub(super) fn set_deadline(deadline: std::time::Instant) {
    DEADLINE.with(|d| d.set(Some(deadline)));
}

fn past_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|t| std::time::Instant::now() >= t))
}

/// Sets libgit2's network timeouts once, so a dead server cannot hang a timer-driven run.
/// (Sparing OpenSSL the CA bundle for a non-TLS remote is the settings stage's job, before
/// libgit2 starts: see `commands::settings::prepare_git`.)
pub(super) fn set_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // At -vv (or RUST_LOG=updater::git::libgit2=trace), libgit2's own trace goes to the log.
        if log::log_enabled!(target: LIBGIT2_TARGET, log::Level::Trace) {
            let _ = git2::trace_set(git2::TraceLevel::Trace, libgit2_trace);
        }
        // SAFETY: these only set global libgit2 options, before any network operation starts
        // on another thread; the values are plain integers.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(300_000);
        }
    });
}

/// The log target of libgit2's own trace messages.
const LIBGIT2_TARGET: &str = "updater::git::libgit2";

fn libgit2_trace(level: git2::TraceLevel, message: &[u8]) {
    log::trace!(target: LIBGIT2_TARGET, "libgit2 {level:?}: {}", String::from_utf8_lossy(message));
}

pub(super) fn timeout_error(url: &str, timeout: std::time::Duration) -> anyhow::Error {
    anyhow!(
        "git work with {url} did not finish within {} s (--git-timeout); giving up",
        timeout.as_secs()
    )
}

/// Whether `branch` exists on the remote `url` (`git ls-remote url refs/heads/<branch>`), asked
/// over one connection with the same never-prompting credentials and timeouts as a sync. An
/// unreachable remote is an error, not a "no". A relative path is taken from the working
/// directory (libgit2 opens it as given), as the settings stage does for `--repo-url`.
pub fn remote_has_branch(url: &str, branch: &str) -> Result<bool> {
    set_timeouts();
    let mut remote = git2::Remote::create_detached(url)
        .with_context(|| format!("reading the repository URL {url}"))?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks(false)), None)
        .with_context(|| format!("connecting to {url}"))?;
    let wanted = format!("refs/heads/{branch}");
    let heads = conn
        .list()
        .with_context(|| format!("listing the branches of {url}"))?;
    Ok(heads.iter().any(|h| h.name() == wanted))
}
