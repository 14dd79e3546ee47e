//! The one printer (SPEC §6b): every byte `updater` writes to stdout or stderr goes through
//! here — log lines, tables, JSON documents, help, completions, progress.
//!
//! Output is an input too (LESSONS): whoever reads it must be able to trust it, and whoever closes
//! it must not crash the run.
//! - **A closed pipe** (EPIPE, the reader went away: `updater status | head -1`) is quiet: that
//!   stream is written no more, the run goes on to its end (a sync is never cut in the middle of a
//!   module because its reader left) and the exit status is the run's own. SIGPIPE stays ignored
//!   (Rust's default), so the kernel does not kill the process either.
//! - **Any other write error** (a full disk, `/dev/full`, EIO) also stops writing to that
//!   stream, and makes the exit status 1; the error is reported on the other stream if it still
//!   works ([`finish`]). Never a panic.
//! - **Escaping**: text that others wrote (module names, versions, messages, a program's output)
//!   goes through [`escape`], so a control character can neither start a forged log line nor
//!   drive a terminal. The logger escapes every record, so one record is always one line.
//! - **Progress** (`progress`): while a progress bar is on the terminal, every write here
//!   first takes the bars off the screen and puts them back after ([`crate::progress::suspend`]),
//!   so a log line never tears a bar; the bars themselves are drawn through [`write_raw`].

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Mutex;

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What became of a stream.
#[derive(Debug, Clone, Default)]
enum Health {
    #[default]
    Open,
    /// The reader went away (EPIPE): drop further output quietly.
    Closed,
    /// Writing failed for another reason: drop further output, exit 1.
    Failed(String),
}

#[derive(Debug, Default)]
struct Streams {
    stdout: Health,
    stderr: Health,
    /// A JSON document was printed on stdout (at most one per run).
    json_printed: bool,
}

static STATE: Mutex<Streams> = Mutex::new(Streams {
    stdout: Health::Open,
    stderr: Health::Open,
    json_printed: false,
});

fn state() -> std::sync::MutexGuard<'static, Streams> {
    // A panic while holding the lock leaves nothing inconsistent: keep going.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bytes` as they are to `stream`, unless that stream already failed. The lock is held
/// for the whole write, so records from parallel workers never interleave. Progress bars on the
/// terminal are taken down around the write (see [`crate::progress::suspend`]).
pub fn write_bytes(stream: Stream, bytes: &[u8]) {
    crate::progress::suspend(|| write_raw(stream, bytes));
}

/// [`write_bytes`] without suspending the progress bars: how the bars draw themselves.
pub(crate) fn write_raw(stream: Stream, bytes: &[u8]) {
    let mut st = state();
    let health = match stream {
        Stream::Stdout => &mut st.stdout,
        Stream::Stderr => &mut st.stderr,
    };
    if !matches!(health, Health::Open) {
        return;
    }
    let result = match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Stream::Stderr => {
            let mut err = io::stderr().lock();
            err.write_all(bytes).and_then(|()| err.flush())
        }
    };
    if let Err(e) = result {
        *health = if e.kind() == io::ErrorKind::BrokenPipe {
            Health::Closed
        } else {
            let name = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            Health::Failed(format!("writing to {name}: {e}"))
        };
    }
}

/// Writes `text` and a newline to `stream`. The text is written as given: escape what others
/// wrote with [`escape`] first.
pub fn line(stream: Stream, text: &str) {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    write_bytes(stream, buf.as_bytes());
}

/// A line on stdout.
pub fn out(text: &str) {
    line(Stream::Stdout, text);
}

/// A line on stderr.
pub fn err(text: &str) {
    line(Stream::Stderr, text);
}

/// The device and inode numbers of what `stream` is connected to (a file, a pipe, a socket),
/// as `fstat(2)` tells them: what `$JOURNAL_STREAM` names when the stream goes to journald.
pub fn stream_identity(stream: Stream) -> Option<(u64, u64)> {
    let stat = match stream {
        Stream::Stdout => rustix::fs::fstat(io::stdout()),
        Stream::Stderr => rustix::fs::fstat(io::stderr()),
    }
    .ok()?;
    // dev_t and ino_t are unsigned 64-bit on Linux; the casts only widen elsewhere.
    #[allow(clippy::unnecessary_cast)]
    Some((stat.st_dev as u64, stat.st_ino as u64))
}

/// The width of the terminal on stderr in columns (None: not a terminal, or it does not say).
pub fn stderr_width() -> Option<u16> {
    rustix::termios::tcgetwinsize(io::stderr())
        .ok()
        .map(|w| w.ws_col)
        .filter(|&c| c > 0)
}

/// Prints a JSON document on stdout (pretty, one per run). serde_json escapes every control
/// character inside strings, so a document is always well-formed.
pub fn json(value: &serde_json::Value) {
    // Serializing a serde_json::Value cannot fail (its keys are strings).
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    state().json_printed = true;
    out(&text);
}

/// Whether [`json`] printed a document in this process.
pub fn json_printed() -> bool {
    state().json_printed
}

/// Whether `c` must not reach a terminal or a log reader as it is: C0 and C1 control characters
/// and DEL (`\n`, `\r`, ESC, ...), Unicode line and paragraph separators (which some readers
/// split lines on), and the bidirectional overrides that reorder what a reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every control character escaped: `\n`, `\r`, `\t`, `\xNN` for the other ASCII
/// ones, `\u{NNNN}` beyond. Backslashes are left as they are (a module's output keeps its
/// paths and regexes readable); what matters is that no input can end a line or drive a
/// terminal. Borrowed when nothing needed escaping (the common case).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The exit code of the process, given the run's own: 1 when a write failed for a reason other
/// than a closed pipe (reported on the other stream when it still works), else `code`.
pub fn finish(code: u8) -> u8 {
    let (stdout, stderr) = {
        let st = state();
        (st.stdout.clone(), st.stderr.clone())
    };
    let mut code = code;
    if let Health::Failed(why) = &stdout {
        err(&format!("error: {why}"));
        code = 1;
    }
    if let Health::Failed(why) = &stderr {
        if matches!(stdout, Health::Open) {
            out(&format!("error: {why}"));
        }
        code = 1;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape("plain → text"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\n[2026-01-01 00:00:00] [INFO] forged"),
            "x\\n[2026-01-01 00:00:00] [INFO] forged"
        );
        assert_eq!(escape("a\x1b[2Kb\r\t\x7f"), "a\\x1b[2Kb\\r\\t\\x7f");
        assert_eq!(
            escape("\u{85}\u{2028}\u{202e}"),
            "\\u{0085}\\u{2028}\\u{202e}"
        );
        assert_eq!(escape("back\\slash"), "back\\slash");
    }
}
