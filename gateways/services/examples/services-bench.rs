//! Benchmarks of the services broker on loopback, side by side with a
//! pyzmq implementation of the ZeroMQ Guide's load-balancing broker
//! (`python/bench_lbbroker.py`):
//!
//! - synchronous round trip (one client, one request at a time, one
//!   worker): median and p99;
//! - asynchronous throughput (one client keeping `--window` requests in
//!   flight) with 1 and 10 workers;
//!
//! each with 8-byte and 1 KiB bodies. Our broker runs in this process (its
//! own thread), workers are `worker::serve_raw` echo threads, the client a
//! `Client`. Against the Python broker the same work is done by raw `zmq`
//! sockets speaking its protocol (REQ workers, REQ / DEALER clients).
//!
//! ```text
//! cargo run --release -p banyan-services --example services-bench -- [--python .venv/bin/python] [--quick]
//! cargo run --release -p banyan-services --example services-bench -- --credit 16 [--quick]
//! cargo run --release -p banyan-services --example services-bench -- --ceiling
//! ```
//! (`--ceiling`: the asynchronous throughput of libzmq's own queue device,
//! `zmq_proxy`, with 10 echo workers — what no libzmq broker can beat here.)
//! Our client and workers use the transport `BANYAN_TRANSPORT` names
//! (`native`, the default, or `libzmq`); the broker runs on the ROUTER
//! `--engine` names (`native`, the default, or `libzmq`).
//! Prints a Markdown table (docs/benchmarks/services.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// A benchmark tool, not product code: a failed step ends the measurement
// with its message (the workspace lints forbid this in the libraries).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// `println!`/`eprintln!` panic when their stream is closed (a dead pipe, a
// closed SSH session); these write the same lines and ignore a failure.
use banyan_component::{safe_eprintln as eprintln, safe_println as println};
use banyan_services::broker::{spawn, Engine, SocketConfig};
use banyan_services::client::{Client, Config as ClientConfig, Options};
use banyan_services::worker::{self, Request};

/// A MessagePack `bin` value of exactly `n` bytes (n ≥ 3).
fn body(n: usize) -> Vec<u8> {
    let mut v = if n <= 257 {
        vec![0xc4, (n - 2) as u8]
    } else {
        let len = (n - 3) as u16;
        vec![0xc5, (len >> 8) as u8, len as u8]
    };
    v.resize(n, 0x5a);
    v
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Sizes {
    sync_n: usize,
    async_n: usize,
    window: usize,
}

// ---------------------------------------------------------------- ours

fn ours_workers(port: u16, n: usize, credit: u16) -> Vec<worker::Handle> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let mut config = worker::Config::new(format!("tcp://127.0.0.1:{port}"));
            config.credit = credit;
            worker::serve_raw(config, "bench", |r: &Request| Ok(r.body.clone())).expect("worker")
        })
        .collect();
    handles
}

