//! Host tests of `robot`: command payloads in, actuator writes and report
//! payloads out, with fake motors and LEDs.

mod common;

use banyan_firmware_app::robot::{Outcome, Robot, StoppedBy, LIGHT_LEDS, RUN_MOTORS};
use common::{field, map, pack, unpack, FakeLed, FakeMotor};
use rmpv::Value;

struct Rig {
    robot: Robot<FakeMotor, FakeLed, 2, 2>,
    left: FakeMotor,
    right: FakeMotor,
    status: FakeLed,
    out: [u8; 256],
}

fn rig() -> Rig {
    let (left, right, status) = (
        FakeMotor::default(),
        FakeMotor::default(),
        FakeLed::default(),
    );
    let mut robot = Robot::new(500);
    robot.add_motor("left", left.clone()).unwrap();
    robot.add_motor("right", right.clone()).unwrap();
    robot.add_led("status", status.clone()).unwrap();
    robot.add_led("beacon", FakeLed::default()).unwrap();
    Rig {
        robot,
        left,
        right,
        status,
        out: [0; 256],
    }
}

impl Rig {
    fn handle(&mut self, now: u64, topic: &str, payload: &[u8]) -> (Outcome, Option<Value>) {
        let outcome = self.robot.handle(now, topic, payload, &mut self.out);
        let report = match outcome {
            Outcome::Changed(n) | Outcome::Refused(n) => Some(unpack(&self.out[..n])),
            _ => None,
        };
        (outcome, report)
    }

    fn refused(&mut self, topic: &str, payload: &[u8]) -> String {
        let (outcome, report) = self.handle(0, topic, payload);
        assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
        let report = report.unwrap();
        assert_eq!(field(&report, "report").as_str(), Some("error"));
        assert_eq!(field(&report, "topic").as_str(), Some(topic));
        field(&report, "reason").as_str().unwrap().to_owned()
    }
}

#[test]
fn run_motors_drives_and_reports_state() {
    let mut r = rig();
    let cmd = pack(&map(&[("left", 0.5.into()), ("right", Value::from(-1))]));
    let (outcome, report) = r.handle(0, RUN_MOTORS, &cmd);
    assert!(matches!(outcome, Outcome::Changed(_)));
    assert_eq!(r.left.speed.get(), 0.5);
    assert_eq!(r.right.speed.get(), -1.0);
    let report = report.unwrap();
    assert_eq!(field(&report, "report").as_str(), Some("state"));
    let motors = field(&report, "motors");
    assert_eq!(field(motors, "left").as_f64(), Some(0.5));
    assert_eq!(field(motors, "right").as_f64(), Some(-1.0));
    assert_eq!(field(field(&report, "leds"), "status").as_f64(), Some(0.0));

    // The same command again changes nothing: fed deadman, no report.
    assert_eq!(r.handle(100, RUN_MOTORS, &cmd).0, Outcome::Unchanged);
    assert_eq!(r.robot.stats().accepted, 2);
}

#[test]
fn timed_runs_over_the_limit_are_refused() {
    let mut r = rig();
    let cmd = |ms: u64| {
        pack(&map(&[
            ("left", 0.5.into()),
            ("duration_ms", Value::from(ms)),
        ]))
    };
    let reason = r.refused(RUN_MOTORS, &cmd(10_001));
    // Contract change (issue 9): the reason gives the limit.
    assert_eq!(
        reason,
        "value out of range for field duration_ms (max 10000)"
    );
    assert_eq!(r.left.speed.get(), 0.0);
    let (outcome, _) = r.handle(0, RUN_MOTORS, &cmd(10_000));
    assert!(matches!(outcome, Outcome::Changed(_)), "{outcome:?}");
    assert_eq!(r.left.speed.get(), 0.5);
    r.robot.set_max_run_ms(0);
    r.refused(RUN_MOTORS, &cmd(1));
    assert_eq!(r.left.speed.get(), 0.5);
}

#[test]
fn light_leds_sets_levels() {
    let mut r = rig();
    let cmd = pack(&map(&[("status", true.into()), ("beacon", 0.25.into())]));
    let (outcome, report) = r.handle(0, LIGHT_LEDS, &cmd);
    assert!(matches!(outcome, Outcome::Changed(_)));
    assert_eq!(r.status.level.get(), 1.0);
    let leds = field(report.as_ref().unwrap(), "leds").clone();
    assert_eq!(field(&leds, "beacon").as_f64(), Some(0.25));
}

