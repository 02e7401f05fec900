//! Replication, master side: one logical PSYNC stream built from per-shard
//! backlogs.
//!
//! - **Sequencer.** One `AtomicU64` packs the next stream offset (high 48
//!   bits) and the database of the last entry (low 16 bits, `NO_DB` =
//!   unknown, which forces a SELECT). A shard that applies a write takes its
//!   byte range with one compare-and-swap in the same synchronous step, so
//!   offsets are dense, per-key order in the stream is execution order, and
//!   a `SELECT db` is counted exactly when the database differs from the
//!   previous entry's.
//! - **Backlogs.** Each shard keeps its own entries `(offset, SELECT?, RESP
//!   bytes)` in a ring, behind a mutex only its replica senders ever contend
//!   for. The ring's budget is `repl-backlog-size / shards`; a shard never
//!   trims below the offset a connected replica still needs (Redis 7.0's
//!   shared replication buffer: the output-buffer limit, not the backlog
//!   size, bounds a slow replica).
//! - **Merge.** A replica's sender pulls entries at or after its position
//!   from every shard and emits them in offset order; an offset that is
//!   allocated but not yet pushed is a gap, and a gap only means "wait".
//!   A partial resync from X is possible when no shard has trimmed past X.
//!
//! Nothing is propagated, and the offset does not move, until the first
//! replica attaches (as Redis, which has no backlog before that): the
//! activation happens at the first full sync's cut, under every shard's
//! transaction lock.

pub mod failover;
pub mod master;
pub mod replica;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

/// "No database yet": the next entry gets a SELECT whatever its db.
pub const NO_DB: u16 = 0xFFFF;
/// Lag samples kept (one per millisecond at most).
const SAMPLES: usize = 8192;

/// The global offset allocator; see the module doc.
pub struct Sequencer(AtomicU64);

impl Sequencer {
    fn new() -> Self {
        Sequencer(AtomicU64::new(NO_DB as u64))
    }

    /// The next offset: `master_repl_offset`.
    pub fn offset(&self) -> u64 {
        self.0.load(Ordering::SeqCst) >> 16
    }

    /// Takes `body_len` bytes (plus a SELECT when the previous entry's db
    /// differs from `db`) for an entry that leaves the stream in `end_db`.
    /// Returns the entry's offset and whether it starts with a SELECT.
    pub fn alloc(&self, db: u16, body_len: u64, end_db: u16) -> (u64, bool) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (off, last) = (cur >> 16, (cur & 0xFFFF) as u16);
            let sel = last != db;
            let len = body_len + if sel { select_len(db) as u64 } else { 0 };
            let next = ((off + len) << 16) | end_db as u64;
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return (off, sel),
                Err(c) => cur = c,
            }
        }
    }

    /// Takes `len` bytes for an entry that needs no database (PING,
    /// REPLCONF GETACK): no SELECT, the current db stays.
    pub fn alloc_nodb(&self, len: u64) -> u64 {
        self.0.fetch_add(len << 16, Ordering::SeqCst) >> 16
    }

    /// Forgets the current db so the next entry starts with a SELECT (a
    /// replica that just loaded a snapshot has no selected db yet).
    pub fn force_select(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v | NO_DB as u64)
            });
    }
}

/// One stream entry in a shard's backlog.
#[derive(Clone, Debug)]
pub struct BEntry {
    pub off: u64,
    /// A `SELECT db` precedes the body in the stream.
    pub select: Option<u16>,
    pub body: Bytes,
}

