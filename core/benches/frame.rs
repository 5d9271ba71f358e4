//! Benchmarks of `frame` (encode, de-frame) and `link` (a PUBLISH through
//! both state machines).
//!
//! Run: `cargo bench -p banyan-core --bench frame`

use std::hint::black_box;

use banyan_core::frame::{self, Deframer, Feed};
use banyan_core::link::{gateway, Config, Device, Gateway, Instant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A msgpack-like payload with some zero bytes, as real maps have.
fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 16 == 0 { 0 } else { (i * 7) as u8 | 1 })
        .collect()
}

const SIZES: [usize; 2] = [64, 240];
/// Frames per iteration, so per-call overhead does not dominate.
const BATCH: usize = 64;

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/encode");
    for size in SIZES {
        let p = payload(size);
        let mut out = vec![0u8; frame::encoded_len_for_payload(size)];
        g.throughput(Throughput::Bytes((size * BATCH) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &p, |b, p| {
            b.iter(|| {
                for seq in 0..BATCH as u8 {
                    black_box(frame::encode(0x10, seq, &[black_box(p)], &mut out).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/decode");
    for size in SIZES {
        let p = payload(size);
        let mut stream = Vec::new();
        for seq in 0..BATCH as u8 {
            let mut out = vec![0u8; frame::encoded_len_for_payload(size)];
            let n = frame::encode(0x10, seq, &[&p], &mut out).unwrap();
            stream.extend_from_slice(&out[..n]);
        }
        g.throughput(Throughput::Bytes((size * BATCH) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &stream, |b, stream| {
            let mut d: Deframer<512> = Deframer::new();
            b.iter(|| {
                let mut input = &stream[..];
                let mut frames = 0;
                loop {
                    match d.feed(black_box(input)) {
                        Feed::Consumed => break,
                        Feed::Frame { frame, rest } => {
                            black_box(frame.payload());
                            frames += 1;
                            input = rest;
                        }
                        Feed::Dropped { rest, .. } => input = rest,
                    }
                }
                assert_eq!(frames, BATCH);
            })
        });
    }
    g.finish();
}

type Dev = Device<256, 1024, 8, 8>;
type Gw = Gateway<256, 4096, 8>;

fn shuttle_dev_to_gw(dev: &mut Dev, gw: &mut Gw, now: Instant, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while let Some(n) = dev.poll_transmit(now, buf) {
        let mut input = &buf[..n];
        while let (Some(ev), rest) = gw.handle_rx(input, now) {
            if let gateway::Event::Publish { payload, .. } = ev {
                got += payload.len();
            }
            input = rest;
        }
    }
    got
}

fn shuttle_gw_to_dev(gw: &mut Gw, dev: &mut Dev, now: Instant, buf: &mut [u8]) {
    while let Some(n) = gw.poll_transmit(now, buf) {
        let mut input = &buf[..n];
        while let (Some(_), rest) = dev.handle_rx(input, now) {
            input = rest;
        }
    }
}

fn bench_link(c: &mut Criterion) {
    let mut g = c.benchmark_group("link/round");
    let now = Instant::from_millis(0);
    let mut buf = [0u8; 300];
    let mut dev = Dev::new("bench", "0", 1, Config::default()).unwrap();
    dev.subscribe("run_motors").unwrap();
    let mut gw = Gw::new(2, Config::default());
    for _ in 0..4 {
        shuttle_dev_to_gw(&mut dev, &mut gw, now, &mut buf);
        shuttle_gw_to_dev(&mut gw, &mut dev, now, &mut buf);
    }
    assert!(dev.is_up() && gw.is_up());
    let p = payload(64);
    g.throughput(Throughput::Elements(1));
    // Device publishes, gateway delivers; gateway publishes, device
    // delivers and releases the slot.
    g.bench_function("publish_deliver_both_ways_64B", |b| {
        b.iter(|| {
            dev.publish("sensors/imu", &p, now).unwrap();
            assert_eq!(shuttle_dev_to_gw(&mut dev, &mut gw, now, &mut buf), 64);
            gw.publish("run_motors", &p, now).unwrap();
            shuttle_gw_to_dev(&mut gw, &mut dev, now, &mut buf);
            let msg = dev.recv().unwrap();
            black_box(msg.payload());
            drop(msg);
            // Credit updates and heartbeats go back and forth.
            shuttle_dev_to_gw(&mut dev, &mut gw, now, &mut buf);
            shuttle_gw_to_dev(&mut gw, &mut dev, now, &mut buf);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode, bench_decode, bench_link);
criterion_main!(benches);
