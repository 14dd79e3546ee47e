//! Sync and plan, shared by check and sync: the clone is brought to the remote tip under the
//! trust policy (signed commits, no rewind), then the plan is made against the install root.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use super::settings::RepoSettings;
use crate::config::Config;
use crate::git::{self, SyncOptions, SyncedRepo};
use crate::index_cache;
use crate::layout::Layout;
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::recover;
use crate::state::State;

/// The modules held on this machine, for the plan.
pub(super) enum Holds {
    /// Already worked out (`MachineChoices::holds`).
    Listed(BTreeSet<String>),
    /// Worked out by the plan from its own scan of the installed copies: the machine's
    /// `disable`s, and every installed `enabled: false` not recorded as the repository's.
    Choices(crate::preserve::MachineChoices),
}

impl From<BTreeSet<String>> for Holds {
    fn from(holds: BTreeSet<String>) -> Holds {
        Holds::Listed(holds)
    }
}

/// Syncs the clone from the configured source and plans. The plan reads the repository's
/// modules from the synced commit's trees and both sides through the index cache
/// (`index_cache`); the clone's `modules/` is checked against the commit (and reset) only when
/// something would be installed from it.
pub(super) fn sync_and_plan(
    cfg: &Config,
    settings: &RepoSettings,
    layout: &Layout,
    state: &State,
    holds: impl Into<Holds>,
) -> Result<(SyncedRepo, Plan)> {
    let url = &settings.url;
    // Resolved before the fetch: a bad labels file stops the run before any network work.
    let machine = super::settings::machine(cfg, layout)?;
    let trust = crate::trust::policy::TrustPolicy::for_run(
        settings.allowed_signers.as_deref(),
        state.last_commit.clone(),
        cfg.allow_rewind,
    )?;
    let mut synced = git::sync(
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
    let (holds, repository_disabled) = match holds.into() {
        Holds::Listed(h) => (h, None),
        Holds::Choices(c) => (
            c.enabled
                .iter()
                .filter(|(_, on)| !**on)
                .map(|(n, _)| n.clone())
                .collect(),
            Some(c.repository_disabled),
        ),
    };
    let opts = PlanOptions {
        allow_downgrade: cfg.allow_downgrade,
        prune: cfg.prune,
        force: cfg.force,
        holds,
        machine: Some(machine),
        repository_disabled,
    };
    // Only check can see an unrepaired journal (writing commands repaired it under the lock).
    let overrides = recover::pending_overrides(layout)?;
    let repo_modules = synced.path.join("modules");
    let sides = index_cache::scan(
        &index_cache::cache_file(&layout.state_dir()),
        &synced.path,
        &synced.commit,
        &layout.modules(),
    )?;
    let mut plan = plan::plan_sides(sides.repo, sides.installed, &repo_modules, &overrides, opts)?;
    if plan.to_apply().any(|m| m.action == Action::Install) {
        // Everything installed is copied from the clone's work tree: make sure it is exactly
        // the commit planned from before its trees are checked and copied.
        git::verify_worktree(&mut synced)?;
        plan::check_installables(&mut plan);
    }
    Ok((synced, plan))
}
