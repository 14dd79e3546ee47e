//! Integration tests for legacy manifest mode and `updater checksum` (SPEC §6, §6b, §8): one test
//! per rule. Each test builds installed modules directly in a scratch `<root>/modules/<name>/`,
//! writes a manifest, runs the real binary and asserts on its exit code, log lines, `--json`
//! document, what the entry points recorded, and the rewritten manifest.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use crate::common::*;
use serde_json::{json, Value};

const OK_LINE: &str = "✓ Update system completed successfully";

// ---------------------------------------------------------------------------------------------
// helpers

fn write(path: &Path, contents: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// An installed module whose entry point is an executable `update` running `body` under `sh -e`.
/// It first records `<name> <args...>` in `<root>/.runs.log`.
fn sh_module(root: &InstallRoot, name: &str, body: &str) {
    let dir = root.module_dir(name);
    write(
        &dir.join("index.json"),
        &to_json(&json!({ "metadata": { "schema_version": "1.0.0" } })),
    );
    let update = dir.join("update");
    write(
        &update,
        &format!(
            "#!/bin/sh\nset -e\necho \"$UPDATER_MODULE $*\" >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n{body}\n"
        ),
    );
    fs::set_permissions(&update, fs::Permissions::from_mode(0o755)).unwrap();
}

/// An installed module whose entry point is `index.py` with `source` (defining `main(args)`).
fn py_module(root: &InstallRoot, name: &str, source: &str) {
    let dir = root.module_dir(name);
    write(
        &dir.join("index.json"),
        &to_json(&json!({ "metadata": { "schema_version": "1.0.0" } })),
    );
    write(&dir.join("index.py"), source);
}

fn manifest_path(root: &InstallRoot) -> PathBuf {
    root.path().join("manifest.json")
}

fn write_manifest_at(path: &Path, doc: &Value) {
    write(path, &to_json(doc));
}

fn write_manifest(root: &InstallRoot, doc: &Value) {
    write_manifest_at(&manifest_path(root), doc);
}

/// A manifest whose `all_services` has `children`; `entries` come first in `updates`.
fn manifest(entries: Vec<Value>, children: &[&str]) -> Value {
    let mut updates = entries;
    updates.push(json!({ "name": "all_services", "enabled": true, "children": children }));
    json!({ "updates": updates })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// `updater --modules-path ROOT legacy [extra...]`.
fn legacy(root: &InstallRoot, extra: &[&str]) -> Output {
    let mut cmd = updater_at(root);
    cmd.arg("legacy").args(extra);
    cmd.output().expect("run updater")
}

/// `updater --modules-path ROOT legacy --json [extra...]`: the document and the run.
fn legacy_json(root: &InstallRoot, extra: &[&str]) -> (Value, Output) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = legacy(root, &args);
    (json_of(&out), out)
}

fn result_of(doc: &Value, name: &str) -> String {
    module_entry(doc, name)["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no result in {doc:#}"))
        .to_string()
}

/// Names of the modules whose entry point ran (from `.runs.log`), sorted.
fn ran(root: &InstallRoot) -> Vec<String> {
    let mut names: Vec<String> = root
        .runs()
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

fn has_log(out: &Output, needle: &str) -> bool {
    log_messages(&all_output(out))
        .iter()
        .any(|m| m.contains(needle))
}

fn assert_log(out: &Output, needle: &str) {
    assert!(
        has_log(out, needle),
        "no log line containing {needle:?}\n{}",
        dump(out)
    );
}

fn last_line(out: &Output) -> String {
    stdout_of(out)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `updater checksum NAME` on stdout.
fn checksum_of(root: &InstallRoot, name: &str) -> String {
    let out = updater_at(root)
        .arg("checksum")
        .arg(name)
        .output()
        .expect("run updater");
    assert_code(&out, 0);
    stdout_of(&out).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// running children

#[test]
fn children_run_in_parallel_up_to_jobs() {
    let root = InstallRoot::new();
    let body = "date +%s%N > \"$UPDATER_MODULES_PATH/$UPDATER_MODULE.start\"\nsleep 1\n\
                date +%s%N > \"$UPDATER_MODULES_PATH/$UPDATER_MODULE.end\"";
    sh_module(&root, "alpha", body);
    sh_module(&root, "beta", body);
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "alpha" }), json!({ "name": "beta" })],
            &["alpha", "beta"],
        ),
    );
    let stamp = |name: &str, what: &str| -> u128 {
        let p = root.path().join(format!("{name}.{what}"));
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap()
    };
    let overlap = || {
        stamp("alpha", "start") < stamp("beta", "end")
            && stamp("beta", "start") < stamp("alpha", "end")
    };

    let out = legacy(&root, &["--jobs", "2"]);
    assert_code(&out, 0);
    assert!(
        overlap(),
        "with --jobs 2 the two entries overlap\n{}",
        dump(&out)
    );

    let out = legacy(&root, &["--jobs", "1"]);
    assert_code(&out, 0);
    assert!(
        !overlap(),
        "with --jobs 1 they run one after the other\n{}",
        dump(&out)
    );
}

