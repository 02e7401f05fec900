//! Set commands (SADD ... SSCAN), run on the shard owning the key. The
//! multi-key ones (SMOVE, SINTER/SUNION/SDIFF and their STORE forms,
//! SINTERCARD) are written for one shard and marked `Multi::Scratch`, so
//! keys spanning shards run on a scratch copy. Errors are Redis 7.0's.
//!
//! Also home of the helpers HSCAN shares (cursor parsing, scan options, the
//! index walk) and of the distinct-sample picker HRANDFIELD shares.

use bytes::Bytes;
use indexmap::IndexSet;

use super::notify;
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, Multi, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, parse_i64};
use crate::glob::glob_match;
use crate::shard::keyspace::{Entry, SetValue, Str, Value};

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const WDF: &[&str] = &["write", "denyoom", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];

pub static COMMANDS: [CmdSpec; 17] = [
    keyed!("sadd", -3, WDF, 1, 1, 1, sadd),
    keyed!("srem", -3, WF, 1, 1, 1, srem),
    keyed!("scard", 2, RF, 1, 1, 1, scard),
    keyed!("sismember", 3, RF, 1, 1, 1, sismember),
    keyed!("smismember", -3, RF, 1, 1, 1, smismember),
    keyed!("smembers", 2, R, 1, 1, 1, smembers),
    keyed!("spop", -2, WF, 1, 1, 1, spop),
    keyed!("srandmember", -2, R, 1, 1, 1, srandmember),
    keyed!("smove", 4, WF, 1, 2, 1, smove, Multi::Scratch),
    keyed!("sinter", -2, R, 1, -1, 1, sinter, Multi::Scratch),
    keyed!(numkeys 1; "sintercard", -3, &["readonly", "movablekeys"], 0, 0, 0, sintercard, Multi::Scratch),
    keyed!("sunion", -2, R, 1, -1, 1, sunion, Multi::Scratch),
    keyed!("sdiff", -2, R, 1, -1, 1, sdiff, Multi::Scratch),
    keyed!("sinterstore", -3, W, 1, -1, 1, sinterstore, Multi::Scratch),
    keyed!("sunionstore", -3, W, 1, -1, 1, sunionstore, Multi::Scratch),
    keyed!("sdiffstore", -3, W, 1, -1, 1, sdiffstore, Multi::Scratch),
    keyed!("sscan", -3, R, 1, 1, 1, sscan),
];

/// Redis's `getPositiveLongFromObjectOrReply` message, used for both a
/// non-integer and a negative SPOP count.
const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
/// Redis's range error for counts limited to [-LONG_MAX, LONG_MAX].
pub(super) const COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

/// The set at `key`: `Ok(None)` when missing, `Err` on WRONGTYPE. `read`
/// selects Redis's `lookupKeyRead` (counts hits/misses) over `lookupKeyWrite`.
fn set_at<'a>(ex: &'a mut Exec, key: &[u8], read: bool) -> Result<Option<&'a mut SetValue>, ()> {
    ex.typed_at(key, read, |v| match v {
        Value::Set(x) => Some(&mut **x),
        _ => None,
    })
}

/// The set at `key` for adding, created empty when missing.
fn set_or_create<'a>(ex: &'a mut Exec, key: &[u8]) -> Result<&'a mut SetValue, ()> {
    if ex.lookup_write(key).is_none() {
        ex.insert_new(key, Value::Set(Box::default()));
    }
    set_at(ex, key, false).map(|s| s.expect("just created"))
}

fn sadd(ex: &mut Exec, a: &[Bytes]) {
    let Ok(s) = set_or_create(ex, &a[1]) else {
        return ex.r.error(WRONGTYPE);
    };
    let added = a[2..]
        .iter()
        .filter(|m| s.insert(Str::from(&m[..])))
        .count();
    if added > 0 {
        ex.modified(&a[1]);
        ex.notify(notify::SET, "sadd", &a[1]);
    }
    ex.r.int(added as i64)
}

