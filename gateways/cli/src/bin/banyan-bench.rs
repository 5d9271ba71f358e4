//! `banyan-bench`: LAN benchmarks through a backplane on loopback.
//!
//! - `throughput`: one publisher sends N `{"value": i}` messages as fast as it
//!   can to one subscriber; prints msgs/s and how many were lost.
//! - `latency`: an echo server replies to each `echo` message with a `reply`;
//!   prints the round-trip median, p99 and max.
//! - `mqtt-latency`: the same echo round trip with `rumqttc` (a Rust MQTT
//!   client, QoS 0) through a `mosquitto` broker it starts on a free port;
//!   see `scripts/bench-latency-side-by-side.sh`.
//! - `tcp-floor`: the same four loopback TCP hops as an echo round trip
//!   through a broker, with blocking sockets and nothing else: the floor
//!   under the two figures above on this machine.
//! - `large`: a burst of large messages (MessagePack `bin` payloads);
//!   prints MB/s and losses; see `scripts/bench-large.sh`.
//!
//! By default the backplane runs in-process (the same code as the
//! `backplane` binary, on its own thread, ephemeral ports); `--backplane
//! ADDR:PUB:SUB` uses a running one instead. See `scripts/bench-lan.sh`.

use std::io::Write as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banyan_backplane::{self as backplane, Backplane};
use banyan_component::{Component, Config};
use clap::{Parser, Subcommand};

