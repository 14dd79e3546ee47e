//! Fixture builder shared by the integration tests.
//!
//! Repositories are built with the real `git` CLI, isolated from the host's git configuration
//! (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, a private `HOME`). The binary under test
//! also runs with a private `HOME`, so nothing from the host can leak into a decision.
#![allow(dead_code)]

/// Docker engine, registry and image fixtures of the Compose tests (`compose` module).
pub mod docker;
/// The HOMESERVER-shaped repository of the drop-in tests (`homeserver` module).
pub mod homeserver;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the binary under test.
pub fn updater_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_updater"))
}

/// The run log every fixture module's `update` appends to, inside the install root.
pub const RUNS_LOG: &str = ".runs.log";

/// Directory name of the work tree inside `UpdatesRepo::dir`.
pub const REPO_DIR_NAME: &str = "updates";

/// The script every fixture module gets as its `update` entry point: it records
/// `<name> <from>-><to>` in `<install root>/.runs.log`.
pub fn update_script(name: &str) -> String {
    format!(
        "#!/bin/sh\nprintf '%s %s->%s\\n' '{name}' \"${{UPDATER_FROM_VERSION:-}}\" \
         \"${{UPDATER_TO_VERSION:-}}\" >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n"
    )
}

/// The default global index of a fixture repository.
pub fn global_index(packages: Value) -> Value {
    serde_json::json!({
        "metadata": { "schema_version": "1.0.0", "channel": "stable" },
        "packages": packages,
    })
}

/// Pretty JSON with a trailing newline.
pub fn to_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("serialize JSON");
    s.push('\n');
    s
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn write_file(path: &Path, contents: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Set `metadata.<key>` of the JSON file at `path`, keeping every other key (and their order).
fn set_metadata_in(path: &Path, key: &str, value: Value) {
    let mut doc = read_json(path);
    let obj = doc
        .as_object_mut()
        .unwrap_or_else(|| panic!("{} is not a JSON object", path.display()));
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    meta.as_object_mut()
        .unwrap_or_else(|| panic!("{}: metadata is not an object", path.display()))
        .insert(key.to_string(), value);
    write_file(path, to_json(&doc).as_bytes());
}

/// Copy a tree, keeping file modes and symlinks as symlinks.
pub fn copy_tree(src: &Path, dst: &Path) {
    let meta = fs::symlink_metadata(src).unwrap_or_else(|e| panic!("stat {}: {e}", src.display()));
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).unwrap();
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        std::os::unix::fs::symlink(&target, dst)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", dst.display()));
    } else if ft.is_dir() {
        fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
        let mut entries: Vec<_> = fs::read_dir(src).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            copy_tree(&entry.path(), &dst.join(entry.file_name()));
        }
        set_mode(dst, meta.permissions().mode() & 0o7777);
    } else {
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        set_mode(dst, meta.permissions().mode() & 0o7777);
    }
}

