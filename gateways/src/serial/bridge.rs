//! The sans-IO heart of the serial gateway: the gateway end of the link,
//! the backplane subscriptions that mirror the device's, the queue towards
//! the device and every counter. No sockets, no clock: the run loop passes
//! bytes, backplane messages and the time in, and applies the [`Action`]s
//! that come out.

use std::collections::{BTreeSet, VecDeque};

use banyan_core::link::{self, gateway::Event, Instant, SendError};
use banyan_core::topic;
use serde::Serialize;

use crate::wire::Validator;

/// The link gateway as the serial gateway sizes it: frames up to 1024 bytes
/// (COBS-encoded), 4 KiB of queued PUBLISHes, up to 32 device subscriptions.
pub type LinkGateway = link::Gateway<1024, 4096, 32>;

/// Largest `out` buffer [`Bridge::poll_transmit`] needs.
pub const TX_FRAME: usize = 1100;

/// Settings of a [`Bridge`]. `#[non_exhaustive]`: start from
/// [`BridgeConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeConfig {
    /// Gateway name, shown in the status payload. Default `serial_gateway`.
    pub name: String,
    /// Topic of the status messages. Default `serial_gateway_status`.
    pub status_topic: String,
    /// Publish the status at least this often (ms). Default 1000.
    pub status_interval_ms: u64,
    /// When a drop or error counter changes, publish the status after at
    /// most this long (ms), and not more often. Default 100.
    pub fault_status_ms: u64,
    /// Backplane messages held for the device while it has no credit; past
    /// this they are dropped and counted ([`Counters::drop_no_credit`]).
    /// Default 32.
    pub queue_limit: usize,
    /// Link timing and flow control.
    pub link: link::Config,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: "serial_gateway".into(),
            status_topic: "serial_gateway_status".into(),
            status_interval_ms: 1000,
            fault_status_ms: 100,
            queue_limit: 32,
            link: link::Config::default(),
        }
    }
}

/// What the run loop must do on the backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Subscribe to this topic prefix on the backplane.
    Subscribe(String),
    /// Remove the subscription to this topic prefix.
    Unsubscribe(String),
    /// Publish `payload` (one msgpack value, bytes unchanged) on `topic`.
    Publish {
        /// The topic.
        topic: String,
        /// The msgpack payload.
        payload: Vec<u8>,
    },
}

/// The bridge's own counters (the link's are in [`link::Stats`]). Every
/// message that is not forwarded is counted in exactly one `drop_*` field
/// or in the link stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counters {
    /// Backplane → device messages handed to the link.
    pub to_device: u64,
    /// Device → backplane messages forwarded.
    pub from_device: u64,
    /// Device messages whose payload is not one valid msgpack value
    /// (dropped).
    pub invalid_from_device: u64,
    /// Backplane messages dropped: the device had no credit and the queue
    /// was full.
    pub drop_no_credit: u64,
    /// Backplane messages dropped: the link was down.
    pub drop_link_down: u64,
    /// Backplane messages dropped: too large for the device, or topic too
    /// long.
    pub drop_too_large: u64,
    /// Backplane messages dropped: no device subscription matches (a
    /// message already queued when the device unsubscribed).
    pub drop_unsubscribed: u64,
    /// Queued messages discarded when the link went down or the device
    /// reset.
    pub drop_discarded: u64,
    /// Times the transport (serial port, TCP connection) was opened.
    pub transport_opens: u64,
    /// Times the transport failed or closed.
    pub transport_losses: u64,
    /// Status messages produced.
    pub status_published: u64,
    /// Status messages that could not be encoded (not published; each one
    /// is logged at `error` level).
    pub status_unencodable: u64,
}

impl Counters {
    /// Backplane messages that never reached the link.
    pub fn dropped_to_device(&self) -> u64 {
        self.drop_no_credit
            + self.drop_link_down
            + self.drop_too_large
            + self.drop_unsubscribed
            + self.drop_discarded
    }
}

/// Link state as published on the status topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No transport (port not open / TCP not connected).
    NoTransport,
    /// Transport open, no handshake yet (or the device went silent).
    Down,
    /// Handshake done, heartbeats flowing.
    Up,
}

#[derive(Serialize)]
struct DeviceStatus<'a> {
    name: &'a str,
    version: &'a str,
    session: u32,
    max_frame: u16,
    credits: u8,
    max_subs: u8,
}

