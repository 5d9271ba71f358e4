//! The gateway core, sans-IO: [`Gateway::handle`] takes one received message
//! and the current instant and returns the reports to publish;
//! [`Gateway::tick`] runs timers (deadman, tones, input polling, periodic
//! state). No sockets, no clock: the run loop ([`super::run`]) binds it to the
//! backplane and tests drive it directly.
//!
//! Commands are parsed by the core's [`banyan_core::cmd`] (`RunMotors`,
//! `LightLeds`, `OneGpio`); motors and LEDs are the core's
//! [`banyan_core::actuator`] types (`DualMotor` in a `MotorSet` with its
//! deadman, `Led`, `PwmLed`) over the backend's `embedded-hal` pins; reports
//! use the core's encoders where one exists (`error`, `digital_input`,
//! `i2c_data`).
//!
//! Every message is validated completely before anything changes: bad input
//! produces one `{"report": "error", "topic": …, "reason": …}` naming the
//! problem and leaves pins and state untouched.
//!
//! # Digital inputs
//! A `set_mode_digital_input(_pullup)` pin is *watched* when the backend can
//! ([`Backend::watch`]): its edges arrive in the gateway's
//! [`EdgeQueue`] and [`Gateway::tick`] reports
//! each change with the edge's own timestamp, so a pulse shorter than any
//! tick interval still gives two reports. The run loop polls
//! [`Gateway::wake_fd`] to tick as soon as an edge arrives; no timer runs for
//! watched pins. Pins the backend cannot watch are read every
//! [`INPUT_POLL`] instead. Either way only changes are reported, and only
//! while reporting is enabled; the first tick after configuring a pin or
//! enabling its reporting reports the current level.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use banyan_core::actuator::{self, DualMotor, PwmLed, SetBrightness};
use banyan_core::cmd::{report, OneGpio, PinRef};
use banyan_core::robot::{self, Outcome, Robot, StoppedBy, Topics};
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;
use rmpv::Value;

use super::backend::{Backend, EdgeQueue, Pull};
use super::config::Config;
use super::pins::{Owner, Registry};

/// Most motors (and most LEDs) a configuration may name.
pub const MAX_ACTUATORS: usize = 16;
/// PWM frequency of `set_mode_pwm` pins and dimmable LEDs (Hz).
pub const GPIO_PWM_HZ: u32 = 1000;
/// Servo PWM frequency (Hz); pulse 0.5 ms (0°) to 2.5 ms (180°).
pub const SERVO_HZ: u32 = 50;
/// Largest I2C read (bytes).
pub const MAX_I2C_READ: usize = 32;
/// How often digital inputs that the backend cannot watch are polled.
pub const INPUT_POLL: Duration = Duration::from_millis(10);

/// The services the gateway answers through the services broker
/// (`docs/rpi-gateway.md`, "Services"), as [`Gateway::serve`] names them;
/// the broker's names are prefixed with the gateway's name and a dot
/// (`rpi-gateway.state`).
pub const SERVICES: [&str; 4] = ["state", "status", "i2c_read", "digital_read"];

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Topic.
    pub topic: String,
    /// MessagePack payload: a map with a `report` key.
    pub payload: Vec<u8>,
}

impl Report {
    /// The payload decoded (for tests and the demo's display).
    pub fn value(&self) -> Value {
        rmpv::decode::read_value(&mut &self.payload[..]).unwrap_or(Value::Nil)
    }

