//! The discovery datagrams: a fixed header and one body per kind, parsed
//! from and written to UDP payloads. Integers are little endian; `str8` is a
//! length byte followed by that many UTF-8 bytes.
//!
//! Both ends use this one definition. [`Datagram::parse`] validates
//! everything (magic, version, kind, lengths, UTF-8, limits, no trailing
//! bytes) and never panics; [`Datagram::emit`] writes what `parse` accepts.
//!
//! # Header (17 bytes)
//!
//! | offset | size | field                                                      |
//! |--------|------|------------------------------------------------------------|
//! | 0      | 2    | magic `"BY"` (`0x42 0x59`)                                 |
//! | 2      | 1    | protocol version, [`VERSION`] (1)                          |
//! | 3      | 1    | kind (see [`kind`])                                        |
//! | 4      | 1    | flags: bit 0 [`flags::UNICAST`] (this copy was sent unicast, to a seed or to a peer heard that way); other bits 0 |
//! | 5      | 4    | channel hash ([`crate::channel_hash`], u32) — two pools that share a port ignore each other |
//! | 9      | 8    | sender instance id (u64, never 0; new at every start)      |
//!
//! # Bodies
//!
//! | kind   | name     | body                                                                                              |
//! |--------|----------|---------------------------------------------------------------------------------------------------|
//! | `0x01` | BEACON   | `seq u32, node kind u8, parent u64, name str8 (1–32), n u8 (≤ 4), n × endpoint (kind u8, port u16, IPv4 4)` |
//! | `0x02` | QUERY    | `target u64 (0 = every node), node kind u8 (0 = any), name str8 (0–32, empty = any)`              |
//! | `0x03` | IDENTIFY | `request u32, target u64 (0 = every node)`                                                        |
//! | `0x04` | IDENTITY | `request u32`, then the [`Identity`] (see below)                                                  |
//! | `0x05` | MESSAGE  | `target u64 (0 = by name or all), name str8 (0–32; empty with target 0 = broadcast), topic str8 (1–255), payload (the rest, ≤ 1024)` |
//! | `0x06` | BYE      | empty: the sender leaves the pool                                                                 |
//!
//! An endpoint address of `0.0.0.0` means "the source address of this
//! datagram": a node sending on several interfaces advertises, on each, the
//! address the receiver can reach it at, without knowing it. A BEACON is at
//! most 17 + 4 + 1 + 8 + 33 + 1 + 28 = 92 bytes ([`MAX_BEACON_LEN`]).
//!
//! IDENTITY body after `request`: `node kind u8, parent u64, name str8,
//! host str8 (≤ 64), pid u32, version str8 (≤ 32), uptime ms u64,
//! truncated u8 (0/1), publishes n u8 + n × str8 (≤ 64), subscribes n u8 +
//! n × str8 (≤ 64), counters n u8 + n × (name str8 ≤ 32, value u64)`. The
//! whole datagram is at most [`MAX_DATAGRAM`] bytes; [`Datagram::emit`]
//! leaves out list entries that do not fit and sets `truncated`.
//!
//! A datagram longer than [`MAX_DATAGRAM`] is refused unparsed.

use core::fmt;
use std::net::Ipv4Addr;

use banyan_core::bytes::{self, Reader};

/// The magic at the start of every datagram.
pub const MAGIC: [u8; 2] = *b"BY";
/// The protocol version this crate speaks. A datagram with another version
/// is counted ([`Error::Version`]) and ignored.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 17;
/// The largest datagram sent or accepted (fits an Ethernet or Wi-Fi frame
/// without IP fragmentation, also inside common VPN tunnels).
pub const MAX_DATAGRAM: usize = 1400;
/// The largest BEACON.
pub const MAX_BEACON_LEN: usize = HEADER_LEN + 4 + 1 + 8 + 1 + MAX_NAME_LEN + 1 + MAX_ENDPOINTS * 7;
/// Longest node name (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 32;
/// Longest host name in an identity.
pub const MAX_HOST_LEN: usize = 64;
/// Longest version string in an identity.
pub const MAX_VERSION_LEN: usize = 32;
/// Longest topic in an identity's publish/subscribe lists.
pub const MAX_LIST_TOPIC_LEN: usize = 64;
/// Longest counter name in an identity.
pub const MAX_COUNTER_NAME_LEN: usize = 32;
/// Longest MESSAGE topic.
pub const MAX_TOPIC_LEN: usize = 255;
/// Largest MESSAGE payload.
pub const MAX_PAYLOAD_LEN: usize = 1024;
/// Most endpoints in a BEACON.
pub const MAX_ENDPOINTS: usize = 4;

