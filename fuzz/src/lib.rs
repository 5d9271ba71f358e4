//! Shared helpers of the banyan-rs fuzz targets: the byte format of the
//! link-target scripts (decoded by the targets, encoded by `gen-seeds`) and
//! checks of frames a link end transmits.
//!
//! # Link script format
//!
//! A script is a sequence of records `tag u8, dt u8, len u8, data[len]`
//! (a record cut short by the end of the input keeps what is there).
//! Before the operation runs, time moves by `dt × 4 ms` (`× 64 ms` if tag bit
//! `0x80` is set), or **backwards** by that much if tag bit `0x20` is set
//! (`Instant` docs say time must not go backwards; the ends must still not
//! panic). The operation is `tag & 0x07`, see [`OpKind`].

use banyan_core::frame::{Deframer, Feed};
use banyan_core::link::wire::Message;
use banyan_core::link::Stats;

/// What a script record asks the link end to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Feed `data` to `handle_rx` and drain its events.
    Rx,
    /// Feed one *valid* frame built from `data` (see [`frame_from`]) to
    /// `handle_rx`: lets the fuzzer reach the message parsers without
    /// having to forge a CRC.
    RxFrame,
    /// Call `poll` until it returns nothing.
    Poll,
    /// Call `poll_transmit` until it returns nothing. If tag bit `0x40` is
    /// set, the output buffer is only `data.len()` bytes.
    Transmit,
    /// `publish(topic, payload)`: `data[0] % (len)` bytes of `data[1..]` are
    /// the topic (lossy UTF-8 cut to a char boundary), the rest the payload.
    Publish,
    /// Device: `recv()` one queued message and drop it (frees a credit).
    /// Gateway: same as [`OpKind::Rx`].
    Recv,
}

/// One decoded script record.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// The operation.
    pub kind: OpKind,
    /// The raw tag byte.
    pub tag: u8,
    /// The time step in milliseconds (negative: backwards).
    pub dt_ms: i64,
    /// The record's data bytes.
    pub data: &'a [u8],
}

/// Iterator over the records of a script.
pub struct Script<'a>(pub &'a [u8]);

impl<'a> Iterator for Script<'a> {
    type Item = Op<'a>;
    fn next(&mut self) -> Option<Op<'a>> {
        let (&tag, rest) = self.0.split_first()?;
        let dt = rest.first().copied().unwrap_or(0);
        let len = rest.get(1).copied().unwrap_or(0) as usize;
        let body = rest.get(2..).unwrap_or(&[]);
        let data = &body[..len.min(body.len())];
        self.0 = &body[data.len()..];
        let unit = if tag & 0x80 != 0 { 64 } else { 4 };
        let mut dt_ms = i64::from(dt) * unit;
        if tag & 0x20 != 0 {
            dt_ms = -dt_ms;
        }
        let kind = match tag & 0x07 {
            0 | 6 => OpKind::Rx,
            5 => OpKind::RxFrame,
            1 => OpKind::Poll,
            2 => OpKind::Transmit,
            3 => OpKind::Publish,
            _ => OpKind::Recv,
        };
        Some(Op {
            kind,
            tag,
            dt_ms,
            data,
        })
    }
}

/// Appends one record to a script (for the seed generator). `data` longer
/// than 255 bytes is split into several records of the same kind; `dt` is in
/// units of 4 ms.
pub fn push_op(out: &mut Vec<u8>, tag: u8, dt: u8, data: &[u8]) {
    let mut chunks = data.chunks(255).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[tag, dt, 0]);
        return;
    }
    let mut first = true;
    for c in chunks {
        out.extend_from_slice(&[tag, if first { dt } else { 0 }, c.len() as u8]);
        out.extend_from_slice(c);
        first = false;
    }
}

/// Runs an [`OpKind::Rx`] or [`OpKind::RxFrame`] record through a link end:
/// the record's bytes (or the one valid frame built from them) go to `step`,
/// which calls `handle_rx` once, handles the event and returns whether there
/// was one, with the input left. Checks that `handle_rx` always progresses,
/// that what is left is a suffix of the input, and that it returns no event
/// only with all input consumed.
pub fn feed_rx(op: &Op<'_>, mut step: impl for<'b> FnMut(&'b [u8]) -> (bool, &'b [u8])) {
    let framed;
    let data = if op.kind == OpKind::RxFrame {
        framed = frame_from(op.data);
        &framed[..]
    } else {
        op.data
    };
    let mut input = data;
    for _ in 0..data.len() + 64 {
        let len = input.len();
        let (event, rest) = step(input);
        assert!(rest.len() <= len);
        assert_eq!(rest, &data[data.len() - rest.len()..]);
        if !event {
            assert!(rest.is_empty(), "(None, rest) with input left");
            return;
        }
        input = rest;
    }
    panic!("handle_rx does not progress");
}