/// Remove a file, symlink or directory tree if it exists.
fn remove_path(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// A real git repository (non-bare work tree) holding `index.json` and `modules/`.
///
/// `dir` is a temporary directory that holds the work tree at `dir/updates` (so a `git daemon`
/// can serve `dir` as its base path) and a private `dir/home` for git.
pub struct UpdatesRepo {
    pub dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

impl UpdatesRepo {
    /// `git init` on branch `master`, and commit an empty global index.json.
    pub fn new() -> Self {
        Self::with_default_branch("master")
    }

    /// `git init` whose initial (and so default) branch is `branch`; commits an empty index.
    pub fn with_default_branch(branch: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("updater-test-repo.")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join(REPO_DIR_NAME);
        let home = dir.path().join("home");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&home).unwrap();
        let repo = UpdatesRepo { dir, root, home };
        repo.git(&["-c", &format!("init.defaultBranch={branch}"), "init", "-q"]);
        repo.write("index.json", &to_json(&global_index(serde_json::json!({}))));
        fs::create_dir_all(repo.root.join("modules")).unwrap();
        repo.commit("initial: empty updates repository");
        repo
    }

    /// Modules `m00`..`m{n-1}` at 1.0.0, committed.
    pub fn with_modules(n: usize) -> Self {
        let repo = Self::new();
        for i in 0..n {
            repo.add_module(&format!("m{i:02}"), "1.0.0");
        }
        repo.commit(&format!("add {n} modules"));
        repo
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A plain-path URL of the repository.
    pub fn url(&self) -> String {
        self.root.to_str().expect("utf-8 temp path").to_string()
    }

    /// A `file://` URL of the repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.url())
    }

    /// `modules/<name>` in the work tree.
    pub fn module_dir(&self, name: &str) -> PathBuf {
        self.root.join("modules").join(name)
    }

    /// A `git` command run in the work tree, isolated from the host's configuration.
    pub fn git_command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.root);
        isolate_git(&mut cmd, &self.home);
        cmd
    }

    /// Run git in the work tree; panics on failure; returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self
            .git_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Add (without committing) `modules/<name>/index.json` at `version` and an executable
    /// `update` that appends `<name> <from>-><to>` to `<install root>/.runs.log`.
    pub fn add_module(&self, name: &str, version: &str) -> &Self {
        let index = serde_json::json!({
            "metadata": { "schema_version": version },
            "configuration": {},
        });
        self.write(&format!("modules/{name}/index.json"), &to_json(&index));
        self.write_exec(&format!("modules/{name}/update"), &update_script(name));
        self
    }

    /// Rewrite `metadata.schema_version` of a module, keeping its other keys.
    pub fn set_version(&self, name: &str, version: &str) -> &Self {
        self.set_metadata(name, "schema_version", Value::String(version.to_string()))
    }

    /// Set `metadata.<key>` of a module, keeping its other keys.
    pub fn set_metadata(&self, name: &str, key: &str, value: Value) -> &Self {
        set_metadata_in(&self.module_dir(name).join("index.json"), key, value);
        self
    }

    /// Write a file (mode 0644) at a path relative to the work tree.
    pub fn write(&self, rel: &str, contents: &str) -> &Self {
        let p = self.root.join(rel);
        write_file(&p, contents.as_bytes());
        set_mode(&p, 0o644);
        self
    }

    /// Write an executable file (mode 0755) at a path relative to the work tree.
    pub fn write_exec(&self, rel: &str, contents: &str) -> &Self {
        let p = self.root.join(rel);
        write_file(&p, contents.as_bytes());
        set_mode(&p, 0o755);
        self
    }

    /// Create a symlink at `rel` pointing to `target` (taken literally).
    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        remove_path(&p);
        std::os::unix::fs::symlink(target, &p).unwrap();
        self
    }

    /// Remove a file or directory (relative to the work tree).
    pub fn remove(&self, rel: &str) -> &Self {
        remove_path(&self.root.join(rel));
        self
    }

    /// `git add -A && git commit`; returns the new commit's sha.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "--no-verify", "-m", msg]);
        self.head()
    }

    /// Create branch `name` at HEAD (without switching to it).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", name]);
    }

    /// Switch the work tree (and the remote's HEAD) to branch `name`.
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// The sha of HEAD.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git reset --hard rev`: with a new commit on top, this simulates a force-push.
    pub fn reset_hard(&self, rev: &str) {
        self.git(&["reset", "-q", "--hard", rev]);
        // Make sure no file left over from the abandoned history stays in the tree.
        self.git(&["clean", "-q", "-fdx"]);
    }
}

/// Isolate a process from the host's git configuration: private HOME, no system or global
/// config, no inherited repository variables.
pub fn isolate_env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES");
}

/// [`isolate_env`] plus a fixed identity and no prompts, for the fixture's own git commands.
pub fn isolate_git(cmd: &mut Command, home: &Path) {
    isolate_env(cmd, home);
    cmd.env("GIT_AUTHOR_NAME", "Updater Tests")
        .env("GIT_AUTHOR_EMAIL", "tests@updater.invalid")
        .env("GIT_COMMITTER_NAME", "Updater Tests")
        .env("GIT_COMMITTER_EMAIL", "tests@updater.invalid")
        .env("GIT_TERMINAL_PROMPT", "0");
}

