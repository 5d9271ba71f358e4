//! The `frame` de-framer on arbitrary byte streams in arbitrary chunks.
//!
//! Input: one byte of chunking seed, then the stream. Checks:
//! - every yielded frame has a good CRC, and re-encoding it gives a wire
//!   frame that de-frames to the same frame;
//! - feeding the stream whole and in chunks yields the same frames, the
//!   same drops and the same statistics;
//! - `rest` is always a suffix of the input and the loop always ends;
//! - the statistics count exactly the frames and drops returned;
//! - `frame::encode` of (a slice of) the input round-trips.
#![no_main]

use banyan_core::frame::{self, Deframer, DropReason, Feed, Frame, Repr};
use libfuzzer_sys::fuzz_target;

const N: usize = 64;

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Frame(u8, u8, Vec<u8>),
    Drop(DropReason),
}

/// Feeds `input` (one chunk) until consumed, recording what comes out.
fn feed_all<const M: usize>(d: &mut Deframer<M>, input: &[u8], out: &mut Vec<Out>) {
    let bound = input.len() + 2;
    let mut input = input;
    let mut guard = 0;
    loop {
        guard += 1;
        assert!(guard <= bound, "feed loop does not progress");
        let before = input.len();
        match d.feed(input) {
            Feed::Consumed => break,
            Feed::Frame { frame, rest } => {
                assert!(rest.len() < before);
                assert!(frame.check_len().is_ok());
                assert!(frame.verify_crc(), "yielded frame with a bad CRC");
                assert_eq!(frame.crc(), frame.compute_crc());
                let repr = Repr::parse(&frame).expect("yielded frame parses");
                assert_eq!((repr.kind, repr.seq), (frame.kind(), frame.seq()));
                out.push(Out::Frame(
                    frame.kind(),
                    frame.seq(),
                    frame.payload().to_vec(),
                ));
                let last = d.last_frame().expect("last_frame after Frame");
                assert_eq!(last.payload(), out_payload(out));
                input = rest;
            }
            Feed::Dropped { reason, rest } => {
                assert!(rest.len() < before);
                assert!(d.last_frame().is_none());
                out.push(Out::Drop(reason));
                input = rest;
            }
        }
    }
}

fn out_payload(out: &[Out]) -> &[u8] {
    match out.last() {
        Some(Out::Frame(_, _, p)) => p,
        _ => unreachable!(),
    }
}

fn check_stats(d: &Deframer<N>, out: &[Out]) {
    let s = d.stats();
    let frames = out.iter().filter(|o| matches!(o, Out::Frame(..))).count();
    let count = |r: DropReason| out.iter().filter(|o| **o == Out::Drop(r)).count() as u32;
    assert_eq!(s.frames as usize, frames);
    assert_eq!(s.cobs, count(DropReason::Cobs));
    assert_eq!(s.short, count(DropReason::Short));
    assert_eq!(s.crc, count(DropReason::Crc));
    assert_eq!(s.oversize, count(DropReason::Oversize));
    assert_eq!(s.dropped() as usize, out.len() - frames);
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };

    let mut whole: Deframer<N> = Deframer::new();
    let mut a = Vec::new();
    feed_all(&mut whole, stream, &mut a);
    check_stats(&whole, &a);

    // Chunk sizes from a tiny LCG seeded by the first byte: 1..=16 bytes.
    let mut chunked: Deframer<N> = Deframer::new();
    let mut b = Vec::new();
    let mut x = u32::from(seed) | 1;
    let mut rest = stream;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((x >> 16) % 16) as usize + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        feed_all(&mut chunked, chunk, &mut b);
        rest = tail;
    }
    assert_eq!(a, b, "whole vs chunked feeding differ");
    assert_eq!(whole.stats(), chunked.stats());
    assert_eq!(whole.is_empty(), chunked.is_empty());

    // Every yielded frame re-encodes and de-frames to itself.
    for o in &a {
        if let Out::Frame(kind, seq, payload) = o {
            let mut wire = [0u8; 2 * N];
            let n = frame::encode(*kind, *seq, &[payload], &mut wire).expect("fits");
            assert!(n <= frame::encoded_len_for_payload(payload.len()));
            let mut d: Deframer<N> = Deframer::new();
            let mut again = Vec::new();
            feed_all(&mut d, &wire[..n], &mut again);
            assert_eq!(again.as_slice(), std::slice::from_ref(o));
        }
    }

    // Round trip of an arbitrary payload through encode and a large de-framer.
    let payload = &stream[..stream.len().min(300)];
    let mut wire = [0u8; 320];
    let need = frame::encoded_len_for_payload(payload.len());
    let n = match frame::encode(seed, seed ^ 0x5a, &[payload], &mut wire[..need.min(320)]) {
        Ok(n) => {
            assert!(n <= need);
            let mut d: Deframer<512> = Deframer::new();
            match d.feed(&wire[..n]) {
                Feed::Frame { frame, rest } => {
                    assert!(rest.is_empty());
                    assert_eq!((frame.kind(), frame.seq()), (seed, seed ^ 0x5a));
                    assert_eq!(frame.payload(), payload);
                }
                other => panic!("own frame not decoded: {other:?}"),
            }
            n
        }
        Err(e) => panic!("encode into encoded_len_for_payload bytes failed: {e:?}"),
    };
    // One byte short must be refused, never a panic or a partial frame.
    if n > 0 {
        assert!(frame::encode(seed, 0, &[payload], &mut wire[..n - 1]).is_err());
    }

    // Views never panic after check_len.
    if let Ok(f) = Frame::new_checked(stream) {
        let _ = (f.kind(), f.seq(), f.payload(), f.crc(), f.verify_crc());
        let _ = Repr::parse(&f);
    }
});
