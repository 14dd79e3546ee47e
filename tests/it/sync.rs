//! Integration tests for `updater sync` and the commands around it (issue "Apply"; SPEC §1, §4,
//! §5, §7, §8): entry points (Python `main(args)` and shell `update`), health checks, timeouts,
//! `backup_paths`, rollback, dependencies and priorities, the `UPDATER_*` environment, the global
//! index, retries, `--allow-downgrade`, `--prune`, `rollback`, `status`, `enable`/`disable`.
//!
//! Every test builds a real git repository and a scratch install root (see `common`), runs the
//! real binary, and asserts on the install root, the index files, the exit code and the output.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers

/// `updater --modules-path R <args...>` (no repository needed).
fn local(root: &InstallRoot, args: &[&str]) -> Output {
    let mut cmd = updater_at(root);
    cmd.args(args);
    run(cmd)
}

fn result_of(doc: &Value, name: &str) -> Value {
    module_entry(doc, name)["result"].clone()
}

fn assert_result(doc: &Value, out: &Output, name: &str, expected: &str) {
    assert_eq!(
        result_of(doc, name),
        Value::String(expected.into()),
        "result of {name}\n{doc:#}\n{}",
        dump(out)
    );
}

fn assert_error_contains(doc: &Value, out: &Output, name: &str, needles: &[&str]) {
    let e = error_of(doc, name);
    for n in needles {
        assert!(
            e.contains(n),
            "error of {name} should contain {n:?}, is {e:?}\n{}",
            dump(out)
        );
    }
}

type Tree = BTreeMap<PathBuf, (u32, Vec<u8>)>;

fn tree(path: &Path) -> Tree {
    assert!(path.is_dir(), "{} is not a directory", path.display());
    snapshot(path, &[])
}

fn assert_same_tree(before: &Tree, after: &Tree, what: &str) {
    if before == after {
        return;
    }
    let keys: std::collections::BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    let mut diff = Vec::new();
    for k in keys {
        match (before.get(k), after.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => diff.push(format!(
                "changed {}: mode {:o} → {:o}, {:?} → {:?}",
                k.display(),
                a.0,
                b.0,
                String::from_utf8_lossy(&a.1),
                String::from_utf8_lossy(&b.1)
            )),
            (Some(_), None) => diff.push(format!("missing {}", k.display())),
            (None, Some(_)) => diff.push(format!("added {}", k.display())),
            (None, None) => {}
        }
    }
    panic!("{what} differs:\n{}", diff.join("\n"));
}

/// Writes `modules/<name>/index.json` with the given `metadata` and `configuration` (no entry
/// point unless one is written separately).
fn write_module_index(repo: &UpdatesRepo, name: &str, metadata: Value, configuration: Value) {
    let index = json!({ "metadata": metadata, "configuration": configuration });
    repo.write(&format!("modules/{name}/index.json"), &to_json(&index));
}

/// Replaces the `update` entry point of a repository module.
fn set_update(repo: &UpdatesRepo, name: &str, script: &str) {
    repo.write_exec(&format!("modules/{name}/update"), script);
}

/// A module whose entry point is `index.py` (no `update`), at `version`.
fn add_python_module(repo: &UpdatesRepo, name: &str, version: &str, index_py: &str) {
    write_module_index(repo, name, json!({ "schema_version": version }), json!({}));
    repo.remove(&format!("modules/{name}/update"));
    repo.write(&format!("modules/{name}/index.py"), index_py);
}

/// An `update` script that records its run in the runs log like the fixture's, then fails.
fn failing_update(name: &str, status: i32) -> String {
    format!(
        "#!/bin/sh\nprintf '%s %s->%s\\n' '{name}' \"${{UPDATER_FROM_VERSION:-}}\" \
         \"${{UPDATER_TO_VERSION:-}}\" >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n\
         echo 'something broke' >&2\n\
         echo 'scribbled by the failing entry' > ./scribble.txt\n\
         exit {status}\n"
    )
}

/// Installs `name` at `version` in the root, with an extra file so that the old copy is
/// recognisable, and returns its byte-for-byte snapshot.
fn install_old_copy(root: &InstallRoot, name: &str, version: &str) -> Tree {
    root.install_module(name, version);
    root.write(
        &format!("modules/{name}/old-only.txt"),
        &format!("the old copy of {name} at {version}\n"),
    );
    tree(&root.module_dir(name))
}

/// Asserts a module update was rolled back: exit 3, `rolled_back` with an error containing
/// `needles`, the old copy byte for byte and its old index entry.
fn assert_rolled_back(
    root: &InstallRoot,
    name: &str,
    old_version: &str,
    old_tree: &Tree,
    doc: &Value,
    out: &Output,
    needles: &[&str],
) {
    assert_code(out, 3);
    assert_result(doc, out, name, "rolled_back");
    assert_error_contains(doc, out, name, needles);
    assert_same_tree(
        old_tree,
        &tree(&root.module_dir(name)),
        &format!("installed copy of {name}"),
    );
    assert_eq!(
        packages(root).get(name).map(String::as_str),
        Some(old_version),
        "index entry of {name}: {:#}",
        root.read_index()
    );
}

/// Names of the entries of a directory (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

fn assert_no_transaction_leftovers(root: &InstallRoot) {
    let staging = root.state_dir().join("staging");
    assert!(
        entries(&staging).is_empty(),
        "staging should be empty, holds {:?}",
        entries(&staging)
    );
    assert!(
        !root.state_dir().join("journal.json").exists(),
        "journal.json should be gone after the run"
    );
}

/// Whether process `pid` is alive (a zombie counts as dead).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // pid (comm) STATE ...; comm may hold spaces: take what follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next().unwrap_or('?'))
                .unwrap_or('?');
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

fn is_sleep(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).starts_with("sleep"))
        .unwrap_or(false)
}

/// Kills the test's own leftover `sleep` process if an assertion failed while it lived.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if alive(pid) && is_sleep(pid) {
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

// --- timelines written by entry points ----------------------------------------------------------

const TIMELINE: &str = "timeline.log";

/// An `update` that appends `start <name> <ns>`, sleeps 0.3 s, then appends `end <name> <ns>` to
/// `<root>/timeline.log`, and records its run in the runs log.
fn timeline_script(name: &str) -> String {
    format!(
        "#!/bin/sh\nlog=\"$UPDATER_MODULES_PATH/{TIMELINE}\"\n\
         echo \"start $UPDATER_MODULE $(date +%s%N)\" >> \"$log\"\n\
         sleep 0.3\n\
         printf '%s %s->%s\\n' '{name}' \"${{UPDATER_FROM_VERSION:-}}\" \
         \"${{UPDATER_TO_VERSION:-}}\" >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n\
         echo \"end $UPDATER_MODULE $(date +%s%N)\" >> \"$log\"\n"
    )
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u128,
    end: u128,
}

fn overlaps(a: Span, b: Span) -> bool {
    a.start < b.end && b.start < a.end
}

