//! The device (microcontroller) end of the link.

use heapless::{Deque, String, Vec};

use super::endpoint::Endpoint;
use super::wire::{self, Declarations, Hello, Message};
use super::{Config, IdentityError, Instant, SendError, Stats, SubscribeError};
use crate::frame::{Deframer, Feed};

/// What [`Device::handle_rx`] and [`Device::poll`] report.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// The gateway welcomed us: the link is up, [`Device::publish`] works and
    /// the subscriptions are being declared.
    Up {
        /// The gateway's session id (changes when the gateway restarts).
        gateway_session: u32,
    },
    /// The link went down (no frame from the gateway within the timeout, or
    /// the gateway asked for a resync); the device says HELLO again by itself.
    Down,
    /// A PUBLISH or REQUEST from the gateway was queued: take it with
    /// [`Device::recv`].
    Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sending HELLO until a matching WELCOME arrives.
    Hello {
        last: Option<Instant>,
        seq: Option<u8>,
    },
    Up,
}

/// The device end of the serial link: a sans-IO state machine.
///
/// - `FRAME`: receive buffer, the largest COBS-encoded frame (delimiter
///   excluded) the device accepts, declared to the gateway in HELLO; also
///   the largest frame it sends. At least [`MIN_FRAME`](super::MIN_FRAME).
/// - `TX`: bytes for queued outgoing PUBLISHes (each takes topic + payload +
///   3 bytes).
/// - `QUEUE`: receive-queue slots of `FRAME` bytes each; the gateway gets
///   exactly this many credits, so it never sends more than fit.
/// - `SUBS`: declaration table size: subscriptions plus services.
///
/// See the [module docs](super) for the protocol and a full example.
#[derive(Debug)]
pub struct Device<
    const FRAME: usize = 256,
    const TX: usize = 512,
    const QUEUE: usize = 4,
    const SUBS: usize = 8,
> {
    deframer: Deframer<FRAME>,
    ep: Endpoint<TX>,
    name: String<{ wire::MAX_NAME_LEN }>,
    version: String<{ wire::MAX_VERSION_LEN }>,
    session: u32,
    state: State,
    gateway_session: Option<u32>,
    /// What the device declares; the mark: declared to the gateway.
    subs: Declarations<SUBS>,
    /// Withdrawals (UNSUBSCRIBE, UNSERVE) not sent yet.
    unsubs: Declarations<SUBS>,
    /// Received data messages: the frame kind, then the frame payload.
    queue: Deque<Vec<u8, FRAME>, QUEUE>,
    force_resync: bool,
}

