//! Banyan payloads as MessagePack, without an allocator.
//!
//! Every Banyan message is a topic plus one MessagePack value (normally a map),
//! packed the way Python's `msgpack.packb(obj, use_bin_type=True)` packs it and
//! read the way `msgpack.unpackb(raw=False)` reads it. This module offers four
//! tools over plain byte slices:
//!
//! | tool | use it for |
//! |------|------------|
//! | [`validate`] | checking that untrusted bytes are exactly one well-formed value within [`Limits`], before anything else looks at them |
//! | [`decode`] / [`encode`] | fixed-shape payloads as serde structs (`#[derive(Serialize, Deserialize)]`), zero-copy `&str`/`&[u8]` fields |
//! | [`Value`] ([`MapRef`], [`ArrayRef`]) | payloads whose keys are data (motor names, LED names) or whose shape is only known at run time |
//! | [`Writer`] | writing maps with dynamic keys (state reports) or hand-built payloads |
//!
//! Nothing here allocates, recurses on input data, or panics on any input:
//! [`validate`] walks the value with a fixed-size stack bounded by
//! [`Limits::MAX_DEPTH`], and [`decode`] and [`Value::parse`] validate first.
//!
//! # Python compatibility rules
//!
//! The encoders follow `packb(use_bin_type=True)`:
//!
//! - `str` → fixstr/str8/str16/str32, bytes (`serde_bytes`, [`Writer::bin`]) → bin8/16/32;
//! - integers in their smallest encoding: non-negative values in the positive
//!   fixint/uint8/16/32/64 family, negative ones in negative fixint/int8/16/32/64
//!   ([`Writer::int`] always; [`encode`] for unsigned fields and for every
//!   signed value below 256 — see the deviation below);
//! - structs as maps with their field names as str keys, in declaration order
//!   (Python dicts keep insertion order, so field order is key order);
//! - `None`/`()` → nil.
//!
//! **Floats.** Python floats are doubles, and `packb` always writes them as
//! float64 (`cb` + 8 bytes). [`Writer::float`] takes an `f64` and writes float64.
//! With [`encode`], an `f64` field writes float64 but an **`f32` field writes
//! float32** (`ca` + 4 bytes), which Python reads back as a (widened) float but
//! which is not what Python itself would have written: use `f64` fields in
//! structs that must be byte-identical to Python.
//!
//! **Signed integers ≥ 256 in [`encode`].** `ser-write-msgpack` writes a
//! non-negative *signed* Rust integer that does not fit in a `u8` as int16/int32/
//! int64, where Python writes uint16/uint32/uint64. Every MessagePack reader,
//! Python's included, decodes both to the same number, but the bytes differ:
//! use unsigned field types for non-negative quantities when byte identity
//! matters (the [`Writer`] has no such deviation).
//!
//! # Decoding rules
//!
//! [`decode`] is `ser-write-msgpack`'s borrowing deserializer after [`validate`]:
//! any integer width decodes into any Rust integer that can hold the value, and
//! ints or floats decode into `f32`/`f64`. Note that it also decodes **nil into
//! a float field as NaN**; typed command parsing ([`crate::cmd`]) uses [`Value`]
//! instead and rejects that.
//!
//! Map keys: by default ([`Limits::strict_map_keys`]) a map key must be a str
//! or bin, exactly as Python's `unpackb` (whose `strict_map_key=True` default
//! raises on any other key type). Together with the other checks of
//! [`validate`] — no reserved marker `0xc1`, str values valid UTF-8,
//! extension types 0–127 or a well-formed timestamp (-1) — this means the validator accepts only
//! what Python's `unpackb(raw=False)` accepts, so a Rust gateway never
//! forwards a message that would crash a Python receiver.

mod read;
mod write;

pub use read::{validate, validate_at, ArrayIter, ArrayRef, MapIter, MapRef, Value};
pub use write::Writer;

use core::fmt;
use ser_write_msgpack::ser_write::{SerError, SliceWriter};
use serde::{Deserialize, Serialize};

