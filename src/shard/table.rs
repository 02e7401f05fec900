//! The keyspace's dictionary: linear hashing over small segments, so that
//! growing it never rehashes the whole table at once.
//!
//! A single hash table doubles when full and rehashes every entry in one
//! step: at 4M keys that is tens of milliseconds during which the shard
//! serves nobody. Redis avoids that with incremental rehashing across two
//! tables. Here the table is a list of *segments*, each a small
//! insertion-ordered map (dense `entries` in 16 KiB chunks plus a
//! [`LineIndex`] of cache-line buckets). When the average segment passes
//! [`SEG_LOAD`] entries, one segment is split in
//! two (Litwin's linear hashing): segment `split` gives the entries whose
//! next hash bit is set to a new segment at the end. Each growth step costs
//! one segment's worth of work, a fraction of a millisecond, whatever the
//! table's size.
//!
//! Addressing: with `2^level + split` segments, a key with hash bits `b`
//! (bits 32.. of its 64-bit hash, clear of the bits the segment's own index
//! table uses) lives in `b mod 2^level`, or in `b mod 2^(level+1)` when that
//! is below `split` (already split this round).
//!
//! Walk order (SCAN, snapshots): segments upwards, entries inside one
//! segment downwards. A removal moves a segment's last (already visited)
//! entry into the hole, and a split keeps the staying entries in order,
//! only moving them down, and sends the rest to a segment above every
//! cursor; so an entry present for a whole walk is visited at least once,
//! the guarantee Redis's SCAN gives. Segments are never merged (merging
//! would move unvisited entries behind a cursor); a segment that empties
//! shrinks its own storage.
//!
//! Memory per entry: the key and entry themselves, plus 7-15 bytes of index
//! (6.4 bytes per slot, 7/8 to 7/32 full; no stored hash: a split or a
//! segment's own growth recomputes hashes,
//! which for short keys costs less than storing them). Entries live in
//! fixed 16 KiB chunks rather than one array per segment: arrays of a few
//! hundred KiB, reallocated as segments grow and split, left ~25 % of the
//! RSS as holes in glibc's heap; same-size chunks are reused exactly, and
//! growing a segment copies nothing.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::key::Key;
use super::keyspace::Entry;
use super::lineidx::LineIndex;

/// Average entries per segment before the next split: a split rehashes
/// about twice this many entries, ~0.2 ms here.
const SEG_LOAD: usize = 4096;

/// A walk position: segment in the high 32 bits, and in the low 32 bits
/// how many entries of that segment are still to visit (`u32::MAX` = all).
pub type Pos = u64;

/// A walk position's segment and remaining count.
#[inline]
fn unpack(pos: Pos) -> (usize, u64) {
    ((pos >> 32) as usize, pos & REST)
}

/// Where a walk starts.
pub const WALK_START: Pos = REST;
const REST: u64 = u32::MAX as u64;

/// Entries per chunk: 256 x 64 bytes.
const CHUNK: usize = 256;

/// A segment's entries (or a [`super::dict::Dict`]'s), densely numbered,
/// stored in chunks of [`CHUNK`]. The first chunk is held inline and
/// grows like a `Vec` up to a full chunk, so a small database or a small
/// collection costs one allocation; only the last chunk is partly filled.
#[derive(Clone)]
pub(crate) struct Entries<T> {
    first: Vec<T>,
    more: Vec<Vec<T>>,
}

/// The items of [`Entries`], by reference.
pub(crate) type EntriesIter<'a, T> =
    std::iter::Chain<std::slice::Iter<'a, T>, std::iter::Flatten<std::slice::Iter<'a, Vec<T>>>>;

/// The items of [`Entries`], by value.
pub(crate) type EntriesIntoIter<T> =
    std::iter::Chain<std::vec::IntoIter<T>, std::iter::Flatten<std::vec::IntoIter<Vec<T>>>>;

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries {
            first: Vec::new(),
            more: Vec::new(),
        }
    }
}

