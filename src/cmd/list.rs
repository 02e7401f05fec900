//! List commands (LPUSH, LRANGE, LMOVE, LMPOP, BLPOP and friends). Each runs
//! on the shard owning its key(s); the multi-key ones (LMOVE, RPOPLPUSH,
//! LMPOP and the blocking forms) are `Multi::Scratch` when their keys span
//! shards. Replies and errors are Redis 7.0's, word for word, including the
//! order in which arguments are checked: that order decides which error a
//! client sees when several things are wrong at once.
//!
//! Blocking commands parse and validate everything, then either serve the
//! request exactly like their non-blocking form or write nothing and set
//! `Exec::would_block`; the caller parks the client and runs the handler
//! again later, so a handler that blocks must leave the keyspace untouched.
//!
//! ```text
//! BLPOP k1 k2 0      -> *2 $k $v            (first non-empty key wins)
//! BLMOVE s d L R 0   -> $v
//! BLMPOP 0 2 a b LEFT COUNT 3 -> *2 $key *n $v...
//! timeout            -> *-1 (RESP3 _), answered by the caller
//! ```

use std::collections::VecDeque;

use bytes::Bytes;

use super::string::keyed;
use super::{
    CmdSpec, Exec, Kind, Multi, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, notify, parse_f64, parse_i64,
};
use crate::shard::keyspace::{Keyspace, Value};

const WDF: &[&str] = &["write", "denyoom", "fast"];
const WD: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const WR: &[&str] = &["write"];
const RF: &[&str] = &["readonly", "fast"];
const RO: &[&str] = &["readonly"];
const WM: &[&str] = &["write", "movablekeys"];
const WB: &[&str] = &["write", "noscript", "blocking"];
const WDB: &[&str] = &["write", "denyoom", "noscript", "blocking"];
const WBM: &[&str] = &["write", "blocking", "movablekeys"];

pub static COMMANDS: [CmdSpec; 22] = [
    keyed!("lpush", -3, WDF, 1, 1, 1, lpush),
    keyed!("rpush", -3, WDF, 1, 1, 1, rpush),
    keyed!("lpushx", -3, WDF, 1, 1, 1, lpushx),
    keyed!("rpushx", -3, WDF, 1, 1, 1, rpushx),
    keyed!("lpop", -2, WF, 1, 1, 1, lpop),
    keyed!("rpop", -2, WF, 1, 1, 1, rpop),
    keyed!("llen", 2, RF, 1, 1, 1, llen),
    keyed!("lrange", 4, RO, 1, 1, 1, lrange),
    keyed!("lindex", 3, RO, 1, 1, 1, lindex),
    keyed!("lset", 4, WD, 1, 1, 1, lset),
    keyed!("linsert", 5, WD, 1, 1, 1, linsert),
    keyed!("lrem", 4, WR, 1, 1, 1, lrem),
    keyed!("ltrim", 4, WR, 1, 1, 1, ltrim),
    keyed!("lpos", -3, RO, 1, 1, 1, lpos),
    keyed!("lmove", 5, WD, 1, 2, 1, lmove, Multi::Scratch),
    keyed!("rpoplpush", 3, WD, 1, 2, 1, rpoplpush, Multi::Scratch),
    keyed!(numkeys 1; "lmpop", -4, WM, 0, 0, 0, lmpop, Multi::Scratch),
    keyed!("blpop", -3, WB, 1, -2, 1, blpop, Multi::Scratch),
    keyed!("brpop", -3, WB, 1, -2, 1, brpop, Multi::Scratch),
    keyed!("blmove", 6, WDB, 1, 2, 1, blmove, Multi::Scratch),
    keyed!("brpoplpush", 4, WDB, 1, 2, 1, brpoplpush, Multi::Scratch),
    keyed!(numkeys 2; "blmpop", -5, WBM, 0, 0, 0, blmpop, Multi::Scratch),
];

const NO_SUCH_KEY: &str = "ERR no such key";
const OUT_OF_RANGE: &str = "ERR index out of range";
const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
const TIMEOUT_NOT_FLOAT: &str = "ERR timeout is not a float or out of range";
const TIMEOUT_NEGATIVE: &str = "ERR timeout is negative";

