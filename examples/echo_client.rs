//! Echo client (Banyan's `simple_echo_client.py`): sends
//! `{"message_number": N}` on `echo`, and on each `reply` sends the next
//! number down to 0; prints when the reply to 0 arrives.
//!
//! Unlike Banyan's client it waits until its own `reply` subscription has
//! reached the backplane and the echo server's `echo` subscription has
//! reached it, and gives up with a clear message if no server appears. (The
//! server, for its part, waits for a `reply` subscriber before its first
//! reply.) So each request is sent exactly once and answered exactly once.

use std::time::{Duration, Instant};

use clap::Parser;

mod common;

/// Sends N echo requests and waits for the replies.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backplane: common::Backplane,
    /// Number of messages (message_number counts down from this to 0).
    #[arg(short = 'n', default_value_t = 10)]
    number_of_messages: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Echo {
    message_number: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut client = args.backplane.connect("EchoClient")?;
    client.subscribe("reply")?;
    // The backplane forwards subscriptions to every publisher, ours too: once
    // our own publisher sees `reply`, the backplane holds our subscription,
    // and no reply can be lost on its way to us.
    if !client.wait_for_subscriber("reply", Duration::from_secs(10))? {
        return Err(
            "our `reply` subscription did not reach the backplane within 10 s: is it running?"
                .into(),
        );
    }
    if !client.wait_for_subscriber("echo", Duration::from_secs(10))? {
        return Err("no echo server subscribed to `echo` within 10 s: start the backplane and echo_server first".into());
    }
    let start = Instant::now();
    let mut message_number = args.number_of_messages;
    client.publish("echo", &Echo { message_number })?;
    loop {
        let Some(reply) = client.recv_timeout(Duration::from_secs(10))? else {
            return Err(format!(
                "no reply (waiting for {message_number}): is the echo server running?"
            )
            .into());
        };
        let echo: Echo = match reply.decode() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("ignoring reply: {e}");
                continue;
            }
        };
        if echo.message_number == 0 {
            println!(
                "{} messages sent and received in {:.3} s.",
                args.number_of_messages,
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if echo.message_number == message_number {
            message_number -= 1;
            client.publish("echo", &Echo { message_number })?;
        }
    }
}