/// Each module's (start, end) from `<root>/timeline.log`.
fn timeline(root: &InstallRoot) -> BTreeMap<String, Span> {
    let text = fs::read_to_string(root.path().join(TIMELINE)).expect("timeline.log written");
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "bad timeline line {line:?} in\n{text}");
        let t: u128 = parts[2]
            .parse()
            .unwrap_or_else(|_| panic!("bad time in {line:?}"));
        let slot = match parts[0] {
            "start" => &mut starts,
            "end" => &mut ends,
            other => panic!("bad timeline event {other:?}"),
        };
        assert!(
            slot.insert(parts[1].to_string(), t).is_none(),
            "{} ran twice:\n{text}",
            parts[1]
        );
    }
    assert_eq!(
        starts.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>(),
        "every start has an end:\n{text}"
    );
    starts
        .into_iter()
        .map(|(n, start)| {
            let end = ends[&n];
            (n, Span { start, end })
        })
        .collect()
}

/// A repository whose modules all run [`timeline_script`], each with the given priority and
/// dependencies.
fn timeline_repo(modules: &[(&str, i64, &[&str])]) -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    for (name, priority, deps) in modules {
        write_module_index(
            &repo,
            name,
            json!({ "schema_version": "1.0.0", "priority": priority, "depends_on": deps }),
            json!({}),
        );
        set_update(&repo, name, &timeline_script(name));
    }
    repo.commit("timeline modules");
    repo
}

// ---------------------------------------------------------------------------------------------
// Python `index.py` entry points (SPEC §5)

/// An update from an installed 1.0.0 to a repository 1.1.0 whose `index.py` has this `main`.
fn python_update_case(main_src: &str) -> (InstallRoot, Tree, Value, Output) {
    let repo = UpdatesRepo::new();
    let src = format!(
        "import os\n\n\ndef main(args):\n    with open('scribble.txt', 'w') as f:\n        \
         f.write('written by main')\n{main_src}"
    );
    add_python_module(&repo, "pymod", "1.1.0", &src);
    repo.commit("pymod 1.1.0");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "pymod", "1.0.0");
    let (doc, out) = sync_json(&root, &repo, &[]);
    (root, old, doc, out)
}

#[test]
fn python_main_returning_none_is_rolled_back() {
    let (root, old, doc, out) = python_update_case("    return None\n");
    assert_rolled_back(
        &root,
        "pymod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["main() returned None"],
    );
}

#[test]
fn python_main_returning_false_is_rolled_back() {
    let (root, old, doc, out) = python_update_case("    return False\n");
    assert_rolled_back(
        &root,
        "pymod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["main() returned False"],
    );
}

#[test]
fn python_main_returning_success_false_dict_is_rolled_back() {
    let (root, old, doc, out) =
        python_update_case("    return {'success': False, 'message': 'port 53 busy'}\n");
    assert_rolled_back(
        &root,
        "pymod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["main() returned", "success", "port 53 busy"],
    );
}

#[test]
fn python_main_raising_is_rolled_back_with_the_exception() {
    let (root, old, doc, out) = python_update_case("    raise RuntimeError('disk on fire')\n");
    assert_rolled_back(
        &root,
        "pymod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["RuntimeError", "disk on fire"],
    );
}

#[test]
fn python_main_returning_true_is_applied() {
    let (root, _old, doc, out) = python_update_case("    return True\n");
    assert_code(&out, 0);
    assert_result(&doc, &out, "pymod", "applied");
    assert_eq!(module_entry(&doc, "pymod")["error"], Value::Null);
    let dir = root.module_dir("pymod");
    assert!(dir.join("index.py").is_file(), "new copy installed");
    assert!(!dir.join("old-only.txt").exists(), "old copy replaced");
    assert_eq!(
        fs::read_to_string(dir.join("scribble.txt")).unwrap(),
        "written by main",
        "main ran in the installed module directory"
    );
    assert_eq!(packages(&root), packages_of(&[("pymod", "1.1.0")]));
}

// ---------------------------------------------------------------------------------------------
// shell entry points, timeouts, health checks, backup_paths

#[test]
fn failing_shell_update_is_rolled_back() {
    let repo = UpdatesRepo::new();
    repo.add_module("shmod", "1.1.0");
    set_update(&repo, "shmod", &failing_update("shmod", 3));
    repo.commit("shmod 1.1.0 fails");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "shmod", "1.0.0");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_rolled_back(
        &root,
        "shmod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["exit status 3"],
    );
    // It did run (and was then undone); then the old copy's entry restarted it (lifecycle).
    assert_eq!(root.runs(), ["shmod 1.0.0->1.1.0", "shmod 1.1.0->1.0.0"]);
}

#[test]
fn new_module_whose_entry_fails_is_not_installed() {
    let repo = UpdatesRepo::new();
    repo.add_module("fresh", "1.0.0");
    set_update(&repo, "fresh", &failing_update("fresh", 1));
    repo.commit("fresh fails");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_result(&doc, &out, "fresh", "rolled_back");
    assert_error_contains(&doc, &out, "fresh", &["exit status 1"]);
    assert_eq!(root.runs(), vec!["fresh ->1.0.0".to_string()]);
    assert!(
        !root.module_dir("fresh").exists(),
        "a failed new module must not be installed"
    );
    assert!(
        !packages(&root).contains_key("fresh"),
        "a failed new module must not be in packages: {:#}",
        root.read_index()
    );
}

#[test]
fn entry_timeout_kills_the_process_group_and_rolls_back() {
    let repo = UpdatesRepo::new();
    repo.add_module("slow", "1.1.0");
    repo.set_metadata("slow", "timeout_secs", json!(1));
    set_update(
        &repo,
        "slow",
        "#!/bin/sh\nsleep 60 &\necho $! > \"$UPDATER_MODULES_PATH/grandchild.pid\"\n\
         echo $$ > \"$UPDATER_MODULES_PATH/entry.pid\"\nexec sleep 60\n",
    );
    repo.commit("slow 1.1.0 hangs");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "slow", "1.0.0");

    let started = Instant::now();
    let (doc, out) = sync_json(&root, &repo, &[]);
    let took = started.elapsed();

    let pid_file = root.path().join("grandchild.pid");
    let pid: u32 = fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("the entry wrote no pid file: {e}\n{}", dump(&out)))
        .trim()
        .parse()
        .expect("a pid");
    let _guard = KillOnDrop(Some(pid));
    let entry_pid: Option<u32> = fs::read_to_string(root.path().join("entry.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let _entry_guard = KillOnDrop(entry_pid);

    assert!(
        took < Duration::from_secs(20),
        "a 1 s timeout must end the run in seconds, took {took:?}"
    );
    assert_rolled_back(&root, "slow", "1.0.0", &old, &doc, &out, &["timed out"]);

    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(pid),
        "the background grandchild {pid} of a timed-out entry must be killed"
    );
}

