//! Which Python interpreter runs `main(args)` modules (SPEC §5), decided in one place.
//!
//! The rungs, first that applies wins: `--python PATH`; `$UPDATER_PYTHON` (a test and debug
//! override, not part of the contract); the installed global index's `metadata.python` (a relative
//! path with a directory part is taken from the install root);
//! `<modules-path>/venv/bin/python3` when it exists (where the third-party packages that
//! HOMESERVER modules import, such as `requests`, live); else `python3`, looked up in `PATH`.

use std::path::{Path, PathBuf};

use crate::global_index::GlobalIndex;

/// The variable that overrides the interpreter below `--python` (tests, debugging).
pub const PYTHON_VAR: &str = "UPDATER_PYTHON";

/// The installed global index's `metadata.python`, when it is a non-blank string.
pub fn index_python(index: &GlobalIndex) -> Option<&str> {
    index
        .doc
        .get("metadata")?
        .get("python")?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The interpreter for `main(args)` modules of the install root `modules_path`, given the
/// `--python` option, the value of [`PYTHON_VAR`] and the installed index's `metadata.python`
/// (`commands::settings` reads them). See the module comment.
pub fn choose(
    option: Option<&Path>,
    from_var: Option<&Path>,
    from_index: Option<&str>,
    modules_path: &Path,
) -> PathBuf {
    if let Some(path) = option.filter(|p| !p.as_os_str().is_empty()) {
        return path.to_path_buf();
    }
    if let Some(path) = from_var.filter(|p| !p.as_os_str().is_empty()) {
        return path.to_path_buf();
    }
    if let Some(path) = from_index.map(str::trim).filter(|p| !p.is_empty()) {
        let path = Path::new(path);
        // A relative path with a directory part (`venv/bin/python3`) is the install root's; a bare
        // name is looked up in PATH.
        if path.is_relative() && path.components().count() > 1 {
            return modules_path.join(path);
        }
        return path.to_path_buf();
    }
    let venv = modules_path.join("venv").join("bin").join("python3");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rung_of_the_interpreter_ladder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let opt = Path::new("/opt/py/bin/python3");
        let var = Path::new("/var-py");
        // Nothing: python3 on PATH.
        assert_eq!(choose(None, None, None, root), PathBuf::from("python3"));
        // The venv, once it exists.
        let venv = root.join("venv/bin/python3");
        std::fs::create_dir_all(venv.parent().expect("parent")).expect("mkdir");
        std::fs::write(&venv, "").expect("write");
        assert_eq!(choose(None, None, None, root), venv);
        // metadata.python beats the venv; blank is ignored.
        assert_eq!(
            choose(None, None, Some("/usr/bin/python3.11"), root),
            PathBuf::from("/usr/bin/python3.11")
        );
        assert_eq!(choose(None, None, Some("  "), root), venv);
        assert_eq!(
            choose(None, None, Some("env/bin/python3"), root),
            root.join("env/bin/python3")
        );
        assert_eq!(
            choose(None, None, Some("python3.12"), root),
            PathBuf::from("python3.12")
        );
        // The variable beats the index; --python beats everything.
        assert_eq!(
            choose(None, Some(var), Some("/usr/bin/python3.11"), root),
            var
        );
        assert_eq!(
            choose(Some(opt), Some(var), Some("/usr/bin/python3.11"), root),
            opt
        );
    }

    #[test]
    fn metadata_python_is_read_from_the_installed_index() {
        let path = Path::new("/x/index.json");
        let index = GlobalIndex::parse(path, r#"{"metadata": {"python": "/srv/py/bin/python3"}}"#)
            .expect("parse");
        assert_eq!(index_python(&index), Some("/srv/py/bin/python3"));
        let none = GlobalIndex::parse(path, r#"{"metadata": {}}"#).expect("parse");
        assert_eq!(index_python(&none), None);
    }
}
