//! Integration tests for `updater check` (SPEC §2, §4, §6b, §7, §8): one test per behaviour.
//!
//! Every test builds a real git repository and a scratch install root (see `common`), runs the
//! real binary, and asserts on its exit code, its log lines and its `--json` document.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

const OK_LINE: &str = "✓ Update system completed successfully";

// ---------------------------------------------------------------------------------------------
// helpers

/// `updater --modules-path R --repo-url U check [extra...]`
fn check(root: &InstallRoot, repo: &UpdatesRepo, extra: &[&str]) -> Output {
    let mut cmd = updater(root, repo);
    cmd.arg("check").args(extra);
    run(cmd)
}

/// Some log line (in `text`) has a message containing `needle`.
fn has_log(text: &str, needle: &str) -> bool {
    log_messages(text).iter().any(|m| m.contains(needle))
}

fn assert_log(out: &Output, needle: &str) {
    let text = stdout_of(out);
    assert!(
        has_log(&text, needle),
        "no log line on stdout containing {needle:?}\n{}",
        dump(out)
    );
}

/// A log line of level WARN/WARNING (anywhere in stdout or stderr) containing `needle`.
fn has_warning(out: &Output, needle: &str) -> bool {
    all_output(out)
        .lines()
        .any(|l| log_level(l).is_some_and(|lvl| lvl.starts_with("WARN")) && l.contains(needle))
}

fn assert_completed_line(out: &Output) {
    let last = last_nonempty_line(&stdout_of(out));
    assert!(
        last.contains(OK_LINE),
        "last stdout line should be {OK_LINE:?}, is {last:?}\n{}",
        dump(out)
    );
}

fn summary(doc: &Value, key: &str) -> u64 {
    doc["summary"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{key} is not a count in {doc:#}"))
}

fn names(doc: &Value) -> Vec<String> {
    doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// The module list without the timing field, for comparing two runs.
fn modules_without_timing(doc: &Value) -> Value {
    let mut mods = doc["modules"].clone();
    for m in mods.as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("duration_ms");
    }
    mods
}

/// A repository holding `modules/<name>` with a valid index at 1.0.0 plus whatever `f` adds;
/// committed. Also holds a valid `m00`.
fn repo_with_bad_module(f: impl FnOnce(&UpdatesRepo)) -> UpdatesRepo {
    let repo = UpdatesRepo::with_modules(1);
    f(&repo);
    repo.commit("add a bad module");
    repo
}

fn assert_invalid(doc: &Value, out: &Output, name: &str) {
    assert_eq!(decision(doc, name), "invalid", "{}", dump(out));
    assert!(
        summary(doc, "invalid") >= 1,
        "summary.invalid must count {name}\n{}",
        dump(out)
    );
    assert_code(out, 1);
    // the healthy module is still decided
    assert_eq!(decision(doc, "m00"), "new", "{}", dump(out));
}

// ---------------------------------------------------------------------------------------------
// SPEC §4: one decision per row

#[test]
fn not_installed_module_is_reported_new() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();

    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_log(&out, "Module m00 needs update: none → 1.0.0");
    assert_log(&out, "Module m01 needs update: none → 1.0.0");
    assert_log(&out, "Found 2 modules to update: m00, m01");
    assert_completed_line(&out);

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    let m = module_entry(&doc, "m00");
    assert_eq!(m["decision"], "new");
    assert_eq!(m["installed"], Value::Null);
    assert_eq!(m["available"], "1.0.0");
    assert_eq!(summary(&doc, "to_apply"), 2);
}

#[test]
fn newer_repository_version_is_reported_update() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_version("m00", "1.1.0");
    repo.commit("m00 1.1.0");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");

    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_log(&out, "Module m00 needs update: 1.0.0 → 1.1.0");
    assert_log(&out, "Found 1 module");

    let (doc, _) = check_json(&root, &repo, &[]);
    let m = module_entry(&doc, "m00");
    assert_eq!(m["decision"], "update");
    assert_eq!(m["installed"], "1.0.0");
    assert_eq!(m["available"], "1.1.0");
    assert_eq!(summary(&doc, "to_apply"), 1);
}

#[test]
fn equal_version_is_reported_up_to_date() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("m01", "1.0.0");

    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_log(&out, "Module m00 is up to date: 1.0.0");
    assert_log(&out, "Module m01 is up to date: 1.0.0");
    assert_log(&out, "No updates available");
    assert!(!has_log(&stdout_of(&out), "needs update"), "{}", dump(&out));
    assert_completed_line(&out);

    let (doc, _) = check_json(&root, &repo, &[]);
    assert_eq!(decision(&doc, "m00"), "up_to_date");
    assert_eq!(decision(&doc, "m01"), "up_to_date");
    assert_eq!(summary(&doc, "to_apply"), 0);
}

#[test]
fn older_repository_version_is_reported_local_ahead_with_a_warning() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "2.0.0");

    let out = check(&root, &repo, &["--exit-code"]);
    assert_code(&out, 0); // nothing to apply
    assert!(
        has_warning(&out, "m00"),
        "expected a warning naming m00\n{}",
        dump(&out)
    );

    let (doc, _) = check_json(&root, &repo, &[]);
    let m = module_entry(&doc, "m00");
    assert_eq!(m["decision"], "local_ahead");
    assert_eq!(m["installed"], "2.0.0");
    assert_eq!(m["available"], "1.0.0");
    assert_eq!(summary(&doc, "to_apply"), 0);
}

