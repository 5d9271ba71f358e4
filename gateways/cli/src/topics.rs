//! `banyan topics`: every topic on the backplane with its message and byte
//! rates, when it was last seen and how many subscribers it has.
//!
//! It subscribes to everything for `--duration` seconds and measures the
//! traffic itself. Subscriber counts come from the banyan-rs backplane: its
//! reports on `banyan_backplane` list each subscriber's prefixes (subscribing
//! to exactly that topic makes it send one at once), and a topic's count is
//! the number of subscribers with a prefix of it — not counting this
//! command. Topics that are subscribed to but silent are listed too.
//! Python Banyan's backplane (and `--engine libzmq`) do not report
//! subscribers: the column then shows `?`.

use banyan_component::monitor::printable_topic;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use banyan_component::{Component, Event};

use crate::args::{component_error, Connect};
use crate::output::{self, Failure, Result};

/// The backplane's stats topic.
const STATS: &str = banyan_backplane::STATS_TOPIC;

/// Flags of `banyan topics`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the backplane is.
    #[command(flatten)]
    pub connect: Connect,
    /// Name of this component (logs).
    #[arg(short = 'n', long = "name", default_value = "topics")]
    pub name: String,
    /// Seconds to measure.
    #[arg(short = 'd', long, value_name = "SECONDS", default_value_t = 2.0)]
    pub duration: f64,
    /// One JSON object per topic: topic, msgs_per_s, bytes_per_s,
    /// last_seen_s (seconds ago, null if never), subscribers (null if unknown).
    #[arg(long)]
    pub json: bool,
    /// Measure again and again, printing a table each time.
    #[arg(long)]
    pub watch: bool,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The topic.
    pub topic: String,
    /// Messages per second over the measurement.
    pub msgs_per_s: f64,
    /// Payload bytes per second over the measurement.
    pub bytes_per_s: f64,
    /// Seconds since the last message, `None` if none was seen.
    pub last_seen_s: Option<f64>,
    /// Subscribers (others than this command), `None` if the backplane
    /// does not say.
    pub subscribers: Option<usize>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    msgs: u64,
    bytes: u64,
    last: Option<Instant>,
}

