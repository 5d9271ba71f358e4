//! Backplane, component and monitor end to end: the real binaries, hostile
//! input from a raw ZeroMQ sender, and a backplane restart.

mod common;

use std::process::Command;
use std::time::Duration;

use banyan::backplane::{self, Backplane};
use banyan::component::wire::Reject;
use banyan::component::{Component, Config, Event, LinkState};
use common::{cargo_bin, port_from, wait_until, Proc};

const T: Duration = Duration::from_secs(20);

/// `banyan SUBCOMMAND`.
fn banyan(sub: &str) -> Command {
    let mut cmd = Command::new(cargo_bin("banyan-cli", "banyan"));
    cmd.arg(sub);
    cmd
}

/// Starts the `backplane` binary on free ports; returns it and (pub, sub).
fn backplane_bin() -> (Proc, u16, u16) {
    backplane_bin_with(&["-n", "Test"])
}

fn backplane_bin_with(args: &[&str]) -> (Proc, u16, u16) {
    let mut cmd = banyan("backplane");
    cmd.args(["--bind", "127.0.0.1", "-p", "0", "-s", "0"])
        .args(args);
    let mut bp = Proc::spawn("backplane", cmd);
    let sub = port_from(&bp.wait_line(T, |l| l.starts_with("Subscriber Port = ")));
    let publ = port_from(&bp.wait_line(T, |l| l.starts_with("Publisher  Port = ")));
    (bp, publ, sub)
}

