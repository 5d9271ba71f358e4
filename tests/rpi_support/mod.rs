//! Helpers for the rpi-gateway tests: the gateway's run loop (the binary's
//! code) on a thread, on a sim board, with a backplane and a probe component
//! subscribed to its reports. Use with `mod rpi_support;`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane, Running};
use banyan_component::{self as component, Component, Event};
use banyan_rpi::backend::sim::{SimBackend, SimBoard};
use banyan_rpi::config::Config;
use banyan_rpi::gateway::{get, Gateway};
use banyan_rpi::run;

/// The run loop on a thread on a sim board, a backplane, a probe component
/// subscribed to the reports. Dropping it stops and joins the thread.
pub struct InProcess {
    /// The simulated pins.
    pub board: SimBoard,
    /// A component on the rig's backplane, subscribed to
    /// `from_rpi_gateway` and the topics given to [`in_process`].
    pub probe: Component,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _backplane: Running,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the rig: the gateway on the backend `make` builds over a new sim
/// board, the probe also subscribed to `probe_topics`. Returns once the
/// gateway's subscription to `ready` has reached the probe.
pub fn in_process(
    make: fn(SimBoard) -> SimBackend,
    probe_topics: &[&str],
    ready: &str,
) -> InProcess {
    let bp = Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0)).unwrap();
    let (pp, sp) = (bp.publisher_port(), bp.subscriber_port());
    let running = bp.spawn().unwrap();
    let mut probe = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
    probe.subscribe("from_rpi_gateway").unwrap();
    for t in probe_topics {
        probe.subscribe(t).unwrap();
    }
    let board = SimBoard::new();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (board, stop) = (board.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut gw = Gateway::new(make(board), Config::default(), Instant::now()).unwrap();
            let mut comp = Component::connect(component::Config::new("127.0.0.1", pp, sp)).unwrap();
            // Reports are only useful once the probe listens.
            assert!(comp
                .wait_for_subscriber("from_rpi_gateway", Duration::from_secs(20))
                .unwrap());
            run::run(&mut gw, &mut comp, &stop).unwrap();
        })
    };
    let mut rig = InProcess {
        board,
        probe,
        stop,
        thread: Some(thread),
        _backplane: running,
    };
    assert!(rig
        .probe
        .wait_for_subscriber(ready, Duration::from_secs(20))
        .unwrap());
    rig
}

impl InProcess {
    /// Publishes OneGPIO command `name` for `pin` on `to_rpi_gateway`.
    pub fn command(&mut self, name: &str, pin: u8) {
        let v = rmpv::Value::Map(vec![
            ("command".into(), name.into()),
            ("pin".into(), pin.into()),
        ]);
        self.probe.publish_value("to_rpi_gateway", &v).unwrap();
    }

    /// The next report of `kind` within `within`.
    pub fn report(&mut self, kind: &str, within: Duration) -> Option<rmpv::Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Some(Event::Message(m)) = self.probe.recv_event(Some(left)).unwrap() {
                let v = rmpv::decode::read_value(&mut &m.payload[..]).unwrap();
                if get(&v, "report").and_then(rmpv::Value::as_str) == Some(kind) {
                    return Some(v);
                }
            }
        }
    }

    /// The value of the next `digital_input` report of `pin`.
    pub fn input(&mut self, pin: u64, within: Duration) -> Option<u64> {
        let v = self.report("digital_input", within)?;
        assert_eq!(get(&v, "pin").and_then(rmpv::Value::as_u64), Some(pin));
        get(&v, "value").and_then(rmpv::Value::as_u64)
    }
}
