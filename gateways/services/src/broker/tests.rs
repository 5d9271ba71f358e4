//! The broker state machine on simulated time: peers are byte strings,
//! time is an `Instant` advanced by hand, nothing sleeps.

use super::*;
use crate::proto::{ToWorker, FLAG_BUSY_HEARTBEATS};

const BODY: &[u8] = &[0x81, 0xa1, b'n', 0x01]; // {"n": 1}

struct Sim {
    broker: Broker,
    now: Instant,
    /// Everything sent, in order.
    sent: Vec<Transmit>,
}

/// An answer seen by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Reply(u64, Vec<u8>),
    Error(u64, ErrorCode),
}

impl Sim {
    fn new() -> Sim {
        Sim::with(Config::default())
    }

    fn with(config: Config) -> Sim {
        Sim {
            broker: Broker::new(config),
            now: Instant::now(),
            sent: Vec::new(),
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        // Step through every timer on the way, like a real loop would.
        while let Some(at) = self.broker.poll_at() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.broker.poll(self.now);
            self.flush();
        }
        self.now = end;
        self.broker.poll(self.now);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(t) = self.broker.poll_transmit() {
            self.sent.push(t);
        }
    }

    fn send(&mut self, peer: &[u8], frames: Vec<Vec<u8>>) {
        self.broker.handle(peer, &frames, self.now);
        self.flush();
    }

    fn request(
        &mut self,
        client: &[u8],
        id: u64,
        service: &str,
        timeout_ms: u32,
        idempotent: bool,
    ) {
        let r = Request {
            id,
            idempotent,
            timeout_ms,
            service,
            body: BODY,
        };
        self.send(client, r.emit());
    }

    fn ready(&mut self, worker: &[u8], service: &str, hb_ms: u32) {
        self.ready_with_credit(worker, service, hb_ms, 1);
    }

    fn ready_with_credit(&mut self, worker: &[u8], service: &str, hb_ms: u32, credit: u16) {
        self.send(
            worker,
            FromWorker::Ready {
                service,
                heartbeat_ms: hb_ms,
                busy_heartbeats: true,
                credit,
            }
            .emit(),
        );
    }

    fn reply(&mut self, worker: &[u8], token: u64, body: &[u8]) {
        self.send(worker, FromWorker::Reply { token, body }.emit());
    }

    fn heartbeat(&mut self, worker: &[u8]) {
        self.send(worker, FromWorker::Heartbeat.emit());
    }

    /// Answers sent to `client` so far (and forgets them).
    fn answers(&mut self, client: &[u8]) -> Vec<Got> {
        let mut got = Vec::new();
        self.sent.retain(|t| {
            if t.peer != client {
                return true;
            }
            match Answer::parse(&t.frames) {
                Ok(Answer::Reply { id, body }) => got.push(Got::Reply(id, body.to_vec())),
                Ok(Answer::Error { id, code, .. }) => got.push(Got::Error(id, code)),
                Err(e) => panic!("bad answer {e}: {t:?}"),
            }
            false
        });
        got
    }

    /// Requests handed to `worker` so far (token, budget) (and forgets
    /// them, with heartbeats; DISCONNECTs are kept).
    fn requests_to(&mut self, worker: &[u8]) -> Vec<(u64, u32)> {
        let mut got = Vec::new();
        self.sent.retain(|t| {
            if t.peer != worker {
                return true;
            }
            match ToWorker::parse(&t.frames) {
                Ok(ToWorker::Request {
                    token, budget_ms, ..
                }) => {
                    got.push((token, budget_ms));
                    false
                }
                Ok(ToWorker::Heartbeat) => false,
                Ok(ToWorker::Disconnect { .. }) => true,
                Err(e) => panic!("bad worker message {e}: {t:?}"),
            }
        });
        got
    }

    fn disconnects_to(&self, peer: &[u8]) -> usize {
        self.sent
            .iter()
            .filter(|t| {
                t.peer == peer
                    && matches!(ToWorker::parse(&t.frames), Ok(ToWorker::Disconnect { .. }))
            })
            .count()
    }

