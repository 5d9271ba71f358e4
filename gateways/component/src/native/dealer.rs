//! A native ZMTP DEALER: one TCP connection to a ROUTER (the services
//! broker) that the caller's own thread reads and writes, like the
//! component's native connections ([`crate::Transport::Native`]): no I/O
//! thread between [`Dealer::send`] / [`Dealer::recv`] and the socket.
//!
//! What it keeps from the component's connections: reconnect by itself
//! (from [`DealerOptions::reconnect`], doubling up to
//! [`DealerOptions::reconnect_max`]), a send queue counted in messages
//! (`false` from [`Dealer::send`] past the high-water mark), messages sent
//! while the peer is away kept queued and sent once it is back, heartbeats
//! (a peer silent for [`DealerOptions::heartbeat_timeout`] counts as gone
//! even without a FIN), read-ahead by the per-process keeper thread while
//! the owner is busy elsewhere, and link changes ([`Link`]).
//!
//! ```no_run
//! use banyan_component::dealer::{Dealer, DealerOptions};
//! use std::time::{Duration, Instant};
//!
//! let mut d = Dealer::connect_endpoint("tcp://127.0.0.1:43126", &DealerOptions::default())?;
//! assert!(d.send(&[b"hello", b"world"]));
//! let mut frames = Vec::new();
//! let deadline = Instant::now() + Duration::from_secs(1);
//! while !d.recv(&mut frames) && Instant::now() < deadline {
//!     d.wait(Some(deadline))?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::conn::{Change, Conn, Next, Role, Settings};
use super::keeper::Shared;

/// Settings of a [`Dealer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DealerOptions {
    /// Messages queued towards the peer at most (0: no limit). Default
    /// 100,000.
    pub send_hwm: usize,
    /// Largest message accepted (larger ones are skipped and counted in
    /// [`DealerCounters::oversize`]). Default 64 MiB.
    pub max_message: usize,
    /// Received bytes kept unread at most before reading stops
    /// (backpressure). Default 64 MiB.
    pub recv_buffer: usize,
    /// Time between our `PING`s when the peer is silent; zero: none (and no
    /// dead-peer detection). Default 1 s.
    pub heartbeat_interval: Duration,
    /// Silence after which the peer counts as gone. Default 3 s.
    pub heartbeat_timeout: Duration,
    /// First reconnect interval. Default 50 ms.
    pub reconnect: Duration,
    /// Longest reconnect interval. Default 1 s.
    pub reconnect_max: Duration,
}

impl Default for DealerOptions {
    fn default() -> Self {
        DealerOptions {
            send_hwm: 100_000,
            max_message: 64 << 20,
            recv_buffer: 64 << 20,
            heartbeat_interval: crate::DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: crate::DEFAULT_HEARTBEAT_TIMEOUT,
            reconnect: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
        }
    }
}

/// A change of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connected and handshake done.
    Up,
    /// An established connection was lost (why); a new one is being made.
    Down(String),
}

/// Counters of a [`Dealer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DealerCounters {
    /// Connections established.
    pub connects: u64,
    /// Established connections lost.
    pub disconnects: u64,
    /// Connections closed because the peer stopped answering heartbeats.
    pub heartbeat_expired: u64,
    /// Messages cut off mid-write by a broken connection (lost).
    pub lost: u64,
    /// Received messages over [`DealerOptions::max_message`], skipped.
    pub oversize: u64,
    /// Messages refused by [`Dealer::send`] at the high-water mark.
    pub refused: u64,
}

/// A DEALER connection (see the [module docs](self)).
pub struct Dealer {
    conn: Arc<Shared>,
    wake: UnixStream,
    endpoint: String,
    refused: u64,
    /// Link changes taken from the connection, for [`Dealer::take_link`]
    /// (the last [`LINKS_KEPT`]).
    links: VecDeque<Link>,
}

/// Link changes kept for [`Dealer::take_link`] at most (the oldest go).
const LINKS_KEPT: usize = 16;

impl std::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dealer")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Splits `tcp://host:port` (host may be `[v6]`) into host and port.
///
/// # Errors
/// `InvalidInput` for another scheme or a missing or bad port.
pub fn parse_endpoint(endpoint: &str) -> io::Result<(String, u16)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{endpoint}: {why}"));
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or_else(|| bad("only tcp:// endpoints are supported"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" {
        return Err(bad("no host"));
    }
    Ok((host.to_owned(), port))
}

