//! Every long-running `banyan` subcommand exits cleanly (code 0, no panic)
//! on SIGTERM and SIGINT whatever its standard streams are: stdout and
//! stderr pipes whose read ends were closed (a launcher that died, a closed
//! SSH session), a closed stdin, and `| head -1` (the reader leaves after one
//! line: the subcommand ends by itself).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use banyan::backplane::{self, Backplane, Running};
use banyan::component::{self, Component};
use common::{cargo_bin, free_port, wait_until};

const T: Duration = Duration::from_secs(20);
/// How long a subcommand may take to exit after the signal.
const EXIT_BOUND: Duration = Duration::from_secs(5);

fn banyan(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_bin("banyan-cli", "banyan"));
    cmd.args(args);
    cmd
}

fn backplane() -> Running {
    Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .unwrap()
        .spawn()
        .unwrap()
}

fn ports(bp: &Running) -> Vec<String> {
    vec![
        "-b".into(),
        "127.0.0.1".into(),
        "-p".into(),
        bp.publisher_port().to_string(),
        "-s".into(),
        bp.subscriber_port().to_string(),
    ]
}

fn probe(bp: &Running) -> Component {
    Component::connect(component::Config::new(
        "127.0.0.1",
        bp.publisher_port(),
        bp.subscriber_port(),
    ))
    .unwrap()
}

/// Killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with stdin closed and stdout/stderr pipes whose read ends
/// are closed at once.
fn spawn_deaf(mut cmd: Command) -> Guard {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    Guard(child)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn exit_within(g: &mut Guard, bound: Duration) -> ExitStatus {
    let until = Instant::now() + bound;
    loop {
        if let Some(st) = g.0.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < until,
            "did not exit within {bound:?} of the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` and expects exit code 0 within [`EXIT_BOUND`].
fn expect_clean_exit(mut g: Guard, sig: &str, what: &str) {
    signal(&g.0, sig);
    let st = exit_within(&mut g, EXIT_BOUND);
    assert_eq!(st.code(), Some(0), "{what} after SIG{sig}: {st}");
}

#[test]
fn backplane_exits_on_signals_with_dead_pipes() {
    for sig in ["TERM", "INT"] {
        let (pp, sp) = (free_port(), free_port());
        let g = spawn_deaf(banyan(&[
            "backplane",
            "--bind",
            "127.0.0.1",
            "-p",
            &pp.to_string(),
            "-s",
            &sp.to_string(),
        ]));
        assert!(
            wait_until(T, || std::net::TcpStream::connect(("127.0.0.1", sp))
                .is_ok()),
            "backplane did not listen"
        );
        expect_clean_exit(g, sig, "backplane");
    }
}

#[test]
fn clients_exit_on_signals_with_dead_pipes() {
    let bp = backplane();
    let mut p = probe(&bp);
    // sub: readiness = its subscription reached the backplane.
    for sig in ["TERM", "INT"] {
        let mut cmd = banyan(&["sub", "only_for_sub"]);
        cmd.args(ports(&bp));
        let g = spawn_deaf(cmd);
        assert!(p.wait_for_subscriber("only_for_sub", T).unwrap());
        // Messages for it: its writes fail (dead stdout), then it ends by
        // itself or on the signal; either way cleanly.
        p.publish("only_for_sub", &1).unwrap();
        expect_clean_exit(g, sig, "sub");
        // Its subscription is gone before the next round.
        assert!(wait_until(T, || !p.has_subscriber("only_for_sub")));
    }
    // topics --watch: subscribes to the stats topic.
    let mut cmd = banyan(&["topics", "--watch", "--duration", "0.2"]);
    cmd.args(ports(&bp));
    let g = spawn_deaf(cmd);
    assert!(p.wait_for_subscriber(backplane::STATS_TOPIC, T).unwrap());
    expect_clean_exit(g, "TERM", "topics");

    // pub --rate: readiness = a message arrived.
    let mut s = probe(&bp);
    s.subscribe("beat").unwrap();
    let mut cmd = banyan(&["pub", "beat", "{\"n\":1}", "--rate", "20"]);
    cmd.args(ports(&bp));
    let g = spawn_deaf(cmd);
    assert!(s.recv_timeout(T).unwrap().is_some(), "pub sent nothing");
    expect_clean_exit(g, "TERM", "pub --rate");

    // pub reading a stdin that stays open and silent.
    let mut cmd = banyan(&["pub", "silent", "--wait", "0"]);
    cmd.args(ports(&bp));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    drop(child.stdout.take());
    // Readiness: its "connected" line on stderr; then stderr dies too.
    let stderr = child.stderr.take().unwrap();
    let g = Guard(child);
    let connected = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("connected to the backplane"));
    assert!(connected, "pub never said it connected");
    expect_clean_exit(g, "INT", "pub from stdin");
}

#[test]
fn gateways_exit_on_signals_with_dead_pipes() {
    let bp = backplane();
    let mut p = probe(&bp);
    for sig in ["TERM", "INT"] {
        let mut cmd = banyan(&["rpi-gateway", "--sim", "-v", "--no-services"]);
        cmd.args(ports(&bp));
        let g = spawn_deaf(cmd);
        assert!(p.wait_for_subscriber("run_motors", T).unwrap());
        // Work for it (its sim logs every pin change to the dead stderr).
        p.publish(
            "run_motors",
            &[("left", 0.5), ("right", -0.5)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        expect_clean_exit(g, sig, "rpi-gateway");
        assert!(wait_until(T, || !p.has_subscriber("run_motors")));
    }
    // serial-gateway on a TCP "device": readiness = it connected.
    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = device.local_addr().unwrap();
    let mut cmd = banyan(&[
        "serial-gateway",
        "--device",
        &format!("tcp:{addr}"),
        "-v",
        "--no-services",
    ]);
    cmd.args(ports(&bp));
    let g = spawn_deaf(cmd);
    let (_conn, _) = device.accept().unwrap();
    expect_clean_exit(g, "TERM", "serial-gateway");
}

#[test]
fn sub_ends_cleanly_when_its_reader_leaves_like_head_1() {
    let bp = backplane();
    let mut cmd = banyan(&["sub", "--json", "h"]);
    cmd.args(ports(&bp));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut g = Guard(child);
    let mut p = probe(&bp);
    assert!(p.wait_for_subscriber("h", T).unwrap());
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line // the reader (and the pipe) is dropped here
    });
    // Keep publishing until it has noticed.
    let until = Instant::now() + T;
    let mut first = None;
    let status = loop {
        p.publish("h", &1).unwrap();
        if first.is_none() && reader.is_finished() {
            first = Some(Instant::now());
        }
        if let Some(st) = g.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < until,
            "sub kept running after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let line = reader.join().unwrap();
    assert!(line.starts_with("{\"time\":"), "{line}");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn launch_exits_on_signals_with_dead_pipes() {
    let (pp, sp) = (free_port(), free_port());
    let robot = std::env::temp_dir().join(format!("banyan-robust-{}.toml", std::process::id()));
    std::fs::write(
        &robot,
        format!(
            "[backplane]\npublisher_port = {pp}\nsubscriber_port = {sp}\n\
             args = [\"--bind\", \"127.0.0.1\"]\n\
             [[process]]\nname = \"mon\"\ncommand = [\"banyan\", \"sub\"]\nbackplane_args = true\n"
        ),
    )
    .unwrap();
    let mut cmd = banyan(&["launch"]);
    cmd.arg(&robot);
    let g = spawn_deaf(cmd);
    let bp_probe = Component::connect(component::Config::new("127.0.0.1", pp, sp));
    let mut bp_probe = bp_probe.unwrap();
    // Readiness: the launched monitor subscribed (so the backplane is up).
    assert!(bp_probe.wait_for_subscriber("anything", T).unwrap());
    expect_clean_exit(g, "TERM", "launch");
    // The backplane it started is gone too.
    assert!(wait_until(T, || std::net::TcpStream::connect((
        "127.0.0.1",
        sp
    ))
    .is_err()));
    let _ = std::fs::remove_file(&robot);
}