    fn heartbeats_to(&self, peer: &[u8]) -> usize {
        self.sent
            .iter()
            .filter(|t| t.peer == peer && t.frames == [proto::heartbeat()])
            .count()
    }
}

#[test]
fn unknown_service_is_answered_at_once() {
    let mut s = Sim::new();
    s.request(b"c", 1, "nobody", 2500, false);
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::UnknownService)]);
    let st = s.broker.stats();
    assert_eq!((st.requests, st.errors, st.pending), (1, 1, 0));
}

#[test]
fn workerless_service_is_answered_at_once() {
    let mut s = Sim::new();
    s.ready(b"w", "echo", 1000);
    s.send(b"w", FromWorker::Disconnect { reason: "" }.emit());
    s.request(b"c", 1, "echo", 2500, false);
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::NoWorkers)]);
}

#[test]
fn request_goes_to_a_worker_and_the_reply_back() {
    let mut s = Sim::new();
    s.ready(b"w", "echo", 1000);
    s.request(b"c", 42, "echo", 2500, false);
    let reqs = s.requests_to(b"w");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, 2500);
    s.reply(b"w", reqs[0].0, &[0x07]);
    assert_eq!(s.answers(b"c"), [Got::Reply(42, vec![0x07])]);
    let st = s.broker.stats();
    assert_eq!(
        (st.requests, st.replies, st.errors, st.pending),
        (1, 1, 0, 0)
    );
}

#[test]
fn least_recently_ready_worker_gets_the_request() {
    let mut s = Sim::new();
    for w in [&b"w1"[..], b"w2", b"w3"] {
        s.ready(w, "svc", 1000);
    }
    s.request(b"c", 1, "svc", 2500, false);
    s.request(b"c", 2, "svc", 2500, false);
    let t1 = s.requests_to(b"w1");
    let t2 = s.requests_to(b"w2");
    assert_eq!((t1.len(), t2.len(), s.requests_to(b"w3").len()), (1, 1, 0));
    // w2 finishes before w1: w3 (ready since the start) is next, then w2.
    s.reply(b"w2", t2[0].0, BODY);
    s.reply(b"w1", t1[0].0, BODY);
    s.request(b"c", 3, "svc", 2500, false);
    assert_eq!(s.requests_to(b"w3").len(), 1);
    s.request(b"c", 4, "svc", 2500, false);
    assert_eq!(s.requests_to(b"w2").len(), 1);
    s.request(b"c", 5, "svc", 2500, false);
    assert_eq!(s.requests_to(b"w1").len(), 1);
}

#[test]
fn busy_service_queues_up_to_the_bound_then_errors() {
    let config = Config {
        max_queue: 2,
        ..Config::default()
    };
    let mut s = Sim::with(config);
    s.ready(b"w", "svc", 1000);
    for id in 1..=4 {
        s.request(b"c", id, "svc", 2500, false);
    }
    // 1 dispatched, 2 and 3 queued, 4 refused at once.
    assert_eq!(s.answers(b"c"), [Got::Error(4, ErrorCode::QueueFull)]);
    assert_eq!(s.broker.stats().queued, 2);
    for _ in 0..3 {
        let reqs = s.requests_to(b"w");
        assert_eq!(reqs.len(), 1);
        s.reply(b"w", reqs[0].0, BODY);
    }
    let ids: Vec<Got> = s.answers(b"c");
    assert_eq!(
        ids,
        [
            Got::Reply(1, BODY.to_vec()),
            Got::Reply(2, BODY.to_vec()),
            Got::Reply(3, BODY.to_vec())
        ]
    );
}

#[test]
fn queued_request_times_out_with_an_error() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.request(b"c", 1, "svc", 5000, false);
    s.request(b"c", 2, "svc", 100, false);
    s.advance(Duration::from_millis(99));
    assert_eq!(s.answers(b"c"), []);
    s.advance(Duration::from_millis(1));
    assert_eq!(s.answers(b"c"), [Got::Error(2, ErrorCode::Timeout)]);
    let st = s.broker.stats();
    assert_eq!((st.timeouts, st.queued, st.pending), (1, 0, 1));
}

