//! End-to-end tests of banyan-services: the broker on loopback with Rust
//! and Python clients and workers, killed and restarted peers, raw ZeroMQ
//! peers sending garbage, and the queue/streamer devices with raw pyzmq
//! peers. Free ports only; waits on conditions, never fixed sleeps.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_services::broker::{self, SocketConfig};
use banyan_services::client::{Client, Config as ClientConfig, Options, Retry};
use banyan_services::proto::ErrorCode;
use banyan_services::worker::{self, Failure, Request};
use banyan_services::{cli, devices, Error};
use common::{python, wait_until, wait_workers, workspace_root, Proc};

const WAIT: Duration = Duration::from_secs(20);

fn start_broker(port: u16) -> broker::Handle {
    broker::spawn(SocketConfig::new("127.0.0.1", port)).expect("broker")
}

fn endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

fn worker_config(port: u16, hb_ms: u64) -> worker::Config {
    let mut c = worker::Config::new(endpoint(port));
    c.heartbeat = Duration::from_millis(hb_ms);
    c.reconnect_min = Duration::from_millis(20);
    c.reconnect_max = Duration::from_millis(500);
    c
}

fn client(port: u16) -> Client {
    Client::connect(ClientConfig::new(endpoint(port))).expect("client")
}

/// Path of an example of banyan-services, built once per test process.
fn services_example(name: &str) -> PathBuf {
    common::package_example("banyan-services", name)
}

fn worker_process(port: u16, service: &str, name: &str, delay_ms: u64, hb_ms: u64) -> Proc {
    let mut cmd = Command::new(services_example("services-worker"));
    cmd.args([
        endpoint(port),
        service.to_owned(),
        name.to_owned(),
        delay_ms.to_string(),
        hb_ms.to_string(),
    ]);
    let mut p = Proc::spawn(name, cmd);
    p.wait_line(WAIT, |l| l == "ready");
    p
}

fn python_driver(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("python/test_banyan_services.py"))
        .args(args);
    Proc::spawn(name, cmd)
}

/// An echo worker in this process that counts its requests.
fn echo_worker(port: u16, service: &str, hb_ms: u64, count: Arc<AtomicU64>) -> worker::Handle {
    serve_echo(port, service, hb_ms, count).expect("worker")
}

fn serve_echo(
    port: u16,
    service: &str,
    hb_ms: u64,
    count: Arc<AtomicU64>,
) -> banyan_services::Result<worker::Handle> {
    worker::serve_raw(worker_config(port, hb_ms), service, move |req: &Request| {
        count.fetch_add(1, Ordering::Relaxed);
        Ok(req.body.clone())
    })
}

#[test]
fn ten_workers_fifty_clients_every_request_answered_once() {
    let b = start_broker(0);
    let port = b.port();
    let counts: Vec<Arc<AtomicU64>> = (0..10).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let workers: Vec<_> = counts
        .iter()
        .map(|c| echo_worker(port, "echo", 200, Arc::clone(c)))
        .collect();
    wait_workers(&b, "echo", 10);
    const PER_CLIENT: u64 = 40;
    let answers = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let threads: Vec<_> = (0..50u64)
        .map(|c| {
            let answers = Arc::clone(&answers);
            std::thread::spawn(move || {
                let mut client = client(port);
                // Half of each client's requests blocking, half in flight at once.
                for i in 0..PER_CLIENT / 2 {
                    let tag = c * 1000 + i;
                    let r = client
                        .request("echo", &tag, Duration::from_secs(10))
                        .expect("blocking request");
                    let got: u64 = r.decode().expect("u64 back");
                    *answers.lock().unwrap().entry(got).or_default() += 1;
                }
                let mut ids = HashMap::new();
                for i in PER_CLIENT / 2..PER_CLIENT {
                    let tag = c * 1000 + i;
                    let id = client
                        .send("echo", &tag, Options::new(Duration::from_secs(10)))
                        .expect("send");
                    ids.insert(id, tag);
                }
                while client.in_flight() > 0 {
                    let done = client
                        .poll(Duration::from_secs(15))
                        .expect("poll")
                        .expect("an answer before the deadline");
                    let got: u64 = done.result.expect("reply").decode().expect("u64");
                    assert_eq!(ids.remove(&done.id), Some(got), "answer matched to its id");
                    *answers.lock().unwrap().entry(got).or_default() += 1;
                }
                assert!(client.try_recv().expect("try_recv").is_none());
                client.stats()
            })
        })
        .collect();
    let mut late = 0;
    for t in threads {
        let s = t.join().expect("client thread");
        assert_eq!((s.replies, s.errors, s.timeouts), (PER_CLIENT, 0, 0));
        late += s.late;
    }
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len() as u64, 50 * PER_CLIENT);
    assert!(
        answers.values().all(|&n| n == 1),
        "every request answered exactly once"
    );
    let dist: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    println!("load distribution over 10 workers (2000 requests): {dist:?}");
    assert_eq!(dist.iter().sum::<u64>(), 50 * PER_CLIENT);
    let fair = 50 * PER_CLIENT / 10;
    assert!(
        dist.iter().all(|&n| n >= fair / 4),
        "load not spread: {dist:?}"
    );
    let s = b.stats();
    println!("broker: {s:?}");
    assert_eq!(
        (s.requests, s.replies, s.errors, s.malformed),
        (2000, 2000, 0, 0)
    );
    assert_eq!(late, 0);
    for w in workers {
        w.shutdown();
    }
    wait_workers(&b, "echo", 0);
    b.shutdown().expect("broker shutdown");
}