impl Dealer {
    /// Starts connecting to `host:port` (in the background: this does not
    /// wait for the peer; messages sent meanwhile are queued).
    ///
    /// # Errors
    /// When the address does not resolve or the wake socket cannot be made.
    pub fn connect(host: &str, port: u16, options: &DealerOptions) -> io::Result<Dealer> {
        let now = Instant::now();
        let endpoint = format!("tcp://{host}:{port}");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = (host, port).to_socket_addrs()?.collect();
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let settings = Settings {
            reconnect: options.reconnect,
            reconnect_max: options.reconnect_max.max(options.reconnect),
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            send_hwm: options.send_hwm,
            max_message: options.max_message,
            recv_buffer: options.recv_buffer.max(64 * 1024),
        };
        let conn = Conn::new(Role::Dealer, endpoint.clone(), addrs, settings, now);
        let dealer = Dealer {
            conn: Shared::new(conn, wake_tx),
            wake,
            endpoint,
            refused: 0,
            links: VecDeque::new(),
        };
        dealer.with(|c, now| c.progress(now));
        Ok(dealer)
    }

    /// [`Dealer::connect`] to a `tcp://host:port` endpoint.
    ///
    /// # Errors
    /// As [`Dealer::connect`], and [`parse_endpoint`]'s.
    pub fn connect_endpoint(endpoint: &str, options: &DealerOptions) -> io::Result<Dealer> {
        let (host, port) = parse_endpoint(endpoint)?;
        Dealer::connect(&host, port, options)
    }

    /// The endpoint, `tcp://host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn with<R>(&self, f: impl FnOnce(&mut Conn, Instant) -> R) -> R {
        let mut c = self.conn.lock();
        let r = f(&mut c, Instant::now());
        self.conn.set_due(c.keeper_due());
        r
    }

    /// Queues a message of `frames` (written at once, or with the next
    /// write when a burst is being sent); `false` at the high-water mark
    /// (nothing queued; counted in [`DealerCounters::refused`]).
    pub fn send(&mut self, frames: &[&[u8]]) -> bool {
        let ok = self.with(|c, now| c.send(now, frames));
        if !ok {
            self.refused += 1;
        }
        ok
    }

    /// Takes the next received message into `frames` (replacing them)
    /// without blocking; `false` when none is there.
    pub fn recv(&mut self, frames: &mut Vec<Vec<u8>>) -> bool {
        self.with(|c, now| {
            if !c.is_up() {
                c.progress(now);
            }
            loop {
                frames.clear();
                match c.next_message(now, frames, true) {
                    Next::Message => return true,
                    // Counted in the connection's `oversize`.
                    Next::Oversize { .. } => continue,
                    Next::Empty => return false,
                }
            }
        })
    }

    /// The next change of the connection (of the last 16).
    pub fn take_link(&mut self) -> Option<Link> {
        let mut c = self.conn.lock();
        Self::take_changes(&mut c, &mut self.links);
        drop(c);
        self.links.pop_front()
    }

    /// Moves the connection's changes to `links`, so that changes nobody
    /// asks for do not count as news for [`Dealer::wait`].
    fn take_changes(c: &mut Conn, links: &mut VecDeque<Link>) {
        while let Some(ch) = c.take_change() {
            if links.len() >= LINKS_KEPT {
                links.pop_front();
            }
            links.push_back(match ch {
                Change::Up => Link::Up,
                Change::Down(why) => Link::Down(why),
            });
        }
    }

    /// Connected, handshake done.
    pub fn is_up(&self) -> bool {
        self.with(|c, _| c.is_up())
    }

    /// Messages queued and not yet wholly written.
    pub fn queued(&self) -> usize {
        self.with(|c, _| c.queued())
    }

    /// Counters.
    pub fn counters(&self) -> DealerCounters {
        let c = self.with(|c, _| c.counters());
        DealerCounters {
            connects: c.connects,
            disconnects: c.disconnects,
            heartbeat_expired: c.heartbeat_expired,
            lost: c.lost,
            oversize: c.oversize,
            refused: self.refused,
        }
    }

    /// A descriptor that becomes readable when the keeper thread read
    /// something for us while we were not waiting in [`Dealer::wait`], for
    /// an external poll loop: after it is readable, call [`Dealer::recv`]
    /// until `false`. It may lag a few milliseconds behind the socket
    /// ([`Dealer::wait`] does not).
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Waits until something may have arrived (a message, a link change),
    /// a timer of the connection is due, or `deadline` passed (`None`: no
    /// deadline). Returns `true` when a signal interrupted the wait.
    ///
    /// # Errors
    /// When `poll` fails other than by a signal.
    pub fn wait(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        self.wait_with(deadline, None)
    }

    /// [`Dealer::wait`], also returning when `extra` (a descriptor of the
    /// caller's) is readable.
    ///
    /// # Errors
    /// As [`Dealer::wait`].
    pub fn wait_with(
        &mut self,
        deadline: Option<Instant>,
        extra: Option<RawFd>,
    ) -> io::Result<bool> {
        let now = Instant::now();
        let mut fds: Vec<PollFd> = Vec::with_capacity(2);
        let mut wake_at = deadline;
        let news;
        {
            let mut c = self.conn.lock();
            c.progress(now);
            Self::take_changes(&mut c, &mut self.links);
            news = c.read_any || c.has_news();
            if let Some((fd, r, w)) = c.interest() {
                fds.push(PollFd::new(fd, super::poll_flags(r, w)));
            }
            if let Some(d) = c.due() {
                wake_at = Some(wake_at.map_or(d, |w| w.min(d)));
            }
            self.conn.set_due(c.keeper_due());
        }
        fds.push(PollFd::new(self.wake.as_raw_fd(), PollFlags::POLLIN));
        if let Some(fd) = extra {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let timeout = super::poll_timeout(news, wake_at, now);
        self.conn.waiting.store(true, Ordering::SeqCst);
        let polled = nix::poll::poll(&mut fds, timeout);
        self.conn.waiting.store(false, Ordering::SeqCst);
        let interrupted = match polled {
            Ok(_) => false,
            Err(nix::errno::Errno::EINTR) => true,
            Err(e) => return Err(e.into()),
        };
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        self.with(|c, now| c.progress(now));
        Ok(interrupted)
    }
}

