//! Everything the gateways send is byte-identical to what Python Banyan 3.17
//! would send for the same value: `msgpack.packb(v, use_bin_type=True)`.
//!
//! The proof for each encoder path: Python (the venv from
//! `bash scripts/venv.sh`) reads our bytes the way a Banyan receiver does
//! (`unpackb(raw=False)`, strict map keys) and packs what it read again; the
//! result must be our bytes exactly. Paths covered:
//!
//! - `wire::encode_value` (rmpv; `Component::publish_value`, the backplane's
//!   stats, the Pi gateway's reports use the same `rmpv::encode::write_value`)
//!   over a generated corpus of every MessagePack type at every length
//!   boundary;
//! - `wire::encode` (rmp-serde, named; `multi`, the serial status) and
//!   `rmp_serde::encode::write_named` (`Component::publish`) over generated
//!   serde structs of every field type;
//! - the backplane's stats topic, received off a running backplane;
//! - the serial gateway's status topic (`Bridge::status_payload`).
//!
//! The core's encoders (`msg::Writer`, `msg::encode`) have the same proof in
//! `core/tests/msg_prop.rs`.

mod common;
#[path = "../core/tests/support/python_msgpack.rs"]
mod python_msgpack;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use banyan::backplane::{self, Backplane};
use banyan::component::wire::{encode, encode_value};
use banyan::component::{Component, Config};
use banyan::serial::{Bridge, BridgeConfig};
use common::python;
use python_msgpack::{hex, unhex};
use rmpv::Value;
use serde::Serialize;

const T: Duration = Duration::from_secs(30);

/// Python's verdict per payload (see [`python_msgpack::python_repack`]).
fn python_repack(payloads: &[Vec<u8>]) -> Vec<Result<Vec<u8>, String>> {
    python_msgpack::python_repack(&python(), payloads)
}

/// Asserts that Python re-packs every payload to the very same bytes.
fn assert_python_repacks_identically(what: &str, payloads: &[Vec<u8>]) {
    for (p, py) in payloads.iter().zip(python_repack(payloads)) {
        match py {
            Ok(repacked) => assert!(
                repacked == *p,
                "{what}: python packs {} where we sent {}",
                hex(&repacked[..repacked.len().min(64)]),
                hex(&p[..p.len().min(64)])
            ),
            Err(e) => panic!(
                "{what}: python cannot read what we sent ({e}): {}",
                hex(&p[..p.len().min(64)])
            ),
        }
    }
}

/// A deterministic generator (xorshift64*, shared with the core's link
/// simulation): the same corpus on every run.
#[path = "../core/tests/support/rng.rs"]
mod rng;
use rng::Rng;

/// The corpus' own draws.
impl Rng {
    /// An integer near an encoding boundary, or with a random bit length.
    fn int(&mut self) -> i128 {
        const EDGES: &[i128] = &[
            0,
            1,
            127,
            128,
            255,
            256,
            32_767,
            32_768,
            65_535,
            65_536,
            2_147_483_647,
            2_147_483_648,
            4_294_967_295,
            4_294_967_296,
            i64::MAX as i128,
            u64::MAX as i128,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            i32::MIN as i128,
            i32::MIN as i128 - 1,
            i64::MIN as i128,
        ];
        if self.below(2) == 0 {
            self.pick(EDGES)
        } else {
            let bits = self.below(64) as u32;
            let v = i128::from(self.next() >> (63 - bits));
            if self.below(2) == 0 {
                v
            } else {
                -v - 1
            }
        }
    }

    /// A length at a str/bin/ext/container header boundary (the 16-bit
    /// ones only if `big`), or small.
    fn len(&mut self, big: bool) -> usize {
        if self.below(3) == 0 {
            let edges = [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536];
            self.pick(&edges[..if big { 10 } else { 8 }])
        } else {
            self.below(20)
        }
    }

    fn text(&mut self, bytes: usize) -> String {
        // Mixed ASCII and multi-byte UTF-8, exactly `bytes` long.
        let mut s = String::with_capacity(bytes);
        while s.len() < bytes {
            match (self.below(4), bytes - s.len()) {
                (0, 3..) => s.push('✓'),
                (1, 2..) => s.push('é'),
                _ => s.push(char::from(b'a' + self.below(26) as u8)),
            }
        }
        s
    }
}

