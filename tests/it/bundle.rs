//! Offline bundles (`--repo-url PATH.bundle`): bundles made by the real `git bundle create`
//! (v2 and `--version=3`, full and incremental), synced with the same trust checks as a fetch.
//! A refused or broken bundle changes nothing installed: the install root (`.updater/` left
//! out) and the rewind anchor are compared before and after.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;
use serde_json::Value;

/// A directory standing in for the USB stick.
struct Stick {
    dir: tempfile::TempDir,
}

impl Stick {
    fn new() -> Stick {
        Stick {
            dir: tempfile::Builder::new()
                .prefix("updater-test-stick.")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `git bundle create [--version=V] <file> <revs...>` in the repository; returns the file.
fn make_bundle(repo: &UpdatesRepo, file: &Path, version: u8, revs: &[&str]) -> PathBuf {
    let file_s = file.to_str().expect("utf-8 temp path");
    let version_arg = format!("--version={version}");
    let mut args = vec!["bundle", "create", "-q", &version_arg, file_s];
    args.extend_from_slice(revs);
    repo.git(&args);
    let head = fs::read(file).expect("bundle written");
    let first = format!("# v{version} git bundle\n");
    assert!(
        head.starts_with(first.as_bytes()),
        "git wrote a bundle of another version"
    );
    file.to_path_buf()
}

/// `updater --modules-path R --repo-url BUNDLE sync [extra...]`
fn sync_bundle(root: &InstallRoot, bundle: &Path, extra: &[&str]) -> Output {
    let mut cmd = updater_at(root);
    cmd.arg("--repo-url").arg(bundle).arg("sync").args(extra);
    run(cmd)
}

fn last_commit(root: &InstallRoot) -> Option<String> {
    let text = fs::read_to_string(root.state_dir().join("state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).expect("state.json is JSON");
    v["last_commit"].as_str().map(str::to_string)
}

fn version_of(root: &InstallRoot, name: &str) -> String {
    root.read_module_index(name)["metadata"]["schema_version"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no schema_version"))
        .to_string()
}

/// What a refused run must leave as it was: the install root and the rewind anchor.
type Frozen = (
    std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)>,
    Option<String>,
);

fn freeze(root: &InstallRoot) -> Frozen {
    (root.snapshot(), last_commit(root))
}

fn assert_refused(root: &InstallRoot, before: &Frozen, out: &Output, needles: &[&str]) {
    assert_code(out, 1);
    let text = all_output(out);
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing\n{}", dump(out));
    }
    assert!(
        root.snapshot() == before.0,
        "the install root changed\n{}",
        dump(out)
    );
    assert_eq!(
        last_commit(root),
        before.1,
        "the anchor moved\n{}",
        dump(out)
    );
}

/// A repository with `base` 1.0.0 (commit A), a root that installed A from a full v2 bundle.
fn installed_from_bundle(stick: &Stick) -> (UpdatesRepo, InstallRoot, String) {
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let a = repo.commit("A: base 1.0.0");
    let full = make_bundle(&repo, &stick.path("full.bundle"), 2, &["master"]);
    let root = InstallRoot::new();
    let out = sync_bundle(&root, &full, &[]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(a.as_str()));
    (repo, root, a)
}

#[test]
fn first_install_from_a_full_v2_bundle_and_an_update_from_an_incremental_v3_bundle() {
    let stick = Stick::new();
    let (repo, root, a) = installed_from_bundle(&stick);
    // The next release travels as an incremental v3 bundle: only what A lacks.
    repo.set_version("base", "1.1.0");
    repo.add_module("extra", "1.0.0");
    let b = repo.commit("B: base 1.1.0, extra");
    let range = format!("{a}..master");
    let inc = make_bundle(&repo, &stick.path("inc.bundle"), 3, &[&range]);
    let header = fs::read(&inc).unwrap();
    assert!(
        String::from_utf8_lossy(&header[..200.min(header.len())]).contains(&format!("-{a}")),
        "the incremental bundle names A as its prerequisite"
    );
    let out = sync_bundle(&root, &inc, &[]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "1.1.0");
    assert_eq!(version_of(&root, "extra"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    // The stick's path is not recorded as the repository later runs use.
    let recorded = root.read_index()["metadata"]["repository_url"].clone();
    assert!(
        !recorded.to_string().contains(".bundle"),
        "the bundle became the recorded repository: {recorded}"
    );
    // The same bundle again: nothing new, nothing run.
    let runs = root.runs();
    let out = sync_bundle(&root, &inc, &[]);
    assert_code(&out, 0);
    assert_eq!(root.runs(), runs);
}

#[test]
fn first_install_from_a_full_v3_bundle_with_head_picks_the_head_branch() {
    let stick = Stick::new();
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let a = repo.commit("A");
    repo.branch("other");
    repo.set_version("base", "2.0.0");
    repo.commit("on master only");
    repo.checkout("other");
    let all = make_bundle(&repo, &stick.path("all.bundle"), 3, &["--all"]);
    let root = InstallRoot::new();
    let out = sync_bundle(&root, &all, &[]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(a.as_str()));
    let out = sync_bundle(&root, &all, &["--branch", "master"]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "2.0.0");
}

#[test]
fn incremental_bundle_whose_prerequisites_are_missing_is_refused() {
    let stick = Stick::new();
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let a = repo.commit("A");
    repo.set_version("base", "1.1.0");
    repo.commit("B");
    let range = format!("{a}..master");
    let inc = make_bundle(&repo, &stick.path("inc.bundle"), 2, &[&range]);
    // A fresh machine has none of the history.
    let root = InstallRoot::new();
    let before = freeze(&root);
    let out = sync_bundle(&root, &inc, &[]);
    assert_refused(
        &root,
        &before,
        &out,
        &["needs commits this machine does not have", &a, "inc.bundle"],
    );
    assert!(!root.path().join("index.json").exists());
}

#[test]
fn truncated_or_corrupt_bundle_is_an_error_naming_the_file_and_changes_nothing() {
    let stick = Stick::new();
    let (repo, root, _a) = installed_from_bundle(&stick);
    repo.set_version("base", "1.1.0");
    repo.write("big.txt", &"payload line\n".repeat(2000));
    repo.commit("B");
    let full = make_bundle(&repo, &stick.path("new.bundle"), 2, &["master"]);
    let bytes = fs::read(&full).unwrap();
    let header_end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header end")
        + 2;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.bundle", bytes[..bytes.len() - 40].to_vec()),
        ("header-only.bundle", bytes[..header_end].to_vec()),
        ("cut-header.bundle", bytes[..header_end - 5].to_vec()),
        ("corrupt.bundle", {
            let mut b = bytes.clone();
            let mid = header_end + (b.len() - header_end) / 2;
            for x in &mut b[mid..mid + 16] {
                *x ^= 0xff;
            }
            b
        }),
        ("not-a.bundle", b"hello\n".to_vec()),
    ];
    for (name, content) in cases {
        let path = stick.path(name);
        fs::write(&path, content).unwrap();
        let before = freeze(&root);
        let out = sync_bundle(&root, &path, &[]);
        assert_refused(&root, &before, &out, &[name]);
        assert_eq!(version_of(&root, "base"), "1.0.0", "{name}");
    }
    // The intact bundle still applies afterwards.
    let out = sync_bundle(&root, &full, &[]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "1.1.0");
}

#[test]
fn rewound_bundle_is_refused_unless_allow_rewind() {
    let stick = Stick::new();
    let repo = UpdatesRepo::new();
    let i = repo.head();
    repo.add_module("base", "1.0.0");
    repo.commit("A");
    repo.set_version("base", "1.1.0");
    let b = repo.commit("B");
    let root = InstallRoot::new();
    let first = make_bundle(&repo, &stick.path("b.bundle"), 2, &["master"]);
    assert_code(&sync_bundle(&root, &first, &[]), 0);
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    // History rewritten: C does not descend from B.
    repo.reset_hard(&i);
    repo.add_module("base", "2.0.0");
    repo.add_module("evil", "1.0.0");
    let c = repo.commit("C: rewritten");
    let rewound = make_bundle(&repo, &stick.path("c.bundle"), 3, &["master"]);
    let before = freeze(&root);
    let out = sync_bundle(&root, &rewound, &[]);
    assert_refused(
        &root,
        &before,
        &out,
        &[
            &format!("refusing commit {c} (rewind check)"),
            &format!("does not descend from {b}"),
            "--allow-rewind",
        ],
    );
    assert!(!exists_no_follow(&root.module_dir("evil")));
    let out = sync_bundle(&root, &rewound, &["--allow-rewind"]);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "evil"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(c.as_str()));
}

/// `ssh-keygen -t ed25519` in `dir`; returns (private key path, allowed-signers file).
fn alice_key(dir: &Path) -> (PathBuf, PathBuf) {
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let private = dir.join("alice");
    let out = Command::new("ssh-keygen")
        .env("HOME", &home)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
        .arg(&private)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed");
    let public = fs::read_to_string(dir.join("alice.pub")).unwrap();
    let allowed = dir.join("allowed_signers");
    fs::write(
        &allowed,
        format!("alice@example.com {}", public.trim()) + "\n",
    )
    .unwrap();
    (private, allowed)
}

#[test]
fn require_signed_refuses_an_unsigned_bundle_tip_and_accepts_a_signed_one() {
    let stick = Stick::new();
    let (private, allowed) = alice_key(stick.dir.path());
    let allowed_s = allowed.to_str().unwrap().to_string();
    let args = ["--require-signed", "--allowed-signers", allowed_s.as_str()];
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let unsigned = repo.commit("unsigned");
    let bundle = make_bundle(&repo, &stick.path("unsigned.bundle"), 2, &["master"]);
    let root = InstallRoot::new();
    let before = freeze(&root);
    let out = sync_bundle(&root, &bundle, &args);
    assert_refused(
        &root,
        &before,
        &out,
        &[
            &format!("refusing commit {unsigned} (signature check)"),
            "not signed",
        ],
    );
    assert!(!root.path().join("index.json").exists());

    // Signed by alice: accepted.
    repo.git(&["add", "-A"]);
    let signing = format!("user.signingkey={}.pub", private.display());
    let out = repo
        .git_command()
        .env_remove("SSH_AUTH_SOCK")
        .args(["-c", "gpg.format=ssh", "-c", &signing])
        .args(["commit", "-q", "-S", "--allow-empty", "-m", "signed"])
        .stdin(Stdio::null())
        .output()
        .expect("git commit -S");
    assert!(out.status.success(), "git commit -S failed");
    let signed = repo.head();
    let bundle = make_bundle(&repo, &stick.path("signed.bundle"), 3, &["master"]);
    let out = sync_bundle(&root, &bundle, &args);
    assert_code(&out, 0);
    assert_eq!(version_of(&root, "base"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(signed.as_str()));
}
