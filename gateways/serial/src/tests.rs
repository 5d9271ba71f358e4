//! Bridge unit tests with the core's `link::Device` as the fake MCU over an
//! in-memory wire.

use super::*;
use banyan_core::link;
use test_wire::{Clocked, Dev};

fn cfg() -> BridgeConfig {
    BridgeConfig {
        queue_limit: 3,
        ..BridgeConfig::default()
    }
}

/// Bridge + device + what came out of each.
struct Rig {
    bridge: Bridge,
    dev: Dev,
    now: u64,
    /// Backplane actions other than status publishes.
    actions: Vec<Action>,
    statuses: Vec<Vec<u8>>,
    /// Backplane-side subscriptions as the run loop would hold them.
    backplane_subs: Vec<String>,
    /// Messages the device application took (if `consume`).
    received: Vec<(String, Vec<u8>)>,
    consume: bool,
    /// Bytes device → gateway pass through this (fault injection).
    to_gateway_filter: Option<Box<test_wire::Filter>>,
}

impl Rig {
    fn new(session: u32) -> Rig {
        Rig {
            bridge: test_wire::open_bridge(cfg()),
            dev: test_wire::fake_mcu(session),
            now: 0,
            actions: Vec::new(),
            statuses: Vec::new(),
            backplane_subs: Vec::new(),
            received: Vec::new(),
            consume: true,
            to_gateway_filter: None,
        }
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn collect(&mut self) {
        while let Some(a) = self.bridge.take_action() {
            match a {
                Action::Publish {
                    ref topic,
                    ref payload,
                } if *topic == cfg().status_topic => self.statuses.push(payload.clone()),
                a => {
                    match &a {
                        Action::Subscribe(t) => self.backplane_subs.push(t.clone()),
                        Action::Unsubscribe(t) => {
                            let i = self
                                .backplane_subs
                                .iter()
                                .position(|s| s == t)
                                .expect("unsubscribe of a topic never subscribed");
                            self.backplane_subs.remove(i);
                        }
                        Action::Publish { .. } => {}
                    }
                    self.actions.push(a)
                }
            }
        }
    }

    fn last_status(&self) -> rmpv::Value {
        rmpv::decode::read_value(&mut &self.statuses.last().expect("a status")[..]).unwrap()
    }
}

impl Clocked for Rig {
    fn now_mut(&mut self) -> &mut u64 {
        &mut self.now
    }

    fn settle(&mut self) {
        test_wire::until_quiet(|| {
            let now = self.t();
            let (consume, received) = (self.consume, &mut self.received);
            let moved = test_wire::exchange(
                &mut self.bridge,
                &mut self.dev,
                now,
                |dev| {
                    if consume {
                        while let Some(m) = dev.recv() {
                            received.push((m.topic().to_owned(), m.payload().to_vec()));
                        }
                    }
                },
                self.to_gateway_filter.as_deref_mut(),
            );
            self.collect();
            moved
        });
    }
}

fn get<'a>(v: &'a rmpv::Value, key: &str) -> &'a rmpv::Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no key {key} in {v}"))
}

fn up_rig() -> Rig {
    let mut r = Rig::new(1);
    r.dev.subscribe("run_motors").unwrap();
    r.dev.subscribe("light_leds").unwrap();
    r.run_for(20, 10);
    assert!(r.bridge.link().is_up() && r.dev.is_up());
    r
}

#[test]
fn subscriptions_are_mirrored_and_status_reports_device() {
    let mut r = up_rig();
    assert_eq!(r.backplane_subs, ["run_motors", "light_leds"]);
    let st = r.last_status();
    assert_eq!(get(&st, "link").as_str(), Some("up"));
    let dev = get(&st, "device");
    assert_eq!(get(dev, "name").as_str(), Some("fake-mcu"));
    assert_eq!(get(dev, "version").as_str(), Some("1.2.3"));
    assert_eq!(get(dev, "session").as_u64(), Some(1));
    assert_eq!(get(&st, "subscriptions").as_array().unwrap().len(), 2);

    assert!(r.dev.unsubscribe("light_leds"));
    r.run_for(10, 10);
    assert_eq!(r.backplane_subs, ["run_motors"]);
    assert_eq!(r.bridge.subscriptions().collect::<Vec<_>>(), ["run_motors"]);
}