fn srem(ex: &mut Exec, a: &[Bytes]) {
    let removed = match set_at(ex, &a[1], false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => 0,
        Ok(Some(s)) => a[2..].iter().filter(|m| s.swap_remove(&m[..])).count(),
    };
    if removed > 0 {
        ex.elements_removed(notify::SET, "srem", &a[1]);
    }
    ex.r.int(removed as i64)
}

fn scard(ex: &mut Exec, a: &[Bytes]) {
    match set_at(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(s) => {
            let n = s.map_or(0, |s| s.len());
            ex.r.int(n as i64)
        }
    }
}

fn sismember(ex: &mut Exec, a: &[Bytes]) {
    match set_at(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(s) => {
            let found = s.is_some_and(|s| s.contains(&a[2][..]));
            ex.r.int(found as i64)
        }
    }
}

fn smismember(ex: &mut Exec, a: &[Bytes]) {
    let found: Vec<bool> = match set_at(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => vec![false; a.len() - 2],
        Ok(Some(s)) => a[2..].iter().map(|m| s.contains(&m[..])).collect(),
    };
    ex.r.array(found.len());
    for f in found {
        ex.r.int(f as i64);
    }
}

fn smembers(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[1..2], Op::Inter, None)
}

/// Replies with members as a RESP3 set (an array in RESP2).
fn reply_set<T: AsRef<[u8]>>(ex: &mut Exec, n: usize, members: impl Iterator<Item = T>) {
    ex.r.set_header(n);
    for m in members {
        ex.r.bulk(m.as_ref());
    }
}

/// ```text
/// SPOP key          -> bulk or null
/// SPOP key count    -> set of up to count members (the whole set deletes the key)
/// ```
fn spop(ex: &mut Exec, a: &[Bytes]) {
    if a.len() > 3 {
        return ex.r.error(SYNTAX);
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => match parse_i64(c) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return ex.r.error(NOT_POSITIVE),
        },
    };
    let mut s = match set_at(ex, &a[1], false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) if count.is_none() => return ex.r.null(),
        Ok(None) => return ex.r.set_header(0),
        Ok(Some(s)) => s,
    };
    if count == Some(0) {
        return ex.r.set_header(0);
    }
    if count.is_some_and(|n| n >= s.len()) {
        // Redis answers "the whole set" through SUNION's read lookup: a hit.
        ex.db().1.hits += 1;
        s = match set_at(ex, &a[1], false) {
            Ok(Some(s)) => s,
            _ => unreachable!("looked up above"),
        };
    }
    let popped: Vec<Str> = match count {
        Some(n) if n >= s.len() => std::mem::take(s).into_iter().collect(),
        Some(n) => (0..n)
            .map(|_| {
                let i = fastrand::usize(..s.len());
                s.swap_remove_index(i).expect("index below len")
            })
            .collect(),
        None => {
            let i = fastrand::usize(..s.len());
            vec![s.swap_remove_index(i).expect("index below len")]
        }
    };
    ex.elements_removed(notify::SET, "spop", &a[1]);
    // Random picks replicate as the members actually removed.
    let mut srem = Vec::with_capacity(popped.len() + 2);
    srem.push(Bytes::from_static(b"SREM"));
    srem.push(a[1].clone());
    srem.extend(popped.iter().map(Str::to_bytes));
    ex.propagate_as(srem);
    match count {
        None => ex.r.bulk(&popped[0]),
        Some(_) => reply_set(ex, popped.len(), popped.iter()),
    }
}

/// Parses HRANDFIELD/SRANDMEMBER's count: an integer in
/// [-LONG_MAX, LONG_MAX]. Returns (count, unique) or the error line.
pub(super) fn rand_count(b: &[u8]) -> Result<(usize, bool), &'static str> {
    match parse_i64(b) {
        None => Err(NOT_INT),
        Some(i64::MIN) => Err(COUNT_RANGE),
        Some(n) => Ok((n.unsigned_abs() as usize, n >= 0)),
    }
}