/// Why a MessagePack payload could not be validated, decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a value (or was empty).
    Truncated,
    /// Bytes follow the one top-level value.
    TrailingBytes,
    /// The reserved marker byte `0xc1` appeared.
    ReservedMarker,
    /// A str value is not valid UTF-8.
    InvalidUtf8,
    /// Containers are nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A str, bin, ext, array or map declares more bytes or items than [`Limits`] allow.
    TooLong,
    /// The whole input is larger than [`Limits::max_size`].
    TooLarge,
    /// A map key is neither str nor bin while [`Limits::strict_map_keys`] is set.
    MapKey,
    /// An extension uses a reserved negative type other than the timestamp
    /// (-1); Python's `unpackb` raises on it.
    ReservedExt,
    /// A timestamp extension (type -1) is not 4, 8 or 12 bytes or has
    /// nanoseconds ≥ 10⁹ (Python's `unpackb` raises on it).
    InvalidTimestamp,
    /// The value has another MessagePack type than the Rust type expects.
    UnexpectedType,
    /// A number does not fit in the Rust type it is decoded into.
    OutOfRange,
    /// A serde `Deserialize` implementation refused the value (for example a
    /// missing or unknown struct field, or an unknown enum variant).
    Invalid,
    /// The output buffer is too small for the encoded value.
    BufferFull,
    /// The value cannot be encoded: a length unknown in advance, a length
    /// beyond `u32`, or a serde `Serialize` implementation that failed.
    Unencodable,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated msgpack",
            Error::TrailingBytes => "trailing bytes after msgpack value",
            Error::ReservedMarker => "reserved msgpack marker 0xc1",
            Error::InvalidUtf8 => "msgpack str is not utf-8",
            Error::TooDeep => "msgpack nested too deep",
            Error::TooLong => "msgpack length over limit",
            Error::TooLarge => "msgpack payload over size limit",
            Error::MapKey => "msgpack map key is not str or bin",
            Error::ReservedExt => "reserved msgpack ext type",
            Error::InvalidTimestamp => "malformed msgpack timestamp",
            Error::UnexpectedType => "unexpected msgpack type",
            Error::OutOfRange => "number out of range",
            Error::Invalid => "invalid value",
            Error::BufferFull => "output buffer full",
            Error::Unencodable => "value cannot be encoded",
        })
    }
}

impl core::error::Error for Error {}

/// A [`validate_at`] error: what is wrong and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorAt {
    /// What is wrong.
    pub error: Error,
    /// Where, as a byte offset into the input: the offset of the offending
    /// value's first (marker) byte for [`Error::ReservedMarker`],
    /// [`Error::InvalidUtf8`], [`Error::MapKey`], [`Error::ReservedExt`],
    /// [`Error::InvalidTimestamp`], [`Error::TooLong`] and [`Error::TooDeep`];
    /// the input's length (where more bytes were needed) for
    /// [`Error::Truncated`]; the first trailing byte for
    /// [`Error::TrailingBytes`]; [`Limits::max_size`] for [`Error::TooLarge`].
    pub offset: usize,
}

impl fmt::Display for ErrorAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.error, self.offset)
    }
}

impl core::error::Error for ErrorAt {}

/// Bounds that [`validate`] enforces on untrusted input.
///
/// `#[non_exhaustive]`: start from [`Limits::DEFAULT`] (or `Limits::default()`)
/// and adjust with the `with_*` const builders or by assigning fields.
///
/// ```
/// use banyan_core::msg::Limits;
/// const SMALL: Limits = Limits::new().with_max_size(256).with_max_depth(4);
/// assert_eq!(SMALL.max_items, Limits::DEFAULT.max_items);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted input, in bytes (default 65 536).
    pub max_size: usize,
    /// Deepest accepted nesting of arrays and maps; a top-level map is depth 1,
    /// a scalar depth 0, and an empty array or map is a level too (as in
    /// Python's unpacker) (default 32). Values above [`Limits::MAX_DEPTH`] act
    /// as [`Limits::MAX_DEPTH`].
    pub max_depth: usize,
    /// Longest accepted str, bin or ext payload, in bytes (default 65 536).
    pub max_len: usize,
    /// Most elements in one array, or entries in one map (default 4 096).
    pub max_items: usize,
    /// Require str or bin map keys, like Python's `unpackb` (default `true`).
    pub strict_map_keys: bool,
}

impl Limits {
    /// The hard cap on [`Limits::max_depth`], the depth of [`Limits::LAN`].
    ///
    /// The validator keeps one fixed stack slot per open container (two
    /// words): a `max_depth` up to 64 uses a 64-slot array (512 bytes on a
    /// 32-bit MCU), a deeper one a separate 512-slot array (4 KiB on 32 bits,
    /// 8 KiB on 64 bits) that only callers with such limits ever touch. No
    /// input can make it use more, and nothing is allocated.
    pub const MAX_DEPTH: usize = 512;

    /// The defaults: 64 KiB input, depth 32, 64 KiB per str/bin/ext, 4 096
    /// items per container, str/bin map keys only. Generous for any Banyan
    /// payload, small enough that a hostile one cannot cost much to reject.
    pub const DEFAULT: Limits = Limits {
        max_size: 65_536,
        max_depth: 32,
        max_len: 65_536,
        max_items: 4_096,
        strict_map_keys: true,
    };

