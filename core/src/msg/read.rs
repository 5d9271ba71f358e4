//! The bounded validator and the zero-copy [`Value`] reader.

use super::{Error, ErrorAt, Limits};
use heapless::vec::VecView;

/// One MessagePack header with its immediate payload; containers carry their
/// item count (array elements, map entries), not their contents.
enum Head<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(usize),
    Map(usize),
}

/// A read position in a slice; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated);
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, Error> {
        Ok(u16::from_be_bytes(self.array()?).into())
    }

    fn u32(&mut self) -> Result<usize, Error> {
        // usize is at least 32 bits on every target this crate builds for.
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| Error::TooLong)
    }

    /// Reads one header. `max_len` bounds str/bin/ext payloads (checked before
    /// the bounds check, so a huge declared length is `TooLong`).
    #[inline]
    fn head(&mut self, max_len: usize) -> Result<Head<'a>, Error> {
        let marker = self.u8()?;
        let h = match marker {
            0x00..=0x7f => Head::UInt(marker.into()),
            0x80..=0x8f => Head::Map((marker & 0x0f).into()),
            0x90..=0x9f => Head::Array((marker & 0x0f).into()),
            0xa0..=0xbf => Head::Str(self.data((marker & 0x1f).into(), max_len)?),
            0xc0 => Head::Nil,
            0xc1 => return Err(Error::ReservedMarker),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => {
                let n = self.u8()?.into();
                Head::Bin(self.data(n, max_len)?)
            }
            0xc5 => {
                let n = self.u16()?;
                Head::Bin(self.data(n, max_len)?)
            }
            0xc6 => {
                let n = self.u32()?;
                Head::Bin(self.data(n, max_len)?)
            }
            0xc7 => {
                let n = self.u8()?.into();
                self.ext(n, max_len)?
            }
            0xc8 => {
                let n = self.u16()?;
                self.ext(n, max_len)?
            }
            0xc9 => {
                let n = self.u32()?;
                self.ext(n, max_len)?
            }
            0xca => Head::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Head::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Head::UInt(self.u8()?.into()),
            0xcd => Head::UInt(u16::from_be_bytes(self.array()?).into()),
            0xce => Head::UInt(u32::from_be_bytes(self.array()?).into()),
            0xcf => Head::UInt(u64::from_be_bytes(self.array()?)),
            0xd0 => int(i8::from_be_bytes(self.array()?).into()),
            0xd1 => int(i16::from_be_bytes(self.array()?).into()),
            0xd2 => int(i32::from_be_bytes(self.array()?).into()),
            0xd3 => int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1, max_len)?,
            0xd5 => self.ext(2, max_len)?,
            0xd6 => self.ext(4, max_len)?,
            0xd7 => self.ext(8, max_len)?,
            0xd8 => self.ext(16, max_len)?,
            0xd9 => {
                let n = self.u8()?.into();
                Head::Str(self.data(n, max_len)?)
            }
            0xda => {
                let n = self.u16()?;
                Head::Str(self.data(n, max_len)?)
            }
            0xdb => {
                let n = self.u32()?;
                Head::Str(self.data(n, max_len)?)
            }
            0xdc => Head::Array(self.u16()?),
            0xdd => Head::Array(self.u32()?),
            0xde => Head::Map(self.u16()?),
            0xdf => Head::Map(self.u32()?),
            0xe0..=0xff => Head::Int((marker as i8).into()),
        };
        Ok(h)
    }

    fn data(&mut self, n: usize, max_len: usize) -> Result<&'a [u8], Error> {
        if n > max_len {
            return Err(Error::TooLong);
        }
        self.take(n)
    }

    fn ext(&mut self, n: usize, max_len: usize) -> Result<Head<'a>, Error> {
        let ty = self.u8()? as i8;
        Ok(Head::Ext(ty, self.data(n, max_len)?))
    }

    /// Skips `count` whole values without recursion: a counter of values
    /// still to skip replaces the stack (a container adds its items to it).
    fn skip(&mut self, count: usize) -> Result<(), Error> {
        let mut pending = count;
        while pending > 0 {
            pending -= 1;
            match self.head(usize::MAX)? {
                Head::Array(n) => pending = pending.checked_add(n).ok_or(Error::TooLong)?,
                Head::Map(n) => {
                    let items = n.checked_mul(2).ok_or(Error::TooLong)?;
                    pending = pending.checked_add(items).ok_or(Error::TooLong)?;
                }
                _ => {}
            }
            // Every pending value needs at least one more byte.
            if pending > self.remaining() {
                return Err(Error::Truncated);
            }
        }
        Ok(())
    }
}

