//! Consistent snapshots without fork: the RDB a full sync (or BGSAVE)
//! sends, equal to the dataset at one stream offset while writes go on.
//!
//! **The cut.** The coordinator takes every shard's transaction lock (no
//! write runs anywhere), reads the stream offset X and arms a [`DbSnap`] on
//! every database of every shard, then lets writes go.
//!
//! **Serialise before write.** From then on every keyspace access that may
//! change a key (`Db::get`, `insert`, `remove`, `set_expire`, `clear`) first
//! serialises that key's current value into the snapshot, unless the walk
//! below has passed it or it is in the db's *skip set*. A key nobody
//! touched since the cut still has its value at X, so writing it now is
//! exact; it then goes into the skip set, and so does a key created after
//! the cut, without being written.
//!
//! **The walk.** The coordinator walks each db in the table's walk order
//! (`shard::table`) and writes every entry not in the skip set. Whether
//! the walk has passed a key follows from where the key sits, because
//! entries only move in two ways while a snapshot runs (the table does not
//! split then): a removal moves a segment's last entry into the hole, and
//! when that carries a passed entry to a position the walk has yet to
//! reach, the moved key joins the skip set. Every key present at the cut
//! is so written exactly once, which Redis's loader requires (a duplicate
//! key aborts its load).
//!
//! The skip set holds only keys written or created during the snapshot,
//! not every key: a walk of a million untouched keys costs no set at all.
//! Active expiry pauses on a db being walked; lazy expiry still deletes
//! (after serialising), and its DEL follows in the stream.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use foldhash::fast::RandomState;

use crate::rdb;
use crate::shard::dispatch::Tx;
use crate::shard::key::Key;
use crate::shard::keyspace::Map;
use crate::shard::table::{Pos, WALK_START};
use crate::shard::{Op, OpReply, Shard};

/// Bytes a shard serialises per chunk request.
const CHUNK: usize = 256 << 10;

/// One database's side of a snapshot in progress.
#[derive(Debug)]
pub struct DbSnap {
    /// Keys the walk must not write: written ahead of it, created after
    /// the cut, or moved behind it by a removal.
    done: HashSet<Key, RandomState>,
    /// Serialised entries not yet handed to the coordinator.
    pub out: Vec<u8>,
    /// Where the walk goes on (see `shard::table` for the order).
    cursor: Pos,
    finished: bool,
}

impl Default for DbSnap {
    fn default() -> Self {
        Self::new()
    }
}

impl DbSnap {
    pub fn new() -> Self {
        DbSnap {
            done: HashSet::default(),
            out: Vec::new(),
            cursor: WALK_START,
            finished: false,
        }
    }

    /// Called before `key` may change: writes its current value unless the
    /// walk has passed it or it is in the skip set.
    pub fn before_write(&mut self, key: &[u8], map: &Map) {
        if self.finished || self.done.contains(key) {
            return;
        }
        match map.locate(key) {
            Some(loc) if map.walked(self.cursor, loc) => {}
            Some(loc) => {
                rdb::write_entry(&mut self.out, key, map.at(loc));
                self.done.insert(Key::new(key));
            }
            None => {
                self.done.insert(Key::new(key));
            }
        }
    }

    /// Called after the entry at `loc` was removed: the segment's last
    /// entry now fills `loc`; if the walk had passed it but not `loc`, the
    /// walk would meet it again, so it joins the skip set.
    pub fn after_remove(&mut self, map: &Map, loc: (usize, usize)) {
        if self.finished || map.walked(self.cursor, loc) {
            return;
        }
        let Some(moved) = map.key_at(loc) else {
            return; // the removed entry was the last one
        };
        if map.walked_old_last(self.cursor, loc.0) {
            self.done.insert(moved.clone());
        }
    }

    /// Walks on until `out` holds `budget` bytes or the db is done.
    /// Returns whether the walk has finished.
    /// Walks on until `budget` bytes are out or `max_keys` (counted down)
    /// keys written; returns whether the walk is complete.
    pub fn step(&mut self, map: &Map, budget: usize, max_keys: &mut usize) -> bool {
        while !self.finished && self.out.len() < budget && *max_keys > 0 {
            let Some((next, k, e)) = map.walk(self.cursor) else {
                self.finished = true;
                drop_elsewhere(std::mem::take(&mut self.done));
                break;
            };
            self.cursor = next;
            if self.done.is_empty() || !self.done.contains(k.as_bytes()) {
                rdb::write_entry(&mut self.out, k.as_bytes(), e);
                *max_keys -= 1;
            }
        }
        self.finished
    }

