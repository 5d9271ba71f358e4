//! Helpers for the serial-gateway tests: a fake device (the core's
//! `link::Device`) behind a TCP listener, a fault-injecting TCP proxy, the
//! gateway run loop on a thread, and status-topic helpers. Every thread is
//! stopped and joined on drop.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banyan::backplane::{self, Backplane};
use banyan::component::{self, Component};
use banyan::core::link::{self, device, Device};
use banyan::serial::{self, DeviceSpec};

/// A (topic, payload) pair.
pub type Msg = (String, Vec<u8>);

/// A free local TCP port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A backplane on free ports of 127.0.0.1, on its own thread (stopped on
/// drop).
pub fn backplane() -> backplane::Running {
    Backplane::bind(&backplane::Config::new("127.0.0.1", 0, 0))
        .expect("bind backplane")
        .spawn()
        .expect("spawn backplane")
}

/// A component on `bp`, subscribed to `subs`.
pub fn component(bp: &backplane::Running, subs: &[&str]) -> Component {
    let mut c = Component::connect(component::Config::new(
        "127.0.0.1",
        bp.publisher_port(),
        bp.subscriber_port(),
    ))
    .expect("component");
    for s in subs {
        c.subscribe(s).unwrap();
    }
    c
}

/// The serial gateway run loop on a thread; stopped and joined on drop.
pub struct Gateway {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    pub fn start(pub_port: u16, sub_port: u16, device: &str, status_ms: u64) -> Gateway {
        Gateway::start_with(pub_port, sub_port, device, status_ms, |_| {})
    }

    /// [`Gateway::start`] with the configuration adjusted by `tweak`.
    pub fn start_with(
        pub_port: u16,
        sub_port: u16,
        device: &str,
        status_ms: u64,
        tweak: impl FnOnce(&mut serial::Config),
    ) -> Gateway {
        let mut bp = component::Config::new("127.0.0.1", pub_port, sub_port);
        bp.name = "serial_gateway_test".into();
        let spec: DeviceSpec = device.parse().expect("device spec");
        let mut cfg = serial::Config::new(bp, spec);
        cfg.bridge.status_interval_ms = status_ms;
        cfg.min_backoff = Duration::from_millis(20);
        cfg.max_backoff = Duration::from_millis(200);
        tweak(&mut cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            serial::run(cfg, &s).expect("gateway run loop");
        });
        Gateway {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("gateway thread panicked");
            }
        }
    }
}

/// What a fake device does with received messages.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Re-publishes each received payload unchanged on `echo_<topic>`.
    Echo,
}

/// The core's `link::Device` behind a TCP listener on a thread: accepts
/// connections one after the other (a re-plug is a new connection) until
/// dropped.
pub struct FakeDevice {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Numbered messages to publish on `count` (set > 0 to start).
    pub to_publish: Arc<AtomicU64>,
    /// Numbered messages actually queued by the link.
    pub published: Arc<AtomicU64>,
    pub received: Arc<Mutex<Vec<Msg>>>,
}

impl FakeDevice {
    pub fn start(port: u16, session: u32, subs: &[&str]) -> FakeDevice {
        FakeDevice::start_serving(port, session, subs, &[])
    }

    /// [`FakeDevice::start`], also declaring `services`: a request for
    /// `hang` is never answered, any other is answered with its body.
    pub fn start_serving(port: u16, session: u32, subs: &[&str], services: &[&str]) -> FakeDevice {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake device port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let to_publish = Arc::new(AtomicU64::new(0));
        let published = Arc::new(AtomicU64::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let subs: Vec<String> = subs.iter().map(|s| s.to_string()).collect();
        let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        let (s, tp, pb, rx) = (
            Arc::clone(&stop),
            Arc::clone(&to_publish),
            Arc::clone(&published),
            Arc::clone(&received),
        );
        let thread = std::thread::spawn(move || {
            let mut dev: Device<256, 1024, 4, 8> =
                Device::new("fake-mcu", "9.9.9", session, link::Config::default()).unwrap();
            for t in &subs {
                dev.subscribe(t).unwrap();
            }
            for t in &services {
                dev.serve(t).unwrap();
            }
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                serve(&mut dev, stream, start, &s, &tp, &pb, &rx);
            }
        });
        FakeDevice {
            stop,
            thread: Some(thread),
            to_publish,
            published,
            received,
        }
    }
}

fn serve(
    dev: &mut Device<256, 1024, 4, 8>,
    mut stream: TcpStream,
    start: Instant,
    stop: &AtomicBool,
    to_publish: &AtomicU64,
    published: &AtomicU64,
    received: &Mutex<Vec<Msg>>,
) {
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 300];
    while !stop.load(Ordering::Relaxed) {
        let now = link::Instant::from_millis(start.elapsed().as_millis() as u64);
        let _ = dev.poll(now);
        // Publish numbered messages while there is credit.
        while dev.is_up() && published.load(Ordering::Relaxed) < to_publish.load(Ordering::Relaxed)
        {
            let n = published.load(Ordering::Relaxed);
            let payload = rmpv_payload(n);
            if dev.publish("count", &payload, now).is_err() {
                break;
            }
            published.fetch_add(1, Ordering::Relaxed);
        }
        while let Some(n) = dev.poll_transmit(now, &mut out) {
            if stream.write_all(&out[..n]).is_err() {
                return;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut input = &buf[..n];
                loop {
                    let (ev, rest) = dev.handle_rx(input, now);
                    input = rest;
                    match ev {
                        Some(device::Event::Received) => {}
                        Some(_) => {}
                        None => break,
                    }
                }
                loop {
                    let Some(m) = dev.recv() else { break };
                    if let Some(req) = m.request() {
                        let (id, hang, body) = (req.id, req.service == "hang", req.body.to_vec());
                        drop(m);
                        if !hang {
                            let _ = dev.reply(id, link::wire::status::OK, &body, now);
                        }
                        continue;
                    }
                    let (topic, payload) = (m.topic().to_owned(), m.payload().to_vec());
                    drop(m);
                    let _ = dev.publish(&format!("echo_{topic}"), &payload, now);
                    received.lock().unwrap().push((topic, payload));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `{"n": n}` as msgpack.
pub fn rmpv_payload(n: u64) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![("n".into(), n.into())]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("fake device panicked");
            }
        }
    }
}

