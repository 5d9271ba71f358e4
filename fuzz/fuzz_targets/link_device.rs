//! `link::Device` driven by a script (see `banyan_fuzz`'s docs) of received
//! byte chunks, polls, transmits, publishes, `recv`s and time steps (forwards
//! and backwards). Checks: no panic; `handle_rx` consumes all input and
//! always ends; every transmitted frame is one good frame that parses; the
//! receive queue never holds more than `QUEUE`; the stats counters never go
//! back and agree with what was seen (frames received and transmitted,
//! PUBLISHes transmitted, PUBLISHes received = queued + dropped).
#![no_main]

use banyan_core::link::{device::Event, Config, Device, Instant, Stats};
use banyan_fuzz::{
    check_link_stats, feed_rx, split_publish, step_time, transmit_all, OpKind, Script,
};
use libfuzzer_sys::fuzz_target;

const FRAME: usize = 128;
const QUEUE: usize = 2;

#[derive(Default)]
struct Seen {
    tx: u32,
    publish_tx: u32,
    received: u32,
}

fn check_stats(before: &Stats, s: &Stats, seen: &Seen) {
    check_link_stats(before, s, seen.tx, seen.publish_tx);
    assert_eq!(
        s.publish_rx,
        seen.received + s.drop_queue_full,
        "publish_rx vs Received events + queue-full drops"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut dev: Device<FRAME, 256, QUEUE, 4> =
        Device::new("fuzz-dev", "0.1.0", 0x0bad_cafe, Config::default()).unwrap();
    dev.subscribe("run_motors").unwrap();
    dev.subscribe("light").unwrap();
    dev.serve("info").unwrap();
    let mut now = 0u64;
    let mut seen = Seen::default();
    let mut out = [0u8; FRAME + 2];
    for op in Script(data) {
        let before = dev.stats();
        now = step_time(now, op.dt_ms);
        let t = Instant::from_millis(now);
        match op.kind {
            OpKind::Rx | OpKind::RxFrame => {
                feed_rx(&op, |input| {
                    let (ev, rest) = dev.handle_rx(input, t);
                    if let Some(Event::Received) = ev {
                        seen.received += 1;
                    }
                    (ev.is_some(), rest)
                });
            }
            OpKind::Poll => {
                let mut guard = 0;
                while let Some(ev) = dev.poll(t) {
                    if ev == Event::Received {
                        seen.received += 1;
                    }
                    guard += 1;
                    assert!(guard <= 64, "poll never returns None");
                }
                let _ = dev.poll_at();
            }
            OpKind::Transmit => transmit_all(
                op.tag,
                op.data.len(),
                &mut out,
                |buf| dev.poll_transmit(t, buf),
                &mut seen.tx,
                &mut seen.publish_tx,
            ),
            OpKind::Publish => {
                let (topic, payload) = split_publish(op.data);
                let _ = dev.publish(&topic, payload, t);
            }
            OpKind::Recv => {
                let n = dev.queued();
                let request = match dev.recv() {
                    Some(m) => {
                        assert!(n >= 1);
                        let _ = (m.topic().len(), m.payload().len());
                        m.request().map(|r| {
                            // A REQUEST is no PUBLISH.
                            assert!(m.topic().is_empty() && m.payload().is_empty());
                            r.id
                        })
                    }
                    None => {
                        assert_eq!(n, 0);
                        None
                    }
                };
                // Requests are answered (a reply takes a credit like a
                // PUBLISH; refusals are counted).
                if let Some(id) = request {
                    let _ = dev.reply(id, 0, b"\x80", t);
                }
                // Subscriptions change at run time too.
                match op.data.first() {
                    Some(b) if b & 1 == 0 => drop(dev.subscribe("sensors/")),
                    Some(_) => drop(dev.unsubscribe("light")),
                    None => {}
                }
            }
        }
        assert!(dev.queued() <= QUEUE);
        check_stats(&before, &dev.stats(), &seen);
        let _ = (dev.is_up(), dev.session(), dev.credits(), dev.queued_tx());
    }
});