#[test]
fn installed_module_gone_from_repository_is_reported_orphaned() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("gone", "1.0.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    let m = module_entry(&doc, "gone");
    assert_eq!(m["decision"], "orphaned");
    assert_eq!(m["installed"], "1.0.0");
    assert_eq!(m["available"], Value::Null);
    assert_eq!(decision(&doc, "m00"), "up_to_date");
    assert_eq!(summary(&doc, "to_apply"), 0);
}

#[test]
fn installed_module_with_enabled_false_is_reported_held() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_version("m00", "1.1.0");
    repo.commit("m00 1.1.0");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.set_installed_metadata("m00", "enabled", json!(false));

    let out = check(&root, &repo, &["--exit-code"]);
    assert_code(&out, 0); // a held module is not an available update
    assert!(
        !has_log(&stdout_of(&out), "Module m00 needs update"),
        "a held module must not be announced as needing an update\n{}",
        dump(&out)
    );

    let (doc, _) = check_json(&root, &repo, &[]);
    let m = module_entry(&doc, "m00");
    assert_eq!(m["decision"], "held");
    assert_eq!(m["installed"], "1.0.0");
    assert_eq!(m["available"], "1.1.0");
    assert_eq!(summary(&doc, "to_apply"), 0);
}

// ---------------------------------------------------------------------------------------------
// SPEC §4 `invalid` row: each reason

/// One way a module can be invalid (SPEC §4 `invalid` row): how to break it and what its error
/// must say. `name` is the name of the test the case used to be.
struct InvalidCase {
    name: &'static str,
    /// Breaks the repository (committed afterwards, beside a valid `m00`) or the install root.
    break_it: fn(&UpdatesRepo, &InstallRoot),
    /// The modules that must be decided `invalid`.
    invalid: &'static [&'static str],
    /// Every one of these is in the error of each invalid module.
    reason: &'static [&'static str],
    /// At least one of these is in that error (when not empty).
    reason_any: &'static [&'static str],
    /// When not empty, a plain `check` run exits 1 and its output contains every one of these
    /// (and announces no update of the invalid modules).
    log: &'static [&'static str],
}

const INVALID_CASES: &[InvalidCase] = &[
    InvalidCase {
        name: "malformed_module_json_is_invalid_and_names_the_file",
        break_it: |r, _| {
            r.write("modules/bad/index.json", "{ \"metadata\": { not json");
            r.write_exec("modules/bad/update", "#!/bin/sh\nexit 0\n");
        },
        invalid: &["bad"],
        reason: &["modules/bad/index.json"],
        reason_any: &[],
        log: &["modules/bad/index.json"],
    },
    InvalidCase {
        name: "unreadable_version_is_invalid_and_names_the_file_and_the_value",
        break_it: |r, _| {
            r.add_module("bad", "banana");
        },
        invalid: &["bad"],
        reason: &["modules/bad/index.json", "banana"],
        reason_any: &[],
        log: &["modules/bad/index.json", "banana"],
    },
    InvalidCase {
        name: "missing_schema_version_is_invalid_and_names_the_file",
        break_it: |r, _| {
            r.write(
                "modules/bad/index.json",
                &to_json(&json!({"metadata": {"priority": 5}, "configuration": {}})),
            );
            r.write_exec("modules/bad/update", "#!/bin/sh\nexit 0\n");
        },
        invalid: &["bad"],
        reason: &["modules/bad/index.json"],
        reason_any: &[],
        log: &[],
    },
    InvalidCase {
        name: "unreadable_installed_version_is_invalid_and_names_the_installed_file",
        break_it: |r, root| {
            r.add_module("m01", "1.0.0");
            root.install_module("m01", "1.0.0");
            root.set_installed_metadata("m01", "schema_version", json!("one.two"));
        },
        invalid: &["m01"],
        reason: &["modules/m01/index.json", "one.two"],
        reason_any: &[],
        log: &[],
    },
    InvalidCase {
        name: "symlink_to_an_absolute_path_outside_the_module_is_invalid",
        break_it: |r, _| {
            r.add_module("evil", "1.0.0");
            r.symlink("modules/evil/passwd", "/etc/passwd");
        },
        invalid: &["evil"],
        reason: &["passwd"],
        reason_any: &[],
        log: &[],
    },
    InvalidCase {
        name: "symlink_climbing_out_of_the_module_is_invalid",
        break_it: |r, _| {
            r.add_module("evil", "1.0.0");
            r.symlink("modules/evil/sub/escape", "../../m00/update");
        },
        invalid: &["evil"],
        reason: &["escape"],
        reason_any: &[],
        log: &[],
    },
    InvalidCase {
        name: "entry_path_climbing_out_of_the_module_is_invalid",
        break_it: |r, _| {
            r.add_module("escaper", "1.0.0");
            r.set_metadata("escaper", "entry", json!("../m00/update"));
        },
        invalid: &["escaper"],
        reason: &[],
        reason_any: &["../m00/update", "entry"],
        log: &[],
    },
    InvalidCase {
        name: "absolute_entry_path_is_invalid",
        break_it: |r, _| {
            r.add_module("escaper", "1.0.0");
            r.set_metadata("escaper", "entry", json!("/bin/true"));
        },
        invalid: &["escaper"],
        reason: &[],
        reason_any: &["/bin/true", "entry"],
        log: &[],
    },
    InvalidCase {
        name: "health_path_climbing_out_of_the_module_is_invalid",
        break_it: |r, _| {
            r.add_module("escaper", "1.0.0");
            r.set_metadata("escaper", "health", json!("../../index.json"));
        },
        invalid: &["escaper"],
        reason: &[],
        reason_any: &["../../index.json", "health"],
        log: &[],
    },
    InvalidCase {
        name: "depends_on_an_unknown_module_is_invalid_and_names_it",
        break_it: |r, _| {
            r.add_module("needy", "1.0.0");
            r.set_metadata("needy", "depends_on", json!(["m00", "nosuch"]));
        },
        invalid: &["needy"],
        reason: &["nosuch"],
        reason_any: &[],
        log: &[],
    },
    InvalidCase {
        name: "dependency_cycle_makes_its_modules_invalid_naming_them",
        break_it: |r, _| {
            r.add_module("cyc_a", "1.0.0");
            r.add_module("cyc_b", "1.0.0");
            r.set_metadata("cyc_a", "depends_on", json!(["cyc_b"]));
            r.set_metadata("cyc_b", "depends_on", json!(["cyc_a"]));
        },
        invalid: &["cyc_a", "cyc_b"],
        reason: &["cyc_a", "cyc_b"],
        reason_any: &[],
        log: &[],
    },
];

