//! A growable prefix index of many subscribers' subscriptions (`std` only).

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::vec::Vec;

use super::Error;

/// The subscribers holding one prefix, with their counts. One holder is the
/// common case and needs no allocation of its own.
#[derive(Debug, Clone)]
enum Holders<I> {
    One((I, u32)),
    Many(Vec<(I, u32)>),
}

impl<I: Copy + PartialEq> Holders<I> {
    fn as_slice(&self) -> &[(I, u32)] {
        match self {
            Holders::One(pair) => core::slice::from_ref(pair),
            Holders::Many(v) => v,
        }
    }

    fn get_mut(&mut self, id: I) -> Option<&mut u32> {
        match self {
            Holders::One((i, n)) => (*i == id).then_some(n),
            Holders::Many(v) => v.iter_mut().find(|(i, _)| *i == id).map(|(_, n)| n),
        }
    }

    fn push(&mut self, id: I) {
        match self {
            Holders::One(pair) => *self = Holders::Many(vec![*pair, (id, 1)]),
            Holders::Many(v) => v.push((id, 1)),
        }
    }

    /// Removes `id`; returns whether no holder is left.
    fn remove(&mut self, id: I) -> bool {
        match self {
            Holders::One((i, _)) => *i == id,
            Holders::Many(v) => {
                v.retain(|(i, _)| *i != id);
                match v.as_slice() {
                    [] => true,
                    [pair] => {
                        *self = Holders::One(*pair);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Counted subscriptions of any number of subscribers, indexed by prefix so
/// that finding the subscribers of a topic costs the same whatever the
/// number of unrelated subscriptions: the growable counterpart of
/// [`Subscribers`](super::Subscribers), with the same rules (ZeroMQ prefix
/// match, counted per subscriber, union changes reported), for hosts.
/// Available with the `std` feature.
///
/// A lookup of `topic` probes one hash table once per distinct prefix
/// *length* held in the index that is not longer than `topic` (so at most
/// `topic.len() + 1` probes however many subscriptions there are), then
/// visits only the subscriptions that match. The hasher is `S`
/// (`RandomState` by default: keyed, so subscribers cannot choose colliding
/// prefixes). Unlike the fixed tables, nothing limits its size: a caller
/// facing untrusted subscribers limits their number and length itself (see
/// [`Index::subscriber_len`]).
///
/// Iteration order (of [`Index::matching`], [`Index::topics`],
/// [`Index::iter`]) is unspecified.
///
/// ```
/// use banyan_core::topic::Index;
///
/// let mut index: Index<u32> = Index::new();
/// assert_eq!(index.subscribe(7, b"run_"), Ok(true)); // new upstream
/// assert_eq!(index.subscribe(8, b"run_motors"), Ok(true));
/// assert_eq!(index.subscribe(8, b""), Ok(true)); // 8 also watches everything
/// assert_eq!(index.subscribe(9, b"run_"), Ok(false)); // already upstream
///
/// let mut to: Vec<u32> = index.subscribers(b"run_motors").collect();
/// to.sort();
/// assert_eq!(to, [7, 8, 9]); // 8 once, though two of its prefixes match
/// assert!(!index.receives(7, b"light_leds"));
///
/// let mut gone = Vec::new();
/// index.remove_subscriber(8, |topic| gone.push(topic.to_vec()));
/// gone.sort();
/// assert_eq!(gone, [b"".to_vec(), b"run_motors".to_vec()]); // unsubscribe upstream
/// ```
#[derive(Debug, Clone)]
pub struct Index<I, S = RandomState> {
    /// Prefix → its holders (never empty).
    prefixes: HashMap<Arc<[u8]>, Holders<I>, S>,
    /// Length → number of distinct prefixes of that length (never 0).
    lengths: BTreeMap<usize, usize>,
    /// Subscriber → its distinct prefixes (never empty).
    by_subscriber: HashMap<I, HashMap<Arc<[u8]>, (), S>, S>,
    pairs: usize,
    hasher: S,
}

impl<I: Copy + Eq + Hash> Index<I> {
    /// An empty index with the standard (keyed) hasher.
    pub fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<I: Copy + Eq + Hash> Default for Index<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Copy + Eq + Hash, S: BuildHasher + Clone> Index<I, S> {
    /// An empty index hashing with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Index {
            prefixes: HashMap::with_hasher(hasher.clone()),
            lengths: BTreeMap::new(),
            by_subscriber: HashMap::with_hasher(hasher.clone()),
            pairs: 0,
            hasher,
        }
    }

    /// Adds one subscription of `id` to `topic`. Returns `true` if no
    /// subscriber held `topic` before (forward the subscription upstream).
    ///
    /// # Errors
    ///
    /// [`Error::CountOverflow`] if this pair's count is already `u32::MAX`
    /// (the index is unchanged).
    pub fn subscribe(&mut self, id: I, topic: &[u8]) -> Result<bool, Error> {
        if let Some(holders) = self.prefixes.get_mut(topic) {
            if let Some(n) = holders.get_mut(id) {
                *n = n.checked_add(1).ok_or(Error::CountOverflow)?;
                return Ok(false);
            }
            holders.push(id);
            let key = match self.prefixes.get_key_value(topic) {
                Some((k, _)) => Arc::clone(k),
                None => Arc::from(topic),
            };
            self.add_to_subscriber(id, key);
            return Ok(false);
        }
        let key: Arc<[u8]> = Arc::from(topic);
        self.prefixes
            .insert(Arc::clone(&key), Holders::One((id, 1)));
        *self.lengths.entry(topic.len()).or_insert(0) += 1;
        self.add_to_subscriber(id, key);
        Ok(true)
    }

    fn add_to_subscriber(&mut self, id: I, key: Arc<[u8]>) {
        let hasher = self.hasher.clone();
        self.by_subscriber
            .entry(id)
            .or_insert_with(|| HashMap::with_hasher(hasher))
            .insert(key, ());
        self.pairs += 1;
    }

    /// Removes one subscription of `id` to `topic`. Returns `true` if no
    /// subscriber holds `topic` any more (forward the unsubscription
    /// upstream).
    ///
    /// # Errors
    ///
    /// [`Error::NotSubscribed`] if `id` has no subscription to exactly
    /// `topic` (the index is unchanged).
    pub fn unsubscribe(&mut self, id: I, topic: &[u8]) -> Result<bool, Error> {
        let holders = self.prefixes.get_mut(topic).ok_or(Error::NotSubscribed)?;
        let n = holders.get_mut(id).ok_or(Error::NotSubscribed)?;
        if *n > 1 {
            *n -= 1;
            return Ok(false);
        }
        Ok(self.remove_pair(id, topic))
    }

    /// Removes the pair `(id, topic)` whatever its count; returns whether
    /// `topic` left the union. The pair must exist.
    fn remove_pair(&mut self, id: I, topic: &[u8]) -> bool {
        if let Some(mine) = self.by_subscriber.get_mut(&id) {
            mine.remove(topic);
            if mine.is_empty() {
                self.by_subscriber.remove(&id);
            }
        }
        self.pairs -= 1;
        let gone = match self.prefixes.get_mut(topic) {
            Some(holders) => holders.remove(id),
            None => false,
        };
        if gone {
            self.prefixes.remove(topic);
            if let std::collections::btree_map::Entry::Occupied(mut e) =
                self.lengths.entry(topic.len())
            {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
        gone
    }

    /// Removes every subscription of `id` (it disconnected). Calls
    /// `gone(topic)` for each topic no other subscriber holds, and returns
    /// the number of `(id, topic)` pairs removed.
    pub fn remove_subscriber(&mut self, id: I, mut gone: impl FnMut(&[u8])) -> usize {
        let Some(mine) = self.by_subscriber.remove(&id) else {
            return 0;
        };
        let removed = mine.len();
        for key in mine.into_keys() {
            self.pairs -= 1;
            let left_union = match self.prefixes.get_mut(&key[..]) {
                Some(holders) => holders.remove(id),
                None => false,
            };
            if left_union {
                self.prefixes.remove(&key[..]);
                if let std::collections::btree_map::Entry::Occupied(mut e) =
                    self.lengths.entry(key.len())
                {
                    *e.get_mut() -= 1;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                gone(&key);
            }
        }
        removed
    }

    /// Removes every subscription of every subscriber.
    pub fn clear(&mut self) {
        self.prefixes.clear();
        self.lengths.clear();
        self.by_subscriber.clear();
        self.pairs = 0;
    }

    /// The count of `id`'s subscription to exactly `topic` (`0` if none).
    pub fn count(&self, id: I, topic: &[u8]) -> u32 {
        self.prefixes
            .get(topic)
            .and_then(|h| h.as_slice().iter().find(|(i, _)| *i == id))
            .map_or(0, |(_, n)| *n)
    }

    /// The subscriptions that are prefixes of `topic`, as `(prefix,
    /// subscriber)`: a subscriber appears once per matching prefix it holds.
    /// Costs one hash probe per distinct prefix length up to `topic.len()`
    /// plus one step per result.
    pub fn matching<'a>(&'a self, topic: &'a [u8]) -> impl Iterator<Item = (&'a [u8], I)> + 'a {
        self.lengths
            .range(..=topic.len())
            .filter_map(move |(&len, _)| {
                let prefix = topic.get(..len)?;
                self.prefixes.get_key_value(prefix)
            })
            .flat_map(|(key, holders)| {
                holders
                    .as_slice()
                    .iter()
                    .map(move |(id, _)| (&key[..], *id))
            })
    }

    /// Returns `true` if any subscriber would receive a message on `topic`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        self.matching(topic).next().is_some()
    }

    /// Returns `true` if subscriber `id` would receive a message on `topic`.
    pub fn receives(&self, id: I, topic: &[u8]) -> bool {
        let Some(mine) = self.by_subscriber.get(&id) else {
            return false;
        };
        self.lengths
            .range(..=topic.len())
            .any(|(&len, _)| topic.get(..len).is_some_and(|p| mine.contains_key(p)))
    }

    /// The subscribers that receive a message on `topic`, each once (at its
    /// shortest matching prefix).
    pub fn subscribers<'a>(&'a self, topic: &'a [u8]) -> impl Iterator<Item = I> + 'a {
        self.matching(topic).filter_map(move |(prefix, id)| {
            let shorter = self.by_subscriber.get(&id).is_some_and(|mine| {
                self.lengths
                    .range(..prefix.len())
                    .any(|(&len, _)| topic.get(..len).is_some_and(|p| mine.contains_key(p)))
            });
            (!shorter).then_some(id)
        })
    }

    /// The union of all subscribed topics, each once: what to (re-)subscribe
    /// upstream.
    pub fn topics(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.prefixes.keys().map(|k| k.borrow())
    }

    /// Every subscription as `(subscriber, topic, count)`.
    pub fn iter(&self) -> impl Iterator<Item = (I, &[u8], u32)> + '_ {
        self.prefixes
            .iter()
            .flat_map(|(k, h)| h.as_slice().iter().map(move |(id, n)| (*id, &k[..], *n)))
    }

    /// The number of distinct topics `id` subscribes to.
    pub fn subscriber_len(&self, id: I) -> usize {
        self.by_subscriber.get(&id).map_or(0, HashMap::len)
    }

    /// The number of distinct topics (the size of the union).
    pub fn topic_count(&self) -> usize {
        self.prefixes.len()
    }

    /// The number of `(subscriber, topic)` pairs.
    pub fn len(&self) -> usize {
        self.pairs
    }

    /// Returns `true` if there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_shrink_back_to_one_and_lengths_follow() {
        let mut ix: Index<u8> = Index::new();
        assert_eq!(ix.subscribe(1, b"ab"), Ok(true));
        assert_eq!(ix.subscribe(2, b"ab"), Ok(false));
        assert_eq!(ix.subscribe(3, b"ab"), Ok(false));
        assert_eq!(ix.unsubscribe(2, b"ab"), Ok(false));
        assert!(matches!(ix.prefixes.get(&b"ab"[..]), Some(Holders::Many(v)) if v.len() == 2));
        assert_eq!(ix.unsubscribe(3, b"ab"), Ok(false));
        assert!(matches!(
            ix.prefixes.get(&b"ab"[..]),
            Some(Holders::One((1, 1)))
        ));
        assert_eq!(ix.lengths.get(&2), Some(&1));
        assert_eq!(ix.unsubscribe(1, b"ab"), Ok(true));
        assert!(ix.lengths.is_empty() && ix.prefixes.is_empty() && ix.by_subscriber.is_empty());
        assert_eq!(ix.len(), 0);
    }

    /// A hasher that counts how many keys it hashed.
    #[derive(Clone, Default)]
    struct Counting(Arc<core::sync::atomic::AtomicUsize>);

    impl BuildHasher for Counting {
        type Hasher = std::collections::hash_map::DefaultHasher;
        fn build_hasher(&self) -> Self::Hasher {
            self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            std::collections::hash_map::DefaultHasher::new()
        }
    }

    impl Counting {
        fn take(&self) -> usize {
            self.0.swap(0, core::sync::atomic::Ordering::Relaxed)
        }
    }

    /// Routing a message costs at most one hash probe per byte of its topic
    /// (plus one for the empty prefix) to find the matching prefixes, and as
    /// many again per receiver to deliver to it once, however many unrelated
    /// subscriptions the index holds: the backplane's claim that a million
    /// subscriptions do not slow an unrelated stream, counted, not timed.
    #[test]
    fn matching_costs_do_not_grow_with_unrelated_subscriptions() {
        let probes = Counting::default();
        let mut ix: Index<u32, Counting> = Index::with_hasher(probes.clone());
        ix.subscribe(0, b"victim").unwrap();
        probes.take();
        assert_eq!(ix.subscribers(b"victim").collect::<Vec<_>>(), [0]);
        let alone = probes.take();
        // 100,000 subscriptions of 1 to 24 bytes, every length present,
        // none a prefix of "victim".
        for i in 1..=100_000u32 {
            let mut t = std::format!("z{i:x}").into_bytes();
            t.resize(t.len().max(1 + (i % 24) as usize), b'.');
            ix.subscribe(i, &t).unwrap();
        }
        assert_eq!(ix.len(), 100_001);
        probes.take();
        assert_eq!(ix.subscribers(b"victim").collect::<Vec<_>>(), [0]);
        let crowded = probes.take();
        // One receiver: the probes to find it and those to deduplicate it.
        let bound = 2 * (b"victim".len() + 1);
        assert!(alone <= bound, "{alone} probes alone");
        assert!(
            crowded <= bound,
            "{crowded} probes among 100,001 subscriptions ({alone} alone)"
        );
    }

    #[test]
    fn count_overflow_leaves_index_unchanged() {
        let mut ix: Index<u8> = Index::new();
        ix.subscribe(1, b"a").unwrap();
        if let Some(n) = ix.prefixes.get_mut(&b"a"[..]).and_then(|h| h.get_mut(1)) {
            *n = u32::MAX;
        }
        assert_eq!(ix.subscribe(1, b"a"), Err(Error::CountOverflow));
        assert_eq!(ix.count(1, b"a"), u32::MAX);
        assert_eq!(ix.len(), 1);
    }
}
