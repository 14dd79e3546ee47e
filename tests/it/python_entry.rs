//! Python `main(args)` entry points under the HOMESERVER contract (SPEC §5, §10): the import context
//! (`updates` is the install root whatever it is called, the module is `updates.modules.<name>`,
//! today's circular framework import tolerated once as runpy does), the verdict on a channel of its
//! own, `details`, what modules rely on in their process, the interpreter, and output that outlives
//! the run. Each behaviour is checked in a process forked by the fork-server and in a fresh
//! interpreter.
//!
//! The fixtures are our own, in the shapes of `homeserversltd/updates` (framework `__init__.py`,
//! `index.py`, `utils/`; modules whose `__init__.py` does `from .index import main`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use updater::runner::{self, Program, RunOutcome, RunSpec};

/// How a `main(args)` module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Forked by the fork-server (the default).
    Fork,
    /// A fresh interpreter: a run variable that is not `UPDATER_*` keeps the fork-server out (it
    /// could change how python starts), as `UPDATER_NO_FORKSERVER=1` does for the binary.
    Fresh,
}

const BOTH: [Way; 2] = [Way::Fork, Way::Fresh];

/// Python that tells which way the module process was started (its parent is the fork-server,
/// whose command line holds the server's source, or this test process).
const WAY_PY: &str = "
def _way():
    with open('/proc/%d/cmdline' % os.getppid(), 'rb') as f:
        return 'fork' if b'_module_process' in f.read() else 'fresh'
";

/// A temporary directory holding an install root named `root-7` (not `updates`).
struct Root {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

/// The install root most tests share (one module name per test), so that they share one
/// fork-server: a process keeps at most 8, one per parent directory of modules. It has the
/// circular framework. Kept in cargo's scratch directory for tests (never removed while tests run).
fn shared() -> &'static Root {
    static SHARED: std::sync::LazyLock<Root> = std::sync::LazyLock::new(|| {
        let tmp = tempfile::Builder::new()
            .prefix("py-entry-shared.")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let root = tmp.path().join("root-7");
        fs::create_dir_all(root.join("modules")).expect("mkdir");
        let root = Root { _tmp: tmp, root };
        root.framework();
        root
    });
    &SHARED
}

