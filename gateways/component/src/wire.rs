//! What a valid Banyan message is on the LAN, and the checks every receiver
//! in this crate applies before handing a message to user code.
//!
//! A message is **valid** when all of these hold:
//!
//! 1. it has exactly two ZeroMQ frames;
//! 2. the first frame (the topic) is UTF-8 (it may be empty);
//! 3. the second frame (the payload) is non-empty, at most
//!    [`Limits::max_payload`] bytes, and holds exactly **one** MessagePack
//!    value with no trailing bytes;
//! 4. every `str` inside is UTF-8, every map key (at any depth) is a `str` or
//!    a `bin` (`bin` keys are what msgpack-numpy sends), the reserved marker
//!    `0xc1` never appears, extension types are 0–127 or a well-formed
//!    timestamp (type -1: 4, 8 or 12 bytes, nanoseconds below 10⁹), and
//!    containers nest at most [`MAX_DEPTH`] deep (an empty array or map is a
//!    level too).
//!
//! Rules 3 (size and one value) and 4 are the core's validator,
//! [`banyan_core::msg::validate`] with [`msg::Limits::LAN`] — the same code
//! the firmware and the serial link run, with the LAN's size and depth.
//!
//! These are exactly the conditions under which Python Banyan 3.17's
//! `unpackb(raw=False)` (strict map keys) accepts a payload, up to the depth:
//! Python packs and unpacks up to 1 024 levels, we accept 512. So a message
//! we accept never crashes a Python receiver, and anything Python publishes
//! that is nested at most 512 deep is accepted. The top-level value need not
//! be a map (Banyan's own `publish_payload` does not require one either).
//!
//! A message that fails a check is *rejected*: it is counted, logged at
//! `warn` level through the [`log`] facade and described by a [`Rejection`];
//! receiving goes on with the next message. Nothing here panics on any input.
//!
//! Use this module directly when you receive frames yourself (for example a
//! gateway forwarding payloads from a serial line): [`Validator::check`]
//! validates a payload without allocating per message.

use banyan_core::msg;
use std::fmt;
use std::ops::Deref;

/// Deepest container nesting accepted in a payload (arrays and maps count,
/// empty ones too): [`msg::Limits::LAN`]'s depth.
pub const MAX_DEPTH: usize = msg::Limits::LAN.max_depth;

/// Default [`Limits::max_payload`]: 64 MiB, so a 16 MB payload is accepted
/// ([`msg::Limits::LAN`]'s size).
pub const DEFAULT_MAX_PAYLOAD: usize = msg::Limits::LAN.max_size;

/// Size limits applied to received messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted payload frame in bytes; larger ones are rejected
    /// ([`Reject::TooLarge`]) after they are received. Default
    /// [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// Why a message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Only one frame arrived: there is no payload frame.
    #[error("missing payload frame (1 frame)")]
    MissingPayload,
    /// More than two frames arrived.
    #[error("{frames} frames, expected 2")]
    ExtraFrames {
        /// How many frames the message had.
        frames: usize,
    },
    /// The payload frame is empty (not even msgpack `nil`).
    #[error("empty payload frame")]
    EmptyPayload,
    /// The topic frame is not UTF-8.
    #[error("topic is not UTF-8")]
    TopicNotUtf8,
    /// The payload is larger than the configured maximum.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Configured maximum ([`Limits::max_payload`]).
        max: usize,
    },
    /// The payload ends inside a MessagePack value.
    #[error("truncated msgpack at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Bytes follow the single MessagePack value.
    #[error("{extra} trailing bytes after the msgpack value")]
    TrailingBytes {
        /// How many bytes follow the value.
        extra: usize,
    },
    /// The reserved marker byte `0xc1` appeared.
    #[error("reserved msgpack marker 0xc1 at byte {at}")]
    ReservedMarker {
        /// Offset of the marker.
        at: usize,
    },
    /// A map key is neither `str` nor `bin` (Python rejects such keys).
    #[error("map key at byte {at} is not a str or bin")]
    BadMapKey {
        /// Offset of the key.
        at: usize,
    },
    /// A `str` value is not UTF-8.
    #[error("msgpack str at byte {at} is not UTF-8")]
    BadUtf8 {
        /// Offset of the str marker.
        at: usize,
    },
    /// An ext value has a reserved (negative) type other than the timestamp
    /// type -1 (Python's `unpackb` raises on it).
    #[error("reserved msgpack ext type at byte {at}")]
    ReservedExt {
        /// Offset of the ext marker.
        at: usize,
    },
    /// A timestamp ext (type -1) is not 4, 8 or 12 bytes long or has
    /// nanoseconds of 10^9 or more (Python's `unpackb` raises on it).
    #[error("malformed msgpack timestamp at byte {at}")]
    BadTimestamp {
        /// Offset of the ext marker.
        at: usize,
    },
    /// Containers nest deeper than [`MAX_DEPTH`].
    #[error("containers nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Another rule of the core validator was broken. Not produced with the
    /// LAN limits (which bound neither str/bin/ext lengths nor container
    /// sizes); present so that every core error has a reason.
    #[error("invalid msgpack at byte {at}: {reason}")]
    Invalid {
        /// The core's reason.
        reason: msg::Error,
        /// Offset of the offending value.
        at: usize,
    },
}

