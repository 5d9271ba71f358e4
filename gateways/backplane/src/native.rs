//! The native engine: one thread, one `epoll` (through `mio`), ZMTP 3 spoken
//! directly (see [`banyan_zmtp`]). A message read from a publisher's TCP
//! connection is written to its subscribers' connections by the same thread
//! in the same turn: no hand-over to I/O threads, no copies but the one into
//! each subscriber's output buffer, frames forwarded byte for byte.
//!
//! Per connection state: unconsumed input (only while a message is partly
//! received: complete reads are handled straight from one shared read
//! buffer, so an idle connection holds no buffer), an output buffer with the
//! byte range of every queued message (the queue the high-water mark is
//! checked against), and the connection's limits. Subscriptions live in one
//! [`Index`] (the core's prefix index) keyed by connection: a message costs
//! one probe per distinct subscription length up to its topic's length,
//! then work only for the subscribers it goes to. Upstream subscriptions
//! are the union of all subscribers' (like XSUB/XPUB): a publisher is told a
//! topic when the first subscriber wants it and told to cancel when the
//! last one leaves.
//!
//! Work per turn is proportional to the connections that had an event (a
//! list of readable ones, a list of ones with output to flush, handshake
//! deadlines in a queue in accept order), never to the number of
//! connections. That scaffolding (the lists, the event dispatch, accepting
//! with retry, the deadlines) and the output queue are
//! [`banyan_zmtp::server`] and [`banyan_zmtp::output`], shared with the
//! services broker's native ROUTER.
//!
//! A subscriber whose queue is full loses the message (counted): nothing
//! waits for it, so no subscriber can hold up another. Memory is bounded by
//! the limits documented on [`Config`] and in `docs/lan.md` ("Limits").

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_core::topic::Index;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::heartbeat::{earliest, Expiry, Liveness};
use super::{Config, Error, Reporter, Result, ShutdownHandle, Stats};
use banyan_zmtp::busy::BusyPoll;
use banyan_zmtp::opening::{Opened, Opening, OpeningError};
use banyan_zmtp::output::{Output, Spare};
use banyan_zmtp::server::{self, read_some, AcceptRetry, Deadlines, Flags, Lists, Slots};
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
/// Unconsumed input up to this size is moved to the shared read buffer for
/// the next read; a larger part of a message is completed in the
/// connection's own buffer.
const SMALL_PENDING: usize = 16 * 1024;
/// A message at least this large that arrived in a buffer of its own is
/// queued for its subscribers by reference, not copied (see
/// [`banyan_zmtp::output`]).
const SHARE_AT: usize = 32 * 1024;
/// Bytes counted per subscription for the memory budget besides its prefix
/// (hash table entries, shared key).
pub(super) const SUBSCRIPTION_OVERHEAD: usize = 128;
/// Bytes counted per queued message besides the message (its range).
const QUEUE_ENTRY: usize = 16;
/// Minimum time between two warnings about limits in the log.
const WARN_EVERY: Duration = Duration::from_secs(5);

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

    /// This role's entry of a per-role pair.
    fn of<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [publishers, subscribers] = pair;
        match self {
            Role::Publisher => publishers,
            Role::Subscriber => subscribers,
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
    /// Unique per accepted connection (slots are reused).
    serial: u64,
    /// Unconsumed input is `input[start..]`; empty (no allocation) unless a
    /// message is partly received.
    input: Vec<u8>,
    start: usize,
    /// A large message being received: `big[..big_end]` (see
    /// `Forwarder::read_large`); empty otherwise.
    big: Vec<u8>,
    big_end: usize,
    /// Readable, writable, and where it is listed in the forwarder's
    /// [`Lists`].
    io: Flags,
    decoder: Decoder,
    /// Bytes queued for it, with the range of every queued message (the
    /// queue the high-water mark is checked against).
    out: Output,
    /// Subscriber: its queue was full for the last message for it (it is
    /// losing messages until one can be queued again).
    overflow: bool,
    /// The number of the last message routed to it (each subscriber gets a
    /// message once, however many of its prefixes match).
    stamp: u64,
    /// Publisher: unread output allowed on top of
    /// [`Config::control_queue_bytes`] (the subscription list it was sent
    /// on connecting).
    allowance: u64,
    /// When something was last written to it (or it connected).
    last_write: Instant,
    /// Subscriber: bytes its subscriptions count for the memory budget.
    sub_bytes: usize,
    /// Bytes counted for this connection in the forwarder's total.
    accounted: usize,
    /// The handshake (ZMTP 3.x or 2.0).
    opening: Opening,
    /// Heartbeats (see [`super::heartbeat`]).
    liveness: Liveness,
}

impl Connection {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        role: Role,
        serial: u64,
        max_command: usize,
        now: Instant,
    ) -> Connection {
        let mut out = Output::new();
        out.push_control(&zmtp::v2::OPENING);
        let accepts: fn(&str) -> bool = match role {
            Role::Publisher => |p| Role::Publisher.accepts(p),
            Role::Subscriber => |p| Role::Subscriber.accepts(p),
        };
        Connection {
            stream,
            peer,
            role,
            phase: Phase::Greeting,
            serial,
            input: Vec::new(),
            start: 0,
            big: Vec::new(),
            big_end: 0,
            io: Flags::new(),
            // Before READY nothing larger than a command is buffered.
            decoder: Decoder::with_limits(max_command, max_command),
            out,
            overflow: false,
            stamp: 0,
            allowance: 0,
            last_write: now,
            sub_bytes: 0,
            accounted: 0,
            opening: Opening::new(role.our_type(), role.port(), accepts, max_command),
            liveness: Liveness::default(),
        }
    }

    /// Bytes this connection holds, for the memory budget.
    fn held(&self) -> usize {
        self.out.unsent() as usize
            + (self.input.len() - self.start)
            + self.big.len()
            + self.out.ranges() * QUEUE_ENTRY
            + self.sub_bytes
    }

    /// Writes queued output until done or the socket is full; buffers of
    /// large messages written by their last queue go to `spare`.
    #[inline]
    fn flush(&mut self, now: Instant, spare: &mut Spare) -> io::Result<()> {
        if self
            .out
            .flush_to(&mut self.stream, &mut self.io.writable, spare)?
        {
            self.last_write = now;
        }
        Ok(())
    }
}

