//! The typed robot command model, shared by the Pi gateway and the firmware.
//!
//! Commands arrive as MessagePack maps (see [`crate::msg`]) and are parsed
//! zero-copy into fixed-capacity types; every malformed, out-of-range or
//! unknown input becomes a specific [`Error`] that names the offending field,
//! never a clamp, a default or a panic. Reports are encoded straight into a
//! caller's buffer by the functions in [`report`].
//!
//! | topic payload | type | keys |
//! |---------------|------|------|
//! | `run_motors` | [`RunMotors`] | motor name → speed in [-1, 1]; optional `duration_ms` |
//! | `light_leds` | [`LightLeds`] | LED name → brightness in [0, 1] or bool |
//! | OneGPIO (`to_rpi_gateway`, …) | [`OneGpio`] | `command` + the command's fields, optional `tag` |
//!
//! # Unknown keys
//!
//! - `run_motors` / `light_leds`: every key except `duration_ms` is a device
//!   name, so the parser cannot know which names exist. The gateway or
//!   firmware calls [`RunMotors::check_names`] / [`LightLeds::check_names`]
//!   with its configured names, which rejects any other with
//!   [`Error::UnknownField`] ("unknown fields are errors").
//! - OneGPIO: extra keys are **tolerated and ignored**, because Python Banyan
//!   clients add their own (e.g. `message_target`, `tag`) and Python's
//!   gateways ignore them; every field the command uses is checked.
//!
//! # Example
//! ```
//! use banyan_core::cmd::{Error, RunMotors};
//! // msgpack.packb({'left': 0.5, 'right': -1, 'duration_ms': 500}, use_bin_type=True)
//! let payload = b"\x83\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xff\xabduration_ms\xcd\x01\xf4";
//! let cmd = RunMotors::<4>::parse(payload).unwrap();
//! assert_eq!(cmd.speed("left"), Some(0.5));
//! assert_eq!(cmd.speed("right"), Some(-1.0));
//! assert_eq!(cmd.duration_ms, Some(500));
//! assert_eq!(cmd.check_names(&["left"]), Err(Error::UnknownField("right")));
//! ```

mod gpio;
pub mod report;

pub use gpio::{I2cData, OneGpio, PinRef};

use crate::msg::{self, Limits, MapRef, Value};
use core::fmt;
use heapless::Vec;

