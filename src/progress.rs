//! Progress for people watching a terminal (indicatif): the transfer bar of a fetch (objects,
//! bytes, rate, ETA) and the per-module view while applying (how many are done, which are
//! running and for how long). Shown only when the settings stage says so (stderr is a
//! terminal, no `-q`, no `--json`: `commands::settings::show_progress`); otherwise every type
//! here is inert.
//!
//! The bars are drawn on stderr through the one printer (`output::write_raw`), at most
//! [`REFRESH_HZ`] times a second; every other write of the printer takes them off the screen
//! first and puts them back after ([`suspend`]), so a log line never tears a bar. A fetch
//! updates its bar only when the percentage (or the phase) changes, so a transfer of any size
//! redraws at most about a hundred times per phase.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
    TermLike,
};

use crate::output::{self, Stream};

/// The most redraws per second.
pub const REFRESH_HZ: u8 = 10;

/// The width assumed when the terminal does not tell its own.
const DEFAULT_WIDTH: u16 = 80;

/// The bars on the terminal, and how many there are (none: nothing to suspend).
static ACTIVE: Mutex<Option<(MultiProgress, usize)>> = Mutex::new(None);

fn active() -> std::sync::MutexGuard<'static, Option<(MultiProgress, usize)>> {
    // Nothing is left inconsistent by a panic while holding the lock: keep going.
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `write` with the progress bars (if any) off the screen, then draws them again.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    // Clone the handle and release the lock: drawing must never wait for it.
    let multi = active().as_ref().map(|(m, _)| m.clone());
    match multi {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

/// Puts `bar` on the terminal (below the bars already there).
fn show(bar: ProgressBar) -> ProgressBar {
    let mut guard = active();
    let (multi, count) = guard.get_or_insert_with(|| {
        (
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
                Box::new(StderrTerm),
                REFRESH_HZ,
            )),
            0,
        )
    });
    *count += 1;
    multi.add(bar)
}

/// Takes `bar` off the terminal for good.
fn hide(bar: &ProgressBar) {
    bar.finish_and_clear();
    let mut guard = active();
    if let Some((multi, count)) = guard.as_mut() {
        multi.remove(bar);
        *count = count.saturating_sub(1);
        if *count == 0 {
            *guard = None;
        }
    }
}

/// stderr as indicatif's terminal: ANSI cursor movements, written through the printer.
#[derive(Debug)]
struct StderrTerm;

impl StderrTerm {
    fn put(&self, text: &str) -> io::Result<()> {
        output::write_raw(Stream::Stderr, text.as_bytes());
        Ok(())
    }
}

impl TermLike for StderrTerm {
    fn width(&self) -> u16 {
        output::stderr_width().unwrap_or(DEFAULT_WIDTH)
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A style from a template that is a constant of this file (so it always parses).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// What a fetch reports as it goes (libgit2's transfer progress, as plain numbers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    pub received_objects: usize,
    pub total_objects: usize,
    pub indexed_deltas: usize,
    pub total_deltas: usize,
    pub received_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Receiving,
    Resolving,
    Done,
}

/// The transfer bar of one fetch: `Receiving objects [=====>     ]  45% 272/605 1.20 MiB
/// 3.40 MiB/s ETA 0s`, then `Resolving deltas`, then one line saying what came and how fast.
#[derive(Debug)]
pub struct Transfer {
    enabled: bool,
    bar: Option<ProgressBar>,
    phase: Phase,
    /// The phase and percentage last shown (the bar moves only when they change).
    shown: Option<(Phase, usize)>,
    started: Instant,
    /// Bytes received so far, read by the bar's `{received}` and `{byte_rate}` when it draws.
    bytes: Arc<AtomicU64>,
    last: TransferStats,
}

impl Transfer {
    /// A bar that appears with the first report of a known total (never when not `enabled`).
    pub fn new(enabled: bool) -> Transfer {
        Transfer {
            enabled,
            bar: None,
            phase: Phase::Receiving,
            shown: None,
            started: Instant::now(),
            bytes: Arc::new(AtomicU64::new(0)),
            last: TransferStats::default(),
        }
    }

    /// The bar's style: objects (or deltas) as the position, bytes and their rate beside.
    fn style(&self) -> ProgressStyle {
        let bytes = Arc::clone(&self.bytes);
        let received = move |_: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(w, "{}", HumanBytes(bytes.load(Ordering::Relaxed)));
        };
        let bytes = Arc::clone(&self.bytes);
        let started = self.started;
        let byte_rate = move |_: &ProgressState, w: &mut dyn fmt::Write| {
            let done = usize::try_from(bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
            let _ = write!(w, "{}/s", HumanBytes(rate(done, started.elapsed())));
        };
        style("{prefix} [{wide_bar}] {percent:>3}% {pos}/{len} {received} {byte_rate} ETA {eta}")
            .with_key("received", received)
            .with_key("byte_rate", byte_rate)
    }

