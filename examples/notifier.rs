//! Notifier (Banyan's `notifier.py` from the multi-backplane tutorial):
//! prints every `notice` message.
//!
//! ```sh
//! cargo run --example notifier -- -p 43126 -s 43127   # on the second backplane
//! ```

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use banyan::component::locate::{Options, Spec};
use banyan::component::{Component, Config};
use clap::Parser;

/// Prints `notice` messages.
#[derive(Parser)]
struct Args {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    // -b ADDR as in Python Banyan, -b NAME / --backplane-name through the
    // discovery pool, nothing: the only backplane there (docs/discovery.md).
    let spec = Spec::from_args(args.backplane.as_deref(), args.backplane_name.as_deref())?;
    let mut config = Config::default();
    config.name = "Notifier".into();
    config.locate(
        &spec,
        &Options::with_ports(args.publisher_port, args.subscriber_port),
    )?;
    let mut notifier = Component::connect(config)?;
    println!("{}", notifier.config().banner());
    notifier.subscribe("notice")?;
    println!("notifier ready");
    notifier.run_until(&stop, |_, msg| {
        match msg.value() {
            Ok(v) => println!("Notification Received! {v}"),
            Err(e) => println!("Notification Received! (undecodable: {e})"),
        }
        ControlFlow::Continue(())
    })?;
    Ok(())
}
