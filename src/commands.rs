//! The commands, each one the pipeline of SPEC §1 in order: lock → recover → sync → plan →
//! apply → index/report. Every command that writes repairs first; `check` only reports what a
//! repair would do.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::apply::{self, ApplyOptions};
use crate::config::{Config, DEFAULT_REPO_URL};
use crate::fault;
use crate::fs::{self, RunLock};
use crate::git::{self, SyncOptions, SyncedRepo};
use crate::global_index::GlobalIndex;
use crate::layout::Layout;
use crate::module::{self, ModuleIndex};
use crate::plan::{self, Plan, PlanOptions};
use crate::recover;
use crate::report::{self, SUCCESS_LINE};
use crate::state::State;
use crate::ExitStatus;

/// An open run: the lock is held for as long as this lives.
pub(crate) struct Session {
    pub(crate) layout: Layout,
    _lock: RunLock,
}

/// Takes the lock (creating `.updater/` first, nothing else), then repairs when `writes`. Every
/// command that touches the install root starts here, so none can skip the permission check or
/// the repair.
pub(crate) fn open(cfg: &Config, writes: bool) -> Result<Session> {
    let layout = Layout::new(&cfg.modules_path);
    fs::restrict_umask();
    if layout.root.exists() && !layout.root.is_dir() {
        bail!(
            "--modules-path {} is not a directory",
            layout.root.display()
        );
    }
    fs::create_dir_all(&layout.state_dir())?;
    refuse_unsafe_permissions(cfg, &layout)?;
    let lock = RunLock::acquire(&layout.lock(), cfg.wait)?;
    if writes {
        recover::recover(&layout).context("repairing what an interrupted run left")?;
        crate::framework::recover(&layout).context("repairing an interrupted framework update")?;
    } else {
        for p in recover::pending(&layout)?
            .into_iter()
            .chain(crate::framework::pending(&layout)?)
        {
            log::warn!("Pending repair (the next sync does it): {p}");
        }
    }
    Ok(Session {
        layout,
        _lock: lock,
    })
}

/// As root, an install root, state directory or clone that other users can write to would let
/// them run code as root: refuse it, as sudo and ssh do for their files.
fn refuse_unsafe_permissions(cfg: &Config, layout: &Layout) -> Result<()> {
    if !fs::is_root() {
        return Ok(());
    }
    let clone = cfg
        .local_repo
        .clone()
        .unwrap_or_else(|| layout.default_clone());
    for p in [
        layout.root.clone(),
        layout.state_dir(),
        layout.modules(),
        clone,
    ] {
        if let Some(problem) = crate::doctor::unsafe_permissions(&p) {
            bail!(
                "refusing to run as root: {problem}; other users could run code as root \
                 (fix: chown root:root {0} && chmod go-w {0})",
                p.display()
            );
        }
    }
    Ok(())
}