#[test]
fn args_are_passed_to_an_executable_entry() {
    let root = InstallRoot::new();
    sh_module(
        &root,
        "adblock",
        "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$UPDATER_MODULES_PATH/args.txt\"",
    );
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "adblock", "args": ["--verify", "two words", ""] })],
            &["adblock"],
        ),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 0);
    let args = fs::read_to_string(root.path().join("args.txt")).unwrap();
    assert_eq!(args, "--verify\ntwo words\n\n", "{}", dump(&out));
}

#[test]
fn args_are_passed_to_python_main() {
    let root = InstallRoot::new();
    py_module(
        &root,
        "pymod",
        "import json, os\n\
         def main(args):\n    \
             with open(os.path.join(os.environ['UPDATER_MODULES_PATH'], 'py-args.json'), 'w') as f:\n        \
                 json.dump(args, f)\n    \
             return {'success': True}\n",
    );
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "pymod", "args": ["--force", "x y"] })],
            &["pymod"],
        ),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 0);
    let got = read_json(&root.path().join("py-args.json"));
    assert_eq!(got, json!(["--force", "x y"]), "{}", dump(&out));
}

#[test]
fn non_list_args_fail_that_child_only() {
    let root = InstallRoot::new();
    sh_module(&root, "good", "");
    sh_module(&root, "bad", "");
    write_manifest(
        &root,
        &manifest(
            vec![
                json!({ "name": "good" }),
                json!({ "name": "bad", "args": "--verify" }),
            ],
            &["good", "bad"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert_eq!(result_of(&doc, "good"), "applied");
    assert_eq!(result_of(&doc, "bad"), "failed");
    assert!(error_of(&doc, "bad").contains("`args` must be a list of strings"));
    assert_eq!(ran(&root), ["good"]);
}

#[test]
fn entry_gets_the_updater_environment() {
    let root = InstallRoot::new();
    sh_module(
        &root,
        "envmod",
        "env | grep '^UPDATER_' | sort > \"$UPDATER_MODULES_PATH/env.txt\"",
    );
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "envmod", "version": "2.1.0" })],
            &["envmod"],
        ),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 0);
    let env = fs::read_to_string(root.path().join("env.txt")).unwrap();
    let dir = root.module_dir("envmod");
    let expected = format!(
        "UPDATER_BACKUP_DIR=\nUPDATER_FROM_VERSION=2.1.0\nUPDATER_MODULE=envmod\n\
         UPDATER_MODULES_PATH={}\nUPDATER_MODULE_DIR={}\nUPDATER_TO_VERSION=2.1.0\n",
        root.path().display(),
        dir.display()
    );
    assert_eq!(env, expected, "{}", dump(&out));
}

#[test]
fn installed_timeout_secs_applies() {
    let root = InstallRoot::new();
    sh_module(&root, "slow", "sleep 30");
    root.set_installed_metadata("slow", "timeout_secs", json!(1));
    write_manifest(&root, &manifest(vec![json!({ "name": "slow" })], &["slow"]));
    let started = std::time::Instant::now();
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert!(started.elapsed().as_secs() < 20, "{}", dump(&out));
    assert!(
        error_of(&doc, "slow").contains("timed out after 1s"),
        "{doc:#}"
    );
}

#[test]
fn declared_metadata_entry_is_used() {
    let root = InstallRoot::new();
    let dir = root.module_dir("declared");
    write(
        &dir.join("index.json"),
        &to_json(&json!({ "metadata": { "schema_version": "1.0.0", "entry": "bin/run" } })),
    );
    let run = dir.join("bin/run");
    write(
        &run,
        &format!("#!/bin/sh\necho \"$UPDATER_MODULE\" >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n"),
    );
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    write_manifest(
        &root,
        &manifest(vec![json!({ "name": "declared" })], &["declared"]),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 0);
    assert_eq!(ran(&root), ["declared"]);
}

