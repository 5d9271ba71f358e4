//! Interoperability with python-banyan 3.17 (the venv from
//! `bash scripts/venv.sh`): Python components on our backplane, our
//! components on Python's backplane, in both directions, every MessagePack
//! type compared exactly, prefix subscriptions, and `BanyanBaseMulti`
//! broadcasting to two of our backplanes.
//!
//! Python's backplane runs unmodified through `tests/lan_py/py_backplane.py`.
//! It binds only the address it guesses by "connecting" to 8.8.8.8 and falls
//! back to 127.0.0.1 when that fails; the wrapper makes the probe fail so the
//! tests stay on loopback. The tests read the address from its banner and
//! check it is 127.0.0.1.
//!
//! The Python side is `tests/lan_py/interop.py`; the case list there and
//! [`cases`] here must stay in the same order.

mod common;

use std::process::Command;
use std::time::Duration;

use banyan::backplane::{self, Backplane};
use banyan::component::wire::encode_value;
use banyan::component::{Component, Config};
use common::{free_port, python, wait_until, workspace_root, Proc};
use rmpv::Value;

const T: Duration = Duration::from_secs(30);

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// The same payloads as `CASES` in `tests/lan_py/interop.py`.
fn cases() -> Vec<Value> {
    let bytes256: Vec<u8> = (0..=255u8).collect();
    vec![
        map(vec![("value", Value::from(1))]),
        map(vec![
            ("u7", Value::from(127)),
            ("u8", Value::from(200)),
            ("u16", Value::from(60000)),
            ("u32", Value::from(4_000_000_000u32)),
            ("u64", Value::from(u64::MAX)),
        ]),
        map(vec![
            ("n5", Value::from(-5)),
            ("i8", Value::from(-100)),
            ("i16", Value::from(-30000)),
            ("i32", Value::from(-2_000_000_000)),
            ("i64", Value::from(i64::MIN)),
        ]),
        map(vec![
            ("f", Value::F64(1.5)),
            ("neg", Value::F64(-2.25)),
            ("tiny", Value::F64(5e-324)),
            ("big", Value::F64(f64::MAX)),
        ]),
        map(vec![
            ("s", Value::from("héllo ✓")),
            ("empty", Value::from("")),
            ("s8", Value::from("x".repeat(40))),
            ("s16", Value::from("y".repeat(300))),
            ("s32", Value::from("z".repeat(70000))),
        ]),
        map(vec![
            ("b", Value::Binary(vec![0, 1, 255])),
            ("b0", Value::Binary(vec![])),
            ("b16", Value::Binary([bytes256.clone(), bytes256].concat())),
            ("b32", Value::Binary(vec![0xab; 70000])),
        ]),
        map(vec![
            ("nil", Value::Nil),
            ("t", Value::Boolean(true)),
            ("f", Value::Boolean(false)),
        ]),
        map(vec![
            (
                "a",
                Value::Array(vec![
                    Value::from(1),
                    Value::from("two"),
                    Value::Array(vec![Value::F64(3.0), Value::Nil, Value::Boolean(false)]),
                ]),
            ),
            ("e", Value::Array(vec![])),
            ("a16", Value::Array((0..20).map(Value::from).collect())),
        ]),
        map(vec![
            (
                "m",
                map(vec![(
                    "inner",
                    map(vec![(
                        "deep",
                        Value::Array(vec![map(vec![("k", Value::from(1))])]),
                    )]),
                )]),
            ),
            ("em", Value::Map(vec![])),
            (
                "m16",
                Value::Map(
                    (0..20)
                        .map(|i| (Value::from(i.to_string()), Value::from(i)))
                        .collect(),
                ),
            ),
        ]),
        Value::Array(vec![Value::from(1), Value::from(2), Value::from(3)]),
        Value::from("top-level string"),
        Value::Nil,
    ]
}

fn script() -> String {
    workspace_root()
        .join("tests/lan_py/interop.py")
        .display()
        .to_string()
}

fn py(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg("-u").arg(script()).args(args);
    Proc::spawn(name, cmd)
}

