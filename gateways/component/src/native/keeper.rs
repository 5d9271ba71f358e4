//! The keeper: one thread per process that looks after native connections
//! while their owners are not calling in. It reads what arrives for an
//! owner that is busy elsewhere (into the connection's bounded buffer, as
//! libzmq's I/O thread fills its receive queue, so a backplane does not
//! take a component that computes for a while for a stuck one), writes
//! the tail of a burst that waited [`LINGER`](super::conn::LINGER), sends
//! heartbeats, finishes connects and handshakes, and reconnects.
//!
//! It never stands between a caller and its socket: publishing and
//! receiving happen in the caller's thread, and a connection whose owner
//! is waiting in [`Native::wait`](super::Native::wait) or used it within
//! [`ATTENDED`] is left alone (no second thread woken per message). It
//! sleeps in `poll` until the earliest time some connection needs it, or
//! bytes arrive for an unattended one.
//!
//! When it reads bytes for a connection it wakes the owner through the
//! owner's wake socket, so that an owner that just started waiting on the
//! TCP socket does not miss data the keeper moved into the buffer.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::conn::Conn;

/// A connection its owner used this recently is the owner's to read.
pub(crate) const ATTENDED: Duration = Duration::from_millis(2);

/// A connection shared between its owner and the keeper.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) conn: Mutex<Conn>,
    /// When the keeper should look at it (nanoseconds since [`epoch`];
    /// `u64::MAX`: never).
    due: AtomicU64,
    /// When its owner last used it.
    touched: AtomicU64,
    /// Its owner is waiting in `poll` on it.
    pub(crate) waiting: AtomicBool,
    /// Written to when the keeper read bytes for the owner.
    wake: UnixStream,
}

impl Shared {
    pub(crate) fn new(conn: Conn, wake: UnixStream) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            due: AtomicU64::new(u64::MAX),
            touched: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            wake,
        });
        keeper().register(&shared);
        shared
    }

    /// Locks the connection for its owner.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.touched.store(nanos(Instant::now()), Ordering::Relaxed);
        match self.conn.lock() {
            Ok(g) => g,
            // A panic while holding it (none is expected) leaves a
            // connection that is still consistent enough to close.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Wakes the keeper to look at every connection again (what it polls
    /// for has changed).
    pub(crate) fn kick_keeper(&self) {
        keeper().kick();
    }

    /// Tells the keeper when to look at the connection next.
    pub(crate) fn set_due(&self, due: Option<Instant>) {
        let at = due.map_or(u64::MAX, nanos);
        // SeqCst pairs with the keeper's: either it sees this due, or we
        // see it computing (wake_at = MAX) or sleeping too long, and kick.
        self.due.store(at, Ordering::SeqCst);
        let k = keeper();
        if at < k.wake_at.load(Ordering::SeqCst) {
            k.kick();
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX - 1)
}

fn instant(n: u64) -> Instant {
    epoch() + Duration::from_nanos(n)
}

struct Keeper {
    conns: Mutex<Vec<Weak<Shared>>>,
    /// When the keeper thread wakes next (nanoseconds since [`epoch`];
    /// `u64::MAX` while it is deciding).
    wake_at: AtomicU64,
    /// Written to wake the keeper; read end polled by it.
    kick_tx: Option<UnixStream>,
    kick_rx: Option<UnixStream>,
    started: OnceLock<()>,
}

fn keeper() -> &'static Keeper {
    static KEEPER: OnceLock<Keeper> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let pair = UnixStream::pair().and_then(|(a, b)| {
            a.set_nonblocking(true)?;
            b.set_nonblocking(true)?;
            Ok((a, b))
        });
        let (kick_tx, kick_rx) = match pair {
            Ok((a, b)) => (Some(a), Some(b)),
            Err(e) => {
                log::error!("connection keeper: no wake socket ({e})");
                (None, None)
            }
        };
        Keeper {
            conns: Mutex::new(Vec::new()),
            wake_at: AtomicU64::new(u64::MAX),
            kick_tx,
            kick_rx,
            started: OnceLock::new(),
        }
    })
}

