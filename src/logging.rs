//! Log output: every line is `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` (UTC, Python's level names,
//! as the upstream tool printed them and the admin UI parses them), on stdout, or on stderr when
//! stdout carries a JSON document. Records go through the one printer (`output`): the message is
//! escaped there, so one record is exactly one line whatever a module name or a program's output
//! holds, and a closed or full output never panics.

use std::io::Write;

use crate::clock;
use crate::config::Verbosity;
use crate::output::{self, Stream};

/// Python's level names, which the upstream tool printed.
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

/// Hands each formatted record (one whole line) to the printer.
struct Printer(Stream);

impl Write for Printer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        output::write_bytes(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One log line, its message escaped (without the trailing newline).
pub fn format_line(level: log::Level, message: &str) -> String {
    format!(
        "[{}] [{}] {}",
        clock::log_timestamp(std::time::SystemTime::now()),
        level_name(level),
        output::escape(message)
    )
}

/// Installs the logger. Safe to call more than once (later calls do nothing).
pub fn init(verbosity: Verbosity, to_stderr: bool) {
    let level = match verbosity {
        Verbosity::Quiet => log::LevelFilter::Warn,
        Verbosity::Normal => log::LevelFilter::Info,
        Verbosity::Verbose => log::LevelFilter::Debug,
        Verbosity::Trace => log::LevelFilter::Trace,
    };
    let stream = if to_stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("updater", level)
        .write_style(env_logger::WriteStyle::Never)
        .target(env_logger::Target::Pipe(Box::new(Printer(stream))))
        .format(|buf, record| {
            let line = format_line(record.level(), &record.args().to_string());
            writeln!(buf, "{line}")
        })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_line_whatever_its_message_holds() {
        let line = format_line(
            log::Level::Error,
            "Module x\n[2026-01-01 00:00:00] [INFO] Module adblock needs update is invalid",
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("[ERROR] Module x\\n[2026-01-01 00:00:00] [INFO]"));
    }
}
