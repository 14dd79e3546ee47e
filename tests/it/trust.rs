//! Integration tests for the trust checks (SPEC §3, §4, §7, §9; LESSONS item 10), python-tuf
//! style: one test per attack. A test passes only when the attack is refused (exit code, and a
//! message naming the check and the commit or file) *and* nothing installed changed: the install
//! root, `.updater/` left out, is compared byte for byte before and after, and so is `index.json`.
//!
//! Commits are signed by git itself (`gpg.format=ssh`, keys made by `ssh-keygen`, private HOME);
//! the forged ones (altered, wrong namespace, OpenPGP) are written as raw commit objects with
//! `git hash-object -t commit -w --stdin` and put at the branch tip with `git update-ref`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// running the binary

/// `updater --modules-path R --repo-url U <command> [extra...]`
fn updater_cmd<S: AsRef<std::ffi::OsStr>>(
    root: &InstallRoot,
    repo: &UpdatesRepo,
    command: &str,
    extra: &[S],
) -> Output {
    let mut cmd = updater(root, repo);
    cmd.arg(command).args(extra);
    run(cmd)
}

fn sync<S: AsRef<std::ffi::OsStr>>(root: &InstallRoot, repo: &UpdatesRepo, extra: &[S]) -> Output {
    updater_cmd(root, repo, "sync", extra)
}

fn check<S: AsRef<std::ffi::OsStr>>(root: &InstallRoot, repo: &UpdatesRepo, extra: &[S]) -> Output {
    updater_cmd(root, repo, "check", extra)
}

const NONE: &[&str] = &[];

