//! Calling services: blocking ([`Client::request`]) or asynchronous
//! ([`Client::send`] then [`Client::poll`] / [`Client::try_recv`]), many
//! requests in flight on one connection, answers matched by id.
//!
//! Every request has a deadline (default [`DEFAULT_TIMEOUT`], 2.5 s): when
//! it passes without an answer the request completes with
//! [`Error::Timeout`] — a call never hangs, whether the broker, the worker
//! or the network is gone. The broker is told the same budget, so it
//! answers `timeout` itself and drops the request.
//!
//! # Retries
//! Only idempotent requests are retried ([`Options::idempotent`]), as a
//! request that ran once must not run twice otherwise. With
//! [`Retry::attempts`] > 1 an idempotent request is re-sent (after
//! [`Retry::backoff`], doubling each time, under a new wire id) when the
//! broker answers with a transient error (`no_workers`, `worker_lost`,
//! `queue_full`, `unavailable`, and `unknown_service` if
//! [`Retry::unknown_service`]) or when an attempt's own deadline passes (by default the
//! timeout divided by the attempts: this is what carries a request over a
//! broker restart). All attempts share the request's deadline. A late
//! answer to an earlier attempt is ignored and counted
//! ([`Stats::late`]). Other requests get the broker's error as it is.
//!
//! # Transports
//! A [`Client`] talks to the broker on one DEALER connection, on the
//! transport [`Config::transport`] names (default: the environment's
//! `BANYAN_TRANSPORT`, as for components, else native): the native ZMTP
//! DEALER of `banyan-component` ([`banyan_component::dealer`]), which the
//! calling thread reads and writes itself, or libzmq's DEALER socket (its
//! I/O thread in between). Only `tcp://` endpoints go native; others use
//! libzmq. Both behave the same to the caller.
//!
//! # With a component
//! A [`Client`] has its own connection; use it beside a
//! `banyan_component::Component` in the same program. To wait on both, poll
//! the component's sockets and [`Client::as_raw_fd`] together, then call
//! [`Client::try_recv`] until it returns `None` (the fd is edge-triggered,
//! like every ZeroMQ fd; with the native transport it may lag the socket by
//! a few milliseconds, [`Client::poll`] does not).
//!
//! ```no_run
//! use banyan_services::client::{Client, Config, Options};
//! use std::time::Duration;
//!
//! let mut client = Client::connect(Config::default())?;
//! let reply = client.request("add", &(1, 2), Duration::from_secs(1))?;
//! println!("{:?}", reply.value());
//! // Asynchronous: many in flight.
//! let ids: Vec<_> = (0..100)
//!     .map(|i| client.send("add", &(i, i), Options::default()))
//!     .collect::<Result<_, _>>()?;
//! while client.in_flight() > 0 {
//!     if let Some(done) = client.poll(Duration::from_secs(1))? {
//!         println!("{} -> {:?}", done.id, done.result.map(|r| r.body.len()));
//!     }
//! }
//! # let _ = ids;
//! # Ok::<(), banyan_services::Error>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use banyan_component::wire::{Validator, MAX_DEPTH};
use banyan_component::Transport;

use crate::error::{Error, Result};
use crate::link::{self, Link, LinkOptions};
use crate::proto::{self, Answer, ErrorCode};

/// Default request deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);

/// How to connect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The broker (default `tcp://127.0.0.1:43126`).
    pub endpoint: String,
    /// Most requests in flight at once (default 100,000); beyond it
    /// [`Client::send`] fails with [`Error::Invalid`].
    pub max_in_flight: usize,
    /// Socket queue limit in messages each way (default 100,000).
    pub hwm: i32,
    /// The transport (default [`Transport::from_env`]: `BANYAN_TRANSPORT`,
    /// else native; see the [module docs](self#transports)).
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
            max_in_flight: 100_000,
            hwm: 100_000,
            transport: Transport::from_env(),
        }
    }
}

