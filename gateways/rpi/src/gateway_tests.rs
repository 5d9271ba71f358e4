//! Gateway behaviour on the simulated backend: every command's effect on the
//! pins, the deadman, and bad input.

use super::*;
use crate::backend::sim::{Mode, SimBackend, SimBoard, EEPROM_ADDR};

fn gateway() -> (Gateway<SimBackend>, SimBoard, Instant) {
    let board = SimBoard::new();
    let t0 = Instant::now();
    let gw = Gateway::new(SimBackend::new(board.clone()), Config::default(), t0).unwrap();
    (gw, board, t0)
}

fn pack(entries: &[(&str, Value)]) -> Vec<u8> {
    let v = Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}

fn cmd(name: &str, rest: &[(&str, Value)]) -> Vec<u8> {
    let mut e = vec![("command", Value::from(name))];
    e.extend_from_slice(rest);
    pack(&e)
}

const CMD: &str = "to_rpi_gateway";

fn only_error(reports: &[Report]) -> String {
    assert_eq!(reports.len(), 1, "{reports:?}");
    let v = reports[0].value();
    assert_eq!(
        get(&v, "report").and_then(Value::as_str),
        Some("error"),
        "{v}"
    );
    assert_eq!(reports[0].topic, "from_rpi_gateway");
    get(&v, "reason")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned()
}

fn kind(r: &Report) -> Option<String> {
    r.kind()
}

fn state_of(reports: &[Report]) -> Value {
    reports
        .iter()
        .find(|r| kind(r).as_deref() == Some("state"))
        .expect("a state report")
        .value()
}

