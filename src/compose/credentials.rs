//! Registry credentials from the Docker config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`; `commands::settings` says which): `auths.<host>.auth` (base64 of
//! `user:password`, as `docker login` writes it) or `auths.<host>.username` + `password`.
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::path::Path;

use anyhow::{Context, Result};

use super::image::DOCKER_HUB;

/// The `auths` of a Docker config file: host → the base64 `user:password` of HTTP basic auth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    auths: Vec<(String, String)>,
    /// The file declares a credential helper (not run by updater).
    pub has_helpers: bool,
}

impl DockerConfig {
    /// Reads the file at `path`; a missing file (or `None`) is an empty configuration.
    pub fn load(path: Option<&Path>) -> Result<DockerConfig> {
        let Some(path) = path else {
            return Ok(DockerConfig::default());
        };
        if !path.exists() {
            return Ok(DockerConfig::default());
        }
        let text = crate::fs::read_to_string(path)?;
        DockerConfig::parse(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Parses the JSON text of a Docker config file.
    pub fn parse(text: &str) -> Result<DockerConfig> {
        let v: serde_json::Value = serde_json::from_str(text).context("invalid JSON")?;
        let mut auths = Vec::new();
        if let Some(map) = v.get("auths").and_then(|a| a.as_object()) {
            for (key, entry) in map {
                let auth = match entry.get("auth").and_then(|a| a.as_str()) {
                    Some(a) if !a.is_empty() => Some(a.to_string()),
                    _ => match (
                        entry.get("username").and_then(|u| u.as_str()),
                        entry.get("password").and_then(|p| p.as_str()),
                    ) {
                        (Some(u), Some(p)) => Some(base64(format!("{u}:{p}").as_bytes())),
                        _ => None,
                    },
                };
                if let Some(auth) = auth {
                    auths.push((host_of(key), auth));
                }
            }
        }
        let has_helpers = v.get("credsStore").is_some() || v.get("credHelpers").is_some();
        Ok(DockerConfig { auths, has_helpers })
    }

    /// The base64 `user:password` for `registry` (a host, with its port), if the file has one.
    /// Docker Hub is found under any of its names (`https://index.docker.io/v1/`, `docker.io`, …).
    pub fn basic_for(&self, registry: &str) -> Option<&str> {
        let hub = |h: &str| matches!(h, DOCKER_HUB | "index.docker.io" | "registry-1.docker.io");
        let wanted = registry.to_ascii_lowercase();
        self.auths
            .iter()
            .find(|(h, _)| *h == wanted || (hub(h) && hub(&wanted)))
            .map(|(_, a)| a.as_str())
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `reg.example:5000` stays as it is.
fn host_of(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_ascii_lowercase()
}

/// Standard base64 with padding (RFC 4648), for the `Authorization: Basic` value.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("user:pa ss", "dXNlcjpwYSBzcw=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn auth_is_found_by_host_and_docker_hub_by_any_of_its_names() {
        let cfg = DockerConfig::parse(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "ghcr.io": {}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(cfg.basic_for("docker.io"), Some("aHViOnNlY3JldA=="));
        assert_eq!(
            cfg.basic_for("registry-1.docker.io"),
            Some("aHViOnNlY3JldA==")
        );
        assert_eq!(
            cfg.basic_for("127.0.0.1:5000"),
            Some(base64(b"u:p").as_str())
        );
        assert_eq!(cfg.basic_for("ghcr.io"), None);
        assert_eq!(cfg.basic_for("127.0.0.1:5001"), None);
        assert!(cfg.has_helpers);
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(
            DockerConfig::load(Some(&path)).unwrap(),
            DockerConfig::default()
        );
        std::fs::write(&path, "{nope").unwrap();
        let e = format!("{:#}", DockerConfig::load(Some(&path)).unwrap_err());
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
