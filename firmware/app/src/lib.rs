//! # banyan-firmware-app
//!
//! The board-independent part of the banyan-rs firmware. A board crate
//! (`boards/qemu`, `boards/pico`) sets up clocks, the UART and the pins, builds
//! a [`Robot`] from its motors and LEDs, then calls [`App::poll`] in its main
//! loop with the current time in milliseconds. Everything here is `no_std`,
//! allocation-free and tested on the host with fake UARTs and pins.
//!
//! What the application does:
//!
//! - runs the **device side of the serial link** ([`banyan_core::link`]) over
//!   the UART: HELLO with the device's name, firmware version and capacities,
//!   subscriptions [`RUN_MOTORS`](robot::RUN_MOTORS) and
//!   [`LIGHT_LEDS`](robot::LIGHT_LEDS), heartbeats and credits;
//! - hands each `run_motors` / `light_leds` payload to the core's robot
//!   ([`banyan_core::robot`], re-exported as [`robot`]) — the same code
//!   rpi-gateway runs — and publishes on the report topic
//!   `from_<device name>` the report it writes: `{"report": "state", ...}`
//!   after every change, `{"report": "error", "topic": ..., "reason": ...,
//!   "command": ...}` for every refused command; and every
//!   `stats_interval_ms` a `{"report": "stats", ...}` with every error and
//!   drop counter;
//! - with the `services` feature (the QEMU board enables it; the Pico's
//!   flash budget leaves no room), declares the services `info` and `state`
//!   and answers their requests (`docs/services.md`, "Devices on the serial
//!   link"): `info` with `{"report": "info", "name", "version",
//!   "uptime_ms", <the stats counters>}`, `state` with the state report;
//!   any other name with the link's UNKNOWN_SERVICE status;
//! - stops the motors when no `run_motors` arrives within the deadman timeout
//!   or a timed run ends, and when the link goes down (the gateway went
//!   away: `stopped_by: link_lost`).
//!
//! Layers:
//! - [`io`]: non-blocking byte pumping with counters; [`clock`]: a
//!   millisecond clock from a 32-bit microsecond counter.
//! - [`robot`]: commands → actuators → report payloads (the core's).
//! - [`App`]: the link, the robot and the UART tied together.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod io;
pub use banyan_core::robot;

use banyan_core::actuator::{self, SetBrightness, SetSpeed};
use banyan_core::link::{self, device::Event, Device, Instant};
use core::fmt;
use embedded_io::{Read, ReadReady, Write, WriteReady};
use heapless::String;

pub use robot::Robot;
use robot::StoppedBy;

/// Largest link frame the device accepts (COBS-encoded, delimiter excluded).
pub const FRAME: usize = 256;
/// Receive-queue slots of [`FRAME`] bytes: the credits granted to the gateway.
pub const QUEUE: usize = 4;
/// Bytes of outgoing PUBLISHes the link may hold.
pub const LINK_TX: usize = 512;
/// Subscription table size.
pub const SUBS: usize = 4;
/// Capacity of the UART transmit queue (at least one whole frame).
pub const TX_CAPACITY: usize = 512;
/// Largest report payload.
pub const REPORT_CAPACITY: usize = 288;

/// The service answering `{"report": "info", "name", "version",
/// "uptime_ms", <counters>}` (feature `services`).
pub const SERVICE_INFO: &str = "info";
/// The service answering the robot's state report (feature `services`).
pub const SERVICE_STATE: &str = "state";

/// UART reads of up to [`io::READ_CHUNK`] bytes per [`App::poll`].
pub const MAX_READS_PER_POLL: usize = 8;

/// The device end of the link as the firmware sizes it.
pub type LinkDevice = Device<FRAME, LINK_TX, QUEUE, SUBS>;

/// Bytes one outgoing frame may take: the largest report on the longest
/// report topic, plus the PUBLISH overhead and COBS' worst case.
const FRAME_OUT: usize = REPORT_CAPACITY + 5 + link::wire::MAX_NAME_LEN + 16;

/// What the board tells the application about itself.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Device name sent in HELLO (≤ 32 bytes); reports go to `from_<name>`.
    pub name: &'static str,
    /// Firmware version sent in HELLO (≤ 16 bytes).
    pub version: &'static str,
    /// This boot's session id: must differ on every boot.
    pub session: u32,
    /// Link timing.
    pub link: link::Config,
    /// Period of the `{"report": "stats", ...}` report while the link is up,
    /// in ms; 0 sends none.
    pub stats_interval_ms: u32,
}

/// Why the application could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The name or version is too long for HELLO or the report topic.
    Identity,
    /// The subscription table is too small.
    Subscribe,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Identity => "device name or version too long",
            Error::Subscribe => "subscription table too small",
        })
    }
}

