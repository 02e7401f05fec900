//! One shard's slice of the keyspace: `databases` dictionaries of keys to
//! typed values, each with an index of keys that carry a TTL. Owned and
//! touched only by its shard's executor; no locks.
//!
//! The main dictionary is a segmented [`Table`] that grows one small
//! segment at a time (no whole-table rehash pause) and whose walk order
//! gives SCAN Redis's guarantee; see `table`. The TTL index, sampled at
//! random by the active expiry cycle, is a `Table` of keys alone, so it
//! grows without a pause too (an `IndexSet` rehashed whole: tens of
//! milliseconds at millions of keys with a TTL).

use std::collections::VecDeque;

use bytes::Bytes;

pub use super::dict::{Dict, DictSet};
pub use super::sval::Str;
use super::table::{Pos, Table, WALK_START};
pub use super::zset::ZSet;

/// A hash: field -> value, insertion-ordered for HSCAN and HRANDFIELD,
/// growing without a pause (see `dict`).
pub type HashValue = Dict<Str, Str>;
/// A set, insertion-ordered for SSCAN, SPOP and SRANDMEMBER.
pub type SetValue = DictSet<Str>;

/// A stored value. Collections are boxed so a `Value` stays 32 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Str),
    List(Box<VecDeque<Bytes>>),
    Hash(Box<HashValue>),
    Set(Box<SetValue>),
    ZSet(Box<ZSet>),
}

impl Value {
    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// Approximate heap footprint, for MEMORY USAGE.
    pub fn mem_usage(&self) -> usize {
        match self {
            Value::Str(b) => b.len(),
            Value::List(l) => l.iter().map(|e| e.len() + 32).sum(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 72).sum(),
            Value::Set(s) => s.iter().map(|m| m.len() + 40).sum(),
            Value::ZSet(z) => z.len() * 96 + z.iter().map(|(m, _)| m.len()).sum::<usize>(),
        }
    }

    /// Whether a collection has become empty (Redis deletes such keys).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
        }
    }
}

/// A key's value and its absolute expiry in Unix milliseconds (0 = none).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub expire_at: u64,
}

