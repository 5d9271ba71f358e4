//! The link messages: frame kinds and payload layouts, parsed from and
//! written to [`frame`] payloads. All integers are little endian.
//!
//! Both ends of the link use this one definition (see the table in the
//! [`link`](super) module docs).

use core::fmt;

use crate::bytes::{self, Reader};
use crate::frame::{self, EncodeError};
use crate::topic::{self, Declaration};

/// Frame kinds of the link protocol. REQUEST and REPLY are parsed only with
/// the `services` feature; without it they are unknown kinds (counted as
/// malformed by the state machines). SERVE and UNSERVE are always parsed.
pub mod kind {
    /// Device → gateway: identity, capacities, session id.
    pub const HELLO: u8 = 0x01;
    /// Gateway → device: accepts a HELLO, grants initial credits.
    pub const WELCOME: u8 = 0x02;
    /// Both ways: liveness, publish counter, credit limit, subscription digest.
    pub const HEARTBEAT: u8 = 0x03;
    /// Gateway → device: "send HELLO and re-declare your subscriptions".
    pub const RESYNC: u8 = 0x04;
    /// Device → gateway: subscribe to a topic prefix.
    pub const SUBSCRIBE: u8 = 0x05;
    /// Device → gateway: drop a topic prefix subscription.
    pub const UNSUBSCRIBE: u8 = 0x06;
    /// Device → gateway: the device serves requests for a service name.
    pub const SERVE: u8 = 0x07;
    /// Device → gateway: the device no longer serves a service name.
    pub const UNSERVE: u8 = 0x08;
    /// Both ways: topic and msgpack payload bytes.
    pub const PUBLISH: u8 = 0x10;
    /// Gateway → device: a request for one of the device's services.
    pub const REQUEST: u8 = 0x11;
    /// Device → gateway: the answer to a REQUEST.
    pub const REPLY: u8 = 0x12;
}

/// The `status` byte of a REPLY. Values not listed here are failures too
/// (a gateway treats them like [`status::FAILED`]).
pub mod status {
    /// The body is the reply: one msgpack value.
    pub const OK: u8 = 0;
    /// The device does not serve the requested name; the body is empty or
    /// UTF-8 detail text.
    pub const UNKNOWN_SERVICE: u8 = 1;
    /// The handler failed; the body is UTF-8 detail text.
    pub const FAILED: u8 = 2;
}

/// Longest device name in a HELLO.
pub const MAX_NAME_LEN: usize = 32;
/// Longest firmware version string in a HELLO.
pub const MAX_VERSION_LEN: usize = 16;
/// Longest topic in a PUBLISH (its length is one byte).
pub const MAX_PUBLISH_TOPIC_LEN: usize = 255;
/// Longest subscription topic prefix (device table and gateway mirror).
pub const MAX_SUB_TOPIC_LEN: usize = 64;
/// Longest service name in a SERVE, UNSERVE or REQUEST.
pub const MAX_SERVICE_LEN: usize = 32;

/// Link bytes a REQUEST costs beyond its service name and body when its frame
/// body is under 254 bytes: kind, seq, id (4), name length, CRC (2), COBS
/// code byte, delimiter.
pub const REQUEST_OVERHEAD: usize = 11;
/// Link bytes a REPLY costs beyond its body when its frame body is under 254
/// bytes: kind, seq, id (4), status, CRC (2), COBS code byte, delimiter.
pub const REPLY_OVERHEAD: usize = 11;

/// Link bytes a PUBLISH costs beyond its topic and payload when its frame
/// body is under 254 bytes: kind, seq, topic length, CRC (2), COBS code byte,
/// delimiter.
pub const PUBLISH_OVERHEAD: usize = 7;

/// A malformed link message (a wire error: the peer sent bad bytes, or bytes
/// were corrupted in a way the CRC missed).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The frame kind is not defined.
    UnknownKind,
    /// The payload ends before its fields do.
    Truncated,
    /// The payload has bytes after its last field.
    TrailingBytes,
    /// A topic, name or version is not UTF-8.
    NotUtf8,
    /// A name, version, subscription topic or service name exceeds its
    /// maximum length.
    TooLong,
    /// A service name is empty.
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::UnknownKind => "unknown frame kind",
            Error::Truncated => "truncated message",
            Error::TrailingBytes => "trailing bytes in message",
            Error::NotUtf8 => "string is not utf-8",
            Error::TooLong => "string too long",
            Error::Empty => "empty service name",
        })
    }
}