/// Each subscriber's prefixes from a stats report, or `None` when the
/// report has no `subscribers` field.
pub fn subscribers_of(report: &rmpv::Value) -> Option<Vec<Vec<Vec<u8>>>> {
    let rmpv::Value::Map(fields) = report else {
        return None;
    };
    let list = fields
        .iter()
        .find(|(k, _)| k.as_str() == Some("subscribers"))?
        .1
        .as_array()?;
    Some(
        list.iter()
            .map(|s| {
                s.as_array()
                    .map(|prefixes| {
                        prefixes
                            .iter()
                            .filter_map(|p| match p {
                                rmpv::Value::String(s) => Some(s.as_bytes().to_vec()),
                                rmpv::Value::Binary(b) => Some(b.clone()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect(),
    )
}

/// This command's subscriptions, as the backplane lists them (sorted).
const OWN: [&[u8]; 2] = [b"", STATS.as_bytes()];

/// The table rows from the traffic seen over `window` and the backplane's
/// subscriber lists (this command's own entry, [`OWN`], is removed).
fn rows(
    traffic: &BTreeMap<String, Traffic>,
    subscribers: Option<&[Vec<Vec<u8>>]>,
    window: Duration,
    now: Instant,
) -> Vec<Row> {
    let mut others: Option<Vec<&Vec<Vec<u8>>>> = subscribers.map(|s| s.iter().collect());
    if let Some(list) = others.as_mut() {
        if let Some(me) = list
            .iter()
            .position(|p| p.iter().map(Vec::as_slice).eq(OWN))
        {
            list.remove(me);
        }
    }
    let mut topics: BTreeMap<String, Traffic> = traffic.clone();
    // Silent topics someone subscribes to (not the catch-all "").
    for prefixes in others.iter().flatten() {
        for p in prefixes.iter().filter(|p| !p.is_empty()) {
            topics
                .entry(String::from_utf8_lossy(p).into_owned())
                .or_default();
        }
    }
    let secs = window.as_secs_f64().max(1e-9);
    topics
        .into_iter()
        .map(|(topic, t)| Row {
            subscribers: others.as_ref().map(|list| {
                list.iter()
                    .filter(|prefixes| prefixes.iter().any(|p| topic.as_bytes().starts_with(p)))
                    .count()
            }),
            msgs_per_s: t.msgs as f64 / secs,
            bytes_per_s: t.bytes as f64 / secs,
            last_seen_s: t
                .last
                .map(|l| now.saturating_duration_since(l).as_secs_f64()),
            topic,
        })
        .collect()
}

fn human_bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.1} MB/s", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB/s", b / 1e3)
    } else {
        format!("{b:.0} B/s")
    }
}

/// The human table.
pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| printable_topic(&r.topic).chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut s = format!(
        "{:<width$}  {:>9}  {:>11}  {:>10}  {:>11}\n",
        "TOPIC", "MSGS/S", "BYTES/S", "LAST SEEN", "SUBSCRIBERS"
    );
    for r in rows {
        let last = r
            .last_seen_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s ago"));
        let subs = r
            .subscribers
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        s.push_str(&format!(
            "{:<width$}  {:>9.1}  {:>11}  {:>10}  {:>11}\n",
            printable_topic(&r.topic),
            r.msgs_per_s,
            human_bytes(r.bytes_per_s),
            last,
            subs
        ));
    }
    if rows.is_empty() {
        s.push_str("(no topics: nothing published or subscribed)\n");
    }
    s.pop();
    s
}

/// A row as one JSON object.
pub fn json_line(r: &Row) -> String {
    serde_json::json!({
        "topic": r.topic,
        "msgs_per_s": r.msgs_per_s,
        "bytes_per_s": r.bytes_per_s,
        "last_seen_s": r.last_seen_s,
        "subscribers": r.subscribers,
    })
    .to_string()
}

/// Measures and prints (once, or repeatedly with `--watch`).
///
/// # Errors
/// Bad flags, component failures, stdout errors other than a closed pipe.
pub fn run(args: Args) -> Result<()> {
    let stop = output::stop_flag()?;
    // A stdout nobody reads could block us past a stop signal.
    output::exit_after_stop(std::sync::Arc::clone(&stop), Duration::from_secs(3));
    let window = Duration::try_from_secs_f64(args.duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--duration must be seconds > 0, not {}",
                args.duration
            ))
        })?;
    let mut config = args.connect.config(&args.name)?;
    config.linger = Duration::ZERO;
    let mut component = Component::connect(config).map_err(component_error)?;
    // Everything; the stats topic itself asks the backplane for a report.
    component.subscribe("").map_err(component_error)?;
    component.subscribe(STATS).map_err(component_error)?;
    let mut out = output::Stdout::default();
    let mut subscribers: Option<Vec<Vec<Vec<u8>>>> = None;
    let mut warned_unknown = false;
    let result = (|| -> Result<()> {
        loop {
            let mut traffic: BTreeMap<String, Traffic> = BTreeMap::new();
            // The window starts when the backplane is connected.
            while component.link_state() != banyan_component::LinkState::Up {
                if output::stopped(&stop) {
                    return Ok(());
                }
                let _ = component
                    .recv_event(Some(Duration::from_millis(100)))
                    .map_err(component_error)?;
            }
            let start = Instant::now();
            let end = start + window;
            while !output::stopped(&stop) {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let wait = (end - now).min(Duration::from_millis(100));
                if let Some(Event::Message(m)) =
                    component.recv_event(Some(wait)).map_err(component_error)?
                {
                    let t = traffic.entry(m.topic.clone()).or_default();
                    t.msgs += 1;
                    t.bytes += m.payload.len() as u64;
                    t.last = Some(Instant::now());
                    if m.topic == STATS {
                        if let Ok(v) = m.value() {
                            if let Some(s) = subscribers_of(&v) {
                                subscribers = Some(s);
                            }
                        }
                    }
                }
            }
            if output::stopped(&stop) {
                return Ok(());
            }
            if subscribers.is_none() && !warned_unknown {
                warned_unknown = true;
                log::warn!(
                    "the backplane did not report its subscribers (Python Banyan's backplane \
                     and `--engine libzmq` do not): subscriber counts unknown"
                );
            }
            let rows = rows(
                &traffic,
                subscribers.as_deref(),
                Instant::now() - start,
                Instant::now(),
            );
            if args.json {
                for r in &rows {
                    out.line(&json_line(r))?;
                }
            } else {
                out.line(&table(&rows))?;
            }
            if !args.watch {
                return out.flush();
            }
            out.line("")?;
            out.flush()?;
            // Ask for a fresh subscriber list for the next round.
            component.unsubscribe(STATS).map_err(component_error)?;
            component.subscribe(STATS).map_err(component_error)?;
        }
    })();
    output::quiet_ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_other_subscribers_and_list_silent_topics() {
        let t0 = Instant::now();
        let mut traffic = BTreeMap::new();
        traffic.insert(
            "run_motors".to_owned(),
            Traffic {
                msgs: 20,
                bytes: 400,
                last: Some(t0),
            },
        );
        let subs = vec![
            vec![b"".to_vec(), STATS.as_bytes().to_vec()], // this command
            vec![b"run_motors".to_vec(), b"light".to_vec()], // a gateway
            vec![b"".to_vec()],                            // a monitor
        ];
        let r = rows(&traffic, Some(&subs), Duration::from_secs(2), t0);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].topic, "light");
        assert_eq!(r[0].subscribers, Some(2));
        assert_eq!(r[0].last_seen_s, None);
        assert_eq!(r[1].topic, "run_motors");
        assert_eq!(r[1].msgs_per_s, 10.0);
        assert_eq!(r[1].bytes_per_s, 200.0);
        assert_eq!(r[1].subscribers, Some(2));
        let unknown = rows(&traffic, None, Duration::from_secs(2), t0);
        assert_eq!(unknown[0].subscribers, None);
        let text = table(&r);
        assert!(text.starts_with("TOPIC"), "{text}");
        assert!(text.contains("never"), "{text}");
    }

    #[test]
    fn subscriber_lists_are_read_from_reports() {
        let report = rmpv::Value::Map(vec![
            ("report".into(), "stats".into()),
            (
                "subscribers".into(),
                rmpv::Value::Array(vec![rmpv::Value::Array(vec!["a".into()])]),
            ),
        ]);
        assert_eq!(subscribers_of(&report), Some(vec![vec![b"a".to_vec()]]));
        assert_eq!(subscribers_of(&rmpv::Value::from(1)), None);
    }
}
