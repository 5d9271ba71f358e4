//! The firmware's services (feature `services`): `info` and `state` are
//! declared on the link and answered; other names get UNKNOWN_SERVICE.
#![cfg(feature = "services")]

mod common;

use banyan_core::link::{wire::status, Config as LinkConfig, Instant};
use banyan_firmware_app::{App, Config, Robot};
use common::{field, unpack, FakeLed, FakeMotor, FakeUart, GwEvent, GwSide};

struct Rig {
    app: App<FakeMotor, FakeLed, 1, 1>,
    uart: FakeUart,
    gw: GwSide,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        let mut robot = Robot::new(500);
        robot.add_motor("left", FakeMotor::default()).unwrap();
        robot.add_led("status", FakeLed::default()).unwrap();
        let config = Config {
            name: "svcbot",
            version: "9.8.7",
            session: 5,
            link: LinkConfig::default(),
            stats_interval_ms: 0,
        };
        Rig {
            app: App::new(&config, robot).unwrap(),
            uart: FakeUart::default(),
            gw: GwSide::new(1),
            now: 0,
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 5;
            self.app.poll(self.now, &mut self.uart);
            let from_dev = std::mem::take(&mut self.uart.tx);
            self.gw.feed(&from_dev, self.now);
            let to_dev = self.gw.transmit(self.now);
            self.uart.rx.extend(to_dev);
        }
    }

    fn replies(&mut self) -> Vec<(u32, u8, Vec<u8>)> {
        self.gw
            .take()
            .into_iter()
            .filter_map(|e| match e {
                GwEvent::Reply { id, status, body } => Some((id, status, body)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn info_and_state_are_declared_and_answered() {
    let mut r = Rig::new();
    r.run(100);
    let events = r.gw.take();
    assert!(
        events.contains(&GwEvent::Serve("info".into())),
        "{events:?}"
    );
    assert!(events.contains(&GwEvent::Serve("state".into())));
    let now = Instant::from_millis(r.now);
    r.gw.gw.request(1, "info", &[0x80], now).unwrap();
    r.gw.gw.request(2, "state", &[0x80], now).unwrap();
    r.gw.gw.request(3, "nope", &[0x80], now).unwrap();
    r.run(50);
    let replies = r.replies();
    assert_eq!(replies.len(), 3, "{replies:?}");
    let (id, st, body) = &replies[0];
    assert_eq!((*id, *st), (1, status::OK));
    let info = unpack(body);
    assert_eq!(field(&info, "report").as_str(), Some("info"));
    assert_eq!(field(&info, "name").as_str(), Some("svcbot"));
    assert_eq!(field(&info, "version").as_str(), Some("9.8.7"));
    assert!(field(&info, "uptime_ms").as_u64().unwrap() >= 100);
    assert_eq!(field(&info, "malformed").as_u64(), Some(0));
    let (id, st, body) = &replies[1];
    assert_eq!((*id, *st), (2, status::OK));
    let state = unpack(body);
    assert_eq!(field(&state, "report").as_str(), Some("state"));
    assert_eq!(field(field(&state, "motors"), "left").as_f64(), Some(0.0));
    assert_eq!(replies[2], (3, status::UNKNOWN_SERVICE, vec![]));
    // Requests flow under the credits: none was dropped.
    assert_eq!(r.app.link().stats().drop_queue_full, 0);
    assert_eq!(r.app.stats().reports_dropped, 0);
}

#[test]
fn many_requests_are_all_answered_within_the_credits() {
    let mut r = Rig::new();
    r.run(100);
    let mut sent = 0u32;
    let mut answered = 0;
    for _ in 0..200 {
        let now = Instant::from_millis(r.now);
        while r.gw.gw.credits() > 0 && sent < 100 {
            r.gw.gw.request(sent, "state", &[0x80], now).unwrap();
            sent += 1;
        }
        r.run(5);
        answered += r.replies().len();
    }
    assert_eq!((sent, answered), (100, 100));
    assert_eq!(r.app.link().stats().drop_queue_full, 0);
}
