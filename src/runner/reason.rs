//! What a program reported ([`Verdict`]) and the one-line words for why a run failed: exit
//! statuses, timeouts, I/O errors, durations.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// What a program reported, before timing is added.
/// What a program reported, before timing is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    Failure(String),
}

pub(super) fn status_reason(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        if status.core_dumped() {
            format!("killed by signal {signal} (core dumped)")
        } else {
            format!("killed by signal {signal}")
        }
    } else {
        status.to_string()
    }
}

pub(super) fn timeout_reason(timeout: Duration) -> String {
    format!(
        "timed out after {} (process group killed)",
        short_duration(timeout)
    )
}

/// `2s`, `1.5s`, `250ms`.
pub(super) fn short_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        let text = format!("{:.3}", duration.as_secs_f64());
        format!("{}s", text.trim_end_matches('0'))
    }
}

/// `0.12s`.
pub(super) fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

/// An I/O error's message without the ` (os error N)` suffix.
pub(super) fn io_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// `text` on one line, at most `limit` characters.
pub(super) fn one_line(text: &str, limit: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= limit {
        return joined;
    }
    let mut cut: String = joined.chars().take(limit.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_durations_are_formatted() {
        assert_eq!(short_duration(Duration::from_secs(2)), "2s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(short_duration(crate::module::DEFAULT_TIMEOUT), "1800s");
        assert_eq!(one_line("a\n b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 8), "abcde...");
        let err = io::Error::from_raw_os_error(13);
        assert_eq!(io_message(&err), "Permission denied");
    }
}
