//! Tests of whole runs: executables and `main(args)` modules, in fresh interpreters and through
//! the fork-server (the files' own unit tests sit next to their code).

use super::forkserver::{lock, server_key, ForkServer};
use super::forkserver::{PythonPath, Registry, FORCED_PATH, SERVERS, USED_PATH};
use super::pymain::locate;
use super::NO_FORK_SERVER_VAR;
use super::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A module directory (named `name`) and a log file path, in a fresh temporary directory.
pub(super) struct Fixture {
    _tmp: Option<TempDir>,
    pub(super) dir: PathBuf,
    log: PathBuf,
}

pub(super) fn fixture(name: &str) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut f = fixture_in(tmp.path(), name);
    f._tmp = Some(tmp);
    f
}

/// A module directory `name` in `parent` (which modules share, like their fork-server).
fn fixture_in(parent: &Path, name: &str) -> Fixture {
    let dir = parent.join(name);
    fs::create_dir(&dir).expect("create module dir");
    let log = parent
        .join("logs")
        .join("nested")
        .join(format!("{name}.log"));
    Fixture {
        _tmp: None,
        dir,
        log,
    }
}

pub(super) fn write(path: &Path, content: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent");
    }
    fs::write(path, content).expect("write file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An executable shell script `name` in the module.
fn script(f: &Fixture, name: &str, body: &str) -> Program {
    let path = f.dir.join(name);
    write(&path, &format!("#!/bin/sh\n{body}"), 0o755);
    Program::Executable(path)
}

/// `index.py` in the module.
fn index_py(f: &Fixture, source: &str) -> Program {
    let path = f.dir.join("index.py");
    write(&path, source, 0o644);
    Program::PythonMain(path)
}

fn run_program(f: &Fixture, program: &Program, args: &[&str], timeout: Duration) -> RunOutcome {
    run_env(&SERVERS, f, program, args, &[], timeout)
}

/// Runs `program` with `extra` variables besides UPDATER_MODULE and UPDATER_TO_VERSION. When
/// the thread forces a way of running `main(args)`, checks that the run took it.
fn run_env(
    registry: &Registry,
    f: &Fixture,
    program: &Program,
    args: &[&str],
    extra: &[(&str, &str)],
    timeout: Duration,
) -> RunOutcome {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut env = vec![
        ("UPDATER_MODULE".to_string(), "demo".to_string()),
        ("UPDATER_TO_VERSION".to_string(), "1.2.0".to_string()),
    ];
    env.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    USED_PATH.with(|used| used.set(None));
    let outcome = run_in(
        registry,
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program,
            args: Some(&args),
            env: &env,
            timeout,
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        },
    )
    .expect("run");
    if let (Program::PythonMain(_), Some(forced)) = (program, forced_path()) {
        assert_eq!(
            used_path(),
            Some(forced),
            "the run did not take the forced way; log:\n{}",
            log_text(f)
        );
    }
    outcome
}

fn forced_path() -> Option<PythonPath> {
    FORCED_PATH.with(|forced| forced.get())
}

fn used_path() -> Option<PythonPath> {
    USED_PATH.with(|used| used.get())
}

/// Makes `main(args)` runs on this thread take `path` (`None`: as in production).
fn force_path(path: Option<PythonPath>) {
    FORCED_PATH.with(|forced| forced.set(path));
}

/// Runs `check` twice: with `main(args)` in fresh interpreters, then through the fork-server.
fn on_both_paths(check: impl Fn(PythonPath)) {
    for path in [PythonPath::Fresh, PythonPath::ForkServer] {
        force_path(Some(path));
        check(path);
    }
    force_path(None);
}

fn run_quick(f: &Fixture, program: &Program) -> RunOutcome {
    run_program(f, program, &[], Duration::from_secs(30))
}

fn log_text(f: &Fixture) -> String {
    String::from_utf8_lossy(&fs::read(&f.log).expect("read log file")).into_owned()
}

/// The program's own lines in the log file (header, footer and notices left out).
fn output_lines(f: &Fixture) -> Vec<String> {
    log_text(f)
        .lines()
        .filter(|line| !line.starts_with("=== "))
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string())
        .collect()
}

fn failure(outcome: &RunOutcome) -> &str {
    assert!(!outcome.success, "expected a failure, got {outcome:?}");
    outcome.reason.as_deref().expect("failure has a reason")
}

fn assert_success(outcome: &RunOutcome, f: &Fixture) {
    assert!(
        outcome.success && outcome.reason.is_none(),
        "expected success, got {outcome:?}; log:\n{}",
        log_text(f)
    );
}

/// Whether `pid` names a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
    }
}

