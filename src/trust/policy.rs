//! The trust policy of a sync (SPEC §9): which new remote commit may be accepted.
//!
//! - With `--require-signed` (or `require_signed` in the installed index) the allowed-signers
//!   file is loaded, refused when other users could write it (as root), and a new tip must be
//!   signed by one of its keys ([`TrustPolicy::check_signature`]); the commit already applied
//!   is not checked again.
//! - Unless `--allow-rewind` is given, a new tip must descend from the last commit this machine
//!   applied ([`TrustPolicy::rewind_base`], [`descends_from`]); `git::sync` asks, deepening a
//!   shallow clone until the answer is known, and refuses with [`rewind_error`].
//!
//! Both checks run before the work tree moves, so a refused commit changes nothing.

use std::path::Path;

use anyhow::{anyhow, Result};
use git2::{ErrorClass, Oid, Repository};

use super::error::TrustError;
use super::signers::AllowedSigners;
use super::verify::verify_commit;

/// What a new remote commit must satisfy before it is used.
#[derive(Debug, Default, Clone)]
pub struct TrustPolicy {
    /// When set, the tip must carry an SSH signature by one of these signers.
    pub allowed_signers: Option<AllowedSigners>,
    /// The last commit this machine applied: the tip must descend from it.
    pub last_applied: Option<String>,
    /// Accept a tip that does not descend from `last_applied`.
    pub allow_rewind: bool,
}

impl TrustPolicy {
    /// The policy of one run. `signers_file` is given when signatures are required: the
    /// allowed signers are loaded from it, and as root a file other users could write is
    /// refused first (`perms::refuse_unsafe_signers`). `last_applied` is the state's last
    /// commit.
    pub fn for_run(
        signers_file: Option<&Path>,
        last_applied: Option<String>,
        allow_rewind: bool,
    ) -> Result<TrustPolicy> {
        let allowed_signers = match signers_file {
            Some(path) => {
                crate::perms::refuse_unsafe_signers(path)?;
                Some(AllowedSigners::load(path)?)
            }
            None => None,
        };
        Ok(TrustPolicy {
            allowed_signers,
            last_applied,
            allow_rewind,
        })
    }

    /// Refuses a new tip that is not signed by an allowed signer (when signatures are
    /// required). The commit already applied is not checked again.
    pub fn check_signature(&self, repo: &Repository, tip: Oid) -> Result<()> {
        let Some(allowed) = &self.allowed_signers else {
            return Ok(());
        };
        if self.last_applied.as_deref() == Some(tip.to_string().as_str()) {
            return Ok(()); // nothing new
        }
        let principal = verify_commit_signature(repo, tip, allowed)
            .map_err(|e| anyhow!(e).context(format!("refusing commit {tip} (signature check)")))?;
        log::info!("Commit {tip} is signed by {principal}");
        Ok(())
    }

    /// The commit a new tip must descend from: the last applied one, unless rewinds are
    /// allowed or nothing was applied yet. A stored id that is not a commit id is an error.
    pub fn rewind_base(&self) -> Result<Option<Oid>> {
        match (&self.last_applied, self.allow_rewind) {
            (Some(last), false) => Oid::from_str(last)
                .map(Some)
                .map_err(|e| anyhow!(e).context(format!("bad last applied commit id {last}"))),
            _ => Ok(None),
        }
    }
}

/// The refusal of a tip that does not descend from `last`, the last applied commit.
pub fn rewind_error(tip: Oid, last: Oid) -> anyhow::Error {
    anyhow!(
        "refusing commit {tip} (rewind check): it does not descend from {last}, the last commit \
         this machine applied; the branch was rewound or rewritten (pass --allow-rewind to accept it)"
    )
}

/// Whether `tip` is `last` or descends from it, in the history present in the clone.
pub fn descends_from(repo: &Repository, tip: Oid, last: Oid) -> Result<bool> {
    if tip == last {
        return Ok(true);
    }
    match repo.graph_descendant_of(tip, last) {
        Ok(d) => Ok(d),
        // The walk met a commit that is not here (the last applied one, or a parent beyond a
        // shallow boundary): the last applied commit is not in the history we have.
        Err(e) if e.code() == git2::ErrorCode::NotFound || e.class() == ErrorClass::Odb => {
            Ok(false)
        }
        Err(e) => Err(anyhow!(e).context("comparing the new tip with the last applied commit")),
    }
}

