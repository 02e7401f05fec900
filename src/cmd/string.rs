//! String commands (GET, SET and friends). Each runs on the shard that owns
//! its key(s); MGET/MSET/MSETNX spanning shards go through `Multi` in
//! `shard::dispatch`. Errors are Redis 7.0's, word for word.

use bytes::{Bytes, BytesMut};

use super::ldouble::LongDouble;
use super::notify;
use super::{CmdSpec, Exec, Kind, Multi, NOT_FLOAT, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, parse_i64};
use crate::shard::keyspace::{Entry, Str, Value};

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const RF: &[&str] = &["readonly", "fast"];

/// A keyed command row: `keyed!(name, arity, flags, first, last, step,
/// handler [, multi])`; `keyed!(numkeys N; name, arity, flags, first, last,
/// step, handler, multi)` for commands whose keys follow a numkeys
/// argument at index N (first/last/step then name any fixed key, or 0).
macro_rules! keyed {
    (numkeys $nk:expr; $name:expr, $arity:expr, $flags:expr, $f:expr, $l:expr, $s:expr, $h:expr, $m:expr) => {
        CmdSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $f,
            last_key: $l,
            step: $s,
            numkeys: $nk,
            kind: Kind::Keyed($h, Some($m)),
            stat: crate::cmd::StatSlot::new(),
        }
    };
    ($name:expr, $arity:expr, $flags:expr, $f:expr, $l:expr, $s:expr, $h:expr) => {
        CmdSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $f,
            last_key: $l,
            step: $s,
            numkeys: 0,
            kind: Kind::Keyed($h, None),
            stat: crate::cmd::StatSlot::new(),
        }
    };
    ($name:expr, $arity:expr, $flags:expr, $f:expr, $l:expr, $s:expr, $h:expr, $m:expr) => {
        CmdSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $f,
            last_key: $l,
            step: $s,
            numkeys: 0,
            kind: Kind::Keyed($h, Some($m)),
            stat: crate::cmd::StatSlot::new(),
        }
    };
}
pub(crate) use keyed;

pub static COMMANDS: [CmdSpec; 22] = [
    keyed!("get", 2, RF, 1, 1, 1, get),
    keyed!("set", -3, W, 1, 1, 1, set),
    keyed!("setnx", 3, WF, 1, 1, 1, setnx),
    keyed!("setex", 4, W, 1, 1, 1, setex),
    keyed!("psetex", 4, W, 1, 1, 1, psetex),
    keyed!("getset", 3, WF, 1, 1, 1, getset),
    keyed!("getdel", 2, &["write", "fast"], 1, 1, 1, getdel),
    keyed!("getex", -2, &["write", "fast"], 1, 1, 1, getex),
    keyed!("mget", -2, RF, 1, -1, 1, mget, Multi::MGet),
    keyed!("mset", -3, W, 1, -1, 2, mset, Multi::MSet),
    keyed!("msetnx", -3, W, 1, -1, 2, msetnx, Multi::MSetNx),
    keyed!("append", 3, WF, 1, 1, 1, append),
    keyed!("strlen", 2, RF, 1, 1, 1, strlen),
    keyed!("getrange", 4, &["readonly"], 1, 1, 1, getrange),
    keyed!("substr", 4, &["readonly"], 1, 1, 1, getrange),
    keyed!("setrange", 4, W, 1, 1, 1, setrange),
    keyed!("incr", 2, WF, 1, 1, 1, incr),
    keyed!("decr", 2, WF, 1, 1, 1, decr),
    keyed!("incrby", 3, WF, 1, 1, 1, incrby),
    keyed!("decrby", 3, WF, 1, 1, 1, decrby),
    keyed!("incrbyfloat", 3, WF, 1, 1, 1, incrbyfloat),
    keyed!("lcs", -3, &["readonly"], 1, 2, 1, lcs, Multi::Scratch),
];

fn get(ex: &mut Exec, a: &[Bytes]) {
    if ex.keymiss(&a[1]) {
        return ex.r.null();
    }
    // Field-level borrows: reply straight from the stored bytes, no clone.
    let now = ex.cut;
    let (db, st) = ex.ks.db(ex.db);
    match db.get(&a[1], now, st) {
        None => {
            st.misses += 1;
            ex.r.null()
        }
        Some(e) => {
            st.hits += 1;
            match &e.value {
                Value::Str(s) => ex.r.bulk(s),
                _ => ex.r.error(WRONGTYPE),
            }
        }
    }
}

