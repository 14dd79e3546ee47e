//! Repair and clean-up: undoing an uncommitted switch (each entry told by its identity),
//! finishing a committed one (foreign files kept in `displaced-<N>/`, the replaced version as
//! `backup/`, the earlier layout removed), and the run-start repair of whatever a crash left,
//! the earlier symlink design's journal included.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::entries::{
    gen_number, installed_path, is_legacy_link, legacy_current_gen, legacy_link_target,
    legacy_links, load_installed, set_installed_schema, Installed,
};
use super::journal::{
    identity, load_journal, remove_journal, EarlierJournal, Journal, Kind, Owner, Pending, Step,
};
use super::points::ROW_NAME;
use crate::fault;
use crate::fs;
use crate::layout::Layout;

/// Puts the framework that was installed before an uncommitted install back: every entry that
/// was switched (told by its identity) is switched back, then the swap directory, which holds
/// only the new version by then, is removed. Idempotent.
pub(super) fn undo(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    for s in j.switches.iter().rev() {
        let at = layout.root.join(&s.name);
        let kept = swap.join(&s.name);
        match s.kind {
            Kind::Replace if identity(&at) == s.staged_id => fs::exchange(&at, &kept)?,
            Kind::Create if identity(&at) == s.staged_id => fs::rename_noreplace(&at, &kept)?,
            Kind::Remove if !fs::exists_no_follow(&at) && identity(&kept) == s.old_id => {
                fs::rename_noreplace(&kept, &at)?
            }
            _ => {}
        }
    }
    fs::sync_path(&layout.root)?;
    // Never remove an old entry: whatever identity an old root entry had must be back at the root.
    for s in &j.switches {
        if s.old_id.is_some() && identity(&swap.join(&s.name)) == s.old_id {
            bail!(
                "cannot put the framework entry {} back at {}: it stays in {}",
                s.name,
                layout.root.join(&s.name).display(),
                swap.join(&s.name).display()
            );
        }
    }
    fs::remove_all(&swap)?;
    fs::sync_path(&dir)?;
    remove_journal(layout)
}

/// After the switch: foreign files go to `displaced-<n>/` (kept, never deleted), the real files
/// of an earlier layout's generation replace its links in the swap directory, `installed.json`
/// names the new entries, the swap directory (now the replaced version) becomes `backup/`, and
/// what the earlier layout left (`current`, `previous`, `gen-*`) is removed. Idempotent.
pub(super) fn finish_commit(layout: &Layout, j: &Journal) -> Result<()> {
    let dir = layout.framework();
    let swap = j.swap(layout);
    if swap.is_dir() {
        let displaced = j.displaced(layout);
        let old_gen = legacy_current_gen(layout);
        for s in &j.switches {
            let kept = swap.join(&s.name);
            match s.old {
                Some(Owner::Foreign) if fs::exists_no_follow(&kept) => {
                    fs::create_dir_all(&displaced)?;
                    fs::rename_noreplace(&kept, &displaced.join(&s.name))?;
                    log::info!(
                        "Moved the existing {} to {} (kept, never deleted)",
                        layout.root.join(&s.name).display(),
                        displaced.join(&s.name).display()
                    );
                }
                Some(Owner::Link) => {
                    // The backup holds the old generation's real files, not a dangling link.
                    let real = old_gen.as_ref().map(|g| g.join(&s.name));
                    if let Some(real) = real.filter(|r| fs::exists_no_follow(r)) {
                        if std::fs::read_link(&kept).is_ok_and(|t| t == legacy_link_target(&s.name))
                        {
                            fs::remove_all(&kept)?;
                        }
                        if !fs::exists_no_follow(&kept) {
                            fs::rename_noreplace(&real, &kept)?;
                        }
                    }
                }
                _ => {}
            }
        }
        fault::point("framework_finishing", ROW_NAME);
        let installed = Installed {
            entries: j.entries.clone(),
            version: j.version.clone(),
        };
        let value = serde_json::to_value(&installed).context("serializing installed.json")?;
        fs::write_json_atomic(&installed_path(layout), &value)?;
        let backup = dir.join("backup");
        fs::remove_all(&backup)?;
        fs::sync_path(&dir)?;
        fs::rename_noreplace(&swap, &backup)?;
    } else if load_installed(layout)?.is_none_or(|i| i.entries != j.entries) {
        // Crashed after the backup took the swap directory's place but before the journal went.
        let installed = Installed {
            entries: j.entries.clone(),
            version: j.version.clone(),
        };
        let value = serde_json::to_value(&installed).context("serializing installed.json")?;
        fs::write_json_atomic(&installed_path(layout), &value)?;
    }
    // The installed index takes the new schema_version now, before the journal goes: a repair
    // that completes the commit leaves no reason to install the same version again.
    if let Some(v) = &j.version {
        set_installed_schema(layout, v)?;
    }
    // The earlier symlink layout, once no root entry links into it.
    if legacy_links(layout)?.is_empty() {
        for name in fs::list_dir(&dir)? {
            let name = name.to_string_lossy().to_string();
            if name == "current" || name == "previous" || gen_number(&name, "gen-").is_some() {
                fs::remove_all(&dir.join(&name))?;
            }
        }
    }
    fs::sync_path(&dir)
}