#[test]
fn failing_health_check_rolls_back() {
    let repo = UpdatesRepo::new();
    repo.add_module("hc", "1.1.0");
    repo.set_metadata("hc", "health", json!("health.sh"));
    repo.write_exec(
        "modules/hc/health.sh",
        "#!/bin/sh\necho 'service not responding' >&2\nexit 1\n",
    );
    repo.commit("hc 1.1.0 unhealthy");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "hc", "1.0.0");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_rolled_back(
        &root,
        "hc",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["health check", "exit status 1"],
    );
    // The entry point itself succeeded before the health check ran; then the old copy's entry
    // restarted it (lifecycle).
    assert_eq!(root.runs(), ["hc 1.0.0->1.1.0", "hc 1.1.0->1.0.0"]);
}

#[test]
fn passing_health_check_commits() {
    let repo = UpdatesRepo::new();
    repo.add_module("hc", "1.1.0");
    repo.set_metadata("hc", "health", json!("health.sh"));
    repo.write_exec(
        "modules/hc/health.sh",
        "#!/bin/sh\necho \"$UPDATER_MODULE $UPDATER_FROM_VERSION $UPDATER_TO_VERSION $(pwd -P)\" \
         > \"$UPDATER_MODULES_PATH/health.ran\"\n",
    );
    repo.commit("hc 1.1.0 healthy");
    let root = InstallRoot::new();
    install_old_copy(&root, "hc", "1.0.0");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_result(&doc, &out, "hc", "applied");
    let ran = fs::read_to_string(root.path().join("health.ran")).expect("health check ran");
    assert_eq!(
        ran.trim(),
        format!("hc 1.0.0 1.1.0 {}", canon(root.module_dir("hc")).display()),
        "the health check runs under the entry point's rules (environment, cwd)"
    );
    assert_eq!(
        root.runs(),
        vec!["hc 1.0.0->1.1.0".to_string()],
        "the entry ran first"
    );
    assert_eq!(packages(&root), packages_of(&[("hc", "1.1.0")]));
}

#[test]
fn backup_paths_are_restored_byte_for_byte_when_the_entry_fails() {
    let sys_dir = tempfile::Builder::new()
        .prefix("updater-test-sys.")
        .tempdir()
        .unwrap();
    let sys = sys_dir.path();
    let set =
        |p: &Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    fs::write(sys.join("conf.txt"), "listen 53\nupstream 9.9.9.9\n").unwrap();
    set(&sys.join("conf.txt"), 0o640);
    fs::create_dir_all(sys.join("tree/sub")).unwrap();
    fs::write(sys.join("tree/a.txt"), "alpha\n").unwrap();
    fs::write(sys.join("tree/sub/b.bin"), [0u8, 1, 2, 255, 254, b'\n']).unwrap();
    set(&sys.join("tree/sub/b.bin"), 0o600);
    set(&sys.join("tree"), 0o750);
    fs::write(sys.join("doomed.txt"), "delete me\n").unwrap();
    set(&sys.join("doomed.txt"), 0o604);
    let absent = sys.join("absent.txt");
    let before = snapshot(sys, &[]);

    let s = sys.display();
    let repo = UpdatesRepo::new();
    write_module_index(
        &repo,
        "sysmod",
        json!({ "schema_version": "1.1.0" }),
        json!({ "backup_paths": [
            format!("{s}/conf.txt"),
            format!("{s}/tree"),
            format!("{s}/doomed.txt"),
            format!("{s}/absent.txt"),
        ] }),
    );
    set_update(
        &repo,
        "sysmod",
        &format!(
            "#!/bin/sh\nset -e\n\
             printf 'clobbered\\n' > '{s}/conf.txt'\nchmod 0666 '{s}/conf.txt'\n\
             rm '{s}/tree/sub/b.bin'\necho new > '{s}/tree/new.txt'\n\
             echo changed > '{s}/tree/a.txt'\nchmod 0700 '{s}/tree'\n\
             rm '{s}/doomed.txt'\n\
             echo created > '{s}/absent.txt'\n\
             echo 'touched the system' > \"$UPDATER_MODULES_PATH/sysmod.ran\"\n\
             exit 1\n"
        ),
    );
    repo.commit("sysmod 1.1.0 breaks the system");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "sysmod", "1.0.0");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert!(
        root.path().join("sysmod.ran").exists(),
        "the entry point made its changes before failing\n{}",
        dump(&out)
    );
    assert_rolled_back(
        &root,
        "sysmod",
        "1.0.0",
        &old,
        &doc,
        &out,
        &["exit status 1"],
    );
    assert!(
        !absent.exists(),
        "a backup path that did not exist must be removed again"
    );
    assert_same_tree(&before, &snapshot(sys, &[]), "the backup_paths");
}

#[test]
fn entry_killed_by_a_signal_is_rolled_back() {
    let repo = UpdatesRepo::new();
    repo.add_module("crash", "1.1.0");
    set_update(
        &repo,
        "crash",
        "#!/bin/sh\necho 'about to crash'\nkill -KILL $$\n",
    );
    repo.commit("crash 1.1.0 crashes");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "crash", "1.0.0");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_rolled_back(&root, "crash", "1.0.0", &old, &doc, &out, &["signal 9"]);
}

#[test]
fn module_without_an_entry_point_is_installed() {
    let repo = UpdatesRepo::new();
    write_module_index(
        &repo,
        "filesonly",
        json!({ "schema_version": "1.0.0" }),
        json!({}),
    );
    repo.write("modules/filesonly/data/payload.txt", "just files\n");
    repo.commit("filesonly");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_result(&doc, &out, "filesonly", "applied");
    assert_same_tree(
        &tree(&repo.module_dir("filesonly")),
        &tree(&root.module_dir("filesonly")),
        "installed filesonly",
    );
    assert_eq!(packages(&root), packages_of(&[("filesonly", "1.0.0")]));
}

#[test]
fn entry_point_is_metadata_entry_then_index_py_then_update() {
    let record = |tag: &str| {
        format!(
            "import os\n\n\ndef main(args):\n    with open(os.path.join(os.environ['UPDATER_MODULES_PATH'], \
             '{RUNS_LOG}'), 'a') as f:\n        f.write('{tag}\\n')\n    return True\n"
        )
    };
    let shell =
        |tag: &str| format!("#!/bin/sh\necho '{tag}' >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n");
    let repo = UpdatesRepo::new();
    // declared entry beats index.py and update
    write_module_index(
        &repo,
        "declared",
        json!({ "schema_version": "1.0.0", "entry": "bin/run.sh" }),
        json!({}),
    );
    repo.write_exec("modules/declared/bin/run.sh", &shell("declared:entry"));
    repo.write("modules/declared/index.py", &record("declared:index.py"));
    repo.write_exec("modules/declared/update", &shell("declared:update"));
    // index.py beats update
    write_module_index(
        &repo,
        "pyfirst",
        json!({ "schema_version": "1.0.0" }),
        json!({}),
    );
    repo.write("modules/pyfirst/index.py", &record("pyfirst:index.py"));
    repo.write_exec("modules/pyfirst/update", &shell("pyfirst:update"));
    // update alone
    write_module_index(
        &repo,
        "shonly",
        json!({ "schema_version": "1.0.0" }),
        json!({}),
    );
    repo.write_exec("modules/shonly/update", &shell("shonly:update"));
    repo.commit("entry resolution");
    let root = InstallRoot::new();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let mut runs = root.runs();
    runs.sort();
    assert_eq!(
        runs,
        vec!["declared:entry", "pyfirst:index.py", "shonly:update"],
        "{}",
        dump(&out)
    );
}

