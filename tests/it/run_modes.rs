//! Run modes (`--run updated|enabled`), groups, machine-local values that survive updates, a
//! repository-side `enabled: false`, the prune guard and check's content updates. Real git
//! repositories, real processes; order is read from the files the modules write.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use serde_json::{json, Value};

/// Sets a top-level key of a repository module's index.json.
fn set_top(repo: &UpdatesRepo, name: &str, key: &str, value: Value) {
    let p = repo.module_dir(name).join("index.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    doc.as_object_mut().unwrap().insert(key.into(), value);
    repo.write(&format!("modules/{name}/index.json"), &to_json(&doc));
}

#[test]
fn run_enabled_runs_unchanged_modules_after_the_installs_of_their_priority() {
    let repo = UpdatesRepo::new();
    repo.add_module("steady", "1.0.0")
        .add_module("fresh", "1.0.0");
    repo.add_module("early", "1.0.0");
    repo.set_metadata("early", "priority", json!(1));
    repo.commit("three modules");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    std::fs::remove_file(root.path().join(RUNS_LOG)).unwrap();

    // Nothing changed: `updated` (the default) runs nothing.
    assert_code(&sync(&root, &repo, &[]), 0);
    assert!(root.runs().is_empty(), "{:?}", root.runs());

    repo.set_version("fresh", "1.1.0");
    repo.commit("fresh 1.1.0");
    let out = sync(&root, &repo, &["--run", "enabled", "--json"]);
    assert_code(&out, 0);
    // Priority 1 first; within priority 100 the update before the unchanged module.
    assert_eq!(
        root.runs(),
        [
            "early 1.0.0->1.0.0",
            "fresh 1.0.0->1.1.0",
            "steady 1.0.0->1.0.0"
        ]
    );
    let doc = json_of(&out);
    assert_eq!(module_entry(&doc, "fresh")["result"], "applied");
    assert_eq!(module_entry(&doc, "steady")["result"], Value::Null);
    assert!(module_entry(&doc, "steady")["duration_ms"].is_number());
    assert!(module_entry(&doc, "steady")
        .as_object()
        .unwrap()
        .contains_key("details"));
}

#[test]
fn run_enabled_failure_restores_backup_paths_leaves_files_and_exits_3() {
    let sys = tempfile::tempdir().unwrap();
    let target = sys.path().join("conf");
    std::fs::write(&target, "original\n").unwrap();
    let repo = UpdatesRepo::new();
    repo.add_module("svc", "1.0.0");
    set_top(
        &repo,
        "svc",
        "configuration",
        json!({ "backup_paths": [target.to_str().unwrap()] }),
    );
    repo.commit("svc");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    // The installed copy's entry now damages the system path and fails.
    let update = root.module_dir("svc").join("update");
    std::fs::write(
        &update,
        format!("#!/bin/sh\necho broken > '{}'\nexit 1\n", target.display()),
    )
    .unwrap();
    let before = snapshot(&root.module_dir("svc"), &[]);
    let out = sync(&root, &repo, &["--run", "enabled", "--json"]);
    assert_code(&out, 3);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original\n");
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), before);
    let doc = json_of(&out);
    let row = module_entry(&doc, "svc");
    assert_eq!(row["result"], "failed");
    assert!(
        row["error"].as_str().unwrap().contains("exit status 1"),
        "{row}"
    );
    assert_eq!(doc["summary"]["failed"], 1);
}

#[test]
fn installed_index_metadata_run_enabled_is_the_default_mode() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let mut index = root.read_index();
    index["metadata"]["run"] = json!("enabled");
    root.write_index(&index);
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(root.runs(), ["m00 ->1.0.0", "m00 1.0.0->1.0.0"]);
    // The command line wins over the index.
    assert_code(&sync(&root, &repo, &["--run", "updated"]), 0);
    assert_eq!(root.runs().len(), 2);
}

fn git_group(repo: &UpdatesRepo) {
    repo.add_module("gogs", "1.0.0")
        .add_module("forgejo", "1.0.0");
    for (name, order) in [("gogs", 1), ("forgejo", 2)] {
        repo.set_metadata(name, "group", json!("git"));
        repo.set_metadata(name, "group_order", json!(order));
        repo.set_metadata(name, "service_name", json!(format!("{name}.service")));
    }
    repo.commit("two git servers");
}

