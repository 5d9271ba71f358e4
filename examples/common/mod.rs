//! What the examples share: the backplane flags of every Banyan component
//! and connecting with them, and a stop flag set by Ctrl-C or SIGTERM.
//! (A folder without `main.rs`, so cargo does not take it for an example.)

#![allow(dead_code, reason = "each example uses the part it needs")]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use banyan::component::locate::{Options, Spec};
use banyan::component::{Component, Config};

/// Where the backplane is: `-b`, `--backplane-name`, `-p`, `-s`, as for the
/// `banyan` command's components.
#[derive(clap::Args)]
pub struct Backplane {
    /// Backplane: an IP address or host name, or a backplane's name in the
    /// discovery pool (default: the only backplane there, else 127.0.0.1).
    #[arg(short = 'b')]
    backplane: Option<String>,
    /// A backplane's name in the discovery pool.
    #[arg(long = "backplane-name", conflicts_with = "backplane")]
    backplane_name: Option<String>,
    /// Backplane publisher port (default 43124, or the found backplane's).
    #[arg(short = 'p')]
    publisher_port: Option<u16>,
    /// Backplane subscriber port (default 43125, or the found backplane's).
    #[arg(short = 's')]
    subscriber_port: Option<u16>,
}

impl Backplane {
    /// Finds the backplane and connects a component called `name` to it,
    /// then prints the component's banner.
    pub fn connect(&self, name: &str) -> Result<Component, Box<dyn std::error::Error>> {
        // -b ADDR as in Python Banyan, -b NAME / --backplane-name through the
        // discovery pool, nothing: the only backplane there (docs/discovery.md).
        let spec = Spec::from_args(self.backplane.as_deref(), self.backplane_name.as_deref())?;
        let mut config = Config::default();
        config.name = name.into();
        config.locate(
            &spec,
            &Options::with_ports(self.publisher_port, self.subscriber_port),
        )?;
        let component = Component::connect(config)?;
        println!("{}", component.config().banner());
        Ok(component)
    }
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets, for `run_until`.
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    Ok(stop)
}