/// A scratch install root (`--modules-path`), with a private HOME for the binary beside it.
pub struct InstallRoot {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl InstallRoot {
    pub fn new() -> Self {
        InstallRoot {
            dir: tempfile::Builder::new()
                .prefix("updater-test-root.")
                .tempdir()
                .expect("tempdir"),
            home: tempfile::Builder::new()
                .prefix("updater-test-home.")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/modules/<name>`.
    pub fn module_dir(&self, name: &str) -> PathBuf {
        self.path().join("modules").join(name)
    }

    /// `<root>/.updater`.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".updater")
    }

    /// The default clone, `<root>/.updater/repo`.
    pub fn clone_dir(&self) -> PathBuf {
        self.state_dir().join("repo")
    }

    /// The lock file, `<root>/.updater/lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    /// Lines of `<root>/.runs.log` (what the fixture modules' entry points ran).
    pub fn runs(&self) -> Vec<String> {
        match fs::read_to_string(self.path().join(RUNS_LOG)) {
            Ok(s) => s.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Copy a module directory into `<root>/modules/<name>` (an installed copy). Does not touch
    /// the global index; see [`InstallRoot::record`].
    pub fn install(&self, repo_module_dir: &Path, name: &str) {
        let dst = self.module_dir(name);
        remove_path(&dst);
        copy_tree(repo_module_dir, &dst);
    }

    /// Write an installed module `<root>/modules/<name>` at `version` (index.json and the
    /// fixture `update` script) and record it in the global index's `packages`.
    pub fn install_module(&self, name: &str, version: &str) {
        let dir = self.module_dir(name);
        remove_path(&dir);
        let index = serde_json::json!({
            "metadata": { "schema_version": version },
            "configuration": {},
        });
        write_file(&dir.join("index.json"), to_json(&index).as_bytes());
        let update = dir.join("update");
        write_file(&update, update_script(name).as_bytes());
        set_mode(&update, 0o755);
        self.record(name, version);
    }

    /// Set `packages.<name> = version` in `<root>/index.json` (creating it if missing).
    pub fn record(&self, name: &str, version: &str) {
        let mut index = if self.path().join("index.json").exists() {
            self.read_index()
        } else {
            global_index(serde_json::json!({}))
        };
        index
            .as_object_mut()
            .unwrap()
            .entry("packages")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .unwrap()
            .insert(name.to_string(), Value::String(version.to_string()));
        self.write_index(&index);
    }

    /// Set `metadata.<key>` of an installed module's index.json, keeping its other keys.
    pub fn set_installed_metadata(&self, name: &str, key: &str, value: Value) {
        set_metadata_in(&self.module_dir(name).join("index.json"), key, value);
    }

    /// Read an installed module's index.json.
    pub fn read_module_index(&self, name: &str) -> Value {
        read_json(&self.module_dir(name).join("index.json"))
    }

    /// Write `<root>/index.json`.
    pub fn write_index(&self, json: &Value) {
        write_file(&self.path().join("index.json"), to_json(json).as_bytes());
    }

    /// Read `<root>/index.json`.
    pub fn read_index(&self) -> Value {
        read_json(&self.path().join("index.json"))
    }

    /// Write a file relative to the root.
    pub fn write(&self, rel: &str, contents: &str) {
        write_file(&self.path().join(rel), contents.as_bytes());
    }

    /// Snapshot of the root, leaving out `.updater/`.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
        snapshot(self.path(), &[".updater"])
    }
}

/// The binary with a private HOME (beside `root`), `RUST_LOG` removed and a 60 s timeout, but no
/// options at all.
pub fn updater_env(root: &InstallRoot) -> assert_cmd::Command {
    let mut std_cmd = Command::new(updater_bin());
    isolate_env(&mut std_cmd, root.home.path());
    std_cmd.env_remove("RUST_LOG");
    std_cmd.env_remove("RUST_BACKTRACE");
    std_cmd.current_dir(root.home.path());
    let mut cmd = assert_cmd::Command::from_std(std_cmd);
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// The binary with `--modules-path <root>` and a private HOME, `RUST_LOG` removed, and a 60 s
/// timeout.
pub fn updater_at(root: &InstallRoot) -> assert_cmd::Command {
    let mut cmd = updater_env(root);
    cmd.arg("--modules-path").arg(root.path());
    cmd
}

/// The binary with `--modules-path <root> --repo-url <repo>` (see [`updater_at`]).
pub fn updater(root: &InstallRoot, repo: &UpdatesRepo) -> assert_cmd::Command {
    let mut cmd = updater_at(root);
    cmd.arg("--repo-url").arg(repo.url());
    cmd
}

/// stdout then stderr, lossily decoded, for message assertions.
pub fn all_output(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a prepared command to completion.
pub fn run(mut cmd: assert_cmd::Command) -> Output {
    cmd.output().expect("run updater")
}

/// Asserts an exit code, dumping the run when it differs.
pub fn assert_code(out: &Output, expected: i32) {
    assert_eq!(code(out), expected, "unexpected exit code\n{}", dump(out));
}

/// Exit code of a finished process (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A readable dump of a run, for assertion messages.
pub fn dump(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parse stdout as exactly one JSON document (panics with the run's output otherwise).
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", dump(out)))
}

/// The entry of `modules[]` named `name` in a `--json` document.
pub fn module_entry<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("no modules array in {doc:#}"))
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("module {name:?} missing from {doc:#}"))
}

/// The `decision` of module `name` in a `--json` document.
pub fn decision(doc: &Value, name: &str) -> String {
    module_entry(doc, name)["decision"]
        .as_str()
        .unwrap_or_else(|| panic!("module {name:?} has no decision string in {doc:#}"))
        .to_string()
}

/// The `error` string of module `name` in a `--json` document.
pub fn error_of(doc: &Value, name: &str) -> String {
    module_entry(doc, name)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("module {name:?} has no error string in {doc:#}"))
        .to_string()
}

/// `updater --modules-path R --repo-url U sync [extra...]`
pub fn sync(root: &InstallRoot, repo: &UpdatesRepo, extra: &[&str]) -> Output {
    let mut cmd = updater(root, repo);
    cmd.arg("sync").args(extra);
    run(cmd)
}

/// `updater --modules-path R --repo-url U sync --json [extra...]`: the document and the run.
pub fn sync_json(root: &InstallRoot, repo: &UpdatesRepo, extra: &[&str]) -> (Value, Output) {
    let mut cmd = updater(root, repo);
    cmd.arg("sync").arg("--json").args(extra);
    let out = run(cmd);
    (json_of(&out), out)
}

/// `updater --modules-path R --repo-url U check --json [extra...]`: the document and the run.
pub fn check_json(root: &InstallRoot, repo: &UpdatesRepo, extra: &[&str]) -> (Value, Output) {
    let mut cmd = updater(root, repo);
    cmd.arg("check").arg("--json").args(extra);
    let out = run(cmd);
    (json_of(&out), out)
}

/// The installed global index's `packages` map (module name → version).
pub fn packages(root: &InstallRoot) -> BTreeMap<String, String> {
    let index = root.read_index();
    index["packages"]
        .as_object()
        .unwrap_or_else(|| panic!("no packages object in {index:#}"))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or("<not a string>").to_string(),
            )
        })
        .collect()
}

