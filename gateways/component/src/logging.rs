//! The one stderr writer of every banyan-rs program: it never blocks the
//! caller — for control loops (gateways) whose stderr may be a frozen
//! terminal (Ctrl-S), a full pipe or a slow journal, and for the `banyan`
//! command, whose stderr may be a dead pipe.
//!
//! Library code logs through the [`log`] facade only. A program either
//! installs this module's logger with [`init`] (lines are the message
//! itself for `info` and below, prefixed `[WARN] ` / `[ERROR] `), or formats
//! lines its own way in its own `log::Log` and hands them to [`write_line`]
//! (the `banyan` command does). Either way a line is checked against a token
//! bucket ([`Config::rate`] lines per second, bursts of [`Config::burst`])
//! and handed to a bounded queue ([`Config::capacity`] lines) with
//! `try_send`; one writer thread writes the queue to stderr. When the bucket
//! is empty or the queue is full the line is dropped and counted ([`lost`],
//! published as the gateways' `log_lost`); the writer reports the count
//! (`N log lines lost`) as soon as it can write again. A blocked stderr
//! therefore blocks only the writer thread. When stderr's reader has gone
//! away (a closed pipe), file descriptor 2 is pointed at `/dev/null`, so that
//! no `eprintln!` anywhere in the process can panic afterwards.
//!
//! Call [`flush`] before exiting so the last lines (e.g. the safe-state pin
//! changes) are written; it gives up after its timeout when stderr is stuck.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Settings of the writer. `#[non_exhaustive]`: start from
/// [`Config::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most verbose level the logger of [`init`] writes. Default `Warn`;
    /// the `RUST_LOG` environment variable (`error`, `warn`, `info`,
    /// `debug`, `trace`) overrides it with [`Config::from_env`].
    pub level: log::LevelFilter,
    /// Lines queued for the writer before new ones are dropped. Default 4096.
    pub capacity: usize,
    /// Sustained lines per second. Default 1000.
    pub rate: u32,
    /// Lines allowed in a burst above the rate. Default 2000.
    pub burst: u32,
    /// Put before the writer's own `N log lines lost` notice (e.g.
    /// `"banyan rpi-gateway: warning: "`). Default `"[WARN] "`.
    pub notice_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            level: log::LevelFilter::Warn,
            capacity: 4096,
            rate: 1000,
            burst: 2000,
            notice_prefix: "[WARN] ".into(),
        }
    }
}

