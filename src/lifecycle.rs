//! The lifecycle of one module (SPEC §11, README "Lifecycle"): which programs its steps are
//! ([`steps`], the one place that decides it), and the order they run in around its
//! transaction: `prepare` from the staged copy before the swap ([`prepare`]); the entry point,
//! then the health check with its retries, after the swap ([`run_entry_and_health`]); and, when
//! the update fails after the swap and the transaction has put the old copy back, the old copy's
//! `rollback` step, or its entry point when it declares none, so that what runs on the machine is
//! the old version again ([`restart_old`]). A crash between the swap and that restart leaves a
//! journal entry (`restart_old`, then step `Restart`) from which the next run's repair restores
//! the old copy and [`restart_pending`] restarts it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fault;
use crate::fs;
use crate::journal::{Journal, Step};
use crate::layout::Layout;
use crate::module::ModuleIndex;
use crate::outcome::Restart;
use crate::runner::{self, Program, RunSpec};

/// The programs of a module's steps, resolved against one copy of it (see [`steps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// Runs from the staged copy before the swap; its failure changes nothing installed.
    pub prepare: Option<Program>,
    /// The entry point (SPEC §5 order); `None`: the files are installed, nothing runs.
    pub entry: Option<Program>,
    /// The health check, tried `health_retries + 1` times.
    pub health: Option<Program>,
    /// What restarts this copy after a failed update to another one; `None`: the entry point
    /// does (see [`Steps::restart`]).
    pub rollback: Option<Program>,
}

impl Steps {
    /// What restarts this copy once it is back after a failed update: its rollback step, else
    /// its entry point (with the step's name, `"rollback"` or `"entry"`), else nothing.
    pub fn restart(&self) -> Option<(&'static str, &Program)> {
        match (&self.rollback, &self.entry) {
            (Some(p), _) => Some(("rollback", p)),
            (None, Some(p)) => Some(("entry", p)),
            (None, None) => None,
        }
    }
}

/// Resolves the steps of the copy of a module in `dir` whose index is `module`.
///
/// Contract (the one extension point for new kinds of module, e.g. Docker Compose): every step
/// a module has is decided here and nowhere else; callers run what this returns, in the order
/// of this module's documentation, with `dir` as the working directory, so a step resolved
/// against the staged copy (for `prepare`) must not be used after the swap: resolve again
/// against the installed directory. A kind may return any [`Program`] for any step (a program
/// outside the module included); `None` means the step does not exist. Must not run anything
/// or change any file. Errors name the module's file and the field.
///
/// Plain modules: `prepare` and `rollback` are `metadata.prepare` and `metadata.rollback`,
/// resolved exactly like a declared `metadata.entry` (a `.py` file runs its `main(args)`, any
/// other file must be executable); the entry point follows SPEC §5 (`metadata.entry`,
/// `index.py`, an executable `update`); the health check is `metadata.health` (a `.py` file runs
/// its `main(args)`, else it is executed).
pub fn steps(module: &ModuleIndex, dir: &Path) -> Result<Steps> {
    let shown = module.path.display();
    if let Some(compose) = compose_steps(module, dir)? {
        return Ok(compose);
    }
    let declared = |key: &str, rel: &Option<String>| -> Result<Option<Program>> {
        match rel {
            None => Ok(None),
            Some(rel) => runner::resolve_entry(dir, Some(rel))
                .with_context(|| format!("{shown}: `metadata.{key}`")),
        }
    };
    Ok(Steps {
        prepare: declared("prepare", &module.prepare)?,
        entry: runner::resolve_entry(dir, module.entry.as_deref())
            .with_context(|| format!("{shown}: finding the entry point"))?,
        health: module.health.as_deref().map(|rel| health_program(dir, rel)),
        rollback: declared("rollback", &module.rollback)?,
    })
}