/// A message to route: bytes to copy into each queue, or the first `end`
/// bytes of a buffer of its own, queued by reference.
#[derive(Clone, Copy)]
enum Body<'m> {
    Copy(&'m [u8]),
    Shared(&'m Arc<Vec<u8>>, usize),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Copy(bytes) => bytes.len(),
            Body::Shared(_, end) => *end,
        }
    }
}

/// The end of the frame being received at the start of `buf` (whole
/// frames of a message skipped, and commands between them), when its
/// header is in and it is not complete; `None` when the headers are not
/// all in, or the message (or a command at the start) is complete.
fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let h = zmtp::parse_header(buf.get(at..)?).ok()??;
        let end = at
            .checked_add(h.header_len)?
            .checked_add(usize::try_from(h.body_len).ok()?)?;
        if end > buf.len() {
            return Some(end);
        }
        if (h.command() && at == 0) || (!h.command() && !h.more()) {
            return None;
        }
        at = end;
    }
}

/// A buffer for a large message whose first bytes are `data`: sized for
/// the frame being received when its header is in (and the message within
/// `limit`), else for one more read; a spare one if one is large enough
/// (no pages to fault in, nothing to zero), else a zeroed one. Holds
/// `data` at its start.
fn big_buffer(spare: &mut Spare, data: &[u8], limit: usize) -> Vec<u8> {
    let want = frame_end(data)
        .filter(|&n| n > data.len() && n <= limit)
        .unwrap_or(data.len() + READ_CHUNK);
    let mut big = spare.take(want).unwrap_or_else(|| vec![0; want]);
    if let Some(head) = big.get_mut(..data.len()) {
        head.copy_from_slice(data);
    }
    big
}

/// Why a connection is closed.
enum Close {
    Eof,
    Io(io::Error),
    Handshake(HandshakeError),
    Frame(zmtp::FrameError),
    Timeout(Duration),
    PeerError(String),
    /// A limit of the backplane's (see [`Config`]).
    Limit(String),
    /// Heartbeats: the peer went silent.
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
            Close::Limit(what) => f.write_str(what),
            Close::Silent(expiry) => write!(f, "{expiry}"),
        }
    }
}

/// Why a failed handshake closes the connection.
fn opening_failed(e: OpeningError, max_command: usize) -> Close {
    match e {
        OpeningError::Handshake(HandshakeError::PeerError(reason)) => Close::PeerError(reason),
        OpeningError::Handshake(e) => Close::Handshake(e),
        OpeningError::Frame(e) => Close::Frame(e),
        OpeningError::Oversize(_) => Close::Limit(format!(
            "handshake command over {max_command} bytes (--max-command)"
        )),
        // (A future kind of failure: a refusal like the others.)
        _ => Close::Limit(e.to_string()),
    }
}

