//! Legacy manifest mode (SPEC §6): `updater legacy` / `updater --legacy`. Owns reading and
//! validating `manifest.json`, choosing the entrypoint's children, the checksum gate, running
//! the accepted children in parallel through the §5 runner, recording `lastApplied`, and the
//! legacy log lines and `--json` document. No git sync happens here.
//!
//! Rules, in the order a child meets them:
//! - its name must be a module name and have an entry in `updates`, else it **failed**;
//! - `enabled: false` (default true) → **skipped**, which is not a failure (like a hold);
//! - it must be installed (`<modules-path>/modules/<name>/` a directory), have `args` that are a
//!   list of strings (default none) and a well-formed `enabled`, else it **failed**;
//! - with a `checksum`, [`checksum::checksum_dir`] of the installed directory must equal it, else
//!   it is **refused** and its entry point does not run;
//! - its entry point (SPEC §5 order: `metadata.entry` of its installed `index.json`, `index.py`,
//!   executable `update`) runs with its `args`; success → **applied** and `lastApplied` is set.
//!
//! Exit: 0 when every enabled child applied, [`ExitStatus::Partial`] (3) when any failed or was
//! refused, `Err` (1) when the manifest is missing or malformed or the entrypoint is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::checksum;
use crate::clock;
use crate::config::Config;
use crate::fs;
use crate::layout::Layout;
use crate::module;
use crate::report::{self, SUCCESS_LINE};
use crate::runner::{self, RunSpec};
use crate::ExitStatus;

mod results;
use results::log_report;
pub use results::{
    json_document, summarize, ChildReport, LegacyDocument, LegacyResult, LegacyRow, LegacySummary,
};

/// The entrypoint used when the manifest names none.
pub const DEFAULT_ENTRYPOINT: &str = "all_services";

/// The manifest's file name inside the install root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A parsed, validated manifest. `doc` is the whole document, kept for the rewrite.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub doc: Value,
    pub entrypoint: String,
    /// Position in `updates` of each named entry.
    pub positions: BTreeMap<String, usize>,
    /// The entrypoint's `children`, duplicates removed, in order.
    pub children: Vec<String>,
    /// Whether the entrypoint entry itself is enabled.
    pub entrypoint_enabled: bool,
}

