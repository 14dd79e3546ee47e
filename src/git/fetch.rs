//! Fetch and reset: one connection learns the branch and its tip, a fetch (shallow on a first
//! network clone, deepened when the rewind check needs history) brings the objects, the trust
//! policy checks the tip, and the work tree is forced to match it exactly.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use git2::{
    build::CheckoutBuilder, AutotagOption, Direction, ErrorClass, FetchOptions, Oid, Repository,
    ResetType,
};

use super::remote::callbacks;
use super::url::supports_shallow;
use super::{SyncOptions, SyncedRepo, REMOTE};
use crate::fs;
use crate::trust::policy::{descends_from, rewind_error};

/// Why syncing an existing clone failed: the remote's fault (report it) or the clone's (re-clone).
pub(super) enum SyncFailure {
    Remote(anyhow::Error),
    Local(anyhow::Error),
}

fn is_remote_error(e: &git2::Error) -> bool {
    matches!(
        e.class(),
        ErrorClass::Net
            | ErrorClass::Ssh
            | ErrorClass::Http
            | ErrorClass::Ssl
            | ErrorClass::Callback
            | ErrorClass::Os
    ) || e.code() == git2::ErrorCode::Auth
        || e.code() == git2::ErrorCode::Certificate
}

pub(super) fn fetch_and_reset(
    repo: &Repository,
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
) -> std::result::Result<SyncedRepo, SyncFailure> {
    let remote_err = |e: git2::Error, what: String| SyncFailure::Remote(anyhow!(e).context(what));
    if let Some(path) = super::bundle::bundle_path(url) {
        let (branch, tip, fetched) =
            super::bundle::load(repo, &path, branch).map_err(SyncFailure::Remote)?;
        // A bundle has no more history to give: there is nothing to deepen.
        let mut no_deepen = |_: i32| Ok(());
        return check_and_reset(repo, url, branch, tip, fetched, local, opts, &mut no_deepen);
    }
    let mut remote = repo.find_remote(REMOTE).map_err(|e| {
        SyncFailure::Local(anyhow!(e).context(format!("reading the remote of {}", local.display())))
    })?;

    // One connection answers both questions: which branch, and where its tip is.
    let (branch, tip) = {
        let conn = remote
            .connect_auth(Direction::Fetch, Some(callbacks(false)), None)
            .map_err(|e| remote_err(e, format!("connecting to {url}")))?;
        let listed = conn
            .list()
            .map_err(|e| remote_err(e, format!("listing the branches of {url}")))?;
        if !listed.iter().any(|h| h.name().starts_with("refs/heads/")) {
            return Err(SyncFailure::Remote(anyhow!(
                "the repository {url} has no commits (no branch{} exists yet)",
                branch.map(|b| format!(" '{b}'")).unwrap_or_default()
            )));
        }
        let branch = match branch {
            Some(b) => b.to_string(),
            None => {
                let head = conn.default_branch().map_err(|e| {
                    remote_err(
                        e,
                        format!("asking {url} for its default branch (pass --branch)"),
                    )
                })?;
                let head = head.as_str().unwrap_or_default().to_string();
                head.strip_prefix("refs/heads/")
                    .unwrap_or(&head)
                    .to_string()
            }
        };
        let wanted = format!("refs/heads/{branch}");
        let heads = conn
            .list()
            .map_err(|e| remote_err(e, format!("listing the branches of {url}")))?;
        let tip = heads.iter().find(|h| h.name() == wanted).map(|h| h.oid());
        match tip {
            Some(oid) => (branch, oid),
            None => {
                let mut names: Vec<&str> = heads
                    .iter()
                    .filter_map(|h| h.name().strip_prefix("refs/heads/"))
                    .collect();
                names.sort_unstable();
                names.dedup();
                return Err(SyncFailure::Remote(if names.is_empty() {
                    anyhow!("branch '{branch}' not found in {url}: the repository has no branches")
                } else {
                    anyhow!(
                        "branch '{branch}' not found in {url} (it has: {})",
                        names.join(", ")
                    )
                }));
            }
        }
    };

    let tracking = format!("refs/remotes/{REMOTE}/{branch}");
    let refspec = format!("+refs/heads/{branch}:{tracking}");
    let fetch = |remote: &mut git2::Remote<'_>, depth: i32| {
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(opts.progress));
        fo.download_tags(AutotagOption::None);
        if depth > 0 {
            fo.depth(depth);
        }
        remote
            .fetch(&[&refspec], Some(&mut fo), Some("updater: fetch"))
            .map_err(|e| {
                let what = format!("fetching branch '{branch}' from {url}");
                if is_remote_error(&e) {
                    remote_err(e, what)
                } else {
                    SyncFailure::Local(anyhow!(e).context(what))
                }
            })
    };
    let have_tip = repo.find_commit(tip).is_ok();
    log::trace!(
        "git: {url} refs/heads/{branch} is at {tip}; {}",
        if have_tip {
            "the clone has it, nothing to fetch"
        } else {
            "fetching it"
        }
    );
    let fetched = !have_tip;
    if !have_tip {
        // A first clone over the network is shallow: only the tip's objects are transferred.
        // Later fetches negotiate from what is here, so they transfer only new objects.
        let fresh = repo.head().is_err();
        let depth = if fresh && supports_shallow(url) { 1 } else { 0 };
        fetch(&mut remote, depth)?;
    }
    let mut deepen = |depth: i32| fetch(&mut remote, depth);
    check_and_reset(
        repo,
        url,
        branch.clone(),
        tip,
        fetched,
        local,
        opts,
        &mut deepen,
    )
}

