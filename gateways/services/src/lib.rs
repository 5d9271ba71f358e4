//! # banyan-services
//!
//! Request/reply through the backplane (ZeroMQ Guide ch. 3–4, advanced
//! request-reply): clients send a request to a *service name*, workers
//! register for service names, and a broker beside the backplane hands each
//! request to the least-recently-ready worker and routes the reply back.
//! Heartbeats both ways, a deadline on every request, an immediate error for
//! an unknown service. Bodies are the same MessagePack values as on the bus.
//! The wire protocol is specified frame by frame in `docs/services.md`.
//!
//! Layers, bottom up:
//! - [`proto`]: the frames, parsed and emitted without I/O.
//! - [`broker::Broker`]: the broker as a sans-IO state machine (messages and
//!   time in, messages out).
//! - With the default `libzmq` feature: [`broker::spawn`] (the broker on a
//!   ROUTER socket, in a thread), [`client`] (blocking and asynchronous
//!   requests with deadlines and retries), [`worker`] (`serve` a service
//!   with heartbeats and reconnects), [`relay`] (services answered by a
//!   gateway's single-threaded run loop), [`devices`] (ZeroMQ's queue and
//!   streamer devices with counters) and [`cli`] (what `banyan call` and
//!   `banyan services` run). The client and the worker connect to the
//!   broker on banyan-component's native ZMTP DEALER or on libzmq's, as
//!   `BANYAN_TRANSPORT` says ([client](client#transports)).
//!
//! Without `libzmq` only [`proto`] and [`broker`]'s state machine build:
//! that is what the fuzz targets use.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod proto;

#[cfg(feature = "libzmq")]
pub mod cli;
#[cfg(feature = "libzmq")]
pub mod client;
#[cfg(feature = "libzmq")]
pub mod devices;
#[cfg(feature = "libzmq")]
mod error;
#[cfg(feature = "libzmq")]
mod link;
#[cfg(feature = "libzmq")]
pub mod relay;
#[cfg(feature = "libzmq")]
mod wake;
#[cfg(feature = "libzmq")]
pub mod worker;

#[cfg(feature = "libzmq")]
pub use error::{Error, Result};
