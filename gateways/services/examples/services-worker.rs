//! A worker process for tests and demos: serves SERVICE on the broker at
//! ENDPOINT, answering `{"echo": <request body>, "worker": NAME}` after
//! DELAY_MS milliseconds, heartbeating every HEARTBEAT_MS. Prints `ready`
//! once started and `request N` as each request (of N bytes) arrives; runs
//! until killed (tests kill it, mid-request included).
//!
//! ```text
//! cargo run -p banyan-services --example services-worker -- tcp://127.0.0.1:43126 echo w1 0 1000
//! ```

use banyan_component::{safe_eprintln as eprintln, safe_println as println};
use std::time::Duration;

use banyan_services::worker::{serve, Config, Failure, Request};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, service, name, delay, hb] = &args[..] else {
        eprintln!("usage: services-worker ENDPOINT SERVICE NAME DELAY_MS HEARTBEAT_MS");
        std::process::exit(2);
    };
    let parse = |s: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("services-worker: {s:?} is not a number of milliseconds");
            std::process::exit(2)
        })
    };
    let delay = Duration::from_millis(parse(delay));
    let mut config = Config::new(endpoint.clone());
    config.heartbeat = Duration::from_millis(parse(hb));
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(500);
    let name = name.clone();
    let handle = serve(config, service, move |req: &Request| {
        println!("request {}", req.body.len());
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let body = req.value().map_err(|e| Failure::new(e.to_string()))?;
        Ok(rmpv::Value::Map(vec![
            ("echo".into(), body),
            ("worker".into(), name.as_str().into()),
        ]))
    });
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            eprintln!("services-worker: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    // Run until killed.
    loop {
        std::thread::park();
        let _ = handle.stats();
    }
}