/// Exit code `expected`, and every needle somewhere in the output (stdout or stderr).
fn assert_refused(out: &Output, expected: i32, needles: &[&str]) {
    assert_code(out, expected);
    let text = all_output(out);
    for needle in needles {
        assert!(
            text.contains(needle),
            "{needle:?} is not in the output\n{}",
            dump(out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// "nothing installed changed"

/// What a refused run must leave exactly as it was.
struct Frozen {
    /// The install root, `.updater/` left out, byte for byte (index.json and .runs.log included).
    tree: BTreeMap<PathBuf, (u32, Vec<u8>)>,
    /// `<root>/index.json` (None when absent).
    index: Option<Vec<u8>>,
    /// `last_commit` of `<root>/.updater/state.json`: the rewind anchor must not move either.
    last_commit: Option<String>,
}

fn freeze(root: &InstallRoot) -> Frozen {
    Frozen {
        tree: root.snapshot(),
        index: fs::read(root.path().join("index.json")).ok(),
        last_commit: last_commit(root),
    }
}

fn assert_unchanged(root: &InstallRoot, before: &Frozen, out: &Output) {
    let after = root.snapshot();
    if after != before.tree {
        let added: Vec<_> = after
            .keys()
            .filter(|k| !before.tree.contains_key(*k))
            .collect();
        let removed: Vec<_> = before
            .tree
            .keys()
            .filter(|k| !after.contains_key(*k))
            .collect();
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.tree.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k)
            .collect();
        panic!(
            "the install root changed: added {added:?}, removed {removed:?}, changed {changed:?}\n{}",
            dump(out)
        );
    }
    assert_eq!(
        fs::read(root.path().join("index.json")).ok(),
        before.index,
        "index.json changed\n{}",
        dump(out)
    );
    assert_eq!(
        last_commit(root),
        before.last_commit,
        "the last applied commit (state.json) moved\n{}",
        dump(out)
    );
}

fn last_commit(root: &InstallRoot) -> Option<String> {
    let text = fs::read_to_string(root.state_dir().join("state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).expect("state.json is JSON");
    v["last_commit"].as_str().map(str::to_string)
}

fn installed_version(root: &InstallRoot, name: &str) -> String {
    root.read_module_index(name)["metadata"]["schema_version"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no schema_version"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// keys and signed commits

/// A private directory holding SSH keys, allowed-signers files and a HOME for ssh-keygen.
struct Keyring {
    dir: tempfile::TempDir,
}

struct Key {
    /// The private key file (its public half is beside it, `.pub`).
    private: PathBuf,
    /// `ssh-ed25519 AAAA... comment`
    public: String,
}

impl Key {
    fn pub_path(&self) -> PathBuf {
        let mut p = self.private.clone().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    }

    /// An allowed-signers line for this key.
    fn signer_line(&self, principal: &str) -> String {
        format!("{principal} {}", self.public)
    }
}

impl Keyring {
    fn new() -> Keyring {
        let dir = tempfile::Builder::new()
            .prefix("updater-test-keys.")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("home")).unwrap();
        Keyring { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ssh_keygen(&self) -> Command {
        let mut c = Command::new("ssh-keygen");
        c.env("HOME", self.path("home"))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        c
    }

    /// `ssh-keygen -t ed25519 -N '' -C comment -f <dir>/name`.
    fn keygen(&self, name: &str, comment: &str) -> Key {
        let private = self.path(name);
        let out = self
            .ssh_keygen()
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&private)
            .output()
            .expect("run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = Key {
            public: String::new(),
            private,
        };
        let public = fs::read_to_string(key.pub_path())
            .unwrap()
            .trim()
            .to_string();
        Key { public, ..key }
    }

    /// Writes an allowed-signers file `<dir>/<name>` with these lines.
    fn allowed_signers(&self, name: &str, lines: &[String]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    /// `ssh-keygen -Y sign -n <namespace>` over `data`: the armored SSHSIG.
    fn sign(&self, key: &Key, namespace: &str, data: &[u8]) -> Vec<u8> {
        let file = tempfile::NamedTempFile::new_in(self.dir.path()).unwrap();
        fs::write(file.path(), data).unwrap();
        let out = self
            .ssh_keygen()
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(&key.private)
            .arg(file.path())
            .output()
            .expect("run ssh-keygen -Y sign");
        assert!(
            out.status.success(),
            "ssh-keygen -Y sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut sig_path = file.path().as_os_str().to_owned();
        sig_path.push(".sig");
        let sig = fs::read(&sig_path).unwrap();
        fs::remove_file(&sig_path).unwrap();
        sig
    }
}

/// `git add -A && git -c gpg.format=ssh -c user.signingkey=<key.pub> commit -S`; the new sha.
fn signed_commit(repo: &UpdatesRepo, key: &Key, msg: &str) -> String {
    repo.git(&["add", "-A"]);
    let signing = format!("user.signingkey={}", key.pub_path().display());
    let out = repo
        .git_command()
        .env_remove("SSH_AUTH_SOCK")
        .args(["-c", "gpg.format=ssh", "-c", &signing])
        .args([
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "--no-verify",
            "-m",
            msg,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run git commit -S");
    assert!(
        out.status.success(),
        "git commit -S failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = repo.head();
    let raw = cat_commit(repo, &sha);
    assert!(
        String::from_utf8_lossy(&raw).contains("gpgsig -----BEGIN SSH SIGNATURE-----"),
        "git did not sign {sha}"
    );
    sha
}

/// `git cat-file commit <sha>`, raw bytes.
fn cat_commit(repo: &UpdatesRepo, sha: &str) -> Vec<u8> {
    let out = repo
        .git_command()
        .args(["cat-file", "commit", sha])
        .output()
        .expect("run git cat-file");
    assert!(out.status.success(), "git cat-file commit {sha} failed");
    out.stdout
}

/// `git hash-object -t commit -w --stdin`: stores a hand-made commit object; its sha.
fn write_commit_object(repo: &UpdatesRepo, raw: &[u8]) -> String {
    let mut child = repo
        .git_command()
        .args(["hash-object", "-t", "commit", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git hash-object");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git hash-object failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `git update-ref refs/heads/master <sha>`: what a push of that commit would do.
fn point_master_at(repo: &UpdatesRepo, sha: &str) {
    repo.git(&["update-ref", "refs/heads/master", sha]);
}

/// Splits a raw commit object into its header block (without the blank line) and its message.
fn split_commit(raw: &[u8]) -> (&[u8], &[u8]) {
    let at = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a commit object has a blank line after its headers");
    (&raw[..at], &raw[at + 2..])
}

/// A commit object: `headers`, then a `gpgsig` header holding `sig` (continuation lines
/// prefixed by a space, as git writes it), then the message.
fn with_gpgsig(unsigned: &[u8], sig: &[u8]) -> Vec<u8> {
    let (headers, message) = split_commit(unsigned);
    assert!(
        !String::from_utf8_lossy(headers).contains("\ngpgsig "),
        "already signed"
    );
    let sig = String::from_utf8(sig.to_vec()).unwrap();
    let mut out = headers.to_vec();
    out.extend_from_slice(b"\ngpgsig ");
    out.extend_from_slice(sig.trim_end_matches('\n').replace('\n', "\n ").as_bytes());
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(message);
    out
}

/// `git add -A && git commit` without a signature; the raw commit object and its sha.
fn unsigned_commit(repo: &UpdatesRepo, msg: &str) -> (String, Vec<u8>) {
    let sha = repo.commit(msg);
    let raw = cat_commit(repo, &sha);
    assert!(!String::from_utf8_lossy(&raw).contains("gpgsig"));
    (sha, raw)
}

// ---------------------------------------------------------------------------------------------
// the signed-updates fixture

/// An updates repository whose tip is signed by alice, an install root that has synced it
/// with `--require-signed` (module `base` 1.0.0 installed), and alice in an allowed-signers file.
struct Signed {
    repo: UpdatesRepo,
    root: InstallRoot,
    keys: Keyring,
    alice: Key,
    allowed: PathBuf,
}

impl Signed {
    fn new() -> Signed {
        let keys = Keyring::new();
        let alice = keys.keygen("alice", "alice@example.com");
        let allowed =
            keys.allowed_signers("allowed_signers", &[alice.signer_line("alice@example.com")]);
        let repo = UpdatesRepo::new();
        repo.add_module("base", "1.0.0");
        let tip = signed_commit(&repo, &alice, "base 1.0.0");
        let root = InstallRoot::new();
        let fx = Signed {
            repo,
            root,
            keys,
            alice,
            allowed,
        };
        let out = fx.sync(NONE);
        assert_code(&out, 0);
        assert_eq!(installed_version(&fx.root, "base"), "1.0.0");
        assert_eq!(last_commit(&fx.root).as_deref(), Some(tip.as_str()));
        assert!(
            all_output(&out).contains(&format!("Commit {tip} is signed by alice@example.com")),
            "{}",
            dump(&out)
        );
        fx
    }

    /// `--require-signed --allowed-signers <alice's file>`, then `extra`.
    fn signed_args(&self, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--require-signed".into(),
            "--allowed-signers".into(),
            self.allowed.clone().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args
    }

    fn sync(&self, extra: &[&str]) -> Output {
        sync(&self.root, &self.repo, &self.signed_args(extra))
    }

    /// Stages what an attacker wants installed: `base` 2.0.0 and a new module `evil`.
    fn stage_attack(&self) {
        self.repo.set_version("base", "2.0.0");
        self.repo.add_module("evil", "1.0.0");
    }

    /// Runs a signed sync that must be refused with `needles`, and checks nothing changed.
    fn assert_sync_refused(&self, needles: &[&str]) -> Output {
        let before = freeze(&self.root);
        let out = self.sync(NONE);
        assert_refused(&out, 1, needles);
        assert_unchanged(&self.root, &before, &out);
        assert!(!exists_no_follow(&self.root.module_dir("evil")));
        assert_eq!(installed_version(&self.root, "base"), "1.0.0");
        assert!(
            !self.root.runs().iter().any(|l| l.starts_with("evil ")),
            "{:?}",
            self.root.runs()
        );
        out
    }

    /// A signed sync that must apply the attack's content (the control after a refusal).
    fn assert_sync_applies(&self, tip: &str) {
        let out = self.sync(NONE);
        assert_code(&out, 0);
        assert_eq!(installed_version(&self.root, "base"), "2.0.0");
        assert_eq!(installed_version(&self.root, "evil"), "1.0.0");
        assert_eq!(last_commit(&self.root).as_deref(), Some(tip));
    }
}

// ---------------------------------------------------------------------------------------------
// signatures: accepted

#[test]
fn commit_signed_by_an_allowed_key_is_accepted_and_installed() {
    let fx = Signed::new();
    // A signed update is applied too, and the signer is named.
    fx.repo.set_version("base", "1.1.0");
    fx.repo.add_module("extra", "1.0.0");
    let tip = signed_commit(&fx.repo, &fx.alice, "base 1.1.0, extra");
    let out = fx.sync(NONE);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains(&format!("Commit {tip} is signed by alice@example.com")),
        "{}",
        dump(&out)
    );
    assert_eq!(installed_version(&fx.root, "base"), "1.1.0");
    assert_eq!(installed_version(&fx.root, "extra"), "1.0.0");
    assert_eq!(
        packages(&fx.root),
        packages_of(&[("base", "1.1.0"), ("extra", "1.0.0")])
    );
    assert_eq!(last_commit(&fx.root).as_deref(), Some(tip.as_str()));
}

#[test]
fn allowed_signers_at_the_default_path_is_used() {
    let keys = Keyring::new();
    let alice = keys.keygen("alice", "alice@example.com");
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let tip = signed_commit(&repo, &alice, "base 1.0.0");
    let root = InstallRoot::new();
    fs::create_dir_all(root.state_dir()).unwrap();
    fs::set_permissions(root.state_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        root.state_dir().join("allowed_signers"),
        alice.signer_line("alice@example.com") + "\n",
    )
    .unwrap();
    let out = sync(&root, &repo, &["--require-signed"]);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains(&format!("Commit {tip} is signed by alice@example.com")),
        "{}",
        dump(&out)
    );
    assert_eq!(installed_version(&root, "base"), "1.0.0");

    // The same default file refuses another signer.
    let mallory = keys.keygen("mallory", "mallory@example.com");
    repo.set_version("base", "2.0.0");
    repo.add_module("evil", "1.0.0");
    let bad = signed_commit(&repo, &mallory, "evil");
    let before = freeze(&root);
    let out = sync(&root, &repo, &["--require-signed"]);
    assert_refused(
        &out,
        1,
        &[
            &format!("refusing commit {bad} (signature check)"),
            "unknown key",
        ],
    );
    assert_unchanged(&root, &before, &out);
}

#[test]
fn require_signed_in_the_installed_index_turns_the_check_on_without_the_flag() {
    let keys = Keyring::new();
    let alice = keys.keygen("alice", "alice@example.com");
    let repo = UpdatesRepo::new();
    // The repository's own index tries to switch the check off: it must not be able to.
    repo.write(
        "index.json",
        &to_json(&json!({
            "metadata": { "schema_version": "1.0.0", "channel": "stable", "require_signed": false },
            "packages": {},
        })),
    );
    repo.add_module("base", "1.0.0");
    let tip = signed_commit(&repo, &alice, "base 1.0.0");
    let root = InstallRoot::new();
    root.write_index(&json!({
        "metadata": { "schema_version": "1.0.0", "require_signed": true },
        "packages": {},
    }));
    fs::create_dir_all(root.state_dir()).unwrap();
    fs::set_permissions(root.state_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        root.state_dir().join("allowed_signers"),
        alice.signer_line("alice@example.com") + "\n",
    )
    .unwrap();

    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains(&format!("Commit {tip} is signed by alice@example.com")),
        "{}",
        dump(&out)
    );
    assert_eq!(installed_version(&root, "base"), "1.0.0");
    assert_eq!(
        root.read_index()["metadata"]["require_signed"],
        json!(true),
        "the repository's index switched require_signed off"
    );

    // An unsigned commit is now refused without any flag.
    repo.set_version("base", "2.0.0");
    repo.add_module("evil", "1.0.0");
    let (bad, _) = unsigned_commit(&repo, "unsigned");
    let before = freeze(&root);
    let out = sync(&root, &repo, NONE);
    assert_refused(
        &out,
        1,
        &[
            &format!("refusing commit {bad} (signature check)"),
            "not signed",
        ],
    );
    assert_unchanged(&root, &before, &out);
    assert!(!exists_no_follow(&root.module_dir("evil")));
}

// ---------------------------------------------------------------------------------------------
// signatures: attacks

#[test]
fn unsigned_tip_is_refused_on_a_fresh_machine() {
    let keys = Keyring::new();
    let alice = keys.keygen("alice", "alice@example.com");
    let allowed =
        keys.allowed_signers("allowed_signers", &[alice.signer_line("alice@example.com")]);
    let repo = UpdatesRepo::with_modules(2);
    let tip = repo.head();
    let root = InstallRoot::new();
    let before = freeze(&root);
    let mut args: Vec<OsString> = vec!["--require-signed".into(), "--allowed-signers".into()];
    args.push(allowed.into());
    let out = sync(&root, &repo, &args);
    assert_refused(
        &out,
        1,
        &[
            &format!("refusing commit {tip} (signature check)"),
            &format!("commit {tip} is not signed"),
        ],
    );
    assert_unchanged(&root, &before, &out);
    assert!(!root.path().join("modules").exists());
    assert!(!root.path().join("index.json").exists());
    assert!(root.runs().is_empty());
    // check refuses it the same way.
    let out = check(&root, &repo, &args);
    assert_refused(&out, 1, &[&format!("commit {tip} is not signed")]);
    assert_unchanged(&root, &before, &out);
}

#[test]
fn unsigned_tip_is_refused_and_stays_refused() {
    let fx = Signed::new();
    fx.stage_attack();
    let (bad, _) = unsigned_commit(&fx.repo, "unsigned: base 2.0.0, evil");
    let needles = [
        format!("refusing commit {bad} (signature check)"),
        format!("commit {bad} is not signed"),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    fx.assert_sync_refused(&needles);
    // The second attempt (the commit is already fetched into the clone) is refused again.
    fx.assert_sync_refused(&needles);
    // And check refuses it too.
    let before = freeze(&fx.root);
    let out = check(&fx.root, &fx.repo, &fx.signed_args(&[]));
    assert_refused(&out, 1, &needles);
    assert_unchanged(&fx.root, &before, &out);
}

#[test]
fn commit_signed_by_a_key_not_in_allowed_signers_is_refused() {
    let fx = Signed::new();
    // Mallory's key even carries alice's name as its comment: keys are compared, not names.
    let mallory = fx.keys.keygen("mallory", "alice@example.com");
    fx.stage_attack();
    let bad = signed_commit(&fx.repo, &mallory, "signed by mallory");
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        &format!("commit {bad} is signed by an unknown key SHA256:"),
        &fx.allowed.display().to_string(),
    ]);
}

#[test]
fn altered_signed_commit_does_not_verify_and_is_refused() {
    let fx = Signed::new();
    fx.stage_attack();
    let good = signed_commit(&fx.repo, &fx.alice, "release base 2.0.0");
    let mut raw = cat_commit(&fx.repo, &good);
    // One byte of the message changes; the gpgsig header is kept as it was.
    let (headers, _) = split_commit(&raw);
    let at = headers.len() + 2;
    assert_eq!(raw[at], b'r');
    raw[at] = b'R';
    let bad = write_commit_object(&fx.repo, &raw);
    assert_ne!(bad, good);
    assert!(String::from_utf8_lossy(&cat_commit(&fx.repo, &bad)).contains("gpgsig "));
    point_master_at(&fx.repo, &bad);
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        &format!("commit {bad}: signature is not valid"),
    ]);
    // Control: the unaltered commit, with the same signature, is accepted.
    point_master_at(&fx.repo, &good);
    fx.assert_sync_applies(&good);
}

#[test]
fn signature_made_for_another_namespace_is_refused() {
    let fx = Signed::new();
    fx.stage_attack();
    let (unsigned, raw) = unsigned_commit(&fx.repo, "signed for namespace file");
    // A valid SSHSIG by an allowed key over exactly the commit's content, but for "file".
    let sig = fx.keys.sign(&fx.alice, "file", &raw);
    let bad = write_commit_object(&fx.repo, &with_gpgsig(&raw, &sig));
    point_master_at(&fx.repo, &bad);
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        &format!("commit {bad}: signature namespace is \"file\", expected \"git\""),
    ]);
    // Control: the same construction with namespace "git" is accepted, so the refusal above was
    // the namespace's doing.
    let sig = fx.keys.sign(&fx.alice, "git", &raw);
    let good = write_commit_object(&fx.repo, &with_gpgsig(&raw, &sig));
    assert_ne!(good, unsigned);
    point_master_at(&fx.repo, &good);
    fx.assert_sync_applies(&good);
}

#[test]
fn openpgp_signature_is_refused_as_not_an_ssh_signature() {
    let fx = Signed::new();
    fx.stage_attack();
    let (_, raw) = unsigned_commit(&fx.repo, "pgp signed");
    let pgp =
        b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n";
    let bad = write_commit_object(&fx.repo, &with_gpgsig(&raw, pgp));
    point_master_at(&fx.repo, &bad);
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        "not an SSH signature",
    ]);
}

#[test]
fn allowed_key_restricted_to_other_namespaces_is_refused() {
    let fx = Signed::new();
    // The file now admits alice's key only for "file" signatures.
    fs::write(
        &fx.allowed,
        format!(
            "alice@example.com namespaces=\"file\" {}\n",
            fx.alice.public
        ),
    )
    .unwrap();
    fx.stage_attack();
    let bad = signed_commit(&fx.repo, &fx.alice, "alice, but git is not allowed");
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        "namespaces=\"file\"",
    ]);
}

#[test]
fn expired_allowed_key_is_refused() {
    let fx = Signed::new();
    fs::write(
        &fx.allowed,
        format!(
            "alice@example.com valid-before=\"20200101Z\" {}\n",
            fx.alice.public
        ),
    )
    .unwrap();
    fx.stage_attack();
    let bad = signed_commit(&fx.repo, &fx.alice, "alice, with an expired key");
    fx.assert_sync_refused(&[
        &format!("refusing commit {bad} (signature check)"),
        "expired",
    ]);
}

#[test]
fn missing_allowed_signers_file_given_with_the_flag_is_an_error_naming_it() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let keys = Keyring::new();
    let missing = keys.path("no-such-allowed_signers");
    let before = freeze(&root);
    let mut args: Vec<OsString> = vec!["--require-signed".into(), "--allowed-signers".into()];
    args.push(missing.clone().into());
    let out = sync(&root, &repo, &args);
    assert_refused(&out, 1, &[&missing.display().to_string(), "does not exist"]);
    assert_unchanged(&root, &before, &out);
    assert!(!root.path().join("modules").exists());
}

#[test]
fn missing_default_allowed_signers_file_is_an_error_naming_it() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let default = root.state_dir().join("allowed_signers");
    // Turned on by the flag...
    let before = freeze(&root);
    let out = sync(&root, &repo, &["--require-signed"]);
    assert_refused(&out, 1, &[&default.display().to_string(), "does not exist"]);
    assert_unchanged(&root, &before, &out);
    assert!(!root.path().join("modules").exists());
    // ...and by the installed index.
    root.write_index(&json!({
        "metadata": { "schema_version": "1.0.0", "require_signed": true },
        "packages": {},
    }));
    let before = freeze(&root);
    let out = sync(&root, &repo, NONE);
    assert_refused(&out, 1, &[&default.display().to_string(), "does not exist"]);
    assert_unchanged(&root, &before, &out);
    assert!(!root.path().join("modules").exists());
}

// ---------------------------------------------------------------------------------------------
// rewinds

/// A repository `I ← A ← B` (`base` 1.0.0 then 1.1.0) and a root that synced B.
fn synced_b() -> (UpdatesRepo, InstallRoot, String, String, String) {
    let repo = UpdatesRepo::new();
    let i = repo.head();
    repo.add_module("base", "1.0.0");
    let a = repo.commit("A: base 1.0.0");
    repo.set_version("base", "1.1.0");
    let b = repo.commit("B: base 1.1.0");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "base"), "1.1.0");
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    (repo, root, i, a, b)
}