fn wait_dead(pid: i32, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

fn read_pid(path: &Path) -> i32 {
    fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

/// Kills a background process a test left behind (by its recorded pid).
fn kill_leftover(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

// ---- executables ---------------------------------------------------------------------

#[test]
fn shell_entry_success_and_log_file() {
    let f = fixture("mod");
    let program = script(
        &f,
        "update",
        "echo \"hello $1\"\necho to-stderr >&2\nprintf 'crlf\\r\\n'\nprintf '\\377bad\\n'\nprintf 'no newline'\n",
    );
    let outcome = run_program(&f, &program, &["world"], Duration::from_secs(30));
    assert_success(&outcome, &f);
    let lines = output_lines(&f);
    for expected in [
        "hello world",
        "to-stderr",
        "crlf",
        "\u{FFFD}bad",
        "no newline",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected:?} in {lines:?}"
        );
    }
    let log = log_text(&f);
    let header = format!(
        "=== demo: running {} \"world\"",
        f.dir.join("update").display()
    );
    assert!(log.starts_with(&header), "{log}");
    assert!(
        log.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("=== demo: success after"),
        "{log}"
    );

    // A second run appends.
    run_quick(&f, &program);
    assert_eq!(log_text(&f).matches("=== demo: running").count(), 2);
}

#[test]
fn nonzero_exit_fails_with_its_status() {
    let f = fixture("mod");
    let program = script(&f, "update", "echo failing\nexit 3\n");
    let outcome = run_quick(&f, &program);
    assert_eq!(failure(&outcome), "exit status 3");
    assert!(log_text(&f).contains("=== demo: failure: exit status 3 after"));
}

#[test]
fn signal_death_is_reported() {
    let f = fixture("mod");
    let program = script(&f, "update", "kill -9 $$\n");
    assert_eq!(failure(&run_quick(&f, &program)), "killed by signal 9");
}

#[test]
fn unstartable_programs_fail_with_a_reason() {
    let f = fixture("mod");
    let path = f.dir.join("update");
    write(&path, "#!/bin/sh\n", 0o644);
    let reason = failure(&run_quick(&f, &Program::Executable(path.clone()))).to_string();
    assert_eq!(
        reason,
        format!("could not start {}: Permission denied", path.display())
    );

    // With the fork-server wanted, it cannot start either, and the fresh path says why.
    on_both_paths(|_| {
        let f = fixture("mod");
        let program = index_py(&f, "def main(args):\n    return True\n");
        let outcome = run(&RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &program,
            args: None,
            env: &[],
            timeout: Duration::from_secs(5),
            log_file: &f.log,
            python: Path::new("/nonexistent/python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        })
        .expect("run");
        assert_eq!(
            failure(&outcome),
            "could not start /nonexistent/python3: No such file or directory"
        );
        assert_eq!(used_path(), Some(PythonPath::Fresh));
    });
}

#[test]
fn timeout_kills_the_process_group() {
    let f = fixture("mod");
    let program = script(
        &f,
        "update",
        "sleep 60 &\necho $! > grandchild.pid\necho started\nsleep 60\n",
    );
    let started = Instant::now();
    let outcome = run_program(&f, &program, &[], Duration::from_secs(1));
    let elapsed = started.elapsed();
    assert_eq!(
        failure(&outcome),
        "timed out after 1s (process group killed)"
    );
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(outcome.duration >= Duration::from_secs(1));
    let grandchild = read_pid(&f.dir.join("grandchild.pid"));
    let dead = wait_dead(grandchild, Duration::from_secs(3));
    if !dead {
        kill_leftover(grandchild);
    }
    assert!(dead, "grandchild {grandchild} survived the timeout");
    assert!(output_lines(&f).contains(&"started".to_string()));
    assert!(log_text(&f).contains("failure: timed out after 1s"));
}

#[test]
fn background_process_holding_output_does_not_hang() {
    let f = fixture("mod");
    let program = script(&f, "update", "sleep 30 &\necho $! > bg.pid\necho done\n");
    let started = Instant::now();
    let outcome = run_quick(&f, &program);
    let elapsed = started.elapsed();
    let bg = read_pid(&f.dir.join("bg.pid"));
    kill_leftover(bg);
    assert_success(&outcome, &f);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(output_lines(&f).contains(&"done".to_string()));
}

#[test]
fn environment_is_clean() {
    let f = fixture("mod");
    let outcome = run_quick(&f, &Program::Executable(PathBuf::from("/usr/bin/env")));
    assert_success(&outcome, &f);
    let lines = output_lines(&f);
    let names: BTreeSet<&str> = lines
        .iter()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    let allowed: BTreeSet<&str> = PASSED_ENV
        .iter()
        .copied()
        .chain(["UPDATER_MODULE", "UPDATER_TO_VERSION"])
        .collect();
    assert!(names.is_subset(&allowed), "unexpected variables: {names:?}");
    assert!(
        lines.contains(&"UPDATER_MODULE=demo".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"UPDATER_TO_VERSION=1.2.0".to_string()),
        "{lines:?}"
    );
    assert!(names.contains("PATH"), "{names:?}");
    // cargo sets CARGO_MANIFEST_DIR for the test process at run time; it must not leak.
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        assert!(!names.contains("CARGO_MANIFEST_DIR"));
    }
    match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => {
            assert!(lines.contains(&format!("PATH={path}")), "{lines:?}")
        }
        _ => assert!(lines.contains(&format!("PATH={DEFAULT_PATH}")), "{lines:?}"),
    }
}

#[test]
fn cwd_is_module_dir_and_stdin_is_dev_null() {
    let f = fixture("mod");
    let program = script(
        &f,
        "update",
        "pwd -P\nif read -r line; then echo \"read:$line\"; exit 1; fi\necho stdin-eof\nreadlink /proc/$$/fd/0\n",
    );
    let outcome = run_quick(&f, &program);
    assert_success(&outcome, &f);
    let lines = output_lines(&f);
    let cwd = fs::canonicalize(&f.dir).expect("canonicalize");
    assert_eq!(lines[0], cwd.display().to_string());
    assert_eq!(&lines[1..], ["stdin-eof", "/dev/null"]);
}

#[test]
fn parallel_runs_keep_their_output_apart() {
    let handles: Vec<_> = (0..6)
        .map(|i| {
            thread::spawn(move || {
                let f = fixture(&format!("mod{i}"));
                let program = script(
                    &f,
                    "update",
                    &format!("for n in $(seq 1 200); do echo \"mod{i} line $n\"; done\n"),
                );
                let outcome = run_quick(&f, &program);
                assert_success(&outcome, &f);
                let lines = output_lines(&f);
                assert_eq!(lines.len(), 200, "mod{i}");
                let prefix = format!("mod{i} line ");
                assert!(lines.iter().all(|l| l.starts_with(&prefix)), "mod{i}");
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
}

// ---- Python main(args) ---------------------------------------------------------------

/// Runs `source` as index.py of a new module in `parent`.
fn python_case(parent: &Path, source: &str) -> (RunOutcome, String) {
    static CASES: AtomicU64 = AtomicU64::new(0);
    let f = fixture_in(
        parent,
        &format!("py-mod-{}", CASES.fetch_add(1, Ordering::Relaxed)),
    );
    let program = index_py(&f, source);
    let outcome = run_quick(&f, &program);
    let log = log_text(&f);
    (outcome, log)
}

#[test]
fn python_main_failures() {
    on_both_paths(|_| {
        let parent = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("def main(args):\n    return None\n", "main() returned None"),
            ("def main(args):\n    pass\n", "main() returned None"),
            (
                "def main(args):\n    return False\n",
                "main() returned False twice",
            ),
            (
                "def main(args):\n    return {'success': False, 'error': 'disk full'}\n",
                "main() returned {\"success\": false, \"error\": \"disk full\"}",
            ),
            (
                "def main(args):\n    return {'success': 0}\n",
                "main() returned {\"success\": 0}",
            ),
            (
                "def main(args):\n    raise ValueError('boom')\n",
                "main() raised ValueError: boom",
            ),
            ("VALUE = 1\n", "index.py does not define main(args)"),
            ("main = 3\n", "index.py: main is not callable"),
            (
                "import sys\ndef main(args):\n    sys.exit(2)\n",
                "main() called sys.exit(2)",
            ),
            (
                "import os\nos._exit(0)\n",
                "python exited before main() returned (exit status 0)",
            ),
            (
                "def main():\n    return True\n",
                "main() raised TypeError: main() takes 0 positional arguments but 1 was given",
            ),
        ];
        for (source, expected) in cases {
            let (outcome, log) = python_case(parent.path(), source);
            assert_eq!(
                failure(&outcome),
                expected,
                "source:\n{source}\nlog:\n{log}"
            );
            assert!(!log.contains("UPDATER-RESULT"), "{log}");
            assert!(log.contains(&format!("failure: {expected} after")), "{log}");
        }

        let (outcome, log) = python_case(
            parent.path(),
            "def main(args):\n    raise ValueError('boom')\n",
        );
        assert!(!outcome.success);
        assert!(log.contains("Traceback (most recent call last)"), "{log}");

        let (outcome, log) = python_case(parent.path(), "def main(args:\n    return True\n");
        let reason = failure(&outcome);
        assert!(
            reason.starts_with("importing index.py raised SyntaxError"),
            "{reason}"
        );
        assert!(log.contains("SyntaxError"), "{log}");
    });
}

#[test]
fn python_main_successes() {
    on_both_paths(|_| {
        let parent = tempfile::tempdir().expect("tempdir");
        let sources = [
            "def main(args):\n    return True\n",
            "def main(args):\n    return {'success': True, 'version': '2'}\n",
            "def main(args):\n    return {'changed': 3}\n",
            "def main(args):\n    return 0\n",
            "def main(args):\n    return ''\n",
            "import sys\ndef main(args):\n    sys.exit(0)\n",
        ];
        for source in sources {
            let (outcome, log) = python_case(parent.path(), source);
            assert!(
                outcome.success,
                "source:\n{source}\noutcome: {outcome:?}\nlog:\n{log}"
            );
            assert!(log.contains("=== demo: success after"), "{log}");
        }
    });
}

#[test]
fn python_main_gets_args_env_cwd_and_its_output_is_logged() {
    on_both_paths(|_| {
        let f = fixture("py-mod");
        let program = index_py(
            &f,
            "import json, os, sys\n\
             def main(args):\n    \
                 print('args', json.dumps(args))\n    \
                 print('argv', json.dumps(sys.argv[1:]))\n    \
                 print('module', os.environ.get('UPDATER_MODULE'))\n    \
                 print('cwd', os.getcwd())\n    \
                 print('warning', file=sys.stderr)\n    \
                 return True\n",
        );
        let outcome = run_program(
            &f,
            &program,
            &["--force", "two words"],
            Duration::from_secs(30),
        );
        assert_success(&outcome, &f);
        let lines = output_lines(&f);
        let cwd = fs::canonicalize(&f.dir).expect("canonicalize");
        for expected in [
            "args [\"--force\", \"two words\"]".to_string(),
            "argv [\"--force\", \"two words\"]".to_string(),
            "module demo".to_string(),
            format!("cwd {}", cwd.display()),
            "warning".to_string(),
        ] {
            assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
        }
        assert!(
            !f.dir.join("__pycache__").exists(),
            "-B: no bytecode in the module"
        );
    });
}

#[test]
fn python_package_imports_work_with_an_awkward_directory_name() {
    on_both_paths(|_| {
        let f = fixture("my-mod.v2");
        write(&f.dir.join("helper.py"), "VALUE = 41\n", 0o644);
        write(&f.dir.join("sub/__init__.py"), "", 0o644);
        write(
            &f.dir.join("sub/deep.py"),
            "from .. import helper\nNAME = 'deep'\n",
            0o644,
        );
        let program = index_py(
            &f,
            "from . import helper\n\
             from .sub import deep\n\
             import helper as plain\n\
             def main(args):\n    \
                 print('value', helper.VALUE + 1, deep.NAME, plain.VALUE)\n    \
                 return True\n",
        );
        let outcome = run_quick(&f, &program);
        assert_success(&outcome, &f);
        assert!(output_lines(&f).contains(&"value 42 deep 41".to_string()));

        // A declared .py entry below the module directory, with its own relative imports.
        write(
            &f.dir.join("tools/util.py"),
            "def answer():\n    return 7\n",
            0o644,
        );
        write(
            &f.dir.join("tools/go.py"),
            "from . import util\nfrom .. import helper\n\
             def main(args):\n    print('answer', util.answer(), helper.VALUE)\n    return True\n",
            0o644,
        );
        let program = resolve_entry(&f.dir, Some("tools/go.py"))
            .expect("resolve")
            .expect("entry");
        let outcome = run_quick(&f, &program);
        assert_success(&outcome, &f);
        assert!(output_lines(&f).contains(&"answer 7 41".to_string()));
    });
}

#[test]
fn python_timeout_kills_the_interpreter() {
    on_both_paths(|_| {
        let f = fixture("py-mod");
        let program = index_py(
            &f,
            "import time\ndef main(args):\n    time.sleep(60)\n    return True\n",
        );
        let started = Instant::now();
        let outcome = run_program(&f, &program, &[], Duration::from_secs(2));
        assert_eq!(
            failure(&outcome),
            "timed out after 2s (process group killed)"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn python_output_is_unbuffered_and_a_dead_interpreter_fails() {
    on_both_paths(|_| {
        let f = fixture("py-mod");
        let program = index_py(
            &f,
            "import os, signal\ndef main(args):\n    print('before the kill')\n    \
             os.kill(os.getpid(), signal.SIGKILL)\n",
        );
        let outcome = run_quick(&f, &program);
        assert_eq!(failure(&outcome), "python ended: killed by signal 9");
        // -u: what main printed before dying is in the log.
        assert!(
            output_lines(&f).contains(&"before the kill".to_string()),
            "{}",
            log_text(&f)
        );
    });
}

// ---- fork-server ---------------------------------------------------------------------

/// The lines of the log file that start with `prefix`, without it.
fn tagged(f: &Fixture, prefix: &str) -> Vec<String> {
    output_lines(f)
        .iter()
        .filter_map(|line| line.strip_prefix(prefix).map(str::to_string))
        .collect()
}

#[test]
fn forked_process_matches_a_fresh_interpreter() {
    let f = fixture("my-mod.v2");
    write(&f.dir.join("helper.py"), "VALUE = 1\n", 0o644);
    let program = index_py(
        &f,
        "import json, os, signal, sys\n\
         from . import helper\n\
         def main(args):\n    \
             state = {\n        \
                 'env': sorted(os.environ.items()),\n        \
                 'path': sys.path,\n        \
                 'argv': sys.argv,\n        \
                 'cwd': os.getcwd(),\n        \
                 'modules': sorted(sys.modules),\n        \
                 'fds': sorted(os.listdir('/proc/self/fd')),\n        \
                 'pgid': os.getpgid(0) == os.getpid(),\n        \
                 'sid': os.getsid(0) == os.getsid(os.getppid()),\n        \
                 'bytecode': sys.dont_write_bytecode,\n        \
                 'flags': [sys.flags.dont_write_bytecode, sys.flags.isolated, sys.flags.no_site],\n        \
                 'streams': [[s.isatty(), s.encoding, s.errors, s.line_buffering, \
                              getattr(s, 'write_through', None), s.fileno()] \
                             for s in (sys.stdin, sys.stdout, sys.stderr)],\n        \
                 'stdin': os.readlink('/proc/self/fd/0'),\n        \
                 'out': [os.stat(1).st_mode >> 12, os.stat(2).st_mode >> 12],\n        \
                 'signals': [str(signal.getsignal(s)) for s in (signal.SIGINT, \
                             signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)],\n        \
                 'mask': sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),\n        \
                 'umask': os.umask(0o22),\n        \
                 'main': sys.modules['__main__'].__name__,\n        \
                 'package': __name__,\n    \
             }\n    \
             print('STATE', json.dumps(state, sort_keys=True))\n    \
             return True\n",
    );
    let mut states = Vec::new();
    for path in [PythonPath::Fresh, PythonPath::ForkServer] {
        force_path(Some(path));
        let outcome = run_program(&f, &program, &["a b", "--x"], Duration::from_secs(30));
        assert_success(&outcome, &f);
        states.push(tagged(&f, "STATE "));
    }
    force_path(None);
    assert_eq!(states[0].len(), 1, "{}", log_text(&f));
    assert_eq!(states[1].len(), 2, "{}", log_text(&f));
    let fresh: serde_json::Value = serde_json::from_str(&states[0][0]).expect("json");
    let forked: serde_json::Value = serde_json::from_str(&states[1][1]).expect("json");
    let (Some(fresh), Some(forked)) = (fresh.as_object(), forked.as_object()) else {
        panic!("not objects");
    };
    for (key, value) in fresh {
        assert_eq!(Some(value), forked.get(key), "{key} differs");
    }
    assert_eq!(fresh.len(), forked.len());
    assert!(!f.dir.join("__pycache__").exists());
}

#[test]
fn forked_environment_is_clean_and_does_not_carry_over() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    force_path(Some(PythonPath::ForkServer));
    let dump = "import os\ndef main(args):\n    \
                for name in sorted(os.environ):\n        \
                    print('VAR', name + '=' + os.environ[name])\n    \
                return True\n";
    let first = fixture_in(parent.path(), "first");
    let program = index_py(&first, dump);
    let extra = [
        ("UPDATER_FROM_VERSION", "1.0.0"),
        ("UPDATER_BACKUP_DIR", "/backup"),
    ];
    let outcome = run_env(
        &registry,
        &first,
        &program,
        &[],
        &extra,
        Duration::from_secs(30),
    );
    assert_success(&outcome, &first);
    let vars = tagged(&first, "VAR ");
    assert!(vars.contains(&"UPDATER_FROM_VERSION=1.0.0".to_string()));
    assert!(vars.contains(&"UPDATER_BACKUP_DIR=/backup".to_string()));

    // Same server, without those: nothing of the first run remains.
    let second = fixture_in(parent.path(), "second");
    let program = index_py(&second, dump);
    let outcome = run_env(
        &registry,
        &second,
        &program,
        &[],
        &[],
        Duration::from_secs(30),
    );
    assert_success(&outcome, &second);
    assert_eq!(registry.server_pids().len(), 1);
    let forked = tagged(&second, "VAR ");
    let names: BTreeSet<&str> = forked
        .iter()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(!names.contains("UPDATER_FROM_VERSION"), "{names:?}");
    assert!(!names.contains("UPDATER_BACKUP_DIR"), "{names:?}");
    assert!(
        names.iter().all(|name| !name.starts_with("CARGO")),
        "{names:?}"
    );
    assert!(forked.contains(&"UPDATER_MODULE=demo".to_string()));
    let cwd = fs::canonicalize(&second.dir).expect("canonicalize");
    if names.contains("PWD") {
        assert!(
            forked.contains(&format!("PWD={}", cwd.display())),
            "{forked:?}"
        );
    }

    // Exactly what a fresh interpreter gets.
    force_path(Some(PythonPath::Fresh));
    let outcome = run_env(
        &registry,
        &second,
        &program,
        &[],
        &[],
        Duration::from_secs(30),
    );
    force_path(None);
    assert_success(&outcome, &second);
    let all = tagged(&second, "VAR ");
    assert_eq!(&all[forked.len()..], &forked[..]);
}

#[test]
fn forked_runs_from_six_threads_share_one_server_and_keep_their_output_apart() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    thread::scope(|scope| {
        for i in 0..6 {
            let (parent, registry) = (parent.path(), &registry);
            scope.spawn(move || {
                force_path(Some(PythonPath::ForkServer));
                let f = fixture_in(parent, &format!("mod{i}"));
                let program = index_py(
                    &f,
                    &format!(
                        "import sys, time\n\
                         def main(args):\n    \
                             for n in range(1, 201):\n        \
                                 print('mod{i} line', n)\n        \
                                 print('mod{i} err', n, file=sys.stderr)\n        \
                                 if n % 50 == 0:\n            \
                                     time.sleep(0.01)\n    \
                             return True\n"
                    ),
                );
                let outcome = run_env(registry, &f, &program, &[], &[], Duration::from_secs(60));
                assert_success(&outcome, &f);
                let lines = output_lines(&f);
                assert_eq!(lines.len(), 400, "mod{i}: {lines:?}");
                for n in 1..=200 {
                    assert!(lines.contains(&format!("mod{i} line {n}")), "mod{i} {n}");
                    assert!(lines.contains(&format!("mod{i} err {n}")), "mod{i} {n}");
                }
            });
        }
    });
    assert_eq!(registry.server_pids().len(), 1);
}

#[test]
fn forked_modules_do_not_see_each_others_imports() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    force_path(Some(PythonPath::ForkServer));
    let first = fixture_in(parent.path(), "first");
    write(&first.dir.join("probe_mod.py"), "STATE = []\n", 0o644);
    let program = index_py(
        &first,
        "import json, sys\nimport probe_mod\n\
         def main(args):\n    \
             json.LEAKED = True\n    \
             probe_mod.STATE.append(1)\n    \
             sys.modules['leaked_module'] = probe_mod\n    \
             return True\n",
    );
    let outcome = run_env(
        &registry,
        &first,
        &program,
        &[],
        &[],
        Duration::from_secs(30),
    );
    assert_success(&outcome, &first);
    let second = fixture_in(parent.path(), "second");
    let program = index_py(
        &second,
        "import json, sys\n\
         def main(args):\n    \
             print('leaks', hasattr(json, 'LEAKED'), 'leaked_module' in sys.modules, \
                   'probe_mod' in sys.modules, \
                   any(name.startswith('_updater_module_first') for name in sys.modules))\n    \
             return True\n",
    );
    let outcome = run_env(
        &registry,
        &second,
        &program,
        &[],
        &[],
        Duration::from_secs(30),
    );
    force_path(None);
    assert_success(&outcome, &second);
    assert_eq!(
        tagged(&second, "leaks "),
        ["False False False False".to_string()]
    );
    assert_eq!(registry.server_pids().len(), 1);
}

#[test]
fn forked_timeout_kills_the_process_group() {
    let f = fixture("py-mod");
    let program = index_py(
        &f,
        "import os, subprocess, time\n\
         def main(args):\n    \
             child = subprocess.Popen(['sleep', '60'])\n    \
             with open('pids', 'w') as out:\n        \
                 out.write('%d %d\\n' % (os.getpid(), child.pid))\n    \
             print('started', flush=True)\n    \
             time.sleep(60)\n    \
             return True\n",
    );
    force_path(Some(PythonPath::ForkServer));
    let started = Instant::now();
    let outcome = run_program(&f, &program, &[], Duration::from_secs(1));
    force_path(None);
    let elapsed = started.elapsed();
    assert_eq!(
        failure(&outcome),
        "timed out after 1s (process group killed)"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let pids: Vec<i32> = fs::read_to_string(f.dir.join("pids"))
        .expect("pids")
        .split_whitespace()
        .map(|pid| pid.parse().expect("pid"))
        .collect();
    for pid in &pids {
        let dead = wait_dead(*pid, Duration::from_secs(3));
        if !dead {
            kill_leftover(*pid);
        }
        assert!(dead, "{pid} survived the timeout");
    }
    assert!(output_lines(&f).contains(&"started".to_string()));
    assert!(log_text(&f).contains("failure: timed out after 1s"));
}

#[test]
fn fork_server_death_falls_back_and_a_new_one_starts() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    let f = fixture_in(parent.path(), "mod");
    let program = index_py(
        &f,
        "import time\ndef main(args):\n    \
             if args:\n        \
                 open('started', 'w').close()\n        \
                 time.sleep(float(args[0]))\n    \
             print('ran')\n    \
             return True\n",
    );
    force_path(Some(PythonPath::ForkServer));
    let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
    assert_success(&outcome, &f);
    let pids = registry.server_pids();
    assert_eq!(pids.len(), 1);
    let first = pids[0];

    // Killed while a module runs: the run ends when the module does, by its verdict file.
    let outcome = thread::scope(|scope| {
        let running = scope.spawn(|| {
            force_path(Some(PythonPath::ForkServer));
            run_env(
                &registry,
                &f,
                &program,
                &["1.5"],
                &[],
                Duration::from_secs(30),
            )
        });
        let end = Instant::now() + Duration::from_secs(20);
        while !f.dir.join("started").exists() && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        kill_leftover(i32::try_from(first).expect("pid"));
        running.join().expect("thread")
    });
    assert_success(&outcome, &f);
    assert!(wait_dead(
        i32::try_from(first).expect("pid"),
        Duration::from_secs(3)
    ));

    // The next run (wanting the fork-server, whatever UPDATER_NO_FORKSERVER says) finds it
    // dead, runs in a fresh interpreter, and retires it.
    force_path(Some(PythonPath::ForkServer));
    USED_PATH.with(|used| used.set(None));
    let outcome = run_in(
        &registry,
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &program,
            args: Some(&[]),
            env: &[],
            timeout: Duration::from_secs(30),
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        },
    )
    .expect("run");
    assert_success(&outcome, &f);
    assert_eq!(used_path(), Some(PythonPath::Fresh));
    assert!(registry.server_pids().is_empty());

    // And the one after that has a new server.
    force_path(Some(PythonPath::ForkServer));
    let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
    force_path(None);
    assert_success(&outcome, &f);
    let pids = registry.server_pids();
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], first);
    assert_eq!(output_lines(&f), ["ran"; 4]);
}

#[test]
fn runs_the_fork_server_cannot_reproduce_use_a_fresh_interpreter() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    force_path(Some(PythonPath::ForkServer));
    let ok = "def main(args):\n    return True\n";

    let f = fixture_in(parent.path(), "pinned");
    write(&f.dir.join(".python-version"), "system\n", 0o644);
    let program = index_py(&f, ok);
    USED_PATH.with(|used| used.set(None));
    let spec_env = [("UPDATER_MODULE".to_string(), "demo".to_string())];
    let outcome = run_in(
        &registry,
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &program,
            args: None,
            env: &spec_env,
            timeout: Duration::from_secs(30),
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        },
    )
    .expect("run");
    assert_success(&outcome, &f);
    assert_eq!(used_path(), Some(PythonPath::Fresh));

    let f = fixture_in(parent.path(), "odd-env");
    let program = index_py(&f, ok);
    let spec_env = [("PYTHONPATH".to_string(), "/elsewhere".to_string())];
    let outcome = run_in(
        &registry,
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &program,
            args: None,
            env: &spec_env,
            timeout: Duration::from_secs(30),
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        },
    )
    .expect("run");
    force_path(None);
    assert_success(&outcome, &f);
    assert_eq!(used_path(), Some(PythonPath::Fresh));
    assert!(registry.server_pids().is_empty());
}

