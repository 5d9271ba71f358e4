//! ZeroMQ-style topic matching: byte-prefix filters and counted subscription
//! tables of fixed capacity.
//!
//! A Banyan topic is a byte string (UTF-8 in practice). A subscription is a
//! *prefix*: subscribing to `t` receives `t`, `tx` and `temperature`, and the
//! empty subscription receives everything — exactly as a ZeroMQ `SUB` socket
//! (and therefore Python Banyan) does. Subscriptions are *counted*: two
//! subscribes to the same topic need two unsubscribes before it goes away, as
//! with `XPUB`/`XSUB`.
//!
//! # When to use it
//!
//! - [`Filter`] holds one prefix, for a component or device that listens to a
//!   single topic family.
//! - [`Table`] holds up to `N` distinct prefixes of at most `L` bytes each,
//!   with counts. The serial gateway keeps one per device to know which of the
//!   device's subscriptions an incoming backplane topic matches. It is
//!   `const` constructible, so it can live in a `static`.
//! - [`Subscribers`] holds the counted subscriptions of several subscribers
//!   (tasks, devices) and yields the subscribers an incoming topic goes to —
//!   in the spirit of `embassy-sync`'s pub/sub, without the channels.
//! - `Index` (with the `std` feature) holds the counted subscriptions of
//!   any number of subscribers, indexed by prefix: finding a topic's
//!   subscribers costs at most `topic.len() + 1` hash probes whatever the
//!   number of unrelated subscriptions. The backplane routes with it.
//! - [`Declarations`] holds the topic prefixes and service names a serial
//!   device declares, uncounted, each with one mark bit: the device's table
//!   and the gateway's mirror of it in [`link`](crate::link).
//! - [`matches()`] is the rule itself, for a prefix you already hold as bytes.
//!
//! # When not to use it
//!
//! - [`Table`] and [`Subscribers`] search linearly (`O(N × L)` per lookup).
//!   That is the right trade-off for the tens of subscriptions of a robot or
//!   a device; a host routing thousands of topics uses `Index`.
//! - Topics are matched as raw bytes: no wildcards, no case folding, no
//!   Unicode normalisation — a deliberate match for ZeroMQ.
//!
//! # Example
//!
//! ```
//! use banyan_core::topic::{Error, Table};
//!
//! // Up to 4 distinct topics of up to 16 bytes each.
//! let mut subs: Table<4, 16> = Table::new();
//! assert_eq!(subs.subscribe(b"run_"), Ok(1)); // new topic: forward upstream
//! assert_eq!(subs.subscribe(b"run_"), Ok(2)); // counted
//! assert!(subs.matches(b"run_motors"));
//! assert!(!subs.matches(b"light_leds"));
//! assert_eq!(subs.unsubscribe(b"run_"), Ok(1));
//! assert_eq!(subs.unsubscribe(b"run_"), Ok(0)); // gone: forward upstream
//! assert_eq!(subs.unsubscribe(b"run_"), Err(Error::NotSubscribed));
//! assert_eq!(subs.subscribe(&[b'x'; 17]), Err(Error::TooLong));
//! ```

use core::fmt;

use heapless::Vec;

mod declarations;
#[cfg(any(test, feature = "std"))]
mod index;
mod subscribers;

pub use declarations::{Declaration, Declarations};

#[cfg(any(test, feature = "std"))]
pub use index::Index;
pub use subscribers::Subscribers;

/// Returns `true` when `topic` starts with `prefix`: the ZeroMQ subscription
/// rule. The empty prefix matches every topic.
///
/// ```
/// use banyan_core::topic::matches;
/// assert!(matches(b"t", b"tx"));
/// assert!(matches(b"", b"anything"));
/// assert!(!matches(b"tx", b"t"));
/// ```
#[inline]
pub fn matches(prefix: &[u8], topic: &[u8]) -> bool {
    topic.starts_with(prefix)
}

/// Why a topic operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The topic is longer than the table's or filter's `L` bytes.
    TooLong,
    /// The table already holds its `N` entries and this one is new.
    Full,
    /// Unsubscribe of a topic that has no subscription.
    NotSubscribed,
    /// The topic's subscription count is already `u32::MAX`.
    CountOverflow,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::TooLong => "topic too long",
            Error::Full => "subscription table full",
            Error::NotSubscribed => "topic not subscribed",
            Error::CountOverflow => "subscription count overflow",
        })
    }
}

impl core::error::Error for Error {}

/// One topic prefix of at most `L` bytes.
///
/// ```
/// use banyan_core::topic::Filter;
/// let f: Filter<16> = Filter::new(b"from_rpi").unwrap();
/// assert!(f.matches(b"from_rpi_gateway"));
/// assert!(!f.matches(b"to_rpi_gateway"));
/// assert!(Filter::<16>::all().matches(b"anything"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Filter<const L: usize> {
    prefix: Vec<u8, L>,
}

impl<const L: usize> Filter<L> {
    /// The empty filter, which matches every topic.
    pub const fn all() -> Self {
        Filter { prefix: Vec::new() }
    }

    /// A filter for the topics starting with `prefix`.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] if `prefix` is longer than `L` bytes.
    pub fn new(prefix: &[u8]) -> Result<Self, Error> {
        Vec::from_slice(prefix)
            .map(|prefix| Filter { prefix })
            .map_err(|_| Error::TooLong)
    }

    /// Returns `true` when `topic` starts with this filter's prefix.
    #[inline]
    pub fn matches(&self, topic: &[u8]) -> bool {
        matches(&self.prefix, topic)
    }

