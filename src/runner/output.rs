//! Where a run's output goes: the module's log file (the program writes there itself; the runner
//! adds its header, footer and notices) and, echoed line by line by the [`Follower`], the run's log.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// How often the follower looks for new output in the log file while the program runs.
const FOLLOW_PAUSE: Duration = Duration::from_millis(20);

/// Longest line kept whole; longer ones are split.
const MAX_LINE: u64 = 64 * 1024;

/// Where a run's output goes: the module's log file (the program writes there itself; the runner
/// adds its header, footer and notices) and, echoed by a [`Follower`], the run's log.
pub(super) struct Output {
    module: String,
    pub(super) log_path: PathBuf,
    state: Mutex<OutputState>,
}

struct OutputState {
    /// `None` after a write error (reported once).
    file: Option<File>,
}

impl Output {
    pub(super) fn open(module: &str, log_path: &Path) -> Result<Self> {
        if let Some(parent) = log_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create log directory {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("cannot open log file {}", log_path.display()))?;
        Ok(Output {
            module: module.to_string(),
            log_path: log_path.to_path_buf(),
            state: Mutex::new(OutputState { file: Some(file) }),
        })
    }

    fn state(&self) -> MutexGuard<'_, OutputState> {
        // A panic while holding the lock leaves nothing inconsistent: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the log file is empty or ends with a newline (also when it cannot be read).
    fn ends_with_newline(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(file) = File::open(&self.log_path) else {
            return true;
        };
        let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let mut last = [b'\n'];
        len == 0 || file.read_at(&mut last, len - 1).is_err() || last[0] == b'\n'
    }

    /// The program's stdout and stderr: the log file, opened for appending (one open file
    /// description for both, so their lines interleave in the order written).
    pub(super) fn program_output(&self) -> Result<(Stdio, Stdio)> {
        let file = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open log file {}", self.log_path.display()))?;
        let copy = file
            .try_clone()
            .with_context(|| format!("cannot duplicate log file {}", self.log_path.display()))?;
        Ok((Stdio::from(file), Stdio::from(copy)))
    }

    /// One line of the program's output (read back from the log file): to the run's log, split
    /// into pieces of at most [`MAX_LINE`] bytes.
    fn echo(&self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            log::info!("[{}] ", self.module);
        }
        // MAX_LINE is a small constant: the conversion cannot truncate.
        for piece in raw.chunks(MAX_LINE as usize) {
            log::info!("[{}] {}", self.module, String::from_utf8_lossy(piece));
        }
    }

    /// A line of the runner's own (header, footer, notices): to the log file only.
    pub(super) fn note(&self, text: &str) {
        let mut state = self.state();
        let Some(file) = state.file.as_mut() else {
            return;
        };
        let mut line = String::with_capacity(text.len() + 2);
        // The program's last line may lack its newline: ours start on a line of their own.
        if !self.ends_with_newline() {
            line.push('\n');
        }
        line.push_str(text);
        line.push('\n');
        if let Err(err) = file.write_all(line.as_bytes()) {
            log::warn!(
                "[{}] cannot write log file {}: {err}; no more notes go there",
                self.module,
                self.log_path.display()
            );
            state.file = None;
        }
    }
}

/// Echoes what a program appends to the module's log file into the run's log, line by line (lines
/// longer than [`MAX_LINE`] are split), from where the file ended when it started until
/// [`Follower::finish`].
pub(super) struct Follower {
    stop: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Follower {
    pub(super) fn start(output: &Arc<Output>) -> Result<Follower> {
        let mut file = File::open(&output.log_path).with_context(|| {
            format!(
                "cannot open log file {} to follow it",
                output.log_path.display()
            )
        })?;
        let mut offset = file
            .seek(io::SeekFrom::End(0))
            .with_context(|| format!("cannot read log file {}", output.log_path.display()))?;
        let output = Arc::clone(output);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("runner-follow".to_string())
            .spawn(move || {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(FOLLOW_PAUSE),
                        Err(RecvTimeoutError::Timeout)
                    );
                    loop {
                        // Truncated by someone else: start over from its beginning.
                        if file.metadata().is_ok_and(|meta| meta.len() < offset) {
                            offset = 0;
                            pending.clear();
                        }
                        let read = file
                            .seek(io::SeekFrom::Start(offset))
                            .and_then(|_| file.read(&mut buf));
                        let read = match read {
                            Ok(0) => break,
                            Ok(read) => read,
                            Err(err) => {
                                log::warn!(
                                    "[{}] cannot follow log file {}: {err}",
                                    output.module,
                                    output.log_path.display()
                                );
                                return;
                            }
                        };
                        offset += read as u64;
                        pending.extend_from_slice(&buf[..read]);
                        let mut start = 0;
                        while let Some(at) = pending[start..].iter().position(|&b| b == b'\n') {
                            output.echo(&pending[start..start + at + 1]);
                            start += at + 1;
                        }
                        pending.drain(..start);
                        while pending.len() as u64 >= MAX_LINE {
                            let rest = pending.split_off(MAX_LINE as usize);
                            output.echo(&pending);
                            pending = rest;
                        }
                    }
                    if last {
                        if !pending.is_empty() {
                            output.echo(&pending);
                        }
                        return;
                    }
                }
            })
            .context("cannot start the log follower thread")?;
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }

    /// Echoes what is in the file now and stops.
    pub(super) fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
