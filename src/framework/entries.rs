//! Which files make the framework: the repository's offer (`metadata.framework` or the default
//! names that exist, and `metadata.schema_version`), the checks every entry passes (a single
//! name at the root, not reserved; in the clone a file, a checked directory or a symlink that stays
//! inside), `installed.json` (the entries updater installed) and the earlier symlink layout's
//! names (`current/<name>` links, `gen-<N>/`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fs;
use crate::global_index::GlobalIndex;
use crate::layout::Layout;
use crate::version::Version;

/// The framework entries taken when the repository index names none (those that exist).
pub const DEFAULT_ENTRIES: &[&str] = &[
    "__init__.py",
    "index.py",
    "utils",
    "setup_venv.sh",
    "requirements.txt",
];

/// Root names a framework entry may never take: the modules, the indexes, our state, our wrapper,
/// the virtualenv, the legacy manifest.
const RESERVED: &[&str] = &[
    "modules",
    "index.json",
    "updateManager.sh",
    "venv",
    "manifest.json",
];

/// At most this many entries in `metadata.framework`.
const MAX_ENTRIES: usize = 64;

/// What the repository offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Offer {
    pub(super) entries: Vec<String>,
    pub(super) version: Option<String>,
}

/// Checks one entry of `metadata.framework` (or a default name): a single name at the repository
/// root (a trailing `/` is allowed), no `.`/`..`, no leading dot, only `[A-Za-z0-9._+-]`, at most
/// 128 bytes, and none of the reserved names. Returns the name without the slash.
pub fn validate_entry(raw: &str) -> Result<String> {
    let name = raw.strip_suffix('/').unwrap_or(raw);
    let shown = raw.escape_debug();
    if name.is_empty() {
        bail!("framework entry \"{shown}\" is empty");
    }
    if name.starts_with('/') {
        bail!("framework entry \"{shown}\" is an absolute path");
    }
    if name.split('/').any(|c| c == "..") {
        bail!("framework entry \"{shown}\" contains `..`");
    }
    if name.contains('/') {
        bail!("framework entry \"{shown}\" must name a file or directory at the repository root");
    }
    if name.len() > 128 {
        bail!("framework entry \"{shown}\" is longer than 128 bytes");
    }
    if name.starts_with('.') {
        bail!("framework entry \"{shown}\" starts with a dot (`.updater`, `.git` and the like are never framework files)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        bail!("framework entry \"{shown}\" has characters outside [A-Za-z0-9._+-]");
    }
    if RESERVED.contains(&name) {
        bail!("framework entry \"{shown}\" is reserved (modules, index.json, updateManager.sh, venv and manifest.json are never framework files)");
    }
    Ok(name.to_string())
}

/// Reads the repository's framework list and version, and checks every entry in the clone.
pub(super) fn offer(repo_root: &Path, repo_index: Option<&GlobalIndex>) -> Result<Offer> {
    let index_path = repo_root.join("index.json");
    let meta = repo_index.and_then(|i| i.doc.get("metadata"));
    let version = match meta.and_then(|m| m.get("schema_version")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            Version::from_json(v)
                .with_context(|| {
                    format!(
                        "{}: metadata.schema_version cannot be read",
                        index_path.display()
                    )
                })?
                .to_string(),
        ),
    };
    let entries = match meta.and_then(|m| m.get("framework")) {
        None | Some(Value::Null) => DEFAULT_ENTRIES
            .iter()
            .filter(|n| fs::exists_no_follow(&repo_root.join(n)))
            .map(|n| n.to_string())
            .collect(),
        Some(Value::Array(list)) => {
            if list.len() > MAX_ENTRIES {
                bail!(
                    "{}: metadata.framework has more than {MAX_ENTRIES} entries",
                    index_path.display()
                );
            }
            let mut out: Vec<String> = Vec::new();
            for v in list {
                let Value::String(s) = v else {
                    bail!(
                        "{}: metadata.framework must be a list of names, found {v}",
                        index_path.display()
                    );
                };
                let name = validate_entry(s)
                    .with_context(|| format!("{}: metadata.framework", index_path.display()))?;
                if out.contains(&name) {
                    bail!(
                        "{}: metadata.framework names {name} twice",
                        index_path.display()
                    );
                }
                out.push(name);
            }
            out
        }
        Some(other) => bail!(
            "{}: metadata.framework must be a list of names, found {other}",
            index_path.display()
        ),
    };
    for name in &entries {
        check_repo_entry(repo_root, name)?;
    }
    Ok(Offer { entries, version })
}

