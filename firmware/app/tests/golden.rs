//! The golden robot sequence (`tests/golden/robot_sequence.txt`, shared with
//! rpi-gateway): the firmware's robot, with the firmware's actuator types
//! behind fakes, must answer every step with exactly the fixture's report
//! bytes.

mod common;

use banyan_core::robot::golden;
use banyan_firmware_app::Robot;
use common::{FakeLed, FakeMotor};

const FIXTURE: &str = include_str!("../../../tests/golden/robot_sequence.txt");

fn robot_for(fixture: &golden::Fixture) -> Robot<FakeMotor, FakeLed, 2, 2> {
    let mut robot = Robot::new(fixture.deadman_ms);
    robot.set_max_run_ms(fixture.max_run_ms);
    for m in &fixture.motors {
        robot
            .add_motor(m.clone().leak(), FakeMotor::default())
            .unwrap();
    }
    for l in &fixture.leds {
        robot.add_led(l.clone().leak(), FakeLed::default()).unwrap();
    }
    robot
}

#[test]
fn firmware_robot_answers_the_golden_sequence_byte_for_byte() {
    let fixture = golden::parse(FIXTURE).unwrap();
    assert!(
        fixture
            .steps
            .iter()
            .filter(|s| !s.reports.is_empty())
            .count()
            > 10
    );
    let mut robot = robot_for(&fixture);
    if let Err(e) = fixture.replay(&mut robot) {
        panic!("{e}");
    }
}

#[test]
fn a_wrong_expected_byte_fails_the_replay() {
    let mut fixture = golden::parse(FIXTURE).unwrap();
    let last = fixture
        .steps
        .iter_mut()
        .rev()
        .find(|s| !s.reports.is_empty())
        .unwrap();
    let line = last.line;
    let report = &mut last.reports[0];
    let end = report.len() - 1;
    report[end] ^= 0x01;
    let mut robot = robot_for(&fixture);
    assert_eq!(fixture.replay(&mut robot).unwrap_err().line, line);
}
