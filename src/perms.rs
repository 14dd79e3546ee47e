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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_world_writable_path_is_unsafe_and_a_private_one_is_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("root");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o755);
        assert_eq!(unsafe_permissions(&dir), None);
        chmod(&dir, 0o777);
        let problem = unsafe_permissions(&dir).expect("world-writable is unsafe");
        assert!(problem.contains("writable by every user"), "{problem}");
        assert!(problem.contains(&dir.display().to_string()), "{problem}");
        // A path that does not exist has no permissions to fault.
        assert_eq!(unsafe_permissions(&tmp.path().join("absent")), None);
    }

    #[test]
    fn only_root_refuses_to_run_on_a_world_writable_install_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(tmp.path());
        chmod(tmp.path(), 0o777);
        let result = refuse_unsafe_run_paths(&layout, &layout.default_clone());
        assert_eq!(result.is_err(), fs::is_root(), "{result:?}");
        if let Err(e) = result {
            assert!(format!("{e}").contains("refusing to run as root"), "{e}");
        }
        chmod(tmp.path(), 0o700);
        assert!(refuse_unsafe_run_paths(&layout, &layout.default_clone()).is_ok());
    }
}
