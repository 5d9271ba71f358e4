//! The parts of ZMTP 3.x (ZeroMQ's wire protocol, RFC 23 and RFC 37) that
//! the native backplane and the services broker's native ROUTER speak: the
//! 64-byte greeting, the NULL mechanism's `READY` handshake (the server
//! side of it in [`opening`]), frames and the commands a PUB/SUB peer sends
//! (`PING`, `SUBSCRIBE`, `CANCEL`, `ERROR`), heartbeat clocks
//! ([`liveness`]), a connection's output queue ([`output`]) and the poll
//! loops' adaptive busy polling ([`busy`]). Sans-IO:
//! everything works on byte slices and instants passed in, so it is tested
//! without sockets (and against libzmq in the backplane and services
//! tests) — except `server` (feature `server`, with `mio`): the poll-loop
//! scaffolding both native servers share (connection slots and their
//! ready/dirty lists, accepting with retry, handshake deadlines).
//!
//! Interoperability notes (libzmq 4.3, which both pyzmq and the `zmq` crate
//! bundle):
//! - libzmq's signature carries `routing-id length + 1` in bytes 1–8 (a ZMTP
//!   1.0 leftover), so only byte 0 (`0xFF`) and bit 0 of byte 9 are checked.
//! - A ZMTP 3.1 SUB peer sends subscriptions as `SUBSCRIBE`/`CANCEL`
//!   commands, a 3.0 peer as messages starting with `0x01`/`0x00`; both are
//!   accepted. Subscriptions we send upstream use the message form, which
//!   every libzmq PUB/XPUB of 3.x accepts.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod busy;
pub mod engine;
pub mod heartbeat;
pub mod liveness;
pub mod opening;
pub mod output;
pub mod parts;
pub mod ready;
#[cfg(feature = "server")]
pub mod server;
pub mod v2;

pub use engine::Engine;
pub use heartbeat::{ping_ttl, put_ping};
pub use v2::{Negotiation, Progress};

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
    if bytes.get(9).is_some_and(|&b| b & 0x01 == 0) {
        return Err(HandshakeError::NotZmtp);
    }
    if let Some(&major) = bytes.get(10).filter(|&&major| major < 3) {
        return Err(HandshakeError::OldVersion(major));
    }
    let (Some(&minor), Some(mechanism), true) = (
        bytes.get(11),
        bytes.get(12..32),
        bytes.len() >= GREETING_LEN,
    ) else {
        return Ok(None);
    };
    let name = mechanism.split(|&b| b == 0).next().unwrap_or(mechanism);
    if name != b"NULL" {
        return Err(HandshakeError::Mechanism(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(Some(minor))
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
    /// A command frame with the MORE flag, or inside a multipart message.
    #[error("command frame with the MORE flag")]
    CommandMore,
    /// A command frame whose name is missing or runs past the frame.
    #[error("malformed command: {0}")]
    BadCommand(&'static str),
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

/// Skipping the rest of a message that is over a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Discard {
    /// Body bytes of the current frame still to skip.
    left: u64,
    /// Frames follow the current one.
    more: bool,
}

/// Size limits of a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    message: usize,
    command: usize,
}

/// Parses the whole message or command at the front of `buf`, refusing to
/// wait for more than `limits.message` bytes of a message or
/// `limits.command` bytes of a command (then the step is [`Step::Oversize`],
/// the rest of it is described by the [`Discard`], and the `u64` is its
/// size as far as the headers tell).
#[expect(
    clippy::indexing_slicing,
    reason = "`at` only advances over whole frames that `parse_header` found in `buf`"
)]
fn parse(buf: &[u8], limits: Limits) -> Result<(Step, Option<(Discard, u64)>), FrameError> {
    let mut at = 0usize;
    let mut first = None;
    loop {
        let Some(h) = parse_header(&buf[at..])? else {
            return Ok((Step::NeedMore, None));
        };
        let body = at + h.header_len;
        let total = (body as u64).saturating_add(h.body_len);
        let limit = if h.command() {
            limits.command.min(limits.message)
        } else {
            limits.message
        };
        if h.command() && at > 0 {
            return interleaved(buf, limit, at, h).map(|step| (step, None));
        }
        if total > limit as u64 {
            let discard = Discard {
                left: h.body_len,
                more: h.more(),
            };
            return Ok((Step::Oversize { skip: body }, Some((discard, total))));
        }
        // `total` fits in usize: it is at most `max_message`.
        let total = total as usize;
        if h.command() {
            let step = if buf.len() < total {
                Step::NeedMore
            } else {
                Step::Command { len: total, body }
            };
            return Ok((step, None));
        }
        if buf.len() < total {
            return Ok((Step::NeedMore, None));
        }
        let first = *first.get_or_insert((body, total));
        at = total;
        if !h.more() {
            return Ok((Step::Message { len: at, first }, None));
        }
    }
}