#[test]
fn force_pushed_rewind_is_refused_unless_allow_rewind() {
    let (repo, root, i, _a, b) = synced_b();
    // Upstream is force-pushed: back to A's parent, and a new commit C that does not descend
    // from B.
    repo.reset_hard(&i);
    repo.add_module("base", "2.0.0");
    repo.add_module("evil", "1.0.0");
    let c = repo.commit("C: rewritten history");
    let needles = [
        format!("refusing commit {c} (rewind check)"),
        format!("does not descend from {b}"),
        "--allow-rewind".to_string(),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();

    let before = freeze(&root);
    let out = sync(&root, &repo, NONE);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);
    assert!(!exists_no_follow(&root.module_dir("evil")));

    let out = check(&root, &repo, NONE);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);

    // A fresh clone (B is then nowhere in the local history) does not get around the anchor.
    fs::remove_dir_all(root.clone_dir()).unwrap();
    let out = sync(&root, &repo, NONE);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);

    // --allow-rewind accepts and applies it, and moves the anchor.
    let out = sync(&root, &repo, &["--allow-rewind"]);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "base"), "2.0.0");
    assert_eq!(installed_version(&root, "evil"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(c.as_str()));

    // From there on, descendants of C need no flag.
    repo.set_version("base", "2.1.0");
    let d = repo.commit("D");
    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "base"), "2.1.0");
    assert_eq!(last_commit(&root).as_deref(), Some(d.as_str()));
}

