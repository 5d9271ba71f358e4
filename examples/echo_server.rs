//! Echo server (Banyan's `simple_echo_server.py`): replies to every `echo`
//! message with a `reply` carrying the same payload.
//!
//! ```sh
//! cargo run -p banyan-cli --bin banyan -- backplane  # terminal 1
//! cargo run --example echo_server                   # terminal 2
//! cargo run --example echo_client -- -n 10          # terminal 3
//! ```

use std::ops::ControlFlow;
use std::time::Duration;

use clap::Parser;

mod common;

/// Replies to `echo` messages with `reply`.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backplane: common::Backplane,
    /// Print each message number.
    #[arg(short = 'v')]
    verbose: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stop = common::stop_flag()?;
    let mut server = args.backplane.connect("EchoServer")?;
    server.subscribe("echo")?;
    println!("echo server ready");
    let mut replier_known = false;
    server.run_until(&stop, |c, msg| {
        if args.verbose {
            if let Ok(v) = msg.value() {
                println!("Message number: {}", v["message_number"]);
            }
        }
        // Before the first reply, make sure someone's `reply` subscription
        // has reached us (then it is in the backplane too), so the reply is
        // not lost to the "slow joiner" effect and the client never has to
        // ask twice.
        if !replier_known {
            match c.wait_for_subscriber("reply", Duration::from_secs(5)) {
                Ok(true) => replier_known = true,
                Ok(false) => eprintln!("nobody subscribed to `reply` within 5 s: replying anyway"),
                Err(e) => eprintln!("cannot wait for a `reply` subscriber: {e}"),
            }
        }
        // Same payload bytes back, like Banyan's publish_payload(payload, 'reply').
        if let Err(e) = c.publish_raw("reply", &msg.payload) {
            eprintln!("cannot reply: {e}");
        }
        ControlFlow::Continue(())
    })?;
    let stats = server.stats();
    println!(
        "echo server exiting: {} received, {} sent, {} rejected",
        stats.received, stats.sent, stats.rejected
    );
    Ok(())
}
