//! Verification of one git commit's SSH signature against the allowed signers.
//!
//! The checks of [`verify_commit`], in order, each refusing with its own [`TrustError`]:
//! 1. the commit has a signature at all ([`TrustError::Unsigned`]);
//! 2. it is an armored SSHSIG that decodes ([`TrustError::Malformed`]; an OpenPGP or X.509
//!    signature is refused here with "not an SSH signature");
//! 3. its namespace is exactly `git` ([`TrustError::WrongNamespace`]);
//! 4. its public key is one of the allowed signers' keys, compared as key material, never by
//!    comment ([`TrustError::UnknownKey`]);
//! 5. that signer line's `namespaces="..."` option, if any, admits `git`
//!    ([`TrustError::NamespaceNotAllowed`]), and its `valid-after` / `valid-before` window
//!    contains the current time ([`TrustError::KeyNotValid`]);
//! 6. the signature verifies over the signed data with the signature's own hash algorithm
//!    (SHA-256 or SHA-512) ([`TrustError::BadSignature`]).

use std::time::SystemTime;

use ssh_key::{HashAlg, SshSig};

use super::error::{SignerLine, TrustError};
use super::signers::{unsupported_key, AllowedSigner, AllowedSigners};
use crate::clock;

/// The SSHSIG namespace git signs commits and tags in.
pub const GIT_NAMESPACE: &str = "git";

const SSH_ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &str = "-----BEGIN PGP SIGNATURE-----";

/// Verifies a git commit's SSH signature at the current time; see [`verify_commit_at`].
pub fn verify_commit(
    commit: &str,
    signature: Option<&[u8]>,
    signed_data: &[u8],
    allowed: &AllowedSigners,
) -> std::result::Result<String, TrustError> {
    verify_commit_at(commit, signature, signed_data, allowed, SystemTime::now())
}

/// Verifies a git commit's SSH signature. `signature` is the `gpgsig` header content (armored
/// `-----BEGIN SSH SIGNATURE-----`), `signed_data` the commit object without that header:
/// exactly the `(signature, signed_data)` of git2's `Repository::extract_signature(oid, None)`
/// (see [`super::policy::verify_commit_signature`]). `now` is the time signer validity windows are checked at.
/// Returns the principals field of the matching allowed-signers line.
pub fn verify_commit_at(
    commit: &str,
    signature: Option<&[u8]>,
    signed_data: &[u8],
    allowed: &AllowedSigners,
    now: SystemTime,
) -> std::result::Result<String, TrustError> {
    let Some(signature) = signature else {
        return Err(TrustError::Unsigned {
            commit: commit.to_string(),
        });
    };
    let sig = decode_signature(signature).map_err(|reason| TrustError::Malformed {
        commit: commit.to_string(),
        reason,
    })?;
    if sig.namespace() != GIT_NAMESPACE {
        return Err(TrustError::WrongNamespace {
            commit: commit.to_string(),
            namespace: sig.namespace().to_string(),
        });
    }
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let now = clock::unix_seconds(now);

    let line_of = |signer: &AllowedSigner| {
        Box::new(SignerLine {
            principal: signer.principal(),
            fingerprint: fingerprint.clone(),
            file: allowed.path.clone(),
            line: signer.line,
        })
    };
    // The first line with this key that admits it now decides; otherwise the first refusal.
    let mut refusal = None;
    let mut chosen = None;
    for signer in allowed
        .signers
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
    {
        if !signer.allows_namespace(GIT_NAMESPACE) {
            refusal.get_or_insert_with(|| TrustError::NamespaceNotAllowed {
                commit: commit.to_string(),
                namespaces: signer.namespaces.as_deref().unwrap_or_default().join(","),
                signer: line_of(signer),
            });
            continue;
        }
        if let Err(reason) = signer.check_validity(now) {
            refusal.get_or_insert_with(|| TrustError::KeyNotValid {
                commit: commit.to_string(),
                reason,
                signer: line_of(signer),
            });
            continue;
        }
        chosen = Some(signer);
        break;
    }
    let Some(signer) = chosen else {
        return Err(refusal.unwrap_or_else(|| TrustError::UnknownKey {
            commit: commit.to_string(),
            fingerprint,
            file: allowed.path.clone(),
        }));
    };

    if let Some(why) = unsupported_key(signer.key.key_data()) {
        return Err(TrustError::BadSignature {
            commit: commit.to_string(),
            reason: why,
        });
    }
    // Checks key and namespace again, hashes `signed_data` with the signature's hash
    // algorithm and verifies the signature over the SSHSIG signed-data blob.
    signer
        .key
        .verify(GIT_NAMESPACE, signed_data, &sig)
        .map_err(|e| TrustError::BadSignature {
            commit: commit.to_string(),
            reason: format!(
                "{} signature ({}) does not verify over the commit: {e}",
                sig.algorithm(),
                sig.hash_alg()
            ),
        })?;
    Ok(signer.principal())
}