/// Docker Compose modules (`metadata.compose`, README "Docker Compose modules"): prepare,
/// entry and rollback are updater's own `updater compose prepare|up|rollback`; the health check
/// stays the module's own (`metadata.health`), if it declares one.
fn compose_steps(module: &ModuleIndex, dir: &Path) -> Result<Option<Steps>> {
    let shown = module.path.display();
    let env = crate::commands::settings::environment();
    let Some(updater) = env.exe.as_deref() else {
        if crate::compose::declared(&serde_json::Value::Object(module.doc.clone()))?.is_some() {
            anyhow::bail!(
                "{shown}: a Compose module needs updater's own path, which cannot be read"
            );
        }
        return Ok(None);
    };
    // A relative `$DOCKER_CONFIG` is updater's working directory's, as the docker CLI reads it;
    // the step runs from the module directory, so it gets the absolute path.
    let docker_config = match (&env.docker_config, &env.cwd) {
        (Some(d), Some(cwd)) if d.is_relative() => Some(cwd.join(d)),
        (d, _) => d.clone(),
    };
    let docker_config = docker_config.as_deref();
    // A plan's index is slim (its raw document keeps `metadata.compose`, not `entry` and the
    // rest), so the fields a Compose module may not declare are checked on the typed index too.
    if module
        .doc
        .get("metadata")
        .and_then(|m| m.get("compose"))
        .is_some()
    {
        for (key, v) in [
            ("entry", &module.entry),
            ("prepare", &module.prepare),
            ("rollback", &module.rollback),
        ] {
            if v.is_some() {
                anyhow::bail!(
                    "{shown}: `metadata.{key}` cannot be combined with `metadata.compose` (updater runs the Compose steps)"
                );
            }
        }
    }
    let Some(p) = crate::compose::programs(&module.doc, dir, updater, docker_config)
        .with_context(|| format!("{shown}: `metadata.compose`"))?
    else {
        return Ok(None);
    };
    Ok(Some(Steps {
        prepare: Some(p.prepare),
        entry: Some(p.up),
        health: module.health.as_deref().map(|rel| health_program(dir, rel)),
        rollback: Some(p.rollback),
    }))
}

/// A health check runs as `python main(args)` when it is a `.py` file, else as an executable.
fn health_program(module_dir: &Path, rel: &str) -> Program {
    let path = module_dir.join(rel);
    if rel.ends_with(".py") {
        Program::PythonMain(path)
    } else {
        Program::Executable(path)
    }
}

/// What every program of one module's run shares: name, working directory, environment,
/// timeout, log file, interpreter and the record of its process group.
pub struct Runner<'a> {
    name: &'a str,
    dir: &'a Path,
    env: &'a [(String, String)],
    timeout: Duration,
    log_file: PathBuf,
    python: &'a Path,
    pgid_file: PathBuf,
}

impl<'a> Runner<'a> {
    /// The programs of module `name` run from `dir` (cwd) with `env` and the timeout of
    /// `index`. `fresh_log`: the module's log file starts empty (the first program of a run);
    /// else what runs is appended to it.
    pub fn new(
        layout: &Layout,
        name: &'a str,
        dir: &'a Path,
        env: &'a [(String, String)],
        index: &ModuleIndex,
        python: &'a Path,
        fresh_log: bool,
    ) -> Result<Runner<'a>> {
        let log_file = layout.logs().join(format!("{name}.log"));
        if fresh_log {
            fs::remove_all(&log_file)?;
        }
        Ok(Runner {
            name,
            dir,
            env,
            timeout: index.timeout,
            log_file,
            python,
            pgid_file: crate::transaction::pgid_file(layout, name),
        })
    }

    /// Runs one step (`what`: "entry point", "health check", …); an unsuccessful run is an
    /// error "`what` failed: why". Returns what a Python `main` returned beyond `success`.
    pub fn run(&self, what: &str, program: &Program) -> Result<Option<serde_json::Value>> {
        let name = self.name;
        let outcome = runner::run(&RunSpec {
            module: name,
            module_dir: self.dir,
            program,
            args: None,
            env: self.env,
            timeout: self.timeout,
            log_file: &self.log_file,
            python: self.python,
            pgid_file: Some(&self.pgid_file),
            fork_server: crate::commands::settings::environment().fork_server,
        })
        .with_context(|| format!("running the {what} of {name}"))?;
        if outcome.success {
            log::debug!(
                "Module {name}: {what} succeeded in {} ms",
                outcome.duration.as_millis()
            );
            Ok(outcome.details)
        } else {
            anyhow::bail!(
                "{what} failed: {}",
                outcome.reason.unwrap_or_else(|| "unknown reason".into())
            )
        }
    }
}

/// Runs the `prepare` step of module `name` (if its new copy declares one) from the staged copy
/// `staged`, before the swap, with `env` plus `UPDATER_STAGE=1` (`env`'s `UPDATER_MODULE_DIR`
/// should be `staged`). Starts the module's log file afresh. An error says "prepare failed" (or
/// which step of the staged copy cannot be resolved); the caller then discards the staging, and
/// nothing installed has changed.
pub fn prepare(
    layout: &Layout,
    name: &str,
    index: &ModuleIndex,
    staged: &Path,
    env: &[(String, String)],
    python: &Path,
) -> Result<()> {
    // Every step of the new copy is resolved here, so a missing or non-executable entry point
    // is found before anything installed changes.
    let steps = steps(index, staged)
        .with_context(|| format!("checking the steps of the staged copy of {name}"))?;
    let mut env = env.to_vec();
    env.push(("UPDATER_STAGE".into(), "1".into()));
    let runner = Runner::new(layout, name, staged, &env, index, python, true)?;
    if let Some(program) = &steps.prepare {
        log::info!("Module {name}: preparing {} (staged)", index.version);
        runner.run("prepare", program)?;
    }
    fault::at(fault::Point::Prepared, name);
    Ok(())
}

