//! `backplane`: the Banyan backplane (XSUB/XPUB forwarder), flag-compatible
//! with Python Banyan's `backplane` (`-n`, `-p`, `-s`; `-t` is accepted and
//! ignored: there is no loop time). Exits cleanly on SIGINT/SIGTERM, printing
//! its counters. Log level: `RUST_LOG` (default `warn`, which shows drops).

use std::time::Duration;

use banyan_backplane::{Backplane, Config, Engine};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Banyan backplane: components' publishers connect to the publisher port,
/// subscribers to the subscriber port.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Name of this backplane (shown in the banner).
    #[arg(short = 'n', default_value = "")]
    name: String,
    /// Publisher port (components' publishers connect here).
    #[arg(short = 'p', default_value_t = 43124)]
    publisher_port: u16,
    /// Subscriber port (components' subscribers connect here).
    #[arg(short = 's', default_value_t = 43125)]
    subscriber_port: u16,
    /// Address to listen on: 0.0.0.0 = all interfaces, 127.0.0.1 = this machine only.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// Per-connection queue limit in messages (0 = unlimited).
    #[arg(long, default_value_t = banyan_component::DEFAULT_HWM)]
    hwm: i32,
    /// Per-subscriber queue limit in bytes (native engine; 0 = none): a
    /// queue is full at --hwm messages or this many bytes.
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// How long (ms) a message for a subscriber whose queue is full is retried,
    /// with publishers paused, before it is dropped and counted. After such a
    /// drop, messages that cannot be queued at once are dropped at once until
    /// that topic flows again.
    #[arg(long, default_value_t = 1000)]
    stall_ms: u64,
    /// Publish the counters (forwarded, dropped, stalls) on topic
    /// `banyan_backplane` every this many seconds when one changed; 0 = never.
    #[arg(long, default_value_t = 5.0)]
    stats_interval: f64,
    /// Largest message in bytes (all frames) that is forwarded; larger ones
    /// are skipped and counted (native engine).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// Forwarding engine: `native` (one thread speaking ZMTP directly) or
    /// `libzmq` (libzmq's XSUB/XPUB sockets; kept for comparison).
    #[arg(long, default_value = "native")]
    engine: Engine,
    /// Busy polling (native engine): while messages arrive less than this
    /// many microseconds apart, poll for the next one instead of sleeping
    /// (adaptive: the backplane sleeps as soon as traffic slows down).
    /// Lower latency for CPU time where thread wake-ups are slow (VMs
    /// without guest halt polling); 0 = off (default). Try 200.
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_BUSY_POLL.as_micros() as u64)]
    busy_poll_us: u64,
    /// Heartbeats: send a PING to each ZMTP 3.1 peer every this many
    /// milliseconds (0 = never; peers' own heartbeat TTLs still count).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_HEARTBEAT_INTERVAL.as_millis() as u64)]
    heartbeat_ivl_ms: u64,
    /// Heartbeats: close a peer that shows no sign of life this many
    /// milliseconds after a PING; also the TTL our PINGs ask peers to
    /// apply to us (0 = never close for that).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_HEARTBEAT_TIMEOUT.as_millis() as u64)]
    heartbeat_timeout_ms: u64,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    loop_time: Option<String>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let stats_interval = match Duration::try_from_secs_f64(args.stats_interval) {
        Ok(d) => d,
        Err(_) => {
            eprintln!(
                "backplane: --stats-interval must be a number of seconds >= 0, not {}",
                args.stats_interval
            );
            std::process::exit(2);
        }
    };
    let mut config = Config::new(args.bind, args.publisher_port, args.subscriber_port);
    config.name = args.name;
    config.hwm = args.hwm;
    config.queue_bytes = args.queue_bytes;
    config.stall = Duration::from_millis(args.stall_ms);
    config.stats_interval = stats_interval;
    config.max_message = args.max_message;
    config.engine = args.engine;
    config.busy_poll = Duration::from_micros(args.busy_poll_us);
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ivl_ms);
    config.heartbeat_timeout = Duration::from_millis(args.heartbeat_timeout_ms);
    let backplane = match Backplane::bind(&config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backplane: {e}");
            std::process::exit(1);
        }
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backplane: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let handle = backplane.shutdown_handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("Exiting through signal handler (signal {signal})");
            handle.shutdown();
        }
    });
    println!("{}", backplane.banner());
    let stats = backplane.shutdown_handle();
    let result = backplane.run();
    let s = stats.stats();
    println!(
        "backplane exiting: {} forwarded, {} dropped, {} stalls; {} unmatched, {} undelivered, {} oversize, {} connections refused",
        s.forwarded, s.dropped, s.stalls, s.unmatched, s.undelivered, s.oversize, s.refused
    );
    if s.expired > 0 {
        // A line of its own: scripts read the one above.
        println!(
            "backplane: {} connection(s) closed for silence (heartbeats)",
            s.expired
        );
    }
    if let Err(e) = result {
        eprintln!("backplane: {e}");
        std::process::exit(1);
    }
}
