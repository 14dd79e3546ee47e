//! Test helpers for the trust checks: a scratch directory with a private HOME, real
//! `ssh-keygen` keys and real (signed) git commits.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::AllowedSigners;

/// A scratch directory with a private HOME for git and ssh-keygen.
pub(crate) struct Scratch {
    pub(crate) dir: TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Scratch { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", self.path("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        c
    }

    pub(crate) fn run(&self, mut c: Command) -> Vec<u8> {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `ssh-keygen -t <kind>` without passphrase; returns (private key path, public line).
    pub(crate) fn keygen(&self, name: &str, kind: &str) -> (PathBuf, String) {
        let key = self.path(name);
        let (kind, bits) = match kind {
            "ecdsa384" => ("ecdsa", Some("384")),
            "rsa" => ("rsa", Some("2048")),
            other => (other, None),
        };
        let mut c = self.cmd("ssh-keygen");
        c.args([
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            &format!("{name}-comment"),
            "-f",
        ])
        .arg(&key);
        if let Some(bits) = bits {
            c.args(["-b", bits]);
        }
        self.run(c);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public.trim().to_string())
    }

    /// `ssh-keygen -lf key.pub`'s SHA256 fingerprint.
    pub(crate) fn fingerprint(&self, key: &Path) -> String {
        let mut c = self.cmd("ssh-keygen");
        c.arg("-lf").arg(key.with_extension("pub"));
        let out = String::from_utf8(self.run(c)).unwrap();
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    pub(crate) fn git(&self, repo: &Path, args: &[&str]) -> Vec<u8> {
        let mut c = self.cmd("git");
        c.arg("-C")
            .arg(repo)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args);
        self.run(c)
    }

    /// A new repository with one empty commit, signed with `key` if given; returns the
    /// repository and the commit's (signature, signed data).
    pub(crate) fn commit(&self, key: Option<&Path>) -> (PathBuf, Option<Vec<u8>>, Vec<u8>) {
        let repo = self.path("repo");
        if !repo.exists() {
            let mut c = self.cmd("git");
            c.args(["init", "-q"]).arg(&repo);
            self.run(c);
        }
        match key {
            Some(key) => {
                let signing = format!("user.signingkey={}", key.with_extension("pub").display());
                self.git(
                    &repo,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &signing,
                        "commit",
                        "-q",
                        "-S",
                        "--allow-empty",
                        "-m",
                        "msg",
                    ],
                )
            }
            None => self.git(&repo, &["commit", "-q", "--allow-empty", "-m", "msg"]),
        };
        let (sig, data) = read_commit(&repo);
        (repo, sig, data)
    }

    pub(crate) fn allowed(&self, text: &str) -> AllowedSigners {
        let path = self.path("allowed_signers");
        std::fs::write(&path, text).unwrap();
        AllowedSigners::load(&path).unwrap()
    }
}

/// HEAD's (signature, signed data) as read with git2.
pub(crate) fn read_commit(repo: &Path) -> (Option<Vec<u8>>, Vec<u8>) {
    let r = git2::Repository::open(repo).unwrap();
    let oid = r.head().unwrap().target().unwrap();
    match r.extract_signature(&oid, None) {
        Ok((sig, data)) => (Some(sig.to_vec()), data.to_vec()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            let raw = r.odb().unwrap().read(oid).unwrap().data().to_vec();
            (None, raw)
        }
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn head_oid(repo: &Path) -> git2::Oid {
    git2::Repository::open(repo)
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
}