/// After the objects are here (by a fetch or from a bundle): the trust checks on `tip`, then
/// the reset. `deepen(depth)` deepens a shallow clone for the rewind check.
#[allow(clippy::too_many_arguments)]
fn check_and_reset(
    repo: &Repository,
    url: &str,
    branch: String,
    tip: Oid,
    fetched: bool,
    local: &Path,
    opts: &SyncOptions,
    deepen_to: &mut dyn FnMut(i32) -> std::result::Result<(), SyncFailure>,
) -> std::result::Result<SyncedRepo, SyncFailure> {
    let tracking = format!("refs/remotes/{REMOTE}/{branch}");
    opts.trust
        .check_signature(repo, tip)
        .map_err(SyncFailure::Remote)?;
    if let Some(last) = opts.trust.rewind_base().map_err(SyncFailure::Local)? {
        // In a shallow clone the last applied commit may lie beyond the boundary: deepen
        // until it is found or the history is complete.
        let mut deepen = [64, 4096, i32::MAX].into_iter();
        loop {
            match descends_from(repo, tip, last).map_err(SyncFailure::Local)? {
                true => break,
                false if repo.is_shallow() => {
                    match deepen.next() {
                        Some(depth) => {
                            log::debug!("deepening the shallow clone to {depth} commits for the rewind check");
                            deepen_to(depth)?;
                        }
                        None => return Err(SyncFailure::Remote(rewind_error(tip, last))),
                    }
                }
                false => return Err(SyncFailure::Remote(rewind_error(tip, last))),
            }
        }
    }
    let worktree_verified = reset_to(repo, &branch, &tracking, tip).map_err(|e| {
        SyncFailure::Local(e.context(format!("resetting {} to {tip}", local.display())))
    })?;
    Ok(SyncedRepo {
        path: local.to_path_buf(),
        url: url.to_string(),
        branch,
        commit: tip.to_string(),
        fetched,
        worktree_verified,
    })
}

