//! The native engine: one thread, one `epoll` (through `mio`), ZMTP 3 spoken
//! directly (see [`banyan_zmtp`]). A message read from a publisher's TCP
//! connection is written to its subscribers' connections by the same thread
//! in the same turn: no hand-over to I/O threads, no copies but the one into
//! each subscriber's output buffer, frames forwarded byte for byte.
//!
//! Per connection state: an input buffer, an output buffer with the end
//! offset of every queued message (the queue length the high-water mark is
//! checked against) and, for subscribers, their subscriptions. Upstream
//! subscriptions are the union of all subscribers' (like XSUB/XPUB): a
//! publisher is told a topic when the first subscriber wants it and told to
//! cancel when the last one leaves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::heartbeat::{Expiry, Liveness};
use super::{Config, Error, Reporter, Result, ShutdownHandle, Stats};
use banyan_zmtp::{self as zmtp, Decoder, HandshakeError, Step, Subscription};

// Interoperability additions, kept apart: heartbeats, and what subscribers
// send besides one subscription per message.
mod heartbeats;
mod upstream;

const PUBLISHERS: Token = Token(0);
const SUBSCRIBERS: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONNECTION: usize = 3;
/// Bytes asked of the kernel per `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 256 * 1024;
/// Output already written is removed from the front of a buffer once it is
/// this large (and always when everything was written).
const COMPACT_AT: usize = 1 << 20;
/// An empty buffer that grew beyond this (a large message passed) gives its
/// memory back.
const SHRINK_AT: usize = 4 << 20;

/// The bound listening sockets of a native backplane.
pub(super) struct Sockets {
    poll: Poll,
    publishers: TcpListener,
    subscribers: TcpListener,
}

/// Binds both ports; returns the sockets, the waker that interrupts the
/// loop, and the real ports.
pub(super) fn bind(config: &Config) -> Result<(Sockets, Waker, u16, u16)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (mut publishers, publisher_port) =
        listen("publisher", &config.bind, config.publisher_port)?;
    let (mut subscribers, subscriber_port) =
        listen("subscriber", &config.bind, config.subscriber_port)?;
    poll.registry()
        .register(&mut publishers, PUBLISHERS, Interest::READABLE)?;
    poll.registry()
        .register(&mut subscribers, SUBSCRIBERS, Interest::READABLE)?;
    Ok((
        Sockets {
            poll,
            publishers,
            subscribers,
        },
        waker,
        publisher_port,
        subscriber_port,
    ))
}

