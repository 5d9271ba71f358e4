//! Zero allocations: decoding, validating, reading and encoding payloads never
//! touches the heap. A counting global allocator counts this thread's
//! allocations around each operation (a `const` thread-local, so other test
//! threads cannot disturb the count).

use banyan_core::cmd::{report, LightLeds, OneGpio, RunMotors};
use banyan_core::msg::{self, Limits, Value, Writer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(|c| c.get());
    f();
    ALLOCS.with(|c| c.get()) - before
}

// msgpack.packb({'left': 0.5, 'right': -0.5}, use_bin_type=True)
const RUN_MOTORS: &[u8] = b"\x82\xa4left\xcb\x3f\xe0\0\0\0\0\0\0\xa5right\xcb\xbf\xe0\0\0\0\0\0\0";
// msgpack.packb({'command': 'i2c_write', 'addr': 72, 'data': [1, 2, 255], 'tag': 'x'}, use_bin_type=True)
const I2C_WRITE: &[u8] =
    b"\x84\xa7command\xa9i2c_write\xa4addr\x48\xa4data\x93\x01\x02\xcc\xff\xa3tag\xa1x";

#[derive(serde::Deserialize, serde::Serialize)]
struct Motors {
    left: f64,
    right: f64,
}

#[test]
fn the_allocation_counter_counts() {
    // Guard against a counter that cannot fail.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}

#[test]
fn decoding_and_encoding_never_allocate() {
    let mut buf = [0u8; 256];
    let n = allocations(|| {
        msg::validate(RUN_MOTORS, &Limits::DEFAULT).unwrap();
        let c = RunMotors::<4>::parse(RUN_MOTORS).unwrap();
        assert_eq!(c.speed("left"), Some(0.5));
        let l = LightLeds::<4>::parse(RUN_MOTORS);
        assert!(l.is_err());
        let m: Motors = msg::decode(RUN_MOTORS).unwrap();
        assert_eq!(m.right, -0.5);
        let v = Value::parse(RUN_MOTORS, &Limits::DEFAULT).unwrap();
        let sum: f64 = v
            .as_map()
            .unwrap()
            .iter()
            .filter_map(|(_, v)| v.as_f64())
            .sum();
        assert_eq!(sum, 0.0);
        match OneGpio::parse(I2C_WRITE).unwrap() {
            OneGpio::I2cWrite { data, .. } => {
                assert_eq!(data.iter().map(u32::from).sum::<u32>(), 258)
            }
            _ => unreachable!(),
        }
        let len = report::state(&mut buf, &c.speeds, &[("status", 1.0)]).unwrap();
        assert!(len > 0);
        let e = RunMotors::<4>::parse(b"\x81\xa4left\x02").unwrap_err();
        report::error(&mut buf, "run_motors", &e).unwrap();
        msg::encode(&m, &mut buf).unwrap();
        let mut w = Writer::new(&mut buf);
        w.map(1).unwrap().str("k").unwrap().int(-5).unwrap();
    });
    assert_eq!(n, 0, "allocations during decode/encode");
}
