//! All git access: keeping the local clone of the updates repository identical to the remote
//! branch (clone, or fetch and hard-reset; never merge), asking the remote for its default
//! branch, and never prompting for credentials or host keys.
//!
//! - `bundle`: offline bundles (`--repo-url PATH.bundle`, git bundle v2/v3): the header,
//!   the prerequisites, and indexing the pack into the clone; then the same checks as a fetch.
//! - `clone`: the clone we manage: marking and adopting it, refusing a foreign checkout,
//!   cloning again when broken, clearing stale lock files.
//! - `fetch`: one connection to learn the tip, a (shallow, deepened on demand) fetch, the
//!   trust checks, and the hard reset and clean of the work tree (on a no-op, only outside
//!   `modules/`; `verify_worktree` checks the rest before anything is installed from it).
//! - `remote`: remote access: never-prompting credentials, libgit2's timeouts, the sync's
//!   deadline, and `ls-remote` for one branch ([`remote_has_branch`]).
//! - `tree`: reading the synced commit's `modules/` from tree objects (for the plan).
//! - `url`: what a repository URL names (a path, scp-like ssh, a network URL).
//!
//! This module reads nothing from the process environment: the settings stage
//! (`commands::settings`) resolves the URL against the working directory and prepares the
//! process for libgit2 before the first sync.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

mod bundle;
mod clone;
mod fetch;
mod remote;
mod tree;
mod url;

pub use crate::trust::policy::TrustPolicy;
pub use bundle::{bundle_path, MAX_HEADER as MAX_BUNDLE_HEADER};
pub use clone::{check_clone, is_managed, refuse_foreign_clone, MANAGED_KEY};
pub use fetch::verify_worktree;
pub use remote::remote_has_branch;
pub use tree::{Blob, CommitTree, EntryKind, IndexEntry, ModulesDir, TreeEntry};
pub use url::{normalize_url, uses_tls};

/// The name of the remote in the local clone.
const REMOTE: &str = "origin";

/// The state of the local clone after a successful sync.
#[derive(Debug, Clone)]
pub struct SyncedRepo {
    /// The clone's work tree.
    pub path: PathBuf,
    pub url: String,
    pub branch: String,
    /// The commit the work tree now holds (hex).
    pub commit: String,
    /// Whether any objects had to be fetched (false when the remote tip was already here).
    pub fetched: bool,
    /// Whether the whole work tree is known to be exactly `commit`. False after a no-op sync,
    /// which checks only what lies outside `modules/`: call [`verify_worktree`] before copying
    /// anything from `modules/` (the plan reads the commit's trees, never the work tree).
    pub worktree_verified: bool,
}

/// Options for [`sync`].
#[derive(Debug, Default, Clone)]
pub struct SyncOptions {
    /// Show transfer progress on stderr.
    pub progress: bool,
    /// Checks a new remote tip must pass before the work tree moves to it (SPEC §9).
    pub trust: TrustPolicy,
    /// Whether `local` is the default clone, `<modules-path>/.updater/repo`: updater's own, so
    /// it is marked when unmarked and cloned again when broken. Any other non-empty path must
    /// carry updater's mark ([`MANAGED_KEY`]) or is refused.
    pub default_clone: bool,
    /// The total time the sync may take ([`DEFAULT_TIMEOUT`] when None): a server that trickles
    /// bytes cannot keep a run (and its lock) alive forever.
    pub timeout: Option<std::time::Duration>,
}

/// The default total time of a sync's git work (`--git-timeout`).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Brings the clone at `local` to the tip of `branch` (or the remote's default branch) of `url`:
/// clones when absent, else fetches and hard-resets, removing stray edits and untracked files.
/// When the clone already is at the tip, only what lies outside `modules/` is compared with the
/// commit (and reset if it differs); `modules/` is left for [`verify_worktree`], which the
/// caller runs before copying anything from it (`SyncedRepo::worktree_verified`).
/// A clone that is not a usable repository is cloned again (with a warning); a directory that
/// is not a clone at all is refused, never deleted.
///
/// The whole sync runs on a worker thread under a total deadline (`opts.timeout`): past it, the
/// transfer callbacks stop the transfer, and if libgit2 is blocked where no callback runs (a
/// server trickling its ref advertisement), the sync returns an error naming the remote at once;
/// the caller then ends the run (the lock is released when the process exits, the worker with
/// it), and the next run's repair removes a half-made clone.
pub fn sync(
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
) -> Result<SyncedRepo> {
    limit_pack_windows();
    let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = std::time::Instant::now() + timeout;
    let (tx, rx) = std::sync::mpsc::channel();
    let (url_owned, branch_owned, local_owned) = (
        url.to_string(),
        branch.map(str::to_string),
        local.to_path_buf(),
    );
    let opts_owned = opts.clone();
    std::thread::Builder::new()
        .name("git-sync".to_string())
        .spawn(move || {
            let result = clone::sync_now(
                &url_owned,
                branch_owned.as_deref(),
                &local_owned,
                &opts_owned,
                deadline,
            );
            // A transfer stopped by the deadline fails with libgit2's own words: say why.
            let result = result.map_err(|e| {
                if std::time::Instant::now() >= deadline {
                    e.context(remote::timeout_error(&url_owned, timeout).to_string())
                } else {
                    e
                }
            });
            let _ = tx.send(result);
        })
        .context("starting the git worker thread")?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(remote::timeout_error(url, timeout)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            bail!("the git worker for {url} ended without an answer")
        }
    }
}

/// How much of the pack files libgit2 keeps mapped at once (its default is 8 GiB, in windows of
/// 1 GiB): a first clone of a 60 MB repository would otherwise keep the whole pack resident
/// while it checks out every blob (47 MiB peak RSS against 18 MiB with these limits, at the
/// same speed). Windows of 1 MiB, at most 4 MiB mapped in all.
const PACK_WINDOW: usize = 1 << 20;
const PACK_MAPPED_LIMIT: usize = 4 << 20;

/// Sets libgit2's pack window limits, once per process, before the first sync.
fn limit_pack_windows() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: these write libgit2 globals without synchronisation. This runs once, on the
        // thread that starts the first sync, before that sync's worker thread exists; no other
        // thread of this process uses libgit2 at that point (all git access is in this
        // module, and a run syncs once).
        let set = unsafe {
            git2::opts::set_mwindow_size(PACK_WINDOW)
                .and_then(|()| git2::opts::set_mwindow_mapped_limit(PACK_MAPPED_LIMIT))
        };
        if let Err(e) = set {
            log::debug!("could not limit libgit2's pack windows: {e}");
        }
    });
}
