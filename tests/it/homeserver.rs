//! The drop-in acceptance suite for HOMESERVER (SPEC §10, with §3, §5 and §6b): a repository shaped
//! like `homeserversltd/updates` (framework files with its circular package import, modules using
//! every import shape its modules use, a `group` of two implementations, components, migrations
//! with `has_run`, `repo` configuration; see tests/it/common/homeserver.rs) is synced with
//! `--run enabled` into an install root named `updates` and into one that is not, and the tests
//! assert what each module's `main` saw and returned.
//!
//! The first test checks the fixture itself against what upstream does: a plain `import updates`
//! fails once with the circular import, and `python3 -m updates.index` imports every module.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::common::homeserver::*;
use crate::common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers

/// The modules a sync with `--run enabled` runs: every enabled one (zoxide ships disabled), minus
/// those the machine disabled, with `group_winner` the only member of the git group.
fn expected_runners(group_winner: &str, machine_disabled: &[&str]) -> Vec<&'static str> {
    MODULES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "zoxide" && !machine_disabled.contains(n))
        .filter(|n| !matches!(*n, "gogs" | "forgejo") || *n == group_winner)
        .collect()
}

/// Asserts that every expected module's `main(None)` ran exactly once, nothing else ran, in
/// priority order, with `sbin` after the module it depends on.
fn assert_ran_in_order(calls: &[Value], expected: &[&str], out: &std::process::Output) {
    let names = called_names(calls);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    for want in expected {
        assert_eq!(
            counts.get(want).copied().unwrap_or(0),
            1,
            "main of {want} must run exactly once; ran: {names:?}\n{}",
            dump(out)
        );
    }
    for n in counts.keys() {
        assert!(
            expected.contains(n),
            "main of {n} must not run; ran: {names:?}\n{}",
            dump(out)
        );
    }
    for c in calls {
        assert!(
            c["args"].is_null(),
            "a sync calls main(None), not {}: {c}",
            c["args"]
        );
    }
    // Lower priority finishes before higher starts: every call of a lower priority comes first.
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            assert!(
                priority_of(a) <= priority_of(b),
                "{a} (priority {}) ran after {b} (priority {}): {names:?}",
                priority_of(a),
                priority_of(b)
            );
        }
    }
    let pos = |n: &str| names.iter().position(|x| x == n);
    if let (Some(k), Some(s)) = (pos("keyman"), pos("sbin")) {
        assert!(k < s, "sbin depends on keyman and ran first: {names:?}");
    }
}

/// Asserts the import context and process environment SPEC §5/§10 give a module's `main`.
fn assert_module_context(calls: &[Value], root: &HsRoot) {
    let root_path = root.canonical();
    for c in calls {
        let name = c["module"].as_str().unwrap();
        assert_eq!(
            c["package"],
            json!(format!("updates.modules.{name}")),
            "{name} must be the package updates.modules.{name}"
        );
        let updates = std::path::PathBuf::from(c["updates"].as_str().unwrap());
        assert!(
            updates == root_path || updates == root.path(),
            "`import updates` in {name} must resolve to the install root, not {}",
            updates.display()
        );
        assert_eq!(
            std::path::PathBuf::from(c["cwd"].as_str().unwrap()),
            root_path.join("modules").join(name),
            "{name} runs in its module directory"
        );
        // Upstream's PATH (SPEC §10); the runner may put its interpreter's directories first.
        let path_env = c["path_env"].as_str().unwrap_or("");
        assert!(
            path_env == MODULE_PATH_ENV || path_env.ends_with(&format!(":{MODULE_PATH_ENV}")),
            "{name}: PATH {path_env:?}"
        );
        assert_eq!(c["unbuffered"], json!("1"), "{name}: PYTHONUNBUFFERED");
        assert_eq!(
            c["root_level"],
            json!(10),
            "{name}: the root logger is configured at DEBUG"
        );
        assert!(
            c["root_handlers"].as_u64().unwrap_or(0) >= 1,
            "{name}: the root logger has a handler"
        );
    }
}

