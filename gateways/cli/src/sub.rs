//! `banyan sub` (alias `banyan monitor`): prints messages from the backplane.
//!
//! stdout gets one line per message — human (`HH:MM:SS.mmm topic JSON`, see
//! [`banyan_component::monitor`]) or, with `--json`, one JSON object per line
//! (`{"time": UNIX_SECONDS, "topic": …, "payload": …}`, see
//! [`crate::json`]) — and nothing else, so `banyan sub --json --count 1 | jq`
//! works. Banners, connection feedback, rate summaries (only for periods
//! with traffic) and the per-topic summary at exit go to stderr. Malformed
//! messages print a diagnostic line (stdout in human mode, a warning on
//! stderr with `--json`) and are counted; they never stop it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use banyan_component::monitor::{self, Format, Rate};
use banyan_component::{Component, Event};

use crate::args::{component_error, Connect};
use crate::output::{self, Result};

/// Flags of `banyan sub`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the backplane is.
    #[command(flatten)]
    pub connect: Connect,
    /// Name of this component (banner, logs).
    #[arg(short = 'n', long = "name", default_value = "monitor")]
    pub name: String,
    /// Topic prefixes to show (default: everything). `-t TOPIC` also works.
    #[arg(value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Topic prefix (repeatable), for Python-monitor style command lines.
    #[arg(short = 't', value_name = "TOPIC", hide = true)]
    pub topic_flags: Vec<String>,
    /// One JSON object per message: {"time", "topic", "payload"}.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Show frame bytes as hex instead of JSON.
    #[arg(long)]
    pub raw: bool,
    /// Seconds between rate summaries on stderr (0 = none); periods without
    /// traffic print nothing.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub summary: f64,
    /// Longest payload text per human line (characters, 0 = no limit).
    #[arg(long, default_value_t = 4096)]
    pub max_width: usize,
    /// Largest accepted payload in bytes (larger ones are reported and counted).
    #[arg(long, default_value_t = banyan_component::wire::DEFAULT_MAX_PAYLOAD)]
    pub max_payload: usize,
    /// Exit after this many messages (0 = run until interrupted).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub count: u64,
    /// Python Banyan's numpy flag; accepted for compatibility.
    #[arg(short = 'm', hide = true)]
    pub numpy: Option<String>,
}

/// Messages and bytes seen on one topic.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    msgs: u64,
    bytes: u64,
}

/// Runs until `--count` messages, SIGINT/SIGTERM or stdout's reader leaves.
///
/// # Errors
/// Bad flags, component failures, stdout errors other than a closed pipe.
pub fn run(args: Args, quiet: bool) -> Result<()> {
    let stop = output::stop_flag()?;
    // A stdout nobody reads could block us past a stop signal.
    output::exit_after_stop(std::sync::Arc::clone(&stop), Duration::from_secs(3));
    let mut config = args.connect.config(&args.name)?;
    config.limits.max_payload = args.max_payload;
    config.linger = Duration::ZERO;
    let period = match args.summary {
        s if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
        0.0 => None,
        s => {
            return Err(output::Failure::usage(format!(
                "--summary must be a number of seconds >= 0, not {s}"
            )))
        }
    };
    let mut component = Component::connect(config).map_err(component_error)?;
    let mut topics = args.topics;
    topics.extend(args.topic_flags);
    if topics.is_empty() {
        topics.push(String::new());
    }
    for t in &topics {
        component.subscribe(t).map_err(component_error)?;
    }
    if !quiet {
        output::note(&format!(
            "{}; subscribed to {topics:?}",
            crate::args::banner_line(component.config())
        ));
    }
    let mut format = Format::default();
    format.raw = args.raw;
    format.max_width = if args.json { 0 } else { args.max_width };
    let mut out = output::Stdout::default();
    let mut per_topic: BTreeMap<String, Seen> = BTreeMap::new();
    let mut rate = Rate::default();
    let mut last_summary = Instant::now();
    let mut last_received = 0;
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let result = (|| -> Result<()> {
        while !output::stopped(&stop) {
            let wait = match period {
                Some(p) => p.saturating_sub(last_summary.elapsed()).min(tick),
                None => tick,
            };
            let mut next = component.recv_event(Some(wait)).map_err(component_error)?;
            // Handle what is ready, then flush once.
            let mut batch = 0;
            while let Some(event) = next {
                match event {
                    Event::Message(m) => {
                        let now = SystemTime::now();
                        let line = if args.json {
                            crate::json::message_line(now, &m, &format)
                        } else {
                            monitor::message_line(now, &m, &format)
                        };
                        let seen = per_topic.entry(m.topic.clone()).or_default();
                        seen.msgs += 1;
                        seen.bytes += m.payload.len() as u64;
                        out.line(&line)?;
                        if args.count > 0 && component.stats().received >= args.count {
                            return out.flush();
                        }
                    }
                    Event::Rejected(r) => {
                        let line = monitor::rejection_line(SystemTime::now(), &r);
                        if args.json {
                            log::warn!("{line}");
                        } else {
                            out.line(&line)?;
                        }
                    }
                    // Connection feedback is logged by the component.
                    Event::BackplaneUp | Event::BackplaneDown => {}
                }
                batch += 1;
                if batch >= 1000 || output::stopped(&stop) {
                    break;
                }
                next = component.try_recv_event().map_err(component_error)?;
            }
            out.flush()?;
            if let Some(p) = period {
                let elapsed = last_summary.elapsed();
                if elapsed >= p {
                    last_summary = Instant::now();
                    let stats = component.stats();
                    let line = rate.summary(elapsed, stats);
                    // No idle lines: only periods with traffic.
                    if stats.received + stats.rejected != last_received {
                        output::note(&line);
                    }
                    last_received = stats.received + stats.rejected;
                }
            }
        }
        Ok(())
    })();
    let stats = component.stats();
    if !quiet {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        output::note(&format!(
            "exiting: {} received, {} rejected in {:.1} s",
            stats.received, stats.rejected, secs
        ));
        for (topic, seen) in &per_topic {
            let topic = monitor::printable_topic(topic);
            output::note(&format!(
                "  {topic:<24} {:>8} msgs {:>10} bytes {:>9.1} msgs/s",
                seen.msgs,
                seen.bytes,
                seen.msgs as f64 / secs
            ));
        }
    }
    output::quiet_ok(result)
}