#[test]
fn child_without_entry_point_fails() {
    let root = InstallRoot::new();
    write(&root.module_dir("bare").join("README"), "no entry\n");
    write_manifest(&root, &manifest(vec![json!({ "name": "bare" })], &["bare"]));
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert_eq!(result_of(&doc, "bare"), "failed");
    assert!(error_of(&doc, "bare").contains("no entry point"), "{doc:#}");
}

// ---------------------------------------------------------------------------------------------
// checksums

#[test]
fn matching_checksum_runs() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    let sum = checksum_of(&root, "adblock");
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "adblock", "checksum": sum })],
            &["adblock"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 0);
    assert_eq!(result_of(&doc, "adblock"), "applied");
    assert_eq!(ran(&root), ["adblock"]);
}

#[test]
fn mismatching_checksum_is_refused_and_not_run() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    sh_module(&root, "gogs", "");
    let wrong = format!("sha256:{}", "0".repeat(64));
    write_manifest(
        &root,
        &manifest(
            vec![
                json!({ "name": "adblock", "checksum": wrong, "lastApplied": "2024-06-10T15:23:00Z" }),
                json!({ "name": "gogs" }),
            ],
            &["adblock", "gogs"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert_eq!(result_of(&doc, "adblock"), "refused");
    let err = error_of(&doc, "adblock");
    assert!(
        err.contains("checksum mismatch") && err.contains(&wrong),
        "{err}"
    );
    assert!(err.contains(&checksum_of(&root, "adblock")), "{err}");
    assert_eq!(ran(&root), ["gogs"], "the refused entry must not run");
    assert_eq!(doc["summary"]["failed"], 1);
    assert_eq!(doc["summary"]["refused"], 1);
    let m = read_json(&manifest_path(&root));
    assert_eq!(m["updates"][0]["lastApplied"], "2024-06-10T15:23:00Z");
    assert!(has_log(&out, "✗ Module adblock failed: checksum mismatch"));
}

#[test]
fn checksum_command_prints_the_value_a_manifest_needs() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    write(
        &root.module_dir("adblock").join("lists/a.txt"),
        "0.0.0.0 ads\n",
    );
    let out = updater_at(&root)
        .arg("checksum")
        .arg("adblock")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let stdout = stdout_of(&out);
    let sum = stdout.trim_end();
    assert_eq!(stdout, format!("{sum}\n"), "one line");
    let hex = sum.strip_prefix("sha256:").expect("sha256: prefix");
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    // Ignored files do not change it; content does.
    write(
        &root.module_dir("adblock").join("__pycache__/x.pyc"),
        "bytes",
    );
    write(&root.module_dir("adblock").join("checksum"), sum);
    assert_eq!(checksum_of(&root, "adblock"), sum);

    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "adblock", "checksum": sum })],
            &["adblock"],
        ),
    );
    assert_code(&legacy(&root, &[]), 0);

    write(
        &root.module_dir("adblock").join("lists/a.txt"),
        "0.0.0.0 ads2\n",
    );
    assert_ne!(checksum_of(&root, "adblock"), sum);
    assert_code(&legacy(&root, &[]), 3);
}

