//! Framework files (SPEC §10): the repository root's files installed as one unit before any
//! module, our own `updateManager.sh` in the install root, and post-sync hooks (with the two
//! shipped HOMESERVER hooks). Real git repositories, the real binary, real processes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use serde_json::{json, Value};

const ENTRIES: &[&str] = &[
    "__init__.py",
    "index.py",
    "utils",
    "setup_venv.sh",
    "requirements.txt",
];

fn sync(root: &InstallRoot, repo: &UpdatesRepo, extra: &[&str]) -> Output {
    let mut cmd = updater(root, repo);
    cmd.args(extra).arg("sync");
    run(cmd)
}

fn sync_json(root: &InstallRoot, repo: &UpdatesRepo) -> (Value, Output) {
    let out = sync(root, repo, &["--json"]);
    (json_of(&out), out)
}

/// The framework row of a `--json` document.
fn framework_row(doc: &Value) -> Value {
    doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "framework")
        .cloned()
        .unwrap_or_else(|| panic!("no framework row in {doc:#}"))
}

/// A repository with the framework at `v` and one module `m1` whose entry records whether the
/// framework was already in place when it ran.
fn framework_repo(v: &str) -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    repo.write_framework(v);
    repo.add_module("m1", "1.0.0");
    repo.write_exec(
        "modules/m1/update",
        "#!/bin/sh\nif [ -f \"$UPDATER_MODULES_PATH/utils/x.py\" ]; then cat \"$UPDATER_MODULES_PATH/utils/x.py\" > \"$UPDATER_MODULES_PATH/.m1-saw\"; else echo none > \"$UPDATER_MODULES_PATH/.m1-saw\"; fi\n",
    );
    repo.commit(&format!("framework {v}"));
    repo
}

