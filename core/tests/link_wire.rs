//! Link message format: golden frames, round trips, overhead, and robustness
//! of the parsers and state machines against arbitrary bytes.

use banyan_core::frame::{self, Deframer, Feed};
use banyan_core::link::wire::{self, kind, Heartbeat, Hello, Message, Welcome};
use banyan_core::link::{Config, Device, Gateway, Instant};
use proptest::prelude::*;

fn encode(msg: &Message<'_>, seq: u8) -> Vec<u8> {
    let mut out = vec![0u8; 600];
    let n = msg.encode(seq, &mut out).unwrap();
    out.truncate(n);
    out
}

fn decode(wire: &[u8]) -> (u8, Vec<u8>) {
    let mut d: Deframer<600> = Deframer::new();
    match d.feed(wire) {
        Feed::Frame { frame, rest } => {
            assert!(rest.is_empty());
            (frame.seq(), frame.as_bytes().to_vec())
        }
        other => panic!("{other:?}"),
    }
}

/// PUBLISH, seq 0, topic `t`, payload msgpack `{'value': 1}` (the LAN
/// example from DESIGN.md): 7 bytes of link overhead.
const GOLDEN_PUBLISH: [u8; 16] = [
    0x02, 0x10, 0x0d, 0x01, 0x74, 0x81, 0xa5, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x01, 0x34, 0x57, 0x00,
];

/// HEARTBEAT, seq 5: pub_sent 2, pub_received 1, credit_limit 20, no subs.
const GOLDEN_HEARTBEAT: [u8; 15] = [
    0x04, 0x03, 0x05, 0x02, 0x02, 0x01, 0x02, 0x14, 0x01, 0x01, 0x01, 0x03, 0xdf, 0x9d, 0x00,
];

#[test]
fn golden_publish() {
    let payload = [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01];
    let msg = Message::Publish {
        topic: "t",
        payload: &payload,
    };
    assert_eq!(encode(&msg, 0), GOLDEN_PUBLISH);
    assert_eq!(
        GOLDEN_PUBLISH.len(),
        wire::PUBLISH_OVERHEAD + 1 + payload.len()
    );
    let (seq, body) = decode(&GOLDEN_PUBLISH);
    assert_eq!(seq, 0);
    let f = frame::Frame::new_checked(&body[..]).unwrap();
    assert_eq!(Message::parse(f.kind(), f.payload()), Ok(msg));
}

#[test]
fn golden_heartbeat() {
    let msg = Message::Heartbeat(Heartbeat {
        pub_sent: 2,
        pub_received: 1,
        credit_limit: 20,
        sub_count: 0,
        sub_digest: 0,
    });
    assert_eq!(encode(&msg, 5), GOLDEN_HEARTBEAT);
}

#[test]
fn every_message_round_trips() {
    let msgs = [
        Message::Hello(Hello {
            session: 0xDEAD_BEEF,
            max_frame: 256,
            credits: 4,
            max_subs: 8,
            name: "pico-bot",
            version: "0.1.0",
        }),
        Message::Welcome(Welcome {
            device_session: 0xDEAD_BEEF,
            hello_seq: 3,
            gateway_session: 42,
            max_frame: 1024,
            credits: 16,
        }),
        Message::Heartbeat(Heartbeat {
            pub_sent: 0xFFFF,
            pub_received: 0,
            credit_limit: 7,
            sub_count: 2,
            sub_digest: 0xABCD,
        }),
        Message::Resync { gateway_session: 9 },
        Message::Subscribe("run_motors"),
        Message::Subscribe(""),
        Message::Unsubscribe("light_leds"),
        Message::Publish {
            topic: "",
            payload: &[],
        },
        Message::Publish {
            topic: "to_rpi_gateway",
            payload: &[0u8; 300],
        },
    ];
    for (i, msg) in msgs.iter().enumerate() {
        let wire = encode(msg, i as u8);
        let (seq, body) = decode(&wire);
        assert_eq!(seq, i as u8);
        let f = frame::Frame::new_checked(&body[..]).unwrap();
        assert_eq!(f.kind(), msg.kind());
        assert_eq!(Message::parse(f.kind(), f.payload()).as_ref(), Ok(msg));
    }
}