#[test]
fn group_runs_only_its_first_active_member_and_the_other_is_standby() {
    let repo = UpdatesRepo::new();
    git_group(&repo);
    let root = InstallRoot::new();
    let bin = fake_systemctl(&["forgejo.service"]);
    let mut cmd = updater(&root, &repo);
    cmd.args(["sync", "--json"])
        .env("PATH", path_with(bin.path()));
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(root.runs(), ["forgejo ->1.0.0"]);
    // Both are installed; the standby one did not run.
    assert!(root.module_dir("gogs").join("index.json").is_file());
    let doc = json_of(&out);
    assert_eq!(module_entry(&doc, "forgejo")["result"], "applied");
    let gogs = module_entry(&doc, "gogs");
    assert_eq!(gogs["result"], "standby");
    assert!(
        gogs["error"]
            .as_str()
            .unwrap()
            .contains("forgejo runs instead"),
        "{gogs}"
    );
    assert_eq!(doc["summary"]["standby"], 1);

    // Under --run enabled, the same choice every run.
    let mut cmd = updater(&root, &repo);
    cmd.args(["sync", "--run", "enabled", "--json"])
        .env("PATH", path_with(bin.path()));
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(root.runs(), ["forgejo ->1.0.0", "forgejo 1.0.0->1.0.0"]);
    assert_eq!(module_entry(&json_of(&out), "gogs")["result"], "standby");
    let probed = std::fs::read_to_string(bin.path().join("probed")).unwrap();
    assert!(probed.lines().all(|l| l.ends_with(".service")), "{probed}");
}

#[test]
fn group_with_no_active_member_runs_none_with_a_warning() {
    let repo = UpdatesRepo::new();
    git_group(&repo);
    let root = InstallRoot::new();
    let bin = fake_systemctl(&[]);
    let mut cmd = updater(&root, &repo);
    cmd.args(["sync"]).env("PATH", path_with(bin.path()));
    let out = run(cmd);
    assert_code(&out, 0);
    assert!(root.runs().is_empty(), "{:?}", root.runs());
    let text = all_output(&out);
    assert!(
        text.contains("[WARNING]") && text.contains("no active implementation"),
        "{text}"
    );
    let probed = std::fs::read_to_string(bin.path().join("probed")).unwrap();
    assert_eq!(probed, "gogs.service\nforgejo.service\n");
}

#[test]
fn an_update_keeps_the_machines_values_and_the_repositorys_other_keys() {
    let repo = UpdatesRepo::new();
    repo.add_module("site", "1.0.0");
    set_top(
        &repo,
        "site",
        "repo",
        json!({"url": "https://a/b.git", "branch": "master"}),
    );
    set_top(
        &repo,
        "site",
        "config",
        json!({
            "repository": {"branch": "master"},
            "components": {"tabs": {"enabled": true}},
            "target_paths": {"components": {"api": {"enabled": true}}},
            "secret": "repo"
        }),
    );
    set_top(
        &repo,
        "site",
        "migrations",
        json!([{"id": "01", "has_run": false}]),
    );
    repo.set_metadata("site", "preserve", json!(["/config/secret"]));
    repo.commit("site 1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);

    // The machine changes its own values in the installed copy.
    let p = root.module_dir("site").join("index.json");
    let mut doc = root.read_module_index("site");
    doc["repo"]["branch"] = json!("dev");
    doc["config"]["repository"]["branch"] = json!("beta");
    doc["config"]["components"]["tabs"]["enabled"] = json!(false);
    doc["config"]["target_paths"]["components"]["api"]["enabled"] = json!(false);
    doc["config"]["secret"] = json!("local\nforged");
    doc["migrations"][0]["has_run"] = json!(true);
    std::fs::write(&p, to_json(&doc)).unwrap();

    repo.set_version("site", "2.0.0");
    set_top(
        &repo,
        "site",
        "migrations",
        json!([{"id": "01", "has_run": false}, {"id": "02", "has_run": false}]),
    );
    set_top(&repo, "site", "added", json!("new key"));
    repo.commit("site 2.0.0");
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let doc = root.read_module_index("site");
    assert_eq!(doc["metadata"]["schema_version"], "2.0.0");
    assert_eq!(doc["repo"]["branch"], "dev");
    assert_eq!(doc["config"]["repository"]["branch"], "beta");
    assert_eq!(doc["config"]["components"]["tabs"]["enabled"], false);
    assert_eq!(
        doc["config"]["target_paths"]["components"]["api"]["enabled"],
        false
    );
    assert_eq!(doc["config"]["secret"], "local\nforged");
    assert_eq!(
        doc["migrations"],
        json!([{"id": "01", "has_run": true}, {"id": "02", "has_run": false}])
    );
    assert_eq!(doc["added"], "new key");
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "metadata",
            "configuration",
            "repo",
            "config",
            "migrations",
            "added"
        ]
    );
    let text = all_output(&out);
    assert!(
        text.contains("kept this machine's /config/secret = \"local\\nforged\""),
        "{text}"
    );
    // Every line of output is a log line: the newline in the value did not forge one.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        assert!(is_log_line(line), "{line:?}");
    }
}

