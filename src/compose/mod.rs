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

use crate::runner::Program;
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

/// How a new version replaces the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `up -d` of the one project: Compose recreates the containers whose configuration changed.
    #[default]
    Recreate,
    /// The new version starts as a second project beside the running one (`<project>-blue` and
    /// `<project>-green`), and the old one stops only once the new one is healthy.
    BlueGreen,
}

/// What a module index's `metadata.compose` declares: `true`, a file name (a path inside the
/// module), or an object `{"file", "project", "health_timeout_secs", "strategy"}`, every key
/// optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The compose file inside the module; `None`: Compose's default names (`file::DEFAULT_FILES`).
    pub file: Option<String>,
    /// The Compose project name; `None`: the module name.
    pub project: Option<String>,
    pub health_timeout: Duration,
    pub strategy: Strategy,
}

/// Reads `metadata.compose` from a module index; `None` when absent, `null` or `false`.
pub fn declared(index: &Value) -> Result<Option<Declared>> {
    declared_in(index.get("metadata"))
}

/// [`declared`] from the index's `metadata` object.
fn declared_in(metadata: Option<&Value>) -> Result<Option<Declared>> {
    let mut d = Declared {
        file: None,
        project: None,
        health_timeout: DEFAULT_HEALTH_TIMEOUT,
        strategy: Strategy::Recreate,
    };
    match metadata.and_then(|m| m.get("compose")) {
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
                    ("strategy", Value::String(st)) if st == "recreate" => {
                        d.strategy = Strategy::Recreate
                    }
                    ("strategy", Value::String(st)) if st == "blue-green" => {
                        d.strategy = Strategy::BlueGreen
                    }
                    ("strategy", v) => bail!(
                        "metadata.compose.strategy must be \"recreate\" or \"blue-green\", not {v}"
                    ),
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

/// The Compose projects a module may run as, whatever its strategy: its project and both
/// colors (a change of strategy takes down the other strategy's, `down_other_strategy`).
pub fn projects_of(module: &str, d: &Declared) -> Result<Vec<String>> {
    let project = project_name(module, d)?;
    let [blue, green] = colors(&project);
    Ok(vec![project, blue, green])
}

/// Compose modules (name, index document) whose projects collide with another's (the same
/// `project`, or a blue/green color that is another module's project): an error for each of
/// them naming the project and the other module. Two modules in one project would remove each
/// other's containers (`up --remove-orphans`, a failed first install's `down`). Modules whose
/// `metadata.compose` is malformed are left to their own error.
pub fn project_collisions<'a>(
    modules: impl IntoIterator<Item = (&'a str, &'a serde_json::Map<String, Value>)>,
) -> std::collections::BTreeMap<String, String> {
    let mut owners: std::collections::BTreeMap<String, Vec<&'a str>> = Default::default();
    for (name, doc) in modules {
        let Ok(Some(d)) = declared_in(doc.get("metadata")) else {
            continue;
        };
        for p in projects_of(name, &d).unwrap_or_default() {
            let list = owners.entry(p).or_default();
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    let mut errors = std::collections::BTreeMap::new();
    for (project, names) in owners.iter().filter(|(_, n)| n.len() > 1) {
        for name in names {
            let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
            errors.entry(name.to_string()).or_insert_with(|| {
                format!(
                    "compose project {project:?} is also run by module {}: each Compose module needs its own project (metadata.compose.project), and reserves <project>-blue and <project>-green too",
                    others.join(", ")
                )
            });
        }
    }
    errors
}

/// One module directory to act on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The module directory (the staged copy for prepare, the installed one otherwise).
    pub dir: PathBuf,
    /// The module's name (for the default project name).
    pub module: String,
    /// A first install (no old version to come back to): a failed `up` takes the project down
    /// again, so a failed install leaves nothing running.
    pub first_install: bool,
    /// The directory of the Docker config file (`DOCKER_CONFIG` of docker and Compose), when
    /// not their default.
    pub docker_config: Option<PathBuf>,
}

/// The programs of a Compose module's steps: updater itself, `updater compose <step>`, run with
/// the module directory as working directory (see `lifecycle::steps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub prepare: Program,
    pub up: Program,
    pub rollback: Program,
}

/// The steps of the copy of a module in `dir` whose index document is `doc`, when it declares
/// `metadata.compose`; `None` otherwise. `updater` is the binary to run (this one), and
/// `docker_config` the `DOCKER_CONFIG` directory to pass on (programs get a clean environment).
/// Errors: a malformed `metadata.compose`, a compose file that is not there, or a module that
/// also declares its own `entry`, `prepare` or `rollback` (updater provides those).
pub fn programs(
    doc: &serde_json::Map<String, Value>,
    dir: &Path,
    updater: &Path,
    docker_config: Option<&Path>,
) -> Result<Option<Programs>> {
    let meta = doc.get("metadata");
    let Some(d) = declared_in(meta)? else {
        return Ok(None);
    };
    for key in ["entry", "prepare", "rollback"] {
        if meta.and_then(|m| m.get(key)).is_some_and(|v| !v.is_null()) {
            bail!("`metadata.{key}` cannot be combined with `metadata.compose` (updater runs the Compose steps)");
        }
    }
    file::locate(dir, d.file.as_deref())?;
    let module = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable name", dir.display()))?;
    let program = |step: Step, with_module: bool| {
        let mut args = vec!["compose".to_string(), step.as_str().to_string()];
        if with_module {
            args.extend(["--module".to_string(), module.to_string()]);
        }
        if let Some(c) = docker_config.and_then(|c| c.to_str()) {
            args.extend(["--docker-config".to_string(), c.to_string()]);
        }
        Program::Exec(updater.to_path_buf(), args)
    };
    Ok(Some(Programs {
        // The staged copy's directory is not named after the module; prepare needs no project.
        prepare: program(Step::Prepare, false),
        up: program(Step::Up, true),
        rollback: program(Step::Rollback, true),
    }))
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
        Step::Prepare => prepare(&compose_file, docker, target.docker_config.as_deref()),
        Step::Up | Step::Rollback => {
            let project = project_name(&target.module, &d)?;
            let engine = engine::Engine::detect(target.docker_config.as_deref())?;
            let dir = &target.dir;
            match (d.strategy, step) {
                (Strategy::Recreate, _) => {
                    let result = up(&engine, dir, &compose_file, &project, d.health_timeout);
                    if result.is_err() && step == Step::Up && target.first_install {
                        log::warn!("first install failed: taking compose project {project} down");
                        if let Err(e) = engine.down(&project, &compose_file, dir) {
                            log::error!("{e:#}");
                        }
                    }
                    result?;
                    down_other_strategy(&engine, dir, &compose_file, &project, d.strategy)
                }
                (Strategy::BlueGreen, Step::Up) => {
                    blue_green_up(&engine, dir, &compose_file, &project, d.health_timeout)?;
                    down_other_strategy(&engine, dir, &compose_file, &project, d.strategy)
                }
                (Strategy::BlueGreen, _) => {
                    blue_green_restore(&engine, dir, &compose_file, &project, d.health_timeout)?;
                    down_other_strategy(&engine, dir, &compose_file, &project, d.strategy)
                }
            }
        }
    }
}

