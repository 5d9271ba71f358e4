//! LEDs: on/off on a digital output, or dimmable on a PWM output.

use core::convert::Infallible;

use embedded_hal::digital::OutputPin;
use embedded_hal::pwm::SetDutyCycle;

use super::{duty, valid_fraction, Error, SetBrightness};

/// An on/off LED on a digital output.
///
/// With `active_low` the LED lights when the pin is low (LED wired from the
/// supply to the pin). `new` does not touch the pin.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Led<P> {
    pin: P,
    active_low: bool,
    lit: Option<bool>,
}

impl<P> Led<P> {
    /// An LED on `pin`; `active_low` if it lights when the pin is low.
    pub const fn new(pin: P, active_low: bool) -> Self {
        Led {
            pin,
            active_low,
            lit: None,
        }
    }

    /// Whether the LED was last switched on, `None` before the first write or
    /// after a failed one.
    pub fn is_on(&self) -> Option<bool> {
        self.lit
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> Led<P> {
    /// Switches the LED on (`true`) or off.
    ///
    /// # Errors
    ///
    /// [`Error::Pin`] if the pin write fails.
    pub fn set(&mut self, on: bool) -> Result<(), Error<Infallible, P::Error>> {
        let result = if on != self.active_low {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        self.lit = result.is_ok().then_some(on);
        result.map_err(Error::Pin)
    }

    /// Switches the LED on.
    ///
    /// # Errors
    ///
    /// [`Error::Pin`] if the pin write fails.
    pub fn on(&mut self) -> Result<(), Error<Infallible, P::Error>> {
        self.set(true)
    }

    /// Switches the LED off.
    ///
    /// # Errors
    ///
    /// [`Error::Pin`] if the pin write fails.
    pub fn off(&mut self) -> Result<(), Error<Infallible, P::Error>> {
        self.set(false)
    }

    /// Any brightness above `0` switches the LED on, `0` switches it off.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidBrightness`] if `brightness` is NaN or outside
    ///   `[0, 1]`; the pin is not touched.
    /// - [`Error::Pin`] if the pin write fails.
    pub fn set_brightness(&mut self, brightness: f32) -> Result<(), Error<Infallible, P::Error>> {
        if !valid_fraction(brightness) {
            return Err(Error::InvalidBrightness);
        }
        self.set(brightness > 0.0)
    }
}

impl<P: OutputPin> SetBrightness for Led<P> {
    type Error = Error<Infallible, P::Error>;

    fn set_brightness(&mut self, brightness: f32) -> Result<(), Self::Error> {
        Led::set_brightness(self, brightness)
    }
}

/// A dimmable LED on a PWM output.
///
/// Brightness `b` in `[0, 1]` drives duty `b × max`; with `active_low`
/// (LED wired from the supply to the pin) the duty is inverted,
/// `max − b × max`. `new` does not touch the output.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PwmLed<P> {
    pwm: P,
    active_low: bool,
    brightness: Option<f32>,
}

impl<P> PwmLed<P> {
    /// An LED on `pwm`; `active_low` if it lights when the output is low.
    pub const fn new(pwm: P, active_low: bool) -> Self {
        PwmLed {
            pwm,
            active_low,
            brightness: None,
        }
    }

    /// The last brightness written, `None` before the first write or after a
    /// failed one.
    pub fn brightness(&self) -> Option<f32> {
        self.brightness
    }

    /// Gives the PWM output back.
    pub fn release(self) -> P {
        self.pwm
    }
}

impl<P: SetDutyCycle> PwmLed<P> {
    /// Sets the brightness, a fraction in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidBrightness`] if `brightness` is NaN or outside
    ///   `[0, 1]`; the output is not touched.
    /// - [`Error::Pwm`] if the write fails.
    pub fn set_brightness(&mut self, brightness: f32) -> Result<(), Error<P::Error>> {
        if !valid_fraction(brightness) {
            return Err(Error::InvalidBrightness);
        }
        let max = self.pwm.max_duty_cycle();
        let lit = duty(max, brightness);
        let d = if self.active_low { max - lit } else { lit };
        let result = self.pwm.set_duty_cycle(d);
        self.brightness = result.is_ok().then_some(brightness);
        result.map_err(Error::Pwm)
    }

    /// Full brightness.
    ///
    /// # Errors
    ///
    /// [`Error::Pwm`] if the write fails.
    pub fn on(&mut self) -> Result<(), Error<P::Error>> {
        self.set_brightness(1.0)
    }

    /// Off.
    ///
    /// # Errors
    ///
    /// [`Error::Pwm`] if the write fails.
    pub fn off(&mut self) -> Result<(), Error<P::Error>> {
        self.set_brightness(0.0)
    }
}

impl<P: SetDutyCycle> SetBrightness for PwmLed<P> {
    type Error = Error<P::Error>;

    fn set_brightness(&mut self, brightness: f32) -> Result<(), Self::Error> {
        PwmLed::set_brightness(self, brightness)
    }
}