/// `count` distinct indices below `len` (`count < len`), in random order.
/// Few picks out of many: draw and reject repeats; otherwise a partial
/// Fisher-Yates shuffle of all indices.
pub(super) fn distinct_indices(len: usize, count: usize) -> Vec<usize> {
    if count * 3 < len {
        let mut picked = IndexSet::with_capacity(count);
        while picked.len() < count {
            picked.insert(fastrand::usize(..len));
        }
        picked.into_iter().collect()
    } else {
        let mut idx: Vec<usize> = (0..len).collect();
        for i in 0..count {
            let j = fastrand::usize(i..len);
            idx.swap(i, j);
        }
        idx.truncate(count);
        idx
    }
}

/// ```text
/// SRANDMEMBER key          -> bulk or null
/// SRANDMEMBER key count    -> array: count >= 0 distinct members,
///                             count < 0 |count| members with repeats
/// ```
fn srandmember(ex: &mut Exec, a: &[Bytes]) {
    if a.len() > 3 {
        return ex.r.error(SYNTAX);
    }
    let Some(c) = a.get(2) else {
        return match set_at(ex, &a[1], true) {
            Err(()) => ex.r.error(WRONGTYPE),
            Ok(None) => ex.r.null(),
            Ok(Some(s)) => {
                let m = s[fastrand::usize(..s.len())].clone();
                ex.r.bulk(&m)
            }
        };
    };
    let (count, uniq) = match rand_count(c) {
        Ok(v) => v,
        Err(e) => return ex.r.error(e),
    };
    match set_at(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.array(0),
        Ok(Some(_)) => {}
    }
    // Borrow the set through the keyspace alone so replies can be written
    // while it is held: picks with repeats are streamed, not collected, as
    // the count comes from the client and may be huge.
    let Some(Entry {
        value: Value::Set(s),
        ..
    }) = ex.ks.dbs[ex.db].peek(&a[1], ex.cut)
    else {
        unreachable!("looked up above");
    };
    if count == 0 {
        return ex.r.array(0);
    }
    if !uniq || count == 1 {
        ex.r.array(count);
        for _ in 0..count {
            ex.r.bulk(&s[fastrand::usize(..s.len())]);
        }
        return;
    }
    let picked: Vec<usize> = if count >= s.len() {
        (0..s.len()).collect()
    } else {
        distinct_indices(s.len(), count)
    };
    ex.r.array(picked.len());
    for i in picked {
        ex.r.bulk(&s[i]);
    }
}

