//! `banyan pub TOPIC [JSON]`: publishes messages from the shell.
//!
//! - `banyan pub run_motors '{"left": 0.5, "right": 0.5}'` sends once;
//! - `--count N` sends it N times, `--rate HZ` paces the messages (with
//!   `--rate` and no `--count` it repeats until interrupted — what a motor
//!   behind rpi-gateway's 500 ms deadman needs to keep turning);
//! - without JSON (or with `-`), every stdin line is one JSON payload.
//!
//! Before the first message it waits (up to `--wait`) until the backplane
//! has told it that someone subscribes to the topic, so a message is not
//! lost because the connection was still being made (Python Banyan's
//! backplane subscribes to everything: then this returns at connection).

use std::io::BufRead;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use banyan_component::Component;

use crate::args::{component_error, Connect};
use crate::output::{self, Failure, Result};

/// Flags of `banyan pub`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the backplane is.
    #[command(flatten)]
    pub connect: Connect,
    /// Name of this component (logs).
    #[arg(short = 'n', long = "name", default_value = "pub")]
    pub name: String,
    /// The topic.
    pub topic: String,
    /// The payload as JSON (usually an object); `-` or none: one payload
    /// per line from stdin.
    #[arg(value_name = "JSON")]
    pub json: Option<String>,
    /// How many times to send the payload (default 1; with --rate: until
    /// interrupted). With stdin: stop after this many lines.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Messages per second.
    #[arg(short = 'r', long, value_name = "HZ")]
    pub rate: Option<f64>,
    /// Longest wait (seconds) for a subscriber before the first message;
    /// it is sent anyway afterwards.
    #[arg(short = 'w', long, value_name = "SECONDS", default_value_t = 5.0)]
    pub wait: f64,
    /// Print each message sent on stderr.
    #[arg(long)]
    pub echo: bool,
}

/// What [`Source::next`] found.
enum Next {
    /// A payload to send.
    Value(rmpv::Value),
    /// Nothing yet (stdin is quiet); ask again.
    Idle,
    /// End of input, or stop requested.
    End,
}

/// The payloads: one repeated, or stdin lines (read by a thread, so that a
/// stop signal is seen while stdin has nothing to say).
enum Source {
    Repeat(rmpv::Value),
    Stdin(Receiver<std::io::Result<String>>, u64),
}

/// Reads stdin lines on a thread.
fn stdin_lines() -> Receiver<std::io::Result<String>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    rx
}

impl Source {
    /// The next payload. Bad stdin lines are reported and skipped (counted
    /// in `bad`).
    fn next(&mut self, bad: &mut u64, stop: &AtomicBool) -> Result<Next> {
        match self {
            Source::Repeat(v) => Ok(Next::Value(v.clone())),
            Source::Stdin(lines, n) => loop {
                let line = match lines.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) => line,
                    Err(RecvTimeoutError::Timeout) if !output::stopped(stop) => {
                        return Ok(Next::Idle)
                    }
                    Err(_) => return Ok(Next::End),
                };
                *n += 1;
                let line = line.map_err(|e| Failure::new(1, format!("cannot read stdin: {e}")))?;
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                match crate::json::parse(text) {
                    Ok(v) => return Ok(Next::Value(v)),
                    Err(e) => {
                        *bad += 1;
                        log::warn!("stdin line {n}: not JSON ({e}); skipped");
                    }
                }
            },
        }
    }
}

/// Publishes as the flags say.
///
/// # Errors
/// Bad JSON or flags (exit 2), component failures (exit 1), and exit 1 when
/// some stdin lines were not JSON or messages could not be queued.
pub fn run(args: Args) -> Result<()> {
    let stop = output::stop_flag()?;
    let period = match args.rate {
        None => None,
        Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(1.0 / r)),
        Some(r) => {
            return Err(Failure::usage(format!(
                "--rate must be a positive number of messages per second, not {r}"
            )))
        }
    };
    let wait = Duration::try_from_secs_f64(args.wait)
        .map_err(|_| Failure::usage(format!("--wait must be seconds >= 0, not {}", args.wait)))?;
    let mut source = match args.json.as_deref() {
        None | Some("-") => Source::Stdin(stdin_lines(), 0),
        Some(text) => Source::Repeat(
            crate::json::parse(text)
                .map_err(|e| Failure::usage(format!("the payload is not JSON: {e}")))?,
        ),
    };
    let limit = match (&source, args.count, period) {
        (_, Some(n), _) => Some(n),
        (Source::Repeat(_), None, None) => Some(1),
        _ => None,
    };
    let mut component =
        Component::connect(args.connect.config(&args.name)?).map_err(component_error)?;
    let found = component
        .wait_for_subscriber(&args.topic, wait)
        .map_err(component_error)?;
    if !found && !output::stopped(&stop) {
        log::warn!(
            "nobody subscribes to {:?} after {:.1} s; publishing anyway",
            args.topic,
            wait.as_secs_f64()
        );
    }
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut bad = 0u64;
    let start = Instant::now();
    while limit.is_none_or(|n| sent + dropped < n) && !output::stopped(&stop) {
        if let Some(p) = period {
            // Absolute schedule: no drift over long runs.
            let due = start + p.mul_f64((sent + dropped) as f64);
            while !output::stopped(&stop) {
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
            if output::stopped(&stop) {
                break;
            }
        }
        // Keeps the connection feedback up to date for a pure publisher.
        let _ = component.link_state();
        let value = match source.next(&mut bad, &stop)? {
            Next::Value(v) => v,
            Next::Idle => continue,
            Next::End => break,
        };
        match component.publish_value(&args.topic, &value) {
            Ok(()) => {
                sent += 1;
                if args.echo {
                    log::info!(target: "banyan", "{} {}", args.topic, crate::json::display(&value));
                }
            }
            Err(banyan_component::Error::SendQueueFull { .. }) => dropped += 1,
            Err(e) => return Err(component_error(e)),
        }
    }
    log::info!(
        target: "banyan",
        "published {sent} message(s) to {:?}{}",
        args.topic,
        if dropped > 0 {
            format!(", {dropped} dropped (send queue full)")
        } else {
            String::new()
        }
    );
    // Dropping the component waits (linger) for queued messages to leave.
    drop(component);
    if bad > 0 || dropped > 0 {
        return Err(Failure::new(
            1,
            format!("{bad} stdin line(s) not JSON, {dropped} message(s) dropped"),
        ));
    }
    Ok(())
}
