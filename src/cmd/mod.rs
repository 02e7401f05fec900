//! Commands as data: every command is a [`CmdSpec`] row (name, arity, flags,
//! key positions, handler) in one table, looked up case-insensitively.
//!
//! Handlers come in four kinds, which decide where a command runs:
//! - `Keyed`: runs on the shard owning its keys; a command whose keys span
//!   shards goes through its `Multi` strategy in `shard::dispatch`.
//! - `Keyless`: runs on the connection's own shard (PING, ECHO, TIME, ...).
//! - `Conn`: changes connection state (SELECT, HELLO, CLIENT SETNAME, ...).
//! - `Global`: needs every shard (DBSIZE, FLUSHALL, INFO, SCAN, ...); runs
//!   as an async coordinator in `shard::dispatch`.

/// A table row for a command with no keys, run as `$kind`; used by the
/// tables of several modules below.
macro_rules! keyless {
    ($name:expr, $arity:expr, $flags:expr, $kind:expr) => {
        crate::cmd::CmdSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: 0,
            last_key: 0,
            step: 0,
            numkeys: 0,
            kind: $kind,
            stat: crate::cmd::StatSlot::new(),
        }
    };
}

/// A [`keyless!`] row for a global command (`Kind::Global`).
macro_rules! global {
    ($name:expr, $arity:expr, $flags:expr) => {
        keyless!($name, $arity, $flags, crate::cmd::Kind::Global)
    };
}

pub mod bitops;
pub mod digest;
pub mod dump;
pub mod hash;
pub mod hll;
pub mod keys;
pub mod ldouble;
pub mod list;
pub mod monitor;
pub mod multi;
pub mod notify;
pub mod pause;
pub mod pubsub;
pub mod repl;
pub mod script;
pub mod server;
pub mod set;
pub mod sort;
pub mod stats;
pub mod string;
pub mod zset;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::resp::{Proto, Reply};
use crate::shard::keyspace::{Db, Entry, Keyspace, KeyspaceStats, Value};
use crate::shard::{CountKind, Shard, shard_of};

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";
pub const DB_RANGE: &str = "ERR DB index is out of range";

/// Execution context of a keyed or keyless command on its shard.
pub struct Exec<'a> {
    pub shard: &'a Shard,
    pub ks: &'a mut Keyspace,
    pub db: usize,
    pub r: Reply<'a>,
    /// The clock, for TTL arithmetic (a relative TTL, TTL's answer).
    pub now: u64,
    /// The instant a key's TTL must have passed by for a lookup to find it
    /// expired, and for a TTL to count as already past: `now` on a master,
    /// 0 (never) for a replica's writes (see [`expiry_cut`]).
    pub cut: u64,
    /// Set by a blocking command (BLPOP, BZPOPMIN, ...) that found nothing
    /// to pop and wrote no reply: the caller parks the client until one of
    /// its keys changes or the timeout passes, then runs it again.
    pub would_block: bool,
    /// The command changed the keyspace (set by `modified`): it goes into
    /// the replication stream.
    pub dirty: bool,
    /// What to replicate instead of the command itself, when its effect is
    /// not deterministic from its arguments (SPOP's random picks).
    pub alt: Vec<Vec<Bytes>>,
}

impl<'a> Exec<'a> {
    pub fn db(&mut self) -> (&mut Db, &mut KeyspaceStats) {
        self.ks.db(self.db)
    }

    /// Reads a string value: `Ok(None)` when missing, `Err` on WRONGTYPE.
    /// Counts a keyspace hit or miss like Redis's `lookupKeyRead`.
    #[allow(clippy::result_unit_err)] // Err is WRONGTYPE; the caller words it
    pub fn read_str(&mut self, key: &[u8]) -> Result<Option<Bytes>, ()> {
        if self.keymiss(key) {
            return Ok(None);
        }
        let now = self.cut;
        let (db, st) = self.ks.db(self.db);
        match db.get(key, now, st) {
            None => {
                st.misses += 1;
                Ok(None)
            }
            Some(e) => {
                st.hits += 1;
                match &e.value {
                    Value::Str(s) => Ok(Some(s.to_bytes())),
                    _ => Err(()),
                }
            }
        }
    }

    /// Looks up a key for reading, counting a keyspace hit or miss.
    pub fn lookup_read(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.lookup_read_with_reply(key).0
    }

