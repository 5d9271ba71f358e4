//! Connection feedback for people: what a component is waiting for, and why
//! it may be waiting.
//!
//! A [`Feedback`] is a small sans-IO state machine: the owner tells it when
//! the backplane connection comes up ([`Feedback::up`]) or goes down
//! ([`Feedback::down`]) and calls [`Feedback::poll`] now and then (at the
//! latest at [`Feedback::next_deadline`]). It logs through [`log`] with the
//! target [`TARGET`]:
//!
//! - after [`WAIT_WARNING`] (2 s) without a backplane, one warning naming the
//!   endpoints it waits for and the likely causes (no backplane running, a
//!   wrong `-b`, `-p`/`-s` swapped, Python Banyan's backplane listening only
//!   on its LAN IP address);
//! - when the connection comes up (info; a warning when a waiting warning
//!   was shown before, so whoever saw the problem sees it solved);
//! - when an established connection is lost (warning), and the same waiting
//!   warning if it does not come back within [`WAIT_WARNING`].
//!
//! [`crate::Component`] owns one and drives it from its connection monitor,
//! so every component, gateway and the monitor get it without code of their
//! own. Use it directly only for a connection of your own.

use std::time::{Duration, Instant};

/// The `log` target of every feedback line (lets a logger show these lines
/// at `info` while keeping other crates at `warn`).
pub const TARGET: &str = "banyan::link";

/// How long without a backplane before the waiting warning.
pub const WAIT_WARNING: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never connected yet, since `since`; `warned` once the warning is out.
    Waiting { since: Instant, warned: bool },
    /// Connected.
    Up,
    /// Lost at `since`, reconnecting.
    Lost { since: Instant, warned: bool },
}

/// Connection feedback for one backplane connection (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct Feedback {
    name: String,
    address: String,
    publisher_port: u16,
    subscriber_port: u16,
    state: State,
    /// Warnings and notices logged so far (for tests and summaries).
    lines: u64,
}

