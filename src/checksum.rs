//! The legacy manifest checksum of a module directory (SPEC §6).

use anyhow::Result;

use crate::config::Config;
use crate::ExitStatus;

/// `updater checksum NAME`.
pub fn command(_cfg: &Config, _name: &str) -> Result<ExitStatus> {
    crate::commands::not_implemented("checksum")
}
