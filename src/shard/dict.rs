//! The dictionary of a hash or a set: insertion-ordered like `IndexMap`
//! (dense positions for HSCAN/SSCAN cursors and random picks, `swap_remove`
//! moving the last entry into the hole), but it grows without a pause.
//!
//! `IndexMap` doubles its index and its entry vector in one step: a single
//! hash of 4M fields stalled the shard for 185 ms (then 89, 44, 22 ms at
//! the earlier doublings), where Redis's dict, rehashed incrementally,
//! never passed 6 ms. Here:
//!
//! - entries live in fixed-size chunks ([`Entries`]), so growing never
//!   copies them;
//! - the index is a [`LineIndex`]; when it fills, a new one of twice the
//!   size is allocated zeroed (fresh pages, no write-through) and the old
//!   one is drained into it [`MIGRATE_PER_OP`] buckets per insert or
//!   removal, as Redis migrates its dict a bucket per operation. Until the
//!   old one is empty, lookups try the new index, then the old.
//!
//! Up to [`SMALL`] entries there is no index at all (lookups compare keys
//! in order), so a small hash or set costs its entries and little else.
//!
//! Migration finishes long before the new index could fill: it holds twice
//! the old capacity, and draining the old takes capacity / (10 slots x 7/8
//! x MIGRATE_PER_OP) inserts. Hashes are not stored; migration recomputes
//! them from the keys (foldhash over short strings).

use std::borrow::Borrow;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::lineidx::LineIndex;
use super::table::{Entries, EntriesIntoIter, EntriesIter};

/// Old-index buckets moved to the new index per insert or removal.
const MIGRATE_PER_OP: usize = 1;

/// Up to this many entries a dictionary has no index: a lookup compares
/// the keys in order (inline strings, one or two cache lines), as Redis
/// scans a small hash's listpack. Most hashes and sets are this small,
/// and an index would be a third of their memory.
const SMALL: usize = 8;

/// The hash of the key at position `j`: what an index needs to place (or
/// re-place) an entry, since hashes are not stored.
fn hash_at<K: Borrow<[u8]>, V>(st: &RandomState, e: &Entries<(K, V)>, j: u32) -> u64 {
    st.hash_one(e[j as usize].0.borrow())
}

/// An insertion-ordered map from byte-string keys that grows
/// incrementally (see the module doc).
#[derive(Clone)]
pub struct Dict<K, V> {
    entries: Entries<(K, V)>,
    index: LineIndex,
    /// The index being drained, and its next bucket to move.
    old: Option<Box<(LineIndex, usize)>>,
    st: RandomState,
}

impl<K, V> Default for Dict<K, V> {
    fn default() -> Self {
        Dict {
            entries: Entries::default(),
            index: LineIndex::default(),
            old: None,
            st: RandomState::default(),
        }
    }
}

impl<K: Borrow<[u8]>, V> Dict<K, V> {
    /// A dictionary that holds `n` entries before its first growth.
    pub fn with_capacity(n: usize) -> Self {
        if n <= SMALL {
            return Dict::default();
        }
        Dict {
            index: LineIndex::with_capacity(n),
            ..Dict::default()
        }
    }

