//! The service messages of the link: SERVE / UNSERVE declarations and
//! REQUEST / REPLY. Golden frames, round trips, malformed input rejected
//! and counted, and both state machines: a request goes down, its reply
//! comes back, credits bound requests like PUBLISHes, and every request
//! lost on a faulty wire is counted.

use banyan_core::frame::{self, Deframer, Feed};
use banyan_core::link::wire::{self, kind, status, Message};
use banyan_core::link::{gateway, Config, Device, Gateway, Instant, SendError};

fn encode(msg: &Message<'_>, seq: u8) -> Vec<u8> {
    let mut out = vec![0u8; 600];
    let n = msg.encode(seq, &mut out).unwrap();
    out.truncate(n);
    out
}

fn parse_wire(wire: &[u8]) -> (u8, u8, Vec<u8>) {
    let mut d: Deframer<600> = Deframer::new();
    match d.feed(wire) {
        Feed::Frame { frame, rest } => {
            assert!(rest.is_empty());
            (frame.kind(), frame.seq(), frame.payload().to_vec())
        }
        other => panic!("{other:?}"),
    }
}

/// REQUEST, seq 3, id 7, service `info`, body `{}` (`80`).
const GOLDEN_REQUEST: [u8; 16] = [
    0x04, 0x11, 0x03, 0x07, 0x01, 0x01, 0x09, 0x04, 0x69, 0x6e, 0x66, 0x6f, 0x80, 0x02, 0x3b, 0x00,
];

/// REPLY, seq 1, id 7, status OK, body `{'value': 1}`.
const GOLDEN_REPLY: [u8; 19] = [
    0x04, 0x12, 0x01, 0x07, 0x01, 0x01, 0x01, 0x0b, 0x81, 0xa5, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x01,
    0x15, 0x40, 0x00,
];

/// SERVE, seq 2, `info`.
const GOLDEN_SERVE: [u8; 10] = [0x09, 0x07, 0x02, 0x69, 0x6e, 0x66, 0x6f, 0xd8, 0x94, 0x00];

#[test]
fn golden_request_reply_serve() {
    let req = Message::Request {
        id: 7,
        service: "info",
        body: &[0x80],
    };
    let wire_req = encode(&req, 3);
    // kind, seq, id LE, name length, name, body, then CRC and COBS.
    assert_eq!(
        parse_wire(&wire_req),
        (
            kind::REQUEST,
            3,
            vec![7, 0, 0, 0, 4, b'i', b'n', b'f', b'o', 0x80]
        )
    );
    assert_eq!(wire_req, GOLDEN_REQUEST);
    assert_eq!(wire_req.len(), wire::REQUEST_OVERHEAD + 4 + 1);

    let body = [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01];
    let rep = Message::Reply {
        id: 7,
        status: status::OK,
        body: &body,
    };
    let wire_rep = encode(&rep, 1);
    let mut expect = vec![7, 0, 0, 0, status::OK];
    expect.extend_from_slice(&body);
    assert_eq!(parse_wire(&wire_rep), (kind::REPLY, 1, expect));
    assert_eq!(wire_rep, GOLDEN_REPLY);
    assert_eq!(wire_rep.len(), wire::REPLY_OVERHEAD + body.len());

    let serve = encode(&Message::Serve("info"), 2);
    assert_eq!(parse_wire(&serve), (kind::SERVE, 2, b"info".to_vec()));
    assert_eq!(serve, GOLDEN_SERVE);
}

