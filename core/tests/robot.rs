//! `robot`: the one report contract — state and error reports byte for byte
//! (expected bytes are `msgpack.packb(obj, use_bin_type=True).hex()` of the
//! Python object in the comment, made with the project's `.venv/bin/python`),
//! numbers as sent, keep-alives, `stopped_by`, refusals that change nothing,
//! pin failures, and the golden sequence in `tests/golden/`.

use std::cell::Cell;
use std::rc::Rc;

use banyan_core::actuator::{self, SetBrightness, SetSpeed};
use banyan_core::robot::{self, golden, AddError, Error, Outcome, Robot, StoppedBy, Topics};

/// A motor or LED whose value the test watches; `fail` makes writes fail.
#[derive(Clone, Default)]
struct Sim {
    value: Rc<Cell<f32>>,
    fail: Rc<Cell<bool>>,
    writes: Rc<Cell<u32>>,
}

impl SetSpeed for Sim {
    type Error = actuator::Error<&'static str, &'static str>;
    fn set_speed(&mut self, speed: f32) -> Result<(), Self::Error> {
        if self.fail.get() {
            return Err(actuator::Error::Pwm("broken"));
        }
        self.writes.set(self.writes.get() + 1);
        self.value.set(speed);
        Ok(())
    }
    fn stop(&mut self) -> Result<(), Self::Error> {
        if self.fail.get() {
            return Err(actuator::Error::Pwm("broken"));
        }
        self.value.set(0.0);
        Ok(())
    }
}

impl SetBrightness for Sim {
    type Error = &'static str;
    fn set_brightness(&mut self, b: f32) -> Result<(), &'static str> {
        if self.fail.get() {
            return Err("broken");
        }
        self.value.set(b);
        Ok(())
    }
}

fn unhex(s: &str) -> Vec<u8> {
    golden::unhex(s).unwrap()
}

fn pack(v: &rmpv::Value) -> Vec<u8> {
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, v).unwrap();
    b
}

fn unpack(b: &[u8]) -> rmpv::Value {
    let mut r = b;
    let v = rmpv::decode::read_value(&mut r).unwrap();
    assert!(r.is_empty());
    v
}

fn map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

fn field<'v>(v: &'v rmpv::Value, key: &str) -> &'v rmpv::Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

struct Rig {
    robot: Robot<Sim, Sim, 2, 2>,
    left: Sim,
    right: Sim,
    status: Sim,
    out: [u8; 256],
}

fn rig() -> Rig {
    let (left, right, status) = (Sim::default(), Sim::default(), Sim::default());
    let mut robot = Robot::new(500);
    robot.add_motor("left", left.clone()).unwrap();
    robot.add_motor("right", right.clone()).unwrap();
    robot.add_led("status", status.clone()).unwrap();
    robot.add_led("beacon", Sim::default()).unwrap();
    Rig {
        robot,
        left,
        right,
        status,
        out: [0; 256],
    }
}

impl Rig {
    /// Handles a command and returns the outcome and the report bytes.
    fn handle(&mut self, now: u64, topic: &str, payload: &[u8]) -> (Outcome, Vec<u8>) {
        let o = self.robot.handle(now, topic, payload, &mut self.out);
        let bytes = match o {
            Outcome::Changed(n) | Outcome::Refused(n) => self.out[..n].to_vec(),
            _ => Vec::new(),
        };
        (o, bytes)
    }

    fn state(&mut self) -> rmpv::Value {
        let n = self.robot.state_report(&mut self.out).unwrap();
        unpack(&self.out[..n])
    }

    fn refused(&mut self, topic: &str, payload: &[u8]) -> rmpv::Value {
        let (o, bytes) = self.handle(0, topic, payload);
        assert!(matches!(o, Outcome::Refused(_)), "{o:?}");
        unpack(&bytes)
    }
}

