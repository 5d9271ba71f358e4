//! Discovery across network namespaces: real multicast between "hosts".
//!
//! Each test builds its own lab with unique names: namespaces joined by
//! veth pairs to a Linux bridge (in a namespace of its own), optionally a
//! router to a subnet that multicast does not reach, and runs the
//! `banyan-discovery` example `node` inside the namespaces with
//! `ip netns exec`. A [`Lab`] guard deletes every namespace it made (and so
//! every veth, bridge and route) when dropped, also when a test fails; the
//! node processes are killed first ([`Proc`] guards are declared after the
//! lab).
//!
//! Needs root and `ip netns` (the CI machine runs as root). Without them
//! each test prints why and returns.
//!
//! The figures of docs/discovery.md come from the `#[ignore]`d
//! `figure_*` tests:
//! `DISCOVERY_NODE_PROFILE=release cargo test --test discovery -- --ignored --nocapture --test-threads 1`.

mod common;
mod serial_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Proc;

/// The `node` example of banyan-discovery, built once per test process.
fn node_bin() -> PathBuf {
    // The figures build the node optimised without rebuilding the
    // whole test crate in release: DISCOVERY_NODE_PROFILE=release.
    match std::env::var("DISCOVERY_NODE_PROFILE") {
        Ok(p) if p == "release" => {
            common::package_example_in(&common::release_dir(), "banyan-discovery", "node")
        }
        _ => common::package_example("banyan-discovery", "node"),
    }
}

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Some(format!("`ip` not available: {e}")),
    }
}

macro_rules! require_netns {
    () => {
        if let Some(why) = unavailable() {
            println!("SKIPPED: {why}");
            return;
        }
    };
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A set of namespaces deleted on drop. Hosts are on bridge subnets
/// `10.77.<bridge>.0/24`; host `i` of bridge `b` has `10.77.<b>.<i+1>`.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    veths: u32,
}

