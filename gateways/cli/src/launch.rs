//! `banyan launch FILE`: starts a whole robot from one file.
//!
//! Two formats (chosen by the file extension):
//!
//! - **`.toml`**, a robot file:
//!
//!   ```toml
//!   [backplane]                 # optional; these are the defaults
//!   start = true                # start `banyan backplane` (unless one answers already)
//!   host = "127.0.0.1"
//!   publisher_port = 43124
//!   subscriber_port = 43125
//!   args = []                   # more `banyan backplane` flags, e.g. ["--bind", "127.0.0.1"]
//!
//!   [[process]]
//!   name = "motors"
//!   command = ["banyan", "rpi-gateway"]   # "banyan" is this very binary
//!   motor = true                # stopped first
//!   backplane_args = true       # append -b HOST -p PORT -s PORT
//!   restart = "on-failure"      # "never" (default), "on-failure", "always"
//!   restart_delay_ms = 1000
//!   max_restarts = 5            # then it stays down (an event says so)
//!   ready_topic = "run_motors"  # ready once it subscribes to this topic
//!   wait_ms = 0                 # then wait this long before the next one
//!   ```
//!
//! - **`.csv`**, Python Banyan's `bls` launch spec, read unchanged: columns
//!   `command_string,spawn,topic,append_bp_address,auto_restart,wait`. Rows
//!   whose `topic` is not `local` are for remote `blc` launchers and are
//!   skipped with a warning; `spawn = yes` (an xterm) runs the command
//!   inline; `auto_restart = yes` restarts it after 1 s, without limit;
//!   `wait` is seconds to wait after starting it; `append_bp_address = yes`
//!   appends `-b HOST`. As `bls` does, a backplane is started first unless
//!   one answers already.
//!
//! The backplane comes first and must accept connections before any other
//! process starts; then the processes start in file order, each ready when
//! its `ready_topic` subscription reached the backplane (if it has one).
//! Their output is printed line by line prefixed `[name]` (stdout to
//! stdout, stderr to stderr). A process that exits is restarted as its
//! policy says, and every exit, restart and give-up is published on the
//! backplane as `{"event": …, "process": …, …}` on topic [`EVENT_TOPIC`].
//! Children run in their own process group, so a terminal's Ctrl-C reaches
//! only the launcher, which stops them in order: motor processes first,
//! then the others in reverse start order, the backplane last — each with
//! SIGINT, then SIGTERM, then SIGKILL, [`STOP_STEP`] apart.
//!
//! `banyan launch --systemd DIR FILE` writes one unit per process instead
//! (and a `.target` grouping them) for the same robot.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use banyan_component::Component;
use serde::Deserialize;

use crate::output::{self, Failure, Result};

/// Topic of the launcher's events (process exited, restarted, gave up).
pub const EVENT_TOPIC: &str = "banyan_launch";
/// Time between SIGINT, SIGTERM and SIGKILL when stopping a process.
pub const STOP_STEP: Duration = Duration::from_secs(2);

/// Flags of `banyan launch`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The robot: a `.toml` robot file or a `bls` launch `.csv`.
    pub file: PathBuf,
    /// Write systemd units for the robot into DIR instead of running it.
    #[arg(long, value_name = "DIR")]
    pub systemd: Option<PathBuf>,
    /// Backplane host (overrides the file; CSV: the `-b` appended).
    #[arg(
        short = 'b',
        long = "backplane",
        env = "BANYAN_BACKPLANE",
        value_name = "HOST"
    )]
    pub backplane: Option<String>,
    /// Backplane publisher port (overrides the file).
    #[arg(short = 'p', long = "publisher-port", value_name = "PORT")]
    pub publisher_port: Option<u16>,
    /// Backplane subscriber port (overrides the file).
    #[arg(short = 's', long = "subscriber-port", value_name = "PORT")]
    pub subscriber_port: Option<u16>,
    /// Name of the launcher's own component (events on the backplane).
    #[arg(short = 'n', long = "name", default_value = "launcher")]
    pub name: String,
}

/// When a process is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never (default).
    #[default]
    Never,
    /// When it exits with a failure status or a signal.
    OnFailure,
    /// Whenever it exits.
    Always,
}

