//! The index cache, `.updater/index-cache.json`: what the plan needs of every module's
//! `index.json`, on both sides, so that a no-op check reads neither side's files again.
//!
//! - The repository side is read from the synced commit's tree objects (`git::CommitTree`),
//!   never from the clone's work tree. It is a pure function of the `modules` tree id: when
//!   that is unchanged, the whole side comes from the cache; else each module whose subtree id
//!   is unchanged does, and the others are read from their blobs. A verdict on a module's
//!   content (missing, invalid) is cached; git failing to read its objects is not.
//! - The installed side is trusted per module only when its `index.json`'s stat data (device,
//!   inode, size, mtime and ctime to the nanosecond, as git's index keeps them) match the
//!   cached ones. Stat data are cached only for a file last changed a few seconds before the
//!   scan that read it (no *racy* entries: an edit in the same clock tick as the read could
//!   keep the same stat data). On any mismatch the file is read and parsed again. Errors are
//!   never cached on that side.
//!
//! A missing, unreadable or corrupt cache, or one of another format or made for other paths,
//! is ignored and rebuilt; the cache is rewritten (atomically) only when something in it
//! changed (a file too recently changed to be cached does not count). Failing to write it is
//! a warning, never a failed run.

use std::collections::HashMap;
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
const FORMAT: u32 = 3;

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
///
/// Hits are read from the old cache in place; a new cache is built (from the scanned sides)
/// and written only when something missed, so a no-op run holds one copy of each index.
pub fn scan(cache: &Path, clone: &Path, commit: &str, installed_modules: &Path) -> Result<Sides> {
    let repo_modules = clone.join("modules");
    let old = load(cache, &repo_modules, installed_modules);
    let mut dirty = old.is_none();
    let old = old.unwrap_or_default();
    // Stat data are cached only for files last changed well before this scan began: any later
    // change then gets a later ctime, so equal stat data prove the file unchanged.
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 - RACY_SECS)
        .unwrap_or(0);

    let mut repo_misses = 0usize;
    let (repo, modules_tree, tree_ids, unread) =
        repo_side(clone, commit, &repo_modules, &old, &mut repo_misses)?;
    dirty |=
        repo_misses > 0 || modules_tree != old.modules_tree || tree_ids.len() != old.repo.len();

    let mut hits = 0usize;
    let mut misses = 0usize;
    let mut stamps: Vec<(String, Stamp)> = Vec::new();
    let mut installed = {
        let entries = plan::list_modules_dir(installed_modules)?;
        let open = crate::fs::OpenDir::open(installed_modules)?;
        plan::scan_entries(installed_modules, entries, false, |name, dir| {
            let file = dir.join("index.json");
            let stamp = open
                .as_ref()
                .and_then(|d| d.stat(&Path::new(name).join("index.json")).ok())
                .filter(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode as _)
                        == rustix::fs::FileType::RegularFile
                })
                .map(|st| Stamp::of(&st));
            // Only an index that was read can be cached: an unreadable one does not count
            // (it would make every run rewrite the cache).
            let cacheable = stamp.filter(|s| s.older_than(cutoff));
            if let (Some(stamp), Some(entry)) = (stamp, old.installed.get(name)) {
                if entry.stamp == stamp {
                    if let Ok(index) = entry.index.to_index(&file) {
                        hits += 1;
                        stamps.extend(cacheable.map(|s| (name.to_string(), s)));
                        return Ok(index);
                    }
                }
            }
            misses += 1;
            let mut index = ModuleIndex::load(dir)?;
            index.slim();
            stamps.extend(cacheable.map(|s| (name.to_string(), s)));
            Ok(index)
        })
    };
    installed.present = crate::fs::exists_no_follow(installed_modules);
    // Rewritten when some file whose stat data can be cached is not cached yet. A file changed
    // in the last few seconds cannot be: writing the cache for it would gain nothing.
    dirty |= stamps.len() != hits;
    log::debug!(
        "index cache: {hits} installed indexes unchanged, {misses} read; {repo_misses} repository indexes read"
    );
    drop(old);
    if dirty {
        let mut new = CacheFile {
            format: FORMAT,
            repo_modules,
            installed_modules: installed_modules.to_path_buf(),
            modules_tree,
            ..CacheFile::default()
        };
        for (name, tree) in tree_ids {
            if unread.contains(&name) {
                continue;
            }
            let index = match repo.modules.get(&name) {
                Some(Ok(index)) => CachedResult::Ok(Cached::of(index)),
                Some(Err(e)) => CachedResult::Err(e.clone()),
                None => continue,
            };
            new.repo.insert(name, RepoEntry { tree, index });
        }
        for (name, stamp) in stamps {
            if let Some(Ok(index)) = installed.modules.get(&name) {
                let index = Cached::of(index);
                new.installed.insert(name, InstalledEntry { stamp, index });
            }
        }
        save(cache, &new);
    }
    Ok(Sides { repo, installed })
}

/// The repository side, the `modules` tree id, (name, tree id) of each module, and the
/// modules whose objects could not be read (their error is not cached).
type RepoScan = (
    Side,
    Option<String>,
    Vec<(String, String)>,
    std::collections::HashSet<String>,
);

