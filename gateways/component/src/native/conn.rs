//! One ZMTP connection from a component to a backplane port, driven
//! without an I/O thread: every call does what can be done now without
//! blocking (finish a connect, write queued bytes, read what arrived) and
//! says when it must be called again ([`Conn::due`]).
//!
//! A connection goes `Waiting` (until its reconnect time) → `Connecting`
//! (non-blocking TCP connect) → `Handshake` (our greeting and `READY` sent,
//! the peer's awaited) → `Up`, and back to `Waiting` on any failure, with
//! a reconnect interval that starts at [`Settings::reconnect`] and doubles
//! up to [`Settings::reconnect_max`].
//!
//! Bytes to send live in two queues. `ctrl` holds the handshake and
//! commands (`PING`, `PONG`, subscriptions) and is written only between
//! messages; `out` holds the messages published, in the output queue the
//! backplane uses ([`zmtp::output::Output`]: chunks written with one
//! `writev`, nothing ever moved, a large message in a buffer of its own),
//! which keeps each message's range, so the high-water mark counts
//! messages exactly and a connection that breaks mid-message knows which
//! message was cut (it is counted in [`Counters::lost`]; the ones queued
//! behind it are sent after the reconnect).
//!
//! Received bytes are parsed out of one receive buffer and each frame is
//! copied out of it, except the last frame of a message when it is large
//! ([`DIRECT_AT`]) and not all in yet: it is read straight into a buffer of
//! its own, which becomes the frame (no copy of a large payload).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_zmtp as zmtp;

/// Bytes read from the socket at most per `read` call.
const READ_CHUNK: usize = 256 * 1024;
/// A receive buffer grown past this is shrunk again once empty.
const SHRINK_ABOVE: usize = 64 * 1024 * 1024;
/// The last frame of a message with a body at least this large is read
/// straight into a buffer of its own, which becomes the frame handed to the
/// caller (no copy out of the receive buffer).
const DIRECT_AT: usize = 128 * 1024;
/// A message published less than this long after the last write waits in
/// `out` for the next write, so that a burst is sent with few system calls.
pub(crate) const COALESCE: Duration = Duration::from_micros(50);
/// Queued bytes written at once regardless of [`COALESCE`].
const FLUSH_BYTES: usize = 64 * 1024;
/// A message with this many bytes of frames or more is framed into a
/// buffer of its own in the send queue.
const OWN_BUFFER_AT: usize = 64 * 1024;
/// Longest a coalesced message waits when the caller goes quiet: the
/// process's keeper thread writes it then.
pub(crate) const LINGER: Duration = Duration::from_millis(1);
/// How often a connect or handshake in progress is looked at when nobody
/// polls the socket.
const PROGRESS_POLL: Duration = Duration::from_millis(10);

/// Which backplane port this connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Our publisher: connects to the backplane's XSUB port, reads
    /// subscription notices.
    Publisher,
    /// Our subscriber: connects to the backplane's XPUB port, sends
    /// subscriptions, reads messages.
    Subscriber,
    /// A DEALER to a ROUTER (the services broker): sends and reads any
    /// messages, no subscriptions; read ahead and heartbeats as the
    /// subscriber's.
    Dealer,
}

impl Role {
    fn socket_type(self) -> &'static str {
        match self {
            Role::Publisher => "XPUB",
            Role::Subscriber => "SUB",
            Role::Dealer => "DEALER",
        }
    }

    fn peer_ok(self, peer: &str) -> bool {
        match self {
            Role::Publisher => matches!(peer, "XSUB" | "SUB"),
            Role::Subscriber => matches!(peer, "XPUB" | "PUB"),
            Role::Dealer => peer == "ROUTER",
        }
    }

    fn port(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
            Role::Dealer => "services",
        }
    }
}

/// Timing and size settings of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// First reconnect interval (doubles after each failed attempt).
    pub reconnect: Duration,
    /// Longest reconnect interval.
    pub reconnect_max: Duration,
    /// Time between our `PING`s; zero: none (and no dead-peer detection).
    pub heartbeat_interval: Duration,
    /// Silence after which the backplane counts as gone.
    pub heartbeat_timeout: Duration,
    /// Messages queued at most (0: no limit).
    pub send_hwm: usize,
    /// Largest message accepted (larger ones are skipped unbuffered).
    pub max_message: usize,
    /// Received bytes kept unparsed at most before reading stops (the
    /// kernel and then the backplane queue the rest: backpressure, as
    /// libzmq's receive high-water mark gives). A message larger than this
    /// is still read whole.
    pub recv_buffer: usize,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not connected; the next attempt is at `retry_at`.
    Waiting { retry_at: Instant },
    /// TCP connect in progress since `since`.
    Connecting { since: Instant },
    /// Greetings and `READY` being exchanged since `since`; `minor` once
    /// the peer's greeting arrived.
    Handshake { since: Instant, minor: Option<u8> },
    /// Ready for messages; the peer speaks ZMTP 3.`minor`.
    Up { minor: u8 },
}

/// A change of a connection's state the component reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Handshake done.
    Up,
    /// An established connection was lost (why).
    Down(String),
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Connections established.
    pub connects: u64,
    /// Established connections lost.
    pub disconnects: u64,
    /// Connections closed because the backplane stopped answering.
    pub heartbeat_expired: u64,
    /// Messages cut off mid-write by a broken connection.
    pub lost: u64,
    /// Messages over the size limit skipped (subscriber).
    pub oversize: u64,
    /// Messages that are not subscription notices, ignored (publisher).
    pub ignored: u64,
}