#[test]
fn forwards_both_ways_byte_identical() {
    let mut r = up_rig();
    // A float the device would not re-encode the same way if it re-encoded.
    let cmd = b"\x82\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xd0\xff";
    r.bridge.handle_backplane("run_motors", cmd, r.t());
    r.settle();
    assert_eq!(r.received, [("run_motors".to_string(), cmd.to_vec())]);

    let report = b"\x81\xa6report\xa5state";
    r.dev.publish("from_fake", report, r.t()).unwrap();
    r.settle();
    assert!(r.actions.contains(&Action::Publish {
        topic: "from_fake".into(),
        payload: report.to_vec()
    }));
    let c = r.bridge.counters();
    assert_eq!((c.to_device, c.from_device), (1, 1));
}

#[test]
fn unsubscribed_topics_and_link_down_are_counted() {
    let mut r = up_rig();
    r.bridge.handle_backplane("other", b"\x80", r.t());
    assert_eq!(r.bridge.counters().drop_unsubscribed, 1);
    // Device silent for longer than the timeout.
    r.now += 1500;
    r.bridge.poll(r.t());
    r.collect();
    assert!(!r.bridge.link().is_up());
    assert_eq!(get(&r.last_status(), "link").as_str(), Some("down"));
    r.bridge.handle_backplane("run_motors", b"\x80", r.t());
    assert_eq!(r.bridge.counters().drop_link_down, 1);
    // Subscriptions are kept across a down (re-plug without reset).
    assert_eq!(r.backplane_subs.len(), 2);
}

#[test]
fn credits_are_honoured_and_drops_counted() {
    let mut r = up_rig();
    r.consume = false; // the device application stalls: its 4 slots fill
    for i in 0..9u8 {
        r.bridge.handle_backplane("run_motors", &[i], r.t());
        r.settle();
    }
    // 4 in the device queue, 3 in the bridge queue, 2 dropped and counted.
    assert_eq!(r.dev.queued(), 4);
    assert_eq!(r.bridge.queued(), 3);
    let c = r.bridge.counters();
    assert_eq!((c.to_device, c.drop_no_credit), (4, 2));
    assert_eq!(r.dev.stats().drop_queue_full, 0, "never sent past credit");
    // A status with the drops follows within `fault_status_ms`.
    r.run_for(100, 50);
    let st = r.last_status();
    assert_eq!(
        get(get(&st, "counters"), "drop_no_credit").as_u64(),
        Some(2)
    );

    // The application catches up: the queued messages follow, in order.
    r.consume = true;
    r.run_for(600, 50);
    let got: Vec<u8> = r.received.iter().map(|(_, p)| p[0]).collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(r.bridge.queued(), 0);
}

#[test]
fn device_reset_drops_old_subscriptions_and_applies_new_ones() {
    let mut r = up_rig();
    // The MCU reboots: new session, it now wants only light_leds and sensors.
    r.dev = Dev::new("fake-mcu", "1.2.4", 2, link::Config::default()).unwrap();
    r.dev.subscribe("light_leds").unwrap();
    r.dev.subscribe("sensors").unwrap();
    r.run_for(50, 10);
    assert!(r.bridge.link().is_up());
    let mut subs = r.backplane_subs.clone();
    subs.sort();
    assert_eq!(subs, ["light_leds", "sensors"]);
    assert_eq!(r.bridge.link().stats().resets, 1);
    let st = r.last_status();
    assert_eq!(get(get(&st, "device"), "session").as_u64(), Some(2));
    // And forwarding works on the new session.
    r.bridge.handle_backplane("sensors", b"\x01", r.t());
    r.settle();
    assert_eq!(r.received.last().unwrap().0, "sensors");
}

