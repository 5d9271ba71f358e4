//! The gateway's TOML configuration: motors, LEDs, safety timeouts, topics and
//! the backplane address.
//!
//! Parse with [`Config::from_toml_str`] or [`Config::load`]; both reject
//! unknown keys and validate pins (BCM 0–27, no pin used twice) and values, and
//! their errors name the offending key. [`Config::default`] is the documented
//! default robot, identical to `deploy/rpi-gateway.toml`: two motors `left` and
//! `right` on a TB6612FNG or L298N H-bridge and two LEDs `status` and
//! `headlight`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Highest BCM GPIO number on the 40-pin header.
pub const MAX_BCM_PIN: u8 = 27;

/// The default configuration file, also installed as
/// `/etc/banyan/rpi-gateway.toml` by the deployment guide.
pub const DEFAULT_TOML: &str = include_str!("../../../deploy/rpi-gateway.toml");

/// A configuration error. Its message names the offending key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read: check the `--config` path and permissions.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("bad config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or conflicts with another one; `key` is the
    /// dotted path of the offending key.
    #[error("bad config: {key}: {problem}")]
    Invalid {
        /// Dotted key, e.g. `motors.left.pwm`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Where the backplane is.
    pub backplane: Backplane,
    /// Topic names.
    pub topics: Topics,
    /// Deadman and state publishing periods.
    pub safety: Safety,
    /// Motors by name (`[motors.left]`, …).
    pub motors: BTreeMap<String, MotorConfig>,
    /// LEDs by name (`[leds.status]`, …).
    pub leds: BTreeMap<String, LedConfig>,
}

/// `[backplane]`: the backplane's address and ports (the `-b`, `-p`, `-s`
/// flags override these).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Backplane {
    /// IP address or host name of the backplane.
    pub address: String,
    /// The backplane's publisher port (components publish here), 43124.
    pub publisher_port: u16,
    /// The backplane's subscriber port (components subscribe here), 43125.
    pub subscriber_port: u16,
}

impl Default for Backplane {
    fn default() -> Self {
        Self {
            address: "127.0.0.1".into(),
            publisher_port: 43124,
            subscriber_port: 43125,
        }
    }
}

/// `[topics]`: the topics the gateway subscribes to and reports on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Topics {
    /// Motor commands, `run_motors`.
    pub run_motors: String,
    /// LED commands, `light_leds`.
    pub light_leds: String,
    /// OneGPIO commands, `to_rpi_gateway`.
    pub commands: String,
    /// Reports (state, errors, inputs), `from_rpi_gateway`.
    pub reports: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            run_motors: "run_motors".into(),
            light_leds: "light_leds".into(),
            commands: "to_rpi_gateway".into(),
            reports: "from_rpi_gateway".into(),
        }
    }
}

/// `[safety]`: timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Safety {
    /// Motors stop when no `run_motors` arrived for this long (ms, > 0).
    pub deadman_timeout_ms: u64,
    /// A `state` report is published at least this often (ms, > 0).
    pub state_interval_ms: u64,
    /// Longest timed run (`run_motors` with `duration_ms`) accepted, in ms;
    /// a longer one is refused with an error report (a timed run replaces
    /// the deadman for its duration, so this bounds how long motors run
    /// with nobody talking to the gateway). Default 10,000; 0 refuses every
    /// timed run.
    pub max_run_ms: u64,
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            deadman_timeout_ms: 500,
            state_interval_ms: 1000,
            max_run_ms: 10_000,
        }
    }
}

/// `[motors.NAME]`: one DC motor on an H-bridge channel (TB6612FNG: PWMx,
/// xIN1, xIN2; L298N: ENx, INx, INx+1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MotorConfig {
    /// BCM pin of the speed (PWM/enable) input.
    pub pwm: u8,
    /// BCM pin of the first direction input (high for forward).
    pub in1: u8,
    /// BCM pin of the second direction input (high for backward).
    pub in2: u8,
    /// Swap forward and backward (a motor mounted mirrored).
    #[serde(default)]
    pub invert: bool,
    /// Largest duty cycle ever applied, in (0, 1].
    #[serde(default = "one")]
    pub max_duty: f32,
    /// PWM frequency in Hz (1–100000).
    #[serde(default = "motor_freq")]
    pub pwm_frequency_hz: u32,
}

fn one() -> f32 {
    1.0
}
fn motor_freq() -> u32 {
    1000
}

/// `[leds.NAME]`: one LED.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LedConfig {
    /// BCM pin.
    pub pin: u8,
    /// Dimmable by PWM (otherwise on/off).
    #[serde(default)]
    pub pwm: bool,
    /// The LED is lit when the pin is low.
    #[serde(default)]
    pub active_low: bool,
}

impl Default for Config {
    /// The documented default robot (`deploy/rpi-gateway.toml`).
    fn default() -> Self {
        let mut motors = BTreeMap::new();
        motors.insert(
            "left".into(),
            MotorConfig {
                pwm: 18,
                in1: 5,
                in2: 6,
                invert: false,
                max_duty: 1.0,
                pwm_frequency_hz: 1000,
            },
        );
        motors.insert(
            "right".into(),
            MotorConfig {
                pwm: 19,
                in1: 20,
                in2: 21,
                invert: false,
                max_duty: 1.0,
                pwm_frequency_hz: 1000,
            },
        );
        let mut leds = BTreeMap::new();
        leds.insert(
            "status".into(),
            LedConfig {
                pin: 17,
                pwm: false,
                active_low: false,
            },
        );
        leds.insert(
            "headlight".into(),
            LedConfig {
                pin: 16,
                pwm: true,
                active_low: false,
            },
        );
        Self {
            backplane: Backplane::default(),
            topics: Topics::default(),
            safety: Safety::default(),
            motors,
            leds,
        }
    }
}