fn listen(role: &'static str, address: &str, port: u16) -> Result<(TcpListener, u16)> {
    let host = if address == "*" { "0.0.0.0" } else { address };
    let endpoint = format!("tcp://{address}:{port}");
    // std sets SO_REUSEADDR on Unix, so a restarted backplane can bind at
    // once even with connections of the old one in TIME_WAIT.
    let listener = std::net::TcpListener::bind((host, port)).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            Error::PortInUse {
                role,
                port,
                address: address.to_owned(),
            }
        } else {
            Error::Listen { endpoint, source }
        }
    })?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    Ok((TcpListener::from_std(listener), port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Connected to the publisher port: sends messages, receives
    /// subscriptions.
    Publisher,
    /// Connected to the subscriber port: sends subscriptions, receives
    /// messages.
    Subscriber,
}

impl Role {
    fn port(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }

    /// The socket type we announce on this port.
    fn our_type(self) -> &'static str {
        match self {
            Role::Publisher => "XSUB",
            Role::Subscriber => "XPUB",
        }
    }

    fn accepts(self, peer: &str) -> bool {
        match self {
            Role::Publisher => matches!(peer, "PUB" | "XPUB"),
            Role::Subscriber => matches!(peer, "SUB" | "XSUB"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Ready,
    Traffic,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    role: Role,
    phase: Phase,
    accepted: Instant,
    /// Received bytes live in `input[start..end]` (`input` is kept zeroed
    /// beyond, so reading never re-initializes memory).
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The socket may have more to read (edge-triggered readiness).
    readable: bool,
    decoder: Decoder,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    sent: usize,
    /// Total bytes written and appended since the connection opened, and the
    /// end offset (in appended bytes) of every queued message.
    written_total: u64,
    appended_total: u64,
    queued: VecDeque<u64>,
    /// The socket may accept more bytes.
    writable: bool,
    /// Listed in the forwarder's `dirty` (output to flush).
    dirty: bool,
    /// Subscriber: its prefixes, a set as in libzmq's XPUB (a repeated
    /// subscription changes nothing, one cancel removes it).
    subscriptions: HashSet<Vec<u8>>,
    /// Subscriber: when a message for it was last refused while it was in
    /// overflow (see the module docs of [`crate`]).
    overflow: Option<Instant>,
    closing: bool,
    /// The greeting exchange (ZMTP 3.x or 2.0).
    negotiation: zmtp::Negotiation,
    /// Heartbeats (see [`super::heartbeat`]).
    liveness: Liveness,
}

impl Connection {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        role: Role,
        now: Instant,
        max_message: usize,
    ) -> Connection {
        let mut output = Vec::with_capacity(zmtp::GREETING_LEN);
        output.extend_from_slice(&zmtp::v2::OPENING);
        Connection {
            stream,
            peer,
            role,
            phase: Phase::Greeting,
            accepted: now,
            input: Vec::new(),
            start: 0,
            end: 0,
            readable: true,
            decoder: Decoder::new(max_message),
            output,
            sent: 0,
            written_total: 0,
            appended_total: zmtp::v2::OPENING.len() as u64,
            queued: VecDeque::new(),
            writable: true,
            dirty: false,
            subscriptions: HashSet::new(),
            overflow: None,
            closing: false,
            negotiation: zmtp::Negotiation::new(),
            liveness: Liveness::default(),
        }
    }

    fn wants(&self, topic: &[u8]) -> bool {
        self.subscriptions
            .iter()
            .any(|prefix| topic.starts_with(prefix))
    }

    /// Messages queued for this connection and not yet fully written.
    fn queue_len(&mut self) -> usize {
        while self
            .queued
            .front()
            .is_some_and(|&e| e <= self.written_total)
        {
            self.queued.pop_front();
        }
        self.queued.len()
    }

    /// The queue holds `hwm` messages (0 = no limit) or `max_bytes` bytes
    /// (0 = no limit).
    fn is_full(&mut self, hwm: i32, max_bytes: usize) -> bool {
        (hwm > 0 && self.queue_len() >= hwm as usize)
            || (max_bytes > 0 && self.appended_total - self.written_total >= max_bytes as u64)
    }

    fn in_overflow(&self, now: Instant, stall: Duration) -> bool {
        self.overflow
            .is_some_and(|t| now.saturating_duration_since(t) < stall)
    }

    /// Appends bytes that are not a message (handshake, subscriptions,
    /// PONG).
    fn push_control(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
        self.appended_total += bytes.len() as u64;
    }

    /// Appends one whole message.
    fn push_message(&mut self, bytes: &[u8]) {
        self.push_control(bytes);
        self.queued.push_back(self.appended_total);
    }

    /// Lists the connection for the next flush (once).
    fn mark(&mut self, index: usize, dirty: &mut Vec<usize>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(index);
        }
    }

    fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// Reads what the socket has, up to [`READ_BUDGET`].
    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.input.len() > SHRINK_AT {
                self.input.truncate(READ_CHUNK);
                self.input.shrink_to_fit();
            }
        } else if self.start >= READ_CHUNK {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut budget = READ_BUDGET;
        while budget > 0 {
            if self.input.len() < self.end + READ_CHUNK {
                self.input.resize(self.end + READ_CHUNK, 0);
            }
            match self.stream.read(&mut self.input[self.end..]) {
                Ok(0) => {
                    self.readable = false;
                    self.closing = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    budget = budget.saturating_sub(n);
                    self.liveness.heard();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.writable && self.has_output() {
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.written_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
            if self.output.capacity() > SHRINK_AT {
                self.output.shrink_to(READ_CHUNK);
            }
        } else if self.sent >= COMPACT_AT {
            self.output.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
    }
}

/// Why a connection is closed.
enum Close {
    Eof,
    Io(io::Error),
    Handshake(HandshakeError),
    Frame(zmtp::FrameError),
    Timeout(Duration),
    PeerError(String),
    Silent(Expiry),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => f.write_str("closed by the peer"),
            Close::Io(e) => write!(f, "{e}"),
            Close::Handshake(e) => write!(f, "{e}"),
            Close::Frame(e) => write!(f, "protocol error: {e}"),
            Close::Timeout(t) => write!(f, "no ZeroMQ handshake within {t:?}"),
            Close::PeerError(reason) => write!(f, "peer sent ERROR: {reason}"),
            Close::Silent(expiry) => write!(f, "{expiry}"),
        }
    }
}

/// Adaptive busy polling before blocking, after the guest halt-polling
/// algorithm. Before sleeping in `epoll_wait`, the loop polls without
/// blocking for up to `window`. The window follows the sleeps: a sleep that
/// ended (with an event) less than `max` after the loop went idle doubles
/// it (from `max / 16`, up to `max`); a longer one, or a timeout, closes it.
/// So a thread polls only while messages keep arriving less than `max`
/// apart, and a failed poll costs at most one small window before a long
/// sleep closes it. Waking a sleeping thread costs tens of microseconds on
/// some machines (virtual CPUs most of all); a thread that is still polling
/// sees the next message at once.
struct BusyPoll {
    max: Duration,
    window: Duration,
}

impl BusyPoll {
    fn new(max: Duration) -> BusyPoll {
        BusyPoll {
            max,
            window: Duration::ZERO,
        }
    }

    fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) || self.max.is_zero() {
            return poll.poll(events, timeout);
        }
        let idle_since = Instant::now();
        if !self.window.is_zero() {
            let window = timeout.map_or(self.window, |t| t.min(self.window));
            loop {
                poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    return Ok(());
                }
                if idle_since.elapsed() >= window {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        poll.poll(events, timeout)?;
        self.adapt(idle_since.elapsed(), !events.is_empty());
        Ok(())
    }

    /// After a sleep that lasted `gap` since the loop went idle and ended
    /// with an event (`woken`) or a timeout.
    fn adapt(&mut self, gap: Duration, woken: bool) {
        self.window = if woken && gap <= self.max {
            (self.window * 2).max(self.max / 16).min(self.max)
        } else {
            Duration::ZERO
        };
    }
}

/// A message a publisher sent that could not be queued yet.
#[derive(Debug, Clone, Copy)]
struct Stall {
    connection: usize,
    until: Instant,
}

/// The forwarding loop.
pub(super) struct Forwarder<'a> {
    sockets: Sockets,
    config: &'a Config,
    handle: &'a ShutdownHandle,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    /// Upstream subscriptions: prefix → number of subscribers holding it.
    upstream: HashMap<Vec<u8>, usize>,
    stall: Option<Stall>,
    /// Reused per message: subscribers it goes to / whose queue is full.
    targets: Vec<usize>,
    full: Vec<usize>,
    dirty: Vec<usize>,
    scratch: Vec<u8>,
    pub(super) reporter: Reporter,
    /// When a connection's heartbeats next need looking at.
    next_heartbeat: Option<Instant>,
}

impl<'a> Forwarder<'a> {
    pub(super) fn new(sockets: Sockets, config: &'a Config, handle: &'a ShutdownHandle) -> Self {
        Forwarder {
            sockets,
            config,
            handle,
            connections: Vec::new(),
            free: Vec::new(),
            upstream: HashMap::new(),
            stall: None,
            targets: Vec::new(),
            full: Vec::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            reporter: Reporter::new(config, handle.stats()),
            next_heartbeat: None,
        }
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.reporter.stats
    }

    pub(super) fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let mut spin = BusyPoll::new(self.config.busy_poll);
        loop {
            let now = Instant::now();
            let timeout = self.timeout(now);
            if let Err(e) = spin.wait(&mut self.sockets.poll, &mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in &events {
                match event.token() {
                    PUBLISHERS => self.accept(Role::Publisher),
                    SUBSCRIBERS => self.accept(Role::Subscriber),
                    WAKER => {}
                    Token(t) => {
                        let Some(Some(c)) = self.connections.get_mut(t - FIRST_CONNECTION) else {
                            continue;
                        };
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            c.readable = true;
                        }
                        if event.is_writable() || event.is_write_closed() || event.is_error() {
                            if !c.writable && event.is_writable() {
                                // The peer took bytes that were waiting.
                                c.liveness.progressed();
                            }
                            c.writable = true;
                            c.mark(t - FIRST_CONNECTION, &mut self.dirty);
                        }
                    }
                }
            }
            if self.handle.stop_requested() {
                if self.stall.take().is_some() {
                    // The held message dies with the backplane: count it.
                    self.stats().dropped += 1;
                }
                return Ok(());
            }
            let now = Instant::now();
            self.read_all(now);
            self.flush_all();
            if self.stall.is_some() {
                self.retry(now);
                self.flush_all();
            }
            self.expire_handshakes(now);
            self.heartbeats(now);
            self.report(now);
            // Closing a subscriber queues cancellations for publishers: close
            // before the last flush, so that they leave in this turn.
            self.close_finished();
            self.flush_all();
            self.handle.counters.store(self.reporter.stats);
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        let busy = self.connections.iter().flatten().any(|c| {
            c.readable
                && !c.closing
                && (self.stall.is_none() || c.role == Role::Subscriber || c.phase != Phase::Traffic)
        });
        if busy {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.reporter.next_report;
        let mut earliest = |t: Instant| {
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        };
        if let Some(s) = self.stall {
            earliest(s.until);
        }
        if let Some(t) = self.next_heartbeat {
            earliest(t);
        }
        for c in self.connections.iter().flatten() {
            if c.phase != Phase::Traffic {
                earliest(c.accepted + self.config.handshake_timeout);
            }
        }
        // Round up so the deadline has passed when poll returns.
        deadline.map(|d| d.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn accept(&mut self, role: Role) {
        let listener = match role {
            Role::Publisher => &self.sockets.publishers,
            Role::Subscriber => &self.sockets.subscribers,
        };
        loop {
            let (mut stream, peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, for example: the peer stays
                    // in the backlog and ZeroMQ retries.
                    log::warn!("backplane: cannot accept a {} connection: {e}", role.port());
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let index = self.free.pop().unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
            let registered = self.sockets.poll.registry().register(
                &mut stream,
                Token(FIRST_CONNECTION + index),
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = registered {
                log::warn!("backplane: cannot watch connection from {peer}: {e}");
                self.free.push(index);
                continue;
            }
            log::debug!("backplane: {} connection from {peer}", role.port());
            let mut c =
                Connection::new(stream, peer, role, Instant::now(), self.config.max_message);
            c.mark(index, &mut self.dirty);
            self.connections[index] = Some(c);
        }
    }

    /// Reads and handles input: subscribers and handshakes always, message
    /// data from publishers only while not stalled.
    fn read_all(&mut self, now: Instant) {
        for index in 0..self.connections.len() {
            let Some(c) = &self.connections[index] else {
                continue;
            };
            let publishing = c.role == Role::Publisher && c.phase == Phase::Traffic;
            if !c.readable || c.closing || (publishing && self.stall.is_some()) {
                continue;
            }
            self.read_connection(index, now);
        }
    }

    fn read_connection(&mut self, index: usize, now: Instant) {
        let Some(c) = self.connections[index].as_mut() else {
            return;
        };
        if let Err(e) = c.fill() {
            self.close(index, &Close::Io(e));
            return;
        }
        if let Err(reason) = self.handle_input(index, now) {
            self.close(index, &reason);
        }
    }

    /// Handles everything complete in a connection's input buffer.
    fn handle_input(&mut self, index: usize, now: Instant) -> std::result::Result<(), Close> {
        let Some(c) = self.connections[index].as_mut() else {
            return Ok(());
        };
        // The buffer is taken out so that messages can be copied from it
        // into other connections.
        let mut input = std::mem::take(&mut c.input);
        let (mut start, end) = (c.start, c.end);
        let result = self.handle_bytes(index, &mut input, &mut start, end, now);
        if let Some(c) = self.connections[index].as_mut() {
            c.input = input;
            c.start = start;
            if c.closing && result.is_ok() && c.phase != Phase::Traffic {
                return Err(Close::Eof);
            }
        }
        result
    }

    fn handle_bytes(
        &mut self,
        index: usize,
        input: &mut [u8],
        start: &mut usize,
        end: usize,
        now: Instant,
    ) -> std::result::Result<(), Close> {
        let max_message = self.config.max_message;
        loop {
            let Some(c) = self.connections[index].as_mut() else {
                return Ok(());
            };
            let buf = &input[*start..end];
            match c.phase {
                Phase::Greeting => {
                    self.scratch.clear();
                    let progress = c
                        .negotiation
                        .step(buf, c.role.our_type(), &mut self.scratch)
                        .map_err(Close::Handshake)?;
                    if !self.scratch.is_empty() {
                        c.push_control(&self.scratch);
                        c.mark(index, &mut self.dirty);
                    }
                    match progress {
                        zmtp::Progress::NeedMore => return Ok(()),
                        zmtp::Progress::V3 { minor } => {
                            *start += zmtp::GREETING_LEN;
                            c.phase = Phase::Ready;
                            self.scratch.clear();
                            zmtp::put_ready(&mut self.scratch, c.role.our_type());
                            c.push_control(&self.scratch);
                            c.mark(index, &mut self.dirty);
                            let pings = zmtp::heartbeat::has_heartbeats(minor);
                            self.start_heartbeats(index, now, pings);
                        }
                        zmtp::Progress::V2 { len, peer } => {
                            if !c.role.accepts(peer) {
                                return Err(Close::Handshake(HandshakeError::SocketType {
                                    peer: peer.to_owned(),
                                    port: c.role.port(),
                                }));
                            }
                            *start += len;
                            log::debug!("backplane: {} {peer} ready (ZMTP 2.0)", c.peer);
                            self.start_heartbeats(index, now, false);
                            self.ready(index);
                        }
                    }
                }
                Phase::Ready => match c.decoder.step(buf).map_err(Close::Frame)? {
                    Step::NeedMore => return Ok(()),
                    Step::Command { len, body } => {
                        let (name, data) = zmtp::split_command(&buf[body..len])
                            .map_err(|e| Close::Handshake(HandshakeError::BadReady(e)))?;
                        if name == b"ERROR" {
                            return Err(Close::PeerError(
                                String::from_utf8_lossy(data.get(1..).unwrap_or(&[])).into_owned(),
                            ));
                        }
                        if name != b"READY" {
                            return Err(Close::Handshake(HandshakeError::BadReady(
                                "first command is not READY",
                            )));
                        }
                        // No Socket-Type (RFC 37 says SHOULD): the port
                        // decides, as in libzmq.
                        let peer = zmtp::ready::socket_type(data).map_err(Close::Handshake)?;
                        if let Some(peer) = peer.as_deref().filter(|p| !c.role.accepts(p)) {
                            return Err(Close::Handshake(HandshakeError::SocketType {
                                peer: peer.to_owned(),
                                port: c.role.port(),
                            }));
                        }
                        *start += len;
                        log::debug!("backplane: {} {peer:?} ready", c.peer);
                        self.ready(index);
                    }
                    Step::Message { .. }
                    | Step::Oversize { .. }
                    | Step::Skipped(_)
                    | Step::Interleaved { .. } => {
                        return Err(Close::Handshake(HandshakeError::BadReady(
                            "message before READY",
                        )))
                    }
                },
                Phase::Traffic => {
                    if c.role == Role::Publisher && self.stall.is_some() {
                        return Ok(());
                    }
                    match c.decoder.step(buf).map_err(Close::Frame)? {
                        Step::NeedMore => return Ok(()),
                        Step::Skipped(n) => *start += n,
                        Step::Command { len, body } => {
                            *start += len;
                            self.command(index, &buf[body..len], now)?;
                        }
                        Step::Interleaved { at, len, body } => {
                            self.command(index, &buf[body..at + len], now)?;
                            // Cut it out of the message: the frames before it
                            // move up to its end.
                            input.copy_within(*start..*start + at, *start + len);
                            *start += len;
                        }
                        Step::Oversize { skip } => {
                            *start += skip;
                            self.reporter.stats.oversize += 1;
                            log::warn!(
                                "backplane: discarded a message over {} bytes from {} ({} port)",
                                max_message,
                                c.peer,
                                c.role.port()
                            );
                        }
                        Step::Message { len, first } => {
                            let message = &buf[..len];
                            let first = &message[first.0..first.1];
                            if c.role == Role::Subscriber {
                                *start += len;
                                self.subscriber_message(index, message, first);
                            } else if self.route(message, first, now, true) {
                                *start += len;
                            } else {
                                self.stall = Some(Stall {
                                    connection: index,
                                    until: now + self.config.stall,
                                });
                                self.stats().stalls += 1;
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// The handshake is done: traffic flows, and a publisher is told the
    /// union of the subscriptions.
    fn ready(&mut self, index: usize) {
        let Some(c) = self.connections[index].as_mut() else {
            return;
        };
        c.phase = Phase::Traffic;
        if c.role == Role::Publisher {
            self.scratch.clear();
            for topic in self.upstream.keys() {
                zmtp::put_subscription(&mut self.scratch, topic, true);
            }
            c.push_control(&self.scratch);
            c.mark(index, &mut self.dirty);
        }
    }

    fn command(
        &mut self,
        index: usize,
        body: &[u8],
        now: Instant,
    ) -> std::result::Result<(), Close> {
        let (name, data) =
            zmtp::split_command(body).map_err(|e| Close::Frame(zmtp::FrameError::BadCommand(e)))?;
        match name {
            b"PING" => {
                self.scratch.clear();
                zmtp::put_pong(&mut self.scratch, data);
                if let Some(c) = self.connections[index].as_mut() {
                    c.push_control(&self.scratch);
                    c.mark(index, &mut self.dirty);
                }
                self.ping_received(index, now, zmtp::ping_ttl(data));
            }
            b"ERROR" => {
                return Err(Close::PeerError(
                    String::from_utf8_lossy(data.get(1..).unwrap_or(&[])).into_owned(),
                ))
            }
            _ => {
                let is_subscriber = self.connections[index]
                    .as_ref()
                    .is_some_and(|c| c.role == Role::Subscriber);
                if let Some(s) = zmtp::command_subscription(name, data) {
                    if is_subscriber {
                        self.subscription(index, s);
                    }
                }
                // PONG and unknown commands are ignored, as the spec asks.
            }
        }
        Ok(())
    }

    fn subscription(&mut self, index: usize, s: Subscription<'_>) {
        let Some(c) = self.connections[index].as_mut() else {
            return;
        };
        // A set per connection, as libzmq's XPUB keeps: libzmq's SUB sends
        // SUBSCRIBE on every subscribe but CANCEL only on the last
        // unsubscribe, zmq.rs sends every CANCEL.
        let changed = match s {
            Subscription::Subscribe(topic) => {
                let new =
                    !c.subscriptions.contains(topic) && c.subscriptions.insert(topic.to_vec());
                new.then_some((topic, true))
            }
            Subscription::Cancel(topic) => c.subscriptions.remove(topic).then_some((topic, false)),
        };
        if let Some((topic, subscribe)) = changed {
            self.upstream_change(topic, subscribe);
        }
    }

    /// One subscriber gained or lost `topic`: tell publishers when the
    /// union changed.
    fn upstream_change(&mut self, topic: &[u8], subscribe: bool) {
        let tell = if subscribe {
            let n = self.upstream.entry(topic.to_vec()).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match self.upstream.get_mut(topic) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    self.upstream.remove(topic);
                    true
                }
                None => false,
            }
        };
        if !tell {
            return;
        }
        self.scratch.clear();
        zmtp::put_subscription(&mut self.scratch, topic, subscribe);
        for (i, c) in self.connections.iter_mut().enumerate() {
            if let Some(c) = c {
                if c.role == Role::Publisher && c.phase == Phase::Traffic {
                    c.push_control(&self.scratch);
                    c.mark(i, &mut self.dirty);
                }
            }
        }
    }

    /// Queues `message` (whole frames, bytes as received) for every
    /// subscriber whose subscriptions match `topic`. Returns `false` (and
    /// queues nothing) when a matching subscriber's queue is full, it is not
    /// in overflow and `may_stall`; otherwise full subscribers lose the
    /// message (counted) and it goes to the others.
    fn route(&mut self, message: &[u8], topic: &[u8], now: Instant, may_stall: bool) -> bool {
        let (hwm, max_bytes, stall) = (self.config.hwm, self.config.queue_bytes, self.config.stall);
        self.targets.clear();
        self.full.clear();
        let mut must_stall = false;
        for (i, c) in self.connections.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if c.role != Role::Subscriber || c.phase != Phase::Traffic || !c.wants(topic) {
                continue;
            }
            if c.is_full(hwm, max_bytes) {
                must_stall |= !c.in_overflow(now, stall);
                self.full.push(i);
            } else {
                self.targets.push(i);
            }
        }
        if must_stall && may_stall {
            return false;
        }
        for &i in &self.full {
            if let Some(c) = self.connections[i].as_mut() {
                c.overflow = Some(now);
            }
        }
        self.reporter.stats.dropped += self.full.len() as u64;
        for &i in &self.targets {
            if let Some(c) = self.connections[i].as_mut() {
                c.push_message(message);
                c.overflow = None;
                c.mark(i, &mut self.dirty);
            }
        }
        if self.targets.is_empty() {
            if self.full.is_empty() {
                self.reporter.stats.unmatched += 1;
            }
        } else {
            self.reporter.stats.forwarded += 1;
        }
        if !self.full.is_empty() {
            self.reporter.warn_if_due(now);
        }
        true
    }

    /// Retries the held message; at the deadline, delivers it to the
    /// subscribers with room and drops it for the others.
    fn retry(&mut self, now: Instant) {
        let Some(stall) = self.stall else { return };
        let may_stall = now < stall.until;
        let Some(c) = self.connections[stall.connection].as_mut() else {
            // The publisher went away; its message with it.
            self.stall = None;
            return;
        };
        let input = std::mem::take(&mut c.input);
        let buf = &input[c.start..c.end];
        // A fresh decoder: the held message is whole and not being skipped.
        let delivered = match Decoder::new(self.config.max_message).step(buf) {
            Ok(Step::Message { len, first }) => {
                let sent = self.route(&buf[..len], &buf[first.0..first.1], now, may_stall);
                if sent {
                    if let Some(c) = self.connections[stall.connection].as_mut() {
                        c.start += len;
                    }
                }
                sent
            }
            // Cannot happen (the message was complete when it stalled); do
            // not hold everything for it.
            _ => true,
        };
        if let Some(c) = self.connections[stall.connection].as_mut() {
            c.input = input;
        }
        if delivered {
            self.stall = None;
            // Handle what followed it in the same buffer.
            if let Err(reason) = self.handle_input(stall.connection, now) {
                self.close(stall.connection, &reason);
            }
        }
    }

    fn flush_all(&mut self) {
        while let Some(index) = self.dirty.pop() {
            let Some(c) = self.connections[index].as_mut() else {
                continue;
            };
            c.dirty = false;
            if let Err(e) = c.flush() {
                self.close(index, &Close::Io(e));
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        for index in 0..self.connections.len() {
            if let Some(c) = &self.connections[index] {
                let limit = self.config.handshake_timeout;
                if c.phase != Phase::Traffic && now >= c.accepted + limit {
                    self.close(index, &Close::Timeout(limit));
                }
            }
        }
    }

    fn report(&mut self, now: Instant) {
        self.reporter.warn_if_due(now);
        let Some(payload) = self.reporter.due(now) else {
            return;
        };
        let mut message = Vec::with_capacity(payload.len() + 32);
        zmtp::put_frame(&mut message, zmtp::MORE, super::STATS_TOPIC.as_bytes());
        zmtp::put_frame(&mut message, 0, &payload);
        let before = self.reporter.stats;
        self.route(&message, super::STATS_TOPIC.as_bytes(), now, false);
        // Our own reports are not forwarded messages, and nobody listening
        // to them is not news; a subscriber too full for one counts a drop.
        self.reporter.stats.forwarded = before.forwarded;
        self.reporter.stats.unmatched = before.unmatched;
        let dropped = before.dropped;
        if self.reporter.stats.dropped == dropped {
            self.reporter.reported();
        }
    }

    /// Closes connections whose peer finished sending.
    fn close_finished(&mut self) {
        for index in 0..self.connections.len() {
            let closing = self.connections[index].as_ref().is_some_and(|c| c.closing);
            // A publisher whose message is held keeps its buffer until the
            // stall ends.
            let held = self.stall.is_some_and(|s| s.connection == index);
            if closing && !held {
                self.close(index, &Close::Eof);
            }
        }
    }

    fn close(&mut self, index: usize, reason: &Close) {
        let Some(mut c) = self.connections[index].take() else {
            return;
        };
        self.free.push(index);
        let _ = self.sockets.poll.registry().deregister(&mut c.stream);
        if self.stall.is_some_and(|s| s.connection == index) {
            self.stall = None;
        }
        match reason {
            Close::Eof | Close::Io(_) => {
                log::debug!("backplane: {} ({} port): {reason}", c.peer, c.role.port());
            }
            Close::Silent(_) => {
                self.reporter.stats.expired += 1;
                log::warn!(
                    "backplane: closed connection from {} ({} port): {reason}",
                    c.peer,
                    c.role.port()
                );
            }
            _ => {
                self.reporter.stats.refused += 1;
                log::warn!(
                    "backplane: closed connection from {} ({} port): {reason}",
                    c.peer,
                    c.role.port()
                );
            }
        }
        let undelivered = c.queue_len() as u64;
        if undelivered > 0 {
            self.reporter.stats.undelivered += undelivered;
            log::warn!(
                "backplane: subscriber {} left with {undelivered} message(s) not yet sent to it",
                c.peer
            );
        }
        for topic in std::mem::take(&mut c.subscriptions) {
            self.upstream_change(&topic, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_poll_window_opens_on_short_gaps_and_closes_on_long_ones() {
        let max = Duration::from_micros(200);
        let mut busy = BusyPoll::new(max);
        let short = Duration::from_micros(50);
        // Short sleeps open the window and double it up to `max`.
        for expected in [12_500, 25_000, 50_000, 100_000, 200_000, 200_000] {
            busy.adapt(short, true);
            assert_eq!(busy.window, Duration::from_nanos(expected));
        }
        // A long sleep, or a timeout, closes it.
        busy.adapt(Duration::from_millis(1), true);
        assert_eq!(busy.window, Duration::ZERO);
        busy.adapt(short, true);
        busy.adapt(short, false);
        assert_eq!(busy.window, Duration::ZERO);

        // With a real poll: a pending event is taken while polling (the
        // window stays); nothing pending times out and closes the window.
        let mut poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), WAKER).unwrap();
        let mut events = Events::with_capacity(4);
        busy.window = max;
        waker.wake().unwrap();
        busy.wait(&mut poll, &mut events, None).unwrap();
        assert!(!events.is_empty());
        assert_eq!(busy.window, max);
        busy.wait(&mut poll, &mut events, Some(Duration::from_millis(2)))
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(busy.window, Duration::ZERO);
        // Off: the window never opens.
        let mut off = BusyPoll::new(Duration::ZERO);
        waker.wake().unwrap();
        off.wait(&mut poll, &mut events, None).unwrap();
        assert!(!events.is_empty());
        assert_eq!(off.window, Duration::ZERO);
    }

    /// A subscriber to "big" that never reads, with small kernel buffers,
    /// and a publisher that knows of it.
    fn stuck_subscriber_and_publisher(
        ctx: &zmq::Context,
        bp: &crate::Running,
    ) -> (zmq::Socket, banyan_component::Component) {
        use banyan_component::{Component, Config};
        let stuck = ctx.socket(zmq::SUB).unwrap();
        stuck.set_rcvhwm(1).unwrap();
        stuck.set_rcvbuf(4096).unwrap();
        stuck.set_linger(0).unwrap();
        stuck.set_subscribe(b"big").unwrap();
        stuck
            .connect(&format!("tcp://127.0.0.1:{}", bp.subscriber_port()))
            .unwrap();
        let c = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let mut publisher = Component::connect(c).unwrap();
        assert!(publisher
            .wait_for_subscriber("big", Duration::from_secs(10))
            .unwrap());
        (stuck, publisher)
    }

    #[test]
    fn byte_limit_fills_a_queue_before_the_message_limit() {
        use crate::{Backplane, Config as BpConfig};
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.hwm = 0; // no message limit: only bytes count
        cfg.queue_bytes = 256 * 1024;
        cfg.stall = Duration::from_millis(100);
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let ctx = zmq::Context::new();
        let (_stuck, mut publisher) = stuck_subscriber_and_publisher(&ctx, &bp);
        let big = rmpv::Value::Binary(vec![0x55; 32 * 1024]);
        const N: u64 = 300; // 9.6 MiB, far over 256 KiB + socket buffers
        for _ in 0..N {
            publisher.publish_value("big", &big).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let done = || {
            let s = bp.stats();
            s.forwarded + s.dropped == N
        };
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = bp.stats();
        assert_eq!(s.forwarded + s.dropped, N, "{s:?}");
        assert!(s.dropped > 0 && s.stalls > 0, "{s:?}");
        bp.stop().unwrap();
    }

    #[test]
    fn silent_connections_time_out_and_queued_messages_of_leavers_are_counted() {
        use crate::{Backplane, Config as BpConfig};
        use std::io::Read as _;
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.handshake_timeout = Duration::from_millis(200);
        cfg.hwm = 1000;
        cfg.stall = Duration::from_secs(5);
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        // A connection that never says anything is closed after 200 ms (it
        // gets the start of our greeting — the rest waits for its version,
        // see `zmtp::v2` — then end of file) and counted as refused.
        let mut silent = std::net::TcpStream::connect(("127.0.0.1", bp.publisher_port())).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut greeting = Vec::new();
        silent.read_to_end(&mut greeting).unwrap();
        assert_eq!(greeting, zmtp::v2::OPENING);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // A subscriber that stops reading, then leaves with messages queued
        // for it: they are counted as undelivered.
        let ctx = zmq::Context::new();
        let (stuck, mut publisher) = stuck_subscriber_and_publisher(&ctx, &bp);
        let big = rmpv::Value::Binary(vec![0x55; 32 * 1024]);
        for _ in 0..200 {
            publisher.publish_value("big", &big).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while bp.stats().forwarded < 200 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(bp.stats().forwarded, 200, "{:?}", bp.stats());
        drop(stuck);
        while bp.stats().undelivered == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = bp.stats();
        // 6.4 MiB cannot all have left through the stuck socket's buffers.
        assert!(s.undelivered > 0 && s.undelivered < 200, "{s:?}");
        assert_eq!((s.refused, s.dropped), (1, 0), "{s:?}");
        bp.stop().unwrap();
    }

    #[test]
    fn forwards_with_busy_polling() {
        use crate::{Backplane, Config as BpConfig};
        use banyan_component::{Component, Config};
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.busy_poll = Duration::from_micros(200);
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let c = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let mut publisher = Component::connect(c.clone()).unwrap();
        let mut subscriber = Component::connect(c).unwrap();
        subscriber.subscribe("t").unwrap();
        assert!(publisher
            .wait_for_subscriber("t", Duration::from_secs(10))
            .unwrap());
        for i in 0..200u32 {
            publisher.publish("t", &i).unwrap();
            let m = subscriber
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("a message");
            assert_eq!(m.decode::<u32>().unwrap(), i);
        }
        // The counters are published after each turn of the loop, which may
        // end just after the subscriber got the last message.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bp.stats().forwarded < 200 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(bp.stats().forwarded, 200);
        bp.stop().unwrap();
    }
}
