//! The robot: named motors under a deadman and named LEDs, driven by
//! `run_motors` / `light_leds` payloads, answering with report payloads —
//! one implementation for the Pi gateway and the firmware.
//!
//! Sans-IO like the rest of the core: the caller passes each received
//! payload with the current time in milliseconds ([`Robot::handle`]), calls
//! [`Robot::poll`] no later than [`Robot::poll_at`], and publishes the report
//! bytes written into its buffer. Nothing here allocates, reads a clock or
//! panics on any input. The actuators are anything implementing the core's
//! [`SetSpeed`] (motors, kept in a [`MotorSet`] with its deadman) and
//! [`SetBrightness`] (LEDs).
//!
//! # The contract
//!
//! The full text, with examples on the wire, is `docs/robot-protocol.md`.
//!
//! **Commands** (topics [`Topics`], by default `run_motors` and
//! `light_leds`), parsed by [`cmd::RunMotors`] / [`cmd::LightLeds`]:
//!
//! - `run_motors`: `{motor name: speed in [-1, 1], …, "duration_ms": ms?}`.
//!   Motors not named keep their speeds. Without `duration_ms` the deadman
//!   stops every motor when no `run_motors` arrives within its timeout; with
//!   it the run is timed and every motor stops at its end. A `duration_ms`
//!   above the robot's limit ([`Robot::set_max_run_ms`], default
//!   [`DEFAULT_MAX_RUN_MS`]) is refused.
//! - `light_leds`: `{LED name: level in [0, 1] or true/false, …}`.
//!
//! A command is either applied whole or refused whole (it changes nothing),
//! except for a pin failure: a motor output failing stops every motor.
//!
//! **Reports**, one per command at most ([`Outcome`]):
//!
//! - when the command changed what the state report shows, the **state**:
//!   `{"report": "state", "motors": {name: speed}, "leds": {name: level},
//!   "stopped_by": nil | reason}` — names in the order they were added,
//!   every number a float64 **equal to the number sent** (`0.3` comes back
//!   as exactly `0.3`, not as `0.30000001192092896`; `1` as `1.0`;
//!   [`cmd::RunMotors::sent`]), `true`/`false` LED levels as `1.0`/`0.0`,
//!   and `0.0` for a motor stopped by the robot or never run. `stopped_by` says why the robot itself last stopped the
//!   motors ([`StoppedBy`]: `deadman`, `run_end`, `link_lost`,
//!   `backplane_lost`, `exit`, `pin_failure`); it is nil at start and after
//!   a `run_motors` that sets a speed.
//! - when it was refused, an **error**: `{"report": "error", "topic": topic,
//!   "reason": text, "command": payload}` — the reason is [`Error`]'s
//!   `Display` and names the offending field (listing the valid names for
//!   an unknown motor or LED); `command` is the payload echoed as its
//!   MessagePack value when it is valid MessagePack within [`cmd::LIMITS`],
//!   as bin otherwise, and nil when it does not fit the report buffer.
//! - **Keep-alive**: a command that changes nothing the state report shows
//!   (the same `run_motors` again, or `{}`) still feeds the deadman and
//!   produces no report ([`Outcome::Unchanged`]).
//!
//! [`Robot::poll`] and [`Robot::stop_motors`] return whether the state
//! changed; the caller then sends [`Robot::state_report`]. The deadman and
//! the end of a timed run only count (and report) a stop of motors that were
//! moving; [`Robot::stop_motors`] always records its reason.
//!
//! # When to use it
//!
//! For any node that drives motors and LEDs from Banyan commands. Node-level
//! concerns stay with the caller: which topics to subscribe to, when to send
//! a periodic state, other command sets (OneGPIO), logging.
//!
//! # Example
//!
//! ```
//! use banyan_core::actuator::{Error as ActError, SetBrightness, SetSpeed};
//! use banyan_core::robot::{Outcome, Robot, StoppedBy};
//!
//! #[derive(Default)]
//! struct Sim(f32);
//! impl SetSpeed for Sim {
//!     type Error = ActError;
//!     fn set_speed(&mut self, s: f32) -> Result<(), ActError> { self.0 = s; Ok(()) }
//!     fn stop(&mut self) -> Result<(), ActError> { self.0 = 0.0; Ok(()) }
//! }
//! impl SetBrightness for Sim {
//!     type Error = ActError;
//!     fn set_brightness(&mut self, b: f32) -> Result<(), ActError> { self.0 = b; Ok(()) }
//! }
//!
//! let mut robot: Robot<Sim, Sim, 2, 1> = Robot::new(500); // deadman 500 ms
//! robot.add_motor("left", Sim::default())?;
//! robot.add_led("status", Sim::default())?;
//! let mut out = [0u8; 256];
//! // msgpack.packb({'left': 0.3}, use_bin_type=True)
//! let cmd = b"\x81\xa4left\xcb\x3f\xd3\x33\x33\x33\x33\x33\x33";
//! let Outcome::Changed(n) = robot.handle(1_000, "run_motors", cmd, &mut out) else { panic!() };
//! // msgpack.packb({'report': 'state', 'motors': {'left': 0.3},
//! //                'leds': {'status': 0.0}, 'stopped_by': None}, use_bin_type=True)
//! assert_eq!(
//!     &out[..n],
//!     b"\x84\xa6report\xa5state\xa6motors\x81\xa4left\xcb\x3f\xd3\x33\x33\x33\x33\x33\x33\
//!       \xa4leds\x81\xa6status\xcb\0\0\0\0\0\0\0\0\xaastopped_by\xc0"
//! );
//! assert_eq!(robot.motor("left").unwrap().0, 0.3); // the actuator got the f32
//! assert_eq!(robot.handle(1_100, "run_motors", cmd, &mut out), Outcome::Unchanged);
//! assert!(!robot.poll(1_599)); // fed at 1100
//! assert!(robot.poll(1_600)); // deadman: state changed, send it
//! assert_eq!(robot.stopped_by(), Some(StoppedBy::Deadman));
//! # Ok::<(), banyan_core::robot::AddError>(())
//! ```

