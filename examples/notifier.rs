//! Notifier (Banyan's `notifier.py` from the multi-backplane tutorial):
//! prints every `notice` message.
//!
//! ```sh
//! cargo run --example notifier -- -p 43126 -s 43127   # on the second backplane
//! ```

use std::ops::ControlFlow;

use clap::Parser;

mod common;

/// Prints `notice` messages.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backplane: common::Backplane,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stop = common::stop_flag()?;
    let mut notifier = args.backplane.connect("Notifier")?;
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