impl core::error::Error for Error {}

/// HELLO: the device's identity and capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello<'a> {
    /// Boot session id; a new value means the device restarted.
    pub session: u32,
    /// Largest COBS-encoded frame (delimiter excluded) the device can receive.
    pub max_frame: u16,
    /// Receive-queue slots: the initial credit for the gateway's PUBLISHes.
    pub credits: u8,
    /// Subscription table capacity.
    pub max_subs: u8,
    /// Device name.
    pub name: &'a str,
    /// Firmware version.
    pub version: &'a str,
}

/// WELCOME: the gateway accepts a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Welcome {
    /// The session id of the HELLO this answers.
    pub device_session: u32,
    /// The sequence number of the HELLO this answers.
    pub hello_seq: u8,
    /// The gateway's own session id (changes when the gateway restarts).
    pub gateway_session: u32,
    /// Largest COBS-encoded frame (delimiter excluded) the gateway can receive.
    pub max_frame: u16,
    /// Initial credit limit for the device's PUBLISHes.
    pub credits: u16,
}

/// HEARTBEAT: liveness plus flow-control and subscription state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Heartbeat {
    /// PUBLISH frames the sender has sent this session (wrapping).
    pub pub_sent: u16,
    /// The peer's PUBLISH frames the sender has received or learnt lost this
    /// session (wrapping): an acknowledgement.
    pub pub_received: u16,
    /// The sender accepts the peer's PUBLISHes while the peer's `pub_sent`
    /// is below this value (wrapping).
    pub credit_limit: u16,
    /// Device: number of subscriptions plus services; gateway: 0.
    pub sub_count: u8,
    /// Device: [`sub_digest`] of its subscriptions plus the
    /// [`service_digest`] of each service; gateway: 0.
    pub sub_digest: u16,
}

/// A parsed link message, borrowing strings and payload from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<'a> {
    /// See [`Hello`].
    Hello(Hello<'a>),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// Asks the device to send HELLO and re-declare its subscriptions.
    Resync {
        /// The gateway's session id.
        gateway_session: u32,
    },
    /// The device subscribes to a topic prefix.
    Subscribe(&'a str),
    /// The device drops a topic prefix.
    Unsubscribe(&'a str),
    /// A message for the other side.
    Publish {
        /// The topic.
        topic: &'a str,
        /// The msgpack payload, never parsed by the link.
        payload: &'a [u8],
    },
    /// The device serves requests for this service name.
    Serve(&'a str),
    /// The device no longer serves this service name.
    Unserve(&'a str),
    /// A request for one of the device's services.
    #[cfg(feature = "services")]
    Request {
        /// Chosen by the gateway, echoed in the REPLY.
        id: u32,
        /// The service name (one the device declared with SERVE).
        service: &'a str,
        /// The request body (msgpack), never parsed by the link.
        body: &'a [u8],
    },
    /// The device's answer to a REQUEST.
    #[cfg(feature = "services")]
    Reply {
        /// The id of the REQUEST.
        id: u32,
        /// [`status::OK`] or an error code (see [`status`]).
        status: u8,
        /// `OK`: the reply (one msgpack value); otherwise UTF-8 detail text.
        body: &'a [u8],
    },
}

impl Message<'_> {
    /// Whether this message travels under the credit flow control and the
    /// `pub_sent` / `pub_received` accounting: PUBLISH, REQUEST and REPLY
    /// (the *data* messages); the others are control messages.
    pub fn is_data(&self) -> bool {
        match self {
            Message::Publish { .. } => true,
            #[cfg(feature = "services")]
            Message::Request { .. } | Message::Reply { .. } => true,
            _ => false,
        }
    }
}

/// An order-independent digest of a set of subscription topics: the wrapping
/// sum of the frame CRC of each topic. Device and gateway compare it in
/// heartbeats to detect a lost SUBSCRIBE or UNSUBSCRIBE.
pub fn sub_digest<'a>(topics: impl IntoIterator<Item = &'a str>) -> u16 {
    topics.into_iter().fold(0u16, |acc, t| {
        acc.wrapping_add(frame::CRC.checksum(t.as_bytes()))
    })
}

/// The digest term of a service name in [`Heartbeat::sub_digest`]: the
/// bitwise complement of the frame CRC of the name, so that a service and a
/// subscription of the same text weigh differently.
pub fn service_digest(name: &str) -> u16 {
    !frame::CRC.checksum(name.as_bytes())
}

/// The digest term of one entry of a declaration table: [`sub_digest`] of
/// a subscription, [`service_digest`] of a service, with one CRC call site
/// for both ends of the link.
pub(super) fn digest_term<const L: usize>(d: &Declaration<L>) -> u16 {
    let crc = frame::CRC.checksum(d.name().as_bytes());
    if d.is_service() {
        !crc
    } else {
        crc
    }
}

/// The declaration table of either end: topic prefixes and service names.
pub(super) type Declarations<const N: usize> = topic::Declarations<N, MAX_SUB_TOPIC_LEN>;

impl From<bytes::Error> for Error {
    fn from(e: bytes::Error) -> Self {
        match e {
            bytes::Error::Truncated => Error::Truncated,
            bytes::Error::TrailingBytes => Error::TrailingBytes,
            bytes::Error::NotUtf8 => Error::NotUtf8,
            bytes::Error::Length => Error::TooLong,
        }
    }
}

/// A service name: `str8`, or the rest of the payload when `rest`.
fn service<'a>(r: &mut Reader<'a>, rest: bool) -> Result<&'a str, Error> {
    let s = if rest {
        r.rest_str(MAX_SERVICE_LEN)?
    } else {
        r.str8(0, MAX_SERVICE_LEN)?
    };
    if s.is_empty() {
        return Err(Error::Empty);
    }
    Ok(s)
}

