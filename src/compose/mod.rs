//! Docker Compose modules (README "Docker Compose modules"): a module whose index declares
//! `metadata.compose` is a Compose application, and updater itself provides its lifecycle steps
//! through the hidden `updater compose prepare|up|rollback` command (`commands::compose`):
//! - **prepare** (from the staged copy, before the swap): every `image:` of the compose file must
//!   exist in its registry (registry API v2, `registry.rs`), then each is pulled;
//! - **up** (the entry): `up -d` of the project with whichever Compose the machine has, then wait
//!   until its containers run and are healthy (`engine.rs`);
//! - **rollback** (run from the restored old copy): the same as up, so the old containers return.
//!
//! The parts: `image.rs` (image references), `file.rs` (the compose file's services),
//! `challenge.rs` (`WWW-Authenticate`), `credentials.rs` (the Docker config file),
//! `registry.rs`, `engine.rs`.

pub mod challenge;
pub mod credentials;
pub mod engine;
pub mod file;
pub mod image;
pub mod registry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use credentials::DockerConfig;

/// How long `up` waits for the containers' health by default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one registry request may take.
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(30);

/// One step of a Compose module's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    Up,
    Rollback,
}

impl Step {
    /// The word on the command line (`updater compose <word>`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Up => "up",
            Step::Rollback => "rollback",
        }
    }

    /// Reads `prepare`, `up` or `rollback`.
    pub fn parse(s: &str) -> Option<Step> {
        [Step::Prepare, Step::Up, Step::Rollback]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// What a module index's `metadata.compose` declares: `true`, a file name (a path inside the
/// module), or an object `{"file", "project", "health_timeout_secs"}`, every key optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The compose file inside the module; `None`: Compose's default names (`file::DEFAULT_FILES`).
    pub file: Option<String>,
    /// The Compose project name; `None`: the module name.
    pub project: Option<String>,
    pub health_timeout: Duration,
}

/// Reads `metadata.compose` from a module index; `None` when absent, `null` or `false`.
pub fn declared(index: &Value) -> Result<Option<Declared>> {
    let mut d = Declared {
        file: None,
        project: None,
        health_timeout: DEFAULT_HEALTH_TIMEOUT,
    };
    match index.get("metadata").and_then(|m| m.get("compose")) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        Some(Value::String(f)) => d.file = Some(f.clone()),
        Some(Value::Object(o)) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("file", Value::String(f)) => d.file = Some(f.clone()),
                    ("project", Value::String(p)) => d.project = Some(p.clone()),
                    ("health_timeout_secs", v) => match v.as_u64() {
                        Some(s) if s > 0 => d.health_timeout = Duration::from_secs(s),
                        _ => bail!(
                            "metadata.compose.health_timeout_secs must be a positive whole number, not {v}"
                        ),
                    },
                    ("file" | "project", v) => {
                        bail!("metadata.compose.{k} must be a string, not {v}")
                    }
                    // Unknown keys belong to the module (SPEC §3) and are carried as they are.
                    _ => {}
                }
            }
        }
        Some(other) => {
            bail!("metadata.compose must be true, a file name or an object, not {other}")
        }
    }
    Ok(Some(d))
}

/// The Compose project name: `metadata.compose.project`, else the module name, lower-cased and
/// reduced to `[a-z0-9_-]` as Compose does (so the container labels match it).
pub fn project_name(module: &str, d: &Declared) -> Result<String> {
    let raw = d.project.as_deref().unwrap_or(module);
    let name: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let name = name.trim_start_matches(['_', '-']).to_string();
    if name.is_empty() {
        bail!("{raw:?} gives no usable Compose project name (letters, digits, '_' and '-')");
    }
    Ok(name)
}

/// One module directory to act on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The module directory (the staged copy for prepare, the installed one otherwise).
    pub dir: PathBuf,
    /// The module's name (for the default project name).
    pub module: String,
}

