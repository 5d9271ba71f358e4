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

/// Queues one line for stderr through the process's one non-blocking
/// writer ([`banyan_component::logging`]): never blocks, never fails (a line
/// over its rate or beyond its queue is dropped and counted in `log_lost`).
pub fn stderr_line(line: &str) {
    banyan_component::logging::write_line(line);
}

/// Waits up to `limit` for the queued stderr lines to be written.
pub fn flush_stderr(limit: std::time::Duration) {
    banyan_component::logging::flush(limit);
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
    // The writer's own notice ("N log lines lost") in our format.
    let mut writer = banyan_component::logging::Config::default();
    writer.notice_prefix = format!("{}: warning: ", program());
    let _ = banyan_component::logging::start(writer);
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
