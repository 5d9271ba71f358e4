//! Writes the committed seed corpus under `fuzz/seeds/<target>/`:
//! golden MessagePack payloads (the bytes Python's `packb(use_bin_type=True)`
//! writes, as in the core's tests), valid serial frames, and the byte streams
//! of a real device ↔ gateway handshake recorded as link scripts.
//!
//! Run from `fuzz/`: `cargo +nightly run --example gen-seeds` (deterministic output).

use banyan_core::frame;
use banyan_core::link::{Config, Device, Gateway, Instant};
use banyan_core::robot::{golden, StoppedBy};
use banyan_fuzz::push_op;
use std::fs;
use std::path::Path;

/// Golden payloads: name and msgpack bytes.
const PAYLOADS: &[(&str, &[u8])] = &[
    // {'value': 1}
    ("value", b"\x81\xa5value\x01"),
    // {'left': 0.5, 'right': -1, 'duration_ms': 500}
    (
        "run_motors",
        b"\x83\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xff\xabduration_ms\xcd\x01\xf4",
    ),
    // {'front': True, 'rear': 0.25}
    ("light_leds", b"\x82\xa5front\xc3\xa4rear\xcb\x3f\xd0\0\0\0\0\0\0"),
    // {'command': 'digital_write', 'pin': 4, 'value': 1}
    (
        "digital_write",
        b"\x83\xa7command\xaddigital_write\xa3pin\x04\xa5value\x01",
    ),
    // {'command': 'i2c_write', 'addr': 72, 'data': [1, 2, 255]}
    (
        "i2c_write",
        b"\x83\xa7command\xa9i2c_write\xa4addr\x48\xa4data\x93\x01\x02\xcc\xff",
    ),
    // {'command': 'set_mode_stepper', 'pins': [1, 2, 3, 4], 'steps_per_revolution': 512}
    (
        "set_mode_stepper",
        b"\x83\xa7command\xb0set_mode_stepper\xa4pins\x94\x01\x02\x03\x04\xb4steps_per_revolution\xcd\x02\x00",
    ),
    // {'report': 'analog_input', 'pin': 2, 'value': 512}
    (
        "analog_input",
        b"\x83\xa6report\xacanalog_input\xa3pin\x02\xa5value\xcd\x02\x00",
    ),
    // {'a': [None, False, -33, 70000, 'x', b'\x00'], 'n': {'d': 1.5}}
    (
        "nested",
        b"\x82\xa1a\x96\xc0\xc2\xd0\xdf\xce\x00\x01\x11\x70\xa1x\xc4\x01\x00\xa1n\x81\xa1d\xcb\x3f\xf8\0\0\0\0\0\0",
    ),
    // msgpack-numpy style: bin keys
    ("numpy", b"\x82\xc4\x02nd\xc3\xc4\x04type\xa3<f8"),
    // a float32 and a timestamp ext (-1, 4 bytes)
    ("f32_ts", b"\x92\xca\x3f\x80\x00\x00\xd6\xff\x00\x00\x00\x01"),
    // str16 / array16 / map16 headers
    ("wide", b"\xdc\x00\x02\xda\x00\x01z\xde\x00\x01\xa1k\xc0"),
];

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn with_prefix(p: u8, b: &[u8]) -> Vec<u8> {
    let mut v = vec![p];
    v.extend_from_slice(b);
    v
}

