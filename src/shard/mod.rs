//! Shards: one glommio executor pinned per core, each owning a slice of the
//! keyspace, its connections and its timers. This module holds the shard
//! state, key ownership and the typed cross-core messages; `dispatch` moves
//! work between shards through their inboxes (`mesh`).
//!
//! Key ownership is the Redis Cluster function: `slot = CRC16(hashtag(key))
//! mod 16384`, `shard = slot mod N`, so `{user1}.a` and `{user1}.b` always
//! live together.

pub mod blocking;
pub mod dict;
pub mod dispatch;
pub mod key;
pub mod keyspace;
pub mod lineidx;
pub mod mesh;
pub mod sval;
pub mod sync;
pub mod table;
pub mod zset;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use glommio::sync::{Semaphore, StaticPermit};

use crate::config::Config;
use crate::resp::Proto;
use keyspace::{Entry, Keyspace};
use sync::{Notify, Oneshot};

/// Number of hash slots, as in Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Slice-by-16 tables: ~15x faster than byte-at-a-time on short keys.
const CRC16: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

/// The part of a key that is hashed: the content of the first `{...}` when
/// it is non-empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The Redis Cluster hash slot of a key.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

/// The shard that owns a key.
pub fn shard_of(key: &[u8], nshards: usize) -> usize {
    if nshards == 1 {
        0
    } else {
        key_slot(key) as usize % nshards
    }
}

/// Current Unix time in microseconds.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// State shared read-mostly by every shard.
pub struct Shared {
    pub config: RwLock<Config>,
    pub nshards: usize,
    pub next_client_id: AtomicU64,
    pub run_id: String,
    pub started: std::time::Instant,
    pub shutdown: AtomicBool,
    pub exit_code: AtomicU64,
    /// Shards listening so far; the last one to bind logs "ready".
    pub ready: std::sync::atomic::AtomicUsize,
    /// Wall time (Unix seconds) of the last successful save; start time
    /// until one happens, as in Redis.
    pub lastsave: AtomicU64,
    /// Replication: sequencer, backlogs, replicas (see `repl`).
    pub repl: crate::repl::Repl,
    /// RDB persistence: change counters, save state, the start-up load.
    pub persist: crate::persist::PersistState,
    /// Every shard's inbox for messages from the others.
    pub mesh: mesh::Mesh,
    /// Per shard: it has a subscriber keyspace events could reach (see
    /// `cmd::notify`).
    pub key_listeners: Vec<AtomicBool>,
    /// CLIENT PAUSE (see `cmd::pause`).
    pub pause: crate::cmd::pause::Pause,
    /// The active expiry cycle runs (DEBUG SET-ACTIVE-EXPIRE turns it off,
    /// leaving expiry to lookups).
    pub active_expire: AtomicBool,
    /// DEBUG SLEEP's deadline, in nanoseconds since `started` (0: none):
    /// every shard's driver blocks its thread until then (see
    /// [`Shared::debug_sleep`]).
    pub sleep_until: AtomicU64,
    /// More shards than cores to pin them to: shards share cores, so a
    /// shard must never spin waiting for another (`net::Driver`'s
    /// `await_spin`), which could be waiting for the same core.
    pub cores_shared: bool,
    /// Lua scripts by SHA1 and the running script's state (`cmd::script`).
    pub scripts: crate::cmd::script::eval::Cache,
    /// Clients in monitor mode, in all and per shard (`cmd::monitor`).
    pub monitors: std::sync::atomic::AtomicU32,
    pub monitors_on: Vec<std::sync::atomic::AtomicU32>,
}

impl Shared {
    pub fn new(config: Config, nshards: usize) -> Self {
        let run_id: String = (0..40)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap())
            .collect();
        Shared {
            config: RwLock::new(config),
            nshards,
            next_client_id: AtomicU64::new(1),
            run_id,
            started: std::time::Instant::now(),
            shutdown: AtomicBool::new(false),
            exit_code: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicUsize::new(0),
            lastsave: AtomicU64::new(now_ms() / 1000),
            repl: crate::repl::Repl::new(nshards),
            persist: crate::persist::PersistState::new(nshards),
            mesh: mesh::Mesh::new(nshards),
            key_listeners: (0..nshards).map(|_| AtomicBool::new(false)).collect(),
            pause: Default::default(),
            active_expire: AtomicBool::new(true),
            sleep_until: AtomicU64::new(0),
            cores_shared: false,
            scripts: crate::cmd::script::eval::Cache::new(nshards),
            monitors: Default::default(),
            monitors_on: (0..nshards).map(|_| Default::default()).collect(),
        }
    }

    pub fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// DEBUG SLEEP: the whole server stops for `dur`, as Redis's single
    /// thread does (replication tests rely on it: a sleeping replica does
    /// not reconnect, a sleeping master sends no PINGs). Raises the
    /// deadline, wakes every other driver so it blocks in
    /// [`Shared::sleep_if_asked`], and blocks the caller's thread.
    pub fn debug_sleep(&self, me: usize, dur: std::time::Duration) {
        let until = self.started.elapsed().saturating_add(dur);
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.sleep_until.fetch_max(nanos, Ordering::SeqCst);
        for i in (0..self.nshards).filter(|&i| i != me) {
            self.repl.wake_driver(i);
        }
        self.sleep_if_asked();
    }

    /// Blocks this thread until a pending DEBUG SLEEP's deadline. The
    /// network driver calls it at the start of every turn.
    #[inline]
    pub fn sleep_if_asked(&self) {
        let until = self.sleep_until.load(Ordering::Relaxed);
        if until == 0 {
            return;
        }
        let deadline = std::time::Duration::from_nanos(until);
        let now = self.started.elapsed();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else {
            // Past: later turns skip the clock read.
            let _ =
                self.sleep_until
                    .compare_exchange(until, 0, Ordering::SeqCst, Ordering::Relaxed);
        }
    }
}

