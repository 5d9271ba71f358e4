use super::*;

/// A client REQUEST for service `echo`, id 7, 2500 ms, idempotent, body
/// `{"value": 1}` — the bytes of docs/services.md's example.
const REQUEST_HEADER: [u8; 18] = [
    b'B', b'S', b'C', b'1', 0x01, 0x01, 0x00, 0x00, 0x09, 0xc4, 0, 0, 0, 0, 0, 0, 0, 7,
];
const BODY: [u8; 8] = [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01];

#[test]
fn golden_request() {
    let frames: [&[u8]; 3] = [&REQUEST_HEADER, b"echo", &BODY];
    let r = Request::parse(&frames).unwrap();
    assert_eq!(
        r,
        Request {
            id: 7,
            idempotent: true,
            timeout_ms: 2500,
            service: "echo",
            body: &BODY
        }
    );
    assert_eq!(
        r.emit(),
        frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>()
    );
}

#[test]
fn golden_answers_and_worker_messages() {
    assert_eq!(
        reply_header(7),
        [b'B', b'S', b'C', b'1', 2, 0, 0, 0, 0, 0, 0, 0, 7]
    );
    assert_eq!(
        error_header(7, ErrorCode::UnknownService),
        [b'B', b'S', b'C', b'1', 3, 0, 0, 0, 0, 0, 0, 0, 7, 1]
    );
    assert_eq!(
        ready_header(1000, true, 1),
        [b'B', b'S', b'W', b'1', 1, 1, 0, 0, 0x03, 0xe8]
    );
    // A credit above 1: two more bytes (big endian).
    assert_eq!(
        ready_header(1000, true, 16),
        [b'B', b'S', b'W', b'1', 1, 1, 0, 0, 0x03, 0xe8, 0, 16]
    );
    assert_eq!(heartbeat(), b"BSW1\x04");
    assert_eq!(
        worker_request_header(0x0102, 250),
        [b'B', b'S', b'W', b'1', 6, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 250]
    );
}

fn roundtrip_to_worker(m: ToWorker<'_>) {
    let frames = m.emit();
    assert_eq!(ToWorker::parse(&frames).unwrap(), m);
}

fn roundtrip_from_worker(m: FromWorker<'_>) {
    let frames = m.emit();
    assert_eq!(FromWorker::parse(&frames).unwrap(), m);
}

#[test]
fn every_message_round_trips() {
    for a in [
        Answer::Reply { id: 1, body: &BODY },
        Answer::Error {
            id: u64::MAX,
            code: ErrorCode::Timeout,
            detail: "late",
        },
        Answer::Error {
            id: 3,
            code: ErrorCode::Other(200),
            detail: "",
        },
    ] {
        let frames = a.emit();
        assert_eq!(Answer::parse(&frames).unwrap(), a);
    }
    roundtrip_from_worker(FromWorker::Ready {
        service: "echo",
        heartbeat_ms: 1,
        busy_heartbeats: false,
        credit: 1,
    });
    roundtrip_from_worker(FromWorker::Ready {
        service: "echo",
        heartbeat_ms: 1,
        busy_heartbeats: true,
        credit: 300,
    });
    roundtrip_from_worker(FromWorker::Reply {
        token: 9,
        body: &BODY,
    });
    roundtrip_from_worker(FromWorker::Fail {
        token: 9,
        detail: "boom",
    });
    roundtrip_from_worker(FromWorker::Heartbeat);
    roundtrip_from_worker(FromWorker::Disconnect { reason: "" });
    roundtrip_from_worker(FromWorker::Disconnect { reason: "bye" });
    roundtrip_to_worker(ToWorker::Request {
        token: 5,
        budget_ms: 100,
        body: &BODY,
    });
    roundtrip_to_worker(ToWorker::Heartbeat);
    roundtrip_to_worker(ToWorker::Disconnect { reason: "x" });
}

#[test]
fn error_codes_round_trip() {
    for b in 0..=255u8 {
        assert_eq!(ErrorCode::from_u8(b).to_u8(), b);
    }
}

#[test]
fn malformed_requests_are_rejected_with_a_reason() {
    let empty: [&[u8]; 0] = [];
    assert_eq!(Request::parse(&empty), Err(ParseError::Empty));
    assert_eq!(
        Request::parse(&[&b"BSW1\x01"[..]]),
        Err(ParseError::Signature)
    );
    assert_eq!(
        Request::parse(&[&b"BSC1"[..]]),
        Err(ParseError::HeaderLength {
            expected: 5,
            got: 4
        })
    );
    assert_eq!(
        Request::parse(&[&REQUEST_HEADER[..], b"echo"]),
        Err(ParseError::FrameCount {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        Request::parse(&[&REQUEST_HEADER[..17], b"echo", &BODY]),
        Err(ParseError::HeaderLength {
            expected: 18,
            got: 17
        })
    );
    assert_eq!(
        Request::parse(&[&REQUEST_HEADER[..], b"", &BODY]),
        Err(ParseError::ServiceName)
    );
    assert_eq!(
        Request::parse(&[&REQUEST_HEADER[..], &[0xff][..], &BODY]),
        Err(ParseError::ServiceName)
    );
    let long = [b'a'; MAX_SERVICE_LEN + 1];
    assert_eq!(
        Request::parse(&[&REQUEST_HEADER[..], &long[..], &BODY]),
        Err(ParseError::ServiceName)
    );
    let zero = request_header(7, false, 0);
    assert_eq!(
        Request::parse(&[&zero[..], b"echo", &BODY]),
        Err(ParseError::ZeroInterval)
    );
    assert_eq!(request_id(&[&REQUEST_HEADER[..]]), Some(7));
    assert_eq!(request_id(&[&REQUEST_HEADER[..12]]), None);
    let mut other = REQUEST_HEADER;
    other[4] = 9;
    assert_eq!(
        Request::parse(&[&other[..], b"echo", &BODY]),
        Err(ParseError::Command(9))
    );
}

#[test]
fn malformed_worker_messages_are_rejected() {
    assert_eq!(
        FromWorker::parse(&[&b"BSW1\x04"[..], b"x"]),
        Err(ParseError::FrameCount {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        FromWorker::parse(&[&b"BSW1\x06"[..]]),
        Err(ParseError::Command(6))
    );
    assert_eq!(
        FromWorker::parse(&[&ready_header(0, false, 1)[..], b"s"]),
        Err(ParseError::ZeroInterval)
    );
    assert_eq!(
        FromWorker::parse(&[&ready_header(1000, false, 0)[..], b"s"]),
        Err(ParseError::ZeroCredit)
    );
    assert_eq!(
        FromWorker::parse(&[&token_header(worker_cmd::FAIL, 1)[..], &[0xc0][..]]),
        Err(ParseError::Text)
    );
    assert_eq!(
        ToWorker::parse(&[&b"BSW1\x01"[..]]),
        Err(ParseError::Command(1))
    );
    assert_eq!(
        FromWorker::parse(&[&b"BSW1\x05"[..], b"a", b"b"]),
        Err(ParseError::FrameCount {
            expected: 2,
            got: 3
        })
    );
}
