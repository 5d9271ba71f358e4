//! Heartbeats of one connection, sans-IO (the caller passes the time in):
//! when to send a `PING`, and when the peer counts as gone. Used by the
//! native backplane and the services broker's native ROUTER.
//!
//! Two clocks, as in libzmq (`ZMQ_HEARTBEAT_IVL`/`_TIMEOUT`/`_TTL`):
//! - **Ours.** Every [`Settings::interval`] we send a ZMTP 3.1 peer a
//!   `PING` (never a 3.0 or 2.0 peer: they do not know the command). The
//!   first `PING` that finds no timer running starts one of
//!   [`Settings::timeout`]; any sign of life stops it. Signs of life: bytes
//!   from the peer, or the peer's socket taking our bytes again after it
//!   was full (a subscriber working through a long queue answers our
//!   `PING` only when it reaches it, but its TCP window opening shows it is
//!   reading — libzmq sends a `PING` ahead of its queue, we cannot).
//! - **The peer's.** A `PING` that carries a time to live starts a timer
//!   of that length; any byte from the peer stops it (libzmq cancels it on
//!   every frame). A peer that stopped (SIGSTOP, out of Wi-Fi range) is
//!   closed when either timer runs out.

use std::time::{Duration, Instant};

/// A `PING` due less than `interval / COALESCE` from now is sent now, so
/// that the pings of many connections share wake-ups of the loop.
const COALESCE: u32 = 8;

/// Heartbeat settings of a listening socket (backplane, broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time between our `PING`s; zero: we send none (and never time out a
    /// peer ourselves; peers' TTLs still count).
    pub interval: Duration,
    /// How long after a `PING` a peer may stay silent; zero: no limit.
    pub timeout: Duration,
}

impl Settings {
    /// The time to live our `PING`s ask for: our timeout (the peer should
    /// give up on us when it hears nothing for as long as we would).
    pub fn ttl(&self) -> Duration {
        self.timeout
    }
}

/// Why a peer counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Silent for the time to live its own `PING` asked for.
    PeerTtl(Duration),
    /// No sign of life within our timeout after a `PING`.
    NoAnswer(Duration),
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expiry::PeerTtl(t) => write!(
                f,
                "silent for {t:?}, the time to live its heartbeat asked for"
            ),
            Expiry::NoAnswer(t) => write!(f, "no answer to a heartbeat within {t:?}"),
        }
    }
}

/// What [`Liveness::poll`] says to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing until [`Liveness::next_at`].
    Nothing,
    /// Send a `PING` (with [`Settings::ttl`]).
    Ping,
    /// Close the connection.
    Expired(Expiry),
}

/// Heartbeat state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Liveness {
    /// The next `PING` we send; `None`: we send none.
    next_ping: Option<Instant>,
    /// Our timeout, running since a `PING`.
    answer_by: Option<Instant>,
    /// The peer's time to live, running since its `PING`.
    ttl_ends: Option<(Instant, Duration)>,
}

impl Liveness {
    /// Starts heartbeats when the handshake is done; `pings`: the peer
    /// understands `PING` (ZMTP 3.1 or later).
    pub fn start(&mut self, now: Instant, pings: bool, settings: &Settings) {
        self.next_ping = (pings && !settings.interval.is_zero()).then(|| now + settings.interval);
    }

    /// Bytes arrived from the peer.
    #[inline]
    pub fn heard(&mut self) {
        self.answer_by = None;
        self.ttl_ends = None;
    }

    /// The peer's socket took our bytes again after it was full.
    #[inline]
    pub fn progressed(&mut self) {
        self.answer_by = None;
    }

    /// The peer sent a `PING` asking for `ttl` (zero: none); call after
    /// [`Liveness::heard`] for the bytes that carried it.
    pub fn ping_received(&mut self, now: Instant, ttl: Duration) {
        if !ttl.is_zero() {
            self.ttl_ends = Some((now + ttl, ttl));
        }
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant, settings: &Settings) -> Due {
        if let Some((at, ttl)) = self.ttl_ends {
            if now >= at {
                return Due::Expired(Expiry::PeerTtl(ttl));
            }
        }
        if self.answer_by.is_some_and(|at| now >= at) {
            return Due::Expired(Expiry::NoAnswer(settings.timeout));
        }
        match self.next_ping {
            Some(at) if now + settings.interval / COALESCE >= at => {
                self.next_ping = Some(now + settings.interval);
                if self.answer_by.is_none() && !settings.timeout.is_zero() {
                    self.answer_by = Some(now + settings.timeout);
                }
                Due::Ping
            }
            _ => Due::Nothing,
        }
    }