/// Per-shard counters for INFO stats (summed over shards on read).
#[derive(Default)]
pub struct Stats {
    pub connections_received: Cell<u64>,
    pub commands_processed: Cell<u64>,
    pub rejected_connections: Cell<u64>,
    pub net_input_bytes: Cell<u64>,
    /// Bytes sent to clients; what replica links carry counts apart, in
    /// `net_repl_output_bytes`, as Redis 7.0 counts them (INFO's totals
    /// add the two).
    pub net_output_bytes: Cell<u64>,
    pub net_repl_output_bytes: Cell<u64>,
    /// Reads and writes done on client sockets (INFO's
    /// `total_reads_processed` / `total_writes_processed`): each recv and
    /// send completion, as Redis counts each read and write call.
    pub reads_processed: Cell<u64>,
    pub writes_processed: Cell<u64>,
    pub remote_batches: Cell<u64>,
    /// Clients of this shard currently blocked (BLPOP and friends).
    pub blocked_clients: Cell<u64>,
    /// INFO's `instantaneous_*` rates of this shard's counters.
    pub inst: std::cell::RefCell<InstMetrics>,
}

/// Redis's instantaneous metrics (`trackInstantaneousMetric`): the cron
/// takes the rate of a counter since its last look, per second, and the
/// metric is the mean of the last 16 rates (Redis samples every 100 ms).
#[derive(Default, Debug)]
pub struct InstMetric {
    last_ms: u64,
    last_value: u64,
    samples: [u64; 16],
    next: usize,
}

impl InstMetric {
    pub fn sample(&mut self, now_ms: u64, value: u64) {
        if self.last_ms != 0 && now_ms > self.last_ms {
            let rate = value.saturating_sub(self.last_value) * 1000 / (now_ms - self.last_ms);
            self.samples[self.next] = rate;
            self.next = (self.next + 1) % self.samples.len();
        }
        self.last_ms = now_ms;
        self.last_value = value;
    }

    pub fn get(&self) -> u64 {
        self.samples.iter().sum::<u64>() / self.samples.len() as u64
    }
}

/// A shard's instantaneous metrics: commands, network input and output,
/// and replication input and output, per second.
#[derive(Default, Debug)]
pub struct InstMetrics {
    pub ops: InstMetric,
    pub input: InstMetric,
    pub output: InstMetric,
    pub repl_input: InstMetric,
    pub repl_output: InstMetric,
}

/// The rates of a shard's [`InstMetrics`], per second, as INFO sums them.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstRates {
    pub ops: u64,
    pub input: u64,
    pub output: u64,
    pub repl_input: u64,
    pub repl_output: u64,
}

impl InstMetrics {
    pub fn rates(&self) -> InstRates {
        InstRates {
            ops: self.ops.get(),
            input: self.input.get(),
            output: self.output.get(),
            repl_input: self.repl_input.get(),
            repl_output: self.repl_output.get(),
        }
    }
}

impl Stats {
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }

    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.commands_processed,
            &self.rejected_connections,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.net_repl_output_bytes,
            &self.reads_processed,
            &self.writes_processed,
            &self.remote_batches,
        ] {
            c.set(0);
        }
    }
}

/// A command bound for one shard: its database and arguments.
#[derive(Clone, Debug)]
pub struct ShardCmd {
    pub spec: &'static crate::cmd::CmdSpec,
    pub db: u16,
    pub args: Vec<Bytes>,
}

/// How DEL-like counting commands treat each key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountKind {
    /// DEL / UNLINK: deletes, raising `del` keyspace events.
    Del,
    Exists,
    Touch,
    /// Deletes without events: a multi-shard command's write-back of keys
    /// its handler already deleted (and raised events for) on a scratch copy.
    Purge,
    /// Counts live keys as a write's lookup does: no hit/miss statistics,
    /// no `keymiss` (MSETNX's check across shards).
    Probe,
}

