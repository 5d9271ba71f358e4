//! `msg::validate`, the zero-copy `msg::Value` reader and `msg::decode`.
//!
//! Input: one limits byte, then the payload. Checks:
//! - `Value::parse` succeeds exactly when `validate` does, with the same error;
//! - every accepted value walks completely: containers yield exactly their
//!   declared number of items, within the limits, with str/bin keys;
//! - differential against `rmpv` (an independent allocating reader): an
//!   accepted payload is one rmpv value with nothing left over and the same
//!   tree, and a payload rmpv reads in full that meets every documented rule
//!   is accepted;
//! - `validate_at` gives `validate`'s verdict and says where: `Truncated` at
//!   the input's end, `TrailingBytes` exactly where rmpv's one value ends,
//!   value errors at a marker byte of the right kind;
//! - `decode` never accepts what `validate` refuses, decodes every valid
//!   payload as `serde::de::IgnoredAny`, and never panics.
//!
//! `validate` is the project's only MessagePack validator (the gateways'
//! `wire::Validator` calls it with `Limits::LAN`), so rmpv, an independent
//! allocating reader, is the oracle; where rmpv is no oracle (it reads the
//! reserved marker `0xc1`) the documented rules are checked instead.
#![no_main]

use banyan_core::msg::{self, Error, Limits, Value};
use libfuzzer_sys::fuzz_target;
use rmpv::Value as R;

fn limits_from(b: u8) -> Limits {
    if b & 0x80 == 0 {
        // The LAN profile (deep stack, no length limits) or the defaults.
        return if b & 0x40 != 0 {
            Limits::LAN
        } else {
            Limits::DEFAULT
        };
    }
    Limits::new()
        .with_max_size(if b & 1 != 0 { 64 } else { 65_536 })
        .with_max_depth(usize::from((b >> 1) & 0x07))
        .with_max_len(if b & 0x10 != 0 { 8 } else { 65_536 })
        .with_max_items(if b & 0x20 != 0 { 3 } else { 4_096 })
        .with_strict_map_keys(b & 0x40 == 0)
}

