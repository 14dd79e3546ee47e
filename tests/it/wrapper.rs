//! Integration tests for `updateManager.sh` (SPEC §2): the upstream-compatible wrapper.
//!
//! Some tests run the wrapper against a fake binary that records its arguments (to pin the
//! option mapping); the others run it against the real `updater`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

const OK_LINE: &str = "✓ Update system completed successfully";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("updateManager.sh")
}

/// The log file full and legacy runs write to, in the tests: `<home>/update.log`.
fn log_file(home: &Path) -> PathBuf {
    home.join("update.log")
}

/// What a full or legacy run wrote to its log file.
fn log_of(home: &Path) -> String {
    fs::read_to_string(log_file(home)).unwrap_or_default()
}

/// The wrapper with a private HOME, `UPDATER_BIN` set to `bin`, `UPDATER_ARGS` to `args` and
/// `UPDATER_LOG_FILE` to `<home>/update.log`.
fn wrapper(home: &Path, bin: &Path, args: &str) -> Command {
    wrapper_at(&script(), home, bin, args)
}

/// [`wrapper`], running the copy of the script at `script`.
fn wrapper_at(script: &Path, home: &Path, bin: &Path, args: &str) -> Command {
    let mut cmd = Command::new(script);
    isolate_env(&mut cmd, home);
    cmd.env("UPDATER_BIN", bin)
        .env("UPDATER_ARGS", args)
        .env("UPDATER_LOG_FILE", log_file(home))
        .env_remove("RUST_LOG")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run updateManager.sh")
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
    // Another part of updater recognizes its own wrapper by this marker line.
    assert!(
        text.lines().any(|l| l == "# updater-wrapper: v1"),
        "marker line"
    );
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
    let cases: [(&[&str], &[&str], bool); 4] = [
        (&[], &["sync", "--run", "enabled"], true),
        (&["--full"], &["sync", "--run", "enabled"], true),
        (&["--check"], &["check"], false),
        (&["--legacy"], &["legacy"], true),
    ];
    for (flags, command, logged) in cases {
        let out = run(wrapper(fake.home(), &fake.bin(), "--modules-path /srv/x  -v").args(flags));
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", dump(&out));
        let mut expected: Vec<&str> = command.to_vec();
        expected.extend(["--modules-path", "/srv/x", "-v"]);
        assert_eq!(fake.args().unwrap(), expected, "{flags:?}");
        // Full and legacy runs write to the log file, check to stdout.
        let text = if logged {
            log_of(fake.home())
        } else {
            stdout_of(&out)
        };
        assert!(
            text.contains("fake updater ran"),
            "{flags:?}: {}",
            dump(&out)
        );
        assert_eq!(last_nonempty_line(&text), OK_LINE, "{flags:?}");
    }
}

#[test]
fn every_admin_ui_option_maps_to_the_binarys_spelling() {
    let fake = FakeBin::new();
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--enable", "web"], &["--enable-module", "web"]),
        (&["--disable", "web"], &["--disable-module", "web"]),
        (&["--status"], &["--all-status"]),
        (&["--status", "web"], &["--module-status", "web"]),
        (
            &["--enable-component", "web", "front"],
            &["--enable-component", "web", "front"],
        ),
        (
            &["--disable-component", "web", "front"],
            &["--disable-component", "web", "front"],
        ),
        (&["--list-modules"], &["--list-modules"]),
        (
            &["--set-module-branch", "web", "dev"],
            &["--set-module-branch", "web", "dev"],
        ),
        (&["--check"], &["check"]),
    ];
    for (flags, expected) in cases {
        let out = run(wrapper(fake.home(), &fake.bin(), "").args(flags));
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", dump(&out));
        assert_eq!(fake.args().unwrap(), expected, "{flags:?}");
        // Management output stays on stdout, where the UI reads it.
        assert!(stdout_of(&out).contains("fake updater ran"), "{flags:?}");
        assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE, "{flags:?}");
    }
}

