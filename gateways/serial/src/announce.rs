//! The gateway and the device behind it in the discovery pool
//! (docs/discovery.md): `banyan ls` lists both, `banyan ls DEVICE` shows
//! the device's identity.
//!
//! - The gateway is a node of kind `gateway` named after the bridge
//!   ([`BridgeConfig::name`](crate::BridgeConfig::name)) for as long as it
//!   runs.
//! - While the link is up, the device is a node of kind `device` whose
//!   parent is the gateway, named and versioned as its link HELLO says. It
//!   leaves the pool (BYE) when the link goes down or the transport closes,
//!   and a device reset (new session) is a new instance.
//! - Identities (refreshed every [`REFRESH`]): the device publishes the
//!   topics it has published (backplane names) and subscribes to its
//!   subscriptions (backplane names); its counters are the link's
//!   ([`banyan_core::link::Stats`], serialized: a new counter cannot be
//!   forgotten) and the bridge's traffic to and from it. The gateway's are
//!   the bridge counters ([`Counters`](crate::Counters)) and the
//!   component's.
//!
//! Announcing is optional: when the pool cannot be joined the gateway logs a
//! warning once and runs without it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use banyan_component::Stats as ComponentStats;
use banyan_discovery::announce::Announcer;
use banyan_discovery::{LocalNode, NodeKind};

use crate::bridge::{Bridge, LinkState};

/// How often the identities are refreshed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Most published topics remembered per device (more are not listed).
pub const MAX_TOPICS: usize = 32;

/// The device's node while its link is up.
struct Device {
    /// (name, version, session) from its HELLO.
    hello: (String, String, u32),
    node: Announcer,
}

/// The gateway's and the device's nodes (see the [module docs](self)).
pub(crate) struct Announce {
    gateway: Option<Announcer>,
    device: Option<Device>,
    /// Topics the device published (backplane names), first first.
    published: BTreeSet<String>,
    status_topic: String,
    next_refresh: Instant,
    failed: bool,
}

/// `name` as a pool node name: control characters replaced, at most 32
/// bytes, never empty.
fn node_name(name: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > banyan_discovery::wire::MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// The numeric fields of a serializable counters struct, by name.
fn counters<T: serde::Serialize>(prefix: &str, value: &T) -> Vec<(String, u64)> {
    let Ok(bytes) = rmp_serde::to_vec_named(value) else {
        return Vec::new();
    };
    let Ok(rmpv::Value::Map(map)) = rmpv::decode::read_value(&mut bytes.as_slice()) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| Some((format!("{prefix}{}", k.as_str()?), v.as_u64()?)))
        .collect()
}

impl Announce {
    /// Joins the pool as gateway `name` (pool settings from the
    /// environment); `enabled: false` announces nothing.
    pub(crate) fn new(name: &str, status_topic: &str, enabled: bool) -> Announce {
        let mut a = Announce {
            gateway: None,
            device: None,
            published: BTreeSet::new(),
            status_topic: status_topic.to_owned(),
            next_refresh: Instant::now(),
            failed: !enabled,
        };
        if enabled {
            a.gateway = a.start(LocalNode::new(
                &node_name(name, "serial_gateway"),
                NodeKind::Gateway,
            ));
        }
        a
    }

    fn start(&mut self, local: LocalNode) -> Option<Announcer> {
        match Announcer::start(local) {
            Ok(a) => Some(a),
            Err(e) => {
                if !self.failed {
                    log::warn!("not announced in the discovery pool: {e}");
                }
                self.failed = true;
                None
            }
        }
    }

    /// Remembers a topic published on the backplane (bounded).
    pub(crate) fn published(&mut self, topic: &str) {
        if self.gateway.is_some()
            && topic != self.status_topic
            && self.published.len() < MAX_TOPICS
            && !self.published.contains(topic)
        {
            self.published.insert(topic.to_owned());
        }
    }

