//! `banyan serial-gateway`: puts a microcontroller running the banyan-rs
//! firmware on the backplane over a serial port or a TCP endpoint (QEMU).
//! See `docs/serial-gateway.md`.

use banyan_component as component;
use banyan_serial::{self as serial, DeviceSpec};

use crate::args::Connect;
use crate::output::{self, Failure, Result};

/// Flags of `banyan serial-gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the backplane is.
    #[command(flatten)]
    pub connect: Connect,
    /// Gateway name (banner, logs, status payload).
    #[arg(short = 'n', long = "name", default_value = "serial_gateway")]
    pub name: String,
    /// Serial device path (/dev/serial0, /dev/ttyACM0) or tcp:HOST:PORT.
    #[arg(long, default_value = "/dev/serial0")]
    pub device: DeviceSpec,
    /// Baud rate (serial devices only).
    #[arg(long, default_value_t = serial::DEFAULT_BAUD)]
    pub baud: u32,
    /// Topic of the link status messages.
    #[arg(long, default_value = "serial_gateway_status")]
    pub status_topic: String,
    /// Publish the status at least every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub status_interval_ms: u64,
    /// Backplane messages held while the device has no credit.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    pub loop_time: Option<String>,
}

/// Runs the gateway until SIGINT/SIGTERM.
///
/// # Errors
/// Backplane configuration errors.
pub fn run(args: Args) -> Result<()> {
    let stop = output::stop_flag()?;
    let backplane: component::Config = args.connect.config(&args.name);
    let mut config = serial::Config::new(backplane, args.device);
    config.baud = args.baud;
    config.bridge.name = args.name;
    config.bridge.status_topic = args.status_topic;
    config.bridge.status_interval_ms = args.status_interval_ms.max(1);
    config.bridge.queue_limit = args.queue;
    output::note(&format!(
        "{}; device {} (baud {})",
        crate::args::banner_line(&config.backplane),
        config.device,
        config.baud
    ));
    serial::run(config, &stop).map_err(|e| Failure::new(1, e.to_string()))
}
