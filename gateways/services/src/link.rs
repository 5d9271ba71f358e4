//! The DEALER connection of a client or a worker to the broker, on either
//! transport ([`Transport`]): libzmq's DEALER socket, or the native ZMTP
//! [`Dealer`] of `banyan-component` (no libzmq I/O thread between the
//! caller and the TCP socket; `tcp://` endpoints only — others use libzmq).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use banyan_component::dealer::{Dealer, DealerOptions};
use banyan_component::Transport;

use crate::broker::DEFAULT_PORT;
use crate::error::{connect, transport, Error, Result};

/// The broker endpoint a client or worker [`Config`](crate::client::Config)
/// starts from: `tcp://127.0.0.1:` and the broker's [`DEFAULT_PORT`].
pub(crate) fn default_endpoint() -> String {
    format!("tcp://127.0.0.1:{DEFAULT_PORT}")
}

/// Settings of a link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkOptions {
    /// Queue limit in messages each way (libzmq: send and receive
    /// high-water marks; native: the send queue).
    pub hwm: i32,
    /// Reconnect interval, first and longest.
    pub reconnect: Duration,
    pub reconnect_max: Duration,
}

/// A DEALER to the broker.
pub(crate) enum Link {
    Zmq {
        _ctx: zmq::Context,
        socket: zmq::Socket,
    },
    Native(Dealer),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Zmq { .. } => "Link::Zmq",
            Link::Native(_) => "Link::Native",
        })
    }
}

/// The transport a link to `endpoint` uses when `wanted` is asked for.
pub(crate) fn effective(wanted: Transport, endpoint: &str) -> Transport {
    if wanted == Transport::Native && endpoint.starts_with("tcp://") {
        Transport::Native
    } else {
        Transport::Libzmq
    }
}

/// Checks that `endpoint` is usable (it parses and resolves) without
/// connecting to it.
pub(crate) fn check(wanted: Transport, endpoint: &str, ctx: &zmq::Context) -> Result<()> {
    if effective(wanted, endpoint) == Transport::Native {
        let bad = |source| Error::Connect {
            endpoint: endpoint.to_owned(),
            source,
        };
        let (host, port) = banyan_component::dealer::parse_endpoint(endpoint).map_err(bad)?;
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map_err(bad)?;
        return Ok(());
    }
    let probe = ctx.socket(zmq::DEALER).map_err(transport)?;
    probe.set_linger(0).map_err(transport)?;
    connect(&probe, endpoint)
}

impl Link {
    /// Connects (in the background) to `endpoint`; `ctx` is used by the
    /// libzmq transport only.
    pub(crate) fn connect(
        wanted: Transport,
        endpoint: &str,
        ctx: &zmq::Context,
        o: LinkOptions,
    ) -> Result<Link> {
        if effective(wanted, endpoint) == Transport::Native {
            let mut options = DealerOptions::default();
            options.send_hwm = usize::try_from(o.hwm.max(0)).unwrap_or(usize::MAX);
            options.reconnect = o.reconnect;
            options.reconnect_max = o.reconnect_max;
            let d =
                Dealer::connect_endpoint(endpoint, &options).map_err(|source| Error::Connect {
                    endpoint: endpoint.to_owned(),
                    source,
                })?;
            return Ok(Link::Native(d));
        }
        let socket = ctx.socket(zmq::DEALER).map_err(transport)?;
        socket.set_linger(0).map_err(transport)?;
        socket.set_sndhwm(o.hwm).map_err(transport)?;
        socket.set_rcvhwm(o.hwm).map_err(transport)?;
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        socket
            .set_reconnect_ivl(ms(o.reconnect))
            .map_err(transport)?;
        socket
            .set_reconnect_ivl_max(ms(o.reconnect_max))
            .map_err(transport)?;
        connect(&socket, endpoint)?;
        Ok(Link::Zmq {
            _ctx: ctx.clone(),
            socket,
        })
    }

    /// Sends a last message before the link is dropped, giving it up to
    /// `linger` to go out.
    pub(crate) fn send_last(&mut self, frames: &[&[u8]], linger: Duration) -> Result<bool> {
        match self {
            Link::Zmq { socket, .. } => {
                let ms = i32::try_from(linger.as_millis()).unwrap_or(i32::MAX);
                socket.set_linger(ms).map_err(transport)?;
                self.send(frames)
            }
            Link::Native(d) => {
                if !d.send(frames) {
                    return Ok(false);
                }
                let until = Instant::now() + linger;
                while d.queued() > 0 && d.is_up() && Instant::now() < until {
                    d.wait(Some(until)).map_err(Error::Transport)?;
                }
                Ok(d.queued() == 0)
            }
        }
    }

