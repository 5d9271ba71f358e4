//! Property tests of `topic::Table` and `topic::Filter` against a reference
//! model: an insertion-ordered `Vec<(Vec<u8>, u32)>` of counts.

use banyan_core::topic::{self, Error, Filter, Table};
use proptest::prelude::*;

const N: usize = 4;
const L: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    Remove(Vec<u8>),
    Match(Vec<u8>),
    Clear,
}

/// Topics over a two-letter alphabet, up to one byte longer than `L`, so that
/// prefixes collide often and `TooLong` is exercised.
fn topic() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..=L + 1)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => topic().prop_map(Op::Subscribe),
        4 => topic().prop_map(Op::Unsubscribe),
        1 => topic().prop_map(Op::Remove),
        4 => prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..=L + 3).prop_map(Op::Match),
        1 => Just(Op::Clear),
    ]
}

#[derive(Default)]
struct Model {
    entries: Vec<(Vec<u8>, u32)>,
}

impl Model {
    fn subscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        if t.len() > L {
            return Err(Error::TooLong);
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == t) {
            e.1 += 1;
            return Ok(e.1);
        }
        if self.entries.len() == N {
            return Err(Error::Full);
        }
        self.entries.push((t.to_vec(), 1));
        Ok(1)
    }

    fn unsubscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        let i = self
            .entries
            .iter()
            .position(|e| e.0 == t)
            .ok_or(Error::NotSubscribed)?;
        self.entries[i].1 -= 1;
        let left = self.entries[i].1;
        if left == 0 {
            self.entries.remove(i);
        }
        Ok(left)
    }

    fn remove(&mut self, t: &[u8]) -> u32 {
        match self.entries.iter().position(|e| e.0 == t) {
            Some(i) => self.entries.remove(i).1,
            None => 0,
        }
    }

    fn matching(&self, t: &[u8]) -> Vec<(Vec<u8>, u32)> {
        self.entries
            .iter()
            .filter(|e| t.starts_with(&e.0))
            .cloned()
            .collect()
    }
}

fn snapshot<const N2: usize, const L2: usize>(t: &Table<N2, L2>) -> Vec<(Vec<u8>, u32)> {
    t.iter().map(|(k, c)| (k.to_vec(), c)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn table_follows_model(ops in prop::collection::vec(op(), 0..64)) {
        let mut table: Table<N, L> = Table::new();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Subscribe(t) => prop_assert_eq!(table.subscribe(&t), model.subscribe(&t)),
                Op::Unsubscribe(t) => prop_assert_eq!(table.unsubscribe(&t), model.unsubscribe(&t)),
                Op::Remove(t) => prop_assert_eq!(table.remove(&t), model.remove(&t)),
                Op::Clear => {
                    table.clear();
                    model.entries.clear();
                }
                Op::Match(t) => {
                    let want = model.matching(&t);
                    prop_assert_eq!(table.matches(&t), !want.is_empty());
                    let got: Vec<(Vec<u8>, u32)> =
                        table.matching(&t).map(|(k, c)| (k.to_vec(), c)).collect();
                    prop_assert_eq!(got, want);
                }
            }
            // Invariants after every step.
            prop_assert_eq!(snapshot(&table), model.entries.clone());
            prop_assert_eq!(table.len(), model.entries.len());
            prop_assert_eq!(table.is_empty(), model.entries.is_empty());
            prop_assert_eq!(table.is_full(), model.entries.len() == N);
            prop_assert!(table.iter().all(|(_, c)| c > 0));
            for (k, c) in &model.entries {
                prop_assert_eq!(table.count(k), *c);
                prop_assert!(table.contains(k));
            }
        }
    }

    #[test]
    fn filter_is_starts_with(prefix in topic(), t in topic()) {
        match Filter::<L>::new(&prefix) {
            Ok(f) => {
                prop_assert!(prefix.len() <= L);
                prop_assert_eq!(f.as_bytes(), &prefix[..]);
                prop_assert_eq!(f.matches(&t), t.starts_with(&prefix));
                prop_assert_eq!(topic::matches(&prefix, &t), t.starts_with(&prefix));
            }
            Err(e) => {
                prop_assert_eq!(e, Error::TooLong);
                prop_assert!(prefix.len() > L);
            }
        }
    }
}

#[test]
fn counted_subscriptions_need_matching_unsubscribes() {
    let mut t: Table<2, 8> = Table::new();
    assert_eq!(t.subscribe(b"t"), Ok(1));
    assert_eq!(t.subscribe(b"t"), Ok(2));
    assert!(t.matches(b"tx"));
    assert_eq!(t.unsubscribe(b"t"), Ok(1));
    assert!(t.matches(b"tx"), "one subscription is still live");
    assert_eq!(t.unsubscribe(b"t"), Ok(0));
    assert!(!t.matches(b"tx"));
    assert_eq!(t.unsubscribe(b"t"), Err(Error::NotSubscribed));
}

#[test]
fn empty_topic_matches_everything() {
    let mut t: Table<1, 0> = Table::new();
    assert!(!t.matches(b""));
    assert_eq!(t.subscribe(b""), Ok(1));
    assert!(t.matches(b""));
    assert!(t.matches(b"anything at all"));
    assert_eq!(t.subscribe(b"x"), Err(Error::TooLong));
}

#[test]
fn full_table_still_counts_existing_topics() {
    let mut t: Table<2, 8> = Table::new();
    t.subscribe(b"a").unwrap();
    t.subscribe(b"b").unwrap();
    assert!(t.is_full());
    assert_eq!(t.subscribe(b"c"), Err(Error::Full));
    assert_eq!(
        t.subscribe(b"a"),
        Ok(2),
        "existing topics still count when full"
    );
    assert_eq!(t.unsubscribe(b"b"), Ok(0));
    assert_eq!(t.subscribe(b"c"), Ok(1), "room again after an unsubscribe");
    assert_eq!(
        t.iter().collect::<Vec<_>>(),
        [(&b"a"[..], 2), (&b"c"[..], 1)]
    );
}

#[test]
fn errors_display_terse_lowercase() {
    for e in [
        Error::TooLong,
        Error::Full,
        Error::NotSubscribed,
        Error::CountOverflow,
    ] {
        let s = e.to_string();
        assert!(!s.is_empty());
        assert_eq!(s, s.to_lowercase());
        let _: &dyn std::error::Error = &e;
    }
}