/// Every framework file, read through the root: the version each one carries.
fn versions_seen(root: &Path) -> Vec<Option<String>> {
    let grab = |rel: &str| {
        read_through(root, rel).map(|t| {
            t.split(['"', ' ', '\n'])
                .rfind(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .unwrap_or("")
                .to_string()
        })
    };
    [
        "__init__.py",
        "index.py",
        "utils/x.py",
        "setup_venv.sh",
        "requirements.txt",
    ]
    .iter()
    .map(|r| grab(r))
    .collect()
}

fn all_at(root: &Path, v: &str) -> bool {
    versions_seen(root).iter().all(|x| x.as_deref() == Some(v))
}

fn installed_schema(root: &InstallRoot) -> Value {
    root.read_index()["metadata"]["schema_version"].clone()
}

#[test]
fn fresh_install_installs_the_framework_as_real_files_before_any_module() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    let row = framework_row(&doc);
    assert_eq!(row["name"], "framework");
    assert_eq!(row["decision"], "new", "{row}");
    assert_eq!(row["result"], "applied", "{row}");
    assert!(
        stderr_of(&out).contains("Orchestrator needs update: none → 1.0.0"),
        "{}",
        dump(&out)
    );
    assert!(
        all_at(root.path(), "1.0.0"),
        "{:?}",
        versions_seen(root.path())
    );
    assert_real_files(root.path());
    let installed: Value = serde_json::from_str(
        &fs::read_to_string(root.state_dir().join("framework/installed.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(installed["entries"], json!(ENTRIES), "{installed}");
    // The module ran with the framework already installed.
    assert_eq!(
        fs::read_to_string(root.path().join(".m1-saw")).unwrap(),
        "VALUE = \"1.0.0\"\n"
    );
    assert_eq!(installed_schema(&root), "1.0.0");
    // setup_venv.sh was committed 0644; installed, it is executable.
    let mode = fs::metadata(root.path().join("setup_venv.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "mode {mode:o}");
    // The installed index keeps the machine's repository_url, not the repository's own.
    assert_eq!(root.read_index()["metadata"]["repository_url"], repo.url());
}

#[test]
fn import_updates_utils_works_from_the_installed_root() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let install = root.path().join("updates");
    let mut cmd = updater_env(&root);
    cmd.arg("--modules-path")
        .arg(&install)
        .arg("--repo-url")
        .arg(repo.url())
        .arg("sync");
    let out = run(cmd);
    assert_code(&out, 0);
    let py = Command::new("python3")
        .env("PYTHONPATH", root.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args([
            "-c",
            "import updates.utils.x, updates; print(updates.utils.x.VALUE, updates.FRAMEWORK)",
        ])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", dump(&py));
    assert_eq!(stdout_of(&py).trim(), "1.0.0 1.0.0");
}

#[test]
fn schema_bump_switches_every_framework_file_and_keeps_the_old_one_as_backup() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let mut index = root.read_index();
    index["metadata"]["channel"] = json!("beta");
    index["metadata"]["branch"] = json!("master");
    root.write_index(&index);

    repo.write_framework("2.0.0");
    repo.write("utils/new.py", "NEW = 1\n");
    repo.commit("framework 2.0.0");
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    let row = framework_row(&doc);
    assert_eq!(
        (row["decision"].clone(), row["result"].clone()),
        (json!("update"), json!("applied"))
    );
    assert!(
        stderr_of(&out).contains("Orchestrator needs update: 1.0.0 → 2.0.0"),
        "{}",
        dump(&out)
    );
    assert!(
        all_at(root.path(), "2.0.0"),
        "{:?}",
        versions_seen(root.path())
    );
    assert!(root.path().join("utils/new.py").is_file());
    assert_real_files(root.path());
    // The backup is the complete replaced version, as real files.
    let backup = root.state_dir().join("framework/backup");
    assert!(all_at(&backup, "1.0.0"), "{:?}", versions_seen(&backup));
    assert!(!backup.join("utils/new.py").exists());
    let meta = &root.read_index()["metadata"];
    assert_eq!(meta["schema_version"], "2.0.0");
    assert_eq!(meta["channel"], "beta", "the machine's channel is kept");
    assert_eq!(meta["branch"], "master");

    // A third run: up to date, nothing in the root changes.
    let before = snapshot(
        root.path(),
        &[
            ".updater/repo",
            ".updater/state.json",
            ".updater/index-cache.json",
            ".updater/lock",
        ],
    );
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(
        stdout_of(&out).contains("Orchestrator is up to date: 2.0.0"),
        "{}",
        dump(&out)
    );
    let after = snapshot(
        root.path(),
        &[
            ".updater/repo",
            ".updater/state.json",
            ".updater/index-cache.json",
            ".updater/lock",
        ],
    );
    assert_eq!(before, after);
}

#[test]
fn a_missing_framework_file_triggers_a_reinstall_at_the_same_version() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    fs::remove_dir_all(root.path().join("utils")).unwrap();
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    let row = framework_row(&doc);
    assert_eq!(row["result"], "applied", "{row}");
    assert!(
        all_at(root.path(), "1.0.0"),
        "{:?}",
        versions_seen(root.path())
    );
}

#[test]
fn an_installed_framework_ahead_of_the_repository_is_left_alone_and_keeps_its_version() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let mut index = root.read_index();
    index["metadata"]["schema_version"] = json!("5.0.0");
    root.write_index(&index);
    let before = snapshot(root.path(), &[".updater", "index.json"]);
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    let row = framework_row(&doc);
    assert_eq!(row["decision"], "local_ahead", "{row}");
    assert_eq!(row["result"], Value::Null);
    assert_eq!(installed_schema(&root), "5.0.0");
    assert_eq!(snapshot(root.path(), &[".updater", "index.json"]), before);
}

#[test]
fn the_repositorys_update_manager_is_never_installed_and_ours_replaces_a_foreign_one() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    root.write(
        "updateManager.sh",
        "#!/bin/bash\npython3 -m updates.index\n",
    );
    assert_code(&sync(&root, &repo, &[]), 0);
    let wrapper = root.path().join("updateManager.sh");
    let text = fs::read_to_string(&wrapper).unwrap();
    assert!(
        text.lines()
            .any(|l| l == updater::framework::WRAPPER_MARKER),
        "{text}"
    );
    assert!(!text.contains("python3 -m updates.index"), "{text}");
    assert!(!fs::symlink_metadata(&wrapper).unwrap().is_symlink());
    assert_eq!(
        fs::metadata(&wrapper).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_to_string(root.state_dir().join("framework/replaced-updateManager.sh")).unwrap(),
        "#!/bin/bash\npython3 -m updates.index\n"
    );
    // The framework unit does not hold the repository's wrapper either.
    let installed = fs::read_to_string(root.state_dir().join("framework/installed.json")).unwrap();
    assert!(!installed.contains("updateManager.sh"), "{installed}");

    // Ours, current: left alone (same inode). Ours, older: rewritten, not kept as foreign.
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(&wrapper).unwrap().ino();
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(
        fs::metadata(&wrapper).unwrap().ino(),
        ino,
        "rewritten needlessly"
    );
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{}\necho old\n",
            updater::framework::WRAPPER_MARKER
        ),
    )
    .unwrap();
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(fs::read_to_string(&wrapper).unwrap(), text);
    assert_eq!(
        fs::read_to_string(root.state_dir().join("framework/replaced-updateManager.sh")).unwrap(),
        "#!/bin/bash\npython3 -m updates.index\n"
    );
}

