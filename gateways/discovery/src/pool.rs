//! The discovery protocol as a sans-IO state machine: [`Pool`].
//!
//! Use it when you bring your own sockets (or none, in tests); otherwise use
//! the std driver (`driver::Driver`, `node::Node`), which owns the sockets
//! and calls this. Nothing here reads a clock or touches the network: the
//! caller passes each received datagram with its source address and the
//! current [`Instant`] in ([`Pool::handle`]), calls [`Pool::poll`] at
//! [`Pool::poll_at`], sends what [`Pool::poll_transmit`] returns and reads
//! [`Pool::poll_event`].
//!
//! # Behaviour
//!
//! - **Beacons.** A node (any kind but [`NodeKind::Tool`]) sends a BEACON to
//!   the pool ([`Dest::Pool`]: the multicast group on every interface) every
//!   [`Config::beacon_interval_ms`] ± [`Config::jitter_percent`]. On start it
//!   sends three quick beacons (at 0, 150 and 400 ms) and a QUERY ("who is
//!   there") at 0, 250 and 750 ms that every node answers with a unicast
//!   beacon after a random delay under [`Config::answer_spread_ms`]: a
//!   joining node does not depend on one datagram, and learns the pool
//!   without waiting a beacon interval.
//! - **Found and gone.** A peer is [`Event::Found`] on its first valid
//!   datagram (in practice a beacon or a query answer) and
//!   [`Event::Gone`] after [`Config::gone_after_ms`] without any datagram
//!   from it (default 5 s), at once when it says BYE, or 1.5 intervals after
//!   a new instance of the same name and kind appeared from the same address
//!   (a restart). After [`Config::probe_after_ms`] of silence the pool probes
//!   the peer by unicast (a QUERY addressed to it, every
//!   `gone_after_ms / 8`), which on Wi-Fi is acknowledged and retried by the
//!   link layer, unlike multicast.
//! - **Seeds and unicast peers.** Everything sent to the pool is also sent
//!   by unicast to each of [`Config::seeds`] and to every peer that was
//!   heard by unicast, with [`wire::flags::UNICAST`] set; a node that
//!   receives such a copy answers and beacons to the sender by unicast. This
//!   is how pools span networks without multicast (VPNs, containers).
//! - **Messages and identify.** [`Pool::send`] sends a MESSAGE to one node
//!   by id (unicast when its address is known), to every node of a name, or
//!   to all; [`Pool::identify`] asks one or every node for its
//!   [`Identity`]; answers arrive as [`Event::Identity`].
//! - **Duplicate names.** Two live instances with one name are reported
//!   once per instance as [`Event::DuplicateName`] (also when one of them is
//!   this node).
//! - **Hostile input.** Every datagram is validated ([`wire`]); a malformed
//!   one, one of another channel or version, a flood of answers, a full peer
//!   table, a full event or send queue: each is counted in [`Stats`] and
//!   otherwise ignored. Answers (to QUERY and IDENTIFY) are rate-limited by a
//!   token bucket ([`Config::answer_rate`], [`Config::answer_burst`]).

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::wire::{
    self, Beacon, Body, Datagram, Endpoint, EndpointKind, Header, Identity, NodeKind, Query,
};
use crate::Instant;

/// Pool settings. `#[non_exhaustive]`: start from [`Config::default`] (or
/// [`Config::for_channel`]) and change fields.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Channel name (default `banyan`); only its hash is sent.
    pub channel: String,
    /// Beacon period (default 1000 ms).
    pub beacon_interval_ms: u32,
    /// Each period is drawn uniformly within ± this percentage (default 20).
    pub jitter_percent: u8,
    /// A peer silent this long is gone (default 5000 ms).
    pub gone_after_ms: u32,
    /// A peer silent this long is probed by unicast (default 2500 ms).
    pub probe_after_ms: u32,
    /// Addresses (normally `host:pool port`) that get a unicast copy of
    /// everything sent to the pool (default none).
    pub seeds: Vec<SocketAddr>,
    /// Most peers tracked; more are counted in [`Stats::peers_full`]
    /// (default 256).
    pub max_peers: usize,
    /// Answers (to QUERY and IDENTIFY) per second, sustained (default 20).
    pub answer_rate: u32,
    /// Answers in a burst (default 40).
    pub answer_burst: u32,
    /// An answer to a request sent to every node waits a random delay
    /// below this, so answers do not collide (default 50 ms).
    pub answer_spread_ms: u32,
    /// Most undelivered events kept (default 1024).
    pub max_events: usize,
    /// Most datagrams waiting to be sent (default 512).
    pub max_queued: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_channel(crate::DEFAULT_CHANNEL)
    }
}