mod error;
#[cfg(any(test, feature = "std"))]
pub mod golden;

pub use error::Error;

use core::fmt;

use heapless::Vec;

use crate::actuator::{self, MotorSet, SetBrightness, SetSpeed};
use crate::cmd::{self, LightLeds, RunMotors};
use crate::msg::{self, Writer};

/// The default topic carrying motor commands.
pub const RUN_MOTORS: &str = "run_motors";
/// The default topic carrying LED commands.
pub const LIGHT_LEDS: &str = "light_leds";
/// Longest timed run (`run_motors` with `duration_ms`) a [`Robot`] accepts
/// unless told otherwise ([`Robot::set_max_run_ms`]): a timed run replaces
/// the deadman for its duration, so this bounds how long motors run with
/// nobody talking to the robot.
pub const DEFAULT_MAX_RUN_MS: u64 = 10_000;

/// The topics a [`Robot`] answers to (see [`Robot::set_topics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Topics {
    /// Motor commands; default [`RUN_MOTORS`].
    pub run_motors: &'static str,
    /// LED commands; default [`LIGHT_LEDS`].
    pub light_leds: &'static str,
}

impl Topics {
    /// `run_motors` and `light_leds`.
    pub const DEFAULT: Topics = Topics {
        run_motors: RUN_MOTORS,
        light_leds: LIGHT_LEDS,
    };
}

impl Default for Topics {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why the robot itself stopped the motors: the `stopped_by` of the state
/// report ([`StoppedBy::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StoppedBy {
    /// `"deadman"`: no `run_motors` within the deadman timeout.
    Deadman,
    /// `"run_end"`: a timed run (`duration_ms`) ended.
    RunEnd,
    /// `"link_lost"`: the serial link to the gateway went down (firmware).
    LinkLost,
    /// `"backplane_lost"`: the connection to the backplane was lost (a
    /// gateway).
    BackplaneLost,
    /// `"exit"`: the node is shutting down.
    Exit,
    /// `"pin_failure"`: a motor output failed, so every motor was stopped.
    PinFailure,
}