#[test]
fn checksum_command_errors() {
    let root = InstallRoot::new();
    let out = updater_at(&root)
        .args(["checksum", "ghost"])
        .output()
        .unwrap();
    assert_code(&out, 1);
    assert!(all_output(&out).contains("not installed"), "{}", dump(&out));
    let out = updater_at(&root)
        .args(["checksum", "../etc"])
        .output()
        .unwrap();
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains("not a module name"),
        "{}",
        dump(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// which children

#[test]
fn disabled_child_is_skipped_not_run_and_exit_0() {
    let root = InstallRoot::new();
    sh_module(&root, "on", "");
    sh_module(&root, "off", "");
    write_manifest(
        &root,
        &manifest(
            vec![
                json!({ "name": "on" }),
                json!({ "name": "off", "enabled": false }),
            ],
            &["on", "off"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 0);
    assert_eq!(result_of(&doc, "off"), "skipped");
    assert_eq!(result_of(&doc, "on"), "applied");
    assert_eq!(
        doc["summary"],
        json!({"applied": 1, "failed": 0, "skipped": 1, "refused": 0})
    );
    assert_eq!(ran(&root), ["on"]);
    let m = read_json(&manifest_path(&root));
    assert!(m["updates"][1].get("lastApplied").is_none());
}

#[test]
fn child_missing_from_updates_fails_with_exit_3() {
    let root = InstallRoot::new();
    sh_module(&root, "listed", "");
    sh_module(&root, "unlisted", "");
    write_manifest(
        &root,
        &manifest(vec![json!({ "name": "listed" })], &["listed", "unlisted"]),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert_eq!(result_of(&doc, "unlisted"), "failed");
    assert!(
        error_of(&doc, "unlisted").contains("no entry named"),
        "{doc:#}"
    );
    assert_eq!(ran(&root), ["listed"]);
    assert!(!stdout_of(&out).contains(OK_LINE));
}

#[test]
fn child_not_installed_fails_with_exit_3() {
    let root = InstallRoot::new();
    sh_module(&root, "present", "");
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "present" }), json!({ "name": "gogs" })],
            &["present", "gogs"],
        ),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 3);
    assert_log(&out, "✗ Module gogs failed: not installed");
    assert_log(&out, "✓ Module present applied");
    assert_eq!(ran(&root), ["present"]);
}

#[test]
fn invalid_child_name_fails_and_builds_no_path() {
    let root = InstallRoot::new();
    sh_module(&root, "ok", "");
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "ok" }), json!({ "name": "../ok" })],
            &["ok", "../ok"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert!(error_of(&doc, "../ok").contains("not a module name"));
    assert_eq!(ran(&root), ["ok"]);
}

// ---------------------------------------------------------------------------------------------
// the manifest rewrite

