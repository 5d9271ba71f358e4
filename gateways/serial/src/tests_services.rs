//! Bridge tests of the device's services: declarations become broker
//! registrations, requests go to the device and every one is answered
//! exactly once, with the reply or an explicit error (device error, bad
//! reply, deadline, link down, device reset, transport lost), each counted.

use super::*;
use banyan_core::link::{self, wire::status};
use std::collections::HashMap;
use test_wire::{Clocked, Dev};

/// Bridge + a device application serving `echo` (replies with the body),
/// `fail` (FAILED), `bad` (an OK reply that is not msgpack) and `slow`
/// (never answers); requests for other names get UNKNOWN_SERVICE.
struct Rig {
    bridge: Bridge,
    dev: Dev,
    now: u64,
    /// Whether the device application takes requests now.
    serving: bool,
    answers: HashMap<u64, Vec<Result<Vec<u8>, String>>>,
    registered: Vec<String>,
}

/// The device application: answers every request it has taken.
fn device_app(dev: &mut Dev, now: Instant) {
    loop {
        let Some(msg) = dev.recv() else { break };
        let Some(req) = msg.request() else { continue };
        let (id, service, body) = (req.id, req.service.to_owned(), req.body.to_vec());
        drop(msg);
        let _ = match service.as_str() {
            "echo" => dev.reply(id, status::OK, &body, now),
            "fail" => dev.reply(id, status::FAILED, b"no such pin", now),
            "bad" => dev.reply(id, status::OK, &[0xc1], now),
            "slow" => continue,
            _ => dev.reply(id, status::UNKNOWN_SERVICE, b"", now),
        };
    }
}

/// The fake MCU declaring the four services [`device_app`] serves.
fn serving_mcu(session: u32) -> Dev {
    let mut dev = test_wire::fake_mcu(session);
    for s in ["echo", "fail", "bad", "slow"] {
        dev.serve(s).unwrap();
    }
    dev
}

impl Rig {
    fn new(session: u32, cfg: BridgeConfig) -> Rig {
        Rig {
            bridge: test_wire::open_bridge(cfg),
            dev: serving_mcu(session),
            now: 0,
            serving: true,
            answers: HashMap::new(),
            registered: Vec::new(),
        }
    }

    fn up() -> Rig {
        let mut r = Rig::new(1, BridgeConfig::default());
        r.run_for(30, 10);
        assert!(r.bridge.link().is_up());
        r
    }

    /// [`Rig::up`] with request 1 for `slow` (never answered) pending.
    fn up_with_a_pending_request() -> Rig {
        let mut r = Rig::up();
        r.request(1, "slow", b"\x80", 5000);
        r.settle();
        assert_eq!(r.bridge.pending_requests(), 1);
        r
    }

    /// Asserts that request `ticket` for `echo` gets its body back.
    fn assert_echo_answers(&mut self, ticket: u64) {
        self.request(ticket, "echo", b"\x80", 1000);
        self.settle();
        assert_eq!(self.answer(ticket), Ok(b"\x80".to_vec()));
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn collect(&mut self) {
        while let Some(a) = self.bridge.take_service_action() {
            match a {
                ServiceAction::Register {
                    service,
                    device_service,
                } => {
                    assert!(service.ends_with(&device_service));
                    self.registered.push(service);
                }
                ServiceAction::Unregister { service } => {
                    let i = self
                        .registered
                        .iter()
                        .position(|s| *s == service)
                        .expect("unregister of a service never registered");
                    self.registered.remove(i);
                }
                ServiceAction::Answer { ticket, result } => {
                    self.answers.entry(ticket).or_default().push(result)
                }
            }
        }
        while self.bridge.take_action().is_some() {}
    }

    fn request(&mut self, ticket: u64, service: &str, body: &[u8], budget_ms: u64) {
        let now = self.t();
        self.bridge
            .handle_request(ticket, service, body, budget_ms, now);
        self.collect();
    }

    /// The one answer to `ticket` (panics if none or several).
    fn answer(&self, ticket: u64) -> Result<Vec<u8>, String> {
        let a = self.answers.get(&ticket).expect("no answer");
        assert_eq!(a.len(), 1, "ticket {ticket} answered {} times", a.len());
        a[0].clone()
    }
}

impl Clocked for Rig {
    fn now_mut(&mut self) -> &mut u64 {
        &mut self.now
    }