/// When to re-send an idempotent request (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Sends in all, the first included (1 = never retry).
    pub attempts: u32,
    /// Wait before the first re-send after an error; doubles with every
    /// further re-send.
    pub backoff: Duration,
    /// Deadline of one attempt; `None` = the timeout divided by `attempts`.
    pub attempt_timeout: Option<Duration>,
    /// Also retry after `unknown_service` (default false: a misspelt name
    /// fails at once). Turn on to ride over a broker restart, when the
    /// workers have not registered with the new broker yet.
    pub unknown_service: bool,
}

impl Retry {
    /// Never retry.
    pub const NONE: Retry = Retry {
        attempts: 1,
        backoff: Duration::ZERO,
        attempt_timeout: None,
        unknown_service: false,
    };

    /// `attempts` sends, `backoff` apart after a transient error.
    pub fn new(attempts: u32, backoff: Duration) -> Retry {
        Retry {
            attempts: attempts.max(1),
            backoff,
            attempt_timeout: None,
            unknown_service: false,
        }
    }

    /// The same, also retrying after `unknown_service`.
    pub fn with_unknown_service(self) -> Retry {
        Retry {
            unknown_service: true,
            ..self
        }
    }
}

impl Default for Retry {
    /// Three attempts, 50 ms backoff.
    fn default() -> Self {
        Retry::new(3, Duration::from_millis(50))
    }
}

/// Per-request options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The deadline, from the call (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// The request may run more than once: the broker re-dispatches it when
    /// its worker dies, and the client applies [`Options::retry`]. Default
    /// false.
    pub idempotent: bool,
    /// Retry policy, used only when idempotent (default [`Retry::default`]).
    pub retry: Retry,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            idempotent: false,
            retry: Retry::default(),
        }
    }
}

impl Options {
    /// A non-idempotent request with this deadline.
    pub fn new(timeout: Duration) -> Options {
        Options {
            timeout,
            ..Options::default()
        }
    }

    /// The same, idempotent, retried as `retry` says.
    pub fn idempotent(self, retry: Retry) -> Options {
        Options {
            idempotent: true,
            retry,
            ..self
        }
    }
}