#[test]
fn state_report_bytes_match_python() {
    let mut r = rig();
    // {'left': 0.3, 'right': -1}
    let (o, bytes) = r.handle(
        0,
        "run_motors",
        &unhex("82a46c656674cb3fd3333333333333a57269676874ff"),
    );
    assert!(matches!(o, Outcome::Changed(_)));
    // {'report': 'state', 'motors': {'left': 0.3, 'right': -1.0},
    //  'leds': {'status': 0.0, 'beacon': 0.0}, 'stopped_by': None}
    assert_eq!(
        bytes,
        unhex(
            "84a67265706f7274a57374617465a66d6f746f727382a46c656674cb3fd3333333333333\
             a57269676874cbbff0000000000000a46c65647382a6737461747573cb0000000000000000\
             a6626561636f6ecb0000000000000000aa73746f707065645f6279c0"
        )
    );
}

#[test]
fn numbers_are_reported_as_sent() {
    let mut r = rig();
    let cmd = pack(&map(&[("left", 0.3.into()), ("right", 0.3f32.into())]));
    let (_, bytes) = r.handle(0, "run_motors", &cmd);
    let motors = field(&unpack(&bytes), "motors").clone();
    // The float64 0.3 comes back as exactly 0.3 (not 0.30000001192092896)…
    assert_eq!(field(&motors, "left"), &rmpv::Value::F64(0.3));
    // …and a float32 as the same number (a float64 equal to it).
    assert_eq!(
        field(&motors, "right"),
        &rmpv::Value::F64(f64::from(0.3f32))
    );
    // The actuators got the nearest f32.
    assert_eq!(r.left.value.get(), 0.3f32);
    assert_eq!(r.right.value.get(), 0.3f32);
    assert_eq!(r.robot.speeds().next(), Some(("left", 0.3)));
    // Integers: -1 and 1 come back as -1.0 and 1.0; light_leds' true as 1.0.
    r.handle(1, "run_motors", &pack(&map(&[("left", (-1).into())])));
    r.handle(1, "light_leds", &pack(&map(&[("status", true.into())])));
    let st = r.state();
    assert_eq!(field(field(&st, "motors"), "left"), &rmpv::Value::F64(-1.0));
    assert_eq!(field(field(&st, "leds"), "status"), &rmpv::Value::F64(1.0));
}

#[test]
fn repeats_are_keep_alives_without_a_report() {
    let mut r = rig();
    let cmd = pack(&map(&[("left", 0.5.into())]));
    assert!(matches!(
        r.handle(0, "run_motors", &cmd).0,
        Outcome::Changed(_)
    ));
    assert_eq!(r.robot.poll_at(), Some(500));
    assert_eq!(r.handle(400, "run_motors", &cmd).0, Outcome::Unchanged);
    assert_eq!(r.robot.poll_at(), Some(900), "the repeat fed the deadman");
    assert_eq!(r.handle(800, "run_motors", b"\x80").0, Outcome::Unchanged);
    assert_eq!(r.robot.poll_at(), Some(1_300), "{{}} fed the deadman");
    // The same value in another encoding is the same state: 1 then 1.0.
    r.handle(900, "run_motors", &pack(&map(&[("right", 1.into())])));
    let (o, _) = r.handle(950, "run_motors", &pack(&map(&[("right", 1.0.into())])));
    assert_eq!(o, Outcome::Unchanged);
    // A change is one state report.
    let (o, bytes) = r.handle(1_000, "run_motors", &pack(&map(&[("left", 0.25.into())])));
    assert!(matches!(o, Outcome::Changed(_)));
    assert_eq!(
        field(field(&unpack(&bytes), "motors"), "left").as_f64(),
        Some(0.25)
    );
    assert_eq!(r.robot.stats().accepted, 6);
    assert!(!r.robot.poll(1_499));
    assert_eq!(r.left.value.get(), 0.25);
}

