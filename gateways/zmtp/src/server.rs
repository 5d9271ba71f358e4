//! The scaffolding of a native server's poll loop, shared by the
//! backplane's native engine and the services broker's native ROUTER (both
//! one thread, one edge-triggered `mio` poll, connections in slots of a
//! `Vec<Option<_>>` whose index is the poll token minus the listeners'
//! tokens). What is the same in both loops lives here; what each does with
//! the bytes (forwarding, routing) stays with it.
//!
//! - [`Flags`] and [`Lists`]: a connection's readiness (`readable`,
//!   `writable`) and the loop's two lists of slots — `ready` (may have
//!   input) and `dirty` (has output to flush) — each slot listed at most
//!   once, so that a turn's work is proportional to the connections that
//!   had an event. [`Lists::event`] is the event-dispatch step.
//! - [`read_all`] and [`flush_all`]: the two passes over those lists, for
//!   a loop that implements [`Slots`] (generic: no dynamic dispatch in the
//!   per-event path).
//! - [`AcceptRetry`] and [`adopt`]: accepting connections on an
//!   edge-triggered listener, retried on a timer (and when a connection
//!   closes) after `accept` failed for want of descriptors or memory.
//! - [`Deadlines`]: handshake deadlines in accept order.
//! - [`read_some`] and [`poll_timeout`]: small helpers of both loops.
//!
//! Behind the `server` feature (it brings `mio`); the rest of the crate is
//! sans-IO.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// After `accept` failed for want of descriptors or memory, it is retried
/// this often (and at once whenever a connection closes) until it works.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// One connection's readiness and its place in the loop's [`Lists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// The socket may have more to read (edge-triggered readiness: until a
    /// read would block).
    pub readable: bool,
    /// The socket may accept more bytes (until a write would block).
    pub writable: bool,
    /// The peer ended its side (or the socket failed): an end of file (or
    /// the error) waits behind the data, so a short read does not mean the
    /// socket is drained; read until a read says so.
    pub read_closed: bool,
    /// Listed in [`Lists`]' ready list.
    listed: bool,
    /// Listed in [`Lists`]' dirty list.
    dirty: bool,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags::new()
    }
}

impl Flags {
    /// A new connection's: readable and writable until a call says
    /// otherwise (its first events may have come before it was
    /// registered), listed nowhere.
    #[inline]
    pub const fn new() -> Flags {
        Flags {
            readable: true,
            writable: true,
            read_closed: false,
            listed: false,
            dirty: false,
        }
    }
}

/// The loop's lists of connection slots: the ones that may have input
/// (`ready`) and the ones with output to flush (`dirty`), each slot at
/// most once (its [`Flags`] say where it is listed).
#[derive(Debug, Default)]
pub struct Lists {
    ready: Vec<usize>,
    /// The list being read, kept for the next turn's (no allocation per
    /// turn).
    ready_spare: Vec<usize>,
    dirty: Vec<usize>,
}

impl Lists {
    /// Empty lists.
    pub fn new() -> Lists {
        Lists::default()
    }

