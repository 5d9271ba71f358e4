//! End to end on loopback: our backplane (in this process, free ports) +
//! the real `rpi-gateway --sim` binary + a python-banyan component (from the
//! workspace's `.venv`) sending `run_motors`, `light_leds` and OneGPIO
//! commands and checking the reports; plus the safety paths (deadman,
//! backplane loss, SIGTERM) observed through the gateway's pin log; plus the
//! run loop in-process on a sim board, for input edges.

mod common;
mod rpi_support;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane, Running};
use banyan_component::{self as component, Component};
use banyan_rpi::backend::sim::{SimBackend, SimBoard};
use banyan_rpi::config::Config;
use banyan_rpi::gateway::{get, Gateway};
use banyan_rpi::run;
use common::{cargo_bin, python, wait_until, Proc};
use rpi_support::in_process;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn gateway_bin() -> PathBuf {
    cargo_bin("banyan-cli", "banyan")
}

/// `banyan rpi-gateway`, without its services (they would register with
/// a broker on the default port 43126, which tests never use).
fn gateway_cmd() -> Command {
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["rpi-gateway", "--no-services"]);
    cmd
}

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("banyan-rpi-e2e-{}-{n}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

struct Rig {
    _backplane: Option<Running>,
    pp: u16,
    sp: u16,
    gateway: Proc,
    _config: Option<TempFile>,
}

/// Starts a backplane and `rpi-gateway --sim -v` (pin log on its stderr),
/// and waits until the gateway's three subscriptions reached the backplane.
fn rig(config: Option<&str>) -> Rig {
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let running = bp.spawn().unwrap();
    let cfg_file = config.map(|text| {
        let f = TempFile::new("rpi.toml");
        fs::write(&f.0, text).unwrap();
        f
    });
    let mut cmd = gateway_cmd();
    cmd.args(["--sim", "-v", "-b", "127.0.0.1", "-p"])
        .arg(pp.to_string())
        .arg("-s")
        .arg(sp.to_string());
    if let Some(f) = &cfg_file {
        cmd.arg("--config").arg(&f.0);
    }
    let gateway = Proc::spawn("rpi-gateway", cmd);
    let mut probe = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
    for t in ["run_motors", "light_leds", "to_rpi_gateway"] {
        assert!(
            probe
                .wait_for_subscriber(t, Duration::from_secs(20))
                .unwrap(),
            "rpi-gateway never subscribed to {t}; its log:\n{}",
            gateway.output()
        );
    }
    Rig {
        _backplane: Some(running),
        pp,
        sp,
        gateway,
        _config: cfg_file,
    }
}

/// The python-banyan driver: every check is an `assert` in Python; it prints
/// `OK <n>` at the end.
const DRIVER: &str = r#"
import sys, time, zmq, msgpack
from python_banyan.banyan_base import BanyanBase

pp, sp = sys.argv[1], sys.argv[2]
bb = BanyanBase(back_plane_ip_address='127.0.0.1', publisher_port=pp,
                subscriber_port=sp, process_name='rpi-e2e', connect_time=0.3)
bb.set_subscriber_topic('from_rpi_gateway')
poller = zmq.Poller()
poller.register(bb.subscriber, zmq.POLLIN)

def reports(seconds):
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            return
        if poller.poll(int(left * 1000) + 1):
            topic, payload = bb.subscriber.recv_multipart()
            assert topic == b'from_rpi_gateway', topic
            yield msgpack.unpackb(payload, raw=False)

def wait_for(pred, send=None, seconds=5.0, what=''):
    """Re-sends `send` every 200 ms until a report satisfies `pred`."""
    end = time.time() + seconds
    while time.time() < end:
        if send:
            bb.publish_payload(send[1], send[0])
        for r in reports(0.2):
            if pred(r):
                return r
    raise AssertionError('timed out waiting for ' + what)

is_state = lambda r: r.get('report') == 'state'
is_status = lambda r: r.get('report') == 'status'

# run_motors: the state report shows the speeds.
st = wait_for(lambda r: is_state(r) and r['motors'] == {'left': 0.5, 'right': -0.5},
              ('run_motors', {'left': 0.5, 'right': -0.5}), what='motors')
# The gateway's own status (backend, pins, counters) is its status report.
st = wait_for(is_status, what='status')
assert st['backend'] == 'sim', st
# light_leds
st = wait_for(lambda r: is_state(r) and r['leds'] == {'status': 1.0, 'headlight': 0.5},
              ('light_leds', {'status': True, 'headlight': 0.5}), what='leds')
bb.publish_payload({'left': 0, 'right': 0}, 'run_motors')
# blinker-style OneGPIO: set_mode_digital_output + tagged digital_write
bb.publish_payload({'command': 'set_mode_digital_output', 'pin': 4, 'tag': 'led'},
                   'to_rpi_gateway')
for v in (1, 0, 1):
    wait_for(lambda r: is_status(r) and r['gpio'].get('4', {}).get('value') == v,
             ('to_rpi_gateway', {'command': 'digital_write', 'tag': 'led', 'value': v}),
             what='digital_write %d' % v)
# i2c through the simulated EEPROM at 0x50
bb.publish_payload({'command': 'i2c_write', 'addr': 0x50, 'data': [8, 42, 43]},
                   'to_rpi_gateway')
r = wait_for(lambda r: r.get('report') == 'i2c_data',
             ('to_rpi_gateway', {'command': 'i2c_read', 'addr': 0x50, 'register': 8,
                                 'number_of_bytes': 2}), what='i2c_data')
assert r['value'] == [42, 43], r

# Hostile input: one error report each, nothing else changes.
for _ in reports(0.3):
    pass
hostile = [
    ('run_motors', {'left': 1.5}),
    ('run_motors', {'left': 'fast'}),
    ('run_motors', {'turbo': 1.0}),
    ('run_motors', [1, 2, 3]),
    ('light_leds', {'disco': True}),
    ('light_leds', {'headlight': -0.1}),
    ('to_rpi_gateway', {'command': 'self_destruct'}),
    ('to_rpi_gateway', {'pin': 4}),
    ('to_rpi_gateway', {'command': 'digital_write', 'pin': 4}),
    ('to_rpi_gateway', {'command': 'digital_write', 'pin': 4, 'value': 'on'}),
    ('to_rpi_gateway', {'command': 'digital_write', 'tag': 'nobody', 'value': 1}),
    ('to_rpi_gateway', {'command': 'set_mode_digital_output', 'pin': 99}),
    ('to_rpi_gateway', {'command': 'set_mode_pwm', 'pin': 18}),
    ('to_rpi_gateway', {'command': 'digital_write', 'pin': 17, 'value': 1}),
    ('to_rpi_gateway', {'command': 'set_mode_analog_input', 'pin': 3}),
]
for topic, payload in hostile:
    bb.publish_payload(payload, topic)
errors, others = [], []
for r in reports(1.0):
    (errors if r.get('report') == 'error' else others).append(r)
assert len(errors) == len(hostile), (len(errors), errors)
assert all(e['reason'] for e in errors), errors
# Only periodic state and status reports may appear, showing the unchanged
# robot and pins.
for r in others:
    assert is_state(r) or is_status(r), r
    if is_state(r):
        assert r['motors'] == {'left': 0.0, 'right': 0.0}, r
        assert r['leds'] == {'status': 1.0, 'headlight': 0.5}, r
    else:
        assert r['gpio']['4']['value'] == 1, r

# Deadman: motors stop within the timeout (+ margin) after the last command.
wait_for(lambda r: is_state(r) and abs(r['motors']['left'] - 0.8) < 1e-6,
         ('run_motors', {'left': 0.8}), what='left 0.8')
t0 = time.time()
r = wait_for(lambda r: is_state(r) and r['motors']['left'] == 0.0, seconds=3.0,
             what='deadman stop')
dt = time.time() - t0
assert r['stopped_by'] == 'deadman', r
assert 0.35 <= dt <= 1.5, dt
print('OK', len(hostile), 'deadman %.3f' % dt)
bb.publisher.close(linger=0); bb.subscriber.close(linger=0); bb.my_context.term()
"#;

#[test]
fn python_banyan_component_drives_the_sim_robot() {
    let mut rig = rig(None);
    let out = Command::new(python())
        .arg("-c")
        .arg(DRIVER)
        .arg(rig.pp.to_string())
        .arg(rig.sp.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK 15"),
        "python driver failed: {}\nstdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        rig.gateway.output()
    );
    // The commands reached the simulated pins.
    rig.terminate();
    let log = rig.gateway.output();
    for line in [
        "sim: GPIO18 duty 0.500", // left motor 0.5
        "sim: GPIO21 level 1",    // right motor reverse: in2 high
        "sim: GPIO19 duty 0.500", // right motor |-0.5|
        "sim: GPIO17 level 1",    // status LED
        "sim: GPIO16 duty 0.500", // headlight 0.5
        "sim: GPIO4 mode output", // blinker
        "sim: GPIO4 level 1",
        "sim: I2C 0x50 write @8 [42, 43]",
    ] {
        assert!(log.contains(line), "pin log lacks {line:?}:\n{log}");
    }
    // Safe state on exit: the last change of every output is off.
    assert_safe_at_exit(&log);
}

impl Rig {
    /// SIGTERM; the gateway must exit successfully within 5 s.
    fn terminate(&mut self) {
        self.gateway.signal("TERM");
        let st = self.gateway.wait_exit(Duration::from_secs(5));
        assert!(
            st.success(),
            "rpi-gateway exited with {st}:\n{}",
            self.gateway.output()
        );
        // Its stderr is read by a thread: wait until the last line is in.
        assert!(
            wait_until(Duration::from_secs(5), || self
                .gateway
                .output()
                .contains("stopped; outputs in safe state")),
            "{}",
            self.gateway.output()
        );
    }
}

/// After "stopped; outputs in safe state", every pin's last logged value is
/// off (duty 0 / level 0).
fn assert_safe_at_exit(log: &str) {
    assert!(log.contains("stopped; outputs in safe state"), "{log}");
    let mut last = std::collections::BTreeMap::new();
    for l in log.lines() {
        if let Some((_, rest)) = l.split_once("sim: GPIO") {
            let (pin, what) = rest.split_once(' ').unwrap();
            if what.starts_with("duty") || what.starts_with("level") {
                last.insert(pin.to_owned(), what.to_owned());
            }
        }
    }
    for (pin, what) in &last {
        assert!(
            what == "duty 0.000" || what == "level 0",
            "GPIO{pin} left at {what}:\n{log}"
        );
    }
    assert!(
        last.contains_key("18") && last.contains_key("4"),
        "{last:?}"
    );
}

fn publish(c: &mut Component, topic: &str, entries: &[(&str, f64)]) {
    let v = rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    );
    c.publish_value(topic, &v).unwrap();
}