/// Datagram kinds.
pub mod kind {
    /// A node's periodic announcement.
    pub const BEACON: u8 = 0x01;
    /// "Who is there?": matching nodes answer with a unicast BEACON.
    pub const QUERY: u8 = 0x02;
    /// Asks nodes for their [`Identity`](super::Identity).
    pub const IDENTIFY: u8 = 0x03;
    /// The answer to IDENTIFY.
    pub const IDENTITY: u8 = 0x04;
    /// An application message to one node (by id or name) or to all.
    pub const MESSAGE: u8 = 0x05;
    /// The sender leaves the pool.
    pub const BYE: u8 = 0x06;
}

/// Header flags.
pub mod flags {
    /// This copy was sent unicast (to a seed, or to a peer heard that way):
    /// the receiver answers and beacons to the sender by unicast too.
    pub const UNICAST: u8 = 0x01;
    /// Every flag this version defines; a datagram with others is refused.
    pub const ALL: u8 = UNICAST;
}

/// Byte ranges of the header fields.
pub mod field {
    /// A byte range.
    pub type Field = core::ops::Range<usize>;
    /// Magic.
    pub const MAGIC: Field = 0..2;
    /// Protocol version.
    pub const VERSION: usize = 2;
    /// Kind.
    pub const KIND: usize = 3;
    /// Flags.
    pub const FLAGS: usize = 4;
    /// Channel hash.
    pub const CHANNEL: Field = 5..9;
    /// Sender instance id.
    pub const SENDER: Field = 9..17;
}

/// Why a datagram was refused (a wire error: the bytes that arrived are
/// bad or not for us; each is counted in [`crate::pool::Stats`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Longer than [`MAX_DATAGRAM`].
    Oversize,
    /// Shorter than the header.
    Short,
    /// Does not start with [`MAGIC`].
    Magic,
    /// Another protocol version.
    Version,
    /// Undefined kind.
    UnknownKind,
    /// Undefined flag bits.
    Flags,
    /// Sender id 0.
    Sender,
    /// The body ends before its fields do.
    Truncated,
    /// Bytes after the last field.
    TrailingBytes,
    /// A string is not UTF-8.
    NotUtf8,
    /// A string, list or payload exceeds its limit, or a name is empty.
    Length,
    /// A name contains control characters.
    BadName,
    /// Undefined node kind.
    NodeKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Oversize => "datagram too large",
            Error::Short => "datagram shorter than the header",
            Error::Magic => "bad magic",
            Error::Version => "unsupported protocol version",
            Error::UnknownKind => "unknown datagram kind",
            Error::Flags => "unknown flags",
            Error::Sender => "sender id 0",
            Error::Truncated => "truncated body",
            Error::TrailingBytes => "trailing bytes",
            Error::NotUtf8 => "string is not utf-8",
            Error::Length => "string, list or payload length out of range",
            Error::BadName => "name with control characters",
            Error::NodeKind => "unknown node kind",
        })
    }
}

impl std::error::Error for Error {}

/// What a node is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A backplane (XSUB/XPUB forwarder).
    Backplane = 1,
    /// A component (publishes and subscribes through a backplane).
    Component = 2,
    /// A gateway (rpi-gateway, serial-gateway).
    Gateway = 3,
    /// A device behind a gateway (an MCU on serial-gateway); its `parent`
    /// is the gateway's instance id.
    Device = 4,
    /// A tool (`banyan ls`, a resolver): never beacons, only asks.
    Tool = 5,
}

