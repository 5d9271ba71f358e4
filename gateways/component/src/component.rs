//! One connection to one backplane: [`Component`] (see the crate docs).

use banyan_core::topic;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::wire::{self, Limits, Message, Reject, Rejection, Validator};

/// Default backplane publisher port (components' publishers connect here).
pub const PUBLISHER_PORT: u16 = 43124;
/// Default backplane subscriber port (components' subscribers connect here).
pub const SUBSCRIBER_PORT: u16 = 43125;
/// Default high-water mark (messages) for the publisher and subscriber queues.
pub const DEFAULT_HWM: i32 = 1_000_000;

/// A failure of the message transport (the native ZMTP stack or libzmq),
/// kept opaque so that the component API does not name its dependencies'
/// types. Ask it for the OS error number or its [`std::io::ErrorKind`].
pub struct TransportError(pub(crate) TransportInner);

pub(crate) enum TransportInner {
    #[cfg(feature = "libzmq")]
    Zmq(zmq::Error),
    Io(std::io::Error),
}

#[cfg(feature = "libzmq")]
impl From<zmq::Error> for TransportError {
    fn from(e: zmq::Error) -> Self {
        TransportError(TransportInner::Zmq(e))
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError(TransportInner::Io(e))
    }
}

impl TransportError {
    /// The error number (`errno`) the transport reported (0 when it was
    /// not an OS error).
    pub fn raw_os_error(&self) -> i32 {
        match &self.0 {
            #[cfg(feature = "libzmq")]
            TransportInner::Zmq(e) => e.to_raw(),
            TransportInner::Io(e) => e.raw_os_error().unwrap_or(0),
        }
    }

    /// The kind of I/O error this error stands for.
    pub fn kind(&self) -> std::io::ErrorKind {
        match &self.0 {
            #[cfg(feature = "libzmq")]
            TransportInner::Zmq(e) => std::io::Error::from_raw_os_error(e.to_raw()).kind(),
            TransportInner::Io(e) => e.kind(),
        }
    }
}

impl std::fmt::Debug for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransportError({}: {})", self.raw_os_error(), self)
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            #[cfg(feature = "libzmq")]
            TransportInner::Zmq(e) => std::fmt::Display::fmt(e, f),
            TransportInner::Io(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TransportError {}

/// A ZeroMQ error as the component API reports it: `EINTR` is
/// [`Error::Interrupted`], everything else [`Error::Transport`].
#[cfg(feature = "libzmq")]
pub(crate) fn zmq_error(e: zmq::Error) -> Error {
    if e == zmq::Error::EINTR {
        Error::Interrupted
    } else {
        Error::Transport(e.into())
    }
}

fn io_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::Interrupted {
        Error::Interrupted
    } else {
        Error::Transport(e.into())
    }
}

/// Which transport a component uses (see the [crate docs](crate#transports)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Our own ZMTP stack ([`banyan_zmtp`]): no I/O thread between the
    /// caller and the socket. The default.
    Native,
    /// libzmq through the `zmq` crate (feature `libzmq`).
    Libzmq,
}

impl Transport {
    /// The transport named by the environment variable `BANYAN_TRANSPORT`
    /// (`native` or `libzmq`), else [`Transport::Native`]. An unknown name
    /// is logged and ignored.
    pub fn from_env() -> Transport {
        match std::env::var("BANYAN_TRANSPORT") {
            Ok(v) => v.parse().unwrap_or_else(|e| {
                log::warn!("BANYAN_TRANSPORT: {e}; using the native transport");
                Transport::Native
            }),
            Err(_) => Transport::Native,
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Transport, String> {
        match s {
            "native" => Ok(Transport::Native),
            "libzmq" | "zmq" => Ok(Transport::Libzmq),
            other => Err(format!("unknown transport {other:?} (native or libzmq)")),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Native => "native",
            Transport::Libzmq => "libzmq",
        })
    }
}

/// Errors of the component API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signal interrupted a blocking call: check your stop flag and call
    /// again. Nothing is lost.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The transport failed. Usually a bad address or port in [`Config`],
    /// the process is out of file descriptors, or the component is being
    /// shut down.
    #[error("transport: {0}")]
    Transport(#[source] TransportError),
    /// Connecting to `endpoint` failed: check [`Config::address`] (an IP
    /// address or host name) and the ports.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint, e.g. `tcp://127.0.0.1:43124`.
        endpoint: String,
        /// What the transport said.
        source: TransportError,
    },
    /// An I/O error (reading a routing spec, for example).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The value cannot be encoded as MessagePack: use types with string map
    /// keys (structs, `HashMap<String, _>`).
    #[error("cannot encode payload: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// `publish_raw` was given bytes that are not one valid MessagePack value
    /// (see [`crate::wire`]); nothing was sent. Fix the encoder producing them.
    #[error("invalid payload, not sent: {0}")]
    InvalidPayload(Reject),
    /// The message was dropped (and counted in [`Stats::send_dropped`]): the
    /// queue to the backplane is full because the backplane is unreachable or
    /// slower than this publisher. Start the backplane, publish more slowly,
    /// or raise [`Config::send_hwm`].
    #[error("send queue to the backplane is full ({hwm} messages): message dropped")]
    SendQueueFull {
        /// The configured high-water mark.
        hwm: i32,
    },
    /// The transport asked for in [`Config::transport`] is not built in
    /// (the `libzmq` feature is off).
    #[error("transport {0} is not built into this program")]
    Unsupported(Transport),
}

/// Result of the component API.
pub type Result<T> = std::result::Result<T, Error>;

