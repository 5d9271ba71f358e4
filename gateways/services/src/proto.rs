//! The services wire protocol: the frames of every message, parsed and
//! emitted without I/O (no socket, no clock, no allocation when parsing).
//!
//! The normative description is `docs/services.md`; this module is its
//! implementation, shared by the broker, the client and the worker (and the
//! fuzz targets). Use it directly when you write your own transport; use
//! [`crate::client`] and [`crate::worker`] otherwise.
//!
//! Every message is a ZeroMQ multipart message whose **first frame is a
//! fixed-size binary header**: a 4-byte protocol signature
//! ([`CLIENT`] `"BSC1"` between clients and the broker, [`WORKER`] `"BSW1"`
//! between workers and the broker), one command byte, then the command's
//! fixed fields, all integers big endian. At most one variable frame follows
//! (a service name, a MessagePack body or a UTF-8 text), except the client
//! REQUEST, which has two (service name, body). Parsing checks the exact
//! header length and frame count; nothing here panics on any input.
//!
//! | direction | header | frames after the header |
//! |-----------|--------|-------------------------|
//! | C→B REQUEST    | `BSC1 01 flags:u8 timeout_ms:u32 id:u64` (18 B) | service, body |
//! | B→C REPLY      | `BSC1 02 id:u64` (13 B) | body |
//! | B→C ERROR      | `BSC1 03 id:u64 code:u8` (14 B) | detail (UTF-8) |
//! | W→B READY      | `BSW1 01 flags:u8 heartbeat_ms:u32` (10 B) | service |
//! | W→B REPLY      | `BSW1 02 token:u64` (13 B) | body |
//! | W→B FAIL       | `BSW1 03 token:u64` (13 B) | detail (UTF-8) |
//! | W↔B HEARTBEAT  | `BSW1 04` (5 B) | — |
//! | W↔B DISCONNECT | `BSW1 05` (5 B) | optional reason (UTF-8) |
//! | B→W REQUEST    | `BSW1 06 token:u64 budget_ms:u32` (17 B) | body |

use std::fmt;

/// Protocol signature of client ↔ broker messages.
pub const CLIENT: &[u8; 4] = b"BSC1";
/// Protocol signature of worker ↔ broker messages.
pub const WORKER: &[u8; 4] = b"BSW1";

/// Longest service name in bytes.
pub const MAX_SERVICE_LEN: usize = 255;

/// Services answered by the broker itself (names starting with this prefix
/// are reserved: a worker cannot register them).
pub const RESERVED_PREFIX: &str = "banyan.";
/// Lists every service the broker knows: reply
/// `{"services": [{"service", "workers", "idle", "queued"}, …]}`.
pub const SERVICE_LIST: &str = "banyan.services";
/// Describes one service: request `{"service": name}`, reply
/// `{"service", "known", "workers", "idle", "queued"}`.
pub const SERVICE_INFO: &str = "banyan.service";
/// The broker's counters as a map (see [`crate::broker::Stats`]).
pub const SERVICE_STATS: &str = "banyan.stats";

/// Client REQUEST flag: the request may be executed more than once (the
/// broker re-sends it when its worker dies; clients may retry it).
pub const FLAG_IDEMPOTENT: u8 = 0x01;
/// Worker READY flag: this worker keeps sending HEARTBEAT while it handles a
/// request, so the broker may declare it dead mid-request after three
/// missed heartbeats (otherwise only three heartbeats after the request's
/// deadline).
pub const FLAG_BUSY_HEARTBEATS: u8 = 0x01;

/// Client command bytes.
pub mod client_cmd {
    /// C→B: a request.
    pub const REQUEST: u8 = 0x01;
    /// B→C: the worker's reply.
    pub const REPLY: u8 = 0x02;
    /// B→C: no reply; an error code instead.
    pub const ERROR: u8 = 0x03;
}

/// Worker command bytes.
pub mod worker_cmd {
    /// W→B: register for a service; the worker is idle.
    pub const READY: u8 = 0x01;
    /// W→B: the reply to the request being handled; the worker is idle again.
    pub const REPLY: u8 = 0x02;
    /// W→B: the request failed in the handler; the worker is idle again.
    pub const FAIL: u8 = 0x03;
    /// W↔B: liveness.
    pub const HEARTBEAT: u8 = 0x04;
    /// W↔B: the connection is over (the worker must send READY again).
    pub const DISCONNECT: u8 = 0x05;
    /// B→W: a request to handle.
    pub const REQUEST: u8 = 0x06;
}