#[test]
fn rollback_to_an_older_commit_is_refused_even_when_it_is_signed() {
    let keys = Keyring::new();
    let alice = keys.keygen("alice", "alice@example.com");
    let allowed =
        keys.allowed_signers("allowed_signers", &[alice.signer_line("alice@example.com")]);
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let a = signed_commit(&repo, &alice, "A: base 1.0.0 (vulnerable)");
    repo.set_version("base", "1.1.0");
    let b = signed_commit(&repo, &alice, "B: base 1.1.0 (fixed)");
    let root = InstallRoot::new();
    let mut args: Vec<OsString> = vec!["--require-signed".into(), "--allowed-signers".into()];
    args.push(allowed.into());
    let out = sync(&root, &repo, &args);
    assert_code(&out, 0);
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    // The branch is moved back to the validly signed, older A.
    repo.reset_hard(&a);
    let before = freeze(&root);
    let out = sync(&root, &repo, &args);
    assert_refused(
        &out,
        1,
        &[
            &format!("refusing commit {a} (rewind check)"),
            &format!("does not descend from {b}"),
        ],
    );
    assert_unchanged(&root, &before, &out);
    assert_eq!(installed_version(&root, "base"), "1.1.0");
}

#[test]
fn newer_descendant_commit_is_accepted_without_allow_rewind() {
    let (repo, root, _i, _a, _b) = synced_b();
    repo.set_version("base", "1.2.0");
    repo.add_module("extra", "1.0.0");
    repo.commit("C: on top of B");
    let d = repo.commit("D: on top of C (empty)");
    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
    assert!(
        !all_output(&out).contains("rewind"),
        "a descendant was taken for a rewind\n{}",
        dump(&out)
    );
    assert_eq!(installed_version(&root, "base"), "1.2.0");
    assert_eq!(installed_version(&root, "extra"), "1.0.0");
    assert_eq!(last_commit(&root).as_deref(), Some(d.as_str()));
    // Nothing new: the same tip again is fine too.
    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
}

