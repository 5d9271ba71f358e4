//! `banyan-bench mqtt-latency`: the same echo round trip as `latency`, with
//! `rumqttc` (sync client, QoS 0) through a `mosquitto` broker that this
//! module starts on a free port of 127.0.0.1 and stops again (also on error,
//! panic, SIGINT, SIGTERM or SIGHUP).

use std::error::Error;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, MqttOptions, NetworkOptions, Packet, QoS};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// How long the broker may take to accept connections, a client to be
/// subscribed, a reply to come back.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A `mosquitto` process with its own config in a temporary directory.
/// Dropping it kills the process and removes the directory.
pub struct Mosquitto {
    child: Child,
    dir: PathBuf,
    signals: Option<signal_hook::iterator::Handle>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

/// Finds the mosquitto binary: `name` as given when it has a slash or is on
/// the PATH, else Debian's `/usr/sbin/mosquitto` (not on a normal user's
/// PATH).
pub fn find_mosquitto(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// Starts `bin -c CONF` with `listener PORT 127.0.0.1`, anonymous
    /// access and, when `nodelay`, `set_tcp_nodelay true`; returns once it
    /// accepts TCP connections. A port taken between the probe and the
    /// broker's bind is retried with another one (3 attempts).
    pub fn start(bin: &Path, nodelay: bool) -> BoxResult<Mosquitto> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "banyan-bench-mosquitto-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir(&dir)?;
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::start_in(bin, &dir, nodelay) {
                Ok(m) => return Ok(m),
                Err(e) => last_error = e.to_string(),
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(format!("mosquitto did not start: {last_error}").into())
    }

    fn start_in(bin: &Path, dir: &Path, nodelay: bool) -> BoxResult<Mosquitto> {
        let port = free_port()?;
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        let mut text = format!(
            "# banyan-bench mqtt-latency\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        );
        if nodelay {
            text.push_str("set_tcp_nodelay true\n");
        }
        fs::write(&conf, text)?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let signals = stop_on_signal(child.id(), dir.to_owned());
        // From here on, Drop stops the process.
        let mut m = Mosquitto {
            child,
            dir: dir.to_owned(),
            signals,
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = m.child.try_wait()? {
                let log = fs::read_to_string(&log).unwrap_or_default();
                // The directory stays for the next attempt (`start` removes it).
                m.dir = PathBuf::new();
                return Err(format!("mosquitto exited ({status}): {}", log.trim()).into());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(m);
            }
            if Instant::now() > deadline {
                m.dir = PathBuf::new();
                return Err(format!("mosquitto not accepting on {addr} within 10 s").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(h) = self.signals.take() {
            h.close();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stop the broker, remove its directory and
/// exit (Drop does not run then). Drop closes the returned handle.
fn stop_on_signal(pid: u32, dir: PathBuf) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            if let Ok(pid) = i32::try_from(pid) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                // Reap it (our child): no zombie left behind.
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            let _ = fs::remove_dir_all(&dir);
            std::process::exit(128 + sig);
        }
    });
    Some(handle)
}

fn client(id: &str, host: &str, port: u16, nodelay: bool) -> (Client, Connection) {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(options, 64);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(nodelay);
    connection.eventloop.set_network_options(net);
    (client, connection)
}

/// Drives `connection` until the broker acknowledged the subscription.
fn wait_for_suback(connection: &mut Connection, what: &str) -> BoxResult<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{what}: {e}").into()),
            Err(_) => return Err(format!("{what}: not subscribed within 10 s").into()),
        }
    }
}

/// The payload that stops the echo server (msgpack nil, as in `latency`).
const STOP: [u8; 1] = [0xc0];

/// `count` echo round trips (after 100 warm-up ones) of `{"value": i}`
/// (MessagePack) on topic `echo`, replied to on `reply` by an echo server
/// on its own thread and connection, through the MQTT broker at
/// `host:port`. Returns the round-trip times and how many replies the
/// server sent.
pub fn latency(
    host: &str,
    port: u16,
    count: usize,
    nodelay: bool,
) -> BoxResult<(Vec<Duration>, u64)> {
    let tag = std::process::id();
    let (server, mut server_conn) = client(&format!("bench-echo-{tag}"), host, port, nodelay);
    server.subscribe("echo", QoS::AtMostOnce)?;
    wait_for_suback(&mut server_conn, "echo server")?;
    let server_thread = std::thread::spawn(move || -> Result<u64, String> {
        let mut echoed = 0u64;
        for event in server_conn.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.payload[..] == STOP {
                        break;
                    }
                    server
                        .try_publish("reply", QoS::AtMostOnce, false, p.payload.to_vec())
                        .map_err(|e| format!("echo server: {e}"))?;
                    echoed += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(format!("echo server: {e}")),
            }
        }
        Ok(echoed)
    });
    let (client, mut conn) = client(&format!("bench-client-{tag}"), host, port, nodelay);
    client.subscribe("reply", QoS::AtMostOnce)?;
    wait_for_suback(&mut conn, "client")?;
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + 100 {
        let payload = banyan_component::wire::encode(&crate::Value { value: i as u64 })?;
        let t0 = Instant::now();
        client.publish("echo", QoS::AtMostOnce, false, payload)?;
        let deadline = t0 + TIMEOUT;
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => break p,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("client: {e}").into()),
                Err(_) => return Err(format!("no reply to message {i} within 10 s").into()),
            }
        };
        let rtt = t0.elapsed();
        let v: crate::Value =
            banyan_component::wire::Message::new("reply", reply.payload.to_vec()).decode()?;
        if v.value != i as u64 {
            return Err(format!("reply {} to message {i}", v.value).into());
        }
        if i >= 100 {
            rtts.push(rtt);
        }
    }
    // Stop the server: drive our connection until the stop message is out.
    client.publish("echo", QoS::AtMostOnce, false, STOP.to_vec())?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("client: {e}").into()),
            Err(_) => return Err("the stop message was not sent within 10 s".into()),
        }
    }
    let echoed = server_thread.join().map_err(|_| "echo server panicked")??;
    let _ = client.disconnect();
    let _ = conn.recv_timeout(Duration::from_millis(100));
    Ok((rtts, echoed))
}