/// The gateway's status report among `reports` (backend, gpio, counters).
fn status_of(reports: &[Report]) -> Value {
    reports
        .iter()
        .find(|r| kind(r).as_deref() == Some("status"))
        .expect("a status report")
        .value()
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    get(v, key)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn new_puts_actuators_in_safe_state() {
    let (_gw, board, _) = gateway();
    for p in [18, 19] {
        assert_eq!(board.pin(p).mode, Mode::Pwm);
        assert_eq!(board.pin(p).duty, 0.0);
    }
    for p in [5, 6, 20, 21, 17] {
        assert_eq!(board.pin(p).mode, Mode::Output);
        assert!(!board.pin(p).level);
    }
    assert_eq!(board.pin(16).mode, Mode::Pwm);
}

#[test]
fn run_motors_drives_hbridge_pins_and_reports_state() {
    let (mut gw, board, t0) = gateway();
    let r = gw.handle(
        "run_motors",
        &pack(&[("left", 0.5.into()), ("right", (-0.25).into())]),
        t0,
    );
    assert_eq!(board.pin(18).duty, 0.5);
    assert!(board.pin(5).level && !board.pin(6).level);
    assert_eq!(board.pin(19).duty, 0.25);
    assert!(!board.pin(20).level && board.pin(21).level);
    let st = state_of(&r);
    let motors = field(&st, "motors").unwrap();
    assert_eq!(f(get(motors, "left").unwrap()), 0.5);
    assert_eq!(f(get(motors, "right").unwrap()), -0.25);
    // Integers are speeds too; 0 stops with both direction pins low.
    gw.handle("run_motors", &pack(&[("left", 0.into())]), t0);
    assert_eq!(board.pin(18).duty, 0.0);
    assert!(!board.pin(5).level && !board.pin(6).level);
    assert_eq!(gw.motor_speeds()["right"], -0.25);
}

#[test]
fn timed_runs_over_the_limit_are_refused() {
    let (mut gw, board, t0) = gateway();
    assert_eq!(gw.config().safety.max_run_ms, 10_000);
    // At the limit: runs, and stops at its end (not at the deadman).
    gw.handle(
        "run_motors",
        &pack(&[("left", 0.5.into()), ("duration_ms", 10_000.into())]),
        t0,
    );
    assert_eq!(board.pin(18).duty, 0.5);
    gw.tick(t0 + Duration::from_millis(9_999));
    assert_eq!(board.pin(18).duty, 0.5);
    gw.tick(t0 + Duration::from_millis(10_000));
    assert_eq!(board.pin(18).duty, 0.0);
    // Over it: an error report and nothing changes.
    gw.handle("run_motors", &pack(&[("left", 0.3.into())]), t0);
    let r = gw.handle(
        "run_motors",
        &pack(&[("left", 1.0.into()), ("duration_ms", 10_001.into())]),
        t0,
    );
    let reason = only_error(&r);
    // The core robot's reason (one contract with the firmware).
    assert!(reason.contains("duration_ms (max 10000)"), "{reason}");
    assert_eq!(board.pin(18).duty, 0.3);
    assert_eq!(gw.motor_speeds()["left"], 0.3);
}

#[test]
fn invert_and_max_duty_apply() {
    let mut cfg = Config::default();
    let left = cfg.motors.get_mut("left").unwrap();
    left.invert = true;
    left.max_duty = 0.5;
    let board = SimBoard::new();
    let t0 = Instant::now();
    let mut gw = Gateway::new(SimBackend::new(board.clone()), cfg, t0).unwrap();
    gw.handle("run_motors", &pack(&[("left", 1.0.into())]), t0);
    assert_eq!(board.pin(18).duty, 0.5);
    assert!(!board.pin(5).level && board.pin(6).level);
}

#[test]
fn deadman_stops_motors_after_timeout() {
    let (mut gw, board, t0) = gateway();
    gw.handle("run_motors", &pack(&[("left", 0.8.into())]), t0);
    assert_eq!(gw.next_deadline(t0), t0 + Duration::from_millis(500));
    assert!(gw.tick(t0 + Duration::from_millis(499)).is_empty());
    assert_eq!(board.pin(18).duty, 0.8);
    // A new command re-arms it.
    let t1 = t0 + Duration::from_millis(400);
    gw.handle("run_motors", &pack(&[("left", 0.8.into())]), t1);
    assert!(gw.tick(t1 + Duration::from_millis(450)).is_empty());
    let r = gw.tick(t1 + Duration::from_millis(500));
    assert_eq!(board.pin(18).duty, 0.0);
    assert!(!board.pin(5).level);
    let st = state_of(&r);
    assert_eq!(
        field(&st, "stopped_by").and_then(Value::as_str),
        Some("deadman")
    );
    assert_eq!(gw.stats().deadman_stops, 1);
    // Stopped motors do not trip it again.
    gw.tick(t1 + Duration::from_secs(5));
    assert_eq!(gw.stats().deadman_stops, 1);
}

#[test]
fn periodic_state_report() {
    let (mut gw, _board, t0) = gateway();
    let r = gw.tick(t0);
    assert_eq!(
        field(&status_of(&r), "backend").and_then(Value::as_str),
        Some("sim")
    );
    assert!(gw.tick(t0 + Duration::from_millis(999)).is_empty());
    // The robot's state and the gateway's status, once a period.
    let kinds: Vec<_> = gw
        .tick(t0 + Duration::from_millis(1000))
        .iter()
        .map(Report::kind)
        .collect();
    assert_eq!(kinds, [Some("state".into()), Some("status".into())]);
}

#[test]
fn light_leds_on_off_and_dimmed() {
    let (mut gw, board, t0) = gateway();
    let r = gw.handle(
        "light_leds",
        &pack(&[("status", true.into()), ("headlight", 0.25.into())]),
        t0,
    );
    assert!(board.pin(17).level);
    assert_eq!(board.pin(16).duty, 0.25);
    let leds = field(&state_of(&r), "leds").unwrap().clone();
    assert_eq!(f(get(&leds, "status").unwrap()), 1.0);
    gw.handle("light_leds", &pack(&[("status", false.into())]), t0);
    assert!(!board.pin(17).level);
    assert_eq!(gw.led_levels()["headlight"], 0.25);
}

#[test]
fn blinker_with_tags() {
    let (mut gw, board, t0) = gateway();
    let r = gw.handle(
        CMD,
        &cmd(
            "set_mode_digital_output",
            &[("pin", 4.into()), ("tag", "led".into())],
        ),
        t0,
    );
    assert_eq!(
        field(&status_of(&r), "report").and_then(Value::as_str),
        Some("status")
    );
    assert_eq!(board.pin(4).mode, Mode::Output);
    for v in [1, 0, 1] {
        gw.handle(
            CMD,
            &cmd(
                "digital_write",
                &[("tag", "led".into()), ("value", v.into())],
            ),
            t0,
        );
        assert_eq!(board.pin(4).level, v == 1);
    }
    let st = gw.status_report().value();
    let pin4 = get(field(&st, "gpio").unwrap(), "4").unwrap();
    assert_eq!(
        get(pin4, "mode").and_then(Value::as_str),
        Some("digital_output")
    );
    assert_eq!(get(pin4, "value").and_then(Value::as_u64), Some(1));
}

#[test]
fn pwm_servo_and_tone() {
    let (mut gw, board, t0) = gateway();
    gw.handle(CMD, &cmd("set_mode_pwm", &[("pin", 12.into())]), t0);
    gw.handle(
        CMD,
        &cmd("pwm_write", &[("pin", 12.into()), ("value", 51.into())]),
        t0,
    );
    assert_eq!(board.pin(12).duty, 0.2);
    gw.handle(CMD, &cmd("set_mode_servo", &[("pin", 13.into())]), t0);
    assert_eq!(board.pin(13).frequency_hz, 50);
    gw.handle(
        CMD,
        &cmd(
            "servo_position",
            &[("pin", 13.into()), ("position", 90.into())],
        ),
        t0,
    );
    // 1.5 ms of 20 ms.
    assert_eq!(board.pin(13).duty, 0.075);
    let r = gw.handle(
        CMD,
        &cmd(
            "play_tone",
            &[
                ("pin", 22.into()),
                ("freq", 440.into()),
                ("duration", 200.into()),
            ],
        ),
        t0,
    );
    assert!(
        r.iter().all(|r| r.kind().as_deref() == Some("status")),
        "{r:?}"
    );
    assert_eq!(board.pin(22).frequency_hz, 440);
    assert_eq!(board.pin(22).duty, 0.5);
    assert_eq!(gw.next_deadline(t0), t0 + Duration::from_millis(200));
    gw.tick(t0 + Duration::from_millis(199));
    assert_eq!(board.pin(22).duty, 0.5);
    gw.tick(t0 + Duration::from_millis(200));
    assert_eq!(board.pin(22).duty, 0.0);
}

#[test]
fn digital_input_reports_on_change_and_reporting_switch() {
    let (mut gw, board, t0) = gateway();
    gw.handle(
        CMD,
        &cmd(
            "set_mode_digital_input_pullup",
            &[("pin", 23.into()), ("tag", "button".into())],
        ),
        t0,
    );
    assert_eq!(board.pin(23).mode, Mode::InputPullup);
    let inputs = |r: Vec<Report>| -> Vec<(u64, u64)> {
        r.iter()
            .filter(|r| r.kind().as_deref() == Some("digital_input"))
            .map(|r| {
                assert!(
                    field(&r.value(), "timestamp")
                        .and_then(Value::as_f64)
                        .unwrap()
                        > 1e9
                );
                (
                    field(&r.value(), "pin").and_then(Value::as_u64).unwrap(),
                    field(&r.value(), "value").and_then(Value::as_u64).unwrap(),
                )
            })
            .collect()
    };
    let t = |ms| t0 + Duration::from_millis(ms);
    assert_eq!(inputs(gw.tick(t(1))), vec![(23, 1)]);
    assert_eq!(inputs(gw.tick(t(2))), vec![]);
    board.set_input(23, false);
    assert_eq!(inputs(gw.tick(t(3))), vec![(23, 0)]);
    gw.handle(
        CMD,
        &cmd("disable_digital_reporting", &[("pin", 23.into())]),
        t(4),
    );
    board.set_input(23, true);
    assert_eq!(inputs(gw.tick(t(5))), vec![]);
    gw.handle(
        CMD,
        &cmd("enable_digital_reporting", &[("tag", "button".into())]),
        t(6),
    );
    assert_eq!(inputs(gw.tick(t(7))), vec![(23, 1)]);
}

#[test]
fn i2c_write_then_read_through_the_bus() {
    let (mut gw, board, t0) = gateway();
    let r = gw.handle(
        CMD,
        &cmd(
            "i2c_write",
            &[
                ("addr", EEPROM_ADDR.into()),
                ("data", Value::Array(vec![3.into(), 7.into(), 9.into()])),
            ],
        ),
        t0,
    );
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(&board.eeprom()[3..5], &[7, 9]);
    let r = gw.handle(
        CMD,
        &cmd(
            "i2c_read",
            &[
                ("addr", EEPROM_ADDR.into()),
                ("register", 3.into()),
                ("number_of_bytes", 2.into()),
                ("tag", "eeprom".into()),
            ],
        ),
        t0,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind().as_deref(), Some("i2c_data"));
    assert_eq!(
        field(&r[0].value(), "value"),
        Some(&Value::Array(vec![7.into(), 9.into()]))
    );
    let e = only_error(&gw.handle(
        CMD,
        &cmd(
            "i2c_read",
            &[
                ("addr", 0x21.into()),
                ("register", 0.into()),
                ("number_of_bytes", 1.into()),
            ],
        ),
        t0,
    ));
    assert!(e.contains("0x21"), "{e}");
}

#[test]
fn hostile_input_gets_one_error_and_changes_nothing() {
    let (mut gw, board, t0) = gateway();
    gw.handle(
        CMD,
        &cmd("set_mode_digital_output", &[("pin", 4.into())]),
        t0,
    );
    gw.handle("run_motors", &pack(&[("left", 0.3.into())]), t0);
    let before = (board.pins(), board.change_count(), gw.motor_speeds());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (CMD, cmd("fly", &[]), "unknown command fly"),
        (CMD, pack(&[("pin", 4.into())]), "missing field command"),
        (
            CMD,
            pack(&[("command", 3.into())]),
            "wrong type for field command",
        ),
        (
            CMD,
            cmd("digital_write", &[("pin", 4.into())]),
            "missing field value",
        ),
        (
            CMD,
            cmd("digital_write", &[("pin", "4".into()), ("value", 1.into())]),
            "wrong type for field pin",
        ),
        (
            CMD,
            cmd("digital_write", &[("pin", 4.into()), ("value", 2.into())]),
            "value out of range for field value",
        ),
        (
            CMD,
            cmd(
                "digital_write",
                &[("tag", "nope".into()), ("value", 1.into())],
            ),
            "unknown tag",
        ),
        (
            CMD,
            cmd("digital_write", &[("pin", 7.into()), ("value", 1.into())]),
            "pin 7 is not configured (send set_mode_digital_output first)",
        ),
        (
            CMD,
            cmd("set_mode_digital_output", &[("pin", 28.into())]),
            "pin 28 is outside BCM 0-27",
        ),
        (
            CMD,
            cmd("set_mode_digital_output", &[("pin", (-1).into())]),
            "value out of range for field pin",
        ),
        (
            CMD,
            cmd("set_mode_digital_output", &[("pin", 18.into())]),
            "owned by motors.left.pwm",
        ),
        (
            CMD,
            cmd("digital_write", &[("pin", 17.into()), ("value", 1.into())]),
            "owned by leds.status",
        ),
        (
            CMD,
            cmd("pwm_write", &[("pin", 4.into()), ("value", 10.into())]),
            "not pwm (send set_mode_pwm first)",
        ),
        (
            CMD,
            cmd("set_mode_analog_input", &[("pin", 2.into())]),
            "analog",
        ),
        (
            CMD,
            cmd(
                "set_mode_stepper",
                &[
                    (
                        "pins",
                        Value::Array(vec![1.into(), 2.into(), 3.into(), 4.into()]),
                    ),
                    ("steps_per_revolution", 200.into()),
                ],
            ),
            "not supported by rpi-gateway: set_mode_stepper",
        ),
        (
            CMD,
            cmd(
                "i2c_write",
                &[
                    ("addr", 0x50.into()),
                    ("data", Value::Array(vec![300.into()])),
                ],
            ),
            "value out of range for field data",
        ),
        (
            "run_motors",
            pack(&[("left", 1.5.into())]),
            "value out of range for field left",
        ),
        (
            "run_motors",
            pack(&[("left", 0.9.into()), ("middle", 0.1.into())]),
            "unknown field middle (valid: left, right)",
        ),
        (
            "run_motors",
            pack(&[("left", "fast".into())]),
            "wrong type for field left",
        ),
        (
            "light_leds",
            pack(&[("disco", true.into())]),
            "unknown field disco",
        ),
        (
            "light_leds",
            pack(&[("headlight", 2.into())]),
            "value out of range for field headlight",
        ),
        ("light_leds", vec![0x93, 1, 2, 3], "payload is not a map"),
        (CMD, vec![0xc1], "malformed payload"),
        (CMD, vec![0x80, 0x00], "malformed payload"),
        (CMD, vec![], "malformed payload"),
    ];
    let n = cases.len() as u64;
    for (topic, payload, want) in cases {
        let e = only_error(&gw.handle(topic, &payload, t0));
        assert!(
            e.contains(want),
            "{topic} {payload:?}: {e:?} lacks {want:?}"
        );
        assert_eq!(
            (board.pins(), board.change_count(), gw.motor_speeds()),
            before,
            "{topic} {payload:?} changed state"
        );
    }
    assert_eq!(gw.stats().errors, n);
}