/// `updater --modules-path R --repo-url <git:// url> <command> [extra...]`
fn over_network(root: &InstallRoot, url: &str, command: &str, extra: &[&str]) -> Output {
    let mut cmd = updater_at(root);
    cmd.args(["--repo-url", url, command]).args(extra);
    run(cmd)
}

fn is_shallow(clone: &Path) -> bool {
    clone.join(".git/shallow").exists()
}

#[test]
fn force_pushed_rewind_over_the_network_is_refused_even_from_a_shallow_clone() {
    let repo = UpdatesRepo::new();
    let i = repo.head();
    repo.add_module("base", "1.0.0");
    repo.commit("A: base 1.0.0");
    repo.set_version("base", "1.1.0");
    let b = repo.commit("B: base 1.1.0");
    let (_daemon, url) = serve(&repo);
    let root = InstallRoot::new();
    let out = over_network(&root, &url, "sync", &[]);
    assert_code(&out, 0);
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    assert!(
        is_shallow(&root.clone_dir()),
        "this test is about shallow clones, but the first network clone is not shallow"
    );

    repo.reset_hard(&i);
    repo.add_module("base", "2.0.0");
    repo.add_module("evil", "1.0.0");
    let c = repo.commit("C: rewritten history");
    let needles = [
        format!("refusing commit {c} (rewind check)"),
        format!("does not descend from {b}"),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let before = freeze(&root);
    let out = over_network(&root, &url, "sync", &[]);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);

    // A first clone over the network is shallow: the check must deepen it, not give up (or
    // take "not found beyond the boundary" for an answer either way).
    fs::remove_dir_all(root.clone_dir()).unwrap();
    let out = over_network(&root, &url, "sync", &[]);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);
    let out = over_network(&root, &url, "check", &[]);
    assert_refused(&out, 1, &needles);
    assert_unchanged(&root, &before, &out);
}

