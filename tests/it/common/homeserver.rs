//! A HOMESERVER-shaped updates repository for the drop-in tests (SPEC §10), written for these
//! tests (no upstream code): framework files at the root whose package import is circular the way
//! `homeserversltd/updates` master is, and modules that between them use every import shape its
//! modules use (see /work/notes/upstream-findings.md). Every module's `main(args)` appends one JSON
//! line to `<install root>/.hs-calls.log` (found through `UPDATER_MODULES_PATH`, which the runner
//! passes), so a test can tell which `main` ran, in which order, with which `args`, in which
//! package, with which logging and environment.
//!
//! Used by the `homeserver` test module (tests/it/homeserver.rs); it uses the helpers of `common`
//! (mod.rs) without changing them.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{isolate_env, to_json, updater_bin, UpdatesRepo};

/// The record every fixture `main` appends to, relative to the install root.
pub const CALLS_LOG: &str = ".hs-calls.log";

/// The PATH SPEC §10 gives module processes.
pub const MODULE_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the repository's own `updateManager.sh` contains (it must never be installed).
pub const REPO_WRAPPER_MARKER: &str = "REPOSITORY-COPY-OF-UPDATEMANAGER";

/// Modules of the fixture, with their repository `metadata.priority` (None: the default 100).
pub const MODULES: &[(&str, Option<i64>)] = &[
    ("hotfix", Some(1)),
    ("migrations", Some(2)),
    ("keyman", Some(3)),
    ("sbin", Some(3)),
    ("os", Some(4)),
    ("website", Some(6)),
    ("adblock", Some(10)),
    ("gogs", None),
    ("forgejo", None),
    ("atuin", None),
    ("zoxide", None),
];

/// The default check modules (SPEC §10: today's list).
pub const CHECK_MODULES: &[&str] = &["os", "website", "sbin", "migrations"];

/// Priority a module runs at (the default is 100).
pub fn priority_of(name: &str) -> i64 {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, p)| *p)
        .unwrap_or(100)
}

// ---------------------------------------------------------------------------------------------
// framework files (root of the repository)

/// `__init__.py`: like upstream's, it imports `.utils.index` before defining
/// `compare_schema_versions`, and `utils/` reaches `updates.index`, which imports
/// `compare_schema_versions` from the half-initialized package: a plain `import updates` fails once.
const ROOT_INIT_PY: &str = r#""""Fixture framework package, shaped like HOMESERVER's orchestrator package (updater tests)."""
import datetime
import json
import os
import sys

FRAMEWORK_REV = "@REV@"


def log_message(message, level="INFO"):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] [{level}] {message}", file=sys.stdout)


# Shared utilities first -- before compare_schema_versions exists (the circular import).
from .utils.index import log_message  # noqa: E402,F811


def load_module_index(module_path):
    try:
        with open(os.path.join(module_path, "index.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def compare_schema_versions(version1, version2):
    def parse(v):
        return [int(p) for p in str(v).split(".")]

    a, b = parse(version1), parse(version2)
    n = max(len(a), len(b))
    a += [0] * (n - len(a))
    b += [0] * (n - len(b))
    return (a > b) - (a < b)


DEBUG = False
"#;

/// `index.py`: imports from the package and from `.utils`, defines the logging `log_message`
/// after those imports (so importing it first from `updates.utils` fails), puts the install root on
/// sys.path as upstream's does, and under `python3 -m updates.index` imports every module.
const ROOT_INDEX_PY: &str = r#""""Fixture orchestrator entry, shaped like HOMESERVER's index.py (updater tests)."""
import importlib
import logging
import os
import sys

from . import compare_schema_versions, load_module_index, DEBUG  # noqa: F401
from .utils import get_module_version  # noqa: F401  (bound before utils imports module_utils)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def log_message(message, level="INFO"):
    """Only calls logging: without a configured root logger, INFO lines vanish."""
    if level == "ERROR":
        logging.error(message)
    elif level == "WARNING":
        logging.warning(message)
    else:
        logging.info(message)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(os.path.join(here, "modules"))):
        mod = importlib.import_module("updates.modules." + name)
        print(f"imported {name} main={callable(getattr(mod, 'main', None))}")


if __name__ == "__main__":
    main()
"#;

const UTILS_INIT_PY: &str = r#""""Fixture utilities package (updater tests)."""
from .index import log_message, get_module_version
from .state_manager import StateManager
from .module_utils import load_root_config

__all__ = ["log_message", "get_module_version", "StateManager", "load_root_config"]
"#;

const UTILS_INDEX_PY: &str = r#""""Fixture shared helpers (updater tests)."""
import datetime
import json
import os
import sys


def log_message(message, level="INFO"):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] [{level}] {message}", file=sys.stdout)


