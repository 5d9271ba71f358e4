//! H-bridge motors: PWM enable plus one or two direction pins.

use embedded_hal::digital::OutputPin;
use embedded_hal::pwm::SetDutyCycle;

use super::{duty, valid_speed, Error, SetSpeed};

/// What a [`DualMotor`] does on [`stop`](DualMotor::stop) (and at speed `0`).
///
/// [`Motor`] (one direction pin) has no choice: it stops by writing duty `0`,
/// and the driver chip decides what that means (most PH/EN drivers brake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StopMode {
    /// Both bridge outputs off (enable duty `0`, IN1 = IN2 = low): the motor
    /// spins down freely. The default, because it is the state the driver
    /// falls back to when the controller resets or its pins float low, so a
    /// stop and a crash leave the robot the same way, and no braking current
    /// flows through the bridge.
    #[default]
    Coast,
    /// Both motor terminals shorted together (IN1 = IN2 = high, full enable
    /// duty): the motor stops quickly and resists turning. Choose it for
    /// robots that must not roll, e.g. on a slope.
    Brake,
}

/// Motor configuration: direction inversion, a duty ceiling and the stop mode.
///
/// `Config::new()` (also `Default`) is: not inverted, `max_duty` `1.0`,
/// [`StopMode::Coast`]. All builders are `const`, so a configuration can be a
/// `const`.
///
/// ```
/// use banyan_core::actuator::{Config, StopMode};
/// const RIGHT: Config = Config::new().with_invert(true).with_stop_mode(StopMode::Brake);
/// let slow = Config::new().with_max_duty(0.5).unwrap();
/// assert_eq!(slow.max_duty(), 0.5);
/// assert!(Config::new().with_max_duty(0.0).is_err());
/// # let _ = RIGHT;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    invert: bool,
    max_duty: f32,
    stop_mode: StopMode,
}

impl Config {
    /// Not inverted, `max_duty` `1.0`, [`StopMode::Coast`].
    pub const fn new() -> Self {
        Config {
            invert: false,
            max_duty: 1.0,
            stop_mode: StopMode::Coast,
        }
    }

    /// Swaps forward and reverse (for a motor mounted mirror-wise or wired
    /// the other way round).
    pub const fn with_invert(mut self, invert: bool) -> Self {
        self.invert = invert;
        self
    }

    /// Sets the duty cycle used at full speed, a fraction in `(0, 1]`: speed
    /// `s` drives duty `|s| × max_duty`. Use it for a motor rated below the
    /// supply voltage.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMaxDuty`] if `max_duty` is NaN or outside `(0, 1]`.
    pub const fn with_max_duty(mut self, max_duty: f32) -> Result<Self, Error> {
        if max_duty > 0.0 && max_duty <= 1.0 {
            self.max_duty = max_duty;
            Ok(self)
        } else {
            Err(Error::InvalidMaxDuty)
        }
    }

    /// Sets what [`DualMotor::stop`] does; [`Motor`] ignores it (its driver
    /// decides, see [`StopMode`]).
    pub const fn with_stop_mode(mut self, stop_mode: StopMode) -> Self {
        self.stop_mode = stop_mode;
        self
    }

    /// Whether forward and reverse are swapped.
    pub const fn invert(&self) -> bool {
        self.invert
    }

    /// The duty cycle fraction used at full speed, in `(0, 1]`.
    pub const fn max_duty(&self) -> f32 {
        self.max_duty
    }

    /// What [`DualMotor::stop`] does.
    pub const fn stop_mode(&self) -> StopMode {
        self.stop_mode
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Which way the bridge currently drives, as far as this code knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Dir {
    /// Nothing written yet, or the last write failed.
    Unknown,
    Stopped,
    Forward,
    Reverse,
}

/// The direction of a non-zero `speed` after inversion.
fn direction(speed: f32, invert: bool) -> Dir {
    if (speed < 0.0) != invert {
        Dir::Reverse
    } else {
        Dir::Forward
    }
}

/// One write to a running bridge, as [`Track::plan`] asks it of a motor type.
#[derive(Debug, Clone, Copy)]
struct Write {
    /// [`Dir::Forward`] or [`Dir::Reverse`].
    to: Dir,
    /// The bridge may drive another way than `to` (or its state is
    /// unknown): cut the duty and set the direction pins first.
    turn: bool,
    /// The enable duty as a fraction of the PWM's maximum.
    fraction: f32,
}

/// What both bridge types keep besides their pins: the configuration and
/// what was last written. The speed checks, the direction and the
/// bookkeeping after a write live here once; each type only writes its pins.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Track {
    config: Config,
    state: Dir,
    speed: f32,
}

impl Track {
    const fn new(config: Config) -> Self {
        Track {
            config,
            state: Dir::Unknown,
            speed: 0.0,
        }
    }

    fn speed(&self) -> Option<f32> {
        (self.state != Dir::Unknown).then_some(self.speed)
    }

