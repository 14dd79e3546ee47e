//! `updater doctor`: a read-only report of anything inconsistent in an install root, each finding
//! with what to do about it. Exit 0 when all is well, 1 when something needs attention.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::fs;
use crate::git;
use crate::global_index::GlobalIndex;
use crate::journal::Journal;
use crate::layout::Layout;
use crate::module::{self, ModuleIndex};
use crate::report;
use crate::state::State;
use crate::ExitStatus;

/// One thing found wrong, and the fix.
#[derive(Debug, Clone)]
pub struct Finding {
    pub what: String,
    pub fix: String,
}

fn finding(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        what: what.into(),
        fix: fix.into(),
    }
}

/// Everything `doctor` checks.
pub fn examine(cfg: &Config) -> Vec<Finding> {
    let layout = Layout::new(&cfg.modules_path);
    let mut out = Vec::new();
    if !layout.root.exists() {
        out.push(finding(
            format!("the install root {} does not exist", layout.root.display()),
            "nothing is installed yet; run `updater sync` to install",
        ));
        return out;
    }
    // A run in progress makes the rest transient.
    let mut busy = false;
    if layout.lock().exists() {
        if let Err(e) = fs::RunLock::acquire(&layout.lock(), false) {
            if e.downcast_ref::<fs::LockHeld>().is_some() {
                busy = true;
                out.push(finding(
                    format!("{e}"),
                    "a run is in progress; run doctor again when it has finished",
                ));
            }
        }
    }
    match Journal::load(&layout.journal()) {
        Ok(j) => {
            for (name, e) in j.entries() {
                out.push(finding(
                    format!(
                        "an interrupted update of module {name} to {} is pending repair ({:?})",
                        e.version, e.step
                    ),
                    "run `updater sync` (any writing command repairs first)",
                ));
            }
        }
        Err(e) => out.push(finding(
            format!("{e:#}"),
            "check the modules it names against their backups, then delete the journal",
        )),
    }
    let journaled: Vec<String> = Journal::load(&layout.journal())
        .map(|j| j.entries().into_keys().collect())
        .unwrap_or_default();
    if let Ok(names) = fs::list_dir(&layout.staging()) {
        for n in names {
            if journaled.iter().any(|j| n.to_str() == Some(j.as_str())) {
                continue; // part of a pending repair, reported above
            }
            out.push(finding(
                format!("leftover staging {}", layout.staging().join(n).display()),
                "run `updater sync`, which removes it",
            ));
        }
    }
    // Entries a killed run left running (while no run holds the lock).
    for n in fs::list_dir(&layout.running()).unwrap_or_default() {
        let Some(pgid) = (!busy)
            .then(|| crate::recover::leftover_group(&layout.running().join(&n)))
            .flatten()
        else {
            continue;
        };
        out.push(finding(
            format!(
                "an entry of module {} left running by an interrupted run still runs (process group {pgid})",
                n.to_string_lossy()
            ),
            format!("run `updater sync`, which kills it before it retries the module (or: kill -KILL -- -{pgid})"),
        ));
    }
    // What a repair could not finish and set aside.
    for n in fs::list_dir(&layout.quarantine()).unwrap_or_default() {
        let dir = layout.quarantine().join(&n);
        let reason = std::fs::read_to_string(dir.join("reason.txt")).unwrap_or_default();
        let module = reason
            .lines()
            .find_map(|l| l.strip_prefix("module: "))
            .unwrap_or("?");
        let error = reason
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("unknown");
        let installed = reason
            .lines()
            .find_map(|l| l.strip_prefix("installed: "))
            .unwrap_or("unknown");
        out.push(finding(
            format!(
                "the repair of an interrupted update of module {module} could not be finished ({error}); \
                 what it left is kept in quarantine at {}; installed now: {installed}",
                dir.display()
            ),
            format!(
                "compare {0}/tree (the copy found in staging) with modules/{module} and put back what you need, \
                 restore {0}/paths (the module's backup_paths snapshot) if needed, then delete {0}",
                dir.display()
            ),
        ));
    }
    // The index against the module directories.
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    for os_name in fs::list_dir(&layout.modules()).unwrap_or_default() {
        let shown = os_name.to_string_lossy().into_owned();
        let Some(name) = os_name.to_str().filter(|n| module::valid_name(n)) else {
            out.push(finding(
                format!(
                    "{} is not a valid module name",
                    layout.modules().join(&shown).display()
                ),
                "move it out of modules/",
            ));
            continue;
        };
        match ModuleIndex::load(&layout.module(name)) {
            Ok(m) => {
                installed.insert(name.to_string(), m.version.to_string());
            }
            Err(e) => out.push(finding(
                format!("installed module {name}: {e:#}"),
                format!("fix the file, or run `updater rollback {name}` if a backup is kept"),
            )),
        }
    }
    match GlobalIndex::load(&layout.index()) {
        Ok(Some(index)) => {
            let recorded: BTreeMap<String, String> = index.packages().into_iter().collect();
            for (name, v) in &installed {
                match recorded.get(name) {
                    None => out.push(finding(
                        format!(
                            "module {name} {v} is installed but not in {}",
                            layout.index().display()
                        ),
                        "run `updater sync`, which rewrites the index from the modules",
                    )),
                    Some(r)
                        if crate::version::Version::parse(r)
                            .map(|x| x.to_string())
                            .as_deref()
                            != Ok(v.as_str()) =>
                    {
                        out.push(finding(
                            format!(
                                "{} records {name} {r}, but {v} is installed",
                                layout.index().display()
                            ),
                            "run `updater sync`, which rewrites the index from the modules",
                        ))
                    }
                    _ => {}
                }
            }
            for name in recorded.keys().filter(|n| !installed.contains_key(*n)) {
                out.push(finding(
                    format!(
                        "{} lists {name}, which is not installed",
                        layout.index().display()
                    ),
                    "run `updater sync`, which rewrites the index from the modules",
                ));
            }
        }
        Ok(None) => {
            if !installed.is_empty() {
                out.push(finding(
                    format!(
                        "{} is missing but modules are installed",
                        layout.index().display()
                    ),
                    "run `updater sync`, which writes it",
                ));
            }
        }
        Err(e) => out.push(finding(
            format!("{e:#}"),
            "fix or delete the file; `updater sync` rewrites it from the modules",
        )),
    }
    if let Err(e) = State::load(&layout.state_file()) {
        out.push(finding(
            format!("{e:#}"),
            "delete it; it only holds history",
        ));
    }
    let clone = crate::commands::settings::clone_path(cfg, &layout);
    let default_clone = clone == layout.default_clone();
    if let Some(why) = git::refuse_foreign_clone(&clone, default_clone) {
        out.push(finding(
            why,
            "leave your own checkout alone: pass an absent or empty directory as --local-repo, \
             or leave the option out to use the default clone",
        ));
    } else if fs::exists_no_follow(&clone) && !fs::list_dir(&clone).is_ok_and(|l| l.is_empty()) {
        if let Err(e) = git::check_clone(&clone) {
            out.push(finding(
                format!(
                    "the clone {} is not a usable git repository: {e:#}",
                    clone.display()
                ),
                "run `updater sync`, which clones it again",
            ));
        }
    }
    if fs::is_root() {
        for p in crate::perms::run_paths(&layout, &clone) {
            if let Some(problem) = crate::perms::unsafe_permissions(&p) {
                out.push(finding(
                    problem,
                    format!("chown root:root {0} && chmod go-w {0}", p.display()),
                ));
            }
        }
    }
    out
}

