//! ZeroMQ's devices beside the backplane (the forwarder): `queue`
//! (ROUTER/DEALER, for plain REQ/REP peers) and `streamer` (PULL/PUSH, for
//! pipelines), each in a thread of its own, with counters.
//!
//! Both bind two ports: clients (REQ, PUSH) connect to the frontend,
//! servers (REP, PULL) to the backend. Neither device inspects messages;
//! they forward them whole, frame by frame.
//!
//! **No silent loss.** A device only reads from one side while the other
//! side can take a message (ZeroMQ `POLLOUT`): with no REP or PULL peer
//! connected, messages wait in the senders' queues instead of being
//! dropped. A reply the queue cannot route back (the REQ peer is gone) or
//! cannot queue (its queue is full) is counted ([`Stats::unroutable`],
//! [`Stats::dropped`]).
//!
//! Use the [broker](crate::broker) instead when you want service names,
//! deadlines and errors; use these devices for plain ZeroMQ peers.
//!
//! ```no_run
//! use banyan_services::devices::{queue, Config};
//! let device = queue(&Config::new("tcp://*:5559", "tcp://*:5560"))?;
//! println!("frontend {} backend {}", device.frontend_port(), device.backend_port());
//! let stats = device.shutdown()?;
//! # Ok::<(), banyan_services::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{bind, bound_port, transport, Result};
use crate::wake::{self, Stoppable};

/// Messages forwarded in one direction before looking at the other.
const BATCH: usize = 256;

/// Where a device listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Endpoint the frontend binds (clients connect), e.g. `tcp://*:5559`;
    /// port 0 (`tcp://127.0.0.1:0`) picks a free one.
    pub frontend: String,
    /// Endpoint the backend binds (servers connect).
    pub backend: String,
    /// Per-peer queue limit of both sockets in messages (default 100,000).
    pub hwm: i32,
}

impl Config {
    /// Both endpoints, the default queue limit.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Config {
        Config {
            frontend: frontend.into(),
            backend: backend.into(),
            hwm: 100_000,
        }
    }
}

/// Device counters. Serialized as a map with these field names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Messages forwarded frontend → backend (requests, pipeline items).
    pub forwarded: u64,
    /// Messages forwarded backend → frontend (replies; queue only).
    pub returned: u64,
    /// Bytes forwarded, both directions, all frames.
    pub bytes: u64,
    /// Replies whose REQ peer was gone.
    pub unroutable: u64,
    /// Replies dropped because the REQ peer's queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    returned: AtomicU64,
    bytes: AtomicU64,
    unroutable: AtomicU64,
    dropped: AtomicU64,
}

/// A running device. Dropping it stops the device too.
#[derive(Debug)]
pub struct Device {
    frontend_port: u16,
    backend_port: u16,
    counters: Arc<Counters>,
    thread: Stoppable,
}

impl Device {
    /// The frontend's TCP port.
    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    /// The backend's TCP port.
    pub fn backend_port(&self) -> u16 {
        self.backend_port
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        Stats {
            forwarded: g(&c.forwarded),
            returned: g(&c.returned),
            bytes: g(&c.bytes),
            unroutable: g(&c.unroutable),
            dropped: g(&c.dropped),
        }
    }

    /// Whether the device thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.is_running()
    }

    /// Stops the device; returns the final counters.
    ///
    /// # Errors
    /// The error that stopped the device thread, if any.
    pub fn shutdown(mut self) -> Result<Stats> {
        self.thread.stop()?;
        Ok(self.stats())
    }
}

/// Starts a queue device: a ROUTER frontend for REQ (or DEALER) clients and
/// a DEALER backend for REP (or ROUTER) servers; requests are spread over
/// the servers round-robin, replies routed back by envelope.
///
/// # Errors
/// [`Error::Bind`](crate::Error::Bind) when an endpoint cannot be bound.
pub fn queue(config: &Config) -> Result<Device> {
    start(config, zmq::ROUTER, zmq::DEALER, "queue")
}