impl Manifest {
    /// Reads and validates the manifest at `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("legacy manifest {} does not exist", path.display())
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading legacy manifest {}", path.display()))
            }
        };
        Self::parse(path, &text)
    }

    /// Validates a manifest's text (see [`Manifest::load`]).
    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let shown = path.display();
        let doc: Value = serde_json::from_str(text)
            .with_context(|| format!("legacy manifest {shown} is not valid JSON"))?;
        let Some(top) = doc.as_object() else {
            bail!("legacy manifest {shown}: expected a JSON object at the top level");
        };
        let entrypoint = match top.get("entrypoint") {
            None | Some(Value::Null) => DEFAULT_ENTRYPOINT.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                bail!(
                    "legacy manifest {shown}: `entrypoint` must be a non-empty string, not {other}"
                )
            }
        };
        let updates = match top.get("updates") {
            Some(Value::Array(items)) => items,
            Some(other) => bail!(
                "legacy manifest {shown}: `updates` must be an array, not {}",
                kind(other)
            ),
            None => bail!("legacy manifest {shown}: no `updates` array"),
        };
        let mut positions = BTreeMap::new();
        for (i, item) in updates.iter().enumerate() {
            let Some(obj) = item.as_object() else {
                bail!("legacy manifest {shown}: updates[{i}] is not an object");
            };
            let Some(name) = obj.get("name").and_then(Value::as_str) else {
                bail!("legacy manifest {shown}: updates[{i}] has no string `name`");
            };
            if let Some(first) = positions.insert(name.to_string(), i) {
                bail!(
                    "legacy manifest {shown}: updates[{first}] and updates[{i}] are both named {name:?}"
                );
            }
        }
        let Some(&ep_pos) = positions.get(&entrypoint) else {
            bail!("legacy manifest {shown}: the entrypoint {entrypoint:?} is not in `updates`");
        };
        let ep = &updates[ep_pos];
        let children_value = match ep.get("children") {
            Some(Value::Array(items)) => items,
            Some(other) => bail!(
                "legacy manifest {shown}: `children` of the entrypoint {entrypoint:?} must be an array of names, not {}",
                kind(other)
            ),
            None => bail!(
                "legacy manifest {shown}: the entrypoint {entrypoint:?} has no `children` list"
            ),
        };
        let mut children: Vec<String> = Vec::new();
        for (i, child) in children_value.iter().enumerate() {
            let Some(name) = child.as_str() else {
                bail!(
                    "legacy manifest {shown}: children[{i}] of the entrypoint {entrypoint:?} is not a string: {child}"
                );
            };
            if children.iter().any(|c| c == name) {
                log::warn!(
                    "legacy manifest {shown}: {name:?} is listed twice in the children of {entrypoint:?}; it runs once"
                );
            } else {
                children.push(name.to_string());
            }
        }
        let entrypoint_enabled = match ep.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => bail!(
                "legacy manifest {shown}: `enabled` of the entrypoint {entrypoint:?} must be true or false, not {other}"
            ),
        };
        Ok(Manifest {
            path: path.to_path_buf(),
            doc,
            entrypoint,
            positions,
            children,
            entrypoint_enabled,
        })
    }

    /// The `updates` entry named `name`.
    fn entry(&self, name: &str) -> Option<&Map<String, Value>> {
        let pos = *self.positions.get(name)?;
        self.doc.get("updates")?.get(pos)?.as_object()
    }

    /// Sets `lastApplied` of the entry named `name` (keeping its position when present).
    fn set_last_applied(&mut self, name: &str, when: &str) {
        let Some(&pos) = self.positions.get(name) else {
            return;
        };
        if let Some(Value::Object(entry)) = self.doc.get_mut("updates").and_then(|u| u.get_mut(pos))
        {
            entry.insert("lastApplied".to_string(), Value::String(when.to_string()));
        }
    }
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A child that passed the cheap checks and will be checksummed (if asked) and run.
#[derive(Debug, Clone)]
struct Job {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
    version: String,
    checksum: Option<String>,
}

/// Settings shared by every job of a run.
struct RunContext<'a> {
    layout: &'a Layout,
    python: PathBuf,
}

/// Decides, without touching the module, whether `name` runs: a [`Job`], or its final report.
fn prepare(
    layout: &Layout,
    manifest: &Manifest,
    name: &str,
) -> std::result::Result<Job, ChildReport> {
    let failed = |reason: String| ChildReport::new(name, LegacyResult::Failed, Some(reason));
    if let Err(e) = module::check_name(name) {
        return Err(failed(e.to_string()));
    }
    let Some(entry) = manifest.entry(name) else {
        return Err(failed(format!(
            "no entry named {name:?} in `updates` of {}",
            manifest.path.display()
        )));
    };
    match entry.get("enabled") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Err(ChildReport::new(
                name,
                LegacyResult::Skipped,
                Some("disabled in the manifest (enabled: false)".into()),
            ))
        }
        Some(other) => {
            return Err(failed(format!(
                "`enabled` must be true or false, not {other}"
            )))
        }
    }
    let dir = layout.module(name);
    if !dir.is_dir() {
        return Err(failed(format!(
            "not installed ({} is not a directory)",
            dir.display()
        )));
    }
    let args = match entry.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut args = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) => args.push(s.to_string()),
                    None => {
                        return Err(failed(format!(
                            "`args` must be a list of strings; {item} is not a string"
                        )))
                    }
                }
            }
            args
        }
        Some(other) => {
            return Err(failed(format!(
                "`args` must be a list of strings, not {}",
                kind(other)
            )))
        }
    };
    let checksum = match entry.get("checksum") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match normalize_checksum(s) {
            Ok(c) => Some(c),
            Err(reason) => return Err(ChildReport::new(name, LegacyResult::Refused, Some(reason))),
        },
        Some(other) => {
            return Err(ChildReport::new(
                name,
                LegacyResult::Refused,
                Some(format!("`checksum` must be a string, not {other}")),
            ))
        }
    };
    let version = match entry.get("version") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Ok(Job {
        name: name.to_string(),
        dir,
        args,
        version,
        checksum,
    })
}