/// Progress is for people: only on a terminal, never under `--json` or `-q`.
fn show_progress(cfg: &Config) -> bool {
    !cfg.json
        && cfg.verbosity != crate::config::Verbosity::Quiet
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Syncs the clone from the configured source and plans.
fn sync_and_plan(
    cfg: &Config,
    layout: &Layout,
    installed: Option<&GlobalIndex>,
    state: &State,
    holds: std::collections::BTreeSet<String>,
) -> Result<(SyncedRepo, Plan)> {
    let url = cfg
        .repo_url
        .clone()
        .or_else(|| installed.and_then(|i| i.repository_url().map(str::to_string)))
        .unwrap_or_else(|| DEFAULT_REPO_URL.to_string());
    let url = git::normalize_url(&url);
    let branch = cfg
        .branch
        .clone()
        .or_else(|| installed.and_then(|i| i.branch().map(str::to_string)));
    let local = cfg
        .local_repo
        .clone()
        .unwrap_or_else(|| layout.default_clone());
    let progress = show_progress(cfg);
    let trust = crate::trust::policy::TrustPolicy::for_run(
        cfg.require_signed || installed.is_some_and(|i| i.require_signed()),
        &cfg.allowed_signers
            .clone()
            .unwrap_or_else(|| layout.state_dir().join("allowed_signers")),
        state.last_commit.clone(),
        cfg.allow_rewind,
        crate::doctor::unsafe_permissions,
    )?;
    let synced = git::sync(
        &url,
        branch.as_deref(),
        &local,
        &SyncOptions {
            progress,
            trust,
            default_clone: local == layout.default_clone(),
            timeout: Some(cfg.git_timeout),
        },
    )
    .with_context(|| format!("syncing the updates repository {url}"))?;
    log::info!(
        "Repository {} ({}) is at {}",
        synced.url,
        synced.branch,
        &synced.commit[..synced.commit.len().min(12)]
    );
    let opts = PlanOptions {
        allow_downgrade: cfg.allow_downgrade,
        prune: cfg.prune,
        force: cfg.force,
        holds,
    };
    // Only check can see an unrepaired journal (writing commands repaired it under the lock).
    let overrides = recover::pending_overrides(layout)?;
    let plan = plan::plan_with(
        &synced.path.join("modules"),
        &layout.modules(),
        &overrides,
        opts,
    )?;
    Ok((synced, plan))
}

/// `updater check`.
pub fn check(cfg: &Config) -> Result<ExitStatus> {
    let session = open(cfg, false)?;
    let layout = &session.layout;
    let installed = GlobalIndex::load(&layout.index())?;
    let mut state = State::load(&layout.state_file())?;
    let choices = crate::preserve::MachineChoices::load(layout)?;
    let (synced, mut plan) = sync_and_plan(
        cfg,
        layout,
        installed.as_ref(),
        &state,
        choices.holds(layout)?,
    )?;
    let framework = crate::framework::step(
        layout,
        &synced.path,
        load_repo_index(&synced).as_ref(),
        installed.as_ref(),
        false,
    )?;
    let framework_due = framework
        .as_ref()
        .is_some_and(|r| matches!(r.decision, "new" | "update"));
    report::log_decision_lines(&plan);
    let run = apply::run_mode(cfg.run, installed.as_ref());
    let content = crate::content::check(
        layout,
        installed.as_ref(),
        &plan,
        run,
        &crate::python::for_config(cfg, installed.as_ref()),
    )?;
    // The framework's own update counts like a content update: something a sync would apply.
    plan.content_updates =
        content.values().filter(|c| c.update).count() + usize::from(framework_due);
    let any_updates = report::log_found(&plan, true);
    if cfg.json {
        let mut doc = report::json_document("check", &synced, &plan, &BTreeMap::new());
        crate::content::annotate(&mut doc, &content);
        crate::framework::add_row(&mut doc, framework.as_ref());
        report::print_json(&doc);
    }
    let available = Some(plan.to_apply().count() + plan.content_updates);
    if state.updates_available != available {
        state.updates_available = available;
        state.save()?;
    }
    let status = if plan.invalid_count() > 0 {
        log::error!("{} modules are invalid", plan.invalid_count());
        ExitStatus::Failure
    } else if framework.as_ref().is_some_and(|r| !r.is_ok()) {
        ExitStatus::Failure
    } else if cfg.exit_code && any_updates {
        ExitStatus::UpdatesAvailable
    } else {
        ExitStatus::Success
    };
    if status != ExitStatus::Failure {
        log::info!("{SUCCESS_LINE}");
    }
    Ok(status)
}

/// `updater sync`.
pub fn sync(cfg: &Config) -> Result<ExitStatus> {
    let session = open(cfg, true)?;
    let layout = &session.layout;
    let installed = GlobalIndex::load(&layout.index())?;
    let mut state = State::load(&layout.state_file())?;
    let mut choices = crate::preserve::MachineChoices::load(layout)?;
    let holds = choices.holds(layout)?;
    let (synced, plan) = sync_and_plan(cfg, layout, installed.as_ref(), &state, holds)?;
    let repo_index = load_repo_index(&synced);
    // The framework goes first: modules import it.
    let framework = crate::framework::step(
        layout,
        &synced.path,
        repo_index.as_ref(),
        installed.as_ref(),
        true,
    )?;
    let framework_ok = framework.as_ref().is_none_or(|r| r.is_ok());
    report::log_decisions(&plan);
    let opts = ApplyOptions {
        jobs: cfg.jobs,
        python: crate::python::for_config(cfg, installed.as_ref()),
        progress: show_progress(cfg),
        run: apply::run_mode(cfg.run, installed.as_ref()),
        machine_enabled: choices.enabled.clone(),
    };
    let outcomes = if framework_ok {
        apply::apply(layout, &plan, &opts)?
    } else {
        crate::framework::skip_all(&plan)
    };

    let mut index = match installed {
        Some(i) => i,
        None => GlobalIndex::empty(&layout.index()),
    };
    // The schema_version is the framework's: it moves only once the framework is in place.
    let take_metadata = framework
        .as_ref()
        .is_none_or(|r| r.index_takes_repository_metadata());
    if let (Some(repo_index), true) = (&repo_index, take_metadata) {
        index.merge_metadata_from(repo_index);
    }
    index.set_metadata("repository_url", &synced.url);
    if cfg.branch.is_some() || index.branch().is_some() {
        index.set_metadata("branch", &synced.branch);
    }
    write_index(layout, &mut index)?;
    let installed_now: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.result == report::ModuleResult::Applied)
        .map(|(n, _)| n.as_str())
        .collect();
    choices.note_installed(layout, &installed_now)?;

    for (name, o) in &outcomes {
        // An install records the version tried; a `--run enabled` run the installed one.
        let version = plan.get(name).and_then(|m| match m.action {
            plan::Action::Install => m.available.as_deref(),
            _ => m.installed.as_deref().or(m.available.as_deref()),
        });
        state.record(name, o.result.as_str(), version, o.error.as_deref());
    }
    state.last_commit = Some(synced.commit.clone());
    state.updates_available = Some(
        outcomes
            .iter()
            .filter(|(name, o)| {
                !o.is_success()
                    && plan
                        .get(name)
                        .is_some_and(|m| m.action != plan::Action::Nothing)
            })
            .count(),
    );
    state.last_run = Some(crate::clock::now_iso8601());
    state.save()?;

    let s = report::summarize(&plan, &outcomes);
    let mut doc = report::json_document("sync", &synced, &plan, &outcomes);
    crate::framework::add_row(&mut doc, framework.as_ref());
    if cfg.json {
        report::print_json(&doc);
    }
    if let Err(e) = crate::framework::ensure_wrapper(layout) {
        log::error!("writing updater's wrapper: {e:#}");
    }
    let partial = !framework_ok || s.failed + s.skipped + s.invalid > 0;
    let code = if partial {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    };
    let summary = crate::hooks::RunSummary::of(
        &outcomes,
        framework.as_ref(),
        &synced.commit,
        doc,
        code.code(),
    );
    crate::hooks::run_post_sync(layout, &summary);
    if s.to_apply > 0 {
        log::info!(
            "Applied {} of {} modules; {} failed, {} skipped",
            s.applied,
            s.to_apply,
            s.failed,
            s.skipped
        );
    }
    if partial {
        if s.invalid > 0 {
            log::error!("{} modules are invalid", s.invalid);
        }
        return Ok(ExitStatus::Partial);
    }
    log::info!("{SUCCESS_LINE}");
    Ok(ExitStatus::Success)
}

