//! The service broker: clients send requests to a service name, workers
//! register for service names, and the broker hands each request to the
//! least-recently-ready worker of its service and routes the reply back.
//!
//! [`Broker`] is the protocol as a sans-IO state machine (after the core's
//! serial link): the caller passes in each received message with the
//! sender's identity and the time ([`Broker::handle`]), calls
//! [`Broker::poll`] at [`Broker::poll_at`], and sends what
//! [`Broker::poll_transmit`] returns. It never reads a clock or touches a
//! socket, so its unit tests run on simulated time and the fuzz targets
//! drive it directly. [`spawn`] (feature `libzmq`) runs it on a ROUTER in
//! a thread of its own, next to a backplane: by default a native one that
//! speaks ZMTP in the broker's own poll loop, or libzmq's
//! ([`Engine`]).
//!
//! # Rules
//! - **Least-recently-ready**: each service keeps its idle workers in the
//!   order they became ready; a request goes to the one that has waited
//!   longest.
//! - **Never silence**: a request for a service no worker ever registered
//!   ([`ErrorCode::UnknownService`]) or whose workers are all gone
//!   ([`ErrorCode::NoWorkers`]) is answered at once with an ERROR; so is a
//!   malformed one. A request that finds every worker busy waits in the
//!   service's queue (at most [`Config::max_queue`], then
//!   [`ErrorCode::QueueFull`]) until a worker is ready or its deadline
//!   passes ([`ErrorCode::Timeout`]).
//! - **Heartbeats both ways**: each worker states its heartbeat interval in
//!   READY (clamped to [`Config::min_heartbeat`]..=[`Config::max_heartbeat`]);
//!   the broker sends HEARTBEAT at that interval and declares the worker dead
//!   after [`Config::liveness`] intervals without a message from it. A
//!   worker that does not announce [`FLAG_BUSY_HEARTBEATS`](crate::proto::FLAG_BUSY_HEARTBEATS)
//!   is given until its request's deadline plus those intervals.
//! - **Worker death mid-request**: an idempotent request is handed to the
//!   next ready worker of the service (at most [`Config::max_attempts`]
//!   dispatches, within its deadline; counted in [`Stats::retries`]); any
//!   other request is answered with [`ErrorCode::WorkerLost`].
//! - **Bounded**: requests in the broker ([`Config::max_pending`]), workers,
//!   services, body size. Beyond a bound the sender gets an ERROR or a
//!   DISCONNECT — nothing is dropped without a counter.
//!
//! # Identities and envelopes
//! A peer is identified by the opaque identity its ROUTER envelope carries.
//! A client message whose first frame is empty (a REQ socket's delimiter) is
//! accepted: the answer then starts with an empty frame too
//! ([`Transmit::delimiter`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use banyan_component::wire::Validator;
use rmpv::Value;

use crate::proto::{self, Answer, ErrorCode, FromWorker, Request};

#[cfg(feature = "libzmq")]
mod native;
#[cfg(feature = "libzmq")]
mod socket;
#[cfg(feature = "libzmq")]
pub use native::PeerStats;
#[cfg(feature = "libzmq")]
pub use socket::{spawn, Engine, Handle, SocketConfig, DEFAULT_PORT, STATS_TOPIC};

#[cfg(test)]
mod tests;

/// A peer's ZeroMQ routing identity.
pub type PeerId = Vec<u8>;