/// Whether [`run_entry_and_health`] runs the steps of an install (which pass the crash points
/// of a module's update, `fault::Point::EntryStarted` … `HealthDone`, and append to the log the
/// prepare step started) or of an unchanged module under `--run enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Install,
    Unchanged,
}

/// Runs the entry point, then the health check with its retries, of the copy of module `name`
/// installed at `dir`, with `env`. Returns what the entry's Python `main` returned beyond
/// `success`. Without an entry point, only the health check runs (when declared). An error
/// says which step failed and why.
pub fn run_entry_and_health(
    layout: &Layout,
    name: &str,
    index: &ModuleIndex,
    dir: &Path,
    env: &[(String, String)],
    python: &Path,
    run: Run,
) -> Result<Option<serde_json::Value>> {
    let point = |p: fault::Point| {
        if run == Run::Install {
            fault::at(p, name);
        }
    };
    let steps = steps(index, dir)?;
    let runner = Runner::new(layout, name, dir, env, index, python, run == Run::Unchanged)?;
    point(fault::Point::EntryStarted);
    let details = match &steps.entry {
        Some(program) => runner.run("entry point", program)?,
        None => {
            log::info!("Module {name} has no entry point; its files are installed");
            None
        }
    };
    point(fault::Point::EntryDone);
    if let Some(health) = &steps.health {
        health_with_retries(&runner, index, health)?;
    }
    point(fault::Point::HealthDone);
    Ok(details)
}

/// The health check, `health_retries + 1` attempts `health_interval_secs` apart. A stop request
/// (SIGTERM/SIGINT) ends the wait between two attempts: the check has then failed.
fn health_with_retries(runner: &Runner, index: &ModuleIndex, health: &Program) -> Result<()> {
    let name = runner.name;
    let attempts = index.health_retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        let err = match runner.run("health check", health) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if attempts == 1 {
            return Err(err);
        }
        if attempt >= attempts {
            anyhow::bail!("{err:#} (attempt {attempt} of {attempts})");
        }
        log::warn!(
            "Module {name}: health check attempt {attempt} of {attempts} failed: {err:#}; trying again in {} s",
            index.health_interval.as_secs()
        );
        fault::at(fault::Point::HealthRetry, name);
        if !wait(index.health_interval) {
            anyhow::bail!(
                "{err:#} (attempt {attempt} of {attempts}; the run was asked to stop (SIGTERM/SIGINT) before the next attempt)"
            );
        }
        attempt += 1;
    }
}

