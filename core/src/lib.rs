//! # banyan-core
//!
//! The `no_std`, allocation-free heart of banyan-rs. The same code runs in the
//! Linux gateways on a Raspberry Pi and in microcontroller firmware.
//!
//! Layers, from the wire up:
//!
//! - [`topic`]: ZeroMQ-style byte-prefix subscription tables of fixed capacity.
//! - [`msg`]: Banyan payloads as MessagePack maps — serde encode/decode
//!   byte-identical to Python's `msgpack.packb(use_bin_type=True)`, and a
//!   bounded validator for untrusted bytes.
//! - [`bytes`]: a bounds-checked reader of little-endian fields, shared by
//!   the link's frame payloads and the discovery datagrams.
//! - [`frame`]: serial frames (COBS, `0x00` delimiter, CRC) and a streaming
//!   de-framer that resynchronises after corruption.
//! - [`link`]: the serial link protocol between a device and a gateway, as
//!   sans-IO state machines (the caller passes bytes and time in).
//! - [`cmd`]: the typed robot command model (`run_motors`, `light_leds`,
//!   OneGPIO commands and reports).
//! - [`actuator`]: H-bridge motors, LEDs and a deadman over `embedded-hal` 1.0.
//! - [`robot`]: the robot itself — `run_motors` / `light_leds` payloads in,
//!   actuator changes and state/error reports out, deadman and timed runs;
//!   the one implementation behind the Pi gateway and the firmware.
//!
//! Nothing here allocates, performs I/O or reads a clock.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// A value that does not fit its wire field is bounded first, or says why it
// cannot be (`#[expect(..., reason)]`); CI runs clippy with -D warnings.
// The library only: tests and benches cast freely.
#![warn(clippy::cast_possible_truncation)]

pub mod actuator;
pub mod bytes;
pub mod cmd;
pub mod frame;
pub mod link;
pub mod msg;
pub mod robot;
pub mod topic;
