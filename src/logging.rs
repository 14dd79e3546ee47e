//! Log output: every line is `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` (UTC, Python's level names,
//! as the upstream tool printed them and the admin UI parses them), on stdout, or on stderr when
//! stdout carries data (a JSON document, completion names or scripts, the man page). Records go
//! through the one printer (`output`): the message is escaped there, so one record is exactly
//! one line whatever a module name or a program's output holds, and a closed or full output
//! never panics.
//!
//! - **journald**: when `$JOURNAL_STREAM` (`DEV:INODE`, set by systemd) names the stream the log
//!   goes to, each line starts with its sd-daemon(3) priority instead of a timestamp (journald
//!   stamps it): `<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace; so
//!   `journalctl -p err` finds the errors.
//! - **Which records**: `-q` warnings and errors, default info, `-v` debug (decisions and
//!   paths), `-vv` trace (git and process detail), for updater's own records; other crates'
//!   warnings and errors. `$RUST_LOG` is laid over that with env_logger's syntax (see
//!   [`filter_spec`]); an explicit `-q`/`-v`/`-vv` still sets updater's own level.

use std::io::Write;
use std::sync::OnceLock;

use crate::clock;
use crate::config::Verbosity;
use crate::output::{self, Stream};

/// What the environment says about logging (`commands::settings` reads it and arms it here).
#[derive(Debug, Clone, Default)]
struct Armed {
    rust_log: Option<String>,
    journal_stream: Option<String>,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Takes `$RUST_LOG` and `$JOURNAL_STREAM` from the settings stage, before [`init`].
pub fn arm(rust_log: Option<String>, journal_stream: Option<String>) {
    let _ = ARMED.set(Armed {
        rust_log,
        journal_stream,
    });
}

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

/// The sd-daemon(3) priority of a level (`<N>` at the start of a line journald reads).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
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

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` (SPEC §6b).
    Plain,
    /// `<N>[LEVEL] message`: for journald, which adds its own timestamp.
    Journal,
}

/// One log line, its message escaped (without the trailing newline).
pub fn format_line(level: log::Level, message: &str) -> String {
    format_line_as(Format::Plain, level, message)
}

/// One log line in `format`, its message escaped (without the trailing newline).
pub fn format_line_as(format: Format, level: log::Level, message: &str) -> String {
    match format {
        Format::Plain => format!(
            "[{}] [{}] {}",
            clock::log_timestamp(std::time::SystemTime::now()),
            level_name(level),
            output::escape(message)
        ),
        Format::Journal => format!(
            "<{}>[{}] {}",
            priority(level),
            level_name(level),
            output::escape(message)
        ),
    }
}

/// `$JOURNAL_STREAM`'s `DEV:INODE` (both decimal), or None when it is malformed.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Journal format when `journal_stream` names `identity` (the log stream's device and inode).
pub fn format_for(journal_stream: Option<&str>, identity: Option<(u64, u64)>) -> Format {
    match (journal_stream.and_then(parse_journal_stream), identity) {
        (Some(named), Some(ours)) if named == ours => Format::Journal,
        _ => Format::Plain,
    }
}

/// updater's own level for a verbosity.
fn own_level(verbosity: Verbosity) -> log::LevelFilter {
    match verbosity {
        Verbosity::Quiet => log::LevelFilter::Warn,
        Verbosity::Normal => log::LevelFilter::Info,
        Verbosity::Verbose => log::LevelFilter::Debug,
        Verbosity::Trace => log::LevelFilter::Trace,
    }
}

/// The env_logger filter of a run: `warn,updater=<level of -q/-v/-vv>`, then `$RUST_LOG`'s
/// directives in its own syntax (`debug`, `updater::git=trace`, `git2=debug`, `info/text`
/// where `/text` keeps only messages containing `text`): a bare level sets every crate,
/// updater's own records too unless `$RUST_LOG` names `updater` itself; a module directive
/// adds to the rest (the longest matching module path wins). Last, an explicit `-q`, `-v` or
/// `-vv` sets updater's own level again: the command line beats the environment, while a
/// deeper module of `$RUST_LOG` (`updater::git=trace`) keeps its own level.
///
/// Also returns the parts of `$RUST_LOG` that are left out because env_logger would refuse
/// them (`updater=loud`, `a=b=c`, a second `/`), for the run to warn about.
pub fn filter_spec(verbosity: Verbosity, rust_log: Option<&str>) -> (String, Vec<String>) {
    let own = own_level(verbosity).to_string().to_lowercase();
    let mut directives = vec!["warn".to_string(), format!("updater={own}")];
    let mut rejected = Vec::new();
    let mut message_filter = None;
    if let Some(spec) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        let (spec, filter) = match spec.split_once('/') {
            Some((d, f)) => (d, Some(f)),
            None => (spec, None),
        };
        match filter {
            Some(f) if f.contains('/') => rejected.push(format!("/{f}")),
            Some(f) => message_filter = Some(f),
            None => {}
        }
        let valid = |part: &str| {
            let mut pieces = part.split('=');
            match (pieces.next(), pieces.next().map(str::trim), pieces.next()) {
                (Some(_), None, None) | (Some(_), Some(""), None) => true,
                (Some(_), Some(level), None) => level.parse::<log::LevelFilter>().is_ok(),
                _ => false,
            }
        };
        let (parts, refused): (Vec<&str>, Vec<&str>) = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .partition(|p| valid(p));
        rejected.extend(refused.into_iter().map(str::to_string));
        let names_updater = parts
            .iter()
            .any(|p| p.split('=').next().map(str::trim) == Some("updater"));
        for part in parts {
            directives.push(part.to_string());
            if !names_updater && part.parse::<log::LevelFilter>().is_ok() {
                directives.push(format!("updater={part}"));
            }
        }
        if verbosity != Verbosity::Normal {
            directives.push(format!("updater={own}"));
        }
    }
    let mut spec = directives.join(",");
    if let Some(filter) = message_filter {
        spec.push('/');
        spec.push_str(filter);
    }
    (spec, rejected)
}

/// Installs the logger. Safe to call more than once (later calls do nothing).
pub fn init(verbosity: Verbosity, to_stderr: bool) {
    let armed = ARMED.get().cloned().unwrap_or_default();
    let stream = if to_stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let format = format_for(
        armed.journal_stream.as_deref(),
        output::stream_identity(stream),
    );
    let (spec, rejected) = filter_spec(verbosity, armed.rust_log.as_deref());
    let installed = env_logger::Builder::new()
        .parse_filters(&spec)
        .write_style(env_logger::WriteStyle::Never)
        .target(env_logger::Target::Pipe(Box::new(Printer(stream))))
        .format(move |buf, record| {
            let line = format_line_as(format, record.level(), &record.args().to_string());
            writeln!(buf, "{line}")
        })
        .try_init();
    if installed.is_ok() {
        for part in rejected {
            log::warn!(
                "$RUST_LOG: ignoring {:?} (not env_logger's `module=level`)",
                output::escape(&part)
            );
        }
    }
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

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        assert_eq!(
            format_line_as(Format::Journal, log::Level::Error, "bad\nthing"),
            "<3>[ERROR] bad\\nthing"
        );
        assert_eq!(
            format_line_as(Format::Journal, log::Level::Warn, "w"),
            "<4>[WARNING] w"
        );
        assert_eq!(
            format_line_as(Format::Journal, log::Level::Info, "i"),
            "<6>[INFO] i"
        );
        assert_eq!(
            format_line_as(Format::Journal, log::Level::Debug, "d"),
            "<7>[DEBUG] d"
        );
    }

    #[test]
    fn the_journal_format_needs_journal_stream_to_name_the_log_stream() {
        let ours = Some((64769, 123456));
        assert_eq!(format_for(Some("64769:123456"), ours), Format::Journal);
        assert_eq!(format_for(Some("64769:123457"), ours), Format::Plain);
        assert_eq!(format_for(Some("garbage"), ours), Format::Plain);
        assert_eq!(format_for(Some("1:2:3"), ours), Format::Plain);
        assert_eq!(format_for(None, ours), Format::Plain);
        assert_eq!(format_for(Some("64769:123456"), None), Format::Plain);
    }

    #[test]
    fn rust_log_is_laid_over_the_verbosity_and_the_flags_win_for_updater() {
        use Verbosity::*;
        let spec = |v, r| filter_spec(v, r).0;
        assert_eq!(spec(Normal, None), "warn,updater=info");
        assert_eq!(spec(Verbose, None), "warn,updater=debug");
        // A bare level: every crate, updater too.
        assert_eq!(
            spec(Normal, Some("debug")),
            "warn,updater=info,debug,updater=debug"
        );
        // A module directive adds to the defaults.
        assert_eq!(
            spec(Normal, Some("updater::git=trace")),
            "warn,updater=info,updater::git=trace"
        );
        // RUST_LOG naming updater itself is taken as it is.
        assert_eq!(
            spec(Normal, Some("trace,updater=warn")),
            "warn,updater=info,trace,updater=warn"
        );
        // -q beats RUST_LOG for updater's own level; the message filter stays last.
        assert_eq!(
            spec(Quiet, Some("debug/fetch")),
            "warn,updater=warn,debug,updater=debug,updater=warn/fetch"
        );
    }

    #[test]
    fn rust_log_parts_env_logger_would_refuse_are_left_out_and_named() {
        let (spec, rejected) = filter_spec(
            Verbosity::Normal,
            Some("updater=loud,a=b=c,updater::git=trace,x=/y/z"),
        );
        assert_eq!(spec, "warn,updater=info,updater::git=trace,x=");
        assert_eq!(rejected, vec!["/y/z", "updater=loud", "a=b=c"]);
    }

    #[test]
    fn the_filter_spec_behaves_as_env_logger_users_expect() {
        use log::{Level, Metadata};
        let enabled = |spec: &str, target: &str, level: Level| {
            let filter = env_logger::Builder::new().parse_filters(spec).build();
            log::Log::enabled(
                &filter,
                &Metadata::builder().target(target).level(level).build(),
            )
        };
        let s = filter_spec(Verbosity::Normal, Some("updater::git=debug")).0;
        assert!(enabled(&s, "updater::git::fetch", Level::Debug));
        assert!(!enabled(&s, "updater::apply", Level::Debug));
        assert!(enabled(&s, "updater::apply", Level::Info));
        assert!(!enabled(&s, "git2", Level::Info));
        let s = filter_spec(Verbosity::Normal, Some("debug")).0;
        assert!(enabled(&s, "updater::apply", Level::Debug));
        assert!(enabled(&s, "rayon", Level::Debug));
        let s = filter_spec(Verbosity::Quiet, Some("debug")).0;
        assert!(!enabled(&s, "updater::apply", Level::Info));
        let s = filter_spec(Verbosity::Trace, None).0;
        assert!(enabled(&s, "updater::runner", Level::Trace));
    }
}
