//! Notifier (Banyan's `notifier.py` from the multi-backplane tutorial):
//! prints every `notice` message.
//!
//! ```sh
//! cargo run --example notifier -- -p 43126 -s 43127   # on the second backplane
//! ```

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use banyan::component::{Component, Config};
use clap::Parser;

/// Prints `notice` messages.
#[derive(Parser)]
struct Args {
    /// Backplane address.
    #[arg(short = 'b', default_value = "127.0.0.1")]
    backplane: String,
    /// Backplane publisher port.
    #[arg(short = 'p', default_value_t = 43124)]
    publisher_port: u16,
    /// Backplane subscriber port.
    #[arg(short = 's', default_value_t = 43125)]
    subscriber_port: u16,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let mut config = Config::new(args.backplane, args.publisher_port, args.subscriber_port);
    config.name = "Notifier".into();
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
