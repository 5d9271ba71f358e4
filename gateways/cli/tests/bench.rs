//! Smoke tests of `banyan-bench`'s side-by-side benchmarks with tiny counts:
//! they check that every message came back and every process started was
//! stopped, never how fast (the figures are in docs/benchmarks/lan.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_banyan-bench");
/// Functional timeout for a run of a few dozen messages.
const T: Duration = Duration::from_secs(60);

/// Runs `banyan-bench ARGS`, killing it after `T`.
fn bench(args: &[&str]) -> Output {
    bench_pid(args).0
}

/// Runs `banyan-bench ARGS`, killing it after `T`; also returns its pid.
fn bench_pid(args: &[&str]) -> (Output, u32) {
    bench_with(args, false)
}

/// Starts `banyan-bench ARGS` with stdin closed and stdout/stderr piped —
/// or, if `deaf`, pipes whose read ends are closed at once — and waits for
/// it, killing it after `T`. Returns its output and pid.
fn bench_with(args: &[&str], deaf: bool) -> (Output, u32) {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start banyan-bench");
    if deaf {
        drop(child.stdout.take());
        drop(child.stderr.take());
    }
    let pid = child.id();
    let deadline = Instant::now() + T;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("banyan-bench {args:?} still running after {T:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), pid)
}

fn mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[test]
fn mqtt_latency_echoes_every_message_and_stops_its_broker() {
    let Some(bin) = mosquitto() else {
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto; scripts/setup.sh does)");
        return;
    };
    let bin = bin.to_str().unwrap();
    let (out, pid) = bench_pid(&["mqtt-latency", "--count", "20", "--mosquitto", bin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // The command fails unless each of the 120 requests (100 warm-up) got
    // its own reply back and the echo server counted 120.
    assert!(
        stdout.contains("rumqttc/mosquitto latency: 20 round trips: median"),
        "{stdout}"
    );
    // The broker it started (its config in a temp dir named after the
    // bench's pid) is gone, and so is the directory.
    let tag = format!("banyan-bench-mosquitto-{pid}-");
    assert_eq!(processes_mentioning(&tag), Vec::<String>::new());
    let dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&tag))
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
}

#[test]
fn mqtt_latency_nagle_and_bad_broker() {
    // A broker address nobody listens on: an error, not a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("127.0.0.1:{port}");
    let out = bench(&["mqtt-latency", "--count", "5", "--broker", &broker]);
    assert!(!out.status.success(), "{out:?}");
    let Some(bin) = mosquitto() else {
        eprintln!("skipped the --nagle run: mosquitto is not installed");
        return;
    };
    let out = bench(&[
        "mqtt-latency",
        "--count",
        "20",
        "--nagle",
        "--mosquitto",
        bin.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn large_messages_all_arrive() {
    for size in ["16", "70000", "1048576"] {
        let out = bench(&["large", "--size", size, "--count", "20"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains(&format!("large: {size} B payloads: 20 sent"))
                && stdout.contains("20 received")
                && stdout.contains("lost 0;")
                && stdout.contains("send queue full 0; bad 0;"),
            "{stdout}"
        );
    }
}

#[test]
fn closed_stdout_and_stderr_are_no_panic() {
    // println! panicked here (exit code 101) before the results went
    // through output::write_stdout.
    for args in [
        &["latency", "--count", "20"][..],
        &["throughput", "--count", "1000"],
        &["large", "--size", "1024", "--count", "8"],
    ] {
        let st = bench_with(args, true).0.status;
        assert_eq!(st.code(), Some(0), "banyan-bench {args:?}: {st}");
    }
    // A bad argument is still exit code 1, not a panic over the dead stderr.
    let st = bench_with(&["--backplane", "nowhere", "latency"], true)
        .0
        .status;
    assert_eq!(st.code(), Some(1), "{st}");
}

#[test]
fn tcp_floor_measures_every_round_trip() {
    let out = bench(&["tcp-floor", "--count", "50"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("tcp floor: 50 round trips: median "),
        "{text}"
    );
    let median: f64 = text
        .split("median ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no median in {text}"));
    assert!(median > 0.0, "{text}");
}
