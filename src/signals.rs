//! A clean stop on SIGTERM or SIGINT (LESSONS 11): the first signal sets a flag; modules already
//! running finish (entry, health check, then commit or rollback), no new module starts, and the
//! run ends with exit 3 and a consistent install root. A second signal is not special: the
//! journal makes even a hard kill safe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Installs the handlers (once per process).
pub fn install() -> Result<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .with_context(|| format!("installing the handler for signal {sig}"))?;
    }
    Ok(())
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