impl NodeKind {
    /// The kind with wire value `v`.
    pub fn from_u8(v: u8) -> Option<NodeKind> {
        Some(match v {
            1 => NodeKind::Backplane,
            2 => NodeKind::Component,
            3 => NodeKind::Gateway,
            4 => NodeKind::Device,
            5 => NodeKind::Tool,
            _ => return None,
        })
    }

    /// Lowercase name (`backplane`, …), as `banyan ls` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Backplane => "backplane",
            NodeKind::Component => "component",
            NodeKind::Gateway => "gateway",
            NodeKind::Device => "device",
            NodeKind::Tool => "tool",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for NodeKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        (1..=5)
            .filter_map(NodeKind::from_u8)
            .find(|k| k.as_str() == s)
            .ok_or(Error::NodeKind)
    }
}

/// What an endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// A backplane's publisher port: components' PUB sockets connect here
    /// (43124 by default).
    BackplanePub,
    /// A backplane's subscriber port: components' SUB sockets connect here
    /// (43125 by default).
    BackplaneSub,
    /// Any other TCP service of the node.
    Tcp,
    /// A backplane's service broker (request/reply, docs/services.md;
    /// 43126 by default).
    Services,
    /// A kind this version does not know (kept, shown, not used).
    Other(u8),
}

impl EndpointKind {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            EndpointKind::BackplanePub => 1,
            EndpointKind::BackplaneSub => 2,
            EndpointKind::Tcp => 3,
            EndpointKind::Services => 4,
            EndpointKind::Other(v) => v,
        }
    }
    /// From a wire value.
    pub fn from_u8(v: u8) -> EndpointKind {
        match v {
            1 => EndpointKind::BackplanePub,
            2 => EndpointKind::BackplaneSub,
            3 => EndpointKind::Tcp,
            4 => EndpointKind::Services,
            v => EndpointKind::Other(v),
        }
    }
    /// Short name (`pub`, `sub`, `tcp`, `services`, `kind-N`).
    pub fn name(self) -> String {
        match self {
            EndpointKind::BackplanePub => "pub".into(),
            EndpointKind::BackplaneSub => "sub".into(),
            EndpointKind::Tcp => "tcp".into(),
            EndpointKind::Services => "services".into(),
            EndpointKind::Other(v) => format!("kind-{v}"),
        }
    }
}

/// A service address a node advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// What it is.
    pub kind: EndpointKind,
    /// TCP port.
    pub port: u16,
    /// Address; `0.0.0.0` in a beacon means "the datagram's source
    /// address" (the pool fills it in on receipt).
    pub addr: Ipv4Addr,
}

/// A BEACON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon<'a> {
    /// Beacon sequence number of this instance (counts losses).
    pub seq: u32,
    /// What the node is.
    pub node_kind: NodeKind,
    /// The gateway a device is behind (its instance id), else 0.
    pub parent: u64,
    /// Node name.
    pub name: &'a str,
    /// Advertised endpoints (at most [`MAX_ENDPOINTS`]).
    pub endpoints: Vec<Endpoint>,
}

/// A QUERY body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// Only this node answers (0: every matching node).
    pub target: u64,
    /// Only nodes of this kind answer (`None`: any).
    pub node_kind: Option<NodeKind>,
    /// Only nodes of this name answer (empty: any).
    pub name: &'a str,
}

/// A MESSAGE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The addressee's instance id (0: by name, or everyone).
    pub target: u64,
    /// The addressee's name (empty with target 0: everyone).
    pub name: &'a str,
    /// Topic.
    pub topic: &'a str,
    /// Payload bytes (opaque to discovery; msgpack by convention).
    pub payload: &'a [u8],
}

/// A node's identity, as IDENTITY carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// Node kind (`None` only in a default-constructed value).
    pub node_kind: Option<NodeKind>,
    /// The gateway a device is behind, else 0.
    pub parent: u64,
    /// Node name.
    pub name: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Software version.
    pub version: String,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// The sender left out list entries that did not fit a datagram.
    pub truncated: bool,
    /// Topics the node publishes.
    pub publishes: Vec<String>,
    /// Topic prefixes the node subscribes to.
    pub subscribes: Vec<String>,
    /// Named counters (drops, errors, messages…).
    pub counters: Vec<(String, u64)>,
}