/// One result line on stdout. `println!` panics when stdout is closed (a
/// dead pipe, a closed SSH session); a reader that went away is no error
/// here ([`banyan_cli::output::write_stdout`]).
macro_rules! say {
    ($($arg:tt)*) => {
        banyan_cli::output::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

#[path = "../bench/floor.rs"]
mod floor;
#[path = "../bench/large.rs"]
mod large;
#[cfg(feature = "mqtt")]
#[path = "../bench/mqtt.rs"]
mod mqtt;

#[derive(Debug, Parser)]
#[command(version)]
/// LAN benchmarks through a backplane on loopback.
struct Args {
    /// Use a running backplane at ADDR:PUBLISHER_PORT:SUBSCRIBER_PORT instead
    /// of an in-process one.
    #[arg(long, global = true)]
    backplane: Option<String>,
    /// High-water mark for the components (and the in-process backplane);
    /// 0 = unlimited.
    #[arg(long, global = true, default_value_t = banyan_component::DEFAULT_HWM)]
    hwm: i32,
    /// Busy polling of the in-process backplane, in microseconds (see the
    /// `backplane` binary's `--busy-poll-us`); 0 = off.
    #[arg(long, global = true, default_value_t = 0)]
    busy_poll_us: u64,
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Publisher → subscriber burst.
    Throughput {
        /// Messages to send.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Baseline: plain ZeroMQ PUB/SUB sockets with a pre-encoded payload
        /// (no encoding, no checks) through the same backplane.
        #[arg(long)]
        raw: bool,
    },
    /// Echo round trips.
    Latency {
        /// Round trips to measure (after 100 warm-up ones).
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Give the echo server and the client one shared ZeroMQ context
        /// (one I/O thread instead of two).
        #[arg(long)]
        shared_context: bool,
        /// Baseline: plain ZeroMQ PUB/SUB sockets on both ends (no encoding,
        /// no checks) through the same backplane.
        #[arg(long)]
        raw: bool,
        /// Send a request at most this many times per second (a control
        /// loop's pace) instead of right after the previous reply.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Echo round trips of rumqttc (sync client, QoS 0) through a mosquitto
    /// broker started on a free port of 127.0.0.1 (the global options do
    /// not apply).
    MqttLatency {
        /// Round trips to measure (after 100 warm-up ones).
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The mosquitto binary (searched on the PATH, then /usr/sbin).
        #[arg(long, default_value = "mosquitto")]
        mosquitto: String,
        /// Use a running MQTT broker at HOST:PORT instead of starting one.
        #[arg(long)]
        broker: Option<String>,
        /// Leave Nagle's algorithm on (rumqttc's and mosquitto's defaults)
        /// instead of TCP_NODELAY on the clients and the broker.
        #[arg(long)]
        nagle: bool,
    },
    /// Floor of an echo round trip on this machine: the four loopback TCP
    /// hops (client → relay → echo server → relay → client) of 16-byte
    /// messages between threads blocked in `read`, nothing else (the global
    /// options do not apply).
    TcpFloor {
        /// Round trips to measure (after 100 warm-up ones).
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// Burst of large messages (a MessagePack `bin` of --size bytes):
    /// payload MB/s delivered, messages lost.
    Large {
        /// Payload size in bytes.
        #[arg(long)]
        size: usize,
        /// Messages to send.
        #[arg(long)]
        count: u64,
        /// The subscriber stops after this many seconds without a message.
        #[arg(long, default_value_t = 5.0)]
        idle_s: f64,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Value {
    value: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        // Not eprintln!: it panics when stderr is closed.
        let _ = writeln!(std::io::stderr(), "banyan-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let What::MqttLatency {
        count,
        mosquitto,
        broker,
        nagle,
    } = &args.what
    {
        return mqtt_latency(*count, mosquitto, broker.as_deref(), !nagle);
    }
    if let What::TcpFloor { count } = args.what {
        report_rtts("tcp floor", floor::floor(count)?);
        return Ok(());
    }
    let mut _running = None;
    let (addr, publ, sub) = match &args.backplane {
        Some(spec) => {
            let parts: Vec<&str> = spec.split(':').collect();
            let [addr, publ, sub] = parts[..] else {
                return Err("--backplane wants ADDR:PUBLISHER_PORT:SUBSCRIBER_PORT".into());
            };
            (addr.to_owned(), publ.parse()?, sub.parse()?)
        }
        None => {
            let mut cfg = backplane::Config::new("127.0.0.1", 0, 0);
            cfg.hwm = args.hwm;
            cfg.busy_poll = Duration::from_micros(args.busy_poll_us);
            let bp = Backplane::bind(&cfg)?;
            let ports = (bp.publisher_port(), bp.subscriber_port());
            _running = Some(bp.spawn()?);
            ("127.0.0.1".to_owned(), ports.0, ports.1)
        }
    };
    let mut config = Config::new(addr, publ, sub);
    config.send_hwm = args.hwm;
    config.recv_hwm = args.hwm;
    match args.what {
        What::Throughput { count, raw: false } => throughput(config, count),
        What::Throughput { count, raw: true } => raw_throughput(config, count),
        What::Latency {
            count, raw: true, ..
        } => raw_latency(config, count),
        What::Latency {
            count,
            shared_context,
            raw: false,
            rate,
        } => latency(config, count, shared_context, rate),
        What::Large {
            size,
            count,
            idle_s,
        } => {
            let idle = Duration::try_from_secs_f64(idle_s)
                .map_err(|e| format!("--idle-s {idle_s}: {e}"))?;
            large::large(config, size, count, idle)
        }
        What::MqttLatency { .. } | What::TcpFloor { .. } => Ok(()),
    }
}

#[cfg(not(feature = "mqtt"))]
fn mqtt_latency(
    _count: usize,
    _mosquitto: &str,
    _broker: Option<&str>,
    _nodelay: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    Err(
        "built without the `mqtt` feature (cargo build --release -p banyan-cli --bin banyan-bench)"
            .into(),
    )
}

#[cfg(feature = "mqtt")]
fn mqtt_latency(
    count: usize,
    mosquitto: &str,
    broker: Option<&str>,
    nodelay: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let _running;
    let (host, port) = match broker {
        Some(spec) => {
            let (host, port) = spec.rsplit_once(':').ok_or("--broker wants HOST:PORT")?;
            (host.to_owned(), port.parse()?)
        }
        None => {
            let bin = mqtt::find_mosquitto(mosquitto).ok_or_else(|| {
                format!("{mosquitto} not found (Debian: apt-get install mosquitto)")
            })?;
            let m = mqtt::Mosquitto::start(&bin, nodelay)?;
            let port = m.port;
            _running = m;
            ("127.0.0.1".to_owned(), port)
        }
    };
    let (rtts, echoed) = mqtt::latency(&host, port, count, nodelay)?;
    let expected = count as u64 + 100;
    if echoed != expected {
        return Err(format!("the echo server replied {echoed} times, expected {expected}").into());
    }
    report_rtts("rumqttc/mosquitto latency", rtts);
    Ok(())
}

fn throughput(config: Config, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut subscriber = Component::connect(config.clone())?;
    subscriber.subscribe("bench")?;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || -> Result<(u64, u64, Option<Instant>), String> {
        let _ = ready_tx.send(());
        let mut received = 0u64;
        let mut out_of_order = 0u64;
        let mut next = 0u64;
        let mut last = None;
        // Stop after 2 s without a message.
        while let Some(m) = subscriber
            .recv_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?
        {
            let v: Value = m.decode().map_err(|e| e.to_string())?;
            if v.value != next {
                out_of_order += 1;
            }
            next = v.value + 1;
            received += 1;
            last = Some(Instant::now());
            if received == count {
                break;
            }
        }
        Ok((received, out_of_order, last))
    });
    ready_rx.recv()?;
    let mut publisher = Component::connect(config)?;
    if !publisher.wait_for_subscriber("bench", Duration::from_secs(10))? {
        return Err("the subscriber did not connect within 10 s".into());
    }
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..count {
        if publisher.publish("bench", &Value { value: i }).is_err() {
            refused += 1;
        }
    }
    let sent_in = start.elapsed();
    let (received, gaps, last) = receiver.join().map_err(|_| "receiver panicked")??;
    let elapsed = last.map_or(sent_in, |l| l - start);
    let lost = count - received;
    say!(
        "throughput: {count} msgs sent in {:.3} s, {received} received in {:.3} s = {:.0} msgs/s; lost {lost} ({:.2} %); send queue full {refused}; sequence gaps {gaps}",
        sent_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        lost as f64 * 100.0 / count as f64,
    )?;
    Ok(())
}

fn raw_throughput(config: Config, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_rcvhwm(config.recv_hwm)?;
    sub.set_subscribe(b"bench")?;
    sub.connect(&format!(
        "tcp://{}:{}",
        config.address, config.subscriber_port
    ))?;
    let publisher = ctx.socket(zmq::PUB)?;
    publisher.set_sndhwm(config.send_hwm)?;
    publisher.connect(&format!(
        "tcp://{}:{}",
        config.address, config.publisher_port
    ))?;
    // Probe until the subscription has reached the publisher.
    loop {
        publisher.send_multipart([&b"bench"[..], &[0xc0]], 0)?;
        if sub.poll(zmq::POLLIN, 10)? > 0 {
            while sub.recv_multipart(zmq::DONTWAIT).is_ok() {}
            break;
        }
    }
    let payload = banyan_component::wire::encode(&Value { value: 1 })?;
    let receiver = std::thread::spawn(move || {
        let mut received = 0u64;
        let mut last = None;
        let mut frame = zmq::Message::new();
        while sub.poll(zmq::POLLIN, 2000).unwrap_or(0) > 0 {
            while sub.recv(&mut frame, zmq::DONTWAIT).is_ok() {
                if !frame.get_more() {
                    received += 1;
                }
            }
            last = Some(Instant::now());
            if received == count {
                break;
            }
        }
        (received, last)
    });
    let start = Instant::now();
    for _ in 0..count {
        publisher.send(&b"bench"[..], zmq::SNDMORE)?;
        publisher.send(&payload[..], 0)?;
    }
    let sent_in = start.elapsed();
    let (received, last) = receiver.join().map_err(|_| "receiver panicked")?;
    let elapsed = last.map_or(sent_in, |l| l - start);
    say!(
        "raw zeromq baseline: {count} msgs sent in {:.3} s, {received} received in {:.3} s = {:.0} msgs/s; lost {}",
        sent_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        count - received
    )?;
    Ok(())
}

fn latency(
    config: Config,
    count: usize,
    shared_context: bool,
    rate: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let period = match rate {
        Some(hz) if hz > 0.0 && hz.is_finite() => Some(Duration::from_secs_f64(1.0 / hz)),
        Some(hz) => return Err(format!("--rate must be a positive number, not {hz}").into()),
        None => None,
    };
    let shared = banyan_component::Context::new();
    let context = |c: &banyan_component::Context| {
        if shared_context {
            c.clone()
        } else {
            banyan_component::Context::new()
        }
    };
    let mut server = Component::connect_with_context(config.clone(), &context(&shared))?;
    server.subscribe("echo")?;
    let server_thread = std::thread::spawn(move || {
        let _ = server.run(|c, m| {
            if m.payload == [0xc0] {
                return std::ops::ControlFlow::Break(());
            }
            let _ = c.publish_raw("reply", &m.payload);
            std::ops::ControlFlow::Continue(())
        });
    });
    let mut client = Component::connect_with_context(config, &context(&shared))?;
    client.subscribe("reply")?;
    if !client.wait_for_subscriber("echo", Duration::from_secs(10))? {
        return Err("the echo server did not connect within 10 s".into());
    }
    let mut rtts = Vec::with_capacity(count);
    let timeout = Duration::from_secs(5);
    let paced_from = Instant::now();
    for i in 0..count + 100 {
        if let Some(period) = period {
            // Pacing, not waiting for anything: sleep to the next tick.
            let tick = paced_from + period * i as u32;
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        }
        let t0 = Instant::now();
        client.publish("echo", &Value { value: i as u64 })?;
        // The reply subscription may take a moment the very first time.
        let reply = loop {
            match client.recv_timeout(timeout)? {
                Some(m) => break m,
                None if i == 0 => client.publish("echo", &Value { value: 0 })?,
                None => return Err(format!("no reply to message {i} within 5 s").into()),
            }
        };
        let rtt = t0.elapsed();
        let v: Value = reply.decode()?;
        if v.value != i as u64 {
            return Err(format!("reply {} to message {i}", v.value).into());
        }
        if i >= 100 {
            rtts.push(rtt);
        }
    }
    client.publish("echo", &())?;
    let _ = server_thread.join();
    let what = match rate {
        Some(hz) => format!("latency at {hz} requests/s"),
        None => "latency".to_owned(),
    };
    report_rtts(&what, rtts);
    Ok(())
}

fn raw_latency(config: Config, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = (
        format!("tcp://{}:{}", config.address, config.publisher_port),
        format!("tcp://{}:{}", config.address, config.subscriber_port),
    );
    let server_ctx = zmq::Context::new();
    let s_sub = server_ctx.socket(zmq::SUB)?;
    s_sub.set_subscribe(b"echo")?;
    s_sub.connect(&endpoints.1)?;
    let s_pub = server_ctx.socket(zmq::PUB)?;
    s_pub.connect(&endpoints.0)?;
    let server = std::thread::spawn(move || {
        let mut topic = zmq::Message::new();
        let mut payload = zmq::Message::new();
        loop {
            if s_sub.recv(&mut topic, 0).is_err() || s_sub.recv(&mut payload, 0).is_err() {
                return;
            }
            if payload[..] == [0xc0] {
                return;
            }
            let _ = s_pub.send(&b"reply"[..], zmq::SNDMORE);
            let _ = s_pub.send(&payload[..], 0);
        }
    });
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_subscribe(b"reply")?;
    sub.connect(&endpoints.1)?;
    let publ = ctx.socket(zmq::PUB)?;
    publ.connect(&endpoints.0)?;
    let payload = banyan_component::wire::encode(&Value { value: 1 })?;
    // Probe until the round trip works (slow joiners on both ends).
    loop {
        publ.send(&b"echo"[..], zmq::SNDMORE)?;
        publ.send(&payload[..], 0)?;
        if sub.poll(zmq::POLLIN, 10)? > 0 {
            std::thread::sleep(Duration::from_millis(50));
            while sub.recv_msg(zmq::DONTWAIT).is_ok() {}
            break;
        }
    }
    let mut rtts = Vec::with_capacity(count);
    let mut frame = zmq::Message::new();
    for i in 0..count + 100 {
        let t0 = Instant::now();
        publ.send(&b"echo"[..], zmq::SNDMORE)?;
        publ.send(&payload[..], 0)?;
        if sub.poll(zmq::POLLIN, 5000)? == 0 {
            return Err(format!("no reply to message {i} within 5 s").into());
        }
        sub.recv(&mut frame, 0)?;
        sub.recv(&mut frame, 0)?;
        let rtt = t0.elapsed();
        if i >= 100 {
            rtts.push(rtt);
        }
    }
    publ.send(&b"echo"[..], zmq::SNDMORE)?;
    publ.send(&[0xc0][..], 0)?;
    let _ = server.join();
    report_rtts("raw zeromq latency", rtts);
    Ok(())
}

fn report_rtts(what: &str, mut rtts: Vec<Duration>) {
    rtts.sort();
    let pct = |p: f64| {
        let at = ((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1));
        rtts.get(at).copied().unwrap_or_default()
    };
    let us = |p: f64| pct(p).as_secs_f64() * 1e6;
    // Where stdout fails otherwise than closed, there is no one to tell.
    let _ = say!(
        "{what}: {} round trips: median {:.1} µs, p99 {:.1} µs, max {:.1} µs (p90 {:.1}, p98 {:.1}, p99.9 {:.1})",
        rtts.len(),
        us(0.5),
        us(0.99),
        us(1.0),
        us(0.9),
        us(0.98),
        us(0.999),
    );
}