#[test]
fn service_messages_round_trip() {
    let long = "s".repeat(wire::MAX_SERVICE_LEN);
    let msgs = [
        Message::Serve("info"),
        Message::Serve(&long),
        Message::Unserve("state"),
        Message::Request {
            id: 0,
            service: "x",
            body: &[],
        },
        Message::Request {
            id: u32::MAX,
            service: &long,
            body: &[0xc0; 200],
        },
        Message::Reply {
            id: 0xDEAD_BEEF,
            status: status::FAILED,
            body: b"no such pin",
        },
        Message::Reply {
            id: 1,
            status: 0xff,
            body: &[],
        },
    ];
    for (i, msg) in msgs.iter().enumerate() {
        let wire = encode(msg, i as u8);
        let (k, seq, payload) = parse_wire(&wire);
        assert_eq!((k, seq), (msg.kind(), i as u8));
        assert_eq!(Message::parse(k, &payload).as_ref(), Ok(msg));
        assert!(msg.is_data() == matches!(msg, Message::Request { .. } | Message::Reply { .. }));
    }
    // Round trip through frame views too.
    let wire = encode(&msgs[4], 9);
    let mut d: Deframer<600> = Deframer::new();
    let Feed::Frame { frame: f, .. } = d.feed(&wire) else {
        panic!()
    };
    assert!(frame::Frame::new_checked(f.as_bytes()).is_ok());
}

#[test]
fn malformed_service_messages_are_rejected() {
    use wire::Error;
    assert_eq!(Message::parse(kind::SERVE, &[]), Err(Error::Empty));
    assert_eq!(Message::parse(kind::UNSERVE, &[]), Err(Error::Empty));
    assert_eq!(
        Message::parse(kind::SERVE, &[b'a'; wire::MAX_SERVICE_LEN + 1]),
        Err(Error::TooLong)
    );
    assert_eq!(Message::parse(kind::SERVE, &[0xff]), Err(Error::NotUtf8));
    // REQUEST: id truncated, name missing, empty name, name too long, name
    // longer than the payload, name not UTF-8.
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 2, 3]),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 0, 0, 0]),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 0, 0, 0, 0, 0x80]),
        Err(Error::Empty)
    );
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 0, 0, 0, 33]),
        Err(Error::TooLong)
    );
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 0, 0, 0, 3, b'a']),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::REQUEST, &[1, 0, 0, 0, 1, 0xfe]),
        Err(Error::NotUtf8)
    );
    // REPLY: id or status truncated.
    assert_eq!(
        Message::parse(kind::REPLY, &[1, 0, 0]),
        Err(Error::Truncated)
    );
    assert_eq!(
        Message::parse(kind::REPLY, &[1, 0, 0, 0]),
        Err(Error::Truncated)
    );
    assert!(Message::parse(kind::REPLY, &[1, 0, 0, 0, 0]).is_ok());
}

type Dev = Device<256, 512, 4, 8>;
type Gw = Gateway<256, 2048, 8>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Up,
    Reset,
    Rejoin,
    Down,
    Sub(String),
    Unsub(String),
    Serve(String),
    Unserve(String),
    Publish(String),
    Reply(u32, u8, Vec<u8>),
}

fn own(ev: gateway::Event<'_>) -> Ev {
    match ev {
        gateway::Event::Up(_) => Ev::Up,
        gateway::Event::Reset(_) => Ev::Reset,
        gateway::Event::Rejoin(_) => Ev::Rejoin,
        gateway::Event::Down => Ev::Down,
        gateway::Event::Subscribe(t) => Ev::Sub(t.into()),
        gateway::Event::Unsubscribe(t) => Ev::Unsub(t.into()),
        gateway::Event::Serve(t) => Ev::Serve(t.into()),
        gateway::Event::Unserve(t) => Ev::Unserve(t.into()),
        gateway::Event::Publish { topic, .. } => Ev::Publish(topic.into()),
        gateway::Event::Reply { id, status, body } => Ev::Reply(id, status, body.to_vec()),
        _ => panic!("unknown event"),
    }
}

/// Answers every queued request of `dev`: `echo` with its body, anything
/// else with UNKNOWN_SERVICE. Returns the ids answered.
fn serve_all(dev: &mut Dev, now: Instant) -> Vec<u32> {
    let mut ids = Vec::new();
    loop {
        // `let … else`: the guard is a plain binding, so it can be dropped
        // before replying (a `while let` scrutinee would live to the end of
        // the body).
        let Some(msg) = dev.recv() else { break };
        let Some(req) = msg.request() else {
            continue;
        };
        let (id, known, body) = (req.id, req.service == "echo", req.body.to_vec());
        drop(msg);
        let r = if known {
            dev.reply(id, status::OK, &body, now)
        } else {
            dev.reply(id, status::UNKNOWN_SERVICE, b"unknown", now)
        };
        if r.is_ok() {
            ids.push(id);
        }
    }
    ids
}