#[test]
fn installed_shell_scripts_get_the_execute_bit() {
    let repo = UpdatesRepo::new();
    repo.add_module("tools", "1.0.0");
    repo.write("modules/tools/bin/setup.sh", "#!/bin/sh\nexit 0\n");
    repo.write("modules/tools/notes.txt", "not a script\n");
    repo.commit("tools with a 0644 script");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let mode = |rel: &str| {
        std::fs::metadata(root.module_dir("tools").join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("bin/setup.sh"), 0o755);
    assert_eq!(mode("notes.txt"), 0o644);
}

#[test]
fn repository_disabled_module_is_installed_not_run_and_released_by_a_later_true() {
    let repo = UpdatesRepo::new();
    repo.add_module("beta", "1.0.0");
    repo.set_metadata("beta", "enabled", json!(false));
    repo.commit("beta, disabled upstream");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &["--run", "enabled"]);
    assert_code(&out, 0);
    assert!(root.module_dir("beta").join("update").is_file());
    assert!(root.runs().is_empty(), "{:?}", root.runs());
    assert_eq!(root.read_index()["packages"]["beta"], "1.0.0");

    repo.set_version("beta", "1.1.0");
    repo.set_metadata("beta", "enabled", json!(true));
    repo.commit("beta released");
    let out = sync(&root, &repo, &["--json"]);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "beta"), "update");
    assert_eq!(root.runs(), ["beta 1.0.0->1.1.0"]);
    assert_eq!(root.read_module_index("beta")["metadata"]["enabled"], true);
}

#[test]
fn an_installed_index_set_to_enabled_false_by_hand_holds_the_module() {
    // After a first sync, an operator edits the installed
    // index.json by hand (or a machine came from the Python orchestrator): that `false` is the
    // machine's, so the module is held, not updated and not run.
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    root.set_installed_metadata("m00", "enabled", json!(false));
    repo.set_version("m00", "2.0.0");
    repo.commit("m00 2.0.0");
    let out = sync(&root, &repo, &["--json", "--run", "enabled"]);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "held");
    assert_eq!(
        root.read_module_index("m00")["metadata"]["schema_version"],
        "1.0.0"
    );
    assert_eq!(root.runs(), ["m00 ->1.0.0"]);
}

#[test]
fn machine_disable_holds_against_the_repositorys_true_until_enable() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let mut cmd = updater_at(&root);
    cmd.args(["disable", "m00"]);
    assert_code(&run(cmd), 0);

    repo.set_version("m00", "2.0.0");
    repo.set_metadata("m00", "enabled", json!(true));
    repo.commit("m00 2.0.0");
    let out = sync(&root, &repo, &["--json", "--run", "enabled"]);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "held");
    assert_eq!(
        root.read_module_index("m00")["metadata"]["schema_version"],
        "1.0.0"
    );
    assert_eq!(root.runs(), ["m00 ->1.0.0"]);

    let mut cmd = updater_at(&root);
    cmd.args(["enable", "m00"]);
    assert_code(&run(cmd), 0);
    // The machine's `enable` is carried over a repository-side false.
    repo.set_version("m00", "3.0.0");
    repo.set_metadata("m00", "enabled", json!(false));
    repo.commit("m00 3.0.0, disabled upstream");
    assert_code(&sync(&root, &repo, &[]), 0);
    let doc = root.read_module_index("m00");
    assert_eq!(doc["metadata"]["schema_version"], "3.0.0");
    assert_eq!(doc["metadata"]["enabled"], true);
    assert_eq!(root.runs(), ["m00 ->1.0.0", "m00 1.0.0->3.0.0"]);
}

