//! Prometheus metrics in the node_exporter textfile-collector format, written atomically after
//! every check, sync and legacy run (`--metrics-file PATH`).
//!
//! - Per command (label `command`): when its last run ended, whether it succeeded, its exit code
//!   and duration, and when it last succeeded. A run replaces only its own command's series and
//!   keeps the others' from the existing file (a `check` every 15 minutes must not wipe the
//!   `sync` series that alerting watches).
//! - For the machine: updates available, invalid, orphaned, held and deferred modules (from the last
//!   comparison with the repository; a run that did not get that far keeps the previous values),
//!   and per module its installed version and last result.
//!
//! The read-merge-write runs under an flock of the file's directory, so two runs that finish at
//! once cannot lose each other's series; the write itself is atomic (temp file, sync, rename).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::fs;
use crate::layout::Layout;
use crate::module;
use crate::plan::{Decision, Plan};
use crate::state::State;

/// The series kept per command, in the order they are written.
const PER_COMMAND: [(&str, &str); 5] = [
    (
        "updater_last_run_timestamp_seconds",
        "When the last updater run ended (Unix time).",
    ),
    (
        "updater_last_run_success",
        "1 if the last updater run succeeded, else 0.",
    ),
    (
        "updater_last_run_exit_code",
        "Exit code of the last updater run.",
    ),
    (
        "updater_last_run_duration_seconds",
        "Duration of the last updater run.",
    ),
    (
        "updater_last_success_timestamp_seconds",
        "When an updater run of this command last succeeded (Unix time).",
    ),
];

/// The counts from the last comparison with the repository, kept across runs that did not
/// compare.
const PLAN_COUNTS: [(&str, &str); 4] = [
    (
        "updater_invalid_modules",
        "Modules the last check or sync found invalid (they are not installed or updated).",
    ),
    (
        "updater_orphaned_modules",
        "Installed modules that are gone from the repository.",
    ),
    (
        "updater_held_modules",
        "Installed modules held at their version (enabled: false).",
    ),
    (
        "updater_deferred_modules",
        "Module versions this machine defers: outside their phased rollout (metadata.rollout).",
    ),
];

/// What this run's comparison found: invalid, orphaned, held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCounts {
    pub invalid: usize,
    pub orphaned: usize,
    pub held: usize,
    pub deferred: usize,
}

impl PlanCounts {
    pub fn of(plan: &Plan) -> PlanCounts {
        let count = |d: Decision| plan.modules.iter().filter(|m| m.decision == d).count();
        PlanCounts {
            invalid: count(Decision::Invalid),
            orphaned: count(Decision::Orphaned),
            held: count(Decision::Held),
            deferred: count(Decision::Deferred),
        }
    }
    fn values(self) -> [usize; 4] {
        [self.invalid, self.orphaned, self.held, self.deferred]
    }
}

static LAST_PLAN: Mutex<Option<PlanCounts>> = Mutex::new(None);

/// Records this run's comparison for the metrics (called where the decisions are logged).
pub fn note_plan(plan: &Plan) {
    *LAST_PLAN.lock().unwrap_or_else(|p| p.into_inner()) = Some(PlanCounts::of(plan));
}

fn noted_plan() -> Option<PlanCounts> {
    *LAST_PLAN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The series of an earlier file that this run keeps: per-command sample lines by metric name
/// and command, and the plan counts.
#[derive(Debug, Default)]
struct Previous {
    /// (metric, command) → the sample's value, as written.
    per_command: BTreeMap<(String, String), String>,
    /// metric → value, as written.
    plan_counts: BTreeMap<String, String>,
}

/// Reads back what an earlier run wrote. Lines it does not recognize are dropped (the file is
/// ours; anything else in it is not carried forward).
fn parse_previous(text: &str) -> Previous {
    let mut prev = Previous::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if value.parse::<f64>().is_err() {
            continue;
        }
        if let Some((name, rest)) = series.split_once("{command=\"") {
            let Some(command) = rest.strip_suffix("\"}") else {
                continue;
            };
            let plain = command
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if plain && PER_COMMAND.iter().any(|(n, _)| *n == name) {
                prev.per_command
                    .insert((name.to_string(), command.to_string()), value.to_string());
            }
        } else if PLAN_COUNTS.iter().any(|(n, _)| *n == series) {
            prev.plan_counts
                .insert(series.to_string(), value.to_string());
        }
    }
    prev
}