    fn settle(&mut self) {
        test_wire::until_quiet(|| {
            let now = self.t();
            let serving = self.serving;
            let moved = test_wire::exchange(
                &mut self.bridge,
                &mut self.dev,
                now,
                |dev| {
                    if serving {
                        device_app(dev, now);
                    }
                },
                None,
            );
            self.collect();
            moved
        });
    }
}

#[test]
fn declared_services_are_registered_under_the_device_name() {
    let r = Rig::up();
    assert_eq!(
        r.registered,
        [
            "fake-mcu.echo",
            "fake-mcu.fail",
            "fake-mcu.bad",
            "fake-mcu.slow"
        ]
    );
    assert_eq!(
        r.bridge.services().collect::<Vec<_>>(),
        ["echo", "fail", "bad", "slow"]
    );
    let st = rmpv::decode::read_value(&mut &r.bridge.status_payload().unwrap()[..]).unwrap();
    let services = st
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some("services"))
        .map(|(_, v)| v.as_array().unwrap().len());
    assert_eq!(services, Some(4));

    let cfg = BridgeConfig {
        service_prefix: Some("robot1/".into()),
        ..BridgeConfig::default()
    };
    let mut r = Rig::new(1, cfg);
    r.run_for(30, 10);
    assert!(r.registered.contains(&"robot1/echo".to_string()));
    // Withdrawn on the device: unregistered.
    assert!(r.dev.unserve("slow"));
    r.run_for(20, 10);
    assert!(!r.registered.contains(&"robot1/slow".to_string()));
}

#[test]
fn request_reaches_the_device_and_the_reply_comes_back() {
    let mut r = Rig::up();
    let body = b"\x81\xa1a\x01";
    r.request(7, "echo", body, 2000);
    r.settle();
    assert_eq!(r.answer(7), Ok(body.to_vec()));
    let c = r.bridge.counters();
    assert_eq!((c.requests, c.replies), (1, 1));
    assert_eq!(r.bridge.pending_requests(), 0);
}