#[test]
fn last_applied_is_rewritten_for_successes_and_everything_else_kept() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    sh_module(&root, "gogs", "");
    sh_module(&root, "broken", "exit 4");
    let original = json!({
        "zeta": { "keep": [1, 2.5, "x"] },
        "entrypoint": "all_services",
        "updates": [
            { "name": "adblock", "version": "1.0.0", "lastSafeVersion": "1.0.0",
              "lastApplied": "2024-06-10T15:23:00Z", "enabled": true, "description": "ads",
              "args": [] },
            { "name": "gogs", "description": "no lastApplied yet", "custom": { "b": 1, "a": 2 } },
            { "name": "broken", "lastApplied": "2020-01-01T00:00:00Z", "zz": null },
            { "name": "unrelated", "lastApplied": "2019-01-01T00:00:00Z" },
            { "name": "all_services", "enabled": true, "children": ["adblock", "gogs", "broken"] }
        ],
        "alpha": true
    });
    write_manifest(&root, &original);
    let before = updater::clock::iso8601(SystemTime::now());
    let out = legacy(&root, &[]);
    let after = updater::clock::iso8601(SystemTime::now());
    assert_code(&out, 3);

    let rewritten = read_json(&manifest_path(&root));
    for i in [0, 1] {
        let stamp = rewritten["updates"][i]["lastApplied"]
            .as_str()
            .unwrap_or_else(|| panic!("no lastApplied in updates[{i}]: {rewritten:#}"));
        assert!(is_utc_timestamp(stamp), "{stamp}");
        assert!(
            before.as_str() <= stamp && stamp <= after.as_str(),
            "{before} <= {stamp} <= {after}"
        );
    }
    // Restore what the run may change, then the documents must be identical, key order included.
    let mut expected = original.clone();
    expected["updates"][0]["lastApplied"] = rewritten["updates"][0]["lastApplied"].clone();
    expected["updates"][1].as_object_mut().unwrap().insert(
        "lastApplied".into(),
        rewritten["updates"][1]["lastApplied"].clone(),
    );
    assert_eq!(
        serde_json::to_string(&rewritten).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
    // No temp file left beside it.
    let leftovers: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn failed_child_keeps_its_last_applied() {
    let root = InstallRoot::new();
    sh_module(&root, "broken", "echo boom >&2\nexit 4");
    write_manifest(
        &root,
        &manifest(
            vec![json!({ "name": "broken", "lastApplied": "2020-01-01T00:00:00Z" })],
            &["broken"],
        ),
    );
    let text_before = fs::read_to_string(manifest_path(&root)).unwrap();
    let out = legacy(&root, &[]);
    assert_code(&out, 3);
    assert_log(&out, "Running legacy module broken");
    assert_log(&out, "✗ Module broken failed: exit status 4");
    assert_eq!(
        fs::read_to_string(manifest_path(&root)).unwrap(),
        text_before,
        "nothing applied: the manifest is untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// manifest errors

#[test]
fn missing_manifest_exits_1_naming_the_file() {
    let root = InstallRoot::new();
    let out = legacy(&root, &[]);
    assert_code(&out, 1);
    let path = manifest_path(&root).display().to_string();
    assert!(
        all_output(&out).contains(&path) && all_output(&out).contains("does not exist"),
        "{}",
        dump(&out)
    );
    assert!(
        !root.state_dir().exists(),
        "nothing created for a missing manifest"
    );
}

#[test]
fn malformed_manifests_exit_1_naming_the_file() {
    let cases: [(&str, &str); 6] = [
        ("{ not json", "is not valid JSON"),
        ("{\"entrypoint\": \"all_services\"}", "no `updates` array"),
        ("{\"updates\": {}}", "`updates` must be an array"),
        (
            "{\"updates\": [{\"version\": \"1.0.0\"}]}",
            "has no string `name`",
        ),
        (
            "{\"updates\": [{\"name\": \"all_services\"}]}",
            "has no `children` list",
        ),
        (
            "{\"updates\": [{\"name\": \"all_services\", \"children\": [1]}]}",
            "is not a string",
        ),
    ];
    for (text, needle) in cases {
        let root = InstallRoot::new();
        sh_module(&root, "adblock", "");
        write(&manifest_path(&root), text);
        let out = legacy(&root, &[]);
        assert_code(&out, 1);
        let all = all_output(&out);
        let path = manifest_path(&root).display().to_string();
        assert!(
            all.contains(&path),
            "{text}: file not named\n{}",
            dump(&out)
        );
        assert!(
            all.contains(needle),
            "{text}: {needle:?} missing\n{}",
            dump(&out)
        );
        assert!(ran(&root).is_empty());
    }
}

#[test]
fn missing_entrypoint_exits_1() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    write_manifest(
        &root,
        &json!({ "entrypoint": "services", "updates": [
            { "name": "adblock" },
            { "name": "all_services", "children": ["adblock"] } ] }),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains("the entrypoint \"services\" is not in `updates`"),
        "{}",
        dump(&out)
    );
    assert!(ran(&root).is_empty());
}

#[test]
fn named_entrypoint_is_used() {
    let root = InstallRoot::new();
    sh_module(&root, "a", "");
    sh_module(&root, "b", "");
    write_manifest(
        &root,
        &json!({ "entrypoint": "core", "updates": [
            { "name": "a" }, { "name": "b" },
            { "name": "core", "children": ["a"] },
            { "name": "all_services", "children": ["a", "b"] } ] }),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 0);
    assert_eq!(doc["entrypoint"], "core");
    assert_eq!(ran(&root), ["a"]);
}

// ---------------------------------------------------------------------------------------------
// command line and output

#[test]
fn manifest_option_is_honoured() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    let elsewhere = tempfile::tempdir().unwrap();
    let path = elsewhere.path().join("custom.json");
    write_manifest_at(
        &path,
        &manifest(vec![json!({ "name": "adblock" })], &["adblock"]),
    );
    assert!(!manifest_path(&root).exists());
    let (doc, out) = legacy_json(&root, &["--manifest", path.to_str().unwrap()]);
    assert_code(&out, 0);
    assert_eq!(doc["manifest"], path.display().to_string());
    assert_eq!(ran(&root), ["adblock"]);
    let m = read_json(&path);
    assert!(is_utc_timestamp(
        m["updates"][0]["lastApplied"].as_str().unwrap()
    ));
    assert!(!manifest_path(&root).exists());
}

#[test]
fn legacy_flag_equals_legacy_command() {
    let setup = || {
        let root = InstallRoot::new();
        sh_module(&root, "good", "");
        sh_module(&root, "bad", "exit 2");
        write_manifest(
            &root,
            &manifest(
                vec![
                    json!({ "name": "good", "args": ["-x"] }),
                    json!({ "name": "bad" }),
                    json!({ "name": "off", "enabled": false }),
                ],
                &["good", "bad", "off"],
            ),
        );
        root
    };
    let strip = |doc: &Value| {
        let mut doc = doc.clone();
        for m in doc["modules"].as_array_mut().unwrap() {
            let m = m.as_object_mut().unwrap();
            m.remove("duration_ms");
            m.remove("lastApplied");
        }
        doc.as_object_mut().unwrap().remove("manifest");
        doc
    };

    let a = setup();
    let (doc_a, out_a) = legacy_json(&a, &[]);
    let b = setup();
    let out_b = updater_at(&b)
        .args(["--legacy", "--json"])
        .output()
        .unwrap();
    let doc_b = json_of(&out_b);
    assert_code(&out_a, 3);
    assert_code(&out_b, 3);
    assert_eq!(strip(&doc_a), strip(&doc_b));
    let sorted = |root: &InstallRoot| {
        let mut runs = root.runs();
        runs.sort();
        runs
    };
    assert_eq!(sorted(&a), sorted(&b));
    assert_eq!(sorted(&a), ["bad ", "good -x"]);
}

#[test]
fn log_lines_and_success_line() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "echo hello from adblock");
    write_manifest(
        &root,
        &manifest(vec![json!({ "name": "adblock" })], &["adblock"]),
    );
    let out = legacy(&root, &[]);
    assert_code(&out, 0);
    for line in stdout_of(&out).lines().filter(|l| !l.is_empty()) {
        assert!(
            is_log_line(line),
            "not a log line: {line:?}\n{}",
            dump(&out)
        );
    }
    assert_log(&out, "Running legacy module adblock");
    assert_log(&out, "hello from adblock");
    assert_log(&out, "✓ Module adblock applied");
    assert!(last_line(&out).ends_with(OK_LINE), "{}", dump(&out));
    let log = fs::read_to_string(root.state_dir().join("logs/adblock.log")).unwrap();
    assert!(log.contains("hello from adblock"), "{log}");
}

