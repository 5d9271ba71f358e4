//! The gateway core, sans-IO: [`Gateway::handle`] takes one received message
//! and the current instant and returns the reports to publish;
//! [`Gateway::tick`] runs timers (deadman, tones, input polling, periodic
//! state). No sockets, no clock: the run loop (`rpi-gateway` binary) binds it
//! to the backplane and tests drive it directly.
//!
//! Every message is validated completely before anything changes: bad input
//! produces one `{"report": "error", …}` naming the problem and leaves pins
//! and state untouched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;
use rmpv::Value;

use super::backend::{Backend, Pull};
use super::config::{Config, LedConfig, MotorConfig};
use super::pins::Registry;

/// Largest payload accepted (bytes); larger ones are refused unparsed.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest I2C read/write (bytes).
pub const MAX_I2C_BYTES: usize = 32;
/// PWM frequency of `set_mode_pwm` pins (Hz).
pub const GPIO_PWM_HZ: u32 = 1000;
/// Servo PWM frequency (Hz); pulse 0.5 ms (0°) to 2.5 ms (180°).
pub const SERVO_HZ: u32 = 50;

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Topic.
    pub topic: String,
    /// Payload, a map with a `report` key.
    pub payload: Value,
}

impl Report {
    /// The payload as MessagePack bytes (as Python's `packb`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &self.payload);
        out
    }

    /// The value of the payload's `report` key.
    pub fn kind(&self) -> Option<&str> {
        get(&self.payload, "report").and_then(Value::as_str)
    }

    /// The value of `key` in the payload map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        get(&self.payload, key)
    }
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Counters, published in every state report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handled.
    pub received: u64,
    /// Messages refused with an error report.
    pub errors: u64,
    /// Deadman stops.
    pub deadman_stops: u64,
    /// Messages on topics that only share a prefix with ours (ZeroMQ
    /// subscriptions are prefixes), ignored.
    pub ignored: u64,
}

struct Motor<B: Backend> {
    cfg: MotorConfig,
    pwm: B::Pwm,
    in1: B::Output,
    in2: B::Output,
    speed: f32,
}

impl<B: Backend> Motor<B> {
    /// Drives the H-bridge: direction pins first off, then on, then duty.
    fn set(&mut self, speed: f32) -> Result<(), String> {
        let s = if self.cfg.invert { -speed } else { speed };
        let duty = (s.abs() * self.cfg.max_duty).clamp(0.0, 1.0);
        let max = u32::from(self.pwm.max_duty_cycle());
        let raw = (duty * max as f32).round() as u16;
        let err = |e: &dyn std::fmt::Debug| format!("motor pin: {e:?}");
        // Never both direction pins high: clear the one going low first.
        if s > 0.0 {
            self.in2.set_low().map_err(|e| err(&e))?;
            self.in1.set_high().map_err(|e| err(&e))?;
        } else if s < 0.0 {
            self.in1.set_low().map_err(|e| err(&e))?;
            self.in2.set_high().map_err(|e| err(&e))?;
        } else {
            self.in1.set_low().map_err(|e| err(&e))?;
            self.in2.set_low().map_err(|e| err(&e))?;
        }
        self.pwm.set_duty_cycle(raw).map_err(|e| err(&e))?;
        self.speed = speed;
        Ok(())
    }
}

enum LedPin<B: Backend> {
    OnOff(B::Output),
    Dim(B::Pwm),
}

struct Led<B: Backend> {
    cfg: LedConfig,
    pin: LedPin<B>,
    level: f32,
}

impl<B: Backend> Led<B> {
    fn set(&mut self, level: f32) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Debug| format!("LED pin: {e:?}");
        match &mut self.pin {
            LedPin::OnOff(p) => {
                let on = level > 0.0;
                let high = on != self.cfg.active_low;
                if high {
                    p.set_high().map_err(|e| err(&e))?;
                } else {
                    p.set_low().map_err(|e| err(&e))?;
                }
                self.level = if on { 1.0 } else { 0.0 };
            }
            LedPin::Dim(p) => {
                let l = if self.cfg.active_low {
                    1.0 - level
                } else {
                    level
                };
                let raw = (l * f32::from(p.max_duty_cycle())).round() as u16;
                p.set_duty_cycle(raw).map_err(|e| err(&e))?;
                self.level = level;
            }
        }
        Ok(())
    }
}

