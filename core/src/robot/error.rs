//! Why the robot refused a command.

use core::fmt;

use crate::cmd::{self, RunMotors};

/// Why [`Robot`](super::Robot) refused a command; its `Display` text is the
/// `reason` of the error report.
///
/// Every reason names the offending field (the motor or LED name, or
/// `duration_ms`), and an unknown motor or LED name lists the valid ones:
///
/// | variant | reason |
/// |---------|--------|
/// | [`Command`](Error::Command) | the parser's, e.g. `value out of range for field left` |
/// | [`UnknownName`](Error::UnknownName) | `unknown field wheel (valid: left, right)` |
/// | [`DurationOverLimit`](Error::DurationOverLimit) | `value out of range for field duration_ms (max 10000)` |
/// | [`MotorFailed`](Error::MotorFailed) | `motor output failed, all motors stopped` |
/// | [`LedFailed`](Error::LedFailed) | `led output failed` |
/// | [`UnknownTopic`](Error::UnknownTopic) | `unknown topic` |
///
/// Names borrow from the payload and from the robot, so an `Error` lives as
/// long as both; it never owns text.
///
/// ```
/// use banyan_core::robot::Error;
/// let e = Error::UnknownName { name: "wheel", valid: &["left", "right"] };
/// assert_eq!(e.to_string(), "unknown field wheel (valid: left, right)");
/// let e = Error::DurationOverLimit { max_ms: 10_000 };
/// assert_eq!(e.to_string(), "value out of range for field duration_ms (max 10000)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<'a> {
    /// The payload is malformed, or a value has the wrong type or is out of
    /// range (see [`cmd::Error`]).
    Command(cmd::Error<'a>),
    /// A motor (`run_motors`) or LED (`light_leds`) name the robot does not
    /// have.
    UnknownName {
        /// The name in the command.
        name: &'a str,
        /// The robot's names for this command, in the order they were added.
        valid: &'a [&'a str],
    },
    /// A timed run longer than the robot's limit
    /// ([`Robot::set_max_run_ms`](super::Robot::set_max_run_ms)).
    DurationOverLimit {
        /// The limit in milliseconds.
        max_ms: u64,
    },
    /// A motor output failed while applying the command; every motor has
    /// been stopped (fail-safe) and the state says `stopped_by: pin_failure`.
    MotorFailed,
    /// An LED output failed; the other LEDs of the command were set.
    LedFailed,
    /// The topic is neither of the robot's
    /// ([`Topics`](super::Topics)).
    UnknownTopic,
}

/// [`cmd::Error::UnknownField`] becomes [`Error::UnknownName`] with no valid
/// names yet ([`Robot::handle`](super::Robot::handle) fills them in); every
/// other parser error is [`Error::Command`].
impl<'a> From<cmd::Error<'a>> for Error<'a> {
    fn from(e: cmd::Error<'a>) -> Self {
        match e {
            cmd::Error::UnknownField(name) => Error::UnknownName { name, valid: &[] },
            e => Error::Command(e),
        }
    }
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Command(e) => fmt::Display::fmt(e, f),
            Error::UnknownName { name, valid } => {
                // The parser's own words, so no second copy in flash.
                fmt::Display::fmt(&cmd::Error::UnknownField(name), f)?;
                f.write_str(" (valid: ")?;
                let mut sep = "";
                for n in valid.iter() {
                    f.write_str(sep)?;
                    f.write_str(n)?;
                    sep = ", ";
                }
                if valid.is_empty() {
                    f.write_str("none")?;
                }
                f.write_str(")")
            }
            Error::DurationOverLimit { max_ms } => {
                fmt::Display::fmt(&cmd::Error::OutOfRange(RunMotors::<0>::DURATION_KEY), f)?;
                f.write_str(" (max ")?;
                // `usize`: 64-bit formatting would link 64-bit division on
                // 32-bit MCUs; a limit beyond 49 days prints saturated.
                let max = usize::try_from(*max_ms).unwrap_or(usize::MAX);
                fmt::Display::fmt(&max, f)?;
                f.write_str(")")
            }
            Error::MotorFailed => f.write_str("motor output failed, all motors stopped"),
            Error::LedFailed => f.write_str("led output failed"),
            Error::UnknownTopic => f.write_str("unknown topic"),
        }
    }
}

impl core::error::Error for Error<'_> {}
