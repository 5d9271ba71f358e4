//! `backplane`: the Banyan backplane (XSUB/XPUB forwarder), flag-compatible
//! with Python Banyan's `backplane` (`-n`, `-p`, `-s`; `-t` is accepted and
//! ignored: there is no loop time). Exits cleanly on SIGINT/SIGTERM, printing
//! its counters. Log level: `RUST_LOG` (default `warn`, which shows drops).

use std::time::Duration;

use banyan_gateways::backplane::{Backplane, Config, Engine};
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
    #[arg(long, default_value_t = banyan_gateways::component::DEFAULT_HWM)]
    hwm: i32,
    /// Per-subscriber queue limit in bytes (native engine; 0 = none): a
    /// queue is full at --hwm messages or this many bytes.
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// Libzmq engine only: how long (ms) a message for a subscriber whose
    /// queue is full is retried, with publishers paused, before it is
    /// dropped and counted. The native engine never pauses: it drops for the
    /// full subscriber at once (counted), so nobody else waits.
    #[arg(long, default_value_t = 1000)]
    stall_ms: u64,
    /// Publish the counters (forwarded, dropped, stalls) on topic
    /// `banyan_backplane` every this many seconds when one changed; 0 = never.
    #[arg(long, default_value_t = 5.0)]
    stats_interval: f64,
    /// Largest message in bytes (all frames) that is forwarded; larger ones
    /// are skipped and counted (native engine).
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// Largest command (READY, SUBSCRIBE, PING, ...) or subscription a peer
    /// may send, in bytes (native engine). Before the handshake nothing
    /// larger is buffered: the connection is closed.
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_MAX_COMMAND)]
    max_command: usize,
    /// Distinct subscriptions one subscriber may hold; more are ignored and
    /// counted (native engine; 0 = no limit).
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_MAX_SUBSCRIPTIONS)]
    max_subscriptions: usize,
    /// Bytes the backplane may hold in all (queues, partial messages,
    /// subscriptions). When used up: new connections are refused and the
    /// largest queues lose their newest messages, counted and logged
    /// (native engine; 0 = no budget).
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_MEMORY_BUDGET)]
    memory_budget: usize,
    /// Unread control output allowed per peer, in bytes: PINGs are not
    /// answered beyond it, and a publisher that does not read its
    /// subscriptions is disconnected (native engine; 0 = no limit).
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_CONTROL_QUEUE_BYTES)]
    control_queue_bytes: usize,
    /// Seconds a connection may take to finish the ZeroMQ handshake
    /// (native engine).
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Forwarding engine: `native` (one thread speaking ZMTP directly) or
    /// `libzmq` (libzmq's XSUB/XPUB sockets; kept for comparison).
    #[arg(long, default_value = "native")]
    engine: Engine,
    /// Busy polling (native engine): while messages arrive less than this
    /// many microseconds apart, poll for the next one instead of sleeping
    /// (adaptive: the backplane sleeps as soon as traffic slows down).
    /// Lower latency for CPU time where thread wake-ups are slow (VMs
    /// without guest halt polling); 0 = off (default). Try 200.
    #[arg(long, default_value_t = banyan_gateways::backplane::DEFAULT_BUSY_POLL.as_micros() as u64)]
    busy_poll_us: u64,
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
    let handshake_timeout = match Duration::try_from_secs_f64(args.handshake_timeout) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!(
                "backplane: --handshake-timeout must be a number of seconds > 0, not {}",
                args.handshake_timeout
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
    config.max_command = args.max_command;
    config.max_subscriptions = args.max_subscriptions;
    config.memory_budget = args.memory_budget;
    config.control_queue_bytes = args.control_queue_bytes;
    config.handshake_timeout = handshake_timeout;
    config.engine = args.engine;
    config.busy_poll = Duration::from_micros(args.busy_poll_us);
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
    println!(
        "backplane limits: {} shed (memory budget), {} limited (subscriptions, PONGs)",
        s.shed, s.limited
    );
    if let Err(e) = result {
        eprintln!("backplane: {e}");
        std::process::exit(1);
    }
}