#[test]
fn fork_server_exits_when_its_stdout_closes() {
    let f = fixture("mod");
    let key = server_key(
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program: &Program::PythonMain(f.dir.join("index.py")),
            args: None,
            env: &[],
            timeout: Duration::from_secs(30),
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        },
        &locate(Path::new("python3")),
        &f.dir,
    )
    .expect("key");
    let server = ForkServer::start(&key).expect("start");
    let pid = i32::try_from(server.pid).expect("pid");
    assert!(alive(pid));
    assert!(server.socket.exists());
    let status = server.close_and_wait(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!alive(pid));
    assert!(
        !server._dir.path().exists(),
        "the server removes its directory"
    );
}

#[test]
fn programs_do_not_inherit_the_fork_servers_pipe() {
    let parent = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    let f = fixture_in(parent.path(), "py");
    let program = index_py(&f, "def main(args):\n    return True\n");
    force_path(Some(PythonPath::ForkServer));
    let outcome = run_env(&registry, &f, &program, &[], &[], Duration::from_secs(30));
    force_path(None);
    assert_success(&outcome, &f);
    let slot = lock(&registry.slots)
        .values()
        .next()
        .map(Arc::clone)
        .expect("a slot");
    let server = lock(&slot).server.clone().expect("a server");
    let pipes = server.pipes();
    assert_eq!(pipes.len(), 1);
    assert!(pipes[0].starts_with("pipe:"), "{pipes:?}");

    let g = fixture_in(parent.path(), "sh");
    let program = script(
        &g,
        "update",
        "for fd in /proc/$$/fd/*; do echo \"fd $(readlink \"$fd\")\"; done\n",
    );
    let outcome = run_env(&registry, &g, &program, &[], &[], Duration::from_secs(30));
    assert_success(&outcome, &g);
    let links = tagged(&g, "fd ");
    assert!(!links.is_empty());
    for pipe in &pipes {
        assert!(!links.contains(pipe), "{pipe} inherited: {links:?}");
    }
}