/// Whether a recorded systemctl command line is `is-active --quiet [--] <service>`.
fn is_active_probe(line: &str, service: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.first() == Some(&"is-active")
        && words.contains(&"--quiet")
        && words.last() == Some(&service)
}

/// The row of `name` in a `--json` document.
fn row<'a>(doc: &'a Value, name: &str) -> &'a Value {
    module_entry(doc, name)
}

fn is_exec(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A fresh sync with `--run enabled` (gogs active) into `root`; the shared assertions of the
/// first run.
fn fresh_sync_case(root: &HsRoot) {
    let repo = homeserver_repo();
    root.set_active(&["gogs", "forgejo"]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let calls = root.calls();

    // Every enabled main ran once, in priority and dependency order, in the right context.
    assert_ran_in_order(&calls, &expected_runners("gogs", &[]), &out);
    assert_module_context(&calls, root);

    // `from ...utils import x` resolved to the framework's utils; a package-level attribute set
    // from `updates.utils.index` at import is there.
    let hotfix = calls.iter().find(|c| c["module"] == "hotfix").unwrap();
    assert_eq!(hotfix["utils_version"], json!("1.0.0"));
    let os = calls.iter().find(|c| c["module"] == "os").unwrap();
    assert_eq!(os["package_version"], json!("1.0.0"));
    let website = calls.iter().find(|c| c["module"] == "website").unwrap();
    assert_eq!(website["git"], json!("git"), "sibling import works");

    // The JSON rows: every module new; ran modules applied; the group's other member standby.
    for (name, _) in MODULES {
        let r = row(&doc, name);
        assert_eq!(r["decision"], json!("new"), "{name}: {r}");
        assert!(
            root.module_dir(name).join("index.py").is_file(),
            "{name} installed"
        );
    }
    for name in expected_runners("gogs", &[]) {
        let r = row(&doc, name);
        assert_eq!(r["result"], json!("applied"), "{name}: {r}\n{}", dump(&out));
        assert!(r["error"].is_null(), "{name}: {r}");
    }
    let forgejo = row(&doc, "forgejo");
    assert_eq!(forgejo["result"], json!("standby"), "{forgejo}");
    assert!(
        all_output(&out).contains("gogs") && forgejo.to_string().contains("gogs"),
        "the standby row says which implementation runs: {forgejo}"
    );
    let zoxide = row(&doc, "zoxide");
    assert!(
        !matches!(zoxide["result"].as_str(), Some("failed" | "rolled_back")),
        "a repository-disabled module is installed, not failed: {zoxide}"
    );
    // What main returned beyond success is kept under details.
    assert_eq!(
        row(&doc, "hotfix")["details"]["message"],
        json!("hotfix: nothing to patch"),
        "{}",
        row(&doc, "hotfix")
    );
    assert_eq!(doc["summary"]["failed"], json!(0), "{doc:#}");

    // The group probe asked systemctl about gogs.
    assert!(
        root.systemctl_calls()
            .iter()
            .any(|l| is_active_probe(l, "gogs")),
        "systemctl calls: {:?}",
        root.systemctl_calls()
    );

    // Framework installed, as one unit, before any module; the repository's updateManager.sh not.
    let fw = row(&doc, "framework");
    assert_eq!(fw["result"], json!("applied"), "{fw}");
    for f in [
        "__init__.py",
        "index.py",
        "utils/__init__.py",
        "utils/index.py",
        "utils/state_manager.py",
        "utils/module_utils.py",
        "requirements.txt",
    ] {
        let p = root.path().join(f);
        assert!(p.is_file(), "framework file {f} installed");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(repo.path().join(f)).unwrap(),
            "{f} is the repository's"
        );
    }
    assert!(
        is_exec(&root.path().join("setup_venv.sh")),
        "*.sh get the execute bit"
    );
    assert!(
        is_exec(&root.module_dir("adblock").join("adblock.sh")),
        "a module's *.sh gets the execute bit"
    );
    let wrapper = std::fs::read_to_string(root.path().join("updateManager.sh")).unwrap_or_default();
    assert!(
        !wrapper.contains(REPO_WRAPPER_MARKER),
        "the repository's updateManager.sh must never be installed"
    );
    let text = all_output(&out);
    assert!(
        text.contains("Orchestrator needs update:"),
        "framework log line\n{text}"
    );

    // Module INFO lines reach the run's log through the root logger.
    for name in ["hotfix", "gogs", "keyman", "migrations", "atuin", "website"] {
        let needle = format!("[INFO] hsfix {name} reached main");
        assert!(
            text.contains(&needle),
            "{needle:?} missing from the run's output\n{text}"
        );
    }

    // The global index records exactly what is installed, and the new framework version.
    let global = root.read_index();
    let packages: BTreeMap<String, Value> = global["packages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let want: BTreeMap<String, Value> = MODULES
        .iter()
        .map(|(n, _)| ((*n).to_string(), json!("1.0.0")))
        .collect();
    assert_eq!(packages, want);
    assert_eq!(global["metadata"]["schema_version"], json!("1.0.0"));

    // A second run with nothing new: nothing installed, every enabled main runs again.
    root.clear_calls();
    let (doc2, out2) = root.sync_json(&repo, &[]);
    assert_code(&out2, 0);
    assert!(
        all_output(&out2).contains("Orchestrator is up to date: 1.0.0"),
        "{}",
        dump(&out2)
    );
    for (name, _) in MODULES {
        assert_eq!(row(&doc2, name)["decision"], json!("up_to_date"), "{name}");
    }
    assert_ran_in_order(&root.calls(), &expected_runners("gogs", &[]), &out2);
}

// ---------------------------------------------------------------------------------------------
// the fixture is faithful to upstream (runs without the merge)

/// Runs python3 in `dir` with `code`; returns (success, stdout+stderr).
fn python_in(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    (out.status.success(), all_output(&out))
}

#[test]
fn fixture_framework_has_upstreams_circular_import_and_imports_every_module_under_python_m() {
    let repo = homeserver_repo();
    let parent = repo.dir.path(); // the work tree is <parent>/updates

    // A plain `import updates` fails once, with the ImportError runpy tolerates.
    let (ok, text) = python_in(
        parent,
        &[
            "-c",
            "try:\n    import updates\nexcept ImportError as e:\n    print('first import failed, name=' + repr(e.name))\n    print(e)\nelse:\n    print('first import worked')",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("first import failed, name='updates'")
            && text.contains("compare_schema_versions"),
        "the fixture must reproduce upstream's circular import\n{text}"
    );

    // `python3 -m updates.index` (upstream's way) imports every module.
    let (ok, text) = python_in(parent, &["-m", "updates.index"]);
    assert!(ok, "python3 -m updates.index failed\n{text}");
    for (name, _) in MODULES {
        assert!(
            text.contains(&format!("imported {name} main=True")),
            "{name} not imported under python3 -m\n{text}"
        );
    }

    // Retrying `import updates` alone is not enough (the trap in findings §1): a module that
    // imports `updates.index` first fails with a second circular import.
    let (_, text) = python_in(
        parent,
        &[
            "-c",
            "import importlib\ntry:\n    import updates\nexcept ImportError as e:\n    assert e.name == 'updates', e\nimport updates\ntry:\n    importlib.import_module('updates.modules.gogs')\nexcept ImportError as e:\n    print('naive import failed, name=' + repr(e.name))\nelse:\n    print('naive import worked')",
        ],
    );
    assert!(
        text.contains("naive import failed, name='updates.index'"),
        "the fixture must keep upstream's second trap\n{text}"
    );

    // Nothing was left in the work tree (no bytecode, no record).
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

// ---------------------------------------------------------------------------------------------
// sync with --run enabled

#[test]
fn sync_run_enabled_into_a_root_named_updates_runs_every_main_in_order_in_its_package() {
    fresh_sync_case(&HsRoot::named("updates"));
}

#[test]
fn sync_run_enabled_into_a_root_not_named_updates_still_imports_it_as_updates() {
    fresh_sync_case(&HsRoot::named("hs-lib.not-updates"));
}

#[test]
fn group_runs_only_the_active_implementation_and_reports_the_other_as_standby() {
    let root = HsRoot::named("updates");
    let repo = homeserver_repo();
    root.set_active(&["forgejo"]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let names = called_names(&root.calls());
    assert!(names.contains(&"forgejo".to_string()), "{names:?}");
    assert!(!names.contains(&"gogs".to_string()), "{names:?}");
    let gogs = row(&doc, "gogs");
    assert_eq!(gogs["result"], json!("standby"), "{gogs}");
    assert!(
        gogs.to_string().contains("forgejo"),
        "standby says which one runs: {gogs}"
    );
    assert_eq!(row(&doc, "forgejo")["result"], json!("applied"));
    // Both were asked (gogs comes first by group_order and is not active).
    let probes = root.systemctl_calls();
    for svc in ["gogs", "forgejo"] {
        assert!(
            probes.iter().any(|l| is_active_probe(l, svc)),
            "{svc} not probed: {probes:?}"
        );
    }
}

#[test]
fn group_with_no_active_implementation_runs_neither_and_warns_without_failing() {
    let root = HsRoot::named("updates");
    let repo = homeserver_repo();
    root.set_active(&[]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let names = called_names(&root.calls());
    assert!(
        !names.iter().any(|n| n == "gogs" || n == "forgejo"),
        "{names:?}"
    );
    assert!(names.contains(&"hotfix".to_string()), "the rest runs");
    for name in ["gogs", "forgejo"] {
        assert!(
            !matches!(
                row(&doc, name)["result"].as_str(),
                Some("failed" | "rolled_back")
            ),
            "{}",
            row(&doc, name)
        );
    }
    let warned = all_output(&out).lines().any(|l| {
        matches!(log_level(l), Some(level) if level.starts_with("WARN")) && l.contains("git")
    });
    assert!(warned, "a warning names the group\n{}", dump(&out));
}

#[test]
fn machine_local_values_survive_an_update_and_a_machine_disabled_module_does_not_run() {
    let root = HsRoot::named("updates");
    let repo = homeserver_repo();
    root.set_active(&["gogs"]);
    let (_, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    // The first run's migrations main saw both migrations pending and marked them run.
    let first = root.calls();
    let mig = first.iter().find(|c| c["module"] == "migrations").unwrap();
    assert_eq!(mig["pending"], json!(["00000001", "00000002"]));

    // The machine's choices.
    let mut keyman = root.read_module_index("keyman");
    keyman["repo"]["branch"] = json!("dev");
    root.write_module_index("keyman", &keyman);
    let mut website = root.read_module_index("website");
    website["config"]["components"]["premium"]["enabled"] = json!(false);
    website["config"]["repository"]["branch"] = json!("beta");
    root.write_module_index("website", &website);
    let mut cmd = root.updater_at();
    cmd.args(["disable", "atuin"]);
    let out = cmd.output().expect("run updater disable");
    assert_code(&out, 0);

    // The repository moves on: every module and the framework at 1.1.0, a new migration, a new
    // component, and zoxide released by the repository.
    write_fixture(&repo, "1.1.0", "2");
    edit_repo_json(&repo, "modules/migrations/index.json", |v| {
        v["migrations"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "id": "00000003", "description": "third", "has_run": false }));
    });
    edit_repo_json(&repo, "modules/website/index.json", |v| {
        v["config"]["components"]["public"] = json!({ "enabled": true });
    });
    edit_repo_json(&repo, "modules/zoxide/index.json", |v| {
        v["metadata"]["enabled"] = json!(true);
    });
    repo.commit("fixture 1.1.0");

    root.clear_calls();
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let calls = root.calls();
    let mut expected = expected_runners("gogs", &["atuin"]);
    expected.push("zoxide");
    assert_ran_in_order(&calls, &expected, &out);

    // sbin read the installed global index through the framework (`updates.utils`), the way
    // upstream's utils/moduleUtils.py does (`<utils dir>/../index.json`).
    let sb = calls.iter().find(|c| c["module"] == "sbin").unwrap();
    assert_eq!(sb["root_channel"], json!("stable"), "{sb}");
    // keyman: the machine's repo branch, in the index and as main saw it.
    assert_eq!(
        root.read_module_index("keyman")["repo"]["branch"],
        json!("dev")
    );
    let k = calls.iter().find(|c| c["module"] == "keyman").unwrap();
    assert_eq!(k["repo"]["branch"], json!("dev"), "{k}");
    assert_eq!(k["version"], json!("1.1.0"));
    // website: the machine's component switch and config.repository; the new component arrives.
    let w = root.read_module_index("website");
    assert_eq!(
        w["config"]["components"],
        json!({ "frontend": { "enabled": true }, "premium": { "enabled": false }, "public": { "enabled": true } })
    );
    assert_eq!(w["config"]["repository"]["branch"], json!("beta"));
    assert_eq!(w["metadata"]["schema_version"], json!("1.1.0"));
    // migrations: only the new one was pending; afterwards all have run.
    let m = calls.iter().find(|c| c["module"] == "migrations").unwrap();
    assert_eq!(m["pending"], json!(["00000003"]), "has_run survived: {m}");
    let flags: Vec<Value> = root.read_module_index("migrations")["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["has_run"].clone())
        .collect();
    assert_eq!(flags, vec![json!(true); 3]);
    // atuin: held at its old copy, not run.
    assert_eq!(row(&doc, "atuin")["decision"], json!("held"));
    assert_eq!(
        root.read_module_index("atuin")["metadata"]["schema_version"],
        json!("1.0.0")
    );
    assert_eq!(
        root.read_module_index("atuin")["metadata"]["enabled"],
        json!(false)
    );
    // Framework updated; the global index says what is installed.
    assert_eq!(row(&doc, "framework")["result"], json!("applied"));
    assert!(std::fs::read_to_string(root.path().join("__init__.py"))
        .unwrap()
        .contains("FRAMEWORK_REV = \"2\""));
    assert!(all_output(&out).contains("Orchestrator needs update: 1.0.0 → 1.1.0"));
    let global = root.read_index();
    assert_eq!(global["metadata"]["schema_version"], json!("1.1.0"));
    for (name, _) in MODULES {
        let want = if *name == "atuin" { "1.0.0" } else { "1.1.0" };
        assert_eq!(global["packages"][name], json!(want), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// check with --run enabled

#[test]
fn check_run_enabled_calls_main_check_of_the_enabled_check_modules_and_nothing_else() {
    let root = HsRoot::named("updates");
    let repo = homeserver_repo();
    root.set_active(&["gogs"]);
    let (_, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let mut cmd = root.updater_at();
    cmd.args(["disable", "sbin"]);
    assert_code(&cmd.output().expect("run updater disable"), 0);
    root.clear_calls();
    let before = snapshot(root.path(), &[".updater", CALLS_LOG]);

    let mut cmd = root.updater(&repo);
    cmd.args(["check", "--run", "enabled"]);
    let out = cmd.output().expect("run updater check");
    assert_code(&out, 0);
    let calls = root.calls();
    let mut names = called_names(&calls);
    names.sort();
    assert_eq!(
        names,
        vec!["migrations", "os", "website"],
        "the enabled check modules, once each\n{}",
        dump(&out)
    );
    for c in &calls {
        assert_eq!(c["args"], json!(["--check"]), "{c}");
    }
    for name in CHECK_MODULES {
        assert!(
            calls.iter().any(|c| c["module"] == *name) || *name == "sbin",
            "{name}"
        );
    }
    // os reports update_available: a content update.
    let text = all_output(&out);
    assert!(text.contains("Updates are available"), "{text}");
    // A check changes nothing in the install root outside .updater/ (what main itself writes aside).
    assert_eq!(snapshot(root.path(), &[".updater", CALLS_LOG]), before);
}

// ---------------------------------------------------------------------------------------------
// the verdict of main

/// The fixture with `atuin`'s main replaced by `body` (which may use `_record`), committed.
fn repo_with_atuin_main(body: &str) -> UpdatesRepo {
    let repo = homeserver_repo();
    repo.write(
        "modules/atuin/index.py",
        &module_py("atuin", "from updates.index import log_message", body),
    );
    repo.commit("atuin: a main under test");
    repo
}

#[test]
fn main_returning_exactly_false_is_run_once_more_and_then_counts() {
    // Returns False on its first call in a run, then success: applied after two calls.
    let repo = repo_with_atuin_main(
        "def main(args=None):\n    _record(args)\n    \
         marker = os.path.join(os.environ[\"UPDATER_MODULES_PATH\"], \".hs-atuin-once\")\n    \
         if not os.path.exists(marker):\n        open(marker, \"w\").close()\n        return False\n    \
         return {\"success\": True}\n",
    );
    let root = HsRoot::named("updates");
    root.set_active(&["gogs"]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 0);
    let atuin_calls = called_names(&root.calls())
        .into_iter()
        .filter(|n| n == "atuin")
        .count();
    assert_eq!(atuin_calls, 2, "False is retried once\n{}", dump(&out));
    assert_eq!(row(&doc, "atuin")["result"], json!("applied"));

    // Always False: two calls, then a failure (a new module: not kept), exit 3.
    let repo = repo_with_atuin_main("def main(args=None):\n    _record(args)\n    return False\n");
    let root = HsRoot::named("updates");
    root.set_active(&["gogs"]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 3);
    let atuin_calls = called_names(&root.calls())
        .into_iter()
        .filter(|n| n == "atuin")
        .count();
    assert_eq!(atuin_calls, 2, "{}", dump(&out));
    assert!(
        matches!(
            row(&doc, "atuin")["result"].as_str(),
            Some("rolled_back" | "failed")
        ),
        "{}",
        row(&doc, "atuin")
    );
    assert_eq!(
        row(&doc, "hotfix")["result"],
        json!("applied"),
        "the rest applies"
    );
}

#[test]
fn verdict_lookalikes_in_module_output_do_not_change_the_result() {
    // A main that prints what a verdict might look like on both streams, then fails.
    let repo = repo_with_atuin_main(
        "def main(args=None):\n    _record(args)\n    \
         for stream in (sys.stdout, sys.stderr):\n        \
         stream.write(\"UPDATER-RESULT: ok\\n{\\\"success\\\": true}\\nUPDATER-RESULT: ok\")\n        \
         stream.flush()\n    \
         return {\"success\": False, \"error\": \"atuin refused\"}\n",
    );
    let root = HsRoot::named("updates");
    root.set_active(&["gogs"]);
    let (doc, out) = root.sync_json(&repo, &[]);
    assert_code(&out, 3);
    let atuin = row(&doc, "atuin");
    assert!(
        matches!(atuin["result"].as_str(), Some("rolled_back" | "failed")),
        "{atuin}\n{}",
        dump(&out)
    );
    assert!(
        root.read_index()["packages"].get("atuin").is_none(),
        "a failed new module is not recorded as installed"
    );
}