impl BEntry {
    pub fn len(&self) -> u64 {
        self.select.map_or(0, |d| select_len(d) as u64) + self.body.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the entry's bytes as they go on the wire.
    pub fn write_to(&self, out: &mut BytesMut) {
        if let Some(db) = self.select {
            write_select(out, db);
        }
        out.extend_from_slice(&self.body);
    }
}

/// Entries a backlog ring keeps room for however empty it is.
const MIN_RING: usize = 1024;

/// One shard's ring of entries, in offset order.
#[derive(Default)]
pub struct Backlog {
    pub entries: VecDeque<BEntry>,
    pub bytes: u64,
    /// This shard may lack entries below this offset.
    pub trimmed_to: u64,
}

impl Backlog {
    /// Appends `e` and trims the oldest entries beyond `cap` bytes, never
    /// past `keep` (the lowest offset a connected replica still needs).
    fn push(&mut self, e: BEntry, cap: u64, keep: u64) {
        self.bytes += e.len();
        self.entries.push_back(e);
        while self.bytes > cap {
            let Some(f) = self.entries.front() else { break };
            let end = f.off + f.len();
            if end > keep {
                break;
            }
            self.bytes -= f.len();
            self.trimmed_to = end;
            self.entries.pop_front();
        }
        // A replica that lagged (or a full sync) held the ring long, and a
        // VecDeque never gives capacity back: 48 bytes per entry it once
        // held would stay allocated for good (a minute's lag at 1M writes/s
        // in batches of 16 is 180 MB), and pushes would walk the whole
        // grown ring. Give the room back once the ring is mostly empty.
        let cap = self.entries.capacity();
        if cap > MIN_RING && self.entries.len() * 4 < cap {
            self.entries
                .shrink_to((self.entries.len() * 2).max(MIN_RING));
        }
    }

    /// Clones the entries that end after `from` (at most `max_bytes`
    /// worth, at least one) into `out`. The first may start before `from`:
    /// a replica's offset can fall inside an entry (a batch of writes, or
    /// a chunk of a master's stream a replica copied verbatim).
    pub fn read_from(&self, from: u64, max_bytes: u64, out: &mut Vec<BEntry>) {
        let start = self.entries.partition_point(|e| e.off + e.len() <= from);
        let mut taken = 0;
        for e in self.entries.range(start..) {
            if taken >= max_bytes {
                break;
            }
            taken += e.len();
            out.push(e.clone());
        }
    }
}

/// Replication ids (`shiftReplicationId` keeps the old one as replid2).
#[derive(Clone, Debug)]
pub struct ReplIds {
    pub replid: String,
    pub replid2: String,
    /// Offset+1 up to which replid2 is valid; -1 when none.
    pub second_offset: i64,
}

impl ReplIds {
    /// A new history `id` with no secondary one (Redis's
    /// `clearReplicationId2`).
    pub fn start(&mut self, id: String) {
        self.replid = id;
        self.replid2 = "0".repeat(40);
        self.second_offset = -1;
    }
}

/// What INFO, ROLE, WAIT and min-replicas see of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaView {
    pub ip: String,
    pub port: u16,
    /// "wait_bgsave", "send_bulk" or "online".
    pub state: &'static str,
    pub ack_off: u64,
    /// Unix ms of the last ACK (or `\n` while loading).
    pub ack_ms: u64,
    pub lag_ms: u64,
    /// Unix ms it asked to sync (for `repl-diskless-sync-delay`).
    pub since_ms: u64,
    /// Its full sync can share another's snapshot: EOF framing, keys
    /// wanted, a regular replica (`net::replica::SharedSync`).
    pub shareable: bool,
}

