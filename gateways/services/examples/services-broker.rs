//! A standalone services broker (what the backplane runs beside its
//! forwarder), for tests, benchmarks and trying things out:
//!
//! ```text
//! cargo run -p banyan-services --example services-broker -- 43126 [native|libzmq]
//! ```
//!
//! Listens on 127.0.0.1:PORT (0 = any free port) on the ROUTER named (the
//! native one by default), prints `listening PORT`, then its counters every
//! second while they change; runs until killed.

use banyan_component::{safe_eprintln as eprintln, safe_println as println};
use std::time::Duration;

use banyan_services::broker::{spawn, SocketConfig};

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(banyan_services::broker::DEFAULT_PORT);
    let mut config = SocketConfig::new("127.0.0.1", port);
    if let Some(engine) = std::env::args().nth(2) {
        match engine.parse() {
            Ok(e) => config.engine = e,
            Err(e) => {
                eprintln!("services-broker: {e}");
                std::process::exit(2);
            }
        }
    }
    let handle = match spawn(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("services-broker: {e}");
            std::process::exit(1);
        }
    };
    println!("listening {}", handle.port());
    let mut last = (handle.stats(), handle.peer_stats());
    while handle.is_running() {
        std::thread::sleep(Duration::from_secs(1));
        let now = (handle.stats(), handle.peer_stats());
        if now != last {
            println!("{:?} {:?}", now.0, now.1);
            last = now;
        }
    }
}