#[test]
fn prefix_topics_are_ignored() {
    let (mut gw, _board, t0) = gateway();
    assert!(gw
        .handle("run_motors_extra", &pack(&[("left", 1.0.into())]), t0)
        .is_empty());
    assert_eq!(gw.stats().ignored, 1);
    assert_eq!(gw.motor_speeds()["left"], 0.0);
}

#[test]
fn drop_leaves_outputs_safe() {
    let (mut gw, board, t0) = gateway();
    gw.handle("run_motors", &pack(&[("right", (-1.0).into())]), t0);
    gw.handle("light_leds", &pack(&[("headlight", 1.0.into())]), t0);
    gw.handle(
        CMD,
        &cmd("set_mode_digital_output", &[("pin", 4.into())]),
        t0,
    );
    gw.handle(
        CMD,
        &cmd("digital_write", &[("pin", 4.into()), ("value", 1.into())]),
        t0,
    );
    drop(gw);
    for p in [18, 19, 16] {
        assert_eq!(board.pin(p).duty, 0.0, "pin {p}");
    }
    for p in [4, 5, 6, 20, 21, 17] {
        assert!(!board.pin(p).level, "pin {p}");
    }
}

#[test]
fn panic_unwinding_leaves_outputs_safe() {
    let board = SimBoard::new();
    let observed = board.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let t0 = Instant::now();
        let mut gw = Gateway::new(SimBackend::new(board.clone()), Config::default(), t0).unwrap();
        gw.handle("run_motors", &pack(&[("left", 1.0.into())]), t0);
        gw.handle("light_leds", &pack(&[("status", true.into())]), t0);
        assert_eq!(board.pin(18).duty, 1.0);
        panic!("a bug somewhere in the run loop");
    }));
    assert!(result.is_err());
    assert_eq!(observed.pin(18).duty, 0.0);
    assert!(!observed.pin(5).level && !observed.pin(17).level);
}

