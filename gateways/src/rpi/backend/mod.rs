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
        eprintln!("rpi-gateway: backend sim (--sim)");
        return Ok(Selected::Sim(sim::SimBackend::new(sim::SimBoard::new())));
    }
    match self::rppal::RppalBackend::new() {
        Ok(b) => {
            eprintln!("rpi-gateway: backend rppal ({})", b.model());
            Ok(Selected::Rppal(b))
        }
        Err(self::rppal::OpenError::NotAPi(why)) => {
            eprintln!("rpi-gateway: not a Raspberry Pi ({why}); using the sim backend");
            Ok(Selected::Sim(sim::SimBackend::new(sim::SimBoard::new())))
        }
        Err(self::rppal::OpenError::Gpio(e)) => Err(e),
    }
}
