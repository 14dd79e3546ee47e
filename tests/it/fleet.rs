//! Integration tests for the fleet rules decided on each machine (issue 15, items 1 and 2):
//! phased rollouts (`metadata.rollout`, `--machine-id`, `--phased`) and targeting
//! (`metadata.targets`, `--label`, `<modules-path>/.updater/labels`, the hostname).
//!
//! Every test builds a real git repository and scratch install roots (one per "machine"), runs
//! the real binary, and asserts on the `--json` rows, the install root and the log.

use crate::common::*;
use serde_json::{json, Value};

/// A machine id whose bucket for `module` at `version` is below (`inside`) or at/above
/// (`!inside`) `percent`, found with the same function the binary uses.
fn machine_id(module: &str, version: &str, percent: u8, inside: bool) -> String {
    (0..10_000)
        .map(|i| format!("{i:032x}"))
        .find(|id| (updater::fleet::bucket(id, module, version) < percent) == inside)
        .expect("some id falls on each side")
}

fn phased_repo(percent: u8) -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    repo.add_module("web", "1.0.0");
    repo.set_metadata("web", "rollout", json!({ "percent": percent }));
    repo.add_module("plain", "1.0.0");
    repo.commit("web 1.0.0 phased");
    repo
}

fn sync_as(root: &InstallRoot, repo: &UpdatesRepo, id: &str, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["--machine-id", id];
    args.extend_from_slice(extra);
    let (doc, out) = sync_json(root, repo, &args);
    assert_code(&out, 0);
    (doc, stderr_of(&out))
}

#[test]
fn a_machine_outside_the_phase_defers_with_its_bucket_and_the_same_answer_twice() {
    let repo = phased_repo(50);
    let outside = machine_id("web", "1.0.0", 50, false);
    let bucket = updater::fleet::bucket(&outside, "web", "1.0.0");
    let root = InstallRoot::new();
    let metrics = root.home.path().join("updater.prom");
    let metrics_arg = metrics.to_str().expect("utf-8 temp path");
    for run in 0..2 {
        let (doc, log) = sync_as(&root, &repo, &outside, &["--metrics-file", metrics_arg]);
        let row = module_entry(&doc, "web");
        assert_eq!(row["decision"], "deferred", "run {run}: {doc:#}");
        assert_eq!(row["bucket"], json!(bucket), "run {run}: {doc:#}");
        assert_eq!(row["percent"], json!(50), "run {run}: {doc:#}");
        assert_eq!(row["result"], Value::Null);
        assert!(
            log.contains("Module web 1.0.0 is deferred")
                && log.contains(&format!("bucket is {bucket}")),
            "{log}"
        );
        // Other modules go on; the deferred one is not installed and did not run.
        assert_eq!(
            decision(&doc, "plain"),
            if run == 0 { "new" } else { "up_to_date" }
        );
        assert!(!exists_no_follow(&root.module_dir("web")));
        assert!(!root.runs().iter().any(|l| l.starts_with("web ")));
        // Rows of other decisions carry no bucket.
        assert!(module_entry(&doc, "plain").get("bucket").is_none());
        let text = std::fs::read_to_string(&metrics).expect("metrics file");
        assert!(text.contains("updater_deferred_modules 1\n"), "{text}");
    }
    // check says the same.
    let (doc, _) = check_json(&root, &repo, &["--machine-id", &outside]);
    assert_eq!(decision(&doc, "web"), "deferred");
    assert_eq!(module_entry(&doc, "web")["bucket"], json!(bucket));
}