#[test]
fn real_files_of_a_python_install_are_moved_aside_never_deleted() {
    let repo = framework_repo("2.0.0");
    let root = InstallRoot::new();
    root.write("__init__.py", "OLD = 1\n");
    root.write("utils/x.py", "VALUE = \"0.1.45\"\n");
    root.write("utils/local_only.py", "MINE = 1\n");
    root.write_index(&json!({
        "metadata": { "schema_version": "0.1.45", "channel": "stable" },
        "packages": {}
    }));
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(
        all_at(root.path(), "2.0.0"),
        "{:?}",
        versions_seen(root.path())
    );
    let fw = root.state_dir().join("framework");
    let displaced: Vec<PathBuf> = fs::read_dir(&fw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("displaced-")
        })
        .collect();
    assert_eq!(displaced.len(), 1, "{displaced:?}");
    let d = &displaced[0];
    assert_eq!(
        fs::read_to_string(d.join("__init__.py")).unwrap(),
        "OLD = 1\n"
    );
    assert_eq!(
        fs::read_to_string(d.join("utils/local_only.py")).unwrap(),
        "MINE = 1\n"
    );
    // A later update keeps them too.
    repo.write_framework("3.0.0");
    repo.commit("3.0.0");
    assert_code(&sync(&root, &repo, &[]), 0);
    assert!(all_at(root.path(), "3.0.0"));
    assert_eq!(
        fs::read_to_string(d.join("__init__.py")).unwrap(),
        "OLD = 1\n"
    );
}

#[test]
fn malicious_framework_entries_are_refused_and_nothing_installed_changes() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s3cret").unwrap();
    let cases: Vec<(&str, Value)> = vec![
        ("parent", json!(["../evil"])),
        ("absolute", json!(["/etc/passwd"])),
        ("modules", json!(["modules"])),
        ("state dir", json!([".updater"])),
        ("wrapper", json!(["updateManager.sh"])),
        ("venv", json!(["venv"])),
        ("index", json!(["index.json"])),
        ("nested", json!(["utils/../../x"])),
        ("control", json!(["a\nb"])),
        ("not a string", json!([42])),
        ("not a list", json!("utils")),
        ("missing", json!(["nope.py"])),
    ];
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let keep = |root: &InstallRoot| {
        snapshot(
            root.path(),
            &[
                ".updater/repo",
                ".updater/state.json",
                ".updater/index-cache.json",
                ".updater/lock",
                ".updater/logs",
            ],
        )
    };
    let mut n = 2;
    let mut check = |label: &str, repo: &UpdatesRepo| {
        repo.set_version("m1", &format!("1.0.{n}"));
        n += 1;
        repo.commit(label);
        let before = keep(&root);
        let (doc, out) = sync_json(&root, repo);
        assert_code(&out, 3);
        let row = framework_row(&doc);
        assert_eq!(row["decision"], "invalid", "{label}: {row}");
        assert!(row["error"].is_string(), "{label}: {row}");
        assert_eq!(module_entry(&doc, "m1")["result"], "skipped", "{label}");
        assert_eq!(keep(&root), before, "{label}: something installed changed");
        assert!(!outside.path().join("evil").exists());
    };
    for (label, list) in &cases {
        repo.write_framework("9.0.0");
        repo.set_root_metadata("framework", list.clone());
        check(label, &repo);
    }
    // A framework file that is a symlink leaving the repository.
    repo.set_root_metadata("framework", Value::Null);
    repo.symlink(
        "__init__.py",
        &outside.path().join("secret").display().to_string(),
    );
    check("symlink out", &repo);
    repo.symlink("__init__.py", "../../../../../../../../etc/passwd");
    check("relative symlink out", &repo);
    // A framework directory holding a symlink that leaves it.
    repo.remove("__init__.py");
    repo.write("__init__.py", "X = 1\n");
    repo.symlink("utils/leak", "/etc");
    check("symlink out of utils", &repo);
    // The error names the reason.
    let (doc, _) = sync_json(&root, &repo);
    let err = framework_row(&doc)["error"].as_str().unwrap().to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn check_reports_the_framework_and_changes_nothing() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    repo.write_framework("1.1.0");
    repo.commit("1.1.0");
    let before = snapshot(root.path(), &[".updater"]);
    let fw_before = snapshot(&root.state_dir().join("framework"), &[]);
    let mut cmd = updater(&root, &repo);
    cmd.args(["--json", "--exit-code", "check"]);
    let out = run(cmd);
    assert_code(&out, 100);
    let row = framework_row(&json_of(&out));
    assert_eq!(row["decision"], "update");
    assert_eq!(row["installed"], "1.0.0");
    assert_eq!(row["available"], "1.1.0");
    assert_eq!(row["result"], Value::Null);
    assert_eq!(snapshot(root.path(), &[".updater"]), before);
    assert_eq!(
        snapshot(&root.state_dir().join("framework"), &[]),
        fw_before
    );
}

#[test]
fn an_oversized_repository_index_is_refused_naming_the_file() {
    let repo = UpdatesRepo::new();
    repo.add_module("m1", "1.0.0");
    let mut text = to_json(&global_index(json!({})));
    text.push_str(&" ".repeat(5 << 20));
    repo.write("index.json", &text);
    repo.commit("padded index");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &[]);
    let all = all_output(&out);
    assert!(all.contains("index.json is larger than"), "{}", dump(&out));
    assert!(root.module_dir("m1").is_dir());
}

