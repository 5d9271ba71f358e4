//! The serial link protocol between a device (the microcontroller) and a
//! gateway (the Raspberry Pi running `serial-gateway`), both ends as sans-IO
//! state machines: [`Device`] and [`Gateway`].
//!
//! Use it wherever banyan messages cross a byte stream (UART, USB CDC, a
//! TCP socket to QEMU). Neither end reads a clock or touches a port: the
//! caller passes received bytes and the current [`Instant`] in, and takes the
//! bytes to write out. The same code runs in firmware (no heap) and in the
//! gateway.
//!
//! # What the link does
//!
//! - **Identity and subscriptions.** The device says HELLO (name, firmware
//!   version, session id, max frame size, receive-queue credits, table size)
//!   and declares its topic-prefix subscriptions. A new session id means the
//!   MCU rebooted: the gateway reports [`gateway::Event::Reset`] and the
//!   re-declared subscriptions. A cable re-plug without reboot shows as
//!   [`gateway::Event::Down`] then [`gateway::Event::Up`], and only changed
//!   subscriptions are reported; a HELLO with the same session id (the
//!   device's link timed out too, or it rebooted with a repeating id) is
//!   [`gateway::Event::Rejoin`]: data in flight may be lost. A gateway restart is noticed by the device
//!   (RESYNC) and it re-declares everything. Nothing needs a manual restart.
//! - **PUBLISH both ways** carries the topic and the msgpack payload bytes
//!   unchanged; the link never parses payloads.
//! - **Services.** The device declares service names (`Device::serve`,
//!   SERVE) like subscriptions; the gateway sends REQUESTs for them
//!   (`Gateway::request`) and the device answers each with a REPLY
//!   (`Device::reply`) carrying the request's id. REQUEST and REPLY are
//!   *data* messages like PUBLISH: the same credits, queue and loss
//!   accounting (the `publish_*` counters of [`Stats`] count all three).
//!   REQUEST/REPLY and the API to serve need the `services` feature;
//!   without it they are unknown kinds (counted as malformed) and a device
//!   build is ~0.3 KB smaller. SERVE/UNSERVE are always understood, so a
//!   gateway without the feature still keeps its declaration digest in step.
//! - **Credit-based flow control.** Each receiver grants credits for its
//!   receive queue (the device: its fixed queue of `QUEUE` slots, released as
//!   the application consumes messages; the gateway: a window,
//!   [`Config::gateway_credits`]). A sender never transmits a PUBLISH past its
//!   credits: [`Device::publish`] / [`Gateway::publish`] return
//!   [`SendError::NoCredit`] and count it. Credits are cumulative limits
//!   (not increments), repeated in every heartbeat, so a lost frame cannot
//!   leak or duplicate credit.
//! - **Heartbeats, timeouts, sequence numbers.** Every frame carries a
//!   sequence number; gaps are counted, stale and repeated frames are dropped
//!   and counted. Each end sends a HEARTBEAT every
//!   [`Config::heartbeat_interval_ms`] and declares the link down after
//!   [`Config::timeout_ms`] of silence.
//! - **No silent loss.** Every dropped frame or message is counted in
//!   [`Stats`], including the peer's PUBLISHes that never arrived (learnt from
//!   the publish counter in its heartbeats).
//!
//! # Frame table
//!
//! Every frame is a [`frame`]: `kind u8, seq u8, payload, CRC-16`,
//! COBS-encoded, `0x00`-terminated. Integers are little endian; `str8` is a
//! length byte followed by UTF-8 bytes.
//!
//! | kind   | name        | direction | payload                                                                                   |
//! |--------|-------------|-----------|-------------------------------------------------------------------------------------------|
//! | `0x01` | HELLO       | D → G     | `session u32, max_frame u16, credits u8, max_subs u8, name str8 (≤32), version str8 (≤16)` |
//! | `0x02` | WELCOME     | G → D     | `device_session u32, hello_seq u8, gateway_session u32, max_frame u16, credits u16`        |
//! | `0x03` | HEARTBEAT   | both      | `pub_sent u16, pub_received u16, credit_limit u16, sub_count u8, sub_digest u16` (gateway: count, digest 0) |
//! | `0x04` | RESYNC      | G → D     | `gateway_session u32`                                                                      |
//! | `0x05` | SUBSCRIBE   | D → G     | topic prefix, the rest of the payload (≤64 bytes UTF-8)                                    |
//! | `0x06` | UNSUBSCRIBE | D → G     | topic prefix, the rest of the payload                                                      |
//! | `0x07` | SERVE       | D → G     | service name, the rest of the payload (1–32 bytes UTF-8)                                    |
//! | `0x08` | UNSERVE     | D → G     | service name, the rest of the payload                                                       |
//! | `0x10` | PUBLISH     | both      | `topic str8, msgpack payload` (the rest, unchanged)                                        |
//! | `0x11` | REQUEST     | G → D     | `id u32, service str8 (1–32), msgpack body` (the rest)                                      |
//! | `0x12` | REPLY       | D → G     | `id u32, status u8, body` (the rest: msgpack if status is 0, else UTF-8 detail)             |
//!
//! A PUBLISH with topic `t` and payload `p` is `7 + |t| + |p|` bytes on the
//! wire while its body is under 254 bytes: kind, seq, topic length, CRC (2),
//! the COBS code byte and the delimiter ([`wire::PUBLISH_OVERHEAD`]).
//! `docs/link-protocol.md` has the sequence diagrams and goodput figures.
//!
//! # Example: both ends over an in-memory wire
//!
//! ```
//! use banyan_core::link::{device, gateway, Config, Device, Gateway, Instant};
//!
//! let mut dev: Device<256, 512, 4, 8> =
//!     Device::new("pico-bot", "0.1.0", 0x1234_5678, Config::default()).unwrap();
//! let mut gw: Gateway<256, 2048, 8> = Gateway::new(7, Config::default());
//! dev.subscribe("run_motors").unwrap();
//!
//! let mut buf = [0u8; 300];
//! let now = Instant::from_millis(0);
//! // Shuttle bytes both ways until both sides are quiet.
//! let mut subscribed = false;
//! let mut msgs = 0;
//! for _ in 0..4 {
//!     while let Some(n) = dev.poll_transmit(now, &mut buf) {
//!         let mut input = &buf[..n];
//!         loop {
//!             let (ev, rest) = gw.handle_rx(input, now);
//!             input = rest;
//!             match ev {
//!                 Some(gateway::Event::Subscribe(t)) => subscribed = t == "run_motors",
//!                 Some(gateway::Event::Publish { topic, payload }) => {
//!                     assert_eq!((topic, payload), ("sensors", &[0x80][..]));
//!                     msgs += 1;
//!                 }
//!                 Some(_) => {}
//!                 None => break,
//!             }
//!         }
//!     }
//!     while let Some(n) = gw.poll_transmit(now, &mut buf) {
//!         let mut input = &buf[..n];
//!         loop {
//!             let (ev, rest) = dev.handle_rx(input, now);
//!             input = rest;
//!             if ev.is_none() {
//!                 break;
//!             }
//!         }
//!     }
//!     if dev.is_up() && msgs == 0 {
//!         dev.publish("sensors", &[0x80], now).unwrap(); // msgpack {}
//!     }
//! }
//! assert!(gw.is_up() && subscribed && msgs == 1);
//!
//! // Gateway → device: the message waits in the device's queue.
//! gw.publish("run_motors", b"\x81\xa4left\xcb\x3f\xe0\0\0\0\0\0\0", now).unwrap();
//! let n = gw.poll_transmit(now, &mut buf).unwrap();
//! assert_eq!(dev.handle_rx(&buf[..n], now).0, Some(device::Event::Received));
//! let msg = dev.recv().unwrap();
//! assert_eq!(msg.topic(), "run_motors");
//! drop(msg); // frees the slot: the gateway gets the credit back
//! ```

