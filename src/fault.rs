//! Named crash points for the fault suite. In debug builds (what `cargo test` builds), setting
//! `UPDATER_CRASH_AT=<point>` or `<point>:<module>` makes the process kill itself with SIGKILL
//! when it reaches that point, exactly as a power cut would stop it. Release builds compile every
//! point to nothing. The variable is read by `commands::settings`, which arms this module.

use std::sync::OnceLock;

/// A crash point of a module's update, in the order an update passes them. The spelling in
/// `UPDATER_CRASH_AT` is [`Point::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    JournalStaging,
    Staged,
    Swapping,
    Swapped,
    EntryStarted,
    EntryDone,
    HealthDone,
    Committing,
    BackupKept,
    Committed,
    RolledBack,
    IndexWritten,
    Recovering,
    /// `metadata.prepare` succeeded; nothing installed has changed yet (lifecycle).
    Prepared,
    /// A health check failed and is about to be tried again (lifecycle).
    HealthRetry,
    /// The old copy is back after a failed update; its rollback step is about to run
    /// (lifecycle: in the run, or in the next run's repair).
    Restarting,
}

impl Point {
    /// Every point, in the order a module's update passes them.
    pub const ALL: [Point; 13] = [
        Point::JournalStaging,
        Point::Staged,
        Point::Swapping,
        Point::Swapped,
        Point::EntryStarted,
        Point::EntryDone,
        Point::HealthDone,
        Point::Committing,
        Point::BackupKept,
        Point::Committed,
        Point::RolledBack,
        Point::IndexWritten,
        Point::Recovering,
    ];

    /// The name in `UPDATER_CRASH_AT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Point::JournalStaging => "journal_staging",
            Point::Staged => "staged",
            Point::Swapping => "swapping",
            Point::Swapped => "swapped",
            Point::EntryStarted => "entry_started",
            Point::EntryDone => "entry_done",
            Point::HealthDone => "health_done",
            Point::Committing => "committing",
            Point::BackupKept => "backup_kept",
            Point::Committed => "committed",
            Point::RolledBack => "rolled_back",
            Point::IndexWritten => "index_written",
            Point::Recovering => "recovering",
            Point::Prepared => "prepared",
            Point::HealthRetry => "health_retry",
            Point::Restarting => "restarting",
        }
    }
}

impl Point {
    /// The points of the lifecycle steps (`lifecycle`), reached only by modules that declare
    /// them (a `prepare`, `health_retries`) or by a failed update; `tests/it/lifecycle.rs`
    /// covers them, so they are kept out of [`Point::ALL`], which the fault suite runs for every
    /// module.
    pub const LIFECYCLE: [Point; 3] = [Point::Prepared, Point::HealthRetry, Point::Restarting];
}

/// Every point's name, in the order a module's update passes them.
pub const POINTS: &[&str] = &[
    Point::JournalStaging.as_str(),
    Point::Staged.as_str(),
    Point::Swapping.as_str(),
    Point::Swapped.as_str(),
    Point::EntryStarted.as_str(),
    Point::EntryDone.as_str(),
    Point::HealthDone.as_str(),
    Point::Committing.as_str(),
    Point::BackupKept.as_str(),
    Point::Committed.as_str(),
    Point::RolledBack.as_str(),
    Point::IndexWritten.as_str(),
    Point::Recovering.as_str(),
];

/// The value of `UPDATER_CRASH_AT`, set once by `commands::settings::environment`.
static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Arms the points with the value of `UPDATER_CRASH_AT` (the first call wins).
pub fn arm(crash_at: Option<String>) {
    let _ = ARMED.set(crash_at);
}

/// Dies here if `UPDATER_CRASH_AT` names this point (and module, when given).
#[inline]
pub fn at(point: Point, module: &str) {
    named(point.as_str(), module);
}

/// [`at`] for points named outside [`Point`] (the framework's `framework_*` points, listed in
/// `framework::POINTS`).
#[inline]
pub fn point(name: &str, module: &str) {
    named(name, module);
}

#[inline]
fn named(name: &str, module: &str) {
    #[cfg(debug_assertions)]
    {
        if let Some(Some(want)) = ARMED.get() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_names_are_unique_and_listed_in_order() {
        let names: Vec<&str> = Point::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, POINTS);
        let mut names = names;
        names.extend(Point::LIFECYCLE.iter().map(|p| p.as_str()));
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
