//! The serial gateway: puts a microcontroller on the backplane over a UART,
//! USB CDC port or TCP socket (QEMU), using the core's serial
//! [`link`](banyan_core::link).
//!
//! - The device declares its subscriptions; the gateway subscribes to
//!   exactly those prefixes on the backplane (and unsubscribes when the
//!   device does; after a device reset it drops the old ones and applies the
//!   re-declared ones).
//! - Messages travel both ways with the msgpack payload bytes unchanged.
//!   Device payloads are checked to be one valid msgpack value first; an
//!   invalid one is dropped and counted.
//! - Flow control: the gateway never sends past the device's credits. A
//!   backplane message that finds no credit waits in a small bounded queue
//!   ([`BridgeConfig::queue_limit`]); when that is full it is dropped and
//!   counted. The backplane side is never blocked.
//! - Status: link state, device identity, subscriptions and every counter
//!   are published as a msgpack map on the status topic (default
//!   `serial_gateway_status`) on every state change, within
//!   [`BridgeConfig::fault_status_ms`] of a drop or error counter change,
//!   and every [`BridgeConfig::status_interval_ms`].
//! - Recovery: when the port or TCP endpoint goes away, the gateway re-opens
//!   it with backoff; the link re-handshakes and the subscriptions are
//!   restored. Corrupted bytes are dropped by the frame CRC and counted.
//!
//! - Services: the services the device declares are registered with the
//!   services broker ([`Config::services`], `<device name>.<service>`);
//!   requests go to the device as link REQUESTs and every one is answered
//!   exactly once, with the device's REPLY or an explicit, counted error
//!   (device reset or gone, link down, no reply in time). See
//!   `docs/serial-gateway.md`, "Services".
//!
//! - Fresh commands: control topics (`--conflate`, default `run_motors`)
//!   are conflated on the way in (a backlog is skipped to the newest
//!   command), a queued message for the device is replaced by a newer one
//!   on its topic, and nothing waits for credit longer than
//!   [`BridgeConfig::max_queue_age_ms`]; each such drop is counted
//!   ([`Counters::drop_stale`], the component's `stale`).
//!
//! The design is a sans-IO [`Bridge`] (link + subscriptions + counters,
//! unit-testable without ZeroMQ or a port) driven by the component's
//! [`banyan_component::driver`] — the run loop rpi-gateway uses
//! too: the device's fd and the backplane sockets, a timeout bounded by the
//! bridge's next timer, a bounded batch of backplane events per turn.
//! `docs/serial-gateway.md` is the operator guide.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod announce;
mod bridge;
mod serve;
pub mod transport;

#[cfg(test)]
mod test_wire;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_services;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

pub use bridge::{
    Action, Bridge, BridgeConfig, Counters, LinkGateway, LinkState, ServiceAction, TopicMap,
    NOT_FAULTS, STATUS_BURST, STATUS_MIN_GAP_MS, TX_FRAME,
};
pub use transport::{DeviceSpec, Transport};

use banyan_component::driver::{self, Driver, Handler, Ready, Watch};
use banyan_component::{self as component, Component};
use banyan_core::link::Instant;

/// Default baud rate.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Errors that stop the gateway (device problems never do: it retries).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backplane connection failed: check `-b`, `-p`, `-s`.
    #[error("backplane: {0}")]
    Component(#[from] component::Error),
}

/// Everything the run loop needs. `#[non_exhaustive]`: start from
/// [`Config::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The backplane connection. Its `conflate` list names the control
    /// topics (backplane names) of which only the newest queued message is
    /// forwarded (see [`banyan_component::driver`]).
    pub backplane: component::Config,
    /// The device.
    pub device: DeviceSpec,
    /// Baud rate for serial devices (ignored for TCP).
    pub baud: u32,
    /// Bridge settings (name, status topic, queue, link timing).
    pub bridge: BridgeConfig,
    /// First re-open delay after a failure; doubles up to
    /// [`Config::max_backoff`]. Default 100 ms.
    pub min_backoff: Duration,
    /// Longest re-open delay. Default 500 ms, so a device that comes back is
    /// reconnected within half a second.
    pub max_backoff: Duration,
    /// The run loop (batch of backplane events per turn, read budget,
    /// longest wait).
    pub driver: driver::Config,
    /// The services broker (`tcp://HOST:43126`) with which the device's
    /// services are registered (`docs/services.md`); `None` (the default of
    /// [`Config::new`]): the device's services are not offered.
    pub services: Option<String>,
    /// Announce the gateway, and the device while its link is up, in the
    /// discovery pool (docs/discovery.md; pool settings from the
    /// environment). Default true.
    pub discovery: bool,
}

