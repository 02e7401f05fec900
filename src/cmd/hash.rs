//! Hash commands (HSET ... HSCAN), each run on the shard owning its key.
//! Errors are Redis 7.0's word for word; HSCAN's cursor walk and
//! HRANDFIELD's sampling are shared with the set commands (`super::set`).

use bytes::Bytes;

use super::ldouble::LongDouble;
use super::set::{ScanOpts, distinct_indices, parse_cursor, rand_count, reply_scan, walk};
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, NOT_FLOAT, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, notify, parse_i64};
use crate::resp::{Proto, Reply};
use crate::shard::keyspace::{Entry, HashValue, Str, Value};

const WDF: &[&str] = &["write", "denyoom", "fast"];
const WF: &[&str] = &["write", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];

pub static COMMANDS: [CmdSpec; 16] = [
    keyed!("hset", -4, WDF, 1, 1, 1, hset),
    keyed!("hmset", -4, WDF, 1, 1, 1, hset),
    keyed!("hsetnx", 4, WDF, 1, 1, 1, hsetnx),
    keyed!("hget", 3, RF, 1, 1, 1, hget),
    keyed!("hmget", -3, RF, 1, 1, 1, hmget),
    keyed!("hdel", -3, WF, 1, 1, 1, hdel),
    keyed!("hlen", 2, RF, 1, 1, 1, hlen),
    keyed!("hstrlen", 3, RF, 1, 1, 1, hstrlen),
    keyed!("hexists", 3, RF, 1, 1, 1, hexists),
    keyed!("hkeys", 2, R, 1, 1, 1, hkeys),
    keyed!("hvals", 2, R, 1, 1, 1, hvals),
    keyed!("hgetall", 2, R, 1, 1, 1, hgetall),
    keyed!("hincrby", 4, WDF, 1, 1, 1, hincrby),
    keyed!("hincrbyfloat", 4, WDF, 1, 1, 1, hincrbyfloat),
    keyed!("hrandfield", -2, R, 1, 1, 1, hrandfield),
    keyed!("hscan", -3, R, 1, 1, 1, hscan),
];

/// The hash at `key`: `Ok(None)` when missing, `Err` on WRONGTYPE. `read`
/// selects Redis's `lookupKeyRead` (counts hits/misses) over `lookupKeyWrite`.
fn hash_at<'a>(ex: &'a mut Exec, key: &[u8], read: bool) -> Result<Option<&'a mut HashValue>, ()> {
    ex.typed_at(key, read, |v| match v {
        Value::Hash(x) => Some(&mut **x),
        _ => None,
    })
}

/// Reads the hash at `key` (`None` when missing) with the reply writer
/// beside it, so replies are written straight from the stored bytes.
/// Counts a hit or miss as Redis's `lookupKeyRead`; answers WRONGTYPE
/// itself.
fn read_hash<'a>(
    ex: &mut Exec<'a>,
    key: &[u8],
    f: impl FnOnce(Option<&HashValue>, &mut Reply<'a>),
) {
    let (e, r) = ex.lookup_read_with_reply(key);
    match e.map(|e| &e.value) {
        None => f(None, r),
        Some(Value::Hash(h)) => f(Some(h), r),
        Some(_) => r.error(WRONGTYPE),
    }
}

/// The hash at `key` for writing, created empty when missing. Callers
/// must store a field afterwards: an empty hash must not stay behind.
fn hash_or_create<'a>(ex: &'a mut Exec, key: &[u8]) -> Result<&'a mut HashValue, ()> {
    if ex.lookup_write(key).is_none() {
        ex.insert_new(key, Value::Hash(Box::default()));
    }
    hash_at(ex, key, false).map(|h| h.expect("just created"))
}

