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

// --- verbosity and RUST_LOG (issue 14, item 3) -------------------------------------------------

/// A root already in step with a one-module repository: the next sync is a no-op.
fn synced_root() -> (InstallRoot, UpdatesRepo) {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut cmd = bin_for(&root, &repo);
    cmd.arg("sync");
    let out = cmd.output().expect("run updater");
    assert_eq!(code(&out), 0, "{}", dump(&out));
    (root, repo)
}

/// A no-op sync with `args` (before the command) and `RUST_LOG` when given; its stdout.
fn no_op_sync(
    root: &InstallRoot,
    repo: &UpdatesRepo,
    args: &[&str],
    rust_log: Option<&str>,
) -> String {
    let mut cmd = bin_for(root, repo);
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    cmd.args(args).arg("sync");
    let out = cmd.output().expect("run updater");
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert_eq!(root.read_index()["packages"]["m00"], "1.0.0");
    stdout_of(&out)
}

#[test]
fn verbose_shows_decisions_and_paths_on_a_no_op_run() {
    let (root, repo) = synced_root();
    let plain = no_op_sync(&root, &repo, &[], None);
    assert!(
        !plain.contains("[DEBUG]"),
        "no debug lines without -v:\n{plain}"
    );
    let verbose = no_op_sync(&root, &repo, &["-v"], None);
    let root_path = root.path().display().to_string();
    for needle in [
        format!("[DEBUG] Install root {root_path}: index {root_path}/index.json"),
        format!("[DEBUG] Repository {} (from the command line)", repo.url()),
        format!("clone {} (updater's own)", root.clone_dir().display()),
        format!(
            "[DEBUG] Module m00: decision up_to_date, action Nothing; installed 1.0.0 from {}",
            root.module_dir("m00").join("index.json").display()
        ),
    ] {
        assert!(verbose.contains(&needle), "-v lacks {needle:?}:\n{verbose}");
    }
    assert!(!verbose.contains("[TRACE]"), "trace needs -vv:\n{verbose}");
}

#[test]
fn very_verbose_shows_git_and_process_detail() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let mut cmd = bin_for(&root, &repo);
    cmd.args(["-vv", "sync"]);
    let out = cmd.output().expect("run updater");
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let text = stdout_of(&out);
    for needle in [
        "[TRACE] git: ",
        "refs/heads/master is at ",
        "fetching it",
        "[TRACE] git: received ",
        "[TRACE] process: [m00] running ",
        "started as pid ",
        "[TRACE] process: [m00] success after ",
    ] {
        assert!(text.contains(needle), "-vv lacks {needle:?}:\n{text}");
    }
}

#[test]
fn rust_log_filters_by_module_target_and_the_flags_still_set_updaters_own_level() {
    let (root, repo) = synced_root();
    // One module target at debug: its lines, and not another module's debug lines.
    let text = no_op_sync(&root, &repo, &[], Some("updater::report=debug"));
    assert!(
        text.contains("[DEBUG] Module m00: decision up_to_date"),
        "{text}"
    );
    assert!(!text.contains("[DEBUG] Repository "), "{text}");
    assert!(
        text.contains("[INFO] No updates available"),
        "the default stays info:\n{text}"
    );
    let text = no_op_sync(&root, &repo, &[], Some("updater::commands::settings=debug"));
    assert!(text.contains("[DEBUG] Repository "), "{text}");
    assert!(!text.contains("[DEBUG] Module m00"), "{text}");
    // A bare level applies to updater too; -q on the command line beats it.
    let text = no_op_sync(&root, &repo, &[], Some("debug"));
    assert!(text.contains("[DEBUG] Module m00"), "{text}");
    let text = no_op_sync(&root, &repo, &["-q"], Some("debug"));
    assert!(
        !text.contains("[DEBUG]") && !text.contains("[INFO]"),
        "{text}"
    );
}

// --- progress on a terminal (issue 14, item 5) -------------------------------------------------

/// Runs the binary with `args` on a pseudo-terminal (util-linux `script`), stdin closed; returns
/// everything the terminal received (stdout and stderr together, control sequences included).
fn on_a_terminal(root: &InstallRoot, args: &[String]) -> String {
    let typescript = root.home.path().join("typescript");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(&updater_bin().display().to_string());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = Command::new("script");
    isolate_env(&mut cmd, root.home.path());
    cmd.env_remove("RUST_LOG")
        .env("SHELL", "/bin/sh")
        .current_dir(root.home.path())
        .args(["-q", "-e", "-c", &line])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().expect("run script(1)");
    let text =
        String::from_utf8_lossy(&fs::read(&typescript).expect("read the typescript")).into_owned();
    assert!(status.success(), "{status}:\n{text}");
    text
}