/// A failed install (injected where a full disk would fail it) is rolled back in the same run:
/// the old framework, the real files it moved aside and the installed schema_version are back,
/// no module runs, and the row says `rolled_back`.
#[test]
fn a_failed_framework_install_is_rolled_back_and_no_module_runs() {
    for point in [
        "framework_staged",
        "framework_before_last",
        "framework_switched",
    ] {
        let repo = framework_repo("2.0.0");
        let root = InstallRoot::new();
        root.write("__init__.py", "FRAMEWORK = \"1.0.0\"\n");
        root.write("utils/x.py", "VALUE = \"1.0.0\"\n");
        root.write_index(&json!({"metadata": {"schema_version": "1.0.0"}, "packages": {}}));
        let before = snapshot(root.path(), &[".updater"]);
        let mut cmd = updater(&root, &repo);
        cmd.env("UPDATER_FRAMEWORK_FAIL_AT", point)
            .args(["--json", "sync"]);
        let out = run(cmd);
        assert_code(&out, 3);
        let doc = json_of(&out);
        let row = framework_row(&doc);
        assert_eq!(row["result"], "rolled_back", "{point}: {row}");
        assert!(row["error"].as_str().unwrap().contains("injected"), "{row}");
        assert_eq!(module_entry(&doc, "m1")["result"], "skipped", "{point}");
        assert!(!root.path().join(".m1-saw").exists(), "{point}: m1 ran");
        let mut after = snapshot(root.path(), &[".updater"]);
        // updater's own wrapper is written at the end of every sync.
        after.remove(Path::new("updateManager.sh"));
        // The index records where the machine syncs from; its schema_version stays.
        after.remove(Path::new("index.json"));
        let mut before = before.clone();
        before.remove(Path::new("index.json"));
        assert_eq!(after, before, "{point}");
        assert_eq!(installed_schema(&root), "1.0.0", "{point}");
        assert!(!root.state_dir().join("framework/journal.json").exists());
        // The next run installs it.
        assert_code(&sync(&root, &repo, &[]), 0);
        assert!(all_at(root.path(), "2.0.0"), "{point}");
        assert_real_files(root.path());
    }
}

// ---------------------------------------------------------------------------------------------
// crash repair

fn crash_sync(root: &InstallRoot, repo: &UpdatesRepo, point: &str) -> Output {
    let mut cmd = updater(root, repo);
    cmd.env("UPDATER_CRASH_AT", point).arg("sync");
    run(cmd)
}

fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}

/// How the machine's framework looks before the update the kill tests interrupt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    /// Installed by updater (real files).
    Ours,
    /// Real files of the Python orchestrator.
    Python,
    /// The earlier updater's symlink layout.
    Links,
}

/// The framework files at `v` as the fixture writes them, (relative path, contents).
fn framework_files(v: &str) -> Vec<(&'static str, String)> {
    vec![
        ("__init__.py", format!("FRAMEWORK = \"{v}\"\n")),
        ("index.py", format!("VERSION = \"{v}\"\n")),
        ("utils/__init__.py", String::new()),
        ("utils/x.py", format!("VALUE = \"{v}\"\n")),
        ("setup_venv.sh", format!("echo venv {v}\n")),
        ("requirements.txt", format!("requests # {v}\n")),
    ]
}