/// Environment variable naming the file where [`fork_server_helper_process`] reports.
const HELPER_REPORT: &str = "UPDATER_TEST_FORKSERVER_REPORT";

/// Not a test on its own: run in a child process by [`fork_server_ends_with_the_process`],
/// it runs a module the production way and reports the servers it left.
#[test]
fn fork_server_helper_process() {
    let Some(report) = std::env::var_os(HELPER_REPORT) else {
        return;
    };
    let f = fixture("mod");
    let program = index_py(&f, "def main(args):\n    return True\n");
    let outcome = run_program(&f, &program, &[], Duration::from_secs(30));
    assert_success(&outcome, &f);
    let path = match used_path() {
        Some(PythonPath::ForkServer) => "fork-server",
        _ => "fresh",
    };
    let pids: Vec<String> = SERVERS
        .server_pids()
        .iter()
        .map(|pid| pid.to_string())
        .collect();
    fs::write(report, format!("{path} {}\n", pids.join(" "))).expect("report");
    // The test harness exits without dropping statics, like the binary.
}

#[test]
fn fork_server_ends_with_the_process() {
    for (no_fork_server, expected) in [(None, "fork-server"), (Some("1"), "fresh")] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let report = tmp.path().join("report");
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "--exact",
                "runner::tests::fork_server_helper_process",
                "--test-threads=1",
            ])
            .env(HELPER_REPORT, &report)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match no_fork_server {
            Some(value) => command.env(NO_FORK_SERVER_VAR, value),
            None => command.env_remove(NO_FORK_SERVER_VAR),
        };
        let status = command.status().expect("run the helper");
        assert!(status.success());
        let report = fs::read_to_string(&report).expect("report");
        let mut words = report.split_whitespace();
        assert_eq!(words.next(), Some(expected), "{report}");
        let pids: Vec<i32> = words.map(|pid| pid.parse().expect("pid")).collect();
        assert_eq!(
            pids.len(),
            usize::from(expected == "fork-server"),
            "{report}"
        );
        for pid in pids {
            let dead = wait_dead(pid, Duration::from_secs(5));
            if !dead {
                kill_leftover(pid);
            }
            assert!(dead, "fork-server {pid} outlived its process");
        }
    }
}

