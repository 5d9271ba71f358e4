//! Who subscribes to what, in the statistics reports (native engine).
//!
//! Every report on [`crate::STATS_TOPIC`] from the native engine carries a
//! `subscribers` field: one array per connected subscriber, holding its
//! subscription prefixes (strings; a prefix that is not UTF-8 is sent as
//! `bin`), e.g. `"subscribers": [[""], ["run_motors", "light_leds"]]`. That
//! is what `banyan topics` counts subscribers from.
//!
//! A subscription to exactly [`crate::STATS_TOPIC`] is a request for a
//! report: one is sent at once, even if no counter changed, so a tool that
//! subscribes to the stats learns the current state without waiting for the
//! interval (`banyan topics` unsubscribes and subscribes again to ask again).
//! Reports are never sent when [`crate::Config::stats_interval`] is zero.

use std::time::Instant;

use crate::Reporter;

/// Appends the `subscribers` field to a report `value` (a map).
pub(crate) fn add_subscribers<'a, S, P>(value: &mut rmpv::Value, subscribers: S)
where
    S: Iterator<Item = P>,
    P: Iterator<Item = &'a [u8]>,
{
    let list = subscribers
        .map(|prefixes| {
            let mut v: Vec<rmpv::Value> = prefixes
                .map(|p| match std::str::from_utf8(p) {
                    Ok(s) => rmpv::Value::from(s),
                    Err(_) => rmpv::Value::Binary(p.to_vec()),
                })
                .collect();
            v.sort_by_key(ToString::to_string);
            rmpv::Value::Array(v)
        })
        .collect();
    if let rmpv::Value::Map(fields) = value {
        fields.push(("subscribers".into(), rmpv::Value::Array(list)));
    }
}

/// Notes a new subscription to `prefix`: when it is the stats topic, the
/// next report is due now, whether or not a counter changed.
pub(crate) fn subscribed(reporter: &mut Reporter, prefix: &[u8]) {
    if prefix != crate::STATS_TOPIC.as_bytes() {
        return;
    }
    if let Some(at) = reporter.next_report.as_mut() {
        *at = (*at).min(Instant::now());
        reporter.requested = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_field_lists_prefixes_per_subscriber() {
        let mut v = rmpv::Value::Map(vec![("report".into(), "stats".into())]);
        let subs: Vec<Vec<&[u8]>> = vec![vec![b"t", b""], vec![b"\xff"]];
        add_subscribers(&mut v, subs.iter().map(|s| s.iter().copied()));
        assert_eq!(
            v["subscribers"],
            rmpv::Value::Array(vec![
                rmpv::Value::Array(vec!["".into(), "t".into()]),
                rmpv::Value::Array(vec![rmpv::Value::Binary(vec![0xff])]),
            ])
        );
    }
}
