//! `Motor` (PH/EN) and `DualMotor` (IN1/IN2 + EN) pin scripts with
//! `embedded-hal-mock`, plus a cross-pin ordering check with a recording fake.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io::ErrorKind;
use std::rc::Rc;

use banyan_core::actuator::{Config, DualMotor, Error, Motor, SetSpeed, StopMode};
use embedded_hal::digital::{ErrorType as DigitalErrorType, OutputPin};
use embedded_hal::pwm::{ErrorType as PwmErrorType, SetDutyCycle};
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as Pwm};
use embedded_hal_mock::eh1::MockError;

fn io_error() -> MockError {
    MockError::Io(ErrorKind::NotConnected)
}

/// `max_duty_cycle()` then `set_duty_cycle(duty)`, as one speed write.
fn duty(max: u16, duty: u16) -> [Pwm; 2] {
    [Pwm::max_duty_cycle(max), Pwm::set_duty_cycle(duty)]
}

fn script(parts: &[&[Pwm]]) -> Vec<Pwm> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

#[test]
fn ph_en_forward_reverse_stop() {
    let mut pwm = PwmMock::new(&script(&[
        // forward 0.5 from an unknown state: duty 0, direction, duty
        &[Pwm::set_duty_cycle(0)],
        &duty(100, 50),
        // same direction: duty only
        &duty(100, 25),
        // reverse: duty 0, direction, duty
        &[Pwm::set_duty_cycle(0)],
        &duty(100, 100),
        // stop
        &[Pwm::set_duty_cycle(0)],
        // from stopped, forward again: duty 0, direction, duty
        &[Pwm::set_duty_cycle(0)],
        &duty(100, 10),
        // speed 0 stops
        &[Pwm::set_duty_cycle(0)],
    ]));
    let mut dir = PinMock::new(&[
        Pin::set(State::Low),
        Pin::set(State::High),
        Pin::set(State::Low),
    ]);
    let mut m = Motor::new(pwm.clone(), dir.clone(), Config::new());
    assert_eq!(m.speed(), None);
    m.set_speed(0.5).unwrap();
    assert_eq!(m.speed(), Some(0.5));
    m.set_speed(0.25).unwrap();
    m.set_speed(-1.0).unwrap();
    assert_eq!(m.speed(), Some(-1.0));
    m.stop().unwrap();
    assert_eq!(m.speed(), Some(0.0));
    m.set_speed(0.1).unwrap();
    m.set_speed(-0.0).unwrap();
    assert_eq!(m.speed(), Some(0.0));
    pwm.done();
    dir.done();
}

#[test]
fn ph_en_invert_and_max_duty() {
    let mut pwm = PwmMock::new(&script(&[
        &[Pwm::set_duty_cycle(0)],
        &duty(1000, 400), // 1.0 × 0.4
        &[Pwm::set_duty_cycle(0)],
        &duty(1000, 200), // 0.5 × 0.4
    ]));
    let mut dir = PinMock::new(&[Pin::set(State::High), Pin::set(State::Low)]);
    let config = Config::new().with_invert(true).with_max_duty(0.4).unwrap();
    let mut m = Motor::new(pwm.clone(), dir.clone(), config);
    m.set_speed(1.0).unwrap(); // forward, inverted: pin high
    m.set_speed(-0.5).unwrap(); // reverse, inverted: pin low
    assert_eq!(m.config().max_duty(), 0.4);
    assert!(m.config().invert());
    pwm.done();
    dir.done();
}

#[test]
fn invalid_speed_touches_nothing() {
    // Empty scripts: any pin access would fail the test.
    let mut pwm = PwmMock::new(&[]);
    let mut dir = PinMock::new(&[]);
    let mut in2 = PinMock::new(&[]);
    let mut m = Motor::new(pwm.clone(), dir.clone(), Config::new());
    let mut d = DualMotor::new(pwm.clone(), dir.clone(), in2.clone(), Config::new());
    for bad in [
        f32::NAN,
        1.0001,
        -1.0001,
        f32::INFINITY,
        f32::NEG_INFINITY,
        2.0,
    ] {
        assert_eq!(m.set_speed(bad), Err(Error::InvalidSpeed), "{bad}");
        assert_eq!(d.set_speed(bad), Err(Error::InvalidSpeed), "{bad}");
    }
    assert_eq!(m.speed(), None);
    pwm.done();
    dir.done();
    in2.done();
}

