//! What the other banyan programs call: a backplane or gateway
//! [announces](Announcer) itself; a component [resolves](resolve_backplane)
//! a backplane by name, or takes the only one.
//!
//! Both read the pool settings from the environment
//! ([`Config::from_env`]: `BANYAN_DISCOVERY_CHANNEL`,
//! `BANYAN_DISCOVERY_SEEDS`, `BANYAN_DISCOVERY_INTERFACES`) unless given a
//! [`Config`] (`*_with`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::driver::{self, Config};
use crate::node::Node;
use crate::pool::{LocalNode, Peer};
use crate::{EndpointKind, NodeKind};

/// The default backplane ports (Python Banyan's).
pub const DEFAULT_PUBLISHER_PORT: u16 = 43124;
/// The default backplane subscriber port.
pub const DEFAULT_SUBSCRIBER_PORT: u16 = 43125;

/// How long a resolver listens before deciding "the only backplane" ([`survey_backplanes_with`] with this
/// timeout): it queries at 0 and 100 ms, and every backplane answers a
/// query within [`answer_spread_ms`](crate::pool::Config::answer_spread_ms)
/// (50 ms) plus the network's latency. So two query rounds have been
/// answered by 200 ms — over three times the measured p99 time to first
/// discovery (57 ms, docs/discovery.md) — and one lost query or answer does
/// not hide a backplane. Python Banyan components sleep 300 ms after
/// connecting; this is less.
pub const WINDOW: Duration = Duration::from_millis(200);

/// After the first matching backplane answers, the resolver waits at least
/// this long for others with the same name (answers to one query arrive
/// within 50 ms of each other, plus latency).
pub const SETTLE: Duration = Duration::from_millis(100);

/// The resolver's QUERYs: at 0 and 100 ms, then every 250 ms.
const QUERY_AT_MS: [u64; 2] = [0, 100];
/// The QUERY period after [`QUERY_AT_MS`].
const QUERY_EVERY: Duration = Duration::from_millis(250);

/// A backplane's node: kind backplane, endpoints `pub` (components' PUB
/// sockets connect here) and `sub` (their SUB sockets connect here) at
/// whatever address each peer hears it from.
pub fn backplane_node(name: &str, publisher_port: u16, subscriber_port: u16) -> LocalNode {
    LocalNode::new(name, NodeKind::Backplane)
        .with_endpoint(EndpointKind::BackplanePub, publisher_port)
        .with_endpoint(EndpointKind::BackplaneSub, subscriber_port)
}

/// A node announced in the pool for as long as this value lives (a
/// background [`Node`]; dropping it says BYE).
#[derive(Debug)]
pub struct Announcer {
    node: Node,
}

impl Announcer {
    /// Joins the pool configured by the environment and announces `local`
    /// (for a backplane: [`backplane_node`]).
    ///
    /// # Errors
    /// See [`driver::Error`]; announcing is optional, so callers normally
    /// log the error and go on without discovery.
    pub fn start(local: LocalNode) -> Result<Announcer, driver::Error> {
        Announcer::start_with(local, Config::from_env()?)
    }

    /// Like [`Announcer::start`] with explicit settings.
    ///
    /// # Errors
    /// See [`driver::Error`].
    pub fn start_with(local: LocalNode, cfg: Config) -> Result<Announcer, driver::Error> {
        Ok(Announcer {
            node: Node::start(local, cfg)?,
        })
    }

    /// The node (events, peers, messages, identify).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sets the topics and counters the identity reports.
    pub fn set_identity(
        &self,
        publishes: Vec<String>,
        subscribes: Vec<String>,
        counters: Vec<(String, u64)>,
    ) {
        self.node.set_identity(publishes, subscribes, counters);
    }

    /// Says BYE now (also done on drop).
    pub fn stop(self) {
        self.node.stop();
    }
}

/// A backplane found in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backplane {
    /// Its name.
    pub name: String,
    /// Its instance id.
    pub id: u64,
    /// Where a component's PUB socket connects (`tcp://ADDR`).
    pub publisher: SocketAddrV4,
    /// Where a component's SUB socket connects.
    pub subscriber: SocketAddrV4,
    /// Its service broker, when it announces one.
    pub services: Option<SocketAddrV4>,
    /// The interface it was heard on, if known.
    pub interface: Option<String>,
}

impl Backplane {
    /// The backplane's address (as `-b ADDR` would give it).
    pub fn addr(&self) -> Ipv4Addr {
        *self.publisher.ip()
    }

    /// From a peer of kind backplane (default ports when it advertises
    /// none); `None` when no IPv4 path is known.
    pub fn from_peer(p: &Peer, interfaces: &[crate::Interface]) -> Option<Backplane> {
        let path = p.best_path()?;
        let IpAddr::V4(ip) = path.ip else {
            return None;
        };
        let publisher = p
            .endpoint(EndpointKind::BackplanePub)
            .unwrap_or(SocketAddrV4::new(ip, DEFAULT_PUBLISHER_PORT));
        let subscriber = p
            .endpoint(EndpointKind::BackplaneSub)
            .unwrap_or(SocketAddrV4::new(ip, DEFAULT_SUBSCRIBER_PORT));
        let services = p.endpoint(EndpointKind::Services);
        let interface = path
            .iface
            .and_then(|i| interfaces.iter().find(|f| f.index == i))
            .map(|f| f.name.clone());
        Some(Backplane {
            name: p.name.clone(),
            id: p.id,
            publisher,
            subscriber,
            services,
            interface,
        })
    }
}

