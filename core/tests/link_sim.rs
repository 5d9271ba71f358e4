//! Device and gateway against each other through an in-memory channel with a
//! fault injector (drop, corrupt, truncate, duplicate, reorder frames; split
//! the byte stream anywhere), checked against a model of what was sent.
//!
//! Besides PUBLISHes both ways, the gateway app sends REQUESTs for the
//! device's service `echo` and the device app answers each with a REPLY
//! carrying the request's body. In the model a request is the message
//! `("?echo", body)` sent by the gateway and its reply `("!reply", body)`
//! sent by the device: the same accounting (REQUEST and REPLY are data
//! messages under the same credits and counters) covers them.

use std::collections::{BTreeSet, HashSet, VecDeque};

use banyan_core::link::{
    device, gateway, wire::status, Config, Device, Gateway, Instant, SendError,
};
use proptest::prelude::*;

const QUEUE: usize = 4;
type Dev = Device<256, 1024, QUEUE, 8>;
type Gw = Gateway<256, 4096, 8>;

const STEP_MS: u64 = 5;

/// xorshift64*: deterministic randomness for the fault injector.
#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// Fault rates per frame, in per mille.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Drop the whole frame.
    drop: u32,
    /// Flip one bit.
    corrupt: u32,
    /// Remove one byte; also the rate of duplicating one byte and of
    /// swapping two adjacent bytes.
    truncate: u32,
    /// Send the frame twice.
    duplicate: u32,
    /// Swap the frame with the one before it.
    reorder: u32,
    /// Deliver the byte stream in random chunks instead of whole frames.
    split: bool,
}

impl Faults {
    fn all(rate: u32) -> Faults {
        Faults {
            drop: rate,
            corrupt: rate,
            truncate: rate,
            duplicate: rate,
            reorder: rate,
            split: true,
        }
    }
}

/// One direction of the wire, like smoltcp's `phy::FaultInjector`.
struct Channel {
    frames: VecDeque<Vec<u8>>,
    faults: Faults,
    connected: bool,
    rng: Rng,
    injected: u32,
}