def get_module_version(module_path):
    try:
        with open(os.path.join(module_path, "index.json")) as f:
            return json.load(f).get("metadata", {}).get("schema_version", "unknown")
    except (OSError, ValueError):
        return "unknown"
"#;

const UTILS_STATE_MANAGER_PY: &str = r#""""Fixture StateManager (updater tests): remembers what it would back up, touches nothing."""


class StateManager:
    def __init__(self, backup_dir="/var/backups/updates"):
        self.backup_dir = backup_dir
        self.paths = []

    def backup_module_state(self, module_name, description="", files=None):
        self.paths.extend(files or [])
        return True

    def restore_module_state(self, module_name):
        return True
"#;

/// The absolute `from updates.index import ...` inside `utils/`: the other half of the cycle.
const UTILS_MODULE_UTILS_PY: &str = r#""""Fixture module utilities (updater tests)."""
import json
import os

from updates.index import log_message  # noqa: F401  (absolute: closes the circular import)


def load_root_config():
    # Upstream's exact path expression (utils/moduleUtils.py): `..` from this file's directory, so
    # it only finds the root index.json when `utils/` really is a directory of the install root.
    try:
        with open(os.path.join(os.path.dirname(__file__), "..", "index.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"debug": False}
"#;

// ---------------------------------------------------------------------------------------------
// modules

/// Common head of every module's index.py: `_record(args, **extra)` appends one JSON line.
const MODULE_HEAD_PY: &str = r#""""Fixture module @NAME@, shaped like a HOMESERVER module (updater tests)."""
import json
import logging
import os
import sys
@IMPORTS@

MODULE = "@NAME@"
HERE = os.path.dirname(os.path.abspath(__file__))


def _own_index():
    with open(os.path.join(HERE, "index.json")) as f:
        return json.load(f)


def _record(args, **extra):
    import updates

    root = logging.getLogger()
    rec = {
        "module": MODULE,
        "args": args,
        "package": __package__,
        "updates": os.path.dirname(os.path.abspath(updates.__file__)),
        "cwd": os.path.realpath(os.getcwd()),
        "path_env": os.environ.get("PATH"),
        "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
        "root_level": root.level,
        "root_handlers": len(root.handlers),
        "version": _own_index()["metadata"]["schema_version"],
        "pid": os.getpid(),
    }
    rec.update(extra)
    with open(os.path.join(os.environ["UPDATER_MODULES_PATH"], ".hs-calls.log"), "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")

"#;

/// A module's index.py: the common head (with `_record`), `imports`, then `body`.
pub fn module_py(name: &str, imports: &str, body: &str) -> String {
    let mut s = MODULE_HEAD_PY
        .replace("@NAME@", name)
        .replace("@IMPORTS@", imports);
    s.push('\n');
    s.push_str(body);
    s
}

/// `__init__.py` exposing the index's main (the shape of 14 upstream modules).
const INIT_EXPOSING_MAIN: &str = "from .index import main  # noqa: F401\n";

/// A `main` that logs through `updates.index.log_message`, records, and returns `ret`.
fn logging_main(ret: &str) -> String {
    format!(
        "def main(args=None):\n    log_message(f\"hsfix {{MODULE}} reached main\")\n    \
         _record(args)\n    return {ret}\n"
    )
}

struct ModuleFiles {
    index: Value,
    files: Vec<(String, String, u32)>,
}

fn base_index(name: &str, version: &str) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert("schema_version".into(), json!(version));
    meta.insert("module_name".into(), json!(name));
    meta.insert("enabled".into(), json!(name != "zoxide"));
    if let Some(p) = MODULES.iter().find(|(n, _)| *n == name).and_then(|m| m.1) {
        meta.insert("priority".into(), json!(p));
    }
    meta.insert(
        "description".into(),
        json!(format!("fixture {name} module")),
    );
    json!({ "metadata": Value::Object(meta) })
}

fn module_files(name: &str, version: &str) -> ModuleFiles {
    let mut index = base_index(name, version);
    let meta = index["metadata"].as_object_mut().expect("metadata object");
    let f = |rel: &str, text: String| (rel.to_string(), text, 0o644);
    let mut files = Vec::new();
    match name {
        // `from ...utils import x` inside updates.modules.hotfix.index.
        "hotfix" => {
            files.push(f("__init__.py", INIT_EXPOSING_MAIN.into()));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message\nfrom ...utils import get_module_version",
                    "def main(args=None):\n    log_message(f\"hsfix {MODULE} reached main\")\n    \
                     _record(args, utils_version=get_module_version(HERE))\n    \
                     return {\"success\": True, \"message\": \"hotfix: nothing to patch\"}\n",
                ),
            ));
        }
        // migrations[] with has_run flags; main marks what it ran, and reports what was pending.
        "migrations" => {
            files.push(f(
                "__init__.py",
                "from .index import MigrationManager, main  # noqa: F401\n".into(),
            ));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message\nfrom updates.utils.state_manager import StateManager",
                    r#"class MigrationManager:
    def __init__(self):
        self.state = StateManager()

    def pending(self):
        return [m["id"] for m in _own_index().get("migrations", []) if not m.get("has_run")]

    def mark_all_run(self):
        data = _own_index()
        for m in data.get("migrations", []):
            m["has_run"] = True
        with open(os.path.join(HERE, "index.json"), "w") as f:
            json.dump(data, f, indent=2)


def main(args=None):
    mgr = MigrationManager()
    pending = mgr.pending()
    if args and "--check" in args:
        _record(args, pending=pending)
        return {"success": True, "pending_migrations": len(pending)}
    log_message(f"hsfix {MODULE} reached main")
    _record(args, pending=pending)
    mgr.mark_all_run()
    return {"success": True, "updated": bool(pending)}
"#,
                ),
            ));
        }
        // `repo` config (url, branch, default_branch).
        "keyman" => {
            files.push(f("__init__.py", INIT_EXPOSING_MAIN.into()));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message\nfrom updates.utils.state_manager import StateManager",
                    "def main(args=None):\n    StateManager()\n    \
                     log_message(f\"hsfix {MODULE} reached main\")\n    \
                     _record(args, repo=_own_index().get(\"repo\"))\n    \
                     return {\"success\": True, \"updated\": False, \"version\": \"1.0.0\"}\n",
                ),
            ));
        }
        // A check module importing utils first, reading the root config through the framework.
        "sbin" => {
            files.push(f("__init__.py", INIT_EXPOSING_MAIN.into()));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.utils.state_manager import StateManager\nfrom updates.utils import load_root_config",
                    "def main(args=None):\n    StateManager()\n    \
                     _record(args, root_channel=load_root_config().get(\"metadata\", {}).get(\"channel\"))\n    \
                     if args and \"--check\" in args:\n        \
                     return {\"success\": True, \"update_available\": False}\n    \
                     return {\"success\": True, \"updated\": False}\n",
                ),
            ));
        }
        // `from updates.utils.index import get_module_version` in __init__.py; index.py imports
        // nothing from updates. Its check reports an available update.
        "os" => {
            files.push(f(
                "__init__.py",
                "import os\n\nfrom updates.utils.index import get_module_version\n\n\
                 __version__ = get_module_version(os.path.dirname(os.path.abspath(__file__)))\n\n\
                 from .index import main  # noqa: E402,F401\n"
                    .into(),
            ));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "",
                    "def main(args=None):\n    _record(args, package_version=sys.modules[__package__].__version__)\n    \
                     if args and \"--check\" in args:\n        \
                     return {\"success\": True, \"update_available\": True, \"upgradable\": 3}\n    \
                     return {\"success\": True, \"updated\": False, \"upgradable\": 0}\n",
                ),
            ));
        }
        // config.repository, config.components, a sibling import in index.py.
        "website" => {
            meta.remove("module_name");
            index["config"] = json!({
                "repository": {
                    "url": "https://example.invalid/website.git",
                    "branch": "master",
                    "default_branch": "master"
                },
                "components": {
                    "frontend": { "enabled": true },
                    "premium": { "enabled": true }
                }
            });
            files.push(f(
                "__init__.py",
                "from .index import WebsiteUpdater, main  # noqa: F401\n".into(),
            ));
            files.push(f(
                "git_operations.py",
                "\"\"\"Fixture sibling module (updater tests).\"\"\"\n\
                 from updates.index import log_message\n\n\n\
                 class GitOperations:\n    def describe(self):\n        \
                 log_message(\"hsfix website git operations ready\")\n        return \"git\"\n"
                    .into(),
            ));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message\nfrom updates.utils.state_manager import StateManager\n\
                     from .git_operations import GitOperations",
                    r#"class WebsiteUpdater:
    def __init__(self):
        self.git = GitOperations()
        self.state = StateManager()


def main(args=None):
    updater = WebsiteUpdater()
    config = _own_index().get("config", {})
    components = {k: v.get("enabled") for k, v in config.get("components", {}).items()}
    _record(args, components=components, repository=config.get("repository"), git=updater.git.describe())
    if args and "--check" in args:
        return {"success": True, "website_update_available": False, "tab_updates_available": False}
    log_message(f"hsfix {MODULE} reached main")
    return {"success": True, "updated": False, "message": "website is current"}
"#,
                ),
            ));
        }
        // utils first (like upstream adblock), a 0644 shell script, a bool result.
        "adblock" => {
            files.push(f("__init__.py", INIT_EXPOSING_MAIN.into()));
            files.push(f(
                "adblock.sh",
                "#!/bin/sh\necho fixture adblock helper\n".into(),
            ));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.utils.state_manager import StateManager",
                    "def main(args=None):\n    StateManager()\n    _record(args)\n    return True\n",
                ),
            ));
        }
        // Two implementations of one service.
        "gogs" | "forgejo" => {
            meta.insert("group".into(), json!("git"));
            meta.insert(
                "group_order".into(),
                json!(if name == "gogs" { 1 } else { 2 }),
            );
            meta.insert("service_name".into(), json!(name));
            files.push(f("__init__.py", INIT_EXPOSING_MAIN.into()));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message\nfrom updates.utils.state_manager import StateManager",
                    &logging_main("{\"success\": True, \"updated\": False}"),
                ),
            ));
        }
        // Plain modules: atuin is disabled by the machine in some tests; zoxide ships disabled.
        _ => {
            files.push(f(
                "__init__.py",
                "from .index import (  # noqa: F401\n    main,\n)\n".into(),
            ));
            files.push(f(
                "index.py",
                module_py(
                    name,
                    "from updates.index import log_message",
                    &logging_main("{\"success\": True}"),
                ),
            ));
        }
    }
    if name == "migrations" {
        index["migrations"] = json!([
            { "id": "00000001", "description": "first fixture migration", "has_run": false },
            { "id": "00000002", "description": "second fixture migration", "has_run": false }
        ]);
    }
    if name == "keyman" {
        index["repo"] = json!({
            "url": "https://example.invalid/keyman.git",
            "branch": "master",
            "default_branch": "master"
        });
    }
    if name == "sbin" {
        index["metadata"]["depends_on"] = json!(["keyman"]);
    }
    ModuleFiles { index, files }
}