/// The repository's global index, when it can be read (a symlink or a bad file is a warning).
fn load_repo_index(synced: &SyncedRepo) -> Option<GlobalIndex> {
    let path = synced.path.join("index.json");
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
        log::warn!("ignoring {}: it is a symlink", path.display());
        return None;
    }
    match GlobalIndex::load(&path) {
        Ok(i) => i,
        Err(e) => {
            log::warn!("ignoring the repository's global index: {e:#}");
            None
        }
    }
}

/// Rewrites `packages` from what is in the module directories: each installed module with its
/// installed version. A module whose index cannot be read keeps its previous entry.
fn write_index(layout: &Layout, index: &mut GlobalIndex) -> Result<()> {
    let previous: BTreeMap<String, String> = index.packages().into_iter().collect();
    let mut packages = Vec::new();
    for (name, index) in module::installed(&layout.modules())? {
        match index {
            Ok(m) => packages.push((name, m.version.to_string())),
            Err(e) => {
                if let Some(v) = previous.get(&name) {
                    packages.push((name.clone(), v.clone()));
                }
                log::warn!("index entry of {name} kept as it was: {e:#}");
            }
        }
    }
    index.set_packages(&packages);
    index.save()?;
    fault::point("index_written", "");
    Ok(())
}

/// `updater status`.
pub fn status(cfg: &Config) -> Result<ExitStatus> {
    let layout = Layout::new(&cfg.modules_path);
    let state = State::load(&layout.state_file())?;
    // Right after a crash the module directory may hold an uncommitted copy: say so.
    let pending = recover::pending(&layout)?;
    let interrupted = recover::pending_overrides(&layout)?;
    let mut rows = Vec::new();
    for (name, index) in module::installed(&layout.modules())? {
        let (version, enabled, error) = match index {
            Ok(m) => (Some(m.version.to_string()), Some(m.enabled), None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        };
        let last = state.modules.get(&name);
        let last_result = if interrupted.contains_key(&name) {
            Some("interrupted (pending repair)".to_string())
        } else {
            last.map(|l| l.result.clone())
        };
        rows.push(json!({
            "name": name,
            "version": version,
            "enabled": enabled,
            "last_result": last_result,
            "last_time": last.map(|l| l.time.clone()),
            "last_error": last.and_then(|l| l.error.clone()),
            "error": error,
            "has_backup": layout.backup_of(&name).exists(),
        }));
    }
    if cfg.json {
        report::print_json(&json!({
            "command": "status",
            "modules_path": layout.root,
            "last_commit": state.last_commit,
            "last_run": state.last_run,
            "modules": rows,
            "pending_repairs": pending,
        }));
        return Ok(ExitStatus::Success);
    }
    for p in &pending {
        crate::output::out(&format!(
            "Pending repair (the next sync does it): {}",
            crate::output::escape(p)
        ));
    }
    if rows.is_empty() {
        crate::output::out(&format!(
            "No modules installed in {}",
            crate::output::escape(&layout.modules().display().to_string())
        ));
        return Ok(ExitStatus::Success);
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => crate::output::escape(s).into_owned(),
        other => other.to_string(),
    };
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                text(&r["name"]),
                text(&r["version"]),
                text(&r["enabled"]),
                text(&r["last_result"]),
                text(&r["last_time"]),
            ]
        })
        .collect();
    let header = ["MODULE", "VERSION", "ENABLED", "LAST RESULT", "WHEN"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        crate::output::out(cells.join("  ").trim_end());
    }
    if let Some(c) = &state.last_commit {
        crate::output::out(&format!(
            "\nLast synced commit: {}",
            crate::output::escape(c)
        ));
    }
    Ok(ExitStatus::Success)
}

