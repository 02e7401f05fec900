//! Server configuration: the parameter table, redis.conf parser, `--name value` overrides and CONFIG GET/SET/REWRITE; owned by the main thread, which hands copies or single values to the shards.
//!
//! Every parameter is one row of [`PARAMS`]: name, aliases, kind, default
//! (written the way a config file would write it), flags and an optional check.
//! Loading a file, `--name value` overrides, CONFIG SET and CONFIG REWRITE all
//! go through the same per-kind parser and printer, so a value that can be
//! read can always be written back and read again.
//!
//! Behaviour and error strings follow Redis 7.0 (`src/config.c`), because
//! clients and test suites match on them:
//!
//! ```text
//! CONFIG SET port abc
//! -ERR CONFIG SET failed (possibly related to argument 'port') - argument couldn't be parsed into an integer
//! CONFIG SET nosuch 1
//! -ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'
//! ```
//!
//! The encoding-tuning parameters (`hash-max-listpack-*`, `zset-max-listpack-*`,
//! `list-max-listpack-size`, `set-max-intset-entries`, `stream-node-*`, ...) and
//! a handful of persistence/runtime knobs found in stock redis.conf files are
//! accepted, validated and reported exactly like Redis so that existing
//! configs and test scripts work, but they are advisory: tether's data
//! structures do not change encoding based on them. Such rows are marked
//! "advisory" in the table.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::glob::glob_match;

/// A fatal problem with the startup configuration; `Display` prints the full
/// multi-line message meant for stderr.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One client class of `client-output-buffer-limit`. Index 0 is `normal`,
/// 1 is `slave` (replica), 2 is `pubsub`, as in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObufLimit {
    pub hard_bytes: u64,
    pub soft_bytes: u64,
    pub soft_seconds: u64,
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// CONFIG SET may change it at runtime.
const MUTABLE: u8 = 1;
/// CONFIG SET refuses it unless `enable-protected-configs` allows the client.
const PROTECTED: u8 = 2;
/// The value is a secret; callers should redact it from SLOWLOG/MONITOR.
const SENSITIVE: u8 = 4;
/// Advisory in tether: accepted and reported, but nothing reads it.
const ADVISORY: u8 = 8;
/// Where the shards listen: bound once at start-up, so CONFIG SET takes
/// only the value already in force.
const LISTEN: u8 = 16;
/// tether's own knobs: CONFIG GET lists them for their exact name only, not
/// for a pattern (Redis's `HIDDEN_CONFIG`), so `CONFIG GET *` shows what a
/// Redis 7.0 tool expects and can set back.
const HIDDEN: u8 = 32;

const INT_MAX: i128 = i32::MAX as i128;
const INT_MIN: i128 = i32::MIN as i128;
const UINT_MAX: i128 = u32::MAX as i128;
const LONG_MAX: i128 = i64::MAX as i128;
const ULLONG_MAX: i128 = u64::MAX as i128;

#[derive(Clone, Copy)]
enum Kind {
    /// `yes` / `no`.
    Bool,
    /// An integer written in octal (file modes), as Redis's OCTAL_CONFIG.
    Octal { max: i128 },
    /// Plain integer (Redis `string2ll`: no sign `+`, no leading zeros).
    Int { min: i128, max: i128 },
    /// Byte count with optional unit (`k`=1000, `kb`=1024, `m`, `mb`, `g`, `gb`);
    /// CONFIG GET prints plain bytes.
    Mem { min: i128, max: i128 },
    /// One of a fixed set of words, case-insensitive on input.
    Enum(&'static [&'static str]),
    /// Free text. `nullable` strings print nothing on CONFIG REWRITE when empty,
    /// like Redis's EMPTY_STRING_IS_NULL configs.
    Str { nullable: bool },
    /// `bind`: up to 16 addresses.
    Bind,
    /// `save`: "seconds changes" pairs, or empty.
    Save,
    /// `client-output-buffer-limit`: "class hard soft seconds" quads.
    Obuf,
    /// `replicaof`: "host port", or "no one".
    ReplicaOf,
    /// `dir`: must name an existing directory; printed as an absolute path.
    Dir,
    /// `notify-keyspace-events` flag letters.
    Events,
    /// `shutdown-on-sigterm` / `shutdown-on-sigint`: `default`, or any of
    /// `save` `nosave` `now` `force` ([`SHUTDOWN_FLAGS`]).
    ShutdownFlags,
}

impl Kind {
    /// Kinds that take several words in a config file and a space-separated
    /// list in CONFIG SET (Redis's MULTI_ARG_CONFIG).
    fn multi_arg(self) -> bool {
        matches!(
            self,
            Kind::Bind | Kind::Save | Kind::Obuf | Kind::ReplicaOf | Kind::ShutdownFlags
        )
    }
}

/// Extra validation or normalisation run after the kind's own parser.
type Check = fn(Value) -> Result<Value, String>;

struct Param {
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    /// Default in config-file syntax (parsed by the same code as user input).
    default: &'static str,
    flags: u8,
    check: Option<Check>,
}

const fn p(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: &'static str,
    flags: u8,
) -> Param {
    Param {
        name,
        aliases,
        kind,
        default,
        flags,
        check: None,
    }
}

const fn pc(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: &'static str,
    flags: u8,
    check: Check,
) -> Param {
    Param {
        name,
        aliases,
        kind,
        default,
        flags,
        check: Some(check),
    }
}

const fn int(min: i128, max: i128) -> Kind {
    Kind::Int { min, max }
}

const fn mem(min: i128, max: i128) -> Kind {
    Kind::Mem { min, max }
}

const STR: Kind = Kind::Str { nullable: false };
const NSTR: Kind = Kind::Str { nullable: true };
const BOOL: Kind = Kind::Bool;
const NONE: &[&str] = &[];

const LOGLEVELS: &[&str] = &["debug", "verbose", "notice", "warning"];
const MAXMEMORY_POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];
const FSYNC: &[&str] = &["everysec", "always", "no"];
const PROTECTED_ACTION: &[&str] = &["no", "yes", "local"];
const SUPERVISED: &[&str] = &["upstart", "systemd", "auto", "no"];
const PROPAGATION_ERROR: &[&str] = &["ignore", "panic", "panic-on-replicas"];
const DISKLESS_LOAD: &[&str] = &["disabled", "on-empty-db", "swapdb"];

/// Same default as Redis (0 for normal, 256mb/64mb/60s for replicas,
/// 32mb/8mb/60s for pubsub).
const OBUF_DEFAULT: &str = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";