#[test]
fn python_entry_imports_its_directory_as_a_package_with_the_environment() {
    let repo = UpdatesRepo::new();
    add_python_module(
        &repo,
        "pkg-mod",
        "1.2.0",
        "import os\n\nfrom . import helper\n\n\ndef main(args):\n    \
         out = os.path.join(os.environ['UPDATER_MODULES_PATH'], 'py-env.txt')\n    \
         with open(out, 'w') as f:\n        \
         f.write('\\n'.join([helper.VALUE, os.environ['UPDATER_MODULE'], \
         os.environ['UPDATER_FROM_VERSION'], os.environ['UPDATER_TO_VERSION'], \
         os.path.realpath(os.getcwd()), repr(args)]))\n    \
         return {'success': True, 'message': 'done'}\n",
    );
    repo.write(
        "modules/pkg-mod/helper.py",
        "VALUE = 'from the sibling helper'\n",
    );
    repo.commit("pkg-mod");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_result(&doc, &out, "pkg-mod", "applied");
    let text = fs::read_to_string(root.path().join("py-env.txt")).expect("main wrote py-env.txt");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "from the sibling helper",
            "pkg-mod",
            "",
            "1.2.0",
            canon(root.module_dir("pkg-mod")).to_str().unwrap(),
            // A sync calls main(None) (SPEC §10).
            "None",
        ]
    );
}

#[test]
fn entry_output_goes_to_the_run_log_prefixed_and_to_the_module_log_file() {
    let repo = UpdatesRepo::new();
    repo.add_module("chatty", "1.0.0");
    set_update(
        &repo,
        "chatty",
        "#!/bin/sh\necho 'hello on stdout'\necho 'warning on stderr' >&2\n",
    );
    repo.commit("chatty");
    let root = InstallRoot::new();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let msgs = log_messages(&stdout_of(&out));
    for line in ["hello on stdout", "warning on stderr"] {
        assert!(
            msgs.iter()
                .any(|m| m.contains("chatty") && m.ends_with(line)),
            "the run's log has {line:?} prefixed with the module name\n{}",
            dump(&out)
        );
    }
    let log = fs::read_to_string(root.state_dir().join("logs/chatty.log"))
        .expect("per-module log file .updater/logs/chatty.log");
    assert!(
        log.contains("hello on stdout") && log.contains("warning on stderr"),
        "module log file:\n{log}"
    );
}

