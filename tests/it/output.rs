//! Output is an input too (SPEC §6b, LESSONS): a closed pipe or a full disk never panics,
//! nothing a repository or a machine supplies can forge a log line, and `--json` prints one
//! document even when the run cannot proceed. Every test runs the real binary.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;

/// The write end of a pipe whose read end is already closed: the first write gets EPIPE. Built
/// from a FIFO so the order is certain (open the reader without blocking, open the writer,
/// close the reader) — no race with the child.
fn closed_pipe(dir: &Path) -> File {
    let fifo = dir.join("closed.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&fifo)
        .expect("open the fifo's reader");
    let writer = OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the fifo's writer");
    drop(reader);
    writer
}

/// `/dev/full`: every write fails with ENOSPC.
fn dev_full() -> File {
    OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

/// The binary as [`updater_env`] prepares it, as a plain `std::process::Command` (whose stdout
/// can be any file).
fn bin(root: &InstallRoot) -> Command {
    let mut c = Command::new(updater_bin());
    isolate_env(&mut c, root.home.path());
    c.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .current_dir(root.home.path());
    c
}

/// [`bin`] with `--modules-path <root>`.
fn bin_at(root: &InstallRoot) -> Command {
    let mut c = bin(root);
    c.arg("--modules-path").arg(root.path());
    c
}

/// [`bin_at`] with `--repo-url <repo>`.
fn bin_for(root: &InstallRoot, repo: &UpdatesRepo) -> Command {
    let mut c = bin_at(root);
    c.arg("--repo-url").arg(repo.url());
    c
}

/// Runs `cmd` with its stdout going to `stdout`, capturing stderr.
fn run_into(mut cmd: Command, stdout: File) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped());
    cmd.output().expect("run updater")
}

fn assert_no_panic(out: &Output) {
    let text = all_output(out);
    assert!(
        !text.contains("panicked") && code(out) != 101,
        "the binary panicked:\n{}",
        dump(out)
    );
}

/// An install root with one installed module (so `status` has rows to print) and a repository
/// with one more.
fn root_and_repo() -> (InstallRoot, UpdatesRepo) {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.add_module("beta", "1.0.0");
    repo.commit("two");
    let root = InstallRoot::new();
    root.install_module("alpha", "1.0.0");
    (root, repo)
}

// --- a closed pipe -----------------------------------------------------------------------------

#[test]
fn status_into_a_closed_pipe_exits_quietly_with_its_own_status() {
    let (root, _repo) = root_and_repo();
    let mut cmd = bin_at(&root);
    cmd.arg("status");
    let out = run_into(cmd, closed_pipe(root.home.path()));
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(
        !stderr_of(&out).contains("Broken pipe"),
        "a closed pipe is quiet:\n{}",
        dump(&out)
    );
}

#[test]
fn check_json_into_a_closed_pipe_exits_quietly_and_still_does_its_work() {
    let (root, repo) = root_and_repo();
    let mut cmd = bin_for(&root, &repo);
    cmd.args(["check", "--json", "--exit-code"]);
    let out = run_into(cmd, closed_pipe(root.home.path()));
    assert_no_panic(&out);
    // The run's own status: updates are available.
    assert_eq!(code(&out), 100, "{}", dump(&out));
    assert!(root.clone_dir().join(".git").exists(), "the check ran");
}

#[test]
fn sync_into_a_closed_pipe_finishes_the_run() {
    let (root, repo) = root_and_repo();
    let mut cmd = bin_for(&root, &repo);
    cmd.arg("sync");
    let out = run_into(cmd, closed_pipe(root.home.path()));
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert_eq!(root.read_index()["packages"]["beta"], "1.0.0");
}

#[test]
fn help_into_a_closed_pipe_exits_0() {
    let root = InstallRoot::new();
    let mut cmd = bin(&root);
    cmd.arg("--help");
    let out = run_into(cmd, closed_pipe(root.home.path()));
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", dump(&out));
}

// --- a full disk -------------------------------------------------------------------------------

#[test]
fn status_check_json_and_help_into_a_full_device_exit_1_naming_the_error() {
    let (root, repo) = root_and_repo();
    let mut status = bin_at(&root);
    status.arg("status");
    let mut check = bin_for(&root, &repo);
    check.args(["check", "--json"]);
    let mut help = bin(&root);
    help.arg("--help");
    let mut completions = bin(&root);
    completions.args(["completions", "bash"]);
    for (what, cmd) in [
        ("status", status),
        ("check --json", check),
        ("--help", help),
        ("completions", completions),
    ] {
        let out = run_into(cmd, dev_full());
        assert_no_panic(&out);
        assert_eq!(code(&out), 1, "{what}: {}", dump(&out));
        assert!(
            stderr_of(&out).contains("writing to stdout: No space left on device"),
            "{what}: {}",
            dump(&out)
        );
    }
}

// --- escaping ----------------------------------------------------------------------------------

const FORGED: &str = "[2026-01-01 00:00:00] [INFO] Module adblock needs update: 1.0.0 → 9.9.9";

fn assert_every_line_is_a_log_line(text: &str) {
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(is_log_line(line), "not a log line: {line:?}\n{text}");
        assert!(
            !line.starts_with(FORGED) && !line.contains("\x1b"),
            "forged or raw control text: {line:?}"
        );
    }
}