impl Drop for Dealer {
    fn drop(&mut self) {
        let mut c = self.conn.lock();
        c.retire(Instant::now(), "dealer dropped");
        self.conn.set_due(None);
        drop(c);
        self.conn.kick_keeper();
    }
}

#[cfg(all(test, feature = "libzmq"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn router() -> (zmq::Context, zmq::Socket, u16) {
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::ROUTER).unwrap();
        s.set_linger(0).unwrap();
        s.bind("tcp://127.0.0.1:0").unwrap();
        let ep = s.get_last_endpoint().unwrap().unwrap();
        let port = ep.rsplit_once(':').unwrap().1.parse().unwrap();
        (ctx, s, port)
    }

    fn recv_within(d: &mut Dealer, frames: &mut Vec<Vec<u8>>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if d.recv(frames) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            d.wait(Some(deadline)).unwrap();
        }
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("tcp://127.0.0.1:5").unwrap(),
            ("127.0.0.1".into(), 5)
        );
        assert_eq!(parse_endpoint("tcp://[::1]:7").unwrap(), ("::1".into(), 7));
        assert!(parse_endpoint("ipc:///x").is_err());
        assert!(parse_endpoint("tcp://host").is_err());
        assert!(parse_endpoint("tcp://host:x").is_err());
        assert!(parse_endpoint("tcp://*:5").is_err());
    }

    #[test]
    fn round_trips_with_a_libzmq_router() {
        let (_ctx, router, port) = router();
        let mut d = Dealer::connect("127.0.0.1", port, &DealerOptions::default()).unwrap();
        // Queued before the connection is up, sent once it is.
        assert!(d.send(&[b"a", b"", b"ccc"]));
        router.set_rcvtimeo(5000).unwrap();
        let got = router.recv_multipart(0).unwrap();
        assert_eq!(got.len(), 4, "identity + 3 frames");
        assert_eq!(&got[1..], &[b"a".to_vec(), vec![], b"ccc".to_vec()]);
        let mut frames = Vec::new();
        for i in 0..100u32 {
            let body = i.to_be_bytes();
            router
                .send_multipart([&got[0][..], b"reply", &body[..]], 0)
                .unwrap();
            assert!(recv_within(&mut d, &mut frames, Duration::from_secs(5)));
            assert_eq!(frames, vec![b"reply".to_vec(), body.to_vec()]);
            assert!(d.send(&[&body]));
            let back = router.recv_multipart(0).unwrap();
            assert_eq!(back[1], body);
        }
        assert!(d.is_up());
        assert_eq!(d.take_link(), Some(Link::Up));
        let c = d.counters();
        assert_eq!((c.connects, c.disconnects, c.lost), (1, 0, 0));
    }

    #[test]
    fn reconnects_to_a_new_router_on_the_same_port() {
        let (ctx, router, port) = router();
        let mut d = Dealer::connect("127.0.0.1", port, &DealerOptions::default()).unwrap();
        assert!(d.send(&[b"one"]));
        router.set_rcvtimeo(5000).unwrap();
        assert_eq!(router.recv_multipart(0).unwrap()[1], b"one");
        drop(router);
        let mut frames = Vec::new();
        // Wait for the loss to be seen.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut down = false;
        while !down && Instant::now() < deadline {
            d.wait(Some(deadline)).unwrap();
            while let Some(l) = d.take_link() {
                down |= matches!(l, Link::Down(_));
            }
        }
        assert!(down, "the dealer saw the router go");
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        // The old listener closes in libzmq's I/O thread: retry a while.
        let bound = Instant::now() + Duration::from_secs(5);
        while let Err(e) = router.bind(&format!("tcp://127.0.0.1:{port}")) {
            assert!(Instant::now() < bound, "rebind: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        router.set_rcvtimeo(5000).unwrap();
        assert!(d.send(&[b"two"]));
        assert_eq!(router.recv_multipart(0).unwrap()[1], b"two");
        assert!(!recv_within(&mut d, &mut frames, Duration::from_millis(1)));
        assert!(d.counters().connects >= 2);
    }

    #[test]
    fn an_idle_link_to_a_libzmq_router_stays_up_on_heartbeats() {
        let (_ctx, router, port) = router();
        let o = DealerOptions {
            // Generous against scheduling delays on a loaded machine (a
            // 100 ms timeout expired once under load 8 on 2 cores).
            heartbeat_interval: Duration::from_millis(20),
            heartbeat_timeout: Duration::from_millis(500),
            ..DealerOptions::default()
        };
        let mut d = Dealer::connect("127.0.0.1", port, &o).unwrap();
        assert!(d.send(&[b"hello"]));
        router.set_rcvtimeo(5000).unwrap();
        let got = router.recv_multipart(0).unwrap();
        // Idle for four heartbeat timeouts: the router answers our PINGs.
        let until = Instant::now() + Duration::from_millis(2000);
        while Instant::now() < until {
            d.wait(Some(until)).unwrap();
        }
        let c = d.counters();
        assert_eq!((c.connects, c.disconnects, c.heartbeat_expired), (1, 0, 0));
        router
            .send_multipart([&got[0][..], b"still here"], 0)
            .unwrap();
        let mut frames = Vec::new();
        assert!(recv_within(&mut d, &mut frames, Duration::from_secs(5)));
        assert_eq!(frames, vec![b"still here".to_vec()]);
    }

    #[test]
    fn refuses_a_peer_that_is_not_a_router() {
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::PUB).unwrap();
        s.set_linger(0).unwrap();
        s.bind("tcp://127.0.0.1:0").unwrap();
        let ep = s.get_last_endpoint().unwrap().unwrap();
        let mut d = Dealer::connect_endpoint(&ep, &DealerOptions::default()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            d.wait(Some(deadline)).unwrap();
        }
        assert!(!d.is_up());
        assert_eq!(d.take_link(), None);
        assert_eq!(d.counters().connects, 0);
    }

    #[test]
    fn counts_sends_refused_at_the_high_water_mark() {
        // A port that takes TCP connections (the kernel's backlog) but never
        // answers the greeting: the link never comes up, sends queue. (A
        // dropped libzmq ROUTER's port may still accept for a moment.)
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let o = DealerOptions {
            send_hwm: 2,
            ..DealerOptions::default()
        };
        let mut d = Dealer::connect("127.0.0.1", port, &o).unwrap();
        assert!(d.send(&[b"1"]));
        assert!(d.send(&[b"2"]));
        assert!(!d.send(&[b"3"]));
        assert_eq!(d.counters().refused, 1);
        assert_eq!(d.queued(), 2);
    }
}