#[derive(Serialize)]
struct LinkCounters {
    frames_rx: u32,
    frames_tx: u32,
    crc_errors: u32,
    cobs_errors: u32,
    short_frames: u32,
    oversize_frames: u32,
    seq_gaps: u32,
    duplicates: u32,
    malformed: u32,
    unexpected: u32,
    not_up: u32,
    publish_rx: u32,
    publish_tx: u32,
    publish_lost: u32,
    ups: u32,
    downs: u32,
    resets: u32,
    resyncs: u32,
    sub_overflow: u32,
}

impl From<&link::Stats> for LinkCounters {
    fn from(s: &link::Stats) -> Self {
        LinkCounters {
            frames_rx: s.frames_rx,
            frames_tx: s.frames_tx,
            crc_errors: s.frame.crc,
            cobs_errors: s.frame.cobs,
            short_frames: s.frame.short,
            oversize_frames: s.frame.oversize,
            seq_gaps: s.seq_gaps,
            duplicates: s.duplicates,
            malformed: s.malformed,
            unexpected: s.unexpected,
            not_up: s.not_up,
            publish_rx: s.publish_rx,
            publish_tx: s.publish_tx,
            publish_lost: s.publish_lost,
            ups: s.ups,
            downs: s.downs,
            resets: s.resets,
            resyncs: s.resyncs,
            sub_overflow: s.sub_overflow,
        }
    }
}

#[derive(Serialize)]
struct Status<'a> {
    gateway: &'a str,
    link: LinkState,
    device: Option<DeviceStatus<'a>>,
    subscriptions: Vec<&'a str>,
    credits: u16,
    queued: usize,
    counters: &'a Counters,
    link_counters: LinkCounters,
}

/// Link gateway + backplane subscription bookkeeping + counters. See the
/// [module docs](super).
#[derive(Debug)]
pub struct Bridge {
    cfg: BridgeConfig,
    link: LinkGateway,
    transport_open: bool,
    /// Prefixes subscribed on the backplane on the device's behalf.
    subscribed: BTreeSet<String>,
    /// Backplane messages waiting for device credit.
    queue: VecDeque<(String, Vec<u8>)>,
    actions: VecDeque<Action>,
    validator: Validator,
    counters: Counters,
    status_due: bool,
    last_status: Option<Instant>,
    /// [`Bridge::faults`] when the last status was published.
    published_faults: u64,
}

