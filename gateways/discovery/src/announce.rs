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

/// After the first matching backplane answers, the resolver waits this
/// long for others (query answers arrive within 50 ms on a LAN; queries are
/// repeated every 250 ms) before deciding.
pub const SETTLE: Duration = Duration::from_millis(300);

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
        let interface = path
            .iface
            .and_then(|i| interfaces.iter().find(|f| f.index == i))
            .map(|f| f.name.clone());
        Some(Backplane {
            name: p.name.clone(),
            id: p.id,
            publisher,
            subscriber,
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
/// Returns as soon as [`SETTLE`] has passed since the first match answered.
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
    let node = Node::start(LocalNode::new("resolver", NodeKind::Tool), cfg)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut next_query = start;
    let mut settle: Option<Instant> = None;
    let matches = |b: &Backplane| name.is_none_or(|n| b.name == n);
    loop {
        let now = Instant::now();
        if now >= next_query {
            // Every backplane answers (not only the named ones): the error
            // then lists the others.
            node.query(Some(NodeKind::Backplane), "");
            next_query = now + Duration::from_millis(250);
        }
        let snap = node.snapshot();
        let all: Vec<Backplane> = snap
            .peers
            .iter()
            .filter(|p| p.kind == NodeKind::Backplane)
            .filter_map(|p| Backplane::from_peer(p, &snap.interfaces))
            .collect();
        let (found, others): (Vec<Backplane>, Vec<Backplane>) =
            all.into_iter().partition(|b| matches(b));
        if !found.is_empty() && settle.is_none() {
            settle = Some(now + SETTLE);
        }
        if settle.is_some_and(|s| now >= s) || now >= deadline {
            node.stop();
            let name = name.map(str::to_owned);
            return match found.len() {
                0 => Err(ResolveError::NotFound {
                    name,
                    timeout,
                    others,
                }),
                1 => Ok(found.into_iter().next().ok_or(ResolveError::NotFound {
                    name: None,
                    timeout,
                    others: Vec::new(),
                })?),
                _ => Err(ResolveError::Ambiguous { name, found }),
            };
        }
        let wait = next_query
            .min(settle.unwrap_or(deadline))
            .min(deadline)
            .saturating_duration_since(now);
        let _ = node
            .events()
            .recv_timeout(wait.min(Duration::from_millis(50)));
    }
}

/// What a `-b` argument means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneArg {
    /// An address (used as is, exactly like Python Banyan's `-b`).
    Address(String),
    /// A backplane name to resolve in the pool.
    Name(String),
}

/// Classifies a `-b` argument: an IP address, `localhost`, or anything
/// with a dot or a colon is an address (host names like `robot.local`
/// included); anything else is a backplane name.
pub fn classify_backplane_arg(arg: &str) -> BackplaneArg {
    if arg.parse::<IpAddr>().is_ok() || arg == "localhost" || arg.contains('.') || arg.contains(':')
    {
        BackplaneArg::Address(arg.to_owned())
    } else {
        BackplaneArg::Name(arg.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backplane_args() {
        for a in [
            "192.168.1.5",
            "127.0.0.1",
            "localhost",
            "robot.local",
            "::1",
        ] {
            assert_eq!(classify_backplane_arg(a), BackplaneArg::Address(a.into()));
        }
        for n in ["robot-3", "bp", "lab_backplane"] {
            assert_eq!(classify_backplane_arg(n), BackplaneArg::Name(n.into()));
        }
    }
}