/// Runs one step for the module in `target.dir`, as its `index.json` declares it.
pub fn run(step: Step, target: &Target, docker: &DockerConfig) -> Result<()> {
    let index_path = target.dir.join("index.json");
    let index: Value = serde_json::from_str(&crate::fs::read_to_string(&index_path)?)
        .with_context(|| format!("reading {}", index_path.display()))?;
    let Some(d) = declared(&index).with_context(|| format!("reading {}", index_path.display()))?
    else {
        bail!(
            "{} declares no metadata.compose: not a Compose module",
            index_path.display()
        );
    };
    let compose_file = file::locate(&target.dir, d.file.as_deref())?;
    match step {
        Step::Prepare => prepare(&compose_file, docker),
        Step::Up | Step::Rollback => {
            let project = project_name(&target.module, &d)?;
            up(&target.dir, &compose_file, &project, d.health_timeout)
        }
    }
}

/// Checks that every image of the compose file exists in its registry, then pulls each. The
/// first failure names the image; nothing is started or changed.
pub fn prepare(compose_file: &Path, docker: &DockerConfig) -> Result<()> {
    let services = file::read(compose_file)?;
    let registry = registry::Registry::new(docker, REGISTRY_TIMEOUT);
    let mut images: Vec<&image::ImageRef> =
        services.iter().filter_map(|s| s.image.as_ref()).collect();
    images.dedup_by(|a, b| a.original == b.original);
    let mut missing = Vec::new();
    for img in &images {
        match registry.check(img) {
            Ok(()) => log::info!("image {img} exists in registry {}", img.registry),
            Err(e) => missing.push(format!("{e:#}")),
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("; "));
    }
    for img in &images {
        engine::pull(&img.original)?;
    }
    for s in services.iter().filter(|s| s.image.is_none()) {
        log::info!("service {} has no image: Compose builds it on up", s.name);
    }
    Ok(())
}

/// Brings the project up from `compose_file` and waits for its containers' health.
pub fn up(dir: &Path, compose_file: &Path, project: &str, health_timeout: Duration) -> Result<()> {
    let engine = engine::Engine::detect()?;
    engine.up(project, compose_file, dir)?;
    engine::wait_healthy(project, health_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_compose_forms_are_read() {
        assert_eq!(declared(&json!({"metadata": {}})).unwrap(), None);
        assert_eq!(
            declared(&json!({"metadata": {"compose": false}})).unwrap(),
            None
        );
        let d = declared(&json!({"metadata": {"compose": true}}))
            .unwrap()
            .unwrap();
        assert_eq!((d.file, d.project), (None, None));
        assert_eq!(d.health_timeout, DEFAULT_HEALTH_TIMEOUT);
        let d = declared(&json!({"metadata": {"compose": "app.yml"}}))
            .unwrap()
            .unwrap();
        assert_eq!(d.file.as_deref(), Some("app.yml"));
        let d = declared(&json!({"metadata": {"compose":
            {"file": "c.yml", "project": "P", "health_timeout_secs": 5, "other": 1}}}))
        .unwrap()
        .unwrap();
        assert_eq!(d.project.as_deref(), Some("P"));
        assert_eq!(d.health_timeout, Duration::from_secs(5));
        for bad in [
            json!({"metadata": {"compose": 3}}),
            json!({"metadata": {"compose": {"file": 1}}}),
            json!({"metadata": {"compose": {"health_timeout_secs": 0}}}),
            json!({"metadata": {"compose": {"health_timeout_secs": "5"}}}),
        ] {
            assert!(declared(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_names_follow_compose_rules() {
        let d = declared(&json!({"metadata": {"compose": true}}))
            .unwrap()
            .unwrap();
        assert_eq!(project_name("My.App-2", &d).unwrap(), "myapp-2");
        assert_eq!(project_name("_x", &d).unwrap(), "x");
        assert!(project_name("...", &d).is_err());
        let d = Declared {
            project: Some("Web_1".into()),
            ..d
        };
        assert_eq!(project_name("ignored", &d).unwrap(), "web_1");
        assert_eq!(Step::parse("rollback"), Some(Step::Rollback));
        assert_eq!(Step::parse("down"), None);
    }
}