impl Root {
    fn new() -> Root {
        let tmp = tempfile::Builder::new()
            .prefix("py-entry.")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("root-7");
        fs::create_dir_all(root.join("modules")).expect("mkdir");
        Root { _tmp: tmp, root }
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.join(rel))
            .unwrap_or_else(|e| panic!("read {rel}: {e}; log:\n{}", self.log_of(rel)))
    }

    fn log_of(&self, _rel: &str) -> String {
        fs::read_dir(self.root.join("logs"))
            .map(|dir| {
                dir.flatten()
                    .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The framework in today's upstream shape, circular import included: `__init__.py` imports
    /// `utils.index` before it defines `compare_schema_versions`; `utils/__init__.py` imports
    /// `utils.helpers`, which imports `updates.index`, which does `from . import
    /// compare_schema_versions`. A plain first `import updates` fails with an ImportError whose
    /// name is `updates`; the second succeeds (`updates.utils.index` stayed imported). Every
    /// execution of `__init__.py` appends a line to `init-runs`.
    fn framework(&self) {
        self.write(
            "__init__.py",
            "import os\n\
             with open(os.path.join(os.path.dirname(__file__), 'init-runs'), 'a') as f:\n    \
             f.write('%d\\n' % os.getpid())\n\
             from .utils.index import log_message\n\n\
             def compare_schema_versions(a, b):\n    \
             return (a > b) - (a < b)\n",
        );
        self.write(
            "index.py",
            "from . import compare_schema_versions\nfrom .utils.index import log_message\n",
        );
        self.write(
            "utils/__init__.py",
            "from .index import log_message\nfrom .helpers import describe\n",
        );
        self.write(
            "utils/index.py",
            "import logging\n\n\
             def log_message(message, level='INFO'):\n    \
             logging.log(getattr(logging, level), message)\n",
        );
        self.write(
            "utils/helpers.py",
            "from updates.index import log_message\n\n\
             def describe(x):\n    return 'described:' + x\n",
        );
    }

    fn module_dir(&self, name: &str) -> PathBuf {
        self.root.join("modules").join(name)
    }

    /// A module `name` in the upstream shape: `__init__.py` re-exports `main` from `index.py`.
    fn module(&self, name: &str, index_py: &str) -> Program {
        // Nothing of an earlier run (of the other way) is left.
        let _ = fs::remove_dir_all(self.module_dir(name));
        let _ = fs::remove_file(self.log_file(name));
        self.write(
            &format!("modules/{name}/__init__.py"),
            "from .index import main\n__all__ = ['main']\n",
        );
        self.write(&format!("modules/{name}/index.py"), index_py);
        Program::PythonMain(self.module_dir(name).join("index.py"))
    }

    fn log_file(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    fn run(&self, name: &str, program: &Program, args: Option<&[String]>, way: Way) -> RunOutcome {
        self.run_with(name, program, args, way, Path::new("python3"))
    }

    fn run_with(
        &self,
        name: &str,
        program: &Program,
        args: Option<&[String]>,
        way: Way,
        python: &Path,
    ) -> RunOutcome {
        let dir = self.module_dir(name);
        let mut env = vec![
            ("UPDATER_MODULE".to_string(), name.to_string()),
            (
                "UPDATER_MODULE_DIR".to_string(),
                dir.to_string_lossy().into_owned(),
            ),
        ];
        if way == Way::Fresh {
            env.push(("TEST_FRESH_INTERPRETER".to_string(), "1".to_string()));
        }
        let log_file = self.log_file(name);
        runner::run(&RunSpec {
            module: name,
            module_dir: &dir,
            program,
            args,
            env: &env,
            timeout: Duration::from_secs(60),
            log_file: &log_file,
            python,
            pgid_file: None,
            fork_server: updater::commands::settings::environment().fork_server,
        })
        .expect("run")
    }

    fn log(&self, name: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.log_file(name)).expect("read log")).into_owned()
    }
}

/// Checks that the module recorded the way it was meant to run.
fn assert_way(recorded: &str, way: Way) {
    // UPDATER_NO_FORKSERVER in the test's environment sends every run to a fresh interpreter.
    let expected = if way == Way::Fork && std::env::var_os("UPDATER_NO_FORKSERVER").is_none() {
        "fork"
    } else {
        "fresh"
    };
    assert_eq!(recorded, expected, "the run did not take the way asked");
}

fn assert_ok(outcome: &RunOutcome, log: &str) {
    assert!(
        outcome.success,
        "expected success, got {outcome:?}; log:\n{log}"
    );
}

fn assert_failed<'a>(outcome: &'a RunOutcome, log: &str) -> &'a str {
    assert!(!outcome.success, "expected failure; log:\n{log}");
    outcome.reason.as_deref().expect("a failure has a reason")
}

// ---- import context (SPEC §10) ---------------------------------------------------------------

/// A module in the upstream shape: absolute framework imports, relative ones (sibling and
/// `from ...utils`), `main` re-exported by `__init__.py`. It records what it saw in `seen.json`.
const HOMESERVER_INDEX: &str = "import json, logging, os, sys
from updates.utils.helpers import describe
from updates.index import log_message
from updates import compare_schema_versions
from .git_operations import SIBLING
from ...utils import index as utils_index
from . import git_operations
";

