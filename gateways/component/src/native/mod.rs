//! The native transport: the component speaks ZMTP itself, through
//! [`banyan_zmtp`], on two TCP connections (publisher and subscriber) that
//! the caller's own thread reads and writes. No I/O thread stands between
//! a `publish` or a `recv` and the socket; a per-process keeper thread
//! ([`keeper`]) only looks after connections their owner is not using
//! (the tail of a burst, heartbeats, reconnects).
//!
//! Guarantees, as with the libzmq transport: reconnect by itself (100 ms,
//! doubling to 1 s), subscriptions re-sent, the send high-water mark
//! counted in messages (`SendQueueFull` past it), `BackplaneUp`/`Down`.
//! Different, and better: messages published while the backplane is away
//! wait in the send queue (up to the high-water mark) and are sent once it
//! is back, and a backplane that stops answering heartbeats counts as gone
//! after [`crate::Config::heartbeat_timeout`] even without a FIN.

mod conn;
pub mod dealer;
mod keeper;

use std::io::Read;
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conn::{Change, Conn, Next, Role, Settings};
use keeper::Shared;

use crate::driver::{Ready, Watch};

/// `poll` flags for reading and/or writing.
pub(crate) fn poll_flags(read: bool, write: bool) -> nix::poll::PollFlags {
    let mut flags = nix::poll::PollFlags::empty();
    if read {
        flags |= nix::poll::PollFlags::POLLIN;
    }
    if write {
        flags |= nix::poll::PollFlags::POLLOUT;
    }
    flags
}

/// A `poll` timeout in milliseconds: 0 when something is already there
/// (`news`), else until `wake_at` (rounded up; -1: none).
pub(crate) fn poll_timeout(news: bool, wake_at: Option<Instant>, now: Instant) -> i32 {
    match (news, wake_at) {
        (true, _) => 0,
        (false, None) => -1,
        (false, Some(at)) => {
            let left = at.saturating_duration_since(now);
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        }
    }
}

/// What [`Native::read`] found.
pub(crate) enum Read_ {
    Message,
    Oversize { topic: Vec<u8>, len: u64 },
    Empty,
}

/// A link change of the subscriber connection, for the component's events.
pub(crate) enum Link {
    Up,
    Down(String),
}

/// Counters of the native transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub lost: u64,
    pub heartbeat_expired: u64,
    pub reconnects: u64,
}

/// The connections of a component to one backplane (publisher and
/// subscriber; a multi-backplane component may have only one of them) and
/// its wake socket.
pub(crate) struct Native {
    publisher: Option<Arc<Shared>>,
    subscriber: Option<Arc<Shared>>,
    wake: UnixStream,
    linger: Duration,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Native")
    }
}

/// Settings the component's config gives the transport.
pub(crate) struct Options {
    pub address: String,
    /// `None`: no publisher connection.
    pub publisher_port: Option<u16>,
    /// `None`: no subscriber connection.
    pub subscriber_port: Option<u16>,
    pub send_hwm: usize,
    pub max_message: usize,
    pub recv_buffer: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub linger: Duration,
}

impl Native {
    /// Starts the connections (in the background: this does not wait for
    /// the backplane). `Err((endpoint, error))` when the address does not
    /// resolve. Link changes follow the subscriber connection, or the
    /// publisher's when there is no subscriber.
    pub(crate) fn connect(o: &Options) -> Result<Native, (String, std::io::Error)> {
        let now = Instant::now();
        let (wake, wake_tx) = UnixStream::pair().map_err(|e| (String::new(), e))?;
        for s in [&wake, &wake_tx] {
            s.set_nonblocking(true).map_err(|e| (String::new(), e))?;
        }
        let wake_tx2 = wake_tx.try_clone().map_err(|e| (String::new(), e))?;
        let settings = Settings {
            reconnect: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            heartbeat_interval: o.heartbeat_interval,
            heartbeat_timeout: o.heartbeat_timeout,
            send_hwm: o.send_hwm,
            max_message: o.max_message,
            recv_buffer: o.recv_buffer,
        };
        let conn = |role: Role, port: u16| {
            let endpoint = format!("tcp://{}:{port}", o.address);
            let host = o.address.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<_> = (host, port)
                .to_socket_addrs()
                .map_err(|e| (endpoint.clone(), e))?
                .collect();
            Ok(Conn::new(role, endpoint, addrs, settings, now))
        };
        let mut p = o
            .publisher_port
            .map(|port| conn(Role::Publisher, port))
            .transpose()?;
        let mut s = o
            .subscriber_port
            .map(|port| conn(Role::Subscriber, port))
            .transpose()?;
        match (&mut p, &mut s) {
            (Some(p), Some(s)) => p.pair_with(s),
            (Some(p), None) => p.report_changes(),
            _ => {}
        }
        let native = Native {
            publisher: p.map(|p| Shared::new(p, wake_tx)),
            subscriber: s.map(|s| Shared::new(s, wake_tx2)),
            wake,
            linger: o.linger,
        };
        for c in native.conns() {
            let mut g = c.lock();
            g.progress(now);
            c.set_due(g.keeper_due());
        }
        Ok(native)
    }

