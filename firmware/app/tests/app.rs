//! Host tests of the whole application driven through the gateway end of the
//! link, over a fake UART, with fake motors and LEDs.

mod common;

use banyan_core::link::Config as LinkConfig;
use banyan_firmware_app::{robot, App, Config, Robot};
use common::{field, map, pack, unpack, FakeLed, FakeMotor, FakeUart, GwEvent, GwSide};
use rmpv::Value;

const NAME: &str = "testbot";
const DEADMAN_MS: u64 = 500;

struct Rig {
    app: App<FakeMotor, FakeLed, 2, 1>,
    uart: FakeUart,
    gw: GwSide,
    left: FakeMotor,
    status: FakeLed,
    now: u64,
    /// Whether gateway bytes reach the device (false: cable pulled).
    connected: bool,
}

fn rig_with(session: u32, deadman_ms: u64) -> Rig {
    rig_full(session, deadman_ms, 0)
}

fn rig_full(session: u32, deadman_ms: u64, stats_interval_ms: u32) -> Rig {
    let (left, status) = (FakeMotor::default(), FakeLed::default());
    let mut robot = Robot::new(deadman_ms);
    robot.add_motor("left", left.clone()).unwrap();
    robot.add_motor("right", FakeMotor::default()).unwrap();
    robot.add_led("status", status.clone()).unwrap();
    let config = Config {
        name: NAME,
        version: "1.2.3",
        session,
        link: LinkConfig::default(),
        stats_interval_ms,
    };
    Rig {
        app: App::new(&config, robot).unwrap(),
        uart: FakeUart::default(),
        gw: GwSide::new(99),
        left,
        status,
        now: 0,
        connected: true,
    }
}

impl Rig {
    /// Advances time by `ms` in 5 ms steps, shuttling bytes both ways.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 5;
            self.app.poll(self.now, &mut self.uart);
            let from_dev = std::mem::take(&mut self.uart.tx);
            if self.connected {
                self.gw.feed(&from_dev, self.now);
                let to_dev = self.gw.transmit(self.now);
                self.uart.rx.extend(to_dev);
            }
        }
    }

    fn up(&mut self) {
        self.run(100);
        assert!(self.gw.gw.is_up(), "link not up: {:?}", self.gw.events);
    }

    fn send(&mut self, topic: &str, payload: &Value) {
        self.gw
            .gw
            .publish(
                topic,
                &pack(payload),
                banyan_core::link::Instant::from_millis(self.now),
            )
            .unwrap();
    }

    fn reports(&mut self) -> Vec<Value> {
        let topic = format!("from_{NAME}");
        self.gw
            .take_published(&topic)
            .iter()
            .map(|p| unpack(p))
            .collect()
    }
}

#[test]
fn handshake_declares_identity_subscriptions_and_state() {
    let mut r = rig_with(0xABCD, DEADMAN_MS);
    r.up();
    let events = r.gw.take();
    assert!(events.contains(&GwEvent::Up {
        name: NAME.into(),
        version: "1.2.3".into(),
        session: 0xABCD,
        credits: banyan_firmware_app::QUEUE as u8,
    }));
    assert!(events.contains(&GwEvent::Subscribe(robot::RUN_MOTORS.into())));
    assert!(events.contains(&GwEvent::Subscribe(robot::LIGHT_LEDS.into())));
    let reports: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            GwEvent::Publish { topic, payload } => Some((topic.clone(), unpack(payload))),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].0, "from_testbot");
    assert_eq!(field(&reports[0].1, "report").as_str(), Some("state"));
    assert_eq!(r.app.report_topic(), "from_testbot");
    assert_eq!(r.app.stats().link_ups, 1);
}

