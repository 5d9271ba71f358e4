//! The robot's actuators: named motors under a deadman and named LEDs, driven
//! by `run_motors` / `light_leds` payloads, answering with report payloads.
//!
//! [`Robot::handle`] takes one command payload and writes at most one report
//! into the caller's buffer: `{"report": "state", ...}` when the command
//! changed a motor speed or LED level, `{"report": "error", "topic": ...,
//! "reason": ...}` when it was refused (malformed msgpack, wrong types,
//! out-of-range values, unknown motor or LED names, unknown topics, a pin
//! failure). A refused command changes nothing — except a pin failure while
//! driving motors, after which every motor is stopped (fail-safe).

use banyan_core::actuator::{self, MotorSet, SetBrightness, SetSpeed};
use banyan_core::cmd::{report, LightLeds, RunMotors};
use core::fmt;
use heapless::Vec;

/// The topic carrying motor commands.
pub const RUN_MOTORS: &str = "run_motors";
/// The topic carrying LED commands.
pub const LIGHT_LEDS: &str = "light_leds";
/// Longest timed run (`run_motors` with `duration_ms`) a [`Robot`] accepts
/// unless told otherwise ([`Robot::set_max_run_ms`]): a timed run replaces
/// the deadman for its duration, so this bounds how long motors run with
/// nobody talking to the device.
pub const DEFAULT_MAX_RUN_MS: u64 = 10_000;

/// What [`Robot::handle`] wrote into the report buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// Accepted; the state changed and a state report of this length was written.
    Changed(usize),
    /// Accepted; nothing changed (a repeated command or a deadman keep-alive),
    /// no report written.
    Unchanged,
    /// Refused; an error report of this length was written.
    Refused(usize),
    /// The report did not fit the buffer (the command itself was handled as
    /// usual; counted by the caller).
    ReportTooLarge,
}

/// Counters of commands; every refusal and failure is counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Commands accepted.
    pub accepted: u32,
    /// Commands refused (bad payload, unknown name or topic, pin failure).
    pub refused: u32,
    /// Deadman stops (no `run_motors` in time, or a timed run ended).
    pub deadman_stops: u32,
    /// Motor or LED pin writes that failed.
    pub pin_errors: u32,
}

/// A named LED.
struct NamedLed<L> {
    name: &'static str,
    led: L,
    level: f32,
}

/// `NM` motors of type `M` under a deadman, `NL` LEDs of type `L`.
pub struct Robot<M: SetSpeed, L, const NM: usize, const NL: usize> {
    motors: MotorSet<M, NM>,
    /// Speed last applied, per motor in `motors.iter()` order.
    speeds: [f32; NM],
    leds: Vec<NamedLed<L>, NL>,
    stats: Stats,
    max_run_ms: u64,
}

/// Why a motor or LED could not be added to a [`Robot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddError {
    /// The name is taken.
    Duplicate,
    /// All `NM` / `NL` places are used.
    Full,
}