/// ```text
/// HSET key field value [field value ...]  -> number of new fields
/// HMSET key field value [field value ...] -> +OK
/// ```
fn hset(ex: &mut Exec, a: &[Bytes]) {
    let hmset = eq_ic(&a[0], "hmset");
    if a.len() % 2 == 1 {
        let name = if hmset { "hmset" } else { "hset" };
        return ex.r.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let Ok(h) = hash_or_create(ex, &a[1]) else {
        return ex.r.error(WRONGTYPE);
    };
    let mut created = 0;
    for fv in a[2..].chunks_exact(2) {
        let v = Str::from(&fv[1][..]);
        match h.get_mut(&fv[0][..]) {
            Some(old) => *old = v,
            None => {
                h.insert(Str::from(&fv[0][..]), v);
                created += 1;
            }
        }
    }
    ex.notify(notify::HASH, "hset", &a[1]);
    ex.modified(&a[1]);
    if hmset { ex.r.ok() } else { ex.r.int(created) }
}

fn hsetnx(ex: &mut Exec, a: &[Bytes]) {
    let Ok(h) = hash_or_create(ex, &a[1]) else {
        return ex.r.error(WRONGTYPE);
    };
    if h.contains_key(&a[2][..]) {
        return ex.r.int(0);
    }
    h.insert(Str::from(&a[2][..]), Str::from(&a[3][..]));
    ex.notify(notify::HASH, "hset", &a[1]);
    ex.modified(&a[1]);
    ex.r.int(1)
}

fn hget(ex: &mut Exec, a: &[Bytes]) {
    read_hash(ex, &a[1], |h, r| {
        r.bulk_opt(h.and_then(|h| h.get(&a[2][..])).map(|v| &v[..]))
    })
}

fn hmget(ex: &mut Exec, a: &[Bytes]) {
    read_hash(ex, &a[1], |h, r| {
        r.array(a.len() - 2);
        for f in &a[2..] {
            r.bulk_opt(h.and_then(|h| h.get(&f[..])).map(|v| &v[..]));
        }
    })
}

fn hdel(ex: &mut Exec, a: &[Bytes]) {
    let removed = match hash_at(ex, &a[1], false) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => 0,
        Ok(Some(h)) => a[2..]
            .iter()
            .filter(|f| h.swap_remove(&f[..]).is_some())
            .count(),
    };
    if removed > 0 {
        ex.elements_removed(notify::HASH, "hdel", &a[1]);
    }
    ex.r.int(removed as i64)
}

fn hlen(ex: &mut Exec, a: &[Bytes]) {
    match hash_at(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(h) => {
            let n = h.map_or(0, |h| h.len());
            ex.r.int(n as i64)
        }
    }
}

fn hstrlen(ex: &mut Exec, a: &[Bytes]) {
    match hash_at(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(h) => {
            let n = h.and_then(|h| h.get(&a[2][..])).map_or(0, |v| v.len());
            ex.r.int(n as i64)
        }
    }
}

fn hexists(ex: &mut Exec, a: &[Bytes]) {
    match hash_at(ex, &a[1], true) {
        Err(()) => ex.r.error(WRONGTYPE),
        Ok(h) => {
            let found = h.is_some_and(|h| h.contains_key(&a[2][..]));
            ex.r.int(found as i64)
        }
    }
}

/// Which parts of the hash HKEYS / HVALS / HGETALL return.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Keys,
    Vals,
    All,
}

fn hgetall_generic(ex: &mut Exec, a: &[Bytes], part: Part) {
    read_hash(ex, &a[1], |h, r| {
        let n = h.map_or(0, |h| h.len());
        if part == Part::All {
            r.map(n);
        } else {
            r.array(n);
        }
        for (f, v) in h.into_iter().flatten() {
            if part != Part::Vals {
                r.bulk(f);
            }
            if part != Part::Keys {
                r.bulk(v);
            }
        }
    })
}

fn hkeys(ex: &mut Exec, a: &[Bytes]) {
    hgetall_generic(ex, a, Part::Keys)
}

fn hvals(ex: &mut Exec, a: &[Bytes]) {
    hgetall_generic(ex, a, Part::Vals)
}

fn hgetall(ex: &mut Exec, a: &[Bytes]) {
    hgetall_generic(ex, a, Part::All)
}

/// ```text
/// HINCRBY key field increment -> the new value
/// ```
/// The increment is checked before the key's type, as in Redis.
fn hincrby(ex: &mut Exec, a: &[Bytes]) {
    let Some(by) = parse_i64(&a[3]) else {
        return ex.r.error(NOT_INT);
    };
    let Ok(h) = hash_or_create(ex, &a[1]) else {
        return ex.r.error(WRONGTYPE);
    };
    let old = match h.get(&a[2][..]) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => return ex.r.error("ERR hash value is not an integer"),
        },
    };
    let Some(new) = old.checked_add(by) else {
        return ex.r.error("ERR increment or decrement would overflow");
    };
    let s = Str::from(itoa::Buffer::new().format(new).as_bytes());
    set_field(h, &a[2], s);
    ex.notify(notify::HASH, "hincrby", &a[1]);
    ex.modified(&a[1]);
    ex.r.int(new)
}

/// Stores `field = v`, copying the field name only when it is new.
fn set_field(h: &mut HashValue, field: &[u8], v: Str) {
    match h.get_mut(field) {
        Some(old) => *old = v,
        None => {
            h.insert(Str::from(field), v);
        }
    }
}