impl core::error::Error for Error {}

/// Counters of the application; every drop is counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// UART byte counters.
    pub io: io::Stats,
    /// Reports published.
    pub reports_sent: u32,
    /// Reports the link refused (down, no credit, queue full); also counted
    /// by the link.
    pub reports_dropped: u32,
    /// Reports larger than [`REPORT_CAPACITY`] (not sent).
    pub reports_too_large: u32,
    /// Times the link came up.
    pub link_ups: u32,
    /// Times the link went down (motors stopped each time).
    pub link_downs: u32,
}

/// The firmware application: link + robot + UART pump.
pub struct App<M: SetSpeed, L, const NM: usize, const NL: usize> {
    device: LinkDevice,
    #[cfg(feature = "services")]
    version: &'static str,
    robot: Robot<M, L, NM, NL>,
    tx: io::TxQueue<TX_CAPACITY>,
    report_topic: String<{ 5 + link::wire::MAX_NAME_LEN }>,
    stats: Stats,
    stats_interval_ms: u32,
    next_stats_ms: u64,
}

impl<M, L, P, D, const NM: usize, const NL: usize> App<M, L, NM, NL>
where
    M: SetSpeed<Error = actuator::Error<P, D>>,
    L: SetBrightness,
{
    /// Starts the application with `robot`'s motors and LEDs; the link
    /// starts saying HELLO at the first [`poll`](App::poll).
    ///
    /// # Errors
    /// [`Error::Identity`] for a name longer than 32 bytes or a version
    /// longer than 16 bytes.
    pub fn new(config: &Config, robot: Robot<M, L, NM, NL>) -> Result<Self, Error> {
        let mut device = LinkDevice::new(config.name, config.version, config.session, config.link)
            .map_err(|_| Error::Identity)?;
        for topic in [robot::RUN_MOTORS, robot::LIGHT_LEDS] {
            device.subscribe(topic).map_err(|_| Error::Subscribe)?;
        }
        #[cfg(feature = "services")]
        for service in [SERVICE_INFO, SERVICE_STATE] {
            device.serve(service).map_err(|_| Error::Subscribe)?;
        }
        let mut report_topic = String::new();
        report_topic
            .push_str("from_")
            .and_then(|()| report_topic.push_str(config.name))
            .map_err(|_| Error::Identity)?;
        Ok(Self {
            device,
            #[cfg(feature = "services")]
            version: config.version,
            robot,
            tx: io::TxQueue::new(),
            report_topic,
            stats: Stats::default(),
            stats_interval_ms: config.stats_interval_ms,
            next_stats_ms: u64::from(config.stats_interval_ms),
        })
    }

    /// The topic reports are published on: `from_<device name>`.
    pub fn report_topic(&self) -> &str {
        &self.report_topic
    }

    /// Application counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The link (state and its counters).
    pub fn link(&self) -> &LinkDevice {
        &self.device
    }

    /// The robot (motor speeds, LED levels, command counters).
    pub fn robot(&self) -> &Robot<M, L, NM, NL> {
        &self.robot
    }

    /// Stops every motor now (for a board shutting down: `stopped_by:
    /// exit`).
    pub fn stop_motors(&mut self) {
        self.robot.stop_motors(StoppedBy::Exit);
    }

    /// Runs one step at `now_ms`: reads what the UART has ready and handles
    /// it, runs the deadman and the link timers, and writes what the UART can
    /// take. Never blocks and never panics; UART errors are counted and the
    /// step goes on.
    pub fn poll<U>(&mut self, now_ms: u64, uart: &mut U)
    where
        U: Read + ReadReady + Write + WriteReady,
    {
        let now = Instant::from_millis(now_ms);
        let mut buf = [0u8; io::READ_CHUNK];
        // Bounded, so a flood of input cannot starve the deadman and the
        // transmitter: the rest waits in the UART FIFO for the next poll.
        for _ in 0..MAX_READS_PER_POLL {
            match uart.read_ready() {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    self.count_uart_error();
                    break;
                }
            }
            match uart.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.stats.io.rx_bytes = self.stats.io.rx_bytes.wrapping_add(n as u32);
                    // `get`: a HAL claiming more bytes than fit is an error, not a panic.
                    match buf.get(..n) {
                        Some(chunk) => self.feed(chunk, now),
                        None => {
                            self.count_uart_error();
                            break;
                        }
                    }
                }
                Err(_) => {
                    self.count_uart_error();
                    break;
                }
            }
        }
        if self.robot.poll(now_ms) {
            self.publish_state(now);
        }
        if let Some(ev) = self.device.poll(now) {
            self.on_event(ev, now);
        }
        if self.stats_interval_ms > 0 && now_ms >= self.next_stats_ms {
            self.next_stats_ms = now_ms + u64::from(self.stats_interval_ms);
            self.publish_stats(now);
        }
        // Commands left waiting for room (see `take_commands`).
        if self.device.queued() > 0 {
            self.take_commands(now);
        }
        self.transmit(now, uart);
    }

    /// When [`poll`](App::poll) must run again at the latest if no byte
    /// arrives (the sooner of the link's and the deadman's deadlines), in ms.
    pub fn poll_at(&self) -> u64 {
        let link = self.device.poll_at().millis();
        self.robot.poll_at().map_or(link, |d| d.min(link))
    }

    fn count_uart_error(&mut self) {
        self.stats.io.uart_errors = self.stats.io.uart_errors.wrapping_add(1);
    }

    fn feed(&mut self, mut input: &[u8], now: Instant) {
        loop {
            let (ev, rest) = self.device.handle_rx(input, now);
            input = rest;
            match ev {
                Some(ev) => self.on_event(ev, now),
                None => break,
            }
        }
    }

    fn on_event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Up { .. } => {
                self.stats.link_ups = self.stats.link_ups.wrapping_add(1);
                #[cfg(feature = "defmt")]
                defmt::info!("link up");
                self.publish_state(now);
            }
            Event::Down => {
                self.stats.link_downs = self.stats.link_downs.wrapping_add(1);
                #[cfg(feature = "defmt")]
                defmt::warn!("link down: motors stopped");
                self.robot.stop_motors(StoppedBy::LinkLost);
            }
            Event::Received => self.take_commands(now),
            _ => {}
        }
    }

    /// Handles the queued commands, publishing the report each calls for.
    /// While the link is up, a command is taken only when its report can be
    /// queued (credit and send-buffer room for the largest report): the
    /// others wait in the receive queue, which holds back the gateway's
    /// credits, instead of their reports being dropped. `poll` comes back
    /// for them.
    fn take_commands(&mut self, now: Instant) {
        let mut report = [0u8; REPORT_CAPACITY];
        loop {
            if self.device.is_up() && !self.device.can_publish(&self.report_topic, REPORT_CAPACITY)
            {
                break;
            }
            let Some(msg) = self.device.recv() else {
                break;
            };
            #[cfg(feature = "services")]
            if let Some(req) = msg.request() {
                let (id, service) = (
                    req.id,
                    [SERVICE_INFO, SERVICE_STATE]
                        .iter()
                        .position(|s| *s == req.service),
                );
                drop(msg); // frees the slot before the reply takes a credit
                let (status, n) = match self.answer(service, now.millis(), &mut report) {
                    Some(Ok(n)) => (link::wire::status::OK, n),
                    Some(Err(_)) => (link::wire::status::FAILED, 0),
                    None => (link::wire::status::UNKNOWN_SERVICE, 0),
                };
                let body = report.get(..n).unwrap_or_default();
                if self.device.reply(id, status, body, now).is_err() {
                    self.stats.reports_dropped = self.stats.reports_dropped.wrapping_add(1);
                }
                continue;
            }
            let outcome = self
                .robot
                .handle(now.millis(), msg.topic(), msg.payload(), &mut report);
            drop(msg); // frees the slot: the gateway gets its credit back
            match outcome {
                robot::Outcome::Changed(n) | robot::Outcome::Refused(n) => {
                    self.publish_slice(&report, n, now);
                }
                robot::Outcome::Unchanged => {}
                robot::Outcome::ReportTooLarge => {
                    self.stats.reports_too_large = self.stats.reports_too_large.wrapping_add(1);
                }
            }
        }
    }

    /// The reply body of a request for service `index` (0 = `info`, 1 =
    /// `state`) in `out`: `None` for a service the device does not serve,
    /// `Err` when the body does not fit.
    #[cfg(feature = "services")]
    fn answer(
        &self,
        index: Option<usize>,
        now_ms: u64,
        out: &mut [u8],
    ) -> Option<Result<usize, banyan_core::msg::Error>> {
        match index? {
            0 => Some(self.write_stats(now_ms, true, out)),
            _ => Some(self.robot.state_report(out)),
        }
    }

    fn publish_state(&mut self, now: Instant) {
        let mut report = [0u8; REPORT_CAPACITY];
        match self.robot.state_report(&mut report) {
            Ok(n) => self.publish_slice(&report, n, now),
            Err(_) => self.stats.reports_too_large = self.stats.reports_too_large.wrapping_add(1),
        }
    }

    /// Writes `{"report": "stats", ...}`: uptime and every error and drop
    /// counter of the UART, the link, the commands and the reports.
    ///
    /// # Errors
    /// [`banyan_core::msg::Error::BufferFull`] when `out` is too small.
    pub fn stats_report(
        &self,
        now_ms: u64,
        out: &mut [u8],
    ) -> Result<usize, banyan_core::msg::Error> {
        self.write_stats(now_ms, false, out)
    }

    /// The stats report, or with `info` the reply of the `info` service:
    /// `report: "info"` and the device's name and version added.
    fn write_stats(
        &self,
        now_ms: u64,
        info: bool,
        out: &mut [u8],
    ) -> Result<usize, banyan_core::msg::Error> {
        // The keys in a constant table and the values in a `u32` array:
        // smaller code than a list of (key, u64) pairs built at run time.
        // The robot's counters come whole from the core (`Stats::FIELDS`).
        const KEYS: [&str; 9] = [
            "uart_errors",
            "tx_dropped",
            "frames_dropped",
            "seq_gaps",
            "malformed",
            "publish_lost",
            "send_refused",
            "reports_dropped",
            "link_downs",
        ];
        let link = self.device.stats();
        let values: [u32; 9] = [
            self.stats.io.uart_errors,
            self.stats.io.tx_dropped,
            link.frame.dropped(),
            link.seq_gaps,
            link.malformed,
            link.publish_lost,
            link.send_refused(),
            self.stats
                .reports_dropped
                .saturating_add(self.stats.reports_too_large),
            self.stats.link_downs,
        ];
        let robot = self.robot.stats().values();
        let fields = banyan_core::robot::Stats::FIELDS;
        let mut w = banyan_core::msg::Writer::new(out);
        if info {
            #[cfg(feature = "services")]
            {
                w.map(KEYS.len() + fields.len() + 4)?
                    .str("report")?
                    .str("info")?;
                // The report topic is `from_<name>`.
                let name = self.report_topic.get(5..).unwrap_or("");
                w.str("name")?
                    .str(name)?
                    .str("version")?
                    .str(self.version)?;
            }
        } else {
            w.map(KEYS.len() + fields.len() + 2)?
                .str("report")?
                .str("stats")?;
        }
        w.str("uptime_ms")?.uint(now_ms)?;
        for (k, v) in KEYS.iter().zip(values) {
            w.str(k)?.uint(v.into())?;
        }
        for (k, v) in fields.iter().zip(robot) {
            w.str(k)?.uint(v.into())?;
        }
        Ok(w.len())
    }

    fn publish_stats(&mut self, now: Instant) {
        let mut report = [0u8; REPORT_CAPACITY];
        match self.stats_report(now.millis(), &mut report) {
            Ok(n) => self.publish_slice(&report, n, now),
            Err(_) => self.stats.reports_too_large = self.stats.reports_too_large.wrapping_add(1),
        }
    }

    /// Publishes the first `n` bytes of `buf` (an encoder's output).
    fn publish_slice(&mut self, buf: &[u8], n: usize, now: Instant) {
        match buf.get(..n) {
            Some(payload) => self.publish(payload, now),
            None => self.stats.reports_too_large = self.stats.reports_too_large.wrapping_add(1),
        }
    }

    fn publish(&mut self, payload: &[u8], now: Instant) {
        if !self.device.is_up() {
            // Not an error: the state is published again when the link comes up.
            return;
        }
        match self.device.publish(&self.report_topic, payload, now) {
            Ok(()) => self.stats.reports_sent = self.stats.reports_sent.wrapping_add(1),
            Err(_) => self.stats.reports_dropped = self.stats.reports_dropped.wrapping_add(1),
        }
    }

    /// Moves due frames into the UART queue (whole frames only) and writes
    /// what the UART takes.
    fn transmit<U: Write + WriteReady>(&mut self, now: Instant, uart: &mut U) {
        let mut out = [0u8; FRAME_OUT];
        while self.tx.free() >= FRAME_OUT {
            match self.device.poll_transmit(now, &mut out) {
                Some(n) => {
                    // Room for a whole frame was checked; a frame that still
                    // does not fit (or a bad length) is counted.
                    let pushed = out.get(..n).map(|frame| self.tx.try_push(frame));
                    if !matches!(pushed, Some(Ok(()))) {
                        self.stats.io.tx_dropped = self.stats.io.tx_dropped.wrapping_add(1);
                    }
                }
                None => break,
            }
        }
        if self.tx.flush_ready(uart, &mut self.stats.io).is_err() {
            self.count_uart_error();
        }
    }
}
