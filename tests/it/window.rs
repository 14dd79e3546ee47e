//! Integration tests for the inhibit switch and the update window (issue 15 item 3): real git
//! repositories, a scratch install root, the real binary. The clock is `UPDATER_NOW` (the
//! settings stage's test hook), so each test decides from data, not from when it runs.
//! 2026-11-28 is a Saturday.

use std::process::Output;

use crate::common::*;
use serde_json::json;

const SATURDAY_NOON: &str = "2026-11-28T12:00:00Z";
const SATURDAY_3AM: &str = "2026-11-28T03:00:00Z";

fn sync_at(root: &InstallRoot, repo: &UpdatesRepo, now: &str, extra: &[&str]) -> Output {
    let mut cmd = updater(root, repo);
    cmd.env("UPDATER_NOW", now).arg("sync").args(extra);
    run(cmd)
}

#[test]
fn an_inhibit_file_makes_sync_exit_0_installing_nothing_with_the_reason_escaped() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.write(
        ".updater/inhibit",
        "disk swap\u{1b}[31m until Monday\n-- ops\n",
    );
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(!root.module_dir("m00").exists(), "{}", dump(&out));
    assert!(!root.path().join("index.json").exists(), "{}", dump(&out));
    let text = all_output(&out);
    assert!(
        text.contains("Updates inhibited: disk swap"),
        "{}",
        dump(&out)
    );
    assert!(text.contains("until Monday"), "{}", dump(&out));
    assert!(text.contains("(remove "), "{}", dump(&out));
    assert!(
        text.contains(".updater/inhibit to allow them)"),
        "{}",
        dump(&out)
    );
    assert!(
        !text.contains('\u{1b}'),
        "control characters escaped: {text:?}"
    );
    // --json: one document naming the switch.
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["command"], "sync", "{doc:#}");
    assert!(doc["inhibited"]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("disk swap") && !r.contains('\u{1b}')));
    assert!(!root.module_dir("m00").exists());
    // Removing the switch lets the next sync apply.
    std::fs::remove_file(root.state_dir().join("inhibit")).unwrap();
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(
        root.module_dir("m00").join("index.json").exists(),
        "{}",
        dump(&out)
    );
}

#[test]
fn check_still_checks_while_inhibited_and_says_so() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.write(".updater/inhibit", "");
    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    assert_eq!(doc["inhibited"]["reason"], "(no reason given)", "{doc:#}");
    assert!(
        all_output(&out).contains("Updates inhibited: (no reason given)"),
        "{}",
        dump(&out)
    );
}

#[test]
fn outside_the_window_sync_applies_nothing_but_still_prints_its_document() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = sync_at(
        &root,
        &repo,
        SATURDAY_NOON,
        &["--json", "--window", "Sat 02:00-06:00"],
    );
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(doc["command"], "sync", "{doc:#}");
    assert_eq!(decision(&doc, "m00"), "new", "{doc:#}");
    assert_eq!(
        doc["window"],
        json!({"open": false, "spec": "Sat 02:00-06:00", "next_open": "2026-12-05T02:00:00Z"})
    );
    assert!(!root.module_dir("m00").exists(), "{}", dump(&out));
    assert!(
        all_output(&out).contains("it opens next at 2026-12-05T02:00:00Z"),
        "{}",
        dump(&out)
    );
}

#[test]
fn inside_the_window_sync_applies() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    // Friday 22:00 to Saturday 05:00 crosses midnight: Saturday 03:00 is inside.
    let out = sync_at(
        &root,
        &repo,
        SATURDAY_3AM,
        &["--window", "Mon-Fri 22:00-05:00"],
    );
    assert_code(&out, 0);
    assert!(
        root.module_dir("m00").join("index.json").exists(),
        "{}",
        dump(&out)
    );
    assert_eq!(packages(&root), packages_of(&[("m00", "1.0.0")]));
}

#[test]
fn the_installed_index_window_holds_a_sync_and_the_command_line_overrides_it() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    root.install_module("m00", "0.9.0");
    let mut index = root.read_index();
    index["metadata"]["window"] = json!("Sun 01:00-02:00");
    root.write_index(&index);
    let out = sync_at(&root, &repo, SATURDAY_NOON, &[]);
    assert_code(&out, 0);
    assert!(!root.module_dir("m01").exists(), "{}", dump(&out));
    assert_eq!(packages(&root)["m00"], "0.9.0");
    assert!(
        all_output(&out).contains("opens next at 2026-11-29T01:00:00Z"),
        "{}",
        dump(&out)
    );
    let out = sync_at(
        &root,
        &repo,
        SATURDAY_NOON,
        &["--window", "Sat 11:00-13:00"],
    );
    assert_code(&out, 0);
    assert!(root.module_dir("m01").exists(), "{}", dump(&out));
    assert_eq!(packages(&root)["m00"], "1.0.0");
}

