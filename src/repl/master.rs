//! What a master puts into its stream, and how commands become entries.
//!
//! A write is replicated when its handler reported a change
//! (`Exec::modified`), exactly as Redis propagates when `server.dirty`
//! moved. Writes whose effect depends on the clock or on chance are
//! rewritten into deterministic ones, as Redis 7.0 does: relative TTLs
//! become `SET ... PXAT` / `PEXPIREAT`, INCRBYFLOAT a `SET ... KEEPTTL`,
//! HINCRBYFLOAT an `HSET`, SPOP the `SREM` of what it took, blocking pops
//! their non-blocking forms, and keys deleted by expiry a `DEL`.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::{BEntry, encode_cmd};
use crate::cmd::CmdSpec;
use crate::shard::Shard;
use crate::shard::keyspace::{Keyspace, Value};

pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// One command for the stream, in database `db`.
#[derive(Clone, Debug)]
pub struct PEntry {
    pub db: u16,
    pub args: Vec<Bytes>,
}

impl PEntry {
    pub fn new(db: u16, args: Vec<Bytes>) -> Self {
        PEntry { db, args }
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn num(n: u64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

/// Sequences one command in `db` on this shard and appends it to the
/// shard's backlog. Must run in the same synchronous step as the write,
/// or inside a batch (see [`batch_begin`]).
pub fn emit(shard: &Shard, db: u16, args: &[Bytes]) {
    let batching = shard.repl_batching.get();
    if shard
        .repl_pending_db
        .get()
        .is_some_and(|d| !batching || d != db)
    {
        flush_batch(shard);
    }
    // Encoded into the shard's arena: one allocation per many entries.
    arena_room(shard);
    let body = {
        let mut arena = shard.enc_arena.borrow_mut();
        encode_cmd(&mut arena, args);
        if batching {
            shard.repl_pending_db.set(Some(db));
            return;
        }
        arena.split().freeze()
    };
    sequence(shard, db, body, db);
}

/// Starts a batch: until [`batch_end`], consecutive writes in one db are
/// encoded back to back and sequenced as one backlog entry, with one
/// offset allocation and one backlog append, instead of one per write.
///
/// The network driver opens one around each turn's run of connections
/// (`Driver::process_dirty`). That is safe because nothing outside this
/// shard can observe those writes before they are sequenced: the turn is
/// synchronous, and its writes leave the shard only
/// - in replies to local clients, sent after the turn ([`batch_end`]),
///   or earlier when the ring's submission queue fills up, which [`seal`]s
///   first (`Ring::before_early_submit`);
/// - in messages to other shards (a remote part of a pipeline, a
///   PUBLISH, keyspace events), which [`seal`] first (`Shard::post`), so
///   a write that caused a message is in the stream before anything the
///   message causes;
/// - to replicas, whose pump [`seal`]s before it reads the backlogs.
///
/// Anything that sequences otherwise (a MULTI block, a no-db entry)
/// flushes the batch first, so stream order is kept. One entry per turn
/// instead of one per connection's run takes the backlog lock, the
/// sequencer's compare-and-swap, the arena split and the pump's reads
/// once per turn: with a replica attached and 50 clients at -P 16 that
/// was most of the direct cost of replication.
pub fn batch_begin(shard: &Shard) {
    shard.repl_batching.set(true);
}

/// Ends a batch, sequencing what it holds.
pub fn batch_end(shard: &Shard) {
    shard.repl_batching.set(false);
    flush_batch(shard);
}

/// Sequences what the open batch holds so far; the batch stays open.
/// Called before this shard's writes can be seen elsewhere (see
/// [`batch_begin`]).
pub fn seal(shard: &Shard) {
    if shard.repl_pending_db.get().is_some() {
        flush_batch(shard);
    }
}

/// Readies the arena for the next connection's run of writes inside a
/// batch (see [`prefetch_arena`]).
pub fn batch_warm(shard: &Shard) {
    prefetch_arena(shard);
}

/// Keeps at least 4 KiB free at the arena's end, in 64 KiB chunks. A
/// batch's bytes are sequenced first when a new chunk is due, or
/// `reserve` would copy them into it.
fn arena_room(shard: &Shard) {
    let low = {
        let arena = shard.enc_arena.borrow();
        arena.capacity() - arena.len() < 4096
    };
    if low {
        seal(shard);
        shard.enc_arena.borrow_mut().reserve(64 << 10);
    }
}

/// Stream bytes the arena's next batch is made ready for: about one
/// connection's turn of 16 pipelined small writes.
const ARENA_PREFETCH: usize = 1024;

/// Starts loading the arena's next bytes into cache before the batch
/// writes them.
///
/// The arena is written once, front to back, in 64 KiB chunks malloc
/// hands out, and the lines the encoder stores into are not in cache.
/// The stores retire into the store buffer, but the next locked
/// instruction (the `Bytes` refcount drop of the request just run) waits
/// for them to drain: with a replica attached that wait measured about
/// 60 ns per pipelined SET, 8 % of the master's CPU, and 30 ns with this
/// prefetch (even with a 16 KiB backlog, so it is not the backlog's size
/// that makes the lines cold). Prefetching them at the batch's start
/// overlaps the misses with parsing and running the batch's commands.
/// `prefetchw` asks for the lines in exclusive state, as the stores will
/// need them: ahead of `prefetcht0` in 9 of 11 alternating pairs, by about
/// 1.5 % of master ops/CPU-s with a replica (SET -P 16). CPUs without it
/// run the opcode as a no-op.
fn prefetch_arena(shard: &Shard) {
    arena_room(shard);
    let mut arena = shard.enc_arena.borrow_mut();
    #[cfg(target_arch = "x86_64")]
    {
        let spare = arena.spare_capacity_mut();
        let p = spare.as_ptr().cast::<u8>();
        for at in (0..ARENA_PREFETCH.min(spare.len())).step_by(64) {
            // SAFETY: a prefetch is a hint: it never faults, reads nothing
            // the program sees and writes nothing; `at` stays inside the
            // spare capacity anyway.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) p.wrapping_add(at),
                    options(nostack, readonly, preserves_flags)
                );
            }
        }
    }
}

fn flush_batch(shard: &Shard) {
    if let Some(db) = shard.repl_pending_db.take() {
        let body = shard.enc_arena.borrow_mut().split().freeze();
        sequence(shard, db, body, db);
    }
}

/// Sequences pre-encoded stream bytes that start in `db` and leave the
/// stream in `end_db` (a MULTI block may SELECT inside).
pub fn emit_raw(shard: &Shard, db: u16, body: Bytes, end_db: u16) {
    flush_batch(shard);
    sequence(shard, db, body, end_db);
}

fn sequence(shard: &Shard, db: u16, body: Bytes, end_db: u16) {
    let repl = &shard.shared.repl;
    let (off, sel) = repl.seq.alloc(db, body.len() as u64, end_db);
    if repl.push(
        shard.id,
        BEntry {
            off,
            select: sel.then_some(db),
            body,
        },
        shard.backlog_cap.get(),
        shard.now(),
    ) {
        shard.wake.notify();
    }
}

/// Emits a command that belongs to no database (the master's PING and
/// `REPLCONF GETACK *`): it counts in the offset like any entry.
fn emit_nodb(shard: &Shard, args: &[&[u8]]) {
    if !shard.shared.repl.active.load(Ordering::SeqCst) {
        return;
    }
    let mut body = BytesMut::new();
    encode_cmd(&mut body, args);
    append_nodb(shard, body.freeze());
}

/// Sequences bytes that need no SELECT (no-db entries, and a replica's
/// copy of its master's stream) and appends them to this shard's backlog.
pub fn append_nodb(shard: &Shard, body: Bytes) {
    if body.is_empty() {
        return;
    }
    flush_batch(shard);
    let repl = &shard.shared.repl;
    let off = repl.seq.alloc_nodb(body.len() as u64);
    if repl.push(
        shard.id,
        BEntry {
            off,
            select: None,
            body,
        },
        shard.backlog_cap.get(),
        shard.now(),
    ) {
        shard.wake.notify();
    }
}

pub fn emit_ping(shard: &Shard) {
    emit_nodb(shard, &[b"PING"]);
}

/// `REPLCONF GETACK *`, the request for replicas' offsets.
pub const GETACK: [&[u8]; 3] = [b"REPLCONF", b"GETACK", b"*"];

/// Asks the replicas for their offsets: a GETACK into the stream, its start
/// recorded in `getack_at` so that WAITs up to there share it.
pub fn emit_getack(shard: &Shard) {
    let repl = &shard.shared.repl;
    repl.getack_at.store(repl.seq.offset(), Ordering::SeqCst);
    emit_nodb(shard, &GETACK);
}

/// Emits several commands: one alone as itself, several wrapped in
/// MULTI ... EXEC as one contiguous entry (a transaction, or one command
/// whose parts ran on several shards).
pub fn emit_all(shard: &Shard, entries: Vec<PEntry>, wrap: bool) {
    if entries.is_empty() || !shard.shared.repl.active.load(Ordering::SeqCst) {
        return;
    }
    if entries.len() == 1 && !wrap {
        let e = &entries[0];
        return emit(shard, e.db, &e.args);
    }
    let first = entries[0].db;
    let mut body = BytesMut::new();
    encode_cmd(&mut body, &[b"MULTI"]);
    let mut cur = first;
    for e in &entries {
        if e.db != cur {
            super::write_select(&mut body, e.db);
            cur = e.db;
        }
        encode_cmd(&mut body, &e.args);
    }
    encode_cmd(&mut body, &[b"EXEC"]);
    emit_raw(shard, first, body.freeze(), cur);
}

/// Moves the keys expiry deleted into the stream as DELs. Runs after
/// every replicated write, so it looks at the logs only when expiry
/// logged something since the last call (`dels_pending`).
fn drain_expired(ks: &mut Keyspace, mut out: impl FnMut(u16, Vec<Bytes>)) {
    if !std::mem::take(&mut ks.stats.dels_pending) {
        return;
    }
    for (i, d) in ks.dbs.iter_mut().enumerate() {
        if let Some(log) = d.expired_log.as_mut()
            && !log.is_empty()
        {
            for k in std::mem::take(log) {
                out(i as u16, vec![b("DEL"), k]);
            }
        }
    }
}

/// After a keyspace op outside a command (cron expiry, typed ops from
/// other shards): propagates what expiry deleted.
pub fn flush_expired(shard: &Shard, ks: &mut Keyspace) {
    if shard.shared.repl.active.load(Ordering::Relaxed) {
        drain_expired(ks, |db, args| emit(shard, db, &args));
    }
}

/// Whether a command that changed the dataset goes into the stream: every
/// write, and PFCOUNT, a read whose cardinality cache is part of the
/// stored value (Redis replicates it so replicas hold the same bytes).
#[inline]
pub(crate) fn replicates(spec: &CmdSpec) -> bool {
    spec.is_write() || spec.name == "pfcount"
}

/// Replication of one executed command (replication is active).
#[allow(clippy::too_many_arguments)]
pub fn after_command(
    shard: &Shard,
    ks: &mut Keyspace,
    spec: &CmdSpec,
    db: u16,
    args: &[Bytes],
    dirty: bool,
    alt: Vec<Vec<Bytes>>,
    emit_to: crate::cmd::Emit,
) {
    // The common case (a plain write, emitted here) allocates nothing
    // beyond the encoded entry.
    match emit_to {
        crate::cmd::Emit::Direct => {
            drain_expired(ks, |d, a| emit(shard, d, &a));
            if dirty && replicates(spec) {
                if !alt.is_empty() {
                    for c in alt {
                        emit(shard, db, &c);
                    }
                } else if let Some(c) = rewrite(spec, ks, db, args) {
                    emit(shard, db, &c);
                } else {
                    emit(shard, db, args);
                }
            }
        }
        crate::cmd::Emit::Into(v) => {
            drain_expired(ks, |d, a| v.push(PEntry::new(d, a)));
            if dirty && replicates(spec) {
                if !alt.is_empty() {
                    v.extend(alt.into_iter().map(|c| PEntry::new(db, c)));
                } else {
                    let c = rewrite(spec, ks, db, args).unwrap_or_else(|| args.to_vec());
                    v.push(PEntry::new(db, c));
                }
            }
        }
    }
}

fn has_opt(args: &[Bytes], from: usize, names: &[&str]) -> bool {
    args.iter()
        .skip(from)
        .any(|a| names.iter().any(|n| a.eq_ignore_ascii_case(n.as_bytes())))
}

/// The deterministic form of a write whose arguments alone do not fix its
/// effect, read from the key's state after it ran; `None` = as written.
pub fn rewrite(spec: &CmdSpec, ks: &mut Keyspace, db: u16, args: &[Bytes]) -> Option<Vec<Bytes>> {
    let name = spec.name;
    let key = args.get(1)?;
    let entry = || ks.dbs[db as usize].raw(key).cloned();
    let gone = || vec![b("DEL"), key.clone()];
    match name {
        // As Redis 7.0: GETSET replicates as the SET it is, and SET's GET
        // option is dropped (what it read matters only to its client).
        "getset" => Some(vec![b("SET"), key.clone(), args.get(2)?.clone()]),
        // GETDEL replicates as the DEL it was (it is dirty only if it deleted).
        "getdel" => Some(gone()),
        "set" | "setex" | "psetex" => {
            let timed = name != "set" || has_opt(args, 3, &["ex", "px", "exat", "pxat"]);
            if !timed {
                if name == "set" && has_opt(args, 3, &["get"]) {
                    let mut v = args[..3].to_vec();
                    v.extend(
                        args[3..]
                            .iter()
                            .filter(|a| !a.eq_ignore_ascii_case(b"get"))
                            .cloned(),
                    );
                    return Some(v);
                }
                return None;
            }
            Some(match entry() {
                Some(e) => match e.value {
                    Value::Str(v) if e.expire_at != 0 => {
                        vec![
                            b("SET"),
                            key.clone(),
                            v.to_bytes(),
                            b("PXAT"),
                            num(e.expire_at),
                        ]
                    }
                    Value::Str(v) => vec![b("SET"), key.clone(), v.to_bytes()],
                    _ => return None,
                },
                None => gone(),
            })
        }
        "getex" => Some(match entry() {
            Some(e) if e.expire_at != 0 => vec![b("PEXPIREAT"), key.clone(), num(e.expire_at)],
            Some(_) => vec![b("PERSIST"), key.clone()],
            None => gone(),
        }),
        "expire" | "pexpire" | "expireat" => Some(match entry() {
            Some(e) if e.expire_at != 0 => vec![b("PEXPIREAT"), key.clone(), num(e.expire_at)],
            Some(_) => return None,
            None => gone(),
        }),
        "pexpireat" => match entry() {
            None => Some(gone()),
            Some(_) => None,
        },
        // A relative TTL travels as an absolute one.
        "restore" => match entry() {
            None => Some(gone()),
            Some(e) if e.expire_at != 0 && !has_opt(args, 4, &["absttl"]) => {
                let mut v = vec![
                    b("RESTORE"),
                    key.clone(),
                    num(e.expire_at),
                    args.get(3)?.clone(),
                    b("ABSTTL"),
                ];
                if has_opt(args, 4, &["replace"]) {
                    v.push(b("REPLACE"));
                }
                Some(v)
            }
            Some(_) => None,
        },
        "incrbyfloat" => match entry()?.value {
            Value::Str(v) => Some(vec![b("SET"), key.clone(), v.to_bytes(), b("KEEPTTL")]),
            _ => None,
        },
        "hincrbyfloat" => {
            let field = args.get(2)?;
            match entry()?.value {
                Value::Hash(h) => {
                    let v = h.get(field.as_ref())?.to_bytes();
                    Some(vec![b("HSET"), key.clone(), field.clone(), v])
                }
                _ => None,
            }
        }
        "blmove" => {
            let mut v = vec![b("LMOVE")];
            v.extend(args[1..5].iter().cloned());
            Some(v)
        }
        "brpoplpush" => Some(vec![b("RPOPLPUSH"), args[1].clone(), args[2].clone()]),
        _ => None,
    }
}

/// Shard 0's share of Redis's `replicationCron`: the master's PING every
/// `repl-ping-replica-period` while replicas are attached (it keeps their
/// `repl-timeout` from firing on an idle stream), and the count of replicas
/// that acked within `min-replicas-max-lag` for `min-replicas-to-write`.
pub fn cron(shard: &Shard) {
    let repl = &shard.shared.repl;
    let period = shard
        .shared
        .config()
        .get_int("repl-ping-replica-period")
        .unwrap_or(10)
        .max(1) as u64;
    let now = crate::shard::now_ms();
    repl.recount_good();
    // repl-backlog-ttl (a replica keeps its backlog: it may be promoted).
    if repl.replicas_empty() {
        let since = repl.no_replicas_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            repl.no_replicas_since_ms.store(now, Ordering::Relaxed);
        } else if repl.backlog_on.load(Ordering::SeqCst) && !repl.is_replica.load(Ordering::SeqCst)
        {
            let ttl = shard
                .shared
                .config()
                .get_int("repl-backlog-ttl")
                .unwrap_or(3600);
            if ttl > 0 && now.saturating_sub(since) > ttl as u64 * 1000 {
                repl.free_backlog();
                log::info!(
                    "Replication backlog freed after {ttl} seconds without connected replicas."
                );
            }
        }
    } else {
        repl.no_replicas_since_ms.store(0, Ordering::Relaxed);
    }
    // No PING while a failover runs: the offset its target must reach
    // holds still (Redis skips it during a timed one).
    let any =
        !repl.replicas_empty() && super::failover::state(shard) == super::failover::State::None;
    if any && now.saturating_sub(repl.last_ping_ms.load(Ordering::Relaxed)) >= period * 1000 {
        repl.last_ping_ms.store(now, Ordering::Relaxed);
        emit_ping(shard);
    }
}