use core::fmt;

pub mod device;
mod endpoint;
pub mod gateway;
pub mod wire;

pub use device::Device;
pub use endpoint::IDLE_FLUSH_MS;
pub use gateway::Gateway;

use crate::frame;
use wire::Message;

/// The smallest `FRAME` (receive buffer, encoded frame size) of a
/// [`Device`] or [`Gateway`]: the largest control frame (a SUBSCRIBE with a
/// 64-byte topic) takes 69 bytes.
pub const MIN_FRAME: usize = 72;

/// The most PUBLISH credits either end grants at a time (larger queues or
/// windows are clamped). Together with one heartbeat per interval this keeps
/// the frames a sender can emit without hearing back well inside the 127-frame
/// window of the 8-bit sequence numbers, so a burst of lost frames is always
/// counted as a gap, never mistaken for stale frames.
pub const MAX_CREDITS: usize = 96;

/// A point in time in milliseconds from an arbitrary origin (boot, process
/// start), passed in by the caller. It must not go backwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    /// Milliseconds since the origin.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub const fn millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Link timing and flow-control settings. `#[non_exhaustive]`: start from
/// [`Config::default`] and change fields.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Send a HEARTBEAT at least this often (default 250 ms).
    pub heartbeat_interval_ms: u32,
    /// Declare the link down after this long without a valid frame from the
    /// peer (default 1000 ms; keep it ≥ 3 heartbeat intervals).
    pub timeout_ms: u32,
    /// Repeat an unanswered HELLO, and rate-limit RESYNC, at this interval
    /// (default 250 ms).
    pub hello_interval_ms: u32,
    /// Gateway only: how many PUBLISHes the device may have in flight to the
    /// gateway (default 16, at most [`MAX_CREDITS`]).
    pub gateway_credits: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval_ms: 250,
            timeout_ms: 1000,
            hello_interval_ms: 250,
            gateway_credits: 16,
        }
    }
}

