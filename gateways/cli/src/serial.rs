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
    /// A control topic: of a backlog of commands on it only the newest is
    /// forwarded, and a queued one is replaced by a newer one (repeatable;
    /// backplane names). Default: run_motors. `--conflate ''` turns it off.
    #[arg(long = "conflate", default_values_t = ["run_motors".to_string()])]
    pub conflate: Vec<String>,
    /// Drop a command on a --conflate topic that waited this long (ms) for
    /// device credit instead of sending it late (other messages wait, up to
    /// --queue of them).
    #[arg(long, default_value_t = 250)]
    pub max_queue_age_ms: u64,
    /// Prefix for the device's topics on the backplane, e.g. `robot1/`: the
    /// device's `run_motors` is the backplane's `robot1/run_motors`.
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// Map device topics starting with FROM to backplane topics starting
    /// with TO (repeatable, tried in order, before --topic-prefix).
    #[arg(long = "remap", value_name = "FROM=TO", value_parser = parse_remap)]
    pub remap: Vec<(String, String)>,
    /// The services broker's port on the backplane host: the services the
    /// device declares are served there (docs/services.md).
    #[arg(long = "services-port", value_name = "PORT",
          default_value_t = banyan_services::broker::DEFAULT_PORT)]
    pub services_port: u16,
    /// Do not offer the device's services on the broker.
    #[arg(long)]
    pub no_services: bool,
    /// Broker name prefix of the device's services (default: the device's
    /// name and a dot, e.g. `qemu-bot.info`).
    #[arg(long, value_name = "PREFIX")]
    pub service_prefix: Option<String>,
    /// Do not announce the gateway and its device in the discovery pool
    /// (`banyan ls` then does not list them).
    #[arg(long)]
    pub no_discovery: bool,
    /// Python Banyan's loop time; accepted for compatibility and ignored.
    #[arg(short = 't', hide = true)]
    pub loop_time: Option<String>,
}

fn parse_remap(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| format!("expected FROM=TO, got {s:?}"))
}

/// Runs the gateway until SIGINT/SIGTERM.
///
/// # Errors
/// Backplane configuration errors.
pub fn run(args: Args) -> Result<()> {
    let stop = output::stop_flag()?;
    let mut backplane: component::Config = args.connect.config(&args.name)?;
    let conflate: Vec<String> = args
        .conflate
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    backplane.conflate = conflate.clone();
    let mut config = serial::Config::new(backplane, args.device);
    config.baud = args.baud;
    config.discovery = !args.no_discovery;
    config.bridge.name = args.name;
    config.bridge.status_topic = args.status_topic;
    config.bridge.status_interval_ms = args.status_interval_ms.max(1);
    config.bridge.queue_limit = args.queue;
    config.bridge.conflate = conflate;
    config.bridge.max_queue_age_ms = args.max_queue_age_ms;
    config.bridge.topics = serial::TopicMap::new(args.topic_prefix, args.remap);
    config.bridge.service_prefix = args.service_prefix;
    if !args.no_services {
        config.services = Some(format!(
            "tcp://{}:{}",
            config.backplane.address, args.services_port
        ));
    }
    output::note(&format!(
        "{}; device {} (baud {})",
        crate::args::banner_line(&config.backplane),
        config.device,
        config.baud
    ));
    serial::run(config, &stop).map_err(|e| Failure::new(1, e.to_string()))
}