/// The forwarding loop.
pub(super) struct Forwarder<'a> {
    sockets: Sockets,
    config: &'a Config,
    handle: &'a ShutdownHandle,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    /// Every subscriber's subscriptions, by connection slot.
    index: Index<usize>,
    /// Publishers past their handshake (they are told subscriptions).
    publishers: Vec<usize>,
    /// Connections that may have input, and ones with output to flush.
    lists: Lists,
    /// Handshake deadlines in accept order.
    handshakes: Deadlines,
    /// Per port: retrying `accept` after it failed (out of descriptors or
    /// memory).
    accept_retry: [AcceptRetry; 2],
    next_serial: u64,
    /// Number of the message being routed (see `Connection::stamp`).
    seq: u64,
    /// Bytes held for connections and subscriptions (see
    /// `Connection::held`), checked against [`Config::memory_budget`].
    memory: usize,
    /// Shared read buffer: reads of connections without partial input land
    /// here.
    rx: Vec<u8>,
    /// Reused per message: subscribers it goes to.
    targets: Vec<usize>,
    scratch: Vec<u8>,
    /// Buffers of large messages written to all their subscribers, for
    /// the next ones (given back when the loop is idle).
    spare: Spare,
    last_limit_warn: Option<Instant>,
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
            index: Index::new(),
            publishers: Vec::new(),
            lists: Lists::new(),
            handshakes: Deadlines::new(),
            accept_retry: [AcceptRetry::default(); 2],
            next_serial: 0,
            seq: 0,
            memory: 0,
            rx: vec![0; SMALL_PENDING + READ_CHUNK],
            targets: Vec::new(),
            scratch: Vec::new(),
            spare: Spare::default(),
            last_limit_warn: None,
            reporter: Reporter::new(config, handle.stats()),
            next_heartbeat: None,
        }
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.reporter.stats
    }

    /// Logs a limit being hit, at most every [`WARN_EVERY`].
    fn limit_warn(&mut self, now: Instant, what: impl FnOnce() -> String) {
        if self
            .last_limit_warn
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            return;
        }
        self.last_limit_warn = Some(now);
        log::warn!(
            "backplane: {} (further limit warnings for 5 s suppressed)",
            what()
        );
    }

    /// The memory budget is set and `extra` more bytes would exceed it.
    fn over_budget(&self, extra: usize) -> bool {
        let budget = self.config.memory_budget;
        budget > 0 && self.memory.saturating_add(extra) > budget
    }

    /// Less than an eighth of the memory budget is free: new peers are
    /// refused (shedding brings the total back under seven eighths when a
    /// message does not fit).
    fn budget_reached(&self) -> bool {
        let budget = self.config.memory_budget;
        budget > 0 && self.memory > budget - budget / 8
    }

    /// Updates the memory total after connection `index` changed.
    fn touch(&mut self, index: usize) {
        if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
            let held = c.held();
            self.memory = self.memory - c.accounted + held;
            c.accounted = held;
        }
    }

    pub(super) fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let mut spin = BusyPoll::new(self.config.busy_poll);
        loop {
            let now = Instant::now();
            let timeout = self.timeout(now);
            let poll = &mut self.sockets.poll;
            let waited = spin.wait(timeout, |t| {
                poll.poll(&mut events, t)?;
                Ok(!events.is_empty())
            });
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            if events.is_empty() && timeout != Some(Duration::ZERO) {
                // A timeout: nothing is moving, give the spare buffers back.
                self.spare.clear();
            }
            for event in &events {
                match event.token() {
                    PUBLISHERS => self.accept(Role::Publisher, now),
                    SUBSCRIBERS => self.accept(Role::Subscriber, now),
                    WAKER => {}
                    Token(t) => {
                        let index = t - FIRST_CONNECTION;
                        let Some(Some(c)) = self.connections.get_mut(index) else {
                            continue;
                        };
                        if self.lists.event(index, &mut c.io, event) {
                            // The peer took bytes that were waiting.
                            c.liveness.progressed();
                        }
                    }
                }
            }
            if self.handle.stop_requested() {
                return Ok(());
            }
            server::read_all(self, now);
            self.expire_handshakes(now);
            self.heartbeats(now);
            self.report(now);
            // Closing a subscriber queues cancellations for publishers:
            // flush after everything else, so that they leave in this turn.
            server::flush_all(self, now);
            self.retry_accepts(now);
            self.handle.counters.store(self.reporter.stats);
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.lists.has_ready() {
            return Some(Duration::ZERO);
        }
        let mut at = earliest(self.reporter.next_report, self.handshakes.next());
        for retry in &self.accept_retry {
            at = earliest(at, retry.at());
        }
        server::poll_timeout(earliest(at, self.next_heartbeat), now)
    }

    fn accept(&mut self, role: Role, now: Instant) {
        loop {
            let listener = match role {
                Role::Publisher => &self.sockets.publishers,
                Role::Subscriber => &self.sockets.subscribers,
            };
            let accepted = role.of(&mut self.accept_retry).accept(listener, now, |e| {
                log::warn!(
                    "backplane: cannot accept a {} connection: {e} (retrying every {} ms)",
                    role.port(),
                    server::ACCEPT_RETRY.as_millis()
                );
            });
            let Some((mut stream, peer)) = accepted else {
                return;
            };
            if self.budget_reached() {
                // Refuse new peers while the memory budget is used up.
                drop(stream);
                self.stats().refused += 1;
                let (memory, budget) = (self.memory, self.config.memory_budget);
                self.limit_warn(now, || {
                    format!(
                        "refused a {} connection from {peer}: memory budget reached \
                         ({memory} of {budget} bytes, --memory-budget)",
                        role.port()
                    )
                });
                continue;
            }
            let adopted = server::adopt(
                self.sockets.poll.registry(),
                &mut stream,
                &mut self.connections,
                &mut self.free,
                FIRST_CONNECTION,
            );
            let index = match adopted {
                Ok(index) => index,
                Err(e) => {
                    log::warn!("backplane: cannot watch connection from {peer}: {e}");
                    continue;
                }
            };
            log::debug!("backplane: {} connection from {peer}", role.port());
            self.next_serial += 1;
            let serial = self.next_serial;
            let mut c = Connection::new(stream, peer, role, serial, self.config.max_command, now);
            self.lists.mark(index, &mut c.io);
            self.lists.list(index, &mut c.io);
            self.handshakes
                .push(now + self.config.handshake_timeout, index, serial);
            match self.connections.get_mut(index) {
                Some(slot) => *slot = Some(c),
                // (Cannot happen: `index` was just taken from `free` or
                // pushed.)
                None => continue,
            }
            self.touch(index);
        }
    }

    /// Retries a failed `accept` when a descriptor may be free again.
    fn retry_accepts(&mut self, now: Instant) {
        for role in [Role::Publisher, Role::Subscriber] {
            if role.of(&mut self.accept_retry).due(now) {
                self.accept(role, now);
            }
        }
    }

    /// Reads what one connection has (up to [`READ_BUDGET`]) and handles
    /// it; closes the connection at end of file or on an error.
    #[expect(
        clippy::indexing_slicing,
        reason = "`pending` is at most SMALL_PENDING (the branch) and `rx` holds \
                  SMALL_PENDING + READ_CHUNK; `start <= end <= rx.len()` (handle_bytes only \
                  advances within its buffer)"
    )]
    fn read_connection(&mut self, index: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
                return;
            };
            let pending = c.input.len() - c.start;
            let (read, asked, handled) = if pending > SMALL_PENDING || c.big_end > 0 {
                self.read_large(index, now)
            } else {
                // The usual case: read into the shared buffer after what is
                // left of a partial message, keep only what is left then.
                let mut rx = std::mem::take(&mut self.rx);
                rx[..pending].copy_from_slice(&c.input[c.start..]);
                let asked = rx.len() - pending;
                let read = read_some(&mut c.stream, &mut rx[pending..]);
                let end = pending + *read.as_ref().unwrap_or(&0);
                let mut start = 0;
                let handled = self.handle_bytes(index, &mut rx[..end], &mut start, now);
                let rest = &rx[start..end];
                let limit = self.message_limit(rest.len());
                if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
                    c.start = 0;
                    if rest.len() > SMALL_PENDING {
                        // A large message arriving: on in a buffer of its
                        // own (see `read_large`).
                        c.big = big_buffer(&mut self.spare, rest, limit);
                        c.big_end = rest.len();
                        c.input = Vec::new();
                    } else {
                        c.input = rest.to_vec();
                    }
                }
                self.rx = rx;
                (read, asked, handled)
            };
            self.touch(index);
            if let Err(reason) = handled {
                self.close(index, &reason);
                return;
            }
            match read {
                Ok(0) => {
                    self.close(index, &Close::Eof);
                    return;
                }
                Ok(n) => {
                    let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
                        return;
                    };
                    c.liveness.heard();
                    if n < asked && !c.io.read_closed {
                        // A short read took all the socket had (epoll(7)):
                        // the next bytes bring a new edge. No read that
                        // would only say `WouldBlock`. (Not after the
                        // peer's FIN: its end of file is behind the data,
                        // and no edge will come for it.)
                        c.io.readable = false;
                        return;
                    }
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
                        c.io.readable = false;
                    }
                    return;
                }
                Err(e) => {
                    self.close(index, &Close::Io(e));
                    return;
                }
            }
        }
    }

    /// One read for a large message arriving (more than [`SMALL_PENDING`]
    /// bytes of it are in): it is completed in a buffer of its own
    /// (`Connection::big`), sized from the headers for the frame being
    /// received and read straight up to that frame's end, so that a whole
    /// message is usually alone in its buffer; then it is queued for its
    /// subscribers by reference ([`Forwarder::take_whole`]), else handled
    /// as any input. Returns the read's result, how many bytes it asked
    /// for, and the handling's.
    #[expect(
        clippy::indexing_slicing,
        reason = "`big_end <= target <= big.len()` (the resize), `pending` bytes fit in \
                  `big` (it is at least `pending + 1` long), `start <= big_end` \
                  (handle_bytes only advances within its buffer)"
    )]
    fn read_large(
        &mut self,
        index: usize,
        now: Instant,
    ) -> (io::Result<usize>, usize, std::result::Result<(), Close>) {
        let pending = self
            .connections
            .get(index)
            .and_then(Option::as_ref)
            .map_or(0, |c| c.big_end + c.input.len() - c.start);
        let limit = self.message_limit(pending);
        let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
            return (Ok(0), 1, Ok(()));
        };
        if c.big_end == 0 {
            // Move the start of the message into a buffer of its own: the
            // spare one if it is large enough (no pages to fault in again),
            // else a zeroed one of the size the headers announce.
            let data = c.input.get(c.start..).unwrap_or(&[]);
            c.big = big_buffer(&mut self.spare, data, limit);
            c.big_end = data.len();
            c.input = Vec::new();
            c.start = 0;
        }
        let end = c.big_end;
        let target = frame_end(&c.big[..end])
            .filter(|&n| n > end && n <= limit)
            .unwrap_or(end + READ_CHUNK);
        if c.big.len() < target {
            c.big.resize(target, 0);
        }
        let asked = target - end;
        let read = read_some(&mut c.stream, &mut c.big[end..target]);
        c.big_end += *read.as_ref().unwrap_or(&0);
        let mut big = std::mem::take(&mut c.big);
        let end = std::mem::take(&mut c.big_end);
        let handled = match self.take_whole(index, &mut big, end, limit, now) {
            Some(handled) => handled,
            None => {
                let mut start = 0;
                let handled = self.handle_bytes(index, &mut big[..end], &mut start, now);
                if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
                    let rest = end - start;
                    if rest > SMALL_PENDING {
                        // Still a large message in progress.
                        big.copy_within(start..end, 0);
                        c.big = std::mem::take(&mut big);
                        c.big_end = rest;
                    } else if rest > 0 {
                        c.input = big[start..end].to_vec();
                        c.start = 0;
                    }
                }
                if !big.is_empty() {
                    self.spare.keep(big);
                }
                handled
            }
        };
        (read, asked, handled)
    }

    /// If `big[..end]` holds exactly one whole message from publisher
    /// `index` of at least [`SHARE_AT`] bytes, routes it by reference
    /// (taking `big`) and returns `Some`; else leaves everything as it was.
    #[expect(
        clippy::indexing_slicing,
        reason = "`end <= big.len()` (the caller's read); a decoder step's \
                  `first` lies within the bytes it was given"
    )]
    fn take_whole(
        &mut self,
        index: usize,
        big: &mut Vec<u8>,
        end: usize,
        limit: usize,
        now: Instant,
    ) -> Option<std::result::Result<(), Close>> {
        let c = self.connections.get_mut(index)?.as_mut()?;
        if c.role != Role::Publisher || c.phase != Phase::Traffic || end < SHARE_AT {
            return None;
        }
        let mut decoder = c.decoder;
        decoder.set_max_message(limit);
        let Ok(Step::Message { len, first }) = decoder.step(&big[..end]) else {
            return None;
        };
        if len != end {
            return None;
        }
        c.decoder = decoder;
        let buf = Arc::new(std::mem::take(big));
        let topic = &buf[first.0..first.1];
        self.route(Body::Shared(&buf, end), topic, now);
        // Written already, or queued nowhere: the buffer is free again.
        self.spare.offer(buf);
        Some(Ok(()))
    }

    /// The largest message publisher `index` may send now: the configured
    /// limit, lowered to what the memory budget has room for (never below
    /// one read's worth).
    fn message_limit(&self, pending: usize) -> usize {
        let max = self.config.max_message;
        let budget = self.config.memory_budget;
        if budget == 0 {
            return max;
        }
        let room = budget.saturating_sub(self.memory).saturating_add(pending);
        max.min(room.max(READ_CHUNK))
    }

    /// Handles everything complete in `input[*start..]`.
    #[expect(
        clippy::indexing_slicing,
        reason = "callers pass `*start <= input.len()`; the offsets of a decoder \
                  step (`body`, `at`, `len`, `first`) lie within the buffer it was given"
    )]
    fn handle_bytes(
        &mut self,
        index: usize,
        input: &mut [u8],
        start: &mut usize,
        now: Instant,
    ) -> std::result::Result<(), Close> {
        loop {
            let limit = match self.connections.get(index).and_then(Option::as_ref) {
                Some(c) if c.role == Role::Publisher && c.phase == Phase::Traffic => {
                    Some(self.message_limit(input.len() - *start))
                }
                Some(_) => None,
                None => return Ok(()),
            };
            let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
                return Ok(());
            };
            if let Some(limit) = limit {
                c.decoder.set_max_message(limit);
            }
            let buf = &input[*start..];
            let max_command = self.config.max_command;
            match c.phase {
                Phase::Greeting | Phase::Ready => {
                    self.scratch.clear();
                    let step = c.opening.step(buf, &mut self.scratch);
                    if !self.scratch.is_empty() {
                        c.out.push_control(&self.scratch);
                        self.lists.mark(index, &mut c.io);
                    }
                    match step.map_err(|e| opening_failed(e, max_command))? {
                        Opened::NeedMore => return Ok(()),
                        Opened::Greeted { len, minor } => {
                            *start += len;
                            c.phase = Phase::Ready;
                            let pings = zmtp::heartbeat::has_heartbeats(minor);
                            self.start_heartbeats(index, now, pings);
                        }
                        Opened::Ready { len, peer } => {
                            *start += len;
                            let version = if peer.zmtp2 { " (ZMTP 2.0)" } else { "" };
                            log::debug!(
                                "backplane: {} {:?} ready{version}",
                                c.peer,
                                peer.socket_type
                            );
                            if peer.zmtp2 {
                                self.start_heartbeats(index, now, false);
                            }
                            self.ready(index);
                        }
                    }
                }
                Phase::Traffic => match c.decoder.step(buf).map_err(Close::Frame)? {
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
                        let size = c.decoder.oversize_len();
                        let (peer, role) = (c.peer, c.role);
                        let limit = c.decoder.max_message();
                        if role == Role::Publisher && (size as usize) <= self.config.max_message {
                            // Under the size limit, over the memory left.
                            self.reporter.stats.shed += 1;
                            self.reporter.stats.dropped += 1;
                            self.limit_warn(now, || {
                                format!(
                                    "discarded a message of {size} bytes from {peer}: the memory \
                                     budget had room for {limit} (--memory-budget)"
                                )
                            });
                        } else {
                            self.reporter.stats.oversize += 1;
                            log::warn!(
                                "backplane: discarded a message or command of {size} bytes \
                                 from {peer} ({} port): over {} bytes",
                                role.port(),
                                match role {
                                    Role::Publisher => "the --max-message of",
                                    Role::Subscriber => "the --max-command of",
                                }
                                .to_owned()
                                    + &limit.to_string()
                            );
                        }
                    }
                    Step::Message { len, first } => {
                        *start += len;
                        let message = &buf[..len];
                        let first = &message[first.0..first.1];
                        if c.role == Role::Subscriber {
                            self.subscriber_message(index, message, first, now);
                        } else {
                            self.route(Body::Copy(message), first, now);
                        }
                    }
                },
            }
        }
    }

    /// The handshake is done (READY, or a ZMTP 2.0 greeting): traffic
    /// flows with the role's limits, and a publisher is told the union of
    /// the subscriptions.
    fn ready(&mut self, index: usize) {
        let (max_message, max_command) = (self.config.max_message, self.config.max_command);
        let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        c.phase = Phase::Traffic;
        if c.role == Role::Publisher {
            c.decoder = Decoder::with_limits(max_message, max_command);
            self.scratch.clear();
            for topic in self.index.topics() {
                zmtp::put_subscription(&mut self.scratch, topic, true);
            }
            c.out.push_control(&self.scratch);
            c.allowance = self.scratch.len() as u64;
            self.lists.mark(index, &mut c.io);
            self.publishers.push(index);
            self.touch(index);
        } else {
            // Subscribers send subscriptions: nothing larger than a command
            // is buffered for them.
            c.decoder = Decoder::with_limits(max_command, max_command);
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
                // Its time to live counts whether or not it gets an answer.
                self.ping_received(index, now, zmtp::ping_ttl(data));
                let limit = self.config.control_queue_bytes as u64;
                let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
                    return Ok(());
                };
                if limit > 0 && c.out.unsent() >= limit {
                    // It does not read what we send: no more answers.
                    let peer = c.peer;
                    self.reporter.stats.limited += 1;
                    self.limit_warn(now, || {
                        format!(
                            "not answering PINGs of {peer}: it does not read \
                             (--control-queue-bytes)"
                        )
                    });
                    return Ok(());
                }
                self.scratch.clear();
                zmtp::put_pong(&mut self.scratch, data);
                c.out.push_control(&self.scratch);
                self.lists.mark(index, &mut c.io);
                self.touch(index);
            }
            b"ERROR" => {
                return Err(Close::PeerError(
                    String::from_utf8_lossy(data.get(1..).unwrap_or(&[])).into_owned(),
                ))
            }
            _ => {
                let is_subscriber = self
                    .connections
                    .get(index)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.role == Role::Subscriber);
                if let Some(s) = zmtp::command_subscription(name, data) {
                    if is_subscriber {
                        self.subscription(index, s, now);
                    }
                }
                // PONG and unknown commands are ignored, as the spec asks.
            }
        }
        Ok(())
    }

    /// A subscription or cancel from subscriber `index`. Its subscriptions
    /// are a set, as libzmq's XPUB keeps them: libzmq's SUB sends SUBSCRIBE
    /// on every subscribe but CANCEL only on the last unsubscribe, zmq.rs
    /// sends every CANCEL. So a SUBSCRIBE for a (subscriber, topic) pair the
    /// index holds changes nothing, and one CANCEL removes the pair (its
    /// count in the index is never above 1).
    fn subscription(&mut self, index: usize, s: Subscription<'_>, now: Instant) {
        match s {
            Subscription::Subscribe(topic) => {
                if self.index.count(index, topic) > 0 {
                    return;
                }
                let max = self.config.max_subscriptions;
                let cost = SUBSCRIPTION_OVERHEAD + topic.len();
                let why = if max > 0 && self.index.subscriber_len(index) >= max {
                    Some("--max-subscriptions")
                } else if self.over_budget(cost) {
                    Some("--memory-budget")
                } else {
                    None
                };
                if let Some(why) = why {
                    self.reporter.stats.limited += 1;
                    let peer = self
                        .connections
                        .get(index)
                        .and_then(Option::as_ref)
                        .map(|c| c.peer);
                    let n = self.index.subscriber_len(index);
                    self.limit_warn(now, || {
                        format!("ignored a subscription of {peer:?} (it holds {n}): {why} reached")
                    });
                    return;
                }
                let Ok(new_upstream) = self.index.subscribe(index, topic) else {
                    // (Unreachable: a new pair's count is 1.)
                    self.reporter.stats.limited += 1;
                    return;
                };
                if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
                    c.sub_bytes += cost;
                }
                self.touch(index);
                super::census::subscribed(&mut self.reporter, topic);
                if new_upstream {
                    self.upstream_change(topic, true, now);
                }
            }
            Subscription::Cancel(topic) => {
                // Not subscribed: nothing to cancel (NotSubscribed).
                let Ok(gone) = self.index.unsubscribe(index, topic) else {
                    return;
                };
                if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
                    c.sub_bytes -= SUBSCRIPTION_OVERHEAD + topic.len();
                }
                self.touch(index);
                if gone {
                    self.upstream_change(topic, false, now);
                }
            }
        }
    }

    /// `topic` entered or left the union of all subscriptions: tell every
    /// publisher. A publisher with more than its allowance unread is
    /// disconnected (it reconnects and is told the whole union again) if it
    /// has read nothing for [`Config::handshake_timeout`], or if the memory
    /// budget is used up.
    fn upstream_change(&mut self, topic: &[u8], subscribe: bool, now: Instant) {
        self.scratch.clear();
        zmtp::put_subscription(&mut self.scratch, topic, subscribe);
        let limit = self.config.control_queue_bytes as u64;
        let idle = self.config.handshake_timeout;
        let over_budget = self.over_budget(self.scratch.len());
        let mut k = 0;
        while k < self.publishers.len() {
            let Some(&i) = self.publishers.get(k) else {
                break;
            };
            k += 1;
            let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let behind = limit > 0 && c.out.unsent() > limit + c.allowance;
            let stuck = now.saturating_duration_since(c.last_write) >= idle;
            if behind && (stuck || over_budget) {
                let peer = c.peer;
                let why = if stuck {
                    "it does not read the subscriptions sent to it (--control-queue-bytes)"
                } else {
                    "subscriptions sent to it are unread and the memory budget is used up"
                };
                self.limit_warn(now, || format!("disconnecting publisher {peer}: {why}"));
                self.close(i, &Close::Limit(why.into()));
                k -= 1; // `close` removed it from the list
                continue;
            }
            c.out.push_control(&self.scratch);
            self.lists.mark(i, &mut c.io);
            self.touch(i);
        }
    }

    /// Queues `message` (whole frames, bytes as received) for every
    /// subscriber whose subscriptions match `topic`. A subscriber whose
    /// queue is full loses it (counted), the others get it. Over the memory
    /// budget, the largest queues lose their newest messages first.
    fn route(&mut self, message: Body<'_>, topic: &[u8], now: Instant) {
        let (hwm, max_bytes) = (self.config.hwm, self.config.queue_bytes);
        self.seq += 1;
        let seq = self.seq;
        self.targets.clear();
        for (_, id) in self.index.matching(topic) {
            if let Some(Some(c)) = self.connections.get_mut(id) {
                if c.stamp != seq && c.phase == Phase::Traffic {
                    c.stamp = seq;
                    self.targets.push(id);
                }
            }
        }
        if self.targets.is_empty() {
            self.reporter.stats.unmatched += 1;
            return;
        }
        let cost = message.len() + QUEUE_ENTRY;
        let mut delivered = false;
        let mut lost = false;
        for k in 0..self.targets.len() {
            let Some(&i) = self.targets.get(k) else {
                break;
            };
            let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.out.is_full(hwm, max_bytes) && c.io.writable {
                // Full only if the socket takes nothing more now: a burst
                // read in one turn must not count against a subscriber
                // that keeps up. (An error closes it at the next flush.)
                if c.flush(now, &mut self.spare).is_err() {
                    self.lists.mark(i, &mut c.io);
                }
                self.touch(i);
            }
            let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.out.is_full(hwm, max_bytes) {
                if !c.overflow {
                    c.overflow = true;
                    self.reporter.stats.stalls += 1;
                }
                self.reporter.stats.dropped += 1;
                lost = true;
                continue;
            }
            if self.over_budget(cost) {
                self.shed(cost);
                if self.over_budget(cost) {
                    self.reporter.stats.dropped += 1;
                    self.reporter.stats.shed += 1;
                    lost = true;
                    continue;
                }
            }
            if let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) {
                match message {
                    Body::Copy(bytes) => c.out.push_message(bytes),
                    Body::Shared(buf, end) => c.out.push_shared_message(buf, 0, end),
                }
                c.overflow = false;
                self.lists.mark(i, &mut c.io);
                delivered = true;
            }
            self.touch(i);
        }
        if delivered {
            self.reporter.stats.forwarded += 1;
        }
        if lost {
            self.reporter.warn_if_due(now);
        }
    }

    /// Over the memory budget: drops the newest queued messages of the
    /// largest queues until `need` more bytes fit with an eighth of the
    /// budget to spare (so that this runs rarely). Counted in `dropped` and
    /// `shed`.
    fn shed(&mut self, need: usize) {
        let budget = self.config.memory_budget;
        let low = budget - budget / 8;
        let fits = |memory: usize| memory.saturating_add(need) <= low;
        let mut tried = Vec::new();
        while !fits(self.memory) {
            let largest = self
                .connections
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.as_ref()?)))
                .filter(|(i, c)| c.role == Role::Subscriber && !tried.contains(i))
                .max_by_key(|(_, c)| c.out.unsent())
                .map(|(i, _)| i);
            let Some(i) = largest else { break };
            tried.push(i);
            let mut n = 0u64;
            while !fits(self.memory) {
                let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) else {
                    break;
                };
                if c.out.unsent() == 0 || c.out.pop_newest().is_none() {
                    break;
                }
                n += 1;
                self.touch(i);
            }
            if n > 0 {
                self.reporter.stats.dropped += n;
                self.reporter.stats.shed += n;
                if let Some(c) = self.connections.get(i).and_then(Option::as_ref) {
                    log::warn!(
                        "backplane: memory budget ({budget} bytes, --memory-budget) reached: \
                         dropped the {n} newest message(s) queued for {}, the largest queue",
                        c.peer
                    );
                }
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(index) = self.handshakes.expired(now, |index, serial| {
            self.connections
                .get(index)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.serial == serial && c.phase != Phase::Traffic)
        }) {
            self.close(index, &Close::Timeout(self.config.handshake_timeout));
        }
    }

    fn report(&mut self, now: Instant) {
        self.reporter.warn_if_due(now);
        let Some(mut value) = self.reporter.due_value(now) else {
            return;
        };
        let mut by_subscriber: std::collections::BTreeMap<usize, Vec<&[u8]>> =
            std::collections::BTreeMap::new();
        for (id, topic, _) in self.index.iter() {
            by_subscriber.entry(id).or_default().push(topic);
        }
        super::census::add_subscribers(
            &mut value,
            by_subscriber.into_iter().filter_map(|(id, topics)| {
                let c = self.connections.get(id)?.as_ref()?;
                (c.role == Role::Subscriber && c.phase == Phase::Traffic)
                    .then(|| topics.into_iter())
            }),
        );
        let payload = banyan_component::wire::encode_value(&value);
        let mut message = Vec::with_capacity(payload.len() + 32);
        zmtp::put_frame(&mut message, zmtp::MORE, super::STATS_TOPIC.as_bytes());
        zmtp::put_frame(&mut message, 0, &payload);
        let before = self.reporter.stats;
        self.route(Body::Copy(&message), super::STATS_TOPIC.as_bytes(), now);
        // Our own reports are not forwarded messages, and nobody listening
        // to them is not news; a subscriber too full for one counts a drop.
        self.reporter.stats.forwarded = before.forwarded;
        self.reporter.stats.unmatched = before.unmatched;
        let dropped = before.dropped;
        if self.reporter.stats.dropped == dropped {
            self.reporter.reported();
        }
    }

    fn close(&mut self, index: usize, reason: &Close) {
        let Some(mut c) = self.connections.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.free.push(index);
        for retry in &mut self.accept_retry {
            retry.closed();
        }
        self.memory -= c.accounted;
        let _ = self.sockets.poll.registry().deregister(&mut c.stream);
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
        let undelivered = c.out.queue_len() as u64;
        if undelivered > 0 {
            self.reporter.stats.undelivered += undelivered;
            log::warn!(
                "backplane: subscriber {} left with {undelivered} message(s) not yet sent to it",
                c.peer
            );
        }
        match c.role {
            Role::Publisher => self.publishers.retain(|&p| p != index),
            Role::Subscriber => {
                let mut gone = Vec::new();
                self.index
                    .remove_subscriber(index, |topic| gone.push(topic.to_vec()));
                let now = Instant::now();
                for topic in gone {
                    self.upstream_change(&topic, false, now);
                }
            }
        }
    }
}