/// Points the tracking ref and a local branch at `tip`, and forces the work tree to match it
/// exactly: stray edits are undone, untracked and ignored files removed. Returns whether the
/// whole work tree is known to match; false only on the no-op fast path, where everything but
/// `modules/` was checked (see [`verify_worktree`]).
fn reset_to(repo: &Repository, branch: &str, tracking: &str, tip: Oid) -> Result<bool> {
    let local_ref = format!("refs/heads/{branch}");
    // The common no-op: HEAD already at the tip. Everything outside `modules/` (the framework
    // files, the global index: a handful of entries) is checked here with a status walk limited
    // to them; `modules/` is planned from the commit's tree objects and checked only before
    // anything is copied from it (`verify_worktree`), so a no-op does not stat every file of
    // every module.
    let at_tip = repo
        .head()
        .ok()
        .filter(|h| h.name().ok() == Some(local_ref.as_str()))
        .and_then(|h| h.target())
        == Some(tip);
    if at_tip
        && repo.find_reference(tracking).ok().and_then(|r| r.target()) == Some(tip)
        && root_is_clean(repo, tip).unwrap_or(false)
    {
        return Ok(false);
    }
    force_reset(repo, branch, tracking, tip)?;
    Ok(true)
}

fn force_reset(repo: &Repository, branch: &str, tracking: &str, tip: Oid) -> Result<()> {
    let local_ref = format!("refs/heads/{branch}");
    let commit = repo
        .find_commit(tip)
        .context("finding the fetched commit")?;
    repo.reference(tracking, tip, true, "updater: tip")
        .context("updating the tracking branch")?;
    repo.reference(&local_ref, tip, true, "updater: reset")
        .context("updating the local branch")?;
    repo.set_head(&local_ref).context("updating HEAD")?;
    match repo.index() {
        Ok(mut index) if index_hides_edits(repo) => {
            // The checkout would leave those files as they are: start from an empty index,
            // so every file is written from the commit.
            index.clear().context("clearing the clone's index")?;
            index.write().context("writing the clone's index")?;
        }
        Ok(_) => {}
        Err(e) => {
            // Only a cache of the work tree (the commit is in the objects): rebuilt by the
            // checkout below. Kept, every run would fail here.
            let file = repo.path().join("index");
            log::debug!(
                "the clone's index {} is unreadable ({e}); rebuilding it",
                file.display()
            );
            fs::remove_all(&file)?;
        }
    }
    let mut co = CheckoutBuilder::new();
    co.force().remove_untracked(true).remove_ignored(true);
    repo.reset(commit.as_object(), ResetType::Hard, Some(&mut co))
        .context("checking out the work tree")?;
    clean_untracked(repo)
}

/// Whether the work tree outside `modules/` is exactly `tip`'s: every directory holds exactly
/// the names its tree has (no untracked or ignored file), and every file has its blob's id,
/// executable bit and kind. Compares against the commit's objects directly, without loading
/// the clone's index (which lists every file of every module).
fn root_is_clean(repo: &Repository, tip: Oid) -> Result<bool> {
    let Some(workdir) = repo.workdir() else {
        return Ok(false);
    };
    let tree = repo.find_commit(tip)?.tree()?;
    dir_matches(repo, &tree, workdir, true)
}