impl<const FRAME: usize, const TX: usize, const QUEUE: usize, const SUBS: usize>
    Device<FRAME, TX, QUEUE, SUBS>
{
    /// A device named `name` running firmware `version`. `session` must
    /// differ on every boot (a hardware RNG value, a boot counter kept in
    /// flash, a free-running timer read at start-up): it is how the gateway
    /// tells a reset from a reconnect.
    ///
    /// # Errors
    /// [`IdentityError`] if the name or version is too long.
    pub fn new(
        name: &str,
        version: &str,
        session: u32,
        config: Config,
    ) -> Result<Self, IdentityError> {
        const {
            assert!(
                FRAME >= super::MIN_FRAME,
                "FRAME must be at least link::MIN_FRAME"
            )
        };
        const { assert!(QUEUE >= 1, "QUEUE must be at least 1") };
        let name = String::try_from(name).map_err(|_| IdentityError::NameTooLong)?;
        let version = String::try_from(version).map_err(|_| IdentityError::VersionTooLong)?;
        Ok(Device {
            deframer: Deframer::new(),
            ep: Endpoint::new(config, FRAME),
            name,
            version,
            session,
            state: State::Hello {
                last: None,
                seq: None,
            },
            gateway_session: None,
            subs: Declarations::new(),
            unsubs: Declarations::new(),
            queue: Deque::new(),
            force_resync: false,
        })
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// This boot's session id.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Counters of everything sent, received and dropped.
    pub fn stats(&self) -> Stats {
        let mut s = self.ep.stats;
        s.frame = self.deframer.stats();
        s
    }

    /// PUBLISHes the device may still queue before it needs more credit.
    pub fn credits(&self) -> u16 {
        if self.is_up() {
            self.ep.credits()
        } else {
            0
        }
    }

    /// Subscribes to a topic prefix (ZeroMQ semantics: `""` gets everything).
    /// Declared to the gateway now if the link is up, and again after every
    /// reconnect. Subscribing twice is a no-op.
    ///
    /// # Errors
    /// [`SubscribeError::TopicTooLong`] or [`SubscribeError::TableFull`].
    pub fn subscribe(&mut self, topic: &str) -> Result<(), SubscribeError> {
        self.declare(topic, false)
    }

    /// Declares a service: the gateway registers `name` with the services
    /// broker and forwards its requests (they arrive through
    /// [`Device::recv`], see [`Received::request`]; answer each with
    /// [`Device::reply`]). Services share the table with subscriptions and
    /// are re-declared after every reconnect like them.
    ///
    /// # Errors
    /// [`SubscribeError::TopicTooLong`] for a name longer than
    /// [`wire::MAX_SERVICE_LEN`] or empty, [`SubscribeError::TableFull`].
    #[cfg(feature = "services")]
    pub fn serve(&mut self, name: &str) -> Result<(), SubscribeError> {
        if name.is_empty() || name.len() > wire::MAX_SERVICE_LEN {
            return Err(SubscribeError::TopicTooLong);
        }
        self.declare(name, true)
    }

    // Out of line: it is called once per declaration at start-up (flash).
    #[inline(never)]
    fn declare(&mut self, topic: &str, service: bool) -> Result<(), SubscribeError> {
        // Still known to the gateway if its withdrawal has not gone out.
        let declared = self.unsubs.remove(service, topic).is_some();
        match self.subs.insert(service, topic, declared) {
            Ok(_) => Ok(()),
            Err(crate::topic::Error::TooLong) => Err(SubscribeError::TopicTooLong),
            Err(_) => Err(SubscribeError::TableFull),
        }
    }

    /// Drops a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.undeclare(topic, false)
    }

    /// Withdraws a service; returns whether it was declared.
    #[cfg(feature = "services")]
    pub fn unserve(&mut self, name: &str) -> bool {
        self.undeclare(name, true)
    }

    fn undeclare(&mut self, topic: &str, service: bool) -> bool {
        let Some(declared) = self.subs.remove(service, topic) else {
            return false;
        };
        if declared && self.is_up() && self.unsubs.insert(service, topic, false).is_err() {
            // Too many pending: re-declare everything instead (on next poll).
            self.force_resync = true;
        }
        true
    }

    /// The current subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subs.names(false)
    }

    /// The services the device declares.
    #[cfg(feature = "services")]
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.subs.names(true)
    }

    /// Queues the REPLY to request `id` (from [`Received::request`]):
    /// `status` [`wire::status::OK`] with one msgpack value as `body`, or an
    /// error status with UTF-8 detail text. It needs a credit like a
    /// PUBLISH.
    ///
    /// # Errors
    /// [`SendError`]; every refused reply is counted in [`Stats`] (the
    /// gateway answers the client with an error at the request's deadline).
    #[cfg(feature = "services")]
    pub fn reply(
        &mut self,
        id: u32,
        status: u8,
        body: &[u8],
        _now: Instant,
    ) -> Result<(), SendError> {
        if !self.is_up() {
            self.ep.stats.count_send_error(SendError::NotUp);
            return Err(SendError::NotUp);
        }
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&id.to_le_bytes());
        head[4] = status;
        self.ep.try_queue(wire::kind::REPLY, &[&head, body])
    }

    /// Queues a PUBLISH of `payload` (msgpack bytes, sent unchanged) on
    /// `topic`; it goes out through [`Device::poll_transmit`].
    ///
    /// # Errors
    /// [`SendError`]; every refused message is counted in [`Stats`].
    pub fn publish(&mut self, topic: &str, payload: &[u8], _now: Instant) -> Result<(), SendError> {
        if !self.is_up() {
            self.ep.stats.count_send_error(SendError::NotUp);
            return Err(SendError::NotUp);
        }
        self.ep.try_queue_publish(topic, payload)
    }

    /// Feeds received bytes. Returns the next event and the unconsumed
    /// input; call again with the rest until it returns `(None, _)` (then
    /// all input is consumed).
    pub fn handle_rx<'b>(&mut self, bytes: &'b [u8], now: Instant) -> (Option<Event>, &'b [u8]) {
        let mut input = bytes;
        while !input.is_empty() {
            let (frame, rest) = match self.deframer.feed(input) {
                Feed::Consumed => return (None, &[]),
                Feed::Dropped { rest, .. } => {
                    input = rest;
                    continue;
                }
                Feed::Frame { frame, rest } => (frame, rest),
            };
            input = rest;
            self.ep.stats.frames_rx = self.ep.stats.frames_rx.wrapping_add(1);
            let seq = frame.seq();
            let msg = match Message::parse(frame.kind(), frame.payload()) {
                Ok(m) => m,
                Err(_) => {
                    self.ep.stats.malformed = self.ep.stats.malformed.wrapping_add(1);
                    continue;
                }
            };
            let ev = on_message(
                &mut self.ep,
                &mut self.state,
                &mut self.gateway_session,
                &mut self.subs,
                &mut self.unsubs,
                &mut self.queue,
                self.session,
                seq,
                msg,
                (frame.kind(), frame.payload()),
                now,
            );
            if let Some(ev) = ev {
                if ev == Event::Down {
                    self.start_hello();
                }
                return (Some(ev), input);
            }
        }
        (None, input)
    }

    /// Runs timers: reports [`Event::Down`] when the gateway has been silent
    /// for [`Config::timeout_ms`].
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        if self.is_up() && (self.ep.timed_out(now) || self.force_resync) {
            if self.force_resync {
                self.ep.stats.resyncs = self.ep.stats.resyncs.wrapping_add(1);
            }
            self.ep.stats.downs = self.ep.stats.downs.wrapping_add(1);
            self.start_hello();
            return Some(Event::Down);
        }
        None
    }

    /// The time by which [`Device::poll`] / [`Device::poll_transmit`] should
    /// be called again if nothing arrives.
    pub fn poll_at(&self) -> Instant {
        match self.state {
            State::Up => {
                let pending = !self.unsubs.is_empty() || self.force_resync || self.subs.any(false);
                if pending {
                    Instant::ZERO
                } else {
                    self.ep.next_deadline()
                }
            }
            State::Hello { last: None, .. } => Instant::ZERO,
            State::Hello { last: Some(t), .. } => Instant::from_millis(
                t.millis()
                    .saturating_add(u64::from(self.ep.cfg.hello_interval_ms)),
            ),
        }
    }

    /// Writes the next frame to send into `out` (give it `FRAME + 2` bytes:
    /// then any frame fits, with the lone delimiter that follows a pause —
    /// see [`IDLE_FLUSH_MS`](super::IDLE_FLUSH_MS)) and returns its length;
    /// `None` when nothing is due. Call it until it returns `None` after
    /// every other call.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let lead = self.ep.lead(now, out.len());
        let (pre, body) = out.split_at_mut(lead);
        let n = self.next_frame(now, body)?;
        self.ep.sent(now, pre);
        Some(lead + n)
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "each value is bounded first: FRAME and SUBS by min() to the wire field, free slots and credits by MAX_CREDITS (≤ 255), the subscription count by SUBS (≤ 255 in HELLO)"
    )]
    fn next_frame(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        match self.state {
            State::Hello { last, .. } => {
                if last
                    .is_some_and(|t| now.millis_since(t) < u64::from(self.ep.cfg.hello_interval_ms))
                {
                    return None;
                }
                let hello = Hello {
                    session: self.session,
                    max_frame: FRAME.min(0xFFFF) as u16,
                    credits: self.free_slots() as u8,
                    max_subs: SUBS.min(255) as u8,
                    name: &self.name,
                    version: &self.version,
                };
                let (n, seq) = self.ep.transmit(&Message::Hello(hello), out)?;
                self.state = State::Hello {
                    last: Some(now),
                    seq: Some(seq),
                };
                Some(n)
            }
            State::Up => {
                if let Some(u) = self.unsubs.first() {
                    let msg = declaration(u.name(), u.is_service(), true);
                    let (n, _) = self.ep.transmit(&msg, out)?;
                    self.unsubs.pop_first();
                    return Some(n);
                }
                if let Some(sub) = self.subs.first_mut(false) {
                    let msg = declaration(sub.name(), sub.is_service(), false);
                    let (n, _) = self.ep.transmit(&msg, out)?;
                    sub.set_mark(true);
                    return Some(n);
                }
                if self.ep.status_needed(now) {
                    let limit = self.credit_limit();
                    let digest = self
                        .subs
                        .iter()
                        .fold(0u16, |acc, s| acc.wrapping_add(wire::digest_term(s)));
                    return self
                        .ep
                        .transmit_status(now, limit, self.subs.len() as u8, digest, out);
                }
                self.ep.transmit_publish(out)
            }
        }
    }

    /// Takes the oldest received PUBLISH or REQUEST, if any. The queue slot (and the
    /// gateway's credit) is released when the returned guard is dropped.
    pub fn recv(&mut self) -> Option<Received<'_, FRAME, TX, QUEUE, SUBS>> {
        if self.queue.is_empty() {
            None
        } else {
            Some(Received { dev: self })
        }
    }

    /// Whether a PUBLISH of `payload_len` bytes on `topic` could be queued
    /// now: the link is up, the gateway has granted credit and the send
    /// buffer has room. A device waits for it before taking work whose
    /// answer it must publish (backpressure on the gateway's credits instead
    /// of a dropped answer).
    pub fn can_publish(&self, topic: &str, payload_len: usize) -> bool {
        self.is_up() && self.ep.has_room(1 + topic.len() + payload_len)
    }

    /// PUBLISHes queued for the gateway and not yet transmitted.
    pub fn queued_tx(&self) -> u32 {
        self.ep.queued_publishes()
    }

    /// Received PUBLISHes waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "each value is bounded first: FRAME and SUBS by min() to the wire field, free slots and credits by MAX_CREDITS (≤ 255), the subscription count by SUBS (≤ 255 in HELLO)"
    )]
    fn credit_limit(&self) -> u16 {
        let free = (QUEUE - self.queue.len()).min(super::MAX_CREDITS) as u16;
        self.ep.pub_received.wrapping_add(free)
    }

    fn start_hello(&mut self) {
        self.state = State::Hello {
            last: None,
            seq: None,
        };
        self.force_resync = false;
        self.unsubs.clear();
        // Queued messages stay: the new session starts with the free slots.
        self.ep.reset_session(0, self.free_slots());
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "each value is bounded first: FRAME and SUBS by min() to the wire field, free slots and credits by MAX_CREDITS (≤ 255), the subscription count by SUBS (≤ 255 in HELLO)"
    )]
    fn free_slots(&self) -> u16 {
        (QUEUE - self.queue.len()).min(super::MAX_CREDITS) as u16
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "each value is bounded first: FRAME and SUBS by min() to the wire field, free slots and credits by MAX_CREDITS (≤ 255), the subscription count by SUBS (≤ 255 in HELLO)"
    )]
    fn release(&mut self) {
        self.queue.pop_front();
        let limit = self.credit_limit();
        self.ep
            .credit_changed(limit, QUEUE.min(super::MAX_CREDITS) as u16);
    }
}

