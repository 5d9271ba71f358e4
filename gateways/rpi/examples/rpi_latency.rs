//! Benchmark: command-to-pin latency of the rpi-gateway through the
//! backplane on the sim backend, and the deadman's stop delay.
//!
//! A backplane and the gateway's run loop (the same code as the
//! `rpi-gateway` binary) run on threads of this process on free loopback
//! ports; the driver publishes `run_motors` and spins on the simulated
//! board until the motor's PWM pin shows the new duty. Results go to
//! `docs/benchmarks/rpi-gateway.md`.
//!
//! `cargo run --release -p banyan-rpi --example rpi_latency [-- N]`

// A benchmark tool, not product code: a failed step ends the measurement
// with its message (the workspace lints forbid this in the libraries).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane};
use banyan_component::{self as component, Component};
use banyan_rpi::backend::sim::{SimBackend, SimBoard};
use banyan_rpi::config::Config;
use banyan_rpi::gateway::Gateway;
use banyan_rpi::run;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn wait_duty(board: &SimBoard, pin: u8, duty: f32, limit: Duration) -> Option<Instant> {
    let until = Instant::now() + limit;
    loop {
        if board.pin(pin).duty == duty {
            return Some(Instant::now());
        }
        if Instant::now() > until {
            return None;
        }
        // Yield rather than spin: the gateway thread needs the board's lock
        // and a core (this machine has 2).
        std::thread::yield_now();
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let _bp = bp.spawn().unwrap();

    let board = SimBoard::new();
    let cfg = Config::default();
    let deadman = Duration::from_millis(cfg.safety.deadman_timeout_ms);
    let stop = Arc::new(AtomicBool::new(false));
    let gw_thread = {
        let (board, stop) = (board.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut gw = Gateway::new(SimBackend::new(board), cfg, Instant::now()).unwrap();
            let mut comp = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
            run::run(&mut gw, &mut comp, &stop).unwrap();
        })
    };
    let mut driver = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
    assert!(driver
        .wait_for_subscriber("run_motors", Duration::from_secs(10))
        .unwrap());

    // Latency: alternate 0.5 / 0.25 so every command changes the pin.
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let speed = if i % 2 == 0 { 0.5 } else { 0.25 };
        let payload = rmpv::Value::Map(vec![("left".into(), speed.into())]);
        let t0 = Instant::now();
        driver.publish_value("run_motors", &payload).unwrap();
        let t1 =
            wait_duty(&board, 18, speed as f32, Duration::from_secs(2)).expect("pin never changed");
        if i >= 100 {
            lat.push(t1 - t0); // the first 100 are warm-up
        }
    }
    lat.sort();
    println!(
        "command-to-pin latency, n={n}: median {:.0} us, p99 {:.0} us, max {:.0} us",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99)),
        us(*lat.last().unwrap())
    );

    // Deadman: time from the last run_motors to duty 0, minus the timeout.
    let mut late = Vec::new();
    for _ in 0..20 {
        let payload = rmpv::Value::Map(vec![("left".into(), 0.75.into())]);
        driver.publish_value("run_motors", &payload).unwrap();
        let t0 = Instant::now();
        wait_duty(&board, 18, 0.75, Duration::from_secs(2)).expect("pin never changed");
        let t1 = wait_duty(&board, 18, 0.0, Duration::from_secs(5)).expect("deadman never fired");
        late.push((t1 - t0).saturating_sub(deadman));
    }
    late.sort();
    println!(
        "deadman ({} ms) stop delay past the timeout, n=20: median {:.0} us, max {:.0} us",
        deadman.as_millis(),
        us(pct(&late, 0.5)),
        us(*late.last().unwrap())
    );
    stop.store(true, Ordering::Relaxed);
    gw_thread.join().unwrap();
}
