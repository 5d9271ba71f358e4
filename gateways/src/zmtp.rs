//! The parts of ZMTP 3.x (ZeroMQ's wire protocol, RFC 23 and RFC 37) that
//! the native backplane speaks: the 64-byte greeting, the NULL mechanism's
//! `READY` handshake, frames and the commands a PUB/SUB peer sends (`PING`,
//! `SUBSCRIBE`, `CANCEL`, `ERROR`). Sans-IO: everything works on byte
//! slices, so it is tested without sockets (and against libzmq in the
//! backplane tests).
//!
//! Interoperability notes (libzmq 4.3, which both pyzmq and the `zmq` crate
//! bundle):
//! - libzmq's signature carries `routing-id length + 1` in bytes 1–8 (a ZMTP
//!   1.0 leftover), so only byte 0 (`0xFF`) and bit 0 of byte 9 are checked.
//! - A ZMTP 3.1 SUB peer sends subscriptions as `SUBSCRIBE`/`CANCEL`
//!   commands, a 3.0 peer as messages starting with `0x01`/`0x00`; both are
//!   accepted. Subscriptions we send upstream use the message form, which
//!   every libzmq PUB/XPUB of 3.x accepts.

/// Length of a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;

/// Frame flag: more frames of this message follow.
pub const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes (network order), not 1.
pub const LONG: u8 = 0x02;
/// Frame flag: this frame is a command, not message data.
pub const COMMAND: u8 = 0x04;

/// Why a peer's greeting or handshake is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first bytes are not a ZMTP signature (not a ZeroMQ peer).
    #[error("not a ZeroMQ peer (bad greeting signature)")]
    NotZmtp,
    /// ZMTP 1.0/2.0 (libzmq older than 4.0): not supported.
    #[error("ZMTP version {0} is not supported (libzmq 4.0 or newer needed)")]
    OldVersion(u8),
    /// A security mechanism other than NULL (CURVE, PLAIN).
    #[error("security mechanism {0:?} is not supported (only NULL)")]
    Mechanism(String),
    /// The first command is not a well-formed `READY`.
    #[error("bad READY command: {0}")]
    BadReady(&'static str),
    /// The peer sent an `ERROR` command.
    #[error("peer refused the handshake: {0}")]
    PeerError(String),
    /// The peer's socket type cannot talk to this port.
    #[error("a {peer} socket cannot connect to the {port} port")]
    SocketType {
        /// The peer's `Socket-Type`.
        peer: String,
        /// `publisher` or `subscriber`.
        port: &'static str,
    },
}

/// Our greeting: ZMTP 3.1, NULL mechanism, `as-server` 0.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[8] = 0x01;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Checks as much of a peer's greeting as has arrived (`bytes` may be
/// shorter than [`GREETING_LEN`]), so that a non-ZeroMQ peer is refused
/// early. Returns the minor version once the whole greeting is there.
///
/// # Errors
/// [`HandshakeError::NotZmtp`], [`HandshakeError::OldVersion`],
/// [`HandshakeError::Mechanism`].
pub fn check_greeting(bytes: &[u8]) -> Result<Option<u8>, HandshakeError> {
    if bytes.first().is_some_and(|&b| b != 0xFF) {
        return Err(HandshakeError::NotZmtp);
    }
    if bytes.len() > 9 && bytes[9] & 0x01 == 0 {
        return Err(HandshakeError::NotZmtp);
    }
    if bytes.len() > 10 && bytes[10] < 3 {
        return Err(HandshakeError::OldVersion(bytes[10]));
    }
    if bytes.len() < GREETING_LEN {
        return Ok(None);
    }
    let mechanism = &bytes[12..32];
    let end = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    if &mechanism[..end] != b"NULL" {
        return Err(HandshakeError::Mechanism(
            String::from_utf8_lossy(&mechanism[..end]).into_owned(),
        ));
    }
    Ok(Some(bytes[11]))
}

/// A frame header parsed from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flag byte ([`MORE`], [`LONG`], [`COMMAND`]).
    pub flags: u8,
    /// Bytes of the header itself (2 or 9).
    pub header_len: usize,
    /// Bytes of the body that follows.
    pub body_len: u64,
}

impl Header {
    /// More frames of this message follow.
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }

    /// This frame is a command.
    pub fn command(&self) -> bool {
        self.flags & COMMAND != 0
    }
}

/// A frame header that breaks the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Reserved flag bits are set.
    #[error("reserved frame flag bits set ({0:#04x})")]
    ReservedFlags(u8),
    /// A command frame with the MORE flag.
    #[error("command frame with the MORE flag")]
    CommandMore,
}

