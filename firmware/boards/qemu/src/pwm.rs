//! A simulated PWM output. QEMU's `lm3s6965evb` does not model the LM3S6965
//! PWM generators, so the motor duty cycle lives in this value (and in the
//! state reports); the motor direction pins are real GPIO writes.

use core::convert::Infallible;

/// Duty-cycle resolution of the simulated output.
pub const MAX_DUTY: u16 = 1000;

/// A PWM output that records its duty cycle.
#[derive(Debug, Default)]
pub struct SimPwm {
    duty: u16,
}

impl SimPwm {
    /// The last duty cycle set (0..=[`MAX_DUTY`]).
    #[allow(dead_code)]
    pub fn duty(&self) -> u16 {
        self.duty
    }
}

impl embedded_hal::pwm::ErrorType for SimPwm {
    type Error = Infallible;
}

impl embedded_hal::pwm::SetDutyCycle for SimPwm {
    fn max_duty_cycle(&self) -> u16 {
        MAX_DUTY
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        self.duty = duty.min(MAX_DUTY);
        Ok(())
    }
}
