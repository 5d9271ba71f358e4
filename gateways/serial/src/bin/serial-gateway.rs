//! `serial-gateway`: puts a microcontroller running the banyan-rs firmware on
//! the backplane over a serial port or a TCP endpoint (QEMU). Flags follow
//! Banyan's gateways (`-b`, `-p`, `-s`, `-n`). Exits cleanly on
//! SIGINT/SIGTERM. See `docs/serial-gateway.md`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use banyan_component as component;
use banyan_serial::{self as serial, DeviceSpec};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Serial gateway: bridges a microcontroller's serial link to the backplane.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Backplane IP address or host name.
    #[arg(short = 'b', default_value = "127.0.0.1")]
    backplane: String,
    /// Backplane publisher port.
    #[arg(short = 'p', default_value_t = component::PUBLISHER_PORT)]
    publisher_port: u16,
    /// Backplane subscriber port.
    #[arg(short = 's', default_value_t = component::SUBSCRIBER_PORT)]
    subscriber_port: u16,
    /// Gateway name (banner, logs, status payload).
    #[arg(short = 'n', default_value = "serial_gateway")]
    name: String,
    /// Serial device path (/dev/serial0, /dev/ttyACM0) or tcp:HOST:PORT.
    #[arg(long, default_value = "/dev/serial0")]
    device: DeviceSpec,
    /// Baud rate (serial devices only).
    #[arg(long, default_value_t = serial::DEFAULT_BAUD)]
    baud: u32,
    /// Topic of the link status messages.
    #[arg(long, default_value = "serial_gateway_status")]
    status_topic: String,
    /// Publish the status at least every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    status_interval_ms: u64,
    /// Backplane messages held while the device has no credit.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// More log output (-v info, -vv debug). Default: warnings and errors.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    loop_time: Option<String>,
}

struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("[{}] {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() {
    let args = Args::parse();
    let level = match args.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let logger: &'static StderrLog = Box::leak(Box::new(StderrLog(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }

    let mut backplane =
        component::Config::new(args.backplane, args.publisher_port, args.subscriber_port);
    backplane.name = args.name.clone();
    let mut config = serial::Config::new(backplane, args.device);
    config.baud = args.baud;
    config.bridge.name = args.name;
    config.bridge.status_topic = args.status_topic;
    config.bridge.status_interval_ms = args.status_interval_ms.max(1);
    config.bridge.queue_limit = args.queue;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("serial-gateway: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", config.backplane.banner());
    println!("Device: {} (baud {})", config.device, config.baud);
    if let Err(e) = serial::run(config, &stop) {
        eprintln!("serial-gateway: {e}");
        std::process::exit(1);
    }
}