#[test]
fn commands_drive_actuators_and_publish_state_or_errors() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.up();
    r.gw.take();
    r.send("run_motors", &map(&[("left", 0.5.into())]));
    r.send("light_leds", &map(&[("status", true.into())]));
    r.send("run_motors", &map(&[("left", 7.into())]));
    r.send("run_motors", &map(&[("wheel", 0.1.into())]));
    r.run(50);
    assert_eq!(r.left.speed.get(), 0.5);
    assert_eq!(r.status.level.get(), 1.0);
    let reports = r.reports();
    assert_eq!(reports.len(), 4, "{reports:?}");
    let kinds: Vec<_> = reports
        .iter()
        .map(|v| field(v, "report").as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["state", "state", "error", "error"]);
    assert_eq!(
        field(field(&reports[1], "leds"), "status").as_f64(),
        Some(1.0)
    );
    assert_eq!(field(&reports[2], "topic").as_str(), Some("run_motors"));
    assert_eq!(
        field(&reports[2], "reason").as_str(),
        Some("value out of range for field left")
    );
    // Contract change (issue 9): the reason lists the valid names, and the
    // refused command is echoed.
    assert_eq!(
        field(&reports[3], "reason").as_str(),
        Some("unknown field wheel (valid: left, right)")
    );
    assert_eq!(
        field(&reports[3], "command"),
        &map(&[("wheel", 0.1.into())])
    );
    assert_eq!(r.app.robot().stats().refused, 2);
}

#[test]
fn deadman_stops_motors_while_link_stays_up() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.up();
    r.send("run_motors", &map(&[("left", (-0.5).into())]));
    r.run(20);
    assert_eq!(r.left.speed.get(), -0.5);
    r.reports();
    r.run(DEADMAN_MS + 20);
    assert_eq!(r.left.speed.get(), 0.0, "deadman did not stop the motor");
    assert!(r.gw.gw.is_up(), "heartbeats keep the link up");
    let reports = r.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        field(field(&reports[0], "motors"), "left").as_f64(),
        Some(0.0)
    );
    assert_eq!(r.app.robot().stats().deadman_stops, 1);
}

#[test]
fn keep_alive_commands_hold_speed() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.up();
    for _ in 0..10 {
        r.send("run_motors", &map(&[("left", 0.25.into())]));
        r.run(200);
    }
    assert_eq!(r.left.speed.get(), 0.25);
    // One state report for the change; repeats change nothing.
    assert_eq!(r.reports().len(), 2, "initial state + one change");
}

#[test]
fn link_loss_stops_motors_and_reconnect_recovers() {
    // A deadman far longer than the link timeout: only the link stops them.
    let mut r = rig_with(1, 60_000);
    r.up();
    r.send("run_motors", &map(&[("left", 1.into())]));
    r.run(20);
    assert_eq!(r.left.speed.get(), 1.0);
    r.connected = false;
    r.run(u64::from(LinkConfig::default().timeout_ms) + 100);
    assert_eq!(r.left.speed.get(), 0.0, "link loss must stop the motors");
    assert!(r.app.stats().link_downs >= 1);
    r.connected = true;
    r.gw.take();
    r.run(u64::from(LinkConfig::default().timeout_ms) * 3);
    assert!(
        r.gw.gw.is_up() && r.app.link().is_up(),
        "link did not recover"
    );
    r.send("run_motors", &map(&[("left", 0.5.into())]));
    r.run(20);
    assert_eq!(r.left.speed.get(), 0.5);
}

#[test]
fn device_reset_is_seen_and_subscriptions_redeclared() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.up();
    // The MCU reboots: a new application with a new session, same wire.
    let fresh = rig_with(2, DEADMAN_MS);
    r.app = fresh.app;
    r.left = fresh.left;
    r.gw.take();
    r.run(u64::from(LinkConfig::default().timeout_ms) * 3);
    let events = r.gw.take();
    assert!(events.contains(&GwEvent::Reset(2)), "{events:?}");
    assert!(events.contains(&GwEvent::Subscribe("run_motors".into())));
    assert!(r.gw.gw.is_up());
}

#[test]
fn line_noise_never_panics_and_is_counted() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.up();
    let mut x: u32 = 12345;
    for _ in 0..200 {
        for _ in 0..50 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            r.uart.rx.push_back((x >> 16) as u8);
        }
        r.run(5);
    }
    let stats = r.app.link().stats();
    assert!(
        stats.frame.dropped() + stats.malformed + stats.seq_gaps > 0,
        "noise went uncounted: {stats:?}"
    );
    // After the noise the link works again.
    r.run(u64::from(LinkConfig::default().timeout_ms) * 3);
    r.reports();
    r.send("run_motors", &map(&[("left", 0.125.into())]));
    r.run(30);
    assert_eq!(r.left.speed.get(), 0.125);
}