/// Write every framework file and module of the fixture at `version` (framework revision `rev`),
/// and the root index.json; does not commit.
pub fn write_fixture(repo: &UpdatesRepo, version: &str, rev: &str) {
    repo.write("__init__.py", &ROOT_INIT_PY.replace("@REV@", rev));
    repo.write("index.py", ROOT_INDEX_PY);
    repo.write("utils/__init__.py", UTILS_INIT_PY);
    repo.write("utils/index.py", UTILS_INDEX_PY);
    repo.write("utils/state_manager.py", UTILS_STATE_MANAGER_PY);
    repo.write("utils/module_utils.py", UTILS_MODULE_UTILS_PY);
    // Committed 0644, as upstream commits some of its scripts.
    repo.write(
        "setup_venv.sh",
        "#!/bin/sh\n# fixture: would build <install root>/venv\nexit 0\n",
    );
    repo.write("requirements.txt", "# fixture: no third-party packages\n");
    repo.write_exec(
        "updateManager.sh",
        &format!("#!/bin/sh\n# {REPO_WRAPPER_MARKER}: runs the Python orchestrator\nexit 99\n"),
    );
    let mut packages = serde_json::Map::new();
    for (name, _) in MODULES {
        let m = module_files(name, version);
        repo.write(&format!("modules/{name}/index.json"), &to_json(&m.index));
        for (rel, text, _mode) in &m.files {
            repo.write(&format!("modules/{name}/{rel}"), text);
        }
        packages.insert((*name).to_string(), json!(version));
    }
    let global = json!({
        "metadata": {
            "schema_version": version,
            "channel": "stable",
            "branch": "master",
            "repository_url": "https://example.invalid/homeserver-updates.git"
        },
        "debug": false,
        "packages": Value::Object(packages)
    });
    repo.write("index.json", &to_json(&global));
}

