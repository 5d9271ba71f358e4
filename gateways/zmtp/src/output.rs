//! A connection's bytes to send, used by the native backplane and the
//! services broker's native ROUTER: a queue of chunks written with one
//! `writev` per call. Control bytes (handshake, commands) and small
//! messages are copied into owned chunks of up to `OWN_CHUNK` (256 KiB)
//! bytes; a large message received in a buffer of its own can be queued as
//! a shared reference to that buffer ([`Arc`], the backplane does), so that
//! it is never copied in user space however many subscribers it goes to.
//! Bytes written are freed chunk by chunk: nothing is ever moved to the
//! front of a buffer.
//!
//! The range of every queued message is kept, so that a high-water mark
//! counts messages exactly ([`Output::queue_len`]) and a connection that
//! closes knows how many messages it cut off. The caller writes with
//! [`Output::flush_to`] (or [`Output::write_to`]); [`Output::settle`] after
//! each round of writes gives memory back.
//!
//! When a shared buffer's last reference is written, it is offered to a
//! [`Spare`] so that the next large message can be read into it (no new
//! pages to fault in, nothing to zero). A caller that queues no shared
//! buffers passes an empty one, which stays empty.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// An owned chunk is not extended past this many bytes: the next bytes
/// start a new chunk (so that a long queue is freed as it is written).
const OWN_CHUNK: usize = 256 * 1024;
/// An emptied owned chunk is kept for the next bytes while more are queued
/// (a burst reuses its chunks); once the queue is empty, only one up to
/// this capacity (an idle connection keeps no large buffer).
const KEEP_OWN: usize = 4 << 10;
/// Chunks written per `writev` at most.
const MAX_IOV: usize = 64;
/// Bytes of buffers kept in a [`Spare`] at most.
const POOL_BYTES: usize = 64 << 20;

/// One run of bytes to send.
#[derive(Debug)]
enum Chunk {
    /// Bytes copied in (control bytes, small messages); never empty in
    /// the queue.
    Own(Vec<u8>),
    /// `buf[start..end]`: one message in a buffer shared with other
    /// connections' queues.
    Shared {
        buf: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

impl Chunk {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared { buf, start, end } => buf.get(*start..*end).unwrap_or(&[]),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            Chunk::Own(v) => v.len(),
            Chunk::Shared { start, end, .. } => end - start,
        }
    }
}

/// Buffers of large messages that every queue wrote, kept to read the
/// next large messages into (no pages to fault in, nothing to zero): at
/// most `POOL_BYTES` (64 MiB) in all; the owner empties it when idle
/// ([`Spare::clear`]).
#[derive(Debug, Default)]
pub struct Spare {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl Spare {
    /// Keeps `buf` if nobody else holds it and there is room.
    #[inline]
    pub fn offer(&mut self, buf: Arc<Vec<u8>>) {
        if let Ok(v) = Arc::try_unwrap(buf) {
            self.keep(v);
        }
    }

    /// Keeps `v` if there is room.
    #[inline]
    pub fn keep(&mut self, v: Vec<u8>) {
        if self.bytes + v.len() <= POOL_BYTES {
            self.bytes += v.len();
            self.bufs.push(v);
        }
    }

    /// The smallest kept buffer of `want` to `2 × want` bytes (its
    /// initialized length is its `len`), if any: a message never keeps a
    /// much larger buffer alive.
    pub fn take(&mut self, want: usize) -> Option<Vec<u8>> {
        let (i, _) = self
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= want && v.len() / 2 <= want)
            .min_by_key(|(_, v)| v.len())?;
        let v = self.bufs.swap_remove(i);
        self.bytes -= v.len();
        Some(v)
    }

    /// Bytes kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.bytes
    }

    /// Gives the kept buffers back to the allocator.
    pub fn clear(&mut self) {
        self.bufs = Vec::new();
        self.bytes = 0;
    }
}

/// The queue of bytes to send, with the range of every queued message (so
/// that a high-water mark counts messages exactly and a connection that
/// closes knows how many messages it cut off). See the [module docs](self).
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    sent: usize,
    /// An emptied small owned chunk, reused for the next bytes.
    idle: Vec<u8>,
    /// Bytes written and appended since the connection opened.
    written_total: u64,
    appended_total: u64,
    /// Range (in appended bytes) of every message not yet fully written.
    queued: VecDeque<(u64, u64)>,
}