/// Where and how to connect. Build it with `Config::default()` and change
/// the fields you need.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Backplane host: IP address or name. Default `127.0.0.1`.
    pub address: String,
    /// Backplane publisher port (our publisher connects). Default 43124.
    pub publisher_port: u16,
    /// Backplane subscriber port (our subscriber connects). Default 43125.
    pub subscriber_port: u16,
    /// Name shown in the banner and logs. Default `component`.
    pub name: String,
    /// Messages queued towards the backplane before `publish` drops (and
    /// counts) instead. 0 = unlimited. Default [`DEFAULT_HWM`].
    pub send_hwm: i32,
    /// libzmq transport: messages queued from the backplane before ZeroMQ
    /// stops reading the connection (the backplane then queues, and drops
    /// past its own limit). 0 = unlimited. Default [`DEFAULT_HWM`].
    pub recv_hwm: i32,
    /// Native transport: bytes read from the backplane ahead of the
    /// receiving calls, at most (a message larger than this is still read
    /// whole). Past it reading stops and the backplane queues, then drops
    /// past its own limits (counted there). Default
    /// [`DEFAULT_RECV_BUFFER`].
    pub recv_buffer: usize,
    /// Limits applied to received messages.
    pub limits: Limits,
    /// How long unsent messages are kept for the backplane when the component
    /// is dropped. Default 1 s.
    pub linger: Duration,
    /// Control topics (exact names, e.g. `run_motors`) whose messages are
    /// *conflated* by [`Component::recv_batch`]: of the messages on one such
    /// topic read in one batch only the newest is delivered; the older ones
    /// are dropped and counted in [`Stats::stale`]. Default: none. See the
    /// [`driver`](crate::driver) for why.
    pub conflate: Vec<String>,
    /// The transport. Default [`Transport::from_env`]: native unless
    /// `BANYAN_TRANSPORT=libzmq`.
    pub transport: Transport,
    /// How often we send the backplane a heartbeat (`PING`) when nothing
    /// else was sent; zero: none, and no dead-backplane detection.
    /// Default 1 s.
    pub heartbeat_interval: Duration,
    /// Silence from the backplane after which it counts as gone even
    /// without a FIN (a backplane host that lost power, a network that
    /// went away): the connection is closed, [`Event::BackplaneDown`]
    /// reported, and a reconnect started. Default 3 s.
    pub heartbeat_timeout: Duration,
}

/// Default [`Config::recv_buffer`]: 64 MiB.
pub const DEFAULT_RECV_BUFFER: usize = 64 << 20;

/// Default [`Config::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`Config::heartbeat_timeout`].
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "127.0.0.1".into(),
            publisher_port: PUBLISHER_PORT,
            subscriber_port: SUBSCRIBER_PORT,
            name: "component".into(),
            send_hwm: DEFAULT_HWM,
            recv_hwm: DEFAULT_HWM,
            recv_buffer: DEFAULT_RECV_BUFFER,
            limits: Limits::default(),
            linger: Duration::from_secs(1),
            conflate: Vec::new(),
            transport: Transport::from_env(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

impl Config {
    /// A default config for a backplane at `address` with the given ports.
    pub fn new(address: impl Into<String>, publisher_port: u16, subscriber_port: u16) -> Config {
        Config {
            address: address.into(),
            publisher_port,
            subscriber_port,
            ..Config::default()
        }
    }

    /// The banner printed by the binaries, in the style of Banyan's.
    pub fn banner(&self) -> String {
        let line = "*".repeat(60);
        format!(
            "\n{line}\n{} using Back Plane IP address: {}\nSubscriber Port = {}\nPublisher  Port = {}\n{line}",
            self.name, self.address, self.subscriber_port, self.publisher_port
        )
    }
}

/// Message counters of a component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to ZeroMQ for sending.
    pub sent: u64,
    /// Valid messages received.
    pub received: u64,
    /// Received messages rejected as malformed (see [`crate::wire`]).
    pub rejected: u64,
    /// Messages dropped at publish time because the send queue was full.
    pub send_dropped: u64,
    /// Messages on a conflated topic ([`Config::conflate`]) dropped unread
    /// because a newer one on the same topic was already queued behind them.
    pub stale: u64,
    /// Messages that were being written when the connection to the
    /// backplane broke: the backplane got part of them and discards it
    /// (native transport; libzmq does not tell).
    pub send_lost: u64,
    /// Times the backplane stopped answering heartbeats and its connection
    /// was closed (native transport).
    pub heartbeat_expired: u64,
}

/// What one [`Component::recv_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Batch {
    /// Events appended.
    pub events: usize,
    /// Messages read from the transport (delivered, rejected or stale).
    pub read: usize,
    /// Conflated messages dropped as stale in this batch.
    pub stale: usize,
    /// The receive queue was found empty: nothing more is waiting.
    pub drained: bool,
}

/// State of the subscriber's connection to the backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection yet since the component was created.
    Connecting,
    /// Connected (ZMTP handshake done).
    Up,
    /// The connection was lost; ZeroMQ is reconnecting.
    Down,
}

/// Something that happened on a component.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A valid message.
    Message(Message),
    /// A malformed message was dropped (already counted).
    Rejected(Rejection),
    /// The subscriber connected (or reconnected) to the backplane.
    BackplaneUp,
    /// The subscriber lost its backplane connection; ZeroMQ keeps retrying.
    BackplaneDown,
}

/// One frame of a received message: a libzmq message, or bytes our own
/// transport read.
#[derive(Debug)]
pub(crate) enum Frame {
    #[cfg(feature = "libzmq")]
    Zmq(zmq::Message),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(feature = "libzmq")]
            Frame::Zmq(m) => m,
            Frame::Owned(v) => v,
        }
    }
}

impl Frame {
    /// The bytes, moved out when they are ours (copied from libzmq's).
    fn take(&mut self) -> Vec<u8> {
        match self {
            #[cfg(feature = "libzmq")]
            Frame::Zmq(m) => m.to_vec(),
            Frame::Owned(v) => std::mem::take(v),
        }
    }
}

/// Which connections a component makes: both for a [`Component`]; a
/// multi-backplane component may only publish to, or only subscribe on,
/// a backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sides {
    pub(crate) publisher: bool,
    pub(crate) subscriber: bool,
}