fn wait_ours(b: &banyan_services::broker::Handle, n: u64) {
    let end = Instant::now() + Duration::from_secs(10);
    while !b
        .services()
        .iter()
        .any(|s| s.service == "bench" && s.workers == n)
    {
        assert!(Instant::now() < end, "workers did not register");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ours_sync(port: u16, body: &[u8], n: usize) -> Vec<Duration> {
    let mut c = Client::connect(ClientConfig::new(format!("tcp://127.0.0.1:{port}"))).unwrap();
    let opts = Options::new(Duration::from_secs(5));
    for _ in 0..n / 10 {
        c.request_raw("bench", body.to_vec(), opts)
            .expect("warm-up");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.request_raw("bench", body.to_vec(), opts)
            .expect("request");
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn ours_async(port: u16, body: &[u8], n: usize, window: usize) -> f64 {
    let mut c = Client::connect(ClientConfig::new(format!("tcp://127.0.0.1:{port}"))).unwrap();
    let opts = Options::new(Duration::from_secs(30));
    let run = |c: &mut Client, n: usize| {
        let (mut sent, mut done) = (0, 0);
        while done < n {
            while sent < n && c.in_flight() < window {
                c.send_raw("bench", body.to_vec(), opts).expect("send");
                sent += 1;
            }
            while let Some(x) = c.poll(Duration::from_secs(10)).expect("poll") {
                x.result.expect("reply");
                done += 1;
                if c.in_flight() < window / 2 || done == n {
                    break;
                }
            }
        }
    };
    run(&mut c, n / 10);
    let t = Instant::now();
    run(&mut c, n);
    n as f64 / t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------- Python lbbroker

struct Lb {
    child: Child,
    front: u16,
    back: u16,
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_lb(python: &str) -> Lb {
    use std::io::BufRead;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../python/bench_lbbroker.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<u16> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(parts.len(), 2, "lbbroker said {line:?}");
    Lb {
        child,
        front: parts[0],
        back: parts[1],
    }
}

/// REQ workers echoing [client, "", request] → [client, "", request].
fn lb_workers(back: u16, n: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let ctx = zmq::Context::new();
                let s = ctx.socket(zmq::REQ).unwrap();
                s.set_linger(0).unwrap();
                s.connect(&format!("tcp://127.0.0.1:{back}")).unwrap();
                s.send("READY", 0).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if s.poll(zmq::POLLIN, 100).unwrap() == 0 {
                        continue;
                    }
                    let m = s.recv_multipart(0).unwrap();
                    s.send_multipart(m, 0).unwrap();
                }
            })
        })
        .collect()
}

fn lb_sync(front: u16, body: &[u8], n: usize) -> Vec<Duration> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::REQ).unwrap();
    s.set_linger(0).unwrap();
    s.connect(&format!("tcp://127.0.0.1:{front}")).unwrap();
    for _ in 0..n / 10 {
        s.send(body, 0).unwrap();
        s.recv_bytes(0).unwrap();
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.send(body, 0).unwrap();
        s.recv_bytes(0).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn lb_async(front: u16, body: &[u8], n: usize, window: usize) -> f64 {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvhwm(0).unwrap();
    s.set_sndhwm(0).unwrap();
    s.connect(&format!("tcp://127.0.0.1:{front}")).unwrap();
    let run = |n: usize| {
        let (mut sent, mut done) = (0, 0);
        while done < n {
            while sent < n && sent - done < window {
                s.send_multipart([&b""[..], body], 0).unwrap();
                sent += 1;
            }
            let _ = s.recv_multipart(0).unwrap();
            done += 1;
            while done < n {
                match s.recv_multipart(zmq::DONTWAIT) {
                    Ok(_) => done += 1,
                    Err(_) => break,
                }
            }
        }
    };
    run(n / 10);
    let t = Instant::now();
    run(n);
    n as f64 / t.elapsed().as_secs_f64()
}

// ------------------------------------------------- the libzmq ceiling

/// libzmq's own queue device (`zmq_proxy` between a ROUTER frontend and a
/// DEALER backend, all C++) with `workers` DEALER echo threads: no broker
/// logic at all, the same hops as a broker (client → device → worker →
/// device → client). Its asynchronous throughput bounds what any broker
/// built on libzmq with this topology can reach on this machine.
fn ceiling(body: &[u8], n: usize, window: usize, workers: usize) -> f64 {
    let ctx = zmq::Context::new();
    let front = ctx.socket(zmq::ROUTER).unwrap();
    let back = ctx.socket(zmq::DEALER).unwrap();
    for s in [&front, &back] {
        s.set_rcvhwm(0).unwrap();
        s.set_sndhwm(0).unwrap();
        s.bind("tcp://127.0.0.1:*").unwrap();
    }
    let port = |s: &zmq::Socket| {
        s.get_last_endpoint()
            .unwrap()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    let (front_port, back_port) = (port(&front), port(&back));
    // The device runs until the process ends (a benchmark tool).
    std::thread::spawn(move || {
        let _ = zmq::proxy(&front, &back);
    });
    for _ in 0..workers {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let w = ctx.socket(zmq::DEALER).unwrap();
            w.set_rcvhwm(0).unwrap();
            w.set_sndhwm(0).unwrap();
            w.connect(&format!("tcp://127.0.0.1:{back_port}")).unwrap();
            while let Ok(frames) = w.recv_multipart(0) {
                if w.send_multipart(frames, 0).is_err() {
                    return;
                }
            }
        });
    }
    lb_async(front_port, body, n, window)
}