    /// Sends a message without blocking; `Ok(false)` when the send queue is
    /// full (nothing sent).
    pub(crate) fn send(&mut self, frames: &[&[u8]]) -> Result<bool> {
        match self {
            Link::Zmq { socket, .. } => match socket.send_multipart(frames, zmq::DONTWAIT) {
                Ok(()) => Ok(true),
                Err(zmq::Error::EAGAIN) => Ok(false),
                Err(e) => Err(transport(e)),
            },
            Link::Native(d) => Ok(d.send(frames)),
        }
    }

    /// The next message into `frames` without blocking; `Ok(false)` when
    /// none is there.
    pub(crate) fn recv(&mut self, frames: &mut Vec<Vec<u8>>) -> Result<bool> {
        match self {
            Link::Zmq { socket, .. } => loop {
                match socket.recv_multipart(zmq::DONTWAIT) {
                    Ok(f) => {
                        *frames = f;
                        return Ok(true);
                    }
                    Err(zmq::Error::EAGAIN) => return Ok(false),
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(transport(e)),
                }
            },
            Link::Native(d) => Ok(d.recv(frames)),
        }
    }

    /// Waits until a message may have arrived, `extra` (a libzmq socket,
    /// e.g. a wake socket) is readable, or `deadline` passed. Returns
    /// whether `extra` is readable (as far as a poll tells).
    pub(crate) fn wait(&mut self, deadline: Instant, extra: Option<&zmq::Socket>) -> Result<bool> {
        let now = Instant::now();
        let ms = deadline
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        match (self, extra) {
            (Link::Zmq { socket, .. }, None) => {
                let mut items = [socket.as_poll_item(zmq::POLLIN)];
                zmq::poll(&mut items, ms).map_err(transport)?;
                Ok(false)
            }
            (Link::Zmq { socket, .. }, Some(x)) => {
                let mut items = [
                    socket.as_poll_item(zmq::POLLIN),
                    x.as_poll_item(zmq::POLLIN),
                ];
                zmq::poll(&mut items, ms).map_err(transport)?;
                Ok(items[1].is_readable())
            }
            (Link::Native(d), None) => {
                d.wait(Some(deadline)).map_err(Error::Transport)?;
                Ok(false)
            }
            (Link::Native(d), Some(x)) => {
                // `x`'s descriptor is edge-triggered: look at its events
                // before sleeping on it.
                if x.get_events().map_err(transport)?.contains(zmq::POLLIN) {
                    return Ok(true);
                }
                let fd = x.get_fd().map_err(transport)?;
                d.wait_with(Some(deadline), Some(fd))
                    .map_err(Error::Transport)?;
                Ok(x.get_events().map_err(transport)?.contains(zmq::POLLIN))
            }
        }
    }

    /// A descriptor for an external poll loop: readable means "a message
    /// may be there" (libzmq: its edge-triggered `ZMQ_FD`; native: the
    /// dealer's wake descriptor, which may lag the socket by a few
    /// milliseconds).
    pub(crate) fn fd(&self) -> Result<RawFd> {
        match self {
            Link::Zmq { socket, .. } => socket.get_fd().map_err(transport),
            Link::Native(d) => Ok(d.wake_fd()),
        }
    }

    /// The transport in use.
    pub(crate) fn transport(&self) -> Transport {
        match self {
            Link::Zmq { .. } => Transport::Libzmq,
            Link::Native(_) => Transport::Native,
        }
    }

    /// Messages lost by the transport: cut off by a broken connection, or
    /// received over the size limit (native only; libzmq does not say).
    pub(crate) fn lost(&self) -> u64 {
        match self {
            Link::Zmq { .. } => 0,
            Link::Native(d) => {
                let c = d.counters();
                c.lost + c.oversize
            }
        }
    }

    /// Connections re-made after a loss (native only).
    pub(crate) fn reconnects(&self) -> u64 {
        match self {
            Link::Zmq { .. } => 0,
            Link::Native(d) => d.counters().connects.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_tcp_endpoints_go_native() {
        let n = Transport::Native;
        assert_eq!(effective(n, "tcp://127.0.0.1:5"), Transport::Native);
        assert_eq!(effective(n, "ipc:///tmp/x"), Transport::Libzmq);
        assert_eq!(effective(n, "inproc://x"), Transport::Libzmq);
        assert_eq!(
            effective(Transport::Libzmq, "tcp://127.0.0.1:5"),
            Transport::Libzmq
        );
    }

    #[test]
    fn bad_endpoints_are_refused_on_both_transports() {
        let ctx = zmq::Context::new();
        for t in [Transport::Native, Transport::Libzmq] {
            for bad in ["tcp://127.0.0.1", "tcp://127.0.0.1:x"] {
                assert!(
                    matches!(check(t, bad, &ctx), Err(Error::Connect { .. })),
                    "{t:?} {bad}"
                );
            }
            assert!(check(t, "tcp://127.0.0.1:5", &ctx).is_ok());
        }
    }
}
