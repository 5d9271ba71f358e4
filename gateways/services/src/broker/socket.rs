//! The broker on a ROUTER socket, in a thread of its own: the native
//! ROUTER ([`super::native`], the default) or libzmq's ([`Engine::Libzmq`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::native::{self, PeerStats};
use super::{Broker, Config, SendFailure, ServiceInfo, Stats, Transmit};
use crate::error::{bind, bound_port, connect, transport, Result};
use crate::wake::{self, Stoppable, Waker};

/// The broker's default port, next to the backplane's 43124 (publishers)
/// and 43125 (subscribers).
pub const DEFAULT_PORT: u16 = 43126;

/// Topic of the stats report, the backplane's own stats topic: the report
/// is `{"report": "services", "name": …, <every Stats field>}`.
pub const STATS_TOPIC: &str = "banyan_backplane";

/// Messages handled between two looks at the timers and the stop signal.
const BATCH: usize = 1024;

/// How often the counters seen by [`Handle`] are refreshed under load.
const SHARE_EVERY: Duration = Duration::from_millis(5);

/// Which ROUTER the broker runs on: [`Engine::Native`] (the broker thread
/// speaks ZMTP itself, the default) or [`Engine::Libzmq`] (libzmq's ROUTER
/// socket). The type is shared with the backplane.
pub use banyan_zmtp::Engine;

/// Where and how to run the broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SocketConfig {
    /// Address to listen on (default `0.0.0.0`, all interfaces).
    pub bind: String,
    /// TCP port (default [`DEFAULT_PORT`]; 0 = any free port, see
    /// [`Handle::port`]).
    pub port: u16,
    /// The state machine's limits and timing.
    pub broker: Config,
    /// The ROUTER underneath (default [`Engine::Native`]).
    pub engine: Engine,
    /// Per-peer queue limit of the ROUTER socket in messages (default
    /// 100,000); a message to a peer whose queue is full is dropped and
    /// counted ([`Stats::dropped`]).
    pub hwm: i32,
    /// Native engine: per-peer queue limit in bytes as well (default
    /// 64 MiB; 0 = none).
    pub queue_bytes: usize,
    /// Native engine: connections at most (default 10,000); more are
    /// closed at once and counted ([`PeerStats::rejected`]).
    pub max_peers: usize,
    /// Native engine: a connection that has not finished the ZeroMQ
    /// handshake after this long is closed (default 10 s).
    pub handshake_timeout: Duration,
    /// Native engine: busy polling while messages arrive less than this
    /// apart (adaptive, as the backplane's `--busy-poll-us`; default zero:
    /// always sleep). It saves the broker thread's wake-up per message on
    /// machines where waking a sleeping thread is slow, at the cost of a
    /// core spinning while requests keep coming.
    pub busy_poll: Duration,
    /// Native engine: time between our ZMTP `PING`s (default 1 s; zero:
    /// none).
    pub heartbeat_interval: Duration,
    /// Native engine: a peer silent this long after a `PING` is closed
    /// (default 3 s; zero: never).
    pub heartbeat_timeout: Duration,
    /// Publish the stats report on [`STATS_TOPIC`] to this backplane
    /// publisher endpoint (e.g. `tcp://127.0.0.1:43124`); `None` = never
    /// (default).
    pub stats_to: Option<String>,
    /// How often the stats report is published when a counter changed
    /// (default 5 s).
    pub stats_interval: Duration,
    /// Name in the stats report (the backplane's name).
    pub name: String,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            bind: "0.0.0.0".into(),
            port: DEFAULT_PORT,
            broker: Config::default(),
            engine: Engine::default(),
            hwm: 100_000,
            queue_bytes: 64 << 20,
            max_peers: 10_000,
            handshake_timeout: Duration::from_secs(10),
            busy_poll: Duration::ZERO,
            heartbeat_interval: banyan_component::DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: banyan_component::DEFAULT_HEARTBEAT_TIMEOUT,
            stats_to: None,
            stats_interval: Duration::from_secs(5),
            name: String::new(),
        }
    }
}

impl SocketConfig {
    /// The default configuration on `bind`:`port`.
    pub fn new(bind: impl Into<String>, port: u16) -> SocketConfig {
        SocketConfig {
            bind: bind.into(),
            port,
            ..SocketConfig::default()
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    stats: Stats,
    peers: PeerStats,
    services: Vec<ServiceInfo>,
}

/// A running broker: its port, its counters, and the way to stop it.
/// Dropping the handle stops the broker too.
#[derive(Debug)]
pub struct Handle {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    thread: Stoppable,
}

impl Handle {
    /// The TCP port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's counters (refreshed every 5 ms while messages flow, and
    /// whenever the broker goes idle).
    pub fn stats(&self) -> Stats {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// The native ROUTER's connection counters (refreshed like
    /// [`Handle::stats`]; zero on [`Engine::Libzmq`]).
    pub fn peer_stats(&self) -> PeerStats {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).peers
    }

    /// The known services (refreshed like [`Handle::stats`]).
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .services
            .clone()
    }

    /// Whether the broker thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.is_running()
    }

