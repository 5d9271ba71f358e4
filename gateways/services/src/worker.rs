//! Serving a service: [`serve`] registers with the broker and calls a
//! handler for each request, one at a time, in a thread of its own.
//! Run several workers (threads or processes) for one service to share its
//! load; the broker gives each request to the one that has waited longest.
//!
//! The worker keeps its registration alive without help:
//! - it sends HEARTBEAT every [`Config::heartbeat`] (default 1 s) — also
//!   while the handler runs, from a helper thread, so the broker can tell a
//!   slow handler from a dead process;
//! - when the broker has been silent for [`Config::liveness`] intervals, or
//!   sends DISCONNECT (it was restarted and does not know this worker), the
//!   worker closes its socket and registers again on a new one, waiting
//!   [`Config::reconnect_min`] at first and doubling up to
//!   [`Config::reconnect_max`] while the broker stays away.
//!
//! A handler that returns `Err` (or panics) answers the client with a
//! `worker_error` carrying the message; the worker goes on.
//!
//! ```no_run
//! use banyan_services::worker::{serve, Config, Request, Failure};
//!
//! let handle = serve(Config::default(), "add", |req: &Request| {
//!     let (a, b): (i64, i64) = req.decode().map_err(|e| Failure::new(e.to_string()))?;
//!     Ok(rmpv::Value::from(a + b))
//! })?;
//! // … later
//! let stats = handle.shutdown();
//! # Ok::<(), banyan_services::Error>(())
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banyan_component::Transport;

use crate::error::{transport, Error, Result};
use crate::link::{self, Link, LinkOptions};
use crate::proto::{self, worker_cmd, ToWorker};
use crate::wake::{self, Waker};

/// How a worker connects and stays registered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The broker (default `tcp://127.0.0.1:43126`).
    pub endpoint: String,
    /// Heartbeat interval for both directions (default 1 s).
    pub heartbeat: Duration,
    /// Intervals without a message from the broker after which it is
    /// considered gone (default 3).
    pub liveness: u32,
    /// First wait before registering again (default 100 ms).
    pub reconnect_min: Duration,
    /// Longest wait between registration attempts (default 5 s).
    pub reconnect_max: Duration,
    /// Requests the broker may hand this worker before it answers the
    /// first (default 1: the Guide's least-recently-used rule, fairest for
    /// slow handlers). A fast handler serves more with a larger credit:
    /// requests wait in its socket instead of a round trip each
    /// (docs/services.md §3.4). The handler still runs one
    /// request at a time.
    pub credit: u16,
    /// The transport of the connection to the broker (default
    /// [`Transport::from_env`]: `BANYAN_TRANSPORT`, else native; only
    /// `tcp://` endpoints go native; see the
    /// [client's](crate::client#transports)).
    pub transport: Transport,
}

impl Default for Config {
    fn default() -> Self {
        Config::new(link::default_endpoint())
    }
}

impl Config {
    /// The defaults, for the broker at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            credit: 1,
            transport: Transport::from_env(),
        }
    }
}

/// A request as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The body: one MessagePack value (checked by the broker).
    pub body: Vec<u8>,
    /// Time left before the client's deadline when the request arrived.
    pub budget: Duration,
}

impl Request {
    /// Decodes the body as a dynamic value.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the body is not MessagePack.
    pub fn value(&self) -> Result<rmpv::Value> {
        rmpv::decode::read_value_with_max_depth(
            &mut &self.body[..],
            banyan_component::wire::MAX_DEPTH,
        )
        .map_err(|e| Error::Invalid(format!("request is not msgpack: {e}")))
    }

    /// Decodes the body into a serde type.
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not match `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(rmp_serde::from_slice(&self.body)?)
    }
}

/// A handler's failure: the text goes to the client in a `worker_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    detail: String,
}

