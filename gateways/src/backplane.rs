//! The backplane: a ZeroMQ XSUB/XPUB forwarder, wire-compatible with Python
//! Banyan's.
//!
//! Publishers connect to the **publisher port** (43124, an XSUB socket here),
//! subscribers to the **subscriber port** (43125, XPUB). Unlike Python's
//! backplane (a SUB socket subscribed to everything), subscriptions travel
//! upstream, so publishers only send what someone wants; the messages
//! themselves are forwarded unchanged, frame by frame, and never inspected.
//!
//! By default it listens on all interfaces (`0.0.0.0`), so Raspberry Pi
//! gateways and laptops on the LAN can reach it without configuration.
//!
//! # Queues, backpressure and counted loss
//! Each subscriber gets a queue of up to [`Config::hwm`] messages in the
//! backplane (default 1,000,000); the publisher-side queue has the same limit
//! (`hwm = 0` means unlimited: memory then grows with the backlog). Nothing is
//! dropped silently. The subscriber socket uses `ZMQ_XPUB_NODROP`, so a
//! message for a subscriber whose queue is full is refused rather than lost:
//!
//! 1. The backplane stops reading from publishers (backpressure: their own
//!    send queues fill, and a full one is counted by their
//!    [`crate::component::Stats::send_dropped`]) and retries the message for
//!    up to [`Config::stall`] (default 1 s), counted in [`Stats::stalls`].
//! 2. If the queue is still full, the message is dropped for **every**
//!    subscriber it was going to (ZeroMQ delivers a message to all matching
//!    subscribers or to none), counted in [`Stats::dropped`], and the
//!    message's topic is *in overflow*: further messages on that topic that
//!    cannot be queued at once are dropped at once (counted) instead of
//!    stalling again, so one stuck subscriber cannot throttle everyone to a
//!    message per stall. Messages on other topics keep flowing (a subscriber
//!    stuck on several topics costs one stall per topic).
//! 3. A topic's overflow ends as soon as a message on it is queued again
//!    (the subscriber caught up or left), or after a whole [`Config::stall`]
//!    without a refused message on it.
//!
//! Drops are logged at `warn` (at most every 5 s), readable with
//! [`Backplane::stats`] / [`ShutdownHandle::stats`], and published by the
//! backplane itself on topic [`STATS_TOPIC`] every [`Config::stats_interval`]
//! when a counter changed: `{"report": "stats", "name": …, "forwarded": …,
//! "dropped": …, "stalls": …}`. Messages are forwarded whole: all frames of a
//! multipart message are read before the first is sent, and a drop drops all
//! of them.
//!
//! ```no_run
//! use banyan_gateways::backplane::{Backplane, Config};
//! let backplane = Backplane::bind(&Config::default())?;
//! println!("{}", backplane.banner());
//! backplane.run()?; // until shutdown_handle().shutdown()
//! # Ok::<(), banyan_gateways::backplane::Error>(())
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Topic of the backplane's own statistics messages.
pub const STATS_TOPIC: &str = "banyan_backplane";
/// Default for [`Config::stall`].
pub const DEFAULT_STALL: Duration = Duration::from_secs(1);
/// Default for [`Config::stats_interval`].
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Messages read from publishers per poll at most (before subscriptions and
/// the shutdown request are looked at again).
const BATCH: usize = 1024;
/// How often a refused message is retried while stalled. (An XPUB socket
/// always reports `POLLOUT` in libzmq 4.3, so there is nothing to wait on.)
const RETRY: Duration = Duration::from_millis(1);
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
    /// Binding failed for another reason: check `--bind` (an IP address of
    /// this machine, or `0.0.0.0` for all interfaces).
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// What ZeroMQ said.
        source: zmq::Error,
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
    /// Per-connection queue limit in messages; 0 = unlimited. Default
    /// 1,000,000.
    pub hwm: i32,
    /// How long a message for a subscriber whose queue is full is retried
    /// (while publishers are not read) before it is dropped and counted.
    /// Default 1 s ([`DEFAULT_STALL`]).
    pub stall: Duration,
    /// How often the counters are published on [`STATS_TOPIC`] (only when
    /// one changed). Default 5 s; zero = never.
    pub stats_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".into(),
            publisher_port: crate::component::PUBLISHER_PORT,
            subscriber_port: crate::component::SUBSCRIBER_PORT,
            name: String::new(),
            hwm: crate::component::DEFAULT_HWM,
            stall: DEFAULT_STALL,
            stats_interval: DEFAULT_STATS_INTERVAL,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages (all their frames) passed from publishers to subscribers.
    pub forwarded: u64,
    /// Messages dropped because a subscriber's queue stayed full.
    pub dropped: u64,
    /// Times forwarding paused because a subscriber's queue was full.
    pub stalls: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    stalls: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }

    fn store(&self, stats: Stats) {
        self.forwarded.store(stats.forwarded, Ordering::Relaxed);
        self.dropped.store(stats.dropped, Ordering::Relaxed);
        self.stalls.store(stats.stalls, Ordering::Relaxed);
    }
}

