//! Property tests: no input makes `msg` or `cmd` panic, and `validate` +
//! `Value` agree with rmpv (a full, allocating MessagePack decoder) used as
//! the reference model.

use banyan_core::cmd::{LightLeds, OneGpio, RunMotors};
use banyan_core::msg::{self, validate, Limits, Value};
use proptest::prelude::*;
use rmpv::Value as R;

/// Limits wide enough that only structure, UTF-8, depth and keys matter.
fn limits(strict: bool) -> Limits {
    Limits::DEFAULT
        .with_max_size(usize::MAX)
        .with_max_len(usize::MAX)
        .with_max_items(usize::MAX)
        .with_max_depth(Limits::MAX_DEPTH)
        .with_strict_map_keys(strict)
}

fn depth(v: &R) -> usize {
    match v {
        R::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        R::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

fn utf8_ok(v: &R) -> bool {
    match v {
        R::String(s) => s.is_str(),
        R::Array(a) => a.iter().all(utf8_ok),
        R::Map(m) => m.iter().all(|(k, v)| utf8_ok(k) && utf8_ok(v)),
        _ => true,
    }
}

/// Timestamps (ext -1) as Python accepts them: 4, 8 or 12 bytes, nanoseconds < 10^9.
fn timestamps_ok(v: &R) -> bool {
    match v {
        R::Ext(-1, d) => match d.len() {
            4 => true,
            8 => u64::from_be_bytes(d[..].try_into().unwrap()) >> 34 < 1_000_000_000,
            12 => u32::from_be_bytes(d[..4].try_into().unwrap()) < 1_000_000_000,
            _ => false,
        },
        R::Array(a) => a.iter().all(timestamps_ok),
        R::Map(m) => m.iter().all(|(k, v)| timestamps_ok(k) && timestamps_ok(v)),
        _ => true,
    }
}

fn keys_ok(v: &R) -> bool {
    match v {
        R::Array(a) => a.iter().all(keys_ok),
        R::Map(m) => m
            .iter()
            .all(|(k, v)| matches!(k, R::String(_) | R::Binary(_)) && keys_ok(k) && keys_ok(v)),
        _ => true,
    }
}

/// The reference verdict: rmpv decodes exactly one value from all of `bytes`
/// and it meets the same rules `validate` enforces.
fn reference(bytes: &[u8], strict: bool) -> Option<R> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, 1024).ok()?;
    let ok = rd.is_empty()
        && utf8_ok(&v)
        && timestamps_ok(&v)
        && depth(&v) <= Limits::MAX_DEPTH
        && (!strict || keys_ok(&v));
    ok.then_some(v)
}

/// Structural equality of our reader's view and rmpv's value (floats by bits).
fn same(ours: Value<'_>, theirs: &R) -> bool {
    match (ours, theirs) {
        (Value::Nil, R::Nil) => true,
        (Value::Bool(a), R::Boolean(b)) => a == *b,
        (Value::Int(a), R::Integer(b)) => a < 0 && b.as_i64() == Some(a),
        (Value::UInt(a), R::Integer(b)) => b.as_u64() == Some(a),
        (Value::F32(a), R::F32(b)) => a.to_bits() == b.to_bits(),
        (Value::F64(a), R::F64(b)) => a.to_bits() == b.to_bits(),
        (Value::Str(a), R::String(b)) => b.as_str() == Some(a),
        (Value::Bin(a), R::Binary(b)) => a == &b[..],
        (Value::Ext(t, a), R::Ext(u, b)) => t == *u && a == &b[..],
        (Value::Array(a), R::Array(b)) => {
            a.len() == b.len()
                && a.iter().count() == b.len()
                && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Map(a), R::Map(b)) => {
            a.len() == b.len()
                && a.iter().count() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((k, v), (l, w))| same(k, l) && same(v, w))
        }
        _ => false,
    }
}