fn dir_matches(repo: &Repository, tree: &git2::Tree<'_>, dir: &Path, top: bool) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let names: std::collections::BTreeSet<Vec<u8>> =
        tree.iter().map(|e| e.name_bytes().to_vec()).collect();
    for name in fs::list_dir(dir)? {
        let name = name.as_bytes();
        if top && name == b".git" {
            continue;
        }
        if !names.contains(name) {
            return Ok(false);
        }
    }
    for entry in tree.iter() {
        let name = entry.name_bytes();
        if top && name == b"modules" {
            continue;
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(false);
        };
        let same = match super::tree::kind_of(entry.filemode()) {
            super::EntryKind::Dir => {
                meta.is_dir() && dir_matches(repo, &repo.find_tree(entry.id())?, &path, false)?
            }
            super::EntryKind::Submodule => meta.is_dir(),
            super::EntryKind::File => {
                let exec = entry.filemode() & 0o111 != 0;
                meta.is_file()
                    && (meta.permissions().mode() & 0o111 != 0) == exec
                    && (Oid::hash_file(git2::ObjectType::Blob, &path)? == entry.id()
                        || converted_unchanged(repo, &path))
            }
            super::EntryKind::Symlink => {
                meta.is_symlink()
                    && std::fs::read_link(&path)?.as_os_str().as_bytes()
                        == repo.find_blob(entry.id())?.content()
            }
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `path`, whose bytes differ from its blob, is what git's checkout made of it (a file
/// `.gitattributes` converts: line endings, `ident`, a filter): git's status for that one file,
/// with its filters, against the index, which must hide no edit. Without this, every no-op of
/// such a repository would take the full reset.
fn converted_unchanged(repo: &Repository, path: &Path) -> bool {
    let Some(rel) = repo.workdir().and_then(|w| path.strip_prefix(w).ok()) else {
        return false;
    };
    !index_hides_edits(repo) && repo.status_file(rel).is_ok_and(|st| st.is_empty())
}

/// Makes sure the whole work tree of a synced clone is exactly its commit, as [`sync`] does
/// when it moves the clone: one status walk (stat only, against the index's cache), and the
/// hard reset and clean when it finds anything. Called before anything is copied from
/// `modules/` after a no-op sync left it unchecked (`SyncedRepo::worktree_verified`).
pub fn verify_worktree(synced: &mut SyncedRepo) -> Result<()> {
    if synced.worktree_verified {
        return Ok(());
    }
    let repo = Repository::open(&synced.path)
        .with_context(|| format!("opening the clone {}", synced.path.display()))?;
    let tip = Oid::from_str(&synced.commit).context("reading the synced commit id")?;
    let mut so = git2::StatusOptions::new();
    so.include_untracked(true)
        .include_ignored(true)
        .recurse_untracked_dirs(false)
        .exclude_submodules(true)
        // A copied clone (restored backup, cloned SD card) has a stale stat cache: write
        // the refreshed one so later runs do not re-hash every file.
        .update_index(true);
    let clean = !index_hides_edits(&repo)
        && repo
            .statuses(Some(&mut so))
            .map(|st| st.is_empty())
            .unwrap_or(false);
    if !clean {
        log::debug!(
            "the work tree of {} differs from {}: resetting it",
            synced.path.display(),
            synced.commit
        );
        let tracking = format!("refs/remotes/{REMOTE}/{}", synced.branch);
        force_reset(&repo, &synced.branch, &tracking, tip)
            .with_context(|| format!("resetting {} to {tip}", synced.path.display()))?;
    }
    synced.worktree_verified = true;
    Ok(())
}

/// Whether an entry of the clone's index is marked assume-unchanged or skip-worktree: git's
/// status and checkout skip such a file, so an edit to it would be neither seen nor undone.
/// An unreadable index counts as hiding something.
fn index_hides_edits(repo: &Repository) -> bool {
    const ASSUME_VALID: u16 = 0x8000;
    const SKIP_WORKTREE: u16 = 0x4000;
    match repo.index() {
        Ok(index) => index
            .iter()
            .any(|e| e.flags & ASSUME_VALID != 0 || e.flags_extended & SKIP_WORKTREE != 0),
        Err(_) => true,
    }
}

/// `git clean -ffdx`: removes untracked and ignored files and directories, so nothing that is
/// not in the commit can leak into a decision or an install.
fn clean_untracked(repo: &Repository) -> Result<()> {
    let Some(workdir) = repo.workdir() else {
        return Ok(());
    };
    let mut so = git2::StatusOptions::new();
    so.include_untracked(true)
        .include_ignored(true)
        .recurse_untracked_dirs(false)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut so))
        .context("listing untracked files")?;
    for entry in statuses.iter() {
        let st = entry.status();
        if !(st.contains(git2::Status::WT_NEW) || st.contains(git2::Status::IGNORED)) {
            continue;
        }
        {
            use std::os::unix::ffi::OsStrExt;
            let rel = entry.path_bytes();
            let rel = rel.strip_suffix(b"/").unwrap_or(rel);
            let path = workdir.join(std::ffi::OsStr::from_bytes(rel));
            log::debug!("removing untracked {} from the clone", path.display());
            fs::remove_all(&path)?;
        }
    }
    Ok(())
}