/// Shuttles bytes for `ms` ms (5 ms steps), the device answering requests;
/// `drop_every`: drop every n-th frame in each direction (0: none).
fn run(dev: &mut Dev, gw: &mut Gw, from: u64, ms: u64, drop_every: usize) -> Vec<Ev> {
    let mut events = Vec::new();
    let mut buf = [0u8; 300];
    let mut n_frames = 0usize;
    for t in (from..from + ms).step_by(5) {
        let now = Instant::from_millis(t);
        serve_all(dev, now);
        while let Some(n) = dev.poll_transmit(now, &mut buf) {
            n_frames += 1;
            if drop_every > 0 && n_frames.is_multiple_of(drop_every) {
                continue;
            }
            let mut input = &buf[..n];
            while let (Some(ev), rest) = gw.handle_rx(input, now) {
                events.push(own(ev));
                input = rest;
            }
        }
        while let Some(n) = gw.poll_transmit(now, &mut buf) {
            n_frames += 1;
            if drop_every > 0 && n_frames.is_multiple_of(drop_every) {
                continue;
            }
            let mut input = &buf[..n];
            while let (Some(_), rest) = dev.handle_rx(input, now) {
                input = rest;
            }
        }
        while let Some(ev) = gw.poll(now) {
            events.push(own(ev));
        }
        while dev.poll(now).is_some() {}
    }
    events
}

fn up_pair() -> (Dev, Gw, Vec<Ev>) {
    let mut dev = Dev::new("d", "1", 11, Config::default()).unwrap();
    dev.subscribe("info").unwrap();
    dev.serve("info").unwrap();
    dev.serve("echo").unwrap();
    let mut gw = Gw::new(5, Config::default());
    let evs = run(&mut dev, &mut gw, 0, 100, 0);
    (dev, gw, evs)
}

#[test]
fn services_are_declared_apart_from_subscriptions() {
    let (mut dev, mut gw, evs) = up_pair();
    assert_eq!(
        evs,
        vec![
            Ev::Up,
            Ev::Sub("info".into()),
            Ev::Serve("info".into()),
            Ev::Serve("echo".into())
        ]
    );
    assert_eq!(gw.subscriptions().collect::<Vec<_>>(), ["info"]);
    assert_eq!(gw.services().collect::<Vec<_>>(), ["info", "echo"]);
    assert_eq!(dev.services().collect::<Vec<_>>(), ["info", "echo"]);
    // The digests agree: heartbeats for a few seconds cause no resync.
    let evs = run(&mut dev, &mut gw, 100, 3000, 0);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(gw.stats().resyncs, 0);
    // A service and a subscription of the same text weigh differently.
    assert_ne!(wire::service_digest("info"), wire::sub_digest(["info"]));
    // Withdrawn services are reported.
    assert!(dev.unserve("echo"));
    assert!(!dev.unserve("echo"));
    let evs = run(&mut dev, &mut gw, 3100, 50, 0);
    assert_eq!(evs, vec![Ev::Unserve("echo".into())]);
    assert_eq!(gw.services().collect::<Vec<_>>(), ["info"]);
    // Names are checked.
    assert!(dev.serve("").is_err());
    assert!(dev.serve(&"x".repeat(33)).is_err());
}

