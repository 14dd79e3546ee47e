//! Reading the repository's global index and rewriting the installed one from the module
//! directories; finding an installed module by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::fault;
use crate::git::SyncedRepo;
use crate::global_index::GlobalIndex;
use crate::layout::Layout;
use crate::module;

/// The repository's global index, when it can be read (a symlink or a bad file is a warning).
pub(super) fn load_repo_index(synced: &SyncedRepo) -> Option<GlobalIndex> {
    let path = synced.path.join("index.json");
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
        log::warn!("ignoring {}: it is a symlink", path.display());
        return None;
    }
    match GlobalIndex::load(&path) {
        Ok(i) => i,
        Err(e) => {
            log::warn!("ignoring the repository's global index: {e:#}");
            None
        }
    }
}

/// Rewrites `packages` from what is in the module directories: each installed module with its
/// installed version. A module whose index cannot be read keeps its previous entry.
pub(super) fn write_index(layout: &Layout, index: &mut GlobalIndex) -> Result<()> {
    let previous: BTreeMap<String, String> = index.packages().into_iter().collect();
    let mut packages = Vec::new();
    for (name, index) in module::installed(&layout.modules())? {
        match index {
            Ok(m) => packages.push((name, m.version.to_string())),
            Err(e) => {
                if let Some(v) = previous.get(&name) {
                    packages.push((name.clone(), v.clone()));
                }
                log::warn!("index entry of {name} kept as it was: {e:#}");
            }
        }
    }
    index.set_packages(&packages);
    index.save()?;
    fault::at(fault::Point::IndexWritten, "");
    Ok(())
}

/// The directory of installed module `name`, or why there is none.
pub(super) fn installed_module(layout: &Layout, name: &str) -> Result<PathBuf> {
    module::check_name(name)?;
    let dir = layout.module(name);
    if !dir.is_dir() {
        bail!(
            "module {name} is not installed in {}",
            layout.modules().display()
        );
    }
    Ok(dir)
}
