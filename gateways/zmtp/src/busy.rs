//! Adaptive busy polling before blocking, after the guest halt-polling
//! algorithm, for the poll loops of the native engines (backplane, services
//! broker). It does no I/O itself: the caller passes its poll as a closure
//! (`timeout` in, "events arrived" out) and it reads the clock.
//!
//! Before sleeping, the loop polls without blocking for up to `window`. The
//! window follows the sleeps: a sleep that ended (with an event) less than
//! `max` after the loop went idle doubles it (from `max / 16`, up to
//! `max`); a longer one, or a timeout, closes it. So a thread polls only
//! while messages keep arriving less than `max` apart, and a failed poll
//! costs at most one small window before a long sleep closes it. Waking a
//! sleeping thread costs tens of microseconds on some machines (virtual
//! CPUs most of all); a thread that is still polling sees the next message
//! at once.

use std::io;
use std::time::{Duration, Instant};

/// The busy-polling state of one loop (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    max: Duration,
    window: Duration,
}

impl BusyPoll {
    /// Busy polling while events come less than `max` apart (zero: never,
    /// every wait sleeps).
    pub fn new(max: Duration) -> BusyPoll {
        BusyPoll {
            max,
            window: Duration::ZERO,
        }
    }

    /// The current polling window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits for events up to `timeout` (`None`: no limit) with `poll`,
    /// which polls once for at most the timeout it is given and says
    /// whether events arrived.
    ///
    /// # Errors
    /// What `poll` returned.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut poll: impl FnMut(Option<Duration>) -> io::Result<bool>,
    ) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) || self.max.is_zero() {
            return poll(timeout).map(drop);
        }
        let idle_since = Instant::now();
        if !self.window.is_zero() {
            let window = timeout.map_or(self.window, |t| t.min(self.window));
            loop {
                if poll(Some(Duration::ZERO))? {
                    return Ok(());
                }
                if idle_since.elapsed() >= window {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let woken = poll(timeout)?;
        self.adapt(idle_since.elapsed(), woken);
        Ok(())
    }

    /// After a sleep that lasted `gap` since the loop went idle and ended
    /// with an event (`woken`) or a timeout.
    fn adapt(&mut self, gap: Duration, woken: bool) {
        self.window = if woken && gap <= self.max {
            (self.window * 2).max(self.max / 16).min(self.max)
        } else {
            Duration::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_on_short_gaps_and_closes_on_long_ones() {
        let max = Duration::from_micros(200);
        let mut busy = BusyPoll::new(max);
        let short = Duration::from_micros(50);
        // Short sleeps open the window and double it up to `max`.
        for expected in [12_500, 25_000, 50_000, 100_000, 200_000, 200_000] {
            busy.adapt(short, true);
            assert_eq!(busy.window(), Duration::from_nanos(expected));
        }
        // A long sleep, or a timeout, closes it.
        busy.adapt(Duration::from_millis(1), true);
        assert_eq!(busy.window(), Duration::ZERO);
        busy.adapt(short, true);
        busy.adapt(short, false);
        assert_eq!(busy.window(), Duration::ZERO);

        // An event found while polling: taken at once, the window stays.
        busy.window = max;
        let mut timeouts = Vec::new();
        busy.wait(None, |t| {
            timeouts.push(t);
            Ok(true)
        })
        .unwrap();
        assert_eq!(timeouts, [Some(Duration::ZERO)]);
        assert_eq!(busy.window(), max);
        // Nothing within the window: polls, then sleeps; the timeout closes
        // the window.
        timeouts.clear();
        let timeout = Some(Duration::from_millis(2));
        busy.wait(timeout, |t| {
            timeouts.push(t);
            Ok(false)
        })
        .unwrap();
        assert!(timeouts.len() >= 2, "{timeouts:?}");
        assert_eq!(timeouts.last(), Some(&timeout));
        assert_eq!(busy.window(), Duration::ZERO);
        // Off: one sleeping poll, the window never opens.
        let mut off = BusyPoll::new(Duration::ZERO);
        timeouts.clear();
        off.wait(None, |t| {
            timeouts.push(t);
            Ok(true)
        })
        .unwrap();
        assert_eq!(timeouts, [None]);
        assert_eq!(off.window(), Duration::ZERO);
    }
}
