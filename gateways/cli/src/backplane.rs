//! `banyan backplane`: the backplane (XSUB/XPUB forwarder), flag-compatible
//! with Python Banyan's `backplane` (`-n`, `-p`, `-s`; `-t` is accepted and
//! ignored: there is no loop time).
//!
//! The banner (with the ports actually bound, so `-p 0 -s 0` can be used)
//! and the counters at exit are printed on stdout; logs on stderr. SIGINT or
//! SIGTERM stops it cleanly whatever state stdout and stderr are in.

use std::time::Duration;

use banyan_backplane::{Backplane, Config, Engine};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::output::{self, Failure, Result};

/// Flags of `banyan backplane`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Name of this backplane (banner, stats reports).
    #[arg(short = 'n', long = "name", default_value = "")]
    pub name: String,
    /// Publisher port (components' publishers connect here); 0 = any free port.
    #[arg(
        short = 'p',
        long = "publisher-port",
        value_name = "PORT",
        default_value_t = 43124
    )]
    pub publisher_port: u16,
    /// Subscriber port (components' subscribers connect here); 0 = any free port.
    #[arg(
        short = 's',
        long = "subscriber-port",
        value_name = "PORT",
        default_value_t = 43125
    )]
    pub subscriber_port: u16,
    /// Address to listen on: 0.0.0.0 = all interfaces (anyone who can reach
    /// this machine may publish and subscribe), 127.0.0.1 = this machine only.
    #[arg(long, value_name = "ADDRESS", default_value = "0.0.0.0")]
    pub bind: String,
    /// Per-connection queue limit in messages (0 = unlimited).
    #[arg(long, default_value_t = banyan_component::DEFAULT_HWM)]
    pub hwm: i32,
    /// Per-subscriber queue limit in bytes (native engine; 0 = none): a
    /// queue is full at --hwm messages or this many bytes.
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_QUEUE_BYTES)]
    pub queue_bytes: usize,
    /// Libzmq engine only: how long (ms) a message for a subscriber whose
    /// queue is full is retried, with publishers paused, before it is
    /// dropped and counted. The native engine never pauses: it drops for the
    /// full subscriber at once (counted), so nobody else waits.
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Publish the counters on topic `banyan_backplane` every this many
    /// seconds when something changed; 0 = never.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub stats_interval: f64,
    /// Largest message in bytes (all frames) that is forwarded; larger ones
    /// are skipped and counted (native engine).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
    /// Largest command (READY, SUBSCRIBE, PING, ...) or subscription a peer
    /// may send, in bytes (native engine). Before the handshake nothing
    /// larger is buffered: the connection is closed.
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_MAX_COMMAND)]
    pub max_command: usize,
    /// Distinct subscriptions one subscriber may hold; more are ignored and
    /// counted (native engine; 0 = no limit).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_MAX_SUBSCRIPTIONS)]
    pub max_subscriptions: usize,
    /// Bytes the backplane may hold in all (queues, partial messages,
    /// subscriptions). When used up: new connections are refused and the
    /// largest queues lose their newest messages, counted and logged
    /// (native engine; 0 = no budget).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_MEMORY_BUDGET)]
    pub memory_budget: usize,
    /// Unread control output allowed per peer, in bytes: PINGs are not
    /// answered beyond it, and a publisher that does not read its
    /// subscriptions is disconnected (native engine; 0 = no limit).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_CONTROL_QUEUE_BYTES)]
    pub control_queue_bytes: usize,
    /// Seconds a connection may take to finish the ZeroMQ handshake
    /// (native engine).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Heartbeats: send a PING to each ZMTP 3.1 peer every this many
    /// milliseconds (0 = never; peers' own heartbeat TTLs still count).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_HEARTBEAT_INTERVAL.as_millis() as u64)]
    pub heartbeat_ivl_ms: u64,
    /// Heartbeats: close a peer that shows no sign of life this many
    /// milliseconds after a PING; also the TTL our PINGs ask peers to
    /// apply to us (0 = never close for that).
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_HEARTBEAT_TIMEOUT.as_millis() as u64)]
    pub heartbeat_timeout_ms: u64,
    /// Forwarding engine: `native` (one thread speaking ZMTP) or `libzmq`;
    /// the service broker runs on the same kind of ROUTER (native: the
    /// broker thread speaks ZMTP; libzmq: libzmq's ROUTER socket).
    #[arg(long, default_value = "native")]
    pub engine: Engine,
    /// Busy polling (native engine, and the native service broker), in
    /// microseconds: while messages arrive less than this apart, poll
    /// instead of sleeping. 0 = off. Try 200.
    #[arg(long, default_value_t = banyan_backplane::DEFAULT_BUSY_POLL.as_micros() as u64)]
    pub busy_poll_us: u64,
    /// Do not announce this backplane in the discovery pool (components
    /// then need its address: `-b ADDR`).
    #[arg(long)]
    pub no_discovery: bool,
    /// Do not run the service broker (request/reply, docs/services.md) beside
    /// the forwarder.
    #[arg(long)]
    pub no_services: bool,
    /// The service broker's port (clients and workers connect here).
    /// Default 43126, or any free port when `-p 0` is given.
    #[arg(long, value_name = "PORT")]
    pub services_port: Option<u16>,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    pub loop_time: Option<String>,
}