#[test]
fn deadman_and_run_end_set_stopped_by_once() {
    let mut r = rig();
    r.handle(1_000, "run_motors", &pack(&map(&[("left", 0.75.into())])));
    assert!(!r.robot.poll(1_499));
    assert!(r.robot.poll(1_500), "deadman stop changes the state");
    assert_eq!(r.left.value.get(), 0.0);
    assert_eq!(r.robot.stopped_by(), Some(StoppedBy::Deadman));
    let st = r.state();
    assert_eq!(field(&st, "stopped_by").as_str(), Some("deadman"));
    assert_eq!(field(field(&st, "motors"), "left").as_f64(), Some(0.0));
    assert_eq!(r.robot.stats().deadman_stops, 1);
    assert_eq!(r.robot.poll_at(), None);

    // A keep-alive ({}) does not clear it; a speed does.
    assert_eq!(r.handle(2_000, "run_motors", b"\x80").0, Outcome::Unchanged);
    assert_eq!(r.robot.stopped_by(), Some(StoppedBy::Deadman));
    // Motors at 0 by command: the deadman stops them again silently.
    let (o, bytes) = r.handle(2_100, "run_motors", &pack(&map(&[("left", 0.into())])));
    assert!(matches!(o, Outcome::Changed(_)), "stopped_by cleared");
    assert!(field(&unpack(&bytes), "stopped_by").is_nil());
    assert!(!r.robot.poll(2_600));
    assert_eq!(r.robot.stopped_by(), None);
    assert_eq!(r.robot.stats().deadman_stops, 1);

    // A timed run ends with `run_end`, at its own time (not the deadman's).
    let cmd = pack(&map(&[
        ("right", 0.3.into()),
        ("duration_ms", 1_000.into()),
    ]));
    r.handle(3_000, "run_motors", &cmd);
    assert_eq!(r.robot.poll_at(), Some(4_000));
    assert!(!r.robot.poll(3_999));
    assert!(r.robot.poll(4_000));
    assert_eq!(r.right.value.get(), 0.0);
    assert_eq!(r.robot.stopped_by(), Some(StoppedBy::RunEnd));
    assert_eq!(r.robot.stats().run_ends, 1);
}

#[test]
fn stop_motors_records_every_reason() {
    let mut r = rig();
    for reason in StoppedBy::ALL {
        r.handle(0, "run_motors", &pack(&map(&[("left", 1.into())])));
        assert!(r.robot.stop_motors(reason));
        assert_eq!(r.left.value.get(), 0.0);
        let st = r.state();
        assert_eq!(field(&st, "stopped_by").as_str(), Some(reason.as_str()));
        assert_eq!(StoppedBy::from_name(reason.as_str()), Some(reason));
        assert!(!r.robot.stop_motors(reason), "nothing changed");
    }
    let names: Vec<_> = StoppedBy::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "deadman",
            "run_end",
            "link_lost",
            "backplane_lost",
            "exit",
            "pin_failure"
        ]
    );
    // A new reason changes the state even with the motors already stopped.
    assert!(r.robot.stop_motors(StoppedBy::Exit));
}

#[test]
fn safe_state_turns_the_leds_off_too() {
    let mut r = rig();
    r.handle(0, "light_leds", &pack(&map(&[("status", 0.5.into())])));
    assert!(r.robot.safe_state(StoppedBy::Exit));
    assert_eq!(r.status.value.get(), 0.0);
    let st = r.state();
    assert_eq!(field(field(&st, "leds"), "status").as_f64(), Some(0.0));
    assert_eq!(field(&st, "stopped_by").as_str(), Some("exit"));
    assert!(!r.robot.safe_state(StoppedBy::Exit));
}

