//! JSON payloads on the command line ↔ MessagePack on the wire.
//!
//! `banyan pub` turns JSON into MessagePack the way Python's
//! `msgpack.packb(json.loads(text), use_bin_type=True)` would: objects are
//! maps with string keys, integers stay integers (unsigned when ≥ 0), other
//! numbers are 64-bit floats. `banyan sub --json` turns them back with
//! [`banyan_component::monitor::to_json`], so a `pub` → `sub --json` round
//! trip gives the same JSON value.

use std::time::{SystemTime, UNIX_EPOCH};

use banyan_component::monitor::{self, Format};
use banyan_component::wire::Message;

/// MessagePack value of a JSON value.
pub fn to_msgpack(v: &serde_json::Value) -> rmpv::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        J::Null => M::Nil,
        J::Bool(b) => M::Boolean(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                M::from(u)
            } else if let Some(i) = n.as_i64() {
                M::from(i)
            } else {
                M::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => M::from(s.as_str()),
        J::Array(items) => M::Array(items.iter().map(to_msgpack).collect()),
        J::Object(map) => M::Map(
            map.iter()
                .map(|(k, v)| (M::from(k.as_str()), to_msgpack(v)))
                .collect(),
        ),
    }
}

/// Parses a JSON payload given on the command line or a stdin line.
///
/// # Errors
/// The parser's message (line and column).
pub fn parse(text: &str) -> Result<rmpv::Value, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| to_msgpack(&v))
        .map_err(|e| e.to_string())
}

/// A MessagePack value as compact JSON text.
pub fn display(v: &rmpv::Value) -> String {
    monitor::to_json(v, &Format::default()).to_string()
}

/// Seconds since the Unix epoch, as a float with microseconds.
pub fn unix_time(at: SystemTime) -> f64 {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_micros() as f64) / 1e6
}

/// The `sub --json` line of a message:
/// `{"time": UNIX_SECONDS, "topic": "…", "payload": JSON}`.
pub fn message_line(at: SystemTime, m: &Message, format: &Format) -> String {
    let payload = match m.value() {
        Ok(v) => monitor::to_json(&v, format),
        Err(e) => serde_json::Value::String(format!("<undecodable: {e}>")),
    };
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), unix_time(at).into());
    obj.insert("topic".into(), m.topic.clone().into());
    obj.insert("payload".into(), payload);
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_msgpack() {
        let text = r#"{"a":1,"neg":-5,"f":1.5,"s":"x","l":[true,null],"m":{"k":0.25}}"#;
        let v = parse(text).unwrap();
        let bytes = banyan_component::wire::encode_value(&v);
        let m = Message::new("t", bytes);
        let line = message_line(UNIX_EPOCH, &m, &Format::default());
        assert_eq!(
            line,
            format!(r#"{{"time":0.0,"topic":"t","payload":{text}}}"#)
        );
    }

    #[test]
    fn like_python_packb() {
        // {'value': 1} -> 81 a5 76616c7565 01
        let v = parse(r#"{"value": 1}"#).unwrap();
        assert_eq!(
            banyan_component::wire::encode_value(&v),
            [0x81, 0xa5, b'v', b'a', b'l', b'u', b'e', 0x01]
        );
        assert!(parse("{oops").is_err());
    }
}