#[test]
fn max_duty_must_be_in_zero_one() {
    for bad in [0.0, -0.5, 1.01, f32::NAN, f32::INFINITY] {
        assert_eq!(Config::new().with_max_duty(bad), Err(Error::InvalidMaxDuty));
    }
    assert_eq!(Config::new().with_max_duty(1.0).unwrap().max_duty(), 1.0);
    assert_eq!(Config::new().with_max_duty(1e-3).unwrap().max_duty(), 1e-3);
    let d = Config::default();
    assert!(!d.invert());
    assert_eq!(d.max_duty(), 1.0);
    assert_eq!(d.stop_mode(), StopMode::Coast);
}

#[test]
fn ph_en_pwm_error_propagates_and_state_becomes_unknown() {
    let mut pwm = PwmMock::new(&[
        Pwm::set_duty_cycle(0),
        Pwm::max_duty_cycle(100),
        Pwm::set_duty_cycle(50).with_error(io_error()),
        // the next command rewrites everything, direction included
        Pwm::set_duty_cycle(0),
        Pwm::max_duty_cycle(100),
        Pwm::set_duty_cycle(50),
        // stop failing
        Pwm::set_duty_cycle(0).with_error(io_error()),
    ]);
    let mut dir = PinMock::new(&[Pin::set(State::Low), Pin::set(State::Low)]);
    let mut m = Motor::new(pwm.clone(), dir.clone(), Config::new());
    assert_eq!(m.set_speed(0.5), Err(Error::Pwm(io_error())));
    assert_eq!(m.speed(), None);
    m.set_speed(0.5).unwrap();
    assert_eq!(m.stop(), Err(Error::Pwm(io_error())));
    assert_eq!(m.speed(), None);
    pwm.done();
    dir.done();
}

#[test]
fn ph_en_direction_pin_error_propagates() {
    let mut pwm = PwmMock::new(&[Pwm::set_duty_cycle(0)]);
    let mut dir = PinMock::new(&[Pin::set(State::High).with_error(io_error())]);
    let mut m = Motor::new(pwm.clone(), dir.clone(), Config::new());
    let err = m.set_speed(-0.3).unwrap_err();
    assert_eq!(err, Error::Pin(io_error()));
    assert!(err.to_string().starts_with("digital output failed"));
    assert_eq!(m.speed(), None);
    pwm.done();
    dir.done();
}

#[test]
fn dual_forward_reverse_coast() {
    let mut pwm = PwmMock::new(&script(&[
        &[Pwm::set_duty_cycle(0)],
        &duty(255, 191), // 0.75 × 255 = 191.25
        &duty(255, 64),  // 0.25 × 255 = 63.75
        &[Pwm::set_duty_cycle(0)],
        &duty(255, 255),
        &[Pwm::set_duty_cycle(0)], // coast
        &[Pwm::set_duty_cycle(0)], // speed 0 = coast again
    ]));
    let mut in1 = PinMock::new(&[
        Pin::set(State::High), // forward
        Pin::set(State::Low),  // reverse
        Pin::set(State::Low),  // coast
        Pin::set(State::Low),  // coast
    ]);
    let mut in2 = PinMock::new(&[
        Pin::set(State::Low),  // forward
        Pin::set(State::High), // reverse
        Pin::set(State::Low),  // coast
        Pin::set(State::Low),  // coast
    ]);
    let mut m = DualMotor::new(pwm.clone(), in1.clone(), in2.clone(), Config::new());
    m.set_speed(0.75).unwrap();
    m.set_speed(0.25).unwrap();
    m.set_speed(-1.0).unwrap();
    m.stop().unwrap();
    m.set_speed(0.0).unwrap();
    assert_eq!(m.speed(), Some(0.0));
    pwm.done();
    in1.done();
    in2.done();
}

