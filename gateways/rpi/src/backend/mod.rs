//! GPIO backends behind `embedded-hal` 1.0 traits.
//!
//! A [`Backend`] hands out pins as `embedded-hal` objects ([`OutputPin`],
//! [`InputPin`], [`SetDutyCycle`], [`I2c`]); the gateway drives them through
//! the core's actuators and never sees the hardware. Two backends exist:
//!
//! - [`sim`]: in-memory pins that keep every pin's state, log changes and can
//!   be observed (the default off a Pi, and in tests);
//! - [`rppal`]: a Raspberry Pi through the `rppal` crate (hardware
//!   PWM on GPIO 12/13/18/19 when the channel is enabled, software PWM
//!   otherwise).
//!
//! [`select`] picks one: `--sim`, or automatically the simulator when the
//! machine is not a Raspberry Pi.
//!
//! # Input edges
//! A backend may also *watch* an input ([`Backend::watch`]): it then pushes
//! every edge of that pin, with the instant it happened, into an
//! [`EdgeSink`] — from any thread (rppal's interrupt thread, or the caller of
//! [`sim::SimBoard::set_input`]). The sink's [`EdgeQueue`] belongs to the
//! gateway: it is bounded (edges beyond [`EDGE_QUEUE_CAPACITY`] are counted,
//! not kept) and has a wake-up file descriptor ([`EdgeQueue::wake_fd`]) that
//! becomes readable when edges are queued, so a run loop can include it in
//! its `poll`. A backend that cannot watch returns `Ok(false)` (the default)
//! and the gateway polls that input instead.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;

pub mod rppal;
pub mod sim;

/// A backend error; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot do this (e.g. no I2C bus): the command is refused.
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked.
        what: String,
    },
    /// The operating system refused (permissions, busy pin, missing overlay).
    #[error("{0}")]
    Io(String),
}

/// Whether an input has a pull resistor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Floating input.
    None,
    /// Internal pull-up.
    Up,
}

/// Hands out pins as `embedded-hal` 1.0 objects. Dropping a pin releases it.
///
/// The gateway checks pin numbers (BCM 0–27) and ownership before asking, so
/// a backend never sees the same pin twice at once.
pub trait Backend {
    /// A push-pull output.
    type Output: OutputPin;
    /// A digital input.
    type Input: InputPin;
    /// A PWM output whose duty cycle is set through [`SetDutyCycle`].
    type Pwm: SetDutyCycle;
    /// The I2C bus.
    type I2c: I2c;

    /// Short name for logs and reports (`"sim"`, `"rppal"`).
    fn name(&self) -> &'static str;
    /// Configures `pin` as an output, driven low.
    ///
    /// # Errors
    /// [`Error::Io`] when the OS refuses the pin.
    fn output(&mut self, pin: u8) -> Result<Self::Output, Error>;
    /// Configures `pin` as an input.
    ///
    /// # Errors
    /// [`Error::Io`] when the OS refuses the pin.
    fn input(&mut self, pin: u8, pull: Pull) -> Result<Self::Input, Error>;
    /// Configures `pin` as a PWM output at `frequency_hz`, duty 0.
    ///
    /// # Errors
    /// [`Error::Io`] when the OS refuses the pin.
    fn pwm(&mut self, pin: u8, frequency_hz: u32) -> Result<Self::Pwm, Error>;
    /// Opens the I2C bus (bus 1 on a Pi).
    ///
    /// # Errors
    /// [`Error::Unsupported`]/[`Error::Io`] when there is no usable bus.
    fn i2c(&mut self) -> Result<Self::I2c, Error>;

    /// Starts pushing both edges of `input` (BCM `pin`) into `sink`, until
    /// `input` is dropped. Returns `Ok(false)` when this backend cannot watch
    /// inputs (the default): the caller then polls the pin.
    ///
    /// # Errors
    /// [`Error::Io`] when the OS refuses the interrupt; the caller may fall
    /// back to polling.
    fn watch(&mut self, pin: u8, input: &mut Self::Input, sink: EdgeSink) -> Result<bool, Error> {
        let _ = (pin, input, sink);
        Ok(false)
    }
}

/// Most edges an [`EdgeQueue`] holds; more are counted in
/// [`EdgeQueue::overflowed`] and dropped.
pub const EDGE_QUEUE_CAPACITY: usize = 1024;

/// One edge of a watched input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// BCM pin.
    pub pin: u8,
    /// The level after the edge (`true` = rising).
    pub level: bool,
    /// When it happened (as well as the backend knows).
    pub at: Instant,
    /// The watch it belongs to ([`EdgeSink::watch_id`]); edges of an older
    /// watch of the same pin are stale.
    pub watch_id: u32,
}

