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

const N: usize = 4;
const L: usize = 6;

/// The model: entries in first-subscribed order.
#[derive(Default)]
struct Model(Vec<(Vec<u8>, u32)>);

impl Model {
    fn pos(&self, t: &[u8]) -> Option<usize> {
        self.0.iter().position(|(x, _)| x == t)
    }
    fn subscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        if t.len() > L {
            return Err(Error::TooLong);
        }
        match self.pos(t) {
            Some(i) => {
                self.0[i].1 += 1;
                Ok(self.0[i].1)
            }
            None if self.0.len() == N => Err(Error::Full),
            None => {
                self.0.push((t.to_vec(), 1));
                Ok(1)
            }
        }
    }
    fn unsubscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        let i = self.pos(t).ok_or(Error::NotSubscribed)?;
        self.0[i].1 -= 1;
        let left = self.0[i].1;
        if left == 0 {
            self.0.remove(i);
        }
        Ok(left)
    }
    fn remove(&mut self, t: &[u8]) -> u32 {
        self.pos(t).map_or(0, |i| self.0.remove(i).1)
    }
}

/// Model of `Subscribers`: `(id, topic, count)` in first-subscribed order.
#[derive(Default)]
struct SubsModel(Vec<(u8, Vec<u8>, u32)>);

impl SubsModel {
    fn held(&self, t: &[u8]) -> bool {
        self.0.iter().any(|(_, x, _)| x == t)
    }
    fn subscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        if t.len() > L {
            return Err(Error::TooLong);
        }
        let new = !self.held(t);
        match self.0.iter().position(|(i, x, _)| *i == id && x == t) {
            Some(p) => self.0[p].2 += 1,
            None if self.0.len() == N => return Err(Error::Full),
            None => self.0.push((id, t.to_vec(), 1)),
        }
        Ok(new)
    }
    fn unsubscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        let p = self
            .0
            .iter()
            .position(|(i, x, _)| *i == id && x == t)
            .ok_or(Error::NotSubscribed)?;
        self.0[p].2 -= 1;
        if self.0[p].2 == 0 {
            self.0.remove(p);
        }
        Ok(!self.held(t))
    }
    fn remove_subscriber(&mut self, id: u8) -> (usize, Vec<Vec<u8>>) {
        let mine: Vec<Vec<u8>> = self
            .0
            .iter()
            .filter(|(i, _, _)| *i == id)
            .map(|(_, x, _)| x.clone())
            .collect();
        self.0.retain(|(i, _, _)| *i != id);
        let gone = mine.iter().filter(|x| !self.held(x)).cloned().collect();
        (mine.len(), gone)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut smodel = SubsModel::default();
    let mut table: Table<N, L> = Table::new();
    let mut model = Model::default();
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
                    model.0.clear();
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
        assert_eq!(got, model.0);
        assert_eq!(table.len(), model.0.len());
        assert_eq!(table.is_empty(), model.0.is_empty());
        assert_eq!(table.is_full(), model.0.len() == N);
        assert_eq!(table.count(t), model.pos(t).map_or(0, |i| model.0[i].1));
        assert_eq!(table.contains(t), model.pos(t).is_some());
        let want: Vec<(Vec<u8>, u32)> = model
            .0
            .iter()
            .filter(|(x, _)| t.starts_with(x))
            .cloned()
            .collect();
        let hits: Vec<(Vec<u8>, u32)> = table.matching(t).map(|(x, c)| (x.to_vec(), c)).collect();
        assert_eq!(hits, want);
        assert_eq!(table.matches(t), !want.is_empty());

        // Subscribers equal their model.
        let got: Vec<(u8, Vec<u8>, u32)> =
            subs.iter().map(|(i, x, c)| (i, x.to_vec(), c)).collect();
        assert_eq!(got, smodel.0);
        let mut union: Vec<Vec<u8>> = Vec::new();
        for (_, x, _) in &smodel.0 {
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
        assert_eq!(pairs, smodel.0.iter().cloned().collect());
        assert_eq!(index.len(), smodel.0.len());
        let topics: BTreeSet<Vec<u8>> = index.topics().map(<[u8]>::to_vec).collect();
        assert_eq!(topics, union.iter().cloned().collect());
        let mut from_index: Vec<u8> = index.subscribers(t).collect();
        from_index.sort_unstable();
        assert_eq!(from_index, expect, "index.subscribers");
        for probe in [t, rest] {
            let want: BTreeSet<(Vec<u8>, u8)> = smodel
                .0
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
