//! Sorted-set commands (ZADD, ZRANGE and friends), run on the shard that
//! owns their key(s); commands whose keys span shards (ZUNIONSTORE, ZMPOP,
//! BZPOPMIN k1 k2 ...) run on a scratch copy via `Multi::Scratch`. Argument
//! checks, their order and the error texts follow Redis 7.0's `t_zset.c`.
//!
//! Two parsers matter for compatibility: scores of ZADD/ZINCRBY/WEIGHTS go
//! through `getDoubleFromObject` (strtod, no leading space, overflow is an
//! error), while range bounds go through `zslParseRange` (strtod after an
//! optional `(`, leading space allowed, overflow gives ±inf, "" is 0).
//!
//! Small sets are "listpack-encoded" in Redis (<= 128 members of <= 64
//! bytes); where that shows (ZSCAN returns the whole set in order, cursor 0)
//! we answer the same way.

use bytes::Bytes;

use super::notify;
use super::set::parse_cursor;
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, Multi, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, parse_f64, parse_i64};
use crate::resp::{Proto, Reply};
use crate::shard::keyspace::{SetValue, Value};
use crate::shard::zset::{LexItem, LexRange, ScoreRange, ZDict, ZSet};

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const WRF: &[&str] = &["write", "fast"];
const WR: &[&str] = &["write"];
const RF: &[&str] = &["readonly", "fast"];
const R: &[&str] = &["readonly"];
const WBF: &[&str] = &["write", "noscript", "blocking", "fast"];
const WBM: &[&str] = &["write", "blocking", "movablekeys"];
const WM: &[&str] = &["write", "denyoom", "movablekeys"];
const WRM: &[&str] = &["write", "movablekeys"];
const RM: &[&str] = &["readonly", "movablekeys"];

pub static COMMANDS: [CmdSpec; 35] = [
    keyed!("zadd", -4, WF, 1, 1, 1, zadd),
    keyed!("zincrby", 4, WF, 1, 1, 1, zincrby),
    keyed!("zrem", -3, WRF, 1, 1, 1, zrem),
    keyed!("zcard", 2, RF, 1, 1, 1, zcard),
    keyed!("zscore", 3, RF, 1, 1, 1, zscore),
    keyed!("zmscore", -3, RF, 1, 1, 1, zmscore),
    keyed!("zrank", 3, RF, 1, 1, 1, zrank),
    keyed!("zrevrank", 3, RF, 1, 1, 1, zrevrank),
    keyed!("zcount", 4, RF, 1, 1, 1, zcount),
    keyed!("zlexcount", 4, RF, 1, 1, 1, zlexcount),
    keyed!("zrange", -4, R, 1, 1, 1, zrange),
    keyed!("zrevrange", -4, R, 1, 1, 1, zrevrange),
    keyed!("zrangebyscore", -4, R, 1, 1, 1, zrangebyscore),
    keyed!("zrevrangebyscore", -4, R, 1, 1, 1, zrevrangebyscore),
    keyed!("zrangebylex", -4, R, 1, 1, 1, zrangebylex),
    keyed!("zrevrangebylex", -4, R, 1, 1, 1, zrevrangebylex),
    keyed!("zrangestore", -5, W, 1, 2, 1, zrangestore, Multi::Scratch),
    keyed!("zremrangebyrank", 4, WR, 1, 1, 1, zremrangebyrank),
    keyed!("zremrangebyscore", 4, WR, 1, 1, 1, zremrangebyscore),
    keyed!("zremrangebylex", 4, WR, 1, 1, 1, zremrangebylex),
    keyed!("zpopmin", -2, WRF, 1, 1, 1, zpopmin),
    keyed!("zpopmax", -2, WRF, 1, 1, 1, zpopmax),
    keyed!("bzpopmin", -3, WBF, 1, -2, 1, bzpopmin, Multi::Scratch),
    keyed!("bzpopmax", -3, WBF, 1, -2, 1, bzpopmax, Multi::Scratch),
    keyed!(numkeys 1; "zmpop", -4, WRM, 0, 0, 0, zmpop, Multi::Scratch),
    keyed!(numkeys 2; "bzmpop", -5, WBM, 0, 0, 0, bzmpop, Multi::Scratch),
    keyed!("zrandmember", -2, R, 1, 1, 1, zrandmember),
    keyed!("zscan", -3, R, 1, 1, 1, zscan),
    keyed!(numkeys 2; "zunionstore", -4, WM, 1, 1, 1, zunionstore, Multi::Scratch),
    keyed!(numkeys 2; "zinterstore", -4, WM, 1, 1, 1, zinterstore, Multi::Scratch),
    keyed!(numkeys 2; "zdiffstore", -4, WM, 1, 1, 1, zdiffstore, Multi::Scratch),
    keyed!(numkeys 1; "zunion", -3, RM, 0, 0, 0, zunion, Multi::Scratch),
    keyed!(numkeys 1; "zinter", -3, RM, 0, 0, 0, zinter, Multi::Scratch),
    keyed!(numkeys 1; "zdiff", -3, RM, 0, 0, 0, zdiff, Multi::Scratch),
    keyed!(numkeys 1; "zintercard", -3, RM, 0, 0, 0, zintercard, Multi::Scratch),
];

/// Redis's `zset-max-listpack-entries` / `-value` defaults.
const LISTPACK_ENTRIES: usize = 128;
const LISTPACK_VALUE: usize = 64;

// ---------------------------------------------------------------------------
// Lookups that leave the reply writer free: `Exec::lookup_read` borrows the
// whole context, but a range reply wants to stream members straight from
// the stored set.
// ---------------------------------------------------------------------------