/// Negative integers are `Int`, non-negative ones `UInt`, whatever the encoding.
fn int(v: i64) -> Head<'static> {
    match u64::try_from(v) {
        Ok(u) => Head::UInt(u),
        Err(_) => Head::Int(v),
    }
}

/// The extension type of MessagePack timestamps.
const TIMESTAMP: i8 = -1;

/// A timestamp extension must be 4, 8 or 12 bytes with nanoseconds below
/// 10^9; Python's `unpackb` raises `ValueError` on anything else.
fn check_timestamp(d: &[u8]) -> Result<(), Error> {
    let nanos = match d.len() {
        4 => 0,
        8 => u64::from_be_bytes(d.try_into().map_err(|_| Error::InvalidTimestamp)?) >> 34,
        12 => u32::from_be_bytes(d[..4].try_into().map_err(|_| Error::InvalidTimestamp)?).into(),
        _ => return Err(Error::InvalidTimestamp),
    };
    if nanos >= 1_000_000_000 {
        return Err(Error::InvalidTimestamp);
    }
    Ok(())
}

/// One open container while validating: the values it still expects (a map
/// of n entries expects 2n) and whether it is a map (then every even count
/// left means the next value is a key).
#[derive(Clone, Copy)]
struct Level {
    left: usize,
    is_map: bool,
}

/// Stack slots used for `max_depth` up to this; deeper limits (such as
/// [`Limits::LAN`]) use a [`Limits::MAX_DEPTH`]-slot stack in their own
/// stack frame, so embedded callers never pay for it.
const SHALLOW: usize = 64;

/// Checks that `bytes` is exactly one well-formed MessagePack value within
/// `limits`: every length inside the input, no reserved marker, str values
/// valid UTF-8, nesting at most [`Limits::max_depth`], container sizes at most
/// [`Limits::max_items`], str/bin/ext at most [`Limits::max_len`] bytes, map
/// keys str or bin when [`Limits::strict_map_keys`], extension types 0–127
/// or a well-formed timestamp (type -1) as Python requires, and no trailing
/// bytes.
///
/// Runs in time linear in `bytes.len()` and constant stack (a fixed array of
/// at most [`Limits::MAX_DEPTH`] levels), never recursing, never allocating
/// and never panicking. [`validate_at`] also says where the problem is.
///
/// # Errors
/// The first problem found, as an [`Error`]: [`Error::TooLarge`],
/// [`Error::Truncated`], [`Error::TrailingBytes`], [`Error::ReservedMarker`],
/// [`Error::InvalidUtf8`], [`Error::TooDeep`], [`Error::TooLong`],
/// [`Error::MapKey`], [`Error::ReservedExt`] or [`Error::InvalidTimestamp`].
///
/// ```
/// use banyan_core::msg::{validate, Error, Limits};
/// assert_eq!(validate(b"\x81\xa5value\x01", &Limits::DEFAULT), Ok(()));
/// assert_eq!(validate(b"\x81\xa5value", &Limits::DEFAULT), Err(Error::Truncated));
/// assert_eq!(validate(b"\x01\x02", &Limits::DEFAULT), Err(Error::TrailingBytes));
/// ```
#[inline]
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<(), Error> {
    validate_at(bytes, limits).map_err(|e| e.error)
}

/// [`validate`], saying where the first problem is ([`ErrorAt::offset`]).
///
/// The checks, their order and the verdict are exactly those of
/// [`validate`]; only the error carries more.
///
/// # Errors
/// As [`validate`], with the offset documented at [`ErrorAt::offset`].
///
/// ```
/// use banyan_core::msg::{validate_at, Error, ErrorAt, Limits};
/// // {1: 1}: the key at byte 1 is an int
/// assert_eq!(
///     validate_at(b"\x81\x01\x01", &Limits::LAN),
///     Err(ErrorAt { error: Error::MapKey, offset: 1 })
/// );
/// ```
pub fn validate_at(bytes: &[u8], limits: &Limits) -> Result<(), ErrorAt> {
    if bytes.len() > limits.max_size {
        return Err(ErrorAt {
            error: Error::TooLarge,
            offset: limits.max_size,
        });
    }
    if limits.max_depth <= SHALLOW {
        // heapless::Vec leaves unused slots uninitialised: a shallow payload
        // pays nothing for the capacity.
        let mut stack = heapless::Vec::<Level, SHALLOW>::new();
        walk(bytes, limits, stack.as_mut_view())
    } else {
        walk_deep(bytes, limits)
    }
}

