//! Sorted-set storage, owned by one shard: a member -> score dictionary plus
//! an order-statistic B+tree ordered by (score, member).
//!
//! Redis keeps the order in a skiplist with spans. A skiplist descent is a
//! chain of ~2 log2(n) dependent cache misses, one per node visited, and
//! ZADD on an existing member makes two descents (unlink, relink). A B+tree
//! reaches the same entry in log_16(n) node visits, each a short binary
//! search within a few adjacent cache lines, so it does the same work with
//! a fraction of the misses: a score change on a 100k-member set took
//! 3.42 µs with the skiplist this replaced and ~1.45 µs here
//! (`benches/hot_path.rs` `zset_update`).
//!
//! ```text
//!             inner: children [a  b  c], counts [3  2  3], separators [k3 k5]
//!                        /        |        \
//! leaves:        [k0 k1 k2] <-> [k3 k4] <-> [k5 k6 k7]      (linked both ways)
//! ```
//!
//! - Leaves hold up to `LEAF_CAP` entries (scores and members in parallel
//!   `Vec`s, so a binary search reads only scores until a tie); they are
//!   linked both ways, so range reads walk leaves without descending again.
//! - Inner nodes hold up to `INNER_CAP` children, each with its entry
//!   *count*, which makes the tree an order-statistic tree: rank of an
//!   entry and entry at a rank are one descent, summing or subtracting
//!   counts. Separator `i` is a lower bound of child `i + 1` (every entry of
//!   child `i` is before it, none of child `i + 1` is); it is the first key
//!   of that child when made and stays valid when that entry is deleted.
//! - Every node but the root is at least half full: deletions merge a
//!   node with a sibling or even the two out. Height is therefore at most
//!   ~8 for 2^32 members.
//!
//! Costs (n members, m results): insert, remove, score update, rank of a
//! member, entry at a rank, first/last entry of a score or lex range and
//! ZCOUNT/ZLEXCOUNT are O(log n); a range read is O(log n + m); removing a
//! range is O((m / LEAF_CAP + 1) log n + m). The dictionary is a
//! [`Dict`], insertion-ordered and growing without a pause, so ZSCAN and
//! ZRANDMEMBER can address members by position in O(1).
//!
//! Ordering is Redis's: scores compare with `<`/`==` (so `-0` equals `0`),
//! ties by member bytes (`memcmp`, then length). Scores are never NaN.

use std::cmp::Ordering;

use bytes::Bytes;

use super::dict::Dict;

/// Most entries in a leaf. Inserting shifts half a leaf on average, so
/// leaves stay small; 16 keeps a leaf's scores in two cache lines.
const LEAF_CAP: usize = 16;
/// Most children of an inner node.
const INNER_CAP: usize = 32;
/// Deepest root-to-leaf path: nodes are at least half full, so 2^32
/// members need fewer than 9 levels.
const MAX_HEIGHT: usize = 16;
/// Arena index meaning "no node".
const NIL: u32 = u32::MAX;
/// A score interval for ZRANGEBYSCORE and friends; `(` makes a bound
/// exclusive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    pub min: f64,
    pub max: f64,
    pub minex: bool,
    pub maxex: bool,
}

impl ScoreRange {
    pub fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    pub fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// True when no score can be inside.
    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }
}

/// One end of a lex range: `-`, `+`, or a member string.
#[derive(Clone, Debug, PartialEq)]
pub enum LexItem {
    Min,
    Max,
    Str(Bytes),
}

impl LexItem {
    /// Compares a member with this bound (Redis's `sdscmplex`).
    fn cmp_member(&self, m: &[u8]) -> Ordering {
        match self {
            LexItem::Min => Ordering::Greater,
            LexItem::Max => Ordering::Less,
            LexItem::Str(s) => m.cmp(s),
        }
    }

    fn cmp_item(&self, o: &LexItem) -> Ordering {
        match (self, o) {
            (LexItem::Min, LexItem::Min) | (LexItem::Max, LexItem::Max) => Ordering::Equal,
            (LexItem::Min, _) | (_, LexItem::Max) => Ordering::Less,
            (LexItem::Max, _) | (_, LexItem::Min) => Ordering::Greater,
            (LexItem::Str(a), LexItem::Str(b)) => a.cmp(b),
        }
    }
}

/// A member interval for ZRANGEBYLEX and friends (`[a`, `(a`, `-`, `+`).
/// Meaningful when all members share one score, as in Redis.
#[derive(Clone, Debug, PartialEq)]
pub struct LexRange {
    pub min: LexItem,
    pub max: LexItem,
    pub minex: bool,
    pub maxex: bool,
}

impl LexRange {
    pub fn gte_min(&self, m: &[u8]) -> bool {
        let c = self.min.cmp_member(m);
        if self.minex { c.is_gt() } else { c.is_ge() }
    }

    pub fn lte_max(&self, m: &[u8]) -> bool {
        let c = self.max.cmp_member(m);
        if self.maxex { c.is_lt() } else { c.is_le() }
    }

    pub fn is_empty(&self) -> bool {
        match self.min.cmp_item(&self.max) {
            Ordering::Greater => true,
            Ordering::Equal => self.minex || self.maxex,
            Ordering::Less => false,
        }
    }
}

/// An entry as predicates see it. Taking `member` costs nothing until it
/// is read.
#[derive(Clone, Copy)]
struct View<'a> {
    score: f64,
    member: &'a Bytes,
}

/// `(score, member) < (s, m)` in Redis's order.
fn before(score: f64, member: &[u8], s: f64, m: &[u8]) -> bool {
    score < s || (score == s && member < m)
}