impl Config {
    /// The default settings on channel `channel`.
    pub fn for_channel(channel: &str) -> Config {
        Config {
            channel: channel.to_owned(),
            beacon_interval_ms: 1000,
            jitter_percent: 20,
            gone_after_ms: 5000,
            probe_after_ms: 2500,
            seeds: Vec::new(),
            max_peers: 256,
            answer_rate: 20,
            answer_burst: 40,
            answer_spread_ms: 50,
            max_events: 1024,
            max_queued: 512,
        }
    }
}

/// This node: what its beacons and identity say.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Name (1–32 bytes, no control characters).
    pub name: String,
    /// Kind. A [`NodeKind::Tool`] never beacons and answers nothing.
    pub kind: NodeKind,
    /// The gateway a device is behind (its instance id), else 0.
    pub parent: u64,
    /// Advertised endpoints (at most 4; address `0.0.0.0` = "the address
    /// you received this from").
    pub endpoints: Vec<Endpoint>,
    /// Host name (identity only).
    pub host: String,
    /// Process id (identity only).
    pub pid: u32,
    /// Software version (identity only).
    pub version: String,
    /// Topics published (identity only).
    pub publishes: Vec<String>,
    /// Topic prefixes subscribed (identity only).
    pub subscribes: Vec<String>,
    /// Application counters (identity only).
    pub counters: Vec<(String, u64)>,
}

impl LocalNode {
    /// A node named `name` of kind `kind`, no endpoints, empty identity
    /// fields, version of this crate.
    pub fn new(name: &str, kind: NodeKind) -> LocalNode {
        LocalNode {
            name: name.to_owned(),
            kind,
            parent: 0,
            endpoints: Vec::new(),
            host: String::new(),
            pid: 0,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            publishes: Vec::new(),
            subscribes: Vec::new(),
            counters: Vec::new(),
        }
    }

    /// Adds an endpoint (address `0.0.0.0`: the receiver fills in the
    /// address it heard us from).
    pub fn with_endpoint(mut self, kind: EndpointKind, port: u16) -> LocalNode {
        self.endpoints.push(Endpoint {
            kind,
            port,
            addr: Ipv4Addr::UNSPECIFIED,
        });
        self
    }
}

/// Whom a message or request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One instance.
    Id(u64),
    /// Every node of this name.
    Name(String),
    /// Every node.
    All,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The pool: the multicast group (and broadcast fallback) on every
    /// interface the driver uses. Unicast copies for seeds and unicast
    /// peers are separate [`Dest::To`] transmits.
    Pool,
    /// One address, by unicast.
    To(SocketAddr),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub dest: Dest,
    /// The UDP payload.
    pub bytes: Vec<u8>,
}

/// One way a peer was heard: the interface (the driver's interface index,
/// `None` if unknown) and the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Interface index (OS `ifindex`) it arrived on, if known.
    pub iface: Option<u32>,
    /// Source address.
    pub ip: IpAddr,
}

/// Most paths kept per peer.
pub const MAX_PATHS: usize = 8;

/// A node of the pool, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Instance id (new at every start of the node).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: NodeKind,
    /// The gateway a device is behind, else 0.
    pub parent: u64,
    /// Endpoints as advertised (`0.0.0.0` = the path's address; see
    /// [`Peer::endpoint`]).
    pub endpoints: Vec<Endpoint>,
    /// Source address of its last datagram (its unicast socket).
    pub addr: SocketAddr,
    /// Every (interface, address) it was heard on, first first.
    pub paths: Vec<Path>,
    /// When it was found.
    pub first_seen: Instant,
    /// When it was last heard.
    pub last_seen: Instant,
    /// Beacons received (answers included, duplicates not).
    pub beacons: u64,
    /// Beacons missed (gaps in its sequence numbers).
    pub lost: u64,
    /// Heard by unicast: everything sent to the pool is also sent to it.
    pub unicast: bool,
    last_seq: u32,
    dup_reported: bool,
    next_probe: Instant,
    successor: bool,
}

impl Peer {
    /// The best path: a loopback one (same host) if any, else the first.
    pub fn best_path(&self) -> Option<Path> {
        self.paths
            .iter()
            .find(|p| p.ip.is_loopback())
            .or_else(|| self.paths.first())
            .copied()
    }

