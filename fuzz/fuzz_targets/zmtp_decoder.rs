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

use banyan_zmtp::{Decoder, Step};
use libfuzzer_sys::fuzz_target;

/// (kind, bytes) per step, and whether the stream ended in an error.
fn decode(stream: &[u8], max: usize, chunk: usize) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut decoder = Decoder::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        let step = match decoder.step(&buf) {
            Ok(s) => s,
            Err(_) => return (out, true),
        };
        let used = match step {
            Step::NeedMore => {
                if fed == stream.len() {
                    return (out, false);
                }
                let n = chunk.min(stream.len() - fed);
                buf.extend_from_slice(&stream[fed..fed + n]);
                fed += n;
                continue;
            }
            Step::Skipped(n) => n,
            Step::Oversize { skip } => {
                out.push((b'O', Vec::new()));
                skip
            }
            Step::Command { len, body } => {
                assert!(body <= len, "command body {body} outside {len}");
                out.push((b'C', buf[body..len].to_vec()));
                len
            }
            Step::Message { len, first } => {
                assert!(
                    first.0 <= first.1 && first.1 <= len,
                    "{first:?} outside {len}"
                );
                assert!(len <= max, "message of {len} bytes over the limit {max}");
                out.push((b'M', buf[..len].to_vec()));
                len
            }
            Step::Interleaved { at, len, body } => {
                assert!(
                    at > 0 && at < body && body <= at + len && at + len <= buf.len(),
                    "interleaved command {at}+{len} (body {body}) outside {}",
                    buf.len()
                );
                out.push((b'I', buf[body..at + len].to_vec()));
                // Cut the command out, as the backplane does.
                buf.drain(at..at + len);
                continue;
            }
        };
        assert!(
            used > 0 && used <= buf.len(),
            "step {step:?} on {} bytes",
            buf.len()
        );
        buf.drain(..used);
    }
}

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