    /// Whether the dictionary is still small enough to have no index.
    #[inline]
    fn unindexed(&self) -> bool {
        self.index.buckets() == 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    #[inline]
    fn hash(&self, k: &[u8]) -> u64 {
        self.st.hash_one(k)
    }

    /// The position of `k`.
    pub fn get_index_of(&self, k: &[u8]) -> Option<usize> {
        if self.unindexed() {
            return self.entries.iter().position(|(x, _)| x.borrow() == k);
        }
        let h = self.hash(k);
        let e = &self.entries;
        let eq = |i: u32| e[i as usize].0.borrow() == k;
        self.index
            .find(h, eq)
            .or_else(|| self.old.as_ref()?.0.find(h, eq))
            .map(|i| i as usize)
    }

    pub fn contains_key(&self, k: &[u8]) -> bool {
        self.get_index_of(k).is_some()
    }

    pub fn get(&self, k: &[u8]) -> Option<&V> {
        self.get_index_of(k).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, k: &[u8]) -> Option<&mut V> {
        self.get_index_of(k).map(|i| &mut self.entries[i].1)
    }

    /// The entry at position `i`.
    pub fn get_index(&self, i: usize) -> Option<(&K, &V)> {
        self.entries.get(i).map(|(k, v)| (k, v))
    }

    /// Inserts `k`, or replaces its value (keeping its key and position);
    /// returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some(i) = self.get_index_of(k.borrow()) {
            return Some(std::mem::replace(&mut self.entries[i].1, v));
        }
        self.insert_new(k, v);
        None
    }

    /// Appends `k`, known to be absent; returns its position.
    pub fn insert_new(&mut self, k: K, v: V) -> usize {
        if self.unindexed() {
            if self.entries.len() < SMALL {
                self.entries.push((k, v));
                return self.entries.len() - 1;
            }
            let mut ix = LineIndex::with_capacity(SMALL * 4);
            let (e, st) = (&self.entries, &self.st);
            for j in 0..e.len() as u32 {
                ix.insert(hash_at(st, e, j), j, |x| hash_at(st, e, x));
            }
            self.index = ix;
        }
        self.migrate();
        let h = self.hash(k.borrow());
        if self.entries.len() + 1 > self.index.capacity() {
            self.grow();
        }
        let i = self.entries.len();
        self.entries.push((k, v));
        let (e, st) = (&self.entries, &self.st);
        self.index.insert(h, i as u32, |j| hash_at(st, e, j));
        i
    }

    /// Removes `k`, moving the last entry into its place.
    pub fn swap_remove(&mut self, k: &[u8]) -> Option<V> {
        let i = self.get_index_of(k)?;
        self.swap_remove_index(i).map(|(_, v)| v)
    }

    /// Removes the entry at position `i`, moving the last into its place.
    pub fn swap_remove_index(&mut self, i: usize) -> Option<(K, V)> {
        if i >= self.entries.len() {
            return None;
        }
        if self.unindexed() {
            return Some(self.entries.swap_remove(i));
        }
        self.migrate();
        let h = self.hash(self.entries[i].0.borrow());
        if !self.index.remove(h, i as u32)
            && let Some(old) = self.old.as_mut()
        {
            old.0.remove(h, i as u32);
        }
        let last = self.entries.len() - 1;
        if i != last {
            let lh = self.hash(self.entries[last].0.borrow());
            if !self.index.renumber(lh, last as u32, i as u32)
                && let Some(old) = self.old.as_mut()
            {
                old.0.renumber(lh, last as u32, i as u32);
            }
        }
        Some(self.entries.swap_remove(i))
    }

    /// Starts a migration into an index of twice the entries, finishing
    /// any earlier one first (which the insert rate never forces; see the
    /// module doc).
    fn grow(&mut self) {
        while self.old.is_some() {
            self.migrate();
        }
        let fresh = LineIndex::with_capacity((self.entries.len() + 1) * 2);
        let old = std::mem::replace(&mut self.index, fresh);
        if !old.is_empty() {
            self.old = Some(Box::new((old, 0)));
        }
    }

    /// Moves up to [`MIGRATE_PER_OP`] buckets of the old index into the
    /// current one; drops the old index once it is empty.
    fn migrate(&mut self) {
        let Some(old) = self.old.as_mut() else {
            return;
        };
        let (e, st, index) = (&self.entries, &self.st, &mut self.index);
        for _ in 0..MIGRATE_PER_OP {
            if old.0.is_empty() || old.1 == old.0.buckets() {
                break;
            }
            old.0.drain_bucket(old.1, |i| {
                index.insert(hash_at(st, e, i), i, |j| hash_at(st, e, j));
            });
            old.1 += 1;
        }
        if old.0.is_empty() {
            self.old = None;
        }
    }

    /// Entries in position order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl<K: Borrow<[u8]>, V: PartialEq> PartialEq for Dict<K, V> {
    /// Map equality, whatever the order (as `IndexMap`'s).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k.borrow()) == Some(v))
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Borrow<[u8]>, V> FromIterator<(K, V)> for Dict<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(it: I) -> Self {
        let mut d = Dict::default();
        d.extend(it);
        d
    }
}

impl<K: Borrow<[u8]>, V> Extend<(K, V)> for Dict<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, it: I) {
        for (k, v) in it {
            self.insert(k, v);
        }
    }
}

impl<'a, K: Borrow<[u8]>, V> IntoIterator for &'a Dict<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<EntriesIter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K, V> IntoIterator for Dict<K, V> {
    type Item = (K, V);
    type IntoIter = EntriesIntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A set on [`Dict`]: members in insertion order, growing incrementally.
#[derive(Clone)]
pub struct DictSet<K> {
    map: Dict<K, ()>,
}

impl<K> Default for DictSet<K> {
    fn default() -> Self {
        DictSet {
            map: Dict::default(),
        }
    }
}

impl<K: Borrow<[u8]>> std::ops::Index<usize> for DictSet<K> {
    type Output = K;
    fn index(&self, i: usize) -> &K {
        self.get_index(i).expect("set position in range")
    }
}

impl<'a, K: Borrow<[u8]>> IntoIterator for &'a DictSet<K> {
    type Item = &'a K;
    type IntoIter = std::iter::Map<EntriesIter<'a, (K, ())>, fn(&'a (K, ())) -> &'a K>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.entries.iter().map(|(k, _)| k)
    }
}

