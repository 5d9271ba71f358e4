//! The std driver of a [`Pool`]: its sockets, interfaces and clock, as a
//! non-blocking object you poll beside your own sockets ([`Driver`]). For a
//! background thread that does this for you, use [`crate::node::Node`].
//!
//! # Sockets
//!
//! - The **pool socket** is bound to `0.0.0.0:<pool port>` with
//!   `SO_REUSEADDR` (several nodes on one host share the port; multicast and
//!   broadcast reach them all) and joins [`GROUP`](crate::GROUP) on every
//!   selected interface.
//! - The **unicast socket** is bound to `0.0.0.0:0` (an ephemeral port of
//!   its own). Everything is sent from it, so answers, probes and messages
//!   by id come back to exactly this node. Multicast TTL is 1 (never leaves
//!   the link) and `IP_MULTICAST_LOOP` is on (nodes on one host see each
//!   other).
//!
//! # Interfaces
//!
//! By default every IPv4 interface that is up, loopback included (so nodes
//! on one host find each other with no network at all); or only those named
//! in [`Config::interfaces`]. The list is re-read every
//! [`Config::rescan_ms`] (Wi-Fi reconnects, DHCP). A datagram for the pool
//! is sent once per interface, with `IP_MULTICAST_IF` set to that
//! interface's address: its source address is the node's address *on that
//! interface*, which is what peers there put in place of the `0.0.0.0`
//! endpoint addresses. A received datagram is attributed to the interface
//! whose subnet contains its source address ([`crate::pool::Path`]).
//!
//! # Broadcast fallback
//!
//! [`Broadcast::Fallback`] (default): on an interface without
//! `IFF_MULTICAST`, or where joining the group or a multicast send fails,
//! the datagram goes to the interface's broadcast address instead.
//! [`Broadcast::Always`] sends both (for networks that silently drop
//! multicast); [`Broadcast::Never`] only multicast.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::iface::{self, Interface};
use crate::pool::{self, Dest, Event, LocalNode, Pool};
use crate::{wire, Instant};

/// When to use broadcast (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Broadcast {
    /// Multicast only.
    Never,
    /// Broadcast where multicast is unavailable or fails (default).
    #[default]
    Fallback,
    /// Both, always.
    Always,
}

/// Driver settings. `#[non_exhaustive]`: start from [`Config::default`],
/// [`Config::for_channel`] or [`Config::from_env`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The pool settings (channel, timing, seeds, limits).
    pub pool: pool::Config,
    /// Multicast group (default [`GROUP`](crate::GROUP)).
    pub group: Ipv4Addr,
    /// The pool port (default: [`channel_port`](crate::channel_port) of
    /// the channel).
    pub port: Option<u16>,
    /// Interface names to use (default empty: every IPv4 interface that is
    /// up, loopback included).
    pub interfaces: Vec<String>,
    /// Broadcast use (default [`Broadcast::Fallback`]).
    pub broadcast: Broadcast,
    /// Multicast TTL (default 1: the local link only).
    pub ttl: u32,
    /// Re-read the interfaces this often (default 5000 ms).
    pub rescan_ms: u64,
    /// Fault injection for tests: drop this percentage of received BEACONs
    /// before the pool sees them (default 0), counted in
    /// [`Stats::fault_dropped`]. Like a lossy Wi-Fi multicast.
    pub rx_beacon_loss_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_channel(crate::DEFAULT_CHANNEL)
    }
}

impl Config {
    /// The defaults on channel `channel`.
    pub fn for_channel(channel: &str) -> Config {
        Config {
            pool: pool::Config::for_channel(channel),
            group: crate::GROUP,
            port: None,
            interfaces: Vec::new(),
            broadcast: Broadcast::Fallback,
            ttl: 1,
            rescan_ms: 5000,
            rx_beacon_loss_percent: 0,
        }
    }

    /// The defaults, changed by the environment:
    /// `BANYAN_DISCOVERY_CHANNEL` (channel name),
    /// `BANYAN_DISCOVERY_SEEDS` (comma-separated `host[:port]`; the port
    /// defaults to the pool port), `BANYAN_DISCOVERY_INTERFACES`
    /// (comma-separated names).
    ///
    /// # Errors
    /// [`Error::Seed`] for a seed that does not resolve.
    pub fn from_env() -> Result<Config, Error> {
        let channel = std::env::var("BANYAN_DISCOVERY_CHANNEL")
            .unwrap_or_else(|_| crate::DEFAULT_CHANNEL.to_owned());
        let mut cfg = Config::for_channel(&channel);
        if let Ok(seeds) = std::env::var("BANYAN_DISCOVERY_SEEDS") {
            for s in seeds.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                cfg.add_seed(s)?;
            }
        }
        if let Ok(ifs) = std::env::var("BANYAN_DISCOVERY_INTERFACES") {
            cfg.interfaces = ifs
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        Ok(cfg)
    }