/// Which end of a list: LEFT is the head, RIGHT the tail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` / `RIGHT`, any case (Redis's `getListPositionFromObjectOrReply`).
    fn parse(b: &[u8]) -> Option<End> {
        if eq_ic(b, "left") {
            Some(End::Left)
        } else if eq_ic(b, "right") {
            Some(End::Right)
        } else {
            None
        }
    }

    fn pop_event(self) -> &'static str {
        match self {
            End::Left => "lpop",
            End::Right => "rpop",
        }
    }

    /// The pop command a blocking or multi-key pop replicates as.
    fn pop_cmd(self) -> Bytes {
        Bytes::from_static(match self {
            End::Left => b"LPOP",
            End::Right => b"RPOP",
        })
    }

    fn push_event(self) -> &'static str {
        match self {
            End::Left => "lpush",
            End::Right => "rpush",
        }
    }
}

type List = VecDeque<Bytes>;

fn pop(l: &mut List, end: End) -> Option<Bytes> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

fn push(l: &mut List, end: End, v: Bytes) {
    match end {
        End::Left => l.push_front(v),
        End::Right => l.push_back(v),
    }
}

/// A key looked up as a list: `Ok(None)` when missing, `Err` on WRONGTYPE.
/// Takes the keyspace rather than the `Exec` so the caller can keep writing
/// replies through `ex.r` while it holds the list. `read` counts a keyspace
/// hit or miss, as Redis's `lookupKeyRead` does (LLEN, LRANGE, LINDEX, LPOS).
fn list_in<'k>(
    ks: &'k mut Keyspace,
    db: usize,
    now: u64,
    key: &[u8],
    read: bool,
) -> Result<Option<&'k mut List>, ()> {
    let (db, st) = ks.db(db);
    let e = db.get(key, now, st);
    if read {
        if e.is_some() {
            st.hits += 1;
        } else {
            st.misses += 1;
        }
    }
    match e {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::List(l) => Ok(Some(l)),
            _ => Err(()),
        },
    }
}

/// Shorthand: `list!(ex, key, read)`, borrowing only the keyspace of `ex`.
/// A read first asks [`Exec::keymiss`](super::Exec::keymiss).
macro_rules! list {
    ($ex:expr, $key:expr, $read:expr) => {
        if $read && $ex.keymiss($key) {
            Ok(None)
        } else {
            list_in($ex.ks, $ex.db, $ex.cut, $key, $read)
        }
    };
}

/// An index / range argument: any 64-bit integer, else "not an integer".
fn int_arg(b: &[u8]) -> Result<i64, &'static str> {
    parse_i64(b).ok_or(NOT_INT)
}

