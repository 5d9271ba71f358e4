//! The gateway (Raspberry Pi) end of the link.

use super::endpoint::Endpoint;
use super::wire::{self, Declarations, Message, Welcome};
use super::{Config, Identity, Instant, SendError, Stats};
use crate::frame::{Deframer, Feed};
use crate::topic::Declaration;

/// What [`Gateway::handle_rx`] and [`Gateway::poll`] report.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// The link came up: the device's first frame after our WELCOME arrived
    /// (so both directions work). Its subscriptions follow as
    /// [`Event::Subscribe`].
    Up(&'a Identity),
    /// The device restarted (a HELLO with a new session id): forget every
    /// subscription it declared before. The link is down until the
    /// [`Event::Up`] that follows, then the re-declared subscriptions come.
    Reset(&'a Identity),
    /// The device said HELLO again with the session id it had (its link
    /// timed out or was re-synchronised, or it rebooted with a session id
    /// that repeats): both ends restarted their link session, so data
    /// messages in flight may be lost — a REQUEST sent before will likely
    /// never be answered. Its subscriptions are kept; the re-declared ones
    /// are confirmed and the others removed at its next heartbeat (as
    /// [`Event::Unsubscribe`]).
    Rejoin(&'a Identity),
    /// The device went silent for [`Config::timeout_ms`]. Its subscriptions
    /// are kept: after a re-plug without reset it comes back with the same
    /// session, and only changes are reported.
    Down,
    /// The device subscribes to a topic prefix.
    Subscribe(&'a str),
    /// The device drops a topic prefix.
    Unsubscribe(&'a str),
    /// A message from the device: forward `payload` (msgpack, unchanged) on
    /// `topic`.
    Publish {
        /// The topic.
        topic: &'a str,
        /// The msgpack payload bytes as the device sent them.
        payload: &'a [u8],
    },
    /// The device serves this service name (register it with the broker).
    Serve(&'a str),
    /// The device no longer serves this service name.
    Unserve(&'a str),
    /// The device answers the request `id` sent with [`Gateway::request`].
    #[cfg(feature = "services")]
    Reply {
        /// The request's id.
        id: u32,
        /// [`wire::status::OK`] or an error code.
        status: u8,
        /// `OK`: the reply (msgpack, unchecked by the link); otherwise UTF-8
        /// detail text.
        body: &'a [u8],
    },
}

/// Decision taken for one frame, before borrowing its bytes for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    None,
    Up,
    Reset,
    Rejoin,
    Subscribe,
    Unsubscribe,
    Publish,
    Serve,
    Unserve,
    #[cfg(feature = "services")]
    Reply,
}

/// The step of a declaration (`Subscribe` / `Unsubscribe`) for a service
/// entry: `Serve` / `Unserve`.
fn entry_step(service: bool, topic_step: Step) -> Step {
    if service {
        return match topic_step {
            Step::Subscribe => Step::Serve,
            Step::Unsubscribe => Step::Unserve,
            s => s,
        };
    }
    let _ = service;
    topic_step
}

/// The gateway end of the serial link: a sans-IO state machine.
///
/// - `FRAME`: receive buffer, the largest COBS-encoded frame (delimiter
///   excluded) the gateway accepts, declared to the device in WELCOME; also
///   the largest frame it sends. At least [`MIN_FRAME`](super::MIN_FRAME).
/// - `TX`: bytes for queued outgoing PUBLISHes (each takes topic + payload +
///   3 bytes).
/// - `SUBS`: the largest subscription table a device may declare.
///
/// See the [module docs](super) for the protocol and a full example.
#[derive(Debug)]
pub struct Gateway<const FRAME: usize = 1024, const TX: usize = 4096, const SUBS: usize = 32> {
    deframer: Deframer<FRAME>,
    st: Inner<TX, SUBS>,
}

#[derive(Debug)]
struct Inner<const TX: usize, const SUBS: usize> {
    ep: Endpoint<TX>,
    session: u32,
    up: bool,
    identity: Option<Identity>,
    last_hello_seq: u8,
    /// The device's declarations; the mark: stale, not re-declared since
    /// the device's last re-HELLO.
    mirror: Declarations<SUBS>,
    /// Re-HELLO of the same session: sweep stale entries at its next heartbeat.
    sweep_armed: bool,
    sweeping: bool,
    /// The entry the last sweep removed, lent to its event.
    removed: Option<Declaration<{ wire::MAX_SUB_TOPIC_LEN }>>,
    /// A HELLO was accepted and the session has not timed out.
    active: bool,
    /// The event of the frame that confirmed the link, reported after Up.
    pending_step: Option<Step>,
    welcome_due: Option<u8>,
    resync_due: bool,
    last_resync: Option<Instant>,
    /// A SUBSCRIBE did not fit the mirror this session: the digests cannot
    /// match, so do not ask for resyncs that cannot help.
    sub_overflowed: bool,
}

impl<const TX: usize, const SUBS: usize> Inner<TX, SUBS> {
    fn pending_sweep(&mut self) -> Option<Event<'_>> {
        if self.sweeping {
            match self.mirror.remove_first(true) {
                Some(entry) => {
                    let entry = self.removed.insert(entry);
                    if entry.is_service() {
                        return Some(Event::Unserve(entry.name()));
                    }
                    return Some(Event::Unsubscribe(entry.name()));
                }
                None => self.sweeping = false,
            }
        }
        None
    }

    fn pending_ready(&self) -> bool {
        matches!(self.pending_step, Some(s) if s != Step::None)
            || (self.sweeping && self.mirror.any(true))
    }

    fn on_message(&mut self, seq: u8, msg: Message<'_>, now: Instant) -> Step {
        if let Message::Hello(h) = msg {
            let same = self
                .identity
                .as_ref()
                .is_some_and(|i| i.session == h.session);
            if same && seq == self.last_hello_seq {
                // A repeated copy of the HELLO already answered.
                self.ep.stats.duplicates = self.ep.stats.duplicates.wrapping_add(1);
                return Step::None;
            }
            let had_identity = self.identity.is_some();
            self.identity = Some(Identity::from_hello(&h));
            self.last_hello_seq = seq;
            self.ep.reset_session(u16::from(h.credits), self.window());
            self.ep.set_rx_expected(seq);
            self.ep.peer_max_frame = h.max_frame;
            // A HELLO does not count as liveness: a device that keeps saying
            // HELLO does not hear our WELCOME, and the link is not up.
            self.active = true;
            self.pending_step = None;
            self.welcome_due = Some(seq);
            self.resync_due = false;
            self.sub_overflowed = false;
            if !same {
                self.mirror.clear();
                self.sweep_armed = false;
                self.sweeping = false;
                // A new device session is up once the device's first frame
                // after our WELCOME arrives.
                self.up = false;
                if had_identity {
                    self.ep.stats.resets = self.ep.stats.resets.wrapping_add(1);
                    return Step::Reset;
                }
                return Step::None;
            }
            // Same session: the device re-declares everything; entries it
            // does not re-declare are removed at its next heartbeat.
            self.mirror.set_marks(true);
            self.sweep_armed = true;
            self.sweeping = false;
            return Step::Rejoin;
        }
        if !self.active {
            self.ep.stats.count_not_up(&msg);
            self.request_resync(now);
            return Step::None;
        }
        if !self.ep.accept_seq(seq) {
            return Step::None;
        }
        self.ep.last_rx = now;
        let step = self.on_session_message(msg, now);
        if self.up {
            return step;
        }
        // The device heard our WELCOME: the link is up. Report Up first and
        // this frame's own event right after.
        self.up = true;
        self.ep.stats.ups = self.ep.stats.ups.wrapping_add(1);
        self.pending_step = Some(step);
        Step::Up
    }

    fn on_session_message(&mut self, msg: Message<'_>, now: Instant) -> Step {
        match msg {
            Message::Heartbeat(hb) => {
                self.ep.on_heartbeat(&hb);
                if self.sweep_armed {
                    self.sweep_armed = false;
                    self.sweeping = true;
                }
                let (count, digest) = self
                    .mirror
                    .iter()
                    .filter(|s| !s.mark())
                    .fold((0usize, 0u16), |(n, d), s| {
                        (n + 1, d.wrapping_add(wire::digest_term(s)))
                    });
                if !self.sub_overflowed
                    && (count != usize::from(hb.sub_count) || digest != hb.sub_digest)
                {
                    // A SUBSCRIBE or UNSUBSCRIBE got lost: ask for all again.
                    self.request_resync(now);
                }
                // Credits the device may use were just reconciled.
                let limit = self.credit_limit();
                let window = self.window();
                self.ep.credit_changed(limit, window);
                Step::None
            }
            Message::Subscribe(t) => self.declared(t, false),
            Message::Serve(t) => self.declared(t, true),
            Message::Unsubscribe(t) => self.withdrawn(t, false),
            Message::Unserve(t) => self.withdrawn(t, true),
            Message::Publish { .. } => self.data_received(Step::Publish),
            #[cfg(feature = "services")]
            Message::Reply { .. } => self.data_received(Step::Reply),
            _ => {
                self.ep.stats.unexpected = self.ep.stats.unexpected.wrapping_add(1);
                Step::None
            }
        }
    }

    /// A SUBSCRIBE or (`service`) SERVE.
    fn declared(&mut self, t: &str, service: bool) -> Step {
        if self.mirror.set_mark(service, t, false) {
            return Step::None;
        }
        match self.mirror.insert(service, t, false) {
            Ok(_) => entry_step(service, Step::Subscribe),
            Err(crate::topic::Error::TooLong) => {
                self.ep.stats.malformed = self.ep.stats.malformed.wrapping_add(1);
                Step::None
            }
            Err(_) => {
                self.sub_overflowed = true;
                self.ep.stats.sub_overflow = self.ep.stats.sub_overflow.wrapping_add(1);
                Step::None
            }
        }
    }

    /// An UNSUBSCRIBE or (`service`) UNSERVE.
    fn withdrawn(&mut self, t: &str, service: bool) -> Step {
        match self.mirror.remove(service, t) {
            Some(_) => entry_step(service, Step::Unsubscribe),
            None => Step::None,
        }
    }

    /// A data message (PUBLISH, REPLY): counted as received either way (the
    /// device's heartbeat accounting stays exact), delivered only within
    /// credit.
    fn data_received(&mut self, step: Step) -> Step {
        let over = self.ep.beyond_credit();
        self.ep.on_publish_received();
        if over {
            self.ep.stats.drop_over_credit = self.ep.stats.drop_over_credit.wrapping_add(1);
            return Step::None;
        }
        let limit = self.credit_limit();
        let window = self.window();
        self.ep.credit_changed(limit, window);
        step
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "FRAME by min() to the wire field, MAX_CREDITS ≤ 255, service names checked against their str8 limit when declared"
    )]
    fn window(&self) -> u16 {
        self.ep
            .cfg
            .gateway_credits
            .clamp(1, super::MAX_CREDITS as u16)
    }

    fn credit_limit(&self) -> u16 {
        self.ep.pub_received.wrapping_add(self.window())
    }

    fn request_resync(&mut self, now: Instant) {
        if !self.resync_due
            && self
                .last_resync
                .is_none_or(|t| now.millis_since(t) >= u64::from(self.ep.cfg.hello_interval_ms))
        {
            self.resync_due = true;
        }
    }
}

impl<const FRAME: usize, const TX: usize, const SUBS: usize> Gateway<FRAME, TX, SUBS> {
    /// A gateway whose process run is identified by `session` (any value
    /// that changes between runs: a random number, the start time).
    pub const fn new(session: u32, config: Config) -> Self {
        const {
            assert!(
                FRAME >= super::MIN_FRAME,
                "FRAME must be at least link::MIN_FRAME"
            )
        };
        Gateway {
            deframer: Deframer::new(),
            st: Inner {
                ep: Endpoint::new(config, FRAME),
                session,
                up: false,
                identity: None,
                last_hello_seq: 0,
                mirror: Declarations::new(),
                sweep_armed: false,
                sweeping: false,
                removed: None,
                active: false,
                pending_step: None,
                welcome_due: None,
                resync_due: false,
                last_resync: None,
                sub_overflowed: false,
            },
        }
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.st.up
    }

    /// The device's identity from its last HELLO.
    pub fn identity(&self) -> Option<&Identity> {
        self.st.identity.as_ref()
    }

    /// The device's subscriptions as the gateway knows them.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.st.mirror.names(false)
    }

    /// The services the device declared, as the gateway knows them.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.st.mirror.names(true)
    }

    /// Counters of everything sent, received and dropped.
    pub fn stats(&self) -> Stats {
        let mut s = self.st.ep.stats;
        s.frame = self.deframer.stats();
        s
    }

    /// PUBLISHes the gateway may still queue before the device grants more.
    pub fn credits(&self) -> u16 {
        if self.st.up {
            self.st.ep.credits()
        } else {
            0
        }
    }

    /// Queues a PUBLISH for the device; `payload` (msgpack from the
    /// backplane) is sent unchanged.
    ///
    /// # Errors
    /// [`SendError`]: [`SendError::NoCredit`] when the device's receive queue
    /// is full, and so on. Every refused message is counted in [`Stats`].
    pub fn publish(&mut self, topic: &str, payload: &[u8], _now: Instant) -> Result<(), SendError> {
        if !self.st.up {
            self.st.ep.stats.count_send_error(SendError::NotUp);
            return Err(SendError::NotUp);
        }
        self.st.ep.try_queue_publish(topic, payload)
    }

    /// Queues a REQUEST for the device's service `service` (one it declared,
    /// see [`Event::Serve`]) with msgpack `body`. It takes a credit like a
    /// PUBLISH; the device answers with [`Event::Reply`] carrying `id`
    /// (choose ids that are not reused while a request may be pending).
    /// The link does not time requests out: the caller does, and fails its
    /// pending requests when the link goes down or the device resets.
    ///
    /// # Errors
    /// [`SendError`]: [`SendError::NoCredit`] when the device's receive queue
    /// is full, [`SendError::TopicTooLong`] for a service name longer than
    /// [`wire::MAX_SERVICE_LEN`] or empty, and so on. Every refused request
    /// is counted in [`Stats`].
    #[cfg(feature = "services")]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "FRAME by min() to the wire field, MAX_CREDITS ≤ 255, service names checked against their str8 limit when declared"
    )]
    pub fn request(
        &mut self,
        id: u32,
        service: &str,
        body: &[u8],
        _now: Instant,
    ) -> Result<(), SendError> {
        let err = if !self.st.up {
            SendError::NotUp
        } else if service.is_empty() || service.len() > wire::MAX_SERVICE_LEN {
            SendError::TopicTooLong
        } else {
            let mut head = [0u8; 5];
            head[..4].copy_from_slice(&id.to_le_bytes());
            head[4] = service.len() as u8;
            return self
                .st
                .ep
                .try_queue(wire::kind::REQUEST, &[&head, service.as_bytes(), body]);
        };
        self.st.ep.stats.count_send_error(err);
        Err(err)
    }

    /// Feeds received bytes. Returns the next event and the unconsumed
    /// input; call again with the rest until it returns `(None, _)` (then
    /// all input is consumed and no event is pending).
    pub fn handle_rx<'b>(
        &mut self,
        bytes: &'b [u8],
        now: Instant,
    ) -> (Option<Event<'_>>, &'b [u8]) {
        if self.st.pending_ready() {
            return (self.take_pending(), bytes);
        }
        let mut input = bytes;
        let mut step = Step::None;
        while !input.is_empty() {
            match self.deframer.feed(input) {
                Feed::Consumed => {
                    input = &[];
                    break;
                }
                Feed::Dropped { rest, .. } => input = rest,
                Feed::Frame { frame, rest } => {
                    input = rest;
                    self.st.ep.stats.frames_rx = self.st.ep.stats.frames_rx.wrapping_add(1);
                    let seq = frame.seq();
                    match Message::parse(frame.kind(), frame.payload()) {
                        Ok(msg) => step = self.st.on_message(seq, msg, now),
                        Err(_) => {
                            self.st.ep.stats.malformed = self.st.ep.stats.malformed.wrapping_add(1)
                        }
                    }
                    if !matches!(step, Step::None) {
                        break;
                    }
                }
            }
        }
        let ev = match step {
            Step::None if self.st.pending_ready() => self.take_pending(),
            step => self.event_for(step),
        };
        (ev, input)
    }

    /// The event of a step; frame events borrow the de-framer's last frame.
    fn event_for(&self, step: Step) -> Option<Event<'_>> {
        match step {
            Step::None => None,
            Step::Up => self.st.identity.as_ref().map(Event::Up),
            Step::Reset => self.st.identity.as_ref().map(Event::Reset),
            Step::Rejoin => self.st.identity.as_ref().map(Event::Rejoin),
            _ => match self
                .deframer
                .last_frame()
                .and_then(|f| Message::parse(f.kind(), f.into_payload()).ok())
            {
                Some(Message::Subscribe(t)) => Some(Event::Subscribe(t)),
                Some(Message::Unsubscribe(t)) => Some(Event::Unsubscribe(t)),
                Some(Message::Publish { topic, payload }) => {
                    Some(Event::Publish { topic, payload })
                }
                Some(Message::Serve(t)) => Some(Event::Serve(t)),
                Some(Message::Unserve(t)) => Some(Event::Unserve(t)),
                #[cfg(feature = "services")]
                Some(Message::Reply { id, status, body }) => {
                    Some(Event::Reply { id, status, body })
                }
                _ => None,
            },
        }
    }

    fn take_pending(&mut self) -> Option<Event<'_>> {
        match self.st.pending_step.take() {
            None | Some(Step::None) => self.st.pending_sweep(),
            Some(step) => self.event_for(step),
        }
    }

    /// Runs timers: reports [`Event::Down`] when the device has been silent
    /// for [`Config::timeout_ms`], and pending events (call it until `None`).
    pub fn poll(&mut self, now: Instant) -> Option<Event<'_>> {
        if self.st.up && self.st.ep.timed_out(now) {
            self.st.up = false;
            self.st.active = false;
            self.st.pending_step = None;
            self.st.welcome_due = None;
            self.st.ep.discard_tx();
            self.st.ep.stats.downs = self.st.ep.stats.downs.wrapping_add(1);
            return Some(Event::Down);
        }
        if self.st.pending_ready() {
            return self.take_pending();
        }
        None
    }

    /// The time by which [`Gateway::poll`] / [`Gateway::poll_transmit`]
    /// should be called again if nothing arrives.
    ///
    /// `Some(Instant::ZERO)` when a frame or event is due now; while the link
    /// is up the earlier of the next heartbeat and the device's timeout;
    /// `None` while it is down and nothing is pending (the gateway then has
    /// no timer, it only answers the device).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.st.welcome_due.is_some() || self.st.resync_due || self.st.pending_ready() {
            Some(Instant::ZERO)
        } else if self.st.up {
            Some(self.st.ep.next_deadline())
        } else {
            None
        }
    }

    /// Writes the next frame to send into `out` (give it `FRAME + 2` bytes:
    /// then any frame fits, with the lone delimiter that follows a pause —
    /// see [`IDLE_FLUSH_MS`](super::IDLE_FLUSH_MS)) and returns its length;
    /// `None` when nothing is due. Call it until it returns `None` after
    /// every other call.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let lead = self.st.ep.lead(now, out.len());
        let (pre, body) = out.split_at_mut(lead);
        let n = self.next_frame(now, body)?;
        self.st.ep.sent(now, pre);
        Some(lead + n)
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "FRAME by min() to the wire field, MAX_CREDITS ≤ 255, service names checked against their str8 limit when declared"
    )]
    fn next_frame(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if let Some(hello_seq) = self.st.welcome_due {
            let device_session = self.st.identity.as_ref().map_or(0, |i| i.session);
            let w = Welcome {
                device_session,
                hello_seq,
                gateway_session: self.st.session,
                max_frame: FRAME.min(0xFFFF) as u16,
                credits: self.st.credit_limit(),
            };
            let (n, _) = self.st.ep.transmit(&Message::Welcome(w), out)?;
            self.st.welcome_due = None;
            return Some(n);
        }
        if self.st.resync_due {
            let (n, _) = self.st.ep.transmit(
                &Message::Resync {
                    gateway_session: self.st.session,
                },
                out,
            )?;
            self.st.resync_due = false;
            self.st.last_resync = Some(now);
            self.st.ep.stats.resyncs = self.st.ep.stats.resyncs.wrapping_add(1);
            return Some(n);
        }
        if !self.st.up {
            return None;
        }
        if self.st.ep.status_needed(now) {
            let limit = self.st.credit_limit();
            return self.st.ep.transmit_status(now, limit, 0, 0, out);
        }
        self.st.ep.transmit_publish(out)
    }

    /// Data messages (PUBLISH, REQUEST) queued for the device and not yet
    /// transmitted.
    pub fn queued(&self) -> u32 {
        self.st.ep.queued_publishes()
    }
}