impl StoppedBy {
    /// Every reason, in declaration order.
    pub const ALL: [StoppedBy; 6] = [
        StoppedBy::Deadman,
        StoppedBy::RunEnd,
        StoppedBy::LinkLost,
        StoppedBy::BackplaneLost,
        StoppedBy::Exit,
        StoppedBy::PinFailure,
    ];

    /// The reason as it appears in the state report.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoppedBy::Deadman => "deadman",
            StoppedBy::RunEnd => "run_end",
            StoppedBy::LinkLost => "link_lost",
            StoppedBy::BackplaneLost => "backplane_lost",
            StoppedBy::Exit => "exit",
            StoppedBy::PinFailure => "pin_failure",
        }
    }

    /// The reason whose [`as_str`](Self::as_str) is `s`.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for StoppedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Robot::handle`] wrote into the report buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// Accepted, and the state changed: a state report of this length was
    /// written.
    Changed(usize),
    /// Accepted; nothing the state report shows changed (a repeated command
    /// or a keep-alive): no report written. The deadman was fed.
    Unchanged,
    /// Refused: an error report of this length was written.
    Refused(usize),
    /// The report did not fit the buffer (the command itself was accepted or
    /// refused as usual, and counted; the caller should count the lost
    /// report).
    ReportTooLarge,
}

/// Counters of the robot; every refusal and failure is counted.
///
/// With the `serde` feature it implements `serde::Serialize` (a map of the
/// field names), so a stats or status report can carry it whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// Commands accepted (changed or not).
    pub accepted: u32,
    /// Commands refused (bad payload, unknown name or topic, pin failure).
    pub refused: u32,
    /// Deadman stops of moving motors (no `run_motors` in time).
    pub deadman_stops: u32,
    /// Timed runs that ended with motors moving.
    pub run_ends: u32,
    /// Motor or LED writes that failed (including stops).
    pub pin_errors: u32,
}

impl Stats {
    /// The counters' names, in the order of [`Stats::values`]: what a
    /// report without serde (the firmware's) writes, so that it carries every
    /// counter (a test checks them against the serde field names).
    pub const FIELDS: [&'static str; 5] = [
        "accepted",
        "refused",
        "deadman_stops",
        "run_ends",
        "pin_errors",
    ];

    /// All zero.
    pub const fn new() -> Self {
        Stats {
            accepted: 0,
            refused: 0,
            deadman_stops: 0,
            run_ends: 0,
            pin_errors: 0,
        }
    }

    /// The counters, in the order of [`Stats::FIELDS`].
    pub const fn values(&self) -> [u32; 5] {
        // Destructured: a new field is a compile error here.
        let Stats {
            accepted,
            refused,
            deadman_stops,
            run_ends,
            pin_errors,
        } = *self;
        [accepted, refused, deadman_stops, run_ends, pin_errors]
    }
}

/// Why a motor or LED could not be added to a [`Robot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AddError {
    /// The name is taken by another motor (or LED), or is `duration_ms`.
    Duplicate,
    /// All `NM` (or `NL`) places are used.
    Full,
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddError::Duplicate => "duplicate or reserved name",
            AddError::Full => "no room for another",
        })
    }
}

impl core::error::Error for AddError {}

