//! A `link::Device` and a `link::Gateway` talking over a faulty in-memory
//! wire that the fuzzer controls (drop, corrupt, duplicate, truncate frames;
//! time steps; publishes; receives; subscription changes).
//!
//! Checks: no panic; every transmitted frame is one good frame; and after
//! any history, once the wire is clean again the link comes back up by
//! itself within a few timeouts and the gateway's mirror of the device's
//! subscriptions equals the device's own ("no manual restart, ever").
#![no_main]

use banyan_core::link::{Config, Device, Gateway, Instant};
use banyan_fuzz::check_tx_frame;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

type Dev = Device<128, 256, 2, 4>;
type Gw = Gateway<128, 512, 4>;

const TOPICS: [&str; 4] = ["run_motors", "light", "sensors/", ""];

/// What happens to the next frame on the wire.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Drop,
    Flip(u8),
    Dup,
    Truncate(u8),
}

fn deliver_to_gw(gw: &mut Gw, bytes: &[u8], t: Instant) {
    let mut input = bytes;
    for _ in 0..bytes.len() + 64 {
        let (ev, rest) = gw.handle_rx(input, t);
        input = rest;
        if ev.is_none() {
            assert!(input.is_empty());
            return;
        }
    }
    panic!("gateway handle_rx does not progress");
}

fn deliver_to_dev(dev: &mut Dev, bytes: &[u8], t: Instant) {
    let mut input = bytes;
    for _ in 0..bytes.len() + 64 {
        let (ev, rest) = dev.handle_rx(input, t);
        input = rest;
        if ev.is_none() {
            assert!(input.is_empty());
            return;
        }
    }
    panic!("device handle_rx does not progress");
}

fn apply(fault: Fault, frame: &[u8]) -> Vec<Vec<u8>> {
    match fault {
        Fault::None => vec![frame.to_vec()],
        Fault::Drop => vec![],
        Fault::Flip(k) => {
            let mut f = frame.to_vec();
            let i = usize::from(k) % f.len();
            f[i] ^= 1 << (k % 8);
            vec![f]
        }
        Fault::Dup => vec![frame.to_vec(), frame.to_vec()],
        Fault::Truncate(k) => vec![frame[..usize::from(k) % frame.len()].to_vec()],
    }
}

fn dev_to_gw(dev: &mut Dev, gw: &mut Gw, t: Instant, fault: &mut Fault) {
    let mut buf = [0u8; 129];
    for _ in 0..32 {
        let Some(n) = dev.poll_transmit(t, &mut buf) else {
            return;
        };
        check_tx_frame(&buf[..n]);
        for f in apply(std::mem::replace(fault, Fault::None), &buf[..n]) {
            deliver_to_gw(gw, &f, t);
        }
    }
}

fn gw_to_dev(gw: &mut Gw, dev: &mut Dev, t: Instant, fault: &mut Fault) {
    let mut buf = [0u8; 129];
    for _ in 0..32 {
        let Some(n) = gw.poll_transmit(t, &mut buf) else {
            return;
        };
        check_tx_frame(&buf[..n]);
        for f in apply(std::mem::replace(fault, Fault::None), &buf[..n]) {
            deliver_to_dev(dev, &f, t);
        }
    }
}

fn poll_both(dev: &mut Dev, gw: &mut Gw, t: Instant) {
    for _ in 0..64 {
        if dev.poll(t).is_none() {
            break;
        }
    }
    for _ in 0..64 {
        if gw.poll(t).is_none() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut dev: Dev = Device::new("pair-dev", "1.0", 0x1111_2222, Config::default()).unwrap();
    dev.subscribe("run_motors").unwrap();
    let mut gw: Gw = Gateway::new(0x3333_4444, Config::default());
    let mut now = 0u64;
    let mut fault = Fault::None;
    let mut it = data.iter().copied();
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        let t = Instant::from_millis(now);
        match op % 10 {
            0 => dev_to_gw(&mut dev, &mut gw, t, &mut fault),
            1 => gw_to_dev(&mut gw, &mut dev, t, &mut fault),
            2 => now += u64::from(arg) * 8,
            3 => drop(dev.publish(TOPICS[usize::from(arg % 3)], b"\x80", t)),
            4 => drop(gw.publish("run_motors", b"\x81\xa1x\x01", t)),
            5 => while dev.recv().is_some() {},
            6 => poll_both(&mut dev, &mut gw, t),
            7 => {
                fault = match arg % 5 {
                    0 => Fault::Drop,
                    1 => Fault::Flip(arg / 5),
                    2 => Fault::Dup,
                    3 => Fault::Truncate(arg / 5),
                    _ => Fault::None,
                }
            }
            8 => drop(dev.subscribe(TOPICS[usize::from(arg % 4)])),
            _ => drop(dev.unsubscribe(TOPICS[usize::from(arg % 4)])),
        }
    }

    // Heal: a clean wire, 50 ms steps, up to 10 s of simulated time. The
    // link must come up, and the gateway's mirror must agree with the
    // device's subscriptions within 3 s of it being up: a difference is
    // repaired by a RESYNC (rate-limited to one per 250 ms), the device's
    // re-declaration and the stale sweep at its next heartbeat, so 500 ms
    // of link up is not always enough (a fuzz input found one such case).
    let mut up_for = 0;
    let agree = |dev: &Dev, gw: &Gw| {
        dev.subscriptions().collect::<BTreeSet<_>>() == gw.subscriptions().collect::<BTreeSet<_>>()
    };
    for _ in 0..200 {
        now += 50;
        let t = Instant::from_millis(now);
        let mut none = Fault::None;
        poll_both(&mut dev, &mut gw, t);
        dev_to_gw(&mut dev, &mut gw, t, &mut none);
        gw_to_dev(&mut gw, &mut dev, t, &mut none);
        while dev.recv().is_some() {}
        if dev.is_up() && gw.is_up() {
            up_for += 1;
            if (up_for >= 10 && agree(&dev, &gw)) || up_for >= 60 {
                break;
            }
        } else {
            up_for = 0;
        }
    }
    assert!(
        up_for >= 10,
        "link did not recover on a clean wire: dev up {} gw up {}\ndev {:?}\ngw {:?}",
        dev.is_up(),
        gw.is_up(),
        dev.stats(),
        gw.stats()
    );
    let mine: BTreeSet<&str> = dev.subscriptions().collect();
    let mirror: BTreeSet<&str> = gw.subscriptions().collect();
    assert_eq!(
        mine, mirror,
        "gateway's subscription mirror differs from the device's"
    );
});