#[test]
fn background_process_holding_the_output_does_not_hang_a_successful_entry() {
    let repo = UpdatesRepo::new();
    repo.add_module("daemon", "1.0.0");
    set_update(
        &repo,
        "daemon",
        "#!/bin/sh\nsleep 8 &\necho $! > \"$UPDATER_MODULES_PATH/bg.pid\"\necho started\n",
    );
    repo.commit("daemon");
    let root = InstallRoot::new();

    let started = Instant::now();
    let (doc, out) = sync_json(&root, &repo, &[]);
    let took = started.elapsed();
    let pid: Option<u32> = fs::read_to_string(root.path().join("bg.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let _guard = KillOnDrop(pid);
    assert_code(&out, 0);
    assert_result(&doc, &out, "daemon", "applied");
    assert!(
        took < Duration::from_secs(6),
        "the run must not wait for a background process, took {took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// dependencies, cycles, priorities, parallelism

#[test]
fn dependant_of_a_failing_module_is_skipped_and_independent_one_applies() {
    let repo = UpdatesRepo::new();
    repo.add_module("db-base", "1.0.0");
    set_update(&repo, "db-base", &failing_update("db-base", 1));
    repo.add_module("app", "1.0.0");
    repo.set_metadata("app", "depends_on", json!(["db-base"]));
    repo.add_module("solo", "1.0.0");
    repo.commit("db-base fails");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_result(&doc, &out, "db-base", "rolled_back");
    assert_result(&doc, &out, "app", "skipped");
    assert_error_contains(&doc, &out, "app", &["db-base"]);
    assert_result(&doc, &out, "solo", "applied");
    assert!(
        !root.runs().iter().any(|l| l.starts_with("app ")),
        "a skipped module's entry must not run: {:?}",
        root.runs()
    );
    assert!(!root.module_dir("app").exists());
    assert!(!root.module_dir("db-base").exists());
    assert!(root.module_dir("solo").is_dir());
    assert_eq!(packages(&root), packages_of(&[("solo", "1.0.0")]));
    assert_eq!(doc["summary"]["applied"], 1, "{doc:#}");
    assert_eq!(doc["summary"]["failed"], 1, "{doc:#}");
    assert_eq!(doc["summary"]["skipped"], 1, "{doc:#}");
}

#[test]
fn dependant_in_a_later_priority_of_a_failing_module_is_skipped() {
    let repo = UpdatesRepo::new();
    repo.add_module("core", "1.0.0");
    repo.set_metadata("core", "priority", json!(10));
    set_update(&repo, "core", &failing_update("core", 1));
    repo.add_module("addon", "1.0.0");
    repo.set_metadata("addon", "priority", json!(20));
    repo.set_metadata("addon", "depends_on", json!(["core"]));
    repo.add_module("other", "1.0.0");
    repo.set_metadata("other", "priority", json!(20));
    repo.commit("core fails");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_result(&doc, &out, "core", "rolled_back");
    assert_result(&doc, &out, "addon", "skipped");
    assert_error_contains(&doc, &out, "addon", &["core"]);
    assert_result(&doc, &out, "other", "applied");
    assert!(!root.module_dir("addon").exists());
    assert_eq!(packages(&root), packages_of(&[("other", "1.0.0")]));
}

#[test]
fn dependency_cycle_is_invalid_names_the_modules_and_installs_none_of_them() {
    let repo = UpdatesRepo::new();
    repo.add_module("cyc-alpha", "1.0.0");
    repo.set_metadata("cyc-alpha", "depends_on", json!(["cyc-beta"]));
    repo.add_module("cyc-beta", "1.0.0");
    repo.set_metadata("cyc-beta", "depends_on", json!(["cyc-alpha"]));
    repo.add_module("plain", "1.0.0");
    repo.commit("a cycle");
    let root = InstallRoot::new();

    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 1);
    for name in ["cyc-alpha", "cyc-beta"] {
        assert_eq!(decision(&doc, name), "invalid", "{doc:#}");
        assert_error_contains(&doc, &out, name, &["cycle", "cyc-alpha", "cyc-beta"]);
    }
    assert_eq!(decision(&doc, "plain"), "new");

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    for name in ["cyc-alpha", "cyc-beta"] {
        assert_eq!(decision(&doc, name), "invalid", "{doc:#}");
        assert_eq!(result_of(&doc, name), Value::Null, "{doc:#}");
        assert!(
            !root.module_dir(name).exists(),
            "{name} must not be installed"
        );
    }
    assert_result(&doc, &out, "plain", "applied");
    assert_eq!(root.runs(), vec!["plain ->1.0.0".to_string()]);
    assert_eq!(packages(&root), packages_of(&[("plain", "1.0.0")]));
    assert!(
        all_output(&out).contains("cyc-alpha") && all_output(&out).contains("cycle"),
        "the run's log names the cycle\n{}",
        dump(&out)
    );
}

#[test]
fn lower_priority_finishes_before_higher_starts_and_same_priority_runs_in_parallel() {
    // Name order is the reverse of priority order, so the order cannot come from the listing.
    let repo = timeline_repo(&[
        ("a-late", 20, &[]),
        ("b-late", 20, &[]),
        ("x-early", 10, &[]),
        ("y-early", 10, &[]),
        ("z-early", 10, &[]),
    ]);
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &["--jobs", "4"]);
    assert_code(&out, 0);
    let t = timeline(&root);
    assert_eq!(t.len(), 5, "{t:?}");
    let early: Vec<Span> = ["x-early", "y-early", "z-early"].map(|n| t[n]).to_vec();
    let late: Vec<Span> = ["a-late", "b-late"].map(|n| t[n]).to_vec();
    let last_early_end = early.iter().map(|s| s.end).max().unwrap();
    let first_late_start = late.iter().map(|s| s.start).min().unwrap();
    assert!(
        last_early_end <= first_late_start,
        "every priority-10 module must end before any priority-20 one starts: {t:?}"
    );
    let overlapping = early
        .iter()
        .enumerate()
        .any(|(i, a)| early[i + 1..].iter().any(|b| overlaps(*a, *b)));
    assert!(
        overlapping,
        "with --jobs 4, same-priority modules must run in parallel: {t:?}"
    );
}

#[test]
fn jobs_1_runs_one_module_at_a_time() {
    let repo = timeline_repo(&[
        ("m-a", 10, &[]),
        ("m-b", 10, &[]),
        ("m-c", 10, &[]),
        ("m-d", 20, &[]),
    ]);
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &["--jobs", "1"]);
    assert_code(&out, 0);
    let t = timeline(&root);
    assert_eq!(t.len(), 4, "{t:?}");
    let spans: Vec<(&String, &Span)> = t.iter().collect();
    for (i, (na, a)) in spans.iter().enumerate() {
        for (nb, b) in &spans[i + 1..] {
            assert!(
                !overlaps(**a, **b),
                "with --jobs 1, {na} and {nb} must not overlap: {t:?}"
            );
        }
    }
}

#[test]
fn dependant_starts_only_after_its_dependency_ends() {
    // "a-child" sorts first by name; "b-other" shows that parallel slots were free.
    let repo = timeline_repo(&[
        ("a-child", 10, &["c-parent"]),
        ("b-other", 10, &[]),
        ("c-parent", 10, &[]),
    ]);
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &["--jobs", "4"]);
    assert_code(&out, 0);
    let t = timeline(&root);
    assert!(
        t["a-child"].start >= t["c-parent"].end,
        "a-child depends on c-parent and must start after it ends: {t:?}"
    );
    assert!(
        overlaps(t["b-other"], t["c-parent"]),
        "independent modules run in parallel with --jobs 4: {t:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// the UPDATER_* environment

/// An `update` that dumps its environment and working directory into `<root>/env-<name>.txt`.
fn env_script() -> String {
    "#!/bin/sh\nout=\"$UPDATER_MODULES_PATH/env-$UPDATER_MODULE.txt\"\n\
     {\n\
     echo \"MODULE=$UPDATER_MODULE\"\n\
     echo \"FROM=$UPDATER_FROM_VERSION\"\n\
     echo \"TO=$UPDATER_TO_VERSION\"\n\
     echo \"MODULE_DIR=$UPDATER_MODULE_DIR\"\n\
     echo \"BACKUP_DIR=$UPDATER_BACKUP_DIR\"\n\
     echo \"MODULES_PATH=$UPDATER_MODULES_PATH\"\n\
     echo \"CWD=$(pwd -P)\"\n\
     echo \"SET_FROM=${UPDATER_FROM_VERSION+yes}\"\n\
     echo \"SET_BACKUP=${UPDATER_BACKUP_DIR+yes}\"\n\
     echo \"STDIN=$(readlink /proc/$$/fd/0)\"\n\
     if [ -n \"$UPDATER_BACKUP_DIR\" ]; then\n\
       echo \"BACKUP_FILES=$(cd \"$UPDATER_BACKUP_DIR\" && ls | tr '\\n' ' ')\"\n\
       echo \"BACKUP_OLD=$(cat \"$UPDATER_BACKUP_DIR/old-only.txt\")\"\n\
     fi\n\
     } > \"$out\"\n"
        .to_string()
}

fn read_env_dump(root: &InstallRoot, name: &str) -> BTreeMap<String, String> {
    let path = root.path().join(format!("env-{name}.txt"));
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("entry wrote no {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn canon(p: impl AsRef<Path>) -> PathBuf {
    fs::canonicalize(p.as_ref())
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.as_ref().display()))
}

#[test]
fn new_module_entry_gets_the_updater_environment_and_runs_in_its_directory() {
    let repo = UpdatesRepo::new();
    repo.add_module("envnew", "2.3.4");
    set_update(&repo, "envnew", &env_script());
    repo.commit("envnew");
    let root = InstallRoot::new();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let env = read_env_dump(&root, "envnew");
    assert_eq!(env["MODULE"], "envnew");
    assert_eq!(env["FROM"], "", "UPDATER_FROM_VERSION is empty when new");
    assert_eq!(
        env["SET_FROM"], "yes",
        "UPDATER_FROM_VERSION is set (empty)"
    );
    assert_eq!(env["TO"], "2.3.4");
    assert_eq!(
        env["BACKUP_DIR"], "",
        "UPDATER_BACKUP_DIR is empty when new"
    );
    assert_eq!(
        env["SET_BACKUP"], "yes",
        "UPDATER_BACKUP_DIR is set (empty)"
    );
    assert_eq!(canon(&env["MODULES_PATH"]), canon(root.path()));
    assert_eq!(canon(&env["MODULE_DIR"]), canon(root.module_dir("envnew")));
    assert_eq!(canon(&env["CWD"]), canon(root.module_dir("envnew")));
    assert_eq!(env["STDIN"], "/dev/null", "stdin is /dev/null");
}

#[test]
fn updated_module_entry_gets_from_version_and_a_backup_dir_holding_the_old_copy() {
    let repo = UpdatesRepo::new();
    repo.add_module("envupd", "1.1.0");
    set_update(&repo, "envupd", &env_script());
    repo.write("modules/envupd/new-only.txt", "the new copy\n");
    repo.commit("envupd 1.1.0");
    let root = InstallRoot::new();
    install_old_copy(&root, "envupd", "1.0.0");

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let env = read_env_dump(&root, "envupd");
    assert_eq!(env["MODULE"], "envupd");
    assert_eq!(env["FROM"], "1.0.0");
    assert_eq!(env["TO"], "1.1.0");
    assert_eq!(canon(&env["MODULES_PATH"]), canon(root.path()));
    assert_eq!(canon(&env["MODULE_DIR"]), canon(root.module_dir("envupd")));
    assert_eq!(canon(&env["CWD"]), canon(root.module_dir("envupd")));
    assert!(
        !env["BACKUP_DIR"].is_empty(),
        "UPDATER_BACKUP_DIR is set on update: {env:?}"
    );
    assert_ne!(env["BACKUP_DIR"], env["MODULE_DIR"]);
    let files: Vec<&str> = env["BACKUP_FILES"].split_whitespace().collect();
    assert!(
        files.contains(&"old-only.txt") && files.contains(&"index.json"),
        "UPDATER_BACKUP_DIR holds the old copy's files: {files:?}"
    );
    assert!(
        !files.contains(&"new-only.txt"),
        "UPDATER_BACKUP_DIR must not be the new copy: {files:?}"
    );
    assert_eq!(env["BACKUP_OLD"], "the old copy of envupd at 1.0.0");
}

// ---------------------------------------------------------------------------------------------
// the global index, retries, second runs

#[test]
fn global_index_is_exact_after_a_mixed_run() {
    let repo = UpdatesRepo::new();
    repo.add_module("upd-ok", "1.1.0");
    repo.add_module("new-ok", "2.0.0");
    repo.add_module("upd-fail", "1.2.0");
    set_update(&repo, "upd-fail", &failing_update("upd-fail", 1));
    repo.add_module("new-fail", "1.0.0");
    set_update(&repo, "new-fail", &failing_update("new-fail", 1));
    repo.add_module("same", "3.0.0");
    repo.commit("mixed");

    let root = InstallRoot::new();
    root.install_module("upd-ok", "1.0.0");
    root.install_module("upd-fail", "1.0.0");
    root.install_module("same", "3.0.0");
    root.write_index(&json!({
        "zz-first": { "note": "unknown top-level key before metadata" },
        "metadata": {
            "schema_version": "1.0.0",
            "site-note": "unknown metadata key",
            "channel": "stable"
        },
        "packages": {
            "upd-fail": "1.0.0",
            "ghost": "0.1.0",
            "same": "3.0.0",
            "upd-ok": "1.0.0"
        },
        "aa-trailer": [1, 2, 3]
    }));

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_result(&doc, &out, "upd-ok", "applied");
    assert_result(&doc, &out, "new-ok", "applied");
    assert_result(&doc, &out, "upd-fail", "rolled_back");
    assert_result(&doc, &out, "new-fail", "rolled_back");
    assert_eq!(result_of(&doc, "same"), Value::Null);

    let index = root.read_index();
    let keys: Vec<&str> = index
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec!["zz-first", "metadata", "packages", "aa-trailer"],
        "top-level keys keep their order: {index:#}"
    );
    assert_eq!(
        index["zz-first"],
        json!({ "note": "unknown top-level key before metadata" })
    );
    assert_eq!(index["aa-trailer"], json!([1, 2, 3]));
    let meta = index["metadata"].as_object().unwrap();
    let meta_keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(
        &meta_keys[..3],
        &["schema_version", "site-note", "channel"],
        "metadata keys keep their order: {index:#}"
    );
    assert_eq!(meta["site-note"], "unknown metadata key");
    assert_eq!(
        packages(&root),
        packages_of(&[
            ("upd-ok", "1.1.0"),
            ("new-ok", "2.0.0"),
            ("upd-fail", "1.0.0"),
            ("same", "3.0.0"),
        ]),
        "packages records exactly what is installed: {index:#}"
    );
    // Names already recorded keep their position.
    let pkg_keys: Vec<&str> = index["packages"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(&pkg_keys[..3], &["upd-fail", "same", "upd-ok"], "{index:#}");
}

#[test]
fn failed_module_is_retried_next_run_and_applied_modules_are_not_rerun() {
    let repo = UpdatesRepo::new();
    repo.add_module("flaky", "1.0.0");
    set_update(
        &repo,
        "flaky",
        &format!(
            "#!/bin/sh\nprintf 'flaky %s->%s\\n' \"$UPDATER_FROM_VERSION\" \"$UPDATER_TO_VERSION\" \
             >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n\
             marker=\"$UPDATER_MODULES_PATH/flaky.marker\"\n\
             if [ -f \"$marker\" ]; then exit 0; fi\n\
             touch \"$marker\"\nexit 1\n"
        ),
    );
    repo.add_module("steady", "1.0.0");
    repo.commit("flaky and steady");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_result(&doc, &out, "flaky", "rolled_back");
    assert_result(&doc, &out, "steady", "applied");
    assert!(!root.module_dir("flaky").exists());

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "flaky"), "new", "{doc:#}");
    assert_result(&doc, &out, "flaky", "applied");
    assert_eq!(decision(&doc, "steady"), "up_to_date", "{doc:#}");
    assert_eq!(result_of(&doc, "steady"), Value::Null);
    // flaky ran twice (failed, then retried), steady only once: it was not re-run.
    assert_runs_retry(&root.runs());
    assert_eq!(
        packages(&root),
        packages_of(&[("flaky", "1.0.0"), ("steady", "1.0.0")])
    );
}

