//! The discovery pool (`banyan_discovery::Pool`, sans-IO) fed arbitrary
//! datagrams from a few source addresses, with time steps, polls, sends
//! and identify requests between them.
//!
//! Input: records `op u8, len u8, data[len]` (a record cut short keeps what
//! is there). Time moves by `(op >> 4) × 64 ms` first. `op & 0x03` picks
//! the source address. With `op & 0x04`, `data` is the *body* of a datagram
//! and gets a valid header (kind `data[0] % 8`, the pool's channel, a
//! sender id from `data[1]`), so the fuzzer reaches every body parser
//! without guessing the channel hash. With `op & 0x08`, the pool also sends
//! a message and an identify request to the sender.
//!
//! Checks: no panic; every received datagram is counted; every transmitted
//! datagram parses, fits `MAX_DATAGRAM` and re-emits to the same bytes;
//! a datagram that parses re-emits to its own bytes; the counters never go
//! back; the peer table stays within `max_peers`.
#![no_main]

use std::net::SocketAddr;

use banyan_discovery::pool::{Config, LocalNode, Pool, Target};
use banyan_discovery::wire::{self, Datagram};
use banyan_discovery::{EndpointKind, Instant, NodeKind};
use libfuzzer_sys::fuzz_target;

const SOURCES: [&str; 4] = [
    "10.0.0.2:40000",
    "10.0.0.3:40001",
    "127.0.0.1:5",
    "192.168.9.9:61000",
];

fn check_roundtrip(bytes: &[u8]) {
    if let Ok(d) = Datagram::parse(bytes) {
        let mut out = Vec::new();
        d.emit(&mut out).expect("a parsed datagram emits");
        assert_eq!(out, bytes, "parse/emit round trip");
    }
}

fuzz_target!(|input: &[u8]| {
    let mut cfg = Config::for_channel("fuzz");
    cfg.max_peers = 8;
    cfg.max_events = 16;
    cfg.max_queued = 32;
    let local =
        LocalNode::new("me", NodeKind::Backplane).with_endpoint(EndpointKind::BackplanePub, 43124);
    let mut pool = Pool::new(local, cfg, 0xfeed, Instant::ZERO).expect("valid node");
    let channel = banyan_discovery::channel_hash("fuzz");
    let mut now = 0u64;
    let mut received = 0u64;
    let mut rest = input;
    let mut buf = Vec::new();
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (data, next) = tail.split_at(n);
        rest = next;
        now += u64::from(op >> 4) * 64;
        let t = Instant::from_millis(now);
        let src: SocketAddr = SOURCES[usize::from(op & 3)].parse().expect("addr");
        let bytes: &[u8] = if op & 0x04 != 0 {
            buf.clear();
            buf.extend_from_slice(&wire::MAGIC);
            buf.push(wire::VERSION);
            buf.push(data.first().map_or(1, |k| k % 8));
            buf.push(0);
            buf.extend_from_slice(&channel.to_le_bytes());
            let sender = u64::from(data.get(1).copied().unwrap_or(1)).max(1);
            buf.extend_from_slice(&sender.to_le_bytes());
            buf.extend_from_slice(data.get(2..).unwrap_or_default());
            &buf
        } else {
            data
        };
        check_roundtrip(bytes);
        let before = *pool.stats();
        pool.handle(t, src, Some(u32::from(op & 3)), bytes);
        received += 1;
        if op & 0x08 != 0 {
            let _ = pool.send(
                t,
                &Target::Id(u64::from(data.first().copied().unwrap_or(1))),
                "t",
                data,
            );
            let _ = pool.identify(t, &Target::All);
        }
        pool.poll(t);
        while let Some(tx) = pool.poll_transmit(t) {
            assert!(tx.bytes.len() <= wire::MAX_DATAGRAM);
            let d = Datagram::parse(&tx.bytes).expect("transmitted datagram parses");
            let mut out = Vec::new();
            d.emit(&mut out).expect("emits");
            assert_eq!(out, tx.bytes);
        }
        while pool.poll_event().is_some() {}
        let after = *pool.stats();
        for ((name, a), (_, b)) in after.iter().zip(before.iter()) {
            assert!(a >= b, "counter {name} went back");
        }
        assert_eq!(after.received, received);
        assert!(pool.peers().len() <= 8);
    }
});