impl<T> Entries<T> {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self.more.last() {
            None => self.first.len(),
            Some(last) => CHUNK * self.more.len() + last.len(),
        }
    }

    /// Whether it holds no memory at all.
    #[cfg(test)]
    pub(crate) fn is_unallocated(&self) -> bool {
        self.first.capacity() == 0 && self.more.is_empty()
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i < CHUNK {
            self.first.get(i)
        } else {
            let j = i - CHUNK;
            self.more.get(j / CHUNK)?.get(j % CHUNK)
        }
    }

    pub(crate) fn push(&mut self, x: T) {
        if self.more.is_empty() && self.first.len() < CHUNK {
            self.first.push(x);
            return;
        }
        if self.more.last().is_none_or(|c| c.len() == CHUNK) {
            self.more.push(Vec::with_capacity(CHUNK));
        }
        self.more.last_mut().expect("a chunk").push(x);
    }

    /// Removes entry `i`, moving the last one into its place.
    pub(crate) fn swap_remove(&mut self, i: usize) -> T {
        let last = match self.more.last_mut() {
            Some(c) => {
                let x = c.pop().expect("chunks are never empty");
                if c.is_empty() {
                    self.more.pop();
                }
                x
            }
            None => {
                let x = self.first.pop().expect("not empty");
                if self.first.is_empty() {
                    self.first = Vec::new();
                }
                x
            }
        };
        if i == self.len() {
            last
        } else {
            std::mem::replace(&mut self[i], last)
        }
    }

    pub(crate) fn iter(&self) -> EntriesIter<'_, T> {
        self.first.iter().chain(self.more.iter().flatten())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.first.iter_mut().chain(self.more.iter_mut().flatten())
    }
}

impl<T> std::ops::Index<usize> for Entries<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        if i < CHUNK {
            &self.first[i]
        } else {
            let j = i - CHUNK;
            &self.more[j / CHUNK][j % CHUNK]
        }
    }
}

impl<T> std::ops::IndexMut<usize> for Entries<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        if i < CHUNK {
            &mut self.first[i]
        } else {
            let j = i - CHUNK;
            &mut self.more[j / CHUNK][j % CHUNK]
        }
    }
}

impl<T> IntoIterator for Entries<T> {
    type Item = T;
    type IntoIter = EntriesIntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.first
            .into_iter()
            .chain(self.more.into_iter().flatten())
    }
}

/// Asks the CPU to load the cache lines of `*x` (at most two: an entry
/// need not be line-aligned) without waiting for them.
#[inline(always)]
pub(crate) fn prefetch_lines<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = (x as *const T).cast::<i8>();
        // SAFETY: a prefetch is a hint: it never faults and reads nothing
        // the program sees, whatever the address; SSE is baseline x86_64.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(std::mem::size_of::<T>() - 1));
        }
    }
}

struct Seg<V> {
    entries: Entries<(Key, V)>,
    index: LineIndex,
}

impl<V> Default for Seg<V> {
    fn default() -> Self {
        Seg {
            entries: Entries::default(),
            index: LineIndex::default(),
        }
    }
}

impl<V> Seg<V> {
    #[inline]
    fn find(&self, h: u64, key: &[u8]) -> Option<usize> {
        let e = &self.entries;
        self.index
            .find(h, |i| e[i as usize].0.as_bytes() == key)
            .map(|i| i as usize)
    }

    /// Appends an entry known to be absent; returns its index.
    fn push(&mut self, h: u64, key: Key, entry: V, st: &RandomState) -> usize {
        let i = self.entries.len();
        self.entries.push((key, entry));
        let e = &self.entries;
        self.index
            .insert(h, i as u32, |j| st.hash_one(e[j as usize].0.as_bytes()));
        i
    }