    /// The pool port: [`Config::port`] or the channel's.
    pub fn pool_port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| crate::channel_port(&self.pool.channel))
    }

    /// Adds a seed, `host` or `host:port` (port default: the pool port).
    ///
    /// # Errors
    /// [`Error::Seed`] if it does not resolve to an IPv4 address.
    pub fn add_seed(&mut self, seed: &str) -> Result<(), Error> {
        use std::net::ToSocketAddrs;
        let with_port = if seed.parse::<SocketAddr>().is_ok()
            || seed
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            seed.to_owned()
        } else {
            format!("{seed}:{}", self.pool_port())
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .ok_or_else(|| Error::Seed(seed.to_owned()))?;
        self.pool.seeds.push(addr);
        Ok(())
    }
}

/// A driver error; each says how to fix it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pool port cannot be bound.
    #[error("cannot bind the discovery pool port {port}: {source} (another program holds it without SO_REUSEADDR? choose another channel)")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        source: io::Error,
    },
    /// A named interface does not exist or has no IPv4 address.
    #[error("interface {0:?} not found or without an IPv4 address (see `ip -4 addr`)")]
    Interface(String),
    /// A seed does not resolve.
    #[error("seed {0:?} does not resolve to an IPv4 address (use host or host:port)")]
    Seed(String),
    /// The local node is invalid (name, endpoints).
    #[error("invalid local node: {0} (names are 1-32 bytes of UTF-8 without control characters)")]
    Pool(#[from] pool::Error),
    /// Another socket error.
    #[error("discovery socket error: {0}")]
    Io(#[from] io::Error),
}

/// Driver counters (the pool's are in [`pool::Stats`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Multicast datagrams sent (one per interface per pool datagram).
    pub multicast_sent: u64,
    /// Broadcast datagrams sent.
    pub broadcast_sent: u64,
    /// Unicast datagrams sent.
    pub unicast_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Sends that failed (network unreachable, no route…).
    pub send_errors: u64,
    /// Receives that failed.
    pub recv_errors: u64,
    /// Group joins that failed.
    pub join_errors: u64,
    /// Beacons dropped by [`Config::rx_beacon_loss_percent`].
    pub fault_dropped: u64,
    /// Datagrams received (both sockets).
    pub received: u64,
    /// Pool-port datagrams from the link of an interface not selected
    /// (with [`Config::interfaces`]), ignored.
    pub other_interface: u64,
}

impl Stats {
    /// Every counter with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("multicast_sent", self.multicast_sent),
            ("broadcast_sent", self.broadcast_sent),
            ("unicast_sent", self.unicast_sent),
            ("bytes_sent", self.bytes_sent),
            ("send_errors", self.send_errors),
            ("recv_errors", self.recv_errors),
            ("join_errors", self.join_errors),
            ("fault_dropped", self.fault_dropped),
            ("received", self.received),
            ("other_interface", self.other_interface),
        ]
        .into_iter()
    }
}

#[derive(Debug)]
struct IfaceState {
    iface: Interface,
    /// Multicast usable on it (joined, no send error yet).
    multicast: bool,
}

/// A pool with its sockets; non-blocking (see the [module docs](self)).
///
/// Use: put [`Driver::as_fds`] in your poll set, wait at most
/// [`Driver::timeout`], then call [`Driver::run`] and read
/// [`Driver::poll_event`].
#[derive(Debug)]
pub struct Driver {
    pool: Pool,
    cfg: Config,
    port: u16,
    group_sock: UdpSocket,
    uni: UdpSocket,
    ifaces: Vec<IfaceState>,
    /// Interfaces up but not selected (with an explicit interface list).
    others: Vec<Interface>,
    origin: std::time::Instant,
    next_scan: Instant,
    stats: Stats,
    rng: u64,
    buf: Vec<u8>,
}

/// A random non-zero instance id (std's per-process random hash keys, the
/// pid and the time).
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish().max(1)
}

/// This host's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

