//! Pin ownership: a pin driving a motor or an LED cannot be claimed by a
//! OneGPIO command, and every pin number is checked against BCM 0–27.

use std::collections::BTreeMap;
use std::fmt;

use super::config::{Config, MAX_BCM_PIN};

/// Who owns a pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A configured motor's pin (`motors.left.pwm`, …).
    Config(String),
    /// A OneGPIO command configured it.
    OneGpio,
}

/// Why a pin cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a BCM pin of the 40-pin header.
    OutOfRange(i64),
    /// Owned by a motor or LED (the config key).
    Owned(u8, String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::OutOfRange(p) => write!(f, "pin {p} is outside BCM 0-{MAX_BCM_PIN}"),
            Refused::Owned(p, by) => write!(f, "pin {p} is owned by {by}"),
        }
    }
}

/// The ownership table.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    owners: BTreeMap<u8, Owner>,
}

impl Registry {
    /// A table with every motor and LED pin of `cfg` owned by its config key.
    pub fn from_config(cfg: &Config) -> Self {
        let mut owners = BTreeMap::new();
        for (name, m) in &cfg.motors {
            for (k, p) in [("pwm", m.pwm), ("in1", m.in1), ("in2", m.in2)] {
                owners.insert(p, Owner::Config(format!("motors.{name}.{k}")));
            }
        }
        for (name, l) in &cfg.leds {
            owners.insert(l.pin, Owner::Config(format!("leds.{name}")));
        }
        Self { owners }
    }

    /// Checks that `pin` is a BCM pin free for OneGPIO use (unowned or
    /// already OneGPIO's) and marks it OneGPIO's.
    ///
    /// # Errors
    /// [`Refused`] saying why.
    pub fn claim(&mut self, pin: i64) -> Result<u8, Refused> {
        let p = Self::check_range(pin)?;
        match self.owners.get(&p) {
            Some(Owner::Config(by)) => Err(Refused::Owned(p, by.clone())),
            _ => {
                self.owners.insert(p, Owner::OneGpio);
                Ok(p)
            }
        }
    }

    /// Checks only the range.
    ///
    /// # Errors
    /// [`Refused::OutOfRange`].
    pub fn check_range(pin: i64) -> Result<u8, Refused> {
        u8::try_from(pin)
            .ok()
            .filter(|p| *p <= MAX_BCM_PIN)
            .ok_or(Refused::OutOfRange(pin))
    }

    /// The owner of `pin`.
    pub fn owner(&self, pin: u8) -> Option<&Owner> {
        self.owners.get(&pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pins_are_refused_others_claimed() {
        let mut r = Registry::from_config(&Config::default());
        assert_eq!(
            r.claim(18),
            Err(Refused::Owned(18, "motors.left.pwm".into()))
        );
        assert_eq!(r.claim(17), Err(Refused::Owned(17, "leds.status".into())));
        assert_eq!(r.claim(4), Ok(4));
        assert_eq!(r.claim(4), Ok(4));
        assert_eq!(r.owner(4), Some(&Owner::OneGpio));
        assert_eq!(r.claim(28), Err(Refused::OutOfRange(28)));
        assert_eq!(r.claim(-1), Err(Refused::OutOfRange(-1)));
        assert!(r
            .claim(28)
            .unwrap_err()
            .to_string()
            .contains("outside BCM 0-27"));
    }
}