/// A command frame with header `h` at `at`, after frames of a message:
/// libzmq's engine sends `PING`/`PONG` between the frames of a message
/// (it answers between frames), and libzmq's decoder takes commands there.
fn interleaved(buf: &[u8], limit: usize, at: usize, h: Header) -> Result<Step, FrameError> {
    let len = (h.header_len as u64).saturating_add(h.body_len);
    if len > limit as u64 {
        return Err(FrameError::BadCommand("oversize command inside a message"));
    }
    // `len` fits in usize: it is at most `limit`.
    let len = len as usize;
    if buf.len() < at + len {
        return Ok(Step::NeedMore);
    }
    Ok(Step::Interleaved {
        at,
        len,
        body: at + h.header_len,
    })
}

/// What [`Decoder::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing can be done until more bytes arrive.
    NeedMore,
    /// Consumed this many bytes of an oversize message being skipped.
    Skipped(usize),
    /// A command frame: consume `len` bytes; its body starts at `body`.
    Command {
        /// Bytes of the whole frame.
        len: usize,
        /// Offset of the body.
        body: usize,
    },
    /// A command frame between the frames of a message (libzmq sends its
    /// `PING`/`PONG` there): it is `at..at + len`, its body starts at
    /// `body`. Handle it, then cut it out — move the `at` bytes before it
    /// up by `len` and consume `len` — and step again.
    Interleaved {
        /// Offset of the command frame (the message's frames before it).
        at: usize,
        /// Bytes of the command frame.
        len: usize,
        /// Offset of the command's body.
        body: usize,
    },
    /// A whole message: consume `len` bytes; its first frame's body is
    /// `first.0..first.1`.
    Message {
        /// Bytes of all frames with their headers.
        len: usize,
        /// Body of the first frame (the topic).
        first: (usize, usize),
    },
    /// A message over the size limit starts: consume `skip` bytes; the rest
    /// of it is consumed by the next steps ([`Step::Skipped`]).
    Oversize {
        /// Bytes to consume now.
        skip: usize,
    },
}

/// The receiving side of a ZMTP 3 connection after the greeting: splits a
/// byte stream into commands and whole messages, skipping messages over
/// `max_message` bytes without buffering them. Sans-IO: the caller keeps
/// the bytes and consumes what each [`Step`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    limits: Limits,
    discard: Option<Discard>,
    oversize_len: u64,
}

