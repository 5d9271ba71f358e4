//! `monitor`: prints every message on a backplane (or those under `-t`
//! topics), flag-compatible with Python Banyan's `monitor` (`-b -p -s -n`,
//! `-m` accepted). Malformed messages print a diagnostic line and are
//! counted; they never stop the monitor. See `banyan_component::monitor` for
//! the line formats.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use banyan_component::monitor::{self, Format, Rate};
use banyan_component::{Component, Config, Event};
use clap::Parser;

/// Banyan monitor: prints one line per message (time, topic, payload as JSON).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Backplane IP address or host name.
    #[arg(short = 'b', default_value = "127.0.0.1")]
    backplane: String,
    /// Backplane publisher port.
    #[arg(short = 'p', default_value_t = 43124)]
    publisher_port: u16,
    /// Backplane subscriber port.
    #[arg(short = 's', default_value_t = 43125)]
    subscriber_port: u16,
    /// Name shown in the banner.
    #[arg(short = 'n', default_value = "Monitor")]
    name: String,
    /// Topic prefix to show (repeatable); default: everything.
    #[arg(short = 't')]
    topics: Vec<String>,
    /// Show frame bytes as hex instead of JSON.
    #[arg(long)]
    raw: bool,
    /// Seconds between rate summaries (0 = none).
    #[arg(long, default_value_t = 5.0)]
    summary: f64,
    /// Longest payload text per line (characters, 0 = no limit).
    #[arg(long, default_value_t = 4096)]
    max_width: usize,
    /// Largest accepted payload in bytes (larger ones are reported and counted).
    #[arg(long, default_value_t = banyan_component::wire::DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,
    /// Exit after this many valid messages (0 = run until interrupted).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Python Banyan's numpy flag; accepted for compatibility (bin keys are
    /// always shown).
    #[arg(short = 'm', hide = true)]
    numpy: Option<String>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("monitor: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let mut config = Config::new(args.backplane, args.publisher_port, args.subscriber_port);
    config.name = args.name;
    config.limits.max_payload = args.max_payload;
    config.linger = Duration::ZERO;
    let mut component = Component::connect(config)?;
    let topics = if args.topics.is_empty() {
        vec![String::new()]
    } else {
        args.topics
    };
    for t in &topics {
        component.subscribe(t)?;
    }
    let mut format = Format::default();
    format.raw = args.raw;
    format.max_width = args.max_width;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{}", component.config().banner())?;
    writeln!(out, "Subscribed to: {topics:?}")?;
    out.flush()?;

    let period = (args.summary > 0.0).then(|| Duration::from_secs_f64(args.summary));
    let mut rate = Rate::default();
    let mut last_summary = Instant::now();
    // Wake at least every 100 ms to notice a stop signal.
    let tick = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let wait = match period {
            Some(p) => p.saturating_sub(last_summary.elapsed()).min(tick),
            None => tick,
        };
        match component.recv_event(Some(wait))? {
            Some(Event::Message(m)) => {
                writeln!(
                    out,
                    "{}",
                    monitor::message_line(SystemTime::now(), &m, &format)
                )?;
                if args.count > 0 && component.stats().received >= args.count {
                    break;
                }
            }
            Some(Event::Rejected(r)) => {
                writeln!(out, "{}", monitor::rejection_line(SystemTime::now(), &r))?;
            }
            Some(Event::BackplaneUp) => writeln!(out, "# backplane connected")?,
            Some(Event::BackplaneDown) => {
                writeln!(out, "# backplane connection lost, reconnecting")?
            }
            None => {}
        }
        if let Some(p) = period {
            if last_summary.elapsed() >= p {
                let elapsed = last_summary.elapsed();
                last_summary = Instant::now();
                writeln!(out, "{}", rate.summary(elapsed, component.stats()))?;
            }
        }
        out.flush()?;
    }
    let stats = component.stats();
    writeln!(
        out,
        "# monitor exiting: {} received, {} rejected",
        stats.received, stats.rejected
    )?;
    Ok(())
}
