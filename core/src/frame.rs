//! Serial frames: a two-byte header, a payload and a CRC-16, COBS-encoded and
//! terminated by a `0x00` delimiter; and a streaming de-framer.
//!
//! Use this module to move opaque byte payloads over a byte stream that may
//! drop, corrupt or repeat bytes (a UART, a USB CDC port, a pipe). It knows
//! nothing about the meaning of the payload; the [`link`](crate::link) protocol
//! is built on top of it. Do not use it over a transport that already frames and
//! checks messages (ZeroMQ, UDP): it would only add overhead.
//!
//! # Layout
//!
//! A frame *body* (before COBS) is:
//!
//! | offset      | size | field                                          |
//! |-------------|------|------------------------------------------------|
//! | 0           | 1    | `kind`: what the payload is (defined by `link`) |
//! | 1           | 1    | `seq`: sender's sequence number, wraps at 256   |
//! | 2           | n    | payload                                         |
//! | 2 + n       | 2    | CRC-16, little endian, over bytes `0 .. 2 + n`  |
//!
//! On the wire the body is COBS-encoded (no `0x00` inside; one extra byte per
//! run of 254 non-zero bytes, and at least one) and followed by a single
//! `0x00` delimiter. A body of `b` bytes therefore takes at most
//! `b + ceil(b / 254) + 1` bytes on the wire, see [`encoded_len`]: for a body
//! under 254 bytes the framing costs exactly 2 bytes plus 4 bytes of header
//! and CRC.
//!
//! # Why CRC-16 (CRC-16/IBM-3740, poly `0x1021`, init `0xFFFF`)
//!
//! Frames are short (the [`link`](crate::link) keeps them well under 4 KiB).
//! The CCITT polynomial `0x1021` has Hamming distance 4 up to 32 751 data bits
//! (Koopman), so it detects every 1-, 2- and 3-bit error and every burst up to
//! 16 bits in any frame this crate sends; a CRC-32 would detect more, but costs
//! 2 more bytes per frame, and the whole link overhead budget per PUBLISH is 8
//! bytes. The non-zero initial value makes leading zero bytes count. The
//! `crc` crate computes it with a 512-byte table on microcontrollers and a
//! slice-by-16 table on hosts ([`CrcTable`]).
//!
//! # Views and representation
//!
//! [`Frame`] is a view over a decoded body in the style of smoltcp's wire
//! module: [`Frame::new_checked`] validates the length once, after which no
//! accessor panics. [`Repr`] is the parsed high-level form ([`Repr::parse`]
//! checks the CRC; [`Repr::emit`] writes a body).
//! [`encode`] writes a complete wire frame (COBS plus delimiter) in one pass
//! from a header and a list of payload parts, without an intermediate buffer.
//!
//! # Example
//!
//! ```
//! use banyan_core::frame::{self, Deframer, Feed};
//!
//! let mut wire = [0u8; 64];
//! let n = frame::encode(0x10, 7, &[b"hello", b" world"], &mut wire).unwrap();
//! assert_eq!(wire[n - 1], 0x00);
//!
//! // The receiver gets the bytes in arbitrary chunks, here with garbage first.
//! let mut stream = [0u8; 80];
//! stream[..3].copy_from_slice(&[0x55, 0x13, 0x00]);
//! stream[3..3 + n].copy_from_slice(&wire[..n]);
//!
//! let mut deframer: Deframer<64> = Deframer::new();
//! let mut input = &stream[..3 + n];
//! let mut frames = 0;
//! while !input.is_empty() {
//!     input = match deframer.feed(input) {
//!         Feed::Consumed => break,
//!         Feed::Frame { frame, rest } => {
//!             assert_eq!((frame.kind(), frame.seq()), (0x10, 7));
//!             assert_eq!(frame.payload(), b"hello world");
//!             frames += 1;
//!             rest
//!         }
//!         Feed::Dropped { rest, .. } => rest,
//!     };
//! }
//! assert_eq!(frames, 1);
//! assert_eq!(deframer.stats().cobs, 1); // the garbage before the first delimiter
//! ```

use core::fmt;