/// How many seconds before a scan a file must have last changed for its stat data to be
/// cached (more than the coarsest file timestamp granularity in use, 2 s on FAT).
const RACY_SECS: i64 = 3;

/// The repository side, from the commit's trees, through the cache; with the `modules` tree
/// id and each module's tree id.
fn repo_side(
    clone: &Path,
    commit: &str,
    repo_modules: &Path,
    old: &CacheFile,
    misses: &mut usize,
) -> Result<RepoScan> {
    let tree = CommitTree::open(clone, commit)?;
    let (id, entries) = match tree.modules()? {
        ModulesDir::Missing => return Ok((Side::default(), None, Vec::new(), Default::default())),
        ModulesDir::NotADir => anyhow::bail!("{}", plan::not_a_directory(repo_modules)),
        ModulesDir::Tree(id, entries) => (id, entries),
    };
    let whole = old.modules_tree.as_deref() == Some(id.as_str());
    // A module whose tree or blob git failed to read (a damaged or missing object): its error
    // says nothing about the tree id, so it is not cached and the next run reads it again.
    let mut unread = std::collections::HashSet::new();
    let mut listed = Vec::with_capacity(entries.len());
    let mut ids: HashMap<String, (String, EntryKind)> = HashMap::with_capacity(entries.len());
    for e in entries {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(&e.name).to_os_string();
        if let Some(n) = name.to_str() {
            ids.insert(n.to_string(), (e.id, e.kind));
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
            .context("a tree entry vanished while reading it")?;
        let file = dir.join("index.json");
        if let Some(c) = old.repo.get(name).filter(|c| whole || c.tree == *tree_id) {
            // An entry this build cannot turn back into an index is a miss, not a verdict.
            match &c.index {
                CachedResult::Ok(cached) => {
                    if let Ok(index) = cached.to_index(&file) {
                        return Ok(index);
                    }
                }
                CachedResult::Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
        *misses += 1;
        let entry = match kind {
            EntryKind::Submodule => IndexEntry::Missing,
            _ => tree.index_entry(tree_id).inspect_err(|_| {
                unread.insert(name.to_string());
            })?,
        };
        let result = match entry {
            IndexEntry::Missing => Err(missing(&file, rustix::io::Errno::NOENT)),
            IndexEntry::Symlink => Err(missing(&file, rustix::io::Errno::LOOP)),
            IndexEntry::NotAFile => Err(anyhow::anyhow!(
                "{} is not a regular file (a fifo or device?)",
                file.display()
            )),
            IndexEntry::File(blob_id) => {
                match tree.blob(&blob_id, MAX_INDEX_BYTES).inspect_err(|_| {
                    unread.insert(name.to_string());
                })? {
                    Blob::TooLarge(_) => Err(anyhow::anyhow!(
                        "{} is larger than {MAX_INDEX_BYTES} bytes",
                        file.display()
                    )),
                    Blob::Bytes(bytes) => ModuleIndex::from_bytes(&file, bytes),
                }
            }
        };
        result.map(|mut index| {
            index.slim();
            index
        })
    });
    side.present = true;
    let tree_ids = ids
        .into_iter()
        .filter(|(name, _)| side.modules.contains_key(name))
        .map(|(name, (tree, _))| (name, tree))
        .collect();
    Ok((side, Some(id), tree_ids, unread))
}

/// The error `ModuleIndex::load` gives when opening `file` fails with `errno`.
fn missing(file: &Path, errno: rustix::io::Errno) -> anyhow::Error {
    crate::fs::open_error(
        file,
        std::io::Error::from_raw_os_error(errno.raw_os_error()),
    )
}

/// The largest cache read (10,000 modules take a few megabytes): a larger file is ignored.
const MAX_CACHE_BYTES: u64 = 256 << 20;

/// Reads the cache, or None when it is missing, unreadable, corrupt, of another format or for
/// other paths.
fn load(cache: &Path, repo_modules: &Path, installed_modules: &Path) -> Option<CacheFile> {
    let read = || -> Result<CacheFile> {
        let bytes = crate::fs::read_regular_capped(cache, MAX_CACHE_BYTES)?
            .with_context(|| format!("{} is missing", cache.display()))?;
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
    // Hash maps: looked up 10,000 times each, never walked in order.
    repo: HashMap<String, RepoEntry>,
    installed: HashMap<String, InstalledEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoEntry {
    /// The module's tree id.
    #[serde(rename = "t")]
    tree: String,
    #[serde(rename = "i")]
    index: CachedResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CachedResult {
    Ok(Cached),
    Err(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstalledEntry {
    #[serde(rename = "s")]
    stamp: Stamp,
    #[serde(rename = "i")]
    index: Cached,
}

/// An installed `index.json`'s stat data: device, inode, size, mtime (seconds, nanoseconds),
/// ctime (seconds, nanoseconds). A tuple: one short JSON array per module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp(u64, u64, u64, i64, i64, i64, i64);

impl Stamp {
    // The stat fields' integer types differ between architectures: widen them all.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Stamp {
        Stamp(
            st.st_dev as u64,
            st.st_ino as u64,
            st.st_size as u64,
            st.st_mtime as i64,
            st.st_mtime_nsec as i64,
            st.st_ctime as i64,
            st.st_ctime_nsec as i64,
        )
    }

    /// Last changed (mtime or ctime) before `cutoff` (seconds since the epoch).
    fn older_than(&self, cutoff: i64) -> bool {
        self.3 < cutoff && self.5 < cutoff
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
fn is_zero(n: &u32) -> bool {
    *n == 0
}
fn is_default_health_interval(t: &u64) -> bool {
    *t == crate::module::DEFAULT_HEALTH_INTERVAL.as_secs()
}
fn default_health_interval() -> u64 {
    crate::module::DEFAULT_HEALTH_INTERVAL.as_secs()
}
fn is_default_timeout(t: &u64) -> bool {
    *t == crate::module::DEFAULT_TIMEOUT.as_secs()
}
fn default_timeout() -> u64 {
    crate::module::DEFAULT_TIMEOUT.as_secs()
}

/// What a plan uses of a parsed `index.json`: every parsed field, and the slim document
/// ([`ModuleIndex::slim`]). The version inline, everything else (mostly defaults) boxed and
/// left out when all default: 10,000 of them stay small on disk and in memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cached {
    v: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    enabled: bool,
    #[serde(
        default = "default_priority",
        skip_serializing_if = "is_default_priority"
    )]
    priority: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prepare: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollback: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    health_retries: u32,
    #[serde(
        default = "default_health_interval",
        skip_serializing_if = "is_default_health_interval"
    )]
    health_interval_secs: u64,
    #[serde(
        default = "default_timeout",
        skip_serializing_if = "is_default_timeout"
    )]
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

impl Extra {
    fn defaults() -> Extra {
        Extra {
            enabled: true,
            priority: default_priority(),
            timeout_secs: default_timeout(),
            health_interval_secs: default_health_interval(),
            group_order: default_group_order(),
            ..Extra::default()
        }
    }
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
            prepare,
            rollback,
            health_retries,
            health_interval,
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
        let extra = Extra {
            enabled: *enabled,
            priority: *priority,
            depends_on: depends_on.clone(),
            entry: entry.clone(),
            health: health.clone(),
            prepare: prepare.clone(),
            rollback: rollback.clone(),
            health_retries: *health_retries,
            health_interval_secs: health_interval.as_secs(),
            timeout_secs: timeout.as_secs(),
            backup_paths: backup_paths.clone(),
            group: group.clone(),
            group_order: *group_order,
            service_name: service_name.clone(),
            warnings: warnings.clone(),
            doc,
        };
        Cached {
            v: version.to_string(),
            x: (extra != Extra::defaults()).then(|| Box::new(extra)),
        }
    }

    fn to_index(&self, file: &Path) -> Result<ModuleIndex> {
        let version = Version::parse(&self.v)
            .with_context(|| format!("cached version of {}", file.display()))?;
        let x = match &self.x {
            Some(x) => x.as_ref().clone(),
            None => Extra::defaults(),
        };
        Ok(ModuleIndex {
            path: file.to_path_buf(),
            doc: x.doc,
            version,
            enabled: x.enabled,
            priority: x.priority,
            depends_on: x.depends_on,
            entry: x.entry,
            health: x.health,
            prepare: x.prepare,
            rollback: x.rollback,
            health_retries: x.health_retries,
            health_interval: Duration::from_secs(x.health_interval_secs),
            timeout: Duration::from_secs(x.timeout_secs),
            backup_paths: x.backup_paths,
            group: x.group,
            group_order: x.group_order,
            service_name: x.service_name,
            warnings: x.warnings,
            slim: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_index_keeps_every_lifecycle_field() {
        let path = Path::new("/x/modules/web/index.json");
        let text = r#"{"metadata": {"schema_version": "1.2.3", "prepare": "prepare.sh",
            "rollback": "rollback.sh", "health": "health.sh", "health_retries": 4,
            "health_interval_secs": 2, "entry": "run.sh", "timeout_secs": 7}}"#;
        let index = ModuleIndex::parse(path, text).unwrap();
        let back = Cached::of(&index).to_index(path).unwrap();
        assert_eq!(back.prepare.as_deref(), Some("prepare.sh"));
        assert_eq!(back.rollback.as_deref(), Some("rollback.sh"));
        assert_eq!(back.health_retries, 4);
        assert_eq!(back.health_interval, Duration::from_secs(2));
        assert_eq!(back.timeout, Duration::from_secs(7));
        assert_eq!(back.version.to_string(), "1.2.3");

        // Defaults stay defaults (and are not written out).
        let plain = ModuleIndex::parse(path, r#"{"metadata": {"schema_version": "1"}}"#).unwrap();
        let cached = Cached::of(&plain);
        assert!(cached.x.is_none());
        let back = cached.to_index(path).unwrap();
        assert_eq!(back.health_interval, crate::module::DEFAULT_HEALTH_INTERVAL);
        assert_eq!(back.health_retries, 0);
    }
}