struct Shared {
    queue: Mutex<VecDeque<Edge>>,
    overflowed: AtomicU64,
    next_watch: AtomicU32,
    /// Write side of the wake-up pair (non-blocking).
    waker: Option<UnixStream>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Edge>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The receiving end of input edges, owned by the gateway.
pub struct EdgeQueue {
    shared: Arc<Shared>,
    /// Read side of the wake-up pair (non-blocking).
    wake: Option<UnixStream>,
}

impl fmt::Debug for EdgeQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeQueue")
            .field("queued", &self.shared.lock().len())
            .field("overflowed", &self.overflowed())
            .finish()
    }
}

impl Default for EdgeQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl EdgeQueue {
    /// An empty queue with a wake-up socket pair. If the pair cannot be made
    /// (out of file descriptors) the queue still works but has no
    /// [`wake_fd`](Self::wake_fd); a log line says so.
    pub fn new() -> Self {
        let pair = UnixStream::pair().and_then(|(r, w)| {
            r.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            Ok((r, w))
        });
        let (wake, waker) = match pair {
            Ok((r, w)) => (Some(r), Some(w)),
            Err(e) => {
                log::warn!("no wake-up socket for input edges ({e}); polling inputs");
                (None, None)
            }
        };
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                overflowed: AtomicU64::new(0),
                next_watch: AtomicU32::new(1),
                waker,
            }),
            wake,
        }
    }

    /// A new sink for one watch of `pin`, with a fresh
    /// [`watch_id`](EdgeSink::watch_id).
    pub fn sink(&self, pin: u8) -> EdgeSink {
        EdgeSink {
            shared: Arc::clone(&self.shared),
            pin,
            watch_id: self.shared.next_watch.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The file descriptor that is readable while edges may be queued, for a
    /// run loop's `poll` (`None` without a wake-up pair: then do not rely on
    /// edges, poll the inputs).
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.wake.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Takes every queued edge, oldest first, and clears the wake-up.
    pub fn drain(&self) -> Vec<Edge> {
        // Clear the wake-up first: an edge pushed after this makes it
        // readable again.
        if let Some(mut r) = self.wake.as_ref() {
            let mut buf = [0u8; 64];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        self.shared.lock().drain(..).collect()
    }

    /// Whether edges are queued.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().is_empty()
    }

    /// Edges dropped because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }
}

/// Where a backend pushes the edges of one watched pin; cheap to clone,
/// usable from any thread.
#[derive(Clone)]
pub struct EdgeSink {
    shared: Arc<Shared>,
    pin: u8,
    watch_id: u32,
}

impl fmt::Debug for EdgeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeSink")
            .field("pin", &self.pin)
            .field("watch_id", &self.watch_id)
            .finish()
    }
}

impl EdgeSink {
    /// The pin this sink is for.
    pub fn pin(&self) -> u8 {
        self.pin
    }

    /// Identifies this watch (edges carry it).
    pub fn watch_id(&self) -> u32 {
        self.watch_id
    }

    /// Queues an edge to `level` at `at` and wakes the queue's owner; counts
    /// it in [`EdgeQueue::overflowed`] instead when the queue is full.
    pub fn push(&self, level: bool, at: Instant) {
        {
            let mut q = self.shared.lock();
            if q.len() >= EDGE_QUEUE_CAPACITY {
                self.shared.overflowed.fetch_add(1, Ordering::Relaxed);
            } else {
                q.push_back(Edge {
                    pin: self.pin,
                    level,
                    at,
                    watch_id: self.watch_id,
                });
            }
        }
        if let Some(mut w) = self.shared.waker.as_ref() {
            // WouldBlock: the socket is full of wake-ups already, fine.
            let _ = w.write(&[1]);
        }
    }
}

/// Which backend [`select`] chose.
pub enum Selected {
    /// The simulator.
    Sim(sim::SimBackend),
    /// A Raspberry Pi.
    Rppal(self::rppal::RppalBackend),
}

/// Picks the backend: the simulator if `force_sim`, else rppal when this is a
/// Raspberry Pi, else the simulator (with a log line saying why).
///
/// # Errors
/// [`Error::Io`] if this is a Pi but its GPIO cannot be opened (not in the
/// `gpio` group?).
pub fn select(force_sim: bool) -> Result<Selected, Error> {
    if force_sim {
        log::info!(target: "banyan", "backend sim (--sim)");
        return Ok(Selected::Sim(sim::SimBackend::new(sim::SimBoard::new())));
    }
    match self::rppal::RppalBackend::new() {
        Ok(b) => {
            log::info!(target: "banyan", "backend rppal ({})", b.model());
            Ok(Selected::Rppal(b))
        }
        Err(self::rppal::OpenError::NotAPi(why)) => {
            log::warn!("not a Raspberry Pi ({why}); using the sim backend");
            Ok(Selected::Sim(sim::SimBackend::new(sim::SimBoard::new())))
        }
        Err(self::rppal::OpenError::Gpio(e)) => Err(e),
    }
}
