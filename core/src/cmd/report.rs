//! Report encoders: maps with a `report` key, written into a caller's buffer.
//!
//! Each function writes one complete MessagePack map into `buf` and returns
//! its length; key order and encodings are those Python's
//! `packb(use_bin_type=True)` produces for the same dict literal (floats as
//! float64, ints in their smallest encoding).
//!
//! # Errors
//! Every function returns [`msg::Error::BufferFull`] when `buf` is too small
//! (the buffer's contents are then unspecified); nothing panics.
//!
//! ```
//! use banyan_core::cmd::report;
//! let mut buf = [0u8; 64];
//! let n = report::analog_input(&mut buf, 2, 512).unwrap();
//! // msgpack.packb({'report': 'analog_input', 'pin': 2, 'value': 512}, use_bin_type=True)
//! assert_eq!(&buf[..n], b"\x83\xa6report\xacanalog_input\xa3pin\x02\xa5value\xcd\x02\x00");
//! ```

use crate::msg::{self, Writer};
use core::fmt;

fn start<'b>(buf: &'b mut [u8], entries: usize, kind: &str) -> Result<Writer<'b>, msg::Error> {
    let mut w = Writer::new(buf);
    w.map(entries)?.str("report")?.str(kind)?;
    Ok(w)
}

/// `{"report": "digital_input", "pin": pin, "value": value, "timestamp": timestamp}`;
/// `timestamp` in seconds (Python sends `time.time()`; the caller supplies its clock).
///
/// # Errors
/// [`msg::Error::BufferFull`].
pub fn digital_input(
    buf: &mut [u8],
    pin: u8,
    value: u8,
    timestamp: f64,
) -> Result<usize, msg::Error> {
    let mut w = start(buf, 4, "digital_input")?;
    w.str("pin")?
        .uint(pin.into())?
        .str("value")?
        .uint(value.into())?;
    w.str("timestamp")?.float(timestamp)?;
    Ok(w.len())
}

/// `{"report": "analog_input", "pin": pin, "value": value}`.
///
/// # Errors
/// [`msg::Error::BufferFull`].
pub fn analog_input(buf: &mut [u8], pin: u8, value: u16) -> Result<usize, msg::Error> {
    let mut w = start(buf, 3, "analog_input")?;
    w.str("pin")?
        .uint(pin.into())?
        .str("value")?
        .uint(value.into())?;
    Ok(w.len())
}

/// `{"report": "i2c_data", "value": [b0, b1, ...]}` (a list of ints, as Python sends).
///
/// # Errors
/// [`msg::Error::BufferFull`].
pub fn i2c_data(buf: &mut [u8], data: &[u8]) -> Result<usize, msg::Error> {
    let mut w = start(buf, 2, "i2c_data")?;
    w.str("value")?.array(data.len())?;
    for b in data {
        w.uint((*b).into())?;
    }
    Ok(w.len())
}

/// `{"report": "sonar_data", "value": distance_cm}` (a float, in centimetres).
///
/// # Errors
/// [`msg::Error::BufferFull`].
pub fn sonar_data(buf: &mut [u8], distance_cm: f64) -> Result<usize, msg::Error> {
    let mut w = start(buf, 2, "sonar_data")?;
    w.str("value")?.float(distance_cm)?;
    Ok(w.len())
}

/// `{"report": "state", "motors": {name: speed, ...}, "leds": {name: brightness, ...}}`.
///
/// Values are written as float64 (widened exactly from `f32`, so `0.3f32`
/// reads back as `0.30000001192092896`). This is **not** the robot
/// contract's state report: nodes that drive motors send
/// [`Robot::state_report`](crate::robot::Robot::state_report) (numbers as
/// sent, `stopped_by`).
///
/// # Errors
/// [`msg::Error::BufferFull`].
pub fn state(
    buf: &mut [u8],
    motors: &[(&str, f32)],
    leds: &[(&str, f32)],
) -> Result<usize, msg::Error> {
    let mut w = start(buf, 3, "state")?;
    for (key, list) in [("motors", motors), ("leds", leds)] {
        w.str(key)?.map(list.len())?;
        for (name, x) in list {
            w.str(name)?.float((*x).into())?;
        }
    }
    Ok(w.len())
}

/// `{"report": "error", "topic": topic, "reason": reason}`, the reason being
/// `reason`'s `Display` text — for a [`super::Error`] that names the
/// offending field, e.g. `"value out of range for field left"`.
///
/// The robot contract's error report also echoes the refused command:
/// [`robot::error_report`](crate::robot::error_report).
///
/// # Errors
/// [`msg::Error::BufferFull`]; [`msg::Error::Unencodable`] if `reason`'s
/// `Display` fails.
pub fn error(buf: &mut [u8], topic: &str, reason: &dyn fmt::Display) -> Result<usize, msg::Error> {
    let mut w = start(buf, 3, "error")?;
    w.str("topic")?.str(topic)?.str("reason")?.display(reason)?;
    Ok(w.len())
}
