//! The broker's native ROUTER: the broker thread itself accepts the TCP
//! connections, speaks ZMTP 3.x server-side (through [`banyan_zmtp`], like
//! the backplane's native engine) and hands each message to the
//! [`Broker`](super::Broker) state machine in the same turn — no libzmq I/O thread, no
//! hand-over between threads on the way in or out.
//!
//! ROUTER semantics, as libzmq's:
//! - every connection has a routing identity: the `Identity` property of
//!   its `READY` when it set one (unique, not starting with a zero byte),
//!   else a generated 5-byte one (`0x00` + a counter); a second connection
//!   asking for an identity in use is closed ([`PeerStats::rejected`]);
//! - a message received is given to the broker with that identity in
//!   front; a message sent goes to the connection its identity names, or
//!   is refused as [`SendFailure::Unreachable`] (counted by the broker in
//!   [`Stats::unroutable`](super::Stats::unroutable), like
//!   `ROUTER_MANDATORY`);
//! - peers of socket type `DEALER`, `REQ` and `ROUTER` are accepted
//!   (ZMTP 3.x and 2.0), every other type is closed at the handshake.
//!
//! Robustness: each peer's send queue is bounded in messages
//! ([`SocketConfig::hwm`]) and bytes ([`SocketConfig::queue_bytes`]); a
//! message for a full queue is refused as [`SendFailure::Full`] (counted in
//! [`Stats::dropped`](super::Stats::dropped)). A message over
//! [`Config::max_body`](super::Config::max_body) plus 64 KiB closes the
//! connection, as libzmq's `ZMQ_MAXMSGSIZE` does
//! ([`PeerStats::oversize`]); so do garbage, a broken handshake
//! ([`PeerStats::rejected`]), no handshake within
//! [`SocketConfig::handshake_timeout`] and silence past the heartbeat
//! clocks ([`PeerStats::silent`]). Reads are bounded per turn, writes never
//! wait: a peer that stalls holds up nobody.
//!
//! The poll loop's scaffolding (ready and dirty lists, event dispatch,
//! accepting with retry, handshake deadlines) is
//! [`banyan_zmtp::server`] and each peer's send queue is
//! [`banyan_zmtp::output`], both shared with the backplane.
//!
//! Optionally, while messages arrive less than [`SocketConfig::busy_poll`]
//! apart, the thread polls instead of sleeping ([`banyan_zmtp::busy`], as
//! the backplane does), saving the wake-up a sleeping thread costs.
//!
//! Heartbeats: ZMTP `PING`s every [`SocketConfig::heartbeat_interval`] to
//! ZMTP 3.1 peers, a `PONG` for every `PING`, and the time to live a peer's
//! `PING` asks for is honoured ([`banyan_zmtp::liveness`], as in the
//! backplane).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use banyan_zmtp::busy::BusyPoll;
use banyan_zmtp::liveness::{earliest, Due, Liveness, Settings};
use banyan_zmtp::opening::{Opened, Opening, OpeningError};
use banyan_zmtp::output::{Output, Spare};
use banyan_zmtp::server::{self, read_some, AcceptRetry, Deadlines, Flags, Lists, Slots};
use banyan_zmtp::{self as zmtp, Decoder, HandshakeError, Step};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::socket::{Core, SocketConfig};
use super::{PeerId, SendFailure, Transmit};
use crate::error::{Error, Result};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_PEER: usize = 2;
/// Bytes asked of the kernel per `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 256 * 1024;
/// Largest command accepted (handshake included): a `READY` with an
/// identity of 255 bytes and a few properties fits many times.
const MAX_COMMAND: usize = 4096;
/// Unconsumed input up to this size is moved to the shared read buffer
/// for the next read; a larger part of a message is completed in the
/// connection's own buffer.
const SMALL_PENDING: usize = 16 * 1024;
/// No `PONG` is queued for a peer with this many bytes unsent.
const PONG_LIMIT: u64 = 64 * 1024;
/// Socket type we announce.
const OUR_TYPE: &str = "ROUTER";
/// What the handshake errors call this port.
const PORT: &str = "services (ROUTER)";