impl Slots for Forwarder<'_> {
    #[inline]
    fn lists(&mut self) -> &mut Lists {
        &mut self.lists
    }

    #[inline]
    fn flags(&mut self, slot: usize) -> Option<&mut Flags> {
        Some(&mut self.connections.get_mut(slot)?.as_mut()?.io)
    }

    #[inline]
    fn read(&mut self, slot: usize, now: Instant) {
        self.read_connection(slot, now);
    }

    #[inline]
    fn flush(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let result = c.flush(now, &mut self.spare);
        self.touch(slot);
        if let Err(e) = result {
            self.close(slot, &Close::Io(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Large messages go to their subscribers by reference from a buffer
    /// of their own, and the buffers are reused: every byte must still
    /// arrive as sent, in order, at a fast subscriber and at a slow one,
    /// with small messages between the large ones.
    #[test]
    fn large_messages_arrive_intact_at_a_fast_and_a_slow_subscriber() {
        use crate::{Backplane, Config as BpConfig};
        use banyan_component::{Component, Config};
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let c = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let mut publisher = Component::connect(c.clone()).unwrap();
        let mut fast = Component::connect(c.clone()).unwrap();
        let mut slow = Component::connect(c).unwrap();
        fast.subscribe("big").unwrap();
        slow.subscribe("big").unwrap();
        // Both subscriptions are in once the second subscriber's own topic
        // is announced (subscriptions of a connection arrive in order).
        slow.subscribe("ready").unwrap();
        fast.subscribe("ready2").unwrap();
        assert!(publisher
            .wait_for_subscriber("ready", Duration::from_secs(10))
            .unwrap());
        assert!(publisher
            .wait_for_subscriber("ready2", Duration::from_secs(10))
            .unwrap());
        // 16 MiB, then sizes on both sides of the sharing threshold and of
        // the read chunk; 41 MiB in all (under the 64 MiB queue cap).
        let sizes = [
            16 << 20,
            5,
            1 << 20,
            100_000,
            16 << 20,
            SHARE_AT - 100,
            SHARE_AT + 100,
            READ_CHUNK * 3 + 7,
            7 << 20,
            1,
        ];
        fn body(i: usize, n: usize) -> Vec<u8> {
            (0..n).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect()
        }
        for (i, &n) in sizes.iter().enumerate() {
            let v = rmpv::Value::Binary(body(i, n));
            publisher.publish_value("big", &v).unwrap();
        }
        let check = move |sub: &mut Component, pause: Duration| {
            for (i, &n) in sizes.iter().enumerate() {
                let m = sub
                    .recv_timeout(Duration::from_secs(30))
                    .unwrap()
                    .unwrap_or_else(|| panic!("message {i} of {n} bytes"));
                assert_eq!(m.topic, "big");
                let v = m.value().unwrap();
                let got = v.as_slice().expect("a bin payload");
                assert_eq!(got.len(), n, "message {i}");
                assert!(
                    got == body(i, n).as_slice(),
                    "message {i} of {n} bytes altered"
                );
                std::thread::sleep(pause);
            }
        };
        let slow_thread = std::thread::spawn(move || {
            check(&mut slow, Duration::from_millis(100));
            slow
        });
        check(&mut fast, Duration::ZERO);
        let _slow = slow_thread.join().unwrap();
        let s = bp.stats();
        assert_eq!((s.forwarded, s.dropped), (sizes.len() as u64, 0), "{s:?}");
        bp.stop().unwrap();
    }

    #[test]
    fn frame_end_finds_the_end_of_the_frame_being_received() {
        let mut m = Vec::new();
        zmtp::put_frame(&mut m, zmtp::MORE, b"topic");
        let body_at = m.len() + 9; // a long header: 1 + 8 bytes
        zmtp::put_frame(&mut m, 0, &[7u8; 1000]);
        assert_eq!(frame_end(&m[..3]), Some(7)); // the topic frame
        assert_eq!(frame_end(&m[..body_at]), Some(m.len()));
        assert_eq!(frame_end(&m[..m.len() - 1]), Some(m.len()));
        assert_eq!(frame_end(&m), None, "whole");
        assert_eq!(frame_end(&m[..body_at - 1]), None, "header not in");
    }

    /// A raw ZMTP 3.1 SUB that completes the handshake and never reads.
    fn raw_subscriber(port: u16) -> std::net::TcpStream {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = zmtp::greeting().to_vec();
        let mut ready = Vec::new();
        // Our READY with "SUB" instead of "XPUB" is a SUB's READY.
        zmtp::put_ready(&mut ready, "SUB");
        hello.extend_from_slice(&ready);
        s.write_all(&hello).unwrap();
        let mut ours = Vec::new();
        zmtp::put_ready(&mut ours, "XPUB");
        let mut theirs = vec![0u8; zmtp::GREETING_LEN + ours.len()];
        s.read_exact(&mut theirs).unwrap();
        assert_eq!(theirs[zmtp::GREETING_LEN..], ours);
        s
    }

    fn subscribe(s: &mut std::net::TcpStream, topic: &[u8]) {
        use std::io::Write as _;
        let mut out = Vec::new();
        zmtp::put_subscription(&mut out, topic, true);
        s.write_all(&out).unwrap();
    }

    #[test]
    fn subscriptions_are_limited_per_peer_and_by_the_budget_then_peers_are_refused() {
        use crate::{Backplane, Config as BpConfig};
        use banyan_component::{Component, Config};
        use std::io::Read as _;
        let wait = |bp: &crate::Running, f: &dyn Fn(Stats) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !f(bp.stats()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            bp.stats()
        };
        // At most 5 subscriptions per subscriber.
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.max_subscriptions = 5;
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let c = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let mut publisher = Component::connect(c).unwrap();
        let mut s1 = raw_subscriber(bp.subscriber_port());
        for t in ["a0", "a1", "a2", "a3", "a4", "a5", "a0"] {
            subscribe(&mut s1, t.as_bytes()); // a5 is one too many; a0 again counts
        }
        assert!(publisher
            .wait_for_subscriber("a4", Duration::from_secs(10))
            .unwrap());
        let s = wait(&bp, &|s| s.limited == 1);
        assert_eq!(s.limited, 1, "{s:?}");
        assert!(!publisher.has_subscriber("a5"));
        bp.stop().unwrap();

        // A 20,000-byte budget: subscriptions (128 + length bytes each) fill
        // it, further ones are ignored, and new connections are refused.
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.max_subscriptions = 0;
        cfg.memory_budget = 20_000;
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let mut s2 = raw_subscriber(bp.subscriber_port());
        for i in 0..200 {
            subscribe(&mut s2, format!("topic{i:03}").as_bytes());
        }
        // 20,000 / (128 + 8) = 147 fit.
        let s = wait(&bp, &|s| s.limited == 200 - 147);
        assert_eq!(s.limited, 200 - 147, "{s:?}");
        let mut late = std::net::TcpStream::connect(("127.0.0.1", bp.publisher_port())).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            late.read(&mut buf).unwrap_or(0),
            0,
            "closed without a greeting"
        );
        let s = wait(&bp, &|s| s.refused == 1);
        assert_eq!(s.refused, 1, "{s:?}");
        drop(s2);
        bp.stop().unwrap();
    }

    #[test]
    fn over_the_memory_budget_the_largest_queue_loses_its_newest_messages() {
        use crate::{Backplane, Config as BpConfig};
        use banyan_component::{Component, Config};
        let mut cfg = BpConfig::new("127.0.0.1", 0, 0);
        cfg.hwm = 0;
        cfg.queue_bytes = 0; // only the budget limits the queues
        cfg.memory_budget = 4 << 20;
        cfg.stats_interval = Duration::ZERO;
        let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
        let ctx = zmq::Context::new();
        let (_stuck, mut publisher) = stuck_subscriber_and_publisher(&ctx, &bp);
        let c = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let mut healthy = Component::connect(c).unwrap();
        healthy.subscribe("big").unwrap();
        healthy.subscribe("ready").unwrap();
        assert!(publisher
            .wait_for_subscriber("ready", Duration::from_secs(10))
            .unwrap());
        const N: u64 = 300; // 9.6 MiB, over twice the budget
        for i in 0..N {
            let v = rmpv::Value::Array(vec![i.into(), rmpv::Value::Binary(vec![0x55; 32 * 1024])]);
            publisher.publish_value("big", &v).unwrap();
        }
        // The healthy subscriber (a short queue) gets everything, in order.
        for i in 0..N {
            let m = healthy
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("a message");
            assert_eq!(m.value().unwrap()[0], i.into());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while bp.stats().forwarded < N && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = bp.stats();
        assert_eq!(s.forwarded, N, "{s:?}");
        assert!(s.shed > 0, "{s:?}");
        assert_eq!(s.dropped, s.shed, "only the budget dropped: {s:?}");
        bp.stop().unwrap();
    }
}