    /// The write `speed` asks for, `None` for a stop (speed `0.0` or
    /// `-0.0`).
    fn plan<P, D>(&self, speed: f32) -> Result<Option<Write>, Error<P, D>> {
        if !valid_speed(speed) {
            return Err(Error::InvalidSpeed);
        }
        if speed == 0.0 {
            return Ok(None);
        }
        let to = direction(speed, self.config.invert);
        Ok(Some(Write {
            to,
            turn: to != self.state,
            fraction: speed.abs() * self.config.max_duty,
        }))
    }

    /// Records the result of a write: the bridge now drives `to` at
    /// `speed`, or (`result` is an error) its state is unknown.
    fn settle<E>(&mut self, result: Result<(), E>, to: Dir, speed: f32) -> Result<(), E> {
        match result {
            Ok(()) => {
                self.state = to;
                self.speed = speed;
            }
            Err(_) => self.state = Dir::Unknown,
        }
        result
    }
}

/// Writes the enable duty of a running (not stopped) bridge.
fn set_duty<P: SetDutyCycle, D>(pwm: &mut P, fraction: f32) -> Result<(), Error<P::Error, D>> {
    let d = duty(pwm.max_duty_cycle(), fraction);
    pwm.set_duty_cycle(d).map_err(Error::Pwm)
}

/// An H-bridge channel with a PWM enable and one direction (phase) pin: PH/EN
/// drivers such as DRV8835 (MODE high) or DRV8874.
///
/// Forward drives the direction pin low, reverse high (swapped by
/// [`Config::with_invert`]); `|speed| × max_duty` sets the enable duty cycle.
/// Changing direction first writes duty `0`, then the direction pin, then the
/// new duty, so the motor never runs the new way at the old duty or the old
/// way at the new one. [`stop`](Motor::stop) writes duty `0`.
///
/// `new` does not touch the pins: call [`stop`](Motor::stop) once to put the
/// bridge in a known state.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Motor<PWM, DIR> {
    pwm: PWM,
    dir: DIR,
    track: Track,
}

impl<PWM, DIR> Motor<PWM, DIR> {
    /// A motor on `pwm` (enable) and `dir` (phase).
    pub const fn new(pwm: PWM, dir: DIR, config: Config) -> Self {
        Motor {
            pwm,
            dir,
            track: Track::new(config),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.track.config
    }

    /// The last speed written successfully, `None` before the first write or
    /// after a failed one (the bridge state is then unknown).
    pub fn speed(&self) -> Option<f32> {
        self.track.speed()
    }

    /// Gives the pins back, as `(pwm, dir)`; the motor keeps running as last
    /// set.
    pub fn release(self) -> (PWM, DIR) {
        (self.pwm, self.dir)
    }
}

impl<PWM: SetDutyCycle, DIR: OutputPin> Motor<PWM, DIR> {
    /// Drives the motor at `speed` in `[-1, 1]`; `0.0` (or `-0.0`) stops.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidSpeed`] if `speed` is NaN or outside `[-1, 1]`; no
    ///   pin is touched.
    /// - [`Error::Pwm`] / [`Error::Pin`] if a pin write fails; the bridge
    ///   state is then unknown ([`speed`](Motor::speed) is `None`) and the
    ///   next command rewrites every pin.
    pub fn set_speed(&mut self, speed: f32) -> Result<(), Error<PWM::Error, DIR::Error>> {
        let Some(w) = self.track.plan(speed)? else {
            return self.stop();
        };
        let result = self.drive(w);
        self.track.settle(result, w.to, speed)
    }

    fn drive(&mut self, w: Write) -> Result<(), Error<PWM::Error, DIR::Error>> {
        if w.turn {
            self.pwm.set_duty_cycle_fully_off().map_err(Error::Pwm)?;
            let pin = match w.to {
                Dir::Reverse => self.dir.set_high(),
                _ => self.dir.set_low(),
            };
            pin.map_err(Error::Pin)?;
        }
        set_duty(&mut self.pwm, w.fraction)
    }

    /// Stops the motor by writing duty `0` (the direction pin is left as it
    /// is). Always writes, even if the motor is already stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Pwm`] if the write fails.
    pub fn stop(&mut self) -> Result<(), Error<PWM::Error, DIR::Error>> {
        let result = self.pwm.set_duty_cycle_fully_off().map_err(Error::Pwm);
        self.track.settle(result, Dir::Stopped, 0.0)
    }
}

impl<PWM: SetDutyCycle, DIR: OutputPin> SetSpeed for Motor<PWM, DIR> {
    type Error = Error<PWM::Error, DIR::Error>;

    fn set_speed(&mut self, speed: f32) -> Result<(), Self::Error> {
        Motor::set_speed(self, speed)
    }