/// A reply body (one MessagePack value, checked by the broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The MessagePack bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// Decodes the body as a dynamic value.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the body is not MessagePack (the broker checks
    /// bodies, so only a non-conforming broker can cause this).
    pub fn value(&self) -> Result<rmpv::Value> {
        rmpv::decode::read_value_with_max_depth(&mut &self.body[..], MAX_DEPTH)
            .map_err(|e| Error::Invalid(format!("reply is not msgpack: {e}")))
    }

    /// Decodes the body into a serde type.
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not match `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(rmp_serde::from_slice(&self.body)?)
    }
}

/// Identifies an asynchronous request (stable across its retries).
pub type RequestId = u64;

/// A finished request.
#[derive(Debug)]
pub struct Completion {
    /// What [`Client::send`] returned.
    pub id: RequestId,
    /// The reply, or why there is none.
    pub result: Result<Reply>,
    /// Sends made (more than 1 after retries).
    pub attempts: u32,
    /// Time from [`Client::send`] to the answer.
    pub elapsed: Duration,
}

/// Client counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests made (retries not included).
    pub requests: u64,
    /// Completed with a reply.
    pub replies: u64,
    /// Completed with an error from the broker.
    pub errors: u64,
    /// Completed with [`Error::Timeout`] (no answer in time).
    pub timeouts: u64,
    /// Re-sends of idempotent requests.
    pub retries: u64,
    /// Answers for requests already completed (or for earlier attempts).
    pub late: u64,
    /// Messages from the broker that could not be parsed.
    pub malformed: u64,
    /// Messages the transport lost: cut off by a broken connection, or
    /// answers over the size limit (native transport; libzmq does not
    /// tell). Their requests end by their deadline.
    pub lost: u64,
    /// Connections to the broker re-made after a loss (native transport).
    pub reconnects: u64,
}

#[derive(Debug)]
struct Call {
    service: String,
    /// Kept for retries (idempotent requests only).
    body: Vec<u8>,
    options: Options,
    started: Instant,
    deadline: Instant,
    attempts: u32,
    wire: u64,
    attempt_deadline: Instant,
    resend_at: Option<Instant>,
}

impl Call {
    fn next_event(&self) -> Instant {
        let t = self.deadline.min(self.attempt_deadline);
        self.resend_at.map_or(t, |r| r.min(t))
    }

    fn can_retry(&self, now: Instant) -> bool {
        self.options.idempotent
            && self.attempts < self.options.retry.attempts
            && now < self.deadline
    }
}

/// A connection to the broker (see the [module docs](self)).
pub struct Client {
    link: Link,
    frames: Vec<Vec<u8>>,
    config: Config,
    calls: HashMap<RequestId, Call>,
    /// Wire id of the current attempt → request.
    wire: HashMap<u64, RequestId>,
    next_id: u64,
    timers: BinaryHeap<Reverse<(Instant, RequestId)>>,
    done: VecDeque<Completion>,
    validator: Validator,
    stats: Stats,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.config.endpoint)
            .field("in_flight", &self.calls.len())
            .finish()
    }
}

impl Client {
    /// Connects to the broker (in the background: requests made before the
    /// broker is up wait for it, within their deadline).
    ///
    /// # Errors
    /// [`Error::Connect`] for a malformed endpoint.
    pub fn connect(config: Config) -> Result<Client> {
        Client::connect_with_context(config, &zmq::Context::new())
    }

    /// Like [`Client::connect`] on an existing ZeroMQ context (shared I/O
    /// thread; used by the libzmq transport only).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_with_context(config: Config, ctx: &zmq::Context) -> Result<Client> {
        let link = Link::connect(
            config.transport,
            &config.endpoint,
            ctx,
            LinkOptions {
                hwm: config.hwm,
                reconnect: Duration::from_millis(50),
                reconnect_max: Duration::from_secs(1),
            },
        )?;
        Ok(Client {
            link,
            frames: Vec::new(),
            config,
            calls: HashMap::new(),
            wire: HashMap::new(),
            // Start ids at a random-ish point so that a restarted client's
            // ids do not collide with answers still in flight.
            next_id: u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.subsec_nanos()),
            ) << 20
                | 1,
            timers: BinaryHeap::new(),
            done: VecDeque::new(),
            validator: Validator::new(),
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            lost: self.link.lost(),
            reconnects: self.link.reconnects(),
            ..self.stats
        }
    }

    /// The transport in use ([`Config::transport`], except that only
    /// `tcp://` endpoints go native).
    pub fn transport(&self) -> Transport {
        self.link.transport()
    }

    /// Requests sent whose completion has not been returned yet by
    /// [`Client::poll`] / [`Client::try_recv`].
    pub fn in_flight(&self) -> usize {
        self.calls.len() + self.done.len()
    }

    /// A file descriptor for an external poll loop: readable means "call
    /// [`Client::try_recv`] until it returns `None`" (edge-triggered; see
    /// the [module docs](self#with-a-component)). Timers still need
    /// [`Client::next_deadline`].
    ///
    /// # Errors
    /// [`Error::Transport`] if ZeroMQ cannot give it.
    pub fn as_raw_fd(&self) -> Result<RawFd> {
        self.link.fd()
    }

    /// The earliest moment a request times out or is re-sent.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Sends a request with a serde body (encoded like
    /// `banyan_component::wire::encode`, maps by field name).
    ///
    /// # Errors
    /// [`Error::Encode`], [`Error::Invalid`] (service name, too many in
    /// flight), [`Error::Transport`].
    pub fn send<T: serde::Serialize + ?Sized>(
        &mut self,
        service: &str,
        body: &T,
        options: Options,
    ) -> Result<RequestId> {
        let body = rmp_serde::to_vec_named(body)?;
        self.send_raw(service, body, options)
    }

    /// Sends a request whose body is already MessagePack (one value).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad service name, a body that is not one
    /// valid MessagePack value or too many requests in flight;
    /// [`Error::Transport`].
    pub fn send_raw(
        &mut self,
        service: &str,
        body: Vec<u8>,
        options: Options,
    ) -> Result<RequestId> {
        proto::service_name(service.as_bytes())
            .map_err(|_| Error::Invalid(format!("bad service name {service:?}")))?;
        self.validator
            .check(&body)
            .map_err(|e| Error::Invalid(format!("body: {e}")))?;
        if self.calls.len() >= self.config.max_in_flight {
            return Err(Error::Invalid(format!(
                "{} requests in flight already",
                self.calls.len()
            )));
        }
        let now = Instant::now();
        let id = self.fresh_id();
        let timeout = options.timeout.max(Duration::from_millis(1));
        let mut call = Call {
            service: service.to_owned(),
            body,
            options: Options { timeout, ..options },
            started: now,
            deadline: now + timeout,
            attempts: 0,
            wire: 0,
            attempt_deadline: now + timeout,
            resend_at: None,
        };
        self.transmit(id, &mut call, now)?;
        if !call.options.idempotent {
            call.body = Vec::new();
        }
        self.timers.push(Reverse((call.next_event(), id)));
        self.calls.insert(id, call);
        self.stats.requests += 1;
        Ok(id)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Sends one attempt of `call`.
    fn transmit(&mut self, id: RequestId, call: &mut Call, now: Instant) -> Result<()> {
        let wire = if call.attempts == 0 {
            id
        } else {
            self.fresh_id()
        };
        if call.attempts > 0 {
            self.wire.remove(&call.wire);
        }
        call.attempts += 1;
        call.wire = wire;
        call.resend_at = None;
        let remaining = call.deadline.saturating_duration_since(now);
        let per_attempt = if call.options.idempotent && call.options.retry.attempts > 1 {
            call.options
                .retry
                .attempt_timeout
                .unwrap_or(call.options.timeout / call.options.retry.attempts)
                .min(remaining)
        } else {
            remaining
        };
        call.attempt_deadline = now + per_attempt;
        let ms = u32::try_from(per_attempt.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let header = proto::request_header(wire, call.options.idempotent, ms);
        let body: &[u8] = &call.body;
        if !self
            .link
            .send(&[&header[..], call.service.as_bytes(), body])?
        {
            return Err(Error::Invalid(
                "the send queue to the broker is full".into(),
            ));
        }
        self.wire.insert(wire, id);
        Ok(())
    }

    /// Blocking call with a serde body and the default options but for the
    /// timeout. Completions of other requests that arrive meanwhile are kept
    /// for [`Client::poll`].
    ///
    /// # Errors
    /// [`Error::Service`] (the broker's error), [`Error::Timeout`], and the
    /// errors of [`Client::send`].
    pub fn request<T: serde::Serialize + ?Sized>(
        &mut self,
        service: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<Reply> {
        let body = rmp_serde::to_vec_named(body)?;
        self.request_raw(service, body, Options::new(timeout))
    }

    /// Blocking call with a MessagePack body and explicit options.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn request_raw(&mut self, service: &str, body: Vec<u8>, options: Options) -> Result<Reply> {
        let id = self.send_raw(service, body, options)?;
        let mut stash = Vec::new();
        let result = loop {
            match self.next_completion(None)? {
                Some(c) if c.id == id => break c.result,
                Some(other) => stash.push(other),
                None => {}
            }
        };
        for c in stash.into_iter().rev() {
            self.done.push_front(c);
        }
        result
    }

    /// Waits up to `timeout` for a request to complete (reply, error or
    /// deadline).
    ///
    /// # Errors
    /// [`Error::Transport`] if the socket fails.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<Completion>> {
        self.next_completion(Some(Instant::now() + timeout))
    }

    /// A completed request if one is ready now (never waits).
    ///
    /// # Errors
    /// [`Error::Transport`] if the socket fails.
    pub fn try_recv(&mut self) -> Result<Option<Completion>> {
        self.next_completion(Some(Instant::now()))
    }

    /// Waits until `until` (forever with `None`, which is fine: every
    /// request has a deadline... unless none is in flight, then returns).
    fn next_completion(&mut self, until: Option<Instant>) -> Result<Option<Completion>> {
        loop {
            if let Some(c) = self.done.pop_front() {
                return Ok(Some(c));
            }
            self.receive_all()?;
            let now = Instant::now();
            self.run_timers(now)?;
            if !self.done.is_empty() {
                continue;
            }
            if until.is_none() && self.calls.is_empty() {
                return Ok(None);
            }
            let wake = match (until, self.next_deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return Ok(None),
            };
            if until.is_some_and(|u| now >= u) {
                return Ok(None);
            }
            self.link.wait(wake, None)?;
        }
    }

    fn receive_all(&mut self) -> Result<()> {
        let mut frames = std::mem::take(&mut self.frames);
        let result = self.receive_into(&mut frames);
        self.frames = frames;
        result
    }

    fn receive_into(&mut self, frames: &mut Vec<Vec<u8>>) -> Result<()> {
        loop {
            if !self.link.recv(frames)? {
                return Ok(());
            }
            let now = Instant::now();
            match Answer::parse(frames) {
                Ok(a) => self.on_answer(a, now),
                Err(e) => {
                    self.stats.malformed += 1;
                    log::warn!("services client: malformed answer from the broker: {e}");
                }
            }
        }
    }

    fn on_answer(&mut self, answer: Answer<'_>, now: Instant) {
        let Some(id) = self.wire.get(&answer.id()).copied() else {
            self.stats.late += 1;
            return;
        };
        match answer {
            Answer::Reply { body, .. } => {
                self.complete(
                    id,
                    Ok(Reply {
                        body: body.to_vec(),
                    }),
                    now,
                );
            }
            Answer::Error { code, detail, .. } => {
                let retry = self.calls.get(&id).is_some_and(|c| {
                    (code.is_transient()
                        || (code == ErrorCode::UnknownService && c.options.retry.unknown_service))
                        && c.can_retry(now)
                });
                if retry {
                    if let Some(call) = self.calls.get_mut(&id) {
                        let wire = call.wire;
                        let doubling = 1u32 << call.attempts.saturating_sub(1).min(16);
                        call.resend_at = Some(now + call.options.retry.backoff * doubling);
                        call.attempt_deadline = call.deadline;
                        let t = call.next_event();
                        self.wire.remove(&wire);
                        self.timers.push(Reverse((t, id)));
                    }
                } else {
                    let detail = detail.to_owned();
                    self.complete(id, Err(Error::Service { code, detail }), now);
                }
            }
        }
    }

    fn complete(&mut self, id: RequestId, result: Result<Reply>, now: Instant) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.wire.remove(&call.wire);
        match &result {
            Ok(_) => self.stats.replies += 1,
            Err(Error::Timeout) => self.stats.timeouts += 1,
            Err(_) => self.stats.errors += 1,
        }
        self.done.push_back(Completion {
            id,
            result,
            attempts: call.attempts,
            elapsed: now.duration_since(call.started),
        });
    }

    fn run_timers(&mut self, now: Instant) -> Result<()> {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(mut call) = self.calls.remove(&id) else {
                continue;
            };
            if call.next_event() != at {
                // A stale timer: the call was rescheduled.
                self.calls.insert(id, call);
                continue;
            }
            if now >= call.deadline {
                self.calls.insert(id, call);
                self.complete(id, Err(Error::Timeout), now);
                continue;
            }
            let resend = call.resend_at.is_some_and(|r| r <= now)
                || (call.attempt_deadline <= now && call.can_retry(now));
            if resend {
                self.stats.retries += 1;
                if let Err(e) = self.transmit(id, &mut call, now) {
                    self.calls.insert(id, call);
                    self.complete(id, Err(e), now);
                    continue;
                }
            } else if call.attempt_deadline <= now {
                // No retry left: wait for the answer until the deadline.
                call.attempt_deadline = call.deadline;
            }
            self.timers.push(Reverse((call.next_event(), id)));
            self.calls.insert(id, call);
        }
        Ok(())
    }
}

/// What a request's error code means for a caller deciding what to do:
/// whether retrying an idempotent request could help.
pub fn is_transient(error: &Error) -> bool {
    matches!(error, Error::Timeout) || error.code().is_some_and(ErrorCode::is_transient)
}
