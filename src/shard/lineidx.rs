//! A segment's hash index with one cache line per bucket, so that a lookup
//! is two memory reads (bucket, entry) and both can be prefetched ahead.
//!
//! `hashbrown`'s layout keeps control bytes and slots in separate arrays:
//! a lookup in a table bigger than L2 reads a control group, then the slot
//! it selects, then the entry, three dependent misses; and the control
//! group's address is private, so a batch of lookups cannot prefetch it.
//! Profiled with `redis-benchmark -t get -P 16` over 100k keys, that chain
//! was a quarter of the server's CPU.
//!
//! Here a bucket is 64 bytes, aligned: [`SLOTS`] 16-bit tags (hash bits
//! 16..32, never 0, which marks a free slot), the matching `u32` entry
//! indexes, and an overflow count: how many stored entries probed past this
//! bucket because it was full. A key lives in its home bucket (`hash &
//! mask`) or, when that was full at insertion, in a later one (linear
//! probing by bucket); a lookup stops at the first bucket whose overflow
//! count is 0. Counts are decremented when such an entry is removed, so
//! chains do not silt up with tombstones (the F14 scheme). A count that
//! reaches `u16::MAX` stays there until the next rebuild: it only makes
//! lookups probe further.
//!
//! Load stays at most 7/8 of the slots; the index doubles past that and
//! halves under 1/4, rebuilding from the entries' recomputed hashes.

/// Slots per bucket: 10 tags (20 bytes), an overflow count and padding
/// (4), 10 indexes (40): one cache line.
const SLOTS: usize = 10;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u16; SLOTS],
    overflow: u16,
    _pad: u16,
    idx: [u32; SLOTS],
}

impl Bucket {
    /// Bit `j` set where `tags[j] == t`.
    #[inline(always)]
    fn matches(&self, t: u16) -> u32 {
        let mut m = 0;
        for (j, &x) in self.tags.iter().enumerate() {
            m |= ((x == t) as u32) << j;
        }
        m
    }
}

/// Bucket storage. Small indexes are a `Vec`. An index of [`MAPPED_MIN`]
/// bytes or more is its own anonymous mapping: page-aligned, and zeroed by
/// the kernel page by page on first touch. A zeroed `Vec` of 64-byte
/// aligned buckets is not: Rust's allocator serves alignment above 16 with
/// `posix_memalign` plus a `memset`, which for a big collection's next
/// index (tens of MB) wrote and faulted every page at once, a 36 ms stall
/// for a hash of 4M fields. Mapped, the faults spread over the migration
/// that fills the index (see `dict`).
enum Buckets {
    Small(Vec<Bucket>),
    Mapped {
        ptr: std::ptr::NonNull<Bucket>,
        n: usize,
    },
}

// SAFETY: `Buckets` owns its mapping outright, as a `Vec` owns its
// buffer; moving it to another thread moves that ownership, and shared
// access is only through `&self` (plain reads).
unsafe impl Send for Buckets {}
unsafe impl Sync for Buckets {}

/// Indexes this big or bigger are mapped (see [`Buckets`]).
const MAPPED_MIN: usize = 256 << 10;

impl Buckets {
    /// `n` empty buckets.
    fn zeroed(n: usize) -> Buckets {
        let bytes = n * std::mem::size_of::<Bucket>();
        if bytes >= MAPPED_MIN {
            // SAFETY: a fresh private anonymous mapping; nothing else
            // refers to the range.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED
                && let Some(ptr) = std::ptr::NonNull::new(p.cast::<Bucket>())
            {
                return Buckets::Mapped { ptr, n };
            }
            // Out of address space: the Vec below reports it as Rust does.
        }
        let empty = Bucket {
            tags: [0; SLOTS],
            overflow: 0,
            _pad: 0,
            idx: [0; SLOTS],
        };
        Buckets::Small(vec![empty; n])
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Small(Vec::new())
    }
}

impl std::ops::Deref for Buckets {
    type Target = [Bucket];
    fn deref(&self) -> &[Bucket] {
        match self {
            Buckets::Small(v) => v,
            // SAFETY: the mapping holds `n` buckets, initialised (all-zero
            // bytes are an empty bucket), alive until `drop`, and
            // page-aligned (more than `Bucket` needs).
            Buckets::Mapped { ptr, n } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *n) },
        }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [Bucket] {
        match self {
            Buckets::Small(v) => v,
            // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
            Buckets::Mapped { ptr, n } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *n)
            },
        }
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        if let Buckets::Mapped { ptr, n } = self {
            // SAFETY: our own mapping of exactly this size, unmapped once.
            unsafe { libc::munmap(ptr.as_ptr().cast(), *n * std::mem::size_of::<Bucket>()) };
        }
    }
}