/// The wire frame an [`OpKind::RxFrame`] record stands for: kind from
/// `data[0]` (below `0x80`: one of the link's eleven kinds; else the byte
/// itself), seq `data[1]`, payload the rest.
pub fn frame_from(data: &[u8]) -> Vec<u8> {
    use banyan_core::link::wire::kind;
    const KINDS: [u8; 11] = [
        kind::HELLO,
        kind::WELCOME,
        kind::HEARTBEAT,
        kind::RESYNC,
        kind::SUBSCRIBE,
        kind::UNSUBSCRIBE,
        kind::PUBLISH,
        kind::SERVE,
        kind::UNSERVE,
        kind::REQUEST,
        kind::REPLY,
    ];
    let k = data.first().copied().unwrap_or(0);
    let k = if k < 0x80 {
        KINDS[usize::from(k) % KINDS.len()]
    } else {
        k
    };
    let seq = data.get(1).copied().unwrap_or(0);
    let payload = data.get(2..).unwrap_or(&[]);
    let mut out = vec![0u8; banyan_core::frame::encoded_len_for_payload(payload.len())];
    let n = banyan_core::frame::encode(k, seq, &[payload], &mut out).expect("sized by encoded_len");
    out.truncate(n);
    out
}

/// Splits a Publish record's data into a topic and a payload.
pub fn split_publish(data: &[u8]) -> (String, &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return (String::new(), &[]);
    };
    let k = usize::from(k) % (rest.len() + 1);
    let mut topic = String::from_utf8_lossy(&rest[..k]).into_owned();
    // Lossy decoding can lengthen the topic; keep it within a str8.
    while topic.len() > 255 {
        topic.pop();
    }
    (topic, &rest[k..])
}

/// Checks that `wire` (one `poll_transmit` output, after at most one leading
/// flush delimiter) is exactly one frame with
/// a good CRC carrying a message that parses, and returns its kind.
///
/// # Panics
/// If it is not: that is a bug in the transmitting end.
pub fn check_tx_frame(wire: &[u8]) -> u8 {
    // Either end starts a frame after a pause (and its first) with a lone
    // delimiter that flushes whatever partial frame the receiver holds
    // (`link::IDLE_FLUSH_MS`).
    let wire = match wire.split_first() {
        Some((0, rest)) if !rest.is_empty() => rest,
        _ => wire,
    };
    assert_eq!(wire.last(), Some(&0), "frame must end with the delimiter");
    assert!(
        !wire[..wire.len() - 1].contains(&0),
        "delimiter inside a frame"
    );
    let mut d: Deframer<4096> = Deframer::new();
    match d.feed(wire) {
        Feed::Frame { frame, rest } => {
            assert!(rest.is_empty());
            assert!(frame.verify_crc());
            if let Err(e) = Message::parse(frame.kind(), frame.payload()) {
                panic!("transmitted frame does not parse: {e:?} {wire:02x?}");
            }
            frame.kind()
        }
        other => panic!("transmitted bytes are not one good frame: {other:?} {wire:02x?}"),
    }
}

/// Whether frames of `kind` are data messages (PUBLISH, REQUEST, REPLY),
/// counted in the link's `publish_*` counters.
pub fn is_data(kind: u8) -> bool {
    use banyan_core::link::wire::kind;
    matches!(kind, kind::PUBLISH | kind::REQUEST | kind::REPLY)
}

/// The checks both link ends' fuzz targets make of their counters after
/// each operation: frames received = frames delivered by the deframer,
/// `tx` frames and `publish_tx` data frames transmitted as seen, every
/// counter both ends keep never goes back (each target checks its own
/// others), never more downs than ups.
///
/// # Panics
/// If one does not hold: a finding.
pub fn check_link_stats(before: &Stats, s: &Stats, tx: u32, publish_tx: u32) {
    assert_eq!(s.frame.frames, s.frames_rx, "delivered frames vs frames_rx");
    assert_eq!(s.frames_tx, tx, "frames_tx vs transmitted frames");
    assert_eq!(
        s.publish_tx, publish_tx,
        "publish_tx vs PUBLISH frames sent"
    );
    check_monotonic(&[
        (before.frame.dropped(), s.frame.dropped()),
        (before.frames_rx, s.frames_rx),
        (before.seq_gaps, s.seq_gaps),
        (before.duplicates, s.duplicates),
        (before.malformed, s.malformed),
        (before.unexpected, s.unexpected),
        (before.not_up, s.not_up),
        (before.publish_lost, s.publish_lost),
        (before.publish_unconfirmed, s.publish_unconfirmed),
        (before.send_refused(), s.send_refused()),
        (before.drop_discarded, s.drop_discarded),
        (before.drop_out_too_small, s.drop_out_too_small),
        (before.ups, s.ups),
        (before.downs, s.downs),
        (before.resyncs, s.resyncs),
    ]);
    assert!(s.downs <= s.ups, "more downs than ups");
}

