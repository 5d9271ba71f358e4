//! De-framer tests: golden frames, chunked feeding, corruption, and property
//! tests over arbitrary byte streams.

use banyan_core::frame::{self, Deframer, DropReason, Feed, Frame, Repr};
use proptest::prelude::*;

type Decoded = (u8, u8, Vec<u8>);

/// Feeds every chunk in turn and collects the frames and drop reasons.
fn run<const N: usize>(d: &mut Deframer<N>, chunks: &[&[u8]]) -> (Vec<Decoded>, Vec<DropReason>) {
    let mut frames = Vec::new();
    let mut drops = Vec::new();
    for chunk in chunks {
        let mut input: &[u8] = chunk;
        loop {
            match d.feed(input) {
                Feed::Consumed => break,
                Feed::Frame { frame, rest } => {
                    // Check the CRC independently of the de-framer.
                    let body = frame.as_bytes();
                    let (data, crc) = body.split_at(body.len() - 2);
                    assert_eq!(
                        frame::CRC.checksum(data).to_le_bytes(),
                        [crc[0], crc[1]],
                        "delivered a frame with a wrong CRC"
                    );
                    frames.push((frame.kind(), frame.seq(), frame.payload().to_vec()));
                    input = rest;
                }
                Feed::Dropped { reason, rest } => {
                    drops.push(reason);
                    input = rest;
                }
            }
        }
    }
    (frames, drops)
}

fn enc(kind: u8, seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; frame::encoded_len_for_payload(payload.len())];
    let n = frame::encode(kind, seq, &[payload], &mut out).unwrap();
    assert!(n <= out.len(), "encoded_len_for_payload is an upper bound");
    if payload.len() + frame::MIN_BODY_LEN < 254 {
        assert_eq!(
            n,
            out.len(),
            "encoded_len_for_payload is exact below 254 bytes"
        );
    }
    out.truncate(n);
    out
}

/// kind 0x10, seq 7, payload "hi": body `10 07 68 69`, CRC 0x65fb (little
/// endian `fb 65`), one COBS code byte, the delimiter.
const GOLDEN_HI: [u8; 8] = [0x07, 0x10, 0x07, 0x68, 0x69, 0xfb, 0x65, 0x00];

#[test]
fn golden_frame_encodes_and_decodes() {
    assert_eq!(enc(0x10, 7, b"hi"), GOLDEN_HI);
    let mut d: Deframer<64> = Deframer::new();
    let (frames, drops) = run(&mut d, &[&GOLDEN_HI]);
    assert_eq!(frames, vec![(0x10, 7, b"hi".to_vec())]);
    assert!(drops.is_empty());
}

#[test]
fn golden_frame_with_zero_bytes() {
    // kind 0x03, seq 0, payload 00 01: body 03 00 00 01 + CRC.
    let crc = frame::CRC.checksum(&[0x03, 0x00, 0x00, 0x01]);
    assert_eq!(crc, 0x0f3d);
    // COBS: [03] 00 -> 02 03 | [] 00 -> 01 | [01 3d 0f] end -> 04 01 3d 0f.
    let wire = [0x02, 0x03, 0x01, 0x04, 0x01, 0x3d, 0x0f, 0x00];
    assert_eq!(enc(0x03, 0, &[0x00, 0x01]), wire);
    let mut d: Deframer<64> = Deframer::new();
    let (frames, _) = run(&mut d, &[&wire]);
    assert_eq!(frames, vec![(0x03, 0, vec![0x00, 0x01])]);
}

#[test]
fn repr_emit_matches_encode() {
    let payload = b"\x81\xa5value\x01";
    let repr = Repr {
        kind: 0x10,
        seq: 200,
    };
    let mut body = vec![0u8; repr.buffer_len(payload.len())];
    let mut view = Frame::new_checked(&mut body[..]).unwrap();
    repr.emit(&mut view, |p| p.copy_from_slice(payload));
    let view = Frame::new_checked(&body[..]).unwrap();
    assert_eq!(Repr::parse(&view), Ok(repr));
    let mut wire = vec![0u8; cobs::max_encoding_length(body.len())];
    let n = cobs::encode(&body, &mut wire);
    wire.truncate(n);
    wire.push(0);
    assert_eq!(enc(0x10, 200, payload), wire);
}

#[test]
fn frame_view_rejects_short_buffers_and_bad_crc() {
    assert_eq!(Frame::new_checked(&[1u8, 2, 3][..]), Err(DropReason::Short));
    let mut body = [0x10u8, 1, 0xaa, 0, 0];
    Frame::new_checked(&mut body[..]).unwrap().fill_crc();
    assert!(Frame::new_checked(&body[..]).unwrap().verify_crc());
    body[2] ^= 0x01;
    let view = Frame::new_checked(&body[..]).unwrap();
    assert_eq!(Repr::parse(&view), Err(DropReason::Crc));
}

fn sample_stream() -> (Vec<u8>, Vec<Decoded>) {
    let items: Vec<Decoded> = vec![
        (1, 0, b"hello".to_vec()),
        (2, 1, vec![]),
        (3, 2, vec![0; 10]),
        (4, 3, (0..=255u8).collect()),
        (5, 4, vec![0xff; 300]),
    ];
    let mut stream = vec![0x00];
    for (k, s, p) in &items {
        stream.extend(enc(*k, *s, p));
    }
    (stream, items)
}

