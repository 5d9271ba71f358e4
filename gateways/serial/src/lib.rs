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
//! The design is a sans-IO [`Bridge`] (link + subscriptions + counters,
//! unit-testable without ZeroMQ or a port) and a thin [`run`] loop that
//! polls the device's fd and the ZeroMQ sockets with a timeout bounded by
//! the bridge's next timer. `docs/serial-gateway.md` is the operator guide.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod bridge;
pub mod transport;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

pub use bridge::{
    Action, Bridge, BridgeConfig, Counters, LinkGateway, LinkState, NOT_FAULTS, TX_FRAME,
};
pub use transport::{DeviceSpec, Transport};

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
    /// A ZeroMQ poll failed.
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// Backplane events handled per turn of the run loop at most.
const BACKPLANE_BATCH: usize = 256;

/// Everything the run loop needs. `#[non_exhaustive]`: start from
/// [`Config::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The backplane connection.
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
}

impl Config {
    /// Defaults for `device` on the backplane described by `backplane`.
    pub fn new(backplane: component::Config, device: DeviceSpec) -> Config {
        Config {
            backplane,
            device,
            baud: DEFAULT_BAUD,
            bridge: BridgeConfig::default(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        }
    }
}

/// Runs the gateway until `stop` is set (by a signal handler or a test).
/// Device errors never end it: it re-opens the device with backoff.
///
/// # Errors
/// [`Error`] when the backplane side fails.
pub fn run(config: Config, stop: &AtomicBool) -> Result<(), Error> {
    let mut comp = Component::connect(config.backplane.clone())?;
    let start = StdInstant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    // A session id that differs between runs.
    let session = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u32 ^ std::process::id().rotate_left(16))
        .unwrap_or_else(|_| std::process::id());
    let mut bridge = Bridge::new(session, config.bridge.clone());
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
    let mut transport: Option<Box<dyn Transport>> = None;
    let mut backoff = config.min_backoff;
    let mut next_open = StdInstant::now();
    let mut out_buf: Vec<u8> = Vec::new();
    let mut frame = vec![0u8; TX_FRAME];
    let mut rx = vec![0u8; 4096];
    let mut last_open_error = String::new();

    while !stop.load(Ordering::Relaxed) {
        // (Re)open the device.
        if transport.is_none() && StdInstant::now() >= next_open {
            match transport::open(&config.device, config.baud) {
                Ok(t) => {
                    log::info!("{}: opened {}", config.bridge.name, config.device);
                    transport = Some(t);
                    bridge.transport_opened();
                    backoff = config.min_backoff;
                    last_open_error.clear();
                    out_buf.clear();
                }
                Err(e) => {
                    if e != last_open_error {
                        log::warn!("{}: {e}; retrying", config.bridge.name);
                        last_open_error = e;
                    }
                    next_open = StdInstant::now() + backoff;
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            }
        }

        // Timers, then frames due for the device.
        bridge.poll(now());
        apply_actions(&mut bridge, &mut comp);
        if transport.is_some() {
            while out_buf.len() < 8192 {
                match bridge.poll_transmit(now(), &mut frame) {
                    Some(n) => out_buf.extend_from_slice(&frame[..n]),
                    None => break,
                }
            }
        }
        if let Some(t) = transport.as_mut() {
            if let Err(e) = write_some(t.as_mut(), &mut out_buf) {
                log::warn!("{}: write to device failed: {e}", config.bridge.name);
                lose(&mut transport, &mut bridge, &mut next_open, backoff);
            }
        }

        // Wait for the device, the backplane or the next timer.
        let wake = {
            let link_ms = bridge.poll_at().millis();
            let now_ms = now().millis();
            let mut ms = link_ms.saturating_sub(now_ms);
            if transport.is_none() {
                let open_ms = next_open
                    .saturating_duration_since(StdInstant::now())
                    .as_millis() as u64;
                ms = ms.min(open_ms);
            }
            // Also wake now and then to notice `stop`.
            ms.clamp(0, 200) as i64
        };
        let (dev_ready, dev_writable) = {
            let mut items: Vec<zmq::PollItem<'_>> = comp.poll_items().into_iter().collect();
            if let Some(t) = transport.as_ref() {
                let mut ev = zmq::POLLIN;
                if !out_buf.is_empty() {
                    ev |= zmq::POLLOUT;
                }
                items.push(zmq::PollItem::from_fd(t.fd(), ev));
            }
            match zmq::poll(&mut items, wake) {
                Ok(_) => {}
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            match items.get(3) {
                Some(item) => (item.is_readable() || item.is_error(), item.is_writable()),
                None => (false, false),
            }
        };

        // Device → bridge.
        if dev_ready {
            if let Some(t) = transport.as_mut() {
                match read_all(t.as_mut(), &mut rx, &mut bridge, &now) {
                    Ok(()) => {}
                    Err(e) => {
                        log::warn!("{}: device connection lost: {e}", config.bridge.name);
                        lose(
                            &mut transport,
                            &mut bridge,
                            &mut next_open,
                            config.min_backoff,
                        );
                        backoff = config.min_backoff;
                    }
                }
            }
        }
        let _ = dev_writable; // the write at the top of the loop handles it

        // Backplane → bridge, a bounded batch per turn so that a flood of
        // messages cannot starve the device side and the link's timers
        // (what the device cannot take yet is queued and counted by the
        // bridge).
        for _ in 0..BACKPLANE_BATCH {
            match comp.try_recv_event() {
                Ok(Some(component::Event::Message(m))) => {
                    bridge.handle_backplane(&m.topic, &m.payload, now());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(component::Error::Zmq(zmq::Error::EINTR)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        apply_actions(&mut bridge, &mut comp);
    }
    log::info!("{}: stopping", config.bridge.name);
    Ok(())
}

fn lose(
    transport: &mut Option<Box<dyn Transport>>,
    bridge: &mut Bridge,
    next_open: &mut StdInstant,
    delay: Duration,
) {
    *transport = None;
    bridge.transport_lost();
    *next_open = StdInstant::now() + delay;
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
    while done < buf.len() {
        match t.write(&buf[done..]) {
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
    now: &dyn Fn() -> Instant,
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
                bridge.handle_device_bytes(&rx[..n], now());
                if n < rx.len() {
                    return Ok(());
                }
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn apply_actions(bridge: &mut Bridge, comp: &mut Component) {
    let name = &bridge.config().name.clone();
    while let Some(a) = bridge.take_action() {
        let r = match &a {
            Action::Subscribe(t) => comp.subscribe(t),
            Action::Unsubscribe(t) => comp.unsubscribe(t),
            Action::Publish { topic, payload } => comp.publish_raw(topic, payload),
        };
        if let Err(e) = r {
            // Counted by the component (send queue full); never fatal.
            log::warn!("{name}: backplane: {a:?}: {e}");
        }
    }
}