/// `[backplane]` of a robot file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackplaneSpec {
    /// Start `banyan backplane` (unless one answers already).
    pub start: bool,
    /// Host the processes connect to.
    pub host: String,
    /// Publisher port.
    pub publisher_port: u16,
    /// Subscriber port.
    pub subscriber_port: u16,
    /// More `banyan backplane` flags.
    pub args: Vec<String>,
}

impl Default for BackplaneSpec {
    fn default() -> Self {
        BackplaneSpec {
            start: true,
            host: "127.0.0.1".into(),
            publisher_port: banyan_component::PUBLISHER_PORT,
            subscriber_port: banyan_component::SUBSCRIBER_PORT,
            args: Vec::new(),
        }
    }
}

/// A command line: a list, or a string split on whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// `["prog", "arg"]`.
    List(Vec<String>),
    /// `"prog arg"`.
    Text(String),
}

impl CommandLine {
    fn words(&self) -> Vec<String> {
        match self {
            CommandLine::List(v) => v.clone(),
            CommandLine::Text(t) => t.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

/// `[[process]]` of a robot file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Name (log prefix, events).
    pub name: String,
    /// The command; a first word `banyan` is this binary.
    pub command: CommandLine,
    /// A motor process: stopped first.
    #[serde(default)]
    pub motor: bool,
    /// Append `-b HOST -p PORT -s PORT`.
    #[serde(default)]
    pub backplane_args: bool,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// Delay before a restart (ms).
    #[serde(default = "default_delay")]
    pub restart_delay_ms: u64,
    /// Restarts allowed (none = no limit).
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// Ready once a subscription to this topic reached the backplane.
    #[serde(default)]
    pub ready_topic: Option<String>,
    /// Wait this long after it is ready before starting the next one (ms).
    #[serde(default)]
    pub wait_ms: u64,
    /// From a `bls` CSV: `backplane_args` appends only `-b HOST`.
    #[serde(skip)]
    pub host_only: bool,
}

fn default_delay() -> u64 {
    1000
}

/// A robot file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Robot {
    /// The backplane.
    pub backplane: BackplaneSpec,
    /// The processes, in start order.
    pub process: Vec<ProcessSpec>,
}

impl Robot {
    /// Parses a TOML robot file's text.
    ///
    /// # Errors
    /// TOML errors and invalid specs (empty or duplicate names, empty commands).
    pub fn from_toml(text: &str) -> std::result::Result<Robot, String> {
        let robot: Robot = toml::from_str(text).map_err(|e| e.to_string())?;
        robot.check()?;
        Ok(robot)
    }

    /// Reads Python Banyan's `bls` launch CSV.
    ///
    /// # Errors
    /// A missing column or an unreadable row, naming the line.
    pub fn from_bls_csv(text: &str) -> std::result::Result<Robot, String> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| e.to_string())?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("no `{name}` column (bls columns: command_string,spawn,topic,append_bp_address,auto_restart,wait)"))
        };
        let (cmd, topic, append, restart, wait) = (
            column("command_string")?,
            column("topic")?,
            column("append_bp_address")?,
            column("auto_restart")?,
            column("wait")?,
        );
        let mut robot = Robot::default();
        let mut names: BTreeMap<String, u32> = BTreeMap::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + 2;
            let row = row.map_err(|e| format!("line {line}: {e}"))?;
            let get = |c: usize| row.get(c).unwrap_or("").to_owned();
            let command = get(cmd);
            if command.is_empty() {
                continue;
            }
            if get(topic) != "local" {
                log::warn!(
                    "line {line}: `{command}` is for a remote launcher (topic {:?}): skipped \
                     (run `banyan launch` on that machine instead)",
                    get(topic)
                );
                continue;
            }
            let wait_s: f64 = get(wait).parse().unwrap_or(0.0);
            let first = command.split_whitespace().next().unwrap_or("process");
            let base = Path::new(first)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("process")
                .to_owned();
            let n = names.entry(base.clone()).or_insert(0);
            *n += 1;
            let name = if *n == 1 { base } else { format!("{base}-{n}") };
            robot.process.push(ProcessSpec {
                name,
                command: CommandLine::Text(command),
                motor: false,
                backplane_args: false,
                restart: if get(restart) == "yes" {
                    Restart::Always
                } else {
                    Restart::Never
                },
                restart_delay_ms: 1000,
                max_restarts: None,
                ready_topic: None,
                wait_ms: (wait_s.max(0.0) * 1000.0) as u64,
                // bls appends `-b <its IP>` only.
                host_only: true,
            });
            if get(append) == "yes" {
                if let Some(p) = robot.process.last_mut() {
                    p.backplane_args = true;
                }
            }
        }
        robot.check()?;
        Ok(robot)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.process {
            if p.name.is_empty() || p.name.contains(char::is_whitespace) {
                return Err(format!("process name {:?}: must be one word", p.name));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("process name {:?} used twice", p.name));
            }
            if p.command.words().is_empty() {
                return Err(format!("process {}: empty command", p.name));
            }
        }
        Ok(())
    }
}

