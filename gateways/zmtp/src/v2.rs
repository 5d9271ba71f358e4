//! Version negotiation (RFC 23, "Version Negotiation") and the ZMTP 2.0
//! greeting (RFC 15), so that one listening port serves ZMTP 3.x peers and
//! ZMTP 2.0 peers (libzmq 3.x, JeroMQ 0.3.x) as libzmq 4 does.
//!
//! A ZMTP 2.0 peer reads exactly 12 greeting bytes (signature, revision,
//! socket type) and takes everything after them for frames, so a ZMTP 3
//! greeting sent in one piece breaks it. [`Negotiation`] sends the
//! signature and our major version first ([`OPENING`]) and the rest only
//! once the peer's version byte arrived: the 53 remaining bytes of a ZMTP 3
//! greeting, or a ZMTP 2.0 socket-type byte and an empty identity frame.
//!
//! ZMTP 2.0 frames are ZMTP 3 frames without commands (flags `MORE` and
//! `LONG` only), so [`Decoder`](crate::Decoder) reads both; a 2.0 peer sends
//! subscriptions as `0x01`/`0x00` messages, which is the form
//! [`put_subscription`](crate::put_subscription) writes. It knows no
//! `PING`: do not send it one.
//!
//! ZMTP 1.0 (revision 0, or no revision at all) is refused.

use crate::{check_greeting, parse_header, HandshakeError, GREETING_LEN};

/// Signature bytes at the start of every versioned greeting.
pub const SIGNATURE_LEN: usize = 10;
/// Offset of the version byte (ZMTP 3: major version; ZMTP 2.0: revision).
pub const REVISION_AT: usize = 10;
/// Length of a ZMTP 2.0 greeting (signature, revision, socket type); the
/// identity frame follows.
pub const V2_GREETING_LEN: usize = 12;
/// The ZMTP 2.0 revision byte.
pub const V2_REVISION: u8 = 1;

/// What we send as soon as a connection opens: the signature and major
/// version 3 (the first 11 bytes of [`greeting`](crate::greeting)).
pub const OPENING: [u8; SIGNATURE_LEN + 1] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3];

/// The ZMTP 2.0 socket-type byte of `name` (libzmq's numbering, which RFC
/// 15 uses), for the socket types a backplane deals with and their peers.
pub fn socket_type_code(name: &str) -> Option<u8> {
    Some(match name {
        "PAIR" => 0,
        "PUB" => 1,
        "SUB" => 2,
        "REQ" => 3,
        "REP" => 4,
        "DEALER" => 5,
        "ROUTER" => 6,
        "PULL" => 7,
        "PUSH" => 8,
        "XPUB" => 9,
        "XSUB" => 10,
        _ => return None,
    })
}

/// The name of a ZMTP 2.0 socket-type byte.
pub fn socket_type_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 11] = [
        "PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
    ];
    NAMES.get(usize::from(code)).copied()
}

/// How far a [`Negotiation`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More of the peer's bytes are needed.
    NeedMore,
    /// A ZMTP 3 peer's whole greeting (NULL mechanism) arrived: consume
    /// [`GREETING_LEN`] bytes; `READY` commands come next.
    V3 {
        /// The peer's minor version (1 or more: it understands `PING`).
        minor: u8,
    },
    /// A ZMTP 2.0 peer's greeting and identity frame arrived: consume
    /// `len` bytes; messages come next.
    V2 {
        /// Bytes of the greeting and the identity frame.
        len: usize,
        /// The peer's socket type.
        peer: &'static str,
    },
}

/// The greeting exchange of one connection, sans-IO: send [`OPENING`] when
/// the connection opens, then pass the peer's bytes (from the start of the
/// connection) to [`Negotiation::step`] until it says which protocol the
/// peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiation {
    /// The rest of our greeting was written out.
    sent_rest: bool,
}

impl Negotiation {
    /// A negotiation that has sent [`OPENING`] only.
    pub fn new() -> Negotiation {
        Negotiation::default()
    }