impl Entry {
    pub fn new(value: Value) -> Self {
        Entry {
            value,
            expire_at: 0,
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now
    }
}

pub(crate) type Map = Table;

thread_local! {
    /// Set while a client's write runs on a writable replica (see
    /// [`track_replica_ttls`]).
    static TRACK_TTLS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the write about to run is a client's on a replica: a TTL it
/// gives a key is then remembered in [`Db::replica_ttls`], as Redis's
/// `rememberSlaveKeyWithExpire` does. `cmd::expiry_cut` sets it before
/// each command and op; it is cleared after.
pub fn track_replica_ttls(on: bool) {
    TRACK_TTLS.with(|t| t.set(on));
}

fn tracking_ttls() -> bool {
    TRACK_TTLS.with(|t| t.get())
}

/// One logical database's share on this shard.
#[derive(Default)]
pub struct Db {
    map: Map,
    /// The keys that carry a TTL, for the active expiry cycle's random
    /// samples. Segmented like the dictionary, so it grows without a pause.
    expires: Table<()>,
    /// Keys deleted because their TTL passed, kept while replication is
    /// active so the shard can propagate them as DEL (`None` = off).
    pub expired_log: Option<Vec<Bytes>>,
    /// Keys deleted because their TTL passed, kept while `expired`
    /// keyspace events are on (`cmd::notify::drain_expired`).
    pub expired_notes: Vec<Bytes>,
    /// A snapshot in progress over this db (see `repl::snapshot`): every
    /// key is serialised as it was at the cut before anything touches it.
    pub snap: Option<Box<crate::repl::snapshot::DbSnap>>,
    /// Keys a writable replica's own clients gave a TTL. A replica leaves
    /// expiry to its master, which knows nothing of these, so the replica
    /// deletes them itself once due ([`Db::expire_replica_keys`]), as
    /// Redis's `expireSlaveKeys` does.
    replica_ttls: std::collections::HashSet<Bytes>,
}

/// Counters the keyspace keeps for INFO stats.
#[derive(Default, Clone, Copy, Debug)]
pub struct KeyspaceStats {
    pub hits: u64,
    pub misses: u64,
    pub expired: u64,
    /// Some db's `expired_log` holds keys not yet propagated. Not a
    /// statistic (RESETSTAT keeps it): it spares every replicated write a
    /// walk over all databases' logs (`repl::master::drain_expired`).
    pub dels_pending: bool,
    /// `expired` keyspace events are on: expiry logs into
    /// `Db::expired_notes`. Config, not a statistic.
    pub notify_expired: bool,
    /// Some db's `expired_notes` is not empty.
    pub notes_pending: bool,
    /// This server is a replica: a key whose TTL passed reads as missing
    /// but is not deleted; its master decides and sends the DEL (Redis
    /// 7.0's `expireIfNeeded` with `masterhost` set). Role, not a
    /// statistic; set before each command runs (`cmd::expiry_cut`).
    pub hide_expired: bool,
}

impl KeyspaceStats {
    /// CONFIG RESETSTAT: the counters go back to zero; the flags, which
    /// are bookkeeping and config rather than statistics, stay.
    pub fn reset_counters(&mut self) {
        *self = KeyspaceStats {
            dels_pending: self.dels_pending,
            notify_expired: self.notify_expired,
            notes_pending: self.notes_pending,
            hide_expired: self.hide_expired,
            ..Default::default()
        };
    }
}

impl Db {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    /// Looks a key up, deleting it first if its TTL passed by `now` (lazy
    /// expiry; on a replica it only reads as missing, see
    /// [`KeyspaceStats::hide_expired`]). `now` 0 finds every key live.
    pub fn get(&mut self, key: &[u8], now: u64, stats: &mut KeyspaceStats) -> Option<&mut Entry> {
        let loc = self.map.locate(key)?;
        let expired = self.map.at(loc).expired(now);
        if expired && stats.hide_expired {
            return None;
        }
        self.snap_before(key);
        if expired {
            self.remove(key);
            stats.expired += 1;
            self.log_expired(key, stats);
            return None;
        }
        Some(self.map.at_mut(loc))
    }

    /// The live entry of a key, without side effects (no lazy deletion).
    pub fn peek(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| !e.expired(now))
    }

    /// Raw state of a key without side effects: `None` when absent, else
    /// (logically expired, has a TTL).
    pub fn raw_state(&self, key: &[u8], now: u64) -> Option<(bool, bool)> {
        self.map
            .get(key)
            .map(|e| (e.expired(now), e.expire_at != 0))
    }

    /// Whether a live key exists (expiring it lazily when due).
    pub fn contains(&mut self, key: &[u8], now: u64, stats: &mut KeyspaceStats) -> bool {
        self.get(key, now, stats).is_some()
    }

    /// Inserts or replaces a key with the given entry (TTL included), with
    /// one hash probe.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        self.snap_before(key);
        let has_ttl = entry.expire_at != 0;
        let had_ttl = self
            .map
            .insert(key, entry, self.snap.is_none())
            .is_some_and(|old| old.expire_at != 0);
        if has_ttl && !had_ttl {
            self.expires.insert(key, (), true);
        } else if !has_ttl && had_ttl {
            self.expires.remove(key);
        }
        if has_ttl && tracking_ttls() {
            self.replica_ttls.insert(Bytes::copy_from_slice(key));
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.snap_before(key);
        let (loc, e) = self.map.remove(key)?;
        if let Some(s) = self.snap.as_mut() {
            s.after_remove(&self.map, loc);
        }
        if e.expire_at != 0 {
            self.expires.remove(key);
        }
        Some(e)
    }

    /// Sets (at != 0) or clears (at == 0) the TTL of an existing key.
    pub fn set_expire(&mut self, key: &[u8], at: u64) -> bool {
        self.snap_before(key);
        let Some(e) = self.map.get_mut(key) else {
            return false;
        };
        e.expire_at = at;
        if at != 0 {
            self.expires.insert(key, (), true);
            if tracking_ttls() {
                self.replica_ttls.insert(Bytes::copy_from_slice(key));
            }
        } else {
            self.expires.remove(key);
        }
        true
    }

    pub fn clear(&mut self) {
        if let Some(s) = self.snap.as_mut() {
            s.finish(&self.map);
        }
        self.map = Map::default();
        self.expires = Table::default();
        self.replica_ttls.clear();
    }

    /// A uniformly random live key, if any (expired picks are reaped; on a
    /// replica skipped, and after 100 of them one is returned anyway, as
    /// Redis's dbRandomKey does when every key may be logically expired).
    pub fn random_key(&mut self, now: u64, stats: &mut KeyspaceStats) -> Option<Bytes> {
        for _ in 0..100 {
            if self.map.is_empty() {
                return None;
            }
            let (k, e) = self.map.random()?;
            if !e.expired(now) {
                return Some(Bytes::copy_from_slice(k.as_bytes()));
            }
            if stats.hide_expired {
                continue;
            }
            let k = k.clone();
            self.remove(k.as_bytes());
            stats.expired += 1;
            self.log_expired(k.as_bytes(), stats);
        }
        self.map
            .random()
            .map(|(k, _)| Bytes::copy_from_slice(k.as_bytes()))
    }

    /// Every entry, expired or not, in table order (snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(k, e)| (k.as_bytes(), e))
    }

