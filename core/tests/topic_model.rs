//! Property tests of `topic::Table` and `topic::Filter` against a reference
//! model: an insertion-ordered `Vec<(Vec<u8>, u32)>` of counts.

use banyan_core::topic::{self, Error, Filter, Table};
use proptest::prelude::*;

#[path = "support/topic_model.rs"]
mod support;
use support::TableModel;

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

fn snapshot<const N2: usize, const L2: usize>(t: &Table<N2, L2>) -> Vec<(Vec<u8>, u32)> {
    t.iter().map(|(k, c)| (k.to_vec(), c)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn table_follows_model(ops in prop::collection::vec(op(), 0..64)) {
        let mut table: Table<N, L> = Table::new();
        let mut model = TableModel::new(N, L);
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

/// `topic::Index` (std) against a model of `(subscriber, topic, count)`
/// entries, and against the fixed-capacity `topic::Subscribers` fed the
/// same operations (its capacity is never reached here): same results, same
/// matches, same union. Orders are compared as sets (the index is a hash
/// table). Needs the `std` feature (on in workspace runs).
#[cfg(feature = "std")]
mod index {
    use std::collections::BTreeSet;

    use banyan_core::topic::{Index, Subscribers};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(u8, Vec<u8>),
        Unsubscribe(u8, Vec<u8>),
        RemoveSubscriber(u8),
        Match(Vec<u8>),
        Clear,
    }

    fn topic(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..=max)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4u8, topic(4)).prop_map(|(i, t)| Op::Subscribe(i, t)),
            4 => (0..4u8, topic(4)).prop_map(|(i, t)| Op::Unsubscribe(i, t)),
            1 => (0..4u8).prop_map(Op::RemoveSubscriber),
            4 => topic(7).prop_map(Op::Match),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn index_follows_model_and_subscribers(ops in prop::collection::vec(op(), 0..80)) {
            let mut index: Index<u8> = Index::new();
            let mut fixed: Subscribers<u8, 512, 8> = Subscribers::new();
            let mut model = super::support::SubsModel::new(usize::MAX, usize::MAX);
            for op in ops {
                match op {
                    Op::Subscribe(id, t) => {
                        let r = index.subscribe(id, &t);
                        prop_assert_eq!(r, model.subscribe(id, &t));
                        prop_assert_eq!(r, fixed.subscribe(id, &t));
                    }
                    Op::Unsubscribe(id, t) => {
                        let r = index.unsubscribe(id, &t);
                        prop_assert_eq!(r, model.unsubscribe(id, &t));
                        prop_assert_eq!(r, fixed.unsubscribe(id, &t));
                    }
                    Op::RemoveSubscriber(id) => {
                        let mut gone = BTreeSet::new();
                        let n = index.remove_subscriber(id, |t| {
                            assert!(gone.insert(t.to_vec()), "gone twice");
                        });
                        let (m, model_gone) = model.remove_subscriber(id);
                        prop_assert_eq!((n, gone), (m, model_gone.into_iter().collect::<BTreeSet<_>>()));
                        fixed.remove_subscriber(id, |_| {});
                    }
                    Op::Clear => {
                        index.clear();
                        fixed.clear();
                        model.entries.clear();
                    }
                    Op::Match(t) => {
                        let want: BTreeSet<(Vec<u8>, u8)> = model
                            .entries
                            .iter()
                            .filter(|(_, x, _)| t.starts_with(x))
                            .map(|(i, x, _)| (x.clone(), *i))
                            .collect();
                        let got: Vec<(Vec<u8>, u8)> =
                            index.matching(&t).map(|(x, i)| (x.to_vec(), i)).collect();
                        prop_assert_eq!(got.len(), want.len(), "a match yielded twice");
                        prop_assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want.clone());
                        let ids: BTreeSet<u8> = want.iter().map(|(_, i)| *i).collect();
                        let subs: Vec<u8> = index.subscribers(&t).collect();
                        prop_assert_eq!(subs.len(), ids.len(), "a subscriber yielded twice");
                        prop_assert_eq!(subs.iter().copied().collect::<BTreeSet<_>>(), ids.clone());
                        let fixed_ids: BTreeSet<u8> = fixed.subscribers(&t).collect();
                        prop_assert_eq!(&fixed_ids, &ids);
                        prop_assert_eq!(index.matches(&t), !ids.is_empty());
                        for id in 0..4u8 {
                            prop_assert_eq!(index.receives(id, &t), ids.contains(&id));
                        }
                    }
                }
                // Invariants after every step.
                let got: BTreeSet<(u8, Vec<u8>, u32)> =
                    index.iter().map(|(i, x, c)| (i, x.to_vec(), c)).collect();
                let want: BTreeSet<(u8, Vec<u8>, u32)> = model.entries.iter().cloned().collect();
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(index.len(), model.entries.len());
                prop_assert_eq!(index.is_empty(), model.entries.is_empty());
                let union: BTreeSet<Vec<u8>> = model.entries.iter().map(|(_, x, _)| x.clone()).collect();
                let topics: Vec<Vec<u8>> = index.topics().map(<[u8]>::to_vec).collect();
                prop_assert_eq!(topics.len(), union.len());
                prop_assert_eq!(topics.into_iter().collect::<BTreeSet<_>>(), union.clone());
                prop_assert_eq!(index.topic_count(), union.len());
                for id in 0..4u8 {
                    let mine = model.entries.iter().filter(|(i, _, _)| *i == id).count();
                    prop_assert_eq!(index.subscriber_len(id), mine);
                }
                for (i, x, c) in &model.entries {
                    prop_assert_eq!(index.count(*i, x), *c);
                }
            }
        }
    }

    /// Matching cost does not grow with unrelated subscriptions: a lookup
    /// visits one hash probe per distinct prefix length (not timed: the
    /// result set stays exact with 100,000 unrelated entries).
    #[test]
    fn many_unrelated_subscriptions() {
        let mut index: Index<u32> = Index::new();
        for i in 0..100_000u32 {
            assert_eq!(index.subscribe(i % 7, format!("z{i}").as_bytes()), Ok(true));
        }
        index.subscribe(1_000, b"victim").unwrap();
        index.subscribe(1_001, b"").unwrap();
        let mut to: Vec<u32> = index.subscribers(b"victim/stream").collect();
        to.sort_unstable();
        assert_eq!(to, [1_000, 1_001]);
        assert_eq!(index.len(), 100_002);
        let mut gone = 0;
        assert_eq!(index.remove_subscriber(3, |_| gone += 1), gone);
        assert!(gone > 14_000);
    }
}