impl Config {
    /// The default config at `level`, unless `RUST_LOG` names a level.
    pub fn from_env(level: log::LevelFilter) -> Config {
        let level = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(level);
        Config {
            level,
            ..Config::default()
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Sink {
    config: Config,
    tx: Mutex<SyncSender<String>>,
    bucket: Mutex<Bucket>,
    /// Lines handed to the queue.
    queued: AtomicU64,
    /// Lines written (or given up on) by the writer.
    written: Mutex<u64>,
    written_cv: Condvar,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static LOST: AtomicU64 = AtomicU64::new(0);

/// Lines dropped so far (rate limit or full queue) in this process. Publish
/// it in stats so that lost diagnostics are visible.
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

impl Sink {
    fn new(config: Config) -> (Sink, Receiver<String>) {
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let sink = Sink {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(config.burst),
                at: Instant::now(),
            }),
            config,
            tx: Mutex::new(tx),
            queued: AtomicU64::new(0),
            written: Mutex::new(0),
            written_cv: Condvar::new(),
        };
        (sink, rx)
    }

    fn admit(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * f64::from(self.config.rate);
        b.tokens = (b.tokens + refill).min(f64::from(self.config.burst));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn send(&self, line: String) {
        if !self.admit() {
            LOST.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(tx) = self.tx.lock() else {
            LOST.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                LOST.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.config.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = match r.level() {
            log::Level::Error => format!("[ERROR] {}\n", r.args()),
            log::Level::Warn => format!("[WARN] {}\n", r.args()),
            _ => format!("{}\n", r.args()),
        };
        self.send(line);
    }

    fn flush(&self) {}
}

/// Writes `bytes` to stderr; when its reader has gone away, points file
/// descriptor 2 at `/dev/null` (later writes, ours or anyone's, succeed
/// into nothing). Other failures are ignored: there is nobody to tell.
fn write_stderr(bytes: &[u8]) {
    let result = std::io::stderr().lock().write_all(bytes);
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            silence_stderr();
        }
    }
}

/// Points file descriptor 2 at `/dev/null`.
fn silence_stderr() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

fn writer(rx: Receiver<String>) {
    let mut reported = 0;
    for line in rx {
        let lost = lost();
        let notice = (lost != reported).then(|| {
            let prefix = SINK.get().map_or("", |s| s.config.notice_prefix.as_str());
            format!("{prefix}{} log lines lost\n", lost - reported)
        });
        reported = lost;
        match notice {
            Some(n) => write_stderr(format!("{n}{line}").as_bytes()),
            None => write_stderr(line.as_bytes()),
        }
        if let Some(s) = SINK.get() {
            if let Ok(mut w) = s.written.lock() {
                *w += 1;
            }
            s.written_cv.notify_all();
        }
    }
}

/// Starts the writer thread with `config` (once per process). [`init`]
/// calls it; a program with its own logger calls it before its first
/// [`write_line`] (which otherwise starts the writer with the defaults).
///
/// # Errors
/// A message when the writer is already running or its thread cannot
/// start (lines are then dropped and counted, never a panic).
pub fn start(config: Config) -> Result<(), String> {
    let mut receiver = None;
    SINK.get_or_init(|| {
        let (sink, rx) = Sink::new(config);
        receiver = Some(rx);
        sink
    });
    let Some(rx) = receiver else {
        return Err("the log writer is already running".into());
    };
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer(rx))
        .map(|_| ())
        .map_err(|e| format!("cannot start the log writer: {e}"))
}

/// Queues `line` (a newline is added) for stderr. Never blocks, never fails:
/// a line over the rate or beyond a full queue is dropped and counted in
/// [`lost`].
pub fn write_line(line: &str) {
    if SINK.get().is_none() {
        let _ = start(Config::default());
    }
    if let Some(s) = SINK.get() {
        s.send(format!("{line}\n"));
    }
}

/// Starts the writer ([`start`]) and installs its logger as the `log`
/// logger of this process.
///
/// # Errors
/// A message when a logger or the writer is already installed, or the
/// thread cannot start.
pub fn init(config: Config) -> Result<(), String> {
    let level = config.level;
    start(config)?;
    let sink = SINK.get().ok_or("log sink missing")?;
    log::set_logger(sink).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}

/// Waits up to `timeout` until every queued line is written. Returns
/// whether it was (`false`: stderr is stuck or too slow; the lines stay
/// queued).
pub fn flush(timeout: Duration) -> bool {
    let Some(s) = SINK.get() else { return true };
    let target = s.queued.load(Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    let Ok(mut w) = s.written.lock() else {
        return false;
    };
    while *w < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match s.written_cv.wait_timeout(w, left) {
            Ok((g, _)) => w = g,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(capacity: usize, rate: u32, burst: u32) -> (Sink, Receiver<String>) {
        Sink::new(Config {
            capacity,
            rate,
            burst,
            ..Config::default()
        })
    }

    /// Nobody reads the queue (a stuck writer): sending never blocks, and
    /// every line past the queue is counted as lost.
    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (s, rx) = sink(8, 1_000_000, 1_000_000);
        let before = lost();
        for i in 0..100 {
            s.send(format!("line {i}\n"));
        }
        assert_eq!(s.queued.load(Ordering::Relaxed), 8);
        assert!(lost() - before >= 92);
        assert_eq!(rx.try_recv().unwrap(), "line 0\n");
    }

    /// Beyond the burst, lines are dropped (no time passes in the test for
    /// the bucket to refill more than a few tokens).
    #[test]
    fn the_rate_limit_drops_a_burst_beyond_its_size() {
        let (s, _rx) = sink(10_000, 1, 50);
        for i in 0..1000 {
            s.send(format!("line {i}\n"));
        }
        let q = s.queued.load(Ordering::Relaxed);
        assert!((50..=52).contains(&q), "{q}");
    }
}