/// A framework entry in the clone must exist, and be a regular file, a directory whose tree
/// passes the module checks (no symlink leaving it, no device, socket or fifo), or a symlink
/// that resolves inside the repository.
pub(super) fn check_repo_entry(repo_root: &Path, name: &str) -> Result<()> {
    let path = repo_root.join(name);
    let meta = std::fs::symlink_metadata(&path).with_context(|| {
        format!(
            "framework entry {name}: {} is missing from the repository",
            path.display()
        )
    })?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(&path)
            .with_context(|| format!("reading symlink {}", path.display()))?;
        let real_root = std::fs::canonicalize(repo_root)
            .with_context(|| format!("resolving {}", repo_root.display()))?;
        let inside = !target.is_absolute()
            && std::fs::canonicalize(&path).ok().is_some_and(|t| {
                t.starts_with(&real_root) && !t.starts_with(real_root.join(".git"))
            });
        if !inside {
            bail!(
                "framework entry {name}: symlink {} points outside the repository (to {}); refused",
                path.display(),
                target.display()
            );
        }
    } else if ft.is_dir() {
        crate::module::check_tree(&path)
            .with_context(|| format!("framework entry {name} is refused"))?;
    } else if !ft.is_file() {
        bail!(
            "framework entry {name}: {} is a device, socket or fifo",
            path.display()
        );
    }
    Ok(())
}

/// The link an earlier updater made at a root entry: `.updater/framework/current/<name>`.
pub(super) fn legacy_link_target(name: &str) -> PathBuf {
    Path::new(".updater/framework/current").join(name)
}

/// Whether `<root>/<name>` is a link of the earlier symlink layout (migrated to real files).
pub(super) fn is_legacy_link(layout: &Layout, name: &str) -> bool {
    std::fs::read_link(layout.root.join(name)).is_ok_and(|t| t == legacy_link_target(name))
}

/// The root names that are links of the earlier symlink layout.
pub(super) fn legacy_links(layout: &Layout) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in fs::list_dir(&layout.root)? {
        let name = name.to_string_lossy().to_string();
        if validate_entry(&name).is_ok_and(|v| v == name) && is_legacy_link(layout, &name) {
            out.push(name);
        }
    }
    Ok(out)
}

pub(super) fn gen_number(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The generation the earlier layout's `current` link points to, if any (a link to anything
/// but `gen-<N>` is not ours and is ignored).
pub(super) fn legacy_current_gen(layout: &Layout) -> Option<PathBuf> {
    let t = std::fs::read_link(layout.framework().join("current")).ok()?;
    let t = t.to_str()?;
    gen_number(t, "gen-").map(|_| layout.framework().join(t))
}

/// `.updater/framework/installed.json`: the root entries updater installed (so that they are
/// ours to back up and replace; anything else at those names is moved aside and kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Installed {
    pub(super) entries: Vec<String>,
    pub(super) version: Option<String>,
}

pub(super) fn installed_path(layout: &Layout) -> PathBuf {
    layout.framework().join("installed.json")
}

pub(super) fn load_installed(layout: &Layout) -> Result<Option<Installed>> {
    let p = installed_path(layout);
    let text = match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("reading {}", p.display()))?,
    };
    let corrupt = || {
        format!(
            "{} is corrupt (it lists the framework files updater installed); remove it and sync again",
            p.display()
        )
    };
    let i: Installed = serde_json::from_str(&text).with_context(corrupt)?;
    if !i
        .entries
        .iter()
        .all(|n| validate_entry(n).is_ok_and(|v| &v == n))
    {
        return Err(anyhow::anyhow!("a name in it is not a framework name")).with_context(corrupt);
    }
    Ok(Some(i))
}

/// The installed framework version: the installed index's `metadata.schema_version`.
pub(super) fn installed_version(installed: Option<&GlobalIndex>) -> Option<String> {
    installed
        .and_then(|i| i.doc.get("metadata"))
        .and_then(|m| m.get("schema_version"))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

/// Sets the installed index's `metadata.schema_version` (the framework's version), unless it is
/// already that.
pub(super) fn set_installed_schema(layout: &Layout, v: &str) -> Result<()> {
    let mut index =
        GlobalIndex::load(&layout.index())?.unwrap_or_else(|| GlobalIndex::empty(&layout.index()));
    if installed_version(Some(&index)).as_deref() != Some(v) {
        index.set_metadata("schema_version", v);
        index.save()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_could_escape_or_collide_are_refused() {
        for bad in [
            "",
            "/etc",
            "../x",
            "a/../b",
            "utils/x.py",
            ".updater",
            ".git",
            "modules",
            "modules/",
            "index.json",
            "updateManager.sh",
            "venv",
            "manifest.json",
            "a\nb",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_entry(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(validate_entry("utils/").unwrap(), "utils");
        assert_eq!(validate_entry("__init__.py").unwrap(), "__init__.py");
    }
}
