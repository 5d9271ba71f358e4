//! Benchmarks of `msg` and `cmd`: decode + validate of a typical `run_motors`
//! command, OneGPIO parsing, state report encoding, validation of a ~1 KB
//! nested payload, and validation with the LAN profile (`Limits::LAN`, what
//! every gateway receiver runs) of that payload and of a 1 MiB one made of
//! copies of it. Run: `cargo bench -p banyan-core --bench msg`
//! (`-- validate` for the validator only).
//!
//! Before the timed runs it prints how many heap allocations one decode of
//! each payload makes (a counting global allocator; expected: 0).

use banyan_core::cmd::{report, OneGpio, RunMotors};
use banyan_core::msg::{self, Limits, Value, Writer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// msgpack.packb({'left': 0.5, 'right': -0.5}, use_bin_type=True): 30 bytes
const RUN_MOTORS: &[u8] = b"\x82\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xcb\xbf\xe0\0\0\0\0\0\0";
// msgpack.packb({'command': 'digital_write', 'pin': 12, 'value': 1}, use_bin_type=True)
const DIGITAL_WRITE: &[u8] = b"\x83\xa7command\xaddigital_write\xa3pin\x0c\xa5value\x01";

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Motors {
    left: f64,
    right: f64,
}

/// A ~1 KB payload: 8 sensors, each a map with a name, a reading, flags and
/// a 16-sample history, nested 4 deep.
fn nested_1k() -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::new(&mut buf);
    let r = (|| -> Result<usize, msg::Error> {
        w.map(2)?
            .str("report")?
            .str("sensors")?
            .str("sensors")?
            .array(8)?;
        for i in 0..8u64 {
            w.map(4)?
                .str("name")?
                .str("sensor")?
                .str("reading")?
                .float(i as f64 * 0.25)?;
            w.str("flags")?
                .map(2)?
                .str("ok")?
                .bool(true)?
                .str("code")?
                .uint(300 + i)?;
            w.str("history")?.array(16)?;
            for j in 0..16 {
                w.int(j * 1000 - 8000)?;
            }
        }
        Ok(w.len())
    })();
    let n = r.unwrap();
    buf.truncate(n);
    buf
}

/// A 1 MiB payload: an array of as many copies of [`nested_1k`] as fit.
fn nested_1m(one: &[u8]) -> Vec<u8> {
    let copies = (1usize << 20) / one.len();
    let mut out = vec![0xdd];
    out.extend_from_slice(&u32::try_from(copies).unwrap().to_be_bytes());
    for _ in 0..copies {
        out.extend_from_slice(one);
    }
    out
}

fn allocations_of(f: impl Fn()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        f();
    }
    ALLOCS.load(Ordering::Relaxed) - before
}

fn report_allocations(nested: &[u8]) {
    let cases: [(&str, &dyn Fn()); 6] = [
        ("RunMotors::<4>::parse", &|| {
            black_box(RunMotors::<4>::parse(black_box(RUN_MOTORS)).unwrap());
        }),
        ("msg::decode::<Motors>", &|| {
            black_box(msg::decode::<Motors>(black_box(RUN_MOTORS)).unwrap());
        }),
        ("OneGpio::parse", &|| {
            black_box(OneGpio::parse(black_box(DIGITAL_WRITE)).unwrap());
        }),
        ("report::state", &|| {
            let mut buf = [0u8; 128];
            black_box(
                report::state(
                    &mut buf,
                    &[("left", 0.5), ("right", -0.5)],
                    &[("status", 1.0)],
                )
                .unwrap(),
            );
        }),
        ("msg::validate 1 KB", &|| {
            msg::validate(black_box(nested), &Limits::DEFAULT).unwrap();
        }),
        ("msg::validate 1 KB, Limits::LAN", &|| {
            msg::validate(black_box(nested), &Limits::LAN).unwrap();
        }),
    ];
    for (name, f) in cases {
        println!("allocations in 1000 x {name}: {}", allocations_of(f));
    }
}

fn benches(c: &mut Criterion) {
    let nested = nested_1k();
    report_allocations(&nested);

    let mut g = c.benchmark_group("run_motors");
    g.throughput(Throughput::Bytes(RUN_MOTORS.len() as u64));
    g.bench_function("validate", |b| {
        b.iter(|| msg::validate(black_box(RUN_MOTORS), &Limits::DEFAULT))
    });
    g.bench_function("Value::parse + map iteration", |b| {
        b.iter(|| {
            let m = Value::parse(black_box(RUN_MOTORS), &Limits::DEFAULT)
                .unwrap()
                .as_map()
                .unwrap();
            m.iter().filter_map(|(_, v)| v.as_f64()).sum::<f64>()
        })
    });
    g.bench_function("RunMotors::parse (validate + decode)", |b| {
        b.iter(|| RunMotors::<4>::parse(black_box(RUN_MOTORS)))
    });
    g.bench_function("msg::decode serde struct (validate + decode)", |b| {
        b.iter(|| msg::decode::<Motors>(black_box(RUN_MOTORS)))
    });
    g.finish();

    c.bench_function("onegpio/OneGpio::parse digital_write", |b| {
        b.iter(|| OneGpio::parse(black_box(DIGITAL_WRITE)))
    });

    c.bench_function("state_report/encode 2 motors 1 led", |b| {
        let mut buf = [0u8; 128];
        let motors = [("left", 0.5f32), ("right", -0.5)];
        let leds = [("status", 1.0f32)];
        b.iter(|| report::state(&mut buf, black_box(&motors), black_box(&leds)).map(black_box))
    });

    let mut g = c.benchmark_group("nested_1k");
    g.throughput(Throughput::Bytes(nested.len() as u64));
    g.bench_function(format!("validate {} B", nested.len()), |b| {
        b.iter(|| msg::validate(black_box(&nested), &Limits::DEFAULT))
    });
    g.bench_function(format!("Value walk {} B", nested.len()), |b| {
        b.iter(|| {
            let v = Value::parse(black_box(&nested), &Limits::DEFAULT).unwrap();
            let sensors = v
                .as_map()
                .unwrap()
                .get("sensors")
                .unwrap()
                .as_array()
                .unwrap();
            let mut sum = 0i64;
            for s in sensors.iter() {
                let h = s
                    .as_map()
                    .unwrap()
                    .get("history")
                    .unwrap()
                    .as_array()
                    .unwrap();
                sum += h.iter().filter_map(|x| x.as_i64()).sum::<i64>();
            }
            sum
        })
    });
    g.finish();

    // The LAN receive path: the profile every gateway receiver validates with.
    let big = nested_1m(&nested);
    for (name, payload) in [("lan_1k", &nested), ("lan_1m", &big)] {
        assert_eq!(msg::validate(payload, &Limits::LAN), Ok(()));
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(format!("validate Limits::LAN {} B", payload.len()), |b| {
            b.iter(|| msg::validate(black_box(payload), &Limits::LAN))
        });
        g.finish();
    }
}

criterion_group!(msg_benches, benches);
criterion_main!(msg_benches);