/// Expiry option of SET/GETEX, resolved to an absolute Unix ms time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ttl {
    Keep,
    Clear,
    At(u64),
}

/// Turns `EX n` / `PX n` / `EXAT n` / `PXAT n` into an absolute time, with
/// Redis's checks: the number must be an integer > 0 and must not overflow.
pub fn expire_arg(unit: &[u8], n: &[u8], now: u64, cmd: &str) -> Result<u64, String> {
    let v = parse_i64(n).ok_or_else(|| NOT_INT.to_string())?;
    let invalid = || format!("ERR invalid expire time in '{cmd}' command");
    if v <= 0 {
        return Err(invalid());
    }
    let ms = if eq_ic(unit, "ex") || eq_ic(unit, "exat") {
        v.checked_mul(1000).ok_or_else(invalid)?
    } else {
        v
    };
    let abs = if eq_ic(unit, "ex") || eq_ic(unit, "px") {
        ms.checked_add(now as i64).ok_or_else(invalid)?
    } else {
        ms
    };
    Ok(abs as u64)
}

/// Options of SET (from argument 3) and GETEX (from argument 2), parsed as
/// Redis 7.0's `parseExtendedStringArgumentsOrReply`: options first, the
/// expiry number only afterwards, so `SET k v EX PX ""` is a syntax error.
#[derive(Default)]
struct StrOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// The expiry unit option (`ex`, `px`, `exat`, `pxat`) and its raw value.
    expire: Option<(&'static str, &'a [u8])>,
}

fn parse_str_opts<'a>(a: &'a [Bytes], from: usize, is_set: bool) -> Option<StrOpts<'a>> {
    let mut o = StrOpts::default();
    let mut j = from;
    while j < a.len() {
        let opt = &a[j];
        let next = a.get(j + 1);
        let unit = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|u| eq_ic(opt, u));
        if eq_ic(opt, "nx") && !o.xx && is_set {
            o.nx = true;
        } else if eq_ic(opt, "xx") && !o.nx && is_set {
            o.xx = true;
        } else if eq_ic(opt, "get") && is_set {
            o.get = true;
        } else if eq_ic(opt, "keepttl") && !o.persist && o.expire.is_none() && is_set {
            o.keepttl = true;
        } else if eq_ic(opt, "persist") && !is_set && o.expire.is_none() && !o.keepttl {
            o.persist = true;
        } else if let (Some(u), Some(v)) = (unit, next)
            && !o.keepttl
            && !o.persist
            && o.expire.is_none_or(|(cur, _)| cur == u)
        {
            o.expire = Some((u, v));
            j += 1;
        } else {
            return None;
        }
        j += 1;
    }
    Some(o)
}

fn set(ex: &mut Exec, a: &[Bytes]) {
    let Some(o) = parse_str_opts(a, 3, true) else {
        return ex.r.error(SYNTAX);
    };
    let ttl = match o.expire {
        Some((unit, v)) => match expire_arg(unit.as_bytes(), v, ex.now, "set") {
            Ok(at) => Ttl::At(at),
            Err(e) => return ex.r.error(&e),
        },
        None if o.keepttl => Ttl::Keep,
        None => Ttl::Clear,
    };
    let key = &a[1];
    if !(o.get || o.nx || o.xx || o.keepttl) {
        // Plain SET: one probe, no look at the old value.
        let at = if let Ttl::At(t) = ttl { t } else { 0 };
        store(ex, key, &a[2], at);
        set_events(ex, key, at != 0);
        return ex.r.ok();
    }
    if o.get {
        // Redis's GET option runs getGenericCommand: a read lookup.
        ex.lookup_read(key);
    }
    let old = ex.lookup_write(key).map(|e| e.expire_at);
    let old_str = match cur_str(ex, key) {
        Ok(v) => v.map(|v| v.0),
        // SET replaces a key of any type, unless GET must return it.
        Err(()) if o.get => return ex.r.error(WRONGTYPE),
        Err(()) => None,
    };
    if o.get {
        ex.r.bulk_opt(old_str.as_deref());
    }
    if (o.nx && old.is_some()) || (o.xx && old.is_none()) {
        if !o.get {
            ex.r.null();
        }
        return;
    }
    let expire_at = match ttl {
        Ttl::Keep => old.unwrap_or(0),
        Ttl::Clear => 0,
        Ttl::At(t) => t,
    };
    store(ex, key, &a[2], expire_at);
    set_events(ex, key, matches!(ttl, Ttl::At(_)));
    if !o.get {
        ex.r.ok()
    }
}

