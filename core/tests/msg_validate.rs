//! The bounded validator on hostile input: truncation at every length,
//! trailing bytes, bad UTF-8, depth bombs, huge declared lengths, limits.

use banyan_core::msg::{self, validate, Error, ErrorAt, Limits, Value};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Valid payloads from Python's `packb(use_bin_type=True)` (see msg_golden.rs).
const VALID: &[&str] = &[
    "81a576616c756501",                                               // {'value': 1}
    "82a16182a1629301cb400400000000000081a163c0a164c40101a165d1fed4", // nested
    "9501a161c0c3cbc004000000000000",                                 // [1,'a',None,True,-2.5]
    "cfffffffffffffffff",                                             // 2**64-1
    "d38000000000000000",                                             // -2**63
    "a7c3a9e29c93c3bc",                                               // 'é✓ü'
    "c4030001ff",                                                     // b'\x00\x01\xff'
    "dc0010000102030405060708090a0b0c0d0e0f",                         // list(range(16))
    "83a46c656674cb3fe0000000000000a57269676874cbbfe0000000000000ab6475726174696f6e5f6d73cd01f4", // run_motors
];

#[test]
fn valid_payloads_pass() {
    for h in VALID {
        assert_eq!(validate(&unhex(h), &Limits::DEFAULT), Ok(()), "{h}");
    }
}

