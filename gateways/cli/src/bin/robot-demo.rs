//! `robot-demo`: a robot on any machine. Starts a backplane (in this
//! process, on free loopback ports) and a robot as child processes, then
//! drives the robot through a motor/LED sequence, printing every message it
//! publishes (`→ topic payload`) and the robot's reports (`← topic …`) live.
//! Ends with a "try it yourself" list of `banyan` commands that do the same
//! by hand.
//!
//! Two robots:
//! - default: `banyan rpi-gateway --sim` (simulated Raspberry Pi pins),
//!   with OneGPIO commands as well; ends by stopping the gateway (SIGTERM),
//!   which leaves every output in the safe state;
//! - `--mcu`: the microcontroller twin, the QEMU firmware
//!   (`firmware/run-qemu.sh`, lm3s6965evb) behind `banyan serial-gateway`
//!   over QEMU's TCP serial port; ends by stopping the gateway during a timed
//!   run: the firmware sees its link go down and stops the motors, as the
//!   report after a gateway restart shows.
//!
//! Needs no TTY; takes about 10 seconds. Exits non-zero if the robot
//! misbehaves (no state reports, no error reports for bad commands, deadman
//! not firing, safe state not reached), so it doubles as a smoke test.
//! `--try-it` prints only the closing command list.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane};
// `println!`/`eprintln!` panic when their stream is closed (a dead pipe, a
// closed SSH session); these write the same lines and ignore a failure, so
// the demo runs to its end, motors stopped, whoever is reading.
use banyan_component::{self as component, Component};
use banyan_component::{safe_eprintln as eprintln, safe_println as println};
use banyan_rpi::gateway::get;
use clap::Parser;
use rmpv::Value;

/// Robot demo: backplane + a simulated robot (rpi-gateway --sim, or the QEMU
/// firmware behind serial-gateway with --mcu) + a driver.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The `banyan` binary that runs the gateways (default: next to this
    /// one).
    #[arg(long)]
    banyan: Option<PathBuf>,
    /// Show the gateway's log (every simulated pin change with rpi-gateway).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// The microcontroller twin: the QEMU firmware behind serial-gateway.
    #[arg(long)]
    mcu: bool,
    /// Firmware ELF for --mcu (built by `cargo build --release` in
    /// firmware/boards/qemu).
    #[arg(
        long,
        value_name = "ELF",
        default_value = "firmware/target/thumbv7m-none-eabi/release/banyan-firmware-qemu"
    )]
    firmware: PathBuf,
    /// The script that starts QEMU (`run-qemu.sh PORT ELF`), for --mcu.
    #[arg(long, value_name = "PATH", default_value = "firmware/run-qemu.sh")]
    run_qemu: PathBuf,
    /// Only print the "try it yourself" commands (with --mcu: the MCU
    /// twin's) and exit.
    #[arg(long)]
    try_it: bool,
}

/// Which robot the demo drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `banyan rpi-gateway --sim`.
    Sim,
    /// The QEMU firmware behind `banyan serial-gateway`.
    Mcu,
}

/// Report topic of the QEMU firmware built without `BANYAN_DEVICE_NAME`.
const MCU_REPORTS: &str = "from_qemu-bot";
/// Serial gateway status topic (its default).
const SERIAL_STATUS: &str = "serial_gateway_status";
/// TCP port the try-it commands give QEMU's UART.
const TRY_QEMU_PORT: u16 = 4550;

