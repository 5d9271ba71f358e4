//! `robot-demo`: a simulated robot on any machine. Starts a backplane (in
//! this process, on free loopback ports), `rpi-gateway --sim` as a child
//! process, then drives the robot through a motor/LED/OneGPIO sequence and
//! prints the gateway's state reports live. Ends by letting the deadman stop
//! the motors and stopping the gateway (SIGTERM), which leaves every output
//! in the safe state. Needs no TTY; takes about 8 seconds.
//!
//! Exits non-zero if the gateway misbehaves (no state reports, deadman not
//! firing, safe state not reached), so it doubles as a smoke test.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane};
use banyan_component::{self as component, Component};
use banyan_rpi::gateway::get;
use clap::Parser;
use rmpv::Value;

/// Simulated robot demo: backplane + rpi-gateway --sim + a driver.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The `banyan` binary that runs `banyan rpi-gateway` (default: next to
    /// this one).
    #[arg(long)]
    banyan: Option<PathBuf>,
    /// Show every simulated pin change logged by the gateway.
    #[arg(short = 'v', long)]
    verbose: bool,
}

/// Kills (SIGTERM, then SIGKILL) the child when dropped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Sends SIGTERM and waits up to `grace` for the child to exit.
    fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
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
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Demo {
    comp: Component,
    start: Instant,
    last_state: Option<Value>,
    last_gpio: Option<String>,
    states: usize,
    errors: usize,
    last_run_motors: Instant,
}

fn fmt_map(v: Option<&Value>, f: impl Fn(&str, f64) -> String) -> String {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| f(k.as_str().unwrap_or("?"), v.as_f64().unwrap_or(f64::NAN)))
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

impl Demo {
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn send(&mut self, topic: &str, entries: &[(&str, Value)]) {
        let v = Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        );
        if topic == "run_motors" {
            self.last_run_motors = Instant::now();
        }
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
            match get(&v, "report").and_then(Value::as_str) {
                Some("state") => {
                    let line = describe_state(&v);
                    let same = self
                        .last_state
                        .as_ref()
                        .is_some_and(|l| describe_state(l) == line);
                    if !same {
                        println!("[{:5.2}s] state  {line}", self.t());
                    }
                    self.last_state = Some(v);
                    self.states += 1;
                }
                Some("status") => {
                    // The gateway's own status: its OneGPIO pins.
                    let line = describe_state(&v);
                    if let Some((_, gpio)) = line.split_once(" | gpio ") {
                        let gpio = gpio.to_owned();
                        if self.last_gpio.as_deref() != Some(gpio.as_str()) {
                            println!("[{:5.2}s] status gpio {gpio}", self.t());
                            self.last_gpio = Some(gpio);
                        }
                    }
                }
                Some("error") => {
                    self.errors += 1;
                    println!(
                        "[{:5.2}s] error  {} (topic {})",
                        self.t(),
                        get(&v, "reason").and_then(Value::as_str).unwrap_or("?"),
                        get(&v, "topic").and_then(Value::as_str).unwrap_or("?")
                    );
                }
                Some(other) => println!("[{:5.2}s] {other:<6} {v}", self.t()),
                None => {}
            }
        }
    }

    /// Drives at the given speeds for `d`, re-sending every 100 ms (the
    /// deadman needs a command at least every 500 ms).
    fn drive(&mut self, left: f64, right: f64, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.send(
                "run_motors",
                &[("left", left.into()), ("right", right.into())],
            );
            self.watch(Duration::from_millis(100).min(until - Instant::now().min(until)));
        }
    }

    fn step(&self, what: &str) {
        println!("[{:5.2}s] ---- {what}", self.t());
    }

    fn motors(&self) -> Vec<f64> {
        self.last_state
            .as_ref()
            .and_then(|v| get(v, "motors"))
            .and_then(Value::as_map)
            .map(|m| m.iter().filter_map(|(_, s)| s.as_f64()).collect())
            .unwrap_or_default()
    }
}

fn cmd(name: &str, rest: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
    let mut v = vec![("command", Value::from(name))];
    v.extend_from_slice(rest);
    v
}