/// Counters of the native ROUTER's connections (all zero on the libzmq
/// engine, which does not tell). Part of the stats report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PeerStats {
    /// Gauge: connected peers (handshake done or under way).
    pub connections: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed for breaking ZMTP: not a ZeroMQ peer, a bad
    /// handshake, a socket type that cannot talk to a ROUTER, an identity
    /// already in use, a malformed frame, too many connections.
    pub rejected: u64,
    /// Connections closed for sending a message over the size limit.
    pub oversize: u64,
    /// Connections closed for silence: no handshake in time, or heartbeats
    /// unanswered (the peer's own time to live included).
    pub silent: u64,
    /// Messages queued for a peer and not sent because its connection
    /// closed.
    pub lost: u64,
    /// `PING`s not answered because the peer had 64 KiB or more unread
    /// (it does not read; a flood of them would grow its queue).
    pub unanswered_pings: u64,
}

/// Binds the listening socket; returns the poll, the waker that stops the
/// loop, the listener and its port.
pub(super) fn bind(config: &SocketConfig) -> Result<(Poll, mio::Waker, TcpListener, u16)> {
    let endpoint = format!("tcp://{}:{}", config.bind, config.port);
    let host = match config.bind.as_str() {
        "*" => "0.0.0.0",
        h => h,
    };
    let bind_error = |source| Error::Bind {
        endpoint: endpoint.clone(),
        source,
    };
    let poll = Poll::new().map_err(Error::Transport)?;
    let waker = mio::Waker::new(poll.registry(), WAKER).map_err(Error::Transport)?;
    // std sets SO_REUSEADDR on Unix: a restarted broker binds at once.
    let listener = std::net::TcpListener::bind((host, config.port)).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(Error::Transport)?;
    let port = listener.local_addr().map_err(Error::Transport)?.port();
    let mut listener = TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(Error::Transport)?;
    Ok((poll, waker, listener, port))
}

/// Why a connection is closed.
enum Close {
    Eof,
    Io(io::Error),
    Opening(OpeningError),
    Handshake(HandshakeError),
    Frame(zmtp::FrameError),
    Oversize(u64),
    Silent(String),
    Duplicate,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => f.write_str("closed by the peer"),
            Close::Io(e) => write!(f, "{e}"),
            Close::Opening(e) => write!(f, "{e}"),
            Close::Handshake(e) => write!(f, "{e}"),
            Close::Frame(e) => write!(f, "protocol error: {e}"),
            Close::Oversize(n) => write!(f, "message of {n} bytes over the limit"),
            Close::Silent(why) => f.write_str(why),
            Close::Duplicate => f.write_str("identity already in use"),
        }
    }
}

struct Peer {
    stream: TcpStream,
    addr: SocketAddr,
    /// The handshake, until it is done.
    opening: Option<Opening>,
    /// Unique per accepted connection (slots are reused).
    serial: u64,
    /// Routing identity, set when the handshake is done.
    identity: Option<PeerId>,
    /// Unconsumed input is `input[start..]`.
    input: Vec<u8>,
    start: usize,
    /// Readable, writable, and where it is listed in the router's
    /// [`Lists`].
    io: Flags,
    /// The traffic's decoder (after the handshake).
    decoder: Decoder,
    out: Output,
    liveness: Liveness,
}

impl Peer {
    /// Writes queued output until done or the socket is full.
    fn flush(&mut self, spare: &mut Spare) -> io::Result<()> {
        self.out
            .flush_to(&mut self.stream, &mut self.io.writable, spare)
            .map(drop)
    }
}

/// The native ROUTER loop: the listener, the connections, and the broker
/// state machine with its reporting ([`Core`]).
pub(super) struct Router {
    poll: Poll,
    listener: TcpListener,
    core: Core,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    /// Slot of each identity.
    routes: HashMap<PeerId, usize>,
    next_generated: u32,
    next_serial: u64,
    /// Connections that may have input, and ones with output to flush.
    lists: Lists,
    /// Handshake deadlines in accept order.
    handshakes: Deadlines,
    accept_retry: AcceptRetry,
    next_heartbeat: Option<Instant>,
    heartbeat: Settings,
    max_message: usize,
    scratch: Vec<u8>,
    /// Shared read buffer (see `read_peer`).
    rx: Vec<u8>,
    /// For [`Output::flush_to`]: stays empty (no message is queued by
    /// reference here).
    spare: Spare,
    stats: PeerStats,
}