impl Decoder {
    /// A decoder that skips messages (and commands) over `max_message`
    /// bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder::with_limits(max_message, max_message)
    }

    /// A decoder that skips messages over `max_message` bytes and commands
    /// over `max_command` bytes (whole frames, headers included), without
    /// buffering them.
    pub fn with_limits(max_message: usize, max_command: usize) -> Decoder {
        Decoder {
            limits: Limits {
                message: max_message,
                command: max_command,
            },
            discard: None,
            oversize_len: 0,
        }
    }

    /// Changes the message limit from the next [`Decoder::step`] on: a
    /// message already partly buffered that is over the new limit is then
    /// skipped ([`Step::Oversize`]).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.limits.message = max_message;
    }

    /// The message limit.
    pub fn max_message(&self) -> usize {
        self.limits.message
    }

    /// The size, as far as its headers told, of the last message or command
    /// skipped for being over a limit (what was known when
    /// [`Step::Oversize`] was returned: the frames up to the first one that
    /// went over).
    pub fn oversize_len(&self) -> u64 {
        self.oversize_len
    }

    /// A message is being skipped.
    pub fn discarding(&self) -> bool {
        self.discard.is_some()
    }

    /// Looks at the unconsumed bytes `buf` and says what is next; the
    /// caller consumes the bytes the step names (and nothing for
    /// [`Step::NeedMore`]).
    ///
    /// # Errors
    /// [`FrameError`]: the stream is broken and cannot be resynchronized.
    #[expect(
        clippy::indexing_slicing,
        reason = "`used` only advances over bytes of `buf` (at most `rest.len()` at a time)"
    )]
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, FrameError> {
        let mut used = 0usize;
        while let Some(d) = self.discard.as_mut() {
            let rest = &buf[used..];
            if d.left > 0 {
                let n = (rest.len() as u64).min(d.left) as usize;
                if n == 0 {
                    break;
                }
                d.left -= n as u64;
                used += n;
            } else if !d.more {
                self.discard = None;
            } else {
                let Some(h) = parse_header(rest)? else {
                    break;
                };
                *d = Discard {
                    left: h.body_len,
                    // A command between the frames does not end the
                    // message (it is skipped with it).
                    more: h.more() || h.command(),
                };
                used += h.header_len;
            }
        }
        if used > 0 {
            return Ok(Step::Skipped(used));
        }
        if self.discard.is_some() {
            return Ok(Step::NeedMore);
        }
        let (step, discard) = parse(buf, self.limits)?;
        if let Some((discard, len)) = discard {
            self.discard = Some(discard);
            self.oversize_len = len;
        }
        Ok(step)
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
    let context = context.get(..16).unwrap_or(context);
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
pub fn ready_socket_type(props: &[u8]) -> Result<String, HandshakeError> {
    ready::socket_type(props)?.ok_or(HandshakeError::BadReady("no Socket-Type property"))
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

/// A checked driver of the [`Decoder`] for tests and fuzz targets (feature
/// `check`; not part of the API). It panics on purpose when the decoder
/// breaks its contract, so product builds leave it out.
#[cfg(any(test, feature = "check"))]
#[doc(hidden)]
#[allow(clippy::indexing_slicing, clippy::panic)]
pub mod check {
    use super::{Decoder, Step};

    /// Every step of a [`Decoder`] over `stream`, fed `chunk` bytes at a time,
    /// as `(kind, bytes)` pairs (`M` message, `C` command, `I` command cut out
    /// of a message, `O` oversize message skipped), and whether the stream
    /// ended in an error. Panics if a step breaks the decoder's contract:
    /// consumes nothing or more than is buffered, or gives ranges outside it.
    pub fn decode_steps(stream: &[u8], max: usize, chunk: usize) -> (Vec<(u8, Vec<u8>)>, bool) {
        let mut decoder = Decoder::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            let step = match decoder.step(&buf) {
                Ok(s) => s,
                Err(_) => return (out, true),
            };
            let used = match step {
                Step::NeedMore => {
                    if fed == stream.len() {
                        return (out, false);
                    }
                    let n = chunk.min(stream.len() - fed);
                    buf.extend_from_slice(&stream[fed..fed + n]);
                    fed += n;
                    continue;
                }
                Step::Skipped(n) => n,
                Step::Oversize { skip } => {
                    out.push((b'O', Vec::new()));
                    skip
                }
                Step::Command { len, body } => {
                    assert!(body <= len, "command body {body} outside {len}");
                    out.push((b'C', buf[body..len].to_vec()));
                    len
                }
                Step::Message { len, first } => {
                    assert!(
                        first.0 <= first.1 && first.1 <= len,
                        "{first:?} outside {len}"
                    );
                    assert!(len <= max, "message of {len} bytes over the limit {max}");
                    out.push((b'M', buf[..len].to_vec()));
                    len
                }
                Step::Interleaved { at, len, body } => {
                    assert!(
                        at > 0 && at < body && body <= at + len && at + len <= buf.len(),
                        "interleaved command {at}+{len} (body {body}) outside {}",
                        buf.len()
                    );
                    out.push((b'I', buf[body..at + len].to_vec()));
                    // Cut the command out, as the backplane does.
                    buf.drain(at..at + len);
                    continue;
                }
            };
            assert!(
                used > 0 && used <= buf.len(),
                "step {step:?} on {} bytes",
                buf.len()
            );
            buf.drain(..used);
        }
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

    fn lim(n: usize) -> Limits {
        Limits {
            message: n,
            command: n,
        }
    }

    fn frames(parts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (flags, body) in parts {
            put_frame(&mut out, *flags, body);
        }
        out
    }

    #[test]
    fn parse_messages_commands_and_partials() {
        let msg = frames(&[(MORE, b"topic"), (0, b"\x81\xa1v\x01")]);
        assert_eq!(
            parse(&msg, lim(1 << 20)).unwrap().0,
            Step::Message {
                len: msg.len(),
                first: (2, 7)
            }
        );
        for n in 0..msg.len() {
            assert_eq!(
                parse(&msg[..n], lim(1 << 20)).unwrap().0,
                Step::NeedMore,
                "{n}"
            );
        }
        let mut cmd = Vec::new();
        put_ready(&mut cmd, "PUB");
        assert_eq!(
            parse(&cmd, lim(1 << 20)).unwrap().0,
            Step::Command {
                len: cmd.len(),
                body: 2
            }
        );
        // A command in the middle of a message (libzmq sends PONGs there)
        // is reported apart, to be cut out.
        let mut mid = frames(&[(MORE, b"t")]);
        mid.extend_from_slice(&cmd);
        assert_eq!(
            parse(&mid, lim(1 << 20)).unwrap().0,
            Step::Interleaved {
                at: 3,
                len: cmd.len(),
                body: 5
            }
        );
        assert_eq!(
            parse(&mid[..mid.len() - 1], lim(1 << 20)).unwrap().0,
            Step::NeedMore
        );
        assert_eq!(
            parse(&mid, lim(10)),
            Err(FrameError::BadCommand("oversize command inside a message"))
        );
        // Over the limit: skip up to the offending frame's body.
        let big = frames(&[(MORE, b"t"), (0, &[0u8; 300])]);
        assert_eq!(
            parse(&big[..12], lim(100)).unwrap(),
            (
                Step::Oversize { skip: 3 + 9 },
                Some((
                    Discard {
                        left: 300,
                        more: false
                    },
                    312
                ))
            )
        );
        // A frame claiming 2^64-1 bytes is oversize, not an overflow.
        let mut huge = vec![LONG];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            parse(&huge, lim(1 << 30)).unwrap().0,
            Step::Oversize { skip: 9 }
        ));
        // An empty message (one empty frame) is a message.
        assert_eq!(
            parse(&[0, 0], lim(10)).unwrap().0,
            Step::Message {
                len: 2,
                first: (2, 2)
            }
        );
    }

    #[test]
    fn decoder_skips_oversize_messages_whatever_the_chunking() {
        let mut stream = frames(&[(MORE, b"a"), (0, b"\x01")]);
        stream.extend(frames(&[(MORE, b"big"), (MORE, &[1; 300]), (0, &[2; 50])]));
        put_pong(&mut stream, b"\0\0ctx");
        stream.extend(frames(&[(MORE, b"b"), (0, b"\x02")]));
        let (whole, failed) = super::check::decode_steps(&stream, 100, usize::MAX);
        assert!(!failed);
        let kinds: Vec<u8> = whole.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, b"MOCM");
        assert_eq!(whole[2].1, b"\x04PONGctx");
        assert_eq!(whole[3].1, frames(&[(MORE, b"b"), (0, b"\x02")]));
        for chunk in 1..20 {
            assert_eq!(
                super::check::decode_steps(&stream, 100, chunk),
                (whole.clone(), false),
                "{chunk}"
            );
        }
        // A PONG between the frames of a message is reported and cut out;
        // one inside a skipped message is skipped with it.
        let mut stream = frames(&[(MORE, b"a")]);
        put_pong(&mut stream, b"\0\0p1");
        stream.extend(frames(&[(0, b"\x01")]));
        stream.extend(frames(&[(MORE, b"big"), (MORE, &[1; 300])]));
        put_pong(&mut stream, b"\0\0p2");
        stream.extend(frames(&[(0, &[2; 50])]));
        stream.extend(frames(&[(MORE, b"b"), (0, b"\x02")]));
        let (whole, failed) = super::check::decode_steps(&stream, 100, usize::MAX);
        assert!(!failed);
        let kinds: Vec<u8> = whole.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, b"IMOM");
        assert_eq!(whole[0].1, b"\x04PONGp1");
        assert_eq!(whole[1].1, frames(&[(MORE, b"a"), (0, b"\x01")]));
        assert_eq!(whole[3].1, frames(&[(MORE, b"b"), (0, b"\x02")]));
        for chunk in 1..20 {
            assert_eq!(
                super::check::decode_steps(&stream, 100, chunk),
                (whole.clone(), false),
                "{chunk}"
            );
        }

        // A broken frame after good ones: the good ones, then the error.
        let mut broken = frames(&[(0, b"x")]);
        broken.extend_from_slice(&[0x40, 0]);
        for chunk in [1, 2, 100] {
            let (items, failed) = super::check::decode_steps(&broken, 100, chunk);
            assert!(failed);
            assert_eq!(items.len(), 1);
        }
    }

    #[test]
    fn commands_have_their_own_limit_and_the_message_limit_can_shrink() {
        // A 5000-byte SUBSCRIBE with a 100-byte command limit is skipped
        // without being buffered; a 5000-byte message still passes.
        let mut sub = Vec::new();
        put_header(&mut sub, COMMAND, 5000);
        sub.extend_from_slice(b"\x09SUBSCRIBE");
        sub.resize(9 + 5000, b'x');
        let mut stream = sub.clone();
        stream.extend(frames(&[(MORE, b"t"), (0, &[7; 4990])]));
        let mut d = Decoder::with_limits(1 << 20, 100);
        assert_eq!(d.step(&stream[..9]), Ok(Step::Oversize { skip: 9 }));
        assert_eq!(d.oversize_len(), 9 + 5000);
        assert_eq!(d.step(&stream[9..]), Ok(Step::Skipped(5000)));
        let rest = &stream[sub.len()..];
        assert!(matches!(d.step(rest), Ok(Step::Message { len, .. }) if len == rest.len()));
        // The same message with the limit lowered below its size, while
        // half of it is buffered: skipped from its start.
        d.set_max_message(1000);
        assert_eq!(d.max_message(), 1000);
        assert_eq!(d.step(&rest[..2000]), Ok(Step::Oversize { skip: 3 + 9 }));
        assert_eq!(d.oversize_len(), (3 + 9 + 4990) as u64);
        assert!(d.discarding());
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
