//! `banyan rpi-gateway`: drives a Raspberry Pi's GPIO (motors, LEDs,
//! OneGPIO commands) from the backplane. Off a Pi, or with `--sim`, it
//! simulates the pins. See `docs/rpi-gateway.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use banyan_component::Component;
use banyan_rpi::backend::{self, Backend, Selected};
use banyan_rpi::config::Config;
use banyan_rpi::gateway::Gateway;

use crate::output::{self, Failure, Result};

/// The config file used when `--config` is not given, if it exists.
pub const SYSTEM_CONFIG: &str = "/etc/banyan/rpi-gateway.toml";

/// Flags of `banyan rpi-gateway`. `-b`, `-p` and `-s` override the config
/// file's `[backplane]` table.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("backplane", |a| a.help(
    "Backplane: an IP address or host name, or the name of a backplane in the discovery \
     pool (default: the config's backplane.address, read the same way; never \"whichever \
     backplane is there\": this gateway drives motors)"
)))]
pub struct Args {
    /// Which backplane (`-b`, `--backplane-name`): unlike other
    /// components, the default is the config's backplane.address, read the
    /// same way, never "whichever backplane is there": this gateway drives
    /// motors.
    #[command(flatten)]
    pub which: crate::args::Which,
    /// The backplane's publisher port (default: the config's, 43124).
    #[arg(short = 'p', long = "publisher-port", value_name = "PORT")]
    pub publisher_port: Option<u16>,
    /// The backplane's subscriber port (default: the config's, 43125).
    #[arg(short = 's', long = "subscriber-port", value_name = "PORT")]
    pub subscriber_port: Option<u16>,
    /// Name of this gateway (banner, logs).
    #[arg(short = 'n', long = "name", default_value = "rpi-gateway")]
    pub name: String,
    /// TOML config file (default: /etc/banyan/rpi-gateway.toml if present,
    /// else the built-in default robot).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Prefix every topic of the config's `[topics]` with this, e.g.
    /// `robot1/` subscribes to `robot1/run_motors` and reports on
    /// `robot1/from_rpi_gateway`, so several robots share one backplane.
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// The services broker's port on the backplane host: `state`, `status`,
    /// `i2c_read` and `digital_read` are served there as `<name>.state` etc.
    /// (docs/rpi-gateway.md, "Services").
    #[arg(long = "services-port", value_name = "PORT",
          default_value_t = banyan_services::broker::DEFAULT_PORT)]
    pub services_port: u16,
    /// Do not serve the gateway's services on the broker.
    #[arg(long)]
    pub no_services: bool,
    /// Simulate the pins even on a Raspberry Pi.
    #[arg(long)]
    pub sim: bool,
    /// Check the config, print it (TOML) and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Loads the config named by the flags; errors name the file.
fn load(args: &Args) -> Result<(Config, Option<PathBuf>)> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None if Path::new(SYSTEM_CONFIG).exists() => Some(PathBuf::from(SYSTEM_CONFIG)),
        None => None,
    };
    let Some(path) = path else {
        log::info!(target: "banyan", "no --config: using the built-in default robot");
        return Ok((Config::default(), None));
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        // Read errors name the file already.
        Err(e @ banyan_rpi::config::Error::Read { .. }) => {
            return Err(Failure::usage(e.to_string()))
        }
        Err(e) => return Err(Failure::usage(format!("{}: {e}", path.display()))),
    };
    log::info!(target: "banyan", "config {}", path.display());
    if cfg.motors.is_empty() && cfg.leds.is_empty() {
        log::warn!(
            "{}: no [motors.*] and no [leds.*]: run_motors and light_leds will do nothing \
             (only OneGPIO commands work); see deploy/rpi-gateway.toml",
            path.display()
        );
    }
    Ok((cfg, Some(path)))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// The config as TOML text (what `--check-config` prints; it loads back to