#[test]
fn dual_invert_max_duty_brake() {
    let mut pwm = PwmMock::new(&script(&[
        &[Pwm::set_duty_cycle(0)],
        &duty(100, 40), // 0.5 × 0.8
        // brake: duty 0, both high, full duty
        &[Pwm::set_duty_cycle(0)],
        &duty(100, 100),
    ]));
    let mut in1 = PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]);
    let mut in2 = PinMock::new(&[Pin::set(State::High), Pin::set(State::High)]);
    let config = Config::new()
        .with_invert(true)
        .with_max_duty(0.8)
        .unwrap()
        .with_stop_mode(StopMode::Brake);
    let mut m = DualMotor::new(pwm.clone(), in1.clone(), in2.clone(), config);
    m.set_speed(0.5).unwrap(); // forward, inverted: IN1 low, IN2 high
    SetSpeed::stop(&mut m).unwrap();
    pwm.done();
    in1.done();
    in2.done();
}

#[test]
fn dual_pin_error_stops_the_sequence() {
    let mut pwm = PwmMock::new(&[Pwm::set_duty_cycle(0), Pwm::set_duty_cycle(0)]);
    let mut in1 = PinMock::new(&[Pin::set(State::Low).with_error(io_error())]);
    let mut in2 = PinMock::new(&[Pin::set(State::Low).with_error(io_error())]);
    let mut m = DualMotor::new(pwm.clone(), in1.clone(), in2.clone(), Config::new());
    // forward writes IN2 low first; it fails, so IN1 and the duty are skipped
    assert_eq!(m.set_speed(0.5), Err(Error::Pin(io_error())));
    // coast writes duty 0 then IN1 low; it fails, so IN2 is skipped
    assert_eq!(m.stop(), Err(Error::Pin(io_error())));
    assert_eq!(m.speed(), None);
    pwm.done();
    in1.done();
    in2.done();
}

// --- Cross-pin ordering, which per-pin mocks cannot see. ---

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    Duty(u16),
    In1(bool),
    In2(bool),
}

type Log = Rc<RefCell<Vec<Ev>>>;

struct RecPwm(Log);
impl PwmErrorType for RecPwm {
    type Error = Infallible;
}
impl SetDutyCycle for RecPwm {
    fn max_duty_cycle(&self) -> u16 {
        100
    }
    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        self.0.borrow_mut().push(Ev::Duty(duty));
        Ok(())
    }
}

struct RecPin(Log, fn(bool) -> Ev);
impl DigitalErrorType for RecPin {
    type Error = Infallible;
}
impl OutputPin for RecPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push((self.1)(false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push((self.1)(true));
        Ok(())
    }
}

#[test]
fn dual_never_drives_the_old_way_at_the_new_duty_nor_brakes_in_passing() {
    let log: Log = Rc::default();
    let mut m = DualMotor::new(
        RecPwm(log.clone()),
        RecPin(log.clone(), Ev::In1),
        RecPin(log.clone(), Ev::In2),
        Config::new().with_stop_mode(StopMode::Brake),
    );
    m.set_speed(1.0).unwrap();
    m.set_speed(-0.5).unwrap();
    m.stop().unwrap();
    m.set_speed(0.2).unwrap();
    use Ev::*;
    assert_eq!(
        *log.borrow(),
        [
            Duty(0),
            In2(false),
            In1(true),
            Duty(100), // forward
            Duty(0),
            In1(false),
            In2(true),
            Duty(50), // reverse
            Duty(0),
            In1(true),
            In2(true),
            Duty(100), // brake
            Duty(0),
            In2(false),
            In1(true),
            Duty(20), // forward
        ]
    );
}
