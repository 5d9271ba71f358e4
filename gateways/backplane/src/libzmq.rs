//! The libzmq engine: libzmq's XSUB/XPUB sockets with a forwarding loop of
//! our own (instead of `zmq_proxy`) so that refused messages are counted.
//! Kept for comparison (`--engine libzmq`); the native engine is the
//! default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Config, Error, Reporter, Result, ShutdownHandle};

/// Messages read from publishers per poll at most (before subscriptions and
/// the shutdown request are looked at again).
const BATCH: usize = 1024;
/// How often a refused message is retried while stalled. (An XPUB socket
/// always reports `POLLOUT` in libzmq 4.3, so there is nothing to wait on.)
const RETRY: Duration = Duration::from_millis(1);

/// The bound sockets of a libzmq backplane.
pub(super) struct Sockets {
    frontend: zmq::Socket,
    backend: zmq::Socket,
    control: zmq::Socket,
}

/// Binds both ports; returns the sockets, the control socket that
/// interrupts the loop, and the real ports.
pub(super) fn bind(config: &Config) -> Result<(Sockets, Mutex<zmq::Socket>, u16, u16)> {
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::XSUB)?;
    frontend.set_rcvhwm(config.hwm)?;
    frontend.set_linger(0)?;
    let mut backend = context.socket(zmq::XPUB)?;
    backend.set_sndhwm(config.hwm)?;
    backend.set_linger(0)?;
    banyan_component::sockopt::set_xpub_nodrop(&mut backend, true)?;
    let publisher_port = bind_socket(&frontend, "publisher", &config.bind, config.publisher_port)?;
    let subscriber_port =
        bind_socket(&backend, "subscriber", &config.bind, config.subscriber_port)?;
    let endpoint = format!(
        "inproc://banyan-backplane-control-{}",
        super::NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let control = context.socket(zmq::PAIR)?;
    control.set_linger(0)?;
    control.bind(&endpoint)?;
    let steer = context.socket(zmq::PAIR)?;
    steer.set_linger(0)?;
    steer.connect(&endpoint)?;
    Ok((
        Sockets {
            frontend,
            backend,
            control,
        },
        Mutex::new(steer),
        publisher_port,
        subscriber_port,
    ))
}

fn bind_socket(socket: &zmq::Socket, role: &'static str, address: &str, port: u16) -> Result<u16> {
    let endpoint = if port == 0 {
        format!("tcp://{address}:*")
    } else {
        format!("tcp://{address}:{port}")
    };
    socket.bind(&endpoint).map_err(|source| match source {
        zmq::Error::EADDRINUSE => Error::PortInUse {
            role,
            port,
            address: address.to_owned(),
        },
        source => Error::Bind { endpoint, source },
    })?;
    let bound = socket
        .get_last_endpoint()?
        .map_err(|_| Error::Zmq(zmq::Error::EINVAL))?;
    bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(Error::Zmq(zmq::Error::EINVAL))
}

/// The forwarding loop of one [`super::Backplane::run`].
pub(super) struct Forwarder<'a> {
    sockets: Sockets,
    config: &'a Config,
    handle: &'a ShutdownHandle,
    /// Frames of the message being forwarded.
    parts: Vec<zmq::Message>,
    /// `parts` holds a refused message, retried until this deadline.
    stalled_until: Option<Instant>,
    /// Topics in overflow (a stall on them timed out), with the time a
    /// message on them was last refused: refused messages on these topics
    /// are dropped at once, until one is queued again or none was refused
    /// for a whole stall time.
    overflow: HashMap<Vec<u8>, Instant>,
    pub(super) reporter: Reporter,
}

fn ms_until(deadline: Instant, now: Instant) -> i64 {
    let ms = deadline.saturating_duration_since(now).as_millis();
    // Round up so the deadline has passed when poll returns.
    i64::try_from(ms).unwrap_or(i64::MAX).saturating_add(1)
}

impl<'a> Forwarder<'a> {
    pub(super) fn new(sockets: Sockets, config: &'a Config, handle: &'a ShutdownHandle) -> Self {
        Forwarder {
            sockets,
            config,
            handle,
            parts: Vec::with_capacity(4),
            stalled_until: None,
            overflow: HashMap::new(),
            reporter: Reporter::new(config, handle.stats()),
        }
    }

    pub(super) fn run(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            let timeout = match (self.stalled_until, self.reporter.next_report) {
                (Some(_), _) => ms_until(now + RETRY, now),
                (None, Some(at)) => ms_until(at, now),
                (None, None) => -1,
            };
            let frontend_events = if self.stalled_until.is_some() {
                // Backpressure: publishers are not read while stalled.
                zmq::PollEvents::empty()
            } else {
                zmq::POLLIN
            };
            let mut items = [
                self.sockets.control.as_poll_item(zmq::POLLIN),
                self.sockets.backend.as_poll_item(zmq::POLLIN),
                self.sockets.frontend.as_poll_item(frontend_events),
            ];
            match zmq::poll(&mut items, timeout) {
                Ok(_) => {}
                // A signal interrupted the poll (e.g. the SIGINT that will
                // shut us down): carry on; TERMINATE is still queued.
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let [control, backend, frontend] = items.map(|i| i.is_readable());
            if control {
                self.drain_control()?;
            }
            if self.handle.stop_requested() {
                if self.stalled_until.take().is_some() {
                    // The refused message dies with the backplane: count it.
                    self.reporter.stats.dropped += 1;
                }
                return Ok(());
            }
            if backend {
                self.forward_subscriptions()?;
            }
            let now = Instant::now();
            if let Some(until) = self.stalled_until {
                self.retry(until, now)?;
            } else if frontend {
                self.forward_batch(now)?;
            }
            self.report(now);
            self.handle.counters.store(self.reporter.stats);
        }
    }

