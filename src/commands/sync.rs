//! `updater sync`: repair, sync the clone, plan, update the framework then the modules, rewrite
//! the index and the state, report, run the post-sync hooks.

use anyhow::Result;

use super::index::{load_repo_index, write_index};
use super::repo::sync_and_plan;
use super::settings::{RepoSettings, RunSettings};
use crate::apply::{self, ApplyOptions};
use crate::config::Config;
use crate::global_index::GlobalIndex;
use crate::outcome::ModuleResult;
use crate::plan;
use crate::report::{self, SUCCESS_LINE};
use crate::state::State;
use crate::ExitStatus;

/// `updater sync`.
pub fn sync(cfg: &Config) -> Result<ExitStatus> {
    // Repair first (SPEC: every writing command does), then the inhibit switch and the window.
    let session = super::open(cfg, true)?;
    let layout = &session.layout;
    if let Some(i) = super::settings::inhibit(layout) {
        log::info!("{}", i.line());
        if cfg.json {
            report::print_json(&report::to_value(&report::InhibitedDocument {
                command: "sync",
                modules_path: &cfg.modules_path,
                inhibited: report::inhibited_value(&i),
                exit_code: ExitStatus::Success.code(),
            }));
        }
        return Ok(ExitStatus::Success);
    }
    let installed = GlobalIndex::load(&layout.index())?;
    if let Some(closed) = super::settings::closed_window(cfg, installed.as_ref())? {
        log::info!("{}", closed.line());
        drop(installed);
        return super::check::check_in(
            cfg,
            layout,
            "sync",
            super::check::Gate::WindowClosed(&closed),
        );
    }
    let mut state = State::load(&layout.state_file())?;
    let mut choices = crate::preserve::MachineChoices::load(layout)?;
    let holds = choices.holds(layout)?;
    let settings = RepoSettings::resolve(cfg, layout, installed.as_ref());
    let run = RunSettings::resolve(cfg, installed.as_ref());
    if run.run == crate::config::RunMode::Enabled && super::settings::environment().fork_server {
        // Every enabled module runs: the Python fork-server starts while git syncs and plans.
        crate::runner::prewarm_fork_server(&run.python, &layout.modules());
    }
    let (synced, plan) = sync_and_plan(cfg, &settings, layout, &state, holds)?;
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
        python: run.python,
        progress: settings.progress,
        run: run.run,
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
    // A bundle is a one-off source (a USB stick): later runs keep the recorded repository.
    if crate::git::bundle_path(&synced.url).is_none() {
        index.set_metadata("repository_url", &synced.url);
    }
    if cfg.branch.is_some() || index.branch().is_some() {
        index.set_metadata("branch", &synced.branch);
    }
    write_index(layout, &mut index)?;
    let installed_now: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.result == ModuleResult::Applied)
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
    crate::hooks::run_post_sync(
        layout,
        &summary,
        super::settings::environment().hook_timeout,
    );
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
