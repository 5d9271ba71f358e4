//! `cmd::report` encoders: byte-identical to Python's `packb(use_bin_type=True)`
//! of the same dict (hex made with `.venv/bin/python -c 'import msgpack;
//! print(msgpack.packb(OBJ, use_bin_type=True).hex())'`, OBJ in each comment),
//! and a too-small buffer is an error at every length.

use banyan_core::cmd::{report, Error, RunMotors};
use banyan_core::msg::{self, Limits, Value};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `f` with a large buffer and checks the bytes, then with every
/// shorter buffer and checks it fails with `BufferFull`.
fn check(hex: &str, f: impl Fn(&mut [u8]) -> Result<usize, msg::Error>) {
    let want = unhex(hex);
    let mut buf = [0u8; 256];
    let n = f(&mut buf).unwrap();
    assert_eq!(&buf[..n], &want[..], "differs from Python");
    msg::validate(&buf[..n], &Limits::DEFAULT).unwrap();
    for cap in 0..want.len() {
        let mut small = vec![0u8; cap];
        assert_eq!(
            f(&mut small),
            Err(msg::Error::BufferFull),
            "{cap}-byte buffer"
        );
    }
}

#[test]
fn digital_input() {
    // {"report":"digital_input","pin":4,"value":1,"timestamp":1700000000.25}
    check(
        "84a67265706f7274ad6469676974616c5f696e707574a370696e04a576616c756501a974696d657374616d70cb41d954fc40100000",
        |b| report::digital_input(b, 4, 1, 1_700_000_000.25),
    );
}

#[test]
fn analog_input() {
    // {"report":"analog_input","pin":2,"value":512}
    check(
        "83a67265706f7274ac616e616c6f675f696e707574a370696e02a576616c7565cd0200",
        |b| report::analog_input(b, 2, 512),
    );
}

#[test]
fn i2c_data() {
    // {"report":"i2c_data","value":[1,200,255]}
    check(
        "82a67265706f7274a86932635f64617461a576616c75659301ccc8ccff",
        |b| report::i2c_data(b, &[1, 200, 255]),
    );
}

#[test]
fn sonar_data() {
    // {"report":"sonar_data","value":12.5}
    check(
        "82a67265706f7274aa736f6e61725f64617461a576616c7565cb4029000000000000",
        |b| report::sonar_data(b, 12.5),
    );
}

#[test]
fn state() {
    // {"report":"state","motors":{"left":0.5,"right":-0.25},"leds":{"status":1.0}}
    check(
        "83a67265706f7274a57374617465a66d6f746f727382a46c656674cb3fe0000000000000a57269676874cbbfd0000000000000a46c65647381a6737461747573cb3ff0000000000000",
        |b| report::state(b, &[("left", 0.5), ("right", -0.25)], &[("status", 1.0)]),
    );
}

#[test]
fn error_report_carries_the_reason_with_the_field() {
    // {"report":"error","topic":"run_motors","reason":"value out of range for field left"}
    let hex = "83a67265706f7274a56572726f72a5746f706963aa72756e5f6d6f746f7273a6726561736f6ed92176616c7565206f7574206f662072616e676520666f72206669656c64206c656674";
    // The reason comes from parsing a bad command: {'left': 1.5}
    let bad = unhex("81a46c656674cb3ff8000000000000");
    let e = RunMotors::<2>::parse(&bad).unwrap_err();
    assert_eq!(e, Error::OutOfRange("left"));
    check(hex, |b| report::error(b, "run_motors", &e));
}

#[test]
fn long_error_reasons_read_back() {
    let long = "x".repeat(300);
    let e = Error::UnknownCommand(&long);
    let mut buf = [0u8; 512];
    let n = report::error(&mut buf, "t", &e).unwrap();
    let m = Value::parse(&buf[..n], &Limits::DEFAULT)
        .unwrap()
        .as_map()
        .unwrap();
    assert_eq!(
        m.get("reason").and_then(|v| v.as_str()),
        Some(format!("unknown command {long}").as_str())
    );
    assert_eq!(m.get("report").and_then(|v| v.as_str()), Some("error"));
}

#[test]
fn state_report_with_many_entries_uses_map16() {
    let names: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let motors: Vec<(&str, f32)> = names.iter().map(|n| (n.as_str(), 0.25)).collect();
    let mut buf = [0u8; 1024];
    let n = report::state(&mut buf, &motors, &[]).unwrap();
    let m = Value::parse(&buf[..n], &Limits::DEFAULT)
        .unwrap()
        .as_map()
        .unwrap();
    let motors_map = m.get("motors").and_then(|v| v.as_map()).unwrap();
    assert_eq!(motors_map.len(), 20);
    assert_eq!(motors_map.get("m19").and_then(|v| v.as_f64()), Some(0.25));
    assert!(m.get("leds").and_then(|v| v.as_map()).unwrap().is_empty());
}
