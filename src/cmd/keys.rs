//! Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, RENAME, COPY,
//! MOVE, OBJECT. KEYS, SCAN and RANDOMKEY need every shard and live in
//! `shard::dispatch` as global commands.

use bytes::Bytes;

use super::notify;
use super::string::keyed;
use super::{
    CmdSpec, Exec, Kind, Multi, NOT_INT, SYNTAX, eq_ic, parse_db, parse_i64, unknown_subcommand,
};
use crate::shard::CountKind;
use crate::shard::keyspace::{Str, Value};

const RF: &[&str] = &["readonly", "fast"];
const WF: &[&str] = &["write", "fast"];

pub static COMMANDS: [CmdSpec; 19] = [
    keyed!(
        "del",
        -2,
        &["write"],
        1,
        -1,
        1,
        del,
        Multi::Count(CountKind::Del)
    ),
    keyed!(
        "unlink",
        -2,
        WF,
        1,
        -1,
        1,
        del,
        Multi::Count(CountKind::Del)
    ),
    keyed!(
        "exists",
        -2,
        RF,
        1,
        -1,
        1,
        exists,
        Multi::Count(CountKind::Exists)
    ),
    keyed!(
        "touch",
        -2,
        RF,
        1,
        -1,
        1,
        touch,
        Multi::Count(CountKind::Touch)
    ),
    keyed!("type", 2, RF, 1, 1, 1, type_cmd),
    keyed!("expire", -3, WF, 1, 1, 1, expire),
    keyed!("pexpire", -3, WF, 1, 1, 1, pexpire),
    keyed!("expireat", -3, WF, 1, 1, 1, expireat),
    keyed!("pexpireat", -3, WF, 1, 1, 1, pexpireat),
    keyed!("ttl", 2, RF, 1, 1, 1, ttl),
    keyed!("pttl", 2, RF, 1, 1, 1, pttl),
    keyed!("expiretime", 2, RF, 1, 1, 1, expiretime),
    keyed!("pexpiretime", 2, RF, 1, 1, 1, pexpiretime),
    keyed!("persist", 2, WF, 1, 1, 1, persist),
    keyed!("rename", 3, &["write"], 1, 2, 1, rename, Multi::Scratch),
    keyed!("renamenx", 3, WF, 1, 2, 1, renamenx, Multi::Scratch),
    keyed!(
        "copy",
        -3,
        &["write", "denyoom"],
        1,
        2,
        1,
        copy,
        Multi::Scratch
    ),
    keyed!("move", 3, WF, 1, 1, 1, move_cmd),
    CmdSpec {
        name: "object",
        arity: -2,
        flags: &["readonly"],
        first_key: 2,
        last_key: 2,
        step: 1,
        numkeys: 0,
        kind: Kind::Keyed(object, None),
        stat: crate::cmd::StatSlot::new(),
    },
];

/// DEL / UNLINK / EXISTS / TOUCH on keys of one shard: how many matched.
/// EXISTS and TOUCH look keys up as Redis's `lookupKeyRead` does: each
/// counts a keyspace hit or miss, and a miss raises `keymiss`.
pub fn count_keys(ex: &mut Exec, keys: &[Bytes], kind: CountKind) -> i64 {
    let now = ex.cut;
    let mut n = 0;
    for k in keys {
        if kind == CountKind::Del {
            let (db, st) = ex.db();
            if db.contains(k, now, st) && db.remove(k).is_some() {
                n += 1;
                ex.modified(k);
                ex.notify(notify::GENERIC, "del", k);
            }
        } else if ex.lookup_read(k).is_some() {
            n += 1;
        }
    }
    n
}

fn del(ex: &mut Exec, a: &[Bytes]) {
    let n = count_keys(ex, &a[1..], CountKind::Del);
    ex.r.int(n)
}

fn exists(ex: &mut Exec, a: &[Bytes]) {
    let n = count_keys(ex, &a[1..], CountKind::Exists);
    ex.r.int(n)
}

fn touch(ex: &mut Exec, a: &[Bytes]) {
    let n = count_keys(ex, &a[1..], CountKind::Touch);
    ex.r.int(n)
}

fn type_cmd(ex: &mut Exec, a: &[Bytes]) {
    let t = ex
        .lookup_read(&a[1])
        .map_or("none", |e| e.value.type_name());
    ex.r.simple(t)
}

/// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT with NX XX GT LT, as Redis's
/// `expireGenericCommand`: options are checked first, then the number; a
/// time already past deletes the key (and still answers 1).
fn expire_generic(ex: &mut Exec, a: &[Bytes], seconds: bool, absolute: bool, cmd: &str) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &a[3..] {
        if eq_ic(o, "nx") {
            nx = true;
        } else if eq_ic(o, "xx") {
            xx = true;
        } else if eq_ic(o, "gt") {
            gt = true;
        } else if eq_ic(o, "lt") {
            lt = true;
        } else {
            return ex.r.error(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return ex
            .r
            .error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return ex
            .r
            .error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(mut when) = parse_i64(&a[2]) else {
        return ex.r.error(NOT_INT);
    };
    let invalid = format!("ERR invalid expire time in '{cmd}' command");
    if seconds {
        match when.checked_mul(1000) {
            Some(w) => when = w,
            None => return ex.r.error(&invalid),
        }
    }
    if !absolute {
        match when.checked_add(ex.now as i64) {
            Some(w) => when = w,
            None => return ex.r.error(&invalid),
        }
    }
    let cut = ex.cut;
    let Some(e) = ex.lookup_write(&a[1]) else {
        return ex.r.int(0);
    };
    let cur = e.expire_at;
    let refuse = (nx && cur != 0)
        || (xx && cur == 0)
        || (gt && (cur == 0 || when <= cur as i64))
        || (lt && cur != 0 && when >= cur as i64);
    if refuse {
        return ex.r.int(0);
    }
    let (db, _) = ex.db();
    let event = if when <= cut as i64 {
        db.remove(&a[1]);
        "del"
    } else {
        db.set_expire(&a[1], when as u64);
        "expire"
    };
    ex.modified(&a[1]);
    ex.notify(notify::GENERIC, event, &a[1]);
    ex.r.int(1)
}

fn expire(ex: &mut Exec, a: &[Bytes]) {
    expire_generic(ex, a, true, false, "expire")
}
fn pexpire(ex: &mut Exec, a: &[Bytes]) {
    expire_generic(ex, a, false, false, "pexpire")
}
fn expireat(ex: &mut Exec, a: &[Bytes]) {
    expire_generic(ex, a, true, true, "expireat")
}
fn pexpireat(ex: &mut Exec, a: &[Bytes]) {
    expire_generic(ex, a, false, true, "pexpireat")
}

/// TTL family: -2 no key, -1 no TTL; seconds are rounded like Redis.
/// The key is looked up for reading (a hit or a miss, `keymiss`), as in
/// Redis's ttlGenericCommand.
fn ttl_generic(ex: &mut Exec, key: &[u8], ms: bool, absolute: bool) {
    let now = ex.now;
    let reply = match ex.lookup_read(key) {
        None => -2,
        Some(e) if e.expire_at == 0 => -1,
        Some(e) => {
            let t = if absolute {
                e.expire_at as i64
            } else {
                (e.expire_at as i64 - now as i64).max(0)
            };
            if ms { t } else { (t + 500) / 1000 }
        }
    };
    ex.r.int(reply)
}

fn ttl(ex: &mut Exec, a: &[Bytes]) {
    ttl_generic(ex, &a[1], false, false)
}
fn pttl(ex: &mut Exec, a: &[Bytes]) {
    ttl_generic(ex, &a[1], true, false)
}
fn expiretime(ex: &mut Exec, a: &[Bytes]) {
    ttl_generic(ex, &a[1], false, true)
}
fn pexpiretime(ex: &mut Exec, a: &[Bytes]) {
    ttl_generic(ex, &a[1], true, true)
}

fn persist(ex: &mut Exec, a: &[Bytes]) {
    let had = ex.lookup_write(&a[1]).is_some_and(|e| e.expire_at != 0);
    if had {
        ex.db().0.set_expire(&a[1], 0);
        ex.modified(&a[1]);
        ex.notify(notify::GENERIC, "persist", &a[1]);
    }
    ex.r.int(had as i64)
}

/// RENAME / RENAMENX with both keys on this shard.
fn rename_generic(ex: &mut Exec, a: &[Bytes], nx: bool) {
    let Some(src) = ex.lookup_write(&a[1]).cloned() else {
        return ex.r.error("ERR no such key");
    };
    if a[1] == a[2] {
        return if nx { ex.r.int(0) } else { ex.r.ok() };
    }
    if nx && ex.lookup_write(&a[2]).is_some() {
        return ex.r.int(0);
    }
    let (db, _) = ex.db();
    db.remove(&a[1]);
    db.insert(&a[2], src);
    ex.modified(&a[1]);
    ex.modified(&a[2]);
    // Redis deletes an existing destination, then dbAdds it: `new`.
    ex.notify(notify::NEW, "new", &a[2]);
    ex.notify(notify::GENERIC, "rename_from", &a[1]);
    ex.notify(notify::GENERIC, "rename_to", &a[2]);
    if nx { ex.r.int(1) } else { ex.r.ok() }
}

fn rename(ex: &mut Exec, a: &[Bytes]) {
    rename_generic(ex, a, false)
}
fn renamenx(ex: &mut Exec, a: &[Bytes]) {
    rename_generic(ex, a, true)
}

/// COPY's options: destination db and REPLACE.
pub fn copy_opts(
    shard: &crate::shard::Shard,
    a: &[Bytes],
    cur_db: u16,
) -> Result<(u16, bool), &'static str> {
    let (mut db, mut replace) = (cur_db, false);
    let mut i = 3;
    while i < a.len() {
        if eq_ic(&a[i], "replace") {
            replace = true;
        } else if eq_ic(&a[i], "db") && i + 1 < a.len() {
            db = parse_db(shard, &a[i + 1])?;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    Ok((db, replace))
}

fn copy(ex: &mut Exec, a: &[Bytes]) {
    let (dst_db, replace) = match copy_opts(ex.shard, a, ex.db as u16) {
        Ok(o) => o,
        Err(e) => return ex.r.error(e),
    };
    if a[1] == a[2] && dst_db as usize == ex.db {
        return ex
            .r
            .error("ERR source and destination objects are the same");
    }
    // Redis's copyCommand reads the source (a hit or a miss).
    let Some(src) = ex.lookup_read(&a[1]).cloned() else {
        return ex.r.int(0);
    };
    let now = ex.cut;
    let (db, st) = ex.ks.db(dst_db as usize);
    if db.contains(&a[2], now, st) && !replace {
        return ex.r.int(0);
    }
    db.insert(&a[2], src);
    ex.shard.key_modified(dst_db as usize, &a[2]);
    ex.notify_in(dst_db as usize, notify::NEW, "new", &a[2]);
    ex.notify_in(dst_db as usize, notify::GENERIC, "copy_to", &a[2]);
    ex.r.int(1)
}

fn move_cmd(ex: &mut Exec, a: &[Bytes]) {
    let dst = match parse_db(ex.shard, &a[2]) {
        Ok(d) => d as usize,
        Err(e) => return ex.r.error(e),
    };
    if dst == ex.db {
        return ex
            .r
            .error("ERR source and destination objects are the same");
    }
    let Some(src) = ex.lookup_write(&a[1]).cloned() else {
        return ex.r.int(0);
    };
    let now = ex.cut;
    let (db, st) = ex.ks.db(dst);
    if db.contains(&a[1], now, st) {
        return ex.r.int(0);
    }
    db.insert(&a[1], src);
    ex.db().0.remove(&a[1]);
    ex.modified(&a[1]);
    ex.shard.key_modified(dst, &a[1]);
    ex.notify_in(dst, notify::NEW, "new", &a[1]);
    ex.notify(notify::GENERIC, "move_from", &a[1]);
    ex.notify_in(dst, notify::GENERIC, "move_to", &a[1]);
    ex.r.int(1)
}

/// The encoding Redis would report for a string: by its bytes, unless it
/// was changed in place (`raw`) or made from a float (never `int`).
pub fn str_encoding(s: &Str) -> &'static str {
    let (raw, no_int) = s.encoding_flags();
    if raw {
        "raw"
    } else if !no_int && s.len() <= 20 && parse_i64(s).is_some() {
        "int"
    } else if s.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

fn object(ex: &mut Exec, a: &[Bytes]) {
    let sub = &a[1];
    if eq_ic(sub, "help") && a.len() == 2 {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ];
        ex.r.lines(&lines);
        return;
    }
    if a.len() != 3 || !(eq_ic(sub, "encoding") || eq_ic(sub, "freq") || eq_ic(sub, "refcount")) {
        return ex.r.error(&unknown_subcommand(sub, "object"));
    }
    // Redis counts this lookup's hit or miss but raises no `keymiss`
    // (LOOKUP_NOTOUCH | LOOKUP_NONOTIFY).
    let now = ex.cut;
    let (db, st) = ex.ks.db(ex.db);
    let found = db.get(&a[2], now, st);
    if found.is_some() {
        st.hits += 1;
    } else {
        st.misses += 1;
    }
    let Some(e) = found else {
        return ex.r.null();
    };
    // Every value has one owner, its key: tether shares no objects (Redis
    // shares small integers and answers INT_MAX for them).
    if eq_ic(sub, "refcount") {
        return ex.r.int(1);
    }
    if eq_ic(sub, "freq") {
        return ex.r.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
    }
    // Redis 7.0's encoding for the value's size at the configured
    // thresholds (advisory: tether's structures are its own, and Redis
    // never converts a grown collection back, which this does not track).
    let limit = |name: &str, default: i64| {
        ex.shard
            .shared
            .config()
            .get_int(name)
            .unwrap_or(default)
            .max(0) as usize
    };
    let enc = match &e.value {
        Value::Str(s) => str_encoding(s),
        Value::List(_) => "quicklist",
        Value::Hash(h) => {
            let (n, v) = (
                limit("hash-max-listpack-entries", 512),
                limit("hash-max-listpack-value", 64),
            );
            if h.len() <= n && h.iter().all(|(k, x)| k.len() <= v && x.len() <= v) {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Value::Set(st) => {
            let n = limit("set-max-intset-entries", 512);
            if st.len() <= n && st.iter().all(|m| m.len() <= 20 && parse_i64(m).is_some()) {
                "intset"
            } else {
                "hashtable"
            }
        }
        Value::ZSet(z) => {
            let (n, v) = (
                limit("zset-max-listpack-entries", 128),
                limit("zset-max-listpack-value", 64),
            );
            if z.len() <= n && z.iter().all(|(m, _)| m.len() <= v) {
                "listpack"
            } else {
                "skiplist"
            }
        }
    };
    ex.r.bulk(enc.as_bytes())
}
