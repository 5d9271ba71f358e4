//! A discovery pool node for tests and experiments (the netns tests in
//! `tests/discovery.rs` run it inside network namespaces).
//!
//! ```text
//! node run --name bp --kind backplane --pub-port 43124 --sub-port 43125
//! node resolve [--name bp] [--timeout-ms 1000]
//! node identify NAME
//! node hostile --victim NAME [--count 200]
//! node sim --nodes 49 [--seconds 60]      # 49 simulated nodes on one socket
//! ```
//!
//! Common options: `--channel C`, `--seed HOST[:PORT]` (repeatable),
//! `--iface NAME` (repeatable), `--beacon-loss PCT` (drop that share of
//! received beacons), `--gone-ms MS`, `--broadcast never|fallback|always`.
//!
//! `run` prints one line per event on stdout, flushed:
//! `ready id=<hex> port=<port>`, `found|updated id=<hex> name=<n> kind=<k> ip=<ip> iface=<if> pub=<addr> paths=<if/ip,…> ms=<since start>`,
//! `gone id=<hex> name=<n> reason=<r>`, `duplicate name=<n> ids=<hex>,<hex> local=<bool>`,
//! `message from=<hex> topic=<t> len=<n>`, and `stats ...` when stdin gets a line.
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banyan_discovery::announce::{self, Backplane};
use banyan_discovery::driver::{Broadcast, Config};
use banyan_discovery::node::Node;
use banyan_discovery::pool::{Event, GoneReason, Target};
use banyan_discovery::wire::{self, Body, Datagram, Header};
use banyan_discovery::{EndpointKind, LocalNode, NodeKind};

struct Opts {
    cfg: Config,
    name: Option<String>,
    kind: NodeKind,
    pub_port: Option<u16>,
    sub_port: Option<u16>,
    timeout: Duration,
    count: u32,
    nodes: u32,
    seconds: u64,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        cfg: Config::default(),
        name: None,
        kind: NodeKind::Component,
        pub_port: None,
        sub_port: None,
        timeout: Duration::from_millis(1000),
        count: 200,
        nodes: 49,
        seconds: 60,
        rest: Vec::new(),
    };
    let mut seeds = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--channel" => {
                let c = val()?;
                let keep = o.cfg.clone();
                o.cfg = Config::for_channel(&c);
                o.cfg.interfaces = keep.interfaces;
                o.cfg.rx_beacon_loss_percent = keep.rx_beacon_loss_percent;
                o.cfg.broadcast = keep.broadcast;
                o.cfg.pool.gone_after_ms = keep.pool.gone_after_ms;
            }
            "--seed" => seeds.push(val()?),
            "--iface" => o.cfg.interfaces.push(val()?),
            "--beacon-loss" => {
                o.cfg.rx_beacon_loss_percent = val()?.parse().map_err(|e| format!("{e}"))?
            }
            "--gone-ms" => o.cfg.pool.gone_after_ms = val()?.parse().map_err(|e| format!("{e}"))?,
            "--broadcast" => {
                o.cfg.broadcast = match val()?.as_str() {
                    "never" => Broadcast::Never,
                    "fallback" => Broadcast::Fallback,
                    "always" => Broadcast::Always,
                    b => return Err(format!("bad --broadcast {b}")),
                }
            }
            "--name" => o.name = Some(val()?),
            "--kind" => o.kind = val()?.parse().map_err(|e| format!("{e}"))?,
            "--pub-port" => o.pub_port = Some(val()?.parse().map_err(|e| format!("{e}"))?),
            "--sub-port" => o.sub_port = Some(val()?.parse().map_err(|e| format!("{e}"))?),
            "--timeout-ms" => {
                o.timeout = Duration::from_millis(val()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--count" => o.count = val()?.parse().map_err(|e| format!("{e}"))?,
            "--nodes" => o.nodes = val()?.parse().map_err(|e| format!("{e}"))?,
            "--seconds" => o.seconds = val()?.parse().map_err(|e| format!("{e}"))?,
            _ => o.rest.push(a.clone()),
        }
    }
    for s in seeds {
        o.cfg.add_seed(&s).map_err(|e| e.to_string())?;
    }
    Ok(o)
}

fn out(line: String) {
    let mut so = std::io::stdout().lock();
    let _ = writeln!(so, "{line}");
    let _ = so.flush();
}

