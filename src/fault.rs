//! Named crash points for the fault suite. In debug builds (what `cargo test` builds), setting
//! `UPDATER_CRASH_AT=<point>` or `<point>:<module>` makes the process kill itself with SIGKILL
//! when it reaches that point, exactly as a power cut would stop it. Release builds compile every
//! point to nothing.

/// Every point, in the order a module's update passes them.
pub const POINTS: &[&str] = &[
    "journal_staging",
    "staged",
    "swapping",
    "swapped",
    "entry_started",
    "entry_done",
    "health_done",
    "committing",
    "backup_kept",
    "committed",
    "rolled_back",
    "index_written",
    "recovering",
];

/// Dies here if `UPDATER_CRASH_AT` names this point (and module, when given).
#[inline]
pub fn point(name: &str, module: &str) {
    #[cfg(debug_assertions)]
    {
        if let Ok(want) = std::env::var("UPDATER_CRASH_AT") {
            let (p, m) = match want.split_once(':') {
                Some((p, m)) => (p, Some(m)),
                None => (want.as_str(), None),
            };
            if p == name && m.is_none_or(|m| m == module) {
                log::error!("UPDATER_CRASH_AT={want}: killing this process at {name} ({module})");
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
        }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (name, module);
    }
}