/// The runs log of the retry test: first run flaky and steady (in either order, they run in
/// parallel), second run flaky only.
fn assert_runs_retry(runs: &[String]) {
    assert_eq!(
        runs.len(),
        3,
        "flaky runs twice, steady once (not re-run): {runs:?}"
    );
    let mut first = runs[..2].to_vec();
    first.sort();
    assert_eq!(first, vec!["flaky ->1.0.0", "steady ->1.0.0"], "{runs:?}");
    assert_eq!(runs[2], "flaky ->1.0.0", "the retry: {runs:?}");
}

#[test]
fn second_run_after_a_full_sync_has_no_updates_and_exits_0() {
    let repo = UpdatesRepo::with_modules(3);
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(root.runs().len(), 3);
    let installed = root.snapshot();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let msgs = log_messages(&stdout_of(&out));
    assert!(
        msgs.iter().any(|m| m == "No updates available"),
        "second run says `No updates available`\n{}",
        dump(&out)
    );
    assert_eq!(root.runs().len(), 3, "nothing re-ran: {:?}", root.runs());
    assert_same_tree(&installed, &root.snapshot(), "the install root");
}

// ---------------------------------------------------------------------------------------------
// --allow-downgrade, --prune

fn downgrade_case() -> (UpdatesRepo, InstallRoot, Tree) {
    let repo = UpdatesRepo::new();
    repo.add_module("dg", "1.5.0");
    repo.commit("dg 1.5.0");
    let root = InstallRoot::new();
    let old = install_old_copy(&root, "dg", "2.0.0");
    (repo, root, old)
}