    /// All live keys matching `filter`.
    pub fn keys(&self, now: u64, mut filter: impl FnMut(&[u8], &Entry) -> bool) -> Vec<Bytes> {
        self.map
            .iter()
            .filter(|(k, e)| !e.expired(now) && filter(k.as_bytes(), e))
            .map(|(k, _)| Bytes::copy_from_slice(k.as_bytes()))
            .collect()
    }

    /// One SCAN step over this db, walking on from `pos` (`None` = from
    /// the start; see `table` for the order). Returns the next position
    /// (never 0), or `None` when the walk is done. Visits about `count`
    /// entries.
    pub fn scan(
        &self,
        pos: Option<usize>,
        count: usize,
        now: u64,
        out: &mut Vec<Bytes>,
        mut filter: impl FnMut(&[u8], &Entry) -> bool,
    ) -> Option<usize> {
        let mut p: Pos = pos.map_or(WALK_START, |p| p as Pos);
        let mut visited = 0;
        while visited < count {
            let (next, k, e) = self.map.walk(p)?;
            p = next;
            visited += 1;
            if !e.expired(now) && filter(k.as_bytes(), e) {
                out.push(Bytes::copy_from_slice(k.as_bytes()));
            }
        }
        if self.map.walk_done(p) {
            None
        } else {
            Some(p as usize)
        }
    }

    /// One round of active expiry, as Redis's `activeExpireCycle`: sample up
    /// to 20 keys with a TTL, delete the expired ones, repeat while more than
    /// a quarter of the sample had expired and the time budget lasts.
    /// Returns the deleted keys (for replication, which propagates DELs).
    pub fn active_expire(
        &mut self,
        now: u64,
        deadline: std::time::Instant,
        stats: &mut KeyspaceStats,
    ) -> Vec<Bytes> {
        let mut deleted = Vec::new();
        if self.snap.is_some() {
            // Lazy expiry still works; active expiry waits for the snapshot.
            return deleted;
        }
        loop {
            if self.expires.is_empty() {
                break;
            }
            let sample = self.expires.len().min(20);
            let mut expired = 0;
            for _ in 0..sample {
                if self.expires.is_empty() {
                    break;
                }
                let Some((key, _)) = self.expires.random() else {
                    break;
                };
                let key = key.clone();
                let due = self.map.get(key.as_bytes()).is_none_or(|e| e.expired(now));
                if due {
                    self.remove(key.as_bytes());
                    self.expires.remove(key.as_bytes());
                    stats.expired += 1;
                    expired += 1;
                    deleted.push(Bytes::copy_from_slice(key.as_bytes()));
                    self.log_expired(key.as_bytes(), stats);
                }
            }
            if expired * 4 <= sample || std::time::Instant::now() >= deadline {
                break;
            }
        }
        deleted
    }

    /// On a writable replica: deletes the keys its own clients gave a TTL
    /// once that TTL passed (see [`Db::replica_ttls`]), and forgets those
    /// gone or made persistent meanwhile. Like Redis's `expireSlaveKeys`
    /// it walks the whole list each time, until `deadline`. A key its
    /// master later wrote with a TTL of its own is expired here too, as in
    /// Redis, which tracks these by name.
    pub fn expire_replica_keys(
        &mut self,
        now: u64,
        deadline: std::time::Instant,
        stats: &mut KeyspaceStats,
    ) {
        if self.replica_ttls.is_empty() || self.snap.is_some() {
            return;
        }
        let mut forget = Vec::new();
        let mut due = Vec::new();
        for (n, k) in self.replica_ttls.iter().enumerate() {
            match self.map.get(k) {
                Some(e) if e.expire_at == 0 => forget.push(k.clone()),
                Some(e) if e.expired(now) => due.push(k.clone()),
                Some(_) => {}
                None => forget.push(k.clone()),
            }
            if n % 64 == 63 && std::time::Instant::now() >= deadline {
                break;
            }
        }
        for k in forget {
            self.replica_ttls.remove(&k);
        }
        for k in due {
            self.replica_ttls.remove(&k);
            self.remove(&k);
            stats.expired += 1;
            // Its `expired` event; never a DEL for the stream: a replica
            // only passes its master's stream on.
            if stats.notify_expired {
                self.expired_notes.push(k);
                stats.notes_pending = true;
            }
        }
    }