/// A value Python can hold: str (or bin) map keys without duplicates, ext
/// types 0–127, float64 (Python has no float32; see `f32_fields_...`).
fn value(rng: &mut Rng, depth: usize) -> Value {
    let big = depth == 0;
    let kinds = if depth < 3 { 11 } else { 8 };
    match rng.below(kinds) {
        0 => Value::Nil,
        1 => Value::Boolean(rng.below(2) == 0),
        2 | 3 => {
            let i = rng.int();
            u64::try_from(i)
                .map(Value::from)
                .or_else(|_| i64::try_from(i).map(Value::from))
                .unwrap_or(Value::from(0))
        }
        4 => {
            let random = f64::from_bits(rng.next() & !(0x7ff << 52));
            Value::F64(rng.pick(&[
                0.0,
                -0.0,
                0.3,
                1.5,
                -2.25,
                1e300,
                5e-324,
                f64::INFINITY,
                f64::NEG_INFINITY,
                random,
            ]))
        }
        5 => {
            let n = rng.len(big);
            Value::from(rng.text(n))
        }
        6 => {
            let n = rng.len(big);
            Value::Binary((0..n).map(|i| (i * 7) as u8).collect())
        }
        7 => {
            let n = if rng.below(2) == 0 {
                rng.pick(&[1, 2, 4, 8, 16])
            } else {
                rng.len(big)
            };
            Value::Ext(rng.below(128) as i8, vec![0xab; n])
        }
        8 => {
            // Containers up to 17 items here; the 16-bit headers are
            // covered once each below.
            let n = rng.len(false).min(17);
            Value::Array((0..n).map(|_| value(rng, depth + 1)).collect())
        }
        _ => {
            let n = rng.len(false).min(17);
            let bin_keys = rng.below(4) == 0;
            Value::Map(
                (0..n)
                    .map(|i| {
                        let k = format!("k{i}");
                        let k = if bin_keys {
                            Value::Binary(k.into_bytes())
                        } else {
                            Value::from(k)
                        };
                        (k, value(rng, depth + 1))
                    })
                    .collect(),
            )
        }
    }
}

#[test]
fn encode_value_is_byte_identical_to_python_packb() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut corpus: Vec<Vec<u8>> = (0..1500)
        .map(|_| encode_value(&value(&mut rng, 0)))
        .collect();
    // Every header size once for sure, whatever the generator picked.
    for n in [15, 16, 65_535, 65_536] {
        corpus.push(encode_value(&Value::Array(vec![Value::Nil; n])));
        corpus.push(encode_value(&Value::Map(
            (0..n)
                .map(|i| (Value::from(format!("{i}")), Value::Nil))
                .collect(),
        )));
    }
    for n in [31, 32, 255, 256, 65_535, 65_536] {
        corpus.push(encode_value(&Value::from("x".repeat(n))));
        corpus.push(encode_value(&Value::Binary(vec![1; n])));
        corpus.push(encode_value(&Value::Ext(1, vec![1; n])));
    }
    assert_python_repacks_identically("wire::encode_value", &corpus);
}

/// Bytes as a msgpack `bin` (what `serde_bytes` does), Python `bytes`.
struct Bin(Vec<u8>);

impl Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Forward,
    Reverse,
}

#[derive(Serialize)]
struct Meters(f64);

#[derive(Serialize)]
struct Inner {
    pin: u8,
    tag: Option<String>,
    levels: Vec<f64>,
}

#[derive(Serialize)]
struct Everything {
    u8: u8,
    u16: u16,
    u32: u32,
    u64: u64,
    usize: usize,
    i8: i8,
    i16: i16,
    i32: i32,
    i64: i64,
    f64: f64,
    flag: bool,
    none: Option<u32>,
    some: Option<i32>,
    text: String,
    letter: char,
    ints: Vec<i64>,
    bytes: Bin,
    inner: Inner,
    inners: Vec<Inner>,
    map: BTreeMap<String, i32>,
    tuple: (u8, String, f64),
    unit: (),
    mode: Mode,
    meters: Meters,
}

