//! Prometheus metrics in the node_exporter textfile-collector format, written atomically after
//! every check, sync and legacy run (`--metrics-file PATH`): when the last run ended, whether it
//! succeeded, how long it took, how many updates are available, and per module its installed
//! version and last result.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::fs;
use crate::layout::Layout;
use crate::module;
use crate::state::State;

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the metrics text.
pub fn render(
    command: &str,
    exit_code: u8,
    duration: Duration,
    ended: SystemTime,
    layout: &Layout,
    state: &State,
) -> String {
    let mut out = String::new();
    let cmd = label(command);
    let ended = ended
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let success = u8::from(exit_code == 0 || exit_code == 100);
    let mut gauge = |name: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for l in lines {
            let _ = writeln!(out, "{name}{l}");
        }
    };
    gauge(
        "updater_last_run_timestamp_seconds",
        "When the last updater run ended (Unix time).",
        vec![format!("{{command=\"{cmd}\"}} {ended:.3}")],
    );
    gauge(
        "updater_last_run_success",
        "1 if the last updater run succeeded, else 0.",
        vec![format!("{{command=\"{cmd}\"}} {success}")],
    );
    gauge(
        "updater_last_run_exit_code",
        "Exit code of the last updater run.",
        vec![format!("{{command=\"{cmd}\"}} {exit_code}")],
    );
    gauge(
        "updater_last_run_duration_seconds",
        "Duration of the last updater run.",
        vec![format!(
            "{{command=\"{cmd}\"}} {:.3}",
            duration.as_secs_f64()
        )],
    );
    if let Some(n) = state.updates_available {
        gauge(
            "updater_updates_available",
            "Modules the last check or sync found to install or update.",
            vec![format!(" {n}")],
        );
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
            let ok = u8::from(crate::report::ModuleResult::word_is_success(&s.result));
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

/// Writes the metrics file atomically. Errors are reported, not fatal to the run.
pub fn write(
    path: &Path,
    command: &str,
    exit_code: u8,
    duration: Duration,
    layout: &Layout,
) -> Result<()> {
    let state = State::load(&layout.state_file()).unwrap_or_default();
    let text = render(
        command,
        exit_code,
        duration,
        SystemTime::now(),
        layout,
        &state,
    );
    fs::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_with_escaped_labels() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.module("a")).unwrap();
        std::fs::write(
            layout.module("a").join("index.json"),
            r#"{"metadata": {"schema_version": "1.2"}}"#,
        )
        .unwrap();
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
        );
        assert!(
            text.contains("updater_last_run_success{command=\"sync\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("updater_last_run_duration_seconds{command=\"sync\"} 1.500\n"));
        assert!(text.contains("updater_updates_available 2\n"));
        assert!(text
            .contains("updater_module_info{module=\"a\",version=\"1.2.0\",enabled=\"true\"} 1\n"));
        assert!(
            text.contains("updater_module_last_result{module=\"a\",result=\"rolled_back\"} 0\n")
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