#[test]
fn a_machine_inside_the_phase_installs_and_raising_the_percent_adds_the_others() {
    let repo = phased_repo(50);
    let inside = machine_id("web", "1.0.0", 50, true);
    let outside = machine_id("web", "1.0.0", 50, false);
    let (a, b) = (InstallRoot::new(), InstallRoot::new());
    let (doc, _) = sync_as(&a, &repo, &inside, &[]);
    assert_eq!(decision(&doc, "web"), "new");
    assert_eq!(module_entry(&doc, "web")["result"], "applied");
    assert!(a.module_dir("web").join("index.json").is_file());
    let (doc, _) = sync_as(&b, &repo, &outside, &[]);
    assert_eq!(decision(&doc, "web"), "deferred");
    // Raising the percent to 100 takes the deferred machine too; the installed one stays.
    repo.set_metadata("web", "rollout", json!({ "percent": 100 }));
    repo.commit("web fully rolled out");
    let (doc, _) = sync_as(&b, &repo, &outside, &[]);
    assert_eq!(decision(&doc, "web"), "new", "{doc:#}");
    assert_eq!(module_entry(&doc, "web")["result"], "applied");
    let (doc, _) = sync_as(&a, &repo, &inside, &[]);
    assert_eq!(decision(&doc, "web"), "up_to_date");
}

#[test]
fn phased_always_installs_a_deferred_version_and_never_defers_an_inside_machine() {
    let repo = phased_repo(50);
    let inside = machine_id("web", "1.0.0", 50, true);
    let outside = machine_id("web", "1.0.0", 50, false);
    let root = InstallRoot::new();
    let (doc, _) = sync_as(&root, &repo, &outside, &["--phased", "always"]);
    assert_eq!(decision(&doc, "web"), "new");
    assert_eq!(module_entry(&doc, "web")["result"], "applied");
    assert_eq!(
        root.runs().iter().filter(|l| l.starts_with("web ")).count(),
        1
    );
    let other = InstallRoot::new();
    let (doc, _) = sync_as(&other, &repo, &inside, &["--phased", "never"]);
    assert_eq!(decision(&doc, "web"), "deferred");
    assert!(!exists_no_follow(&other.module_dir("web")));
}

#[test]
fn the_machine_id_comes_from_the_machine_id_file_when_not_given() {
    let repo = phased_repo(50);
    let outside = machine_id("web", "1.0.0", 50, false);
    let root = InstallRoot::new();
    let file = root.home.path().join("machine-id");
    std::fs::write(&file, format!("{outside}\n")).unwrap();
    let mut cmd = updater(&root, &repo);
    cmd.env("UPDATER_MACHINE_ID_FILE", &file)
        .args(["sync", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "web"), "deferred");
    assert_eq!(
        module_entry(&doc, "web")["bucket"],
        json!(updater::fleet::bucket(&outside, "web", "1.0.0"))
    );
}

fn targeted_repo(targets: Value) -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    repo.add_module("db", "1.0.0");
    repo.set_metadata("db", "targets", targets);
    repo.add_module("plain", "1.0.0");
    repo.commit("db targeted");
    repo
}

#[test]
fn a_module_that_does_not_target_the_machine_is_not_installed() {
    let repo = targeted_repo(json!({ "labels": { "role": "db", "site": "ams" } }));
    // --label role=db alone is not all of the labels.
    let root = InstallRoot::new();
    let (doc, log) = sync_as(&root, &repo, "m-web", &["--label", "role=db"]);
    assert_eq!(decision(&doc, "db"), "not_targeted", "{doc:#}");
    assert_eq!(module_entry(&doc, "db")["result"], Value::Null);
    assert!(module_entry(&doc, "db").get("bucket").is_none());
    assert!(
        log.contains("Module db 1.0.0 does not target this machine"),
        "{log}"
    );
    assert!(!exists_no_follow(&root.module_dir("db")));
    assert_eq!(decision(&doc, "plain"), "new");
    // The labels file supplies the other label; --label beats the file key by key.
    root.write(".updater/labels", "# fleet\nsite = ams\nrole=web\n");
    let (doc, _) = sync_as(&root, &repo, "m-web", &["--label", "role=db"]);
    assert_eq!(decision(&doc, "db"), "new", "{doc:#}");
    assert_eq!(module_entry(&doc, "db")["result"], "applied");
}