/// Runs one case; panics (with the run's output) when the module is not reported as the case says.
fn run_invalid_case(case: &InvalidCase) {
    let root = InstallRoot::new();
    let repo = repo_with_bad_module(|r| (case.break_it)(r, &root));

    let (doc, out) = check_json(&root, &repo, &[]);
    for &name in case.invalid {
        // invalid, counted, exit 1, and the healthy `m00` still decided
        assert_invalid(&doc, &out, name);
        let err = error_of(&doc, name);
        for needle in case.reason {
            assert!(
                err.contains(needle),
                "the error of {name} should contain {needle:?}: {err:?}"
            );
        }
        assert!(
            case.reason_any.is_empty() || case.reason_any.iter().any(|n| err.contains(n)),
            "the error of {name} should contain one of {:?}: {err:?}",
            case.reason_any
        );
        // a bad version is never read as 0.0.0, on either side
        for side in ["available", "installed"] {
            assert_ne!(module_entry(&doc, name)[side], "0.0.0", "{side} of {name}");
        }
    }

    if !case.log.is_empty() {
        // the log says so too
        let out = check(&root, &repo, &[]);
        assert_code(&out, 1);
        let text = all_output(&out);
        for needle in case.log {
            assert!(text.contains(needle), "no {needle:?} in\n{}", dump(&out));
        }
        for &name in case.invalid {
            let announced = format!("Module {name} needs update");
            assert!(!text.contains(&announced), "{}", dump(&out));
        }
    }
}

/// Every case of [`INVALID_CASES`] runs (a failing case does not hide the others); the failure
/// names each failing case with its message.
#[test]
fn each_way_of_breaking_a_module_makes_it_invalid_with_its_reason() {
    let mut failures = Vec::new();
    for case in INVALID_CASES {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_invalid_case(case)));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".to_string());
            failures.push(format!("case {}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid-module cases failed:\n{}",
        failures.len(),
        INVALID_CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_module_directory_names_are_reported_and_skipped() {
    let repo = repo_with_bad_module(|r| {
        r.add_module("bad name", "1.0.0");
        r.add_module("-x", "1.0.0");
    });
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 1);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    assert_eq!(summary(&doc, "invalid"), 2, "{}", dump(&out));
    assert_eq!(summary(&doc, "to_apply"), 1, "{}", dump(&out));
    for m in doc["modules"].as_array().unwrap() {
        if m["name"] != "m00" {
            assert_eq!(m["decision"], "invalid", "only m00 is valid: {m}");
        }
    }
    let text = all_output(&out);
    assert!(
        text.contains("bad name"),
        "the bad name is reported\n{}",
        dump(&out)
    );
    assert!(
        text.contains("-x"),
        "the bad name is reported\n{}",
        dump(&out)
    );
    // never used to build a path
    assert!(!root.path().join("modules/bad name").exists());
    assert!(!root.path().join("modules/-x").exists());
}

#[test]
fn symlink_inside_the_module_is_allowed() {
    let repo = UpdatesRepo::with_modules(1);
    repo.add_module("linked", "1.0.0");
    repo.write("modules/linked/data/file.txt", "hello\n");
    repo.symlink("modules/linked/run", "update");
    repo.symlink("modules/linked/data/again", "../data/file.txt");
    repo.commit("symlinks inside a module");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "linked"), "new", "{}", dump(&out));
    assert_eq!(summary(&doc, "invalid"), 0);
}

#[test]
fn depends_on_a_known_module_is_valid() {
    let repo = UpdatesRepo::with_modules(1);
    repo.add_module("needy", "1.0.0");
    repo.set_metadata("needy", "depends_on", json!(["m00"]));
    repo.commit("needy depends on m00");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "needy"), "new", "{}", dump(&out));
    assert_eq!(decision(&doc, "m00"), "new");
}

#[test]
fn non_integer_priority_is_a_warning_naming_the_file_not_an_invalid_module() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_metadata("m00", "priority", json!("high"));
    repo.commit("odd priority");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    assert!(
        has_warning(&out, "m00/index.json"),
        "expected a warning naming the file\n{}",
        dump(&out)
    );
}