#[test]
fn error_report_bytes_match_python() {
    let mut r = rig();
    // {'wheel': 0.1}
    let (_, bytes) = r.handle(0, "run_motors", &unhex("81a5776865656ccb3fb999999999999a"));
    // {'report': 'error', 'topic': 'run_motors',
    //  'reason': 'unknown field wheel (valid: left, right)', 'command': {'wheel': 0.1}}
    assert_eq!(
        bytes,
        unhex(
            "84a67265706f7274a56572726f72a5746f706963aa72756e5f6d6f746f7273a6726561736f6e\
             d928756e6b6e6f776e206669656c6420776865656c202876616c69643a206c6566742c2072696768\
             7429a7636f6d6d616e6481a5776865656ccb3fb999999999999a"
        )
    );
    // Not msgpack: echoed as bin. b'\xc1x'
    let (_, bytes) = r.handle(0, "run_motors", b"\xc1x");
    // {'report': 'error', 'topic': 'run_motors',
    //  'reason': 'malformed payload: reserved msgpack marker 0xc1', 'command': b'\xc1x'}
    assert_eq!(
        bytes,
        unhex(
            "84a67265706f7274a56572726f72a5746f706963aa72756e5f6d6f746f7273a6726561736f6e\
             d92f6d616c666f726d6564207061796c6f61643a207265736572766564206d73677061636b206d61\
             726b65722030786331a7636f6d6d616e64c402c178"
        )
    );
}

#[test]
fn refusals_name_the_field_echo_the_command_and_change_nothing() {
    let mut r = rig();
    r.handle(0, "run_motors", &pack(&map(&[("left", 0.5.into())])));
    let before = r.state();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "run_motors",
            b"\xc1".to_vec(),
            "malformed payload: reserved msgpack marker 0xc1",
        ),
        ("run_motors", pack(&3.into()), "payload is not a map"),
        (
            "run_motors",
            pack(&map(&[("left", "fast".into())])),
            "wrong type for field left",
        ),
        (
            "run_motors",
            pack(&map(&[("left", 1.5.into())])),
            "value out of range for field left",
        ),
        (
            "run_motors",
            pack(&map(&[("left", f64::NAN.into())])),
            "NaN for field left",
        ),
        (
            "run_motors",
            pack(&map(&[("right", 0.1.into()), ("tail", 0.1.into())])),
            "unknown field tail (valid: left, right)",
        ),
        (
            "run_motors",
            pack(&map(&[
                ("left", 0.1.into()),
                ("duration_ms", 10_001.into()),
            ])),
            "value out of range for field duration_ms (max 10000)",
        ),
        (
            "run_motors",
            pack(&map(&[("a", 0.into()), ("b", 0.into()), ("c", 0.into())])),
            "too many entries at field c",
        ),
        (
            "light_leds",
            pack(&map(&[("status", 2.into())])),
            "value out of range for field status",
        ),
        (
            "light_leds",
            pack(&map(&[("disco", true.into())])),
            "unknown field disco (valid: status, beacon)",
        ),
        ("fly", pack(&map(&[])), "unknown topic"),
    ];
    for (topic, payload, reason) in &cases {
        let rep = r.refused(topic, payload);
        assert_eq!(field(&rep, "report").as_str(), Some("error"));
        assert_eq!(field(&rep, "topic").as_str(), Some(*topic));
        assert_eq!(field(&rep, "reason").as_str(), Some(*reason));
        let echoed = field(&rep, "command");
        if payload[0] == 0xc1 {
            assert_eq!(echoed.as_slice(), Some(&payload[..]), "bin echo");
        } else {
            assert_eq!(&pack(echoed), payload, "the payload's own value");
        }
    }
    assert_eq!(r.state(), before, "nothing changed");
    assert_eq!(r.left.value.get(), 0.5);
    assert_eq!(r.right.value.get(), 0.0);
    assert_eq!(r.robot.stats().refused, cases.len() as u32);
    assert_eq!(r.robot.stats().accepted, 1);
}

#[test]
fn error_display_is_typed_and_names_the_field() {
    let e = Error::UnknownName {
        name: "x",
        valid: &[],
    };
    assert_eq!(e.to_string(), "unknown field x (valid: none)");
    assert_eq!(
        Error::MotorFailed.to_string(),
        "motor output failed, all motors stopped"
    );
    assert_eq!(
        Error::Command(banyan_core::cmd::Error::WrongType("left")).to_string(),
        "wrong type for field left"
    );
    let max = Error::DurationOverLimit { max_ms: u64::MAX }.to_string();
    assert!(max.ends_with(&format!("(max {})", usize::MAX)), "{max}");
}