    /// Looks at the peer's bytes received so far and appends to `out` what
    /// to send (the rest of our greeting, once): `our_type` is the socket
    /// type we are (`XPUB`, `XSUB`, …), sent to a ZMTP 2.0 peer.
    ///
    /// # Errors
    /// [`HandshakeError::NotZmtp`], [`HandshakeError::OldVersion`] (ZMTP 1.0,
    /// or a version 2), [`HandshakeError::Mechanism`],
    /// [`HandshakeError::SocketType`] (an unknown ZMTP 2.0 socket type),
    /// [`HandshakeError::BadReady`] (a malformed ZMTP 2.0 identity).
    pub fn step(
        &mut self,
        peer: &[u8],
        our_type: &str,
        out: &mut Vec<u8>,
    ) -> Result<Progress, HandshakeError> {
        let head = peer.get(..=REVISION_AT).unwrap_or(peer);
        check_signature(head)?;
        let Some(&revision) = head.get(REVISION_AT) else {
            return Ok(Progress::NeedMore);
        };
        if revision == V2_REVISION {
            if !self.sent_rest {
                self.sent_rest = true;
                out.push(socket_type_code(our_type).unwrap_or(0));
                // Our identity: an empty final frame.
                out.extend_from_slice(&[0, 0]);
            }
            return v2_greeting(peer);
        }
        if revision < 3 {
            return Err(HandshakeError::OldVersion(revision));
        }
        if !self.sent_rest {
            self.sent_rest = true;
            out.extend_from_slice(crate::greeting().get(OPENING.len()..).unwrap_or_default());
        }
        match check_greeting(peer.get(..GREETING_LEN).unwrap_or(peer))? {
            None => Ok(Progress::NeedMore),
            Some(minor) => Ok(Progress::V3 { minor }),
        }
    }
}

/// The signature checks of [`check_greeting`], which also refuses what a
/// ZMTP 2.0 peer sends.
fn check_signature(head: &[u8]) -> Result<(), HandshakeError> {
    if head.first().is_some_and(|&b| b != 0xFF) {
        return Err(HandshakeError::NotZmtp);
    }
    if head.get(9).is_some_and(|&b| b & 0x01 == 0) {
        return Err(HandshakeError::NotZmtp);
    }
    Ok(())
}