type Found<'e> = Result<Option<&'e mut ZSet>, ()>;

/// Looks a zset up; `read` counts a keyspace hit or miss as
/// `lookupKeyRead` does. `Err` means the key holds another type.
fn look<'e, 'a>(ex: &'e mut Exec<'a>, key: &[u8], read: bool) -> (Found<'e>, &'e mut Reply<'a>) {
    if read && ex.keymiss(key) {
        return (Ok(None), &mut ex.r);
    }
    let now = ex.cut;
    let (db, st) = ex.ks.db(ex.db);
    let found = match db.get(key, now, st) {
        None => {
            if read {
                st.misses += 1;
            }
            Ok(None)
        }
        Some(e) => {
            if read {
                st.hits += 1;
            }
            match &mut e.value {
                Value::ZSet(z) => Ok(Some(&mut **z)),
                _ => Err(()),
            }
        }
    };
    (found, &mut ex.r)
}

/// Stores `z` under `key` (replacing any value and TTL, as `setKey`) and
/// raises `event`, or deletes the key (raising `del`) when `z` is empty.
/// Returns the stored length.
fn store(ex: &mut Exec, key: &[u8], z: ZSet, event: &'static str) -> usize {
    let n = z.len();
    if n > 0 {
        ex.set_key(key, Value::ZSet(Box::new(z)));
        ex.modified(key);
        ex.notify(notify::ZSET, event, key);
    } else if ex.db().0.remove(key).is_some() {
        ex.modified(key);
        ex.notify(notify::GENERIC, "del", key);
    }
    n
}

// ---------------------------------------------------------------------------
// Number and range parsing.
// ---------------------------------------------------------------------------

/// C's `isspace`.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C string view: strtod and friends stop at the first NUL byte.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

/// A score as `getDoubleFromObject` reads it: strtod, no leading space, no
/// trailing bytes, no NaN, and overflow/underflow (ERANGE) rejected.
pub fn parse_score(b: &[u8]) -> Option<f64> {
    if b.first().is_none_or(|&c| c_space(c)) {
        return None;
    }
    let s = c_str(b);
    let v = parse_f64(s)?;
    let lower = s.to_ascii_lowercase();
    let body = lower
        .strip_prefix(b"+")
        .or_else(|| lower.strip_prefix(b"-"))
        .unwrap_or(&lower);
    if v.is_infinite() && !body.starts_with(b"inf") {
        return None;
    }
    if v == 0.0 && !body.starts_with(b"0x") {
        let mant = body.split(|&c| c == b'e').next().unwrap_or(b"");
        if mant.iter().any(|c| (b'1'..=b'9').contains(c)) {
            return None;
        }
    }
    Some(v)
}

/// One bound as `zslParseRange` reads it: strtod on the rest of the string
/// (leading space skipped, "" is 0), anything after the number an error.
fn parse_bound(b: &[u8]) -> Option<(f64, bool)> {
    let (ex, s) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    let s = c_str(s);
    if s.is_empty() {
        return Some((0.0, ex));
    }
    let start = s.iter().position(|&c| !c_space(c))?;
    parse_f64(&s[start..]).map(|v| (v, ex))
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
    let (min, minex) = parse_bound(min)?;
    let (max, maxex) = parse_bound(max)?;
    Some(ScoreRange {
        min,
        max,
        minex,
        maxex,
    })
}

fn parse_lex_item(b: &[u8]) -> Option<(LexItem, bool)> {
    let alone = b.get(1).is_none_or(|&c| c == 0);
    match b.first()? {
        b'+' if alone => Some((LexItem::Max, true)),
        b'-' if alone => Some((LexItem::Min, true)),
        b'(' => Some((LexItem::Str(Bytes::copy_from_slice(&b[1..])), true)),
        b'[' => Some((LexItem::Str(Bytes::copy_from_slice(&b[1..])), false)),
        _ => None,
    }
}

fn parse_lex_range(min: &[u8], max: &[u8]) -> Option<LexRange> {
    let (min, minex) = parse_lex_item(min)?;
    let (max, maxex) = parse_lex_item(max)?;
    Some(LexRange {
        min,
        max,
        minex,
        maxex,
    })
}

/// The score a member keeps: Redis stores small sets as listpack strings,
/// where `-0` comes back as `0`, so a stored zero is always positive (a
/// reply computed on the fly, as ZUNION's, keeps its `-0`).
fn stored(score: f64) -> f64 {
    score + 0.0
}

const BAD_RANGE: &str = "ERR min or max is not a float";
const BAD_LEX: &str = "ERR min or max not valid string range item";
const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";

/// Formats a score as Redis 7.0's `%.17g` (and `d2string`): 17 significant
/// digits, trailing zeros dropped, exponent form below 1e-4 or from 1e17.
pub fn format_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{:.16e}", v.abs());
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..17).contains(&exp) {
        let d = digits.trim_end_matches('0');
        let frac = if d.len() > 1 {
            format!(".{}", &d[1..])
        } else {
            String::new()
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{frac}e{es}{:02}", &d[..1], exp.abs())
    } else if exp >= 0 {
        let (int, frac) = digits.split_at(exp as usize + 1);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    } else {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{}", digits.trim_end_matches('0'))
    }
}

// ---------------------------------------------------------------------------
// Replies.
// ---------------------------------------------------------------------------