/// Writes the error report `{"report": "error", "topic": topic, "reason":
/// reason, "command": command}` into `out` and returns its length.
///
/// `command` (the refused payload) is embedded as its MessagePack value when
/// it is valid within [`cmd::LIMITS`] (so the report nests at most 5 deep),
/// as bin when it is not, and as nil when it does not fit `out`. Used by
/// [`Robot::handle`]; a node uses it too for refusals of its own (other
/// command sets, malformed messages) so every error report has this shape.
///
/// ```
/// let mut out = [0u8; 128];
/// let n = banyan_core::robot::error_report(&mut out, "run_motors", &"bad", b"\x80").unwrap();
/// // msgpack.packb({'report': 'error', 'topic': 'run_motors', 'reason': 'bad',
/// //                'command': {}}, use_bin_type=True)
/// assert_eq!(
///     &out[..n],
///     b"\x84\xa6report\xa5error\xa5topic\xaarun_motors\xa6reason\xa3bad\xa7command\x80"
/// );
/// ```
///
/// # Errors
/// [`msg::Error::BufferFull`] when even the report without the command does
/// not fit; [`msg::Error::Unencodable`] if `reason`'s `Display` fails.
pub fn error_report(
    out: &mut [u8],
    topic: &str,
    reason: &dyn fmt::Display,
    command: &[u8],
) -> Result<usize, msg::Error> {
    let mut w = Writer::new(out);
    // The fixed keys as constant MessagePack (a map of 4, "report": "error",
    // "topic"): one copy instead of a writer call per string.
    w.raw(b"\x84\xa6report\xa5error\xa5topic")?.str(topic)?;
    w.raw(b"\xa6reason")?.display(reason)?;
    w.raw(b"\xa7command")?;
    let echoed = match w.embed(command, &cmd::LIMITS) {
        Err(msg::Error::BufferFull) => false,
        Err(_) => w.bin(command).is_ok(),
        Ok(_) => true,
    };
    if !echoed {
        w.nil()?;
    }
    Ok(w.len())
}

/// Writes `key` (constant MessagePack) and the map `{names[i]: values[i]}`
/// with float64 values. Not generic, so one copy serves every robot type
/// and both maps.
fn named_numbers(
    w: &mut Writer<'_>,
    key: &[u8],
    names: &[&str],
    values: &[f64],
) -> Result<(), msg::Error> {
    w.raw(key)?.map(names.len())?;
    for (name, value) in names.iter().zip(values) {
        w.str(name)?.float(*value)?;
    }
    Ok(())
}

/// `NM` motors of type `M` under a deadman and `NL` LEDs of type `L`,
/// commanded by payloads and answering with reports (see the
/// [module docs](self) for the contract).
///
/// Motor and LED names are `&'static str` (a gateway that reads them from a
/// configuration leaks them once at start-up, e.g. with `String::leak`).
/// Dropping the robot stops its motors ([`MotorSet`]'s `Drop`).
pub struct Robot<M: SetSpeed, L, const NM: usize, const NL: usize> {
    motors: MotorSet<M, NM>,
    motor_names: Vec<&'static str, NM>,
    /// Speeds as sent, per motor in `motor_names` order.
    speeds: [f64; NM],
    /// Speeds as the motors got them (`f32`), same order: whether a motor
    /// moves, without double-precision compares.
    applied: [f32; NM],
    leds: Vec<L, NL>,
    led_names: Vec<&'static str, NL>,
    /// Levels as sent, per LED in `led_names` order.
    levels: [f64; NL],
    stopped_by: Option<StoppedBy>,
    /// The last accepted `run_motors` was timed: an expiry is its end.
    timed: bool,
    max_run_ms: u64,
    topics: Topics,
    stats: Stats,
}

impl<M: SetSpeed, L, const NM: usize, const NL: usize> Robot<M, L, NM, NL> {
    /// A robot without actuators whose deadman stops the motors
    /// `deadman_ms` after the last `run_motors`; timed runs up to
    /// [`DEFAULT_MAX_RUN_MS`], topics [`Topics::DEFAULT`].
    pub const fn new(deadman_ms: u64) -> Self {
        Self {
            motors: MotorSet::new(deadman_ms),
            motor_names: Vec::new(),
            speeds: [0.0; NM],
            applied: [0.0; NM],
            leds: Vec::new(),
            led_names: Vec::new(),
            levels: [0.0; NL],
            stopped_by: None,
            timed: false,
            max_run_ms: DEFAULT_MAX_RUN_MS,
            topics: Topics::DEFAULT,
            stats: Stats::new(),
        }
    }

