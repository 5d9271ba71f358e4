//! Reference models of the `topic` tables, shared by the property tests
//! (`core/tests/topic_model.rs`) and the `topic_table` fuzz target
//! (`fuzz/fuzz_targets/topic_table.rs`), which include this file with
//! `#[path]`: plain `Vec`s of counted entries in first-subscribed order,
//! with the capacities of the table under test.
#![allow(dead_code)] // each includer uses a part

use banyan_core::topic::Error;

/// Model of `topic::Table<N, L>`: `(topic, count)` entries.
pub struct TableModel {
    /// The entries, in first-subscribed order.
    pub entries: Vec<(Vec<u8>, u32)>,
    /// Most entries (`N`).
    pub max: usize,
    /// Longest topic (`L`).
    pub max_len: usize,
}

impl TableModel {
    /// An empty model of a `Table<max, max_len>`.
    pub fn new(max: usize, max_len: usize) -> Self {
        TableModel {
            entries: Vec::new(),
            max,
            max_len,
        }
    }

    /// Where `t` is held.
    pub fn pos(&self, t: &[u8]) -> Option<usize> {
        self.entries.iter().position(|(x, _)| x == t)
    }

    /// The count of `t` (0 when not held).
    pub fn count(&self, t: &[u8]) -> u32 {
        self.pos(t).map_or(0, |i| self.entries[i].1)
    }

    pub fn subscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        if t.len() > self.max_len {
            return Err(Error::TooLong);
        }
        match self.pos(t) {
            Some(i) => {
                self.entries[i].1 += 1;
                Ok(self.entries[i].1)
            }
            None if self.entries.len() == self.max => Err(Error::Full),
            None => {
                self.entries.push((t.to_vec(), 1));
                Ok(1)
            }
        }
    }

    pub fn unsubscribe(&mut self, t: &[u8]) -> Result<u32, Error> {
        let i = self.pos(t).ok_or(Error::NotSubscribed)?;
        self.entries[i].1 -= 1;
        let left = self.entries[i].1;
        if left == 0 {
            self.entries.remove(i);
        }
        Ok(left)
    }

    pub fn remove(&mut self, t: &[u8]) -> u32 {
        self.pos(t).map_or(0, |i| self.entries.remove(i).1)
    }

    /// The entries whose topic is a prefix of `t`, in order.
    pub fn matching(&self, t: &[u8]) -> Vec<(Vec<u8>, u32)> {
        self.entries
            .iter()
            .filter(|(x, _)| t.starts_with(x))
            .cloned()
            .collect()
    }
}

/// Model of `topic::Subscribers<u8, N, L>` (and, without limits, of
/// `topic::Index<u8>`): `(subscriber, topic, count)` entries.
pub struct SubsModel {
    /// The entries, in first-subscribed order.
    pub entries: Vec<(u8, Vec<u8>, u32)>,
    /// Most entries (`N`; `usize::MAX` for the growable `Index`).
    pub max: usize,
    /// Longest topic (`L`; `usize::MAX` for the `Index`).
    pub max_len: usize,
}

impl SubsModel {
    /// An empty model with these limits.
    pub fn new(max: usize, max_len: usize) -> Self {
        SubsModel {
            entries: Vec::new(),
            max,
            max_len,
        }
    }

    /// `true` when some subscriber holds `t`.
    pub fn held(&self, t: &[u8]) -> bool {
        self.entries.iter().any(|(_, x, _)| x == t)
    }

    /// `Ok(true)` when `t` is new to the union of topics.
    pub fn subscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        if t.len() > self.max_len {
            return Err(Error::TooLong);
        }
        let new = !self.held(t);
        match self.entries.iter().position(|(i, x, _)| *i == id && x == t) {
            Some(p) => self.entries[p].2 += 1,
            None if self.entries.len() == self.max => return Err(Error::Full),
            None => self.entries.push((id, t.to_vec(), 1)),
        }
        Ok(new)
    }

    /// `Ok(true)` when `t` left the union of topics.
    pub fn unsubscribe(&mut self, id: u8, t: &[u8]) -> Result<bool, Error> {
        let p = self
            .entries
            .iter()
            .position(|(i, x, _)| *i == id && x == t)
            .ok_or(Error::NotSubscribed)?;
        self.entries[p].2 -= 1;
        if self.entries[p].2 == 0 {
            self.entries.remove(p);
        }
        Ok(!self.held(t))
    }

    /// Removes every entry of `id`: how many, and the topics that left the
    /// union (in entry order).
    pub fn remove_subscriber(&mut self, id: u8) -> (usize, Vec<Vec<u8>>) {
        let mine: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(i, _, _)| *i == id)
            .map(|(_, x, _)| x.clone())
            .collect();
        self.entries.retain(|(i, _, _)| *i != id);
        let gone = mine.iter().filter(|x| !self.held(x)).cloned().collect();
        (mine.len(), gone)
    }
}