/// Reads commit `oid` and verifies its SSH signature with [`verify_commit`]; the commit is
/// named by its full id in errors. A commit that cannot be read is refused as malformed.
pub fn verify_commit_signature(
    repo: &Repository,
    oid: Oid,
    allowed: &AllowedSigners,
) -> std::result::Result<String, TrustError> {
    let commit = oid.to_string();
    match repo.extract_signature(&oid, None) {
        Ok((signature, signed_data)) => {
            verify_commit(&commit, Some(&signature), &signed_data, allowed)
        }
        Err(e) if e.code() == git2::ErrorCode::NotFound => match repo.find_commit(oid) {
            // Unsigned, or no such commit: tell them apart for the message.
            Ok(_) => Err(TrustError::Unsigned { commit }),
            Err(e) => Err(TrustError::Malformed {
                reason: format!("cannot read the commit: {}", e.message()),
                commit,
            }),
        },
        Err(e) => Err(TrustError::Malformed {
            reason: format!("cannot read the commit's signature: {}", e.message()),
            commit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::test_support::{head_oid, Scratch};

    fn policy(last: Option<&str>, allow_rewind: bool) -> TrustPolicy {
        TrustPolicy {
            allowed_signers: None,
            last_applied: last.map(str::to_string),
            allow_rewind,
        }
    }

    #[test]
    fn rewind_base_is_the_last_applied_commit_unless_rewinds_are_allowed() {
        let oid = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            policy(Some(oid), false).rewind_base().unwrap(),
            Some(Oid::from_str(oid).unwrap())
        );
        assert_eq!(policy(Some(oid), true).rewind_base().unwrap(), None);
        assert_eq!(policy(None, false).rewind_base().unwrap(), None);
        let err = format!("{:#}", policy(Some("zz"), false).rewind_base().unwrap_err());
        assert!(err.contains("bad last applied commit id zz"), "{err}");
    }

    #[test]
    fn signers_file_is_read_only_when_signatures_are_required() {
        let s = Scratch::new();
        let missing = s.path("no-such-allowed_signers");
        let p = TrustPolicy::for_run(None, None, false).unwrap();
        assert!(p.allowed_signers.is_none());
        let err = format!(
            "{:#}",
            TrustPolicy::for_run(Some(&missing), None, false).unwrap_err()
        );
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn unsigned_tip_is_refused_only_when_new_and_signatures_required() {
        let s = Scratch::new();
        let (_key, public) = s.keygen("alice", "ed25519");
        let (repo, _sig, _data) = s.commit(None);
        let r = Repository::open(&repo).unwrap();
        let tip = head_oid(&repo);
        // No signers: nothing is checked.
        policy(None, false).check_signature(&r, tip).unwrap();
        let mut p = policy(None, false);
        p.allowed_signers = Some(s.allowed(&format!("alice@example.com {public}\n")));
        let err = format!("{:#}", p.check_signature(&r, tip).unwrap_err());
        assert!(
            err.contains(&format!("refusing commit {tip} (signature check)")),
            "{err}"
        );
        assert!(err.contains("is not signed"), "{err}");
        // The commit already applied is not checked again.
        p.last_applied = Some(tip.to_string());
        p.check_signature(&r, tip).unwrap();
    }

    #[test]
    fn descends_from_follows_history_and_refuses_unknown_commits() {
        let s = Scratch::new();
        let (repo, _, _) = s.commit(None);
        let first = head_oid(&repo);
        s.commit(None);
        let second = head_oid(&repo);
        let r = Repository::open(&repo).unwrap();
        assert!(descends_from(&r, second, first).unwrap());
        assert!(descends_from(&r, second, second).unwrap());
        assert!(!descends_from(&r, first, second).unwrap());
        let absent = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
        assert!(!descends_from(&r, second, absent).unwrap());
        let msg = rewind_error(first, second).to_string();
        assert!(msg.contains("--allow-rewind"), "{msg}");
    }
}