/// What [`Conn::next_message`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A message: its frames were appended.
    Message,
    /// A message over the size limit is being skipped: its first frame
    /// (when it was within the limit) and the length of the frame that went
    /// over.
    Oversize {
        /// The first frame (the topic), when whole; else empty.
        topic: Vec<u8>,
        /// Body length of the frame over the limit.
        len: u64,
    },
    /// Nothing complete is buffered and the socket has nothing more now.
    Empty,
}

/// One connection. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Conn {
    role: Role,
    endpoint: String,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    settings: Settings,
    stream: Option<TcpStream>,
    phase: Phase,
    backoff: Duration,
    ctrl: Vec<u8>,
    ctrl_pos: usize,
    out: zmtp::output::Output,
    inbuf: InBuf,
    decoder: zmtp::Decoder,
    last_rx: Instant,
    last_tx: Instant,
    /// When `out` got bytes that were not written at once.
    tail_since: Option<Instant>,
    /// Publisher: the backlog is held after a reconnect until the
    /// backplane announces a subscription, or until then.
    hold_until: Option<Instant>,
    /// Subscriber: our subscriptions, in order, sent again on reconnect.
    topics: Vec<Vec<u8>>,
    changes: VecDeque<Change>,
    notices: VecDeque<(bool, Vec<u8>)>,
    counters: Counters,
    /// Bytes were read by the last [`Conn::progress`].
    pub(crate) read_any: bool,
    /// Messages parsed ahead for the owner, in order (frames of each
    /// `Next::Message` in `ahead_frames`), and their bytes.
    ahead: VecDeque<Next>,
    ahead_frames: VecDeque<Vec<Vec<u8>>>,
    ahead_bytes: usize,
    /// Shared with the sibling connection to the same backplane: bumped
    /// when one finds the backplane silent, so the other closes too.
    expired: Arc<AtomicU64>,
    expired_seen: u64,
    /// The buffered bytes end inside a message: reading goes on past
    /// [`Settings::recv_buffer`] until it is whole.
    starved: bool,
    /// A large last frame being read into its own buffer (see
    /// [`DIRECT_AT`]); the receive buffer is empty meanwhile.
    direct: Option<Direct>,
    /// Its ups and downs are queued as [`Change`]s for the owner (the
    /// subscriber's, or the publisher's when it has no subscriber sibling).
    reports: bool,
    /// Its owner dropped it: closed for good, never reconnected (the
    /// keeper may still hold it for a moment).
    retired: bool,
    /// The last read took all the socket had (it returned less than it
    /// asked for, or nothing): until it is polled, another read would most
    /// likely say `WouldBlock`.
    drained: bool,
    /// Subscriber: bytes came in since parsing last stopped for want of
    /// more (a whole message may be buffered: news for a wait).
    unparsed: bool,
}

/// A message whose large last frame is read straight into its own buffer.
#[derive(Debug)]
struct Direct {
    /// The frames before it.
    frames: Vec<Vec<u8>>,
    /// Its body, `got` bytes of it received.
    body: Vec<u8>,
    got: usize,
}

