//! The weekly update window (`--window SPEC`, `metadata.window`): when a sync may apply.
//!
//! A SPEC is one or more windows separated by `,`; each is `[DAYS ]HH:MM-HH:MM` in UTC (like
//! every time updater prints: no time-zone database, the same on every machine of a fleet).
//! DAYS is a day (`Mon`…`Sun`, any case, or the full name) or a range of days (`Mon-Fri`,
//! `Fri-Mon` wraps over the weekend); without DAYS the window is daily. A window opens on each of
//! its days at the first time and closes at the second; an end at or before the start crosses
//! midnight (`Sat 22:00-02:00` closes on Sunday at 02:00). `24:00` is accepted as an end;
//! `00:00-24:00` is the whole day; a start equal to its end is refused (empty or whole day?).
//! Parsing never panics; a SPEC is at most [`MAX_SPEC_LEN`] bytes and [`MAX_WINDOWS`] windows.

use std::fmt;

const DAY_SECS: i64 = 86_400;
const WEEK_SECS: i64 = 7 * DAY_SECS;
/// The longest SPEC accepted, in bytes.
pub const MAX_SPEC_LEN: usize = 1024;
/// The most windows a SPEC may list.
pub const MAX_WINDOWS: usize = 64;

const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// A parsed SPEC: intervals of the week, each `(start, length)` in seconds from Monday 00:00
/// UTC; an interval may run past the end of the week (it wraps to Monday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    spec: String,
    intervals: Vec<(i64, i64)>,
}

/// Why a SPEC was refused (the message names the offending part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError(String);

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WindowError {}

fn err(part: &str, why: &str) -> WindowError {
    WindowError(format!(
        "\"{}\": {why} (expected e.g. \"Sat 02:00-06:00\" or \"Mon-Fri 22:00-05:00\", UTC, several separated by \",\")",
        crate::output::escape(part.trim())
    ))
}

fn day(s: &str) -> Option<i64> {
    let l = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|(short, long)| l == *short || l == *long)
        .and_then(|i| i64::try_from(i).ok())
}

/// `HH:MM` in seconds from midnight; `24:00` only when `end`.
fn time(s: &str, end: bool) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return None;
    }
    Some(h * 3600 + m * 60)
}

impl Schedule {
    /// Parses a SPEC (see the module comment).
    pub fn parse(spec: &str) -> Result<Schedule, WindowError> {
        if spec.len() > MAX_SPEC_LEN {
            return Err(WindowError(format!(
                "the window is {} bytes long; at most {MAX_SPEC_LEN} are accepted",
                spec.len()
            )));
        }
        let mut intervals = Vec::new();
        let parts: Vec<&str> = spec.split(',').collect();
        if parts.len() > MAX_WINDOWS {
            return Err(err(spec, &format!("more than {MAX_WINDOWS} windows")));
        }
        for part in parts {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (days, times) = match words.as_slice() {
                [times] => (None, *times),
                [days, times] => (Some(*days), *times),
                [] => return Err(err(part, "an empty window")),
                _ => return Err(err(part, "not \"[DAYS ]HH:MM-HH:MM\"")),
            };
            let days: Vec<i64> = match days {
                None => (0..7).collect(),
                Some(d) => match d.split_once('-') {
                    None => vec![day(d).ok_or_else(|| err(part, "not a day name"))?],
                    Some((a, b)) => {
                        let a = day(a).ok_or_else(|| err(part, "not a day name"))?;
                        let b = day(b).ok_or_else(|| err(part, "not a day name"))?;
                        (0..7)
                            .map(|i| (a + i) % 7)
                            .take(usize::try_from((b - a).rem_euclid(7) + 1).unwrap_or(7))
                            .collect()
                    }
                },
            };
            let (from, to) = times
                .split_once('-')
                .ok_or_else(|| err(part, "the times are not HH:MM-HH:MM"))?;
            let from = time(from, false).ok_or_else(|| err(part, "not a time HH:MM"))?;
            let to = time(to, true).ok_or_else(|| err(part, "not a time HH:MM"))?;
            let len = if to > from {
                to - from
            } else if to < from {
                DAY_SECS - from + to
            } else {
                return Err(err(part, "the window starts when it ends"));
            };
            for d in days {
                intervals.push((d * DAY_SECS + from, len));
            }
        }
        Ok(Schedule {
            spec: spec.trim().to_string(),
            intervals,
        })
    }

    /// The SPEC as given (trimmed).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Whether the window is open at `unix` (seconds since the epoch, UTC).
    pub fn is_open(&self, unix: i64) -> bool {
        let w = week_seconds(unix);
        self.intervals
            .iter()
            .any(|&(s, len)| (w - s).rem_euclid(WEEK_SECS) < len)
    }

    /// When the window next opens (seconds since the epoch): `unix` itself when it is open.
    pub fn next_open(&self, unix: i64) -> i64 {
        if self.is_open(unix) {
            return unix;
        }
        let w = week_seconds(unix);
        let wait = self
            .intervals
            .iter()
            .map(|&(s, _)| (s - w).rem_euclid(WEEK_SECS))
            .min()
            .unwrap_or(0);
        unix.saturating_add(wait)
    }
}