/// INFO's `# Replication` section of a master, with Redis's fields plus
/// `lag_ms` per replica (from the stream's offset/time samples).
pub fn info_replication(shared: &crate::shard::Shared, cfg: &crate::config::Config) -> String {
    use std::fmt::Write as _;
    let repl = &shared.repl;
    let now = crate::shard::now_ms();
    let master = repl.seq.offset();
    let mut views: Vec<(u64, super::ReplicaView)> = super::lock(&repl.replicas)
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    views.sort_by_key(|v| v.0);
    let mut s = String::from("# Replication\r\n");
    match super::lock(&repl.master).clone() {
        None => s.push_str("role:master\r\n"),
        Some(m) => {
            let c = cfg;
            let _ = write!(
                s,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
                m.host,
                m.port,
                if m.link_up { "up" } else { "down" },
                if m.last_io_ms == 0 {
                    -1
                } else {
                    (now.saturating_sub(m.last_io_ms) / 1000) as i64
                },
                m.sync_in_progress as u8,
                master.max(m.read_offset),
                master,
            );
            if m.sync_in_progress {
                let _ = write!(
                    s,
                    "master_sync_read_bytes:{}\r\ntether_sync_loaded_keys:{}\r\n",
                    m.sync_bytes, m.sync_keys
                );
            }
            if !m.link_up {
                let _ = write!(
                    s,
                    "master_link_down_since_seconds:{}\r\n",
                    if !m.ever_up {
                        -1
                    } else {
                        (now.saturating_sub(m.down_since_ms) / 1000) as i64
                    }
                );
            }
            let _ = write!(
                s,
                "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
                c.get_int("replica-priority").unwrap_or(100),
                c.get_bool("replica-read-only").unwrap_or(true) as u8,
                c.get_bool("replica-announced").unwrap_or(true) as u8,
            );
        }
    }
    let _ = write!(s, "connected_slaves:{}\r\n", views.len());
    for (i, (_, v)) in views.iter().enumerate() {
        // Measured when the replica acked: how long before its ACK the
        // first byte it had not yet applied was written.
        // A replica whose ACKs are overdue is behind by at least the age of
        // the oldest byte it has not acknowledged.
        let lag_ms = if now.saturating_sub(v.ack_ms) > 2000 {
            repl.lag_ms(v.ack_off, now)
        } else {
            v.lag_ms
        };
        let _ = write!(
            s,
            "slave{i}:ip={},port={},state={},offset={},lag={},lag_ms={}\r\n",
            v.ip,
            v.port,
            v.state,
            v.ack_off,
            now.saturating_sub(v.ack_ms) / 1000,
            lag_ms
        );
    }
    let ids = repl.ids();
    let active = repl.backlog_on.load(Ordering::SeqCst);
    let first = repl.first_offset();
    let _ = write!(
        s,
        "master_failover_state:{}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n\r\n",
        super::lock(&repl.failover).state.name(),
        ids.replid,
        ids.replid2,
        master,
        ids.second_offset,
        active as u8,
        cfg.get_int("repl-backlog-size").unwrap_or(1 << 20),
        if active { first + 1 } else { 0 },
        if active { master - first } else { 0 },
    );
    s
}