/// A datagram body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// See [`Beacon`].
    Beacon(Beacon<'a>),
    /// See [`Query`].
    Query(Query<'a>),
    /// Asks for identities.
    Identify {
        /// Request id, echoed in the answers.
        request: u32,
        /// Only this node answers (0: every node).
        target: u64,
    },
    /// The answer to IDENTIFY.
    Identity {
        /// The request answered.
        request: u32,
        /// The identity.
        identity: Box<Identity>,
    },
    /// See [`Message`].
    Message(Message<'a>),
    /// The sender leaves.
    Bye,
}

/// The header fields other than magic and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flags (see [`flags`]).
    pub flags: u8,
    /// Channel hash.
    pub channel: u32,
    /// Sender instance id.
    pub sender: u64,
}

/// A parsed datagram, borrowing strings from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Header.
    pub header: Header,
    /// Body.
    pub body: Body<'a>,
}

impl From<bytes::Error> for Error {
    fn from(e: bytes::Error) -> Self {
        match e {
            bytes::Error::Truncated => Error::Truncated,
            bytes::Error::TrailingBytes => Error::TrailingBytes,
            bytes::Error::NotUtf8 => Error::NotUtf8,
            _ => Error::Length,
        }
    }
}

/// A node name of `min` to [`MAX_NAME_LEN`] bytes without control characters.
fn name<'a>(r: &mut Reader<'a>, min: usize) -> Result<&'a str, Error> {
    let s = r.str8(min, MAX_NAME_LEN)?;
    if s.chars().any(char::is_control) {
        return Err(Error::BadName);
    }
    Ok(s)
}

fn node_kind(r: &mut Reader<'_>) -> Result<NodeKind, Error> {
    NodeKind::from_u8(r.u8()?).ok_or(Error::NodeKind)
}

/// A list of at most 255 `str8` of at most `max` bytes each.
fn list(r: &mut Reader<'_>, max: usize) -> Result<Vec<String>, Error> {
    let n = r.u8()?;
    (0..n).map(|_| Ok(r.str8(0, max)?.to_owned())).collect()
}

/// Checks a node name: 1–[`MAX_NAME_LEN`] bytes of UTF-8 without control
/// characters.
///
/// # Errors
/// [`Error::Length`] or [`Error::BadName`].
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::Length);
    }
    if name.chars().any(char::is_control) {
        return Err(Error::BadName);
    }
    Ok(())
}

/// Reads the header of `bytes` without parsing the body (length, magic,
/// version, kind, flags and sender checked).
///
/// # Errors
/// The first problem found.
pub fn parse_header(bytes: &[u8]) -> Result<(u8, Header), Error> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Error::Oversize);
    }
    let mut r = Reader::new(bytes);
    let head = r.take(HEADER_LEN).map_err(|_| Error::Short)?;
    let mut r = Reader::new(head);
    if r.array::<2>()? != MAGIC {
        return Err(Error::Magic);
    }
    if r.u8()? != VERSION {
        return Err(Error::Version);
    }
    let kind = r.u8()?;
    if !(kind::BEACON..=kind::BYE).contains(&kind) {
        return Err(Error::UnknownKind);
    }
    let flags = r.u8()?;
    if flags & !flags::ALL != 0 {
        return Err(Error::Flags);
    }
    let channel = r.u32()?;
    let sender = r.u64()?;
    if sender == 0 {
        return Err(Error::Sender);
    }
    Ok((
        kind,
        Header {
            flags,
            channel,
            sender,
        },
    ))
}