/// Sleeps for `period` unless a stop is requested; false when one was.
fn wait(period: Duration) -> bool {
    let until = Instant::now() + period;
    loop {
        if crate::signals::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// After a failed update of module `name` to `failed_version` (the journal's entry for it is at
/// `Step::Restart`: the old copy is back, its `backup_paths` too), restarts the old copy: its
/// rollback step, else its entry point, runs from the installed directory with
/// `UPDATER_ROLLBACK=1`, `UPDATER_FROM_VERSION` = `failed_version` and `UPDATER_TO_VERSION` = the
/// old copy's version. Then the journal entry is removed, whatever the result (a failed restart
/// is reported, not retried forever). Never fails: the result says what happened.
pub fn restart_old(
    layout: &Layout,
    journal: &Journal,
    name: &str,
    failed_version: &str,
    python: &Path,
) -> Restart {
    fault::at(fault::Point::Restarting, name);
    let dir = layout.module(name);
    let mut version = None;
    let mut ran = None;
    let result = (|| -> Result<()> {
        let index = ModuleIndex::load(&dir)?;
        version = Some(index.version.to_string());
        let steps = steps(&index, &dir)?;
        let Some((step, program)) = steps.restart() else {
            return Ok(());
        };
        ran = Some(step);
        log::info!(
            "Module {name}: restarting the old version {} (its {step})",
            index.version
        );
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let env = vec![
            ("UPDATER_MODULE".to_string(), name.to_string()),
            (
                "UPDATER_FROM_VERSION".to_string(),
                failed_version.to_string(),
            ),
            ("UPDATER_TO_VERSION".to_string(), index.version.to_string()),
            ("UPDATER_MODULE_DIR".to_string(), s(&dir)),
            ("UPDATER_BACKUP_DIR".to_string(), String::new()),
            ("UPDATER_MODULES_PATH".to_string(), s(&layout.root)),
            ("UPDATER_ROLLBACK".to_string(), "1".to_string()),
        ];
        let runner = Runner::new(layout, name, &dir, &env, &index, python, false)?;
        let what = if step == "rollback" {
            "rollback step"
        } else {
            "entry point (restarting the old version)"
        };
        runner.run(what, program)?;
        Ok(())
    })();
    let restart = Restart {
        // An error before anything could run (an unreadable old index) still counts as a
        // restart that was due and failed.
        ran: ran.is_some() || result.is_err(),
        ok: result.is_ok(),
        step: ran,
        version,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    if let Err(e) = &result {
        log::error!("Module {name}: restarting the old version failed: {e:#}");
    }
    if let Err(e) = journal.remove(name) {
        log::error!("{e:#}");
    }
    restart
}

/// The next run's half of [`restart_old`]: for every journal entry at `Step::Restart` (left by
/// the repair of an update interrupted after its swap, or by a crash during a restart), restarts
/// the old copy. Runs once the repair (modules and framework) is done, before anything is
/// retried. Returns the modules restarted, with how.
pub fn restart_pending(layout: &Layout, python: &Path) -> Result<Vec<(String, Restart)>> {
    let journal = Journal::load(&layout.journal())?;
    let mut out = Vec::new();
    for (name, entry) in journal.entries() {
        if entry.step != Step::Restart {
            continue;
        }
        let r = restart_old(layout, &journal, &name, &entry.version, python);
        let line = format!(
            "Module {name}: its interrupted update to {} was undone: {}",
            entry.version,
            r.describe()
        );
        if r.ok {
            log::warn!("{line}");
        } else {
            log::error!("{line}");
        }
        out.push((name, r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(dir: &Path, meta: &str) -> ModuleIndex {
        ModuleIndex::parse(
            &dir.join("index.json"),
            &format!(r#"{{"metadata": {{"schema_version": "1.0.0"{meta}}}}}"#),
        )
        .unwrap()
    }

    fn script(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn steps_resolve_like_the_entry_and_restart_falls_back_to_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        script(&d.join("update"), 0o755);
        script(&d.join("bin/prepare"), 0o755);
        script(&d.join("rb.py"), 0o644);
        let plain = steps(&module(d, ""), d).unwrap();
        assert_eq!(plain.prepare, None);
        assert_eq!(plain.entry, Some(Program::Executable(d.join("update"))));
        assert_eq!(
            plain.restart(),
            Some(("entry", &Program::Executable(d.join("update"))))
        );
        let full = steps(
            &module(
                d,
                r#", "prepare": "bin/prepare", "rollback": "rb.py", "health": "h.py""#,
            ),
            d,
        )
        .unwrap();
        assert_eq!(
            full.prepare,
            Some(Program::Executable(d.join("bin/prepare")))
        );
        assert_eq!(full.health, Some(Program::PythonMain(d.join("h.py"))));
        assert_eq!(
            full.restart(),
            Some(("rollback", &Program::PythonMain(d.join("rb.py"))))
        );
    }

    #[test]
    fn a_missing_or_non_executable_step_is_an_error_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        script(&d.join("prepare.sh"), 0o644);
        let e = format!(
            "{:#}",
            steps(&module(d, r#", "prepare": "prepare.sh""#), d).unwrap_err()
        );
        assert!(
            e.contains("index.json")
                && e.contains("metadata.prepare")
                && e.contains("not executable"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            steps(&module(d, r#", "rollback": "gone.sh""#), d).unwrap_err()
        );
        assert!(
            e.contains("metadata.rollback") && e.contains("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn the_human_words_of_a_restart() {
        let ok = Restart {
            ran: true,
            ok: true,
            step: Some("rollback"),
            version: Some("1.0.0".into()),
            error: None,
        };
        assert_eq!(
            ok.describe(),
            "rolled back to 1.0.0; old version restarted (its rollback step)"
        );
        let failed = Restart {
            ok: false,
            error: Some("rollback step failed: exit status 4".into()),
            ..ok
        };
        assert_eq!(
            failed.describe(),
            "rolled back to 1.0.0; restart FAILED: rollback step failed: exit status 4"
        );
        assert_eq!(Restart::nothing(None).describe(), "it was not installed");
    }
}