    /// The connections there are.
    fn conns(&self) -> impl Iterator<Item = &Arc<Shared>> {
        self.publisher.iter().chain(self.subscriber.iter())
    }

    /// Runs `f` on the connection, if there is one (else `R::default()`).
    fn with<R: Default>(
        shared: &Option<Arc<Shared>>,
        f: impl FnOnce(&mut Conn, Instant) -> R,
    ) -> R {
        let Some(shared) = shared else {
            return R::default();
        };
        let mut c = shared.lock();
        let backlog = c.is_up() && c.wants_write();
        let r = f(&mut c, Instant::now());
        let due = c.keeper_due();
        shared.set_due(due);
        if due.is_none() && !backlog && c.is_up() && c.wants_write() {
            // Bytes now wait for room in the socket and no timer will bring
            // the keeper here: it may be asleep without watching this
            // socket for room (it had nothing to write), and it is the one
            // that writes the rest when the caller goes on to other work
            // (the end of a burst of large messages waited up to a second
            // for its next timer). Wake it to look again, once per backlog.
            shared.kick_keeper();
        }
        r
    }

    pub(crate) fn subscribe(&mut self, topic: &[u8]) {
        Self::with(&self.subscriber, |c, now| c.subscribe(now, topic));
    }

    pub(crate) fn unsubscribe(&mut self, topic: &[u8]) {
        Self::with(&self.subscriber, |c, now| c.unsubscribe(now, topic));
    }

    /// Queues `[topic, payload]`; `false` at the high-water mark (or with
    /// no publisher connection).
    pub(crate) fn send(&mut self, topic: &[u8], payload: &[u8]) -> bool {
        Self::with(&self.publisher, |c, now| c.send(now, &[topic, payload]))
    }

    /// The next subscription notice the backplane sent our publisher.
    /// Reads the publisher connection's socket now (no wait): for an
    /// explicit question like `has_subscriber`, where what the backplane
    /// sent must count even if nobody waited.
    pub(crate) fn poll_notices(&mut self) {
        Self::with(&self.publisher, |c, now| {
            if !c.has_news() {
                c.progress(now);
            }
        });
    }

    pub(crate) fn take_notice(&mut self) -> Option<(bool, Vec<u8>)> {
        Self::with(&self.publisher, |c, now| {
            if let Some(n) = c.take_notice() {
                return Some(n);
            }
            // Reading is for waits and writes; here only what is buffered.
            c.parse_notices(now);
            c.take_notice()
        })
    }

    /// The next change of the subscriber connection (of the publisher
    /// connection when there is no subscriber).
    pub(crate) fn take_link(&mut self) -> Option<Link> {
        let watched = if self.subscriber.is_some() {
            &self.subscriber
        } else {
            &self.publisher
        };
        Self::with(watched, |c, _| {
            c.take_change().map(|ch| match ch {
                Change::Up => Link::Up,
                Change::Down(why) => Link::Down(why),
            })
        })
    }

    /// Takes one message into `frames` (replacing them) without blocking;
    /// reads the socket for it only if `read_socket` (see
    /// [`Conn::next_message`]).
    pub(crate) fn read(&mut self, frames: &mut Vec<Vec<u8>>, read_socket: bool) -> Read_ {
        frames.clear();
        let next = Self::with(&self.subscriber, |c, now| {
            if !c.is_up() {
                c.progress(now);
            }
            Some(c.next_message(now, frames, read_socket))
        });
        match next {
            Some(Next::Message) => Read_::Message,
            Some(Next::Oversize { topic, len }) => Read_::Oversize { topic, len },
            Some(Next::Empty) | None => Read_::Empty,
        }
    }

