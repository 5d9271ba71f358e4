//! The backplane: a ZeroMQ XSUB/XPUB forwarder, wire-compatible with Python
//! Banyan's.
//!
//! Publishers connect to the **publisher port** (43124, an XSUB socket here),
//! subscribers to the **subscriber port** (43125, XPUB). Unlike Python's
//! backplane (a SUB socket subscribed to everything), subscriptions travel
//! upstream, so publishers only send what someone wants; the messages
//! themselves are forwarded unchanged, frame by frame, and never inspected.
//!
//! By default it listens on all interfaces (`0.0.0.0`), so Raspberry Pi
//! gateways and laptops on the LAN can reach it without configuration.
//!
//! # Queues and loss
//! Each subscriber gets a queue of up to [`Config::hwm`] messages in the
//! backplane (default 1,000,000); a subscriber that falls further behind loses
//! the overflow (ZeroMQ PUB/SUB semantics: a stuck subscriber never stalls the
//! others). The publisher-side queue has the same limit. `hwm = 0` means
//! unlimited (memory then grows with the backlog).
//!
//! ```no_run
//! use banyan_gateways::backplane::{Backplane, Config};
//! let backplane = Backplane::bind(&Config::default())?;
//! println!("{}", backplane.banner());
//! backplane.run()?; // until shutdown_handle().shutdown()
//! # Ok::<(), banyan_gateways::backplane::Error>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Errors of the backplane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The port is already in use — probably another backplane (ours or
    /// Python's) is running. Stop it, or choose other ports with `-p`/`-s`.
    #[error("{role} port {port} on {address} is already in use (is another backplane running?)")]
    PortInUse {
        /// `publisher` or `subscriber`.
        role: &'static str,
        /// The port.
        port: u16,
        /// The bind address.
        address: String,
    },
    /// Binding failed for another reason: check `--bind` (an IP address of
    /// this machine, or `0.0.0.0` for all interfaces).
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// What ZeroMQ said.
        source: zmq::Error,
    },
    /// Another ZeroMQ failure (out of file descriptors, for example).
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The backplane thread panicked (a bug: please report it).
    #[error("backplane thread panicked")]
    Panicked,
}

/// Result of the backplane.
pub type Result<T> = std::result::Result<T, Error>;

/// Backplane settings. Build with `Config::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on: `0.0.0.0` (default, all interfaces), `127.0.0.1`
    /// (this machine only) or one interface's IP.
    pub bind: String,
    /// Port publishers connect to. Default 43124; 0 picks a free port.
    pub publisher_port: u16,
    /// Port subscribers connect to. Default 43125; 0 picks a free port.
    pub subscriber_port: u16,
    /// Name shown in the banner.
    pub name: String,
    /// Per-connection queue limit in messages; 0 = unlimited. Default
    /// 1,000,000.
    pub hwm: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".into(),
            publisher_port: crate::component::PUBLISHER_PORT,
            subscriber_port: crate::component::SUBSCRIBER_PORT,
            name: String::new(),
            hwm: crate::component::DEFAULT_HWM,
        }
    }
}