#[test]
fn reply_after_the_deadline_is_counted_late_and_the_worker_is_ready_again() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.request(b"c", 1, "svc", 100, false);
    let reqs = s.requests_to(b"w");
    s.heartbeat(b"w");
    s.advance(Duration::from_millis(100));
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::Timeout)]);
    s.reply(b"w", reqs[0].0, BODY);
    assert_eq!(s.answers(b"c"), []);
    assert_eq!(s.broker.stats().late_replies, 1);
    s.request(b"c", 2, "svc", 100, false);
    assert_eq!(s.requests_to(b"w").len(), 1);
}

#[test]
fn broker_heartbeats_idle_workers_and_expires_silent_ones() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 100);
    s.ready(b"quiet", "svc", 100);
    for _ in 0..10 {
        s.advance(Duration::from_millis(50));
        s.heartbeat(b"w");
    }
    // 500 ms: the quiet worker missed 3 × 100 ms and is gone.
    assert_eq!(s.broker.stats().dead_workers, 1);
    assert_eq!(s.broker.stats().workers, 1);
    assert_eq!(s.disconnects_to(b"quiet"), 1);
    assert!(s.heartbeats_to(b"w") >= 4, "{}", s.heartbeats_to(b"w"));
    // Not before the third interval.
    let mut s = Sim::new();
    s.ready(b"quiet", "svc", 100);
    s.advance(Duration::from_millis(299));
    assert_eq!(s.broker.stats().workers, 1);
    s.advance(Duration::from_millis(1));
    assert_eq!(s.broker.stats().workers, 0);
}

#[test]
fn worker_death_mid_request_errors_a_plain_request() {
    let mut s = Sim::new();
    s.ready(b"w1", "svc", 100);
    s.ready(b"w2", "svc", 100);
    s.request(b"c", 1, "svc", 2500, false);
    assert_eq!(s.requests_to(b"w1").len(), 1);
    for _ in 0..4 {
        s.advance(Duration::from_millis(100));
        s.heartbeat(b"w2");
    }
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::WorkerLost)]);
    assert_eq!(s.requests_to(b"w2").len(), 0);
    assert_eq!(s.broker.stats().dead_workers, 1);
}

#[test]
fn worker_death_mid_request_retries_an_idempotent_request() {
    let mut s = Sim::new();
    s.ready(b"w1", "svc", 100);
    s.ready(b"w2", "svc", 100);
    s.request(b"c", 1, "svc", 2500, true);
    assert_eq!(s.requests_to(b"w1").len(), 1);
    for _ in 0..4 {
        s.advance(Duration::from_millis(100));
        s.heartbeat(b"w2");
    }
    let reqs = s.requests_to(b"w2");
    assert_eq!(reqs.len(), 1, "re-dispatched to w2");
    s.reply(b"w2", reqs[0].0, BODY);
    assert_eq!(s.answers(b"c"), [Got::Reply(1, BODY.to_vec())]);
    assert_eq!(s.broker.stats().retries, 1);
}

#[test]
fn worker_without_busy_heartbeats_gets_until_the_deadline() {
    let mut s = Sim::new();
    s.send(
        b"w",
        FromWorker::Ready {
            service: "svc",
            heartbeat_ms: 100,
            busy_heartbeats: false,
            credit: 1,
        }
        .emit(),
    );
    s.request(b"c", 1, "svc", 1000, false);
    assert_eq!(s.requests_to(b"w").len(), 1);
    s.advance(Duration::from_millis(999));
    assert_eq!(s.broker.stats().workers, 1, "silent while busy is allowed");
    s.advance(Duration::from_millis(1));
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::Timeout)]);
    s.advance(Duration::from_millis(300));
    assert_eq!(
        s.broker.stats().workers,
        0,
        "gone 3 heartbeats after the deadline"
    );
    assert_eq!(FLAG_BUSY_HEARTBEATS, 1);
}

