//! The legacy manifest checksum of a module directory (SPEC §6): [`checksum_dir`], which legacy
//! mode compares with a manifest child's `checksum`, and the `updater checksum NAME` command that
//! prints it (so a manifest can be written from what is installed).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::layout::Layout;
use crate::module;
use crate::report;
use crate::ExitStatus;

/// Prefix of every checksum this module produces.
pub const PREFIX: &str = "sha256:";

/// The SHA-256 of a module directory, as `sha256:<64 lowercase hex digits>` (SPEC §6).
///
/// Every regular file below `dir` is taken, in the byte order of its path relative to `dir`
/// (components joined with `/`, compared as whole paths, so `a-c` comes before `a/x`); for each,
/// the relative path bytes and then the file's content bytes are fed into one SHA-256, with no
/// separator. An empty directory hashes to the SHA-256 of nothing.
///
/// Left out: files named `checksum` or `checksum.sha` (at any depth), any directory named
/// `__pycache__` with everything in it, and files whose name ends in `.pyc`.
///
/// Symlinks inside the module are neither followed nor included (decision: following one could
/// hash files outside the module, and a link's target is not content the module ships; sync
/// refuses links that leave the module anyway). Empty directories, file modes and owners do not
/// count either. `dir` itself may be reached through a symlink.
///
/// Errors, naming the path: `dir` is not a directory; a directory or file cannot be read; the
/// module holds a device, socket or fifo (SPEC §3: such a module is invalid).
pub fn checksum_dir(dir: &Path) -> Result<String> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read module directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut files = Vec::new();
    collect(dir, &[], &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for (rel, path) in &files {
        hasher.update(rel);
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("opening {} to checksum it", path.display()))?;
        std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("reading {} to checksum it", path.display()))?;
    }
    let digest = hasher.finalize();
    let mut text = String::with_capacity(PREFIX.len() + 64);
    text.push_str(PREFIX);
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    Ok(text)
}

/// Whether a regular file named `name` is left out of the checksum.
fn excluded_file(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes == b"checksum" || bytes == b"checksum.sha" || bytes.ends_with(b".pyc")
}

/// Adds the regular files below `dir` (whose path relative to the module is `rel`) to `out` as
/// (relative path bytes, absolute path).
fn collect(dir: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("listing {} to checksum it", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {} to checksum it", dir.display()))?;
        let name = entry.file_name();
        let path = entry.path();
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        // DirEntry::file_type does not follow symlinks.
        let ft = entry
            .file_type()
            .with_context(|| format!("inspecting {}", path.display()))?;
        if ft.is_symlink() {
            continue;
        } else if ft.is_dir() {
            if name.as_bytes() != b"__pycache__" {
                collect(&path, &child_rel, out)?;
            }
        } else if ft.is_file() {
            if !excluded_file(&name) {
                out.push((child_rel, path));
            }
        } else {
            bail!(
                "{} is a device, socket or fifo; a module may not contain one",
                path.display()
            );
        }
    }
    Ok(())
}