/// Reads a robot from a `.toml` or `.csv` file.
///
/// # Errors
/// Unreadable file or bad content, naming the file (exit code 2).
pub fn load(path: &Path) -> Result<Robot> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let robot = if csv {
        Robot::from_bls_csv(&text)
    } else {
        Robot::from_toml(&text)
    };
    let robot = robot.map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    if robot.process.is_empty() {
        log::warn!("{}: no processes", path.display());
    }
    Ok(robot)
}

/// This binary (what a `banyan` first word runs).
fn this_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("banyan"))
}

/// The full argument list of a process.
fn argv(p: &ProcessSpec, bp: &BackplaneSpec, exe: &Path) -> Vec<String> {
    let mut words = p.command.words();
    if let Some(first) = words.first_mut().filter(|w| *w == "banyan") {
        *first = exe.display().to_string();
    }
    if p.backplane_args {
        words.extend(["-b".into(), bp.host.clone()]);
        if !p.host_only {
            words.extend([
                "-p".into(),
                bp.publisher_port.to_string(),
                "-s".into(),
                bp.subscriber_port.to_string(),
            ]);
        }
    }
    words
}

/// The argument list of the backplane the launcher starts itself.
fn backplane_argv(bp: &BackplaneSpec, exe: &Path) -> Vec<String> {
    let mut words = vec![
        exe.display().to_string(),
        "backplane".into(),
        "-p".into(),
        bp.publisher_port.to_string(),
        "-s".into(),
        bp.subscriber_port.to_string(),
    ];
    words.extend(bp.args.iter().cloned());
    words
}

/// Prints a launcher line on stdout (never fails, never panics).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[launch] {line}");
    let _ = out.flush();
}

/// Copies a child's stream line by line with a `[name] ` prefix.
fn relay(name: String, stream: impl std::io::Read + Send + 'static, to_stderr: bool) {
    let _ = std::thread::Builder::new()
        .name(format!("relay-{name}"))
        .spawn(move || {
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line);
                if to_stderr {
                    let mut e = std::io::stderr().lock();
                    let _ = writeln!(e, "[{name}] {text}");
                } else {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "[{name}] {text}");
                    let _ = o.flush();
                }
            }
        });
}

/// A process of the robot and its state.
struct Proc {
    spec: ProcessSpec,
    argv: Vec<String>,
    child: Option<Child>,
    restarts: u32,
    restart_at: Option<Instant>,
    gave_up: bool,
}

