//! The debug hooks of a framework install: its crash points (`UPDATER_CRASH_AT`, through
//! `fault`) and its injected failures (`UPDATER_FRAMEWORK_FAIL_AT`, armed by the settings stage),
//! and the name its row and points carry.

use std::sync::OnceLock;

use anyhow::Result;

/// The crash points of a framework install, in order (`UPDATER_CRASH_AT=<point>`):
/// `framework_first_switched` comes after the first root entry was switched and
/// `framework_before_last` before the last one (both with the root holding a mix of old and new
/// entries, which the repair must undo), `framework_finishing` in the clean-up after the commit.
pub const POINTS: &[&str] = &[
    "framework_journal",
    "framework_staged",
    "framework_switching",
    "framework_first_switched",
    "framework_before_last",
    "framework_switched",
    "framework_committing",
    "framework_finishing",
    "framework_committed",
    "framework_recovering",
];

/// The name of the framework's row in reports and of its crash points' subject.
pub const ROW_NAME: &str = "framework";

/// The value of `UPDATER_FRAMEWORK_FAIL_AT`, set once by `commands::settings::environment`.
static FAIL_AT: OnceLock<Option<String>> = OnceLock::new();

/// Arms the injected failures with the value of `UPDATER_FRAMEWORK_FAIL_AT` (the first call
/// wins; the settings stage reads the environment).
pub fn arm_failure(fail_at: Option<String>) {
    let _ = FAIL_AT.set(fail_at);
}

/// In debug builds, `UPDATER_FRAMEWORK_FAIL_AT=<point>` makes the install fail with an error at
/// that point (`framework_staged`, `framework_before_last` or `framework_switched`), to test the
/// in-process rollback as a full disk would trigger it. Release builds never fail here.
pub(super) fn fail_point(name: &str) -> Result<()> {
    #[cfg(debug_assertions)]
    {
        if FAIL_AT.get().is_some_and(|p| p.as_deref() == Some(name)) {
            anyhow::bail!("injected failure at {name} (UPDATER_FRAMEWORK_FAIL_AT)");
        }
    }
    let _ = name;
    Ok(())
}