/// Number of leading indices in `0..n` for which `below(i)` holds, given
/// that it holds on a prefix.
fn partition(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[derive(Clone, Debug, Default)]
struct Leaf {
    scores: Vec<f64>,
    members: Vec<Bytes>,
    prev: u32,
    next: u32,
}

impl Leaf {
    fn empty() -> Leaf {
        Leaf {
            prev: NIL,
            next: NIL,
            ..Leaf::default()
        }
    }

    fn len(&self) -> usize {
        self.scores.len()
    }

    fn view(&self, i: usize) -> View<'_> {
        View {
            score: self.scores[i],
            member: &self.members[i],
        }
    }

    /// Entries for which `below` holds (a prefix).
    fn seek(&self, below: impl Fn(View<'_>) -> bool) -> usize {
        partition(self.len(), |i| below(self.view(i)))
    }
}

#[derive(Clone, Debug, Default)]
struct Inner {
    children: Vec<u32>,
    /// Entries under each child.
    counts: Vec<u32>,
    /// `len() - 1` separators; see the module doc.
    sep_scores: Vec<f64>,
    sep_members: Vec<Bytes>,
}

impl Inner {
    fn len(&self) -> usize {
        self.children.len()
    }

    fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// Child `s + 1` was merged into child `s`, which now holds `count`
    /// entries: drops the former and the separator between them.
    fn merged(&mut self, s: usize, count: u32) {
        self.counts[s] = count;
        self.children.remove(s + 1);
        self.counts.remove(s + 1);
        self.sep_scores.remove(s);
        self.sep_members.remove(s);
    }

    /// The child to descend into for the first entry for which `below` is
    /// false: the number of separators for which `below` holds. (Every
    /// entry up to such a separator is below too, so the answer lies to
    /// its right.)
    fn route(&self, below: impl Fn(View<'_>) -> bool) -> usize {
        partition(self.sep_scores.len(), |i| {
            below(View {
                score: self.sep_scores[i],
                member: &self.sep_members[i],
            })
        })
    }
}

/// A position: entry `idx` of leaf `leaf`; `leaf == NIL` is past either
/// end.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cur {
    leaf: u32,
    idx: u32,
}

const END: Cur = Cur { leaf: NIL, idx: 0 };

/// The inner nodes and child indices of a descent, root first.
struct Path {
    steps: [(u32, u32); MAX_HEIGHT],
    len: usize,
}

impl Path {
    fn new() -> Path {
        Path {
            steps: [(NIL, 0); MAX_HEIGHT],
            len: 0,
        }
    }

    fn push(&mut self, node: u32, child: usize) {
        self.steps[self.len] = (node, child as u32);
        self.len += 1;
    }

    fn steps(&self) -> &[(u32, u32)] {
        &self.steps[..self.len]
    }
}

/// The B+tree arena: nodes are indices into `leaves` and `inners`; freed
/// slots are reused through the free lists.
#[derive(Clone, Debug)]
struct Tree {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    root: u32,
    /// Inner levels above the leaves; 0 when the root is a leaf.
    height: usize,
    len: usize,
    /// First and last leaf.
    head: u32,
    tail: u32,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            leaves: vec![Leaf::empty()],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
            head: 0,
            tail: 0,
        }
    }
}

/// Puts `v` in a free slot of an arena, or a new one; returns its index.
fn alloc<T>(slots: &mut Vec<T>, free: &mut Vec<u32>, v: T) -> u32 {
    match free.pop() {
        Some(x) => {
            slots[x as usize] = v;
            x
        }
        None => {
            slots.push(v);
            (slots.len() - 1) as u32
        }
    }
}

impl Tree {
    fn leaf(&self, x: u32) -> &Leaf {
        &self.leaves[x as usize]
    }

    fn leaf_mut(&mut self, x: u32) -> &mut Leaf {
        &mut self.leaves[x as usize]
    }

    fn inner(&self, x: u32) -> &Inner {
        &self.inners[x as usize]
    }

    fn inner_mut(&mut self, x: u32) -> &mut Inner {
        &mut self.inners[x as usize]
    }

    fn alloc_leaf(&mut self, l: Leaf) -> u32 {
        alloc(&mut self.leaves, &mut self.free_leaves, l)
    }

    fn alloc_inner(&mut self, n: Inner) -> u32 {
        alloc(&mut self.inners, &mut self.free_inners, n)
    }

    /// Whether node `x` on `level` (0 = leaves) has no room left.
    fn is_full(&self, x: u32, level: usize) -> bool {
        if level == 0 {
            self.leaf(x).len() >= LEAF_CAP
        } else {
            self.inner(x).len() >= INNER_CAP
        }
    }