    /// The payload's `report` key.
    pub fn kind(&self) -> Option<String> {
        get(&self.value(), "report")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// The value of `key` in a map `Value`.
pub fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Counters, published in every state report (serialized from this struct,
/// so a new counter is published without further code).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handled (on our exact topics).
    pub received: u64,
    /// Messages refused with an error report.
    pub errors: u64,
    /// Deadman stops of moving motors.
    pub deadman_stops: u64,
    /// Messages on topics that only share a prefix with ours (ZeroMQ
    /// subscriptions are prefixes), ignored.
    pub ignored: u64,
    /// Edges of watched inputs taken from the edge queue (reported or not).
    pub input_edges: u64,
    /// Edges dropped because their pin is no longer watched by the watch
    /// that produced them (reconfigured or released).
    pub stale_edges: u64,
    /// Edges dropped because the edge queue was full
    /// ([`EDGE_QUEUE_CAPACITY`](super::backend::EDGE_QUEUE_CAPACITY)).
    pub edge_overflows: u64,
    /// `run_motors` commands dropped unhandled because a newer one replaced
    /// them while they were queued (set by the run loop, see
    /// [`Gateway::set_loop_counters`]).
    pub stale: u64,
    /// Log lines lost (rate limit or blocked stderr; set by the run loop).
    pub log_lost: u64,
}

type Motor<B> = DualMotor<<B as Backend>::Pwm, <B as Backend>::Output, <B as Backend>::Output>;

enum Led<B: Backend> {
    OnOff(actuator::Led<B::Output>),
    Dim(PwmLed<B::Pwm>),
}

impl<B: Backend> Led<B> {
    fn set(&mut self, level: f32) -> Result<(), String> {
        match self {
            Led::OnOff(l) => l.set_brightness(level).map_err(|e| e.to_string()),
            Led::Dim(l) => l.set_brightness(level).map_err(|e| e.to_string()),
        }
    }

    fn level(&self) -> f32 {
        match self {
            Led::OnOff(l) => l.is_on().map_or(0.0, |on| f32::from(u8::from(on))),
            Led::Dim(l) => l.brightness().unwrap_or(0.0),
        }
    }
}

impl<B: Backend> SetBrightness for Led<B> {
    type Error = String;

    fn set_brightness(&mut self, brightness: f32) -> Result<(), String> {
        self.set(brightness)
    }
}

enum Gpio<B: Backend> {
    Output(B::Output, bool),
    Input {
        pin: B::Input,
        pullup: bool,
        reporting: bool,
        last: Option<bool>,
        /// The watch id when the backend reports this pin's edges; `None`:
        /// polled.
        watch: Option<u32>,
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

/// The mode a command needs its pin in (also the suffix of `set_mode_…`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Output,
    Input,
    Pwm,
    Servo,
}

impl Need {
    fn name(self) -> &'static str {
        match self {
            Need::Output => "digital_output",
            Need::Input => "digital_input",
            Need::Pwm => "pwm",
            Need::Servo => "servo",
        }
    }
}

/// Why [`Gateway::new`] failed: the key of the motor/LED whose pin the
/// backend refused, and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SetupError {
    key: String,
    reason: String,
}

/// The gateway: configured motors and LEDs, OneGPIO pins, the deadman.
pub struct Gateway<B: Backend> {
    // Declared first so it is dropped first: motors stop before anything else.
    // The core's robot model (run_motors, light_leds, deadman, state and
    // error reports): the same code as the firmware's.
    robot: Robot<Motor<B>, Led<B>, MAX_ACTUATORS, MAX_ACTUATORS>,
    gpio: BTreeMap<u8, Gpio<B>>,
    tags: BTreeMap<String, u8>,
    i2c: Option<B::I2c>,
    // After `gpio`: watched inputs stop pushing before the queue goes.
    edges: EdgeQueue,
    backend: B,
    cfg: Config,
    registry: Registry,
    next_state: Instant,
    start: (Instant, SystemTime),
    stats: Stats,
}

impl<B: Backend> Gateway<B> {
    /// Claims every configured motor and LED pin on `backend` and puts them in
    /// the safe state (motors stopped, LEDs off). `now` starts the timers.
    ///
    /// # Errors
    /// [`SetupError`] naming the motor/LED whose pin the backend refused.
    pub fn new(mut backend: B, cfg: Config, now: Instant) -> Result<Self, SetupError> {
        let fail = |key: String, reason: &dyn Display| SetupError {
            key,
            reason: reason.to_string(),
        };
        if cfg.motors.len() > MAX_ACTUATORS || cfg.leds.len() > MAX_ACTUATORS {
            return Err(fail(
                "motors/leds".into(),
                &format_args!("at most {MAX_ACTUATORS} of each"),
            ));
        }
        let mut robot = Robot::new(cfg.safety.deadman_timeout_ms);
        robot.set_max_run_ms(cfg.safety.max_run_ms);
        // Names and topics live as long as the process; leaked once at
        // start-up.
        robot.set_topics(Topics {
            run_motors: String::leak(cfg.topics.run_motors.clone()),
            light_leds: String::leak(cfg.topics.light_leds.clone()),
        });
        for (name, m) in &cfg.motors {
            let key = |k: &str| format!("motors.{name}.{k}");
            let pwm = backend
                .pwm(m.pwm, m.pwm_frequency_hz)
                .map_err(|e| fail(key("pwm"), &e))?;
            let in1 = backend.output(m.in1).map_err(|e| fail(key("in1"), &e))?;
            let in2 = backend.output(m.in2).map_err(|e| fail(key("in2"), &e))?;
            let mc = actuator::Config::new()
                .with_invert(m.invert)
                .with_max_duty(m.max_duty)
                .map_err(|e| fail(key("max_duty"), &e))?;
            let motor = DualMotor::new(pwm, in1, in2, mc);
            let name: &'static str = String::leak(name.clone());
            // The robot stops the motor as it takes it (a known state).
            let pin_errors = robot.stats().pin_errors;
            robot
                .add_motor(name, motor)
                .map_err(|e| fail(format!("motors.{name}"), &e))?;
            if robot.stats().pin_errors != pin_errors {
                return Err(fail(key("pwm"), &"stopping the motor failed"));
            }
        }
        for (name, l) in &cfg.leds {
            let key = format!("leds.{name}.pin");
            let led = if l.pwm {
                let p = backend
                    .pwm(l.pin, GPIO_PWM_HZ)
                    .map_err(|e| fail(key.clone(), &e))?;
                Led::Dim(PwmLed::new(p, l.active_low))
            } else {
                let p = backend.output(l.pin).map_err(|e| fail(key.clone(), &e))?;
                Led::OnOff(actuator::Led::new(p, l.active_low))
            };
            // The robot switches the LED off as it takes it.
            let pin_errors = robot.stats().pin_errors;
            robot
                .add_led(String::leak(name.clone()), led)
                .map_err(|e| fail(format!("leds.{name}"), &e))?;
            if robot.stats().pin_errors != pin_errors {
                return Err(fail(key, &"switching the LED off failed"));
            }
        }
        Ok(Self {
            registry: Registry::from_config(&cfg),
            backend,
            robot,
            gpio: BTreeMap::new(),
            tags: BTreeMap::new(),
            i2c: None,
            edges: EdgeQueue::new(),
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
        let robot = self.robot.stats();
        Stats {
            edge_overflows: self.edges.overflowed(),
            deadman_stops: u64::from(robot.deadman_stops) + u64::from(robot.run_ends),
            ..self.stats
        }
    }

    /// Records the run loop's counters ([`Stats::stale`], [`Stats::log_lost`])
    /// for the state reports.
    pub fn set_loop_counters(&mut self, stale: u64, log_lost: u64) {
        self.stats.stale = stale;
        self.stats.log_lost = log_lost;
    }

    /// A file descriptor that becomes readable when an input edge arrives:
    /// poll it with the component's sockets and [`tick`](Self::tick) when it
    /// is readable (`tick` clears it). `None` when edges cannot wake the
    /// loop; inputs are then polled.
    pub fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        self.edges.wake_fd()
    }

    /// Whether `pin` is a digital input whose edges the backend reports (not
    /// polled).
    pub fn is_watched(&self, pin: u8) -> bool {
        matches!(
            self.gpio.get(&pin),
            Some(Gpio::Input { watch: Some(_), .. })
        )
    }

    /// The topics to subscribe to.
    pub fn subscriptions(&self) -> [&str; 3] {
        let t = &self.cfg.topics;
        [&t.run_motors, &t.light_leds, &t.commands]
    }

    /// Current speed of each motor (0 when unknown after a pin failure).
    pub fn motor_speeds(&self) -> BTreeMap<String, f32> {
        self.robot
            .motor_names()
            .iter()
            .map(|&k| {
                let speed = self.robot.motor(k).and_then(|m| m.speed());
                (k.to_owned(), speed.unwrap_or(0.0))
            })
            .collect()
    }

    /// Current level of each LED (0.0–1.0).
    pub fn led_levels(&self) -> BTreeMap<String, f32> {
        self.robot
            .led_names()
            .iter()
            .map(|&k| (k.to_owned(), self.robot.led(k).map_or(0.0, Led::level)))
            .collect()
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start.0).as_millis() as u64
    }

