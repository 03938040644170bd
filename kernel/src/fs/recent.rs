//! A small map from paths, bounded by count, the least recently used entry dropped
//! first: the disk's remembered lookups and idle open files (`disk.rs`).
//!
//! Lookups are O(log n); an insert into a full map finds the oldest entry by a scan, so
//! it is for maps of a few thousand entries at most, where a scan costs far less than
//! the path walk the entry saves.

use alloc::collections::BTreeMap;
use alloc::string::String;

/// A small map bounded by count, the least recently used entry dropped first.
pub struct Recent<V> {
    entries: BTreeMap<String, (u64, V)>,
    limit: usize,
    clock: u64,
}

impl<V> Recent<V> {
    /// An empty map of at most `limit` entries (0: it keeps nothing).
    pub fn new(limit: usize) -> Self {
        Recent {
            entries: BTreeMap::new(),
            limit,
            clock: 0,
        }
    }

    /// The value under `key`, now the most recently used.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, value)| {
            *used = clock;
            &*value
        })
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes and returns the value under `key`.
    pub fn take(&mut self, key: &str) -> Option<V> {
        self.entries.remove(key).map(|(_, value)| value)
    }

    /// Puts `value` under `key` (replacing what was there), dropping the least recently
    /// used entry when the map is full.
    pub fn insert(&mut self, key: String, value: V) {
        if self.limit == 0 {
            return;
        }
        if self.entries.len() >= self.limit && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(key, (self.clock, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first_and_the_size_stays_bounded() {
        let mut recent = Recent::new(3);
        for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
            recent.insert(key.into(), value);
        }
        assert_eq!(recent.get("a"), Some(&1)); // a is now the most recent; b the least
        recent.insert("d".into(), 4);
        assert_eq!(recent.get("b"), None);
        assert_eq!(recent.get("a"), Some(&1));
        assert_eq!(recent.get("c"), Some(&3));
        assert_eq!(recent.get("d"), Some(&4));
        for index in 0..1000 {
            recent.insert(alloc::format!("many/{index}"), index);
            assert!(recent.len() <= 3);
        }
        assert_eq!(recent.get("many/999"), Some(&999));
    }

    #[test]
    fn replacing_a_key_keeps_one_entry_and_take_removes_it() {
        let mut recent = Recent::new(2);
        recent.insert("x".into(), 1);
        recent.insert("x".into(), 2);
        recent.insert("y".into(), 3);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent.take("x"), Some(2));
        assert_eq!(recent.take("x"), None);
        assert_eq!(recent.get("y"), Some(&3));
    }

    #[test]
    fn a_map_of_no_entries_keeps_nothing() {
        let mut recent = Recent::new(0);
        recent.insert("x".into(), 1);
        assert_eq!(recent.get("x"), None);
        assert_eq!(recent.len(), 0);
    }
}