/// What the device declared in its HELLO, as the gateway saw it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Identity {
    /// Device name.
    pub name: heapless::String<{ wire::MAX_NAME_LEN }>,
    /// Firmware version.
    pub version: heapless::String<{ wire::MAX_VERSION_LEN }>,
    /// Boot session id.
    pub session: u32,
    /// Largest COBS-encoded frame (delimiter excluded) the device accepts.
    pub max_frame: u16,
    /// Free receive-queue slots when it said HELLO (its queue size after a boot).
    pub credits: u8,
    /// Subscription table capacity.
    pub max_subs: u8,
}

impl Identity {
    fn from_hello(h: &wire::Hello<'_>) -> Identity {
        // Lengths were checked by the parser, the conversion cannot fail.
        Identity {
            name: heapless::String::try_from(h.name).unwrap_or_default(),
            version: heapless::String::try_from(h.version).unwrap_or_default(),
            session: h.session,
            max_frame: h.max_frame,
            credits: h.credits,
            max_subs: h.max_subs,
        }
    }
}

/// Why a PUBLISH was not queued (a local error). Each is counted in
/// [`Stats`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The link is down.
    NotUp,
    /// The peer has granted no credit: its receive queue is full.
    NoCredit,
    /// The frame would exceed the peer's max frame size or the send queue.
    TooLarge,
    /// The topic is longer than 255 bytes.
    TopicTooLong,
    /// The send queue is full; call `poll_transmit` to drain it.
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotUp => "link is down",
            SendError::NoCredit => "no credit from peer",
            SendError::TooLarge => "message too large",
            SendError::TopicTooLong => "topic too long",
            SendError::QueueFull => "send queue full",
        })
    }
}

impl core::error::Error for SendError {}

/// Why [`Device::subscribe`] failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubscribeError {
    /// The topic prefix is longer than [`wire::MAX_SUB_TOPIC_LEN`].
    TopicTooLong,
    /// The subscription table is full.
    TableFull,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubscribeError::TopicTooLong => "topic prefix too long",
            SubscribeError::TableFull => "subscription table full",
        })
    }
}

impl core::error::Error for SubscribeError {}

/// Why [`Device::new`] failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IdentityError {
    /// The name is longer than [`wire::MAX_NAME_LEN`].
    NameTooLong,
    /// The version is longer than [`wire::MAX_VERSION_LEN`].
    VersionTooLong,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityError::NameTooLong => "device name too long",
            IdentityError::VersionTooLong => "version too long",
        })
    }
}

impl core::error::Error for IdentityError {}