/// `(pin, value, timestamp)` of each `digital_input` report.
fn input_reports(reports: &[Report]) -> Vec<(u64, u64, f64)> {
    reports
        .iter()
        .filter(|r| r.kind().as_deref() == Some("digital_input"))
        .map(|r| {
            let v = r.value();
            (
                field(&v, "pin").and_then(Value::as_u64).unwrap(),
                field(&v, "value").and_then(Value::as_u64).unwrap(),
                field(&v, "timestamp").and_then(Value::as_f64).unwrap(),
            )
        })
        .collect()
}

fn levels(reports: &[Report]) -> Vec<(u64, u64)> {
    input_reports(reports)
        .into_iter()
        .map(|(p, v, _)| (p, v))
        .collect()
}

/// A gateway with GPIO 23 as a floating input, its level (0) reported.
fn with_input(backend: SimBackend, board: &SimBoard) -> (Gateway<SimBackend>, Instant) {
    let t0 = Instant::now();
    let mut gw = Gateway::new(backend, Config::default(), t0).unwrap();
    gw.handle(
        CMD,
        &cmd("set_mode_digital_input", &[("pin", 23.into())]),
        t0,
    );
    assert_eq!(board.pin(23).mode, Mode::Input);
    assert_eq!(levels(&gw.tick(t0)), vec![(23, 0)]);
    (gw, t0)
}

fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut items = [zmq::PollItem::from_fd(fd, zmq::POLLIN)];
    zmq::poll(&mut items, 0).unwrap();
    items[0].is_readable()
}

#[test]
fn watched_input_edge_reports_at_once_with_its_timestamp() {
    let board = SimBoard::new();
    let (mut gw, t0) = with_input(SimBackend::new(board.clone()), &board);
    assert!(gw.is_watched(23) && board.is_watched(23));
    // No polling timer for a watched pin: the next deadline is the periodic
    // state report.
    let state_at = gw.next_deadline(t0);
    assert!(state_at > t0 + INPUT_POLL, "{:?}", state_at - t0);
    assert!(gw.tick(t0 + INPUT_POLL).is_empty());
    let fd = gw.wake_fd().expect("a wake-up fd");
    assert!(!readable(fd));

    let t = |us| t0 + Duration::from_micros(us);
    board.set_input_at(23, true, t(1_000));
    assert!(readable(fd), "an edge wakes the run loop");
    assert_eq!(gw.next_deadline(t(1_100)), t(1_100));
    // Ticked 100 µs after the edge, far less than INPUT_POLL.
    let r = input_reports(&gw.tick(t(1_100)));
    assert!(!readable(fd), "tick clears the wake-up");
    board.set_input_at(23, false, t(4_250));
    let r2 = input_reports(&gw.tick(t(4_300)));
    assert_eq!((r.len(), r2.len()), (1, 1), "{r:?} {r2:?}");
    assert_eq!((r[0].0, r[0].1, r2[0].0, r2[0].1), (23, 1, 23, 0));
    // Timestamps are the edges' own: 3.25 ms apart.
    assert!((r2[0].2 - r[0].2 - 0.003_25).abs() < 1e-5, "{r:?} {r2:?}");
    assert_eq!(gw.stats().input_edges, 2);
    // Driving the same level again is no edge.
    board.set_input(23, false);
    assert!(gw.tick(t(5_000)).is_empty());
}

