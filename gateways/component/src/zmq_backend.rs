//! The libzmq transport of [`Component`](crate::Component) (feature
//! `libzmq`): an XPUB publisher, a SUB subscriber and a connection monitor
//! on libzmq sockets, whose I/O thread does the socket work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::component::{Config, Frame, Sides};
use crate::driver::{Ready, Watch};

static NEXT_MONITOR: AtomicUsize = AtomicUsize::new(0);

/// Why connecting failed.
pub(crate) enum ConnectError {
    Zmq(zmq::Error),
    Endpoint {
        endpoint: String,
        source: zmq::Error,
    },
}

impl From<zmq::Error> for ConnectError {
    fn from(e: zmq::Error) -> Self {
        ConnectError::Zmq(e)
    }
}

/// A change of the subscriber's connection seen by the monitor.
pub(crate) enum Link {
    Up,
    Down,
}

/// The libzmq sockets of one component.
pub(crate) struct Zmq {
    publisher: zmq::Socket,
    subscriber: zmq::Socket,
    monitor: zmq::Socket,
    _context: zmq::Context,
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Creates a publisher socket as components use it: XPUB (subscription
/// notices readable), counted drops instead of silent ones.
pub(crate) fn publisher_socket(
    context: &zmq::Context,
    hwm: i32,
    linger: Duration,
) -> Result<zmq::Socket, zmq::Error> {
    let mut publisher = context.socket(zmq::XPUB)?;
    publisher.set_sndhwm(hwm)?;
    publisher.set_linger(millis(linger))?;
    crate::sockopt::set_xpub_nodrop(&mut publisher, true)?;
    Ok(publisher)
}

/// Sends `[topic, payload]` without blocking on an XPUB socket with
/// `ZMQ_XPUB_NODROP`; `Ok(false)` when the queue is full (nothing sent).
pub fn send_message(socket: &zmq::Socket, topic: &str, payload: &[u8]) -> Result<bool, zmq::Error> {
    match socket.send(topic.as_bytes(), zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(e) => return Err(e),
    }
    // The queue check is made on the first frame only: this cannot fail for
    // a full queue.
    socket.send(payload, 0)?;
    Ok(true)
}

/// Reads one multipart message into `frames` without blocking; `false`
/// when none is queued.
pub(crate) fn read_frames(
    socket: &zmq::Socket,
    frames: &mut Vec<Frame>,
) -> Result<bool, zmq::Error> {
    let mut first = zmq::Message::new();
    match socket.recv(&mut first, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(e) => return Err(e),
    }
    frames.clear();
    let mut more = first.get_more();
    frames.push(Frame::Zmq(first));
    while more {
        // The rest of a multipart message is already here: no blocking.
        let part = socket.recv_msg(0)?;
        more = part.get_more();
        frames.push(Frame::Zmq(part));
    }
    Ok(true)
}

/// Milliseconds for `zmq::poll` from an optional deadline (-1 = forever).
pub(crate) fn poll_timeout(deadline: Option<Instant>) -> i64 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so we never spin on a sub-millisecond remainder.
            i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
        }
    }
}

impl Zmq {
    /// Connects the sides asked for (an absent side's socket exists but is
    /// connected nowhere). The monitor follows the subscriber, or the
    /// publisher when there is no subscriber.
    pub(crate) fn connect(
        config: &Config,
        context: zmq::Context,
        sides: Sides,
    ) -> Result<Zmq, ConnectError> {
        let monitor_endpoint = format!(
            "inproc://banyan-subscriber-monitor-{}",
            NEXT_MONITOR.fetch_add(1, Ordering::Relaxed)
        );
        let publisher = publisher_socket(&context, config.send_hwm, config.linger)?;
        let subscriber = context.socket(zmq::SUB)?;
        subscriber.set_rcvhwm(config.recv_hwm)?;
        subscriber.set_linger(0)?;
        let watched = if sides.subscriber || !sides.publisher {
            &subscriber
        } else {
            &publisher
        };
        if !config.heartbeat_interval.is_zero() {
            // libzmq pings the backplane and drops the connection when
            // nothing comes back within the timeout (a monitor DISCONNECTED).
            watched.set_heartbeat_ivl(millis(config.heartbeat_interval))?;
            watched.set_heartbeat_timeout(millis(config.heartbeat_timeout))?;
            watched.set_heartbeat_ttl(millis(config.heartbeat_timeout))?;
        }
        watched.monitor(
            &monitor_endpoint,
            (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
                | (zmq::SocketEvent::DISCONNECTED as i32),
        )?;
        let monitor = context.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&monitor_endpoint)?;
        for (socket, port, wanted) in [
            (&publisher, config.publisher_port, sides.publisher),
            (&subscriber, config.subscriber_port, sides.subscriber),
        ] {
            if !wanted {
                continue;
            }
            let endpoint = format!("tcp://{}:{port}", config.address);
            socket
                .connect(&endpoint)
                .map_err(|source| ConnectError::Endpoint { endpoint, source })?;
        }
        Ok(Zmq {
            publisher,
            subscriber,
            monitor,
            _context: context,
        })
    }

