//! `serial-gateway`: puts a microcontroller running the banyan-rs firmware on
//! the backplane over a serial port or a TCP endpoint (QEMU). Flags follow
//! Banyan's gateways (`-b`, `-p`, `-s`, `-n`). Exits cleanly on
//! SIGINT/SIGTERM. See `docs/serial-gateway.md`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use std::time::Duration;

use banyan_component::{self as component, logging};
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
    #[arg(short = 'n', long = "name", default_value = "serial_gateway")]
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
    /// A control topic: of a backlog of commands on it only the newest is
    /// forwarded, and a queued one is replaced by a newer one (repeatable;
    /// backplane names). Default: run_motors. `--conflate ''` turns it off.
    #[arg(long = "conflate", default_values_t = ["run_motors".to_string()])]
    conflate: Vec<String>,
    /// Drop a message that waited this long (ms) for device credit instead of
    /// sending it late.
    #[arg(long, default_value_t = 250)]
    max_queue_age_ms: u64,
    /// Prefix for the device's topics on the backplane, e.g. `robot1/`: the
    /// device's `run_motors` is the backplane's `robot1/run_motors`.
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Map device topics starting with FROM to backplane topics starting
    /// with TO (repeatable, tried in order, before --topic-prefix).
    #[arg(long = "remap", value_name = "FROM=TO", value_parser = parse_remap)]
    remap: Vec<(String, String)>,
    /// More log output (-v info, -vv debug). Default: warnings and errors.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    loop_time: Option<String>,
}

fn parse_remap(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| format!("expected FROM=TO, got {s:?}"))
}

fn main() {
    let args = Args::parse();
    let level = match args.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    // Never blocks on a stuck stderr: rate-limited, lost lines counted.
    if let Err(e) = logging::init(logging::Config::from_env(level)) {
        eprintln!("serial-gateway: {e}");
    }

    let mut backplane =
        component::Config::new(args.backplane, args.publisher_port, args.subscriber_port);
    backplane.name = args.name.clone();
    let conflate: Vec<String> = args
        .conflate
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    backplane.conflate = conflate.clone();
    let mut config = serial::Config::new(backplane, args.device);
    config.baud = args.baud;
    config.bridge.name = args.name;
    config.bridge.status_topic = args.status_topic;
    config.bridge.status_interval_ms = args.status_interval_ms.max(1);
    config.bridge.queue_limit = args.queue;
    config.bridge.conflate = conflate;
    config.bridge.max_queue_age_ms = args.max_queue_age_ms;
    config.bridge.topics = serial::TopicMap::new(args.topic_prefix, args.remap);

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("serial-gateway: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", config.backplane.banner());
    println!("Device: {} (baud {})", config.device, config.baud);
    let result = serial::run(config, &stop);
    if let Err(e) = &result {
        log::error!("serial-gateway: {e}");
    }
    logging::flush(Duration::from_secs(1));
    if result.is_err() {
        std::process::exit(1);
    }
}