/// The CRC table layout: one 512-byte table on bare-metal targets
/// (`target_os = "none"`, flash is scarce), slice-by-16 (8 KiB, several times
/// faster) on hosted targets such as the gateway. Both compute the same CRC.
#[cfg(target_os = "none")]
pub type CrcTable = crc::Table<1>;
/// The CRC table layout: one 512-byte table on bare-metal targets
/// (`target_os = "none"`, flash is scarce), slice-by-16 (8 KiB, several times
/// faster) on hosted targets such as the gateway. Both compute the same CRC.
#[cfg(not(target_os = "none"))]
pub type CrcTable = crc::Table<16>;

/// The CRC used by frames: CRC-16/IBM-3740 (a.k.a. CRC-16/CCITT-FALSE).
pub const CRC: crc::Crc<u16, CrcTable> = crc::Crc::<u16, CrcTable>::new(&crc::CRC_16_IBM_3740);

/// The delimiter that ends every frame on the wire.
pub const DELIMITER: u8 = 0x00;

/// Byte ranges of the fields of a frame body.
pub mod field {
    /// A byte range within a frame body.
    pub type Field = core::ops::Range<usize>;
    /// The frame kind (one byte).
    pub const KIND: usize = 0;
    /// The sequence number (one byte).
    pub const SEQ: usize = 1;
    /// Where the payload starts; it ends [`CRC_LEN`] bytes before the body end.
    pub const PAYLOAD_START: usize = 2;
    /// The length of the header (kind and sequence number).
    pub const HEADER_LEN: usize = PAYLOAD_START;
    /// The length of the trailing CRC.
    pub const CRC_LEN: usize = 2;

    /// The payload range of a body of `len` bytes (`len` must be at least
    /// [`super::MIN_BODY_LEN`]).
    pub const fn payload(len: usize) -> Field {
        PAYLOAD_START..len - CRC_LEN
    }

    /// The CRC range of a body of `len` bytes (`len` must be at least
    /// [`super::MIN_BODY_LEN`]).
    pub const fn crc(len: usize) -> Field {
        len - CRC_LEN..len
    }
}

/// The smallest valid body: header and CRC, empty payload.
pub const MIN_BODY_LEN: usize = field::HEADER_LEN + field::CRC_LEN;

/// The most bytes a body of `body_len` bytes takes on the wire, COBS and
/// delimiter included (exact for bodies under 254 bytes: `body_len + 2`;
/// longer bodies take less when they contain zeros).
pub const fn encoded_len(body_len: usize) -> usize {
    cobs::max_encoding_length(body_len) + 1
}

/// The most bytes a frame with a `payload_len`-byte payload takes on the wire.
pub const fn encoded_len_for_payload(payload_len: usize) -> usize {
    encoded_len(MIN_BODY_LEN + payload_len)
}

/// The largest payload whose frame fits `wire_len` bytes on the wire
/// (delimiter included); 0 if not even an empty frame fits.
pub const fn max_payload_len(wire_len: usize) -> usize {
    if wire_len < encoded_len(MIN_BODY_LEN) {
        return 0;
    }
    // The largest body with body + ceil(body / 254) <= wire_len - 1.
    let w = wire_len - 1;
    let body = w - w.div_ceil(255);
    body - MIN_BODY_LEN
}

/// Why a received frame was dropped (a wire error: the bytes that arrived
/// were bad, nothing is wrong locally).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropReason {
    /// The bytes between two delimiters are not valid COBS.
    Cobs,
    /// The decoded body is shorter than header plus CRC.
    Short,
    /// The CRC does not match the body.
    Crc,
    /// The frame is larger than the de-framer's buffer.
    Oversize,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Cobs => "invalid cobs encoding",
            DropReason::Short => "frame too short",
            DropReason::Crc => "crc mismatch",
            DropReason::Oversize => "frame too large",
        })
    }
}

impl core::error::Error for DropReason {}

/// A local error while writing a frame.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The output buffer cannot hold the frame; see [`encoded_len`].
    BufferTooSmall,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BufferTooSmall => "buffer too small for frame",
        })
    }
}

impl core::error::Error for EncodeError {}

