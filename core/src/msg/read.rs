//! The bounded validator and the zero-copy [`Value`] reader.
//!
//! Both read MessagePack through one header decoder ([`Cursor::head`]),
//! driven by a 32-byte table for the `0xc0..=0xdf` markers, so the format's
//! grammar exists once in the binary (the Pico firmware's flash budget counts
//! every copy).

use super::{Error, ErrorAt, Limits};
use heapless::vec::VecView;

/// What a header is; [`Head::data`] and [`Head::n`] carry the rest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Nil,
    False,
    True,
    /// An unsigned integer: `data` is its big-endian bytes (a positive
    /// fixint is its own marker byte).
    UInt,
    /// A signed integer: `data` is its big-endian two's complement bytes (a
    /// negative fixint is its own marker byte).
    Int,
    /// A float: `data` is its 4 or 8 big-endian bytes.
    Float,
    Str,
    Bin,
    /// An extension: its type in [`Head::ty`], its payload in `data`.
    Ext,
    /// An array of [`Head::n`] elements (not read).
    Array,
    /// A map of [`Head::n`] entries (not read).
    Map,
    /// `0xc1`, never used.
    Reserved,
}

/// One MessagePack header with its immediate payload; containers carry their
/// item count (array elements, map entries), not their contents.
#[derive(Clone, Copy)]
struct Head<'a> {
    tag: Tag,
    /// A container's item count; else the length of `data`.
    n: usize,
    /// A scalar's bytes (see [`Tag`]); empty for nil, bools and containers.
    data: &'a [u8],
    /// An extension's type; 0 otherwise.
    ty: i8,
}

/// A [`MARKERS`] entry whose low 3 bits give the width of a big-endian
/// length (or count) field that follows the marker.
const LEN: u8 = 0x08;

/// The `0xc0..=0xdf` markers: the [`Tag`] in the high nibble; in the low
/// nibble, with [`LEN`] a length field of `SIZE[k]` bytes follows, without
/// it the value has `SIZE[k]` bytes of fixed-size data (`k` = bits 0–2).
const MARKERS: [u8; 32] = {
    const fn e(tag: Tag, code: u8) -> u8 {
        ((tag as u8) << 4) | code
    }
    [
        e(Tag::Nil, 0),         // c0
        e(Tag::Reserved, 0),    // c1
        e(Tag::False, 0),       // c2
        e(Tag::True, 0),        // c3
        e(Tag::Bin, LEN | 1),   // c4 bin8
        e(Tag::Bin, LEN | 2),   // c5 bin16
        e(Tag::Bin, LEN | 3),   // c6 bin32
        e(Tag::Ext, LEN | 1),   // c7 ext8
        e(Tag::Ext, LEN | 2),   // c8 ext16
        e(Tag::Ext, LEN | 3),   // c9 ext32
        e(Tag::Float, 3),       // ca float32
        e(Tag::Float, 4),       // cb float64
        e(Tag::UInt, 1),        // cc uint8
        e(Tag::UInt, 2),        // cd uint16
        e(Tag::UInt, 3),        // ce uint32
        e(Tag::UInt, 4),        // cf uint64
        e(Tag::Int, 1),         // d0 int8
        e(Tag::Int, 2),         // d1 int16
        e(Tag::Int, 3),         // d2 int32
        e(Tag::Int, 4),         // d3 int64
        e(Tag::Ext, 1),         // d4 fixext1
        e(Tag::Ext, 2),         // d5 fixext2
        e(Tag::Ext, 3),         // d6 fixext4
        e(Tag::Ext, 4),         // d7 fixext8
        e(Tag::Ext, 5),         // d8 fixext16
        e(Tag::Str, LEN | 1),   // d9 str8
        e(Tag::Str, LEN | 2),   // da str16
        e(Tag::Str, LEN | 3),   // db str32
        e(Tag::Array, LEN | 2), // dc array16
        e(Tag::Array, LEN | 3), // dd array32
        e(Tag::Map, LEN | 2),   // de map16
        e(Tag::Map, LEN | 3),   // df map32
    ]
};