    /// When [`Liveness::poll`] next has something to do.
    pub fn next_at(&self) -> Option<Instant> {
        [
            self.next_ping,
            self.answer_by,
            self.ttl_ends.map(|(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    };

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn pings_every_interval_and_an_answer_keeps_the_peer() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.start(t0, true, &S);
        assert_eq!(l.next_at(), Some(ms(t0, 1000)));
        assert_eq!(l.poll(ms(t0, 874), &S), Due::Nothing);
        // Due within interval / 8: sent now (shared wake-ups).
        assert_eq!(l.poll(ms(t0, 875), &S), Due::Ping);
        assert_eq!(l.next_at(), Some(ms(t0, 1875)));
        for k in 2..=10 {
            assert_eq!(l.poll(ms(t0, k * 1000), &S), Due::Ping);
            l.heard(); // PONG
        }
        assert_eq!(l.next_at(), Some(ms(t0, 11_000)));
    }

    #[test]
    fn a_silent_peer_expires_after_the_timeout_from_the_first_ping() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.start(t0, true, &S);
        assert_eq!(l.poll(ms(t0, 1000), &S), Due::Ping);
        assert_eq!(l.next_at(), Some(ms(t0, 2000)));
        assert_eq!(l.poll(ms(t0, 2000), &S), Due::Ping);
        assert_eq!(l.poll(ms(t0, 3000), &S), Due::Ping);
        // The timer of the first PING is not restarted by later ones.
        assert_eq!(l.next_at(), Some(ms(t0, 4000)));
        assert_eq!(
            l.poll(ms(t0, 4000), &S),
            Due::Expired(Expiry::NoAnswer(S.timeout))
        );
        // Output progress is a sign of life too.
        let mut l = Liveness::default();
        l.start(t0, true, &S);
        assert_eq!(l.poll(ms(t0, 1000), &S), Due::Ping);
        l.progressed();
        assert_eq!(l.poll(ms(t0, 4000), &S), Due::Ping);
    }

    #[test]
    fn old_peers_get_no_pings_and_zero_interval_is_off() {
        let t0 = Instant::now();
        for (pings, s) in [
            (false, S),
            (
                true,
                Settings {
                    interval: Duration::ZERO,
                    ..S
                },
            ),
        ] {
            let mut l = Liveness::default();
            l.start(t0, pings, &s);
            assert_eq!(l.next_at(), None);
            assert_eq!(l.poll(ms(t0, 100_000), &s), Due::Nothing);
        }
        // Zero timeout: pings, never expires for want of an answer.
        let s = Settings {
            timeout: Duration::ZERO,
            ..S
        };
        let mut l = Liveness::default();
        l.start(t0, true, &s);
        for k in 1..=5 {
            assert_eq!(l.poll(ms(t0, k * 1000), &s), Due::Ping);
        }
    }

    #[test]
    fn the_peers_ttl_runs_from_its_ping_until_it_is_heard_again() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        // No pings of ours (a 3.0 peer cannot get them, but the TTL counts
        // whatever the version).
        l.start(t0, false, &S);
        let ttl = Duration::from_millis(500);
        l.heard();
        l.ping_received(t0, ttl);
        assert_eq!(l.next_at(), Some(ms(t0, 500)));
        l.heard();
        assert_eq!(l.next_at(), None, "any byte stops the TTL");
        l.ping_received(ms(t0, 100), ttl);
        assert_eq!(l.poll(ms(t0, 599), &S), Due::Nothing);
        assert_eq!(l.poll(ms(t0, 600), &S), Due::Expired(Expiry::PeerTtl(ttl)));
        // A PING without TTL starts nothing.
        let mut l = Liveness::default();
        l.ping_received(t0, Duration::ZERO);
        assert_eq!(l.next_at(), None);
    }

    #[test]
    fn earliest_of_options() {
        let t0 = Instant::now();
        let t1 = ms(t0, 1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t1), None), Some(t1));
        assert_eq!(earliest(None, Some(t0)), Some(t0));
        assert_eq!(earliest(Some(t1), Some(t0)), Some(t0));
    }
}