/// A read/write view of a decoded frame body (header, payload, CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is
    /// shorter than [`MIN_BODY_LEN`]. Prefer [`Frame::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`Frame::check_len`].
    ///
    /// # Errors
    /// [`DropReason::Short`] if the buffer cannot hold header and CRC.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, DropReason> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that no accessor can panic.
    ///
    /// # Errors
    /// [`DropReason::Short`] if the buffer cannot hold header and CRC.
    pub fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < MIN_BODY_LEN {
            Err(DropReason::Short)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole body (header, payload and CRC).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The frame kind.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::KIND]
    }

    /// The sender's sequence number.
    pub fn seq(&self) -> u8 {
        self.buffer.as_ref()[field::SEQ]
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[field::payload(data.len())]
    }

    /// The CRC stored in the frame.
    pub fn crc(&self) -> u16 {
        let data = self.buffer.as_ref();
        let r = field::crc(data.len());
        u16::from_le_bytes([data[r.start], data[r.start + 1]])
    }

    /// Computes the CRC of header and payload.
    pub fn compute_crc(&self) -> u16 {
        let data = self.buffer.as_ref();
        CRC.checksum(&data[..data.len() - field::CRC_LEN])
    }

    /// Whether the stored CRC matches header and payload.
    pub fn verify_crc(&self) -> bool {
        self.crc() == self.compute_crc()
    }
}

impl<'a> Frame<&'a [u8]> {
    /// The payload, borrowed for the buffer's lifetime rather than the view's.
    pub fn into_payload(self) -> &'a [u8] {
        let data = self.buffer;
        &data[field::payload(data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the frame kind.
    pub fn set_kind(&mut self, kind: u8) {
        self.buffer.as_mut()[field::KIND] = kind;
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, seq: u8) {
        self.buffer.as_mut()[field::SEQ] = seq;
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let r = field::payload(data.len());
        &mut data[r]
    }

    /// Computes the CRC over header and payload and stores it.
    pub fn fill_crc(&mut self) {
        let crc = self.compute_crc();
        let data = self.buffer.as_mut();
        let r = field::crc(data.len());
        data[r].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The parsed header of a frame whose CRC was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Repr {
    /// The frame kind.
    pub kind: u8,
    /// The sender's sequence number.
    pub seq: u8,
}

impl Repr {
    /// Parses a frame view, verifying length and CRC.
    ///
    /// # Errors
    /// [`DropReason::Short`] or [`DropReason::Crc`].
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, DropReason> {
        frame.check_len()?;
        if !frame.verify_crc() {
            return Err(DropReason::Crc);
        }
        Ok(Repr {
            kind: frame.kind(),
            seq: frame.seq(),
        })
    }

    /// The body length of a frame with a `payload_len`-byte payload (before
    /// COBS; see [`encoded_len`] for the wire length).
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        MIN_BODY_LEN + payload_len
    }

    /// Writes header, payload and CRC into `frame`, whose buffer must be
    /// exactly [`Repr::buffer_len`] long; `emit_payload` fills the payload.
    ///
    /// # Panics
    /// If the buffer is shorter than [`MIN_BODY_LEN`] (a caller bug; use
    /// [`Frame::new_checked`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
        emit_payload: impl FnOnce(&mut [u8]),
    ) {
        frame.set_kind(self.kind);
        frame.set_seq(self.seq);
        emit_payload(frame.payload_mut());
        frame.fill_crc();
    }
}

/// Encodes a whole wire frame (COBS body plus `0x00` delimiter) into `out`
/// in one pass, the payload given as consecutive `parts` (so a caller never
/// has to copy topic and payload together first). Returns the bytes written.
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] if `out` is shorter than
/// [`encoded_len_for_payload`] of the total payload length; `out` then holds
/// garbage.
pub fn encode(kind: u8, seq: u8, parts: &[&[u8]], out: &mut [u8]) -> Result<usize, EncodeError> {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let need = encoded_len_for_payload(payload_len);
    if out.len() < need {
        return Err(EncodeError::BufferTooSmall);
    }
    let header = [kind, seq];
    let mut digest = CRC.digest();
    digest.update(&header);
    let mut enc = cobs::CobsEncoder::new(&mut out[..need - 1]);
    enc.push(&header).map_err(|_| EncodeError::BufferTooSmall)?;
    for part in parts {
        digest.update(part);
        enc.push(part).map_err(|_| EncodeError::BufferTooSmall)?;
    }
    let crc = digest.finalize().to_le_bytes();
    enc.push(&crc).map_err(|_| EncodeError::BufferTooSmall)?;
    let n = enc.finalize();
    // `need` bounds the COBS output, but stay safe if it ever did not.
    let slot = out.get_mut(n).ok_or(EncodeError::BufferTooSmall)?;
    *slot = DELIMITER;
    Ok(n + 1)
}

/// Per-reason counters of frames the [`Deframer`] dropped, plus the frames it
/// delivered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Frames delivered (valid COBS, length and CRC). Serialized as
    /// `frames_decoded`.
    #[cfg_attr(feature = "serde", serde(rename = "frames_decoded"))]
    pub frames: u32,
    /// Dropped: invalid COBS. Serialized as `cobs_errors`.
    #[cfg_attr(feature = "serde", serde(rename = "cobs_errors"))]
    pub cobs: u32,
    /// Dropped: decoded body shorter than header plus CRC. Serialized as
    /// `short_frames`.
    #[cfg_attr(feature = "serde", serde(rename = "short_frames"))]
    pub short: u32,
    /// Dropped: CRC mismatch. Serialized as `crc_errors`.
    #[cfg_attr(feature = "serde", serde(rename = "crc_errors"))]
    pub crc: u32,
    /// Dropped: larger than the de-framer's buffer. Serialized as
    /// `oversize_frames`.
    #[cfg_attr(feature = "serde", serde(rename = "oversize_frames"))]
    pub oversize: u32,
}