/// Native and libzmq clients and workers on one broker, whatever
/// `BANYAN_TRANSPORT` says: each kind of client is answered by each kind
/// of worker, and every drop counter stays at zero.
#[test]
fn native_and_libzmq_clients_and_workers_mixed() {
    use banyan_component::Transport;
    let b = start_broker(0);
    let port = b.port();
    let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let workers: Vec<_> = [Transport::Native, Transport::Libzmq]
        .into_iter()
        .zip(&counts)
        .map(|(t, count)| {
            let mut config = worker_config(port, 200);
            config.transport = t;
            let count = Arc::clone(count);
            worker::serve_raw(config, "mixed", move |req: &Request| {
                count.fetch_add(1, Ordering::Relaxed);
                Ok(req.body.clone())
            })
            .expect("worker")
        })
        .collect();
    wait_workers(&b, "mixed", 2);
    for t in [Transport::Native, Transport::Libzmq] {
        let mut config = ClientConfig::new(endpoint(port));
        config.transport = t;
        let mut c = Client::connect(config).expect("client");
        assert_eq!(c.transport(), t);
        // Sequential requests alternate between the two workers (the least
        // recently ready gets the next one), so both kinds answer.
        let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        for i in 0..50u64 {
            let r = c
                .request("mixed", &i, Duration::from_secs(10))
                .expect("reply");
            assert_eq!(r.decode::<u64>().expect("u64"), i);
        }
        let s = c.stats();
        assert_eq!(
            (s.replies, s.errors, s.timeouts, s.lost, s.malformed),
            (50, 0, 0, 0, 0)
        );
        for (w, count) in counts.iter().enumerate() {
            assert!(
                count.load(Ordering::Relaxed) > before[w],
                "{t:?} client: worker {w} answered none"
            );
        }
    }
    // A non-TCP endpoint goes through libzmq whatever is asked for.
    let mut config = ClientConfig::new("ipc:///nonexistent/banyan-services-test");
    config.transport = Transport::Native;
    assert_eq!(
        Client::connect(config).expect("client").transport(),
        Transport::Libzmq
    );
    for w in workers {
        let s = w.shutdown();
        assert_eq!((s.malformed, s.lost, s.failures), (0, 0, 0));
    }
}

#[test]
fn unknown_service_gets_an_immediate_error() {
    let b = start_broker(0);
    let mut c = client(b.port());
    let started = Instant::now();
    let err = c
        .request("nobody", &(), Duration::from_secs(10))
        .expect_err("no such service");
    assert_eq!(err.code(), Some(ErrorCode::UnknownService), "{err}");
    println!("unknown service answered in {:?}", started.elapsed());
    // A service whose only worker left: no_workers, at once too.
    let w = echo_worker(b.port(), "gone", 200, Arc::default());
    wait_workers(&b, "gone", 1);
    w.shutdown();
    wait_workers(&b, "gone", 0);
    let err = c
        .request("gone", &(), Duration::from_secs(10))
        .expect_err("no workers");
    assert_eq!(err.code(), Some(ErrorCode::NoWorkers), "{err}");
    // The CLI helpers.
    let err = cli::call(&endpoint(b.port()), "nobody", "{}", Duration::from_secs(5))
        .expect_err("unknown");
    assert_eq!(err.code(), Some(ErrorCode::UnknownService));
    let list = cli::list(&endpoint(b.port()), Duration::from_secs(5)).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].service, "gone");
    assert_eq!(b.stats().errors, 3);
}