    /// [`Self::lookup_read`], also handing out the reply writer: the two
    /// are separate fields, so a reply can be written straight from the
    /// stored bytes while the entry is borrowed, without cloning it out.
    #[inline]
    pub fn lookup_read_with_reply(&mut self, key: &[u8]) -> (Option<&mut Entry>, &mut Reply<'a>) {
        if self.keymiss(key) {
            return (None, &mut self.r);
        }
        let now = self.cut;
        let (db, st) = self.ks.db(self.db);
        let e = db.get(key, now, st);
        if e.is_some() {
            st.hits += 1;
        } else {
            st.misses += 1;
        }
        (e, &mut self.r)
    }

    /// With `keymiss` events on: looks `key` up for reading and, when it
    /// is missing, counts the miss and raises `keymiss` (after `expired`
    /// if the lookup expired it), returning true: the caller answers as
    /// for a missing key. False, doing nothing, when the events are off.
    #[inline]
    pub fn keymiss(&mut self, key: &[u8]) -> bool {
        if self.shard.notify_flags.get() & notify::KEY_MISS == 0 {
            return false;
        }
        let now = self.cut;
        let (db, st) = self.ks.db(self.db);
        if db.contains(key, now, st) {
            return false;
        }
        st.misses += 1;
        self.notify(notify::KEY_MISS, "keymiss", key);
        true
    }

    /// Looks a key up (for reading with hit/miss accounting, or for
    /// writing) and narrows it to one type with `pick`: `Ok(None)` when
    /// missing, `Err(())` (WRONGTYPE) when it holds another type.
    #[allow(clippy::result_unit_err)] // Err is WRONGTYPE; the caller words it
    pub fn typed_at<T: ?Sized>(
        &mut self,
        key: &[u8],
        read: bool,
        pick: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<Option<&mut T>, ()> {
        let e = if read {
            self.lookup_read(key)
        } else {
            self.lookup_write(key)
        };
        match e {
            None => Ok(None),
            Some(e) => pick(&mut e.value).map(Some).ok_or(()),
        }
    }

    /// Stores a new value under a key that does not exist yet (no TTL).
    pub fn insert_new(&mut self, key: &[u8], value: Value) {
        let (db, _) = self.ks.db(self.db);
        db.insert(key, Entry::new(value));
        self.notify(notify::NEW, "new", key);
    }

    /// Raises a keyspace event (Redis's `notifyKeyspaceEvent`) for `key`
    /// in this db when its class is on; see [`notify`]. Events of keys
    /// the command's lookups expired go first.
    #[inline(always)]
    pub fn notify(&mut self, class: u32, event: &'static str, key: &[u8]) {
        self.notify_in(self.db, class, event, key)
    }

    /// [`Self::notify`] for a key in database `db` (MOVE, COPY ... DB).
    /// Off, it costs a load and a branch: writes call it on every change.
    #[inline(always)]
    pub fn notify_in(&mut self, db: usize, class: u32, event: &'static str, key: &[u8]) {
        if self.shard.notify_flags.get() & class != 0 {
            self.notify_on(db, class, event, key);
        }
    }

    #[cold]
    #[inline(never)]
    fn notify_on(&mut self, db: usize, class: u32, event: &'static str, key: &[u8]) {
        notify::drain_expired(self.shard, self.ks);
        notify::raise(self.shard, class, event, db, key);
    }

    /// After elements left the collection at `key` (a pop, a removal, a
    /// trim): raises `event` in `class`, deletes the key if that emptied
    /// it (Redis never keeps an empty collection) raising `del` after the
    /// command's event, and signals the change to WATCHers.
    pub fn elements_removed(&mut self, class: u32, event: &'static str, key: &[u8]) {
        self.notify(class, event, key);
        if self.remove_if_empty(key) {
            self.notify(notify::GENERIC, "del", key);
        }
        self.modified(key);
    }

    /// Stores `value` under `key`, replacing any value and TTL (Redis's
    /// setKey): only a key that was missing raises `new` (dbAdd).
    pub fn set_key(&mut self, key: &[u8], value: Value) {
        if self.lookup_write(key).is_some() {
            self.db().0.insert(key, Entry::new(value));
        } else {
            self.insert_new(key, value);
        }
    }

    /// Deletes `key` if it holds an empty collection, as Redis does after
    /// the last element goes. Returns whether it was deleted.
    fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        let (db, st) = self.ks.db(self.db);
        let empty = db
            .get(key, self.cut, st)
            .is_some_and(|e| e.value.is_empty_collection());
        if empty {
            db.remove(key);
        }
        empty
    }