    fn timestamp(&self, now: Instant) -> f64 {
        let wall = self.start.1 + now.saturating_duration_since(self.start.0);
        wall.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    fn report_bytes(&self, payload: Vec<u8>) -> Report {
        Report {
            topic: self.cfg.topics.reports.clone(),
            payload,
        }
    }

    /// Encodes with one of the core's report encoders, growing the buffer
    /// until it fits.
    fn core_report(
        &self,
        size: usize,
        mut f: impl FnMut(&mut [u8]) -> Result<usize, banyan_core::msg::Error>,
    ) -> Report {
        let mut buf = vec![0u8; size.max(256)];
        loop {
            match f(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return self.report_bytes(buf);
                }
                Err(_) if buf.len() < 1 << 20 => {
                    let n = buf.len() * 4;
                    buf.resize(n, 0);
                }
                Err(e) => {
                    // Cannot happen for our reports; never panic over it.
                    log::error!("report not encodable: {e}");
                    return self.report_bytes(Vec::new());
                }
            }
        }
    }

    /// An error report for a message refused before it reached
    /// [`handle`](Self::handle) (e.g. malformed frames), counted in
    /// [`Stats::errors`]. Same shape as every error report (the core's
    /// [`robot::error_report`]), with `command` nil.
    pub fn error_report(&mut self, topic: &str, reason: &dyn Display) -> Report {
        self.refusal(topic, reason, &[])
    }

