//! The broker on a ZeroMQ ROUTER socket, in a thread of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Broker, Config, SendFailure, ServiceInfo, Stats, Transmit};
use crate::error::{bind, bound_port, connect, transport, Result};
use crate::wake::{self, Stoppable};

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
    /// Per-peer queue limit of the ROUTER socket in messages (default
    /// 100,000); a message to a peer whose queue is full is dropped and
    /// counted ([`Stats::dropped`]).
    pub hwm: i32,
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
            hwm: 100_000,
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
/// ZeroMQ failures.
pub fn spawn(config: SocketConfig) -> Result<Handle> {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).map_err(transport)?;
    router.set_router_mandatory(true).map_err(transport)?;
    router.set_sndhwm(config.hwm).map_err(transport)?;
    router.set_rcvhwm(config.hwm).map_err(transport)?;
    router.set_linger(0).map_err(transport)?;
    // A peer sending a message larger than a body plus headers is
    // disconnected by libzmq before it is read.
    let max = i64::try_from(config.broker.max_body.saturating_add(64 * 1024)).unwrap_or(i64::MAX);
    router.set_maxmsgsize(max).map_err(transport)?;
    bind(&router, &format!("tcp://{}:{}", config.bind, config.port))?;
    let port = bound_port(&router)?;
    let stats_pub = match &config.stats_to {
        Some(endpoint) => {
            let s = ctx.socket(zmq::PUB).map_err(transport)?;
            s.set_linger(0).map_err(transport)?;
            connect(&s, endpoint)?;
            Some(s)
        }
        None => None,
    };
    let (waker, stop) = wake::pair(&ctx)?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let thread_shared = Arc::clone(&shared);
    let thread = Stoppable::spawn("services-broker", "broker", waker, move || {
        let _ctx = ctx;
        Loop {
            broker: Broker::new(config.broker.clone()),
            router,
            stop,
            stats_pub,
            shared: thread_shared,
            config,
            last_report: None,
            last_share: None,
            last_change: Instant::now(),
        }
        .run()
    })?;
    Ok(Handle {
        port,
        shared,
        thread,
    })
}

struct Loop {
    broker: Broker,
    router: zmq::Socket,
    stop: zmq::Socket,
    stats_pub: Option<zmq::Socket>,
    shared: Arc<Mutex<Shared>>,
    config: SocketConfig,
    last_report: Option<(Instant, Stats)>,
    last_share: Option<Instant>,
    last_change: Instant,
}

impl Loop {
    fn run(mut self) -> Result<()> {
        log::info!("services broker listening on port {}", self.config.port);
        let result = self.serve();
        let now = Instant::now();
        self.broker.shutdown(now);
        self.flush(now);
        self.publish(now, true);
        self.share();
        // Give the last answers and DISCONNECTs a moment to leave.
        let _ = self.router.set_linger(200);
        result
    }

    fn serve(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            let timeout = match self.broker.poll_at() {
                Some(at) => {
                    let d = at.saturating_duration_since(now);
                    // Round up so the timer is due when we wake.
                    i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
                }
                None => -1,
            };
            let timeout = if self.stats_pub.is_some() {
                let report =
                    i64::try_from(self.config.stats_interval.as_millis()).unwrap_or(i64::MAX);
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
            if idle && self.last_share.is_none_or(|t| t < self.last_change) {
                self.share();
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
                            self.broker.handle(peer, rest, now);
                        }
                        self.last_change = now;
                        self.flush(now);
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(transport(e)),
                }
            }
            let now = Instant::now();
            self.broker.poll(now);
            self.flush(now);
            self.last_change = now;
            self.publish(now, false);
            if self
                .last_share
                .is_none_or(|t| now.duration_since(t) >= SHARE_EVERY)
            {
                self.share();
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.broker.poll_transmit() {
            if let Err(why) = send(&self.router, &t) {
                log::debug!("services: cannot send to {}: {why:?}", super::hex(&t.peer));
                self.broker.send_failed(&t, why, now);
            }
        }
    }

    fn share(&mut self) {
        self.last_share = Some(Instant::now());
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.stats = self.broker.stats();
        shared.services = self.broker.services();
    }

    fn publish(&mut self, now: Instant, last: bool) {
        let Some(socket) = &self.stats_pub else {
            return;
        };
        let stats = self.broker.stats();
        let due = match self.last_report {
            None => true,
            Some((at, before)) => {
                before != stats && (last || now.duration_since(at) >= self.config.stats_interval)
            }
        };
        if !due {
            return;
        }
        #[derive(serde::Serialize)]
        struct Report<'a> {
            report: &'static str,
            name: &'a str,
            #[serde(flatten)]
            stats: Stats,
        }
        let report = Report {
            report: "services",
            name: &self.config.name,
            stats,
        };
        if let Ok(payload) = rmp_serde::to_vec_named(&report) {
            let _ = socket.send_multipart([STATS_TOPIC.as_bytes(), &payload[..]], zmq::DONTWAIT);
        }
        self.last_report = Some((now, stats));
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