/// Parses the frame header at the start of `buf`; `Ok(None)` if more bytes
/// are needed.
///
/// # Errors
/// [`FrameError`] for a header no ZMTP 3 peer sends.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(MORE | LONG | COMMAND) != 0 {
        return Err(FrameError::ReservedFlags(flags));
    }
    if flags & COMMAND != 0 && flags & MORE != 0 {
        return Err(FrameError::CommandMore);
    }
    if flags & LONG != 0 {
        let Some(size) = buf.get(1..9) else {
            return Ok(None);
        };
        let mut be = [0u8; 8];
        be.copy_from_slice(size);
        Ok(Some(Header {
            flags,
            header_len: 9,
            body_len: u64::from_be_bytes(be),
        }))
    } else {
        let Some(&size) = buf.get(1) else {
            return Ok(None);
        };
        Ok(Some(Header {
            flags,
            header_len: 2,
            body_len: u64::from(size),
        }))
    }
}

/// Appends a frame header for a body of `len` bytes.
pub fn put_header(out: &mut Vec<u8>, flags: u8, len: usize) {
    if len > 255 {
        out.push(flags | LONG);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    } else {
        out.push(flags & !LONG);
        out.push(len as u8);
    }
}

/// Appends a whole frame.
pub fn put_frame(out: &mut Vec<u8>, flags: u8, body: &[u8]) {
    put_header(out, flags, body.len());
    out.extend_from_slice(body);
}

/// Appends a command frame `name` + `data`.
fn put_command(out: &mut Vec<u8>, name: &[u8], data: &[&[u8]]) {
    let len = 1 + name.len() + data.iter().map(|d| d.len()).sum::<usize>();
    put_header(out, COMMAND, len);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    for d in data {
        out.extend_from_slice(d);
    }
}

/// Appends our `READY` command announcing `socket_type` (`XPUB`/`XSUB`).
pub fn put_ready(out: &mut Vec<u8>, socket_type: &str) {
    let name = b"Socket-Type";
    let value = socket_type.as_bytes();
    put_command(
        out,
        b"READY",
        &[
            &[name.len() as u8],
            name,
            &(value.len() as u32).to_be_bytes(),
            value,
        ],
    );
}

/// Appends a subscription (`subscribe`) or cancellation for `topic` in the
/// message form every ZMTP 3 PUB/XPUB peer accepts.
pub fn put_subscription(out: &mut Vec<u8>, topic: &[u8], subscribe: bool) {
    put_header(out, 0, topic.len() + 1);
    out.push(u8::from(subscribe));
    out.extend_from_slice(topic);
}

/// Appends the `PONG` answering a `PING` whose data (after the name) is
/// `ping_data` (2-byte TTL then the context to echo).
pub fn put_pong(out: &mut Vec<u8>, ping_data: &[u8]) {
    let context = ping_data.get(2..).unwrap_or(&[]);
    let context = &context[..context.len().min(16)];
    put_command(out, b"PONG", &[context]);
}

/// A command frame's body split into name and data.
///
/// # Errors
/// When the name length runs past the body.
pub fn split_command(body: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (&n, rest) = body.split_first().ok_or("empty command")?;
    let n = usize::from(n);
    if rest.len() < n {
        return Err("command name runs past the frame");
    }
    Ok(rest.split_at(n))
}