impl Config {
    /// Defaults for `device` on the backplane described by `backplane`.
    pub fn new(backplane: component::Config, device: DeviceSpec) -> Config {
        let mut driver = driver::Config::default();
        driver.batch = BACKPLANE_BATCH;
        Config {
            backplane,
            device,
            baud: DEFAULT_BAUD,
            bridge: BridgeConfig::default(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            driver,
            services: None,
            discovery: true,
        }
    }
}

/// Backplane events handled per turn of the run loop at most, by default.
const BACKPLANE_BATCH: usize = 256;

/// Runs the gateway until `stop` is set (by a signal handler or a test).
/// Device errors never end it: it re-opens the device with backoff.
///
/// # Errors
/// [`Error`] when the backplane side fails.
pub fn run(config: Config, stop: &AtomicBool) -> Result<(), Error> {
    let mut comp = Component::connect(config.backplane.clone())?;
    // A session id that differs between runs.
    let session = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u32 ^ std::process::id().rotate_left(16))
        .unwrap_or_else(|_| std::process::id());
    // Give the backplane connection a moment (up to 1 s) so the device's
    // first messages are not published before it exists.
    let connect_deadline = StdInstant::now() + Duration::from_secs(1);
    while comp.link_state() != component::LinkState::Up
        && !stop.load(Ordering::Relaxed)
        && StdInstant::now() < connect_deadline
    {
        // Errors (EINTR from a signal) surface in the main loop if they last.
        let _ = comp.recv_event(Some(Duration::from_millis(50)));
    }
    let mut serial = Serial {
        announce: announce::Announce::new(
            &config.bridge.name,
            &config.bridge.status_topic,
            config.discovery,
        ),
        bridge: Bridge::new(session, config.bridge.clone()),
        config: &config,
        start: StdInstant::now(),
        transport: None,
        backoff: config.min_backoff,
        next_open: StdInstant::now(),
        out_buf: Vec::new(),
        frame: vec![0u8; TX_FRAME],
        rx: vec![0u8; 4096],
        last_open_error: String::new(),
        services: match &config.services {
            Some(endpoint) => match serve::Services::new(endpoint, &config.bridge.name) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("{}: services not offered: {e}", config.bridge.name);
                    None
                }
            },
            None => None,
        },
    };
    let mut driver = Driver::new(config.driver);
    driver.run(&mut comp, &mut serial, stop)?;
    log::info!("{}: stopping", config.bridge.name);
    Ok(())
}

/// The serial gateway as a [`Handler`] of the component driver: the bridge,
/// the device transport and its buffers.
struct Serial<'a> {
    config: &'a Config,
    bridge: Bridge,
    /// The origin of the link's clock.
    start: StdInstant,
    transport: Option<Box<dyn Transport>>,
    backoff: Duration,
    next_open: StdInstant,
    out_buf: Vec<u8>,
    frame: Vec<u8>,
    rx: Vec<u8>,
    last_open_error: String,
    /// The device's services on the broker (`Config::services`).
    services: Option<serve::Services>,
    /// The gateway and its device in the discovery pool.
    announce: announce::Announce,
}

impl Serial<'_> {
    /// The link's time for `at`.
    fn link_time(&self, at: StdInstant) -> Instant {
        let ms = at.saturating_duration_since(self.start).as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn name(&self) -> &str {
        &self.config.bridge.name
    }

    fn lose(&mut self, delay: Duration) {
        self.transport = None;
        self.bridge.transport_lost();
        self.apply_services();
        self.next_open = StdInstant::now() + delay;
    }

    /// Registrations and answers of the device's services (dropped when no
    /// broker is configured: then no request ever comes in).
    fn apply_services(&mut self) {
        match self.services.as_mut() {
            Some(s) => s.apply(&mut self.bridge),
            None => while self.bridge.take_service_action().is_some() {},
        }
    }

    fn open_if_due(&mut self) {
        if self.transport.is_some() || StdInstant::now() < self.next_open {
            return;
        }
        match transport::open(&self.config.device, self.config.baud) {
            Ok(t) => {
                log::info!("{}: opened {}", self.name(), self.config.device);
                self.transport = Some(t);
                self.bridge.transport_opened();
                self.backoff = self.config.min_backoff;
                self.last_open_error.clear();
                self.out_buf.clear();
            }
            Err(e) => {
                if e != self.last_open_error {
                    log::warn!("{}: {e}; retrying", self.name());
                    self.last_open_error = e;
                }
                self.next_open = StdInstant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.config.max_backoff);
            }
        }
    }

    /// Moves the frames due for the device to the output buffer and writes.
    fn flush_frames(&mut self, now: Instant) {
        if self.transport.is_some() {
            while self.out_buf.len() < 8192 {
                match self.bridge.poll_transmit(now, &mut self.frame) {
                    Some(n) => self
                        .out_buf
                        .extend_from_slice(self.frame.get(..n).unwrap_or_default()),
                    None => break,
                }
            }
        }
        self.write();
    }

    fn write(&mut self) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        if let Err(e) = write_some(t.as_mut(), &mut self.out_buf) {
            log::warn!("{}: write to device failed: {e}", self.name());
            self.lose(self.backoff);
        }
    }
}