/// The transport behind a component.
enum Backend {
    #[cfg(feature = "libzmq")]
    Zmq(crate::zmq_backend::Zmq),
    Native(crate::native::Native),
}

/// A connection to one backplane. See the [crate docs](crate).
pub struct Component {
    backend: Backend,
    config: Config,
    receiver: Receiver,
    /// The subscriptions our publisher has been told of (a set: the
    /// backplane's XPUB reports each prefix once), indexed by the core so
    /// that `has_subscriber` costs the topic's length, not their number.
    remote_subscriptions: topic::Index<()>,
    link: LinkState,
    pending: std::collections::VecDeque<Event>,
    sent: u64,
    send_dropped: u64,
    topics: Vec<String>,
    scratch: Vec<u8>,
    /// Frames read by the native transport (reused).
    native_frames: Vec<Vec<u8>>,
    /// Conflated messages held back within a batch: per conflated topic
    /// (index as in `config.conflate`), in arrival order.
    held: Vec<Vec<Held>>,
    stale: u64,
    feedback: crate::feedback::Feedback,
}

/// A message on a conflated topic, held until the end of a batch.
struct Held {
    frames: Vec<Frame>,
    /// Its keys when it is a flat command map (see the driver docs).
    keys: Option<Vec<std::ops::Range<usize>>>,
}

/// Most distinct commands held per conflated topic in one batch; past it the
/// oldest is delivered early.
const MAX_HELD: usize = 8;

