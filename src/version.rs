//! Lenient reading of module versions: semantic versions where `1.2` reads as `1.2.0` and a
//! leading `v` is accepted. A version that cannot be read is an error carrying the value; it is
//! never silently taken as 0.0.0.

use std::fmt;

/// A module version, ordered as semver says (pre-releases before their release).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(semver::Version);

/// Why a version string could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError {
    pub value: String,
    pub reason: String,
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid version {:?}: {}", self.value, self.reason)
    }
}

impl std::error::Error for VersionError {}

impl Version {
    /// Parses `1`, `1.2`, `1.2.3`, `v1.2.3`, `1.2-rc.1` and full semver with build metadata.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |reason: &str| VersionError {
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        let body = trimmed
            .strip_prefix('v')
            .or_else(|| trimmed.strip_prefix('V'))
            .unwrap_or(trimmed);
        // Split the numeric core from any pre-release (`-`) or build (`+`) suffix.
        let cut = body.find(['-', '+']).unwrap_or(body.len());
        let (core, rest) = body.split_at(cut);
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 {
            return Err(err("more than three numeric components"));
        }
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("expected numbers separated by dots, like 1.2.3"));
        }
        let mut full = parts.join(".");
        for _ in parts.len()..3 {
            full.push_str(".0");
        }
        full.push_str(rest);
        semver::Version::parse(&full)
            .map(Version)
            .map_err(|e| err(&e.to_string()))
    }

    /// Reads a version from a JSON value, which must be a string (a bare number such as `1.2`
    /// is accepted too, since hand-written indexes contain them).
    pub fn from_json(value: &serde_json::Value) -> Result<Version, VersionError> {
        match value {
            serde_json::Value::String(s) => Version::parse(s),
            serde_json::Value::Number(n) => Version::parse(&n.to_string()),
            other => Err(VersionError {
                value: other.to_string(),
                reason: "expected a string".to_string(),
            }),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn short_forms_pad_with_zeros() {
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1"), v("1.0.0"));
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v(" 2.0 ").to_string(), "2.0.0");
        assert_eq!(v("1.2-rc.1").to_string(), "1.2.0-rc.1");
    }

    #[test]
    fn ordering_follows_semver() {
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert!(v("1.0.0-alpha") < v("1.0.0-beta"));
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("v1.3") > v("1.2.9"));
    }

    #[test]
    fn unreadable_versions_are_errors_not_zero() {
        for bad in [
            "", "abc", "1.x", "1..2", "1.2.3.4", "-1", "1.2.3-", "01.2.3", "v",
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("invalid version"));
        }
    }

    #[test]
    fn json_values() {
        assert_eq!(
            Version::from_json(&serde_json::json!("1.2")).unwrap(),
            v("1.2.0")
        );
        assert_eq!(
            Version::from_json(&serde_json::json!(1.5)).unwrap(),
            v("1.5.0")
        );
        assert!(Version::from_json(&serde_json::json!(null)).is_err());
        assert!(Version::from_json(&serde_json::json!(["1"])).is_err());
    }
}