/// The `--json` document of `updater doctor`.
#[derive(Debug, Serialize)]
pub struct DoctorDocument<'a> {
    pub command: &'static str,
    pub ok: bool,
    pub findings: Vec<FindingRow<'a>>,
}

/// One finding in [`DoctorDocument`].
#[derive(Debug, Serialize)]
pub struct FindingRow<'a> {
    pub problem: &'a str,
    pub fix: &'a str,
}

/// `updater doctor`.
pub fn command(cfg: &Config) -> Result<ExitStatus> {
    let findings = examine(cfg);
    if cfg.json {
        let items = findings
            .iter()
            .map(|f| FindingRow {
                problem: &f.what,
                fix: &f.fix,
            })
            .collect();
        report::print_json(&report::to_value(&DoctorDocument {
            command: "doctor",
            ok: findings.is_empty(),
            findings: items,
        }));
    } else if findings.is_empty() {
        crate::output::out(&format!(
            "No problems found in {}",
            crate::output::escape(&cfg.modules_path.display().to_string())
        ));
    } else {
        for f in &findings {
            let (what, fix) = (
                crate::output::escape(&f.what),
                crate::output::escape(&f.fix),
            );
            crate::output::out(&format!("problem: {what}\n    fix: {fix}"));
        }
    }
    Ok(if findings.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
