//! The bytes queued for one connection, sans-IO: control bytes (handshake,
//! commands) and whole messages, with the range of every queued message so
//! that a high-water mark counts messages exactly and a connection that
//! closes knows how many messages it cut off. The caller writes
//! [`Output::pending`] to its socket and reports what went with
//! [`Output::advance`]; [`Output::settle`] after each round of writes gives
//! memory back. Used by the native backplane and the services broker's
//! native ROUTER.

use std::collections::VecDeque;

/// Output written is cut from the front of the buffer once this large (and
/// always when everything was written).
const COMPACT_AT: usize = 1 << 20;
/// An empty buffer larger than this gives its memory back (smaller ones are
/// kept for the next messages).
const KEEP: usize = 4 << 10;

/// One connection's output queue (see the [module docs](self)).
#[derive(Debug, Default, Clone)]
pub struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Bytes written and appended since the connection opened.
    written_total: u64,
    appended_total: u64,
    /// Range (in appended bytes) of every message not yet fully written.
    queued: VecDeque<(u64, u64)>,
}

impl Output {
    /// An empty queue.
    pub fn new() -> Output {
        Output::default()
    }

    /// Appends bytes that are not a message (handshake, commands).
    pub fn push_control(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.appended_total += bytes.len() as u64;
    }

    /// Appends one whole message, already framed.
    pub fn push_message(&mut self, bytes: &[u8]) {
        self.push_message_with(|buf| buf.extend_from_slice(bytes));
    }

    /// Appends one whole message that `write` frames at the end of the
    /// buffer it is given (it must only append).
    pub fn push_message_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.appended_total;
        let before = self.buf.len();
        write(&mut self.buf);
        self.appended_total += self.buf.len().saturating_sub(before) as u64;
        self.queued.push_back((start, self.appended_total));
    }

    /// Bytes appended and not yet written.
    pub fn unsent(&self) -> u64 {
        self.appended_total - self.written_total
    }

    /// Messages queued and not yet fully written.
    pub fn queue_len(&mut self) -> usize {
        while self
            .queued
            .front()
            .is_some_and(|&(_, e)| e <= self.written_total)
        {
            self.queued.pop_front();
        }
        self.queued.len()
    }

    /// Message ranges held (written ones included until the next
    /// [`Output::queue_len`] or [`Output::settle`]), for memory accounting.
    pub fn ranges(&self) -> usize {
        self.queued.len()
    }

    /// Removes the newest queued message if nothing of it was written and
    /// nothing was appended after it; returns its length.
    pub fn pop_newest(&mut self) -> Option<usize> {
        let &(start, end) = self.queued.back()?;
        if end != self.appended_total || start < self.written_total {
            return None;
        }
        let len = (end - start) as usize;
        self.buf.truncate(self.buf.len().saturating_sub(len));
        self.appended_total = start;
        self.queued.pop_back();
        Some(len)
    }

    /// Some bytes wait to be written.
    pub fn has_output(&self) -> bool {
        self.sent < self.buf.len()
    }

    /// The bytes to write next.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.sent..).unwrap_or_default()
    }

    /// `n` bytes of [`Output::pending`] were written.
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.sent);
        self.sent += n;
        self.written_total += n as u64;
    }

    /// After a round of writes: drops what was written from the buffer when
    /// everything was (giving a large buffer's memory back) or when it is
    /// large, and forgets the messages fully written.
    pub fn settle(&mut self) {
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            if self.buf.capacity() > KEEP {
                self.buf = Vec::new();
            }
        } else if self.sent >= COMPACT_AT {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.queue_len();
        if self.queued.is_empty() && self.queued.capacity() > 1024 {
            self.queued.shrink_to(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_until_written() {
        let mut o = Output::new();
        o.push_control(b"hi");
        o.push_message(b"abc");
        o.push_message_with(|b| b.extend_from_slice(b"defg"));
        assert_eq!((o.unsent(), o.queue_len()), (9, 2));
        assert_eq!(o.pending(), b"hiabcdefg");
        o.advance(4);
        o.settle();
        assert_eq!((o.unsent(), o.queue_len()), (5, 2));
        o.advance(1);
        assert_eq!(o.queue_len(), 1);
        assert_eq!(o.pending(), b"defg");
        // Part of the newest was not written: it can be taken back.
        assert_eq!(o.pop_newest(), Some(4));
        assert_eq!(o.pop_newest(), None);
        assert!(!o.has_output());
        o.push_message(b"x");
        o.advance(100);
        o.settle();
        assert_eq!((o.unsent(), o.queue_len(), o.pending()), (0, 0, &b""[..]));
    }

    #[test]
    fn a_partly_written_message_is_not_taken_back() {
        let mut o = Output::new();
        o.push_message(b"abc");
        o.advance(1);
        assert_eq!(o.pop_newest(), None);
        o.push_control(b"z");
        o.push_message(b"q");
        o.push_control(b"z");
        assert_eq!(o.pop_newest(), None, "bytes after it");
    }
}
