//! What the `banyan` command's service subcommands run: call a service with
//! a JSON body (`banyan call SERVICE JSON`) and list services and their
//! workers. JSON is converted to MessagePack like `json.loads` +
//! `msgpack.packb` would; replies come back as JSON in the monitor's
//! format (`bin` as `{"bin": hex, "len": n}`).

use std::time::Duration;

use banyan_component::monitor::{to_json, Format};

use crate::broker::ServiceInfo;
use crate::client::{Client, Config, Options};
use crate::error::{Error, Result};
use crate::proto;

fn request(endpoint: &str, service: &str, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
    let mut client = Client::connect(Config::new(endpoint))?;
    Ok(client
        .request_raw(service, body, Options::new(timeout))?
        .body)
}

/// Calls `service` on the broker at `endpoint` (e.g.
/// `tcp://127.0.0.1:43126`) with `json` as the body; returns the reply as
/// JSON.
///
/// # Errors
/// [`Error::Invalid`] when `json` does not parse, the broker's error
/// ([`Error::Service`]), [`Error::Timeout`].
pub fn call(
    endpoint: &str,
    service: &str,
    json: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::Invalid(format!("body is not JSON: {e}")))?;
    let body = rmp_serde::to_vec_named(&value)?;
    let reply = request(endpoint, service, body, timeout)?;
    let value = rmpv::decode::read_value(&mut &reply[..])
        .map_err(|e| Error::Invalid(format!("reply is not msgpack: {e}")))?;
    Ok(to_json(&value, &Format::default()))
}

/// The services the broker at `endpoint` knows, with their workers, idle
/// workers and queued requests, sorted by name.
///
/// # Errors
/// As [`call`].
pub fn list(endpoint: &str, timeout: Duration) -> Result<Vec<ServiceInfo>> {
    #[derive(serde::Deserialize)]
    struct List {
        services: Vec<ServiceInfo>,
    }
    let reply = request(endpoint, proto::SERVICE_LIST, vec![0x80], timeout)?;
    let list: List = rmp_serde::from_slice(&reply)?;
    Ok(list.services)
}

/// The broker's counters as JSON (`banyan.stats`).
///
/// # Errors
/// As [`call`].
pub fn stats(endpoint: &str, timeout: Duration) -> Result<serde_json::Value> {
    call(endpoint, proto::SERVICE_STATS, "{}", timeout)
}
