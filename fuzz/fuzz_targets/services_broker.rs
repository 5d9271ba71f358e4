//! The services broker state machine (`banyan_services::broker::Broker`)
//! driven by a script of peer messages, timer runs and send failures.
//!
//! Input: records `op u8, dt u8, peer u8, len u8, data[len]`. Time moves
//! forward by `dt` ms (× 64 if op bit 0x80) before each record. Peers are
//! 8 identities (`peer % 8`). Ops (`op & 0x07`):
//! 0 raw frames (data split like the proto target) from the peer;
//! 1 a client REQUEST built from data (service from a set of 4 names);
//! 2 a worker READY (service from the same set, heartbeat from data);
//! 3 a worker REPLY / FAIL for the last token the broker gave that peer
//!   (or a data-chosen token), body = data;
//! 4 HEARTBEAT; 5 DISCONNECT; 6 run timers; 7 fail the next transmit.
//!
//! Checks: no panic; every message that carries the client signature is
//! answered exactly once by the end (after `shutdown`), which leaves the
//! broker empty; counters agree with the answers sent.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use banyan_fuzz::frames;
use banyan_services::broker::{Broker, Config, SendFailure, Transmit};
use banyan_services::proto::{self, worker_cmd, Answer, FromWorker, Request, ToWorker};
use libfuzzer_sys::fuzz_target;

const SERVICES: [&str; 4] = ["a", "b", "banyan.services", "banyan.stats"];

struct World {
    broker: Broker,
    now: Instant,
    tokens: HashMap<Vec<u8>, u64>,
    answers: u64,
    answered_errors: u64,
    answered_replies: u64,
    questions: u64,
}

impl World {
    fn drain(&mut self, fail_next: bool) {
        let mut fail = fail_next;
        while let Some(t) = self.broker.poll_transmit() {
            self.observe(&t);
            if fail {
                self.broker
                    .send_failed(&t, SendFailure::Unreachable, self.now);
                fail = false;
            }
        }
    }

    fn observe(&mut self, t: &Transmit) {
        let sig = t.frames.first().and_then(|f| f.get(..4));
        if sig == Some(&proto::CLIENT[..]) {
            match Answer::parse(&t.frames) {
                Ok(Answer::Reply { .. }) => self.answered_replies += 1,
                Ok(Answer::Error { .. }) => self.answered_errors += 1,
                Err(e) => panic!("broker emitted a bad answer: {e}"),
            }
            self.answers += 1;
        } else {
            match ToWorker::parse(&t.frames) {
                Ok(ToWorker::Request { token, .. }) => {
                    self.tokens.insert(t.peer.clone(), token);
                }
                Ok(_) => {}
                Err(e) => panic!("broker emitted a bad worker message: {e}"),
            }
        }
    }

    fn deliver(&mut self, peer: &[u8], frames: Vec<Vec<u8>>) {
        let body = match frames.split_first() {
            Some((first, rest)) if first.is_empty() => rest,
            _ => &frames[..],
        };
        if body.first().and_then(|f| f.get(..4)) == Some(&proto::CLIENT[..]) {
            self.questions += 1;
        }
        self.broker.handle(peer, &frames, self.now);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = Config::default();
    config.max_queue = 3;
    config.max_pending = 16;
    config.max_workers = 6;
    config.max_services = 3;
    config.max_body = 64;
    let mut w = World {
        broker: Broker::new(config),
        now: Instant::now(),
        tokens: HashMap::new(),
        answers: 0,
        answered_errors: 0,
        answered_replies: 0,
        questions: 0,
    };
    let mut rest = data;
    while rest.len() >= 4 {
        let (op, dt, peer, len) = (rest[0], rest[1], rest[2], usize::from(rest[3]));
        let n = len.min(rest.len() - 4);
        let d = &rest[4..4 + n];
        rest = &rest[4 + n..];
        let scale = if op & 0x80 != 0 { 64 } else { 1 };
        w.now += Duration::from_millis(u64::from(dt) * scale);
        let peer = vec![b'p', peer % 8];
        let pick = |i: usize| d.get(i).copied().unwrap_or(0);
        let mut fail = false;
        match op & 0x07 {
            0 => w.deliver(&peer, frames(d)),
            1 => {
                let r = Request {
                    id: u64::from(pick(0)),
                    idempotent: pick(1) & 1 != 0,
                    timeout_ms: 1 + u32::from(pick(2)) * 8,
                    service: SERVICES[usize::from(pick(3)) % 4],
                    body: d.get(4..).unwrap_or(&[]),
                };
                let mut f = r.emit();
                if pick(1) & 2 != 0 {
                    f.insert(0, Vec::new());
                }
                w.deliver(&peer, f);
            }
            2 => {
                let m = FromWorker::Ready {
                    service: SERVICES[usize::from(pick(0)) % 4],
                    heartbeat_ms: 1 + u32::from(pick(1)) * 4,
                    busy_heartbeats: pick(2) & 1 != 0,
                    // Mostly the classic one request at a time, sometimes
                    // several in flight (0 is refused as malformed).
                    credit: u16::from(pick(3) % 5),
                };
                w.deliver(&peer, m.emit());
            }
            3 => {
                let token = match w.tokens.get(&peer) {
                    Some(&t) if pick(0) & 1 == 0 => t,
                    _ => u64::from(pick(1)),
                };
                let cmd = if pick(0) & 2 == 0 {
                    worker_cmd::REPLY
                } else {
                    worker_cmd::FAIL
                };
                let body = d.get(2..).unwrap_or(&[]).to_vec();
                w.deliver(&peer, vec![proto::token_header(cmd, token), body]);
            }
            4 => w.deliver(&peer, FromWorker::Heartbeat.emit()),
            5 => w.deliver(&peer, FromWorker::Disconnect { reason: "" }.emit()),
            6 => w.broker.poll(w.now),
            _ => fail = true,
        }
        if let Some(at) = w.broker.poll_at() {
            assert!(
                at >= w.now - Duration::from_secs(3600 * 24),
                "poll_at far in the past"
            );
        }
        w.drain(fail);
    }
    w.broker.poll(w.now);
    w.drain(false);
    w.broker.shutdown(w.now);
    w.drain(false);
    let s = w.broker.stats();
    assert_eq!(
        w.answers, w.questions,
        "every client message answered exactly once"
    );
    assert_eq!(s.replies, w.answered_replies);
    assert_eq!(s.errors, w.answered_errors);
    assert_eq!((s.pending, s.workers, s.queued), (0, 0, 0));
});