/// Typed operations one shard asks another to run on its keyspace.
#[derive(Debug)]
pub enum Op {
    MGet {
        db: u16,
        keys: Vec<Bytes>,
    },
    MSet {
        db: u16,
        pairs: Vec<(Bytes, Bytes)>,
    },
    Count {
        db: u16,
        keys: Vec<Bytes>,
        kind: CountKind,
    },
    /// Reads (and with `remove`, deletes) a whole entry, for RENAME/COPY.
    Take {
        db: u16,
        key: Bytes,
        remove: bool,
    },
    /// Stores an entry unless `nx` and the key exists; replies Int(1|0).
    Put {
        db: u16,
        key: Bytes,
        entry: Entry,
        nx: bool,
    },
    DbSize {
        db: u16,
    },
    /// DEBUG DIGEST-VALUE (a key in `db`): Bytes(its 20-byte digest, zeros
    /// when absent); DEBUG DIGEST (no key): Bytes(per database, its keys'
    /// XORed digest and their count as 8 little-endian bytes).
    Digest {
        db: u16,
        key: Option<Bytes>,
    },
    Flush {
        db: Option<u16>,
    },
    SwapDb {
        a: u16,
        b: u16,
    },
    Keys {
        db: u16,
        pattern: Bytes,
    },
    Scan {
        db: u16,
        pos: Option<usize>,
        count: usize,
        pattern: Option<Bytes>,
        typ: Option<Bytes>,
    },
    RandomKey {
        db: u16,
    },
    Info,
    ClientList {
        id_filter: Option<Vec<u64>>,
        typ: Option<String>,
        /// The asking client and its running command's length (see
        /// `net::ConnTable::client_list`).
        caller: (u64, usize),
    },
    ClientKill {
        filter: crate::net::KillFilter,
    },
    /// CLIENT UNBLOCK: release client `id` from a blocking pop or WAIT;
    /// Int(1) if it was blocked on this shard.
    ClientUnblock {
        id: u64,
        error: bool,
    },
    /// CONFIG RESETSTAT: zero this shard's counters.
    ResetStats,
    /// CONFIG SET happened: reload cached config values now.
    RefreshConfig,
    /// Run a Lua script here, its keys' shard, with no other shard held
    /// (`cmd::script::eval::run_fast`).
    Script(Box<crate::cmd::script::eval::FastScript>),
    /// Run one command here (inside EXEC, under the transaction lock).
    Exec {
        spec: &'static crate::cmd::CmdSpec,
        db: u16,
        proto: Proto,
        args: Vec<Bytes>,
        /// Inside EXEC: hand the replicated entries back instead of
        /// emitting them here.
        capture: bool,
    },
    /// WATCH a key for a client; replies its `multi::WATCH_*` state.
    Watch {
        db: u16,
        key: Bytes,
        client: u64,
    },
    Unwatch {
        client: u64,
        keys: Vec<(u16, Bytes)>,
    },
    /// Park a blocked client on keys of this shard.
    Block {
        waiter: blocking::Waiter,
        keys: Vec<(u16, Bytes)>,
        cmd: Option<ShardCmd>,
        proto: Proto,
        closed: Arc<AtomicBool>,
    },
    /// A blocking command whose keys all live here: run it, and if it
    /// finds nothing to pop park it in the same step (`Exec`'s reply,
    /// `blocked` meaning parked): one hop where a try, its reply and a park
    /// took three. Waiters that came in through different shards still
    /// queue in the order their shards read them, not the order they were
    /// sent: a shard on an idle core reads late.
    TryBlock {
        waiter: blocking::Waiter,
        keys: Vec<(u16, Bytes)>,
        cmd: ShardCmd,
        proto: Proto,
        closed: Arc<AtomicBool>,
    },
    /// Unpark it (timeout, close, or served elsewhere); Int(1) if it was parked.
    Unblock {
        waiter: blocking::Waiter,
    },
    /// Deliver a published message to this shard's subscribers; Int(count).
    Publish {
        channel: Bytes,
        message: Bytes,
    },
    /// PUBSUB CHANNELS [pattern] (Keys), NUMSUB ch (Int), NUMPAT (Keys).
    PubsubChannels {
        pattern: Option<Bytes>,
    },
    PubsubNumsub {
        channel: Bytes,
    },
    PubsubPatterns,
    /// Whether the client's watched keys here changed; Int(1) if so.
    CheckWatch {
        client: u64,
        keys: Vec<(u16, Bytes, u8)>,
    },
    /// Arm a snapshot on every db here (under the cut's locks).
    SnapBegin,
    /// The next piece of this shard's part of the snapshot (`Chunk`).
    SnapChunk {
        /// At most this many keys (`rdb-key-save-delay` paces key by key).
        max_keys: usize,
    },
    /// Drop this shard's snapshot state.
    SnapEnd,
    /// A replica starts loading its master's snapshot into staging.
    LoadBegin,
    /// Keys of the snapshot owned by this shard: (db, key, entry).
    Load {
        entries: Vec<(u16, Bytes, Entry)>,
    },
    /// The snapshot is complete: staging replaces the keyspace.
    LoadCommit,
    /// Start logging expired keys for propagation (a promoted replica).
    TrackExpired,
    LoadAbort,
    /// Serialise this shard's keys as RDB sections (answered `Bytes`).
    RdbPart,
    /// Replace this shard's keyspace (DEBUG RELOAD).
    Adopt(crate::persist::Adopt),
    /// DEBUG POPULATE: adds `prefix:j` = `value:j` (zero-padded or cut to
    /// `size` when non-zero) for every `j < count` this shard owns, unless
    /// the key exists; Int(keys added).
    Populate {
        db: u16,
        prefix: Bytes,
        count: u64,
        size: usize,
    },
}

/// Per-shard figures gathered for INFO.
#[derive(Debug, Default, Clone)]
pub struct ShardInfo {
    pub keys: Vec<(usize, usize, u64)>, // per db: keys, expires, avg_ttl
    pub connected_clients: usize,
    pub hits: u64,
    pub misses: u64,
    pub expired: u64,
    pub connections_received: u64,
    pub commands_processed: u64,
    pub rejected_connections: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub net_repl_output_bytes: u64,
    pub reads_processed: u64,
    pub writes_processed: u64,
    /// Instantaneous rates, per second.
    pub inst: InstRates,
    pub used_memory: u64,
    /// Clients of this shard waiting in a blocking pop.
    pub blocked_clients: u64,
    /// Connections with a slow-path batch in flight, and cross-shard
    /// requests awaiting a reply (diagnostics for stalls).
    pub busy_clients: usize,
    pub pending_requests: usize,
    /// Output queued for replicas on this shard.
    pub replica_output: u64,
    /// Keys a writable replica's clients gave a TTL, tracked for expiry
    /// (INFO `slave_expires_tracked_keys`).
    pub replica_ttl_keys: u64,
    /// This shard's command statistics (INFO commandstats).
    pub cmdstats: Vec<(String, crate::cmd::stats::CmdStat)>,
}

