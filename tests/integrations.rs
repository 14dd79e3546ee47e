//! How `updater` fits the way machines are run: Prometheus metrics, shell completions, the man
//! page, help text, `doctor`, and the admin UI's log wording.

mod common;

use std::process::Command;

use common::*;

fn prometheus_parser_available() -> bool {
    Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Parses a metrics file with the reference Prometheus text parser (prometheus_client) and
/// returns `name{labels} value` lines as it understood them.
fn parse_with_prometheus(path: &std::path::Path) -> String {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {float(s.value)}")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "prometheus parser rejected {}:\n{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn metrics_file_is_valid_prometheus_text_after_check_and_sync() {
    assert!(
        prometheus_parser_available(),
        "python3 -m pip install prometheus-client (CI installs it)"
    );
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.add_module("beta", "2.0.0");
    repo.commit("two modules");
    let root = InstallRoot::new();
    let metrics = root.home.path().join("updater.prom");

    let out = updater(&root, &repo)
        .arg("check")
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let parsed = parse_with_prometheus(&metrics);
    assert!(
        parsed.contains("updater_last_run_success{command=\"check\"} 1.0"),
        "{parsed}"
    );
    assert!(
        parsed.contains("updater_updates_available{} 2.0"),
        "{parsed}"
    );

    let out = updater(&root, &repo)
        .arg("sync")
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let parsed = parse_with_prometheus(&metrics);
    assert!(
        parsed.contains("updater_last_run_success{command=\"sync\"} 1.0"),
        "{parsed}"
    );
    assert!(
        parsed.contains("updater_updates_available{} 0.0"),
        "{parsed}"
    );
    assert!(
        parsed.contains(
            "updater_module_info{enabled=\"true\",module=\"alpha\",version=\"1.0.0\"} 1.0"
        ),
        "{parsed}"
    );
    assert!(
        parsed.contains("updater_module_last_result{module=\"beta\",result=\"applied\"} 1.0"),
        "{parsed}"
    );
    assert!(parsed.contains("updater_last_run_duration_seconds{command=\"sync\"}"));
    assert!(parsed.contains("updater_last_run_timestamp_seconds{command=\"sync\"}"));
}

#[test]
fn metrics_record_a_failed_run() {
    let root = InstallRoot::new();
    let metrics = root.home.path().join("m.prom");
    let out = updater_at(&root)
        .args(["check", "--repo-url"])
        .arg(root.home.path().join("no-such-repo"))
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", dump(&out));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("updater_last_run_success{command=\"check\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("updater_last_run_exit_code{command=\"check\"} 1\n"),
        "{text}"
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    let root = InstallRoot::new();
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef updater"),
        ("fish", "complete -c updater"),
        ("elvish", "updater"),
        ("powershell", "updater"),
    ] {
        let out = updater_env(&root)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{shell}: {}", dump(&out));
        let text = stdout_of(&out);
        assert!(text.contains(needle), "{shell} completion lacks {needle:?}");
        assert!(
            text.contains("modules-path"),
            "{shell} completion lacks options"
        );
    }
    let out = updater_env(&root)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    // An unknown shell is a usage error (exit 2) that lists the known ones.
    assert_eq!(code(&out), 2, "{}", dump(&out));
    assert!(
        all_output(&out).contains("possible values: bash"),
        "{}",
        dump(&out)
    );
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let root = InstallRoot::new();
    let out = updater_env(&root)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let path = root.home.path().join("updater.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn man_page_is_roff_with_every_command() {
    let root = InstallRoot::new();
    let out = updater_env(&root).arg("man").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let text = stdout_of(&out);
    assert!(
        text.starts_with(".ie") || text.contains(".TH updater"),
        "{}",
        &text[..200.min(text.len())]
    );
    for cmd in ["sync", "check", "legacy", "status", "rollback", "doctor"] {
        assert!(text.contains(cmd), "man page lacks {cmd}");
    }
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let root = InstallRoot::new();
    let out = updater_env(&root).arg("--help").output().unwrap();
    assert_eq!(code(&out), 0);
    let text = stdout_of(&out);
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("updater check --json --exit-code"), "{text}");
    assert!(text.contains("Exit codes"), "{text}");
}

#[test]
fn doctor_is_clean_after_a_sync_and_finds_a_stale_index() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.commit("one");
    let root = InstallRoot::new();
    updater(&root, &repo).arg("sync").assert().code(0);
    let out = updater_at(&root).arg("doctor").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(stdout_of(&out).contains("No problems found"));

    // An index that disagrees with the module directories, and leftover staging.
    root.record("alpha", "0.9.0");
    root.record("ghost", "1.0.0");
    std::fs::create_dir_all(root.state_dir().join("staging/alpha")).unwrap();
    let before = root.snapshot();
    let out = updater_at(&root)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", dump(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_string())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("records alpha 0.9.0")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("lists ghost")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("leftover staging")),
        "{problems:?}"
    );
    // Read-only: nothing changed.
    assert_eq!(before, root.snapshot());
    assert!(root.state_dir().join("staging/alpha").exists());

    // A sync repairs all of it.
    updater(&root, &repo).arg("sync").assert().code(0);
    updater_at(&root).arg("doctor").assert().code(0);
}

#[test]
fn doctor_reports_a_corrupt_journal_and_clone() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.commit("one");
    let root = InstallRoot::new();
    updater(&root, &repo).arg("sync").assert().code(0);
    std::fs::write(root.state_dir().join("journal.json"), "{\"modules\": ").unwrap();
    std::fs::remove_file(root.clone_dir().join(".git/HEAD")).unwrap();
    let out = updater_at(&root).arg("doctor").output().unwrap();
    assert_eq!(code(&out), 1, "{}", dump(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains("journal.json") && text.contains("corrupt"),
        "{text}"
    );
    assert!(text.contains("not a usable git repository"), "{text}");
}

#[test]
fn admin_ui_wording_is_kept_line_by_line() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.add_module("beta", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    updater(&root, &repo).arg("sync").assert().code(0);
    repo.set_version("beta", "1.1.0");
    repo.commit("beta 1.1.0");

    let strip = |line: &str| -> String {
        // "[YYYY-MM-DD HH:MM:SS] [LEVEL] message"
        let re_ok = line.len() > 22 && &line[0..1] == "[" && &line[20..22] == "] ";
        assert!(re_ok, "not a log line: {line:?}");
        line[22..].to_string()
    };
    let out = updater(&root, &repo).arg("check").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let lines: Vec<String> = stdout_of(&out).lines().map(strip).collect();
    let wanted = [
        "[INFO] Module alpha is up to date: 1.0.0",
        "[INFO] Module beta needs update: 1.0.0 → 1.1.0",
        "[INFO] Found 1 modules to update: beta",
        "[INFO] ✓ Update system completed successfully",
    ];
    let mut at = 0;
    for w in wanted {
        let pos = lines[at..]
            .iter()
            .position(|l| l == w)
            .unwrap_or_else(|| panic!("missing or out of order: {w:?} in {lines:#?}"));
        at += pos + 1;
    }

    let out = updater(&root, &repo).arg("sync").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let lines: Vec<String> = stdout_of(&out).lines().map(strip).collect();
    assert_eq!(
        lines.last().unwrap(),
        "[INFO] ✓ Update system completed successfully"
    );
    let out = updater(&root, &repo).arg("sync").output().unwrap();
    let lines: Vec<String> = stdout_of(&out).lines().map(strip).collect();
    assert!(
        lines.contains(&"[INFO] No updates available".to_string()),
        "{lines:#?}"
    );
}

#[test]
fn json_mode_keeps_stdout_a_single_document() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.commit("one");
    let root = InstallRoot::new();
    let out = updater(&root, &repo)
        .args(["sync", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["command"], "sync");
    assert_eq!(doc["modules"][0]["result"], "applied");
    assert!(doc["modules"][0]["duration_ms"].as_u64().is_some());
    assert!(stderr_of(&out).contains("Module alpha needs update: none → 1.0.0"));
}
