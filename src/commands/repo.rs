//! Sync and plan, shared by check and sync: the clone is brought to the remote tip under the
//! trust policy (signed commits, no rewind), then the plan is made against the install root.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use super::settings::RepoSettings;
use crate::config::Config;
use crate::git::{self, SyncOptions, SyncedRepo};
use crate::layout::Layout;
use crate::plan::{self, Plan, PlanOptions};
use crate::recover;
use crate::state::State;

/// Syncs the clone from the configured source and plans.
pub(super) fn sync_and_plan(
    cfg: &Config,
    settings: &RepoSettings,
    layout: &Layout,
    state: &State,
    holds: BTreeSet<String>,
) -> Result<(SyncedRepo, Plan)> {
    let url = &settings.url;
    // Resolved before the fetch: a bad labels file stops the run before any network work.
    let machine = super::settings::machine(cfg, layout)?;
    let trust = crate::trust::policy::TrustPolicy::for_run(
        settings.allowed_signers.as_deref(),
        state.last_commit.clone(),
        cfg.allow_rewind,
    )?;
    let synced = git::sync(
        url,
        settings.branch.as_deref(),
        &settings.clone,
        &SyncOptions {
            progress: settings.progress,
            trust,
            default_clone: settings.default_clone,
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
        machine: Some(machine),
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
