//! Output that never panics, the stderr logger, errors and stop signals.
//!
//! `println!`/`eprintln!` panic when the stream is closed (a dead pipe, a
//! closed SSH session, `| head -1`); nothing here does. Data is written to
//! stdout with [`Stdout`], whose errors say whether the reader went away
//! (then the subcommand ends quietly, exit code 0). Everything else —
//! banners, connection feedback, summaries, warnings — goes through `log`
//! to stderr, and a failed write to stderr is ignored.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A failed subcommand: the exit code and the message printed on stderr
/// (none when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Exit code: 2 usage/configuration, 1 anything else.
    pub code: u8,
    /// What went wrong, in words for the user.
    pub message: String,
}

impl Failure {
    /// A failure with exit code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(2, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Result of a subcommand.
pub type Result<T> = std::result::Result<T, Failure>;

static PROGRAM: OnceLock<String> = OnceLock::new();

/// `banyan SUBCOMMAND`, the prefix of every stderr line.
pub fn program() -> &'static str {
    PROGRAM.get().map_or("banyan", String::as_str)
}

/// Lines for stderr, written by one thread so that a full or stuck stderr
/// never blocks the program (lines that do not fit are dropped and counted).
struct LogQueue {
    tx: std::sync::mpsc::SyncSender<String>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    dropped: std::sync::atomic::AtomicU64,
}

/// Lines queued for stderr before more are dropped.
const LOG_QUEUE: usize = 1024;

fn log_queue() -> &'static LogQueue {
    static QUEUE: OnceLock<LogQueue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(LOG_QUEUE);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = Arc::clone(&pending);
        let spawned = std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || {
                for line in rx {
                    write_stderr(&line);
                    done.fetch_sub(1, Ordering::AcqRel);
                }
            });
        if spawned.is_err() {
            // No thread: lines are dropped (counted), never a panic.
        }
        LogQueue {
            tx,
            pending,
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    })
}

/// Writes one line to stderr now, ignoring failures (there is nobody to
/// tell). When stderr's reader has gone away, stderr is pointed at
/// `/dev/null`, so that no later `eprintln!` anywhere can panic.
fn write_stderr(line: &str) {
    let mut err = io::stderr().lock();
    let result = err
        .write_all(line.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
    if let Err(e) = result {
        if is_closed(&e) {
            silence_stderr();
        }
    }
}

/// Queues one line for stderr; never blocks, never fails (a line that does
/// not fit in the queue is dropped and counted in the next line).
pub fn stderr_line(line: &str) {
    let q = log_queue();
    let dropped = q.dropped.swap(0, Ordering::Relaxed);
    let line = if dropped > 0 {
        format!(
            "{}: ({dropped} log line(s) dropped: stderr was full)\n{line}",
            program()
        )
    } else {
        line.to_owned()
    };
    q.pending.fetch_add(1, Ordering::AcqRel);
    if q.tx.try_send(line).is_err() {
        q.pending.fetch_sub(1, Ordering::AcqRel);
        q.dropped.fetch_add(1 + dropped, Ordering::Relaxed);
        // Visible where the gateways publish it (`log_lost`).
        banyan_component::logging::count_lost(1);
    }
}

/// Waits up to `limit` for the queued stderr lines to be written.
pub fn flush_stderr(limit: std::time::Duration) {
    let q = log_queue();
    let until = std::time::Instant::now() + limit;
    while q.pending.load(Ordering::Acquire) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Points file descriptor 2 at `/dev/null`.
fn silence_stderr() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

/// Prints `banyan SUB: error: MESSAGE` on stderr.
pub fn error_line(_sub: &str, message: &str) {
    stderr_line(&format!("{}: error: {message}", program()));
}

/// Prints `banyan SUB: MESSAGE` on stderr (banners, summaries) unless quiet.
pub fn note(message: &str) {
    log::info!(target: "banyan", "{message}");
}

struct Logger {
    /// Level for everything but our notices.
    level: log::LevelFilter,
    /// Level for `banyan` and `banyan::link` targets (notices, feedback).
    ours: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        let ours = m.target() == "banyan" || m.target().starts_with("banyan::");
        m.level() <= if ours { self.ours } else { self.level }
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ours = r.target() == "banyan" || r.target().starts_with("banyan::");
        let line = if ours && r.level() == log::Level::Info {
            format!("{}: {}", program(), r.args())
        } else {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            format!("{}: {level}: {}", program(), r.args())
        };
        stderr_line(&line);
    }

    fn flush(&self) {}
}

/// Installs the stderr logger for subcommand `sub`: warnings by default, our
/// notices and connection feedback at info; `-v` info for everything, `-vv`
/// debug; `RUST_LOG=LEVEL` sets the level for everything; `quiet` leaves
/// only errors.
pub fn init_logging(sub: &str, verbose: u8, quiet: bool) {
    let _ = PROGRAM.set(format!("banyan {sub}"));
    let env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<log::LevelFilter>().ok());
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => env.unwrap_or(log::LevelFilter::Warn),
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    let ours = if quiet {
        log::LevelFilter::Error
    } else {
        level.max(log::LevelFilter::Info)
    };
    let logger: &'static Logger = Box::leak(Box::new(Logger { level, ours }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level.max(ours));
    }
}

/// Whether a write error means the reader went away.
pub fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Buffered stdout whose errors are [`Failure`]s: a reader that went away
/// is `Failure { code: 0, message: "" }` (stop quietly), other errors are
/// reported.
pub struct Stdout {
    out: io::BufWriter<io::Stdout>,
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout {
            out: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
        }
    }
}

/// The failure for a stdout write error.
pub fn stdout_failure(e: &io::Error) -> Failure {
    if is_closed(e) {
        Failure::new(0, "")
    } else {
        Failure::new(1, format!("cannot write to stdout: {e}"))
    }
}

impl Stdout {
    /// Appends a line (buffered).
    ///
    /// # Errors
    /// When stdout fails (see the type docs).
    pub fn line(&mut self, line: &str) -> Result<()> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| stdout_failure(&e))
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// When stdout fails.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| stdout_failure(&e))
    }
}

/// Writes `bytes` to stdout (help texts, man pages, completions).
///
/// # Errors
/// When stdout fails (a reader that went away is not an error).
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_closed(&e) => Ok(()),
        Err(e) => Err(stdout_failure(&e)),
    }
}

/// Turns a quiet stop (reader gone) into success.
pub fn quiet_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(f) if f.code == 0 => Ok(()),
        r => r,
    }
}

/// A flag set by SIGINT or SIGTERM; a second SIGINT/SIGTERM while the first
/// is being handled ends the process at once (exit code 1).
///
/// # Errors
/// When the handlers cannot be installed.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional shutdown sees the flag set by the
        // first signal only on the second.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| Failure::new(1, format!("cannot install signal handlers: {e}")))?;
    }
    Ok(stop)
}

/// Whether `stop` is set.
pub fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Ends the process (exit code 1) if it is still running `grace` after
/// `stop` was set: for subcommands whose stdout may block (a reader that
/// stopped reading), so that SIGTERM always ends them.
pub fn exit_after_stop(stop: Arc<AtomicBool>, grace: std::time::Duration) {
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(grace);
            stderr_line(&format!(
                "{}: error: still blocked {} s after the stop signal (stdout not read?); exiting",
                program(),
                grace.as_secs()
            ));
            flush_stderr(std::time::Duration::from_millis(200));
            std::process::exit(1);
        });
}
