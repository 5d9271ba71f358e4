//! Multi-backplane echo server (Banyan's `multi_echo_server.py` from the
//! routing-spec tutorial): receives `echo` on BP1, replies on BP1, and when
//! message number 0 arrives sends a `notice` on BP2 (where the notifier
//! listens).
//!
//! ```sh
//! cargo run -p banyan-cli --bin banyan -- backplane -n BP1 --services-port 43128 # 43124/43125
//! cargo run -p banyan-cli --bin banyan -- backplane -n BP2 -p 43126 -s 43127 --services-port 43129
//! cargo run --example notifier -- -p 43126 -s 43127
//! cargo run --example multi_echo_server -- -f examples/multi_echo_spec.csv
//! cargo run --example echo_client
//! ```

use std::sync::atomic::Ordering;
use std::time::Duration;

use banyan::component::multi::{MultiComponent, Options};
use banyan::component::routing::Spec;
use clap::Parser;

mod common;

/// Echo server on two backplanes, configured by a routing spec.
#[derive(Parser)]
struct Args {
    /// Routing spec (CSV).
    #[arg(short = 'f', default_value = "examples/multi_echo_spec.csv")]
    spec: String,
}

#[derive(serde::Serialize)]
struct Notice<'a> {
    message: &'a str,
    id: &'a str,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stop = common::stop_flag()?;
    let spec = Spec::from_path(&args.spec)?;
    for e in &spec.entries {
        println!(
            "{}: {} subscriber port {:?} topics {:?}, publisher port {:?}",
            e.name, e.address, e.subscriber_port, e.topics, e.publisher_port
        );
    }
    let mut server = MultiComponent::connect(&spec, Options::default())?;
    println!("multi echo server ready");
    while !stop.load(Ordering::Relaxed) {
        let Some(received) = server.recv_timeout(Duration::from_millis(100))? else {
            continue;
        };
        if received.message.topic != "echo" {
            continue;
        }
        server.publish_raw_to("BP1", "reply", &received.message.payload)?;
        let number = received
            .message
            .value()
            .ok()
            .and_then(|v| v["message_number"].as_u64());
        println!("Message number: {number:?}");
        if number == Some(0) {
            // Give a notifier that has just started a moment to be heard of.
            if !server.wait_for_subscriber("BP2", "notice", Duration::from_secs(2))? {
                println!("(nobody on BP2 listens to `notice` yet)");
            }
            server.publish_to(
                "BP2",
                "notice",
                &Notice {
                    message: "got it",
                    id: "b",
                },
            )?;
        }
    }
    Ok(())
}