#[test]
fn stats_report_shows_drops_and_refusals() {
    let mut r = rig_full(1, DEADMAN_MS, 1_000);
    r.up();
    r.send("run_motors", &map(&[("left", 9.into())]));
    r.run(20);
    // A corrupted frame: a valid-looking COBS block with a bad CRC.
    r.uart.rx.extend([0x05, 0x10, 0x01, 0x02, 0x03, 0x00]);
    r.run(1_000);
    let reports = r.reports();
    let stats: Vec<_> = reports
        .iter()
        .filter(|v| field(v, "report").as_str() == Some("stats"))
        .collect();
    assert!(!stats.is_empty(), "no stats report in {reports:?}");
    let s = stats.last().unwrap();
    assert_eq!(field(s, "refused").as_u64(), Some(1));
    assert!(field(s, "frames_dropped").as_u64().unwrap() >= 1, "{s}");
    assert!(field(s, "uptime_ms").as_u64().unwrap() >= 1_000);
    assert_eq!(field(s, "deadman_stops").as_u64(), Some(0));
    assert_eq!(field(s, "link_downs").as_u64(), Some(0));
    // Every robot counter is there, as the core names it.
    for name in banyan_core::robot::Stats::FIELDS {
        assert!(field(s, name).as_u64().is_some(), "{name} missing: {s}");
    }
}

#[test]
fn one_poll_reads_a_bounded_amount() {
    let mut r = rig_with(1, DEADMAN_MS);
    r.uart.rx.extend(std::iter::repeat_n(0x55u8, 10_000));
    r.app.poll(1, &mut r.uart);
    let bound = banyan_firmware_app::MAX_READS_PER_POLL * banyan_firmware_app::io::READ_CHUNK;
    assert_eq!(r.uart.rx.len(), 10_000 - bound);
    assert_eq!(r.app.stats().io.rx_bytes as usize, bound);
}

#[test]
fn stats_report_fits_with_maximal_counters() {
    let r = rig_with(1, DEADMAN_MS);
    let mut out = [0u8; banyan_firmware_app::REPORT_CAPACITY];
    // Every counter field at its widest encoding: u64::MAX uptime.
    let n = r.app.stats_report(u64::MAX, &mut out).unwrap();
    let v = unpack(&out[..n]);
    assert_eq!(field(&v, "report").as_str(), Some("stats"));
    assert_eq!(field(&v, "uptime_ms").as_u64(), Some(u64::MAX));
    // report, uptime, 9 app/link counters and the robot's.
    let counters = 9 + banyan_core::robot::Stats::FIELDS.len();
    assert_eq!(v.as_map().unwrap().len(), 2 + counters);
    // u32 counters take at most 5 bytes each: at most 4 more each than the
    // 1-byte zeros here.
    assert!(
        n + counters * 4 <= banyan_firmware_app::REPORT_CAPACITY,
        "{n} bytes"
    );
}

/// Without the `services` feature (the Pico's build) a REQUEST from a
/// gateway is an unknown frame kind: counted as malformed, nothing else.
#[test]
#[cfg(not(feature = "services"))]
fn requests_without_the_services_feature_are_counted_as_malformed() {
    use banyan_core::{frame, link::wire::kind};
    let mut r = rig_with(7, DEADMAN_MS);
    r.up();
    let before = r.app.link().stats();
    let mut out = [0u8; 64];
    let n = frame::encode(
        kind::REQUEST,
        0,
        &[&[1, 0, 0, 0, 4], b"info", &[0x80]],
        &mut out,
    )
    .unwrap();
    r.uart.rx.extend(out[..n].iter().copied());
    r.run(20);
    let after = r.app.link().stats();
    assert_eq!(after.malformed, before.malformed + 1);
    assert_eq!(after.publish_rx, before.publish_rx);
    assert!(r.gw.gw.is_up());
}