#[test]
fn request_goes_down_and_reply_comes_back() {
    let (mut dev, mut gw, _) = up_pair();
    let now = Instant::from_millis(100);
    gw.request(41, "echo", &[0x81, 0xa1, b'a', 0x01], now)
        .unwrap();
    gw.request(42, "nope", &[0x80], now).unwrap();
    let evs = run(&mut dev, &mut gw, 100, 50, 0);
    assert_eq!(
        evs,
        vec![
            Ev::Reply(41, status::OK, vec![0x81, 0xa1, b'a', 0x01]),
            Ev::Reply(42, status::UNKNOWN_SERVICE, b"unknown".to_vec()),
        ]
    );
    let (g, d) = (gw.stats(), dev.stats());
    // Requests and replies are data messages: counted with the PUBLISHes.
    assert_eq!((g.publish_tx, g.publish_rx), (2, 2));
    assert_eq!((d.publish_tx, d.publish_rx), (2, 2));
    assert_eq!(g.malformed + d.malformed + g.unexpected + d.unexpected, 0);
    // Service names are checked before anything is queued, and counted.
    assert_eq!(gw.request(1, "", &[], now), Err(SendError::TopicTooLong));
    assert_eq!(
        gw.request(1, &"x".repeat(33), &[], now),
        Err(SendError::TopicTooLong)
    );
    assert_eq!(gw.stats().drop_too_large, 2);
}

#[test]
fn requests_take_credits_and_refusals_are_counted() {
    let (mut dev, mut gw, _) = up_pair();
    let now = Instant::from_millis(100);
    // The device grants 4 slots: the fifth request has no credit.
    for id in 0..4 {
        gw.request(id, "echo", &[0x80], now).unwrap();
    }
    assert_eq!(
        gw.request(4, "echo", &[0x80], now),
        Err(SendError::NoCredit)
    );
    assert_eq!(gw.stats().drop_no_credit, 1);
    // Delivered without draining the device: its queue holds them.
    let mut buf = [0u8; 300];
    while let Some(n) = gw.poll_transmit(now, &mut buf) {
        let mut input = &buf[..n];
        while let (Some(_), rest) = dev.handle_rx(input, now) {
            input = rest;
        }
    }
    assert_eq!(dev.queued(), 4);
    assert_eq!(dev.stats().drop_queue_full, 0);
    // Served: the credits come back with the replies' heartbeat.
    let evs = run(&mut dev, &mut gw, 100, 300, 0);
    assert_eq!(evs.iter().filter(|e| matches!(e, Ev::Reply(..))).count(), 4);
    assert!(gw.credits() >= 4);
    // A device that is down refuses replies, counted.
    let mut lone = Dev::new("x", "1", 1, Config::default()).unwrap();
    assert_eq!(
        lone.reply(1, status::OK, &[0x80], now),
        Err(SendError::NotUp)
    );
    assert_eq!(lone.stats().drop_not_up, 1);
}

#[test]
fn misdirected_and_malformed_service_frames_are_counted() {
    let (mut dev, mut gw, _) = up_pair();
    let now = Instant::from_millis(100);
    let mut frame = [0u8; 64];
    // A REQUEST sent to the gateway, and a REPLY/SERVE sent to the device:
    // valid messages in the wrong direction (sequence numbers a little
    // ahead: accepted, the gap counted).
    let n = Message::Request {
        id: 1,
        service: "info",
        body: &[],
    }
    .encode(100, &mut frame)
    .unwrap();
    let _ = gw.handle_rx(&frame[..n], now);
    assert_eq!(gw.stats().unexpected, 1);
    for (i, msg) in [
        Message::Reply {
            id: 1,
            status: 0,
            body: &[0x80],
        },
        Message::Serve("x"),
    ]
    .iter()
    .enumerate()
    {
        let n = msg.encode(100 + i as u8, &mut frame).unwrap();
        let _ = dev.handle_rx(&frame[..n], now);
    }
    assert_eq!(dev.stats().unexpected, 2);
    // A REQUEST with an empty service name: malformed.
    let mut out = [0u8; 64];
    let n = frame::encode(kind::REQUEST, 110, &[&[1, 0, 0, 0, 0]], &mut out).unwrap();
    assert_eq!(dev.handle_rx(&out[..n], now).0, None);
    assert_eq!(dev.stats().malformed, 1, "{:?}", dev.stats());
    assert_eq!(dev.queued(), 0);
}

