//! A pool node on a background thread: [`Node::start`] it, read its
//! [`events`](Node::events) and [`peers`](Node::peers) from any thread,
//! send messages and requests; dropping it says BYE and joins the thread.
//!
//! Use it when your program has no poll loop of its own to put the
//! [`Driver`]'s sockets in (most components); a program with one (the
//! native backplane's mio loop) can drive a [`Driver`] itself instead.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags};

use crate::driver::{self, Config, Driver, Error};
use crate::pool::{self, Event, LocalNode, Peer, Target};
use crate::{Interface, NodeKind};

/// Most events kept for a reader that does not keep up; more are counted
/// in [`Snapshot::events_dropped`].
pub const EVENT_CAPACITY: usize = 1024;

/// What a node knows, as of its last turn.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Known peers.
    pub peers: Vec<Peer>,
    /// Pool counters.
    pub pool: pool::Stats,
    /// Driver counters.
    pub driver: driver::Stats,
    /// Interfaces in use.
    pub interfaces: Vec<Interface>,
    /// Events the reader of [`Node::events`] did not take in time.
    pub events_dropped: u64,
}

enum Cmd {
    Send(Target, String, Vec<u8>, Sender<Result<(), pool::Error>>),
    Identify(Target, Sender<u32>),
    Query(Option<NodeKind>, String),
    SetIdentity(Vec<String>, Vec<String>, Vec<(String, u64)>),
}

struct Shared {
    snapshot: Mutex<Snapshot>,
    stop: AtomicBool,
}

/// A pool node running on its own thread (see the [module docs](self)).
#[derive(Debug)]
pub struct Node {
    id: u64,
    port: u16,
    shared: Arc<Shared>,
    cmds: Sender<Cmd>,
    wake: UnixDatagram,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Node {
    /// Opens the sockets (see [`Driver::new`]) and starts the thread.
    ///
    /// # Errors
    /// See [`Error`].
    pub fn start(local: LocalNode, cfg: Config) -> Result<Node, Error> {
        let driver = Driver::new(local, cfg)?;
        let id = driver.pool().id();
        let port = driver.port();
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        wake_rx.set_nonblocking(true)?;
        let (cmds, cmd_rx) = mpsc::channel();
        let (ev_tx, events) = mpsc::sync_channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Snapshot::default()),
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("discovery".into())
            .spawn(move || run(driver, sh, cmd_rx, ev_tx, wake_rx))?;
        let node = Node {
            id,
            port,
            shared,
            cmds,
            wake: wake_tx,
            events,
            thread: Some(thread),
        };
        Ok(node)
    }

    /// This node's instance id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pool port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Events (found, gone, duplicate names, messages, identities), up to
    /// [`EVENT_CAPACITY`] waiting.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// What the node knows now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared
            .snapshot
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The known peers.
    pub fn peers(&self) -> Vec<Peer> {
        self.snapshot().peers
    }

    /// Sends a message (see [`pool::Pool::send`]).
    ///
    /// # Errors
    /// The pool's validation error, or [`pool::Error::QueueFull`] if the
    /// node's thread has stopped.
    pub fn send(&self, to: Target, topic: &str, payload: &[u8]) -> Result<(), pool::Error> {
        let (tx, rx) = mpsc::channel();
        self.command(Cmd::Send(to, topic.to_owned(), payload.to_vec(), tx));
        rx.recv().unwrap_or(Err(pool::Error::QueueFull))
    }

    /// Asks for identities (see [`pool::Pool::identify`]); answers come as
    /// [`Event::Identity`] with the returned request id (0 if the node's
    /// thread has stopped).
    pub fn identify(&self, to: Target) -> u32 {
        let (tx, rx) = mpsc::channel();
        self.command(Cmd::Identify(to, tx));
        rx.recv().unwrap_or(0)
    }

    /// Sends a QUERY (see [`pool::Pool::query`]).
    pub fn query(&self, kind: Option<NodeKind>, name: &str) {
        self.command(Cmd::Query(kind, name.to_owned()));
    }

    /// Sets the topics and counters this node's identity reports.
    pub fn set_identity(
        &self,
        publishes: Vec<String>,
        subscribes: Vec<String>,
        counters: Vec<(String, u64)>,
    ) {
        self.command(Cmd::SetIdentity(publishes, subscribes, counters));
    }

    /// Says BYE and stops the thread (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn command(&self, c: Cmd) {
        if self.cmds.send(c).is_ok() {
            let _ = self.wake.send(&[1]);
        }
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(&[0]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    mut d: Driver,
    shared: Arc<Shared>,
    cmds: Receiver<Cmd>,
    events: SyncSender<Event>,
    wake: UnixDatagram,
) {
    let mut generation = u64::MAX;
    let mut dropped = 0u64;
    let mut last_stats = std::time::Instant::now();
    let mut buf = [0u8; 64];
    loop {
        while let Ok(c) = cmds.try_recv() {
            let now = d.now();
            match c {
                Cmd::Send(to, topic, payload, reply) => {
                    let _ = reply.send(d.pool_mut().send(now, &to, &topic, &payload));
                }
                Cmd::Identify(to, reply) => {
                    let _ = reply.send(d.pool_mut().identify(now, &to));
                }
                Cmd::Query(kind, name) => d.pool_mut().query(now, kind, &name),
                Cmd::SetIdentity(p, s, c) => d.pool_mut().set_identity(p, s, c),
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            d.leave();
            return;
        }
        d.run();
        while let Some(e) = d.poll_event() {
            match events.try_send(e) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => dropped = dropped.wrapping_add(1),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        let stale = last_stats.elapsed().as_millis() >= 200;
        if d.pool().generation() != generation || stale {
            generation = d.pool().generation();
            last_stats = std::time::Instant::now();
            let snap = Snapshot {
                peers: d.pool().peers().to_vec(),
                pool: *d.pool().stats(),
                driver: d.stats(),
                interfaces: d.interfaces(),
                events_dropped: dropped,
            };
            match shared.snapshot.lock() {
                Ok(mut s) => *s = snap,
                Err(p) => *p.into_inner() = snap,
            }
        }
        let timeout = d.timeout().min(std::time::Duration::from_millis(200));
        let [a, b] = d.as_fds();
        let mut fds = [
            PollFd::new(a.as_raw_fd(), PollFlags::POLLIN),
            PollFd::new(b.as_raw_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_raw_fd(), PollFlags::POLLIN),
        ];
        // +1: round up, so the timer is due when poll returns.
        let ms = i32::try_from(timeout.as_millis() + 1).unwrap_or(i32::MAX);
        match nix::poll::poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log::warn!("discovery: poll failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        while wake.recv(&mut buf).is_ok() {}
    }
}
