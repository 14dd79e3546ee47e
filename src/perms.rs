//! The permission rules of a run as root (SPEC §9): a path root trusts (the install root, the
//! state directory, the module directory, the clone, the allowed-signers file, hook scripts) must
//! not be writable by other users nor owned by anyone but root, as sudo and ssh require of theirs.
//! `commands` refuses to run on such paths, `doctor` reports them, `hooks` skips them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::fs;
use crate::layout::Layout;

/// Permission problems of a path that root trusts: writable by other users, or (as root) owned
/// by another user. `None` when the path is fine or does not exist.
pub fn unsafe_permissions(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let mode = m.mode();
    if mode & 0o002 != 0 {
        return Some(format!(
            "{} is writable by every user (mode {:o})",
            path.display(),
            mode & 0o7777
        ));
    }
    if mode & 0o020 != 0 && m.gid() != 0 {
        return Some(format!(
            "{} is writable by group {} (mode {:o})",
            path.display(),
            m.gid(),
            mode & 0o7777
        ));
    }
    if fs::is_root() && m.uid() != 0 {
        return Some(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            m.uid()
        ));
    }
    None
}

/// The paths every run as root checks: the install root, its state directory, its module
/// directory and the clone.
pub fn run_paths(layout: &Layout, clone: &Path) -> [PathBuf; 4] {
    [
        layout.root.clone(),
        layout.state_dir(),
        layout.modules(),
        clone.to_path_buf(),
    ]
}

/// As root, an install root, state directory or clone that other users can write to would let
/// them run code as root: refuse it, as sudo and ssh do for their files.
pub fn refuse_unsafe_run_paths(layout: &Layout, clone: &Path) -> Result<()> {
    if !fs::is_root() {
        return Ok(());
    }
    for p in run_paths(layout, clone) {
        if let Some(problem) = unsafe_permissions(&p) {
            bail!(
                "refusing to run as root: {problem}; other users could run code as root \
                 (fix: chown root:root {0} && chmod go-w {0})",
                p.display()
            );
        }
    }
    Ok(())
}

/// As root, an allowed-signers file other users can write to would let them add their own key:
/// refuse to trust it.
pub fn refuse_unsafe_signers(path: &Path) -> Result<()> {
    if fs::is_root() {
        if let Some(problem) = unsafe_permissions(path) {
            bail!(
                "refusing to trust {}: {problem}; other users could add their own key",
                path.display()
            );
        }
    }
    Ok(())
}
