//! Sorted-set storage, owned by one shard: a member -> score dictionary plus
//! a skiplist with spans (Pugh's skiplist as Redis extends it) ordered by
//! (score, member).
//!
//! The skiplist lives in an arena (parallel `Vec`s of node halves with
//! `u32` links and a free list) so it needs no `unsafe` and clones with a
//! few `Vec` clones. Every link carries a *span*, the number of level-0
//! steps it jumps, which turns the list into an order-statistic structure:
//!
//! ```text
//! level 2  HEAD --------------3--------------> c -----2-----> NIL
//! level 1  HEAD ------2------> b -----1-----> c --1--> d --1--> NIL
//! level 0  HEAD --1--> a --1-> b --1--> c --1--> d --1--> e
//!                      ^ rank 1                         (back links on level 0)
//! ```
//!
//! Costs (n members, m results), expected: insert, remove, score update,
//! rank of a member, element at a rank, first/last element of a score or lex
//! range and ZCOUNT/ZLEXCOUNT are O(log n); a range read is O(log n + m);
//! removing a range is O(log n + m) with one shared update vector. The
//! dictionary is an `IndexMap`, so ZSCAN and ZRANDMEMBER can address members
//! by position in O(1).
//!
//! Ordering is Redis's: scores compare with `<`/`==` (so `-0` equals `0`),
//! ties by member bytes (`memcmp`, then length). Scores are never NaN.

use std::cmp::Ordering;

use bytes::Bytes;
use foldhash::fast::RandomState;
use indexmap::IndexMap;

/// Highest level a node can reach (Redis's `ZSKIPLIST_MAXLEVEL`).
const MAX_LEVEL: usize = 32;
/// Arena index meaning "no node".
const NIL: u32 = u32::MAX;
/// Arena index of the header node, which holds no member.
const HEAD: u32 = 0;

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

#[derive(Clone, Copy, Debug)]
struct Link {
    next: u32,
    /// Level-0 steps from this node to `next` (to the end when `next` is
    /// NIL). 32 bits: a sorted set of 2^32 members would need hundreds of
    /// GiB, far past any host this runs on.
    span: u32,
}

/// A link that leads nowhere, as every level of an empty list's header.
const NO_LINK: Link = Link { next: NIL, span: 0 };

/// Levels kept in the node itself: with Redis's level distribution (p =
/// 1/4) 94 % of nodes have at most two. Higher levels spill into
/// `SkipList::spill`.
const INLINE_LINKS: usize = 2;

/// What a descent reads of a node: its score and lowest links. Exactly 32
/// bytes and 32-aligned, so a descent step costs one cache line per node
/// (a node with member and back link inline took two, and the skiplist
/// walk of ZADD is bound by those misses). The member, compared only on a
/// score tie, and the back link live in the node's [`Cold`] half.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Hot {
    score: f64,
    links: [Link; INLINE_LINKS],
    /// Index in `SkipList::spill` of levels `INLINE_LINKS..`, or NIL.
    spill: u32,
    /// Number of levels; 0 for a free slot.
    level: u8,
}

#[derive(Clone, Debug, Default)]
struct Cold {
    member: Bytes,
    /// Previous node on level 0; NIL for the first node.
    back: u32,
}

/// A node as range predicates see it. Taking `member` costs nothing until
/// it is read.
#[derive(Clone, Copy)]
struct View<'a> {
    score: f64,
    member: &'a Bytes,
}

/// `(score, member) < (s, m)` in Redis's order.
fn before(score: f64, member: &[u8], s: f64, m: &[u8]) -> bool {
    score < s || (score == s && member < m)
}

/// The skiplist arena: node `x` is `hot[x]` plus `cold[x]`; freed slots
/// (level 0) are reused through `free`, freed spill vectors through
/// `spill_free`.
#[derive(Clone, Debug)]
struct SkipList {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    spill: Vec<Vec<Link>>,
    spill_free: Vec<u32>,
    free: Vec<u32>,
    level: usize,
    len: usize,
    tail: u32,
}