#[test]
fn backplane_binary_forwards_and_exits_cleanly_on_sigint_and_sigterm() {
    let (mut bp, publ, sub) = backplane_bin();
    let cfg = Config::new("127.0.0.1", publ, sub);
    let mut p = Component::connect(cfg.clone()).unwrap();
    let mut s = Component::connect(cfg).unwrap();
    s.subscribe("hello").unwrap();
    assert!(p.wait_for_subscriber("hello", T).unwrap());
    p.publish(
        "hello",
        &[("value", 1)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let m = s
        .recv_timeout(T)
        .unwrap()
        .expect("message through the backplane binary");
    assert_eq!(m.payload, [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01]);

    // A second backplane on the same port: clear error, exit code 1.
    let mut cmd = banyan("backplane");
    cmd.args(["--bind", "127.0.0.1", "-p", &publ.to_string(), "-s", "0"]);
    let mut clash = Proc::spawn("backplane-clash", cmd);
    assert_eq!(clash.wait_exit(T).code(), Some(1));
    assert!(
        clash.output().contains(&format!(
            "publisher port {publ} on 127.0.0.1 is already in use"
        )),
        "{}",
        clash.output()
    );

    bp.signal("INT");
    assert!(bp.wait_exit(T).success(), "{}", bp.output());
    // Counters at exit: the one message, nothing dropped.
    assert!(
        bp.output()
            .contains("backplane exiting: 1 forwarded, 0 dropped, 0 stalls"),
        "{}",
        bp.output()
    );

    let (mut bp, _, _) = backplane_bin();
    bp.signal("TERM");
    assert!(bp.wait_exit(T).success(), "{}", bp.output());
}

fn raw_send(socket: &zmq::Socket, frames: &[&[u8]]) {
    socket.send_multipart(frames.iter().copied(), 0).unwrap();
}

#[test]
fn hostile_input_is_counted_and_never_stops_subscribers_or_monitor() {
    // The receivers subscribe to everything and count exactly: keep the
    // backplane's own stats reports out of this test.
    let (_bp, publ, sub) = backplane_bin_with(&["-n", "Test", "--stats-interval", "0"]);
    let cfg = Config::new("127.0.0.1", publ, sub);
    let mut normal = Component::connect(cfg.clone()).unwrap();
    normal.subscribe("").unwrap();
    let mut small_cfg = cfg.clone();
    small_cfg.limits.max_payload = 1 << 20;
    let mut small = Component::connect(small_cfg).unwrap();
    small.subscribe("").unwrap();
    let mut cmd = banyan("monitor");
    cmd.args([
        "-b",
        "127.0.0.1",
        "-p",
        &publ.to_string(),
        "-s",
        &sub.to_string(),
    ])
    .args(["--summary", "0"]);
    let mut monitor = Proc::spawn("monitor", cmd);

    // The raw sender: a plain ZeroMQ PUB, as any foreign program would use.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::PUB).unwrap();
    raw.set_linger(1000).unwrap();
    raw.connect(&format!("tcp://127.0.0.1:{publ}")).unwrap();

    // Readiness: probe until all three receivers have seen a probe.
    let probe = [0x81, 0xa1, b'n', 0x01];
    let (mut n_ok, mut s_ok) = (false, false);
    assert!(
        wait_until(T, || {
            raw_send(&raw, &[b"probe", &probe]);
            n_ok |= normal
                .recv_timeout(Duration::from_millis(20))
                .unwrap()
                .is_some();
            s_ok |= small
                .recv_timeout(Duration::from_millis(1))
                .unwrap()
                .is_some();
            n_ok && s_ok && monitor.output().contains(" probe {\"n\":1}")
        }),
        "probes did not arrive; monitor output:\n{}",
        monitor.output()
    );
    while normal
        .recv_timeout(Duration::from_millis(100))
        .unwrap()
        .is_some()
    {}
    while small
        .recv_timeout(Duration::from_millis(100))
        .unwrap()
        .is_some()
    {}
    let base_normal = normal.stats();
    let base_small = small.stats();

    let mut big = vec![0xc6, 0x01, 0x00, 0x00, 0x00];
    big.extend(std::iter::repeat_n(0xab, 16 << 20));
    let hostile: Vec<(Vec<&[u8]>, Reject)> = vec![
        (vec![b"lonely"], Reject::MissingPayload),
        (
            vec![b"three", &[0x01], b"extra"],
            Reject::ExtraFrames { frames: 3 },
        ),
        (vec![b"empty", b""], Reject::EmptyPayload),
        (vec![&[0xff, 0xfe], &[0x01]], Reject::TopicNotUtf8),
        (
            vec![b"intkey", &[0x81, 0x01, 0x02]],
            Reject::BadMapKey { at: 1 },
        ),
        (
            vec![b"trunc", &[0x81, 0xa5, b'v', b'a']],
            Reject::Truncated { at: 4 },
        ),
        (
            vec![b"trail", &[0x01, 0x02]],
            Reject::TrailingBytes { extra: 1 },
        ),
        (
            vec![b"badstr", &[0xa2, 0xff, 0xfe]],
            Reject::BadUtf8 { at: 0 },
        ),
        (vec![b"reserved", &[0xc1]], Reject::ReservedMarker { at: 0 }),
    ];
    for (frames, _) in &hostile {
        raw_send(&raw, frames);
    }
    raw_send(&raw, &[b"big", &big]);
    raw_send(&raw, &[b"after", &[0x81, 0xa2, b'o', b'k', 0xc3]]);

    // Default limits: every hostile message rejected with the right reason,
    // the 16 MiB bin accepted, then the valid message after them.
    let mut reasons = Vec::new();
    let mut valid = Vec::new();
    while valid.len() < 2 {
        match normal.recv_event(Some(T)).unwrap().expect("event") {
            Event::Rejected(r) => reasons.push(r.reason),
            Event::Message(m) => valid.push(m),
            Event::BackplaneUp | Event::BackplaneDown => {}
        }
    }
    let expected: Vec<Reject> = hostile.iter().map(|(_, r)| *r).collect();
    assert_eq!(reasons, expected);
    assert_eq!(valid[0].topic, "big");
    assert_eq!(valid[0].payload, big);
    assert_eq!(valid[1].topic, "after");
    let stats = normal.stats();
    assert_eq!(stats.rejected - base_normal.rejected, hostile.len() as u64);
    assert_eq!(stats.received - base_normal.received, 2);
    assert_eq!(
        normal.last_rejection().unwrap().reason,
        Reject::ReservedMarker { at: 0 }
    );

    // 1 MiB limit: the big payload is rejected and counted too.
    let after = small
        .recv_timeout(T)
        .unwrap()
        .expect("valid message after the hostile ones");
    assert_eq!(after.topic, "after");
    let stats = small.stats();
    assert_eq!(
        stats.rejected - base_small.rejected,
        hostile.len() as u64 + 1
    );
    assert_eq!(stats.received - base_small.received, 1);
    assert_eq!(
        small.last_rejection().unwrap().reason,
        Reject::TooLarge {
            len: big.len(),
            max: 1 << 20
        }
    );

    // The monitor printed a diagnostic per hostile message, survived, and
    // printed the big one (cut) and the valid one.
    monitor.wait_line(T, |l| l.contains(" after {\"ok\":true}"));
    let out = monitor.output();
    assert_eq!(out.matches("!! rejected").count(), hostile.len(), "{out}");
    assert!(
        out.contains("!! rejected: map key at byte 1 is not a str or bin; topic \"intkey\""),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            " big {{\"bin\":\"{}…\",\"len\":{}}}",
            "ab".repeat(64),
            16 << 20
        )),
        "{out}"
    );
    monitor.signal("INT");
    assert!(monitor.wait_exit(T).success());
    assert!(
        monitor.output().lines().any(|l| {
            l.starts_with("[stderr] banyan monitor: exiting: ")
                && l.contains(" received, 9 rejected")
        }),
        "{}",
        monitor.output()
    );
}