    /// The address of its first endpoint of kind `kind`, over the best path.
    pub fn endpoint(&self, kind: EndpointKind) -> Option<SocketAddrV4> {
        let e = self.endpoints.iter().find(|e| e.kind == kind)?;
        if !e.addr.is_unspecified() {
            return Some(SocketAddrV4::new(e.addr, e.port));
        }
        match self.best_path()?.ip {
            IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, e.port)),
            IpAddr::V6(_) => None,
        }
    }
}

/// Why a peer is gone.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoneReason {
    /// Silent for [`Config::gone_after_ms`].
    Silent,
    /// It said BYE.
    Left,
    /// A new instance of the same name and kind appeared at its address
    /// and it went silent (a restart).
    Replaced,
}

/// How a received message was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addressed {
    /// To this instance's id.
    Id,
    /// To this node's name.
    Name,
    /// To everyone.
    All,
}

/// What the pool reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new peer.
    Found(Peer),
    /// A known peer changed its name, kind, parent or endpoints.
    Updated(Peer),
    /// A peer left or went silent.
    Gone {
        /// The peer as last known.
        peer: Peer,
        /// Why.
        reason: GoneReason,
    },
    /// Two live instances share a name.
    DuplicateName {
        /// The name.
        name: String,
        /// The two instance ids (the first is this node's when `local`).
        ids: [u64; 2],
        /// One of them is this node.
        local: bool,
    },
    /// A message for this node.
    Message {
        /// Sender id.
        from: u64,
        /// Sender's source address.
        addr: SocketAddr,
        /// How it was addressed.
        to: Addressed,
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// An answer to [`Pool::identify`].
    Identity {
        /// Sender id.
        from: u64,
        /// Sender's source address.
        addr: SocketAddr,
        /// The request it answers.
        request: u32,
        /// The identity.
        identity: Box<Identity>,
    },
}

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Counters of a pool (all wrap; they start at 0).
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl Stats {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field)),*].into_iter()
            }
        }
    };
}

stats! {
    /// Datagrams handed to [`Pool::handle`].
    received,
    /// Datagrams returned by [`Pool::poll_transmit`].
    sent,
    /// Refused as malformed: too short or long, bad magic, unknown kind or
    /// flags, truncated, trailing bytes, bad UTF-8, lengths, node kind.
    malformed,
    /// Refused: another protocol version.
    version,
    /// Ignored: another channel that shares the port.
    other_channel,
    /// Ignored: our own datagrams (multicast loopback).
    own,
    /// Repeated beacons (one beacon heard on several paths).
    duplicates,
    /// Beacons older than one already heard (reordered).
    reordered,
    /// Beacons missed (gaps in peers' sequence numbers).
    beacons_lost,
    /// New peers not tracked because the table was full.
    peers_full,
    /// Requests not answered because of the rate limit.
    rate_limited,
    /// Datagrams not sent because the send queue was full.
    queue_full,
    /// Events lost because the event queue was full.
    events_dropped,
    /// Peers found.
    found,
    /// Peers gone.
    gone,
    /// Duplicate names reported.
    duplicate_names,
    /// QUERYs answered.
    queries_answered,
    /// IDENTIFYs answered.
    identities_sent,
    /// IDENTITY answers received.
    identities_received,
    /// MESSAGEs delivered to this node.
    messages_received,
    /// Requests and messages for other nodes (not an error).
    not_for_us,
    /// Unicast probes sent to silent peers.
    probes,
}

/// A local error of [`Pool::new`] and [`Pool::send`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// A name, topic, payload or list is invalid or too long (see [`wire`]).
    Invalid(wire::Error),
    /// Instance id 0.
    ZeroId,
    /// The send queue is full.
    QueueFull,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(e) => write!(f, "invalid field: {e}"),
            Error::ZeroId => f.write_str("instance id 0"),
            Error::QueueFull => f.write_str("send queue full"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wire::Error> for Error {
    fn from(e: wire::Error) -> Self {
        Error::Invalid(e)
    }
}

/// A token bucket in thousandths of a token.
#[derive(Debug, Clone)]
struct Bucket {
    milli: u64,
    last: Instant,
}

/// What to encode: this node's current beacon, or a body.
enum Out<'a> {
    Beacon,
    Body(Body<'a>),
}

/// Delays of the quick beacons after start (then the regular period).
const JOIN_BEACONS_MS: [u64; 3] = [0, 150, 400];
/// Delays of the "who is there" QUERYs after start.
const JOIN_QUERIES_MS: [u64; 3] = [0, 250, 750];

/// The discovery pool of one node: a sans-IO state machine (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct Pool {
    cfg: Config,
    local: LocalNode,
    id: u64,
    channel: u32,
    started: Instant,
    rng: u64,
    seq: u32,
    next_beacon: Option<Instant>,
    join_beacon: usize,
    join_query: usize,
    peers: Vec<Peer>,
    queue: Vec<(Instant, Transmit)>,
    events: VecDeque<Event>,
    bucket: Bucket,
    stats: Stats,
    next_request: u32,
    generation: u64,
    buf: Vec<u8>,
}

