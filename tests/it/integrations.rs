//! How `updater` fits the way machines are run: Prometheus metrics, shell completions, the man
//! page, help text, `doctor`, and the admin UI's log wording.

use std::process::Command;

use crate::common::*;

// --- the Prometheus text exposition format, checked strictly ---------------------------------
//
// No Rust crate validates this format: `prometheus-parse` (the one parser on crates.io, last
// released in 2023) skips every line it cannot match and splits labels on ',' and '=' (so an
// escaped quote or comma in a label value is misread), so a broken file would pass. This is a
// strict reader of the format as Prometheus documents it (version 0.0.4), enough for what we
// write: every line is a comment, a HELP, a TYPE or a sample; names and label names are
// well-formed; label values use only the three escapes; values are Go floats; TYPE comes before
// its samples and once; a family's samples are contiguous; no series appears twice.

/// One sample: metric name, labels, value.
type Sample = (String, std::collections::BTreeMap<String, String>, f64);

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_go_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            s.parse::<f64>().map_err(|e| format!("value {s:?}: {e}"))
        }
        _ => Err(format!("value {s:?} is not a number")),
    }
}

/// Parses `{a="x",b="y"}` (the braces included) and returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(std::collections::BTreeMap<String, String>, &str), String> {
    let mut labels = std::collections::BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("label {name}: bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err(format!("label {name}: raw newline")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} appears twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// Validates a whole metrics file; returns its samples or the first problem with its line.
fn validate_prometheus_text(text: &str) -> Result<Vec<Sample>, String> {
    use std::collections::{BTreeSet, HashMap};
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the file does not end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |what: String| format!("line {}: {what}: {line:?}", n + 1);
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if finished.contains(family) {
                    return Err(format!("family {family} is not contiguous"));
                }
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                *current = Some(family.to_string());
            }
            Ok(())
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, doc] => {
                    if !is_metric_name(name) {
                        return Err(err(format!("bad metric name {name:?}")));
                    }
                    if doc.contains('\\')
                        && doc.replace("\\\\", "").replace("\\n", "").contains('\\')
                    {
                        return Err(err("bad escape in HELP".into()));
                    }
                    if !helps.insert(name.to_string()) {
                        return Err(err(format!("second HELP for {name}")));
                    }
                    enter(name, &mut current).map_err(err)?;
                }
                ["TYPE", name, kind] => {
                    if !is_metric_name(name) {
                        return Err(err(format!("bad metric name {name:?}")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(err(format!("unknown type {kind:?}")));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(err(format!("second TYPE for {name}")));
                    }
                    if seen
                        .iter()
                        .any(|s| s == name || s.starts_with(&format!("{name}{{")))
                    {
                        return Err(err(format!("TYPE for {name} after its samples")));
                    }
                    enter(name, &mut current).map_err(err)?;
                }
                ["HELP", ..] | ["TYPE", ..] => return Err(err("malformed HELP/TYPE".into())),
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("a sample needs a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (Default::default(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("expected one space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_go_float(fields.next().unwrap_or("")).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        enter(name, &mut current).map_err(err)?;
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(err("a series appears twice".into()));
        }
        seen.insert(format!("{name}{{"));
        samples.push((name.to_string(), labels, value));
    }
    Ok(samples)
}

/// Reads and validates a metrics file, panicking with the file on any problem.
fn read_metrics(path: &std::path::Path) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap();
    validate_prometheus_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The value of the series `name` with exactly `labels`, if present.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

