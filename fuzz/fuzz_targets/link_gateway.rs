//! `link::Gateway` driven by a script (see `banyan_fuzz`'s docs) of received
//! byte chunks, polls, transmits, publishes and time steps (forwards and
//! backwards). Checks: no panic; `handle_rx` consumes all input and always
//! ends; every transmitted frame is one good frame that parses; the stats
//! counters never go back and agree with what was seen (frames received,
//! frames and PUBLISHes transmitted, PUBLISH events).
#![no_main]

use banyan_core::link::{gateway::Event, Config, Gateway, Instant, Stats};
use banyan_fuzz::{
    check_link_stats, check_monotonic, feed_rx, split_publish, step_time, transmit_all, OpKind,
    Script,
};
use libfuzzer_sys::fuzz_target;

const FRAME: usize = 128;

#[derive(Default)]
struct Seen {
    tx: u32,
    publish_tx: u32,
    publish_events: u32,
}

fn check_stats(before: &Stats, s: &Stats, seen: &Seen) {
    check_link_stats(before, s, seen.tx, seen.publish_tx);
    assert_eq!(
        s.publish_rx,
        seen.publish_events + s.drop_over_credit,
        "publish_rx vs Publish events + over-credit drops"
    );
    // The gateway's own counters.
    check_monotonic(&[
        (before.drop_queue_full, s.drop_queue_full),
        (before.drop_over_credit, s.drop_over_credit),
        (before.sub_overflow, s.sub_overflow),
        (before.resets, s.resets),
    ]);
}

fn on_event(ev: &Event<'_>, seen: &mut Seen) {
    // Data events: PUBLISH and REPLY (both counted in publish_rx).
    if let Event::Publish { topic, payload } = ev {
        let _ = (topic.len(), payload.len());
        seen.publish_events += 1;
    }
    if let Event::Reply { body, .. } = ev {
        let _ = body.len();
        seen.publish_events += 1;
    }
    if let Event::Subscribe(t) | Event::Unsubscribe(t) = ev {
        assert!(t.len() <= banyan_core::link::wire::MAX_SUB_TOPIC_LEN);
    }
    if let Event::Serve(s) | Event::Unserve(s) = ev {
        assert!(!s.is_empty() && s.len() <= banyan_core::link::wire::MAX_SERVICE_LEN);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut gw: Gateway<FRAME, 512, 4> = Gateway::new(0x6a7e_0001, Config::default());
    let mut now = 0u64;
    let mut seen = Seen::default();
    let mut out = [0u8; FRAME + 2];
    for op in Script(data) {
        let before = gw.stats();
        now = step_time(now, op.dt_ms);
        let t = Instant::from_millis(now);
        match op.kind {
            OpKind::Rx | OpKind::RxFrame | OpKind::Recv => {
                feed_rx(&op, |input| {
                    let (ev, rest) = gw.handle_rx(input, t);
                    if let Some(ev) = &ev {
                        on_event(ev, &mut seen);
                    }
                    (ev.is_some(), rest)
                });
            }
            OpKind::Poll => {
                let mut guard = 0;
                while let Some(ev) = gw.poll(t) {
                    on_event(&ev, &mut seen);
                    guard += 1;
                    assert!(guard <= 64, "poll never returns None");
                }
                if let Some(at) = gw.poll_at() {
                    let _ = at.millis();
                }
            }
            OpKind::Transmit => transmit_all(
                op.tag,
                op.data.len(),
                &mut out,
                |buf| gw.poll_transmit(t, buf),
                &mut seen.tx,
                &mut seen.publish_tx,
            ),
            OpKind::Publish => {
                let (topic, payload) = split_publish(op.data);
                let _ = gw.publish(&topic, payload, t);
            }
        }
        check_stats(&before, &gw.stats(), &seen);
        let _ = (gw.is_up(), gw.identity(), gw.credits(), gw.queued());
        assert!(gw.subscriptions().count() <= 4);
    }
});