    fn get(&self, c: Cur) -> View<'_> {
        self.leaf(c.leaf).view(c.idx as usize)
    }

    fn first(&self) -> Cur {
        if self.len == 0 {
            END
        } else {
            Cur {
                leaf: self.head,
                idx: 0,
            }
        }
    }

    fn last(&self) -> Cur {
        if self.len == 0 {
            END
        } else {
            let idx = self.leaf(self.tail).len() as u32 - 1;
            Cur {
                leaf: self.tail,
                idx,
            }
        }
    }

    /// The next position, or (`rev`) the previous one. Only the root leaf
    /// can be empty, so a neighbouring leaf always has an entry.
    fn step(&self, c: Cur, rev: bool) -> Cur {
        let l = self.leaf(c.leaf);
        if rev {
            if c.idx > 0 {
                Cur {
                    leaf: c.leaf,
                    idx: c.idx - 1,
                }
            } else if l.prev == NIL {
                END
            } else {
                let idx = self.leaf(l.prev).len() as u32 - 1;
                Cur { leaf: l.prev, idx }
            }
        } else {
            self.at_or_next(c.leaf, c.idx as usize + 1)
        }
    }

    /// Entry `idx` of leaf `x`, or the next leaf's first when `idx` is
    /// past the end.
    fn at_or_next(&self, x: u32, idx: usize) -> Cur {
        let l = self.leaf(x);
        if idx < l.len() {
            Cur {
                leaf: x,
                idx: idx as u32,
            }
        } else if l.next == NIL {
            END
        } else {
            Cur {
                leaf: l.next,
                idx: 0,
            }
        }
    }

    /// Descends towards the first entry for which `below` is false (a
    /// predicate that holds on a prefix of the order). Returns the leaf
    /// reached, the number of its entries that are below (which may be all
    /// of them: then the answer is the next leaf's first), the number of
    /// entries below in the whole tree, and the path.
    fn descend(&self, below: impl Fn(View<'_>) -> bool) -> (u32, usize, usize, Path) {
        let mut path = Path::new();
        let (mut x, mut rank) = (self.root, 0);
        for _ in 0..self.height {
            let n = self.inner(x);
            let c = n.route(&below);
            rank += n.counts[..c].iter().map(|&k| k as usize).sum::<usize>();
            path.push(x, c);
            x = n.children[c];
        }
        let idx = self.leaf(x).seek(&below);
        (x, idx, rank + idx, path)
    }

    /// The first entry for which `below` is false (END if none) and the
    /// number of entries before it.
    fn seek(&self, below: impl Fn(View<'_>) -> bool) -> (Cur, usize) {
        let (x, idx, rank, _) = self.descend(below);
        (self.at_or_next(x, idx), rank)
    }

    /// Descends to the entry at 0-based `rank` (< len): its leaf, index
    /// and the path.
    fn descend_rank(&self, mut rank: usize) -> (u32, usize, Path) {
        debug_assert!(rank < self.len);
        let mut path = Path::new();
        let mut x = self.root;
        for _ in 0..self.height {
            let n = self.inner(x);
            let mut c = 0;
            while rank >= n.counts[c] as usize {
                rank -= n.counts[c] as usize;
                c += 1;
            }
            path.push(x, c);
            x = n.children[c];
        }
        (x, rank, path)
    }

    fn at_rank(&self, rank: usize) -> Cur {
        let (leaf, idx, _) = self.descend_rank(rank);
        Cur {
            leaf,
            idx: idx as u32,
        }
    }

    /// 0-based rank of a present entry.
    fn rank(&self, score: f64, member: &[u8]) -> usize {
        let (_, _, upto, _) = self.descend(|v| !before(score, member, v.score, v.member));
        debug_assert!(upto > 0);
        upto - 1
    }

    /// Splits the full child `c` of inner node `p` (children on `level`)
    /// in two halves; the new right half becomes child `c + 1`.
    fn split_child(&mut self, p: u32, c: usize, level: usize) {
        let x = self.inner(p).children[c];
        let (right, sep_score, sep_member, lcount, rcount);
        if level == 0 {
            let l = self.leaf_mut(x);
            let h = l.len() / 2;
            let mut r = Leaf {
                scores: Vec::with_capacity(LEAF_CAP),
                members: Vec::with_capacity(LEAF_CAP),
                prev: x,
                next: l.next,
            };
            r.scores.extend(l.scores.drain(h..));
            r.members.extend(l.members.drain(h..));
            (sep_score, sep_member) = (r.scores[0], r.members[0].clone());
            (lcount, rcount) = (h as u32, r.len() as u32);
            let next = r.next;
            right = self.alloc_leaf(r);
            self.leaf_mut(x).next = right;
            match next {
                NIL => self.tail = right,
                n => self.leaf_mut(n).prev = right,
            }
        } else {
            let n = self.inner_mut(x);
            let h = n.len() / 2;
            let mut r = Inner::default();
            r.children.extend(n.children.drain(h..));
            r.counts.extend(n.counts.drain(h..));
            r.sep_scores.extend(n.sep_scores.drain(h..));
            r.sep_members.extend(n.sep_members.drain(h..));
            // The separator between the halves moves up.
            sep_score = n.sep_scores.pop().expect("full node");
            sep_member = n.sep_members.pop().expect("full node");
            (lcount, rcount) = (n.total(), r.total());
            right = self.alloc_inner(r);
        }
        let pn = self.inner_mut(p);
        pn.children.insert(c + 1, right);
        pn.counts[c] = lcount;
        pn.counts.insert(c + 1, rcount);
        pn.sep_scores.insert(c, sep_score);
        pn.sep_members.insert(c, sep_member);
    }

    /// Inserts an entry that is not present. Full nodes on the way down
    /// are split before the descent enters them, so a split never has to
    /// climb back up.
    fn insert(&mut self, score: f64, member: Bytes) {
        if self.is_full(self.root, self.height) {
            let old = self.root;
            self.root = self.alloc_inner(Inner {
                children: vec![old],
                counts: vec![self.len as u32],
                ..Inner::default()
            });
            self.height += 1;
            self.split_child(self.root, 0, self.height - 1);
        }
        // Entries up to the new one; equal to a separator goes right.
        let upto = |v: View<'_>| !before(score, &member, v.score, v.member);
        let mut x = self.root;
        for level in (0..self.height).rev() {
            let mut c = self.inner(x).route(upto);
            if self.is_full(self.inner(x).children[c], level) {
                self.split_child(x, c, level);
                let n = self.inner(x);
                if upto(View {
                    score: n.sep_scores[c],
                    member: &n.sep_members[c],
                }) {
                    c += 1;
                }
            }
            let n = self.inner_mut(x);
            n.counts[c] += 1;
            x = n.children[c];
        }
        let idx = self.leaf(x).seek(upto);
        let l = self.leaf_mut(x);
        l.scores.insert(idx, score);
        l.members.insert(idx, member);
        self.len += 1;
    }

    /// Removes a present entry; returns its member.
    fn delete(&mut self, score: f64, member: &[u8]) -> Option<Bytes> {
        let (x, idx, _, path) = self.descend(|v| !before(score, member, v.score, v.member));
        let l = self.leaf(x);
        if idx == 0 || l.scores[idx - 1] != score || l.members[idx - 1][..] != *member {
            return None;
        }
        let mut out = None;
        self.remove_in_leaf(x, idx - 1, 1, &path, &mut |m| out = Some(m));
        out
    }

    /// Removes `n` entries from 0-based rank `start` on (all in range);
    /// `gone` gets each member.
    fn remove_ranks(&mut self, start: usize, mut n: usize, mut gone: impl FnMut(Bytes)) {
        debug_assert!(start + n <= self.len);
        while n > 0 {
            let (x, idx, path) = self.descend_rank(start);
            let k = n.min(self.leaf(x).len() - idx);
            self.remove_in_leaf(x, idx, k, &path, &mut gone);
            n -= k;
        }
    }

    /// Removes entries `idx..idx + k` of leaf `x`, reached by `path`, and
    /// restores the fill invariant.
    fn remove_in_leaf(
        &mut self,
        x: u32,
        idx: usize,
        k: usize,
        path: &Path,
        gone: &mut impl FnMut(Bytes),
    ) {
        let l = self.leaf_mut(x);
        l.scores.drain(idx..idx + k);
        l.members.drain(idx..idx + k).for_each(&mut *gone);
        for &(p, c) in path.steps() {
            self.inner_mut(p).counts[c as usize] -= k as u32;
        }
        self.len -= k;
        self.rebalance(x, path);
    }

    /// Walks up from leaf `x` while a node is under half full, merging it
    /// with a sibling or evening the two out; then drops a root left with
    /// one child.
    fn rebalance(&mut self, mut x: u32, path: &Path) {
        for (level, &(p, c)) in path.steps().iter().rev().enumerate() {
            let under = if level == 0 {
                self.leaf(x).len() < LEAF_CAP / 2
            } else {
                self.inner(x).len() < INNER_CAP / 2
            };
            if !under {
                return;
            }
            // Pair the node with its left sibling, or its right one when
            // it is the first child (a non-root inner node has >= 2).
            let s = (c as usize).saturating_sub(1);
            let merged = if level == 0 {
                self.even_leaves(p, s)
            } else {
                self.even_inners(p, s)
            };
            if !merged {
                return;
            }
            x = p;
        }
        if self.height > 0 && self.inner(self.root).len() == 1 {
            let old = self.root;
            self.root = self.inner(old).children[0];
            self.height -= 1;
            self.inners[old as usize] = Inner::default();
            self.free_inners.push(old);
        }
    }

    /// Merges leaf children `s` and `s + 1` of `p` when they fit in one,
    /// else moves entries so they hold half each. True when merged.
    fn even_leaves(&mut self, p: u32, s: usize) -> bool {
        let (a, b) = (self.inner(p).children[s], self.inner(p).children[s + 1]);
        let mut right = std::mem::take(self.leaf_mut(b));
        let left = &mut self.leaves[a as usize];
        let total = left.len() + right.len();
        if total <= LEAF_CAP {
            left.scores.append(&mut right.scores);
            left.members.append(&mut right.members);
            left.next = right.next;
            match right.next {
                NIL => self.tail = a,
                n => self.leaf_mut(n).prev = a,
            }
            self.free_leaves.push(b);
            self.inner_mut(p).merged(s, total as u32);
            return true;
        }
        let h = total / 2;
        if left.len() > h {
            let moved = left.len() - h;
            right.scores.splice(0..0, left.scores.drain(h..));
            right.members.splice(0..0, left.members.drain(h..));
            debug_assert_eq!(right.len(), total - h, "{moved} moved");
        } else {
            let k = h - left.len();
            left.scores.extend(right.scores.drain(..k));
            left.members.extend(right.members.drain(..k));
        }
        let sep = (right.scores[0], right.members[0].clone());
        *self.leaf_mut(b) = right;
        let pn = self.inner_mut(p);
        pn.counts[s] = h as u32;
        pn.counts[s + 1] = (total - h) as u32;
        (pn.sep_scores[s], pn.sep_members[s]) = sep;
        false
    }

    /// `even_leaves` for inner children: the parent's separator between
    /// the two moves down into the merged or receiving node, and when
    /// evening out the separator at the new boundary moves up.
    fn even_inners(&mut self, p: u32, s: usize) -> bool {
        let (a, b) = (self.inner(p).children[s], self.inner(p).children[s + 1]);
        let mut right = std::mem::take(self.inner_mut(b));
        let pn = &self.inners[p as usize];
        let (ps, pm) = (pn.sep_scores[s], pn.sep_members[s].clone());
        let left = &mut self.inners[a as usize];
        let total = left.len() + right.len();
        if total <= INNER_CAP {
            left.sep_scores.push(ps);
            left.sep_members.push(pm);
            left.sep_scores.append(&mut right.sep_scores);
            left.sep_members.append(&mut right.sep_members);
            left.children.append(&mut right.children);
            left.counts.append(&mut right.counts);
            let sum = left.total();
            self.free_inners.push(b);
            self.inner_mut(p).merged(s, sum);
            return true;
        }
        let h = total / 2;
        if left.len() == h {
            // Already even (cannot happen with one node under half full
            // and no merge possible, but moving nothing must not move a
            // separator either).
            *self.inner_mut(b) = right;
            return false;
        }
        let up = if left.len() > h {
            // Children h.. of the left node move to the front of the
            // right one, with the separators between them and the
            // parent's separator after them.
            right.sep_scores.insert(0, ps);
            right.sep_members.insert(0, pm);
            right.children.splice(0..0, left.children.drain(h..));
            right.counts.splice(0..0, left.counts.drain(h..));
            right.sep_scores.splice(0..0, left.sep_scores.drain(h..));
            right.sep_members.splice(0..0, left.sep_members.drain(h..));
            (
                left.sep_scores.pop().expect("h >= 1"),
                left.sep_members.pop().expect("h >= 1"),
            )
        } else {
            let k = h - left.len();
            left.sep_scores.push(ps);
            left.sep_members.push(pm);
            left.children.extend(right.children.drain(..k));
            left.counts.extend(right.counts.drain(..k));
            left.sep_scores.extend(right.sep_scores.drain(..k - 1));
            left.sep_members.extend(right.sep_members.drain(..k - 1));
            (right.sep_scores.remove(0), right.sep_members.remove(0))
        };
        let (lsum, rsum) = (left.total(), right.total());
        *self.inner_mut(b) = right;
        let pn = self.inner_mut(p);
        pn.counts[s] = lsum;
        pn.counts[s + 1] = rsum;
        (pn.sep_scores[s], pn.sep_members[s]) = up;
        false
    }

    /// The first entry for which `below_min` is false, and its rank, if
    /// `above_max` is false for it too.
    fn first_in(
        &self,
        below_min: impl Fn(View<'_>) -> bool,
        above_max: impl Fn(View<'_>) -> bool,
    ) -> Option<(Cur, usize)> {
        let (cur, rank) = self.seek(below_min);
        (cur != END && !above_max(self.get(cur))).then_some((cur, rank))
    }

    /// The last entry for which `above_max` is false, and its rank, if
    /// `below_min` is false for it too.
    fn last_in(
        &self,
        below_min: impl Fn(View<'_>) -> bool,
        above_max: impl Fn(View<'_>) -> bool,
    ) -> Option<(Cur, usize)> {
        let (past, upto) = self.seek(|v| !above_max(v));
        if upto == 0 {
            return None;
        }
        let cur = if past == END {
            self.last()
        } else {
            self.step(past, true)
        };
        (!below_min(self.get(cur))).then_some((cur, upto - 1))
    }
}

/// Iterator over (member, score) pairs, forwards or backwards.
pub struct Iter<'a> {
    tree: &'a Tree,
    cur: Cur,
    rev: bool,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Bytes, f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur == END {
            return None;
        }
        let v = self.tree.get(self.cur);
        self.cur = self.tree.step(self.cur, self.rev);
        Some((v.member, v.score))
    }
}

/// The member -> score dictionary; insertion-ordered for ZSCAN and
/// ZRANDMEMBER.
pub type ZDict = Dict<Bytes, f64>;

/// A sorted set.
#[derive(Clone, Default)]
pub struct ZSet {
    dict: ZDict,
    tree: Tree,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    fn iter_from(&self, cur: Cur, rev: bool) -> Iter<'_> {
        Iter {
            tree: &self.tree,
            cur,
            rev,
        }
    }

    /// Members in ascending (score, member) order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(self.tree.first(), false)
    }

    /// Members in descending order.
    pub fn iter_rev(&self) -> Iter<'_> {
        self.iter_from(self.tree.last(), true)
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.dict.get(member).copied()
    }

    /// Sets a member's score; true when the member is new. A score equal
    /// (`==`) to the current one leaves the member untouched.
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        debug_assert!(!score.is_nan());
        match self.dict.get_mut(&member[..]) {
            Some(cur) => {
                if *cur != score {
                    let old = std::mem::replace(cur, score);
                    let m = self
                        .tree
                        .delete(old, &member)
                        .expect("zset index out of sync");
                    self.tree.insert(score, m);
                }
                false
            }
            None => {
                self.dict.insert(member.clone(), score);
                self.tree.insert(score, member);
                true
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.dict.swap_remove(member) {
            Some(s) => {
                self.tree.delete(s, member).expect("zset index out of sync");
                true
            }
            None => false,
        }
    }

    /// 0-based rank of a member, counted from the low end or (`rev`) the
    /// high end.
    pub fn rank(&self, member: &[u8], rev: bool) -> Option<usize> {
        let s = self.score(member)?;
        let r = self.tree.rank(s, member);
        Some(if rev { self.len() - 1 - r } else { r })
    }

    /// Members from 0-based rank `start` on (counted from the high end when
    /// `rev`), in that direction. `start` past the end gives nothing.
    pub fn range_by_rank(&self, start: usize, rev: bool) -> Iter<'_> {
        if start >= self.len() {
            return self.iter_from(END, rev);
        }
        let r = if rev { self.len() - 1 - start } else { start };
        self.iter_from(self.tree.at_rank(r), rev)
    }

    fn first_in_score(&self, r: &ScoreRange) -> Option<(Cur, usize)> {
        if r.is_empty() {
            return None;
        }
        self.tree
            .first_in(|n| !r.gte_min(n.score), |n| !r.lte_max(n.score))
    }

    fn last_in_score(&self, r: &ScoreRange) -> Option<(Cur, usize)> {
        if r.is_empty() {
            return None;
        }
        self.tree
            .last_in(|n| !r.gte_min(n.score), |n| !r.lte_max(n.score))
    }

    fn first_in_lex(&self, r: &LexRange) -> Option<(Cur, usize)> {
        if r.is_empty() {
            return None;
        }
        self.tree
            .first_in(|n| !r.gte_min(n.member), |n| !r.lte_max(n.member))
    }

    fn last_in_lex(&self, r: &LexRange) -> Option<(Cur, usize)> {
        if r.is_empty() {
            return None;
        }
        self.tree
            .last_in(|n| !r.gte_min(n.member), |n| !r.lte_max(n.member))
    }

    /// Members with a score in `r`, ascending, or descending when `rev`.
    pub fn range_by_score<'a>(
        &'a self,
        r: &'a ScoreRange,
        rev: bool,
    ) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
        let start = if rev {
            self.last_in_score(r)
        } else {
            self.first_in_score(r)
        };
        self.iter_from(start.map_or(END, |(c, _)| c), rev)
            .take_while(move |&(_, s)| if rev { r.gte_min(s) } else { r.lte_max(s) })
    }

    /// Members in lex range `r`, ascending, or descending when `rev`.
    pub fn range_by_lex<'a>(
        &'a self,
        r: &'a LexRange,
        rev: bool,
    ) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
        let start = if rev {
            self.last_in_lex(r)
        } else {
            self.first_in_lex(r)
        };
        self.iter_from(start.map_or(END, |(c, _)| c), rev)
            .take_while(move |&(m, _)| if rev { r.gte_min(m) } else { r.lte_max(m) })
    }

    /// The 0-based ranks of the first and last member of a range.
    fn rank_span(
        first: Option<(Cur, usize)>,
        last: Option<(Cur, usize)>,
    ) -> Option<(usize, usize)> {
        match (first, last) {
            (Some((_, a)), Some((_, b))) if a <= b => Some((a, b)),
            _ => None,
        }
    }

    /// ZCOUNT in O(log n).
    pub fn count_score(&self, r: &ScoreRange) -> usize {
        Self::rank_span(self.first_in_score(r), self.last_in_score(r)).map_or(0, |(a, b)| b + 1 - a)
    }

    /// ZLEXCOUNT in O(log n).
    pub fn count_lex(&self, r: &LexRange) -> usize {
        Self::rank_span(self.first_in_lex(r), self.last_in_lex(r)).map_or(0, |(a, b)| b + 1 - a)
    }

    /// Removes 0-based ranks `start..=end` (both in range); returns the count.
    pub fn remove_range_by_rank(&mut self, start: usize, end: usize) -> usize {
        let n = end + 1 - start;
        let dict = &mut self.dict;
        self.tree.remove_ranks(start, n, |m| {
            dict.swap_remove(&m);
        });
        n
    }

    /// Removes the members ranked `span` (inclusive) if any; returns the
    /// count.
    fn remove_span(&mut self, span: Option<(usize, usize)>) -> usize {
        span.map_or(0, |(a, b)| self.remove_range_by_rank(a, b))
    }

    /// Removes every member with a score in `r`; returns the count.
    pub fn remove_range_by_score(&mut self, r: &ScoreRange) -> usize {
        let span = Self::rank_span(self.first_in_score(r), self.last_in_score(r));
        self.remove_span(span)
    }

    /// Removes every member in lex range `r`; returns the count.
    pub fn remove_range_by_lex(&mut self, r: &LexRange) -> usize {
        let span = Self::rank_span(self.first_in_lex(r), self.last_in_lex(r));
        self.remove_span(span)
    }

    /// Removes and returns the lowest (or, with `max`, highest) member.
    pub fn pop(&mut self, max: bool) -> Option<(Bytes, f64)> {
        let c = if max {
            self.tree.last()
        } else {
            self.tree.first()
        };
        if c == END {
            return None;
        }
        let v = self.tree.get(c);
        let (m, s) = (v.member.clone(), v.score);
        self.remove(&m);
        Some((m, s))
    }

    /// The member and score at a dictionary position (0..len), for ZSCAN
    /// and ZRANDMEMBER.
    pub fn get_index(&self, i: usize) -> Option<(&Bytes, f64)> {
        self.dict.get_index(i).map(|(m, s)| (m, *s))
    }
}