/// Redis's `getRangeLongFromObjectOrReply` with a custom message: a
/// non-integer and an out-of-range value give the same error.
fn ranged(b: &[u8], min: i64, msg: &'static str) -> Result<i64, &'static str> {
    match parse_i64(b) {
        Some(n) if n >= min => Ok(n),
        _ => Err(msg),
    }
}

fn wrong_arity(ex: &mut Exec, name: &str) {
    ex.r.error(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

// ---------------------------------------------------------------------------
// Push, pop, length
// ---------------------------------------------------------------------------

fn lpush(ex: &mut Exec, a: &[Bytes]) {
    push_generic(ex, a, End::Left, false)
}

fn rpush(ex: &mut Exec, a: &[Bytes]) {
    push_generic(ex, a, End::Right, false)
}

fn lpushx(ex: &mut Exec, a: &[Bytes]) {
    push_generic(ex, a, End::Left, true)
}

fn rpushx(ex: &mut Exec, a: &[Bytes]) {
    push_generic(ex, a, End::Right, true)
}

/// LPUSH / RPUSH (create the list) and the X forms (only an existing list).
/// Replies with the new length.
fn push_generic(ex: &mut Exec, a: &[Bytes], end: End, only_existing: bool) {
    let key = &a[1];
    let values = a[2..].iter().map(|v| Bytes::copy_from_slice(v));
    let len = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(Some(l)) => {
            for v in values {
                push(l, end, v);
            }
            l.len()
        }
        Ok(None) if only_existing => return ex.r.int(0),
        Ok(None) => {
            let mut l = List::with_capacity(a.len() - 2);
            for v in values {
                push(&mut l, end, v);
            }
            let n = l.len();
            ex.insert_new(key, Value::List(Box::new(l)));
            n
        }
    };
    ex.notify(notify::LIST, end.push_event(), key);
    ex.modified(key);
    ex.r.int(len as i64)
}

fn lpop(ex: &mut Exec, a: &[Bytes]) {
    pop_generic(ex, a, End::Left, "lpop")
}

fn rpop(ex: &mut Exec, a: &[Bytes]) {
    pop_generic(ex, a, End::Right, "rpop")
}

/// LPOP / RPOP key [count]. Without a count: one bulk, or a null bulk when
/// the key is missing. With a count: an array (elements in pop order), a
/// null *array* when the key is missing, and an empty array for count 0.
fn pop_generic(ex: &mut Exec, a: &[Bytes], end: End, name: &str) {
    if a.len() > 3 {
        return wrong_arity(ex, name);
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => match ranged(c, 0, NOT_POSITIVE) {
            Ok(n) => Some(n as u64),
            Err(e) => return ex.r.error(e),
        },
    };
    let key = &a[1];
    let l = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) if count.is_some() => return ex.r.null_array(),
        Ok(None) => return ex.r.null(),
        Ok(Some(l)) => l,
    };
    match count {
        Some(0) => return ex.r.array(0),
        None => match pop(l, end) {
            Some(v) => ex.r.bulk(&v),
            None => return ex.r.null(),
        },
        Some(n) => {
            let n = (n as usize).min(l.len());
            ex.r.array(n);
            for _ in 0..n {
                let v = pop(l, end).expect("counted");
                ex.r.bulk(&v);
            }
        }
    }
    ex.elements_removed(notify::LIST, end.pop_event(), key);
}

fn llen(ex: &mut Exec, a: &[Bytes]) {
    match list!(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(l) => ex.r.int(l.map_or(0, |l| l.len()) as i64),
    }
}

// ---------------------------------------------------------------------------
// Index and range access
// ---------------------------------------------------------------------------

/// Redis's range normalisation for LRANGE / LTRIM: negative indices count
/// from the end, then clamp. `None` when the range is empty.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

/// A single index (LINDEX, LSET): negative counts from the tail.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// LRANGE key start stop: the indices are checked before the key.
fn lrange(ex: &mut Exec, a: &[Bytes]) {
    let (start, end) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return ex.r.error(e),
    };
    let l = match list!(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.array(0),
        Ok(Some(l)) => l,
    };
    match clamp_range(start, end, l.len()) {
        None => ex.r.array(0),
        Some((s, e)) => {
            ex.r.array(e - s + 1);
            for v in l.range(s..=e) {
                ex.r.bulk(v);
            }
        }
    }
}

/// LINDEX key index: the key is checked before the index, so a missing key
/// answers nil even for a malformed index.
fn lindex(ex: &mut Exec, a: &[Bytes]) {
    let l = match list!(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.null(),
        Ok(Some(l)) => l,
    };
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(e) => return ex.r.error(e),
    };
    match resolve_index(index, l.len()) {
        Some(i) => ex.r.bulk(&l[i]),
        None => ex.r.null(),
    }
}

/// LSET key index element.
fn lset(ex: &mut Exec, a: &[Bytes]) {
    let key = &a[1];
    let l = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.error(NO_SUCH_KEY),
        Ok(Some(l)) => l,
    };
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(e) => return ex.r.error(e),
    };
    let Some(i) = resolve_index(index, l.len()) else {
        return ex.r.error(OUT_OF_RANGE);
    };
    l[i] = Bytes::copy_from_slice(&a[3]);
    ex.notify(notify::LIST, "lset", key);
    ex.modified(key);
    ex.r.ok()
}