/// Every parameter tether knows, in the order CONFIG GET and CONFIG REWRITE
/// use. Ranges are Redis 7.0's unless noted.
#[rustfmt::skip]
static PARAMS: &[Param] = &[
    // --- network -----------------------------------------------------------
    // Redis defaults to "* -::*" guarded by protected-mode; tether listens on
    // loopback unless told otherwise, which is safer with no password set.
    p("bind", NONE, Kind::Bind, "127.0.0.1", MUTABLE | LISTEN),
    // A unix socket to listen on besides TCP ("" = none), and its mode.
    p("unixsocket", NONE, NSTR, "", 0),
    p("unixsocketperm", NONE, Kind::Octal { max: 0o777 }, "0", 0),
    p("port", NONE, int(0, 65535), "6379", MUTABLE | LISTEN),
    p("protected-mode", NONE, BOOL, "yes", MUTABLE),
    p("tcp-backlog", NONE, int(0, INT_MAX), "511", 0),
    p("timeout", NONE, int(0, INT_MAX), "0", MUTABLE),
    p("tcp-keepalive", NONE, int(0, INT_MAX), "300", MUTABLE),
    p("maxclients", NONE, int(1, UINT_MAX), "10000", MUTABLE),
    p("proto-max-bulk-len", NONE, mem(1024 * 1024, LONG_MAX), "512mb", MUTABLE),
    p("client-query-buffer-limit", NONE, mem(1024 * 1024, LONG_MAX), "1gb", MUTABLE),
    p("client-output-buffer-limit", NONE, Kind::Obuf, OBUF_DEFAULT, MUTABLE),
    p("io-threads", NONE, int(1, 128), "1", ADVISORY),
    // --- tether threading (not in Redis) ------------------------------------
    // Number of shard executors; 0 = one per CPU in `cpus` (or the affinity mask).
    p("shards", NONE, int(0, 1024), "0", HIDDEN),
    // CPU list like "0,2-3"; empty = the process affinity mask.
    pc("cpus", NONE, STR, "", HIDDEN, check_cpus),
    // --- general -------------------------------------------------------------
    pc("daemonize", NONE, BOOL, "no", 0, check_daemonize),
    p("supervised", NONE, Kind::Enum(SUPERVISED), "no", ADVISORY),
    p("pidfile", NONE, NSTR, "", 0),
    p("loglevel", NONE, Kind::Enum(LOGLEVELS), "notice", MUTABLE),
    p("logfile", NONE, STR, "", 0),
    p("databases", NONE, int(1, INT_MAX), "16", 0),
    p("always-show-logo", NONE, BOOL, "no", 0),
    p("set-proc-title", NONE, BOOL, "yes", ADVISORY),
    p("enable-protected-configs", NONE, Kind::Enum(PROTECTED_ACTION), "no", 0),
    p("enable-debug-command", NONE, Kind::Enum(PROTECTED_ACTION), "no", 0),
    p("enable-module-command", NONE, Kind::Enum(PROTECTED_ACTION), "no", ADVISORY),
    // Hz is a hint: Redis accepts any non-negative value and clamps to 1..500.
    pc("hz", NONE, int(0, INT_MAX), "10", MUTABLE, clamp_hz),
    p("dynamic-hz", NONE, BOOL, "yes", MUTABLE),
    // --- snapshotting --------------------------------------------------------
    p("save", NONE, Kind::Save, "3600 1 300 100 60 10000", MUTABLE),
    p("stop-writes-on-bgsave-error", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("rdbcompression", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("rdbchecksum", NONE, BOOL, "yes", ADVISORY),
    pc("dbfilename", NONE, STR, "dump.rdb", MUTABLE | PROTECTED, check_basename_db),
    p("rdb-del-sync-files", NONE, BOOL, "no", MUTABLE | ADVISORY),
    p("dir", NONE, Kind::Dir, ".", MUTABLE | PROTECTED),
    // --- replication ---------------------------------------------------------
    // Immutable here as in Redis: REPLICAOF is the runtime interface.
    p("replicaof", &["slaveof"], Kind::ReplicaOf, "", 0),
    p("masterauth", NONE, NSTR, "", MUTABLE | SENSITIVE),
    p("masteruser", NONE, NSTR, "", MUTABLE | SENSITIVE),
    p("replica-serve-stale-data", &["slave-serve-stale-data"], BOOL, "yes", MUTABLE),
    p("replica-read-only", &["slave-read-only"], BOOL, "yes", MUTABLE),
    // What a read-only replica does when a command from its master fails:
    // log it (ignore), or crash rather than diverge (panic,
    // panic-on-replicas; tether has no AOF, so the two are the same).
    p("propagation-error-behavior", NONE, Kind::Enum(PROPAGATION_ERROR), "ignore", MUTABLE),
    p("repl-diskless-sync", NONE, BOOL, "yes", MUTABLE),
    p("repl-diskless-sync-delay", NONE, int(0, INT_MAX), "5", MUTABLE),
    // Testing knob (hidden, as in Redis): microseconds a snapshot waits
    // after each key it writes (negative: nanoseconds), `repl::snapshot`.
    p("rdb-key-save-delay", NONE, int(INT_MIN, INT_MAX), "0", MUTABLE | HIDDEN),
    p("repl-diskless-sync-max-replicas", NONE, int(0, INT_MAX), "0", MUTABLE | ADVISORY),
    p("repl-diskless-load", NONE, Kind::Enum(DISKLESS_LOAD), "disabled", MUTABLE | ADVISORY),
    p("repl-ping-replica-period", &["repl-ping-slave-period"], int(1, INT_MAX), "10", MUTABLE),
    p("repl-timeout", NONE, int(1, INT_MAX), "60", MUTABLE),
    p("repl-disable-tcp-nodelay", NONE, BOOL, "no", MUTABLE),
    p("repl-backlog-size", NONE, mem(1, LONG_MAX), "1mb", MUTABLE),
    p("repl-backlog-ttl", NONE, int(0, LONG_MAX), "3600", MUTABLE),
    // tether extra: TCP_USER_TIMEOUT for replication links, in milliseconds;
    // 0 = derive it from repl-timeout, -1 = off.
    p("repl-tcp-user-timeout", NONE, int(-1, INT_MAX), "0", MUTABLE),
    p("replica-priority", &["slave-priority"], int(0, INT_MAX), "100", MUTABLE),
    p("replica-announced", NONE, BOOL, "yes", MUTABLE),
    p("replica-announce-ip", &["slave-announce-ip"], NSTR, "", MUTABLE),
    p("replica-announce-port", &["slave-announce-port"], int(0, 65535), "0", MUTABLE),
    p("replica-lazy-flush", &["slave-lazy-flush"], BOOL, "no", MUTABLE | ADVISORY),
    p("replica-ignore-maxmemory", &["slave-ignore-maxmemory"], BOOL, "yes", MUTABLE | ADVISORY),
    p("min-replicas-to-write", &["min-slaves-to-write"], int(0, INT_MAX), "0", MUTABLE),
    p("min-replicas-max-lag", &["min-slaves-max-lag"], int(0, INT_MAX), "10", MUTABLE),
    // --- security --------------------------------------------------------------
    p("requirepass", NONE, NSTR, "", MUTABLE | SENSITIVE),
    p("acllog-max-len", NONE, int(0, LONG_MAX), "128", MUTABLE | ADVISORY),
    // --- memory ----------------------------------------------------------------
    p("maxmemory", NONE, mem(0, ULLONG_MAX), "0", MUTABLE),
    p("maxmemory-policy", NONE, Kind::Enum(MAXMEMORY_POLICIES), "noeviction", MUTABLE),
    p("maxmemory-samples", NONE, int(1, INT_MAX), "5", MUTABLE),
    p("maxmemory-eviction-tenacity", NONE, int(0, 100), "10", MUTABLE | ADVISORY),
    p("lfu-log-factor", NONE, int(0, INT_MAX), "10", MUTABLE | ADVISORY),
    p("lfu-decay-time", NONE, int(0, INT_MAX), "1", MUTABLE | ADVISORY),
    p("lazyfree-lazy-eviction", NONE, BOOL, "no", MUTABLE),
    p("lazyfree-lazy-expire", NONE, BOOL, "no", MUTABLE),
    p("lazyfree-lazy-server-del", NONE, BOOL, "no", MUTABLE),
    p("lazyfree-lazy-user-del", NONE, BOOL, "no", MUTABLE),
    p("lazyfree-lazy-user-flush", NONE, BOOL, "no", MUTABLE),
    p("active-expire-effort", NONE, int(1, 10), "1", MUTABLE | ADVISORY),
    p("jemalloc-bg-thread", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    // --- append only file (tether has none yet) --------------------------------
    pc("appendonly", NONE, BOOL, "no", MUTABLE, check_appendonly),
    pc("appendfilename", NONE, STR, "appendonly.aof", ADVISORY, check_basename_aof),
    pc("appenddirname", NONE, STR, "appendonlydir", ADVISORY, check_basename_aofdir),
    p("appendfsync", NONE, Kind::Enum(FSYNC), "everysec", MUTABLE | ADVISORY),
    p("no-appendfsync-on-rewrite", NONE, BOOL, "no", MUTABLE | ADVISORY),
    p("auto-aof-rewrite-percentage", NONE, int(0, INT_MAX), "100", MUTABLE | ADVISORY),
    p("auto-aof-rewrite-min-size", NONE, mem(0, LONG_MAX), "64mb", MUTABLE | ADVISORY),
    p("aof-load-truncated", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("aof-use-rdb-preamble", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("aof-rewrite-incremental-fsync", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("rdb-save-incremental-fsync", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    // --- scripting, monitoring -------------------------------------------------
    p("busy-reply-threshold", &["lua-time-limit"], int(0, LONG_MAX), "5000", MUTABLE),
    p("slowlog-log-slower-than", NONE, int(-1, LONG_MAX), "10000", MUTABLE),
    p("slowlog-max-len", NONE, int(0, LONG_MAX), "128", MUTABLE),
    p("latency-monitor-threshold", NONE, int(0, LONG_MAX), "0", MUTABLE),
    p("latency-tracking", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("notify-keyspace-events", NONE, Kind::Events, "", MUTABLE),
    p("shutdown-timeout", NONE, int(0, INT_MAX), "10", MUTABLE),
    p("shutdown-on-sigterm", NONE, Kind::ShutdownFlags, "default", MUTABLE),
    p("shutdown-on-sigint", NONE, Kind::ShutdownFlags, "default", MUTABLE),
    p("tracking-table-max-keys", NONE, int(0, LONG_MAX), "1000000", MUTABLE | ADVISORY),
    p("crash-log-enabled", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("crash-memcheck-enabled", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    p("disable-thp", NONE, BOOL, "yes", ADVISORY),
    // --- encoding tuning: advisory (see module docs) -----------------------------
    p("hash-max-listpack-entries", &["hash-max-ziplist-entries"], int(0, LONG_MAX), "512", MUTABLE | ADVISORY),
    p("hash-max-listpack-value", &["hash-max-ziplist-value"], mem(0, LONG_MAX), "64", MUTABLE | ADVISORY),
    p("list-max-listpack-size", &["list-max-ziplist-size"], int(INT_MIN, INT_MAX), "-2", MUTABLE | ADVISORY),
    p("list-compress-depth", NONE, int(0, INT_MAX), "0", MUTABLE | ADVISORY),
    p("set-max-intset-entries", NONE, int(0, LONG_MAX), "512", MUTABLE | ADVISORY),
    p("zset-max-listpack-entries", &["zset-max-ziplist-entries"], int(0, LONG_MAX), "128", MUTABLE | ADVISORY),
    p("zset-max-listpack-value", &["zset-max-ziplist-value"], mem(0, LONG_MAX), "64", MUTABLE | ADVISORY),
    p("hll-sparse-max-bytes", NONE, mem(0, LONG_MAX), "3000", MUTABLE),
    p("stream-node-max-bytes", NONE, mem(0, LONG_MAX), "4096", MUTABLE | ADVISORY),
    p("stream-node-max-entries", NONE, int(0, LONG_MAX), "100", MUTABLE | ADVISORY),
    p("activerehashing", NONE, BOOL, "yes", MUTABLE | ADVISORY),
    pc("activedefrag", NONE, BOOL, "no", MUTABLE, check_activedefrag),
];

/// Directives Redis 7.0 still accepts (and ignores) in config files, with the
/// exact word count it requires.
const DEPRECATED: &[(&str, usize)] = &[
    ("list-max-ziplist-entries", 2),
    ("list-max-ziplist-value", 2),
    ("lua-replicate-commands", 2),
];

fn check_daemonize(v: Value) -> Result<Value, String> {
    match v {
        Value::Bool(true) => Err("tether does not daemonize; run it in the foreground under systemd or another supervisor".into()),
        v => Ok(v),
    }
}

fn check_appendonly(v: Value) -> Result<Value, String> {
    match v {
        Value::Bool(true) => Err("append only file persistence is not supported by tether".into()),
        v => Ok(v),
    }
}

fn check_activedefrag(v: Value) -> Result<Value, String> {
    // Same refusal as a Redis built without jemalloc, so test suites that
    // probe for defrag support skip those tests instead of failing them.
    match v {
        Value::Bool(true) => Err("Active defragmentation cannot be enabled: it requires a Redis server compiled with a modified Jemalloc like the one shipped by default with the Redis source distribution".into()),
        v => Ok(v),
    }
}

fn clamp_hz(v: Value) -> Result<Value, String> {
    match v {
        Value::Int(n) => Ok(Value::Int(n.clamp(1, 500))),
        v => Ok(v),
    }
}

fn is_basename(s: &str) -> bool {
    !s.contains('/') && !s.contains('\\')
}

fn check_basename_db(v: Value) -> Result<Value, String> {
    match &v {
        Value::Str(s) if !is_basename(s) => {
            Err("dbfilename can't be a path, just a filename".into())
        }
        _ => Ok(v),
    }
}

fn check_basename_aof(v: Value) -> Result<Value, String> {
    match &v {
        Value::Str(s) if s.is_empty() => Err("appendfilename can't be empty".into()),
        Value::Str(s) if !is_basename(s) => {
            Err("appendfilename can't be a path, just a filename".into())
        }
        _ => Ok(v),
    }
}

fn check_basename_aofdir(v: Value) -> Result<Value, String> {
    match &v {
        Value::Str(s) if s.is_empty() => Err("appenddirname can't be empty".into()),
        Value::Str(s) if !is_basename(s) => {
            Err("appenddirname can't be a path, just a dirname".into())
        }
        _ => Ok(v),
    }
}

fn check_cpus(v: Value) -> Result<Value, String> {
    match &v {
        Value::Str(s) => parse_cpu_list(s).map(|_| v.clone()),
        _ => Ok(v),
    }
}

/// Parses "0,2-3" into [0, 2, 3]. Empty means "not set".
fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    const ERR: &str = "argument must be a comma-separated list of CPU ids or ranges, like 0,2-3";
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| ERR.to_string())?;
        let hi: usize = hi.parse().map_err(|_| ERR.to_string())?;
        if lo > hi || hi >= 4096 {
            return Err(ERR.into());
        }
        for c in lo..=hi {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Bool(bool),
    /// Int and Mem kinds; i128 holds every Redis range (up to ULLONG_MAX).
    Int(i128),
    /// Index into the kind's word list.
    Enum(usize),
    Str(String),
    List(Vec<String>),
    Save(Vec<(i64, i64)>),
    Obuf([ObufLimit; 3]),
    ReplicaOf(Option<(String, u16)>),
    Events(u32),
    /// Bits of [`SHUTDOWN_FLAGS`].
    ShutdownFlags(u8),
}

/// The words of `shutdown-on-sig*` and their bits, in Redis's order;
/// `default` (no bit) asks for SHUTDOWN's defaults.
pub const SHUTDOWN_FLAGS: [(&str, u8); 4] = [
    ("save", SHUTDOWN_SAVE),
    ("nosave", SHUTDOWN_NOSAVE),
    ("now", SHUTDOWN_NOW),
    ("force", SHUTDOWN_FORCE),
];
pub const SHUTDOWN_SAVE: u8 = 1;
pub const SHUTDOWN_NOSAVE: u8 = 2;
pub const SHUTDOWN_NOW: u8 = 4;
pub const SHUTDOWN_FORCE: u8 = 8;

fn shutdown_flags_to_string(f: u8) -> String {
    if f == 0 {
        return "default".into();
    }
    SHUTDOWN_FLAGS
        .iter()
        .filter(|(_, b)| f & b != 0)
        .map(|(w, _)| *w)
        .collect::<Vec<_>>()
        .join(" ")
}

// notify-keyspace-events flags, Redis 7.0 values and letters.
use crate::cmd::notify::{
    ALL as NOTIFY_ALL, EVICTED as NOTIFY_EVICTED, EXPIRED as NOTIFY_EXPIRED,
    GENERIC as NOTIFY_GENERIC, HASH as NOTIFY_HASH, KEY_MISS as NOTIFY_KEY_MISS,
    KEYEVENT as NOTIFY_KEYEVENT, KEYSPACE as NOTIFY_KEYSPACE, LIST as NOTIFY_LIST,
    MODULE as NOTIFY_MODULE, NEW as NOTIFY_NEW, SET as NOTIFY_SET, STREAM as NOTIFY_STREAM,
    STRING as NOTIFY_STRING, ZSET as NOTIFY_ZSET,
};

fn events_from_str(s: &[u8]) -> Option<u32> {
    let mut f = 0;
    for &c in s {
        f |= match c {
            b'A' => NOTIFY_ALL,
            b'g' => NOTIFY_GENERIC,
            b'$' => NOTIFY_STRING,
            b'l' => NOTIFY_LIST,
            b's' => NOTIFY_SET,
            b'h' => NOTIFY_HASH,
            b'z' => NOTIFY_ZSET,
            b'x' => NOTIFY_EXPIRED,
            b'e' => NOTIFY_EVICTED,
            b'K' => NOTIFY_KEYSPACE,
            b'E' => NOTIFY_KEYEVENT,
            b't' => NOTIFY_STREAM,
            b'm' => NOTIFY_KEY_MISS,
            b'd' => NOTIFY_MODULE,
            b'n' => NOTIFY_NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// Canonical spelling, as Redis prints it (note: "An" prints as "A", a Redis quirk).
fn events_to_string(f: u32) -> String {
    let mut s = String::new();
    if f & NOTIFY_ALL == NOTIFY_ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (NOTIFY_GENERIC, 'g'),
            (NOTIFY_STRING, '$'),
            (NOTIFY_LIST, 'l'),
            (NOTIFY_SET, 's'),
            (NOTIFY_HASH, 'h'),
            (NOTIFY_ZSET, 'z'),
            (NOTIFY_EXPIRED, 'x'),
            (NOTIFY_EVICTED, 'e'),
            (NOTIFY_STREAM, 't'),
            (NOTIFY_MODULE, 'd'),
            (NOTIFY_NEW, 'n'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [
        (NOTIFY_KEYSPACE, 'K'),
        (NOTIFY_KEYEVENT, 'E'),
        (NOTIFY_KEY_MISS, 'm'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Low-level parsers (Redis util.c equivalents)
// ---------------------------------------------------------------------------

/// Redis `string2ll`: optional '-', no '+', no leading zeros, no spaces.
fn string2ll(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (s.len() > 1) {
        return None; // "0" alone is fine; "01" and "-0" are not
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Redis `memtoull`: digits then an optional case-insensitive unit
/// (b, k=1000, kb=1024, m, mb, g, gb). Negative values are rejected.
fn memtoull(s: &[u8]) -> Option<u64> {
    let split = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let mul: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    // Redis would read "" or "kb" as 0 (strtoull of nothing); we refuse, since
    // that is always a typo.
    if digits.is_empty() {
        return None;
    }
    let v: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    v.checked_mul(mul)
}

/// C `strtoll(s, &end, 10)` followed by Redis's `*end == '\0'` check: leading
/// whitespace and a sign are allowed, trailing bytes are not, and the empty
/// string reads as 0 (the end pointer never moved). Saturates like strtoll.
fn strtoll_whole(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i128 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = (v * 10 + (s[i] - b'0') as i128).min(i64::MAX as i128 + 1);
        i += 1;
    }
    if i == start || i != s.len() {
        return None;
    }
    let v = if neg { -v } else { v };
    Some(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Redis `sdssplitargs`: splits a config line into words, honouring
/// "double quotes" (with \n \r \t \b \a \xHH and \<any> escapes) and
/// 'single quotes' (only \' is special). A closing quote must be followed by
/// whitespace or the end of the line. Returns None on unbalanced quotes.
pub(crate) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i >= line.len() || line[i] == 0 {
            return Some(out);
        }
        let (mut inq, mut insq, mut done) = (false, false, false);
        let mut cur = Vec::new();
        while !done {
            let c = at(i);
            if inq {
                if c == b'\\'
                    && at(i + 1) == b'x'
                    && hex(at(i + 2)).is_some()
                    && hex(at(i + 3)).is_some()
                {
                    cur.push(hex(at(i + 2)).unwrap() * 16 + hex(at(i + 3)).unwrap());
                    i += 3;
                } else if c == b'\\' && at(i + 1) != 0 {
                    i += 1;
                    cur.push(match at(i) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(i + 1) != 0 && !is_c_space(at(i + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if c == b'\\' && at(i + 1) == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(i + 1) != 0 && !is_c_space(at(i + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            if c != 0 {
                i += 1;
            }
        }
        out.push(cur);
    }
}

/// Redis `sdscatrepr`: a double-quoted string that `split_args` reads back
/// to the same bytes.
fn repr(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Redis CONFIG REWRITE memory notation: the largest exact gb/mb/kb unit.
fn format_memory(v: i128) -> String {
    const KB: i128 = 1024;
    if v != 0 && v % (KB * KB * KB) == 0 {
        format!("{}gb", v / (KB * KB * KB))
    } else if v != 0 && v % (KB * KB) == 0 {
        format!("{}mb", v / (KB * KB))
    } else if v != 0 && v % KB == 0 {
        format!("{}kb", v / KB)
    } else {
        v.to_string()
    }
}

/// `io::Error` text without Rust's " (os error N)" suffix, i.e. strerror().
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn utf8(arg: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(arg).map_err(|_| "argument must be valid UTF-8".to_string())
}

/// Case-insensitive name (and alias) -> table index.
fn index() -> &'static HashMap<String, usize> {
    static INDEX: OnceLock<HashMap<String, usize>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = HashMap::new();
        for (i, p) in PARAMS.iter().enumerate() {
            for n in std::iter::once(&p.name).chain(p.aliases.iter()) {
                let prev = m.insert(n.to_string(), i);
                debug_assert!(prev.is_none(), "duplicate config name {n}");
            }
        }
        m
    })
}

fn lookup(name: &[u8]) -> Option<usize> {
    let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
    index().get(&lower).copied()
}

/// True for parameters whose values are secrets (requirepass, masterauth,
/// masteruser), so callers can redact CONFIG SET arguments from
/// SLOWLOG/MONITOR the way Redis does.
pub fn is_sensitive(name: &[u8]) -> bool {
    lookup(name).is_some_and(|i| PARAMS[i].flags & SENSITIVE != 0)
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// Where a directive came from, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    File,
    Args,
}

/// The server's configuration. Cheap to clone; the main thread owns the
/// authoritative copy and applies CONFIG SET to it.
#[derive(Clone)]
pub struct Config {
    /// Parallel to `PARAMS`.
    values: Vec<Value>,
    /// Absolute path of the file we were started with, for CONFIG REWRITE.
    file: Option<PathBuf>,
}

impl fmt::Debug for Config {
    /// Every parameter as CONFIG GET prints it, secrets redacted, so a
    /// `{:?}` in a log line cannot leak `requirepass`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        m.entry(&"config-file", &self.file);
        for (i, p) in PARAMS.iter().enumerate() {
            if p.flags & SENSITIVE != 0 {
                m.entry(&p.name, &"<redacted>");
            } else {
                m.entry(&p.name, &self.format(i));
            }
        }
        m.finish()
    }
}

impl Default for Config {
    /// Built-in defaults: Redis 7.0's for every shared parameter, except
    /// `bind` (loopback only).
    fn default() -> Config {
        let mut c = Config {
            values: Vec::with_capacity(PARAMS.len()),
            file: None,
        };
        for (i, p) in PARAMS.iter().enumerate() {
            let v = c
                .parse_words(i, &default_words(p))
                .unwrap_or_else(|e| panic!("bad default for {}: {e}", p.name));
            c.values.push(v);
        }
        c
    }
}

/// The default of `p` as the word list its parser expects.
fn default_words(p: &Param) -> Vec<Vec<u8>> {
    if p.kind.multi_arg() {
        split_args(p.default.as_bytes()).unwrap_or_default()
    } else {
        vec![p.default.as_bytes().to_vec()]
    }
}

impl Config {
    /// Builds the configuration like `redis-server` does from its arguments
    /// (`args` excludes the program name):
    ///
    /// ```text
    /// tether [CONFIG_FILE] [--name value [value ...]] ...
    /// tether /etc/tether.conf --port 7000 --save 900 1 --save "300 10"
    /// ```
    ///
    /// The file is loaded first, then the options in order, so options win.
    pub fn from_args(args: &[String]) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        // Redis loads the file and the options as one text, so `save` in
        // both appends; share the "first save seen" state to match.
        let mut saw_save = false;
        let mut rest = args;
        if let Some(first) = args.first().filter(|a| !a.starts_with("--")) {
            if first == "-" {
                return Err(ConfigError("Reading the configuration from stdin is not supported by tether; pass a file path".into()));
            }
            let path = Path::new(first);
            let text = std::fs::read(path).map_err(|e| {
                ConfigError(format!(
                    "Fatal error, can't open config file '{}': {}",
                    first,
                    strerror(&e)
                ))
            })?;
            cfg.load_bytes(&text, Origin::File, &mut saw_save)?;
            cfg.file = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
            rest = &args[1..];
        }

        // Turn the options into config-file lines, as redis-server 7.0 does:
        // "--name" opens a line and every following word is appended quoted
        // (so values with spaces survive), up to the next "--" word that
        // comes after at least one value. A name still waiting for its
        // first value takes the next word whatever it looks like: `--port
        // --loglevel verbose` is `port "--loglevel" "verbose"`.
        let mut lines: Vec<String> = Vec::new();
        let mut has_value = true;
        for (i, arg) in rest.iter().enumerate() {
            if has_value && let Some(opt) = arg.strip_prefix("--") {
                // "--port 6380" given as one shell word is taken verbatim,
                // value included.
                lines.push(opt.to_string());
                has_value = split_args(arg.as_bytes()).is_some_and(|w| w.len() > 1);
                let next_is_option = rest.get(i + 1).map(|n| n.starts_with("--"));
                if !has_value && opt.eq_ignore_ascii_case("save") && next_is_option != Some(false) {
                    // `--save` alone means "no snapshots", like Redis 7.0.1+.
                    lines.last_mut().unwrap().push_str(" \"\"");
                    has_value = true;
                }
            } else if let Some(line) = lines.last_mut() {
                has_value = true;
                line.push(' ');
                line.push_str(&repr(arg.as_bytes()));
            } else {
                return Err(ConfigError(format!(
                    "*** FATAL CONFIG FILE ERROR ***\nReading the command line options\n>>> '{arg}'\nOptions must start with '--' (only the first argument may be a config file)"
                )));
            }
        }
        cfg.load_bytes(lines.join("\n").as_bytes(), Origin::Args, &mut saw_save)?;
        Ok(cfg)
    }

    /// Applies redis.conf-syntax `text` on top of the current values, all or
    /// nothing. `source` names the text in error messages (a path, or e.g.
    /// "test"). `include` is not supported and is reported as an error.
    pub fn load_text(&mut self, text: &str, source: &str) -> Result<(), ConfigError> {
        let _ = source; // Redis's message does not name the file; neither do we.
        self.load_bytes(text.as_bytes(), Origin::File, &mut false)
    }

    /// Redis: the first `save` line of a load replaces the defaults, later
    /// ones add to it, so a file can list one rule per line; `saw_save`
    /// carries that across the pieces of one load.
    fn load_bytes(
        &mut self,
        text: &[u8],
        origin: Origin,
        saw_save: &mut bool,
    ) -> Result<(), ConfigError> {
        let mut next = self.clone();
        let mut seen = *saw_save;
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = trim(raw);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let fail = |msg: &str| {
                let shown = String::from_utf8_lossy(line);
                let place = match origin {
                    Origin::File => format!("Reading the configuration file, at line {}", n + 1),
                    Origin::Args => {
                        format!("Reading the command line options, at option {}", n + 1)
                    }
                };
                ConfigError(format!(
                    "*** FATAL CONFIG FILE ERROR ***\n{place}\n>>> '{shown}'\n{msg}"
                ))
            };
            let Some(mut argv) = split_args(line) else {
                return Err(fail("Unbalanced quotes in configuration line"));
            };
            if argv.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
            let Some(idx) = lookup(name.as_bytes()) else {
                if DEPRECATED
                    .iter()
                    .any(|&(d, argc)| d == name && argc == argv.len())
                {
                    continue;
                }
                let msg = match name.as_str() {
                    "include" => {
                        "include is not supported by tether; merge the included file into this one"
                    }
                    "rename-command" | "user" | "loadmodule" | "sentinel" => {
                        "this directive is not supported by tether"
                    }
                    _ => "Bad directive or wrong number of arguments",
                };
                return Err(fail(msg));
            };
            let kind = PARAMS[idx].kind;
            let mut args = argv.split_off(1);
            if kind.multi_arg() {
                // `--save "900 1"` arrives as one quoted word; split it like
                // Redis 7.0.1+ does for multi-word configs.
                if args.len() == 1 && args[0].contains(&b' ') {
                    args = split_args(&args[0])
                        .ok_or_else(|| fail("Unbalanced quotes in configuration line"))?;
                }
            } else if args.len() != 1 {
                return Err(fail("wrong number of arguments"));
            }
            let mut value = next.parse_words(idx, &args).map_err(|e| fail(&e))?;
            if let (Value::Save(new), true) = (&mut value, seen)
                && let Value::Save(old) = &next.values[idx]
                && !new.is_empty()
            {
                let mut all = old.clone();
                all.append(new);
                value = Value::Save(all);
            }
            seen |= matches!(kind, Kind::Save);
            next.values[idx] = value;
        }
        *self = next;
        *saw_save = seen;
        Ok(())
    }

    /// CONFIG SET name value [name value ...], all or nothing, from a client
    /// that is not on loopback (protected configs stay refused unless
    /// `enable-protected-configs yes`).
    pub fn set(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<(), String> {
        self.set_as(pairs, false)
    }

    /// Like [`Config::set`], telling whether the client connected over
    /// loopback, which `enable-protected-configs local` allows.
    pub fn set_as(
        &mut self,
        pairs: &[(&[u8], &[u8])],
        client_is_local: bool,
    ) -> Result<(), String> {
        let protected_ok = match self.enum_word("enable-protected-configs") {
            "yes" => true,
            "local" => client_is_local,
            _ => false,
        };
        // Pass 1, as Redis: the first unknown name wins over every other
        // problem; otherwise the first immutable/protected/duplicate name.
        let mut unknown: Option<&[u8]> = None;
        let mut problem: Option<(&[u8], &str)> = None;
        let mut idxs = Vec::with_capacity(pairs.len());
        for &(name, _) in pairs {
            let Some(i) = lookup(name) else {
                if unknown.is_none() && problem.is_none() {
                    unknown = Some(name);
                }
                continue;
            };
            if unknown.is_some() || problem.is_some() {
                continue;
            }
            let flags = PARAMS[i].flags;
            if flags & MUTABLE == 0 {
                problem = Some((name, "can't set immutable config"));
            } else if flags & PROTECTED != 0 && !protected_ok {
                problem = Some((name, "can't set protected config"));
            } else if idxs.contains(&i) {
                problem = Some((name, "duplicate parameter"));
            }
            idxs.push(i);
        }
        if let Some(name) = unknown {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(name)
            ));
        }
        if let Some((name, why)) = problem {
            return Err(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {}",
                String::from_utf8_lossy(name),
                why
            ));
        }

        // Pass 2: parse everything against the current values, commit only if
        // all parsed.
        let mut parsed = Vec::with_capacity(pairs.len());
        for (&(_, value), &i) in pairs.iter().zip(&idxs) {
            let words: Vec<Vec<u8>> = if PARAMS[i].kind.multi_arg() {
                // Redis splits on single spaces (sdssplitlen), "" = no words.
                if value.is_empty() {
                    Vec::new()
                } else {
                    value.split(|&b| b == b' ').map(<[u8]>::to_vec).collect()
                }
            } else {
                vec![value.to_vec()]
            };
            let v = self.parse_words(i, &words).map_err(|e| {
                format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - {}",
                    PARAMS[i].name, e
                )
            })?;
            if PARAMS[i].flags & LISTEN != 0 && v != self.values[i] {
                return Err(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - tether binds its \
                     listeners at start-up only: restart it with the new value",
                    PARAMS[i].name
                ));
            }
            parsed.push((i, v));
        }
        for (i, v) in parsed {
            self.values[i] = v;
        }
        Ok(())
    }

    /// CONFIG GET pattern [pattern ...]: (name, value) for every name
    /// (parameter or alias) matching any pattern (glob, case-insensitive),
    /// in table order. A pattern without glob characters is an exact lookup
    /// and may name an alias; the reply then uses the name as the client
    /// wrote it, like Redis.
    pub fn get(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let is_glob = |pat: &[u8]| pat.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        let mut out = Vec::new();
        for (i, p) in PARAMS.iter().enumerate() {
            // As Redis 7.0's configGetCommand, whose table holds every alias
            // as an entry of its own: an exact name asked for is an entry
            // as written (`slaveof replicaof` prints both; one name asked
            // twice, in any case, prints once), and a pattern adds every
            // name of the parameter it matches, aliases included.
            let mut names: Vec<String> = Vec::new();
            let add = |names: &mut Vec<String>, n: &[u8]| {
                if !names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n)) {
                    names.push(String::from_utf8_lossy(n).into_owned());
                }
            };
            let all_names = || std::iter::once(&p.name).chain(p.aliases);
            for pat in patterns.iter().filter(|pat| !is_glob(pat)) {
                if all_names().any(|n| n.as_bytes().eq_ignore_ascii_case(pat)) {
                    add(&mut names, pat);
                }
            }
            if p.flags & HIDDEN == 0 {
                for n in all_names() {
                    let hit = patterns
                        .iter()
                        .filter(|pat| is_glob(pat))
                        .any(|pat| glob_match(pat, n.as_bytes(), true));
                    if hit {
                        add(&mut names, n.as_bytes());
                    }
                }
            }
            for name in names {
                out.push((name, self.format(i)));
            }
        }
        out
    }

    /// Any parameter (or alias) as CONFIG GET prints it.
    pub fn get_str(&self, name: &str) -> Option<String> {
        lookup(name.as_bytes()).map(|i| self.format(i))
    }

    /// Integer or memory parameter as a number (saturating at i64::MAX).
    pub fn get_int(&self, name: &str) -> Option<i64> {
        match self.values.get(lookup(name.as_bytes())?)? {
            Value::Int(n) => Some((*n).min(i64::MAX as i128) as i64),
            _ => None,
        }
    }

    /// Boolean parameter.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.values.get(lookup(name.as_bytes())?)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The file CONFIG REWRITE writes to, if we were started with one.
    pub fn config_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// CONFIG REWRITE: rewrites the startup config file in place, like Redis:
    /// comments and lines it does not understand stay where they are (the
    /// latter prefixed "# ??? "), each known directive is replaced on the line
    /// where it first appeared, leftover lines of known directives are blanked,
    /// and non-default values not yet in the file are appended after a
    /// "# Generated by CONFIG REWRITE" line. The write is atomic (temp file,
    /// fsync, rename).
    pub fn rewrite(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Err("ERR The server is running without a config file".into());
        };
        let fail = |e: &std::io::Error| format!("ERR Rewriting config file: {}", strerror(e));
        let old = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(fail(&e)),
        };
        let content = self.rewritten_content(&old);
        write_atomically(path, content.as_bytes()).map_err(|e| fail(&e))
    }

    /// The new file body for CONFIG REWRITE given the old one.
    fn rewritten_content(&self, old: &[u8]) -> String {
        const SIGNATURE: &str = "# Generated by CONFIG REWRITE";
        let mut lines: Vec<String> = Vec::new();
        // canonical param index -> old line numbers, first first.
        let mut at: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut needs_signature = true;
        if !old.is_empty() {
            for raw in old.split(|&b| b == b'\n') {
                let line = trim(raw);
                let text = String::from_utf8_lossy(line).into_owned();
                if line.is_empty() || line[0] == b'#' {
                    if text == SIGNATURE {
                        needs_signature = false;
                    }
                    lines.push(text);
                    continue;
                }
                match split_args(line).and_then(|a| a.first().and_then(|n| lookup(n))) {
                    Some(i) => {
                        at.entry(i).or_default().push(lines.len());
                        lines.push(text);
                    }
                    // Unparsable or unknown: keep it, visibly disabled.
                    None => lines.push(format!("# ??? {text}")),
                }
            }
            // A trailing newline splits into one empty last piece; drop it so
            // round trips do not grow the file.
            if old.ends_with(b"\n") && lines.last().is_some_and(String::is_empty) {
                lines.pop();
            }
        }

        for i in 0..PARAMS.len() {
            let slots = at.entry(i).or_default();
            // Redis reuses old lines first-come, so for a multi-line option
            // a default-valued line can steal the slot of a changed one and
            // push it to the end (client-output-buffer-limit). Keep a
            // default-valued line only where a spare old line exists, so a
            // second rewrite is a no-op.
            let candidates = self.rewrite_lines(i);
            let forced = candidates.iter().filter(|(_, f)| *f).count();
            let mut spare = slots.len().saturating_sub(forced);
            for (line, force) in candidates {
                if !force {
                    if spare == 0 {
                        continue;
                    }
                    spare -= 1;
                }
                if !slots.is_empty() {
                    let n = slots.remove(0);
                    lines[n] = line;
                } else {
                    if needs_signature {
                        lines.push(SIGNATURE.to_string());
                        needs_signature = false;
                    }
                    lines.push(line);
                }
            }
            // Every parameter is "processed": its unused old lines go.
            for &n in slots.iter() {
                lines[n].clear();
            }
        }

        // Glue, folding runs of empty lines into one, as Redis does.
        let mut out = String::new();
        let mut was_empty = false;
        for l in &lines {
            if l.is_empty() {
                if was_empty {
                    continue;
                }
                was_empty = true;
            } else {
                was_empty = false;
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// The config-file lines for parameter `i`, each with Redis's "force"
    /// flag (write it even if the old file did not mention it).
    fn rewrite_lines(&self, i: usize) -> Vec<(String, bool)> {
        let p = &PARAMS[i];
        let v = &self.values[i];
        let is_default = || *v == self.default_value(i);
        let name = p.name;
        match (p.kind, v) {
            (Kind::Bool, Value::Bool(b)) => vec![(
                format!("{name} {}", if *b { "yes" } else { "no" }),
                !is_default(),
            )],
            (Kind::Int { .. }, Value::Int(n)) => vec![(format!("{name} {n}"), !is_default())],
            (Kind::Octal { .. }, Value::Int(n)) => vec![(format!("{name} {n:o}"), !is_default())],
            (Kind::Mem { .. }, Value::Int(n)) => {
                vec![(format!("{name} {}", format_memory(*n)), !is_default())]
            }
            (Kind::Enum(words), Value::Enum(e)) => {
                vec![(format!("{name} {}", words[*e]), !is_default())]
            }
            (Kind::Str { nullable }, Value::Str(s)) => {
                if nullable && s.is_empty() {
                    Vec::new()
                } else {
                    vec![(format!("{name} {}", repr(s.as_bytes())), !is_default())]
                }
            }
            (Kind::Dir, Value::Str(_)) => {
                vec![(format!("{name} {}", repr(self.format(i).as_bytes())), true)]
            }
            (Kind::Bind, Value::List(addrs)) => {
                if is_default() {
                    Vec::new()
                } else if addrs.is_empty() {
                    vec![(format!("{name} \"\""), true)]
                } else {
                    vec![(format!("{name} {}", addrs.join(" ")), true)]
                }
            }
            (Kind::Save, Value::Save(rules)) => {
                if rules.is_empty() {
                    vec![(format!("{name} \"\""), true)]
                } else {
                    rules
                        .iter()
                        .map(|(s, c)| (format!("{name} {s} {c}"), true))
                        .collect()
                }
            }
            (Kind::Obuf, Value::Obuf(limits)) => {
                let Value::Obuf(defaults) = self.default_value(i) else {
                    unreachable!()
                };
                ["normal", "replica", "pubsub"]
                    .iter()
                    .zip(limits.iter().zip(defaults.iter()))
                    .map(|(class, (l, d))| {
                        let line = format!(
                            "{name} {class} {} {} {}",
                            format_memory(l.hard_bytes as i128),
                            format_memory(l.soft_bytes as i128),
                            l.soft_seconds
                        );
                        (line, l != d)
                    })
                    .collect()
            }
            (Kind::ReplicaOf, Value::ReplicaOf(Some((host, port)))) => {
                vec![(format!("{name} {host} {port}"), true)]
            }
            (Kind::ReplicaOf, _) => Vec::new(),
            (Kind::Events, Value::Events(f)) => vec![(
                format!("{name} {}", repr(events_to_string(*f).as_bytes())),
                *f != 0,
            )],
            (Kind::ShutdownFlags, Value::ShutdownFlags(f)) => {
                vec![(format!("{name} {}", shutdown_flags_to_string(*f)), *f != 0)]
            }
            _ => unreachable!("value does not match kind for {name}"),
        }
    }

    fn default_value(&self, i: usize) -> Value {
        self.parse_words(i, &default_words(&PARAMS[i]))
            .expect("defaults parse")
    }

    /// Parses the words given for parameter `i` (exactly one word for
    /// single-value kinds) into a value. Errors are Redis's reason strings.
    fn parse_words(&self, i: usize, words: &[Vec<u8>]) -> Result<Value, String> {
        let p = &PARAMS[i];
        let one = || words.first().map(Vec::as_slice).unwrap_or_default();
        let v = match p.kind {
            Kind::Bool => match one().to_ascii_lowercase().as_slice() {
                b"yes" => Value::Bool(true),
                b"no" => Value::Bool(false),
                _ => return Err("argument must be 'yes' or 'no'".into()),
            },
            Kind::Int { min, max } => {
                let n =
                    string2ll(one()).ok_or("argument couldn't be parsed into an integer")? as i128;
                bounds(n, min, max)?
            }
            Kind::Octal { max } => {
                let n = std::str::from_utf8(one())
                    .ok()
                    .and_then(|s| i64::from_str_radix(s, 8).ok())
                    .ok_or("failed to parse octal value")? as i128;
                bounds(n, 0, max)?
            }
            Kind::Mem { min, max } => {
                let n = memtoull(one()).ok_or("argument must be a memory value")? as i128;
                // Redis stores into a signed long long for most of these, so a
                // huge value wraps negative and fails the range check the same way.
                let n = if max <= LONG_MAX && n > LONG_MAX {
                    n - (1i128 << 64)
                } else {
                    n
                };
                bounds(n, min, max)?
            }
            Kind::Enum(words) => {
                let w = one();
                match words
                    .iter()
                    .position(|c| c.as_bytes().eq_ignore_ascii_case(w))
                {
                    Some(e) => Value::Enum(e),
                    None => {
                        return Err(format!(
                            "argument(s) must be one of the following: {}",
                            words.join(", ")
                        ));
                    }
                }
            }
            Kind::Str { .. } => Value::Str(utf8(one())?.to_string()),
            Kind::Dir => Value::Str(self.resolve_dir(utf8(one())?)?),
            Kind::Events => {
                let f = events_from_str(one())
                    .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?;
                Value::Events(f)
            }
            Kind::ShutdownFlags => {
                let mut f = 0;
                for w in words {
                    f |= match SHUTDOWN_FLAGS
                        .iter()
                        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(w))
                    {
                        Some((_, b)) => *b,
                        None if w.eq_ignore_ascii_case(b"default") => 0,
                        None => {
                            return Err("argument(s) must be one of the following: default, save, nosave, now, force".into());
                        }
                    };
                }
                if words.is_empty() {
                    return Err("argument(s) must be one of the following: default, save, nosave, now, force".into());
                }
                if f & SHUTDOWN_SAVE != 0 && f & SHUTDOWN_NOSAVE != 0 {
                    return Err(
                        "shutdown options SAVE and NOSAVE can't be used simultaneously".into(),
                    );
                }
                Value::ShutdownFlags(f)
            }
            Kind::Bind => {
                if words.len() > 16 {
                    return Err("Too many bind addresses specified.".into());
                }
                let words = if words.len() == 1 && words[0].is_empty() {
                    &[][..]
                } else {
                    words
                };
                Value::List(
                    words
                        .iter()
                        .map(|w| utf8(w).map(str::to_string))
                        .collect::<Result<_, _>>()?,
                )
            }
            Kind::Save => {
                let words = if words.len() == 1 && words[0].is_empty() {
                    &[][..]
                } else {
                    words
                };
                const ERR: &str = "Invalid save parameters";
                if !words.len().is_multiple_of(2) {
                    return Err(ERR.into());
                }
                let mut rules = Vec::new();
                for pair in words.chunks(2) {
                    let secs = strtoll_whole(&pair[0]).filter(|&s| s >= 1).ok_or(ERR)?;
                    let changes = strtoll_whole(&pair[1]).filter(|&c| c >= 0).ok_or(ERR)?;
                    rules.push((secs, changes));
                }
                Value::Save(rules)
            }
            Kind::Obuf => {
                if !words.len().is_multiple_of(4) {
                    return Err("Wrong number of arguments in buffer limit configuration.".into());
                }
                // Only the classes named change, so start from the current value.
                let mut limits = match self.values.get(i) {
                    Some(Value::Obuf(l)) => *l,
                    _ => {
                        [ObufLimit {
                            hard_bytes: 0,
                            soft_bytes: 0,
                            soft_seconds: 0,
                        }; 3]
                    }
                };
                for quad in words.chunks(4) {
                    let class = match quad[0].to_ascii_lowercase().as_slice() {
                        b"normal" => 0,
                        b"slave" | b"replica" => 1,
                        b"pubsub" => 2,
                        _ => {
                            return Err(
                                "Invalid client class specified in buffer limit configuration."
                                    .into(),
                            );
                        }
                    };
                    let bad = || {
                        "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                            .to_string()
                    };
                    let hard = memtoull(&quad[1]).ok_or_else(bad)?;
                    let soft = memtoull(&quad[2]).ok_or_else(bad)?;
                    let secs = strtoll_whole(&quad[3])
                        .filter(|&s| s >= 0)
                        .ok_or_else(bad)?;
                    limits[class] = ObufLimit {
                        hard_bytes: hard,
                        soft_bytes: soft,
                        soft_seconds: secs as u64,
                    };
                }
                Value::Obuf(limits)
            }
            Kind::ReplicaOf => {
                if words.is_empty() || (words.len() == 1 && words[0].is_empty()) {
                    Value::ReplicaOf(None) // the built-in default
                } else if words.len() != 2 {
                    return Err("wrong number of arguments".into());
                } else if words[0].eq_ignore_ascii_case(b"no")
                    && words[1].eq_ignore_ascii_case(b"one")
                {
                    Value::ReplicaOf(None)
                } else {
                    let port = strtoll_whole(&words[1])
                        .filter(|p| (0..=65535).contains(p))
                        .ok_or("Invalid master port")?;
                    Value::ReplicaOf(Some((utf8(&words[0])?.to_string(), port as u16)))
                }
            }
        };
        match p.check {
            Some(check) => check(v),
            None => Ok(v),
        }
    }

    /// Resolves a `dir` value against the current one (Redis chdir()s, so a
    /// relative dir is relative to the previous dir) and checks it exists.
    /// The built-in "." stays "." so startup does not depend on the cwd.
    fn resolve_dir(&self, arg: &str) -> Result<String, String> {
        let current = match self
            .values
            .iter()
            .zip(PARAMS)
            .find(|(_, p)| matches!(p.kind, Kind::Dir))
        {
            Some((Value::Str(s), _)) => s.clone(),
            _ => return Ok(arg.to_string()), // building the defaults
        };
        let target = Path::new(&current).join(arg);
        match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err("Not a directory".into()),
            Err(e) => return Err(strerror(&e)),
        }
        let abs = std::fs::canonicalize(&target).map_err(|e| strerror(&e))?;
        Ok(abs.to_string_lossy().into_owned())
    }

    /// The value of parameter `i` as CONFIG GET prints it.
    fn format(&self, i: usize) -> String {
        match (&PARAMS[i].kind, &self.values[i]) {
            (_, Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
            (Kind::Octal { .. }, Value::Int(n)) => format!("{n:o}"),
            (_, Value::Int(n)) => n.to_string(),
            (Kind::Enum(words), Value::Enum(e)) => words[*e].to_string(),
            (Kind::Dir, Value::Str(s)) => match std::fs::canonicalize(s) {
                Ok(p) => p.to_string_lossy().into_owned(),
                Err(_) => std::path::absolute(s)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| s.clone()),
            },
            (_, Value::Str(s)) => s.clone(),
            (_, Value::List(l)) => l.join(" "),
            (_, Value::Save(rules)) => rules
                .iter()
                .map(|(s, c)| format!("{s} {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            (_, Value::Obuf(l)) => ["normal", "slave", "pubsub"]
                .iter()
                .zip(l.iter())
                .map(|(c, l)| format!("{c} {} {} {}", l.hard_bytes, l.soft_bytes, l.soft_seconds))
                .collect::<Vec<_>>()
                .join(" "),
            (_, Value::ReplicaOf(Some((h, p)))) => format!("{h} {p}"),
            (_, Value::ReplicaOf(None)) => String::new(),
            (_, Value::Events(f)) => events_to_string(*f),
            (_, Value::ShutdownFlags(f)) => shutdown_flags_to_string(*f),
            (_, Value::Enum(_)) => unreachable!(),
        }
    }

    // --- typed accessors ------------------------------------------------------
    // Each is a hash lookup; cache the result in per-request hot paths.

    fn value(&self, name: &str) -> &Value {
        &self.values[index()[name]]
    }

    fn int(&self, name: &str) -> i128 {
        match self.value(name) {
            Value::Int(n) => *n,
            v => unreachable!("{name} is not numeric: {v:?}"),
        }
    }

    fn string(&self, name: &str) -> &str {
        match self.value(name) {
            Value::Str(s) => s,
            v => unreachable!("{name} is not a string: {v:?}"),
        }
    }

    fn enum_word(&self, name: &str) -> &'static str {
        let i = index()[name];
        match (&PARAMS[i].kind, &self.values[i]) {
            (Kind::Enum(words), Value::Enum(e)) => words[*e],
            _ => unreachable!("{name} is not an enum"),
        }
    }

    pub fn port(&self) -> u16 {
        self.int("port") as u16
    }

    /// `unixsocket` and `unixsocketperm`, when a unix socket is configured.
    pub fn unix_socket(&self) -> Option<(String, u32)> {
        let path = self.get_str("unixsocket").filter(|p| !p.is_empty())?;
        Some((path, self.int("unixsocketperm") as u32))
    }

    pub fn bind(&self) -> Vec<String> {
        match self.value("bind") {
            Value::List(l) => l.clone(),
            _ => unreachable!(),
        }
    }

    /// Shard executors to start; 0 = one per CPU in [`Config::cpus`] or the
    /// process affinity mask.
    pub fn shards(&self) -> usize {
        self.int("shards") as usize
    }

    /// CPUs to pin shards to, from "0,2-3"; None = use the affinity mask.
    pub fn cpus(&self) -> Option<Vec<usize>> {
        let list = parse_cpu_list(self.string("cpus")).unwrap_or_default();
        if list.is_empty() { None } else { Some(list) }
    }

    pub fn databases(&self) -> usize {
        self.int("databases") as usize
    }

    /// Client idle timeout in seconds; 0 = never.
    pub fn timeout(&self) -> u64 {
        self.int("timeout") as u64
    }

    pub fn tcp_keepalive(&self) -> u64 {
        self.int("tcp-keepalive") as u64
    }

    pub fn tcp_backlog(&self) -> i32 {
        self.int("tcp-backlog") as i32
    }

    pub fn hll_sparse_max_bytes(&self) -> u64 {
        self.int("hll-sparse-max-bytes") as u64
    }

    pub fn proto_max_bulk_len(&self) -> u64 {
        self.int("proto-max-bulk-len") as u64
    }

    pub fn client_query_buffer_limit(&self) -> u64 {
        self.int("client-query-buffer-limit") as u64
    }

    pub fn maxclients(&self) -> u64 {
        self.int("maxclients") as u64
    }

    pub fn loglevel(&self) -> &str {
        self.enum_word("loglevel")
    }

    pub fn logfile(&self) -> &str {
        self.string("logfile")
    }

    /// Working directory for dump files: "." until configured, then the
    /// absolute path. CONFIG GET dir always prints it absolute.
    pub fn dir(&self) -> &str {
        self.string("dir")
    }

    pub fn dbfilename(&self) -> &str {
        self.string("dbfilename")
    }

    /// Effective hz, already clamped to 1..=500.
    pub fn hz(&self) -> u64 {
        self.int("hz") as u64
    }

    pub fn requirepass(&self) -> &str {
        self.string("requirepass")
    }

    /// Bytes; 0 = no limit.
    pub fn maxmemory(&self) -> u64 {
        self.int("maxmemory") as u64
    }

    /// `save` rules as (seconds, changes); empty = no automatic snapshots.
    pub fn save_params(&self) -> Vec<(u64, u64)> {
        match self.value("save") {
            Value::Save(r) => r.iter().map(|&(s, c)| (s as u64, c as u64)).collect(),
            _ => unreachable!(),
        }
    }

    /// REPLICAOF at runtime (and promotion): CONFIG GET replicaof and CONFIG
    /// REWRITE follow the role, as Redis's (a rewritten config restarts the
    /// server as the replica it was, resuming by PSYNC from its RDB).
    pub fn set_replicaof(&mut self, to: Option<(String, u16)>) {
        if let Some(i) = lookup(b"replicaof") {
            self.values[i] = Value::ReplicaOf(to);
        }
    }

    /// `replicaof` from the config file or command line: (host, port).
    pub fn replicaof(&self) -> Option<(String, u16)> {
        match self.value("replicaof") {
            Value::ReplicaOf(r) => r.clone(),
            _ => unreachable!(),
        }
    }

    /// `client-output-buffer-limit` as [normal, replica, pubsub].
    pub fn client_output_buffer_limits(&self) -> [ObufLimit; 3] {
        match self.value("client-output-buffer-limit") {
            Value::Obuf(l) => *l,
            _ => unreachable!(),
        }
    }

    /// `shutdown-on-sigterm` or `shutdown-on-sigint` (`sigint`): bits of
    /// [`SHUTDOWN_FLAGS`], 0 for SHUTDOWN's defaults.
    pub fn shutdown_on_signal(&self, sigint: bool) -> u8 {
        let name = if sigint {
            "shutdown-on-sigint"
        } else {
            "shutdown-on-sigterm"
        };
        match self.value(name) {
            Value::ShutdownFlags(f) => *f,
            _ => unreachable!(),
        }
    }

    /// `notify-keyspace-events` as Redis's flag bits (K=1, E=2, g=4, ...).
    pub fn notify_keyspace_events(&self) -> u32 {
        match self.value("notify-keyspace-events") {
            Value::Events(f) => *f,
            _ => unreachable!(),
        }
    }
}

/// Redis trims " \t\r\n" from both ends of every config line.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// Bound check with Redis's message.
fn bounds(n: i128, min: i128, max: i128) -> Result<Value, String> {
    if n < min || n > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(Value::Int(n))
}

/// Replaces `path` with `content` so readers see the old file or the new
/// one, never a torn mix: write a sibling temp file, fsync, rename.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        // Keep the old file's mode (Redis uses 0644 & ~umask for new files).
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set1(c: &mut Config, k: &str, v: &str) -> Result<(), String> {
        c.set(&[(k.as_bytes(), v.as_bytes())])
    }

    fn get1(c: &Config, pat: &str) -> Vec<(String, String)> {
        c.get(&[pat.as_bytes()])
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let d = std::env::temp_dir()
                .join(format!("tether-cfg-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.port(), 6379);
        assert_eq!(c.bind(), vec!["127.0.0.1"]);
        assert_eq!(c.shards(), 0);
        assert_eq!(c.cpus(), None);
        assert_eq!(c.databases(), 16);
        assert_eq!(c.timeout(), 0);
        assert_eq!(c.tcp_keepalive(), 300);
        assert_eq!(c.tcp_backlog(), 511);
        assert_eq!(c.proto_max_bulk_len(), 512 * 1024 * 1024);
        assert_eq!(c.client_query_buffer_limit(), 1024 * 1024 * 1024);
        assert_eq!(c.maxclients(), 10000);
        assert_eq!(c.loglevel(), "notice");
        assert_eq!(c.logfile(), "");
        assert_eq!(c.dir(), ".");
        assert_eq!(c.dbfilename(), "dump.rdb");
        assert_eq!(c.hz(), 10);
        assert_eq!(c.requirepass(), "");
        assert_eq!(c.maxmemory(), 0);
        assert_eq!(c.save_params(), vec![(3600, 1), (300, 100), (60, 10000)]);
        assert_eq!(c.replicaof(), None);
        assert_eq!(c.config_file(), None);
        assert_eq!(c.get_str("save").unwrap(), "3600 1 300 100 60 10000");
        assert_eq!(
            c.get_str("client-output-buffer-limit").unwrap(),
            OBUF_DEFAULT
        );
        assert_eq!(c.get_str("repl-backlog-size").unwrap(), "1048576");
        assert_eq!(c.get_str("maxmemory-policy").unwrap(), "noeviction");
        assert_eq!(c.get_str("slave-read-only").unwrap(), "yes");
        assert_eq!(c.get_str("list-max-ziplist-size").unwrap(), "-2");
        assert_eq!(c.get_str("notify-keyspace-events").unwrap(), "");
        assert_eq!(c.get_str("lua-time-limit").unwrap(), "5000");
        assert_eq!(c.get_str("replicaof").unwrap(), "");
        assert!(c.get_str("nosuch").is_none());
        assert_eq!(c.get_int("repl-timeout"), Some(60));
        assert_eq!(c.get_bool("repl-diskless-sync"), Some(true));
        let abs = c.get_str("dir").unwrap();
        assert!(abs.starts_with('/'), "CONFIG GET dir is absolute: {abs}");
    }

    #[test]
    fn every_default_round_trips_through_get_and_set() {
        // What CONFIG GET prints must be accepted back by CONFIG SET.
        let mut c = Config::default();
        for (name, value) in c.get(&[b"*"]) {
            let i = lookup(name.as_bytes()).unwrap();
            if PARAMS[i].flags & MUTABLE == 0 || PARAMS[i].flags & PROTECTED != 0 {
                continue;
            }
            set1(&mut c, &name, &value).unwrap_or_else(|e| panic!("{name} {value:?}: {e}"));
            assert_eq!(c.get_str(&name).unwrap(), value, "{name}");
        }
    }

    #[test]
    fn split_args_quoting() {
        let s = |l: &str| {
            split_args(l.as_bytes()).map(|v| {
                v.into_iter()
                    .map(|w| String::from_utf8(w).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(s("  save 900 1 ").unwrap(), ["save", "900", "1"]);
        assert_eq!(
            s(r#"requirepass "a b\n\x41\"""#).unwrap(),
            ["requirepass", "a b\nA\""]
        );
        assert_eq!(s(r"logfile 'it\'s'").unwrap(), ["logfile", "it's"]);
        assert_eq!(s(r#"x "" ''"#).unwrap(), ["x", "", ""]);
        assert_eq!(s(r#"x foo"bar baz""#).unwrap(), ["x", "foobar baz"]);
        assert!(s(r#"x "abc"#).is_none());
        assert!(s(r#"x "abc"d"#).is_none());
        assert!(s("x 'abc").is_none());
        assert_eq!(s("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn file_parsing_with_quotes_and_comments() {
        let mut c = Config::default();
        let text = "# a comment\n\n   port 7000  \r\nrequirepass \"p a\\x73s\"\nlogfile '/tmp/x y.log'\n\
                    LOGLEVEL Warning\nmaxmemory 2GB\nsave 900 1\nsave 300 10\nbind 127.0.0.1 ::1\n\
                    slave-read-only no\nhash-max-ziplist-entries 64\nlist-max-ziplist-entries 12\n\
                    client-output-buffer-limit replica 1mb 512kb 30\nnotify-keyspace-events KEA\n\
                    replicaof 10.0.0.1 6380\ncpus 0,2-3\n";
        c.load_text(text, "test.conf").unwrap();
        assert_eq!(c.port(), 7000);
        assert_eq!(c.requirepass(), "p ass");
        assert_eq!(c.logfile(), "/tmp/x y.log");
        assert_eq!(c.loglevel(), "warning");
        assert_eq!(c.maxmemory(), 2 * 1024 * 1024 * 1024);
        assert_eq!(c.get_str("save").unwrap(), "900 1 300 10");
        assert_eq!(c.bind(), vec!["127.0.0.1", "::1"]);
        assert_eq!(c.get_str("replica-read-only").unwrap(), "no");
        assert_eq!(c.get_str("hash-max-listpack-entries").unwrap(), "64");
        assert_eq!(
            c.get_str("client-output-buffer-limit").unwrap(),
            "normal 0 0 0 slave 1048576 524288 30 pubsub 33554432 8388608 60"
        );
        assert_eq!(c.get_str("notify-keyspace-events").unwrap(), "AKE");
        assert_eq!(c.replicaof(), Some(("10.0.0.1".into(), 6380)));
        assert_eq!(c.cpus(), Some(vec![0, 2, 3]));

        // save "" clears; --save "900 1" as one word splits.
        c.load_text("save \"\"", "t").unwrap();
        assert_eq!(c.save_params(), vec![]);
        c.load_text("save \"900 1\"", "t").unwrap();
        assert_eq!(c.save_params(), vec![(900, 1)]);
    }

    #[test]
    fn bad_line_error_names_the_line() {
        let mut c = Config::default();
        let e = c
            .load_text("port 7000\n# ok\nfrobnicate yes\n", "x.conf")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "*** FATAL CONFIG FILE ERROR ***\nReading the configuration file, at line 3\n>>> 'frobnicate yes'\nBad directive or wrong number of arguments"
        );
        assert_eq!(c.port(), 6379, "a failed load changes nothing");

        let e = c.load_text("port abc", "x").unwrap_err().to_string();
        assert!(
            e.ends_with("at line 1\n>>> 'port abc'\nargument couldn't be parsed into an integer"),
            "{e}"
        );
        let e = c.load_text("port 1 2", "x").unwrap_err().to_string();
        assert!(e.ends_with("wrong number of arguments"), "{e}");
        let e = c
            .load_text("requirepass \"abc", "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("Unbalanced quotes in configuration line"),
            "{e}"
        );
        let e = c.load_text("daemonize yes", "x").unwrap_err().to_string();
        assert!(e.contains("does not daemonize"), "{e}");
        assert!(c.load_text("daemonize no\nappendonly no", "x").is_ok());
        let e = c
            .load_text("include /etc/other.conf", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("include is not supported"), "{e}");
        let e = c
            .load_text("dir /definitely/not/here", "x")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("No such file or directory"), "{e}");
    }

    #[test]
    fn command_line_values_may_start_with_dashes() {
        // Redis 7.0's rule (introspection.tcl's error cases): a name still
        // waiting for its first value takes the next word as one.
        let err = |a: &[&str]| Config::from_args(&args(a)).unwrap_err().0;
        let cases: [(&[&str], &str); 6] = [
            (
                &["--port", "6379", "6380"],
                "'port \"6379\" \"6380\"'\nwrong number of arguments",
            ),
            (
                &["--port", "--loglevel", "verbose"],
                "'port \"--loglevel\" \"verbose\"'\nwrong number of arguments",
            ),
            (
                &["--port", "--bla", "--loglevel", "verbose"],
                "'port \"--bla\"'\nargument couldn't be parsed into an integer",
            ),
            (
                &["--logfile", "--my--log--file", "--loglevel", "--bla"],
                "'loglevel \"--bla\"'\nargument(s) must be one of the following",
            ),
            (
                &["--port", "6380", "--loglevel"],
                "'loglevel'\nwrong number of arguments",
            ),
            (
                &["--replicaof", "--127.0.0.1", "--abc"],
                "'replicaof \"--127.0.0.1\"'\nwrong number of arguments",
            ),
        ];
        for (a, want) in cases {
            let e = err(a);
            assert!(e.contains(want), "{a:?}: {e}");
        }
        let c =
            Config::from_args(&args(&["--logfile", "--my--log--file", "--port", "7003"])).unwrap();
        assert_eq!(c.get_str("logfile").unwrap(), "--my--log--file");
        assert_eq!(c.port(), 7003);
    }

    #[test]
    fn from_args_file_then_overrides() {
        let d = TempDir::new("args");
        let f = d.0.join("t.conf");
        std::fs::write(&f, "port 7000\nsave 900 1\nloglevel debug\n").unwrap();
        let c = Config::from_args(&args(&[
            f.to_str().unwrap(),
            "--port",
            "7001",
            "--save",
            "60",
            "5",
            "--requirepass",
            "has space",
            "--maxmemory 1mb",
        ]))
        .unwrap();
        assert_eq!(c.port(), 7001);
        // Redis: the first save of a load replaces, later ones append.
        assert_eq!(c.get_str("save").unwrap(), "900 1 60 5");
        assert_eq!(c.loglevel(), "debug");
        assert_eq!(c.requirepass(), "has space");
        assert_eq!(c.maxmemory(), 1024 * 1024);
        assert_eq!(c.config_file().unwrap(), std::path::absolute(&f).unwrap());

        let c = Config::from_args(&args(&["--save", "--port", "7002"])).unwrap();
        assert_eq!(c.save_params(), vec![]);
        assert_eq!(c.port(), 7002);
        let c = Config::from_args(&args(&["--save", "900 1"])).unwrap();
        assert_eq!(c.save_params(), vec![(900, 1)]);
        let c = Config::from_args(&args(&["--list-max-listpack-size", "-1"])).unwrap();
        assert_eq!(c.get_str("list-max-listpack-size").unwrap(), "-1");
        assert!(Config::from_args(&[]).is_ok());

        let e = Config::from_args(&args(&["--port", "99999"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(">>> 'port \"99999\"'")
                && e.ends_with("argument must be between 0 and 65535 inclusive"),
            "{e}"
        );
        let e = Config::from_args(&args(&["--nosuch", "1"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("Bad directive or wrong number of arguments"),
            "{e}"
        );
        let e = Config::from_args(&args(&["/no/such/file.conf"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Fatal error, can't open config file '/no/such/file.conf'"),
            "{e}"
        );
        let bad = d.0.join("bad.conf");
        std::fs::write(&bad, "port 1\nport\n").unwrap();
        let e = Config::from_args(&args(&[bad.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at line 2\n>>> 'port'"), "{e}");
    }

    #[test]
    fn config_set_basics_and_aliases() {
        let mut c = Config::default();
        // Listeners are bound at start-up: only the value in force is taken.
        set1(&mut c, "port", "6379").unwrap();
        assert!(
            set1(&mut c, "port", "7777")
                .unwrap_err()
                .contains("restart")
        );
        assert_eq!(c.port(), 6379);
        set1(&mut c, "SLAVE-READ-ONLY", "No").unwrap();
        assert_eq!(c.get_str("replica-read-only").unwrap(), "no");
        set1(&mut c, "maxmemory-policy", "ALLKEYS-LRU").unwrap();
        assert_eq!(c.get_str("maxmemory-policy").unwrap(), "allkeys-lru");
        set1(&mut c, "save", "").unwrap();
        assert_eq!(c.get_str("save").unwrap(), "");
        set1(&mut c, "save", "100 10 20 2").unwrap();
        assert_eq!(c.save_params(), vec![(100, 10), (20, 2)]);
        set1(&mut c, "bind", "127.0.0.1").unwrap();
        assert!(set1(&mut c, "bind", "0.0.0.0 ::").is_err());
        assert_eq!(c.bind(), vec!["127.0.0.1"]);
        set1(
            &mut c,
            "client-output-buffer-limit",
            "pubsub 1gb 2k 0 normal 1 2 3",
        )
        .unwrap();
        assert_eq!(
            c.get_str("client-output-buffer-limit").unwrap(),
            "normal 1 2 3 slave 268435456 67108864 60 pubsub 1073741824 2000 0"
        );
        set1(&mut c, "notify-keyspace-events", "Egx").unwrap();
        assert_eq!(c.get_str("notify-keyspace-events").unwrap(), "gxE");
        set1(&mut c, "hz", "100000").unwrap();
        assert_eq!(c.hz(), 500, "hz clamps like Redis");
        set1(&mut c, "hz", "0").unwrap();
        assert_eq!(c.hz(), 1);
        set1(&mut c, "slowlog-log-slower-than", "-1").unwrap();
        set1(&mut c, "requirepass", "secret").unwrap();
        assert_eq!(c.requirepass(), "secret");
        assert!(
            is_sensitive(b"REQUIREPASS") && is_sensitive(b"masterauth") && !is_sensitive(b"port")
        );
    }

    /// `shutdown-on-sig*` as Redis 7.0 takes and prints it (checked
    /// against stock redis-server).
    #[test]
    fn shutdown_on_signal_flags() {
        let mut c = Config::default();
        let get = |c: &Config| get1(c, "shutdown-on-sigterm")[0].1.clone();
        assert_eq!(get(&c), "default");
        assert_eq!(c.shutdown_on_signal(false), 0);
        set1(&mut c, "shutdown-on-sigterm", "force now save").unwrap();
        assert_eq!(get(&c), "save now force");
        assert_eq!(
            c.shutdown_on_signal(false),
            SHUTDOWN_SAVE | SHUTDOWN_NOW | SHUTDOWN_FORCE
        );
        assert_eq!(c.shutdown_on_signal(true), 0, "sigint is its own");
        set1(&mut c, "shutdown-on-sigterm", "default NOW").unwrap();
        assert_eq!(get(&c), "now");
        let words = "argument(s) must be one of the following: default, save, nosave, now, force";
        for (v, why) in [
            (
                "save nosave",
                "shutdown options SAVE and NOSAVE can't be used simultaneously",
            ),
            ("foo", words),
            ("", words),
        ] {
            assert_eq!(
                set1(&mut c, "shutdown-on-sigterm", v).unwrap_err(),
                format!(
                    "ERR CONFIG SET failed (possibly related to argument 'shutdown-on-sigterm') - {why}"
                ),
                "{v:?}"
            );
        }
        assert_eq!(get(&c), "now", "a refused value changes nothing");
    }

    #[test]
    fn config_set_errors() {
        let mut c = Config::default();
        let err = |c: &mut Config, pairs: &[(&str, &str)]| {
            let p: Vec<(&[u8], &[u8])> = pairs
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            c.set(&p).unwrap_err()
        };
        assert_eq!(
            err(&mut c, &[("foo", "1")]),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        assert_eq!(
            err(&mut c, &[("port", "abc")]),
            "ERR CONFIG SET failed (possibly related to argument 'port') - argument couldn't be parsed into an integer"
        );
        assert_eq!(
            err(&mut c, &[("port", "70000")]),
            "ERR CONFIG SET failed (possibly related to argument 'port') - argument must be between 0 and 65535 inclusive"
        );
        assert_eq!(
            err(&mut c, &[("port", "+1")]),
            "ERR CONFIG SET failed (possibly related to argument 'port') - argument couldn't be parsed into an integer"
        );
        assert_eq!(
            err(&mut c, &[("loglevel", "loud")]),
            "ERR CONFIG SET failed (possibly related to argument 'loglevel') - argument(s) must be one of the following: debug, verbose, notice, warning"
        );
        assert_eq!(
            err(&mut c, &[("protected-mode", "maybe")]),
            "ERR CONFIG SET failed (possibly related to argument 'protected-mode') - argument must be 'yes' or 'no'"
        );
        assert_eq!(
            err(&mut c, &[("maxmemory", "10zb")]),
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
        );
        assert_eq!(
            err(&mut c, &[("proto-max-bulk-len", "1000")]),
            "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive"
        );
        assert_eq!(
            err(&mut c, &[("databases", "4")]),
            "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"
        );
        assert_eq!(
            err(&mut c, &[("slaveof", "a 1")]),
            "ERR CONFIG SET failed (possibly related to argument 'slaveof') - can't set immutable config"
        );
        assert_eq!(
            err(&mut c, &[("dir", "/tmp")]),
            "ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected config"
        );
        assert_eq!(
            err(&mut c, &[("port", "1"), ("PORT", "2")]),
            "ERR CONFIG SET failed (possibly related to argument 'PORT') - duplicate parameter"
        );
        assert_eq!(
            err(
                &mut c,
                &[("replica-read-only", "yes"), ("slave-read-only", "no")]
            ),
            "ERR CONFIG SET failed (possibly related to argument 'slave-read-only') - duplicate parameter"
        );
        // Alias errors name the canonical parameter, like Redis.
        assert_eq!(
            err(&mut c, &[("slave-priority", "x")]),
            "ERR CONFIG SET failed (possibly related to argument 'replica-priority') - argument couldn't be parsed into an integer"
        );
        // Precedence: an unknown name beats a later immutable one, not an earlier one.
        assert!(err(&mut c, &[("foo", "1"), ("databases", "1")]).contains("Unknown option"));
        assert!(err(&mut c, &[("databases", "1"), ("foo", "1")]).contains("immutable"));
        assert_eq!(
            err(&mut c, &[("save", "100")]),
            "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters"
        );
        assert!(err(&mut c, &[("save", "0 1")]).ends_with("Invalid save parameters"));
        assert!(
            err(&mut c, &[("client-output-buffer-limit", "normal 1 2")])
                .ends_with("Wrong number of arguments in buffer limit configuration.")
        );
        assert!(
            err(&mut c, &[("client-output-buffer-limit", "master 1 2 3")])
                .ends_with("Invalid client class specified in buffer limit configuration.")
        );
        assert!(
            err(&mut c, &[("client-output-buffer-limit", "normal 1 2 -3")]).ends_with(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
            )
        );
        assert!(
            err(&mut c, &[("notify-keyspace-events", "Q")])
                .ends_with("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        );
        assert!(err(&mut c, &[("dbfilename", "a/b")]).ends_with("can't set protected config"));
        assert!(err(&mut c, &[("appendonly", "yes")]).contains("not supported"));
        assert!(
            err(&mut c, &[("activedefrag", "yes")])
                .contains("Active defragmentation cannot be enabled")
        );
        assert!(
            err(&mut c, &[("bind", &vec!["1.1.1.1"; 17].join(" "))])
                .ends_with("Too many bind addresses specified.")
        );
    }

    #[test]
    fn config_set_is_atomic() {
        let mut c = Config::default();
        let before = c.get(&[b"*"]);
        let e = c
            .set(&[
                (b"hz".as_slice(), b"20".as_slice()),
                (b"maxmemory", b"1gb"),
                (b"timeout", b"-5"),
            ])
            .unwrap_err();
        assert_eq!(
            e,
            "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive"
        );
        assert_eq!(c.get(&[b"*"]), before, "nothing applied");
        c.set(&[(b"hz".as_slice(), b"20".as_slice()), (b"maxmemory", b"1gb")])
            .unwrap();
        assert_eq!((c.get_int("hz"), c.maxmemory()), (Some(20), 1 << 30));
    }

    #[test]
    fn protected_configs() {
        let d = TempDir::new("prot");
        let mut c = Config::default();
        c.load_text("enable-protected-configs local", "t").unwrap();
        let pair = [(b"dir".as_slice(), d.0.to_str().unwrap().as_bytes())];
        assert!(
            c.set(&pair)
                .unwrap_err()
                .contains("can't set protected config")
        );
        c.set_as(&pair, true).unwrap();
        let canon = std::fs::canonicalize(&d.0).unwrap();
        assert_eq!(c.dir(), canon.to_str().unwrap());
        assert_eq!(c.get_str("dir").unwrap(), canon.to_str().unwrap());
        // Relative dirs resolve against the previous dir, as with chdir().
        std::fs::create_dir(d.0.join("sub")).unwrap();
        c.set_as(&[(b"dir".as_slice(), b"sub".as_slice())], true)
            .unwrap();
        assert_eq!(c.dir(), canon.join("sub").to_str().unwrap());
        let e = c
            .set_as(&[(b"dir".as_slice(), b"nope".as_slice())], true)
            .unwrap_err();
        assert_eq!(
            e,
            "ERR CONFIG SET failed (possibly related to argument 'dir') - No such file or directory"
        );
        let e = c
            .set_as(&[(b"dbfilename".as_slice(), b"a/b".as_slice())], true)
            .unwrap_err();
        assert!(
            e.ends_with("dbfilename can't be a path, just a filename"),
            "{e}"
        );
    }

    #[test]
    fn get_with_globs() {
        let c = Config::default();
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            get1(&c, "port"),
            vec![("port".to_string(), "6379".to_string())]
        );
        assert_eq!(
            get1(&c, "PORT"),
            vec![("PORT".to_string(), "6379".to_string())]
        );
        assert_eq!(
            names(get1(&c, "maxmemory*")),
            [
                "maxmemory",
                "maxmemory-policy",
                "maxmemory-samples",
                "maxmemory-eviction-tenacity"
            ]
        );
        assert_eq!(
            names(get1(&c, "*-read-only")),
            ["replica-read-only", "slave-read-only"]
        );
        assert_eq!(names(get1(&c, "slave-read-*")), ["slave-read-only"]);
        assert_eq!(names(get1(&c, "slave-read-only")), ["slave-read-only"]);
        assert_eq!(names(get1(&c, "ti?eout")), ["timeout"]);
        assert_eq!(names(get1(&c, "[pt]ort")), ["port"]);
        assert!(get1(&c, "nosuch*").is_empty());
        // Several patterns: each parameter once, table order.
        assert_eq!(
            names(c.get(&[b"timeout", b"port", b"po*"])),
            ["port", "timeout"]
        );
        // Every name, aliases included, but the hidden ones (tether's own
        // two knobs and Redis's rdb-key-save-delay), which need their
        // exact name.
        let every: usize = PARAMS.iter().map(|p| 1 + p.aliases.len()).sum();
        let all = c.get(&[b"*"]);
        assert_eq!(all.len(), every - 3);
        assert!(
            !all.iter()
                .any(|(n, _)| n == "shards" || n == "cpus" || n == "rdb-key-save-delay")
        );
        assert_eq!(names(c.get(&[b"shards", b"*"])).len(), every - 2);
        // Exact names are entries of their own, aliases included.
        assert_eq!(
            names(c.get(&[b"slaveof", b"replicaof", b"SLAVEOF"])),
            ["slaveof", "replicaof"]
        );
        assert!(all.iter().any(|(n, v)| n == "maxmemory" && v == "0"));
    }

    #[test]
    fn memory_units() {
        assert_eq!(memtoull(b"1"), Some(1));
        assert_eq!(memtoull(b"1b"), Some(1));
        assert_eq!(memtoull(b"1k"), Some(1000));
        assert_eq!(memtoull(b"1kb"), Some(1024));
        assert_eq!(memtoull(b"1KB"), Some(1024));
        assert_eq!(memtoull(b"2m"), Some(2_000_000));
        assert_eq!(memtoull(b"2Mb"), Some(2 << 20));
        assert_eq!(memtoull(b"3g"), Some(3_000_000_000));
        assert_eq!(memtoull(b"3gB"), Some(3 << 30));
        assert_eq!(memtoull(b"-1"), None);
        assert_eq!(memtoull(b"1.5gb"), None);
        assert_eq!(memtoull(b"1tb"), None);
        assert_eq!(memtoull(b""), None);
        assert_eq!(memtoull(b"99999999999gb"), None, "overflow");
        let mut c = Config::default();
        set1(&mut c, "maxmemory", "100mb").unwrap();
        assert_eq!(c.get_str("maxmemory").unwrap(), "104857600");
        set1(&mut c, "maxmemory", "18446744073709551615").unwrap();
        assert_eq!(c.maxmemory(), u64::MAX);
        assert_eq!(format_memory(0), "0");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(2048), "2kb");
        assert_eq!(format_memory(3 << 20), "3mb");
        assert_eq!(format_memory(512 << 30), "512gb");
    }

    #[test]
    fn rewrite_without_file() {
        assert_eq!(
            Config::default().rewrite().unwrap_err(),
            "ERR The server is running without a config file"
        );
    }

    #[test]
    fn rewrite_round_trip() {
        let d = TempDir::new("rw");
        let f = d.0.join("tether.conf");
        let original = "# tether test config\n\
                        timeout 7000\n\
                        \n\
                        # snapshots\n\
                        save 900 1\n\
                        save 300 10\n\
                        slave-read-only yes\n\
                        some-unknown-directive 1\n\
                        maxmemory 1mb\n\
                        bind 127.0.0.1\n";
        std::fs::write(&f, original).unwrap();
        // An unknown directive stops the load, like Redis; drop it and retry.
        let e = Config::from_args(&args(&[f.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("some-unknown-directive"));
        std::fs::write(&f, original.replace("some-unknown-directive 1\n", "")).unwrap();
        let mut cfg = Config::from_args(&args(&[f.to_str().unwrap()])).unwrap();

        cfg.set(&[
            (b"timeout".as_slice(), b"7001".as_slice()),
            (b"save", b"60 5"),
            (b"replica-read-only", b"no"),
            (b"maxmemory", b"2gb"),
            (b"requirepass", b"s3cr\"et"),
            (b"client-output-buffer-limit", b"replica 1mb 1mb 10"),
            (b"notify-keyspace-events", b"Ex"),
        ])
        .unwrap();
        cfg.rewrite().unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# tether test config");
        assert_eq!(lines[1], "timeout 7001");
        assert_eq!(lines[3], "# snapshots");
        assert_eq!(lines[4], "save 60 5");
        // The second old save line is blanked and folded into one empty line.
        assert_eq!(lines[5], "");
        assert_eq!(
            lines[6], "replica-read-only no",
            "alias line replaced in place under the canonical name"
        );
        assert_eq!(lines[7], "maxmemory 2gb");
        assert_eq!(lines[8], "", "bind back at its default is removed");
        assert!(text.contains("# Generated by CONFIG REWRITE\n"));
        assert!(text.contains("\nrequirepass \"s3cr\\\"et\"\n"));
        assert!(text.contains("\nclient-output-buffer-limit replica 1mb 1mb 10\n"));
        assert!(
            !text.contains("client-output-buffer-limit normal"),
            "default classes are not forced"
        );
        assert!(text.contains("\nnotify-keyspace-events \"xE\"\n"));
        assert!(text.contains("\ndir \""), "dir is always written, absolute");
        assert!(
            !text.contains("\nmasterauth"),
            "empty nullable strings are not written"
        );

        // Loading the rewritten file gives the same configuration back.
        let again = Config::from_args(&args(&[f.to_str().unwrap()])).unwrap();
        assert_eq!(again.get(&[b"*"]), cfg.get(&[b"*"]));

        // A second rewrite is a fixed point.
        again.rewrite().unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), text);
    }

    #[test]
    fn rewrite_keeps_unknown_lines_as_comments() {
        let mut c = Config::default();
        set1(&mut c, "save", "").unwrap();
        let out = c.rewritten_content(b"port 6379\nrename-command FLUSHALL \"\"\nsave \"\"\n");
        assert!(
            out.starts_with("port 6379\n# ??? rename-command FLUSHALL \"\"\nsave \"\"\n"),
            "{out}"
        );
    }
}
