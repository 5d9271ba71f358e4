//! `robot::Robot` on arbitrary command sequences: never a panic; every
//! report is one well-formed MessagePack map; a refused or unchanged command
//! leaves the state report byte for byte as it was, a changed one is
//! reported with exactly the new state; every command is counted.
//!
//! Input: records `op u8, dt u8, len u8, data[len]` (a record cut short keeps
//! what is there). Time moves by `dt × 8 ms` first. `op & 0x03`: 0 →
//! `run_motors` payload `data`, 1 → `light_leds` payload, 2 → `poll`,
//! 3 → `stop_motors(StoppedBy::ALL[data[0] % 6])`. With bit `0x80` the
//! report buffer is only `dt` bytes (reports that do not fit, echoes
//! dropped to nil); with bit `0x40` the topic is an unknown one.
#![no_main]

use banyan_core::actuator::{self, SetBrightness, SetSpeed};
use banyan_core::msg::{self, Limits, Value};
use banyan_core::robot::{Outcome, Robot, StoppedBy};
use libfuzzer_sys::fuzz_target;

/// A motor or LED that accepts every valid value.
struct Sim;

impl SetSpeed for Sim {
    type Error = actuator::Error;
    fn set_speed(&mut self, speed: f32) -> Result<(), actuator::Error> {
        assert!((-1.0..=1.0).contains(&speed), "speed {speed}");
        Ok(())
    }
    fn stop(&mut self) -> Result<(), actuator::Error> {
        Ok(())
    }
}

impl SetBrightness for Sim {
    type Error = actuator::Error;
    fn set_brightness(&mut self, b: f32) -> Result<(), actuator::Error> {
        assert!((0.0..=1.0).contains(&b), "level {b}");
        Ok(())
    }
}

fn state(robot: &Robot<Sim, Sim, 2, 2>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = robot
        .state_report(&mut buf)
        .expect("state report fits 256 B");
    check_report(&buf[..n], "state");
    buf[..n].to_vec()
}

fn check_report(bytes: &[u8], kind: &str) {
    msg::validate(bytes, &Limits::DEFAULT).expect("report is well-formed msgpack");
    let map = Value::parse(bytes, &Limits::DEFAULT)
        .unwrap()
        .as_map()
        .expect("report is a map");
    assert_eq!(map.get("report").and_then(|v| v.as_str()), Some(kind));
}

fuzz_target!(|data: &[u8]| {
    let mut robot: Robot<Sim, Sim, 2, 2> = Robot::new(500);
    robot.set_max_run_ms(2_000);
    robot.add_motor("left", Sim).unwrap();
    robot.add_motor("right", Sim).unwrap();
    robot.add_led("status", Sim).unwrap();
    robot.add_led("beacon", Sim).unwrap();
    let mut now = 0u64;
    let mut commands = 0u32;
    let mut rest = data;
    let mut out = [0u8; 512];
    while let [op, dt, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        now += u64::from(*dt) * 8;
        let size = if op & 0x80 != 0 {
            usize::from(*dt)
        } else {
            out.len()
        };
        let before = state(&robot);
        match op & 0x03 {
            kind @ (0 | 1) => {
                let topic = match (kind, op & 0x40 != 0) {
                    (_, true) => "run_motor",
                    (0, _) => "run_motors",
                    _ => "light_leds",
                };
                commands += 1;
                let buf = &mut out[..size];
                let outcome = robot.handle(now, topic, payload, buf);
                let after = state(&robot);
                match outcome {
                    Outcome::Changed(n) => {
                        assert_ne!(before, after);
                        assert_eq!(&buf[..n], &after[..]);
                    }
                    Outcome::Unchanged => assert_eq!(before, after),
                    Outcome::Refused(n) => {
                        check_report(&buf[..n], "error");
                        assert_eq!(before, after, "a refusal changed the state");
                    }
                    Outcome::ReportTooLarge => assert!(size < 256),
                }
            }
            2 => {
                let changed = robot.poll(now);
                assert_eq!(changed, before != state(&robot));
            }
            _ => {
                let reason = StoppedBy::ALL[usize::from(payload.first().copied().unwrap_or(0)) % 6];
                let changed = robot.stop_motors(reason);
                assert_eq!(changed, before != state(&robot));
                assert_eq!(robot.stopped_by(), Some(reason));
            }
        }
        if let Some(at) = robot.poll_at() {
            assert!(at <= now + 2_000, "deadline beyond the longest run");
        }
    }
    let s = robot.stats();
    assert_eq!(s.accepted + s.refused, commands);
    assert_eq!(s.pin_errors, 0);
});