    /// How many keys [`Db::expire_replica_keys`] watches here.
    pub fn replica_ttls_len(&self) -> usize {
        self.replica_ttls.len()
    }

    /// Stops tracking client TTLs (this server became a master, whose own
    /// expiry cycle covers every key).
    pub fn forget_replica_ttls(&mut self) {
        self.replica_ttls = Default::default();
    }

    /// Records a key deleted by expiry, for propagation as DEL and for its
    /// `expired` keyspace event.
    fn log_expired(&mut self, key: &[u8], stats: &mut KeyspaceStats) {
        if let Some(log) = self.expired_log.as_mut() {
            log.push(Bytes::copy_from_slice(key));
            stats.dels_pending = true;
        }
        if stats.notify_expired {
            self.expired_notes.push(Bytes::copy_from_slice(key));
            stats.notes_pending = true;
        }
    }

    /// Serialises `key` into the running snapshot, as it is now, unless
    /// the snapshot already holds it (see `repl::snapshot`).
    #[inline]
    fn snap_before(&mut self, key: &[u8]) {
        if let Some(s) = self.snap.as_mut() {
            s.before_write(key, &self.map);
        }
    }

    /// Takes what the snapshot over this db has serialised, walking on to
    /// about `budget` bytes; `None` when no snapshot is running here.
    /// Returns the bytes and whether this db's part is complete.
    pub fn snap_take(&mut self, budget: usize, max_keys: &mut usize) -> Option<(Vec<u8>, bool)> {
        let s = self.snap.as_mut()?;
        let finished = s.step(&self.map, budget, max_keys);
        let bytes = std::mem::take(&mut s.out);
        if finished {
            self.snap = None;
        }
        Some((bytes, finished))
    }

    /// Completes this db's snapshot walk at once, keeping the bytes.
    pub fn snap_finish(&mut self) {
        if let Some(s) = self.snap.as_mut() {
            s.finish(&self.map);
        }
    }

