//! The sans-IO heart of the serial gateway: the gateway end of the link,
//! the backplane subscriptions that mirror the device's, the queue towards
//! the device and every counter. No sockets, no clock: the run loop passes
//! bytes, backplane messages and the time in, and applies the [`Action`]s
//! that come out.

use std::collections::{BTreeMap, VecDeque};

use banyan_core::link::{self, gateway::Event, Instant, SendError};
use banyan_core::topic;
use serde::Serialize;

use banyan_component::conflate;
use banyan_component::wire::Validator;

/// Status messages published because something changed: a burst of
/// [`STATUS_BURST`], then at most one per this many ms.
pub const STATUS_MIN_GAP_MS: u64 = 100;
/// See [`STATUS_MIN_GAP_MS`].
pub const STATUS_BURST: u32 = 4;

/// The link gateway as the serial gateway sizes it: frames up to 1024 bytes
/// (COBS-encoded), 4 KiB of queued PUBLISHes, up to 32 device subscriptions.
pub type LinkGateway = link::Gateway<1024, 4096, 32>;

/// The device's subscriptions: the core's table, sized like the link's
/// mirror (32 prefixes of up to 64 bytes).
type DeviceSubs = topic::Table<32, { link::wire::MAX_SUB_TOPIC_LEN }>;

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
    /// Control topics (backplane names): a message on one of them waiting in
    /// the queue is dropped (counted in [`Counters::drop_stale`]) when a
    /// newer one on the same topic replaces it (sets every field it sets,
    /// see [`banyan_component::conflate`]). Default `run_motors`.
    pub conflate: Vec<String>,
    /// A queued message older than this (ms) is dropped (counted in
    /// [`Counters::drop_stale`]) instead of being sent late. Default 250.
    pub max_queue_age_ms: u64,
    /// How the device's topics map to backplane topics (prefix, remapping).
    /// Default: unchanged.
    pub topics: TopicMap,
    /// The broker name of a device service `s` is this prefix followed by
    /// `s`. Default `None`: the device's name and a dot (`qemu-bot.info`).
    pub service_prefix: Option<String>,
    /// Requests waiting for the device's reply (sent or waiting for
    /// credit); beyond this a request is refused at once with an error.
    /// Default 32.
    pub max_pending_requests: usize,
}

/// How device topics map to backplane topics, so that several devices (and
/// robots) share one backplane without changing their firmware: a device
/// topic `t` becomes `prefix + t` on the backplane, unless a remap rule
/// `from=to` matches first (the device topic starts with `from`: that part is
/// replaced by `to`). The reverse mapping is applied to backplane messages
/// for the device; a backplane topic that maps to no device topic is not the
/// device's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMap {
    /// Prepended to every device topic without a remap rule, e.g. `robot1/`.
    pub prefix: String,
    /// `(device prefix, backplane prefix)` rules, tried in order.
    pub remap: Vec<(String, String)>,
}

impl TopicMap {
    /// A map with `prefix` and `remap` rules.
    pub fn new(prefix: impl Into<String>, remap: Vec<(String, String)>) -> TopicMap {
        TopicMap {
            prefix: prefix.into(),
            remap,
        }
    }

