//! The index cache, `.updater/index-cache.json`: what the plan needs of every module's
//! `index.json`, on both sides, so that a no-op check reads neither side's files again.
//!
//! - The repository side is read from the synced commit's tree objects (`git::CommitTree`),
//!   never from the clone's work tree. It is a pure function of the `modules` tree id: when
//!   that is unchanged, the whole side comes from the cache; else each module whose subtree id
//!   (or `index.json` blob id) is unchanged does.
//! - The installed side is trusted per module only when its `index.json`'s stat data (device,
//!   inode, size, mtime and ctime to the nanosecond, as git's index keeps them) match the
//!   cached ones. Stat data are cached only for a file last changed a few seconds before the
//!   scan that read it (no *racy* entries: an edit in the same clock tick as the read could
//!   keep the same stat data). On any mismatch the file is read and parsed again. Errors are
//!   never cached on that side.
//!
//! A missing, unreadable or corrupt cache, or one of another format or made for other paths,
//! is ignored and rebuilt; the cache is rewritten (atomically) only when something in it
//! changed. Failing to write it is a warning, never a failed run.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::git::{Blob, CommitTree, EntryKind, IndexEntry, ModulesDir};
use crate::module::{ModuleIndex, MAX_INDEX_BYTES};
use crate::plan::{self, Listed, Side};
use crate::version::Version;

/// Bumped whenever what is cached changes meaning; another format is ignored.
const FORMAT: u32 = 1;

/// The cache file of a state directory (`.updater/`).
pub fn cache_file(state_dir: &Path) -> PathBuf {
    state_dir.join("index-cache.json")
}

/// The two scanned sides of a plan.
#[derive(Debug)]
pub struct Sides {
    pub repo: Side,
    pub installed: Side,
}

/// Scans both sides through the cache at `cache`: the repository's `modules/` of commit
/// `commit` in the clone at `clone`, and the installed modules in `installed_modules`.
pub fn scan(cache: &Path, clone: &Path, commit: &str, installed_modules: &Path) -> Result<Sides> {
    let repo_modules = clone.join("modules");
    let old = load(cache, &repo_modules, installed_modules);
    let mut new = CacheFile {
        format: FORMAT,
        repo_modules: repo_modules.clone(),
        installed_modules: installed_modules.to_path_buf(),
        ..CacheFile::default()
    };
    let mut dirty = old.is_none();
    let mut old = old.unwrap_or_default();
    // Stat data are cached only for files last changed well before this scan began: any later
    // change then gets a later ctime, so equal stat data prove the file unchanged.
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 - RACY_SECS)
        .unwrap_or(0);

    let mut repo_misses = 0usize;
    let repo = repo_side(
        clone,
        commit,
        &repo_modules,
        &mut old,
        &mut new,
        &mut repo_misses,
    )?;
    dirty |= repo_misses > 0 || new.modules_tree != old.modules_tree;

    let old_installed = old.installed.len();
    let mut hits = 0usize;
    let mut installed = {
        let entries = plan::list_modules_dir(installed_modules)?;
        plan::scan_entries(installed_modules, entries, false, |name, dir| {
            let file = dir.join("index.json");
            let stamp = std::fs::symlink_metadata(&file)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| Stamp::of(&m));
            if let (Some(stamp), Some(entry)) = (stamp, old.installed.remove(name)) {
                if entry.stamp == stamp {
                    if let Ok(index) = entry.index.to_index(&file) {
                        hits += 1;
                        new.installed.insert(name.to_string(), entry);
                        return Ok(index);
                    }
                }
            }
            let mut index = ModuleIndex::load(dir)?;
            index.slim();
            if let Some(stamp) = stamp.filter(|s| s.mtime.0 < cutoff && s.ctime.0 < cutoff) {
                new.installed.insert(
                    name.to_string(),
                    InstalledEntry {
                        stamp,
                        index: Cached::of(&index),
                    },
                );
            }
            Ok(index)
        })
    };
    installed.present = crate::fs::exists_no_follow(installed_modules);
    dirty |= hits != old_installed || hits != new.installed.len();
    log::debug!(
        "index cache: {hits} of {} installed indexes unchanged, {repo_misses} repository indexes read",
        new.installed.len()
    );
    if dirty {
        save(cache, &new);
    }
    Ok(Sides { repo, installed })
}

/// How many seconds before a scan a file must have last changed for its stat data to be
/// cached (more than the coarsest file timestamp granularity in use, 2 s on FAT).
const RACY_SECS: i64 = 3;

