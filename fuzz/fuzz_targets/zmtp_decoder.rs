//! The native backplane's ZMTP stream decoder (`banyan_zmtp::Decoder`)
//! on arbitrary byte streams, as a peer would send them after the greeting.
//!
//! Input: byte 0 picks the size limit (`16 + 4 * b0` bytes), byte 1 the
//! chunk size (`1 + b1 % 64`), the rest is the stream. Checks: no panic;
//! every step consumes at least one byte and no more than it has; message
//! and command ranges (commands between a message's frames too, cut out as
//! the backplane does) lie inside what is buffered; and the stream decodes to
//! the same commands, messages and skipped-message count, and the same
//! error-or-not, whether it arrives whole or in chunks.
#![no_main]

use banyan_zmtp::check::decode_steps as decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [b0, b1, stream @ ..] = data else {
        return;
    };
    let max = 16 + 4 * usize::from(*b0);
    let chunk = 1 + usize::from(*b1 % 64);
    let whole = decode(stream, max, usize::MAX);
    let chunked = decode(stream, max, chunk);
    assert_eq!(whole, chunked, "chunk size {chunk} changes the result");
});