impl<M, L, P, D, const NM: usize, const NL: usize> Robot<M, L, NM, NL>
where
    M: SetSpeed<Error = actuator::Error<P, D>>,
    P: fmt::Debug,
    D: fmt::Debug,
    L: SetBrightness,
    L::Error: fmt::Debug,
{
    /// A robot without actuators whose deadman stops the motors
    /// `deadman_ms` after the last `run_motors`.
    pub fn new(deadman_ms: u64) -> Self {
        Self {
            motors: MotorSet::new(deadman_ms),
            speeds: [0.0; NM],
            leds: Vec::new(),
            stats: Stats::default(),
            max_run_ms: DEFAULT_MAX_RUN_MS,
        }
    }

    /// Sets the longest timed run accepted (default
    /// [`DEFAULT_MAX_RUN_MS`]); a `run_motors` with a longer `duration_ms`
    /// is refused and changes nothing. 0 refuses every timed run.
    pub fn set_max_run_ms(&mut self, max_run_ms: u64) {
        self.max_run_ms = max_run_ms;
    }

    /// Adds a motor and stops it (puts its bridge in a known state).
    ///
    /// # Errors
    /// [`AddError`]; the motor is dropped.
    pub fn add_motor(&mut self, name: &'static str, mut motor: M) -> Result<(), AddError> {
        if self.motors.get(name).is_some() {
            return Err(AddError::Duplicate);
        }
        if motor.stop().is_err() {
            self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
        }
        self.motors.add(name, motor).map_err(|(e, _)| match e {
            actuator::Error::DuplicateMotor => AddError::Duplicate,
            _ => AddError::Full,
        })
    }

    /// Adds an LED and switches it off.
    ///
    /// # Errors
    /// [`AddError`]; the LED is dropped.
    pub fn add_led(&mut self, name: &'static str, mut led: L) -> Result<(), AddError> {
        if self.leds.iter().any(|l| l.name == name) {
            return Err(AddError::Duplicate);
        }
        if led.set_brightness(0.0).is_err() {
            self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
        }
        self.leds
            .push(NamedLed {
                name,
                led,
                level: 0.0,
            })
            .map_err(|_| AddError::Full)
    }

    /// Command counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The speed last applied to each motor, by name.
    pub fn speeds(&self) -> impl Iterator<Item = (&'static str, f32)> + '_ {
        self.motors
            .iter()
            .map(|(n, _)| n)
            .zip(self.speeds.iter().copied())
    }

    /// The level last applied to each LED, by name.
    pub fn levels(&self) -> impl Iterator<Item = (&'static str, f32)> + '_ {
        self.leds.iter().map(|l| (l.name, l.level))
    }

    /// The motor called `name` (for board code and tests).
    pub fn motor(&self, name: &str) -> Option<&M> {
        self.motors.get(name)
    }

    /// When [`Robot::poll`] must run next at the latest (the deadman's
    /// deadline), if a deadline is pending.
    pub fn poll_at(&self) -> Option<u64> {
        self.motors.poll_at()
    }

    /// Handles one command payload received on `topic` at `now_ms` and writes
    /// the report it calls for into `out`. Never panics.
    pub fn handle(&mut self, now_ms: u64, topic: &str, payload: &[u8], out: &mut [u8]) -> Outcome {
        let result = match topic {
            RUN_MOTORS => self.run_motors(now_ms, payload),
            LIGHT_LEDS => self.light_leds(payload),
            _ => Err(Refusal::UnknownTopic),
        };
        match result {
            Ok(false) => {
                self.stats.accepted = self.stats.accepted.wrapping_add(1);
                Outcome::Unchanged
            }
            Ok(true) => {
                self.stats.accepted = self.stats.accepted.wrapping_add(1);
                match self.state_report(out) {
                    Some(n) => Outcome::Changed(n),
                    None => Outcome::ReportTooLarge,
                }
            }
            Err(refusal) => {
                self.stats.refused = self.stats.refused.wrapping_add(1);
                match report::error(out, topic, &refusal) {
                    Ok(n) => Outcome::Refused(n),
                    Err(_) => Outcome::ReportTooLarge,
                }
            }
        }
    }

    /// Runs the deadman: when it has expired, stops every motor. Returns
    /// whether that changed the state (then send [`Robot::state_report`]).
    pub fn poll(&mut self, now_ms: u64) -> bool {
        match self.motors.poll(now_ms) {
            Ok(true) => {
                self.stats.deadman_stops = self.stats.deadman_stops.wrapping_add(1);
                self.zero_speeds()
            }
            Ok(false) => false,
            Err(_) => {
                // The deadman stays expired: the next poll tries again.
                self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
                self.zero_speeds()
            }
        }
    }

    /// Stops every motor now (the link went down, or the board is shutting
    /// down). Returns whether that changed the state.
    pub fn stop_motors(&mut self) -> bool {
        if self.motors.stop_all().is_err() {
            self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
        }
        self.zero_speeds()
    }

    /// Writes `{"report": "state", "motors": {...}, "leds": {...}}` into
    /// `out`; `None` if it does not fit.
    pub fn state_report(&self, out: &mut [u8]) -> Option<usize> {
        let mut motors: Vec<(&str, f32), NM> = Vec::new();
        for m in self.speeds() {
            let _ = motors.push(m);
        }
        let mut leds: Vec<(&str, f32), NL> = Vec::new();
        for l in self.levels() {
            let _ = leds.push(l);
        }
        report::state(out, &motors, &leds).ok()
    }

    fn zero_speeds(&mut self) -> bool {
        let changed = self.speeds.iter().any(|s| *s != 0.0);
        self.speeds = [0.0; NM];
        changed
    }

    fn run_motors<'a>(&mut self, now_ms: u64, payload: &'a [u8]) -> Result<bool, Refusal<'a>> {
        let cmd = RunMotors::<'a, NM>::parse(payload).map_err(Refusal::Command)?;
        let mut names: Vec<&str, NM> = Vec::new();
        for (n, _) in self.motors.iter() {
            let _ = names.push(n);
        }
        cmd.check_names(&names).map_err(Refusal::Command)?;
        if cmd
            .duration_ms
            .is_some_and(|d| u64::from(d) > self.max_run_ms)
        {
            // Reported as the core's "value out of range for field
            // duration_ms": no new message to carry in flash.
            return Err(Refusal::Command(banyan_core::cmd::Error::OutOfRange(
                RunMotors::<NM>::DURATION_KEY,
            )));
        }
        let before = self.speeds;
        match self
            .motors
            .run(now_ms, &cmd.speeds, cmd.duration_ms.map(u64::from))
        {
            Ok(()) => {
                for (i, (name, _)) in self.motors.iter().enumerate() {
                    if let (Some(s), Some(slot)) = (cmd.speed(name), self.speeds.get_mut(i)) {
                        *slot = s;
                    }
                }
                Ok(self.speeds != before)
            }
            Err(actuator::Error::InvalidSpeed) => Err(Refusal::InvalidSpeed),
            Err(actuator::Error::UnknownMotor) => Err(Refusal::UnknownMotor),
            Err(_) => {
                // A pin failure: the set has stopped every motor.
                self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
                self.speeds = [0.0; NM];
                Err(Refusal::MotorFailed)
            }
        }
    }

    fn light_leds<'a>(&mut self, payload: &'a [u8]) -> Result<bool, Refusal<'a>> {
        let cmd = LightLeds::<'a, NL>::parse(payload).map_err(Refusal::Command)?;
        let mut names: Vec<&str, NL> = Vec::new();
        for l in &self.leds {
            let _ = names.push(l.name);
        }
        cmd.check_names(&names).map_err(Refusal::Command)?;
        let mut changed = false;
        let mut failed = false;
        for (name, level) in &cmd.levels {
            let Some(l) = self.leds.iter_mut().find(|l| l.name == *name) else {
                continue; // cannot happen: checked above
            };
            if l.led.set_brightness(*level).is_ok() {
                changed |= l.level != *level;
                l.level = *level;
            } else {
                failed = true;
            }
        }
        if failed {
            self.stats.pin_errors = self.stats.pin_errors.wrapping_add(1);
            return Err(Refusal::LedFailed);
        }
        Ok(changed)
    }
}

/// Why a command was refused; its `Display` is the error report's reason.
enum Refusal<'a> {
    Command(banyan_core::cmd::Error<'a>),
    InvalidSpeed,
    UnknownMotor,
    MotorFailed,
    LedFailed,
    UnknownTopic,
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Command(e) => fmt::Display::fmt(e, f),
            Refusal::InvalidSpeed => f.write_str("speed out of range [-1, 1]"),
            Refusal::UnknownMotor => f.write_str("unknown motor"),
            Refusal::MotorFailed => f.write_str("motor output failed, all motors stopped"),
            Refusal::LedFailed => f.write_str("led output failed"),
            Refusal::UnknownTopic => f.write_str("unknown topic"),
        }
    }
}
