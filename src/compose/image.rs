//! Image references (`[registry/]name[:tag][@digest]`) as Docker reads them, and where each one
//! lives: the registry host to ask, the repository name inside it, and the tag or digest.

use std::fmt;

use anyhow::{bail, Result};

/// The host Docker means when a reference names no registry.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// One image reference, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference as written in the compose file.
    pub original: String,
    /// Registry host (with its port), `docker.io` when the reference names none.
    pub registry: String,
    /// Repository inside the registry (`library/nginx` for Docker Hub's `nginx`).
    pub repository: String,
    /// What to ask the registry for: the digest when there is one, else the tag (default `latest`).
    pub reference: String,
}

impl ImageRef {
    /// Reads a reference the way Docker does: the first path component is a registry when it
    /// contains a `.` or a `:` or is `localhost`; the tag defaults to `latest`.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let original = s.to_string();
        if s.is_empty() {
            bail!("an empty image reference");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("image reference {s:?} contains whitespace or control characters");
        }
        if s.contains("${") || s.contains('$') {
            bail!("image reference {s:?} uses a variable; updater checks only literal references");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    bail!("image reference {s:?} has an invalid digest {d:?}");
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), rest.to_string()),
        };
        // A tag is after the last ':' of the last path component.
        let (name, tag) = match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_string(), Some(t.to_string())),
            _ => (path.clone(), None),
        };
        if name.is_empty() || !name.split('/').all(valid_component) {
            bail!("image reference {s:?} has an invalid repository name {name:?}");
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                bail!("image reference {s:?} has an invalid tag {t:?}");
            }
        }
        if !valid_registry(&registry) {
            bail!("image reference {s:?} has an invalid registry {registry:?}");
        }
        let repository = if registry == DOCKER_HUB && !name.contains('/') {
            format!("library/{name}")
        } else {
            name
        };
        let reference = digest.unwrap_or_else(|| tag.unwrap_or_else(|| "latest".to_string()));
        Ok(ImageRef {
            original,
            registry,
            repository,
            reference,
        })
    }

    /// The host that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB || self.registry == "index.docker.io" {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`): Docker
    /// talks plain HTTP to such a registry, and so does updater.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

/// Whether `host[:port]` (or `[v6]:port`) names this machine: `localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 255
        && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
}

/// `host[:port]` or `[v6]:port`: a host of letters, digits, `.` and `-`, a port of digits.
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return false,
        },
        None => match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        },
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
}

fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((algo, hex)) => {
            !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, String) {
        let r = ImageRef::parse(s).unwrap();
        (r.registry, r.repository, r.reference)
    }

    #[test]
    fn docker_hub_official_image_gets_library_prefix_and_latest() {
        assert_eq!(
            parts("nginx"),
            ("docker.io".into(), "library/nginx".into(), "latest".into())
        );
        assert_eq!(
            ImageRef::parse("nginx").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn docker_hub_user_image_keeps_its_name() {
        assert_eq!(
            parts("grafana/grafana:10.4.1"),
            (
                "docker.io".into(),
                "grafana/grafana".into(),
                "10.4.1".into()
            )
        );
    }

    #[test]
    fn registry_with_port_is_not_mistaken_for_a_tag() {
        assert_eq!(
            parts("127.0.0.1:5000/team/app:2"),
            ("127.0.0.1:5000".into(), "team/app".into(), "2".into())
        );
        assert_eq!(
            parts("localhost:5000/app"),
            ("localhost:5000".into(), "app".into(), "latest".into())
        );
        assert!(ImageRef::parse("127.0.0.1:5000/app:1")
            .unwrap()
            .is_loopback());
        assert!(!ImageRef::parse("ghcr.io/a/b:1").unwrap().is_loopback());
    }

    #[test]
    fn digest_wins_over_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parts(&format!("ghcr.io/o/app:1.0@{d}")),
            ("ghcr.io".into(), "o/app".into(), d)
        );
    }

    #[test]
    fn malformed_references_are_errors_naming_the_reference() {
        for bad in [
            "",
            "App:1",
            "app:",
            "app:-x",
            "a b",
            "app@sha256:zz",
            "${IMAGE}",
            "reg.io/",
            "reg:abc/x:1",
            "re_g.io/x:1",
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) || bad.is_empty(),
                "{bad}: {e}"
            );
        }
    }
}
