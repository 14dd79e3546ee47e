//! Where everything lives under the install root (SPEC §3): modules, the global index, and the
//! `.updater/` state directory (lock, journal, staging, backups, clone, logs, state file).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    /// `<root>/modules`
    pub fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }
    /// `<root>/modules/<name>`; `name` must already be a validated module name.
    pub fn module(&self, name: &str) -> PathBuf {
        self.modules().join(name)
    }
    /// `<root>/index.json`
    pub fn index(&self) -> PathBuf {
        self.root.join("index.json")
    }
    /// `<root>/.updater`
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".updater")
    }
    pub fn lock(&self) -> PathBuf {
        self.state_dir().join("lock")
    }
    pub fn journal(&self) -> PathBuf {
        self.state_dir().join("journal.json")
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }
    pub fn staging(&self) -> PathBuf {
        self.state_dir().join("staging")
    }
    /// What recovery could not finish, set aside for a person (see `transaction::quarantine`).
    pub fn quarantine(&self) -> PathBuf {
        self.state_dir().join("quarantine")
    }
    /// The process groups of running entries (see `transaction::pgid_file`).
    pub fn running(&self) -> PathBuf {
        self.state_dir().join("running")
    }
    pub fn backup(&self) -> PathBuf {
        self.state_dir().join("backup")
    }
    /// The copy that `name`'s last update replaced, kept for `rollback`.
    pub fn backup_of(&self, name: &str) -> PathBuf {
        self.backup().join(name)
    }
    pub fn default_clone(&self) -> PathBuf {
        self.state_dir().join("repo")
    }
    pub fn logs(&self) -> PathBuf {
        self.state_dir().join("logs")
    }
    /// `<root>/.updater/framework`: the framework's staging (`swap-<N>/`), its `backup/`, the list
    /// of entries updater installed, displaced files and the framework journal (names that can
    /// never be module paths).
    pub fn framework(&self) -> PathBuf {
        self.state_dir().join("framework")
    }
    /// `<root>/.updater/hooks/post-sync.d`: executables run after every sync.
    pub fn post_sync_hooks(&self) -> PathBuf {
        self.state_dir().join("hooks").join("post-sync.d")
    }
    /// `<root>/updateManager.sh`: updater's own wrapper (never the repository's).
    pub fn wrapper(&self) -> PathBuf {
        self.root.join("updateManager.sh")
    }
}