/// A reply to a [`Msg`].
#[derive(Debug)]
pub enum OpReply {
    /// Replies of a [`Msg::Batch`], in the buffers the request brought,
    /// and its commands, handed back to be freed where they were made.
    Batch {
        out: BytesMut,
        ends: Vec<u32>,
        cmds: Vec<ShardCmd>,
    },
    Locked,
    Done,
    Int(i64),
    Values(Vec<Option<Bytes>>),
    Entry(Option<Entry>),
    Keys(Vec<Bytes>),
    Scan {
        keys: Vec<Bytes>,
        next: Option<usize>,
    },
    Info(Box<ShardInfo>),
    Text(String),
    Exec {
        out: Bytes,
        blocked: bool,
        /// What the command replicates (inside EXEC).
        prop: Vec<crate::repl::master::PEntry>,
    },
    Chunk {
        bytes: Vec<u8>,
        done: bool,
    },
    Bytes(Vec<u8>),
    /// A fast script's reply; `None`: run it again under every lock.
    Script(Option<Bytes>),
}

/// Messages between shards (through their inboxes, `mesh`). Requests carry
/// the sender's shard and a request id; the answer comes back as `Reply`
/// with the same id.
pub enum Msg {
    /// A pipeline slice for this shard, replies in order. Waits while the
    /// shard is locked by a multi-shard transaction.
    Batch {
        from: usize,
        id: u64,
        proto: Proto,
        cmds: Vec<ShardCmd>,
        /// Empty buffers for the replies, allocated by the sender.
        out: BytesMut,
        ends: Vec<u32>,
    },
    /// A typed op; `tx` set means the sender holds this shard's lock.
    Op {
        from: usize,
        id: u64,
        tx: Option<u64>,
        op: Op,
    },
    /// Take this shard's transaction lock for `tx` (answered `Locked`).
    Lock {
        from: usize,
        id: u64,
        tx: u64,
    },
    Unlock {
        tx: u64,
    },
    /// Keyspace events another shard published (`cmd::notify::flush`),
    /// for this shard's subscribers.
    Notify {
        msgs: crate::cmd::notify::Published,
    },
    /// MONITOR lines another shard fed, for this shard's monitors
    /// (`cmd::monitor::publish`).
    Monitor {
        lines: Bytes,
    },
    Reply {
        id: u64,
        reply: OpReply,
    },
}

/// A driver-sent batch's connection (slot, generation), its group in the
/// connection's split remainder, and where that remainder's replies are
/// gathered (`Shard::post_conn_batch`).
type ConnBatch = (u32, u32, u8, Rc<RefCell<crate::net::Gather>>);

/// A message's work waiting for the shard's gate (`Shard::defer`).
type Deferred = Box<dyn FnOnce(&Rc<Shard>)>;

impl Msg {
    /// A batch request, with empty reply buffers sized for `cmds` (made
    /// here so the sender's thread frees them; see `dispatch::exec_group`).
    pub fn batch(from: usize, id: u64, proto: Proto, cmds: Vec<ShardCmd>) -> Msg {
        Msg::Batch {
            from,
            id,
            proto,
            out: BytesMut::with_capacity(64 * cmds.len()),
            ends: Vec::with_capacity(cmds.len()),
            cmds,
        }
    }
}

/// A shard: everything one core owns.
pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub ks: RefCell<Keyspace>,
    pub stats: Stats,
    /// The transaction lock: one permit. A multi-shard operation holds it on
    /// every shard it touches (taken in ascending shard order, so no
    /// deadlock); plain commands run only while it is free.
    pub gate: Rc<Semaphore>,
    held: RefCell<HashMap<u64, StaticPermit>>,
    /// Messages from other shards that wait for the gate, in arrival
    /// order; while any does, later ones queue behind it (see `defer`).
    deferred: RefCell<std::collections::VecDeque<Deferred>>,
    pending: RefCell<HashMap<u64, Oneshot<OpReply>>>,
    /// Remote batches the network driver sent itself (see
    /// `post_conn_batch`): request id -> the connection's (slot,
    /// generation) and the replies of the commands run here meanwhile.
    pub(crate) conn_batches: RefCell<HashMap<u64, ConnBatch>>,
    /// When the newest of `conn_batches` was sent.
    pub(crate) conn_batch_sent: Cell<Option<std::time::Instant>>,
    next_id: Cell<u64>,
    /// Wakes the network driver (slow-path completions, kills, shutdown).
    pub wake: Notify,
    pub net: RefCell<crate::net::ConnTable>,
    pub proto_max_bulk: Cell<u64>,
    /// `hll-sparse-max-bytes`: past it a sparse HyperLogLog turns dense.
    pub hll_sparse_max: Cell<u64>,
    /// `client-query-buffer-limit`, checked on every read.
    pub query_buf_limit: Cell<u64>,
    /// `databases`, fixed at start-up.
    pub databases: usize,
    /// The network driver's time snapshot for the turn it is processing
    /// (0 outside a turn), like Redis's cached command time: one clock read
    /// per batch of commands instead of one per command.
    pub clock: Cell<u64>,
    /// WATCHed keys on this shard: (db, key) -> client ids watching it.
    pub watched: RefCell<HashMap<(u16, Bytes), Vec<u64>>>,
    /// Clients whose watched keys on this shard changed since they watched.
    pub watch_dirty: RefCell<std::collections::HashSet<u64>>,
    /// Pub/Sub subscriptions of this shard's connections.
    pub pubsub: RefCell<crate::cmd::pubsub::PubSub>,
    /// Clients blocked on keys of this shard, and the task that serves them.
    pub blocking: RefCell<blocking::Blocking>,
    pub blocking_wake: Notify,
    /// Rung when a replica's ACK may have satisfied a WAIT blocked here.
    pub acks: sync::Bell,
    /// This shard's share of `repl-backlog-size`.
    pub backlog_cap: Cell<u64>,
    /// Progress through this shard's part of a running snapshot.
    pub snap_progress: RefCell<Option<crate::repl::snapshot::ShardProgress>>,
    /// A replica's snapshot being loaded: swapped in once complete.
    pub staging: RefCell<Option<Keyspace>>,
    /// `replica-read-only`.
    pub read_only: Cell<bool>,
    /// `replica-serve-stale-data`.
    pub serve_stale: Cell<bool>,
    /// Where this shard encodes its replication stream entries.
    pub enc_arena: RefCell<BytesMut>,
    /// A replication batch is open (`repl::master::batch_begin`).
    pub repl_batching: Cell<bool>,
    /// The db of the encoded, not yet sequenced writes in `enc_arena`.
    pub repl_pending_db: Cell<Option<u16>>,
    /// The keyspace event classes raised (`cmd::notify::effective`).
    pub notify_flags: Cell<u32>,
    /// Keyspace events raised and not yet published.
    pub events: RefCell<Vec<crate::cmd::notify::KeyEvent>>,
    /// Published events for this shard's own subscribers, delivered at
    /// the end of the driver's turn.
    pub events_here: RefCell<crate::cmd::notify::Published>,
    /// The `pubsub` class of `client-output-buffer-limit`, checked on
    /// every delivery.
    pub pubsub_obuf: Cell<crate::config::ObufLimit>,
    /// MONITOR lines fed and not yet published, lines published for this
    /// shard's monitors, and those monitors' client ids (`cmd::monitor`).
    pub monitor_out: RefCell<BytesMut>,
    pub monitor_here: RefCell<BytesMut>,
    pub monitor_ids: RefCell<Vec<u64>>,
}