impl Default for SkipList {
    fn default() -> Self {
        let head = Hot {
            score: 0.0,
            links: [NO_LINK; INLINE_LINKS],
            spill: 0,
            level: MAX_LEVEL as u8,
        };
        SkipList {
            hot: vec![head],
            cold: vec![Cold {
                member: Bytes::new(),
                back: NIL,
            }],
            spill: vec![vec![NO_LINK; MAX_LEVEL - INLINE_LINKS]],
            spill_free: Vec::new(),
            free: Vec::new(),
            level: 1,
            len: 0,
            tail: NIL,
        }
    }
}

/// Random level with p = 1/4, as Redis's `zslRandomLevel`.
fn random_level() -> usize {
    let mut level = 1;
    while level < MAX_LEVEL && fastrand::u32(..) & 0xFFFF < 0xFFFF / 4 {
        level += 1;
    }
    level
}

impl SkipList {
    fn link(&self, x: u32, i: usize) -> Link {
        let h = &self.hot[x as usize];
        debug_assert!(i < h.level as usize, "link level {i} of {}", h.level);
        if i < INLINE_LINKS {
            h.links[i]
        } else {
            self.spill[h.spill as usize][i - INLINE_LINKS]
        }
    }

    fn link_mut(&mut self, x: u32, i: usize) -> &mut Link {
        let h = &mut self.hot[x as usize];
        debug_assert!(i < h.level as usize, "link level {i} of {}", h.level);
        if i < INLINE_LINKS {
            &mut h.links[i]
        } else {
            &mut self.spill[h.spill as usize][i - INLINE_LINKS]
        }
    }

    fn next(&self, x: u32, i: usize) -> u32 {
        self.link(x, i).next
    }