/// Why the broker answered a request with an ERROR instead of a REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No worker has ever registered this service name (or it was forgotten).
    UnknownService,
    /// The service is known but has no worker right now.
    NoWorkers,
    /// The request's deadline passed before a reply came.
    Timeout,
    /// The request broke the protocol (see the detail text).
    Malformed,
    /// Every worker of the service is busy and its queue is full, or the
    /// broker holds as many requests as it may.
    QueueFull,
    /// The worker handling the request died or disconnected (a non-idempotent
    /// request is not re-sent).
    WorkerLost,
    /// The worker's handler failed or replied with a malformed body (see the
    /// detail text).
    WorkerError,
    /// The broker is shutting down.
    Unavailable,
    /// A code this version does not know.
    Other(u8),
}

impl ErrorCode {
    /// The code byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            ErrorCode::UnknownService => 1,
            ErrorCode::NoWorkers => 2,
            ErrorCode::Timeout => 3,
            ErrorCode::Malformed => 4,
            ErrorCode::QueueFull => 5,
            ErrorCode::WorkerLost => 6,
            ErrorCode::WorkerError => 7,
            ErrorCode::Unavailable => 8,
            ErrorCode::Other(c) => c,
        }
    }

    /// The code for a wire byte (unknown bytes give [`ErrorCode::Other`]).
    pub fn from_u8(code: u8) -> ErrorCode {
        match code {
            1 => ErrorCode::UnknownService,
            2 => ErrorCode::NoWorkers,
            3 => ErrorCode::Timeout,
            4 => ErrorCode::Malformed,
            5 => ErrorCode::QueueFull,
            6 => ErrorCode::WorkerLost,
            7 => ErrorCode::WorkerError,
            8 => ErrorCode::Unavailable,
            c => ErrorCode::Other(c),
        }
    }

    /// The snake_case name used in docs and JSON (`"unknown_service"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::UnknownService => "unknown_service",
            ErrorCode::NoWorkers => "no_workers",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Malformed => "malformed",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::WorkerLost => "worker_lost",
            ErrorCode::WorkerError => "worker_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other(_) => "other",
        }
    }

    /// Whether retrying an idempotent request after this error can help
    /// (no workers, worker lost, queue full, broker unavailable).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::NoWorkers
                | ErrorCode::WorkerLost
                | ErrorCode::QueueFull
                | ErrorCode::Unavailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(c) => write!(f, "error code {c}"),
            e => f.write_str(e.name()),
        }
    }
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The message has no frames.
    Empty,
    /// The header does not start with the expected protocol signature.
    Signature,
    /// The command byte is not one this direction carries.
    Command(u8),
    /// The header has the wrong length for its command.
    HeaderLength {
        /// Length the command needs.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The message has the wrong number of frames for its command.
    FrameCount {
        /// Frames the command needs (header included).
        expected: usize,
        /// Frames received.
        got: usize,
    },
    /// The service name is empty, longer than [`MAX_SERVICE_LEN`] or not UTF-8.
    ServiceName,
    /// A text frame (error detail, disconnect reason) is not UTF-8.
    Text,
    /// A request timeout or worker heartbeat interval of zero.
    ZeroInterval,
    /// A READY with credit 0.
    ZeroCredit,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("no frames"),
            ParseError::Signature => f.write_str("bad protocol signature"),
            ParseError::Command(c) => write!(f, "unknown command 0x{c:02x}"),
            ParseError::HeaderLength { expected, got } => {
                write!(f, "header of {got} bytes, expected {expected}")
            }
            ParseError::FrameCount { expected, got } => {
                write!(f, "{got} frames, expected {expected}")
            }
            ParseError::ServiceName => f.write_str("bad service name"),
            ParseError::Text => f.write_str("text frame is not UTF-8"),
            ParseError::ZeroInterval => f.write_str("zero timeout or heartbeat"),
            ParseError::ZeroCredit => f.write_str("zero worker credit"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Header byte ranges and lengths.
mod field {
    use core::ops::Range;
    pub const SIGNATURE: Range<usize> = 0..4;
    pub const COMMAND: usize = 4;
    pub const BASE_LEN: usize = 5;

    // Client REQUEST.
    pub const REQ_FLAGS: usize = 5;
    pub const REQ_TIMEOUT: Range<usize> = 6..10;
    pub const REQ_ID: Range<usize> = 10..18;
    pub const REQ_LEN: usize = 18;
    // Broker → client REPLY / ERROR.
    pub const ANS_ID: Range<usize> = 5..13;
    pub const REPLY_LEN: usize = 13;
    pub const ERR_CODE: usize = 13;
    pub const ERROR_LEN: usize = 14;
    // Worker READY.
    pub const READY_FLAGS: usize = 5;
    pub const READY_HB: Range<usize> = 6..10;
    pub const READY_LEN: usize = 10;
    /// READY with a credit (requests the worker may hold at once).
    pub const READY_CREDIT: Range<usize> = 10..12;
    pub const READY_CREDIT_LEN: usize = 12;
    // Worker REPLY / FAIL and broker REQUEST.
    pub const TOKEN: Range<usize> = 5..13;
    pub const TOKEN_LEN: usize = 13;
    pub const BUDGET: Range<usize> = 13..17;
    pub const WREQ_LEN: usize = 17;
}

fn u32_at(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(r) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], r: core::ops::Range<usize>) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(r) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// Checks the signature and returns (header, command).
fn header<'a, F: AsRef<[u8]>>(
    frames: &'a [F],
    sig: &[u8; 4],
) -> Result<(&'a [u8], u8), ParseError> {
    let h = frames.first().ok_or(ParseError::Empty)?.as_ref();
    if h.get(field::SIGNATURE) != Some(&sig[..]) {
        return Err(ParseError::Signature);
    }
    let cmd = *h.get(field::COMMAND).ok_or(ParseError::HeaderLength {
        expected: field::BASE_LEN,
        got: h.len(),
    })?;
    Ok((h, cmd))
}

