//! [`TrustError`]: why a commit was refused, one variant per check of
//! [`verify_commit`](super::verify_commit), each displayed as one line naming the commit.

use std::fmt;
use std::path::PathBuf;

use super::verify::GIT_NAMESPACE;

/// Why a commit was refused. `Display` is one line naming the commit and the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// The commit has no `gpgsig` header.
    Unsigned { commit: String },
    /// The signature is not a decodable SSHSIG (e.g. an OpenPGP signature, broken armor).
    Malformed { commit: String, reason: String },
    /// The signature does not verify over the commit (altered commit or signature, or an
    /// algorithm that cannot be verified).
    BadSignature { commit: String, reason: String },
    /// The signing key is not in the allowed-signers file.
    UnknownKey {
        commit: String,
        /// `SHA256:...`, as `ssh-keygen -l` prints it.
        fingerprint: String,
        file: PathBuf,
    },
    /// The signature was made for another namespace than `git`.
    WrongNamespace { commit: String, namespace: String },
    /// The key is allowed, but its `namespaces=` option does not admit `git`.
    NamespaceNotAllowed {
        commit: String,
        /// The `namespaces=` value of the signer's line.
        namespaces: String,
        signer: Box<SignerLine>,
    },
    /// The key is allowed, but not now (`valid-after` / `valid-before`).
    KeyNotValid {
        commit: String,
        /// e.g. `expired at 2024-01-01T00:00:00Z (valid-before="20240101Z")`.
        reason: String,
        signer: Box<SignerLine>,
    },
}

/// The allowed-signers line whose options refused a commit (boxed in [`TrustError`] to keep
/// the error small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerLine {
    /// The line's principals field.
    pub principal: String,
    /// `SHA256:...` of the key.
    pub fingerprint: String,
    pub file: PathBuf,
    pub line: usize,
}

impl TrustError {
    /// The commit this refusal is about.
    pub fn commit(&self) -> &str {
        match self {
            TrustError::Unsigned { commit }
            | TrustError::Malformed { commit, .. }
            | TrustError::BadSignature { commit, .. }
            | TrustError::UnknownKey { commit, .. }
            | TrustError::WrongNamespace { commit, .. }
            | TrustError::NamespaceNotAllowed { commit, .. }
            | TrustError::KeyNotValid { commit, .. } => commit,
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Unsigned { commit } => {
                write!(f, "commit {commit} is not signed (--require-signed)")
            }
            TrustError::Malformed { commit, reason } => {
                write!(f, "commit {commit}: signature is malformed: {reason}")
            }
            TrustError::BadSignature { commit, reason } => {
                write!(f, "commit {commit}: signature is not valid: {reason}")
            }
            TrustError::UnknownKey {
                commit,
                fingerprint,
                file,
            } => write!(
                f,
                "commit {commit} is signed by an unknown key {fingerprint} (not in {})",
                file.display()
            ),
            TrustError::WrongNamespace { commit, namespace } => write!(
                f,
                "commit {commit}: signature namespace is {namespace:?}, expected {GIT_NAMESPACE:?}"
            ),
            TrustError::NamespaceNotAllowed {
                commit,
                namespaces,
                signer,
            } => write!(
                f,
                "commit {commit} is signed by {} ({}), but {}:{} allows that key only for \
                 namespaces=\"{namespaces}\", which does not include {GIT_NAMESPACE:?}",
                signer.principal,
                signer.fingerprint,
                signer.file.display(),
                signer.line
            ),
            TrustError::KeyNotValid {
                commit,
                reason,
                signer,
            } => write!(
                f,
                "commit {commit} is signed by {} ({}), but that key {reason} ({}:{})",
                signer.principal,
                signer.fingerprint,
                signer.file.display(),
                signer.line
            ),
        }
    }
}

impl std::error::Error for TrustError {}