/// A bound, not yet running backplane.
pub struct Backplane {
    frontend: zmq::Socket,
    backend: zmq::Socket,
    control: zmq::Socket,
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

/// Stops a running backplane from any thread (cheap to clone).
#[derive(Clone)]
pub struct ShutdownHandle {
    control: Arc<Mutex<zmq::Socket>>,
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
        let sock = match self.control.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = sock.send("TERMINATE", zmq::DONTWAIT);
    }

    /// The backplane's counters now (updated at least every few
    /// milliseconds while it runs; final once [`Backplane::run`] returned).
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

fn bind_socket(socket: &zmq::Socket, role: &'static str, address: &str, port: u16) -> Result<u16> {
    let endpoint = if port == 0 {
        format!("tcp://{address}:*")
    } else {
        format!("tcp://{address}:{port}")
    };
    socket.bind(&endpoint).map_err(|source| match source {
        zmq::Error::EADDRINUSE => Error::PortInUse {
            role,
            port,
            address: address.to_owned(),
        },
        source => Error::Bind { endpoint, source },
    })?;
    let bound = socket
        .get_last_endpoint()?
        .map_err(|_| Error::Zmq(zmq::Error::EINVAL))?;
    bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(Error::Zmq(zmq::Error::EINVAL))
}

impl Backplane {
    /// Binds both ports. Nothing is forwarded until [`Backplane::run`].
    ///
    /// # Errors
    /// [`Error::PortInUse`], [`Error::Bind`], [`Error::Zmq`].
    pub fn bind(config: &Config) -> Result<Backplane> {
        let context = zmq::Context::new();
        let frontend = context.socket(zmq::XSUB)?;
        frontend.set_rcvhwm(config.hwm)?;
        frontend.set_linger(0)?;
        let mut backend = context.socket(zmq::XPUB)?;
        backend.set_sndhwm(config.hwm)?;
        backend.set_linger(0)?;
        crate::sockopt::set_xpub_nodrop(&mut backend, true)?;
        let publisher_port =
            bind_socket(&frontend, "publisher", &config.bind, config.publisher_port)?;
        let subscriber_port =
            bind_socket(&backend, "subscriber", &config.bind, config.subscriber_port)?;
        let endpoint = format!(
            "inproc://banyan-backplane-control-{}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let control = context.socket(zmq::PAIR)?;
        control.set_linger(0)?;
        control.bind(&endpoint)?;
        let steer = context.socket(zmq::PAIR)?;
        steer.set_linger(0)?;
        steer.connect(&endpoint)?;
        Ok(Backplane {
            frontend,
            backend,
            control,
            handle: ShutdownHandle {
                control: Arc::new(Mutex::new(steer)),
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
    /// [`Error::Zmq`] if a socket fails.
    pub fn run(self) -> Result<()> {
        let mut forwarder = Forwarder::new(&self);
        let result = forwarder.run();
        forwarder.bp.handle.counters.store(forwarder.stats);
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

/// The forwarding loop of one [`Backplane::run`].
struct Forwarder<'a> {
    bp: &'a Backplane,
    stats: Stats,
    /// Frames of the message being forwarded.
    parts: Vec<zmq::Message>,
    /// `parts` holds a refused message, retried until this deadline.
    stalled_until: Option<Instant>,
    /// Topics in overflow (a stall on them timed out), with the time a
    /// message on them was last refused: refused messages on these topics
    /// are dropped at once, until one is queued again or none was refused
    /// for a whole stall time.
    overflow: HashMap<Vec<u8>, Instant>,
    next_report: Option<Instant>,
    reported: Stats,
    last_warn: Option<Instant>,
    dropped_at_warn: u64,
}

fn ms_until(deadline: Instant, now: Instant) -> i64 {
    let ms = deadline.saturating_duration_since(now).as_millis();
    // Round up so the deadline has passed when poll returns.
    i64::try_from(ms).unwrap_or(i64::MAX).saturating_add(1)
}

impl<'a> Forwarder<'a> {
    fn new(bp: &'a Backplane) -> Forwarder<'a> {
        let interval = bp.config.stats_interval;
        let stats = bp.handle.stats();
        Forwarder {
            bp,
            stats,
            parts: Vec::with_capacity(4),
            stalled_until: None,
            overflow: HashMap::new(),
            next_report: (!interval.is_zero()).then(|| Instant::now() + interval),
            reported: stats,
            last_warn: None,
            dropped_at_warn: stats.dropped,
        }
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            let timeout = match (self.stalled_until, self.next_report) {
                (Some(_), _) => ms_until(now + RETRY, now),
                (None, Some(at)) => ms_until(at, now),
                (None, None) => -1,
            };
            let frontend_events = if self.stalled_until.is_some() {
                // Backpressure: publishers are not read while stalled.
                zmq::PollEvents::empty()
            } else {
                zmq::POLLIN
            };
            let mut items = [
                self.bp.control.as_poll_item(zmq::POLLIN),
                self.bp.backend.as_poll_item(zmq::POLLIN),
                self.bp.frontend.as_poll_item(frontend_events),
            ];
            match zmq::poll(&mut items, timeout) {
                Ok(_) => {}
                // A signal interrupted the poll (e.g. the SIGINT that will
                // shut us down): carry on; TERMINATE is still queued.
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let [control, backend, frontend] = items.map(|i| i.is_readable());
            if control && self.terminate_requested()? {
                if self.stalled_until.take().is_some() {
                    // The refused message dies with the backplane: count it.
                    self.stats.dropped += 1;
                }
                return Ok(());
            }
            if backend {
                self.forward_subscriptions()?;
            }
            let now = Instant::now();
            if let Some(until) = self.stalled_until {
                self.retry(until, now)?;
            } else if frontend {
                self.forward_batch(now)?;
            }
            self.report(now);
            self.bp.handle.counters.store(self.stats);
        }
    }

    fn terminate_requested(&self) -> Result<bool> {
        loop {
            match self.bp.control.recv_bytes(zmq::DONTWAIT) {
                Ok(command) if command == b"TERMINATE" => return Ok(true),
                Ok(_) => {}
                Err(zmq::Error::EAGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Subscriptions and unsubscriptions go upstream to the publishers.
    fn forward_subscriptions(&self) -> Result<()> {
        for _ in 0..BATCH {
            let mut msg = zmq::Message::new();
            match self.bp.backend.recv(&mut msg, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let flags = if msg.get_more() { zmq::SNDMORE } else { 0 };
            self.bp.frontend.send(msg, flags)?;
        }
        Ok(())
    }

    /// Reads one whole message (all frames) from the publishers into
    /// `parts`; `false` if none is waiting.
    fn read_message(&mut self) -> Result<bool> {
        let mut msg = zmq::Message::new();
        match self.bp.frontend.recv(&mut msg, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.parts.clear();
        let mut more = msg.get_more();
        self.parts.push(msg);
        while more {
            // The other frames of a message arrive with the first.
            let mut msg = zmq::Message::new();
            self.bp.frontend.recv(&mut msg, 0)?;
            more = msg.get_more();
            self.parts.push(msg);
        }
        Ok(true)
    }

    /// Sends the message in `parts` if every subscriber it goes to has room
    /// (`ZMQ_XPUB_NODROP`); otherwise keeps it in `parts`.
    fn try_send(&mut self) -> Result<bool> {
        let n = self.parts.len();
        let more = if n > 1 { zmq::SNDMORE } else { 0 };
        // The first frame is sent from a copy (a topic: short, no
        // allocation) so the message is still ours if it is refused.
        match self
            .bp
            .backend
            .send(&self.parts[0][..], more | zmq::DONTWAIT)
        {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if !self.overflow.is_empty() {
            // A topic that overflowed is accepted again.
            self.overflow.remove(&self.parts[0][..]);
        }
        // The room check is made on the first frame only: the others
        // cannot be refused.
        for (i, part) in self.parts.drain(1..).enumerate() {
            let flags = if i + 2 < n { zmq::SNDMORE } else { 0 };
            self.bp.backend.send(part, flags)?;
        }
        self.parts.clear();
        self.stats.forwarded += 1;
        Ok(true)
    }

    fn forward_batch(&mut self, now: Instant) -> Result<()> {
        for _ in 0..BATCH {
            if !self.read_message()? {
                return Ok(());
            }
            if self.try_send()? {
                continue;
            }
            if let Some(last_refused) = self.overflow.get_mut(&self.parts[0][..]) {
                if now.saturating_duration_since(*last_refused) < self.bp.config.stall {
                    *last_refused = now;
                    self.drop_message(now);
                    continue;
                }
            }
            self.stats.stalls += 1;
            self.stalled_until = Some(now + self.bp.config.stall);
            return Ok(());
        }
        Ok(())
    }

    fn retry(&mut self, until: Instant, now: Instant) -> Result<()> {
        if self.try_send()? {
            self.stalled_until = None;
        } else if now >= until {
            self.stalled_until = None;
            self.overflow.insert(self.parts[0].to_vec(), now);
            self.drop_message(now);
        }
        Ok(())
    }

    fn drop_message(&mut self, now: Instant) {
        self.parts.clear();
        self.stats.dropped += 1;
        self.warn_if_due(now);
    }

    fn warn_if_due(&mut self, now: Instant) {
        let new = self.stats.dropped - self.dropped_at_warn;
        if new == 0 || self.last_warn.is_some_and(|t| now - t < WARN_EVERY) {
            return;
        }
        let name = &self.bp.config.name;
        log::warn!(
            "backplane{}{name}: dropped {new} message(s): a subscriber's queue stayed full \
             for {} ms ({} dropped, {} forwarded in total)",
            if name.is_empty() { "" } else { " " },
            self.bp.config.stall.as_millis(),
            self.stats.dropped,
            self.stats.forwarded
        );
        self.last_warn = Some(now);
        self.dropped_at_warn = self.stats.dropped;
    }

    /// Logs pending drops, and publishes the counters on [`STATS_TOPIC`]
    /// when one changed since the last report.
    fn report(&mut self, now: Instant) {
        self.warn_if_due(now);
        let Some(at) = self.next_report else { return };
        if now < at {
            return;
        }
        self.next_report = Some(now + self.bp.config.stats_interval);
        let stall = self.bp.config.stall;
        self.overflow
            .retain(|_, last_refused| now.saturating_duration_since(*last_refused) < stall);
        if self.stats == self.reported {
            return;
        }
        let value = rmpv::Value::Map(vec![
            ("report".into(), "stats".into()),
            ("name".into(), self.bp.config.name.as_str().into()),
            ("forwarded".into(), self.stats.forwarded.into()),
            ("dropped".into(), self.stats.dropped.into()),
            ("stalls".into(), self.stats.stalls.into()),
        ]);
        let payload = crate::wire::encode_value(&value);
        match crate::component::send_message(&self.bp.backend, STATS_TOPIC, &payload) {
            Ok(true) => self.reported = self.stats,
            // A subscriber to the stats topic is full: counted like any
            // other message (and the report is tried again next time).
            Ok(false) => self.stats.dropped += 1,
            Err(e) => log::warn!("backplane: cannot publish statistics: {e}"),
        }
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
        let bp = Backplane::bind(&Config::new("127.0.0.1", 0, 0)).unwrap();
        assert_ne!(bp.publisher_port(), 0);
        assert_ne!(bp.subscriber_port(), bp.publisher_port());
        let clash = Backplane::bind(&Config::new("127.0.0.1", bp.publisher_port(), 0));
        assert!(
            matches!(
                clash,
                Err(Error::PortInUse {
                    role: "publisher",
                    ..
                })
            ),
            "{clash:?}"
        );
        let running = bp.spawn().unwrap();
        running.stop().unwrap();
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
        crate::sockopt::set_xpub_nodrop(&mut xpub, true).unwrap();
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
        assert!(matches!(err, Error::Bind { .. }), "{err:?}");
        assert!(err.to_string().contains("not an address"));
    }
}
