//! The `banyan` command end to end, on free ports: `backplane`, `sub`
//! (`monitor`), `pub`, `topics`, `rpi-gateway --check-config`, connection
//! feedback, completions, man pages and `--version`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banyan::backplane::{self, Backplane, Running};
use banyan::component::{self, Component};
use common::{cargo_bin, free_port, Proc};

const T: Duration = Duration::from_secs(20);

fn banyan(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_bin("banyan-cli", "banyan"));
    cmd.args(args);
    cmd
}

/// `-p P -s S` for a running backplane.
fn ports(bp: &Running) -> [String; 4] {
    [
        "-p".into(),
        bp.publisher_port().to_string(),
        "-s".into(),
        bp.subscriber_port().to_string(),
    ]
}

fn backplane() -> Running {
    Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .unwrap()
        .spawn()
        .unwrap()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Starts `banyan sub --json ARGS` and waits until its subscription to
/// `topic` reached the backplane.
fn sub(bp: &Running, topic: &str, extra: &[&str]) -> Proc {
    let mut cmd = banyan(&["sub", "--json", "--summary", "0"]);
    cmd.args(ports(bp)).args(extra).arg(topic);
    let p = Proc::spawn("sub", cmd);
    let mut probe = Component::connect(component::Config::new(
        "127.0.0.1",
        bp.publisher_port(),
        bp.subscriber_port(),
    ))
    .unwrap();
    assert!(
        probe.wait_for_subscriber(topic, T).unwrap(),
        "sub never subscribed:\n{}",
        p.output()
    );
    p
}

/// Runs `cmd` with `input` on its stdin (then closed) and stdout
/// discarded; returns its exit status and stderr.
fn with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn pub_to_sub_json_round_trip_is_exact_and_stdout_has_only_data() {
    let bp = backplane();
    let mut s = sub(&bp, "robot/", &["--count", "1"]);
    let payload = r#"{"left":0.5,"right":-0.25,"n":-3,"big":18446744073709551615,"name":"élan","list":[1,null,true,{"x":[]}]}"#;
    let out = banyan(&["pub", "robot/motors", payload])
        .args(ports(&bp))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "pub printed on stdout: {out:?}");
    let line = s.wait_line(T, |_| true);
    let v = json(&line);
    assert_eq!(v["topic"], "robot/motors");
    assert_eq!(v["payload"], json(payload));
    // Exactly the same text, key order included.
    assert!(
        line.ends_with(&format!(r#""payload":{payload}}}"#)),
        "{line}"
    );
    assert!(s.wait_exit(T).success(), "{}", s.output());
    // The banner and the per-topic summary went to stderr.
    let stdout: Vec<String> = s
        .output()
        .lines()
        .filter(|l| !l.starts_with("[stderr] "))
        .map(str::to_owned)
        .collect();
    assert_eq!(stdout, std::slice::from_ref(&line), "{}", s.output());
    assert!(s.output().contains("robot/motors"), "{}", s.output());
}

#[test]
fn pub_count_rate_and_stdin_lines() {
    let bp = backplane();
    let mut s = sub(&bp, "c", &["--count", "8"]);
    let t0 = Instant::now();
    let out = banyan(&["pub", "c", r#"{"i":1}"#, "--count", "5", "--rate", "50"])
        .args(ports(&bp))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // 5 messages at 50 Hz take at least 4 periods.
    assert!(t0.elapsed() >= Duration::from_millis(80));
    let out = with_stdin(
        banyan(&["pub", "c"]).args(ports(&bp)),
        b"{\"line\":1}\n\n[2]\n\"three\"\n",
    );
    assert!(out.status.success(), "{out:?}");
    let mut payloads = Vec::new();
    for _ in 0..8 {
        payloads.push(json(&s.wait_line(T, |_| true))["payload"].clone());
    }
    assert_eq!(payloads[..5], vec![json(r#"{"i":1}"#); 5][..]);
    assert_eq!(
        payloads[5..],
        [json(r#"{"line":1}"#), json("[2]"), json(r#""three""#)]
    );
    assert!(s.wait_exit(T).success());

    // A bad stdin line is reported with its number and the exit code is 1.
    let out = with_stdin(
        banyan(&["pub", "c", "--wait", "0"]).args(ports(&bp)),
        b"{\"ok\":1}\n{oops\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin line 2: not JSON"), "{err}");
    assert!(!err.contains("Error: \""), "{err}");
}

#[test]
fn topics_figures_match_a_known_publisher_rate() {
    let bp = backplane();
    let cfg = component::Config::new("127.0.0.1", bp.publisher_port(), bp.subscriber_port());
    // One subscriber to the topic (besides `topics` itself).
    let mut listener = Component::connect(cfg.clone()).unwrap();
    listener.subscribe("rate").unwrap();
    let mut silent = Component::connect(cfg.clone()).unwrap();
    silent.subscribe("quiet_topic").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    const HZ: f64 = 50.0;
    let payload = rmpv::Value::Map(vec![("speed".into(), 0.5.into())]);
    let size = banyan::component::wire::encode_value(&payload).len() as f64;
    let publisher = {
        let stop = stop.clone();
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let mut p = Component::connect(cfg).unwrap();
            assert!(p.wait_for_subscriber("rate", T).unwrap());
            let start = Instant::now();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                p.publish_value("rate", &payload).unwrap();
                n += 1;
                let next = start + Duration::from_secs_f64(f64::from(n) / HZ);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let out = banyan(&["topics", "--json", "--duration", "3"])
        .args(ports(&bp))
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = text.lines().map(json).collect();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r["topic"] == t)
            .unwrap_or_else(|| panic!("no {t} in {text}"))
    };
    let rate = row("rate");
    let msgs = rate["msgs_per_s"].as_f64().unwrap();
    assert!(
        (msgs - HZ).abs() <= 0.2 * HZ,
        "{msgs} msgs/s, expected {HZ}: {text}"
    );
    let bytes = rate["bytes_per_s"].as_f64().unwrap();
    assert!(
        (bytes - HZ * size).abs() <= 0.2 * HZ * size,
        "{bytes} B/s, expected {}: {text}",
        HZ * size
    );
    assert!(rate["last_seen_s"].as_f64().unwrap() < 1.0, "{text}");
    assert_eq!(rate["subscribers"], 1, "{text}");
    let quiet = row("quiet_topic");
    assert_eq!(quiet["subscribers"], 1, "{text}");
    assert_eq!(quiet["msgs_per_s"], 0.0, "{text}");
    assert!(quiet["last_seen_s"].is_null(), "{text}");

    // The human table has the same columns.
    let out = banyan(&["topics", "--duration", "0.5"])
        .args(ports(&bp))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("TOPIC")
            && table.contains("SUBSCRIBERS")
            && table.contains("quiet_topic"),
        "{table}"
    );
}

#[test]
fn backplane_subcommand_and_monitor_alias() {
    let mut cmd = banyan(&[
        "backplane",
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
        "-s",
        "0",
        "-n",
        "cli",
    ]);
    cmd.env_remove("BANYAN_BACKPLANE");
    let mut bp = Proc::spawn("backplane", cmd);
    let port = |l: String| -> u16 { l.rsplit(' ').next().unwrap().trim().parse().unwrap() };
    let sp = port(bp.wait_line(T, |l| l.starts_with("Subscriber Port = ")));
    let pp = port(bp.wait_line(T, |l| l.starts_with("Publisher  Port = ")));
    // `monitor` is `sub`; BANYAN_BACKPLANE names the host.
    let mut cmd = banyan(&["monitor", "--count", "1", "--summary", "0", "-p"]);
    cmd.arg(pp.to_string())
        .arg("-s")
        .arg(sp.to_string())
        .env("BANYAN_BACKPLANE", "127.0.0.1");
    let mut mon = Proc::spawn("monitor", cmd);
    let mut probe = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
    assert!(probe.wait_for_subscriber("x", T).unwrap());
    probe.publish("x", &[1]).unwrap();
    let line = mon.wait_line(T, |l| l.contains(" x "));
    assert!(line.ends_with(" x [1]"), "{line}");
    assert!(mon.wait_exit(T).success());
    bp.signal("TERM");
    assert!(bp.wait_exit(T).success(), "{}", bp.output());
    assert!(
        bp.output().contains("backplane exiting: 1 forwarded"),
        "{}",
        bp.output()
    );
}

#[test]
fn connection_feedback_says_what_is_missing_then_connected() {
    let (pp, sp) = (free_port(), free_port());
    let mut cmd = banyan(&["sub", "--summary", "0", "-p"]);
    cmd.arg(pp.to_string()).arg("-s").arg(sp.to_string());
    let t0 = Instant::now();
    let mut s = Proc::spawn("sub", cmd);
    s.wait_output(T, |o| o.contains("Likely causes"));
    assert!(t0.elapsed() >= Duration::from_millis(1900));
    let out = s.output();
    for needle in [
        "[stderr] banyan sub: warning: monitor: waiting 2 s for the backplane at 127.0.0.1",
        &format!("publishing to port {pp}, subscribing on port {sp}"),
        "banyan backplane",
        "-p and -s swapped",
        "LAN IP",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", pp, sp))
        .unwrap()
        .spawn()
        .unwrap();
    s.wait_output(T, |o| o.contains("connected to the backplane at 127.0.0.1"));
    drop(bp);
    s.wait_output(T, |o| o.contains("lost the backplane"));
    s.signal("INT");
    assert!(s.wait_exit(T).success(), "{}", s.output());
}

#[test]
fn version_completions_man_and_errors_are_for_people() {
    let out = banyan(&["--version"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("banyan {}", env!("CARGO_PKG_VERSION"))
    );
    for sub in [
        "backplane",
        "sub",
        "pub",
        "topics",
        "rpi-gateway",
        "serial-gateway",
        "launch",
    ] {
        let out = banyan(&[sub, "--version"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&format!("banyan-{sub} ")), "{sub}: {text}");
    }
    let out = banyan(&["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rpi-gateway"));
    let out = banyan(&["man"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH banyan 1"));
    let dir = std::env::temp_dir().join(format!("banyan-man-{}", std::process::id()));
    let out = banyan(&["man", "--dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.join("banyan-pub.1").exists() && dir.join("banyan.1").exists());
    let _ = std::fs::remove_dir_all(&dir);

    // A bad payload: one readable line, exit code 2, no Rust quoting.
    let out = banyan(&["pub", "t", "{nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("banyan pub: error: the payload is not JSON"),
        "{err}"
    );
}

#[test]
fn rpi_gateway_config_dump_errors_and_empty_config() {
    let root = common::workspace_root();
    let out = banyan(&["rpi-gateway", "--check-config", "--config"])
        .arg(root.join("deploy/rpi-gateway.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("[backplane]\naddress = \"127.0.0.1\""),
        "{text}"
    );
    assert!(!text.contains("Config {"), "{text}");
    toml::from_str::<toml::Table>(&text).expect("the dump is TOML");

    let dir = std::env::temp_dir();
    let bad = dir.join(format!("banyan-cli-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "[motors.left]\npwm = 18\nin1 = 5\nin2 = 18\n").unwrap();
    let out = banyan(&["rpi-gateway", "--sim", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("motors.left.in2"), "{err}");
    std::fs::write(&bad, "").unwrap();
    let out = banyan(&["rpi-gateway", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("no [motors.*]"),
        "{err}"
    );
    let _ = std::fs::remove_file(&bad);
}

const PY_ECHO: &str = r#"
import sys
from python_banyan.banyan_base import BanyanBase

class Echo(BanyanBase):
    def __init__(self, pp, sp):
        super().__init__(back_plane_ip_address='127.0.0.1', publisher_port=pp,
                         subscriber_port=sp, process_name='py-echo', loop_time=0.005)
        self.set_subscriber_topic('ping')
        self.receive_loop()

    def incoming_message_processing(self, topic, payload):
        self.publish_payload(payload, 'pong')

Echo(sys.argv[1], sys.argv[2])
"#;

/// Next message on `topic` (others skipped).
fn next_on(c: &mut Component, topic: &str) -> rmpv::Value {
    let until = Instant::now() + T;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let m = c
            .recv_timeout(left)
            .unwrap()
            .unwrap_or_else(|| panic!("nothing on {topic} in time"));
        if m.topic == topic {
            return m.value().unwrap();
        }
    }
}

#[test]
fn launch_starts_restarts_and_stops_a_robot_with_python_and_rust_components() {
    let (pp, sp) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("banyan-launch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("echo.py");
    std::fs::write(&script, PY_ECHO).unwrap();
    let robot = dir.join("robot.toml");
    let python = common::python();
    std::fs::write(
        &robot,
        format!(
            r#"
[backplane]
publisher_port = {pp}
subscriber_port = {sp}
args = ["--bind", "127.0.0.1", "--no-services"]

[[process]]
name = "motors"
command = ["banyan", "rpi-gateway", "--sim"]
motor = true
backplane_args = true
ready_topic = "run_motors"

[[process]]
name = "py"
command = [{python:?}, {script:?}, "{pp}", "{sp}"]
restart = "always"
restart_delay_ms = 200
max_restarts = 2
ready_topic = "ping"

[[process]]
name = "mon"
command = ["banyan", "sub", "--json", "--summary", "0", "pong"]
backplane_args = true
ready_topic = "pong"
"#
        ),
    )
    .unwrap();
    let mut cmd = banyan(&["launch"]);
    cmd.arg(&robot);
    let mut launcher = Proc::spawn("launch", cmd);
    launcher.wait_line(T, |l| l == "[launch] all started");
    let cfg = component::Config::new("127.0.0.1", pp, sp);
    let mut probe = Component::connect(cfg).unwrap();
    probe.subscribe("pong").unwrap();
    probe.subscribe("banyan_launch").unwrap();
    assert!(probe.wait_for_subscriber("ping", T).unwrap());
    probe
        .publish(
            "ping",
            &[("n", 1)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
    assert_eq!(next_on(&mut probe, "pong")["n"], 1.into());
    // The Rust component's output, prefixed with its name.
    launcher.wait_line(T, |l| l.starts_with("[mon] {") && l.contains("\"pong\""));

    // Kill the Python component: an event, a restart, and it works again.
    let py_line = launcher.output();
    let pid: i32 = py_line
        .lines()
        .find_map(|l| {
            l.strip_prefix("[launch] py")?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .expect("py pid line");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exited = next_on(&mut probe, "banyan_launch");
    assert_eq!(exited["event"], "exited".into(), "{exited}");
    assert_eq!(exited["process"], "py".into());
    let restarted = next_on(&mut probe, "banyan_launch");
    assert_eq!(restarted["event"], "restarted".into(), "{restarted}");
    assert_eq!(restarted["restarts"], 1.into());
    assert!(wait_until_pong(&mut probe), "restarted py does not answer");

    // Stop: motors first, the backplane last; every child gone.
    launcher.signal("TERM");
    assert!(launcher.wait_exit(T).success(), "{}", launcher.output());
    let out = launcher.output();
    let at = |name: &str| {
        out.lines()
            .position(|l| {
                l.strip_prefix("[launch] ")
                    .is_some_and(|r| r.split_whitespace().next() == Some(name))
                    && l.contains(" stopped (")
            })
            .unwrap_or_else(|| panic!("{name} not stopped:\n{out}"))
    };
    let (motors, py, mon, bp) = (at("motors"), at("py"), at("mon"), at("backplane"));
    assert!(motors < mon && mon < py && py < bp, "stop order:\n{out}");
    assert!(
        out.contains("sim: GPIO18 duty 0.000") || out.contains("stopped; outputs in safe state"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_until_pong(probe: &mut Component) -> bool {
    let until = Instant::now() + T;
    while Instant::now() < until {
        let _ = probe.publish(
            "ping",
            &[("n", 2)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        if let Ok(Some(m)) = probe.recv_timeout(Duration::from_millis(200)) {
            if m.topic == "pong" {
                return true;
            }
        }
    }
    false
}

#[test]
fn launch_reads_bls_csv_and_writes_systemd_units() {
    let dir = std::env::temp_dir().join(format!("banyan-launch-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("robot.csv");
    std::fs::write(
        &csv,
        "command_string,spawn,topic,append_bp_address,auto_restart,wait\n\
         banyan sub,no,local,yes,yes,0\n\
         python3 remote.py,no,pi2,no,no,0\n",
    )
    .unwrap();
    let units = dir.join("units");
    let out = banyan(&["launch", "--systemd"])
        .arg(&units)
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remote launcher"), "{err}");
    let sub = std::fs::read_to_string(units.join("banyan-robot-banyan.service")).unwrap();
    assert!(sub.contains(" sub -b 127.0.0.1\n"), "{sub}");
    assert!(sub.contains("Restart=always"), "{sub}");
    assert!(units.join("banyan-robot.target").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `banyan backplane` runs the service broker beside the forwarder; `banyan
/// services` lists a Rust worker's service and `banyan call` gets its reply
/// as JSON; an unknown service is an immediate, clear error (exit 1).
#[test]
fn call_and_services_through_the_backplane_broker() {
    let sport = free_port();
    let mut cmd = banyan(&["backplane", "--bind", "127.0.0.1", "-p", "0", "-s", "0"]);
    cmd.arg("--services-port").arg(sport.to_string());
    let mut bp = Proc::spawn("backplane", cmd);
    bp.wait_line(T, |l| l.starts_with("Publisher  Port = "));
    bp.wait_output(T, |o| {
        o.contains(&format!("service broker on port {sport}"))
    });
    let endpoint = format!("tcp://127.0.0.1:{sport}");
    let worker = banyan_services::worker::serve(
        banyan_services::worker::Config::new(endpoint),
        "echo",
        |req| {
            rmpv::decode::read_value(&mut &req.body[..])
                .map_err(|e| banyan_services::worker::Failure::new(e.to_string()))
        },
    )
    .unwrap();
    let port = sport.to_string();
    let services = || {
        let out = banyan(&["services", "--json", "--services-port", &port])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Ready when the worker has registered.
    assert!(
        common::wait_until(T, || services().contains("\"service\":\"echo\"")),
        "{}",
        services()
    );
    let listed = json(services().lines().find(|l| l.contains("echo")).unwrap());
    assert_eq!(listed["workers"], 1, "{listed}");
    let out = banyan(&[
        "call",
        "--services-port",
        &port,
        "echo",
        r#"{"x": 1, "s": "é"}"#,
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(String::from_utf8_lossy(&out.stdout).trim()),
        serde_json::json!({"x": 1, "s": "é"})
    );
    let started = Instant::now();
    let out = banyan(&["call", "--services-port", &port, "nosuch", "{}"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nosuch") && err.contains("unknown"), "{err}");
    // At once, not after the 2.5 s deadline.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(worker);
    bp.signal("TERM");
    assert!(bp.wait_exit(T).success(), "{}", bp.output());
}