/// `updater checksum NAME`: prints the checksum of the installed `<modules-path>/modules/NAME`
/// on stdout (or, with `--json`, `{"command", "module", "path", "checksum"}`). Read-only: it
/// takes no lock.
pub fn command(cfg: &Config, name: &str) -> Result<ExitStatus> {
    module::check_name(name)?;
    let layout = Layout::new(&cfg.modules_path);
    let dir = layout.module(name);
    if !dir.is_dir() {
        bail!(
            "module {name} is not installed ({} is not a directory)",
            dir.display()
        );
    }
    let sum = checksum_dir(&dir).with_context(|| format!("computing the checksum of {name}"))?;
    if cfg.json {
        report::print_json(&json!({
            "command": "checksum",
            "module": name,
            "path": dir,
            "checksum": sum,
        }));
    } else {
        crate::output::out(&sum);
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, contents: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// The tiny reference: SHA-256 over (path, content) pairs given in order.
    fn reference(pairs: &[(&[u8], &[u8])]) -> String {
        let mut h = Sha256::new();
        for (p, c) in pairs {
            h.update(p);
            h.update(c);
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn empty_directory_is_the_hash_of_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // python3 -c 'import hashlib; print(hashlib.sha256(b"").hexdigest())'
        assert_eq!(
            checksum_dir(dir.path()).unwrap(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn single_file_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("index.json"), b"{}\n");
        // python3 -c 'import hashlib; print(hashlib.sha256(b"index.json{}\n").hexdigest())'
        assert_eq!(
            checksum_dir(dir.path()).unwrap(),
            "sha256:2910277124ab3fafdded42fd97d422f010f190731ba33cbc519e4f4d96746c3e"
        );
    }

    /// A tree with files in whole-path byte order that differs from per-directory order, plus
    /// everything that must be left out.
    fn sample_tree(root: &Path) {
        write(&root.join("b.txt"), b"bee\n");
        write(&root.join("a/x.py"), b"print(1)\n");
        write(&root.join("a-c"), b"dash");
        // left out:
        write(&root.join("checksum"), b"sha256:whatever");
        write(&root.join("a/checksum.sha"), b"whatever");
        write(&root.join("__pycache__/m.cpython-311.pyc"), b"\0bytecode");
        write(&root.join("a/__pycache__/x.cpython-311.pyc"), b"\0bytecode");
        write(&root.join("a/__pycache__/notes.txt"), b"inside pycache");
        write(&root.join("a/y.pyc"), b"\0bytecode");
        std::os::unix::fs::symlink("b.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/outside")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
    }

    #[test]
    fn tree_known_vector_and_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        // python3 -c 'import hashlib; h=hashlib.sha256()
        // for p,c in [(b"a-c",b"dash"),(b"a/x.py",b"print(1)\n"),(b"b.txt",b"bee\n")]:
        //     h.update(p); h.update(c)
        // print(h.hexdigest())'
        let expected = "sha256:4f9b861dbd081f448983ca0b0d728591a10b7cf2c7e820e82aef71871476d1db";
        assert_eq!(checksum_dir(dir.path()).unwrap(), expected);
        assert_eq!(
            expected,
            reference(&[
                (b"a-c", b"dash"),
                (b"a/x.py", b"print(1)\n"),
                (b"b.txt", b"bee\n"),
            ])
        );
    }

    #[test]
    fn content_path_and_mode_sensitivity() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let base = checksum_dir(dir.path()).unwrap();

        // Modes do not count.
        fs::set_permissions(dir.path().join("b.txt"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(checksum_dir(dir.path()).unwrap(), base);

        // Content counts.
        write(&dir.path().join("b.txt"), b"bee!\n");
        assert_ne!(checksum_dir(dir.path()).unwrap(), base);
        write(&dir.path().join("b.txt"), b"bee\n");
        assert_eq!(checksum_dir(dir.path()).unwrap(), base);

        // A rename counts.
        fs::rename(dir.path().join("b.txt"), dir.path().join("c.txt")).unwrap();
        assert_ne!(checksum_dir(dir.path()).unwrap(), base);
        fs::rename(dir.path().join("c.txt"), dir.path().join("b.txt")).unwrap();

        // A new file counts, a new ignored one does not.
        write(&dir.path().join("sub/checksum"), b"x");
        write(&dir.path().join("sub/__pycache__/z"), b"x");
        assert_eq!(checksum_dir(dir.path()).unwrap(), base);
        write(&dir.path().join("sub/new"), b"");
        assert_ne!(checksum_dir(dir.path()).unwrap(), base);
    }

    #[test]
    fn checksum_sha_directory_is_not_a_file_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("checksum/inner"), b"x");
        assert_eq!(
            checksum_dir(dir.path()).unwrap(),
            reference(&[(b"checksum/inner", b"x")])
        );
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = format!("{:#}", checksum_dir(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let file = dir.path().join("file");
        write(&file, b"x");
        let err = format!("{:#}", checksum_dir(&file).unwrap_err());
        assert!(err.contains("is not a directory"), "{err}");

        let module = dir.path().join("mod");
        fs::create_dir(&module).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            module.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = format!("{:#}", checksum_dir(&module).unwrap_err());
        assert!(err.contains("fifo") && err.contains("mod/fifo"), "{err}");
    }

    #[test]
    fn directory_reached_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("real/index.json"), b"{}\n");
        std::os::unix::fs::symlink("real", dir.path().join("alias")).unwrap();
        assert_eq!(
            checksum_dir(&dir.path().join("alias")).unwrap(),
            checksum_dir(&dir.path().join("real")).unwrap()
        );
    }
}