fn everything(rng: &mut Rng) -> Everything {
    fn fit<T: TryFrom<i128>>(rng: &mut Rng) -> T {
        // Boundary values that fit the type, else a random one that does.
        loop {
            if let Ok(v) = T::try_from(rng.int()) {
                return v;
            }
        }
    }
    let inner = |rng: &mut Rng| Inner {
        pin: fit(rng),
        tag: (rng.below(2) == 0).then(|| rng.text(5)),
        levels: (0..rng.below(4))
            .map(|_| rng.below(100) as f64 / 8.0)
            .collect(),
    };
    let n = rng.len(true);
    Everything {
        u8: fit(rng),
        u16: fit(rng),
        u32: fit(rng),
        u64: fit(rng),
        usize: fit(rng),
        i8: fit(rng),
        i16: fit(rng),
        i32: fit(rng),
        i64: fit(rng),
        f64: f64::from_bits(rng.next() & !(0x7ff << 52)),
        flag: rng.below(2) == 0,
        none: None,
        some: Some(fit(rng)),
        text: rng.text(n),
        letter: rng.pick(&['a', 'é', '✓', '𝄞']),
        ints: (0..rng.below(20)).map(|_| fit(rng)).collect(),
        bytes: Bin((0..rng.len(true)).map(|i| i as u8).collect()),
        inner: inner(rng),
        inners: (0..rng.below(3)).map(|_| inner(rng)).collect(),
        map: (0..rng.below(5))
            .map(|i| (format!("m{i}"), fit(rng)))
            .collect(),
        tuple: (fit(rng), rng.text(3), -0.5),
        unit: (),
        mode: rng.pick(&[Mode::Forward, Mode::Reverse]),
        meters: Meters(1.25),
    }
}

#[test]
fn serde_encoders_are_byte_identical_to_python_packb() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut corpus = Vec::new();
    for _ in 0..400 {
        let v = everything(&mut rng);
        let bytes = encode(&v).unwrap();
        // `Component::publish` writes with rmp-serde's `write_named`, the
        // function behind `wire::encode`: the same bytes.
        let mut published = Vec::new();
        rmp_serde::encode::write_named(&mut published, &v).unwrap();
        assert_eq!(published, bytes);
        corpus.push(bytes);
    }
    assert_python_repacks_identically("wire::encode", &corpus);
}

/// The one documented deviation of the serde path: Python has no float32,
/// so an `f32` field is written as float32 where Python writes float64 for
/// the float it reads. Use `f64` fields for byte identity.
#[test]
fn f32_fields_are_the_documented_deviation() {
    #[derive(Serialize)]
    struct S {
        x: f32,
    }
    let ours = encode(&S { x: 0.5 }).unwrap();
    assert_eq!(ours, unhex("81a178ca3f000000"));
    assert_eq!(
        python_repack(&[ours]),
        vec![Ok(unhex("81a178cb3fe0000000000000"))]
    );
}

#[test]
fn serial_status_topic_is_byte_identical_to_python_packb() {
    let bridge = Bridge::new(7, BridgeConfig::default());
    let status = bridge.status_payload().unwrap();
    assert_python_repacks_identically("serial status", &[status]);
}

#[test]
fn backplane_stats_topic_is_byte_identical_to_python_packb() {
    let mut cfg = backplane::Config::new("127.0.0.1", 0, 0);
    cfg.stats_interval = Duration::from_millis(20);
    cfg.name = "Ünïcode ✓".into();
    let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
    let ccfg = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
    let mut sub = Component::connect(ccfg.clone()).unwrap();
    sub.subscribe(backplane::STATS_TOPIC).unwrap();
    sub.subscribe("x").unwrap();
    let mut publisher = Component::connect(ccfg).unwrap();
    assert!(publisher.wait_for_subscriber("x", T).unwrap());
    // A report goes out when a counter changes: a forwarded message moves
    // `forwarded`.
    let deadline = Instant::now() + T;
    let stats = loop {
        assert!(Instant::now() < deadline, "no stats report in {T:?}");
        publisher.publish_value("x", &Value::from(1)).unwrap();
        if let Some(m) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            if m.topic == backplane::STATS_TOPIC {
                break m.payload;
            }
        }
    };
    assert_python_repacks_identically("backplane stats", &[stats]);
    bp.stop().unwrap();
}