    /// Counters of the connections.
    pub(crate) fn counters(&self) -> Counters {
        let p = Self::with(&self.publisher, |c, _| c.counters());
        let s = Self::with(&self.subscriber, |c, _| c.counters());
        Counters {
            lost: p.lost,
            heartbeat_expired: p.heartbeat_expired + s.heartbeat_expired,
            reconnects: p.connects.saturating_sub(1) + s.connects.saturating_sub(1),
        }
    }

    /// Messages queued towards the backplane.
    pub(crate) fn queued(&self) -> usize {
        Self::with(&self.publisher, |c, _| c.queued())
    }

    /// Waits until something may have happened: a socket of ours or of
    /// `watches` is ready, the wake socket was written, a timer of ours is
    /// due, or `deadline` passed. Returns `true` when a signal interrupted
    /// the wait. Appends the ready watches to `ready`.
    pub(crate) fn wait(
        &mut self,
        watches: &[Watch],
        deadline: Option<Instant>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> std::io::Result<bool> {
        wait_all(&[&*self], watches, deadline, ready)
    }

    /// Writes what is queued, waiting up to the linger time for the socket
    /// (on drop).
    fn linger(&mut self) {
        let until = Instant::now() + self.linger;
        loop {
            let now = Instant::now();
            let (pending, up, fd) = Self::with(&self.publisher, |c, now| {
                c.progress(now);
                (c.pending_bytes(), c.is_up(), c.interest())
            });
            if pending == 0 || now >= until {
                if pending > 0 {
                    log::warn!(
                        "{} bytes not sent to the backplane within the linger time",
                        pending
                    );
                }
                return;
            }
            let left = until
                .saturating_duration_since(now)
                .min(Duration::from_millis(10));
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(10);
            match (up, fd) {
                (true, Some((fd, _, _))) => {
                    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                    let _ = nix::poll::poll(&mut p, ms);
                }
                _ => std::thread::sleep(left),
            }
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        if !self.linger.is_zero() {
            self.linger();
        }
        let now = Instant::now();
        for s in self.conns() {
            let mut c = s.lock();
            c.retire(now, "component dropped");
            s.set_due(None);
        }
        if let Some(s) = self.conns().next() {
            // The keeper lets go of them at once, not at its next timer.
            s.kick_keeper();
        }
    }
}

/// [`Native::wait`] over several components' connections at once (one
/// `poll`): what a multi-backplane component waits with.
pub(crate) fn wait_all(
    natives: &[&Native],
    watches: &[Watch],
    deadline: Option<Instant>,
    ready: &mut Vec<(usize, Ready)>,
) -> std::io::Result<bool> {
    let now = Instant::now();
    let conns: Vec<&Arc<Shared>> = natives.iter().flat_map(|n| n.conns()).collect();
    let mut fds: Vec<(RawFd, nix::poll::PollFlags)> =
        Vec::with_capacity(conns.len() + natives.len() + watches.len());
    let mut slot = vec![None; conns.len()];
    let mut wake_at = deadline;
    let mut news = false;
    for (k, shared) in conns.iter().enumerate() {
        let mut c = shared.lock();
        // The caller has just read until the sockets had nothing more:
        // no reading here, only timers and what is to be written.
        c.tend(now);
        news |= c.read_any || c.has_news();
        if let Some((fd, r, w)) = c.interest() {
            if let Some(s) = slot.get_mut(k) {
                *s = Some(fds.len());
            }
            fds.push((fd, poll_flags(r, w)));
        }
        if let Some(d) = c.due() {
            wake_at = Some(wake_at.map_or(d, |w| w.min(d)));
        }
        shared.set_due(c.keeper_due());
    }
    let wakes = fds.len();
    for n in natives {
        fds.push((n.wake.as_raw_fd(), nix::poll::PollFlags::POLLIN));
    }
    let own = fds.len();
    for w in watches {
        fds.push((w.fd, poll_flags(w.read, w.write)));
    }
    let timeout = poll_timeout(news, wake_at, now);
    let mut pollfds: Vec<nix::poll::PollFd> = fds
        .iter()
        .map(|&(fd, flags)| nix::poll::PollFd::new(fd, flags))
        .collect();
    for s in &conns {
        s.waiting.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let polled = nix::poll::poll(&mut pollfds, timeout);
    for s in &conns {
        s.waiting.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    let interrupted = match polled {
        Ok(_) => false,
        Err(nix::errno::Errno::EINTR) => true,
        Err(e) => return Err(e.into()),
    };
    let fired = |i: Option<usize>| {
        i.and_then(|i| pollfds.get(i))
            .and_then(|p| p.revents())
            .is_some_and(|r| !r.is_empty())
    };
    for (i, n) in natives.iter().enumerate() {
        if fired(Some(wakes + i)) {
            let mut sink = [0u8; 64];
            while matches!((&n.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
    }
    let now = Instant::now();
    for (k, shared) in conns.iter().enumerate() {
        let mut c = shared.lock();
        if fired(slot.get(k).copied().flatten()) {
            // The caller takes what is read next (or waits again at once:
            // unparsed bytes are news).
            c.progress_owner(now);
        } else {
            c.tend(now);
        }
        shared.set_due(c.keeper_due());
    }
    for (i, p) in pollfds.iter().enumerate().skip(own) {
        let Some(ev) = p.revents() else { continue };
        let r = Ready {
            readable: ev.intersects(nix::poll::PollFlags::POLLIN | nix::poll::PollFlags::POLLHUP),
            writable: ev.contains(nix::poll::PollFlags::POLLOUT),
            error: ev.intersects(nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLNVAL),
        };
        if r != Ready::default() {
            ready.push((i - own, r));
        }
    }
    Ok(interrupted)
}

/// The native transport's receive path without a socket, for the fuzz
/// target `component_receive`: bytes from a "backplane" (its greeting,
/// `READY`, then frames) fed in chunks through the ZMTP decoder, and each
/// message through the component's message rules.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    use super::conn::{Conn, Next, Settings};
    use crate::component::{Frame, Receiver};
    use crate::wire::{Limits, Reject};

    /// What the receive path made of the bytes.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Outcome {
        /// Valid messages: (topic, payload).
        pub messages: Vec<(String, Vec<u8>)>,
        /// Rejected messages, as the rejection's text.
        pub rejected: Vec<String>,
        /// The connection is still up after the last byte (not closed for a
        /// broken stream or a refused handshake).
        pub open: bool,
        /// Bytes we would send back (greeting, `READY`, `PONG`s).
        pub replies: usize,
    }

    /// Feeds `data` in pieces of `chunk` bytes (at least 1) to a subscriber
    /// connection with a payload limit of `max_payload` bytes.
    pub fn receive(data: &[u8], chunk: usize, max_payload: usize) -> Outcome {
        let now = Instant::now();
        let settings = Settings {
            reconnect: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            heartbeat_interval: Duration::ZERO,
            heartbeat_timeout: Duration::ZERO,
            send_hwm: 0,
            max_message: max_payload.saturating_add(1024),
            recv_buffer: 1 << 20,
        };
        let mut conn = Conn::unconnected(settings, now);
        let mut receiver = Receiver::new(Limits { max_payload });
        let mut out = Outcome::default();
        let mut frames = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            conn.feed(now, piece);
            loop {
                frames.clear();
                match conn.parse_next(now, &mut frames) {
                    Next::Message => {
                        receiver.frames.clear();
                        receiver.frames.extend(frames.drain(..).map(Frame::Owned));
                        match receiver.check() {
                            Ok(m) => out.messages.push((m.topic, m.payload)),
                            Err(r) => out.rejected.push(r.to_string()),
                        }
                    }
                    Next::Oversize { len, .. } => out.rejected.push(
                        Reject::TooLarge {
                            len: usize::try_from(len).unwrap_or(usize::MAX),
                            max: max_payload,
                        }
                        .to_string(),
                    ),
                    Next::Empty => break,
                }
            }
        }
        out.open = conn.is_up();
        out.replies = conn.ctrl_len();
        out
    }
}