/// ```text
/// HINCRBYFLOAT key field increment -> the new value as a bulk string
/// ```
fn hincrbyfloat(ex: &mut Exec, a: &[Bytes]) {
    let Some(by) = LongDouble::parse(&a[3]) else {
        return ex.r.error(NOT_FLOAT);
    };
    if !by.is_finite() {
        return ex.r.error("ERR value is NaN or Infinity");
    }
    let Ok(h) = hash_or_create(ex, &a[1]) else {
        return ex.r.error(WRONGTYPE);
    };
    let old = match h.get(&a[2][..]) {
        None => LongDouble::ZERO,
        Some(v) => match LongDouble::parse(v) {
            Some(n) => n,
            None => return ex.r.error("ERR hash value is not a float"),
        },
    };
    let Some(new) = old.checked_add(by) else {
        return ex.r.error("ERR increment would produce NaN or Infinity");
    };
    let s = new.format_human();
    set_field(h, &a[2], Str::from(s.as_bytes()));
    ex.notify(notify::HASH, "hincrbyfloat", &a[1]);
    ex.modified(&a[1]);
    ex.r.bulk(s.as_bytes())
}

/// ```text
/// HRANDFIELD key                         -> bulk or null
/// HRANDFIELD key count [WITHVALUES]      -> array: count >= 0 distinct
///                                           fields, count < 0 with repeats
/// ```
/// WITHVALUES pairs are flat in RESP2 and two-element arrays in RESP3.
fn hrandfield(ex: &mut Exec, a: &[Bytes]) {
    let Some(c) = a.get(2) else {
        return match hash_at(ex, &a[1], true) {
            Err(()) => ex.r.error(WRONGTYPE),
            Ok(None) => ex.r.null(),
            Ok(Some(h)) => {
                let f = pair(h, fastrand::usize(..h.len())).0;
                ex.r.bulk(&f)
            }
        };
    };
    let (count, uniq) = match rand_count(c) {
        Ok(v) => v,
        Err(e) => return ex.r.error(e),
    };
    if a.len() > 4 || (a.len() == 4 && !eq_ic(&a[3], "withvalues")) {
        return ex.r.error(SYNTAX);
    }
    let withvalues = a.len() == 4;
    if withvalues && count > (i64::MAX / 2) as usize {
        return ex.r.error("ERR value is out of range");
    }
    match hash_at(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return ex.r.array(0),
        Ok(Some(_)) => {}
    }
    // Borrow the hash through the keyspace alone so replies can be written
    // while it is held: picks with repeats are streamed, not collected, as
    // the count comes from the client and may be huge.
    let Some(Entry {
        value: Value::Hash(h),
        ..
    }) = ex.ks.dbs[ex.db].peek(&a[1], ex.cut)
    else {
        unreachable!("looked up above");
    };
    let repeats = !uniq || count == 1;
    let n = if repeats { count } else { count.min(h.len()) };
    let resp3 = ex.r.proto == Proto::Resp3;
    ex.r.array(if withvalues && !resp3 { 2 * n } else { n });
    let r = &mut ex.r;
    let mut emit = |i: usize| {
        let (f, v) = h.get_index(i).expect("index below len");
        if withvalues && resp3 {
            r.array(2);
        }
        r.bulk(f);
        if withvalues {
            r.bulk(v);
        }
    };
    if repeats {
        (0..n).for_each(|_| emit(fastrand::usize(..h.len())));
    } else if n == h.len() {
        (0..n).for_each(&mut emit);
    } else {
        distinct_indices(h.len(), n).into_iter().for_each(emit);
    }
}

fn pair(h: &HashValue, i: usize) -> (Str, Str) {
    let (f, v) = h.get_index(i).expect("index below len");
    (f.clone(), v.clone())
}

/// Redis 7.0 keeps a hash of at most 128 fields, none of whose fields or
/// values exceed 64 bytes, as a listpack, which HSCAN returns whole.
fn is_listpack(h: &HashValue) -> bool {
    h.len() <= 128 && h.iter().all(|(f, v)| f.len() <= 64 && v.len() <= 64)
}

/// ```text
/// HSCAN key cursor [MATCH pattern] [COUNT count] -> [next-cursor, [field value ...]]
/// ```
/// The cursor is checked first, then the key, then the options (a missing
/// key answers an empty scan whatever the options), as in Redis.
fn hscan(ex: &mut Exec, a: &[Bytes]) {
    let Some(cursor) = parse_cursor(&a[2]) else {
        return ex.r.error("ERR invalid cursor");
    };
    let h = match hash_at(ex, &a[1], true) {
        Err(()) => return ex.r.error(WRONGTYPE),
        Ok(None) => return reply_scan::<Bytes>(ex, 0, &[]),
        Ok(Some(h)) => h,
    };
    let o = match ScanOpts::parse(a) {
        Ok(o) => o,
        Err(e) => return ex.r.error(e),
    };
    let mut items = Vec::new();
    let next = walk(h.len(), cursor, o.count, is_listpack(h), |i| {
        let (f, v) = h.get_index(i).expect("index below len");
        if o.matches(f) {
            items.push(f.clone());
            items.push(v.clone());
        }
    });
    reply_scan(ex, next, &items)
}