/// Checks that every image of the compose file exists in its registry, then pulls each. The
/// first failure names the image; nothing is started or changed.
pub fn prepare(
    compose_file: &Path,
    docker: &DockerConfig,
    docker_config_dir: Option<&Path>,
) -> Result<()> {
    let services = file::read(compose_file)?;
    let registry = registry::Registry::new(docker, REGISTRY_TIMEOUT);
    // Each image once, in the order of the services (sorted by name).
    let mut seen = std::collections::BTreeSet::new();
    let images: Vec<&image::ImageRef> = services
        .iter()
        .filter_map(|s| s.image.as_ref())
        .filter(|i| seen.insert(i.original.clone()))
        .collect();
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
        engine::pull(&img.original, docker_config_dir)?;
    }
    for s in services.iter().filter(|s| s.image.is_none()) {
        log::info!("service {} has no image: Compose builds it on up", s.name);
    }
    Ok(())
}

/// Brings the project up from `compose_file` and waits for its containers' health.
pub fn up(
    engine: &engine::Engine,
    dir: &Path,
    compose_file: &Path,
    project: &str,
    health_timeout: Duration,
) -> Result<()> {
    engine.up(project, compose_file, dir)?;
    engine::wait_healthy(project, health_timeout)
}

/// Once the module's project (or color) runs healthy: takes down what its other strategy left
/// running (a change of `metadata.compose.strategy`, or a rollback across one): the colors of a
/// `recreate` module, the plain project of a `blue-green` one. Every Compose module reserves all
/// three names ([`projects_of`]), so these are never another module's.
fn down_other_strategy(
    engine: &engine::Engine,
    dir: &Path,
    compose_file: &Path,
    project: &str,
    strategy: Strategy,
) -> Result<()> {
    let others = match strategy {
        Strategy::Recreate => colors(project).to_vec(),
        Strategy::BlueGreen => vec![project.to_string()],
    };
    for p in others {
        if !engine::project_states(&p)?.is_empty() {
            log::info!("compose project {p} was left by the module's other strategy; stopping it");
            engine.down(&p, compose_file, dir)?;
        }
    }
    Ok(())
}