#[test]
fn descendant_is_accepted_over_the_network_from_a_fresh_shallow_clone() {
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    let b = repo.commit("B: base 1.0.0");
    let (_daemon, url) = serve(&repo);
    let root = InstallRoot::new();
    let out = over_network(&root, &url, "sync", &[]);
    assert_code(&out, 0);
    assert_eq!(last_commit(&root).as_deref(), Some(b.as_str()));
    // More than the first deepening step (64 commits) between B and the new tip.
    for n in 0..70 {
        repo.git(&["commit", "-q", "--allow-empty", "-m", &format!("empty {n}")]);
    }
    repo.set_version("base", "1.1.0");
    let tip = repo.commit("base 1.1.0");
    fs::remove_dir_all(root.clone_dir()).unwrap();
    let out = over_network(&root, &url, "sync", &[]);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "base"), "1.1.0");
    assert_eq!(last_commit(&root).as_deref(), Some(tip.as_str()));
    // The same from an existing shallow clone: a fresh one, then one more commit.
    fs::remove_dir_all(root.clone_dir()).unwrap();
    let out = over_network(&root, &url, "check", &[]);
    assert_code(&out, 0);
    repo.set_version("base", "1.2.0");
    let next = repo.commit("base 1.2.0");
    let out = over_network(&root, &url, "sync", &[]);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "base"), "1.2.0");
    assert_eq!(last_commit(&root).as_deref(), Some(next.as_str()));
}

// ---------------------------------------------------------------------------------------------
// hostile content

/// An install root inside a private directory `outer`, so that "nothing was written outside
/// the install root" can be checked on `outer`.
struct Hostile {
    outer: tempfile::TempDir,
    root: InstallRoot,
    repo: UpdatesRepo,
}

const ROOT_DIR_NAME: &str = "root";

impl Hostile {
    fn new() -> Hostile {
        let outer = tempfile::Builder::new()
            .prefix("updater-test-outer.")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(outer.path().join(ROOT_DIR_NAME)).unwrap();
        fs::write(outer.path().join("canary"), "original\n").unwrap();
        // InstallRoot's fields are public: put its directory inside `outer`.
        let root = InstallRoot {
            dir: tempfile::Builder::new()
                .prefix("r.")
                .tempdir_in(outer.path().join(ROOT_DIR_NAME))
                .expect("tempdir"),
            home: tempfile::Builder::new()
                .prefix("updater-test-home.")
                .tempdir()
                .expect("tempdir"),
        };
        root.install_module("keep", "1.0.0");
        let repo = UpdatesRepo::new();
        repo.add_module("keep", "1.1.0");
        repo.add_module("good", "1.0.0");
        Hostile { outer, root, repo }
    }

    fn canary(&self) -> PathBuf {
        self.outer.path().join("canary")
    }