    /// Records that `key` changed (Redis's `signalModifiedKey`): WATCHers of
    /// the key see their transaction fail.
    pub fn modified(&mut self, key: &[u8]) {
        self.dirty = true;
        self.shard.key_modified(self.db, key);
    }

    /// Replicates `cmd` (in this db) instead of the command as written.
    pub fn propagate_as(&mut self, cmd: Vec<Bytes>) {
        self.alt.push(cmd);
    }

    /// Looks up a key for writing (no hit/miss accounting).
    pub fn lookup_write(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let now = self.cut;
        let (db, st) = self.ks.db(self.db);
        db.get(key, now, st)
    }
}

/// Connection state a command may read or change. A slow-path batch works
/// on a copy and hands it back to the connection when done.
#[derive(Clone, Debug)]
pub struct ClientState {
    pub id: u64,
    pub db: u16,
    pub proto: Proto,
    pub name: Option<Bytes>,
    /// Close the connection once the replies so far are written (QUIT).
    pub close_after_reply: bool,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    /// Name of the last command run, for CLIENT LIST's `cmd=`, with its
    /// subcommand for container commands (`client|list`).
    pub last_cmd: &'static str,
    pub last_sub: Option<Bytes>,
    /// Commands queued since MULTI (None outside MULTI).
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A queued command was rejected: EXEC answers EXECABORT.
    pub multi_dirty: bool,
    /// WATCHed keys: (db, key, state at WATCH time, see `multi::WATCH_*`).
    pub watching: Vec<(u16, Bytes, u8)>,
    /// Pub/Sub subscriptions of this connection.
    pub channels: Vec<Bytes>,
    pub patterns: Vec<Bytes>,
    /// What a replica told us (REPLCONF) and asked for (SYNC/PSYNC).
    pub repl: repl::ReplClient,
    /// CLIENT REPLY's state.
    pub reply_mode: ReplyMode,
    /// How MONITOR lines name this client: its address, `unix:<path>`,
    /// or empty for internal clients (`cmd::monitor`).
    pub peer: Bytes,
    /// In monitor mode (MONITOR, until RESET).
    pub monitor: bool,
}

/// CLIENT REPLY ON | OFF | SKIP: whether the connection's next replies are
/// sent. Anything but `On` sends the connection down the slow path
/// (`dispatch::run_batch`), which drops the silenced replies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// The next command's reply only.
    SkipNext,
}

impl ReplyMode {
    /// Whether the reply of `args`, about to run in this mode, is dropped.
    /// CLIENT REPLY and RESET answer for themselves (ON and RESET say so,
    /// OFF and SKIP say nothing), and Pub/Sub confirmations are pushes,
    /// which Redis sends whatever the mode (`CLIENT_PUSHING`).
    pub fn silences(self, args: &[Bytes]) -> bool {
        if self == ReplyMode::On {
            return false;
        }
        let name = args.first().map_or(&b""[..], |a| a.as_ref());
        let own = (eq_ic(name, "client") && args.get(1).is_some_and(|s| eq_ic(s, "reply")))
            || eq_ic(name, "reset");
        let push = ["subscribe", "unsubscribe", "psubscribe", "punsubscribe"]
            .iter()
            .any(|c| eq_ic(name, c));
        !(own || push)
    }
}

impl ClientState {
    pub fn new(id: u64) -> Self {
        ClientState {
            id,
            db: 0,
            proto: Proto::Resp2,
            name: None,
            close_after_reply: false,
            lib_name: None,
            lib_ver: None,
            last_cmd: "NULL",
            last_sub: None,
            multi: None,
            multi_dirty: false,
            watching: Vec::new(),
            channels: Vec::new(),
            patterns: Vec::new(),
            repl: Default::default(),
            reply_mode: ReplyMode::On,
            peer: Bytes::new(),
            monitor: false,
        }
    }
}

/// Context of a connection-state command.
pub struct ConnCtx<'a> {
    pub shard: &'a Shard,
    pub client: &'a mut ClientState,
    pub r: Reply<'a>,
}

pub type KeyedFn = fn(&mut Exec, &[Bytes]);
pub type ConnFn = fn(&mut ConnCtx, &[Bytes]);

