//! Property tests of `topic::Subscribers` against a reference model: an
//! insertion-ordered `Vec<(id, topic, count)>`.

use banyan_core::topic::{Error, Subscribers};
use proptest::prelude::*;

const N: usize = 5;
const L: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Subscribe(u8, Vec<u8>),
    Unsubscribe(u8, Vec<u8>),
    RemoveSubscriber(u8),
    Deliver(Vec<u8>),
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..=max)
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..3;
    prop_oneof![
        6 => (id.clone(), bytes(L + 1)).prop_map(|(i, t)| Op::Subscribe(i, t)),
        4 => (id.clone(), bytes(L + 1)).prop_map(|(i, t)| Op::Unsubscribe(i, t)),
        1 => id.prop_map(Op::RemoveSubscriber),
        4 => bytes(L + 2).prop_map(Op::Deliver),
    ]
}

#[derive(Default)]
struct Model {
    entries: Vec<(u8, Vec<u8>, u32)>,
}

impl Model {
    fn holders(&self, t: &[u8]) -> usize {
        self.entries.iter().filter(|e| e.1 == t).count()
    }

    fn subscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        if t.len() > L {
            return Err(Error::TooLong);
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == id && e.1 == t) {
            e.2 += 1;
            return Ok(false);
        }
        if self.entries.len() == N {
            return Err(Error::Full);
        }
        let new = self.holders(t) == 0;
        self.entries.push((id, t.to_vec(), 1));
        Ok(new)
    }

    fn unsubscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        let i = self
            .entries
            .iter()
            .position(|e| e.0 == id && e.1 == t)
            .ok_or(Error::NotSubscribed)?;
        self.entries[i].2 -= 1;
        if self.entries[i].2 > 0 {
            return Ok(false);
        }
        self.entries.remove(i);
        Ok(self.holders(t) == 0)
    }

    fn remove_subscriber(&mut self, id: u8) -> (usize, Vec<Vec<u8>>) {
        let mine: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|e| e.0 == id)
            .map(|e| e.1.clone())
            .collect();
        self.entries.retain(|e| e.0 != id);
        let gone = mine
            .iter()
            .filter(|t| self.holders(t) == 0)
            .cloned()
            .collect();
        (mine.len(), gone)
    }

    fn subscribers(&self, t: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            if t.starts_with(&e.1) && !out.contains(&e.0) {
                out.push(e.0);
            }
        }
        out
    }

    fn topics(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.1) {
                out.push(e.1.clone());
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn subscribers_follow_model(ops in prop::collection::vec(op(), 0..64)) {
        let mut subs: Subscribers<u8, N, L> = Subscribers::new();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Subscribe(id, t) => prop_assert_eq!(subs.subscribe(id, &t), model.subscribe(id, &t)),
                Op::Unsubscribe(id, t) => prop_assert_eq!(subs.unsubscribe(id, &t), model.unsubscribe(id, &t)),
                Op::RemoveSubscriber(id) => {
                    let mut gone = Vec::new();
                    let n = subs.remove_subscriber(id, |t| gone.push(t.to_vec()));
                    prop_assert_eq!((n, gone), model.remove_subscriber(id));
                }
                Op::Deliver(t) => {
                    let want = model.subscribers(&t);
                    prop_assert_eq!(subs.subscribers(&t).collect::<Vec<_>>(), want.clone());
                    prop_assert_eq!(subs.matches(&t), !want.is_empty());
                    for id in 0..3 {
                        prop_assert_eq!(subs.receives(id, &t), want.contains(&id));
                    }
                }
            }
            let got: Vec<(u8, Vec<u8>, u32)> = subs.iter().map(|(i, t, c)| (i, t.to_vec(), c)).collect();
            prop_assert_eq!(got, model.entries.clone());
            prop_assert_eq!(subs.topics().map(<[u8]>::to_vec).collect::<Vec<_>>(), model.topics());
            prop_assert_eq!(subs.len(), model.entries.len());
            prop_assert_eq!(subs.is_full(), model.entries.len() == N);
            prop_assert_eq!(subs.is_empty(), model.entries.is_empty());
            for (id, t, c) in &model.entries {
                prop_assert_eq!(subs.count(*id, t), *c);
            }
        }
    }
}

#[test]
fn upstream_changes_only_at_first_and_last_holder() {
    let mut s: Subscribers<u8, 4, 8> = Subscribers::new();
    assert_eq!(s.subscribe(1, b"t"), Ok(true));
    assert_eq!(s.subscribe(2, b"t"), Ok(false), "another holder already");
    assert_eq!(s.subscribe(2, b"t"), Ok(false), "counted");
    assert_eq!(s.unsubscribe(1, b"t"), Ok(false), "2 still holds it");
    assert_eq!(s.unsubscribe(2, b"t"), Ok(false), "2's count was 2");
    assert_eq!(s.unsubscribe(2, b"t"), Ok(true), "last holder gone");
    assert_eq!(s.unsubscribe(2, b"t"), Err(Error::NotSubscribed));
    assert!(s.is_empty());
}

#[test]
fn static_subscribers() {
    static S: Subscribers<u8, 4, 8> = Subscribers::new();
    assert_eq!(S.subscribers(b"x").count(), 0);
}
