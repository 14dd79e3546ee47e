//! `updater check`: sync the clone and plan, report what a sync would do, change nothing in the
//! install root (but the state file's `updates_available`).

use std::collections::BTreeMap;

use anyhow::Result;

use super::index::load_repo_index;
use super::repo::sync_and_plan;
use super::settings::{RepoSettings, RunSettings};
use crate::config::Config;
use crate::global_index::GlobalIndex;
use crate::report::{self, SUCCESS_LINE};
use crate::state::State;
use crate::ExitStatus;

/// `updater check`.
pub fn check(cfg: &Config) -> Result<ExitStatus> {
    let session = super::open(cfg, false)?;
    let inhibit = super::settings::inhibit(&session.layout);
    if let Some(i) = &inhibit {
        log::info!("{}", i.line());
    }
    check_in(
        cfg,
        &session.layout,
        "check",
        Gate::Inhibited(inhibit.as_ref()),
    )
}

/// Why this check runs in place of (or beside) applying, for the `--json` document.
pub(crate) enum Gate<'a> {
    /// `check`: the inhibit switch, if set.
    Inhibited(Option<&'a super::settings::Inhibit>),
    /// `sync` outside its update window.
    WindowClosed(&'a super::settings::ClosedWindow),
}

/// The check itself, under a session already open: `check`, and `sync` outside its update
/// window (`command` names the document). Adds `inhibited` or `window` to the `--json`
/// document as `gate` says.
pub(crate) fn check_in(
    cfg: &Config,
    layout: &crate::layout::Layout,
    command: &str,
    gate: Gate<'_>,
) -> Result<ExitStatus> {
    let installed = GlobalIndex::load(&layout.index())?;
    // The per-module results are not needed here (10,000 of them would be read for nothing).
    let state = State::load_head(&layout.state_file())?;
    let choices = crate::preserve::MachineChoices::load(layout)?;
    let settings = RepoSettings::resolve(cfg, layout, installed.as_ref());
    // The plan works the holds out from its own scan (no second read of every index).
    let (synced, mut plan) = sync_and_plan(
        cfg,
        &settings,
        layout,
        &state,
        super::repo::Holds::Choices(choices),
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
    let run = RunSettings::resolve(cfg, installed.as_ref());
    let content = crate::content::check(layout, installed.as_ref(), &plan, run.run, &run.python)?;
    // The framework's own update counts like a content update: something a sync would apply.
    plan.content_updates =
        content.values().filter(|c| c.update).count() + usize::from(framework_due);
    let any_updates = report::log_found(&plan, true);
    if cfg.json {
        let mut doc = report::json_document(command, &synced, &plan, &BTreeMap::new());
        crate::content::annotate(&mut doc, &content);
        if let Some(map) = doc.as_object_mut() {
            match gate {
                Gate::Inhibited(Some(i)) => {
                    map.insert("inhibited".into(), report::inhibited_value(i));
                }
                Gate::Inhibited(None) => {}
                Gate::WindowClosed(w) => {
                    map.insert("window".into(), report::window_value(w));
                }
            }
        }
        crate::framework::add_row(&mut doc, framework.as_ref());
        report::print_json(&doc);
    }
    let available = Some(plan.to_apply().count() + plan.content_updates);
    if state.updates_available != available {
        State::set_updates_available(&layout.state_file(), available)?;
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
