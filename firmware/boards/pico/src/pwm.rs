//! The PWM channels the firmware uses, as one type: a motor set and an LED
//! list each hold one type, while rp2040-hal gives every slice/channel its own.

use core::convert::Infallible;
use embedded_hal::pwm::{ErrorType, SetDutyCycle};
use rp2040_hal::pwm::{Channel, FreeRunning, Pwm1, Pwm4, Pwm7, Slice, A, B};

/// One of the PWM channels wired on the Pico.
pub enum PwmOut {
    /// Slice 1 channel A, GP2: left motor enable.
    Gp2(Channel<Slice<Pwm1, FreeRunning>, A>),
    /// Slice 1 channel B, GP3: right motor enable.
    Gp3(Channel<Slice<Pwm1, FreeRunning>, B>),
    /// Slice 7 channel B, GP15: the `aux` LED.
    Gp15(Channel<Slice<Pwm7, FreeRunning>, B>),
    /// Slice 4 channel B, GP25: the on-board LED (`status`).
    Gp25(Channel<Slice<Pwm4, FreeRunning>, B>),
}

impl ErrorType for PwmOut {
    type Error = Infallible;
}

impl SetDutyCycle for PwmOut {
    fn max_duty_cycle(&self) -> u16 {
        match self {
            PwmOut::Gp2(c) => c.max_duty_cycle(),
            PwmOut::Gp3(c) => c.max_duty_cycle(),
            PwmOut::Gp15(c) => c.max_duty_cycle(),
            PwmOut::Gp25(c) => c.max_duty_cycle(),
        }
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        match self {
            PwmOut::Gp2(c) => c.set_duty_cycle(duty),
            PwmOut::Gp3(c) => c.set_duty_cycle(duty),
            PwmOut::Gp15(c) => c.set_duty_cycle(duty),
            PwmOut::Gp25(c) => c.set_duty_cycle(duty),
        }
    }
}