impl Config {
    /// A config listening on `bind` with the given ports (0 = any free port).
    pub fn new(bind: impl Into<String>, publisher_port: u16, subscriber_port: u16) -> Config {
        Config {
            bind: bind.into(),
            publisher_port,
            subscriber_port,
            ..Config::default()
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A bound, not yet running backplane.
pub struct Backplane {
    frontend: zmq::Socket,
    backend: zmq::Socket,
    control: zmq::Socket,
    handle: ShutdownHandle,
    config: Config,
    publisher_port: u16,
    subscriber_port: u16,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("config", &self.config)
            .field("publisher_port", &self.publisher_port)
            .field("subscriber_port", &self.subscriber_port)
            .finish_non_exhaustive()
    }
}

/// Stops a running backplane from any thread (cheap to clone).
#[derive(Clone)]
pub struct ShutdownHandle {
    control: Arc<Mutex<zmq::Socket>>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

impl ShutdownHandle {
    /// Asks the backplane to stop; [`Backplane::run`] then returns `Ok`.
    /// Calling it more than once, or after the backplane stopped, is harmless.
    pub fn shutdown(&self) {
        let sock = match self.control.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = sock.send("TERMINATE", zmq::DONTWAIT);
    }
}

fn bind_socket(socket: &zmq::Socket, role: &'static str, address: &str, port: u16) -> Result<u16> {
    let endpoint = if port == 0 {
        format!("tcp://{address}:*")
    } else {
        format!("tcp://{address}:{port}")
    };
    socket.bind(&endpoint).map_err(|source| match source {
        zmq::Error::EADDRINUSE => Error::PortInUse {
            role,
            port,
            address: address.to_owned(),
        },
        source => Error::Bind { endpoint, source },
    })?;
    let bound = socket
        .get_last_endpoint()?
        .map_err(|_| Error::Zmq(zmq::Error::EINVAL))?;
    bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(Error::Zmq(zmq::Error::EINVAL))
}

impl Backplane {
    /// Binds both ports. Nothing is forwarded until [`Backplane::run`].
    ///
    /// # Errors
    /// [`Error::PortInUse`], [`Error::Bind`], [`Error::Zmq`].
    pub fn bind(config: &Config) -> Result<Backplane> {
        let context = zmq::Context::new();
        let frontend = context.socket(zmq::XSUB)?;
        frontend.set_rcvhwm(config.hwm)?;
        frontend.set_linger(0)?;
        let backend = context.socket(zmq::XPUB)?;
        backend.set_sndhwm(config.hwm)?;
        backend.set_linger(0)?;
        let publisher_port =
            bind_socket(&frontend, "publisher", &config.bind, config.publisher_port)?;
        let subscriber_port =
            bind_socket(&backend, "subscriber", &config.bind, config.subscriber_port)?;
        let endpoint = format!(
            "inproc://banyan-backplane-control-{}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let control = context.socket(zmq::PAIR)?;
        control.set_linger(0)?;
        control.bind(&endpoint)?;
        let steer = context.socket(zmq::PAIR)?;
        steer.set_linger(0)?;
        steer.connect(&endpoint)?;
        Ok(Backplane {
            frontend,
            backend,
            control,
            handle: ShutdownHandle {
                control: Arc::new(Mutex::new(steer)),
            },
            config: config.clone(),
            publisher_port,
            subscriber_port,
        })
    }

    /// The port publishers connect to (the real one if 0 was asked for).
    pub fn publisher_port(&self) -> u16 {
        self.publisher_port
    }

    /// The port subscribers connect to (the real one if 0 was asked for).
    pub fn subscriber_port(&self) -> u16 {
        self.subscriber_port
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A handle that stops [`Backplane::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// A banner in the style of Banyan's.
    pub fn banner(&self) -> String {
        let line = "*".repeat(42);
        let name = if self.config.name.is_empty() {
            String::new()
        } else {
            format!("{} ", self.config.name)
        };
        let scope = if self.config.bind == "0.0.0.0" || self.config.bind == "*" {
            " (all interfaces)"
        } else {
            ""
        };
        format!(
            "\n{line}\n{name}Backplane IP address: {}{scope}\nSubscriber Port = {}\nPublisher  Port = {}\n{line}",
            self.config.bind, self.subscriber_port, self.publisher_port
        )
    }

    /// Forwards messages (and subscriptions) until shut down.
    ///
    /// # Errors
    /// [`Error::Zmq`] if the proxy fails.
    pub fn run(mut self) -> Result<()> {
        loop {
            match zmq::proxy_steerable(&mut self.frontend, &mut self.backend, &mut self.control) {
                Ok(()) => return Ok(()),
                // A signal interrupted the poll (e.g. the SIGINT that will
                // shut us down): carry on; TERMINATE is still queued.
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs the backplane on a new thread. The returned guard stops it and
    /// waits for the thread when dropped (handy in tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be started.
    pub fn spawn(self) -> Result<Running> {
        let handle = self.shutdown_handle();
        let publisher_port = self.publisher_port;
        let subscriber_port = self.subscriber_port;
        let thread = std::thread::Builder::new()
            .name("backplane".into())
            .spawn(move || self.run())?;
        Ok(Running {
            handle,
            thread: Some(thread),
            publisher_port,
            subscriber_port,
        })
    }
}

/// A backplane running on its own thread; stops when dropped.
#[derive(Debug)]
pub struct Running {
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<()>>>,
    publisher_port: u16,
    subscriber_port: u16,
}

impl Running {
    /// The port publishers connect to.
    pub fn publisher_port(&self) -> u16 {
        self.publisher_port
    }

    /// The port subscribers connect to.
    pub fn subscriber_port(&self) -> u16 {
        self.subscriber_port
    }

    /// Stops the backplane and waits for its thread.
    ///
    /// # Errors
    /// What [`Backplane::run`] returned, or [`Error::Panicked`].
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        self.handle.shutdown();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| Error::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_and_port_in_use() {
        let bp = Backplane::bind(&Config::new("127.0.0.1", 0, 0)).unwrap();
        assert_ne!(bp.publisher_port(), 0);
        assert_ne!(bp.subscriber_port(), bp.publisher_port());
        let clash = Backplane::bind(&Config::new("127.0.0.1", bp.publisher_port(), 0));
        assert!(
            matches!(
                clash,
                Err(Error::PortInUse {
                    role: "publisher",
                    ..
                })
            ),
            "{clash:?}"
        );
        let running = bp.spawn().unwrap();
        running.stop().unwrap();
    }

    #[test]
    fn bad_bind_address_is_a_clear_error() {
        let err = Backplane::bind(&Config::new("not an address", 0, 0)).unwrap_err();
        assert!(matches!(err, Error::Bind { .. }), "{err:?}");
        assert!(err.to_string().contains("not an address"));
    }
}
