//! The `cmd` parsers (`RunMotors`, `LightLeds`, `OneGpio`) on arbitrary
//! payloads: never a panic, only errors; and what they accept obeys the
//! documented ranges (speeds in [-1, 1], levels in [0, 1], no NaN, no
//! duplicate names, at most N names, a known command name).
#![no_main]

use banyan_core::cmd::{self, LightLeds, OneGpio, RunMotors};
use banyan_core::msg::{self, Value};
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

fn show(e: &cmd::Error<'_>) {
    let mut s = String::new();
    write!(s, "{e}").unwrap();
    assert!(!s.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let valid = msg::validate(data, &cmd::LIMITS);
    let is_map = matches!(Value::parse(data, &cmd::LIMITS), Ok(Value::Map(_)));

    match RunMotors::<4>::parse(data) {
        Ok(m) => {
            assert!(is_map);
            assert!(m.speeds.len() <= 4);
            for (i, (name, s)) in m.speeds.iter().enumerate() {
                assert!(s.is_finite() && (-1.0..=1.0).contains(s), "{name}: {s}");
                assert_ne!(*name, RunMotors::<4>::DURATION_KEY);
                assert!(
                    m.speeds[..i].iter().all(|(n, _)| n != name),
                    "duplicate {name}"
                );
                assert_eq!(m.speed(name), Some(*s));
            }
            let names: Vec<&str> = m.speeds.iter().map(|(n, _)| *n).collect();
            assert_eq!(m.check_names(&names), Ok(()));
            if let Some((first, rest)) = names.split_first() {
                assert_eq!(m.check_names(rest), Err(cmd::Error::UnknownField(first)));
            }
        }
        Err(e) => {
            show(&e);
            if valid.is_err() {
                assert!(matches!(e, cmd::Error::Msg(_)));
            }
        }
    }

    match LightLeds::<4>::parse(data) {
        Ok(l) => {
            assert!(is_map);
            for (name, x) in &l.levels {
                assert!(x.is_finite() && (0.0..=1.0).contains(x), "{name}: {x}");
                assert_eq!(l.level(name), Some(*x));
            }
            let names: Vec<&str> = l.levels.iter().map(|(n, _)| *n).collect();
            assert_eq!(l.check_names(&names), Ok(()));
        }
        Err(e) => show(&e),
    }

    match OneGpio::parse(data) {
        Ok(c) => {
            assert!(is_map);
            assert!(OneGpio::COMMANDS.contains(&c.name()), "{}", c.name());
            if let Some(p) = c.pin() {
                assert!(p.pin.is_some() || p.tag.is_some(), "{c:?} names no pin");
                if let Some(t) = p.tag {
                    assert!(!t.is_empty());
                }
            }
            if let OneGpio::I2cWrite { data, .. } = &c {
                assert!(data.len() <= cmd::I2cData::MAX_LEN);
                assert_eq!(data.iter().count(), data.len(), "i2c data not all bytes");
                let mut out = [0u8; 300];
                assert_eq!(data.copy_to(&mut out), data.len());
                assert_eq!(data.copy_to(&mut out[..1]), data.len().min(1));
            }
        }
        Err(e) => show(&e),
    }
});
