//! Every command's effect on the pins, as `embedded-hal-mock` transaction
//! scripts: each pin the gateway asks the backend for is a mock that expects
//! exactly the listed writes/reads (including the safe-state writes when the
//! gateway is dropped), and `done()` checks all were made.

use std::collections::{BTreeMap, VecDeque};

use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as PwmTx};

use super::*;
use crate::backend::Error as BackendError;

/// A backend handing out pre-scripted mocks.
#[derive(Default)]
struct MockBackend {
    outputs: BTreeMap<u8, VecDeque<PinMock>>,
    inputs: BTreeMap<u8, VecDeque<(Pull, PinMock)>>,
    pwms: BTreeMap<u8, VecDeque<(u32, PwmMock)>>,
    i2c: Option<I2cMock>,
}

fn unexpected(what: String) -> BackendError {
    BackendError::Io(format!("unexpected backend call: {what}"))
}

impl Backend for MockBackend {
    type Output = PinMock;
    type Input = PinMock;
    type Pwm = PwmMock;
    type I2c = I2cMock;

    fn name(&self) -> &'static str {
        "mock"
    }
    fn output(&mut self, pin: u8) -> Result<PinMock, BackendError> {
        self.outputs
            .get_mut(&pin)
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| unexpected(format!("output({pin})")))
    }
    fn input(&mut self, pin: u8, pull: Pull) -> Result<PinMock, BackendError> {
        let (want, m) = self
            .inputs
            .get_mut(&pin)
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| unexpected(format!("input({pin})")))?;
        assert_eq!(pull, want, "pull of GPIO {pin}");
        Ok(m)
    }
    fn pwm(&mut self, pin: u8, frequency_hz: u32) -> Result<PwmMock, BackendError> {
        let (want, m) = self
            .pwms
            .get_mut(&pin)
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| unexpected(format!("pwm({pin})")))?;
        assert_eq!(frequency_hz, want, "PWM frequency of GPIO {pin}");
        Ok(m)
    }
    fn i2c(&mut self) -> Result<I2cMock, BackendError> {
        self.i2c.take().ok_or_else(|| unexpected("i2c()".into()))
    }
}

/// Scripts for a test; `finish` checks every script was consumed.
#[derive(Default)]
struct Scripts {
    backend: MockBackend,
    pins: Vec<PinMock>,
    pwms: Vec<PwmMock>,
    i2c: Vec<I2cMock>,
}

impl Scripts {
    fn output(&mut self, pin: u8, tx: &[PinTx]) {
        let m = PinMock::new(tx);
        self.pins.push(m.clone());
        self.backend.outputs.entry(pin).or_default().push_back(m);
    }
    fn input(&mut self, pin: u8, pull: Pull, tx: &[PinTx]) {
        let m = PinMock::new(tx);
        self.pins.push(m.clone());
        self.backend
            .inputs
            .entry(pin)
            .or_default()
            .push_back((pull, m));
    }
    fn pwm(&mut self, pin: u8, freq: u32, tx: &[PwmTx]) {
        let m = PwmMock::new(tx);
        self.pwms.push(m.clone());
        self.backend
            .pwms
            .entry(pin)
            .or_default()
            .push_back((freq, m));
    }
    fn i2c(&mut self, tx: &[I2cTx]) {
        let m = I2cMock::new(tx);
        self.i2c.push(m.clone());
        self.backend.i2c = Some(m);
    }
    fn gateway(&mut self, cfg: Config, t0: Instant) -> Gateway<MockBackend> {
        Gateway::new(std::mem::take(&mut self.backend), cfg, t0).unwrap()
    }
    fn finish(mut self) {
        self.pins.iter_mut().for_each(PinMock::done);
        self.pwms.iter_mut().for_each(PwmMock::done);
        self.i2c.iter_mut().for_each(I2cMock::done);
    }
}

fn no_actuators() -> Config {
    Config::from_toml_str("").unwrap()
}

fn send(gw: &mut Gateway<MockBackend>, topic: &str, v: Value, now: Instant) -> Vec<Report> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &v).unwrap();
    let r = gw.handle(topic, &buf, now);
    for rep in &r {
        assert_ne!(rep.kind().as_deref(), Some("error"), "{:?}", rep.value());
    }
    r
}