    /// Commits, syncs with `--json`, and checks: exit 3; `name` is `invalid` with an error
    /// holding every needle; `<root>/modules/<name>` does not exist; `keep` and `good` applied;
    /// nothing outside the install root changed; /etc/passwd unchanged.
    fn assert_rejected(&self, name: &str, needles: &[&str]) -> Value {
        self.repo.commit("hostile content");
        let passwd = fs::read("/etc/passwd").ok();
        let outside = snapshot(self.outer.path(), &[ROOT_DIR_NAME]);
        let mut cmd = updater(&self.root, &self.repo);
        cmd.args(["sync", "--json"])
            .timeout(std::time::Duration::from_secs(20));
        let out = run(cmd);
        assert_code(&out, 3);
        let doc = json_of(&out);
        let entry = module_entry(&doc, name);
        assert_eq!(entry["decision"], "invalid", "{doc:#}");
        assert_eq!(entry["result"], Value::Null, "{doc:#}");
        let error = entry["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no error in {doc:#}"));
        for needle in needles {
            assert!(error.contains(needle), "{needle:?} is not in {error:?}");
        }
        assert!(doc["summary"]["invalid"].as_u64().unwrap() >= 1, "{doc:#}");
        assert!(
            !exists_no_follow(&self.root.module_dir(name)),
            "{name} was installed\n{}",
            dump(&out)
        );
        // The other modules are unaffected.
        assert_eq!(module_entry(&doc, "keep")["result"], "applied", "{doc:#}");
        assert_eq!(module_entry(&doc, "good")["result"], "applied", "{doc:#}");
        assert_eq!(installed_version(&self.root, "keep"), "1.1.0");
        assert_eq!(installed_version(&self.root, "good"), "1.0.0");
        assert_eq!(
            packages(&self.root),
            packages_of(&[("keep", "1.1.0"), ("good", "1.0.0")])
        );
        let mut installed: Vec<String> = fs::read_dir(self.root.path().join("modules"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        installed.sort();
        assert_eq!(installed, ["good", "keep"]);
        let mut runs = self.root.runs();
        runs.sort();
        assert_eq!(runs, ["good ->1.0.0", "keep 1.0.0->1.1.0"]);
        // Nothing written outside the install root.
        assert_eq!(
            snapshot(self.outer.path(), &[ROOT_DIR_NAME]),
            outside,
            "something outside the install root changed\n{}",
            dump(&out)
        );
        assert_eq!(fs::read_to_string(self.canary()).unwrap(), "original\n");
        assert_eq!(
            fs::read("/etc/passwd").ok(),
            passwd,
            "/etc/passwd changed!\n{}",
            dump(&out)
        );
        doc
    }
}

/// A module whose `update` would write `marker` through `path` (relative to the module).
fn add_writer_module(repo: &UpdatesRepo, name: &str, path: &str) {
    repo.add_module(name, "1.0.0");
    repo.write_exec(
        &format!("modules/{name}/update"),
        &format!("#!/bin/sh\necho pwned >> '{path}'\n"),
    );
}

fn bad_name_case(name: &str) {
    let h = Hostile::new();
    h.repo.add_module(name, "1.0.0");
    h.assert_rejected(name, &["is not a valid module name"]);
}

#[test]
fn module_named_hidden_is_rejected() {
    bad_name_case(".hidden");
}

#[test]
fn module_named_like_an_option_is_rejected() {
    bad_name_case("-x");
}

#[test]
fn module_name_with_a_space_is_rejected() {
    bad_name_case("a b");
}

#[test]
fn symlink_to_etc_passwd_inside_a_module_is_rejected() {
    let h = Hostile::new();
    h.repo.add_module("evil", "1.0.0");
    h.repo.symlink("modules/evil/passwd", "/etc/passwd");
    h.assert_rejected("evil", &["points outside the module", "/etc/passwd"]);
}

#[test]
fn absolute_symlink_written_through_by_the_entry_is_rejected() {
    let h = Hostile::new();
    let target = h.canary().display().to_string();
    add_writer_module(&h.repo, "evil", "link");
    h.repo.symlink("modules/evil/link", &target);
    h.assert_rejected("evil", &["points outside the module", &target]);
}

#[test]
fn symlink_climbing_out_of_a_module_is_rejected() {
    let h = Hostile::new();
    // Installed, `up` would be <root>/modules/evil/../../.. = the directory holding the root.
    add_writer_module(&h.repo, "evil", "up/../pwned");
    h.repo.symlink("modules/evil/up", "../../..");
    h.assert_rejected("evil", &["points outside the module", "../../.."]);
}

#[test]
fn symlink_escaping_through_another_symlink_is_rejected() {
    let h = Hostile::new();
    // `s -> .` stays inside; `t -> s/s/s/s/../../../../canary` looks inside when read
    // lexically (four names, four `..`), but the kernel resolves each `s` to the module itself,
    // so the four `..` climb from <outer>/root/r.X/modules/evil to <outer>: t is <outer>/canary.
    add_writer_module(&h.repo, "evil", "t");
    h.repo.symlink("modules/evil/s", ".");
    h.repo
        .symlink("modules/evil/t", "s/s/s/s/../../../../canary");
    h.assert_rejected("evil", &["points outside the module"]);
}

#[test]
fn repository_modules_directory_that_is_a_symlink_out_of_the_clone_is_not_used() {
    let h = Hostile::new();
    // Modules that are not in the repository at all, somewhere on the machine.
    let elsewhere = h.outer.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("stolen")).unwrap();
    fs::write(
        elsewhere.join("stolen/index.json"),
        to_json(&json!({ "metadata": { "schema_version": "1.0.0" } })),
    )
    .unwrap();
    let update = elsewhere.join("stolen/update");
    fs::write(
        &update,
        "#!/bin/sh\necho pwned >> \"$UPDATER_MODULES_PATH/../../canary\"\n",
    )
    .unwrap();
    chmod(&update, 0o755);
    h.repo.remove("modules");
    h.repo.symlink("modules", &elsewhere.display().to_string());
    h.repo.commit("modules is a symlink out of the repository");
    let before = freeze(&h.root);
    let outside = snapshot(h.outer.path(), &[ROOT_DIR_NAME]);
    let out = sync(&h.root, &h.repo, NONE);
    assert_ne!(code(&out), 0, "{}", dump(&out));
    assert!(
        !exists_no_follow(&h.root.module_dir("stolen")),
        "a module from outside the repository was installed\n{}",
        dump(&out)
    );
    assert_eq!(fs::read_to_string(h.canary()).unwrap(), "original\n");
    assert_eq!(snapshot(h.outer.path(), &[ROOT_DIR_NAME]), outside);
    assert_unchanged(&h.root, &before, &out);
}

/// A named pipe at `<outer>/fifo` that nobody ever writes to: opening it blocks forever.
fn make_fifo(h: &Hostile) -> PathBuf {
    let fifo = h.outer.path().join("fifo");
    let st = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(st.success());
    fifo
}

#[test]
fn module_index_json_symlinked_to_a_fifo_is_rejected_without_hanging() {
    let h = Hostile::new();
    let fifo = make_fifo(&h);
    h.repo.add_module("evil", "1.0.0");
    h.repo
        .symlink("modules/evil/index.json", &fifo.display().to_string());
    h.assert_rejected("evil", &["modules/evil"]);
}

#[test]
fn repository_index_json_symlinked_to_a_fifo_does_not_hang_the_run() {
    let h = Hostile::new();
    let fifo = make_fifo(&h);
    h.repo.symlink("index.json", &fifo.display().to_string());
    h.repo.commit("index.json is a FIFO outside the repository");
    let mut cmd = updater(&h.root, &h.repo);
    cmd.arg("sync").timeout(std::time::Duration::from_secs(20));
    let out = run(cmd);
    // The modules are applied and the installed index records exactly them.
    assert_code(&out, 0);
    assert_eq!(
        packages(&h.root),
        packages_of(&[("keep", "1.1.0"), ("good", "1.0.0")])
    );
}

#[test]
fn absolute_entry_path_is_rejected() {
    let h = Hostile::new();
    h.repo.add_module("evil", "1.0.0");
    h.repo.set_metadata("evil", "entry", json!("/bin/sh"));
    h.assert_rejected("evil", &["metadata.entry", "/bin/sh", "leaves the module"]);
}

#[test]
fn entry_path_climbing_out_of_a_module_is_rejected() {
    let h = Hostile::new();
    h.repo.add_module("evil", "1.0.0");
    h.repo.set_metadata("evil", "entry", json!("../../x"));
    // Would it be followed, this is what it would run.
    h.repo.write_exec(
        "x",
        "#!/bin/sh\necho pwned >> \"$UPDATER_MODULES_PATH/../../canary\"\n",
    );
    h.assert_rejected("evil", &["metadata.entry", "../../x", "leaves the module"]);
}

