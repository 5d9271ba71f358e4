//! Subscriptions per subscriber, for dispatching one input to many consumers.

use heapless::Vec;

use super::{matches, Error};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Entry<I, const L: usize> {
    id: I,
    topic: Vec<u8, L>,
    count: u32,
}

/// Counted subscriptions of several subscribers: at most `N` `(subscriber,
/// topic)` pairs, topics of at most `L` bytes. `I` identifies a subscriber (a
/// task, a device, a connection): any small `Copy` id.
///
/// Use it where one input fans out to several consumers, each with its own
/// subscriptions — firmware dispatching a received message to the tasks that
/// asked for it, or a gateway serving several devices on one backplane
/// connection. Each subscriber follows the ZeroMQ rules of
/// [`Table`](super::Table) (prefix match, counted), and
/// [`subscribers`](Subscribers::subscribers) yields each matching subscriber
/// once however many of its prefixes match, as a ZeroMQ `SUB` socket delivers
/// a message once. `subscribe`/`unsubscribe` report when a topic enters or
/// leaves the union of all subscriptions: the moments to forward the
/// (un)subscription upstream.
///
/// When there is a single consumer, use [`Table`](super::Table).
///
/// ```
/// use banyan_core::topic::Subscribers;
///
/// const MOTORS: u8 = 0;
/// const LEDS: u8 = 1;
/// let mut subs: Subscribers<u8, 8, 16> = Subscribers::new();
/// assert_eq!(subs.subscribe(MOTORS, b"run_motors"), Ok(true)); // new upstream
/// assert_eq!(subs.subscribe(LEDS, b"light_leds"), Ok(true));
/// assert_eq!(subs.subscribe(LEDS, b""), Ok(true)); // LEDs also watch everything
/// assert_eq!(subs.subscribe(MOTORS, b"run_"), Ok(true));
///
/// let to: Vec<u8> = subs.subscribers(b"run_motors").collect();
/// assert_eq!(to, [MOTORS, LEDS]); // MOTORS once, though two prefixes match
///
/// let mut gone = Vec::new();
/// subs.remove_subscriber(LEDS, |topic| gone.push(topic.to_vec()));
/// assert_eq!(gone, [b"light_leds".to_vec(), b"".to_vec()]); // unsubscribe upstream
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscribers<I, const N: usize, const L: usize> {
    entries: Vec<Entry<I, L>, N>,
}

impl<I: Copy + PartialEq, const N: usize, const L: usize> Subscribers<I, N, L> {
    /// An empty table.
    pub const fn new() -> Self {
        Subscribers {
            entries: Vec::new(),
        }
    }