    /// `{"report": "error", "topic", "reason", "command"}` echoing the
    /// refused payload, counted in [`Stats::errors`].
    fn refusal(&mut self, topic: &str, reason: &dyn Display, payload: &[u8]) -> Report {
        self.stats.errors += 1;
        self.core_report(payload.len() + 256, |buf| {
            robot::error_report(buf, topic, reason, payload)
        })
    }

    /// The robot's state report, byte for byte the core's contract shared
    /// with the firmware ([`banyan_core::robot`], docs/robot-protocol.md):
    /// `{"report": "state", "motors": {name: speed as sent}, "leds": {name:
    /// level}, "stopped_by": nil | "deadman" | "run_end" | "backplane_lost" |
    /// "exit" | "pin_failure"}`.
    pub fn state_report(&self) -> Report {
        self.core_report(256, |buf| self.robot.state_report(buf))
    }

    /// The gateway's status report (what the firmware's `stats` report is
    /// for a device): `{"report": "status", "backend": "sim" | "rppal",
    /// "gpio": {"4": {"mode": "digital_output", "value": 1}}, "robot": {the
    /// robot's counters}}` plus every counter of [`Stats`] under its field
    /// name (`received`, `errors`, `deadman_stops`, `ignored`,
    /// `input_edges`, `stale_edges`, `edge_overflows`, `stale`,
    /// `log_lost`). Sent after a OneGPIO change and with every periodic
    /// state report.
    pub fn status_report(&self) -> Report {
        let gpio = Value::Map(
            self.gpio
                .iter()
                .map(|(p, g)| {
                    let entry = vec![
                        (Value::from("mode"), Value::from(g.mode())),
                        (Value::from("value"), g.value()),
                    ];
                    (Value::from(p.to_string()), Value::Map(entry))
                })
                .collect(),
        );
        // Counters by serde: none can be forgotten here.
        let to_value = |bytes: Option<Vec<u8>>| {
            bytes
                .and_then(|b| rmpv::decode::read_value(&mut &b[..]).ok())
                .unwrap_or(Value::Nil)
        };
        let robot = to_value(rmp_serde::to_vec_named(&self.robot.stats()).ok());
        let mut entries: Vec<(Value, Value)> = vec![
            ("report".into(), "status".into()),
            ("backend".into(), self.backend.name().into()),
            ("gpio".into(), gpio),
            ("robot".into(), robot),
        ];
        if let Value::Map(counters) = to_value(rmp_serde::to_vec_named(&self.stats()).ok()) {
            entries.extend(counters);
        }
        self.report_bytes(encode(&Value::Map(entries)))
    }

    /// Answers a request for one of [`SERVICES`] with one msgpack map, the
    /// same map the matching report carries:
    /// - `state`: the state report ([`Gateway::state_report`]);
    /// - `status`: the status report ([`Gateway::status_report`]);
    /// - `i2c_read`: body `{"addr", "register", "number_of_bytes"}` (the
    ///   OneGPIO command's fields, checked by the same parser; a `command`
    ///   key, if any, must be `i2c_read`), reply `{"report": "i2c_data",
    ///   "value": [bytes]}`;
    /// - `digital_read`: body `{"pin"}` or `{"tag"}` of a pin in a
    ///   `digital_input(_pullup)` mode, reply `{"report": "digital_input",
    ///   "pin", "value", "timestamp"}` with the level read now (reporting
    ///   and its change detection are not affected).
    ///
    /// Changes nothing but what the command itself does (an `i2c_read`
    /// opens the bus); publishes nothing.
    ///
    /// # Errors
    /// A text for the client naming the problem: unknown service, a bad
    /// body, a failed read.
    pub fn serve(&mut self, service: &str, body: &[u8], now: Instant) -> Result<Vec<u8>, String> {
        match service {
            "state" => Ok(self.state_report().payload),
            "status" => Ok(self.status_report().payload),
            "i2c_read" => {
                let mut v = rmpv::decode::read_value(&mut &body[..])
                    .map_err(|e| format!("request body is not msgpack: {e}"))?;
                let Value::Map(entries) = &mut v else {
                    return Err("request body must be a map".into());
                };
                match entries.iter().find(|(k, _)| k.as_str() == Some("command")) {
                    Some((_, c)) if c.as_str() == Some("i2c_read") => {}
                    Some(_) => return Err("field command must be i2c_read".into()),
                    None => entries.push(("command".into(), "i2c_read".into())),
                }
                let mut out = Vec::new();
                self.onegpio(&encode(&v), now, &mut out)?;
                out.pop()
                    .map(|r| r.payload)
                    .ok_or_else(|| "i2c_read produced no data".into())
            }
            "digital_read" => {
                let v = rmpv::decode::read_value(&mut &body[..])
                    .map_err(|e| format!("request body is not msgpack: {e}"))?;
                let field = |k: &str| get(&v, k);
                let pin = match field("pin") {
                    None | Some(Value::Nil) => None,
                    Some(p) => Some(
                        p.as_u64()
                            .and_then(|p| u8::try_from(p).ok())
                            .ok_or("value out of range for field pin")?,
                    ),
                };
                let tag = match field("tag") {
                    None | Some(Value::Nil) => None,
                    Some(t) => Some(t.as_str().ok_or("field tag must be a string")?),
                };
                let p = self.in_mode(&PinRef { pin, tag }, Need::Input)?;
                let level = match self.gpio.get_mut(&p) {
                    Some(Gpio::Input { pin, .. }) => pin
                        .is_high()
                        .map_err(|e| format!("pin {p} read failed: {e:?}"))?,
                    _ => return Err(format!("pin {p} is not an input")),
                };
                let ts = self.timestamp(now);
                Ok(self
                    .core_report(128, |buf| {
                        report::digital_input(buf, p, u8::from(level), ts)
                    })
                    .payload)
            }
            other => Err(format!(
                "unknown service {other:?} (served: {})",
                SERVICES.join(", ")
            )),
        }
    }