fn expect(h: &[u8], len: usize, frames: usize, want: usize) -> Result<(), ParseError> {
    if h.len() != len {
        return Err(ParseError::HeaderLength {
            expected: len,
            got: h.len(),
        });
    }
    if frames != want {
        return Err(ParseError::FrameCount {
            expected: want,
            got: frames,
        });
    }
    Ok(())
}

fn frame<F: AsRef<[u8]>>(frames: &[F], i: usize) -> &[u8] {
    frames.get(i).map(AsRef::as_ref).unwrap_or(&[])
}

/// Checks a service name: 1..=[`MAX_SERVICE_LEN`] bytes of UTF-8.
///
/// # Errors
/// [`ParseError::ServiceName`].
pub fn service_name(bytes: &[u8]) -> Result<&str, ParseError> {
    if bytes.is_empty() || bytes.len() > MAX_SERVICE_LEN {
        return Err(ParseError::ServiceName);
    }
    std::str::from_utf8(bytes).map_err(|_| ParseError::ServiceName)
}

fn text(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|_| ParseError::Text)
}

fn base(sig: &[u8; 4], cmd: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(sig);
    h.push(cmd);
    h
}

/// A client's request (client → broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Chosen by the client; the broker's REPLY or ERROR carries it back.
    pub id: u64,
    /// The request may run more than once ([`FLAG_IDEMPOTENT`]).
    pub idempotent: bool,
    /// Time budget in milliseconds from when the broker receives it (≥ 1).
    pub timeout_ms: u32,
    /// The service name.
    pub service: &'a str,
    /// One MessagePack value (checked by the broker, not by the parser).
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Parses a client → broker message (without the ROUTER envelope).
    ///
    /// # Errors
    /// The first problem found.
    pub fn parse<F: AsRef<[u8]>>(frames: &'a [F]) -> Result<Request<'a>, ParseError> {
        let (h, cmd) = header(frames, CLIENT)?;
        if cmd != client_cmd::REQUEST {
            return Err(ParseError::Command(cmd));
        }
        expect(h, field::REQ_LEN, frames.len(), 3)?;
        let timeout_ms = u32_at(h, field::REQ_TIMEOUT);
        if timeout_ms == 0 {
            return Err(ParseError::ZeroInterval);
        }
        Ok(Request {
            id: u64_at(h, field::REQ_ID),
            idempotent: h
                .get(field::REQ_FLAGS)
                .is_some_and(|f| f & FLAG_IDEMPOTENT != 0),
            timeout_ms,
            service: service_name(frame(frames, 1))?,
            body: frame(frames, 2),
        })
    }

    /// The header frame (the service and body frames follow it).
    pub fn header(&self) -> Vec<u8> {
        request_header(self.id, self.idempotent, self.timeout_ms)
    }

    /// All three frames.
    pub fn emit(&self) -> Vec<Vec<u8>> {
        vec![
            self.header(),
            self.service.as_bytes().to_vec(),
            self.body.to_vec(),
        ]
    }
}