/// A manifest `checksum` as `sha256:<lowercase hex>`: `sha256:` (any case) or no prefix, then 64
/// hex digits (any case). Anything else is the reason the child is refused.
pub fn normalize_checksum(text: &str) -> std::result::Result<String, String> {
    let hex = match text.split_once(':') {
        Some((alg, hex)) if alg.eq_ignore_ascii_case("sha256") => hex,
        Some((alg, _)) => {
            return Err(format!(
                "unsupported checksum algorithm {alg:?} in {text:?} (only sha256 is supported)"
            ))
        }
        None => text,
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "checksum {text:?} is not of the form sha256:<64 hex digits>"
        ));
    }
    Ok(format!("{}{}", checksum::PREFIX, hex.to_ascii_lowercase()))
}

/// What the installed `index.json` says about running the module: its declared entry and its
/// timeout. A missing file means the defaults; an unreadable one is a warning and the defaults
/// (a legacy module need not have a schema index).
fn module_settings(dir: &Path) -> (Option<String>, Duration) {
    let path = dir.join("index.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (None, module::DEFAULT_TIMEOUT)
        }
        Err(e) => {
            log::warn!(
                "cannot read {}: {e}; using the default timeout",
                path.display()
            );
            return (None, module::DEFAULT_TIMEOUT);
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            log::warn!(
                "{} is not valid JSON ({e}); using the default timeout",
                path.display()
            );
            return (None, module::DEFAULT_TIMEOUT);
        }
    };
    let meta = doc.get("metadata");
    let timeout = match meta.and_then(|m| m.get("timeout_secs")) {
        None | Some(Value::Null) => module::DEFAULT_TIMEOUT,
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 => Duration::from_secs(s),
            _ => {
                log::warn!(
                    "{}: `metadata.timeout_secs` {v} is not a positive integer; using {}",
                    path.display(),
                    module::DEFAULT_TIMEOUT.as_secs()
                );
                module::DEFAULT_TIMEOUT
            }
        },
    };
    let entry = meta
        .and_then(|m| m.get("entry"))
        .and_then(Value::as_str)
        .map(str::to_string);
    (entry, timeout)
}

/// Checksums (if asked) and runs one accepted child. Never panics, never errs: every problem is
/// the child's report.
fn run_job(ctx: &RunContext, job: &Job) -> ChildReport {
    let name = job.name.as_str();
    let started = Instant::now();
    let finish = |result: LegacyResult, error: Option<String>| {
        let applied_at = (result == LegacyResult::Applied).then(clock::now_iso8601);
        ChildReport {
            name: name.to_string(),
            result,
            error,
            duration_ms: Some(started.elapsed().as_millis()),
            applied_at,
        }
    };
    if let Some(expected) = &job.checksum {
        match checksum::checksum_dir(&job.dir) {
            Ok(actual) if &actual == expected => {}
            Ok(actual) => {
                return finish(
                    LegacyResult::Refused,
                    Some(format!(
                        "checksum mismatch: the manifest expects {expected}, the installed {} has {actual}",
                        job.dir.display()
                    )),
                )
            }
            Err(e) => {
                return finish(
                    LegacyResult::Refused,
                    Some(format!("cannot verify the checksum: {e:#}")),
                )
            }
        }
    }
    if crate::signals::stop_requested() {
        return finish(
            LegacyResult::Failed,
            Some("the run was asked to stop (SIGTERM/SIGINT) before it started".into()),
        );
    }
    let (declared, timeout) = module_settings(&job.dir);
    let program = match runner::resolve_entry(&job.dir, declared.as_deref()) {
        Ok(Some(program)) => program,
        Ok(None) => {
            return finish(
                LegacyResult::Failed,
                Some(format!(
                    "no entry point in {} (metadata.entry, index.py with main(args), or an executable update)",
                    job.dir.display()
                )),
            )
        }
        Err(e) => return finish(LegacyResult::Failed, Some(format!("{e:#}"))),
    };
    let log_file = ctx.layout.logs().join(format!("{name}.log"));
    if let Err(e) = fs::remove_all(&log_file) {
        return finish(LegacyResult::Failed, Some(format!("{e:#}")));
    }
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let env = vec![
        ("UPDATER_MODULE".to_string(), job.name.clone()),
        ("UPDATER_FROM_VERSION".to_string(), job.version.clone()),
        ("UPDATER_TO_VERSION".to_string(), job.version.clone()),
        ("UPDATER_MODULE_DIR".to_string(), s(&job.dir)),
        ("UPDATER_BACKUP_DIR".to_string(), String::new()),
        ("UPDATER_MODULES_PATH".to_string(), s(&ctx.layout.root)),
    ];
    log::info!("Running legacy module {name}");
    let outcome = runner::run(&RunSpec {
        module: name,
        module_dir: &job.dir,
        program: &program,
        args: Some(&job.args),
        env: &env,
        timeout,
        log_file: &log_file,
        python: &ctx.python,
        pgid_file: Some(&crate::transaction::pgid_file(ctx.layout, name)),
        fork_server: crate::commands::settings::environment().fork_server,
    });
    match outcome {
        Ok(o) if o.success => finish(LegacyResult::Applied, None),
        Ok(o) => finish(
            LegacyResult::Failed,
            Some(o.reason.unwrap_or_else(|| "unknown reason".into())),
        ),
        Err(e) => finish(
            LegacyResult::Failed,
            Some(format!("running the entry point: {e:#}")),
        ),
    }
}