/// Not a test: `cargo test --lib runner::tests::timing -- --ignored --nocapture` prints the
/// cost of a run for each way of running a module (`TIMING_PYTHON` picks the interpreter).
/// Executable and fork-server runs alternate, so that both see the same machine load.
#[test]
#[ignore]
fn timing() {
    const RUNS: usize = 50;
    const FRESH_RUNS: usize = 10;
    let python = std::env::var_os("TIMING_PYTHON").unwrap_or_else(|| "python3".into());
    let f = fixture("mod");
    let executable = script(&f, "update", "true\n");
    let python_main = index_py(&f, "def main(args):\n    return True\n");
    let time = |program: &Program, path: PythonPath| {
        force_path(Some(path));
        let started = Instant::now();
        let outcome = run(&RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program,
            args: None,
            env: &[],
            timeout: Duration::from_secs(30),
            log_file: &f.log,
            python: Path::new(&python),
            pgid_file: None,
            fork_server: crate::commands::settings::environment().fork_server,
        })
        .expect("run");
        assert!(outcome.success);
        force_path(None);
        started.elapsed().as_secs_f64() * 1000.0
    };
    let summary = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        (times[times.len() / 2], mean)
    };
    // Warm-up: starts the fork-server.
    time(&python_main, PythonPath::ForkServer);
    let report = |how: &str, exe: Vec<f64>, forked: Vec<f64>| {
        let ((exe_median, exe_mean), (forked_median, forked_mean)) =
            (summary(exe), summary(forked));
        println!(
            "{how}: median/mean ms per run: executable {exe_median:.2}/{exe_mean:.2}, \
             fork-server {forked_median:.2}/{forked_mean:.2}; difference {:.2}/{:.2}",
            forked_median - exe_median,
            forked_mean - exe_mean
        );
    };
    let (mut exe, mut forked) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        exe.push(time(&executable, PythonPath::Fresh));
        forked.push(time(&python_main, PythonPath::ForkServer));
    }
    report("alternating", exe, forked);
    let exe = (0..RUNS)
        .map(|_| time(&executable, PythonPath::Fresh))
        .collect();
    let forked = (0..RUNS)
        .map(|_| time(&python_main, PythonPath::ForkServer))
        .collect();
    report("in blocks", exe, forked);
    let (fresh_median, fresh_mean) = summary(
        (0..FRESH_RUNS)
            .map(|_| time(&python_main, PythonPath::Fresh))
            .collect(),
    );
    println!(
        "python {}: fresh interpreter median/mean {fresh_median:.2}/{fresh_mean:.2} ms per run",
        Path::new(&python).display()
    );
}