/// The [`Tag`]s by number, to decode [`MARKERS`] without `unsafe`.
const TAGS: [Tag; 12] = [
    Tag::Nil,
    Tag::False,
    Tag::True,
    Tag::UInt,
    Tag::Int,
    Tag::Float,
    Tag::Str,
    Tag::Bin,
    Tag::Ext,
    Tag::Array,
    Tag::Map,
    Tag::Reserved,
];

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
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, advancing past them.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// Reads one header. `max_len` bounds str/bin/ext payloads (checked
    /// before the bounds check, so a huge declared length is `TooLong`).
    ///
    /// The one MessagePack decoder of this crate: [`walk`] (the validator)
    /// and the [`Value`] reader both call it.
    #[inline]
    fn head(&mut self, max_len: usize) -> Result<Head<'a>, Error> {
        let at = self.pos;
        let marker = *self.bytes.get(at).ok_or(Error::Truncated)?;
        self.pos = at + 1;
        let (tag, mut n) = match marker {
            // A fixint is its own data: step back onto it.
            0x00..=0x7f => {
                self.pos = at;
                (Tag::UInt, 1)
            }
            0xe0..=0xff => {
                self.pos = at;
                (Tag::Int, 1)
            }
            0x80..=0x8f => (Tag::Map, usize::from(marker & 0x0f)),
            0x90..=0x9f => (Tag::Array, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (Tag::Str, usize::from(marker & 0x1f)),
            0xc0..=0xdf => {
                let e = MARKERS[usize::from(marker & 0x1f)];
                let tag = TAGS[usize::from(e >> 4) % TAGS.len()];
                let size = (1usize << (e & 7)) >> 1;
                let n = if e & LEN != 0 {
                    let field = self.take(size)?;
                    usize::try_from(be(field)).map_err(|_| Error::TooLong)?
                } else {
                    size
                };
                (tag, n)
            }
        };
        let mut ty = 0;
        let data: &[u8] = match tag {
            Tag::Array | Tag::Map => &[],
            Tag::Reserved => return Err(Error::ReservedMarker),
            Tag::Str | Tag::Bin | Tag::Ext => {
                if tag == Tag::Ext {
                    ty = self.take(1)?.first().map_or(0, |&t| t as i8);
                }
                if n > max_len {
                    return Err(Error::TooLong);
                }
                self.take(n)?
            }
            _ => {
                let d = self.take(n)?;
                n = d.len();
                d
            }
        };
        Ok(Head { tag, n, data, ty })
    }

    /// Skips `count` whole values without recursion: a counter of values
    /// still to skip replaces the stack (a container adds its items to it).
    fn skip(&mut self, count: usize) -> Result<(), Error> {
        let mut pending = count;
        while pending > 0 {
            pending -= 1;
            let h = self.head(usize::MAX)?;
            let items = match h.tag {
                Tag::Array => h.n,
                Tag::Map => h.n.checked_mul(2).ok_or(Error::TooLong)?,
                _ => 0,
            };
            pending = pending.checked_add(items).ok_or(Error::TooLong)?;
            // Every pending value needs at least one more byte.
            if pending > self.remaining() {
                return Err(Error::Truncated);
            }
        }
        Ok(())
    }
}