/// `updater legacy` / `updater --legacy`.
pub fn run(cfg: &Config) -> Result<ExitStatus> {
    let layout = Layout::new(&cfg.modules_path);
    let manifest_path = cfg
        .manifest
        .clone()
        .unwrap_or_else(|| layout.root.join(MANIFEST_FILE));
    // Fail before creating anything when there is plainly no manifest (a mistyped path).
    if !manifest_path.exists() {
        bail!("legacy manifest {} does not exist", manifest_path.display());
    }
    let _session = crate::commands::open(cfg, true)?;
    // The inhibit switch holds legacy runs too (after the repair, like sync).
    if let Some(i) = crate::commands::settings::inhibit(&layout) {
        log::info!("{}", i.line());
        if cfg.json {
            crate::report::print_json(&crate::report::to_value(
                &crate::report::InhibitedDocument {
                    command: "legacy",
                    modules_path: &cfg.modules_path,
                    inhibited: crate::report::inhibited_value(&i),
                    exit_code: ExitStatus::Success.code(),
                },
            ));
        }
        return Ok(ExitStatus::Success);
    }
    // Outside the update window a legacy run (which has no check of its own) runs nothing.
    // An unreadable index does not stop a legacy run (as for its python setting below).
    let installed = crate::global_index::GlobalIndex::load(&layout.index())
        .ok()
        .flatten();
    if let Some(closed) = crate::commands::settings::closed_window(cfg, installed.as_ref())? {
        log::info!("{}: running nothing", closed.line());
        return Ok(ExitStatus::Success);
    }

    let mut manifest = Manifest::load(&manifest_path)?;
    log::info!(
        "Legacy manifest {}: entrypoint {}, children: {}",
        manifest.path.display(),
        manifest.entrypoint,
        if manifest.children.is_empty() {
            "none".to_string()
        } else {
            manifest.children.join(", ")
        }
    );

    // Decide each child, in the manifest's order; `slots[i]` is its report once known.
    let mut slots: Vec<Option<ChildReport>> = Vec::with_capacity(manifest.children.len());
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    for (i, name) in manifest.children.iter().enumerate() {
        if !manifest.entrypoint_enabled {
            slots.push(Some(ChildReport::new(
                name,
                LegacyResult::Skipped,
                Some(format!(
                    "the entrypoint {} is disabled in the manifest",
                    manifest.entrypoint
                )),
            )));
            continue;
        }
        match prepare(&layout, &manifest, name) {
            Ok(job) => {
                slots.push(None);
                jobs.push((i, job));
            }
            Err(report) => slots.push(Some(report)),
        }
    }
    for r in slots.iter().flatten() {
        log_report(r);
    }

    if !jobs.is_empty() {
        fs::create_dir_all(&layout.logs())?;
        let ctx = RunContext {
            layout: &layout,
            python: crate::commands::settings::python(
                cfg,
                crate::global_index::GlobalIndex::load(&layout.index())
                    .ok()
                    .flatten()
                    .as_ref(),
            ),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.jobs.max(1))
            .thread_name(|i| format!("updater-legacy-{i}"))
            .build()
            .context("starting the worker pool")?;
        let finished: Vec<(usize, ChildReport)> = pool.install(|| {
            jobs.par_iter()
                .with_max_len(1)
                .map(|(i, job)| {
                    let report = run_job(&ctx, job);
                    log_report(&report);
                    (*i, report)
                })
                .collect()
        });
        for (i, report) in finished {
            slots[i] = Some(report);
        }
    }
    // Every slot is filled: the ones left empty above were exactly the jobs.
    let reports: Vec<ChildReport> = slots.into_iter().flatten().collect();

    let mut any_applied = false;
    for r in &reports {
        if let Some(when) = &r.applied_at {
            manifest.set_last_applied(&r.name, when);
            any_applied = true;
        }
    }
    if any_applied {
        // Rewrite the file a symlinked manifest points to, not the link.
        let target =
            std::fs::canonicalize(&manifest.path).unwrap_or_else(|_| manifest.path.clone());
        fs::write_json_atomic(&target, &manifest.doc).with_context(|| {
            format!(
                "recording lastApplied in the legacy manifest {}",
                manifest.path.display()
            )
        })?;
    }

    let s = summarize(&reports);
    if cfg.json {
        report::print_json(&json_document(&manifest, &reports));
    }
    log::info!(
        "Legacy run of {}: {} applied, {} failed, {} skipped",
        manifest.entrypoint,
        s.applied,
        s.failed,
        s.skipped
    );
    if s.failed > 0 {
        return Ok(ExitStatus::Partial);
    }
    log::info!("{SUCCESS_LINE}");
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("/x/manifest.json"), text)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn parses_default_and_named_entrypoints() {
        let m =
            parse(r#"{"updates":[{"name":"a"},{"name":"all_services","children":["a","b","a"]}]}"#)
                .unwrap();
        assert_eq!(m.entrypoint, DEFAULT_ENTRYPOINT);
        assert_eq!(m.children, ["a", "b"]);
        assert!(m.entrypoint_enabled);

        let m = parse(
            r#"{"entrypoint":"group","updates":[{"name":"group","enabled":false,"children":[]}]}"#,
        )
        .unwrap();
        assert_eq!(m.entrypoint, "group");
        assert!(m.children.is_empty());
        assert!(!m.entrypoint_enabled);
    }

    #[test]
    fn malformed_manifests_name_the_file_and_the_problem() {
        let cases = [
            ("not json", "is not valid JSON"),
            ("[]", "expected a JSON object"),
            ("{}", "no `updates` array"),
            (
                r#"{"updates":{}}"#,
                "`updates` must be an array, not an object",
            ),
            (r#"{"updates":[1]}"#, "updates[0] is not an object"),
            (
                r#"{"updates":[{"name":3}]}"#,
                "updates[0] has no string `name`",
            ),
            (
                r#"{"updates":[{"name":"a"},{"name":"a"}]}"#,
                "updates[0] and updates[1] are both named \"a\"",
            ),
            (
                r#"{"updates":[{"name":"a"}]}"#,
                "the entrypoint \"all_services\" is not in `updates`",
            ),
            (
                r#"{"entrypoint":"a","updates":[{"name":"a"}]}"#,
                "the entrypoint \"a\" has no `children` list",
            ),
            (
                r#"{"entrypoint":"a","updates":[{"name":"a","children":"b"}]}"#,
                "must be an array of names, not a string",
            ),
            (
                r#"{"entrypoint":"a","updates":[{"name":"a","children":[1]}]}"#,
                "children[0] of the entrypoint \"a\" is not a string",
            ),
            (
                r#"{"entrypoint":7,"updates":[]}"#,
                "`entrypoint` must be a non-empty string",
            ),
            (
                r#"{"entrypoint":"a","updates":[{"name":"a","children":[],"enabled":"no"}]}"#,
                "must be true or false",
            ),
        ];
        for (text, needle) in cases {
            let e = err(text);
            assert!(e.contains("/x/manifest.json"), "{text}: {e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn missing_manifest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        let e = format!("{:#}", Manifest::load(&p).unwrap_err());
        assert!(
            e.contains(&p.display().to_string()) && e.contains("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn checksum_forms() {
        let hex = "AB".repeat(32);
        let want = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(normalize_checksum(&format!("sha256:{hex}")).unwrap(), want);
        assert_eq!(normalize_checksum(&format!("SHA256:{hex}")).unwrap(), want);
        assert_eq!(normalize_checksum(&hex).unwrap(), want);
        assert!(normalize_checksum("md5:abc")
            .unwrap_err()
            .contains("unsupported"));
        assert!(normalize_checksum("sha256:abc")
            .unwrap_err()
            .contains("64 hex"));
        assert!(normalize_checksum(&format!("sha256:{}", "g".repeat(64)))
            .unwrap_err()
            .contains("64 hex"));
    }

    #[test]
    fn prepare_classifies_children() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.module("inst")).unwrap();
        std::fs::create_dir_all(layout.module("badargs")).unwrap();
        std::fs::create_dir_all(layout.module("badsum")).unwrap();
        let m = parse(
            r#"{"updates":[
                {"name":"inst","version":"1.2.0","args":["--x"],"checksum":null},
                {"name":"off","enabled":false},
                {"name":"gone"},
                {"name":"badargs","args":"--x"},
                {"name":"badsum","checksum":"md5:00"},
                {"name":"all_services","children":["inst","off","gone","nolisted","../x","badargs","badsum"]}
            ]}"#,
        )
        .unwrap();
        let job = prepare(&layout, &m, "inst").unwrap();
        assert_eq!(job.args, ["--x"]);
        assert_eq!(job.version, "1.2.0");
        assert_eq!(job.checksum, None);
        let result = |n: &str| prepare(&layout, &m, n).unwrap_err();
        assert_eq!(result("off").result, LegacyResult::Skipped);
        let gone = result("gone");
        assert_eq!(gone.result, LegacyResult::Failed);
        assert!(gone.error.unwrap().contains("not installed"));
        let unlisted = result("nolisted");
        assert_eq!(unlisted.result, LegacyResult::Failed);
        assert!(unlisted.error.unwrap().contains("no entry named"));
        assert!(result("../x").error.unwrap().contains("not a module name"));
        assert!(result("badargs")
            .error
            .unwrap()
            .contains("`args` must be a list"));
        assert_eq!(result("badsum").result, LegacyResult::Refused);
    }

    #[test]
    fn last_applied_keeps_key_order() {
        let mut m = parse(
            r#"{"z":1,"updates":[{"name":"a","lastApplied":"old","x":2},{"name":"b"},{"name":"all_services","children":["a","b"]}],"a":0}"#,
        )
        .unwrap();
        m.set_last_applied("a", "2024-01-01T00:00:00Z");
        m.set_last_applied("b", "2024-01-01T00:00:00Z");
        assert_eq!(
            serde_json::to_string(&m.doc).unwrap(),
            r#"{"z":1,"updates":[{"name":"a","lastApplied":"2024-01-01T00:00:00Z","x":2},{"name":"b","lastApplied":"2024-01-01T00:00:00Z"},{"name":"all_services","children":["a","b"]}],"a":0}"#
        );
    }

    #[test]
    fn summary_counts_refused_as_failed() {
        let reports = [
            ChildReport::new("a", LegacyResult::Applied, None),
            ChildReport::new("b", LegacyResult::Refused, None),
            ChildReport::new("c", LegacyResult::Failed, None),
            ChildReport::new("d", LegacyResult::Skipped, None),
        ];
        assert_eq!(
            summarize(&reports),
            LegacySummary {
                applied: 1,
                failed: 2,
                refused: 1,
                skipped: 1
            }
        );
    }
}