fn homeserver_index() -> String {
    format!(
        "{HOMESERVER_INDEX}{WAY_PY}
def main(args):
    log_message('hello from log_message')
    logging.debug('a debug line')
    seen = {{
        'name': __name__,
        'package': __package__,
        'args': args,
        'describe': describe('x'),
        'compare': compare_schema_versions('2', '1'),
        'sibling': SIBLING,
        'utils_index': utils_index.__name__,
        'updates_init': sys.modules['updates'].__file__,
        'package_main_is_index_main': sys.modules[__package__].main is main,
        'path': os.environ.get('PATH'),
        'unbuffered': os.environ.get('PYTHONUNBUFFERED'),
        'way': _way(),
        'pid': os.getpid(),
    }}
    with open('seen.json', 'w') as f:
        json.dump(seen, f)
    return {{'success': True, 'updated': True, 'message': 'ok'}}
"
    )
}

#[test]
fn homeserver_module_imports_as_updates_modules_name_under_a_root_of_any_name() {
    for way in BOTH {
        let root = shared();
        let program = root.module("adblock", &homeserver_index());
        root.write("modules/adblock/git_operations.py", "SIBLING = 'sibling'\n");
        let outcome = root.run("adblock", &program, None, way);
        let log = root.log("adblock");
        assert_ok(&outcome, &log);
        let seen: Value =
            serde_json::from_str(&root.read("modules/adblock/seen.json")).expect("seen.json");
        assert_way(seen["way"].as_str().unwrap_or(""), way);
        assert_eq!(seen["name"], "updates.modules.adblock.index", "{way:?}");
        assert_eq!(seen["package"], "updates.modules.adblock");
        assert_eq!(seen["args"], Value::Null, "a sync calls main(None)");
        assert_eq!(seen["describe"], "described:x");
        assert_eq!(seen["compare"], 1);
        assert_eq!(seen["sibling"], "sibling");
        assert_eq!(seen["utils_index"], "updates.utils.index");
        assert_eq!(
            seen["updates_init"],
            root.root.join("__init__.py").display().to_string()
        );
        assert_eq!(seen["package_main_is_index_main"], true);
        // The circular framework import failed once and was tried again, as under runpy: the
        // module's process ran the framework's __init__.py twice.
        let pid = seen["pid"].as_u64().expect("pid").to_string();
        let runs = root.read("init-runs");
        assert_eq!(
            runs.lines().filter(|l| *l == pid).count(),
            2,
            "{way:?}: {runs}"
        );
        // details: what main returned beyond success.
        assert_eq!(
            outcome.details,
            Some(json!({"updated": true, "message": "ok"}))
        );
    }
}

#[test]
fn the_fixture_framework_really_has_the_circular_import_trap() {
    // `cd <parent> && python3 -c 'import updates'` with the root named `updates`: the first
    // import fails with name == 'updates', a second one in the same process succeeds.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Root {
        root: tmp.path().join("updates"),
        _tmp: tmp,
    };
    root.framework();
    fs::create_dir_all(root.root.join("modules")).expect("mkdir");
    let out = std::process::Command::new("python3")
        .current_dir(root.root.parent().expect("parent"))
        .args([
            "-B",
            "-c",
            "import sys\ntry:\n    import updates\n    print('first ok')\nexcept ImportError as e:\n    \
             print('first failed', e.name)\nimport updates\nprint('second', updates.compare_schema_versions('1', '2'))",
        ])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "first failed updates\nsecond -1\n", "{out:?}");
}

#[test]
fn other_import_errors_of_the_framework_fail_the_module() {
    for way in BOTH {
        let root = Root::new();
        root.write(
            "__init__.py",
            "raise ImportError('framework needs foo', name='foo')\n",
        );
        let program = root.module("m", "def main(args):\n    return True\n");
        let outcome = root.run("m", &program, None, way);
        let log = root.log("m");
        let reason = assert_failed(&outcome, &log);
        assert!(
            reason.contains("ImportError: framework needs foo"),
            "{way:?}: {reason}"
        );

        // The tolerated error, but again on the second try: a failure too.
        let root = Root::new();
        root.write(
            "__init__.py",
            "raise ImportError('still circular', name='updates')\n",
        );
        let program = root.module("m", "def main(args):\n    return True\n");
        let outcome = root.run("m", &program, None, way);
        let reason = assert_failed(&outcome, &root.log("m"));
        assert!(
            reason.contains("ImportError: still circular"),
            "{way:?}: {reason}"
        );
    }
}

