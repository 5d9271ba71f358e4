//! A deadman timer over caller-supplied time.

/// A deadman timer: expires when no command was fed within a timeout.
///
/// Sans-IO: the caller passes `now_ms` (milliseconds from its own monotonic
/// clock) to every call. A new deadman is *disarmed* — there is nothing to
/// stop before the first command. [`feed`](Deadman::feed) arms it until
/// `now + timeout`, [`feed_for`](Deadman::feed_for) until `now + duration`
/// (a timed run), and [`check`](Deadman::check) reports expiry once and
/// disarms. If the clock steps backwards, expiry is simply later; nothing
/// overflows (deadlines saturate at `u64::MAX`, i.e. never).
///
/// [`MotorSet`](super::MotorSet) embeds one and stops its motors on expiry;
/// use a bare `Deadman` for actuators of your own.
///
/// ```
/// use banyan_core::actuator::Deadman;
/// let mut d = Deadman::new(500);
/// assert!(!d.check(10_000)); // disarmed until the first command
/// d.feed(1_000);
/// assert!(!d.check(1_499));
/// assert!(d.check(1_500)); // expired: stop the motors
/// assert!(!d.check(1_501)); // reported once
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Deadman {
    timeout_ms: u64,
    deadline: Option<u64>,
}

impl Deadman {
    /// A disarmed deadman with the given timeout in milliseconds.
    pub const fn new(timeout_ms: u64) -> Self {
        Deadman {
            timeout_ms,
            deadline: None,
        }
    }

    /// The timeout in milliseconds.
    pub const fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// A command arrived at `now_ms`: arm until `now_ms + timeout`.
    /// Replaces any earlier deadline, including a timed run's.
    pub fn feed(&mut self, now_ms: u64) {
        self.deadline = Some(now_ms.saturating_add(self.timeout_ms));
    }

    /// A timed command arrived at `now_ms`: arm until `now_ms + duration_ms`,
    /// whether that is sooner or later than the timeout. The command bounds
    /// its own run; callers should reject durations above their own limit.
    /// Replaces any earlier deadline.
    pub fn feed_for(&mut self, now_ms: u64, duration_ms: u64) {
        self.deadline = Some(now_ms.saturating_add(duration_ms));
    }

    /// Disarms: nothing is pending until the next feed.
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// Arms with a deadline in the past, so the next check reports expiry
    /// (used to retry a stop that failed).
    pub fn expire(&mut self) {
        self.deadline = Some(0);
    }

    /// The armed deadline in milliseconds, `None` when disarmed: when the
    /// caller must call [`check`](Deadman::check) next at the latest.
    pub const fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// Whether the deadman is armed and its deadline is at or before
    /// `now_ms`. Does not disarm.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.deadline, Some(d) if now_ms >= d)
    }

    /// Returns `true` once when the deadline has passed, and disarms; the
    /// caller must then stop what the deadman guards.
    pub fn check(&mut self, now_ms: u64) -> bool {
        let expired = self.is_expired(now_ms);
        if expired {
            self.deadline = None;
        }
        expired
    }
}