/// Limits and timing of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Shortest accepted worker heartbeat interval (default 10 ms).
    pub min_heartbeat: Duration,
    /// Longest accepted worker heartbeat interval (default 60 s).
    pub max_heartbeat: Duration,
    /// Missed heartbeat intervals after which a worker is dead (default 3).
    pub liveness: u32,
    /// Longest request timeout honoured; longer ones are shortened
    /// (default 1 hour).
    pub max_timeout: Duration,
    /// Requests waiting for a busy service, per service (default 10,000).
    pub max_queue: usize,
    /// Requests held by the broker, queued or with a worker (default 100,000).
    pub max_pending: usize,
    /// Registered workers (default 10,000).
    pub max_workers: usize,
    /// Service names remembered (default 1,024; names without workers are
    /// forgotten first).
    pub max_services: usize,
    /// Dispatches of one idempotent request when workers die under it
    /// (default 3).
    pub max_attempts: u32,
    /// Largest request or reply body in bytes (default 16 MiB).
    pub max_body: usize,
    /// Largest worker credit honoured (requests one worker holds at once;
    /// a READY asking for more gets this many; default 64).
    pub max_credit: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_heartbeat: Duration::from_millis(10),
            max_heartbeat: Duration::from_secs(60),
            liveness: 3,
            max_timeout: Duration::from_secs(3600),
            max_queue: 10_000,
            max_pending: 100_000,
            max_workers: 10_000,
            max_services: 1024,
            max_attempts: 3,
            max_body: 16 * 1024 * 1024,
            max_credit: 64,
        }
    }
}

/// The broker's counters (monotonic unless marked as a gauge). Serialized
/// as a map with these field names (`banyan.stats`, the stats report).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Well-formed client requests received (internal services included).
    pub requests: u64,
    /// REPLY answers sent to clients.
    pub replies: u64,
    /// ERROR answers sent to clients (every code, timeouts included).
    pub errors: u64,
    /// ERROR answers with [`ErrorCode::Timeout`].
    pub timeouts: u64,
    /// Workers declared dead (missed heartbeats, or unreachable).
    pub dead_workers: u64,
    /// Idempotent requests re-dispatched after their worker died.
    pub retries: u64,
    /// Messages that broke the protocol (bad frames, bad bodies, replies
    /// without a request), from clients or workers.
    pub malformed: u64,
    /// Replies that came after the request's deadline (dropped).
    pub late_replies: u64,
    /// Messages from workers the broker does not know (for example after a
    /// broker restart); each is answered with DISCONNECT.
    pub strays: u64,
    /// READY refused (reserved name, too many workers or services).
    pub refused: u64,
    /// Messages that could not be sent because the peer is gone.
    pub unroutable: u64,
    /// Messages that could not be sent because the peer's queue was full.
    pub dropped: u64,
    /// Gauge: registered workers.
    pub workers: u64,
    /// Gauge: known services.
    pub services: u64,
    /// Gauge: requests held (queued or with a worker).
    pub pending: u64,
    /// Gauge: requests waiting in service queues.
    pub queued: u64,
}

/// One message for the socket layer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer's routing identity.
    pub peer: PeerId,
    /// Send an empty delimiter frame before `frames` (REQ peers).
    pub delimiter: bool,
    /// The message.
    pub frames: Vec<Vec<u8>>,
}

/// Why a [`Transmit`] could not be sent (see [`Broker::send_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendFailure {
    /// The peer is not connected (any more).
    Unreachable,
    /// The peer's queue is full.
    Full,
}

/// What the broker knows about one service (see [`Broker::services`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service name.
    pub service: String,
    /// Registered workers.
    pub workers: u64,
    /// Workers waiting for a request.
    pub idle: u64,
    /// Requests waiting for a worker.
    pub queued: u64,
}

#[derive(Debug)]
struct Worker {
    service: String,
    /// Requests it may hold at once (its READY's credit, at most
    /// `Config::max_credit`).
    credit: u16,
    /// Tokens of the requests it holds (which may have timed out).
    held: Vec<u64>,
    /// In its service's `idle` list (it has room for a request).
    listed: bool,
    heartbeat: Duration,
    busy_heartbeats: bool,
    expiry: Instant,
    next_heartbeat: Instant,
}

#[derive(Debug, Default)]
struct Service {
    workers: usize,
    /// Idle workers, least recently ready first.
    idle: VecDeque<PeerId>,
    /// Tokens of requests waiting for a worker, oldest first.
    queue: VecDeque<u64>,
}

