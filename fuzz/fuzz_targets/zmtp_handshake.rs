//! The ZMTP handshake as the native backplane and the services broker's
//! native ROUTER run it: the greeting negotiation
//! (`banyan_zmtp::Negotiation`, ZMTP 3.x and 2.0 peers), after a ZMTP 3
//! greeting the READY command's properties, and the whole server-side
//! opening (`banyan_zmtp::opening::Opening`: greeting, our READY, the
//! peer's READY with its socket type checked and its Identity read).
//!
//! Input: byte 0 picks the chunk size (`1 + b0 % 32`) and our socket type
//! (`b0 & 0x80`: XSUB, else XPUB; for the opening, `b0 & 0x40`: ROUTER
//! accepting DEALER/REQ/ROUTER); the rest is what the peer sends from the
//! start of the connection. Checks: no panic; what we send back is at most
//! the rest of one greeting, sent once; the outcome (the protocol and where
//! its greeting ends, or the error) is the same whether the peer's bytes
//! arrive whole, in chunks or one at a time; a ZMTP 2.0 greeting's length
//! lies within the bytes seen; the READY that follows a ZMTP 3 greeting is
//! parsed or refused, never a panic; the opening's outcome (greeted, ready
//! with the peer's socket type and identity, or the error) is the same
//! whole, in chunks or byte by byte, and every length it consumes lies
//! within the bytes it was given.
#![no_main]

use banyan_zmtp::opening::{Opened, Opening};
use banyan_zmtp::{split_command, v2, Decoder, Negotiation, Progress, Step, GREETING_LEN};
use libfuzzer_sys::fuzz_target;

/// The first decision on `peer` fed `chunk` bytes at a time: the outcome
/// (as text, to compare), the bytes seen then, and what we sent.
fn negotiate(peer: &[u8], chunk: usize, ours: &str) -> (String, usize, Vec<u8>) {
    let mut n = Negotiation::new();
    let mut out = Vec::new();
    let mut seen = 0;
    loop {
        seen = (seen + chunk).min(peer.len());
        let sent_before = out.len();
        let r = n.step(&peer[..seen], ours, &mut out);
        // The rest of our greeting goes out once, whole.
        assert!(
            out.len() == sent_before || sent_before == 0,
            "sent twice: {sent_before} then {} bytes",
            out.len()
        );
        match r {
            Ok(Progress::NeedMore) if seen < peer.len() => {}
            Ok(Progress::NeedMore) => return ("need more".into(), seen, out),
            Ok(Progress::V3 { minor }) => {
                assert!(seen >= GREETING_LEN);
                return (format!("v3 minor {minor}"), seen, out);
            }
            Ok(Progress::V2 { len, peer: t }) => {
                assert!(len <= seen, "V2 greeting of {len} bytes, {seen} seen");
                return (format!("v2 {len} {t}"), seen, out);
            }
            Err(e) => return (format!("error {e}"), seen, out),
        }
    }
}

/// The whole opening on `peer` fed `chunk` bytes at a time: its outcome as
/// text.
fn open(peer: &[u8], chunk: usize, router: bool) -> String {
    let mut o = if router {
        Opening::new(
            "ROUTER",
            "fuzz",
            |t| matches!(t, "DEALER" | "REQ" | "ROUTER"),
            4096,
        )
    } else {
        Opening::new("XPUB", "fuzz", |t| matches!(t, "SUB" | "XSUB"), 4096)
    };
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut greeted = None;
    loop {
        match o.step(&buf, &mut out) {
            Ok(Opened::NeedMore) => {
                if fed == peer.len() {
                    return format!("need more, greeted {greeted:?}");
                }
                let n = chunk.min(peer.len() - fed);
                buf.extend_from_slice(&peer[fed..fed + n]);
                fed += n;
            }
            Ok(Opened::Greeted { len, minor }) => {
                assert!(len <= buf.len(), "greeting of {len}, {} given", buf.len());
                assert!(greeted.is_none(), "greeted twice");
                buf.drain(..len);
                greeted = Some(minor);
            }
            Ok(Opened::Ready { len, peer }) => {
                assert!(len <= buf.len(), "READY of {len}, {} given", buf.len());
                return format!("ready {greeted:?} {len} {peer:?}");
            }
            Err(e) => return format!("error {e}, greeted {greeted:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, peer)) = data.split_first() else {
        return;
    };
    let ours = if b0 & 0x80 != 0 { "XSUB" } else { "XPUB" };
    let chunk = 1 + usize::from(b0 % 32);
    let (whole, _, out_whole) = negotiate(peer, peer.len().max(1), ours);
    let (chunked, _, out_chunked) = negotiate(peer, chunk, ours);
    let (bytewise, _, _) = negotiate(peer, 1, ours);
    assert_eq!(whole, chunked, "whole vs chunks of {chunk}");
    assert_eq!(whole, bytewise, "whole vs one byte at a time");
    for out in [&out_whole, &out_chunked] {
        assert!(
            out.len() <= GREETING_LEN - v2::OPENING.len(),
            "sent {} bytes",
            out.len()
        );
    }
    // After a ZMTP 3 greeting: the READY command (what the backplane reads
    // next), through the same decoder and property parser.
    if whole.starts_with("v3") {
        let rest = &peer[GREETING_LEN..];
        let mut d = Decoder::new(64 * 1024);
        if let Ok(Step::Command { len, body }) = d.step(rest) {
            assert!(body <= len && len <= rest.len());
            if let Ok((name, props)) = split_command(&rest[body..len]) {
                if name == b"READY" {
                    let _ = banyan_zmtp::ready_socket_type(props);
                }
            }
        }
    }
    // The whole opening, as both native engines run it.
    let router = b0 & 0x40 != 0;
    let whole = open(peer, peer.len().max(1), router);
    assert_eq!(
        whole,
        open(peer, chunk, router),
        "opening: whole vs chunks of {chunk}"
    );
    assert_eq!(
        whole,
        open(peer, 1, router),
        "opening: whole vs one byte at a time"
    );
});