impl<'a> Datagram<'a> {
    /// Parses and validates a whole datagram.
    ///
    /// # Errors
    /// The first problem found; never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, Error> {
        let (k, header) = parse_header(bytes)?;
        let mut r = Reader::new(bytes.get(HEADER_LEN..).ok_or(Error::Short)?);
        let body = match k {
            kind::BEACON => {
                let seq = r.u32()?;
                let node_kind = node_kind(&mut r)?;
                let parent = r.u64()?;
                let name = name(&mut r, 1)?;
                let n = usize::from(r.u8()?);
                if n > MAX_ENDPOINTS {
                    return Err(Error::Length);
                }
                let mut endpoints = Vec::with_capacity(n);
                for _ in 0..n {
                    let kind = EndpointKind::from_u8(r.u8()?);
                    let port = r.u16()?;
                    let addr = Ipv4Addr::from(r.array::<4>()?);
                    endpoints.push(Endpoint { kind, port, addr });
                }
                Body::Beacon(Beacon {
                    seq,
                    node_kind,
                    parent,
                    name,
                    endpoints,
                })
            }
            kind::QUERY => {
                let target = r.u64()?;
                let nk = r.u8()?;
                let node_kind = match nk {
                    0 => None,
                    v => Some(NodeKind::from_u8(v).ok_or(Error::NodeKind)?),
                };
                let name = name(&mut r, 0)?;
                Body::Query(Query {
                    target,
                    node_kind,
                    name,
                })
            }
            kind::IDENTIFY => Body::Identify {
                request: r.u32()?,
                target: r.u64()?,
            },
            kind::IDENTITY => {
                let request = r.u32()?;
                let node_kind = Some(node_kind(&mut r)?);
                let parent = r.u64()?;
                let name = name(&mut r, 1)?.to_owned();
                let host = r.str8(0, MAX_HOST_LEN)?.to_owned();
                let pid = r.u32()?;
                let version = r.str8(0, MAX_VERSION_LEN)?.to_owned();
                let uptime_ms = r.u64()?;
                let truncated = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(Error::Length),
                };
                let publishes = list(&mut r, MAX_LIST_TOPIC_LEN)?;
                let subscribes = list(&mut r, MAX_LIST_TOPIC_LEN)?;
                let n = r.u8()?;
                let mut counters = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let name = r.str8(1, MAX_COUNTER_NAME_LEN)?.to_owned();
                    counters.push((name, r.u64()?));
                }
                Body::Identity {
                    request,
                    identity: Box::new(Identity {
                        node_kind,
                        parent,
                        name,
                        host,
                        pid,
                        version,
                        uptime_ms,
                        truncated,
                        publishes,
                        subscribes,
                        counters,
                    }),
                }
            }
            kind::MESSAGE => {
                let target = r.u64()?;
                let name = name(&mut r, 0)?;
                let topic = r.str8(1, MAX_TOPIC_LEN)?;
                let payload = r.rest();
                if payload.len() > MAX_PAYLOAD_LEN {
                    return Err(Error::Length);
                }
                Body::Message(Message {
                    target,
                    name,
                    topic,
                    payload,
                })
            }
            kind::BYE => Body::Bye,
            _ => return Err(Error::UnknownKind),
        };
        r.end()?;
        Ok(Datagram { header, body })
    }

    /// The kind byte of this datagram's body.
    pub fn kind(&self) -> u8 {
        match self.body {
            Body::Beacon(_) => kind::BEACON,
            Body::Query(_) => kind::QUERY,
            Body::Identify { .. } => kind::IDENTIFY,
            Body::Identity { .. } => kind::IDENTITY,
            Body::Message(_) => kind::MESSAGE,
            Body::Bye => kind::BYE,
        }
    }

    /// Writes this datagram into `out` (cleared first).
    ///
    /// # Errors
    /// [`Error::Length`] or [`Error::BadName`] if a field exceeds its limit
    /// (an identity's lists never do: entries that do not fit are left out
    /// and `truncated` is set), [`Error::Sender`] for sender 0,
    /// [`Error::Flags`] for undefined flags. Nothing invalid is ever
    /// written: what `emit` writes, [`Datagram::parse`] accepts.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        out.clear();
        if self.header.sender == 0 {
            return Err(Error::Sender);
        }
        if self.header.flags & !flags::ALL != 0 {
            return Err(Error::Flags);
        }
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind());
        out.push(self.header.flags);
        out.extend_from_slice(&self.header.channel.to_le_bytes());
        out.extend_from_slice(&self.header.sender.to_le_bytes());
        match &self.body {
            Body::Beacon(b) => {
                check_name(b.name)?;
                if b.endpoints.len() > MAX_ENDPOINTS {
                    return Err(Error::Length);
                }
                out.extend_from_slice(&b.seq.to_le_bytes());
                out.push(b.node_kind as u8);
                out.extend_from_slice(&b.parent.to_le_bytes());
                put_str(out, b.name);
                out.push(b.endpoints.len() as u8);
                for e in &b.endpoints {
                    out.push(e.kind.to_u8());
                    out.extend_from_slice(&e.port.to_le_bytes());
                    out.extend_from_slice(&e.addr.octets());
                }
            }
            Body::Query(q) => {
                if !q.name.is_empty() {
                    check_name(q.name)?;
                }
                out.extend_from_slice(&q.target.to_le_bytes());
                out.push(q.node_kind.map_or(0, |k| k as u8));
                put_str(out, q.name);
            }
            Body::Identify { request, target } => {
                out.extend_from_slice(&request.to_le_bytes());
                out.extend_from_slice(&target.to_le_bytes());
            }
            Body::Identity { request, identity } => {
                out.extend_from_slice(&request.to_le_bytes());
                identity.emit(out)?;
            }
            Body::Message(m) => {
                if !m.name.is_empty() {
                    check_name(m.name)?;
                }
                if m.topic.is_empty()
                    || m.topic.len() > MAX_TOPIC_LEN
                    || m.payload.len() > MAX_PAYLOAD_LEN
                {
                    return Err(Error::Length);
                }
                out.extend_from_slice(&m.target.to_le_bytes());
                put_str(out, m.name);
                put_str(out, m.topic);
                out.extend_from_slice(m.payload);
            }
            Body::Bye => {}
        }
        if out.len() > MAX_DATAGRAM {
            return Err(Error::Length);
        }
        Ok(())
    }
}