impl Channel {
    fn new(seed: u64) -> Channel {
        Channel {
            frames: VecDeque::new(),
            faults: Faults::default(),
            connected: true,
            rng: Rng(seed | 1),
            injected: 0,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        if !self.connected {
            return;
        }
        let f = self.faults;
        let mut frame = frame.to_vec();
        if self.rng.chance(f.drop) {
            self.injected += 1;
            return;
        }
        if self.rng.chance(f.corrupt) {
            self.injected += 1;
            let i = self.rng.below(frame.len());
            frame[i] ^= 1 << self.rng.below(8);
        }
        if self.rng.chance(f.truncate) && frame.len() > 1 {
            self.injected += 1;
            let i = self.rng.below(frame.len());
            frame.remove(i);
        }
        // Byte-level duplication and reordering, at the truncation rate.
        if self.rng.chance(f.truncate) {
            self.injected += 1;
            let i = self.rng.below(frame.len());
            frame.insert(i, frame[i]);
        }
        if self.rng.chance(f.truncate) && frame.len() > 1 {
            self.injected += 1;
            let i = self.rng.below(frame.len() - 1);
            frame.swap(i, i + 1);
        }
        if self.rng.chance(f.reorder) && !self.frames.is_empty() {
            self.injected += 1;
            let last = self.frames.len() - 1;
            self.frames.insert(last, frame.clone());
        } else {
            self.frames.push_back(frame.clone());
        }
        if self.rng.chance(f.duplicate) {
            self.injected += 1;
            self.frames.push_back(frame);
        }
    }

    fn recv(&mut self) -> Vec<Vec<u8>> {
        let frames: Vec<Vec<u8>> = self.frames.drain(..).collect();
        if !self.faults.split {
            return frames;
        }
        let bytes: Vec<u8> = frames.concat();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = 1 + self.rng.below(rest.len().min(97));
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GwEv {
    Up(u32),
    Reset(u32),
    Down,
    Sub(String),
    Unsub(String),
}

struct Sim {
    dev: Dev,
    gw: Gw,
    d2g: Channel,
    g2d: Channel,
    now: u64,
    rng: Rng,
    /// Model: what each app sent successfully and what arrived.
    dev_sent: HashSet<(String, Vec<u8>)>,
    gw_sent: HashSet<(String, Vec<u8>)>,
    dev_got: HashSet<(String, Vec<u8>)>,
    gw_got: HashSet<(String, Vec<u8>)>,
    dev_attempts: u32,
    gw_attempts: u32,
    counter: u32,
    /// The gateway app's view of the device's subscriptions (from events).
    mirror: BTreeSet<String>,
    /// The gateway app's view of the device's services (from events).
    services: BTreeSet<String>,
    gw_events: Vec<GwEv>,
    dev_events: Vec<device::Event>,
    /// Per mille chance per step that the device app takes one message.
    consume: u32,
    /// Per mille chance per step that each app publishes.
    publish: u32,
    /// Per mille chance per step that the device changes a subscription.
    churn: u32,
}

fn payload(counter: u32, len: usize) -> Vec<u8> {
    // Opaque to the link; includes zero bytes to exercise COBS.
    let mut p = vec![0xce];
    p.extend_from_slice(&counter.to_be_bytes());
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(counter as u8)));
    p
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut dev = Dev::new("sim-device", "1.2.3", 0xD0D0_0001, Config::default()).unwrap();
        dev.subscribe("t/0").unwrap();
        dev.subscribe("t/1").unwrap();
        dev.serve("echo").unwrap();
        Sim {
            dev,
            gw: Gw::new(0x6A7E_0001, Config::default()),
            d2g: Channel::new(seed ^ 0x1111),
            g2d: Channel::new(seed ^ 0x2222),
            now: 0,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            dev_sent: HashSet::new(),
            gw_sent: HashSet::new(),
            dev_got: HashSet::new(),
            gw_got: HashSet::new(),
            dev_attempts: 0,
            gw_attempts: 0,
            counter: 0,
            mirror: BTreeSet::new(),
            services: BTreeSet::new(),
            gw_events: Vec::new(),
            dev_events: Vec::new(),
            consume: 500,
            publish: 300,
            churn: 0,
        }
    }

    fn set_faults(&mut self, f: Faults) {
        self.d2g.faults = f;
        self.g2d.faults = f;
    }