/// Runs a device and a gateway against each other and records what each
/// receives as a link script (Rx records for bytes, Transmit/Poll records
/// for the receiver's own turns), so the fuzzer starts from a real session.
fn handshake() -> (Vec<u8>, Vec<u8>) {
    let mut dev: Device<128, 256, 2, 4> =
        Device::new("fuzz-dev", "0.1.0", 0x0bad_cafe, Config::default()).unwrap();
    dev.subscribe("run_motors").unwrap();
    dev.subscribe("light").unwrap();
    dev.serve("info").unwrap();
    let mut gw: Gateway<128, 512, 4> = Gateway::new(0x6a7e_0001, Config::default());
    let (mut to_gw, mut to_dev) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 129];
    let mut now = 0u64;
    for round in 0..12 {
        let dt = if round == 0 { 0 } else { 25 }; // 100 ms steps
        now += u64::from(dt) * 4;
        let t = Instant::from_millis(now);
        if dev.is_up() && round == 6 {
            dev.publish("sensors", b"\x81\xa5value\x01", t).unwrap();
            gw.publish("run_motors", b"\x81\xa4left\xcb\x3f\xe0\0\0\0\0\0\0", t)
                .unwrap();
            gw.request(1, "info", b"\x80", t).unwrap();
        }
        // Device turn: its script gets a Poll + Transmit at this time.
        push_op(&mut to_dev, 0x01, dt, &[]);
        push_op(&mut to_dev, 0x02, 0, &[]);
        while let Some(n) = dev.poll_transmit(t, &mut buf) {
            push_op(&mut to_gw, 0x00, 0, &buf[..n]);
            let mut input = &buf[..n];
            loop {
                let (ev, rest) = gw.handle_rx(input, t);
                input = rest;
                if ev.is_none() {
                    break;
                }
            }
        }
        // Gateway turn.
        push_op(&mut to_gw, 0x01, dt, &[]);
        push_op(&mut to_gw, 0x02, 0, &[]);
        while let Some(n) = gw.poll_transmit(t, &mut buf) {
            push_op(&mut to_dev, 0x00, 0, &buf[..n]);
            let mut input = &buf[..n];
            loop {
                let (ev, rest) = dev.handle_rx(input, t);
                input = rest;
                if ev.is_none() {
                    break;
                }
            }
        }
        push_op(&mut to_dev, 0x04, 0, &[0]); // recv
        loop {
            let Some(msg) = dev.recv() else { break };
            let id = msg.request().map(|r| r.id);
            drop(msg);
            if let Some(id) = id {
                dev.reply(id, 0, b"\x81\xa4name\xa8fuzz-dev", t).unwrap();
            }
        }
    }
    assert!(
        dev.is_up() && gw.is_up(),
        "seed handshake did not bring the link up"
    );
    // PUBLISH + REQUEST to the device, PUBLISH + REPLY to the gateway.
    assert!(dev.stats().publish_rx == 2 && gw.stats().publish_rx == 2);
    (to_gw, to_dev)
}

/// A ZMTP frame: flags, 1- or 8-byte size, body.
fn zmtp_frame(out: &mut Vec<u8>, flags: u8, body: &[u8]) {
    if body.len() > 255 {
        out.push(flags | 0x02);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(body.len() as u8);
    }
    out.extend_from_slice(body);
}