#[derive(Debug)]
struct Pending {
    client: PeerId,
    delimiter: bool,
    id: u64,
    service: String,
    /// Kept while queued, and while dispatched when idempotent.
    body: Vec<u8>,
    deadline: Instant,
    idempotent: bool,
    worker: Option<PeerId>,
    attempts: u32,
}

/// The broker state machine (see the [module docs](self)).
#[derive(Debug)]
pub struct Broker {
    config: Config,
    services: HashMap<String, Service>,
    workers: HashMap<PeerId, Worker>,
    pending: HashMap<u64, Pending>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_token: u64,
    next_check: Option<Instant>,
    out: VecDeque<Transmit>,
    validator: Validator,
    stats: Stats,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Broker {
    /// Creates a broker with no workers.
    pub fn new(config: Config) -> Broker {
        Broker {
            config,
            services: HashMap::new(),
            workers: HashMap::new(),
            pending: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_token: 1,
            next_check: None,
            out: VecDeque::new(),
            validator: Validator::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters, gauges filled in.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.workers = self.workers.len() as u64;
        s.services = self.services.len() as u64;
        s.pending = self.pending.len() as u64;
        s.queued = self.services.values().map(|s| s.queue.len() as u64).sum();
        s
    }

    /// Every known service, sorted by name.
    pub fn services(&self) -> Vec<ServiceInfo> {
        let mut v: Vec<ServiceInfo> = self
            .services
            .iter()
            .map(|(name, s)| ServiceInfo {
                service: name.clone(),
                workers: s.workers as u64,
                idle: s.idle.len() as u64,
                queued: s.queue.len() as u64,
            })
            .collect();
        v.sort_by(|a, b| a.service.cmp(&b.service));
        v
    }

    /// Handles one message from `peer` (the frames after its routing
    /// identity) received at `now`. Never panics, whatever the frames.
    pub fn handle<F: AsRef<[u8]>>(&mut self, peer: &[u8], frames: &[F], now: Instant) {
        let (delimiter, frames) = match frames.split_first() {
            Some((first, rest)) if first.as_ref().is_empty() => (true, rest),
            _ => (false, frames),
        };
        let sig = frames.first().and_then(|f| f.as_ref().get(..4));
        if sig == Some(&proto::CLIENT[..]) {
            self.on_client(peer, delimiter, frames, now);
        } else if sig == Some(&proto::WORKER[..]) && !delimiter {
            self.on_worker(peer, frames, now);
        } else {
            self.stats.malformed += 1;
            log::debug!("services: dropped a message without a protocol signature");
        }
    }

    /// Runs the timers due at `now`: request deadlines, worker heartbeats
    /// and worker expiry.
    pub fn poll(&mut self, now: Instant) {
        while let Some(&Reverse((at, token))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.pending.get(&token).is_some_and(|p| p.deadline == at) {
                if let Some(p) = self.pending.remove(&token) {
                    if p.worker.is_none() {
                        if let Some(s) = self.services.get_mut(&p.service) {
                            s.queue.retain(|&t| t != token);
                        }
                    }
                    self.stats.timeouts += 1;
                    let detail =
                        format!("no reply from service '{}' before the deadline", p.service);
                    self.answer_error(p.client, p.delimiter, p.id, ErrorCode::Timeout, &detail);
                }
            }
        }
        if self.next_check.is_some_and(|t| t <= now) {
            self.check_workers(now);
        }
    }

    fn check_workers(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut dead = Vec::new();
        for (peer, w) in self.workers.iter_mut() {
            if w.expiry <= now {
                dead.push(peer.clone());
                continue;
            }
            if w.next_heartbeat <= now {
                self.out.push_back(Transmit {
                    peer: peer.clone(),
                    delimiter: false,
                    frames: vec![proto::heartbeat()],
                });
                w.next_heartbeat = now + w.heartbeat;
            }
            let t = w.next_heartbeat.min(w.expiry);
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        self.next_check = next;
        for peer in dead {
            self.stats.dead_workers += 1;
            log::info!("services: worker {} missed its heartbeats", hex(&peer));
            self.remove_worker(&peer, now, Some("missed heartbeats"));
        }
    }

    /// When [`Broker::poll`] should run next (`None`: nothing scheduled).
    /// May be earlier than needed, never later.
    pub fn poll_at(&self) -> Option<Instant> {
        let d = self.deadlines.peek().map(|Reverse((at, _))| *at);
        match (d, self.next_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Reports that `transmit` (from [`Broker::poll_transmit`]) could not be
    /// sent. A worker that cannot be reached is dropped like a dead one (its
    /// request, if any, is retried or answered); a lost answer to a client is
    /// counted.
    pub fn send_failed(&mut self, transmit: &Transmit, why: SendFailure, now: Instant) {
        match why {
            SendFailure::Unreachable => self.stats.unroutable += 1,
            SendFailure::Full => self.stats.dropped += 1,
        }
        if self.workers.contains_key(&transmit.peer) {
            self.stats.dead_workers += 1;
            self.remove_worker(&transmit.peer, now, None);
        }
    }

    /// Answers every held request with [`ErrorCode::Unavailable`] and sends
    /// every worker a DISCONNECT; the broker is empty afterwards.
    pub fn shutdown(&mut self, _now: Instant) {
        let mut pending: Vec<(u64, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(t, _)| *t);
        for (_, p) in pending {
            self.answer_error(
                p.client,
                p.delimiter,
                p.id,
                ErrorCode::Unavailable,
                "the broker is shutting down",
            );
        }
        let workers: Vec<PeerId> = self.workers.drain().map(|(p, _)| p).collect();
        for peer in workers {
            self.out.push_back(Transmit {
                peer,
                delimiter: false,
                frames: proto::disconnect("broker shutting down"),
            });
        }
        self.services.clear();
        self.deadlines.clear();
        self.next_check = None;
    }

    fn answer_error(
        &mut self,
        client: PeerId,
        delimiter: bool,
        id: u64,
        code: ErrorCode,
        detail: &str,
    ) {
        self.stats.errors += 1;
        self.out.push_back(Transmit {
            peer: client,
            delimiter,
            frames: Answer::Error { id, code, detail }.emit(),
        });
    }

    fn answer_reply(&mut self, client: PeerId, delimiter: bool, id: u64, body: Vec<u8>) {
        self.stats.replies += 1;
        self.out.push_back(Transmit {
            peer: client,
            delimiter,
            frames: vec![proto::reply_header(id), body],
        });
    }

    fn check_body(&mut self, body: &[u8]) -> Result<(), String> {
        if body.len() > self.config.max_body {
            return Err(format!(
                "body of {} bytes exceeds the maximum of {}",
                body.len(),
                self.config.max_body
            ));
        }
        self.validator
            .check(body)
            .map_err(|e| format!("body is not one valid msgpack value: {e}"))
    }

    fn on_client<F: AsRef<[u8]>>(
        &mut self,
        peer: &[u8],
        delimiter: bool,
        frames: &[F],
        now: Instant,
    ) {
        let r = match Request::parse(frames) {
            Ok(r) => r,
            Err(e) => {
                self.stats.malformed += 1;
                let id = proto::request_id(frames).unwrap_or(0);
                let detail = format!("malformed request: {e}");
                self.answer_error(peer.to_vec(), delimiter, id, ErrorCode::Malformed, &detail);
                return;
            }
        };
        self.stats.requests += 1;
        let client = peer.to_vec();
        if let Err(detail) = self.check_body(r.body) {
            self.stats.malformed += 1;
            self.answer_error(client, delimiter, r.id, ErrorCode::Malformed, &detail);
            return;
        }
        if r.service.starts_with(proto::RESERVED_PREFIX) {
            self.internal(client, delimiter, &r);
            return;
        }
        let Some(service) = self.services.get(r.service) else {
            let detail = format!("no worker has registered service '{}'", r.service);
            self.answer_error(client, delimiter, r.id, ErrorCode::UnknownService, &detail);
            return;
        };
        if service.workers == 0 {
            let detail = format!("service '{}' has no workers", r.service);
            self.answer_error(client, delimiter, r.id, ErrorCode::NoWorkers, &detail);
            return;
        }
        if self.pending.len() >= self.config.max_pending
            || (service.idle.is_empty() && service.queue.len() >= self.config.max_queue)
        {
            let detail = format!("service '{}' is busy and its queue is full", r.service);
            self.answer_error(client, delimiter, r.id, ErrorCode::QueueFull, &detail);
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let timeout = Duration::from_millis(u64::from(r.timeout_ms)).min(self.config.max_timeout);
        let deadline = now + timeout;
        self.pending.insert(
            token,
            Pending {
                client,
                delimiter,
                id: r.id,
                service: r.service.to_owned(),
                body: r.body.to_vec(),
                deadline,
                idempotent: r.idempotent,
                worker: None,
                attempts: 0,
            },
        );
        self.deadlines.push(Reverse((deadline, token)));
        let Some(service) = self.services.get_mut(r.service) else {
            return;
        };
        match service.idle.pop_front() {
            Some(worker) => self.assign(token, worker, now),
            None => service.queue.push_back(token),
        }
    }

    /// Gives `token` to `worker`, just taken from its service's idle list,
    /// and lists it again (last: least recently ready first) if it still has
    /// room.
    fn assign(&mut self, token: u64, worker: PeerId, now: Instant) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.listed = false;
        }
        self.dispatch(token, worker.clone(), now);
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        if w.held.len() < usize::from(w.credit) {
            w.listed = true;
            if let Some(s) = self.services.get_mut(&w.service) {
                s.idle.push_back(worker);
            }
        }
    }

    fn internal(&mut self, client: PeerId, delimiter: bool, r: &Request<'_>) {
        #[derive(serde::Serialize)]
        struct List {
            services: Vec<ServiceInfo>,
        }
        #[derive(serde::Serialize)]
        struct Info<'a> {
            service: &'a str,
            known: bool,
            workers: u64,
            idle: u64,
            queued: u64,
        }
        let encoded = match r.service {
            proto::SERVICE_LIST => rmp_serde::to_vec_named(&List {
                services: self.services(),
            }),
            proto::SERVICE_INFO => {
                let name = rmpv::decode::read_value(&mut &r.body[..])
                    .ok()
                    .and_then(|v| match v {
                        Value::Map(m) => m.into_iter().find_map(|(k, v)| {
                            (k.as_str() == Some("service"))
                                .then(|| v.as_str().map(str::to_owned))?
                        }),
                        _ => None,
                    });
                let Some(name) = name else {
                    self.stats.malformed += 1;
                    self.answer_error(
                        client,
                        delimiter,
                        r.id,
                        ErrorCode::Malformed,
                        "banyan.service wants {\"service\": name}",
                    );
                    return;
                };
                let s = self.services.get(&name);
                rmp_serde::to_vec_named(&Info {
                    service: &name,
                    known: s.is_some(),
                    workers: s.map_or(0, |s| s.workers as u64),
                    idle: s.map_or(0, |s| s.idle.len() as u64),
                    queued: s.map_or(0, |s| s.queue.len() as u64),
                })
            }
            proto::SERVICE_STATS => rmp_serde::to_vec_named(&self.stats()),
            other => {
                let detail = format!("no internal service '{other}'");
                self.answer_error(client, delimiter, r.id, ErrorCode::UnknownService, &detail);
                return;
            }
        };
        match encoded {
            Ok(body) => self.answer_reply(client, delimiter, r.id, body),
            Err(e) => {
                let detail = format!("cannot encode the answer: {e}");
                self.answer_error(client, delimiter, r.id, ErrorCode::WorkerError, &detail);
            }
        }
    }

    fn dispatch(&mut self, token: u64, worker: PeerId, now: Instant) {
        let Some(p) = self.pending.get_mut(&token) else {
            return;
        };
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        p.attempts += 1;
        let body = if p.idempotent {
            p.body.clone()
        } else {
            std::mem::take(&mut p.body)
        };
        let budget = millis(p.deadline.saturating_duration_since(now)).max(1);
        w.held.push(token);
        w.next_heartbeat = now + w.heartbeat;
        if !w.busy_heartbeats {
            w.expiry = w
                .expiry
                .max(p.deadline + w.heartbeat * self.config.liveness);
        }
        p.worker = Some(worker.clone());
        self.out.push_back(Transmit {
            peer: worker,
            delimiter: false,
            frames: vec![proto::worker_request_header(token, budget), body],
        });
    }

    /// The worker has room (it registered, or answered a request): give it
    /// the oldest queued requests while it has room, then list it as idle
    /// if room is left. (A service's queue is empty whenever one of its
    /// workers is listed.)
    fn worker_ready(&mut self, peer: &[u8], now: Instant) {
        loop {
            let Some(w) = self.workers.get_mut(peer) else {
                return;
            };
            if w.listed || w.held.len() >= usize::from(w.credit) {
                return;
            }
            let service = w.service.clone();
            let Some(s) = self.services.get_mut(&service) else {
                return;
            };
            match s.queue.pop_front() {
                Some(token) => {
                    if self.pending.get(&token).is_some_and(|p| p.worker.is_none()) {
                        self.dispatch(token, peer.to_vec(), now);
                    }
                }
                None => {
                    s.idle.push_back(peer.to_vec());
                    w.listed = true;
                    return;
                }
            }
        }
    }

    fn on_worker<F: AsRef<[u8]>>(&mut self, peer: &[u8], frames: &[F], now: Instant) {
        let msg = match FromWorker::parse(frames) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                log::debug!("services: malformed worker message from {}: {e}", hex(peer));
                return;
            }
        };
        if let FromWorker::Ready {
            service,
            heartbeat_ms,
            busy_heartbeats,
            credit,
        } = msg
        {
            self.on_ready(peer, service, heartbeat_ms, busy_heartbeats, credit, now);
            return;
        }
        let liveness = self.config.liveness;
        let Some(w) = self.workers.get_mut(peer) else {
            if !matches!(msg, FromWorker::Disconnect { .. }) {
                self.stats.strays += 1;
                self.out.push_back(Transmit {
                    peer: peer.to_vec(),
                    delimiter: false,
                    frames: proto::disconnect("unknown worker: send READY"),
                });
            }
            return;
        };
        w.expiry = w.expiry.max(now + w.heartbeat * liveness);
        // The answer to a request this worker holds (it holds it no more).
        let mut answered = |token: u64| match w.held.iter().position(|&t| t == token) {
            Some(i) => {
                w.held.swap_remove(i);
                true
            }
            None => false,
        };
        match msg {
            FromWorker::Heartbeat | FromWorker::Ready { .. } => {}
            FromWorker::Reply { token, body } => {
                if !answered(token) {
                    self.stats.malformed += 1;
                    return;
                }
                let checked = self.check_body(body);
                match self.pending.remove(&token) {
                    Some(p) => match checked {
                        Ok(()) => self.answer_reply(p.client, p.delimiter, p.id, body.to_vec()),
                        Err(detail) => {
                            self.stats.malformed += 1;
                            let detail = format!("worker replied with a malformed body: {detail}");
                            self.answer_error(
                                p.client,
                                p.delimiter,
                                p.id,
                                ErrorCode::WorkerError,
                                &detail,
                            );
                        }
                    },
                    None => self.stats.late_replies += 1,
                }
                self.worker_ready(peer, now);
            }
            FromWorker::Fail { token, detail } => {
                if !answered(token) {
                    self.stats.malformed += 1;
                    return;
                }
                match self.pending.remove(&token) {
                    Some(p) => self.answer_error(
                        p.client,
                        p.delimiter,
                        p.id,
                        ErrorCode::WorkerError,
                        detail,
                    ),
                    None => self.stats.late_replies += 1,
                }
                self.worker_ready(peer, now);
            }
            FromWorker::Disconnect { .. } => self.remove_worker(peer, now, None),
        }
    }

    fn on_ready(
        &mut self,
        peer: &[u8],
        service: &str,
        heartbeat_ms: u32,
        busy_heartbeats: bool,
        credit: u16,
        now: Instant,
    ) {
        if self.workers.contains_key(peer) {
            self.stats.malformed += 1;
            self.remove_worker(peer, now, Some("READY from a registered worker"));
            return;
        }
        let refuse = if service.starts_with(proto::RESERVED_PREFIX) {
            Some("reserved service name")
        } else if self.workers.len() >= self.config.max_workers {
            Some("too many workers")
        } else if !self.services.contains_key(service) && !self.make_room_for_service() {
            Some("too many services")
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.stats.refused += 1;
            self.out.push_back(Transmit {
                peer: peer.to_vec(),
                delimiter: false,
                frames: proto::disconnect(reason),
            });
            return;
        }
        let heartbeat = Duration::from_millis(u64::from(heartbeat_ms))
            .clamp(self.config.min_heartbeat, self.config.max_heartbeat);
        self.services.entry(service.to_owned()).or_default().workers += 1;
        self.workers.insert(
            peer.to_vec(),
            Worker {
                service: service.to_owned(),
                credit: credit.clamp(1, self.config.max_credit.max(1)),
                held: Vec::new(),
                listed: false,
                heartbeat,
                busy_heartbeats,
                expiry: now + heartbeat * self.config.liveness,
                next_heartbeat: now + heartbeat,
            },
        );
        let t = now + heartbeat;
        self.next_check = Some(self.next_check.map_or(t, |n| n.min(t)));
        self.worker_ready(peer, now);
    }

    /// Forgets a service without workers or queue if the table is full.
    fn make_room_for_service(&mut self) -> bool {
        if self.services.len() < self.config.max_services {
            return true;
        }
        let victim = self
            .services
            .iter()
            .find(|(_, s)| s.workers == 0 && s.queue.is_empty())
            .map(|(n, _)| n.clone());
        match victim {
            Some(name) => {
                self.services.remove(&name);
                true
            }
            None => false,
        }
    }

    fn remove_worker(&mut self, peer: &[u8], now: Instant, disconnect: Option<&str>) {
        let Some(w) = self.workers.remove(peer) else {
            return;
        };
        if let Some(reason) = disconnect {
            self.out.push_back(Transmit {
                peer: peer.to_vec(),
                delimiter: false,
                frames: proto::disconnect(reason),
            });
        }
        let mut orphans = Vec::new();
        if let Some(s) = self.services.get_mut(&w.service) {
            s.workers = s.workers.saturating_sub(1);
            s.idle.retain(|p| p != peer);
            if s.workers == 0 {
                orphans.extend(s.queue.drain(..));
            }
        }
        for token in w.held {
            self.worker_lost(token, now);
        }
        for token in orphans {
            if let Some(p) = self.pending.remove(&token) {
                let detail = format!("the last worker of service '{}' left", p.service);
                self.answer_error(p.client, p.delimiter, p.id, ErrorCode::NoWorkers, &detail);
            }
        }
    }

    fn worker_lost(&mut self, token: u64, now: Instant) {
        let Some(p) = self.pending.get_mut(&token) else {
            return;
        };
        p.worker = None;
        let retry = p.idempotent
            && now < p.deadline
            && p.attempts < self.config.max_attempts
            && self.services.get(&p.service).is_some_and(|s| s.workers > 0);
        if retry {
            self.stats.retries += 1;
            let service = p.service.clone();
            if let Some(s) = self.services.get_mut(&service) {
                match s.idle.pop_front() {
                    Some(worker) => self.assign(token, worker, now),
                    None => s.queue.push_front(token),
                }
            }
        } else if let Some(p) = self.pending.remove(&token) {
            let detail = format!(
                "the worker of service '{}' died handling the request",
                p.service
            );
            self.answer_error(p.client, p.delimiter, p.id, ErrorCode::WorkerLost, &detail);
        }
    }
}

/// Hex text of an identity, for logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
