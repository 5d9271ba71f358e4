//! The services wire codec (`banyan_services::proto`) on arbitrary
//! multipart messages.
//!
//! Input: a sequence of frames, each `len u8, data[len]` (a frame cut short
//! by the end of the input keeps what is there); at most 8 frames. Checks:
//! no parser panics; whatever parses emits frames that parse back to the
//! same value (and, for the client request, to the same bytes).
#![no_main]

use banyan_fuzz::frames;
use banyan_services::proto::{request_id, Answer, FromWorker, Request, ToWorker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = frames(data);
    let _ = request_id(&f);
    if let Ok(r) = Request::parse(&f) {
        let again = r.emit();
        assert_eq!(Request::parse(&again), Ok(r));
        // Flags other than idempotent are ignored, so compare from the re-emit.
        assert_eq!(Request::parse(&again).map(|r| r.emit()), Ok(again.clone()));
    }
    if let Ok(a) = Answer::parse(&f) {
        let again = a.emit();
        assert_eq!(Answer::parse(&again), Ok(a));
        assert_eq!(again, f, "answers have one encoding");
    }
    if let Ok(m) = FromWorker::parse(&f) {
        let again = m.emit();
        assert_eq!(FromWorker::parse(&again), Ok(m));
    }
    if let Ok(m) = ToWorker::parse(&f) {
        let again = m.emit();
        assert_eq!(ToWorker::parse(&again), Ok(m));
    }
});
