//! The backplane: a ZeroMQ forwarder, wire-compatible with Python Banyan's.
//!
//! Publishers connect to the **publisher port** (43124), subscribers to the
//! **subscriber port** (43125). Unlike Python's backplane (a SUB socket
//! subscribed to everything), subscriptions travel upstream as with XSUB/XPUB,
//! so publishers only send what someone wants; the messages themselves are
//! forwarded unchanged, frame by frame, and never inspected.
//!
//! By default it listens on all interfaces (`0.0.0.0`), so Raspberry Pi
//! gateways and laptops on the LAN can reach it without configuration.
//!
//! # Engines
//! - [`Engine::Native`] (default): one thread, one `epoll`, ZMTP 3 spoken
//!   directly ([`banyan_zmtp`]) to the libzmq sockets of components (ours,
//!   pyzmq's): the ports answer as an XSUB (publisher port) and an XPUB
//!   (subscriber port) socket would. A message read from a publisher is
//!   written to its subscribers by the same thread in the same turn, bytes
//!   unchanged — no hand-over to libzmq I/O threads, which is where most of
//!   a libzmq forwarder's latency goes (each hand-over is a thread wake-up).
//!   Optionally, while messages arrive less than [`Config::busy_poll`]
//!   apart the thread polls instead of sleeping (adaptive, see the option).
//! - [`Engine::Libzmq`]: libzmq's XSUB/XPUB sockets with a forwarding loop
//!   of ours (`ZMQ_XPUB_NODROP`), kept for comparison (`--engine libzmq`).
//!
//! # Queues and counted loss
//! Each subscriber gets a queue of up to [`Config::hwm`] messages in the
//! backplane (default 1,000,000; `hwm = 0` means unlimited), and (native
//! engine) of up to [`Config::queue_bytes`] bytes (default 64 MiB),
//! whichever fills first. Nothing is dropped silently.
//!
//! Native engine: a message for a subscriber whose queue is full is
//! dropped **for that subscriber only**, at once, counted in
//! [`Stats::dropped`]; every other subscriber gets it, and nothing waits:
//! a stuck subscriber never delays anyone else's traffic (publishers are
//! never paused). A subscriber that drains its queue loses nothing: the
//! queue limits are the backlog it may build. [`Stats::stalls`] counts the
//! times a subscriber's queue filled up (the start of a run of drops for
//! it). On top of that the native engine keeps every connection and the
//! whole process within limits (see [`Config::memory_budget`] and
//! `docs/lan.md`, "Limits"): the largest queues lose their newest messages
//! first when the budget is used up ([`Stats::shed`]).
//!
//! Libzmq engine ([`Engine::Libzmq`], kept for comparison): the backplane
//! stops reading from publishers and retries the message for up to
//! [`Config::stall`] (counted in [`Stats::stalls`]), then drops it for every
//! subscriber of it (ZeroMQ queues a message for all matching subscribers
//! or for none), and drops further messages of that topic that cannot be
//! queued at once until one is queued again.
//!
//! Drops are logged at `warn` (at most every 5 s), readable with
//! [`Backplane::stats`] / [`ShutdownHandle::stats`], and published by the
//! backplane itself on topic [`STATS_TOPIC`] every [`Config::stats_interval`]
//! when a counter changed: `{"report": "stats", "name": …, "forwarded": …,
//! "dropped": …, "stalls": …, "unmatched": …, "undelivered": …,
//! "oversize": …, "refused": …, "shed": …, "limited": …, "expired": …}` (see [`Stats`]). Messages are forwarded
//! whole: all frames of a multipart message are read before the first is
//! sent, and a drop drops all of them.
//!
//! # Bad peers
//! The native engine closes (and counts in [`Stats::refused`], logs at
//! `warn`) a connection that is not ZMTP 3 (or 2.0) with the NULL mechanism, whose
//! socket type cannot talk to that port (a SUB on the publisher port),
//! that breaks the framing, whose first command is over
//! [`Config::max_command`], or that has not finished its handshake within
//! [`Config::handshake_timeout`] (10 s). A message larger than
//! [`Config::max_message`] (or a subscription or command larger than
//! [`Config::max_command`]) is skipped as it arrives, never buffered
//! (counted in [`Stats::oversize`]), and the connection carries on.
//!
//! # Heartbeats
//! The native engine sends ZMTP 3.1 peers a `PING` every
//! [`Config::heartbeat_interval`] (default 1 s) asking them to drop the
//! backplane after [`Config::heartbeat_timeout`] (default 3 s) of silence,
//! close a peer that shows no sign of life for that long after a `PING`,
//! and honour the time to live in peers' `PING`s (libzmq's
//! `ZMQ_HEARTBEAT_TTL`): a subscriber that vanished without closing its
//! connection (SIGSTOP, out of Wi-Fi range) loses its subscriptions and its
//! queue instead of holding both forever. It counts such
//! closes in [`Stats::expired`] and what was queued for them in
//! [`Stats::undelivered`]; see `heartbeat.rs` for what counts as a sign of
//! life. (The libzmq engine sets no heartbeat options: libzmq would ping
//! ZMTP 3.0 peers too, and zmq.rs, one of them, drops the connection on a
//! `PING`.)
//!
//! ```no_run
//! use banyan_backplane::{Backplane, Config};
//! let backplane = Backplane::bind(&Config::default())?;
//! println!("{}", backplane.banner());
//! backplane.run()?; // until shutdown_handle().shutdown()
//! # Ok::<(), banyan_backplane::Error>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod census;
mod heartbeat;
mod libzmq;
mod native;