impl Driver {
    /// Opens the sockets, joins the group on the selected interfaces and
    /// starts the pool for `local` (host and pid filled in when empty).
    ///
    /// # Errors
    /// See [`Error`].
    pub fn new(mut local: LocalNode, cfg: Config) -> Result<Driver, Error> {
        if local.host.is_empty() {
            local.host = host_name();
        }
        if local.pid == 0 {
            local.pid = std::process::id();
        }
        let port = cfg.pool_port();
        let g = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        g.set_reuse_address(true)?;
        // Only this socket's memberships count (not those of other nodes
        // in this host that use other interfaces).
        g.set_multicast_all_v4(false)?;
        g.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
            .map_err(|source| Error::Bind { port, source })?;
        g.set_nonblocking(true)?;
        let group_sock: UdpSocket = g.into();
        let u = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        u.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
        u.set_nonblocking(true)?;
        u.set_multicast_ttl_v4(cfg.ttl)?;
        u.set_multicast_loop_v4(true)?;
        u.set_broadcast(true)?;
        let uni: UdpSocket = u.into();
        let id = random_id();
        let pool = Pool::new(local, cfg.pool.clone(), id, Instant::ZERO)?;
        let mut d = Driver {
            pool,
            port,
            group_sock,
            uni,
            ifaces: Vec::new(),
            others: Vec::new(),
            origin: std::time::Instant::now(),
            next_scan: Instant::ZERO,
            stats: Stats::default(),
            rng: id ^ 0x5851_f42d_4c95_7f2d,
            buf: vec![0; wire::MAX_DATAGRAM + 1],
            cfg,
        };
        d.scan()?;
        for want in &d.cfg.interfaces {
            if !d.ifaces.iter().any(|s| &s.iface.name == want) {
                return Err(Error::Interface(want.clone()));
            }
        }
        Ok(d)
    }