/// A ZeroMQ context: the I/O thread(s) behind components on the libzmq
/// transport. Components made with [`Component::connect`] each have their
/// own; share one with [`Component::connect_with_context`]. The native
/// transport has no I/O thread and ignores it.
#[derive(Clone, Default)]
pub struct Context(#[cfg(feature = "libzmq")] zmq::Context);

impl Context {
    /// A new context.
    pub fn new() -> Context {
        Context::default()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Context")
    }
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("config", &self.config)
            .field("link", &self.link)
            .field("stats", &self.stats())
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Checking received multipart messages.
#[derive(Debug, Default)]
pub(crate) struct Receiver {
    validator: Validator,
    limits: Limits,
    pub(crate) frames: Vec<Frame>,
    pub(crate) received: u64,
    pub(crate) rejected: u64,
    pub(crate) last_rejection: Option<Rejection>,
}

impl Receiver {
    pub(crate) fn new(limits: Limits) -> Receiver {
        Receiver {
            limits,
            ..Receiver::default()
        }
    }

    /// Checks the frames last read (or put back into `self.frames`).
    pub(crate) fn check(&mut self) -> std::result::Result<Message, Rejection> {
        let checked =
            wire::check_frames(&mut self.validator, &self.limits, &self.frames).map(str::to_owned);
        match checked {
            Ok(topic) => {
                let payload = self.frames.get_mut(1).map(Frame::take).unwrap_or_default();
                self.received += 1;
                Ok(Message::new(topic, payload))
            }
            Err(reason) => self.reject(reason),
        }
    }

    /// Counts and reports a rejected message (its frames in `self.frames`).
    fn reject(&mut self, reason: Reject) -> std::result::Result<Message, Rejection> {
        self.rejected += 1;
        let rejection = Rejection::new(reason, &self.frames);
        log::warn!("{rejection}");
        self.last_rejection = Some(rejection.clone());
        Err(rejection)
    }
}

#[cfg(feature = "libzmq")]
#[doc(hidden)]
pub use crate::zmq_backend::send_message;

impl Component {
    /// Connects to the backplane described by `config`, in the background,
    /// so this succeeds even if the backplane is not running yet; see
    /// [`Component::wait_for_subscriber`] and [`Component::link_state`].
    ///
    /// # Errors
    /// [`Error::Connect`] for an unusable address, [`Error::Unsupported`]
    /// for a transport not built in, [`Error::Transport`] otherwise.
    pub fn connect(config: Config) -> Result<Component> {
        Component::connect_with_context(config, &Context::new())
    }

    /// Like [`Component::connect`], but on an existing [`Context`], so
    /// several components in one process share libzmq's I/O thread (the
    /// native transport has none and ignores it).
    ///
    /// # Errors
    /// As [`Component::connect`].
    pub fn connect_with_context(config: Config, context: &Context) -> Result<Component> {
        let both = Sides {
            publisher: true,
            subscriber: true,
        };
        Component::connect_sides(config, context, both)
    }

    /// Like [`Component::connect_with_context`], making only the
    /// connections in `sides` (the other side's calls then do nothing:
    /// sends are refused as with a full queue, nothing is received).
    pub(crate) fn connect_sides(
        config: Config,
        context: &Context,
        sides: Sides,
    ) -> Result<Component> {
        let backend = match config.transport {
            Transport::Native => {
                let options = crate::native::Options {
                    address: config.address.clone(),
                    publisher_port: sides.publisher.then_some(config.publisher_port),
                    subscriber_port: sides.subscriber.then_some(config.subscriber_port),
                    send_hwm: usize::try_from(config.send_hwm.max(0)).unwrap_or(usize::MAX),
                    max_message: config.limits.max_payload.saturating_add(64 * 1024),
                    recv_buffer: config.recv_buffer.max(64 * 1024),
                    heartbeat_interval: config.heartbeat_interval,
                    heartbeat_timeout: config.heartbeat_timeout,
                    linger: config.linger,
                };
                let native =
                    crate::native::Native::connect(&options).map_err(|(endpoint, source)| {
                        if endpoint.is_empty() {
                            io_error(source)
                        } else {
                            Error::Connect {
                                endpoint,
                                source: source.into(),
                            }
                        }
                    })?;
                Backend::Native(native)
            }
            #[cfg(feature = "libzmq")]
            Transport::Libzmq => {
                use crate::zmq_backend::ConnectError;
                let zmq = crate::zmq_backend::Zmq::connect(&config, context.0.clone(), sides)
                    .map_err(|e| match e {
                        ConnectError::Zmq(e) => zmq_error(e),
                        ConnectError::Endpoint { endpoint, source } => Error::Connect {
                            endpoint,
                            source: source.into(),
                        },
                    })?;
                Backend::Zmq(zmq)
            }
            #[cfg(not(feature = "libzmq"))]
            Transport::Libzmq => {
                let _ = (context, sides);
                return Err(Error::Unsupported(Transport::Libzmq));
            }
        };
        let held = config.conflate.iter().map(|_| Vec::new()).collect();
        let feedback = crate::feedback::Feedback::new(
            config.name.clone(),
            config.address.clone(),
            config.publisher_port,
            config.subscriber_port,
            Instant::now(),
        );
        Ok(Component {
            feedback,
            backend,
            receiver: Receiver::new(config.limits),
            config,
            remote_subscriptions: topic::Index::new(),
            link: LinkState::Connecting,
            pending: std::collections::VecDeque::new(),
            sent: 0,
            send_dropped: 0,
            topics: Vec::new(),
            scratch: Vec::new(),
            native_frames: Vec::new(),
            held,
            stale: 0,
        })
    }

    /// The transport this component uses.
    pub fn transport(&self) -> Transport {
        match self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(_) => Transport::Libzmq,
            Backend::Native(_) => Transport::Native,
        }
    }
    /// The configuration this component was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Subscribes to every topic starting with `topic` (`""` = everything).
    ///
    /// # Errors
    /// [`Error::Transport`] if the socket refuses the option.
    pub fn subscribe(&mut self, topic: &str) -> Result<()> {
        match &mut self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(z) => z.subscribe(topic.as_bytes()).map_err(zmq_error)?,
            Backend::Native(n) => n.subscribe(topic.as_bytes()),
        }
        self.topics.push(topic.to_owned());
        Ok(())
    }

    /// Removes one earlier subscription to `topic` (duplicates count: the
    /// backplane is told when the last one goes, as with libzmq's SUB).
    ///
    /// # Errors
    /// [`Error::Transport`] if the socket refuses the option.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<()> {
        match &mut self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(z) => z.unsubscribe(topic.as_bytes()).map_err(zmq_error)?,
            Backend::Native(n) => n.unsubscribe(topic.as_bytes()),
        }
        if let Some(i) = self.topics.iter().position(|t| t == topic) {
            self.topics.remove(i);
        }
        Ok(())
    }

    /// Current subscriptions, in the order made.
    pub fn subscriptions(&self) -> &[String] {
        &self.topics
    }

    /// Makes `topics` (exact names) the conflated control topics of
    /// [`Component::recv_batch`] (see [`Config::conflate`]), replacing the
    /// configured ones.
    pub fn set_conflate(&mut self, topics: &[&str]) {
        self.config.conflate = topics.iter().map(|t| (*t).to_owned()).collect();
        self.held = topics.iter().map(|_| Vec::new()).collect();
    }

    /// Publishes a serde value, encoded like Python's
    /// `msgpack.packb(payload, use_bin_type=True)` (structs as maps).
    ///
    /// # Errors
    /// [`Error::Encode`], [`Error::SendQueueFull`] (message dropped and
    /// counted), [`Error::Transport`].
    pub fn publish<T: serde::Serialize + ?Sized>(&mut self, topic: &str, value: &T) -> Result<()> {
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let encoded = rmp_serde::encode::write_named(&mut payload, value);
        let result = match encoded {
            Ok(()) => self.send(topic, &payload),
            Err(e) => Err(e.into()),
        };
        self.scratch = payload;
        result
    }

    /// Publishes a dynamic MessagePack value.
    ///
    /// # Errors
    /// As [`Component::publish`].
    pub fn publish_value(&mut self, topic: &str, value: &rmpv::Value) -> Result<()> {
        let payload = wire::encode_value(value);
        self.publish_raw(topic, &payload)
    }

    /// Publishes already-encoded MessagePack bytes. They are checked first
    /// (one value, nothing trailing, str/bin map keys) so that no receiver —
    /// Python's included — is ever sent something it would choke on.
    ///
    /// # Errors
    /// [`Error::InvalidPayload`] (nothing sent), [`Error::SendQueueFull`],
    /// [`Error::Transport`].
    pub fn publish_raw(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        self.receiver
            .validator
            .check(payload)
            .map_err(Error::InvalidPayload)?;
        self.send(topic, payload)
    }

    /// Sends a payload already checked.
    pub(crate) fn send(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        let queued = match &mut self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(z) => z.send(topic, payload).map_err(zmq_error)?,
            Backend::Native(n) => n.send(topic.as_bytes(), payload),
        };
        if !queued {
            self.send_dropped += 1;
            return Err(Error::SendQueueFull {
                hwm: self.config.send_hwm,
            });
        }
        self.sent += 1;
        if self.sent.is_multiple_of(1024) {
            self.drain_subscriptions()?;
        }
        Ok(())
    }

    /// Reads subscription notices the backplane sent to our publisher.
    fn drain_subscriptions(&mut self) -> Result<()> {
        loop {
            let notice = match &mut self.backend {
                #[cfg(feature = "libzmq")]
                Backend::Zmq(z) => z.take_notice().map_err(zmq_error)?,
                Backend::Native(n) => n.take_notice(),
            };
            match notice {
                // (Already held: a repeated notice changes nothing.)
                Some((true, prefix)) => {
                    if self.remote_subscriptions.count((), &prefix) == 0 {
                        let _ = self.remote_subscriptions.subscribe((), &prefix);
                    }
                }
                // (Not held: nothing to do.)
                Some((false, prefix)) => {
                    let _ = self.remote_subscriptions.unsubscribe((), &prefix);
                }
                None => return Ok(()),
            }
        }
    }

    /// Whether some subscriber, as far as our publisher has been told, wants
    /// `topic`.
    pub fn has_subscriber(&mut self, topic: &str) -> bool {
        match &mut self.backend {
            Backend::Native(n) => n.poll_notices(),
            // libzmq's I/O thread reads the notices; drain_subscriptions takes them.
            #[cfg(feature = "libzmq")]
            Backend::Zmq(_) => {}
        }
        let _ = self.drain_subscriptions();
        self.remote_subscriptions.matches(topic.as_bytes())
    }

    /// Waits up to `timeout` until some subscriber on the backplane wants
    /// `topic` (see the [crate docs](crate#knowing-the-backplane-is-there)).
    /// Returns whether one does.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn wait_for_subscriber(&mut self, topic: &str, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_subscriber(topic) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            let mut ready = Vec::new();
            if self.wait(&[], Some(deadline), &mut ready)? {
                return Ok(false);
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let (send_lost, heartbeat_expired) = match &self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(_) => (0, 0),
            Backend::Native(n) => {
                let c = n.counters();
                (c.lost, c.heartbeat_expired)
            }
        };
        Stats {
            sent: self.sent,
            received: self.receiver.received,
            rejected: self.receiver.rejected,
            send_dropped: self.send_dropped,
            stale: self.stale,
            send_lost,
            heartbeat_expired,
        }
    }

    /// Messages published and not yet written to the backplane's socket
    /// (native transport; 0 for libzmq, which does not tell).
    pub fn send_queue_len(&self) -> usize {
        match &self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(_) => 0,
            Backend::Native(n) => n.queued(),
        }
    }

    /// The most recent rejected message, if any.
    pub fn last_rejection(&self) -> Option<&Rejection> {
        self.receiver.last_rejection.as_ref()
    }

    /// State of the subscriber's connection to the backplane, up to date
    /// with the transport (the events stay queued for
    /// [`Component::recv_event`]).
    pub fn link_state(&mut self) -> LinkState {
        let _ = self.read_links();
        self.link
    }

    /// Waits until the transport may have something (a message, a notice,
    /// a link change), one of `watches` is ready, or `deadline` passes;
    /// `Ok(true)` when a signal interrupted the wait. Ready watches are
    /// appended to `ready` (index into `watches`). Also wakes for the
    /// connection feedback's next line.
    pub(crate) fn wait(
        &mut self,
        watches: &[crate::driver::Watch],
        deadline: Option<Instant>,
        ready: &mut Vec<(usize, crate::driver::Ready)>,
    ) -> Result<bool> {
        let deadline = match (deadline, self.feedback.next_deadline()) {
            (Some(d), Some(f)) => Some(d.min(f)),
            (d, f) => d.or(f),
        };
        match &mut self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(z) => z.wait(watches, deadline, ready).map_err(zmq_error),
            Backend::Native(n) => n.wait(watches, deadline, ready).map_err(io_error),
        }
    }

    /// [`Component::wait`] for several components at once (one poll; they
    /// use one transport), without watches: until one of them may have
    /// something or `deadline` passes. `Ok(true)` when a signal
    /// interrupted the wait.
    pub(crate) fn wait_all(components: &[&Component], deadline: Option<Instant>) -> Result<bool> {
        let deadline = components
            .iter()
            .filter_map(|c| c.feedback.next_deadline())
            .fold(deadline, |d, f| Some(d.map_or(f, |d| d.min(f))));
        let mut ready = Vec::new();
        let mut natives = Vec::new();
        #[cfg(feature = "libzmq")]
        let mut zmqs = Vec::new();
        for c in components.iter() {
            match &c.backend {
                #[cfg(feature = "libzmq")]
                Backend::Zmq(z) => zmqs.push(z),
                Backend::Native(n) => natives.push(n),
            }
        }
        #[cfg(feature = "libzmq")]
        if !zmqs.is_empty() {
            // (One transport per multi-backplane component: a native
            // connection beside them is only looked at every 10 ms.)
            let deadline = if natives.is_empty() {
                deadline
            } else {
                let soon = Instant::now() + Duration::from_millis(10);
                Some(deadline.map_or(soon, |d| d.min(soon)))
            };
            return crate::zmq_backend::wait_all(&zmqs, &[], deadline, &mut ready)
                .map_err(zmq_error);
        }
        crate::native::wait_all(&natives, &[], deadline, &mut ready).map_err(io_error)
    }

    /// Moves link changes into `pending`, updating `link`.
    fn read_links(&mut self) -> Result<()> {
        loop {
            let up = match &mut self.backend {
                #[cfg(feature = "libzmq")]
                Backend::Zmq(z) => match z.take_link().map_err(zmq_error)? {
                    Some(crate::zmq_backend::Link::Up) => Some(true),
                    Some(crate::zmq_backend::Link::Down) => Some(false),
                    None => None,
                },
                Backend::Native(n) => match n.take_link() {
                    Some(crate::native::Link::Up) => Some(true),
                    Some(crate::native::Link::Down(why)) => {
                        log::info!("{}: backplane connection lost: {why}", self.config.name);
                        Some(false)
                    }
                    None => None,
                },
            };
            match up {
                Some(true) => {
                    self.link = LinkState::Up;
                    self.feedback.up(Instant::now());
                    self.pending.push_back(Event::BackplaneUp);
                }
                Some(false) => {
                    self.link = LinkState::Down;
                    self.feedback.down(Instant::now());
                    self.pending.push_back(Event::BackplaneDown);
                }
                None => {
                    self.feedback.poll(Instant::now());
                    return Ok(());
                }
            }
        }
    }

    /// Reads one message into `self.receiver.frames` without blocking;
    /// `Ok(None)` when none is there. A message over the size limit is
    /// rejected (counted) and reported as read (`Ok(Some(false))`). With
    /// `read_socket` false the native transport only takes what it has
    /// buffered: for callers that wait on the socket when there is nothing
    /// (one system call fewer per message).
    fn read_frames(&mut self, read_socket: bool) -> Result<Option<bool>> {
        match &mut self.backend {
            #[cfg(feature = "libzmq")]
            Backend::Zmq(z) => Ok(z
                .read(&mut self.receiver.frames)
                .map_err(zmq_error)?
                .then_some(true)),
            Backend::Native(n) => match n.read(&mut self.native_frames, read_socket) {
                crate::native::Read_::Message => {
                    self.receiver.frames.clear();
                    self.receiver
                        .frames
                        .extend(self.native_frames.drain(..).map(Frame::Owned));
                    Ok(Some(true))
                }
                crate::native::Read_::Oversize { topic, len } => {
                    self.receiver.frames.clear();
                    self.receiver.frames.push(Frame::Owned(topic));
                    let _ = self.receiver.reject(Reject::TooLarge {
                        len: usize::try_from(len).unwrap_or(usize::MAX),
                        max: self.config.limits.max_payload,
                    });
                    Ok(Some(false))
                }
                crate::native::Read_::Empty => Ok(None),
            },
        }
    }

    /// Reads and checks one message without blocking (`read_socket`: see
    /// [`Component::read_frames`]).
    fn try_recv_message(
        &mut self,
        read_socket: bool,
    ) -> Result<Option<std::result::Result<Message, Rejection>>> {
        match self.read_frames(read_socket)? {
            None => Ok(None),
            Some(true) => Ok(Some(self.receiver.check())),
            Some(false) => Ok(Some(Err(self
                .receiver
                .last_rejection
                .clone()
                .unwrap_or_else(|| {
                    Rejection::new(Reject::MissingPayload, &[] as &[Frame])
                })))),
        }
    }

    /// Returns the next event if one is ready, without blocking.
    ///
    /// # Errors
    /// [`Error::Transport`] (for example the context was terminated).
    pub fn try_recv_event(&mut self) -> Result<Option<Event>> {
        self.read_links()?;
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        self.drain_subscriptions()?;
        Ok(self.try_recv_message(true)?.map(|r| match r {
            Ok(m) => Event::Message(m),
            Err(rej) => Event::Rejected(rej),
        }))
    }

    /// Appends to `out` up to `max_events` events that are ready (a few
    /// more when held messages are delivered at the end), without blocking,
    /// reading at most `max_reads` messages from the transport: connection
    /// events first, then messages in arrival order, except that messages on
    /// a conflated topic ([`Config::conflate`]) are held to the end of the
    /// batch and a held one is dropped unchecked and counted
    /// ([`Stats::stale`]) when a newer one on its topic replaces it (sets
    /// every field it sets; see the driver docs).
    ///
    /// Reading ahead is what lets a gateway skip a backlog of old commands
    /// quickly: a superseded command costs a read, not a parse. Use it from
    /// a run loop ([`crate::driver`]) with a `max_reads` that drains the
    /// queue faster than it can fill.
    ///
    /// # Errors
    /// [`Error::Interrupted`] (events read so far are in `out`),
    /// [`Error::Transport`].
    pub fn recv_batch(
        &mut self,
        max_events: usize,
        max_reads: usize,
        out: &mut Vec<Event>,
    ) -> Result<Batch> {
        let mut batch = Batch::default();
        self.read_links()?;
        while batch.events < max_events {
            let Some(e) = self.pending.pop_front() else {
                break;
            };
            out.push(e);
            batch.events += 1;
        }
        self.drain_subscriptions()?;
        let result = self.read_batch(max_events, max_reads, out, &mut batch);
        // The held conflated messages go last, also after an error.
        for i in 0..self.held.len() {
            let held = self.held.get_mut(i).map(std::mem::take).unwrap_or_default();
            for h in held {
                self.deliver(h.frames, out, &mut batch);
            }
        }
        result.map(|()| batch)
    }

    fn deliver(&mut self, frames: Vec<Frame>, out: &mut Vec<Event>, batch: &mut Batch) {
        self.receiver.frames = frames;
        out.push(match self.receiver.check() {
            Ok(m) => Event::Message(m),
            Err(rej) => Event::Rejected(rej),
        });
        batch.events += 1;
    }

    /// Holds a message on conflated topic `slot`, dropping (as stale) the
    /// held ones it replaces.
    fn hold(&mut self, slot: usize, frames: Vec<Frame>, out: &mut Vec<Event>, batch: &mut Batch) {
        let payload: &[u8] = frames.get(1).map_or(&[], |f| &f[..]);
        let keys = crate::conflate::keys(payload);
        let Some(held) = self.held.get_mut(slot) else {
            return self.deliver(frames, out, batch);
        };
        if let Some(new_keys) = &keys {
            let before = held.len();
            held.retain(|h| match &h.keys {
                Some(old_keys) => {
                    let old: &[u8] = h.frames.get(1).map_or(&[], |f| &f[..]);
                    !crate::conflate::replaces(payload, new_keys, old, old_keys)
                }
                None => true,
            });
            let dropped = before - held.len();
            self.stale += dropped as u64;
            batch.stale += dropped;
        }
        let early = if held.len() >= MAX_HELD {
            Some(held.remove(0))
        } else {
            None
        };
        held.push(Held { frames, keys });
        if let Some(h) = early {
            self.deliver(h.frames, out, batch);
        }
    }

    fn read_batch(
        &mut self,
        max_events: usize,
        max_reads: usize,
        out: &mut Vec<Event>,
        batch: &mut Batch,
    ) -> Result<()> {
        while batch.events < max_events && batch.read < max_reads {
            let Some(whole) = self.read_frames(true)? else {
                batch.drained = true;
                return Ok(());
            };
            batch.read += 1;
            if !whole {
                // Over the size limit: already rejected and counted.
                if let Some(rej) = self.receiver.last_rejection.clone() {
                    out.push(Event::Rejected(rej));
                    batch.events += 1;
                }
                continue;
            }
            let slot = match self.receiver.frames.as_slice() {
                [topic, _] => self
                    .config
                    .conflate
                    .iter()
                    .position(|c| c.as_bytes() == &topic[..]),
                _ => None,
            };
            if let Some(slot) = slot {
                let frames = std::mem::take(&mut self.receiver.frames);
                self.hold(slot, frames, out, batch);
                continue;
            }
            out.push(match self.receiver.check() {
                Ok(m) => Event::Message(m),
                Err(rej) => Event::Rejected(rej),
            });
            batch.events += 1;
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None` = forever) for the next event. Returns
    /// `None` on timeout, or early when a signal interrupts the wait.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn recv_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut ready = Vec::new();
        loop {
            if let Some(event) = self.try_recv_event()? {
                return Ok(Some(event));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            if self.wait(&[], deadline, &mut ready)? {
                return Ok(None);
            }
        }
    }

    /// Waits up to `timeout` for the next valid message (rejected messages
    /// and connection events are counted/recorded and skipped). Returns
    /// `None` on timeout, or early when a signal interrupts the wait.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>> {
        self.recv_message(Some(Instant::now() + timeout))
    }

    /// Blocks until the next valid message.
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn recv(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.recv_message(None)? {
                return Ok(m);
            }
        }
    }

    /// The next valid message if one is ready, without blocking; rejected
    /// messages are counted and skipped, connection events stay queued for
    /// [`Component::recv_event`] (the latest 16).
    pub(crate) fn try_recv_valid(&mut self) -> Result<Option<Message>> {
        self.take_valid(true)
    }

    /// [`Component::try_recv_valid`]; `read_socket`: see
    /// [`Component::read_frames`].
    fn take_valid(&mut self, read_socket: bool) -> Result<Option<Message>> {
        // Fast path: a message is already queued.
        while let Some(r) = self.try_recv_message(read_socket)? {
            if let Ok(m) = r {
                return Ok(Some(m));
            }
        }
        self.read_links()?;
        // Connection events are for recv_event; keep only the latest few.
        while self.pending.len() > 16 {
            self.pending.pop_front();
        }
        self.drain_subscriptions()?;
        Ok(None)
    }

    fn recv_message(&mut self, deadline: Option<Instant>) -> Result<Option<Message>> {
        let mut ready = Vec::new();
        loop {
            // What the socket has, the wait finds (and reads) at once.
            if let Some(m) = self.take_valid(false)? {
                return Ok(Some(m));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // No wait left: a last look at the socket itself.
                return self.take_valid(true);
            }
            if self.wait(&[], deadline, &mut ready)? {
                return Ok(None);
            }
        }
    }

    /// An iterator over messages that ends when none arrives for `timeout`.
    pub fn iter_timeout(&mut self, timeout: Duration) -> Messages<'_> {
        Messages {
            component: self,
            timeout,
        }
    }

    /// Calls `handler` for every valid message until it returns
    /// `ControlFlow::Break`. The handler gets the component back so it can
    /// publish replies.
    ///
    /// # Errors
    /// [`Error::Transport`]; errors inside the handler are the handler's to handle.
    pub fn run<F>(&mut self, mut handler: F) -> Result<()>
    where
        F: FnMut(&mut Component, Message) -> ControlFlow<()>,
    {
        loop {
            let message = self.recv()?;
            if handler(self, message).is_break() {
                return Ok(());
            }
        }
    }

    /// Like [`Component::run`], but also returns when `stop` becomes true
    /// (checked at least every 100 ms; e.g. set by a SIGINT handler through
    /// `signal_hook::flag::register`).
    ///
    /// # Errors
    /// [`Error::Transport`].
    pub fn run_until<F>(&mut self, stop: &AtomicBool, mut handler: F) -> Result<()>
    where
        F: FnMut(&mut Component, Message) -> ControlFlow<()>,
    {
        while !stop.load(Ordering::Relaxed) {
            if let Some(message) = self.recv_timeout(Duration::from_millis(100))? {
                if handler(self, message).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Iterator returned by [`Component::iter_timeout`].
#[derive(Debug)]
pub struct Messages<'a> {
    component: &'a mut Component,
    timeout: Duration,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Self::Item> {
        self.component.recv_timeout(self.timeout).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_backplane::{self as backplane, Backplane};

    fn pair() -> (backplane::Running, Component, Component) {
        let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
            .unwrap()
            .spawn()
            .unwrap();
        let cfg = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
        let publisher = Component::connect(cfg.clone()).unwrap();
        let subscriber = Component::connect(cfg).unwrap();
        (bp, publisher, subscriber)
    }

    /// A dropped component's connections end at once and are never made
    /// again. Its connections are up and idle, so the keeper thread polls
    /// them until its next heartbeat timer: that poll used to hold the
    /// sockets open past the close (the backplane saw the end a heartbeat
    /// interval late), and the keeper then reconnected them.
    #[test]
    fn a_dropped_component_closes_at_once_and_never_reconnects() {
        use std::io::{Read as _, Write as _};
        use std::net::{TcpListener, TcpStream};
        let listeners = [
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let port = |l: &TcpListener| l.local_addr().unwrap().port();
        let mut cfg = Config::new("127.0.0.1", port(&listeners[0]), port(&listeners[1]));
        cfg.transport = Transport::Native;
        cfg.heartbeat_interval = Duration::from_secs(5);
        cfg.heartbeat_timeout = Duration::from_secs(15);
        let mut c = Component::connect(cfg).unwrap();
        // A backplane's side of the handshake, by hand: greeting and READY.
        let accept = |l: &TcpListener, socket_type: &str| -> TcpStream {
            let mut s = l.accept().unwrap().0;
            let mut out = banyan_zmtp::greeting().to_vec();
            banyan_zmtp::put_ready(&mut out, socket_type);
            s.write_all(&out).unwrap();
            s
        };
        let mut peers = [accept(&listeners[0], "XSUB"), accept(&listeners[1], "XPUB")];
        let until = Instant::now() + Duration::from_secs(10);
        while c.link_state() != LinkState::Up {
            assert!(Instant::now() < until, "the handshake did not finish");
            let _ = c.recv_event(Some(Duration::from_millis(10))).unwrap();
        }
        // Unattended: the keeper polls them now, until its heartbeat timer.
        std::thread::sleep(Duration::from_millis(50));
        drop(c);
        for s in &mut peers {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {} // the greeting and READY
                    Err(e) => panic!("no end of file within 1 s of the drop: {e}"),
                }
            }
        }
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            for l in &listeners {
                assert!(l.accept().is_err(), "a dropped component connected again");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn publish_subscribe_roundtrip_and_counters() {
        let (_bp, mut p, mut s) = pair();
        s.subscribe("t").unwrap();
        assert!(p
            .wait_for_subscriber("tx", Duration::from_secs(10))
            .unwrap());
        assert!(!p.has_subscriber("other"));
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct V {
            value: i64,
        }
        p.publish("tx", &V { value: 7 }).unwrap();
        p.publish("other", &V { value: 8 }).unwrap();
        p.publish("t", &V { value: 9 }).unwrap();
        let m = s.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(m.topic, "tx");
        assert_eq!(m.decode::<V>().unwrap(), V { value: 7 });
        let m = s.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!((m.topic.as_str(), m.decode::<V>().unwrap().value), ("t", 9));
        assert_eq!(s.recv_timeout(Duration::from_millis(50)).unwrap(), None);
        assert_eq!(p.stats().sent, 3);
        assert_eq!(s.stats().received, 2);
        assert_eq!(s.link_state(), LinkState::Up);
    }

    /// A backlog of commands on a conflated topic is skipped to the newest
    /// (counted as stale), partial commands that set other fields are kept,
    /// other topics keep their order.
    #[test]
    fn recv_batch_conflates_control_topics() {
        let (_bp, mut p, mut s) = pair();
        s.set_conflate(&["run_motors"]);
        s.subscribe("run_motors").unwrap();
        s.subscribe("other").unwrap();
        assert!(p
            .wait_for_subscriber("run_motors", Duration::from_secs(10))
            .unwrap());
        let cmd = |k: &str, v: f64| rmpv::Value::Map(vec![(k.into(), v.into())]);
        let both =
            |v: f64| rmpv::Value::Map(vec![("left".into(), v.into()), ("right".into(), v.into())]);
        p.publish_value("run_motors", &cmd("left", 0.9)).unwrap();
        for i in 0..1000 {
            p.publish_value("run_motors", &both(f64::from(i) / 1000.0))
                .unwrap();
            if i % 100 == 0 {
                p.publish_value("other", &cmd("n", f64::from(i))).unwrap();
            }
        }
        p.publish_value("run_motors", &cmd("right", 0.25)).unwrap();
        p.publish_value("other", &cmd("n", -1.0)).unwrap();
        // Read until every message has arrived (received or superseded).
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.stats().received + s.stats().stale < 1013 {
            assert!(Instant::now() < deadline, "{:?}", s.stats());
            let mut batch = Vec::new();
            s.recv_batch(1000, 100_000, &mut batch).unwrap();
            events.extend(batch);
            // Waits for more (what it returns is part of the stream too).
            events.extend(s.recv_event(Some(Duration::from_millis(10))).unwrap());
        }
        let got: Vec<(String, rmpv::Value)> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some((m.topic.clone(), m.value().unwrap())),
                _ => None,
            })
            .collect();
        let others: Vec<_> = got.iter().filter(|(t, _)| t == "other").collect();
        assert_eq!(others.len(), 11);
        assert_eq!(others.last().unwrap().1, cmd("n", -1.0));
        let motors: Vec<_> = got.iter().filter(|(t, _)| t == "run_motors").collect();
        // Nothing on run_motors is lost but what a newer command replaced:
        // the last full command and the partial one after it survive.
        let last = motors.len();
        assert!(last >= 2, "{motors:?}");
        assert_eq!(motors[last - 2].1, both(0.999));
        assert_eq!(motors[last - 1].1, cmd("right", 0.25));
        let st = s.stats();
        assert_eq!(st.received + st.stale, 1013, "{st:?}");
        assert!(st.stale > 0, "{st:?}");
    }

    #[test]
    fn publish_raw_refuses_invalid_payloads() {
        let (_bp, mut p, _s) = pair();
        let err = p.publish_raw("t", &[0x81, 0x01, 0x02]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPayload(Reject::BadMapKey { at: 1 })),
            "{err}"
        );
        assert_eq!(p.stats().sent, 0);
    }

    #[test]
    fn full_send_queue_is_counted_not_silent() {
        // A "backplane" that subscribes to everything but never reads.
        let ctx = zmq::Context::new();
        let stuck = ctx.socket(zmq::XSUB).unwrap();
        stuck.set_rcvhwm(10).unwrap();
        stuck.set_linger(0).unwrap();
        stuck.bind("tcp://127.0.0.1:*").unwrap();
        stuck.send(&[1u8][..], 0).unwrap();
        let ep = stuck.get_last_endpoint().unwrap().unwrap();
        let port: u16 = ep.rsplit(':').next().unwrap().parse().unwrap();
        let mut cfg = Config::new("127.0.0.1", port, port);
        cfg.send_hwm = 10;
        cfg.linger = Duration::ZERO;
        let mut p = Component::connect(cfg).unwrap();
        // libzmq attaches the new connection when the socket processes its
        // commands, i.e. on any call on it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p
            .wait_for_subscriber("t", Duration::from_millis(10))
            .unwrap()
        {
            let _ = stuck.get_events();
            assert!(Instant::now() < deadline, "no subscription arrived");
        }
        // 300 MB: more than any kernel's socket buffers absorb.
        let total = 300_000u64;
        let payload = wire::encode_value(&rmpv::Value::Binary(vec![7; 1024]));
        let mut dropped = 0;
        for _ in 0..total {
            if let Err(Error::SendQueueFull { hwm: 10 }) = p.publish_raw("t", &payload) {
                dropped += 1;
            }
        }
        let stats = p.stats();
        assert_eq!(stats.send_dropped, dropped);
        assert_eq!(stats.sent + stats.send_dropped, total);
        assert!(dropped > 0, "{stats:?}");
    }
}
