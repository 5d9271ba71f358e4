//! Echo server (Banyan's `simple_echo_server.py`): replies to every `echo`
//! message with a `reply` carrying the same payload.
//!
//! ```sh
//! cargo run -p banyan-cli --bin banyan -- backplane  # terminal 1
//! cargo run --example echo_server                   # terminal 2
//! cargo run --example echo_client -- -n 10          # terminal 3
//! ```

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use banyan::component::locate::{Options, Spec};
use banyan::component::{Component, Config};
use clap::Parser;

/// Replies to `echo` messages with `reply`.
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
    /// Print each message number.
    #[arg(short = 'v')]
    verbose: bool,
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
    config.name = "EchoServer".into();
    config.locate(
        &spec,
        &Options::with_ports(args.publisher_port, args.subscriber_port),
    )?;
    let mut server = Component::connect(config)?;
    println!("{}", server.config().banner());
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