/// The SUBSCRIBE / SERVE (or, `withdraw`, UNSUBSCRIBE / UNSERVE) of a
/// table entry.
fn declaration(topic: &str, service: bool, withdraw: bool) -> Message<'_> {
    #[cfg(feature = "services")]
    if service {
        return if withdraw {
            Message::Unserve(topic)
        } else {
            Message::Serve(topic)
        };
    }
    let _ = service;
    if withdraw {
        Message::Unsubscribe(topic)
    } else {
        Message::Subscribe(topic)
    }
}

/// Data messages the device receives: PUBLISH and (`services`) REQUEST.
fn inbound_data(msg: &Message<'_>) -> bool {
    match msg {
        Message::Publish { .. } => true,
        #[cfg(feature = "services")]
        Message::Request { .. } => true,
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "each value is bounded first: FRAME and SUBS by min() to the wire field, free slots and credits by MAX_CREDITS (≤ 255), the subscription count by SUBS (≤ 255 in HELLO)"
)]
fn on_message<const FRAME: usize, const TX: usize, const QUEUE: usize, const SUBS: usize>(
    ep: &mut Endpoint<TX>,
    state: &mut State,
    gateway_session: &mut Option<u32>,
    subs: &mut Declarations<SUBS>,
    unsubs: &mut Declarations<SUBS>,
    queue: &mut Deque<Vec<u8, FRAME>, QUEUE>,
    session: u32,
    seq: u8,
    msg: Message<'_>,
    raw: (u8, &[u8]),
    now: Instant,
) -> Option<Event> {
    match *state {
        State::Hello { seq: hello_seq, .. } => {
            if let Message::Welcome(w) = msg {
                if w.device_session == session && Some(w.hello_seq) == hello_seq {
                    *state = State::Up;
                    *gateway_session = Some(w.gateway_session);
                    let free = (QUEUE - queue.len()).min(super::MAX_CREDITS) as u16;
                    ep.reset_session(w.credits, free);
                    ep.set_rx_expected(seq);
                    ep.peer_max_frame = w.max_frame;
                    ep.last_rx = now;
                    ep.status_due = true;
                    subs.set_marks(false);
                    unsubs.clear();
                    ep.stats.ups = ep.stats.ups.wrapping_add(1);
                    return Some(Event::Up {
                        gateway_session: w.gateway_session,
                    });
                }
            }
            ep.stats.count_not_up(&msg);
            None
        }
        State::Up => {
            if let Message::Resync { gateway_session: g } = msg {
                if Some(g) != *gateway_session || ep.accept_seq(seq) {
                    ep.stats.resyncs = ep.stats.resyncs.wrapping_add(1);
                    ep.stats.downs = ep.stats.downs.wrapping_add(1);
                    return Some(Event::Down);
                }
                return None;
            }
            if !ep.accept_seq(seq) {
                return None;
            }
            ep.last_rx = now;
            match msg {
                Message::Heartbeat(hb) => {
                    ep.on_heartbeat(&hb);
                    None
                }
                msg if inbound_data(&msg) => {
                    ep.on_publish_received();
                    // The slot holds the kind and the frame payload as
                    // received (checked by the parser).
                    let mut slot = Vec::new();
                    let ok = slot.push(raw.0).is_ok()
                        && slot.extend_from_slice(raw.1).is_ok()
                        && queue.push_back(slot).is_ok();
                    if ok {
                        Some(Event::Received)
                    } else {
                        ep.stats.drop_queue_full = ep.stats.drop_queue_full.wrapping_add(1);
                        None
                    }
                }
                // A WELCOME for an older HELLO, or frames a gateway never sends.
                _ => {
                    ep.stats.unexpected = ep.stats.unexpected.wrapping_add(1);
                    None
                }
            }
        }
    }
}