/// How a multi-key command runs when its keys live on several shards.
/// MGET, MSET and the DEL family split per shard (the hot cases); every
/// other multi-key command runs on a scratch copy of its keys under the
/// transaction lock, and the keys it changed are written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multi {
    MGet,
    MSet,
    MSetNx,
    Count(CountKind),
    Scratch,
    /// SORT: a scratch copy too, and one that also holds the keys its
    /// BY/GET patterns name (`sort::route`, `sort::pattern_keys`).
    Sort,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Keyed(KeyedFn, Option<Multi>),
    Keyless(KeyedFn),
    Conn(ConnFn),
    Global,
}

/// One command's row in the table. Key positions follow `COMMAND INFO`:
/// first key, last key (negative counts from the end), step.
pub struct CmdSpec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// For `numkeys`-style commands (ZUNIONSTORE dest numkeys k...,
    /// LMPOP numkeys k..., SINTERCARD numkeys k...): the index of the
    /// numkeys argument; the keys follow it. 0 = not such a command. Keys
    /// named by first/last/step (ZUNIONSTORE's dest) are added to these.
    pub numkeys: i32,
    pub kind: Kind,
    /// Its index in each shard's command statistics (`stats`), given
    /// when the table is built.
    pub stat: StatSlot,
}

/// A command's index into the per-shard command statistics.
pub struct StatSlot(std::sync::atomic::AtomicU16);

impl StatSlot {
    /// Marks a container command (CLIENT, CONFIG, ...).
    const CONTAINER: u16 = 1 << 15;
    /// Marks a command in [`BORROWS_ARGS`].
    const BORROWS: u16 = 1 << 14;
    const FLAGS: u16 = Self::CONTAINER | Self::BORROWS;

    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        StatSlot(std::sync::atomic::AtomicU16::new(0))
    }
}

impl std::fmt::Debug for CmdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CmdSpec({})", self.name)
    }
}

impl CmdSpec {
    /// Its slot in the command statistics (`stats`).
    #[inline]
    pub fn stat_slot(&self) -> usize {
        (self.stat.0.load(std::sync::atomic::Ordering::Relaxed) & !StatSlot::FLAGS) as usize
    }

    /// Whether it is in [`BORROWS_ARGS`]: the network driver may run it on
    /// arguments that borrow the request buffer.
    #[inline]
    pub fn borrows_args(&self) -> bool {
        self.stat.0.load(std::sync::atomic::Ordering::Relaxed) & StatSlot::BORROWS != 0
    }

    /// Whether its statistics are kept per subcommand (`stats`).
    #[inline]
    pub fn stat_container(&self) -> bool {
        self.stat.0.load(std::sync::atomic::Ordering::Relaxed) & StatSlot::CONTAINER != 0
    }

    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// Indices of the key arguments of this invocation.
    pub fn key_indices(&self, args: &[Bytes]) -> impl Iterator<Item = usize> + use<> {
        let argc = args.len();
        let (first, step) = (self.first_key, self.step.max(1));
        let last = if self.last_key < 0 {
            argc as i32 + self.last_key
        } else {
            self.last_key.min(argc as i32 - 1)
        };
        // No fixed keys: an empty range.
        let range = if first <= 0 { 1..1 } else { first..last + 1 };
        // SORT's STORE destination is a key too (Redis's sortGetKeys).
        let store = match self.kind {
            Kind::Keyed(_, Some(Multi::Sort)) => sort::parse(args, !self.is_write())
                .ok()
                .and_then(|o| o.store),
            _ => None,
        };
        range
            .step_by(step as usize)
            .map(|i| i as usize)
            .chain(self.numkeys_range(args))
            .chain(store)
    }

    /// The keys a numkeys argument announces; empty when it is missing or
    /// not a positive integer that fits (the handler reports those errors).
    fn numkeys_range(&self, args: &[Bytes]) -> std::ops::Range<usize> {
        let nk = self.numkeys as usize;
        if self.numkeys <= 0 || nk >= args.len() {
            return 0..0;
        }
        match parse_i64(&args[nk]) {
            Some(n) if n > 0 && (n as usize) < args.len() - nk => nk + 1..nk + 1 + n as usize,
            _ => 0..0,
        }
    }
}

/// Where a parsed command must run.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// On the shard with this id (the connection's own or another).
    Shard(usize),
    /// Keys on several shards: a multi-shard transaction.
    Multi,
    Conn,
    Global,
}