/// A repository with one module and `files` more files in it (so a fetch brings that many
/// objects and more).
fn big_repo(files: usize) -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    repo.add_module("m00", "1.0.0");
    for i in 0..files {
        repo.write(
            &format!("modules/m00/data/{i:04}.txt"),
            &format!("file {i}\n"),
        );
    }
    repo.commit("a module with many files");
    repo
}

fn args_for(root: &InstallRoot, repo: &UpdatesRepo, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--modules-path".to_string(),
        root.path().display().to_string(),
        "--repo-url".to_string(),
        repo.file_url(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

#[test]
fn transfer_progress_on_a_terminal_is_throttled_and_shows_rate_and_eta() {
    const FILES: usize = 1200;
    let repo = big_repo(FILES);
    let root = InstallRoot::new();
    let text = on_a_terminal(&root, &args_for(&root, &repo, &["check"]));
    // One redraw per object before (1,057 for 605 objects); now at most one per percent.
    let redraws = text.matches("Receiving objects [").count();
    assert!(
        (1..=110).contains(&redraws),
        "{redraws} redraws of the transfer bar for {FILES}+ objects:\n{text}"
    );
    let bar = text
        .split("Receiving objects [")
        .nth(1)
        .expect("a transfer bar");
    let bar = bar.split('\r').next().unwrap_or_default();
    assert!(
        bar.contains("B/s") && bar.contains("ETA "),
        "no rate or ETA in {bar:?}"
    );
    let summary = text
        .lines()
        .find(|l| l.contains("Received ") && l.contains(" objects, "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    let count: usize = summary
        .split("Received ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary:?}"));
    assert!(count > FILES, "{summary:?}");
    assert!(summary.contains("/s)"), "no rate in {summary:?}");
}

#[test]
fn applying_on_a_terminal_shows_the_running_modules() {
    let repo = UpdatesRepo::new();
    for name in ["m00", "m01"] {
        repo.add_module(name, "1.0.0");
        // Long enough for the view to be drawn while it runs.
        repo.write_exec(&format!("modules/{name}/update"), "#!/bin/sh\nsleep 0.5\n");
    }
    repo.commit("two slow modules");
    let root = InstallRoot::new();
    let text = on_a_terminal(&root, &args_for(&root, &repo, &["sync"]));
    assert!(text.contains("Applying ["), "no apply view:\n{text}");
    assert!(text.contains("/2 modules"), "no module count:\n{text}");
    assert!(
        text.contains(" m00 0s") && text.contains(" m01 0s"),
        "no line for each running module:\n{text}"
    );
    // Log lines are whole lines: each starts at the start of a line or right after the bars
    // were cleared (a cursor sequence), never in the middle of a bar.
    let ends_with_cursor_sequence = |s: &str| {
        s.strip_suffix(|c: char| c.is_ascii_alphabetic())
            .and_then(|s| {
                s.trim_end_matches(|c: char| c.is_ascii_digit())
                    .strip_suffix("\x1b[")
            })
            .is_some()
    };
    for line in text.lines().filter(|l| l.contains("] [INFO] ")) {
        let at = line.find("[20").unwrap_or_default();
        let before = &line[..at];
        assert!(
            before.is_empty() || before.ends_with('\r') || ends_with_cursor_sequence(before),
            "a log line torn by a bar: {line:?}"
        );
    }
}

#[test]
fn progress_is_off_under_quiet_json_and_when_stderr_is_not_a_terminal() {
    let repo = big_repo(50);
    for flags in [&["-q", "sync"][..], &["--json", "sync"]] {
        let root = InstallRoot::new();
        let text = on_a_terminal(&root, &args_for(&root, &repo, flags));
        assert!(
            !text.contains("Receiving objects")
                && !text.contains("Applying [")
                && !text.contains("\x1b["),
            "{flags:?}: progress shown:\n{text}"
        );
        assert_eq!(root.read_index()["packages"]["m00"], "1.0.0", "{flags:?}");
    }
    let root = InstallRoot::new();
    let mut cmd = bin_for(&root, &repo);
    cmd.arg("sync");
    let out = cmd.output().expect("run updater");
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let err = stderr_of(&out);
    assert!(
        !err.contains("Receiving objects") && !err.contains("Applying") && !err.contains('\x1b'),
        "progress on a pipe:\n{err}"
    );
}