#[test]
fn malformed_management_options_print_usage_and_exit_1() {
    let fake = FakeBin::new();
    for bad in [
        &["--enable"][..],
        &["--disable", "--check"][..],
        &["--enable-component", "web"][..],
        &["--set-module-branch", "web"][..],
        &["--status", "a", "b"][..],
        &["--check", "--legacy"][..],
        &["--list-modules", "x"][..],
        &["--full", "x"][..],
        &["--enable", ""][..],
    ] {
        let out = run(wrapper(fake.home(), &fake.bin(), "").args(bad));
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", dump(&out));
        assert!(stderr_of(&out).contains("Usage"), "{bad:?}: {}", dump(&out));
        assert_eq!(fake.args(), None, "{bad:?}: the binary must not run");
    }
}

#[test]
fn in_an_install_root_the_wrapper_passes_its_own_directory() {
    let fake = FakeBin::new();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("modules")).unwrap();
    let copy = root.path().join("updateManager.sh");
    fs::copy(script(), &copy).unwrap();
    let dir = root.path().canonicalize().unwrap();
    let dir = dir.to_str().unwrap();

    let out = run(&mut wrapper_at(&copy, fake.home(), &fake.bin(), ""));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert_eq!(
        fake.args().unwrap(),
        ["sync", "--run", "enabled", "--modules-path", dir]
    );
    let out = run(wrapper_at(&copy, fake.home(), &fake.bin(), "").args(["--enable", "web"]));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert_eq!(
        fake.args().unwrap(),
        ["--enable-module", "web", "--modules-path", dir]
    );
    // UPDATER_ARGS naming a root wins (the binary refuses the option twice).
    let out =
        run(wrapper_at(&copy, fake.home(), &fake.bin(), "--modules-path /srv/x").arg("--check"));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert_eq!(fake.args().unwrap(), ["check", "--modules-path", "/srv/x"]);
}

#[test]
fn full_and_legacy_runs_truncate_the_log_file_and_write_everything_there() {
    let fake = FakeBin::new();
    let log = log_file(fake.home());
    for flags in [&["--full"][..], &["--legacy"][..], &[][..]] {
        fs::write(&log, "an earlier run's output\n").unwrap();
        let out = run(wrapper(fake.home(), &fake.bin(), "").args(flags));
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", dump(&out));
        assert!(out.stdout.is_empty(), "{flags:?}: {}", dump(&out));
        let text = log_of(fake.home());
        assert!(
            !text.contains("an earlier run"),
            "{flags:?}: truncated: {text}"
        );
        assert!(text.contains("fake updater ran"), "{flags:?}: {text}");
        assert_eq!(last_nonempty_line(&text), OK_LINE);
    }
    // A missing log file (and directory) is created, mode 0664.
    let nested = fake.home().join("var/log/homeserver/update.log");
    let out = run(wrapper(fake.home(), &fake.bin(), "").env("UPDATER_LOG_FILE", &nested));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o664, "{mode:o}");
    assert!(fs::read_to_string(&nested).unwrap().contains(OK_LINE));
    // A log that cannot be opened leaves the output where it was.
    let blocked = fake.home().join("a-file/update.log");
    fs::write(fake.home().join("a-file"), "").unwrap();
    let out = run(wrapper(fake.home(), &fake.bin(), "").env("UPDATER_LOG_FILE", &blocked));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert!(
        stdout_of(&out).contains("fake updater ran"),
        "{}",
        dump(&out)
    );
    assert_eq!(last_nonempty_line(&stdout_of(&out)), OK_LINE);
}