#[test]
fn root_without_init_py_is_a_namespace_package_and_main_comes_from_index_py() {
    for way in BOTH {
        let root = Root::new();
        // No framework, no module __init__.py: updates and updates.modules.<name> are
        // namespace-like packages; main is the one in index.py.
        root.write(
            "modules/plain/index.py",
            &format!(
                "import os, json\nfrom .helper import VALUE\n{WAY_PY}\ndef main(args):\n    \
                 json.dump({{'name': __name__, 'value': VALUE, 'way': _way()}}, open('seen.json', 'w'))\n    \
                 return True\n"
            ),
        );
        root.write("modules/plain/helper.py", "VALUE = 42\n");
        let program = Program::PythonMain(root.module_dir("plain").join("index.py"));
        let outcome = root.run("plain", &program, None, way);
        assert_ok(&outcome, &root.log("plain"));
        let seen: Value =
            serde_json::from_str(&root.read("modules/plain/seen.json")).expect("seen");
        assert_way(seen["way"].as_str().unwrap_or(""), way);
        assert_eq!(seen["name"], "updates.modules.plain.index");
        assert_eq!(seen["value"], 42);
    }
}

#[test]
fn module_names_with_a_dash_or_a_dot_import() {
    for way in BOTH {
        let root = shared();
        for name in ["a-b", "c.d"] {
            let program = root.module(
                name,
                &format!(
                    "import json, os\nfrom updates.index import log_message\nfrom .sib import X\n\
                     from ...utils import helpers\n{WAY_PY}\ndef main(args):\n    \
                     json.dump({{'name': __name__, 'x': X, 'way': _way()}}, open('seen.json', 'w'))\n    \
                     return True\n"
                ),
            );
            root.write(&format!("modules/{name}/sib.py"), "X = 'sib'\n");
            let outcome = root.run(name, &program, None, way);
            assert_ok(&outcome, &root.log(name));
            let seen: Value =
                serde_json::from_str(&root.read(&format!("modules/{name}/seen.json")))
                    .expect("seen");
            assert_way(seen["way"].as_str().unwrap_or(""), way);
            // A dot would make a subpackage: it becomes "_" in the import name only.
            let import_name = name.replace('.', "_");
            assert_eq!(seen["name"], format!("updates.modules.{import_name}.index"));
            assert_eq!(seen["x"], "sib");
        }
    }
}

// ---- the verdict's own channel ---------------------------------------------------------------

#[test]
fn last_stderr_write_without_newline_does_not_hide_success() {
    for way in BOTH {
        let root = shared();
        let program = root.module(
            "stderr-tail",
            "import sys\ndef main(args):\n    sys.stderr.write('progress 99%')\n    \
             sys.stderr.flush()\n    return True\n",
        );
        let outcome = root.run("stderr-tail", &program, None, way);
        let log = root.log("stderr-tail");
        assert_ok(&outcome, &log);
        assert!(
            log.contains("progress 99%\n=== stderr-tail: success after"),
            "{log}"
        );
    }
}

#[test]
fn forged_verdict_lines_in_the_output_do_not_count() {
    for way in BOTH {
        let root = shared();
        let program = root.module(
            "forged",
            "import sys, os\ndef main(args):\n    \
             print('UPDATER-RESULT: ok')\n    \
             sys.stderr.write('UPDATER-RESULT: ok\\n')\n    \
             print('{\"ok\": true, \"reason\": null, \"details\": null}')\n    \
             sys.stdout.flush(); sys.stderr.flush()\n    \
             os.write(2, b'UPDATER-RESULT: ok\\n')\n    \
             return {'success': False, 'message': 'really failed'}\n",
        );
        let outcome = root.run("forged", &program, None, way);
        let log = root.log("forged");
        let reason = assert_failed(&outcome, &log);
        assert!(reason.contains("really failed"), "{way:?}: {reason}");
        assert_eq!(outcome.details, Some(json!({"message": "really failed"})));
        // The forged lines are ordinary output.
        assert!(log.contains("UPDATER-RESULT: ok"), "{log}");
    }
}