impl Pool {
    /// A pool for `local` with instance id `id` (random, non-zero, new at
    /// every start), started at `now`. The join sequence (quick beacons,
    /// queries) begins at the first [`Pool::poll`].
    ///
    /// # Errors
    /// [`Error::ZeroId`]; [`Error::Invalid`] if the name is not a valid node
    /// name (any name is accepted for a [`NodeKind::Tool`], which never
    /// sends it) or there are more than 4 endpoints.
    pub fn new(local: LocalNode, cfg: Config, id: u64, now: Instant) -> Result<Pool, Error> {
        if id == 0 {
            return Err(Error::ZeroId);
        }
        if local.kind != NodeKind::Tool {
            wire::check_name(&local.name)?;
        }
        if local.endpoints.len() > wire::MAX_ENDPOINTS {
            return Err(Error::Invalid(wire::Error::Length));
        }
        let beacons = local.kind != NodeKind::Tool;
        Ok(Pool {
            channel: crate::channel_hash(&cfg.channel),
            bucket: Bucket {
                milli: u64::from(cfg.answer_burst) * 1000,
                last: now,
            },
            cfg,
            local,
            id,
            started: now,
            rng: id ^ 0x9e37_79b9_7f4a_7c15,
            seq: 0,
            next_beacon: beacons.then_some(now),
            join_beacon: 0,
            join_query: if beacons { 0 } else { JOIN_QUERIES_MS.len() },
            peers: Vec::new(),
            queue: Vec::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            next_request: 1,
            generation: 0,
            buf: Vec::with_capacity(wire::MAX_DATAGRAM),
        })
    }

    /// This instance's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This node.
    pub fn local(&self) -> &LocalNode {
        &self.local
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the identity-only fields (topics, counters, host, pid,
    /// version) of this node; name, kind, parent and endpoints stay.
    pub fn set_identity(
        &mut self,
        publishes: Vec<String>,
        subscribes: Vec<String>,
        counters: Vec<(String, u64)>,
    ) {
        self.local.publishes = publishes;
        self.local.subscribes = subscribes;
        self.local.counters = counters;
    }

    /// Replaces the advertised endpoints (sent from the next beacon on).
    ///
    /// # Errors
    /// [`Error::Invalid`] if there are more than 4.
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) -> Result<(), Error> {
        if endpoints.len() > wire::MAX_ENDPOINTS {
            return Err(Error::Invalid(wire::Error::Length));
        }
        self.local.endpoints = endpoints;
        Ok(())
    }

    /// The known peers.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer with instance id `id`.
    pub fn peer(&self, id: u64) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Changes whenever the peer table changes (found, gone, updated): lets
    /// a driver publish snapshots only when needed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next datagram due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let i = self.queue.iter().position(|(due, _)| *due <= now)?;
        let (_, t) = self.queue.remove(i);
        self.stats.sent = self.stats.sent.wrapping_add(1);
        Some(t)
    }

    /// When [`Pool::poll`] next has something to do (or a queued datagram
    /// becomes due). Call `poll` then, or earlier.
    pub fn poll_at(&self) -> Instant {
        let mut at = Instant::from_millis(u64::MAX);
        let mut min = |t: Instant| {
            if t < at {
                at = t;
            }
        };
        if let Some(t) = self.next_beacon {
            min(t);
        }
        if let Some(d) = JOIN_QUERIES_MS.get(self.join_query) {
            min(after(self.started, *d));
        }
        for (due, _) in &self.queue {
            min(*due);
        }
        let gone = u64::from(self.cfg.gone_after_ms);
        let probe = u64::from(self.cfg.probe_after_ms);
        for p in &self.peers {
            min(after(p.last_seen, gone));
            if probe < gone {
                min(after(p.last_seen, probe).max(p.next_probe));
            }
            if p.successor {
                min(after(p.last_seen, self.replace_after()));
            }
        }
        at
    }

    fn replace_after(&self) -> u64 {
        u64::from(self.cfg.beacon_interval_ms) * 3 / 2
    }

