//! `robot-demo`'s closing "try it yourself" commands (`--try-it`): every
//! `banyan …` line parses with the real `banyan` command line, and the lines
//! run as printed (ports changed to free ones) drive the simulated robot end
//! to end: LEDs on, a 2 s drive, a timed run, `topics` listing what flowed.
//! The MCU twin's lines run against the QEMU firmware in an ignored test
//! (`scripts/ci.d/60-serial-qemu.sh` runs it).

// A test: a failed assumption is a failed test (the workspace lints forbid
// these in product code; clippy.toml allows them only inside #[test]s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_cli::Cli;
use banyan_component::{self as component, Component};
use clap::Parser;

const DEMO: &str = env!("CARGO_BIN_EXE_robot-demo");
const BANYAN: &str = env!("CARGO_BIN_EXE_banyan");
const T: Duration = Duration::from_secs(30);
/// The UART port the MCU lines give QEMU.
const TRY_QEMU_PORT: &str = "4550";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The indented lines after robot-demo's "try it yourself" heading.
fn try_it(mcu: bool) -> Vec<String> {
    let mut cmd = Command::new(DEMO);
    cmd.args(["--try-it", "--banyan", BANYAN])
        .arg("--run-qemu")
        .arg(root().join("firmware/run-qemu.sh"));
    if mcu {
        cmd.arg("--mcu");
    }
    let out = cmd.output().expect("run robot-demo --try-it");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (_, block) = text
        .split_once("==> try it yourself")
        .unwrap_or_else(|| panic!("no try-it heading:\n{text}"));
    let lines: Vec<String> = block
        .lines()
        .skip(1)
        .map(|l| {
            l.strip_prefix("    ")
                .unwrap_or_else(|| panic!("not indented: {l:?}"))
        })
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 6, "{text}");
    lines
}

/// Splits a line into words as a POSIX shell does for what the demo prints:
/// blanks, '…' and "…" quoting, a `#` comment starting a word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    out.push(w);
                }
            }
            '#' if word.is_none() => break,
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

