//! `banyan ls`: what is in the discovery pool (docs/discovery.md) — every
//! backplane, component, gateway and device on the LAN that announces
//! itself; one node's identity; joins and leaves live.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use banyan_discovery::driver::Config;
use banyan_discovery::node::Node;
use banyan_discovery::pool::{Event, Target};
use banyan_discovery::{LocalNode, NodeKind, Peer};

use crate::output::{self, Failure, Result};

/// Flags of `banyan ls`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Show this node's identity (name or hex id) instead of the list.
    pub node: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// After the list, print nodes joining and leaving until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// How long to listen before printing, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub wait: f64,
}

fn peer_json(p: &Peer) -> serde_json::Value {
    let endpoints: Vec<String> = p
        .endpoints
        .iter()
        .map(|e| format!("{:?} {}:{}", e.kind, e.addr, e.port))
        .collect();
    serde_json::json!({
        "id": format!("{:016x}", p.id),
        "name": p.name,
        "kind": p.kind.as_str(),
        "addr": p.addr.to_string(),
        "endpoints": endpoints,
        "parent": if p.parent == 0 { serde_json::Value::Null } else { format!("{:016x}", p.parent).into() },
    })
}

/// The name of the node `id` (a device's gateway), else its hex id.
fn parent_name(peers: &[Peer], id: u64) -> String {
    if id == 0 {
        return "-".into();
    }
    peers
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("{id:016x}"))
}

fn table(peers: &[Peer]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<16} {:<21} {:<16} ENDPOINTS",
        "NAME", "KIND", "ID", "ADDRESS", "BEHIND"
    );
    for p in peers {
        let endpoints: Vec<String> = p
            .endpoints
            .iter()
            .map(|e| format!("{:?}:{}", e.kind, e.port).to_lowercase())
            .collect();
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:016x} {:<21} {:<16} {}",
            p.name,
            p.kind.as_str(),
            p.id,
            p.addr.to_string(),
            parent_name(peers, p.parent),
            endpoints.join(" ")
        );
    }
    out
}

/// Lists the pool, shows one node's identity, or watches.
///
/// # Errors
/// No network (no interface to join the pool on), bad flags.
pub fn run(args: Args) -> Result<()> {
    let wait = Duration::try_from_secs_f64(args.wait)
        .map_err(|_| Failure::usage(format!("--wait must be >= 0, not {}", args.wait)))?;
    let cfg = Config::from_env().map_err(|e| Failure::usage(e.to_string()))?;
    let node = Node::start(LocalNode::new("banyan-ls", NodeKind::Tool), cfg)
        .map_err(|e| Failure::new(1, format!("cannot join the discovery pool: {e}")))?;
    let stop = output::stop_flag()?;
    if let Some(name) = &args.node {
        let target = match u64::from_str_radix(name, 16) {
            Ok(id) if name.len() == 16 => Target::Id(id),
            _ => Target::Name(name.clone()),
        };
        // Answers are rate-limited: ask again every 250 ms.
        let until = Instant::now() + wait.max(Duration::from_millis(1500));
        let mut next_ask = Instant::now();
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_ask {
                node.identify(target.clone());
                next_ask = Instant::now() + Duration::from_millis(250);
            }
            if let Ok(Event::Identity {
                from,
                addr,
                identity,
                ..
            }) = node.events().recv_timeout(Duration::from_millis(50))
            {
                // A request by name goes to every node: keep only the
                // answer of the node asked for.
                let asked = match &target {
                    Target::Id(id) => from == *id,
                    Target::Name(n) => identity.name == *n,
                    Target::All => true,
                };
                if !asked {
                    continue;
                }
                let v = serde_json::json!({
                    "id": format!("{from:016x}"),
                    "addr": addr.to_string(),
                    "name": identity.name,
                    "kind": identity.node_kind.map(NodeKind::as_str),
                    "host": identity.host,
                    "pid": identity.pid,
                    "version": identity.version,
                    "uptime_ms": identity.uptime_ms,
                    "publishes": identity.publishes,
                    "subscribes": identity.subscribes,
                    "counters": identity.counters.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
                });
                let text = if args.json {
                    format!("{v}\n")
                } else {
                    format!("{v:#}\n")
                };
                return output::write_stdout(text.as_bytes());
            }
        }
        return Err(Failure::new(
            1,
            format!("no answer from {name} in the pool"),
        ));
    }
    // Ask who is there a few times (lossy Wi-Fi), then list.
    let start = Instant::now();
    for delay in [0, 250, 500] {
        let at = start + Duration::from_millis(delay);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        node.query(None, "");
    }
    std::thread::sleep((start + wait).saturating_duration_since(Instant::now()));
    let mut peers = node.peers();
    peers.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
    let text = if args.json {
        peers
            .iter()
            .map(|p| format!("{}\n", peer_json(p)))
            .collect()
    } else {
        table(&peers)
    };
    output::write_stdout(text.as_bytes())?;
    if !args.watch {
        return Ok(());
    }
    while !stop.load(Ordering::Relaxed) {
        let Ok(event) = node.events().recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let line = match event {
            Event::Found(p) => Some(("found", p)),
            Event::Gone { peer, .. } => Some(("gone", peer)),
            _ => None,
        };
        if let Some((what, p)) = line {
            let text = if args.json {
                let mut v = peer_json(&p);
                if let Some(o) = v.as_object_mut() {
                    o.insert("event".into(), what.into());
                }
                format!("{v}\n")
            } else {
                format!("{what:<6} {} ({}) {}\n", p.name, p.kind.as_str(), p.addr)
            };
            output::write_stdout(text.as_bytes())?;
        }
    }
    Ok(())
}
