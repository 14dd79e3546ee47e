//! The Python verdict protocol: what the embedded shim (`shim.py`) is told ([`ShimRequest`]), the
//! verdict file it writes ([`ShimVerdict`]), and how that verdict and the interpreter's exit status
//! make the run's [`Verdict`] ([`python_verdict`]).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::ExitStatus;

use super::entry::install_root;
use super::reason::{one_line, status_reason, Verdict};
use super::spec::RunSpec;

/// Longest verdict file read (the shim caps `details` at 64 KiB of JSON).
const MAX_VERDICT: u64 = 256 * 1024;

/// Longest reason kept from the shim's verdict.
pub(super) const MAX_REASON: usize = 400;

/// The Python side of [`Program::PythonMain`].
pub(super) const PYTHON_SHIM: &str = include_str!("shim.py");

/// What the shim is told (see `shim.py`), besides the variables.
pub(super) struct ShimRequest<'a> {
    pub(super) module_dir: &'a Path,
    pub(super) file: &'a Path,
    pub(super) verdict: &'a Path,
}

impl ShimRequest<'_> {
    /// The request as JSON; `None` when a path is not UTF-8 (JSON cannot carry it).
    pub(super) fn to_json(
        &self,
        spec: &RunSpec,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        use serde_json::Value;
        let text = |path: &Path| path.to_str().map(|s| Value::String(s.to_string()));
        let (root, name) = match install_root(self.module_dir) {
            Some((root, name)) => (text(&root)?, Value::String(name)),
            None => (Value::Null, Value::Null),
        };
        let args = match spec.args {
            None => Value::Null,
            Some(args) => Value::Array(args.iter().cloned().map(Value::String).collect()),
        };
        let mut map = serde_json::Map::new();
        map.insert("dir".into(), text(self.module_dir)?);
        map.insert("file".into(), text(self.file)?);
        map.insert("args".into(), args);
        map.insert("root".into(), root);
        map.insert("name".into(), name);
        map.insert("verdict".into(), text(self.verdict)?);
        Some(map)
    }

    /// Reads the verdict the shim wrote: `None` when it wrote none (it did not get that far).
    pub(super) fn read_verdict(&self) -> Option<ShimVerdict> {
        let mut text = Vec::new();
        let read =
            File::open(self.verdict).and_then(|file| file.take(MAX_VERDICT).read_to_end(&mut text));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(ShimVerdict::parse(&text)),
        }
    }
}

/// The shim's verdict.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ShimVerdict {
    pub(super) verdict: Verdict,
    pub(super) details: Option<serde_json::Value>,
}

impl ShimVerdict {
    /// Reads `{"ok": bool, "reason": str|null, "details": ...}`.
    fn parse(text: &[u8]) -> ShimVerdict {
        let value: serde_json::Value = match serde_json::from_slice(text) {
            Ok(value) => value,
            Err(err) => {
                return ShimVerdict {
                    verdict: Verdict::Failure(format!("unreadable verdict from python: {err}")),
                    details: None,
                }
            }
        };
        let details = value.get("details").filter(|d| !d.is_null()).cloned();
        let verdict = match value.get("ok").and_then(serde_json::Value::as_bool) {
            Some(true) => Verdict::Success,
            Some(false) => {
                let reason = value
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .map(|reason| one_line(reason, MAX_REASON))
                    .filter(|reason| !reason.is_empty())
                    .unwrap_or_else(|| "main() failed".to_string());
                Verdict::Failure(reason)
            }
            None => Verdict::Failure("unreadable verdict from python: no \"ok\"".to_string()),
        };
        ShimVerdict { verdict, details }
    }
}

pub(super) fn python_verdict(
    status: ExitStatus,
    verdict: Option<ShimVerdict>,
) -> (Verdict, Option<serde_json::Value>) {
    match verdict {
        Some(ShimVerdict {
            verdict: Verdict::Success,
            details,
        }) if status.success() => (Verdict::Success, details),
        Some(ShimVerdict {
            verdict: Verdict::Success,
            details,
        }) => (
            Verdict::Failure(format!(
                "main() succeeded but python then ended: {}",
                status_reason(status)
            )),
            details,
        ),
        Some(ShimVerdict { verdict, details }) => (verdict, details),
        None if status.success() => (
            Verdict::Failure("python exited before main() returned (exit status 0)".to_string()),
            None,
        ),
        None => (
            Verdict::Failure(format!("python ended: {}", status_reason(status))),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_parsing() {
        let parse = |text: &str| ShimVerdict::parse(text.as_bytes());
        assert_eq!(parse(r#"{"ok": true}"#).verdict, Verdict::Success);
        assert_eq!(
            parse(r#"{"ok": false, "reason": "main() returned None", "details": null}"#),
            ShimVerdict {
                verdict: Verdict::Failure("main() returned None".to_string()),
                details: None
            }
        );
        assert_eq!(
            parse(r#"{"ok": false, "reason": ""}"#).verdict,
            Verdict::Failure("main() failed".to_string())
        );
        assert_eq!(
            parse(r#"{"ok": true, "details": {"updated": true}}"#).details,
            Some(serde_json::json!({"updated": true}))
        );
        for garbage in ["", "UPDATER-RESULT: ok", r#"{"ok": "yes"}"#, "[1]"] {
            let verdict = parse(garbage).verdict;
            assert!(
                matches!(&verdict, Verdict::Failure(reason) if reason.starts_with("unreadable verdict")),
                "{garbage:?}: {verdict:?}"
            );
        }
    }
}