#[test]
fn older_repository_version_is_local_ahead_and_left_alone_without_allow_downgrade() {
    let (repo, root, old) = downgrade_case();
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "dg"), "local_ahead", "{doc:#}");
    assert_eq!(result_of(&doc, "dg"), Value::Null);
    assert_same_tree(&old, &tree(&root.module_dir("dg")), "installed dg");
    assert_eq!(packages(&root), packages_of(&[("dg", "2.0.0")]));
    assert!(root.runs().is_empty(), "{:?}", root.runs());
}

#[test]
fn allow_downgrade_installs_the_older_repository_version() {
    let (repo, root, _old) = downgrade_case();
    let (doc, out) = sync_json(&root, &repo, &["--allow-downgrade"]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "dg"), "local_ahead", "{doc:#}");
    assert_result(&doc, &out, "dg", "applied");
    assert_eq!(root.runs(), vec!["dg 2.0.0->1.5.0".to_string()]);
    assert!(!root.module_dir("dg").join("old-only.txt").exists());
    assert_eq!(
        root.read_module_index("dg")["metadata"]["schema_version"],
        "1.5.0"
    );
    assert_eq!(packages(&root), packages_of(&[("dg", "1.5.0")]));
}

fn prune_case() -> (UpdatesRepo, InstallRoot, Tree) {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    let gone = install_old_copy(&root, "gone", "1.0.0");
    (repo, root, gone)
}

#[test]
fn orphaned_module_is_left_alone_without_prune() {
    let (repo, root, gone) = prune_case();
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "gone"), "orphaned", "{doc:#}");
    assert_same_tree(&gone, &tree(&root.module_dir("gone")), "orphaned module");
    assert_eq!(
        packages(&root),
        packages_of(&[("m00", "1.0.0"), ("gone", "1.0.0")])
    );
    assert!(!root.state_dir().join("backup/gone").exists());
}

#[test]
fn prune_removes_an_orphaned_module_keeping_it_as_backup() {
    let (repo, root, gone) = prune_case();
    let (doc, out) = sync_json(&root, &repo, &["--prune"]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "gone"), "orphaned", "{doc:#}");
    assert!(!root.module_dir("gone").exists(), "pruned module removed");
    assert_same_tree(
        &gone,
        &tree(&root.state_dir().join("backup/gone")),
        "the kept copy of the pruned module",
    );
    assert_eq!(packages(&root), packages_of(&[("m00", "1.0.0")]));
    assert!(root.module_dir("m00").is_dir(), "other modules stay");
}

#[test]
fn rollback_after_prune_puts_the_module_back() {
    let (repo, root, gone) = prune_case();
    assert_code(&sync(&root, &repo, &["--prune"]), 0);
    assert!(!root.module_dir("gone").exists());

    let out = local(&root, &["rollback", "gone"]);
    assert_code(&out, 0);
    assert_same_tree(&gone, &tree(&root.module_dir("gone")), "restored module");
    assert_eq!(
        packages(&root),
        packages_of(&[("m00", "1.0.0"), ("gone", "1.0.0")])
    );
}

// ---------------------------------------------------------------------------------------------
// atomic swap, backups, rollback

/// A module `rb` installed by a first sync at 1.0.0, then updated upstream to 1.1.0 (a changed,
/// an added and a removed file) and synced again. Returns the 1.0.0 tree.
fn updated_once() -> (UpdatesRepo, InstallRoot, Tree) {
    let repo = UpdatesRepo::new();
    repo.add_module("rb", "1.0.0");
    repo.write("modules/rb/conf/settings.ini", "level=1\n");
    repo.write("modules/rb/removed-later.txt", "only in 1.0.0\n");
    repo.commit("rb 1.0.0");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let v1 = tree(&root.module_dir("rb"));

    repo.set_version("rb", "1.1.0");
    repo.write("modules/rb/conf/settings.ini", "level=2\n");
    repo.write("modules/rb/added.txt", "new in 1.1.0\n");
    repo.remove("modules/rb/removed-later.txt");
    repo.commit("rb 1.1.0");
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    (repo, root, v1)
}

#[test]
fn update_swaps_in_the_new_copy_and_keeps_the_previous_one_as_backup() {
    let (repo, root, v1) = updated_once();
    let dir = root.module_dir("rb");
    assert_eq!(
        root.read_module_index("rb")["metadata"]["schema_version"],
        "1.1.0"
    );
    assert_eq!(
        fs::read_to_string(dir.join("conf/settings.ini")).unwrap(),
        "level=2\n"
    );
    assert!(dir.join("added.txt").is_file());
    assert!(!dir.join("removed-later.txt").exists());
    // The installed copy is exactly the repository's.
    assert_same_tree(
        &tree(&repo.module_dir("rb")),
        &tree(&dir),
        "installed rb 1.1.0",
    );
    assert_same_tree(
        &v1,
        &tree(&root.state_dir().join("backup/rb")),
        "the kept previous copy",
    );
    assert_eq!(packages(&root), packages_of(&[("rb", "1.1.0")]));
}

#[test]
fn rollback_puts_back_the_previous_copy_and_its_index_entry() {
    let (_repo, root, v1) = updated_once();
    let out = local(&root, &["rollback", "rb"]);
    assert_code(&out, 0);
    assert_same_tree(&v1, &tree(&root.module_dir("rb")), "rolled-back rb");
    assert_eq!(packages(&root), packages_of(&[("rb", "1.0.0")]));
}

#[test]
fn rollback_without_a_kept_copy_exits_1_with_a_clear_message() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let before = root.snapshot();

    let out = local(&root, &["rollback", "m00"]);
    assert_code(&out, 1);
    let text = all_output(&out);
    assert!(
        text.contains("m00") && (text.contains("previous copy") || text.contains("backup")),
        "the message names the module and says there is no previous copy\n{}",
        dump(&out)
    );
    assert!(!text.contains("panicked"), "{}", dump(&out));
    assert_same_tree(&before, &root.snapshot(), "the install root");
}

#[test]
fn successful_sync_leaves_no_staging_or_journal() {
    let (_repo, root, _v1) = updated_once();
    assert_no_transaction_leftovers(&root);
}

#[test]
fn failed_sync_leaves_no_staging_or_journal() {
    let repo = UpdatesRepo::new();
    repo.add_module("bad", "1.1.0");
    set_update(&repo, "bad", &failing_update("bad", 1));
    repo.add_module("badnew", "1.0.0");
    set_update(&repo, "badnew", &failing_update("badnew", 1));
    repo.commit("failing");
    let root = InstallRoot::new();
    install_old_copy(&root, "bad", "1.0.0");
    assert_code(&sync(&root, &repo, &[]), 3);
    assert_no_transaction_leftovers(&root);
}

// ---------------------------------------------------------------------------------------------
// status, enable, disable