/// ```text
/// SMOVE source destination member -> 1 moved, 0 not in source
/// ```
fn smove(ex: &mut Exec, a: &[Bytes]) {
    let (src, dst, m) = (&a[1], &a[2], &a[3]);
    // Redis answers 0 for a missing source before checking either type.
    let src_is_set = match ex.lookup_write(src) {
        None => return ex.r.int(0),
        Some(e) => matches!(e.value, Value::Set(_)),
    };
    let dst_ok = ex
        .lookup_write(dst)
        .is_none_or(|e| matches!(e.value, Value::Set(_)));
    if !src_is_set || !dst_ok {
        return ex.r.error(WRONGTYPE);
    }
    let s = set_at(ex, src, false)
        .ok()
        .flatten()
        .expect("checked above");
    if src == dst {
        let found = s.contains(&m[..]);
        return ex.r.int(found as i64);
    }
    if !s.swap_remove(&m[..]) {
        return ex.r.int(0);
    }
    ex.elements_removed(notify::SET, "srem", src);
    let d = set_or_create(ex, dst).expect("checked above");
    if d.insert(Str::from(&m[..])) {
        ex.modified(dst);
        ex.notify(notify::SET, "sadd", dst);
    }
    ex.r.int(1)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The SINTER/SUNION/SDIFF family. Every key is type-checked first (a
/// missing key is an empty set); the result is replied as a set, stored in
/// `dst` (an empty result deletes it) and its size replied.
fn set_op(ex: &mut Exec, keys: &[Bytes], op: Op, dst: Option<&Bytes>) {
    let Some(members) = compute(ex, keys, op, usize::MAX) else {
        return ex.r.error(WRONGTYPE);
    };
    let Some(dst) = dst else {
        return reply_set(ex, members.len(), members.iter());
    };
    let n = members.len();
    if n == 0 {
        if ex.db().0.remove(dst).is_some() {
            ex.modified(dst);
            ex.notify(notify::GENERIC, "del", dst);
        }
    } else {
        let set = Value::Set(Box::new(members.into_iter().collect()));
        ex.set_key(dst, set);
        ex.modified(dst);
        let event = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        ex.notify(notify::SET, event, dst);
    }
    ex.r.int(n as i64)
}

/// The members of the operation's result (at most `limit` for an
/// intersection), or `None` when a key holds another type. Every key is
/// read as Redis 7.0 reads them, the *STORE forms' too: a hit or a miss
/// (and `keymiss`) each.
fn compute(ex: &mut Exec, keys: &[Bytes], op: Op, limit: usize) -> Option<Vec<Str>> {
    // Lookups first: lazy expiry, hit/miss counting and the type check.
    for k in keys {
        set_at(ex, k, true).ok()?;
    }
    let now = ex.cut;
    let db = &ex.ks.dbs[ex.db];
    let sets: Vec<Option<&SetValue>> = keys
        .iter()
        .map(|k| match db.peek(k, now) {
            Some(Entry {
                value: Value::Set(s),
                ..
            }) => Some(&**s),
            _ => None,
        })
        .collect();
    let out = match op {
        Op::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Some(Vec::new());
            }
            let mut sets: Vec<&SetValue> = sets.into_iter().flatten().collect();
            sets.sort_by_key(|s| s.len());
            sets[0]
                .iter()
                .filter(|m| sets[1..].iter().all(|s| s.contains(m)))
                .take(limit)
                .cloned()
                .collect()
        }
        Op::Union => {
            let mut u = SetValue::default();
            for s in sets.into_iter().flatten() {
                u.extend(s.iter().cloned());
            }
            u.into_iter().collect()
        }
        Op::Diff => match sets[0] {
            None => Vec::new(),
            Some(first) => first
                .iter()
                .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(m)))
                .cloned()
                .collect(),
        },
    };
    Some(out)
}

fn sinter(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[1..], Op::Inter, None)
}

fn sunion(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[1..], Op::Union, None)
}

fn sdiff(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[1..], Op::Diff, None)
}

fn sinterstore(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[2..], Op::Inter, Some(&a[1]))
}

fn sunionstore(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[2..], Op::Union, Some(&a[1]))
}

fn sdiffstore(ex: &mut Exec, a: &[Bytes]) {
    set_op(ex, &a[2..], Op::Diff, Some(&a[1]))
}

