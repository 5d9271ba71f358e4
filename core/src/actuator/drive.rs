//! A set of named motors guarded by a deadman.

use heapless::Vec;

use super::{valid_speed, Deadman, Error, SetSpeed};

/// Up to `N` named motors and the [`Deadman`] that stops them.
///
/// Each command ([`set`](MotorSet::set), [`run`](MotorSet::run)) feeds the
/// deadman; [`poll`](MotorSet::poll), called from the main loop no later than
/// [`poll_at`](MotorSet::poll_at), stops every motor once the deadman
/// expires. Failures are fail-safe:
///
/// - a bad command (unknown name, NaN or out-of-range speed) changes nothing;
/// - a pin failure while applying a command stops every motor (the set is no
///   longer in the commanded state) and returns the pin error;
/// - a failed stop keeps the deadman expired, so the next `poll` tries again;
/// - dropping the set (normal exit, or unwinding from a panic on a gateway)
///   stops every motor, ignoring errors. With `panic = "abort"` (usual in
///   firmware) nothing is dropped: stop the motors from the panic handler or
///   rely on a watchdog reset.
///
/// Names are `&'static str` (a gateway that reads names from a config file
/// can leak them once at start-up, e.g. with `String::leak`).
///
/// ```
/// use banyan_core::actuator::{Error, MotorSet, SetSpeed};
///
/// // A simulated motor: any `SetSpeed` works.
/// #[derive(Default)]
/// struct Sim(f32);
/// impl SetSpeed for Sim {
///     type Error = Error;
///     fn set_speed(&mut self, s: f32) -> Result<(), Error> { self.0 = s; Ok(()) }
///     fn stop(&mut self) -> Result<(), Error> { self.0 = 0.0; Ok(()) }
/// }
///
/// let mut drive: MotorSet<Sim, 2> = MotorSet::new(500);
/// drive.add("left", Sim::default()).map_err(|(e, _)| e)?;
/// drive.add("right", Sim::default()).map_err(|(e, _)| e)?;
/// drive.run(1_000, &[("left", 0.5), ("right", -0.5)], None)?;
/// assert_eq!(drive.poll_at(), Some(1_500));
/// assert_eq!(drive.poll(1_499)?, false);
/// assert_eq!(drive.poll(1_500)?, true); // deadman: all stopped
/// assert_eq!(drive.get("left").unwrap().0, 0.0);
/// assert_eq!(drive.run(2_000, &[("left", 2.0)], None), Err(Error::InvalidSpeed));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MotorSet<M: SetSpeed, const N: usize> {
    motors: Vec<(&'static str, M), N>,
    deadman: Deadman,
}

impl<M: SetSpeed, const N: usize> MotorSet<M, N> {
    /// An empty set whose deadman stops the motors `timeout_ms` after the
    /// last command.
    pub const fn new(timeout_ms: u64) -> Self {
        MotorSet {
            motors: Vec::new(),
            deadman: Deadman::new(timeout_ms),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.motors.iter().position(|(n, _)| *n == name)
    }

    /// The motor called `name`.
    pub fn get(&self, name: &str) -> Option<&M> {
        self.index(name).map(|i| &self.motors[i].1)
    }

    /// The motor called `name`, mutably (writes through it do not feed the
    /// deadman).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut M> {
        self.index(name).map(|i| &mut self.motors[i].1)
    }

    /// The motors with their names, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &M)> + '_ {
        self.motors.iter().map(|(n, m)| (*n, m))
    }

    /// The number of motors.
    pub fn len(&self) -> usize {
        self.motors.len()
    }

    /// Whether the set holds no motor.
    pub fn is_empty(&self) -> bool {
        self.motors.is_empty()
    }

    /// The deadman (read-only; commands feed it).
    pub fn deadman(&self) -> &Deadman {
        &self.deadman
    }

    /// When [`poll`](MotorSet::poll) must be called next at the latest, in
    /// milliseconds; `None` when no deadline is pending.
    pub fn poll_at(&self) -> Option<u64> {
        self.deadman.deadline()
    }
}