/// A rejected message: why, and what it looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why it was rejected.
    pub reason: Reject,
    /// The first frame, decoded lossily (invalid UTF-8 becomes U+FFFD).
    pub topic: String,
    /// Number of frames received.
    pub frames: usize,
    /// Total bytes over all frames.
    pub bytes: usize,
    /// The first [`Rejection::PREVIEW`] bytes of each of the first four frames,
    /// for diagnostics (`monitor --raw`).
    pub preview: Vec<Vec<u8>>,
}

impl Rejection {
    /// Bytes of each frame kept in [`Rejection::preview`].
    pub const PREVIEW: usize = 32;

    /// Builds a rejection from the frames received.
    pub fn new<F: Deref<Target = [u8]>>(reason: Reject, frames: &[F]) -> Rejection {
        let topic = frames
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        Rejection {
            reason,
            topic,
            frames: frames.len(),
            bytes: frames.iter().map(|f| f.len()).sum(),
            preview: frames
                .iter()
                .take(4)
                .map(|f| f.get(..Self::PREVIEW).unwrap_or(f).to_vec())
                .collect(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rejected message on topic {:?}: {} ({} frames, {} bytes)",
            self.topic, self.reason, self.frames, self.bytes
        )
    }
}

/// A valid message: a topic and one MessagePack value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic (first frame).
    pub topic: String,
    /// The MessagePack payload (second frame), already validated.
    pub payload: Vec<u8>,
}

/// Error decoding a [`Message`] payload into a Rust value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is not valid MessagePack (cannot happen for messages this
    /// crate received, which are validated first).
    #[error("invalid msgpack: {0}")]
    Value(#[from] rmpv::decode::Error),
    /// The payload is valid MessagePack but does not match the requested
    /// Rust type: check field names and types against the sender.
    #[error("payload does not match the expected type: {0}")]
    Serde(#[from] rmp_serde::decode::Error),
}

impl Message {
    /// Creates a message; the payload is not checked (see [`Validator`]).
    pub fn new(topic: impl Into<String>, payload: Vec<u8>) -> Message {
        Message {
            topic: topic.into(),
            payload,
        }
    }

    /// Decodes the payload as a dynamic MessagePack value.
    ///
    /// # Errors
    /// [`DecodeError::Value`] if the payload is not MessagePack.
    pub fn value(&self) -> Result<rmpv::Value, DecodeError> {
        let mut rd = &self.payload[..];
        Ok(rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)?)
    }

    /// Decodes the payload into a serde type (maps to structs by field name).
    ///
    /// # Errors
    /// [`DecodeError::Serde`] if the payload does not match `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        Ok(rmp_serde::from_slice(&self.payload)?)
    }
}

/// Checks payloads against the rules in the [module docs](self).
///
/// The check is the core's [`msg::validate_at`] with [`msg::Limits::LAN`]
/// (one validator for the whole project, also used by the firmware and the
/// serial link): iterative, allocation-free, linear in the payload size. Its
/// errors are mapped to [`Reject`] reasons with their byte offsets.
#[derive(Debug, Default, Clone)]
pub struct Validator {
    _private: (),
}