fn invalid(key: impl Into<String>, problem: impl fmt::Display) -> Error {
    Error::Invalid {
        key: key.into(),
        problem: problem.to_string(),
    }
}

impl Config {
    /// Parses and validates a TOML document. Missing sections take their
    /// defaults; a file without `[motors.*]`/`[leds.*]` tables has none.
    ///
    /// # Errors
    /// [`Error::Parse`] for malformed TOML, unknown keys or wrong types;
    /// [`Error::Invalid`] for values that fail [`Config::validate`].
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let mut cfg: Config = toml::from_str(text)?;
        // `#[serde(default)]` on the struct would fill absent tables with the
        // default robot; a file lists its own motors and LEDs.
        let raw: toml::Table = toml::from_str(text)?;
        if !raw.contains_key("motors") {
            cfg.motors.clear();
        }
        if !raw.contains_key("leds") {
            cfg.leds.clear();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file.
    ///
    /// # Errors
    /// [`Error::Read`] if the file cannot be read, otherwise as
    /// [`Config::from_toml_str`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks ranges and that no pin is used twice.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first offending key.
    pub fn validate(&self) -> Result<(), Error> {
        let t = &self.topics;
        for (key, v) in [
            ("topics.run_motors", &t.run_motors),
            ("topics.light_leds", &t.light_leds),
            ("topics.commands", &t.commands),
            ("topics.reports", &t.reports),
        ] {
            if v.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.backplane.address.is_empty() {
            return Err(invalid("backplane.address", "must not be empty"));
        }
        if self.safety.deadman_timeout_ms == 0 {
            return Err(invalid("safety.deadman_timeout_ms", "must be > 0"));
        }
        if self.safety.state_interval_ms == 0 {
            return Err(invalid("safety.state_interval_ms", "must be > 0"));
        }
        let mut used: BTreeMap<u8, String> = BTreeMap::new();
        let mut claim = |key: String, pin: u8| -> Result<(), Error> {
            if pin > MAX_BCM_PIN {
                return Err(invalid(
                    key,
                    format_args!("pin {pin} is outside BCM 0-{MAX_BCM_PIN}"),
                ));
            }
            if let Some(other) = used.get(&pin) {
                return Err(invalid(
                    key,
                    format_args!("pin {pin} is already used by {other}"),
                ));
            }
            used.insert(pin, key);
            Ok(())
        };
        for (name, m) in &self.motors {
            check_name("motors", name)?;
            claim(format!("motors.{name}.pwm"), m.pwm)?;
            claim(format!("motors.{name}.in1"), m.in1)?;
            claim(format!("motors.{name}.in2"), m.in2)?;
            if !(m.max_duty > 0.0 && m.max_duty <= 1.0) {
                return Err(invalid(
                    format!("motors.{name}.max_duty"),
                    format_args!("{} is not in (0, 1]", m.max_duty),
                ));
            }
            if !(1..=100_000).contains(&m.pwm_frequency_hz) {
                return Err(invalid(
                    format!("motors.{name}.pwm_frequency_hz"),
                    format_args!("{} is not in 1-100000", m.pwm_frequency_hz),
                ));
            }
        }
        for (name, l) in &self.leds {
            check_name("leds", name)?;
            claim(format!("leds.{name}.pin"), l.pin)?;
        }
        Ok(())
    }
}

fn check_name(table: &str, name: &str) -> Result<(), Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            format!("{table}.{name:?}"),
            "names use letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_default_parses_and_equals_default() {
        let cfg = Config::from_toml_str(DEFAULT_TOML).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.motors.len(), 2);
        assert!(cfg.leds.contains_key("status"));
    }

    #[test]
    fn empty_file_has_defaults_but_no_actuators() {
        let cfg = Config::from_toml_str("").unwrap();
        assert!(cfg.motors.is_empty() && cfg.leds.is_empty());
        assert_eq!(cfg.safety.deadman_timeout_ms, 500);
        assert_eq!(cfg.topics.reports, "from_rpi_gateway");
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[motors.left]\npwm = 18\nin1 = 5\nin2 = 6\nspeed = 3\n");
        assert!(e.contains("unknown field `speed`"), "{e}");
        let e = err("[safety]\ndeadman = 3\n");
        assert!(e.contains("unknown field `deadman`"), "{e}");
    }

    #[test]
    fn wrong_type_and_missing_key_are_named() {
        let e = err("[motors.left]\npwm = \"x\"\nin1 = 5\nin2 = 6\n");
        assert!(e.contains("pwm"), "{e}");
        let e = err("[leds.a]\npwm = true\n");
        assert!(e.contains("missing field `pin`"), "{e}");
    }

    #[test]
    fn pin_out_of_range_is_named() {
        let e = err("[leds.a]\npin = 28\n");
        assert!(e.contains("leds.a.pin") && e.contains("28"), "{e}");
    }

    #[test]
    fn duplicate_pin_names_both_keys() {
        let e = err("[motors.m]\npwm = 18\nin1 = 5\nin2 = 6\n[leds.a]\npin = 5\n");
        assert!(
            e.contains("leds.a.pin") && e.contains("motors.m.in1"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = err("[motors.m]\npwm = 18\nin1 = 5\nin2 = 6\nmax_duty = 1.5\n");
        assert!(e.contains("motors.m.max_duty"), "{e}");
        let e = err("[safety]\ndeadman_timeout_ms = 0\n");
        assert!(e.contains("safety.deadman_timeout_ms"), "{e}");
        let e = err("[topics]\nreports = \"\"\n");
        assert!(e.contains("topics.reports"), "{e}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = Config::load(Path::new("/nonexistent/rpi.toml")).unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
    }
}