impl<K> IntoIterator for DictSet<K> {
    type Item = K;
    type IntoIter = std::iter::Map<EntriesIntoIter<(K, ())>, fn((K, ())) -> K>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.entries.into_iter().map(|(k, ())| k)
    }
}

impl<K: Borrow<[u8]>> DictSet<K> {
    pub fn with_capacity(n: usize) -> Self {
        DictSet {
            map: Dict::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds `k`; false if it was there.
    pub fn insert(&mut self, k: K) -> bool {
        if self.map.contains_key(k.borrow()) {
            return false;
        }
        self.map.insert_new(k, ());
        true
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.map.contains_key(k)
    }

    pub fn get_index_of(&self, k: &[u8]) -> Option<usize> {
        self.map.get_index_of(k)
    }

    /// Removes `k`, moving the last member into its place; false if absent.
    pub fn swap_remove(&mut self, k: &[u8]) -> bool {
        self.map.swap_remove(k).is_some()
    }

    pub fn get_index(&self, i: usize) -> Option<&K> {
        self.map.get_index(i).map(|(k, _)| k)
    }

    pub fn swap_remove_index(&mut self, i: usize) -> Option<K> {
        self.map.swap_remove_index(i).map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }
}

impl<K: Borrow<[u8]>> PartialEq for DictSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: std::fmt::Debug> std::fmt::Debug for DictSet<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.map.entries.iter().map(|(k, _)| k))
            .finish()
    }
}

impl<K: Borrow<[u8]>> FromIterator<K> for DictSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(it: I) -> Self {
        let mut s = DictSet::default();
        s.extend(it);
        s
    }
}

impl<K: Borrow<[u8]>> Extend<K> for DictSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, it: I) {
        for k in it {
            self.insert(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn k(i: u32) -> Vec<u8> {
        format!("field:{i}").into_bytes()
    }

    /// Inserts, replacements and removals by key and by position against a
    /// HashMap, across several growths with migrations under way (keys
    /// from 60k), or around the unindexed size (keys from 12); every key
    /// stays findable at its position.
    #[test]
    fn matches_a_model_across_migrations() {
        for keys in [60_000, 12] {
            run_model(keys);
        }
    }

    fn run_model(keys: u32) {
        let mut d: Dict<Vec<u8>, u32> = Dict::default();
        let mut model: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut migrations_seen = 0;
        for round in 0..120_000u32 {
            match rng.u32(..10) {
                0..=5 => {
                    let key = k(rng.u32(..keys));
                    assert_eq!(d.insert(key.clone(), round), model.insert(key, round));
                }
                6..=7 => {
                    let key = k(rng.u32(..keys));
                    assert_eq!(d.swap_remove(&key), model.remove(&key));
                }
                8 if !d.is_empty() => {
                    let i = rng.usize(..d.len());
                    let (key, v) = d.swap_remove_index(i).expect("in range");
                    assert_eq!(model.remove(&key), Some(v));
                }
                _ => {
                    let key = k(rng.u32(..keys));
                    assert_eq!(d.get(&key), model.get(&key));
                }
            }
            migrations_seen += d.old.is_some() as u32;
            if round % 10_007 == 0 {
                for (i, (key, _)) in d.iter().enumerate() {
                    assert_eq!(d.get_index_of(key), Some(i));
                }
            }
        }
        assert_eq!(migrations_seen > 0, keys > 1000, "growth under way");
        assert_eq!(d.len(), model.len());
        for (key, v) in &model {
            assert_eq!(d.get(key), Some(v));
        }
        let back: HashMap<Vec<u8>, u32> = d.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(back, model);
    }

    #[test]
    fn sets_and_equality_ignore_order() {
        let a: DictSet<Vec<u8>> = (0..1000).map(k).collect();
        let b: DictSet<Vec<u8>> = (0..1000).rev().map(k).collect();
        assert_eq!(a, b);
        let mut c = a.clone();
        assert!(!c.insert(k(5)));
        assert!(c.swap_remove(&k(5)));
        assert!(!c.contains(&k(5)));
        assert_ne!(a, c);
        assert_eq!(c.len(), 999);
    }
}