#[test]
fn invalid_device_payload_is_dropped_and_counted() {
    let mut r = up_rig();
    // Valid frame, but the payload is a truncated msgpack map.
    r.dev.publish("from_fake", b"\x81\xa6rep", r.t()).unwrap();
    // And one with trailing bytes.
    r.dev.publish("from_fake", b"\x80\x80", r.t()).unwrap();
    r.settle();
    assert_eq!(r.bridge.counters().invalid_from_device, 2);
    assert!(!r
        .actions
        .iter()
        .any(|a| matches!(a, Action::Publish { topic, .. } if topic == "from_fake")));
}

/// xorshift: deterministic "random" bytes.
fn noise(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

#[test]
fn hostile_bytes_never_deliver_garbage_and_link_recovers() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    // Raw noise into a fresh bridge: nothing comes out but status.
    let mut b = Bridge::new(1, cfg());
    for _ in 0..200 {
        b.handle_device_bytes(&noise(&mut seed, 97), Instant::ZERO);
    }
    b.poll(Instant::ZERO);
    while let Some(a) = b.take_action() {
        assert!(
            matches!(&a, Action::Publish { topic, .. } if topic == "serial_gateway_status"),
            "{a:?}"
        );
    }
    let s = b.link().stats();
    assert!(s.frame.crc + s.frame.cobs + s.frame.short + s.frame.oversize > 0);

    // A live link with every 3rd device chunk corrupted by a flipped bit.
    let mut r = up_rig();
    let mut k = 0u32;
    r.to_gateway_filter = Some(Box::new(move |bytes: &mut Vec<u8>| {
        k += 1;
        if k.is_multiple_of(3) && !bytes.is_empty() {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x10;
        }
    }));
    let payload = b"\x81\xa1n\x05";
    for _ in 0..30 {
        let _ = r.dev.publish("from_fake", payload, r.t());
        r.run_for(20, 10);
    }
    // Whatever arrived is intact; what did not is counted by the link.
    let delivered: Vec<Vec<u8>> = r
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { topic, payload } if topic == "from_fake" => Some(payload.clone()),
            _ => None,
        })
        .collect();
    assert!(delivered.iter().all(|p| &p[..] == payload));
    let s = r.bridge.link().stats();
    assert!(s.frame.crc + s.frame.cobs > 0, "{s:?}");
    assert!(
        delivered.len() < 30 && s.publish_lost + s.seq_gaps > 0,
        "{} delivered, {s:?}",
        delivered.len()
    );
    // Clean line again: the link is (or comes back) up and forwards.
    r.to_gateway_filter = None;
    r.run_for(1500, 50);
    assert!(r.bridge.link().is_up());
    let before = delivered.len();
    r.dev.publish("from_fake", payload, r.t()).unwrap();
    r.settle();
    let after = r
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Publish { topic, .. } if topic == "from_fake"))
        .count();
    assert_eq!(after, before + 1);
}

#[test]
fn poll_at_is_never_in_the_past_when_idle() {
    let mut r = up_rig();
    // Device goes silent; once the link is down the bridge only has its
    // status timer.
    r.now += 2000;
    r.bridge.poll(r.t());
    r.collect();
    assert!(!r.bridge.link().is_up());
    assert!(r.bridge.poll_at() > r.t());
}

#[test]
fn device_spec_parses() {
    assert_eq!(
        "tcp:127.0.0.1:5555".parse::<DeviceSpec>(),
        Ok(DeviceSpec::Tcp("127.0.0.1:5555".into()))
    );
    assert_eq!(
        "/dev/serial0".parse::<DeviceSpec>(),
        Ok(DeviceSpec::Serial("/dev/serial0".into()))
    );
    assert!("tcp:nohost".parse::<DeviceSpec>().is_err());
    assert!("tcp::5".parse::<DeviceSpec>().is_err());
    assert!("".parse::<DeviceSpec>().is_err());
}