/// A committed HOMESERVER-shaped repository at 1.0.0 (framework revision 1).
pub fn homeserver_repo() -> UpdatesRepo {
    let repo = UpdatesRepo::new();
    write_fixture(&repo, "1.0.0", "1");
    repo.commit("HOMESERVER-shaped fixture 1.0.0");
    repo
}

/// Edit a JSON file of the repository work tree in place (not committed).
pub fn edit_repo_json(repo: &UpdatesRepo, rel: &str, edit: impl FnOnce(&mut Value)) {
    let p = repo.path().join(rel);
    let mut v = read_json(&p);
    edit(&mut v);
    repo.write(rel, &to_json(&v));
}

// ---------------------------------------------------------------------------------------------
// the machine

/// A scratch install root at `<tmp>/<name>`, a private HOME, and a `bin/` with a fake
/// `systemctl` that goes first on the binary's PATH.
pub struct HsRoot {
    base: tempfile::TempDir,
    pub root: PathBuf,
    pub home: tempfile::TempDir,
}

impl HsRoot {
    /// An install root whose directory is named `name` (`updates`, or anything else).
    pub fn named(name: &str) -> Self {
        let base = tempfile::Builder::new()
            .prefix("updater-hs.")
            .tempdir()
            .expect("tempdir");
        let root = base.path().join(name);
        let home = tempfile::Builder::new()
            .prefix("updater-hs-home.")
            .tempdir()
            .expect("tempdir");
        let hs = HsRoot { base, root, home };
        let bin = hs.fakebin();
        fs::create_dir_all(&bin).expect("mkdir fake bin");
        let script = format!(
            "#!/bin/sh\n# Fake systemctl for updater's HOMESERVER tests: records its arguments; \
             is-active answers from {bin}/active.\n\
             printf '%s\\n' \"$*\" >> '{bin}/systemctl.calls'\n\
             if [ \"$1\" = is-active ]; then\n  for a in \"$@\"; do last=$a; done\n  \
             grep -qxF -- \"$last\" '{bin}/active' 2>/dev/null && exit 0\n  exit 3\nfi\nexit 0\n",
            bin = bin.display()
        );
        let sc = bin.join("systemctl");
        fs::write(&sc, script).expect("write fake systemctl");
        fs::set_permissions(&sc, fs::Permissions::from_mode(0o755)).expect("chmod systemctl");
        hs.set_active(&[]);
        hs
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The root, with symlinks resolved (what a module sees as its `updates` package).
    pub fn canonical(&self) -> PathBuf {
        fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone())
    }