#[test]
fn malformed_messages_are_rejected() {
    use wire::Error;
    assert_eq!(Message::parse(0x7f, &[]), Err(Error::UnknownKind));
    assert_eq!(
        Message::parse(kind::HEARTBEAT, &[0; 8]),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::HEARTBEAT, &[0; 10]),
        Err(Error::TrailingBytes)
    );
    assert_eq!(
        Message::parse(kind::PUBLISH, &[2, b'a']),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::PUBLISH, &[1, 0xff, 0x80]),
        Err(Error::NotUtf8)
    );
    assert_eq!(
        Message::parse(kind::SUBSCRIBE, &[b'a'; 65]),
        Err(Error::TooLong)
    );
    let mut hello = vec![0u8; 8];
    hello.push(33);
    hello.extend_from_slice(&[b'n'; 33]);
    hello.push(0);
    assert_eq!(Message::parse(kind::HELLO, &hello), Err(Error::TooLong));
}

#[test]
fn publish_overhead_is_seven_bytes_below_254() {
    // For every topic + payload size whose frame body stays under 254 bytes,
    // with payloads full of zeros (the COBS worst case is no zeros, which is
    // the same length below 254).
    for topic_len in [0usize, 1, 10, 32] {
        let topic = "t".repeat(topic_len);
        for payload_len in 0..(254 - 5 - topic_len) {
            for fill in [0u8, 0x55] {
                let payload = vec![fill; payload_len];
                let wire = encode(
                    &Message::Publish {
                        topic: &topic,
                        payload: &payload,
                    },
                    1,
                );
                assert_eq!(
                    wire.len() - topic_len - payload_len,
                    wire::PUBLISH_OVERHEAD,
                    "topic {topic_len} payload {payload_len}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(k in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(k, &payload);
    }

    /// Valid frames with arbitrary contents, and raw garbage, fed to both
    /// ends in arbitrary chunks: never a panic.
    #[test]
    fn state_machines_never_panic_on_arbitrary_input(
        frames in proptest::collection::vec(
            (0u8..0x14, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80)),
            0..40,
        ),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
        chunk in 1usize..64,
    ) {
        let mut stream = garbage.clone();
        for (k, seq, payload) in &frames {
            let mut out = vec![0u8; frame::encoded_len_for_payload(payload.len())];
            let n = frame::encode(*k, *seq, &[payload], &mut out).unwrap();
            stream.extend_from_slice(&out[..n]);
        }
        let mut dev: Device<128, 256, 2, 4> = Device::new("d", "1", 1, Config::default()).unwrap();
        let mut gw: Gateway<128, 256, 4> = Gateway::new(2, Config::default());
        let mut out = [0u8; 200];
        for (i, c) in stream.chunks(chunk).enumerate() {
            let now = Instant::from_millis(i as u64 * 7);
            let mut input = c;
            while let (Some(_), rest) = gw.handle_rx(input, now) {
                input = rest;
            }
            let mut input = c;
            while let (Some(_), rest) = dev.handle_rx(input, now) {
                input = rest;
            }
            while gw.poll(now).is_some() {}
            while dev.poll(now).is_some() {}
            while gw.poll_transmit(now, &mut out).is_some() {}
            while dev.poll_transmit(now, &mut out).is_some() {}
        }
    }
}

/// Runs both ends over a clean in-memory wire for `ms` milliseconds.
fn exchange<
    const DF: usize,
    const DT: usize,
    const Q: usize,
    const DS: usize,
    const GF: usize,
    const GT: usize,
    const GS: usize,
>(
    dev: &mut Device<DF, DT, Q, DS>,
    gw: &mut Gateway<GF, GT, GS>,
    from_ms: u64,
    ms: u64,
) -> Vec<String> {
    let mut events = Vec::new();
    let mut buf = [0u8; 600];
    for t in (from_ms..from_ms + ms).step_by(5) {
        let now = Instant::from_millis(t);
        while let Some(n) = dev.poll_transmit(now, &mut buf) {
            let mut input = &buf[..n];
            while let (Some(ev), rest) = gw.handle_rx(input, now) {
                events.push(format!("{ev:?}"));
                input = rest;
            }
        }
        while let Some(n) = gw.poll_transmit(now, &mut buf) {
            let mut input = &buf[..n];
            while let (Some(_), rest) = dev.handle_rx(input, now) {
                input = rest;
            }
        }
        while let Some(ev) = gw.poll(now) {
            events.push(format!("{ev:?}"));
        }
        while dev.poll(now).is_some() {}
    }
    events
}

#[test]
fn more_subscriptions_than_the_gateway_holds_are_counted_without_resync_storm() {
    let mut dev: Device<128, 256, 2, 8> = Device::new("d", "1", 1, Config::default()).unwrap();
    let mut gw: Gateway<128, 256, 4> = Gateway::new(2, Config::default());
    for i in 0..6 {
        dev.subscribe(&format!("topic/{i}")).unwrap();
    }
    let events = exchange(&mut dev, &mut gw, 0, 3000);
    assert!(gw.is_up() && dev.is_up());
    assert_eq!(gw.subscriptions().count(), 4);
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Subscribe")).count(),
        4
    );
    let s = gw.stats();
    assert_eq!(s.sub_overflow, 2, "{s:?} {:?}", dev.stats());
    assert_eq!(s.resyncs, 0);
    assert_eq!(s.ups, 1);
}

#[test]
fn oversize_and_bad_publishes_are_refused_and_counted() {
    use banyan_core::link::SendError;
    let mut dev: Device<128, 256, 2, 8> = Device::new("d", "1", 1, Config::default()).unwrap();
    let mut gw: Gateway<512, 2048, 4> = Gateway::new(2, Config::default());
    dev.subscribe("a").unwrap();
    exchange(&mut dev, &mut gw, 0, 100);
    let now = Instant::from_millis(100);
    // The device accepts frames of at most 128 encoded bytes.
    assert_eq!(gw.publish("a", &[1; 200], now), Err(SendError::TooLarge));
    assert_eq!(
        gw.publish(&"t".repeat(256), &[], now),
        Err(SendError::TopicTooLong)
    );
    assert_eq!(gw.stats().drop_too_large, 2);
    let max = banyan_core::frame::max_payload_len(129) - 2; // topic length byte + "a"
    assert_eq!(gw.publish("a", &vec![1; max], now), Ok(()));
    assert!(Device::<128, 256, 2, 8>::new(&"n".repeat(33), "1", 1, Config::default()).is_err());
    assert_eq!(
        dev.subscribe(&"s".repeat(65)),
        Err(banyan_core::link::SubscribeError::TopicTooLong)
    );
}

/// Drives both ends only at the times `poll_at` asks for: the link must stay
/// up (heartbeats on time, no false timeout) without busy looping.
#[test]
fn poll_at_schedules_heartbeats_and_timeouts() {
    let mut dev: Device<128, 256, 2, 4> = Device::new("d", "1", 1, Config::default()).unwrap();
    let mut gw: Gateway<128, 256, 4> = Gateway::new(2, Config::default());
    dev.subscribe("a").unwrap();
    let mut buf = [0u8; 200];
    let mut now = Instant::ZERO;
    let mut wakeups = 0;
    while now.millis() < 60_000 {
        wakeups += 1;
        assert!(wakeups < 5_000, "busy loop at {now:?}");
        // Service both ends fully at `now`.
        for _ in 0..10 {
            let mut moved = false;
            while let Some(n) = dev.poll_transmit(now, &mut buf) {
                moved = true;
                let mut input = &buf[..n];
                while let (Some(_), rest) = gw.handle_rx(input, now) {
                    input = rest;
                }
            }
            while let Some(n) = gw.poll_transmit(now, &mut buf) {
                moved = true;
                let mut input = &buf[..n];
                while let (Some(_), rest) = dev.handle_rx(input, now) {
                    input = rest;
                }
            }
            while gw.poll(now).is_some() {}
            while dev.poll(now).is_some() {}
            if !moved {
                break;
            }
        }
        let next = gw.poll_at().map_or(dev.poll_at(), |g| g.min(dev.poll_at()));
        assert!(
            next > now,
            "poll_at {next:?} not after {now:?} with nothing to do"
        );
        now = next;
    }
    assert!(dev.is_up() && gw.is_up());
    let (ds, gs) = (dev.stats(), gw.stats());
    assert_eq!((ds.ups, ds.downs, gs.ups, gs.downs), (1, 0, 1, 0));
    // About 4 heartbeats a second each way.
    assert!(ds.frames_tx > 200 && gs.frames_tx > 200, "{ds:?} {gs:?}");
    assert!(wakeups < 1_000, "{wakeups} wake-ups for 60 s");
}

/// After a pause the next frame starts with a lone delimiter: garbage the
/// line left in the peer's de-framer (noise, the tail of a corrupted frame
/// whose delimiter was lost) becomes a frame of its own, dropped and
/// counted, and the good frame after it arrives. Within a burst frames go
/// back to back.
#[test]
fn a_frame_after_a_pause_flushes_the_peers_garbage() {
    let mut dev: Device<128, 512, 2, 8> = Device::new("d", "1", 1, Config::default()).unwrap();
    let mut gw: Gateway<128, 512, 4> = Gateway::new(2, Config::default());
    exchange(&mut dev, &mut gw, 0, 100);
    assert!(gw.is_up() && dev.is_up());
    let errors = |gw: &Gateway<128, 512, 4>| gw.stats().frame.dropped();
    let before = errors(&gw);
    // Noise with no delimiter: the gateway holds it as a partial frame.
    let t = Instant::from_millis(100);
    assert!(matches!(gw.handle_rx(&[0x55, 0x13, 0x77], t), (None, [])));
    // 50 ms later the device publishes twice in the same millisecond.
    let now = Instant::from_millis(150);
    dev.publish("a", &[0xc0], now).unwrap();
    dev.publish("a", &[0xc3], now).unwrap();
    let mut buf = [0u8; 130];
    let mut frames = Vec::new();
    while let Some(n) = dev.poll_transmit(now, &mut buf) {
        frames.push(buf[..n].to_vec());
    }
    // (A heartbeat may lead: the first frame of the burst carries the
    // delimiter, the others do not.)
    assert_eq!(frames[0][0], frame::DELIMITER, "{frames:?}");
    assert!(
        frames[1..].iter().all(|f| f[0] != frame::DELIMITER),
        "{frames:?}"
    );
    let mut published = 0;
    for f in &frames {
        let mut input = &f[..];
        while let (Some(ev), rest) = gw.handle_rx(input, now) {
            published += usize::from(format!("{ev:?}").starts_with("Publish"));
            input = rest;
        }
    }
    assert_eq!(published, 2, "{:?}", gw.stats());
    assert_eq!(errors(&gw), before + 1, "{:?}", gw.stats());
    // A buffer too small for a frame and the delimiter: no delimiter.
    let later = Instant::from_millis(300);
    dev.publish("a", &[0xc2], later).unwrap();
    let mut small = [0u8; 129];
    let mut firsts = Vec::new();
    while let Some(n) = dev.poll_transmit(later, &mut small) {
        firsts.push(small[..n][0]);
    }
    assert!(!firsts.is_empty() && !firsts.contains(&frame::DELIMITER));
}

/// A device that ignores flow control: the gateway delivers the PUBLISHes
/// within the credit it granted and drops the rest, counted.
#[test]
fn publishes_beyond_the_granted_credit_are_dropped_and_counted() {
    let mut dev: Device<128, 512, 2, 8> = Device::new("d", "1", 1, Config::default()).unwrap();
    let mut gw: Gateway<128, 512, 4> = Gateway::new(2, Config::default());
    exchange(&mut dev, &mut gw, 0, 100);
    assert!(gw.is_up());
    let window = usize::from(Config::default().gateway_credits);
    // Raw PUBLISH frames, in sequence after the device's last frame, with
    // no heartbeat from the gateway in between (no new credit).
    let seq0 = dev.stats().frames_tx as u8;
    let now = Instant::from_millis(100);
    let mut delivered = 0;
    for i in 0..window + 5 {
        let payload = [0xcd, 0, i as u8];
        let msg = Message::Publish {
            topic: "t",
            payload: &payload,
        };
        let wire = encode(&msg, seq0.wrapping_add(i as u8));
        let mut input = &wire[..];
        while let (Some(ev), rest) = gw.handle_rx(input, now) {
            delivered += usize::from(format!("{ev:?}").starts_with("Publish"));
            input = rest;
        }
    }
    let s = gw.stats();
    assert_eq!(delivered, window, "{s:?}");
    assert_eq!(s.drop_over_credit, 5, "{s:?}");
    assert_eq!(s.publish_rx as usize, window + 5, "{s:?}");
    assert_eq!((s.seq_gaps, s.duplicates), (0, 0), "{s:?}");
}