impl fmt::Display for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} (pub {}, sub {}",
            self.name,
            self.addr(),
            self.publisher.port(),
            self.subscriber.port()
        )?;
        if let Some(i) = &self.interface {
            write!(f, ", via {i}")?;
        }
        f.write_str(")")
    }
}

fn list(b: &[Backplane]) -> String {
    if b.is_empty() {
        return "none".into();
    }
    b.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn named(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" named {n:?}"))
        .unwrap_or_default()
}

/// Why [`resolve_backplane`] found no single backplane.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No (matching) backplane answered.
    #[error(
        "no backplane{} answered in the discovery pool within {timeout:?} (others seen: {}); \
         is it running, on this channel, reachable by multicast? give its address with -b ADDR, \
         or seeds in BANYAN_DISCOVERY_SEEDS",
        named(.name), list(.others)
    )]
    NotFound {
        /// The name asked for.
        name: Option<String>,
        /// How long the resolver waited.
        timeout: Duration,
        /// Backplanes with other names that answered.
        others: Vec<Backplane>,
    },
    /// Several backplanes match: choose one by name.
    #[error("{} backplanes{} in the discovery pool: {}; choose one with -b NAME", .found.len(), named(.name), list(.found))]
    Ambiguous {
        /// The name asked for (several instances share it).
        name: Option<String>,
        /// Every match.
        found: Vec<Backplane>,
    },
    /// The pool could not be joined.
    #[error(transparent)]
    Driver(#[from] driver::Error),
}

/// Finds the backplane named `name` — or, without a name, the only
/// backplane — in the pool configured by the environment, waiting at most
/// `timeout` (1 s is plenty on a LAN).
///
/// Returns [`SETTLE`] after the name answered, or (no name) after
/// [`WINDOW`]; see [`survey_backplanes_with`].
///
/// # Errors
/// [`ResolveError::NotFound`] (with the backplanes of other names that were
/// seen), [`ResolveError::Ambiguous`] (several backplanes and no name, or
/// several with that name), [`ResolveError::Driver`].
pub fn resolve_backplane(name: Option<&str>, timeout: Duration) -> Result<Backplane, ResolveError> {
    resolve_backplane_with(Config::from_env()?, name, timeout)
}

/// Like [`resolve_backplane`] with explicit settings.
///
/// # Errors
/// See [`resolve_backplane`].
pub fn resolve_backplane_with(
    cfg: Config,
    name: Option<&str>,
    timeout: Duration,
) -> Result<Backplane, ResolveError> {
    let survey = survey_backplanes_with(cfg, name, timeout)?;
    let name = name.map(str::to_owned);
    let mut found = survey.found;
    match found.len() {
        0 => Err(ResolveError::NotFound {
            name,
            timeout,
            others: survey.others,
        }),
        1 => found.pop().ok_or(ResolveError::NotFound {
            name,
            timeout,
            others: Vec::new(),
        }),
        _ => Err(ResolveError::Ambiguous { name, found }),
    }
}

/// The backplanes a resolver heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Survey {
    /// Those with the name asked for (every backplane without a name).
    pub found: Vec<Backplane>,
    /// Backplanes with other names.
    pub others: Vec<Backplane>,
}

/// Lists the backplanes in the pool (those named `name`, if given, in
/// [`Survey::found`]; the others in [`Survey::others`]).
///
/// With a name it returns [`SETTLE`] after that name first answered; without
/// one, when [`WINDOW`] (or `timeout` if shorter) has passed since the start
/// and [`SETTLE`] since the first answer; in both cases at `timeout` at the
/// latest. With no name and `timeout` = [`WINDOW`] it returns after exactly
/// that: what "the only backplane" is decided from.
///
/// # Errors
/// The pool could not be joined ([`driver::Error`]).
pub fn survey_backplanes_with(
    cfg: Config,
    name: Option<&str>,
    timeout: Duration,
) -> Result<Survey, driver::Error> {
    let node = Node::start(LocalNode::new("resolver", NodeKind::Tool), cfg)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let window = start + WINDOW.min(timeout);
    let mut queries = 0usize;
    let mut next_query = start;
    let mut first_match: Option<Instant> = None;
    let matches = |b: &Backplane| name.is_none_or(|n| b.name == n);
    loop {
        let now = Instant::now();
        if now >= next_query {
            // Every backplane answers (not only the named ones): the error
            // then lists the others.
            node.query(Some(NodeKind::Backplane), "");
            queries += 1;
            next_query = match QUERY_AT_MS.get(queries) {
                Some(ms) => start + Duration::from_millis(*ms),
                None => now + QUERY_EVERY,
            };
        }
        let snap = node.snapshot();
        let (found, others): (Vec<Backplane>, Vec<Backplane>) = snap
            .peers
            .iter()
            .filter(|p| p.kind == NodeKind::Backplane)
            .filter_map(|p| Backplane::from_peer(p, &snap.interfaces))
            .partition(|b| matches(b));
        if !found.is_empty() && first_match.is_none() {
            first_match = Some(now);
        }
        // A name: SETTLE after it answered (a duplicate answers the same
        // query). No name: the whole window (absence and "several" are
        // decided from what did not answer).
        let decide_at = first_match.map(|f| match name {
            Some(_) => (f + SETTLE).min(deadline),
            None => window.max(f + SETTLE).min(deadline),
        });
        if decide_at.is_some_and(|d| now >= d) || now >= deadline {
            node.stop();
            return Ok(Survey { found, others });
        }
        let wait = next_query
            .min(decide_at.unwrap_or(deadline))
            .saturating_duration_since(now);
        let _ = node
            .events()
            .recv_timeout(wait.clamp(Duration::from_millis(1), Duration::from_millis(20)));
    }
}
