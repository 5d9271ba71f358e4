//! The component transports against a real `banyan backplane` process:
//! what happens to messages when the backplane is killed (`kill -9`) and
//! restarted, and how a backplane that stops without a FIN (SIGSTOP: a
//! host that lost power, a robot out of Wi-Fi range) is found by
//! heartbeats. Each test runs with the transport `BANYAN_TRANSPORT` names
//! (native by default); CI runs the file with both.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use banyan::component::{Component, Config, Event, LinkState, Transport};
use common::{cargo_bin, port_from, Proc};

const T: Duration = Duration::from_secs(20);

/// Starts `banyan backplane` on `publ`/`sub` (0: free ports); returns it
/// and the ports it bound.
fn backplane(publ: u16, sub: u16) -> (Proc, u16, u16) {
    let mut cmd = Command::new(cargo_bin("banyan-cli", "banyan"));
    cmd.args([
        "backplane",
        "--bind",
        "127.0.0.1",
        "-n",
        "Test",
        "--no-services",
    ])
    .args(["-p", &publ.to_string(), "-s", &sub.to_string()]);
    let mut bp = Proc::spawn("backplane", cmd);
    let sub = port_from(&bp.wait_line(T, |l| l.starts_with("Subscriber Port = ")));
    let publ = port_from(&bp.wait_line(T, |l| l.starts_with("Publisher  Port = ")));
    (bp, publ, sub)
}

/// A publisher and a subscriber to `topic` on `cfg`, once the publisher
/// sees the subscription.
fn pub_sub(cfg: Config, topic: &str) -> (Component, Component) {
    let mut p = Component::connect(cfg.clone()).unwrap();
    let mut s = Component::connect(cfg).unwrap();
    s.subscribe(topic).unwrap();
    assert!(p.wait_for_subscriber(topic, T).unwrap());
    (p, s)
}

/// SIGSTOPs `bp` and waits (up to `T`) for `multi`'s `BackplaneDown` of
/// backplane `name`; returns whether it came and how long after the stop.
fn stop_until_down(
    bp: &Proc,
    multi: &mut banyan::component::multi::MultiComponent,
    name: &str,
) -> (bool, Duration) {
    bp.signal("STOP");
    let stopped = Instant::now();
    let until = stopped + T;
    while Instant::now() < until {
        if let Some(e) = multi.recv_event(Some(until - Instant::now())).unwrap() {
            if e.backplane == name && e.event == Event::BackplaneDown {
                return (true, stopped.elapsed());
            }
        }
    }
    (false, stopped.elapsed())
}

/// Waits for `want` among the component's events (other events and
/// messages are skipped).
fn wait_event(c: &mut Component, want: &Event, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(e) = c.recv_event(Some(until - Instant::now())).unwrap() {
            if &e == want {
                return true;
            }
        }
    }
    false
}

