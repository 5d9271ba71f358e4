//! Runs the lm3s6965 firmware under QEMU and talks to it over its UART (a TCP
//! port). Needs `qemu-system-arm` and the release firmware ELF, so it is
//! ignored by a plain `cargo test`; scripts/ci.d/50-firmware.sh runs it with
//! `-- --ignored` after building the firmware.

mod common;

use common::{field, map, pack, unpack, GwEvent, GwSide};
use rmpv::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills QEMU when dropped, also when the test fails.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn firmware_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts QEMU with the firmware's UART0 on a free local port; returns the
/// guard and a connected stream.
fn start() -> (Qemu, TcpStream) {
    let elf = std::env::var_os("BANYAN_FIRMWARE_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            firmware_dir().join("target/thumbv7m-none-eabi/release/banyan-firmware-qemu")
        });
    assert!(
        elf.exists(),
        "firmware ELF {} missing: build it with `cd firmware/boards/qemu && cargo build --release` \
         (or run scripts/ci.d/50-firmware.sh)",
        elf.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(firmware_dir().join("run-qemu.sh"))
        .arg(port.to_string())
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(match std::env::var_os("BANYAN_QEMU_DEFMT_OUT") {
            // Raw defmt frames from semihosting, for `defmt-print -e ELF`.
            Some(path) => Stdio::from(std::fs::File::create(path).expect("defmt output file")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start run-qemu.sh (is qemu-system-arm installed?)");
    let mut qemu = Qemu(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                if let Ok(Some(status)) = qemu.0.try_wait() {
                    panic!("qemu exited early ({status}) before its UART port opened");
                }
                assert!(Instant::now() < deadline, "qemu UART port {port}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream.set_nonblocking(true).expect("non-blocking socket");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    (qemu, stream)
}

/// The gateway end of the link over QEMU's UART socket, on real time.
struct Gw {
    side: GwSide,
    uart: TcpStream,
    start: Instant,
    /// Whether the gateway sends (false: it "went away", but still listens).
    sending: bool,
    /// The last state report returned by `next_report`.
    last_state: Option<Value>,
}

impl Gw {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// One exchange: bytes from the firmware to the gateway and back.
    fn step(&mut self) {
        let mut buf = [0u8; 1024];
        let mut got = false;
        loop {
            match self.uart.read(&mut buf) {
                Ok(0) => panic!("qemu closed the UART socket"),
                Ok(n) => {
                    got = true;
                    let now = self.now();
                    self.side.feed(&buf[..n], now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("UART socket: {e}"),
            }
        }
        let now = self.now();
        let out = self.side.transmit(now);
        if self.sending && !out.is_empty() {
            self.uart.set_nonblocking(false).unwrap();
            self.uart.write_all(&out).expect("write to firmware UART");
            self.uart.set_nonblocking(true).unwrap();
        }
        if !got {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Steps until `done` holds for the collected events, or panics after `secs`.
    fn until(&mut self, secs: u64, what: &str, mut done: impl FnMut(&[GwEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(&self.side.events) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:?}",
                self.side.events
            );
            self.step();
        }
    }

    /// Waits for the next report from the firmware other than the periodic
    /// stats and returns it.
    ///
    /// A state report equal to the previous one is skipped too: the firmware
    /// sends an unchanged state only when its link comes (back) up, which a
    /// slow, loaded test machine can cause at any time.
    fn next_report(&mut self, what: &str) -> Value {
        loop {
            let report = self.next_any_report(what);
            match field(&report, "report").as_str() {
                Some("stats") => continue,
                Some("state") if self.last_state.as_ref() == Some(&report) => continue,
                Some("state") => self.last_state = Some(report.clone()),
                _ => {}
            }
            return report;
        }
    }

    /// Waits for the next report from the firmware and returns it.
    fn next_any_report(&mut self, what: &str) -> Value {
        self.until(10, what, |evs| {
            evs.iter()
                .any(|e| matches!(e, GwEvent::Publish { topic, .. } if topic == REPORTS))
        });
        let i = self
            .side
            .events
            .iter()
            .position(|e| matches!(e, GwEvent::Publish { topic, .. } if topic == REPORTS))
            .unwrap();
        match self.side.events.remove(i) {
            GwEvent::Publish { payload, .. } => unpack(&payload),
            _ => unreachable!(),
        }
    }

    fn send(&mut self, topic: &str, payload: &Value) {
        self.send_raw(topic, &pack(payload));
    }

    fn send_raw(&mut self, topic: &str, payload: &[u8]) {
        let now = banyan_core::link::Instant::from_millis(self.now());
        self.side.gw.publish(topic, payload, now).unwrap();
    }
}

const REPORTS: &str = "from_qemu-bot";

fn speed(report: &Value, motor: &str) -> f64 {
    assert_eq!(field(report, "report").as_str(), Some("state"), "{report}");
    field(field(report, "motors"), motor).as_f64().unwrap()
}

#[test]
#[ignore = "needs qemu-system-arm and the firmware ELF; run by scripts/ci.d/50-firmware.sh"]
fn firmware_speaks_the_link_under_qemu() {
    let (_qemu, uart) = start();
    let mut gw = Gw {
        side: GwSide::new(0x5eed),
        uart,
        start: Instant::now(),
        sending: true,
        last_state: None,
    };

    // Handshake: identity, both subscriptions, then the initial state.
    gw.until(20, "link up with both subscriptions", |evs| {
        evs.iter().any(|e| matches!(e, GwEvent::Up { .. }))
            && evs.contains(&GwEvent::Subscribe("run_motors".into()))
            && evs.contains(&GwEvent::Subscribe("light_leds".into()))
    });
    let up = gw
        .side
        .events
        .iter()
        .find(|e| matches!(e, GwEvent::Up { .. }))
        .cloned();
    match up {
        Some(GwEvent::Up { name, version, .. }) => {
            assert_eq!(name, "qemu-bot");
            assert_eq!(version, env!("CARGO_PKG_VERSION"));
        }
        _ => unreachable!(),
    }
    let state = gw.next_report("initial state");
    assert_eq!(speed(&state, "left"), 0.0);

    // A command moves a motor; the new state is reported.
    gw.send(
        "run_motors",
        &map(&[("left", 0.5.into()), ("right", (-0.25).into())]),
    );
    let state = gw.next_report("state after run_motors");
    assert_eq!(speed(&state, "left"), 0.5);
    assert_eq!(speed(&state, "right"), -0.25);

    // LEDs.
    gw.send("light_leds", &map(&[("status", true.into())]));
    let state = gw.next_report("state after light_leds");
    assert_eq!(field(field(&state, "leds"), "status").as_f64(), Some(1.0));

    // Bad input: an error report, nothing changes, the firmware lives on.
    gw.send("run_motors", &map(&[("left", "fast".into())]));
    let err = gw.next_report("error report");
    assert_eq!(field(&err, "report").as_str(), Some("error"));
    assert_eq!(field(&err, "topic").as_str(), Some("run_motors"));
    assert_eq!(
        field(&err, "reason").as_str(),
        Some("wrong type for field left")
    );
    gw.send_raw("run_motors", b"\xc1garbage");
    let err = gw.next_report("error report for malformed msgpack");
    assert_eq!(field(&err, "report").as_str(), Some("error"));
    let reason = field(&err, "reason").as_str().unwrap().to_owned();
    assert!(reason.starts_with("malformed payload"), "{reason}");

    // The deadman (500 ms without run_motors) stops both motors.
    let t0 = Instant::now();
    let state = gw.next_report("deadman stop");
    assert_eq!(speed(&state, "left"), 0.0);
    assert_eq!(speed(&state, "right"), 0.0);
    assert!(t0.elapsed() < Duration::from_secs(5));

    // The gateway goes silent for longer than the link timeout: the
    // firmware declares the link down and says HELLO again; when the gateway
    // answers, the link is back with the same session (no reset) and the
    // firmware publishes its state again.
    gw.side.take();
    gw.sending = false;
    let silent_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < silent_until {
        gw.step();
    }
    let unexpected = gw.side.events.iter().any(|e| match e {
        GwEvent::Publish { payload, .. } => {
            field(&unpack(payload), "report").as_str() != Some("stats")
        }
        _ => false,
    });
    assert!(
        !unexpected,
        "the firmware reported while nothing changed: {:?}",
        gw.side.events
    );
    gw.sending = true;
    gw.last_state = None; // the unchanged state after link-up is expected here
    let state = gw.next_report("state after reconnect");
    assert_eq!(speed(&state, "left"), 0.0);
    assert!(!gw
        .side
        .events
        .iter()
        .any(|e| matches!(e, GwEvent::Reset(_))));
    gw.send("run_motors", &map(&[("left", 1.into())]));
    let state = gw.next_report("state after reconnect command");
    assert_eq!(speed(&state, "left"), 1.0);
}

/// Prints round-trip figures for docs/benchmarks/firmware.md: gateway-side
/// PUBLISH of `run_motors` → the firmware's state report back at the gateway,
/// through the link over QEMU's emulated UART. Asserts only correctness.
#[test]
#[ignore = "needs qemu-system-arm and the firmware ELF; run by scripts/ci.d/50-firmware.sh"]
fn round_trip_figures() {
    let (_qemu, uart) = start();
    let mut gw = Gw {
        side: GwSide::new(0xbe7c),
        uart,
        start: Instant::now(),
        sending: true,
        last_state: None,
    };
    gw.until(20, "link up", |evs| {
        evs.contains(&GwEvent::Subscribe("light_leds".into()))
    });
    gw.next_report("initial state");
    const N: usize = 200;
    let mut rtt = Vec::with_capacity(N);
    for i in 0..N {
        let want = if i % 2 == 0 { 0.5 } else { -0.5 };
        let t0 = Instant::now();
        gw.send("run_motors", &map(&[("left", want.into())]));
        let state = gw.next_report("state report");
        rtt.push(t0.elapsed());
        if i == 0 {
            assert_eq!(pack(&state), {
                let mut b = Vec::new();
                rmpv::encode::write_value(&mut b, &state_of(want)).unwrap();
                b
            });
        }
        assert_eq!(speed(&state, "left"), want);
    }
    rtt.sort();
    let cmd = pack(&map(&[("left", 0.5.into())]));
    let mut report = Vec::new();
    rmpv::encode::write_value(&mut report, &state_of(0.5)).unwrap();
    let overhead = banyan_core::link::wire::PUBLISH_OVERHEAD;
    println!(
        "wire bytes per exchange: run_motors payload {} B -> frame {} B; state report payload {} B -> frame {} B",
        cmd.len(),
        cmd.len() + "run_motors".len() + overhead,
        report.len(),
        report.len() + REPORTS.len() + overhead
    );
    let us = |d: Duration| d.as_micros();
    println!(
        "qemu run_motors -> state report round trip over {N}: min {} us, median {} us, p99 {} us, max {} us",
        us(rtt[0]),
        us(rtt[N / 2]),
        us(rtt[N * 99 / 100]),
        us(rtt[N - 1])
    );
    let link = gw.side.gw.stats();
    println!(
        "gateway link stats: frames rx {} tx {}, publishes rx {} tx {}, lost {}, dropped (no credit) {}",
        link.frames_rx, link.frames_tx, link.publish_rx, link.publish_tx, link.publish_lost, link.drop_no_credit
    );
}

/// The state report the QEMU board sends with `left` at `left` and
/// everything else at 0 (after the LEDs were never lit). `stopped_by` is
/// part of the one robot contract since issue 9.
fn state_of(left: f64) -> Value {
    map(&[
        ("report", "state".into()),
        (
            "motors",
            map(&[("left", left.into()), ("right", 0.0.into())]),
        ),
        ("leds", map(&[("status", 0.0.into()), ("aux", 0.0.into())])),
        ("stopped_by", Value::Nil),
    ])
}