fn run(o: Opts) -> Result<(), String> {
    let name = o.name.clone().ok_or("--name is required")?;
    let mut local = LocalNode::new(&name, o.kind);
    if let Some(p) = o.pub_port {
        local = local.with_endpoint(EndpointKind::BackplanePub, p);
    }
    if let Some(p) = o.sub_port {
        local = local.with_endpoint(EndpointKind::BackplaneSub, p);
    }
    local.publishes = vec![format!("from_{name}")];
    local.subscribes = vec![format!("to_{name}")];
    let t0 = Instant::now();
    let node = Node::start(local, o.cfg).map_err(|e| e.to_string())?;
    out(format!("ready id={:016x} port={}", node.id(), node.port()));
    let ms = || t0.elapsed().as_millis();
    // A line on stdin asks for the counters; end of stdin is ignored (tests
    // close it), the process runs until killed.
    let (stats_tx, stats_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() || stats_tx.send(()).is_err() {
                break;
            }
        }
    });
    loop {
        if stats_rx.try_recv().is_ok() {
            let s = node.snapshot();
            let pool: Vec<String> = s.pool.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let drv: Vec<String> = s.driver.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out(format!("stats {} {}", pool.join(" "), drv.join(" ")));
        }
        let Ok(e) = node.events().recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let snap_ifaces = || node.snapshot().interfaces;
        match e {
            Event::Found(ref p) | Event::Updated(ref p) => {
                let what = if matches!(e, Event::Found(_)) {
                    "found"
                } else {
                    "updated"
                };
                let path = p.best_path();
                let iface = path
                    .and_then(|x| x.iface)
                    .and_then(|i| snap_ifaces().into_iter().find(|f| f.index == i))
                    .map_or("-".to_owned(), |f| f.name);
                let pubep = p
                    .endpoint(EndpointKind::BackplanePub)
                    .map_or("-".to_owned(), |a| a.to_string());
                let ifaces: Vec<String> = p
                    .paths
                    .iter()
                    .map(|x| {
                        let n = x
                            .iface
                            .and_then(|i| snap_ifaces().into_iter().find(|f| f.index == i))
                            .map_or("-".to_owned(), |f| f.name);
                        format!("{n}/{}", x.ip)
                    })
                    .collect();
                out(format!(
                    "{what} id={:016x} name={} kind={} ip={} iface={iface} pub={pubep} paths={} ms={}",
                    p.id,
                    p.name,
                    p.kind,
                    path.map_or("-".to_owned(), |x| x.ip.to_string()),
                    ifaces.join(","),
                    ms()
                ));
            }
            Event::Gone { peer, reason } => {
                let r = match reason {
                    GoneReason::Silent => "silent",
                    GoneReason::Left => "left",
                    GoneReason::Replaced => "replaced",
                    _ => "other",
                };
                out(format!(
                    "gone id={:016x} name={} reason={r}",
                    peer.id, peer.name
                ));
            }
            Event::DuplicateName { name, ids, local } => {
                out(format!(
                    "duplicate name={name} ids={:016x},{:016x} local={local}",
                    ids[0], ids[1]
                ));
            }
            Event::Message {
                from,
                topic,
                payload,
                ..
            } => {
                out(format!(
                    "message from={from:016x} topic={topic} len={}",
                    payload.len()
                ));
            }
            Event::Identity { .. } => {}
            _ => {}
        }
    }
}

