//! Golden command sequences (feature `std`): a plain-text fixture of timed
//! steps and the exact report bytes each must produce, replayed by every
//! node that embeds a [`Robot`] so they provably answer alike.
//!
//! The fixture `tests/golden/robot_sequence.txt` is written in this format
//! (by `tests/golden/robot_sequence.py`, from Python dicts packed with
//! `msgpack.packb(use_bin_type=True)`):
//!
//! ```text
//! # a comment; blank lines are ignored
//! robot motors=left,right leds=status,beacon deadman_ms=500 max_run_ms=2000
//! 0 state                      the node sends its state (e.g. link up)
//! > 84a67265706f7274…          a report the step must produce (hex)
//! 10 cmd run_motors 81a46c…    the payload (hex) received on a topic
//! > 84a6…
//! 20 cmd run_motors 81a46c…    no `>` line: the step must produce no report
//! 600 poll                     the node's timers run (`Robot::poll`)
//! 700 stop link_lost           the node stops the motors (`Robot::stop_motors`)
//! ```
//!
//! - The `robot` line comes first: motors and LEDs in the order they are
//!   added (their order in reports), the deadman timeout and the longest
//!   timed run in ms.
//! - Each step is `<t_ms> <verb> [args]`, times in ms from the start and
//!   never decreasing; verbs: `cmd <topic> <payload hex>` (`-` for an empty
//!   payload), `poll`, `state`, `stop <reason>` (a
//!   [`StoppedBy`] name).
//! - `> <hex>` lines after a step are the reports it produces, in order.
//!
//! A reader in another language needs a dozen lines; in Rust, [`parse`],
//! then [`Fixture::replay`] for a bare [`Robot`] or [`Fixture::check`] for a
//! node that embeds one (a gateway replays through its own entry points):
//!
//! ```
//! use banyan_core::robot::golden;
//! let text = "robot motors=left leds= deadman_ms=500 max_run_ms=0\n\
//!             0 cmd run_motors 80\n";
//! let fixture = golden::parse(text).unwrap();
//! assert_eq!(fixture.motors, ["left"]);
//! // A node that answers `{}` (a keep-alive) with no report passes:
//! fixture.check(|_step| Vec::new()).unwrap();
//! ```

use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use super::{Outcome, Robot, StoppedBy};
use crate::actuator::{self, SetBrightness, SetSpeed};

/// A parsed fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// Motor names, in the order they are added to the robot.
    pub motors: Vec<String>,
    /// LED names, in the order they are added to the robot.
    pub leds: Vec<String>,
    /// Deadman timeout in ms.
    pub deadman_ms: u64,
    /// Longest timed run in ms ([`Robot::set_max_run_ms`](super::Robot::set_max_run_ms)).
    pub max_run_ms: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step and the reports it must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Line number in the fixture (1-based), for messages.
    pub line: usize,
    /// When it happens, in ms from the start.
    pub t_ms: u64,
    /// What happens.
    pub action: Action,
    /// The reports it must produce, in order (payload bytes).
    pub reports: Vec<Vec<u8>>,
}

/// What happens in a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A payload received on a topic (`Robot::handle`).
    Command {
        /// The topic.
        topic: String,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// The node's timers run (`Robot::poll`; a state report if it changed).
    Poll,
    /// The node sends its state report (`Robot::state_report`).
    State,
    /// The node stops the motors (`Robot::stop_motors`; a state report if
    /// it changed).
    Stop(StoppedBy),
}

/// A line of the fixture that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "golden fixture line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// A step whose reports differ from the fixture's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The step's line in the fixture.
    pub line: usize,
    /// The reports the fixture expects (hex).
    pub expected: Vec<String>,
    /// The reports the node produced (hex).
    pub actual: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "golden fixture line {}: reports differ", self.line)?;
        writeln!(f, "  expected: {:?}", self.expected)?;
        write!(f, "  actual:   {:?}", self.actual)
    }
}

impl std::error::Error for Mismatch {}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (either case, even length), `None` if it is
/// not one.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

fn err(line: usize, what: &'static str) -> ParseError {
    ParseError { line, what }
}

