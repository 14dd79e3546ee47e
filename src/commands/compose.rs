//! `updater compose prepare|up|rollback` (hidden): one lifecycle step of a Docker Compose
//! module, run by updater itself as that module's prepare, entry and rollback program (see
//! `compose` and README "Docker Compose modules"). It acts on the module directory (`--dir`, else
//! the working directory, which the runner sets to the module directory) and takes no lock: the
//! sync that runs it holds the lock.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::compose::{self, credentials::DockerConfig, Step};
use crate::ExitStatus;

/// Runs `step` for the module in `dir` (default: the working directory) named `module`
/// (default: the directory's name).
/// `docker_config`: the directory of the Docker config file (`--docker-config`, which updater
/// passes from its own `$DOCKER_CONFIG`, since programs get a clean environment); else
/// `commands::settings::docker_config_file`.
pub fn compose(
    step: Step,
    dir: Option<&PathBuf>,
    module: Option<&str>,
    docker_config: Option<&PathBuf>,
) -> Result<ExitStatus> {
    let env = super::settings::environment();
    let dir = match dir {
        Some(d) => d.clone(),
        None => env
            .cwd
            .clone()
            .context("the working directory cannot be read; pass --dir")?,
    };
    let module = match module {
        Some(m) => m.to_string(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no name; pass --module", dir.display()))?,
    };
    let config_file = match docker_config {
        Some(d) => Some(d.join("config.json")),
        None => super::settings::docker_config_file(),
    };
    let docker = DockerConfig::load(config_file.as_deref())?;
    if docker.has_helpers {
        log::debug!("the Docker config file names credential helpers; updater does not run them");
    }
    let target = compose::Target {
        dir,
        module,
        // The runner sets UPDATER_FROM_VERSION, empty for a module that was not installed.
        first_install: env.from_version.as_deref() == Some(""),
        docker_config: docker_config.cloned(),
    };
    compose::run(step, &target, &docker).with_context(|| {
        format!(
            "compose {} of module {} ({})",
            step.as_str(),
            target.module,
            target.dir.display()
        )
    })?;
    log::info!(
        "compose {} of module {}: done",
        step.as_str(),
        target.module
    );
    Ok(ExitStatus::Success)
}