impl<'a> Message<'a> {
    /// Parses the payload of a frame of the given kind.
    ///
    /// # Errors
    /// A [`Error`] naming what is malformed.
    pub fn parse(kind: u8, payload: &'a [u8]) -> Result<Message<'a>, Error> {
        let mut r = Reader::new(payload);
        let msg = match kind {
            kind::HELLO => Message::Hello(Hello {
                session: r.u32()?,
                max_frame: r.u16()?,
                credits: r.u8()?,
                max_subs: r.u8()?,
                name: r.str8(0, MAX_NAME_LEN)?,
                version: r.str8(0, MAX_VERSION_LEN)?,
            }),
            kind::WELCOME => Message::Welcome(Welcome {
                device_session: r.u32()?,
                hello_seq: r.u8()?,
                gateway_session: r.u32()?,
                max_frame: r.u16()?,
                credits: r.u16()?,
            }),
            kind::HEARTBEAT => Message::Heartbeat(Heartbeat {
                pub_sent: r.u16()?,
                pub_received: r.u16()?,
                credit_limit: r.u16()?,
                sub_count: r.u8()?,
                sub_digest: r.u16()?,
            }),
            kind::RESYNC => Message::Resync {
                gateway_session: r.u32()?,
            },
            kind::SUBSCRIBE => Message::Subscribe(r.rest_str(MAX_SUB_TOPIC_LEN)?),
            kind::UNSUBSCRIBE => Message::Unsubscribe(r.rest_str(MAX_SUB_TOPIC_LEN)?),
            kind::PUBLISH => {
                let topic = r.str8(0, MAX_PUBLISH_TOPIC_LEN)?;
                let payload = r.rest();
                Message::Publish { topic, payload }
            }
            kind::SERVE => Message::Serve(service(&mut r, true)?),
            kind::UNSERVE => Message::Unserve(service(&mut r, true)?),
            #[cfg(feature = "services")]
            kind::REQUEST => Message::Request {
                id: r.u32()?,
                service: service(&mut r, false)?,
                body: r.rest(),
            },
            #[cfg(feature = "services")]
            kind::REPLY => Message::Reply {
                id: r.u32()?,
                status: r.u8()?,
                body: r.rest(),
            },
            _ => return Err(Error::UnknownKind),
        };
        r.end()?;
        Ok(msg)
    }

    /// The frame kind of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Welcome(_) => kind::WELCOME,
            Message::Heartbeat(_) => kind::HEARTBEAT,
            Message::Resync { .. } => kind::RESYNC,
            Message::Subscribe(_) => kind::SUBSCRIBE,
            Message::Unsubscribe(_) => kind::UNSUBSCRIBE,
            Message::Publish { .. } => kind::PUBLISH,
            Message::Serve(_) => kind::SERVE,
            Message::Unserve(_) => kind::UNSERVE,
            #[cfg(feature = "services")]
            Message::Request { .. } => kind::REQUEST,
            #[cfg(feature = "services")]
            Message::Reply { .. } => kind::REPLY,
        }
    }

    /// Writes this message as a complete wire frame (COBS and delimiter)
    /// with sequence number `seq`; returns the bytes written.
    ///
    /// Strings longer than their maximum are truncated by the length byte
    /// (callers validate them first; the link state machines do).
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] if `out` cannot hold the frame.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "names, versions, topics and services are checked against their str8 limits before encoding"
    )]
    pub fn encode(&self, seq: u8, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut fixed = [0u8; 16];
        let k = self.kind();
        match *self {
            Message::Hello(h) => {
                let name = clamp(h.name.as_bytes(), MAX_NAME_LEN);
                let version = clamp(h.version.as_bytes(), MAX_VERSION_LEN);
                fixed[0..4].copy_from_slice(&h.session.to_le_bytes());
                fixed[4..6].copy_from_slice(&h.max_frame.to_le_bytes());
                fixed[6] = h.credits;
                fixed[7] = h.max_subs;
                fixed[8] = name.len() as u8;
                let vlen = [version.len() as u8];
                frame::encode(k, seq, &[&fixed[..9], name, &vlen, version], out)
            }
            Message::Welcome(w) => {
                fixed[0..4].copy_from_slice(&w.device_session.to_le_bytes());
                fixed[4] = w.hello_seq;
                fixed[5..9].copy_from_slice(&w.gateway_session.to_le_bytes());
                fixed[9..11].copy_from_slice(&w.max_frame.to_le_bytes());
                fixed[11..13].copy_from_slice(&w.credits.to_le_bytes());
                frame::encode(k, seq, &[&fixed[..13]], out)
            }
            Message::Heartbeat(h) => {
                fixed[0..2].copy_from_slice(&h.pub_sent.to_le_bytes());
                fixed[2..4].copy_from_slice(&h.pub_received.to_le_bytes());
                fixed[4..6].copy_from_slice(&h.credit_limit.to_le_bytes());
                fixed[6] = h.sub_count;
                fixed[7..9].copy_from_slice(&h.sub_digest.to_le_bytes());
                frame::encode(k, seq, &[&fixed[..9]], out)
            }
            Message::Resync { gateway_session } => {
                fixed[0..4].copy_from_slice(&gateway_session.to_le_bytes());
                frame::encode(k, seq, &[&fixed[..4]], out)
            }
            Message::Subscribe(t) | Message::Unsubscribe(t) => {
                frame::encode(k, seq, &[clamp(t.as_bytes(), MAX_SUB_TOPIC_LEN)], out)
            }
            Message::Serve(t) | Message::Unserve(t) => {
                frame::encode(k, seq, &[clamp(t.as_bytes(), MAX_SERVICE_LEN)], out)
            }
            Message::Publish { topic, payload } => {
                let topic = clamp(topic.as_bytes(), MAX_PUBLISH_TOPIC_LEN);
                let tlen = [topic.len() as u8];
                frame::encode(k, seq, &[&tlen, topic, payload], out)
            }
            #[cfg(feature = "services")]
            Message::Request { id, .. } | Message::Reply { id, .. } => {
                let (x, name, body) = match *self {
                    Message::Request { service, body, .. } => {
                        let service = clamp(service.as_bytes(), MAX_SERVICE_LEN);
                        (service.len() as u8, service, body)
                    }
                    Message::Reply { status, body, .. } => (status, &[][..], body),
                    _ => (0, &[][..], &[][..]),
                };
                fixed[0..4].copy_from_slice(&id.to_le_bytes());
                fixed[4] = x;
                frame::encode(k, seq, &[&fixed[..5], name, body], out)
            }
        }
    }
}

fn clamp(s: &[u8], max: usize) -> &[u8] {
    &s[..s.len().min(max)]
}
