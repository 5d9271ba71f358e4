//! serial-gateway end to end without QEMU: our backplane, the gateway run
//! loop, a fake device (the core's `link::Device`) behind a TCP listener,
//! a Component; and a fault-injecting proxy on the line.

mod serial_support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use banyan::component::Component;
use serial_support::*;

const STATUS: &str = "serial_gateway_status";

/// Receives until a message on `topic` arrives; returns its payload.
fn wait_message(c: &mut Component, topic: &str, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    while let Some(m) = c
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("recv")
    {
        if m.topic == topic {
            return m.payload;
        }
    }
    panic!("no message on {topic} within {timeout:?}");
}

#[test]
fn forwards_both_ways_and_restores_subscriptions_after_device_restart() {
    let bp = backplane();
    let dev_port = free_port();
    // The gateway starts first: nothing listens yet, it retries.
    let _gw = Gateway::start(
        bp.publisher_port(),
        bp.subscriber_port(),
        &format!("tcp:127.0.0.1:{dev_port}"),
        100,
    );
    let mut c = component(&bp, &[STATUS, "echo_"]);
    let mut others = Vec::new();
    let dev = FakeDevice::start(dev_port, 1, &["run_motors"]);
    wait_status(&mut c, STATUS, Duration::from_secs(10), &mut others, |s| {
        is_up_with(s, 1, &["run_motors"])
    });

    // Backplane → device → (echo) → backplane, bytes unchanged.
    assert!(c
        .wait_for_subscriber("run_motors", Duration::from_secs(5))
        .unwrap());
    let cmd = b"\x82\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xcb\xbf\xe0\0\0\0\0\0\0";
    c.publish_raw("run_motors", cmd).unwrap();
    assert_eq!(
        wait_message(&mut c, "echo_run_motors", Duration::from_secs(5)),
        cmd
    );
    assert_eq!(
        dev.received.lock().unwrap().as_slice(),
        [("run_motors".to_string(), cmd.to_vec())]
    );
    // Not subscribed by the device: never reaches it.
    c.publish_raw("light_leds", b"\x80").unwrap();

    // The MCU "reboots": a new device, new session, one more subscription.
    drop(dev);
    let restarted = Instant::now();
    let dev = FakeDevice::start(dev_port, 2, &["run_motors", "light_leds"]);
    let st = wait_status(&mut c, STATUS, Duration::from_secs(10), &mut others, |s| {
        is_up_with(s, 2, &["light_leds", "run_motors"])
    });
    eprintln!(
        "subscriptions restored {:?} after the new device started",
        restarted.elapsed()
    );
    assert!(counter(&st, "link_counters", "resets") >= 1, "{st}");
    assert!(counter(&st, "counters", "transport_losses") >= 1, "{st}");
    assert_eq!(counter(&st, "counters", "from_device"), 1, "{st}");

    assert!(c
        .wait_for_subscriber("light_leds", Duration::from_secs(5))
        .unwrap());
    c.publish_raw("light_leds", b"\x81\xa6status\xc3").unwrap();
    assert_eq!(
        wait_message(&mut c, "echo_light_leds", Duration::from_secs(5)),
        b"\x81\xa6status\xc3"
    );
    assert_eq!(dev.received.lock().unwrap().len(), 1);
}