#[test]
fn json_document_shape() {
    let root = InstallRoot::new();
    sh_module(&root, "good", "");
    sh_module(&root, "bad", "exit 5");
    write_manifest(
        &root,
        &manifest(
            vec![
                json!({ "name": "good" }),
                json!({ "name": "bad" }),
                json!({ "name": "off", "enabled": false }),
            ],
            &["good", "bad", "off"],
        ),
    );
    let (doc, out) = legacy_json(&root, &[]);
    assert_code(&out, 3);
    assert_eq!(doc["command"], "legacy");
    assert_eq!(doc["manifest"], manifest_path(&root).display().to_string());
    assert_eq!(doc["entrypoint"], "all_services");
    let names: Vec<&str> = doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["good", "bad", "off"], "children order");
    let good = module_entry(&doc, "good");
    assert_eq!(good["result"], "applied");
    assert!(good["error"].is_null());
    assert!(good["duration_ms"].is_u64());
    let bad = module_entry(&doc, "bad");
    assert_eq!(bad["result"], "failed");
    assert_eq!(bad["error"], "exit status 5");
    assert!(bad["duration_ms"].is_u64());
    let off = module_entry(&doc, "off");
    assert_eq!(off["result"], "skipped");
    assert!(off["duration_ms"].is_null());
    assert_eq!(doc["summary"]["applied"], 1);
    assert_eq!(doc["summary"]["failed"], 1);
    assert_eq!(doc["summary"]["skipped"], 1);
    // Logs went to stderr.
    assert!(log_messages(&stderr_of(&out))
        .iter()
        .any(|m| m.contains("✗ Module bad failed: exit status 5")));
}

#[test]
fn held_lock_exits_1_and_runs_nothing() {
    let root = InstallRoot::new();
    sh_module(&root, "adblock", "");
    write_manifest(
        &root,
        &manifest(vec![json!({ "name": "adblock" })], &["adblock"]),
    );
    let holder = hold_lock(&root, 30);
    let out = legacy(&root, &[]);
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains(&format!("pid {}", holder.pid())),
        "{}",
        dump(&out)
    );
    assert!(ran(&root).is_empty());
}

#[test]
fn a_world_writable_install_root_is_refused_as_root() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("note: skipping (it checks what updater refuses as root; `id -u` is not 0)");
        return;
    }
    let root = InstallRoot::new();
    root.write(
        "manifest.json",
        r#"{"updates": [{"name": "all_services", "children": []}]}"#,
    );
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = updater_at(&root).arg("legacy").output().unwrap();
    assert_eq!(code(&out), 1, "{}", dump(&out));
    let text = all_output(&out);
    assert!(
        text.contains("refusing to run as root") && text.contains("writable"),
        "{text}"
    );
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = updater_at(&root).arg("legacy").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
}
