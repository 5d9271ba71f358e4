//! `Deadman` and `MotorSet`: expiry stops every motor, timed runs, bad
//! commands change nothing, pin failures are fail-safe. Pins are
//! `embedded-hal-mock` scripts.

use std::io::ErrorKind;

use banyan_core::actuator::{Config, Deadman, Error, Motor, MotorSet};
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as Pwm};
use embedded_hal_mock::eh1::MockError;

type M = Motor<PwmMock, PinMock>;

fn io_error() -> MockError {
    MockError::Io(ErrorKind::NotConnected)
}

/// A PH/EN motor's mocks and the motor on clones of them.
struct Rig {
    pwm: PwmMock,
    dir: PinMock,
}

impl Rig {
    /// A motor that will be dropped inside a `MotorSet`: its script ends with
    /// the stop (duty 0) the set writes when dropped.
    fn new(pwm: &[Pwm], dir: &[Pin]) -> (Rig, M) {
        Rig::unused(&[pwm, &[Pwm::set_duty_cycle(0)]].concat(), dir)
    }

    /// A motor with exactly this script.
    fn unused(pwm: &[Pwm], dir: &[Pin]) -> (Rig, M) {
        let rig = Rig {
            pwm: PwmMock::new(pwm),
            dir: PinMock::new(dir),
        };
        let motor = Motor::new(rig.pwm.clone(), rig.dir.clone(), Config::new());
        (rig, motor)
    }

    fn done(mut self) {
        self.pwm.done();
        self.dir.done();
    }
}

/// Pwm script of a first forward/reverse write at `duty` / 100.
fn start(duty: u16) -> [Pwm; 3] {
    [
        Pwm::set_duty_cycle(0),
        Pwm::max_duty_cycle(100),
        Pwm::set_duty_cycle(duty),
    ]
}

fn set_of(left: M, right: M) -> MotorSet<M, 2> {
    let mut set = MotorSet::new(500);
    set.add("left", left).map_err(|(e, _)| e).unwrap();
    set.add("right", right).map_err(|(e, _)| e).unwrap();
    set
}

#[test]
fn deadman_basics() {
    let mut d = Deadman::new(100);
    assert_eq!(d.timeout_ms(), 100);
    assert_eq!(d.deadline(), None);
    assert!(!d.is_expired(u64::MAX));
    d.feed(50);
    assert_eq!(d.deadline(), Some(150));
    assert!(!d.check(149));
    assert!(d.is_expired(150));
    assert!(d.check(150));
    assert!(!d.check(151), "reported once, then disarmed");
    d.feed_for(1_000, 5_000);
    assert!(!d.check(1_100), "a timed run outlasts the timeout");
    assert!(d.check(6_000));
    d.feed(u64::MAX - 1);
    assert_eq!(
        d.deadline(),
        Some(u64::MAX),
        "saturates instead of wrapping"
    );
    d.feed(10);
    assert!(!d.check(5), "a clock stepping back only delays expiry");
    d.disarm();
    assert!(!d.check(1_000));
    d.expire();
    assert!(d.check(0));
}