    /// Removes entry `i` (hash `h`), moving the last entry into its place.
    fn swap_remove(&mut self, h: u64, i: usize, st: &RandomState) -> (Key, V) {
        self.index.remove(h, i as u32);
        let last = self.entries.len() - 1;
        if i != last {
            let lh = st.hash_one(self.entries[last].0.as_bytes());
            self.index.renumber(lh, last as u32, i as u32);
        }
        let out = self.entries.swap_remove(i);
        let e = &self.entries;
        self.index
            .shrink_if_sparse(|j| st.hash_one(e[j as usize].0.as_bytes()));
        out
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The dictionary of one database on one shard (`V` = [`Entry`]), or a
/// set of keys (`V` = `()`, the TTL index).
pub struct Table<V = Entry> {
    segs: Vec<Seg<V>>,
    level: u32,
    split: usize,
    len: usize,
    st: RandomState,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            segs: vec![Seg::default()],
            level: 0,
            split: 0,
            len: 0,
            st: RandomState::default(),
        }
    }
}

impl<V> Table<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.st.hash_one(key)
    }

    #[inline]
    fn seg_of(&self, h: u64) -> usize {
        let b = (h >> 32) as usize;
        let s = b & ((1usize << self.level) - 1);
        if s < self.split {
            b & ((1usize << (self.level + 1)) - 1)
        } else {
            s
        }
    }

    /// First stage of a batched lookup: starts loading the index bucket
    /// `key` hashes to, without waiting for it, and returns the hash for
    /// [`Table::prefetch_entry`].
    #[inline]
    pub fn prefetch_bucket(&self, key: &[u8]) -> u64 {
        let h = self.hash(key);
        self.segs[self.seg_of(h)].index.prefetch(h);
        h
    }

    /// Second stage: reads the (by now loaded) bucket and starts loading
    /// the entries whose tags match.
    #[inline]
    pub fn prefetch_entry(&self, h: u64) {
        let seg = &self.segs[self.seg_of(h)];
        let e = &seg.entries;
        seg.index.candidates(h, |i| {
            if let Some(x) = e.get(i as usize) {
                prefetch_lines(x);
            }
        });
    }

    /// The location (segment, index) of a key, valid until the next change.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Option<(usize, usize)> {
        let h = self.hash(key);
        let s = self.seg_of(h);
        self.segs[s].find(h, key).map(|i| (s, i))
    }

    #[inline]
    pub fn at(&self, loc: (usize, usize)) -> &V {
        &self.segs[loc.0].entries[loc.1].1
    }

    #[inline]
    pub fn at_mut(&mut self, loc: (usize, usize)) -> &mut V {
        &mut self.segs[loc.0].entries[loc.1].1
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.locate(key).map(|l| self.at(l))
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.locate(key).map(|l| self.at_mut(l))
    }

    pub fn get_key_value(&self, key: &[u8]) -> Option<(&Key, &V)> {
        self.locate(key).map(|(s, i)| {
            let (k, e) = &self.segs[s].entries[i];
            (k, e)
        })
    }

    /// Inserts or replaces; returns the previous entry. `may_split` is
    /// false while a snapshot walks the table: a split moves entries the
    /// walk has passed to a segment it has not reached. Splits due meanwhile
    /// happen afterwards, one per insert.
    pub fn insert(&mut self, key: &[u8], entry: V, may_split: bool) -> Option<V> {
        let h = self.hash(key);
        let s = self.seg_of(h);
        if let Some(i) = self.segs[s].find(h, key) {
            return Some(std::mem::replace(&mut self.segs[s].entries[i].1, entry));
        }
        self.segs[s].push(h, Key::new(key), entry, &self.st);
        self.len += 1;
        if may_split && self.len > SEG_LOAD * self.segs.len() {
            self.split_one();
        }
        None
    }

    /// Removes a key; returns its entry and where it was (the segment's
    /// last entry now fills that place).
    pub fn remove(&mut self, key: &[u8]) -> Option<((usize, usize), V)> {
        let h = self.hash(key);
        let s = self.seg_of(h);
        let i = self.segs[s].find(h, key)?;
        self.len -= 1;
        Some(((s, i), self.segs[s].swap_remove(h, i, &self.st).1))
    }

    /// Splits segment `split` into itself and a new last segment.
    fn split_one(&mut self) {
        let bit = self.level;
        let old = std::mem::take(&mut self.segs[self.split]);
        let half = old.len() / 2 + 8;
        let mut keep = Seg {
            entries: Entries::default(),
            index: LineIndex::with_capacity(half),
        };
        let mut moved = Seg {
            entries: Entries::default(),
            index: LineIndex::with_capacity(half),
        };
        for (k, e) in old.entries {
            let h = self.st.hash_one(k.as_bytes());
            if (h >> 32 >> bit) & 1 == 1 {
                moved.push(h, k, e, &self.st);
            } else {
                keep.push(h, k, e, &self.st);
            }
        }
        self.segs[self.split] = keep;
        self.segs.push(moved);
        self.split += 1;
        if self.split == 1 << self.level {
            self.level += 1;
            self.split = 0;
        }
    }

    /// The entry at a uniformly random position (rejection sampling over
    /// segments, whose sizes stay within a small factor of each other).
    pub fn random(&self) -> Option<(&Key, &V)> {
        if self.len == 0 {
            return None;
        }
        let n = self.segs.len();
        let bound = 3 * self.len / n + 16;
        for _ in 0..64 {
            let seg = &self.segs[fastrand::usize(..n)];
            let i = fastrand::usize(..bound);
            if let Some((k, e)) = seg.entries.get(i) {
                return Some((k, e));
            }
        }
        let mut g = fastrand::usize(..self.len);
        for seg in &self.segs {
            if g < seg.len() {
                let (k, e) = &seg.entries[g];
                return Some((k, e));
            }
            g -= seg.len();
        }
        None
    }

    /// Every entry, segment by segment.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.segs
            .iter()
            .flat_map(|s| s.entries.iter().map(|(k, e)| (k, e)))
    }

    /// The next entry of a walk from `pos` (see the module doc for the
    /// order), and the position after it; `None` when the walk is over.
    pub fn walk(&self, pos: Pos) -> Option<(Pos, &Key, &V)> {
        let (mut s, mut r) = unpack(pos);
        while s < self.segs.len() {
            let seg = &self.segs[s];
            r = r.min(seg.len() as u64);
            if r > 0 {
                r -= 1;
                let (k, e) = &seg.entries[r as usize];
                let next = if r == 0 {
                    ((s as u64 + 1) << 32) | REST
                } else {
                    ((s as u64) << 32) | r
                };
                return Some((next, k, e));
            }
            s += 1;
            r = REST;
        }
        None
    }

    /// Whether a walk now at `pos` has passed location `loc` (see the module
    /// doc: segments below the walk's are done, and in its own the entries
    /// from the remaining count up).
    pub fn walked(&self, pos: Pos, loc: (usize, usize)) -> bool {
        let (s, r) = unpack(pos);
        match loc.0.cmp(&s) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => loc.1 as u64 >= r.min(self.segs[s].len() as u64),
        }
    }

    /// Whether the walk at `pos` had passed the last entry of segment `seg`
    /// before a removal shrank the segment by one (that entry now fills
    /// the removal's hole).
    pub fn walked_old_last(&self, pos: Pos, seg: usize) -> bool {
        let (s, r) = unpack(pos);
        let old_len = self.segs.get(seg).map_or(0, |g| g.len()) as u64 + 1;
        seg < s || (seg == s && r < old_len)
    }

    /// The key stored at a location, if any.
    pub fn key_at(&self, loc: (usize, usize)) -> Option<&Key> {
        self.segs.get(loc.0)?.entries.get(loc.1).map(|(k, _)| k)
    }

    /// Whether a walk at `pos` has nothing left to visit.
    pub fn walk_done(&self, pos: Pos) -> bool {
        let (s, r) = unpack(pos);
        s >= self.segs.len() || (s + 1 == self.segs.len() && r.min(self.segs[s].len() as u64) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::keyspace::Value;
    use std::collections::HashSet;

    fn ent(i: usize) -> Entry {
        Entry {
            value: Value::Str(crate::shard::sval::Str::from(format!("{i}").as_bytes())),
            expire_at: i as u64,
        }
    }

    #[test]
    fn grows_by_segments_and_finds_everything() {
        let mut t = Table::default();
        let n = SEG_LOAD * 9 + 123;
        for i in 0..n {
            assert!(t.insert(format!("k{i}").as_bytes(), ent(i), true).is_none());
        }
        assert_eq!(t.len(), n);
        assert!(t.segs.len() >= 9, "split {} times", t.segs.len());
        for i in 0..n {
            assert_eq!(
                t.get(format!("k{i}").as_bytes()).unwrap().expire_at,
                i as u64
            );
        }
        assert!(t.insert(b"k7", ent(70), true).is_some());
        assert_eq!(t.len(), n);
        for i in (0..n).step_by(2) {
            assert!(t.remove(format!("k{i}").as_bytes()).is_some());
        }
        assert!(t.remove(b"k0").is_none());
        assert_eq!(t.len(), n / 2);
        for i in 0..n {
            assert_eq!(
                t.get(format!("k{i}").as_bytes()).is_some(),
                i % 2 == 1,
                "k{i}"
            );
        }
        assert_eq!(t.iter().count(), n / 2);
    }

    #[test]
    fn walk_visits_survivors_across_removals_and_splits() {
        let mut t = Table::default();
        for i in 0..SEG_LOAD * 3 {
            t.insert(format!("k{i}").as_bytes(), ent(i), true);
        }
        let mut seen = HashSet::new();
        let mut pos = WALK_START;
        let mut next_new = SEG_LOAD * 3;
        let mut step = 0;
        while let Some((p, k, _)) = t.walk(pos) {
            seen.insert(k.as_bytes().to_vec());
            pos = p;
            step += 1;
            if step % 3 == 0 && step < SEG_LOAD * 3 {
                // Remove odd keys (may be missed) and insert new ones,
                // forcing splits while the walk is under way.
                t.remove(format!("k{}", (step * 37 % (SEG_LOAD * 3 / 2)) * 2 + 1).as_bytes());
                for _ in 0..4 {
                    t.insert(format!("k{next_new}").as_bytes(), ent(next_new), true);
                    next_new += 1;
                }
            }
        }
        assert!(t.segs.len() > 3, "the walk saw splits");
        for i in (0..SEG_LOAD * 3).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
    }

    #[test]
    fn random_covers_segments() {
        let mut t = Table::default();
        assert!(t.random().is_none());
        for i in 0..SEG_LOAD * 4 {
            t.insert(format!("k{i}").as_bytes(), ent(i), true);
        }
        let mut seen = HashSet::new();
        for _ in 0..20_000 {
            seen.insert(t.random().unwrap().0.as_bytes().to_vec());
        }
        // 20k draws over 16k keys: about 1 - e^-1.22 = 70 % distinct.
        assert!(seen.len() > SEG_LOAD * 4 * 6 / 10, "{}", seen.len());
    }

    #[test]
    fn emptied_segments_shrink() {
        let mut t = Table::default();
        for i in 0..SEG_LOAD * 2 {
            t.insert(format!("k{i}").as_bytes(), ent(i), true);
        }
        for i in 0..SEG_LOAD * 2 {
            t.remove(format!("k{i}").as_bytes());
        }
        assert!(t.is_empty());
        assert!(t.segs.iter().all(|s| s.entries.is_unallocated()));
        assert!(t.segs.iter().all(|s| s.index.capacity() <= 64 * 2));
        assert!(t.walk(WALK_START).is_none());
    }
}
