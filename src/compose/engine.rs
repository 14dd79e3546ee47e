//! Driving the Docker engine: `docker pull` of one image, and a project's `up -d` through
//! whichever Compose the machine has (`docker compose` v2, else `docker-compose` v1), then
//! waiting until the project's containers run and their health checks pass (`docker inspect`
//! `.State.Health.Status`), with a deadline. The child processes get no stdin; their output
//! goes to the log, one line per record.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which Compose the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The `docker compose` CLI plugin.
    V2,
    /// The standalone `docker-compose` (Python).
    V1,
}

/// The Compose of this machine, found once.
#[derive(Debug, Clone)]
pub struct Engine {
    pub flavor: Flavor,
    /// `DOCKER_CONFIG` for the docker and Compose commands (the directory of the Docker config
    /// file whose credentials pulls use); `None`: their default (`~/.docker`).
    pub docker_config: Option<PathBuf>,
}

/// The label Compose (v1 and v2) puts on a project's containers.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// How often the health of a project's containers is read while waiting.
const POLL: Duration = Duration::from_millis(500);

impl Engine {
    /// `docker compose` when `docker compose version` works, else `docker-compose` when
    /// `docker-compose version` works, else an error saying neither is there.
    pub fn detect(docker_config: Option<&Path>) -> Result<Engine> {
        let docker_config = docker_config.map(Path::to_path_buf);
        if quiet(Command::new("docker").args(["compose", "version"])) {
            return Ok(Engine {
                flavor: Flavor::V2,
                docker_config,
            });
        }
        if quiet(Command::new("docker-compose").arg("version")) {
            return Ok(Engine {
                flavor: Flavor::V1,
                docker_config,
            });
        }
        bail!("neither `docker compose` (v2) nor `docker-compose` (v1) works on this machine")
    }

    /// The Compose command for `project` defined by `file`, relative paths in it taken from `dir`.
    fn compose(&self, project: &str, file: &Path, dir: &Path) -> Command {
        let mut cmd = match self.flavor {
            Flavor::V2 => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            Flavor::V1 => Command::new("docker-compose"),
        };
        if let Some(dir) = &self.docker_config {
            cmd.env("DOCKER_CONFIG", dir);
        }
        cmd.arg("--ansi")
            .arg("never")
            .arg("--project-name")
            .arg(project)
            .arg("--file")
            .arg(file)
            .arg("--project-directory")
            .arg(dir)
            .current_dir(dir);
        cmd
    }

    /// Creates or recreates the project's containers from `file` (`up -d --remove-orphans`:
    /// services gone from the file are removed).
    pub fn up(&self, project: &str, file: &Path, dir: &Path) -> Result<()> {
        let mut cmd = self.compose(project, file, dir);
        cmd.args(["up", "--detach", "--remove-orphans"]);
        run(&mut cmd).with_context(|| format!("bringing up compose project {project}"))
    }

    /// Stops and removes the project's containers and networks (volumes are kept).
    pub fn down(&self, project: &str, file: &Path, dir: &Path) -> Result<()> {
        let mut cmd = self.compose(project, file, dir);
        cmd.args(["down", "--remove-orphans"]);
        run(&mut cmd).with_context(|| format!("taking down compose project {project}"))
    }
}

/// `docker pull IMAGE`, with `DOCKER_CONFIG` set to `docker_config` when given.
pub fn pull(image: &str, docker_config: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("docker");
    if let Some(dir) = docker_config {
        cmd.env("DOCKER_CONFIG", dir);
    }
    run(cmd.args(["pull", "--", image])).with_context(|| format!("pulling image {image}"))
}

/// Waits until every container of `project` runs and is `healthy` (or has no health check).
/// Fails at once when one is `unhealthy`, has exited or is dead, and at `timeout`, naming the
/// containers that are not ready.
pub fn wait_healthy(project: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let states = project_states(project)?;
        if states.is_empty() {
            bail!("compose project {project} has no containers");
        }
        let mut waiting = Vec::new();
        for s in &states {
            match (s.status.as_str(), s.health.as_str()) {
                ("running", "healthy" | "") => {}
                (_, "unhealthy") => bail!(
                    "container {} of compose project {project} is unhealthy{}",
                    s.name,
                    s.last_check
                        .as_deref()
                        .map(|l| format!(" (last check: {l})"))
                        .unwrap_or_default()
                ),
                ("exited" | "dead", _) => bail!(
                    "container {} of compose project {project} has {} (exit code {})",
                    s.name,
                    s.status,
                    s.exit_code
                ),
                (status, health) => waiting.push(format!(
                    "{} ({status}{})",
                    s.name,
                    if health.is_empty() {
                        String::new()
                    } else {
                        format!(", {health}")
                    }
                )),
            }
        }
        if waiting.is_empty() {
            log::info!(
                "compose project {project}: {} container(s) running and healthy",
                states.len()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "compose project {project}: not healthy after {}s: {}",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(POLL);
    }
}

/// What `docker inspect` says of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a health check.
    pub health: String,
    pub exit_code: i64,
    /// When it was created (RFC 3339 as Docker writes it, so ordered as text).
    pub created: String,
    /// The output of the last health check, one line.
    pub last_check: Option<String>,
}

/// The service containers of `project` (one-off `run` containers left out), sorted by name.
pub fn project_states(project: &str) -> Result<Vec<ContainerState>> {
    let out = run_captured(Command::new("docker").args([
        "ps",
        "--all",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label={PROJECT_LABEL}={project}"),
    ]))
    .with_context(|| format!("listing the containers of compose project {project}"))?;
    let ids: Vec<&str> = out.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = run_captured(
        Command::new("docker")
            .args(["inspect", "--type", "container", "--format", "{{json .}}"])
            .args(&ids),
    )
    .context("inspecting containers")?;
    let mut states = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).context("reading `docker inspect` output")?;
        let labels = &v["Config"]["Labels"];
        if labels["com.docker.compose.oneoff"].as_str() == Some("True") {
            continue;
        }
        let state = &v["State"];
        let last_check = state["Health"]["Log"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["Output"].as_str())
            .map(|o| o.trim().replace('\n', " "))
            .filter(|o| !o.is_empty());
        states.push(ContainerState {
            name: v["Name"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches('/')
                .to_string(),
            image: v["Config"]["Image"].as_str().unwrap_or("").to_string(),
            status: state["Status"].as_str().unwrap_or("").to_string(),
            health: state["Health"]["Status"].as_str().unwrap_or("").to_string(),
            exit_code: state["ExitCode"].as_i64().unwrap_or(0),
            created: v["Created"].as_str().unwrap_or("").to_string(),
            last_check,
        });
    }
    states.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(states)
}

/// Whether the command runs and exits 0 (its output dropped).
fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd`, logs its output, and fails unless it exits 0 (the error carries its last lines).
fn run(cmd: &mut Command) -> Result<()> {
    let out = output_of(cmd)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        log::info!("{line}");
    }
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        bail!("{} failed ({}): {tail}", describe(cmd), out.status);
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails unless it exits 0 (with its stderr).
fn run_captured(cmd: &mut Command) -> Result<String> {
    let out = output_of(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn output_of(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
