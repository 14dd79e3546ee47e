//! journald (issue 14, item 3): when `$JOURNAL_STREAM` names the stream the log goes to, each
//! line starts with its sd-daemon(3) priority and carries no timestamp of ours; otherwise the
//! SPEC §6b format. The test hands the binary a file as its output and sets `JOURNAL_STREAM` to
//! that file's `DEV:INODE`, as systemd does for the socket it connects.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;

/// A repository with one valid module and one invalid one (an `ERROR` line and `INFO` lines).
fn repo_with_an_invalid_module() -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    repo.add_module("good", "1.0.0");
    repo.write("modules/bad/index.json", "{}");
    repo.commit("one good, one bad");
    repo
}

/// `DEV:INODE` of `path`, as systemd writes `$JOURNAL_STREAM`.
fn journal_stream_of(path: &Path) -> String {
    let m = fs::metadata(path).expect("stat");
    format!("{}:{}", m.dev(), m.ino())
}

/// `updater check` with stdout into `stdout` and stderr into `stderr` (files), the given
/// `JOURNAL_STREAM`, and `extra` arguments.
fn check_into(
    root: &InstallRoot,
    repo: &UpdatesRepo,
    journal_stream: &str,
    extra: &[&str],
    stdout: &Path,
    stderr: &Path,
) -> Output {
    let mut c = Command::new(updater_bin());
    isolate_env(&mut c, root.home.path());
    c.env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", journal_stream)
        .current_dir(root.home.path())
        .arg("--modules-path")
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .arg("check")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(File::create(stdout).expect("create stdout file"))
        .stderr(File::create(stderr).expect("create stderr file"));
    c.output().expect("run updater")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("read output file")
}

/// Every line is `<N>[LEVEL] …` with the priority of its level, and no line has a timestamp.
fn assert_journal_lines(text: &str) {
    assert!(!text.trim().is_empty(), "no log lines");
    for line in text.lines() {
        let ok = [
            "<3>[ERROR] ",
            "<4>[WARNING] ",
            "<6>[INFO] ",
            "<7>[DEBUG] ",
            "<7>[TRACE] ",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        assert!(ok, "not a journald line: {line:?}\n{text}");
        assert!(!line.contains("] [INFO]"), "a timestamp: {line:?}");
    }
}

#[test]
fn journal_stream_naming_stdout_gives_priority_prefixes_and_no_timestamp() {
    let repo = repo_with_an_invalid_module();
    let root = InstallRoot::new();
    let (out_file, err_file) = (root.home.path().join("out"), root.home.path().join("err"));
    File::create(&out_file).unwrap();
    let out = check_into(
        &root,
        &repo,
        &journal_stream_of(&out_file),
        &[],
        &out_file,
        &err_file,
    );
    let text = read(&out_file);
    assert_eq!(code(&out), 1, "an invalid module fails a check:\n{text}");
    assert_journal_lines(&text);
    assert!(
        text.contains("<3>[ERROR] Module bad is invalid"),
        "the error has priority 3 (journalctl -p err finds it):\n{text}"
    );
    assert!(
        text.contains("<6>[INFO] Module good needs update: none → 1.0.0"),
        "{text}"
    );
}

#[test]
fn journal_stream_naming_stderr_prefixes_the_log_under_json_and_leaves_the_document_alone() {
    let repo = repo_with_an_invalid_module();
    let root = InstallRoot::new();
    let (out_file, err_file) = (root.home.path().join("out"), root.home.path().join("err"));
    File::create(&err_file).unwrap();
    check_into(
        &root,
        &repo,
        &journal_stream_of(&err_file),
        &["--json"],
        &out_file,
        &err_file,
    );
    assert_journal_lines(&read(&err_file));
    let doc: serde_json::Value =
        serde_json::from_str(&read(&out_file)).expect("stdout is one JSON document");
    assert_eq!(doc["command"], "check");
}

#[test]
fn journal_stream_naming_another_file_keeps_the_timestamped_format() {
    let repo = repo_with_an_invalid_module();
    let root = InstallRoot::new();
    let (out_file, err_file) = (root.home.path().join("out"), root.home.path().join("err"));
    let other = root.home.path().join("other");
    File::create(&other).unwrap();
    for value in [journal_stream_of(&other), "not-a-stream".to_string()] {
        check_into(&root, &repo, &value, &[], &out_file, &err_file);
        let text = read(&out_file);
        assert!(!text.trim().is_empty(), "no log lines");
        for line in text.lines() {
            let b = line.as_bytes();
            assert!(
                b.len() > 22 && b[0] == b'[' && b[5] == b'-' && b[20] == b']' && b[22] == b'[',
                "JOURNAL_STREAM={value}: not `[YYYY-MM-DD HH:MM:SS] [LEVEL] …`: {line:?}"
            );
        }
        assert!(text.contains("] [ERROR] Module bad is invalid"), "{text}");
    }
}