impl<M, P, D, const N: usize> MotorSet<M, N>
where
    M: SetSpeed<Error = Error<P, D>>,
{
    /// Adds `motor` as `name`. Does not touch its pins.
    ///
    /// # Errors
    ///
    /// Gives the motor back with [`Error::DuplicateMotor`] if `name` is taken
    /// or [`Error::Full`] if the set holds `N` motors.
    pub fn add(&mut self, name: &'static str, motor: M) -> Result<(), (Error<P, D>, M)> {
        if self.index(name).is_some() {
            return Err((Error::DuplicateMotor, motor));
        }
        self.motors
            .push((name, motor))
            .map_err(|(_, motor)| (Error::Full, motor))
    }

    /// Sets one motor's speed: a command at `now_ms`, which feeds the
    /// deadman. The other motors keep their speeds.
    ///
    /// # Errors
    ///
    /// - [`Error::UnknownMotor`] or [`Error::InvalidSpeed`]: nothing changes.
    /// - A pin error from the motor: every motor is then stopped (see
    ///   [`stop_all`](MotorSet::stop_all)) and the motor's error returned.
    pub fn set(&mut self, now_ms: u64, name: &str, speed: f32) -> Result<(), Error<P, D>> {
        self.run(now_ms, &[(name, speed)], None)
    }

    /// Applies a `run_motors`-style command at `now_ms`: each `(name,
    /// speed)` in order (a name given twice ends at its last speed); motors
    /// not named keep their speeds, and an empty list only feeds the deadman
    /// (a keep-alive). With `duration_ms` the run is timed: every motor
    /// stops at `now_ms + duration_ms` (see [`Deadman::feed_for`]); without,
    /// the deadman timeout applies.
    ///
    /// # Errors
    ///
    /// - [`Error::UnknownMotor`] or [`Error::InvalidSpeed`] for any entry:
    ///   checked before anything is written, so nothing changes.
    /// - A pin error from a motor: every motor is then stopped (see
    ///   [`stop_all`](MotorSet::stop_all)) and that first error returned.
    pub fn run(
        &mut self,
        now_ms: u64,
        speeds: &[(&str, f32)],
        duration_ms: Option<u64>,
    ) -> Result<(), Error<P, D>> {
        for (name, speed) in speeds {
            if self.index(name).is_none() {
                return Err(Error::UnknownMotor);
            }
            if !valid_speed(*speed) {
                return Err(Error::InvalidSpeed);
            }
        }
        for (name, speed) in speeds {
            if let Some(i) = self.index(name) {
                if let Err(e) = self.motors[i].1.set_speed(*speed) {
                    // Half-applied: stop everything; a failed stop leaves the
                    // deadman expired so `poll` retries.
                    let _ = self.stop_all();
                    return Err(e);
                }
            }
        }
        match duration_ms {
            Some(d) => self.deadman.feed_for(now_ms, d),
            None => self.deadman.feed(now_ms),
        }
        Ok(())
    }

    /// Stops every motor, trying each even if an earlier one fails, and
    /// disarms the deadman.
    ///
    /// # Errors
    ///
    /// The first motor error. The deadman is then left expired, so the next
    /// [`poll`](MotorSet::poll) tries again.
    pub fn stop_all(&mut self) -> Result<(), Error<P, D>> {
        let mut first = None;
        for (_, motor) in self.motors.iter_mut() {
            if let Err(e) = motor.stop() {
                first.get_or_insert(e);
            }
        }
        match first {
            None => {
                self.deadman.disarm();
                Ok(())
            }
            Some(e) => {
                self.deadman.expire();
                Err(e)
            }
        }
    }

    /// Call from the main loop with the current time: when the deadman has
    /// expired (no command within the timeout, or a timed run has ended),
    /// stops every motor and returns `Ok(true)`; otherwise `Ok(false)`.
    ///
    /// # Errors
    ///
    /// The first motor error of [`stop_all`](MotorSet::stop_all); the next
    /// `poll` tries again.
    pub fn poll(&mut self, now_ms: u64) -> Result<bool, Error<P, D>> {
        if self.deadman.is_expired(now_ms) {
            self.stop_all().map(|()| true)
        } else {
            Ok(false)
        }
    }
}

impl<M: SetSpeed, const N: usize> Drop for MotorSet<M, N> {
    /// Stops every motor (fail-safe on exit); errors are ignored.
    fn drop(&mut self) {
        for (_, motor) in self.motors.iter_mut() {
            let _ = motor.stop();
        }
    }
}