/// The header frame of a client REQUEST.
pub fn request_header(id: u64, idempotent: bool, timeout_ms: u32) -> Vec<u8> {
    let mut h = base(CLIENT, client_cmd::REQUEST, field::REQ_LEN);
    h.push(if idempotent { FLAG_IDEMPOTENT } else { 0 });
    h.extend_from_slice(&timeout_ms.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// The request id of a client message whose header is long enough to hold
/// one, even if the rest is malformed (so that the ERROR can carry it).
pub fn request_id<F: AsRef<[u8]>>(frames: &[F]) -> Option<u64> {
    let h = frames.first()?.as_ref();
    if h.get(field::SIGNATURE) != Some(&CLIENT[..]) {
        return None;
    }
    h.get(field::REQ_ID).map(|_| u64_at(h, field::REQ_ID))
}

/// What the broker sends a client (broker → client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The worker's reply.
    Reply {
        /// The request's id.
        id: u64,
        /// One MessagePack value.
        body: &'a [u8],
    },
    /// No reply: why.
    Error {
        /// The request's id (0 when the request was too malformed to hold one).
        id: u64,
        /// Why.
        code: ErrorCode,
        /// Human-readable detail (may be empty).
        detail: &'a str,
    },
}

impl<'a> Answer<'a> {
    /// Parses a broker → client message (without a REQ/ROUTER delimiter).
    ///
    /// # Errors
    /// The first problem found.
    pub fn parse<F: AsRef<[u8]>>(frames: &'a [F]) -> Result<Answer<'a>, ParseError> {
        let (h, cmd) = header(frames, CLIENT)?;
        match cmd {
            client_cmd::REPLY => {
                expect(h, field::REPLY_LEN, frames.len(), 2)?;
                Ok(Answer::Reply {
                    id: u64_at(h, field::ANS_ID),
                    body: frame(frames, 1),
                })
            }
            client_cmd::ERROR => {
                expect(h, field::ERROR_LEN, frames.len(), 2)?;
                Ok(Answer::Error {
                    id: u64_at(h, field::ANS_ID),
                    code: ErrorCode::from_u8(h.get(field::ERR_CODE).copied().unwrap_or(0)),
                    detail: text(frame(frames, 1))?,
                })
            }
            c => Err(ParseError::Command(c)),
        }
    }

    /// The request id this answers.
    pub fn id(&self) -> u64 {
        match self {
            Answer::Reply { id, .. } | Answer::Error { id, .. } => *id,
        }
    }

    /// Both frames.
    pub fn emit(&self) -> Vec<Vec<u8>> {
        match *self {
            Answer::Reply { id, body } => vec![reply_header(id), body.to_vec()],
            Answer::Error { id, code, detail } => {
                vec![error_header(id, code), detail.as_bytes().to_vec()]
            }
        }
    }
}

/// The header frame of a broker → client REPLY.
pub fn reply_header(id: u64) -> Vec<u8> {
    let mut h = base(CLIENT, client_cmd::REPLY, field::REPLY_LEN);
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// The header frame of a broker → client ERROR.
pub fn error_header(id: u64, code: ErrorCode) -> Vec<u8> {
    let mut h = base(CLIENT, client_cmd::ERROR, field::ERROR_LEN);
    h.extend_from_slice(&id.to_be_bytes());
    h.push(code.to_u8());
    h
}

/// What a worker sends the broker (worker → broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromWorker<'a> {
    /// Registers for a service; the worker is idle.
    Ready {
        /// The service.
        service: &'a str,
        /// Heartbeat interval for both directions of this connection (≥ 1 ms).
        heartbeat_ms: u32,
        /// The worker heartbeats while busy ([`FLAG_BUSY_HEARTBEATS`]).
        busy_heartbeats: bool,
        /// Requests the worker may hold at once (≥ 1; 1 when the READY has
        /// no credit field): the broker keeps up to this many in flight to
        /// it, so requests and replies overlap instead of one round trip
        /// each.
        credit: u16,
    },
    /// The reply to request `token`; the worker is idle again.
    Reply {
        /// The broker's token from the REQUEST.
        token: u64,
        /// One MessagePack value.
        body: &'a [u8],
    },
    /// Request `token` failed in the handler; the worker is idle again.
    Fail {
        /// The broker's token from the REQUEST.
        token: u64,
        /// Why (UTF-8, passed on to the client).
        detail: &'a str,
    },
    /// Liveness.
    Heartbeat,
    /// The worker leaves.
    Disconnect {
        /// Why (may be empty).
        reason: &'a str,
    },
}

impl<'a> FromWorker<'a> {
    /// Parses a worker → broker message (without the ROUTER envelope).
    ///
    /// # Errors
    /// The first problem found.
    pub fn parse<F: AsRef<[u8]>>(frames: &'a [F]) -> Result<FromWorker<'a>, ParseError> {
        let (h, cmd) = header(frames, WORKER)?;
        match cmd {
            worker_cmd::READY => {
                // Without the credit field (the first version, Python's
                // module): credit 1.
                let credit = if h.len() == field::READY_CREDIT_LEN {
                    expect(h, field::READY_CREDIT_LEN, frames.len(), 2)?;
                    h.get(field::READY_CREDIT)
                        .and_then(|c| <[u8; 2]>::try_from(c).ok())
                        .map_or(0, u16::from_be_bytes)
                } else {
                    expect(h, field::READY_LEN, frames.len(), 2)?;
                    1
                };
                let heartbeat_ms = u32_at(h, field::READY_HB);
                if heartbeat_ms == 0 {
                    return Err(ParseError::ZeroInterval);
                }
                if credit == 0 {
                    return Err(ParseError::ZeroCredit);
                }
                Ok(FromWorker::Ready {
                    service: service_name(frame(frames, 1))?,
                    heartbeat_ms,
                    busy_heartbeats: h
                        .get(field::READY_FLAGS)
                        .is_some_and(|f| f & FLAG_BUSY_HEARTBEATS != 0),
                    credit,
                })
            }
            worker_cmd::REPLY => {
                expect(h, field::TOKEN_LEN, frames.len(), 2)?;
                Ok(FromWorker::Reply {
                    token: u64_at(h, field::TOKEN),
                    body: frame(frames, 1),
                })
            }
            worker_cmd::FAIL => {
                expect(h, field::TOKEN_LEN, frames.len(), 2)?;
                Ok(FromWorker::Fail {
                    token: u64_at(h, field::TOKEN),
                    detail: text(frame(frames, 1))?,
                })
            }
            worker_cmd::HEARTBEAT => {
                expect(h, field::BASE_LEN, frames.len(), 1)?;
                Ok(FromWorker::Heartbeat)
            }
            worker_cmd::DISCONNECT => Ok(FromWorker::Disconnect {
                reason: disconnect_reason(h, frames)?,
            }),
            c => Err(ParseError::Command(c)),
        }
    }

    /// The frames of this message.
    pub fn emit(&self) -> Vec<Vec<u8>> {
        match *self {
            FromWorker::Ready {
                service,
                heartbeat_ms,
                busy_heartbeats,
                credit,
            } => vec![
                ready_header(heartbeat_ms, busy_heartbeats, credit),
                service.as_bytes().to_vec(),
            ],
            FromWorker::Reply { token, body } => {
                vec![token_header(worker_cmd::REPLY, token), body.to_vec()]
            }
            FromWorker::Fail { token, detail } => {
                vec![
                    token_header(worker_cmd::FAIL, token),
                    detail.as_bytes().to_vec(),
                ]
            }
            FromWorker::Heartbeat => vec![heartbeat()],
            FromWorker::Disconnect { reason } => disconnect(reason),
        }
    }
}

fn disconnect_reason<'a, F: AsRef<[u8]>>(h: &[u8], frames: &'a [F]) -> Result<&'a str, ParseError> {
    if h.len() != field::BASE_LEN {
        return Err(ParseError::HeaderLength {
            expected: field::BASE_LEN,
            got: h.len(),
        });
    }
    match frames.len() {
        1 => Ok(""),
        2 => text(frame(frames, 1)),
        n => Err(ParseError::FrameCount {
            expected: 2,
            got: n,
        }),
    }
}

/// The header frame of a worker READY (`credit` requests held at once).
pub fn ready_header(heartbeat_ms: u32, busy_heartbeats: bool, credit: u16) -> Vec<u8> {
    // Credit 1 goes in the first version's shorter header (what every
    // broker understands).
    let len = if credit == 1 {
        field::READY_LEN
    } else {
        field::READY_CREDIT_LEN
    };
    let mut h = base(WORKER, worker_cmd::READY, len);
    h.push(if busy_heartbeats {
        FLAG_BUSY_HEARTBEATS
    } else {
        0
    });
    h.extend_from_slice(&heartbeat_ms.to_be_bytes());
    if credit != 1 {
        h.extend_from_slice(&credit.to_be_bytes());
    }
    h
}

/// The header frame of a worker REPLY or FAIL (`cmd`).
pub fn token_header(cmd: u8, token: u64) -> Vec<u8> {
    let mut h = base(WORKER, cmd, field::TOKEN_LEN);
    h.extend_from_slice(&token.to_be_bytes());
    h
}

/// The single frame of a HEARTBEAT (either direction).
pub fn heartbeat() -> Vec<u8> {
    base(WORKER, worker_cmd::HEARTBEAT, field::BASE_LEN)
}

/// The frames of a DISCONNECT (either direction).
pub fn disconnect(reason: &str) -> Vec<Vec<u8>> {
    let h = base(WORKER, worker_cmd::DISCONNECT, field::BASE_LEN);
    if reason.is_empty() {
        vec![h]
    } else {
        vec![h, reason.as_bytes().to_vec()]
    }
}

/// The header frame of a broker → worker REQUEST.
pub fn worker_request_header(token: u64, budget_ms: u32) -> Vec<u8> {
    let mut h = base(WORKER, worker_cmd::REQUEST, field::WREQ_LEN);
    h.extend_from_slice(&token.to_be_bytes());
    h.extend_from_slice(&budget_ms.to_be_bytes());
    h
}

/// What the broker sends a worker (broker → worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToWorker<'a> {
    /// A request to handle.
    Request {
        /// Echo it in the REPLY or FAIL.
        token: u64,
        /// Milliseconds left before the client's deadline.
        budget_ms: u32,
        /// One MessagePack value (already checked by the broker).
        body: &'a [u8],
    },
    /// Liveness.
    Heartbeat,
    /// The broker dropped this worker: it must register again (READY).
    Disconnect {
        /// Why (may be empty).
        reason: &'a str,
    },
}