/// `data` as a big-endian unsigned number (at most 8 bytes are ever passed).
#[inline(always)]
fn be(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// The extension type of MessagePack timestamps.
const TIMESTAMP: i8 = -1;

/// A timestamp extension must be 4, 8 or 12 bytes with nanoseconds below
/// 10^9; Python's `unpackb` raises `ValueError` on anything else.
fn check_timestamp(d: &[u8]) -> Result<(), Error> {
    let nanos = match d.len() {
        4 => 0,
        8 => be(d) >> 34,
        12 => be(d.get(..4).ok_or(Error::InvalidTimestamp)?),
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
/// `min(max_depth, MAX_DEPTH)` levels). One copy serves every depth.
fn walk(bytes: &[u8], limits: &Limits, stack: &mut VecView<Level>) -> Result<(), ErrorAt> {
    let len = bytes.len();
    let max_depth = limits.max_depth.min(stack.capacity());
    let fail = |error, offset| Err(ErrorAt { error, offset });
    let mut cur = Cursor::new(bytes);
    // The innermost open container; the top level is a virtual array of one.
    let mut left: usize = 1;
    let mut is_map = false;
    loop {
        let at = cur.pos;
        let head = cur.head(limits.max_len).map_err(|error| ErrorAt {
            error,
            // Where more bytes were needed, the input's end.
            offset: if error == Error::Truncated { len } else { at },
        })?;
        let is_key = is_map && left.is_multiple_of(2);
        left -= 1;
        // A scalar's content is checked before its eligibility as a key, as
        // Python does; containers only declare their item count.
        match head.tag {
            Tag::Str => {
                let s = head.data;
                if !s.is_ascii() && core::str::from_utf8(s).is_err() {
                    return fail(Error::InvalidUtf8, at);
                }
            }
            Tag::Bin => {}
            tag => {
                if tag == Tag::Ext {
                    if head.ty == TIMESTAMP {
                        check_timestamp(head.data).or_else(|e| fail(e, at))?;
                    } else if head.ty < 0 {
                        return fail(Error::ReservedExt, at);
                    }
                }
                if is_key && limits.strict_map_keys {
                    return fail(Error::MapKey, at);
                }
                let map = tag == Tag::Map;
                if map || tag == Tag::Array {
                    let n = head.n;
                    if n > limits.max_items {
                        return fail(Error::TooLong, at);
                    }
                    // A map of n entries holds 2n values, each at least one
                    // byte: refuse impossible counts before walking them.
                    let values = if map { n.saturating_mul(2) } else { n };
                    if values > cur.remaining() {
                        return fail(Error::Truncated, len);
                    }
                    // Every open container counts, this one included (an
                    // empty one too, as in Python's unpacker).
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
        }
        // One value done: close every container it completes.
        while left == 0 {
            match stack.pop() {
                Some(parent) => {
                    left = parent.left;
                    is_map = parent.is_map;
                }
                None if cur.pos == len => return Ok(()),
                None => return fail(Error::TrailingBytes, cur.pos),
            }
        }
    }
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
        let head = cur.head(usize::MAX)?;
        let rest = bytes.get(cur.pos..).unwrap_or_default();
        let v = match head.tag {
            Tag::Array => Value::Array(ArrayRef {
                bytes: rest,
                len: head.n,
            }),
            Tag::Map => Value::Map(MapRef {
                bytes: rest,
                len: head.n,
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
#[expect(
    clippy::cast_possible_truncation,
    reason = "`head.n` is at most 8 (the header table), and a 4-byte float's value fits a u32"
)]
fn read_value<'a>(cur: &mut Cursor<'a>) -> Option<Value<'a>> {
    let head = cur.head(usize::MAX).ok()?;
    let d = head.data;
    let v = match head.tag {
        Tag::Nil | Tag::Reserved => Value::Nil,
        Tag::False => Value::Bool(false),
        Tag::True => Value::Bool(true),
        Tag::UInt => Value::UInt(be(d)),
        Tag::Int => {
            // Sign-extend from the encoded width (1 to 8 bytes).
            let shift = 64u32.wrapping_sub(8 * head.n as u32);
            let v = ((be(d) << (shift & 63)) as i64) >> (shift & 63);
            // Negative integers are `Int`, non-negative ones `UInt`,
            // whatever the encoding.
            match u64::try_from(v) {
                Ok(u) => Value::UInt(u),
                Err(_) => Value::Int(v),
            }
        }
        Tag::Float if head.n == 4 => Value::F32(f32::from_bits(be(d) as u32)),
        Tag::Float => Value::F64(f64::from_bits(be(d))),
        Tag::Str => Value::Str(core::str::from_utf8(d).ok()?),
        Tag::Bin => Value::Bin(d),
        Tag::Ext => Value::Ext(head.ty, d),
        Tag::Array | Tag::Map => {
            let len = head.n;
            let values = if head.tag == Tag::Map {
                len.checked_mul(2)?
            } else {
                len
            };
            let start = cur.pos;
            cur.skip(values).ok()?;
            let bytes = cur.bytes.get(start..cur.pos)?;
            if head.tag == Tag::Map {
                Value::Map(MapRef { bytes, len })
            } else {
                Value::Array(ArrayRef { bytes, len })
            }
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
        ArrayIter(Walk::new(self.bytes, self.len))
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

/// The walk of [`ArrayIter`] and [`MapIter`]: `left` items (an element, or
/// a key/value pair) still to read from `cur`.
struct Walk<'a> {
    cur: Cursor<'a>,
    left: usize,
}

impl<'a> Walk<'a> {
    fn new(bytes: &'a [u8], len: usize) -> Self {
        Walk {
            cur: Cursor::new(bytes),
            left: len,
        }
    }

    /// The next item, read by `read`; after a failed read (input that was
    /// not validated) the walk ends.
    #[inline]
    fn next_with<T>(&mut self, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = read(&mut self.cur);
        if item.is_none() {
            self.left = 0;
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Iterator over an [`ArrayRef`]'s elements.
pub struct ArrayIter<'a>(Walk<'a>);

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        self.0.next_with(read_value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
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
        MapIter(Walk::new(self.bytes, self.len))
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
pub struct MapIter<'a>(Walk<'a>);

impl<'a> Iterator for MapIter<'a> {
    type Item = (Value<'a>, Value<'a>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_with(|cur| read_value(cur).zip(read_value(cur)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