#[test]
fn other_modules_are_still_decided_when_one_is_invalid() {
    let repo = UpdatesRepo::with_modules(3);
    repo.set_version("m00", "1.1.0");
    repo.add_module("broken", "1.0.0");
    repo.write("modules/broken/index.json", "[1, 2,");
    repo.commit("state with one broken module");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("m01", "1.0.0");
    root.install_module("old", "0.1.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 1);
    assert_eq!(decision(&doc, "broken"), "invalid", "{}", dump(&out));
    assert_eq!(decision(&doc, "m00"), "update");
    assert_eq!(decision(&doc, "m01"), "up_to_date");
    assert_eq!(decision(&doc, "m02"), "new");
    assert_eq!(decision(&doc, "old"), "orphaned");
    assert_eq!(summary(&doc, "to_apply"), 2);
    assert_eq!(summary(&doc, "invalid"), 1);
}

// ---------------------------------------------------------------------------------------------
// SPEC §3: lenient versions

#[test]
fn two_part_version_equals_its_three_part_form() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_version("m00", "1.2");
    repo.commit("m00 1.2");
    let root = InstallRoot::new();
    root.install_module("m00", "1.2.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
}

#[test]
fn leading_v_is_accepted_and_compared_as_semver() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_version("m00", "v1.3.0");
    repo.commit("m00 v1.3.0");
    let root = InstallRoot::new();
    root.install_module("m00", "1.2.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "update", "{}", dump(&out));
}

#[test]
fn prerelease_orders_before_its_release() {
    let repo = UpdatesRepo::with_modules(2);
    repo.set_version("m00", "1.0.0-rc.1"); // installed 1.0.0: repository is older
    repo.set_version("m01", "1.0.0"); // installed 1.0.0-rc.1: repository is newer
    repo.commit("pre-releases");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("m01", "1.0.0-rc.1");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "local_ahead", "{}", dump(&out));
    assert_eq!(decision(&doc, "m01"), "update", "{}", dump(&out));
}

// ---------------------------------------------------------------------------------------------
// SPEC §6b: output

#[test]
fn json_output_is_one_document_with_the_documented_shape() {
    let repo = UpdatesRepo::with_modules(2);
    repo.set_version("m01", "1.1.0");
    let head = repo.commit("m01 1.1.0");
    let root = InstallRoot::new();
    root.install_module("m01", "1.0.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["command"], "check", "{doc:#}");
    assert_eq!(doc["repository"]["url"], repo.url().as_str(), "{doc:#}");
    assert_eq!(doc["repository"]["branch"], "master", "{doc:#}");
    assert_eq!(doc["repository"]["commit"], head.as_str(), "{doc:#}");

    let mods = doc["modules"].as_array().expect("modules is an array");
    assert_eq!(mods.len(), 2, "{doc:#}");
    for m in mods {
        for key in [
            "name",
            "decision",
            "installed",
            "available",
            "result",
            "error",
            "duration_ms",
        ] {
            assert!(m.get(key).is_some(), "module entry lacks {key:?}: {m}");
        }
        assert_eq!(m["result"], Value::Null, "check applies nothing: {m}");
        assert_eq!(m["error"], Value::Null, "valid module has no error: {m}");
        assert!(
            m["duration_ms"].is_null() || m["duration_ms"].is_u64(),
            "duration_ms is null or a count: {m}"
        );
    }
    let m00 = module_entry(&doc, "m00");
    assert_eq!(m00["decision"], "new");
    assert_eq!(m00["installed"], Value::Null);
    assert_eq!(m00["available"], "1.0.0");
    let m01 = module_entry(&doc, "m01");
    assert_eq!(m01["decision"], "update");
    assert_eq!(m01["installed"], "1.0.0");
    assert_eq!(m01["available"], "1.1.0");

    for key in ["to_apply", "applied", "failed", "skipped", "invalid"] {
        assert!(
            doc["summary"][key].is_u64(),
            "summary.{key} missing: {doc:#}"
        );
    }
    assert_eq!(summary(&doc, "to_apply"), 2);
    assert_eq!(summary(&doc, "applied"), 0);
    assert_eq!(summary(&doc, "failed"), 0);
    assert_eq!(summary(&doc, "invalid"), 0);

    // log lines go to stderr under --json
    let err = stderr_of(&out);
    assert!(
        has_log(&err, "Module m00 needs update: none → 1.0.0"),
        "log lines belong on stderr under --json\n{}",
        dump(&out)
    );
    assert!(!stdout_of(&out).contains("needs update"), "{}", dump(&out));
}

#[test]
fn json_modules_are_sorted_by_name() {
    let repo = UpdatesRepo::new();
    for name in ["zeta", "alpha", "mid", "beta"] {
        repo.add_module(name, "1.0.0");
    }
    repo.commit("unsorted names");
    let root = InstallRoot::new();
    root.install_module("orphan", "1.0.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(names(&doc), ["alpha", "beta", "mid", "orphan", "zeta"]);
}

#[test]
fn found_line_lists_module_names_sorted() {
    let repo = UpdatesRepo::new();
    for name in ["zeta", "alpha", "mid"] {
        repo.add_module(name, "1.0.0");
    }
    repo.commit("three modules");
    let root = InstallRoot::new();

    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_log(&out, "Found 3 modules to update: alpha, mid, zeta");
}

#[test]
fn log_lines_have_timestamp_and_level() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    root.install_module("m01", "1.0.0");

    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    let text = stdout_of(&out);
    let wanted = [
        "Module m00 needs update: none → 1.0.0",
        "Module m01 is up to date: 1.0.0",
        "Found 1 module",
    ];
    for needle in wanted {
        let line = text
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line containing {needle:?}\n{}", dump(&out)));
        assert!(
            is_log_line(line),
            "not a `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` line: {line:?}"
        );
    }
    assert_completed_line(&out);
}

// ---------------------------------------------------------------------------------------------
// SPEC §8: exit codes

#[test]
fn exit_0_when_updates_exist_without_exit_code() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = check(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_completed_line(&out);
}

#[test]
fn exit_100_with_exit_code_when_updates_are_available() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = check(&root, &repo, &["--exit-code"]);
    assert_code(&out, 100);
    assert_completed_line(&out);
}

#[test]
fn exit_0_with_exit_code_when_nothing_to_update() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    let out = check(&root, &repo, &["--exit-code"]);
    assert_code(&out, 0);
    assert_log(&out, "No updates available");
    assert_completed_line(&out);
}