/// The `Transmit` operation of a link script: calls `poll_transmit` with
/// all of `out` (or, tag bit `0x40`, at most `data_len` bytes of it) until
/// it returns `None`, checks each frame ([`check_tx_frame`]), and counts
/// the frames in `tx` and the data frames in `publish_tx`.
///
/// # Panics
/// If a frame is bad, longer than the buffer, or `poll_transmit` does not
/// end (more than 512 frames: every queued PUBLISH, the TX buffer holds at
/// most TX / 7 of them, plus WELCOME/RESYNC/HEARTBEAT).
pub fn transmit_all(
    tag: u8,
    data_len: usize,
    out: &mut [u8],
    mut poll_transmit: impl FnMut(&mut [u8]) -> Option<usize>,
    tx: &mut u32,
    publish_tx: &mut u32,
) {
    let size = if tag & 0x40 != 0 {
        data_len.min(out.len())
    } else {
        out.len()
    };
    let mut guard = 0;
    while let Some(n) = poll_transmit(&mut out[..size]) {
        assert!(n <= size);
        if is_data(check_tx_frame(&out[..n])) {
            *publish_tx += 1;
        }
        *tx += 1;
        guard += 1;
        assert!(guard <= 512, "poll_transmit never returns None");
    }
}

/// Checks that no counter went back: each pair is (before, after).
///
/// # Panics
/// If one did, naming its index.
pub fn check_monotonic(pairs: &[(u32, u32)]) {
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert!(b >= a, "counter #{i} went back: {a} -> {b}");
    }
}

/// Splits fuzz input into at most 8 frames of a multipart message, each
/// `len u8, data[len]` (a frame cut short by the end of the input keeps
/// what is there).
pub fn frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        if out.len() == 8 {
            break;
        }
        let n = usize::from(len).min(rest.len());
        out.push(rest[..n].to_vec());
        data = &rest[n..];
    }
    out
}

/// Moves `now` (milliseconds) by `dt_ms`, saturating at 0 and `u64::MAX`.
pub fn step_time(now: u64, dt_ms: i64) -> u64 {
    if dt_ms < 0 {
        now.saturating_sub(dt_ms.unsigned_abs())
    } else {
        now.saturating_add(dt_ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_roundtrip() {
        let mut s = Vec::new();
        push_op(&mut s, 0, 3, b"abc");
        push_op(&mut s, 0x22, 1, &[]);
        push_op(&mut s, 0x83, 2, &[7u8; 300]);
        let ops: Vec<Op> = Script(&s).collect();
        assert_eq!(ops.len(), 4);
        assert_eq!(
            (ops[0].kind, ops[0].dt_ms, ops[0].data),
            (OpKind::Rx, 12, &b"abc"[..])
        );
        assert_eq!((ops[1].kind, ops[1].dt_ms), (OpKind::Transmit, -4));
        assert_eq!(
            (ops[2].kind, ops[2].dt_ms, ops[2].data.len()),
            (OpKind::Publish, 128, 255)
        );
        assert_eq!((ops[3].dt_ms, ops[3].data.len()), (0, 45));
    }

    #[test]
    fn truncated_record() {
        let ops: Vec<Op> = Script(&[0, 1, 9, 1, 2]).collect();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].data, &[1, 2]);
    }

    #[test]
    fn frame_from_is_a_good_frame() {
        assert_eq!(check_tx_frame(&frame_from(&[6, 9, 1, b't', 0x80])), 0x10);
        assert_eq!(frame_from(&[0x90]).len(), 6);
    }

    #[test]
    fn publish_split() {
        assert_eq!(
            split_publish(&[2, b'a', b'b', 0x80]),
            ("ab".into(), &[0x80][..])
        );
        assert_eq!(split_publish(&[]), (String::new(), &[][..]));
    }
}