/// Why a command payload was refused. Fields and names borrow from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<'a> {
    /// The payload is not well-formed MessagePack within the limits.
    Msg(msg::Error),
    /// The payload is well-formed but not a map.
    NotAMap,
    /// A map key is not a str.
    KeyNotStr,
    /// A required field is absent.
    MissingField(&'a str),
    /// A field has the wrong MessagePack type.
    WrongType(&'a str),
    /// A numeric field is outside its allowed range.
    OutOfRange(&'a str),
    /// A float field is NaN.
    NotANumber(&'a str),
    /// A name appears twice in the same map.
    DuplicateName(&'a str),
    /// More names than the command type's capacity (or a list too long).
    TooMany(&'a str),
    /// A key that this command, or this robot, does not have.
    UnknownField(&'a str),
    /// The `command` value names no known command.
    UnknownCommand(&'a str),
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Text then name with `write_str`, not `write!`: no format
        // arguments to build per variant, which keeps firmware small.
        let (text, name) = match self {
            Error::Msg(e) => {
                f.write_str("malformed payload: ")?;
                return fmt::Display::fmt(e, f);
            }
            Error::NotAMap => ("payload is not a map", ""),
            Error::KeyNotStr => ("map key is not a str", ""),
            Error::MissingField(n) => ("missing field ", *n),
            Error::WrongType(n) => ("wrong type for field ", *n),
            Error::OutOfRange(n) => ("value out of range for field ", *n),
            Error::NotANumber(n) => ("NaN for field ", *n),
            Error::DuplicateName(n) => ("duplicate field ", *n),
            Error::TooMany(n) => ("too many entries at field ", *n),
            Error::UnknownField(n) => ("unknown field ", *n),
            Error::UnknownCommand(n) => ("unknown command ", *n),
        };
        f.write_str(text)?;
        f.write_str(name)
    }
}

impl core::error::Error for Error<'_> {}

impl From<msg::Error> for Error<'_> {
    fn from(e: msg::Error) -> Self {
        Error::Msg(e)
    }
}

/// Limits used when parsing commands: [`Limits::DEFAULT`] with at most 4 KiB
/// input and depth 4 (no command nests deeper than 2).
pub const LIMITS: Limits = Limits::new().with_max_size(4096).with_max_depth(4);

/// Validates `payload` with [`LIMITS`] and returns its top-level map.
fn top_map(payload: &[u8]) -> Result<MapRef<'_>, Error<'_>> {
    Value::parse(payload, &LIMITS)?
        .as_map()
        .ok_or(Error::NotAMap)
}

/// A number in `[lo, hi]`: ints and floats accepted, NaN and anything else
/// refused. Returns it as `f32` (for the actuator) and as `f64`, which is
/// exactly the number sent: every float32 and float64 is, and so is every
/// integer in range.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "range-checked to [lo, hi] (f32 bounds) first; the f64 is kept to report it as sent"
)]
fn fraction<'a>(name: &'a str, v: &Value<'a>, lo: f32, hi: f32) -> Result<(f32, f64), Error<'a>> {
    let x = v.as_f64().ok_or(Error::WrongType(name))?;
    if x.is_nan() {
        return Err(Error::NotANumber(name));
    }
    if !(f64::from(lo)..=f64::from(hi)).contains(&x) {
        return Err(Error::OutOfRange(name));
    }
    Ok((x as f32, x))
}

#[inline]
fn push_unique<'a, const N: usize>(
    list: &mut Vec<(&'a str, f32), N>,
    sent: &mut Vec<f64, N>,
    name: &'a str,
    (x, number): (f32, f64),
) -> Result<(), Error<'a>> {
    if list.iter().any(|(n, _)| *n == name) {
        return Err(Error::DuplicateName(name));
    }
    // Same capacity and length: both pushes succeed or the first fails.
    list.push((name, x)).map_err(|_| Error::TooMany(name))?;
    sent.push(number).map_err(|_| Error::TooMany(name))
}

fn check_known<'a>(list: &[(&'a str, f32)], known: &[&str]) -> Result<(), Error<'a>> {
    match list.iter().find(|(n, _)| !known.contains(n)) {
        Some((n, _)) => Err(Error::UnknownField(n)),
        None => Ok(()),
    }
}

/// `run_motors`: signed speeds in [-1, 1] by motor name, for at most `N` motors.
///
/// Payload: a map of motor name → int or float speed, plus an optional
/// `"duration_ms"` (a `u32`; the motors stop after it). Speeds are fractions
/// of full speed, negative for reverse; the key `duration_ms` is reserved and
/// cannot name a motor. An empty map is valid (it changes nothing but feeds
/// the deadman).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RunMotors<'a, const N: usize> {
    /// `(name, speed)` in payload order, names unique, speeds in [-1, 1].
    pub speeds: Vec<(&'a str, f32), N>,
    /// The speeds exactly as they were sent (every MessagePack float and
    /// every integer in range is an exact `f64`), in the same order as
    /// [`speeds`](Self::speeds): what a report sends back, so `0.3` comes
    /// back as `0.3`, not as the `f32` nearest to it (`0.30000001192092896`).
    pub sent: Vec<f64, N>,
    /// How long to run, in milliseconds, if given.
    pub duration_ms: Option<u32>,
}

impl<'a, const N: usize> RunMotors<'a, N> {
    /// The key that carries the duration.
    pub const DURATION_KEY: &'static str = "duration_ms";