impl Validator {
    /// Creates a validator.
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Checks that `buf` is exactly one valid MessagePack value (rule 3 and 4
    /// of the [module docs](self), size limit excluded).
    ///
    /// # Errors
    /// The first rule broken, as a [`Reject`].
    pub fn check(&mut self, buf: &[u8]) -> Result<(), Reject> {
        check_payload(buf, usize::MAX)
    }

    /// Checks rules 3 and 4 of the [module docs](self), the size limit of
    /// `limits` included.
    ///
    /// # Errors
    /// The first rule broken, as a [`Reject`].
    pub fn check_with(&mut self, buf: &[u8], limits: &Limits) -> Result<(), Reject> {
        check_payload(buf, limits.max_payload)
    }
}

/// Rules 3 and 4 with the size limit `max_payload`.
fn check_payload(buf: &[u8], max_payload: usize) -> Result<(), Reject> {
    if buf.is_empty() {
        return Err(Reject::EmptyPayload);
    }
    let limits = msg::Limits::LAN.with_max_size(max_payload);
    msg::validate_at(buf, &limits).map_err(|e| reject(e, buf.len(), max_payload))
}

/// The [`Reject`] reason for a core validation error on a payload of `len`
/// bytes checked with `max_payload`.
fn reject(e: msg::ErrorAt, len: usize, max_payload: usize) -> Reject {
    let at = e.offset;
    match e.error {
        msg::Error::Truncated => Reject::Truncated { at },
        msg::Error::TrailingBytes => Reject::TrailingBytes {
            extra: len.saturating_sub(at),
        },
        msg::Error::ReservedMarker => Reject::ReservedMarker { at },
        msg::Error::MapKey => Reject::BadMapKey { at },
        msg::Error::InvalidUtf8 => Reject::BadUtf8 { at },
        msg::Error::ReservedExt => Reject::ReservedExt { at },
        msg::Error::InvalidTimestamp => Reject::BadTimestamp { at },
        msg::Error::TooDeep => Reject::TooDeep,
        msg::Error::TooLarge => Reject::TooLarge {
            len,
            max: max_payload,
        },
        reason => Reject::Invalid { reason, at },
    }
}

/// Checks a whole multipart message: frame count, topic, size and payload.
/// On success returns the topic as `&str`.
///
/// # Errors
/// The first rule broken, as a [`Reject`].
pub fn check_frames<'a, F: Deref<Target = [u8]>>(
    validator: &mut Validator,
    limits: &Limits,
    frames: &'a [F],
) -> Result<&'a str, Reject> {
    let (topic, payload) = match frames {
        [] | [_] => return Err(Reject::MissingPayload),
        [topic, payload] => (topic, payload),
        _ => {
            return Err(Reject::ExtraFrames {
                frames: frames.len(),
            })
        }
    };
    let topic = std::str::from_utf8(topic).map_err(|_| Reject::TopicNotUtf8)?;
    let payload: &[u8] = payload;
    validator.check_with(payload, limits)?;
    Ok(topic)
}