/// The layout of the earlier design at `v`: `.updater/framework/gen-1/` holds the files,
/// `current → gen-1`, `previous → gen-0` (an older generation), and every root entry is a link
/// `<name> → .updater/framework/current/<name>`.
fn write_symlink_layout(root: &Path, v: &str) {
    let fw = root.join(".updater/framework");
    for (rel, text) in framework_files(v) {
        let p = fw.join("gen-1").join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    fs::create_dir_all(fw.join("gen-0/utils")).unwrap();
    fs::write(fw.join("gen-0/utils/x.py"), "VALUE = \"0.9.0\"\n").unwrap();
    std::os::unix::fs::symlink("gen-1", fw.join("current")).unwrap();
    std::os::unix::fs::symlink("gen-0", fw.join("previous")).unwrap();
    for e in ENTRIES {
        std::os::unix::fs::symlink(
            Path::new(".updater/framework/current").join(e),
            root.join(e),
        )
        .unwrap();
    }
    fs::write(
        root.join("index.json"),
        to_json(&json!({"metadata": {"schema_version": v}, "packages": {}})),
    )
    .unwrap();
}

/// Every framework entry at the root is a real file or directory, not a symlink.
fn assert_real_files(root: &Path) {
    for e in ENTRIES {
        let m = fs::symlink_metadata(root.join(e)).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert!(!m.file_type().is_symlink(), "{e} is a symlink");
    }
}

/// Nothing is left of the earlier symlink layout.
fn assert_no_symlink_layout(root: &Path) {
    let fw = root.join(".updater/framework");
    for name in ["current", "previous", "gen-0", "gen-1"] {
        assert!(!exists_no_follow(&fw.join(name)), "{name} is left");
    }
}

/// Kills the real binary at every framework crash point, for an update from a framework we
/// installed, for a migration from the Python orchestrator's real files and for a migration from
/// the earlier symlink layout; after each kill the root holds the complete old or the complete
/// new framework once repaired (never a mix), and the next run converges to the new one, as real
/// files.
#[test]
fn a_kill_at_every_framework_step_is_repaired_to_a_whole_framework() {
    for before in [Before::Ours, Before::Python, Before::Links] {
        for &point in updater::framework::POINTS {
            // Recovery is killed below.
            if point == "framework_recovering" {
                continue;
            }
            let label = format!("{point} ({before:?})");
            let repo = framework_repo("1.0.0");
            let root = InstallRoot::new();
            match before {
                Before::Python => {
                    for (rel, text) in framework_files("1.0.0") {
                        root.write(rel, &text);
                    }
                    root.write_index(
                        &json!({"metadata": {"schema_version": "1.0.0"}, "packages": {}}),
                    );
                }
                Before::Links => write_symlink_layout(root.path(), "1.0.0"),
                Before::Ours => assert_code(&sync(&root, &repo, &[]), 0),
            }
            assert!(all_at(root.path(), "1.0.0"), "{label}: fixture");
            repo.write_framework("2.0.0");
            repo.commit("2.0.0");
            let out = crash_sync(&root, &repo, point);
            assert!(killed(&out), "{label}: not killed\n{}", dump(&out));
            let journal = root.state_dir().join("framework/journal.json");
            let seen = versions_seen(root.path());
            if !journal.exists() {
                assert!(all_at(root.path(), "2.0.0"), "{label}: {seen:?}");
            }
            // Crash in the middle of the repair too, once.
            if point == "framework_before_last" || point == "framework_committing" {
                let out = crash_sync(&root, &repo, "framework_recovering");
                assert!(killed(&out), "{label}: recovery not killed\n{}", dump(&out));
            }
            // A check reports the pending repair and changes nothing.
            let mut cmd = updater(&root, &repo);
            cmd.arg("check");
            let before_check = snapshot(
                root.path(),
                &[
                    ".updater/repo",
                    ".updater/state.json",
                    ".updater/index-cache.json",
                    ".updater/lock",
                ],
            );
            let out = run(cmd);
            if journal.exists() {
                assert!(
                    all_output(&out).contains("Pending repair"),
                    "{label}\n{}",
                    dump(&out)
                );
            }
            assert_eq!(
                snapshot(
                    root.path(),
                    &[
                        ".updater/repo",
                        ".updater/state.json",
                        ".updater/index-cache.json",
                        ".updater/lock"
                    ]
                ),
                before_check,
                "{label}: check changed something"
            );
            // The repair alone (a writing command that repairs and does not sync) leaves the
            // whole old or the whole new framework.
            let mut cmd = updater(&root, &repo);
            cmd.args(["enable", "m1"]);
            let _ = run(cmd);
            assert!(!journal.exists(), "{label}: not repaired");
            let seen = versions_seen(root.path());
            assert!(
                all_at(root.path(), "1.0.0") || all_at(root.path(), "2.0.0"),
                "{label}: mixed framework after repair: {seen:?}"
            );
            // Rolled back: exactly the old entries, as they were (links stay links until the
            // retry); finished: real files.
            if all_at(root.path(), "2.0.0") {
                assert_real_files(root.path());
            }
            assert!(
                !fs::read_dir(root.state_dir().join("framework"))
                    .unwrap()
                    .any(|e| e
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("swap-")),
                "{label}: a swap directory is left"
            );
            let out = sync(&root, &repo, &[]);
            assert_code(&out, 0);
            assert!(
                all_at(root.path(), "2.0.0"),
                "{label}: {:?}",
                versions_seen(root.path())
            );
            assert_real_files(root.path());
            assert!(!journal.exists(), "{label}");
            assert_eq!(installed_schema(&root), "2.0.0", "{label}");
            let fw = root.state_dir().join("framework");
            match before {
                Before::Python => {
                    let kept = fs::read_dir(&fw)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .filter(|p| {
                            p.file_name()
                                .unwrap()
                                .to_string_lossy()
                                .starts_with("displaced-")
                        })
                        .any(|d| all_at(&d, "1.0.0"));
                    assert!(kept, "{label}: the real files were not kept whole");
                }
                Before::Links | Before::Ours => {
                    assert!(
                        all_at(&fw.join("backup"), "1.0.0"),
                        "{label}: backup {:?}",
                        versions_seen(&fw.join("backup"))
                    );
                    assert_no_symlink_layout(root.path());
                }
            }
        }
    }
}

/// The bug the real files fix: upstream's `utils/moduleUtils.py` finds the root config with
/// `os.path.join(os.path.dirname(__file__), "..", "index.json")`. Through a symlinked `utils/`
/// the kernel resolves that `..` in the link's target, under `.updater/`; with real files it is
/// the install root's index.json. Checked from a root named `updates` imported as a package, for
/// a fresh install and for a machine migrated from the earlier symlink layout.
#[test]
fn upstreams_root_config_path_from_utils_reads_the_install_roots_index() {
    const ROOTCFG: &str = "import json, os\n\ndef path():\n    return os.path.join(os.path.dirname(__file__), \"..\", \"index.json\")\n\ndef channel():\n    with open(path()) as f:\n        return json.load(f)[\"metadata\"][\"channel\"]\n";
    for migrate in [false, true] {
        let repo = framework_repo("1.0.0");
        repo.write("utils/rootcfg.py", ROOTCFG);
        repo.commit("root config reader");
        let root = InstallRoot::new();
        let install = root.path().join("updates");
        if migrate {
            write_symlink_layout(&install, "1.0.0");
            fs::write(
                install.join(".updater/framework/gen-1/utils/rootcfg.py"),
                ROOTCFG,
            )
            .unwrap();
            // The bug as it was: the path leads under .updater/, where no index.json is.
            let py = Command::new("python3")
                .env("PYTHONPATH", root.path())
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .args([
                    "-c",
                    "import updates.utils.rootcfg as r, os; print(os.path.realpath(r.path()))",
                ])
                .output()
                .unwrap();
            assert!(py.status.success(), "{}", dump(&py));
            assert!(
                stdout_of(&py).contains("/.updater/framework/"),
                "{}",
                dump(&py)
            );
        }
        let mut cmd = updater_env(&root);
        cmd.arg("--modules-path")
            .arg(&install)
            .arg("--repo-url")
            .arg(repo.url())
            .args(["--json", "sync"]);
        let out = run(cmd);
        assert_code(&out, 0);
        let row = framework_row(&json_of(&out));
        assert_eq!(row["result"], "applied", "migrate {migrate}: {row}");
        // The machine's own channel, only in the install root's index.json.
        let index_path = install.join("index.json");
        let mut index: Value =
            serde_json::from_str(&fs::read_to_string(&index_path).unwrap()).unwrap();
        index["metadata"]["channel"] = json!("machine-channel-marker");
        fs::write(&index_path, to_json(&index)).unwrap();
        let py = Command::new("python3")
            .env("PYTHONPATH", root.path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args([
                "-c",
                "import updates.utils.rootcfg as r, os; print(os.path.realpath(r.path())); print(r.channel())",
            ])
            .output()
            .unwrap();
        assert!(py.status.success(), "migrate {migrate}: {}", dump(&py));
        let text = stdout_of(&py);
        let mut lines = text.lines();
        assert_eq!(
            Path::new(lines.next().unwrap()),
            fs::canonicalize(&index_path).unwrap(),
            "migrate {migrate}"
        );
        assert_eq!(
            lines.next(),
            Some("machine-channel-marker"),
            "migrate {migrate}"
        );
    }
}

/// A machine with the earlier symlink layout at the repository's own version is migrated by the
/// next sync: real files at the root, the old generation's real files as the backup, `current`,
/// `previous` and the generations gone; a further sync changes nothing.
#[test]
fn the_earlier_symlink_layout_is_migrated_to_real_files_at_the_same_version() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    write_symlink_layout(root.path(), "1.0.0");
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    let row = framework_row(&doc);
    assert_eq!(
        (row["decision"].clone(), row["result"].clone()),
        (json!("update"), json!("applied")),
        "{row}"
    );
    assert!(
        all_output(&out).contains("reinstalling them as real files"),
        "{}",
        dump(&out)
    );
    assert_real_files(root.path());
    assert!(
        all_at(root.path(), "1.0.0"),
        "{:?}",
        versions_seen(root.path())
    );
    assert_no_symlink_layout(root.path());
    let backup = root.state_dir().join("framework/backup");
    assert!(all_at(&backup, "1.0.0"), "{:?}", versions_seen(&backup));
    for e in ENTRIES {
        assert!(
            !fs::symlink_metadata(backup.join(e))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{e}"
        );
    }
    // The Python-orchestrator path is not taken: nothing was foreign.
    assert!(!fs::read_dir(root.state_dir().join("framework"))
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("displaced-")));
    let keep = [
        ".updater/repo",
        ".updater/state.json",
        ".updater/index-cache.json",
        ".updater/lock",
        ".updater/logs",
    ];
    let before = snapshot(root.path(), &keep);
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(
        stdout_of(&out).contains("Orchestrator is up to date: 1.0.0"),
        "{}",
        dump(&out)
    );
    assert_eq!(snapshot(root.path(), &keep), before);
}

