//! A component connected to several backplanes at once (the equivalent of
//! Python Banyan's `BanyanBaseMulti`), configured by a routing spec
//! ([`crate::routing`]).
//!
//! Publish to one backplane by name ([`MultiComponent::publish_to`]) or to
//! every backplane that has a publisher port ([`MultiComponent::broadcast`]);
//! receive from all subscribed backplanes with one `zmq_poll`
//! ([`MultiComponent::recv_timeout`]), each message tagged with the name of
//! the backplane it came from.
//!
//! Differences from `BanyanBaseMulti` (3.17): receiving works (Banyan's
//! receive loop calls an un-imported `umsgpack`), broadcasting is its own
//! method instead of the magic socket argument `"BROADCAST"`, payloads are
//! checked as in [`crate::wire`] (a bad message is counted, not fatal), there
//! is no idle sleep, and `"[]"` in the spec subscribes to nothing (see
//! [`crate::routing`]).
//!
//! ```no_run
//! use banyan_component::multi::{MultiComponent, Options};
//! use banyan_component::routing::Spec;
//! use std::time::Duration;
//!
//! let spec = Spec::from_path("spec.csv")?;
//! let mut multi = MultiComponent::connect(&spec, Options::default())?;
//! while let Some(m) = multi.recv_timeout(Duration::from_secs(1))? {
//!     if m.message.topic == "echo" {
//!         multi.publish_raw_to("BP1", "reply", &m.message.payload)?;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::routing::{Entry, Spec};
use crate::wire::{self, Limits, Message, Reject, Rejection};
use crate::{
    interrupted, poll_timeout, publisher_socket, send_message, Receiver, Stats, TransportError,
};

/// Errors of the multi-backplane component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The routing spec is unusable; the message names the line and column.
    #[error(transparent)]
    Routing(#[from] crate::routing::Error),
    /// A signal interrupted a blocking call: check your stop flag and call
    /// again.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The transport failed (bad address in the spec, out of descriptors).
    #[error("transport: {0}")]
    Transport(#[source] TransportError),
    /// Connecting failed: check the spec's `ip_address` and ports.
    #[error("backplane {backplane}: cannot connect to {endpoint}: {source}")]
    Connect {
        /// Backplane name.
        backplane: String,
        /// Endpoint.
        endpoint: String,
        /// What the transport said.
        source: TransportError,
    },
    /// No backplane of this name in the spec: check the spelling.
    #[error("no backplane named {0:?} in the routing spec")]
    UnknownBackplane(String),
    /// The backplane has no `publisher_port` in the spec, so this component
    /// cannot publish there: add the port to the spec.
    #[error("backplane {0:?} has no publisher_port in the routing spec")]
    NoPublisher(String),
    /// The backplane has no `subscriber_port` in the spec, so this component
    /// cannot subscribe there: add the port to the spec.
    #[error("backplane {0:?} has no subscriber_port in the routing spec")]
    NoSubscriber(String),
    /// The value cannot be encoded as MessagePack.
    #[error("cannot encode payload: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// Raw payload bytes are not one valid MessagePack value; nothing sent.
    #[error("invalid payload, not sent: {0}")]
    InvalidPayload(Reject),
    /// The queue to this backplane is full (unreachable or too slow): the
    /// message was dropped and counted. Raise [`Options::send_hwm`] or slow
    /// down.
    #[error("send queue to backplane {backplane:?} is full: message dropped")]
    SendQueueFull {
        /// Backplane name.
        backplane: String,
    },
}

/// A ZeroMQ error as this module reports it.
fn zmq_error(e: zmq::Error) -> Error {
    if e == zmq::Error::EINTR {
        Error::Interrupted
    } else {
        Error::Transport(e.into())
    }
}

/// Result of the multi-backplane component.
pub type Result<T> = std::result::Result<T, Error>;

/// Settings shared by all connections. Build with `Options::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Name shown in logs.
    pub name: String,
    /// Send queue limit per backplane (messages, 0 = unlimited).
    pub send_hwm: i32,
    /// Receive queue limit per backplane (messages, 0 = unlimited).
    pub recv_hwm: i32,
    /// Limits on received messages.
    pub limits: Limits,
    /// How long unsent messages are kept on drop.
    pub linger: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "multi".into(),
            send_hwm: crate::DEFAULT_HWM,
            recv_hwm: crate::DEFAULT_HWM,
            limits: Limits::default(),
            linger: Duration::from_secs(1),
        }
    }
}

/// A message and the backplane it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Name of the backplane (from the spec).
    pub backplane: String,
    /// The message.
    pub message: Message,
}

struct Slot {
    entry: Entry,
    publisher: Option<zmq::Socket>,
    subscriber: Option<zmq::Socket>,
    remote_subscriptions: HashSet<Vec<u8>>,
}