#[test]
fn health_path_climbing_out_of_a_module_is_rejected() {
    let h = Hostile::new();
    h.repo.add_module("evil", "1.0.0");
    h.repo
        .set_metadata("evil", "health", json!("../good/update"));
    h.assert_rejected(
        "evil",
        &["metadata.health", "../good/update", "leaves the module"],
    );
}

#[test]
fn depends_on_naming_a_path_is_rejected() {
    let h = Hostile::new();
    h.repo.add_module("evil", "1.0.0");
    h.repo.set_metadata("evil", "depends_on", json!(["../etc"]));
    h.assert_rejected("evil", &["depends_on", "../etc", "not a module name"]);
}

#[test]
fn module_directory_that_is_a_symlink_to_etc_is_rejected() {
    let h = Hostile::new();
    h.repo.symlink("modules/evil", "/etc");
    h.assert_rejected("evil", &["modules/evil", "not a directory"]);
}

// ---------------------------------------------------------------------------------------------
// permissions, as root

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

macro_rules! require_root {
    ($name:literal) => {
        if !is_root() {
            eprintln!(
                "note: skipping {} (it checks what updater refuses as root; `id -u` is not 0)",
                $name
            );
            return;
        }
    };
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs a sync that must be refused naming `dir` and "writable", with nothing installed.
fn assert_refused_as_unsafe(
    root: &InstallRoot,
    repo: &UpdatesRepo,
    extra: &[OsString],
    dir: &Path,
) {
    let before = freeze(root);
    let out = sync(root, repo, extra);
    assert_refused(
        &out,
        1,
        &[
            &dir.display().to_string(),
            "writable",
            "refusing to run as root",
        ],
    );
    assert_unchanged(root, &before, &out);
    assert!(!root.path().join("modules").exists());
    assert!(!root.path().join("index.json").exists());
    assert!(root.runs().is_empty());
}

#[test]
fn world_writable_install_root_is_refused_as_root() {
    require_root!("world_writable_install_root_is_refused_as_root");
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    chmod(root.path(), 0o777);
    assert_refused_as_unsafe(&root, &repo, &[], root.path());
}

#[test]
fn group_writable_install_root_with_a_non_root_group_is_refused_as_root() {
    require_root!("group_writable_install_root_with_a_non_root_group_is_refused_as_root");
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    std::os::unix::fs::chown(root.path(), Some(0), Some(1234)).unwrap();
    chmod(root.path(), 0o775);
    assert_refused_as_unsafe(&root, &repo, &[], root.path());
}

#[test]
fn world_writable_local_repo_is_refused_as_root() {
    require_root!("world_writable_local_repo_is_refused_as_root");
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let clone = elsewhere.path().join("clone");
    fs::create_dir(&clone).unwrap();
    chmod(&clone, 0o777);
    let args: Vec<OsString> = vec!["--local-repo".into(), clone.clone().into()];
    assert_refused_as_unsafe(&root, &repo, &args, &clone);
    assert_eq!(fs::read_dir(&clone).unwrap().count(), 0, "cloned into it");
}

#[test]
fn install_root_with_mode_0755_works_as_root() {
    require_root!("install_root_with_mode_0755_works_as_root");
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    chmod(root.path(), 0o755);
    let out = sync(&root, &repo, NONE);
    assert_code(&out, 0);
    assert_eq!(installed_version(&root, "m00"), "1.0.0");
}

// ---------------------------------------------------------------------------------------------
// the entry's environment

#[test]
fn entry_points_get_a_clean_environment() {
    let repo = UpdatesRepo::new();
    repo.add_module("envmod", "1.0.0");
    repo.write_exec(
        "modules/envmod/update",
        "#!/bin/sh\nenv > \"$UPDATER_MODULES_PATH/env.dump\"\n",
    );
    repo.commit("envmod");
    let root = InstallRoot::new();
    let mut cmd = updater(&root, &repo);
    cmd.env("SECRET_TOKEN", "s3cr3t-value-4242").arg("sync");
    let out = run(cmd);
    assert_code(&out, 0);
    let dump_text = fs::read_to_string(root.path().join("env.dump")).unwrap();
    let names: Vec<&str> = dump_text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for wanted in [
        "PATH",
        "UPDATER_MODULE",
        "UPDATER_TO_VERSION",
        "UPDATER_FROM_VERSION",
        "UPDATER_MODULE_DIR",
        "UPDATER_BACKUP_DIR",
        "UPDATER_MODULES_PATH",
    ] {
        assert!(
            names.contains(&wanted),
            "{wanted} missing from\n{dump_text}"
        );
    }
    assert!(
        !names.contains(&"SECRET_TOKEN") && !dump_text.contains("s3cr3t-value-4242"),
        "the caller's SECRET_TOKEN reached the entry point:\n{dump_text}"
    );
    assert!(dump_text.contains("UPDATER_MODULE=envmod\n"), "{dump_text}");
}

#[test]
fn world_writable_allowed_signers_file_is_refused_as_root() {
    require_root!("world_writable_allowed_signers_file_is_refused_as_root");
    let keys = Keyring::new();
    let alice = keys.keygen("alice", "alice@example.com");
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    signed_commit(&repo, &alice, "base 1.0.0");
    let root = InstallRoot::new();
    let signers = keys.allowed_signers("signers", &[alice.signer_line("alice@example.com")]);
    chmod(&signers, 0o666);
    let before = freeze(&root);
    let out = sync(
        &root,
        &repo,
        &[
            OsString::from("--require-signed"),
            OsString::from("--allowed-signers"),
            signers.clone().into_os_string(),
        ],
    );
    assert_refused(&out, 1, &["refusing to trust", "writable by every user"]);
    assert!(all_output(&out).contains(&signers.display().to_string()));
    assert_unchanged(&root, &before, &out);
    // The same file, fixed, is trusted.
    chmod(&signers, 0o644);
    let out = sync(
        &root,
        &repo,
        &[
            OsString::from("--require-signed"),
            OsString::from("--allowed-signers"),
            signers.into_os_string(),
        ],
    );
    assert_code(&out, 0);
}