/// A framework entry the new version drops is removed from the root as part of the unit (kept
/// in the backup); a foreign file at a name the framework never had is left alone.
#[test]
fn an_entry_the_new_framework_drops_goes_to_the_backup_and_foreign_names_stay() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    root.write("local.py", "MINE = 1\n");
    assert_code(&sync(&root, &repo, &[]), 0);
    repo.write_framework("2.0.0");
    repo.remove("requirements.txt");
    repo.commit("2.0.0 without requirements.txt");
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(framework_row(&doc)["result"], "applied");
    assert!(!exists_no_follow(&root.path().join("requirements.txt")));
    assert_eq!(
        fs::read_to_string(root.state_dir().join("framework/backup/requirements.txt")).unwrap(),
        "requests # 1.0.0\n"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("local.py")).unwrap(),
        "MINE = 1\n"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("__init__.py")).unwrap(),
        "FRAMEWORK = \"2.0.0\"\n"
    );
}

// ---------------------------------------------------------------------------------------------
// post-sync hooks

fn hooks_dir(root: &InstallRoot) -> PathBuf {
    let d = root.state_dir().join("hooks/post-sync.d");
    fs::create_dir_all(&d).unwrap();
    d
}

fn write_hook(dir: &Path, name: &str, body: &str, mode: u32) {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn post_sync_hooks_run_in_name_order_with_the_summary_and_failures_are_not_fatal() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let dir = hooks_dir(&root);
    let log = root.path().join(".hooks.log");
    let rec = |tag: &str| {
        format!(
            "#!/bin/sh\necho \"{tag} exit=$UPDATER_EXIT_CODE applied=$UPDATER_APPLIED failed=$UPDATER_FAILED fw=$UPDATER_FRAMEWORK summary=$(test -f \"$UPDATER_SUMMARY\" && echo yes)\" >> {}\n",
            log.display()
        )
    };
    write_hook(&dir, "20-second", &rec("second"), 0o755);
    write_hook(&dir, "10-first", &rec("first"), 0o755);
    write_hook(
        &dir,
        "15-fails",
        "#!/bin/sh\necho failing on purpose\nexit 7\n",
        0o755,
    );
    write_hook(&dir, "30-not-executable", &rec("not-executable"), 0o644);
    write_hook(&dir, "20-second~", &rec("backup"), 0o755);
    write_hook(&dir, "20-second.bak", &rec("bak"), 0o755);
    write_hook(&dir, ".hidden", &rec("hidden"), 0o755);
    write_hook(
        &dir,
        "40-evil\nname",
        "#!/bin/sh\necho 'line\u{1b}[2J'\n",
        0o755,
    );
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "first exit=0 applied=m1 failed= fw=applied summary=yes\nsecond exit=0 applied=m1 failed= fw=applied summary=yes\n"
    );
    let text = stdout_of(&out);
    assert!(
        text.contains("post-sync hook 15-fails failed: exit status: 7"),
        "{text}"
    );
    assert!(text.contains("40-evil\\nname"), "{text}");
    for line in text.lines() {
        assert!(is_log_line(line), "not a log line: {line:?}");
    }
    assert!(!text.contains('\u{1b}'));
    // The summary document is the run's JSON.
    let summary: Value =
        serde_json::from_str(&fs::read_to_string(root.state_dir().join("last-sync.json")).unwrap())
            .unwrap();
    assert_eq!(summary["command"], "sync");
}

