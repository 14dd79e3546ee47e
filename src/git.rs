//! All git access: keeping the local clone of the updates repository identical to the remote
//! branch (clone, or fetch and hard-reset; never merge), asking the remote for its default
//! branch, and never prompting for credentials or host keys.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::{
    build::CheckoutBuilder, AutotagOption, Cred, CredentialType, Direction, ErrorClass,
    FetchOptions, Oid, RemoteCallbacks, Repository, ResetType,
};

use crate::fs;
pub use crate::trust::policy::TrustPolicy;
use crate::trust::policy::{descends_from, rewind_error};

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

fn mark_managed(repo: &Repository, path: &Path) -> Result<()> {
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

/// Turns a plain relative path into an absolute one, so the clone's remote does not depend on
/// the working directory of a later run. URLs are returned unchanged.
pub fn normalize_url(url: &str) -> String {
    let looks_like_url = url.contains("://") || is_scp_like(url);
    if looks_like_url {
        return url.to_string();
    }
    let p = Path::new(url);
    if p.is_absolute() {
        return url.to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => {
            let joined = cwd.join(p);
            joined
                .canonicalize()
                .unwrap_or(joined)
                .to_string_lossy()
                .into_owned()
        }
        Err(_) => url.to_string(),
    }
}

/// The filesystem path a plain-path or `file://` URL names (None for network URLs).
fn local_path_of(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (!url.contains("://") && !is_scp_like(url)).then(|| PathBuf::from(url))
}

/// `user@host:path` (scp-like ssh syntax): a colon before any slash.
fn is_scp_like(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) => c < s && c > 0,
        (Some(c), None) => c > 0,
        _ => false,
    }
}

/// Callbacks that never prompt: an SSH agent or a configured credential helper is tried once,
/// then the operation fails with a message saying so.
fn callbacks<'a>(progress: bool) -> RemoteCallbacks<'a> {
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
    cb.transfer_progress(move |p| {
        if past_deadline() {
            return false;
        }
        if progress && p.total_objects() > 0 {
            crate::output::progress(&format!(
                "\rReceiving objects: {:3}% ({}/{}), {} KiB",
                p.received_objects() * 100 / p.total_objects(),
                p.received_objects(),
                p.total_objects(),
                p.received_bytes() / 1024
            ));
            if p.received_objects() == p.total_objects() {
                crate::output::err("");
            }
        }
        true
    });
    cb
}

thread_local! {
    /// The deadline of the sync running on this thread (see [`sync`]).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

fn past_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|t| std::time::Instant::now() >= t))
}

/// Sets libgit2's network timeouts once, so a dead server cannot hang a timer-driven run. When
/// the URL is not https, libgit2's OpenSSL start-up is spared from parsing the system's CA
/// bundle (50-60 ms of every run, most of a no-op check): nothing here will verify a TLS peer.
fn set_timeouts(url: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let tls = url.starts_with("https://") || url.starts_with("http://");
        if !tls {
            // Called once, before libgit2 starts any thread; no TLS peer is verified by this
            // process, and entry points get a clean environment, so the variable reaches no
            // module.
            std::env::set_var("SSL_CERT_FILE", "/dev/null");
        }
        // SAFETY: these only set global libgit2 options, before any network operation starts
        // on another thread; the values are plain integers.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(300_000);
        }
    });
}

/// Brings the clone at `local` to the tip of `branch` (or the remote's default branch) of `url`:
/// clones when absent, else fetches and hard-resets, removing stray edits and untracked files.
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
            let result = sync_now(
                &url_owned,
                branch_owned.as_deref(),
                &local_owned,
                &opts_owned,
                deadline,
            );
            // A transfer stopped by the deadline fails with libgit2's own words: say why.
            let result = result.map_err(|e| {
                if std::time::Instant::now() >= deadline {
                    e.context(timeout_error(&url_owned, timeout).to_string())
                } else {
                    e
                }
            });
            let _ = tx.send(result);
        })
        .context("starting the git worker thread")?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(timeout_error(url, timeout)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            bail!("the git worker for {url} ended without an answer")
        }
    }
}

fn timeout_error(url: &str, timeout: std::time::Duration) -> anyhow::Error {
    anyhow!(
        "git work with {url} did not finish within {} s (--git-timeout); giving up",
        timeout.as_secs()
    )
}