    /// Sets the longest timed run accepted (default [`DEFAULT_MAX_RUN_MS`]);
    /// a `run_motors` with a longer `duration_ms` is refused and changes
    /// nothing. 0 refuses every timed run.
    pub fn set_max_run_ms(&mut self, max_run_ms: u64) {
        self.max_run_ms = max_run_ms;
    }

    /// The longest timed run accepted, in milliseconds.
    pub fn max_run_ms(&self) -> u64 {
        self.max_run_ms
    }

    /// Sets the topics [`handle`](Self::handle) answers to (e.g. prefixed
    /// per device); error reports name the topic the command came on.
    pub fn set_topics(&mut self, topics: Topics) {
        self.topics = topics;
    }

    /// The topics [`handle`](Self::handle) answers to.
    pub fn topics(&self) -> Topics {
        self.topics
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the robot last stopped the motors itself, `None` after a
    /// `run_motors` that set a speed (and at start).
    pub fn stopped_by(&self) -> Option<StoppedBy> {
        self.stopped_by
    }

    /// The motor names, in the order they were added.
    pub fn motor_names(&self) -> &[&'static str] {
        &self.motor_names
    }

    /// The LED names, in the order they were added.
    pub fn led_names(&self) -> &[&'static str] {
        &self.led_names
    }

    /// Each motor's speed as last sent (0.0 after a stop by the robot), by
    /// name, in the order the motors were added.
    pub fn speeds(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.motor_names
            .iter()
            .copied()
            .zip(self.speeds.iter().copied())
    }

    /// Each LED's level as last sent, by name, in the order the LEDs were
    /// added.
    pub fn levels(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.led_names
            .iter()
            .copied()
            .zip(self.levels.iter().copied())
    }

    /// The motor called `name` (for board code and tests).
    pub fn motor(&self, name: &str) -> Option<&M> {
        self.motors.get(name)
    }

    /// The LED called `name` (for board code and tests).
    pub fn led(&self, name: &str) -> Option<&L> {
        let i = self.led_names.iter().position(|n| *n == name)?;
        self.leds.get(i)
    }

    /// When [`poll`](Self::poll) must run next at the latest, in ms (the
    /// deadman's deadline or a timed run's end); `None` when no deadline
    /// is pending.
    pub fn poll_at(&self) -> Option<u64> {
        self.motors.poll_at()
    }

    /// Writes the state report (see the [module docs](self)) into `out` and
    /// returns its length.
    ///
    /// # Errors
    /// [`msg::Error::BufferFull`] when it does not fit.
    pub fn state_report(&self, out: &mut [u8]) -> Result<usize, msg::Error> {
        let mut w = Writer::new(out);
        self.write_state(&mut w, 0)?;
        Ok(w.len())
    }

    /// Writes the state report as a map of `4 + extra` entries whose first
    /// four are the contract's; the caller writes `extra` more key/value
    /// pairs after it (node-specific keys; the reports are then no longer
    /// byte-identical to other nodes').
    ///
    /// # Errors
    /// [`msg::Error::BufferFull`]; [`msg::Error::Unencodable`] for an
    /// absurd `extra`.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "every `stopped_by` name is shorter than 32 bytes"
    )]
    pub fn write_state(&self, w: &mut Writer<'_>, extra: usize) -> Result<(), msg::Error> {
        let entries = extra.checked_add(4).ok_or(msg::Error::Unencodable)?;
        // Fixed keys as constant MessagePack fragments.
        w.map(entries)?.raw(b"\xa6report\xa5state")?;
        named_numbers(w, b"\xa6motors", &self.motor_names, &self.speeds)?;
        named_numbers(w, b"\xa4leds", &self.led_names, &self.levels)?;
        w.raw(b"\xaastopped_by")?;
        match self.stopped_by {
            // Every reason is shorter than 32 bytes: a fixstr.
            Some(s) => w.put(&[&[0xa0 | s.as_str().len() as u8], s.as_str().as_bytes()])?,
            None => w.nil()?,
        };
        Ok(())
    }

    fn moving(&self) -> bool {
        self.applied.iter().any(|s| *s != 0.0)
    }

    /// Records that every motor is stopped because of `reason`; whether the
    /// state report changed.
    fn halted(&mut self, reason: StoppedBy) -> bool {
        let changed = self.moving() || self.stopped_by != Some(reason);
        self.speeds = [0.0; NM];
        self.applied = [0.0; NM];
        self.stopped_by = Some(reason);
        changed
    }

    fn count(counter: &mut u32) {
        *counter = counter.wrapping_add(1);
    }
}