impl Proc {
    fn start(&mut self) -> std::result::Result<(), String> {
        let Some((prog, rest)) = self.argv.split_first() else {
            return Err("empty command".into());
        };
        let mut cmd = Command::new(prog);
        cmd.args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Own process group: a terminal's Ctrl-C reaches only the launcher,
        // which stops the children in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.argv.join(" ")))?;
        if let Some(o) = child.stdout.take() {
            relay(self.spec.name.clone(), o, false);
        }
        if let Some(e) = child.stderr.take() {
            relay(self.spec.name.clone(), e, true);
        }
        say(&format!(
            "{:<16} pid {:<7} {}",
            self.spec.name,
            child.id(),
            self.argv.join(" ")
        ));
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        }
    }

    /// SIGINT, SIGTERM, SIGKILL, [`STOP_STEP`] apart, until it exited.
    fn stop(&mut self) {
        use nix::sys::signal::Signal;
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL] {
            self.signal(sig);
            let until = Instant::now() + STOP_STEP;
            while Instant::now() < until {
                if let Some(c) = self.child.as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        say(&format!(
                            "{:<16} pid {pid:<7} stopped ({st}) after {sig}",
                            self.spec.name
                        ));
                        self.child = None;
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Whether something accepts TCP connections at `host:port`.
fn listening(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

/// Publishes a launcher event (never fatal).
fn event(comp: &mut Component, kind: &str, p: &Proc, status: Option<String>) {
    let mut fields: Vec<(rmpv::Value, rmpv::Value)> = vec![
        ("event".into(), kind.into()),
        ("process".into(), p.spec.name.as_str().into()),
        ("restarts".into(), p.restarts.into()),
    ];
    if let Some(s) = status {
        fields.push(("status".into(), s.into()));
    }
    if let Err(e) = comp.publish_value(EVENT_TOPIC, &rmpv::Value::Map(fields)) {
        log::warn!("event not published: {e}");
    }
}

/// Sleeps up to `d`, returning early (true) when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if output::stopped(stop) {
            return true;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    output::stopped(stop)
}

/// Runs the robot until SIGINT/SIGTERM, or writes its units.
///
/// # Errors
/// Bad robot files (exit 2); a process that cannot be started (exit 1,
/// after stopping the others).
pub fn run(args: Args) -> Result<()> {
    let mut robot = load(&args.file)?;
    if let Some(h) = &args.backplane {
        robot.backplane.host = h.clone();
    }
    if let Some(p) = args.publisher_port {
        robot.backplane.publisher_port = p;
    }
    if let Some(s) = args.subscriber_port {
        robot.backplane.subscriber_port = s;
    }
    if let Some(dir) = &args.systemd {
        return write_units(&robot, &args.file, dir);
    }
    let stop = output::stop_flag()?;
    let exe = this_exe();
    let mut procs: Vec<Proc> = Vec::new();
    let result = launch(&robot, &args, &exe, &stop, &mut procs);
    // Stop: motors first, then the others in reverse start order; the
    // backplane (first started) is last.
    say("stopping");
    for motor_first in [true, false] {
        for p in procs.iter_mut().rev() {
            if p.spec.motor == motor_first {
                p.stop();
            }
        }
    }
    result
}

fn launch(
    robot: &Robot,
    args: &Args,
    exe: &Path,
    stop: &AtomicBool,
    procs: &mut Vec<Proc>,
) -> Result<()> {
    let bp = &robot.backplane;
    if bp.start && listening(&bp.host, bp.publisher_port) {
        say(&format!(
            "a backplane answers at {}:{} already: using it",
            bp.host, bp.publisher_port
        ));
    } else if bp.start {
        let words = backplane_argv(bp, exe);
        let mut p = Proc {
            spec: ProcessSpec {
                name: "backplane".into(),
                command: CommandLine::List(words.clone()),
                motor: false,
                backplane_args: false,
                restart: Restart::OnFailure,
                restart_delay_ms: 1000,
                max_restarts: Some(5),
                ready_topic: None,
                wait_ms: 0,
                host_only: false,
            },
            argv: words,
            child: None,
            restarts: 0,
            restart_at: None,
            gave_up: false,
        };
        p.start().map_err(|e| Failure::new(1, e))?;
        procs.push(p);
    }
    // Readiness of the backplane: both ports accept connections.
    let until = Instant::now() + Duration::from_secs(30);
    while !(listening(&bp.host, bp.publisher_port) && listening(&bp.host, bp.subscriber_port)) {
        if nap(Duration::from_millis(50), stop) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(Failure::new(
                1,
                format!(
                    "no backplane at {}:{}/{} after 30 s",
                    bp.host, bp.publisher_port, bp.subscriber_port
                ),
            ));
        }
    }
    let mut cc =
        banyan_component::Config::new(bp.host.clone(), bp.publisher_port, bp.subscriber_port);
    cc.name = args.name.clone();
    cc.linger = Duration::from_millis(200);
    let mut comp = Component::connect(cc).map_err(crate::args::component_error)?;
    for spec in &robot.process {
        let mut p = Proc {
            argv: argv(spec, bp, exe),
            spec: spec.clone(),
            child: None,
            restarts: 0,
            restart_at: None,
            gave_up: false,
        };
        p.start().map_err(|e| Failure::new(1, e))?;
        if let Some(topic) = &spec.ready_topic {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                if comp
                    .wait_for_subscriber(topic, Duration::from_millis(100))
                    .map_err(crate::args::component_error)?
                {
                    say(&format!(
                        "{:<16} ready (subscribed to {topic:?})",
                        spec.name
                    ));
                    break;
                }
                if output::stopped(stop) {
                    procs.push(p);
                    return Ok(());
                }
                if Instant::now() > until {
                    log::warn!(
                        "{}: not subscribed to {topic:?} after 30 s; going on",
                        spec.name
                    );
                    break;
                }
            }
        }
        procs.push(p);
        if nap(Duration::from_millis(spec.wait_ms), stop) {
            return Ok(());
        }
    }
    say("all started");
    // Watch: restarts as the policies say.
    while !nap(Duration::from_millis(50), stop) {
        let _ = comp.link_state();
        let now = Instant::now();
        for p in procs.iter_mut() {
            if let Some(at) = p.restart_at {
                if now >= at {
                    p.restart_at = None;
                    p.restarts += 1;
                    match p.start() {
                        Ok(()) => event(&mut comp, "restarted", p, None),
                        Err(e) => {
                            log::error!("{}: {e}", p.spec.name);
                            p.gave_up = true;
                            event(&mut comp, "gave_up", p, Some(e));
                        }
                    }
                }
                continue;
            }
            let Some(child) = p.child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            p.child = None;
            say(&format!("{:<16} exited ({status})", p.spec.name));
            event(&mut comp, "exited", p, Some(status.to_string()));
            let again = match p.spec.restart {
                Restart::Never => false,
                Restart::OnFailure => !status.success(),
                Restart::Always => true,
            };
            if !again {
                continue;
            }
            if p.spec.max_restarts.is_some_and(|m| p.restarts >= m) {
                say(&format!(
                    "{:<16} not restarted: {} restart(s) already",
                    p.spec.name, p.restarts
                ));
                p.gave_up = true;
                event(&mut comp, "gave_up", p, Some(status.to_string()));
                continue;
            }
            say(&format!(
                "{:<16} restarting in {} ms",
                p.spec.name, p.spec.restart_delay_ms
            ));
            p.restart_at = Some(now + Duration::from_millis(p.spec.restart_delay_ms));
        }
    }
    Ok(())
}