fn sync_now(
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
    deadline: std::time::Instant,
) -> Result<SyncedRepo> {
    DEADLINE.with(|d| d.set(Some(deadline)));
    set_timeouts(url);
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

/// Why syncing an existing clone failed: the remote's fault (report it) or the clone's (re-clone).
enum SyncFailure {
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

fn fetch_and_reset(
    repo: &Repository,
    url: &str,
    branch: Option<&str>,
    local: &Path,
    opts: &SyncOptions,
) -> std::result::Result<SyncedRepo, SyncFailure> {
    let remote_err = |e: git2::Error, what: String| SyncFailure::Remote(anyhow!(e).context(what));
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
    let fetched = !have_tip;
    if !have_tip {
        // A first clone over the network is shallow: only the tip's objects are transferred.
        // Later fetches negotiate from what is here, so they transfer only new objects.
        let fresh = repo.head().is_err();
        let depth = if fresh && supports_shallow(url) { 1 } else { 0 };
        fetch(&mut remote, depth)?;
    }
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
                            fetch(&mut remote, depth)?;
                        }
                        None => return Err(SyncFailure::Remote(rewind_error(tip, last))),
                    }
                }
                false => return Err(SyncFailure::Remote(rewind_error(tip, last))),
            }
        }
    }
    reset_to(repo, &branch, &tracking, tip).map_err(|e| {
        SyncFailure::Local(e.context(format!("resetting {} to {tip}", local.display())))
    })?;
    Ok(SyncedRepo {
        path: local.to_path_buf(),
        url: url.to_string(),
        branch,
        commit: tip.to_string(),
        fetched,
    })
}

/// Whether the transport can serve a shallow fetch (libgit2 cannot for local paths).
fn supports_shallow(url: &str) -> bool {
    ["git://", "http://", "https://", "ssh://"]
        .iter()
        .any(|p| url.starts_with(p))
        || is_scp_like(url)
}

/// Points the tracking ref and a local branch at `tip`, and forces the work tree to match it
/// exactly: stray edits are undone, untracked and ignored files removed.
fn reset_to(repo: &Repository, branch: &str, tracking: &str, tip: Oid) -> Result<()> {
    let local_ref = format!("refs/heads/{branch}");
    // The common no-op: HEAD already at the tip. One status walk (stat only, against the
    // index's cache) proves the work tree is exactly the commit; only then is the reset skipped.
    let at_tip = repo
        .head()
        .ok()
        .filter(|h| h.name().ok() == Some(local_ref.as_str()))
        .and_then(|h| h.target())
        == Some(tip);
    if at_tip && repo.find_reference(tracking).ok().and_then(|r| r.target()) == Some(tip) {
        let mut so = git2::StatusOptions::new();
        so.include_untracked(true)
            .include_ignored(true)
            .recurse_untracked_dirs(false)
            .exclude_submodules(true)
            // A copied clone (restored backup, cloned SD card) has a stale stat cache: write
            // the refreshed one so later runs do not re-hash every file.
            .update_index(true);
        let clean = repo
            .statuses(Some(&mut so))
            .map(|st| st.is_empty())
            .unwrap_or(false);
        if clean {
            return Ok(());
        }
    }
    let commit = repo
        .find_commit(tip)
        .context("finding the fetched commit")?;
    repo.reference(tracking, tip, true, "updater: tip")
        .context("updating the tracking branch")?;
    repo.reference(&local_ref, tip, true, "updater: reset")
        .context("updating the local branch")?;
    repo.set_head(&local_ref).context("updating HEAD")?;
    let mut co = CheckoutBuilder::new();
    co.force().remove_untracked(true).remove_ignored(true);
    repo.reset(commit.as_object(), ResetType::Hard, Some(&mut co))
        .context("checking out the work tree")?;
    clean_untracked(repo)
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

/// Whether `branch` exists on the remote `url` (`git ls-remote url refs/heads/<branch>`), asked
/// over one connection with the same never-prompting credentials and timeouts as a sync. An
/// unreachable remote is an error, not a "no".
pub fn remote_has_branch(url: &str, branch: &str) -> Result<bool> {
    set_timeouts(url);
    let url = normalize_url(url);
    let mut remote = git2::Remote::create_detached(url.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_like_urls_are_urls() {
        assert!(is_scp_like("git@github.com:org/repo.git"));
        assert!(!is_scp_like("./repo"));
        assert!(!is_scp_like("/srv/repo"));
        assert!(!is_scp_like("file:///srv/repo"));
        assert!(!supports_shallow("file:///srv/repo"));
        assert!(!supports_shallow("/srv/repo"));
        assert!(supports_shallow("git@host:org/repo.git"));
        assert!(supports_shallow("https://host/repo.git"));
        assert_eq!(normalize_url("https://x/y.git"), "https://x/y.git");
        assert_eq!(normalize_url("/abs/path"), "/abs/path");
        assert!(Path::new(&normalize_url("rel/path")).is_absolute());
    }
}