    /// Runs the timers due at `now`: beacons, join queries, probes, gone
    /// peers.
    pub fn poll(&mut self, now: Instant) {
        while let Some(d) = JOIN_QUERIES_MS.get(self.join_query) {
            if after(self.started, *d) > now {
                break;
            }
            self.join_query += 1;
            let q = Out::Body(Body::Query(Query {
                target: 0,
                node_kind: None,
                name: "",
            }));
            self.queue_pool(now, q);
        }
        if let Some(t) = self.next_beacon {
            if t <= now {
                self.seq = self.seq.wrapping_add(1);
                self.queue_pool(now, Out::Beacon);
                self.join_beacon += 1;
                let next = match JOIN_BEACONS_MS.get(self.join_beacon) {
                    Some(d) => after(self.started, *d).max(now),
                    None => after(now, self.jittered(self.cfg.beacon_interval_ms)),
                };
                self.next_beacon = Some(next);
            }
        }
        let gone = u64::from(self.cfg.gone_after_ms);
        let probe = u64::from(self.cfg.probe_after_ms);
        let probe_every = (gone / 8).max(100);
        let replace = self.replace_after();
        let mut i = 0;
        while i < self.peers.len() {
            let Some(p) = self.peers.get_mut(i) else {
                break;
            };
            let silent = now.millis_since(p.last_seen);
            let reason = if silent >= gone {
                Some(GoneReason::Silent)
            } else if p.successor && silent >= replace {
                Some(GoneReason::Replaced)
            } else {
                None
            };
            if let Some(reason) = reason {
                let peer = self.peers.remove(i);
                self.gone(peer, reason);
                continue;
            }
            if probe < gone && silent >= probe && now >= p.next_probe {
                p.next_probe = after(now, probe_every);
                let (target, addr, unicast) = (p.id, p.addr, p.unicast);
                self.stats.probes = self.stats.probes.wrapping_add(1);
                let q = Out::Body(Body::Query(Query {
                    target,
                    node_kind: None,
                    name: "",
                }));
                self.queue_to(now, addr, unicast, q);
            }
            i += 1;
        }
    }

