//! Raw ZMTP 3.1 bytes (RFC 23/37) for tests that play a peer by hand:
//! written from the RFC, independent of the backplane's and `banyan-zmtp`'s
//! code, so the tests do not check that code against itself. Use with
//! `mod zmtp_raw;`.
#![allow(dead_code)]

/// Frame flag: more frames of this message follow.
pub const MORE: u8 = 0x01;
/// Frame flag: an 8-byte size follows instead of a 1-byte one.
pub const LONG: u8 = 0x02;
/// Frame flag: a command frame.
pub const COMMAND: u8 = 0x04;

/// A 64-byte greeting for version `major.minor` and `mechanism` (e.g.
/// `b"NULL"`); as-server and the filler stay 0.
pub fn greeting(major: u8, minor: u8, mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = major;
    g[11] = minor;
    g[12..12 + mechanism.len()].copy_from_slice(mechanism);
    g
}

/// A frame header: flags, then the short or long size.
pub fn header(flags: u8, len: u64) -> Vec<u8> {
    if len > 255 {
        let mut h = vec![flags | LONG];
        h.extend_from_slice(&len.to_be_bytes());
        h
    } else {
        vec![flags, len as u8]
    }
}

/// One frame on the wire: flags, short or long size, body.
pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = header(flags, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// A command frame: name length, name, data.
pub fn command(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(data);
    frame(COMMAND, &body)
}

/// A `READY` command with the given `Socket-Type` (`None`: no properties).
pub fn ready(socket_type: Option<&str>) -> Vec<u8> {
    let mut props = Vec::new();
    if let Some(t) = socket_type {
        props.push(11);
        props.extend_from_slice(b"Socket-Type");
        props.extend_from_slice(&(t.len() as u32).to_be_bytes());
        props.extend_from_slice(t.as_bytes());
    }
    command(b"READY", &props)
}

/// A whole multipart message: every frame but the last with [`MORE`].
pub fn message(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let more = if i + 1 < frames.len() { MORE } else { 0 };
        out.extend_from_slice(&frame(more, f));
    }
    out
}