#[test]
fn a_directory_name_with_a_newline_cannot_forge_a_log_line() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    let evil = format!("x\n{FORGED}");
    repo.add_module(&evil, "1.0.0");
    repo.commit("a module whose name holds a forged log line");
    let root = InstallRoot::new();
    for args in [&["check"][..], &["sync"][..]] {
        let out = run({
            let mut c = updater(&root, &repo);
            c.args(args);
            c
        });
        let text = stdout_of(&out);
        assert_every_line_is_a_log_line(&text);
        assert!(
            text.contains("x\\n[2026-01-01 00:00:00] [INFO] Module adblock needs update"),
            "{args:?}: the name is reported, escaped:\n{}",
            dump(&out)
        );
        assert!(
            !log_messages(&text)
                .iter()
                .any(|m| m.starts_with("Module adblock")),
            "{text}"
        );
    }
    // The JSON document carries the name escaped by JSON itself.
    let out = run({
        let mut c = updater(&root, &repo);
        c.args(["check", "--json"]);
        c
    });
    let doc = json_of(&out);
    assert!(doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == evil.as_str()));
    assert_every_line_is_a_log_line(&stderr_of(&out));
}

#[test]
fn module_output_with_control_characters_stays_one_line_per_record() {
    let repo = UpdatesRepo::new();
    repo.add_module("noisy", "1.0.0");
    repo.write_exec(
        "modules/noisy/update",
        &format!("#!/bin/sh\nprintf 'one\\rtwo \\033[2J cleared\\n'\nprintf 'x\\x0b{FORGED}\\n'\n"),
    );
    repo.commit("noisy");
    let root = InstallRoot::new();
    let out = run({
        let mut c = updater(&root, &repo);
        c.arg("sync");
        c
    });
    assert_code(&out, 0);
    let text = stdout_of(&out);
    assert_every_line_is_a_log_line(&text);
    assert!(
        text.contains("[noisy] one\\rtwo \\x1b[2J cleared"),
        "{text}"
    );
}

#[test]
fn status_and_list_escape_what_the_machine_supplies() {
    let root = InstallRoot::new();
    root.install_module("alpha", "1.0.0");
    let index = root.module_dir("alpha").join("index.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&index).unwrap()).unwrap();
    doc["metadata"]["description"] = serde_json::json!(format!("nice\n{FORGED}\x1b[31m"));
    fs::write(&index, serde_json::to_string(&doc).unwrap()).unwrap();
    // A last result from the state file, as a tampered or hostile one could say.
    fs::create_dir_all(root.state_dir()).unwrap();
    let out = run({
        let mut c = updater_at(&root);
        c.arg("list");
        c
    });
    assert_code(&out, 0);
    let text = stdout_of(&out);
    assert_every_line_is_a_log_line(&text);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("alpha ENABLED v1.0.0 nice\\n[2026"), "{text}");

    let out = run({
        let mut c = updater_at(&root);
        c.args(["--module-status", "alpha"]);
        c
    });
    assert_code(&out, 0);
    assert_every_line_is_a_log_line(&stdout_of(&out));

    let out = run({
        let mut c = updater_at(&root);
        c.arg("status");
        c
    });
    assert_code(&out, 0);
    assert!(!stdout_of(&out).contains('\x1b'), "{}", dump(&out));
}

// --- one JSON document when the run cannot proceed ---------------------------------------------

fn assert_error_document(out: &Output, command: &str, needle: &str) {
    assert_eq!(code(out), 1, "{}", dump(out));
    let doc = json_of(out);
    assert_eq!(doc["command"], command, "{doc:#}");
    let error = doc["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {doc:#}"));
    assert!(error.contains(needle), "{needle:?} not in {error:?}");
}

#[test]
fn json_error_document_when_the_lock_is_held() {
    let (root, repo) = root_and_repo();
    let holder = hold_lock(&root, 60);
    for command in ["check", "sync"] {
        let out = run({
            let mut c = updater(&root, &repo);
            c.args([command, "--json"]);
            c
        });
        assert_error_document(&out, command, &holder.pid().to_string());
    }
}

#[test]
fn json_error_document_when_the_repository_is_unreachable() {
    let root = InstallRoot::new();
    let missing = root.home.path().join("no-such-repository");
    let out = run({
        let mut c = updater_at(&root);
        c.args(["check", "--json", "--repo-url"]).arg(&missing);
        c
    });
    assert_error_document(&out, "check", "no-such-repository");
}

#[test]
fn json_error_document_when_the_installed_index_is_malformed() {
    let (root, repo) = root_and_repo();
    root.write("index.json", "{\"packages\": ");
    let out = run({
        let mut c = updater(&root, &repo);
        c.args(["sync", "--json"]);
        c
    });
    assert_error_document(&out, "sync", "index.json");
}

#[test]
fn json_error_document_when_a_rewind_is_refused() {
    let repo = UpdatesRepo::new();
    let first = repo.head();
    repo.add_module("base", "1.0.0");
    repo.commit("A");
    let root = InstallRoot::new();
    assert_code(
        &run({
            let mut c = updater(&root, &repo);
            c.arg("sync");
            c
        }),
        0,
    );
    repo.reset_hard(&first);
    repo.add_module("base", "2.0.0");
    repo.commit("rewritten");
    let out = run({
        let mut c = updater(&root, &repo);
        c.args(["sync", "--json"]);
        c
    });
    assert_error_document(&out, "sync", "rewind");
}