    /// The raw entry of a key, expired or not (snapshot hooks).
    pub fn raw(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Sum of TTLs remaining over keys with one (for INFO avg_ttl).
    pub fn avg_ttl(&self, now: u64) -> u64 {
        if self.expires.is_empty() {
            return 0;
        }
        let sample = self.expires.len().min(64);
        let mut sum = 0u64;
        for (k, _) in self.expires.iter().take(sample) {
            if let Some(e) = self.map.get(k.as_bytes()) {
                sum += e.expire_at.saturating_sub(now);
            }
        }
        sum / sample as u64
    }
}

/// Every database's share on one shard, plus keyspace counters.
pub struct Keyspace {
    pub dbs: Vec<Db>,
    pub stats: KeyspaceStats,
}

/// How many requests ahead their first keys are looked up (see
/// [`Keyspace::warm`]).
pub const WARM_AHEAD: usize = 16;

impl Keyspace {
    /// Prefetches the lookups of each `(db, key)` before the requests they
    /// belong to run. A lookup in a keyspace bigger than the caches is two
    /// dependent misses (index bucket, then entry); the lookups of
    /// different requests are independent, so this issues all the bucket
    /// loads of a run of [`WARM_AHEAD`] keys, then, as they land, all the
    /// entry loads, and the requests find their lines in cache. Used by the
    /// fast path's parse-ahead and by batches from other shards.
    pub fn warm<'a>(&self, keys: impl IntoIterator<Item = (u16, &'a [u8])>) {
        let mut keys = keys.into_iter();
        let mut run = [(0usize, 0u64); WARM_AHEAD];
        loop {
            let mut n = 0;
            for (db, key) in keys.by_ref() {
                if let Some(d) = self.dbs.get(db as usize) {
                    run[n] = (db as usize, d.map.prefetch_bucket(key));
                    n += 1;
                    if n == WARM_AHEAD {
                        break;
                    }
                }
            }
            for &(db, h) in &run[..n] {
                self.dbs[db].map.prefetch_entry(h);
            }
            if n < WARM_AHEAD {
                return;
            }
        }
    }

    pub fn new(databases: usize) -> Self {
        Keyspace {
            dbs: (0..databases).map(|_| Db::default()).collect(),
            stats: KeyspaceStats::default(),
        }
    }

    /// Splits the borrow: the db and the stats, for lookups that count.
    pub fn db(&mut self, db: usize) -> (&mut Db, &mut KeyspaceStats) {
        (&mut self.dbs[db], &mut self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_expiry_and_ttl_index() {
        let mut ks = Keyspace::new(1);
        let (db, st) = ks.db(0);
        db.insert(
            b"a",
            Entry {
                value: Value::Str(Str::from(b"1")),
                expire_at: 100,
            },
        );
        db.insert(b"b", Entry::new(Value::Str(Str::from(b"2"))));
        assert_eq!(db.expires_len(), 1);
        assert!(db.get(b"a", 50, st).is_some());
        assert!(db.get(b"a", 100, st).is_none());
        assert_eq!((db.len(), db.expires_len(), st.expired), (1, 0, 1));
    }

    #[test]
    fn scan_survives_removals() {
        let mut db = Db::default();
        for i in 0..1000 {
            db.insert(
                format!("k{i}").as_bytes(),
                Entry::new(Value::Str(Str::from(&b""[..]))),
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut pos = None;
        let mut round = 0;
        loop {
            let mut out = Vec::new();
            pos = db.scan(pos, 10, 0, &mut out, |_, _| true);
            seen.extend(out);
            // Remove an odd key each round: odd keys may be missed, even must not.
            round += 1;
            db.remove(format!("k{}", (round * 37 % 500) * 2 + 1).as_bytes());
            if pos.is_none() {
                break;
            }
        }
        for i in (0..1000).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
    }

    /// A snapshot armed on a db of several segments, with removals,
    /// overwrites, expiries and new keys between its steps, holds every key
    /// of the cut exactly once, with its value at the cut.
    #[test]
    fn snapshot_is_exact_under_writes() {
        use crate::repl::snapshot::DbSnap;
        use std::collections::HashMap;
        let n = 20_000;
        let mut db = Db::default();
        let val = |i: usize, g: usize| Value::Str(Str::from(format!("v{i}.{g}").as_bytes()));
        for i in 0..n {
            db.insert(format!("k{i}").as_bytes(), Entry::new(val(i, 0)));
        }
        let cut: HashMap<Vec<u8>, Value> = db
            .iter()
            .map(|(k, e)| (k.to_vec(), e.value.clone()))
            .collect();
        db.snap = Some(Box::new(DbSnap::new()));
        let mut body = Vec::new();
        let mut round = 0;
        loop {
            let (bytes, done) = db.snap_take(2000, &mut { usize::MAX }).expect("armed");
            body.extend_from_slice(&bytes);
            if done {
                break;
            }
            round += 1;
            for j in 0..20 {
                let r = fastrand::usize(..n * 2);
                let k = format!("k{r}");
                match j % 4 {
                    0 => {
                        db.remove(k.as_bytes());
                    }
                    1 => db.insert(k.as_bytes(), Entry::new(val(r, round))),
                    2 => {
                        db.set_expire(k.as_bytes(), 1);
                    }
                    _ => {
                        let mut st = KeyspaceStats::default();
                        db.get(k.as_bytes(), 10, &mut st);
                    }
                }
            }
        }
        let mut file = Vec::new();
        crate::rdb::write_header(&mut file, &[] as &[(&str, &str)]);
        file.extend_from_slice(&body);
        crate::rdb::write_footer(&mut file);
        let crc = crate::rdb::Crc64::checksum(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        let got = crate::rdb::load_file(&file).expect("valid RDB");
        assert_eq!(got.len(), cut.len(), "every cut key once");
        for k in got {
            assert_eq!(Some(&k.entry.value), cut.get(&k.key[..]), "{:?}", k.key);
            assert_eq!(k.entry.expire_at, 0);
        }
    }

    #[test]
    fn active_expire_reclaims() {
        let mut ks = Keyspace::new(1);
        let (db, st) = ks.db(0);
        for i in 0..500 {
            db.insert(
                format!("k{i}").as_bytes(),
                Entry {
                    value: Value::Str(Str::from(&b""[..])),
                    expire_at: 10,
                },
            );
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let gone = db.active_expire(20, deadline, st);
        assert_eq!(gone.len(), 500);
        assert!(db.is_empty());
    }
}
