//! Log output: every line is `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` (UTC, Python's level names,
//! as the upstream tool printed them and the admin UI parses them), on stdout, or on stderr when
//! stdout carries a JSON document.

use std::io::Write;

use crate::clock;
use crate::config::Verbosity;

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

/// Installs the logger. Safe to call more than once (later calls do nothing).
pub fn init(verbosity: Verbosity, to_stderr: bool) {
    let level = match verbosity {
        Verbosity::Quiet => log::LevelFilter::Warn,
        Verbosity::Normal => log::LevelFilter::Info,
        Verbosity::Verbose => log::LevelFilter::Debug,
        Verbosity::Trace => log::LevelFilter::Trace,
    };
    let target = if to_stderr {
        env_logger::Target::Stderr
    } else {
        env_logger::Target::Stdout
    };
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("updater", level)
        .target(target)
        .format(|buf, record| {
            writeln!(
                buf,
                "[{}] [{}] {}",
                clock::log_timestamp(std::time::SystemTime::now()),
                level_name(record.level()),
                record.args()
            )
        })
        .try_init();
}