    /// Completes the walk at once (FLUSHDB/SWAPDB during a snapshot).
    pub fn finish(&mut self, map: &Map) {
        self.step(map, usize::MAX, &mut { usize::MAX });
    }
}

impl Drop for DbSnap {
    fn drop(&mut self) {
        drop_elsewhere(std::mem::take(&mut self.done));
    }
}

/// Frees a big done-set on a short-lived thread: freeing a million keys
/// takes milliseconds the shard should spend on its clients.
fn drop_elsewhere(done: HashSet<Key, RandomState>) {
    if done.capacity() > 16 << 10 {
        std::thread::spawn(move || drop(done));
    }
}

/// A shard's progress through its part.
#[derive(Debug, Default)]
pub struct ShardProgress {
    db: usize,
    /// The db whose SELECTDB was written last.
    selected: Option<usize>,
}

/// Arms the snapshot on this shard (under the cut's locks).
pub fn shard_begin(shard: &Shard) {
    let mut ks = shard.ks.borrow_mut();
    let active = shard.shared.repl.active.load(Ordering::SeqCst);
    for db in ks.dbs.iter_mut() {
        db.snap = Some(Box::new(DbSnap::new()));
        if active && db.expired_log.is_none() {
            db.expired_log = Some(Vec::new());
        }
    }
    *shard.snap_progress.borrow_mut() = Some(ShardProgress::default());
}

/// Serialises up to about [`CHUNK`] bytes of this shard's part. Returns the
/// bytes and whether the part is complete.
pub fn shard_chunk(shard: &Shard, mut max_keys: usize) -> (Vec<u8>, bool) {
    let mut ks = shard.ks.borrow_mut();
    let mut prog = shard.snap_progress.borrow_mut();
    let Some(p) = prog.as_mut() else {
        return (Vec::new(), true);
    };
    let mut out = Vec::new();
    while p.db < ks.dbs.len() && out.len() < CHUNK && max_keys > 0 {
        let d = &mut ks.dbs[p.db];
        let (len, expires) = (d.len() as u64, d.expires_len() as u64);
        let Some((bytes, finished)) = d.snap_take(CHUNK - out.len(), &mut max_keys) else {
            p.db += 1;
            continue;
        };
        if !bytes.is_empty() {
            if p.selected != Some(p.db) {
                rdb::write_select_db(&mut out, p.db as u64, len, expires);
                p.selected = Some(p.db);
            }
            out.extend_from_slice(&bytes);
        }
        if finished {
            p.db += 1;
        }
    }
    let done = p.db >= ks.dbs.len();
    if done {
        *prog = None;
    }
    (out, done)
}

/// Drops whatever is left of a snapshot on this shard (finished or not).
pub fn shard_end(shard: &Shard) {
    let mut ks = shard.ks.borrow_mut();
    for db in ks.dbs.iter_mut() {
        db.snap = None;
    }
    *shard.snap_progress.borrow_mut() = None;
}

/// What a snapshot is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A full sync: the stream starts (if it has not yet) at the cut.
    Replication,
    /// A full sync whose replica asked for no keys (`rdb-filter-only`):
    /// the RDB's header and end only, at the cut.
    ReplicationNoData,
    /// SAVE / BGSAVE.
    Persistence,
}

enum Stage {
    Header,
    Shard(usize),
    Footer,
    Done,
}

