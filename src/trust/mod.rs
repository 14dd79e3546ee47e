//! Trust checks on new remote commits (SPEC §9).
//!
//! Whoever can push to the updates repository runs code as root on every machine, so with
//! `--require-signed` a new commit is only used if it carries an SSH signature (git's `gpgsig`
//! header holding an armored SSHSIG, namespace `git`) made by a key listed in an OpenSSH
//! allowed-signers file. Everything here is done in-process with the `ssh-key` crate: no `git`,
//! `gpg` or `ssh-keygen` is run, so a machine's PATH cannot change a trust decision.
//!
//! - [`signers`]: the OpenSSH allowed-signers file format (parse and load).
//! - [`pattern`]: OpenSSH pattern-list matching (`namespaces="..."`).
//! - [`error`]: [`TrustError`], why a commit was refused.
//! - [`verify`]: checking one commit's SSH signature against the allowed signers.
//! - [`policy`]: which new commit a sync may accept: the signature requirement and the refusal
//!   of a rewound branch ([`TrustPolicy`]).
//!
//! Calendar arithmetic (validity windows) is done by [`crate::clock`].

pub mod error;
pub mod pattern;
pub mod policy;
pub mod signers;
pub mod verify;

#[cfg(test)]
mod test_support;

pub use error::{SignerLine, TrustError};
pub use policy::TrustPolicy;
pub use signers::{AllowedSigner, AllowedSigners, TimeBound};
pub use verify::{verify_commit, verify_commit_at, GIT_NAMESPACE};