/// Writes members (and scores): flat in RESP2, `[member, score]` pairs in
/// RESP3, as ZRANGE WITHSCORES and ZUNION WITHSCORES do.
fn reply_members(r: &mut Reply, items: &[(&Bytes, f64)], withscores: bool) {
    let pairs = withscores && r.proto == Proto::Resp3;
    r.array(if withscores && !pairs {
        items.len() * 2
    } else {
        items.len()
    });
    for (m, s) in items {
        if pairs {
            r.array(2);
        }
        r.bulk(m);
        if withscores {
            r.double(*s);
        }
    }
}

// ---------------------------------------------------------------------------
// ZADD, ZINCRBY, ZREM.
// ---------------------------------------------------------------------------

fn zadd(ex: &mut Exec, a: &[Bytes]) {
    zadd_generic(ex, a, false)
}

fn zincrby(ex: &mut Exec, a: &[Bytes]) {
    zadd_generic(ex, a, true)
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...];
/// ZINCRBY is ZADD with INCR forced (and options still recognised, as in
/// Redis: `ZINCRBY k nx m` is a syntax error).
fn zadd_generic(ex: &mut Exec, a: &[Bytes], mut incr: bool) {
    let (mut nx, mut xx, mut gt, mut lt, mut ch) = (false, false, false, false, false);
    let mut idx = 2;
    while idx < a.len() {
        let o = &a[idx];
        if eq_ic(o, "nx") {
            nx = true;
        } else if eq_ic(o, "xx") {
            xx = true;
        } else if eq_ic(o, "ch") {
            ch = true;
        } else if eq_ic(o, "incr") {
            incr = true;
        } else if eq_ic(o, "gt") {
            gt = true;
        } else if eq_ic(o, "lt") {
            lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let n = a.len() - idx;
    if n == 0 || n % 2 == 1 {
        return ex.r.error(SYNTAX);
    }
    if nx && xx {
        return ex
            .r
            .error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return ex
            .r
            .error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && n > 2 {
        return ex
            .r
            .error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(n / 2);
    for p in a[idx..].chunks(2) {
        match parse_score(&p[0]) {
            Some(s) => scores.push(s),
            None => return ex.r.error(super::NOT_FLOAT),
        }
    }
    let key = &a[1];
    let (found, r) = look(ex, key, false);
    let mut fresh = ZSet::default();
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(Some(z)) => z,
        Ok(None) if xx => {
            return if incr { r.null() } else { r.int(0) };
        }
        Ok(None) => &mut fresh,
    };
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut last = 0.0;
    for (p, &score) in a[idx..].chunks(2).zip(&scores) {
        let member = &p[1];
        let mut score = score;
        match z.score(member) {
            Some(cur) => {
                if nx {
                    continue;
                }
                if incr {
                    score += cur;
                    if score.is_nan() {
                        // Only one pair with INCR: nothing was changed.
                        return r.error(NAN_SCORE);
                    }
                }
                if (lt && score >= cur) || (gt && score <= cur) {
                    continue;
                }
                if score != cur {
                    z.insert(Bytes::copy_from_slice(member), stored(score));
                    updated += 1;
                }
            }
            None if !xx => {
                z.insert(Bytes::copy_from_slice(member), stored(score));
                added += 1;
            }
            None => continue,
        }
        processed += 1;
        last = score;
    }
    if incr {
        if processed > 0 {
            r.double(last)
        } else {
            r.null()
        }
    } else {
        r.int(if ch { added + updated } else { added })
    }
    if !fresh.is_empty() {
        ex.insert_new(key, Value::ZSet(Box::new(fresh)));
    }
    if added + updated > 0 {
        ex.modified(key);
        ex.notify(notify::ZSET, if incr { "zincr" } else { "zadd" }, key);
    }
}

fn zrem(ex: &mut Exec, a: &[Bytes]) {
    let key = &a[1];
    let (found, r) = look(ex, key, false);
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(None) => return r.int(0),
        Ok(Some(z)) => z,
    };
    let mut deleted = 0;
    for m in &a[2..] {
        if z.remove(m) {
            deleted += 1;
        }
        if z.is_empty() {
            break;
        }
    }
    r.int(deleted);
    if deleted > 0 {
        ex.elements_removed(notify::ZSET, "zrem", key);
    }
}

// ---------------------------------------------------------------------------
// Point reads.
// ---------------------------------------------------------------------------

fn zcard(ex: &mut Exec, a: &[Bytes]) {
    match look(ex, &a[1], true) {
        (Err(()), r) => r.error(WRONGTYPE),
        (Ok(z), r) => r.int(z.map_or(0, |z| z.len() as i64)),
    }
}

fn zscore(ex: &mut Exec, a: &[Bytes]) {
    match look(ex, &a[1], true) {
        (Err(()), r) => r.error(WRONGTYPE),
        (Ok(z), r) => match z.and_then(|z| z.score(&a[2])) {
            Some(s) => r.double(s),
            None => r.null(),
        },
    }
}

fn zmscore(ex: &mut Exec, a: &[Bytes]) {
    let (found, r) = look(ex, &a[1], true);
    let Ok(z) = found else {
        return r.error(WRONGTYPE);
    };
    r.array(a.len() - 2);
    for m in &a[2..] {
        match z.as_ref().and_then(|z| z.score(m)) {
            Some(s) => r.double(s),
            None => r.null(),
        }
    }
}

fn zrank(ex: &mut Exec, a: &[Bytes]) {
    rank_generic(ex, a, false)
}

fn zrevrank(ex: &mut Exec, a: &[Bytes]) {
    rank_generic(ex, a, true)
}

fn rank_generic(ex: &mut Exec, a: &[Bytes], rev: bool) {
    match look(ex, &a[1], true) {
        (Err(()), r) => r.error(WRONGTYPE),
        (Ok(z), r) => match z.and_then(|z| z.rank(&a[2], rev)) {
            Some(n) => r.int(n as i64),
            None => r.null(),
        },
    }
}

fn zcount(ex: &mut Exec, a: &[Bytes]) {
    let Some(range) = parse_score_range(&a[2], &a[3]) else {
        return ex.r.error(BAD_RANGE);
    };
    match look(ex, &a[1], true) {
        (Err(()), r) => r.error(WRONGTYPE),
        (Ok(z), r) => r.int(z.map_or(0, |z| z.count_score(&range) as i64)),
    }
}

fn zlexcount(ex: &mut Exec, a: &[Bytes]) {
    let Some(range) = parse_lex_range(&a[2], &a[3]) else {
        return ex.r.error(BAD_LEX);
    };
    match look(ex, &a[1], true) {
        (Err(()), r) => r.error(WRONGTYPE),
        (Ok(z), r) => r.int(z.map_or(0, |z| z.count_lex(&range) as i64)),
    }
}

// ---------------------------------------------------------------------------
// ZRANGE and its older spellings, ZRANGESTORE.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

fn zrange(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, None, None)
}

fn zrevrange(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, Some(By::Rank), Some(true))
}