impl Feedback {
    /// Feedback for component `name` connecting to the backplane at
    /// `address` (publisher port, subscriber port; 0: that side is not
    /// connected, as for a multi-backplane component's backplane that
    /// it only publishes to or only subscribes on), starting to wait at
    /// `now`.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        publisher_port: u16,
        subscriber_port: u16,
        now: Instant,
    ) -> Feedback {
        Feedback {
            name: name.into(),
            address: address.into(),
            publisher_port,
            subscriber_port,
            state: State::Waiting {
                since: now,
                warned: false,
            },
            lines: 0,
        }
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// How many lines it has logged.
    pub fn lines_logged(&self) -> u64 {
        self.lines
    }

    /// The connection came up (the ZMTP handshake with the backplane is done).
    pub fn up(&mut self, now: Instant) {
        let (was_warned, since) = match self.state {
            State::Up => return,
            State::Waiting { since, warned } | State::Lost { since, warned } => (warned, since),
        };
        let waited = now.saturating_duration_since(since);
        let level = if was_warned {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        self.lines += 1;
        log::log!(
            target: TARGET,
            level,
            "{}: connected to the backplane at {} ({}){}",
            self.name,
            self.address,
            self.sides("publisher port", "subscriber port"),
            if was_warned {
                format!(" after {:.1} s", waited.as_secs_f64())
            } else {
                String::new()
            }
        );
        self.state = State::Up;
    }

    /// The connection went down. Only an established connection can be
    /// lost: failed attempts while waiting change nothing.
    pub fn down(&mut self, now: Instant) {
        if self.state != State::Up {
            return;
        }
        self.lines += 1;
        log::warn!(
            target: TARGET,
            "{}: lost the backplane at {} ({}); reconnecting",
            self.name,
            self.address,
            if self.subscriber_port == 0 {
                self.sides("publisher port", "")
            } else {
                self.sides("", "subscriber port")
            }
        );
        self.state = State::Lost {
            since: now,
            warned: false,
        };
    }

    /// When [`Feedback::poll`] has something to say next, if ever (never
    /// when both ports are 0: nothing is connected, nothing awaited).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.nothing_connected() {
            return None;
        }
        match self.state {
            State::Waiting {
                since,
                warned: false,
            }
            | State::Lost {
                since,
                warned: false,
            } => Some(since + WAIT_WARNING),
            _ => None,
        }
    }

    /// Logs the waiting warning when it is due. Returns whether it did.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.nothing_connected() {
            return false;
        }
        let (since, lost) = match &mut self.state {
            State::Waiting { since, warned } | State::Lost { since, warned } if !*warned => {
                if now.saturating_duration_since(*since) < WAIT_WARNING {
                    return false;
                }
                *warned = true;
                (*since, matches!(self.state, State::Lost { .. }))
            }
            _ => return false,
        };
        self.lines += 1;
        log::warn!(
            target: TARGET,
            "{}",
            self.waiting_message(now.saturating_duration_since(since), lost)
        );
        true
    }

    /// The waiting warning's text.
    pub fn waiting_message(&self, waited: Duration, lost: bool) -> String {
        let local = is_loopback(&self.address);
        let mut m = format!(
            "{}: {} {:.0} s for the backplane at {} \
             ({}). Likely causes: ",
            self.name,
            if lost {
                "connection lost, waiting"
            } else {
                "waiting"
            },
            waited.as_secs_f64(),
            self.address,
            self.sides("publishing to port", "subscribing on port"),
        );
        if lost {
            m.push_str("the backplane stopped or its machine left the network; ");
        } else if local {
            m.push_str("no backplane is running on this machine (start one: `banyan backplane`); ");
        } else {
            let ports: Vec<String> = [self.publisher_port, self.subscriber_port]
                .iter()
                .filter(|&&p| p != 0)
                .map(u16::to_string)
                .collect();
            m.push_str(&format!(
                "no backplane is running on {} or a firewall blocks port{} {}; ",
                self.address,
                if ports.len() > 1 { "s" } else { "" },
                ports.join("/")
            ));
        }
        m.push_str(
            "a wrong -b (the backplane's host; also $BANYAN_BACKPLANE); \
             -p and -s swapped or not the backplane's ports",
        );
        if local {
            m.push_str(
                "; Python Banyan's backplane listens only on its LAN IP address, \
                 not 127.0.0.1: pass -b <that address>",
            );
        }
        m.push('.');
        m
    }

    fn nothing_connected(&self) -> bool {
        self.publisher_port == 0 && self.subscriber_port == 0
    }

    /// `"{publisher} N, {subscriber} M"` for the connected sides (an empty
    /// label leaves its side out too).
    fn sides(&self, publisher: &str, subscriber: &str) -> String {
        [
            (publisher, self.publisher_port),
            (subscriber, self.subscriber_port),
        ]
        .iter()
        .filter(|(label, port)| !label.is_empty() && *port != 0)
        .map(|(label, port)| format!("{label} {port}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Whether `address` names this machine's loopback interface.
fn is_loopback(address: &str) -> bool {
    address == "localhost"
        || address == "::1"
        || address
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(address: &str, t0: Instant) -> Feedback {
        Feedback::new("test", address, 43124, 43125, t0)
    }

    #[test]
    fn warns_once_after_two_seconds_without_a_backplane() {
        let t0 = Instant::now();
        let mut f = fb("127.0.0.1", t0);
        assert_eq!(f.next_deadline(), Some(t0 + WAIT_WARNING));
        assert!(!f.poll(t0 + Duration::from_millis(1999)));
        assert!(f.poll(t0 + WAIT_WARNING));
        assert!(!f.poll(t0 + Duration::from_secs(10)));
        assert_eq!(f.next_deadline(), None);
        assert_eq!(f.lines_logged(), 1);
    }

    #[test]
    fn up_then_lost_then_waiting_again() {
        let t0 = Instant::now();
        let mut f = fb("127.0.0.1", t0);
        f.up(t0 + Duration::from_millis(100));
        assert!(f.is_up());
        assert_eq!(f.next_deadline(), None);
        assert!(!f.poll(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(61);
        f.down(t1);
        assert!(!f.is_up());
        assert_eq!(f.next_deadline(), Some(t1 + WAIT_WARNING));
        assert!(f.poll(t1 + WAIT_WARNING));
        f.up(t1 + Duration::from_secs(3));
        // connected, lost, waiting, connected again
        assert_eq!(f.lines_logged(), 4);
    }

    #[test]
    fn nothing_connected_waits_for_nothing() {
        let t0 = Instant::now();
        let mut f = Feedback::new("test", "", 0, 0, t0);
        assert_eq!(f.next_deadline(), None);
        assert!(!f.poll(t0 + Duration::from_secs(10)));
        assert_eq!(f.lines_logged(), 0);
    }

    #[test]
    fn failed_attempts_while_waiting_are_not_losses() {
        let t0 = Instant::now();
        let mut f = fb("10.0.0.5", t0);
        f.down(t0 + Duration::from_millis(10));
        assert_eq!(f.lines_logged(), 0);
        assert_eq!(f.next_deadline(), Some(t0 + WAIT_WARNING));
    }

    #[test]
    fn the_message_names_endpoints_and_causes() {
        let t0 = Instant::now();
        let local = fb("127.0.0.1", t0).waiting_message(Duration::from_secs(2), false);
        for needle in [
            "127.0.0.1",
            "43124",
            "43125",
            "banyan backplane",
            "-b",
            "-p and -s swapped",
            "LAN IP",
        ] {
            assert!(local.contains(needle), "{needle:?} not in {local}");
        }
        let remote = fb("192.0.2.7", t0).waiting_message(Duration::from_secs(2), false);
        assert!(remote.contains("firewall"), "{remote}");
        assert!(!remote.contains("LAN IP"), "{remote}");
        let lost = fb("127.0.0.1", t0).waiting_message(Duration::from_secs(2), true);
        assert!(lost.contains("connection lost"), "{lost}");
        assert!(
            local.contains("(publishing to port 43124, subscribing on port 43125)"),
            "{local}"
        );
        // A side that is not connected is not named.
        let publish_only = Feedback::new("test", "192.0.2.7", 43124, 0, t0)
            .waiting_message(Duration::from_secs(2), false);
        assert!(
            publish_only.contains("(publishing to port 43124)"),
            "{publish_only}"
        );
        assert!(
            publish_only.contains("blocks port 43124;"),
            "{publish_only}"
        );
        assert!(!publish_only.contains("subscribing"), "{publish_only}");
    }
}
