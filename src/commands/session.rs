//! The session opener: every command that touches the install root starts with [`open`], so
//! none can skip the permission check or the repair.

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::fs::{self, RunLock};
use crate::layout::Layout;
use crate::recover;

/// An open run: the lock is held for as long as this lives.
pub(crate) struct Session {
    pub(crate) layout: Layout,
    _lock: RunLock,
}

/// Takes the lock (creating `.updater/` first, nothing else), then repairs when `writes`. Every
/// command that touches the install root starts here, so none can skip the permission check or
/// the repair.
pub(crate) fn open(cfg: &Config, writes: bool) -> Result<Session> {
    let layout = Layout::new(&cfg.modules_path);
    fs::restrict_umask();
    if layout.root.exists() && !layout.root.is_dir() {
        bail!(
            "--modules-path {} is not a directory",
            layout.root.display()
        );
    }
    fs::create_dir_all(&layout.state_dir())?;
    crate::perms::refuse_unsafe_run_paths(&layout, &super::settings::clone_path(cfg, &layout))?;
    let lock = RunLock::acquire(&layout.lock(), cfg.wait)?;
    if writes {
        recover::recover(&layout).context("repairing what an interrupted run left")?;
        crate::framework::recover(&layout).context("repairing an interrupted framework update")?;
        // Lifecycle: modules whose interrupted update was undone get their old copy restarted.
        let installed = crate::global_index::GlobalIndex::load(&layout.index())
            .ok()
            .flatten();
        let python = super::settings::python(cfg, installed.as_ref());
        crate::lifecycle::restart_pending(&layout, &python)
            .context("restarting the old copies of interrupted updates")?;
    } else {
        for p in recover::pending(&layout)?
            .into_iter()
            .chain(crate::framework::pending(&layout)?)
        {
            log::warn!("Pending repair (the next sync does it): {p}");
        }
    }
    Ok(Session {
        layout,
        _lock: lock,
    })
}