impl Drop for Shard {
    /// A shard that goes away (its executor ending at shutdown) with a
    /// driver-sent batch still out leaks that batch's frames: the owner
    /// may yet read the arguments that borrow them (`post_conn_batch`).
    fn drop(&mut self) {
        for (_, (_, _, _, gather)) in self.conn_batches.get_mut().drain() {
            gather.borrow_mut().leak_frames();
        }
    }
}

impl Shard {
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let (databases, max_bulk, hll_sparse_max, query_buf_limit, pubsub_obuf) = {
            let c = shared.config();
            (
                c.databases(),
                c.proto_max_bulk_len(),
                c.hll_sparse_max_bytes(),
                c.client_query_buffer_limit(),
                c.client_output_buffer_limits()[2],
            )
        };
        Shard {
            id,
            shared,
            ks: RefCell::new(Keyspace::new(databases)),
            stats: Stats::default(),
            gate: Rc::new(Semaphore::new(1)),
            held: RefCell::new(HashMap::new()),
            deferred: RefCell::new(Default::default()),
            pending: RefCell::new(HashMap::new()),
            conn_batches: RefCell::new(HashMap::new()),
            conn_batch_sent: Cell::new(None),
            next_id: Cell::new(1),
            wake: Notify::default(),
            net: RefCell::new(crate::net::ConnTable::default()),
            proto_max_bulk: Cell::new(max_bulk),
            hll_sparse_max: Cell::new(hll_sparse_max),
            query_buf_limit: Cell::new(query_buf_limit),
            databases,
            clock: Cell::new(0),
            watched: RefCell::new(HashMap::new()),
            watch_dirty: RefCell::new(std::collections::HashSet::new()),
            pubsub: RefCell::new(Default::default()),
            blocking: RefCell::new(blocking::Blocking::default()),
            blocking_wake: Notify::default(),
            acks: sync::Bell::default(),
            backlog_cap: Cell::new(0),
            snap_progress: RefCell::new(None),
            staging: RefCell::new(None),
            read_only: Cell::new(true),
            serve_stale: Cell::new(true),
            enc_arena: RefCell::new(BytesMut::new()),
            repl_batching: Cell::new(false),
            repl_pending_db: Cell::new(None),
            notify_flags: Cell::new(0),
            events: RefCell::new(Vec::new()),
            events_here: RefCell::new(Vec::new()),
            pubsub_obuf: Cell::new(pubsub_obuf),
            monitor_out: RefCell::new(BytesMut::new()),
            monitor_here: RefCell::new(BytesMut::new()),
            monitor_ids: RefCell::new(Vec::new()),
        }
    }

    /// Called on every key modification (Redis's `signalModifiedKey`).
    /// Marks transactions WATCHing the key as failed.
    pub fn key_modified(&self, db: usize, key: &[u8]) {
        self.shared.persist.bump(self.id, 1);
        if self.blocking.borrow_mut().key_ready(db as u16, key) {
            self.blocking_wake.notify();
        }
        let mut w = self.watched.borrow_mut();
        if w.is_empty() {
            return;
        }
        if let Some(clients) = w.remove(&(db as u16, Bytes::copy_from_slice(key))) {
            let mut dirty = self.watch_dirty.borrow_mut();
            dirty.extend(clients);
        }
    }

    /// FLUSHDB / FLUSHALL / SWAPDB, called before the change: as Redis
    /// 7.0's `touchAllWatchedKeysInDb`, a WATCH on a key of database `db`
    /// fails only when the key is live in `db` or in `with`, the database
    /// about to replace it. A key in neither changes nothing a client can
    /// see. An expired key is left to EXEC's own check: one watched while
    /// live with a TTL fails there once gone, one watched already expired
    /// does not, as in Redis.
    pub fn touch_watched_in_db(&self, ks: &Keyspace, db: u16, with: Option<u16>, now: u64) {
        if self.watched.borrow().is_empty() {
            return;
        }
        let live = |d: u16, k: &[u8]| ks.dbs[d as usize].peek(k, now).is_some();
        self.fail_watches(|(d, k)| *d == db && (live(db, k) || with.is_some_and(|o| live(o, k))));
    }

    /// The dataset was replaced whole (a full sync's load, DEBUG RELOAD):
    /// every WATCHer of the database(s) fails.
    pub fn db_modified(&self, db: Option<u16>) {
        self.shared.persist.bump(self.id, 1);
        self.fail_watches(|(d, _)| db.is_none_or(|x| x == *d));
    }

    /// Marks dirty every client watching a key `hit` picks, and forgets
    /// those watches.
    fn fail_watches(&self, hit: impl Fn(&(u16, Bytes)) -> bool) {
        let mut w = self.watched.borrow_mut();
        let keys: Vec<(u16, Bytes)> = w.keys().filter(|k| hit(k)).cloned().collect();
        let mut dirty = self.watch_dirty.borrow_mut();
        for k in keys {
            if let Some(clients) = w.remove(&k) {
                dirty.extend(clients);
            }
        }
    }

    /// Current Unix ms: the driver's snapshot during a turn, else fresh.
    pub fn now(&self) -> u64 {
        match self.clock.get() {
            0 => now_ms(),
            t => t,
        }
    }

    /// Reloads the config values a shard caches for its hot path.
    pub fn refresh_config(&self) {
        let c = self.shared.config();
        self.proto_max_bulk.set(c.proto_max_bulk_len());
        self.hll_sparse_max.set(c.hll_sparse_max_bytes());
        self.query_buf_limit.set(c.client_query_buffer_limit());
        self.pubsub_obuf.set(c.client_output_buffer_limits()[2]);
        let notify = crate::cmd::notify::effective(c.notify_keyspace_events());
        self.notify_flags.set(notify);
        // The cron calls this every tick: a keyspace busy now gets it next.
        if let Ok(mut ks) = self.ks.try_borrow_mut() {
            ks.stats.notify_expired = notify & crate::cmd::notify::EXPIRED != 0;
        }
        let backlog = c
            .get_int("repl-backlog-size")
            .unwrap_or(1 << 20)
            .max(16 << 10) as u64;
        self.backlog_cap.set(backlog / self.shared.nshards as u64);
        self.read_only
            .set(c.get_bool("replica-read-only").unwrap_or(true));
        self.serve_stale
            .set(c.get_bool("replica-serve-stale-data").unwrap_or(true));
        self.shared.repl.min_to_write.store(
            c.get_int("min-replicas-to-write").unwrap_or(0) as u64,
            Ordering::Relaxed,
        );
        self.shared.repl.max_lag.store(
            c.get_int("min-replicas-max-lag").unwrap_or(10).max(0) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn nshards(&self) -> usize {
        self.shared.nshards
    }

    /// A fresh id, unique on this shard, for requests and transactions.
    pub fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Whether the transaction lock is free right now (plain commands may
    /// run synchronously).
    pub fn gate_open(&self) -> bool {
        self.gate.available() > 0
    }

    /// Waits until no transaction holds this shard's lock. Returns at once
    /// when free; plain commands then run without yielding, so nothing can
    /// take the lock between the check and the command.
    pub async fn wait_gate(&self) {
        if !self.gate_open() {
            // Queue behind the holder; release at once (FIFO fairness).
            let _ = self.gate.acquire_permit(1).await;
        }
    }

    /// Sends a request to another shard; its reply completes the slot
    /// returned. Sending never waits (the inboxes are unbounded; each
    /// connection has at most one batch out), so a pipeline's requests to
    /// several shards all leave before the first reply is awaited.
    pub fn post_request(&self, to: usize, make: impl FnOnce(u64) -> Msg) -> Oneshot<OpReply> {
        let id = self.next_id();
        let slot = Oneshot::default();
        self.pending.borrow_mut().insert(id, slot.clone());
        self.post(to, make(id));
        slot
    }

    /// Sends a message to another shard and awaits its reply.
    pub async fn request(&self, to: usize, make: impl FnOnce(u64) -> Msg) -> OpReply {
        self.post_request(to, make).recv().await
    }

    /// Sends the commands of a connection's pipeline remainder that `to`
    /// owns (its group `group`), straight from the network driver: no
    /// task waits for it. `gather` collects the replies of every group and
    /// of the remainder's commands already run here; when the last group
    /// answers, they go into the connection's output in request order
    /// (`net::ConnTable::finish_remote`, from `on_message`).
    ///
    /// `gather` also holds the request buffers that arguments of commands
    /// in `cmd::BORROWS_ARGS` still borrow, uncounted. They stay here, on
    /// the sending shard, until every reply is back: the owners only read
    /// the arguments while they run their batches, and the frames'
    /// reference counts are never touched from their cores (two atomic
    /// operations per argument saved, and no cache line going back and
    /// forth).
    pub fn post_conn_batch(
        &self,
        to: usize,
        conn: (u32, u32),
        group: u8,
        gather: &Rc<RefCell<crate::net::Gather>>,
        proto: Proto,
        cmds: Vec<ShardCmd>,
    ) {
        let id = self.next_id();
        self.conn_batches
            .borrow_mut()
            .insert(id, (conn.0, conn.1, group, gather.clone()));
        self.conn_batch_sent.set(Some(std::time::Instant::now()));
        Stats::add(&self.stats.remote_batches, 1);
        self.post(to, Msg::batch(self.id, id, proto, cmds));
    }

    /// Registers a reply slot for a message that will answer later (a
    /// blocked client's serve).
    pub fn new_pending(&self) -> (u64, Oneshot<OpReply>) {
        let id = self.next_id();
        let slot = Oneshot::default();
        self.pending.borrow_mut().insert(id, slot.clone());
        (id, slot)
    }

    /// Cross-shard requests still awaiting their reply.
    pub fn pending_len(&self) -> usize {
        self.pending.borrow().len()
    }

    pub fn forget_pending(&self, id: u64) {
        self.pending.borrow_mut().remove(&id);
    }

    /// Completes a local pending slot (a serve from this very shard).
    pub fn complete(&self, id: u64, reply: OpReply) {
        let slot = self.pending.borrow_mut().remove(&id);
        if let Some(slot) = slot {
            slot.send(reply);
        }
    }

    /// Puts `msg` in shard `to`'s inbox, waking its driver if it sleeps.
    pub fn post(&self, to: usize, msg: Msg) {
        debug_assert_ne!(to, self.id, "no message to self");
        // This turn's writes are in the replication stream before anything
        // the message causes (`repl::master::batch_begin`).
        crate::repl::master::seal(self);
        // Keyspace events raised so far leave first (`cmd::notify::publish`).
        if self.notify_flags.get() != 0 && !self.events.borrow().is_empty() {
            crate::cmd::notify::publish(self);
        }
        // So do MONITOR lines (`cmd::monitor::publish`).
        if !self.monitor_out.borrow().is_empty() {
            crate::cmd::monitor::publish(self);
        }
        if self.shared.mesh.push(to, msg) {
            self.shared.repl.wake_driver(to);
        }
    }

    /// Handles every message waiting in this shard's inbox. The network
    /// driver calls this at the start of each turn, with nothing borrowed
    /// (a reply to the driver's own batch goes straight into `net`).
    /// Returns whether there was any.
    pub fn drain_inbox(self: &Rc<Self>) -> bool {
        let mut any = false;
        while let Some(msg) = self.shared.mesh.pop(self.id) {
            any = true;
            self.on_message(msg);
        }
        any
    }

    /// Whether a message from another shard may run right now: the gate is
    /// open and no earlier message still waits for it (which keeps one
    /// sender's messages in order).
    fn runs_now(&self) -> bool {
        self.deferred.borrow().is_empty() && self.gate_open()
    }

    /// Queues `f` behind every message deferred before it; one task runs
    /// the queue in order, each once the gate is open.
    fn defer(self: &Rc<Self>, f: impl FnOnce(&Rc<Shard>) + 'static) {
        let first = {
            let mut q = self.deferred.borrow_mut();
            q.push_back(Box::new(f));
            q.len() == 1
        };
        if first {
            let me = self.clone();
            glommio::spawn_local(async move {
                loop {
                    me.wait_gate().await;
                    let Some(f) = me.deferred.borrow_mut().pop_front() else {
                        break;
                    };
                    f(&me);
                }
            })
            .detach();
        }
    }

    /// Handles one incoming message. Replies complete a pending request.
    /// Batches and ops run inline, in the driver's turn, when the gate is
    /// open; otherwise they queue for it. Lock requests wait in a task.
    pub fn on_message(self: &Rc<Self>, msg: Msg) {
        match msg {
            Msg::Reply { id, reply } => {
                let slot = self.pending.borrow_mut().remove(&id);
                if let Some(slot) = slot {
                    slot.send(reply);
                } else if let Some((conn, generation, group, gather)) =
                    self.conn_batches.borrow_mut().remove(&id)
                {
                    self.net
                        .borrow_mut()
                        .finish_remote(conn, generation, group, &gather, reply);
                    // The frames go with the last of the batches' entries,
                    // when every group's arguments are dropped.
                    drop(gather);
                }
            }
            Msg::Notify { msgs } => {
                crate::cmd::notify::flush(self);
                crate::cmd::notify::deliver(self, &msgs);
            }
            Msg::Monitor { lines } => crate::cmd::monitor::receive(self, &lines),
            Msg::Unlock { tx } => {
                self.held.borrow_mut().remove(&tx);
            }
            Msg::Lock { from, id, tx } => {
                let me = self.clone();
                glommio::spawn_local(async move {
                    let permit = me
                        .gate
                        .acquire_static_permit(1)
                        .await
                        .expect("gate semaphore closed");
                    me.held.borrow_mut().insert(tx, permit);
                    me.post(
                        from,
                        Msg::Reply {
                            id,
                            reply: OpReply::Locked,
                        },
                    );
                })
                .detach();
            }
            Msg::Op { from, id, tx, op } => {
                let run = move |me: &Rc<Shard>| {
                    let reply = dispatch::apply_op(me, op);
                    me.post(from, Msg::Reply { id, reply });
                };
                // Under a transaction the sender holds this shard's gate.
                if tx.is_some() || self.runs_now() {
                    run(self);
                } else {
                    self.defer(run);
                }
            }
            Msg::Batch {
                from,
                id,
                proto,
                cmds,
                mut out,
                mut ends,
            } => {
                let run = move |me: &Rc<Shard>| {
                    dispatch::exec_group(me, proto, &cmds, &mut out, &mut ends);
                    let reply = OpReply::Batch { out, ends, cmds };
                    me.post(from, Msg::Reply { id, reply });
                };
                if self.runs_now() {
                    run(self);
                } else {
                    self.defer(run);
                }
            }
        }
    }
}

/// Body of one shard's executor: builds the shard, starts its timers, then
/// serves connections (and its inbox, from the same driver) until shutdown.
pub async fn run(
    id: usize,
    shared: Arc<Shared>,
    listen: Vec<std::net::SocketAddr>,
    unix: Option<std::os::fd::RawFd>,
) {
    log::debug!("shard {id}: executor up");
    let shard = Rc::new(Shard::new(id, shared.clone()));
    shard.refresh_config();
    crate::persist::on_shard_start(&shard);
    let backlog = shared.config().tcp_backlog();
    let mut fds = Vec::new();
    for addr in &listen {
        match crate::net::sockopt::listener(*addr, backlog) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                log::error!("shard {id}: cannot listen on {addr}: {e}");
                shared.request_shutdown();
                return;
            }
        }
    }
    fds.extend(unix);
    if shared.ready.fetch_add(1, Ordering::SeqCst) + 1 == shared.nshards {
        // Redis's words: scripts and test harnesses wait for this line.
        if !listen.is_empty() {
            log::info!("Ready to accept connections tcp on {listen:?}");
        }
        if let Some((path, _)) = shared.config().unix_socket() {
            log::info!("The server is now ready to accept connections at {path}");
        }
    }
    glommio::spawn_local(cron(shard.clone())).detach();
    glommio::spawn_local(blocking::serve_ready(shard.clone())).detach();
    // `replicaof` in the config or on the command line.
    let follow = shard.shared.config().replicaof();
    if id == 0
        && let Some((host, port)) = follow
    {
        crate::repl::replica::replicaof(&shard, host, port);
    }
    crate::net::serve(shard, fds).await;
}