/// Repairs an interrupted framework install (under the run lock, before anything else runs).
pub fn recover(layout: &Layout) -> Result<()> {
    // Temp names of interrupted atomic writes.
    for name in fs::list_dir(&layout.framework())? {
        if name.to_string_lossy().starts_with(".tmp-") {
            fs::remove_all(&layout.framework().join(name))?;
        }
    }
    let j = match load_journal(layout)? {
        None => return Ok(()),
        Some(Pending::Earlier(j)) => {
            fault::point("framework_recovering", ROW_NAME);
            return undo_earlier(layout, &j);
        }
        Some(Pending::Now(j)) => j,
    };
    fault::point("framework_recovering", ROW_NAME);
    if j.step == Step::Committed {
        finish_commit(layout, &j)?;
        remove_journal(layout)?;
        log::warn!("Completed the interrupted commit of the framework files");
    } else {
        undo(layout, &j)?;
        log::warn!("Repaired the interrupted framework update: the previous framework files are back; it will be retried");
    }
    Ok(())
}

/// Repairs an install the earlier symlink design left interrupted. Committed: `current` names
/// the new generation, so only the journal goes (the installed index takes its version; the next
/// sync turns the links into real files). Not committed: `current` back to the old generation,
/// the files it moved aside back at the root, its new links and generation removed, as that
/// design did. Idempotent.
pub(super) fn undo_earlier(layout: &Layout, j: &EarlierJournal) -> Result<()> {
    let dir = layout.framework();
    if j.step == Step::Committed {
        if let Some(v) = &j.version {
            set_installed_schema(layout, v)?;
        }
        remove_journal(layout)?;
        log::warn!(
            "Completed the interrupted commit of the framework files (earlier symlink layout)"
        );
        return Ok(());
    }
    let current = dir.join("current");
    let now = std::fs::read_link(&current).ok();
    if now.as_deref() == Some(Path::new(&j.new_gen)) {
        match &j.old_gen {
            Some(old) => fs::symlink_atomic(Path::new(old), &current)?,
            None => {
                fs::remove_all(&current)?;
                fs::sync_path(&dir)?;
            }
        }
    }
    let displaced = dir.join(&j.displaced);
    for name in &j.moved {
        let kept = displaced.join(name);
        let at = layout.root.join(name);
        if !fs::exists_no_follow(&kept) {
            continue;
        }
        if is_legacy_link(layout, name) {
            fs::remove_all(&at)?;
        }
        if fs::exists_no_follow(&at) {
            log::error!(
                "cannot put {} back: {} exists; it stays in {}",
                name,
                at.display(),
                kept.display()
            );
            continue;
        }
        fs::rename_noreplace(&kept, &at)?;
    }
    for name in &j.links_created {
        if is_legacy_link(layout, name) {
            fs::remove_all(&layout.root.join(name))?;
        }
    }
    fs::sync_path(&layout.root)?;
    fs::remove_all(&dir.join(&j.new_gen))?;
    if fs::list_dir(&displaced)?.is_empty() {
        fs::remove_all(&displaced)?;
    }
    fs::sync_path(&dir)?;
    remove_journal(layout)?;
    log::warn!("Repaired the interrupted framework update (earlier symlink layout): the previous framework files are back; it will be retried");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::journal::journal_path;
    use super::*;

    #[test]
    fn a_journal_naming_paths_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.framework()).unwrap();
        for bad in [
            r#"{"step":"switching","n":1,"entries":["../../etc"],"version":null}"#,
            r#"{"step":"switching","n":1,"entries":["utils"],"switches":[{"name":"../x","kind":"create","old":null,"staged_id":[1,2],"old_id":null}],"version":null}"#,
            r#"{"step":"switching","n":1,"entries":["utils"],"switches":[{"name":"utils","kind":"replace","old":"ours","staged_id":[1,2],"old_id":null}],"version":null}"#,
            r#"{"step":"switching","n":0,"entries":[],"version":null}"#,
            // The earlier symlink design's journal, validated as strictly.
            r#"{"step":"switching","new_gen":"../../etc","old_gen":null,"displaced":"displaced-1","entries":[],"version":null}"#,
            r#"{"step":"switching","new_gen":"gen-1","old_gen":null,"displaced":"displaced-1","entries":["utils"],"moved":["../x"],"version":null}"#,
            r#"{"step":"nope"}"#,
        ] {
            std::fs::write(journal_path(&layout), bad).unwrap();
            let e = format!("{:#}", recover(&layout).unwrap_err());
            assert!(e.contains("journal.json") && e.contains("corrupt"), "{e}");
        }
    }
}