/// Runs `program` with its process group recorded in `record` (`RunSpec::pgid_file`).
fn run_recorded(f: &Fixture, program: &Program, record: &Path) -> RunOutcome {
    let env = vec![(
        "UPDATER_SEEN_FILE".to_string(),
        f.dir.join("seen").display().to_string(),
    )];
    USED_PATH.with(|used| used.set(None));
    let outcome = run_in(
        &SERVERS,
        &RunSpec {
            module: "demo",
            module_dir: &f.dir,
            program,
            args: None,
            env: &env,
            timeout: Duration::from_secs(60),
            log_file: &f.log,
            python: Path::new("python3"),
            pgid_file: Some(record),
            fork_server: true,
        },
    )
    .expect("run");
    if let (Program::PythonMain(_), Some(forced)) = (program, forced_path()) {
        assert_eq!(used_path(), Some(forced), "log:\n{}", log_text(f));
    }
    outcome
}

#[test]
fn an_executable_runs_only_after_its_process_group_is_recorded() {
    let f = fixture("recorded");
    // The entry's first action: what the record says when it starts, next to its own group.
    let program = script(
        &f,
        "update",
        "{ cat \"$0.record\" 2>/dev/null || echo missing; echo \"group $$\"; } > \"$UPDATER_SEEN_FILE\"\n",
    );
    // The script reads `<its path>.record`: point that at the record file.
    let record = f.dir.join("update.record");
    let outcome = run_recorded(&f, &program, &record);
    assert_success(&outcome, &f);
    let seen = fs::read_to_string(f.dir.join("seen")).expect("the entry's report");
    let mut lines = seen.lines();
    let recorded = lines.next().expect("record line");
    let group = lines.next().expect("group line");
    let pgid = group.strip_prefix("group ").expect("group line");
    assert!(
        recorded.starts_with(&format!("{pgid} ")),
        "the entry started before its group was recorded: {seen:?}"
    );
}