    /// Follows the link: announces the device when it is up, withdraws it
    /// when it goes down or resets; refreshes the identities.
    pub(crate) fn update(&mut self, bridge: &Bridge, comp: ComponentStats, now: Instant) {
        let Some(gateway) = &self.gateway else {
            return;
        };
        // Compared in place: this runs at every turn of the run loop.
        let current = match (bridge.state(), bridge.link().identity()) {
            (LinkState::Up, Some(id)) => Some(id),
            _ => None,
        };
        let changed = match (&self.device, current) {
            (Some(d), Some(id)) => {
                d.hello.2 != id.session
                    || d.hello.0 != id.name.as_str()
                    || d.hello.1 != id.version.as_str()
            }
            (None, None) => false,
            _ => true,
        };
        let hello = current
            .filter(|_| changed)
            .map(|id| (id.name.to_string(), id.version.to_string(), id.session));
        if changed {
            if let Some(d) = self.device.take() {
                log::info!(
                    "{}: device {} left the discovery pool",
                    bridge.config().name,
                    d.hello.0
                );
                d.node.stop();
            }
            self.published.clear();
            if let Some(hello) = hello {
                let mut local = LocalNode::new(&node_name(&hello.0, "device"), NodeKind::Device);
                local.parent = gateway.node().id();
                local.version = node_name(&hello.1, "");
                if let Some(node) = self.start(local) {
                    log::info!(
                        "{}: device {} {} announced in the discovery pool",
                        bridge.config().name,
                        hello.0,
                        hello.1
                    );
                    self.device = Some(Device { hello, node });
                }
            }
        }
        if changed || now >= self.next_refresh {
            self.next_refresh = now + REFRESH;
            self.refresh(bridge, comp);
        }
    }

    fn refresh(&self, bridge: &Bridge, comp: ComponentStats) {
        let Some(gateway) = &self.gateway else {
            return;
        };
        let topics = &bridge.config().topics;
        let subscribes: Vec<String> = bridge
            .subscriptions()
            .map(|t| topics.to_backplane(t))
            .collect();
        let published: Vec<String> = self.published.iter().cloned().collect();
        let c = bridge.counters();
        if let Some(d) = &self.device {
            let mut all = vec![
                ("to_device".to_owned(), c.to_device),
                ("from_device".to_owned(), c.from_device),
                ("dropped_to_device".to_owned(), c.dropped_to_device()),
                ("invalid_from_device".to_owned(), c.invalid_from_device),
            ];
            all.extend(counters("", &bridge.link().stats()));
            d.node
                .set_identity(published.clone(), subscribes.clone(), all);
        }
        let mut gw_publishes = vec![self.status_topic.clone()];
        gw_publishes.extend(published);
        let mut all = counters("", &c);
        all.extend(counters("component.", &comp));
        gateway.set_identity(gw_publishes, subscribes, all);
    }
}

impl Drop for Announce {
    fn drop(&mut self) {
        // The device leaves before its gateway.
        if let Some(d) = self.device.take() {
            d.node.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_valid() {
        assert_eq!(node_name("fake-mcu", "device"), "fake-mcu");
        assert_eq!(node_name("", "device"), "device");
        assert_eq!(node_name("a\nb", "device"), "a?b");
        let long = "é".repeat(40);
        let n = node_name(&long, "device");
        assert!(n.len() <= 32 && banyan_discovery::wire::check_name(&n).is_ok());
    }

    #[test]
    fn counters_come_from_the_real_structs() {
        let mut stats = banyan_core::link::Stats::default();
        stats.frames_rx = 7;
        let c = counters("", &stats);
        assert!(c.contains(&("frames_rx".to_owned(), 7)), "{c:?}");
        // Flattened de-framer counters are there too.
        assert!(c.iter().any(|(k, _)| k == "crc_errors"), "{c:?}");
        let comp = counters("component.", &ComponentStats::default());
        assert!(comp.iter().any(|(k, _)| k == "component.sent"), "{comp:?}");
    }
}