/// The repository side, from the commit's trees, through the cache.
fn repo_side(
    clone: &Path,
    commit: &str,
    repo_modules: &Path,
    old: &mut CacheFile,
    new: &mut CacheFile,
    misses: &mut usize,
) -> Result<Side> {
    let tree = CommitTree::open(clone, commit)?;
    let (id, entries) = match tree.modules()? {
        ModulesDir::Missing => return Ok(Side::default()),
        ModulesDir::NotADir => anyhow::bail!("{}", plan::not_a_directory(repo_modules)),
        ModulesDir::Tree(id, entries) => (id, entries),
    };
    new.modules_tree = Some(id.clone());
    let whole = old.modules_tree.as_deref() == Some(id.as_str());
    let mut listed = Vec::with_capacity(entries.len());
    let mut ids: BTreeMap<String, (String, EntryKind)> = BTreeMap::new();
    for e in entries {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(&e.name).to_os_string();
        if let Some(n) = name.to_str() {
            ids.insert(n.to_string(), (e.id.clone(), e.kind));
        }
        listed.push(Listed {
            name,
            is_dir: matches!(e.kind, EntryKind::Dir | EntryKind::Submodule),
            is_symlink: e.kind == EntryKind::Symlink,
        });
    }
    let mut side = plan::scan_entries(repo_modules, listed, true, |name, dir| {
        let (tree_id, kind) = ids
            .get(name)
            .cloned()
            .context("a tree entry vanished while reading it")?;
        let file = dir.join("index.json");
        let cached = old.repo.remove(name);
        if let Some(c) = cached.as_ref().filter(|c| whole || c.tree == tree_id) {
            let result = c.index.to_result(&file);
            if let Some(c) = cached {
                new.repo.insert(name.to_string(), c);
            }
            return result;
        }
        *misses += 1;
        let entry = match kind {
            EntryKind::Submodule => IndexEntry::Missing,
            _ => tree.index_entry(&tree_id)?,
        };
        let (blob_id, result) = match entry {
            IndexEntry::Missing => (None, Err(missing(&file, rustix::io::Errno::NOENT))),
            IndexEntry::Symlink => (None, Err(missing(&file, rustix::io::Errno::LOOP))),
            IndexEntry::NotAFile => (
                None,
                Err(anyhow::anyhow!(
                    "{} is not a regular file (a fifo or device?)",
                    file.display()
                )),
            ),
            IndexEntry::File(blob_id) => {
                if let Some(c) = cached.filter(|c| c.blob.as_deref() == Some(blob_id.as_str())) {
                    let entry = RepoEntry {
                        tree: tree_id,
                        ..c
                    };
                    let result = entry.index.to_result(&file);
                    new.repo.insert(name.to_string(), entry);
                    return result;
                }
                let result = match tree.blob(&blob_id, MAX_INDEX_BYTES)? {
                    Blob::TooLarge(_) => Err(anyhow::anyhow!(
                        "{} is larger than {MAX_INDEX_BYTES} bytes",
                        file.display()
                    )),
                    Blob::Bytes(bytes) => ModuleIndex::from_bytes(&file, bytes),
                };
                (Some(blob_id), result)
            }
        };
        let result = result.map(|mut index| {
            index.slim();
            index
        });
        let index = match &result {
            Ok(index) => CachedResult::Ok(Cached::of(index)),
            Err(e) => CachedResult::Err(format!("{e:#}")),
        };
        new.repo.insert(
            name.to_string(),
            RepoEntry {
                tree: tree_id,
                blob: blob_id,
                index,
            },
        );
        result
    });
    side.present = true;
    Ok(side)
}

/// The error `ModuleIndex::load` gives when opening `file` fails with `errno`.
fn missing(file: &Path, errno: rustix::io::Errno) -> anyhow::Error {
    crate::fs::open_error(file, std::io::Error::from_raw_os_error(errno.raw_os_error()))
}

