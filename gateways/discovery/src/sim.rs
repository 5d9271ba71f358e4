//! A simulated network for pool tests: several [`Pool`]s exchanging
//! datagrams in memory, with segments (multicast reaches only the sender's
//! segment, unicast reaches any address), loss and a fixed latency. Time is
//! simulated and jumps from one due action to the next, so tests are
//! deterministic for a given seed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::pool::{Config, Dest, Event, LocalNode, Pool};
use crate::Instant;

pub struct SimNode {
    pub pool: Pool,
    pub addr: SocketAddr,
    pub segment: u32,
    pub up: bool,
    /// Every event with its time.
    pub events: Vec<(Instant, Event)>,
    /// Every datagram it sent, with its time and size.
    pub sent: Vec<(Instant, Dest, usize)>,
}

pub struct Net {
    pub nodes: Vec<SimNode>,
    pub now: Instant,
    rng: u64,
    /// Percentage of datagrams lost (each copy independently).
    pub loss_percent: u64,
    /// Lose only beacons (kind 0x01), not the other datagrams.
    pub loss_beacons_only: bool,
    pub latency_ms: u64,
    in_flight: Vec<(Instant, usize, SocketAddr, Vec<u8>)>,
    /// Datagrams injected by the test: (to node, from, bytes).
    pub inject: Vec<(usize, SocketAddr, Vec<u8>)>,
}

impl Net {
    pub fn new(seed: u64) -> Net {
        Net {
            nodes: Vec::new(),
            now: Instant::from_millis(1_000),
            rng: seed | 1,
            loss_percent: 0,
            loss_beacons_only: false,
            latency_ms: 1,
            in_flight: Vec::new(),
            inject: Vec::new(),
        }
    }

    pub fn random(&mut self) -> u64 {
        crate::xorshift64star(&mut self.rng)
    }

    /// Adds a node on `segment` with address 10.0.<segment>.<n>; returns its index.
    pub fn add(&mut self, local: LocalNode, cfg: Config, segment: u32) -> usize {
        let n = self.nodes.len();
        let addr = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(10, 0, segment as u8, n as u8 + 1),
            40000 + n as u16,
        ));
        self.add_at(local, cfg, segment, addr)
    }

    pub fn add_at(
        &mut self,
        local: LocalNode,
        cfg: Config,
        segment: u32,
        addr: SocketAddr,
    ) -> usize {
        let id = self.random().max(1);
        let pool = Pool::new(local, cfg, id, self.now).unwrap();
        self.nodes.push(SimNode {
            pool,
            addr,
            segment,
            up: true,
            events: Vec::new(),
            sent: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn lose(&mut self, bytes: &[u8]) -> bool {
        if self.loss_beacons_only && bytes.get(3) != Some(&crate::wire::kind::BEACON) {
            return false;
        }
        self.loss_percent > 0 && self.random() % 100 < self.loss_percent
    }

    /// Runs until `now + ms`.
    pub fn run(&mut self, ms: u64) {
        let end = Instant::from_millis(self.now.millis() + ms);
        loop {
            for (to, from, bytes) in std::mem::take(&mut self.inject) {
                let now = self.now;
                if let Some(n) = self.nodes.get_mut(to) {
                    n.pool.handle(now, from, Some(n.segment), &bytes);
                }
            }
            // Deliver what has arrived.
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(t, ..)| *t <= now);
            self.in_flight = later;
            for (_, to, from, bytes) in due {
                let n = &mut self.nodes[to];
                if n.up {
                    n.pool.handle(now, from, Some(n.segment), &bytes);
                }
            }
            // Timers, transmits, events.
            for i in 0..self.nodes.len() {
                if !self.nodes[i].up {
                    continue;
                }
                self.nodes[i].pool.poll(now);
                while let Some(t) = self.nodes[i].pool.poll_transmit(now) {
                    let (from, seg) = (self.nodes[i].addr, self.nodes[i].segment);
                    self.nodes[i].sent.push((now, t.dest, t.bytes.len()));
                    let targets: Vec<usize> = match t.dest {
                        Dest::Pool => (0..self.nodes.len())
                            .filter(|&j| self.nodes[j].segment == seg)
                            .collect(),
                        Dest::To(a) => (0..self.nodes.len())
                            .filter(|&j| self.nodes[j].addr == a)
                            .collect(),
                    };
                    for j in targets {
                        if j != i && self.lose(&t.bytes) {
                            continue;
                        }
                        let at = Instant::from_millis(now.millis() + self.latency_ms);
                        self.in_flight.push((at, j, from, t.bytes.clone()));
                    }
                }
                while let Some(e) = self.nodes[i].pool.poll_event() {
                    self.nodes[i].events.push((now, e));
                }
            }
            // Next due action.
            let mut next = end;
            for n in self.nodes.iter().filter(|n| n.up) {
                next = next.min(n.pool.poll_at());
            }
            for (t, ..) in &self.in_flight {
                next = next.min(*t);
            }
            if self.now >= end {
                break;
            }
            self.now = next
                .max(Instant::from_millis(self.now.millis() + 1))
                .min(end);
        }
    }

    /// Every up node (other than tools) knows every other up non-tool node.
    pub fn converged(&self) -> bool {
        let ids: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.up && n.pool.local().kind != crate::NodeKind::Tool)
            .map(|n| n.pool.id())
            .collect();
        self.nodes.iter().filter(|n| n.up).all(|n| {
            let known: Vec<u64> = n.pool.peers().iter().map(|p| p.id).collect();
            ids.iter()
                .all(|id| *id == n.pool.id() || known.contains(id))
        })
    }
}