#[test]
fn cli_call_round_trips_json() {
    let b = start_broker(0);
    let _w = worker::serve(worker_config(b.port(), 200), "sum", |req: &Request| {
        let v: Vec<i64> = req.decode().map_err(|e| Failure::new(e.to_string()))?;
        Ok(rmpv::Value::from(v.iter().sum::<i64>()))
    })
    .expect("worker");
    wait_workers(&b, "sum", 1);
    let got = cli::call(
        &endpoint(b.port()),
        "sum",
        "[1, 2, 39]",
        Duration::from_secs(5),
    )
    .expect("call");
    assert_eq!(got.as_i64(), Some(42));
    let err = cli::call(&endpoint(b.port()), "sum", "\"x\"", Duration::from_secs(5))
        .expect_err("handler failure");
    assert_eq!(err.code(), Some(ErrorCode::WorkerError), "{err}");
    let stats = cli::stats(&endpoint(b.port()), Duration::from_secs(5)).expect("stats");
    assert_eq!(stats["replies"].as_u64(), Some(1));
}

#[test]
fn worker_killed_mid_request_gives_an_error_or_a_retry_within_the_deadline() {
    let b = start_broker(0);
    let port = b.port();
    // A plain request: the worker process is killed while handling it.
    let mut slow = worker_process(port, "slow", "slow1", 60_000, 100);
    wait_workers(&b, "slow", 1);
    let mut c = client(port);
    let timeout = Duration::from_secs(5);
    let id = c.send("slow", &"x", Options::new(timeout)).expect("send");
    slow.wait_line(WAIT, |l| l.starts_with("request"));
    slow.signal("KILL");
    let done = c
        .poll(timeout + Duration::from_secs(2))
        .expect("poll")
        .expect("an answer, not a hang");
    assert_eq!(done.id, id);
    let err = done.result.expect_err("the worker died");
    assert!(
        matches!(err.code(), Some(ErrorCode::WorkerLost | ErrorCode::Timeout)),
        "{err}"
    );
    assert!(
        done.elapsed <= timeout + Duration::from_millis(500),
        "{:?}",
        done.elapsed
    );
    println!("plain request: {err} after {:?}", done.elapsed);
    drop(slow);
    wait_workers(&b, "slow", 0);

    // An idempotent request: the broker hands it to the next worker.
    let mut slow = worker_process(port, "idem", "slow2", 60_000, 100);
    wait_workers(&b, "idem", 1);
    let count = Arc::new(AtomicU64::new(0));
    let fast = echo_worker(port, "idem", 100, Arc::clone(&count));
    wait_workers(&b, "idem", 2);
    let id = c
        .send("idem", &"y", Options::new(timeout).idempotent(Retry::NONE))
        .expect("send");
    // The least recently ready worker is the process: it gets it first.
    slow.wait_line(WAIT, |l| l.starts_with("request"));
    slow.signal("KILL");
    let done = c
        .poll(timeout + Duration::from_secs(2))
        .expect("poll")
        .expect("an answer");
    assert_eq!(done.id, id);
    let reply = done.result.expect("retried on the other worker");
    assert_eq!(reply.decode::<String>().expect("str"), "y");
    assert_eq!(count.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats().retries, 1);
    assert!(b.stats().dead_workers >= 2);
    println!("idempotent request: reply after {:?}", done.elapsed);
    fast.shutdown();
}

