//! Actuators over `embedded-hal` 1.0: H-bridge motors, LEDs, a deadman and a
//! named motor set that stops everything when commands stop arriving.
//!
//! The same code drives Raspberry Pi pins (through rppal's `embedded-hal`
//! implementations), MCU pins in firmware and `embedded-hal-mock` pins in host
//! tests. Values are plain numbers — signed motor speed as a fraction in
//! `[-1, 1]`, LED brightness in `[0, 1]` — so this module knows nothing of
//! the command encoding (`cmd` parses `run_motors` / `light_leds` into them).
//! Out-of-range and NaN values are rejected with an error, never clamped, and
//! leave every pin untouched.
//!
//! - [`Motor`]: PWM enable + one direction (phase) pin — DRV8835/DRV8874 in
//!   PH/EN mode, Pololu-style drivers.
//! - [`DualMotor`]: PWM enable + two direction pins IN1/IN2 — L298N, TB6612FNG,
//!   with a choice of coast or brake on stop ([`StopMode`]).
//! - [`Led`] (on/off, `OutputPin`) and [`PwmLed`] (brightness, `SetDutyCycle`),
//!   both with an active-low option.
//! - [`Deadman`]: a timeout the caller feeds with the time of each command and
//!   checks with the current time; [`MotorSet`] owns up to `N` named motors and
//!   a deadman, supports timed runs and stops every motor when it expires.
//!
//! Time is never read here: every time-dependent call takes `now_ms`, the
//! current time in milliseconds from any monotonic clock the caller owns
//! (`std::time::Instant` on a gateway, a hardware timer in firmware), as a
//! plain `u64`.
//!
//! Nothing here allocates or panics: every failure is an [`Error`]. Motor
//! and LED constructors do not touch the pins; [`MotorSet`] stops its motors
//! when dropped.
//!
//! # When to use it
//!
//! For DC motors behind an H-bridge and for LEDs, wherever a pin implements
//! the `embedded-hal` 1.0 `OutputPin` / `SetDutyCycle` traits.
//!
//! # When not to use it
//!
//! - Servos, steppers and tones need their own timing (`cmd` models those
//!   OneGPIO commands; a gateway drives them with its platform's facilities).
//! - Drivers that take two PWM inputs and no enable pin (DRV8833 in IN/IN
//!   mode) are not covered by [`Motor`]/[`DualMotor`]; implement [`SetSpeed`]
//!   for them and they work with [`MotorSet`].
//! - The deadman only acts when the caller calls [`MotorSet::poll`]: schedule
//!   it at [`MotorSet::poll_at`] at the latest. A hung caller cannot stop the
//!   motors; firmware should back it with a hardware watchdog.
//!
//! # Example
//!
//! ```
//! use banyan_core::actuator::{Config, Motor, MotorSet};
//! use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as PinTx};
//! use embedded_hal_mock::eh1::pwm::{Mock as Pwm, Transaction as PwmTx};
//!
//! // Mock pins stand in for the HAL's (rppal on a Pi, the MCU's HAL in
//! // firmware); the scripts are the writes the code below must make.
//! let pwm = Pwm::new(&[
//!     PwmTx::set_duty_cycle(0), // 0.5 forward: duty 0, direction, duty
//!     PwmTx::max_duty_cycle(100),
//!     PwmTx::set_duty_cycle(50),
//!     PwmTx::set_duty_cycle(0), // the deadman's stop
//!     PwmTx::set_duty_cycle(0), // the stop on drop
//! ]);
//! let dir = Pin::new(&[PinTx::set(State::Low)]);
//! let (mut pwm_script, mut dir_script) = (pwm.clone(), dir.clone());
//!
//! let mut drive: MotorSet<_, 2> = MotorSet::new(500); // deadman: 500 ms
//! let left = Motor::new(pwm, dir, Config::new());
//! drive.add("left", left).map_err(|(e, _motor)| e)?;
//! drive.set(1_000, "left", 0.5)?; // a `run_motors` command at t = 1000 ms
//! assert_eq!(drive.poll(1_200)?, false); // main loop
//! assert_eq!(drive.poll(1_500)?, true); // no command for 500 ms: stopped
//! drop(drive); // fail-safe: stops again
//! pwm_script.done();
//! dir_script.done();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::convert::Infallible;
use core::fmt;

mod deadman;
mod drive;
mod led;
mod motor;

pub use deadman::Deadman;
pub use drive::MotorSet;
pub use led::{Led, PwmLed};
pub use motor::{Config, DualMotor, Motor, StopMode};