#[test]
fn deadman_expiry_stops_all_motors_once() {
    let (l, left) = Rig::new(
        &[start(50).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::new(
        &[start(25).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::High)],
    );
    let mut set = set_of(left, right);
    assert_eq!(set.poll(10_000), Ok(false), "disarmed before any command");
    set.run(1_000, &[("left", 0.5), ("right", -0.25)], None)
        .unwrap();
    assert_eq!(set.poll_at(), Some(1_500));
    assert_eq!(set.poll(1_499), Ok(false));
    assert_eq!(set.poll(1_500), Ok(true)); // both mocks expect duty 0 here
    assert_eq!(set.poll_at(), None);
    assert_eq!(set.poll(2_000), Ok(false), "stopped once");
    assert_eq!(set.get("left").unwrap().speed(), Some(0.0));
    assert_eq!(set.get("right").unwrap().speed(), Some(0.0));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn commands_feed_the_deadman() {
    let (l, left) = Rig::new(
        &[
            start(50).as_slice(),
            &[Pwm::max_duty_cycle(100), Pwm::set_duty_cycle(60)],
            &[Pwm::set_duty_cycle(0)],
        ]
        .concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::new(&[Pwm::set_duty_cycle(0)], &[]);
    let mut set = set_of(left, right);
    set.set(1_000, "left", 0.5).unwrap();
    assert_eq!(set.poll(1_400), Ok(false));
    set.set(1_400, "left", 0.6).unwrap(); // fed again
    assert_eq!(set.poll(1_500), Ok(false));
    assert_eq!(set.poll(1_899), Ok(false));
    assert_eq!(set.poll(1_900), Ok(true));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn timed_run_stops_at_now_plus_duration() {
    let (l, left) = Rig::new(
        &[start(100).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::new(&[Pwm::set_duty_cycle(0)], &[]);
    let mut set = set_of(left, right);
    set.run(10_000, &[("left", 1.0)], Some(2_000)).unwrap();
    assert_eq!(set.poll_at(), Some(12_000));
    assert_eq!(set.poll(10_600), Ok(false), "not the 500 ms timeout");
    assert_eq!(set.poll(11_999), Ok(false));
    assert_eq!(set.poll(12_000), Ok(true));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn short_timed_run_ends_before_the_timeout() {
    let (l, left) = Rig::new(
        &[start(30).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::new(&[Pwm::set_duty_cycle(0)], &[]);
    let mut set = set_of(left, right);
    set.run(0, &[("left", 0.3)], Some(100)).unwrap();
    assert_eq!(set.poll(99), Ok(false));
    assert_eq!(set.poll(100), Ok(true));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn bad_commands_change_nothing() {
    // No pin may be touched and the deadman stays disarmed.
    let (l, left) = Rig::new(&[], &[]);
    let (r, right) = Rig::new(&[], &[]);
    let mut set = set_of(left, right);
    assert_eq!(
        set.run(0, &[("left", 0.5), ("middle", 0.5)], None),
        Err(Error::UnknownMotor)
    );
    assert_eq!(
        set.run(0, &[("left", 0.5), ("right", f32::NAN)], None),
        Err(Error::InvalidSpeed)
    );
    assert_eq!(set.set(0, "right", -1.5), Err(Error::InvalidSpeed));
    assert_eq!(set.set(0, "", 0.0), Err(Error::UnknownMotor));
    assert_eq!(set.poll_at(), None);
    assert_eq!(set.poll(u64::MAX), Ok(false));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn stop_all_tries_every_motor_and_reports_the_first_error() {
    let (l, left) = Rig::new(
        &[
            Pwm::set_duty_cycle(0).with_error(io_error()),
            Pwm::set_duty_cycle(0), // retried by poll
        ],
        &[],
    );
    let (r, right) = Rig::new(
        &[
            Pwm::set_duty_cycle(0).with_error(MockError::Io(ErrorKind::Other)),
            Pwm::set_duty_cycle(0),
        ],
        &[],
    );
    let mut set = set_of(left, right);
    // Both fail: the right one is still tried, the left one's error wins.
    assert_eq!(set.stop_all(), Err(Error::Pwm(io_error())));
    assert_eq!(set.poll_at(), Some(0), "left expired to retry");
    assert_eq!(set.poll(0), Ok(true));
    assert_eq!(set.poll_at(), None);
    drop(set);
    l.done();
    r.done();
}

#[test]
fn pin_failure_during_a_command_stops_everything() {
    let (l, left) = Rig::new(
        &[start(50).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::new(
        &[
            Pwm::set_duty_cycle(0),
            Pwm::set_duty_cycle(0), // stop_all
        ],
        &[Pin::set(State::High).with_error(io_error())],
    );
    let mut set = set_of(left, right);
    assert_eq!(
        set.run(0, &[("left", 0.5), ("right", -0.5)], None),
        Err(Error::Pin(io_error()))
    );
    assert_eq!(set.poll_at(), None, "stopped successfully: nothing pending");
    drop(set);
    l.done();
    r.done();
}

#[test]
fn failed_stop_after_a_failed_command_is_retried_by_poll() {
    let (l, left) = Rig::new(
        &[
            Pwm::set_duty_cycle(0).with_error(io_error()), // the command
            Pwm::set_duty_cycle(0).with_error(io_error()), // its stop_all
            Pwm::set_duty_cycle(0),                        // poll's retry
        ],
        &[],
    );
    let (r, right) = Rig::new(&[Pwm::set_duty_cycle(0), Pwm::set_duty_cycle(0)], &[]);
    let mut set = set_of(left, right);
    assert_eq!(set.set(0, "left", 0.5), Err(Error::Pwm(io_error())));
    assert_eq!(set.poll(1), Ok(true));
    assert_eq!(set.poll(2), Ok(false));
    drop(set);
    l.done();
    r.done();
}

#[test]
fn add_returns_the_motor_when_full_or_duplicate() {
    let (a, m1) = Rig::new(&[], &[]);
    let (b, m2) = Rig::new(&[], &[]);
    let (c, m3) = Rig::unused(&[], &[]); // never added, so never stopped
    let mut set: MotorSet<M, 2> = MotorSet::new(100);
    assert!(set.is_empty());
    set.add("a", m1).map_err(|(e, _)| e).unwrap();
    let (err, m2) = set.add("a", m2).unwrap_err();
    assert_eq!(err, Error::DuplicateMotor);
    set.add("b", m2).map_err(|(e, _)| e).unwrap();
    let (err, _m3) = set.add("c", m3).unwrap_err();
    assert_eq!(err, Error::Full);
    assert_eq!(set.len(), 2);
    assert_eq!(set.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["a", "b"]);
    assert!(set.get_mut("b").is_some());
    assert!(set.get("c").is_none());
    assert_eq!(set.deadman().timeout_ms(), 100);
    drop(set);
    a.done();
    b.done();
    c.done();
}

#[test]
fn dropping_the_set_stops_every_motor_even_if_one_fails() {
    let (l, left) = Rig::unused(
        &[
            start(50).as_slice(),
            &[Pwm::set_duty_cycle(0).with_error(io_error())],
        ]
        .concat(),
        &[Pin::set(State::Low)],
    );
    let (r, right) = Rig::unused(
        &[start(50).as_slice(), &[Pwm::set_duty_cycle(0)]].concat(),
        &[Pin::set(State::Low)],
    );
    let mut set = set_of(left, right);
    set.run(0, &[("left", 0.5), ("right", 0.5)], None).unwrap();
    drop(set); // both mocks expect their duty 0 here
    l.done();
    r.done();
}

#[test]
fn error_display_is_terse_lowercase() {
    let all: [Error<MockError, MockError>; 8] = [
        Error::InvalidSpeed,
        Error::InvalidBrightness,
        Error::InvalidMaxDuty,
        Error::UnknownMotor,
        Error::DuplicateMotor,
        Error::Full,
        Error::Pwm(io_error()),
        Error::Pin(io_error()),
    ];
    for e in all {
        let s = e.to_string();
        assert!(s.starts_with(|c: char| c.is_ascii_lowercase()), "{s}");
        let _: &dyn std::error::Error = &e;
    }
}