fn check_against_reference(bytes: &[u8]) -> Result<(), TestCaseError> {
    for strict in [true, false] {
        let ours = validate(bytes, &limits(strict));
        let theirs = reference(bytes, strict);
        // rmpv reads the reserved marker 0xc1 as nil where Python's unpackb
        // (and `validate`) refuse it: with a 0xc1 byte present only the one
        // direction "validate accepts => rmpv accepts" is checked (0xc1 has
        // its own tests in msg_validate.rs).
        if bytes.contains(&0xc1) {
            prop_assert!(
                ours.is_err() || theirs.is_some(),
                "validate {:?} vs rmpv {:?} on {:02x?}",
                ours,
                theirs,
                bytes
            );
        } else {
            prop_assert_eq!(
                ours.is_ok(),
                theirs.is_some(),
                "validate {:?} vs rmpv {:?} on {:02x?}",
                ours,
                theirs,
                bytes
            );
        }
        // The reader accepts exactly what `validate` accepts, and reads the
        // same tree as rmpv.
        match (Value::parse(bytes, &limits(strict)), theirs) {
            (Ok(v), Some(r)) => prop_assert!(same(v, &r), "reader {:?} vs rmpv {:?}", v, r),
            (Ok(v), None) => prop_assert!(false, "reader accepted {:?}, rmpv refused", v),
            (Err(e), _) => prop_assert_eq!(Err(e), ours),
        }
    }
    Ok(())
}

/// Exercise every consumer on the bytes: none may panic.
fn consume_everything(bytes: &[u8]) {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct S<'a> {
        value: Option<i64>,
        name: &'a str,
        f: f64,
    }
    let _ = msg::decode::<S<'_>>(bytes);
    let _ = msg::decode::<(u8, &str)>(bytes);
    let _ = msg::decode::<Option<f32>>(bytes);
    let _ = RunMotors::<4>::parse(bytes);
    let _ = LightLeds::<4>::parse(bytes);
    if let Ok(OneGpio::I2cWrite { data, .. }) = OneGpio::parse(bytes) {
        let mut out = [0u8; 8];
        let _ = data.copy_to(&mut out);
    }
    let _ = OneGpio::parse(bytes);
}

fn arb_value() -> impl Strategy<Value = R> {
    let leaf = prop_oneof![
        Just(R::Nil),
        any::<bool>().prop_map(R::Boolean),
        any::<i64>().prop_map(R::from),
        any::<u64>().prop_map(R::from),
        any::<f32>().prop_map(R::F32),
        any::<f64>().prop_map(R::F64),
        "[a-zé✓]{0,40}".prop_map(R::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(R::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| R::Ext(t, d)),
    ];
    leaf.prop_recursive(6, 64, 20, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(R::Array),
            proptest::collection::vec(("[a-z_]{0,12}".prop_map(R::from), inner.clone()), 0..20)
                .prop_map(R::Map),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(R::Map),
        ]
    })
}

fn encode_r(v: &R) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_rmpv(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        consume_everything(&bytes);
        check_against_reference(&bytes)?;
    }

    /// Bytes biased towards msgpack structure (markers and small lengths).
    #[test]
    fn structured_noise_agrees_with_rmpv(bytes in proptest::collection::vec(
        prop_oneof![0x80u8..=0x9f, 0xa0u8..=0xa4, 0xc0u8..=0xdf, 0x00u8..=0x05, 0xe0u8..=0xff, Just(b'a')], 0..64)) {
        consume_everything(&bytes);
        check_against_reference(&bytes)?;
    }

    #[test]
    fn encoded_values_validate_and_read_back(v in arb_value()) {
        let bytes = encode_r(&v);
        consume_everything(&bytes);
        check_against_reference(&bytes)?;
        let strict_ok = keys_ok(&v);
        let ts_ok = timestamps_ok(&v);
        prop_assert_eq!(validate(&bytes, &limits(true)).is_ok(), strict_ok && ts_ok && depth(&v) <= Limits::MAX_DEPTH);
        prop_assert_eq!(validate(&bytes, &limits(false)).is_ok(), ts_ok);
        // Every proper prefix of a valid value is truncated, and so refused.
        if ts_ok {
            for n in 0..bytes.len() {
                prop_assert_eq!(validate(&bytes[..n], &limits(false)), Err(msg::Error::Truncated));
            }
        }
    }

    #[test]
    fn mutated_values_agree_with_rmpv(v in arb_value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode_r(&v);
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        consume_everything(&bytes);
        check_against_reference(&bytes)?;
    }
}
