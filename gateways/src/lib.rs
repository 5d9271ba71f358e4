//! # banyan-gateways
//!
//! The `std` half of banyan-rs: the backplane, the component API (single and
//! multi-backplane), the monitor, the Raspberry Pi GPIO gateway and the serial
//! gateway. Built on [`banyan_core`].
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod backplane;
pub mod component;
pub mod monitor;
pub mod multi;
pub mod routing;
pub mod rpi;
pub mod serial;
mod sockopt;
pub mod wire;
pub mod zmtp;
