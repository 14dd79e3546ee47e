//! updater's own `updateManager.sh` at the install root: the project's wrapper with a marker
//! line, written when missing, foreign (the repository's, kept aside) or an older copy of ours.

use anyhow::{bail, Result};

use crate::fs;
use crate::layout::Layout;

/// Marker line that identifies updater's own `updateManager.sh`.
pub const WRAPPER_MARKER: &str =
    "# updater-wrapper: written by updater; never replaced by the repository's updateManager.sh";

/// The project's wrapper, embedded.
const WRAPPER: &str = include_str!("../../updateManager.sh");

/// The wrapper as updater writes it: the project's `updateManager.sh` with the marker line after
/// its first (shebang) line.
pub fn wrapper_text() -> String {
    if WRAPPER.contains(WRAPPER_MARKER) {
        return WRAPPER.to_string();
    }
    match WRAPPER.split_once('\n') {
        Some((first, rest)) if first.starts_with("#!") => {
            format!("{first}\n{WRAPPER_MARKER}\n{rest}")
        }
        _ => format!("{WRAPPER_MARKER}\n{WRAPPER}"),
    }
}

/// Writes updater's wrapper to `<root>/updateManager.sh` (0755, atomically) when it is missing,
/// is not ours (no marker line: the repository's, which runs the Python orchestrator), or is an
/// older copy of ours. A replaced foreign wrapper is kept under `.updater/framework/`.
pub fn ensure_wrapper(layout: &Layout) -> Result<()> {
    let path = layout.wrapper();
    let want = wrapper_text();
    let meta = std::fs::symlink_metadata(&path).ok();
    let current = match &meta {
        Some(m) if m.is_file() => std::fs::read(&path).ok(),
        _ => None,
    };
    let mode_ok = meta.as_ref().is_some_and(|m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777 == 0o755
    });
    if current.as_deref() == Some(want.as_bytes()) && mode_ok {
        return Ok(());
    }
    let ours = current.as_deref().is_some_and(|c| {
        String::from_utf8_lossy(c)
            .lines()
            .any(|l| l == WRAPPER_MARKER)
    });
    if meta.is_some() && !ours {
        // Kept (a copy) before ours replaces it in one rename: the path is never missing.
        let keep = layout.framework().join("replaced-updateManager.sh");
        match current.as_deref() {
            Some(bytes) => fs::write_atomic(&keep, bytes)?,
            None => log::warn!("{} is not a regular file; replacing it", path.display()),
        }
        log::warn!(
            "Replacing {} (not updater's wrapper) with updater's own; the old one is kept at {}",
            path.display(),
            keep.display()
        );
    }
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        bail!(
            "{} is a directory; cannot write updater's wrapper there",
            path.display()
        );
    }
    fs::write_atomic_mode(&path, want.as_bytes(), 0o755)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_text_carries_the_marker_after_the_shebang() {
        let t = wrapper_text();
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("#!"));
        assert!(t.lines().any(|l| l == WRAPPER_MARKER));
    }
}