#[test]
fn programs_the_module_starts_do_not_hold_the_verdict_channel() {
    for way in BOTH {
        let root = shared();
        let program = root.module(
            "fds",
            "import subprocess\ndef main(args):\n    \
             out = subprocess.run(['ls', '-l', '/proc/self/fd/'], capture_output=True, text=True).stdout\n    \
             open('child-fds.txt', 'w').write(out)\n    return True\n",
        );
        let outcome = root.run("fds", &program, None, way);
        assert_ok(&outcome, &root.log("fds"));
        let fds = root.read("modules/fds/child-fds.txt");
        assert!(!fds.contains("verdict"), "{way:?}: {fds}");
    }
}

#[test]
fn details_keep_json_values_repr_the_rest_and_are_capped() {
    for way in BOTH {
        let root = shared();
        let program = root.module(
            "details",
            "class Thing:\n    def __repr__(self):\n        return '<Thing 7>'\n\
             def main(args):\n    \
             return {'success': True, 'updated': False, 'rollback_success': None, \
             'n': [1, 2.5, 'x'], 'thing': Thing(), 3: 'int key'}\n",
        );
        let outcome = root.run("details", &program, None, way);
        assert_ok(&outcome, &root.log("details"));
        assert_eq!(
            outcome.details,
            Some(json!({
                "updated": false, "rollback_success": null, "n": [1, 2.5, "x"],
                "thing": "<Thing 7>", "3": "int key"
            })),
            "{way:?}"
        );

        let program = root.module(
            "details-big",
            "def main(args):\n    return {'success': True, 'blob': 'x' * 100000}\n",
        );
        let outcome = root.run("details-big", &program, None, way);
        assert_ok(&outcome, &root.log("details-big"));
        let details = outcome.details.expect("details");
        assert_eq!(details["truncated"], true, "{details}");
        assert!(
            details["bytes"].as_u64().unwrap_or(0) > 100_000,
            "{details}"
        );

        // No dict, no details.
        let program = root.module("details-none", "def main(args):\n    return True\n");
        assert_eq!(root.run("details-none", &program, None, way).details, None);
    }
}

// ---- what modules rely on in their process ---------------------------------------------------

#[test]
fn main_gets_none_in_a_sync_and_check_when_asked() {
    for way in BOTH {
        let root = shared();
        let program = root.module(
            "args",
            "import json\ndef main(args):\n    \
             with open('calls.txt', 'a') as f:\n        f.write(json.dumps(args) + '\\n')\n    \
             return {'success': True, 'update_available': args == ['--check']}\n",
        );
        assert_ok(&root.run("args", &program, None, way), &root.log("args"));
        let check = runner::check_args();
        let outcome = root.run("args", &program, Some(&check), way);
        assert_ok(&outcome, &root.log("args"));
        assert_eq!(outcome.details, Some(json!({"update_available": true})));
        assert_eq!(root.read("modules/args/calls.txt"), "null\n[\"--check\"]\n");
    }
}