    fn view(&self, x: u32) -> View<'_> {
        View {
            score: self.hot[x as usize].score,
            member: &self.cold[x as usize].member,
        }
    }

    fn first(&self) -> u32 {
        self.next(HEAD, 0)
    }

    /// Descends from the header, moving forward at each level while
    /// `go(next)` holds. Returns the last node passed at level 0 (HEAD if
    /// none), the update vector and the rank of that node.
    fn descend(
        &self,
        mut go: impl FnMut(View<'_>) -> bool,
    ) -> (u32, [u32; MAX_LEVEL], [usize; MAX_LEVEL]) {
        let mut update = [HEAD; MAX_LEVEL];
        let mut rank = [0usize; MAX_LEVEL];
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            rank[i] = if i == self.level - 1 { 0 } else { rank[i + 1] };
            loop {
                let l = self.link(x, i);
                if l.next != NIL && go(self.view(l.next)) {
                    rank[i] += l.span as usize;
                    x = l.next;
                } else {
                    break;
                }
            }
            update[i] = x;
        }
        (x, update, rank)
    }

    /// A node with `level` levels whose links the caller sets.
    fn alloc(&mut self, score: f64, member: Bytes, back: u32, level: usize) -> u32 {
        let spill = if level > INLINE_LINKS {
            let n = level - INLINE_LINKS;
            match self.spill_free.pop() {
                Some(s) => {
                    let v = &mut self.spill[s as usize];
                    v.clear();
                    v.resize(n, NO_LINK);
                    s
                }
                None => {
                    self.spill.push(vec![NO_LINK; n]);
                    (self.spill.len() - 1) as u32
                }
            }
        } else {
            NIL
        };
        let hot = Hot {
            score,
            links: [NO_LINK; INLINE_LINKS],
            spill,
            level: level as u8,
        };
        let cold = Cold { member, back };
        match self.free.pop() {
            Some(i) => {
                self.hot[i as usize] = hot;
                self.cold[i as usize] = cold;
                i
            }
            None => {
                self.hot.push(hot);
                self.cold.push(cold);
                (self.hot.len() - 1) as u32
            }
        }
    }

    /// Inserts a member that is not present.
    fn insert(&mut self, score: f64, member: Bytes) {
        let (_, mut update, mut rank) = self.descend(|n| before(n.score, n.member, score, &member));
        let level = random_level();
        if level > self.level {
            for i in self.level..level {
                rank[i] = 0;
                update[i] = HEAD;
                self.link_mut(HEAD, i).span = self.len as u32;
            }
            self.level = level;
        }
        let back = if update[0] == HEAD { NIL } else { update[0] };
        let x = self.alloc(score, member, back, level);
        for (i, &u) in update.iter().enumerate().take(level) {
            let ul = self.link(u, i);
            let passed = (rank[0] - rank[i]) as u32;
            *self.link_mut(x, i) = Link {
                next: ul.next,
                span: ul.span - passed,
            };
            *self.link_mut(u, i) = Link {
                next: x,
                span: passed + 1,
            };
        }
        for (i, &u) in update.iter().enumerate().take(self.level).skip(level) {
            self.link_mut(u, i).span += 1;
        }
        match self.next(x, 0) {
            NIL => self.tail = x,
            n => self.cold[n as usize].back = x,
        }
        self.len += 1;
    }

    /// Unlinks `x` given its update vector and frees its slot; returns the
    /// member.
    fn unlink(&mut self, x: u32, update: &[u32; MAX_LEVEL]) -> Bytes {
        let xlevel = self.hot[x as usize].level as usize;
        for (i, &u) in update.iter().enumerate().take(self.level) {
            let xl = (i < xlevel).then(|| self.link(x, i));
            let ul = self.link_mut(u, i);
            match xl {
                Some(xl) if ul.next == x => {
                    ul.span = ul.span + xl.span - 1;
                    ul.next = xl.next;
                }
                _ => ul.span -= 1,
            }
        }
        let back = self.cold[x as usize].back;
        match self.next(x, 0) {
            NIL => self.tail = back,
            n => self.cold[n as usize].back = back,
        }
        while self.level > 1 && self.next(HEAD, self.level - 1) == NIL {
            self.level -= 1;
        }
        self.len -= 1;
        self.free.push(x);
        let h = &mut self.hot[x as usize];
        if h.spill != NIL {
            self.spill_free.push(h.spill);
            h.spill = NIL;
        }
        h.level = 0;
        std::mem::take(&mut self.cold[x as usize].member)
    }

    /// Removes a present member; returns its stored key bytes.
    fn delete(&mut self, score: f64, member: &[u8]) -> Option<Bytes> {
        let (_, update, _) = self.descend(|n| before(n.score, n.member, score, member));
        let x = self.next(update[0], 0);
        if x != NIL
            && self.hot[x as usize].score == score
            && self.cold[x as usize].member[..] == *member
        {
            Some(self.unlink(x, &update))
        } else {
            None
        }
    }

    /// 1-based rank of a present member.
    fn rank(&self, score: f64, member: &[u8]) -> usize {
        let (x, _, rank) = self.descend(|n| !before(score, member, n.score, n.member));
        debug_assert!(x != HEAD && self.cold[x as usize].member[..] == *member);
        rank[0]
    }

    /// The node at a 1-based rank (1..=len).
    fn at_rank(&self, rank: usize) -> u32 {
        let mut traversed = 0;
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let l = self.link(x, i);
                if l.next != NIL && traversed + l.span as usize <= rank {
                    traversed += l.span as usize;
                    x = l.next;
                } else {
                    break;
                }
            }
            if traversed == rank {
                return x;
            }
        }
        NIL
    }

    /// First node for which `below_min` is false, if `above_max` is false
    /// for it too.
    fn first_in(
        &self,
        below_min: impl Fn(View<'_>) -> bool,
        above_max: impl Fn(View<'_>) -> bool,
    ) -> u32 {
        let (x, _, _) = self.descend(below_min);
        let x = self.next(x, 0);
        if x == NIL || above_max(self.view(x)) {
            NIL
        } else {
            x
        }
    }

    /// Last node for which `above_max` is false, if `below_min` is false for
    /// it too.
    fn last_in(
        &self,
        below_min: impl Fn(View<'_>) -> bool,
        above_max: impl Fn(View<'_>) -> bool,
    ) -> u32 {
        let (x, _, _) = self.descend(|n| !above_max(n));
        if x == HEAD || below_min(self.view(x)) {
            NIL
        } else {
            x
        }
    }

    /// Removes the run of nodes that starts after `update[0]` and lasts
    /// while `keep_going(node, index_in_run)` holds; calls `gone` with each
    /// removed member.
    fn remove_run(
        &mut self,
        update: &[u32; MAX_LEVEL],
        mut keep_going: impl FnMut(View<'_>, usize) -> bool,
        mut gone: impl FnMut(Bytes),
    ) -> usize {
        let mut x = self.next(update[0], 0);
        let mut removed = 0;
        while x != NIL && keep_going(self.view(x), removed) {
            let next = self.next(x, 0);
            gone(self.unlink(x, update));
            removed += 1;
            x = next;
        }
        removed
    }
}

/// Iterator over (member, score) pairs, forwards or backwards.
pub struct Iter<'a> {
    sl: &'a SkipList,
    cur: u32,
    rev: bool,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Bytes, f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur == NIL || self.left == 0 {
            return None;
        }
        let (h, c) = (
            &self.sl.hot[self.cur as usize],
            &self.sl.cold[self.cur as usize],
        );
        self.cur = if self.rev { c.back } else { h.links[0].next };
        self.left -= 1;
        Some((&c.member, h.score))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// The member -> score dictionary; insertion-ordered for ZSCAN and
/// ZRANDMEMBER.
pub type ZDict = IndexMap<Bytes, f64, RandomState>;

/// A sorted set.
#[derive(Clone, Default)]
pub struct ZSet {
    dict: ZDict,
    sl: SkipList,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    fn iter_from(&self, cur: u32, rev: bool) -> Iter<'_> {
        Iter {
            sl: &self.sl,
            cur,
            rev,
            left: usize::MAX,
        }
    }

    /// Members in ascending (score, member) order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(self.sl.first(), false)
    }

    /// Members in descending order.
    pub fn iter_rev(&self) -> Iter<'_> {
        self.iter_from(self.sl.tail, true)
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
                        .sl
                        .delete(old, &member)
                        .expect("zset index out of sync");
                    self.sl.insert(score, m);
                }
                false
            }
            None => {
                self.dict.insert(member.clone(), score);
                self.sl.insert(score, member);
                true
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.dict.swap_remove(member) {
            Some(s) => {
                self.sl.delete(s, member).expect("zset index out of sync");
                true
            }
            None => false,
        }
    }

    /// 0-based rank of a member, counted from the low end or (`rev`) the
    /// high end.
    pub fn rank(&self, member: &[u8], rev: bool) -> Option<usize> {
        let s = self.score(member)?;
        let r = self.sl.rank(s, member);
        Some(if rev { self.len() - r } else { r - 1 })
    }

    /// Members from 0-based rank `start` on (counted from the high end when
    /// `rev`), in that direction. `start` past the end gives nothing.
    pub fn range_by_rank(&self, start: usize, rev: bool) -> Iter<'_> {
        if start >= self.len() {
            return self.iter_from(NIL, rev);
        }
        let r = if rev { self.len() - start } else { start + 1 };
        self.iter_from(self.sl.at_rank(r), rev)
    }

    fn first_in_score(&self, r: &ScoreRange) -> u32 {
        if r.is_empty() {
            return NIL;
        }
        self.sl
            .first_in(|n| !r.gte_min(n.score), |n| !r.lte_max(n.score))
    }

    fn last_in_score(&self, r: &ScoreRange) -> u32 {
        if r.is_empty() {
            return NIL;
        }
        self.sl
            .last_in(|n| !r.gte_min(n.score), |n| !r.lte_max(n.score))
    }

    fn first_in_lex(&self, r: &LexRange) -> u32 {
        if r.is_empty() {
            return NIL;
        }
        self.sl
            .first_in(|n| !r.gte_min(n.member), |n| !r.lte_max(n.member))
    }

    fn last_in_lex(&self, r: &LexRange) -> u32 {
        if r.is_empty() {
            return NIL;
        }
        self.sl
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
        self.iter_from(start, rev)
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
        self.iter_from(start, rev)
            .take_while(move |&(m, _)| if rev { r.gte_min(m) } else { r.lte_max(m) })
    }

    /// Number of elements between two nodes (inclusive), by rank.
    fn count_between(&self, first: u32, last: u32) -> usize {
        if first == NIL || last == NIL {
            return 0;
        }
        let (f, l) = (self.sl.view(first), self.sl.view(last));
        let rf = self.sl.rank(f.score, f.member);
        let rl = self.sl.rank(l.score, l.member);
        (rl + 1).saturating_sub(rf)
    }

    /// ZCOUNT in O(log n).
    pub fn count_score(&self, r: &ScoreRange) -> usize {
        self.count_between(self.first_in_score(r), self.last_in_score(r))
    }

    /// ZLEXCOUNT in O(log n).
    pub fn count_lex(&self, r: &LexRange) -> usize {
        self.count_between(self.first_in_lex(r), self.last_in_lex(r))
    }

    /// Removes 0-based ranks `start..=end` (both in range); returns the count.
    pub fn remove_range_by_rank(&mut self, start: usize, end: usize) -> usize {
        // Walk to the node at rank `start` (1-based; HEAD for 0) keeping
        // the update vector, as Redis's zslDeleteRangeByRank.
        let sl = &self.sl;
        let mut update = [HEAD; MAX_LEVEL];
        let (mut x, mut seen) = (HEAD, 0);
        for i in (0..sl.level).rev() {
            loop {
                let l = sl.link(x, i);
                if l.next == NIL || seen + l.span as usize > start {
                    break;
                }
                seen += l.span as usize;
                x = l.next;
            }
            update[i] = x;
        }
        let n = end + 1 - start;
        let dict = &mut self.dict;
        self.sl.remove_run(
            &update,
            |_, i| i < n,
            |m| {
                dict.swap_remove(&m);
            },
        )
    }

    /// Removes every member with a score in `r`; returns the count.
    pub fn remove_range_by_score(&mut self, r: &ScoreRange) -> usize {
        let (_, update, _) = self.sl.descend(|n| !r.gte_min(n.score));
        let dict = &mut self.dict;
        self.sl.remove_run(
            &update,
            |n, _| r.lte_max(n.score),
            |m| {
                dict.swap_remove(&m);
            },
        )
    }

    /// Removes every member in lex range `r`; returns the count.
    pub fn remove_range_by_lex(&mut self, r: &LexRange) -> usize {
        if r.is_empty() {
            return 0;
        }
        let (_, update, _) = self.sl.descend(|n| !r.gte_min(n.member));
        let dict = &mut self.dict;
        self.sl.remove_run(
            &update,
            |n, _| r.lte_max(n.member),
            |m| {
                dict.swap_remove(&m);
            },
        )
    }

    /// Removes and returns the lowest (or, with `max`, highest) member.
    pub fn pop(&mut self, max: bool) -> Option<(Bytes, f64)> {
        let x = if max { self.sl.tail } else { self.sl.first() };
        if x == NIL {
            return None;
        }
        let n = self.sl.view(x);
        let (m, s) = (n.member.clone(), n.score);
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