/// Decides where a command runs. `here` is the connection's shard.
pub fn route(spec: &CmdSpec, args: &[Bytes], here: usize, nshards: usize) -> Route {
    match spec.kind {
        Kind::Keyless(_) => Route::Shard(here),
        Kind::Conn(_) => Route::Conn,
        Kind::Global => Route::Global,
        Kind::Keyed(..) => {
            if nshards == 1 {
                return Route::Shard(0);
            }
            if let Kind::Keyed(_, Some(Multi::Sort)) = spec.kind {
                return sort::route(args, !spec.is_write(), nshards);
            }
            let mut owner = None;
            for i in spec.key_indices(args) {
                let s = shard_of(&args[i], nshards);
                match owner {
                    None => owner = Some(s),
                    Some(o) if o != s => return Route::Multi,
                    _ => {}
                }
            }
            Route::Shard(owner.unwrap_or(here))
        }
    }
}

/// Result of looking a request up in the table.
pub enum Lookup {
    Found(&'static CmdSpec),
    /// The full error line to send.
    Error(String),
}

/// Commands whose handlers, with everything `exec_in` runs around them
/// (statistics, keyspace events, WATCH and blocked-client signals,
/// replication), read their arguments only during the call and keep no
/// clone of any argument `Bytes`: what they store they copy (keys into the
/// table, values into `Str`, keys into events and signals; the stream
/// encodes into its arena). The network driver runs these on arguments
/// that borrow its request buffer without a reference count
/// (`net::parse_batch`), which saves two atomic operations per argument:
/// about a tenth of a pipelined SET's CPU.
///
/// **A command may be listed only if that holds for every path of its
/// handler.** One that kept a clone would keep a dangling pointer (a clone
/// of a borrowed `Bytes` copies the pointer). Before adding one, read its
/// handler for `.clone()`, `to_vec()`, `propagate_as` and anything that
/// takes `Bytes` by value. The same goes for anything added around every
/// command in `exec_in` (a slow log, MONITOR, client tracking): it must
/// copy what it keeps. A command that goes anywhere but straight to its
/// handler (MULTI's queue, a blocking wait, a pause, the slow path) gets
/// counted arguments whatever this list says. The one way to another
/// shard that keeps them borrowed is the driver's own remote batch
/// (`Shard::post_conn_batch`), whose sender holds the request buffer until
/// the owner has run the batch and answered.
pub const BORROWS_ARGS: &[&str] = &[
    "get", "set", "setnx", "setex", "psetex", "incr", "decr", "incrby", "decrby", "strlen", "mget",
    "mset", "lpush", "rpush", "lpop", "rpop", "llen", "lrange", "sadd", "hset", "zadd",
];

/// Name -> spec, hashed with foldhash: looked up once per request.
type Table = HashMap<&'static str, &'static CmdSpec, foldhash::fast::FixedState>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut m = Table::default();
        for (i, spec) in by_stat_slot().iter().enumerate() {
            let mut bits = i as u16;
            if stats::CONTAINERS.contains(&spec.name) {
                bits |= StatSlot::CONTAINER;
            }
            if BORROWS_ARGS.contains(&spec.name) {
                bits |= StatSlot::BORROWS;
            }
            spec.stat
                .0
                .store(bits, std::sync::atomic::Ordering::Relaxed);
            m.insert(spec.name, spec);
        }
        m
    })
}