#[test]
fn a_python_main_runs_only_after_its_process_group_is_recorded() {
    on_both_paths(|path| {
        let f = fixture("recorded_py");
        let record = f.dir.join("record");
        let program = index_py(
            &f,
            "import os\n\
             try:\n    SEEN = open('record').read().strip()\n\
             except OSError:\n    SEEN = 'missing'\n\
             def main(args):\n\
             \x20   with open(os.environ['UPDATER_SEEN_FILE'], 'w') as out:\n\
             \x20       out.write(SEEN + '\\n' + 'group %d\\n' % os.getpgrp())\n\
             \x20   return True\n",
        );
        let outcome = run_recorded(&f, &program, &record);
        assert_success(&outcome, &f);
        let seen = fs::read_to_string(f.dir.join("seen")).expect("the entry's report");
        let mut lines = seen.lines();
        let recorded = lines.next().expect("record line");
        let pgid = lines
            .next()
            .and_then(|line| line.strip_prefix("group "))
            .expect("group line");
        assert!(
            recorded.starts_with(&format!("{pgid} ")),
            "{path:?}: the module ran before its group was recorded: {seen:?}"
        );
    });
}

#[test]
fn a_prewarmed_fork_server_is_the_one_the_first_run_uses() {
    if forced_path() == Some(PythonPath::Fresh)
        || !crate::commands::settings::environment().fork_server
    {
        return;
    }
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = fixture_in(tmp.path(), "mod");
    let program = index_py(&f, "def main(args):\n    return True\n");
    super::pymain::prewarm_in(registry, Path::new("python3"), tmp.path())
        .expect("a prewarm thread")
        .join()
        .expect("the prewarm thread ends");
    let started = registry.server_pids();
    assert_eq!(started.len(), 1, "one fork-server started");
    let outcome = run_env(registry, &f, &program, &[], &[], Duration::from_secs(30));
    assert_success(&outcome, &f);
    assert_eq!(used_path(), Some(PythonPath::ForkServer));
    assert_eq!(
        registry.server_pids(),
        started,
        "the run used the prewarmed server"
    );
}