enum Gpio<B: Backend> {
    Output(B::Output, bool),
    Input {
        pin: B::Input,
        pullup: bool,
        reporting: bool,
        last: Option<bool>,
    },
    Pwm(B::Pwm, u8),
    Servo(B::Pwm, u8),
    Tone(B::Pwm, Option<(u32, Instant)>),
}

impl<B: Backend> Gpio<B> {
    fn mode(&self) -> &'static str {
        match self {
            Gpio::Output(..) => "digital_output",
            Gpio::Input { pullup: false, .. } => "digital_input",
            Gpio::Input { pullup: true, .. } => "digital_input_pullup",
            Gpio::Pwm(..) => "pwm",
            Gpio::Servo(..) => "servo",
            Gpio::Tone(..) => "tone",
        }
    }

    fn value(&self) -> Value {
        match self {
            Gpio::Output(_, v) => Value::from(u8::from(*v)),
            Gpio::Input { last, .. } => last.map_or(Value::Nil, |v| Value::from(u8::from(v))),
            Gpio::Pwm(_, v) | Gpio::Servo(_, v) => Value::from(*v),
            Gpio::Tone(_, t) => t.map_or(Value::from(0), |(f, _)| Value::from(f)),
        }
    }
}

/// A refused command: the message of the error report.
type Refusal = String;

/// The gateway: configured motors and LEDs, OneGPIO pins, the deadman.
pub struct Gateway<B: Backend> {
    backend: B,
    cfg: Config,
    registry: Registry,
    motors: BTreeMap<String, Motor<B>>,
    leds: BTreeMap<String, Led<B>>,
    gpio: BTreeMap<u8, Gpio<B>>,
    tags: BTreeMap<String, u8>,
    i2c: Option<B::I2c>,
    last_run_motors: Option<Instant>,
    stopped_by: Option<&'static str>,
    next_state: Instant,
    start: (Instant, SystemTime),
    stats: Stats,
}

/// Why [`Gateway::new`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    what: String,
    source: super::backend::Error,
}