#[test]
fn exit_1_with_exit_code_when_a_module_is_invalid_even_if_updates_exist() {
    let repo = repo_with_bad_module(|r| {
        r.add_module("bad", "not-a-version");
    });
    let root = InstallRoot::new();
    let out = check(&root, &repo, &["--exit-code"]);
    assert_code(&out, 1);
}

#[test]
fn exit_1_without_exit_code_when_a_module_is_invalid() {
    let repo = repo_with_bad_module(|r| {
        r.write("modules/bad/index.json", "nope");
    });
    let root = InstallRoot::new();
    let out = check(&root, &repo, &[]);
    assert_code(&out, 1);
    assert!(!stdout_of(&out).contains(OK_LINE), "{}", dump(&out));
}

#[test]
fn unknown_option_is_a_usage_error() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = check(&root, &repo, &["--no-such-option"]);
    assert_code(&out, 2);

    let mut cmd = updater(&root, &repo);
    cmd.args(["--no-such-option", "check"]);
    assert_code(&run(cmd), 2);
}

#[test]
fn unknown_command_is_a_usage_error() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut cmd = updater(&root, &repo);
    cmd.arg("frobnicate");
    assert_code(&run(cmd), 2);
}

#[test]
fn check_help_exits_0() {
    let root = InstallRoot::new();
    let mut cmd = updater_env(&root);
    cmd.args(["check", "--help"]);
    let out = run(cmd);
    assert_code(&out, 0);
    assert!(!stdout_of(&out).trim().is_empty());
}

// ---------------------------------------------------------------------------------------------
// SPEC §2: command line forms

#[test]
fn check_only_flag_is_the_same_as_check() {
    let repo = UpdatesRepo::with_modules(3);
    repo.set_version("m01", "2.0.0");
    repo.commit("m01 2.0.0");
    let root = InstallRoot::new();
    root.install_module("m01", "1.0.0");
    root.install_module("m02", "1.0.0");
    root.install_module("gone", "1.0.0");

    let (by_command, out1) = check_json(&root, &repo, &["--exit-code"]);
    let mut cmd = updater(&root, &repo);
    cmd.args(["--check-only", "--json", "--exit-code"]);
    let out2 = run(cmd);
    let by_flag = json_of(&out2);

    assert_code(&out1, 100);
    assert_code(&out2, 100);
    assert_eq!(by_flag["command"], "check");
    assert_eq!(
        modules_without_timing(&by_flag),
        modules_without_timing(&by_command)
    );
    assert_eq!(by_flag["summary"], by_command["summary"]);
    assert_eq!(by_flag["repository"], by_command["repository"]);
}

#[test]
fn options_may_follow_the_command() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut cmd = updater_env(&root);
    cmd.arg("check")
        .arg("--modules-path")
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .arg("--json")
        .arg("--exit-code")
        .arg("--branch")
        .arg("master");
    let out = run(cmd);
    assert_code(&out, 100);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "m00"), "new");
    assert!(root.clone_dir().join(".git").exists() || root.clone_dir().join("HEAD").exists());
}

#[test]
fn options_may_be_split_around_the_command() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut cmd = updater_env(&root);
    cmd.arg("--modules-path")
        .arg(root.path())
        .arg("--json")
        .arg("check")
        .arg("--repo-url")
        .arg(repo.url());
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "new");
}

#[test]
fn quiet_and_verbose_are_accepted() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&check(&root, &repo, &["-q"]), 0);
    assert_code(&check(&root, &repo, &["-v"]), 0);
    let mut cmd = updater(&root, &repo);
    cmd.args(["-q", "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "new");
}

// ---------------------------------------------------------------------------------------------
// SPEC §1.2, §2: the clone and its transports

#[test]
fn plain_path_url_works_and_clones_into_the_state_dir() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new");
    assert_eq!(doc["repository"]["commit"], repo.head().as_str());
    assert!(
        root.clone_dir().join(".git").is_dir(),
        "the default clone is <modules-path>/.updater/repo"
    );
}

#[test]
fn file_url_works_and_follows_new_commits() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let url = repo.file_url();

    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", &url, "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "m00"), "new");

    repo.add_module("m01", "1.0.0");
    let head = repo.commit("m01");
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", &url, "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "m01"), "new", "{}", dump(&out));
    assert_eq!(doc["repository"]["commit"], head.as_str());
}