/// [`walk`] with a [`Limits::MAX_DEPTH`]-slot stack, in its own frame.
#[inline(never)]
fn walk_deep(bytes: &[u8], limits: &Limits) -> Result<(), ErrorAt> {
    let mut stack = heapless::Vec::<Level, { Limits::MAX_DEPTH }>::new();
    walk(bytes, limits, stack.as_mut_view())
}

/// The validator proper: one pass over `bytes`, the innermost open
/// container kept in locals and its parents on `stack` (which holds at least
/// `min(max_depth, MAX_DEPTH)` levels).
#[inline(always)]
fn walk(bytes: &[u8], limits: &Limits, stack: &mut VecView<Level>) -> Result<(), ErrorAt> {
    let len = bytes.len();
    let max_depth = limits.max_depth.min(stack.capacity());
    let max_len = limits.max_len;
    let fail = |error, offset| Err(ErrorAt { error, offset });
    let truncated = ErrorAt {
        error: Error::Truncated,
        offset: len,
    };
    // The innermost open container; the top level is a virtual array of one.
    let mut left: usize = 1;
    let mut is_map = false;
    let mut pos = 0usize;
    loop {
        let at = pos;
        let marker = *bytes.get(pos).ok_or(truncated)?;
        pos += 1;
        let is_key = is_map && left.is_multiple_of(2);
        left -= 1;
        // Scalars are read in full and their content checked here (before
        // their eligibility as a key, as Python does); containers only
        // declare their item count.
        let kind = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Kind::Scalar,
            0x80..=0x8f => Kind::Container(usize::from(marker & 0x0f), true),
            0x90..=0x9f => Kind::Container(usize::from(marker & 0x0f), false),
            0xdc..=0xdf => {
                let n = be(bytes, &mut pos, 2 << (marker & 1)).ok_or(truncated)?;
                Kind::Container(n, marker >= 0xde)
            }
            0xc1 => return fail(Error::ReservedMarker, at),
            // fixstr, str8/16/32
            0xa0..=0xbf | 0xd9..=0xdb => {
                let n = if marker <= 0xbf {
                    usize::from(marker & 0x1f)
                } else {
                    be(bytes, &mut pos, 1 << (marker - 0xd9)).ok_or(truncated)?
                };
                if n > max_len {
                    return fail(Error::TooLong, at);
                }
                let s = take(bytes, &mut pos, n).ok_or(truncated)?;
                if !s.is_ascii() && core::str::from_utf8(s).is_err() {
                    return fail(Error::InvalidUtf8, at);
                }
                Kind::Key
            }
            // bin8/16/32
            0xc4..=0xc6 => {
                let n = be(bytes, &mut pos, 1 << (marker - 0xc4)).ok_or(truncated)?;
                if n > max_len {
                    return fail(Error::TooLong, at);
                }
                take(bytes, &mut pos, n).ok_or(truncated)?;
                Kind::Key
            }
            // ext8/16/32, fixext1..16: type byte, then data
            0xc7..=0xc9 | 0xd4..=0xd8 => {
                let n = if marker <= 0xc9 {
                    be(bytes, &mut pos, 1 << (marker - 0xc7)).ok_or(truncated)?
                } else {
                    1 << (marker - 0xd4)
                };
                let ty = *bytes.get(pos).ok_or(truncated)? as i8;
                pos += 1;
                if n > max_len {
                    return fail(Error::TooLong, at);
                }
                let data = take(bytes, &mut pos, n).ok_or(truncated)?;
                if ty == TIMESTAMP {
                    check_timestamp(data).or_else(|e| fail(e, at))?;
                } else if ty < 0 {
                    return fail(Error::ReservedExt, at);
                }
                Kind::Scalar
            }
            // The fixed-size numbers: float32/64, uint8..64, int8..64.
            0xca..=0xd3 => {
                let n = match marker {
                    0xcc | 0xd0 => 1,
                    0xcd | 0xd1 => 2,
                    0xca | 0xce | 0xd2 => 4,
                    _ => 8, // 0xcb, 0xcf, 0xd3
                };
                take(bytes, &mut pos, n).ok_or(truncated)?;
                Kind::Scalar
            }
        };
        match kind {
            Kind::Key => {}
            Kind::Scalar => {
                if is_key && limits.strict_map_keys {
                    return fail(Error::MapKey, at);
                }
            }
            Kind::Container(n, map) => {
                if is_key && limits.strict_map_keys {
                    return fail(Error::MapKey, at);
                }
                if n > limits.max_items {
                    return fail(Error::TooLong, at);
                }
                // A map of n entries holds 2n values, each at least one
                // byte: refuse impossible counts before walking them.
                let values = if map { n.saturating_mul(2) } else { n };
                if values > len - pos {
                    return Err(truncated);
                }
                // Every open container counts, this one included (an empty
                // one too, as in Python's unpacker).
                if stack.len() >= max_depth {
                    return fail(Error::TooDeep, at);
                }
                if values > 0 {
                    // Cannot fail: stack.len() < max_depth <= capacity.
                    stack
                        .push(Level { left, is_map })
                        .or_else(|_| fail(Error::TooDeep, at))?;
                    left = values;
                    is_map = map;
                    continue;
                }
            }
        }
        // One value done: close every container it completes.
        while left == 0 {
            match stack.pop() {
                Some(parent) => {
                    left = parent.left;
                    is_map = parent.is_map;
                }
                None if pos == len => return Ok(()),
                None => return fail(Error::TrailingBytes, pos),
            }
        }
    }
}