/// Topic of the backplane's own statistics messages.
pub const STATS_TOPIC: &str = "banyan_backplane";
/// Default for [`Config::stall`].
pub const DEFAULT_STALL: Duration = Duration::from_secs(1);
/// Default for [`Config::stats_interval`].
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Default for [`Config::queue_bytes`]: 64 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;
/// Default for [`Config::max_message`]: the components' payload limit
/// ([`banyan_component::wire::DEFAULT_MAX_PAYLOAD`], 64 MiB) plus 64 KiB for the topic
/// and frame headers, so that the backplane forwards what a component
/// accepts and no more.
pub const DEFAULT_MAX_MESSAGE: usize = banyan_component::wire::DEFAULT_MAX_PAYLOAD + (64 << 10);
/// Default for [`Config::max_command`]: 4 KiB.
pub const DEFAULT_MAX_COMMAND: usize = 4 << 10;
/// Default for [`Config::max_subscriptions`]: 10,000 per subscriber.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;
/// Default for [`Config::memory_budget`]: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;
/// Default for [`Config::control_queue_bytes`]: 64 KiB.
pub const DEFAULT_CONTROL_QUEUE_BYTES: usize = 64 << 10;
/// Default for [`Config::busy_poll`]: off (the kernel's idle loop usually
/// polls already; see the option).
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;
/// Default for [`Config::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default for [`Config::heartbeat_timeout`].
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Minimum time between two drop warnings in the log.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Errors of the backplane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The port is already in use — probably another backplane (ours or
    /// Python's) is running. Stop it, or choose other ports with `-p`/`-s`.
    #[error("{role} port {port} on {address} is already in use (is another backplane running?)")]
    PortInUse {
        /// `publisher` or `subscriber`.
        role: &'static str,
        /// The port.
        port: u16,
        /// The bind address.
        address: String,
    },
    /// Binding failed for another reason (libzmq engine): check `--bind`
    /// (an IP address of this machine, or `0.0.0.0` for all interfaces).
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// What ZeroMQ said.
        source: zmq::Error,
    },
    /// Listening failed for another reason (native engine): check `--bind`
    /// (an IP address or name of this machine, or `0.0.0.0` for all
    /// interfaces).
    #[error("cannot listen on {endpoint}: {source}")]
    Listen {
        /// The endpoint.
        endpoint: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another ZeroMQ failure (out of file descriptors, for example).
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The backplane thread panicked (a bug: please report it).
    #[error("backplane thread panicked")]
    Panicked,
}

/// Result of the backplane.
pub type Result<T> = std::result::Result<T, Error>;

/// How the backplane moves messages: [`Engine::Native`] (one thread
/// speaking ZMTP 3 directly over `epoll`, the default) or
/// [`Engine::Libzmq`] (libzmq's XSUB/XPUB with our forwarding loop). The
/// type is shared with the services broker.
pub use banyan_zmtp::Engine;