/// Why an actuator operation failed.
///
/// `P` is the PWM output's error type and `D` the digital output's; both are
/// the HAL's own errors, passed through unchanged (use
/// [`embedded_hal::pwm::Error::kind`] / [`embedded_hal::digital::Error::kind`]
/// for a portable view). Operations that touch no pin of one kind use
/// [`Infallible`] for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<P = Infallible, D = Infallible> {
    /// A speed was NaN or outside `[-1, 1]`.
    InvalidSpeed,
    /// A brightness was NaN or outside `[0, 1]`.
    InvalidBrightness,
    /// A `max_duty` was NaN or outside `(0, 1]`.
    InvalidMaxDuty,
    /// No motor of this name in the [`MotorSet`].
    UnknownMotor,
    /// A motor of this name is already in the [`MotorSet`].
    DuplicateMotor,
    /// The [`MotorSet`] already holds `N` motors.
    Full,
    /// The PWM output failed.
    Pwm(P),
    /// A digital output failed.
    Pin(D),
}

impl<P: fmt::Debug, D: fmt::Debug> fmt::Display for Error<P, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSpeed => f.write_str("speed out of range [-1, 1]"),
            Error::InvalidBrightness => f.write_str("brightness out of range [0, 1]"),
            Error::InvalidMaxDuty => f.write_str("max duty out of range (0, 1]"),
            Error::UnknownMotor => f.write_str("unknown motor"),
            Error::DuplicateMotor => f.write_str("duplicate motor name"),
            Error::Full => f.write_str("motor set full"),
            Error::Pwm(e) => write!(f, "pwm output failed: {e:?}"),
            Error::Pin(e) => write!(f, "digital output failed: {e:?}"),
        }
    }
}

impl<P: fmt::Debug, D: fmt::Debug> core::error::Error for Error<P, D> {}

/// A motor driven by a signed speed: implemented by [`Motor`] and
/// [`DualMotor`]; implement it for other drivers (or a simulated motor) to
/// use them in a [`MotorSet`].
pub trait SetSpeed {
    /// The error of a failed pin write (validation errors are
    /// [`Error::InvalidSpeed`]).
    type Error;

    /// Drives the motor at `speed`, a fraction of full speed in `[-1, 1]`;
    /// the sign selects the direction and `0.0` stops.
    ///
    /// # Errors
    ///
    /// Must reject NaN or out-of-range speeds without touching any output,
    /// and report a failed output write.
    fn set_speed(&mut self, speed: f32) -> Result<(), Self::Error>;

    /// Stops the motor.
    ///
    /// # Errors
    ///
    /// Reports a failed output write.
    fn stop(&mut self) -> Result<(), Self::Error>;
}

/// A light driven by a brightness: implemented by [`Led`] and [`PwmLed`].
pub trait SetBrightness {
    /// The error of a failed write.
    type Error;

    /// Sets the brightness, a fraction in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// Must reject NaN or out-of-range values without touching any output,
    /// and report a failed output write.
    fn set_brightness(&mut self, brightness: f32) -> Result<(), Self::Error>;
}

/// `speed` is a number in `[-1, 1]` (NaN fails).
pub(crate) fn valid_speed(speed: f32) -> bool {
    (-1.0..=1.0).contains(&speed)
}

/// `value` is a number in `[0, 1]` (NaN fails).
pub(crate) fn valid_fraction(value: f32) -> bool {
    (0.0..=1.0).contains(&value)
}

/// The duty cycle nearest to `fraction × max`, for `fraction` in `[0, 1]`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the product is within [0, max] + 0.5 and `as` saturates"
)]
pub(crate) fn duty(max: u16, fraction: f32) -> u16 {
    // `as` saturates; `+ 0.5` rounds (no `f32::round` in `core`).
    let d = (fraction * f32::from(max) + 0.5) as u16;
    d.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_rounds_and_saturates() {
        assert_eq!(duty(100, 0.0), 0);
        assert_eq!(duty(100, 0.504), 50);
        assert_eq!(duty(100, 0.505), 51);
        assert_eq!(duty(100, 1.0), 100);
        assert_eq!(duty(u16::MAX, 1.0), u16::MAX);
        assert_eq!(duty(0, 1.0), 0);
    }

    #[test]
    fn validation() {
        assert!(valid_speed(-1.0) && valid_speed(1.0) && valid_speed(-0.0));
        assert!(!valid_speed(f32::NAN) && !valid_speed(1.0001) && !valid_speed(f32::NEG_INFINITY));
        assert!(valid_fraction(0.0) && valid_fraction(1.0));
        assert!(
            !valid_fraction(-0.01) && !valid_fraction(f32::NAN) && !valid_fraction(f32::INFINITY)
        );
    }
}