    /// Handles one message received on `topic` at `now`; returns the reports
    /// to publish (an error report for bad input, a state report after a
    /// change, data reports for reads). Topics that merely share a prefix
    /// with ours are ignored (counted in [`Stats::ignored`]).
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> Vec<Report> {
        if !self.subscriptions().contains(&topic) {
            self.stats.ignored += 1;
            return Vec::new();
        }
        self.stats.received += 1;
        if topic == self.cfg.topics.run_motors || topic == self.cfg.topics.light_leds {
            return self.robot_command(topic, payload, now);
        }
        let mut out = Vec::new();
        match self.onegpio(payload, now, &mut out) {
            Ok(changed) => {
                if changed {
                    out.push(self.status_report());
                    self.next_state = now + self.state_interval();
                }
                out
            }
            Err(e) => vec![self.refusal(topic, &e, payload)],
        }
    }

    /// `run_motors` / `light_leds` through the core's robot: one state
    /// report after a change, none for a keep-alive, one error report for a
    /// refusal.
    fn robot_command(&mut self, topic: &str, payload: &[u8], now: Instant) -> Vec<Report> {
        let names: usize = self
            .robot
            .motor_names()
            .iter()
            .chain(self.robot.led_names())
            .map(|n| n.len() + 16)
            .sum();
        let mut buf = vec![0u8; 512 + 2 * payload.len() + 2 * names];
        let before = self.robot.stats().refused;
        match self.robot.handle(self.ms(now), topic, payload, &mut buf) {
            Outcome::Changed(n) | Outcome::Refused(n) => {
                if self.robot.stats().refused == before {
                    // A state report now: the periodic one can wait.
                    self.next_state = now + self.state_interval();
                } else {
                    self.stats.errors += 1;
                }
                buf.truncate(n);
                vec![self.report_bytes(buf)]
            }
            Outcome::Unchanged => Vec::new(),
            Outcome::ReportTooLarge => {
                // Cannot happen with the buffer sized above; the state
                // is what matters to a listener.
                log::warn!("report for {topic} larger than {} bytes", buf.len());
                vec![self.state_report()]
            }
        }
    }

    /// How many OneGPIO tags are registered (at most one per pin).
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    fn state_interval(&self) -> Duration {
        Duration::from_millis(self.cfg.safety.state_interval_ms)
    }