/// Backplane settings. Build with `Config::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on: `0.0.0.0` (default, all interfaces), `127.0.0.1`
    /// (this machine only) or one interface's IP.
    pub bind: String,
    /// Port publishers connect to. Default 43124; 0 picks a free port.
    pub publisher_port: u16,
    /// Port subscribers connect to. Default 43125; 0 picks a free port.
    pub subscriber_port: u16,
    /// Name shown in the banner.
    pub name: String,
    /// Per-subscriber queue limit in messages; 0 = unlimited. Default
    /// 1,000,000.
    pub hwm: i32,
    /// Native engine: per-subscriber queue limit in bytes as well (a queue
    /// is full at [`Config::hwm`] messages or this many bytes, whichever
    /// comes first; a message is queued when the queue is below the limit,
    /// so a queue holds at most this plus one message). 0 = no byte limit.
    /// Default [`DEFAULT_QUEUE_BYTES`] (64 MiB).
    pub queue_bytes: usize,
    /// Libzmq engine only: how long a message for a subscriber whose queue
    /// is full is retried (while publishers are not read) before it is
    /// dropped and counted. The native engine never waits: it drops for the
    /// full subscriber at once. Default 1 s ([`DEFAULT_STALL`]).
    pub stall: Duration,
    /// How often the counters are published on [`STATS_TOPIC`] (only when
    /// one changed). Default 5 s; zero = never.
    pub stats_interval: Duration,
    /// Largest message (all frames with their headers) the native engine
    /// forwards; larger ones are skipped as they arrive and counted in
    /// [`Stats::oversize`]. Default [`DEFAULT_MAX_MESSAGE`] (64 MiB + 64 KiB,
    /// matching the components' payload limit).
    pub max_message: usize,
    /// Native engine: largest command frame (`READY`, `SUBSCRIBE`, `PING`,
    /// …) any peer may send, and largest subscription or message a
    /// subscriber may send, headers included. Before the handshake nothing
    /// larger is buffered: a bigger first command closes the connection
    /// (counted in [`Stats::refused`]); after it a bigger one is skipped
    /// unread ([`Stats::oversize`]). Default [`DEFAULT_MAX_COMMAND`] (4 KiB).
    pub max_command: usize,
    /// Native engine: distinct subscriptions one subscriber connection may
    /// hold; further new ones are ignored (counted in [`Stats::limited`],
    /// logged). 0 = no limit. Default [`DEFAULT_MAX_SUBSCRIPTIONS`].
    pub max_subscriptions: usize,
    /// Native engine: bytes the backplane may hold in all: queued messages
    /// and control output, partly received messages and subscriptions
    /// (counted at their length plus 128 bytes each). When it is used up:
    /// new connections are refused (closed at once, [`Stats::refused`]);
    /// the largest subscriber queues lose their newest messages until an
    /// eighth of the budget is free again ([`Stats::shed`], also in
    /// [`Stats::dropped`]); a message from a publisher that does not fit is
    /// discarded as it arrives ([`Stats::shed`]); new subscriptions are
    /// ignored ([`Stats::limited`]). All logged at `warn`. 0 = no budget.
    /// Default [`DEFAULT_MEMORY_BUDGET`] (256 MiB).
    pub memory_budget: usize,
    /// Native engine: unread control output allowed per peer. A `PING` is
    /// not answered while this many bytes wait to be written to its sender
    /// ([`Stats::limited`]). A publisher with more than this (beyond the
    /// subscription list sent when it connected) of subscription notices
    /// unread is disconnected ([`Stats::refused`]; it reconnects and gets the
    /// whole list again) when it has read nothing for
    /// [`Config::handshake_timeout`] or the memory budget is used up. 0 = no
    /// limit. Default [`DEFAULT_CONTROL_QUEUE_BYTES`] (64 KiB).
    pub control_queue_bytes: usize,
    /// Native engine: a connection that has not finished the ZeroMQ
    /// handshake (greeting and `READY`) this long after it was accepted is
    /// closed and counted in [`Stats::refused`]. Default 10 s.
    pub handshake_timeout: Duration,
    /// The forwarding engine. Default [`Engine::Native`].
    pub engine: Engine,
    /// Native engine, busy polling: while messages keep arriving less than
    /// this far apart, the forwarding thread polls for the next one (up to
    /// this long, adaptively) instead of sleeping in `epoll_wait`. It buys
    /// latency with CPU time on machines where waking a sleeping thread is
    /// slow — virtual machines whose kernel does not poll in its idle loop
    /// (`haltpoll.guest_halt_poll_ns=0`), like the build machine, where
    /// 200 µs halves an idle echo round trip; see `docs/lan.md`. Zero (the
    /// default, [`DEFAULT_BUSY_POLL`]) = always sleep.
    pub busy_poll: Duration,
    /// Native engine: how often the backplane sends a `PING` to each ZMTP 3.1 peer
    /// (libzmq's `ZMQ_HEARTBEAT_IVL`). Zero = never (peers' own time to
    /// live is still honoured). Default [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// Native engine: a peer that shows no sign of life this long after a `PING` is
    /// closed, and the time to live our `PING`s ask for (libzmq's
    /// `ZMQ_HEARTBEAT_TIMEOUT` and `ZMQ_HEARTBEAT_TTL`). Zero = never close
    /// for that. Default [`DEFAULT_HEARTBEAT_TIMEOUT`].
    pub heartbeat_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".into(),
            publisher_port: banyan_component::PUBLISHER_PORT,
            subscriber_port: banyan_component::SUBSCRIBER_PORT,
            name: String::new(),
            hwm: banyan_component::DEFAULT_HWM,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            stall: DEFAULT_STALL,
            stats_interval: DEFAULT_STATS_INTERVAL,
            max_message: DEFAULT_MAX_MESSAGE,
            max_command: DEFAULT_MAX_COMMAND,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            control_queue_bytes: DEFAULT_CONTROL_QUEUE_BYTES,
            handshake_timeout: Duration::from_secs(10),
            engine: Engine::Native,
            busy_poll: DEFAULT_BUSY_POLL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