#[test]
fn drops_publish_a_status_soon_but_rate_limited() {
    let mut r = up_rig();
    r.now += 1; // past the status published on subscribe
    r.bridge.poll(r.t());
    r.collect();
    let before = r.statuses.len();
    // 50 unsubscribed messages in one instant: one status at most, later.
    for _ in 0..50 {
        r.bridge.handle_backplane("nobody", b"\x80", r.t());
        r.bridge.poll(r.t());
    }
    r.collect();
    let at = r.bridge.poll_at();
    assert!(at > r.t() && at.millis() <= r.now + 100, "{at:?}");
    r.now = at.millis();
    r.bridge.poll(r.t());
    r.collect();
    assert!(
        r.statuses.len() <= before + 2,
        "{}",
        r.statuses.len() - before
    );
    let st = r.last_status();
    assert_eq!(
        get(get(&st, "counters"), "drop_unsubscribed").as_u64(),
        Some(50)
    );
}

/// Every field of the link's counters, as serde names them, is in the status
/// payload's `link_counters` with the link's value: the status serializes the
/// real `link::Stats`, so a counter added to it cannot be forgotten.
#[test]
fn status_carries_every_link_counter() {
    let mut rig = up_rig();
    rig.bridge.handle_backplane("run_motors", &[0x80], rig.t());
    rig.run_for(300, 10);
    let stats = rig.bridge.link().stats();
    let want =
        rmpv::decode::read_value(&mut &rmp_serde::to_vec_named(&stats).unwrap()[..]).unwrap();
    let want = want.as_map().unwrap();
    // Fields of link::Stats plus those of the flattened frame::Stats.
    assert!(want.len() >= 28, "{want:?}");
    let status = rmpv::decode::read_value(&mut &rig.bridge.status_payload().unwrap()[..]).unwrap();
    let got = get(&status, "link_counters");
    for (k, v) in want {
        let k = k.as_str().unwrap();
        assert_eq!(get(got, k), v, "link_counters.{k}");
    }
    for k in [
        "drop_discarded",
        "publish_unconfirmed",
        "drop_out_too_small",
        "drop_queue_full_tx",
        "crc_errors",
    ] {
        assert!(
            got.as_map()
                .unwrap()
                .iter()
                .any(|(n, _)| n.as_str() == Some(k)),
            "{k}"
        );
    }
}

/// A link counter the old hand-made fault sum missed is a fault now.
#[test]
fn every_link_drop_counter_is_a_fault() {
    let rig = up_rig();
    let before = rig.bridge.faults();
    let mut stats = rig.bridge.link().stats();
    stats.publish_unconfirmed += 3;
    stats.drop_queue_full_tx += 4;
    stats.frames_rx += 100; // traffic, not a fault
    let faults = crate::bridge::link_faults;
    assert_eq!(faults(&stats), faults(&rig.bridge.link().stats()) + 7);
    assert_eq!(rig.bridge.faults(), before);
}

#[test]
fn topic_map_prefix_and_remap_are_inverse() {
    let m = TopicMap::new(
        "robot1/",
        vec![("status".into(), "robot1/mcu_a/status".into())],
    );
    assert_eq!(m.to_backplane("run_motors"), "robot1/run_motors");
    assert_eq!(m.to_backplane("status_x"), "robot1/mcu_a/status_x");
    assert_eq!(
        m.to_device("robot1/run_motors").as_deref(),
        Some("run_motors")
    );
    assert_eq!(
        m.to_device("robot1/mcu_a/status_x").as_deref(),
        Some("status_x")
    );
    assert_eq!(m.to_device("run_motors"), None);
    assert_eq!(m.to_device("robot2/run_motors"), None);
    // robot1/status… is the remapped name's space, not the prefix's.
    assert_eq!(m.to_device("robot1/status"), None);
    assert_eq!(TopicMap::default().to_device("t").as_deref(), Some("t"));
}