fn m(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn c(name: &str, rest: &[(&str, Value)]) -> Value {
    let mut e = vec![("command", Value::from(name))];
    e.extend_from_slice(rest);
    m(&e)
}

const CMD: &str = "to_rpi_gateway";

#[test]
fn digital_write_pwm_write_servo_and_tone() {
    let mut s = Scripts::default();
    // digital_write 1, 0; safe state on drop: low.
    s.output(
        4,
        &[
            PinTx::set(State::High),
            PinTx::set(State::Low),
            PinTx::set(State::Low),
        ],
    );
    // pwm_write 51 of 255 at max 255; safe state: 0.
    s.pwm(
        12,
        GPIO_PWM_HZ,
        &[
            PwmTx::max_duty_cycle(255),
            PwmTx::set_duty_cycle(51),
            PwmTx::set_duty_cycle(0),
        ],
    );
    // servo 90° = 1.5 ms of 20 ms at 50 Hz; safe state: 0.
    s.pwm(
        13,
        SERVO_HZ,
        &[
            PwmTx::max_duty_cycle(20_000),
            PwmTx::set_duty_cycle(1_500),
            PwmTx::set_duty_cycle(0),
        ],
    );
    // play_tone 440 Hz: a 440 Hz PWM at 50 %, off after the duration, off on drop.
    s.pwm(
        22,
        440,
        &[
            PwmTx::max_duty_cycle(1_000),
            PwmTx::set_duty_cycle(500),
            PwmTx::set_duty_cycle(0),
            PwmTx::set_duty_cycle(0),
        ],
    );
    let t0 = Instant::now();
    let mut gw = s.gateway(no_actuators(), t0);
    send(
        &mut gw,
        CMD,
        c("set_mode_digital_output", &[("pin", 4.into())]),
        t0,
    );
    send(
        &mut gw,
        CMD,
        c("digital_write", &[("pin", 4.into()), ("value", 1.into())]),
        t0,
    );
    send(
        &mut gw,
        CMD,
        c(
            "digital_write",
            &[("pin", 4.into()), ("value", false.into())],
        ),
        t0,
    );
    send(&mut gw, CMD, c("set_mode_pwm", &[("pin", 12.into())]), t0);
    send(
        &mut gw,
        CMD,
        c("pwm_write", &[("pin", 12.into()), ("value", 51.into())]),
        t0,
    );
    send(&mut gw, CMD, c("set_mode_servo", &[("pin", 13.into())]), t0);
    send(
        &mut gw,
        CMD,
        c(
            "servo_position",
            &[("pin", 13.into()), ("position", 90.into())],
        ),
        t0,
    );
    send(
        &mut gw,
        CMD,
        c(
            "play_tone",
            &[
                ("pin", 22.into()),
                ("freq", 440.into()),
                ("duration", 100.into()),
            ],
        ),
        t0,
    );
    gw.tick(t0 + Duration::from_millis(99));
    gw.tick(t0 + Duration::from_millis(100));
    drop(gw);
    s.finish();
}

#[test]
fn digital_inputs_are_read_and_reported() {
    let mut s = Scripts::default();
    s.input(
        23,
        Pull::Up,
        &[
            PinTx::get(State::High),
            PinTx::get(State::High),
            PinTx::get(State::Low),
            PinTx::get(State::Low),
        ],
    );
    s.input(24, Pull::None, &[PinTx::get(State::Low)]);
    let t0 = Instant::now();
    let mut gw = s.gateway(no_actuators(), t0);
    send(
        &mut gw,
        CMD,
        c("set_mode_digital_input_pullup", &[("pin", 23.into())]),
        t0,
    );
    let values = |r: Vec<Report>| -> Vec<u64> {
        r.iter()
            .filter(|r| r.kind().as_deref() == Some("digital_input"))
            .map(|r| get(&r.value(), "value").and_then(Value::as_u64).unwrap())
            .collect()
    };
    let t = |ms| t0 + Duration::from_millis(ms);
    assert_eq!(values(gw.tick(t(1))), vec![1]);
    assert_eq!(values(gw.tick(t(2))), Vec::<u64>::new());
    assert_eq!(values(gw.tick(t(3))), vec![0]);
    // A second, floating input on 24; 23 (unchanged) is read too.
    send(
        &mut gw,
        CMD,
        c("set_mode_digital_input", &[("pin", 24.into())]),
        t(4),
    );
    assert_eq!(values(gw.tick(t(5))), vec![0]);
    drop(gw);
    s.finish();
}

#[test]
fn i2c_write_read_and_plain_read() {
    let mut s = Scripts::default();
    s.i2c(&[
        I2cTx::write(0x50, vec![3, 7, 9]),
        I2cTx::write_read(0x50, vec![3], vec![7, 9]),
        I2cTx::read(0x48, vec![0x5a]),
    ]);
    let t0 = Instant::now();
    let mut gw = s.gateway(no_actuators(), t0);
    let data = Value::Array(vec![3.into(), 7.into(), 9.into()]);
    assert!(send(
        &mut gw,
        CMD,
        c("i2c_write", &[("addr", 0x50.into()), ("data", data)]),
        t0
    )
    .is_empty());
    let r = send(
        &mut gw,
        CMD,
        c(
            "i2c_read",
            &[
                ("addr", 0x50.into()),
                ("register", 3.into()),
                ("number_of_bytes", 2.into()),
            ],
        ),
        t0,
    );
    // msgpack.packb({'report': 'i2c_data', 'value': [7, 9]})
    assert_eq!(
        r[0].payload,
        b"\x82\xa6report\xa8i2c_data\xa5value\x92\x07\x09"
    );
    let r = send(
        &mut gw,
        CMD,
        c(
            "i2c_read",
            &[
                ("addr", 0x48.into()),
                ("register", Value::Nil),
                ("number_of_bytes", 1.into()),
            ],
        ),
        t0,
    );
    assert_eq!(
        get(&r[0].value(), "value"),
        Some(&Value::Array(vec![0x5a.into()]))
    );
    drop(gw);
    s.finish();
}

#[test]
fn motors_and_leds_drive_their_pins() {
    let cfg = Config::from_toml_str(
        "[motors.left]\npwm = 18\nin1 = 5\nin2 = 6\n\
         [leds.status]\npin = 17\n\
         [leds.headlight]\npin = 16\npwm = true\n",
    )
    .unwrap();
    let mut s = Scripts::default();
    let stop = [PwmTx::set_duty_cycle(0)];
    // Motor PWM: stop at start; forward 0.5; deadman stop; stop on exit
    // (safe state) and again when the motor set is dropped.
    let mut pwm = stop.to_vec();
    pwm.extend([
        PwmTx::set_duty_cycle(0),
        PwmTx::max_duty_cycle(100),
        PwmTx::set_duty_cycle(50),
    ]);
    pwm.extend([stop[0].clone(), stop[0].clone(), stop[0].clone()]);
    s.pwm(18, 1000, &pwm);
    let low = PinTx::set(State::Low);
    // IN1: low at start, high for forward, low at each of the three stops.
    s.output(
        5,
        &[
            low.clone(),
            PinTx::set(State::High),
            low.clone(),
            low.clone(),
            low.clone(),
        ],
    );
    // IN2: low at start, low before IN1 goes high, low at each stop.
    s.output(
        6,
        &[
            low.clone(),
            low.clone(),
            low.clone(),
            low.clone(),
            low.clone(),
        ],
    );
    // Headlight (PWM LED): off at start, 25 %, off on exit.
    s.pwm(
        16,
        GPIO_PWM_HZ,
        &[
            PwmTx::max_duty_cycle(100),
            PwmTx::set_duty_cycle(0),
            PwmTx::max_duty_cycle(100),
            PwmTx::set_duty_cycle(25),
            PwmTx::max_duty_cycle(100),
            PwmTx::set_duty_cycle(0),
        ],
    );
    // Status LED: off at start, on, off on exit.
    s.output(17, &[low.clone(), PinTx::set(State::High), low.clone()]);
    let t0 = Instant::now();
    let mut gw = s.gateway(cfg, t0);
    send(&mut gw, "run_motors", m(&[("left", 0.5.into())]), t0);
    send(
        &mut gw,
        "light_leds",
        m(&[("status", true.into()), ("headlight", 0.25.into())]),
        t0,
    );
    gw.tick(t0 + Duration::from_millis(499));
    gw.tick(t0 + Duration::from_millis(500)); // deadman
    drop(gw);
    s.finish();
}