    /// Lists `slot` for the next [`flush_all`] (once).
    #[inline]
    pub fn mark(&mut self, slot: usize, flags: &mut Flags) {
        if !flags.dirty {
            flags.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Lists `slot` for the next [`read_all`] (once).
    #[inline]
    pub fn list(&mut self, slot: usize, flags: &mut Flags) {
        if !flags.listed {
            flags.listed = true;
            self.ready.push(slot);
        }
    }

    /// Some connection may have input: the loop must not sleep.
    #[inline]
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The event-dispatch step for connection `slot`: readable (or closed,
    /// or an error: the read says which) lists it to be read; writable (or
    /// closed, or an error: the write says which) lists it to be flushed.
    /// Returns whether the socket became writable after it was full (the
    /// peer took bytes that were waiting: a sign of life for the
    /// heartbeats).
    #[inline]
    pub fn event(&mut self, slot: usize, flags: &mut Flags, event: &Event) -> bool {
        let mut progressed = false;
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            flags.readable = true;
            flags.read_closed |= event.is_read_closed() || event.is_error();
            self.list(slot, flags);
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            progressed = !flags.writable && event.is_writable();
            flags.writable = true;
            self.mark(slot, flags);
        }
        progressed
    }
}

/// A server loop's connections as [`read_all`] and [`flush_all`] see them.
pub trait Slots {
    /// The loop's lists.
    fn lists(&mut self) -> &mut Lists;
    /// The flags of the connection in `slot`, if there is one.
    fn flags(&mut self, slot: usize) -> Option<&mut Flags>;
    /// Reads what the connection in `slot` has (up to a budget) and
    /// handles it; clears [`Flags::readable`] when a read would block, or
    /// closes the connection.
    fn read(&mut self, slot: usize, now: Instant);
    /// Writes the connection's queued output (until the socket is full);
    /// closes it on an error.
    fn flush(&mut self, slot: usize, now: Instant);
}

/// Reads the connections listed as ready, each once; the ones still
/// readable after their turn (their read budget ran out) are listed again
/// for the next turn.
#[inline]
pub fn read_all<S: Slots>(s: &mut S, now: Instant) {
    let lists = s.lists();
    let list = std::mem::replace(&mut lists.ready, std::mem::take(&mut lists.ready_spare));
    for &slot in &list {
        let Some(f) = s.flags(slot) else {
            continue;
        };
        if !f.listed {
            continue; // listed twice (a slot reused)
        }
        f.listed = false;
        if !f.readable {
            continue;
        }
        s.read(slot, now);
        if let Some(f) = s.flags(slot) {
            if f.readable && !f.listed {
                f.listed = true;
                s.lists().ready.push(slot);
            }
        }
    }
    let lists = s.lists();
    lists.ready_spare = list;
    lists.ready_spare.clear();
}

/// Flushes the connections listed as dirty, the ones listed while this
/// runs included (closing one may queue output for others: it leaves in
/// the same turn).
#[inline]
pub fn flush_all<S: Slots>(s: &mut S, now: Instant) {
    while let Some(slot) = s.lists().dirty.pop() {
        let Some(f) = s.flags(slot) else {
            continue;
        };
        f.dirty = false;
        s.flush(slot, now);
    }
}

/// Accepting on an edge-triggered listener: after `accept` failed (out of
/// descriptors or memory) the peer waits in the backlog and no new event
/// comes for it, so it is retried every [`ACCEPT_RETRY`] and whenever a
/// connection closed (never in a spin).
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptRetry {
    at: Option<Instant>,
    closed: bool,
}

impl AcceptRetry {
    /// Accepts one connection: `None` when there is none now or `accept`
    /// failed (then a retry is scheduled and, on the first failure of a
    /// series, `warn` is told why).
    pub fn accept(
        &mut self,
        listener: &TcpListener,
        now: Instant,
        warn: impl FnOnce(&io::Error),
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            match listener.accept() {
                Ok(s) => return Some(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.at = None;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.at.is_none() {
                        warn(&e);
                    }
                    self.at = Some(now + ACCEPT_RETRY);
                    return None;
                }
            }
        }
    }

    /// A connection closed: a descriptor may be free again.
    #[inline]
    pub fn closed(&mut self) {
        self.closed = true;
    }

    /// When the next retry is due, if one is scheduled (for the poll
    /// timeout).
    #[inline]
    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// A retry is scheduled and due (its time came, or a connection closed
    /// since the last call).
    #[inline]
    pub fn due(&mut self, now: Instant) -> bool {
        let closed = std::mem::take(&mut self.closed);
        self.at.is_some_and(|t| closed || now >= t)
    }
}

/// Prepares an accepted connection: no Nagle delay, a slot in `conns` (a
/// free one or a new one at the end), the stream registered for reading
/// and writing under the token `first_token + slot`. Returns the slot,
/// still empty, for the caller to fill; on an error the slot is free
/// again.
///
/// # Errors
/// The registration's.
pub fn adopt<C>(
    registry: &Registry,
    stream: &mut TcpStream,
    conns: &mut Vec<Option<C>>,
    free: &mut Vec<usize>,
    first_token: usize,
) -> io::Result<usize> {
    let _ = stream.set_nodelay(true);
    let slot = free.pop().unwrap_or_else(|| {
        conns.push(None);
        conns.len() - 1
    });
    let registered = registry.register(
        stream,
        Token(first_token + slot),
        Interest::READABLE | Interest::WRITABLE,
    );
    if let Err(e) = registered {
        free.push(slot);
        return Err(e);
    }
    Ok(slot)
}

/// Handshake deadlines in accept order: (deadline, slot, serial). The
/// serial tells a slot's connection from a later one in the same slot.
#[derive(Debug, Default)]
pub struct Deadlines(VecDeque<(Instant, usize, u64)>);

impl Deadlines {
    /// No deadlines.
    pub fn new() -> Deadlines {
        Deadlines::default()
    }

    /// The connection `serial` in `slot` must finish its handshake by `at`.
    pub fn push(&mut self, at: Instant, slot: usize, serial: u64) {
        self.0.push_back((at, slot, serial));
    }

    /// The earliest deadline (for the poll timeout).
    pub fn next(&self) -> Option<Instant> {
        self.0.front().map(|&(at, _, _)| at)
    }