/// LINSERT key BEFORE|AFTER pivot element: the new length, -1 when the
/// pivot is absent, 0 when the key is. The position word is checked first.
fn linsert(ex: &mut Exec, a: &[Bytes]) {
    let after = if eq_ic(&a[2], "after") {
        true
    } else if eq_ic(&a[2], "before") {
        false
    } else {
        return ex.r.error(SYNTAX);
    };
    let key = &a[1];
    let l = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.int(0),
        Ok(Some(l)) => l,
    };
    let Some(pos) = l.iter().position(|v| v[..] == a[3][..]) else {
        return ex.r.int(-1);
    };
    l.insert(pos + after as usize, Bytes::copy_from_slice(&a[4]));
    let len = l.len() as i64;
    ex.notify(notify::LIST, "linsert", key);
    ex.modified(key);
    ex.r.int(len)
}

/// LREM key count element: count > 0 removes from the head, < 0 from the
/// tail, 0 every match.
fn lrem(ex: &mut Exec, a: &[Bytes]) {
    let count = match int_arg(&a[2]) {
        Ok(c) => c,
        Err(e) => return ex.r.error(e),
    };
    let key = &a[1];
    let l = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.int(0),
        Ok(Some(l)) => l,
    };
    let limit = if count == 0 {
        u64::MAX
    } else {
        count.unsigned_abs()
    };
    let elem = &a[3][..];
    let mut removed = 0u64;
    if count >= 0 {
        l.retain(|v| {
            let hit = removed < limit && v[..] == *elem;
            removed += hit as u64;
            !hit
        });
    } else {
        // From the tail: find the lowest position still within the limit,
        // then one pass removes the matches at or after it.
        let mut cut = l.len();
        let mut seen = 0u64;
        for (i, v) in l.iter().enumerate().rev() {
            if seen == limit {
                break;
            }
            if v[..] == *elem {
                seen += 1;
                cut = i;
            }
        }
        let mut i = 0usize;
        l.retain(|v| {
            let hit = i >= cut && v[..] == *elem;
            i += 1;
            removed += hit as u64;
            !hit
        });
    }
    if removed > 0 {
        ex.elements_removed(notify::LIST, "lrem", key);
    }
    ex.r.int(removed as i64)
}

/// LTRIM key start stop: keeps the range; an empty range deletes the key.
/// Redis signals the key as modified, and raises "ltrim", even when
/// nothing was trimmed.
fn ltrim(ex: &mut Exec, a: &[Bytes]) {
    let (start, end) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return ex.r.error(e),
    };
    let key = &a[1];
    let l = match list!(ex, key, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.ok(),
        Ok(Some(l)) => l,
    };
    match clamp_range(start, end, l.len()) {
        None => l.clear(),
        Some((s, e)) => {
            l.truncate(e + 1);
            l.drain(..s);
        }
    }
    ex.elements_removed(notify::LIST, "ltrim", key);
    ex.r.ok()
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
///
/// Mirrors Redis 7.0 down to its arithmetic: a negative RANK searches from
/// the tail, and `RANK -9223372036854775808` stays negative after negation
/// in C, so every match qualifies; the wrapping operations below reproduce
/// what that does to the COUNT test.
fn lpos(ex: &mut Exec, a: &[Bytes]) {
    let (mut rank, mut count, mut maxlen) = (1i64, -1i64, 0i64);
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = &a[j];
        if eq_ic(opt, "rank") && more {
            j += 1;
            match int_arg(&a[j]) {
                Ok(0) => {
                    return ex.r.error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                         second ... or use negative to start from the end of the list",
                    );
                }
                Ok(r) => rank = r,
                Err(e) => return ex.r.error(e),
            }
        } else if eq_ic(opt, "count") && more {
            j += 1;
            match ranged(&a[j], 0, "ERR COUNT can't be negative") {
                Ok(c) => count = c,
                Err(e) => return ex.r.error(e),
            }
        } else if eq_ic(opt, "maxlen") && more {
            j += 1;
            match ranged(&a[j], 0, "ERR MAXLEN can't be negative") {
                Ok(m) => maxlen = m,
                Err(e) => return ex.r.error(e),
            }
        } else {
            return ex.r.error(SYNTAX);
        }
        j += 1;
    }
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    let l = match list!(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) if count != -1 => return ex.r.array(0),
        Ok(None) => return ex.r.null(),
        Ok(Some(l)) => l,
    };
    let elem = &a[2][..];
    let len = l.len();
    let mut found: Vec<i64> = Vec::new();
    let mut matches = 0i64;
    for step in 0..len {
        if maxlen != 0 && step as i64 >= maxlen {
            break;
        }
        let idx = if from_tail { len - 1 - step } else { step };
        if l[idx][..] != *elem {
            continue;
        }
        matches += 1;
        if matches >= rank {
            found.push(idx as i64);
            if count == -1 {
                break;
            }
            if count != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= count {
                break;
            }
        }
    }
    if count != -1 {
        ex.r.array(found.len());
        for i in found {
            ex.r.int(i);
        }
    } else {
        match found.first() {
            Some(&i) => ex.r.int(i),
            None => ex.r.null(),
        }
    }
}