    fn drain_control(&self) -> Result<()> {
        loop {
            match self.sockets.control.recv_bytes(zmq::DONTWAIT) {
                Ok(_) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Subscriptions and unsubscriptions go upstream to the publishers.
    fn forward_subscriptions(&self) -> Result<()> {
        for _ in 0..BATCH {
            let mut msg = zmq::Message::new();
            match self.sockets.backend.recv(&mut msg, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let flags = if msg.get_more() { zmq::SNDMORE } else { 0 };
            self.sockets.frontend.send(msg, flags)?;
        }
        Ok(())
    }

    /// Reads one whole message (all frames) from the publishers into
    /// `parts`; `false` if none is waiting.
    fn read_message(&mut self) -> Result<bool> {
        let mut msg = zmq::Message::new();
        match self.sockets.frontend.recv(&mut msg, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.parts.clear();
        let mut more = msg.get_more();
        self.parts.push(msg);
        while more {
            // The other frames of a message arrive with the first.
            let mut msg = zmq::Message::new();
            self.sockets.frontend.recv(&mut msg, 0)?;
            more = msg.get_more();
            self.parts.push(msg);
        }
        Ok(true)
    }

    /// Sends the message in `parts` if every subscriber it goes to has room
    /// (`ZMQ_XPUB_NODROP`); otherwise keeps it in `parts`.
    fn try_send(&mut self) -> Result<bool> {
        let n = self.parts.len();
        let more = if n > 1 { zmq::SNDMORE } else { 0 };
        // The first frame is sent from a copy (a topic: short, no
        // allocation) so the message is still ours if it is refused.
        match self
            .sockets
            .backend
            .send(topic(&self.parts), more | zmq::DONTWAIT)
        {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if !self.overflow.is_empty() {
            // A topic that overflowed is accepted again.
            self.overflow.remove(topic(&self.parts));
        }
        // The room check is made on the first frame only: the others
        // cannot be refused.
        for (i, part) in self.parts.drain(1..).enumerate() {
            let flags = if i + 2 < n { zmq::SNDMORE } else { 0 };
            self.sockets.backend.send(part, flags)?;
        }
        self.parts.clear();
        self.reporter.stats.forwarded += 1;
        Ok(true)
    }

    fn forward_batch(&mut self, now: Instant) -> Result<()> {
        for _ in 0..BATCH {
            if !self.read_message()? {
                return Ok(());
            }
            if self.try_send()? {
                continue;
            }
            if let Some(last_refused) = self.overflow.get_mut(topic(&self.parts)) {
                if now.saturating_duration_since(*last_refused) < self.config.stall {
                    *last_refused = now;
                    self.drop_message(now);
                    continue;
                }
            }
            self.reporter.stats.stalls += 1;
            self.stalled_until = Some(now + self.config.stall);
            return Ok(());
        }
        Ok(())
    }

    fn retry(&mut self, until: Instant, now: Instant) -> Result<()> {
        if self.try_send()? {
            self.stalled_until = None;
        } else if now >= until {
            self.stalled_until = None;
            self.overflow.insert(topic(&self.parts).to_vec(), now);
            self.drop_message(now);
        }
        Ok(())
    }

    fn drop_message(&mut self, now: Instant) {
        self.parts.clear();
        self.reporter.stats.dropped += 1;
        self.reporter.warn_if_due(now);
    }

    /// Logs pending drops, and publishes the counters on
    /// [`super::STATS_TOPIC`] when one changed since the last report.
    fn report(&mut self, now: Instant) {
        self.reporter.warn_if_due(now);
        let stall = self.config.stall;
        let Some(payload) = self.reporter.due(now) else {
            return;
        };
        self.overflow
            .retain(|_, last_refused| now.saturating_duration_since(*last_refused) < stall);
        match banyan_component::send_message(&self.sockets.backend, super::STATS_TOPIC, &payload) {
            Ok(true) => self.reporter.reported(),
            // A subscriber to the stats topic is full: counted like any
            // other message (and the report is tried again next time).
            Ok(false) => self.reporter.stats.dropped += 1,
            Err(e) => log::warn!("backplane: cannot publish statistics: {e}"),
        }
    }
}

/// The first frame (the topic) of a message being forwarded; empty if there
/// is none.
fn topic(parts: &[zmq::Message]) -> &[u8] {
    parts.first().map_or(&[], |p| &p[..])
}