    /// Runs timers at `now`: the deadman, the end of tones, queued input
    /// edges and input polling (`digital_input` reports on change) and the
    /// periodic state report.
    pub fn tick(&mut self, now: Instant) -> Vec<Report> {
        let mut out = Vec::new();
        let mut changed = false;
        let errors = self.robot.stats().pin_errors;
        // The deadman (or the end of a timed run): the robot stops the
        // motors and says so in one state report.
        let stopped = self.robot.poll(self.ms(now));
        if self.robot.stats().pin_errors != errors {
            // The robot retries the stop at the next poll.
            let topic = self.cfg.topics.run_motors.clone();
            out.push(self.error_report(&topic, &"deadman stop failed (retrying)"));
        }
        for g in self.gpio.values_mut() {
            if let Gpio::Tone(p, t) = g {
                if t.is_some_and(|(_, until)| now >= until) {
                    let _ = p.set_duty_cycle(0);
                    *t = None;
                    changed = true;
                }
            }
        }
        let mut inputs = Vec::new();
        for e in self.edges.drain() {
            match self.gpio.get_mut(&e.pin) {
                Some(Gpio::Input {
                    watch: Some(id),
                    reporting,
                    last,
                    ..
                }) if *id == e.watch_id => {
                    self.stats.input_edges += 1;
                    if *last != Some(e.level) {
                        *last = Some(e.level);
                        if *reporting {
                            inputs.push((e.pin, e.level, e.at));
                        }
                    }
                }
                _ => self.stats.stale_edges += 1,
            }
        }
        for (&pin, g) in self.gpio.iter_mut() {
            if let Gpio::Input {
                pin: p,
                reporting,
                last,
                watch,
                ..
            } = g
            {
                // Watched pins are read once, for the level to start from.
                if watch.is_some() && last.is_some() {
                    continue;
                }
                let Ok(level) = p.is_high() else { continue };
                if *last != Some(level) {
                    *last = Some(level);
                    if *reporting {
                        inputs.push((pin, level, now));
                    }
                }
            }
        }
        for (pin, level, at) in inputs {
            let ts = self.timestamp(at);
            out.push(self.core_report(256, |buf| {
                report::digital_input(buf, pin, u8::from(level), ts)
            }));
        }
        if stopped {
            out.push(self.state_report());
        }
        if changed {
            out.push(self.status_report());
        }
        if now >= self.next_state {
            if !stopped {
                out.push(self.state_report());
            }
            if !changed {
                out.push(self.status_report());
            }
            self.next_state = now + self.state_interval();
        }
        out
    }

    /// The next instant [`tick`](Self::tick) has work to do; the run loop
    /// waits for messages (and for [`wake_fd`](Self::wake_fd)) until then at
    /// most. Watched inputs add no deadline once their level is known;
    /// polled ones every [`INPUT_POLL`]; queued edges make it `now`.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = self.next_state;
        if let Some(ms) = self.robot.poll_at() {
            d = d.min(self.start.0 + Duration::from_millis(ms));
        }
        if !self.edges.is_empty() {
            return now;
        }
        for g in self.gpio.values() {
            match g {
                Gpio::Tone(_, Some((_, until))) => d = d.min(*until),
                Gpio::Input {
                    watch: Some(_),
                    last: Some(_),
                    ..
                } => {}
                // Polled, or watched but its level not read yet (the run loop
                // ticks right after the command; this retries a failed read).
                Gpio::Input { .. } => d = d.min(now + INPUT_POLL),
                _ => {}
            }
        }
        d
    }

    /// Stops every motor now (`reason` appears as `stopped_by` in state
    /// reports), e.g. when the backplane connection is lost. Returns
    /// whether that changed the state (then publish
    /// [`state_report`](Self::state_report)).
    pub fn stop_motors(&mut self, reason: StoppedBy) -> bool {
        self.robot.stop_motors(reason)
    }

    /// Safe state: motors stopped, LEDs off, OneGPIO outputs low, PWM, servo
    /// and tone outputs at duty 0. Called on exit and by `Drop`.
    pub fn safe_state(&mut self, reason: StoppedBy) {
        self.robot.safe_state(reason);
        for g in self.gpio.values_mut() {
            match g {
                Gpio::Output(p, v) => {
                    let _ = p.set_low();
                    *v = false;
                }
                Gpio::Pwm(p, v) | Gpio::Servo(p, v) => {
                    let _ = p.set_duty_cycle(0);
                    *v = 0;
                }
                Gpio::Tone(p, t) => {
                    let _ = p.set_duty_cycle(0);
                    *t = None;
                }
                Gpio::Input { .. } => {}
            }
        }
    }

    /// The pin a command addresses: `pin` (registering `tag` for it), else
    /// the pin registered for `tag`. Checks BCM range and motor/LED
    /// ownership; does not change anything.
    fn resolve(&self, pin: &PinRef<'_>) -> Result<u8, String> {
        let p = match (pin.pin, pin.tag) {
            (Some(p), _) => p,
            (None, Some(tag)) => *self
                .tags
                .get(tag)
                .ok_or_else(|| format!("unknown tag {tag:?} and no pin"))?,
            (None, None) => return Err("missing field pin".into()),
        };
        let p = Registry::check_range(i64::from(p)).map_err(|e| e.to_string())?;
        if let Some(Owner::Config(by)) = self.registry.owner(p) {
            return Err(format!("pin {p} is owned by {by}"));
        }
        Ok(p)
    }