fn installed_module(layout: &Layout, name: &str) -> Result<std::path::PathBuf> {
    if !module::valid_name(name) {
        bail!("{name:?} is not a module name (expected [A-Za-z0-9][A-Za-z0-9._-]*)");
    }
    let dir = layout.module(name);
    if !dir.is_dir() {
        bail!(
            "module {name} is not installed in {}",
            layout.modules().display()
        );
    }
    Ok(dir)
}

/// `updater enable NAME` / `updater disable NAME`.
pub fn set_enabled(cfg: &Config, name: &str, enabled: bool) -> Result<ExitStatus> {
    let session = open(cfg, true)?;
    let dir = installed_module(&session.layout, name)?;
    let mut index = ModuleIndex::load(&dir)?;
    if index.enabled == enabled {
        log::info!(
            "Module {name} is already {}",
            if enabled { "enabled" } else { "disabled" }
        );
    } else {
        index.set_enabled(enabled)?;
        if enabled {
            log::info!("Module {name} enabled: the next sync updates it again");
        } else {
            log::info!(
                "Module {name} disabled: held at {} until `updater enable {name}`",
                index.version
            );
        }
    }
    // The machine's own choice: kept across updates, and a `false` holds the module.
    crate::preserve::MachineChoices::record(&session.layout, name, enabled)?;
    Ok(ExitStatus::Success)
}

/// `updater rollback NAME`: swaps the kept previous copy back in (the current copy becomes the
/// backup, so a rollback can itself be undone) and rewrites the index entry.
pub fn rollback(cfg: &Config, name: &str) -> Result<ExitStatus> {
    let session = open(cfg, true)?;
    let layout = &session.layout;
    if !module::valid_name(name) {
        bail!("{name:?} is not a module name");
    }
    let backup = layout.backup_of(name);
    if !backup.is_dir() {
        bail!(
            "module {name} has no kept previous copy ({} does not exist)",
            backup.display()
        );
    }
    let kept =
        ModuleIndex::load(&backup).with_context(|| format!("reading the kept copy of {name}"))?;
    let installed = layout.module(name);
    let from = if installed.is_dir() {
        let current = ModuleIndex::load(&installed)
            .map(|m| m.version.to_string())
            .ok();
        fs::exchange(&backup, &installed)?;
        current
    } else {
        fs::create_dir_all(&layout.modules())?;
        fs::rename(&backup, &installed)?;
        None
    };
    let mut index =
        GlobalIndex::load(&layout.index())?.unwrap_or_else(|| GlobalIndex::empty(&layout.index()));
    write_index(layout, &mut index)?;
    let mut state = State::load(&layout.state_file())?;
    state.record(name, "rollback", Some(&kept.version.to_string()), None);
    state.save()?;
    log::info!(
        "Module {name} rolled back: {} → {}. The next sync updates it again unless you run `updater disable {name}`",
        from.as_deref().unwrap_or("none"),
        kept.version
    );
    Ok(ExitStatus::Success)
}
