//! The global `index.json` (SPEC §3): reading it, and rewriting its `packages` so they record
//! exactly what is installed, with every unknown key kept in its place and order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::fs;

/// A global index document, kept as raw JSON so that unknown keys survive a rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalIndex {
    pub path: PathBuf,
    pub doc: Map<String, Value>,
}

impl GlobalIndex {
    /// An empty index for a fresh install.
    pub fn empty(path: &Path) -> GlobalIndex {
        let mut doc = Map::new();
        doc.insert("metadata".into(), Value::Object(Map::new()));
        doc.insert("packages".into(), Value::Object(Map::new()));
        GlobalIndex {
            path: path.to_path_buf(),
            doc,
        }
    }

    /// Reads the index at `path`; `Ok(None)` when there is none (a fresh install).
    /// Like module indexes, a global index larger than [`crate::module::MAX_INDEX_BYTES`] or one
    /// that is not a regular file (a fifo would hang the run) is refused, naming the file.
    pub fn load(path: &Path) -> Result<Option<GlobalIndex>> {
        let Some(bytes) = crate::fs::read_file_capped(path, crate::module::MAX_INDEX_BYTES)? else {
            return Ok(None);
        };
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        Self::parse(path, &text).map(Some)
    }

    /// Parses index text; errors name the file and what is wrong.
    pub fn parse(path: &Path, text: &str) -> Result<GlobalIndex> {
        let value: Value = serde_json::from_str(text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let Value::Object(doc) = value else {
            bail!(
                "{}: expected a JSON object at the top level",
                path.display()
            );
        };
        for key in ["metadata", "packages"] {
            match doc.get(key) {
                None | Some(Value::Object(_)) => {}
                Some(_) => bail!("{}: `{key}` must be an object", path.display()),
            }
        }
        Ok(GlobalIndex {
            path: path.to_path_buf(),
            doc,
        })
    }

    fn metadata_str(&self, key: &str) -> Option<&str> {
        self.doc
            .get("metadata")?
            .get(key)?
            .as_str()
            .filter(|s| !s.trim().is_empty())
    }

    /// `metadata.repository_url`, if set.
    pub fn repository_url(&self) -> Option<&str> {
        self.metadata_str("repository_url")
    }

    /// `metadata.branch`, if set.
    pub fn branch(&self) -> Option<&str> {
        self.metadata_str("branch")
    }

    /// `metadata.require_signed`, if set to true.
    pub fn require_signed(&self) -> bool {
        self.doc
            .get("metadata")
            .and_then(|m| m.get("require_signed"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The recorded version string of each package, in order.
    pub fn packages(&self) -> Vec<(String, String)> {
        match self.doc.get("packages") {
            Some(Value::Object(p)) => p
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .doc
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(m) => m,
            // Just made sure it is an object above.
            _ => unreachable!("metadata was set to an object"),
        }
    }

    /// Sets a string in `metadata`, keeping the position of an existing key.
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.metadata_mut()
            .insert(key.to_string(), Value::String(value.to_string()));
    }

    /// Takes the repository index's `metadata` values (channel, schema_version, …) for the keys
    /// it has, except where the installed side records where it syncs from.
    pub fn merge_metadata_from(&mut self, repo: &GlobalIndex) {
        if let Some(Value::Object(theirs)) = repo.doc.get("metadata") {
            let theirs = theirs.clone();
            let ours = self.metadata_mut();
            for (k, v) in theirs {
                if k == "repository_url" || k == "branch" || k == "require_signed" {
                    continue;
                }
                // The machine's channel is its choice; the repository's only fills a gap.
                if k == "channel" && ours.contains_key("channel") {
                    continue;
                }
                ours.insert(k, v);
            }
        }
    }

    /// Replaces `packages` with exactly `installed` (name → version). Names already present keep
    /// their position; new names follow in the order given.
    pub fn set_packages(&mut self, installed: &[(String, String)]) {
        let old = match self.doc.get("packages") {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        let mut packages = Map::new();
        for name in old.keys() {
            if let Some((_, v)) = installed.iter().find(|(n, _)| n == name) {
                packages.insert(name.clone(), Value::String(v.clone()));
            }
        }
        for (name, v) in installed {
            if !packages.contains_key(name) {
                packages.insert(name.clone(), Value::String(v.clone()));
            }
        }
        self.doc.insert("packages".into(), Value::Object(packages));
    }

    /// Writes the index atomically and durably.
    pub fn save(&self) -> Result<()> {
        fs::write_json_atomic(&self.path, &Value::Object(self.doc.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_in_order() {
        let text = r#"{"zeta": 1, "metadata": {"b": 2, "schema_version": "1.0.0", "a": 1},
            "packages": {"z": "1.0.0", "a": "2.0.0"}, "alpha": {"x": [1, 2]}}"#;
        let mut idx = GlobalIndex::parse(Path::new("/i.json"), text).unwrap();
        idx.set_packages(&[("new".into(), "0.1.0".into()), ("a".into(), "2.1.0".into())]);
        idx.set_metadata("branch", "main");
        let out = serde_json::to_string(&Value::Object(idx.doc.clone())).unwrap();
        assert_eq!(
            out,
            r#"{"zeta":1,"metadata":{"b":2,"schema_version":"1.0.0","a":1,"branch":"main"},"packages":{"a":"2.1.0","new":"0.1.0"},"alpha":{"x":[1,2]}}"#
        );
    }

    #[test]
    fn malformed_index_names_the_file() {
        let e = GlobalIndex::parse(Path::new("/x/index.json"), "{oops").unwrap_err();
        assert!(format!("{e:#}").contains("/x/index.json"));
        let e = GlobalIndex::parse(Path::new("/x/index.json"), "[1]").unwrap_err();
        assert!(format!("{e:#}").contains("top level"));
        let e = GlobalIndex::parse(Path::new("/x/index.json"), r#"{"packages": 3}"#).unwrap_err();
        assert!(format!("{e:#}").contains("packages"));
    }

    #[test]
    fn missing_index_is_fresh_install() {
        let dir = tempfile::tempdir().unwrap();
        assert!(GlobalIndex::load(&dir.path().join("index.json"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn oversized_index_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.json");
        let pad = " ".repeat(crate::module::MAX_INDEX_BYTES as usize);
        std::fs::write(&p, format!("{{\"metadata\": {{}}{pad}}}")).unwrap();
        let e = format!("{:#}", GlobalIndex::load(&p).unwrap_err());
        assert!(
            e.contains(&p.display().to_string()) && e.contains("larger"),
            "{e}"
        );
        std::fs::write(&p, r#"{"metadata": {}}"#).unwrap();
        assert!(GlobalIndex::load(&p).unwrap().is_some());
    }

    #[test]
    fn machine_channel_survives_a_merge() {
        let mut ours =
            GlobalIndex::parse(Path::new("a"), r#"{"metadata": {"channel": "beta"}}"#).unwrap();
        let theirs = GlobalIndex::parse(
            Path::new("b"),
            r#"{"metadata": {"channel": "stable", "schema_version": "2.0.0"}}"#,
        )
        .unwrap();
        ours.merge_metadata_from(&theirs);
        assert_eq!(ours.doc["metadata"]["channel"], "beta");
        assert_eq!(ours.doc["metadata"]["schema_version"], "2.0.0");
    }

    #[test]
    fn metadata_accessors() {
        let idx = GlobalIndex::parse(
            Path::new("i"),
            r#"{"metadata": {"branch": "dev", "repository_url": "", "require_signed": true}}"#,
        )
        .unwrap();
        assert_eq!(idx.branch(), Some("dev"));
        assert_eq!(idx.repository_url(), None);
        assert!(idx.require_signed());
    }
}