/// Counters of one link end. All wrap at `u32::MAX`.
///
/// The `publish_*` and `drop_*` message counters count the *data* messages:
/// PUBLISH, REQUEST and REPLY alike (they share credits and the send queue).
///
/// Every message or frame that does not reach its destination is counted in
/// exactly one field, either here (by the end that noticed) or in the peer's
/// stats (e.g. [`Stats::drop_no_credit`] is counted by the sender).
///
/// With the `serde` and `std` features it serializes as one flat map: the
/// de-framer counters ([`frame::Stats`]) appear under their serialized names
/// (`frames_decoded`, `cobs_errors`, `short_frames`, `crc_errors`,
/// `oversize_frames`) beside the link's own fields. Without `std` (serde's
/// flattening needs an allocator) they are a nested map under `frame`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// De-framer counters: valid frames and drops per reason (COBS, short,
    /// CRC, oversize).
    // Flattening needs serde's allocator support: only with `std`.
    #[cfg_attr(all(feature = "serde", feature = "std"), serde(flatten))]
    pub frame: frame::Stats,
    /// Valid frames received.
    pub frames_rx: u32,
    /// Frames transmitted.
    pub frames_tx: u32,
    /// Frames missing according to sequence numbers.
    pub seq_gaps: u32,
    /// Stale or repeated frames dropped.
    pub duplicates: u32,
    /// Frames with a valid CRC but a malformed or unknown message.
    pub malformed: u32,
    /// Valid messages that make no sense in this direction or state.
    pub unexpected: u32,
    /// Frames ignored because the link was not up (includes PUBLISHes).
    pub not_up: u32,
    /// PUBLISHes transmitted (REQUESTs and REPLYs included).
    pub publish_tx: u32,
    /// PUBLISHes received (REQUESTs and REPLYs included).
    pub publish_rx: u32,
    /// The peer's PUBLISHes that never arrived (from its heartbeat counter).
    pub publish_lost: u32,
    /// Our PUBLISHes sent but not acknowledged when their session ended (the
    /// link went down or restarted): they may or may not have arrived.
    pub publish_unconfirmed: u32,
    /// PUBLISHes refused: no credit.
    pub drop_no_credit: u32,
    /// PUBLISHes refused: link down.
    pub drop_not_up: u32,
    /// PUBLISHes refused: larger than the peer accepts or the send queue.
    pub drop_too_large: u32,
    /// PUBLISHes refused: send queue full.
    pub drop_queue_full_tx: u32,
    /// Received PUBLISHes dropped: receive queue full (the peer exceeded
    /// its credits; never happens with a correct peer).
    pub drop_queue_full: u32,
    /// Queued PUBLISHes discarded when a new session started.
    pub drop_discarded: u32,
    /// Frames not sent because the `out` buffer given to `poll_transmit`
    /// was too small.
    pub drop_out_too_small: u32,
    /// Gateway: PUBLISHes the device sent beyond the credit the gateway
    /// granted (a device that ignores flow control): dropped.
    pub drop_over_credit: u32,
    /// Gateway: subscriptions beyond its table size (not tracked).
    pub sub_overflow: u32,
    /// Times the link came up.
    pub ups: u32,
    /// Times the link went down.
    pub downs: u32,
    /// Device restarts seen (gateway).
    pub resets: u32,
    /// Resynchronisations: gateway sent RESYNC / device answered one.
    pub resyncs: u32,
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            frame: frame::Stats {
                frames: 0,
                cobs: 0,
                short: 0,
                crc: 0,
                oversize: 0,
            },
            frames_rx: 0,
            frames_tx: 0,
            seq_gaps: 0,
            duplicates: 0,
            malformed: 0,
            unexpected: 0,
            not_up: 0,
            publish_tx: 0,
            publish_rx: 0,
            publish_lost: 0,
            publish_unconfirmed: 0,
            drop_no_credit: 0,
            drop_not_up: 0,
            drop_too_large: 0,
            drop_queue_full_tx: 0,
            drop_queue_full: 0,
            drop_discarded: 0,
            drop_out_too_small: 0,
            drop_over_credit: 0,
            sub_overflow: 0,
            ups: 0,
            downs: 0,
            resets: 0,
            resyncs: 0,
        }
    }

    /// PUBLISHes this end refused to send.
    pub fn send_refused(&self) -> u32 {
        self.drop_no_credit
            .wrapping_add(self.drop_not_up)
            .wrapping_add(self.drop_too_large)
            .wrapping_add(self.drop_queue_full_tx)
    }

    fn count_send_error(&mut self, e: SendError) {
        let c = match e {
            SendError::NotUp => &mut self.drop_not_up,
            SendError::NoCredit => &mut self.drop_no_credit,
            SendError::TooLarge | SendError::TopicTooLong => &mut self.drop_too_large,
            SendError::QueueFull => &mut self.drop_queue_full_tx,
        };
        *c = c.wrapping_add(1);
    }

    fn count_not_up(&mut self, _msg: &Message<'_>) {
        self.not_up = self.not_up.wrapping_add(1);
    }
}