/// Where the message at the start of `buf` has its last frame, when that
/// frame's header is in, its body is not all in and is at least
/// [`DIRECT_AT`] long, the message is at most `max` bytes, and no command
/// sits between its frames: (offset of that frame's body, body length).
fn direct_tail(buf: &[u8], max: usize) -> Option<(usize, usize)> {
    let mut at = 0usize;
    loop {
        let h = zmtp::parse_header(buf.get(at..)?).ok()??;
        if h.command() {
            return None;
        }
        let body = at.checked_add(h.header_len)?;
        let len = usize::try_from(h.body_len).ok()?;
        let end = body.checked_add(len)?;
        if end <= buf.len() {
            if !h.more() {
                return None; // whole
            }
            at = end;
            continue;
        }
        return (!h.more() && len >= DIRECT_AT && end <= max).then_some((body, len));
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Conn {
    /// A connection to `addrs` (tried in turn), the first attempt now.
    pub(crate) fn new(
        role: Role,
        endpoint: String,
        addrs: Vec<SocketAddr>,
        settings: Settings,
        now: Instant,
    ) -> Conn {
        Conn {
            role,
            endpoint,
            addrs,
            next_addr: 0,
            settings,
            stream: None,
            phase: Phase::Waiting { retry_at: now },
            backoff: settings.reconnect,
            ctrl: Vec::new(),
            ctrl_pos: 0,
            out: zmtp::output::Output::new(),
            inbuf: InBuf::default(),
            decoder: zmtp::Decoder::with_limits(settings.max_message, 64 * 1024),
            last_rx: now,
            last_tx: now,
            tail_since: None,
            hold_until: None,
            topics: Vec::new(),
            changes: VecDeque::new(),
            notices: VecDeque::new(),
            counters: Counters::default(),
            read_any: false,
            starved: false,
            direct: None,
            expired: Arc::new(AtomicU64::new(0)),
            expired_seen: 0,
            ahead: VecDeque::new(),
            ahead_frames: VecDeque::new(),
            ahead_bytes: 0,
            reports: role != Role::Publisher,
            retired: false,
            drained: false,
            unparsed: false,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    /// Messages queued and not yet wholly written.
    pub(crate) fn queued(&mut self) -> usize {
        self.out.queue_len()
    }

    /// Makes this connection and `other` (to the same backplane) close
    /// together when either finds the backplane silent.
    pub(crate) fn pair_with(&mut self, other: &mut Conn) {
        self.expired = Arc::clone(&other.expired);
    }

    /// Makes this connection report its ups and downs ([`Conn::take_change`]):
    /// for a publisher that goes to a backplane alone.
    pub(crate) fn report_changes(&mut self) {
        self.reports = true;
    }

    /// A change or a notice waits for the owner.
    pub(crate) fn has_news(&self) -> bool {
        !self.changes.is_empty()
            || !self.notices.is_empty()
            || !self.ahead.is_empty()
            || self.unparsed
    }

    pub(crate) fn take_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    pub(crate) fn take_notice(&mut self) -> Option<(bool, Vec<u8>)> {
        self.notices.pop_front()
    }

    /// The descriptor to poll and for what: (fd, read, write).
    pub(crate) fn interest(&self) -> Option<(RawFd, bool, bool)> {
        let stream = self.stream.as_ref()?;
        let fd = stream.as_raw_fd();
        Some(match self.phase {
            Phase::Waiting { .. } => return None,
            Phase::Connecting { .. } => (fd, false, true),
            Phase::Handshake { .. } => (fd, true, self.ctrl_pos < self.ctrl.len()),
            Phase::Up { .. } => {
                let read =
                    self.starved || self.inbuf.len() + self.ahead_bytes < self.settings.recv_buffer;
                (fd, read, self.wants_write())
            }
        })
    }

    /// Bytes wait to be written (the socket took no more).
    pub(crate) fn wants_write(&self) -> bool {
        self.ctrl_pos < self.ctrl.len()
            || (self.out.has_output() && self.hold_until.is_none())
            || self.out.in_message()
    }

    /// When this connection must be looked at next if nothing happens on
    /// its socket (reconnect, handshake or heartbeat timers, a held
    /// backlog). `None`: only socket events.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.retired {
            return None;
        }
        let s = &self.settings;
        match self.phase {
            Phase::Waiting { retry_at } => Some(retry_at),
            Phase::Connecting { since } | Phase::Handshake { since, .. } => {
                Some(since + self.handshake_limit())
            }
            Phase::Up { minor } => {
                let mut due = self.hold_until;
                if self.reports
                    && zmtp::heartbeat::has_heartbeats(minor)
                    && !s.heartbeat_interval.is_zero()
                {
                    let ping =
                        (self.last_tx + s.heartbeat_interval).max(self.last_rx + self.quiet());
                    let dead = self.last_rx + s.heartbeat_timeout;
                    due = Some(due.map_or(ping.min(dead), |d| d.min(ping).min(dead)));
                }
                due
            }
        }
    }

    /// When the keeper thread should look at this connection: [`Conn::due`],
    /// a coalesced tail that waits, a connect or handshake in progress.
    pub(crate) fn keeper_due(&self) -> Option<Instant> {
        let mut due = self.due();
        let mut at = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        match self.phase {
            Phase::Connecting { .. } | Phase::Handshake { .. } => {
                at(Instant::now() + PROGRESS_POLL);
            }
            Phase::Up { .. } => {
                if let Some(t) = self.tail_since {
                    at(t + LINGER);
                }
            }
            Phase::Waiting { .. } => {}
        }
        due
    }

    /// Silence from the backplane after which we send it a `PING`: the
    /// interval, or half the timeout if longer, so that a backplane pinging
    /// us at the same interval is not pinged back.
    fn quiet(&self) -> Duration {
        let s = &self.settings;
        s.heartbeat_interval.max(s.heartbeat_timeout / 2)
    }

    fn handshake_limit(&self) -> Duration {
        let t = self.settings.heartbeat_timeout;
        if t.is_zero() {
            Duration::from_secs(3)
        } else {
            t
        }
    }

    /// Does everything possible now without blocking: connect, handshake,
    /// write, read (into the buffer, up to a bound), timers.
    pub(crate) fn progress(&mut self, now: Instant) {
        self.progress_with(now, true);
    }

    /// [`Conn::progress`] for the owner, who takes the messages next:
    /// what is read stays in the receive buffer, not parsed ahead (no
    /// second copy of each message).
    pub(crate) fn progress_owner(&mut self, now: Instant) {
        self.progress_with(now, false);
    }

    fn progress_with(&mut self, now: Instant, ahead: bool) {
        self.read_any = false;
        if self.retired {
            return;
        }
        if let Phase::Waiting { retry_at } = self.phase {
            if now >= retry_at {
                self.start_connect(now);
            }
        }
        if let Phase::Connecting { since } = self.phase {
            match self.connected() {
                Ok(true) => self.start_handshake(now),
                Ok(false) if now >= since + self.handshake_limit() => {
                    self.fail(now, "connect timed out".into());
                }
                Ok(false) => {}
                Err(e) => self.fail(now, format!("connect: {e}")),
            }
        }
        if matches!(self.phase, Phase::Handshake { .. } | Phase::Up { .. }) {
            self.flush(now);
            self.fill(now);
            if let Phase::Handshake { since, .. } = self.phase {
                self.handshake(now);
                if matches!(self.phase, Phase::Handshake { .. })
                    && now >= since + self.handshake_limit()
                {
                    self.fail(now, "handshake timed out".into());
                }
            }
        }
        if self.is_up() {
            match self.role {
                // The publisher's only input is subscription notices.
                Role::Publisher => self.read_notices(now),
                Role::Subscriber | Role::Dealer if ahead => self.read_ahead(now),
                Role::Subscriber | Role::Dealer => {}
            }
        }
        self.timers(now);
        if self.is_up() {
            self.flush(now);
        }
    }

    /// What [`Conn::progress`] does except reading an established
    /// connection (no system call unless something is to be written):
    /// before a wait, and after one that found its socket not ready.
    pub(crate) fn tend(&mut self, now: Instant) {
        if !self.is_up() {
            return self.progress(now);
        }
        self.read_any = false;
        self.timers(now);
        if self.is_up() {
            self.flush(now);
        }
    }

    /// Publisher: parses the notices already buffered (no system call).
    pub(crate) fn parse_notices(&mut self, now: Instant) {
        if self.role == Role::Publisher && self.is_up() {
            self.read_notices(now);
        }
    }

    fn timers(&mut self, now: Instant) {
        let Phase::Up { minor } = self.phase else {
            return;
        };
        if let Some(t) = self.hold_until {
            if now >= t {
                self.hold_until = None;
            }
        }
        let expired = self.expired.load(Ordering::SeqCst);
        if expired != self.expired_seen {
            // The sibling connection found the backplane silent.
            self.expired_seen = expired;
            self.fail(now, "the backplane stopped answering heartbeats".into());
            return;
        }
        let s = self.settings;
        if !self.reports
            || !zmtp::heartbeat::has_heartbeats(minor)
            || s.heartbeat_interval.is_zero()
        {
            // The connection that reports the link watches the backplane:
            // a paired publisher's subscriber connection watches for both
            // (the publisher connection may be behind a long queue of
            // subscription notices, where a PING would only be refused); a
            // publisher that goes to a backplane alone watches itself.
            return;
        }
        if now >= self.last_rx + s.heartbeat_timeout {
            self.counters.heartbeat_expired += 1;
            self.expired_seen = self.expired.fetch_add(1, Ordering::SeqCst) + 1;
            self.fail(
                now,
                format!(
                    "no heartbeat from the backplane for {:?}",
                    s.heartbeat_timeout
                ),
            );
            return;
        }
        // A PING only into silence: while the backplane is sending we know
        // it is there, and it knows we are (we read, and answer its PINGs);
        // a PING then would only queue a PONG behind its traffic.
        if now >= self.last_tx + s.heartbeat_interval && now >= self.last_rx + self.quiet() {
            zmtp::put_ping(&mut self.ctrl, s.heartbeat_timeout, b"");
            self.last_tx = now;
        }
    }

    fn start_connect(&mut self, now: Instant) {
        let Some(&addr) = self.addrs.get(self.next_addr % self.addrs.len().max(1)) else {
            self.phase = Phase::Waiting {
                retry_at: now + self.settings.reconnect_max,
            };
            return;
        };
        self.next_addr = self.next_addr.wrapping_add(1);
        match connect_nonblocking(addr) {
            Ok(stream) => {
                self.stream = Some(stream);
                self.phase = Phase::Connecting { since: now };
            }
            Err(e) => self.fail(now, format!("connect: {e}")),
        }
    }

    /// Whether the non-blocking connect finished.
    fn connected(&self) -> io::Result<bool> {
        let Some(stream) = &self.stream else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn start_handshake(&mut self, now: Instant) {
        if let Some(s) = &self.stream {
            let _ = s.set_nodelay(true);
        }
        self.ctrl.clear();
        self.ctrl_pos = 0;
        self.ctrl.extend_from_slice(&zmtp::greeting());
        zmtp::put_ready(&mut self.ctrl, self.role.socket_type());
        self.inbuf.clear();
        self.direct = None;
        self.decoder = zmtp::Decoder::with_limits(self.settings.max_message, 64 * 1024);
        self.phase = Phase::Handshake {
            since: now,
            minor: None,
        };
        self.last_rx = now;
        self.last_tx = now;
    }

    fn handshake(&mut self, now: Instant) {
        let Phase::Handshake { since, minor } = self.phase else {
            return;
        };
        let minor = match minor {
            Some(m) => m,
            None => {
                let got = self.inbuf.data();
                match zmtp::check_greeting(got) {
                    Ok(Some(m)) => {
                        self.inbuf.consume(zmtp::GREETING_LEN);
                        self.phase = Phase::Handshake {
                            since,
                            minor: Some(m),
                        };
                        m
                    }
                    Ok(None) => return,
                    Err(e) => return self.fail(now, format!("handshake: {e}")),
                }
            }
        };
        let buf = self.inbuf.data();
        match self.decoder.step(buf) {
            Ok(zmtp::Step::NeedMore) => {}
            Ok(zmtp::Step::Command { len, body }) => {
                let frame = buf.get(body..len).unwrap_or(&[]);
                let result = match zmtp::split_command(frame) {
                    Ok((b"READY", props)) => match zmtp::ready::socket_type(props) {
                        // RFC 37: Socket-Type SHOULD be there; without it we
                        // trust the port.
                        Ok(None) => Ok(()),
                        Ok(Some(t)) if self.role.peer_ok(&t) => Ok(()),
                        Ok(Some(t)) => Err(format!(
                            "the backplane's {} port is a {t} socket",
                            self.role.port()
                        )),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok((b"ERROR", reason)) => Err(format!(
                        "the backplane refused us: {}",
                        String::from_utf8_lossy(reason.get(1..).unwrap_or(&[]))
                    )),
                    Ok((name, _)) => Err(format!(
                        "expected READY, got {}",
                        String::from_utf8_lossy(name)
                    )),
                    Err(e) => Err(e.to_string()),
                };
                self.inbuf.consume(len);
                match result {
                    Ok(()) => self.up(now, minor),
                    Err(why) => self.fail(now, format!("handshake: {why}")),
                }
            }
            Ok(_) => self.fail(now, "handshake: expected READY".into()),
            Err(e) => self.fail(now, format!("handshake: {e}")),
        }
    }

    fn up(&mut self, now: Instant, minor: u8) {
        self.phase = Phase::Up { minor };
        self.backoff = self.settings.reconnect;
        self.counters.connects += 1;
        if self.reports {
            // (The component reports its subscriber connection's state;
            // nobody would take a paired publisher's changes.)
            self.changes.push_back(Change::Up);
        }
        match self.role {
            Role::Subscriber => {
                for t in &self.topics {
                    zmtp::put_subscription(&mut self.ctrl, t, true);
                }
            }
            Role::Dealer => {}
            Role::Publisher => {
                if self.out.queue_len() > 0 {
                    // Messages published while the backplane was away wait
                    // until it announces a subscriber (subscribers reconnect
                    // at the same time), at most one reconnect interval
                    // beyond the handshake plus a second.
                    self.hold_until = Some(now + Duration::from_secs(1));
                }
            }
        }
        self.flush(now);
    }

    /// Closes the connection after a failure and schedules the next attempt.
    fn fail(&mut self, now: Instant, why: String) {
        let was_up = self.is_up();
        if let Some(stream) = self.stream.take() {
            // Shut down before the close: the keeper thread may be in
            // `poll` on this socket, which holds it open past our close
            // until that poll returns (up to a heartbeat interval later);
            // a shutdown reaches the backplane now.
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if self.out.drop_partial() {
            // The backplane got part of the head message: it is lost.
            self.counters.lost += 1;
        }
        self.ctrl.clear();
        self.ctrl_pos = 0;
        self.inbuf.clear();
        self.direct = None;
        self.starved = false;
        self.hold_until = None;
        self.tail_since = None;
        if was_up {
            self.counters.disconnects += 1;
            log::info!("{}: connection lost: {why}", self.endpoint);
            if self.reports {
                self.changes.push_back(Change::Down(why));
            }
        } else {
            log::debug!("{}: {why}", self.endpoint);
        }
        self.phase = Phase::Waiting {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(self.settings.reconnect_max);
    }

    /// Closes the connection now (the next attempt after the reconnect
    /// interval).
    pub(crate) fn close(&mut self, now: Instant, why: &str) {
        if self.stream.is_some() {
            self.fail(now, why.into());
        }
    }

    /// Closes the connection for good: its owner dropped it.
    pub(crate) fn retire(&mut self, now: Instant, why: &str) {
        self.close(now, why);
        self.retired = true;
        self.phase = Phase::Waiting { retry_at: now };
    }

    /// Queues a message; `false` when the high-water mark is reached
    /// (nothing queued). Written at once unless a write happened less than
    /// [`COALESCE`] ago (then it waits for the next write: a later send, a
    /// poll, or the keeper after [`LINGER`]).
    pub(crate) fn send(&mut self, now: Instant, frames: &[&[u8]]) -> bool {
        let hwm = self.settings.send_hwm;
        if hwm > 0 && self.out.queue_len() >= hwm {
            // Full: make room if the socket takes bytes now.
            if self.is_up() {
                self.flush(now);
            }
            if self.out.queue_len() >= hwm {
                return false;
            }
        }
        if self.is_up() && self.expired.load(Ordering::Relaxed) != self.expired_seen {
            self.timers(now);
        }
        let put = |v: &mut Vec<u8>| {
            let last = frames.len().saturating_sub(1);
            for (i, f) in frames.iter().enumerate() {
                let flags = if i < last { zmtp::MORE } else { 0 };
                zmtp::put_frame(v, flags, f);
            }
        };
        let body: usize = frames.iter().map(|f| f.len()).sum();
        if body >= OWN_BUFFER_AT {
            // Large: framed into a buffer of its own, not into (and
            // growing) a chunk shared with other messages.
            let mut v = Vec::with_capacity(body + 9 * frames.len());
            put(&mut v);
            self.out.push_owned_message(v);
        } else {
            self.out.push_message_with(put);
        }
        if !self.is_up() {
            if let Phase::Waiting { retry_at } = self.phase {
                if now >= retry_at {
                    self.progress(now);
                }
            }
            return true;
        }
        if self.hold_until.is_none()
            && (now.saturating_duration_since(self.last_tx) >= COALESCE
                || self.out.unsent() >= FLUSH_BYTES as u64)
        {
            self.flush(now);
        } else if self.tail_since.is_none() {
            self.tail_since = Some(now);
        }
        true
    }

    /// Writes what can be written now: commands between messages, messages
    /// unless held.
    pub(crate) fn flush(&mut self, now: Instant) {
        if self.role == Role::Publisher && self.is_up() && self.out.has_output() {
            // Read before writing messages: a backplane that went away has
            // left a FIN (or RST) here, and messages written after it would
            // be lost without a trace. Now they stay queued for the next
            // connection. (Notices are read on the way.)
            self.fill(now);
            if !self.is_up() {
                return;
            }
        }
        self.write_queued(now);
        self.out.settle();
        if !self.out.has_output() {
            self.tail_since = None;
        }
    }

    /// [`Conn::flush`]'s writes: commands between messages, messages
    /// unless held, until done or the socket takes no more.
    fn write_queued(&mut self, now: Instant) {
        let mut none = zmtp::output::Spare::default();
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let up = matches!(self.phase, Phase::Up { .. });
            let in_message = self.out.in_message();
            let result = if self.ctrl_pos > 0 || (!in_message && self.ctrl_pos < self.ctrl.len()) {
                let bytes = self.ctrl.get(self.ctrl_pos..).unwrap_or(&[]);
                if bytes.is_empty() {
                    self.ctrl.clear();
                    self.ctrl_pos = 0;
                    continue;
                }
                stream.write(bytes).map(|n| (n, true))
            } else if up && (in_message || self.hold_until.is_none()) && self.out.has_output() {
                self.out.write_to(stream, &mut none).map(|n| (n, false))
            } else {
                return;
            };
            match result {
                Ok((0, _)) => return self.fail(now, "connection closed".into()),
                Ok((n, true)) => {
                    self.ctrl_pos += n;
                    if self.ctrl_pos >= self.ctrl.len() {
                        self.ctrl.clear();
                        self.ctrl_pos = 0;
                    }
                    self.last_tx = now;
                }
                Ok((_, false)) => self.last_tx = now,
                Err(e) if would_block(&e) => return,
                Err(e) => return self.fail(now, format!("write: {e}")),
            }
        }
    }

    /// Reads what arrived, up to [`Settings::recv_buffer`] buffered bytes.
    fn fill(&mut self, now: Instant) {
        loop {
            if !self.starved && self.inbuf.len() + self.ahead_bytes >= self.settings.recv_buffer {
                // Not read for lack of room: the peer is not silent.
                self.last_rx = now;
                return;
            }
            if self.direct.is_none() && self.role != Role::Publisher && self.is_up() {
                self.start_direct();
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            if let Some(d) = self.direct.as_mut() {
                let Some(rest) = d.body.get_mut(d.got..) else {
                    return;
                };
                if rest.is_empty() {
                    return; // whole: for `step`
                }
                let room = rest.len();
                match stream.read(rest) {
                    Ok(0) => {
                        return self.fail(now, "the backplane closed the connection".into());
                    }
                    Ok(n) => {
                        d.got += n;
                        self.last_rx = now;
                        self.read_any = true;
                        self.unparsed = true;
                        self.drained = n < room;
                        if n < room {
                            return;
                        }
                    }
                    Err(e) => {
                        self.drained = true;
                        if !would_block(&e) {
                            self.fail(now, format!("read: {e}"));
                        }
                        return;
                    }
                }
                continue;
            }
            let spare = self.inbuf.spare(READ_CHUNK);
            let room = spare.len();
            match stream.read(spare) {
                Ok(0) => {
                    return self.fail(now, "the backplane closed the connection".into());
                }
                Ok(n) => {
                    self.inbuf.commit(n);
                    self.last_rx = now;
                    self.read_any = true;
                    self.unparsed = self.role != Role::Publisher;
                    self.drained = n < room;
                    if n < room {
                        return;
                    }
                }
                Err(e) => {
                    self.drained = true;
                    if !would_block(&e) {
                        self.fail(now, format!("read: {e}"));
                    }
                    return;
                }
            }
        }
    }

    /// Starts reading a large last frame into its own buffer when the
    /// buffered bytes are the start of such a message.
    fn start_direct(&mut self) {
        let data = self.inbuf.data();
        if self.decoder.discarding() || data.is_empty() {
            return;
        }
        let Some((body_at, len)) = direct_tail(data, self.settings.max_message) else {
            return;
        };
        let head = data.get(..body_at).unwrap_or(&[]);
        let frames: Vec<Vec<u8>> = zmtp::parts::parts(head).map(|(_, b)| b.to_vec()).collect();
        let have = data.get(body_at..).unwrap_or(&[]);
        let mut body = vec![0; len];
        let got = have.len().min(len);
        if let (Some(dst), Some(src)) = (body.get_mut(..got), have.get(..got)) {
            dst.copy_from_slice(src);
        }
        let used = data.len();
        self.inbuf.consume(used);
        self.direct = Some(Direct { frames, body, got });
        self.starved = true;
    }

    fn read_notices(&mut self, now: Instant) {
        let mut frames = Vec::new();
        loop {
            frames.clear();
            match self.step(now, &mut frames) {
                Next::Message => {
                    let mut any = false;
                    for f in &frames {
                        match zmtp::message_subscription(f) {
                            Some(zmtp::Subscription::Subscribe(t)) => {
                                self.notices.push_back((true, t.to_vec()));
                                any = true;
                            }
                            Some(zmtp::Subscription::Cancel(t)) => {
                                self.notices.push_back((false, t.to_vec()));
                            }
                            None => self.counters.ignored += 1,
                        }
                    }
                    if any {
                        self.hold_until = None;
                    }
                }
                Next::Oversize { .. } => self.counters.ignored += 1,
                Next::Empty => return,
            }
        }
    }

    /// The next message for the subscriber: parses buffered bytes, reading
    /// more when they hold no whole message. A caller that waits for the
    /// socket when there is nothing passes `read: false`: then the socket
    /// is read only if the last read filled its buffer (more is likely
    /// there); after a short one, the wait (a level-triggered `poll`) finds
    /// bytes that came since, and the read that would only say
    /// `WouldBlock` is saved.
    pub(crate) fn next_message(
        &mut self,
        now: Instant,
        frames: &mut Vec<Vec<u8>>,
        read: bool,
    ) -> Next {
        if let Some(ahead) = self.ahead.pop_front() {
            return self.take_ahead(ahead, frames);
        }
        if !self.is_up() {
            return Next::Empty;
        }
        let next = self.step(now, frames);
        if (read || !self.drained) && next == Next::Empty && self.is_up() {
            self.fill(now);
            let next = self.step(now, frames);
            self.flush(now);
            return next;
        }
        next
    }

    fn take_ahead(&mut self, ahead: Next, frames: &mut Vec<Vec<u8>>) -> Next {
        match ahead {
            Next::Message => {
                let got = self.ahead_frames.pop_front().unwrap_or_default();
                self.ahead_bytes -= got.iter().map(Vec::len).sum::<usize>();
                *frames = got;
                Next::Message
            }
            other => other,
        }
    }

    /// Parses what arrived into whole messages queued for the owner (up to
    /// [`Settings::recv_buffer`] bytes), answering the backplane's `PING`s
    /// on the way: done for an owner busy elsewhere, so that the backplane
    /// hears from us and does not count us as stuck.
    fn read_ahead(&mut self, now: Instant) {
        loop {
            if self.ahead_bytes >= self.settings.recv_buffer {
                return;
            }
            let mut frames = Vec::new();
            match self.step(now, &mut frames) {
                Next::Message => {
                    self.ahead_bytes += frames.iter().map(Vec::len).sum::<usize>();
                    self.ahead_frames.push_back(frames);
                    self.ahead.push_back(Next::Message);
                }
                Next::Empty => return,
                oversize => self.ahead.push_back(oversize),
            }
        }
    }

    /// Parses the buffered bytes up to the next message, handling commands.
    fn step(&mut self, now: Instant, frames: &mut Vec<Vec<u8>>) -> Next {
        if let Some(d) = &self.direct {
            if d.got < d.body.len() {
                self.starved = true;
                self.unparsed = false;
                return Next::Empty;
            }
            if let Some(d) = self.direct.take() {
                frames.extend(d.frames);
                frames.push(d.body);
                self.starved = false;
                return Next::Message;
            }
        }
        loop {
            let buf = self.inbuf.data();
            let step = match self.decoder.step(buf) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(now, format!("bad frame from the backplane: {e}"));
                    return Next::Empty;
                }
            };
            self.starved = false;
            match step {
                zmtp::Step::NeedMore => {
                    self.starved = true;
                    self.unparsed = false;
                    return Next::Empty;
                }
                zmtp::Step::Skipped(n) => self.inbuf.consume(n),
                zmtp::Step::Command { len, body } => {
                    let cmd = buf.get(body..len).unwrap_or(&[]).to_vec();
                    self.inbuf.consume(len);
                    if let Err(why) = self.command(now, &cmd) {
                        self.fail(now, why);
                        return Next::Empty;
                    }
                }
                zmtp::Step::Interleaved { at, len, body } => {
                    let cmd = buf.get(body..at + len).unwrap_or(&[]).to_vec();
                    // Cut the command out: move the message's frames before
                    // it up over it.
                    self.inbuf.cut(at, len);
                    if let Err(why) = self.command(now, &cmd) {
                        self.fail(now, why);
                        return Next::Empty;
                    }
                }
                zmtp::Step::Message { len, .. } => {
                    let message = buf.get(..len).unwrap_or(&[]);
                    frames.extend(zmtp::parts::parts(message).map(|(_, b)| b.to_vec()));
                    self.inbuf.consume(len);
                    return Next::Message;
                }
                zmtp::Step::Oversize { skip } => {
                    let (topic, len) = oversize_parts(buf.get(..skip).unwrap_or(&[]))
                        .unwrap_or((Vec::new(), self.decoder.oversize_len()));
                    self.inbuf.consume(skip);
                    self.counters.oversize += 1;
                    return Next::Oversize { topic, len };
                }
            }
        }
    }

    fn command(&mut self, _now: Instant, body: &[u8]) -> Result<(), String> {
        let (name, data) = zmtp::split_command(body).map_err(|e| e.to_string())?;
        match name {
            b"PING" => zmtp::put_pong(&mut self.ctrl, data),
            b"ERROR" => {
                return Err(format!(
                    "the backplane sent ERROR: {}",
                    String::from_utf8_lossy(data.get(1..).unwrap_or(&[]))
                ))
            }
            b"SUBSCRIBE" | b"CANCEL" if self.role == Role::Publisher => {
                if let Some(s) = zmtp::command_subscription(name, data) {
                    match s {
                        zmtp::Subscription::Subscribe(t) => {
                            self.notices.push_back((true, t.to_vec()));
                            self.hold_until = None;
                        }
                        zmtp::Subscription::Cancel(t) => {
                            self.notices.push_back((false, t.to_vec()));
                        }
                    }
                }
            }
            // PONG and unknown commands: the bytes were a sign of life.
            _ => {}
        }
        Ok(())
    }

    /// A subscriber connection fed by [`Conn::feed`] instead of a socket
    /// (fuzzing): our greeting and `READY` are queued, the peer's awaited.
    pub(crate) fn unconnected(settings: Settings, now: Instant) -> Conn {
        let mut c = Conn::new(Role::Subscriber, "fuzz".into(), Vec::new(), settings, now);
        c.start_handshake(now);
        c
    }

    /// Takes `bytes` as if read from the socket (fuzzing), then advances the
    /// handshake.
    pub(crate) fn feed(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(self.phase, Phase::Handshake { .. } | Phase::Up { .. }) {
            return;
        }
        let spare = self.inbuf.spare(bytes.len());
        if let Some(dst) = spare.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.inbuf.commit(bytes.len());
        }
        self.last_rx = now;
        if matches!(self.phase, Phase::Handshake { .. }) {
            self.handshake(now);
        }
    }

    /// Parses the next message out of the buffered bytes (no socket I/O).
    pub(crate) fn parse_next(&mut self, now: Instant, frames: &mut Vec<Vec<u8>>) -> Next {
        if !self.is_up() {
            return Next::Empty;
        }
        self.step(now, frames)
    }

    /// Bytes of commands queued for the peer (greeting, READY, PONGs).
    pub(crate) fn ctrl_len(&self) -> usize {
        self.ctrl.len() - self.ctrl_pos
    }

    /// Subscriber: adds a subscription (sent now when up, and on every
    /// reconnect).
    pub(crate) fn subscribe(&mut self, now: Instant, topic: &[u8]) {
        self.topics.push(topic.to_vec());
        if self.is_up() {
            zmtp::put_subscription(&mut self.ctrl, topic, true);
            self.flush(now);
        }
    }

    /// Subscriber: removes one subscription to `topic`; the backplane is
    /// told only when none is left (as libzmq's SUB does).
    pub(crate) fn unsubscribe(&mut self, now: Instant, topic: &[u8]) {
        if let Some(i) = self.topics.iter().position(|t| t == topic) {
            self.topics.remove(i);
            if self.is_up() && !self.topics.iter().any(|t| t == topic) {
                zmtp::put_subscription(&mut self.ctrl, topic, false);
                self.flush(now);
            }
        }
    }

    /// Bytes queued to write.
    pub(crate) fn pending_bytes(&self) -> usize {
        (self.ctrl.len() - self.ctrl_pos) + usize::try_from(self.out.unsent()).unwrap_or(usize::MAX)
    }
}

/// Received bytes: `buf[start..end]`, read into `buf[end..]` (zeroed once,
/// when the buffer grows, not per read).
#[derive(Debug, Default)]
struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    fn data(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
            if self.buf.len() > SHRINK_ABOVE {
                // After an exceptionally large message: give the memory
                // back (below this size it is kept: re-growing and zeroing
                // it per message costs more than it saves).
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Cuts `len` bytes out at offset `at` of the data (a command between
    /// the frames of a message): the `at` bytes before it move up.
    fn cut(&mut self, at: usize, len: usize) {
        let s = self.start;
        if s + at + len <= self.end {
            self.buf.copy_within(s..s + at, s + len);
            self.start += len;
        }
    }

    /// At least `want` bytes of room after the data (moving the data to
    /// the front or growing the buffer).
    fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want {
            if self.start > 0 && self.buf.len() - self.len() >= want && self.start >= self.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let size = (self.end + want).max(self.buf.len() * 2);
                self.buf.resize(size, 0);
            }
        }
        self.buf.get_mut(self.end..).unwrap_or(&mut [])
    }

    fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

/// The first frame of an oversize message and the body length of the frame
/// that went over, from the headers at the start of `buf`.
fn oversize_parts(buf: &[u8]) -> Option<(Vec<u8>, u64)> {
    let first = zmtp::parse_header(buf).ok()??;
    let first_end = first
        .header_len
        .checked_add(usize::try_from(first.body_len).ok()?)?;
    match buf.get(first.header_len..first_end) {
        Some(topic) if first.more() => {
            let second = zmtp::parse_header(buf.get(first_end..)?).ok()??;
            Some((topic.to_vec(), second.body_len))
        }
        _ => Some((Vec::new(), first.body_len)),
    }
}

/// Starts a non-blocking TCP connect.
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) if would_block(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let last = frames.len() - 1;
        for (i, f) in frames.iter().enumerate() {
            zmtp::put_frame(&mut out, if i < last { zmtp::MORE } else { 0 }, f);
        }
        out
    }

    #[test]
    fn a_large_last_frame_not_all_in_is_read_directly() {
        let body = vec![9u8; DIRECT_AT + 10];
        let m = message(&[b"topic", &body]);
        let body_at = m.len() - body.len();
        // Headers in, body partly in: direct, from the body's offset.
        assert_eq!(
            direct_tail(&m[..body_at + 3], usize::MAX),
            Some((body_at, body.len()))
        );
        // Whole, or over the size limit, or the header not in yet: no.
        assert_eq!(direct_tail(&m, usize::MAX), None);
        assert_eq!(direct_tail(&m[..body_at + 3], m.len() - 1), None);
        assert_eq!(direct_tail(&m[..body_at - 1], usize::MAX), None);
        // A small last frame, or a large frame that is not the last: no.
        let small = message(&[b"topic", &[1u8; 100]]);
        assert_eq!(direct_tail(&small[..small.len() - 1], usize::MAX), None);
        let mid = message(&[b"topic", &body, b"tail"]);
        assert_eq!(direct_tail(&mid[..body_at + 3], usize::MAX), None);
        // A command first: no.
        let mut ping = Vec::new();
        zmtp::put_ping(&mut ping, Duration::from_secs(1), b"");
        ping.extend_from_slice(&m[..body_at + 3]);
        assert_eq!(direct_tail(&ping, usize::MAX), None);
    }
}
