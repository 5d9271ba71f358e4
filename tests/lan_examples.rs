//! The examples run end to end: echo server + client, and the
//! multi-backplane echo server with the notifier on a second backplane.

mod common;

use std::process::Command;
use std::time::Duration;

use banyan::backplane::{self, Backplane};
use common::{cargo_example, Proc};

const T: Duration = Duration::from_secs(30);

fn backplane() -> backplane::Running {
    Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .unwrap()
        .spawn()
        .unwrap()
}

fn example(name: &str, args: &[String]) -> Proc {
    let mut cmd = Command::new(cargo_example(name));
    cmd.args(args);
    Proc::spawn(name, cmd)
}

fn ports(bp: &backplane::Running) -> Vec<String> {
    vec![
        "-p".into(),
        bp.publisher_port().to_string(),
        "-s".into(),
        bp.subscriber_port().to_string(),
    ]
}

#[test]
fn echo_client_and_server() {
    let bp = backplane();
    let mut server = example("echo_server", &ports(&bp));
    server.wait_line(T, |l| l == "echo server ready");
    let mut args = ports(&bp);
    args.extend(["-n".into(), "25".into()]);
    let mut client = example("echo_client", &args);
    client.wait_line(T, |l| l.starts_with("25 messages sent and received"));
    assert!(client.wait_exit(T).success());
    server.signal("INT");
    assert!(server.wait_exit(T).success());
    // 26 requests, 25 down to 0, each sent once and answered once (the
    // server waits for the client's `reply` subscription), none bad.
    let out = server.output();
    let line = out
        .lines()
        .find(|l| l.starts_with("echo server exiting: "))
        .unwrap_or_else(|| panic!("no exit line:\n{out}"));
    assert_eq!(
        line, "echo server exiting: 26 received, 26 sent, 0 rejected",
        "{out}"
    );
}

#[test]
fn multi_echo_server_and_notifier() {
    let (bp1, bp2) = (backplane(), backplane());
    let (dir, spec) = common::routing_spec(
        "banyan-lan-examples",
        [
            (bp1.subscriber_port(), "echo", bp1.publisher_port()),
            (bp2.subscriber_port(), "notice", bp2.publisher_port()),
        ],
    );
    let mut notifier = example("notifier", &ports(&bp2));
    notifier.wait_line(T, |l| l == "notifier ready");
    let mut server = example(
        "multi_echo_server",
        &["-f".into(), spec.display().to_string()],
    );
    server.wait_line(T, |l| l == "multi echo server ready");
    let mut args = ports(&bp1);
    args.extend(["-n".into(), "5".into()]);
    let mut client = example("echo_client", &args);
    client.wait_line(T, |l| l.starts_with("5 messages sent and received"));
    let line = notifier.wait_line(T, |l| l.starts_with("Notification Received!"));
    assert_eq!(
        line,
        r#"Notification Received! {"message": "got it", "id": "b"}"#
    );
    let _ = std::fs::remove_dir_all(dir);
}