/// A ZMTP 2.0 greeting: socket type, then the identity (a final short
/// frame).
fn v2_greeting(peer: &[u8]) -> Result<Progress, HandshakeError> {
    let Some(&code) = peer.get(V2_GREETING_LEN - 1) else {
        return Ok(Progress::NeedMore);
    };
    let peer_type = socket_type_name(code).ok_or_else(|| HandshakeError::SocketType {
        peer: format!("unknown ({code:#04x})"),
        port: "ZMTP 2.0",
    })?;
    let identity = peer.get(V2_GREETING_LEN..).unwrap_or_default();
    if identity.first().is_some_and(|&flags| flags != 0) {
        return Err(HandshakeError::BadReady("bad ZMTP 2.0 identity frame"));
    }
    let header = parse_header(identity)
        .map_err(|_| HandshakeError::BadReady("bad ZMTP 2.0 identity frame"))?;
    let Some(h) = header else {
        return Ok(Progress::NeedMore);
    };
    // A final short frame: the body is at most 255 bytes.
    let len = V2_GREETING_LEN + 2 + h.body_len as usize;
    if peer.len() < len {
        return Ok(Progress::NeedMore);
    }
    Ok(Progress::V2 {
        len,
        peer: peer_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `peer` one byte at a time; returns the first non-NeedMore
    /// result, how many bytes it took, and everything sent.
    fn run(peer: &[u8], our: &str) -> (Result<Progress, HandshakeError>, usize, Vec<u8>) {
        let mut n = Negotiation::new();
        let mut out = OPENING.to_vec();
        for len in 0..=peer.len() {
            match n.step(&peer[..len], our, &mut out) {
                Ok(Progress::NeedMore) => {}
                r => return (r, len, out),
            }
        }
        (Ok(Progress::NeedMore), peer.len(), out)
    }

    #[test]
    fn opening_is_the_start_of_our_greeting() {
        assert_eq!(OPENING[..], crate::greeting()[..OPENING.len()]);
    }

    #[test]
    fn zmtp3_peer_gets_the_rest_of_a_zmtp3_greeting() {
        let peer = crate::greeting();
        let (r, used, out) = run(&peer, "XPUB");
        assert_eq!(r, Ok(Progress::V3 { minor: 1 }));
        assert_eq!(used, GREETING_LEN);
        assert_eq!(out, crate::greeting());
        // The rest goes out as soon as the version byte is in.
        let mut n = Negotiation::new();
        let mut out = Vec::new();
        assert_eq!(
            n.step(&peer[..10], "XPUB", &mut out),
            Ok(Progress::NeedMore)
        );
        assert!(out.is_empty());
        assert_eq!(
            n.step(&peer[..11], "XPUB", &mut out),
            Ok(Progress::NeedMore)
        );
        assert_eq!(out.len(), GREETING_LEN - OPENING.len());
        assert_eq!(
            n.step(&peer[..40], "XPUB", &mut out),
            Ok(Progress::NeedMore)
        );
        assert_eq!(out.len(), GREETING_LEN - OPENING.len(), "sent once");
    }

    #[test]
    fn zmtp2_peer_gets_a_zmtp2_greeting_and_identity() {
        // JeroMQ 0.3 SUB: signature, revision 1, SUB, empty identity; then
        // a subscription message.
        let mut peer = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 1, 2, 0, 0];
        peer.extend_from_slice(b"\x00\x02\x01t");
        let (r, used, out) = run(&peer, "XPUB");
        assert_eq!(
            r,
            Ok(Progress::V2 {
                len: 14,
                peer: "SUB"
            })
        );
        assert_eq!(used, 14);
        assert_eq!(out, [&OPENING[..], &[9, 0, 0]].concat());
        // An identity with a body.
        let peer = [&peer[..12], b"\x00\x03abc"].concat();
        assert_eq!(
            run(&peer, "XSUB").0,
            Ok(Progress::V2 {
                len: 17,
                peer: "SUB"
            })
        );
    }

    #[test]
    fn refusals() {
        let g = crate::greeting();
        let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), HandshakeError::NotZmtp),
            // ZMTP 1.0 (no revision: byte 9 is an identity frame's flags).
            (vec![1, 0, 0], HandshakeError::NotZmtp),
            ([&g[..10], &[0]].concat(), HandshakeError::OldVersion(0)),
            ([&g[..10], &[2]].concat(), HandshakeError::OldVersion(2)),
            (
                [&g[..10], &[1, 42, 0, 0]].concat(),
                HandshakeError::SocketType {
                    peer: "unknown (0x2a)".into(),
                    port: "ZMTP 2.0",
                },
            ),
            (
                [&g[..10], &[1, 2, 1, 0]].concat(),
                HandshakeError::BadReady("bad ZMTP 2.0 identity frame"),
            ),
            (
                [&g[..10], &[1, 2, 0x02]].concat(),
                HandshakeError::BadReady("bad ZMTP 2.0 identity frame"),
            ),
            (
                [&g[..10], &[1, 2, 0x40]].concat(),
                HandshakeError::BadReady("bad ZMTP 2.0 identity frame"),
            ),
        ];
        for (peer, expected) in cases {
            assert_eq!(run(&peer, "XPUB").0, Err(expected), "{peer:?}");
        }
        let mut curve = g;
        curve[12..17].copy_from_slice(b"CURVE");
        assert_eq!(
            run(&curve, "XPUB").0,
            Err(HandshakeError::Mechanism("CURVE".into()))
        );
    }

    #[test]
    fn socket_type_codes_round_trip() {
        for code in 0..=10 {
            let name = socket_type_name(code).unwrap();
            assert_eq!(socket_type_code(name), Some(code));
        }
        assert_eq!(socket_type_name(11), None);
        assert_eq!(socket_type_code("STREAM"), None);
    }
}