#[test]
fn last_worker_leaving_errors_its_queue() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.request(b"c", 1, "svc", 2500, false);
    s.request(b"c", 2, "svc", 2500, false);
    s.send(b"w", FromWorker::Disconnect { reason: "bye" }.emit());
    let mut got = s.answers(b"c");
    got.sort_by_key(|g| match g {
        Got::Reply(id, _) | Got::Error(id, _) => *id,
    });
    assert_eq!(
        got,
        [
            Got::Error(1, ErrorCode::WorkerLost),
            Got::Error(2, ErrorCode::NoWorkers)
        ]
    );
}

#[test]
fn stray_worker_messages_get_a_disconnect() {
    let mut s = Sim::new();
    s.heartbeat(b"old");
    s.reply(b"old", 3, BODY);
    assert_eq!(s.disconnects_to(b"old"), 2);
    assert_eq!(s.broker.stats().strays, 2);
}

#[test]
fn malformed_messages_are_counted_and_clients_answered() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.send(b"x", vec![b"garbage".to_vec()]);
    s.send(b"x", vec![]);
    s.send(b"x", vec![vec![], vec![]]);
    assert_eq!(s.sent.len(), 0, "no signature: no answer");
    // A client header with a bad frame count still gets an ERROR with its id.
    s.send(
        b"c",
        vec![proto::request_header(9, false, 100), b"svc".to_vec()],
    );
    assert_eq!(s.answers(b"c"), [Got::Error(9, ErrorCode::Malformed)]);
    // Invalid msgpack body.
    let r = Request {
        id: 10,
        idempotent: false,
        timeout_ms: 100,
        service: "svc",
        body: &[0x92, 0x01],
    };
    s.send(b"c", r.emit());
    assert_eq!(s.answers(b"c"), [Got::Error(10, ErrorCode::Malformed)]);
    // A reply from an idle worker, a bad worker message.
    s.reply(b"w", 77, BODY);
    s.send(b"w", vec![b"BSW1\x09".to_vec()]);
    assert_eq!(s.broker.stats().malformed, 7);
    assert_eq!(s.broker.stats().workers, 1);
    // The worker still works.
    s.request(b"c", 11, "svc", 100, false);
    assert_eq!(s.requests_to(b"w").len(), 1);
}

#[test]
fn malformed_reply_body_becomes_a_worker_error() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.request(b"c", 1, "svc", 2500, false);
    let t = s.requests_to(b"w")[0].0;
    s.reply(b"w", t, &[0xc1]);
    assert_eq!(s.answers(b"c"), [Got::Error(1, ErrorCode::WorkerError)]);
    s.request(b"c", 2, "svc", 2500, false);
    let t = s.requests_to(b"w")[0].0;
    s.send(
        b"w",
        FromWorker::Fail {
            token: t,
            detail: "boom",
        }
        .emit(),
    );
    assert_eq!(s.answers(b"c"), [Got::Error(2, ErrorCode::WorkerError)]);
}

#[test]
fn req_delimiter_is_kept_on_the_answer() {
    let mut s = Sim::new();
    let mut frames = vec![vec![]];
    frames.extend(
        Request {
            id: 5,
            idempotent: false,
            timeout_ms: 100,
            service: "none",
            body: BODY,
        }
        .emit(),
    );
    s.send(b"req", frames);
    assert!(s.sent[0].delimiter);
}

#[test]
fn reserved_names_are_refused_and_listing_works() {
    let mut s = Sim::new();
    s.ready(b"bad", "banyan.services", 1000);
    assert_eq!(s.disconnects_to(b"bad"), 1);
    assert_eq!(s.broker.stats().refused, 1);
    s.ready(b"w1", "b", 1000);
    s.ready(b"w2", "a", 1000);
    s.ready(b"w3", "a", 1000);
    s.request(b"c", 1, proto::SERVICE_LIST, 100, false);
    let got = s.answers(b"c");
    let Got::Reply(1, body) = &got[0] else {
        panic!("{got:?}")
    };
    let v = rmpv::decode::read_value(&mut &body[..]).unwrap();
    let list = v["services"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["service"].as_str(), Some("a"));
    assert_eq!(list[0]["workers"].as_u64(), Some(2));
    assert_eq!(list[1]["idle"].as_u64(), Some(1));

    let r = Request {
        id: 2,
        idempotent: false,
        timeout_ms: 100,
        service: proto::SERVICE_INFO,
        body: &[
            0x81, 0xa7, b's', b'e', b'r', b'v', b'i', b'c', b'e', 0xa1, b'x',
        ],
    };
    s.send(b"c", r.emit());
    let got = s.answers(b"c");
    let Got::Reply(2, body) = &got[0] else {
        panic!("{got:?}")
    };
    let v = rmpv::decode::read_value(&mut &body[..]).unwrap();
    assert_eq!(v["known"].as_bool(), Some(false));

    s.request(b"c", 3, proto::SERVICE_STATS, 100, false);
    let got = s.answers(b"c");
    let Got::Reply(3, body) = &got[0] else {
        panic!("{got:?}")
    };
    let v = rmpv::decode::read_value(&mut &body[..]).unwrap();
    assert_eq!(v["workers"].as_u64(), Some(3));
    assert_eq!(v["requests"].as_u64(), Some(3));
}