impl<M, L, P, D, const NM: usize, const NL: usize> Robot<M, L, NM, NL>
where
    M: SetSpeed<Error = actuator::Error<P, D>>,
    L: SetBrightness,
{
    /// Adds a motor and stops it (puts its bridge in a known state; a failed
    /// stop is counted in [`Stats::pin_errors`]).
    ///
    /// # Errors
    /// [`AddError`]; the motor is dropped.
    pub fn add_motor(&mut self, name: &'static str, mut motor: M) -> Result<(), AddError> {
        if name == RunMotors::<0>::DURATION_KEY {
            return Err(AddError::Duplicate);
        }
        if motor.stop().is_err() {
            Self::count(&mut self.stats.pin_errors);
        }
        self.motors.add(name, motor).map_err(|(e, _)| match e {
            actuator::Error::DuplicateMotor => AddError::Duplicate,
            _ => AddError::Full,
        })?;
        // Same capacity as the set, which took it: cannot fail.
        self.motor_names.push(name).map_err(|_| AddError::Full)
    }

    /// Adds an LED and switches it off (a failed write is counted in
    /// [`Stats::pin_errors`]).
    ///
    /// # Errors
    /// [`AddError`]; the LED is dropped.
    pub fn add_led(&mut self, name: &'static str, mut led: L) -> Result<(), AddError> {
        if self.led_names.contains(&name) {
            return Err(AddError::Duplicate);
        }
        if led.set_brightness(0.0).is_err() {
            Self::count(&mut self.stats.pin_errors);
        }
        self.leds.push(led).map_err(|_| AddError::Full)?;
        // Same capacity as `leds`, which took it: cannot fail.
        self.led_names.push(name).map_err(|_| AddError::Full)
    }

    /// Handles one command `payload` received on `topic` at `now_ms` and
    /// writes the report it calls for into `out` (see [`Outcome`]). Never
    /// panics, whatever the bytes.
    pub fn handle(&mut self, now_ms: u64, topic: &str, payload: &[u8], out: &mut [u8]) -> Outcome {
        let motors = topic == self.topics.run_motors;
        let result = if motors {
            self.run_motors(now_ms, payload)
        } else if topic == self.topics.light_leds {
            self.light_leds(payload)
        } else {
            Err(Error::UnknownTopic)
        };
        match result {
            Ok(changed) => {
                Self::count(&mut self.stats.accepted);
                if !changed {
                    return Outcome::Unchanged;
                }
                match self.state_report(out) {
                    Ok(n) => Outcome::Changed(n),
                    Err(_) => Outcome::ReportTooLarge,
                }
            }
            Err(e) => {
                Self::count(&mut self.stats.refused);
                let e = match e {
                    Error::UnknownName { name, .. } => Error::UnknownName {
                        name,
                        valid: if motors {
                            &self.motor_names
                        } else {
                            &self.led_names
                        },
                    },
                    e => e,
                };
                match error_report(out, topic, &e, payload) {
                    Ok(n) => Outcome::Refused(n),
                    Err(_) => Outcome::ReportTooLarge,
                }
            }
        }
    }

    /// Runs the deadman at `now_ms`: when it has expired (no `run_motors`
    /// within the timeout, or a timed run ended) stops every motor. Returns
    /// whether the state changed (then send [`state_report`](Self::state_report)):
    /// an expiry while no motor was moving stops them again but changes and
    /// counts nothing. A failed stop is counted, reported as
    /// `stopped_by: pin_failure` and retried at the next poll
    /// ([`poll_at`](Self::poll_at) is then in the past).
    pub fn poll(&mut self, now_ms: u64) -> bool {
        let moving = self.moving();
        match self.motors.poll(now_ms) {
            Ok(false) => false,
            Ok(true) if !moving => false,
            Ok(true) => {
                let reason = if self.timed {
                    Self::count(&mut self.stats.run_ends);
                    StoppedBy::RunEnd
                } else {
                    Self::count(&mut self.stats.deadman_stops);
                    StoppedBy::Deadman
                };
                self.halted(reason)
            }
            Err(_) => {
                Self::count(&mut self.stats.pin_errors);
                self.halted(StoppedBy::PinFailure)
            }
        }
    }

    /// Stops every motor now because of `reason` (the link or backplane went
    /// away, the node is exiting) and records it as `stopped_by`. Returns
    /// whether the state changed. A failed stop is counted and retried at
    /// the next [`poll`](Self::poll).
    pub fn stop_motors(&mut self, reason: StoppedBy) -> bool {
        if self.motors.stop_all().is_err() {
            Self::count(&mut self.stats.pin_errors);
        }
        self.halted(reason)
    }

    /// The safe state: every motor stopped (as [`stop_motors`](Self::stop_motors))
    /// and every LED off. Returns whether the state changed.
    pub fn safe_state(&mut self, reason: StoppedBy) -> bool {
        let mut changed = self.stop_motors(reason);
        for (led, level) in self.leds.iter_mut().zip(self.levels.iter_mut()) {
            if led.set_brightness(0.0).is_err() {
                Self::count(&mut self.stats.pin_errors);
            }
            changed |= level.to_bits() != 0;
            *level = 0.0;
        }
        changed
    }

    fn run_motors<'p>(&mut self, now_ms: u64, payload: &'p [u8]) -> Result<bool, Error<'p>> {
        let cmd = RunMotors::<'p, NM>::parse(payload)?;
        cmd.check_names(&self.motor_names)?;
        if cmd
            .duration_ms
            .is_some_and(|d| u64::from(d) > self.max_run_ms)
        {
            return Err(Error::DurationOverLimit {
                max_ms: self.max_run_ms,
            });
        }
        let duration = cmd.duration_ms.map(u64::from);
        if self.motors.run(now_ms, &cmd.speeds, duration).is_err() {
            // Names and speeds were checked above, so this is an output
            // failure: the set has stopped every motor.
            Self::count(&mut self.stats.pin_errors);
            self.halted(StoppedBy::PinFailure);
            return Err(Error::MotorFailed);
        }
        self.timed = duration.is_some();
        let mut changed = false;
        for ((name, speed), sent) in cmd.speeds.iter().zip(&cmd.sent) {
            let Some(i) = self.motor_names.iter().position(|n| n == name) else {
                continue; // cannot happen: checked above
            };
            if let (Some(slot), Some(applied)) = (self.speeds.get_mut(i), self.applied.get_mut(i)) {
                changed |= slot.to_bits() != sent.to_bits();
                *slot = *sent;
                *applied = *speed;
            }
        }
        if !cmd.speeds.is_empty() && self.stopped_by.take().is_some() {
            changed = true;
        }
        Ok(changed)
    }

    fn light_leds<'p>(&mut self, payload: &'p [u8]) -> Result<bool, Error<'p>> {
        let cmd = LightLeds::<'p, NL>::parse(payload)?;
        cmd.check_names(&self.led_names)?;
        let mut changed = false;
        let mut failed = false;
        for ((name, level), sent) in cmd.levels.iter().zip(&cmd.sent) {
            let Some(i) = self.led_names.iter().position(|n| n == name) else {
                continue; // cannot happen: checked above
            };
            let (Some(led), Some(slot)) = (self.leds.get_mut(i), self.levels.get_mut(i)) else {
                continue;
            };
            if led.set_brightness(*level).is_ok() {
                changed |= slot.to_bits() != sent.to_bits();
                *slot = *sent;
            } else {
                failed = true;
            }
        }
        if failed {
            Self::count(&mut self.stats.pin_errors);
            return Err(Error::LedFailed);
        }
        Ok(changed)
    }
}