#[test]
fn a_malformed_window_is_a_usage_error_naming_it_and_a_malformed_index_window_names_the_file() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = sync_at(
        &root,
        &repo,
        SATURDAY_NOON,
        &["--window", "Caturday\u{1b} 02:00-06:00"],
    );
    assert_code(&out, 2);
    let err = all_output(&out);
    assert!(
        err.contains("--window") && err.contains("Caturday"),
        "{}",
        dump(&out)
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(!root.module_dir("m00").exists());

    root.write_index(&json!({"metadata": {"window": "Sat 02:00"}, "packages": {}}));
    let out = sync_at(&root, &repo, SATURDAY_NOON, &[]);
    assert_code(&out, 1);
    let err = all_output(&out);
    assert!(
        err.contains("index.json: metadata.window"),
        "{}",
        dump(&out)
    );
    assert!(!root.module_dir("m00").exists());
}

#[test]
fn a_malformed_updater_now_is_refused_naming_it() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let out = sync_at(
        &root,
        &repo,
        "next tuesday",
        &["--window", "Sat 02:00-06:00"],
    );
    assert_code(&out, 1);
    assert!(all_output(&out).contains("UPDATER_NOW"), "{}", dump(&out));
    assert!(!root.module_dir("m00").exists());
}

#[test]
fn an_inhibited_sync_still_repairs_what_an_interrupted_run_left() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "0.9.0");
    // A sync killed mid-swap leaves a repair pending.
    let mut cmd = updater(&root, &repo);
    cmd.env("UPDATER_CRASH_AT", "swapped").arg("sync");
    let out = run(cmd);
    assert_ne!(code(&out), 0, "the crash point was reached\n{}", dump(&out));
    let mut cmd = updater(&root, &repo);
    cmd.arg("check");
    let before = run(cmd);
    assert!(
        all_output(&before).contains("Pending repair"),
        "{}",
        dump(&before)
    );
    root.write(".updater/inhibit", "hold");
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains("Updates inhibited: hold"),
        "{}",
        dump(&out)
    );
    let mut cmd = updater(&root, &repo);
    cmd.arg("check");
    let after = run(cmd);
    assert!(
        !all_output(&after).contains("Pending repair"),
        "the inhibited sync repaired first\n{}",
        dump(&after)
    );
    // The repair restored a whole module; the update itself was not applied.
    assert_eq!(packages(&root)["m00"], "0.9.0", "{}", dump(&out));
    assert_eq!(
        root.read_module_index("m00")["metadata"]["schema_version"],
        "0.9.0"
    );
}

#[test]
fn legacy_runs_nothing_while_inhibited_or_outside_the_window_and_runs_inside_it() {
    let root = InstallRoot::new();
    root.install_module("alpha", "1.0.0");
    root.write(
        "manifest.json",
        &to_json(&json!({"updates": [
            {"name": "alpha"},
            {"name": "all_services", "enabled": true, "children": ["alpha"]}
        ]})),
    );
    let legacy = |now: &str, extra: &[&str]| {
        let mut cmd = updater_at(&root);
        cmd.env("UPDATER_NOW", now).arg("legacy").args(extra);
        run(cmd)
    };
    root.write(".updater/inhibit", "freeze");
    let out = legacy(SATURDAY_3AM, &[]);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains("Updates inhibited: freeze"),
        "{}",
        dump(&out)
    );
    assert!(root.runs().is_empty(), "{:?}\n{}", root.runs(), dump(&out));
    std::fs::remove_file(root.state_dir().join("inhibit")).unwrap();

    let out = legacy(SATURDAY_NOON, &["--window", "Sat 02:00-06:00"]);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains("running nothing"),
        "{}",
        dump(&out)
    );
    assert!(root.runs().is_empty(), "{:?}\n{}", root.runs(), dump(&out));

    let out = legacy(SATURDAY_3AM, &["--window", "Sat 02:00-06:00"]);
    assert_code(&out, 0);
    assert_eq!(root.runs().len(), 1, "{}", dump(&out));
}
