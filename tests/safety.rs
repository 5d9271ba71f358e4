//! Safety of the gateway run loop (issue 10, "fresh commands only"):
//!
//! - a burst of `run_motors` at 200 k msg/s does not keep the motors
//!   running: they stop within the deadman (+ 50 ms) after the last command
//!   was *sent*, whatever is queued (the run loop conflates `run_motors`);
//! - a blocked stderr (a pipe nobody reads) does not block the control loop:
//!   under a flood of bad messages, each of which is logged, the deadman
//!   still stops the motors on time (the non-blocking log sink).
//!
//! Each test measures its baseline (one command, or a drained stderr) in the
//! same run and prints both figures.

mod common;
mod rpi_support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane};
use banyan_component::{self as component, Component, Event};
use banyan_rpi::backend::sim::{SimBackend, SimBoard};
use banyan_rpi::gateway::get;
use common::cargo_bin;
use rpi_support::in_process;

/// The default config's deadman.
const DEADMAN: Duration = Duration::from_millis(500);
/// What the issue allows beyond it.
const MARGIN: Duration = Duration::from_millis(50);

/// The tests of this file run one at a time: each measures timing and
/// floods, which a parallel one would disturb on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `{"left": v, "right": v}`.
fn both(v: f64) -> Vec<u8> {
    component::wire::encode_value(&rmpv::Value::Map(vec![
        ("left".into(), v.into()),
        ("right".into(), v.into()),
    ]))
}

/// Polls the sim board (every 200 µs) until the left motor's PWM is 0;
/// returns when it was seen stopped.
fn wait_stopped(board: &SimBoard, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if board.pin(18).duty == 0.0 {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// The last state report the probe receives within `within`.
fn last_state(probe: &mut Component, within: Duration) -> Option<rmpv::Value> {
    last_report(probe, "state", within)
}

/// The last `{"report": kind}` received within `within`.
fn last_report(probe: &mut Component, kind: &str, within: Duration) -> Option<rmpv::Value> {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return last;
        }
        match probe.recv_event(Some(left)).unwrap() {
            Some(Event::Message(m)) => {
                let v = m.value().unwrap();
                if get(&v, "report").and_then(rmpv::Value::as_str) == Some(kind) {
                    last = Some(v);
                }
            }
            Some(_) => {}
            None => return last,
        }
    }
}

