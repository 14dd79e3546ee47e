//! Integration tests for `updateManager.sh` (SPEC §2): the upstream-compatible wrapper.
//!
//! Some tests run the wrapper against a fake binary that records its arguments (to pin the
//! option mapping); the others run it against the real `updater`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const OK_LINE: &str = "✓ Update system completed successfully";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("updateManager.sh")
}

/// The wrapper with a private HOME, `UPDATER_BIN` set to `bin` and `UPDATER_ARGS` to `args`.
fn wrapper(home: &Path, bin: &Path, args: &str) -> Command {
    let mut cmd = Command::new(script());
    isolate_env(&mut cmd, home);
    cmd.env("UPDATER_BIN", bin)
        .env("UPDATER_ARGS", args)
        .env_remove("RUST_LOG")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run updateManager.sh")
}

fn last_nonempty_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// A fake `updater` that records its arguments (one per line) in `<dir>/args` and exits with
/// `$FAKE_EXIT` (default 0).
struct FakeBin {
    dir: tempfile::TempDir,
}

impl FakeBin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("updater");
        fs::write(
            &bin,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n\
                 echo 'fake updater ran'\nexit \"${{FAKE_EXIT:-0}}\"\n",
                dir.path().join("args").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        FakeBin { dir }
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("updater")
    }
    fn home(&self) -> &Path {
        self.dir.path()
    }
    /// The arguments of the last call, or None if it was never called.
    fn args(&self) -> Option<Vec<String>> {
        fs::read_to_string(self.dir.path().join("args"))
            .ok()
            .map(|s| s.lines().map(str::to_string).collect())
    }
}

#[test]
fn script_is_executable_bash() {
    let meta = fs::metadata(script()).expect("updateManager.sh exists");
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "updateManager.sh is executable"
    );
    let text = fs::read_to_string(script()).unwrap();
    assert!(text.starts_with("#!/usr/bin/env bash") || text.starts_with("#!/bin/bash"));
}

#[test]
fn help_exits_0_with_usage() {
    let fake = FakeBin::new();
    for flag in ["--help", "-h"] {
        let out = run(wrapper(fake.home(), &fake.bin(), "").arg(flag));
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", dump(&out));
        let text = stdout_of(&out);
        assert!(text.contains("Usage"), "{flag}: {}", dump(&out));
        assert!(
            text.contains("--check") && text.contains("--legacy"),
            "{}",
            dump(&out)
        );
        assert_eq!(fake.args(), None, "--help must not run the binary");
    }
}

#[test]
fn unknown_option_prints_usage_on_stderr_and_exits_1() {
    let fake = FakeBin::new();
    for bad in ["--bogus", "check", "-x"] {
        let out = run(wrapper(fake.home(), &fake.bin(), "").arg(bad));
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", dump(&out));
        assert!(stderr_of(&out).contains("Usage"), "{bad}: {}", dump(&out));
        assert_eq!(fake.args(), None, "{bad}: the binary must not run");
    }
}

#[test]
fn options_map_to_commands_and_updater_args_are_passed() {
    let fake = FakeBin::new();
    let cases: [(&[&str], &str); 3] = [
        (&[], "sync"),
        (&["--check"], "check"),
        (&["--legacy"], "legacy"),
    ];
    for (flags, command) in cases {
        let out = run(wrapper(fake.home(), &fake.bin(), "--modules-path /srv/x  -v").args(flags));
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", dump(&out));
        assert_eq!(
            fake.args().unwrap(),
            [command, "--modules-path", "/srv/x", "-v"],
            "{flags:?}"
        );
        assert!(stdout_of(&out).contains("fake updater ran"));
        assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE, "{flags:?}");
    }
}

#[test]
fn failing_exit_code_is_passed_through_with_the_failure_line() {
    let fake = FakeBin::new();
    for (flags, status) in [(&[][..], 3), (&["--check"][..], 1), (&["--legacy"][..], 2)] {
        let out = run(wrapper(fake.home(), &fake.bin(), "")
            .env("FAKE_EXIT", status.to_string())
            .args(flags));
        assert_eq!(out.status.code(), Some(status), "{flags:?}: {}", dump(&out));
        assert_eq!(
            last_nonempty_line(&stdout_of(&out)),
            format!("✗ Update system failed with exit code {status}"),
            "{flags:?}"
        );
    }
}

#[test]
fn check_passes_through_exit_code_100_as_a_successful_check() {
    let fake = FakeBin::new();
    let out = run(wrapper(fake.home(), &fake.bin(), "--exit-code")
        .env("FAKE_EXIT", "100")
        .arg("--check"));
    assert_eq!(out.status.code(), Some(100), "{}", dump(&out));
    assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE);
}

#[test]
fn missing_binary_is_a_failure() {
    let home = tempfile::tempdir().unwrap();
    let out = run(&mut wrapper(
        home.path(),
        &home.path().join("no-such-updater"),
        "",
    ));
    assert_ne!(out.status.code(), Some(0), "{}", dump(&out));
    assert!(
        last_nonempty_line(&stdout_of(&out)).starts_with("✗ Update system failed with exit code"),
        "{}",
        dump(&out)
    );
}

// --- with the real binary -------------------------------------------------------------------

#[test]
fn check_with_the_real_binary_passes_its_exit_code_and_prints_the_success_line() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let args = format!(
        "--modules-path {} --repo-url {}",
        root.path().display(),
        repo.url()
    );
    let out = run(wrapper(root.home.path(), &updater_bin(), &args).arg("--check"));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains("Module m00 needs update: none → 1.0.0"),
        "{}",
        dump(&out)
    );
    assert_eq!(last_nonempty_line(&text), OK_LINE);
    assert!(root.runs().is_empty(), "--check must not run entry points");

    let out = run(wrapper(
        root.home.path(),
        &updater_bin(),
        &format!("{args} --exit-code"),
    )
    .arg("--check"));
    assert_eq!(out.status.code(), Some(100), "{}", dump(&out));
    assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE);
}

#[test]
fn failing_real_run_prints_the_failure_line_with_exit_code_1() {
    let root = InstallRoot::new();
    let missing = root.home.path().join("no-such-repository");
    let args = format!(
        "--modules-path {} --repo-url {}",
        root.path().display(),
        missing.display()
    );
    for flags in [&["--check"][..], &[][..]] {
        let out = run(wrapper(root.home.path(), &updater_bin(), &args).args(flags));
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", dump(&out));
        assert_eq!(
            last_nonempty_line(&stdout_of(&out)),
            "✗ Update system failed with exit code 1",
            "{flags:?}"
        );
    }
}

#[test]
fn no_option_runs_a_sync_with_the_real_binary() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    let args = format!(
        "--modules-path {} --repo-url {}",
        root.path().display(),
        repo.url()
    );
    let out = run(&mut wrapper(root.home.path(), &updater_bin(), &args));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE);
    let mut runs = root.runs();
    runs.sort();
    assert_eq!(runs, ["m00 ->1.0.0", "m01 ->1.0.0"]);
    assert_eq!(root.read_index()["packages"]["m00"], "1.0.0");
}