fn zrangebyscore(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, Some(By::Score), Some(false))
}

fn zrevrangebyscore(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, Some(By::Score), Some(true))
}

fn zrangebylex(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, Some(By::Lex), Some(false))
}

fn zrevrangebylex(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 1, Some(By::Lex), Some(true))
}

fn zrangestore(ex: &mut Exec, a: &[Bytes]) {
    zrange_generic(ex, a, 2, None, None)
}

/// A parsed range: which members and in which order.
enum RangeSpec {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// `zrangeGenericCommand`: `first` is the index of the source key (2 for
/// ZRANGESTORE, whose destination is argument 1).
fn zrange_generic(ex: &mut Exec, a: &[Bytes], first: usize, by: Option<By>, rev: Option<bool>) {
    let store = first == 2;
    let (mut by_opt, mut rev_opt) = (by, rev);
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = first + 3;
    while j < a.len() {
        let left = a.len() - j - 1;
        let o = &a[j];
        if !store && eq_ic(o, "withscores") {
            withscores = true;
        } else if eq_ic(o, "limit") && left >= 2 {
            match (parse_i64(&a[j + 1]), parse_i64(&a[j + 2])) {
                (Some(o), Some(l)) => (offset, limit) = (o, l),
                _ => return ex.r.error(NOT_INT),
            }
            j += 2;
        } else if rev.is_none() && rev_opt.is_none() && eq_ic(o, "rev") {
            rev_opt = Some(true);
        } else if by.is_none() && by_opt.is_none() && eq_ic(o, "bylex") {
            by_opt = Some(By::Lex);
        } else if by.is_none() && by_opt.is_none() && eq_ic(o, "byscore") {
            by_opt = Some(By::Score);
        } else {
            return ex.r.error(SYNTAX);
        }
        j += 1;
    }
    let rev = rev_opt.unwrap_or(false);
    let by = by_opt.unwrap_or(By::Rank);
    if limit != -1 && by == By::Rank {
        return ex.r.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && by == By::Lex {
        return ex
            .r
            .error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (mut lo, mut hi) = (&a[first + 1], &a[first + 2]);
    if rev && by != By::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let spec = match by {
        By::Rank => match (parse_i64(lo), parse_i64(hi)) {
            (Some(s), Some(e)) => RangeSpec::Rank(s, e),
            _ => return ex.r.error(NOT_INT),
        },
        By::Score => match parse_score_range(lo, hi) {
            Some(r) => RangeSpec::Score(r),
            None => return ex.r.error(BAD_RANGE),
        },
        By::Lex => match parse_lex_range(lo, hi) {
            Some(r) => RangeSpec::Lex(r),
            None => return ex.r.error(BAD_LEX),
        },
    };
    let (found, r) = look(ex, &a[first], true);
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(Some(z)) => &*z,
        Ok(None) if store => {
            r.int(0);
            store_range(ex, &a[1], ZSet::default());
            return;
        }
        Ok(None) => return r.array(0),
    };
    let items = select(z, &spec, rev, offset, limit);
    if store {
        let mut out = ZSet::default();
        for (m, s) in &items {
            out.insert((*m).clone(), *s);
        }
        r.int(out.len() as i64);
        store_range(ex, &a[1], out);
    } else {
        reply_members(r, &items, withscores);
    }
}

fn store_range(ex: &mut Exec, dst: &[u8], z: ZSet) {
    store(ex, dst, z, "zrangestore");
}

/// The members a range selects, in reply order. LIMIT is Redis's: a
/// negative offset selects nothing, a negative count means no limit.
fn select<'z>(
    z: &'z ZSet,
    spec: &'z RangeSpec,
    rev: bool,
    offset: i64,
    limit: i64,
) -> Vec<(&'z Bytes, f64)> {
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    if (offset < 0 || (offset > 0 && offset as usize >= z.len()))
        && !matches!(spec, RangeSpec::Rank(..))
    {
        return Vec::new();
    }
    match spec {
        RangeSpec::Rank(start, end) => {
            let len = z.len() as i64;
            let (mut start, mut end) = (*start, *end);
            if start < 0 {
                start += len;
            }
            if end < 0 {
                end += len;
            }
            start = start.max(0);
            if start > end || start >= len {
                return Vec::new();
            }
            end = end.min(len - 1);
            z.range_by_rank(start as usize, rev)
                .take((end - start + 1) as usize)
                .collect()
        }
        RangeSpec::Score(r) => z
            .range_by_score(r, rev)
            .skip(offset as usize)
            .take(take)
            .collect(),
        RangeSpec::Lex(r) => z
            .range_by_lex(r, rev)
            .skip(offset as usize)
            .take(take)
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// ZREMRANGEBY*.
// ---------------------------------------------------------------------------

fn zremrangebyrank(ex: &mut Exec, a: &[Bytes]) {
    let (Some(start), Some(end)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
        return ex.r.error(NOT_INT);
    };
    zrem_range(ex, &a[1], RangeSpec::Rank(start, end))
}

fn zremrangebyscore(ex: &mut Exec, a: &[Bytes]) {
    match parse_score_range(&a[2], &a[3]) {
        Some(r) => zrem_range(ex, &a[1], RangeSpec::Score(r)),
        None => ex.r.error(BAD_RANGE),
    }
}

fn zremrangebylex(ex: &mut Exec, a: &[Bytes]) {
    match parse_lex_range(&a[2], &a[3]) {
        Some(r) => zrem_range(ex, &a[1], RangeSpec::Lex(r)),
        None => ex.r.error(BAD_LEX),
    }
}

fn zrem_range(ex: &mut Exec, key: &[u8], spec: RangeSpec) {
    let (found, r) = look(ex, key, false);
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(None) => return r.int(0),
        Ok(Some(z)) => z,
    };
    let event = match spec {
        RangeSpec::Rank(..) => "zremrangebyrank",
        RangeSpec::Score(_) => "zremrangebyscore",
        RangeSpec::Lex(_) => "zremrangebylex",
    };
    let deleted = match spec {
        RangeSpec::Rank(start, end) => {
            let len = z.len() as i64;
            let start = if start < 0 { start + len } else { start }.max(0);
            let end = if end < 0 { end + len } else { end };
            if start > end || start >= len {
                0
            } else {
                z.remove_range_by_rank(start as usize, end.min(len - 1) as usize)
            }
        }
        RangeSpec::Score(r) => z.remove_range_by_score(&r),
        RangeSpec::Lex(r) => z.remove_range_by_lex(&r),
    };
    r.int(deleted as i64);
    if deleted > 0 {
        ex.elements_removed(notify::ZSET, event, key);
    }
}

// ---------------------------------------------------------------------------
// Pops: ZPOPMIN/ZPOPMAX, ZMPOP, and the blocking forms.
// ---------------------------------------------------------------------------

/// How a pop reply is shaped (Redis's `genericZpopCommand` flags).
#[derive(Clone, Copy)]
struct PopShape {
    /// Put the key first (BZPOP*, ZMPOP).
    emit_key: bool,
    /// `[member, score]` pairs instead of a flat list.
    nested: bool,
}

/// Pops up to `count` members from the first existing key of `keys` and
/// replies. Returns `Err(())` after a WRONGTYPE reply, `Ok(false)` when no
/// key exists (nothing written).
fn pop_from(
    ex: &mut Exec,
    keys: &[Bytes],
    max: bool,
    count: usize,
    shape: PopShape,
) -> Result<bool, ()> {
    for key in keys {
        let (found, r) = look(ex, key, false);
        let z = match found {
            Err(()) => {
                r.error(WRONGTYPE);
                return Err(());
            }
            Ok(None) => continue,
            Ok(Some(z)) => z,
        };
        let n = count.min(z.len());
        if shape.emit_key {
            if shape.nested {
                r.array(2);
                r.bulk(key);
                r.array(n);
            } else {
                r.array(n * 2 + 1);
                r.bulk(key);
            }
        } else {
            r.array(if shape.nested { n } else { n * 2 });
        }
        for _ in 0..n {
            let (m, s) = z.pop(max).expect("counted");
            if shape.nested {
                r.array(2);
            }
            r.bulk(&m);
            r.double(s);
        }
        if n > 0 {
            let event = if max { "zpopmax" } else { "zpopmin" };
            ex.elements_removed(notify::ZSET, event, key);
        }
        // The multi-key and blocking forms replicate as the ZPOPMIN/MAX
        // they were, as Redis 7.0 does: with a count for [B]ZMPOP.
        if shape.emit_key {
            let cmd: &'static [u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
            let mut v = vec![Bytes::from_static(cmd), Bytes::copy_from_slice(key)];
            if shape.nested {
                v.push(Bytes::from(n.to_string()));
            }
            ex.propagate_as(v);
        }
        return Ok(true);
    }
    Ok(false)
}

fn zpopmin(ex: &mut Exec, a: &[Bytes]) {
    zpop(ex, a, false)
}

fn zpopmax(ex: &mut Exec, a: &[Bytes]) {
    zpop(ex, a, true)
}

fn zpop(ex: &mut Exec, a: &[Bytes], max: bool) {
    if a.len() > 3 {
        return ex.r.error(SYNTAX);
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => match parse_i64(c) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return ex.r.error("ERR value is out of range, must be positive"),
        },
    };
    let shape = PopShape {
        emit_key: false,
        nested: ex.r.proto == Proto::Resp3 && count.is_some(),
    };
    // Redis looks the key up (and type-checks it) before looking at count 0.
    if count == Some(0) {
        return match look(ex, &a[1], false) {
            (Err(()), r) => r.error(WRONGTYPE),
            (Ok(_), r) => r.array(0),
        };
    }
    if let Ok(false) = pop_from(ex, &a[1..2], max, count.unwrap_or(1), shape) {
        ex.r.array(0);
    }
}

/// BZPOP*/BZMPOP timeout in seconds, as `getTimeoutFromObjectOrReply`.
fn check_timeout(ex: &mut Exec, b: &[u8]) -> bool {
    let Some(secs) = parse_f64(b) else {
        ex.r.error("ERR timeout is not a float or out of range");
        return false;
    };
    // C's (long long) cast of an out-of-range value yields LLONG_MIN on x86;
    // Redis 7.0 has no upper-bound check after it.
    // Redis multiplies a long double; integers get that precision via i128.
    let ms = secs * 1000.0;
    let tval = match parse_i64(b).map(|n| n as i128 * 1000) {
        Some(v) => i64::try_from(v).unwrap_or(i64::MIN),
        None if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&ms) => {
            ms as i64
        }
        None => i64::MIN,
    };
    if tval < 0 {
        ex.r.error("ERR timeout is negative");
        return false;
    }
    true
}