/// Messages published while the backplane is dead (killed with SIGKILL,
/// restarted on the same ports a moment later) wait in the publisher and
/// are all delivered, in order, after the restart. With libzmq's PUB they
/// were dropped without a count (2,083–2,089 of them in 5 of 5 runs), so
/// this runs on the native transport only; with libzmq it prints what
/// arrived.
#[test]
fn messages_published_while_the_backplane_is_killed_arrive_after_its_restart() {
    let (mut bp, publ, sub) = backplane(0, 0);
    let cfg = Config::new("127.0.0.1", publ, sub);
    let (mut p, mut s) = pub_sub(cfg, "k");
    p.publish("k", &0u32).unwrap();
    assert_eq!(
        s.recv_timeout(T).unwrap().unwrap().decode::<u32>().unwrap(),
        0
    );

    bp.signal("KILL");
    let _ = bp.wait_exit(T);
    assert!(
        wait_event(&mut s, &Event::BackplaneDown, T),
        "no BackplaneDown"
    );

    // Published while there is no backplane (about 1 s of them).
    let n = 2_000u32;
    for i in 1..=n {
        p.publish("k", &i).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (_bp2, _, _) = backplane(publ, sub);

    let mut got = Vec::new();
    let until = Instant::now() + T;
    while got.len() < n as usize && Instant::now() < until {
        if let Some(m) = s.recv_timeout(Duration::from_millis(200)).unwrap() {
            got.push(m.decode::<u32>().unwrap());
        }
        // Keep the publisher's connection moving (the keeper thread does
        // too; this only makes the test quicker).
        let _ = p.has_subscriber("k");
    }
    let st = p.stats();
    println!(
        "transport {}: {} of {n} messages published during the outage arrived; \
         publisher {st:?}",
        p.transport(),
        got.len()
    );
    if p.transport() == Transport::Native {
        assert_eq!(st.send_dropped, 0, "{st:?}");
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
        assert_eq!(p.send_queue_len(), 0);
    }
}

/// The scenario: a publisher publishing steadily (one message a
/// millisecond) while the backplane is killed with SIGKILL and restarted
/// 1 s later. With the native transport only messages the dead backplane
/// had already taken from the socket can be lost (no TCP sender can know
/// of those): a few, in one run just before the kill; everything published
/// after the backplane died waits and is delivered. (libzmq lost 2,083–2,089 here in the runs; this
/// prints what it loses.)
#[test]
fn a_steady_publisher_loses_at_most_the_messages_in_flight_when_the_backplane_is_killed() {
    let (mut bp, publ, sub) = backplane(0, 0);
    let cfg = Config::new("127.0.0.1", publ, sub);
    let (mut p, mut s) = pub_sub(cfg, "k");

    let n = 3_000u32;
    let (kill_at, restart_at) = (500u32, 1_500u32);
    let mut got = Vec::new();
    let mut bp2 = None;
    let start = Instant::now();
    for i in 0..n {
        // Paced at one message a millisecond.
        while start.elapsed() < Duration::from_millis(u64::from(i)) {
            while let Some(m) = s.recv_timeout(Duration::ZERO).unwrap() {
                got.push(m.decode::<u32>().unwrap());
            }
            std::thread::yield_now();
        }
        p.publish("k", &i).unwrap();
        if i == kill_at {
            bp.signal("KILL");
            // Dead and reaped: its sockets are closed before the next
            // message is published.
            let _ = bp.wait_exit(T);
        }
        if i == restart_at {
            bp2 = Some(backplane(publ, sub));
        }
    }
    // Delivery is in order: the last one closes the stream.
    let until = Instant::now() + T;
    while got.last() != Some(&(n - 1)) && Instant::now() < until {
        if let Some(m) = s.recv_timeout(Duration::from_millis(200)).unwrap() {
            got.push(m.decode::<u32>().unwrap());
        }
        let _ = p.has_subscriber("k");
    }
    drop(bp2);
    let missing: Vec<u32> = {
        let have: std::collections::HashSet<u32> = got.iter().copied().collect();
        (0..n).filter(|i| !have.contains(i)).collect()
    };
    let st = p.stats();
    println!(
        "transport {}: {} of {n} arrived, {} missing ({:?}..{:?}); publisher {st:?}",
        p.transport(),
        got.len(),
        missing.len(),
        missing.first(),
        missing.last()
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, got, "out of order");
    if p.transport() == Transport::Native {
        assert_eq!(st.send_dropped, 0, "{st:?}");
        // Only what the backplane held when it was killed can be missing:
        // one run ending at the last message before the kill, published
        // within the last 50 ms before it. Everything published after it
        // waited and arrived.
        if let (Some(&a), Some(&b)) = (missing.first(), missing.last()) {
            assert_eq!(b - a + 1, missing.len() as u32, "{missing:?}");
            assert!(a + 50 >= kill_at && b <= kill_at, "{missing:?}");
        }
    }
}

/// A backplane that stops answering (SIGSTOP: no FIN, no RST) is noticed
/// by heartbeats: `BackplaneDown` within the timeout; when it comes back
/// (SIGCONT) the component reconnects by itself and traffic resumes.
#[test]
fn a_silent_backplane_is_found_by_heartbeats_and_traffic_resumes_after_it_returns() {
    let (bp, publ, sub) = backplane(0, 0);
    let mut cfg = Config::new("127.0.0.1", publ, sub);
    cfg.heartbeat_interval = Duration::from_millis(200);
    cfg.heartbeat_timeout = Duration::from_millis(800);
    let (mut p, mut s) = pub_sub(cfg, "h");
    p.publish("h", &1u8).unwrap();
    assert!(s.recv_timeout(T).unwrap().is_some());
    assert_eq!(s.link_state(), LinkState::Up);

    bp.signal("STOP");
    let stopped = Instant::now();
    let found = wait_event(&mut s, &Event::BackplaneDown, T);
    let took = stopped.elapsed();
    bp.signal("CONT");
    assert!(found, "a stopped backplane was never noticed");
    println!(
        "transport {}: stopped backplane noticed after {took:?} (timeout 800 ms)",
        s.transport()
    );
    assert!(s.stats().heartbeat_expired >= 1 || s.transport() == Transport::Libzmq);

    assert!(wait_event(&mut s, &Event::BackplaneUp, T), "no reconnect");
    let mut resumed = false;
    let until = Instant::now() + T;
    while !resumed && Instant::now() < until {
        let _ = p.publish("h", &2u8);
        resumed = matches!(
            s.recv_timeout(Duration::from_millis(100)).unwrap(),
            Some(m) if m.payload == [2]
        );
    }
    assert!(resumed, "traffic did not resume");
}

/// The safety consequence: an rpi-gateway (its run loop on a sim board)
/// stops its motors when its backplane goes silent without a FIN, by
/// heartbeat — here within 10 s even with a deadman of a minute — and says
/// so (`stopped_by: backplane_lost`) once the backplane is back.
#[test]
fn a_gateway_stops_its_motors_when_its_backplane_goes_silent() {
    use banyan_rpi::backend::sim::{SimBackend, SimBoard};
    use banyan_rpi::gateway::Gateway;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (bp, publ, sub) = backplane(0, 0);
    let board = SimBoard::new();
    let stop = Arc::new(AtomicBool::new(false));
    let gateway = {
        let (board, stop) = (board.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut config = banyan_rpi::config::Config::default();
            config.safety.deadman_timeout_ms = 60_000;
            let mut gw = Gateway::new(SimBackend::new(board), config, Instant::now()).unwrap();
            let mut ccfg = Config::new("127.0.0.1", publ, sub);
            ccfg.heartbeat_interval = Duration::from_millis(200);
            ccfg.heartbeat_timeout = Duration::from_millis(800);
            let mut comp = Component::connect(ccfg).unwrap();
            banyan_rpi::run::run(&mut gw, &mut comp, &stop).unwrap();
        })
    };
    let mut probe = Component::connect(Config::new("127.0.0.1", publ, sub)).unwrap();
    probe.subscribe("from_rpi_gateway").unwrap();
    assert!(probe.wait_for_subscriber("run_motors", T).unwrap());
    let cmd = banyan::component::wire::encode_value(&rmpv::Value::Map(vec![
        ("left".into(), 0.5.into()),
        ("right".into(), 0.5.into()),
    ]));
    let until = Instant::now() + T;
    while board.pin(18).duty != 0.5 {
        assert!(Instant::now() < until, "the motor did not start");
        probe.publish_raw("run_motors", &cmd).unwrap();
        let _ = probe.recv_timeout(Duration::from_millis(20)).unwrap();
    }

    bp.signal("STOP");
    let stopped_at = Instant::now();
    let until = stopped_at + Duration::from_secs(10);
    while board.pin(18).duty != 0.0 {
        assert!(
            Instant::now() < until,
            "the motors still run 10 s after the backplane went silent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "transport {}: motors stopped {:?} after the backplane went silent (timeout 800 ms)",
        probe.transport(),
        stopped_at.elapsed()
    );
    bp.signal("CONT");
    // Back: the gateway reports why it stopped.
    let until = Instant::now() + T;
    let mut why = None;
    while why.is_none() {
        assert!(Instant::now() < until, "no state report after the return");
        if let Some(m) = probe.recv_timeout(Duration::from_millis(100)).unwrap() {
            let v = m.value().unwrap();
            if banyan_rpi::gateway::get(&v, "report").and_then(rmpv::Value::as_str) == Some("state")
            {
                why = banyan_rpi::gateway::get(&v, "stopped_by")
                    .and_then(rmpv::Value::as_str)
                    .map(str::to_owned);
            }
        }
    }
    assert_eq!(why.as_deref(), Some("backplane_lost"));
    println!("state report after the return: {:?}", stopped_at.elapsed());
    stop.store(true, Ordering::Relaxed);
    gateway.join().unwrap();
}

/// A multi-backplane component finds one of its backplanes silent
/// (SIGSTOP) by heartbeats: `BackplaneDown` tagged with that backplane,
/// while the other one routes on; after SIGCONT the silent one is back by
/// itself and routes again.
#[test]
fn a_multi_component_finds_one_silent_backplane_and_routes_on_through_the_other() {
    use banyan::component::multi::{MultiComponent, Options};
    use banyan::component::routing::{Entry, Spec};

    let (_bp1, p1, s1) = backplane(0, 0);
    let (bp2, p2, s2) = backplane(0, 0);
    let entry = |name: &str, p: u16, s: u16| {
        Entry::new(name, "127.0.0.1", Some(s), vec!["h".into()], Some(p))
    };
    let spec = Spec {
        entries: vec![entry("BP1", p1, s1), entry("BP2", p2, s2)],
    };
    let mut options = Options::default();
    options.heartbeat_interval = Duration::from_millis(200);
    options.heartbeat_timeout = Duration::from_millis(800);
    let mut multi = MultiComponent::connect(&spec, options).unwrap();
    let mut on1 = Component::connect(Config::new("127.0.0.1", p1, s1)).unwrap();
    let mut on2 = Component::connect(Config::new("127.0.0.1", p2, s2)).unwrap();
    // Publishes `value` on `c` until `multi` gets it from `name`.
    let routed = |multi: &mut MultiComponent, c: &mut Component, name: &str, value: u8| {
        let until = Instant::now() + T;
        while Instant::now() < until {
            let _ = c.publish("h", &value);
            if let Some(r) = multi.recv_timeout(Duration::from_millis(100)).unwrap() {
                if r.message.payload == [value] {
                    return r.backplane == name;
                }
            }
        }
        false
    };
    assert!(routed(&mut multi, &mut on1, "BP1", 1));
    assert!(routed(&mut multi, &mut on2, "BP2", 2));

    let (found, took) = stop_until_down(&bp2, &mut multi, "BP2");
    // BP1 routes on while BP2 is silent.
    let bp1_meanwhile = found && routed(&mut multi, &mut on1, "BP1", 3);
    bp2.signal("CONT");
    assert!(found, "the silent backplane was never noticed");
    assert!(bp1_meanwhile, "the other backplane stopped routing");
    println!(
        "transport {}: silent backplane of two noticed after {took:?} (timeout 800 ms)",
        multi.transport()
    );
    assert_eq!(multi.link_state("BP1").unwrap(), LinkState::Up);
    let expired = multi.backplane_stats("BP2").unwrap().heartbeat_expired;
    assert!(expired >= 1 || multi.transport() == Transport::Libzmq);
    assert!(
        routed(&mut multi, &mut on2, "BP2", 4),
        "BP2 did not route again"
    );
    assert_eq!(multi.link_state("BP2").unwrap(), LinkState::Up);
}

/// A backplane a multi-backplane component only publishes to (no
/// subscriber connection to watch it) is found silent too: its publisher
/// connection sends the heartbeats itself. `BackplaneDown` for it within
/// the timeout, and it is back by itself after SIGCONT.
#[test]
fn a_publish_only_backplane_that_goes_silent_is_found_by_heartbeats() {
    use banyan::component::multi::{MultiComponent, Options};
    use banyan::component::routing::{Entry, Spec};

    let (bp, publ, sub) = backplane(0, 0);
    let spec = Spec {
        entries: vec![Entry::new("OUT", "127.0.0.1", None, vec![], Some(publ))],
    };
    let mut options = Options::default();
    options.heartbeat_interval = Duration::from_millis(200);
    options.heartbeat_timeout = Duration::from_millis(800);
    let mut multi = MultiComponent::connect(&spec, options).unwrap();
    let mut s = Component::connect(Config::new("127.0.0.1", publ, sub)).unwrap();
    s.subscribe("h").unwrap();
    // Delivered: the link is up.
    let until = Instant::now() + T;
    let mut got = false;
    while !got && Instant::now() < until {
        let _ = multi.publish_to("OUT", "h", &1u8);
        got = s
            .recv_timeout(Duration::from_millis(100))
            .unwrap()
            .is_some();
    }
    assert!(got, "nothing arrived through the publish-only backplane");

    let (found, took) = stop_until_down(&bp, &mut multi, "OUT");
    bp.signal("CONT");
    assert!(found, "the silent publish-only backplane was never noticed");
    println!(
        "transport {}: silent publish-only backplane noticed after {took:?} (timeout 800 ms)",
        multi.transport()
    );
    let expired = multi.backplane_stats("OUT").unwrap().heartbeat_expired;
    assert!(expired >= 1 || multi.transport() == Transport::Libzmq);
    let until = Instant::now() + T;
    while multi.link_state("OUT").unwrap() != LinkState::Up {
        assert!(Instant::now() < until, "the backplane did not come back");
        let _ = multi.recv_event(Some(Duration::from_millis(50))).unwrap();
    }
}
