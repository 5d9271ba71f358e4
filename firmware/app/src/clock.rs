//! Milliseconds from a free-running 32-bit microsecond counter.
//!
//! 32-bit arithmetic only: on a Cortex-M0+ a `u64 / 1000` links
//! compiler_builtins' 64-bit division (~900 bytes of flash).

/// Widens a wrapping 32-bit microsecond counter (the RP2040 timer's low word
/// wraps every 71.6 minutes) into milliseconds since start, as `u64`.
///
/// Call [`now_ms`](MsClock::now_ms) at least once per counter wrap; a main
/// loop does.
#[derive(Debug, Clone)]
pub struct MsClock {
    last_us: u32,
    rem_us: u32,
    ms: u64,
}

impl MsClock {
    /// Starts at 0 ms with the counter reading `now_us`.
    pub const fn new(now_us: u32) -> Self {
        Self {
            last_us: now_us,
            rem_us: 0,
            ms: 0,
        }
    }

    /// Milliseconds since [`new`](MsClock::new), given the counter's current
    /// reading. Monotonic; sub-millisecond remainders carry over.
    pub fn now_ms(&mut self, now_us: u32) -> u64 {
        let elapsed = now_us
            .wrapping_sub(self.last_us)
            .saturating_add(self.rem_us);
        self.last_us = now_us;
        self.ms += u64::from(elapsed / 1000);
        self.rem_us = elapsed % 1000;
        self.ms
    }
}

#[cfg(test)]
mod tests {
    use super::MsClock;

    #[test]
    fn counts_milliseconds_and_carries_remainders() {
        let mut c = MsClock::new(100);
        assert_eq!(c.now_ms(100), 0);
        assert_eq!(c.now_ms(1_099), 0);
        assert_eq!(c.now_ms(1_100), 1);
        // 400 µs steps: the remainder carries, so 10 steps make 4 ms.
        let mut t = 1_100u32;
        for _ in 0..10 {
            t += 400;
            c.now_ms(t);
        }
        assert_eq!(c.now_ms(t), 5);
    }

    #[test]
    fn survives_counter_wrap() {
        let start = u32::MAX - 2_500;
        let mut c = MsClock::new(start);
        assert_eq!(c.now_ms(u32::MAX), 2);
        // Wraps to 1_499: 2_501 + 1_499 µs = 4 ms since start.
        assert_eq!(c.now_ms(1_499), 4);
        assert_eq!(c.now_ms(2_499), 5);
    }
}
