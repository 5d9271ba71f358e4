//! One run loop for every gateway: a [`Component`], extra file descriptors
//! (a serial port, an input-edge wake-up), a deadline, a bounded batch of
//! events per turn and a stop flag.
//!
//! A gateway implements [`Handler`] (its sans-IO core plus the I/O on its
//! own descriptors) and calls [`Driver::run`]. Every turn:
//!
//! 1. [`Handler::tick`] with the clock read once: timers (deadman, link
//!    heartbeats), outputs, writes.
//! 2. Up to [`Config::batch`] backplane events, read with
//!    [`Component::recv_batch`] (at most [`Config::read_budget`] messages
//!    read): [`Handler::event`] for each, with the time it is handled. The
//!    batch bound means a flood of messages cannot hold off `tick`, and with
//!    it a deadman.
//! 3. One wait (`zmq_poll`) on the component's sockets and the handler's
//!    descriptors ([`Handler::watch`]) until the handler's
//!    [`deadline`](Handler::deadline), at most [`Config::max_wait`] (so the
//!    stop flag is seen); no wait at all while events are still queued.
//!    A signal (`EINTR`) ends the turn early and is counted.
//! 4. [`Handler::ready`] for each descriptor that is ready.
//!
//! # Fresh commands
//! A deadman counts from when a command is *handled*. Any queue in front of
//! the handler (the component's receive queue, the backplane's queue per
//! subscriber, the sender's own queue) delays commands, and a delayed
//! command restarts the deadman late. The component's `conflate` list
//! ([`crate::Config::conflate`]) names the control topics (e.g.
//! `run_motors`) for which only the newest queued message matters: the batch
//! read skips the older ones unparsed (counted as [`crate::Stats::stale`]),
//! and the read budget lets a turn drain thousands of them, so the handler
//! keeps up with any rate the backplane can deliver and never applies a
//! command that a newer one has already replaced. `docs/rpi-gateway.md`
//! ("Fresh commands") has the figures and the limits.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::component::{Component, Error, Event, Result};

/// Which readiness to wait for on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The descriptor (owned by the handler; it must stay open for the turn).
    pub fd: RawFd,
    /// Wait until it is readable.
    pub read: bool,
    /// Wait until it is writable.
    pub write: bool,
}

impl Watch {
    /// Wait until `fd` is readable.
    pub fn read(fd: RawFd) -> Watch {
        Watch {
            fd,
            read: true,
            write: false,
        }
    }
}

/// What a watched descriptor is ready for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable (or closed: a read returns 0 or an error).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// An error or hang-up condition; a read or write will report it.
    pub error: bool,
}

/// A gateway's side of the run loop. All methods get the component, so
/// they can publish.
pub trait Handler {
    /// Runs timers and outputs at `now` (read once per turn).
    fn tick(&mut self, comp: &mut Component, now: Instant);

    /// One backplane event, handled at `now`.
    fn event(&mut self, comp: &mut Component, event: Event, now: Instant);

    /// When [`tick`](Handler::tick) must run next if nothing arrives;
    /// `None`: only [`Config::max_wait`] bounds the wait.
    fn deadline(&self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }

    /// Appends the descriptors to wait on this turn.
    fn watch(&self, watches: &mut Vec<Watch>) {
        let _ = watches;
    }

    /// The descriptor `watches[index]` of this turn is ready.
    fn ready(&mut self, comp: &mut Component, index: usize, ready: Ready, now: Instant) {
        let _ = (comp, index, ready, now);
    }
}

/// Settings of a [`Driver`]. `#[non_exhaustive]`: start from
/// [`Config::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Backplane events handled per turn at most. Default 64.
    pub batch: usize,
    /// Messages read from the component per turn at most (conflated ones
    /// are skipped cheaply, so this is much larger than `batch`). Default
    /// 16,384.
    pub read_budget: usize,
    /// Longest wait in one turn, so that the stop flag is checked.
    /// Default 50 ms.
    pub max_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch: 64,
            read_budget: 16_384,
            max_wait: Duration::from_millis(50),
        }
    }
}

/// Counters of a [`Driver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Turns run.
    pub turns: u64,
    /// Backplane events handed to the handler.
    pub events: u64,
    /// Turns that ended their batch with events still queued.
    pub busy_turns: u64,
    /// Waits interrupted by a signal.
    pub interrupted: u64,
}

/// The run loop. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Driver {
    config: Config,
    stats: Stats,
    events: Vec<crate::Event>,
    watches: Vec<Watch>,
}

impl Driver {
    /// A driver with `config`.
    pub fn new(config: Config) -> Driver {
        Driver {
            config,
            ..Driver::default()
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs turns until `stop` is set.
    ///
    /// # Errors
    /// [`Error::Transport`] when the component fails (signals are not
    /// errors: they end a turn early).
    pub fn run<H: Handler>(
        &mut self,
        comp: &mut Component,
        handler: &mut H,
        stop: &AtomicBool,
    ) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.turn(comp, handler)?;
        }
        Ok(())
    }

    /// One turn (see the [module docs](self)).
    ///
    /// # Errors
    /// As [`Driver::run`].
    pub fn turn<H: Handler>(&mut self, comp: &mut Component, handler: &mut H) -> Result<()> {
        self.stats.turns += 1;
        handler.tick(comp, Instant::now());

        let mut events = std::mem::take(&mut self.events);
        let batch = comp.recv_batch(self.config.batch, self.config.read_budget, &mut events);
        self.stats.events += events.len() as u64;
        for event in events.drain(..) {
            handler.event(comp, event, Instant::now());
        }
        self.events = events;
        let busy = match batch {
            Ok(b) => b.events > 0 || !b.drained,
            Err(Error::Interrupted) => {
                self.stats.interrupted += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if busy {
            self.stats.busy_turns += 1;
        }

        let now = Instant::now();
        let wait = if busy {
            Duration::ZERO
        } else {
            handler
                .deadline(now)
                .map_or(self.config.max_wait, |d| d.saturating_duration_since(now))
                .min(self.config.max_wait)
        };
        // Round up so a sub-millisecond remainder does not spin.
        let ms = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
        self.watches.clear();
        handler.watch(&mut self.watches);
        let mut ready = Vec::with_capacity(self.watches.len());
        match wait_on(comp, &self.watches, ms, &mut ready) {
            Ok(()) => {}
            Err(Error::Interrupted) => {
                self.stats.interrupted += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for (i, r) in ready {
            handler.ready(comp, i, r, now);
        }
        Ok(())
    }
}

/// Waits up to `ms` on the component's transport and `watches`; appends
/// the ready watches (index, readiness) to `ready`.
fn wait_on(
    comp: &mut Component,
    watches: &[Watch],
    ms: i64,
    ready: &mut Vec<(usize, Ready)>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
    if comp.wait(watches, Some(deadline), ready)? {
        return Err(Error::Interrupted);
    }
    Ok(())
}