#[test]
fn worker_restarted() {
    let b = start_broker(0);
    let port = b.port();
    let mut c = client(port);
    let p = worker_process(port, "svc", "first", 0, 100);
    wait_workers(&b, "svc", 1);
    let r = c
        .request("svc", &1, Duration::from_secs(5))
        .expect("first worker");
    assert_eq!(r.value().unwrap()["worker"].as_str(), Some("first"));
    p.signal("KILL");
    drop(p);
    // Dead after three missed heartbeats: then no_workers at once.
    wait_workers(&b, "svc", 0);
    let err = c
        .request("svc", &2, Duration::from_secs(5))
        .expect_err("no workers");
    assert_eq!(err.code(), Some(ErrorCode::NoWorkers));
    let _p = worker_process(port, "svc", "second", 0, 100);
    wait_workers(&b, "svc", 1);
    let r = c
        .request("svc", &3, Duration::from_secs(5))
        .expect("restarted worker");
    assert_eq!(r.value().unwrap()["worker"].as_str(), Some("second"));
    // An in-process worker stopped and started again.
    let w = echo_worker(port, "inproc", 100, Arc::default());
    wait_workers(&b, "inproc", 1);
    assert!(c.request("inproc", &4, Duration::from_secs(5)).is_ok());
    let stats = w.shutdown();
    assert_eq!((stats.requests, stats.registrations), (1, 1));
    wait_workers(&b, "inproc", 0);
    let _w = echo_worker(port, "inproc", 100, Arc::default());
    wait_workers(&b, "inproc", 1);
    assert!(c.request("inproc", &5, Duration::from_secs(5)).is_ok());
    assert_eq!(b.stats().dead_workers, 1);
}

/// Clients sending idempotent requests (8 in flight each) until `stop`;
/// each returns (sent, replies, errors) and checks one answer per request,
/// each within its deadline.
fn load_clients(
    port: u16,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(u64, u64, u64)>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut c = client(port);
                let options = Options::new(Duration::from_secs(5))
                    .idempotent(Retry::new(6, Duration::from_millis(20)).with_unknown_service());
                let (mut ok, mut failed, mut sent) = (0u64, 0u64, 0u64);
                let mut ids = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) || c.in_flight() > 0 {
                    while !stop.load(Ordering::Relaxed) && c.in_flight() < 8 {
                        ids.insert(c.send("load", &sent, options).expect("send"));
                        sent += 1;
                    }
                    if let Some(done) = c.poll(Duration::from_millis(100)).expect("poll") {
                        assert!(ids.remove(&done.id), "one answer per request");
                        assert!(
                            done.elapsed <= Duration::from_millis(5500),
                            "{:?}",
                            done.elapsed
                        );
                        match done.result {
                            Ok(_) => ok += 1,
                            Err(e) => {
                                if failed == 0 {
                                    println!("first error: {e}");
                                }
                                failed += 1
                            }
                        }
                    }
                }
                assert!(ids.is_empty());
                (sent, ok, failed)
            })
        })
        .collect()
}

fn join_load(clients: Vec<std::thread::JoinHandle<(u64, u64, u64)>>) -> (u64, u64, u64) {
    let (mut sent, mut ok, mut failed) = (0, 0, 0);
    for t in clients {
        let (s, o, f) = t.join().expect("client thread");
        sent += s;
        ok += o;
        failed += f;
    }
    (sent, ok, failed)
}

#[test]
fn broker_restarted_under_load() {
    let b = start_broker(0);
    let port = b.port();
    let served = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| echo_worker(port, "load", 100, Arc::clone(&served)))
        .collect();
    wait_workers(&b, "load", 3);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load_clients(port, 4, &stop);
    // Load flows, then the broker stops (answering what it holds with
    // `unavailable`, DISCONNECT to workers) and comes back on the same port.
    assert!(wait_until(WAIT, || b.stats().replies > 500));
    let before = b.shutdown().expect("first broker");
    let b = start_broker(port);
    wait_workers(&b, "load", 3);
    assert!(wait_until(WAIT, || b.stats().replies > 500));
    stop.store(true, Ordering::Relaxed);
    let (sent, ok, failed) = join_load(clients);
    let after = b.stats();
    println!(
        "broker restart under load: {sent} requests, {ok} replies, {failed} errors; \
         first broker {} replies, second {} replies",
        before.replies, after.replies
    );
    assert_eq!(sent, ok + failed, "every request completed exactly once");
    assert_eq!(failed, 0, "idempotent requests ride over the restart");
    for w in workers {
        let s = w.shutdown();
        assert!(s.registrations >= 2, "{s:?}");
    }
}