/// What a [`FaultProxy`] does to each byte while `corrupt` is set: forward
/// it (`Some(b)`), change it (`Some(other)`) or drop it (`None`).
pub type ByteFault = Box<dyn FnMut(u8) -> Option<u8> + Send>;

/// A TCP proxy that, while `corrupt` is set, passes every byte through a
/// [`ByteFault`], both directions. Every connection to it gets a fresh
/// connection to the target. Its threads stop and are joined on drop.
pub struct FaultProxy {
    stop: Arc<AtomicBool>,
    pub corrupt: Arc<AtomicBool>,
    pub port: u16,
    threads: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Flips a bit every `flip_every` bytes and drops one byte every
    /// `drop_every` bytes (counted per direction while `corrupt` is set).
    pub fn start(target_port: u16, flip_every: u64, drop_every: u64) -> FaultProxy {
        FaultProxy::with_faults(target_port, move |_, _| {
            let mut count = 0u64;
            Box::new(move |b| {
                count += 1;
                if count.is_multiple_of(drop_every) {
                    None
                } else if count.is_multiple_of(flip_every) {
                    Some(b ^ 0x04)
                } else {
                    Some(b)
                }
            })
        })
    }

    /// A proxy whose byte faults come from `faults(connection, direction)`:
    /// connections count from 1, direction 0 is towards the target, 1 back.
    pub fn with_faults(
        target_port: u16,
        faults: impl Fn(u64, usize) -> ByteFault + Send + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let corrupt = Arc::new(AtomicBool::new(false));
        let (s, c) = (Arc::clone(&stop), Arc::clone(&corrupt));
        let acceptor = std::thread::spawn(move || {
            let mut pumps = Vec::new();
            let mut conn = 0u64;
            while !s.load(Ordering::Relaxed) {
                let down = match listener.accept() {
                    Ok((d, _)) => d,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                };
                let Ok(up) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue; // the client sees the close and retries
                };
                for sock in [&down, &up] {
                    sock.set_nodelay(true).unwrap();
                    sock.set_nonblocking(false).unwrap();
                }
                conn += 1;
                for (i, (a, b)) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ]
                .into_iter()
                .enumerate()
                {
                    let (s, c) = (Arc::clone(&s), Arc::clone(&c));
                    let fault = faults(conn, i);
                    pumps.push(std::thread::spawn(move || pump(a, b, &s, &c, fault)));
                }
            }
            for p in pumps {
                let _ = p.join();
            }
        });
        FaultProxy {
            stop,
            corrupt,
            port,
            threads: vec![acceptor],
        }
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    stop: &AtomicBool,
    corrupt: &AtomicBool,
    mut fault: ByteFault,
) {
    from.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(buf.len());
    while !stop.load(Ordering::Relaxed) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        out.clear();
        for &b in &buf[..n] {
            if !corrupt.load(Ordering::Relaxed) {
                out.push(b);
            } else if let Some(b) = fault(b) {
                out.push(b);
            }
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Looks up `key` in a msgpack map.
pub fn get<'a>(v: &'a rmpv::Value, key: &str) -> Option<&'a rmpv::Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A counter of the status payload (`counters.NAME` or `link_counters.NAME`).
pub fn counter(status: &rmpv::Value, group: &str, name: &str) -> u64 {
    get(status, group)
        .and_then(|g| get(g, name))
        .and_then(rmpv::Value::as_u64)
        .unwrap_or_else(|| panic!("no {group}.{name} in {status}"))
}

/// Receives until a status message satisfies `pred` (other messages go to
/// `others`); panics with the last status after `timeout`.
pub fn wait_status(
    comp: &mut Component,
    topic: &str,
    timeout: Duration,
    others: &mut Vec<(String, Vec<u8>)>,
    mut pred: impl FnMut(&rmpv::Value) -> bool,
) -> rmpv::Value {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(m) = comp.recv_timeout(left).expect("recv") else {
            break;
        };
        if m.topic == topic {
            let v = m.value().expect("status is msgpack");
            if pred(&v) {
                return v;
            }
            last = Some(v);
        } else {
            others.push((m.topic, m.payload));
        }
    }
    panic!("status condition not met within {timeout:?}; last status: {last:?}");
}

/// Whether the status says link up with device `session` and exactly `subs`.
pub fn is_up_with(status: &rmpv::Value, session: u64, subs: &[&str]) -> bool {
    let up = get(status, "link").and_then(|v| v.as_str()) == Some("up");
    let sess = get(status, "device")
        .and_then(|d| get(d, "session"))
        .and_then(|s| s.as_u64());
    let mut have: Vec<&str> = get(status, "subscriptions")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    have.sort();
    let mut want = subs.to_vec();
    want.sort();
    up && sess == Some(session) && have == want
}