/// With a prefix the device's topics live under it on the backplane, both
/// ways, and the device still sees its own names.
#[test]
fn a_topic_prefix_namespaces_the_device() {
    let mut bridge = Bridge::new(
        0xBEEF,
        BridgeConfig {
            topics: TopicMap::new("robot1/", Vec::new()),
            ..cfg()
        },
    );
    bridge.transport_opened();
    let mut r = Rig::new(1);
    r.bridge = bridge;
    r.dev.subscribe("run_motors").unwrap();
    r.run_for(20, 10);
    assert!(r.bridge.link().is_up());
    assert!(r
        .actions
        .contains(&Action::Subscribe("robot1/run_motors".into())));
    assert_eq!(r.bridge.subscriptions().collect::<Vec<_>>(), ["run_motors"]);
    // Another robot's command is not this device's.
    r.bridge.handle_backplane("run_motors", &[0x80], r.t());
    r.bridge
        .handle_backplane("robot1/run_motors", &[0x81, 0xa1, b'a', 1], r.t());
    r.run_for(50, 10);
    assert_eq!(
        r.received,
        [("run_motors".to_string(), vec![0x81, 0xa1, b'a', 1])]
    );
    assert_eq!(r.bridge.counters().drop_unsubscribed, 1);
    r.dev.publish("sensors", &[0x80], r.t()).unwrap();
    r.run_for(50, 10);
    assert!(r.actions.contains(&Action::Publish {
        topic: "robot1/sensors".into(),
        payload: vec![0x80]
    }));
}

/// A queued command for the device is replaced by a newer one that sets
/// the same fields, and a command older than max_queue_age_ms is dropped:
/// both counted as stale, never sent late.
#[test]
fn queued_commands_for_the_device_stay_fresh() {
    let mut r = up_rig();
    r.consume = false; // the device's queue (4) fills: no credit
    let cmd = |v: u8| vec![0x81, 0xa4, b'l', b'e', b'f', b't', v];
    for v in 0..4 {
        r.bridge.handle_backplane("run_motors", &cmd(v), r.t());
        r.run_for(20, 10);
    }
    assert_eq!(r.bridge.link().credits(), 0);
    for v in 10..20 {
        r.bridge.handle_backplane("run_motors", &cmd(v), r.t());
    }
    assert_eq!(r.bridge.queued(), 1);
    assert_eq!(r.bridge.counters().drop_stale, 9);
    r.run_for(200, 10);
    assert_eq!(r.bridge.queued(), 1, "no credit yet: still queued");
    // Past the queue age it is dropped, credit or not.
    r.run_for(100, 10);
    assert_eq!(r.bridge.queued(), 0);
    assert_eq!(r.bridge.counters().drop_stale, 10);
    r.consume = true;
    r.run_for(100, 10);
    assert!(!r.received.iter().any(|(_, p)| p == &cmd(19)));
    assert_eq!(r.received.len(), 4);
}

/// A device that keeps resetting (transport lost and re-opened in a loop)
/// gets a short burst, then at most one status per STATUS_MIN_GAP_MS, and the last change is
/// still published.
#[test]
fn a_reset_storm_does_not_flood_the_status_topic() {
    let mut b = Bridge::new(1, cfg());
    let statuses = |b: &mut Bridge| {
        let mut n = 0;
        while let Some(a) = b.take_action() {
            if matches!(a, Action::Publish { ref topic, .. } if topic == "serial_gateway_status") {
                n += 1;
            }
        }
        n
    };
    b.poll(Instant::from_millis(0));
    assert_eq!(statuses(&mut b), 1, "the first status goes out at once");
    let mut published = 0;
    for ms in 1..1000 {
        b.transport_opened();
        b.transport_lost();
        b.poll(Instant::from_millis(ms));
        published += statuses(&mut b);
    }
    // 999 changes in 999 ms: a burst, then one per 100 ms at most.
    assert!(
        published <= STATUS_BURST as usize + 10,
        "{published} status messages"
    );
    assert!(published >= 9, "{published} status messages");
    // The last change is still due: poll_at says when.
    assert!(b.poll_at() <= Instant::from_millis(999 + STATUS_MIN_GAP_MS));
}
