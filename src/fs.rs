//! Every filesystem primitive `updater` uses: durable atomic writes, directory syncs, the atomic
//! exchange of two directories, tree copies, removals, and the run lock. Every error names the
//! path it concerns, so callers never have to guess which file was at fault.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Opens `path` read-only and syncs it to disk.
pub fn sync_path(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {} to sync it", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Syncs the directory that contains `path`, making a rename or create inside it durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_path(p),
        _ => sync_path(Path::new(".")),
    }
}

/// Reads a whole file as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads a whole file as UTF-8 text; `None` when it does not exist (any other error names it).
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        other => other
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads the regular file `path` whole, without following a final symlink; `None` when it is
/// missing. A fifo or device (which could block or never end) and a file larger than `max`
/// bytes are errors that name the path.
pub fn read_regular_capped(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    read_capped(path, max, true)
}

/// [`read_regular_capped`], following a final symlink (the install root's global index may be
/// one).
pub fn read_file_capped(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    read_capped(path, max, false)
}

fn read_capped(path: &Path, max: u64, no_follow: bool) -> Result<Option<Vec<u8>>> {
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if no_follow {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if no_follow => return Err(open_error(path, e)),
        other => other.with_context(|| format!("reading {}", path.display()))?,
    };
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` also stops a file that grows while it is read.
    (&mut file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(Some(bytes))
}

/// The error of opening `path` without following a final symlink (`O_NOFOLLOW`), worded for
/// what happened: missing, a symlink (refused), or the system's own reason.
pub fn open_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc_enoent) if libc_enoent == rustix::io::Errno::NOENT.raw_os_error() => {
            anyhow::anyhow!("{} is missing", path.display())
        }
        Some(eloop) if eloop == rustix::io::Errno::LOOP.raw_os_error() => {
            anyhow::anyhow!("{} is a symlink, which is refused", path.display())
        }
        _ => anyhow::Error::new(e).context(format!("reading {}", path.display())),
    }
}

/// Writes `contents` to `path` atomically and durably: a temp file in the same directory is
/// written and synced, renamed over `path`, and the directory is synced. A crash leaves either
/// the old file or the new one, never a torn one. The file mode of an existing file is kept.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mode = fs::metadata(path).map(|m| m.permissions().mode()).ok();
    replace_file(path, contents, mode.unwrap_or(0o644), true)
}

/// Replaces `path` with `contents` atomically (temp file in the same directory, rename), without
/// syncing: for records that must survive the death of this process, which the page cache
/// already guarantees, but need not survive a power cut (the process group of a running entry:
/// after a power cut no process is left to kill). Errors name `path`.
pub fn write_replace(path: &Path, contents: &[u8]) -> Result<()> {
    replace_file(path, contents, 0o644, false)
}

/// The one temp-file-and-rename writer behind [`write_atomic`], [`write_replace`] and
/// [`write_atomic_mode`]: the temp file gets `mode` before the rename (so the path never has
/// another mode); `durable` syncs the file before the rename and the directory after it. Every
/// error names the destination: the temporary name means nothing to a reader.
fn replace_file(path: &Path, contents: &[u8], mode: u32, durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .with_context(|| {
            format!(
                "writing {}: creating a temporary file in {}",
                path.display(),
                dir.display()
            )
        })?;
    let tmp_shown = tmp_name(&tmp);
    let through = |what: &str| format!("{what} {} (through {tmp_shown})", path.display());
    tmp.write_all(contents)
        .with_context(|| through("writing"))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .with_context(|| through("setting the mode of"))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .with_context(|| through("syncing"))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming a temporary file onto {}", path.display()))?;
    if durable {
        sync_path(&dir)?;
    }
    Ok(())
}

fn tmp_name(tmp: &tempfile::NamedTempFile) -> String {
    tmp.path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a value as pretty JSON (with a trailing newline) atomically, see [`write_atomic`].
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .with_context(|| format!("serializing {}", path.display()))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// `mkdir -p` with mode 0755 for every directory it creates (whatever the umask: see
/// [`restrict_umask`]), naming the path on failure.
pub fn create_dir_all(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .with_context(|| format!("creating directory {}", path.display()))
}

/// Adds group and other write to the process umask (never loosens it), so that nothing this
/// process or its libraries (libgit2's clone) or its entry points create is writable by other
/// users: under umask 000 updater would otherwise create 0777 directories that its own root
/// check then refuses forever (LESSONS: what we create we must accept).
pub fn restrict_umask() {
    let current = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(current | rustix::fs::Mode::from_raw_mode(0o022));
}

/// Renames `from` to `to` and syncs the parent directories of both.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Atomically exchanges two existing paths (Linux `renameat2(RENAME_EXCHANGE)`), then syncs the
/// parent directories. At every instant both paths exist and each is one complete tree.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).with_context(|| {
        format!(
            "exchanging {} and {} (renameat2 RENAME_EXCHANGE)",
            a.display(),
            b.display()
        )
    })?;
    sync_parent(a)?;
    if a.parent() != b.parent() {
        sync_parent(b)?;
    }
    Ok(())
}

/// Like [`exchange`], without syncing the parent directories: for a batch whose durability comes
/// from one [`sync_filesystem`] before it matters.
pub fn exchange_unsynced(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).with_context(|| {
        format!(
            "exchanging {} and {} (renameat2 RENAME_EXCHANGE)",
            a.display(),
            b.display()
        )
    })
}

/// Like [`rename`], without syncing the parent directories (see [`exchange_unsynced`]).
pub fn rename_unsynced(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Removes a file, symlink or directory tree if it exists. Missing paths are not an error.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
        Ok(m) if m.is_dir() => {
            make_writable_tree(path);
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
    }
}

/// Read-only directories inside a tree (a module may ship some) would make removal fail.
fn make_writable_tree(path: &Path) {
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(m) = fs::symlink_metadata(&dir) {
            if m.is_dir() {
                let mode = m.permissions().mode();
                if mode & 0o700 != 0o700 {
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700));
                }
                if let Ok(rd) = fs::read_dir(&dir) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            }
        }
    }
}

/// Copies the tree at `src` to `dst` (which must not exist): regular files with their mode,
/// directories, and symlinks as symlinks (never followed). Every file written is synced, then
/// every directory, so the copy is durable before it is swapped in. Devices, sockets and fifos
/// are refused. With `preserve_owner`, ownership is copied too (when running as root).
pub fn copy_tree(src: &Path, dst: &Path, preserve_owner: bool) -> Result<()> {
    let meta =
        fs::symlink_metadata(src).with_context(|| format!("inspecting {}", src.display()))?;
    copy_entry(src, dst, &meta, preserve_owner, true)?;
    sync_parent(dst)
}

/// Like [`copy_tree`], but syncs nothing: the caller makes the copy durable later, for many
/// copies at once, with one [`sync_filesystem`] (a module's staging: SPEC §7 only needs the
/// staged copy on disk before it is swapped in).
pub fn copy_tree_unsynced(src: &Path, dst: &Path) -> Result<()> {
    let meta =
        fs::symlink_metadata(src).with_context(|| format!("inspecting {}", src.display()))?;
    copy_entry(src, dst, &meta, false, false)
}

/// Flushes everything written to the filesystem holding `path` (`syncfs(2)`): one call makes a
/// whole batch of copies, renames and exchanges durable, instead of one `fsync` per file and
/// directory.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path)
        .with_context(|| format!("opening {} to sync its filesystem", path.display()))?;
    rustix::fs::syncfs(&f).with_context(|| format!("syncing the filesystem of {}", path.display()))
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    meta: &fs::Metadata,
    preserve_owner: bool,
    durable: bool,
) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target =
            fs::read_link(src).with_context(|| format!("reading symlink {}", src.display()))?;
        std::os::unix::fs::symlink(&target, dst)
            .with_context(|| format!("creating symlink {}", dst.display()))?;
        if preserve_owner {
            chown(dst, meta, false)?;
        }
    } else if ft.is_dir() {
        fs::create_dir(dst).with_context(|| format!("creating directory {}", dst.display()))?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("listing {}", src.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", src.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child_meta = fs::symlink_metadata(entry.path())
                .with_context(|| format!("inspecting {}", entry.path().display()))?;
            copy_entry(
                &entry.path(),
                &dst.join(entry.file_name()),
                &child_meta,
                preserve_owner,
                durable,
            )?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("setting the mode of {}", dst.display()))?;
        if preserve_owner {
            chown(dst, meta, true)?;
        }
        if durable {
            sync_path(dst)?;
        }
    } else if ft.is_file() {
        copy_file(src, dst, meta, durable)?;
        if preserve_owner {
            chown(dst, meta, true)?;
        }
    } else {
        bail!(
            "{} is a device, socket or fifo; refusing to copy it",
            src.display()
        );
    }
    Ok(())
}

fn copy_file(src: &Path, dst: &Path, meta: &fs::Metadata, durable: bool) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    std::io::copy(&mut input, &mut output)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    output
        .set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("setting the mode of {}", dst.display()))?;
    if durable {
        output
            .sync_all()
            .with_context(|| format!("syncing {}", dst.display()))?;
    }
    Ok(())
}

fn chown(path: &Path, meta: &fs::Metadata, follow: bool) -> Result<()> {
    let res = if follow {
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
    } else {
        std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
    };
    res.with_context(|| format!("setting the owner of {}", path.display()))
}

/// Whether the current process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The run lock: an exclusive `flock` on `<state>/lock`, held for the life of this value. The
/// kernel drops it when the process dies, so a crashed run never blocks the next one.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// Returned (inside anyhow) when another live process holds the lock.
#[derive(Debug)]
pub struct LockHeld {
    pub path: PathBuf,
    pub pid: Option<u32>,
}

impl std::fmt::Display for LockHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(
                f,
                "another updater run (pid {pid}) holds the lock {}; try again later or pass --wait",
                self.path.display()
            ),
            None => write!(
                f,
                "another updater run holds the lock {}; try again later or pass --wait",
                self.path.display()
            ),
        }
    }
}

impl std::error::Error for LockHeld {}

impl RunLock {
    /// Takes the lock at `path` (creating it), without waiting unless `wait` is set. The
    /// holder's PID is written into the file so that a refused run can name it.
    pub fn acquire(path: &Path, wait: bool) -> Result<RunLock> {
        use rustix::fs::{flock, FlockOperation};
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        if let Err(e) = flock(&file, op) {
            if e == rustix::io::Errno::WOULDBLOCK {
                return Err(LockHeld {
                    path: path.to_path_buf(),
                    pid: holder_pid(&mut file),
                }
                .into());
            }
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        file.set_len(0)
            .with_context(|| format!("truncating lock file {}", path.display()))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .with_context(|| format!("writing lock file {}", path.display()))?;
        Ok(RunLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The PID written in a held lock file. The holder writes it just after taking the lock, so a
/// run refused in between may read an empty file or a dead run's PID: re-read for a moment until
/// it names a live process.
fn holder_pid(file: &mut File) -> Option<u32> {
    use std::io::Seek;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
    loop {
        let mut text = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        let pid: Option<u32> = text.trim().parse().ok();
        let alive = pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
        if alive || std::time::Instant::now() >= deadline {
            return if alive { pid } else { None };
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Lists the names of the entries of a directory, sorted; a missing directory lists nothing.
pub fn list_dir(path: &Path) -> Result<Vec<std::ffi::OsString>> {
    let rd = match fs::read_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("listing {}", path.display()))?,
    };
    let mut names = Vec::new();
    for entry in rd {
        names.push(
            entry
                .with_context(|| format!("listing {}", path.display()))?
                .file_name(),
        );
    }
    names.sort();
    Ok(names)
}

/// An open directory, to stat many names below it without walking its path each time (the
/// index cache stats 10,000 `modules/<name>/index.json`).
pub struct OpenDir {
    fd: std::os::fd::OwnedFd,
}

impl OpenDir {
    /// Opens the directory `path`; None when it does not exist.
    pub fn open(path: &Path) -> Result<Option<OpenDir>> {
        use rustix::fs::{Mode, OFlags};
        match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(OpenDir { fd })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("opening directory {}", path.display())),
        }
    }

    /// The stat data of `rel` below the directory, the last component not followed (as
    /// `symlink_metadata`); the caller names the path in any message.
    pub fn stat(&self, rel: &Path) -> std::io::Result<rustix::fs::Stat> {
        rustix::fs::statat(&self.fd, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
    }
}

/// Whether `path` exists without following a final symlink.
pub fn exists_no_follow(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Points the symlink `link` at `target` atomically: a new symlink is made under a temp name in
/// the same directory and renamed over `link` (replacing a symlink or file there, never a
/// directory), then the directory is synced. A crash leaves the old link or the new one.
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let dir = match link.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A fresh name from the temp-file builder: created, removed, and taken by the symlink at once
    // (another process racing for that name in our own directory would only make this fail).
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-link-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary name in {}", dir.display()))?
        .into_temp_path();
    let tmp_path = tmp.to_path_buf();
    tmp.close()
        .with_context(|| format!("removing {}", tmp_path.display()))?;
    std::os::unix::fs::symlink(target, &tmp_path)
        .with_context(|| format!("creating symlink {}", tmp_path.display()))?;
    if let Err(e) = fs::rename(&tmp_path, link) {
        let _ = fs::remove_file(&tmp_path);
        return Err(e).with_context(|| format!("renaming a new symlink onto {}", link.display()));
    }
    sync_path(&dir)
}

/// Gives every regular file named `*.sh` in the tree at `root` the execute bits its read bits
/// allow (SPEC §10: the repository commits some as 0644). Symlinks are not followed. Returns how
/// many files changed.
pub fn make_sh_executable(root: &Path) -> Result<usize> {
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).with_context(|| format!("inspecting {}", p.display()))?;
        if m.is_dir() {
            for name in list_dir(&p)? {
                stack.push(p.join(name));
            }
        } else if m.is_file() && p.extension().is_some_and(|e| e == "sh") {
            let mode = m.permissions().mode() & 0o7777;
            let want = mode | ((mode & 0o444) >> 2);
            if want != mode {
                fs::set_permissions(&p, fs::Permissions::from_mode(want))
                    .with_context(|| format!("setting the mode of {}", p.display()))?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Like [`write_atomic`], but the file gets exactly `mode` (set on the temp file before the
/// rename, so the path never has another mode).
pub fn write_atomic_mode(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    replace_file(path, contents, mode, true)
}

/// Renames `from` to `to` only if `to` does not exist (Linux `renameat2(RENAME_NOREPLACE)`: an
/// entry that appeared at `to` is never silently replaced), then syncs both parent directories.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).with_context(|| {
        format!(
            "renaming {} to {} (renameat2 RENAME_NOREPLACE)",
            from.display(),
            to.display()
        )
    })?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // no temp files left behind
        assert_eq!(list_dir(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn exchange_swaps_two_trees() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(a.join("x"), "A").unwrap();
        fs::write(b.join("x"), "B").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(a.join("x")).unwrap(), "B");
        assert_eq!(fs::read_to_string(b.join("x")).unwrap(), "A");
    }

    #[test]
    fn copy_tree_keeps_symlinks_modes_and_refuses_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sub/run"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("sub/run", src.join("link")).unwrap();
        copy_tree(&src, &dir.path().join("dst"), false).unwrap();
        let dst = dir.path().join("dst");
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("sub/run")
        );
        assert_eq!(
            fs::metadata(dst.join("sub/run")).unwrap().mode() & 0o777,
            0o755
        );

        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = copy_tree(&src, &dir.path().join("dst2"), false).unwrap_err();
        assert!(format!("{err:#}").contains("fifo"), "{err:#}");
    }

    #[test]
    fn unsynced_copy_keeps_symlinks_and_modes_and_syncfs_names_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sub/run"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("sub/run", src.join("link")).unwrap();
        let dst = dir.path().join("dst");
        copy_tree_unsynced(&src, &dst).unwrap();
        sync_filesystem(&dst).unwrap();
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("sub/run")
        );
        assert_eq!(
            fs::read_to_string(dst.join("sub/run")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_eq!(
            fs::metadata(dst.join("sub/run")).unwrap().mode() & 0o777,
            0o750
        );
        let missing = dir.path().join("missing");
        let err = format!("{:#}", sync_filesystem(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn lock_is_exclusive_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = RunLock::acquire(&p, false).unwrap();
        let err = RunLock::acquire(&p, false).unwrap_err();
        let lh = err.downcast_ref::<LockHeld>().unwrap();
        assert_eq!(lh.pid, Some(std::process::id()));
        drop(held);
        RunLock::acquire(&p, false).unwrap();
    }

    #[test]
    fn remove_all_handles_read_only_dirs_and_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("ro")).unwrap();
        fs::write(t.join("ro/f"), "x").unwrap();
        fs::set_permissions(t.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_all(&t).unwrap();
        assert!(!t.exists());
        remove_all(&t).unwrap();
    }
}