impl Clone for Buckets {
    fn clone(&self) -> Self {
        let mut b = Buckets::zeroed(self.len());
        b.copy_from_slice(self);
        b
    }
}

#[inline(always)]
fn tag(h: u64) -> u16 {
    ((h >> 16) as u16).max(1)
}

/// The index of one segment: hash → position in the segment's entries.
#[derive(Default, Clone)]
pub struct LineIndex {
    buckets: Buckets,
    len: usize,
}

impl LineIndex {
    /// An index that holds `n` entries without growing.
    pub fn with_capacity(n: usize) -> Self {
        let mut x = LineIndex::default();
        if n > 0 {
            x.buckets = Buckets::zeroed(Self::buckets_for(n));
        }
        x
    }

    /// Buckets, for a migration walking them ([`LineIndex::drain_bucket`]).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Empties bucket `b`, calling `f` with each index it held, and
    /// leaves its overflow count: entries that probed past it into buckets
    /// not yet drained must stay findable (the count only overstates).
    pub fn drain_bucket(&mut self, b: usize, mut f: impl FnMut(u32)) {
        let bk = &mut self.buckets[b];
        for j in 0..SLOTS {
            if bk.tags[j] != 0 {
                bk.tags[j] = 0;
                self.len -= 1;
                f(bk.idx[j]);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Buckets (a power of two) for `n` entries at most 7/8 full.
    fn buckets_for(n: usize) -> usize {
        (n * 8 / 7 / SLOTS + 1).next_power_of_two()
    }

    /// Entries it can hold before it grows.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS * 7 / 8
    }

    /// The bucket a hash starts from (the caller ensures buckets exist).
    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        h as usize & (self.buckets.len() - 1)
    }

    /// The first stored index with hash `h` for which `eq` holds.
    #[inline]
    pub fn find(&self, h: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_slot(h, eq).map(|(b, j)| self.buckets[b].idx[j])
    }

    /// Where that index is stored: (bucket, slot).
    #[inline]
    fn find_slot(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let t = tag(h);
        let mut b = self.home(h);
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            let mut m = bk.matches(t);
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                if eq(bk.idx[j]) {
                    return Some((b, j));
                }
                m &= m - 1;
            }
            if bk.overflow == 0 {
                return None;
            }
            b = (b + 1) & (self.buckets.len() - 1);
        }
        None
    }

    /// Prefetches the home bucket of hash `h`.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        if !self.buckets.is_empty() {
            super::table::prefetch_lines(&self.buckets[self.home(h)]);
        }
    }

    /// Calls `f` with each index in the home bucket of `h` whose tag
    /// matches (candidates to prefetch; entries that overflowed elsewhere
    /// are not offered).
    #[inline(always)]
    pub fn candidates(&self, h: u64, mut f: impl FnMut(u32)) {
        if self.buckets.is_empty() {
            return;
        }
        let bk = &self.buckets[self.home(h)];
        let mut m = bk.matches(tag(h));
        while m != 0 {
            f(bk.idx[m.trailing_zeros() as usize]);
            m &= m - 1;
        }
    }

    /// Stores index `i` under hash `h`; the key must be absent. `rehash`
    /// gives the hash of a stored index, for when the index grows.
    pub fn insert(&mut self, h: u64, i: u32, rehash: impl Fn(u32) -> u64) {
        if self.len + 1 > self.capacity() {
            self.rebuild(Self::buckets_for((self.len + 1) * 2), rehash);
        }
        self.place(h, i);
        self.len += 1;
    }

    /// Puts `i` in the first bucket from `h`'s home with a free slot,
    /// counting the overflow in each full bucket passed.
    fn place(&mut self, h: u64, i: u32) {
        let mask = self.buckets.len() - 1;
        let t = tag(h);
        let mut b = self.home(h);
        loop {
            let bk = &mut self.buckets[b];
            let free = bk.matches(0);
            if free != 0 {
                let j = free.trailing_zeros() as usize;
                bk.tags[j] = t;
                bk.idx[j] = i;
                return;
            }
            bk.overflow = bk.overflow.saturating_add(1);
            b = (b + 1) & mask;
        }
    }

    /// Removes the entry index `i` stored under hash `h`; false if absent.
    pub fn remove(&mut self, h: u64, i: u32) -> bool {
        let Some((b, j)) = self.find_slot(h, |x| x == i) else {
            return false;
        };
        self.buckets[b].tags[j] = 0;
        let mask = self.buckets.len() - 1;
        let mut p = self.home(h);
        while p != b {
            let o = &mut self.buckets[p].overflow;
            if *o != u16::MAX {
                *o -= 1;
            }
            p = (p + 1) & mask;
        }
        self.len -= 1;
        true
    }

    /// Renumbers the entry stored under hash `h` as `old` to `new` (the
    /// segment moved it); false if absent.
    pub fn renumber(&mut self, h: u64, old: u32, new: u32) -> bool {
        match self.find_slot(h, |x| x == old) {
            Some((b, j)) => {
                self.buckets[b].idx[j] = new;
                true
            }
            None => false,
        }
    }

    /// Halves (or more) an index left under 1/4 full by removals.
    pub fn shrink_if_sparse(&mut self, rehash: impl Fn(u32) -> u64) {
        if self.buckets.len() > 4 && self.len < self.capacity() / 4 {
            let n = Self::buckets_for(self.len * 2);
            if n < self.buckets.len() {
                self.rebuild(n, rehash);
            }
        }
    }

    /// Re-places every stored index into `n` fresh buckets.
    fn rebuild(&mut self, n: usize, rehash: impl Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.buckets, Buckets::zeroed(n));
        for bk in old.iter() {
            for j in 0..SLOTS {
                if bk.tags[j] != 0 {
                    self.place(rehash(bk.idx[j]), bk.idx[j]);
                }
            }
        }
    }

    #[cfg(test)]
    fn audit(&self, rehash: impl Fn(u32) -> u64) {
        let mask = self.buckets.len().wrapping_sub(1);
        let mut over = vec![0u32; self.buckets.len()];
        let mut n = 0;
        for (b, bk) in self.buckets.iter().enumerate() {
            for j in 0..SLOTS {
                if bk.tags[j] != 0 {
                    n += 1;
                    let h = rehash(bk.idx[j]);
                    assert_eq!(bk.tags[j], tag(h));
                    let mut p = self.home(h);
                    while p != b {
                        over[p] += 1;
                        p = (p + 1) & mask;
                    }
                }
            }
        }
        assert_eq!(n, self.len);
        for (b, bk) in self.buckets.iter().enumerate() {
            if bk.overflow != u16::MAX {
                assert_eq!(bk.overflow as u32, over[b], "bucket {b}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A weak hash, so that tags collide and buckets overflow often.
    fn h(k: u32) -> u64 {
        let x = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x & 0xFFFF_0000_001F) | ((k as u64 % 7) << 16)
    }

    #[test]
    fn bucket_is_one_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    /// Random inserts, removals and renumbers against a HashMap, with the
    /// overflow counts audited as the index grows and shrinks.
    #[test]
    fn matches_a_model_through_growth_and_shrink() {
        // Entry position -> key, as a segment keeps them (dense).
        let mut keys: Vec<u32> = Vec::new();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut ix = LineIndex::default();
        let mut next = 0u32;
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..40_000 {
            let grow = round < 20_000 || round % 7 == 0;
            if grow || keys.is_empty() {
                let k = next;
                next += 1;
                let i = keys.len() as u32;
                keys.push(k);
                ix.insert(h(k), i, |x| h(keys[x as usize]));
                model.insert(k, i);
            } else {
                // Swap-remove a random position, as Seg does.
                let i = rng.usize(..keys.len()) as u32;
                let k = keys[i as usize];
                assert!(ix.remove(h(k), i));
                let last = keys.len() as u32 - 1;
                if i != last {
                    let lk = keys[last as usize];
                    assert!(ix.renumber(h(lk), last, i));
                    model.insert(lk, i);
                }
                keys.swap_remove(i as usize);
                model.remove(&k);
                ix.shrink_if_sparse(|x| h(keys[x as usize]));
            }
            if round % 4_999 == 0 {
                ix.audit(|x| h(keys[x as usize]));
            }
        }
        ix.audit(|x| h(keys[x as usize]));
        assert!(ix.capacity() < 20_000, "shrank: {}", ix.capacity());
        for k in 0..next {
            let got = ix.find(h(k), |x| keys.get(x as usize) == Some(&k));
            assert_eq!(got, model.get(&k).copied(), "key {k}");
        }
    }

    #[test]
    fn full_chains_wrap_and_stay_findable() {
        // Every key homes to the last of 4 buckets: chains wrap to 0.
        fn hh(k: u32) -> u64 {
            ((k as u64) << 16) | 3
        }
        let mut ix = LineIndex::with_capacity(30);
        for i in 0..30 {
            ix.insert(hh(i), i, hh);
        }
        ix.audit(hh);
        for i in 0..30 {
            assert_eq!(ix.find(hh(i), |x| x == i), Some(i));
        }
        assert_eq!(ix.find(hh(99), |x| x == 99), None);
        for i in (0..30).step_by(2) {
            assert!(ix.remove(hh(i), i));
        }
        ix.audit(hh);
        assert!(!ix.remove(hh(0), 0));
        for i in 0..30 {
            assert_eq!(ix.find(hh(i), |x| x == i).is_some(), i % 2 == 1);
        }
    }
}