#[test]
fn an_echo_that_does_not_fit_becomes_nil() {
    let mut r = rig();
    let mut small = [0u8; 128];
    // A 90-byte command: the error report without it fits, with it not.
    let cmd = pack(&map(&[("left", "w".repeat(80).into())]));
    let Outcome::Refused(n) = r.robot.handle(0, "run_motors", &cmd, &mut small) else {
        panic!("not refused")
    };
    let rep = unpack(&small[..n]);
    assert!(field(&rep, "command").is_nil(), "{rep}");
    // A reason that does not fit at all: the report is lost, the refusal counted.
    let mut tiny = [0u8; 20];
    assert_eq!(
        r.robot.handle(0, "run_motors", &cmd, &mut tiny),
        Outcome::ReportTooLarge
    );
    assert_eq!(r.robot.stats().refused, 2);
    // Standalone use for a node's own refusals, same shape.
    let n = robot::error_report(&mut small, "to_rpi_gateway", &"no such pin", b"\x80").unwrap();
    let rep = unpack(&small[..n]);
    assert_eq!(field(&rep, "reason").as_str(), Some("no such pin"));
    assert_eq!(field(&rep, "command"), &map(&[]));
}

#[test]
fn pin_failures_stop_every_motor_and_are_counted() {
    let mut r = rig();
    r.handle(0, "run_motors", &pack(&map(&[("left", 0.5.into())])));
    r.right.fail.set(true);
    let rep = r.refused("run_motors", &pack(&map(&[("right", 0.5.into())])));
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("motor output failed, all motors stopped")
    );
    assert_eq!(r.left.value.get(), 0.0);
    assert_eq!(r.robot.stopped_by(), Some(StoppedBy::PinFailure));
    assert_eq!(
        field(field(&r.state(), "motors"), "left").as_f64(),
        Some(0.0)
    );
    // The failed stop is retried at every poll until it works.
    assert_eq!(r.robot.poll_at(), Some(0));
    assert!(!r.robot.poll(10), "state already says pin_failure");
    r.right.fail.set(false);
    assert!(!r.robot.poll(20));
    assert_eq!(r.robot.poll_at(), None, "the retry succeeded");
    r.status.fail.set(true);
    let rep = r.refused("light_leds", &pack(&map(&[("status", 1.into())])));
    assert_eq!(field(&rep, "reason").as_str(), Some("led output failed"));
    assert_eq!(r.robot.stats().pin_errors, 3);
}

#[test]
fn adding_refuses_duplicates_reserved_names_and_overflow() {
    let mut robot: Robot<Sim, Sim, 1, 1> = Robot::new(100);
    assert_eq!(
        robot.add_motor("duration_ms", Sim::default()),
        Err(AddError::Duplicate)
    );
    robot.add_motor("m", Sim::default()).unwrap();
    assert_eq!(
        robot.add_motor("m", Sim::default()),
        Err(AddError::Duplicate)
    );
    assert_eq!(robot.add_motor("n", Sim::default()), Err(AddError::Full));
    robot.add_led("l", Sim::default()).unwrap();
    assert_eq!(robot.add_led("l", Sim::default()), Err(AddError::Duplicate));
    assert_eq!(robot.add_led("k", Sim::default()), Err(AddError::Full));
    assert_eq!(robot.motor_names(), ["m"]);
    assert_eq!(robot.led_names(), ["l"]);
    assert!(robot.motor("m").is_some() && robot.led("l").is_some() && robot.led("k").is_none());
}