/// Every command, at the index of its statistics slot.
pub fn by_stat_slot() -> &'static [&'static CmdSpec] {
    static V: OnceLock<Vec<&'static CmdSpec>> = OnceLock::new();
    V.get_or_init(|| {
        [
            &string::COMMANDS[..],
            &keys::COMMANDS,
            &server::COMMANDS,
            &pubsub::COMMANDS,
            &repl::COMMANDS,
            &list::COMMANDS,
            &hash::COMMANDS,
            &set::COMMANDS,
            &zset::COMMANDS,
            &dump::COMMANDS,
            &bitops::COMMANDS,
            &hll::COMMANDS,
            &sort::COMMANDS,
            &script::eval::COMMANDS,
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Every command, for COMMAND / COMMAND COUNT.
pub fn all() -> impl Iterator<Item = &'static CmdSpec> {
    table().values().copied()
}

/// A command name of up to 15 bytes as one integer: its bytes lowercased,
/// little-endian, and its length in the top byte (so `get` and `get\0`
/// differ). None for longer names.
///
/// Built from overlapping word loads and lowercased a word at a time: the
/// copy into a zeroed array it replaced was a `memcpy` call whose byte
/// stores the following 8-byte loads could not forward from, a stall that
/// made `find` 5 % of a pipelined GET's server CPU.
fn packed_name(name: &[u8]) -> Option<u128> {
    let n = name.len();
    if n == 0 || n > 15 {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(name[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(name[at..at + 4].try_into().expect("4 bytes"));
    // Overlapping loads: the bytes they share are the same, so OR-ing the
    // shifted pieces is exact.
    let (lo, hi) = if n >= 8 {
        let hi = if n == 8 {
            0
        } else {
            word(n - 8) >> (8 * (16 - n))
        };
        (word(0), hi)
    } else if n >= 4 {
        (half(0) as u64 | (half(n - 4) as u64) << (8 * (n - 4)), 0)
    } else {
        let b = |i: usize| (name[i] as u64) << (8 * i);
        (b(0) | b(n / 2) | b(n - 1), 0)
    };
    let packed = ascii_lower(lo) as u128 | (ascii_lower(hi) as u128) << 64;
    Some(packed | (n as u128) << 120)
}

/// Lowercases the ASCII letters among eight bytes at once (the bit trick
/// `<[u8]>::make_ascii_lowercase` uses per word); other bytes are kept.
fn ascii_lower(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let rep = |b: u8| u64::from_ne_bytes([b; 8]);
    let seven = x & LOW7;
    let ge_a = seven.wrapping_add(rep(0x80 - b'A'));
    let gt_z = seven.wrapping_add(rep(0x7f - b'Z'));
    let upper = !x & (ge_a ^ gt_z) & HIGH;
    x | (upper >> 2)
}

/// The names [`packed_name`] takes, looked up by integer: no UTF-8 check,
/// no string hash, no byte compare. It cut `find` from about 200
/// instructions to a few dozen per request.
fn packed_table() -> &'static HashMap<u128, &'static CmdSpec, foldhash::fast::FixedState> {
    static T: OnceLock<HashMap<u128, &'static CmdSpec, foldhash::fast::FixedState>> =
        OnceLock::new();
    T.get_or_init(|| {
        table()
            .iter()
            .filter_map(|(name, &spec)| Some((packed_name(name.as_bytes())?, spec)))
            .collect()
    })
}

pub fn find(name: &[u8]) -> Option<&'static CmdSpec> {
    if let Some(k) = packed_name(name) {
        return packed_table().get(&k).copied();
    }
    let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
    table().get(lower.as_str()).copied()
}

/// Looks a command up and checks its arity, producing Redis's errors.
pub fn lookup(args: &[Bytes]) -> Lookup {
    let Some(spec) = find(&args[0]) else {
        // As Redis's processCommand: each argument quoted, cut so the list
        // stays within 128 bytes; the name cut at 128.
        let mut list = String::new();
        for a in args.iter().skip(1) {
            if list.len() >= 128 {
                break;
            }
            let room = 128 - list.len();
            list.push_str(&format!("'{}' ", sanitize(a, room)));
        }
        return Lookup::Error(format!(
            "ERR unknown command '{}', with args beginning with: {list}",
            sanitize(&args[0], 128)
        ));
    };
    let n = args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        stats::rejected(spec, args);
        return Lookup::Error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    Lookup::Found(spec)
}

/// Client bytes echoed in an error line, cut at `max` bytes. Redis only
/// maps CR and LF to spaces; invalid UTF-8 is replaced here because error
/// lines are built as text.
pub fn sanitize(b: &[u8], max: usize) -> String {
    let cut = &b[..b.len().min(max)];
    String::from_utf8_lossy(cut).replace(['\r', '\n'], " ")
}

/// Runs a keyed or keyless command on this shard. The caller has routed it
/// here and checked that no transaction holds the shard.
pub fn exec_local(
    shard: &Shard,
    spec: &CmdSpec,
    db: u16,
    proto: Proto,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
) -> bool {
    let mut ks = shard.ks.borrow_mut();
    exec_in(shard, &mut ks, spec, db, proto, args, out, Emit::Direct)
}

/// [`exec_local`], handing what it replicates to the caller (a command
/// inside EXEC: the transaction goes out as one MULTI ... EXEC).
#[allow(clippy::too_many_arguments)]
pub fn exec_local_into(
    shard: &Shard,
    spec: &CmdSpec,
    db: u16,
    proto: Proto,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    sink: &mut Vec<crate::repl::master::PEntry>,
) -> bool {
    let mut ks = shard.ks.borrow_mut();
    exec_in(shard, &mut ks, spec, db, proto, args, out, Emit::Into(sink))
}

/// Where a command's replication stream entries go.
pub enum Emit<'a> {
    /// Sequenced and appended to this shard's backlog at once.
    Direct,
    /// Collected for the caller, who emits them under its locks.
    Into(&'a mut Vec<crate::repl::master::PEntry>),
}

/// Runs a keyed or keyless command against a given keyspace: the shard's
/// own, or a scratch copy holding the keys of a multi-shard command.
/// Returns true when a blocking command found nothing and wrote no reply.
///
/// With replication active, a write that changed something is replicated
/// (after the DELs of keys its lookups expired), rewritten where its
/// effect depends on time or chance (`repl::master::rewrite`).
#[allow(clippy::too_many_arguments)]
pub fn exec_in(
    shard: &Shard,
    ks: &mut Keyspace,
    spec: &CmdSpec,
    db: u16,
    proto: Proto,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    emit: Emit,
) -> bool {
    let f = match spec.kind {
        Kind::Keyed(f, _) | Kind::Keyless(f) => f,
        _ => unreachable!("exec_in on a {} command", spec.name),
    };
    let repl = &shard.shared.repl;
    if spec.is_write() && repl.refuse_writes() {
        stats::rejected(spec, args);
        Reply::new(out, proto).error(crate::repl::master::NOREPLICAS);
        return false;
    }
    let call = stats::begin(spec);
    let reply_at = out.len();
    let now = shard.now();
    let cut = expiry_cut(shard, ks, spec.is_write(), now);
    let mut ex = Exec {
        shard,
        ks,
        db: db as usize,
        r: Reply::new(out, proto),
        now,
        cut,
        would_block: false,
        dirty: false,
        alt: Vec::new(),
    };
    f(&mut ex, args);
    crate::shard::keyspace::track_replica_ttls(false);
    let (would_block, dirty, alt) = (ex.would_block, ex.dirty, std::mem::take(&mut ex.alt));
    if !would_block {
        call.done(spec, args, &out[reply_at..]);
    }
    if ks.stats.notes_pending {
        notify::drain_expired(shard, ks);
    }
    if repl.active.load(std::sync::atomic::Ordering::Relaxed) {
        crate::repl::master::after_command(shard, ks, spec, db, args, dirty, alt, emit);
    }
    would_block
}

/// When TTLs count as passed for a command about to run on `ks`, as
/// Redis 7.0's `expireIfNeeded` and `checkAlreadyExpired` decide. On a
/// master: at `now`, and a lookup deletes what expired. On a replica,
/// expiry is its master's to decide (the master sends DEL): its master's
/// writes find every key live, so they apply as they did on the master
/// (cut 0), and a client's read finds an expired key missing but leaves
/// it in place ([`KeyspaceStats::hide_expired`], set here). A read-only
/// replica runs no writes but its master's, so a write is taken for one;
/// a writable one takes the writes run while its link applies a batch
/// of the master's stream (`Repl::applying`) for the master's, and its
/// clients' other writes, like their reads, find expired keys missing.
/// While clients are paused (CLIENT PAUSE), expired keys are hidden and
/// kept on a master too, as Redis keeps the dataset still then.
///
/// [`KeyspaceStats::hide_expired`]: crate::shard::keyspace::KeyspaceStats::hide_expired
pub fn expiry_cut(shard: &Shard, ks: &mut Keyspace, write: bool, now: u64) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let repl = &shard.shared.repl;
    let replica = repl.is_replica.load(Relaxed);
    ks.stats.hide_expired =
        replica || (shard.shared.pause.maybe() && shard.shared.pause.mode(now).is_some());
    let masters = write && (shard.read_only.get() || repl.applying.load(Relaxed));
    crate::shard::keyspace::track_replica_ttls(replica && write && !masters);
    if replica && masters { 0 } else { now }
}

/// Redis's `addReplySubcommandSyntaxError`: what DEBUG and CLIENT PAUSE
/// answer for an unknown subcommand or a wrong argument count.
pub fn subcommand_syntax_error(sub: &[u8], cmd: &str) -> String {
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        sanitize(sub, 128),
        cmd.to_uppercase()
    )
}

/// Unsubcommand error in Redis's words.
pub fn unknown_subcommand(sub: &[u8], cmd: &str) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        sanitize(sub, 128),
        cmd.to_uppercase()
    )
}

/// Parses an integer argument the way Redis's `string2ll` does: optional
/// '-', no '+', no spaces, no leading zeros except "0", within i64.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    if b == b"0" {
        return Some(0);
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

/// Parses a float argument like Redis's `getLongDoubleFromObject`, which
/// uses `strtold`: no leading space, no trailing garbage, NaN rejected;
/// `inf` and C hex floats (`0x1.8p3`) accepted.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.len() > 5 * 1024 || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let v = match s.parse::<f64>() {
        Ok(v) => v,
        Err(_) => parse_hex_float(s)?,
    };
    if v.is_nan() { None } else { Some(v) }
}