fn wait_log(rig: &Rig, needle: &str, within: Duration) -> bool {
    wait_until(within, || rig.gateway.output().contains(needle))
}

#[test]
fn losing_the_backplane_stops_the_motors() {
    // A deadman far longer than the test: only the lost backplane can stop them.
    let mut rig = rig(Some(
        "[safety]\ndeadman_timeout_ms = 60000\n[motors.left]\npwm = 18\nin1 = 5\nin2 = 6\n",
    ));
    let mut c = Component::connect(component::Config::new("127.0.0.1", rig.pp, rig.sp)).unwrap();
    assert!(c
        .wait_for_subscriber("run_motors", Duration::from_secs(10))
        .unwrap());
    publish(&mut c, "run_motors", &[("left", 0.7)]);
    assert!(
        wait_log(&rig, "sim: GPIO18 duty 0.700", Duration::from_secs(5)),
        "{}",
        rig.gateway.output()
    );
    drop(c);
    rig._backplane = None; // stops the backplane, closing its sockets
    assert!(
        wait_log(
            &rig,
            "backplane lost: motors stopped",
            Duration::from_secs(5)
        ),
        "{}",
        rig.gateway.output()
    );
    // The stop is logged (stderr) before the "backplane lost" line.
    let log = rig.gateway.output();
    let lost = log.find("backplane lost").unwrap();
    let stop = log
        .rfind("sim: GPIO18 duty 0.000")
        .expect("motor not stopped");
    assert!(stop < lost, "motor stopped only after:\n{log}");
    assert!(!log[stop..].contains("duty 0.700"), "{log}");
    rig.terminate();
}