    fn stop(&mut self) -> Result<(), Self::Error> {
        Motor::stop(self)
    }
}

/// An H-bridge channel with a PWM enable and two direction pins IN1/IN2:
/// L298N (ENA, IN1, IN2) or TB6612FNG (PWMA, AIN1, AIN2).
///
/// Forward is IN1 high / IN2 low, reverse IN1 low / IN2 high (swapped by
/// [`Config::with_invert`]); `|speed| × max_duty` sets the enable duty cycle.
/// Changing direction first writes duty `0`, then the pin going low, then the
/// pin going high, then the new duty: the bridge passes through "both low"
/// (coast), never through a brake or the old direction at the new duty.
/// [`stop`](DualMotor::stop) coasts or brakes per [`Config::with_stop_mode`].
///
/// `new` does not touch the pins: call [`stop`](DualMotor::stop) once to put
/// the bridge in a known state.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DualMotor<PWM, IN1, IN2> {
    pwm: PWM,
    in1: IN1,
    in2: IN2,
    track: Track,
}

impl<PWM, IN1, IN2> DualMotor<PWM, IN1, IN2> {
    /// A motor on `pwm` (enable), `in1` and `in2`.
    pub const fn new(pwm: PWM, in1: IN1, in2: IN2, config: Config) -> Self {
        DualMotor {
            pwm,
            in1,
            in2,
            track: Track::new(config),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.track.config
    }

    /// The last speed written successfully, `None` before the first write or
    /// after a failed one (the bridge state is then unknown).
    pub fn speed(&self) -> Option<f32> {
        self.track.speed()
    }

    /// Gives the pins back, as `(pwm, in1, in2)`; the motor keeps running as
    /// last set.
    pub fn release(self) -> (PWM, IN1, IN2) {
        (self.pwm, self.in1, self.in2)
    }
}

impl<PWM, IN1, IN2> DualMotor<PWM, IN1, IN2>
where
    PWM: SetDutyCycle,
    IN1: OutputPin,
    IN2: OutputPin<Error = IN1::Error>,
{
    /// Drives the motor at `speed` in `[-1, 1]`; `0.0` (or `-0.0`) stops as
    /// [`stop`](DualMotor::stop) does.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidSpeed`] if `speed` is NaN or outside `[-1, 1]`; no
    ///   pin is touched.
    /// - [`Error::Pwm`] / [`Error::Pin`] if a pin write fails; the bridge
    ///   state is then unknown ([`speed`](DualMotor::speed) is `None`) and the
    ///   next command rewrites every pin.
    pub fn set_speed(&mut self, speed: f32) -> Result<(), Error<PWM::Error, IN1::Error>> {
        let Some(w) = self.track.plan(speed)? else {
            return self.stop();
        };
        let result = self.drive(w);
        self.track.settle(result, w.to, speed)
    }

    fn drive(&mut self, w: Write) -> Result<(), Error<PWM::Error, IN1::Error>> {
        if w.turn {
            self.pwm.set_duty_cycle_fully_off().map_err(Error::Pwm)?;
            if w.to == Dir::Reverse {
                self.in1.set_low().map_err(Error::Pin)?;
                self.in2.set_high().map_err(Error::Pin)?;
            } else {
                self.in2.set_low().map_err(Error::Pin)?;
                self.in1.set_high().map_err(Error::Pin)?;
            }
        }
        set_duty(&mut self.pwm, w.fraction)
    }

    /// Stops the motor. Always writes, even if it is already stopped.
    ///
    /// - [`StopMode::Coast`]: duty `0`, IN1 low, IN2 low.
    /// - [`StopMode::Brake`]: duty `0`, IN1 high, IN2 high, then full duty
    ///   (L298N needs its enable high to brake).
    ///
    /// # Errors
    ///
    /// [`Error::Pwm`] / [`Error::Pin`] if a write fails; later writes are
    /// skipped, but the first one (duty `0`) has already cut the drive if it
    /// succeeded.
    pub fn stop(&mut self) -> Result<(), Error<PWM::Error, IN1::Error>> {
        let result = self.brake_or_coast();
        self.track.settle(result, Dir::Stopped, 0.0)
    }

    fn brake_or_coast(&mut self) -> Result<(), Error<PWM::Error, IN1::Error>> {
        self.pwm.set_duty_cycle_fully_off().map_err(Error::Pwm)?;
        match self.track.config.stop_mode {
            StopMode::Coast => {
                self.in1.set_low().map_err(Error::Pin)?;
                self.in2.set_low().map_err(Error::Pin)
            }
            StopMode::Brake => {
                self.in1.set_high().map_err(Error::Pin)?;
                self.in2.set_high().map_err(Error::Pin)?;
                self.pwm.set_duty_cycle_fully_on().map_err(Error::Pwm)
            }
        }
    }
}

impl<PWM, IN1, IN2> SetSpeed for DualMotor<PWM, IN1, IN2>
where
    PWM: SetDutyCycle,
    IN1: OutputPin,
    IN2: OutputPin<Error = IN1::Error>,
{
    type Error = Error<PWM::Error, IN1::Error>;

    fn set_speed(&mut self, speed: f32) -> Result<(), Self::Error> {
        DualMotor::set_speed(self, speed)
    }

    fn stop(&mut self) -> Result<(), Self::Error> {
        DualMotor::stop(self)
    }
}
