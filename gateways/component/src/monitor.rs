//! What the `monitor` binary prints: one line per message, malformed
//! messages as diagnostic lines, and a periodic rate summary.
//!
//! Line formats (time is UTC, `HH:MM:SS.mmm`):
//!
//! ```text
//! 12:00:01.123 echo {"message_number":9}
//! 12:00:01.124 !! rejected: map key at byte 1 is not a str or bin; topic "bad"; 2 frames, 3 bytes; frames: 626164 810102
//! # 5.0 s: 12 msgs (2.4/s), 1 rejected; totals 40 received, 1 rejected
//! ```
//!
//! Payloads are shown as JSON: `bin` as `{"bin":"<hex>","len":N}` (the hex
//! cut after [`Format::bin_preview`] bytes), ext types as
//! `{"ext":T,"data":"<hex>"}`, `bin` map keys as their UTF-8 text (or
//! `0x<hex>`), non-finite floats as the strings `"NaN"`, `"inf"`, `"-inf"`.
//! With `raw`, the frames are shown as hex instead.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::{Message, Rejection};
use crate::Stats;

/// How to render messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Format {
    /// Show frame bytes as hex instead of JSON.
    pub raw: bool,
    /// Bytes of a `bin` value (or raw frame) shown before cutting. Default 64.
    pub bin_preview: usize,
    /// Longest payload text printed (characters) before cutting; 0 = no limit.
    /// Default 4096.
    pub max_width: usize,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            raw: false,
            bin_preview: 64,
            max_width: 4096,
        }
    }
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(bytes.len().min(max) * 2 + 8);
    for b in bytes.iter().take(max) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// Converts a MessagePack value to JSON for display (lossless for
/// everything JSON can express; see the [module docs](self) for the rest).
pub fn to_json(value: &rmpv::Value, format: &Format) -> serde_json::Value {
    use rmpv::Value as V;
    use serde_json::Value as J;
    match value {
        V::Nil => J::Null,
        V::Boolean(b) => J::Bool(*b),
        V::Integer(i) => {
            if let Some(u) = i.as_u64() {
                J::from(u)
            } else {
                J::from(i.as_i64().unwrap_or_default())
            }
        }
        V::F32(f) => float(f64::from(*f)),
        V::F64(f) => float(*f),
        V::String(s) => J::String(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        V::Binary(b) => serde_json::json!({"bin": hex(b, format.bin_preview), "len": b.len()}),
        V::Array(items) => J::Array(items.iter().map(|v| to_json(v, format)).collect()),
        V::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let key = match k {
                    V::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    V::Binary(b) => match std::str::from_utf8(b) {
                        Ok(s) => s.to_owned(),
                        Err(_) => format!("0x{}", hex(b, format.bin_preview)),
                    },
                    other => other.to_string(),
                };
                map.insert(key, to_json(v, format));
            }
            J::Object(map)
        }
        V::Ext(t, data) => serde_json::json!({"ext": t, "data": hex(data, format.bin_preview)}),
    }
}

fn float(f: f64) -> serde_json::Value {
    if f.is_finite() {
        serde_json::Value::from(f)
    } else if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// `HH:MM:SS.mmm` (UTC) for a point in time.
pub fn clock(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        d.subsec_millis()
    )
}

fn cut(mut s: String, max: usize) -> String {
    if max > 0 {
        if let Some((i, _)) = s.char_indices().nth(max) {
            let total = s.len();
            s.truncate(i);
            let _ = write!(s, "… ({total} bytes)");
        }
    }
    s
}

/// A topic as the human lines print it: control characters (terminal escape
/// sequences, line breaks), whitespace and `\\` are written as `\u{..}`
/// escapes, so a topic can neither drive the terminal nor forge a line or a
/// field. Other topics print unchanged.
pub fn printable_topic(topic: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || c.is_whitespace() || c == '\\';
    if !topic.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(topic);
    }
    let mut out = String::with_capacity(topic.len() + 8);
    for c in topic.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The line printed for a valid message.
pub fn message_line(at: SystemTime, message: &Message, format: &Format) -> String {
    let body = if format.raw {
        format!(
            "{} {}",
            hex(message.topic.as_bytes(), format.bin_preview),
            hex(&message.payload, format.bin_preview)
        )
    } else {
        match message.value() {
            Ok(v) => to_json(&v, format).to_string(),
            Err(e) => format!("<undecodable: {e}>"),
        }
    };
    format!(
        "{} {} {}",
        clock(at),
        printable_topic(&message.topic),
        cut(body, format.max_width)
    )
}