fn bzpopmin(ex: &mut Exec, a: &[Bytes]) {
    bzpop(ex, a, false)
}

fn bzpopmax(ex: &mut Exec, a: &[Bytes]) {
    bzpop(ex, a, true)
}

/// BZPOPMIN key [key ...] timeout: `[key, member, score]`, or block.
fn bzpop(ex: &mut Exec, a: &[Bytes], max: bool) {
    if !check_timeout(ex, &a[a.len() - 1]) {
        return;
    }
    let shape = PopShape {
        emit_key: true,
        nested: false,
    };
    if let Ok(false) = pop_from(ex, &a[1..a.len() - 1], max, 1, shape) {
        ex.would_block = true;
    }
}

fn zmpop(ex: &mut Exec, a: &[Bytes]) {
    zmpop_generic(ex, a, 1)
}

fn bzmpop(ex: &mut Exec, a: &[Bytes]) {
    zmpop_generic(ex, a, 2)
}

/// [B]ZMPOP [timeout] numkeys key [key ...] MIN|MAX [COUNT count].
fn zmpop_generic(ex: &mut Exec, a: &[Bytes], nk_idx: usize) {
    let numkeys = match parse_i64(&a[nk_idx]) {
        Some(n) if n >= 1 => n as usize,
        _ => return ex.r.error("ERR numkeys should be greater than 0"),
    };
    let where_idx = nk_idx.saturating_add(numkeys).saturating_add(1);
    if where_idx >= a.len() {
        return ex.r.error(SYNTAX);
    }
    let max = if eq_ic(&a[where_idx], "min") {
        false
    } else if eq_ic(&a[where_idx], "max") {
        true
    } else {
        return ex.r.error(SYNTAX);
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && eq_ic(&a[j], "count") && j + 1 < a.len() {
            j += 1;
            match parse_i64(&a[j]) {
                Some(n) if n >= 1 => count = Some(n as usize),
                _ => return ex.r.error("ERR count should be greater than 0"),
            }
        } else {
            return ex.r.error(SYNTAX);
        }
        j += 1;
    }
    let blocking = nk_idx == 2;
    if blocking && !check_timeout(ex, &a[1]) {
        return;
    }
    let shape = PopShape {
        emit_key: true,
        nested: true,
    };
    let keys = &a[nk_idx + 1..where_idx];
    if let Ok(false) = pop_from(ex, keys, max, count.unwrap_or(1), shape) {
        if blocking {
            ex.would_block = true;
        } else {
            ex.r.null_array();
        }
    }
}