/// The `Socket-Type` property of a `READY` command's data.
///
/// # Errors
/// [`HandshakeError::BadReady`] when the properties are malformed or
/// `Socket-Type` is missing.
pub fn ready_socket_type(mut props: &[u8]) -> Result<String, HandshakeError> {
    let mut socket_type = None;
    while !props.is_empty() {
        let n = usize::from(props[0]);
        let name = props.get(1..1 + n).ok_or(HandshakeError::BadReady(
            "property name runs past the frame",
        ))?;
        let len_at = 1 + n;
        let len = props
            .get(len_at..len_at + 4)
            .ok_or(HandshakeError::BadReady("property length missing"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let value_at = len_at + 4;
        let value =
            props
                .get(value_at..value_at.saturating_add(len))
                .ok_or(HandshakeError::BadReady(
                    "property value runs past the frame",
                ))?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            socket_type = Some(String::from_utf8_lossy(value).into_owned());
        }
        props = &props[value_at + len..];
    }
    socket_type.ok_or(HandshakeError::BadReady("no Socket-Type property"))
}

/// What a command or message from a subscriber means for its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription<'a> {
    /// Subscribe to the prefix.
    Subscribe(&'a [u8]),
    /// Cancel one subscription to the prefix.
    Cancel(&'a [u8]),
}

/// Reads a subscription from a single-frame message body (ZMTP 3.0 form).
pub fn message_subscription(body: &[u8]) -> Option<Subscription<'_>> {
    match body.split_first() {
        Some((1, topic)) => Some(Subscription::Subscribe(topic)),
        Some((0, topic)) => Some(Subscription::Cancel(topic)),
        _ => None,
    }
}

/// Reads a subscription from a command (ZMTP 3.1 form).
pub fn command_subscription<'a>(name: &[u8], data: &'a [u8]) -> Option<Subscription<'a>> {
    match name {
        b"SUBSCRIBE" => Some(Subscription::Subscribe(data)),
        b"CANCEL" => Some(Subscription::Cancel(data)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trip_and_refusals() {
        let g = greeting();
        assert_eq!(check_greeting(&g), Ok(Some(1)));
        for n in 0..GREETING_LEN {
            assert_eq!(check_greeting(&g[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(
            check_greeting(b"GET / HTTP/1.1"),
            Err(HandshakeError::NotZmtp)
        );
        let mut old = g;
        old[10] = 1;
        assert_eq!(
            check_greeting(&old[..11]),
            Err(HandshakeError::OldVersion(1))
        );
        let mut curve = g;
        curve[12..17].copy_from_slice(b"CURVE");
        assert_eq!(
            check_greeting(&curve),
            Err(HandshakeError::Mechanism("CURVE".into()))
        );
        let mut zmtp1 = g;
        zmtp1[9] = 0x7E;
        assert_eq!(check_greeting(&zmtp1[..10]), Err(HandshakeError::NotZmtp));
    }

    #[test]
    fn headers_short_long_and_partial() {
        let mut out = Vec::new();
        put_frame(&mut out, MORE, b"topic");
        put_frame(&mut out, 0, &[7u8; 300]);
        let h = parse_header(&out).unwrap().unwrap();
        assert_eq!((h.flags, h.header_len, h.body_len), (MORE, 2, 5));
        assert!(h.more() && !h.command());
        let rest = &out[7..];
        let h = parse_header(rest).unwrap().unwrap();
        assert_eq!((h.flags, h.header_len, h.body_len), (LONG, 9, 300));
        for n in 0..9 {
            assert_eq!(parse_header(&rest[..n]).unwrap(), None, "{n} bytes");
        }
        assert_eq!(
            parse_header(&[0x08, 0]),
            Err(FrameError::ReservedFlags(0x08))
        );
        assert_eq!(
            parse_header(&[COMMAND | MORE, 0]),
            Err(FrameError::CommandMore)
        );
    }

    #[test]
    fn ready_encodes_and_parses() {
        let mut out = Vec::new();
        put_ready(&mut out, "XPUB");
        let h = parse_header(&out).unwrap().unwrap();
        assert!(h.command());
        let body = &out[h.header_len..];
        assert_eq!(body.len() as u64, h.body_len);
        let (name, data) = split_command(body).unwrap();
        assert_eq!(name, b"READY");
        assert_eq!(ready_socket_type(data).unwrap(), "XPUB");
        // Extra properties, any case.
        let props = b"\x08Identity\x00\x00\x00\x00\x0bsocket-type\x00\x00\x00\x03SUB";
        assert_eq!(ready_socket_type(props).unwrap(), "SUB");
        assert!(ready_socket_type(b"\x0bSocket-Type\x00\x00\x00\x09SUB").is_err());
        assert!(ready_socket_type(b"\x20Socket").is_err());
        assert!(ready_socket_type(b"").is_err());
        assert!(split_command(b"\x09READY").is_err());
        assert!(split_command(b"").is_err());
    }

    #[test]
    fn subscriptions_both_forms() {
        let mut out = Vec::new();
        put_subscription(&mut out, b"abc", true);
        assert_eq!(out, b"\x00\x04\x01abc");
        assert_eq!(
            message_subscription(&out[2..]),
            Some(Subscription::Subscribe(b"abc"))
        );
        assert_eq!(
            message_subscription(b"\x00x"),
            Some(Subscription::Cancel(b"x"))
        );
        assert_eq!(message_subscription(b"\x02x"), None);
        assert_eq!(message_subscription(b""), None);
        assert_eq!(
            command_subscription(b"SUBSCRIBE", b""),
            Some(Subscription::Subscribe(b""))
        );
        assert_eq!(
            command_subscription(b"CANCEL", b"t"),
            Some(Subscription::Cancel(b"t"))
        );
        assert_eq!(command_subscription(b"PING", b""), None);
    }

    #[test]
    fn pong_echoes_the_context() {
        let mut out = Vec::new();
        put_pong(&mut out, b"\x00\x64ctx");
        assert_eq!(out, b"\x04\x08\x04PONGctx");
        out.clear();
        put_pong(&mut out, b"\x00");
        assert_eq!(out, b"\x04\x05\x04PONG");
    }
}