impl<B: Backend> Gateway<B> {
    /// Claims every configured motor and LED pin on `backend` and puts them in
    /// the safe state (motors stopped, LEDs off). `now` starts the timers.
    ///
    /// # Errors
    /// [`SetupError`] naming the motor/LED whose pin the backend refused.
    pub fn new(mut backend: B, cfg: Config, now: Instant) -> Result<Self, SetupError> {
        let mut motors = BTreeMap::new();
        for (name, m) in &cfg.motors {
            let ctx = |k: &str| {
                let what = format!("motors.{name}.{k}");
                move |source| SetupError { what, source }
            };
            let pwm = backend.pwm(m.pwm, m.pwm_frequency_hz).map_err(ctx("pwm"))?;
            let in1 = backend.output(m.in1).map_err(ctx("in1"))?;
            let in2 = backend.output(m.in2).map_err(ctx("in2"))?;
            let mut motor = Motor {
                cfg: m.clone(),
                pwm,
                in1,
                in2,
                speed: 0.0,
            };
            let _ = motor.set(0.0);
            motors.insert(name.clone(), motor);
        }
        let mut leds = BTreeMap::new();
        for (name, l) in &cfg.leds {
            let what = format!("leds.{name}.pin");
            let pin = if l.pwm {
                LedPin::Dim(
                    backend
                        .pwm(l.pin, GPIO_PWM_HZ)
                        .map_err(|source| SetupError { what, source })?,
                )
            } else {
                LedPin::OnOff(
                    backend
                        .output(l.pin)
                        .map_err(|source| SetupError { what, source })?,
                )
            };
            let mut led = Led {
                cfg: l.clone(),
                pin,
                level: 0.0,
            };
            let _ = led.set(0.0);
            leds.insert(name.clone(), led);
        }
        Ok(Self {
            registry: Registry::from_config(&cfg),
            backend,
            motors,
            leds,
            gpio: BTreeMap::new(),
            tags: BTreeMap::new(),
            i2c: None,
            last_run_motors: None,
            stopped_by: None,
            next_state: now,
            start: (now, SystemTime::now()),
            stats: Stats::default(),
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The backend (e.g. to observe a [`SimBoard`](super::backend::sim::SimBoard)).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The topics to subscribe to.
    pub fn subscriptions(&self) -> [&str; 3] {
        let t = &self.cfg.topics;
        [&t.run_motors, &t.light_leds, &t.commands]
    }

    /// Current speed of each motor.
    pub fn motor_speeds(&self) -> BTreeMap<String, f32> {
        self.motors
            .iter()
            .map(|(k, m)| (k.clone(), m.speed))
            .collect()
    }

    /// Current level of each LED (0.0–1.0).
    pub fn led_levels(&self) -> BTreeMap<String, f32> {
        self.leds
            .iter()
            .map(|(k, l)| (k.clone(), l.level))
            .collect()
    }

    fn report(&self, payload: Value) -> Report {
        Report {
            topic: self.cfg.topics.reports.clone(),
            payload,
        }
    }

    fn error_report(&mut self, topic: &str, command: Option<&str>, message: &str) -> Report {
        self.stats.errors += 1;
        self.report(map([
            ("report", "error".into()),
            ("topic", topic.into()),
            ("command", command.map_or(Value::Nil, Value::from)),
            ("message", message.into()),
        ]))
    }

    /// The `{"report": "state", …}` report.
    pub fn state_report(&self) -> Report {
        let motors = Value::Map(
            self.motors
                .iter()
                .map(|(k, m)| (k.as_str().into(), f64::from(m.speed).into()))
                .collect(),
        );
        let leds = Value::Map(
            self.leds
                .iter()
                .map(|(k, l)| (k.as_str().into(), f64::from(l.level).into()))
                .collect(),
        );
        let gpio = Value::Map(
            self.gpio
                .iter()
                .map(|(p, g)| {
                    (
                        Value::from(p.to_string()),
                        map([("mode", g.mode().into()), ("value", g.value())]),
                    )
                })
                .collect(),
        );
        self.report(map([
            ("report", "state".into()),
            ("backend", self.backend.name().into()),
            ("motors", motors),
            ("leds", leds),
            ("gpio", gpio),
            (
                "stopped_by",
                self.stopped_by.map_or(Value::Nil, Value::from),
            ),
            ("received", self.stats.received.into()),
            ("errors", self.stats.errors.into()),
            ("deadman_stops", self.stats.deadman_stops.into()),
        ]))
    }

    fn timestamp(&self, now: Instant) -> f64 {
        let wall = self.start.1 + now.saturating_duration_since(self.start.0);
        wall.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// Handles one message received on `topic` at `now`; returns the reports
    /// to publish (an error report for bad input, a state report after a
    /// change, data reports for reads).
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> Vec<Report> {
        if !self.subscriptions().contains(&topic) {
            self.stats.ignored += 1;
            return Vec::new();
        }
        self.stats.received += 1;
        let value = match decode(payload) {
            Ok(v) => v,
            Err(e) => return vec![self.error_report(topic, None, &e)],
        };
        let mut out = Vec::new();
        let result = if topic == self.cfg.topics.run_motors {
            self.run_motors(&value, now).map(|()| true)
        } else if topic == self.cfg.topics.light_leds {
            self.light_leds(&value).map(|()| true)
        } else {
            // The commands topic (the only one left).
            let cmd = get(&value, "command")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match cmd {
                None => Err("missing or non-string field `command`".to_owned()),
                Some(c) => match self.command(&c, &value, now, &mut out) {
                    Ok(changed) => Ok(changed),
                    Err(e) => return vec![self.error_report(topic, Some(&c), &e)],
                },
            }
        };
        match result {
            Ok(changed) => {
                if changed {
                    out.push(self.state_report());
                    self.next_state = now + self.state_interval();
                }
                out
            }
            Err(e) => vec![self.error_report(topic, None, &e)],
        }
    }

    fn state_interval(&self) -> Duration {
        Duration::from_millis(self.cfg.safety.state_interval_ms)
    }

    fn deadman_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.safety.deadman_timeout_ms)
    }

    fn moving(&self) -> bool {
        self.motors.values().any(|m| m.speed != 0.0)
    }

    /// Runs timers at `now`: the deadman, the end of tones, input polling
    /// (`digital_input` reports on change) and the periodic state report.
    pub fn tick(&mut self, now: Instant) -> Vec<Report> {
        let mut out = Vec::new();
        let mut changed = false;
        if self.moving() {
            let expired = self
                .last_run_motors
                .is_none_or(|t| now.saturating_duration_since(t) >= self.deadman_timeout());
            if expired {
                self.stop_motors("deadman");
                self.stats.deadman_stops += 1;
                changed = true;
            }
        }
        for g in self.gpio.values_mut() {
            if let Gpio::Tone(p, t @ Some(_)) = g {
                if t.is_some_and(|(_, until)| now >= until) {
                    let _ = p.set_duty_cycle(0);
                    *t = None;
                    changed = true;
                }
            }
        }
        let ts = self.timestamp(now);
        let mut inputs = Vec::new();
        for (&pin, g) in self.gpio.iter_mut() {
            if let Gpio::Input {
                pin: p,
                reporting,
                last,
                ..
            } = g
            {
                let Ok(level) = p.is_high() else { continue };
                if *last != Some(level) {
                    *last = Some(level);
                    if *reporting {
                        inputs.push((pin, level));
                    }
                }
            }
        }
        for (pin, level) in inputs {
            let mut r = vec![
                ("report", Value::from("digital_input")),
                ("pin", pin.into()),
                ("value", u8::from(level).into()),
                ("timestamp", ts.into()),
            ];
            if let Some(tag) = self.tag_of(pin) {
                r.push(("tag", tag.into()));
            }
            out.push(self.report(Value::Map(
                r.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            )));
        }
        if changed || now >= self.next_state {
            out.push(self.state_report());
            self.next_state = now + self.state_interval();
        }
        out
    }

    /// The next instant [`tick`](Self::tick) has work to do (the run loop
    /// sleeps until then at most). Inputs are polled every 10 ms.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = self.next_state;
        if self.moving() {
            d = d.min(
                self.last_run_motors
                    .map_or(now, |t| t + self.deadman_timeout()),
            );
        }
        for g in self.gpio.values() {
            match g {
                Gpio::Tone(_, Some((_, until))) => d = d.min(*until),
                Gpio::Input { .. } => d = d.min(now + Duration::from_millis(10)),
                _ => {}
            }
        }
        d
    }

    fn tag_of(&self, pin: u8) -> Option<&str> {
        self.tags
            .iter()
            .find(|(_, p)| **p == pin)
            .map(|(t, _)| t.as_str())
    }

    /// Stops every motor (`reason` appears as `stopped_by` in state reports).
    pub fn stop_motors(&mut self, reason: &'static str) {
        for m in self.motors.values_mut() {
            if let Err(e) = m.set(0.0) {
                eprintln!("rpi-gateway: stopping motor failed: {e}");
            }
        }
        self.stopped_by = Some(reason);
    }

    /// Safe state: motors stopped, LEDs off, OneGPIO outputs low, tones off.
    /// Called on exit and by `Drop`.
    pub fn safe_state(&mut self, reason: &'static str) {
        self.stop_motors(reason);
        for l in self.leds.values_mut() {
            let _ = l.set(0.0);
        }
        for g in self.gpio.values_mut() {
            match g {
                Gpio::Output(p, v) => {
                    let _ = p.set_low();
                    *v = false;
                }
                Gpio::Pwm(p, _) | Gpio::Servo(p, _) | Gpio::Tone(p, _) => {
                    let _ = p.set_duty_cycle(0);
                }
                Gpio::Input { .. } => {}
            }
        }
    }

    fn run_motors(&mut self, v: &Value, now: Instant) -> Result<(), Refusal> {
        let entries = v
            .as_map()
            .ok_or("run_motors payload must be a map of motor name to speed")?;
        if entries.is_empty() {
            return Err("run_motors names no motor".into());
        }
        let mut set = Vec::with_capacity(entries.len());
        for (k, val) in entries {
            let name = k.as_str().ok_or("motor names must be strings")?;
            if !self.motors.contains_key(name) {
                return Err(format!(
                    "no motor named {name:?} (configured: {})",
                    self.motors.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let speed = val
                .as_f64()
                .or_else(|| val.as_i64().map(|i| i as f64))
                .ok_or_else(|| format!("speed of {name:?} must be a number"))?;
            if !(-1.0..=1.0).contains(&speed) {
                return Err(format!("speed of {name:?} is {speed}, not in [-1, 1]"));
            }
            set.push((name.to_owned(), speed as f32));
        }
        self.last_run_motors = Some(now);
        self.stopped_by = None;
        for (name, speed) in set {
            if let Some(m) = self.motors.get_mut(&name) {
                m.set(speed)?;
            }
        }
        Ok(())
    }

    fn light_leds(&mut self, v: &Value) -> Result<(), Refusal> {
        let entries = v
            .as_map()
            .ok_or("light_leds payload must be a map of LED name to on/off or brightness")?;
        if entries.is_empty() {
            return Err("light_leds names no LED".into());
        }
        let mut set = Vec::with_capacity(entries.len());
        for (k, val) in entries {
            let name = k.as_str().ok_or("LED names must be strings")?;
            if !self.leds.contains_key(name) {
                return Err(format!(
                    "no LED named {name:?} (configured: {})",
                    self.leds.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let level = match val {
                Value::Boolean(b) => f64::from(u8::from(*b)),
                v => v
                    .as_f64()
                    .or_else(|| v.as_i64().map(|i| i as f64))
                    .ok_or_else(|| format!("{name:?} must be true/false or a brightness"))?,
            };
            if !(0.0..=1.0).contains(&level) {
                return Err(format!("brightness of {name:?} is {level}, not in [0, 1]"));
            }
            set.push((name.to_owned(), level as f32));
        }
        for (name, level) in set {
            if let Some(l) = self.leds.get_mut(&name) {
                l.set(level)?;
            }
        }
        Ok(())
    }

    /// The pin a OneGPIO command addresses: its `pin` field, else its `tag`.
    fn target_pin(&self, v: &Value) -> Result<i64, Refusal> {
        match (get(v, "pin"), get(v, "tag")) {
            (Some(p), _) => p.as_i64().ok_or_else(|| "`pin` must be an integer".into()),
            (None, Some(t)) => {
                let tag = t.as_str().ok_or("`tag` must be a string")?;
                self.tags
                    .get(tag)
                    .map(|p| i64::from(*p))
                    .ok_or_else(|| format!("unknown tag {tag:?} and no `pin`"))
            }
            (None, None) => Err("missing field `pin`".into()),
        }
    }

    fn int(v: &Value, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, Refusal> {
        let x = get(v, key)
            .ok_or_else(|| format!("missing field `{key}`"))?
            .as_i64()
            .ok_or_else(|| format!("`{key}` must be an integer"))?;
        if !range.contains(&x) {
            return Err(format!(
                "`{key}` is {x}, not in {}-{}",
                range.start(),
                range.end()
            ));
        }
        Ok(x)
    }

    /// Claims the pin for OneGPIO and records the tag; the pin's old mode is
    /// released first.
    fn claim(&mut self, v: &Value) -> Result<u8, Refusal> {
        let pin = self.target_pin(v)?;
        let tag = match get(v, "tag") {
            None | Some(Value::Nil) => None,
            Some(t) => Some(t.as_str().ok_or("`tag` must be a string")?.to_owned()),
        };
        let pin = self.registry.claim(pin).map_err(|e| e.to_string())?;
        self.gpio.remove(&pin);
        if let Some(tag) = tag {
            self.tags.insert(tag, pin);
        }
        Ok(pin)
    }

    fn pin_in_mode(&self, v: &Value, want: &str) -> Result<u8, Refusal> {
        let pin = Registry::check_range(self.target_pin(v)?).map_err(|e| e.to_string())?;
        if let Some(by) = match self.registry.owner(pin) {
            Some(super::pins::Owner::Config(by)) => Some(by),
            _ => None,
        } {
            return Err(format!("pin {pin} is owned by {by}"));
        }
        match self.gpio.get(&pin) {
            Some(g)
                if g.mode() == want
                    || (want == "digital_input" && matches!(g, Gpio::Input { .. })) =>
            {
                Ok(pin)
            }
            Some(g) => Err(format!(
                "pin {pin} is in mode {}, not {want} (send set_mode_{want} first)",
                g.mode()
            )),
            None => Err(format!(
                "pin {pin} is not configured (send set_mode_{want} first)"
            )),
        }
    }

    /// Runs one OneGPIO command; `Ok(true)` if state changed.
    fn command(
        &mut self,
        cmd: &str,
        v: &Value,
        now: Instant,
        out: &mut Vec<Report>,
    ) -> Result<bool, Refusal> {
        let be = |e: super::backend::Error| e.to_string();
        let hal = |e: &dyn std::fmt::Debug| format!("pin error: {e:?}");
        match cmd {
            "set_mode_digital_output" => {
                let pin = self.claim_checked(v)?;
                let p = self.backend.output(pin).map_err(be)?;
                self.gpio.insert(pin, Gpio::Output(p, false));
                Ok(true)
            }
            "set_mode_digital_input" | "set_mode_digital_input_pullup" => {
                let pin = self.claim_checked(v)?;
                let pullup = cmd.ends_with("pullup");
                let p = self
                    .backend
                    .input(pin, if pullup { Pull::Up } else { Pull::None })
                    .map_err(be)?;
                self.gpio.insert(
                    pin,
                    Gpio::Input {
                        pin: p,
                        pullup,
                        reporting: true,
                        last: None,
                    },
                );
                Ok(true)
            }
            "set_mode_pwm" => {
                let pin = self.claim_checked(v)?;
                let p = self.backend.pwm(pin, GPIO_PWM_HZ).map_err(be)?;
                self.gpio.insert(pin, Gpio::Pwm(p, 0));
                Ok(true)
            }
            "set_mode_servo" => {
                let pin = self.claim_checked(v)?;
                let p = self.backend.pwm(pin, SERVO_HZ).map_err(be)?;
                self.gpio.insert(pin, Gpio::Servo(p, 0));
                Ok(true)
            }
            "set_mode_tone" => {
                let pin = self.claim_checked(v)?;
                let p = self.backend.pwm(pin, GPIO_PWM_HZ).map_err(be)?;
                self.gpio.insert(pin, Gpio::Tone(p, None));
                Ok(true)
            }
            "digital_write" => {
                let pin = self.pin_in_mode(v, "digital_output")?;
                let value = Self::int(v, "value", 0..=1)? == 1;
                if let Some(Gpio::Output(p, cur)) = self.gpio.get_mut(&pin) {
                    if value { p.set_high() } else { p.set_low() }.map_err(|e| hal(&e))?;
                    *cur = value;
                }
                Ok(true)
            }
            "pwm_write" => {
                let pin = self.pin_in_mode(v, "pwm")?;
                let value = Self::int(v, "value", 0..=255)? as u8;
                if let Some(Gpio::Pwm(p, cur)) = self.gpio.get_mut(&pin) {
                    p.set_duty_cycle_fraction(u16::from(value), 255)
                        .map_err(|e| hal(&e))?;
                    *cur = value;
                }
                Ok(true)
            }
            "servo_position" => {
                let pin = self.pin_in_mode(v, "servo")?;
                let pos = Self::int(v, "position", 0..=180)? as u8;
                if let Some(Gpio::Servo(p, cur)) = self.gpio.get_mut(&pin) {
                    // 0.5 ms + pos/180 * 2 ms of a 20 ms period, in µs.
                    let us = 500 + u32::from(pos) * 2000 / 180;
                    let max = u32::from(p.max_duty_cycle());
                    p.set_duty_cycle((us * max / 20_000) as u16)
                        .map_err(|e| hal(&e))?;
                    *cur = pos;
                }
                Ok(true)
            }
            "play_tone" => {
                let pin = Registry::check_range(self.target_pin(v)?).map_err(|e| e.to_string())?;
                let freq = Self::int(v, "frequency", 1..=20_000)
                    .or_else(|_| Self::int(v, "freq", 1..=20_000))?
                    as u32;
                let ms = Self::int(v, "duration", 1..=60_000)? as u64;
                if !matches!(self.gpio.get(&pin), Some(Gpio::Tone(..))) {
                    self.claim_checked(v)?;
                }
                // A new frequency needs a new PWM; the old one is dropped first.
                self.gpio.remove(&pin);
                let mut p = self.backend.pwm(pin, freq).map_err(be)?;
                p.set_duty_cycle_fraction(1, 2).map_err(|e| hal(&e))?;
                self.gpio.insert(
                    pin,
                    Gpio::Tone(p, Some((freq, now + Duration::from_millis(ms)))),
                );
                Ok(true)
            }
            "enable_digital_reporting" | "disable_digital_reporting" => {
                let pin = self.pin_in_mode(v, "digital_input")?;
                if let Some(Gpio::Input {
                    reporting, last, ..
                }) = self.gpio.get_mut(&pin)
                {
                    *reporting = cmd.starts_with("enable");
                    // Enabling reports the current level on the next tick.
                    *last = None;
                }
                Ok(false)
            }
            "i2c_read" => {
                let addr = Self::int(v, "addr", 0..=0x7F)? as u8;
                let reg = Self::int(v, "register", 0..=255)? as u8;
                let n = Self::int(v, "number_of_bytes", 1..=MAX_I2C_BYTES as i64)? as usize;
                let bus = self.i2c_bus()?;
                let mut buf = vec![0u8; n];
                bus.write_read(addr, &[reg], &mut buf)
                    .map_err(|e| format!("i2c_read at 0x{addr:02x}: {e:?}"))?;
                let mut r = vec![
                    ("report", Value::from("i2c_data")),
                    ("addr", addr.into()),
                    ("register", reg.into()),
                    (
                        "value",
                        Value::Array(buf.into_iter().map(Value::from).collect()),
                    ),
                ];
                if let Some(t) = get(v, "tag").and_then(Value::as_str) {
                    r.push(("tag", t.into()));
                }
                out.push(self.report(Value::Map(
                    r.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                )));
                Ok(false)
            }
            "i2c_write" => {
                let addr = Self::int(v, "addr", 0..=0x7F)? as u8;
                let data = get(v, "data")
                    .ok_or("missing field `data`")?
                    .as_array()
                    .ok_or("`data` must be an array of bytes")?;
                if data.is_empty() || data.len() > MAX_I2C_BYTES {
                    return Err(format!("`data` must hold 1-{MAX_I2C_BYTES} bytes"));
                }
                let bytes = data
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or("`data` must hold integers 0-255")?;
                let bus = self.i2c_bus()?;
                bus.write(addr, &bytes)
                    .map_err(|e| format!("i2c_write at 0x{addr:02x}: {e:?}"))?;
                Ok(false)
            }
            "set_mode_analog_input" | "enable_analog_reporting" | "disable_analog_reporting" => {
                Err("the Raspberry Pi has no analog inputs".into())
            }
            "set_mode_sonar" | "set_mode_stepper" | "stepper_write" => {
                Err(format!("{cmd} is not supported by rpi-gateway"))
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn claim_checked(&mut self, v: &Value) -> Result<u8, Refusal> {
        self.claim(v)
    }

    fn i2c_bus(&mut self) -> Result<&mut B::I2c, Refusal> {
        if self.i2c.is_none() {
            self.i2c = Some(self.backend.i2c().map_err(|e| e.to_string())?);
        }
        self.i2c.as_mut().ok_or_else(|| "no I2C bus".into())
    }
}

impl<B: Backend> Drop for Gateway<B> {
    fn drop(&mut self) {
        self.safe_state("exit");
    }
}

/// Decodes one untrusted payload: a single MessagePack map, nothing after it.
fn decode(payload: &[u8]) -> Result<Value, Refusal> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes exceeds {MAX_PAYLOAD}",
            payload.len()
        ));
    }
    let mut rd = payload;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, 16)
        .map_err(|e| format!("malformed MessagePack: {e}"))?;
    if !rd.is_empty() {
        return Err(format!("{} bytes after the MessagePack value", rd.len()));
    }
    if !v.is_map() {
        return Err("payload must be a MessagePack map".into());
    }
    Ok(v)
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
