//! `Led` and `PwmLed` pin scripts with `embedded-hal-mock`.

use std::io::ErrorKind;

use banyan_core::actuator::{Error, Led, PwmLed, SetBrightness};
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as Pwm};
use embedded_hal_mock::eh1::MockError;

fn io_error() -> MockError {
    MockError::Io(ErrorKind::NotConnected)
}

#[test]
fn on_off_active_high() {
    let mut pin = PinMock::new(&[
        Pin::set(State::High),
        Pin::set(State::Low),
        Pin::set(State::High), // brightness 0.3
        Pin::set(State::Low),  // brightness 0
    ]);
    let mut led = Led::new(pin.clone(), false);
    assert_eq!(led.is_on(), None);
    led.on().unwrap();
    assert_eq!(led.is_on(), Some(true));
    led.off().unwrap();
    assert_eq!(led.is_on(), Some(false));
    led.set_brightness(0.3).unwrap();
    SetBrightness::set_brightness(&mut led, 0.0).unwrap();
    pin.done();
}

#[test]
fn on_off_active_low() {
    let mut pin = PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]);
    let mut led = Led::new(pin.clone(), true);
    led.set(true).unwrap();
    led.set(false).unwrap();
    pin.done();
}

#[test]
fn on_off_invalid_brightness_and_pin_error() {
    let mut pin = PinMock::new(&[Pin::set(State::High).with_error(io_error())]);
    let mut led = Led::new(pin.clone(), false);
    for bad in [f32::NAN, -0.1, 1.1, f32::INFINITY] {
        assert_eq!(led.set_brightness(bad), Err(Error::InvalidBrightness));
    }
    assert_eq!(led.on(), Err(Error::Pin(io_error())));
    assert_eq!(led.is_on(), None);
    pin.done();
}

#[test]
fn pwm_brightness_active_high() {
    let mut pwm = PwmMock::new(&[
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(128), // 0.5 × 255 = 127.5, rounded
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(255), // on
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(0), // off
        Pwm::max_duty_cycle(1000),
        Pwm::set_duty_cycle(1), // 0.001
    ]);
    let mut led = PwmLed::new(pwm.clone(), false);
    assert_eq!(led.brightness(), None);
    led.set_brightness(0.5).unwrap();
    assert_eq!(led.brightness(), Some(0.5));
    led.on().unwrap();
    led.off().unwrap();
    led.set_brightness(0.001).unwrap();
    pwm.done();
}

#[test]
fn pwm_brightness_active_low() {
    let mut pwm = PwmMock::new(&[
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(127), // 255 − 128
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(0), // on
        Pwm::max_duty_cycle(255),
        Pwm::set_duty_cycle(255), // off
    ]);
    let mut led = PwmLed::new(pwm.clone(), true);
    led.set_brightness(0.5).unwrap();
    led.on().unwrap();
    SetBrightness::set_brightness(&mut led, 0.0).unwrap();
    pwm.done();
}

#[test]
fn pwm_invalid_brightness_and_error() {
    let mut pwm = PwmMock::new(&[
        Pwm::max_duty_cycle(100),
        Pwm::set_duty_cycle(100).with_error(io_error()),
    ]);
    let mut led = PwmLed::new(pwm.clone(), false);
    for bad in [f32::NAN, -0.0001, 1.0001, f32::NEG_INFINITY] {
        assert_eq!(led.set_brightness(bad), Err(Error::InvalidBrightness));
    }
    let err = led.on().unwrap_err();
    assert_eq!(err, Error::Pwm(io_error()));
    assert!(err.to_string().starts_with("pwm output failed"));
    assert_eq!(led.brightness(), None);
    pwm.done();
}