/// Locks `shards` at a point the data and the replication offset agree:
/// on a replica, between two applied batches of its master's stream (the
/// apply loop holds back while `cut_pending` is up), so the offset read
/// under the lock counts exactly what the data holds.
pub async fn lock_at_cut(shard: &Rc<Shard>, shards: &[usize]) -> Tx {
    let repl = &shard.shared.repl;
    repl.cut_pending.store(true, Ordering::SeqCst);
    while repl.applying.load(Ordering::SeqCst) {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    let tx = Tx::lock(shard, shards).await;
    repl.cut_pending.store(false, Ordering::SeqCst);
    tx
}

/// A snapshot being produced; see the module doc. Pull its bytes with
/// [`Snapshot::next`] and always finish with [`Snapshot::end`].
pub struct Snapshot {
    /// The stream offset the snapshot is equal to.
    pub offset: u64,
    pub replid: String,
    /// The stream's db at the cut, for the header's replication fields
    /// (`None`: the header has none).
    stream_db: Option<i64>,
    /// The keys are written (else the header and the end only).
    data: bool,
    stage: Stage,
    crc: rdb::Crc64,
    /// Bytes produced so far.
    pub produced: u64,
}

impl Snapshot {
    /// Takes the cut. Waits while another snapshot is running.
    pub async fn begin(shard: &Rc<Shard>, purpose: Purpose) -> Snapshot {
        let repl = &shard.shared.repl;
        while repl
            .snapshot_busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        let all: Vec<usize> = (0..shard.nshards()).collect();
        let tx = lock_at_cut(shard, &all).await;
        let data = purpose != Purpose::ReplicationNoData;
        if purpose != Purpose::Persistence {
            repl.activate();
            // The new replica has no selected db yet.
            repl.seq.force_select();
        }
        let offset = repl.seq.offset();
        let replid = repl.ids().replid;
        // A full sync always carries the position; a saved file only when
        // there is a stream history to resume (`Repl::save_info`).
        let stream_db = (purpose != Purpose::Persistence || repl.backlog_on.load(Ordering::SeqCst))
            .then(|| repl.stream_db_at_cut());
        if data {
            for s in all {
                tx.op(shard, s, Op::SnapBegin).await;
            }
        }
        tx.unlock(shard).await;
        Snapshot {
            offset,
            replid,
            stream_db,
            data,
            stage: Stage::Header,
            crc: rdb::Crc64::new(),
            produced: 0,
        }
    }

    /// The next piece of the RDB file, `None` after the checksum.
    pub async fn next(&mut self, shard: &Rc<Shard>) -> Option<Bytes> {
        loop {
            let bytes = match self.stage {
                Stage::Header => {
                    let info = self.stream_db.map(|stream_db| rdb::ReplInfo {
                        stream_db,
                        repl_id: self.replid.clone(),
                        offset: self.offset as i64,
                    });
                    let aux = rdb::default_aux(crate::shard::now_ms() / 1000, 0, info.as_ref());
                    let mut out = Vec::new();
                    rdb::write_header(&mut out, &aux);
                    self.stage = if self.data {
                        Stage::Shard(0)
                    } else {
                        Stage::Footer
                    };
                    out
                }
                Stage::Shard(s) => {
                    // `rdb-key-save-delay` (a testing knob, as in Redis):
                    // one key per chunk and a pause after it. The pause is
                    // this task's; the shards serve their clients meanwhile,
                    // as Redis's forked child sleeps, not its server.
                    let delay = shard
                        .shared
                        .config()
                        .get_int("rdb-key-save-delay")
                        .unwrap_or(0);
                    let max_keys = if delay == 0 { usize::MAX } else { 1 };
                    let (out, done) = match crate::shard::dispatch::op_on(
                        shard,
                        None,
                        s,
                        Op::SnapChunk { max_keys },
                    )
                    .await
                    {
                        OpReply::Chunk { bytes, done } => (bytes, done),
                        other => unreachable!("snapshot chunk answered {other:?}"),
                    };
                    if delay != 0 && !out.is_empty() {
                        glommio::timer::sleep(if delay > 0 {
                            std::time::Duration::from_micros(delay as u64)
                        } else {
                            std::time::Duration::from_nanos(delay.unsigned_abs())
                        })
                        .await;
                    }
                    if done {
                        self.stage = if s + 1 < shard.nshards() {
                            Stage::Shard(s + 1)
                        } else {
                            Stage::Footer
                        };
                    }
                    if out.is_empty() {
                        continue;
                    }
                    out
                }
                Stage::Footer => {
                    let mut out = Vec::new();
                    rdb::write_footer(&mut out);
                    self.crc.update(&out);
                    let crc = std::mem::take(&mut self.crc).finish();
                    out.extend_from_slice(&crc.to_le_bytes());
                    self.stage = Stage::Done;
                    self.produced += out.len() as u64;
                    return Some(Bytes::from(out));
                }
                Stage::Done => return None,
            };
            self.crc.update(&bytes);
            self.produced += bytes.len() as u64;
            return Some(Bytes::from(bytes));
        }
    }

    /// Releases the snapshot on every shard (also when abandoned midway).
    pub async fn end(self, shard: &Rc<Shard>) {
        crate::shard::dispatch::on_all_locked(shard, None, || Op::SnapEnd).await;
        shard
            .shared
            .repl
            .snapshot_busy
            .store(false, Ordering::SeqCst);
    }

    /// Produces the whole file (SAVE, BGSAVE, `$len` framing).
    pub async fn collect(mut self, shard: &Rc<Shard>) -> (Vec<u8>, u64) {
        let mut all = Vec::new();
        while let Some(b) = self.next(shard).await {
            all.extend_from_slice(&b);
        }
        let off = self.offset;
        self.end(shard).await;
        (all, off)
    }
}