// ---------------------------------------------------------------- main

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let python = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_owned()
        });
    let quick = args.iter().any(|a| a == "--quick");
    // `--credit N`: our workers' credit (default 1, the LRU rule).
    let credit: u16 = args
        .iter()
        .position(|a| a == "--credit")
        .and_then(|i| args.get(i + 1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    // `--engine native|libzmq`: the broker's ROUTER.
    let engine: Engine = args
        .iter()
        .position(|a| a == "--engine")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(Engine::Native), |e| e.parse())
        .expect("--engine");
    // `--busy-poll-us N`: the native broker's busy polling.
    let busy_poll_us: u64 = args
        .iter()
        .position(|a| a == "--busy-poll-us")
        .and_then(|i| args.get(i + 1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if args.iter().any(|a| a == "--ceiling") {
        // `--ceiling`: only libzmq's queue device, 10 echo workers.
        for size in [8usize, 1024] {
            let rate = ceiling(&body(size), 200_000, 500, 10);
            println!("libzmq queue device (zmq_proxy), {size} B, 10 workers: {rate:.0} req/s");
        }
        return;
    }
    println!(
        "our client and workers: {:?} transport (BANYAN_TRANSPORT)",
        banyan_component::Transport::from_env()
    );
    println!("broker: {engine:?} ROUTER (--engine), busy poll {busy_poll_us} µs (--busy-poll-us)");
    let sizes = if quick {
        Sizes {
            sync_n: 2_000,
            async_n: 20_000,
            window: 200,
        }
    } else {
        Sizes {
            sync_n: 10_000,
            async_n: 200_000,
            window: 500,
        }
    };
    println!(
        "| body | scenario | banyan-services | pyzmq lbbroker | ratio |\n|------|----------|-----------------|----------------|-------|"
    );
    for size in [8usize, 1024] {
        let b = body(size);
        // Ours.
        let mut config = SocketConfig::new("127.0.0.1", 0);
        config.engine = engine;
        config.busy_poll = Duration::from_micros(busy_poll_us);
        let broker = spawn(config).expect("broker");
        let port = broker.port();
        let w1 = ours_workers(port, 1, credit);
        wait_ours(&broker, 1);
        let sync = ours_sync(port, &b, sizes.sync_n);
        let async1 = ours_async(port, &b, sizes.async_n / 4, sizes.window);
        let w9 = ours_workers(port, 9, credit);
        wait_ours(&broker, 10);
        let async10 = ours_async(port, &b, sizes.async_n, sizes.window);
        let stats = broker.stats();
        for w in w1.into_iter().chain(w9) {
            w.shutdown();
        }
        drop(broker);
        // Python lbbroker.
        let lb = start_lb(&python);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = lb_workers(lb.back, 1, &stop);
        std::thread::sleep(Duration::from_millis(200)); // workers' READY (not a test)
        let lsync = lb_sync(lb.front, &b, sizes.sync_n);
        let lasync1 = lb_async(lb.front, &b, sizes.async_n / 4, sizes.window);
        threads.extend(lb_workers(lb.back, 9, &stop));
        std::thread::sleep(Duration::from_millis(200));
        let lasync10 = lb_async(lb.front, &b, sizes.async_n, sizes.window);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        drop(lb);
        let (m, p99) = (percentile(&sync, 0.5), percentile(&sync, 0.99));
        let (lm, lp99) = (percentile(&lsync, 0.5), percentile(&lsync, 0.99));
        println!(
            "| {size} B | sync median | {:.0} µs | {:.0} µs | {:.2}× faster |",
            us(m),
            us(lm),
            us(lm) / us(m)
        );
        println!(
            "| {size} B | sync p99 | {:.0} µs | {:.0} µs | {:.2}× faster |",
            us(p99),
            us(lp99),
            us(lp99) / us(p99)
        );
        println!(
            "| {size} B | async, 1 worker | {:.0} req/s | {:.0} req/s | {:.2}× |",
            async1,
            lasync1,
            async1 / lasync1
        );
        println!(
            "| {size} B | async, 10 workers | {:.0} req/s | {:.0} req/s | {:.2}× |",
            async10,
            lasync10,
            async10 / lasync10
        );
        eprintln!("broker counters ({size} B): {stats:?}");
    }
}