impl Router {
    pub(super) fn new(poll: Poll, listener: TcpListener, core: Core) -> Router {
        let c = &core.config;
        let max_message = c.broker.max_body.saturating_add(64 * 1024);
        let heartbeat = Settings {
            interval: c.heartbeat_interval,
            timeout: c.heartbeat_timeout,
        };
        Router {
            poll,
            listener,
            core,
            peers: Vec::new(),
            free: Vec::new(),
            routes: HashMap::new(),
            next_generated: 1,
            next_serial: 0,
            lists: Lists::new(),
            handshakes: Deadlines::new(),
            accept_retry: AcceptRetry::default(),
            next_heartbeat: None,
            heartbeat,
            max_message,
            scratch: Vec::new(),
            rx: vec![0; SMALL_PENDING + READ_CHUNK],
            spare: Spare::default(),
            stats: PeerStats::default(),
        }
    }

    /// Runs until woken through the waker; then answers every held
    /// request, says DISCONNECT to every worker and gives those a moment
    /// to leave.
    pub(super) fn run(mut self) -> Result<()> {
        log::info!(
            "services broker (native ROUTER) listening on port {}",
            self.core.config.port
        );
        let result = self.serve();
        let now = Instant::now();
        self.core.broker.shutdown(now);
        self.route(now);
        server::flush_all(&mut self, now);
        self.core.publish(now, true, self.stats);
        self.core.share(self.stats);
        // Give the last answers and DISCONNECTs a moment to leave (like a
        // libzmq linger of 200 ms).
        let until = Instant::now() + Duration::from_millis(200);
        let mut events = Events::with_capacity(64);
        while self.pending_output() && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            if self.poll.poll(&mut events, Some(left)).is_err() {
                break;
            }
            for event in &events {
                let Some(slot) = event.token().0.checked_sub(FIRST_PEER) else {
                    continue;
                };
                if let Some(Some(p)) = self.peers.get_mut(slot) {
                    p.io.writable = true;
                    self.lists.mark(slot, &mut p.io);
                }
            }
            server::flush_all(&mut self, Instant::now());
        }
        result
    }

    fn pending_output(&self) -> bool {
        self.peers.iter().flatten().any(|p| p.out.has_output())
    }

    fn serve(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let mut spin = BusyPoll::new(self.core.config.busy_poll);
        loop {
            let now = Instant::now();
            let timeout = self.timeout(now);
            if !self.lists.has_ready() && self.core.idle_share_due() {
                self.core.share(self.stats);
            }
            let poll = &mut self.poll;
            let waited = spin.wait(timeout, |t| {
                poll.poll(&mut events, t)?;
                Ok(!events.is_empty())
            });
            match waited {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Transport(e)),
            }
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => return Ok(()),
                    Token(t) => {
                        let slot = t - FIRST_PEER;
                        let Some(Some(p)) = self.peers.get_mut(slot) else {
                            continue;
                        };
                        if self.lists.event(slot, &mut p.io, event) {
                            // The peer took bytes that were waiting.
                            p.liveness.progressed();
                        }
                    }
                }
            }
            server::read_all(self, now);
            self.expire_handshakes(now);
            self.heartbeats(now);
            let now = Instant::now();
            self.core.broker.poll(now);
            self.route(now);
            server::flush_all(self, now);
            if self.accept_retry.due(now) {
                self.accept(now);
            }
            self.core.turn_done(now, self.stats);
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.lists.has_ready() {
            return Some(Duration::ZERO);
        }
        let mut at = self.core.broker.poll_at();
        at = earliest(at, self.core.next_report());
        at = earliest(at, self.handshakes.next());
        at = earliest(at, self.accept_retry.at());
        server::poll_timeout(earliest(at, self.next_heartbeat), now)
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let accepted = self.accept_retry.accept(&self.listener, now, |e| {
                log::warn!("services: cannot accept a connection: {e} (retrying)");
            });
            let Some((mut stream, addr)) = accepted else {
                return;
            };
            if self.stats.connections >= self.core.config.max_peers as u64 {
                self.stats.rejected += 1;
                log::warn!("services: refused {addr}: too many connections (max_peers)");
                continue;
            }
            let adopted = server::adopt(
                self.poll.registry(),
                &mut stream,
                &mut self.peers,
                &mut self.free,
                FIRST_PEER,
            );
            let slot = match adopted {
                Ok(slot) => slot,
                Err(e) => {
                    log::warn!("services: cannot watch the connection from {addr}: {e}");
                    continue;
                }
            };
            self.next_serial += 1;
            let mut out = Output::new();
            out.push_control(&zmtp::v2::OPENING);
            let mut p = Peer {
                stream,
                addr,
                opening: Some(Opening::new(OUR_TYPE, PORT, accepts, MAX_COMMAND)),
                serial: self.next_serial,
                identity: None,
                input: Vec::new(),
                start: 0,
                io: Flags::new(),
                decoder: Decoder::with_limits(self.max_message, MAX_COMMAND),
                out,
                liveness: Liveness::default(),
            };
            self.lists.mark(slot, &mut p.io);
            self.lists.list(slot, &mut p.io);
            self.handshakes.push(
                now + self.core.config.handshake_timeout,
                slot,
                self.next_serial,
            );
            if let Some(s) = self.peers.get_mut(slot) {
                *s = Some(p);
            }
            self.stats.accepted += 1;
            self.stats.connections += 1;
            log::debug!("services: connection from {addr}");
        }
    }

    fn close(&mut self, slot: usize, why: &Close) {
        let Some(mut p) = self.peers.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut p.stream);
        self.free.push(slot);
        self.stats.connections = self.stats.connections.saturating_sub(1);
        match why {
            Close::Eof | Close::Io(_) => {}
            Close::Oversize(_) => self.stats.oversize += 1,
            Close::Silent(_) => self.stats.silent += 1,
            Close::Opening(_) | Close::Handshake(_) | Close::Frame(_) | Close::Duplicate => {
                self.stats.rejected += 1;
            }
        }
        if let Some(id) = &p.identity {
            if self.routes.get(id) == Some(&slot) {
                self.routes.remove(id);
            }
        }
        let unsent = p.out.queue_len();
        if unsent > 0 {
            // Messages accepted for the peer and cut off by the close.
            self.stats.lost += unsent as u64;
        }
        match why {
            Close::Eof => log::debug!("services: {} {why}", p.addr),
            _ => log::info!("services: closed the connection from {}: {why}", p.addr),
        }
        // A descriptor is free again: a failed accept is retried at once.
        self.accept_retry.closed();
    }

    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(slot) = self.handshakes.expired(now, |slot, serial| {
            self.peers
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.serial == serial && p.opening.is_some())
        }) {
            let t = self.core.config.handshake_timeout;
            self.close(
                slot,
                &Close::Silent(format!("no ZeroMQ handshake within {t:?}")),
            );
        }
    }

    /// Reads what one connection has (up to [`READ_BUDGET`]) and handles
    /// it. As in the backplane: reads land in the shared buffer `rx` after
    /// the connection's unconsumed bytes (so an idle connection holds no
    /// buffer), except while a large message arrives, which is completed in
    /// the connection's own buffer.
    #[expect(
        clippy::indexing_slicing,
        reason = "`pending` is at most SMALL_PENDING (the branch) and `rx` holds \
                  SMALL_PENDING + READ_CHUNK; `old` is the length before the resize; \
                  `n` is at most what was offered to `read`"
    )]
    fn read_peer(&mut self, slot: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(Some(p)) = self.peers.get_mut(slot) else {
                return;
            };
            let pending = p.input.len() - p.start;
            let large = pending > SMALL_PENDING;
            let read = if large {
                if p.start > 0 {
                    p.input.drain(..p.start);
                    p.start = 0;
                }
                let old = p.input.len();
                p.input.resize(old + READ_CHUNK, 0);
                let read = read_some(&mut p.stream, &mut p.input[old..]);
                p.input.truncate(old + *read.as_ref().unwrap_or(&0));
                read
            } else {
                self.rx[..pending].copy_from_slice(&p.input[p.start..]);
                read_some(&mut p.stream, &mut self.rx[pending..])
            };
            let n = match read {
                Ok(0) => {
                    self.close(slot, &Close::Eof);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    p.io.readable = false;
                    return;
                }
                Err(e) => {
                    self.close(slot, &Close::Io(e));
                    return;
                }
            };
            p.liveness.heard();
            budget = budget.saturating_sub(n);
            let handled = if large {
                let mut input = std::mem::take(&mut p.input);
                let mut start = p.start;
                let handled = self.handle_bytes(slot, &mut input, &mut start, now);
                if let Some(Some(p)) = self.peers.get_mut(slot) {
                    if start == input.len() {
                        // (The large buffer is given back.)
                        input = Vec::new();
                        start = 0;
                    }
                    p.input = input;
                    p.start = start;
                }
                handled
            } else {
                let mut rx = std::mem::take(&mut self.rx);
                let end = pending + n;
                let mut start = 0;
                let handled = self.handle_bytes(slot, &mut rx[..end], &mut start, now);
                if let Some(Some(p)) = self.peers.get_mut(slot) {
                    p.input.clear();
                    p.input.extend_from_slice(&rx[start..end]);
                    p.start = 0;
                    if p.input.is_empty() && p.input.capacity() > SMALL_PENDING {
                        p.input = Vec::new();
                    }
                }
                self.rx = rx;
                handled
            };
            if let Err(why) = handled {
                self.close(slot, &why);
                return;
            }
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "`*start <= input.len()`; the offsets of a decoder step lie \
                  within the buffer it was given"
    )]
    fn handle_bytes(
        &mut self,
        slot: usize,
        input: &mut [u8],
        start: &mut usize,
        now: Instant,
    ) -> std::result::Result<(), Close> {
        loop {
            let Some(Some(p)) = self.peers.get_mut(slot) else {
                return Ok(());
            };
            let buf = &input[*start..];
            if let Some(opening) = p.opening.as_mut() {
                self.scratch.clear();
                let step = opening.step(buf, &mut self.scratch);
                if !self.scratch.is_empty() {
                    p.out.push_control(&self.scratch);
                    self.lists.mark(slot, &mut p.io);
                }
                match step.map_err(Close::Opening)? {
                    Opened::NeedMore => return Ok(()),
                    Opened::Greeted { len, minor } => {
                        *start += len;
                        let pings = zmtp::heartbeat::has_heartbeats(minor);
                        p.liveness.start(now, pings, &self.heartbeat);
                    }
                    Opened::Ready { len, peer } => {
                        *start += len;
                        if peer.zmtp2 {
                            p.liveness.start(now, false, &self.heartbeat);
                        }
                        self.up(slot, peer.identity)?;
                    }
                }
                continue;
            }
            match p.decoder.step(buf).map_err(Close::Frame)? {
                Step::NeedMore => return Ok(()),
                Step::Command { len, body } => {
                    *start += len;
                    self.command(slot, &buf[body..len], now)?;
                }
                Step::Interleaved { at, len, body } => {
                    self.command(slot, &buf[body..at + len], now)?;
                    // Cut it out of the message: the frames before it
                    // move up to its end.
                    input.copy_within(*start..*start + at, *start + len);
                    *start += len;
                }
                Step::Oversize { .. } | Step::Skipped(_) => {
                    return Err(Close::Oversize(p.decoder.oversize_len()))
                }
                Step::Message { len, .. } => {
                    let message = &buf[..len];
                    *start += len;
                    let Some(id) = p.identity.as_deref() else {
                        continue;
                    };
                    let frames: Vec<&[u8]> = zmtp::parts::parts(message).map(|(_, b)| b).collect();
                    self.core.broker.handle(id, &frames, now);
                    self.core.changed(now);
                    self.route(now);
                }
            }
        }
    }

    /// The handshake of `slot` is done: give it its identity.
    fn up(&mut self, slot: usize, asked: Option<PeerId>) -> std::result::Result<(), Close> {
        let identity = match asked {
            // libzmq reserves identities starting with a zero byte for the
            // ones it generates.
            Some(id) if id.first() != Some(&0) => {
                if self.routes.contains_key(&id) {
                    return Err(Close::Duplicate);
                }
                id
            }
            _ => loop {
                let n = self.next_generated;
                self.next_generated = self.next_generated.wrapping_add(1);
                let mut id = vec![0];
                id.extend_from_slice(&n.to_be_bytes());
                if !self.routes.contains_key(&id) {
                    break id;
                }
            },
        };
        let Some(Some(p)) = self.peers.get_mut(slot) else {
            return Ok(());
        };
        log::debug!("services: {} ready as {}", p.addr, super::hex(&identity));
        p.opening = None;
        self.routes.insert(identity.clone(), slot);
        p.identity = Some(identity);
        self.next_heartbeat = earliest(self.next_heartbeat, p.liveness.next_at());
        Ok(())
    }

    fn command(
        &mut self,
        slot: usize,
        body: &[u8],
        now: Instant,
    ) -> std::result::Result<(), Close> {
        let Some(Some(p)) = self.peers.get_mut(slot) else {
            return Ok(());
        };
        let (name, data) =
            zmtp::split_command(body).map_err(|e| Close::Frame(zmtp::FrameError::BadCommand(e)))?;
        match name {
            b"PING" => {
                // Its time to live counts whether or not it gets an answer.
                p.liveness.ping_received(now, zmtp::ping_ttl(data));
                self.next_heartbeat = earliest(self.next_heartbeat, p.liveness.next_at());
                if p.out.unsent() >= PONG_LIMIT {
                    // It does not read what we send (a PING flood would
                    // grow its queue without end): no more answers.
                    self.stats.unanswered_pings += 1;
                    return Ok(());
                }
                self.scratch.clear();
                zmtp::put_pong(&mut self.scratch, data);
                p.out.push_control(&self.scratch);
                self.lists.mark(slot, &mut p.io);
            }
            b"ERROR" => {
                return Err(Close::Handshake(HandshakeError::PeerError(
                    String::from_utf8_lossy(data.get(1..).unwrap_or(&[])).into_owned(),
                )))
            }
            // PONG (any byte was a sign of life), and commands a ROUTER
            // has no use for.
            _ => {}
        }
        Ok(())
    }

    /// Sends the PINGs that are due and closes the peers that went silent.
    fn heartbeats(&mut self, now: Instant) {
        if self.next_heartbeat.is_none_or(|t| now < t) {
            return;
        }
        let mut next = None;
        let mut expired = Vec::new();
        for slot in 0..self.peers.len() {
            let Some(Some(p)) = self.peers.get_mut(slot) else {
                continue;
            };
            if p.opening.is_some() {
                continue;
            }
            if p.io.readable {
                p.liveness.heard();
            }
            match p.liveness.poll(now, &self.heartbeat) {
                Due::Nothing => {}
                Due::Ping => {
                    self.scratch.clear();
                    zmtp::put_ping(&mut self.scratch, self.heartbeat.ttl(), b"");
                    p.out.push_control(&self.scratch);
                    self.lists.mark(slot, &mut p.io);
                }
                Due::Expired(why) => {
                    expired.push((slot, why.to_string()));
                    continue;
                }
            }
            next = earliest(next, p.liveness.next_at());
        }
        for (slot, why) in expired {
            self.close(slot, &Close::Silent(why));
        }
        // At least 10 ms between scans: clocks are late by that at most.
        self.next_heartbeat = next.map(|t| t.max(now + Duration::from_millis(10)));
    }

    /// Queues what the broker has to send on the connections it names.
    fn route(&mut self, now: Instant) {
        while let Some(t) = self.core.broker.poll_transmit() {
            if let Err(why) = self.send(&t) {
                log::debug!("services: cannot send to {}: {why:?}", super::hex(&t.peer));
                self.core.broker.send_failed(&t, why, now);
            }
        }
    }

    fn send(&mut self, t: &Transmit) -> std::result::Result<(), SendFailure> {
        let slot = *self.routes.get(&t.peer).ok_or(SendFailure::Unreachable)?;
        let Some(Some(p)) = self.peers.get_mut(slot) else {
            return Err(SendFailure::Unreachable);
        };
        if p.out
            .is_full(self.core.config.hwm, self.core.config.queue_bytes)
        {
            return Err(SendFailure::Full);
        }
        let n = t.frames.len() + usize::from(t.delimiter);
        p.out.push_message_with(|out| {
            let frames = t.delimiter.then_some(&[][..]).into_iter();
            for (i, f) in frames.chain(t.frames.iter().map(|f| &f[..])).enumerate() {
                let flags = if i + 1 < n { zmtp::MORE } else { 0 };
                zmtp::put_frame(out, flags, f);
            }
        });
        self.lists.mark(slot, &mut p.io);
        Ok(())
    }
}

impl Slots for Router {
    fn lists(&mut self) -> &mut Lists {
        &mut self.lists
    }

    fn flags(&mut self, slot: usize) -> Option<&mut Flags> {
        Some(&mut self.peers.get_mut(slot)?.as_mut()?.io)
    }

    fn read(&mut self, slot: usize, now: Instant) {
        self.read_peer(slot, now);
    }

    fn flush(&mut self, slot: usize, _now: Instant) {
        let Some(Some(p)) = self.peers.get_mut(slot) else {
            return;
        };
        if let Err(e) = p.flush(&mut self.spare) {
            self.close(slot, &Close::Io(e));
        }
    }
}

/// The socket types that can talk to a ROUTER (libzmq's list).
fn accepts(peer: &str) -> bool {
    matches!(peer, "DEALER" | "REQ" | "ROUTER")
}