/// One sample of the shard's instantaneous metrics (see [`InstMetric`]);
/// shard 0 also samples the replica link's input, which is global.
fn sample_metrics(shard: &Shard) {
    let now = now_ms();
    let st = &shard.stats;
    let mut m = st.inst.borrow_mut();
    // As Redis 7.0: the input and output rates include replication's.
    let repl_out = st.net_repl_output_bytes.get();
    let repl_in = if shard.id == 0 {
        shard.shared.repl.net_input_bytes.load(Ordering::Relaxed)
    } else {
        0
    };
    m.ops.sample(now, st.commands_processed.get());
    m.input.sample(now, st.net_input_bytes.get() + repl_in);
    m.output.sample(now, st.net_output_bytes.get() + repl_out);
    m.repl_output.sample(now, repl_out);
    m.repl_input.sample(now, repl_in);
}

/// The shard's heartbeat, `hz` times a second: active expiry with a time
/// budget of a quarter of the period (as Redis's slow cycle), client idle
/// timeouts, refreshed config values, and waking the driver on shutdown.
async fn cron(shard: Rc<Shard>) {
    loop {
        let (hz, timeout, max_bulk) = {
            let c = shard.shared.config();
            (c.hz().clamp(1, 500), c.timeout(), c.proto_max_bulk_len())
        };
        let period = std::time::Duration::from_millis(1000 / hz);
        glommio::timer::sleep(period).await;
        if shard.shared.shutdown.load(Ordering::Relaxed) {
            shard.wake.notify();
            shard.acks.ring();
            return;
        }
        let _ = max_bulk;
        shard.refresh_config();
        sample_metrics(&shard);
        // A replica leaves expiry to its master, which sends the DELs,
        // except for keys its own clients gave a TTL (a writable replica).
        // A paused server expires nothing: its dataset stays still
        // (`cmd::pause`).
        if shard.gate_open()
            && shard.shared.active_expire.load(Ordering::Relaxed)
            && shard.shared.pause.mode(now_ms()).is_none()
        {
            let replica = shard.shared.repl.is_replica.load(Ordering::Relaxed);
            let deadline = std::time::Instant::now() + period / 4;
            let now = now_ms();
            let mut ks = shard.ks.borrow_mut();
            let Keyspace { dbs, stats } = &mut *ks;
            for db in dbs.iter_mut() {
                if replica {
                    // Only its clients' TTL keys (`Db::replica_ttls`).
                    db.expire_replica_keys(now, deadline, stats);
                } else {
                    db.active_expire(now, deadline, stats);
                }
            }
            if !replica {
                crate::repl::master::flush_expired(&shard, &mut ks);
            }
            crate::cmd::notify::drain_expired(&shard, &mut ks);
        }
        shard.net.borrow_mut().reap_idle(timeout);
        shard.net.borrow_mut().shrink_output_buffers();
        crate::net::replica::cron(&shard, &mut shard.net.borrow_mut());
        if shard.id == 0 {
            crate::repl::master::cron(&shard);
        }
        // Safety net: a driver turn every tick, so no missed wake-up can
        // stall a connection for longer than one period. Log if it found
        // work waiting, which would point at such a miss.
        if shard.net.borrow().has_pending() {
            log::debug!(
                "shard {}: cron found driver work pending (late wake-up)",
                shard.id
            );
        }
        shard.wake.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` on Redis.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            CRC16.checksum(b"foo{}{bar}") % SLOTS
        );
        assert_eq!(key_slot(b"foo{{bar}}zap"), CRC16.checksum(b"{bar") % SLOTS);
    }
}