impl Lab {
    fn new() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "bd{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        Lab {
            prefix,
            namespaces: Vec::new(),
            veths: 0,
        }
    }

    fn ns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.prefix);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A bridge namespace with bridge `br0` (multicast snooping off, so
    /// the bridge floods multicast like a plain switch).
    fn bridge(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        run(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        ns
    }

    /// Connects namespace `host` to bridge namespace `br` with a veth pair;
    /// the host end is `ifname` with address `addr` (CIDR).
    fn plug(&mut self, host: &str, ifname: &str, br: &str, addr: &str) {
        self.veths += 1;
        let peer = format!("p{}", self.veths);
        let tmp = format!("{}t{}", self.prefix, self.veths);
        let tmp = &tmp[tmp.len().saturating_sub(15)..];
        run(&[
            "ip", "-n", host, "link", "add", tmp, "type", "veth", "peer", "name", &peer, "netns",
            br,
        ]);
        run(&["ip", "-n", host, "link", "set", tmp, "name", ifname]);
        run(&["ip", "-n", host, "addr", "add", addr, "dev", ifname]);
        run(&["ip", "-n", host, "link", "set", ifname, "up"]);
        run(&["ip", "-n", br, "link", "set", &peer, "master", "br0"]);
        run(&["ip", "-n", br, "link", "set", &peer, "up"]);
    }

    /// `n` hosts on one bridge; returns their namespaces.
    fn lan(&mut self, n: usize) -> Vec<String> {
        let br = self.bridge("br");
        (0..n)
            .map(|i| {
                let h = self.ns(&format!("h{i}"));
                self.plug(&h, "eth0", &br, &format!("10.77.0.{}/24", i + 1));
                h
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

const CHANNEL: &str = "netns-test";

/// `node run` in namespace `ns`.
fn node(ns: &str, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(node_bin())
        .args(["run", "--name", name, "--channel", CHANNEL])
        .args(extra);
    let mut p = Proc::spawn(&format!("{name}@{ns}"), cmd);
    p.wait_line(Duration::from_secs(10), |l| l.starts_with("ready"));
    p
}

fn backplane(ns: &str, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--kind",
        "backplane",
        "--pub-port",
        "43124",
        "--sub-port",
        "43125",
    ];
    args.extend_from_slice(extra);
    node(ns, name, &args)
}

/// A one-shot `node <cmd>` in `ns`: (success, stdout).
fn tool(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(node_bin())
        .args(args)
        .args(["--channel", CHANNEL])
        .output()
        .expect("spawn node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn ms(line: &str) -> u64 {
    field(line, "ms")
        .and_then(|v| v.parse().ok())
        .expect("ms= in line")
}

fn found(p: &mut Proc, name: &str, timeout: Duration) -> String {
    found_all(p, &[name], timeout).remove(0)
}

/// Waits until `p` has printed a `found` line for each name (in any
/// order; lines seen by earlier waits count too) and returns them in the
/// order of `names`.
fn found_all(p: &mut Proc, names: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let pick = |out: &str, name: &str| {
        let pat = format!("name={name} ");
        out.lines()
            .find(|l| l.starts_with("found") && l.contains(&pat))
            .map(str::to_owned)
    };
    loop {
        let out = p.output();
        let got: Vec<Option<String>> = names.iter().map(|n| pick(&out, n)).collect();
        if got.iter().all(Option::is_some) {
            return got.into_iter().flatten().collect();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // Wait for the next found line (panics with the output at the deadline).
        p.wait_line(left, |l| l.starts_with("found"));
    }
}

#[test]
fn discovery_across_namespaces_within_a_second() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    let mut a = backplane(&h[0], "bp", &[]);
    let mut b = node(&h[1], "comp", &[]);
    let mut c = node(&h[2], "gw", &["--kind", "gateway"]);
    // Each newcomer finds the others from its own start in under a second.
    let l = found(&mut b, "bp", Duration::from_secs(2));
    assert!(ms(&l) < 1000, "{l}");
    assert_eq!(field(&l, "ip"), Some("10.77.0.1"));
    assert_eq!(field(&l, "iface"), Some("eth0"));
    assert_eq!(field(&l, "pub"), Some("10.77.0.1:43124"));
    for l in found_all(&mut c, &["bp", "comp"], Duration::from_secs(2)) {
        assert!(ms(&l) < 1000, "{l}");
    }
    // And the ones already there hear them.
    found_all(&mut a, &["comp", "gw"], Duration::from_secs(1));
    let l = found(&mut b, "gw", Duration::from_secs(1));
    assert_eq!(field(&l, "kind"), Some("gateway"));
}

#[test]
fn a_component_picks_the_named_backplane() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    let _red = backplane(&h[0], "bp-red", &[]);
    let _blue = backplane(&h[1], "bp-blue", &[]);
    let (ok, out) = tool(&h[2], &["resolve", "--name", "bp-blue"]);
    assert!(ok, "{out}");
    let l = out.lines().find(|l| l.starts_with("resolved")).expect(&out);
    assert_eq!(field(l, "pub"), Some("10.77.0.2:43124"), "{out}");
    assert_eq!(field(l, "sub"), Some("10.77.0.2:43125"), "{out}");
    assert_eq!(field(l, "iface"), Some("eth0"), "{out}");
    // No name and two backplanes: refused, with the list.
    let (ok, out) = tool(&h[2], &["resolve"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("2 backplanes") && out.contains("bp-red") && out.contains("bp-blue"),
        "{out}"
    );
    assert!(out.contains("-b NAME"), "{out}");
    // A name nobody has: refused, naming those seen.
    let (ok, out) = tool(
        &h[2],
        &["resolve", "--name", "bp-green", "--timeout-ms", "700"],
    );
    assert!(
        !ok && out.contains("bp-green") && out.contains("bp-red"),
        "{out}"
    );
}

#[test]
fn a_duplicate_name_is_reported() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    let mut obs = node(&h[2], "observer", &[]);
    let mut one = backplane(&h[0], "bp", &[]);
    found(&mut obs, "bp", Duration::from_secs(2));
    let mut two = backplane(&h[1], "bp", &[]);
    let d = |p: &mut Proc, local: &str| {
        let want = format!("local={local}");
        p.wait_line(Duration::from_secs(3), |l| {
            l.starts_with("duplicate name=bp") && l.contains(&want)
        })
    };
    d(&mut one, "true");
    d(&mut two, "true");
    d(&mut obs, "false");
    let (ok, out) = tool(&h[2], &["resolve", "--name", "bp"]);
    assert!(!ok && out.contains("2 backplanes named \"bp\""), "{out}");
}

#[test]
fn a_killed_node_is_gone_after_the_timeout_and_found_again_after_restart() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let mut c = node(&h[1], "comp", &["--gone-ms", "2000"]);
    let bp = backplane(&h[0], "bp", &[]);
    found(&mut c, "bp", Duration::from_secs(2));
    let killed = Instant::now();
    drop(bp); // SIGKILL: no BYE
    let l = c.wait_line(Duration::from_secs(5), |l| {
        l.starts_with("gone") && l.contains("name=bp ")
    });
    let after = killed.elapsed();
    assert_eq!(field(&l, "reason"), Some("silent"), "{l}");
    // Gone 2 s after the last beacon heard, which came at most ~1.2 s
    // before the kill: not before 0.7 s; the upper bound leaves a loaded
    // machine 2.5 s for the check and the line to arrive.
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_millis(4500),
        "{after:?}"
    );
    let (ok, out) = tool(&h[1], &["resolve", "--timeout-ms", "500"]);
    assert!(!ok, "{out}");
    // Restarted: found again at once.
    let started = Instant::now();
    let _bp = backplane(&h[0], "bp", &[]);
    found(&mut c, "bp", Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(1));
    let (ok, out) = tool(&h[1], &["resolve"]);
    assert!(ok && out.contains("pub=10.77.0.1:43124"), "{out}");
}

/// The bridge LAN plus, behind a router, a host on 10.78.0.0/24 that the
/// LAN's multicast and broadcast (TTL 1) never reach.
fn routed_lab(lab: &mut Lab) -> (Vec<String>, String) {
    let h = lab.lan(2);
    let br = format!("{}br", lab.prefix);
    let r = lab.ns("rt");
    lab.plug(&r, "eth0", &br, "10.77.0.254/24");
    let br2 = lab.bridge("br2");
    lab.plug(&r, "eth1", &br2, "10.78.0.1/24");
    let iso = lab.ns("iso");
    lab.plug(&iso, "eth0", &br2, "10.78.0.2/24");
    run(&[
        "ip",
        "netns",
        "exec",
        &r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    run(&[
        "ip",
        "-n",
        &iso,
        "route",
        "add",
        "default",
        "via",
        "10.78.0.1",
    ]);
    for host in &h {
        run(&[
            "ip",
            "-n",
            host,
            "route",
            "add",
            "10.78.0.0/24",
            "via",
            "10.77.0.254",
        ]);
    }
    (h, iso)
}

#[test]
fn seeds_reach_a_namespace_without_multicast() {
    require_netns!();
    let mut lab = Lab::new();
    let (h, iso) = routed_lab(&mut lab);
    let mut bp = backplane(&h[0], "bp", &[]);
    // Without seeds the isolated host sees nothing (the test can fail).
    let (ok, out) = tool(&iso, &["resolve", "--timeout-ms", "1500"]);
    assert!(!ok && out.contains("no backplane"), "{out}");
    // With the backplane as seed it finds it, and the backplane finds it.
    let mut c = node(&iso, "remote", &["--seed", "10.77.0.1"]);
    let l = found(&mut c, "bp", Duration::from_secs(2));
    assert!(ms(&l) < 1000, "{l}");
    assert_eq!(field(&l, "pub"), Some("10.77.0.1:43124"));
    let l = found(&mut bp, "remote", Duration::from_secs(2));
    assert_eq!(field(&l, "ip"), Some("10.78.0.2"));
    let (ok, out) = tool(&iso, &["resolve", "--seed", "10.77.0.1"]);
    assert!(ok && out.contains("pub=10.77.0.1:43124"), "{out}");
    // It stays found (the backplane beacons back by unicast): nobody is
    // gone after more than the 5 s timeout.
    std::thread::sleep(Duration::from_secs(6));
    assert!(!c.output().contains("gone"), "{}", c.output());
    assert!(!bp.output().contains("gone"), "{}", bp.output());
}

#[test]
fn lossy_delivery_still_converges() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(4);
    // Every node drops half of the beacons it receives (query answers
    // included): like Wi-Fi multicast at its worst.
    let names = ["n0", "n1", "n2", "n3"];
    let mut nodes: Vec<Proc> = h
        .iter()
        .zip(names)
        .map(|(ns, n)| node(ns, n, &["--beacon-loss", "50"]))
        .collect();
    // Convergence is the claim, not its time: with half the beacons
    // (about one a second) lost at random, a pair stays unseen for n
    // seconds with a chance of about 2^-n, so a 4 s bound failed now and
    // then (5.25 s seen once in CI). 20 s: ~1e-5 for the 12 pairs. The
    // times are printed for docs/discovery.md.
    let mut worst = 0;
    for (i, p) in nodes.iter_mut().enumerate() {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != names[i]).collect();
        for l in found_all(p, &others, Duration::from_secs(20)) {
            worst = worst.max(ms(&l));
        }
    }
    eprintln!("50 % beacon loss: every node found every other within {worst} ms");
}

#[test]
fn hostile_and_malformed_datagrams_are_counted_and_nothing_crashes() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    let mut bp = backplane(&h[0], "bp", &[]);
    let mut c = node(&h[1], "comp", &[]);
    found(&mut c, "bp", Duration::from_secs(2));
    found(&mut bp, "comp", Duration::from_secs(2));
    // 400 hostile datagrams (garbage, truncated, other versions, oversize,
    // trailing bytes, other channel, query and identify floods from random
    // ids) to the group and to the backplane, then its identity.
    let (ok, out) = tool(
        &h[2],
        &[
            "hostile",
            "--name",
            "bp",
            "--count",
            "400",
            "--timeout-ms",
            "3000",
        ],
    );
    assert!(ok, "{out}");
    let l = out.lines().find(|l| l.starts_with("identity")).expect(&out);
    let malformed: u64 = field(l, "discovery.malformed")
        .and_then(|v| v.parse().ok())
        .expect(l);
    assert!(malformed >= 100, "{l}");
    let limited: u64 = field(l, "discovery.rate_limited")
        .and_then(|v| v.parse().ok())
        .expect(l);
    assert!(limited > 0, "{l}");
    // Everyone is still there and still answers.
    let (ok, out) = tool(&h[1], &["resolve", "--name", "bp"]);
    assert!(ok, "{out}");
    let bp_gone = c
        .output()
        .lines()
        .any(|l| l.starts_with("gone") && l.contains("name=bp "));
    assert!(!bp_gone, "{}", c.output());
    assert!(bp.output().contains("ready"));
}

#[test]
fn each_interface_gets_its_own_address() {
    require_netns!();
    let mut lab = Lab::new();
    let b1 = lab.bridge("b1");
    let b2 = lab.bridge("b2");
    let m = lab.ns("m");
    lab.plug(&m, "eth0", &b1, "10.77.1.10/24");
    lab.plug(&m, "eth1", &b2, "10.77.2.10/24");
    let x = lab.ns("x");
    lab.plug(&x, "eth0", &b1, "10.77.1.1/24");
    let y = lab.ns("y");
    lab.plug(&y, "eth0", &b2, "10.77.2.1/24");
    let mut bm = backplane(&m, "multi", &[]);
    let mut nx = node(&x, "x", &[]);
    let mut ny = node(&y, "y", &[]);
    // Each side sees the backplane at its address on that side's link.
    let l = found(&mut nx, "multi", Duration::from_secs(2));
    assert_eq!(field(&l, "pub"), Some("10.77.1.10:43124"), "{l}");
    let l = found(&mut ny, "multi", Duration::from_secs(2));
    assert_eq!(field(&l, "pub"), Some("10.77.2.10:43124"), "{l}");
    // And the backplane says where it saw each.
    let l = found_all(&mut bm, &["x", "y"], Duration::from_secs(2));
    assert_eq!(field(&l[0], "iface"), Some("eth0"));
    assert_eq!(field(&l[1], "iface"), Some("eth1"));
    // Restricted to eth0, a node is invisible on eth1.
    let _only = backplane(&m, "eth0-only", &["--iface", "eth0"]);
    found(&mut nx, "eth0-only", Duration::from_secs(2));
    let (ok, out) = tool(
        &y,
        &["resolve", "--name", "eth0-only", "--timeout-ms", "1500"],
    );
    assert!(!ok, "{out}");
}

// ---------------------------------------------------------------------
// The `banyan` command in the namespaces: `banyan ls`, `-b NAME`, the only
// backplane without `-b`, the refusal listing several; serial-gateway's
// device in the pool.
// ---------------------------------------------------------------------

/// `banyan <args>` in namespace `ns`, on the test channel, with no
/// `$BANYAN_BACKPLANE` (so "nothing given" means nothing).
fn banyan_cmd(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(common::cargo_bin("banyan-cli", "banyan"))
        .args(args)
        .env("BANYAN_DISCOVERY_CHANNEL", CHANNEL)
        .env_remove("BANYAN_BACKPLANE")
        .env_remove("BANYAN_DISCOVERY_SEEDS")
        .env_remove("BANYAN_DISCOVERY_INTERFACES");
    cmd
}

/// A one-shot `banyan <args>` in `ns`: (exit code, stdout, stderr).
fn banyan_once(ns: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = banyan_cmd(ns, args).output().expect("spawn banyan");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `banyan backplane -n NAME` in `ns` on free ports (announced in the
/// pool with them), waited for until it listens.
fn banyan_backplane(ns: &str, name: &str) -> Proc {
    let cmd = banyan_cmd(ns, &["backplane", "-n", name, "-p", "0", "-s", "0"]);
    let mut p = Proc::spawn(&format!("backplane {name}@{ns}"), cmd);
    p.wait_line(Duration::from_secs(20), |l| {
        l.starts_with("Publisher  Port = ")
    });
    p
}

/// `banyan ls --json` in `ns` until `done` holds for its lines (asking
/// again each time), or panics with the last output after `timeout`.
fn ls_until(
    ns: &str,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, out, err) = banyan_once(ns, &["ls", "--json", "--wait", "0.5"]);
        assert_eq!(code, Some(0), "{out}\n{err}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "banyan ls never matched:\n{out}\n{err}"
        );
    }
}

fn named<'a>(lines: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    lines.iter().find(|v| v["name"] == name)
}