fn main() {
    // ZMTP after the greeting: READY, a SUBSCRIBE command, a subscription
    // message, a PING, [topic, payload] messages, one of them long.
    let mut zmtp = vec![60, 7];
    zmtp_frame(
        &mut zmtp,
        0x04,
        b"\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB",
    );
    zmtp_frame(&mut zmtp, 0x04, b"\x09SUBSCRIBEecho");
    zmtp_frame(&mut zmtp, 0x00, b"\x01reply");
    zmtp_frame(&mut zmtp, 0x04, b"\x04PING\x00\x64ctx");
    for (name, p) in PAYLOADS {
        zmtp_frame(&mut zmtp, 0x01, name.as_bytes());
        zmtp_frame(&mut zmtp, 0x00, p);
    }
    zmtp_frame(&mut zmtp, 0x01, b"big");
    zmtp_frame(&mut zmtp, 0x00, &[0x55; 300]);
    write("zmtp_decoder", "session", &zmtp);

    for (name, p) in PAYLOADS {
        write("msg_validate", name, &with_prefix(0x00, p));
        write("cmd_parse", name, p);
        let mut m = vec![0x01];
        m.extend_from_slice(b"topic\xff\x00");
        m.extend_from_slice(p);
        write("gateway_wire", name, &m);
    }
    write(
        "msg_validate",
        "limits_small",
        &with_prefix(0x97, b"\x91\x81\xa1k\x90"),
    );

    // Frames: the core's golden frame, two frames with garbage around them,
    // and a PUBLISH-sized one.
    let mut stream = vec![0x55, 0x13, 0x00];
    let mut wire = [0u8; 128];
    let n = frame::encode(0x10, 7, &[b"h", b"i"], &mut wire).unwrap();
    write("frame_deframer", "golden", &with_prefix(3, &wire[..n]));
    stream.extend_from_slice(&wire[..n]);
    let n = frame::encode(0x03, 8, &[&[0, 0, 1, 0, 16, 0, 2, 0, 0]], &mut wire).unwrap();
    stream.extend_from_slice(&wire[..n]);
    stream.extend_from_slice(&[0x02, 0x01, 0x00, 0x00]);
    write(
        "frame_deframer",
        "two_frames_garbage",
        &with_prefix(7, &stream),
    );
    let n = frame::encode(0x10, 9, &[b"\x0arun_motors", PAYLOADS[1].1], &mut wire).unwrap();
    write("frame_deframer", "publish", &with_prefix(11, &wire[..n]));

    let (to_gw, to_dev) = handshake();
    write("link_gateway", "handshake", &to_gw);
    write("link_device", "handshake", &to_dev);

    // Device ↔ gateway pair: a clean session with traffic, then the same with
    // a dropped, a corrupted and a duplicated frame.
    let mut clean = Vec::new();
    for _ in 0..8 {
        clean.extend_from_slice(&[0, 0, 1, 0, 6, 0, 2, 12]);
    }
    clean.extend_from_slice(&[
        3, 2, 4, 0, 0, 0, 1, 0, 5, 0, 8, 1, 0, 0, 1, 0, 9, 0, 0, 0, 1, 0,
    ]);
    write("link_pair", "clean", &clean);
    let mut faulty = clean.clone();
    faulty.extend_from_slice(&[
        7, 0, 0, 0, 7, 16, 1, 0, 7, 2, 0, 0, 2, 200, 6, 0, 0, 0, 1, 0,
    ]);
    write("link_pair", "faults", &faulty);

    // Topic ops: subscribe twice, match, unsubscribe, Subscribers ops.
    write(
        "topic_table",
        "basic",
        b"\x00\x04run_\x00\x04run_\x02\x04run_\x06\x02ab\x46\x01a\x07\x02ab\x04\x00\x01\x03run",
    );
    write(
        "topic_table",
        "fill",
        b"\x00\x01a\x00\x01b\x00\x01c\x00\x01d\x00\x01e\x00\x07toolong",
    );

    // Robot: the golden command sequence of tests/golden/ as robot_handle
    // records (op, dt in 8 ms units, len, data).
    let golden = golden::parse(include_str!("../../tests/golden/robot_sequence.txt")).unwrap();
    let (mut seq, mut t) = (Vec::new(), 0u64);
    for step in &golden.steps {
        let dt = u8::try_from((step.t_ms - t) / 8).unwrap_or(u8::MAX);
        t += u64::from(dt) * 8;
        match &step.action {
            golden::Action::Command { topic, payload } => {
                let op = match topic.as_str() {
                    "run_motors" => 0,
                    "light_leds" => 1,
                    _ => 0x40,
                };
                seq.extend([op, dt, u8::try_from(payload.len()).unwrap()]);
                seq.extend_from_slice(payload);
            }
            golden::Action::Poll => seq.extend([2, dt, 0]),
            golden::Action::Stop(r) => {
                let i = StoppedBy::ALL.iter().position(|x| x == r).unwrap();
                seq.extend([3, dt, 1, i as u8]);
            }
            _ => seq.extend([2, dt, 0]),
        }
    }
    write("robot_handle", "golden", &seq);
}
