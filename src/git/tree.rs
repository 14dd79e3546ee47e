//! Reading the synced commit's `modules/` from git's tree objects instead of the work tree: the
//! plan decides from exactly what the commit holds (a stray edit in the clone cannot leak into a
//! decision), and an unchanged tree id lets the index cache skip every module at once.

use std::path::Path;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository};

/// What a tree entry is, by its git file mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A gitlink (submodule): checked out as an empty directory.
    Submodule,
}

/// One entry of a tree: its name (raw bytes), kind and object id (hex).
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub id: String,
}

/// What the commit has at `modules`.
#[derive(Debug)]
pub enum ModulesDir {
    Missing,
    /// A file or a symlink.
    NotADir,
    /// The tree's id (hex), and its entries sorted by name.
    Tree(String, Vec<TreeEntry>),
}

/// A module's `index.json` entry as the commit has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexEntry {
    /// No such entry.
    Missing,
    Symlink,
    /// A directory or a submodule.
    NotAFile,
    /// A file: its blob id (hex).
    File(String),
}

/// A blob's content, unless it is larger than the limit asked for.
#[derive(Debug)]
pub enum Blob {
    TooLarge(u64),
    Bytes(Vec<u8>),
}

/// Reads trees and blobs of one commit of the clone.
pub struct CommitTree {
    repo: Repository,
    root: Oid,
}

pub(super) fn kind_of(mode: i32) -> EntryKind {
    match mode & 0o170000 {
        0o040000 => EntryKind::Dir,
        0o120000 => EntryKind::Symlink,
        0o160000 => EntryKind::Submodule,
        _ => EntryKind::File,
    }
}

impl CommitTree {
    /// Opens the clone at `clone` on commit `commit` (hex).
    pub fn open(clone: &Path, commit: &str) -> Result<CommitTree> {
        let repo = Repository::open(clone)
            .with_context(|| format!("opening the clone {}", clone.display()))?;
        let oid = Oid::from_str(commit).with_context(|| format!("reading commit id {commit}"))?;
        let root = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map(|t| t.id())
            .with_context(|| {
                format!("reading the tree of commit {commit} in {}", clone.display())
            })?;
        Ok(CommitTree { repo, root })
    }

    /// The commit's `modules` entry.
    pub fn modules(&self) -> Result<ModulesDir> {
        let root = self
            .repo
            .find_tree(self.root)
            .context("reading the root tree")?;
        let Some(entry) = root.get_name("modules") else {
            return Ok(ModulesDir::Missing);
        };
        match kind_of(entry.filemode()) {
            EntryKind::Dir => {}
            // Checked out as an empty directory.
            EntryKind::Submodule => {
                return Ok(ModulesDir::Tree(entry.id().to_string(), Vec::new()))
            }
            EntryKind::File | EntryKind::Symlink => return Ok(ModulesDir::NotADir),
        }
        let tree = self
            .repo
            .find_tree(entry.id())
            .context("reading the modules tree")?;
        let mut entries: Vec<TreeEntry> = tree
            .iter()
            .map(|e| TreeEntry {
                name: e.name_bytes().to_vec(),
                kind: kind_of(e.filemode()),
                id: e.id().to_string(),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ModulesDir::Tree(tree.id().to_string(), entries))
    }

    /// The `index.json` entry of the module whose tree is `module_tree` (hex).
    pub fn index_entry(&self, module_tree: &str) -> Result<IndexEntry> {
        let oid = Oid::from_str(module_tree).context("reading a module tree id")?;
        let tree = self
            .repo
            .find_tree(oid)
            .with_context(|| format!("reading module tree {module_tree}"))?;
        let Some(entry) = tree.get_name("index.json") else {
            return Ok(IndexEntry::Missing);
        };
        Ok(match kind_of(entry.filemode()) {
            EntryKind::Symlink => IndexEntry::Symlink,
            EntryKind::Dir | EntryKind::Submodule => IndexEntry::NotAFile,
            EntryKind::File => IndexEntry::File(entry.id().to_string()),
        })
    }

    /// The blob `id` (hex); one larger than `max` bytes is not read.
    pub fn blob(&self, id: &str, max: u64) -> Result<Blob> {
        let oid = Oid::from_str(id).context("reading a blob id")?;
        let odb = self.repo.odb().context("opening the object database")?;
        let (size, kind) = odb
            .read_header(oid)
            .with_context(|| format!("reading blob {id}"))?;
        if kind != ObjectType::Blob {
            anyhow::bail!("object {id} is a {kind}, not a blob");
        }
        if size as u64 > max {
            return Ok(Blob::TooLarge(size as u64));
        }
        let blob = self
            .repo
            .find_blob(oid)
            .with_context(|| format!("reading blob {id}"))?;
        Ok(Blob::Bytes(blob.content().to_vec()))
    }
}