#[test]
fn components_reconnect_after_a_backplane_restart() {
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (publ, sub) = (bp.publisher_port(), bp.subscriber_port());
    let running = bp.spawn().unwrap();
    let cfg = Config::new("127.0.0.1", publ, sub);
    let mut p = Component::connect(cfg.clone()).unwrap();
    let mut s = Component::connect(cfg).unwrap();
    s.subscribe("t").unwrap();
    assert!(p.wait_for_subscriber("t", T).unwrap());
    p.publish("t", &1).unwrap();
    assert_eq!(s.recv_timeout(T).unwrap().unwrap().payload, [1]);
    assert_eq!(s.link_state(), LinkState::Up);

    running.stop().unwrap();
    // The subscriber notices the loss.
    loop {
        match s.recv_event(Some(T)).unwrap() {
            Some(Event::BackplaneDown) => break,
            Some(_) => {}
            None => panic!("no BackplaneDown event"),
        }
    }
    assert_eq!(s.link_state(), LinkState::Down);

    // Restart on the same ports (the old listener may take a moment to close).
    let mut restarted = None;
    assert!(wait_until(T, || {
        restarted = Backplane::bind(&backplane::Config::new("127.0.0.1", publ, sub)).ok();
        restarted.is_some()
    }));
    let _running = restarted.unwrap().spawn().unwrap();

    // Traffic resumes without touching the components.
    let mut got = None;
    assert!(
        wait_until(T, || {
            let _ = p.publish("t", &2);
            got = s.recv_timeout(Duration::from_millis(50)).unwrap();
            matches!(&got, Some(m) if m.payload == [2])
        }),
        "traffic did not resume after the restart"
    );
    assert_eq!(s.link_state(), LinkState::Up);
}

/// Next message on `c`, skipping the backplane's stats reports.
fn next_data(c: &mut Component) -> banyan::component::wire::Message {
    loop {
        let m = c.recv_timeout(T).unwrap().expect("a message in time");
        if m.topic != backplane::STATS_TOPIC {
            return m;
        }
    }
}

#[test]
fn a_stuck_subscriber_costs_counted_drops_and_never_stops_other_topics() {
    let mut cfg = backplane::Config::new("127.0.0.1", 0, 0);
    cfg.hwm = 100;
    cfg.stall = Duration::from_millis(500);
    cfg.stats_interval = Duration::from_millis(50);
    cfg.name = "Stuck".into();
    let bp = Backplane::bind(&cfg).unwrap().spawn().unwrap();
    let ccfg = Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());

    // A subscriber to "big" that never reads, with tiny queues.
    let ctx = zmq::Context::new();
    let stuck = stuck_subscriber(&ctx, bp.subscriber_port(), "big");
    let mut healthy = Component::connect(ccfg.clone()).unwrap();
    healthy.subscribe("small").unwrap();
    healthy.subscribe(backplane::STATS_TOPIC).unwrap();
    let mut publisher = Component::connect(ccfg.clone()).unwrap();
    assert!(publisher.wait_for_subscriber("big", T).unwrap());
    assert!(publisher.wait_for_subscriber("small", T).unwrap());

    // 32 MB for "big" cannot all fit in the stuck subscriber's queues.
    const N: u64 = 1000;
    let big = rmpv::Value::Binary(vec![0x55; 32 * 1024]);
    for i in 0..N {
        publisher.publish_value("big", &big).unwrap();
        publisher.publish_value("small", &i.into()).unwrap();
    }
    // The other topic is delivered whole and in order.
    for i in 0..N {
        let m = next_data(&mut healthy);
        assert_eq!((m.topic.as_str(), m.value().unwrap()), ("small", i.into()));
    }
    assert_eq!(publisher.stats().send_dropped, 0);
    // Every message is accounted for: forwarded or counted as dropped.
    assert!(
        wait_until(T, || {
            let s = bp.stats();
            s.forwarded + s.dropped == 2 * N
        }),
        "{:?}",
        bp.stats()
    );
    let stats = bp.stats();
    assert!(stats.dropped > 0 && stats.stalls > 0, "{stats:?}");
    assert!(stats.forwarded >= N, "{stats:?}");
    // ... and reported on the stats topic.
    let report = loop {
        let m = healthy.recv_timeout(T).unwrap().expect("a stats report");
        assert_eq!(m.topic, backplane::STATS_TOPIC);
        let v = m.value().unwrap();
        if v["dropped"] == stats.dropped.into() && v["forwarded"] == stats.forwarded.into() {
            break v;
        }
    };
    assert_eq!(report["report"], "stats".into());
    assert_eq!(report["name"], "Stuck".into());
    assert_eq!(report["stalls"], stats.stalls.into());

    // Once the stuck subscriber is gone, "big" flows to a new one with no
    // more drops.
    drop(stuck);
    // Wait until the backplane has seen it go (what was queued for it is
    // then counted as undelivered): a fast publisher could otherwise still
    // hit its full queue.
    assert!(
        wait_until(T, || bp.stats().undelivered > 0),
        "the stuck subscriber's leaving was not seen: {:?}",
        bp.stats()
    );
    let mut late = Component::connect(ccfg).unwrap();
    late.subscribe("big").unwrap();
    let mut ready = false;
    for _ in 0..200 {
        publisher.publish_value("big", &"probe".into()).unwrap();
        if late
            .recv_timeout(Duration::from_millis(50))
            .unwrap()
            .is_some()
        {
            ready = true;
            break;
        }
    }
    assert!(
        ready,
        "no probe reached the new subscriber: {:?}",
        bp.stats()
    );
    let dropped = bp.stats().dropped;
    for i in 0..N {
        publisher.publish_value("big", &i.into()).unwrap();
    }
    let mut next = 0;
    while next < N {
        let m = next_data(&mut late);
        match m.value().unwrap() {
            rmpv::Value::String(_) => {} // a late probe
            v => {
                assert_eq!(v, next.into());
                next += 1;
            }
        }
    }
    assert_eq!(bp.stats().dropped, dropped, "{:?}", bp.stats());
    bp.stop().unwrap();
}