/// Renders the metrics text: this run's series merged into `previous` (the existing file's
/// text, empty when there is none).
#[allow(clippy::too_many_arguments)]
pub fn render(
    command: &str,
    exit_code: u8,
    duration: Duration,
    ended: SystemTime,
    layout: &Layout,
    state: &State,
    plan: Option<PlanCounts>,
    previous: &str,
) -> String {
    let prev = parse_previous(previous);
    let mut out = String::new();
    let ended = ended
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let success = exit_code == 0 || exit_code == 100;
    let mut gauge = |name: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for l in lines {
            let _ = writeln!(out, "{name}{l}");
        }
    };
    for (name, help) in PER_COMMAND {
        let mine = match name {
            "updater_last_run_timestamp_seconds" => Some(format!("{ended:.3}")),
            "updater_last_run_success" => Some(u8::from(success).to_string()),
            "updater_last_run_exit_code" => Some(exit_code.to_string()),
            "updater_last_run_duration_seconds" => Some(format!("{:.3}", duration.as_secs_f64())),
            // Kept from the earlier file when this run failed.
            _ => success.then(|| format!("{ended:.3}")),
        };
        let mut values: BTreeMap<String, String> = prev
            .per_command
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, c), v)| (c.clone(), v.clone()))
            .collect();
        if let Some(v) = mine {
            values.insert(command.to_string(), v);
        }
        let lines = values
            .iter()
            .map(|(c, v)| format!("{{command=\"{}\"}} {v}", label(c)))
            .collect();
        gauge(name, help, lines);
    }
    if let Some(n) = state.updates_available {
        gauge(
            "updater_updates_available",
            "Modules the last check or sync found to install or update.",
            vec![format!(" {n}")],
        );
    }
    for (i, (name, help)) in PLAN_COUNTS.iter().enumerate() {
        let value = match plan {
            Some(p) => Some(p.values()[i].to_string()),
            None => prev.plan_counts.get(*name).cloned(),
        };
        if let Some(v) = value {
            gauge(name, help, vec![format!(" {v}")]);
        }
    }
    let mut installed = Vec::new();
    for (name, index) in module::installed(&layout.modules()).unwrap_or_default() {
        if let Ok(m) = index {
            installed.push(format!(
                "{{module=\"{}\",version=\"{}\",enabled=\"{}\"}} 1",
                label(&name),
                label(&m.version.to_string()),
                m.enabled
            ));
        }
    }
    gauge(
        "updater_module_info",
        "Installed modules, with their installed version.",
        installed,
    );
    let results = state
        .modules
        .iter()
        .map(|(name, s)| {
            let ok = u8::from(crate::outcome::ModuleResult::word_is_success(&s.result));
            format!(
                "{{module=\"{}\",result=\"{}\"}} {ok}",
                label(name),
                label(&s.result)
            )
        })
        .collect();
    gauge(
        "updater_module_last_result",
        "Last result of each module (1 when it succeeded), labelled with the result.",
        results,
    );
    out
}