    /// The LAN profile: what a Banyan receiver on the LAN accepts, which is
    /// what Python Banyan 3.17's `unpackb(raw=False)` accepts (strict map
    /// keys; `bin` keys allowed, as msgpack-numpy sends them) up to a depth
    /// and a size: 64 MiB input (so a 16 MB payload passes), depth 512
    /// ([`Limits::MAX_DEPTH`]; Python's own cap is 1 024), no limit on one
    /// str/bin/ext or on the items of one container beyond the input size.
    ///
    /// The gateways' message check (`banyan_component::wire`) is this profile
    /// with its configured maximum payload as [`Limits::max_size`].
    pub const LAN: Limits = Limits {
        max_size: 64 * 1024 * 1024,
        max_depth: Self::MAX_DEPTH,
        max_len: usize::MAX,
        max_items: usize::MAX,
        strict_map_keys: true,
    };

    /// [`Limits::DEFAULT`], usable in `const` context.
    pub const fn new() -> Self {
        Self::DEFAULT
    }

    /// Sets [`Limits::max_size`].
    pub const fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets [`Limits::max_depth`].
    pub const fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Sets [`Limits::max_len`].
    pub const fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// Sets [`Limits::max_items`].
    pub const fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }

    /// Sets [`Limits::strict_map_keys`].
    pub const fn with_strict_map_keys(mut self, strict: bool) -> Self {
        self.strict_map_keys = strict;
        self
    }
}

impl Default for Limits {
    /// [`Limits::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Encodes `value` into `buf` as Python's `packb(use_bin_type=True)` would
/// (structs as maps with str field names; see the module docs for the two
/// deviations: `f32` fields and signed integers ≥ 256) and returns the number
/// of bytes written.
///
/// # Errors
/// [`Error::BufferFull`] if `buf` is too small (its contents are then
/// unspecified); [`Error::Unencodable`] for sequences or maps of unknown
/// length or a failing `Serialize` implementation.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Payload { value: u8 }
/// let mut buf = [0u8; 16];
/// let n = banyan_core::msg::encode(&Payload { value: 1 }, &mut buf).unwrap();
/// // msgpack.packb({'value': 1}, use_bin_type=True)
/// assert_eq!(&buf[..n], b"\x81\xa5value\x01");
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T, buf: &mut [u8]) -> Result<usize, Error> {
    let mut writer = SliceWriter::new(buf);
    match ser_write_msgpack::to_writer_named(&mut writer, value) {
        Ok(()) => Ok(writer.len()),
        Err(ser_write_msgpack::ser::Error::Writer(SerError::BufferFull)) => Err(Error::BufferFull),
        Err(_) => Err(Error::Unencodable),
    }
}

/// Decodes exactly one value of type `T` from `bytes`, borrowing `&str` and
/// `&[u8]` fields from it, after checking it with [`validate`] and
/// [`Limits::DEFAULT`].
///
/// # Errors
/// Any [`validate`] error (malformed, truncated, trailing bytes, over limits),
/// then [`Error::UnexpectedType`], [`Error::OutOfRange`] or [`Error::Invalid`]
/// when the value does not fit `T`.
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Payload<'a> { name: &'a str, value: i32 }
/// let p: Payload = banyan_core::msg::decode(b"\x82\xa4name\xa1x\xa5value\xff").unwrap();
/// assert_eq!(p, Payload { name: "x", value: -1 });
/// ```
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Error> {
    decode_with(bytes, &Limits::DEFAULT)
}

/// [`decode`] with explicit [`Limits`].
///
/// # Errors
/// As [`decode`].
pub fn decode_with<'a, T: Deserialize<'a>>(bytes: &'a [u8], limits: &Limits) -> Result<T, Error> {
    validate(bytes, limits)?;
    match ser_write_msgpack::from_slice::<T>(bytes) {
        Ok((value, len)) if len == bytes.len() => Ok(value),
        Ok(_) => Err(Error::TrailingBytes),
        Err(e) => Err(de_error(e)),
    }
}

fn de_error(e: ser_write_msgpack::de::Error) -> Error {
    use ser_write_msgpack::de::Error as E;
    match e {
        E::UnexpectedEof => Error::Truncated,
        E::ReservedCode => Error::ReservedMarker,
        E::InvalidUnicodeCodePoint => Error::InvalidUtf8,
        E::InvalidInteger => Error::OutOfRange,
        E::UnsupportedExt
        | E::InvalidType
        | E::ExpectedInteger
        | E::ExpectedNumber
        | E::ExpectedString
        | E::ExpectedBin
        | E::ExpectedNil
        | E::ExpectedArray
        | E::ExpectedMap
        | E::ExpectedStruct
        | E::ExpectedIdentifier => Error::UnexpectedType,
        _ => Error::Invalid,
    }
}