#[test]
fn broker_killed_under_load_and_started_again() {
    let port = common::free_port();
    let spawn_broker = || {
        let mut cmd = Command::new(services_example("services-broker"));
        cmd.arg(port.to_string());
        let mut p = Proc::spawn("services-broker", cmd);
        p.wait_line(WAIT, |l| l.starts_with("listening"));
        p
    };
    let broker = spawn_broker();
    let served = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| echo_worker(port, "load", 100, Arc::clone(&served)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load_clients(port, 4, &stop);
    assert!(wait_until(WAIT, || served.load(Ordering::Relaxed) > 500));
    // SIGKILL: no answers, no DISCONNECT. Requests in the broker are lost;
    // clients re-send them after an attempt's deadline, workers register
    // again after three silent heartbeats.
    broker.signal("KILL");
    drop(broker);
    let _broker = spawn_broker();
    let at_restart = served.load(Ordering::Relaxed);
    assert!(
        wait_until(WAIT, || served.load(Ordering::Relaxed) > at_restart + 500),
        "no load after the restart"
    );
    stop.store(true, Ordering::Relaxed);
    let (sent, ok, failed) = join_load(clients);
    println!(
        "broker killed under load: {sent} requests, {ok} replies, {failed} errors, \
         {} served (more than replies: re-sent requests served twice)",
        served.load(Ordering::Relaxed)
    );
    assert_eq!(sent, ok + failed, "every request completed exactly once");
    assert_eq!(failed, 0, "idempotent requests ride over the restart");
    for w in workers {
        let s = w.shutdown();
        assert!(s.registrations >= 2 && s.reconnects >= 1, "{s:?}");
    }
}

#[test]
fn malformed_frames_from_raw_peers_are_counted() {
    let b = start_broker(0);
    let port = b.port();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&endpoint(port)).unwrap();
    let garbage: Vec<Vec<Vec<u8>>> = vec![
        vec![b"hello".to_vec()],
        vec![vec![]],
        vec![b"BSC1".to_vec()],
        vec![b"BSC1\x01".to_vec(), b"svc".to_vec()],
        vec![b"BSW1\x02\x00".to_vec(), vec![0xff; 100]],
        vec![b"BSW1\x01\x00\x00\x00\x00\x00".to_vec(), b"svc".to_vec()],
        vec![vec![0xc1; 3], vec![], vec![0; 70_000]],
    ];
    for m in &garbage {
        raw.send_multipart(m, 0).unwrap();
    }
    // A REQ peer with a bad body gets an ERROR (and can go on).
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.connect(&endpoint(port)).unwrap();
    req.send_multipart(
        [
            &banyan_services::proto::request_header(5, false, 1000)[..],
            b"svc",
            &[0x92, 0x01][..],
        ],
        0,
    )
    .unwrap();
    let answer = req.recv_multipart(0).unwrap();
    match banyan_services::proto::Answer::parse(&answer).unwrap() {
        banyan_services::proto::Answer::Error { id, code, detail } => {
            assert_eq!((id, code), (5, ErrorCode::Malformed));
            println!("malformed body: {detail}");
        }
        a => panic!("{a:?}"),
    }
    // A PUB socket cannot even complete the handshake with a ROUTER.
    let publ = ctx.socket(zmq::PUB).unwrap();
    publ.set_linger(0).unwrap();
    publ.connect(&endpoint(port)).unwrap();
    publ.send("x", 0).unwrap();
    assert!(
        wait_until(WAIT, || b.stats().malformed >= 8),
        "{:?}",
        b.stats()
    );
    println!("broker after garbage: {:?}", b.stats());
    // Still serving.
    let w = echo_worker(port, "svc", 100, Arc::default());
    wait_workers(&b, "svc", 1);
    let mut c = client(port);
    assert!(c.request("svc", &1, Duration::from_secs(5)).is_ok());
    assert!(b.is_running());
    w.shutdown();
}