/// The keyspace events of the SET family: `set`, then `expire` when the
/// command gave a TTL (Redis's setGenericCommand).
#[inline(always)]
fn set_events(ex: &mut Exec, key: &[u8], expire: bool) {
    ex.notify(notify::STRING, "set", key);
    if expire {
        ex.notify(notify::GENERIC, "expire", key);
    }
}

/// Before a write creates or replaces `key` without looking it up: looks
/// it up when keyspace events need it, so a key past its TTL raises
/// `expired` and a key created raises `new`, as Redis's lookupKeyWrite and
/// dbAdd do.
#[inline(always)]
fn before_store(ex: &mut Exec, key: &[u8]) {
    if ex.shard.notify_flags.get() & (notify::NEW | notify::EXPIRED) != 0
        && ex.lookup_write(key).is_none()
    {
        ex.notify(notify::NEW, "new", key);
    }
}

/// Stores a string value (copied out of the request buffer) with a TTL.
pub fn store(ex: &mut Exec, key: &[u8], val: &[u8], expire_at: u64) {
    before_store(ex, key);
    let (db, _) = ex.db();
    db.insert(
        key,
        Entry {
            value: Value::Str(Str::from(val)),
            expire_at,
        },
    );
    ex.modified(key);
}

/// The current string value and TTL of a key about to be written;
/// `Err` when the key holds another type.
fn cur_str(ex: &mut Exec, key: &[u8]) -> Result<Option<(Str, u64)>, ()> {
    match ex.lookup_write(key) {
        None => Ok(None),
        Some(Entry {
            value: Value::Str(s),
            expire_at,
        }) => Ok(Some((s.clone(), *expire_at))),
        Some(_) => Err(()),
    }
}

fn setnx(ex: &mut Exec, a: &[Bytes]) {
    if ex.lookup_write(&a[1]).is_some() {
        return ex.r.int(0);
    }
    store(ex, &a[1], &a[2], 0);
    set_events(ex, &a[1], false);
    ex.r.int(1)
}

fn setex_generic(ex: &mut Exec, a: &[Bytes], unit: &str, cmd: &str) {
    match expire_arg(unit.as_bytes(), &a[2], ex.now, cmd) {
        Ok(at) => {
            store(ex, &a[1], &a[3], at);
            set_events(ex, &a[1], true);
            ex.r.ok()
        }
        Err(e) => ex.r.error(&e),
    }
}

fn setex(ex: &mut Exec, a: &[Bytes]) {
    setex_generic(ex, a, "ex", "setex")
}

fn psetex(ex: &mut Exec, a: &[Bytes]) {
    setex_generic(ex, a, "px", "psetex")
}