#[test]
fn unreachable_worker_is_dropped_and_its_request_retried() {
    let mut s = Sim::new();
    s.ready(b"w1", "svc", 1000);
    s.ready(b"w2", "svc", 1000);
    s.request(b"c", 1, "svc", 2500, true);
    let t = s.sent.pop().unwrap();
    assert_eq!(t.peer, b"w1");
    s.broker.send_failed(&t, SendFailure::Unreachable, s.now);
    s.flush();
    assert_eq!(s.requests_to(b"w2").len(), 1);
    let st = s.broker.stats();
    assert_eq!((st.unroutable, st.dead_workers, st.retries), (1, 1, 1));
}

#[test]
fn shutdown_answers_everything() {
    let mut s = Sim::new();
    s.ready(b"w", "svc", 1000);
    s.request(b"c", 1, "svc", 2500, false);
    s.request(b"c", 2, "svc", 2500, false);
    s.broker.shutdown(s.now);
    s.flush();
    assert_eq!(s.answers(b"c").len(), 2);
    assert_eq!(s.disconnects_to(b"w"), 1);
    assert_eq!(s.broker.stats().pending, 0);
}

/// Many clients and workers at random: every request gets exactly one
/// answer, and the counters add up.
#[test]
fn every_request_is_answered_exactly_once() {
    let mut s = Sim::new();
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let workers: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'w', i]).collect();
    for w in &workers {
        s.ready(w, "svc", 1000);
    }
    let mut busy: Vec<Option<u64>> = vec![None; workers.len()];
    let mut sent = 0u64;
    let mut answered = std::collections::HashMap::new();
    for step in 0..10_000u64 {
        match rnd(4) {
            0 | 1 => {
                let c = vec![b'c', rnd(50) as u8];
                s.request(&c, step, "svc", 1 + rnd(400) as u32, rnd(2) == 0);
                sent += 1;
            }
            2 => {
                let i = rnd(workers.len() as u64) as usize;
                for (t, _) in s.requests_to(&workers[i]) {
                    busy[i] = Some(t);
                }
                if let Some(t) = busy[i].take() {
                    if rnd(10) == 0 {
                        s.send(
                            &workers[i],
                            FromWorker::Fail {
                                token: t,
                                detail: "x",
                            }
                            .emit(),
                        );
                    } else {
                        s.reply(&workers[i], t, BODY);
                    }
                } else {
                    s.heartbeat(&workers[i]);
                }
            }
            _ => s.advance(Duration::from_millis(rnd(20))),
        }
        let mut keep = Vec::new();
        for t in std::mem::take(&mut s.sent) {
            if t.peer.first() == Some(&b'c') {
                let a = Answer::parse(&t.frames).unwrap();
                *answered.entry(a.id()).or_insert(0u32) += 1;
            } else {
                keep.push(t);
            }
        }
        s.sent = keep;
    }
    // Let every deadline pass (workers keep heartbeating).
    for _ in 0..100 {
        for w in workers.clone() {
            s.heartbeat(&w);
        }
        s.advance(Duration::from_millis(10));
    }
    for t in std::mem::take(&mut s.sent) {
        if t.peer.first() == Some(&b'c') {
            *answered
                .entry(Answer::parse(&t.frames).unwrap().id())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(answered.len() as u64, sent);
    assert!(answered.values().all(|&n| n == 1));
    let st = s.broker.stats();
    assert_eq!(st.replies + st.errors, sent);
    assert_eq!(st.pending, 0);
    assert!(st.replies > sent / 4, "{st:?}");
}

#[test]
fn a_worker_with_credit_holds_that_many_requests_then_the_queue_waits() {
    let mut s = Sim::new();
    s.ready_with_credit(b"w", "echo", 1000, 3);
    for id in 1..=5 {
        s.request(b"c", id, "echo", 2500, false);
    }
    // Three in flight at once, two queued.
    let first = s.requests_to(b"w");
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(s.broker.stats().queued, 2);
    assert_eq!(s.broker.services()[0].idle, 0);
    // Each answer frees a slot: the oldest queued request takes it.
    s.reply(b"w", first[1].0, &[0x02]);
    let next = s.requests_to(b"w");
    assert_eq!(next.len(), 1);
    s.reply(b"w", first[0].0, &[0x01]);
    s.reply(b"w", first[2].0, &[0x03]);
    let last = s.requests_to(b"w");
    assert_eq!(last.len(), 1);
    // One slot left free: listed as idle again.
    s.reply(b"w", next[0].0, &[0x04]);
    s.reply(b"w", last[0].0, &[0x05]);
    assert_eq!(s.broker.services()[0].idle, 1);
    let mut got = s.answers(b"c");
    got.sort_by_key(|g| match g {
        Got::Reply(id, _) | Got::Error(id, _) => *id,
    });
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.iter().all(|g| matches!(g, Got::Reply(..))), "{got:?}");
    // A reply to a token it does not hold is refused.
    s.reply(b"w", first[0].0, &[0x01]);
    assert_eq!(s.broker.stats().malformed, 1);
}