#[test]
fn status_lists_installed_modules_with_version_enabled_last_result_and_time() {
    let repo = UpdatesRepo::new();
    repo.add_module("good", "1.0.0");
    repo.add_module("bad", "1.1.0");
    set_update(&repo, "bad", &failing_update("bad", 1));
    repo.commit("good and bad");
    let root = InstallRoot::new();
    install_old_copy(&root, "bad", "1.0.0");
    assert_code(&sync(&root, &repo, &[]), 3);
    assert_code(&local(&root, &["disable", "bad"]), 0);

    let out = local(&root, &["status", "--json"]);
    assert_code(&out, 0);
    let doc = json_of(&out);
    let good = module_entry(&doc, "good");
    assert_eq!(good["version"], "1.0.0", "{doc:#}");
    assert_eq!(good["enabled"], true, "{doc:#}");
    assert_eq!(good["last_result"], "applied", "{doc:#}");
    let bad = module_entry(&doc, "bad");
    assert_eq!(bad["version"], "1.0.0", "{doc:#}");
    assert_eq!(bad["enabled"], false, "{doc:#}");
    assert_eq!(bad["last_result"], "rolled_back", "{doc:#}");
    for m in [good, bad] {
        let t = m["last_time"]
            .as_str()
            .unwrap_or_else(|| panic!("no last_time: {doc:#}"));
        assert!(
            t.len() >= 19 && t.starts_with("20") && t.as_bytes()[10] == b'T',
            "last_time is an ISO 8601 time: {t:?}"
        );
    }
    assert_eq!(doc["modules"].as_array().unwrap().len(), 2, "{doc:#}");

    let out = local(&root, &["status"]);
    assert_code(&out, 0);
    let text = stdout_of(&out);
    let row = |name: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no status row for {name}\n{text}"))
            .to_string()
    };
    let good_row = row("good");
    let bad_row = row("bad");
    for (r, enabled, result) in [
        (&good_row, "true", "applied"),
        (&bad_row, "false", "rolled_back"),
    ] {
        let cells: Vec<&str> = r.split_whitespace().collect();
        assert!(cells.contains(&"1.0.0"), "version in {r:?}");
        assert!(cells.contains(&enabled), "enabled in {r:?}");
        assert!(cells.contains(&result), "last result in {r:?}");
        assert!(
            cells.iter().any(|c| c.starts_with("20") && c.contains('T')),
            "time in {r:?}"
        );
    }
}

/// A module `hold` installed at 1.0.0 by a sync, with keys the updater does not know.
fn installed_hold() -> (UpdatesRepo, InstallRoot) {
    let repo = UpdatesRepo::new();
    repo.add_module("hold", "1.0.0");
    repo.write(
        "modules/hold/index.json",
        &to_json(&json!({
            "metadata": { "schema_version": "1.0.0", "custom": "keep me" },
            "configuration": { "port": 8080 },
            "extra": [1, 2]
        })),
    );
    repo.commit("hold 1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    (repo, root)
}

#[test]
fn disable_holds_a_module_at_its_installed_version() {
    let (repo, root) = installed_hold();
    let out = local(&root, &["disable", "hold"]);
    assert_code(&out, 0);
    let idx = root.read_module_index("hold");
    assert_eq!(
        idx,
        json!({
            "metadata": { "schema_version": "1.0.0", "custom": "keep me", "enabled": false },
            "configuration": { "port": 8080 },
            "extra": [1, 2]
        })
    );
    let keys: Vec<&str> = idx
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["metadata", "configuration", "extra"]);
    let meta_keys: Vec<&str> = idx["metadata"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(&meta_keys[..2], &["schema_version", "custom"]);

    repo.set_version("hold", "2.0.0");
    repo.commit("hold 2.0.0");
    let (doc, out) = check_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "hold"), "held", "{doc:#}");

    let held = tree(&root.module_dir("hold"));
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "hold"), "held", "{doc:#}");
    assert_eq!(result_of(&doc, "hold"), Value::Null);
    assert_same_tree(&held, &tree(&root.module_dir("hold")), "held module");
    assert_eq!(packages(&root), packages_of(&[("hold", "1.0.0")]));
    assert_eq!(root.runs(), vec!["hold ->1.0.0".to_string()]);
}

#[test]
fn enable_releases_a_hold_and_the_next_sync_updates() {
    let (repo, root) = installed_hold();
    assert_code(&local(&root, &["disable", "hold"]), 0);
    repo.set_version("hold", "2.0.0");
    repo.commit("hold 2.0.0");
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(packages(&root), packages_of(&[("hold", "1.0.0")]));

    let out = local(&root, &["enable", "hold"]);
    assert_code(&out, 0);
    let idx = root.read_module_index("hold");
    assert_eq!(idx["metadata"]["enabled"], true, "{idx:#}");
    assert_eq!(idx["metadata"]["custom"], "keep me");
    assert_eq!(idx["configuration"], json!({ "port": 8080 }));

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "hold"), "update", "{doc:#}");
    assert_result(&doc, &out, "hold", "applied");
    assert_eq!(packages(&root), packages_of(&[("hold", "2.0.0")]));
    assert_eq!(
        root.runs(),
        vec!["hold ->1.0.0".to_string(), "hold 1.0.0->2.0.0".to_string()]
    );
}

#[test]
fn enable_or_disable_of_a_module_that_is_not_installed_exits_1_with_a_clear_message() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let before = root.snapshot();
    for cmd in ["enable", "disable"] {
        let out = local(&root, &[cmd, "ghost"]);
        assert_code(&out, 1);
        let text = all_output(&out);
        assert!(
            text.contains("ghost") && text.contains("not installed"),
            "`{cmd} ghost` says ghost is not installed\n{}",
            dump(&out)
        );
        assert!(!text.contains("panicked"), "{}", dump(&out));
    }
    assert!(!root.module_dir("ghost").exists());
    assert_same_tree(&before, &root.snapshot(), "the install root");
}

#[test]
fn enable_or_disable_with_an_invalid_module_name_exits_1_and_touches_nothing() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let before = root.snapshot();
    for cmd in ["enable", "disable"] {
        let out = local(&root, &[cmd, "../m00"]);
        assert_code(&out, 1);
        let text = all_output(&out);
        assert!(
            text.contains("../m00") && text.contains("not a module name"),
            "`{cmd} ../m00` is refused as a bad name\n{}",
            dump(&out)
        );
    }
    assert_same_tree(&before, &root.snapshot(), "the install root");
}

/// The settings stage (not `git`) reads the working directory: a relative `--repo-url` path is
/// made absolute against it, so the clone's remote names the repository from anywhere.
#[test]
fn relative_repo_url_is_resolved_against_the_working_directory_into_the_clones_remote() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let parent = repo.path().parent().expect("repo has a parent");
    let name = repo.path().file_name().expect("repo has a name");
    let mut c = updater_at(&root);
    c.arg("--repo-url")
        .arg(name)
        .arg("sync")
        .current_dir(parent);
    let out = run(c);
    assert_code(&out, 0);
    assert!(root.module_dir("m").join("index.json").is_file());
    let remote = std::process::Command::new("git")
        .arg("-C")
        .arg(root.state_dir().join("repo"))
        .args(["config", "remote.origin.url"])
        .output()
        .expect("git config");
    let remote = String::from_utf8_lossy(&remote.stdout).trim().to_string();
    assert_eq!(
        Path::new(&remote),
        repo.path().canonicalize().expect("canonical repo path"),
        "{}",
        dump(&out)
    );
}