// ---------------------------------------------------------------------------
// ZRANDMEMBER, ZSCAN.
// ---------------------------------------------------------------------------

fn zrandmember(ex: &mut Exec, a: &[Bytes]) {
    if a.len() < 3 {
        return match look(ex, &a[1], true) {
            (Err(()), r) => r.error(WRONGTYPE),
            (Ok(None), r) => r.null(),
            (Ok(Some(z)), r) => {
                let (m, _) = z.get_index(fastrand::usize(..z.len())).expect("non-empty");
                r.bulk(m)
            }
        };
    }
    let Some(l) = parse_i64(&a[2]) else {
        return ex.r.error(NOT_INT);
    };
    // getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX) as in Redis.
    if l == i64::MIN {
        return ex.r.error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
    }
    let withscores = a.len() == 4;
    if a.len() > 4 || (withscores && !eq_ic(&a[3], "withscores")) {
        return ex.r.error(SYNTAX);
    }
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return ex.r.error("ERR value is out of range");
    }
    let (found, r) = look(ex, &a[1], true);
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(None) => return r.array(0),
        Ok(Some(z)) => &*z,
    };
    let (count, uniq) = (l.unsigned_abs() as usize, l >= 0);
    if count == 0 {
        return r.array(0);
    }
    let size = z.len();
    if !uniq || count == 1 {
        // With repetitions; streamed, as the count may be huge.
        let pairs = withscores && r.proto == Proto::Resp3;
        r.array(if withscores && !pairs {
            count * 2
        } else {
            count
        });
        for _ in 0..count {
            let (m, s) = z.get_index(fastrand::usize(..size)).expect("in range");
            if pairs {
                r.array(2);
            }
            r.bulk(m);
            if withscores {
                r.double(s);
            }
        }
        return;
    }
    let items: Vec<(&Bytes, f64)> = if count >= size {
        // The whole set, walked from the top as Redis's iterator does.
        z.iter_rev().collect()
    } else {
        // A random subset: partial Fisher-Yates over positions.
        let mut pos: Vec<usize> = (0..size).collect();
        for i in 0..count {
            let k = fastrand::usize(i..size);
            pos.swap(i, k);
        }
        pos[..count]
            .iter()
            .map(|&i| z.get_index(i).expect("in range"))
            .collect()
    };
    reply_members(r, &items, withscores);
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]. A small set (Redis's
/// listpack) comes back whole, in order, with cursor 0; a large one is
/// walked by dictionary position downwards, so that a member present for
/// the whole scan is returned at least once (as `Db::scan`).
fn zscan(ex: &mut Exec, a: &[Bytes]) {
    let Some(cursor) = parse_cursor(&a[2]) else {
        return ex.r.error("ERR invalid cursor");
    };
    let (found, r) = look(ex, &a[1], true);
    let z = match found {
        Err(()) => return r.error(WRONGTYPE),
        Ok(None) => {
            r.array(2);
            r.bulk(b"0");
            return r.array(0);
        }
        Ok(Some(z)) => &*z,
    };
    let (mut count, mut pat): (usize, Option<&[u8]>) = (10, None);
    let mut i = 3;
    while i < a.len() {
        let more = a.len() - i >= 2;
        if eq_ic(&a[i], "count") && more {
            match parse_i64(&a[i + 1]) {
                None => return r.error(NOT_INT),
                Some(n) if n < 1 => return r.error(SYNTAX),
                Some(n) => count = n as usize,
            }
        } else if eq_ic(&a[i], "match") && more {
            pat = Some(&a[i + 1][..]).filter(|p| *p != b"*");
        } else {
            return r.error(SYNTAX);
        }
        i += 2;
    }
    let keep = |m: &[u8]| pat.is_none_or(|p| crate::glob::glob_match(p, m, false));
    let small = z.len() <= LISTPACK_ENTRIES && z.iter().all(|(m, _)| m.len() <= LISTPACK_VALUE);
    let mut out: Vec<(&Bytes, f64)> = Vec::new();
    let next = if small {
        out.extend(z.iter().filter(|(m, _)| keep(m)));
        0
    } else {
        let mut pos = if cursor == 0 {
            z.len()
        } else {
            (cursor as usize).min(z.len())
        };
        let mut visited = 0;
        while pos > 0 && visited < count {
            pos -= 1;
            visited += 1;
            let (m, s) = z.get_index(pos).expect("below len");
            if keep(m) {
                out.push((m, s));
            }
        }
        pos as u64
    };
    r.array(2);
    r.bulk(next.to_string().as_bytes());
    r.array(out.len() * 2);
    for (m, s) in out {
        r.bulk(m);
        // The listpack holds `d2string` text: integral scores as integers.
        if s == s.trunc() && s.abs() < 9.2e18 {
            r.bulk_int(s as i64);
        } else {
            r.bulk(format_score(s).as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF and their STORE forms, ZINTERCARD.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggr {
    Sum,
    Min,
    Max,
}

/// Redis's `zunionInterAggregate`, NaN handling included.
fn aggregate(target: &mut f64, val: f64, ag: Aggr) {
    match ag {
        Aggr::Sum => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggr::Min => *target = if val < *target { val } else { *target },
        Aggr::Max => *target = if val > *target { val } else { *target },
    }
}

/// One input: a sorted set, a plain set (every score 1) or a missing key.
#[derive(Clone, Copy)]
enum Src<'a> {
    None,
    Z(&'a ZSet),
    S(&'a SetValue),
}

impl<'a> Src<'a> {
    fn len(&self) -> usize {
        match self {
            Src::None => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }

    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::None => None,
            Src::Z(z) => z.score(m),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&'a [u8], f64)) {
        match self {
            Src::None => {}
            Src::Z(z) => z.iter_rev().for_each(|(m, s)| f(m, s)),
            Src::S(s) => s.iter().for_each(|m| f(m, 1.0)),
        }
    }
}

fn zunionstore(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Union, true, false)
}

fn zinterstore(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Inter, true, false)
}

fn zdiffstore(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Diff, true, false)
}

fn zunion(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Union, false, false)
}

fn zinter(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Inter, false, false)
}

fn zdiff(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Diff, false, false)
}