/// Process-wide replication state.
pub struct Repl {
    pub seq: Sequencer,
    /// Shards propagate their own writes (a master with a backlog).
    pub active: AtomicBool,
    /// A backlog exists (a master's, or a replica's copy of its master's
    /// stream): PSYNC can continue from it.
    pub backlog_on: AtomicBool,
    /// We follow a master (REPLICAOF host port).
    pub is_replica: AtomicBool,
    /// Bumped by every REPLICAOF: a link task of an older epoch stops.
    pub epoch: AtomicU64,
    pub master: Mutex<Option<replica::MasterInfo>>,
    /// A snapshot wants its cut: the replica's stream pauses between
    /// batches (`applying` says one is half applied).
    pub cut_pending: AtomicBool,
    pub applying: AtomicBool,
    /// The db our applied master stream is in (a replica's snapshots tell
    /// their own replicas through the RDB's `repl-stream-db`).
    pub stream_db: std::sync::atomic::AtomicI64,
    /// CLIENT KILL TYPE master: the link drops and reconnects.
    pub kill_master: AtomicBool,
    pub ids: Mutex<ReplIds>,
    pub backlogs: Vec<Mutex<Backlog>>,
    /// Per shard: the lowest offset its replicas still need (u64::MAX none).
    pub hold: Vec<AtomicU64>,
    /// Per shard: the eventfd that wakes its driver, and whether a sender
    /// there is waiting for new entries.
    pub wake_fd: Vec<AtomicI32>,
    pub want_wake: Vec<AtomicBool>,
    /// Per shard: WAIT calls blocked there, and whether an ACK came in for
    /// them that the shard's driver has not announced yet (see
    /// [`Repl::wake_waits`]).
    pub ack_waiters: Vec<AtomicU32>,
    pub ack_kick: Vec<AtomicBool>,
    /// Where the last `REPLCONF GETACK *` starts in the stream: WAITs for
    /// offsets up to there share it instead of each adding its own.
    pub getack_at: AtomicU64,
    pub replicas: Mutex<std::collections::HashMap<u64, ReplicaView>>,
    /// Replicas that acked within min-replicas-max-lag (replicationCron).
    pub good_replicas: AtomicU64,
    pub min_to_write: AtomicU64,
    /// `min-replicas-max-lag`, seconds.
    pub max_lag: AtomicU64,
    /// One snapshot (full sync or BGSAVE) at a time.
    pub snapshot_busy: AtomicBool,
    pub sync_full: AtomicU64,
    /// Bytes read from our master, snapshots included (INFO
    /// `total_net_repl_input_bytes`).
    pub net_input_bytes: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// (offset, unix ms) samples: when the stream reached each offset.
    samples: Mutex<VecDeque<(u64, u64)>>,
    last_sample_ms: AtomicU64,
    /// Unix ms of the last PING put into the stream; the start time at
    /// first, so PINGs come a period apart from the start, as in Redis.
    pub last_ping_ms: AtomicU64,
    /// Unix ms since when a master has had no replica (0 while it has
    /// some), for `repl-backlog-ttl`.
    pub no_replicas_since_ms: AtomicU64,
    /// The FAILOVER under way, if any.
    pub failover: Mutex<failover::Failover>,
    /// The full-sync snapshot replicas waiting together share, while it
    /// is being produced (`net::replica::SharedSync`).
    pub shared_sync: Mutex<Option<std::sync::Arc<crate::net::replica::SharedSync>>>,
}

impl Repl {
    pub fn new(nshards: usize) -> Self {
        Repl {
            seq: Sequencer::new(),
            active: AtomicBool::new(false),
            backlog_on: AtomicBool::new(false),
            is_replica: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            master: Mutex::new(None),
            cut_pending: AtomicBool::new(false),
            applying: AtomicBool::new(false),
            stream_db: std::sync::atomic::AtomicI64::new(0),
            kill_master: AtomicBool::new(false),
            ids: Mutex::new(ReplIds {
                replid: random_id(),
                replid2: "0".repeat(40),
                second_offset: -1,
            }),
            backlogs: (0..nshards)
                .map(|_| Mutex::new(Backlog::default()))
                .collect(),
            hold: (0..nshards).map(|_| AtomicU64::new(u64::MAX)).collect(),
            wake_fd: (0..nshards).map(|_| AtomicI32::new(-1)).collect(),
            want_wake: (0..nshards).map(|_| AtomicBool::new(false)).collect(),
            ack_waiters: (0..nshards).map(|_| AtomicU32::new(0)).collect(),
            ack_kick: (0..nshards).map(|_| AtomicBool::new(false)).collect(),
            getack_at: AtomicU64::new(0),
            replicas: Mutex::new(Default::default()),
            good_replicas: AtomicU64::new(0),
            min_to_write: AtomicU64::new(0),
            max_lag: AtomicU64::new(10),
            snapshot_busy: AtomicBool::new(false),
            sync_full: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            last_sample_ms: AtomicU64::new(0),
            last_ping_ms: AtomicU64::new(crate::shard::now_ms()),
            no_replicas_since_ms: AtomicU64::new(crate::shard::now_ms()),
            failover: Mutex::new(failover::Failover::default()),
            shared_sync: Mutex::new(None),
        }
    }

