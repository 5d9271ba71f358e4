//! Heartbeats in the forwarding loop: the per-connection clocks of
//! [`crate::heartbeat`] looked at only when one of them is due (no cost
//! per message), `PING`s queued like any other output, silent peers closed
//! with what was queued for them counted as undelivered.

use std::time::{Duration, Instant};

use super::{Close, Forwarder, Phase};
use crate::heartbeat::{earliest, Due, Settings};
use banyan_zmtp as zmtp;

impl Forwarder<'_> {
    fn heartbeat_settings(&self) -> Settings {
        Settings {
            interval: self.config.heartbeat_interval,
            timeout: self.config.heartbeat_timeout,
        }
    }

    /// The greeting is done: start the connection's clocks; `pings`: the
    /// peer understands `PING`.
    pub(super) fn start_heartbeats(&mut self, index: usize, now: Instant, pings: bool) {
        let settings = self.heartbeat_settings();
        if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
            c.liveness.start(now, pings, &settings);
            self.next_heartbeat = earliest(self.next_heartbeat, c.liveness.next_at());
        }
    }

    /// The peer sent a `PING` asking for `ttl`.
    pub(super) fn ping_received(&mut self, index: usize, now: Instant, ttl: Duration) {
        if let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) {
            c.liveness.ping_received(now, ttl);
            self.next_heartbeat = earliest(self.next_heartbeat, c.liveness.next_at());
        }
    }

    /// Sends the `PING`s that are due and closes the peers that went
    /// silent, when something is due.
    pub(super) fn heartbeats(&mut self, now: Instant) {
        if self.next_heartbeat.is_none_or(|t| now < t) {
            return;
        }
        let settings = self.heartbeat_settings();
        let mut next = None;
        for index in 0..self.connections.len() {
            let Some(c) = self.connections.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if c.phase != Phase::Traffic {
                // Clocks start at the greeting; PINGs wait for READY.
                next = earliest(next, c.liveness.next_at());
                continue;
            }
            if c.io.readable {
                // Bytes wait in the socket (a publisher not read during a
                // stall): the peer is there.
                c.liveness.heard();
            }
            match c.liveness.poll(now, &settings) {
                Due::Nothing => {}
                Due::Ping => {
                    self.scratch.clear();
                    zmtp::put_ping(&mut self.scratch, settings.ttl(), b"");
                    c.out.push_control(&self.scratch);
                    self.lists.mark(index, &mut c.io);
                    let at = c.liveness.next_at();
                    self.touch(index);
                    next = earliest(next, at);
                    continue;
                }
                Due::Expired(why) => {
                    self.close(index, &Close::Silent(why));
                    continue;
                }
            }
            next = earliest(next, c.liveness.next_at());
        }
        // One scan looks at every connection: the next waits at least a
        // tick, so that connections whose clocks started at different
        // times cost one scan per tick, not one each (N scans of N
        // connections per interval). Clocks are late by a tick at most.
        self.next_heartbeat = next.map(|t| t.max(now + tick(&settings)));
    }
}

/// The least time between two heartbeat scans: a tenth of the shorter of
/// the interval and the timeout (those that are set), between 1 and 100 ms.
fn tick(settings: &Settings) -> Duration {
    [settings.interval, settings.timeout]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .map_or(MAX_TICK, |d| {
            (d / 10).clamp(Duration::from_millis(1), MAX_TICK)
        })
}

const MAX_TICK: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_a_tick_apart() {
        let s = |interval: u64, timeout: u64| Settings {
            interval: Duration::from_millis(interval),
            timeout: Duration::from_millis(timeout),
        };
        assert_eq!(tick(&s(1000, 3000)), MAX_TICK);
        assert_eq!(tick(&s(200, 300)), Duration::from_millis(20));
        assert_eq!(tick(&s(0, 50)), Duration::from_millis(5));
        assert_eq!(tick(&s(5, 0)), Duration::from_millis(1));
        assert_eq!(tick(&s(0, 0)), MAX_TICK);
    }
}