impl Keeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Shared>>> {
        match self.conns.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn register(&'static self, shared: &Arc<Shared>) {
        self.lock().push(Arc::downgrade(shared));
        self.started.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("banyan-keeper".into())
                .spawn(move || self.run());
            if let Err(e) = spawned {
                log::error!(
                    "cannot start the connection keeper thread ({e}): bursts are written \
                     on the next call and heartbeats only while the component is used"
                );
            }
        });
        self.kick();
    }

    fn kick(&self) {
        if let Some(tx) = &self.kick_tx {
            // A full socket already wakes the keeper.
            let _ = (&*tx).write(&[1]);
        }
    }

    fn run(&self) {
        let Some(kick_rx) = &self.kick_rx else {
            return;
        };
        let mut watched: Vec<Arc<Shared>> = Vec::new();
        let mut fds: Vec<PollFd> = Vec::new();
        loop {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
            let now = Instant::now();
            let now_n = nanos(now);
            let mut next = u64::MAX;
            let mut work = Vec::new();
            watched.clear();
            fds.clear();
            fds.push(PollFd::new(kick_rx.as_raw_fd(), PollFlags::POLLIN));
            {
                let mut conns = self.lock();
                conns.retain(|w| w.strong_count() > 0);
                for s in conns.iter().filter_map(Weak::upgrade) {
                    let due = s.due.load(Ordering::SeqCst);
                    if due <= now_n {
                        work.push(s);
                        continue;
                    }
                    next = next.min(due);
                    if s.waiting.load(Ordering::SeqCst) {
                        continue;
                    }
                    let touched = s.touched.load(Ordering::Relaxed);
                    let idle = now_n.saturating_sub(touched);
                    if idle < nanos_of(ATTENDED) {
                        // Look again when it becomes unattended.
                        next = next.min(touched.saturating_add(nanos_of(ATTENDED)));
                        continue;
                    }
                    let Ok(conn) = s.conn.try_lock() else {
                        next = next.min(now_n + nanos_of(ATTENDED));
                        continue;
                    };
                    if let Some((fd, read, write)) = conn.interest() {
                        // Unattended: read ahead, and write what waits for
                        // room in the socket (a publisher whose owner went
                        // on to other work after a burst).
                        let flags = super::poll_flags(read, write);
                        if !flags.is_empty() {
                            fds.push(PollFd::new(fd, flags));
                            drop(conn);
                            watched.push(s);
                        }
                    }
                }
            }
            if !work.is_empty() {
                for s in work {
                    Self::look_after(&s, now);
                }
                continue;
            }
            self.wake_at.store(next, Ordering::SeqCst);
            let timeout = if next == u64::MAX {
                -1
            } else {
                let left = instant(next).saturating_duration_since(Instant::now());
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            };
            if nix::poll::poll(&mut fds, timeout).is_err() {
                // EINTR: look again.
                continue;
            }
            let mut sink = [0u8; 64];
            while matches!((&*kick_rx).read(&mut sink), Ok(n) if n > 0) {}
            let now = Instant::now();
            for (s, p) in watched.iter().zip(fds.iter().skip(1)) {
                if p.revents().is_some_and(|r| !r.is_empty()) {
                    Self::look_after(s, now);
                }
            }
        }
    }

    fn look_after(s: &Shared, now: Instant) {
        let Ok(mut conn) = s.conn.try_lock() else {
            // The owner is using it right now.
            s.due
                .store(nanos(now + super::conn::LINGER), Ordering::SeqCst);
            return;
        };
        conn.progress(now);
        let woke = conn.read_any || conn.has_news();
        let due = conn.keeper_due().map_or(u64::MAX, nanos);
        s.due.store(due.max(nanos(now) + 1), Ordering::SeqCst);
        drop(conn);
        if woke {
            // A full wake socket already wakes the owner.
            let _ = (&s.wake).write(&[1]);
        }
    }
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