/// A component on several backplanes. See the [module docs](self).
pub struct MultiComponent {
    slots: Vec<Slot>,
    receiver: Receiver,
    options: Options,
    sent: u64,
    send_dropped: u64,
    next: usize,
    _context: zmq::Context,
}

impl std::fmt::Debug for MultiComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiComponent")
            .field(
                "backplanes",
                &self.slots.iter().map(|s| &s.entry).collect::<Vec<_>>(),
            )
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MultiComponent {
    /// Connects to every backplane of the spec and subscribes to its topics.
    ///
    /// # Errors
    /// [`Error::Connect`] for an unusable address, [`Error::Transport`].
    pub fn connect(spec: &Spec, options: Options) -> Result<MultiComponent> {
        let context = zmq::Context::new();
        let mut slots = Vec::with_capacity(spec.entries.len());
        for entry in &spec.entries {
            let connect = |socket: &zmq::Socket, port: u16| {
                let endpoint = format!("tcp://{}:{}", entry.address, port);
                socket.connect(&endpoint).map_err(|source| Error::Connect {
                    backplane: entry.name.clone(),
                    endpoint,
                    source: source.into(),
                })
            };
            let publisher = match entry.publisher_port {
                Some(port) => {
                    let s = publisher_socket(&context, options.send_hwm, options.linger)
                        .map_err(zmq_error)?;
                    connect(&s, port)?;
                    Some(s)
                }
                None => None,
            };
            let subscriber = match entry.subscriber_port {
                Some(port) => {
                    let s = context.socket(zmq::SUB).map_err(zmq_error)?;
                    s.set_rcvhwm(options.recv_hwm).map_err(zmq_error)?;
                    s.set_linger(0).map_err(zmq_error)?;
                    for t in &entry.topics {
                        s.set_subscribe(t.as_bytes()).map_err(zmq_error)?;
                    }
                    connect(&s, port)?;
                    Some(s)
                }
                None => None,
            };
            slots.push(Slot {
                entry: entry.clone(),
                publisher,
                subscriber,
                remote_subscriptions: HashSet::new(),
            });
        }
        Ok(MultiComponent {
            slots,
            receiver: Receiver::new(options.limits),
            options,
            sent: 0,
            send_dropped: 0,
            next: 0,
            _context: context,
        })
    }

    /// Reads the spec file and connects (see [`MultiComponent::connect`]).
    ///
    /// # Errors
    /// [`Error::Routing`] naming the line and column, or as `connect`.
    pub fn from_path(
        path: impl AsRef<std::path::Path>,
        options: Options,
    ) -> Result<MultiComponent> {
        let spec = Spec::from_path(path)?;
        MultiComponent::connect(&spec, options)
    }

    /// The backplanes, in spec order.
    pub fn backplanes(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().map(|s| &s.entry)
    }

    fn slot(&mut self, name: &str) -> Result<&mut Slot> {
        self.slots
            .iter_mut()
            .find(|s| s.entry.name == name)
            .ok_or_else(|| Error::UnknownBackplane(name.to_owned()))
    }

    /// Subscribes to `topic` on the named backplane (`""` = everything).
    ///
    /// # Errors
    /// [`Error::UnknownBackplane`], [`Error::NoSubscriber`], [`Error::Transport`].
    pub fn subscribe(&mut self, backplane: &str, topic: &str) -> Result<()> {
        let slot = self.slot(backplane)?;
        let s = slot
            .subscriber
            .as_ref()
            .ok_or_else(|| Error::NoSubscriber(backplane.to_owned()))?;
        s.set_subscribe(topic.as_bytes()).map_err(zmq_error)?;
        slot.entry.topics.push(topic.to_owned());
        Ok(())
    }

    /// Removes a subscription on the named backplane.
    ///
    /// # Errors
    /// As [`MultiComponent::subscribe`].
    pub fn unsubscribe(&mut self, backplane: &str, topic: &str) -> Result<()> {
        let slot = self.slot(backplane)?;
        let s = slot
            .subscriber
            .as_ref()
            .ok_or_else(|| Error::NoSubscriber(backplane.to_owned()))?;
        s.set_unsubscribe(topic.as_bytes()).map_err(zmq_error)?;
        if let Some(i) = slot.entry.topics.iter().position(|t| t == topic) {
            slot.entry.topics.remove(i);
        }
        Ok(())
    }

    /// Publishes a serde value on the named backplane.
    ///
    /// # Errors
    /// [`Error::UnknownBackplane`], [`Error::NoPublisher`], [`Error::Encode`],
    /// [`Error::SendQueueFull`], [`Error::Transport`].
    pub fn publish_to<T: serde::Serialize + ?Sized>(
        &mut self,
        backplane: &str,
        topic: &str,
        value: &T,
    ) -> Result<()> {
        let payload = wire::encode(value)?;
        self.send_to(backplane, topic, &payload)
    }

    /// Publishes raw MessagePack (checked first) on the named backplane.
    ///
    /// # Errors
    /// As [`MultiComponent::publish_to`], plus [`Error::InvalidPayload`].
    pub fn publish_raw_to(&mut self, backplane: &str, topic: &str, payload: &[u8]) -> Result<()> {
        wire::Validator::new()
            .check(payload)
            .map_err(Error::InvalidPayload)?;
        self.send_to(backplane, topic, payload)
    }

    fn send_to(&mut self, backplane: &str, topic: &str, payload: &[u8]) -> Result<()> {
        let slot = self.slot(backplane)?;
        let socket = slot
            .publisher
            .as_ref()
            .ok_or_else(|| Error::NoPublisher(backplane.to_owned()))?;
        if send_message(socket, topic, payload).map_err(zmq_error)? {
            self.sent += 1;
            Ok(())
        } else {
            self.send_dropped += 1;
            Err(Error::SendQueueFull {
                backplane: backplane.to_owned(),
            })
        }
    }

    /// Publishes a serde value on every backplane with a publisher port.
    /// Returns how many backplanes took it.
    ///
    /// # Errors
    /// [`Error::Encode`]; [`Error::SendQueueFull`] naming the first full
    /// backplane (the others still got the message); [`Error::Transport`].
    pub fn broadcast<T: serde::Serialize + ?Sized>(
        &mut self,
        topic: &str,
        value: &T,
    ) -> Result<usize> {
        let payload = wire::encode(value)?;
        self.broadcast_raw(topic, &payload)
    }

    /// Publishes raw MessagePack (checked first) on every backplane with a
    /// publisher port. Returns how many backplanes took it.
    ///
    /// # Errors
    /// As [`MultiComponent::broadcast`], plus [`Error::InvalidPayload`].
    pub fn broadcast_raw(&mut self, topic: &str, payload: &[u8]) -> Result<usize> {
        wire::Validator::new()
            .check(payload)
            .map_err(Error::InvalidPayload)?;
        let mut sent = 0;
        let mut full = None;
        for slot in &self.slots {
            if let Some(socket) = &slot.publisher {
                if send_message(socket, topic, payload).map_err(zmq_error)? {
                    sent += 1;
                } else {
                    full.get_or_insert_with(|| slot.entry.name.clone());
                    self.send_dropped += 1;
                }
            }
        }
        self.sent += sent as u64;
        match full {
            Some(backplane) => Err(Error::SendQueueFull { backplane }),
            None => Ok(sent),
        }
    }

    /// Waits up to `timeout` until a subscriber on the named backplane wants
    /// `topic` (see [`crate::Component::wait_for_subscriber`]).
    ///
    /// # Errors
    /// [`Error::UnknownBackplane`], [`Error::NoPublisher`], [`Error::Transport`].
    pub fn wait_for_subscriber(
        &mut self,
        backplane: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let slot = self.slot(backplane)?;
        let socket = slot
            .publisher
            .as_ref()
            .ok_or_else(|| Error::NoPublisher(backplane.to_owned()))?;
        loop {
            loop {
                match socket.recv_bytes(zmq::DONTWAIT) {
                    Ok(notice) => match notice.split_first() {
                        Some((1, p)) => {
                            slot.remote_subscriptions.insert(p.to_vec());
                        }
                        Some((0, p)) => {
                            slot.remote_subscriptions.remove(p);
                        }
                        _ => {}
                    },
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => return Err(zmq_error(e)),
                }
            }
            if slot
                .remote_subscriptions
                .iter()
                .any(|p| topic.as_bytes().starts_with(p))
            {
                return Ok(true);
            }
            let ms = poll_timeout(Some(deadline));
            if ms == 0 {
                return Ok(false);
            }
            if interrupted(socket.poll(zmq::POLLIN, ms)).map_err(zmq_error)? {
                return Ok(false);
            }
        }
    }

    /// Returns the next message from any backplane if one is ready, without
    /// blocking. Backplanes are served in turn so none starves the others.
    /// Rejected messages are counted and skipped.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn try_recv(&mut self) -> Result<Option<Received>> {
        let n = self.slots.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            let Some(socket) = &slot.subscriber else {
                continue;
            };
            while let Some(r) = self.receiver.try_recv(socket).map_err(zmq_error)? {
                if let Ok(message) = r {
                    self.next = (i + 1) % n;
                    return Ok(Some(Received {
                        backplane: slot.entry.name.clone(),
                        message,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Waits up to `timeout` for the next message from any backplane.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_recv()? {
                return Ok(Some(r));
            }
            let ms = poll_timeout(Some(deadline));
            if ms == 0 {
                return Ok(None);
            }
            let mut items = self.poll_items();
            if items.is_empty() {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return Ok(None);
            }
            if interrupted(zmq::poll(&mut items, ms)).map_err(zmq_error)? {
                return Ok(None);
            }
        }
    }

    /// The subscriber sockets to wait on; after a poll call
    /// [`MultiComponent::try_recv`] until it returns `None`.
    fn poll_items(&self) -> Vec<zmq::PollItem<'_>> {
        self.slots
            .iter()
            .filter_map(|s| s.subscriber.as_ref())
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect()
    }

    /// Counters over all backplanes.
    pub fn stats(&self) -> Stats {
        Stats {
            sent: self.sent,
            received: self.receiver.received,
            rejected: self.receiver.rejected,
            send_dropped: self.send_dropped,
            stale: 0,
            send_lost: 0,
            heartbeat_expired: 0,
        }
    }

    /// The most recent rejected message.
    pub fn last_rejection(&self) -> Option<&Rejection> {
        self.receiver.last_rejection.as_ref()
    }

    /// The options this component was created with.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Component, Config};
    use banyan_backplane::{self as backplane, Backplane};

    fn backplane() -> backplane::Running {
        Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
            .unwrap()
            .spawn()
            .unwrap()
    }

    #[test]
    fn broadcast_publish_to_and_receive_from_all() {
        let (a, b) = (backplane(), backplane());
        let spec = Spec {
            entries: vec![
                Entry::new(
                    "A",
                    "127.0.0.1",
                    Some(a.subscriber_port()),
                    vec!["in".into()],
                    Some(a.publisher_port()),
                ),
                Entry::new(
                    "B",
                    "127.0.0.1",
                    Some(b.subscriber_port()),
                    vec!["in".into()],
                    Some(b.publisher_port()),
                ),
            ],
        };
        let mut multi = MultiComponent::connect(&spec, Options::default()).unwrap();
        let mut on_a = Component::connect(Config::new(
            "127.0.0.1",
            a.publisher_port(),
            a.subscriber_port(),
        ))
        .unwrap();
        let mut on_b = Component::connect(Config::new(
            "127.0.0.1",
            b.publisher_port(),
            b.subscriber_port(),
        ))
        .unwrap();
        on_a.subscribe("out").unwrap();
        on_b.subscribe("out").unwrap();
        let t = Duration::from_secs(10);
        assert!(multi.wait_for_subscriber("A", "out", t).unwrap());
        assert!(multi.wait_for_subscriber("B", "out", t).unwrap());
        assert_eq!(multi.broadcast("out", &1).unwrap(), 2);
        multi.publish_to("B", "out", &2).unwrap();
        assert_eq!(on_a.recv_timeout(t).unwrap().unwrap().payload, [1]);
        assert_eq!(on_b.recv_timeout(t).unwrap().unwrap().payload, [1]);
        assert_eq!(on_b.recv_timeout(t).unwrap().unwrap().payload, [2]);
        assert_eq!(on_a.recv_timeout(Duration::from_millis(50)).unwrap(), None);

        assert!(on_a.wait_for_subscriber("in", t).unwrap());
        assert!(on_b.wait_for_subscriber("in", t).unwrap());
        on_a.publish("in", &10).unwrap();
        on_b.publish("in", &20).unwrap();
        let mut got: Vec<(String, Vec<u8>)> = (0..2)
            .map(|_| {
                let r = multi.recv_timeout(t).unwrap().unwrap();
                (r.backplane, r.message.payload)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [("A".to_string(), vec![10]), ("B".to_string(), vec![20])]
        );
        assert_eq!(multi.stats().sent, 3);
        assert_eq!(multi.stats().received, 2);

        assert!(matches!(
            multi.publish_to("C", "x", &1),
            Err(Error::UnknownBackplane(_))
        ));
        assert!(matches!(
            multi.publish_raw_to("A", "x", &[0xc1]),
            Err(Error::InvalidPayload(Reject::ReservedMarker { at: 0 }))
        ));
    }

    #[test]
    fn absent_sides_are_clear_errors() {
        let spec = Spec {
            entries: vec![Entry::new("P", "127.0.0.1", None, vec![], Some(1))],
        };
        let mut multi = MultiComponent::connect(&spec, Options::default()).unwrap();
        assert!(matches!(
            multi.subscribe("P", "x"),
            Err(Error::NoSubscriber(_))
        ));
        let spec = Spec {
            entries: vec![Entry::new("S", "127.0.0.1", Some(1), vec![], None)],
        };
        let mut multi = MultiComponent::connect(&spec, Options::default()).unwrap();
        assert!(matches!(
            multi.publish_to("S", "x", &1),
            Err(Error::NoPublisher(_))
        ));
        assert_eq!(multi.broadcast("x", &1).unwrap(), 0);
    }
}