fn resolve(o: Opts) -> Result<(), String> {
    let r = announce::resolve_backplane_with(o.cfg, o.name.as_deref(), o.timeout);
    match r {
        Ok(Backplane {
            name,
            publisher,
            subscriber,
            interface,
            ..
        }) => {
            out(format!(
                "resolved name={name} pub={publisher} sub={subscriber} iface={}",
                interface.unwrap_or_else(|| "-".into())
            ));
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Identifies `name`: prints `identity name=… counters k=v …`.
fn identify(o: &Opts, node: &Node, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + o.timeout;
    let mut id = None;
    while id.is_none() && Instant::now() < deadline {
        node.query(None, name);
        let _ = node.events().recv_timeout(Duration::from_millis(100));
        id = node
            .peers()
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.id);
    }
    let id = id.ok_or(format!("{name} not found"))?;
    // Answers are rate-limited: ask again every 250 ms until one comes.
    let mut reqs = Vec::new();
    let mut next_ask = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_ask {
            reqs.push(node.identify(Target::Id(id)));
            next_ask = Instant::now() + Duration::from_millis(250);
        }
        if let Ok(Event::Identity {
            request, identity, ..
        }) = node.events().recv_timeout(Duration::from_millis(50))
        {
            if reqs.contains(&request) {
                let c: Vec<String> = identity
                    .counters
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out(format!(
                    "identity name={} kind={} host={} pid={} uptime_ms={} publishes={} subscribes={} counters {}",
                    identity.name,
                    identity.node_kind.map_or("-", |k| k.as_str()),
                    identity.host,
                    identity.pid,
                    identity.uptime_ms,
                    identity.publishes.join(","),
                    identity.subscribes.join(","),
                    c.join(" ")
                ));
                return Ok(());
            }
        }
    }
    Err(format!("{name} did not answer identify"))
}

/// Sends malformed and hostile datagrams to the group and to `--victim`
/// (found by query), then identifies the victim and prints its counters.
fn hostile(o: Opts) -> Result<(), String> {
    let victim = o.name.clone().ok_or("--name VICTIM is required")?;
    let port = o.cfg.pool_port();
    let channel = banyan_discovery::channel_hash(&o.cfg.pool.channel);
    let node = Node::start(LocalNode::new("hostile", NodeKind::Tool), o.cfg.clone())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + o.timeout;
    let mut target = None;
    while target.is_none() && Instant::now() < deadline {
        node.query(None, &victim);
        let _ = node.events().recv_timeout(Duration::from_millis(100));
        target = node.peers().into_iter().find(|p| p.name == victim);
    }
    let target = target.ok_or(format!("{victim} not found"))?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let group = SocketAddr::from((banyan_discovery::GROUP, port));
    let dests = [group, target.addr];
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut good = Vec::new();
    let header = |sender| Header {
        flags: 0,
        channel,
        sender,
    };
    let mut sent = 0u32;
    let mut send = |bytes: &[u8]| {
        for d in dests {
            if sock.send_to(bytes, d).is_ok() {
                sent += 1;
            }
        }
    };
    for i in 0..o.count {
        let sender = next() | 1;
        let kind = i % 8;
        let bytes: Vec<u8> = match kind {
            0 => (0..(next() % 300)).map(|_| next() as u8).collect(),
            1 => {
                Datagram {
                    header: header(sender),
                    body: Body::Query(wire::Query {
                        target: 0,
                        node_kind: None,
                        name: "",
                    }),
                }
                .emit(&mut good)
                .map_err(|e| e.to_string())?;
                good.clone()
            }
            2 => {
                Datagram {
                    header: header(sender),
                    body: Body::Beacon(wire::Beacon {
                        seq: 1,
                        node_kind: NodeKind::Device,
                        parent: 0,
                        name: "fake",
                        endpoints: vec![],
                    }),
                }
                .emit(&mut good)
                .map_err(|e| e.to_string())?;
                let n = good.len().max(1);
                good.get(..(next() as usize % n))
                    .unwrap_or_default()
                    .to_vec() // truncated
            }
            3 => {
                let mut b = good.clone();
                if let Some(version) = b.get_mut(2) {
                    *version = 99;
                }
                b
            }
            4 => vec![0x42; 1500], // oversize
            5 => {
                Datagram {
                    header: header(sender),
                    body: Body::Identify {
                        request: i,
                        target: 0,
                    },
                }
                .emit(&mut good)
                .map_err(|e| e.to_string())?;
                good.clone()
            }
            6 => {
                let mut b = good.clone();
                b.extend_from_slice(b"trailing");
                b
            }
            _ => {
                let mut b = good.clone();
                if let Some(channel) = b.get_mut(5).filter(|_| good.len() > 9) {
                    *channel ^= 0xff; // other channel
                }
                b
            }
        };
        send(&bytes);
    }
    out(format!("hostile sent={sent}"));
    identify(&o, &node, &victim)
}

/// `n` simulated nodes beaconing once a second from one socket, for the
/// CPU figure: a real node in a pool of n+1.
fn sim(o: Opts) -> Result<(), String> {
    let port = o.cfg.pool_port();
    let channel = banyan_discovery::channel_hash(&o.cfg.pool.channel);
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_multicast_loop_v4(true)
        .map_err(|e| e.to_string())?;
    let group = SocketAddr::from((banyan_discovery::GROUP, port));
    let start = Instant::now();
    let mut seq = 0u32;
    let mut buf = Vec::new();
    out(format!("sim nodes={}", o.nodes));
    while start.elapsed() < Duration::from_secs(o.seconds) {
        seq += 1;
        for i in 0..o.nodes {
            let name = format!("sim{i}");
            Datagram {
                header: Header {
                    flags: 0,
                    channel,
                    sender: 0x5151_0000 + u64::from(i),
                },
                body: Body::Beacon(wire::Beacon {
                    seq,
                    node_kind: NodeKind::Component,
                    parent: 0,
                    name: &name,
                    endpoints: vec![],
                }),
            }
            .emit(&mut buf)
            .map_err(|e| e.to_string())?;
            let _ = sock.send_to(&buf, group);
            std::thread::sleep(Duration::from_millis(1000 / u64::from(o.nodes.max(1))));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: node run|resolve|identify|hostile|sim [options]");
        return ExitCode::from(2);
    };
    let o = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match cmd.as_str() {
        "run" => run(o),
        "resolve" => resolve(o),
        "identify" => {
            let name = o.rest.first().cloned().unwrap_or_default();
            Node::start(LocalNode::new("identify", NodeKind::Tool), o.cfg.clone())
                .map_err(|e| e.to_string())
                .and_then(|n| identify(&o, &n, &name))
        }
        "hostile" => hostile(o),
        "sim" => sim(o),
        c => Err(format!("unknown command {c}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