impl Stats {
    /// All dropped frames.
    pub fn dropped(&self) -> u32 {
        self.cobs
            .wrapping_add(self.short)
            .wrapping_add(self.crc)
            .wrapping_add(self.oversize)
    }

    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Cobs => &mut self.cobs,
            DropReason::Short => &mut self.short,
            DropReason::Crc => &mut self.crc,
            DropReason::Oversize => &mut self.oversize,
        };
        *c = c.wrapping_add(1);
    }
}

/// The outcome of [`Deframer::feed`].
#[derive(Debug)]
pub enum Feed<'a, 'b> {
    /// All input was consumed without completing a frame.
    Consumed,
    /// A frame with valid COBS, length and CRC; `rest` is the unconsumed input.
    Frame {
        /// The decoded body, borrowed from the de-framer's buffer.
        frame: Frame<&'a [u8]>,
        /// Input after the frame's delimiter, not yet consumed.
        rest: &'b [u8],
    },
    /// A frame was dropped (and counted); `rest` is the unconsumed input.
    Dropped {
        /// Why it was dropped.
        reason: DropReason,
        /// Input after the dropped frame's delimiter, not yet consumed.
        rest: &'b [u8],
    },
}

/// A streaming de-framer with an `N`-byte buffer for one encoded frame
/// (delimiter excluded; a frame whose COBS encoding exceeds `N` bytes is
/// dropped as [`DropReason::Oversize`]).
///
/// Feed it bytes as they arrive, in any chunking. It never allocates and never
/// panics; after any corruption it resynchronises at the next `0x00`. Empty
/// frames (consecutive delimiters) are ignored silently: senders may emit a
/// lone `0x00` to flush a receiver.
#[derive(Debug, Clone)]
pub struct Deframer<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Body length of the frame last delivered (0: none since the last feed).
    last: usize,
    overflow: bool,
    stats: Stats,
}

impl<const N: usize> Default for Deframer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deframer<N> {
    /// An empty de-framer.
    pub const fn new() -> Self {
        Deframer {
            buf: [0; N],
            len: 0,
            last: 0,
            overflow: false,
            stats: Stats {
                frames: 0,
                cobs: 0,
                short: 0,
                crc: 0,
                oversize: 0,
            },
        }
    }

