use super::*;
use proptest::prelude::*;

/// A golden BEACON: node "bp" (backplane), seq 7, sender 0x0102030405060708,
/// channel hash 0xAABBCCDD, endpoints pub 43124 and sub 43125 at the source
/// address.
const BEACON_BYTES: [u8; 48] = [
    0x42, 0x59, // magic "BY"
    0x01, // version
    0x01, // BEACON
    0x00, // flags
    0xDD, 0xCC, 0xBB, 0xAA, // channel
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // sender
    0x07, 0x00, 0x00, 0x00, // seq
    0x01, // backplane
    0, 0, 0, 0, 0, 0, 0, 0, // parent
    0x02, b'b', b'p', // name
    0x02, // two endpoints
    0x01, 0x74, 0xA8, 0, 0, 0, 0, // pub 43124 0.0.0.0
    0x02, 0x75, 0xA8, 0, 0, 0, 0, // sub 43125 0.0.0.0
];

fn header() -> Header {
    Header {
        flags: 0,
        channel: 0xAABB_CCDD,
        sender: 0x0102_0304_0506_0708,
    }
}

fn beacon() -> Datagram<'static> {
    Datagram {
        header: header(),
        body: Body::Beacon(Beacon {
            seq: 7,
            node_kind: NodeKind::Backplane,
            parent: 0,
            name: "bp",
            endpoints: vec![
                Endpoint {
                    kind: EndpointKind::BackplanePub,
                    port: 43124,
                    addr: Ipv4Addr::UNSPECIFIED,
                },
                Endpoint {
                    kind: EndpointKind::BackplaneSub,
                    port: 43125,
                    addr: Ipv4Addr::UNSPECIFIED,
                },
            ],
        }),
    }
}

#[test]
fn golden_beacon() {
    let golden = &BEACON_BYTES[..];
    let mut out = Vec::new();
    beacon().emit(&mut out).unwrap();
    assert_eq!(out, golden);
    assert_eq!(Datagram::parse(golden).unwrap(), beacon());
    // Trailing bytes are refused.
    out.push(0);
    assert_eq!(Datagram::parse(&out), Err(Error::TrailingBytes));
}

#[test]
fn largest_beacon_is_under_255_bytes() {
    let d = Datagram {
        header: header(),
        body: Body::Beacon(Beacon {
            seq: u32::MAX,
            node_kind: NodeKind::Device,
            parent: u64::MAX,
            name: "n234567890123456789012345678901x",
            endpoints: vec![
                Endpoint {
                    kind: EndpointKind::Tcp,
                    port: 1,
                    addr: Ipv4Addr::LOCALHOST
                };
                MAX_ENDPOINTS
            ],
        }),
    };
    let mut out = Vec::new();
    d.emit(&mut out).unwrap();
    assert_eq!(out.len(), MAX_BEACON_LEN);
    const { assert!(MAX_BEACON_LEN < 255) };
}