    /// Takes one report; moves the bar when its percentage or phase changed (so at most about
    /// a hundred redraws per phase, however many objects come).
    pub fn update(&mut self, stats: TransferStats) {
        self.last = stats;
        if !self.enabled || stats.total_objects == 0 || self.phase == Phase::Done {
            return;
        }
        self.bytes
            .store(stats.received_bytes as u64, Ordering::Relaxed);
        let received = stats.received_objects >= stats.total_objects;
        self.phase = if !received {
            Phase::Receiving
        } else if stats.indexed_deltas < stats.total_deltas {
            Phase::Resolving
        } else {
            Phase::Done
        };
        if self.phase == Phase::Done {
            self.finish();
            return;
        }
        let (pos, len) = match self.phase {
            Phase::Receiving => (stats.received_objects, stats.total_objects),
            _ => (stats.indexed_deltas, stats.total_deltas),
        };
        let percent = pos * 100 / len.max(1);
        if self.shown == Some((self.phase, percent)) {
            return;
        }
        let prefix = match self.phase {
            Phase::Receiving => "Receiving objects",
            _ => "Resolving deltas",
        };
        if self.shown.map(|(p, _)| p) != Some(self.phase) {
            if let Some(old) = self.bar.take() {
                hide(&old);
            }
            let bar = ProgressBar::new(len as u64)
                .with_style(self.style())
                .with_prefix(prefix)
                .with_position(pos as u64);
            self.bar = Some(show(bar));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(pos as u64);
        }
        self.shown = Some((self.phase, percent));
    }

    /// Takes the bar down and says what came: `Received 605 objects, 1.2 MiB in 0.4 s
    /// (3.0 MiB/s)`.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        if let Some(bar) = self.bar.take() {
            hide(&bar);
        }
        if self.enabled && self.last.total_objects > 0 {
            let took = self.started.elapsed();
            output::err(&format!(
                "Received {} objects, {} in {:.1} s ({}/s)",
                self.last.received_objects,
                HumanBytes(self.last.received_bytes as u64),
                took.as_secs_f64(),
                HumanBytes(rate(self.last.received_bytes, took))
            ));
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        // A fetch that stopped half-way (an error, the deadline): take its bar down.
        if let Some(bar) = self.bar.take() {
            hide(&bar);
        }
    }
}

/// Bytes per second (a transfer shorter than a millisecond counts as one).
fn rate(bytes: usize, took: Duration) -> u64 {
    let ms = took.as_millis().max(1);
    u64::try_from(bytes as u128 * 1000 / ms).unwrap_or(u64::MAX)
}

/// The per-module view while applying: a header `Applying [==>   ] 2/5 modules, 00:00:03`
/// and one line per running module with its time so far.
#[derive(Debug)]
pub struct Apply {
    header: Option<ProgressBar>,
    running: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Apply {
    /// The view of `total` modules to run (nothing shown when not `enabled` or nothing to run).
    pub fn new(enabled: bool, total: usize) -> Apply {
        let header = (enabled && total > 0).then(|| {
            let bar = show(ProgressBar::new(total as u64).with_style(style(
                "Applying [{bar:25}] {pos}/{len} modules, {elapsed_precise}",
            )));
            bar.enable_steady_tick(Duration::from_millis(1000 / u64::from(REFRESH_HZ)));
            bar
        });
        Apply {
            header,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// `name` started.
    pub fn started(&self, name: &str) {
        if self.header.is_none() {
            return;
        }
        let bar = show(
            ProgressBar::new_spinner()
                .with_style(style("  {spinner} {msg} {elapsed}"))
                .with_message(output::escape(name).into_owned()),
        );
        bar.enable_steady_tick(Duration::from_millis(1000 / u64::from(REFRESH_HZ)));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = running.insert(name.to_string(), bar) {
            hide(&old);
        }
    }

    /// `name` finished (whatever its outcome).
    pub fn finished(&self, name: &str) {
        let Some(header) = &self.header else {
            return;
        };
        let bar = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(bar) = bar {
            hide(&bar);
        }
        header.inc(1);
    }
}

impl Drop for Apply {
    fn drop(&mut self) {
        let running = std::mem::take(self.running.get_mut().unwrap_or_else(|p| p.into_inner()));
        for bar in running.values() {
            hide(bar);
        }
        if let Some(header) = self.header.take() {
            hide(&header);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_shown_when_progress_is_off() {
        let mut t = Transfer::new(false);
        t.update(TransferStats {
            received_objects: 1,
            total_objects: 10,
            ..TransferStats::default()
        });
        assert!(t.bar.is_none());
        let a = Apply::new(false, 3);
        a.started("m");
        a.finished("m");
        assert!(a.header.is_none());
        assert!(active().is_none());
    }

    #[test]
    fn the_rate_is_bytes_per_second_and_never_divides_by_zero() {
        assert_eq!(rate(3_000, Duration::from_millis(1500)), 2_000);
        assert_eq!(rate(5, Duration::ZERO), 5_000);
    }
}