fn main() -> ExitCode {
    match demo(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("robot-demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: Args) -> Result<(), String> {
    let gateway = match args.banyan {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("banyan"),
    };
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .map_err(|e| format!("backplane: {e}"))?;
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let _bp = bp.spawn().map_err(|e| format!("backplane: {e}"))?;
    println!("robot-demo: backplane on 127.0.0.1, publisher port {pp}, subscriber port {sp}");

    let mut gw_cmd = Command::new(&gateway);
    gw_cmd
        .args(["rpi-gateway", "--sim", "-b", "127.0.0.1", "-p"])
        .arg(pp.to_string())
        .arg("-s")
        .arg(sp.to_string())
        .stdin(Stdio::null());
    if args.verbose {
        gw_cmd.arg("-v");
    } else {
        gw_cmd.stderr(Stdio::null());
    }
    let child = gw_cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", gateway.display()))?;
    let mut child = ChildGuard(Some(child));
    println!(
        "robot-demo: started {} rpi-gateway --sim",
        gateway.display()
    );

    let mut cc = component::Config::new("127.0.0.1", pp, sp);
    cc.name = "robot-demo".into();
    let mut comp = Component::connect(cc).map_err(|e| e.to_string())?;
    comp.subscribe("from_rpi_gateway")
        .map_err(|e| e.to_string())?;
    // The gateway is ready once its subscriptions reached our publisher.
    for topic in ["run_motors", "light_leds", "to_rpi_gateway"] {
        if !comp
            .wait_for_subscriber(topic, Duration::from_secs(10))
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "rpi-gateway did not subscribe to {topic} within 10 s"
            ));
        }
    }
    let mut d = Demo {
        comp,
        start: Instant::now(),
        last_state: None,
        last_gpio: None,
        states: 0,
        errors: 0,
        last_run_motors: Instant::now(),
    };

    d.step("status LED on, headlight at 25 %");
    d.send(
        "light_leds",
        &[("status", true.into()), ("headlight", 0.25.into())],
    );
    d.watch(Duration::from_millis(300));
    d.step("forward at half speed");
    d.drive(0.5, 0.5, Duration::from_millis(1000));
    d.step("spin left");
    d.drive(-0.4, 0.4, Duration::from_millis(600));
    d.step("reverse, headlight full");
    d.send("light_leds", &[("headlight", 1.0.into())]);
    d.drive(-0.3, -0.3, Duration::from_millis(600));
    d.step("stop");
    d.drive(0.0, 0.0, Duration::from_millis(200));

    d.step("OneGPIO blinker on GPIO 4 (tag \"blinker\")");
    d.send(
        "to_rpi_gateway",
        &cmd(
            "set_mode_digital_output",
            &[("pin", 4.into()), ("tag", "blinker".into())],
        ),
    );
    for i in 0..4 {
        d.send(
            "to_rpi_gateway",
            &cmd(
                "digital_write",
                &[("tag", "blinker".into()), ("value", (1 - i % 2).into())],
            ),
        );
        d.watch(Duration::from_millis(150));
    }
    d.step("servo on GPIO 13: 0, 90, 180 degrees");
    d.send(
        "to_rpi_gateway",
        &cmd("set_mode_servo", &[("pin", 13.into())]),
    );
    for pos in [0, 90, 180] {
        d.send(
            "to_rpi_gateway",
            &cmd(
                "servo_position",
                &[("pin", 13.into()), ("position", pos.into())],
            ),
        );
        d.watch(Duration::from_millis(150));
    }

    d.step("bad commands (each answered by an error report; nothing changes)");
    d.send("run_motors", &[("left", 2.0.into())]);
    d.send("run_motors", &[("middle", 0.5.into())]);
    d.send(
        "to_rpi_gateway",
        &cmd("digital_write", &[("pin", 18.into()), ("value", 1.into())]),
    );
    d.send("to_rpi_gateway", &cmd("fly", &[]));
    d.watch(Duration::from_millis(300));
    if d.errors < 4 {
        return Err(format!("expected 4 error reports, got {}", d.errors));
    }

    d.step("forward at 60 %, then silence: the deadman (500 ms) must stop the motors");
    d.drive(0.6, 0.6, Duration::from_millis(300));
    let silent = d.last_run_motors;
    let mut stopped_after = None;
    while silent.elapsed() < Duration::from_millis(1500) {
        d.watch(Duration::from_millis(5));
        if d.motors().iter().all(|s| *s == 0.0) {
            stopped_after = Some(silent.elapsed());
            break;
        }
    }
    match stopped_after {
        Some(t) => println!(
            "[{:5.2}s] ---- motors stopped {} ms after the last run_motors",
            d.t(),
            t.as_millis()
        ),
        None => return Err("the deadman did not stop the motors within 1.5 s".into()),
    }

    d.step("stopping rpi-gateway (SIGTERM): outputs go to the safe state");
    let status = child.terminate(Duration::from_secs(3));
    d.watch(Duration::from_millis(300));
    match status {
        Some(st) if st.success() => println!("[{:5.2}s] ---- rpi-gateway exited cleanly", d.t()),
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
    println!(
        "robot-demo: done in {:.1} s: {} state reports, {} error reports",
        d.t(),
        d.states,
        d.errors
    );
    Ok(())
}