fn names(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the `robot` line's `key=value` fields into `f`.
fn robot_line(f: &mut Fixture, fields: &[&str], line: usize) -> Result<(), ParseError> {
    let mut seen = [false; 4];
    for field in fields {
        let (k, v) = field
            .split_once('=')
            .ok_or(err(line, "robot fields are key=value"))?;
        let ms = || v.parse::<u64>().map_err(|_| err(line, "bad number"));
        let i = match k {
            "motors" => {
                f.motors = names(v);
                0
            }
            "leds" => {
                f.leds = names(v);
                1
            }
            "deadman_ms" => {
                f.deadman_ms = ms()?;
                2
            }
            "max_run_ms" => {
                f.max_run_ms = ms()?;
                3
            }
            _ => return Err(err(line, "unknown robot field")),
        };
        seen[i] = true;
    }
    if seen.contains(&false) {
        return Err(err(
            line,
            "robot needs motors=, leds=, deadman_ms=, max_run_ms=",
        ));
    }
    Ok(())
}

/// Reads a fixture.
///
/// # Errors
/// [`ParseError`] with the first line that does not follow the format.
pub fn parse(text: &str) -> Result<Fixture, ParseError> {
    let mut f = Fixture {
        motors: Vec::new(),
        leds: Vec::new(),
        deadman_ms: 0,
        max_run_ms: 0,
        steps: Vec::new(),
    };
    let mut have_robot = false;
    let mut last_t = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        match fields.as_slice() {
            ["robot", rest @ ..] if !have_robot => {
                robot_line(&mut f, rest, line)?;
                have_robot = true;
            }
            _ if !have_robot => return Err(err(line, "the robot line must come first")),
            [">", h] => {
                let report = unhex(h).ok_or(err(line, "report is not hex"))?;
                f.steps
                    .last_mut()
                    .ok_or(err(line, "report before any step"))?
                    .reports
                    .push(report);
            }
            [t, verb, args @ ..] => {
                let t_ms: u64 = t.parse().map_err(|_| err(line, "bad time"))?;
                if t_ms < last_t {
                    return Err(err(line, "time goes backwards"));
                }
                last_t = t_ms;
                let action = match (*verb, args) {
                    ("cmd", [topic, payload]) => Action::Command {
                        topic: topic.to_string(),
                        payload: if *payload == "-" {
                            Vec::new()
                        } else {
                            unhex(payload).ok_or(err(line, "payload is not hex"))?
                        },
                    },
                    ("poll", []) => Action::Poll,
                    ("state", []) => Action::State,
                    ("stop", [reason]) => Action::Stop(
                        StoppedBy::from_name(reason).ok_or(err(line, "unknown stop reason"))?,
                    ),
                    _ => return Err(err(line, "unknown step")),
                };
                f.steps.push(Step {
                    line,
                    t_ms,
                    action,
                    reports: Vec::new(),
                });
            }
            _ => return Err(err(line, "unknown line")),
        }
    }
    if !have_robot {
        return Err(err(0, "no robot line"));
    }
    Ok(f)
}

impl Fixture {
    /// Replays every step on `robot` and compares its reports byte for
    /// byte. The caller builds the robot as the `robot` line says: motors
    /// [`motors`](Self::motors) and LEDs [`leds`](Self::leds) added in this
    /// order, deadman [`deadman_ms`](Self::deadman_ms),
    /// [`Robot::set_max_run_ms`] with [`max_run_ms`](Self::max_run_ms);
    /// the names and the limit are checked first (a mismatch at line 0).
    ///
    /// # Errors
    /// The first [`Mismatch`].
    pub fn replay<M, L, P, D, const NM: usize, const NL: usize>(
        &self,
        robot: &mut Robot<M, L, NM, NL>,
    ) -> Result<(), Mismatch>
    where
        M: SetSpeed<Error = actuator::Error<P, D>>,
        L: SetBrightness,
    {
        let setup = |r: &Robot<M, L, NM, NL>| {
            let mut v: Vec<String> = r.motor_names().iter().map(|n| n.to_string()).collect();
            v.push(String::from("/"));
            v.extend(r.led_names().iter().map(|n| n.to_string()));
            v.push(r.max_run_ms().to_string());
            v
        };
        let mut want = self.motors.clone();
        want.push(String::from("/"));
        want.extend(self.leds.iter().cloned());
        want.push(self.max_run_ms.to_string());
        let have = setup(robot);
        if have != want {
            return Err(Mismatch {
                line: 0,
                expected: want,
                actual: have,
            });
        }
        let mut out = std::vec![0u8; 4096];
        self.check(|step| {
            let n = match &step.action {
                Action::Command { topic, payload } => {
                    match robot.handle(step.t_ms, topic, payload, &mut out) {
                        Outcome::Changed(n) | Outcome::Refused(n) => Some(n),
                        Outcome::Unchanged | Outcome::ReportTooLarge => None,
                    }
                }
                Action::Poll => robot
                    .poll(step.t_ms)
                    .then(|| robot.state_report(&mut out).ok())
                    .flatten(),
                Action::State => robot.state_report(&mut out).ok(),
                Action::Stop(reason) => robot
                    .stop_motors(*reason)
                    .then(|| robot.state_report(&mut out).ok())
                    .flatten(),
            };
            n.and_then(|n| out.get(..n))
                .map(<[u8]>::to_vec)
                .into_iter()
                .collect()
        })
    }

    /// Runs every step through `node` (which returns the report payloads the
    /// step produced, in order) and compares them byte for byte.
    ///
    /// # Errors
    /// The first [`Mismatch`].
    pub fn check(&self, mut node: impl FnMut(&Step) -> Vec<Vec<u8>>) -> Result<(), Mismatch> {
        for step in &self.steps {
            let actual = node(step);
            if actual != step.reports {
                return Err(Mismatch {
                    line: step.line,
                    expected: step.reports.iter().map(|r| hex(r)).collect(),
                    actual: actual.iter().map(|r| hex(r)).collect(),
                });
            }
        }
        Ok(())
    }
}