#[test]
fn prune_refuses_to_remove_more_than_half_without_force() {
    let repo = UpdatesRepo::with_modules(3);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    repo.remove("modules/m01").remove("modules/m02");
    repo.commit("drop two of three");
    let before = root.snapshot();
    let out = sync(&root, &repo, &["--prune"]);
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains("refusing --prune: it would remove 2 of the 3"),
        "{}",
        dump(&out)
    );
    assert_eq!(root.snapshot(), before);
    assert_code(&sync(&root, &repo, &["--prune", "--force"]), 0);
    assert!(!root.module_dir("m01").exists() && !root.module_dir("m02").exists());
    assert!(root.module_dir("m00").exists());
}

#[test]
fn prune_refuses_a_repository_without_modules() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    repo.remove("modules");
    repo.commit("no modules at all");
    let before = root.snapshot();
    let out = sync(&root, &repo, &["--prune"]);
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains("has no modules/ directory"),
        "{}",
        dump(&out)
    );
    assert_eq!(root.snapshot(), before);
}

/// A Python module whose `main` records its arguments in `<root>/.args-<name>` and returns
/// `result` (a Python literal).
fn python_module(repo: &UpdatesRepo, name: &str, result: &str) {
    repo.write(
        &format!("modules/{name}/index.json"),
        &to_json(&json!({"metadata": {"schema_version": "1.0.0"}})),
    );
    repo.write(
        &format!("modules/{name}/index.py"),
        &format!(
            "import os\n\ndef main(args):\n    with open(os.path.join(os.environ['UPDATER_MODULES_PATH'], '.args-{name}'), 'a') as f:\n        f.write(repr(args) + '\\n')\n    return {result}\n"
        ),
    );
}

#[test]
fn check_with_run_enabled_asks_the_check_modules_for_content_updates() {
    let repo = UpdatesRepo::new();
    python_module(&repo, "os", "{'success': True, 'update_available': True}");
    python_module(&repo, "other", "{'success': True}");
    repo.commit("two python modules");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let args = |n: &str| {
        std::fs::read_to_string(root.path().join(format!(".args-{n}"))).unwrap_or_default()
    };
    // (The sync's call: `main(None)` per SPEC §10 once the runner passes it; `[]` today.)
    let synced = args("os");
    assert_eq!(synced.lines().count(), 1);

    let mut cmd = updater(&root, &repo);
    cmd.args(["check", "--run", "enabled", "--json"]);
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(args("os"), format!("{synced}['--check']\n"));
    assert_eq!(args("other"), synced);
    let doc = json_of(&out);
    assert!(module_entry(&doc, "os")
        .as_object()
        .unwrap()
        .contains_key("content_update"));

    // Without --run enabled, check runs no module code.
    let mut cmd = updater(&root, &repo);
    cmd.arg("check");
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(args("os"), format!("{synced}['--check']\n"));
    assert!(
        all_output(&out).contains("No updates available"),
        "{}",
        dump(&out)
    );
}

#[test]
fn check_says_updates_are_available_with_the_needs_update_lines() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    repo.set_version("m00", "1.1.0");
    repo.commit("m00 1.1.0");
    let mut cmd = updater(&root, &repo);
    cmd.arg("check");
    let out = run(cmd);
    assert_code(&out, 0);
    let msgs = log_messages(&stdout_of(&out));
    assert!(
        msgs.iter()
            .any(|m| m == "Module m00 needs update: 1.0.0 → 1.1.0"),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m == "Updates are available"),
        "{msgs:?}"
    );
    assert!(
        !msgs.iter().any(|m| m == "No updates available"),
        "{msgs:?}"
    );
}