#[test]
fn git_daemon_url_works_and_follows_new_commits() {
    let repo = UpdatesRepo::with_modules(1);
    let (_daemon, url) = serve(&repo);
    let root = InstallRoot::new();

    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", &url, "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "m00"), "new");
    assert_eq!(doc["repository"]["url"], url.as_str());

    repo.set_version("m00", "1.0.1");
    let head = repo.commit("m00 1.0.1");
    root.install_module("m00", "1.0.0");
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", &url, "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "m00"), "update", "{}", dump(&out));
    assert_eq!(doc["repository"]["commit"], head.as_str());
}

#[test]
fn local_repo_option_places_the_clone_there() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let clone = elsewhere.path().join("my-clone");

    let out = check(&root, &repo, &["--local-repo", clone.to_str().unwrap()]);
    assert_code(&out, 0);
    assert!(
        clone.join(".git").is_dir(),
        "clone made at --local-repo\n{}",
        dump(&out)
    );
    assert!(
        !root.clone_dir().exists(),
        "no default clone when --local-repo is given"
    );
}

#[test]
fn force_push_upstream_is_followed() {
    let repo = UpdatesRepo::with_modules(1);
    let a = repo.head();
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "up_to_date");

    repo.set_version("m00", "1.5.0");
    let b = repo.commit("m00 1.5.0");
    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["commit"], b.as_str());
    assert_eq!(decision(&doc, "m00"), "update");

    // rewrite history: drop B, commit something different on top of A
    repo.reset_hard(&a);
    repo.set_version("m00", "2.0.0");
    repo.add_module("m01", "0.1.0");
    let c = repo.commit("rewritten: m00 2.0.0 and m01");
    assert_ne!(b, c);

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["commit"], c.as_str(), "{}", dump(&out));
    assert_eq!(module_entry(&doc, "m00")["available"], "2.0.0");
    assert_eq!(decision(&doc, "m01"), "new");
}

#[test]
fn stray_edits_and_untracked_files_in_the_clone_neither_wedge_nor_leak() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    assert_code(&check(&root, &repo, &[]), 0);

    let clone = root.clone_dir();
    assert!(
        clone.join("modules/m00/index.json").is_file(),
        "clone has the module"
    );
    // stray edits to tracked files, and an untracked module
    set_metadata_file(
        &clone.join("modules/m00/index.json"),
        "schema_version",
        json!("9.9.9"),
    );
    fs::create_dir_all(clone.join("modules/ghost")).unwrap();
    fs::write(
        clone.join("modules/ghost/index.json"),
        to_json(&json!({"metadata": {"schema_version": "1.0.0"}})),
    )
    .unwrap();
    fs::write(clone.join("index.json"), "garbage").unwrap();

    repo.add_module("m01", "1.0.0");
    let head = repo.commit("m01");

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["commit"], head.as_str());
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
    assert_eq!(decision(&doc, "m01"), "new");
    assert!(
        !names(&doc).contains(&"ghost".to_string()),
        "an untracked file in the clone leaked into the decision: {doc:#}"
    );
}

fn set_metadata_file(path: &Path, key: &str, value: Value) {
    let mut doc: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    doc["metadata"][key] = value;
    fs::write(path, to_json(&doc)).unwrap();
}

#[test]
fn a_changed_repo_url_is_followed() {
    let first = UpdatesRepo::new();
    first.add_module("from_first", "1.0.0");
    first.commit("first");
    let second = UpdatesRepo::new();
    second.add_module("from_second", "1.0.0");
    let head = second.commit("second");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &first, &[]);
    assert_code(&out, 0);
    assert_eq!(names(&doc), ["from_first"]);

    let (doc, out) = check_json(&root, &second, &[]);
    assert_code(&out, 0);
    assert_eq!(names(&doc), ["from_second"], "{}", dump(&out));
    assert_eq!(doc["repository"]["url"], second.url().as_str());
    assert_eq!(doc["repository"]["commit"], head.as_str());
}

fn assert_recloned(root: &InstallRoot, repo: &UpdatesRepo) {
    let (doc, out) = check_json(root, repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    assert_eq!(doc["repository"]["commit"], repo.head().as_str());
    assert!(
        all_output(&out)
            .lines()
            .any(|l| log_level(l).is_some_and(|lvl| lvl.starts_with("WARN"))),
        "re-cloning a corrupt clone deserves a warning\n{}",
        dump(&out)
    );
    // and the next run is clean again
    let (doc, out) = check_json(root, repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new");
}

#[test]
fn clone_with_a_deleted_head_is_recloned_with_a_warning() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&check(&root, &repo, &[]), 0);
    fs::remove_file(root.clone_dir().join(".git/HEAD")).unwrap();
    assert_recloned(&root, &repo);
}

#[test]
fn clone_with_a_garbage_head_is_recloned_with_a_warning() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&check(&root, &repo, &[]), 0);
    fs::write(root.clone_dir().join(".git/HEAD"), "\0\0garbage\n").unwrap();
    assert_recloned(&root, &repo);
}

#[test]
fn empty_clone_dir_left_by_an_interrupted_clone_is_recloned_with_a_warning() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    fs::create_dir_all(root.clone_dir()).unwrap();
    assert_recloned(&root, &repo);
}

#[test]
fn clone_with_an_empty_git_dir_is_recloned_with_a_warning() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    fs::create_dir_all(root.clone_dir().join(".git")).unwrap();
    assert_recloned(&root, &repo);
}

#[test]
fn missing_branch_fails_with_exit_1_naming_the_branch() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = check(&root, &repo, &["--branch", "nope"]);
    assert_code(&out, 1);
    assert!(all_output(&out).contains("nope"), "{}", dump(&out));
    assert!(!stdout_of(&out).contains(OK_LINE));
}