#[test]
fn targets_select_by_machine_id_or_hostname() {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string();
    let repo = targeted_repo(json!({ "machine_ids": ["m-db-1"], "hostnames": ["no-such-host"] }));
    let root = InstallRoot::new();
    let (doc, _) = sync_as(&root, &repo, "m-db-1", &[]);
    assert_eq!(decision(&doc, "db"), "new");
    let other = InstallRoot::new();
    let (doc, _) = sync_as(&other, &repo, "m-db-2", &[]);
    assert_eq!(decision(&doc, "db"), "not_targeted");
    repo.set_metadata("db", "targets", json!({ "hostnames": [hostname] }));
    repo.commit("db targets this host");
    let (doc, _) = sync_as(&other, &repo, "m-db-2", &[]);
    assert_eq!(decision(&doc, "db"), "new", "{doc:#}");
}

#[test]
fn an_installed_copy_stays_when_a_new_version_no_longer_targets_the_machine() {
    let repo = targeted_repo(json!({ "machine_ids": ["m1"] }));
    let root = InstallRoot::new();
    let (doc, _) = sync_as(&root, &repo, "m1", &[]);
    assert_eq!(module_entry(&doc, "db")["result"], "applied");
    let before = snapshot(&root.module_dir("db"), &[]);
    repo.set_version("db", "2.0.0");
    repo.set_metadata("db", "targets", json!({ "machine_ids": ["m2"] }));
    repo.commit("db 2.0.0 for m2 only");
    let (doc, _) = sync_as(&root, &repo, "m1", &[]);
    assert_eq!(decision(&doc, "db"), "not_targeted");
    assert_eq!(module_entry(&doc, "db")["installed"], "1.0.0");
    assert_eq!(module_entry(&doc, "db")["available"], "2.0.0");
    assert_eq!(snapshot(&root.module_dir("db"), &[]), before);
    assert_eq!(packages(&root).get("db").map(String::as_str), Some("1.0.0"));
}

#[test]
fn bad_rollout_and_targets_values_make_the_module_invalid_naming_the_file() {
    let repo = UpdatesRepo::new();
    let bad: [(&str, &str, Value); 4] = [
        ("r1", "rollout", json!({ "percent": 101 })),
        ("r2", "rollout", json!("25%")),
        ("t1", "targets", json!(["m1"])),
        ("t2", "targets", json!({ "labels": { "role": ["db"] } })),
    ];
    for (name, key, value) in &bad {
        repo.add_module(name, "1.0.0");
        repo.set_metadata(name, key, value.clone());
    }
    repo.add_module("plain", "1.0.0");
    repo.commit("bad fleet values");
    let root = InstallRoot::new();
    let (doc, out) = sync_json(&root, &repo, &["--machine-id", "m1"]);
    assert_code(&out, 3);
    for (name, key, _) in &bad {
        assert_eq!(decision(&doc, name), "invalid", "{doc:#}");
        let e = error_of(&doc, name);
        assert!(
            e.contains(&format!("modules/{name}/index.json")) && e.contains(key),
            "{name}: {e}"
        );
        assert!(!exists_no_follow(&root.module_dir(name)));
    }
    assert_eq!(module_entry(&doc, "plain")["result"], "applied");
}

#[test]
fn bad_machine_ids_and_labels_are_refused_naming_them() {
    let repo = phased_repo(50);
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &["--label", "no-equals-sign"]);
    assert_ne!(code(&out), 0);
    assert!(all_output(&out).contains("--label"), "{}", dump(&out));
    let out = sync(&root, &repo, &["--machine-id", "a\nb"]);
    assert_ne!(code(&out), 0);
    assert!(all_output(&out).contains("--machine-id"), "{}", dump(&out));
    let out = sync(&root, &repo, &["--phased", "sometimes"]);
    assert_code(&out, 2);
    root.write(".updater/labels", "role=web\nbroken line\n");
    let out = sync(&root, &repo, &["--machine-id", "m1"]);
    assert_ne!(code(&out), 0);
    assert!(
        all_output(&out).contains(".updater/labels line 2"),
        "{}",
        dump(&out)
    );
    assert!(!exists_no_follow(&root.module_dir("plain")));
    // Refused before any fetch: no clone was made.
    assert!(!exists_no_follow(&root.clone_dir()), "{}", dump(&out));
}
