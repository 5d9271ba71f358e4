//! # banyan-component
//!
//! The component API of banyan-rs: one connection to one backplane (the
//! equivalent of Python Banyan's `BanyanBase`), several backplanes with a
//! routing spec ([`multi`], [`routing`]), what a valid message is ([`wire`])
//! and the monitor's formatting ([`monitor`]).
//!
//! Without the default `libzmq` feature the component, [`multi`] and
//! [`monitor`] build on the native transport alone (no libzmq): that is
//! what the fuzz targets use.
//!
//! A [`Component`] connects a publisher to the backplane's publisher port
//! (43124) and a subscriber to its subscriber port (43125). It publishes serde
//! values or raw MessagePack, subscribes to topic prefixes, and receives with
//! a blocking handler loop ([`Component::run`]), an iterator with a timeout
//! ([`Component::iter_timeout`]) or single calls ([`Component::recv_timeout`]).
//! Waiting is always a blocking `poll` — never a sleep loop.
//!
//! ```no_run
//! use banyan_component::{Component, Config};
//! use std::ops::ControlFlow;
//!
//! let mut echo = Component::connect(Config::default())?;
//! echo.subscribe("echo")?;
//! echo.run(|c, msg| {
//!     // publish_raw re-sends the payload bytes unchanged
//!     let _ = c.publish_raw("reply", &msg.payload);
//!     ControlFlow::Continue(())
//! })?;
//! # Ok::<(), banyan_component::Error>(())
//! ```
//!
//! # Transports
//! [`Config::transport`] picks how a component talks ZMTP (ZeroMQ's wire
//! protocol) to the backplane; both give the same API and guarantees, and
//! the test suite runs against both (`BANYAN_TRANSPORT=libzmq`):
//! - [`Transport::Native`] (default): our own ZMTP stack, the `banyan-zmtp`
//!   crate. The caller's thread reads and writes the two TCP sockets: no
//!   libzmq I/O thread is woken between a `publish` or a `recv` and the
//!   socket. A burst is coalesced into few writes (a message published less
//!   than 50 µs after the last write waits for the next one); a
//!   per-process *keeper* thread writes a burst's tail that waited 1 ms,
//!   sends heartbeats, finishes connects and reconnects, and reads ahead
//!   (up to [`Config::recv_buffer`]) for a component busy elsewhere, so the
//!   backplane does not count it as stuck. It sleeps while all is idle but
//!   for one wake-up per heartbeat interval.
//! - [`Transport::Libzmq`] (feature `libzmq`, default on): libzmq through
//!   the `zmq` crate, as before. [`Context`] shares its I/O thread.
//!
//! A [`multi::MultiComponent`] takes the same choice
//! ([`multi::Options::transport`], default from `BANYAN_TRANSPORT` too):
//! each backplane of its spec gets a component's connections (the sides
//! the spec has ports for) and all of them are waited on in one `poll`, so
//! every backplane has the guarantees below on its own (reconnect,
//! subscriptions re-sent, its own send queue and counted drops,
//! heartbeats, up/down events). The [`monitor`] module only formats
//! messages: the `banyan sub` / `banyan monitor` command receives them
//! with a [`Component`] on either transport.
//!
//! Where they differ: the native transport keeps messages published while
//! the backplane is away in its send queue (up to [`Config::send_hwm`]) and
//! sends them after the reconnect, holding them until the backplane
//! announces a subscription (at most 1 s) so that subscribers reconnecting
//! at the same time get them; it reads before it writes, so a backplane
//! that died is noticed before more messages go into its dead socket; and a
//! message cut off mid-write by a broken connection is counted
//! ([`Stats::send_lost`]). What no TCP sender can know of is lost with a
//! killed backplane: the few messages it had already taken from the
//! socket and not forwarded. Both transports ping the backplane every
//! [`Config::heartbeat_interval`] and drop a connection that stays silent
//! for [`Config::heartbeat_timeout`] (then [`Event::BackplaneDown`] and a
//! reconnect), so a backplane host that lost power is noticed in 3 s by
//! default.
//!
//! # Finding the backplane
//! [`locate`] reads `-b`, `--backplane-name` and `$BANYAN_BACKPLANE` the
//! way every banyan-rs program does: an address is used as given (Python
//! Banyan's `-b`), a name is looked up in the discovery pool, and with
//! nothing given the only backplane in the pool is taken (else
//! `127.0.0.1`); `Config::locate` fills a config from it. The lookup
//! needs the default `discovery` feature.
//!
//! # Bad input
//! Received messages are checked as described in [`wire`]; a message
//! that is not `[UTF-8 topic, one valid msgpack value]` is counted in
//! [`Stats::rejected`], logged, kept as [`Component::last_rejection`] and
//! delivered as [`Event::Rejected`] by [`Component::recv_event`]; the
//! message-only calls skip it. It never stops receiving.
//!
//! # Loss and flow control
//! Publishing never blocks: the publisher queues up to
//! [`Config::send_hwm`] messages for the backplane. When that queue is full
//! (the backplane is unreachable or slower than the publisher) the message is
//! dropped, counted in [`Stats::send_dropped`] and `publish` returns
//! [`Error::SendQueueFull`] — ZeroMQ's silent PUB drop is turned into a
//! counted one (`ZMQ_XPUB_NODROP`; the native transport counts its own
//! queue). The subscriber reads ahead up to [`Config::recv_hwm`] messages
//! (libzmq) or [`Config::recv_buffer`] bytes (native); behind it the backplane queues up to its own
//! high-water mark per subscriber, then holds publishers back and finally
//! drops and counts what a stuck subscriber cannot take (published on the
//! `banyan_backplane` stats topic; see the `banyan-backplane` crate). Defaults are 1,000,000 messages at each stage, so a
//! burst of a million small messages is delivered without loss even to a
//! subscriber that is momentarily not reading.
//!
//! # Knowing the backplane is there
//! - [`Component::link_state`] / [`Event::BackplaneUp`] /
//!   [`Event::BackplaneDown`] follow the subscriber connection (its ZMTP
//!   handshake, its loss or heartbeat timeout; on libzmq through a socket
//!   monitor). Both transports reconnect by themselves (100 ms, the native
//!   one doubling up to 1 s while the backplane stays away) and re-send the
//!   subscriptions, so after a backplane restart traffic resumes without
//!   any action.
//! - [`Component::wait_for_subscriber`] waits until someone subscribed to a
//!   topic has told our publisher so (the backplane forwards subscriptions
//!   upstream with XSUB/XPUB). This replaces Banyan's fixed `connect_time`
//!   sleep: a message published after it returns `true` is not lost to the
//!   "slow joiner" effect. With Python's backplane (which subscribes to
//!   everything) it returns as soon as the backplane is connected.
//!
//! - Every component says in its log when it has waited 2 s for the
//!   backplane (and the likely causes), when it connects and when it loses
//!   the connection: see [`feedback`].
//!
//! # Integrating with other file descriptors
//! A gateway that also waits on a serial port, a GPIO wake-up or a timer
//! uses the [`driver`]: one run loop over the component's sockets, its own
//! descriptors (`std::os::fd::RawFd`), a deadline and a bounded batch of
//! events per turn, with conflation of control topics so that old commands
//! are skipped ([`Config::conflate`]). Errors never name the transport's
//! types: [`Error::Transport`] wraps an opaque [`TransportError`] and a
//! signal is [`Error::Interrupted`].
//!
//! # Logging
//! The library logs through the `log` facade. Binaries with a control loop
//! install [`logging`], a sink that never blocks (rate-limited, bounded,
//! lost lines counted).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod component;
pub mod conflate;
pub mod driver;
pub mod feedback;
pub mod locate;
pub mod logging;
pub mod monitor;
pub mod multi;
pub mod routing;
#[cfg(feature = "libzmq")]
#[doc(hidden)]
pub mod sockopt;
pub mod stdio;
pub mod wire;

pub use component::*;
mod native;
pub use native::dealer;
#[doc(hidden)]
pub use native::fuzzing;
#[cfg(feature = "libzmq")]
mod zmq_backend;