/// `[+-]0x<hex>[.<hex>][p[+-]<dec>]`, as C's strtod reads it.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let rest = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))?;
    let (mant, exp) = match rest.find(['p', 'P']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

/// Parses a DB index argument for SELECT, MOVE, COPY, SWAPDB.
pub fn parse_db(shard: &Shard, b: &[u8]) -> Result<u16, &'static str> {
    let n = parse_i64(b).ok_or(NOT_INT)?;
    let dbs = shard.databases as i64;
    if n < 0 || n >= dbs {
        Err(DB_RANGE)
    } else {
        Ok(n as u16)
    }
}

/// Records the command in the client state for CLIENT LIST.
pub fn note_cmd(client: &mut ClientState, spec: &'static CmdSpec, args: &[Bytes]) {
    client.last_cmd = spec.name;
    client.last_sub = match spec.name {
        "client" | "config" | "command" | "object" | "memory" | "debug" if args.len() > 1 => {
            Some(Bytes::from(args[1].to_ascii_lowercase()))
        }
        _ => None,
    };
}

pub fn eq_ic(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_name_is_the_lowercased_bytes_and_length() {
        let reference = |name: &[u8]| {
            let mut b = [0u8; 16];
            b[..name.len()].copy_from_slice(name);
            b.make_ascii_lowercase();
            b[15] = name.len() as u8;
            u128::from_le_bytes(b)
        };
        // Letters, their neighbours in ASCII ('@', '[', '`', '{'), digits,
        // bytes past ASCII and NUL, at every length and offset.
        let alphabet: Vec<u8> = b"aZ@[`{0|\x80\xc1\xff\x00Az9_-".to_vec();
        let mut seed = 7u64;
        for n in 0..=17 {
            for _ in 0..200 {
                let name: Vec<u8> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        alphabet[(seed >> 33) as usize % alphabet.len()]
                    })
                    .collect();
                let want = (1..=15).contains(&n).then(|| reference(&name));
                assert_eq!(packed_name(&name), want, "{name:?}");
            }
        }
    }

    #[test]
    fn every_command_is_found_in_any_case() {
        for spec in all() {
            let name = spec.name.as_bytes();
            for spelled in [
                name.to_vec(),
                name.to_ascii_uppercase(),
                name.iter()
                    .enumerate()
                    .map(|(i, b)| {
                        if i % 2 == 0 {
                            b.to_ascii_uppercase()
                        } else {
                            *b
                        }
                    })
                    .collect(),
            ] {
                let got = find(&spelled).map(|s| s.name);
                assert_eq!(
                    got,
                    Some(spec.name),
                    "{:?}",
                    String::from_utf8_lossy(&spelled)
                );
            }
            let mut longer = name.to_vec();
            longer.push(0);
            assert!(find(&longer).is_none_or(|s| s.name != spec.name));
            assert!(find(&name[..name.len() - 1]).is_none_or(|s| s.name != spec.name));
        }
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"no-such-command-with-a-long-name",
            b"g\0t",
        ] {
            assert!(find(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b"+1"[..], b" 1", b"01", b"-0", b"", b"1 "] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn floats_like_strtold() {
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"-0x1.8p1"), Some(-3.0));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        for bad in [&b"nan"[..], b" 1", b"1 ", b"", b"0x", b"abc"] {
            assert_eq!(parse_f64(bad), None, "{bad:?}");
        }
    }
}