    /// The prefix.
    pub fn as_bytes(&self) -> &[u8] {
        &self.prefix
    }
}

impl<const L: usize> Default for Filter<L> {
    /// The empty filter, which matches every topic.
    fn default() -> Self {
        Self::all()
    }
}

/// A counted subscription table of at most `N` distinct topics of at most `L`
/// bytes each.
///
/// Entries keep the order in which their topics were first subscribed. Every
/// operation is a linear scan; nothing allocates and nothing panics.
///
/// ```
/// use banyan_core::topic::Table;
///
/// // `const fn new`: a table can be a `static` (behind a mutex in firmware).
/// static EMPTY: Table<8, 32> = Table::new();
/// assert!(EMPTY.is_empty());
///
/// let mut t: Table<8, 32> = Table::new();
/// t.subscribe(b"").unwrap();
/// t.subscribe(b"run_motors").unwrap();
/// let hits: Vec<&[u8]> = t.matching(b"run_motors").map(|(topic, _count)| topic).collect();
/// assert_eq!(hits, [&b""[..], &b"run_motors"[..]]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Table<const N: usize, const L: usize> {
    // The one-subscriber case of `Subscribers`: one counting rule for both.
    subs: Subscribers<(), N, L>,
}

impl<const N: usize, const L: usize> Table<N, L> {
    /// The maximum number of distinct topics (`N`).
    pub const CAPACITY: usize = N;
    /// The maximum topic length in bytes (`L`).
    pub const MAX_TOPIC_LEN: usize = L;

    /// An empty table.
    pub const fn new() -> Self {
        Table {
            subs: Subscribers::new(),
        }
    }

    /// Adds one subscription to `topic` and returns its new count.
    ///
    /// A result of `1` means the topic is new to the table: the moment a
    /// forwarder passes the subscription upstream.
    ///
    /// # Errors
    ///
    /// The table is unchanged on error.
    /// - [`Error::TooLong`] if `topic` is longer than `L` bytes.
    /// - [`Error::Full`] if `topic` is new and the table holds `N` topics.
    /// - [`Error::CountOverflow`] if the count is already `u32::MAX`.
    pub fn subscribe(&mut self, topic: &[u8]) -> Result<u32, Error> {
        self.subs.add((), topic).map(|(_, count)| count)
    }

    /// Removes one subscription to `topic` and returns the remaining count.
    ///
    /// A result of `0` means the topic has left the table: the moment a
    /// forwarder passes the unsubscription upstream.
    ///
    /// # Errors
    ///
    /// [`Error::NotSubscribed`] if `topic` has no subscription (the table is
    /// unchanged).
    pub fn unsubscribe(&mut self, topic: &[u8]) -> Result<u32, Error> {
        self.subs.take((), topic).map(|(_, left)| left)
    }

    /// Removes every subscription to `topic` at once and returns how many
    /// there were (`0` if none).
    pub fn remove(&mut self, topic: &[u8]) -> u32 {
        self.subs.remove((), topic)
    }

    /// Removes every subscription (for example after a device reset).
    pub fn clear(&mut self) {
        self.subs.clear();
    }

    /// The subscription count of exactly `topic` (`0` if not subscribed).
    /// This compares whole topics; see [`Table::matches`] for prefix matching.
    pub fn count(&self, topic: &[u8]) -> u32 {
        self.subs.count((), topic)
    }

    /// Returns `true` if exactly `topic` is subscribed.
    pub fn contains(&self, topic: &[u8]) -> bool {
        self.count(topic) > 0
    }

    /// Returns `true` if any subscription is a prefix of `topic`, i.e. a
    /// subscriber of this table would receive a message on `topic`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        self.subs.matches(topic)
    }

    /// The subscriptions that are prefixes of `topic`, as `(subscription,
    /// count)`, in table order.
    pub fn matching<'a>(&'a self, topic: &'a [u8]) -> impl Iterator<Item = (&'a [u8], u32)> + 'a {
        self.iter()
            .filter(move |(prefix, _)| matches(prefix, topic))
    }

    /// Every subscription as `(topic, count)`, in the order topics were first
    /// subscribed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.subs.iter().map(|((), topic, count)| (topic, count))
    }

    /// The number of distinct topics.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Returns `true` if the table holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Returns `true` if the table holds `N` distinct topics: subscribing to
    /// a new topic would fail with [`Error::Full`].
    pub fn is_full(&self) -> bool {
        self.subs.is_full()
    }
}

impl<const N: usize, const L: usize> Default for Table<N, L> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rule() {
        assert!(matches(b"", b""));
        assert!(matches(b"", b"x"));
        assert!(matches(b"t", b"t"));
        assert!(matches(b"t", b"tx"));
        assert!(!matches(b"tx", b"t"));
        assert!(!matches(b"x", b"tx"));
    }

    #[test]
    fn filter_too_long() {
        assert_eq!(Filter::<2>::new(b"abc"), Err(Error::TooLong));
        assert_eq!(Filter::<2>::new(b"ab").unwrap().as_bytes(), b"ab");
        assert_eq!(Filter::<0>::default().as_bytes(), b"");
    }

    #[test]
    fn count_overflow_leaves_table_unchanged() {
        let mut t: Table<1, 1> = Table::new();
        t.subscribe(b"a").unwrap();
        t.subs.set_count_for_test(0, u32::MAX);
        assert_eq!(t.subscribe(b"a"), Err(Error::CountOverflow));
        assert_eq!(t.count(b"a"), u32::MAX);
    }

    #[test]
    fn static_table() {
        static T: Table<2, 4> = Table::new();
        assert!(T.is_empty());
        assert!(!T.matches(b""));
    }
}
