//! DUMP and RESTORE: a key's value as a DUMP payload and back. Keyed
//! single-key commands; they run on the shard owning the key.
//!
//! ```text
//! payload = <type> <value as in an RDB file> <u16 LE RDB version> <u64 LE CRC-64>
//! ```
//!
//! The payload codec is `rdb::dump_payload` / `rdb::restore_payload_lenient`;
//! this file owns the command semantics and Redis 7.0's checks, in its
//! order: options, then BUSYKEY, then the TTL, then the payload footer
//! (version and CRC), then the value itself (read as Redis reads it: from
//! the whole payload, footer included, leftovers ignored).

use bytes::Bytes;

use super::notify;
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, NOT_INT, SYNTAX, eq_ic, parse_i64};
use crate::rdb::{dump_payload, restore_payload_lenient};
use crate::shard::keyspace::Entry;

pub static COMMANDS: [CmdSpec; 2] = [
    keyed!("dump", 2, &["readonly"], 1, 1, 1, dump),
    keyed!("restore", -4, &["write", "denyoom"], 1, 1, 1, restore),
];

/// DUMP key: the payload, or nil when the key does not exist.
fn dump(ex: &mut Exec, a: &[Bytes]) {
    match ex.lookup_read(&a[1]) {
        None => ex.r.null(),
        Some(e) => {
            let payload = dump_payload(&e.value);
            ex.r.bulk(&payload)
        }
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
///
/// `ttl` is milliseconds from now (0 = no expiry), or with ABSTTL a Unix
/// time in milliseconds. A TTL already in the past stores nothing (and with
/// REPLACE deletes the old key) but still answers OK, as Redis does.
/// IDLETIME and FREQ are checked and ignored: tether keeps no LRU/LFU data.
fn restore(ex: &mut Exec, a: &[Bytes]) {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut j = 4;
    while j < a.len() {
        let more = a.len() - j - 1;
        if eq_ic(&a[j], "replace") {
            replace = true;
        } else if eq_ic(&a[j], "absttl") {
            absttl = true;
        } else if eq_ic(&a[j], "idletime") && more >= 1 && freq.is_none() {
            let Some(v) = parse_i64(&a[j + 1]) else {
                return ex.r.error(NOT_INT);
            };
            if v < 0 {
                return ex.r.error("ERR Invalid IDLETIME value, must be >= 0");
            }
            idle = Some(v);
            j += 1;
        } else if eq_ic(&a[j], "freq") && more >= 1 && idle.is_none() {
            let Some(v) = parse_i64(&a[j + 1]) else {
                return ex.r.error(NOT_INT);
            };
            if !(0..=255).contains(&v) {
                return ex
                    .r
                    .error("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            freq = Some(v);
            j += 1;
        } else {
            return ex.r.error(SYNTAX);
        }
        j += 1;
    }
    let key = &a[1];
    let exists = ex.lookup_write(key).is_some();
    if exists && !replace {
        return ex.r.error("BUSYKEY Target key name already exists.");
    }
    let Some(ttl) = parse_i64(&a[2]) else {
        return ex.r.error(NOT_INT);
    };
    if ttl < 0 {
        return ex.r.error("ERR Invalid TTL value, must be >= 0");
    }
    let value = match restore_payload_lenient(&a[3]) {
        Ok(v) => v,
        Err(e) if e.is_payload_footer() => {
            return ex.r.error("ERR DUMP payload version or checksum are wrong");
        }
        Err(_) => return ex.r.error("ERR Bad data format"),
    };
    let now = ex.now;
    let deleted = replace && exists && ex.db().0.remove(key).is_some();
    // Redis adds in 64-bit signed arithmetic: a relative TTL that overflows
    // wraps negative and counts as already expired.
    let when = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t,
        (t, false) => (now as i64).wrapping_add(t),
    };
    let expire_at = when.max(0) as u64;
    if when != 0 && when <= ex.cut as i64 {
        // Already expired: nothing is stored (Redis propagates a DEL).
        if deleted {
            ex.modified(key);
            ex.notify(notify::GENERIC, "del", key);
        }
        return ex.r.ok();
    }
    ex.db().0.insert(key, Entry { value, expire_at });
    ex.modified(key);
    ex.notify(notify::NEW, "new", key);
    ex.notify(notify::GENERIC, "restore", key);
    ex.r.ok()
}