#[test]
fn bad_config_is_a_clear_error() {
    let bad = TempFile::new("bad.toml");
    fs::write(&bad.0, "[motors.left]\npwm = 18\nin1 = 5\nin2 = 18\n").unwrap();
    let out = gateway_cmd()
        .args(["--sim", "--config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("motors.left.in2") && err.contains("already used by motors.left.pwm"),
        "{err}"
    );
    let out = gateway_cmd()
        .args(["--check-config", "--config"])
        .arg(common::workspace_root().join("deploy/rpi-gateway.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn u(v: &rmpv::Value, key: &str) -> Option<u64> {
    get(v, key).and_then(rmpv::Value::as_u64)
}

#[test]
fn run_loop_reports_input_edges_from_the_sim_board() {
    let mut rig = in_process(SimBackend::new, &[], "to_rpi_gateway");
    rig.command("set_mode_digital_input", 23);
    assert_eq!(rig.input(23, Duration::from_secs(10)), Some(0));
    assert!(rig.board.is_watched(23));
    // A pulse, then a level: every edge is reported, in order.
    rig.board.set_input(23, true);
    rig.board.set_input(23, false);
    rig.board.set_input(23, true);
    for want in [1, 0, 1] {
        assert_eq!(rig.input(23, Duration::from_secs(10)), Some(want));
    }
    // The reports came from edges (counted), none was dropped.
    rig.command("set_mode_digital_output", 24);
    let state = rig.report("status", Duration::from_secs(10)).unwrap();
    assert_eq!(u(&state, "input_edges"), Some(3), "{state}");
    assert_eq!(u(&state, "stale_edges"), Some(0), "{state}");
    assert_eq!(u(&state, "edge_overflows"), Some(0), "{state}");
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Benchmark, not a check: time from driving a sim input to the probe
/// receiving its `digital_input` report through the backplane, watched vs
/// polled. `cargo test --release --test rpi_gateway -- --ignored --nocapture
/// input_edge_latency`; figures in docs/benchmarks/rpi-gateway.md.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn input_edge_latency() {
    let n = 1000;
    for (name, make) in [
        (
            "watched (edges)",
            SimBackend::new as fn(SimBoard) -> SimBackend,
        ),
        ("polled (10 ms)", SimBackend::polling),
    ] {
        let mut rig = in_process(make, &[], "to_rpi_gateway");
        rig.command("set_mode_digital_input", 23);
        assert_eq!(rig.input(23, Duration::from_secs(10)), Some(0));
        let mut lat = Vec::with_capacity(n);
        for i in 0..n + 50 {
            let level = i % 2 == 0;
            let t0 = Instant::now();
            rig.board.set_input(23, level);
            let got = rig.input(23, Duration::from_secs(5));
            let dt = t0.elapsed();
            assert_eq!(got, Some(u64::from(level)));
            if i >= 50 {
                lat.push(dt);
            }
        }
        lat.sort();
        println!(
            "{name}: input-to-report latency, n={n}: median {:.0} us, p99 {:.0} us, max {:.0} us",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
    }
}

/// Safety under load: a flood of valid messages on the gateway's topics
/// (an empty `light_leds`, which changes nothing) must not hold off the
/// deadman. The run loop handles a bounded batch of messages between ticks.
#[test]
fn a_message_flood_does_not_hold_off_the_deadman() {
    let mut rig = in_process(SimBackend::new, &[], "to_rpi_gateway");
    let run = rmpv::Value::Map(vec![("left".into(), 0.5.into())]);
    rig.probe.publish_value("run_motors", &run).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || rig.board.pin(18).duty == 0.5),
        "the motor did not start"
    );
    let started = Instant::now();
    let empty = rmpv::Value::Map(Vec::new());
    let mut sent = 0u64;
    // Flood (never waiting for the gateway) until the deadman (500 ms)
    // stops the motor, for 5 s at most.
    while rig.board.pin(18).duty != 0.0 && started.elapsed() < Duration::from_secs(5) {
        for _ in 0..100 {
            // A full send queue only means the flood outpaces the backplane.
            if rig.probe.publish_value("light_leds", &empty).is_ok() {
                sent += 1;
            }
        }
    }
    let stopped_after = started.elapsed();
    assert_eq!(
        rig.board.pin(18).duty,
        0.0,
        "motor still running after {stopped_after:?} of flood ({sent} messages)"
    );
    assert!(
        stopped_after >= Duration::from_millis(400),
        "{stopped_after:?}"
    );
}

// ---------------------------------------------------------------------------
// Services: state, status and i2c_read through a real services broker.

/// The run loop in-process on a sim board with its services on a broker;
/// stops and joins on drop.
struct Served {
    board: SimBoard,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    broker: banyan_services::broker::Handle,
    _backplane: Running,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn served() -> Served {
    use banyan_services::broker::{spawn, SocketConfig};
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let running = bp.spawn().unwrap();
    let broker = spawn(SocketConfig::new("127.0.0.1", 0)).expect("broker");
    let endpoint = format!("tcp://127.0.0.1:{}", broker.port());
    let stop = Arc::new(AtomicBool::new(false));
    let board = SimBoard::new();
    let thread = {
        let (stop, board) = (Arc::clone(&stop), board.clone());
        std::thread::spawn(move || {
            let mut gw =
                Gateway::new(SimBackend::new(board), Config::default(), Instant::now()).unwrap();
            let mut comp = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
            let mut relay =
                banyan_services::relay::Relay::new(banyan_services::worker::Config::new(endpoint))
                    .unwrap();
            run::register_services(&mut relay, "rpi-gateway.").unwrap();
            run::run_with_services(&mut gw, &mut comp, &stop, Some(&mut relay)).unwrap();
        })
    };
    let s = Served {
        board,
        stop,
        thread: Some(thread),
        broker,
        _backplane: running,
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let l = s.broker.services();
            banyan_rpi::gateway::SERVICES.iter().all(|n| {
                l.iter()
                    .any(|i| i.service == format!("rpi-gateway.{n}") && i.workers == 1)
            })
        }),
        "services not registered: {:?}",
        s.broker.services()
    );
    s
}

#[test]
fn state_status_i2c_read_and_digital_read_are_services() {
    use banyan_services::client::{Client, Config as ClientConfig, Options};
    use banyan_services::proto::ErrorCode;
    let s = served();
    let mut c = Client::connect(ClientConfig::new(format!(
        "tcp://127.0.0.1:{}",
        s.broker.port()
    )))
    .unwrap();
    let opts = || Options::new(Duration::from_secs(3));
    let call = |c: &mut Client, service: &str, body: rmpv::Value| {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &body).unwrap();
        c.request_raw(service, b, opts())
            .map(|r| r.value().expect("reply is msgpack"))
    };
    let empty = rmpv::Value::Map(vec![]);

    let state = call(&mut c, "rpi-gateway.state", empty.clone()).expect("state");
    assert_eq!(
        get(&state, "report").and_then(|v| v.as_str()),
        Some("state")
    );
    assert!(get(&state, "motors").is_some(), "{state}");
    let status = call(&mut c, "rpi-gateway.status", empty.clone()).expect("status");
    assert_eq!(
        get(&status, "report").and_then(|v| v.as_str()),
        Some("status")
    );
    assert_eq!(
        get(&status, "backend").and_then(|v| v.as_str()),
        Some("sim")
    );

    // The simulated EEPROM at 0x50: write through the command topic, read
    // through the service.
    let mut probe = Component::connect(component::Config::new(
        "127.0.0.1",
        s._backplane.publisher_port(),
        s._backplane.subscriber_port(),
    ))
    .unwrap();
    assert!(probe
        .wait_for_subscriber("to_rpi_gateway", Duration::from_secs(20))
        .unwrap());
    let write = rmpv::Value::Map(vec![
        ("command".into(), "i2c_write".into()),
        ("addr".into(), 0x50.into()),
        (
            "data".into(),
            rmpv::Value::Array(vec![8.into(), 42.into(), 43.into()]),
        ),
    ]);
    probe.publish_value("to_rpi_gateway", &write).unwrap();
    let read = rmpv::Value::Map(vec![
        ("addr".into(), 0x50.into()),
        ("register".into(), 8.into()),
        ("number_of_bytes".into(), 2.into()),
    ]);
    let want = rmpv::Value::Array(vec![42.into(), 43.into()]);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = call(&mut c, "rpi-gateway.i2c_read", read.clone()).expect("i2c_read");
            let ok = get(&r, "report").and_then(|v| v.as_str()) == Some("i2c_data")
                && get(&r, "value") == Some(&want);
            last = Some(r);
            ok
        }),
        "i2c_read never returned the written bytes: {last:?}"
    );

    // digital_read: the level now, of a pin configured as an input.
    let input = rmpv::Value::Map(vec![
        ("command".into(), "set_mode_digital_input".into()),
        ("pin".into(), 23.into()),
        ("tag".into(), "button".into()),
    ]);
    probe.publish_value("to_rpi_gateway", &input).unwrap();
    for level in [true, false] {
        s.board.set_input(23, level);
        let want = rmpv::Value::from(u8::from(level));
        let mut last = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                let body = rmpv::Value::Map(vec![("tag".into(), "button".into())]);
                let Ok(r) = call(&mut c, "rpi-gateway.digital_read", body) else {
                    return false; // the set_mode command is on its way
                };
                let ok = get(&r, "report").and_then(|v| v.as_str()) == Some("digital_input")
                    && get(&r, "pin").and_then(|v| v.as_u64()) == Some(23)
                    && get(&r, "value") == Some(&want);
                last = Some(r);
                ok
            }),
            "digital_read never gave {want}: {last:?}"
        );
    }

    // Errors are explicit: a bad body, a failed read, an unknown service.
    let worker_error = |r: Result<rmpv::Value, banyan_services::Error>, what: &str| match r {
        Err(banyan_services::Error::Service { code, detail }) => {
            assert_eq!(code, ErrorCode::WorkerError, "{detail}");
            assert!(detail.contains(what), "{detail} (wanted {what:?})");
        }
        other => panic!("expected a worker_error, got {other:?}"),
    };
    let too_many = rmpv::Value::Map(vec![
        ("addr".into(), 0x50.into()),
        ("register".into(), 0.into()),
        ("number_of_bytes".into(), 99.into()),
    ]);
    worker_error(
        call(&mut c, "rpi-gateway.i2c_read", too_many),
        "number_of_bytes",
    );
    let nobody = rmpv::Value::Map(vec![
        ("addr".into(), 0x11.into()),
        ("register".into(), 0.into()),
        ("number_of_bytes".into(), 1.into()),
    ]);
    worker_error(call(&mut c, "rpi-gateway.i2c_read", nobody), "0x11");
    let wrong = rmpv::Value::Map(vec![("command".into(), "i2c_write".into())]);
    worker_error(call(&mut c, "rpi-gateway.i2c_read", wrong), "command");
    let not_input = rmpv::Value::Map(vec![("pin".into(), 26.into())]);
    worker_error(
        call(&mut c, "rpi-gateway.digital_read", not_input),
        "not configured",
    );
    match call(&mut c, "rpi-gateway.nope", empty) {
        Err(banyan_services::Error::Service { code, .. }) => {
            assert_eq!(code, ErrorCode::UnknownService)
        }
        other => panic!("{other:?}"),
    }
}
