//! Repository URLs: a plain path (made absolute against the working directory the settings
//! stage read), `file://`, scp-like ssh (`user@host:path`) or a network URL, and what each
//! transport can do.

use std::path::{Path, PathBuf};

/// Turns a plain relative path into an absolute one under `cwd` (the working directory, read by
/// the settings stage), so the clone's remote does not depend on the working directory of a
/// later run. URLs are returned unchanged, and so is a relative path when `cwd` is unknown.
pub fn normalize_url(url: &str, cwd: Option<&Path>) -> String {
    let looks_like_url = url.contains("://") || is_scp_like(url);
    if looks_like_url {
        return url.to_string();
    }
    let p = Path::new(url);
    if p.is_absolute() {
        return url.to_string();
    }
    match cwd {
        Some(cwd) => {
            let joined = cwd.join(p);
            joined
                .canonicalize()
                .unwrap_or(joined)
                .to_string_lossy()
                .into_owned()
        }
        None => url.to_string(),
    }
}

/// The filesystem path a plain-path or `file://` URL names (None for network URLs).
pub(super) fn local_path_of(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (!url.contains("://") && !is_scp_like(url)).then(|| PathBuf::from(url))
}

/// Whether talking to `url` may need TLS (https, or http that may redirect to https): only then
/// does OpenSSL need the system's CA bundle.
pub fn uses_tls(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// `user@host:path` (scp-like ssh syntax): a colon before any slash.
fn is_scp_like(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) => c < s && c > 0,
        (Some(c), None) => c > 0,
        _ => false,
    }
}

/// Whether the transport can serve a shallow fetch (libgit2 cannot for local paths).
pub(super) fn supports_shallow(url: &str) -> bool {
    ["git://", "http://", "https://", "ssh://"]
        .iter()
        .any(|p| url.starts_with(p))
        || is_scp_like(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_like_urls_are_urls() {
        assert!(is_scp_like("git@github.com:org/repo.git"));
        assert!(!is_scp_like("./repo"));
        assert!(!is_scp_like("/srv/repo"));
        assert!(!is_scp_like("file:///srv/repo"));
        assert!(!supports_shallow("file:///srv/repo"));
        assert!(!supports_shallow("/srv/repo"));
        assert!(supports_shallow("git@host:org/repo.git"));
        assert!(supports_shallow("https://host/repo.git"));
        let cwd = Path::new("/srv/work");
        assert_eq!(
            normalize_url("https://x/y.git", Some(cwd)),
            "https://x/y.git"
        );
        assert_eq!(normalize_url("/abs/path", Some(cwd)), "/abs/path");
        assert_eq!(normalize_url("rel/path", Some(cwd)), "/srv/work/rel/path");
        assert_eq!(normalize_url("rel/path", None), "rel/path");
        assert!(uses_tls("https://host/repo.git"));
        assert!(!uses_tls("git@host:org/repo.git"));
        assert!(!uses_tls("/srv/repo"));
    }
}