// ---------------------------------------------------------------------------
// Moving between lists, popping from several
// ---------------------------------------------------------------------------

fn lmove(ex: &mut Exec, a: &[Bytes]) {
    let (Some(from), Some(to)) = (End::parse(&a[3]), End::parse(&a[4])) else {
        return ex.r.error(SYNTAX);
    };
    move_generic(ex, &a[1], &a[2], from, to)
}

fn rpoplpush(ex: &mut Exec, a: &[Bytes]) {
    move_generic(ex, &a[1], &a[2], End::Right, End::Left)
}

/// Pops from `src` at `from`, pushes onto `dst` at `to`, replies with the
/// element. A missing source answers nil before the destination is looked
/// at; a destination of the wrong type fails before anything moves.
/// `src == dst` rotates the list in place. Events as Redis's
/// `lmoveGenericCommand`: the push on `dst`, then the pop on `src`.
fn move_generic(ex: &mut Exec, src: &[u8], dst: &[u8], from: End, to: End) {
    match list!(ex, src, false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.null(),
        Ok(Some(l)) if l.is_empty() => return ex.r.null(),
        Ok(Some(_)) => {}
    }
    if list!(ex, dst, false).is_err() {
        return ex.r.error(WRONGTYPE);
    }
    let v = match list!(ex, src, false) {
        Ok(Some(l)) => pop(l, from).expect("non-empty source"),
        _ => unreachable!("source checked above"),
    };
    match list!(ex, dst, false) {
        Ok(Some(l)) => push(l, to, v.clone()),
        _ => ex.insert_new(dst, Value::List(Box::new(VecDeque::from([v.clone()])))),
    }
    ex.notify(notify::LIST, to.push_event(), dst);
    ex.modified(dst);
    ex.elements_removed(notify::LIST, from.pop_event(), src);
    ex.r.bulk(&v)
}

/// Parsed `numkeys key... LEFT|RIGHT [COUNT n]` of LMPOP / BLMPOP.
struct MPop {
    keys: std::ops::Range<usize>,
    end: End,
    count: u64,
}

/// Parses the numkeys form starting at `nk` (LMPOP 1, BLMPOP 2), in Redis's
/// order: numkeys, then the direction, then COUNT (at most once).
fn parse_mpop(a: &[Bytes], nk: usize) -> Result<MPop, &'static str> {
    let numkeys = ranged(&a[nk], 1, "ERR numkeys should be greater than 0")? as u64;
    // The direction follows the keys; a numkeys past the end is a syntax
    // error (Redis compares the computed index against argc).
    if numkeys >= (a.len() - nk - 1) as u64 {
        return Err(SYNTAX);
    }
    let first = nk + 1;
    let where_idx = first + numkeys as usize;
    let end = End::parse(&a[where_idx]).ok_or(SYNTAX)?;
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && eq_ic(&a[j], "count") && j + 1 < a.len() {
            j += 1;
            count = Some(ranged(&a[j], 1, "ERR count should be greater than 0")? as u64);
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok(MPop {
        keys: first..where_idx,
        end,
        count: count.unwrap_or(1),
    })
}