#[test]
fn every_truncation_is_refused() {
    let golden = &BEACON_BYTES[..];
    for n in 0..golden.len() {
        assert!(Datagram::parse(&golden[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn header_checks() {
    let mut b = BEACON_BYTES[..].to_vec();
    b[0] = b'X';
    assert_eq!(Datagram::parse(&b), Err(Error::Magic));
    let mut b = BEACON_BYTES[..].to_vec();
    b[2] = 2;
    assert_eq!(Datagram::parse(&b), Err(Error::Version));
    let mut b = BEACON_BYTES[..].to_vec();
    b[3] = 0x7f;
    assert_eq!(Datagram::parse(&b), Err(Error::UnknownKind));
    let mut b = BEACON_BYTES[..].to_vec();
    b[4] = 0x80;
    assert_eq!(Datagram::parse(&b), Err(Error::Flags));
    let mut b = BEACON_BYTES[..].to_vec();
    b[9..17].fill(0);
    assert_eq!(Datagram::parse(&b), Err(Error::Sender));
    assert_eq!(
        Datagram::parse(&[0u8; MAX_DATAGRAM + 1]),
        Err(Error::Oversize)
    );
    let mut b = BEACON_BYTES[..].to_vec();
    b[21] = 9; // node kind
    assert_eq!(Datagram::parse(&b), Err(Error::NodeKind));
    let mut b = BEACON_BYTES[..].to_vec();
    b[31] = 0x07; // a control character in the name
    assert_eq!(Datagram::parse(&b), Err(Error::BadName));
    let mut b = BEACON_BYTES[..].to_vec();
    b[31] = 0xff;
    assert_eq!(Datagram::parse(&b), Err(Error::NotUtf8));
}

#[test]
fn identity_lists_are_truncated_to_fit() {
    let id = Identity {
        node_kind: Some(NodeKind::Component),
        name: "c".into(),
        publishes: (0..100).map(|i| format!("topic/{i:058}")).collect(),
        counters: vec![("x".into(), 1)],
        ..Identity::default()
    };
    let d = Datagram {
        header: header(),
        body: Body::Identity {
            request: 3,
            identity: Box::new(id),
        },
    };
    let mut out = Vec::new();
    d.emit(&mut out).unwrap();
    assert!(out.len() <= MAX_DATAGRAM);
    let Body::Identity { identity, .. } = Datagram::parse(&out).unwrap().body else {
        panic!("not an identity");
    };
    assert!(identity.truncated);
    assert!(identity.publishes.len() > 10 && identity.publishes.len() < 100);
}

#[test]
fn emit_refuses_invalid_fields() {
    let mut out = Vec::new();
    let mut d = beacon();
    d.header.sender = 0;
    assert_eq!(d.emit(&mut out), Err(Error::Sender));
    let d = Datagram {
        header: header(),
        body: Body::Message(Message {
            target: 0,
            name: "",
            topic: "",
            payload: &[],
        }),
    };
    assert_eq!(d.emit(&mut out), Err(Error::Length));
    let big = [0u8; MAX_PAYLOAD_LEN + 1];
    let d = Datagram {
        header: header(),
        body: Body::Message(Message {
            target: 0,
            name: "",
            topic: "t",
            payload: &big,
        }),
    };
    assert_eq!(d.emit(&mut out), Err(Error::Length));
}

#[test]
fn clamp_str_respects_char_boundaries() {
    assert_eq!(clamp_str("héllo", 2), "h");
    assert_eq!(clamp_str("héllo", 3), "hé");
    assert_eq!(clamp_str("abc", 10), "abc");
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9é_-]{1,10}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z/]{0,20}"
}

fn node_kind() -> impl Strategy<Value = NodeKind> {
    (1u8..=5).prop_map(|v| NodeKind::from_u8(v).unwrap())
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (any::<u8>(), any::<u16>(), any::<[u8; 4]>()).prop_map(|(k, port, a)| Endpoint {
        kind: EndpointKind::from_u8(k),
        port,
        addr: Ipv4Addr::from(a),
    })
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        node_kind(),
        any::<u64>(),
        name(),
        topic(),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec(topic(), 0..5),
        proptest::collection::vec(topic(), 0..5),
        proptest::collection::vec((name(), any::<u64>()), 0..5),
    )
        .prop_map(
            |(k, parent, name, host, pid, up, publishes, subscribes, counters)| Identity {
                node_kind: Some(k),
                parent,
                name,
                host,
                pid,
                version: "1.2.3".into(),
                uptime_ms: up,
                truncated: false,
                publishes,
                subscribes,
                counters,
            },
        )
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Datagram::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_valid_headers(kind in 1u8..=6, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = BEACON_BYTES[..HEADER_LEN].to_vec();
        bytes[3] = kind;
        bytes.extend_from_slice(&body);
        if let Ok(d) = Datagram::parse(&bytes) {
            // What parses re-emits to the same bytes.
            let mut out = Vec::new();
            d.emit(&mut out).unwrap();
            prop_assert_eq!(out, bytes);
        }
    }

    #[test]
    fn beacons_round_trip(seq in any::<u32>(), k in node_kind(), parent in any::<u64>(), name in name(),
                          eps in proptest::collection::vec(endpoint(), 0..=MAX_ENDPOINTS), flags in 0u8..=1) {
        let d = Datagram {
            header: Header { flags, channel: 5, sender: 9 },
            body: Body::Beacon(Beacon { seq, node_kind: k, parent, name: &name, endpoints: eps }),
        };
        let mut out = Vec::new();
        d.emit(&mut out).unwrap();
        prop_assert!(out.len() <= MAX_BEACON_LEN);
        prop_assert_eq!(Datagram::parse(&out).unwrap(), d);
    }

    #[test]
    fn other_bodies_round_trip(target in any::<u64>(), request in any::<u32>(), name in name(), topic in "[a-z]{1,30}",
                               payload in proptest::collection::vec(any::<u8>(), 0..100), id in identity(),
                               k in proptest::option::of(node_kind())) {
        let bodies = [
            Body::Query(Query { target, node_kind: k, name: &name }),
            Body::Query(Query { target, node_kind: None, name: "" }),
            Body::Identify { request, target },
            Body::Identity { request, identity: Box::new(id) },
            Body::Message(Message { target, name: &name, topic: &topic, payload: &payload }),
            Body::Message(Message { target: 0, name: "", topic: &topic, payload: &[] }),
            Body::Bye,
        ];
        for body in bodies {
            let d = Datagram { header: header(), body };
            let mut out = Vec::new();
            d.emit(&mut out).unwrap();
            prop_assert_eq!(Datagram::parse(&out).unwrap(), d);
        }
    }
}