    /// Counters of delivered and dropped frames.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Discards a partially received frame (e.g. after the port was reopened);
    /// the discarded bytes are not counted.
    pub fn reset(&mut self) {
        self.len = 0;
        self.last = 0;
        self.overflow = false;
    }

    /// The frame returned by the last [`Deframer::feed`], if that call
    /// returned [`Feed::Frame`] (handy when the borrow of the returned frame
    /// had to end early).
    pub fn last_frame(&self) -> Option<Frame<&[u8]>> {
        match self.last {
            0 => None,
            n => self.buf.get(..n).map(Frame::new_unchecked),
        }
    }

    /// Whether a partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.overflow
    }

    fn append(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        match self.buf.get_mut(self.len..self.len + chunk.len()) {
            Some(dst) => {
                dst.copy_from_slice(chunk);
                self.len += chunk.len();
            }
            None => {
                self.overflow = true;
                self.len = 0;
            }
        }
    }

    /// Consumes input up to and including the next frame delimiter and
    /// returns the decoded frame (or why it was dropped) with the unconsumed
    /// rest of `input`. Call again with `rest` until [`Feed::Consumed`].
    pub fn feed<'a, 'b>(&'a mut self, input: &'b [u8]) -> Feed<'a, 'b> {
        self.last = 0;
        let mut input = input;
        loop {
            let Some(pos) = memchr::memchr(DELIMITER, input) else {
                self.append(input);
                return Feed::Consumed;
            };
            let (chunk, rest) = (&input[..pos], &input[pos + 1..]);
            self.append(chunk);
            if self.overflow {
                self.overflow = false;
                self.len = 0;
                return self.drop_frame(DropReason::Oversize, rest);
            }
            if self.len == 0 {
                input = rest;
                continue;
            }
            let len = core::mem::take(&mut self.len);
            return match cobs::decode_in_place(&mut self.buf[..len]) {
                Err(_) => self.drop_frame(DropReason::Cobs, rest),
                Ok(n) => match Frame::new_checked(&self.buf[..n]).and_then(|f| Repr::parse(&f)) {
                    Ok(_) => {
                        self.last = n;
                        self.stats.frames = self.stats.frames.wrapping_add(1);
                        Feed::Frame {
                            frame: Frame::new_unchecked(&self.buf[..n]),
                            rest,
                        }
                    }
                    Err(reason) => self.drop_frame(reason, rest),
                },
            };
        }
    }

    fn drop_frame<'a, 'b>(&'a mut self, reason: DropReason, rest: &'b [u8]) -> Feed<'a, 'b> {
        self.stats.count(reason);
        Feed::Dropped { reason, rest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kind 0x10, seq 7, payload "hi": body `10 07 68 69` + CRC `fb 65`
    /// (0x65fb, little endian), COBS code byte 0x07, delimiter.
    const GOLDEN: [u8; 8] = [0x07, 0x10, 0x07, 0x68, 0x69, 0xfb, 0x65, 0x00];

    #[test]
    fn crc_check_value() {
        // The catalogue check value of CRC-16/IBM-3740.
        assert_eq!(CRC.checksum(b"123456789"), 0x29b1);
    }

    #[test]
    fn golden_roundtrip() {
        let mut out = [0u8; 16];
        let n = encode(0x10, 7, &[b"h", b"i"], &mut out).unwrap();
        assert_eq!(&out[..n], &GOLDEN);
        let mut d: Deframer<16> = Deframer::new();
        match d.feed(&GOLDEN) {
            Feed::Frame { frame, rest } => {
                assert!(rest.is_empty());
                assert_eq!(Repr::parse(&frame), Ok(Repr { kind: 0x10, seq: 7 }));
                assert_eq!(frame.payload(), b"hi");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn max_payload_len_is_tight() {
        assert!(max_payload_len(usize::MAX) > 0);
        for wire in 0..5000 {
            let p = max_payload_len(wire);
            if wire >= encoded_len(MIN_BODY_LEN) {
                assert!(encoded_len_for_payload(p) <= wire, "wire {wire}");
                assert!(encoded_len_for_payload(p + 1) > wire, "wire {wire}");
            } else {
                assert_eq!(p, 0);
            }
        }
    }
}