impl<'a> ToWorker<'a> {
    /// Parses a broker → worker message.
    ///
    /// # Errors
    /// The first problem found.
    pub fn parse<F: AsRef<[u8]>>(frames: &'a [F]) -> Result<ToWorker<'a>, ParseError> {
        let (h, cmd) = header(frames, WORKER)?;
        match cmd {
            worker_cmd::REQUEST => {
                expect(h, field::WREQ_LEN, frames.len(), 2)?;
                Ok(ToWorker::Request {
                    token: u64_at(h, field::TOKEN),
                    budget_ms: u32_at(h, field::BUDGET),
                    body: frame(frames, 1),
                })
            }
            worker_cmd::HEARTBEAT => {
                expect(h, field::BASE_LEN, frames.len(), 1)?;
                Ok(ToWorker::Heartbeat)
            }
            worker_cmd::DISCONNECT => Ok(ToWorker::Disconnect {
                reason: disconnect_reason(h, frames)?,
            }),
            c => Err(ParseError::Command(c)),
        }
    }

    /// The frames of this message.
    pub fn emit(&self) -> Vec<Vec<u8>> {
        match *self {
            ToWorker::Request {
                token,
                budget_ms,
                body,
            } => vec![worker_request_header(token, budget_ms), body.to_vec()],
            ToWorker::Heartbeat => vec![heartbeat()],
            ToWorker::Disconnect { reason } => disconnect(reason),
        }
    }
}

#[cfg(test)]
mod tests;