fn getset(ex: &mut Exec, a: &[Bytes]) {
    // getGenericCommand first: a read lookup (hit or miss, `keymiss`).
    ex.lookup_read(&a[1]);
    let old = match cur_str(ex, &a[1]) {
        Ok(c) => c.map(|c| c.0),
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    store(ex, &a[1], &a[2], 0);
    set_events(ex, &a[1], false);
    ex.r.bulk_opt(old.as_deref())
}

fn getdel(ex: &mut Exec, a: &[Bytes]) {
    match ex.read_str(&a[1]) {
        Ok(Some(v)) => {
            ex.db().0.remove(&a[1]);
            ex.modified(&a[1]);
            ex.notify(notify::GENERIC, "del", &a[1]);
            ex.r.bulk(&v)
        }
        Ok(None) => ex.r.null(),
        Err(()) => ex.r.error(WRONGTYPE),
    }
}

fn getex(ex: &mut Exec, a: &[Bytes]) {
    let Some(o) = parse_str_opts(a, 2, false) else {
        return ex.r.error(SYNTAX);
    };
    let v = match ex.read_str(&a[1]) {
        Ok(Some(v)) => v,
        Ok(None) => return ex.r.null(),
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    let ttl = match o.expire {
        Some((unit, n)) => match expire_arg(unit.as_bytes(), n, ex.now, "getex") {
            Ok(at) => Some(Ttl::At(at)),
            Err(e) => return ex.r.error(&e),
        },
        None if o.persist => Some(Ttl::Clear),
        None => None,
    };
    match ttl {
        Some(Ttl::At(at)) if at <= ex.cut => {
            ex.db().0.remove(&a[1]);
            ex.modified(&a[1]);
            ex.notify(notify::GENERIC, "del", &a[1]);
        }
        Some(Ttl::At(at)) => {
            ex.db().0.set_expire(&a[1], at);
            ex.modified(&a[1]);
            ex.notify(notify::GENERIC, "expire", &a[1]);
        }
        Some(Ttl::Clear) => {
            let had_ttl = ex.lookup_write(&a[1]).is_some_and(|e| e.expire_at != 0);
            ex.db().0.set_expire(&a[1], 0);
            ex.modified(&a[1]);
            // Redis's removeExpire: an event only when a TTL went.
            if had_ttl {
                ex.notify(notify::GENERIC, "persist", &a[1]);
            }
        }
        _ => {}
    }
    ex.r.bulk(&v)
}

fn mget(ex: &mut Exec, a: &[Bytes]) {
    ex.r.array(a.len() - 1);
    for k in &a[1..] {
        let v = ex.read_str(k).ok().flatten();
        ex.r.bulk_opt(v.as_deref());
    }
}

fn mset(ex: &mut Exec, a: &[Bytes]) {
    if a.len().is_multiple_of(2) {
        return ex
            .r
            .error("ERR wrong number of arguments for 'mset' command");
    }
    for p in a[1..].chunks(2) {
        store(ex, &p[0], &p[1], 0);
        set_events(ex, &p[0], false);
    }
    ex.r.ok()
}

fn msetnx(ex: &mut Exec, a: &[Bytes]) {
    if a.len().is_multiple_of(2) {
        return ex
            .r
            .error("ERR wrong number of arguments for 'msetnx' command");
    }
    let now = ex.cut;
    let (db, st) = ex.db();
    if a[1..].chunks(2).any(|p| db.contains(&p[0], now, st)) {
        return ex.r.int(0);
    }
    for p in a[1..].chunks(2) {
        store(ex, &p[0], &p[1], 0);
        set_events(ex, &p[0], false);
    }
    ex.r.int(1)
}

/// The proto-max-bulk-len check APPEND and SETRANGE make.
/// Strings built server-side (APPEND, SETRANGE, the bit commands; LCS's
/// table) never exceed 4 GiB, even if proto-max-bulk-len is raised
/// further: one request must not be able to make the process allocate
/// (and abort on) an absurd size.
pub(crate) const MAX_BUILT_STRING: u64 = 4 << 30;

fn check_len(ex: &mut Exec, len: u64) -> bool {
    if len > ex.shard.proto_max_bulk.get() || len > MAX_BUILT_STRING {
        ex.r.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return false;
    }
    true
}

fn append(ex: &mut Exec, a: &[Bytes]) {
    let (key, add) = (&a[1], &a[2]);
    let total;
    let cur = match cur_str(ex, key) {
        Ok(c) => c,
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    match cur {
        None => {
            total = add.len();
            store(ex, key, add, 0);
        }
        Some((s, ttl)) => {
            let newlen = (s.len() + add.len()) as u64;
            if !check_len(ex, newlen) {
                return;
            }
            let mut buf = BytesMut::with_capacity(s.len() + add.len());
            buf.extend_from_slice(&s);
            buf.extend_from_slice(add);
            total = buf.len();
            let mut value = Str::from(buf.freeze());
            value.mark_raw();
            let (db, _) = ex.db();
            db.insert(
                key,
                Entry {
                    value: Value::Str(value),
                    expire_at: ttl,
                },
            );
            ex.modified(key);
        }
    }
    ex.modified(key);
    ex.notify(notify::STRING, "append", key);
    ex.r.int(total as i64)
}

fn strlen(ex: &mut Exec, a: &[Bytes]) {
    match ex.read_str(&a[1]) {
        Ok(v) => ex.r.int(v.map_or(0, |v| v.len() as i64)),
        Err(()) => ex.r.error(WRONGTYPE),
    }
}

fn getrange(ex: &mut Exec, a: &[Bytes]) {
    let (Some(mut start), Some(mut end)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
        return ex.r.error(NOT_INT);
    };
    let v = match ex.read_str(&a[1]) {
        Ok(Some(v)) => v,
        Ok(None) => return ex.r.bulk(b""),
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return ex.r.bulk(b"");
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return ex.r.bulk(b"");
    }
    ex.r.bulk(&v[start as usize..=end as usize])
}

fn setrange(ex: &mut Exec, a: &[Bytes]) {
    let Some(off) = parse_i64(&a[2]) else {
        return ex.r.error(NOT_INT);
    };
    if off < 0 {
        return ex.r.error("ERR offset is out of range");
    }
    let val = &a[3];
    let cur = match cur_str(ex, &a[1]) {
        Ok(c) => c,
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    let cur_len = cur.as_ref().map_or(0, |c| c.0.len());
    if val.is_empty() {
        return ex.r.int(cur_len as i64);
    }
    if !check_len(ex, off as u64 + val.len() as u64) {
        return;
    }
    let off = off as usize;
    let mut buf = BytesMut::from(cur.as_ref().map_or(&b""[..], |c| &c.0[..]));
    if buf.len() < off + val.len() {
        buf.resize(off + val.len(), 0);
    }
    buf[off..off + val.len()].copy_from_slice(val);
    let n = buf.len();
    if cur.is_none() {
        ex.notify(notify::NEW, "new", &a[1]);
    }
    let mut value = Str::from(buf.freeze());
    value.mark_raw();
    let (db, _) = ex.db();
    db.insert(
        &a[1],
        Entry {
            value: Value::Str(value),
            expire_at: cur.map_or(0, |c| c.1),
        },
    );
    ex.modified(&a[1]);
    ex.notify(notify::STRING, "setrange", &a[1]);
    ex.r.int(n as i64)
}

/// INCR family: the value must be a string holding a strict integer.
fn incr_generic(ex: &mut Exec, key: &[u8], by: i64) {
    let cur = match cur_str(ex, key) {
        Ok(c) => c,
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    let (old, ttl) = match &cur {
        None => (0, 0),
        Some((s, ttl)) => match parse_i64(s) {
            Some(v) => (v, *ttl),
            None => return ex.r.error(NOT_INT),
        },
    };
    let Some(new) = old.checked_add(by) else {
        return ex.r.error("ERR increment or decrement would overflow");
    };
    let s = itoa::Buffer::new().format(new).as_bytes().to_vec();
    if cur.is_none() {
        ex.notify(notify::NEW, "new", key);
    }
    let (db, _) = ex.db();
    db.insert(
        key,
        Entry {
            value: Value::Str(Str::from(s)),
            expire_at: ttl,
        },
    );
    ex.modified(key);
    ex.notify(notify::STRING, "incrby", key);
    ex.r.int(new)
}

fn incr(ex: &mut Exec, a: &[Bytes]) {
    incr_generic(ex, &a[1], 1)
}

fn decr(ex: &mut Exec, a: &[Bytes]) {
    incr_generic(ex, &a[1], -1)
}

fn incrby(ex: &mut Exec, a: &[Bytes]) {
    match parse_i64(&a[2]) {
        Some(by) => incr_generic(ex, &a[1], by),
        None => ex.r.error(NOT_INT),
    }
}

fn decrby(ex: &mut Exec, a: &[Bytes]) {
    match parse_i64(&a[2]) {
        Some(i64::MIN) => ex.r.error("ERR decrement would overflow"),
        Some(by) => incr_generic(ex, &a[1], -by),
        None => ex.r.error(NOT_INT),
    }
}

fn incrbyfloat(ex: &mut Exec, a: &[Bytes]) {
    let cur = match cur_str(ex, &a[1]) {
        Ok(c) => c,
        Err(()) => return ex.r.error(WRONGTYPE),
    };
    let (old, ttl) = match &cur {
        None => (LongDouble::ZERO, 0),
        Some((s, ttl)) => match LongDouble::parse(s) {
            Some(v) => (v, *ttl),
            None => return ex.r.error(NOT_FLOAT),
        },
    };
    let Some(by) = LongDouble::parse(&a[2]) else {
        return ex.r.error(NOT_FLOAT);
    };
    let Some(new) = old.checked_add(by) else {
        return ex.r.error("ERR increment would produce NaN or Infinity");
    };
    let s = Bytes::from(new.format_human());
    if cur.is_none() {
        ex.notify(notify::NEW, "new", &a[1]);
    }
    let mut value = Str::from(&s);
    value.mark_no_int();
    let (db, _) = ex.db();
    db.insert(
        &a[1],
        Entry {
            value: Value::Str(value),
            expire_at: ttl,
        },
    );
    ex.modified(&a[1]);
    ex.notify(notify::STRING, "incrbyfloat", &a[1]);
    ex.r.bulk(&s)
}

/// ```text
/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]
/// ```
/// The longest common subsequence of two strings (missing keys read as
/// empty), by Redis 7.0's dynamic programme: a table of `(|a|+1)(|b|+1)`
/// u32 lengths, refused when larger than `proto-max-bulk-len`, then a walk
/// back from the end. IDX lists the matched ranges, last first, as Redis
/// does.
fn lcs(ex: &mut Exec, a: &[Bytes]) {
    let mut texts: [Vec<u8>; 2] = Default::default();
    let mut wrong = false;
    for (t, key) in texts.iter_mut().zip(&a[1..3]) {
        match ex.lookup_read(key).map(|e| &e.value) {
            None => {}
            Some(Value::Str(s)) => *t = s.to_vec(),
            Some(_) => wrong = true,
        }
    }
    if wrong {
        return ex
            .r
            .error("ERR The specified keys must contain string values");
    }
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j];
        if eq_ic(opt, "idx") {
            getidx = true;
        } else if eq_ic(opt, "len") {
            getlen = true;
        } else if eq_ic(opt, "withmatchlen") {
            withmatchlen = true;
        } else if eq_ic(opt, "minmatchlen") && j + 1 < a.len() {
            let Some(n) = parse_i64(&a[j + 1]) else {
                return ex.r.error(NOT_INT);
            };
            minmatchlen = n.max(0);
            j += 1;
        } else {
            return ex.r.error(SYNTAX);
        }
        j += 1;
    }
    if getlen && getidx {
        return ex
            .r
            .error("ERR If you want both the length and indexes, please just use IDX.");
    }
    let [x, y] = &texts;
    if x.len() as u64 >= u32::MAX as u64 - 1 || y.len() as u64 >= u32::MAX as u64 - 1 {
        return ex.r.error("ERR String too long for LCS");
    }
    let (xl, yl) = (x.len(), y.len());
    let cells = (xl as u64 + 1) * (yl as u64 + 1);
    if cells * 4 > ex.shard.proto_max_bulk.get().min(MAX_BUILT_STRING) {
        return ex
            .r
            .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let w = yl + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=xl {
        for k in 1..=yl {
            t[i * w + k] = if x[i - 1] == y[k - 1] {
                t[(i - 1) * w + k - 1] + 1
            } else {
                t[(i - 1) * w + k].max(t[i * w + k - 1])
            };
        }
    }
    let total = t[xl * w + yl];
    if getlen {
        return ex.r.int(total as i64);
    }
    // Walk back from the end, collecting the subsequence and, for IDX,
    // the ranges of contiguous matches.
    let mut out = vec![0u8; total as usize];
    let mut ranges: Vec<[usize; 4]> = Vec::new();
    let mut cur: Option<[usize; 4]> = None; // a start, a end, b start, b end
    let (mut i, mut k, mut n) = (xl, yl, total as usize);
    while i > 0 && k > 0 {
        let mut emit = false;
        if x[i - 1] == y[k - 1] {
            out[n - 1] = x[i - 1];
            match cur.as_mut() {
                None => cur = Some([i - 1, i - 1, k - 1, k - 1]),
                Some(r) if r[0] == i && r[2] == k => {
                    r[0] -= 1;
                    r[2] -= 1;
                }
                Some(_) => emit = true,
            }
            if cur.is_some_and(|r| r[0] == 0 || r[2] == 0) {
                emit = true;
            }
            n -= 1;
            i -= 1;
            k -= 1;
        } else {
            if t[(i - 1) * w + k] > t[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            emit = cur.is_some();
        }
        // Taking the range restarts tracking even when it is too short.
        if emit
            && let Some(r) = cur.take()
            && (minmatchlen == 0 || (r[1] - r[0] + 1) as i64 >= minmatchlen)
        {
            ranges.push(r);
        }
    }
    if !getidx {
        return ex.r.bulk(&out);
    }
    ex.r.map(2);
    ex.r.bulk(b"matches");
    ex.r.array(ranges.len());
    for r in &ranges {
        ex.r.array(2 + withmatchlen as usize);
        ex.r.array(2);
        ex.r.int(r[0] as i64);
        ex.r.int(r[1] as i64);
        ex.r.array(2);
        ex.r.int(r[2] as i64);
        ex.r.int(r[3] as i64);
        if withmatchlen {
            ex.r.int((r[1] - r[0] + 1) as i64);
        }
    }
    ex.r.bulk(b"len");
    ex.r.int(total as i64)
}