#[test]
fn unreachable_git_url_fails_with_exit_1_naming_the_url() {
    let root = InstallRoot::new();
    let url = "git://127.0.0.1:1/x";
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", url, "check"]);
    let started = Instant::now();
    let out = run(cmd);
    assert_code(&out, 1);
    assert!(all_output(&out).contains(url), "{}", dump(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fails promptly"
    );
}

#[test]
fn unreachable_ssh_and_https_urls_fail_promptly_without_prompting() {
    for url in ["ssh://git@127.0.0.1:1/x.git", "https://127.0.0.1:1/x.git"] {
        let root = InstallRoot::new();
        let mut cmd = updater_at(&root);
        cmd.args(["--repo-url", url, "check"]);
        let started = Instant::now();
        let out = run(cmd);
        assert_code(&out, 1);
        assert!(all_output(&out).contains(url), "{}", dump(&out));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url}: must fail, not wait for input"
        );
    }
}

#[test]
fn malformed_installed_global_index_fails_naming_it() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.write("index.json", "{\"metadata\": {\"schema_version\": ");
    let before = root.snapshot();

    let out = check(&root, &repo, &[]);
    assert_code(&out, 1);
    let shown = root.path().join("index.json");
    assert!(
        all_output(&out).contains(shown.to_str().unwrap()),
        "the error names the file\n{}",
        dump(&out)
    );
    assert_eq!(
        root.snapshot(),
        before,
        "check repaired or rewrote the index"
    );
}

#[test]
fn nonexistent_path_url_fails_with_exit_1_naming_it() {
    let root = InstallRoot::new();
    let missing = root.home.path().join("no-such-repository");
    let url = missing.to_str().unwrap();
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", url, "check"]);
    let out = run(cmd);
    assert_code(&out, 1);
    assert!(all_output(&out).contains(url), "{}", dump(&out));
}

#[test]
fn directory_that_is_not_a_git_repository_fails_with_exit_1_naming_it() {
    let root = InstallRoot::new();
    let plain = tempfile::tempdir().unwrap();
    fs::create_dir_all(plain.path().join("modules/m00")).unwrap();
    fs::write(
        plain.path().join("modules/m00/index.json"),
        to_json(&json!({"metadata": {"schema_version": "1.0.0"}})),
    )
    .unwrap();
    let url = plain.path().to_str().unwrap();
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", url, "check"]);
    let out = run(cmd);
    assert_code(&out, 1);
    assert!(all_output(&out).contains(url), "{}", dump(&out));
}

#[test]
fn default_branch_comes_from_the_remote() {
    let repo = UpdatesRepo::with_default_branch("trunk");
    // a `master` branch exists too, without the module: it must not be picked
    repo.branch("master");
    repo.add_module("m00", "1.0.0");
    let head = repo.commit("m00 on trunk");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["branch"], "trunk", "{}", dump(&out));
    assert_eq!(doc["repository"]["commit"], head.as_str());
    assert_eq!(decision(&doc, "m00"), "new");
}

#[test]
fn branch_option_selects_the_branch() {
    let repo = UpdatesRepo::with_modules(1);
    repo.branch("beta");
    repo.checkout("beta");
    repo.set_version("m00", "2.0.0-beta.1");
    let beta = repo.commit("beta");
    repo.checkout("master");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");

    let (doc, out) = check_json(&root, &repo, &["--branch", "beta"]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["branch"], "beta");
    assert_eq!(doc["repository"]["commit"], beta.as_str());
    assert_eq!(decision(&doc, "m00"), "update");

    // and back to the default branch
    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["branch"], "master");
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
}

#[test]
fn branch_defaults_to_the_installed_index_branch() {
    let repo = UpdatesRepo::with_modules(1);
    repo.branch("stable");
    repo.checkout("stable");
    repo.add_module("only_on_stable", "1.0.0");
    repo.commit("stable");
    repo.checkout("master");
    let root = InstallRoot::new();
    let mut index = global_index(json!({}));
    index["metadata"]["branch"] = json!("stable");
    root.write_index(&index);

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["repository"]["branch"], "stable", "{}", dump(&out));
    assert_eq!(decision(&doc, "only_on_stable"), "new");
}