impl Bridge {
    /// A bridge whose link uses gateway session id `session` (make it differ
    /// between runs, e.g. from the start time).
    pub fn new(session: u32, cfg: BridgeConfig) -> Bridge {
        Bridge {
            link: LinkGateway::new(session, cfg.link),
            cfg,
            transport_open: false,
            subscribed: BTreeSet::new(),
            queue: VecDeque::new(),
            actions: VecDeque::new(),
            validator: Validator::new(),
            counters: Counters::default(),
            status_due: true,
            last_status: None,
            published_faults: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        if !self.transport_open {
            LinkState::NoTransport
        } else if self.link.is_up() {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    /// The link (identity, stats, credits).
    pub fn link(&self) -> &LinkGateway {
        &self.link
    }

    /// The bridge counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Topic prefixes currently subscribed on the backplane for the device.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscribed.iter().map(String::as_str)
    }

    /// Backplane messages waiting for device credit.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The next thing to do on the backplane.
    pub fn take_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The transport was opened (or re-opened).
    pub fn transport_opened(&mut self) {
        self.transport_open = true;
        self.counters.transport_opens += 1;
        self.status_due = true;
    }

    /// The transport failed or closed. The link itself goes down after its
    /// timeout unless the device is back by then (a re-plug).
    pub fn transport_lost(&mut self) {
        if self.transport_open {
            self.transport_open = false;
            self.counters.transport_losses += 1;
            self.status_due = true;
        }
    }

    /// Feeds bytes read from the device.
    pub fn handle_device_bytes(&mut self, bytes: &[u8], now: Instant) {
        let mut input = bytes;
        loop {
            let (ev, rest) = self.link.handle_rx(input, now);
            input = rest;
            let Some(ev) = ev else { break };
            // Copy what the event borrows from the link before touching it.
            let ev = OwnedEvent::from(ev);
            self.on_event(ev);
        }
        self.flush_queue(now);
    }

    fn on_event(&mut self, ev: OwnedEvent) {
        match ev {
            OwnedEvent::Up => {
                if let Some(id) = self.link.identity() {
                    log::info!(
                        "{}: link up: device {} {} session {:08x}",
                        self.cfg.name,
                        id.name,
                        id.version,
                        id.session
                    );
                }
                self.status_due = true;
            }
            OwnedEvent::Reset => {
                log::info!(
                    "{}: device reset: dropping its old subscriptions",
                    self.cfg.name
                );
                for t in std::mem::take(&mut self.subscribed) {
                    self.actions.push_back(Action::Unsubscribe(t));
                }
                self.discard_queue();
                self.status_due = true;
            }
            OwnedEvent::Down => {
                log::warn!("{}: link down (device silent)", self.cfg.name);
                self.discard_queue();
                self.status_due = true;
            }
            OwnedEvent::Subscribe(t) => {
                if self.subscribed.insert(t.clone()) {
                    log::info!("{}: device subscribes to {t:?}", self.cfg.name);
                    self.actions.push_back(Action::Subscribe(t));
                    self.status_due = true;
                }
            }
            OwnedEvent::Unsubscribe(t) => {
                if self.subscribed.remove(&t) {
                    log::info!("{}: device unsubscribes from {t:?}", self.cfg.name);
                    self.actions.push_back(Action::Unsubscribe(t));
                    self.status_due = true;
                }
            }
            OwnedEvent::Publish { topic, payload } => match self.validator.check(&payload) {
                Ok(()) => {
                    self.counters.from_device += 1;
                    self.actions.push_back(Action::Publish { topic, payload });
                }
                Err(reason) => {
                    self.counters.invalid_from_device += 1;
                    log::error!(
                        "{}: device published an invalid payload on {topic:?} ({reason}): dropped",
                        self.cfg.name
                    );
                }
            },
            OwnedEvent::Other => {}
        }
    }

    fn discard_queue(&mut self) {
        self.counters.drop_discarded += self.queue.len() as u64;
        self.queue.clear();
    }

    /// A message from the backplane for the device. Forwarded if a device
    /// subscription matches and the device has credit; queued (up to
    /// [`BridgeConfig::queue_limit`]) while it has none; otherwise dropped
    /// and counted. Never blocks.
    pub fn handle_backplane(&mut self, topic: &str, payload: &[u8], now: Instant) {
        if !self
            .subscribed
            .iter()
            .any(|p| topic::matches(p.as_bytes(), topic.as_bytes()))
        {
            self.counters.drop_unsubscribed += 1;
            return;
        }
        if !self.link.is_up() {
            self.counters.drop_link_down += 1;
            return;
        }
        self.flush_queue(now);
        if self.queue.is_empty() && self.try_send(topic, payload, now) {
            return;
        }
        if self.queue.len() < self.cfg.queue_limit {
            self.queue.push_back((topic.to_owned(), payload.to_vec()));
        } else {
            self.counters.drop_no_credit += 1;
        }
    }

    /// Tries to hand one message to the link. `false` means "no credit now,
    /// keep it"; every other failure is counted here and returns `true`.
    fn try_send(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        if self.link.credits() == 0 {
            return false;
        }
        match self.link.publish(topic, payload, now) {
            Ok(()) => {
                self.counters.to_device += 1;
                true
            }
            Err(SendError::NoCredit) | Err(SendError::QueueFull) => false,
            Err(SendError::NotUp) => {
                self.counters.drop_link_down += 1;
                true
            }
            Err(e) => {
                self.counters.drop_too_large += 1;
                log::warn!(
                    "{}: message on {topic:?} not sent to the device: {e}",
                    self.cfg.name
                );
                true
            }
        }
    }

    fn flush_queue(&mut self, now: Instant) {
        if !self.link.is_up() {
            self.discard_queue();
            return;
        }
        while let Some((topic, payload)) = self.queue.pop_front() {
            if !self.try_send(&topic, &payload, now) {
                self.queue.push_front((topic, payload));
                break;
            }
        }
    }

    /// Runs timers (link timeout, periodic status). Call it when
    /// [`Bridge::poll_at`] is reached and after every input.
    pub fn poll(&mut self, now: Instant) {
        while let Some(ev) = self.link.poll(now).map(OwnedEvent::from) {
            self.on_event(ev);
        }
        self.flush_queue(now);
        let since = |ms: u64| self.last_status.is_none_or(|t| now.millis_since(t) >= ms);
        let periodic = since(self.cfg.status_interval_ms);
        let faults = self.faults();
        let fault_due = faults != self.published_faults && since(self.cfg.fault_status_ms);
        if self.status_due || periodic || fault_due {
            self.published_faults = faults;
            self.status_due = false;
            self.last_status = Some(now);
            match self.status_payload() {
                Ok(payload) => {
                    self.counters.status_published += 1;
                    self.actions.push_back(Action::Publish {
                        topic: self.cfg.status_topic.clone(),
                        payload,
                    });
                }
                Err(e) => {
                    self.counters.status_unencodable += 1;
                    log::error!(
                        "serial gateway {}: status not published on {:?}: {e}",
                        self.cfg.name,
                        self.cfg.status_topic
                    );
                }
            }
        }
    }

    /// The sum of every drop and error counter, bridge and link: when it
    /// changes, the status is published within
    /// [`BridgeConfig::fault_status_ms`].
    pub fn faults(&self) -> u64 {
        let s = self.link.stats();
        let c = &self.counters;
        let link = [
            s.frame.cobs,
            s.frame.short,
            s.frame.crc,
            s.frame.oversize,
            s.seq_gaps,
            s.duplicates,
            s.malformed,
            s.unexpected,
            s.publish_lost,
            s.sub_overflow,
            s.downs,
            s.resets,
        ];
        link.iter().map(|&x| u64::from(x)).sum::<u64>()
            + c.dropped_to_device()
            + c.invalid_from_device
            + c.transport_losses
            + c.status_unencodable
    }

    /// The status as a msgpack map (what is published on the status topic),
    /// encoded by [`wire::encode`](crate::wire::encode) like every serde
    /// payload the gateways send.
    ///
    /// # Errors
    /// The encoder's error (not expected for this plain struct of strings and
    /// integers; [`Bridge::poll`] counts it in
    /// [`Counters::status_unencodable`] and logs it).
    pub fn status_payload(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        let stats = self.link.stats();
        let device = if self.link.is_up() {
            self.link.identity()
        } else {
            None
        };
        let status = Status {
            gateway: &self.cfg.name,
            link: self.state(),
            device: device.map(|id| DeviceStatus {
                name: &id.name,
                version: &id.version,
                session: id.session,
                max_frame: id.max_frame,
                credits: id.credits,
                max_subs: id.max_subs,
            }),
            subscriptions: self.subscriptions().collect(),
            credits: self.link.credits(),
            queued: self.queue.len(),
            counters: &self.counters,
            link_counters: LinkCounters::from(&stats),
        };
        crate::wire::encode(&status)
    }

    /// The next bytes to write to the device (`out` should hold
    /// [`TX_FRAME`] bytes); `None` when nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        self.link.poll_transmit(now, out)
    }

    /// When [`Bridge::poll`] must run next if nothing arrives.
    pub fn poll_at(&self) -> Instant {
        let status = self.last_status.map_or(Instant::ZERO, |t| {
            Instant::from_millis(t.millis() + self.cfg.status_interval_ms)
        });
        if self.status_due {
            return Instant::ZERO;
        }
        let status = if self.faults() != self.published_faults {
            let fault = self.last_status.map_or(Instant::ZERO, |t| {
                Instant::from_millis(t.millis() + self.cfg.fault_status_ms)
            });
            status.min(fault)
        } else {
            status
        };
        match self.link.poll_at() {
            Some(t) => status.min(t),
            None => status,
        }
    }
}

/// A link event copied out of the link's borrow.
enum OwnedEvent {
    Up,
    Reset,
    Down,
    Subscribe(String),
    Unsubscribe(String),
    Publish { topic: String, payload: Vec<u8> },
    Other,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(ev: Event<'_>) -> Self {
        match ev {
            Event::Up(_) => OwnedEvent::Up,
            Event::Reset(_) => OwnedEvent::Reset,
            Event::Down => OwnedEvent::Down,
            Event::Subscribe(t) => OwnedEvent::Subscribe(t.to_owned()),
            Event::Unsubscribe(t) => OwnedEvent::Unsubscribe(t.to_owned()),
            Event::Publish { topic, payload } => OwnedEvent::Publish {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            },
            _ => OwnedEvent::Other,
        }
    }
}
