//! A bounds-checked reader of little-endian fields, for the binary
//! protocols of the project: the serial link's frame payloads
//! ([`link::wire`](crate::link::wire)) and the discovery datagrams of the
//! `banyan-discovery` crate.
//!
//! # When to use it
//!
//! Parsing a fixed layout of integers, `str8` strings (a length byte, then
//! UTF-8) and a trailing byte run from bytes that came off a wire: every
//! read checks the length first, so nothing panics on any input.
//!
//! # When not to use it
//!
//! MessagePack payloads have their own bounded reader in [`msg`](crate::msg).
//!
//! ```
//! use banyan_core::bytes::{Error, Reader};
//!
//! let mut r = Reader::new(b"\x01\x02\x03\x02hi!");
//! assert_eq!(r.u8(), Ok(1));
//! assert_eq!(r.u16(), Ok(0x0302));
//! assert_eq!(r.str8(0, 8), Ok("hi"));
//! assert_eq!(r.end(), Err(Error::TrailingBytes));
//! assert_eq!(r.rest(), b"!");
//! assert_eq!(r.u8(), Err(Error::Truncated));
//! ```

use core::fmt;

/// What a [`Reader`] refuses. Each protocol maps it into its own error.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The bytes end before the field does.
    Truncated,
    /// Bytes are left after the last field.
    TrailingBytes,
    /// A string is not UTF-8.
    NotUtf8,
    /// A string's length is outside the range the field allows.
    Length,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::TrailingBytes => "trailing bytes",
            Error::NotUtf8 => "string is not utf-8",
            Error::Length => "string length out of range",
        })
    }
}

impl core::error::Error for Error {}

/// Reads fields from the front of a byte slice; what is read is gone.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `data`.
    pub const fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`] if fewer are left (nothing is consumed).
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.data.len() < n {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?.try_into().map_err(|_| Error::Truncated)
    }

    /// A byte.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// A little-endian `u16`.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `str8`: a length byte, then that many bytes of UTF-8, of `min` to
    /// `max` bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Length`] (checked before the bytes
    /// are read), [`Error::NotUtf8`].
    pub fn str8(&mut self, min: usize, max: usize) -> Result<&'a str, Error> {
        let n = usize::from(self.u8()?);
        if n < min || n > max {
            return Err(Error::Length);
        }
        core::str::from_utf8(self.take(n)?).map_err(|_| Error::NotUtf8)
    }

    /// Every byte left (the reader is then empty).
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }

    /// Every byte left as UTF-8 of at most `max` bytes (the reader is then
    /// empty).
    ///
    /// # Errors
    /// [`Error::Length`], [`Error::NotUtf8`].
    pub fn rest_str(&mut self, max: usize) -> Result<&'a str, Error> {
        let rest = self.rest();
        if rest.len() > max {
            return Err(Error::Length);
        }
        core::str::from_utf8(rest).map_err(|_| Error::NotUtf8)
    }

    /// Checks that every byte was read.
    ///
    /// # Errors
    /// [`Error::TrailingBytes`].
    pub fn end(&self) -> Result<(), Error> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes)
        }
    }
}