    fn fakebin(&self) -> PathBuf {
        self.base.path().join("bin")
    }

    /// Services the fake `systemctl is-active` reports as active.
    pub fn set_active(&self, services: &[&str]) {
        let mut s = services.join("\n");
        s.push('\n');
        fs::write(self.fakebin().join("active"), s).expect("write active list");
    }

    /// Every command line the fake systemctl received.
    pub fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.fakebin().join("systemctl.calls"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The binary with a private HOME, the fake bin first on PATH, and `--modules-path`.
    pub fn updater_at(&self) -> assert_cmd::Command {
        let mut std_cmd = std::process::Command::new(updater_bin());
        isolate_env(&mut std_cmd, self.home.path());
        std_cmd.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
        let path = std::env::var("PATH").unwrap_or_default();
        std_cmd.env("PATH", format!("{}:{path}", self.fakebin().display()));
        std_cmd.current_dir(self.home.path());
        std_cmd.arg("--modules-path").arg(&self.root);
        let mut cmd = assert_cmd::Command::from_std(std_cmd);
        cmd.timeout(Duration::from_secs(180));
        cmd
    }

    /// [`HsRoot::updater_at`] with `--repo-url <repo>`.
    pub fn updater(&self, repo: &UpdatesRepo) -> assert_cmd::Command {
        let mut cmd = self.updater_at();
        cmd.arg("--repo-url").arg(repo.url());
        cmd
    }

    /// `updater sync --run enabled --json [extra]`: the document and the run.
    pub fn sync_json(&self, repo: &UpdatesRepo, extra: &[&str]) -> (Value, Output) {
        let mut cmd = self.updater(repo);
        cmd.args(["sync", "--run", "enabled", "--json"]).args(extra);
        let out = cmd.output().expect("run updater");
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document: {e}\n{}",
                crate::common::dump(&out)
            )
        });
        (doc, out)
    }

    /// The `main` calls recorded so far, in order.
    pub fn calls(&self) -> Vec<Value> {
        match fs::read_to_string(self.root.join(CALLS_LOG)) {
            Ok(s) => s
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}"))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Forget the recorded calls.
    pub fn clear_calls(&self) {
        let _ = fs::remove_file(self.root.join(CALLS_LOG));
    }

    pub fn module_dir(&self, name: &str) -> PathBuf {
        self.root.join("modules").join(name)
    }

    pub fn read_module_index(&self, name: &str) -> Value {
        read_json(&self.module_dir(name).join("index.json"))
    }

    pub fn write_module_index(&self, name: &str, v: &Value) {
        fs::write(self.module_dir(name).join("index.json"), to_json(v)).expect("write index");
    }

    pub fn read_index(&self) -> Value {
        read_json(&self.root.join("index.json"))
    }
}

pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Names of the modules whose `main` was called, in call order.
pub fn called_names(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c["module"].as_str().unwrap_or("?").to_string())
        .collect()
}