#[test]
fn topics_can_be_renamed() {
    let mut r = rig();
    r.robot.set_topics(Topics {
        run_motors: "bot1/run_motors",
        light_leds: "bot1/light_leds",
    });
    let cmd = pack(&map(&[("left", 0.5.into())]));
    assert!(matches!(
        r.handle(0, "bot1/run_motors", &cmd).0,
        Outcome::Changed(_)
    ));
    let rep = r.refused("run_motors", &cmd);
    assert_eq!(field(&rep, "reason").as_str(), Some("unknown topic"));
    let rep = r.refused("bot1/light_leds", &pack(&map(&[("x", 1.into())])));
    assert_eq!(field(&rep, "topic").as_str(), Some("bot1/light_leds"));
    assert_eq!(
        field(&rep, "reason").as_str(),
        Some("unknown field x (valid: status, beacon)")
    );
}

#[test]
fn stats_serialize_with_every_counter() {
    let mut r = rig();
    r.handle(0, "run_motors", b"\xc1");
    let mut buf = [0u8; 128];
    let n = banyan_core::msg::encode(&r.robot.stats(), &mut buf).unwrap();
    let v = unpack(&buf[..n]);
    let keys: Vec<_> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "accepted",
            "refused",
            "deadman_stops",
            "run_ends",
            "pin_errors"
        ]
    );
    assert_eq!(field(&v, "refused").as_u64(), Some(1));
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
    let mut out = [0u8; 256];
    for i in 0..20_000u64 {
        let mut payload = seed.clone();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % payload.len();
            payload[at] = next() as u8;
        }
        if next() % 5 == 0 {
            payload.truncate((next() as usize) % payload.len());
        }
        let topic = if i % 2 == 0 {
            "run_motors"
        } else {
            "light_leds"
        };
        let o = r.robot.handle(i, topic, &payload, &mut out);
        assert_ne!(o, Outcome::ReportTooLarge);
        if let Outcome::Changed(n) | Outcome::Refused(n) = o {
            unpack(&out[..n]); // every report is well-formed msgpack
        }
        r.robot.poll(i);
    }
    let s = r.robot.stats();
    assert_eq!(s.accepted + s.refused, 20_000);
    assert!(s.refused > 0 && s.accepted > 0);
}

#[test]
fn golden_sequence_replays_byte_for_byte() {
    let text = include_str!("../../tests/golden/robot_sequence.txt");
    let fixture = golden::parse(text).unwrap();
    assert!(fixture.steps.len() > 20);
    let mut robot: Robot<Sim, Sim, 2, 2> = Robot::new(fixture.deadman_ms);
    robot.set_max_run_ms(fixture.max_run_ms);
    for m in &fixture.motors {
        robot.add_motor(m.clone().leak(), Sim::default()).unwrap();
    }
    for l in &fixture.leds {
        robot.add_led(l.clone().leak(), Sim::default()).unwrap();
    }
    if let Err(e) = fixture.replay(&mut robot) {
        panic!("{e}");
    }
}

#[test]
fn golden_replay_fails_on_a_changed_report() {
    let text = include_str!("../../tests/golden/robot_sequence.txt");
    let mut fixture = golden::parse(text).unwrap();
    // Flip one byte of one expected report: the replay must see it.
    let step = fixture
        .steps
        .iter_mut()
        .find(|s| !s.reports.is_empty())
        .unwrap();
    let line = step.line;
    step.reports[0][3] ^= 1;
    let mut robot: Robot<Sim, Sim, 2, 2> = Robot::new(fixture.deadman_ms);
    robot.set_max_run_ms(fixture.max_run_ms);
    robot.add_motor("left", Sim::default()).unwrap();
    robot.add_motor("right", Sim::default()).unwrap();
    robot.add_led("beacon", Sim::default()).unwrap();
    robot.add_led("status", Sim::default()).unwrap();
    let e = fixture.replay(&mut robot).unwrap_err();
    assert_eq!(e.line, line);
    // A robot set up unlike the fixture is refused before any step.
    let mut other: Robot<Sim, Sim, 2, 2> = Robot::new(500);
    other.add_motor("left", Sim::default()).unwrap();
    assert_eq!(fixture.replay(&mut other).unwrap_err().line, 0);
}