/// Runs the backplane until SIGINT/SIGTERM.
///
/// # Errors
/// Bad flags (exit 2), ports in use or other bind errors (exit 1).
pub fn run(args: Args) -> Result<()> {
    let stats_interval = Duration::try_from_secs_f64(args.stats_interval).map_err(|_| {
        Failure::usage(format!(
            "--stats-interval must be a number of seconds >= 0, not {}",
            args.stats_interval
        ))
    })?;
    let handshake_timeout = match Duration::try_from_secs_f64(args.handshake_timeout) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return Err(Failure::usage(format!(
                "--handshake-timeout must be a number of seconds > 0, not {}",
                args.handshake_timeout
            )))
        }
    };
    let bind = args.bind.clone();
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
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ivl_ms);
    config.heartbeat_timeout = Duration::from_millis(args.heartbeat_timeout_ms);
    config.engine = args.engine;
    config.busy_poll = Duration::from_micros(args.busy_poll_us);
    // Signals first: a SIGTERM right after start must not be lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::new(1, format!("cannot install signal handlers: {e}")))?;
    let backplane = Backplane::bind(&config).map_err(|e| Failure::new(1, e.to_string()))?;
    // A backplane on a loopback address cannot be reached from the LAN:
    // nothing to announce there.
    let loopback = bind
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
        || bind == "localhost";
    // The service broker beside the forwarder; its counters go out on the
    // backplane's stats topic.
    let services = if args.no_services {
        None
    } else {
        let port = args.services_port.unwrap_or(if args.publisher_port == 0 {
            0
        } else {
            banyan_services::broker::DEFAULT_PORT
        });
        let mut sc = banyan_services::broker::SocketConfig::new(bind.clone(), port);
        // One engine type for both (banyan_zmtp::Engine).
        sc.engine = config.engine;
        sc.heartbeat_interval = config.heartbeat_interval;
        sc.heartbeat_timeout = config.heartbeat_timeout;
        sc.handshake_timeout = config.handshake_timeout;
        sc.busy_poll = config.busy_poll;
        sc.stats_to = Some(format!("tcp://127.0.0.1:{}", backplane.publisher_port()));
        sc.name.clone_from(&config.name);
        let broker = banyan_services::broker::spawn(sc)
            .map_err(|e| Failure::new(1, format!("service broker: {e} (or --no-services)")))?;
        output::note(&format!("service broker on port {}", broker.port()));
        Some(broker)
    };
    // Announced in the discovery pool: components find it with `-b NAME`
    // and `banyan ls` lists it.
    let announcer = if args.no_discovery || loopback {
        None
    } else {
        let name = if config.name.is_empty() {
            "backplane"
        } else {
            config.name.as_str()
        };
        let mut local = banyan_discovery::announce::backplane_node(
            name,
            backplane.publisher_port(),
            backplane.subscriber_port(),
        );
        if let Some(broker) = &services {
            // `banyan call -b NAME` finds the broker's port here.
            local = local.with_endpoint(banyan_discovery::EndpointKind::Services, broker.port());
        }
        match banyan_discovery::announce::Announcer::start(local) {
            Ok(a) => Some(a),
            Err(e) => {
                log::warn!("not announced in the discovery pool ({e}); components need -b ADDR");
                None
            }
        }
    };
    // Its identity (`banyan ls NAME`) carries its stats topic and counters,
    // refreshed every second by a thread that owns the announcer; it says
    // BYE when the backplane stops.
    let (identity_stop, identity_rx) = std::sync::mpsc::channel::<()>();
    let identity = announcer.map(|a| {
        let h = backplane.shutdown_handle();
        std::thread::spawn(move || {
            use std::sync::mpsc::RecvTimeoutError;
            loop {
                let counters = match serde_json::to_value(h.stats()) {
                    Ok(serde_json::Value::Object(m)) => m
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v.as_u64()?)))
                        .collect(),
                    _ => Vec::new(),
                };
                a.set_identity(
                    vec![banyan_backplane::STATS_TOPIC.to_owned()],
                    Vec::new(),
                    counters,
                );
                if identity_rx.recv_timeout(Duration::from_secs(1))
                    != Err(RecvTimeoutError::Timeout)
                {
                    break;
                }
            }
            a.stop();
        })
    });
    let handle = backplane.shutdown_handle();
    let signal_handle = signals.handle();
    let waiter = std::thread::spawn(move || {
        // Nothing here may panic (a dead stderr included): the shutdown
        // must happen whatever the log does.
        if let Some(signal) = signals.forever().next() {
            handle.shutdown();
            log::info!(target: "banyan", "stopping (signal {signal})");
        }
    });
    let mut out = output::Stdout::default();
    // stdout may be closed or dead: the banner is informational.
    let _ = out.line(&backplane.banner()).and_then(|()| out.flush());
    let stats = backplane.shutdown_handle();
    let result = backplane.run();
    drop(identity_stop);
    if let Some(t) = identity {
        let _ = t.join();
    }
    signal_handle.close();
    if let Some(services) = services {
        if let Err(e) = services.shutdown() {
            log::warn!("service broker: {e}");
        }
    }
    let _ = waiter.join();
    let s = stats.stats();
    let _ = out
        .line(&format!(
            "backplane exiting: {} forwarded, {} dropped, {} stalls; {} unmatched, {} undelivered, {} oversize, {} connections refused",
            s.forwarded, s.dropped, s.stalls, s.unmatched, s.undelivered, s.oversize, s.refused
        ))
        .and_then(|()| {
            // Lines of their own: scripts read the one above.
            out.line(&format!(
                "backplane limits: {} shed (memory budget), {} limited (subscriptions, PONGs)",
                s.shed, s.limited
            ))
        })
        .and_then(|()| {
            if s.expired > 0 {
                out.line(&format!(
                    "backplane: {} connection(s) closed for silence (heartbeats)",
                    s.expired
                ))
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    result.map_err(|e| Failure::new(1, e.to_string()))
}