/// systemd's quoting of one ExecStart word.
fn unit_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,+@".contains(c))
    {
        w.to_owned()
    } else {
        format!(
            "\"{}\"",
            w.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
        )
    }
}

/// The units of a robot: `banyan-ROBOT-NAME.service` per process (and the
/// backplane), `banyan-ROBOT.target` grouping them. Returns (file, text).
pub fn units(robot: &Robot, robot_name: &str, exe: &Path) -> Vec<(String, String)> {
    let bp = &robot.backplane;
    let mut out = Vec::new();
    let mut names = Vec::new();
    let target = format!("banyan-{robot_name}.target");
    let bp_unit = format!("banyan-{robot_name}-backplane.service");
    let unit = |desc: &str, exec: &str, after: &str, restart: &str, extra: &str| {
        format!(
            "# Written by `banyan launch --systemd` for robot {robot_name}.\n\
             [Unit]\nDescription={desc}\nPartOf={target}\nAfter=network-online.target{after}\n\
             Wants=network-online.target\n\n[Service]\nType=simple\nExecStart={exec}\n\
             KillSignal=SIGINT\nTimeoutStopSec={}\n{restart}{extra}\n[Install]\nWantedBy={target}\n",
            STOP_STEP.as_secs() * 2
        )
    };
    if bp.start {
        let words = backplane_argv(bp, exe);
        let exec: Vec<String> = words.iter().map(|w| unit_word(w)).collect();
        out.push((
            bp_unit.clone(),
            unit(
                &format!("banyan backplane of robot {robot_name}"),
                &exec.join(" "),
                "",
                "Restart=on-failure\nRestartSec=1\n",
                "",
            ),
        ));
        names.push(bp_unit.clone());
    }
    let mut motors: Vec<String> = Vec::new();
    for p in &robot.process {
        let name = format!("banyan-{robot_name}-{}.service", p.name);
        let exec: Vec<String> = argv(p, bp, exe).iter().map(|w| unit_word(w)).collect();
        let restart = match p.restart {
            Restart::Never => "Restart=no\n".to_owned(),
            Restart::OnFailure => {
                format!("Restart=on-failure\nRestartSec={}ms\n", p.restart_delay_ms)
            }
            Restart::Always => format!("Restart=always\nRestartSec={}ms\n", p.restart_delay_ms),
        };
        let limit = p
            .max_restarts
            .map(|m| {
                format!(
                    "StartLimitBurst={}\nStartLimitIntervalSec=infinity\n",
                    m + 1
                )
            })
            .unwrap_or_default();
        // Motors stop first: systemd stops units in the reverse order of
        // After=, so every other process is After= the motor units.
        let mut after = String::new();
        if bp.start {
            after.push(' ');
            after.push_str(&bp_unit);
        }
        if !p.motor {
            for m in &motors {
                after.push(' ');
                after.push_str(m);
            }
        }
        out.push((
            name.clone(),
            unit(
                &format!("{} of robot {robot_name}", p.name),
                &exec.join(" "),
                &after,
                &restart,
                &limit,
            ),
        ));
        if p.motor {
            motors.push(name.clone());
        }
        names.push(name);
    }
    out.push((
        target.clone(),
        format!(
            "# Written by `banyan launch --systemd`: systemctl start {target}\n\
             [Unit]\nDescription=banyan robot {robot_name}\nWants={}\n\n[Install]\nWantedBy=multi-user.target\n",
            names.join(" ")
        ),
    ));
    out
}