/// Decodes an armored SSHSIG, or says why it is not one.
fn decode_signature(bytes: &[u8]) -> std::result::Result<SshSig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text (invalid UTF-8)".to_string())?;
    let text = text.trim();
    if !text.starts_with(SSH_ARMOR) {
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect::<String>();
        return Err(if text.starts_with(PGP_ARMOR) {
            "not an SSH signature (an OpenPGP signature; sign with gpg.format=ssh)".to_string()
        } else if first.is_empty() {
            "not an SSH signature (empty)".to_string()
        } else {
            format!("not an SSH signature (starts with {first:?})")
        });
    }
    // Git keeps the armor's lines as ssh-keygen wrote them; drop any CRs a transport added.
    let normalized: String = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n");
    SshSig::from_pem(normalized.as_bytes())
        .map_err(|e| format!("cannot decode the SSH signature: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::days_from_civil;
    use crate::trust::test_support::{head_oid, Scratch};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn signed_by_allowed_key_is_accepted() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (repo, sig, data) = s.commit(Some(&key));
        let sig = sig.expect("signed commit has a gpgsig header");
        assert!(String::from_utf8_lossy(&sig).starts_with(SSH_ARMOR));
        // The key's comment differs from the file's: keys are compared, not comments.
        let key_only: Vec<&str> = public.split(' ').take(2).collect();
        let allowed = s.allowed(&format!(
            "alice@example.com {} other-comment\n",
            key_only.join(" ")
        ));
        assert_eq!(
            verify_commit("abc123", Some(&sig), &data, &allowed).unwrap(),
            "alice@example.com"
        );

        // The same through the repository helper.
        let r = git2::Repository::open(&repo).unwrap();
        assert_eq!(
            crate::trust::policy::verify_commit_signature(&r, head_oid(&repo), &allowed).unwrap(),
            "alice@example.com"
        );

        // git itself agrees with our reading of the file.
        let file = format!("gpg.ssh.allowedSignersFile={}", allowed.path.display());
        s.git(&repo, &["-c", &file, "verify-commit", "HEAD"]);
    }

    #[test]
    fn unsigned_commit_is_refused() {
        let s = Scratch::new();
        let (_key, public) = s.keygen("alice", "ed25519");
        let (repo, sig, data) = s.commit(None);
        assert!(sig.is_none());
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let err = verify_commit("abc123", None, &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::Unsigned { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "commit abc123 is not signed (--require-signed)"
        );

        let r = git2::Repository::open(&repo).unwrap();
        let err = crate::trust::policy::verify_commit_signature(&r, head_oid(&repo), &allowed)
            .unwrap_err();
        assert!(matches!(err, TrustError::Unsigned { .. }), "{err:?}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_fingerprint() {
        let s = Scratch::new();
        let (alice, _) = s.keygen("alice", "ed25519");
        let (_bob, bob_public) = s.keygen("bob", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&alice));
        let allowed = s.allowed(&format!("bob@example.com {bob_public}\n"));
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        let fingerprint = s.fingerprint(&alice);
        assert!(fingerprint.starts_with("SHA256:"));
        match &err {
            TrustError::UnknownKey {
                fingerprint: f,
                file,
                ..
            } => {
                assert_eq!(f, &fingerprint);
                assert_eq!(file, &allowed.path);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "commit abc123 is signed by an unknown key {fingerprint} (not in {})",
                allowed.path.display()
            )
        );
    }

    #[test]
    fn signature_for_another_namespace_is_refused() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, _sig, data) = s.commit(Some(&key));
        let data_file = s.path("data");
        std::fs::write(&data_file, &data).unwrap();
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-Y", "sign", "-n", "file", "-f"])
            .arg(&key)
            .arg(&data_file);
        s.run(c);
        let file_sig = std::fs::read(s.path("data.sig")).unwrap();
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let err = verify_commit("abc123", Some(&file_sig), &data, &allowed).unwrap_err();
        assert!(
            matches!(&err, TrustError::WrongNamespace { namespace, .. } if namespace == "file"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "commit abc123: signature namespace is \"file\", expected \"git\""
        );

        // The same data signed for "git" by ssh-keygen directly is accepted.
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-Y", "sign", "-n", "git", "-f"])
            .arg(&key)
            .arg(&data_file);
        std::fs::remove_file(s.path("data.sig")).unwrap();
        s.run(c);
        let git_sig = std::fs::read(s.path("data.sig")).unwrap();
        assert_eq!(
            verify_commit("abc123", Some(&git_sig), &data, &allowed).unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn tampered_commit_is_refused() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, mut data) = s.commit(Some(&key));
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let pos = data.windows(3).position(|w| w == b"msg").unwrap();
        data[pos] ^= 0x01;
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("commit abc123: signature is not valid: "),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_foreign_signatures_are_malformed() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let reason = |sig: &[u8]| match verify_commit("abc123", Some(sig), &data, &allowed) {
            Err(TrustError::Malformed { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };

        let pgp = b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n";
        assert!(
            reason(pgp).starts_with("not an SSH signature"),
            "{}",
            reason(pgp)
        );
        assert!(reason(b"garbage").starts_with("not an SSH signature"));
        assert!(reason(b"").starts_with("not an SSH signature"));
        assert!(reason(&[0xff, 0xfe]).contains("UTF-8"));
        let bad_base64 =
            b"-----BEGIN SSH SIGNATURE-----\n!!!notbase64!!!\n-----END SSH SIGNATURE-----\n";
        assert!(
            reason(bad_base64).starts_with("cannot decode"),
            "{}",
            reason(bad_base64)
        );

        // A truncated real signature.
        let sig = String::from_utf8(sig.unwrap()).unwrap();
        let mut lines: Vec<&str> = sig.lines().collect();
        lines.remove(2);
        let truncated = lines.join("\n");
        assert!(reason(truncated.as_bytes()).starts_with("cannot decode"));

        let err = verify_commit("abc123", Some(pgp), &data, &allowed).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("commit abc123: signature is malformed: not an SSH signature"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_option_must_admit_git() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let sig = sig.as_deref();

        let allowed = s.allowed(&format!("alice@example.com namespaces=\"file\" {public}\n"));
        let err = verify_commit("abc123", sig, &data, &allowed).unwrap_err();
        assert!(
            matches!(&err, TrustError::NamespaceNotAllowed { namespaces, signer, .. } if namespaces == "file" && signer.line == 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("namespaces=\"file\""), "{err}");

        for ok in ["git", "file,git", "g*", "NAMESPACES=\"*\""] {
            let opts = if ok.contains('=') {
                ok.to_string()
            } else {
                format!("namespaces=\"{ok}\"")
            };
            let allowed = s.allowed(&format!("alice@example.com {opts} {public}\n"));
            assert_eq!(
                verify_commit("abc123", sig, &data, &allowed).unwrap(),
                "alice@example.com",
                "{ok}"
            );
        }
        let allowed = s.allowed(&format!(
            "alice@example.com namespaces=\"*,!git\" {public}\n"
        ));
        assert!(matches!(
            verify_commit("abc123", sig, &data, &allowed),
            Err(TrustError::NamespaceNotAllowed { .. })
        ));

        // A later line for the same key that admits git is used.
        let allowed = s.allowed(&format!(
            "file@example.com namespaces=\"file\" {public}\ngit@example.com namespaces=\"git\" {public}\n"
        ));
        assert_eq!(
            verify_commit("abc123", sig, &data, &allowed).unwrap(),
            "git@example.com"
        );
    }

    #[test]
    fn validity_window_is_checked_at_verification_time() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let sig = sig.as_deref();
        let at = |y: i64, m: i64, d: i64| {
            UNIX_EPOCH + Duration::from_secs((days_from_civil(y, m, d) * 86_400) as u64)
        };
        let allowed = s.allowed(&format!(
            "alice@example.com valid-after=\"20200101Z\",valid-before=\"20300101000000Z\" {public}\n"
        ));
        assert!(verify_commit_at("c", sig, &data, &allowed, at(2025, 6, 1)).is_ok());
        let err = verify_commit_at("c", sig, &data, &allowed, at(2031, 1, 1)).unwrap_err();
        assert!(matches!(err, TrustError::KeyNotValid { .. }), "{err:?}");
        assert!(
            err.to_string().contains("expired at 2030-01-01T00:00:00Z"),
            "{err}"
        );
        let err = verify_commit_at("c", sig, &data, &allowed, at(2019, 1, 1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not valid before 2020-01-01T00:00:00Z"),
            "{err}"
        );

        // Local time (no Z): taken at its strictest.
        let allowed = s.allowed(&format!(
            "alice@example.com valid-before=\"20300101\" {public}\n"
        ));
        let bound = allowed.signers[0].valid_before.as_ref().unwrap().unix;
        assert_eq!(bound, days_from_civil(2030, 1, 1) * 86_400 - 14 * 3600);
        let allowed = s.allowed(&format!(
            "alice@example.com valid-after=\"202001011200\" {public}\n"
        ));
        let bound = allowed.signers[0].valid_after.as_ref().unwrap().unix;
        assert_eq!(bound, days_from_civil(2020, 1, 1) * 86_400 + 24 * 3600);
    }

    #[test]
    fn ecdsa_p256_p384_and_rsa_keys_work() {
        for kind in ["ecdsa", "ecdsa384", "rsa"] {
            let s = Scratch::new();
            let (key, public) = s.keygen("k", kind);
            let (_repo, sig, data) = s.commit(Some(&key));
            match kind {
                "ecdsa" => assert!(public.starts_with("ecdsa-sha2-nistp256 "), "{public}"),
                "ecdsa384" => assert!(public.starts_with("ecdsa-sha2-nistp384 "), "{public}"),
                _ => assert!(public.starts_with("ssh-rsa "), "{public}"),
            }
            let allowed = s.allowed(&format!("k@example.com {public}\n"));
            assert_eq!(
                verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap(),
                "k@example.com",
                "{kind}"
            );
            let mut tampered = data.clone();
            tampered.push(b'\n');
            assert!(matches!(
                verify_commit("abc123", sig.as_deref(), &tampered, &allowed),
                Err(TrustError::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn unsupported_key_types_are_refused_clearly() {
        let s = Scratch::new();
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-t", "ecdsa", "-b", "521", "-N", "", "-f"])
            .arg(s.path("big"));
        s.run(c);
        let big = s.path("big");
        let public = std::fs::read_to_string(big.with_extension("pub")).unwrap();
        let (_repo, sig, data) = s.commit(Some(&big));
        let allowed = s.allowed(&format!("big@example.com {public}"));
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("ecdsa-sha2-nistp521 keys are not supported"),
            "{err}"
        );
    }
}
