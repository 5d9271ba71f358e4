//! Discovery for banyan-rs: backplanes, components, gateways and devices
//! find each other on the LAN through a UDP-multicast pool (after Flexx's
//! PoolNode), exchange addressed messages and answer *identify*. Nothing to
//! type: a component finds "the" backplane, or the one named `robot-3`.
//!
//! # Layers
//!
//! - [`wire`]: the datagram format (a 17-byte header with magic, version,
//!   channel hash and sender id; BEACON, QUERY, IDENTIFY, IDENTITY, MESSAGE,
//!   BYE), parsed without panics on any input.
//! - [`pool`]: the protocol as a sans-IO state machine ([`Pool`]): datagrams
//!   and the current [`Instant`] in, datagrams to send and [`Event`]s out. No
//!   socket and no clock inside; tested with a simulated lossy network.
//! - `driver` (feature `driver`, default): std sockets for a pool —
//!   multicast group [`GROUP`] with TTL 1 and loopback on, broadcast
//!   fallback, unicast seeds, interface selection — as a poll-able
//!   [`Driver`](driver::Driver) or a background [`Node`](node::Node).
//! - `announce` (feature `driver`): what the other programs call —
//!   `Announcer::start` for a backplane or a gateway, `resolve_backplane`
//!   and `survey_backplanes_with` for a backplane by name or the only one
//!   (what `-b` means is decided by `banyan_component::locate`, which
//!   calls these).
//!
//! # Channels and ports
//!
//! A pool is named by a channel (default [`DEFAULT_CHANNEL`], `banyan`). The
//! channel name is hashed with 32-bit FNV-1a ([`channel_hash`]) and mapped
//! to a UDP port in `61000..=65095` ([`channel_port`]: `61000 + hash %
//! 4096`). The range lies above Linux's ephemeral ports (32768–60999), so a
//! pool port never collides with an outgoing connection's local port. Two
//! channels that land on the same port still ignore each other: every
//! datagram carries the full 32-bit hash.
//!
//! ```
//! assert_eq!(banyan_discovery::channel_port("banyan"), 64518);
//! ```
//!
//! The protocol, its timing and the measured figures are in
//! `docs/discovery.md`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod pool;
pub mod wire;

#[cfg(feature = "driver")]
pub mod announce;
#[cfg(feature = "driver")]
pub mod driver;
#[cfg(feature = "driver")]
mod iface;
#[cfg(feature = "driver")]
pub mod node;

#[cfg(feature = "driver")]
pub use iface::Interface;

pub use banyan_core::link::Instant;
pub use pool::{Config, Event, LocalNode, Peer, Pool, Target};
pub use wire::{Endpoint, EndpointKind, Identity, NodeKind};

/// The default channel.
pub const DEFAULT_CHANNEL: &str = "banyan";

/// The multicast group of every pool: `239.255.43.124` (IPv4
/// organisation-local scope, RFC 2365; 43124 recalls the backplane port).
pub const GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 43, 124);

/// First port of the pool port range.
pub const PORT_BASE: u16 = 61000;
/// Number of ports in the pool port range.
pub const PORT_COUNT: u16 = 4096;

/// The 32-bit FNV-1a hash of the channel name's UTF-8 bytes (offset basis
/// `0x811c9dc5`, prime `0x01000193`).
#[expect(
    clippy::indexing_slicing,
    reason = "`i < bytes.len()` (a const fn cannot iterate)"
)]
pub const fn channel_hash(channel: &str) -> u32 {
    let bytes = channel.as_bytes();
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// The next number of the xorshift64* generator (Vigna) whose state is
/// `state` (never 0): the jitter, spreading and fault-injection draws of
/// the pool, the driver and the tests.
pub(crate) fn xorshift64star(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The UDP port of a channel: `PORT_BASE + channel_hash(channel) % PORT_COUNT`.
pub const fn channel_port(channel: &str) -> u16 {
    PORT_BASE + (channel_hash(channel) % PORT_COUNT as u32) as u16
}

#[cfg(test)]
mod sim;
