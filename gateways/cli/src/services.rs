//! `banyan call`, `banyan services` and `banyan devices`: request/reply
//! through the backplane's service broker (docs/services.md) from the shell,
//! and ZeroMQ's queue and streamer devices.

use std::fmt::Write as _;
use std::time::Duration;

use banyan_services::broker::DEFAULT_PORT;
use banyan_services::{cli, devices};

use banyan_component::locate::Options;

use crate::args::Which;
use crate::output::{self, Failure, Result};

/// Where the broker is: in the backplane process, found like every
/// backplane (`-b`, `--backplane-name`, the pool).
#[derive(Debug, Clone, clap::Args)]
pub struct Broker {
    /// Which backplane.
    #[command(flatten)]
    pub which: Which,
    /// The broker's port. Default: what the backplane announces in the
    /// discovery pool, else 43126.
    #[arg(long = "services-port", value_name = "PORT")]
    pub services_port: Option<u16>,
    /// Give up after this many seconds (the request's deadline).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.5)]
    pub timeout: f64,
}

impl Broker {
    fn endpoint(&self) -> Result<String> {
        let at = self.which.locate(&Options::default())?;
        let port = self
            .services_port
            .or(at.services_port)
            .unwrap_or(DEFAULT_PORT);
        Ok(format!("tcp://{}:{port}", at.address))
    }

    fn timeout(&self) -> Result<Duration> {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Failure::usage(format!("--timeout must be > 0, not {}", self.timeout)))
    }
}

/// Flags of `banyan call`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub broker: Broker,
    /// The service name.
    pub service: String,
    /// The request body as JSON (a map, as on the bus).
    #[arg(default_value = "{}")]
    pub body: String,
}

/// Calls a service and prints the reply as one JSON line.
///
/// # Errors
/// Bad JSON (exit 2), the broker's error (unknown service, no workers,
/// timeout, …) or no answer within the deadline (exit 1).
pub fn call(args: CallArgs) -> Result<()> {
    let timeout = args.broker.timeout()?;
    let endpoint = args.broker.endpoint()?;
    let reply = cli::call(&endpoint, &args.service, &args.body, timeout)
        .map_err(|e| Failure::new(1, format!("{}: {e}", args.service)))?;
    output::write_stdout(format!("{reply}\n").as_bytes())
}

/// Flags of `banyan services`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub broker: Broker,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the services the broker knows with their workers.
///
/// # Errors
/// No broker answered within the deadline.
pub fn list(args: ListArgs) -> Result<()> {
    let timeout = args.broker.timeout()?;
    let endpoint = args.broker.endpoint()?;
    let list =
        cli::list(&endpoint, timeout).map_err(|e| Failure::new(1, format!("{endpoint}: {e}")))?;
    let mut out = String::new();
    if args.json {
        for s in &list {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"service": s.service, "workers": s.workers,
                                   "idle": s.idle, "queued": s.queued})
            );
        }
    } else {
        let _ = writeln!(
            out,
            "{:<32} {:>7} {:>5} {:>6}",
            "SERVICE", "WORKERS", "IDLE", "QUEUED"
        );
        for s in &list {
            let _ = writeln!(
                out,
                "{:<32} {:>7} {:>5} {:>6}",
                s.service, s.workers, s.idle, s.queued
            );
        }
    }
    output::write_stdout(out.as_bytes())
}

/// Which device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// ROUTER/DEALER: plain REQ clients on the front, REP workers on the back.
    Queue,
    /// PULL/PUSH: a pipeline stage.
    Streamer,
}

/// Flags of `banyan devices`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// The device.
    pub kind: Kind,
    /// Front endpoint to bind (clients / pushers), e.g. tcp://*:5559.
    #[arg(long, value_name = "ENDPOINT")]
    pub front: String,
    /// Back endpoint to bind (workers / pullers), e.g. tcp://*:5560.
    #[arg(long, value_name = "ENDPOINT")]
    pub back: String,
}

/// Runs a queue or streamer device until SIGINT/SIGTERM; prints its
/// counters at exit.
///
/// # Errors
/// The endpoints cannot be bound.
pub fn device(args: DeviceArgs) -> Result<()> {
    let stop = output::stop_flag()?;
    let config = devices::Config::new(args.front.clone(), args.back.clone());
    let device = match args.kind {
        Kind::Queue => devices::queue(&config),
        Kind::Streamer => devices::streamer(&config),
    }
    .map_err(|e| Failure::new(1, e.to_string()))?;
    output::note(&format!(
        "{:?} device: front {} back {}",
        args.kind, args.front, args.back
    ));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = device
        .shutdown()
        .map_err(|e| Failure::new(1, e.to_string()))?;
    let json = serde_json::to_string(&stats).unwrap_or_default();
    output::write_stdout(format!("{json}\n").as_bytes())
}