    pub fn ids(&self) -> ReplIds {
        lock(&self.ids).clone()
    }

    /// Bytes the backlogs hold, all shards (INFO's `mem_replication_backlog`).
    pub fn backlog_bytes(&self) -> u64 {
        self.backlogs.iter().map(|b| lock(b).bytes).sum()
    }

    /// The first offset every shard still holds (`repl_backlog_first_byte_offset` - 1).
    pub fn first_offset(&self) -> u64 {
        self.backlogs
            .iter()
            .map(|b| lock(b).trimmed_to)
            .max()
            .unwrap_or(0)
    }

    /// Lowest offset any connected replica still needs.
    pub(crate) fn keep(&self) -> u64 {
        self.hold
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Appends an entry for shard `shard` (already sequenced by the caller
    /// in the same synchronous step) and wakes waiting senders on other
    /// shards. Returns whether a sender on `shard` itself waits: the caller
    /// wakes its own driver without a syscall.
    pub fn push(&self, shard: usize, e: BEntry, cap: u64, now_ms: u64) -> bool {
        let end = e.off + e.len();
        lock(&self.backlogs[shard]).push(e, cap, self.keep());
        if self.last_sample_ms.load(Ordering::Relaxed) < now_ms {
            self.last_sample_ms.store(now_ms, Ordering::Relaxed);
            let mut s = lock(&self.samples);
            if s.len() == SAMPLES {
                s.pop_front();
            }
            // Shards push in parallel: keep the samples sorted by offset.
            let end = s.back().map_or(end, |&(e, _)| e.max(end));
            s.push_back((end, now_ms));
        }
        self.wake_senders(shard)
    }

    /// Wakes every other shard whose sender asked for it (one eventfd write
    /// each); returns whether `me`'s own sender asked.
    pub fn wake_senders(&self, me: usize) -> bool {
        let mut mine = false;
        for (i, w) in self.want_wake.iter().enumerate() {
            if w.load(Ordering::SeqCst) && w.swap(false, Ordering::SeqCst) {
                if i == me {
                    mine = true;
                } else {
                    self.wake_driver(i);
                }
            }
        }
        mine
    }

    /// Something blocked WAITs wait on changed, already stored by the
    /// caller: a replica's acknowledged offset (under `replicas`), or our
    /// role (`is_replica`). Every other shard with blocked WAITs gets its
    /// `ack_kick` set and its driver woken, which rings the shard's
    /// `acks` bell. Returns whether `me` has blocked WAITs of its own.
    ///
    /// No WAIT can miss this: it counts itself in `ack_waiters` before
    /// reading that state, and this reads `ack_waiters` after it was
    /// stored; the fences on both sides make at least one see the other.
    pub fn wake_waits(&self, me: usize) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut mine = false;
        for (i, n) in self.ack_waiters.iter().enumerate() {
            if n.load(Ordering::SeqCst) == 0 {
                continue;
            }
            if i == me {
                mine = true;
            } else {
                self.ack_kick[i].store(true, Ordering::SeqCst);
                self.wake_driver(i);
            }
        }
        mine
    }

    /// Has every other shard's driver ring its `acks` bell (the caller
    /// rings its own): the role changed, and every blocked client must
    /// look (`ack_kick` plus a wake, as [`Repl::wake_waits`] does for the
    /// shards with WAITs). Call after storing the change.
    pub fn ring_all(&self, me: usize) {
        std::sync::atomic::fence(Ordering::SeqCst);
        for i in (0..self.ack_kick.len()).filter(|&i| i != me) {
            self.ack_kick[i].store(true, Ordering::SeqCst);
            self.wake_driver(i);
        }
    }

    /// One eventfd write: shard `i`'s driver runs a turn.
    pub fn wake_driver(&self, i: usize) {
        let fd = self.wake_fd[i].load(Ordering::Relaxed);
        if fd >= 0 {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to the shard's eventfd.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }

    /// Online replicas that acknowledged at least `offset`
    /// (`replicationCountAcksByOffset`).
    pub fn count_acked(&self, offset: u64) -> i64 {
        lock(&self.replicas)
            .values()
            .filter(|v| v.state == "online" && v.ack_off >= offset)
            .count() as i64
    }

    /// Milliseconds since the stream first went past `acked`: how far in
    /// time a replica that acknowledged `acked` is behind (0 when caught up).
    pub fn lag_ms(&self, acked: u64, now_ms: u64) -> u64 {
        if acked >= self.seq.offset() {
            return 0;
        }
        let s = lock(&self.samples);
        // A sample is taken by the first append of each millisecond. The
        // first sample whose end lies beyond `acked` marks when the first
        // unacknowledged byte was written (to sample resolution); with none
        // beyond it, that byte came later in the last sample's millisecond.
        let i = s.partition_point(|&(end, _)| end <= acked);
        match s.get(i).or(s.back()) {
            Some(&(_, t)) => now_ms.saturating_sub(t),
            None => 0,
        }
    }

    /// Starts the stream at the current offset: every shard's backlog is
    /// empty and complete from here. Called under every shard's lock.
    pub fn activate(&self) {
        if !self.backlog_on.load(Ordering::SeqCst) {
            self.reset_backlog(self.seq.offset());
        }
        if !self.is_replica.load(Ordering::SeqCst) {
            self.active.store(true, Ordering::SeqCst);
        }
    }

    /// `repl-backlog-ttl`: a master with no replica for that long frees its
    /// backlog and stops feeding it, as Redis's `replicationCron`; it takes
    /// a new replication id (and drops the old pair), because its offset
    /// no longer moves with its writes, so no one may continue the old
    /// history. The next replica starts it again, with a full sync.
    pub fn free_backlog(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.backlog_on.store(false, Ordering::SeqCst);
        for b in &self.backlogs {
            let mut b = lock(b);
            b.entries.clear();
            b.bytes = 0;
        }
        lock(&self.ids).start(random_id());
    }

    /// Our history becomes `id` from `off` on, with an empty backlog there
    /// (a replica after a full sync, or restarted from its RDB).
    pub fn adopt_history(&self, id: String, off: u64) {
        lock(&self.ids).start(id);
        self.reset_backlog(off);
    }

    /// Empties every backlog and restarts the stream at `off` (a replica
    /// after a full sync takes its master's offset).
    pub fn reset_backlog(&self, off: u64) {
        for b in &self.backlogs {
            let mut b = lock(b);
            b.entries.clear();
            b.bytes = 0;
            b.trimmed_to = off;
        }
        self.seq
            .0
            .store((off << 16) | NO_DB as u64, Ordering::SeqCst);
        self.backlog_on.store(true, Ordering::SeqCst);
    }

    /// The db a snapshot taken now records as the stream's: a replica's
    /// stream goes on verbatim in whatever db its master selected; a
    /// master forces a SELECT after any cut, so 0 serves.
    pub fn stream_db_at_cut(&self) -> i64 {
        if self.is_replica.load(Ordering::SeqCst) {
            self.stream_db.load(Ordering::SeqCst)
        } else {
            0
        }
    }

    /// The replication fields of an RDB saved now (Redis's
    /// `rdbPopulateSaveInfo`): where in the stream the data is, so that a
    /// restart from the file resumes the history by PSYNC, as a replica
    /// (its link offers id and offset) or as a master (its replicas
    /// continue through the id kept as `replid2`). None without a stream
    /// history (no backlog). Call at a cut.
    pub fn save_info(&self) -> Option<crate::rdb::ReplInfo> {
        self.backlog_on
            .load(Ordering::SeqCst)
            .then(|| crate::rdb::ReplInfo {
                stream_db: self.stream_db_at_cut(),
                repl_id: self.ids().replid,
                offset: self.seq.offset() as i64,
            })
    }

    pub fn replicas_empty(&self) -> bool {
        lock(&self.replicas).is_empty()
    }

    /// Whether writes must be refused (min-replicas-to-write).
    pub fn refuse_writes(&self) -> bool {
        if self.is_replica.load(Ordering::Relaxed) {
            return false;
        }
        let min = self.min_to_write.load(Ordering::Relaxed);
        // The cached count is refreshed by the cron; only a refusal pays
        // for an exact recount (a replica may have come online since).
        min > 0 && self.good_replicas.load(Ordering::Relaxed) < min && self.recount_good() < min
    }

    /// Replicas online whose last ACK is within min-replicas-max-lag
    /// (Redis's `refreshGoodSlavesCount`).
    pub fn recount_good(&self) -> u64 {
        let now = crate::shard::now_ms();
        let max_lag = self.max_lag.load(Ordering::Relaxed);
        let good = lock(&self.replicas)
            .values()
            .filter(|v| v.state == "online" && now.saturating_sub(v.ack_ms) <= max_lag * 1000)
            .count() as u64;
        self.good_replicas.store(good, Ordering::Relaxed);
        good
    }
}

/// A poisoned lock only means another shard panicked; the data is still
/// consistent for our uses (plain counters and rings).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// 40 random hex characters, as Redis's `getRandomHexChars`.
pub fn random_id() -> String {
    (0..40)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap())
        .collect()
}

fn digits(n: u64) -> usize {
    let mut b = itoa::Buffer::new();
    b.format(n).len()
}

/// Bytes of `*2\r\n$6\r\nSELECT\r\n$<n>\r\n<db>\r\n`.
pub fn select_len(db: u16) -> usize {
    let d = digits(db as u64);
    4 + 4 + 8 + 1 + digits(d as u64) + 2 + d + 2
}

pub fn write_select(out: &mut BytesMut, db: u16) {
    let mut b = itoa::Buffer::new();
    let s = b.format(db);
    out.extend_from_slice(b"*2\r\n$6\r\nSELECT\r\n$");
    let mut l = itoa::Buffer::new();
    out.extend_from_slice(l.format(s.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `args` as a RESP multibulk, the form commands take in the stream.
///
/// Every replicated write passes through here, so it reserves once and
/// writes through a cursor: the headers and CRLFs of a short command are a
/// few plain stores, and an argument of up to 16 bytes is two overlapping
/// moves (8, 4 or 2 bytes wide), where `extend_from_slice` paid a capacity
/// check and a `memcpy` call for each of a SET's ten pieces.
pub fn encode_cmd<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    // "*<n>\r\n" and per argument "$<len>\r\n...\r\n": 20 digits at most.
    let need = 23 + args.iter().map(|a| a.as_ref().len() + 25).sum::<usize>();
    out.reserve(need);
    let spare = out.spare_capacity_mut();
    assert!(spare.len() >= need);
    let mut w = Cursor {
        p: spare.as_mut_ptr().cast::<u8>(),
        at: 0,
    };
    // SAFETY: `need` bounds every byte written below (asserted above); the
    // cursor only writes, inside `spare`.
    unsafe {
        w.byte(b'*');
        w.num(args.len());
        w.crlf();
        for a in args {
            let a = a.as_ref();
            w.byte(b'$');
            w.num(a.len());
            w.crlf();
            w.bytes(a);
            w.crlf();
        }
        debug_assert!(w.at <= need);
        let len = out.len() + w.at;
        out.set_len(len);
    }
}

/// A write cursor over reserved, possibly uninitialised, bytes.
struct Cursor {
    p: *mut u8,
    at: usize,
}

impl Cursor {
    #[inline(always)]
    unsafe fn byte(&mut self, b: u8) {
        unsafe { self.p.add(self.at).write(b) };
        self.at += 1;
    }

    #[inline(always)]
    unsafe fn crlf(&mut self) {
        unsafe {
            self.p
                .add(self.at)
                .cast::<[u8; 2]>()
                .write_unaligned(*b"\r\n")
        };
        self.at += 2;
    }

    #[inline(always)]
    unsafe fn num(&mut self, n: usize) {
        if n < 10 {
            unsafe { self.byte(b'0' + n as u8) };
        } else if n < 100 {
            let d = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
            unsafe { self.p.add(self.at).cast::<[u8; 2]>().write_unaligned(d) };
            self.at += 2;
        } else {
            let mut b = itoa::Buffer::new();
            unsafe { self.bytes(b.format(n).as_bytes()) };
        }
    }

    #[inline(always)]
    unsafe fn bytes(&mut self, s: &[u8]) {
        let n = s.len();
        let dst = unsafe { self.p.add(self.at) };
        let src = s.as_ptr();
        // SAFETY (all arms): reads stay inside `s`, writes inside the
        // reservation the caller sized for `s`.
        unsafe {
            // Up to 16 bytes: two moves of the largest width that fits,
            // overlapping in the middle (no call, whatever the length).
            if n > 16 {
                std::ptr::copy_nonoverlapping(src, dst, n);
            } else if n >= 8 {
                let head = src.cast::<u64>().read_unaligned();
                let tail = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(head);
                dst.add(n - 8).cast::<u64>().write_unaligned(tail);
            } else if n >= 4 {
                let head = src.cast::<u32>().read_unaligned();
                let tail = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(head);
                dst.add(n - 4).cast::<u32>().write_unaligned(tail);
            } else if n >= 2 {
                let head = src.cast::<u16>().read_unaligned();
                let tail = src.add(n - 2).cast::<u16>().read_unaligned();
                dst.cast::<u16>().write_unaligned(head);
                dst.add(n - 2).cast::<u16>().write_unaligned(tail);
            } else if n == 1 {
                dst.write(*src);
            }
        }
        self.at += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor encoder against the plain one, on argument lengths
    /// around every copy path's edges (0, 1, 2-3, 4-7 and 8-16 bytes in
    /// overlapping moves, longer ones copied) and length digits (1, 2, 3+).
    #[test]
    fn encode_cmd_matches_plain_resp() {
        fn plain(args: &[Vec<u8>]) -> Vec<u8> {
            let mut v = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                v.extend_from_slice(a);
                v.extend_from_slice(b"\r\n");
            }
            v
        }
        let lens = [
            0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 99, 100, 101, 1000, 70_000,
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut out = BytesMut::new();
        let mut want = Vec::new();
        for round in 0..2000 {
            let n = if round == 0 { 0 } else { rng.usize(1..12) };
            let args: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = lens[rng.usize(..lens.len())];
                    (0..len).map(|_| rng.u8(..)).collect()
                })
                .collect();
            encode_cmd(&mut out, &args);
            want.extend_from_slice(&plain(&args));
        }
        assert!(out[..] == want[..]);
        // A hundred-odd arguments: a three-digit count.
        let many: Vec<Vec<u8>> = (0..123).map(|i| vec![b'a'; i]).collect();
        let mut one = BytesMut::new();
        encode_cmd(&mut one, &many);
        assert_eq!(&one[..], &plain(&many)[..]);
    }

    #[test]
    fn select_len_matches_encoding() {
        for db in [0u16, 9, 10, 15, 99, 100, 1000, 65534] {
            let mut b = BytesMut::new();
            write_select(&mut b, db);
            assert_eq!(b.len(), select_len(db), "db {db}");
        }
    }

    #[test]
    fn sequencer_counts_selects() {
        let s = Sequencer::new();
        let (o, sel) = s.alloc(0, 10, 0);
        assert_eq!((o, sel), (0, true));
        let (o, sel) = s.alloc(0, 10, 0);
        assert_eq!((o, sel), (10 + select_len(0) as u64, false));
        let (_, sel) = s.alloc(3, 10, 3);
        assert!(sel);
        assert_eq!(s.offset(), 30 + 2 * select_len(0) as u64);
        s.force_select();
        assert!(s.alloc(3, 1, 3).1);
    }

    /// A replica that acked everything but the last append of a
    /// millisecond (a GETACK answered with the offset before it) is as far
    /// behind as that millisecond, not as the oldest sample kept.
    #[test]
    fn lag_ms_of_an_append_after_the_last_sample() {
        let r = Repl::new(1);
        let at = |len: u64, now: u64| {
            let off = r.seq.alloc_nodb(len);
            let e = BEntry {
                off,
                select: None,
                body: Bytes::from(vec![b'x'; len as usize]),
            };
            r.push(0, e, 1 << 20, now);
            off + len
        };
        at(10, 1_000);
        let mid = at(10, 2_000);
        let before_last = at(10, 5_000);
        at(10, 5_000); // same millisecond: no sample of its own
        assert_eq!(r.lag_ms(before_last, 5_003), 3);
        assert_eq!(
            r.lag_ms(mid, 5_003),
            3,
            "first unacked byte written at 5000"
        );
        assert_eq!(
            r.lag_ms(10, 5_003),
            3_003,
            "first unacked byte written at 2000"
        );
        assert_eq!(r.lag_ms(r.seq.offset(), 9_000), 0);
    }

    /// A 10-byte backlog entry at `off`.
    fn entry(off: u64) -> BEntry {
        BEntry {
            off,
            select: None,
            body: Bytes::from_static(b"0123456789"),
        }
    }

    #[test]
    fn backlog_trims_but_keeps_what_replicas_need() {
        let mut b = Backlog::default();
        for i in 0..10 {
            b.push(entry(i * 10), 35, u64::MAX);
        }
        assert_eq!(b.bytes, 30);
        assert_eq!(b.trimmed_to, 70);
        let mut b = Backlog::default();
        for i in 0..10 {
            b.push(entry(i * 10), 35, 20);
        }
        assert_eq!(b.trimmed_to, 20);
        let mut out = Vec::new();
        // Offset 45 lies inside the entry at 40: reading starts there.
        b.read_from(45, 1000, &mut out);
        assert_eq!(out.first().map(|e| e.off), Some(40));
        out.clear();
        b.read_from(50, 1000, &mut out);
        assert_eq!(out.first().map(|e| e.off), Some(50));
    }

    /// A ring that grew while a replica held it gives the room back once
    /// trimming resumes, and keeps its entries and order.
    #[test]
    fn a_grown_backlog_ring_shrinks_back() {
        let mut b = Backlog::default();
        let n = 100_000u64;
        for i in 0..n {
            b.push(entry(i * 10), 1000, 0); // a replica still needs offset 0
        }
        assert!(b.entries.capacity() >= n as usize);
        for i in n..n + 10 {
            b.push(entry(i * 10), 1000, u64::MAX);
        }
        assert_eq!(b.entries.len(), 100);
        assert!(
            b.entries.capacity() <= 4 * MIN_RING,
            "{}",
            b.entries.capacity()
        );
        let offs: Vec<u64> = b.entries.iter().map(|e| e.off).collect();
        let want: Vec<u64> = (n + 10 - 100..n + 10).map(|i| i * 10).collect();
        assert_eq!(offs, want);
    }
}