    /// Resolves a pin that must already be in mode `need`.
    fn in_mode(&self, pin: &PinRef<'_>, need: Need) -> Result<u8, String> {
        let p = self.resolve(pin)?;
        let ok = match (self.gpio.get(&p), need) {
            (Some(Gpio::Output(..)), Need::Output)
            | (Some(Gpio::Input { .. }), Need::Input)
            | (Some(Gpio::Pwm(..)), Need::Pwm)
            | (Some(Gpio::Servo(..)), Need::Servo) => true,
            (Some(g), _) => {
                return Err(format!(
                    "pin {p} is in mode {}, not {} (send set_mode_{} first)",
                    g.mode(),
                    need.name(),
                    need.name()
                ))
            }
            (None, _) => false,
        };
        if !ok {
            return Err(format!(
                "pin {p} is not configured (send set_mode_{} first)",
                need.name()
            ));
        }
        Ok(p)
    }

    /// Claims `pin` for OneGPIO as the new mode made by `make`: the old mode
    /// is released first, the tag registered on success.
    fn set_mode(
        &mut self,
        pin: &PinRef<'_>,
        make: impl FnOnce(&mut B, &EdgeQueue, u8) -> Result<Gpio<B>, super::backend::Error>,
    ) -> Result<bool, String> {
        let p = self.resolve(pin)?;
        self.registry
            .claim(i64::from(p))
            .map_err(|e| e.to_string())?;
        self.gpio.remove(&p);
        let g = make(&mut self.backend, &self.edges, p).map_err(|e| e.to_string())?;
        self.gpio.insert(p, g);
        if let Some(tag) = pin.tag {
            // One tag per pin: a new tag replaces the pin's old one, so the
            // table holds at most one entry per GPIO (not one per tag ever
            // sent).
            self.tags.retain(|_, &mut tagged| tagged != p);
            self.tags.insert(tag.to_owned(), p);
        }
        Ok(true)
    }