/// The fake device of tests/serial_support (the core's `link::Device`
/// named `fake-mcu`, version `9.9.9`, subscribed to `cmd`) listening on
/// 127.0.0.1 inside namespace `ns`: a thread enters the namespace, so the
/// device's socket (and its thread) live there. Returns it and its port.
fn fake_device_in(ns: &str) -> (serial_support::FakeDevice, u16) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(f.as_raw_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port in the namespace")
            .port();
        (
            serial_support::FakeDevice::start(port, 0x5eed, &["cmd"]),
            port,
        )
    })
    .join()
    .expect("fake device thread")
}

#[test]
fn banyan_ls_lists_a_backplane_and_a_serial_gateways_device() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let _bp = banyan_backplane(&h[0], "bp-ls");
    let (device, port) = fake_device_in(&h[1]);
    // The gateway finds the backplane by name (-b NAME) and announces
    // itself and, once the link is up, the device.
    let dev = format!("tcp:127.0.0.1:{port}");
    let gw_cmd = banyan_cmd(
        &h[1],
        &[
            "serial-gateway",
            "-v",
            "-b",
            "bp-ls",
            "-n",
            "gw-ls",
            "--device",
            &dev,
        ],
    );
    let gw = Proc::spawn("serial-gateway", gw_cmd);
    gw.wait_output(Duration::from_secs(10), |o| o.contains("link up"));
    assert!(
        gw.output()
            .contains("backplane \"bp-ls\" found at 10.77.0.1"),
        "{}",
        gw.output()
    );
    // `banyan ls --json` from the other host: all three, the device behind
    // the gateway.
    let lines = ls_until(&h[0], Duration::from_secs(10), |l| {
        named(l, "fake-mcu").is_some() && named(l, "gw-ls").is_some()
    });
    let bp = named(&lines, "bp-ls").expect("backplane listed");
    assert_eq!(bp["kind"], "backplane");
    assert_eq!(bp["parent"], serde_json::Value::Null);
    let gwl = named(&lines, "gw-ls").unwrap();
    assert_eq!(gwl["kind"], "gateway");
    assert!(
        gwl["addr"].as_str().unwrap().starts_with("10.77.0.2:"),
        "{gwl}"
    );
    let d = named(&lines, "fake-mcu").unwrap();
    assert_eq!(d["kind"], "device");
    assert_eq!(d["parent"], gwl["id"], "{d}");
    // The table says the same.
    let (code, table, err) = banyan_once(&h[0], &["ls", "--wait", "0.8"]);
    assert_eq!(code, Some(0), "{err}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in\n{table}"))
            .to_owned()
    };
    assert!(table.starts_with("NAME"), "{table}");
    assert!(row("bp-ls").contains(" backplane "), "{table}");
    assert!(row("gw-ls").contains(" gateway "), "{table}");
    assert!(
        row("fake-mcu").contains(" device ") && row("fake-mcu").contains("gw-ls"),
        "{table}"
    );
    // The device's identity: its HELLO's name and version, its
    // subscription, the link's counters.
    let (code, out, err) = banyan_once(&h[0], &["ls", "fake-mcu", "--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let id: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(id["kind"], "device", "{id}");
    assert_eq!(id["version"], "9.9.9", "{id}");
    assert_eq!(id["subscribes"], serde_json::json!(["cmd"]), "{id}");
    assert!(id["counters"]["frames_rx"].as_u64().unwrap() > 0, "{id}");
    assert!(id["counters"].get("to_device").is_some(), "{id}");
    // The gateway's: its status topic, the bridge counters.
    let (code, out, err) = banyan_once(&h[0], &["ls", "gw-ls", "--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let id: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(id["kind"], "gateway", "{id}");
    assert!(
        id["publishes"]
            .as_array()
            .unwrap()
            .contains(&"serial_gateway_status".into()),
        "{id}"
    );
    assert!(
        id["counters"]["transport_opens"].as_u64().unwrap() >= 1,
        "{id}"
    );
    // The backplane's: its stats topic and counters (the gateway's status
    // messages went through it).
    let (code, out, err) = banyan_once(&h[1], &["ls", "bp-ls", "--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let id: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(id["kind"], "backplane", "{id}");
    assert_eq!(
        id["publishes"],
        serde_json::json!(["banyan_backplane"]),
        "{id}"
    );
    assert!(id["counters"].get("forwarded").is_some(), "{id}");
    assert!(id["counters"].get("dropped").is_some(), "{id}");
    // The device goes away: withdrawn from the pool, the gateway stays.
    drop(device);
    gw.wait_output(Duration::from_secs(10), |o| {
        o.contains("fake-mcu left the discovery pool")
    });
    let lines = ls_until(&h[0], Duration::from_secs(10), |l| {
        named(l, "fake-mcu").is_none()
    });
    assert!(named(&lines, "gw-ls").is_some(), "{lines:?}");
}

#[test]
fn sub_and_pub_find_a_backplane_by_name() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    let _red = banyan_backplane(&h[0], "bp-red");
    let _blue = banyan_backplane(&h[1], "bp-blue");
    // sub on bp-blue by name (-b NAME), pub by --backplane-name.
    let mut sub = Proc::spawn(
        "sub",
        banyan_cmd(
            &h[2],
            &[
                "sub", "-v", "-b", "bp-blue", "--json", "--count", "1", "greeting",
            ],
        ),
    );
    // A subscriber on bp-red must get nothing.
    let mut red = Proc::spawn(
        "sub red",
        banyan_cmd(
            &h[2],
            &["sub", "-b", "bp-red", "--json", "--count", "1", "greeting"],
        ),
    );
    red.wait_output(Duration::from_secs(10), |o| {
        o.contains("connected to the backplane at 10.77.0.1")
    });
    let (code, out, err) = banyan_once(
        &h[2],
        &[
            "pub",
            "-v",
            "--backplane-name",
            "bp-blue",
            "greeting",
            r#"{"n": 1}"#,
        ],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("backplane \"bp-blue\" found at 10.77.0.2"),
        "{err}"
    );
    let line = sub.wait_line(Duration::from_secs(10), |l| l.contains("greeting"));
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(v["payload"], serde_json::json!({"n": 1}), "{line}");
    assert!(
        sub.wait_exit(Duration::from_secs(5)).success(),
        "{}",
        sub.output()
    );
    assert!(
        sub.output()
            .contains("backplane \"bp-blue\" found at 10.77.0.2"),
        "{}",
        sub.output()
    );
    // (stdout lines are messages; stderr lines are tagged.)
    let red_got = red
        .output()
        .lines()
        .any(|l| !l.starts_with("[stderr]") && l.contains("greeting"));
    assert!(!red_got, "{}", red.output());
    red.signal("INT");
    assert!(
        red.wait_exit(Duration::from_secs(5)).success(),
        "{}",
        red.output()
    );
    // -b with an address still means the address (Python Banyan's -b),
    // and both -b and --backplane-name is a usage error.
    let (code, _, err) = banyan_once(
        &h[2],
        &[
            "pub",
            "-b",
            "10.77.0.2",
            "--backplane-name",
            "bp-blue",
            "x",
            "1",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    // A name nobody has: an error naming the ones seen.
    let (code, _, err) = banyan_once(&h[2], &["pub", "--backplane-name", "bp-green", "x", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bp-green") && err.contains("bp-red") && err.contains("bp-blue"),
        "{err}"
    );
    // The service broker too: its port (free, not 43126) is announced
    // with the backplane, so `-b NAME` reaches it; an address alone means
    // the default port, where nothing listens here.
    let (code, out, err) = banyan_once(&h[2], &["call", "-b", "bp-blue", "banyan.stats"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert!(stats.get("requests").is_some(), "{out}");
    let (code, _, err) = banyan_once(&h[2], &["services", "-b", "10.77.0.2", "--timeout", "0.5"]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn without_b_the_only_backplane_is_taken_and_several_are_refused() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(3);
    // None in the pool: this host, as before (nothing listens there).
    let (code, _, err) = banyan_once(&h[2], &["pub", "-v", "--wait", "0", "x", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("none in the discovery pool"), "{err}");
    let _solo = banyan_backplane(&h[0], "solo");
    let mut sub = Proc::spawn(
        "sub",
        banyan_cmd(&h[2], &["sub", "-v", "--json", "--count", "1", "only"]),
    );
    let (code, out, err) = banyan_once(&h[2], &["pub", "-v", "only", "[7]"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("backplane \"solo\" (the only one in the discovery pool) at 10.77.0.1"),
        "{err}"
    );
    let line = sub.wait_line(Duration::from_secs(10), |l| l.contains("only"));
    assert!(line.contains("[7]"), "{line}");
    assert!(
        sub.wait_exit(Duration::from_secs(5)).success(),
        "{}",
        sub.output()
    );
    // Two: refused, with both listed and the way out.
    let _other = banyan_backplane(&h[1], "other");
    ls_until(&h[2], Duration::from_secs(10), |l| {
        named(l, "solo").is_some() && named(l, "other").is_some()
    });
    let mut refused = Proc::spawn(
        "sub refused",
        banyan_cmd(&h[2], &["sub", "--count", "1", "x"]),
    );
    let status = refused.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", refused.output());
    let err = refused.output();
    assert!(
        err.contains("2 backplanes")
            && err.contains("solo at 10.77.0.1")
            && err.contains("other at 10.77.0.2")
            && err.contains("-b NAME"),
        "{err}"
    );
    // BANYAN_BACKPLANE still names one.
    let mut cmd = banyan_cmd(&h[2], &["pub", "-v", "--wait", "0", "x", "1"]);
    cmd.env("BANYAN_BACKPLANE", "other");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("backplane \"other\" found at 10.77.0.2"),
        "{err}"
    );
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Figure: a node's time from its start to finding the backplane (its own
/// clock: `ms=` of its `found` line), over 100 starts.
#[test]
#[ignore = "figure (about 20 s): run with --ignored --nocapture"]
fn figure_time_to_first_discovery() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let _bp = backplane(&h[0], "bp", &[]);
    let mut times = Vec::new();
    for _ in 0..100 {
        let mut c = node(&h[1], "comp", &[]);
        times.push(ms(&found(&mut c, "bp", Duration::from_secs(3))));
    }
    times.sort_unstable();
    println!(
        "FIGURE time to first discovery over {} starts: median {} ms, p99 {} ms, max {} ms",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

/// Figure: from SIGKILL of a backplane to `gone` at a component, default
/// 5 s timeout, 10 times.
#[test]
#[ignore = "figure (about 60 s): run with --ignored --nocapture"]
fn figure_time_to_gone() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let mut c = node(&h[1], "comp", &[]);
    let mut times = Vec::new();
    for i in 0..10 {
        let bp = backplane(&h[0], &format!("bp{i}"), &[]);
        found(&mut c, &format!("bp{i}"), Duration::from_secs(2));
        // Kill at a random point of the beacon period.
        std::thread::sleep(Duration::from_millis(500 + 97 * i));
        let t = Instant::now();
        drop(bp);
        let pat = format!("name=bp{i} ");
        c.wait_line(Duration::from_secs(8), |l| {
            l.starts_with("gone") && l.contains(&pat)
        });
        times.push(t.elapsed().as_millis() as u64);
    }
    times.sort_unstable();
    println!(
        "FIGURE kill to gone (timeout 5000 ms) over {} kills: min {} ms, median {} ms, max {} ms",
        times.len(),
        times[0],
        percentile(&times, 0.5),
        times[times.len() - 1]
    );
}

/// Figure: CPU time and bytes sent by a node in a pool with 49 simulated
/// nodes (one process beaconing for all of them, once a second each), over
/// 30 s.
#[test]
#[ignore = "figure (about 35 s): run with --ignored --nocapture"]
fn figure_cpu_in_a_pool_of_50() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &h[0]])
        .arg(node_bin())
        .args(["run", "--name", "measured", "--channel", CHANNEL])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn node");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let child = Kill(child);
    let pid = child.0.id();
    assert!(lines
        .next()
        .expect("line")
        .expect("read")
        .starts_with("ready"));
    // The simulator sends from a plain socket: route multicast to eth0.
    run(&[
        "ip",
        "-n",
        &h[1],
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "eth0",
    ]);
    let mut sim = Command::new("ip");
    sim.args(["netns", "exec", &h[1]]).arg(node_bin()).args([
        "sim",
        "--nodes",
        "49",
        "--seconds",
        "40",
        "--channel",
        CHANNEL,
    ]);
    let _sim = Proc::spawn("sim", sim);
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after = stat.rsplit_once(')').expect("comm").1;
        let f: Vec<u64> = after
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // utime and stime: fields 14 and 15 of stat, 11 and 12 after "(comm) S".
        (f[10] + f[11]) as f64 / 100.0
    };
    let stats = |stdin: &mut std::process::ChildStdin,
                 lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>| {
        writeln!(stdin).expect("stdin");
        loop {
            let l = lines.next().expect("line").expect("read");
            if l.starts_with("stats") {
                return l;
            }
        }
    };
    // Let the pool fill, then measure 30 s.
    std::thread::sleep(Duration::from_secs(3));
    let s0 = stats(&mut stdin, &mut lines);
    let (c0, t0) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(30));
    let s1 = stats(&mut stdin, &mut lines);
    let (c1, secs) = (cpu(), t0.elapsed().as_secs_f64());
    let num = |l: &str, k: &str| -> f64 { field(l, k).and_then(|v| v.parse().ok()).expect(k) };
    let rx = (num(&s1, "received") - num(&s0, "received")) / secs;
    let bytes = (num(&s1, "bytes_sent") - num(&s0, "bytes_sent")) / secs;
    let peers = num(&s1, "found");
    println!(
        "FIGURE node in a pool of 50: CPU {:.3} % of one core ({:.2} s in {:.1} s), {rx:.1} datagrams/s received, \
         {bytes:.1} B/s sent (UDP payload, lo + eth0), {peers} peers found",
        100.0 * (c1 - c0) / secs,
        c1 - c0,
        secs
    );
    assert!(peers >= 49.0, "{s1}");
}

/// Figure: what finding the backplane adds to a component's start. The
/// wall time of `banyan pub --wait 0 x 1` (start, locate, connect, publish,
/// exit) run 20 times per way of naming the backplane, against an address
/// (no lookup) as the baseline; and with nothing given and no backplane in
/// the pool.
#[test]
#[ignore = "figure (about 40 s): run with --ignored --nocapture"]
fn figure_locate_cost() {
    require_netns!();
    let mut lab = Lab::new();
    let h = lab.lan(2);
    let runs = |args: &[&str]| -> (u64, u64) {
        let mut ms: Vec<u64> = (0..20)
            .map(|_| {
                let mut a = vec!["pub", "--wait", "0"];
                a.extend_from_slice(args);
                a.extend_from_slice(&["x", "1"]);
                let t = Instant::now();
                let (code, _, err) = banyan_once(&h[1], &a);
                assert_eq!(code, Some(0), "{err}");
                t.elapsed().as_millis() as u64
            })
            .collect();
        ms.sort_unstable();
        (percentile(&ms, 0.5), percentile(&ms, 0.99))
    };
    let (m, p) = runs(&[]);
    println!(
        "figure locate: nothing given, empty pool: median {m} ms, p99 {p} ms (then 127.0.0.1)"
    );
    let _bp = banyan_backplane(&h[0], "solo");
    let lines = ls_until(&h[1], Duration::from_secs(10), |l| {
        named(l, "solo").is_some()
    });
    let solo = named(&lines, "solo").unwrap();
    let eps: Vec<String> = solo["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().rsplit(':').next().unwrap().to_owned())
        .collect();
    let (pp, sp) = (eps[0].clone(), eps[1].clone());
    let (m0, p0) = runs(&["-b", "10.77.0.1", "-p", &pp, "-s", &sp]);
    println!("figure locate: -b ADDR (baseline): median {m0} ms, p99 {p0} ms");
    for (what, args) in [
        ("nothing given, one backplane", vec![]),
        ("-b NAME", vec!["-b", "solo"]),
        ("--backplane-name NAME", vec!["--backplane-name", "solo"]),
    ] {
        let (m, p) = runs(&args);
        println!(
            "figure locate: {what}: median {m} ms (+{} ms), p99 {p} ms",
            m.saturating_sub(m0)
        );
    }
}
