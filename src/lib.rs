//! tether: a Redis-compatible, thread-per-core key-value server.
//!
//! Module map:
//! - [`config`]: defaults, redis.conf parser, `--name value` overrides, CONFIG table.
//! - [`resp`]: RESP parser and reply writer (no keyspace here).
//! - [`net`]: per-shard io_uring socket driver, connections, socket options.
//! - [`cmd`]: the command table and one file per command family.
//! - [`shard`]: shard state, key ownership, keyspace, cross-shard dispatch.
//! - [`glob`]: Redis glob matching (KEYS, SCAN MATCH, CONFIG GET).
//! - [`rdb`]: RDB v10 codec: snapshot writer, resumable loader, DUMP/RESTORE payloads.
//! - [`persist`]: RDB files on disk: SAVE, BGSAVE, the save schedule, SHUTDOWN's save, start-up load.

pub mod cmd;
pub mod config;
pub mod glob;
pub mod net;
pub mod persist;
pub mod rdb;
pub mod repl;
pub mod resp;
pub mod shard;