#[test]
fn the_shell_splitter_splits_like_sh() {
    assert_eq!(
        words(r#"banyan pub t '{"a": 1}' --rate 10   # comment 'x'"#),
        ["banyan", "pub", "t", r#"{"a": 1}"#, "--rate", "10"]
    );
    assert_eq!(
        words(r#"export PATH=/a/b:"$PATH" B=1  # x"#),
        ["export", "PATH=/a/b:$PATH", "B=1"]
    );
    assert_eq!(words(r"a 'it'\''s' b"), ["a", "it's", "b"]);
}

/// Checks the block of one robot: the PATH line names the banyan binary's
/// directory, every `banyan` line parses, and the expected subcommands are
/// there. Returns the command lines as words.
fn checked(mcu: bool) -> Vec<Vec<String>> {
    let lines = try_it(mcu);
    let export = words(&lines[0]);
    let bin_dir = std::path::absolute(Path::new(BANYAN))
        .unwrap()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        export,
        [
            "export",
            &format!("PATH={bin_dir}:$PATH"),
            "BANYAN_BACKPLANE=127.0.0.1"
        ]
    );
    let cmds: Vec<Vec<String>> = lines[1..].iter().map(|l| words(l)).collect();
    let mut subcommands = Vec::new();
    for w in &cmds {
        if w[0] == "banyan" {
            if let Err(e) = Cli::try_parse_from(w) {
                panic!("{w:?} does not parse: {e}");
            }
            subcommands.push(w[1].clone());
        } else {
            assert!(mcu, "not a banyan command: {w:?}");
            assert!(w[0].ends_with("firmware/run-qemu.sh"), "{w:?}");
            assert!(Path::new(&w[0]).is_file(), "{w:?}");
            assert_eq!(w[1..], [TRY_QEMU_PORT]);
        }
    }
    let gateway = if mcu { "serial-gateway" } else { "rpi-gateway" };
    for expected in ["backplane", gateway, "sub", "pub", "topics"] {
        assert!(
            subcommands.iter().any(|s| s == expected),
            "no banyan {expected} in {lines:#?}"
        );
    }
    cmds
}

#[test]
fn every_try_it_command_parses_with_the_banyan_command_line() {
    checked(false);
    checked(true);
}

/// A child with its stdout lines collected; SIGKILLed on drop if still
/// running.
struct Proc {
    what: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(words: &[String]) -> Proc {
        let mut cmd = if words[0] == "banyan" {
            Command::new(BANYAN)
        } else {
            Command::new(&words[0])
        };
        // run-qemu.sh's stdout is the firmware's raw defmt frames.
        let stdout = if words[0] == "banyan" {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.args(&words[1..])
            // As the try-it block's first line sets it.
            .env("BANYAN_BACKPLANE", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {words:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let l = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    l.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Proc {
            what: words.join(" "),
            child,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a stdout line matching `pred`.
    fn wait_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + T;
        while Instant::now() < until {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{}: no matching line in {:#?}", self.what, self.lines());
    }

    /// Waits for the exit; true when it exited with status 0.
    fn wait_success(&mut self) -> bool {
        let until = Instant::now() + T;
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} did not exit within {T:?}", self.what);
    }

    /// SIGTERM, then the exit status (true when 0).
    fn stop(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_success()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Runs a robot's try-it lines as printed, on free ports: `-p`/`-s` added
/// after each subcommand, QEMU's UART port replaced. Returns the `sub`
/// output and the `topics` output.
fn run_try_it(mcu: bool) -> (Vec<String>, Vec<String>) {
    let cmds = checked(mcu);
    let qemu_port = free_port().to_string();
    let with_ports = |w: &[String], pp: u16, sp: u16| -> Vec<String> {
        let mut v: Vec<String> = w
            .iter()
            .map(|x| x.replace(TRY_QEMU_PORT, &qemu_port))
            .collect();
        if v[0] == "banyan" {
            v.splice(
                2..2,
                ["-p".into(), pp.to_string(), "-s".into(), sp.to_string()],
            );
        }
        v
    };
    let mut running: Vec<Proc> = Vec::new();
    let mut ports = None;
    let mut sub = None;
    let mut topics = Vec::new();
    for w in &cmds {
        if w[0] != "banyan" {
            // firmware/run-qemu.sh PORT: QEMU, until killed.
            running.push(Proc::spawn(&with_ports(w, 0, 0)));
            continue;
        }
        match w[1].as_str() {
            "backplane" => {
                let bp = Proc::spawn(&with_ports(w, 0, 0));
                let port =
                    |l: String| -> u16 { l.rsplit(' ').next().unwrap().trim().parse().unwrap() };
                let sp = port(bp.wait_line(|l| l.starts_with("Subscriber Port = ")));
                let pp = port(bp.wait_line(|l| l.starts_with("Publisher  Port = ")));
                ports = Some((pp, sp));
                running.push(bp);
            }
            sub_cmd => {
                let (pp, sp) = ports.expect("backplane first");
                let mut probe =
                    Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
                let p = Proc::spawn(&with_ports(w, pp, sp));
                match sub_cmd {
                    "rpi-gateway" | "serial-gateway" => {
                        // Ready when the robot's subscriptions arrived.
                        for t in ["run_motors", "light_leds"] {
                            assert!(
                                probe.wait_for_subscriber(t, T).unwrap(),
                                "{sub_cmd}: no subscriber to {t}"
                            );
                        }
                        running.push(p);
                    }
                    "sub" => {
                        assert!(probe.wait_for_subscriber(&w[2], T).unwrap());
                        sub = Some(p);
                    }
                    "pub" => {
                        let mut p = p;
                        assert!(p.wait_success(), "{w:?} failed");
                    }
                    "topics" => {
                        let mut p = p;
                        assert!(p.wait_success(), "{w:?} failed");
                        topics = p.lines();
                    }
                    other => panic!("unexpected subcommand {other}"),
                }
            }
        }
    }
    let mut sub = sub.expect("a sub line");
    // The timed run's end (1.5 s) reaches the subscriber.
    sub.wait_line(|l| l.contains("run_end"));
    assert!(sub.stop(), "sub did not exit cleanly");
    // Gateways and the backplane exit cleanly on SIGTERM (QEMU is killed).
    for p in running.iter_mut().rev() {
        if !p.what.contains("run-qemu.sh") {
            assert!(p.stop(), "{} did not exit cleanly", p.what);
        }
    }
    (sub.lines(), topics)
}

fn check_run(sub: &[String], topics: &[String], reports: &str, led: &str) {
    let has = |needles: &[&str]| {
        sub.iter()
            .any(|l| l.contains(reports) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(has(&[led]), "no LED state in {sub:#?}");
    assert!(has(&["0.5", "\"report\""]), "no drive state in {sub:#?}");
    assert!(
        has(&["-0.3", "\"report\""]),
        "no timed-run state in {sub:#?}"
    );
    for t in ["run_motors", "light_leds", reports] {
        assert!(
            topics.iter().any(|l| l.contains(t)),
            "topics lacks {t}: {topics:#?}"
        );
    }
}

#[test]
fn try_it_commands_drive_the_sim_robot_end_to_end() {
    let (sub, topics) = run_try_it(false);
    check_run(&sub, &topics, "from_rpi_gateway", "0.25");
}

#[test]
#[ignore = "needs qemu-system-arm and the QEMU firmware; run by scripts/ci.d/60-serial-qemu.sh"]
fn try_it_commands_drive_the_qemu_firmware_end_to_end() {
    let (sub, topics) = run_try_it(true);
    check_run(&sub, &topics, "from_qemu-bot", "\"aux\"");
}