    pub(crate) fn subscribe(&mut self, topic: &[u8]) -> Result<(), zmq::Error> {
        self.subscriber.set_subscribe(topic)
    }

    pub(crate) fn unsubscribe(&mut self, topic: &[u8]) -> Result<(), zmq::Error> {
        self.subscriber.set_unsubscribe(topic)
    }

    pub(crate) fn send(&mut self, topic: &str, payload: &[u8]) -> Result<bool, zmq::Error> {
        send_message(&self.publisher, topic, payload)
    }

    /// The next subscription notice our publisher got.
    pub(crate) fn take_notice(&mut self) -> Result<Option<(bool, Vec<u8>)>, zmq::Error> {
        loop {
            match self.publisher.recv_bytes(zmq::DONTWAIT) {
                Ok(mut notice) => match notice.first() {
                    Some(&b) if b <= 1 => {
                        notice.remove(0);
                        return Ok(Some((b == 1, notice)));
                    }
                    _ => continue,
                },
                Err(zmq::Error::EAGAIN) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next change the connection monitor reported.
    pub(crate) fn take_link(&mut self) -> Result<Option<Link>, zmq::Error> {
        loop {
            let frame = match self.monitor.recv_msg(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => return Ok(None),
                Err(e) => return Err(e),
            };
            // Event frames are [u16 event, u32 value] then the endpoint.
            if frame.get_more() {
                let _ = self.monitor.recv_msg(0)?;
            }
            let Some(&[a, b]) = frame.get(..2) else {
                continue;
            };
            let event = u16::from_ne_bytes([a, b]);
            if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
                return Ok(Some(Link::Up));
            } else if event == zmq::SocketEvent::DISCONNECTED as u16 {
                return Ok(Some(Link::Down));
            }
        }
    }

    pub(crate) fn read(&mut self, frames: &mut Vec<Frame>) -> Result<bool, zmq::Error> {
        read_frames(&self.subscriber, frames)
    }

    /// Waits on the sockets and `watches` until `deadline`; `true` when a
    /// signal interrupted the wait.
    pub(crate) fn wait(
        &mut self,
        watches: &[Watch],
        deadline: Option<Instant>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> Result<bool, zmq::Error> {
        wait_all(&[&*self], watches, deadline, ready)
    }
}

/// [`Zmq::wait`] over several components' sockets at once (one
/// `zmq_poll`): what a multi-backplane component waits with.
pub(crate) fn wait_all(
    zmqs: &[&Zmq],
    watches: &[Watch],
    deadline: Option<Instant>,
    ready: &mut Vec<(usize, Ready)>,
) -> Result<bool, zmq::Error> {
    let mut items = Vec::with_capacity(3 * zmqs.len() + watches.len());
    for z in zmqs {
        items.push(z.subscriber.as_poll_item(zmq::POLLIN));
        items.push(z.monitor.as_poll_item(zmq::POLLIN));
        items.push(z.publisher.as_poll_item(zmq::POLLIN));
    }
    let own = items.len();
    for w in watches {
        let mut ev = zmq::PollEvents::empty();
        if w.read {
            ev |= zmq::POLLIN;
        }
        if w.write {
            ev |= zmq::POLLOUT;
        }
        items.push(zmq::PollItem::from_fd(w.fd, ev));
    }
    match zmq::poll(&mut items, poll_timeout(deadline)) {
        Ok(_) => {}
        Err(zmq::Error::EINTR) => return Ok(true),
        Err(e) => return Err(e),
    }
    for (i, item) in items.iter().enumerate().skip(own) {
        let r = Ready {
            readable: item.is_readable(),
            writable: item.is_writable(),
            error: item.is_error(),
        };
        if r != Ready::default() {
            ready.push((i - own, r));
        }
    }
    Ok(false)
}