#[test]
fn watched_input_reporting_switch() {
    let board = SimBoard::new();
    let (mut gw, t0) = with_input(SimBackend::new(board.clone()), &board);
    let t = |ms| t0 + Duration::from_millis(ms);
    gw.handle(
        CMD,
        &cmd("disable_digital_reporting", &[("pin", 23.into())]),
        t(1),
    );
    board.set_input(23, true);
    board.set_input(23, false);
    board.set_input(23, true);
    assert_eq!(levels(&gw.tick(t(2))), vec![]);
    assert_eq!(gw.stats().input_edges, 3, "edges are taken, not reported");
    gw.handle(
        CMD,
        &cmd("enable_digital_reporting", &[("pin", 23.into())]),
        t(3),
    );
    // Enabling reports the current level on the next tick, then edges.
    assert_eq!(levels(&gw.tick(t(3))), vec![(23, 1)]);
    board.set_input(23, false);
    assert_eq!(levels(&gw.tick(t(4))), vec![(23, 0)]);
}

#[test]
fn short_pulse_gives_two_reports_watched_and_none_polled() {
    // Watched: high then low before any tick.
    let board = SimBoard::new();
    let (mut gw, t0) = with_input(SimBackend::new(board.clone()), &board);
    board.set_input(23, true);
    board.set_input(23, false);
    assert_eq!(
        levels(&gw.tick(t0 + Duration::from_millis(1))),
        vec![(23, 1), (23, 0)]
    );

    // Polled (a backend without interrupts): the same pulse is missed.
    let board = SimBoard::new();
    let (mut gw, t0) = with_input(SimBackend::polling(board.clone()), &board);
    assert!(!gw.is_watched(23) && !board.is_watched(23));
    assert_eq!(gw.next_deadline(t0), t0 + INPUT_POLL);
    board.set_input(23, true);
    board.set_input(23, false);
    assert_eq!(levels(&gw.tick(t0 + INPUT_POLL)), vec![]);
    // A level that lasts is seen at the next poll.
    board.set_input(23, true);
    assert_eq!(levels(&gw.tick(t0 + INPUT_POLL * 2)), vec![(23, 1)]);
    assert_eq!(gw.stats().input_edges, 0);
}

#[test]
fn stale_and_overflowing_edges_are_counted() {
    use crate::backend::EDGE_QUEUE_CAPACITY;
    let board = SimBoard::new();
    let (mut gw, t0) = with_input(SimBackend::new(board.clone()), &board);
    let t = |ms| t0 + Duration::from_millis(ms);
    // An edge queued, then the pin becomes an output before the tick.
    board.set_input(23, true);
    gw.handle(
        CMD,
        &cmd("set_mode_digital_output", &[("pin", 23.into())]),
        t(1),
    );
    assert!(!board.is_watched(23));
    assert_eq!(levels(&gw.tick(t(2))), vec![]);
    assert_eq!(gw.stats().stale_edges, 1);

    // Back to an input: a new watch; an old watch's edges would be stale.
    gw.handle(
        CMD,
        &cmd("set_mode_digital_input", &[("pin", 23.into())]),
        t(3),
    );
    assert_eq!(levels(&gw.tick(t(3))), vec![(23, 1)]);
    // More edges than the queue holds before a tick.
    let n = EDGE_QUEUE_CAPACITY + 5;
    for i in 0..n {
        board.set_input(23, i % 2 == 1);
    }
    let reports = gw.tick(t(4));
    assert_eq!(levels(&reports).len(), EDGE_QUEUE_CAPACITY);
    let s = gw.stats();
    assert_eq!((s.edge_overflows, s.stale_edges), (5, 1));
    assert_eq!(s.input_edges, EDGE_QUEUE_CAPACITY as u64);
    let state = gw.status_report().value();
    assert_eq!(
        field(&state, "edge_overflows").and_then(Value::as_u64),
        Some(5)
    );
    assert_eq!(
        field(&state, "stale_edges").and_then(Value::as_u64),
        Some(1)
    );
    assert_eq!(
        field(&state, "input_edges").and_then(Value::as_u64),
        Some(EDGE_QUEUE_CAPACITY as u64)
    );
}

