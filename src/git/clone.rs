//! The clone updater manages: its mark (`updater.managed`), adopting the unmarked default
//! clone, refusing a checkout updater did not make, cloning again (atomically, via a
//! temporary directory) when the clone is broken, and removing lock files a killed git left.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::Repository;

use super::fetch::{fetch_and_reset, SyncFailure};
use super::remote::set_timeouts;
use super::url::local_path_of;
use super::{SyncOptions, SyncedRepo, REMOTE};
use crate::fs;

/// The git config key (in the clone's own `.git/config`) that marks a clone updater created.
/// Only such a clone (or the default one) is ever reset, cleaned or re-pointed.
pub const MANAGED_KEY: &str = "updater.managed";

/// Whether the repository at `path` carries updater's mark in its own config.
pub fn is_managed(path: &Path) -> bool {
    Repository::open(path)
        .and_then(|r| r.config())
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .and_then(|c| c.get_bool(MANAGED_KEY))
        .unwrap_or(false)
}

pub(super) fn mark_managed(repo: &Repository, path: &Path) -> Result<()> {
    repo.config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .and_then(|mut c| c.set_bool(MANAGED_KEY, true))
        .with_context(|| {
            format!(
                "marking {} as updater's clone ({MANAGED_KEY})",
                path.display()
            )
        })
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && fs::list_dir(path).is_ok_and(|l| l.is_empty())
}

/// Why `local` may not be used as the clone, if so: a non-empty path that is neither the
/// default clone nor marked as updater's (a person's own checkout must never be reset).
pub fn refuse_foreign_clone(local: &Path, default_clone: bool) -> Option<String> {
    if default_clone || !fs::exists_no_follow(local) || is_empty_dir(local) || is_managed(local) {
        return None;
    }
    Some(format!(
        "{} is not a clone updater made (its .git/config has no {MANAGED_KEY} = true); refusing \
         to use it as --local-repo, because a sync rewrites its origin, resets it hard and removes \
         untracked files; nothing was changed (pass an absent or empty directory, or leave \
         --local-repo out to use the default clone)",
        local.display()
    ))
}

/// The sync itself, on the worker thread: checks the source exists and the clone may be used,
/// then updates the clone in place, or (absent or broken) clones afresh.
pub(super) fn sync_now(
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
    deadline: std::time::Instant,
) -> Result<SyncedRepo> {
    super::remote::set_deadline(deadline);
    set_timeouts();
    if let Some(path) = local_path_of(url) {
        if !path.exists() {
            bail!(
                "the repository path {} does not exist (--repo-url takes a URL or the path of a git repository)",
                path.display()
            );
        }
    }
    if let Some(why) = refuse_foreign_clone(local, opts.default_clone) {
        bail!(why);
    }
    if fs::exists_no_follow(local) {
        match update_existing(url, branch, local, opts) {
            Ok(synced) => return Ok(synced),
            Err(SyncFailure::Remote(e)) => return Err(e),
            Err(SyncFailure::Local(e)) => {
                // Only updater's own clones get here (see `refuse_foreign_clone`): a broken
                // one (no .git, a file, a corrupt repository) is replaced by a new clone, and
                // only once that clone is complete.
                log::warn!(
                    "the local clone {} is unusable ({e:#}); cloning it again",
                    local.display()
                );
            }
        }
    }
    fresh_clone(url, branch, local, opts)
}

fn update_existing(
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
) -> std::result::Result<SyncedRepo, SyncFailure> {
    let local_err = |e: git2::Error, what: &str| {
        SyncFailure::Local(anyhow!(e).context(format!("{what} {}", local.display())))
    };
    let repo = Repository::open(local).map_err(|e| local_err(e, "opening the clone"))?;
    if repo.is_bare() {
        return Err(SyncFailure::Local(anyhow!(
            "{} is a bare repository",
            local.display()
        )));
    }
    if !is_managed(local) {
        // The default clone of the previous version: updater's own, marked now.
        mark_managed(&repo, local).map_err(SyncFailure::Local)?;
    }
    clear_stale_locks(repo.path()).map_err(SyncFailure::Local)?;
    // Follow a changed --repo-url.
    let current = repo
        .find_remote(REMOTE)
        .ok()
        .and_then(|r| r.url().ok().map(str::to_string));
    if current.as_deref() != Some(url) {
        if current.is_some() {
            log::info!("Repository URL changed to {url}; updating the clone's remote");
            repo.remote_set_url(REMOTE, url)
                .map_err(|e| local_err(e, "setting the remote URL of"))?;
        } else {
            repo.remote(REMOTE, url)
                .map_err(|e| local_err(e, "adding the remote to"))?;
        }
    }
    fetch_and_reset(&repo, url, branch, local, opts)
}

/// Removes the `*.lock` files a killed git operation left in the clone's git directory (its top
/// level, e.g. `shallow.lock`, `index.lock`, and under `refs/`). Only updater works in its own
/// clone, and only under the run lock, so any lock found here is stale; left in place it would
/// fail every later fetch.
fn clear_stale_locks(git_dir: &Path) -> Result<()> {
    fn visit(dir: &Path, recurse: bool) -> Result<()> {
        for name in fs::list_dir(dir)? {
            let path = dir.join(&name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_file() && name.to_string_lossy().ends_with(".lock") {
                log::warn!(
                    "Removing {}, left by an interrupted git operation",
                    path.display()
                );
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            } else if recurse && meta.is_dir() {
                visit(&path, true)?;
            }
        }
        Ok(())
    }
    visit(git_dir, false)?;
    let refs = git_dir.join("refs");
    if refs.is_dir() {
        visit(&refs, true)?;
    }
    Ok(())
}

fn fresh_clone(
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
) -> Result<SyncedRepo> {
    let parent = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "creating a temporary clone directory in {}",
                parent.display()
            )
        })?;
    let repo = Repository::init(tmp.path())
        .with_context(|| format!("initialising a clone in {}", tmp.path().display()))?;
    repo.remote(REMOTE, url)
        .with_context(|| format!("adding remote {url} to {}", tmp.path().display()))?;
    mark_managed(&repo, tmp.path())?;
    let synced = match fetch_and_reset(&repo, url, branch, tmp.path(), opts) {
        Ok(s) => s,
        Err(SyncFailure::Remote(e)) | Err(SyncFailure::Local(e)) => return Err(e),
    };
    drop(repo);
    // Only now that the new clone is complete does it replace whatever was at `local`.
    fs::remove_all(local)?;
    let kept = tmp.keep();
    fs::rename(&kept, local)?;
    Ok(SyncedRepo {
        path: local.to_path_buf(),
        ..synced
    })
}

/// Fails unless `path` holds a readable git repository (used by `doctor`).
pub fn check_clone(path: &Path) -> Result<()> {
    let repo = Repository::open(path).with_context(|| format!("opening {}", path.display()))?;
    repo.head()
        .with_context(|| format!("reading HEAD of {}", path.display()))?;
    if repo.is_bare() {
        bail!("{} is a bare repository", path.display());
    }
    Ok(())
}
