//! Byte transports to the device: a serial port (`serialport` crate) or a
//! TCP endpoint (how QEMU's emulated UART is reached), behind one
//! [`Transport`] trait the run loop polls by file descriptor.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::str::FromStr;
use std::time::Duration;

/// Where the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A serial device path such as `/dev/serial0` or `/dev/ttyACM0`.
    Serial(String),
    /// A TCP endpoint `host:port` (QEMU `-serial tcp:...,server`).
    Tcp(String),
}

impl FromStr for DeviceSpec {
    type Err = String;

    /// `tcp:HOST:PORT` or a device path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(addr) = s.strip_prefix("tcp:") {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("bad TCP device {s:?}: expected tcp:HOST:PORT"));
            }
            Ok(DeviceSpec::Tcp(addr.to_owned()))
        } else if s.is_empty() {
            Err("empty device path".into())
        } else {
            Ok(DeviceSpec::Serial(s.to_owned()))
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Serial(p) => f.write_str(p),
            DeviceSpec::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A byte stream to the device whose reads never block for long: the run
/// loop waits on [`Transport::fd`] becoming readable first.
pub trait Transport: Send {
    /// Reads what is available. `Ok(0)` means the peer closed the stream;
    /// `ErrorKind::WouldBlock`/`TimedOut` mean nothing is there yet.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes some of `buf`; `WouldBlock`/`TimedOut` mean try again when the
    /// fd is writable.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The file descriptor to poll.
    fn fd(&self) -> RawFd;
}

/// A TCP connection, non-blocking.
#[derive(Debug)]
pub struct TcpTransport(TcpStream);

impl TcpTransport {
    /// Connects to `addr` (`host:port`) within `timeout`.
    ///
    /// # Errors
    /// The connect error (refused while QEMU is not listening yet, ...).
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpTransport> {
        use std::net::ToSocketAddrs;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_nonblocking(true)?;
                    return Ok(TcpTransport(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Transport for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A serial port (8N1, no flow control), opened with the `serialport` crate.
///
/// The port's own timeout is set to zero: the run loop only reads after the
/// fd polled readable and only writes after it polled writable, so a call
/// never waits (a write is capped to [`SerialTransport::WRITE_CHUNK`] bytes,
/// which the kernel's tty buffer takes at once).
#[derive(Debug)]
pub struct SerialTransport(serialport::TTYPort);

impl SerialTransport {
    /// Largest single write.
    pub const WRITE_CHUNK: usize = 256;

    /// Opens `path` at `baud`, exclusively.
    ///
    /// # Errors
    /// `serialport`'s error: missing device, permission denied (add the user
    /// to `dialout`), busy.
    pub fn open(path: &str, baud: u32) -> Result<SerialTransport, serialport::Error> {
        let mut port = serialport::new(path, baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::ZERO)
            .open_native()?;
        port.set_exclusive(true)?;
        // Drop whatever was buffered before we opened (boot noise).
        let _ = serialport::SerialPort::clear(&port, serialport::ClearBuffer::All);
        Ok(SerialTransport(port))
    }
}

impl Transport for SerialTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            // A tty never reports EOF by a 0-byte read after poll said
            // readable unless it hung up (USB CDC unplugged).
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "serial device hung up",
            )),
            r => r,
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf.get(..Self::WRITE_CHUNK).unwrap_or(buf))
    }
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Opens `spec` once (the run loop retries with backoff).
///
/// # Errors
/// A message saying what failed and how to fix it.
pub fn open(spec: &DeviceSpec, baud: u32) -> Result<Box<dyn Transport>, String> {
    match spec {
        DeviceSpec::Tcp(addr) => TcpTransport::connect(addr, Duration::from_millis(500))
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .map_err(|e| format!("cannot connect to tcp:{addr}: {e}")),
        DeviceSpec::Serial(path) => SerialTransport::open(path, baud)
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .map_err(|e| {
                let hint = match e.kind() {
                    serialport::ErrorKind::NoDevice => " (device missing: check the cable / path)",
                    serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied) => {
                        " (permission denied: add the user to the dialout group)"
                    }
                    _ => "",
                };
                format!("cannot open {path}: {e}{hint}")
            }),
    }
}
