//! Reproducers of what the fuzz targets found outside the core (the files
//! are other owners'; see docs/fuzzing.md "Findings"). Each test asserts the
//! *correct* behaviour; a test is `#[ignore]`d only while its finding is open.
//! F1 is fixed (gateways/src/wire.rs checks ext types like Python).

use banyan_component::wire::Validator;
use banyan_core::msg::{self, Limits};

/// F1: `banyan_component::wire::Validator::check` accepts extension types
/// that Python's `unpackb(raw=False)` raises on (ValueError "code must be
/// 0~127"; "invalid timestamp data (length 2)"), contrary to its module docs
/// ("a message we accept never crashes a Python receiver"). The core's
/// `msg::validate` refuses them.
#[test]
fn f1_gateway_validator_accepts_reserved_ext_types() {
    for bad in [
        &b"\xd4\xfe\x00"[..],     // fixext1, type -2
        b"\x81\xa1k\xd4\xfe\x00", // {'k': ext(-2)}
        b"\xd5\xff\x00\x00",      // timestamp (-1) of 2 bytes
    ] {
        assert!(msg::validate(bad, &Limits::DEFAULT).is_err());
        assert!(
            Validator::new().check(bad).is_err(),
            "gateway accepts {bad:02x?}, which crashes a Python receiver"
        );
    }
}

/// The same inputs with a legal ext type are accepted by both.
#[test]
fn legal_ext_types_accepted_by_both() {
    for ok in [&b"\xd4\x05\x00"[..], b"\xd6\xff\x00\x00\x00\x01"] {
        assert_eq!(msg::validate(ok, &Limits::DEFAULT), Ok(()));
        assert_eq!(Validator::new().check(ok), Ok(()));
    }
}