#[test]
fn python_clients_and_workers_mixed_with_rust() {
    let b = start_broker(0);
    let port = b.port();
    let ep = endpoint(port);
    let _rs = worker::serve(worker_config(port, 200), "rs_echo", |req: &Request| {
        Ok(rmpv::Value::Map(vec![
            (
                "echo".into(),
                req.value().map_err(|e| Failure::new(e.to_string()))?,
            ),
            ("worker".into(), "rust".into()),
        ]))
    })
    .expect("rust worker");
    let mut py_worker = python_driver("py-worker", &["worker", &ep, "py_echo", "python"]);
    py_worker.wait_line(WAIT, |l| l == "ready");
    wait_workers(&b, "py_echo", 1);
    wait_workers(&b, "rs_echo", 1);
    // A Rust client calls the Python worker.
    let mut c = client(port);
    let r = c
        .request(
            "py_echo",
            &HashMap::from([("k", 7)]),
            Duration::from_secs(5),
        )
        .expect("python worker answers rust");
    let v = r.value().unwrap();
    assert_eq!(v["worker"].as_str(), Some("python"));
    assert_eq!(v["echo"]["k"].as_u64(), Some(7));
    // The Python client calls both.
    let mut py_client = python_driver("py-client", &["client", &ep]);
    let status = py_client.wait_exit(Duration::from_secs(60));
    println!("{}", py_client.output());
    assert!(
        status.success(),
        "python client failed:\n{}",
        py_client.output()
    );
    // Killing the Python worker: the broker notices (no heartbeats).
    drop(py_worker);
    wait_workers(&b, "py_echo", 0);
    assert_eq!(b.stats().malformed, 0);
}

#[test]
fn queue_device_with_raw_pyzmq_req_rep() {
    let d = devices::queue(&devices::Config::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
    ))
    .expect("queue");
    let front = endpoint(d.frontend_port());
    let back = endpoint(d.backend_port());
    let mut p = python_driver("py-queue", &["queue", &front, &back]);
    let status = p.wait_exit(Duration::from_secs(60));
    println!("{}", p.output());
    assert!(status.success(), "{}", p.output());
    let s = d.shutdown().expect("device");
    println!("queue device: {s:?}");
    assert_eq!((s.forwarded, s.returned), (400, 400));
    assert_eq!((s.unroutable, s.dropped), (0, 0));
}

#[test]
fn streamer_device_with_raw_pyzmq_push_pull() {
    let d = devices::streamer(&devices::Config::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
    ))
    .expect("streamer");
    let front = endpoint(d.frontend_port());
    let back = endpoint(d.backend_port());
    let mut p = python_driver("py-streamer", &["streamer", &front, &back]);
    let status = p.wait_exit(Duration::from_secs(60));
    println!("{}", p.output());
    assert!(status.success(), "{}", p.output());
    let s = d.shutdown().expect("device");
    println!("streamer device: {s:?}");
    assert_eq!(s.forwarded, 10_000);
}

#[test]
fn bad_calls_are_refused_locally() {
    let mut c = client(common::free_port());
    let err = c.send("", &1, Options::default()).expect_err("empty name");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let err = c
        .send_raw("svc", vec![0x92], Options::default())
        .expect_err("bad body");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    // No broker at all: a timeout at the deadline, not a hang.
    let err = c
        .request("svc", &1, Duration::from_millis(200))
        .expect_err("no broker");
    assert!(matches!(err, Error::Timeout), "{err}");
    assert!(
        worker::serve_raw(worker::Config::default(), "banyan.x", |_r: &Request| Ok(
            vec![0xc0]
        ))
        .is_err()
    );
}

#[test]
fn broker_publishes_its_counters_on_the_backplane_stats_topic() {
    // A SUB socket stands in for the backplane's publisher port.
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_linger(0).unwrap();
    sub.set_subscribe(broker::STATS_TOPIC.as_bytes()).unwrap();
    sub.bind("tcp://127.0.0.1:0").unwrap();
    let stats_ep = sub.get_last_endpoint().unwrap().unwrap();
    let mut config = SocketConfig::new("127.0.0.1", 0);
    config.stats_to = Some(stats_ep);
    config.stats_interval = Duration::from_millis(50);
    config.name = "bp".into();
    let b = broker::spawn(config).expect("broker");
    let mut c = client(b.port());
    // Keep making requests until a report counting them arrives (the first
    // reports may be lost to the PUB/SUB connection set-up).
    let mut seen = None;
    assert!(wait_until(WAIT, || {
        let _ = c.request("nobody", &(), Duration::from_secs(1));
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            let v = rmpv::decode::read_value(&mut &frames[1][..]).unwrap();
            if v["report"].as_str() == Some("services") && v["requests"].as_u64() > Some(0) {
                seen = Some(v);
            }
        }
        seen.is_some()
    }));
    let v = seen.unwrap();
    println!("stats report: {v}");
    assert_eq!(v["name"].as_str(), Some("bp"));
    assert!(v["errors"].as_u64() >= Some(1));
}