/// What [`walk`] read: a scalar that may be a map key (str, bin), one that
/// may not, or a container header with its item count and map flag.
enum Kind {
    Key,
    Scalar,
    Container(usize, bool),
}

/// Reads a `width`-byte big-endian length at `*pos` (1, 2 or 4 bytes).
#[inline(always)]
fn be(bytes: &[u8], pos: &mut usize, width: usize) -> Option<usize> {
    let b = take(bytes, pos, width)?;
    let v = b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
    usize::try_from(v).ok()
}

/// The `n` bytes at `*pos`, advancing past them; `None` if fewer remain.
#[inline(always)]
fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = bytes.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// One MessagePack value borrowed from a validated payload.
///
/// Obtain one with [`Value::parse`] (which runs [`validate`] first); nested
/// arrays and maps are lazy views ([`ArrayRef`], [`MapRef`]) that read their
/// items on demand, so parsing is one validation pass plus the top-level
/// header, whatever the payload's size.
///
/// Integers are normalised: every non-negative integer is [`Value::UInt`] and
/// every negative one [`Value::Int`], whichever width encoded them (Python
/// chooses the width by magnitude, so matching on the width would be fragile).
/// The `as_*` helpers convert across representations where no information is
/// lost.
///
/// ```
/// use banyan_core::msg::{Limits, Value};
/// // msgpack.packb({'left': 0.5, 'right': -1}, use_bin_type=True)
/// let bytes = b"\x82\xa4left\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00\xa5right\xff";
/// let map = Value::parse(bytes, &Limits::DEFAULT).unwrap().as_map().unwrap();
/// assert_eq!(map.get("left").and_then(|v| v.as_f64()), Some(0.5));
/// assert_eq!(map.get("right").and_then(|v| v.as_i64()), Some(-1));
/// for (key, value) in map.iter() {
///     assert!(key.as_str().is_some() && value.as_f64().is_some());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Value<'a> {
    /// `nil` (Python `None`).
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer (any encoding).
    Int(i64),
    /// A non-negative integer (any encoding).
    UInt(u64),
    /// A float32.
    F32(f32),
    /// A float64 (what Python writes for every `float`).
    F64(f64),
    /// A str (Python `str`), checked UTF-8.
    Str(&'a str),
    /// A bin (Python `bytes`).
    Bin(&'a [u8]),
    /// An array (Python `list` or `tuple`).
    Array(ArrayRef<'a>),
    /// A map (Python `dict`).
    Map(MapRef<'a>),
    /// An extension value: its type tag and data.
    Ext(i8, &'a [u8]),
}

impl<'a> Value<'a> {
    /// Validates `bytes` with `limits` and returns its one value.
    ///
    /// # Errors
    /// As [`validate`].
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Self, Error> {
        validate(bytes, limits)?;
        let mut cur = Cursor::new(bytes);
        // A validated payload is one value with nothing after it, so a
        // top-level container's items are the rest of the input: no need to
        // skip over them to find its end.
        let v = match cur.head(usize::MAX)? {
            Head::Array(len) => Value::Array(ArrayRef {
                bytes: &bytes[cur.pos..],
                len,
            }),
            Head::Map(len) => Value::Map(MapRef {
                bytes: &bytes[cur.pos..],
                len,
            }),
            _ => {
                cur.pos = 0;
                read_value(&mut cur).ok_or(Error::Truncated)?
            }
        };
        Ok(v)
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<MapRef<'a>> {
        match *self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<ArrayRef<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is a str.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a bin.
    pub fn as_bin(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The boolean, if this is a bool (integers are not booleans here).
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer as `i64`, if this is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    /// The integer as `u64`, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(u) => Some(u),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a float or an integer (large integers
    /// round to the nearest `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(f) => Some(f.into()),
            Value::F64(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            _ => None,
        }
    }

    /// `true` for `nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

/// Reads one value from validated input; `None` only if the input was not
/// validated (never panics either way).
#[inline]
fn read_value<'a>(cur: &mut Cursor<'a>) -> Option<Value<'a>> {
    let v = match cur.head(usize::MAX).ok()? {
        Head::Nil => Value::Nil,
        Head::Bool(b) => Value::Bool(b),
        Head::Int(i) => Value::Int(i),
        Head::UInt(u) => Value::UInt(u),
        Head::F32(f) => Value::F32(f),
        Head::F64(f) => Value::F64(f),
        Head::Str(s) => Value::Str(core::str::from_utf8(s).ok()?),
        Head::Bin(b) => Value::Bin(b),
        Head::Ext(t, d) => Value::Ext(t, d),
        Head::Array(len) => {
            let start = cur.pos;
            cur.skip(len).ok()?;
            Value::Array(ArrayRef {
                bytes: &cur.bytes[start..cur.pos],
                len,
            })
        }
        Head::Map(len) => {
            let start = cur.pos;
            cur.skip(len.checked_mul(2)?).ok()?;
            Value::Map(MapRef {
                bytes: &cur.bytes[start..cur.pos],
                len,
            })
        }
    };
    Some(v)
}

/// A borrowed, validated MessagePack array: `len` values in `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ArrayRef<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> ArrayRef<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements, back to back (without the array header).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The elements in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cur: Cursor::new(self.bytes),
            left: self.len,
        }
    }

    /// The element at `index` (walks the elements before it).
    pub fn get(&self, index: usize) -> Option<Value<'a>> {
        self.iter().nth(index)
    }
}