/// Reads the cache, or None when it is missing, unreadable, corrupt, of another format or for
/// other paths.
fn load(cache: &Path, repo_modules: &Path, installed_modules: &Path) -> Option<CacheFile> {
    let read = || -> Result<CacheFile> {
        let bytes = std::fs::read(cache).with_context(|| format!("reading {}", cache.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid index cache", cache.display()))
    };
    match read() {
        Ok(file)
            if file.format == FORMAT
                && file.repo_modules == repo_modules
                && file.installed_modules == installed_modules =>
        {
            Some(file)
        }
        Ok(_) => {
            log::debug!("{}: another format or root; rebuilding it", cache.display());
            None
        }
        Err(e) => {
            if crate::fs::exists_no_follow(cache) {
                log::debug!("ignoring the index cache: {e:#}");
            }
            None
        }
    }
}

fn save(cache: &Path, file: &CacheFile) {
    let result = serde_json::to_vec(file)
        .with_context(|| format!("serializing {}", cache.display()))
        .and_then(|bytes| crate::fs::write_atomic(cache, &bytes));
    if let Err(e) = result {
        log::warn!("could not write the index cache (the next run reads every index): {e:#}");
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    /// `<clone>/modules` and `<modules-path>/modules`: paths are part of cached messages.
    repo_modules: PathBuf,
    installed_modules: PathBuf,
    /// The id of the `modules` tree the repository side was read from.
    modules_tree: Option<String>,
    repo: BTreeMap<String, RepoEntry>,
    installed: BTreeMap<String, InstalledEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoEntry {
    /// The module's tree id.
    tree: String,
    /// Its `index.json` blob id, when it is a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<String>,
    index: CachedResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CachedResult {
    Ok(Cached),
    Err(String),
}

impl CachedResult {
    fn to_result(&self, file: &Path) -> Result<ModuleIndex> {
        match self {
            CachedResult::Ok(c) => c.to_index(file),
            CachedResult::Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstalledEntry {
    stamp: Stamp,
    index: Cached,
}

/// An installed `index.json`'s stat data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

}

fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}
fn is_default_priority(p: &i64) -> bool {
    *p == crate::module::DEFAULT_PRIORITY
}
fn default_priority() -> i64 {
    crate::module::DEFAULT_PRIORITY
}
fn is_default_group_order(p: &i64) -> bool {
    *p == crate::module::DEFAULT_GROUP_ORDER
}
fn default_group_order() -> i64 {
    crate::module::DEFAULT_GROUP_ORDER
}
fn is_default_timeout(t: &u64) -> bool {
    *t == crate::module::DEFAULT_TIMEOUT.as_secs()
}
fn default_timeout() -> u64 {
    crate::module::DEFAULT_TIMEOUT.as_secs()
}

/// What a plan uses of a parsed `index.json`: every parsed field, and the slim document
/// ([`ModuleIndex::slim`]). Short keys and skipped defaults keep 10,000 of them small.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    v: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    enabled: bool,
    #[serde(default = "default_priority", skip_serializing_if = "is_default_priority")]
    priority: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    #[serde(default = "default_timeout", skip_serializing_if = "is_default_timeout")]
    timeout_secs: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    backup_paths: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(
        default = "default_group_order",
        skip_serializing_if = "is_default_group_order"
    )]
    group_order: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    doc: Map<String, Value>,
}

impl Cached {
    /// Every field of `index` (destructured without `..`: a new field of `ModuleIndex` does
    /// not compile until it is cached too, and `FORMAT` is bumped).
    fn of(index: &ModuleIndex) -> Cached {
        let ModuleIndex {
            path: _,
            doc,
            version,
            enabled,
            priority,
            depends_on,
            entry,
            health,
            timeout,
            backup_paths,
            group,
            group_order,
            service_name,
            warnings,
            slim,
        } = index;
        let doc = if *slim {
            doc.clone()
        } else {
            let mut copy = index.clone();
            copy.slim();
            copy.doc
        };
        Cached {
            v: version.to_string(),
            enabled: *enabled,
            priority: *priority,
            depends_on: depends_on.clone(),
            entry: entry.clone(),
            health: health.clone(),
            timeout_secs: timeout.as_secs(),
            backup_paths: backup_paths.clone(),
            group: group.clone(),
            group_order: *group_order,
            service_name: service_name.clone(),
            warnings: warnings.clone(),
            doc,
        }
    }

    fn to_index(&self, file: &Path) -> Result<ModuleIndex> {
        let version = Version::parse(&self.v)
            .with_context(|| format!("cached version of {}", file.display()))?;
        Ok(ModuleIndex {
            path: file.to_path_buf(),
            doc: self.doc.clone(),
            version,
            enabled: self.enabled,
            priority: self.priority,
            depends_on: self.depends_on.clone(),
            entry: self.entry.clone(),
            health: self.health.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            backup_paths: self.backup_paths.clone(),
            group: self.group.clone(),
            group_order: self.group_order,
            service_name: self.service_name.clone(),
            warnings: self.warnings.clone(),
            slim: true,
        })
    }
}
