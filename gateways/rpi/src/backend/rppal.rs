//! The Raspberry Pi backend, through [`rppal`] 0.22.
//!
//! Digital pins and I2C use rppal's own `embedded-hal` 1.0 implementations.
//! PWM: rppal implements only the old `embedded-hal` 0.2 PWM traits, so this
//! module wraps its hardware [`Pwm`] channels and its software PWM in types
//! implementing `embedded-hal` 1.0 [`SetDutyCycle`]. Hardware PWM is used on
//! GPIO 12/13/18/19 when the channel is enabled (`dtoverlay=pwm-2chan` in
//! `/boot/firmware/config.txt`); otherwise the pin falls back to software PWM
//! (a log line says so). Compiles on any Linux; only runs on a Pi.
//!
//! Inputs are watched with rppal's asynchronous interrupts
//! (`InputPin::set_async_interrupt`, both edges, no debounce): rppal's
//! interrupt thread pushes each edge, with the kernel's timestamp converted
//! to an [`Instant`] by [`EdgeClock`], into the gateway's
//! [`EdgeSink`].

use std::time::{Duration, Instant};

use ::rppal::gpio::{Event, Gpio, OutputPin as RpOutput, Trigger};
use ::rppal::i2c::I2c;
use ::rppal::pwm::{Channel, Polarity, Pwm};
use ::rppal::system::{DeviceInfo, Model};
use embedded_hal::pwm::{ErrorKind, ErrorType, SetDutyCycle};

use super::{Backend, EdgeSink, Error, Pull};

/// Why [`RppalBackend::new`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// Not a Raspberry Pi (rppal's `DeviceInfo::new()` failed).
    NotAPi(String),
    /// A Pi whose GPIO cannot be opened.
    Gpio(Error),
}

/// A Raspberry Pi's GPIO.
pub struct RppalBackend {
    gpio: Gpio,
    model: Model,
}

impl RppalBackend {
    /// Opens the GPIO of this Raspberry Pi.
    ///
    /// # Errors
    /// [`OpenError::NotAPi`] off a Pi; [`OpenError::Gpio`] when `/dev/gpiomem`
    /// cannot be opened (add the user to the `gpio` group).
    pub fn new() -> Result<Self, OpenError> {
        let info = DeviceInfo::new().map_err(|e| OpenError::NotAPi(e.to_string()))?;
        let gpio =
            Gpio::new().map_err(|e| OpenError::Gpio(Error::Io(format!("open GPIO: {e}"))))?;
        Ok(Self {
            gpio,
            model: info.model(),
        })
    }

    /// The Pi model.
    pub fn model(&self) -> Model {
        self.model
    }
}

/// The hardware PWM channel wired to `pin` by default on `model`, if any.
pub fn hardware_channel(model: Model, pin: u8) -> Option<Channel> {
    let pi5 = matches!(
        model,
        Model::RaspberryPi5
            | Model::RaspberryPi500
            | Model::RaspberryPiComputeModule5
            | Model::RaspberryPiComputeModule5Lite
    );
    match (pin, pi5) {
        (12, true) => Some(Channel::Pwm0),
        (13, true) => Some(Channel::Pwm1),
        (18, true) => Some(Channel::Pwm2),
        (19, true) => Some(Channel::Pwm3),
        (12 | 18, false) => Some(Channel::Pwm0),
        (13 | 19, false) => Some(Channel::Pwm1),
        _ => None,
    }
}

/// Duty resolution of [`PiPwm`] (`max_duty_cycle`).
pub const PWM_RESOLUTION: u16 = 10_000;

/// A PWM output: a hardware channel or software PWM on a GPIO pin.
pub enum PiPwm {
    /// Hardware PWM channel.
    Hardware(Pwm),
    /// Software PWM (rppal's PWM thread) at this frequency.
    Software(RpOutput, f64),
}

/// PWM failure (the OS refused to change the channel).
#[derive(Debug)]
pub struct PwmError(String);

impl std::fmt::Display for PwmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PWM: {}", self.0)
    }
}

impl std::error::Error for PwmError {}

impl embedded_hal::pwm::Error for PwmError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for PiPwm {
    type Error = PwmError;
}

impl SetDutyCycle for PiPwm {
    fn max_duty_cycle(&self) -> u16 {
        PWM_RESOLUTION
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), PwmError> {
        let frac = f64::from(duty.min(PWM_RESOLUTION)) / f64::from(PWM_RESOLUTION);
        match self {
            PiPwm::Hardware(p) => p.set_duty_cycle(frac).map_err(|e| PwmError(e.to_string())),
            PiPwm::Software(pin, freq) => {
                // Fully off/on need no PWM thread.
                if duty == 0 || duty >= PWM_RESOLUTION {
                    pin.clear_pwm().map_err(|e| PwmError(e.to_string()))?;
                    if duty == 0 {
                        pin.set_low();
                    } else {
                        pin.set_high();
                    }
                    Ok(())
                } else {
                    pin.set_pwm_frequency(*freq, frac)
                        .map_err(|e| PwmError(e.to_string()))
                }
            }
        }
    }
}

impl Drop for PiPwm {
    fn drop(&mut self) {
        // Outputs go to a safe state: no pulses.
        match self {
            PiPwm::Hardware(p) => {
                let _ = p.set_duty_cycle(0.0);
                let _ = p.disable();
            }
            PiPwm::Software(pin, _) => {
                let _ = pin.clear_pwm();
                pin.set_low();
            }
        }
    }
}

fn io(what: &str, pin: u8, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("GPIO {pin}: {what}: {e}"))
}