/// the same config).
pub fn config_toml(cfg: &Config) -> String {
    let mut s = String::new();
    let b = &cfg.backplane;
    let t = &cfg.topics;
    let sa = &cfg.safety;
    let _ = writeln!(s, "[backplane]");
    let _ = writeln!(s, "address = {}", quote(&b.address));
    let _ = writeln!(s, "publisher_port = {}", b.publisher_port);
    let _ = writeln!(s, "subscriber_port = {}", b.subscriber_port);
    let _ = writeln!(s, "\n[topics]");
    let _ = writeln!(s, "run_motors = {}", quote(&t.run_motors));
    let _ = writeln!(s, "light_leds = {}", quote(&t.light_leds));
    let _ = writeln!(s, "commands = {}", quote(&t.commands));
    let _ = writeln!(s, "reports = {}", quote(&t.reports));
    let _ = writeln!(s, "\n[safety]");
    let _ = writeln!(s, "deadman_timeout_ms = {}", sa.deadman_timeout_ms);
    let _ = writeln!(s, "state_interval_ms = {}", sa.state_interval_ms);
    let _ = writeln!(s, "max_run_ms = {}", sa.max_run_ms);
    for (name, m) in &cfg.motors {
        let _ = writeln!(s, "\n[motors.{}]", key(name));
        let _ = writeln!(s, "pwm = {}", m.pwm);
        let _ = writeln!(s, "in1 = {}", m.in1);
        let _ = writeln!(s, "in2 = {}", m.in2);
        let _ = writeln!(s, "invert = {}", m.invert);
        let _ = writeln!(s, "max_duty = {:?}", m.max_duty);
        let _ = writeln!(s, "pwm_frequency_hz = {}", m.pwm_frequency_hz);
    }
    for (name, l) in &cfg.leds {
        let _ = writeln!(s, "\n[leds.{}]", key(name));
        let _ = writeln!(s, "pin = {}", l.pin);
        let _ = writeln!(s, "pwm = {}", l.pwm);
        let _ = writeln!(s, "active_low = {}", l.active_low);
    }
    s
}

fn serve<B: Backend>(backend: B, cfg: Config, args: &Args) -> Result<()> {
    let stop = output::stop_flag()?;
    use banyan_component::locate::{Options, Spec};
    let spec = match (&args.which.backplane, &args.which.backplane_name) {
        (None, None) => Spec::parse(&cfg.backplane.address),
        (b, n) => Spec::from_args(b.as_deref(), n.as_deref())
            .map_err(|e| Failure::usage(e.to_string()))?,
    };
    let mut cc = banyan_component::Config::default();
    cc.name = args.name.clone();
    cc.locate(
        &spec,
        &Options::with_ports(
            Some(args.publisher_port.unwrap_or(cfg.backplane.publisher_port)),
            Some(
                args.subscriber_port
                    .unwrap_or(cfg.backplane.subscriber_port),
            ),
        ),
    )
    .map_err(|e| Failure::new(1, format!("backplane: {e}")))?;
    // Of a backlog of run_motors only the newest counts (fresh commands).
    cc.conflate = vec![cfg.topics.run_motors.clone()];
    let mut gw =
        Gateway::new(backend, cfg, Instant::now()).map_err(|e| Failure::new(1, e.to_string()))?;
    let mut comp = Component::connect(cc).map_err(crate::args::component_error)?;
    output::note(&crate::args::banner_line(comp.config()));
    let mut relay = if args.no_services {
        None
    } else {
        let endpoint = format!("tcp://{}:{}", comp.config().address, args.services_port);
        let mut relay =
            banyan_services::relay::Relay::new(banyan_services::worker::Config::new(endpoint))
                .map_err(|e| Failure::new(1, format!("services: {e}")))?;
        banyan_rpi::run::register_services(&mut relay, &format!("{}.", args.name))
            .map_err(|e| Failure::new(1, format!("services: {e} (or --no-services)")))?;
        Some(relay)
    };
    let result = banyan_rpi::run::run_with_services(&mut gw, &mut comp, &stop, relay.as_mut());
    output::note("stopped; outputs in safe state");
    result.map_err(crate::args::component_error)
}

/// Runs the gateway (or checks its config).
///
/// # Errors
/// Config errors (exit 2, naming the file), GPIO or backplane failures.
pub fn run(args: Args, verbose: bool) -> Result<()> {
    let (mut cfg, _path) = load(&args)?;
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
    if args.check_config {
        return output::write_stdout(config_toml(&cfg).as_bytes());
    }
    match backend::select(args.sim).map_err(|e| Failure::new(1, e.to_string()))? {
        Selected::Sim(b) => {
            b.board().set_echo(verbose);
            serve(b, cfg, &args)
        }
        Selected::Rppal(b) => serve(b, cfg, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_dump_is_toml_that_loads_back() {
        let cfg = Config::default();
        let text = config_toml(&cfg);
        assert!(text.contains("[motors.left]\npwm = 18\n"), "{text}");
        assert!(!text.contains("Config {"), "{text}");
        assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
    }
}