    /// Stops the broker: every held request is answered with
    /// `unavailable`, every worker gets a DISCONNECT. Returns the final
    /// counters.
    ///
    /// # Errors
    /// The error that stopped the broker thread, if any.
    pub fn shutdown(mut self) -> Result<Stats> {
        self.thread.stop()?;
        Ok(self.stats())
    }
}

/// Binds the broker's ROUTER socket and runs the broker in a new thread.
///
/// Wiring it into the backplane binary: call this beside `Backplane::bind`
/// with `SocketConfig::new(bind, services_port)` and
/// `stats_to = Some("tcp://127.0.0.1:<publisher port>")`, and
/// [`Handle::shutdown`] after the backplane's `run` returns.
///
/// # Errors
/// [`Error::Bind`](crate::Error::Bind) when the port is taken, [`Error::Transport`](crate::Error::Transport) for other
/// socket failures.
pub fn spawn(config: SocketConfig) -> Result<Handle> {
    let ctx = zmq::Context::new();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let stats_pub = match &config.stats_to {
        Some(endpoint) => {
            let s = ctx.socket(zmq::PUB).map_err(transport)?;
            s.set_linger(0).map_err(transport)?;
            connect(&s, endpoint)?;
            Some(s)
        }
        None => None,
    };
    let mut core = Core {
        broker: Broker::new(config.broker.clone()),
        stats_pub,
        shared: Arc::clone(&shared),
        config,
        last_report: None,
        report_check: Instant::now(),
        last_share: None,
        last_change: Instant::now(),
        _ctx: ctx.clone(),
    };
    let (port, waker, body): (u16, Waker, Box<dyn FnOnce() -> Result<()> + Send>) =
        match core.config.engine {
            Engine::Native => {
                let (poll, waker, listener, port) = native::bind(&core.config)?;
                core.config.port = port;
                let router = native::Router::new(poll, listener, core);
                (port, Waker::Mio(waker), Box::new(move || router.run()))
            }
            Engine::Libzmq => {
                let router = ctx.socket(zmq::ROUTER).map_err(transport)?;
                router.set_router_mandatory(true).map_err(transport)?;
                router.set_sndhwm(core.config.hwm).map_err(transport)?;
                router.set_rcvhwm(core.config.hwm).map_err(transport)?;
                router.set_linger(0).map_err(transport)?;
                // A peer sending a message larger than a body plus headers
                // is disconnected by libzmq before it is read.
                let max = i64::try_from(core.config.broker.max_body.saturating_add(64 * 1024))
                    .unwrap_or(i64::MAX);
                router.set_maxmsgsize(max).map_err(transport)?;
                bind(
                    &router,
                    &format!("tcp://{}:{}", core.config.bind, core.config.port),
                )?;
                let port = bound_port(&router)?;
                core.config.port = port;
                let (waker, stop) = wake::pair(&ctx)?;
                let body = move || Loop { core, router, stop }.run();
                (port, waker, Box::new(body))
            }
        };
    let thread = Stoppable::spawn("services-broker", "broker", waker, body)?;
    Ok(Handle {
        port,
        shared,
        thread,
    })
}

/// The broker state machine and what both engines do around it: the
/// counters shared with [`Handle`], the stats report.
pub(super) struct Core {
    pub(super) broker: Broker,
    pub(super) config: SocketConfig,
    stats_pub: Option<zmq::Socket>,
    shared: Arc<Mutex<Shared>>,
    last_report: Option<(Instant, (Stats, PeerStats))>,
    /// When to look at the counters for a report next.
    report_check: Instant,
    last_share: Option<Instant>,
    last_change: Instant,
    /// Keeps the stats publisher's context.
    _ctx: zmq::Context,
}

impl Core {
    /// Something happened at `now` (the shared counters are stale).
    pub(super) fn changed(&mut self, now: Instant) {
        self.last_change = now;
    }

    /// The loop is going idle and the shared counters are stale.
    pub(super) fn idle_share_due(&self) -> bool {
        self.last_share.is_none_or(|t| t < self.last_change)
    }

    /// When the next stats report may be due.
    pub(super) fn next_report(&self) -> Option<Instant> {
        self.stats_pub.as_ref()?;
        Some(self.report_check)
    }

    /// End of a turn of the loop: report, refresh the shared counters
    /// every [`SHARE_EVERY`].
    pub(super) fn turn_done(&mut self, now: Instant, peers: PeerStats) {
        self.last_change = now;
        self.publish(now, false, peers);
        if self
            .last_share
            .is_none_or(|t| now.duration_since(t) >= SHARE_EVERY)
        {
            self.share(peers);
        }
    }