/// Walks a value the reader returned and compares it with rmpv's tree.
fn walk(v: &Value<'_>, r: &R, depth: usize, l: &Limits) {
    match (v, r) {
        (Value::Nil, R::Nil) => {}
        (Value::Bool(a), R::Boolean(b)) => assert_eq!(a, b),
        (Value::Int(a), R::Integer(b)) => {
            assert!(*a < 0);
            assert_eq!(Some(*a), b.as_i64());
        }
        (Value::UInt(a), R::Integer(b)) => assert_eq!(Some(*a), b.as_u64()),
        (Value::F32(a), R::F32(b)) => assert_eq!(a.to_bits(), b.to_bits()),
        (Value::F64(a), R::F64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
        (Value::Str(a), R::String(b)) => {
            assert!(a.len() <= l.max_len);
            assert_eq!(Some(*a), b.as_str());
        }
        (Value::Bin(a), R::Binary(b)) => {
            assert!(a.len() <= l.max_len);
            assert_eq!(*a, &b[..]);
        }
        (Value::Ext(t, d), R::Ext(rt, rd)) => {
            assert!(d.len() <= l.max_len);
            assert_eq!((t, *d), (rt, &rd[..]));
        }
        (Value::Array(a), R::Array(items)) => {
            assert!(depth < l.max_depth.min(Limits::MAX_DEPTH));
            assert!(a.len() <= l.max_items);
            assert_eq!(a.len(), items.len());
            assert_eq!(a.iter().size_hint(), (a.len(), Some(a.len())));
            let mut n = 0;
            for (x, y) in a.iter().zip(items) {
                walk(&x, y, depth + 1, l);
                n += 1;
            }
            assert_eq!(n, a.len(), "array iterator ended early");
            assert_eq!(a.iter().count(), a.len());
            if let Some(last) = items.len().checked_sub(1) {
                assert!(a.get(last).is_some());
            }
            assert!(a.get(items.len()).is_none());
        }
        (Value::Map(m), R::Map(entries)) => {
            assert!(depth < l.max_depth.min(Limits::MAX_DEPTH));
            assert!(m.len() <= l.max_items);
            assert_eq!(m.len(), entries.len());
            // Each entry is walked once; `get` is checked by identity against
            // the entry it must return, so nested maps stay linear to check
            // (walking `get`'s answer again doubled the work at every level).
            let values: Vec<Value<'_>> = m.iter().map(|(_, x)| x).collect();
            assert_eq!(values.len(), m.len(), "map iterator ended early");
            for ((k, x), (rk, ry)) in m.iter().zip(entries) {
                if l.strict_map_keys {
                    assert!(matches!(k, Value::Str(_) | Value::Bin(_)), "bad key {k:?}");
                }
                walk(&k, rk, depth + 1, l);
                walk(&x, ry, depth + 1, l);
                if let Some(s) = k.as_str() {
                    // Python dict semantics: the last entry with this key wins.
                    let last = entries
                        .iter()
                        .rposition(|(kk, _)| kk.as_str() == Some(s))
                        .expect("rmpv has the key");
                    let got = m.get(s).expect("get of a present key");
                    assert!(m.contains_key(s));
                    assert!(
                        same(&got, &values[last]),
                        "get({s:?}) is not the last entry: {got:?}"
                    );
                }
            }
        }
        _ => panic!("reader and rmpv disagree: {v:?} vs {r:?}"),
    }
}

/// The same value in the same bytes: containers, str and bin by address and
/// length, floats by bits (NaN included), the rest by value.
fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => std::ptr::eq(x.as_bytes(), y.as_bytes()),
        (Value::Map(x), Value::Map(y)) => std::ptr::eq(x.as_bytes(), y.as_bytes()),
        (Value::Str(x), Value::Str(y)) => std::ptr::eq(*x, *y),
        (Value::Bin(x), Value::Bin(y)) => std::ptr::eq(*x, *y),
        (Value::Ext(s, x), Value::Ext(t, y)) => s == t && std::ptr::eq(*x, *y),
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Would `validate` accept this rmpv tree (the documented rules)?
fn acceptable(r: &R, depth: usize, l: &Limits) -> bool {
    match r {
        R::String(s) => s.as_str().is_some() && s.as_bytes().len() <= l.max_len,
        R::Binary(b) => b.len() <= l.max_len,
        R::Ext(t, d) => d.len() <= l.max_len && (*t >= 0 || (*t == -1 && timestamp_ok(d))),
        R::Array(items) => {
            depth < l.max_depth.min(Limits::MAX_DEPTH)
                && items.len() <= l.max_items
                && items.iter().all(|x| acceptable(x, depth + 1, l))
        }
        R::Map(entries) => {
            depth < l.max_depth.min(Limits::MAX_DEPTH)
                && entries.len() <= l.max_items
                && entries.iter().all(|(k, v)| {
                    (!l.strict_map_keys || matches!(k, R::String(_) | R::Binary(_)))
                        && acceptable(k, depth + 1, l)
                        && acceptable(v, depth + 1, l)
                })
        }
        _ => true,
    }
}

fn timestamp_ok(d: &[u8]) -> bool {
    match d.len() {
        4 => true,
        8 => (u32::from_be_bytes([d[0], d[1], d[2], d[3]]) >> 2) < 1_000_000_000,
        12 => u32::from_be_bytes([d[0], d[1], d[2], d[3]]) < 1_000_000_000,
        _ => false,
    }
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Typical<'a> {
    value: i32,
    #[serde(borrow)]
    name: Option<&'a str>,
    speed: f64,
}

fuzz_target!(|data: &[u8]| {
    let Some((&lb, bytes)) = data.split_first() else {
        return;
    };
    let l = limits_from(lb);
    let checked = msg::validate(bytes, &l);
    let parsed = Value::parse(bytes, &l);
    assert_eq!(
        checked,
        parsed.map(|_| ()),
        "validate and Value::parse disagree"
    );

    let at = msg::validate_at(bytes, &l);
    assert_eq!(at.map_err(|e| e.error), checked, "validate_at disagrees");
    if let Err(e) = at {
        let marker = bytes.get(e.offset).copied();
        match e.error {
            Error::TooLarge => assert_eq!(e.offset, l.max_size),
            Error::Truncated => assert_eq!(e.offset, bytes.len()),
            Error::TrailingBytes => assert!(e.offset > 0 && e.offset < bytes.len()),
            Error::ReservedMarker => assert_eq!(marker, Some(0xc1)),
            Error::InvalidUtf8 => {
                assert!(matches!(marker, Some(0xa0..=0xbf | 0xd9..=0xdb)))
            }
            Error::ReservedExt | Error::InvalidTimestamp => {
                assert!(matches!(marker, Some(0xc7..=0xc9 | 0xd4..=0xd8)))
            }
            Error::TooDeep => {
                assert!(matches!(marker, Some(0x80..=0x9f | 0xdc..=0xdf)))
            }
            Error::MapKey | Error::TooLong => assert!(marker.is_some()),
            other => panic!("validate_at returned a decode-only error {other:?}"),
        }
    }

    let mut cursor = bytes;
    let theirs = rmpv::decode::read_value(&mut cursor);
    match (&parsed, &theirs) {
        (Ok(v), Ok(r)) => {
            assert!(cursor.is_empty(), "validate accepted trailing bytes");
            assert!(bytes.len() <= l.max_size);
            walk(v, r, 0, &l);
        }
        (Ok(v), Err(e)) => panic!("validate accepted what rmpv rejects ({e}): {v:?}"),
        // rmpv reads the reserved marker 0xc1 as a value; validate refuses it
        // (Python does too), so rmpv is no oracle for such input.
        (Err(Error::ReservedMarker), Ok(_)) => {}
        (Err(e), Ok(r)) => {
            // rmpv read one value; validate must have a documented reason.
            let fits = cursor.is_empty() && bytes.len() <= l.max_size && acceptable(r, 0, &l);
            assert!(
                !fits,
                "validate refused ({e:?}) a payload meeting every rule: {r:?}"
            );
            if !cursor.is_empty() && acceptable(r, 0, &l) && bytes.len() <= l.max_size {
                assert_eq!(*e, Error::TrailingBytes);
                // ... found where rmpv's one value ends.
                assert_eq!(at.map_err(|e| e.offset), Err(bytes.len() - cursor.len()));
            }
        }
        (Err(_), Err(_)) => {}
    }

    // decode validates first (with the defaults).
    let strict = msg::validate(bytes, &Limits::DEFAULT);
    let any: Result<serde::de::IgnoredAny, Error> = msg::decode(bytes);
    match strict {
        Err(_) => assert_eq!(any.map(|_| ()), strict),
        // Anything valid can be skipped by serde (`IgnoredAny`).
        Ok(()) => assert_eq!(
            any.map(|_| ()),
            Ok(()),
            "decode::<IgnoredAny> refused valid input"
        ),
    }
    let typed: Result<Typical<'_>, Error> = msg::decode(bytes);
    if let Err(e) = strict {
        assert_eq!(typed.err(), Some(e));
    }
});
