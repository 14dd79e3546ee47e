//! A clean stop: SIGTERM during a sync lets the running module finish and commit, starts no new
//! module, exits 3, and leaves nothing half-done; the next run picks up the rest.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn sigterm_finishes_the_running_module_and_starts_no_other() {
    let repo = UpdatesRepo::new();
    repo.add_module("first", "1.0.0");
    repo.set_metadata("first", "priority", serde_json::json!(10));
    // The entry signals that it has started, then takes a while.
    repo.write_exec(
        "modules/first/update",
        "#!/bin/sh\ntouch \"$UPDATER_MODULES_PATH/.first-started\"\nsleep 1\necho first >> \"$UPDATER_MODULES_PATH/.runs.log\"\n",
    );
    repo.add_module("second", "1.0.0");
    repo.set_metadata("second", "priority", serde_json::json!(20));
    repo.commit("two modules, two priorities");
    let root = InstallRoot::new();

    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, root.home.path());
    cmd.args(["sync", "--modules-path"])
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = root.path().join(".first-started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the first entry never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 3, "{}", dump(&out));
    let text = all_output(&out);
    assert!(text.contains("asked to stop"), "{text}");

    // The running module finished and was committed; the other never started.
    assert_eq!(root.runs(), vec!["first".to_string()]);
    assert!(root.module_dir("first").is_dir());
    assert!(!root.module_dir("second").exists());
    let index = root.read_index();
    assert_eq!(index["packages"]["first"], "1.0.0");
    assert!(index["packages"].get("second").is_none(), "{index}");
    assert!(!root.state_dir().join("journal.json").exists());
    assert_eq!(
        std::fs::read_dir(root.state_dir().join("staging"))
            .unwrap()
            .count(),
        0
    );

    // The next run installs the rest and does not re-run the first.
    updater(&root, &repo).arg("sync").assert().code(0);
    assert!(root.module_dir("second").is_dir());
    assert_eq!(
        root.runs()
            .iter()
            .filter(|l| l.starts_with("first"))
            .count(),
        1
    );
}
