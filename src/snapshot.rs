//! Snapshots of a module's declared system paths (`configuration.backup_paths`), taken before its
//! entry point runs, and their restore when the module is rolled back. Files, directories and
//! symlinks are kept with their modes (and owners, when running as root); a path that did not
//! exist is removed again on restore.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fs;

/// Copies each path into `dir/<i>/item` (no `item` when the path does not exist), durably.
pub fn take(dir: &Path, paths: &[PathBuf]) -> Result<()> {
    fs::remove_all(dir)?;
    fs::create_dir_all(dir)?;
    for (i, path) in paths.iter().enumerate() {
        let slot = dir.join(i.to_string());
        fs::create_dir_all(&slot)?;
        if fs::exists_no_follow(path) {
            fs::copy_tree(path, &slot.join("item"), fs::is_root())?;
        }
        fs::sync_path(&slot)?;
    }
    fs::sync_path(dir)?;
    fs::sync_parent(dir)
}

/// Puts every path back as it was in the snapshot at `dir`. Idempotent: running it again after
/// a crash part-way gives the same result.
pub fn restore(dir: &Path, paths: &[PathBuf]) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        let saved = dir.join(i.to_string()).join("item");
        if !fs::exists_no_follow(&saved) {
            fs::remove_all(path)?;
            continue;
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = parent.join(format!(".{file_name}.updater-restore"));
        fs::remove_all(&temp)?;
        fs::copy_tree(&saved, &temp, fs::is_root())?;
        if fs::exists_no_follow(path) {
            // The restored copy takes the path's place in one step; the current one is removed.
            fs::exchange(&temp, path)?;
            fs::remove_all(&temp)?;
        } else {
            fs::rename(&temp, path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn restore_puts_back_files_dirs_symlinks_and_absence() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        std::fs::create_dir_all(sys.join("dir/sub")).unwrap();
        std::fs::write(sys.join("conf"), "original").unwrap();
        std::fs::set_permissions(sys.join("conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(sys.join("dir/sub/f"), "deep").unwrap();
        std::os::unix::fs::symlink("conf", sys.join("link")).unwrap();
        let paths = vec![
            sys.join("conf"),
            sys.join("dir"),
            sys.join("link"),
            sys.join("absent"),
        ];
        let snap = t.path().join("snap");
        take(&snap, &paths).unwrap();

        std::fs::write(sys.join("conf"), "changed").unwrap();
        std::fs::remove_dir_all(sys.join("dir")).unwrap();
        std::fs::write(sys.join("dir"), "now a file").unwrap();
        std::fs::remove_file(sys.join("link")).unwrap();
        std::fs::write(sys.join("absent"), "created by the entry").unwrap();

        restore(&snap, &paths).unwrap();
        restore(&snap, &paths).unwrap(); // idempotent
        assert_eq!(
            std::fs::read_to_string(sys.join("conf")).unwrap(),
            "original"
        );
        assert_eq!(
            std::fs::metadata(sys.join("conf"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_to_string(sys.join("dir/sub/f")).unwrap(),
            "deep"
        );
        assert_eq!(
            std::fs::read_link(sys.join("link")).unwrap(),
            Path::new("conf")
        );
        assert!(!sys.join("absent").exists());
        assert_eq!(std::fs::read_dir(&sys).unwrap().count(), 3);
    }
}