/// A `packages` map from pairs, to compare with [`packages`].
pub fn packages_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The last line of `text` that is not blank ("" when there is none).
pub fn last_nonempty_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Whether `p` exists as a directory entry (a dangling symlink counts).
pub fn exists_no_follow(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// Byte-for-byte snapshot of a tree: relative path → (mode, content or symlink target; empty for
/// directories). Paths under any of `exclude` (relative, compared component-wise) are left out.
pub fn snapshot(path: &Path, exclude: &[&str]) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(
        base: &Path,
        dir: &Path,
        exclude: &[&str],
        out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>,
    ) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let p = entry.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            if exclude.iter().any(|x| rel.starts_with(x)) {
                continue;
            }
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.mode();
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, (mode, target.into_os_string().into_encoded_bytes()));
            } else if ft.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                walk(base, &p, exclude, out);
            } else if ft.is_file() {
                let mut buf = Vec::new();
                fs::File::open(&p).unwrap().read_to_end(&mut buf).unwrap();
                out.insert(rel, (mode, buf));
            } else {
                out.insert(rel, (mode, b"<special>".to_vec()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(path, path, exclude, &mut out);
    out
}

/// A free TCP port on 127.0.0.1 (best effort: the port is released before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// A running `git daemon` serving every repository under a base path; killed on drop.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
    _home: tempfile::TempDir,
}

impl GitDaemon {
    /// `git://127.0.0.1:PORT/<name>` for the repository at `<base>/<name>`.
    pub fn url(&self, repo_dir_name: &str) -> String {
        format!("git://127.0.0.1:{}/{}", self.port, repo_dir_name)
    }

    /// The URL under which this daemon serves `repo` (when started on `repo.dir`).
    pub fn url_of(&self, _repo: &UpdatesRepo) -> String {
        self.url(REPO_DIR_NAME)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git --exec-path`: where git's helper programs (`git-daemon`) live.
pub fn git_exec_path() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("run git --exec-path");
    assert!(out.status.success(), "git --exec-path failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Kills a process (and its process group, if it leads one) with SIGKILL on drop.
pub struct KillOnDrop(pub String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = self.0.trim();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        for target in [format!("-{pid}"), pid.to_string()] {
            let _ = Command::new("kill")
                .args(["-9", "--", &target])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Start `git daemon --reuseaddr --base-path=<base> --export-all --listen=127.0.0.1
/// --port=<free port> <base>` and wait until the port accepts connections.
pub fn git_daemon(base: &Path) -> GitDaemon {
    let home = tempfile::tempdir().expect("tempdir");
    for _attempt in 0..5 {
        let port = free_port();
        // Run `git-daemon` itself: `git daemon` would fork it as a child, which killing the `git`
        // wrapper on drop would leave running.
        let mut cmd = Command::new(git_exec_path().join("git-daemon"));
        isolate_git(&mut cmd, home.path());
        cmd.arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return GitDaemon {
                    child,
                    port,
                    _home: home,
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // died (port taken?): try another port
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!("could not start git daemon on {}", base.display());
}

/// Serve `repo` over `git://`; returns the daemon and the repository's URL.
pub fn serve(repo: &UpdatesRepo) -> (GitDaemon, String) {
    let d = git_daemon(repo.dir.path());
    let url = d.url(REPO_DIR_NAME);
    (d, url)
}

/// A process holding the run lock of `root` with util-linux `flock` (one process: `--no-fork`),
/// killed on drop. Its PID is written into the lock file, as the updater itself would.
pub struct LockHolder {
    child: Child,
}

impl LockHolder {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether some process holds an flock on `path` right now.
pub fn is_flocked(path: &Path) -> bool {
    let status = Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "99"])
        .arg(path)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run flock");
    status.code() == Some(99)
}

/// Take `<root>/.updater/lock` in another process for `secs` seconds, write that process's PID
/// into the file, and return once the lock is held.
pub fn hold_lock(root: &InstallRoot, secs: u32) -> LockHolder {
    let lock = root.lock_path();
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let child = Command::new("flock")
        .arg("--no-fork")
        .arg("--exclusive")
        .arg(&lock)
        .arg("sleep")
        .arg(secs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flock");
    let holder = LockHolder { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_flocked(&lock) {
        assert!(
            Instant::now() < deadline,
            "flock never took {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::write(&lock, format!("{}\n", holder.pid())).unwrap();
    holder
}

/// The PID of a process that has exited (for stale-lock tests).
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Whether `line` is a log line: `[YYYY-MM-DD HH:MM:SS] [LEVEL] message`.
pub fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 24 || b[0] != b'[' || b[20] != b']' || b[21] != b' ' || b[22] != b'[' {
        return false;
    }
    let ts = &b[1..20];
    let shape_ok = ts.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b' ',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return false;
    }
    let rest = &line[23..];
    match rest.find("] ") {
        Some(end) => end > 0 && rest[..end].chars().all(|c| c.is_ascii_uppercase()),
        None => false,
    }
}

/// The level of a log line (`INFO`, `WARN`, ...), if it is one.
pub fn log_level(line: &str) -> Option<&str> {
    if !is_log_line(line) {
        return None;
    }
    let rest = &line[23..];
    rest.find(']').map(|end| &rest[..end])
}

/// The message part of a log line.
pub fn log_message(line: &str) -> Option<&str> {
    if !is_log_line(line) {
        return None;
    }
    let rest = &line[23..];
    rest.find("] ").map(|end| &rest[end + 2..])
}

/// The messages of all log lines in `text`.
pub fn log_messages(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(log_message)
        .map(str::to_string)
        .collect()
}

/// A directory holding a fake `systemctl` for group tests: `systemctl is-active --quiet -- S`
/// exits 0 when `S` is a line of `<dir>/active`, else 3, and appends `S` to `<dir>/probed`.
/// Returns the directory; put it first on the child's PATH with [`path_with`].
pub fn fake_systemctl(active: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("updater-test-bin.")
        .tempdir()
        .expect("tempdir");
    let d = dir.path().display();
    let script = format!(
        "#!/bin/sh\nfor last; do :; done\nprintf '%s\\n' \"$last\" >> '{d}/probed'\n\
         grep -qxF -- \"$last\" '{d}/active' && exit 0\nexit 3\n"
    );
    write_file(&dir.path().join("systemctl"), script.as_bytes());
    set_mode(&dir.path().join("systemctl"), 0o755);
    let mut list = active.join("\n");
    list.push('\n');
    write_file(&dir.path().join("active"), list.as_bytes());
    dir
}

/// `PATH` with `dir` first, then the test's own PATH.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------------------------
// framework files (tests/it/framework.rs)

impl UpdatesRepo {
    /// Set `metadata.<key>` of the repository's global index.json, keeping its other keys.
    pub fn set_root_metadata(&self, key: &str, value: Value) -> &Self {
        set_metadata_in(&self.root.join("index.json"), key, value);
        self
    }

    /// Write the HOMESERVER-like framework files at version `v` (not committed): `__init__.py`,
    /// `index.py`, `utils/{__init__,x}.py`, `setup_venv.sh` (0644, as upstream commits it),
    /// `requirements.txt`, upstream's own `updateManager.sh`, and `metadata.schema_version = v`.
    pub fn write_framework(&self, v: &str) -> &Self {
        self.write("__init__.py", &format!("FRAMEWORK = \"{v}\"\n"));
        self.write(
            "index.py",
            &format!("VERSION = \"{v}\"\n\ndef main(args=None):\n    return True\n"),
        );
        self.write("utils/__init__.py", "");
        self.write("utils/x.py", &format!("VALUE = \"{v}\"\n"));
        self.write("setup_venv.sh", &format!("#!/bin/sh\necho venv {v}\n"));
        self.write("requirements.txt", &format!("requests # {v}\n"));
        self.write(
            "updateManager.sh",
            "#!/bin/bash\n# upstream wrapper\npython3 -m updates.index \"$@\"\n",
        );
        self.set_root_metadata("schema_version", Value::String(v.to_string()))
    }
}

/// What `<root>/<rel>` reads as through any symlinks (None when it cannot be read).
pub fn read_through(root: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(root.join(rel)).ok()
}