impl Failure {
    /// A failure with this explanation.
    pub fn new(detail: impl Into<String>) -> Failure {
        Failure {
            detail: detail.into(),
        }
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Failure {}

/// Worker counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests handled.
    pub requests: u64,
    /// Replies sent.
    pub replies: u64,
    /// Handler failures (FAIL sent), panics included.
    pub failures: u64,
    /// Registrations (READY sent), the first included.
    pub registrations: u64,
    /// Times the broker was lost (silence or DISCONNECT).
    pub reconnects: u64,
    /// Messages from the broker that could not be parsed.
    pub malformed: u64,
    /// Replies (and failures) not sent because the send queue to the
    /// broker was full, and messages the transport lost (cut off by a
    /// broken connection or over the size limit: native transport only).
    /// Their clients get a timeout or a retry.
    pub lost: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    replies: AtomicU64,
    failures: AtomicU64,
    registrations: AtomicU64,
    reconnects: AtomicU64,
    malformed: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            requests: g(&self.requests),
            replies: g(&self.replies),
            failures: g(&self.failures),
            registrations: g(&self.registrations),
            reconnects: g(&self.reconnects),
            malformed: g(&self.malformed),
            lost: g(&self.lost),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// State shared with the busy-heartbeat thread.
struct Shared {
    socket: Mutex<Option<Link>>,
    /// Set while the handler runs (the socket lock is free then).
    busy: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

/// A running worker. Dropping it stops the worker too.
#[derive(Debug)]
pub struct Handle {
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Handle {
    /// The counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stops the worker after the request in hand (it sends DISCONNECT, so
    /// the broker stops sending it requests at once). Returns the counters.
    pub fn shutdown(mut self) -> Stats {
        let _ = self.stop_thread();
        self.stats()
    }

    fn stop_thread(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Transport(std::io::Error::other(
                "the worker thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop_thread();
    }
}

/// Serves `service` with a handler returning a dynamic value, in a new
/// thread (see the [module docs](self)).
///
/// # Errors
/// [`Error::Invalid`] for a bad or reserved service name,
/// [`Error::Connect`] for a malformed endpoint.
pub fn serve<F>(config: Config, service: &str, mut handler: F) -> Result<Handle>
where
    F: FnMut(&Request) -> Result<rmpv::Value, Failure> + Send + 'static,
{
    serve_raw(config, service, move |req: &Request| {
        let value = handler(req)?;
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &value);
        Ok(out)
    })
}

/// Serves `service` with a handler returning MessagePack bytes (one value;
/// the broker turns anything else into a `worker_error`).
///
/// # Errors
/// As [`serve`].
pub fn serve_raw<F>(config: Config, service: &str, handler: F) -> Result<Handle>
where
    F: FnMut(&Request) -> Result<Vec<u8>, Failure> + Send + 'static,
{
    proto::service_name(service.as_bytes())
        .map_err(|_| Error::Invalid(format!("bad service name {service:?}")))?;
    if service.starts_with(proto::RESERVED_PREFIX) {
        return Err(Error::Invalid(format!(
            "service names starting with {:?} are the broker's",
            proto::RESERVED_PREFIX
        )));
    }
    let ctx = zmq::Context::new();
    // Check the endpoint now rather than in the thread.
    crate::link::check(config.transport, &config.endpoint, &ctx)?;
    let (waker, wake_rx) = wake::pair(&ctx)?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut run = Run {
        ctx,
        config,
        service: service.to_owned(),
        handler,
        wake: wake_rx,
        counters: Arc::clone(&counters),
        stop: Arc::clone(&stop),
        shared: Arc::new(Shared {
            socket: Mutex::new(None),
            busy: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        }),
    };
    let thread = std::thread::Builder::new()
        .name(format!("worker-{service}"))
        .spawn(move || run.run())
        .map_err(Error::Transport)?;
    Ok(Handle {
        counters,
        stop,
        waker,
        thread: Some(thread),
    })
}

struct Run<F> {
    ctx: zmq::Context,
    config: Config,
    service: String,
    handler: F,
    wake: zmq::Socket,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

/// Why a session with the broker ended.
enum End {
    Stop,
    /// Register again after this wait.
    Reconnect(Duration),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

impl<F> Run<F>
where
    F: FnMut(&Request) -> Result<Vec<u8>, Failure>,
{
    fn run(&mut self) -> Result<()> {
        let hb_thread = {
            let shared = Arc::clone(&self.shared);
            let hb = self.config.heartbeat;
            std::thread::Builder::new()
                .name(format!("worker-{}-hb", self.service))
                .spawn(move || busy_heartbeats(&shared, hb))
                .map_err(Error::Transport)?
        };
        let mut backoff = self.config.reconnect_min;
        let result = loop {
            match self.session(&mut backoff) {
                Ok(End::Stop) => break Ok(()),
                Ok(End::Reconnect(wait)) => {
                    bump(&self.counters.reconnects);
                    if self.sleep(wait)? {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        *lock(&self.shared.stop) = true;
        self.shared.stop_cv.notify_all();
        let _ = hb_thread.join();
        result
    }

    /// Waits `d` unless stopped first; returns whether stopped.
    fn sleep(&self, d: Duration) -> Result<bool> {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut items = [self.wake.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, ms).map_err(transport)?;
        Ok(self.stop.load(Ordering::SeqCst))
    }

    /// One registration: a new socket, READY, then requests until the
    /// broker is lost or the worker stops.
    fn session(&mut self, backoff: &mut Duration) -> Result<End> {
        let mut socket = Link::connect(
            self.config.transport,
            &self.config.endpoint,
            &self.ctx,
            LinkOptions {
                // libzmq's defaults, which the worker always had.
                hwm: 1000,
                reconnect: Duration::from_millis(100),
                reconnect_max: Duration::from_millis(100),
            },
        )?;
        let hb = self.config.heartbeat;
        // A new connection's queue has room.
        socket.send(&[
            &proto::ready_header(ms(hb), true, self.config.credit.max(1))[..],
            self.service.as_bytes(),
        ])?;
        bump(&self.counters.registrations);
        *lock(&self.shared.socket) = Some(socket);
        let end = self.serve_session(backoff);
        // Drop the socket (unsent messages go with it), after up to 100 ms
        // for a DISCONNECT when stopping.
        let mut guard = lock(&self.shared.socket);
        if let (Ok(End::Stop), Some(s)) = (&end, guard.as_mut()) {
            let frames = proto::disconnect("");
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let _ = s.send_last(&frames, Duration::from_millis(100));
        }
        if let Some(s) = guard.as_ref() {
            self.counters.lost.fetch_add(s.lost(), Ordering::Relaxed);
        }
        *guard = None;
        end
    }

    fn serve_session(&mut self, backoff: &mut Duration) -> Result<End> {
        let hb = self.config.heartbeat;
        let silence = hb * self.config.liveness;
        let mut broker_expiry = Instant::now() + silence;
        let mut next_hb = Instant::now() + hb;
        let mut guard = lock(&self.shared.socket);
        let mut frames = Vec::new();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(End::Stop);
            }
            let Some(socket) = guard.as_mut() else {
                return Ok(End::Reconnect(*backoff));
            };
            let now = Instant::now();
            if now >= broker_expiry {
                log::info!(
                    "worker {}: broker silent for {silence:?}, registering again",
                    self.service
                );
                let wait = *backoff;
                *backoff = (*backoff * 2).min(self.config.reconnect_max);
                return Ok(End::Reconnect(wait));
            }
            if now >= next_hb {
                // A full send queue means the broker is not reading: the
                // heartbeat logic will notice.
                socket.send(&[&proto::heartbeat()])?;
                next_hb = now + hb;
            }
            // A request already queued (credit > 1 keeps several coming) is
            // taken without a poll; the poll waits only when there is none.
            if !socket.recv(&mut frames)? {
                socket.wait(next_hb.min(broker_expiry), Some(&self.wake))?;
                continue;
            }
            let now = Instant::now();
            broker_expiry = now + silence;
            *backoff = self.config.reconnect_min;
            match ToWorker::parse(&frames) {
                Ok(ToWorker::Heartbeat) => {}
                Ok(ToWorker::Disconnect { reason }) => {
                    log::info!(
                        "worker {}: broker disconnected us ({reason}), registering again",
                        self.service
                    );
                    return Ok(End::Reconnect(self.config.reconnect_min));
                }
                Ok(ToWorker::Request {
                    token,
                    budget_ms,
                    body,
                }) => {
                    bump(&self.counters.requests);
                    let req = Request {
                        body: body.to_vec(),
                        budget: Duration::from_millis(u64::from(budget_ms)),
                    };
                    // Release the socket to the busy-heartbeat thread while
                    // the handler runs.
                    self.shared.busy.store(true, Ordering::SeqCst);
                    drop(guard);
                    let handler = &mut self.handler;
                    let outcome = catch_unwind(AssertUnwindSafe(|| handler(&req)))
                        .unwrap_or_else(|_| Err(Failure::new("the handler panicked")));
                    guard = lock(&self.shared.socket);
                    self.shared.busy.store(false, Ordering::SeqCst);
                    let Some(socket) = guard.as_mut() else {
                        return Ok(End::Reconnect(*backoff));
                    };
                    let sent = match outcome {
                        Ok(reply) => {
                            bump(&self.counters.replies);
                            let h = proto::token_header(worker_cmd::REPLY, token);
                            socket.send(&[&h[..], &reply[..]])?
                        }
                        Err(f) => {
                            bump(&self.counters.failures);
                            let h = proto::token_header(worker_cmd::FAIL, token);
                            socket.send(&[&h[..], f.detail.as_bytes()])?
                        }
                    };
                    if !sent {
                        // The broker is not reading: the heartbeat logic
                        // will notice; the client gets a timeout.
                        bump(&self.counters.lost);
                    }
                    next_hb = Instant::now() + hb;
                }
                Err(e) => {
                    bump(&self.counters.malformed);
                    log::warn!(
                        "worker {}: malformed message from the broker: {e}",
                        self.service
                    );
                }
            }
        }
    }
}

/// Sends HEARTBEAT every `hb` while the handler runs (the main thread does
/// it otherwise). Wakes once per interval; costs nothing per request.
fn busy_heartbeats(shared: &Shared, hb: Duration) {
    let mut stop = lock(&shared.stop);
    loop {
        if *stop {
            return;
        }
        let (s, _) = shared
            .stop_cv
            .wait_timeout(stop, hb)
            .unwrap_or_else(|p| p.into_inner());
        stop = s;
        if *stop || !shared.busy.load(Ordering::SeqCst) {
            continue;
        }
        if let Ok(mut socket) = shared.socket.try_lock() {
            if shared.busy.load(Ordering::SeqCst) {
                if let Some(socket) = socket.as_mut() {
                    let _ = socket.send(&[&proto::heartbeat()]);
                }
            }
        }
    }
}