impl Config {
    /// A config listening on `bind` with the given ports (0 = any free port).
    pub fn new(bind: impl Into<String>, publisher_port: u16, subscriber_port: u16) -> Config {
        Config {
            bind: bind.into(),
            publisher_port,
            subscriber_port,
            ..Config::default()
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The backplane's counters (see the [module documentation](self)).
/// Serializes as a map of its fields (the discovery identity's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Messages (all their frames) passed from publishers to at least one
    /// subscriber.
    pub forwarded: u64,
    /// Message deliveries dropped because a subscriber's queue was full, or
    /// (native engine) for the memory budget (one per subscriber that
    /// missed the message), or, for a message a subscriber sent upstream,
    /// because a publisher's queue was full.
    pub dropped: u64,
    /// Native engine: times a subscriber's queue filled up (the start of a
    /// run of drops for it). Libzmq engine: times forwarding paused because
    /// a subscriber's queue was full.
    pub stalls: u64,
    /// Messages that matched no subscriber (a publisher learns of an
    /// unsubscription a moment after it happened). Native engine.
    pub unmatched: u64,
    /// Messages queued for a subscriber that disconnected before they were
    /// written to it. Native engine.
    pub undelivered: u64,
    /// Messages over [`Config::max_message`], skipped. Native engine.
    pub oversize: u64,
    /// Connections closed for breaking the protocol (not ZeroMQ, wrong
    /// socket type, bad frames, no handshake in time) or by a limit (an
    /// oversize first command, a publisher not reading its subscriptions,
    /// the memory budget used up when it connected). Native engine.
    pub refused: u64,
    /// Message deliveries dropped to stay within [`Config::memory_budget`]
    /// (counted in `dropped` too), plus messages discarded as they arrived
    /// for the same reason. Native engine.
    pub shed: u64,
    /// Requests refused by a per-peer limit, the connection kept:
    /// subscriptions over [`Config::max_subscriptions`] (or over the memory
    /// budget), `PING`s not answered to a peer that does not read
    /// ([`Config::control_queue_bytes`]). Native engine.
    pub limited: u64,
    /// Connections closed because the peer stopped answering heartbeats
    /// or outlived the time to live its own heartbeats asked for. Native
    /// engine.
    pub expired: u64,
}

#[derive(Debug, Default)]
struct Counters {
    values: [AtomicU64; 10],
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let [forwarded, dropped, stalls, unmatched, undelivered, oversize, refused, shed, limited, expired] =
            self.values.each_ref().map(|a| a.load(Ordering::Relaxed));
        Stats {
            forwarded,
            dropped,
            stalls,
            unmatched,
            undelivered,
            oversize,
            refused,
            shed,
            limited,
            expired,
        }
    }

    fn store(&self, s: Stats) {
        let values = [
            s.forwarded,
            s.dropped,
            s.stalls,
            s.unmatched,
            s.undelivered,
            s.oversize,
            s.refused,
            s.shed,
            s.limited,
            s.expired,
        ];
        for (a, v) in self.values.iter().zip(values) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

/// Counters, drop warnings and statistics reports, shared by both engines.
struct Reporter {
    stats: Stats,
    reported: Stats,
    next_report: Option<Instant>,
    interval: Duration,
    name: String,
    last_warn: Option<Instant>,
    dropped_at_warn: u64,
    /// A report was requested (see `census`).
    requested: bool,
}

impl Reporter {
    fn new(config: &Config, stats: Stats) -> Reporter {
        let interval = config.stats_interval;
        Reporter {
            stats,
            reported: stats,
            next_report: (!interval.is_zero()).then(|| Instant::now() + interval),
            interval,
            name: config.name.clone(),
            last_warn: None,
            dropped_at_warn: stats.dropped,
            requested: false,
        }
    }

    /// Logs drops since the last warning, at most every [`WARN_EVERY`].
    fn warn_if_due(&mut self, now: Instant) {
        let new = self.stats.dropped - self.dropped_at_warn;
        if new == 0 || self.last_warn.is_some_and(|t| now - t < WARN_EVERY) {
            return;
        }
        let name = &self.name;
        log::warn!(
            "backplane{}{name}: dropped {new} message(s) for subscribers whose queue was full \
             ({} dropped, {} forwarded in total)",
            if name.is_empty() { "" } else { " " },
            self.stats.dropped,
            self.stats.forwarded
        );
        self.last_warn = Some(now);
        self.dropped_at_warn = self.stats.dropped;
    }

    /// The statistics payload when a report is due and a counter changed
    /// since the last one sent; call [`Reporter::reported`] once sent.
    fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.due_value(now)
            .map(|v| banyan_component::wire::encode_value(&v))
    }

    /// [`Reporter::due`] before encoding.
    fn due_value(&mut self, now: Instant) -> Option<rmpv::Value> {
        let at = self.next_report?;
        if now < at {
            return None;
        }
        self.next_report = Some(now + self.interval);
        if self.stats == self.reported && !self.requested {
            return None;
        }
        let s = self.stats;
        let value = rmpv::Value::Map(vec![
            ("report".into(), "stats".into()),
            ("name".into(), self.name.as_str().into()),
            ("forwarded".into(), s.forwarded.into()),
            ("dropped".into(), s.dropped.into()),
            ("stalls".into(), s.stalls.into()),
            ("unmatched".into(), s.unmatched.into()),
            ("undelivered".into(), s.undelivered.into()),
            ("oversize".into(), s.oversize.into()),
            ("refused".into(), s.refused.into()),
            ("shed".into(), s.shed.into()),
            ("limited".into(), s.limited.into()),
            ("expired".into(), s.expired.into()),
        ]);
        Some(value)
    }

    fn reported(&mut self) {
        self.reported = self.stats;
        self.requested = false;
    }
}

enum Sockets {
    Native(native::Sockets),
    Libzmq(libzmq::Sockets),
}

/// A bound, not yet running backplane.
pub struct Backplane {
    sockets: Sockets,
    handle: ShutdownHandle,
    config: Config,
    publisher_port: u16,
    subscriber_port: u16,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("config", &self.config)
            .field("publisher_port", &self.publisher_port)
            .field("subscriber_port", &self.subscriber_port)
            .finish_non_exhaustive()
    }
}

enum Wake {
    Native(mio::Waker),
    Libzmq(Mutex<zmq::Socket>),
}

struct Stop {
    requested: AtomicBool,
    wake: Wake,
}

/// Stops a running backplane from any thread (cheap to clone).
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<Stop>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

impl ShutdownHandle {
    /// Asks the backplane to stop; [`Backplane::run`] then returns `Ok`.
    /// Calling it more than once, or after the backplane stopped, is harmless.
    pub fn shutdown(&self) {
        self.stop.requested.store(true, Ordering::SeqCst);
        match &self.stop.wake {
            Wake::Native(waker) => {
                if let Err(e) = waker.wake() {
                    log::warn!("backplane: cannot wake the forwarding loop: {e}");
                }
            }
            Wake::Libzmq(control) => {
                let sock = match control.lock() {
                    Ok(s) => s,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let _ = sock.send("TERMINATE", zmq::DONTWAIT);
            }
        }
    }

    fn stop_requested(&self) -> bool {
        self.stop.requested.load(Ordering::SeqCst)
    }

    /// The backplane's counters now (updated after every turn of the
    /// forwarding loop while it runs; final once [`Backplane::run`]
    /// returned).
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

impl Backplane {
    /// Binds both ports. Nothing is forwarded until [`Backplane::run`].
    ///
    /// # Errors
    /// [`Error::PortInUse`], [`Error::Listen`] / [`Error::Bind`],
    /// [`Error::Io`] / [`Error::Zmq`].
    pub fn bind(config: &Config) -> Result<Backplane> {
        let (sockets, wake, publisher_port, subscriber_port) = match config.engine {
            Engine::Native => {
                let (s, waker, p, q) = native::bind(config)?;
                (Sockets::Native(s), Wake::Native(waker), p, q)
            }
            Engine::Libzmq => {
                let (s, control, p, q) = libzmq::bind(config)?;
                (Sockets::Libzmq(s), Wake::Libzmq(control), p, q)
            }
        };
        Ok(Backplane {
            sockets,
            handle: ShutdownHandle {
                stop: Arc::new(Stop {
                    requested: AtomicBool::new(false),
                    wake,
                }),
                counters: Arc::new(Counters::default()),
            },
            config: config.clone(),
            publisher_port,
            subscriber_port,
        })
    }

    /// The port publishers connect to (the real one if 0 was asked for).
    pub fn publisher_port(&self) -> u16 {
        self.publisher_port
    }

    /// The port subscribers connect to (the real one if 0 was asked for).
    pub fn subscriber_port(&self) -> u16 {
        self.subscriber_port
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A handle that stops [`Backplane::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// The counters (see [`ShutdownHandle::stats`]).
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// A banner in the style of Banyan's.
    pub fn banner(&self) -> String {
        let line = "*".repeat(42);
        let name = if self.config.name.is_empty() {
            String::new()
        } else {
            format!("{} ", self.config.name)
        };
        let scope = if self.config.bind == "0.0.0.0" || self.config.bind == "*" {
            " (all interfaces)"
        } else {
            ""
        };
        format!(
            "\n{line}\n{name}Backplane IP address: {}{scope}\nSubscriber Port = {}\nPublisher  Port = {}\n{line}",
            self.config.bind, self.subscriber_port, self.publisher_port
        )
    }

    /// Forwards messages (and subscriptions) until shut down.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zmq`] if polling fails.
    pub fn run(self) -> Result<()> {
        let Backplane {
            sockets,
            handle,
            config,
            ..
        } = self;
        let (result, stats) = match sockets {
            Sockets::Native(s) => {
                let mut forwarder = native::Forwarder::new(s, &config, &handle);
                (forwarder.run(), forwarder.reporter.stats)
            }
            Sockets::Libzmq(s) => {
                let mut forwarder = libzmq::Forwarder::new(s, &config, &handle);
                (forwarder.run(), forwarder.reporter.stats)
            }
        };
        handle.counters.store(stats);
        result
    }

    /// Runs the backplane on a new thread. The returned guard stops it and
    /// waits for the thread when dropped (handy in tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be started.
    pub fn spawn(self) -> Result<Running> {
        let handle = self.shutdown_handle();
        let publisher_port = self.publisher_port;
        let subscriber_port = self.subscriber_port;
        let thread = std::thread::Builder::new()
            .name("backplane".into())
            .spawn(move || self.run())?;
        Ok(Running {
            handle,
            thread: Some(thread),
            publisher_port,
            subscriber_port,
        })
    }
}

/// A backplane running on its own thread; stops when dropped.
#[derive(Debug)]
pub struct Running {
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<()>>>,
    publisher_port: u16,
    subscriber_port: u16,
}

impl Running {
    /// The port publishers connect to.
    pub fn publisher_port(&self) -> u16 {
        self.publisher_port
    }

    /// The port subscribers connect to.
    pub fn subscriber_port(&self) -> u16 {
        self.subscriber_port
    }

    /// Stops the backplane and waits for its thread.
    ///
    /// # Errors
    /// What [`Backplane::run`] returned, or [`Error::Panicked`].
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    /// The backplane's counters (see [`ShutdownHandle::stats`]).
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// A handle to stop the backplane or read its counters from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    fn stop_inner(&mut self) -> Result<()> {
        self.handle.shutdown();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| Error::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_and_port_in_use() {
        for engine in [Engine::Native, Engine::Libzmq] {
            let mut config = Config::new("127.0.0.1", 0, 0);
            config.engine = engine;
            let bp = Backplane::bind(&config).unwrap();
            assert_ne!(bp.publisher_port(), 0);
            assert_ne!(bp.subscriber_port(), bp.publisher_port());
            for other in [Engine::Native, Engine::Libzmq] {
                let mut clash = Config::new("127.0.0.1", bp.publisher_port(), 0);
                clash.engine = other;
                let clash = Backplane::bind(&clash);
                assert!(
                    matches!(
                        clash,
                        Err(Error::PortInUse {
                            role: "publisher",
                            ..
                        })
                    ),
                    "{engine:?} vs {other:?}: {clash:?}"
                );
            }
            let running = bp.spawn().unwrap();
            running.stop().unwrap();
        }
    }

    /// The libzmq behaviour the forwarding loop relies on, checked rather
    /// than assumed: with `ZMQ_XPUB_NODROP` a message for a full subscriber
    /// is refused with `EAGAIN` and goes to no subscriber at all; messages
    /// nobody else's full queue matches still go through; and `POLLOUT` is
    /// always reported (so a refused message is retried, not polled for).
    #[test]
    fn xpub_nodrop_refuses_whole_messages_for_full_matching_queues() {
        let ctx = zmq::Context::new();
        let mut xpub = ctx.socket(zmq::XPUB).unwrap();
        xpub.set_sndhwm(1).unwrap();
        banyan_component::sockopt::set_xpub_nodrop(&mut xpub, true).unwrap();
        xpub.bind("inproc://nodrop-test").unwrap();
        let stuck = ctx.socket(zmq::SUB).unwrap();
        stuck.set_rcvhwm(1).unwrap();
        stuck.connect("inproc://nodrop-test").unwrap();
        stuck.set_subscribe(b"a").unwrap();
        let reader = ctx.socket(zmq::SUB).unwrap();
        reader.connect("inproc://nodrop-test").unwrap();
        reader.set_subscribe(b"a").unwrap();
        reader.set_subscribe(b"b").unwrap();
        // Two distinct subscriptions reach the XPUB ("a" only once).
        let mut subs = Vec::new();
        while subs.len() < 2 {
            assert_eq!(xpub.poll(zmq::POLLIN, 5000).unwrap(), 1, "{subs:?}");
            subs.push(xpub.recv_bytes(0).unwrap());
        }
        subs.sort();
        assert_eq!(subs, [b"\x01a".to_vec(), b"\x01b".to_vec()]);

        let send = |topic: &[u8]| match xpub.send(topic, zmq::SNDMORE | zmq::DONTWAIT) {
            Ok(()) => {
                xpub.send("payload", 0).unwrap();
                true
            }
            Err(zmq::Error::EAGAIN) => false,
            Err(e) => panic!("{e}"),
        };
        let accepted = (0..1000).take_while(|_| send(b"a")).count();
        assert!(accepted < 1000, "never refused");
        assert!(!send(b"a"), "refused again while full");
        assert_eq!(xpub.poll(zmq::POLLOUT, 0).unwrap(), 1, "POLLOUT while full");
        assert!(send(b"b"), "another topic is not held up");
        assert!(send(b"c"), "a topic nobody wants is not refused");
        // The reader got exactly the accepted "a" messages, whole, then "b".
        for expected in std::iter::repeat_n(b"a", accepted).chain([b"b"]) {
            assert_eq!(reader.poll(zmq::POLLIN, 5000).unwrap(), 1);
            let frames = reader.recv_multipart(0).unwrap();
            assert_eq!(frames, [expected.to_vec(), b"payload".to_vec()]);
        }
        assert_eq!(
            reader.poll(zmq::POLLIN, 50).unwrap(),
            0,
            "refused \"a\" leaked"
        );
    }

    #[test]
    fn bad_bind_address_is_a_clear_error() {
        let err = Backplane::bind(&Config::new("not an address", 0, 0)).unwrap_err();
        assert!(matches!(err, Error::Listen { .. }), "{err:?}");
        assert!(err.to_string().contains("not an address"));
        let mut config = Config::new("not an address", 0, 0);
        config.engine = Engine::Libzmq;
        let err = Backplane::bind(&config).unwrap_err();
        assert!(matches!(err, Error::Bind { .. }), "{err:?}");
        assert!(err.to_string().contains("not an address"));
    }
}