#[test]
fn corrupted_line_never_delivers_garbage_counts_losses_and_resyncs() {
    let bp = backplane();
    let dev_port = free_port();
    let dev = FakeDevice::start(dev_port, 7, &["run_motors"]);
    // Flip a bit every 53 bytes, drop one every 211, both directions.
    let proxy = FaultProxy::start(dev_port, 53, 211);
    let _gw = Gateway::start(
        bp.publisher_port(),
        bp.subscriber_port(),
        &format!("tcp:127.0.0.1:{}", proxy.port),
        100,
    );
    let mut c = component(&bp, &[STATUS, "count"]);
    let mut others = Vec::new();
    wait_status(&mut c, STATUS, Duration::from_secs(10), &mut others, |s| {
        is_up_with(s, 7, &["run_motors"])
    });

    // Corrupted phase: the device publishes 300 numbered messages.
    proxy.corrupt.store(true, Ordering::Relaxed);
    dev.to_publish.store(300, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.published.load(Ordering::Relaxed) < 300 {
        assert!(Instant::now() < deadline, "device could not publish 300");
        let _ = c.recv_timeout(Duration::from_millis(20)).unwrap().map(|m| {
            others.push((m.topic, m.payload));
        });
    }
    // Clean line again: the link resyncs.
    proxy.corrupt.store(false, Ordering::Relaxed);
    let st = wait_status(&mut c, STATUS, Duration::from_secs(10), &mut others, |s| {
        is_up_with(s, 7, &["run_motors"]) && get(s, "link").and_then(|v| v.as_str()) == Some("up")
    });
    let line_errors = counter(&st, "link_counters", "crc_errors")
        + counter(&st, "link_counters", "cobs_errors")
        + counter(&st, "link_counters", "short_frames");
    assert!(line_errors > 0, "no corruption seen: {st}");

    // 50 more on the clean line: every one arrives.
    dev.to_publish.store(350, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    let check = |seen: &mut BTreeSet<u64>, payload: &[u8]| {
        let v = rmpv::decode::read_value(&mut &payload[..]).expect("valid msgpack");
        let n = get(&v, "n").and_then(|n| n.as_u64()).expect("n");
        assert!(n < 350, "bogus n {n}");
        assert_eq!(payload, rmpv_payload(n), "corrupted payload delivered");
        assert!(seen.insert(n), "{n} delivered twice");
    };
    for (t, p) in others.drain(..) {
        if t == "count" {
            check(&mut seen, &p);
        }
    }
    while !(300..350).all(|n| seen.contains(&n)) {
        assert!(
            Instant::now() < deadline,
            "clean-line messages missing: {:?}",
            (300..350).filter(|n| !seen.contains(n)).collect::<Vec<_>>()
        );
        if let Some(m) = c.recv_timeout(Duration::from_millis(50)).unwrap() {
            if m.topic == "count" {
                check(&mut seen, &m.payload);
            }
        }
    }
    let lost = 300 - seen.range(..300).count() as u64;
    // Losses are visible in the status counters.
    let st = wait_status(&mut c, STATUS, Duration::from_secs(5), &mut others, |_| {
        true
    });
    let counted = counter(&st, "link_counters", "publish_lost")
        + counter(&st, "link_counters", "seq_gaps")
        + counter(&st, "link_counters", "downs");
    eprintln!(
        "corrupted phase: {} of 300 delivered, {lost} lost; status: {st}",
        300 - lost
    );
    assert!(
        lost == 0 || counted > 0,
        "{lost} lost but nothing counted: {st}"
    );
    assert_eq!(counter(&st, "counters", "invalid_from_device"), 0);
}

// ---------------------------------------------------------------------------
// The device's services through a real services broker.

mod common;

use banyan_services::broker::{self as services_broker, SocketConfig};
use banyan_services::client::{Client, Config as ClientConfig, Options};
use banyan_services::proto::ErrorCode;

/// A request to a fake device's service and back, many in flight, each
/// answered exactly once; a request the device never answers gets an
/// explicit error before the client's deadline; the device dropping the
/// connection mid-request gives an error, not a hang.
#[test]
fn device_services_through_the_broker() {
    let bp = backplane();
    let broker = services_broker::spawn(SocketConfig::new("127.0.0.1", 0)).expect("broker");
    let endpoint = format!("tcp://127.0.0.1:{}", broker.port());
    let port = free_port();
    let dev = FakeDevice::start_serving(port, 7, &["run_motors"], &["echo", "hang"]);
    let ep = endpoint.clone();
    let _gw = Gateway::start_with(
        bp.publisher_port(),
        bp.subscriber_port(),
        &format!("tcp:127.0.0.1:{port}"),
        200,
        move |cfg| cfg.services = Some(ep),
    );
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            let s = broker.services();
            ["fake-mcu.echo", "fake-mcu.hang"]
                .iter()
                .all(|n| s.iter().any(|i| i.service == *n && i.workers == 1))
        }),
        "services not registered: {:?}",
        broker.services()
    );
    let mut c = Client::connect(ClientConfig::new(endpoint)).expect("client");

    // One request and back, byte for byte.
    let body = rmpv_payload(42);
    let reply = c
        .request_raw(
            "fake-mcu.echo",
            body.clone(),
            Options::new(Duration::from_secs(3)),
        )
        .expect("echo");
    assert_eq!(reply.body, body);

    // 300 requests, up to 20 in flight (more than the device's 4 credits):
    // every one answered once, with its own body.
    let mut sent = std::collections::HashMap::new();
    let mut answered = 0;
    let mut next = 0u64;
    while answered < 300 {
        while next < 300 && sent.len() < 20 {
            let id = c
                .send_raw(
                    "fake-mcu.echo",
                    rmpv_payload(next),
                    Options::new(Duration::from_secs(10)),
                )
                .expect("send");
            sent.insert(id, next);
            next += 1;
        }
        let done = c
            .poll(Duration::from_secs(5))
            .expect("poll")
            .expect("an answer");
        let n = sent.remove(&done.id).expect("answered once");
        assert_eq!(done.result.expect("reply").body, rmpv_payload(n));
        answered += 1;
    }

    // Never answered by the device: the gateway's error before the deadline.
    let t0 = Instant::now();
    match c.request_raw(
        "fake-mcu.hang",
        vec![0x80],
        Options::new(Duration::from_secs(1)),
    ) {
        Err(banyan_services::Error::Service { code, detail }) => {
            assert_eq!(code, ErrorCode::WorkerError, "{detail}");
            assert!(detail.contains("did not reply in time"), "{detail}");
        }
        other => panic!("expected a worker_error, got {other:?}"),
    }
    eprintln!(
        "unanswered request: error after {:?} (deadline 1 s)",
        t0.elapsed()
    );

    // The device drops the connection with a request in hand.
    let deadline = Duration::from_secs(8);
    let id = c
        .send_raw("fake-mcu.hang", vec![0x80], Options::new(deadline))
        .expect("send");
    assert!(
        common::wait_until(Duration::from_secs(5), || broker
            .services()
            .iter()
            .any(|s| s.service == "fake-mcu.hang" && s.idle == 0)),
        "the request did not reach the gateway"
    );
    // Let the request reach the device too: the next echo passes it on the link.
    c.request_raw(
        "fake-mcu.echo",
        vec![0x80],
        Options::new(Duration::from_secs(3)),
    )
    .expect("echo");
    drop(dev);
    let done = loop {
        if let Some(d) = c.poll(Duration::from_secs(10)).expect("poll") {
            if d.id == id {
                break d;
            }
        }
    };
    match done.result {
        Err(banyan_services::Error::Service { code, detail }) => {
            assert_eq!(code, ErrorCode::WorkerError, "{detail}");
            // (`not connected`: the request reached the gateway's loop only
            // after the connection closed.)
            assert!(
                detail.contains("connection was lost")
                    || detail.contains("link went down")
                    || detail.contains("not connected"),
                "{detail}"
            );
            eprintln!(
                "device gone mid-request: {detail:?} after {:?}",
                done.elapsed
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
