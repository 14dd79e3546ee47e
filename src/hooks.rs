//! Post-sync hooks (SPEC §10 "After a sync"): the executables in
//! `<modules-path>/.updater/hooks/post-sync.d/` run one after another in name (byte) order once a
//! sync has written its index and state, with the run's summary in their environment:
//!
//! | variable | value |
//! |---|---|
//! | `UPDATER_EXIT_CODE` | the exit code the sync ends with (0 or 3) |
//! | `UPDATER_APPLIED` | names of the modules applied (installed, updated, removed), space-separated |
//! | `UPDATER_FAILED` | names of the modules rolled back or failed |
//! | `UPDATER_SKIPPED` | names of the modules skipped |
//! | `UPDATER_FRAMEWORK` | the framework's result: `applied`, `rolled_back`, or empty |
//! | `UPDATER_COMMIT` | the repository commit synced |
//! | `UPDATER_MODULES_PATH` | the install root |
//! | `UPDATER_SUMMARY` | path of the run's `--json` document (`.updater/last-sync.json`) |
//!
//! A hook's failure, non-zero exit or timeout (`UPDATER_HOOK_TIMEOUT_SECS`, default 300; the
//! whole process group is killed) is logged, never fatal. Its output goes to the log, each line
//! prefixed with the hook's name, control characters escaped. Names starting with a dot, editor
//! backups (`~`, `#…#`, `.bak`, `.swp`, `.orig`, `.dpkg-*`, `.rpm*`) and files without an
//! execute bit are skipped; as root, a hook other users could write is refused.

use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::layout::Layout;

/// Default timeout of one hook.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// At most this much of a hook's output reaches the log.
const MAX_OUTPUT: u64 = 64 * 1024;

/// The summary of a sync that hooks receive.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub exit_code: u8,
    pub applied: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
    pub framework: Option<String>,
    pub commit: String,
    /// The run's JSON document, written to `.updater/last-sync.json` for the hooks.
    pub document: serde_json::Value,
}

impl RunSummary {
    /// The summary of a sync from its module outcomes, framework row, commit, `--json` document
    /// and exit code.
    pub fn of(
        outcomes: &std::collections::BTreeMap<String, crate::outcome::Outcome>,
        framework: Option<&crate::framework::Row>,
        commit: &str,
        document: serde_json::Value,
        exit_code: u8,
    ) -> RunSummary {
        let names = |results: &[&str]| -> Vec<String> {
            outcomes
                .iter()
                .filter(|(_, o)| results.contains(&o.result.as_str()))
                .map(|(n, _)| n.clone())
                .collect()
        };
        RunSummary {
            exit_code,
            applied: names(&["applied", "removed"]),
            failed: names(&["rolled_back", "failed"]),
            skipped: names(&["skipped"]),
            framework: framework.and_then(|r| r.result).map(str::to_string),
            commit: commit.to_string(),
            document,
        }
    }
}

pub use crate::output::escape;

/// Whether a hook file name is skipped (hidden files, editor backups, package-manager leftovers).
pub fn skipped_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || [
            ".bak", ".swp", ".swo", ".orig", ".rej", ".tmp", ".rpmnew", ".rpmsave",
        ]
        .iter()
        .any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
        || name.contains(".ucf-")
}

/// Runs the post-sync hooks. Never fails the run: every problem is logged.
pub fn run_post_sync(layout: &Layout, summary: &RunSummary, timeout: Option<Duration>) {
    let dir = layout.post_sync_hooks();
    let names = match crate::fs::list_dir(&dir) {
        Ok(n) => n,
        Err(e) => {
            log::error!("post-sync hooks not run: {e:#}");
            return;
        }
    };
    if names.is_empty() {
        return;
    }
    if crate::fs::is_root() {
        // Whoever can write the directories can add a hook that runs as root.
        for d in [dir.parent().unwrap_or(&dir), dir.as_path()] {
            if let Some(problem) = crate::perms::unsafe_permissions(d) {
                log::error!("post-sync hooks refused: {problem}");
                return;
            }
        }
    }
    let summary_path = layout.state_dir().join("last-sync.json");
    if let Err(e) = crate::fs::write_json_atomic(&summary_path, &summary.document) {
        log::error!("writing the run summary for the hooks: {e:#}");
    }
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    for name in names {
        let shown = escape(&name.to_string_lossy()).into_owned();
        let path = dir.join(&name);
        let Some(text) = name.to_str() else {
            log::warn!("post-sync hook {shown} skipped: its name is not UTF-8");
            continue;
        };
        if skipped_name(text) {
            log::debug!("post-sync hook {shown} skipped (hidden file or editor backup)");
            continue;
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("post-sync hook {shown} skipped: {e}");
                continue;
            }
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            log::debug!("post-sync hook {shown} skipped: not an executable file");
            continue;
        }
        if crate::fs::is_root() {
            // The hook and, for a symlink, the file it resolves to.
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(problem) = crate::perms::unsafe_permissions(&path)
                .or_else(|| crate::perms::unsafe_permissions(&real))
            {
                log::error!("post-sync hook {shown} refused: {problem}");
                continue;
            }
        }
        match run_one(layout, &path, &shown, summary, &summary_path, timeout) {
            Ok(()) => {}
            Err(e) => log::error!("post-sync hook {shown} failed: {e:#}"),
        }
    }
}

fn run_one(
    layout: &Layout,
    path: &Path,
    shown: &str,
    s: &RunSummary,
    summary_path: &Path,
    timeout: Duration,
) -> Result<()> {
    // Output goes to an unlinked temp file, not a pipe: a hook that leaves a background process
    // holding its output open can never hang the run.
    let mut out = tempfile::tempfile().context("creating a temporary file for hook output")?;
    let err = out
        .try_clone()
        .context("duplicating the hook output file")?;
    let out_for_child = out
        .try_clone()
        .context("duplicating the hook output file")?;
    log::info!("Running post-sync hook {shown}");
    let mut child = Command::new(path)
        .current_dir(&layout.root)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_for_child))
        .stderr(Stdio::from(err))
        .env("UPDATER_EXIT_CODE", s.exit_code.to_string())
        .env("UPDATER_APPLIED", s.applied.join(" "))
        .env("UPDATER_FAILED", s.failed.join(" "))
        .env("UPDATER_SKIPPED", s.skipped.join(" "))
        .env("UPDATER_FRAMEWORK", s.framework.as_deref().unwrap_or(""))
        .env("UPDATER_COMMIT", &s.commit)
        .env("UPDATER_MODULES_PATH", &layout.root)
        .env("UPDATER_SUMMARY", summary_path)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {}", path.display()))?
        {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = Vec::new();
    let _ = out.rewind();
    let _ = (&mut out).take(MAX_OUTPUT).read_to_end(&mut text);
    for line in String::from_utf8_lossy(&text).lines() {
        log::info!("[hook {shown}] {}", escape(line));
    }
    match status {
        None => anyhow::bail!("timed out after {} s and was killed", timeout.as_secs()),
        Some(st) if st.success() => {
            log::info!("Post-sync hook {shown} succeeded");
            Ok(())
        }
        Some(st) => anyhow::bail!("{st}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_and_hidden_files_are_skipped() {
        for n in [
            ".x",
            "a~",
            "#a#",
            "a.bak",
            "a.swp",
            "a.dpkg-old",
            "a.rpmnew",
            "a.orig",
        ] {
            assert!(skipped_name(n), "{n}");
        }
        for n in ["10-date", "99-restart-gunicorn", "hook.sh"] {
            assert!(!skipped_name(n), "{n}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {}
}
