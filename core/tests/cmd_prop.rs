//! `RunMotors` and `LightLeds` against a reference model: generated maps of
//! names to numbers, bools, strings and nils, encoded with `msg::Writer`, must
//! parse to exactly the model's speeds or the model's first error.

use banyan_core::cmd::{Error, LightLeds, RunMotors};
use banyan_core::msg::Writer;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum V {
    F(f64),
    I(i64),
    Big(u64),
    Nan,
    Bool(bool),
    Str,
    Nil,
}

fn arb_v() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => (-1.5f64..1.5).prop_map(V::F),
        2 => (-3i64..=3).prop_map(V::I),
        1 => (0u64..=u64::MAX).prop_map(V::Big),
        1 => Just(V::Nan),
        1 => any::<bool>().prop_map(V::Bool),
        1 => Just(V::Str),
        1 => Just(V::Nil),
    ]
}

fn arb_entries() -> impl Strategy<Value = Vec<(&'static str, V)>> {
    proptest::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "c", "duration_ms"]),
            arb_v(),
        ),
        0..6,
    )
}

fn encode(entries: &[(&str, V)]) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut w = Writer::new(&mut buf);
    w.map(entries.len()).unwrap();
    for (k, v) in entries {
        w.str(k).unwrap();
        match v {
            V::F(x) => w.float(*x),
            V::I(i) => w.int(*i),
            V::Big(u) => w.uint(*u),
            V::Nan => w.float(f64::NAN),
            V::Bool(b) => w.bool(*b),
            V::Str => w.str("fast"),
            V::Nil => w.nil(),
        }
        .unwrap();
    }
    let n = w.len();
    buf.truncate(n);
    buf
}

/// A number in [lo, hi] as the spec says: ints and floats, NaN and others refused.
fn model_number(name: &'static str, v: &V, lo: f64, hi: f64) -> Result<f32, Error<'static>> {
    let x = match v {
        V::F(x) => *x,
        V::I(i) => *i as f64,
        V::Big(u) => *u as f64,
        V::Nan => return Err(Error::NotANumber(name)),
        V::Bool(_) | V::Str | V::Nil => return Err(Error::WrongType(name)),
    };
    if x < lo || x > hi {
        return Err(Error::OutOfRange(name));
    }
    Ok(x as f32)
}

type Parsed<'a> = Result<(Vec<(&'a str, f32)>, Option<u32>), Error<'a>>;
type Model = Parsed<'static>;

fn model_run_motors(entries: &[(&'static str, V)], cap: usize) -> Model {
    let mut speeds: Vec<(&str, f32)> = Vec::new();
    let mut duration = None;
    for (k, v) in entries {
        if *k == "duration_ms" {
            if duration.is_some() {
                return Err(Error::DuplicateName(k));
            }
            duration = Some(match v {
                V::I(i) if *i >= 0 => *i as u32,
                V::Big(u) => u32::try_from(*u).map_err(|_| Error::OutOfRange(k))?,
                V::I(_) => return Err(Error::OutOfRange(k)),
                _ => return Err(Error::WrongType(k)),
            });
            continue;
        }
        let x = model_number(k, v, -1.0, 1.0)?;
        if speeds.iter().any(|(n, _)| n == k) {
            return Err(Error::DuplicateName(k));
        }
        if speeds.len() == cap {
            return Err(Error::TooMany(k));
        }
        speeds.push((k, x));
    }
    Ok((speeds, duration))
}

fn model_light_leds(
    entries: &[(&'static str, V)],
    cap: usize,
) -> Result<Vec<(&'static str, f32)>, Error<'static>> {
    let mut levels: Vec<(&str, f32)> = Vec::new();
    for (k, v) in entries {
        let x = match v {
            V::Bool(b) => f32::from(u8::from(*b)),
            _ => model_number(k, v, 0.0, 1.0)?,
        };
        if levels.iter().any(|(n, _)| n == k) {
            return Err(Error::DuplicateName(k));
        }
        if levels.len() == cap {
            return Err(Error::TooMany(k));
        }
        levels.push((k, x));
    }
    Ok(levels)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn run_motors_matches_the_model(entries in arb_entries()) {
        let bytes = encode(&entries);
        let got = RunMotors::<2>::parse(&bytes)
            .map(|c| (c.speeds.iter().map(|(n, s)| (*n, *s)).collect::<Vec<_>>(), c.duration_ms));
        let want = model_run_motors(&entries, 2);
        // Compare with names as owned strings (the parsed names borrow `bytes`).
        let own = |r: &Parsed<'_>| match r {
            Ok((s, d)) => Ok((s.iter().map(|(n, x)| (n.to_string(), *x)).collect::<Vec<_>>(), *d)),
            Err(e) => Err(e.to_string()),
        };
        prop_assert_eq!(own(&got), own(&want), "{:?}", entries);
    }

    #[test]
    fn light_leds_matches_the_model(entries in arb_entries()) {
        let bytes = encode(&entries);
        let got = LightLeds::<3>::parse(&bytes)
            .map(|c| c.levels.iter().map(|(n, x)| (n.to_string(), *x)).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        let want = model_light_leds(&entries, 3)
            .map(|l| l.iter().map(|(n, x)| (n.to_string(), *x)).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        prop_assert_eq!(got, want, "{:?}", entries);
    }
}
