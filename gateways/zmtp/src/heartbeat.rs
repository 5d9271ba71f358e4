//! ZMTP 3.1 heartbeats (RFC 37): the `PING` command a peer sends with the
//! time to live it asks for, and what to read from one. Answer with
//! [`put_pong`](crate::put_pong). Only ZMTP 3.1 and later peers know these
//! commands: a 3.0 peer (zmq.rs) may close the connection on one, a 2.0
//! peer cannot even frame it.

use std::time::Duration;

/// Largest time to live a `PING` carries (65,535 deciseconds).
pub const MAX_TTL: Duration = Duration::from_millis(u16::MAX as u64 * 100);

/// A peer of ZMTP 3.`minor` understands `PING`/`PONG`.
pub fn has_heartbeats(minor: u8) -> bool {
    minor >= 1
}

/// Appends a `PING` asking the peer to close the connection when it hears
/// nothing from us for `ttl` (rounded down to deciseconds, at most
/// [`MAX_TTL`]; zero: no limit), with `context` (at most 16 bytes are
/// sent) for the peer to echo in its `PONG`.
pub fn put_ping(out: &mut Vec<u8>, ttl: Duration, context: &[u8]) {
    let ttl = u16::try_from(ttl.as_millis() / 100).unwrap_or(u16::MAX);
    let context = context.get(..16).unwrap_or(context);
    let len = 1 + 4 + 2 + context.len();
    // A short frame: the body is at most 23 bytes.
    out.extend_from_slice(&[crate::COMMAND, len as u8, 4]);
    out.extend_from_slice(b"PING");
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(context);
}

/// The time to live a `PING` asks for, from its data (after the name);
/// zero when it asks for none or the data is too short to carry one.
pub fn ping_ttl(ping_data: &[u8]) -> Duration {
    match ping_data {
        [hi, lo, ..] => Duration::from_millis(u64::from(u16::from_be_bytes([*hi, *lo])) * 100),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_header, split_command};

    #[test]
    fn ping_golden_bytes_and_round_trip() {
        let mut out = Vec::new();
        put_ping(&mut out, Duration::from_millis(3_050), b"ab");
        assert_eq!(out, b"\x04\x09\x04PING\x00\x1eab");
        let h = parse_header(&out).unwrap().unwrap();
        assert!(h.command());
        assert_eq!(h.body_len as usize, out.len() - 2);
        let (name, data) = split_command(&out[2..]).unwrap();
        assert_eq!(name, b"PING");
        assert_eq!(ping_ttl(data), Duration::from_secs(3));
        // Saturating TTL, context cut to 16 bytes.
        out.clear();
        put_ping(&mut out, Duration::from_secs(1_000_000), &[7; 40]);
        let (_, data) = split_command(&out[2..]).unwrap();
        assert_eq!(ping_ttl(data), MAX_TTL);
        assert_eq!(data.len(), 2 + 16);
    }

    #[test]
    fn ttl_of_short_pings_is_zero() {
        assert_eq!(ping_ttl(b""), Duration::ZERO);
        assert_eq!(ping_ttl(b"\x01"), Duration::ZERO);
        assert_eq!(ping_ttl(b"\x00\x05"), Duration::from_millis(500));
        assert!(!has_heartbeats(0) && has_heartbeats(1) && has_heartbeats(2));
    }
}