    /// The next slot whose deadline passed while `pending(slot, serial)`
    /// (its handshake is not done); the entries of connections that are
    /// done or gone are dropped on the way.
    pub fn expired(&mut self, now: Instant, pending: impl Fn(usize, u64) -> bool) -> Option<usize> {
        while let Some(&(at, slot, serial)) = self.0.front() {
            if !pending(slot, serial) {
                self.0.pop_front();
                continue;
            }
            if now < at {
                return None;
            }
            self.0.pop_front();
            return Some(slot);
        }
        None
    }
}

/// Reads into `buf`, again when interrupted; `Ok(0)` is end of file.
///
/// # Errors
/// The reader's, `Interrupted` excepted.
#[inline]
pub fn read_some<R: Read>(stream: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The poll timeout for the earliest deadline `at` (none: wait for
/// events), rounded up so that the deadline has passed when poll returns.
pub fn poll_timeout(at: Option<Instant>, now: Instant) -> Option<Duration> {
    at.map(|t| t.saturating_duration_since(now) + Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Loop {
        lists: Lists,
        conns: Vec<Option<Flags>>,
        /// Reads each connection still has before it would block.
        reads_left: Vec<u32>,
        log: Vec<(char, usize)>,
    }

    impl Slots for Loop {
        fn lists(&mut self) -> &mut Lists {
            &mut self.lists
        }
        fn flags(&mut self, slot: usize) -> Option<&mut Flags> {
            self.conns.get_mut(slot)?.as_mut()
        }
        fn read(&mut self, slot: usize, _now: Instant) {
            self.log.push(('r', slot));
            let left = &mut self.reads_left[slot];
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.conns[slot].as_mut().unwrap().readable = false;
            }
            // Reading queues output for the next slot (as routing does).
            let next = (slot + 1) % self.conns.len();
            if let Some(f) = self.conns[next].as_mut() {
                self.lists.mark(next, f);
            }
        }
        fn flush(&mut self, slot: usize, _now: Instant) {
            self.log.push(('w', slot));
        }
    }

    #[test]
    fn each_slot_is_listed_once_and_read_until_it_would_block() {
        let mut l = Loop {
            lists: Lists::new(),
            conns: vec![Some(Flags::new()), Some(Flags::new()), None],
            reads_left: vec![2, 1, 0],
            log: Vec::new(),
        };
        let now = Instant::now();
        for slot in [0, 1, 0, 1] {
            let f = l.conns[slot].as_mut().unwrap();
            l.lists.list(slot, f);
        }
        assert!(l.lists.has_ready());
        read_all(&mut l, now);
        assert_eq!(l.log, [('r', 0), ('r', 1)]);
        // Slot 0 had another read left: listed for the next turn.
        assert!(l.lists.has_ready());
        flush_all(&mut l, now);
        read_all(&mut l, now);
        assert!(!l.lists.has_ready());
        flush_all(&mut l, now);
        // (Slot 1's read marked slot 2, which is empty.)
        assert_eq!(l.log, [('r', 0), ('r', 1), ('w', 1), ('r', 0), ('w', 1)]);
        // A mark while flushing is flushed in the same pass.
        let f = l.conns[0].as_mut().unwrap();
        l.lists.mark(0, f);
        let f = l.conns[0].as_mut().unwrap();
        l.lists.mark(0, f);
        l.log.clear();
        flush_all(&mut l, now);
        assert_eq!(l.log, [('w', 0)]);
    }

    #[test]
    fn deadlines_skip_finished_handshakes() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Deadlines::new();
        d.push(ms(10), 0, 1);
        d.push(ms(20), 1, 2);
        d.push(ms(30), 0, 3);
        // Slot 0's first connection is done: its entry goes.
        let pending = |slot: usize, serial: u64| (slot, serial) != (0, 1);
        assert_eq!(d.expired(ms(15), pending), None);
        assert_eq!(d.next(), Some(ms(20)));
        assert_eq!(d.expired(ms(25), pending), Some(1));
        assert_eq!(d.expired(ms(25), pending), None);
        assert_eq!(d.expired(ms(30), pending), Some(0));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn accept_retries_after_a_failure_and_when_a_connection_closed() {
        let t0 = Instant::now();
        let mut r = AcceptRetry::default();
        assert!(!r.due(t0 + Duration::from_secs(1)), "nothing scheduled");
        r.at = Some(t0 + ACCEPT_RETRY);
        assert!(!r.due(t0));
        r.closed();
        assert!(r.due(t0), "a descriptor may be free");
        assert!(!r.due(t0), "once");
        assert!(r.due(t0 + ACCEPT_RETRY));
        assert_eq!(
            poll_timeout(r.at(), t0),
            Some(ACCEPT_RETRY + Duration::from_millis(1))
        );
    }

    #[test]
    fn accept_takes_connections_until_none_is_waiting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener);
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let mut r = AcceptRetry::default();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        let mut accepted = None;
        while accepted.is_none() && Instant::now() < deadline {
            accepted = r.accept(&listener, now, |e| panic!("{e}"));
            std::thread::yield_now();
        }
        let (mut stream, _) = accepted.expect("the connection is accepted");
        assert!(r.accept(&listener, now, |e| panic!("{e}")).is_none());
        assert_eq!(r.at(), None);
        let poll = mio::Poll::new().unwrap();
        let mut conns: Vec<Option<()>> = vec![Some(())];
        let mut free = Vec::new();
        let slot = adopt(poll.registry(), &mut stream, &mut conns, &mut free, 3).unwrap();
        assert_eq!((slot, conns.len()), (1, 2));
    }

    #[test]
    fn read_some_reads() {
        let mut src: &[u8] = b"abc";
        let mut buf = [0u8; 8];
        assert_eq!(read_some(&mut src, &mut buf).unwrap(), 3);
        assert_eq!(read_some(&mut src, &mut buf).unwrap(), 0);
    }
}
