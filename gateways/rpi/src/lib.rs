//! The Raspberry Pi GPIO gateway (`rpi-gateway`).
//!
//! - [`config`]: the TOML configuration (motors, LEDs, timeouts, topics).
//! - [`backend`]: GPIO behind `embedded-hal` 1.0 — `rppal` on a Pi, `sim`
//!   elsewhere.
//! - [`gateway`]: the sans-IO gateway core (`Gateway::handle`, `Gateway::tick`).
//! - [`pins`]: which pins belong to motors/LEDs and which to OneGPIO commands.
//! - [`run`]: the run loop binding a gateway to the backplane.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod gateway;
pub mod pins;
pub mod run;