impl Identity {
    /// Appends the identity fields (after `request`) to `out`, leaving out
    /// list entries that would make the datagram exceed [`MAX_DATAGRAM`]
    /// or their limits, and setting `truncated` then.
    fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        check_name(&self.name)?;
        let node_kind = self.node_kind.ok_or(Error::NodeKind)?;
        out.push(node_kind as u8);
        out.extend_from_slice(&self.parent.to_le_bytes());
        put_str(out, &self.name);
        put_str(out, clamp_str(&self.host, MAX_HOST_LEN));
        out.extend_from_slice(&self.pid.to_le_bytes());
        put_str(out, clamp_str(&self.version, MAX_VERSION_LEN));
        out.extend_from_slice(&self.uptime_ms.to_le_bytes());
        let truncated_at = out.len();
        out.push(u8::from(self.truncated));
        let mut truncated = self.truncated;
        // Room for the three list counts; every entry must leave room for them.
        let mut budget = MAX_DATAGRAM.saturating_sub(out.len() + 3);
        for list in [&self.publishes, &self.subscribes] {
            let count_at = out.len();
            out.push(0);
            let mut n = 0u8;
            for t in list.iter() {
                let need = 1 + t.len();
                if t.len() > MAX_LIST_TOPIC_LEN || need > budget || n == u8::MAX {
                    truncated = true;
                    continue;
                }
                budget -= need;
                put_str(out, t);
                n += 1;
            }
            if let Some(c) = out.get_mut(count_at) {
                *c = n;
            }
        }
        let count_at = out.len();
        out.push(0);
        let mut n = 0u8;
        for (name, value) in &self.counters {
            let need = 1 + name.len() + 8;
            if name.is_empty() || name.len() > MAX_COUNTER_NAME_LEN || need > budget || n == u8::MAX
            {
                truncated = true;
                continue;
            }
            budget -= need;
            put_str(out, name);
            out.extend_from_slice(&value.to_le_bytes());
            n += 1;
        }
        if let Some(c) = out.get_mut(count_at) {
            *c = n;
        }
        if let Some(t) = out.get_mut(truncated_at) {
            *t = u8::from(truncated);
        }
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
pub fn clamp_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = clamp_str(s, usize::from(u8::MAX));
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests;