    fn on_gw_event(&mut self, ev: OwnedGw) {
        match ev {
            OwnedGw::Up(session, name) => {
                assert_eq!(name, "sim-device");
                self.gw_events.push(GwEv::Up(session));
            }
            OwnedGw::Reset(session) => {
                self.mirror.clear();
                self.services.clear();
                self.gw_events.push(GwEv::Reset(session));
            }
            // Same session again: the mirror is kept (swept later).
            OwnedGw::Rejoin => {}
            OwnedGw::Down => self.gw_events.push(GwEv::Down),
            OwnedGw::Sub(t) => {
                assert!(self.mirror.insert(t.clone()), "duplicate Subscribe({t})");
                self.gw_events.push(GwEv::Sub(t));
            }
            OwnedGw::Unsub(t) => {
                assert!(self.mirror.remove(&t), "Unsubscribe({t}) of unknown topic");
                self.gw_events.push(GwEv::Unsub(t));
            }
            OwnedGw::Serve(t) => {
                assert!(self.services.insert(t.clone()), "duplicate Serve({t})");
            }
            OwnedGw::Unserve(t) => {
                assert!(self.services.remove(&t), "Unserve({t}) of unknown service");
            }
            OwnedGw::Reply(id, st, body) => {
                assert_eq!(st, status::OK);
                // The body is the request's, which carries the id.
                assert_eq!(
                    body.get(1..5),
                    Some(&id.to_be_bytes()[..]),
                    "reply to the wrong request"
                );
                let m = ("!reply".to_owned(), body);
                assert!(
                    self.dev_sent.contains(&m),
                    "gateway got a reply never sent: {m:?}"
                );
                assert!(self.gw_got.insert(m), "gateway got a reply twice");
            }
            OwnedGw::Publish(topic, payload) => {
                let m = (topic, payload);
                assert!(
                    self.dev_sent.contains(&m),
                    "gateway got a message never sent: {m:?}"
                );
                assert!(self.gw_got.insert(m), "gateway got a message twice");
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        let now = Instant::from_millis(self.now);

        // Applications.
        if self.rng.chance(self.publish) {
            self.counter += 1;
            let m = (
                "up/sensor".to_owned(),
                payload(self.counter, self.rng.below(200)),
            );
            self.dev_attempts += 1;
            if self.dev.publish(&m.0, &m.1, now).is_ok() {
                self.dev_sent.insert(m);
            }
        }
        if self.rng.chance(self.publish) {
            let subs: Vec<String> = self.mirror.iter().cloned().collect();
            if !subs.is_empty() {
                self.counter += 1;
                let t = subs[self.rng.below(subs.len())].clone();
                let m = (t, payload(self.counter, self.rng.below(200)));
                self.gw_attempts += 1;
                if self.gw.publish(&m.0, &m.1, now).is_ok() {
                    self.gw_sent.insert(m);
                }
            }
        }
        if self.services.contains("echo") && self.rng.chance(self.publish) {
            self.counter += 1;
            let id = self.counter;
            let m = ("?echo".to_owned(), payload(id, self.rng.below(150)));
            self.gw_attempts += 1;
            if self.gw.request(id, "echo", &m.1, now).is_ok() {
                self.gw_sent.insert(m);
            }
        }
        if self.rng.chance(self.churn) {
            let n = self.rng.below(6);
            if n == 5 {
                if !self.dev.unserve("echo") {
                    self.dev.serve("echo").unwrap();
                }
            } else {
                let t = format!("t/{n}");
                if !self.dev.unsubscribe(&t) {
                    self.dev.subscribe(&t).unwrap();
                }
            }
        }

        // Transmit.
        let mut buf = [0u8; 300];
        while let Some(n) = self.dev.poll_transmit(now, &mut buf) {
            self.d2g.send(&buf[..n]);
        }
        while let Some(n) = self.gw.poll_transmit(now, &mut buf) {
            self.g2d.send(&buf[..n]);
        }

        // Receive.
        for chunk in self.d2g.recv() {
            let mut input = &chunk[..];
            loop {
                let (ev, rest) = self.gw.handle_rx(input, now);
                input = rest;
                let Some(ev) = ev else { break };
                let ev = OwnedGw::from(ev);
                self.on_gw_event(ev);
            }
        }
        for chunk in self.g2d.recv() {
            let mut input = &chunk[..];
            loop {
                let (ev, rest) = self.dev.handle_rx(input, now);
                input = rest;
                match ev {
                    Some(ev) => self.dev_events.push(ev),
                    None => break,
                }
            }
        }

        // Timers.
        while let Some(ev) = self.dev.poll(now) {
            self.dev_events.push(ev);
        }
        while let Some(ev) = self.gw.poll(now) {
            let ev = OwnedGw::from(ev);
            self.on_gw_event(ev);
        }

        // The device app consumes slowly, so credits matter.
        if self.rng.chance(self.consume) {
            let taken = self.dev.recv().map(|msg| match msg.request() {
                Some(r) => (Some(r.id), (format!("?{}", r.service), r.body.to_vec())),
                None => (None, (msg.topic().to_owned(), msg.payload().to_vec())),
            });
            if let Some((id, m)) = taken {
                assert!(
                    self.gw_sent.contains(&m),
                    "device got a message never sent: {m:?}"
                );
                assert!(self.dev_got.insert(m.clone()), "device got a message twice");
                if let Some(id) = id {
                    // The echo service answers with the request's body.
                    self.dev_attempts += 1;
                    if self.dev.reply(id, status::OK, &m.1, now).is_ok() {
                        self.dev_sent.insert(("!reply".to_owned(), m.1));
                    }
                }
            }
        }

        // Credits are never exceeded: the device never has to drop for a
        // full queue.
        assert_eq!(
            self.dev.stats().drop_queue_full,
            0,
            "gateway exceeded its credits"
        );
        assert!(self.dev.queued() <= QUEUE);
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms / STEP_MS {
            self.step();
        }
    }

    /// Stop publishing and faults, let the queues drain and heartbeats pass.
    fn settle(&mut self) {
        self.set_faults(Faults::default());
        self.publish = 0;
        self.churn = 0;
        self.consume = 1000;
        self.run_ms(3000);
    }

    /// Checks the accounting: every message either arrived or is counted.
    fn check_accounting(&self) {
        let (ds, gs) = (self.dev.stats(), self.gw.stats());
        // An honest device never exceeds its credit, whatever the line did.
        assert_eq!(gs.drop_over_credit, 0, "{gs:?}");
        // Every refused publish is counted.
        assert_eq!(
            self.dev_attempts,
            self.dev_sent.len() as u32 + ds.send_refused()
        );
        assert_eq!(
            self.gw_attempts,
            self.gw_sent.len() as u32 + gs.send_refused()
        );
        // Every accepted publish was transmitted or discarded (counted).
        assert_eq!(
            self.dev_sent.len() as u32,
            ds.publish_tx + ds.drop_discarded + self.dev_queued_tx()
        );
        assert_eq!(
            self.gw_sent.len() as u32,
            gs.publish_tx + gs.drop_discarded + self.gw.queued()
        );
        // Every transmitted publish arrived, or the receiver counted it lost,
        // or the sender counted it unconfirmed at a session end.
        let dev_lost = ds.publish_tx - gs.publish_rx;
        assert!(
            dev_lost <= gs.publish_lost + ds.publish_unconfirmed,
            "device→gateway: {dev_lost} lost, {} counted lost, {} unconfirmed",
            gs.publish_lost,
            ds.publish_unconfirmed
        );
        assert!(gs.publish_rx + gs.publish_lost <= ds.publish_tx);
        let gw_lost = gs.publish_tx - ds.publish_rx;
        assert!(
            gw_lost <= ds.publish_lost + gs.publish_unconfirmed,
            "gateway→device: {gw_lost} lost, {} counted lost, {} unconfirmed",
            ds.publish_lost,
            gs.publish_unconfirmed
        );
        assert!(ds.publish_rx + ds.publish_lost <= gs.publish_tx);
        // What the receivers counted as received is what the apps got.
        assert_eq!(gs.publish_rx as usize, self.gw_got.len());
        assert_eq!(
            ds.publish_rx as usize,
            self.dev_got.len() + self.dev.queued()
        );
    }

    fn dev_queued_tx(&self) -> u32 {
        self.dev.queued_tx()
    }

    /// After settle(): both up, subscriptions agree, a round trip works.
    fn check_recovered(&mut self) {
        assert!(self.dev.is_up(), "device not up: {:?}", self.dev.stats());
        assert!(self.gw.is_up(), "gateway not up: {:?}", self.gw.stats());
        let dev_subs: BTreeSet<String> = self.dev.subscriptions().map(str::to_owned).collect();
        let gw_subs: BTreeSet<String> = self.gw.subscriptions().map(str::to_owned).collect();
        assert_eq!(dev_subs, gw_subs);
        assert_eq!(dev_subs, self.mirror);
        let dev_svcs: BTreeSet<String> = self.dev.services().map(str::to_owned).collect();
        let gw_svcs: BTreeSet<String> = self.gw.services().map(str::to_owned).collect();
        assert_eq!(dev_svcs, gw_svcs);
        assert_eq!(dev_svcs, self.services);
        // One more message each way.
        self.publish = 0;
        let now = Instant::from_millis(self.now);
        let t = self
            .mirror
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "t/0".into());
        let (up, down) = (
            ("up/final".to_owned(), payload(u32::MAX, 10)),
            (t, payload(u32::MAX - 1, 10)),
        );
        self.dev_attempts += 1;
        self.dev.publish(&up.0, &up.1, now).unwrap();
        self.dev_sent.insert(up.clone());
        if self.mirror.contains(&down.0) {
            self.gw_attempts += 1;
            self.gw.publish(&down.0, &down.1, now).unwrap();
            self.gw_sent.insert(down.clone());
        }
        self.run_ms(100);
        assert!(self.gw_got.contains(&up));
        if self.mirror.contains(&down.0) {
            assert!(self.dev_got.contains(&down));
        }
    }
}

/// Events copied out of the gateway's borrow so the sim can update itself.
enum OwnedGw {
    Up(u32, String),
    Reset(u32),
    Rejoin,
    Down,
    Sub(String),
    Unsub(String),
    Publish(String, Vec<u8>),
    Serve(String),
    Unserve(String),
    Reply(u32, u8, Vec<u8>),
}

impl From<gateway::Event<'_>> for OwnedGw {
    fn from(ev: gateway::Event<'_>) -> Self {
        match ev {
            gateway::Event::Up(id) => OwnedGw::Up(id.session, id.name.to_string()),
            gateway::Event::Reset(id) => OwnedGw::Reset(id.session),
            gateway::Event::Rejoin(_) => OwnedGw::Rejoin,
            gateway::Event::Down => OwnedGw::Down,
            gateway::Event::Subscribe(t) => OwnedGw::Sub(t.into()),
            gateway::Event::Unsubscribe(t) => OwnedGw::Unsub(t.into()),
            gateway::Event::Publish { topic, payload } => {
                OwnedGw::Publish(topic.into(), payload.into())
            }
            gateway::Event::Serve(t) => OwnedGw::Serve(t.into()),
            gateway::Event::Unserve(t) => OwnedGw::Unserve(t.into()),
            gateway::Event::Reply { id, status, body } => OwnedGw::Reply(id, status, body.into()),
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[test]
fn clean_link_delivers_everything() {
    let mut sim = Sim::new(1);
    sim.run_ms(5000);
    sim.settle();
    sim.check_accounting();
    sim.check_recovered();
    let (ds, gs) = (sim.dev.stats(), sim.gw.stats());
    assert!(
        sim.dev_got.len() > 100 && sim.gw_got.len() > 100,
        "too little traffic"
    );
    // Nothing lost on a clean wire.
    assert_eq!(sim.dev_got.len(), sim.gw_sent.len());
    assert_eq!(sim.gw_got.len(), sim.dev_sent.len());
    for s in [ds, gs] {
        assert_eq!(s.frame.dropped(), 0);
        assert_eq!(
            (
                s.seq_gaps,
                s.duplicates,
                s.publish_lost,
                s.publish_unconfirmed
            ),
            (0, 0, 0, 0)
        );
        assert_eq!((s.ups, s.downs), (1, 0));
    }
    assert_eq!(sim.gw_events[0], GwEv::Up(0xD0D0_0001));
    // Requests and replies were part of the traffic.
    let replies = sim.gw_got.iter().filter(|m| m.0 == "!reply").count();
    let requests = sim.gw_sent.iter().filter(|m| m.0 == "?echo").count();
    assert!(
        replies > 50 && replies == requests,
        "{requests} requests, {replies} replies"
    );
}

#[test]
fn faulty_link_never_delivers_corruption_and_counts_every_loss() {
    let mut sim = Sim::new(7);
    sim.churn = 20;
    sim.run_ms(200);
    sim.set_faults(Faults::all(30));
    sim.run_ms(20_000);
    sim.settle();
    sim.check_accounting();
    sim.check_recovered();
    let (ds, gs) = (sim.dev.stats(), sim.gw.stats());
    assert!(sim.d2g.injected > 50 && sim.g2d.injected > 50);
    // The faults were seen and counted.
    assert!(ds.frame.dropped() > 0 && gs.frame.dropped() > 0);
    assert!(ds.seq_gaps > 0 && gs.seq_gaps > 0);
    assert!(ds.duplicates > 0 && gs.duplicates > 0);
    assert!(
        sim.dev_got.len() > 100 && sim.gw_got.len() > 100,
        "too little traffic"
    );
    // Requests went through the faults too (some lost, all counted above).
    let replies = sim.gw_got.iter().filter(|m| m.0 == "!reply").count();
    assert!(replies > 20, "only {replies} replies");
}

#[test]
fn credits_bound_what_the_gateway_sends() {
    let mut sim = Sim::new(3);
    sim.publish = 0;
    sim.run_ms(100);
    assert!(sim.gw.is_up() && sim.dev.is_up());
    sim.consume = 0;
    let now = Instant::from_millis(sim.now);
    for i in 0..QUEUE as u32 {
        sim.gw.publish("t/0", &payload(i, 3), now).unwrap();
    }
    assert_eq!(sim.gw.publish("t/0", b"x", now), Err(SendError::NoCredit));
    assert_eq!(sim.gw.stats().drop_no_credit, 1);
    sim.run_ms(1000);
    assert_eq!(sim.dev.queued(), QUEUE);
    assert_eq!(sim.gw.credits(), 0);
    // Heartbeats alone never grant credit while the queue is full.
    assert_eq!(
        sim.gw.publish("t/0", b"x", Instant::from_millis(sim.now)),
        Err(SendError::NoCredit)
    );
    // Consuming one message returns one credit.
    drop(sim.dev.recv());
    sim.run_ms(20);
    assert_eq!(sim.gw.credits(), 1);
}

#[test]
fn device_reset_is_reported_with_redeclared_subscriptions() {
    let mut sim = Sim::new(11);
    sim.run_ms(1000);
    assert_eq!(
        sim.mirror,
        BTreeSet::from(["t/0".to_owned(), "t/1".to_owned()])
    );
    // The MCU reboots mid-stream: new session, new subscriptions; bytes of a
    // half-sent frame are on the wire.
    sim.d2g.send(&[0x05, 0x10, 0x22]);
    let mut dev = Dev::new("sim-device", "1.2.4", 0xD0D0_0002, Config::default()).unwrap();
    dev.subscribe("t/1").unwrap();
    dev.subscribe("t/2").unwrap();
    sim.dev = dev;
    let before = sim.gw_events.len();
    sim.run_ms(500);
    let events = &sim.gw_events[before..];
    let reset = events
        .iter()
        .position(|e| *e == GwEv::Reset(0xD0D0_0002))
        .expect("Reset");
    assert_eq!(events.get(reset + 1), Some(&GwEv::Up(0xD0D0_0002)));
    assert!(events[reset..].contains(&GwEv::Sub("t/1".into())));
    assert!(events[reset..].contains(&GwEv::Sub("t/2".into())));
    assert_eq!(
        sim.mirror,
        BTreeSet::from(["t/1".to_owned(), "t/2".to_owned()])
    );
    assert_eq!(sim.gw.identity().unwrap().version.as_str(), "1.2.4");
    assert_eq!(sim.gw.stats().resets, 1);
    assert!(sim.gw.is_up() && sim.dev.is_up());
}

#[test]
fn heartbeat_timeout_goes_down_then_up_again() {
    let mut sim = Sim::new(5);
    sim.run_ms(500);
    let subs_before = sim.mirror.clone();
    // Unplug the cable.
    sim.d2g.connected = false;
    sim.g2d.connected = false;
    sim.run_ms(1500);
    assert!(!sim.gw.is_up() && !sim.dev.is_up());
    assert_eq!(sim.gw_events.last(), Some(&GwEv::Down));
    assert!(sim.dev_events.contains(&device::Event::Down));
    // Refused while down, and counted.
    sim.dev_attempts += 1;
    assert_eq!(
        sim.dev
            .publish("up/x", b"\x80", Instant::from_millis(sim.now)),
        Err(SendError::NotUp)
    );
    assert!(sim.dev.stats().drop_not_up >= 1);
    // Plug it back in: up again by itself, same session, no churn.
    let before = sim.gw_events.len();
    sim.d2g.connected = true;
    sim.g2d.connected = true;
    sim.run_ms(1000);
    assert!(sim.gw.is_up() && sim.dev.is_up());
    assert_eq!(sim.gw_events[before..], [GwEv::Up(0xD0D0_0001)]);
    assert_eq!(sim.mirror, subs_before);
    assert_eq!(sim.dev.stats().ups, 2);
    sim.settle();
    sim.check_accounting();
    sim.check_recovered();
}

#[test]
fn gateway_restart_makes_the_device_redeclare() {
    let mut sim = Sim::new(9);
    sim.run_ms(500);
    sim.gw = Gw::new(0x6A7E_0002, Config::default());
    sim.mirror.clear();
    sim.services.clear();
    sim.run_ms(1000);
    assert!(sim.gw.is_up() && sim.dev.is_up());
    assert_eq!(
        sim.mirror,
        BTreeSet::from(["t/0".to_owned(), "t/1".to_owned()])
    );
    assert!(sim.dev.stats().resyncs >= 1);
}

#[test]
fn lost_unsubscribe_is_repaired_by_the_digest() {
    let mut sim = Sim::new(13);
    sim.publish = 0;
    sim.run_ms(500);
    // Drop everything the device sends while it unsubscribes.
    sim.d2g.connected = false;
    assert!(sim.dev.unsubscribe("t/0"));
    sim.run_ms(20);
    sim.d2g.connected = true;
    sim.run_ms(1000);
    assert_eq!(sim.mirror, BTreeSet::from(["t/1".to_owned()]));
    assert!(sim.gw_events.contains(&GwEv::Unsub("t/0".into())));
    assert!(sim.gw.stats().resyncs >= 1);
}

proptest! {
    // 16 cases by default; more with PROPTEST_CASES=n.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        .. ProptestConfig::default()
    })]