impl<'a> IntoIterator for ArrayRef<'a> {
    type Item = Value<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over an [`ArrayRef`]'s elements.
pub struct ArrayIter<'a> {
    cur: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = read_value(&mut self.cur);
        if v.is_none() {
            self.left = 0;
        }
        v
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A borrowed, validated MessagePack map: `len` key/value pairs in `bytes`.
///
/// Keys may repeat in MessagePack; Python keeps the **last** one when it
/// builds a `dict`, and so does [`MapRef::get`]. [`MapRef::iter`] yields every
/// pair in wire order, duplicates included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MapRef<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> MapRef<'a> {
    /// Number of entries (duplicates counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded entries, back to back (without the map header).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The `(key, value)` pairs in wire order.
    pub fn iter(&self) -> MapIter<'a> {
        MapIter {
            cur: Cursor::new(self.bytes),
            left: self.len,
        }
    }

    /// The value of the last entry whose key is the str `key` (Python `dict`
    /// semantics), or `None`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.iter()
            .filter(|(k, _)| k.as_str() == Some(key))
            .last()
            .map(|(_, v)| v)
    }

    /// `true` if some entry has the str key `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.iter().any(|(k, _)| k.as_str() == Some(key))
    }
}

impl<'a> IntoIterator for MapRef<'a> {
    type Item = (Value<'a>, Value<'a>);
    type IntoIter = MapIter<'a>;
    fn into_iter(self) -> MapIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`MapRef`]'s `(key, value)` pairs.
pub struct MapIter<'a> {
    cur: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for MapIter<'a> {
    type Item = (Value<'a>, Value<'a>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pair = read_value(&mut self.cur).zip(read_value(&mut self.cur));
        if pair.is_none() {
            self.left = 0;
        }
        pair
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}