#[test]
fn deadman_stops_motors_after_timeout() {
    let mut r = rig();
    let cmd = pack(&map(&[("left", 0.75.into())]));
    r.handle(1_000, RUN_MOTORS, &cmd);
    assert!(!r.robot.poll(1_499));
    assert_eq!(r.left.speed.get(), 0.75);
    assert!(r.robot.poll(1_500), "deadman stop changes the state");
    assert_eq!(r.left.speed.get(), 0.0);
    assert_eq!(r.robot.stats().deadman_stops, 1);
    assert!(r.robot.speeds().all(|(_, s)| s == 0.0));
}

#[test]
fn timed_run_stops_at_duration() {
    let mut r = rig();
    let cmd = pack(&map(&[("right", 0.3.into()), ("duration_ms", 100.into())]));
    r.handle(0, RUN_MOTORS, &cmd);
    assert_eq!(r.robot.poll_at(), Some(100));
    assert!(r.robot.poll(100));
    assert_eq!(r.right.speed.get(), 0.0);
}

#[test]
fn stop_motors_on_link_down() {
    let mut r = rig();
    r.handle(0, RUN_MOTORS, &pack(&map(&[("left", 1.into())])));
    assert!(r.robot.stop_motors(StoppedBy::LinkLost));
    assert_eq!(r.left.speed.get(), 0.0);
    assert!(!r.robot.stop_motors(StoppedBy::LinkLost), "already stopped");
}

#[test]
fn bad_commands_are_refused_and_change_nothing() {
    let mut r = rig();
    r.handle(0, RUN_MOTORS, &pack(&map(&[("left", 0.5.into())])));
    let reasons = [
        r.refused(RUN_MOTORS, b"\xc1"),
        r.refused(RUN_MOTORS, &pack(&Value::from(3))),
        r.refused(RUN_MOTORS, &pack(&map(&[("left", "fast".into())]))),
        r.refused(RUN_MOTORS, &pack(&map(&[("left", 1.5.into())]))),
        r.refused(RUN_MOTORS, &pack(&map(&[("left", f64::NAN.into())]))),
        r.refused(RUN_MOTORS, &pack(&map(&[("tail", 0.1.into())]))),
        r.refused(
            RUN_MOTORS,
            &pack(&map(&[("right", 0.1.into()), ("wing", 0.1.into())])),
        ),
        r.refused(LIGHT_LEDS, &pack(&map(&[("status", 2.into())]))),
        r.refused(LIGHT_LEDS, &pack(&map(&[("disco", true.into())]))),
        r.refused("fly", &pack(&map(&[]))),
    ];
    assert!(reasons[3].contains("out of range") && reasons[3].contains("left"));
    assert!(reasons[5].contains("unknown field tail"), "{}", reasons[5]);
    assert_eq!(reasons[9], "unknown topic");
    // Nothing moved: left still at 0.5, right untouched.
    assert_eq!(r.left.speed.get(), 0.5);
    assert_eq!(r.right.speed.get(), 0.0);
    assert_eq!(r.status.level.get(), 0.0);
    assert_eq!(r.robot.stats().refused, reasons.len() as u32);
}

#[test]
fn pin_failure_stops_every_motor() {
    let mut r = rig();
    r.handle(0, RUN_MOTORS, &pack(&map(&[("left", 0.5.into())])));
    r.right.fail.set(true);
    let reason = r.refused(RUN_MOTORS, &pack(&map(&[("right", 0.5.into())])));
    assert!(reason.contains("all motors stopped"), "{reason}");
    assert_eq!(r.left.speed.get(), 0.0);
    r.status.fail.set(true);
    assert_eq!(
        r.refused(LIGHT_LEDS, &pack(&map(&[("status", 1.into())]))),
        "led output failed"
    );
    assert_eq!(r.robot.stats().pin_errors, 2);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut r = rig();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seed = pack(&map(&[("left", 0.5.into()), ("duration_ms", 10.into())]));
    for i in 0..20_000u64 {
        let mut payload = seed.clone();
        // Mutate a few bytes, sometimes truncate.
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % payload.len();
            payload[at] = next() as u8;
        }
        if next() % 5 == 0 {
            payload.truncate((next() as usize) % payload.len());
        }
        let topic = if i % 2 == 0 { RUN_MOTORS } else { LIGHT_LEDS };
        let outcome = r.robot.handle(i, topic, &payload, &mut r.out);
        assert_ne!(outcome, Outcome::ReportTooLarge);
        r.robot.poll(i);
    }
    let s = r.robot.stats();
    assert_eq!(s.accepted + s.refused, 20_000);
    assert!(s.refused > 0 && s.accepted > 0);
}