impl Handler for Serial<'_> {
    fn tick(&mut self, comp: &mut Component, at: StdInstant) {
        self.open_if_due();
        // Timers, then frames due for the device.
        let now = self.link_time(at);
        self.bridge
            .set_loop_counters(comp.stats().stale, banyan_component::logging::lost());
        self.bridge.poll(now);
        apply_actions(&mut self.bridge, comp, &mut self.announce);
        self.announce.update(&self.bridge, comp.stats(), at);
        self.apply_services();
        self.flush_frames(now);
    }

    fn event(&mut self, comp: &mut Component, event: component::Event, at: StdInstant) {
        // What the device cannot take yet is queued (bounded) and counted by
        // the bridge.
        if let component::Event::Message(m) = event {
            let now = self.link_time(at);
            self.bridge.handle_backplane(&m.topic, &m.payload, now);
            apply_actions(&mut self.bridge, comp, &mut self.announce);
            self.apply_services();
        }
    }

    fn deadline(&self, now: StdInstant) -> Option<StdInstant> {
        let link_ms = self.bridge.poll_at().millis();
        let mut at = self.start + Duration::from_millis(link_ms);
        if self.transport.is_none() {
            at = at.min(self.next_open);
        }
        Some(at.max(now))
    }

    fn watch(&self, watches: &mut Vec<Watch>) {
        if let Some(t) = self.transport.as_ref() {
            watches.push(Watch {
                fd: t.fd(),
                read: true,
                write: !self.out_buf.is_empty(),
            });
        }
        if let Some(s) = self.services.as_ref() {
            watches.push(Watch::read(s.fd()));
        }
    }

    fn ready(&mut self, comp: &mut Component, index: usize, ready: Ready, at: StdInstant) {
        // Watches: the transport (if open), then the services' wake-up.
        if index == usize::from(self.transport.is_some()) {
            let now = self.link_time(at);
            if let Some(s) = self.services.as_mut() {
                s.take_requests(&mut self.bridge, now);
            }
            self.apply_services();
            self.flush_frames(now);
            return;
        }
        if ready.writable {
            self.write();
        }
        if !(ready.readable || ready.error) {
            return;
        }
        let now = self.link_time(at);
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        if let Err(e) = read_all(t.as_mut(), &mut self.rx, &mut self.bridge, now) {
            log::warn!("{}: device connection lost: {e}", self.name());
            self.lose(self.config.min_backoff);
            self.backoff = self.config.min_backoff;
        }
        apply_actions(&mut self.bridge, comp, &mut self.announce);
        self.apply_services();
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

fn write_some(t: &mut dyn Transport, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut done = 0;
    while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
        match t.write(rest) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "device closed",
                ))
            }
            Ok(n) => done += n,
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    buf.drain(..done);
    Ok(())
}

fn read_all(
    t: &mut dyn Transport,
    rx: &mut [u8],
    bridge: &mut Bridge,
    now: Instant,
) -> std::io::Result<()> {
    loop {
        match t.read(rx) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed by the device side",
                ))
            }
            Ok(n) => {
                bridge.handle_device_bytes(rx.get(..n).unwrap_or_default(), now);
                if n < rx.len() {
                    return Ok(());
                }
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn apply_actions(bridge: &mut Bridge, comp: &mut Component, announce: &mut announce::Announce) {
    let name = &bridge.config().name.clone();
    while let Some(a) = bridge.take_action() {
        let r = match &a {
            Action::Subscribe(t) => comp.subscribe(t),
            Action::Unsubscribe(t) => comp.unsubscribe(t),
            Action::Publish { topic, payload } => {
                announce.published(topic);
                comp.publish_raw(topic, payload)
            }
        };
        if let Err(e) = r {
            // Counted by the component (send queue full); never fatal.
            log::warn!("{name}: backplane: {a:?}: {e}");
        }
    }
}