/// A backplane under test: ours (in-process) or Python's (a process).
enum Bp {
    Ours(#[allow(dead_code)] backplane::Running),
    Python(#[allow(dead_code)] Proc),
}

/// Starts a backplane; returns it, the address to connect to and its
/// (publisher, subscriber) ports.
fn start(python_backplane: bool) -> (Bp, String, u16, u16) {
    if python_backplane {
        let (publ, sub) = (free_port(), free_port());
        let mut cmd = Command::new(python());
        cmd.arg("-u")
            .arg(workspace_root().join("tests/lan_py/py_backplane.py"))
            .args(["-p", &publ.to_string(), "-s", &sub.to_string()]);
        let mut proc = Proc::spawn("python backplane", cmd);
        let line = proc.wait_line(T, |l| l.contains("Backplane IP address: "));
        let addr = line.rsplit(' ').next().unwrap().trim().to_owned();
        assert_eq!(addr, "127.0.0.1", "Python's backplane must bind loopback");
        (Bp::Python(proc), addr, publ, sub)
    } else {
        let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
        let (publ, sub) = (bp.publisher_port(), bp.subscriber_port());
        (Bp::Ours(bp.spawn().unwrap()), "127.0.0.1".into(), publ, sub)
    }
}

/// Python publisher → backplane → our subscriber; payload bytes must equal
/// our own encoding of the same values, and decode to them.
fn python_to_rust(python_backplane: bool) {
    let (_bp, addr, publ, sub) = start(python_backplane);
    let mut ours = Component::connect(Config::new(addr.clone(), publ, sub)).unwrap();
    ours.subscribe("cases").unwrap();
    ours.subscribe("probe").unwrap();
    let mut pypub = py(
        "python pub",
        &["pub", &addr, &publ.to_string(), &sub.to_string(), "cases"],
    );
    pypub.wait_line(T, |l| l == "READY");
    let probe = ours
        .recv_timeout(T)
        .unwrap()
        .expect("probe from the Python publisher");
    assert_eq!(probe.topic, "probe");
    // It keeps probing until "go" arrives: stop listening to that.
    ours.unsubscribe("probe").unwrap();
    // Tell it to go until the first case arrives (the "go" subscription may
    // not have reached Python's backplane yet).
    let expected = cases();
    let mut received = Vec::new();
    assert!(
        wait_until(T, || {
            ours.publish("go", &()).unwrap();
            // Bounded: read what arrives within 50 ms, then send "go" again.
            let until = std::time::Instant::now() + Duration::from_millis(50);
            while let Some(m) = ours
                .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
                .unwrap()
            {
                if m.topic == "cases" {
                    received.push(m);
                }
            }
            !received.is_empty()
        }),
        "no case arrived; python output:\n{}",
        pypub.output()
    );
    while received.len() < expected.len() {
        let m = ours.recv_timeout(T).unwrap().expect("all cases");
        if m.topic == "cases" {
            received.push(m);
        }
    }
    for (i, (m, want)) in received.iter().zip(&expected).enumerate() {
        assert_eq!(m.value().unwrap(), *want, "case {i} decoded");
        assert_eq!(m.payload, encode_value(want), "case {i} bytes");
    }
    assert_eq!(ours.stats().rejected, 0);
}

/// Our publisher → backplane → Python subscriber (strict type comparison in
/// Python); prefix subscriptions behave the same for Python and for us.
fn rust_to_python(python_backplane: bool) {
    let (_bp, addr, publ, sub) = start(python_backplane);
    let cfg = Config::new(addr.clone(), publ, sub);
    let mut ours = Component::connect(cfg.clone()).unwrap();
    ours.subscribe("pong").unwrap();
    let mut our_sub = Component::connect(cfg).unwrap();
    our_sub.subscribe("pre").unwrap();
    our_sub.subscribe("ping").unwrap();
    let mut pysub = py(
        "python sub",
        &["sub", &addr, &publ.to_string(), &sub.to_string(), "cases"],
    );
    pysub.wait_line(T, |l| l == "READY");
    let mut our_sub_ready = false;
    assert!(
        wait_until(T, || {
            ours.publish("ping", &()).unwrap();
            our_sub_ready |= our_sub
                .recv_timeout(Duration::from_millis(1))
                .unwrap()
                .is_some();
            let pong = ours
                .recv_timeout(Duration::from_millis(20))
                .unwrap()
                .is_some();
            pong && our_sub_ready
        }),
        "no pong; python output:\n{}",
        pysub.output()
    );
    for case in cases() {
        ours.publish_value("cases", &case).unwrap();
    }
    let topics = ["pre", "prefix", "pr", "xpre", "pre/a", "PRE", "p"];
    for t in topics {
        ours.publish(t, &()).unwrap();
    }
    ours.publish("done", &()).unwrap();
    let done = pysub.wait_line(T, |l| l.starts_with("DONE"));
    let n = cases().len();
    assert_eq!(done, format!("DONE {n} of {n}"), "{}", pysub.output());
    let out = pysub.output();
    let py_prefix: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("PREFIX "))
        .collect();
    let mut our_prefix = Vec::new();
    while let Some(m) = our_sub.recv_timeout(Duration::from_millis(500)).unwrap() {
        if m.topic != "ping" {
            our_prefix.push(m.topic);
        }
    }
    let expected: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| t.starts_with("pre"))
        .collect();
    assert_eq!(py_prefix, expected);
    assert_eq!(our_prefix, expected);
}

#[test]
fn python_publisher_our_backplane_our_subscriber() {
    python_to_rust(false);
}

#[test]
fn python_publisher_python_backplane_our_subscriber() {
    python_to_rust(true);
}

#[test]
fn our_publisher_our_backplane_python_subscriber() {
    rust_to_python(false);
}

#[test]
fn our_publisher_python_backplane_python_subscriber() {
    rust_to_python(true);
}

#[test]
fn python_multi_broadcasts_to_two_of_our_backplanes() {
    let a = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let b = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (dir, spec) = common::routing_spec(
        "banyan-lan-multi",
        [
            (a.subscriber_port(), "unused", a.publisher_port()),
            (b.subscriber_port(), "unused", b.publisher_port()),
        ],
    );
    let on = |bp: &Backplane| {
        Component::connect(Config::new(
            "127.0.0.1",
            bp.publisher_port(),
            bp.subscriber_port(),
        ))
        .unwrap()
    };
    let (mut on_a, mut on_b) = (on(&a), on(&b));
    on_a.subscribe("multi").unwrap();
    on_b.subscribe("multi").unwrap();
    let (_a, _b) = (a.spawn().unwrap(), b.spawn().unwrap());
    let mut pymulti = py("python multi", &["multi", spec.to_str().unwrap(), "multi"]);
    pymulti.wait_line(T, |l| l == "READY");
    let want = &cases()[1];
    for c in [&mut on_a, &mut on_b] {
        let m = c.recv_timeout(T).unwrap().unwrap_or_else(|| {
            panic!(
                "nothing from BanyanBaseMulti; output:\n{}",
                pymulti.output()
            )
        });
        assert_eq!(m.topic, "multi");
        assert_eq!(m.value().unwrap(), *want);
        assert_eq!(m.payload, encode_value(want));
    }
    drop(pymulti);
    let _ = std::fs::remove_dir_all(dir);
}