impl Output {
    /// An empty queue.
    #[inline]
    pub fn new() -> Output {
        Output::default()
    }

    /// Some bytes wait to be written.
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Appends bytes that are not a message (handshake, commands).
    #[inline]
    pub fn push_control(&mut self, bytes: &[u8]) {
        self.push(bytes);
        self.appended_total += bytes.len() as u64;
    }

    /// Appends one whole message, already framed (copied).
    #[inline]
    pub fn push_message(&mut self, bytes: &[u8]) {
        let start = self.appended_total;
        self.push_control(bytes);
        self.queued.push_back((start, self.appended_total));
    }

    /// Appends one whole message that `write` frames at the end of the
    /// buffer it is given (it must only append).
    pub fn push_message_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.appended_total;
        let appended = match self.chunks.back_mut() {
            Some(Chunk::Own(v)) if v.len() < OWN_CHUNK => {
                let before = v.len();
                write(v);
                v.len().saturating_sub(before)
            }
            back => {
                let burst = back.is_some();
                let mut v = std::mem::take(&mut self.idle);
                if burst && v.capacity() < OWN_CHUNK {
                    v.reserve(OWN_CHUNK);
                }
                write(&mut v);
                let n = v.len();
                if n > 0 {
                    self.chunks.push_back(Chunk::Own(v));
                } else {
                    self.idle = v;
                }
                n
            }
        };
        self.appended_total += appended as u64;
        self.queued.push_back((start, self.appended_total));
    }

    /// Appends one whole message, already framed in a buffer of its own
    /// (a large message: queued as it is, by reference like a shared one
    /// with a single holder, so never copied, and nothing is appended to
    /// its buffer).
    #[inline]
    pub fn push_owned_message(&mut self, v: Vec<u8>) {
        let len = v.len();
        self.push_shared_message(&Arc::new(v), 0, len);
    }

    /// The oldest queued message is partly written: the next bytes must be
    /// the rest of it (nothing may be written in between).
    #[inline]
    pub fn in_message(&self) -> bool {
        self.queued
            .iter()
            .find(|&&(_, e)| e > self.written_total)
            .is_some_and(|&(s, _)| s < self.written_total)
    }

    /// Drops the rest of a partly written oldest message, as a connection
    /// that broke in the middle of it must (the next connection starts
    /// with the next message); says whether there was one.
    pub fn drop_partial(&mut self) -> bool {
        if !self.in_message() {
            return false;
        }
        let Some(&(_, end)) = self.queued.iter().find(|&&(_, e)| e > self.written_total) else {
            return false;
        };
        let rest = end - self.written_total;
        let mut none = Spare::default();
        self.advance(usize::try_from(rest).unwrap_or(usize::MAX), &mut none);
        self.written_total = end;
        self.queue_len();
        true
    }

    /// Appends one whole message, `buf[start..end]`, by reference.
    #[inline]
    pub fn push_shared_message(&mut self, buf: &Arc<Vec<u8>>, start: usize, end: usize) {
        let begin = self.appended_total;
        self.push_shared(Arc::clone(buf), start, end);
        self.appended_total += (end - start) as u64;
        self.queued.push_back((begin, self.appended_total));
    }

    /// Bytes appended and not yet written.
    #[inline]
    pub fn unsent(&self) -> u64 {
        self.appended_total - self.written_total
    }

    /// The queue holds `hwm` messages (0 or less: no limit) or `max_bytes`
    /// bytes unsent (0: no limit): a high-water mark refuses the next
    /// message.
    #[inline]
    pub fn is_full(&mut self, hwm: i32, max_bytes: usize) -> bool {
        (hwm > 0 && self.queue_len() >= hwm as usize)
            || (max_bytes > 0 && self.unsent() >= max_bytes as u64)
    }

    /// Messages queued and not yet fully written.
    #[inline]
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
    #[inline]
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
        if !self.truncate_back(len) {
            return None;
        }
        self.appended_total = start;
        self.queued.pop_back();
        Some(len)
    }

    /// After a round of writes: forgets the messages fully written; an
    /// empty queue keeps no large buffer.
    #[inline]
    pub fn settle(&mut self) {
        if self.chunks.is_empty() && self.idle.capacity() > KEEP_OWN {
            self.idle = Vec::new();
        }
        self.queue_len();
        if self.queued.is_empty() && self.queued.capacity() > 1024 {
            self.queued.shrink_to(64);
        }
    }

    /// Appends a copy of `bytes`.
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let burst = match self.chunks.back_mut() {
            Some(Chunk::Own(v)) if v.len() < OWN_CHUNK => {
                v.extend_from_slice(bytes);
                return;
            }
            Some(_) => true,
            None => false,
        };
        let mut v = std::mem::take(&mut self.idle);
        if burst && v.capacity() < OWN_CHUNK {
            // More than a chunk is queued: take a whole chunk at once
            // rather than growing one from small again.
            v.reserve(OWN_CHUNK);
        }
        v.extend_from_slice(bytes);
        self.chunks.push_back(Chunk::Own(v));
    }

    /// Appends `buf[start..end]` without copying it.
    #[inline]
    fn push_shared(&mut self, buf: Arc<Vec<u8>>, start: usize, end: usize) {
        if start < end && end <= buf.len() {
            self.chunks.push_back(Chunk::Shared { buf, start, end });
        }
    }

    /// Removes the last `len` bytes appended if they are the end of one
    /// chunk and none of them was written; says whether it did.
    fn truncate_back(&mut self, len: usize) -> bool {
        let only = self.chunks.len() == 1;
        let sent = self.sent;
        let Some(back) = self.chunks.back_mut() else {
            return false;
        };
        let written = if only { sent } else { 0 };
        let emptied = match back {
            Chunk::Own(v) => {
                if v.len() < len || v.len() - len < written {
                    return false;
                }
                v.truncate(v.len() - len);
                // All that is left of it was written (it is the front
                // chunk): it goes too, else the queue would look non-empty
                // with nothing to write (a write of 0 bytes, taken for a
                // closed socket).
                v.len() == written
            }
            Chunk::Shared { start, end, .. } => {
                if *end - *start != len || written > 0 {
                    return false;
                }
                true
            }
        };
        if emptied {
            self.chunks.pop_back();
            if self.chunks.is_empty() {
                self.sent = 0;
            }
        }
        true
    }

    /// Writes queued output while `*writable`, until it is all written or
    /// the writer takes no more (then `*writable` becomes false); settles
    /// after ([`Output::settle`]). Returns whether any byte was written.
    ///
    /// # Errors
    /// The writer's (`WriteZero` when it takes nothing without saying it
    /// would block), `WouldBlock` and `Interrupted` excepted.
    #[inline]
    pub fn flush_to<W: Write>(
        &mut self,
        w: &mut W,
        writable: &mut bool,
        spare: &mut Spare,
    ) -> io::Result<bool> {
        let mut wrote = false;
        while *writable && self.has_output() {
            match self.write_to(w, spare) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.settle();
        Ok(wrote)
    }

    /// Writes as much as one `writev` takes; returns the bytes written.
    /// Shared buffers written by their last queue are offered to `spare`.
    ///
    /// # Errors
    /// The writer's (`WouldBlock` when it takes nothing now).
    #[inline]
    pub fn write_to<W: Write>(&mut self, w: &mut W, spare: &mut Spare) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut k = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
            let bytes = chunk.bytes();
            let bytes = if i == 0 {
                bytes.get(self.sent..).unwrap_or(&[])
            } else {
                bytes
            };
            if let Some(slot) = iov.get_mut(k) {
                *slot = IoSlice::new(bytes);
                k += 1;
            }
        }
        let n = match iov.get(..k) {
            Some([one]) => w.write(one)?,
            Some(slices) => w.write_vectored(slices)?,
            None => 0,
        };
        self.advance(n, spare);
        self.written_total += n as u64;
        Ok(n)
    }

    /// Accounts `n` more bytes written.
    #[inline]
    fn advance(&mut self, mut n: usize, spare: &mut Spare) {
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = front.len() - self.sent;
            if n < rest {
                self.sent += n;
                return;
            }
            n -= rest;
            self.sent = 0;
            match self.chunks.pop_front() {
                Some(Chunk::Own(mut v))
                    if v.capacity() <= 2 * OWN_CHUNK && self.idle.capacity() == 0 =>
                {
                    v.clear();
                    self.idle = v;
                }
                Some(Chunk::Own(_)) => {}
                Some(Chunk::Shared { buf, .. }) => spare.offer(buf),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `max` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl Trickle {
        fn new(max: usize) -> Trickle {
            Trickle {
                got: Vec::new(),
                max,
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.max == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let k = self.write(b).unwrap_or(0);
                n += k;
                if k < b.len() {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_owned_and_shared_chunks_in_order_and_recycles_the_shared_buffer() {
        let mut out = Output::default();
        let mut spare = Spare::default();
        let big = Arc::new((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        out.push(b"head");
        out.push_shared(Arc::clone(&big), 10, 200_000);
        out.push(b"tail");
        // A copy in another queue: the buffer is not recycled until both
        // are written.
        let mut other = Output::default();
        other.push_shared(Arc::clone(&big), 10, 200_000);
        drop(big);
        let mut w = Trickle::new(7_777);
        while out.has_output() {
            out.write_to(&mut w, &mut spare).unwrap();
        }
        let mut expected = b"head".to_vec();
        expected.extend((10..200_000u32).map(|i| i as u8));
        expected.extend_from_slice(b"tail");
        assert_eq!(w.got, expected);
        assert_eq!(spare.len(), 0, "still queued elsewhere");
        let mut w2 = Trickle::new(1 << 20);
        other.write_to(&mut w2, &mut spare).unwrap();
        assert!(!other.has_output());
        assert_eq!(w2.got.len(), 199_990);
        assert_eq!(spare.len(), 300_000);
        assert!(spare.take(300_001).is_none());
        assert!(spare.take(1000).is_none(), "far too large for it");
        assert_eq!(spare.take(150_000).map(|v| v.len()), Some(300_000));
        assert_eq!(spare.len(), 0);
    }

    #[test]
    fn would_block_keeps_everything() {
        let mut out = Output::default();
        let mut spare = Spare::default();
        out.push(b"abc");
        let mut w = Trickle::new(0);
        let e = out.write_to(&mut w, &mut spare).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(out.has_output());
    }

    #[test]
    fn owned_chunks_are_capped_and_the_newest_unwritten_bytes_can_be_removed() {
        let mut out = Output::default();
        let mut spare = Spare::default();
        let block = vec![7u8; 100_000];
        for _ in 0..5 {
            out.push(&block);
        }
        // 3 blocks fill the first chunk past OWN_CHUNK, 2 go to the next.
        assert_eq!(out.chunks.len(), 2);
        assert!(out.truncate_back(100_000));
        assert!(out.truncate_back(100_000));
        assert_eq!(out.chunks.len(), 1, "the emptied chunk is gone");
        // Partly written: only whole unwritten bytes at the end go.
        let mut w = Trickle::new(250_000);
        out.write_to(&mut w, &mut spare).unwrap();
        assert!(!out.truncate_back(100_000), "50,000 of it were written");
        assert!(out.truncate_back(40_000));
        // A shared chunk goes only whole and unwritten.
        let buf = Arc::new(vec![1u8; 1000]);
        out.push_shared(Arc::clone(&buf), 0, 1000);
        assert!(!out.truncate_back(999));
        assert!(out.truncate_back(1000));
        let mut w = Trickle::new(1 << 20);
        out.write_to(&mut w, &mut spare).unwrap();
        assert!(!out.has_output());
        assert_eq!(w.got.len(), 10_000);
        assert!(!out.truncate_back(1));
    }

    fn write_all(out: &mut Output, max: usize) -> Vec<u8> {
        let mut w = Trickle::new(max);
        let mut writable = true;
        let mut spare = Spare::default();
        out.flush_to(&mut w, &mut writable, &mut spare).unwrap();
        w.got
    }

    #[test]
    fn messages_are_counted_until_written() {
        let mut o = Output::new();
        o.push_control(b"hi");
        o.push_message(b"abc");
        o.push_message_with(|b| b.extend_from_slice(b"defg"));
        assert_eq!((o.unsent(), o.queue_len()), (9, 2));
        let mut w = Trickle::new(4);
        let mut spare = Spare::default();
        assert_eq!(o.write_to(&mut w, &mut spare).unwrap(), 4);
        o.settle();
        assert_eq!((o.unsent(), o.queue_len()), (5, 2));
        w.max = 1;
        o.write_to(&mut w, &mut spare).unwrap();
        assert_eq!(o.queue_len(), 1);
        // Part of the newest was not written: it can be taken back.
        assert_eq!(o.pop_newest(), Some(4));
        assert_eq!(o.pop_newest(), None);
        // What is left of the chunk was written: nothing is left to write
        // (a queue that said otherwise would write 0 bytes, taken for a
        // closed socket).
        assert!(!o.has_output());
        assert_eq!(w.got, b"hiabc");
        o.push_message(b"x");
        assert_eq!(write_all(&mut o, 100), b"x");
        assert_eq!((o.unsent(), o.queue_len(), o.has_output()), (0, 0, false));
    }

    #[test]
    fn a_message_framed_in_place_joins_the_last_chunk_or_starts_one() {
        let mut o = Output::new();
        o.push_message_with(|_| {});
        assert!(!o.has_output(), "nothing framed: no empty chunk queued");
        assert_eq!((o.unsent(), o.queue_len()), (0, 0));
        o.push_control(b"ab");
        o.push_message_with(|b| b.extend_from_slice(b"cd"));
        assert_eq!(o.chunks.len(), 1);
        let big = vec![5u8; OWN_CHUNK];
        o.push_message_with(|b| b.extend_from_slice(&big));
        o.push_message_with(|b| b.extend_from_slice(b"ef"));
        assert_eq!(o.chunks.len(), 2, "the first chunk is full");
        assert_eq!(o.queue_len(), 3);
        let got = write_all(&mut o, 100_000);
        assert_eq!(got.len(), 6 + OWN_CHUNK);
        assert_eq!(&got[..4], b"abcd");
        assert_eq!(&got[got.len() - 2..], b"ef");
        assert_eq!(o.queue_len(), 0);
    }

    #[test]
    fn flush_stops_when_the_writer_is_full() {
        let mut o = Output::new();
        o.push_message(b"abc");
        let mut w = Trickle::new(0);
        let (mut writable, mut spare) = (true, Spare::default());
        assert!(!o.flush_to(&mut w, &mut writable, &mut spare).unwrap());
        assert!(!writable && o.has_output());
        writable = true;
        w.max = 2;
        assert!(o.flush_to(&mut w, &mut writable, &mut spare).unwrap());
        assert_eq!(w.got, b"abc");
        assert_eq!((o.unsent(), o.queue_len()), (0, 0));
    }

    #[test]
    fn a_partly_written_message_is_not_taken_back() {
        let mut o = Output::new();
        o.push_message(b"abc");
        let mut w = Trickle::new(1);
        o.write_to(&mut w, &mut Spare::default()).unwrap();
        assert_eq!(o.pop_newest(), None);
        o.push_control(b"z");
        o.push_message(b"q");
        o.push_control(b"z");
        assert_eq!(o.pop_newest(), None, "bytes after it");
    }

    #[test]
    fn an_owned_message_is_its_own_chunk_and_a_cut_one_is_dropped_whole() {
        let mut o = Output::new();
        o.push_message(b"ab");
        let big = vec![7u8; 1000];
        o.push_owned_message(big.clone());
        o.push_message(b"cd");
        assert_eq!(
            o.chunks.len(),
            3,
            "the owned message is not copied into a chunk"
        );
        assert_eq!(o.queue_len(), 3);
        assert!(!o.in_message());
        assert!(!o.drop_partial(), "nothing written: nothing to drop");
        // The first message and 12 bytes of the large one go out (the
        // writer takes up to 12 bytes of each slice).
        let mut w = Trickle::new(12);
        o.write_to(&mut w, &mut Spare::default()).unwrap();
        assert_eq!(w.got.len(), 14);
        assert!(o.in_message());
        // The connection breaks: the rest of the large message is dropped,
        // the message behind it is kept, whole.
        assert!(o.drop_partial());
        assert!(!o.in_message());
        assert_eq!(o.queue_len(), 1);
        assert_eq!(o.unsent(), 2);
        assert_eq!(write_all(&mut o, 1), b"cd");
        assert!(!o.has_output());
        assert_eq!(o.queue_len(), 0);
    }

    #[test]
    fn a_message_written_to_its_last_byte_is_not_in_progress() {
        let mut o = Output::new();
        o.push_message(b"abc");
        o.push_message(b"de");
        let mut w = Trickle::new(3);
        o.write_to(&mut w, &mut Spare::default()).unwrap();
        assert!(
            !o.in_message(),
            "a whole message written, the next not begun"
        );
        assert!(!o.drop_partial());
        assert_eq!(o.queue_len(), 1);
        let mut w = Trickle::new(1);
        o.write_to(&mut w, &mut Spare::default()).unwrap();
        assert!(o.in_message());
        assert!(o.drop_partial());
        assert!(!o.has_output());
        assert_eq!(o.unsent(), 0);
    }
}