#[test]
fn credits_still_go_least_recently_ready_first() {
    let mut s = Sim::new();
    s.ready_with_credit(b"a", "echo", 1000, 2);
    s.ready_with_credit(b"b", "echo", 1000, 2);
    let mut order = Vec::new();
    for id in 1..=4 {
        s.request(b"c", id, "echo", 2500, false);
        for w in [&b"a"[..], &b"b"[..]] {
            if !s.requests_to(w).is_empty() {
                order.push(w.to_vec());
            }
        }
    }
    assert_eq!(
        order,
        [b"a".to_vec(), b"b".to_vec(), b"a".to_vec(), b"b".to_vec()]
    );
}

#[test]
fn a_worker_lost_with_several_requests_answers_each() {
    let mut s = Sim::new();
    s.ready_with_credit(b"w", "echo", 100, 4);
    s.ready(b"spare", "echo", 100);
    // Least recently ready: 1 to `w` (which has room left, so it is listed
    // again after `spare`), 2 to `spare` (now full), 3 to `w`.
    s.request(b"c", 1, "echo", 2500, true);
    s.request(b"c", 2, "echo", 2500, true);
    s.request(b"c", 3, "echo", 2500, false);
    assert_eq!(s.requests_to(b"w").len(), 2);
    let at_spare = s.requests_to(b"spare");
    assert_eq!(at_spare.len(), 1);
    // `w` goes silent: dead after 3 heartbeat intervals.
    for _ in 0..8 {
        s.advance(Duration::from_millis(50));
        s.heartbeat(b"spare");
    }
    let st = s.broker.stats();
    assert_eq!((st.dead_workers, st.retries), (1, 1), "{st:?}");
    // The non-idempotent request it held is answered worker_lost; the
    // idempotent one waits for `spare`, which gets it once it answers 2.
    assert_eq!(s.answers(b"c"), [Got::Error(3, ErrorCode::WorkerLost)]);
    s.reply(b"spare", at_spare[0].0, &[0x02]);
    let retried = s.requests_to(b"spare");
    assert_eq!(retried.len(), 1);
    s.reply(b"spare", retried[0].0, &[0x01]);
    assert_eq!(
        s.answers(b"c"),
        [Got::Reply(2, vec![0x02]), Got::Reply(1, vec![0x01])]
    );
}