    pub(super) fn share(&mut self, peers: PeerStats) {
        self.last_share = Some(Instant::now());
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.stats = self.broker.stats();
        shared.peers = peers;
        shared.services = self.broker.services();
    }

    pub(super) fn publish(&mut self, now: Instant, last: bool, peers: PeerStats) {
        let Some(socket) = &self.stats_pub else {
            return;
        };
        let counters = (self.broker.stats(), peers);
        let due = match self.last_report {
            None => true,
            Some((at, before)) => {
                before != counters && (last || now.duration_since(at) >= self.config.stats_interval)
            }
        };
        let interval = self.config.stats_interval;
        if !due {
            if now >= self.report_check {
                self.report_check = now + interval;
            }
            return;
        }
        self.report_check = now + interval;
        #[derive(serde::Serialize)]
        struct Report<'a> {
            report: &'static str,
            name: &'a str,
            #[serde(flatten)]
            stats: Stats,
            #[serde(flatten)]
            peers: PeerStats,
        }
        let report = Report {
            report: "services",
            name: &self.config.name,
            stats: counters.0,
            peers,
        };
        if let Ok(payload) = rmp_serde::to_vec_named(&report) {
            let _ = socket.send_multipart([STATS_TOPIC.as_bytes(), &payload[..]], zmq::DONTWAIT);
        }
        self.last_report = Some((now, counters));
    }
}

/// The libzmq engine's loop.
struct Loop {
    core: Core,
    router: zmq::Socket,
    stop: zmq::Socket,
}

impl Loop {
    fn run(mut self) -> Result<()> {
        log::info!(
            "services broker (libzmq ROUTER) listening on port {}",
            self.core.config.port
        );
        let result = self.serve();
        let now = Instant::now();
        self.core.broker.shutdown(now);
        self.flush(now);
        self.core.publish(now, true, PeerStats::default());
        self.core.share(PeerStats::default());
        // Give the last answers and DISCONNECTs a moment to leave.
        let _ = self.router.set_linger(200);
        result
    }

    fn serve(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            let timeout = match self.core.broker.poll_at() {
                Some(at) => {
                    let d = at.saturating_duration_since(now);
                    // Round up so the timer is due when we wake.
                    i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
                }
                None => -1,
            };
            let timeout = if self.core.stats_pub.is_some() {
                let report =
                    i64::try_from(self.core.config.stats_interval.as_millis()).unwrap_or(i64::MAX);
                if timeout < 0 {
                    report
                } else {
                    timeout.min(report)
                }
            } else {
                timeout
            };
            let idle = !self
                .router
                .get_events()
                .map_err(transport)?
                .contains(zmq::POLLIN);
            if idle && self.core.idle_share_due() {
                self.core.share(PeerStats::default());
            }
            let mut items = [
                self.router.as_poll_item(zmq::POLLIN),
                self.stop.as_poll_item(zmq::POLLIN),
            ];
            zmq::poll(&mut items, timeout).map_err(transport)?;
            if items[1].is_readable() {
                return Ok(());
            }
            for _ in 0..BATCH {
                match self.router.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => {
                        let now = Instant::now();
                        if let Some((peer, rest)) = frames.split_first() {
                            self.core.broker.handle(peer, rest, now);
                        }
                        self.core.changed(now);
                        self.flush(now);
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(transport(e)),
                }
            }
            let now = Instant::now();
            self.core.broker.poll(now);
            self.flush(now);
            self.core.turn_done(now, PeerStats::default());
        }
    }

    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.core.broker.poll_transmit() {
            if let Err(why) = send(&self.router, &t) {
                log::debug!("services: cannot send to {}: {why:?}", super::hex(&t.peer));
                self.core.broker.send_failed(&t, why, now);
            }
        }
    }
}

/// Sends one transmit on the ROUTER (mandatory routing, never blocking).
fn send(router: &zmq::Socket, t: &Transmit) -> std::result::Result<(), SendFailure> {
    let flags = zmq::DONTWAIT | zmq::SNDMORE;
    let fail = |e: zmq::Error| match e {
        zmq::Error::EAGAIN => SendFailure::Full,
        _ => SendFailure::Unreachable,
    };
    router.send(&t.peer[..], flags).map_err(fail)?;
    if t.delimiter {
        router.send(&b""[..], flags).map_err(fail)?;
    }
    let n = t.frames.len();
    for (i, f) in t.frames.iter().enumerate() {
        let more = if i + 1 < n { zmq::SNDMORE } else { 0 };
        // After the first frame was accepted the rest cannot fail for lack
        // of room (libzmq queues whole messages).
        router.send(&f[..], zmq::DONTWAIT | more).map_err(fail)?;
    }
    Ok(())
}