/// A received PUBLISH or REQUEST at the head of the device's queue; dropping
/// it frees the slot and returns a credit to the gateway.
#[derive(Debug)]
pub struct Received<'a, const FRAME: usize, const TX: usize, const QUEUE: usize, const SUBS: usize>
{
    dev: &'a mut Device<FRAME, TX, QUEUE, SUBS>,
}

/// A request for one of the device's services (see [`Device::serve`]).
#[cfg(feature = "services")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<'a> {
    /// Pass it to [`Device::reply`].
    pub id: u32,
    /// The service name.
    pub service: &'a str,
    /// The request body: msgpack, as the client sent it.
    pub body: &'a [u8],
}

impl<const FRAME: usize, const TX: usize, const QUEUE: usize, const SUBS: usize>
    Received<'_, FRAME, TX, QUEUE, SUBS>
{
    /// The slot: the frame kind, then the frame payload as received (its
    /// layout was checked by the parser on arrival).
    fn slot(&self) -> (u8, &[u8]) {
        match self.dev.queue.front().and_then(|v| v.split_first()) {
            Some((&kind, payload)) => (kind, payload),
            None => (0, &[]),
        }
    }

    /// A `str8` at the start of `b` and the bytes after it.
    #[inline(always)]
    fn str8(b: &[u8]) -> (&str, &[u8]) {
        let n = b.first().map_or(0, |&n| usize::from(n));
        match (b.get(1..1 + n), b.get(1 + n..)) {
            (Some(s), Some(rest)) => (core::str::from_utf8(s).unwrap_or(""), rest),
            _ => ("", &[]),
        }
    }

    /// The topic of a PUBLISH (`""` for a REQUEST).
    pub fn topic(&self) -> &str {
        match self.slot() {
            (wire::kind::PUBLISH, p) => Self::str8(p).0,
            _ => "",
        }
    }

    /// The msgpack payload bytes of a PUBLISH, exactly as the gateway
    /// forwarded them (empty for a REQUEST).
    pub fn payload(&self) -> &[u8] {
        match self.slot() {
            (wire::kind::PUBLISH, p) => Self::str8(p).1,
            _ => &[],
        }
    }

    /// The request, if this is a REQUEST.
    #[cfg(feature = "services")]
    pub fn request(&self) -> Option<Request<'_>> {
        match self.slot() {
            (wire::kind::REQUEST, p) => {
                let id = p.get(..4)?;
                let (service, body) = Self::str8(p.get(4..)?);
                Some(Request {
                    id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
                    service,
                    body,
                })
            }
            _ => None,
        }
    }
}

impl<const FRAME: usize, const TX: usize, const QUEUE: usize, const SUBS: usize> Drop
    for Received<'_, FRAME, TX, QUEUE, SUBS>
{
    fn drop(&mut self) {
        self.dev.release();
    }
}
