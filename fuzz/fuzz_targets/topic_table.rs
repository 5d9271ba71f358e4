//! `topic::Table`, `topic::Subscribers` and `topic::Index` operations
//! against a reference model (a plain `Vec` of counted entries), on
//! arbitrary byte topics.
//!
//! Input: records `op u8, len u8, topic[len]`. Every result (counts, errors,
//! `matches`, `matching`, iteration order, `len`/`is_full`) must equal the
//! model's. The growable `Index` gets every `Subscribers` operation that
//! succeeded (it has no capacity limits) and must hold the same
//! subscriptions, report the same union changes and match the same
//! subscribers (compared as sets: it is a hash table).
#![no_main]

use std::collections::BTreeSet;

use banyan_core::topic::{self, Error, Filter, Index, Subscribers, Table};
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/support/topic_model.rs"]
mod support;
use support::{SubsModel, TableModel};

const N: usize = 4;
const L: usize = 6;

fuzz_target!(|data: &[u8]| {
    let mut smodel = SubsModel::new(N, L);
    let mut table: Table<N, L> = Table::new();
    let mut model = TableModel::new(N, L);
    let mut subs: Subscribers<u8, N, L> = Subscribers::new();
    let mut index: Index<u8> = Index::new();
    let mut rest = data;
    while let Some((&op, r)) = rest.split_first() {
        let len = r.first().map_or(0, |&n| usize::from(n % 10));
        let body = r.get(1..).unwrap_or(&[]);
        let t = &body[..len.min(body.len())];
        rest = &body[t.len()..];
        let id = op >> 6;

        match op % 8 {
            0 | 1 => assert_eq!(table.subscribe(t), model.subscribe(t), "subscribe {t:?}"),
            2 | 3 => assert_eq!(
                table.unsubscribe(t),
                model.unsubscribe(t),
                "unsubscribe {t:?}"
            ),
            4 => assert_eq!(table.remove(t), model.remove(t)),
            5 => {
                if op & 0x20 != 0 {
                    table.clear();
                    model.entries.clear();
                }
            }
            6 => {
                let before: Vec<Vec<u8>> = subs.topics().map(<[u8]>::to_vec).collect();
                let r = subs.subscribe(id, t);
                assert_eq!(r, smodel.subscribe(id, t), "subscribers.subscribe");
                if let Ok(new) = r {
                    assert_eq!(index.subscribe(id, t), Ok(new), "index.subscribe");
                }
                if r.is_ok() {
                    assert!(subs.receives(id, t));
                    assert!(subs.count(id, t) >= 1);
                } else {
                    let after: Vec<Vec<u8>> = subs.topics().map(<[u8]>::to_vec).collect();
                    assert_eq!(before, after, "failed subscribe changed the table");
                }
            }
            _ => {
                if op & 0x20 != 0 {
                    let mut gone = Vec::new();
                    let n = subs.remove_subscriber(id, |x| gone.push(x.to_vec()));
                    let mut index_gone = BTreeSet::new();
                    let m = index.remove_subscriber(id, |x| assert!(index_gone.insert(x.to_vec())));
                    assert_eq!((m, index_gone), (n, gone.iter().cloned().collect()));
                    assert_eq!((n, gone), smodel.remove_subscriber(id));
                    assert!(subs.iter().all(|(i, _, _)| i != id));
                } else {
                    let had = subs.count(id, t);
                    let r = subs.unsubscribe(id, t);
                    assert_eq!(index.unsubscribe(id, t), r, "index.unsubscribe");
                    assert_eq!(r, smodel.unsubscribe(id, t), "subscribers.unsubscribe");
                    assert_eq!(r.is_ok(), had > 0);
                    assert_eq!(subs.count(id, t), had.saturating_sub(1));
                }
            }
        }

        // The table equals the model.
        let got: Vec<(Vec<u8>, u32)> = table.iter().map(|(x, c)| (x.to_vec(), c)).collect();
        assert_eq!(got, model.entries);
        assert_eq!(table.len(), model.entries.len());
        assert_eq!(table.is_empty(), model.entries.is_empty());
        assert_eq!(table.is_full(), model.entries.len() == N);
        assert_eq!(table.count(t), model.count(t));
        assert_eq!(table.contains(t), model.pos(t).is_some());
        let want = model.matching(t);
        let hits: Vec<(Vec<u8>, u32)> = table.matching(t).map(|(x, c)| (x.to_vec(), c)).collect();
        assert_eq!(hits, want);
        assert_eq!(table.matches(t), !want.is_empty());

        // Subscribers equal their model.
        let got: Vec<(u8, Vec<u8>, u32)> =
            subs.iter().map(|(i, x, c)| (i, x.to_vec(), c)).collect();
        assert_eq!(got, smodel.entries);
        let mut union: Vec<Vec<u8>> = Vec::new();
        for (_, x, _) in &smodel.entries {
            if !union.contains(x) {
                union.push(x.clone());
            }
        }
        let topics: Vec<Vec<u8>> = subs.topics().map(<[u8]>::to_vec).collect();
        assert_eq!(topics, union);

        // Subscribers: matches/subscribers agree with its own entries.
        let expect: Vec<u8> = {
            let mut v: Vec<u8> = subs
                .iter()
                .filter(|(_, x, c)| *c > 0 && topic::matches(x, t))
                .map(|(i, _, _)| i)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut got: Vec<u8> = subs.subscribers(t).collect();
        got.sort_unstable();
        let dups = got.len();
        got.dedup();
        assert_eq!(dups, got.len(), "a subscriber yielded twice");
        assert_eq!(got, expect);
        assert_eq!(subs.matches(t), !expect.is_empty());
        assert!(subs.len() <= N);

        // The index holds the same pairs and matches the same subscribers.
        let pairs: BTreeSet<(u8, Vec<u8>, u32)> =
            index.iter().map(|(i, x, c)| (i, x.to_vec(), c)).collect();
        assert_eq!(pairs, smodel.entries.iter().cloned().collect());
        assert_eq!(index.len(), smodel.entries.len());
        let topics: BTreeSet<Vec<u8>> = index.topics().map(<[u8]>::to_vec).collect();
        assert_eq!(topics, union.iter().cloned().collect());
        let mut from_index: Vec<u8> = index.subscribers(t).collect();
        from_index.sort_unstable();
        assert_eq!(from_index, expect, "index.subscribers");
        for probe in [t, rest] {
            let want: BTreeSet<(Vec<u8>, u8)> = smodel
                .entries
                .iter()
                .filter(|(_, x, _)| topic::matches(x, probe))
                .map(|(i, x, _)| (x.clone(), *i))
                .collect();
            let got: Vec<(Vec<u8>, u8)> = index
                .matching(probe)
                .map(|(x, i)| (x.to_vec(), i))
                .collect();
            assert_eq!(got.len(), want.len());
            assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
        }

        // Filter agrees with the rule.
        match Filter::<L>::new(t) {
            Ok(f) => {
                assert!(f.matches(t));
                assert_eq!(f.as_bytes(), t);
                assert_eq!(f.matches(rest), topic::matches(t, rest));
            }
            Err(e) => {
                assert_eq!(e, Error::TooLong);
                assert!(t.len() > L);
            }
        }
    }
});