/// Pops up to `count` elements from the first non-empty list among the
/// keys, replying `[key, [elements]]`. Returns false (no reply written)
/// when every key is missing; a key of the wrong type on the way is an
/// error, as in Redis, which checks the keys in order.
fn mpop_first(ex: &mut Exec, a: &[Bytes], m: &MPop) -> bool {
    for key in &a[m.keys.clone()] {
        let l = match list!(ex, key, false) {
            Err(()) => {
                ex.r.error(WRONGTYPE);
                return true;
            }
            Ok(Some(l)) if !l.is_empty() => l,
            Ok(_) => continue,
        };
        let n = (m.count as usize).min(l.len());
        ex.r.array(2);
        ex.r.bulk(key);
        ex.r.array(n);
        for _ in 0..n {
            let v = pop(l, m.end).expect("counted");
            ex.r.bulk(&v);
        }
        ex.elements_removed(notify::LIST, m.end.pop_event(), key);
        // Replicated as the [LR]POP key count it was, as Redis 7.0 does.
        let n = Bytes::from(n.to_string());
        ex.propagate_as(vec![m.end.pop_cmd(), Bytes::copy_from_slice(key), n]);
        return true;
    }
    false
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn lmpop(ex: &mut Exec, a: &[Bytes]) {
    let m = match parse_mpop(a, 1) {
        Ok(m) => m,
        Err(e) => return ex.r.error(e),
    };
    if !mpop_first(ex, a, &m) {
        ex.r.null_array()
    }
}

// ---------------------------------------------------------------------------
// Blocking forms
// ---------------------------------------------------------------------------

/// Parses a blocking timeout in seconds into milliseconds (0 = wait
/// forever), as Redis 7.0's `getTimeoutFromObjectOrReply`: a float read
/// with `strtold`, times 1000, rounded *up*, then converted to an integer
/// the way x86 does, where anything out of range (inf, 1e400) becomes
/// `i64::MIN` and so "negative". A tiny negative (-0.0001) rounds up to 0
/// and means "forever".
pub fn parse_timeout(b: &[u8]) -> Result<u64, &'static str> {
    let ms = match parse_i64(b) {
        // Integers exactly, as the 64-bit mantissa of a long double has them.
        Some(n) => n.checked_mul(1000).unwrap_or(i64::MIN),
        None => {
            let secs = parse_f64(b).ok_or(TIMEOUT_NOT_FLOAT)?;
            let ms = (secs * 1000.0).ceil();
            if ms == 0.0 && secs == 0.0 && underflowed_positive(b) {
                // 1e-400 is zero as a double but not as a long double:
                // Redis rounds it up to 1 ms.
                1
            } else if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&ms) {
                ms as i64
            } else {
                i64::MIN
            }
        }
    };
    if ms < 0 {
        Err(TIMEOUT_NEGATIVE)
    } else {
        Ok(ms as u64)
    }
}

/// Whether a decimal float that parsed as zero had a positive non-zero
/// mantissa (it underflowed the double range).
fn underflowed_positive(b: &[u8]) -> bool {
    if b.first() == Some(&b'-') {
        return false;
    }
    let mantissa = b.split(|&c| c == b'e' || c == b'E').next().unwrap_or(b);
    !mantissa.starts_with(b"0x")
        && !mantissa.starts_with(b"0X")
        && mantissa.iter().any(|c| (b'1'..=b'9').contains(c))
}

fn blpop(ex: &mut Exec, a: &[Bytes]) {
    bpop_generic(ex, a, End::Left)
}

fn brpop(ex: &mut Exec, a: &[Bytes]) {
    bpop_generic(ex, a, End::Right)
}