/// Starts a streamer device: a PULL frontend for PUSH producers and a PUSH
/// backend for PULL consumers (round-robin).
///
/// # Errors
/// [`Error::Bind`](crate::Error::Bind) when an endpoint cannot be bound.
pub fn streamer(config: &Config) -> Result<Device> {
    start(config, zmq::PULL, zmq::PUSH, "streamer")
}

fn start(
    config: &Config,
    front: zmq::SocketType,
    back: zmq::SocketType,
    name: &str,
) -> Result<Device> {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(front).map_err(transport)?;
    let backend = ctx.socket(back).map_err(transport)?;
    for s in [&frontend, &backend] {
        s.set_linger(0).map_err(transport)?;
        s.set_sndhwm(config.hwm).map_err(transport)?;
        s.set_rcvhwm(config.hwm).map_err(transport)?;
    }
    if front == zmq::ROUTER {
        frontend.set_router_mandatory(true).map_err(transport)?;
    }
    bind(&frontend, &config.frontend)?;
    bind(&backend, &config.backend)?;
    let frontend_port = bound_port(&frontend)?;
    let backend_port = bound_port(&backend)?;
    let (waker, stop) = wake::pair(&ctx)?;
    let counters = Arc::new(Counters::default());
    let c = Arc::clone(&counters);
    let thread = Stoppable::spawn(name, "device", waker, move || {
        let _ctx = ctx;
        forward(&frontend, &backend, &stop, &c)
    })?;
    Ok(Device {
        frontend_port,
        backend_port,
        counters,
        thread,
    })
}

fn writable(s: &zmq::Socket) -> Result<bool> {
    Ok(s.get_events().map_err(transport)?.contains(zmq::POLLOUT))
}

fn can_read(s: &zmq::Socket) -> bool {
    s.get_socket_type().is_ok_and(|t| !matches!(t, zmq::PUSH))
}

fn forward(
    frontend: &zmq::Socket,
    backend: &zmq::Socket,
    stop: &zmq::Socket,
    c: &Counters,
) -> Result<()> {
    let back_reads = can_read(backend);
    loop {
        let fe_writable = writable(frontend)?;
        let be_writable = writable(backend)?;
        // Read a side only while the other can take a message.
        let fe_events = if be_writable {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        } | if fe_writable || !back_reads {
            zmq::PollEvents::empty()
        } else {
            zmq::POLLOUT
        };
        let be_events = if back_reads && fe_writable {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        } | if be_writable {
            zmq::PollEvents::empty()
        } else {
            zmq::POLLOUT
        };
        let mut items = [
            frontend.as_poll_item(fe_events),
            backend.as_poll_item(be_events),
            stop.as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, -1).map_err(transport)?;
        if items[2].is_readable() {
            return Ok(());
        }
        if items[0].is_readable() {
            pump(frontend, backend, &c.forwarded, c)?;
        }
        if items[1].is_readable() {
            pump(backend, frontend, &c.returned, c)?;
        }
    }
}

/// Moves up to [`BATCH`] whole messages from `from` to `to`.
fn pump(from: &zmq::Socket, to: &zmq::Socket, count: &AtomicU64, c: &Counters) -> Result<()> {
    for _ in 0..BATCH {
        if !writable(to)? {
            return Ok(());
        }
        let frames = match from.recv_multipart(zmq::DONTWAIT) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) => return Ok(()),
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(transport(e)),
        };
        let bytes: usize = frames.iter().map(Vec::len).sum();
        match to.send_multipart(frames, zmq::DONTWAIT) {
            Ok(()) => {
                count.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(zmq::Error::EHOSTUNREACH) => {
                c.unroutable.fetch_add(1, Ordering::Relaxed);
            }
            Err(zmq::Error::EAGAIN) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(transport(e)),
        }
    }
    Ok(())
}