#[test]
fn golden_parse_errors_name_the_line() {
    let e = |t: &str| golden::parse(t).unwrap_err();
    assert_eq!(e("0 poll\n").line, 1);
    assert_eq!(
        e("robot motors=a\n").what,
        "robot needs motors=, leds=, deadman_ms=, max_run_ms="
    );
    let head = "robot motors=a leds= deadman_ms=1 max_run_ms=2\n";
    assert_eq!(e(&format!("{head}> 80\n")).what, "report before any step");
    assert_eq!(
        e(&format!("{head}5 poll\n4 poll\n")).what,
        "time goes backwards"
    );
    assert_eq!(
        e(&format!("{head}1 cmd run_motors 8\n")).what,
        "payload is not hex"
    );
    assert_eq!(
        e(&format!("{head}1 stop tired\n")).what,
        "unknown stop reason"
    );
    assert_eq!(e(&format!("{head}1 dance\n")).line, 2);
    let f = golden::parse(&format!("{head}# c\n\n1 cmd t -\n> C0\n2 stop exit\n")).unwrap();
    assert_eq!(f.motors, ["a"]);
    assert!(f.leds.is_empty());
    assert_eq!(
        f.steps[0].action,
        golden::Action::Command {
            topic: "t".into(),
            payload: vec![]
        }
    );
    assert_eq!(f.steps[0].reports, [vec![0xc0]]);
    assert_eq!(f.steps[1].action, golden::Action::Stop(StoppedBy::Exit));
    assert_eq!(golden::hex(&[0, 0xab]), "00ab");
    assert_eq!(golden::unhex("0g"), None);
}

/// `Stats::FIELDS` and `Stats::values` (what the firmware's report writes
/// without serde) carry the same counters, in the same order, as the serde
/// map the gateways publish.
#[test]
fn stats_fields_match_the_serde_map() {
    use banyan_core::msg;
    use banyan_core::robot::Stats;
    let mut stats = Stats::new();
    stats.accepted = 1;
    stats.refused = 2;
    stats.deadman_stops = 3;
    stats.run_ends = 4;
    stats.pin_errors = 5;
    let mut buf = [0u8; 128];
    let n = msg::encode(&stats, &mut buf).unwrap();
    let v = rmpv::decode::read_value(&mut &buf[..n]).unwrap();
    let map: Vec<(String, u64)> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_u64().unwrap()))
        .collect();
    let ours: Vec<(String, u64)> = Stats::FIELDS
        .iter()
        .zip(stats.values())
        .map(|(k, v)| ((*k).to_owned(), u64::from(v)))
        .collect();
    assert_eq!(map, ours);
}

#[test]
fn run_limit_edges_poll_at_and_led_levels() {
    let mut r = rig();
    let cmd = |ms: u64| pack(&map(&[("left", 0.5.into()), ("duration_ms", ms.into())]));
    // The limit itself is accepted; the run ends exactly at its duration.
    let (o, _) = r.handle(0, "run_motors", &cmd(10_000));
    assert!(matches!(o, Outcome::Changed(_)), "{o:?}");
    assert_eq!(r.left.value.get(), 0.5);
    assert_eq!(r.robot.poll_at(), Some(10_000));
    assert!(!r.robot.poll(9_999));
    assert!(r.robot.poll(10_000));
    assert_eq!(r.left.value.get(), 0.0);
    // A limit of 0 refuses every timed run.
    r.robot.set_max_run_ms(0);
    r.refused("run_motors", &cmd(1));
    assert_eq!(r.left.value.get(), 0.0);
    // LEDs take levels between off and on, and the report says so.
    let (o, report) = r.handle(
        0,
        "light_leds",
        &pack(&map(&[("status", true.into()), ("beacon", 0.25.into())])),
    );
    assert!(matches!(o, Outcome::Changed(_)), "{o:?}");
    assert_eq!(r.status.value.get(), 1.0);
    let leds = field(&unpack(&report), "leds").clone();
    assert_eq!(field(&leds, "beacon").as_f64(), Some(0.25));
}