#[test]
fn a_burst_of_commands_stops_within_the_deadman_after_the_last_send() {
    let _serial = serial();
    let mut rig = in_process(SimBackend::new, &["marker"], "run_motors");
    // Baseline: one command, then the deadman.
    let t0 = Instant::now();
    rig.probe.publish_raw("run_motors", &both(0.5)).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || rig.board.pin(18).duty == 0.5),
        "the motor did not start"
    );
    let single = wait_stopped(&rig.board, Duration::from_secs(10)).expect("no deadman stop") - t0;

    // 200 k msg/s for 2 s, paced per millisecond.
    let rate = 200_000.0;
    let length = Duration::from_secs(2);
    let cmds = [both(0.5), both(0.6)];
    let (mut sent, mut full) = (0u64, 0u64);
    let start = Instant::now();
    let mut last_send = start;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= length {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while sent < due {
            let cmd = &cmds[(sent % 2) as usize];
            match rig.probe.publish_raw("run_motors", cmd) {
                Ok(()) => {
                    sent += 1;
                    last_send = Instant::now();
                }
                Err(component::Error::SendQueueFull { .. }) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let achieved = sent as f64 / last_send.duration_since(start).as_secs_f64();
    assert!(
        rig.board.pin(18).duty > 0.0,
        "the motor stopped during the burst: the gateway saw no commands"
    );
    // The upstream lag: a marker published right after the burst queues
    // behind it in the sender's queue and the backplane's input, which no
    // gateway can see into (commands carry no send time). On an idle
    // machine it is about a millisecond.
    while let Err(e) = rig.probe.publish_raw("marker", &[0x80]) {
        assert!(matches!(e, component::Error::SendQueueFull { .. }), "{e}");
    }
    let (mut marker, mut stopped) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while marker.is_none() || stopped.is_none() {
        assert!(
            Instant::now() < deadline,
            "marker {marker:?}, stop {stopped:?}"
        );
        if stopped.is_none() && rig.board.pin(18).duty == 0.0 {
            stopped = Some(Instant::now());
        }
        if marker.is_none() {
            if let Some(Event::Message(m)) = rig
                .probe
                .recv_event(Some(Duration::from_micros(200)))
                .unwrap()
            {
                if m.topic == "marker" {
                    marker = Some(Instant::now());
                }
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let (Some(marker), Some(stopped)) = (marker, stopped) else {
        unreachable!()
    };
    let after_burst = stopped.duration_since(last_send);
    let upstream = marker.duration_since(last_send);
    // The gateway's counters are in its status report (sent with every
    // periodic state report, once a second).
    let state = last_report(&mut rig.probe, "status", Duration::from_millis(1200));
    let stale = state
        .as_ref()
        .and_then(|s| get(s, "stale"))
        .and_then(rmpv::Value::as_u64);
    println!(
        "deadman {DEADMAN:?}: single command stopped after {single:?}; \
         burst of {sent} commands ({achieved:.0} msg/s, {full} refused by a full send queue) \
         stopped {after_burst:?} after the last send (upstream lag {upstream:?}); \
         stale {stale:?}"
    );
    // A loaded machine may not keep the pace exactly; far below it the
    // test would not show what it claims.
    assert!(
        achieved >= 0.75 * rate,
        "the burst reached only {achieved:.0} msg/s"
    );
    assert!(
        after_burst <= DEADMAN + MARGIN + upstream,
        "motor ran {after_burst:?} after the last command was sent \
         (upstream lag {upstream:?}; single command: {single:?}; stale {stale:?})"
    );
    assert!(stale.is_some_and(|s| s > 0), "{state:?}");
}

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long after its last `run_motors` an `rpi-gateway --sim` child stops
/// the motors (seen in its state reports) while a flood of malformed
/// messages (each logged as a warning) arrives. `blocked`: its stderr is a
/// pipe that is full and never read; otherwise stderr is read.
fn deadman_under_bad_flood(blocked: bool) -> (Duration, rmpv::Value) {
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let _running = bp.spawn().unwrap();
    let mut cmd = Command::new(cargo_bin("banyan-cli", "banyan"));
    cmd.args([
        "rpi-gateway",
        "--sim",
        "--no-services",
        "-b",
        "127.0.0.1",
        "-p",
    ])
    .arg(pp.to_string())
    .arg("-s")
    .arg(sp.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    // The read end is kept (never read) until the child is gone.
    let mut _reader = None;
    let mut drain = None;
    if blocked {
        let (reader, mut writer) = std::io::pipe().unwrap();
        // Fill the pipe (64 KiB on Linux): the child's first write blocks.
        writer.write_all(&[b'x'; 65536]).unwrap();
        cmd.stderr(Stdio::from(writer));
        _reader = Some(reader);
    } else {
        cmd.stderr(Stdio::piped());
    }
    let mut child = Guard(cmd.spawn().unwrap());
    if let Some(mut err) = child.0.stderr.take() {
        drain = Some(std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut sink);
            sink.len()
        }));
    }
    let mut probe = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
    probe.subscribe("from_rpi_gateway").unwrap();
    assert!(
        probe
            .wait_for_subscriber("run_motors", Duration::from_secs(20))
            .unwrap(),
        "rpi-gateway never subscribed (blocked on its stderr?)"
    );
    assert!(probe
        .wait_for_subscriber("from_rpi_gateway", Duration::from_secs(20))
        .unwrap());
    // A raw publisher for the malformed messages (a component refuses to
    // send them).
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::PUB).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&format!("tcp://127.0.0.1:{pp}")).unwrap();

    // Start the motors; wait for the state report.
    let mut t_cmd;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t_cmd = Instant::now();
        probe.publish_raw("run_motors", &both(0.5)).unwrap();
        let st = last_state(&mut probe, Duration::from_millis(100));
        if st.is_some_and(|s| {
            get(&s, "motors")
                .and_then(|m| get(m, "left"))
                .and_then(rmpv::Value::as_f64)
                == Some(0.5)
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "the motors did not start");
    }
    // Flood malformed messages (20 k/s: more log lines before the deadman
    // than the log queue holds) until a state report shows the
    // deadman stop.
    let bad = [&b"run_motors"[..], &[0xc1][..]];
    let mut sent = 0u64;
    let flood_start = Instant::now();
    let stop = 'flood: loop {
        let due = (flood_start.elapsed().as_secs_f64() * 20_000.0) as u64;
        while sent < due {
            raw.send_multipart(bad, zmq::DONTWAIT).unwrap();
            sent += 1;
        }
        while let Some(e) = probe.recv_event(Some(Duration::from_millis(1))).unwrap() {
            let Event::Message(m) = e else { continue };
            let v = m.value().unwrap();
            let state = get(&v, "report").and_then(rmpv::Value::as_str) == Some("state");
            let deadman = get(&v, "stopped_by").and_then(rmpv::Value::as_str) == Some("deadman");
            if state && deadman {
                break 'flood (t_cmd.elapsed(), v);
            }
        }
        assert!(
            t_cmd.elapsed() < Duration::from_secs(20),
            "no deadman stop 20 s after the last command ({sent} bad messages sent; blocked {blocked})"
        );
    };
    // The gateway's counters (`log_lost` among them) are in its status
    // report, sent with every periodic state report (once a second).
    let status = last_report(&mut probe, "status", Duration::from_millis(1500));
    drop(child);
    if let Some(d) = drain {
        let _ = d.join();
    }
    (stop.0, status.unwrap_or(rmpv::Value::Nil))
}

#[test]
fn a_blocked_stderr_does_not_hold_off_the_deadman() {
    let _serial = serial();
    let (drained, _) = deadman_under_bad_flood(false);
    let (blocked, state) = deadman_under_bad_flood(true);
    println!(
        "deadman {DEADMAN:?} under a flood of bad messages: stop seen {drained:?} after the last \
         command with stderr read, {blocked:?} with stderr blocked; state {state}"
    );
    assert!(
        blocked <= DEADMAN + MARGIN,
        "deadman stop {blocked:?} after the last command with a blocked stderr \
         (stderr read: {drained:?})"
    );
    let lost = get(&state, "log_lost").and_then(rmpv::Value::as_u64);
    assert!(
        lost.is_some_and(|n| n > 0),
        "no lost log lines counted: {state}"
    );
}