/// ```text
/// SINTERCARD numkeys key [key ...] [LIMIT limit] -> integer
/// ```
fn sintercard(ex: &mut Exec, a: &[Bytes]) {
    let numkeys = match parse_i64(&a[1]) {
        Some(n) if n >= 1 => n as usize,
        _ => return ex.r.error("ERR numkeys should be greater than 0"),
    };
    if numkeys > a.len() - 2 {
        return ex
            .r
            .error("ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0usize;
    let mut j = 2 + numkeys;
    while j < a.len() {
        if eq_ic(&a[j], "limit") && j + 1 < a.len() {
            match parse_i64(&a[j + 1]) {
                Some(n) if n >= 0 => limit = n as usize,
                _ => return ex.r.error("ERR LIMIT can't be negative"),
            }
            j += 2;
        } else {
            return ex.r.error(SYNTAX);
        }
    }
    let limit = if limit == 0 { usize::MAX } else { limit };
    match compute(ex, &a[2..2 + numkeys], Op::Inter, limit) {
        None => ex.r.error(WRONGTYPE),
        Some(m) => ex.r.int(m.len() as i64),
    }
}

// ---------------------------------------------------------------------------
// HSCAN / SSCAN. The cursor is a position in the collection's IndexMap, and
// the walk goes *downwards* (as `Db::scan` does inside a segment):
// `swap_remove` only ever moves the last (already visited) element into a
// hole, so an element present for the whole scan is returned at least
// once. Cursor 0 starts at the top and a returned 0 ends the walk.
// Collections Redis would keep in a compact encoding (listpack, intset) are
// returned whole with cursor 0, as Redis does.
// ---------------------------------------------------------------------------

/// Parses a SCAN cursor as Redis's `strtoul`-based `parseScanCursorOrReply`:
/// no leading space, optional sign ("-1" wraps), no garbage, no overflow;
/// the empty string is 0. Parsing stops at a NUL as in C.
pub(crate) fn parse_cursor(b: &[u8]) -> Option<u64> {
    let b = &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())];
    let Some(&first) = b.first() else {
        return Some(0);
    };
    if first.is_ascii_whitespace() || first == 0x0b {
        return None;
    }
    let (neg, digits) = match first {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// COUNT and MATCH of HSCAN/SSCAN (from argument 3).
pub(super) struct ScanOpts {
    pub count: usize,
    /// `None` for no pattern or `*` (which Redis treats as no filter, so an
    /// empty element matches it).
    pub pattern: Option<Bytes>,
}

impl ScanOpts {
    pub fn parse(a: &[Bytes]) -> Result<ScanOpts, &'static str> {
        let mut o = ScanOpts {
            count: 10,
            pattern: None,
        };
        let mut i = 3;
        while i < a.len() {
            let more = i + 1 < a.len();
            if eq_ic(&a[i], "count") && more {
                match parse_i64(&a[i + 1]) {
                    None => return Err(NOT_INT),
                    Some(n) if n < 1 => return Err(SYNTAX),
                    Some(n) => o.count = n as usize,
                }
            } else if eq_ic(&a[i], "match") && more {
                o.pattern = (a[i + 1].as_ref() != b"*").then(|| a[i + 1].clone());
            } else {
                return Err(SYNTAX);
            }
            i += 2;
        }
        Ok(o)
    }

    pub fn matches(&self, m: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, m, false))
    }
}

/// One scan step over `len` slots: calls `visit` on each index walked and
/// returns the next cursor (0 when done). `whole` walks everything.
pub(super) fn walk(
    len: usize,
    cursor: u64,
    count: usize,
    whole: bool,
    mut visit: impl FnMut(usize),
) -> u64 {
    let mut i = if cursor == 0 || whole {
        len
    } else {
        usize::try_from(cursor).unwrap_or(usize::MAX).min(len)
    };
    let mut n = 0;
    while i > 0 && (whole || n < count) {
        i -= 1;
        n += 1;
        visit(i);
    }
    i as u64
}

/// Replies `[cursor, [elements...]]`.
pub(super) fn reply_scan<T: AsRef<[u8]>>(ex: &mut Exec, cursor: u64, items: &[T]) {
    ex.r.array(2);
    ex.r.bulk(itoa::Buffer::new().format(cursor).as_bytes());
    ex.r.array(items.len());
    for it in items {
        ex.r.bulk(it.as_ref());
    }
}

/// Redis 7.0 keeps a set of at most 512 integers as an intset, which SSCAN
/// returns whole.
fn is_intset(s: &SetValue) -> bool {
    s.len() <= 512 && s.iter().all(|m| parse_i64(m).is_some())
}

/// ```text
/// SSCAN key cursor [MATCH pattern] [COUNT count] -> [next-cursor, [member ...]]
/// ```
fn sscan(ex: &mut Exec, a: &[Bytes]) {
    let Some(cursor) = parse_cursor(&a[2]) else {
        return ex.r.error("ERR invalid cursor");
    };
    let s = match set_at(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return reply_scan::<Bytes>(ex, 0, &[]),
        Ok(Some(s)) => s,
    };
    let o = match ScanOpts::parse(a) {
        Ok(o) => o,
        Err(e) => return ex.r.error(e),
    };
    let mut items = Vec::new();
    let next = walk(s.len(), cursor, o.count, is_intset(s), |i| {
        if o.matches(&s[i]) {
            items.push(s[i].clone());
        }
    });
    reply_scan(ex, next, &items)
}