    /// Parses a `run_motors` payload (validating it with [`LIMITS`]).
    ///
    /// # Errors
    /// [`Error::Msg`] / [`Error::NotAMap`] / [`Error::KeyNotStr`] for a
    /// malformed payload; for a speed: [`Error::WrongType`] (not a number),
    /// [`Error::NotANumber`], [`Error::OutOfRange`] (outside [-1, 1]);
    /// [`Error::DuplicateName`]; [`Error::TooMany`] beyond `N` motors; for
    /// `duration_ms`: [`Error::WrongType`] or [`Error::OutOfRange`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error<'a>> {
        Self::from_map(top_map(payload)?)
    }

    /// Parses an already validated map.
    ///
    /// # Errors
    /// As [`RunMotors::parse`].
    pub fn from_map(map: MapRef<'a>) -> Result<Self, Error<'a>> {
        let mut speeds = Vec::new();
        let mut sent = Vec::new();
        let mut duration_ms = None;
        for (k, v) in map.iter() {
            let name = k.as_str().ok_or(Error::KeyNotStr)?;
            if name == Self::DURATION_KEY {
                if duration_ms.is_some() {
                    return Err(Error::DuplicateName(name));
                }
                duration_ms = Some(uint::<u32>(name, &v)?);
            } else {
                let x = fraction(name, &v, -1.0, 1.0)?;
                push_unique(&mut speeds, &mut sent, name, x)?;
            }
        }
        Ok(Self {
            speeds,
            sent,
            duration_ms,
        })
    }

    /// The speed given for `name`, if any.
    pub fn speed(&self, name: &str) -> Option<f32> {
        self.speeds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    /// Refuses any motor not in `known` (the robot's configured motors).
    ///
    /// # Errors
    /// [`Error::UnknownField`] with the first unknown name.
    pub fn check_names(&self, known: &[&str]) -> Result<(), Error<'a>> {
        check_known(&self.speeds, known)
    }
}

/// `light_leds`: brightness in [0, 1] by LED name, for at most `N` LEDs.
///
/// Payload: a map of LED name → `true`/`false` (1.0 / 0.0) or an int or float
/// brightness in [0, 1].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LightLeds<'a, const N: usize> {
    /// `(name, brightness)` in payload order, names unique, brightness in [0, 1].
    pub levels: Vec<(&'a str, f32), N>,
    /// The levels exactly as they were sent, in the same order as
    /// [`levels`](Self::levels) (see [`RunMotors::sent`]); `true`/`false`
    /// are `1.0`/`0.0`.
    pub sent: Vec<f64, N>,
}

impl<'a, const N: usize> LightLeds<'a, N> {
    /// Parses a `light_leds` payload (validating it with [`LIMITS`]).
    ///
    /// # Errors
    /// As [`RunMotors::parse`], with the range [0, 1] and bools accepted.
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error<'a>> {
        Self::from_map(top_map(payload)?)
    }

    /// Parses an already validated map.
    ///
    /// # Errors
    /// As [`LightLeds::parse`].
    pub fn from_map(map: MapRef<'a>) -> Result<Self, Error<'a>> {
        let mut levels = Vec::new();
        let mut sent = Vec::new();
        for (k, v) in map.iter() {
            let name = k.as_str().ok_or(Error::KeyNotStr)?;
            let x = match v {
                Value::Bool(true) => (1.0, 1.0),
                Value::Bool(false) => (0.0, 0.0),
                _ => fraction(name, &v, 0.0, 1.0)?,
            };
            push_unique(&mut levels, &mut sent, name, x)?;
        }
        Ok(Self { levels, sent })
    }

    /// The brightness given for `name`, if any.
    pub fn level(&self, name: &str) -> Option<f32> {
        self.levels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    /// Refuses any LED not in `known` (the robot's configured LEDs).
    ///
    /// # Errors
    /// [`Error::UnknownField`] with the first unknown name.
    pub fn check_names(&self, known: &[&str]) -> Result<(), Error<'a>> {
        check_known(&self.levels, known)
    }
}

/// An integer field that must fit `T` (ints only; floats and bools are wrong types).
fn uint<'a, T: TryFrom<u64>>(name: &'a str, v: &Value<'a>) -> Result<T, Error<'a>> {
    match *v {
        Value::UInt(u) => T::try_from(u).map_err(|_| Error::OutOfRange(name)),
        Value::Int(_) => Err(Error::OutOfRange(name)),
        _ => Err(Error::WrongType(name)),
    }
}

/// A signed integer field that must fit `T`.
fn int<'a, T: TryFrom<i64>>(name: &'a str, v: &Value<'a>) -> Result<T, Error<'a>> {
    match *v {
        Value::UInt(_) | Value::Int(_) => {
            let i = v.as_i64().ok_or(Error::OutOfRange(name))?;
            T::try_from(i).map_err(|_| Error::OutOfRange(name))
        }
        _ => Err(Error::WrongType(name)),
    }
}