    /// The backplane topic of device topic `t`.
    pub fn to_backplane(&self, t: &str) -> String {
        for (from, to) in &self.remap {
            if let Some(rest) = t.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        format!("{}{t}", self.prefix)
    }

    /// The device topic of backplane topic `t`, if it is one: the inverse of
    /// [`TopicMap::to_backplane`].
    pub fn to_device(&self, t: &str) -> Option<String> {
        for (from, to) in &self.remap {
            if let Some(rest) = t.strip_prefix(to.as_str()) {
                let dev = format!("{from}{rest}");
                if self.to_backplane(&dev) == t {
                    return Some(dev);
                }
            }
        }
        let dev = t.strip_prefix(self.prefix.as_str())?;
        (self.to_backplane(dev) == t).then(|| dev.to_owned())
    }
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
            conflate: vec!["run_motors".into()],
            max_queue_age_ms: 250,
            topics: TopicMap::default(),
            service_prefix: None,
            max_pending_requests: 32,
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

/// What the run loop must do for the device's services (registrations with
/// the services broker and answers to requests), taken with
/// [`Bridge::take_service_action`], apart from the backplane's [`Action`]s.
/// A run loop without a broker drains and ignores them: it never hands in
/// requests, so no answer is ever due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAction {
    /// Serve broker service `service` for the device's `device_service`.
    Register {
        /// The broker's name (see [`BridgeConfig::service_prefix`]).
        service: String,
        /// The device's name for it.
        device_service: String,
    },
    /// Stop serving broker service `service`.
    Unregister {
        /// The broker's name.
        service: String,
    },
    /// The answer to the request the run loop handed in with this ticket
    /// ([`Bridge::handle_request`]): the reply (one msgpack value) or an
    /// error for the client.
    Answer {
        /// The run loop's ticket.
        ticket: u64,
        /// The reply body, or the error text.
        result: Result<Vec<u8>, String>,
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
    /// Queued messages dropped as stale: replaced by a newer command on
    /// their topic, or older than [`BridgeConfig::max_queue_age_ms`].
    pub drop_stale: u64,
    /// Backplane messages on a conflated topic skipped before they reached
    /// the bridge because a newer one replaced them (the component's
    /// `stale`; set by the run loop).
    pub drop_superseded: u64,
    /// Log lines lost (rate limit or blocked stderr; set by the run loop).
    pub log_lost: u64,
    /// Times the transport (serial port, TCP connection) was opened.
    pub transport_opens: u64,
    /// Times the transport failed or closed.
    pub transport_losses: u64,
    /// Status messages produced.
    pub status_published: u64,
    /// Status messages that could not be encoded (not published; each one
    /// is logged at `error` level).
    pub status_unencodable: u64,
    /// Service requests handed in by the run loop (from the broker).
    pub requests: u64,
    /// Requests answered with the device's reply.
    pub replies: u64,
    /// Requests the device answered with an error status (unknown
    /// service, handler failure): passed on to the client.
    pub request_errors: u64,
    /// Requests refused at once with an error: link down, too large for
    /// the device, too many pending, unknown device service.
    pub request_refused: u64,
    /// Requests the device did not answer before their deadline (answered
    /// with an error).
    pub request_timeouts: u64,
    /// Requests pending when the link went down, the device reset, its
    /// link restarted (a HELLO with the same session) or the transport was
    /// lost (answered with an error).
    pub request_lost: u64,
    /// Device replies whose body is not one valid msgpack value (the
    /// client gets an error).
    pub reply_invalid: u64,
    /// Device replies for no pending request (late, after its deadline).
    pub reply_unmatched: u64,
}

impl Counters {
    /// Backplane messages that never reached the link.
    pub fn dropped_to_device(&self) -> u64 {
        self.drop_no_credit
            + self.drop_link_down
            + self.drop_too_large
            + self.drop_unsubscribed
            + self.drop_discarded
            + self.drop_stale
            + self.drop_superseded
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
struct Status<'a> {
    gateway: &'a str,
    link: LinkState,
    device: Option<DeviceStatus<'a>>,
    subscriptions: Vec<&'a str>,
    services: Vec<&'a str>,
    pending_requests: usize,
    credits: u16,
    queued: usize,
    counters: &'a Counters,
    /// The link's own counters, serialized from the real struct (a new
    /// counter cannot be forgotten here).
    link_counters: &'a link::Stats,
}

/// Link gateway + backplane subscription bookkeeping + counters. See the
/// [module docs](super).
#[derive(Debug)]
pub struct Bridge {
    cfg: BridgeConfig,
    link: LinkGateway,
    transport_open: bool,
    /// The device's topic prefixes (device names; subscribed on the
    /// backplane under their mapped names): the core's subscription table.
    subscribed: DeviceSubs,
    /// Backplane messages waiting for device credit, with their arrival.
    queue: VecDeque<Queued>,
    actions: VecDeque<Action>,
    validator: Validator,
    counters: Counters,
    status_due: bool,
    /// Changed-status messages that may go out now (see
    /// [`STATUS_MIN_GAP_MS`]), refilled from `status_tokens_at`.
    status_tokens: u32,
    status_tokens_at: Instant,
    last_status: Option<Instant>,
    /// [`Bridge::faults`] when the last status was published.
    published_faults: u64,
    /// The device's services registered with the broker: (device name,
    /// broker name as registered — the device's name may change with a
    /// reset).
    services: Vec<(String, String)>,
    service_actions: VecDeque<ServiceAction>,
    /// Requests waiting for the device, by link request id.
    pending: BTreeMap<u32, Pending>,
    next_request_id: u32,
}

/// A request handed to the device (or waiting for credit).
#[derive(Debug)]
struct Pending {
    ticket: u64,
    service: String,
    /// The body while it waits for credit; `None` once sent.
    unsent: Option<Vec<u8>>,
    deadline: Instant,
}

impl Bridge {
    /// A bridge whose link uses gateway session id `session` (make it differ
    /// between runs, e.g. from the start time).
    pub fn new(session: u32, cfg: BridgeConfig) -> Bridge {
        Bridge {
            link: LinkGateway::new(session, cfg.link),
            cfg,
            transport_open: false,
            subscribed: DeviceSubs::new(),
            queue: VecDeque::new(),
            actions: VecDeque::new(),
            validator: Validator::new(),
            counters: Counters::default(),
            status_due: true,
            status_tokens: STATUS_BURST,
            status_tokens_at: Instant::ZERO,
            last_status: None,
            published_faults: 0,
            services: Vec::new(),
            service_actions: VecDeque::new(),
            pending: BTreeMap::new(),
            next_request_id: 0,
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

    /// The device's topic prefixes (device names, see
    /// [`BridgeConfig::topics`]), in the order it subscribed.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscribed
            .iter()
            .filter_map(|(t, _)| std::str::from_utf8(t).ok())
    }

    /// Backplane messages waiting for device credit.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Records the run loop's counters ([`Counters::drop_superseded`],
    /// [`Counters::log_lost`]).
    pub fn set_loop_counters(&mut self, superseded: u64, log_lost: u64) {
        self.counters.drop_superseded = superseded;
        self.counters.log_lost = log_lost;
    }

    /// The next thing to do on the backplane.
    pub fn take_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing to do for the device's services.
    pub fn take_service_action(&mut self) -> Option<ServiceAction> {
        self.service_actions.pop_front()
    }

    /// The device's services (device names), in the order declared.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|(s, _)| s.as_str())
    }

    /// Requests waiting for the device's reply.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The broker name of device service `s`.
    pub fn service_name(&self, s: &str) -> String {
        match &self.cfg.service_prefix {
            Some(p) => format!("{p}{s}"),
            None => {
                let device = self.link.identity().map_or("device", |i| i.name.as_str());
                format!("{device}.{s}")
            }
        }
    }

    /// A request from the broker for the device's service `service`
    /// (`body`: one msgpack value), to be answered within `budget_ms`.
    /// Every request is answered exactly once, with a
    /// [`ServiceAction::Answer`] carrying `ticket`: the device's reply, or
    /// an error (link down, device reset, no reply in time, …), each
    /// counted.
    pub fn handle_request(
        &mut self,
        ticket: u64,
        service: &str,
        body: &[u8],
        budget_ms: u64,
        now: Instant,
    ) {
        self.counters.requests += 1;
        let refuse = if !self.transport_open {
            Some("the device is not connected".to_owned())
        } else if !self.link.is_up() {
            Some("the device's link is down".to_owned())
        } else if !self.services.iter().any(|(s, _)| s == service) {
            Some(format!("the device does not serve {service:?}"))
        } else if self.pending.len() >= self.cfg.max_pending_requests {
            Some(format!(
                "{} requests already pending for the device",
                self.pending.len()
            ))
        } else {
            None
        };
        if let Some(why) = refuse {
            self.counters.request_refused += 1;
            self.answer(ticket, Err(why));
            return;
        }
        // Answer a little before the client's deadline, so the client gets
        // our explanation rather than the broker's bare timeout.
        let margin = (budget_ms / 10).min(100);
        let deadline = Instant::from_millis(now.millis() + budget_ms.saturating_sub(margin));
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.pending.insert(
            id,
            Pending {
                ticket,
                service: service.to_owned(),
                unsent: Some(body.to_vec()),
                deadline,
            },
        );
        self.flush_requests(now);
    }

    fn answer(&mut self, ticket: u64, result: Result<Vec<u8>, String>) {
        self.service_actions
            .push_back(ServiceAction::Answer { ticket, result });
    }

    /// Sends the requests waiting for credit, oldest first.
    fn flush_requests(&mut self, now: Instant) {
        let waiting: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.unsent.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            let body = p.unsent.take().unwrap_or_default();
            match self.link.request(id, &p.service, &body, now) {
                Ok(()) => {}
                Err(SendError::NoCredit) | Err(SendError::QueueFull) => {
                    p.unsent = Some(body);
                    break;
                }
                Err(e) => {
                    let why = match e {
                        SendError::NotUp => "the device's link is down".to_owned(),
                        e => format!("request not sent to the device: {e}"),
                    };
                    if let Some(p) = self.pending.remove(&id) {
                        self.counters.request_refused += 1;
                        self.answer(p.ticket, Err(why));
                    }
                }
            }
        }
    }

    /// Answers every pending request with an error (the link went down,
    /// the device reset, the transport was lost).
    fn fail_pending(&mut self, why: &str) {
        for (_, p) in std::mem::take(&mut self.pending) {
            self.counters.request_lost += 1;
            self.answer(p.ticket, Err(format!("{why} before the device replied")));
        }
    }

    fn expire_requests(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.counters.request_timeouts += 1;
                let why = if p.unsent.is_some() {
                    "the device gave no credit for the request in time"
                } else {
                    "the device did not reply in time"
                };
                self.answer(p.ticket, Err(why.to_owned()));
            }
        }
    }

