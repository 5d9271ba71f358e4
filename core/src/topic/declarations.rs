//! The declaration table of a serial link end: topic prefixes and service
//! names a device declares, each with one mark bit.

use heapless::{String, Vec};

use super::Error;

/// One entry of a [`Declarations`] table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Declaration<const L: usize> {
    name: String<L>,
    service: bool,
    mark: bool,
}

impl<const L: usize> Declaration<L> {
    /// The topic prefix or service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `true` for a service name, `false` for a topic prefix (subscription).
    pub fn is_service(&self) -> bool {
        self.service
    }

    /// The entry's mark: what it means is the owner's (the device: "declared
    /// to the gateway"; the gateway: "not re-declared since the device's
    /// re-HELLO").
    pub fn mark(&self) -> bool {
        self.mark
    }

    /// Sets the entry's mark.
    pub fn set_mark(&mut self, mark: bool) {
        self.mark = mark;
    }
}

/// A set of at most `N` declarations — topic prefixes (subscriptions) and
/// service names of at most `L` bytes — each with one mark bit.
///
/// The two ends of the serial [`link`](crate::link) keep one each: the
/// device what it declares (and what it must withdraw), the gateway its
/// mirror of the device's. Unlike [`Table`](super::Table) it does not count:
/// declaring twice is declaring once, as the link's SUBSCRIBE and SERVE
/// are. A subscription and a service of the same text are two entries.
/// Entries keep the order in which they were inserted; every operation is a
/// linear scan; nothing allocates and nothing panics.
///
/// ```
/// use banyan_core::topic::{Declarations, Error};
///
/// let mut d: Declarations<2, 8> = Declarations::new();
/// assert_eq!(d.insert(false, "run_", false), Ok(true));
/// assert_eq!(d.insert(false, "run_", true), Ok(false)); // already there
/// assert_eq!(d.insert(true, "run_", false), Ok(true)); // a service: another entry
/// assert_eq!(d.insert(false, "x", false), Err(Error::Full));
/// assert_eq!(d.insert(false, "too long!", false), Err(Error::TooLong));
/// assert!(d.set_mark(false, "run_", true));
/// assert_eq!(d.remove(false, "run_"), Some(true)); // it was marked
/// assert_eq!(d.names(true).collect::<Vec<_>>(), ["run_"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Declarations<const N: usize, const L: usize> {
    entries: Vec<Declaration<L>, N>,
}

impl<const N: usize, const L: usize> Declarations<N, L> {
    /// An empty table.
    pub const fn new() -> Self {
        Declarations {
            entries: Vec::new(),
        }
    }