/// The two project names of a blue/green module.
pub fn colors(project: &str) -> [String; 2] {
    [format!("{project}-blue"), format!("{project}-green")]
}

/// The colors that have containers, each with the newest creation time of its containers.
fn present_colors(project: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for c in colors(project) {
        let states = engine::project_states(&c)?;
        if let Some(newest) = states.iter().map(|s| s.created.clone()).max() {
            out.push((c, newest));
        }
    }
    Ok(out)
}

/// Blue/green entry: the new version starts as the color that is not running (blue when none
/// is; when both are, after an interrupted switch, the newer one is the new version), and only
/// once all its containers are healthy is the other color taken down. When the new one fails,
/// it is taken down and the old one was never stopped.
pub fn blue_green_up(
    engine: &engine::Engine,
    dir: &Path,
    compose_file: &Path,
    project: &str,
    health_timeout: Duration,
) -> Result<()> {
    let [blue, green] = colors(project);
    let present = present_colors(project)?;
    let target = match present.as_slice() {
        [] => blue.clone(),
        [(only, _)] => {
            if *only == blue {
                green.clone()
            } else {
                blue.clone()
            }
        }
        [a, b, ..] => {
            if a.1 >= b.1 {
                a.0.clone()
            } else {
                b.0.clone()
            }
        }
    };
    log::info!("blue/green: starting the new version as compose project {target}");
    if let Err(e) = up(engine, dir, compose_file, &target, health_timeout) {
        log::warn!(
            "blue/green: the new version failed; taking {target} down, the old one keeps running"
        );
        if let Err(d) = engine.down(&target, compose_file, dir) {
            log::error!("{d:#}");
        }
        return Err(e);
    }
    for (other, _) in present.iter().filter(|(c, _)| *c != target) {
        log::info!("blue/green: {target} is healthy; stopping {other}");
        engine.down(other, compose_file, dir)?;
    }
    Ok(())
}