impl PartialEq for ZSet {
    /// Same members with bit-identical scores (so `0` and `-0` differ).
    fn eq(&self, o: &Self) -> bool {
        self.len() == o.len()
            && self
                .dict
                .iter()
                .all(|(m, s)| o.score(m).is_some_and(|t| t.to_bits() == s.to_bits()))
    }
}

impl std::fmt::Debug for ZSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(m, s)| (String::from_utf8_lossy(m), s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model: a Vec kept sorted in Redis's order.
    fn model_sort(v: &mut [(Bytes, f64)]) {
        v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
    }

    fn check(z: &ZSet, model: &[(Bytes, f64)]) {
        let got: Vec<(Bytes, f64)> = z.iter().map(|(m, s)| (m.clone(), s)).collect();
        assert_eq!(got, model);
        let back: Vec<(Bytes, f64)> = z.iter_rev().map(|(m, s)| (m.clone(), s)).collect();
        assert!(back.iter().rev().eq(model.iter()));
        assert_eq!(z.len(), model.len());
        for (i, (m, s)) in model.iter().enumerate() {
            assert_eq!(z.rank(m, false), Some(i));
            assert_eq!(z.rank(m, true), Some(model.len() - 1 - i));
            assert_eq!(z.score(m), Some(*s));
            assert_eq!(z.range_by_rank(i, false).next().unwrap().0, m);
        }
    }

    fn rand_range(rng: &mut fastrand::Rng) -> ScoreRange {
        let pick = |rng: &mut fastrand::Rng| match rng.u32(0..10) {
            0 => f64::NEG_INFINITY,
            1 => f64::INFINITY,
            _ => rng.i32(-5..25) as f64 / 2.0,
        };
        ScoreRange {
            min: pick(rng),
            max: pick(rng),
            minex: rng.bool(),
            maxex: rng.bool(),
        }
    }

    fn rand_lex(rng: &mut fastrand::Rng) -> LexRange {
        let pick = |rng: &mut fastrand::Rng| match rng.u32(0..8) {
            0 => LexItem::Min,
            1 => LexItem::Max,
            _ => LexItem::Str(Bytes::from(format!("m{}", rng.u32(0..60)))),
        };
        let (min, max) = (pick(rng), pick(rng));
        let ex = |i: &LexItem, rng: &mut fastrand::Rng| match i {
            LexItem::Str(_) => rng.bool(),
            _ => true,
        };
        LexRange {
            minex: ex(&min, rng),
            maxex: ex(&max, rng),
            min,
            max,
        }
    }

    #[test]
    fn randomized_against_sorted_vec() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..40 {
            let mut z = ZSet::default();
            let mut model: Vec<(Bytes, f64)> = Vec::new();
            // Even rounds use one score, so lex ranges are meaningful.
            let same = round % 2 == 0;
            for _ in 0..600 {
                let m = Bytes::from(format!("m{}", rng.u32(0..60)));
                let s = if same {
                    1.0
                } else {
                    rng.i32(-4..20) as f64 / 2.0
                };
                match rng.u32(0..10) {
                    0..=4 => {
                        let new = !model.iter().any(|(x, _)| *x == m);
                        assert_eq!(z.insert(m.clone(), s), new);
                        model.retain(|(x, _)| *x != m);
                        model.push((m, s));
                        model_sort(&mut model);
                    }
                    5 | 6 => {
                        let had = model.iter().any(|(x, _)| *x == m);
                        assert_eq!(z.remove(&m), had);
                        model.retain(|(x, _)| *x != m);
                    }
                    7 => {
                        let r = rand_range(&mut rng);
                        let want: Vec<_> = model
                            .iter()
                            .filter(|(_, s)| r.gte_min(*s) && r.lte_max(*s))
                            .cloned()
                            .collect();
                        let got: Vec<_> = z
                            .range_by_score(&r, false)
                            .map(|(m, s)| (m.clone(), s))
                            .collect();
                        assert_eq!(got, want, "{r:?}");
                        let rev: Vec<_> = z
                            .range_by_score(&r, true)
                            .map(|(m, s)| (m.clone(), s))
                            .collect();
                        assert!(rev.iter().rev().eq(want.iter()));
                        assert_eq!(z.count_score(&r), want.len());
                        if rng.u32(0..4) == 0 {
                            assert_eq!(z.remove_range_by_score(&r), want.len());
                            model.retain(|(_, s)| !(r.gte_min(*s) && r.lte_max(*s)));
                        }
                    }
                    8 if same => {
                        let r = rand_lex(&mut rng);
                        let want: Vec<_> = model
                            .iter()
                            .filter(|(m, _)| r.gte_min(m) && r.lte_max(m))
                            .cloned()
                            .collect();
                        let got: Vec<_> = z
                            .range_by_lex(&r, false)
                            .map(|(m, s)| (m.clone(), s))
                            .collect();
                        assert_eq!(got, want, "{r:?}");
                        let rev: Vec<_> = z
                            .range_by_lex(&r, true)
                            .map(|(m, s)| (m.clone(), s))
                            .collect();
                        assert!(rev.iter().rev().eq(want.iter()));
                        assert_eq!(z.count_lex(&r), want.len());
                        if rng.u32(0..4) == 0 {
                            assert_eq!(z.remove_range_by_lex(&r), want.len());
                            model.retain(|(m, _)| !(r.gte_min(m) && r.lte_max(m)));
                        }
                    }
                    _ => {
                        if !model.is_empty() && rng.u32(0..3) == 0 {
                            let a = rng.usize(0..model.len());
                            let b = rng.usize(a..model.len());
                            assert_eq!(z.remove_range_by_rank(a, b), b + 1 - a);
                            model.drain(a..=b);
                        } else if let Some((m, s)) = z.pop(rng.bool()) {
                            assert!(
                                model.first() == Some(&(m.clone(), s))
                                    || model.last() == Some(&(m.clone(), s))
                            );
                            model.retain(|(x, _)| *x != m);
                        }
                    }
                }
                assert_eq!(z.len(), model.len());
            }
            check(&z, &model);
            let c = z.clone();
            assert_eq!(c, z);
            check(&c, &model);
        }
    }

    /// Checks the tree's structure: counts, fill, separator bounds, leaf
    /// links and order. Returns the entries of the subtree at `x`.
    fn audit(t: &Tree, x: u32, level: usize, root: bool, out: &mut Vec<(f64, Bytes)>) -> usize {
        if level == 0 {
            let l = t.leaf(x);
            assert!(l.len() <= LEAF_CAP);
            assert!(root || l.len() >= LEAF_CAP / 2, "leaf of {}", l.len());
            assert_eq!(l.members.len(), l.len());
            out.extend(l.scores.iter().copied().zip(l.members.iter().cloned()));
            return l.len();
        }
        let n = t.inner(x);
        assert!(n.len() <= INNER_CAP);
        assert!(
            n.len() >= if root { 2 } else { INNER_CAP / 2 },
            "inner of {}",
            n.len()
        );
        assert_eq!(n.sep_scores.len() + 1, n.len());
        assert_eq!(n.sep_members.len() + 1, n.len());
        let mut total = 0;
        for (i, &c) in n.children.iter().enumerate() {
            let from = out.len();
            let k = audit(t, c, level - 1, false, out);
            assert_eq!(k, n.counts[i] as usize);
            total += k;
            for (s, m) in &out[from..] {
                if i > 0 {
                    assert!(!before(*s, m, n.sep_scores[i - 1], &n.sep_members[i - 1]));
                }
                if i + 1 < n.len() {
                    assert!(before(*s, m, n.sep_scores[i], &n.sep_members[i]));
                }
            }
        }
        total
    }

    fn audit_tree(t: &Tree) {
        let mut all = Vec::new();
        assert_eq!(audit(t, t.root, t.height, true, &mut all), t.len);
        assert!(
            all.windows(2)
                .all(|w| before(w[0].0, &w[0].1, w[1].0, &w[1].1))
        );
        // The leaf chain visits the same entries both ways.
        let (mut fwd, mut c) = (Vec::new(), t.first());
        while c != END {
            let v = t.get(c);
            fwd.push((v.score, v.member.clone()));
            c = t.step(c, false);
        }
        assert_eq!(fwd, all);
        let (mut back, mut c) = (0, t.last());
        while c != END {
            back += 1;
            c = t.step(c, true);
        }
        assert_eq!(back, all.len());
        let live = t.leaves.len() - t.free_leaves.len();
        assert!(
            live * (LEAF_CAP / 2) <= t.len + LEAF_CAP,
            "{live} leaves for {}",
            t.len
        );
    }

    /// Grows past three levels and shrinks back with single and range
    /// removals, auditing the structure along the way.
    #[test]
    fn tree_structure_through_growth_and_shrink() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut z = ZSet::default();
        let mut model = std::collections::BTreeMap::new();
        for round in 0..30_000u32 {
            let m = Bytes::from(format!("m{}", rng.u32(0..20_000)));
            let s = rng.u32(0..500) as f64;
            match rng.u32(0..100) {
                0..=69 => {
                    assert_eq!(z.insert(m.clone(), s), model.insert(m, s).is_none());
                }
                70..=94 => assert_eq!(z.remove(&m), model.remove(&m).is_some()),
                _ if !z.is_empty() => {
                    let a = rng.usize(0..z.len());
                    let b = (a + rng.usize(0..8)).min(z.len() - 1);
                    let gone: Vec<Bytes> = z
                        .range_by_rank(a, false)
                        .take(b + 1 - a)
                        .map(|(m, _)| m.clone())
                        .collect();
                    assert_eq!(z.remove_range_by_rank(a, b), b + 1 - a);
                    for m in gone {
                        model.remove(&m);
                    }
                }
                _ => {}
            }
            assert_eq!(z.len(), model.len());
            if round % 3000 == 0 {
                audit_tree(&z.tree);
            }
        }
        assert!(
            z.tree.height >= 2,
            "height {} len {} leaves {}",
            z.tree.height,
            z.len(),
            z.tree.leaves.len()
        );
        audit_tree(&z.tree);
        // Big range removals from the middle, then drain by pops.
        while z.len() > 100 {
            let a = z.len() / 3;
            let b = a + z.len() / 4;
            let r = ScoreRange {
                min: z.range_by_rank(a, false).next().unwrap().1,
                max: z.range_by_rank(b, false).next().unwrap().1,
                minex: false,
                maxex: false,
            };
            let want = z
                .iter()
                .filter(|(_, s)| r.gte_min(*s) && r.lte_max(*s))
                .count();
            assert_eq!(z.count_score(&r), want);
            assert_eq!(z.remove_range_by_score(&r), want);
            audit_tree(&z.tree);
        }
        while let Some((m, s)) = z.pop(rng.bool()) {
            assert_eq!(z.score(&m), None);
            assert!(!s.is_nan());
        }
        audit_tree(&z.tree);
        assert_eq!(z.tree.height, 0);
        assert_eq!(z.iter().count(), 0);
    }

    #[test]
    fn zero_signs_tie_by_member() {
        let mut z = ZSet::default();
        z.insert(Bytes::from_static(b"b"), -0.0);
        z.insert(Bytes::from_static(b"a"), 0.0);
        let order: Vec<_> = z.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(order, [&b"a"[..], b"b"]);
        // An equal score (0 == -0) is not an update.
        assert!(!z.insert(Bytes::from_static(b"a"), -0.0));
        assert!(z.score(b"a").unwrap().is_sign_positive());
    }

    #[test]
    fn large_set_ranks() {
        let mut z = ZSet::default();
        for i in 0..20_000u32 {
            z.insert(Bytes::from(format!("{i:06}")), (i % 100) as f64);
        }
        for i in (0..20_000u32).step_by(3) {
            assert!(z.remove(format!("{i:06}").as_bytes()));
        }
        let all: Vec<_> = z.iter().map(|(m, s)| (m.clone(), s)).collect();
        for (i, (m, _)) in all.iter().enumerate().step_by(97) {
            assert_eq!(z.rank(m, false), Some(i));
            assert_eq!(z.range_by_rank(i, false).next().unwrap().0, m);
        }
        let r = ScoreRange {
            min: 10.0,
            max: 20.0,
            minex: true,
            maxex: false,
        };
        let want = all.iter().filter(|(_, s)| *s > 10.0 && *s <= 20.0).count();
        assert_eq!(z.count_score(&r), want);
    }
}
