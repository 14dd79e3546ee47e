//! Installing the framework as one unit: a new version staged complete in `swap-<N>/`, the plan
//! journaled, then each root entry switched with one rename-class operation (exchange, or a
//! rename that never replaces); a failure puts the old version back before returning.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::entries::{gen_number, legacy_links, load_installed, Offer};
use super::journal::{identity, remove_journal, save_journal, Journal, Kind, Owner, Step, Switch};
use super::points::{fail_point, ROW_NAME};
use super::repair::{finish_commit, undo};
use crate::fault;
use crate::fs;
use crate::layout::Layout;

/// A number no swap, displaced or (earlier layout) generation directory has taken.
pub(super) fn next_number(layout: &Layout) -> Result<u64> {
    let mut max = 0;
    for name in fs::list_dir(&layout.framework())? {
        let n = name.to_string_lossy();
        if let Some(k) = ["gen-", "displaced-", "swap-"]
            .iter()
            .find_map(|p| gen_number(&n, p))
        {
            max = max.max(k);
        }
    }
    Ok(max + 1)
}

/// Installs the offered framework as one unit (see the module documentation). On error the
/// old framework is put back before returning.
pub(super) fn install_unit(layout: &Layout, repo_root: &Path, offer: &Offer) -> Result<()> {
    fs::create_dir_all(&layout.framework())?;
    let mut j = Journal {
        step: Step::Staging,
        n: next_number(layout)?,
        entries: offer.entries.clone(),
        switches: Vec::new(),
        version: offer.version.clone(),
    };
    save_journal(layout, &j)?;
    fault::point("framework_journal", ROW_NAME);
    if let Err(e) = stage_and_switch(layout, repo_root, &mut j) {
        if let Err(u) = undo(layout, &j) {
            log::error!("rolling back the framework failed: {u:#}; the next run will repair it");
        }
        return Err(e);
    }
    j.step = Step::Committed;
    if let Err(e) = save_journal(layout, &j) {
        // Not recorded as committed: put the old framework back, as the next run would.
        j.step = Step::Switching;
        if let Err(u) = undo(layout, &j) {
            log::error!("rolling back the framework failed: {u:#}; the next run will repair it");
        }
        return Err(e);
    }
    fault::point("framework_committing", ROW_NAME);
    // The new framework is in place; what is left is clean-up, which the next run completes.
    if let Err(e) = finish_commit(layout, &j).and_then(|()| remove_journal(layout)) {
        log::warn!("finishing the framework commit: {e:#}; the next run completes it");
    }
    fault::point("framework_committed", ROW_NAME);
    Ok(())
}

/// Stages the new version in `swap-<n>/`, journals the plan, then switches every root entry
/// with one rename-class operation each.
pub(super) fn stage_and_switch(layout: &Layout, repo_root: &Path, j: &mut Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    fs::remove_all(&swap)?;
    fs::create_dir_all(&swap)?;
    for name in &j.entries {
        fs::copy_tree(&repo_root.join(name), &swap.join(name), false)
            .with_context(|| format!("staging framework entry {name}"))?;
    }
    fs::make_sh_executable(&swap)?;
    fs::sync_path(&swap)?;
    fs::sync_path(&dir)?;
    fault::point("framework_staged", ROW_NAME);
    fail_point("framework_staged")?;

    // The plan: each entry's kind, whose the old one is, and the identities that tell after a
    // crash which side of its switch it is on.
    let ours: Vec<String> = load_installed(layout)?
        .map(|i| i.entries)
        .unwrap_or_default();
    let links = legacy_links(layout)?;
    let owner = |name: &String| {
        if links.contains(name) {
            Owner::Link
        } else if ours.contains(name) {
            Owner::Ours
        } else {
            Owner::Foreign
        }
    };
    let mut switches = Vec::new();
    for name in &j.entries {
        let at = layout.root.join(name);
        let staged_id = identity(&swap.join(name));
        if staged_id.is_none() {
            bail!(
                "the staged framework entry {name} is missing from {}",
                swap.display()
            );
        }
        match std::fs::symlink_metadata(&at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => switches.push(Switch {
                name: name.clone(),
                kind: Kind::Create,
                old: None,
                staged_id,
                old_id: None,
            }),
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", at.display())),
            Ok(_) => switches.push(Switch {
                name: name.clone(),
                kind: Kind::Replace,
                old: Some(owner(name)),
                staged_id,
                old_id: identity(&at),
            }),
        }
    }
    // Entries of ours (or links of the earlier layout) that the new framework no longer has.
    let mut gone: Vec<&String> = ours.iter().chain(&links).collect();
    gone.sort();
    gone.dedup();
    for name in gone {
        let at = layout.root.join(name);
        if j.entries.contains(name) || !fs::exists_no_follow(&at) {
            continue;
        }
        switches.push(Switch {
            name: name.clone(),
            kind: Kind::Remove,
            old: Some(owner(name)),
            staged_id: None,
            old_id: identity(&at),
        });
    }
    j.switches = switches;
    j.step = Step::Switching;
    save_journal(layout, j)?;
    fault::point("framework_switching", ROW_NAME);

    let last = j.switches.len().saturating_sub(1);
    for (i, s) in j.switches.iter().enumerate() {
        if i == last && i > 0 {
            fault::point("framework_before_last", ROW_NAME);
            fail_point("framework_before_last")?;
        }
        let at = layout.root.join(&s.name);
        let kept = swap.join(&s.name);
        match s.kind {
            Kind::Replace => fs::exchange(&at, &kept)?,
            Kind::Create => fs::rename_noreplace(&kept, &at)?,
            Kind::Remove => fs::rename_noreplace(&at, &kept)?,
        }
        if i == 0 {
            fault::point("framework_first_switched", ROW_NAME);
        }
    }
    fs::sync_path(&layout.root)?;
    fault::point("framework_switched", ROW_NAME);
    fail_point("framework_switched")?;
    Ok(())
}