    fn on_reply(&mut self, id: u32, status: u8, body: Vec<u8>) {
        let Some(p) = self.pending.remove(&id) else {
            self.counters.reply_unmatched += 1;
            return;
        };
        let result = if status == link::wire::status::OK {
            match self.validator.check(&body) {
                Ok(()) => {
                    self.counters.replies += 1;
                    Ok(body)
                }
                Err(reason) => {
                    self.counters.reply_invalid += 1;
                    Err(format!("the device's reply is not msgpack ({reason})"))
                }
            }
        } else {
            self.counters.request_errors += 1;
            let detail = String::from_utf8_lossy(&body);
            Err(match status {
                link::wire::status::UNKNOWN_SERVICE => {
                    format!("the device does not serve {:?} {detail}", p.service)
                }
                _ => format!("the device failed: {detail}"),
            })
        };
        self.answer(p.ticket, result);
    }

    fn unregister_all(&mut self) {
        for (_, service) in std::mem::take(&mut self.services) {
            self.service_actions
                .push_back(ServiceAction::Unregister { service });
        }
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
        // Bytes in flight are lost with the transport: a reply cannot come.
        self.fail_pending("the device connection was lost");
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
        self.flush_requests(now);
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
                for (t, _) in self.subscribed.iter() {
                    if let Ok(t) = std::str::from_utf8(t) {
                        let t = self.cfg.topics.to_backplane(t);
                        self.actions.push_back(Action::Unsubscribe(t));
                    }
                }
                self.subscribed.clear();
                self.discard_queue();
                self.fail_pending("the device reset");
                self.unregister_all();
                self.status_due = true;
            }
            OwnedEvent::Rejoin => {
                // Both ends restarted their link session (the link layer
                // discarded what it had queued; a device that rebooted with
                // a repeating session id lost the requests it held): a
                // pending request would only end at its deadline.
                if self.pending.is_empty() {
                    log::debug!("{}: device re-joined (same session)", self.cfg.name);
                } else {
                    log::info!(
                        "{}: device re-joined (same session): failing {} pending request(s)",
                        self.cfg.name,
                        self.pending.len()
                    );
                }
                self.fail_pending("the device's link restarted");
                self.status_due = true;
            }
            OwnedEvent::Down => {
                log::warn!("{}: link down (device silent)", self.cfg.name);
                self.discard_queue();
                self.fail_pending("the device's link went down");
                self.status_due = true;
            }
            OwnedEvent::Serve(s) => {
                if !self.services.iter().any(|(x, _)| *x == s) {
                    let service = self.service_name(&s);
                    log::info!("{}: device serves {s:?} (as {service:?})", self.cfg.name);
                    self.services.push((s.clone(), service.clone()));
                    self.service_actions.push_back(ServiceAction::Register {
                        service,
                        device_service: s,
                    });
                    self.status_due = true;
                }
            }
            OwnedEvent::Unserve(s) => {
                if let Some(i) = self.services.iter().position(|(x, _)| *x == s) {
                    let (_, service) = self.services.remove(i);
                    log::info!("{}: device no longer serves {s:?}", self.cfg.name);
                    self.service_actions
                        .push_back(ServiceAction::Unregister { service });
                    self.status_due = true;
                }
            }
            OwnedEvent::Reply { id, status, body } => self.on_reply(id, status, body),
            OwnedEvent::Subscribe(t) => {
                // The link's mirror holds each prefix once and at most as
                // many as our table; a refusal is counted by the link.
                if self.subscribed.contains(t.as_bytes()) {
                    return;
                }
                match self.subscribed.subscribe(t.as_bytes()) {
                    Ok(_) => {
                        let b = self.cfg.topics.to_backplane(&t);
                        log::info!("{}: device subscribes to {t:?} ({b:?})", self.cfg.name);
                        self.actions.push_back(Action::Subscribe(b));
                        self.status_due = true;
                    }
                    Err(e) => log::warn!(
                        "{}: device subscription {t:?} not applied: {e}",
                        self.cfg.name
                    ),
                }
            }
            OwnedEvent::Unsubscribe(t) => {
                if self.subscribed.remove(t.as_bytes()) > 0 {
                    log::info!("{}: device unsubscribes from {t:?}", self.cfg.name);
                    let b = self.cfg.topics.to_backplane(&t);
                    self.actions.push_back(Action::Unsubscribe(b));
                    self.status_due = true;
                }
            }
            OwnedEvent::Publish { topic, payload } => match self.validator.check(&payload) {
                Ok(()) => {
                    self.counters.from_device += 1;
                    let topic = self.cfg.topics.to_backplane(&topic);
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
        let Some(device_topic) = self.cfg.topics.to_device(topic) else {
            self.counters.drop_unsubscribed += 1;
            return;
        };
        let topic = device_topic.as_str();
        if !self.subscribed.matches(topic.as_bytes()) {
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
        self.replace_queued(topic, payload);
        if self.queue.len() < self.cfg.queue_limit {
            self.queue.push_back(Queued {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                at: now,
            });
        } else {
            self.counters.drop_no_credit += 1;
        }
    }

    /// Drops the queued messages a newer command on a conflated `topic`
    /// replaces.
    fn replace_queued(&mut self, topic: &str, payload: &[u8]) {
        let conflated = self
            .cfg
            .conflate
            .iter()
            .any(|c| self.cfg.topics.to_device(c).as_deref() == Some(topic));
        if !conflated {
            return;
        }
        let Some(new_keys) = conflate::keys(payload) else {
            return;
        };
        let before = self.queue.len();
        self.queue.retain(|q| {
            q.topic != topic
                || conflate::keys(&q.payload)
                    .is_none_or(|k| !conflate::replaces(payload, &new_keys, &q.payload, &k))
        });
        self.counters.drop_stale += (before - self.queue.len()) as u64;
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
        while let Some(q) = self.queue.pop_front() {
            // Only commands on control topics go stale: data waits for
            // credit (bounded by the queue limit).
            let control = self.cfg.conflate.contains(&q.topic);
            if control && now.millis_since(q.at) > self.cfg.max_queue_age_ms {
                self.counters.drop_stale += 1;
                continue;
            }
            if !self.try_send(&q.topic, &q.payload, now) {
                self.queue.push_front(q);
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
        self.flush_requests(now);
        self.expire_requests(now);
        let since = |ms: u64| self.last_status.is_none_or(|t| now.millis_since(t) >= ms);
        let periodic = since(self.cfg.status_interval_ms);
        // A change is published at once, but not more than once per
        // STATUS_MIN_GAP_MS: a device that resets in a loop (a HELLO storm)
        // cannot flood the backplane; the status is a snapshot, so the
        // changes in between are in the next one.
        let refill = now.millis_since(self.status_tokens_at) / STATUS_MIN_GAP_MS;
        if refill > 0 {
            let tokens = u64::from(self.status_tokens).saturating_add(refill);
            self.status_tokens =
                u32::try_from(tokens.min(u64::from(STATUS_BURST))).unwrap_or(STATUS_BURST);
            self.status_tokens_at = Instant::from_millis(
                self.status_tokens_at.millis() + refill.saturating_mul(STATUS_MIN_GAP_MS),
            );
        }
        let changed = self.status_due && self.status_tokens > 0;
        if changed {
            self.status_tokens -= 1;
        }
        let faults = self.faults();
        let fault_due = faults != self.published_faults && since(self.cfg.fault_status_ms);
        if changed || periodic || fault_due {
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
    /// [`BridgeConfig::fault_status_ms`]. Every link counter counts as a fault
    /// except those in [`NOT_FAULTS`], so a counter added to
    /// [`link::Stats`] is a fault unless someone says otherwise.
    pub fn faults(&self) -> u64 {
        let c = &self.counters;
        link_faults(&self.link.stats())
            + c.dropped_to_device()
            + c.invalid_from_device
            + c.transport_losses
            + c.status_unencodable
            + c.request_refused
            + c.request_timeouts
            + c.request_lost
            + c.reply_invalid
            + c.reply_unmatched
    }

    /// The status as a msgpack map (what is published on the status topic),
    /// encoded by [`wire::encode`](banyan_component::wire::encode) like every serde
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
            services: self.services().collect(),
            pending_requests: self.pending.len(),
            credits: self.link.credits(),
            queued: self.queue.len(),
            counters: &self.counters,
            link_counters: &stats,
        };
        banyan_component::wire::encode(&status)
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
            if self.status_tokens > 0 {
                return Instant::ZERO;
            }
            return Instant::from_millis(self.status_tokens_at.millis() + STATUS_MIN_GAP_MS);
        }
        let status = if self.faults() != self.published_faults {
            let fault = self.last_status.map_or(Instant::ZERO, |t| {
                Instant::from_millis(t.millis() + self.cfg.fault_status_ms)
            });
            status.min(fault)
        } else {
            status
        };
        let status = match self.pending.values().map(|p| p.deadline).min() {
            Some(d) => status.min(d),
            None => status,
        };
        match self.link.poll_at() {
            Some(t) => status.min(t),
            None => status,
        }
    }
}

/// The [`link::Stats`] fields (as serialized) that count traffic or normal
/// events, not faults; see [`Bridge::faults`].
pub const NOT_FAULTS: &[&str] = &[
    "frames_decoded",
    "frames_rx",
    "frames_tx",
    "publish_tx",
    "publish_rx",
    "ups",
    "resyncs",
    "not_up",
];

/// The sum of the link's fault counters: every integer field of the
/// serialized [`link::Stats`] not named in [`NOT_FAULTS`].
pub(crate) fn link_faults(stats: &link::Stats) -> u64 {
    let Ok(bytes) = rmp_serde::to_vec_named(stats) else {
        return 0;
    };
    let Ok(rmpv::Value::Map(entries)) = rmpv::decode::read_value(&mut &bytes[..]) else {
        return 0;
    };
    entries
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| !NOT_FAULTS.contains(&k)))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

/// A backplane message waiting for device credit.
#[derive(Debug)]
struct Queued {
    topic: String,
    payload: Vec<u8>,
    at: Instant,
}

/// A link event copied out of the link's borrow.
enum OwnedEvent {
    Up,
    Reset,
    Rejoin,
    Down,
    Subscribe(String),
    Unsubscribe(String),
    Publish { topic: String, payload: Vec<u8> },
    Serve(String),
    Unserve(String),
    Reply { id: u32, status: u8, body: Vec<u8> },
    Other,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(ev: Event<'_>) -> Self {
        match ev {
            Event::Up(_) => OwnedEvent::Up,
            Event::Reset(_) => OwnedEvent::Reset,
            Event::Rejoin(_) => OwnedEvent::Rejoin,
            Event::Down => OwnedEvent::Down,
            Event::Subscribe(t) => OwnedEvent::Subscribe(t.to_owned()),
            Event::Unsubscribe(t) => OwnedEvent::Unsubscribe(t.to_owned()),
            Event::Publish { topic, payload } => OwnedEvent::Publish {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            },
            Event::Serve(s) => OwnedEvent::Serve(s.to_owned()),
            Event::Unserve(s) => OwnedEvent::Unserve(s.to_owned()),
            Event::Reply { id, status, body } => OwnedEvent::Reply {
                id,
                status,
                body: body.to_vec(),
            },
            _ => OwnedEvent::Other,
        }
    }
}