/// Holds an flock on a directory for as long as it lives.
struct DirLock(#[allow(dead_code)] std::fs::File);

fn lock_dir(dir: &Path) -> Result<DirLock> {
    let f = std::fs::File::open(dir)
        .with_context(|| format!("opening {} to lock it", dir.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", dir.display()))?;
    Ok(DirLock(f))
}

/// Merges this run's metrics into the file at `path` and writes it atomically. Errors are
/// reported by the caller, not fatal to the run.
pub fn write(
    path: &Path,
    command: &str,
    exit_code: u8,
    duration: Duration,
    layout: &Layout,
) -> Result<()> {
    let state = State::load(&layout.state_file()).unwrap_or_default();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let _lock = lock_dir(&dir)?;
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            log::warn!(
                "cannot read the earlier metrics in {} ({e}); other commands' series are lost",
                path.display()
            );
            String::new()
        }
    };
    let text = render(
        command,
        exit_code,
        duration,
        SystemTime::now(),
        layout,
        &state,
        noted_plan(),
        &previous,
    );
    fs::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_with_a() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.module("a")).unwrap();
        std::fs::write(
            layout.module("a").join("index.json"),
            r#"{"metadata": {"schema_version": "1.2"}}"#,
        )
        .unwrap();
        (dir, layout)
    }

    #[test]
    fn renders_gauges_with_escaped_labels() {
        let (_dir, layout) = layout_with_a();
        let mut state = State::default();
        state.updates_available = Some(2);
        state.record("a", "rolled_back", Some("1.3.0"), Some("boom \"x\""));
        let text = render(
            "sync",
            3,
            Duration::from_millis(1500),
            UNIX_EPOCH,
            &layout,
            &state,
            Some(PlanCounts {
                invalid: 1,
                orphaned: 2,
                held: 3,
                deferred: 4,
            }),
            "",
        );
        assert!(
            text.contains("updater_last_run_success{command=\"sync\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("updater_last_run_duration_seconds{command=\"sync\"} 1.500\n"));
        assert!(text.contains("updater_updates_available 2\n"));
        assert!(text.contains("updater_invalid_modules 1\n"));
        assert!(text.contains("updater_orphaned_modules 2\n"));
        assert!(text.contains("updater_held_modules 3\n"));
        assert!(text.contains("updater_deferred_modules 4\n"));
        assert!(!text.contains("updater_last_success_timestamp_seconds{"));
        assert!(text
            .contains("updater_module_info{module=\"a\",version=\"1.2.0\",enabled=\"true\"} 1\n"));
        assert!(
            text.contains("updater_module_last_result{module=\"a\",result=\"rolled_back\"} 0\n")
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_run_keeps_the_other_commands_series_and_the_last_success() {
        let (_dir, layout) = layout_with_a();
        let state = State::default();
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let counts = Some(PlanCounts {
            invalid: 0,
            orphaned: 1,
            held: 0,
            deferred: 0,
        });
        let d = Duration::from_secs(1);
        let sync = render("sync", 0, d, t(100), &layout, &state, counts, "");
        let check = render("check", 1, d, t(200), &layout, &state, None, &sync);
        assert!(check.contains("updater_last_run_success{command=\"sync\"} 1\n"));
        assert!(check.contains("updater_last_run_success{command=\"check\"} 0\n"));
        assert!(
            check.contains("updater_last_success_timestamp_seconds{command=\"sync\"} 100.000\n")
        );
        assert!(!check.contains("updater_last_success_timestamp_seconds{command=\"check\"}"));
        // The failed check did not compare: the sync's counts stay.
        assert!(check.contains("updater_orphaned_modules 1\n"), "{check}");
        let sync2 = render("sync", 3, d, t(300), &layout, &state, None, &check);
        assert!(sync2.contains("updater_last_run_exit_code{command=\"sync\"} 3\n"));
        assert!(sync2.contains("updater_last_run_exit_code{command=\"check\"} 1\n"));
        assert!(
            sync2.contains("updater_last_success_timestamp_seconds{command=\"sync\"} 100.000\n"),
            "a failed run keeps the last success:\n{sync2}"
        );
        assert_eq!(
            sync2
                .matches("# TYPE updater_last_run_success gauge")
                .count(),
            1
        );
    }
}
