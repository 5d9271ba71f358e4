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
//!    `0xc1` never appears, and containers nest at most [`MAX_DEPTH`] deep.
//!
//! These are exactly the conditions under which Python Banyan 3.17's
//! `unpackb(raw=False)` (strict map keys) accepts a payload, so a message we
//! accept never crashes a Python receiver, and anything Python publishes is
//! accepted. The top-level value need not be a map (Banyan's own
//! `publish_payload` does not require one either).
//!
//! A message that fails a check is *rejected*: it is counted, logged at
//! `warn` level through the [`log`] facade and described by a [`Rejection`];
//! receiving goes on with the next message. Nothing here panics on any input.
//!
//! Use this module directly when you receive frames yourself (for example a
//! gateway forwarding payloads from a serial line): [`Validator::check`]
//! validates a payload without allocating per message.

use std::fmt;
use std::ops::Deref;

/// Deepest container nesting accepted in a payload (arrays and maps count).
pub const MAX_DEPTH: usize = 512;

/// Default [`Limits::max_payload`]: 64 MiB, so a 16 MB payload is accepted.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024 * 1024;

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
                .map(|f| f[..f.len().min(Self::PREVIEW)].to_vec())
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

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Items still to read; a map of n entries starts at 2n.
    remaining: u64,
    map: bool,
}

/// Checks payloads against the rules in the [module docs](self), reusing one
/// small buffer so that checking allocates nothing in the steady state.
#[derive(Debug, Default, Clone)]
pub struct Validator {
    stack: Vec<Level>,
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
        if buf.is_empty() {
            return Err(Reject::EmptyPayload);
        }
        self.stack.clear();
        let mut pos = 0usize;
        loop {
            let at = pos;
            let is_key =
                matches!(self.stack.last(), Some(l) if l.map && l.remaining.is_multiple_of(2));
            let marker = *buf.get(pos).ok_or(Reject::Truncated { at })?;
            pos += 1;
            // (payload bytes to skip, container: Some((len, is_map)), kind)
            let mut container: Option<(u64, bool)> = None;
            let mut key_ok = false;
            match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {}
                0x80..=0x8f => container = Some((u64::from(marker & 0x0f), true)),
                0x90..=0x9f => container = Some((u64::from(marker & 0x0f), false)),
                0xa0..=0xbf => {
                    pos = take_str(buf, pos, usize::from(marker & 0x1f), at)?;
                    key_ok = true;
                }
                0xc1 => return Err(Reject::ReservedMarker { at }),
                0xc4..=0xc6 => {
                    let n = read_len(buf, &mut pos, 1 << (marker - 0xc4), at)?;
                    pos = skip(buf, pos, n, at)?;
                    key_ok = true;
                }
                0xc7..=0xc9 => {
                    let n = read_len(buf, &mut pos, 1 << (marker - 0xc7), at)?;
                    pos = take_ext(buf, pos, n, at)?;
                }
                0xca => pos = skip(buf, pos, 4, at)?,
                0xcb => pos = skip(buf, pos, 8, at)?,
                0xcc..=0xcf => pos = skip(buf, pos, 1 << (marker - 0xcc), at)?,
                0xd0..=0xd3 => pos = skip(buf, pos, 1 << (marker - 0xd0), at)?,
                0xd4..=0xd8 => pos = take_ext(buf, pos, 1 << (marker - 0xd4), at)?,
                0xd9..=0xdb => {
                    let n = read_len(buf, &mut pos, 1 << (marker - 0xd9), at)?;
                    pos = take_str(buf, pos, n, at)?;
                    key_ok = true;
                }
                0xdc | 0xdd => {
                    let n = read_len(buf, &mut pos, 2 << (marker - 0xdc), at)?;
                    container = Some((n as u64, false));
                }
                0xde | 0xdf => {
                    let n = read_len(buf, &mut pos, 2 << (marker - 0xde), at)?;
                    container = Some((n as u64, true));
                }
            }
            if is_key && !key_ok {
                return Err(Reject::BadMapKey { at });
            }
            if let Some((n, map)) = container {
                let items = if map { n * 2 } else { n };
                // Every item needs at least one byte: reject absurd lengths early.
                if items > (buf.len() - pos) as u64 {
                    return Err(Reject::Truncated { at: buf.len() });
                }
                if items > 0 {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Reject::TooDeep);
                    }
                    self.stack.push(Level {
                        remaining: items,
                        map,
                    });
                    continue;
                }
            }
            // One item finished: close every container it completes.
            loop {
                match self.stack.last_mut() {
                    None => {
                        return if pos == buf.len() {
                            Ok(())
                        } else {
                            Err(Reject::TrailingBytes {
                                extra: buf.len() - pos,
                            })
                        };
                    }
                    Some(level) => {
                        level.remaining -= 1;
                        if level.remaining == 0 {
                            self.stack.pop();
                        } else {
                            break;
                        }
                    }
                }
            }
        }
    }
}

fn skip(buf: &[u8], pos: usize, n: usize, at: usize) -> Result<usize, Reject> {
    let end = pos.checked_add(n).ok_or(Reject::Truncated { at })?;
    if end > buf.len() {
        Err(Reject::Truncated { at: buf.len() })
    } else {
        Ok(end)
    }
}

fn take_str(buf: &[u8], pos: usize, n: usize, at: usize) -> Result<usize, Reject> {
    let end = skip(buf, pos, n, at)?;
    std::str::from_utf8(&buf[pos..end]).map_err(|_| Reject::BadUtf8 { at })?;
    Ok(end)
}

/// Skips an ext value's type byte and `n` data bytes, refusing what Python's
/// `unpackb` refuses: reserved (negative) types other than timestamps, and
/// timestamps (type -1) that are not 4, 8 or 12 bytes or have nanoseconds
/// of 10^9 or more.
fn take_ext(buf: &[u8], pos: usize, n: usize, at: usize) -> Result<usize, Reject> {
    let end = skip(
        buf,
        pos,
        n.checked_add(1).ok_or(Reject::Truncated { at })?,
        at,
    )?;
    let ty = buf[pos] as i8;
    let data = &buf[pos + 1..end];
    if ty == -1 {
        let be = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        let nanos = match data.len() {
            4 => 0,
            8 => be(data) >> 34,
            12 => be(&data[..4]),
            _ => return Err(Reject::BadTimestamp { at }),
        };
        if nanos >= 1_000_000_000 {
            return Err(Reject::BadTimestamp { at });
        }
    } else if ty < 0 {
        return Err(Reject::ReservedExt { at });
    }
    Ok(end)
}

fn read_len(buf: &[u8], pos: &mut usize, width: usize, at: usize) -> Result<usize, Reject> {
    let end = skip(buf, *pos, width, at)?;
    let n = buf[*pos..end]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    *pos = end;
    Ok(n)
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
    match frames.len() {
        0 | 1 => return Err(Reject::MissingPayload),
        2 => {}
        n => return Err(Reject::ExtraFrames { frames: n }),
    }
    let topic = std::str::from_utf8(&frames[0]).map_err(|_| Reject::TopicNotUtf8)?;
    let payload: &[u8] = &frames[1];
    if payload.len() > limits.max_payload {
        return Err(Reject::TooLarge {
            len: payload.len(),
            max: limits.max_payload,
        });
    }
    validator.check(payload)?;
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