#[test]
fn reset_mid_request_is_reported_and_services_come_back() {
    let (mut dev, mut gw, _) = up_pair();
    let now = Instant::from_millis(100);
    gw.request(9, "echo", &[0x80], now).unwrap();
    let mut buf = [0u8; 300];
    let n = gw.poll_transmit(now, &mut buf).unwrap();
    let _ = dev.handle_rx(&buf[..n], now);
    assert_eq!(dev.queued(), 1);
    // The MCU reboots before answering: a new session.
    let mut dev = Dev::new("d", "1", 12, Config::default()).unwrap();
    dev.serve("echo").unwrap();
    let evs = run(&mut dev, &mut gw, 200, 100, 0);
    assert_eq!(evs, vec![Ev::Reset, Ev::Up, Ev::Serve("echo".into())]);
    // The request was sent, never answered: unconfirmed at the gateway.
    assert_eq!(gw.stats().publish_unconfirmed, 1);
}

#[test]
fn re_hello_sweeps_services_not_declared_again() {
    let (mut dev, mut gw, _) = up_pair();
    // Cable unplugged (both time out), the device withdraws `echo` meanwhile.
    let mut t = 100;
    let mut buf = [0u8; 300];
    while t < 1600 {
        let now = Instant::from_millis(t);
        while dev.poll_transmit(now, &mut buf).is_some() {}
        while gw.poll_transmit(now, &mut buf).is_some() {}
        while gw.poll(now).is_some() {}
        while dev.poll(now).is_some() {}
        t += 5;
    }
    assert!(!gw.is_up() && !dev.is_up());
    assert!(dev.unserve("echo"));
    let evs = run(&mut dev, &mut gw, 1600, 600, 0);
    // The same session says HELLO again: a rejoin (requests in flight are
    // lost), then up, then the sweep.
    assert_eq!(evs, vec![Ev::Rejoin, Ev::Up, Ev::Unserve("echo".into())]);
    assert_eq!(gw.services().collect::<Vec<_>>(), ["info"]);
}

/// On a wire that drops every 7th frame each way, every request is
/// answered, or its loss is counted: by the device (REQUEST lost or its
/// reply refused) or the gateway (REPLY lost, or unconfirmed).
#[test]
fn lossy_wire_counts_every_lost_request() {
    let mut dev = Dev::new("d", "1", 11, Config::default()).unwrap();
    dev.serve("echo").unwrap();
    let mut gw = Gw::new(5, Config::default());
    run(&mut dev, &mut gw, 0, 200, 0);
    let mut sent = 0u32;
    let mut replies = 0u32;
    let mut t = 200;
    while t < 20_000 {
        let now = Instant::from_millis(t);
        if gw.is_up() && gw.credits() > 0 && gw.request(sent, "echo", &[0x80], now).is_ok() {
            sent += 1;
        }
        let evs = run(&mut dev, &mut gw, t, 20, 7);
        replies += evs.iter().filter(|e| matches!(e, Ev::Reply(..))).count() as u32;
        t += 20;
    }
    // Let the heartbeats settle the counters on a clean wire.
    let evs = run(&mut dev, &mut gw, t, 2000, 0);
    replies += evs.iter().filter(|e| matches!(e, Ev::Reply(..))).count() as u32;
    let (g, d) = (gw.stats(), dev.stats());
    assert!(sent > 100, "sent {sent}");
    assert!(replies > 0);
    // Requests: transmitted = received by the device + lost (seen by the
    // device) + unconfirmed (session ended before the ack).
    assert_eq!(g.publish_tx, sent);
    let lost_requests = d.publish_lost + g.publish_unconfirmed;
    assert!(d.publish_rx + lost_requests >= sent, "{g:?} {d:?}");
    // Replies: queued = answered requests minus refusals; each transmitted
    // one arrives or is counted lost by the gateway.
    let lost_replies = g.publish_lost + d.publish_unconfirmed;
    assert!(g.publish_rx + lost_replies >= d.publish_tx, "{g:?} {d:?}");
    assert_eq!(replies, g.publish_rx - g.drop_over_credit);
    // Nothing was silently dropped: every request not answered is in a
    // counter.
    let unanswered = sent - replies;
    let counted = lost_requests + d.send_refused() + lost_replies + g.drop_over_credit;
    assert!(
        counted >= unanswered,
        "unanswered {unanswered}, counted {counted}"
    );
}