/// Blue/green rollback (run from the old copy): the color still running (the older one when
/// both are, blue when none is) is brought up from the old compose file (a no-op when it already
/// runs it) and, once healthy, the other color is taken down.
pub fn blue_green_restore(
    engine: &engine::Engine,
    dir: &Path,
    compose_file: &Path,
    project: &str,
    health_timeout: Duration,
) -> Result<()> {
    let [blue, _] = colors(project);
    let present = present_colors(project)?;
    let keep = match present.as_slice() {
        [] => blue,
        [(only, _)] => only.clone(),
        [a, b, ..] => {
            if a.1 <= b.1 {
                a.0.clone()
            } else {
                b.0.clone()
            }
        }
    };
    up(engine, dir, compose_file, &keep, health_timeout)?;
    for (other, _) in present.iter().filter(|(c, _)| *c != keep) {
        log::info!("blue/green: {keep} runs the old version again; stopping {other}");
        engine.down(other, compose_file, dir)?;
    }
    Ok(())
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
        assert_eq!(d.strategy, Strategy::Recreate);
        let d = declared(&json!({"metadata": {"compose": {"strategy": "blue-green"}}}))
            .unwrap()
            .unwrap();
        assert_eq!(d.strategy, Strategy::BlueGreen);
        for bad in [
            json!({"metadata": {"compose": {"strategy": "canary"}}}),
            json!({"metadata": {"compose": 3}}),
            json!({"metadata": {"compose": {"file": 1}}}),
            json!({"metadata": {"compose": {"health_timeout_secs": 0}}}),
            json!({"metadata": {"compose": {"health_timeout_secs": "5"}}}),
        ] {
            assert!(declared(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compose_steps_are_updater_itself_run_from_the_module_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        std::fs::create_dir_all(&dir).unwrap();
        let doc = |v: Value| v.as_object().unwrap().clone();
        let plain = doc(json!({"metadata": {"schema_version": "1"}}));
        let bin = Path::new("/usr/bin/updater");
        assert_eq!(programs(&plain, &dir, bin, None).unwrap(), None);
        let compose = doc(json!({"metadata": {"schema_version": "1", "compose": true}}));
        let e = programs(&compose, &dir, bin, None).unwrap_err().to_string();
        assert!(e.contains("no compose file"), "{e}");
        std::fs::write(dir.join("compose.yaml"), "services: {}").unwrap();
        let p = programs(&compose, &dir, bin, Some(Path::new("/etc/dc")))
            .unwrap()
            .unwrap();
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            p.prepare,
            Program::Exec(
                bin.into(),
                args(&["compose", "prepare", "--docker-config", "/etc/dc"])
            )
        );
        assert_eq!(
            p.up,
            Program::Exec(
                bin.into(),
                args(&[
                    "compose",
                    "up",
                    "--module",
                    "web",
                    "--docker-config",
                    "/etc/dc"
                ])
            )
        );
        assert_eq!(
            p.rollback,
            Program::Exec(
                bin.into(),
                args(&["compose", "rollback", "--module", "web"])
                    .into_iter()
                    .chain(args(&["--docker-config", "/etc/dc"]))
                    .collect()
            )
        );
        let both = doc(json!({"metadata": {"schema_version": "1", "compose": true, "entry": "x"}}));
        let e = programs(&both, &dir, bin, None).unwrap_err().to_string();
        assert!(e.contains("`metadata.entry` cannot be combined"), "{e}");
    }

    /// Random and mutated inputs to every parser of this module: errors, never a panic.
    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let seeds = [
            "services:\n  web:\n    image: \"127.0.0.1:5000/a/b:1@sha256:0123456789abcdef0123456789abcdef\"\n    build: .\n",
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull""#,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}, "h:1": {"username": "u", "password": "p"}}}"#,
            "[::1]:5000/team/app:v1.2.3-rc.1",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"{}[]:,\"'@/\\ \n\t-_.=$#&*!|>aZ09\x00\xff";
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..(next() % 6 + 1) {
                let pos = (next() as usize) % (bytes.len() + 1);
                match next() % 3 {
                    0 if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    1 if pos < bytes.len() => {
                        bytes[pos] = alphabet[(next() as usize) % alphabet.len()];
                    }
                    _ => bytes.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = file::parse(&text);
            let _ = challenge::Challenge::parse(&text);
            let _ = credentials::DockerConfig::parse(&text);
            let _ = image::ImageRef::parse(&text);
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