    fn onegpio(
        &mut self,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<Report>,
    ) -> Result<bool, String> {
        let cmd = OneGpio::parse(payload).map_err(|e| e.to_string())?;
        let hal = |e: &dyn std::fmt::Debug| format!("pin write failed: {e:?}");
        match cmd {
            OneGpio::SetModeDigitalOutput { pin } => {
                self.set_mode(&pin, |b, _, p| Ok(Gpio::Output(b.output(p)?, false)))
            }
            OneGpio::SetModeDigitalInput { pin } | OneGpio::SetModeDigitalInputPullup { pin } => {
                let pullup = matches!(cmd, OneGpio::SetModeDigitalInputPullup { .. });
                let pull = if pullup { Pull::Up } else { Pull::None };
                self.set_mode(&pin, |b, edges, p| {
                    let mut input = b.input(p, pull)?;
                    let watch = watch_input(b, edges, p, &mut input);
                    Ok(Gpio::Input {
                        pin: input,
                        pullup,
                        reporting: true,
                        last: None,
                        watch,
                    })
                })
            }
            OneGpio::SetModePwm { pin } => {
                self.set_mode(&pin, |b, _, p| Ok(Gpio::Pwm(b.pwm(p, GPIO_PWM_HZ)?, 0)))
            }
            OneGpio::SetModeServo { pin } => {
                self.set_mode(&pin, |b, _, p| Ok(Gpio::Servo(b.pwm(p, SERVO_HZ)?, 0)))
            }
            OneGpio::SetModeTone { pin } => {
                self.set_mode(&pin, |b, _, p| Ok(Gpio::Tone(b.pwm(p, GPIO_PWM_HZ)?, None)))
            }
            OneGpio::DigitalWrite { pin, value } => {
                let p = self.in_mode(&pin, Need::Output)?;
                if let Some(Gpio::Output(o, cur)) = self.gpio.get_mut(&p) {
                    if value { o.set_high() } else { o.set_low() }.map_err(|e| hal(&e))?;
                    *cur = value;
                }
                Ok(true)
            }
            OneGpio::PwmWrite { pin, value } => {
                let p = self.in_mode(&pin, Need::Pwm)?;
                if let Some(Gpio::Pwm(o, cur)) = self.gpio.get_mut(&p) {
                    o.set_duty_cycle_fraction(u16::from(value), 255)
                        .map_err(|e| hal(&e))?;
                    *cur = value;
                }
                Ok(true)
            }
            OneGpio::ServoPosition { pin, position } => {
                let p = self.in_mode(&pin, Need::Servo)?;
                if let Some(Gpio::Servo(o, cur)) = self.gpio.get_mut(&p) {
                    // 0.5 ms + position/180 × 2 ms of the 20 ms period, in µs.
                    let us = 500 + u32::from(position) * 2000 / 180;
                    let max = u32::from(o.max_duty_cycle());
                    o.set_duty_cycle((us * max / 20_000) as u16)
                        .map_err(|e| hal(&e))?;
                    *cur = position;
                }
                Ok(true)
            }
            OneGpio::PlayTone {
                pin,
                freq,
                duration,
            } => {
                if !(1..=20_000).contains(&freq) {
                    return Err("value out of range for field freq (1-20000 Hz)".into());
                }
                if !(1..=60_000).contains(&duration) {
                    return Err("value out of range for field duration (1-60000 ms)".into());
                }
                let until = now + Duration::from_millis(u64::from(duration));
                // A frequency is fixed per PWM: make a new one each tone.
                self.set_mode(&pin, |b, _, p| {
                    let mut o = b.pwm(p, freq)?;
                    let _ = o.set_duty_cycle_fraction(1, 2);
                    Ok(Gpio::Tone(o, Some((freq, until))))
                })
            }
            OneGpio::EnableDigitalReporting { pin } | OneGpio::DisableDigitalReporting { pin } => {
                let enable = matches!(cmd, OneGpio::EnableDigitalReporting { .. });
                let p = self.in_mode(&pin, Need::Input)?;
                if let Some(Gpio::Input {
                    reporting, last, ..
                }) = self.gpio.get_mut(&p)
                {
                    *reporting = enable;
                    // Enabling reports the current level on the next tick.
                    *last = None;
                }
                Ok(false)
            }
            OneGpio::SetModeI2c => {
                self.i2c_bus()?;
                Ok(false)
            }
            OneGpio::I2cRead {
                addr,
                register,
                number_of_bytes,
            } => {
                let n = usize::from(number_of_bytes);
                if n > MAX_I2C_READ {
                    return Err(format!(
                        "value out of range for field number_of_bytes (1-{MAX_I2C_READ})"
                    ));
                }
                let mut buf = vec![0u8; n];
                let bus = self.i2c_bus()?;
                match register {
                    Some(r) => bus.write_read(addr, &[r], &mut buf),
                    None => bus.read(addr, &mut buf),
                }
                .map_err(|e| format!("i2c_read at 0x{addr:02x} failed: {e:?}"))?;
                out.push(self.core_report(256, |b| report::i2c_data(b, &buf)));
                Ok(false)
            }
            OneGpio::I2cWrite { addr, data } => {
                if data.is_empty() {
                    return Err("field data is empty".into());
                }
                let mut bytes = vec![0u8; data.len()];
                data.copy_to(&mut bytes);
                let bus = self.i2c_bus()?;
                bus.write(addr, &bytes)
                    .map_err(|e| format!("i2c_write at 0x{addr:02x} failed: {e:?}"))?;
                Ok(false)
            }
            OneGpio::SetModeAnalogInput { .. }
            | OneGpio::EnableAnalogReporting { .. }
            | OneGpio::DisableAnalogReporting { .. }
            | OneGpio::AnalogWrite { .. } => {
                Err("the Raspberry Pi has no analog inputs or outputs".into())
            }
            other => Err(format!(
                "command not supported by rpi-gateway: {}",
                command_name(payload).unwrap_or_else(|| format!("{other:?}"))
            )),
        }
    }

    fn i2c_bus(&mut self) -> Result<&mut B::I2c, String> {
        if self.i2c.is_none() {
            self.i2c = Some(self.backend.i2c().map_err(|e| e.to_string())?);
        }
        self.i2c.as_mut().ok_or_else(|| "no I2C bus".into())
    }
}

/// Asks the backend to watch `input`; `None` (poll it) when the backend
/// cannot, when it refuses (logged), or when edges could not wake the run
/// loop.
fn watch_input<B: Backend>(
    b: &mut B,
    edges: &EdgeQueue,
    pin: u8,
    input: &mut B::Input,
) -> Option<u32> {
    edges.wake_fd()?;
    let sink = edges.sink(pin);
    let id = sink.watch_id();
    match b.watch(pin, input, sink) {
        Ok(true) => Some(id),
        Ok(false) => None,
        Err(e) => {
            log::warn!("GPIO {pin}: no edge interrupts ({e}); polling it");
            None
        }
    }
}

/// The `command` field of a (valid) OneGPIO payload.
fn command_name(payload: &[u8]) -> Option<String> {
    let v = rmpv::decode::read_value(&mut &payload[..]).ok()?;
    get(&v, "command")?.as_str().map(str::to_owned)
}

impl<B: Backend> Drop for Gateway<B> {
    fn drop(&mut self) {
        self.safe_state(StoppedBy::Exit);
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "gateway_mock_tests.rs"]
mod mock_tests;
