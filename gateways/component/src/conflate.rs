//! Which queued command a newer one replaces, for the conflated topics of
//! [`Component::recv_batch`](crate::Component::recv_batch).
//!
//! A command on a control topic (`run_motors {"left": 0.5, "right": 0.5}`)
//! is replaced by a newer one on the same topic that sets *every field it
//! sets*: `{"left": 0.3, "right": 0.3}` replaces it, `{"right": 0.3}` alone
//! does not (the older `left` would be lost). Only flat maps with string keys
//! and number, boolean or nil values are compared (what control commands
//! are); anything else (a string value, a nested value, not a map) is never
//! replaced and never replaces, so it reaches the gateway and gets its error
//! report. A replaced command is not parsed: if it was invalid, it is counted
//! as stale, not as an error. The scan is allocation-free apart
//! from the key list and much cheaper than a full parse, so a gateway can
//! skip a backlog of old commands faster than a backplane delivers them.
//!
//! Used by [`Component::recv_batch`](crate::Component::recv_batch) and by
//! gateways that queue commands themselves (serial-gateway's queue for the
//! device).

use std::ops::Range;

/// Most keys a replaceable command may have.
pub const MAX_KEYS: usize = 32;

/// The key byte ranges of a flat msgpack map with string keys and values
/// that are numbers, booleans or nil, or `None` when `payload` is anything
/// else.
pub fn keys(payload: &[u8]) -> Option<Vec<Range<usize>>> {
    let mut at = 0usize;
    let byte = |i: usize| payload.get(i).copied();
    let be = |i: usize, n: usize| -> Option<usize> {
        let b = payload.get(i..i.checked_add(n)?)?;
        Some(b.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)))
    };
    let n = match byte(at)? {
        m @ 0x80..=0x8f => {
            at += 1;
            usize::from(m & 0x0f)
        }
        0xde => {
            let n = be(1, 2)?;
            at += 3;
            n
        }
        _ => return None,
    };
    if n > MAX_KEYS {
        return None;
    }
    let str_len = |at: usize| -> Option<(usize, usize)> {
        // (header length, string length)
        match byte(at)? {
            m @ 0xa0..=0xbf => Some((1, usize::from(m & 0x1f))),
            0xd9 => Some((2, be(at + 1, 1)?)),
            0xda => Some((3, be(at + 1, 2)?)),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (h, len) = str_len(at)?;
        let start = at + h;
        let end = start.checked_add(len)?;
        if end > payload.len() {
            return None;
        }
        out.push(start..end);
        at = end;
        let skip = match byte(at)? {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 => 3,
            0xca | 0xce | 0xd2 => 5,
            0xcb | 0xcf | 0xd3 => 9,
            _ => return None,
        };
        at = at.checked_add(skip)?;
    }
    (at == payload.len()).then_some(out)
}

/// Whether the command `new` (keys `new_keys`) replaces `old` (keys
/// `old_keys`): every key of `old` is a key of `new`.
pub fn replaces(
    new: &[u8],
    new_keys: &[Range<usize>],
    old: &[u8],
    old_keys: &[Range<usize>],
) -> bool {
    old_keys.iter().all(|o| {
        let ok = old.get(o.clone());
        new_keys
            .iter()
            .any(|n| ok.is_some() && new.get(n.clone()) == ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        crate::wire::encode_value(v)
    }

    fn map(entries: &[(&str, rmpv::Value)]) -> Vec<u8> {
        enc(&rmpv::Value::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        ))
    }

    fn r(new: &[u8], old: &[u8]) -> bool {
        replaces(new, &keys(new).unwrap(), old, &keys(old).unwrap())
    }

    #[test]
    fn a_command_setting_the_same_fields_replaces_the_older_one() {
        let both = map(&[("left", 0.5.into()), ("right", (-0.5).into())]);
        let both2 = map(&[("right", 1.into()), ("left", 0.into())]);
        let left = map(&[("left", 0.3.into())]);
        assert!(r(&both2, &both));
        assert!(r(&both, &left));
        assert!(!r(&left, &both), "the older right would be lost");
        assert!(r(&map(&[]), &map(&[])));
        let timed = map(&[("left", 0.5.into()), ("duration_ms", 300.into())]);
        assert!(!r(&left, &timed));
    }

    #[test]
    fn only_flat_scalar_maps_are_compared() {
        assert_eq!(
            keys(&map(&[("a", true.into()), ("b", rmpv::Value::Nil)]))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            keys(&map(&[("a", 70000.into()), ("b", (-3).into())]))
                .unwrap()
                .len(),
            2
        );
        for bad in [
            enc(&rmpv::Value::from(1)),
            map(&[("a", rmpv::Value::Array(vec![]))]),
            map(&[("left", "fast".into())]),
            enc(&rmpv::Value::Map(vec![(1.into(), 2.into())])),
            vec![0x81, 0xa1, b'a'],       // value missing
            vec![0x81, 0xa1, b'a', 1, 2], // trailing byte
            vec![0x81, 0xa5, b'a'],       // key runs off the end
            vec![0xde, 0xff],             // truncated header
        ] {
            assert_eq!(keys(&bad), None, "{bad:x?}");
        }
    }
}