    fn position(&self, id: I, topic: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.id == id && e.topic.as_slice() == topic)
    }

    /// Whether a subscriber other than the entry at `skip` holds `topic`.
    fn held_elsewhere(&self, skip: usize, topic: &[u8]) -> bool {
        self.entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != skip && e.topic.as_slice() == topic)
    }

    /// Adds one subscription of `id` to `topic`. Returns `true` if no
    /// subscriber held `topic` before (forward the subscription upstream).
    ///
    /// # Errors
    ///
    /// The table is unchanged on error.
    /// - [`Error::TooLong`] if `topic` is longer than `L` bytes.
    /// - [`Error::Full`] if `(id, topic)` is new and the table holds `N` pairs.
    /// - [`Error::CountOverflow`] if this pair's count is already `u32::MAX`.
    pub fn subscribe(&mut self, id: I, topic: &[u8]) -> Result<bool, Error> {
        self.add(id, topic).map(|(new_upstream, _)| new_upstream)
    }

    /// [`subscribe`](Self::subscribe), also returning the pair's new count
    /// (what [`Table`](super::Table) reports).
    pub(super) fn add(&mut self, id: I, topic: &[u8]) -> Result<(bool, u32), Error> {
        if topic.len() > L {
            return Err(Error::TooLong);
        }
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.id == id && e.topic.as_slice() == topic)
        {
            entry.count = entry.count.checked_add(1).ok_or(Error::CountOverflow)?;
            return Ok((false, entry.count));
        }
        let new_upstream = !self.entries.iter().any(|e| e.topic.as_slice() == topic);
        let topic = Vec::from_slice(topic).map_err(|_| Error::TooLong)?;
        self.entries
            .push(Entry {
                id,
                topic,
                count: 1,
            })
            .map_err(|_| Error::Full)?;
        Ok((new_upstream, 1))
    }

    /// Removes one subscription of `id` to `topic`. Returns `true` if no
    /// subscriber holds `topic` any more (forward the unsubscription
    /// upstream).
    ///
    /// # Errors
    ///
    /// [`Error::NotSubscribed`] if `id` has no subscription to exactly
    /// `topic` (the table is unchanged).
    pub fn unsubscribe(&mut self, id: I, topic: &[u8]) -> Result<bool, Error> {
        self.take(id, topic).map(|(gone, _)| gone)
    }

    /// [`unsubscribe`](Self::unsubscribe), also returning the pair's
    /// remaining count (what [`Table`](super::Table) reports).
    pub(super) fn take(&mut self, id: I, topic: &[u8]) -> Result<(bool, u32), Error> {
        let i = self.position(id, topic).ok_or(Error::NotSubscribed)?;
        let entry = self.entries.get_mut(i).ok_or(Error::NotSubscribed)?;
        entry.count -= 1; // entries never hold a zero count
        if entry.count > 0 {
            return Ok((false, entry.count));
        }
        let gone = !self.held_elsewhere(i, topic);
        self.entries.remove(i);
        Ok((gone, 0))
    }

    /// Removes every subscription of `id` to exactly `topic` at once and
    /// returns how many there were (`0` if none).
    pub fn remove(&mut self, id: I, topic: &[u8]) -> u32 {
        match self.position(id, topic) {
            Some(i) => self.entries.remove(i).count,
            None => 0,
        }
    }

    /// Removes every subscription of `id` (a task ended, a device went
    /// away). Calls `gone(topic)` for each topic no other subscriber holds,
    /// in table order, and returns the number of `(id, topic)` pairs removed.
    pub fn remove_subscriber(&mut self, id: I, mut gone: impl FnMut(&[u8])) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].id == id {
                if !self.held_elsewhere(i, &self.entries[i].topic) {
                    gone(&self.entries[i].topic);
                }
                self.entries.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        removed
    }

    /// Sets the count of the entry at `i` (tests reach the overflow this way).
    #[cfg(test)]
    pub(super) fn set_count_for_test(&mut self, i: usize, count: u32) {
        if let Some(e) = self.entries.get_mut(i) {
            e.count = count;
        }
    }

    /// Removes every subscription of every subscriber.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The count of `id`'s subscription to exactly `topic` (`0` if none).
    pub fn count(&self, id: I, topic: &[u8]) -> u32 {
        self.position(id, topic)
            .map_or(0, |i| self.entries[i].count)
    }

    /// Returns `true` if any subscriber would receive a message on `topic`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        self.entries.iter().any(|e| matches(&e.topic, topic))
    }

    /// Returns `true` if subscriber `id` would receive a message on `topic`.
    pub fn receives(&self, id: I, topic: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|e| e.id == id && matches(&e.topic, topic))
    }

    /// The subscribers that receive a message on `topic`, each once, in the
    /// order of their first matching subscription.
    pub fn subscribers<'a>(&'a self, topic: &'a [u8]) -> impl Iterator<Item = I> + 'a {
        let hits = move |e: &&Entry<I, L>| matches(&e.topic, topic);
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| hits(e))
            .filter(move |(i, e)| !self.entries[..*i].iter().filter(hits).any(|p| p.id == e.id))
            .map(|(_, e)| e.id)
    }

    /// The union of all subscribed topics, each once, in the order they were
    /// first subscribed: what to (re-)subscribe upstream.
    pub fn topics(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(i, e)| !self.entries[..*i].iter().any(|p| p.topic == e.topic))
            .map(|(_, e)| e.topic.as_slice())
    }

    /// Every subscription as `(subscriber, topic, count)`, in the order the
    /// pairs were first subscribed.
    pub fn iter(&self) -> impl Iterator<Item = (I, &[u8], u32)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.id, e.topic.as_slice(), e.count))
    }

    /// The number of `(subscriber, topic)` pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` if there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns `true` if the table holds `N` pairs: a new pair would fail
    /// with [`Error::Full`].
    pub fn is_full(&self) -> bool {
        self.entries.len() == N
    }
}

impl<I: Copy + PartialEq, const N: usize, const L: usize> Default for Subscribers<I, N, L> {
    fn default() -> Self {
        Self::new()
    }
}