#[test]
fn python_gets_fixed_path_unbuffered_and_a_debug_root_logger_on_stdout() {
    for way in BOTH {
        let root = shared();
        let program = root.module("atuin", &homeserver_index());
        root.write("modules/atuin/git_operations.py", "SIBLING = 1\n");
        let outcome = root.run("atuin", &program, None, way);
        let log = root.log("atuin");
        assert_ok(&outcome, &log);
        let seen: Value =
            serde_json::from_str(&root.read("modules/atuin/seen.json")).expect("seen");
        // A launcher (a pyenv shim) may put its own directories first.
        let path = seen["path"].as_str().unwrap_or("");
        assert!(
            path == runner::DEFAULT_PATH || path.ends_with(&format!(":{}", runner::DEFAULT_PATH)),
            "{path}"
        );
        assert_eq!(seen["unbuffered"], "1");
        let line = |level: &str, text: &str| {
            log.lines().any(|line| {
                // [YYYY-MM-DD HH:MM:SS] [LEVEL] message
                let b = line.as_bytes();
                line.len() > 22
                    && b[0] == b'['
                    && b[5] == b'-'
                    && b[8] == b'-'
                    && b[11] == b' '
                    && b[14] == b':'
                    && b[17] == b':'
                    && &line[20..22] == "] "
                    && line[22..] == format!("[{level}] {text}")
            })
        };
        assert!(line("INFO", "hello from log_message"), "{way:?}:\n{log}");
        assert!(line("DEBUG", "a debug line"), "{way:?}:\n{log}");
    }
}

#[test]
fn main_returning_false_runs_once_more_before_it_fails() {
    for way in BOTH {
        let root = shared();
        // False the first time, True the second.
        let program = root.module(
            "flaky",
            "CALLS = []\ndef main(args):\n    CALLS.append(1)\n    \
             open('calls.txt', 'a').write('call\\n')\n    return len(CALLS) > 1\n",
        );
        let outcome = root.run("flaky", &program, None, way);
        let log = root.log("flaky");
        assert_ok(&outcome, &log);
        assert_eq!(root.read("modules/flaky/calls.txt"), "call\ncall\n");
        assert!(
            log.contains("main() returned False; running it once more"),
            "{log}"
        );

        let program = root.module(
            "never",
            "def main(args):\n    open('calls.txt', 'a').write('call\\n')\n    return False\n",
        );
        let outcome = root.run("never", &program, None, way);
        let reason = assert_failed(&outcome, &root.log("never"));
        assert_eq!(reason, "main() returned False twice");
        assert_eq!(root.read("modules/never/calls.txt"), "call\ncall\n");
    }
}

#[test]
fn the_interpreter_given_is_the_one_that_runs() {
    for way in BOTH {
        let root = shared();
        let marker = root.root.join("wrapper-used");
        let wrapper = root.root.join("mypython");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho used >> '{}'\nexec python3 \"$@\"\n",
                marker.display()
            ),
        )
        .expect("write");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
        let program = root.module("wrapped", "def main(args):\n    return True\n");
        let _ = fs::remove_file(&marker);
        let outcome = root.run_with("wrapped", &program, None, way, &wrapper);
        assert_ok(&outcome, &root.log("wrapped"));
        assert!(marker.exists(), "{way:?}: the wrapper did not run");
        assert!(root
            .log("wrapped")
            .contains(&format!("with {}", wrapper.display())));
    }
}

// ---- through the binary: --python, daemons that outlive the run ------------------------------

/// Waits (bounded, as a safety net only) for `path` to exist.
fn wait_for_file(path: &Path) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    path.exists()
}

fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
    }
}

/// A shell loop that waits for `go`, then writes 200 lines to its stdout and records `done`.
fn daemon_script(go: &Path, done: &Path) -> String {
    format!(
        "while [ ! -e '{go}' ]; do sleep 0.02; done; i=0; \
         while [ $i -lt 200 ]; do echo \"late line $i\"; i=$((i+1)); done; \
         echo survived > '{done}'",
        go = go.display(),
        done = done.display()
    )
}