/// A subscriber to `topic` that never reads, with tiny queues.
fn stuck_subscriber(ctx: &zmq::Context, sub_port: u16, topic: &str) -> zmq::Socket {
    let stuck = ctx.socket(zmq::SUB).unwrap();
    stuck.set_rcvhwm(1).unwrap();
    stuck.set_rcvbuf(4096).unwrap();
    stuck.set_linger(0).unwrap();
    stuck.set_subscribe(topic.as_bytes()).unwrap();
    stuck
        .connect(&format!("tcp://127.0.0.1:{sub_port}"))
        .unwrap();
    stuck
}

#[test]
fn backplane_binary_logs_publishes_and_prints_its_drops() {
    let (mut bp, publ, sub) = backplane_bin_with(&[
        "-n",
        "Drops",
        "--hwm",
        "10",
        "--stall-ms",
        "50",
        "--stats-interval",
        "0.1",
    ]);
    let mut cmd = banyan("monitor");
    cmd.args(["-p", &publ.to_string(), "-s", &sub.to_string()])
        .args(["-t", backplane::STATS_TOPIC, "--summary", "0"]);
    let mut monitor = Proc::spawn("monitor", cmd);
    let ctx = zmq::Context::new();
    let _stuck = stuck_subscriber(&ctx, sub, "big");
    let mut publisher = Component::connect(Config::new("127.0.0.1", publ, sub)).unwrap();
    // Subscriptions reach every publisher: the monitor's too.
    assert!(publisher.wait_for_subscriber("big", T).unwrap());
    assert!(publisher
        .wait_for_subscriber(backplane::STATS_TOPIC, T)
        .unwrap());
    let big = rmpv::Value::Binary(vec![0x55; 32 * 1024]);
    for _ in 0..500 {
        publisher.publish_value("big", &big).unwrap();
    }
    // Wait until the stats say the backplane has dealt with all 500
    // messages (forwarded or dropped), with some dropped; only then stop it.
    let field = |l: &str, name: &str| -> Option<u64> {
        let rest = &l[l.find(&format!("\"{name}\":"))? + name.len() + 3..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let line = monitor.wait_line(T, |l| {
        l.contains(" banyan_backplane ")
            && matches!(
                (field(l, "forwarded"), field(l, "dropped")),
                (Some(f), Some(d)) if d > 0 && f + d >= 500
            )
    });
    assert!(
        line.contains(r#"{"report":"stats","name":"Drops","forwarded":"#),
        "{line}"
    );
    bp.signal("INT");
    assert!(bp.wait_exit(T).success(), "{}", bp.output());
    let out = bp.output();
    let exit = out
        .lines()
        .find(|l| l.starts_with("backplane exiting: "))
        .unwrap_or_else(|| panic!("no exit line:\n{out}"));
    let n: Vec<u64> = exit
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n.len() == 7 && n[1] > 0 && n[2] > 0, "{exit}");
    // Nothing unmatched, undelivered, oversize or refused here.
    assert_eq!(n[3..], [0, 0, 0, 0], "{exit}");
    assert_eq!(n[0] + n[1], 500, "{exit}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("[stderr]") && l.contains("warning") && l.contains("dropped")),
        "no drop warning:\n{out}"
    );
}
