//! Which file of a module runs (SPEC §5 entry order) and how: [`Program`], [`resolve_entry`], and
//! where a module sits in its install root ([`install_root`], SPEC §10).

use anyhow::{bail, Context, Result};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// How to start a module's entry point or health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// An executable file inside the module (absolute path), run directly.
    Executable(PathBuf),
    /// A Python file (absolute path; normally `index.py`) defining `main(args)`, run in its own
    /// Python process.
    PythonMain(PathBuf),
    /// A program with fixed arguments (absolute path, possibly outside the module), e.g.
    /// updater itself as a Docker Compose module's steps (`updater compose up …`).
    Exec(PathBuf, Vec<String>),
}

impl Program {
    /// The file that runs.
    pub fn path(&self) -> &Path {
        match self {
            Program::Executable(path) | Program::PythonMain(path) | Program::Exec(path, _) => path,
        }
    }
}

/// Finds a module's entry point, SPEC §5 order: `declared` (`metadata.entry`, relative to the
/// module), else `index.py` (run as [`Program::PythonMain`]), else an executable `update`, else
/// `Ok(None)`.
///
/// A declared entry ending in `.py` runs as [`Program::PythonMain`], any other as
/// [`Program::Executable`]. Also resolves a declared health check the same way.
///
/// Errors, each naming the path: the module directory is missing; the declared entry is absolute,
/// leaves the module, does not exist or is not a regular file; an entry to run as an executable has
/// no execute bit; `index.py` is not a regular file.
pub fn resolve_entry(module_dir: &Path, declared: Option<&str>) -> Result<Option<Program>> {
    let module_dir = std::path::absolute(module_dir)
        .with_context(|| format!("cannot resolve module directory {}", module_dir.display()))?;
    match fs::metadata(&module_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "module directory {} is not a directory",
            module_dir.display()
        ),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read module directory {}", module_dir.display()))
        }
    }

    if let Some(declared) = declared {
        let relative = Path::new(declared);
        let inside = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if declared.is_empty() || !inside {
            bail!(
                "declared entry {declared:?} of {} is not a relative path inside the module",
                module_dir.display()
            );
        }
        let path = module_dir.join(relative);
        let Some(meta) = file_metadata(&path, "declared entry")? else {
            bail!("declared entry {} does not exist", path.display());
        };
        if !meta.is_file() {
            bail!("declared entry {} is not a regular file", path.display());
        }
        if declared.ends_with(".py") {
            return Ok(Some(Program::PythonMain(path)));
        }
        ensure_executable(&path, &meta)?;
        return Ok(Some(Program::Executable(path)));
    }

    let index = module_dir.join("index.py");
    if let Some(meta) = file_metadata(&index, "entry")? {
        if !meta.is_file() {
            bail!("entry {} is not a regular file", index.display());
        }
        return Ok(Some(Program::PythonMain(index)));
    }

    let update = module_dir.join("update");
    match file_metadata(&update, "entry")? {
        None => Ok(None),
        Some(meta) => {
            if !meta.is_file() {
                bail!("entry {} is not a regular file", update.display());
            }
            ensure_executable(&update, &meta)?;
            Ok(Some(Program::Executable(update)))
        }
    }
}

/// Metadata of `path` (following symlinks), `None` when it does not exist.
fn file_metadata(path: &Path, what: &str) -> Result<Option<fs::Metadata>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot inspect {what} {}", path.display())),
    }
}

fn ensure_executable(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        bail!(
            "entry {} is not executable (mode {:04o})",
            path.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// The install root and module name of a module directory `<root>/modules/<name>` (SPEC §10), or
/// `None` for a module elsewhere (or with a name that is not UTF-8).
pub fn install_root(module_dir: &Path) -> Option<(PathBuf, String)> {
    let name = module_dir.file_name()?.to_str()?;
    let modules = module_dir.parent()?;
    if modules.file_name()? != "modules" {
        return None;
    }
    Some((modules.parent()?.to_path_buf(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::tests::{fixture, write};

    #[test]
    fn resolve_entry_order() {
        let f = fixture("mod");
        assert_eq!(resolve_entry(&f.dir, None).expect("empty"), None);

        write(&f.dir.join("update"), "#!/bin/sh\n", 0o755);
        assert_eq!(
            resolve_entry(&f.dir, None).expect("update"),
            Some(Program::Executable(f.dir.join("update")))
        );

        write(
            &f.dir.join("index.py"),
            "def main(args):\n    return True\n",
            0o644,
        );
        assert_eq!(
            resolve_entry(&f.dir, None).expect("index.py"),
            Some(Program::PythonMain(f.dir.join("index.py")))
        );

        write(&f.dir.join("bin/run"), "#!/bin/sh\n", 0o700);
        assert_eq!(
            resolve_entry(&f.dir, Some("bin/run")).expect("declared"),
            Some(Program::Executable(f.dir.join("bin/run")))
        );
        assert_eq!(
            resolve_entry(&f.dir, Some("./bin/run")).expect("declared with ./"),
            Some(Program::Executable(f.dir.join("bin/run")))
        );

        write(
            &f.dir.join("tools/go.py"),
            "def main(args):\n    return True\n",
            0o644,
        );
        assert_eq!(
            resolve_entry(&f.dir, Some("tools/go.py")).expect("declared .py"),
            Some(Program::PythonMain(f.dir.join("tools/go.py")))
        );
    }

    #[test]
    fn resolve_entry_errors_name_the_path() {
        let f = fixture("mod");
        let err = format!("{:#}", resolve_entry(&f.dir, Some("nope.sh")).unwrap_err());
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            err.contains(&f.dir.join("nope.sh").display().to_string()),
            "{err}"
        );

        write(&f.dir.join("run.sh"), "#!/bin/sh\n", 0o644);
        let err = format!("{:#}", resolve_entry(&f.dir, Some("run.sh")).unwrap_err());
        assert!(
            err.contains("not executable") && err.contains("run.sh"),
            "{err}"
        );

        fs::create_dir(f.dir.join("subdir")).expect("mkdir");
        let err = format!("{:#}", resolve_entry(&f.dir, Some("subdir")).unwrap_err());
        assert!(
            err.contains("not a regular file") && err.contains("subdir"),
            "{err}"
        );

        for escaping in ["../other/update", "/bin/sh", "a/../../b", ""] {
            let err = format!("{:#}", resolve_entry(&f.dir, Some(escaping)).unwrap_err());
            assert!(err.contains("inside the module"), "{escaping}: {err}");
        }

        write(&f.dir.join("update"), "#!/bin/sh\n", 0o644);
        let err = format!("{:#}", resolve_entry(&f.dir, None).unwrap_err());
        assert!(err.contains("not executable"), "{err}");
        assert!(
            err.contains(&f.dir.join("update").display().to_string()),
            "{err}"
        );

        let missing = f.dir.join("missing");
        let err = format!("{:#}", resolve_entry(&missing, None).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}
