//! # banyan
//!
//! Rust successor to Python Banyan. This crate re-exports the libraries of
//! the workspace, from the `no_std` core up:
//!
//! - [`core`]: `banyan-core`, the `no_std`, allocation-free core (topics,
//!   MessagePack, serial frames and link, the robot command model);
//! - [`zmtp`]: `banyan-zmtp`, ZeroMQ's wire protocol as sans-IO code;
//! - [`component`]: `banyan-component`, the component API and message rules;
//! - [`backplane`]: `banyan-backplane`, the backplane;
//! - [`rpi`]: `banyan-rpi`, the Raspberry Pi GPIO gateway;
//! - [`serial`]: `banyan-serial`, the serial gateway.
#![deny(missing_docs)]

pub use banyan_backplane as backplane;
pub use banyan_component as component;
pub use banyan_core as core;
pub use banyan_rpi as rpi;
pub use banyan_serial as serial;
pub use banyan_zmtp as zmtp;