    /// The reference model (what each app sent) against the link under
    /// random faults: nothing corrupt or duplicated is delivered, every loss
    /// is counted, credits hold, and the link recovers.
    #[test]
    fn random_faults_hold_the_invariants(
        seed in any::<u64>(),
        drop in 0u32..80,
        corrupt in 0u32..80,
        truncate in 0u32..40,
        duplicate in 0u32..80,
        reorder in 0u32..80,
        split in any::<bool>(),
        churn in 0u32..30,
        consume in 100u32..1000,
    ) {
        let mut sim = Sim::new(seed);
        sim.churn = churn;
        sim.consume = consume;
        sim.set_faults(Faults { drop, corrupt, truncate, duplicate, reorder, split });
        sim.run_ms(5000);
        sim.settle();
        sim.check_accounting();
        sim.check_recovered();
    }
}

#[test]
fn half_open_link_is_not_reported_up() {
    let mut sim = Sim::new(17);
    sim.publish = 0;
    // The gateway's transmit line is broken from the start: the device keeps
    // saying HELLO, and the gateway must not claim the link is up.
    sim.g2d.connected = false;
    sim.run_ms(2000);
    assert!(!sim.gw.is_up() && !sim.dev.is_up());
    assert!(sim.gw_events.is_empty(), "{:?}", sim.gw_events);
    sim.g2d.connected = true;
    sim.run_ms(500);
    assert!(sim.gw.is_up() && sim.dev.is_up());
    assert_eq!(sim.gw_events[0], GwEv::Up(0xD0D0_0001));
    // Break it again once up: both ends notice within the timeout.
    sim.g2d.connected = false;
    sim.run_ms(2500);
    assert!(!sim.gw.is_up() && !sim.dev.is_up());
    assert_eq!(sim.gw_events.last(), Some(&GwEv::Down));
    sim.g2d.connected = true;
    sim.run_ms(500);
    assert!(sim.gw.is_up() && sim.dev.is_up());
    assert_eq!(sim.gw_events.last(), Some(&GwEv::Up(0xD0D0_0001)));
    sim.settle();
    sim.check_accounting();
    sim.check_recovered();
}