/// The diagnostic line printed for a rejected message.
pub fn rejection_line(at: SystemTime, rejection: &Rejection) -> String {
    let frames: Vec<String> = rejection
        .preview
        .iter()
        .map(|f| hex(f, Rejection::PREVIEW))
        .collect();
    format!(
        "{} !! rejected: {}; topic {:?}; {} frames, {} bytes; frames: {}",
        clock(at),
        rejection.reason,
        rejection.topic,
        rejection.frames,
        rejection.bytes,
        frames.join(" ")
    )
}

/// Counts messages between summaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    last: Stats,
}

impl Rate {
    /// The summary line for the period `elapsed` ending with counters `now`.
    pub fn summary(&mut self, elapsed: Duration, now: Stats) -> String {
        let msgs = now.received - self.last.received;
        let rejected = now.rejected - self.last.rejected;
        self.last = now;
        let secs = elapsed.as_secs_f64().max(1e-9);
        format!(
            "# {:.1} s: {msgs} msgs ({:.1}/s), {rejected} rejected; totals {} received, {} rejected",
            elapsed.as_secs_f64(),
            msgs as f64 / secs,
            now.received,
            now.rejected
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    #[test]
    fn json_display_of_all_types() {
        let v = Value::Map(vec![
            (Value::from("i"), Value::from(-5)),
            (Value::from("u"), Value::from(u64::MAX)),
            (Value::from("f"), Value::F64(1.5)),
            (Value::from("nan"), Value::F32(f32::NAN)),
            (Value::from("s"), Value::from("hi")),
            (Value::from("b"), Value::Binary(vec![0, 255])),
            (Value::from("n"), Value::Nil),
            (Value::from("a"), Value::Array(vec![Value::Boolean(true)])),
            (Value::Binary(b"nd".to_vec()), Value::Ext(1, vec![9])),
        ]);
        let json = to_json(&v, &Format::default()).to_string();
        assert_eq!(
            json,
            r#"{"i":-5,"u":18446744073709551615,"f":1.5,"nan":"NaN","s":"hi","b":{"bin":"00ff","len":2},"n":null,"a":[true],"nd":{"ext":1,"data":"09"}}"#
        );
    }

    #[test]
    fn long_bins_and_lines_are_cut() {
        let big = Message::new(
            "t",
            crate::wire::encode_value(&Value::Binary(vec![1; 1000])),
        );
        let line = message_line(UNIX_EPOCH, &big, &Format::default());
        assert!(line.starts_with("00:00:00.000 t {\"bin\":\"0101"), "{line}");
        assert!(line.contains("…\",\"len\":1000}"), "{line}");
        let fmt = Format {
            max_width: 10,
            ..Format::default()
        };
        let line = message_line(UNIX_EPOCH, &big, &fmt);
        assert!(line.ends_with("{\"bin\":\"01… (152 bytes)"), "{line}");
    }

    #[test]
    fn raw_and_rejection_lines() {
        let m = Message::new("t", vec![0x81, 0xa1, b'v', 0x01]);
        let fmt = Format {
            raw: true,
            ..Format::default()
        };
        assert_eq!(
            message_line(UNIX_EPOCH, &m, &fmt),
            "00:00:00.000 t 74 81a17601"
        );
        let frames: [&[u8]; 2] = [b"bad", &[0x81, 0x01, 0x02]];
        let r = Rejection::new(crate::wire::Reject::BadMapKey { at: 1 }, &frames);
        assert_eq!(
            rejection_line(UNIX_EPOCH, &r),
            "00:00:00.000 !! rejected: map key at byte 1 is not a str or bin; topic \"bad\"; 2 frames, 6 bytes; frames: 626164 810102"
        );
    }

    #[test]
    fn rate_summary() {
        let mut rate = Rate::default();
        let s = Stats {
            received: 10,
            rejected: 1,
            ..Stats::default()
        };
        assert_eq!(
            rate.summary(Duration::from_secs(2), s),
            "# 2.0 s: 10 msgs (5.0/s), 1 rejected; totals 10 received, 1 rejected"
        );
    }

    #[test]
    fn topics_cannot_drive_the_terminal_or_forge_lines() {
        assert_eq!(printable_topic("run_motors"), "run_motors");
        assert_eq!(printable_topic("héllo/✓"), "héllo/✓");
        assert_eq!(
            printable_topic("a\nb\u{1b}[31m c\\"),
            "a\\u{a}b\\u{1b}[31m\\u{20}c\\u{5c}"
        );
        let m = Message::new("x\n12:00:00.000 fake", vec![0xc0]);
        let line = message_line(UNIX_EPOCH, &m, &Format::default());
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("x\\u{a}12:00:00.000\\u{20}fake"), "{line}");
    }
}