/// Seconds since Monday 00:00 UTC (1970-01-01 was a Thursday).
fn week_seconds(unix: i64) -> i64 {
    (unix.rem_euclid(WEEK_SECS) + 3 * DAY_SECS).rem_euclid(WEEK_SECS)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (UTC) into seconds since the epoch.
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > crate::clock::days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(crate::clock::days_from_civil(y, mo, d) * DAY_SECS + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        parse_instant(s).expect("a valid instant")
    }

    #[test]
    fn instants_parse_and_refuse_bad_dates() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            crate::clock::iso8601_unix(at("2026-11-28T03:00:00Z")),
            "2026-11-28T03:00:00Z"
        );
        for bad in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28 03:00:00Z",
            "2026-11-28T03:00:00",
            "+026-11-28T03:00:00Z",
            "2026-1a-28T03:00:00Z",
            "2026-11-28T03:00:00Zé",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_single_day_window_is_open_only_inside_it() {
        // 2026-11-28 is a Saturday.
        let s = Schedule::parse("Sat 02:00-06:00").unwrap();
        assert!(!s.is_open(at("2026-11-28T01:59:59Z")));
        assert!(s.is_open(at("2026-11-28T02:00:00Z")));
        assert!(s.is_open(at("2026-11-28T05:59:59Z")));
        assert!(!s.is_open(at("2026-11-28T06:00:00Z")));
        assert!(!s.is_open(at("2026-11-27T03:00:00Z")), "Friday");
        assert_eq!(
            s.next_open(at("2026-11-28T06:00:00Z")),
            at("2026-12-05T02:00:00Z")
        );
        assert_eq!(
            s.next_open(at("2026-11-28T01:00:00Z")),
            at("2026-11-28T02:00:00Z")
        );
        let now = at("2026-11-28T03:00:00Z");
        assert_eq!(s.next_open(now), now);
    }

    #[test]
    fn a_window_crossing_midnight_stays_open_into_the_next_day() {
        let s = Schedule::parse("Mon-Fri 22:00-05:00").unwrap();
        // Friday 23:00 and Saturday 04:59 are inside (the Friday window), Saturday 22:00 is not.
        assert!(s.is_open(at("2026-11-27T23:00:00Z")));
        assert!(s.is_open(at("2026-11-28T04:59:00Z")));
        assert!(!s.is_open(at("2026-11-28T05:00:00Z")));
        assert!(!s.is_open(at("2026-11-28T22:00:00Z")));
        // Monday 01:00 is the tail of Sunday's window: there is none.
        assert!(!s.is_open(at("2026-11-30T01:00:00Z")));
        assert!(s.is_open(at("2026-11-30T22:00:00Z")));
        assert_eq!(
            s.next_open(at("2026-11-28T12:00:00Z")),
            at("2026-11-30T22:00:00Z")
        );
        // Sunday's window wraps over the end of the week into Monday.
        let s = Schedule::parse("sunday 23:30-00:30").unwrap();
        assert!(s.is_open(at("2026-11-30T00:15:00Z")));
        assert!(!s.is_open(at("2026-11-30T00:30:00Z")));
    }

    #[test]
    fn several_windows_day_ranges_that_wrap_and_daily_windows() {
        let s = Schedule::parse("Fri-Mon 01:00-02:00, Wed 00:00-24:00").unwrap();
        assert!(s.is_open(at("2026-11-29T01:30:00Z")), "Sunday");
        assert!(s.is_open(at("2026-11-30T01:30:00Z")), "Monday");
        assert!(!s.is_open(at("2026-12-01T01:30:00Z")), "Tuesday");
        assert!(s.is_open(at("2026-12-02T23:59:59Z")), "all Wednesday");
        let daily = Schedule::parse("03:00-04:00").unwrap();
        for d in 23..30 {
            assert!(daily.is_open(at(&format!("2026-11-{d}T03:30:00Z"))));
        }
        assert_eq!(daily.spec(), "03:00-04:00");
    }

    #[test]
    fn malformed_windows_are_refused_naming_the_part_and_never_panic() {
        for bad in [
            "",
            " ",
            ",",
            "Sat",
            "Sat 02:00",
            "Sat 02:00-02:00",
            "Sat 2:0-06:00",
            "Sat 25:00-06:00",
            "Sat 24:00-06:00",
            "Sat 02:60-06:00",
            "Sat 02:00-24:01",
            "Caturday 02:00-06:00",
            "Mon-Funday 02:00-06:00",
            "Mon- 02:00-06:00",
            "Sat 02:00-06:00 extra",
            "Sat 02:00-06:00,",
            "Sat ０２:00-06:00",
            "Sat\u{1b}[31m 02:00-06:00",
            "Sat -1:00-06:00",
            "Sat 02:00--06:00",
            "Sat +2:00-06:00",
        ] {
            let e = Schedule::parse(bad).expect_err(bad);
            assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
        }
        let long = "Sat 02:00-06:00,".repeat(100);
        assert!(Schedule::parse(&long).is_err());
        let many = vec!["03:00-04:00"; MAX_WINDOWS + 1].join(",");
        assert!(Schedule::parse(&many).is_err());
        let e = Schedule::parse("Sat 02:00-06:00, Sun 7:00-7:00").unwrap_err();
        assert!(e.to_string().contains("Sun 7:00-7:00"), "{e}");
    }

    #[test]
    fn every_instant_of_a_week_is_decided_without_panicking() {
        let s = Schedule::parse("Sun 23:00-01:00").unwrap();
        for unix in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let _ = s.is_open(unix);
            let _ = s.next_open(unix);
        }
    }
}