/// Kills (SIGTERM, then SIGKILL) the child when dropped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Sends SIGTERM and waits up to `grace` for the child to exit.
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(st)) = child.try_wait() {
                self.0 = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Whether the child has exited (and how), without waiting.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A JSON value on one line, with a space after `:` and `,` (as people
/// type it).
fn pretty(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", J::String(k.clone()), pretty(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        J::Array(a) => format!("[{}]", a.iter().map(pretty).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Quotes `s` for a POSIX shell when it needs quoting.
fn sh_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn fmt_map(v: Option<&Value>, f: impl Fn(&str, f64) -> String) -> String {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let x = v
                        .as_f64()
                        .or_else(|| v.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
                        .unwrap_or(f64::NAN);
                    f(k.as_str().unwrap_or("?"), x)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn describe_state(v: &Value) -> String {
    let motors = fmt_map(get(v, "motors"), |k, s| format!("{k} {s:+.2}"));
    let leds = fmt_map(get(v, "leds"), |k, l| {
        if l == 0.0 {
            format!("{k} off")
        } else if l == 1.0 {
            format!("{k} ON")
        } else {
            format!("{k} {l:.2}")
        }
    });
    let gpio = get(v, "gpio")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, g)| {
                    format!(
                        "{}:{}={}",
                        k.as_str().unwrap_or("?"),
                        get(g, "mode").and_then(Value::as_str).unwrap_or("?"),
                        get(g, "value").map_or("-".into(), |v| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let stopped = get(v, "stopped_by")
        .and_then(Value::as_str)
        .map(|s| format!(" | stopped by {s}"))
        .unwrap_or_default();
    let gpio = if gpio.is_empty() {
        String::new()
    } else {
        format!(" | gpio {gpio}")
    };
    format!("motors {motors} | leds {leds}{gpio}{stopped}")
}

struct Demo {
    comp: Component,
    start: Instant,
    last_state: Option<Value>,
    last_gpio: Option<String>,
    last_link: Option<String>,
    /// The topic the robot's reports came on.
    reports: Option<String>,
    states: usize,
    errors: usize,
    sent: usize,
    last_run_motors: Instant,
}

impl Demo {
    fn t(&self) -> String {
        format!("[{:5.2}s]", self.start.elapsed().as_secs_f64())
    }

    /// Publishes the JSON payload `json` on `topic` and prints it.
    fn send(&mut self, topic: &str, json: &str) {
        let parsed: serde_json::Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("robot-demo: bad JSON in the demo ({e}): {json}");
                return;
            }
        };
        let v = banyan_cli::json::to_msgpack(&parsed);
        if topic == "run_motors" {
            self.last_run_motors = Instant::now();
        }
        println!("{} → {topic} {}", self.t(), pretty(&parsed));
        self.sent += 1;
        if let Err(e) = self.comp.publish_value(topic, &v) {
            eprintln!("robot-demo: publish failed: {e}");
        }
    }

    /// Prints reports arriving within `d`.
    fn watch(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let Ok(Some(m)) = self.comp.recv_timeout(left) else {
                continue;
            };
            let Ok(v) = rmpv::decode::read_value(&mut &m.payload[..]) else {
                continue;
            };
            if m.topic == SERIAL_STATUS {
                self.on_serial_status(&v);
                continue;
            }
            let topic = m.topic.clone();
            match get(&v, "report").and_then(Value::as_str) {
                Some("state") => {
                    let line = describe_state(&v);
                    let same = self
                        .last_state
                        .as_ref()
                        .is_some_and(|l| describe_state(l) == line);
                    if !same {
                        println!("{} ← {topic} state: {line}", self.t());
                    }
                    self.last_state = Some(v);
                    self.reports = Some(topic);
                    self.states += 1;
                }
                Some("status") => {
                    // The gateway's own status: its OneGPIO pins.
                    let line = describe_state(&v);
                    if let Some((_, gpio)) = line.split_once(" | gpio ") {
                        let gpio = gpio.to_owned();
                        if self.last_gpio.as_deref() != Some(gpio.as_str()) {
                            println!("{} ← {topic} status: gpio {gpio}", self.t());
                            self.last_gpio = Some(gpio);
                        }
                    }
                }
                Some("error") => {
                    self.errors += 1;
                    println!(
                        "{} ← {topic} error: {} (topic {})",
                        self.t(),
                        get(&v, "reason").and_then(Value::as_str).unwrap_or("?"),
                        get(&v, "topic").and_then(Value::as_str).unwrap_or("?")
                    );
                }
                Some(other) => println!(
                    "{} ← {topic} {other}: {}",
                    self.t(),
                    banyan_cli::json::display(&v)
                ),
                None => {}
            }
        }
    }

    /// The serial gateway's status: printed when the link state changes.
    fn on_serial_status(&mut self, v: &Value) {
        let link = get(v, "link").and_then(Value::as_str).unwrap_or("?");
        let device = get(v, "device");
        let name = device
            .and_then(|d| get(d, "name"))
            .and_then(Value::as_str)
            .unwrap_or("-");
        let line = format!("link {link}, device {name}");
        if self.last_link.as_deref() != Some(line.as_str()) {
            println!("{} ← {SERIAL_STATUS}: {line}", self.t());
            self.last_link = Some(line);
        }
    }

    /// Drives at the given speeds for `d`, re-sending every 200 ms (the
    /// deadman needs a command at least every 500 ms).
    fn drive(&mut self, left: f64, right: f64, d: Duration) {
        let until = Instant::now() + d;
        let json = format!(r#"{{"left": {left:?}, "right": {right:?}}}"#);
        while Instant::now() < until {
            self.send("run_motors", &json);
            self.watch(
                Duration::from_millis(200).min(until.saturating_duration_since(Instant::now())),
            );
        }
    }

    fn step(&self, what: &str) {
        println!("{} ---- {what}", self.t());
    }

    fn motors(&self) -> Vec<f64> {
        self.last_state
            .as_ref()
            .and_then(|v| get(v, "motors"))
            .and_then(Value::as_map)
            .map(|m| m.iter().filter_map(|(_, s)| s.as_f64()).collect())
            .unwrap_or_default()
    }

    fn stopped_by(&self) -> Option<&str> {
        self.last_state
            .as_ref()
            .and_then(|v| get(v, "stopped_by"))
            .and_then(Value::as_str)
    }

    /// Watches until a state report satisfies `pred`, at most `limit`.
    fn watch_until(&mut self, limit: Duration, pred: impl Fn(&Demo) -> bool) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            self.watch(Duration::from_millis(5));
            if pred(self) {
                return true;
            }
        }
        false
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let kind = if args.mcu { Kind::Mcu } else { Kind::Sim };
    let banyan = match &args.banyan {
        Some(p) => p.clone(),
        None => match std::env::current_exe() {
            Ok(p) => p.with_file_name("banyan"),
            Err(e) => {
                eprintln!("robot-demo: cannot find the banyan binary: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if args.try_it {
        print_try_it(kind, &banyan, &args.run_qemu, None);
        return ExitCode::SUCCESS;
    }
    match demo(&args, kind, &banyan) {
        Ok(reports) => {
            print_try_it(kind, &banyan, &args.run_qemu, reports.as_deref());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("robot-demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The "try it yourself" commands: what the demo did, by hand, on the
/// default ports. `reports` is the report topic the demo saw.
fn try_it(kind: Kind, banyan: &Path, run_qemu: &Path, reports: Option<&str>) -> Vec<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let dir = abs(banyan)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // BANYAN_BACKPLANE: the clients take this backplane (bound to 127.0.0.1,
    // so not in the discovery pool) rather than one announced on the LAN.
    let mut cmds: Vec<(String, String)> = vec![(
        format!(
            "export PATH={}:\"$PATH\" BANYAN_BACKPLANE=127.0.0.1",
            sh_quote(&dir.to_string_lossy())
        ),
        "in each terminal".into(),
    )];
    let mut add = |cmd: String, comment: &str| cmds.push((cmd, comment.to_owned()));
    let leds = match kind {
        Kind::Sim => {
            add(
                "banyan backplane --bind 127.0.0.1".into(),
                "terminal 1: the backplane",
            );
            add(
                "banyan rpi-gateway --sim -v".into(),
                "terminal 2: the robot (-v: every pin change)",
            );
            add(
                format!("banyan sub {}", reports.unwrap_or("from_rpi_gateway")),
                "terminal 3: its reports",
            );
            r#"{"status": true, "headlight": 0.25}"#
        }
        Kind::Mcu => {
            add(
                format!(
                    "{} {TRY_QEMU_PORT}",
                    sh_quote(&abs(run_qemu).to_string_lossy())
                ),
                &format!("terminal 1: the firmware, UART0 on tcp:127.0.0.1:{TRY_QEMU_PORT}"),
            );
            add(
                "banyan backplane --bind 127.0.0.1".into(),
                "terminal 2: the backplane",
            );
            add(
                format!("banyan serial-gateway --device tcp:127.0.0.1:{TRY_QEMU_PORT}"),
                "terminal 3: the gateway",
            );
            add(
                format!("banyan sub {}", reports.unwrap_or(MCU_REPORTS)),
                "terminal 4: the firmware's reports",
            );
            r#"{"status": true, "aux": true}"#
        }
    };
    add(
        format!("banyan pub light_leds {}", sh_quote(leds)),
        "then, in another terminal: LEDs",
    );
    add(
        format!(
            "banyan pub run_motors {} --rate 10 --count 20",
            sh_quote(r#"{"left": 0.5, "right": 0.5}"#)
        ),
        "2 s forward (10 Hz feeds the deadman)",
    );
    add(
        format!(
            "banyan pub run_motors {}",
            sh_quote(r#"{"left": -0.3, "right": 0.3, "duration_ms": 1500}"#)
        ),
        "a timed run: 1.5 s, no repeats needed",
    );
    add(
        "banyan topics".into(),
        "every topic: msgs/s, bytes/s, subscribers",
    );
    let width = cmds
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    cmds.iter()
        .map(|(c, comment)| format!("{c:<width$}  # {comment}"))
        .collect()
}

fn print_try_it(kind: Kind, banyan: &Path, run_qemu: &Path, reports: Option<&str>) {
    println!();
    println!(
        "==> try it yourself: run each command in its own terminal (Ctrl-C stops it; docs/demo.md)"
    );
    for line in try_it(kind, banyan, run_qemu, reports) {
        println!("    {line}");
    }
}

/// Starts `banyan GATEWAY ARGS -b 127.0.0.1 -p PP -s SP`.
fn start_gateway(
    banyan: &Path,
    args: &[String],
    (pp, sp): (u16, u16),
    verbose: bool,
) -> Result<ChildGuard, String> {
    let mut cmd = Command::new(banyan);
    cmd.args(args)
        .args(["-b", "127.0.0.1", "-p"])
        .arg(pp.to_string())
        .arg("-s")
        .arg(sp.to_string())
        .stdin(Stdio::null());
    if verbose {
        cmd.arg("-v");
    } else {
        cmd.stderr(Stdio::null());
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", banyan.display()))?;
    println!(
        "robot-demo: started banyan {} -b 127.0.0.1 -p {pp} -s {sp}",
        args.join(" ")
    );
    Ok(ChildGuard(Some(child)))
}

/// Runs the demo; returns the report topic it saw.
fn demo(args: &Args, kind: Kind, banyan: &Path) -> Result<Option<String>, String> {
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .map_err(|e| format!("backplane: {e}"))?;
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let _bp = bp.spawn().map_err(|e| format!("backplane: {e}"))?;
    println!("robot-demo: backplane on 127.0.0.1, publisher port {pp}, subscriber port {sp}");

    let mut _qemu = None;
    let mut gw_args: Vec<String> = vec!["rpi-gateway".into(), "--sim".into()];
    if kind == Kind::Mcu {
        if !args.firmware.exists() {
            return Err(format!(
                "firmware {} missing: build it with `cd firmware/boards/qemu && cargo build --release` \
                 (bash scripts/demo.sh --mcu does)",
                args.firmware.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for QEMU's UART: {e}"))?
            .port();
        let mut q = Command::new(&args.run_qemu);
        // stdout carries the firmware's raw defmt frames: not for people.
        q.arg(port.to_string())
            .arg(&args.firmware)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if !args.verbose {
            q.stderr(Stdio::null());
        }
        let child = q.spawn().map_err(|e| {
            format!(
                "cannot start {} (is qemu-system-arm installed?): {e}",
                args.run_qemu.display()
            )
        })?;
        _qemu = Some(ChildGuard(Some(child)));
        println!(
            "robot-demo: started {} {port} (QEMU lm3s6965evb, UART0 on tcp:127.0.0.1:{port})",
            args.run_qemu.display()
        );
        gw_args = vec![
            "serial-gateway".into(),
            "--device".into(),
            format!("tcp:127.0.0.1:{port}"),
        ];
    }
    let mut gateway = start_gateway(banyan, &gw_args, (pp, sp), args.verbose)?;

    let mut cc = component::Config::new("127.0.0.1", pp, sp);
    cc.name = "robot-demo".into();
    let mut comp = Component::connect(cc).map_err(|e| e.to_string())?;
    let (subs, ready, wait): (&[&str], &[&str], u64) = match kind {
        Kind::Sim => (
            &["from_rpi_gateway"],
            &["run_motors", "light_leds", "to_rpi_gateway"],
            10,
        ),
        // The device's subscriptions reach the backplane once the link is
        // up: QEMU boots, the gateway connects, the link handshakes.
        Kind::Mcu => (&["from_", SERIAL_STATUS], &["run_motors", "light_leds"], 30),
    };
    for s in subs {
        comp.subscribe(s).map_err(|e| e.to_string())?;
    }
    println!(
        "robot-demo: \"→ TOPIC PAYLOAD\" is a message the demo publishes, \"← TOPIC …\" one it receives"
    );
    let start = Instant::now();
    for topic in ready {
        if !comp
            .wait_for_subscriber(topic, Duration::from_secs(wait))
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the robot did not subscribe to {topic} within {wait} s"
            ));
        }
    }
    let mut d = Demo {
        comp,
        start,
        last_state: None,
        last_gpio: None,
        last_link: None,
        reports: None,
        states: 0,
        errors: 0,
        sent: 0,
        last_run_motors: Instant::now(),
    };
    d.watch(Duration::from_millis(100));

    match kind {
        Kind::Sim => {
            d.step("status LED on, headlight at 25 %");
            d.send("light_leds", r#"{"status": true, "headlight": 0.25}"#);
        }
        Kind::Mcu => {
            d.step("status and aux LEDs on");
            d.send("light_leds", r#"{"status": true, "aux": true}"#);
        }
    }
    d.watch(Duration::from_millis(300));
    d.step("forward at half speed (run_motors again every 200 ms: the deadman)");
    d.drive(0.5, 0.5, Duration::from_millis(1000));
    d.step("spin left");
    d.drive(-0.4, 0.4, Duration::from_millis(600));
    match kind {
        Kind::Sim => {
            d.step("reverse, headlight full");
            d.send("light_leds", r#"{"headlight": 1.0}"#);
        }
        Kind::Mcu => {
            d.step("reverse, aux LED off");
            d.send("light_leds", r#"{"aux": false}"#);
        }
    }
    d.drive(-0.3, -0.3, Duration::from_millis(600));
    d.step("stop");
    d.drive(0.0, 0.0, Duration::from_millis(200));

    if kind == Kind::Sim {
        d.step("OneGPIO blinker on GPIO 4 (tag \"blinker\")");
        d.send(
            "to_rpi_gateway",
            r#"{"command": "set_mode_digital_output", "pin": 4, "tag": "blinker"}"#,
        );
        for i in 0..4 {
            d.send(
                "to_rpi_gateway",
                &format!(
                    r#"{{"command": "digital_write", "tag": "blinker", "value": {}}}"#,
                    1 - i % 2
                ),
            );
            d.watch(Duration::from_millis(150));
        }
        d.step("servo on GPIO 13: 0, 90, 180 degrees");
        d.send(
            "to_rpi_gateway",
            r#"{"command": "set_mode_servo", "pin": 13}"#,
        );
        for pos in [0, 90, 180] {
            d.send(
                "to_rpi_gateway",
                &format!(r#"{{"command": "servo_position", "pin": 13, "position": {pos}}}"#),
            );
            d.watch(Duration::from_millis(150));
        }
    }

    d.step("bad commands (each answered by an error report; nothing changes)");
    let bad: [(&str, &str); 4] = match kind {
        Kind::Sim => [
            ("run_motors", r#"{"left": 2.0}"#),
            ("run_motors", r#"{"middle": 0.5}"#),
            (
                "to_rpi_gateway",
                r#"{"command": "digital_write", "pin": 18, "value": 1}"#,
            ),
            ("to_rpi_gateway", r#"{"command": "fly"}"#),
        ],
        Kind::Mcu => [
            ("run_motors", r#"{"left": 2.0}"#),
            ("run_motors", r#"{"middle": 0.5}"#),
            ("run_motors", r#"{"left": "fast"}"#),
            ("light_leds", r#"{"headlight": 1.0}"#),
        ],
    };
    let errors_before = d.errors;
    for (topic, json) in bad {
        // One at a time: serial-gateway forwards only the newest of a
        // backlog of run_motors commands.
        d.send(topic, json);
        d.watch(Duration::from_millis(150));
    }
    d.watch(Duration::from_millis(150));
    if d.errors < errors_before + bad.len() {
        return Err(format!(
            "expected {} error reports, got {}",
            bad.len(),
            d.errors - errors_before
        ));
    }

    d.step("forward at 60 %, then silence: the deadman (500 ms) must stop the motors");
    d.drive(0.6, 0.6, Duration::from_millis(400));
    let silent = d.last_run_motors;
    if !d.watch_until(Duration::from_millis(1500), |d| {
        d.motors().iter().all(|s| *s == 0.0)
    }) {
        return Err("the deadman did not stop the motors within 1.5 s".into());
    }
    println!(
        "{} ---- motors stopped {} ms after the last run_motors (stopped by {})",
        d.t(),
        silent.elapsed().as_millis(),
        d.stopped_by().unwrap_or("?")
    );

    match kind {
        Kind::Sim => {
            d.step("stopping rpi-gateway (SIGTERM): outputs go to the safe state");
            let status = gateway.terminate(Duration::from_secs(3));
            d.watch(Duration::from_millis(300));
            match status {
                Some(st) if st.success() => {
                    println!("{} ---- rpi-gateway exited cleanly", d.t());
                }
                Some(st) => return Err(format!("rpi-gateway exited with {st}")),
                None => return Err("rpi-gateway did not exit within 3 s of SIGTERM".into()),
            }
            let safe = d.last_state.as_ref().is_some_and(|v| {
                get(v, "stopped_by").and_then(Value::as_str) == Some("exit")
                    && [get(v, "motors"), get(v, "leds")].iter().all(|m| {
                        m.and_then(Value::as_map)
                            .is_some_and(|m| m.iter().all(|(_, x)| x.as_f64() == Some(0.0)))
                    })
            });
            if !safe {
                return Err("no final safe-state report (motors 0, LEDs off)".into());
            }
        }
        Kind::Mcu => mcu_finale(&mut d, &mut gateway, banyan, &gw_args, (pp, sp), args)?,
    }
    if let Some(q) = _qemu.as_mut() {
        if let Some(st) = q.exited() {
            return Err(format!("QEMU exited during the demo ({st})"));
        }
    }
    println!(
        "robot-demo: done in {:.1} s: {} messages sent, {} state reports, {} error reports",
        d.start.elapsed().as_secs_f64(),
        d.sent,
        d.states,
        d.errors
    );
    Ok(d.reports.clone())
}

/// The MCU twin's ending: a timed run, then serial-gateway goes away; the
/// firmware stops its motors when its link times out, and says so in its
/// first report to the next gateway.
fn mcu_finale(
    d: &mut Demo,
    gateway: &mut ChildGuard,
    banyan: &Path,
    gw_args: &[String],
    ports: (u16, u16),
    args: &Args,
) -> Result<(), String> {
    d.step("a timed run (3 s, no repeats needed), then serial-gateway stops (SIGTERM)");
    d.send(
        "run_motors",
        r#"{"left": 0.4, "right": 0.4, "duration_ms": 3000}"#,
    );
    if !d.watch_until(Duration::from_secs(2), |d| {
        d.motors().iter().any(|s| *s != 0.0)
    }) {
        return Err("the firmware did not start the timed run".into());
    }
    match gateway.terminate(Duration::from_secs(3)) {
        Some(st) if st.success() => println!("{} ---- serial-gateway exited cleanly", d.t()),
        Some(st) => return Err(format!("serial-gateway exited with {st}")),
        None => return Err("serial-gateway did not exit within 3 s of SIGTERM".into()),
    }
    d.step("the firmware's link times out after 1 s of silence: it stops the motors");
    // Long enough for the link timeout (1 s), well short of the run's end.
    std::thread::sleep(Duration::from_millis(1300));
    d.step("serial-gateway again: the firmware's first report says how the motors stopped");
    d.last_state = None;
    *gateway = start_gateway(banyan, gw_args, ports, args.verbose)?;
    if !d.watch_until(Duration::from_secs(20), |d| d.last_state.is_some()) {
        return Err("no state report from the firmware after the gateway restart".into());
    }
    let stopped = d.motors().iter().all(|s| *s == 0.0);
    if !stopped || d.stopped_by() != Some("link_lost") {
        return Err(format!(
            "expected motors stopped by link_lost, got: {}",
            d.last_state
                .as_ref()
                .map(describe_state)
                .unwrap_or_default()
        ));
    }
    d.step("stopping serial-gateway (SIGTERM) and QEMU");
    match gateway.terminate(Duration::from_secs(3)) {
        Some(st) if st.success() => {
            println!("{} ---- serial-gateway exited cleanly", d.t());
            Ok(())
        }
        Some(st) => Err(format!("serial-gateway exited with {st}")),
        None => Err("serial-gateway did not exit within 3 s of SIGTERM".into()),
    }
}