#[test]
fn failing_exit_code_is_passed_through_with_the_failure_line() {
    let fake = FakeBin::new();
    for (flags, status) in [(&[][..], 3), (&["--check"][..], 1), (&["--legacy"][..], 2)] {
        let out = run(wrapper(fake.home(), &fake.bin(), "")
            .env("FAKE_EXIT", status.to_string())
            .args(flags));
        assert_eq!(out.status.code(), Some(status), "{flags:?}: {}", dump(&out));
        let text = if flags == ["--check"] {
            stdout_of(&out)
        } else {
            log_of(fake.home())
        };
        assert_eq!(
            last_nonempty_line(&text),
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
        last_nonempty_line(&log_of(home.path()))
            .starts_with("✗ Update system failed with exit code"),
        "{}",
        dump(&out)
    );
}

// --- with the real binary -------------------------------------------------------------------

/// The real binary for full runs (`sync --run enabled`). `--run` is being added to the binary
/// on another branch; until it is there, this shim drops `--run enabled` and runs the real
/// binary with the rest, so the wrapper's full run is still tested end to end. Once the binary
/// knows `--run`, the shim passes every argument through.
struct FullRunBin {
    dir: tempfile::TempDir,
}

impl FullRunBin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("updater");
        fs::write(
            &shim,
            format!(
                "#!/bin/bash\nbin='{}'\n\
                 if \"$bin\" --help 2>/dev/null | grep -q -- '--run '; then exec \"$bin\" \"$@\"; fi\n\
                 args=()\nwhile [ $# -gt 0 ]; do\n\
                 if [ \"$1\" = --run ]; then shift 2; continue; fi\n\
                 args+=(\"$1\"); shift\ndone\nexec \"$bin\" \"${{args[@]}}\"\n",
                updater_bin().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
        FullRunBin { dir }
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("updater")
    }
}

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
    let full = FullRunBin::new();
    for flags in [&["--check"][..], &[][..]] {
        let out = run(wrapper(root.home.path(), &full.bin(), &args).args(flags));
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", dump(&out));
        let text = if flags.is_empty() {
            log_of(root.home.path())
        } else {
            stdout_of(&out)
        };
        assert_eq!(
            last_nonempty_line(&text),
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
    let full = FullRunBin::new();
    let out = run(&mut wrapper(root.home.path(), &full.bin(), &args));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    assert_eq!(last_nonempty_line(&log_of(root.home.path())), OK_LINE);
    let mut runs = root.runs();
    runs.sort();
    assert_eq!(runs, ["m00 ->1.0.0", "m01 ->1.0.0"]);
    assert_eq!(root.read_index()["packages"]["m00"], "1.0.0");
}

#[test]
fn management_options_with_the_real_binary_print_what_the_admin_ui_looks_for() {
    let root = InstallRoot::new();
    root.install_module("website", "1.0.0");
    let index = root.module_dir("website").join("index.json");
    fs::write(
        &index,
        r#"{"metadata": {"schema_version": "1.0.0", "description": "Web UI"},
            "config": {"components": {"frontend": {"enabled": true}}}}"#,
    )
    .unwrap();
    let args = format!("--modules-path {}", root.path().display());
    let ui = |flags: &[&str]| run(wrapper(root.home.path(), &updater_bin(), &args).args(flags));
    for (flags, needle) in [
        (&["--disable", "website"][..], "✓ Module 'website' disabled"),
        (&["--status", "website"][..], "Status: DISABLED"),
        (&["--enable", "website"][..], "✓ Module 'website' enabled"),
        (&["--status", "website"][..], "Status: ENABLED"),
        (
            &["--disable-component", "website", "frontend"][..],
            "✓ Component 'frontend' disabled in module 'website'",
        ),
        (&["--list-modules"][..], "website ENABLED v1.0.0 Web UI"),
        (
            &["--status"][..],
            "Total: 1 modules (1 enabled, 0 disabled)",
        ),
    ] {
        let out = ui(flags);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", dump(&out));
        let text = stdout_of(&out);
        assert!(text.contains(needle), "{flags:?}: {}", dump(&out));
        assert_eq!(last_nonempty_line(&text), OK_LINE, "{flags:?}");
    }
    let out = ui(&["--enable", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert_eq!(
        last_nonempty_line(&stdout_of(&out)),
        "✗ Update system failed with exit code 1"
    );
}
