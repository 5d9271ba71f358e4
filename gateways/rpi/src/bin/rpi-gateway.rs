//! `rpi-gateway`: drives a Raspberry Pi's GPIO (motors, LEDs, OneGPIO
//! commands) from the backplane. Off a Pi, or with `--sim`, it simulates the
//! pins. See `docs/rpi-gateway.md`.
//!
//! Everything it prints goes through the non-blocking log sink
//! (`banyan_component::logging`), so a blocked stderr never blocks the
//! control loop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_component::{self as component, logging, Component};
use banyan_rpi::backend::{self, Backend, Selected};
use banyan_rpi::config::Config;
use banyan_rpi::gateway::Gateway;
use banyan_rpi::run;
use clap::Parser;

/// The config file used when `--config` is not given, if it exists.
const SYSTEM_CONFIG: &str = "/etc/banyan/rpi-gateway.toml";

/// Raspberry Pi GPIO gateway for the Banyan backplane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Backplane IP address (default: the config's backplane.address).
    #[arg(short = 'b', long = "backplane")]
    backplane_ip: Option<String>,
    /// Backplane publisher port (default: the config's, 43124).
    #[arg(short = 'p', long = "publisher-port")]
    publisher_port: Option<u16>,
    /// Backplane subscriber port (default: the config's, 43125).
    #[arg(short = 's', long = "subscriber-port")]
    subscriber_port: Option<u16>,
    /// TOML config file (default: /etc/banyan/rpi-gateway.toml if present,
    /// else the built-in default robot).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Gateway name (banner, logs), as Python Banyan's `-n`.
    #[arg(short = 'n', long = "name", default_value = "rpi-gateway")]
    name: String,
    /// Prefix every topic of the config's `[topics]` with this, e.g.
    /// `robot1/` subscribes to `robot1/run_motors` and reports on
    /// `robot1/from_rpi_gateway`, so several robots share one backplane.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Simulate the pins even on a Raspberry Pi.
    #[arg(long)]
    sim: bool,
    /// Log every simulated pin change to stderr (sim backend).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Check the config, print it and exit.
    #[arg(long)]
    check_config: bool,
}

fn load_config(args: &Args) -> Result<Config, String> {
    let cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None if std::path::Path::new(SYSTEM_CONFIG).exists() => {
            log::info!("rpi-gateway: config {SYSTEM_CONFIG}");
            Config::load(SYSTEM_CONFIG.as_ref()).map_err(|e| e.to_string())?
        }
        None => {
            log::info!("rpi-gateway: no --config; using the built-in default robot");
            Config::default()
        }
    };
    let mut cfg = cfg;
    if let Some(p) = &args.topic_prefix {
        let t = &mut cfg.topics;
        for topic in [
            &mut t.run_motors,
            &mut t.light_leds,
            &mut t.commands,
            &mut t.reports,
        ] {
            topic.insert_str(0, p);
        }
    }
    Ok(cfg)
}

fn serve<B: Backend>(backend: B, cfg: Config, args: &Args) -> Result<(), String> {
    let mut cc = component::Config::new(
        args.backplane_ip
            .clone()
            .unwrap_or_else(|| cfg.backplane.address.clone()),
        args.publisher_port.unwrap_or(cfg.backplane.publisher_port),
        args.subscriber_port
            .unwrap_or(cfg.backplane.subscriber_port),
    );
    cc.name = args.name.clone();
    cc.conflate = vec![cfg.topics.run_motors.clone()];
    let mut gw = Gateway::new(backend, cfg, Instant::now()).map_err(|e| e.to_string())?;
    let mut comp = Component::connect(cc).map_err(|e| e.to_string())?;
    // The banner on stdout, as Python Banyan does.
    println!("{}", comp.config().banner());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let result = run::run(&mut gw, &mut comp, &stop).map_err(|e| e.to_string());
    log::info!("rpi-gateway: stopped; outputs in safe state");
    result
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Everything goes to stderr through the non-blocking sink; -v adds the
    // simulated pin changes; RUST_LOG overrides the level.
    let level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    if let Err(e) = logging::init(logging::Config::from_env(level)) {
        eprintln!("rpi-gateway: {e}");
    }
    let code = main_inner(&args);
    // The last lines (safe state); give up if stderr is stuck.
    logging::flush(Duration::from_secs(1));
    code
}

fn main_inner(args: &Args) -> ExitCode {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            log::error!("rpi-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{cfg:#?}");
        return ExitCode::SUCCESS;
    }
    let result = match backend::select(args.sim) {
        Ok(Selected::Sim(b)) => {
            b.board().set_echo(args.verbose);
            serve(b, cfg, args)
        }
        Ok(Selected::Rppal(b)) => serve(b, cfg, args),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("rpi-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
