//! `updater enable NAME` / `updater disable NAME`: flip the module's `enabled` and record the
//! machine's choice, which holds the module across updates.

use anyhow::Result;

use super::index::installed_module;
use crate::config::Config;
use crate::module::ModuleIndex;
use crate::ExitStatus;

/// `updater enable NAME` / `updater disable NAME`.
pub fn set_enabled(cfg: &Config, name: &str, enabled: bool) -> Result<ExitStatus> {
    let session = super::open(cfg, true)?;
    let dir = installed_module(&session.layout, name)?;
    let mut index = ModuleIndex::load(&dir)?;
    if index.enabled == enabled {
        log::info!(
            "Module {name} is already {}",
            if enabled { "enabled" } else { "disabled" }
        );
    } else {
        index.set_enabled(enabled)?;
        if enabled {
            log::info!("Module {name} enabled: the next sync updates it again");
        } else {
            log::info!(
                "Module {name} disabled: held at {} until `updater enable {name}`",
                index.version
            );
        }
    }
    // The machine's own choice: kept across updates, and a `false` holds the module.
    crate::preserve::MachineChoices::record(&session.layout, name, enabled)?;
    Ok(ExitStatus::Success)
}
