//! # banyan
//!
//! Rust successor to Python Banyan. This crate re-exports the two libraries:
//! [`core`] (the `no_std` core) and [`gateways`] (backplane, components,
//! gateways).
#![deny(missing_docs)]

pub use banyan_core as core;
pub use banyan_gateways as gateways;