/// Encodes a serde value the way Python Banyan's
/// `msgpack.packb(payload, use_bin_type=True)` does for the equivalent
/// Python value: structs become maps with field names as keys.
///
/// `Vec<u8>` fields serialize as arrays unless marked
/// `#[serde(with = "serde_bytes")]`-style; use [`rmpv::Value::Binary`] or
/// [`publish_raw`](crate::Component::publish_raw) for `bin`.
///
/// # Errors
/// Serialization errors from `rmp-serde` (for example a map with non-string
/// keys cannot be rejected here; receivers will reject it).
pub fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// Encodes a dynamic value.
pub fn encode_value(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<(), Reject> {
        Validator::new().check(bytes)
    }

    #[test]
    fn ext_values_are_checked_like_python() {
        // Found by fuzzing (fuzz/tests/findings.rs F1): Python's
        // unpackb(raw=False) raises ValueError on each of these.
        assert_eq!(
            check(&[0xd4, 0xfe, 0x00]),
            Err(Reject::ReservedExt { at: 0 })
        );
        assert_eq!(
            check(&[0x81, 0xa1, b'k', 0xd4, 0xfe, 0x00]),
            Err(Reject::ReservedExt { at: 3 })
        );
        assert_eq!(
            check(&[0xd5, 0xff, 0, 0]),
            Err(Reject::BadTimestamp { at: 0 })
        );
        // 8-byte timestamp with nanoseconds = 10^9.
        let ns = 1_000_000_000u64 << 34;
        let mut ts8 = vec![0xd7, 0xff];
        ts8.extend_from_slice(&ns.to_be_bytes());
        assert_eq!(check(&ts8), Err(Reject::BadTimestamp { at: 0 }));
        // 12-byte timestamp via ext8 with nanoseconds 10^9.
        let mut ts12 = vec![0xc7, 12, 0xff];
        ts12.extend_from_slice(&1_000_000_000u32.to_be_bytes());
        ts12.extend_from_slice(&[0; 8]);
        assert_eq!(check(&ts12), Err(Reject::BadTimestamp { at: 0 }));
        // Valid ones: 4-byte timestamp, application ext types >= 0.
        assert_eq!(check(&[0xd6, 0xff, 0, 0, 0, 1]), Ok(()));
        assert_eq!(check(&[0xd4, 0x05, 0x00]), Ok(()));
        assert_eq!(check(&[0xc7, 0x00, 0x7f]), Ok(()));
        // Truncated ext data is still truncation.
        assert!(matches!(
            check(&[0xc7, 0x05, 0x01]),
            Err(Reject::Truncated { .. })
        ));
    }

    #[test]
    fn banyan_golden_payload_is_valid() {
        // topic `t`, {'value': 1} as Python packs it.
        assert_eq!(
            check(&[0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01]),
            Ok(())
        );
    }

    #[test]
    fn every_scalar_type_is_valid() {
        use rmpv::Value;
        let values = vec![
            Value::Nil,
            Value::Boolean(true),
            Value::from(0u8),
            Value::from(255u8),
            Value::from(65535u16),
            Value::from(u32::MAX),
            Value::from(u64::MAX),
            Value::from(-1i8),
            Value::from(i16::MIN),
            Value::from(i32::MIN),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(-2.25),
            Value::from("héllo"),
            Value::from("x".repeat(70_000)),
            Value::Binary(vec![0, 1, 2]),
            Value::Binary(vec![7; 70_000]),
            Value::Ext(5, vec![1, 2, 3]),
            Value::Ext(-1, vec![0; 8]),
            Value::Array(vec![]),
            Value::Map(vec![]),
            Value::Map(vec![(
                Value::from("a"),
                Value::Array(vec![Value::Map(vec![(
                    Value::Binary(b"k".to_vec()),
                    Value::Nil,
                )])]),
            )]),
        ];
        for v in values {
            assert_eq!(check(&encode_value(&v)), Ok(()), "{v}");
        }
    }

    #[test]
    fn malformed_payloads_are_rejected_with_reason() {
        assert_eq!(check(&[]), Err(Reject::EmptyPayload));
        assert_eq!(check(&[0x81, 0xa1]), Err(Reject::Truncated { at: 2 }));
        assert_eq!(
            check(&[0x01, 0x02]),
            Err(Reject::TrailingBytes { extra: 1 })
        );
        assert_eq!(check(&[0x81, 0x01, 0x02]), Err(Reject::BadMapKey { at: 1 }));
        assert_eq!(
            check(&[0x91, 0x81, 0xc0, 0x02]),
            Err(Reject::BadMapKey { at: 2 })
        );
        assert_eq!(check(&[0xc1]), Err(Reject::ReservedMarker { at: 0 }));
        assert_eq!(check(&[0xa2, 0xff, 0xfe]), Err(Reject::BadUtf8 { at: 0 }));
        // array32 claiming 4 billion items in 5 bytes
        assert_eq!(
            check(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(Reject::Truncated { at: 5 })
        );
        // bin32 claiming 4 GiB
        assert!(matches!(
            check(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]),
            Err(Reject::Truncated { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_rejected_without_recursion() {
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0xc0);
        assert_eq!(check(&deep), Err(Reject::TooDeep));
        let mut ok = vec![0x91u8; MAX_DEPTH];
        ok.push(0xc0);
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn frames_rules() {
        let mut v = Validator::new();
        let limits = Limits { max_payload: 4 };
        let good: [&[u8]; 2] = [b"t", &[0x01]];
        assert_eq!(check_frames(&mut v, &limits, &good), Ok("t"));
        let one: [&[u8]; 1] = [b"t"];
        assert_eq!(
            check_frames(&mut v, &limits, &one),
            Err(Reject::MissingPayload)
        );
        let three: [&[u8]; 3] = [b"t", &[1], &[1]];
        assert_eq!(
            check_frames(&mut v, &limits, &three),
            Err(Reject::ExtraFrames { frames: 3 })
        );
        let bad_topic: [&[u8]; 2] = [&[0xff], &[1]];
        assert_eq!(
            check_frames(&mut v, &limits, &bad_topic),
            Err(Reject::TopicNotUtf8)
        );
        let big: [&[u8]; 2] = [b"t", &[0xc4, 3, 1, 2, 3]];
        assert_eq!(
            check_frames(&mut v, &limits, &big),
            Err(Reject::TooLarge { len: 5, max: 4 })
        );
    }

    #[test]
    fn serde_encoding_matches_python() {
        #[derive(serde::Serialize)]
        struct V {
            value: i32,
        }
        assert_eq!(
            encode(&V { value: 1 }).unwrap(),
            [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01]
        );
    }
}