/// As root, a hook that other users can write (or a hooks directory they can write) would run
/// their code as root: it is refused, and the sync still succeeds.
#[test]
fn as_root_a_hook_other_users_can_write_is_refused() {
    if !running_as_root() {
        return;
    }
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let dir = hooks_dir(&root);
    let mark = root.path().join(".ran");
    write_hook(
        &dir,
        "10-writable",
        &format!("#!/bin/sh\ntouch {}\n", mark.display()),
        0o757,
    );
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(!mark.exists(), "a world-writable hook ran");
    assert!(stdout_of(&out).contains("refused"), "{}", dump(&out));
    // Safe file, unsafe directory.
    fs::set_permissions(dir.join("10-writable"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert!(!mark.exists(), "a hook in a world-writable directory ran");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_code(&sync(&root, &repo, &[]), 0);
    assert!(mark.exists(), "the safe hook did not run");
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_hook_that_hangs_is_killed_at_its_timeout_and_the_next_one_runs() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let dir = hooks_dir(&root);
    let pidfile = root.path().join(".sleeper.pid");
    write_hook(
        &dir,
        "10-hang",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\nwait\n",
            pidfile.display()
        ),
        0o755,
    );
    write_hook(
        &dir,
        "20-after",
        &format!(
            "#!/bin/sh\ntouch {}\n",
            root.path().join(".after").display()
        ),
        0o755,
    );
    let mut cmd = updater(&root, &repo);
    cmd.env("UPDATER_HOOK_TIMEOUT_SECS", "1").arg("sync");
    let out = run(cmd);
    assert_code(&out, 0);
    assert!(stdout_of(&out).contains("timed out"), "{}", dump(&out));
    assert!(root.path().join(".after").exists());
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The whole process group was killed: the background sleep dies (it may stay a zombie until
    // init reaps it). SIGKILL is delivered asynchronously, so wait for that event.
    let dead = || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ") || stat.contains(") X ")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dead() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        dead(),
        "the hook's background process {pid} survived its timeout"
    );
}

