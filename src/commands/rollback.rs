//! `updater rollback NAME`: put a module's kept previous copy back.

use anyhow::{bail, Context, Result};

use super::index::write_index;
use crate::config::Config;
use crate::fs;
use crate::global_index::GlobalIndex;
use crate::module::{self, ModuleIndex};
use crate::state::State;
use crate::ExitStatus;

/// `updater rollback NAME`: swaps the kept previous copy back in (the current copy becomes the
/// backup, so a rollback can itself be undone) and rewrites the index entry.
pub fn rollback(cfg: &Config, name: &str) -> Result<ExitStatus> {
    let session = super::open(cfg, true)?;
    let layout = &session.layout;
    module::check_name(name)?;
    let backup = layout.backup_of(name);
    if !backup.is_dir() {
        bail!(
            "module {name} has no kept previous copy ({} does not exist)",
            backup.display()
        );
    }
    let kept =
        ModuleIndex::load(&backup).with_context(|| format!("reading the kept copy of {name}"))?;
    let installed = layout.module(name);
    let from = if installed.is_dir() {
        let current = ModuleIndex::load(&installed)
            .map(|m| m.version.to_string())
            .ok();
        fs::exchange(&backup, &installed)?;
        current
    } else {
        fs::create_dir_all(&layout.modules())?;
        fs::rename(&backup, &installed)?;
        None
    };
    let mut index =
        GlobalIndex::load(&layout.index())?.unwrap_or_else(|| GlobalIndex::empty(&layout.index()));
    write_index(layout, &mut index)?;
    let mut state = State::load(&layout.state_file())?;
    state.record(
        name,
        crate::outcome::ROLLBACK_WORD,
        Some(&kept.version.to_string()),
        None,
    );
    state.save()?;
    log::info!(
        "Module {name} rolled back: {} → {}. The next sync updates it again unless you run `updater disable {name}`",
        from.as_deref().unwrap_or("none"),
        kept.version
    );
    Ok(ExitStatus::Success)
}