impl Backend for RppalBackend {
    type Output = RpOutput;
    type Input = ::rppal::gpio::InputPin;
    type Pwm = PiPwm;
    type I2c = I2c;

    fn name(&self) -> &'static str {
        "rppal"
    }

    fn output(&mut self, pin: u8) -> Result<RpOutput, Error> {
        Ok(self
            .gpio
            .get(pin)
            .map_err(|e| io("output", pin, e))?
            .into_output_low())
    }

    fn input(&mut self, pin: u8, pull: Pull) -> Result<Self::Input, Error> {
        let p = self.gpio.get(pin).map_err(|e| io("input", pin, e))?;
        Ok(match pull {
            Pull::None => p.into_input(),
            Pull::Up => p.into_input_pullup(),
        })
    }

    fn pwm(&mut self, pin: u8, frequency_hz: u32) -> Result<PiPwm, Error> {
        let freq = f64::from(frequency_hz.max(1));
        if let Some(ch) = hardware_channel(self.model, pin) {
            match Pwm::with_frequency(ch, freq, 0.0, Polarity::Normal, true) {
                Ok(p) => return Ok(PiPwm::Hardware(p)),
                Err(e) => log::warn!(
                    "GPIO {pin}: hardware PWM {ch} unavailable ({e}); \
                     using software PWM (add dtoverlay=pwm-2chan to config.txt)"
                ),
            }
        }
        let out = self.output(pin)?;
        Ok(PiPwm::Software(out, freq))
    }

    fn i2c(&mut self) -> Result<I2c, Error> {
        I2c::new().map_err(|e| {
            Error::Io(format!(
                "open I2C bus 1: {e} (enable I2C with raspi-config; user in group i2c)"
            ))
        })
    }

    fn watch(&mut self, pin: u8, input: &mut Self::Input, sink: EdgeSink) -> Result<bool, Error> {
        let mut clock = EdgeClock::default();
        input
            .set_async_interrupt(Trigger::Both, None, move |ev: Event| {
                let level = match ev.trigger {
                    Trigger::RisingEdge => true,
                    Trigger::FallingEdge => false,
                    // rppal documents only these two for an event.
                    _ => return,
                };
                sink.push(level, clock.instant(ev.timestamp, Instant::now()));
            })
            .map_err(|e| io("interrupt", pin, e))?;
        Ok(true)
    }
}

/// Converts the kernel's edge timestamps (time since boot, `CLOCK_MONOTONIC`)
/// to [`Instant`]s without a system call: `Instant::now()` at delivery minus
/// the timestamp is the clock's origin plus the delivery delay; the smallest
/// such value seen is the best estimate of the origin. An edge is placed at
/// origin + timestamp, never later than its delivery. This only assumes the
/// stamps of one pin share one clock (so it also holds for
/// `CLOCK_REALTIME`/HTE stamps); a stamp too large to subtract is replaced
/// by the delivery instant.
#[derive(Debug, Default, Clone, Copy)]
pub struct EdgeClock {
    origin: Option<Instant>,
}

impl EdgeClock {
    /// The instant of an edge stamped `ts` and delivered at `now`.
    pub fn instant(&mut self, ts: Duration, now: Instant) -> Instant {
        let Some(candidate) = now.checked_sub(ts) else {
            return now;
        };
        let origin = match self.origin {
            Some(o) if o <= candidate => o,
            _ => candidate,
        };
        self.origin = Some(origin);
        (origin + ts).min(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_channels_by_model() {
        assert_eq!(
            hardware_channel(Model::RaspberryPi4B, 18),
            Some(Channel::Pwm0)
        );
        assert_eq!(
            hardware_channel(Model::RaspberryPi4B, 19),
            Some(Channel::Pwm1)
        );
        assert_eq!(
            hardware_channel(Model::RaspberryPi5, 18),
            Some(Channel::Pwm2)
        );
        assert_eq!(
            hardware_channel(Model::RaspberryPi5, 13),
            Some(Channel::Pwm1)
        );
        assert_eq!(hardware_channel(Model::RaspberryPi4B, 17), None);
    }

    #[test]
    fn edge_clock_keeps_the_earliest_origin() {
        let base = Instant::now() + Duration::from_secs(10);
        let boot = |d: u64| base + Duration::from_millis(d);
        let mut c = EdgeClock::default();
        // Delivered 5 ms late: placed at delivery - 0 (first estimate).
        let ts = Duration::from_secs(100);
        let at = c.instant(ts, boot(5) + ts);
        assert_eq!(at, boot(5) + ts);
        // Delivered 1 ms late: a better origin.
        let ts2 = ts + Duration::from_secs(1);
        assert_eq!(c.instant(ts2, boot(1) + ts2), boot(1) + ts2);
        // Delivered 9 ms late: placed with the better origin, 8 ms earlier.
        let ts3 = ts2 + Duration::from_secs(1);
        assert_eq!(c.instant(ts3, boot(9) + ts3), boot(1) + ts3);
    }

    #[test]
    fn edge_clock_falls_back_to_delivery_for_absurd_stamps() {
        let mut c = EdgeClock::default();
        let now = Instant::now();
        assert_eq!(c.instant(Duration::MAX, now), now);
        // The origin was not disturbed by it.
        let ts = Duration::from_secs(5);
        assert_eq!(c.instant(ts, now + ts), now + ts);
    }

    #[test]
    fn off_a_pi_new_says_not_a_pi() {
        // The build machine and qemu-user are not Pis.
        if std::path::Path::new("/proc/device-tree/model").exists() {
            return;
        }
        assert!(matches!(RppalBackend::new(), Err(OpenError::NotAPi(_))));
    }
}
