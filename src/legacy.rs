//! Legacy manifest mode (SPEC §6).

use anyhow::Result;

use crate::config::Config;
use crate::ExitStatus;

/// `updater legacy` / `updater --legacy`.
pub fn run(_cfg: &Config) -> Result<ExitStatus> {
    crate::commands::not_implemented("legacy")
}