/// BLPOP / BRPOP key [key ...] timeout: the timeout is checked first, then
/// the keys in order; the first non-empty list is popped like LPOP/RPOP.
fn bpop_generic(ex: &mut Exec, a: &[Bytes], end: End) {
    let last = a.len() - 1;
    if let Err(e) = parse_timeout(&a[last]) {
        return ex.r.error(e);
    }
    for key in &a[1..last] {
        let l = match list!(ex, key, false) {
            Err(()) => return ex.r.error(WRONGTYPE),
            Ok(Some(l)) if !l.is_empty() => l,
            Ok(_) => continue,
        };
        let v = pop(l, end).expect("non-empty");
        ex.r.array(2);
        ex.r.bulk(key);
        ex.r.bulk(&v);
        // Replicated as the [LR]POP it was, as Redis 7.0 does.
        ex.propagate_as(vec![end.pop_cmd(), Bytes::copy_from_slice(key)]);
        return ex.elements_removed(notify::LIST, end.pop_event(), key);
    }
    ex.would_block = true;
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout: directions,
/// then timeout; blocks only while the source is missing.
fn blmove(ex: &mut Exec, a: &[Bytes]) {
    let (Some(from), Some(to)) = (End::parse(&a[3]), End::parse(&a[4])) else {
        return ex.r.error(SYNTAX);
    };
    bmove_generic(ex, a, from, to, &a[5])
}

fn brpoplpush(ex: &mut Exec, a: &[Bytes]) {
    bmove_generic(ex, a, End::Right, End::Left, &a[3])
}

fn bmove_generic(ex: &mut Exec, a: &[Bytes], from: End, to: End, timeout: &[u8]) {
    if let Err(e) = parse_timeout(timeout) {
        return ex.r.error(e);
    }
    match list!(ex, &a[1], false) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(Some(l)) if !l.is_empty() => move_generic(ex, &a[1], &a[2], from, to),
        Ok(_) => ex.would_block = true,
    }
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]: unlike
/// BLPOP the timeout is checked after the rest of the arguments.
fn blmpop(ex: &mut Exec, a: &[Bytes]) {
    let m = match parse_mpop(a, 2) {
        Ok(m) => m,
        Err(e) => return ex.r.error(e),
    };
    if let Err(e) = parse_timeout(&a[1]) {
        return ex.r.error(e);
    }
    if !mpop_first(ex, a, &m) {
        ex.would_block = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_like_redis() {
        assert_eq!(clamp_range(0, -1, 3), Some((0, 2)));
        assert_eq!(clamp_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(clamp_range(2, 1, 3), None);
        assert_eq!(clamp_range(3, 5, 3), None);
        assert_eq!(clamp_range(0, -4, 3), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(resolve_index(-1, 3), Some(2));
        assert_eq!(resolve_index(-4, 3), None);
        assert_eq!(resolve_index(i64::MIN, 3), None);
    }

    #[test]
    fn timeouts_like_redis() {
        assert_eq!(parse_timeout(b"0"), Ok(0));
        assert_eq!(parse_timeout(b"1.5"), Ok(1500));
        assert_eq!(parse_timeout(b"0.0001"), Ok(1));
        assert_eq!(parse_timeout(b"-0.0001"), Ok(0));
        assert_eq!(parse_timeout(b"0x10"), Ok(16000));
        assert_eq!(parse_timeout(b"-1"), Err(TIMEOUT_NEGATIVE));
        assert_eq!(parse_timeout(b"inf"), Err(TIMEOUT_NEGATIVE));
        assert_eq!(parse_timeout(b"1e400"), Err(TIMEOUT_NEGATIVE));
        assert_eq!(parse_timeout(b"1e-400"), Ok(1));
        assert_eq!(parse_timeout(b"-1e-400"), Ok(0));
        assert_eq!(parse_timeout(b"9223372036854775"), Ok(9223372036854775000));
        assert_eq!(parse_timeout(b"9223372036854776"), Err(TIMEOUT_NEGATIVE));
        assert_eq!(parse_timeout(b"abc"), Err(TIMEOUT_NOT_FLOAT));
        assert_eq!(parse_timeout(b"nan"), Err(TIMEOUT_NOT_FLOAT));
    }
}