fn write_units(robot: &Robot, file: &Path, dir: &Path) -> Result<()> {
    let robot_name: String = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("robot")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in units(robot, &robot_name, &this_exe()) {
        let path = dir.join(&name);
        std::fs::write(&path, text)
            .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
        say(&format!("wrote {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLS: &str = "command_string,spawn,topic,append_bp_address,auto_restart,wait\n\
        python3 echo_server.py,no,local,no,yes,1\n\
        python3 client.py,yes,remote_pi,yes,no,0\n\
        monitor,no,local,yes,no,0\n";

    #[test]
    fn bls_csv_is_read_unchanged() {
        let r = Robot::from_bls_csv(BLS).unwrap();
        assert_eq!(r.process.len(), 2, "the remote row is skipped");
        let echo = &r.process[0];
        assert_eq!(echo.name, "python3");
        assert_eq!(echo.restart, Restart::Always);
        assert_eq!(echo.wait_ms, 1000);
        let mon = &r.process[1];
        assert_eq!(mon.name, "monitor");
        let words = argv(mon, &BackplaneSpec::default(), Path::new("/x/banyan"));
        assert_eq!(words, ["monitor", "-b", "127.0.0.1"]);
        assert!(Robot::from_bls_csv("a,b\n1,2\n")
            .unwrap_err()
            .contains("command_string"));
    }

    #[test]
    fn toml_robot_files() {
        let r = Robot::from_toml(
            r#"
            [backplane]
            publisher_port = 5000
            subscriber_port = 5001
            [[process]]
            name = "motors"
            command = ["banyan", "rpi-gateway", "--sim"]
            motor = true
            backplane_args = true
            restart = "on-failure"
            max_restarts = 3
            ready_topic = "run_motors"
            [[process]]
            name = "py"
            command = "python3 comp.py"
            "#,
        )
        .unwrap();
        let words = argv(&r.process[0], &r.backplane, Path::new("/x/banyan"));
        assert_eq!(
            words,
            [
                "/x/banyan",
                "rpi-gateway",
                "--sim",
                "-b",
                "127.0.0.1",
                "-p",
                "5000",
                "-s",
                "5001"
            ]
        );
        assert_eq!(r.process[1].command.words(), ["python3", "comp.py"]);
        assert!(Robot::from_toml("[[process]]\nname='a'\ncommand=[]\n").is_err());
        assert!(Robot::from_toml("[[process]]\nname='a'\ncommand='x'\nbogus=1\n").is_err());
        let dup = "[[process]]\nname='a'\ncommand='x'\n[[process]]\nname='a'\ncommand='y'\n";
        assert!(Robot::from_toml(dup).unwrap_err().contains("twice"));

        let units = units(&r, "bot", Path::new("/usr/bin/banyan"));
        let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "banyan-bot-backplane.service",
                "banyan-bot-motors.service",
                "banyan-bot-py.service",
                "banyan-bot.target"
            ]
        );
        let py = &units[2].1;
        assert!(py.contains("After=network-online.target banyan-bot-backplane.service banyan-bot-motors.service"), "{py}");
        assert!(units[1]
            .1
            .contains("ExecStart=/usr/bin/banyan rpi-gateway --sim -b 127.0.0.1 -p 5000 -s 5001"));
        assert!(units[1].1.contains("StartLimitBurst=4"));
    }
}
