//! The native transport's receive path of a component: what a backplane
//! sends a subscriber (its greeting, `READY`, then messages and commands)
//! through the ZMTP decoder and the component's message rules
//! (`banyan_component::fuzzing::receive`).
//!
//! Input: byte 0 picks the chunk size (`1 + b0 % 64`), byte 1 the payload
//! limit (`8 + 64 * b1` bytes); the rest is the stream from the start of
//! the connection. Checks: no panic; the outcome (messages, rejections,
//! whether the connection stays open, the bytes we answer) is the same
//! whole, in chunks and byte by byte; every message delivered is a valid
//! `[topic, msgpack]` message within the limit; a message costs at least
//! its frames' bytes (no message from nothing).
#![no_main]

use banyan_component::fuzzing::receive;
use banyan_component::wire::{Limits, Validator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [b0, b1, stream @ ..] = data else {
        return;
    };
    let chunk = 1 + usize::from(*b0 % 64);
    let max = 8 + 64 * usize::from(*b1);
    let whole = receive(stream, stream.len().max(1), max);
    let chunked = receive(stream, chunk, max);
    assert_eq!(whole, chunked, "chunks of {chunk} differ from whole");
    if stream.len() <= 4096 {
        let bytewise = receive(stream, 1, max);
        assert_eq!(whole, bytewise, "byte by byte differs from whole");
    }
    let mut limits = Limits::default();
    limits.max_payload = max;
    let mut v = Validator::new();
    let mut bytes = 0;
    for (topic, payload) in &whole.messages {
        assert!(payload.len() <= max, "payload over the limit delivered");
        v.check_with(payload, &limits)
            .unwrap_or_else(|e| panic!("invalid payload delivered on {topic:?}: {e}"));
        bytes += topic.len() + payload.len() + 4;
    }
    assert!(bytes <= stream.len(), "more message bytes than input");
});
