//! A MessagePack writer over a byte slice, for payloads with dynamic keys.

use super::Error;
use core::fmt;
use serde::Serialize;

/// Writes MessagePack values into a `&mut [u8]`, each in the encoding
/// Python's `packb(use_bin_type=True)` would choose.
///
/// Containers are written as a header with their item count followed by the
/// items, so the count must be known first (it is, for anything built from a
/// slice). Every method returns `&mut Self` for chaining; on
/// [`Error::BufferFull`] nothing of that call is written and the length is
/// unchanged, so a caller may stop and report the error.
///
/// ```
/// use banyan_core::msg::Writer;
/// let motors = [("left", 0.5), ("right", -0.5)];
/// let mut buf = [0u8; 64];
/// let mut w = Writer::new(&mut buf);
/// w.map(2)?.str("report")?.str("state")?.str("motors")?.map(motors.len())?;
/// for (name, speed) in motors {
///     w.str(name)?.float(speed)?;
/// }
/// let n = w.len();
/// // msgpack.packb({'report': 'state', 'motors': {'left': 0.5, 'right': -0.5}}, use_bin_type=True)
/// assert_eq!(
///     &buf[..n],
///     b"\x82\xa6report\xa5state\xa6motors\x82\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\
///       \xa5right\xcb\xbf\xe0\0\0\0\0\0\0"
/// );
/// # Ok::<(), banyan_core::msg::Error>(())
/// ```
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    /// A writer that starts at the beginning of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn put(&mut self, parts: &[&[u8]]) -> Result<&mut Self, Error> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let end = self.len.checked_add(total).ok_or(Error::BufferFull)?;
        let out = self.buf.get_mut(self.len..end).ok_or(Error::BufferFull)?;
        let mut at = 0;
        for p in parts {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.len = end;
        Ok(self)
    }

    /// Copies `bytes` verbatim: for constant, already encoded fragments
    /// (fixed keys of a report) that the caller knows to be well-formed.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<&mut Self, Error> {
        self.put(&[bytes])
    }

    /// Writes `nil` (Python `None`).
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn nil(&mut self) -> Result<&mut Self, Error> {
        self.put(&[&[0xc0]])
    }

    /// Writes `true` or `false`.
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn bool(&mut self, v: bool) -> Result<&mut Self, Error> {
        self.put(&[&[if v { 0xc3 } else { 0xc2 }]])
    }

    /// Writes an integer in its smallest encoding: non-negative values as
    /// positive fixint/uint8/16/32/64, negative ones as negative
    /// fixint/int8/16/32/64 — exactly as Python does.
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn int(&mut self, v: i64) -> Result<&mut Self, Error> {
        match u64::try_from(v) {
            Ok(u) => self.uint(u),
            Err(_) => {
                if v >= -32 {
                    // A negative fixint: the low byte of the two's complement.
                    self.put(&[&[v.to_le_bytes()[0]]])
                } else if let Ok(v) = i8::try_from(v) {
                    self.put(&[&[0xd0], &v.to_be_bytes()])
                } else if let Ok(v) = i16::try_from(v) {
                    self.put(&[&[0xd1], &v.to_be_bytes()])
                } else if let Ok(v) = i32::try_from(v) {
                    self.put(&[&[0xd2], &v.to_be_bytes()])
                } else {
                    self.put(&[&[0xd3], &v.to_be_bytes()])
                }
            }
        }
    }

    /// Writes a non-negative integer in its smallest encoding.
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn uint(&mut self, v: u64) -> Result<&mut Self, Error> {
        if v < 0x80 {
            // A positive fixint.
            self.put(&[&[v.to_le_bytes()[0]]])
        } else if let Ok(v) = u8::try_from(v) {
            self.put(&[&[0xcc, v]])
        } else if let Ok(v) = u16::try_from(v) {
            self.put(&[&[0xcd], &v.to_be_bytes()])
        } else if let Ok(v) = u32::try_from(v) {
            self.put(&[&[0xce], &v.to_be_bytes()])
        } else {
            self.put(&[&[0xcf], &v.to_be_bytes()])
        }
    }

    /// Writes a float64, as Python writes every `float`. Pass an `f32`
    /// with `.into()`: the widening is exact, so `0.3f32` is written as
    /// `0.30000001192092896`.
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn float(&mut self, v: f64) -> Result<&mut Self, Error> {
        self.put(&[&[0xcb], &v.to_be_bytes()])
    }

    /// Writes a float32 (Python writes these only with `use_single_float=True`).
    ///
    /// # Errors
    /// [`Error::BufferFull`].
    pub fn f32(&mut self, v: f32) -> Result<&mut Self, Error> {
        self.put(&[&[0xca], &v.to_be_bytes()])
    }

    fn len_header(
        &mut self,
        n: usize,
        fix: Option<(u8, usize)>,
        markers: [u8; 3],
        body: &[u8],
    ) -> Result<&mut Self, Error> {
        if let Some((base, max)) = fix {
            if let Some(n) = u8::try_from(n).ok().filter(|&n| usize::from(n) <= max) {
                return self.put(&[&[base | n], body]);
            }
        }
        if let (Ok(n8), true) = (u8::try_from(n), markers[0] != 0) {
            self.put(&[&[markers[0], n8], body])
        } else if let Ok(n16) = u16::try_from(n) {
            self.put(&[&[markers[1]], &n16.to_be_bytes(), body])
        } else if let Ok(n32) = u32::try_from(n) {
            self.put(&[&[markers[2]], &n32.to_be_bytes(), body])
        } else {
            Err(Error::Unencodable)
        }
    }

    /// Writes a str in its smallest encoding (fixstr/str8/16/32).
    ///
    /// # Errors
    /// [`Error::BufferFull`]; [`Error::Unencodable`] beyond 4 GiB.
    pub fn str(&mut self, s: &str) -> Result<&mut Self, Error> {
        self.len_header(s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb], s.as_bytes())
    }

    /// Writes a bin (Python `bytes`) in its smallest encoding (bin8/16/32).
    ///
    /// # Errors
    /// [`Error::BufferFull`]; [`Error::Unencodable`] beyond 4 GiB.
    pub fn bin(&mut self, b: &[u8]) -> Result<&mut Self, Error> {
        self.len_header(b.len(), None, [0xc4, 0xc5, 0xc6], b)
    }

    /// Writes an array header for `len` elements; write the elements next.
    ///
    /// # Errors
    /// [`Error::BufferFull`]; [`Error::Unencodable`] beyond `u32::MAX` elements.
    pub fn array(&mut self, len: usize) -> Result<&mut Self, Error> {
        self.len_header(len, Some((0x90, 15)), [0, 0xdc, 0xdd], &[])
    }

    /// Writes a map header for `len` entries; write `len` key/value pairs next.
    ///
    /// # Errors
    /// [`Error::BufferFull`]; [`Error::Unencodable`] beyond `u32::MAX` entries.
    pub fn map(&mut self, len: usize) -> Result<&mut Self, Error> {
        self.len_header(len, Some((0x80, 15)), [0, 0xde, 0xdf], &[])
    }

    /// Copies `value`, one already encoded MessagePack value, verbatim (e.g.
    /// a received payload echoed inside a report), after checking it with
    /// [`validate`](super::validate) and `limits`: the writer never emits a
    /// malformed value. Nesting adds up: a value of depth `d` written inside
    /// a map is at depth `d + 1` of the result, so choose `limits` such that
    /// readers of the result accept it.
    ///
    /// # Errors
    /// Any [`validate`](super::validate) error (nothing is written);
    /// [`Error::BufferFull`].
    pub fn embed(&mut self, value: &[u8], limits: &super::Limits) -> Result<&mut Self, Error> {
        super::validate(value, limits)?;
        self.put(&[value])
    }

    /// Writes the text that `v` displays as a str, without a temporary
    /// buffer (it formats twice: once to count, once to write).
    ///
    /// # Errors
    /// [`Error::BufferFull`]; [`Error::Unencodable`] if the `Display`
    /// implementation fails or prints different text the second time.
    pub fn display(&mut self, v: &dyn fmt::Display) -> Result<&mut Self, Error> {
        let mut count = Count(0);
        fmt::write(&mut count, format_args!("{v}")).map_err(|_| Error::Unencodable)?;
        let n = count.0;
        let start = self.len;
        self.len_header(n, Some((0xa0, 31)), [0xd9, 0xda, 0xdb], &[])?;
        let header_end = self.len;
        let end = match header_end.checked_add(n) {
            Some(end) if end <= self.buf.len() => end,
            _ => {
                self.len = start;
                return Err(Error::BufferFull);
            }
        };
        let mut out = Fill {
            buf: &mut self.buf[header_end..end],
            at: 0,
        };
        let ok = fmt::write(&mut out, format_args!("{v}")).is_ok() && out.at == n;
        if !ok {
            self.len = start;
            return Err(Error::Unencodable);
        }
        self.len = end;
        Ok(self)
    }

    /// Writes any serde value with [`encode`](super::encode)'s rules.
    ///
    /// # Errors
    /// As [`encode`](super::encode).
    pub fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<&mut Self, Error> {
        let n = super::encode(v, &mut self.buf[self.len..])?;
        self.len += n;
        Ok(self)
    }
}

struct Count(usize);

impl fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.checked_add(s.len()).ok_or(fmt::Error)?;
        Ok(())
    }
}

struct Fill<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl fmt::Write for Fill<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.at.checked_add(s.len()).ok_or(fmt::Error)?;
        let out = self.buf.get_mut(self.at..end).ok_or(fmt::Error)?;
        out.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}