#[test]
fn device_errors_and_bad_replies_become_errors_for_the_client() {
    let mut r = Rig::up();
    r.request(1, "fail", b"\x80", 2000);
    r.request(2, "bad", b"\x80", 2000);
    r.request(3, "nope", b"\x80", 2000);
    r.settle();
    let e1 = r.answer(1).unwrap_err();
    assert!(e1.contains("no such pin"), "{e1}");
    let e2 = r.answer(2).unwrap_err();
    assert!(e2.contains("not msgpack"), "{e2}");
    // Not a declared service: refused at once, the device is not asked.
    let e3 = r.answer(3).unwrap_err();
    assert!(e3.contains("does not serve"), "{e3}");
    let c = r.bridge.counters();
    assert_eq!(
        (
            c.requests,
            c.request_errors,
            c.reply_invalid,
            c.request_refused
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(r.dev.stats().publish_rx, 2);
}

#[test]
fn a_request_the_device_never_answers_times_out_before_the_budget() {
    let mut r = Rig::up();
    r.request(5, "slow", b"\x80", 500);
    r.run_for(440, 10);
    assert!(r.answers.is_empty(), "answered early: {:?}", r.answers);
    r.run_for(20, 10);
    let e = r.answer(5).unwrap_err();
    assert!(e.contains("did not reply in time"), "{e}");
    assert_eq!(r.bridge.counters().request_timeouts, 1);
    // A faults counter: the status goes out soon.
    assert!(r.bridge.faults() >= 1);
}

#[test]
fn device_reset_mid_request_answers_with_an_error_and_services_return() {
    let mut r = Rig::up_with_a_pending_request();
    // The MCU reboots, flashed with another name: a new session, one
    // service.
    let mut dev = Dev::new("new-mcu", "1.2.4", 2, link::Config::default()).unwrap();
    dev.serve("echo").unwrap();
    r.dev = dev;
    r.run_for(30, 10);
    let e = r.answer(1).unwrap_err();
    assert!(e.contains("device reset"), "{e}");
    assert_eq!(r.bridge.counters().request_lost, 1);
    // Every old registration withdrawn under its old name (the rig panics
    // on an unregistration of a name never registered), the re-declared
    // service registered under the new name.
    assert_eq!(r.registered, ["new-mcu.echo"]);
    r.assert_echo_answers(2);
}

#[test]
fn device_reboot_with_the_same_session_mid_request_answers_with_an_error() {
    let mut r = Rig::up_with_a_pending_request();
    // The MCU reboots but says HELLO with the same session id (a firmware
    // whose session id repeats: the QEMU board's is the host time in
    // seconds): the gateway cannot tell a reboot from a re-synchronised
    // link, and the request is lost either way.
    r.dev = serving_mcu(1);
    // Well within the link timeout and the request's budget.
    r.run_for(300, 10);
    let e = r.answer(1).unwrap_err();
    assert!(e.contains("link restarted"), "{e}");
    assert_eq!(r.bridge.counters().request_lost, 1);
    assert_eq!(r.registered.len(), 4);
    r.assert_echo_answers(2);
}

#[test]
fn transport_loss_and_link_down_answer_at_once() {
    let mut r = Rig::up();
    r.request(1, "slow", b"\x80", 5000);
    r.settle();
    r.bridge.transport_lost();
    r.collect();
    let e = r.answer(1).unwrap_err();
    assert!(e.contains("connection was lost"), "{e}");
    // No bytes flow any more: the link goes down after its timeout;
    // requests are then refused.
    let end = r.now + 1500;
    while r.now < end {
        r.now += 50;
        let now = r.t();
        r.bridge.poll(now);
        r.collect();
    }
    assert!(!r.bridge.link().is_up());
    r.request(2, "echo", b"\x80", 1000);
    let e = r.answer(2).unwrap_err();
    assert!(e.contains("not connected"), "{e}");
    // The port is back, the device not yet.
    r.bridge.transport_opened();
    r.request(3, "echo", b"\x80", 1000);
    let e = r.answer(3).unwrap_err();
    assert!(e.contains("link is down"), "{e}");
    let c = r.bridge.counters();
    assert_eq!((c.request_lost, c.request_refused), (1, 2));
    // Services stay registered while the link is down (requests get the
    // explicit error above rather than the broker's no_workers).
    assert_eq!(r.registered.len(), 4);
}

#[test]
fn link_down_mid_request_answers_with_an_error() {
    let mut r = Rig::up();
    r.request(1, "slow", b"\x80", 5000);
    r.settle();
    // The device goes silent (cable pulled): the link times out.
    r.serving = false;
    let end = r.now + 1500;
    while r.now < end {
        r.now += 50;
        let now = r.t();
        r.bridge.poll(now);
        r.collect();
    }
    let e = r.answer(1).unwrap_err();
    assert!(e.contains("link went down"), "{e}");
}

#[test]
fn requests_wait_for_credit_and_each_is_answered_once() {
    let mut r = Rig::up();
    r.serving = false;
    // 4 device slots: the rest wait for credit in the bridge.
    for t in 0..10 {
        r.request(t, "echo", &[0x80], 5000);
    }
    r.settle();
    assert_eq!(r.dev.queued(), 4);
    assert_eq!(r.bridge.pending_requests(), 10);
    r.serving = true;
    r.run_for(1000, 10);
    for t in 0..10 {
        assert_eq!(r.answer(t), Ok(vec![0x80]));
    }
    assert_eq!(r.dev.stats().drop_queue_full, 0);
    // Too many pending: refused at once.
    let cfg = BridgeConfig {
        max_pending_requests: 2,
        ..BridgeConfig::default()
    };
    let mut r = Rig::new(1, cfg);
    r.run_for(30, 10);
    r.serving = false;
    for t in 0..3 {
        r.request(t, "slow", &[0x80], 5000);
    }
    assert!(r.answer(2).unwrap_err().contains("already pending"));
}