fn zintercard(ex: &mut Exec, a: &[Bytes]) {
    setop(ex, a, SetOp::Inter, false, true)
}

/// `zunionInterDiffGenericCommand`: numkeys, the keys (type-checked before
/// any option), then WEIGHTS / AGGREGATE / WITHSCORES / LIMIT.
fn setop(ex: &mut Exec, a: &[Bytes], op: SetOp, dst: bool, card: bool) {
    let nk_idx = if dst { 2 } else { 1 };
    let Some(n) = parse_i64(&a[nk_idx]) else {
        return ex.r.error(NOT_INT);
    };
    if n < 1 {
        let name = std::str::from_utf8(&a[0])
            .unwrap_or("")
            .to_ascii_lowercase();
        return ex.r.error(&format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    if n as u64 > (a.len() - nk_idx - 1) as u64 {
        return ex.r.error(SYNTAX);
    }
    let n = n as usize;
    let keys = &a[nk_idx + 1..nk_idx + 1 + n];
    for k in keys {
        if ex.keymiss(k) {
            continue;
        }
        let now = ex.cut;
        let (db, st) = ex.ks.db(ex.db);
        if let Some(e) = db.get(k, now, st) {
            st.hits += 1;
            if !matches!(e.value, Value::ZSet(_) | Value::Set(_)) {
                return ex.r.error(WRONGTYPE);
            }
        } else {
            st.misses += 1;
        }
    }
    let mut weights = vec![1.0f64; n];
    let (mut ag, mut withscores, mut limit) = (Aggr::Sum, false, 0usize);
    let mut j = nk_idx + 1 + n;
    while j < a.len() {
        let left = a.len() - j;
        let o = &a[j];
        if op != SetOp::Diff && !card && left > n && eq_ic(o, "weights") {
            for (i, w) in weights.iter_mut().enumerate() {
                match parse_score(&a[j + 1 + i]) {
                    Some(v) => *w = v,
                    None => return ex.r.error("ERR weight value is not a float"),
                }
            }
            j += 1 + n;
        } else if op != SetOp::Diff && !card && left >= 2 && eq_ic(o, "aggregate") {
            let v = &a[j + 1];
            ag = if eq_ic(v, "sum") {
                Aggr::Sum
            } else if eq_ic(v, "min") {
                Aggr::Min
            } else if eq_ic(v, "max") {
                Aggr::Max
            } else {
                return ex.r.error(SYNTAX);
            };
            j += 2;
        } else if !dst && !card && eq_ic(o, "withscores") {
            withscores = true;
            j += 1;
        } else if card && left >= 2 && eq_ic(o, "limit") {
            // getPositiveLongFromObjectOrReply: one message for both.
            match parse_i64(&a[j + 1]) {
                Some(l) if l >= 0 => limit = l as usize,
                _ => return ex.r.error("ERR LIMIT can't be negative"),
            }
            j += 2;
        } else {
            return ex.r.error(SYNTAX);
        }
    }

    let now = ex.cut;
    let (db, _) = ex.ks.db(ex.db);
    let db = &*db;
    let mut srcs: Vec<(Src, f64, &[u8])> = keys
        .iter()
        .zip(&weights)
        .map(|(k, &w)| {
            let src = match db.peek(k, now).map(|e| &e.value) {
                Some(Value::ZSet(z)) => Src::Z(z),
                Some(Value::Set(s)) => Src::S(s),
                _ => Src::None,
            };
            (src, w, &k[..])
        })
        .collect();
    if op != SetOp::Diff {
        srcs.sort_by_key(|(s, _, _)| s.len());
    }
    let mut acc = ZDict::default();
    let mut cardinality = 0usize;
    match op {
        SetOp::Inter => {
            let (first, w0, k0) = srcs[0];
            first.for_each(|m, s| {
                if card && limit > 0 && cardinality >= limit {
                    return;
                }
                let mut score = w0 * s;
                if score.is_nan() {
                    score = 0.0;
                }
                for &(src, w, k) in &srcs[1..] {
                    let v = if k == k0 { Some(s) } else { src.find(m) };
                    match v {
                        Some(v) => aggregate(&mut score, v * w, ag),
                        None => return,
                    }
                }
                if card {
                    cardinality += 1;
                } else {
                    acc.insert(Bytes::copy_from_slice(m), score);
                }
            });
        }
        SetOp::Union => {
            for &(src, w, _) in &srcs {
                src.for_each(|m, s| {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(m) {
                        Some(t) => aggregate(t, score, ag),
                        None => {
                            acc.insert(Bytes::copy_from_slice(m), score);
                        }
                    }
                });
            }
        }
        SetOp::Diff => {
            let (first, _, k0) = srcs[0];
            if !srcs[1..].iter().any(|&(_, _, k)| k == k0) {
                first.for_each(|m, s| {
                    if srcs[1..].iter().all(|(src, _, _)| src.find(m).is_none()) {
                        acc.insert(Bytes::copy_from_slice(m), s);
                    }
                });
            }
        }
    }
    if card {
        return ex.r.int(cardinality as i64);
    }
    let mut out = ZSet::default();
    for (m, s) in acc {
        out.insert(m, if dst { stored(s) } else { s });
    }
    if dst {
        let event = match op {
            SetOp::Union => "zunionstore",
            SetOp::Inter => "zinterstore",
            SetOp::Diff => "zdiffstore",
        };
        let n = store(ex, &a[1], out, event);
        ex.r.int(n as i64);
    } else {
        let items: Vec<(&Bytes, f64)> = out.iter().collect();
        reply_members(&mut ex.r, &items, withscores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_format_is_percent_17g() {
        for (v, s) in [
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (1.5, "1.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-5, "1.0000000000000001e-05"),
            (0.0001, "0.0001"),
            (-2.5e-300, "-2.5e-300"),
            (3.0, "3"),
            (-17.25, "-17.25"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1e300, "1.0000000000000001e+300"),
        ] {
            assert_eq!(format_score(v), s, "{v:e}");
        }
    }

    #[test]
    fn score_and_bound_parsing() {
        assert_eq!(parse_score(b"1e400"), None);
        assert_eq!(parse_score(b"1e-400"), None);
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b" 1"), None);
        assert_eq!(parse_score(b""), None);
        assert_eq!(parse_score(b"0e5"), Some(0.0));
        assert_eq!(parse_bound(b""), Some((0.0, false)));
        assert_eq!(parse_bound(b"( 2"), Some((2.0, true)));
        assert_eq!(parse_bound(b"1e400"), Some((f64::INFINITY, false)));
        assert_eq!(parse_bound(b"nan"), None);
        assert_eq!(parse_bound(b" "), None);
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"x"), None);
    }
}