/// The two shipped HOMESERVER hooks, with a fake `systemctl` on PATH and the config path
/// overridden: lastUpdated is today's local date and other keys stay; gunicorn is restarted
/// last, without waiting.
#[test]
fn shipped_homeserver_hooks_set_last_updated_then_restart_gunicorn_without_blocking() {
    let repo = framework_repo("1.0.0");
    let root = InstallRoot::new();
    let dir = hooks_dir(&root);
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/hooks");
    for e in fs::read_dir(&dist).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("homeserver.json");
    fs::write(
        &config,
        to_json(&json!({"global": {"version": {"lastUpdated": "01-01-2000", "tag": "x"}, "keep": 1}, "tabs": [1, 2]})),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
    let bin = work.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let calls = work.path().join("systemctl.calls");
    write_hook(
        &bin,
        "systemctl",
        &format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$*\" \"$(grep -c 01-01-2000 {})\" >> {}\n",
            config.display(),
            calls.display()
        ),
        0o755,
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = updater(&root, &repo);
    cmd.env("PATH", &path)
        .env("HOMESERVER_CONFIG", &config)
        .arg("sync");
    let out = run(cmd);
    assert_code(&out, 0);
    let today = Command::new("date").arg("+%m-%d-%Y").output().unwrap();
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let doc: Value = serde_json::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(doc["global"]["version"]["lastUpdated"], today.as_str());
    assert_eq!(doc["global"]["version"]["tag"], "x");
    assert_eq!(doc["global"]["keep"], 1);
    assert_eq!(doc["tabs"], json!([1, 2]));
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // One restart, non-blocking, after the date was already written (no old date left).
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "--no-block restart gunicorn.service|0\n"
    );
    assert!(!fs::read_dir(work.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tmp-")));
}

/// A crash of the earlier symlink design left its own journal behind (then updater was
/// upgraded): the next run repairs it the way that design did (the old framework whole, the
/// files it moved aside back), and the sync after installs the new framework as real files.
#[test]
fn an_interrupted_install_of_the_earlier_symlink_design_is_repaired_then_migrated() {
    for python in [false, true] {
        let label = format!("python {python}");
        let repo = framework_repo("2.0.0");
        let root = InstallRoot::new();
        let fw = root.state_dir().join("framework");
        let journal = fw.join("journal.json");
        let staged = if python {
            // Moving the Python orchestrator's files aside: __init__.py was moved and linked.
            for (rel, text) in framework_files("1.0.0") {
                root.write(rel, &text);
            }
            root.write_index(&json!({"metadata": {"schema_version": "1.0.0"}, "packages": {}}));
            fs::create_dir_all(fw.join("displaced-1")).unwrap();
            fs::rename(
                root.path().join("__init__.py"),
                fw.join("displaced-1/__init__.py"),
            )
            .unwrap();
            std::os::unix::fs::symlink(
                ".updater/framework/current/__init__.py",
                root.path().join("__init__.py"),
            )
            .unwrap();
            json!({"step": "switching", "new_gen": "gen-1", "old_gen": null,
                   "displaced": "displaced-1", "entries": ENTRIES, "moved": ["__init__.py"],
                   "links_created": [], "version": "2.0.0"})
        } else {
            // Updating gen-1 (1.0.0) to gen-2: `current` was switched, the commit not written.
            write_symlink_layout(root.path(), "1.0.0");
            fs::remove_file(fw.join("current")).unwrap();
            std::os::unix::fs::symlink("gen-2", fw.join("current")).unwrap();
            json!({"step": "switching", "new_gen": "gen-2", "old_gen": "gen-1",
                   "displaced": "displaced-2", "entries": ENTRIES, "moved": [],
                   "links_created": [], "version": "2.0.0"})
        };
        let new_gen = fw.join(staged["new_gen"].as_str().unwrap());
        for (rel, text) in framework_files("2.0.0") {
            let p = new_gen.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        fs::write(&journal, to_json(&staged)).unwrap();
        let mut cmd = updater(&root, &repo);
        cmd.arg("check");
        let out = run(cmd);
        assert!(
            all_output(&out).contains("earlier symlink layout"),
            "{label}\n{}",
            dump(&out)
        );
        let mut cmd = updater(&root, &repo);
        cmd.args(["enable", "m1"]);
        let _ = run(cmd);
        assert!(!journal.exists(), "{label}: not repaired");
        assert!(
            all_at(root.path(), "1.0.0"),
            "{label}: {:?}",
            versions_seen(root.path())
        );
        assert!(!new_gen.exists(), "{label}");
        if python {
            assert_real_files(root.path());
        }
        assert_code(&sync(&root, &repo, &[]), 0);
        assert!(
            all_at(root.path(), "2.0.0"),
            "{label}: {:?}",
            versions_seen(root.path())
        );
        assert_real_files(root.path());
        assert_no_symlink_layout(root.path());
        if python {
            let kept = fs::read_dir(&fw)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("displaced-")
                })
                .any(|d| all_at(&d, "1.0.0"));
            assert!(kept, "{label}: the Python files were not kept whole");
        } else {
            assert!(all_at(&fw.join("backup"), "1.0.0"), "{label}");
        }
    }
}