#[test]
fn daemons_started_by_entries_outlive_updater_and_their_output_lands_in_the_module_log() {
    for no_forkserver in [false, true] {
        let scratch = tempfile::tempdir().expect("tempdir");
        let s = scratch.path();
        let repo = UpdatesRepo::new();
        // A Python module whose main leaves a subprocess.Popen running.
        repo.add_module("pyd", "1.0.0");
        repo.remove("modules/pyd/update");
        repo.write(
            "modules/pyd/index.py",
            &format!(
                "import subprocess\ndef main(args):\n    \
                 p = subprocess.Popen(['sh', '-c', {script:?}], start_new_session=True)\n    \
                 open({pid:?}, 'w').write(str(p.pid))\n    return True\n",
                script = daemon_script(&s.join("go-py"), &s.join("done-py")),
                pid = s.join("pid-py").display().to_string(),
            ),
        );
        // A shell entry that starts a daemon with nohup ... &.
        repo.add_module("shd", "1.0.0");
        repo.write(
            "modules/shd/daemon.sh",
            &daemon_script(&s.join("go-sh"), &s.join("done-sh")),
        );
        repo.write_exec(
            "modules/shd/update",
            &format!(
                "#!/bin/sh\nnohup sh ./daemon.sh &\necho $! > '{pid}'\n",
                pid = s.join("pid-sh").display(),
            ),
        );
        repo.commit("two modules that leave daemons");
        let root = InstallRoot::new();
        let mut cmd = updater(&root, &repo);
        if no_forkserver {
            cmd.env("UPDATER_NO_FORKSERVER", "1");
        }
        let out = cmd.arg("sync").output().expect("run updater");
        assert!(out.status.success(), "{}", all_output(&out));
        // updater has exited. The daemons are alive, then write 200 lines each.
        for tag in ["py", "sh"] {
            let pid: i32 = fs::read_to_string(s.join(format!("pid-{tag}")))
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid");
            assert!(pid_alive(pid), "{tag} daemon died with updater");
            fs::write(s.join(format!("go-{tag}")), "").expect("go");
            let done = wait_for_file(&s.join(format!("done-{tag}")));
            if !done && pid_alive(pid) {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            assert!(
                done,
                "{tag} daemon did not survive writing after updater exited"
            );
            let module = if tag == "py" { "pyd" } else { "shd" };
            let log =
                fs::read_to_string(root.state_dir().join("logs").join(format!("{module}.log")))
                    .expect("module log");
            assert!(
                log.contains("late line 0\n") && log.contains("late line 199\n"),
                "{tag} (no fork-server: {no_forkserver}):\n{log}"
            );
        }
    }
}

#[test]
fn python_option_picks_the_interpreter_and_output_is_followed_into_the_run_log() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let marker = scratch.path().join("used");
    let wrapper = scratch.path().join("py-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho used >> '{}'\nexec python3 \"$@\"\n",
            marker.display()
        ),
    )
    .expect("write");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let repo = UpdatesRepo::new();
    repo.add_module("pm", "1.0.0");
    repo.remove("modules/pm/update");
    repo.write(
        "modules/pm/index.py",
        "import sys\ndef main(args):\n    print('hello from pm')\n    \
         sys.stderr.write('tail without newline')\n    return True\n",
    );
    repo.commit("pm");
    let root = InstallRoot::new();
    let out = updater(&root, &repo)
        .arg("--python")
        .arg(&wrapper)
        .arg("sync")
        .output()
        .expect("run updater");
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(marker.exists(), "--python was not used");
    // The module's output, written to its log file, is followed into the run's log.
    let text = all_output(&out);
    assert!(text.contains("[pm] hello from pm"), "{text}");
    assert!(text.contains("[pm] tail without newline"), "{text}");

    // A missing interpreter fails the module and names it.
    repo.set_version("pm", "1.0.1");
    repo.commit("pm 1.0.1");
    let out = updater(&root, &repo)
        .arg("--python")
        .arg("/nonexistent/python3")
        .arg("sync")
        .output()
        .expect("run updater");
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("could not start /nonexistent/python3"),
        "{}",
        all_output(&out)
    );
}