#[test]
fn repo_url_defaults_to_the_installed_index_repository_url() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut index = global_index(json!({}));
    index["metadata"]["repository_url"] = json!(repo.url());
    root.write_index(&index);

    let mut cmd = updater_at(&root);
    cmd.args(["check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(doc["repository"]["url"], repo.url().as_str());
    assert_eq!(decision(&doc, "m00"), "new");
}

// ---------------------------------------------------------------------------------------------
// SPEC §1: check changes nothing outside .updater/

#[test]
fn check_leaves_the_install_root_byte_for_byte_unchanged() {
    let repo = UpdatesRepo::with_modules(3);
    repo.set_version("m00", "1.1.0");
    repo.set_version("m02", "3.0.0");
    repo.add_module("fresh", "1.0.0");
    repo.commit("a mix of decisions");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0"); // update
    root.install_module("m01", "1.0.0"); // up to date
    root.install_module("m02", "2.0.0"); // held
    root.set_installed_metadata("m02", "enabled", json!(false));
    root.install_module("gone", "0.5.0"); // orphaned
    root.write("modules/m01/data/state.txt", "local state\n");
    // a global index with unknown keys and its own formatting
    root.write(
        "index.json",
        "{\"zzz\":1,\"metadata\":{\"schema_version\":\"1.0.0\",\"custom\":[1,2]},\
         \"packages\":{\"m02\":\"2.0.0\",\"m00\":\"1.0.0\",\"m01\":\"1.0.0\",\"gone\":\"0.5.0\"}}",
    );
    let before = root.snapshot();

    assert_code(&check(&root, &repo, &[]), 0);
    assert_code(&check(&root, &repo, &["--json"]), 0);
    assert_code(&check(&root, &repo, &["--exit-code"]), 100);
    let mut cmd = updater(&root, &repo);
    cmd.arg("--check-only");
    assert_code(&run(cmd), 0);

    let after = root.snapshot();
    assert_eq!(
        before, after,
        "check changed the install root outside .updater/"
    );
    assert!(
        root.runs().is_empty(),
        "check ran entry points: {:?}",
        root.runs()
    );
}

#[test]
fn check_on_a_missing_install_root_is_a_fresh_install_and_creates_only_state() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let target = root.path().join("not/yet/there");

    let mut cmd = updater_env(&root);
    cmd.arg("--modules-path")
        .arg(&target)
        .args(["--repo-url", &repo.url(), "check", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "new");
    let left = snapshot(&target, &[".updater"]);
    assert!(
        left.is_empty(),
        "check created files in the install root: {left:?}"
    );
}

/// Files under `<root>/.updater` whose name mentions "journal", with their contents.
fn journal_files(root: &InstallRoot) -> Vec<(std::path::PathBuf, (u32, Vec<u8>))> {
    snapshot(&root.state_dir(), &["repo"])
        .into_iter()
        .filter(|(p, (mode, _))| {
            p.to_string_lossy().contains("journal") && mode & 0o170000 == 0o100000
        })
        .collect()
}

#[test]
fn check_reports_a_pending_repair_and_repairs_nothing() {
    let repo = UpdatesRepo::with_modules(1);
    repo.set_version("m00", "1.1.0");
    // the new entry point announces its pid, then hangs until killed
    repo.write_exec(
        "modules/m00/update",
        "#!/bin/sh\necho $$ > \"$UPDATER_MODULES_PATH/.entry.pid\"\nexec sleep 30\n",
    );
    repo.commit("m00 1.1.0 with a hanging entry");
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");

    // a sync killed (SIGKILL) while m00's entry point runs
    let mut sync = std::process::Command::new(updater_bin());
    isolate_env(&mut sync, root.home.path());
    sync.env_remove("RUST_LOG")
        .arg("--modules-path")
        .arg(root.path())
        .args(["--repo-url", &repo.url(), "sync"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut sync = sync.spawn().expect("spawn sync");
    let pid_file = root.path().join(".entry.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(&pid_file).map_or(true, |s| s.trim().is_empty()) {
        if Instant::now() > deadline || sync.try_wait().unwrap().is_some() {
            let _ = sync.kill();
            panic!("the sync never reached m00's entry point");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sync.kill().unwrap();
    sync.wait().unwrap();
    // the crash takes the entry point with it
    drop(KillOnDrop(fs::read_to_string(&pid_file).unwrap()));

    let journal = journal_files(&root);
    assert!(
        !journal.is_empty(),
        "the killed sync left no journal under .updater/"
    );
    let before = root.snapshot();

    let (doc, out) = check_json(&root, &repo, &[]);
    let text = all_output(&out).to_lowercase();
    assert!(
        text.contains("m00")
            && (text.contains("repair")
                || text.contains("interrupted")
                || text.contains("pending")),
        "check should report the pending repair of m00\n{}",
        dump(&out)
    );
    // The interrupted update never committed: m00 is still at 1.0.0 (its old copy comes back on
    // the next sync), so the update to 1.1.0 is still pending (LESSONS 2, SPEC §7).
    let m = module_entry(&doc, "m00");
    assert_eq!(m["decision"], "update", "{}", dump(&out));
    assert_eq!(m["installed"], "1.0.0", "{}", dump(&out));
    assert_eq!(m["available"], "1.1.0");
    assert_eq!(root.snapshot(), before, "check repaired the install root");
    assert_eq!(journal_files(&root), journal, "check consumed the journal");
}

// ---------------------------------------------------------------------------------------------
// SPEC §7: one run at a time

#[test]
fn lock_held_by_another_process_exits_1_at_once_naming_its_pid() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let holder = hold_lock(&root, 30);

    let started = Instant::now();
    let out = check(&root, &repo, &[]);
    let elapsed = started.elapsed();
    assert_code(&out, 1);
    let text = all_output(&out);
    assert!(text.to_lowercase().contains("lock"), "{}", dump(&out));
    assert!(
        text.contains(&holder.pid().to_string()),
        "message should name the holder's pid {}\n{}",
        holder.pid(),
        dump(&out)
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "lock contention must fail at once"
    );
    drop(holder);

    // once the holder is gone, check runs
    assert_code(&check(&root, &repo, &[]), 0);
}

#[test]
fn lock_file_left_by_a_dead_process_does_not_block() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    fs::create_dir_all(root.state_dir()).unwrap();
    fs::write(root.lock_path(), format!("{}\n", dead_pid())).unwrap();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new");
}

#[test]
fn wait_option_waits_for_the_lock_holder() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let holder = hold_lock(&root, 3);

    let started = Instant::now();
    let (doc, out) = check_json(&root, &repo, &["--wait"]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "--wait returned before the holder let go"
    );
    drop(holder);
}