    /// Handles one received datagram from `src`, heard on interface
    /// `iface` (the driver's index; `None` if unknown), at `now`. Anything
    /// malformed or hostile is counted in [`Stats`] and ignored.
    pub fn handle(&mut self, now: Instant, src: SocketAddr, iface: Option<u32>, bytes: &[u8]) {
        self.stats.received = self.stats.received.wrapping_add(1);
        let header = match wire::parse_header(bytes) {
            Ok((_, h)) => h,
            Err(e) => return self.count_error(e),
        };
        if header.channel != self.channel {
            self.stats.other_channel = self.stats.other_channel.wrapping_add(1);
            return;
        }
        if header.sender == self.id {
            self.stats.own = self.stats.own.wrapping_add(1);
            return;
        }
        let dgram = match Datagram::parse(bytes) {
            Ok(d) => d,
            Err(e) => return self.count_error(e),
        };
        let unicast = header.flags & wire::flags::UNICAST != 0;
        let path = Path {
            iface,
            ip: src.ip(),
        };
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == header.sender) {
            p.last_seen = now;
            p.addr = src;
            p.successor = false;
            p.unicast |= unicast;
            if !p.paths.contains(&path) && p.paths.len() < MAX_PATHS {
                p.paths.push(path);
                self.generation = self.generation.wrapping_add(1);
            }
        }
        let tool = self.local.kind == NodeKind::Tool;
        match dgram.body {
            Body::Beacon(b) => self.on_beacon(now, src, path, unicast, header.sender, b),
            Body::Query(q) => {
                let matches = (q.target == 0 || q.target == self.id)
                    && q.node_kind.is_none_or(|k| k == self.local.kind)
                    && (q.name.is_empty() || q.name == self.local.name);
                if tool || !matches {
                    self.stats.not_for_us = self.stats.not_for_us.wrapping_add(1);
                    return;
                }
                if !self.take_token(now) {
                    return;
                }
                self.stats.queries_answered = self.stats.queries_answered.wrapping_add(1);
                let due = self.answer_due(now, q.target);
                self.queue_to(due, src, unicast, Out::Beacon);
            }
            Body::Identify { request, target } => {
                if tool || (target != 0 && target != self.id) {
                    self.stats.not_for_us = self.stats.not_for_us.wrapping_add(1);
                    return;
                }
                if !self.take_token(now) {
                    return;
                }
                self.stats.identities_sent = self.stats.identities_sent.wrapping_add(1);
                let due = self.answer_due(now, target);
                let identity = Box::new(self.identity(now));
                self.queue_to(
                    due,
                    src,
                    unicast,
                    Out::Body(Body::Identity { request, identity }),
                );
            }
            Body::Identity { request, identity } => {
                self.stats.identities_received = self.stats.identities_received.wrapping_add(1);
                self.push_event(Event::Identity {
                    from: header.sender,
                    addr: src,
                    request,
                    identity,
                });
            }
            Body::Message(m) => {
                let to = if m.target != 0 {
                    (m.target == self.id).then_some(Addressed::Id)
                } else if !m.name.is_empty() {
                    (!tool && m.name == self.local.name).then_some(Addressed::Name)
                } else {
                    Some(Addressed::All)
                };
                let Some(to) = to else {
                    self.stats.not_for_us = self.stats.not_for_us.wrapping_add(1);
                    return;
                };
                self.stats.messages_received = self.stats.messages_received.wrapping_add(1);
                self.push_event(Event::Message {
                    from: header.sender,
                    addr: src,
                    to,
                    topic: m.topic.to_owned(),
                    payload: m.payload.to_vec(),
                });
            }
            Body::Bye => {
                if let Some(i) = self.peers.iter().position(|p| p.id == header.sender) {
                    let peer = self.peers.remove(i);
                    self.gone(peer, GoneReason::Left);
                }
            }
        }
    }

    /// Sends a MESSAGE: to one instance (unicast when its address is
    /// known), to every node of a name, or to all.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or too long topic (≤ 255 bytes), a
    /// payload over 1024 bytes or an invalid name; [`Error::QueueFull`].
    pub fn send(
        &mut self,
        now: Instant,
        to: &Target,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), Error> {
        let (target, name) = match to {
            Target::Id(id) => (*id, ""),
            Target::Name(n) => {
                wire::check_name(n)?;
                (0, n.as_str())
            }
            Target::All => (0, ""),
        };
        let body = Body::Message(wire::Message {
            target,
            name,
            topic,
            payload,
        });
        let body = Out::Body(body);
        // Validate before queueing.
        self.encode(0, &body)?;
        if self.queue.len() >= self.cfg.max_queued {
            self.stats.queue_full = self.stats.queue_full.wrapping_add(1);
            return Err(Error::QueueFull);
        }
        match self.peer_addr(to) {
            Some((addr, unicast)) => self.queue_to(now, addr, unicast, body),
            None => self.queue_pool(now, body),
        }
        Ok(())
    }

    /// Asks one node (by id: unicast when its address is known; by name)
    /// or every node for its identity; answers arrive as
    /// [`Event::Identity`] with the returned request id. A request by name
    /// goes to every node and only answers from that name are meant:
    /// filter the events by name.
    pub fn identify(&mut self, now: Instant, to: &Target) -> u32 {
        let request = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let target = match to {
            Target::Id(id) => *id,
            _ => 0,
        };
        let body = Out::Body(Body::Identify { request, target });
        match self.peer_addr(to) {
            Some((addr, unicast)) => self.queue_to(now, addr, unicast, body),
            None => self.queue_pool(now, body),
        }
        request
    }

    /// Sends a QUERY ("who is there") to the pool: every node that matches
    /// `kind` (any if `None`) and `name` (any if empty) answers with a
    /// beacon.
    pub fn query(&mut self, now: Instant, kind: Option<NodeKind>, name: &str) {
        let name = if wire::check_name(name).is_ok() {
            name
        } else {
            ""
        };
        let q = Out::Body(Body::Query(Query {
            target: 0,
            node_kind: kind,
            name,
        }));
        self.queue_pool(now, q);
    }

    /// Leaves the pool: queues a BYE (to the pool, seeds and unicast peers)
    /// and stops beaconing and answering. Send what [`Pool::poll_transmit`]
    /// returns before closing the sockets.
    pub fn leave(&mut self, now: Instant) {
        if self.next_beacon.take().is_some() {
            self.queue_pool(now, Out::Body(Body::Bye));
        }
        self.join_query = JOIN_QUERIES_MS.len();
        self.local.kind = NodeKind::Tool;
    }

    /// This node's identity at `now`.
    pub fn identity(&self, now: Instant) -> Identity {
        let mut counters = self.local.counters.clone();
        counters.extend(
            [
                ("discovery.peers", self.peers.len() as u64),
                ("discovery.malformed", self.stats.malformed),
                ("discovery.rate_limited", self.stats.rate_limited),
                ("discovery.beacons_lost", self.stats.beacons_lost),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v)),
        );
        Identity {
            node_kind: Some(self.local.kind),
            parent: self.local.parent,
            name: self.local.name.clone(),
            host: self.local.host.clone(),
            pid: self.local.pid,
            version: self.local.version.clone(),
            uptime_ms: now.millis_since(self.started),
            truncated: false,
            publishes: self.local.publishes.clone(),
            subscribes: self.local.subscribes.clone(),
            counters,
        }
    }

    fn on_beacon(
        &mut self,
        now: Instant,
        src: SocketAddr,
        path: Path,
        unicast: bool,
        id: u64,
        b: Beacon<'_>,
    ) {
        let idx = match self.peers.iter().position(|p| p.id == id) {
            Some(i) => i,
            None => {
                if self.peers.len() >= self.cfg.max_peers {
                    self.stats.peers_full = self.stats.peers_full.wrapping_add(1);
                    return;
                }
                let peer = Peer {
                    id,
                    name: b.name.to_owned(),
                    kind: b.node_kind,
                    parent: b.parent,
                    endpoints: b.endpoints,
                    addr: src,
                    paths: vec![path],
                    first_seen: now,
                    last_seen: now,
                    beacons: 1,
                    lost: 0,
                    unicast,
                    last_seq: b.seq,
                    dup_reported: false,
                    next_probe: now,
                    successor: false,
                };
                // A new instance with the name and kind of a peer at the
                // same address that has gone quiet since: a restart.
                for q in self.peers.iter_mut() {
                    if q.name == peer.name
                        && q.kind == peer.kind
                        && q.addr.ip() == src.ip()
                        && q.last_seen < now
                    {
                        q.successor = true;
                    }
                }
                self.peers.push(peer.clone());
                self.generation = self.generation.wrapping_add(1);
                self.stats.found = self.stats.found.wrapping_add(1);
                self.push_event(Event::Found(peer));
                self.check_duplicate(self.peers.len() - 1, now);
                return;
            }
        };
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        if b.seq == p.last_seq {
            self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
            return;
        }
        if b.seq.wrapping_sub(p.last_seq) > u32::MAX / 2 {
            self.stats.reordered = self.stats.reordered.wrapping_add(1);
            return;
        }
        let gap = u64::from(b.seq.wrapping_sub(p.last_seq) - 1);
        p.last_seq = b.seq;
        p.beacons = p.beacons.wrapping_add(1);
        p.lost = p.lost.wrapping_add(gap);
        self.stats.beacons_lost = self.stats.beacons_lost.wrapping_add(gap);
        let changed = p.name != b.name
            || p.kind != b.node_kind
            || p.parent != b.parent
            || p.endpoints != b.endpoints;
        if changed {
            p.name = b.name.to_owned();
            p.kind = b.node_kind;
            p.parent = b.parent;
            p.endpoints = b.endpoints;
            p.dup_reported = false;
            let peer = p.clone();
            self.generation = self.generation.wrapping_add(1);
            self.push_event(Event::Updated(peer));
        }
        self.check_duplicate(idx, now);
    }

    /// Reports a duplicate name once per instance: with this node, or with
    /// another peer that has been heard since the later of the two appeared.
    fn check_duplicate(&mut self, idx: usize, now: Instant) {
        let Some(p) = self.peers.get(idx) else {
            return;
        };
        if p.dup_reported {
            return;
        }
        let (pid, first) = (p.id, p.first_seen);
        if self.local.kind != NodeKind::Tool && p.name == self.local.name {
            let name = p.name.clone();
            self.report_duplicate(name, [self.id, pid], true);
            return;
        }
        let other = self.peers.iter().find(|q| {
            q.id != pid
                && q.name == p.name
                && q.last_seen >= first.max(q.first_seen)
                && now >= q.first_seen
                && !q.successor
        });
        if let Some(q) = other {
            let (name, qid) = (q.name.clone(), q.id);
            if let Some(q) = self.peers.iter_mut().find(|q| q.id == qid) {
                q.dup_reported = true;
            }
            self.report_duplicate(name, [qid, pid], false);
        }
    }

    fn report_duplicate(&mut self, name: String, ids: [u64; 2], local: bool) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == ids[1]) {
            p.dup_reported = true;
        }
        self.stats.duplicate_names = self.stats.duplicate_names.wrapping_add(1);
        self.push_event(Event::DuplicateName { name, ids, local });
    }

    fn gone(&mut self, peer: Peer, reason: GoneReason) {
        self.generation = self.generation.wrapping_add(1);
        self.stats.gone = self.stats.gone.wrapping_add(1);
        self.push_event(Event::Gone { peer, reason });
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.cfg.max_events {
            self.stats.events_dropped = self.stats.events_dropped.wrapping_add(1);
            return;
        }
        self.events.push_back(e);
    }

    fn count_error(&mut self, e: wire::Error) {
        let c = match e {
            wire::Error::Version => &mut self.stats.version,
            _ => &mut self.stats.malformed,
        };
        *c = c.wrapping_add(1);
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let cap = u64::from(self.cfg.answer_burst) * 1000;
        let refill = now
            .millis_since(self.bucket.last)
            .saturating_mul(u64::from(self.cfg.answer_rate));
        self.bucket.milli = self.bucket.milli.saturating_add(refill).min(cap);
        self.bucket.last = now;
        if self.bucket.milli >= 1000 {
            self.bucket.milli -= 1000;
            true
        } else {
            self.stats.rate_limited = self.stats.rate_limited.wrapping_add(1);
            false
        }
    }

    /// An answer to a request for everyone waits a random spread; one
    /// addressed to us goes at once.
    fn answer_due(&mut self, now: Instant, target: u64) -> Instant {
        if target != 0 || self.cfg.answer_spread_ms == 0 {
            return now;
        }
        let d = self.random() % u64::from(self.cfg.answer_spread_ms);
        after(now, d)
    }

    fn peer_addr(&self, to: &Target) -> Option<(SocketAddr, bool)> {
        match to {
            Target::Id(id) => self.peer(*id).map(|p| (p.addr, p.unicast)),
            _ => None,
        }
    }

    fn encode(&mut self, flags: u8, out: &Out<'_>) -> Result<Vec<u8>, wire::Error> {
        let header = Header {
            flags,
            channel: self.channel,
            sender: self.id,
        };
        let mut buf = core::mem::take(&mut self.buf);
        let r = match out {
            Out::Beacon => Datagram {
                header,
                body: Body::Beacon(Beacon {
                    seq: self.seq,
                    node_kind: self.local.kind,
                    parent: self.local.parent,
                    name: &self.local.name,
                    endpoints: self.local.endpoints.clone(),
                }),
            }
            .emit(&mut buf),
            Out::Body(body) => Datagram {
                header,
                body: body.clone(),
            }
            .emit(&mut buf),
        };
        let bytes = buf.clone();
        self.buf = buf;
        r.map(|()| bytes)
    }

    fn enqueue(&mut self, due: Instant, dest: Dest, bytes: Vec<u8>) {
        if self.queue.len() >= self.cfg.max_queued {
            self.stats.queue_full = self.stats.queue_full.wrapping_add(1);
            return;
        }
        self.queue.push((due, Transmit { dest, bytes }));
    }

    /// Queues `body` for the pool, the seeds and the unicast peers.
    fn queue_pool(&mut self, due: Instant, out: Out<'_>) {
        let Ok(bytes) = self.encode(0, &out) else {
            return;
        };
        let mut uni = bytes.clone();
        if let Some(f) = uni.get_mut(wire::field::FLAGS) {
            *f |= wire::flags::UNICAST;
        }
        self.enqueue(due, Dest::Pool, bytes);
        let mut dests: Vec<SocketAddr> = self.cfg.seeds.clone();
        for p in &self.peers {
            if p.unicast && !dests.contains(&p.addr) {
                dests.push(p.addr);
            }
        }
        for d in dests {
            self.enqueue(due, Dest::To(d), uni.clone());
        }
    }

    fn queue_to(&mut self, due: Instant, addr: SocketAddr, unicast: bool, out: Out<'_>) {
        let flags = if unicast { wire::flags::UNICAST } else { 0 };
        if let Ok(bytes) = self.encode(flags, &out) {
            self.enqueue(due, Dest::To(addr), bytes);
        }
    }

    fn random(&mut self) -> u64 {
        crate::xorshift64star(&mut self.rng)
    }

    fn jittered(&mut self, ms: u32) -> u64 {
        let ms = u64::from(ms);
        let j = ms * u64::from(self.cfg.jitter_percent.min(100)) / 100;
        if j == 0 {
            return ms;
        }
        ms - j + self.random() % (2 * j + 1)
    }
}

fn after(t: Instant, ms: u64) -> Instant {
    Instant::from_millis(t.millis().saturating_add(ms))
}

#[cfg(test)]
mod tests;