#[test]
fn every_split_point_gives_the_same_frames() {
    let (stream, items) = sample_stream();
    for split in 0..=stream.len() {
        let mut d: Deframer<512> = Deframer::new();
        let (frames, drops) = run(&mut d, &[&stream[..split], &stream[split..]]);
        assert_eq!(frames, items, "split at {split}");
        assert!(drops.is_empty(), "split at {split}: {drops:?}");
    }
}

#[test]
fn byte_by_byte_gives_the_same_frames() {
    let (stream, items) = sample_stream();
    let mut d: Deframer<512> = Deframer::new();
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    let (frames, drops) = run(&mut d, &chunks);
    assert_eq!(frames, items);
    assert!(drops.is_empty());
    assert_eq!(d.stats().frames, items.len() as u32);
}

#[test]
fn corrupt_frames_are_dropped_counted_and_resynced() {
    let good = enc(0x10, 1, b"payload");
    // Flip a byte: CRC (or COBS) failure.
    let mut bad_crc = good.clone();
    bad_crc[4] ^= 0x40;
    // Too short: a valid COBS body of 3 bytes.
    let short = [0x04, 0x01, 0x02, 0x03, 0x00];
    // Invalid COBS: code byte points past the delimiter.
    let bad_cobs = [0x09, 0x01, 0x00];
    // Oversize for a 32-byte de-framer.
    let big = enc(0x10, 2, &[0x55; 64]);

    let mut d: Deframer<32> = Deframer::new();
    let (frames, drops) = run(
        &mut d,
        &[
            &bad_crc, &good, &short, &good, &bad_cobs, &good, &big, &good,
        ],
    );
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| f == &(0x10, 1, b"payload".to_vec())));
    assert_eq!(
        drops,
        vec![
            DropReason::Crc,
            DropReason::Short,
            DropReason::Cobs,
            DropReason::Oversize
        ]
    );
    let s = d.stats();
    assert_eq!(
        (s.crc, s.short, s.cobs, s.oversize, s.frames),
        (1, 1, 1, 1, 4)
    );
    assert_eq!(s.dropped(), 4);
}

#[test]
fn a_frame_filling_the_buffer_exactly_is_accepted() {
    const N: usize = 40;
    let payload_len = frame::max_payload_len(N + 1);
    let f = enc(0x10, 9, &vec![0x11; payload_len]);
    assert_eq!(f.len(), N + 1);
    let mut d: Deframer<N> = Deframer::new();
    assert_eq!(run(&mut d, &[&f]).0.len(), 1);
    let f = enc(0x10, 9, &vec![0x11; payload_len + 1]);
    let (frames, drops) = run(&mut d, &[&f]);
    assert!(frames.is_empty());
    assert_eq!(drops, vec![DropReason::Oversize]);
}

#[test]
fn encode_reports_a_small_buffer() {
    let mut out = [0u8; 8];
    assert_eq!(
        frame::encode(1, 1, &[b"too long for eight"], &mut out),
        Err(frame::EncodeError::BufferTooSmall)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_streams_never_panic_nor_yield_bad_crc(
        stream in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..300,
    ) {
        let mut d: Deframer<128> = Deframer::new();
        let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
        // `run` asserts the CRC of every delivered frame.
        let (frames, drops) = run(&mut d, &chunks);
        let s = d.stats();
        prop_assert_eq!(s.frames as usize, frames.len());
        prop_assert_eq!(s.dropped() as usize, drops.len());
    }

    #[test]
    fn valid_frames_after_garbage_and_a_delimiter_are_all_recovered(
        items in proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..200),   // garbage before
                any::<u8>(), any::<u8>(),                          // kind, seq
                proptest::collection::vec(any::<u8>(), 0..300),   // payload
            ),
            1..12,
        ),
        chunk in 1usize..400,
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (garbage, kind, seq, payload) in &items {
            stream.extend_from_slice(garbage);
            stream.push(0x00);
            stream.extend(enc(*kind, *seq, payload));
            expected.push((*kind, *seq, payload.clone()));
        }
        let mut d: Deframer<512> = Deframer::new();
        let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
        let (frames, _) = run(&mut d, &chunks);
        // Garbage may (very rarely) happen to be a valid frame, so the
        // expected frames must appear in order, possibly with extras between.
        let mut it = frames.iter();
        for e in &expected {
            prop_assert!(it.any(|f| f == e), "frame {:?} not recovered", e);
        }
    }

    #[test]
    fn encode_roundtrips_through_cobs(
        kind in any::<u8>(), seq in any::<u8>(),
        a in proptest::collection::vec(any::<u8>(), 0..600),
        b in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut out = vec![0u8; frame::encoded_len_for_payload(a.len() + b.len())];
        let n = frame::encode(kind, seq, &[&a, &b], &mut out).unwrap();
        prop_assert!(n <= out.len());
        prop_assert!(out[..n - 1].iter().all(|&x| x != 0));
        let mut body = vec![0u8; n];
        let r = cobs::decode(&out[..n - 1], &mut body).unwrap();
        let view = Frame::new_checked(&body[..r.frame_size()]).unwrap();
        prop_assert_eq!(Repr::parse(&view), Ok(Repr { kind, seq }));
        let mut ab = a.clone();
        ab.extend_from_slice(&b);
        prop_assert_eq!(view.payload(), &ab[..]);
    }
}