    /// Milliseconds since the driver started, as the pool's clock.
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    /// The two sockets, to wait on for readability.
    pub fn as_fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.group_sock.as_fd(), self.uni.as_fd()]
    }

    /// How long to wait at most before the next [`Driver::run`].
    pub fn timeout(&self) -> Duration {
        let at = self.pool.poll_at().min(self.next_scan);
        Duration::from_millis(at.millis_since(self.now()))
    }

    /// Does all that is due: reads every waiting datagram, runs the pool's
    /// timers, re-reads the interfaces when due, sends what is queued.
    /// Never blocks. Errors are counted in [`Stats`].
    pub fn run(&mut self) {
        self.receive();
        let now = self.now();
        if now >= self.next_scan {
            let _ = self.scan();
        }
        self.pool.poll(now);
        self.flush();
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pool.poll_event()
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool, to send messages or requests (then call [`Driver::run`]).
    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// The interfaces in use.
    pub fn interfaces(&self) -> Vec<Interface> {
        self.ifaces.iter().map(|s| s.iface.clone()).collect()
    }

    /// The interface with OS index `index`, if in use.
    pub fn interface(&self, index: u32) -> Option<&Interface> {
        self.ifaces
            .iter()
            .map(|s| &s.iface)
            .find(|i| i.index == index)
    }

    /// The pool port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unicast socket's address (`0.0.0.0:<its port>`).
    pub fn unicast_addr(&self) -> io::Result<SocketAddr> {
        self.uni.local_addr()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Leaves the pool: sends BYE now.
    pub fn leave(&mut self) {
        let now = self.now();
        self.pool.leave(now);
        self.flush();
    }

    fn scan(&mut self) -> Result<(), Error> {
        self.next_scan = Instant::from_millis(self.now().millis() + self.cfg.rescan_ms.max(100));
        let list = iface::list()?;
        let wanted =
            |i: &Interface| self.cfg.interfaces.is_empty() || self.cfg.interfaces.contains(&i.name);
        let (list, others): (Vec<Interface>, Vec<Interface>) = list.into_iter().partition(wanted);
        self.others = others;
        // Keep state for interfaces that did not change.
        let mut next = Vec::with_capacity(list.len());
        for iface in list {
            if let Some(i) = self.ifaces.iter().position(|s| s.iface == iface) {
                next.push(self.ifaces.swap_remove(i));
                continue;
            }
            let sock = SockRef::from(&self.group_sock);
            let multicast = match sock.join_multicast_v4(&self.cfg.group, &iface.addr) {
                Ok(()) => true,
                // Already joined on this interface (an address change).
                Err(e) if e.raw_os_error() == Some(nix::libc::EADDRINUSE) => true,
                Err(e) => {
                    self.stats.join_errors = self.stats.join_errors.wrapping_add(1);
                    log::debug!(
                        "discovery: cannot join {} on {}: {e}",
                        self.cfg.group,
                        iface.name
                    );
                    false
                }
            };
            next.push(IfaceState { iface, multicast });
        }
        for gone in &self.ifaces {
            let _ = SockRef::from(&self.group_sock)
                .leave_multicast_v4(&self.cfg.group, &gone.iface.addr);
        }
        self.ifaces = next;
        Ok(())
    }

    fn iface_of(&self, ip: IpAddr) -> Option<u32> {
        let IpAddr::V4(ip) = ip else {
            return None;
        };
        let ifaces = || self.ifaces.iter().map(|s| &s.iface);
        // Prefer an exact address match (our own host), then a subnet.
        ifaces()
            .find(|i| i.addr == ip)
            .or_else(|| ifaces().find(|i| i.loopback && ip.is_loopback()))
            .or_else(|| ifaces().find(|i| !i.loopback && i.contains(ip)))
            .map(|i| i.index)
    }

    /// A source on the link of an interface that is up but not selected:
    /// a broadcast or multicast from there.
    fn on_other_interface(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else {
            return false;
        };
        self.others
            .iter()
            .any(|i| (!i.loopback || ip.is_loopback()) && i.contains(ip))
    }

    fn random(&mut self) -> u64 {
        crate::xorshift64star(&mut self.rng)
    }

    fn receive(&mut self) {
        // At most this many per socket per run, so a flood cannot starve
        // the timers.
        const MAX_PER_RUN: usize = 256;
        for which in 0..2 {
            for _ in 0..MAX_PER_RUN {
                let sock = if which == 0 {
                    &self.group_sock
                } else {
                    &self.uni
                };
                let (n, src) = match sock.recv_from(&mut self.buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.stats.recv_errors = self.stats.recv_errors.wrapping_add(1);
                        break;
                    }
                };
                self.stats.received = self.stats.received.wrapping_add(1);
                let bytes = self.buf.get(..n).unwrap_or_default();
                if self.cfg.rx_beacon_loss_percent > 0
                    && bytes.get(wire::field::KIND) == Some(&wire::kind::BEACON)
                {
                    let drop = (self.random() % 100) < u64::from(self.cfg.rx_beacon_loss_percent);
                    if drop {
                        self.stats.fault_dropped = self.stats.fault_dropped.wrapping_add(1);
                        continue;
                    }
                }
                let iface = self.iface_of(src.ip());
                if which == 0 && iface.is_none() && self.on_other_interface(src.ip()) {
                    self.stats.other_interface = self.stats.other_interface.wrapping_add(1);
                    continue;
                }
                let now = self.now();
                let bytes = self.buf.get(..n).unwrap_or_default();
                self.pool.handle(now, src, iface, bytes);
            }
        }
    }

    fn flush(&mut self) {
        let now = self.now();
        while let Some(t) = self.pool.poll_transmit(now) {
            match t.dest {
                Dest::To(addr) => {
                    let ok = self.uni.send_to(&t.bytes, addr).is_ok();
                    self.count_send(ok, t.bytes.len(), |s| &mut s.unicast_sent);
                }
                Dest::Pool => {
                    let group = SocketAddr::V4(SocketAddrV4::new(self.cfg.group, self.port));
                    for i in 0..self.ifaces.len() {
                        let Some(st) = self.ifaces.get(i) else { break };
                        let (addr, brd, can_mc) = (
                            st.iface.addr,
                            st.iface.broadcast,
                            st.multicast && (st.iface.multicast || st.iface.loopback),
                        );
                        let mut mc_ok = false;
                        if can_mc {
                            let sock = SockRef::from(&self.uni);
                            mc_ok = sock.set_multicast_if_v4(&addr).is_ok()
                                && self.uni.send_to(&t.bytes, group).is_ok();
                            self.count_send(mc_ok, t.bytes.len(), |s| &mut s.multicast_sent);
                        }
                        let bcast = match self.cfg.broadcast {
                            Broadcast::Never => false,
                            Broadcast::Fallback => !mc_ok,
                            Broadcast::Always => true,
                        };
                        if let (true, Some(b)) = (bcast, brd) {
                            let ok = self
                                .uni
                                .send_to(&t.bytes, SocketAddr::V4(SocketAddrV4::new(b, self.port)))
                                .is_ok();
                            self.count_send(ok, t.bytes.len(), |s| &mut s.broadcast_sent);
                        }
                    }
                }
            }
        }
    }

    fn count_send(&mut self, ok: bool, len: usize, which: impl FnOnce(&mut Stats) -> &mut u64) {
        if ok {
            let c = which(&mut self.stats);
            *c = c.wrapping_add(1);
            self.stats.bytes_sent = self.stats.bytes_sent.wrapping_add(len as u64);
        } else {
            self.stats.send_errors = self.stats.send_errors.wrapping_add(1);
        }
    }
}
