//! The gateways' LAN message check (`banyan_component::wire`): `check_frames`
//! on arbitrary multipart messages, and `Validator::check` differentially
//! against the core's `msg::validate` (an independent implementation of the
//! same rules).
//!
//! Input: one byte `k`, then the frames, split at each `0xff 0x00` pair
//! (`k % 4` caps the number of splits so one-, two- and three-frame messages
//! all occur). Checks: no panic; `check_frames` accepts exactly two frames
//! with a UTF-8 topic and a payload that `Validator::check` accepts; a
//! reused validator answers as a fresh one; and
//! - core accepts (limits relaxed to the gateway's) ⇒ the gateway accepts;
//! - the gateway accepts ⇒ the core accepts, or refuses for a rule only the
//!   core has (nesting deeper than the core's 64, ext types; see
//!   docs/fuzzing.md, finding F1).
#![no_main]

use banyan_component::wire::{check_frames, Limits as WireLimits, Reject, Validator};
use banyan_core::msg::{self, Limits};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

static REUSED: Mutex<Option<Validator>> = Mutex::new(None);

fn split(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() && frames.len() < max {
        if data[i] == 0xff && data[i + 1] == 0x00 {
            frames.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    frames.push(&data[start..]);
    frames
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let frames = split(rest, usize::from(k % 4));
    let mut fresh = Validator::new();
    let r = check_frames(&mut fresh, &WireLimits::default(), &frames);
    match frames.len() {
        0 | 1 => assert_eq!(r, Err(Reject::MissingPayload)),
        2 => {
            let payload_ok = Validator::new().check(frames[1]);
            match std::str::from_utf8(frames[0]) {
                Err(_) => assert_eq!(r, Err(Reject::TopicNotUtf8)),
                Ok(topic) => match payload_ok {
                    Ok(()) => assert_eq!(r, Ok(topic)),
                    Err(e) => assert_eq!(r, Err(e)),
                },
            }
        }
        n => assert_eq!(r, Err(Reject::ExtraFrames { frames: n })),
    }

    // The payload check alone, on the whole input after the first byte.
    let gw = Validator::new().check(rest);
    {
        let mut guard = REUSED.lock().unwrap();
        let v = guard.get_or_insert_with(Validator::new);
        assert_eq!(
            v.check(rest),
            gw,
            "reused validator differs from a fresh one"
        );
    }
    let relaxed = Limits::new()
        .with_max_size(usize::MAX)
        .with_max_len(usize::MAX)
        .with_max_items(usize::MAX)
        .with_max_depth(Limits::MAX_DEPTH);
    let core = msg::validate(rest, &relaxed);
    match (&core, &gw) {
        (Ok(()), Ok(())) | (Err(_), Err(_)) => {}
        (Ok(()), Err(e)) => panic!("core accepts, gateway rejects: {e:?}"),
        (Err(e), Ok(())) => assert!(
            matches!(e, msg::Error::TooDeep),
            "gateway accepts, core rejects: {e:?}"
        ),
    }
});