#[test]
fn every_truncation_is_truncated() {
    for h in VALID {
        let b = unhex(h);
        for n in 0..b.len() {
            assert_eq!(
                validate(&b[..n], &Limits::DEFAULT),
                Err(Error::Truncated),
                "{h} cut at {n}"
            );
            assert_eq!(
                Value::parse(&b[..n], &Limits::DEFAULT),
                Err(Error::Truncated)
            );
        }
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    for h in VALID {
        let mut b = unhex(h);
        b.push(0xc0);
        assert_eq!(
            validate(&b, &Limits::DEFAULT),
            Err(Error::TrailingBytes),
            "{h}"
        );
        assert_eq!(msg::decode::<Option<u8>>(&b), Err(Error::TrailingBytes));
    }
    // Two complete values back to back.
    assert_eq!(
        validate(&[0x01, 0x02], &Limits::DEFAULT),
        Err(Error::TrailingBytes)
    );
}

#[test]
fn bad_utf8_is_rejected_in_values_and_keys() {
    // a2 c3 28: an invalid 2-byte sequence
    assert_eq!(
        validate(&unhex("a2c328"), &Limits::DEFAULT),
        Err(Error::InvalidUtf8)
    );
    // {b'\xc3(' as str: 1}
    assert_eq!(
        validate(&unhex("81a2c32801"), &Limits::DEFAULT),
        Err(Error::InvalidUtf8)
    );
    // a lone surrogate encoded in UTF-8 (ed a0 80), str8
    assert_eq!(
        validate(&unhex("d903eda080"), &Limits::DEFAULT),
        Err(Error::InvalidUtf8)
    );
    // The same bytes as bin are fine.
    assert_eq!(validate(&unhex("c403eda080"), &Limits::DEFAULT), Ok(()));
}

#[test]
fn reserved_marker_is_rejected() {
    assert_eq!(
        validate(&[0xc1], &Limits::DEFAULT),
        Err(Error::ReservedMarker)
    );
    assert_eq!(
        validate(&[0x91, 0xc1], &Limits::DEFAULT),
        Err(Error::ReservedMarker)
    );
}

#[test]
fn empty_input_is_truncated() {
    assert_eq!(validate(&[], &Limits::DEFAULT), Err(Error::Truncated));
}

#[test]
fn depth_bombs_stop_at_the_limit_without_recursion() {
    // 1 MB of nested one-element arrays, and of nested one-entry maps.
    let arrays = vec![0x91u8; 1 << 20];
    assert_eq!(
        validate(&arrays, &Limits::DEFAULT.with_max_size(1 << 21)),
        Err(Error::TooDeep)
    );
    let mut maps = Vec::new();
    for _ in 0..100_000 {
        maps.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    assert_eq!(
        validate(&maps, &Limits::DEFAULT.with_max_size(1 << 21)),
        Err(Error::TooDeep)
    );
    // A max_depth above the hard cap acts as the cap.
    let huge = Limits::DEFAULT
        .with_max_depth(usize::MAX)
        .with_max_size(1 << 21);
    assert_eq!(validate(&arrays, &huge), Err(Error::TooDeep));
    // The rejecting decoders never recurse into it either.
    assert_eq!(Value::parse(&arrays, &huge), Err(Error::TooDeep));
    assert_eq!(msg::decode::<()>(&arrays[..60_000]), Err(Error::TooDeep));
}

#[test]
fn depth_limit_is_exact() {
    for max in 1..=Limits::MAX_DEPTH {
        let limits = Limits::DEFAULT.with_max_depth(max);
        // `max` nested arrays around nil: depth == max.
        let mut b = vec![0x91u8; max];
        b.push(0xc0);
        assert_eq!(validate(&b, &limits), Ok(()), "depth {max}");
        let mut deeper = vec![0x91u8; max + 1];
        deeper.push(0xc0);
        assert_eq!(
            validate(&deeper, &limits),
            Err(Error::TooDeep),
            "depth {}",
            max + 1
        );
        // Empty containers count as a level too.
        let mut empty = vec![0x91u8; max - 1];
        empty.push(0x80);
        assert_eq!(validate(&empty, &limits), Ok(()));
    }
    // Scalars have depth 0.
    assert_eq!(
        validate(&[0x01], &Limits::DEFAULT.with_max_depth(0)),
        Ok(())
    );
    assert_eq!(
        validate(&[0x90], &Limits::DEFAULT.with_max_depth(0)),
        Err(Error::TooDeep)
    );
}

#[test]
fn huge_declared_lengths_fail_fast() {
    let unlimited = Limits::DEFAULT
        .with_max_len(usize::MAX)
        .with_max_items(usize::MAX);
    for (h, limited) in [
        ("dbffffffff61", Error::TooLong),   // str32 of 4 GiB
        ("c6ffffffff61", Error::TooLong),   // bin32
        ("c9ffffffff0161", Error::TooLong), // ext32
        ("ddffffffff01", Error::TooLong),   // array32 of 4G elements
        ("dfffffffff0101", Error::TooLong), // map32 of 4G entries
        ("dcffff01", Error::TooLong),       // array16 of 65535 > 4096 items
        ("d9ff61", Error::Truncated),       // str8 of 255 with 1 byte present
    ] {
        let b = unhex(h);
        assert_eq!(validate(&b, &Limits::DEFAULT), Err(limited), "{h}");
        // Without length limits the missing bytes are found at once.
        assert_eq!(
            validate(&b, &unlimited),
            Err(Error::Truncated),
            "{h} unlimited"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let b = unhex("81a576616c756501");
    assert_eq!(
        validate(&b, &Limits::DEFAULT.with_max_size(7)),
        Err(Error::TooLarge)
    );
    assert_eq!(validate(&b, &Limits::DEFAULT.with_max_size(8)), Ok(()));
    assert_eq!(
        validate(&b, &Limits::DEFAULT.with_max_len(4)),
        Err(Error::TooLong)
    );
    assert_eq!(validate(&b, &Limits::DEFAULT.with_max_len(5)), Ok(()));
    let arr = unhex("93010203");
    assert_eq!(
        validate(&arr, &Limits::DEFAULT.with_max_items(2)),
        Err(Error::TooLong)
    );
    assert_eq!(validate(&arr, &Limits::DEFAULT.with_max_items(3)), Ok(()));
    // A map of 2 entries counts as 2 items.
    let map = unhex("82a16101a16202");
    assert_eq!(validate(&map, &Limits::DEFAULT.with_max_items(2)), Ok(()));
    assert_eq!(
        validate(&map, &Limits::DEFAULT.with_max_items(1)),
        Err(Error::TooLong)
    );
    assert_eq!(Limits::default(), Limits::new());
}

#[test]
fn map_keys_follow_python_strict_map_key() {
    let int_key = unhex("810101"); // {1: 1}
    let nested_int_key = unhex("81a16181c001"); // {'a': {None: 1}}
    let bin_key = unhex("81c4016b01"); // {b'k': 1}
    assert_eq!(validate(&int_key, &Limits::DEFAULT), Err(Error::MapKey));
    assert_eq!(
        validate(&nested_int_key, &Limits::DEFAULT),
        Err(Error::MapKey)
    );
    assert_eq!(validate(&bin_key, &Limits::DEFAULT), Ok(()));
    let lax = Limits::DEFAULT.with_strict_map_keys(false);
    assert_eq!(validate(&int_key, &lax), Ok(()));
    assert_eq!(validate(&nested_int_key, &lax), Ok(()));
    // Values of str-keyed maps may be anything.
    assert_eq!(validate(&unhex("81a16193010203"), &Limits::DEFAULT), Ok(()));
}

#[test]
fn ext_values_are_accepted_and_exposed() {
    // msgpack.packb(msgpack.ExtType(5, b'ab'))
    let b = unhex("d5056162");
    assert_eq!(Value::parse(&b, &Limits::DEFAULT), Ok(Value::Ext(5, b"ab")));
    // ext8 with a negative type (-1, the timestamp type), 4 data bytes
    let t = unhex("c704ff00000001");
    assert_eq!(
        Value::parse(&t, &Limits::DEFAULT),
        Ok(Value::Ext(-1, &[0, 0, 0, 1]))
    );
}

#[test]
fn value_reader_helpers() {
    // {'a': 1, 'b': [1, -2, 3.5], 'a': 2, 's': 'x', 'z': None, 'f': True}
    // (a duplicate key: Python keeps the last one, and so does get)
    let b = unhex("86a16101a1629301fecb400c000000000000a16102a173a178a17ac0a166c3");
    let m = Value::parse(&b, &Limits::DEFAULT)
        .unwrap()
        .as_map()
        .unwrap();
    assert_eq!(m.len(), 6);
    assert!(!m.is_empty());
    assert_eq!(m.get("a"), Some(Value::UInt(2)));
    assert_eq!(m.get("missing"), None);
    assert!(m.contains_key("z") && !m.contains_key("q"));
    assert_eq!(m.get("s").and_then(|v| v.as_str()), Some("x"));
    assert!(m.get("z").unwrap().is_nil());
    assert_eq!(m.get("f").and_then(|v| v.as_bool()), Some(true));
    let a = m.get("b").and_then(|v| v.as_array()).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a.get(1).and_then(|v| v.as_i64()), Some(-2));
    assert_eq!(a.get(1).and_then(|v| v.as_u64()), None);
    assert_eq!(a.get(2).and_then(|v| v.as_f64()), Some(3.5));
    assert_eq!(a.get(3), None);
    assert_eq!(a.as_bytes(), &unhex("01fecb400c000000000000")[..]);
    assert_eq!(a.into_iter().count(), 3);
    assert_eq!(m.into_iter().count(), 6);
    assert_eq!(Value::UInt(u64::MAX).as_i64(), None);
    assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
    assert_eq!(Value::Str("x").as_map(), None);
}

#[test]
fn timestamps_are_checked_like_python() {
    // Accepted by Python's unpackb: 32-, 64- and 96-bit timestamps.
    for h in [
        "d6ff00000001",
        "d7ffee6b27fc00000001",
        "c70cff3b9ac9ffffffffffffffffff",
    ] {
        assert_eq!(validate(&unhex(h), &Limits::DEFAULT), Ok(()), "{h}");
    }
    // Refused by Python ("invalid timestamp data", "nanoseconds must be ...").
    for h in [
        "d5ff0102",
        "c703ff010203",
        "d4ff00",
        "d8ff00000000000000000000000000000000",
        "d7ffee6b280000000001",
        "c70cff3b9aca000000000000000001",
    ] {
        assert_eq!(
            validate(&unhex(h), &Limits::DEFAULT),
            Err(Error::InvalidTimestamp),
            "{h}"
        );
    }
    // Other negative (reserved) types are refused, as Python refuses them.
    assert_eq!(
        validate(&unhex("d4fe00"), &Limits::DEFAULT),
        Err(Error::ReservedExt)
    );
    assert_eq!(
        validate(&unhex("d48000"), &Limits::DEFAULT),
        Err(Error::ReservedExt)
    );
    // Application types 0..=127 may have any length.
    assert_eq!(
        validate(
            &unhex("d50501 02".replace(' ', "").as_str()),
            &Limits::DEFAULT
        ),
        Ok(())
    );
}

#[test]
fn lan_profile_is_python_sized() {
    use banyan_core::msg::validate_at;
    let lan = Limits::LAN;
    assert_eq!(lan.max_depth, Limits::MAX_DEPTH);
    assert_eq!(lan.max_size, 64 * 1024 * 1024);
    // 512 nested arrays around nil pass, 513 do not; an empty array is a
    // level too (Python counts it as well).
    let mut ok = vec![0x91u8; 512];
    ok.push(0xc0);
    assert_eq!(validate(&ok, &lan), Ok(()));
    let mut deep = vec![0x91u8; 512];
    deep.push(0x90);
    assert_eq!(
        validate_at(&deep, &lan),
        Err(ErrorAt {
            error: Error::TooDeep,
            offset: 512
        })
    );
    // A 16 MB bin under a bin key (msgpack-numpy) passes.
    let mut numpy = unhex("81c4046461746 1c6".replace(' ', "").as_str());
    numpy.extend_from_slice(&(16u32 << 20).to_be_bytes());
    numpy.resize(numpy.len() + (16 << 20), 0);
    assert_eq!(validate(&numpy, &lan), Ok(()));
    assert_eq!(
        validate(&numpy, &lan.with_max_size(1 << 20)),
        Err(Error::TooLarge)
    );
    // Containers of any size the input can hold.
    let mut big = unhex("dc1000");
    big.resize(3 + 4096, 0xc0);
    assert_eq!(validate(&big, &lan), Ok(()));
}

#[test]
fn validate_at_says_where() {
    use banyan_core::msg::validate_at;
    let at = |h: &str| validate_at(&unhex(h), &Limits::LAN).map_err(|e| (e.error, e.offset));
    assert_eq!(at("81a576616c756501"), Ok(()));
    assert_eq!(at(""), Err((Error::Truncated, 0)));
    assert_eq!(at("81a1"), Err((Error::Truncated, 2)));
    assert_eq!(at("ddffffffff"), Err((Error::Truncated, 5)));
    assert_eq!(at("0102c0"), Err((Error::TrailingBytes, 1)));
    assert_eq!(at("9301c101"), Err((Error::ReservedMarker, 2)));
    assert_eq!(
        at("8101 02".replace(' ', "").as_str()),
        Err((Error::MapKey, 1))
    );
    assert_eq!(at("91810102"), Err((Error::MapKey, 2)));
    assert_eq!(at("92c0a2c328"), Err((Error::InvalidUtf8, 2)));
    assert_eq!(at("81a16bd4fe00"), Err((Error::ReservedExt, 3)));
    assert_eq!(at("91d5ff0000"), Err((Error::InvalidTimestamp, 1)));
    // Python checks an ext key's type before refusing it as a key.
    assert_eq!(at("81d4fe0001"), Err((Error::ReservedExt, 1)));
    assert_eq!(at("81d4050001"), Err((Error::MapKey, 1)));
    // A container's missing items are found before its depth is judged.
    assert_eq!(
        validate_at(&[0x91; 40], &Limits::DEFAULT).map_err(|e| e.error),
        Err(Error::TooDeep)
    );
    assert_eq!(
        validate_at(&[0x91; 33], &Limits::DEFAULT).map_err(|e| e.error),
        Err(Error::Truncated)
    );
    assert_eq!(
        validate_at(b"\x81\xa5value\x01", &Limits::DEFAULT.with_max_size(4)),
        Err(ErrorAt {
            error: Error::TooLarge,
            offset: 4
        })
    );
    assert_eq!(
        ErrorAt {
            error: Error::MapKey,
            offset: 3
        }
        .to_string(),
        "msgpack map key is not str or bin at byte 3"
    );
}