#[test]
fn the_metrics_validator_rejects_what_prometheus_rejects() {
    let ok = "# HELP a_b Doc with \\\\ and \\n.\n# TYPE a_b gauge\na_b{x=\"q\\\"u\\\\o\\nte\",y=\"\"} 1.5\na_b 2 1700000000000\n";
    let samples = validate_prometheus_text(ok).unwrap();
    assert_eq!(samples[0].1["x"], "q\"u\\o\nte");
    for bad in [
        "a_b 1",                                       // no trailing newline
        "a-b 1\n",                                     // bad name
        "a_b{x=\"1\"} one\n",                          // bad value
        "a_b{x=1} 1\n",                                // unquoted label
        "a_b{x=\"\\t\"} 1\n",                          // bad escape
        "a_b{x=\"1\",x=\"2\"} 1\n",                    // duplicate label
        "a_b 1\na_b 2\n",                              // duplicate series
        "a_b 1\nc 1\na_b{x=\"1\"} 1\n",                // not contiguous
        "a_b 1\n# TYPE a_b gauge\n",                   // TYPE after samples
        "# TYPE a_b gauge\n# TYPE a_b gauge\na_b 1\n", // second TYPE
        "# TYPE a_b meter\na_b 1\n",                   // unknown type
        "a_b  1\n",                                    // two spaces
        "a_b 1 2 3\n",                                 // trailing fields
    ] {
        assert!(validate_prometheus_text(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_file_is_valid_prometheus_text_after_check_and_sync() {
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
    let parsed = read_metrics(&metrics);
    let cmd = |c| [("command", c)];
    assert_eq!(
        sample(&parsed, "updater_last_run_success", &cmd("check")),
        Some(1.0)
    );
    assert_eq!(sample(&parsed, "updater_updates_available", &[]), Some(2.0));

    let out = updater(&root, &repo)
        .arg("sync")
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let parsed = read_metrics(&metrics);
    assert_eq!(
        sample(&parsed, "updater_last_run_success", &cmd("sync")),
        Some(1.0)
    );
    assert_eq!(sample(&parsed, "updater_updates_available", &[]), Some(0.0));
    assert_eq!(
        sample(
            &parsed,
            "updater_module_info",
            &[
                ("enabled", "true"),
                ("module", "alpha"),
                ("version", "1.0.0")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &parsed,
            "updater_module_last_result",
            &[("module", "beta"), ("result", "applied")]
        ),
        Some(1.0)
    );
    assert!(sample(&parsed, "updater_last_run_duration_seconds", &cmd("sync")).is_some());
    assert!(sample(&parsed, "updater_last_run_timestamp_seconds", &cmd("sync")).is_some());
}

#[test]
fn metrics_keep_each_commands_series_and_count_invalid_orphaned_and_held_modules() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.add_module("beta", "1.0.0");
    repo.add_module("gamma", "1.0.0");
    repo.commit("three");
    let root = InstallRoot::new();
    let metrics = root.home.path().join("updater.prom");
    let with_metrics = |args: &[&str]| {
        let mut c = updater(&root, &repo);
        c.args(args).arg("--metrics-file").arg(&metrics);
        c.output().unwrap()
    };
    assert_code(&with_metrics(&["sync"]), 0);
    let synced = read_metrics(&metrics);
    let sync_success = sample(
        &synced,
        "updater_last_success_timestamp_seconds",
        &[("command", "sync")],
    )
    .expect("a successful sync records its success time");

    // gamma leaves the repository, beta is held, and a new module is invalid.
    root.set_installed_metadata("beta", "enabled", serde_json::json!(false));
    repo.remove("modules/gamma");
    repo.add_module("broken", "1.0.0");
    repo.write(
        "modules/broken/index.json",
        r#"{"metadata": {"schema_version": "x.y"}}"#,
    );
    repo.commit("gamma gone, broken added");
    assert_code(&with_metrics(&["check"]), 1);
    let parsed = read_metrics(&metrics);
    let cmd = |c| [("command", c)];
    // The check did not wipe the sync's series.
    assert_eq!(
        sample(&parsed, "updater_last_run_success", &cmd("sync")),
        Some(1.0)
    );
    assert_eq!(
        sample(&parsed, "updater_last_run_success", &cmd("check")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &parsed,
            "updater_last_success_timestamp_seconds",
            &cmd("sync")
        ),
        Some(sync_success)
    );
    assert_eq!(
        sample(
            &parsed,
            "updater_last_success_timestamp_seconds",
            &cmd("check")
        ),
        None,
        "the check never succeeded"
    );
    assert_eq!(sample(&parsed, "updater_invalid_modules", &[]), Some(1.0));
    assert_eq!(sample(&parsed, "updater_orphaned_modules", &[]), Some(1.0));
    assert_eq!(sample(&parsed, "updater_held_modules", &[]), Some(1.0));

    // A failed sync keeps the time of the last successful one.
    let out = {
        let mut c = updater_at(&root);
        c.args(["sync", "--repo-url"])
            .arg(root.home.path().join("no-such-repo"))
            .arg("--metrics-file")
            .arg(&metrics);
        c.output().unwrap()
    };
    assert_code(&out, 1);
    let parsed = read_metrics(&metrics);
    assert_eq!(
        sample(&parsed, "updater_last_run_exit_code", &cmd("sync")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &parsed,
            "updater_last_success_timestamp_seconds",
            &cmd("sync")
        ),
        Some(sync_success)
    );
    assert_eq!(
        sample(&parsed, "updater_last_run_exit_code", &cmd("check")),
        Some(1.0)
    );
    // No temp file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(root.home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
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

#[test]
fn shipped_unit_lets_a_module_upgrade_the_kernel() {
    // ProtectKernelModules=true hides /usr/lib/modules: an apt kernel upgrade run by a module
    // would fail under the unit.
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd/updater.service"),
    )
    .unwrap();
    for line in unit.lines().map(str::trim) {
        assert!(
            line.starts_with('#') || !line.starts_with("ProtectKernelModules="),
            "{line}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let root = InstallRoot::new();
    for args in [
        &["completions", "nosh"][..],
        &["sync", "--exit-code"][..],
        &["--exit-code"][..],
        &["--list-modules", "--all-status"][..],
        &["--enable-component", "web"][..],
    ] {
        let out = updater_at(&root).args(args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", dump(&out));
        assert!(!root.path().join("modules").exists(), "{args:?}");
    }
}