    fn position(&self, service: bool, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|d| d.service == service && d.name == name)
    }

    /// Adds `name` (a service name if `service`, else a topic prefix) with
    /// `mark`; returns `false` (and changes nothing) if it is already there.
    ///
    /// # Errors
    ///
    /// The table is unchanged on error.
    /// - [`Error::TooLong`] if `name` is longer than `L` bytes.
    /// - [`Error::Full`] if the table holds `N` entries.
    pub fn insert(&mut self, service: bool, name: &str, mark: bool) -> Result<bool, Error> {
        if self.position(service, name).is_some() {
            return Ok(false);
        }
        let name = String::try_from(name).map_err(|_| Error::TooLong)?;
        self.entries
            .push(Declaration {
                name,
                service,
                mark,
            })
            .map_err(|_| Error::Full)?;
        Ok(true)
    }

    /// Removes `name`; returns its mark, `None` if it was not there.
    pub fn remove(&mut self, service: bool, name: &str) -> Option<bool> {
        let i = self.position(service, name)?;
        Some(self.entries.remove(i).mark)
    }

    /// Removes and returns the first entry whose mark is `mark`.
    pub fn remove_first(&mut self, mark: bool) -> Option<Declaration<L>> {
        let i = self.entries.iter().position(|d| d.mark == mark)?;
        Some(self.entries.remove(i))
    }

    /// Sets the mark of `name`; returns whether it is there.
    pub fn set_mark(&mut self, service: bool, name: &str, mark: bool) -> bool {
        match self
            .entries
            .iter_mut()
            .find(|d| d.service == service && d.name == name)
        {
            Some(d) => {
                d.mark = mark;
                true
            }
            None => false,
        }
    }

    /// Sets the mark of every entry.
    pub fn set_marks(&mut self, mark: bool) {
        for d in self.entries.iter_mut() {
            d.mark = mark;
        }
    }

    /// The first entry.
    pub fn first(&self) -> Option<&Declaration<L>> {
        self.entries.first()
    }

    /// Removes and returns the first entry.
    pub fn pop_first(&mut self) -> Option<Declaration<L>> {
        if self.entries.is_empty() {
            return None;
        }
        Some(self.entries.remove(0))
    }

    /// The first entry whose mark is `mark`, to change its mark in place.
    pub fn first_mut(&mut self, mark: bool) -> Option<&mut Declaration<L>> {
        self.entries.iter_mut().find(|d| d.mark == mark)
    }

    /// Whether any entry's mark is `mark`.
    pub fn any(&self, mark: bool) -> bool {
        self.entries.iter().any(|d| d.mark == mark)
    }

    /// The topic prefixes (`service` false) or the service names, in order.
    pub fn names(&self, service: bool) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |d| d.service == service)
            .map(|d| d.name.as_str())
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Declaration<L>> {
        self.entries.iter()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<const N: usize, const L: usize> Default for Declarations<N, L> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<const N: usize, const L: usize>(
        d: &Declarations<N, L>,
    ) -> std::vec::Vec<(bool, &str, bool)> {
        d.iter()
            .map(|e| (e.is_service(), e.name(), e.mark()))
            .collect()
    }

    #[test]
    fn a_name_is_declared_once_per_kind_in_insertion_order() {
        let mut d: Declarations<4, 8> = Declarations::new();
        assert_eq!(d.insert(false, "b", false), Ok(true));
        assert_eq!(d.insert(false, "a", true), Ok(true));
        assert_eq!(d.insert(true, "b", false), Ok(true));
        assert_eq!(d.insert(false, "b", true), Ok(false));
        assert_eq!(
            names(&d),
            [(false, "b", false), (false, "a", true), (true, "b", false)]
        );
        assert_eq!(d.names(false).collect::<std::vec::Vec<_>>(), ["b", "a"]);
        assert_eq!(d.names(true).collect::<std::vec::Vec<_>>(), ["b"]);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn errors_leave_the_table_unchanged() {
        let mut d: Declarations<1, 2> = Declarations::new();
        assert_eq!(d.insert(false, "abc", false), Err(Error::TooLong));
        assert!(d.is_empty());
        assert_eq!(d.insert(false, "ab", false), Ok(true));
        assert_eq!(d.insert(true, "ab", false), Err(Error::Full));
        assert_eq!(names(&d), [(false, "ab", false)]);
    }

    #[test]
    fn marks_select_and_remove_entries() {
        let mut d: Declarations<4, 8> = Declarations::new();
        for n in ["a", "b", "c"] {
            d.insert(false, n, false).unwrap();
        }
        assert!(!d.any(true));
        d.set_marks(true);
        assert!(!d.any(false));
        assert!(d.set_mark(false, "b", false));
        assert!(!d.set_mark(true, "b", false));
        assert_eq!(d.first_mut(false).map(|e| e.name()), Some("b"));
        d.first_mut(false).unwrap().set_mark(true);
        assert!(!d.any(false));
        assert_eq!(
            d.remove_first(true).map(|e| (e.name().len(), e.mark())),
            Some((1, true))
        );
        assert_eq!(d.remove(false, "c"), Some(true));
        assert_eq!(d.remove(false, "c"), None);
        assert_eq!(d.first().map(Declaration::name), Some("b"));
        assert_eq!(d.pop_first().map(|e| e.is_service()), Some(false));
        assert_eq!(d.pop_first(), None);
        assert_eq!(d.remove_first(false), None);
    }
}