/// The golden robot sequence shared with the firmware
/// (`tests/golden/robot_sequence.txt`, expected bytes generated from
/// Python's `packb`; `firmware/app/tests/golden.rs` replays the same file):
/// rpi-gateway on the sim backend answers every step with exactly the
/// fixture's report bytes — one report and error contract for both nodes.
#[test]
fn rpi_gateway_answers_the_golden_sequence_byte_for_byte() {
    use banyan_core::robot::golden::{self, Action};
    let fixture = golden::parse(include_str!("../../../tests/golden/robot_sequence.txt")).unwrap();
    let mut toml = format!(
        "[safety]\ndeadman_timeout_ms = {}\nmax_run_ms = {}\nstate_interval_ms = 3600000\n",
        fixture.deadman_ms, fixture.max_run_ms
    );
    for (i, m) in fixture.motors.iter().enumerate() {
        let base = 5 + 3 * i;
        toml += &format!(
            "[motors.{m}]\npwm = {}\nin1 = {}\nin2 = {}\n",
            [18, 19][i % 2],
            base,
            base + 1
        );
    }
    for (i, l) in fixture.leds.iter().enumerate() {
        toml += &format!("[leds.{l}]\npin = {}\npwm = true\n", [12, 13][i % 2]);
    }
    let cfg = Config::from_toml_str(&toml).unwrap();
    let t0 = Instant::now();
    let mut gw = Gateway::new(SimBackend::new(SimBoard::new()), cfg, t0).unwrap();
    // The first periodic reports are due at start: take them now.
    gw.tick(t0);
    let robot_reports = |reports: Vec<Report>| -> Vec<Vec<u8>> {
        reports
            .into_iter()
            .filter(|r| matches!(r.kind().as_deref(), Some("state" | "error")))
            .map(|r| r.payload)
            .collect()
    };
    let result = fixture.check(|step| {
        let at = t0 + Duration::from_millis(step.t_ms);
        match &step.action {
            Action::Command { topic, payload } => robot_reports(gw.handle(topic, payload, at)),
            Action::Poll => robot_reports(gw.tick(at)),
            Action::State => vec![gw.state_report().payload],
            Action::Stop(reason) => {
                if gw.stop_motors(*reason) {
                    vec![gw.state_report().payload]
                } else {
                    Vec::new()
                }
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Tags do not accumulate: a pin re-tagged a thousand times keeps one tag,
/// and the old names no longer resolve.
#[test]
fn tags_are_one_per_pin() {
    let (mut gw, _board, t0) = gateway();
    for i in 0..1000 {
        let r = gw.handle(
            CMD,
            &cmd(
                "set_mode_digital_output",
                &[("pin", 4.into()), ("tag", format!("t{i}").into())],
            ),
            t0,
        );
        assert!(
            r.iter().all(|r| r.kind().as_deref() == Some("status")),
            "{r:?}"
        );
    }
    assert_eq!(gw.tag_count(), 1);
    let e = only_error(&gw.handle(
        CMD,
        &cmd(
            "digital_write",
            &[("tag", "t0".into()), ("value", 1.into())],
        ),
        t0,
    ));
    assert!(e.contains("unknown tag"), "{e}");
    let r = gw.handle(
        CMD,
        &cmd(
            "digital_write",
            &[("tag", "t999".into()), ("value", 1.into())],
        ),
        t0,
    );
    assert!(
        r.iter().all(|r| r.kind().as_deref() != Some("error")),
        "{r:?}"
    );
}
