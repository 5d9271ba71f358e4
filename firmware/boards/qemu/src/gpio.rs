//! GPIO outputs as `embedded-hal` 1.0 pins.

use crate::hw::{self, Port};
use core::convert::Infallible;

/// One GPIO pin configured as a push-pull output (starts low).
pub struct Output {
    port: Port,
    pin: u8,
}

impl Output {
    /// Configures `pin` (0–7) of `port` as an output driven low.
    pub fn new(port: Port, pin: u8) -> Self {
        hw::gpio_output(port, pin);
        Self { port, pin }
    }
}

impl embedded_hal::digital::ErrorType for Output {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Output {
    fn set_low(&mut self) -> Result<(), Infallible> {
        hw::gpio_write(self.port, self.pin, false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        hw::gpio_write(self.port, self.pin, true);
        Ok(())
    }
}

impl embedded_hal::digital::StatefulOutputPin for Output {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(hw::gpio_read(self.port, self.pin))
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!hw::gpio_read(self.port, self.pin))
    }
}
