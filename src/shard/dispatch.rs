//! Moving work between shards: the slow path of a connection's pipeline,
//! multi-shard transactions and typed shard ops.
//!
//! A pipeline batch is walked in order. Single-shard commands are grouped
//! per owner shard (each carries its own db, so SELECT needs no barrier);
//! a multi-shard or global command is a barrier: the groups so far are sent
//! (one message per shard), awaited, and only then the barrier runs. Replies
//! are reassembled in request order, so a client sees exactly what a
//! single-threaded Redis would have answered.
//!
//! Multi-shard commands take the transaction lock of every shard they touch,
//! in ascending shard order (no deadlock: every transaction climbs the same
//! ladder), run typed [`Op`]s under it, and release. Plain commands on a
//! locked shard wait, so nobody observes half of an MSET or RENAME.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::sync::StaticPermit;

use super::keyspace::{Entry, Str, Value, WARM_AHEAD};
use super::{CountKind, Msg, Op, OpReply, Shard, ShardCmd, ShardInfo, now_ms, shard_of};
use crate::cmd::{self, ClientState, Kind, Lookup, Multi, Route, notify};
use crate::glob::glob_match;
use crate::repl::master::PEntry;
use crate::resp::{Proto, Reply};

/// Runs single-shard commands on this shard, appending their replies back
/// to back to `out` and the end offset of each to `ends`. The caller has
/// waited for the gate. For a batch from another shard the buffers were
/// allocated there and go back with the reply, so every allocation of a
/// cross-shard round trip is freed by the thread that made it (glibc
/// frees a foreign chunk into its owner's arena under that arena's lock).
///
/// Each run of [`WARM_AHEAD`] commands first looks up every first key, as
/// the fast path's parse-ahead does ([`super::keyspace::Keyspace::warm`]):
/// a batch from another shard arrives cold. The batch runs under one clock
/// reading, as a driver turn does.
pub fn exec_group(
    shard: &Shard,
    proto: Proto,
    cmds: &[ShardCmd],
    out: &mut BytesMut,
    ends: &mut Vec<u32>,
) {
    let clock = shard.clock.replace(now_ms());
    for run in cmds.chunks(WARM_AHEAD) {
        if run.len() > 1 {
            shard.ks.borrow().warm(
                run.iter()
                    .filter_map(|c| Some((c.db, c.args.get(1)?.as_ref()))),
            );
        }
        for c in run {
            cmd::exec_local(shard, c.spec, c.db, proto, &c.args, out);
            ends.push(out.len() as u32);
        }
    }
    shard.clock.set(clock);
    Stats::bump(shard, cmds.len());
}

struct Stats;
impl Stats {
    fn bump(shard: &Shard, n: usize) {
        super::Stats::add(&shard.stats.commands_processed, n as u64);
    }
}

/// Runs the rest of a pipeline that could not complete synchronously.
/// Returns the replies in order and the connection state after the batch.
///
/// Before a request that may wait for an outside event (a blocking pop,
/// WAIT, a client pause), the replies of the requests before it go to the
/// connection `conn` (slot, generation) at once, as Redis writes a blocked
/// client's earlier replies while it waits; without `conn` (a master
/// link's stream) they stay in the returned output.
pub async fn run_batch(
    shard: Rc<Shard>,
    mut client: ClientState,
    cmds: Vec<Vec<Bytes>>,
    closed: Rc<super::blocking::CloseFlag>,
    conn: Option<(u32, u32)>,
) -> (BytesMut, ClientState) {
    let n = shard.nshards();
    let mut slots: Vec<Bytes> = vec![Bytes::new(); cmds.len()];
    // Replies CLIENT REPLY OFF / SKIP drops.
    let mut silent: Vec<bool> = Vec::new();
    // Replies before this index went to the connection already.
    let mut sent = 0;
    let mut groups: Vec<Vec<(usize, ShardCmd)>> = (0..n).map(|_| Vec::new()).collect();
    for (i, args) in cmds.into_iter().enumerate() {
        if client.close_after_reply {
            break;
        }
        // A paused command waits here, and the rest of the pipeline behind
        // it (CLIENT PAUSE). A replica's master link is held by its apply
        // loop instead, outside its `applying` window.
        if shard.shared.pause.maybe()
            && !client.repl.is_replica
            && !client.repl.is_master
            && let Lookup::Found(spec) = cmd::lookup(&args)
            && shard.shared.pause.mode(super::now_ms()).is_some()
            // Refused at once rather than held, as Redis checks first.
            && cmd::repl::refusal(&shard, &client, spec, &args).is_none()
        {
            flush(&shard, client.proto, &mut groups, &mut slots).await;
            send_early(&shard, conn, &slots[..i], &silent, &mut sent);
            if !cmd::pause::wait(&shard, spec, &client, &closed).await {
                break;
            }
        }
        if client.reply_mode.silences(&args) {
            silent.resize(slots.len(), false);
            silent[i] = true;
            if client.reply_mode == cmd::ReplyMode::SkipNext {
                client.reply_mode = cmd::ReplyMode::On;
            }
        }
        if client.multi.is_some() {
            let mut out = BytesMut::new();
            if cmd::multi::queue(&shard, &mut client, &args, &mut out) {
                slots[i] = out.freeze();
                continue;
            }
        }
        let spec = match cmd::lookup(&args) {
            Lookup::Error(e) => {
                slots[i] = error_bytes(&e);
                continue;
            }
            Lookup::Found(spec) => spec,
        };
        cmd::note_cmd(&mut client, spec, &args);
        {
            let mut out = BytesMut::new();
            if cmd::pubsub::subscribed_guard(&client, spec, &args, &mut out) {
                cmd::stats::rejected(spec, &args);
                slots[i] = out.freeze();
                continue;
            }
        }
        if let Some(e) = cmd::repl::refusal(&shard, &client, spec, &args) {
            cmd::stats::rejected(spec, &args);
            slots[i] = error_bytes(e);
            continue;
        }
        // MONITOR: a connection command shows after it ran (with the
        // database SELECT chose), EXEC after what it ran; the rest now.
        let queued = (spec.name == "exec" && cmd::monitor::on(&shard))
            .then(|| client.multi.clone())
            .flatten();
        if !matches!(spec.kind, Kind::Conn(_)) && spec.name != "exec" {
            cmd::monitor::feed_client(&shard, spec, &client, &args);
        }
        match cmd::route(spec, &args, shard.id, n) {
            // Blocking pops wait in their own barrier step.
            _ if super::blocking::timeout_index(spec.name, args.len()).is_some()
                && client.multi.is_none() =>
            {
                flush(&shard, client.proto, &mut groups, &mut slots).await;
                send_early(&shard, conn, &slots[..i], &silent, &mut sent);
                let mut out = BytesMut::new();
                if super::blocking::exec_blocking(&shard, &client, spec, &args, &mut out, &closed)
                    .await
                {
                    client.close_after_reply = true;
                }
                super::Stats::add(&shard.stats.commands_processed, 1);
                slots[i] = out.freeze();
                if closed.is_set() {
                    break;
                }
            }
            Route::Shard(s) => groups[s].push((
                i,
                ShardCmd {
                    spec,
                    db: client.db,
                    args,
                },
            )),
            Route::Conn => {
                let mut out = BytesMut::new();
                cmd::server::exec_conn(&shard, &mut client, spec, &args, &mut out);
                cmd::monitor::feed_client(&shard, spec, &client, &args);
                slots[i] = out.freeze();
            }
            Route::Multi | Route::Global => {
                flush(&shard, client.proto, &mut groups, &mut slots).await;
                if spec.name == "wait" {
                    send_early(&shard, conn, &slots[..i], &silent, &mut sent);
                }
                let mut out = BytesMut::new();
                if matches!(spec.kind, Kind::Global) {
                    cmd::server::exec_global(
                        &shard,
                        &mut client,
                        spec,
                        &args,
                        &mut out,
                        None,
                        Some(&closed),
                    )
                    .await;
                } else {
                    exec_multi(&shard, &client, spec, &args, &mut out, None).await;
                }
                if spec.name == "exec" {
                    cmd::monitor::feed_exec(&shard, &client, queued, spec, &args, &out);
                }
                super::Stats::add(&shard.stats.commands_processed, 1);
                slots[i] = out.freeze();
            }
        }
    }
    flush(&shard, client.proto, &mut groups, &mut slots).await;
    let out = voiced(&slots, &silent, sent);
    (out, client)
}

/// The replies in `slots` from `from` on, without those CLIENT REPLY OFF /
/// SKIP silenced.
fn voiced(slots: &[Bytes], silent: &[bool], from: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(slots[from..].iter().map(|s| s.len()).sum());
    for (i, s) in slots.iter().enumerate().skip(from) {
        if !silent.get(i).copied().unwrap_or(false) {
            out.extend_from_slice(s);
        }
    }
    out
}

/// Hands the replies in `slots` not yet sent to the connection `conn`
/// now, ahead of the batch's end (see [`run_batch`]).
fn send_early(
    shard: &Shard,
    conn: Option<(u32, u32)>,
    slots: &[Bytes],
    silent: &[bool],
    sent: &mut usize,
) {
    let Some((slot, generation)) = conn else {
        return;
    };
    if *sent >= slots.len() {
        return;
    }
    let out = voiced(slots, silent, *sent);
    *sent = slots.len();
    if !out.is_empty() {
        shard.net.borrow_mut().early(slot, generation, &out);
        shard.wake.notify();
    }
}

pub fn error_bytes(msg: &str) -> Bytes {
    let mut b = BytesMut::new();
    Reply::new(&mut b, Proto::Resp2).error(msg);
    b.freeze()
}

/// Sends every pending per-shard group (one message per shard), runs the
/// local one in place while the others run on their cores, and files the
/// replies into their slots.
async fn flush(
    shard: &Rc<Shard>,
    proto: Proto,
    groups: &mut [Vec<(usize, ShardCmd)>],
    slots: &mut [Bytes],
) {
    let mut remote = Vec::new();
    for (s, group) in groups.iter_mut().enumerate() {
        if group.is_empty() || s == shard.id {
            continue;
        }
        let (idx, cmds): (Vec<usize>, Vec<ShardCmd>) = std::mem::take(group).into_iter().unzip();
        super::Stats::add(&shard.stats.remote_batches, 1);
        let from = shard.id;
        let slot = shard.post_request(s, |id| Msg::batch(from, id, proto, cmds));
        remote.push((idx, slot));
    }
    let local = std::mem::take(&mut groups[shard.id]);
    if !local.is_empty() {
        shard.wait_gate().await;
        let (idx, cmds): (Vec<usize>, Vec<ShardCmd>) = local.into_iter().unzip();
        let mut out = BytesMut::with_capacity(64 * cmds.len());
        let mut ends = Vec::with_capacity(cmds.len());
        exec_group(shard, proto, &cmds, &mut out, &mut ends);
        file_replies(out.freeze(), &ends, &idx, slots);
        recycle(shard, cmds);
    }
    for (idx, slot) in remote {
        match slot.recv().await {
            // `cmds` comes back to be reused (or freed) here, where it
            // was made.
            OpReply::Batch { out, ends, cmds } => {
                file_replies(out.freeze(), &ends, &idx, slots);
                recycle(shard, cmds);
            }
            other => unreachable!("batch answered with {other:?}"),
        }
    }
}

/// Gives run requests' argument vectors back to the connection table's
/// pool, which the parser takes its vectors from.
fn recycle(shard: &Shard, cmds: Vec<ShardCmd>) {
    shard
        .net
        .borrow_mut()
        .recycle_args(cmds.into_iter().map(|c| c.args));
}

fn file_replies(out: Bytes, ends: &[u32], idx: &[usize], slots: &mut [Bytes]) {
    let mut start = 0usize;
    for (&end, &i) in ends.iter().zip(idx) {
        slots[i] = out.slice(start..end as usize);
        start = end as usize;
    }
}

/// A multi-shard transaction: the locks it holds.
pub struct Tx {
    pub id: u64,
    local: Option<StaticPermit>,
    remote: Vec<usize>,
    /// An EXEC's transaction collects what its commands replicate and
    /// emits it as one MULTI ... EXEC before unlocking.
    pub collect: bool,
    pub prop: std::cell::RefCell<Vec<crate::repl::master::PEntry>>,
    /// Set while a script's `redis.set_repl(redis.REPL_NONE)` is in
    /// force: what its commands would replicate is dropped.
    pub mute: std::cell::Cell<bool>,
}

impl Tx {
    /// Takes the lock of each shard in `shards` (sorted, unique), in order.
    pub async fn lock(shard: &Rc<Shard>, shards: &[usize]) -> Tx {
        let id = ((shard.id as u64) << 48) | shard.next_id();
        let mut tx = Tx {
            id,
            local: None,
            remote: Vec::new(),
            collect: false,
            prop: Default::default(),
            mute: Default::default(),
        };
        for &s in shards {
            if s == shard.id {
                tx.local = Some(
                    shard
                        .gate
                        .acquire_static_permit(1)
                        .await
                        .expect("gate semaphore closed"),
                );
            } else {
                let from = shard.id;
                match shard
                    .request(s, |rid| Msg::Lock {
                        from,
                        id: rid,
                        tx: id,
                    })
                    .await
                {
                    OpReply::Locked => tx.remote.push(s),
                    other => unreachable!("lock answered with {other:?}"),
                }
            }
        }
        tx
    }

    /// Locks `shards` unless the caller already holds a transaction (inside
    /// EXEC); the caller unlocks what this returns.
    pub async fn unless_held(
        shard: &Rc<Shard>,
        outer: Option<&Tx>,
        shards: &[usize],
    ) -> Option<Tx> {
        match outer {
            Some(_) => None,
            None => Some(Tx::lock(shard, shards).await),
        }
    }

    /// Runs an op on a shard this transaction holds.
    pub async fn op(&self, shard: &Rc<Shard>, to: usize, op: Op) -> OpReply {
        if to == shard.id {
            apply_op(shard, op)
        } else {
            let (from, tx) = (shard.id, self.id);
            shard
                .request(to, |id| Msg::Op {
                    from,
                    id,
                    tx: Some(tx),
                    op,
                })
                .await
        }
    }

    /// Replicates `entries` under this transaction's locks: collected for
    /// the EXEC that owns it, else emitted now (several become one MULTI
    /// block, so a command split over shards stays atomic on replicas).
    pub fn emit(&self, shard: &Shard, entries: Vec<crate::repl::master::PEntry>) {
        if self.mute.get() {
            return;
        }
        if self.collect {
            self.prop.borrow_mut().extend(entries);
        } else {
            crate::repl::master::emit_all(shard, entries, false);
        }
    }

    pub async fn unlock(self, shard: &Rc<Shard>) {
        if self.collect {
            let entries = std::mem::take(&mut *self.prop.borrow_mut());
            crate::repl::master::emit_all(shard, entries, true);
        }
        for &s in &self.remote {
            shard.post(s, Msg::Unlock { tx: self.id });
        }
        drop(self.local);
    }
}

/// Runs an op on every shard, in shard order: under `tx` when the caller
/// holds every shard (inside EXEC), else waiting for each shard's gate.
pub async fn broadcast(
    shard: &Rc<Shard>,
    tx: Option<&Tx>,
    mut make: impl FnMut(usize) -> Op,
) -> Vec<OpReply> {
    if let Some(tx) = tx {
        let mut out = Vec::new();
        for s in 0..shard.nshards() {
            out.push(tx.op(shard, s, make(s)).await);
        }
        return out;
    }
    let mut tasks = Vec::new();
    for s in 0..shard.nshards() {
        let op = make(s);
        let me = shard.clone();
        tasks.push(glommio::spawn_local(async move {
            op_on(&me, None, s, op).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Runs one op on a shard: under `tx` if given, else after its gate.
pub async fn op_on(shard: &Rc<Shard>, tx: Option<&Tx>, to: usize, op: Op) -> OpReply {
    if let Some(tx) = tx {
        return tx.op(shard, to, op).await;
    }
    if to == shard.id {
        shard.wait_gate().await;
        apply_op(shard, op)
    } else {
        let from = shard.id;
        shard
            .request(to, |id| Msg::Op {
                from,
                id,
                tx: None,
                op,
            })
            .await
    }
}

/// Runs a write on every shard under one transaction (FLUSHALL, SWAPDB):
/// the caller's `outer` one inside EXEC, else a fresh one.
pub async fn on_all_locked(shard: &Rc<Shard>, outer: Option<&Tx>, make: impl FnMut() -> Op) {
    on_all_locked_prop(shard, outer, make, None).await
}

/// [`on_all_locked`] for a write that replicates as `prop` (FLUSHALL).
pub async fn on_all_locked_prop(
    shard: &Rc<Shard>,
    outer: Option<&Tx>,
    make: impl FnMut() -> Op,
    prop: Option<crate::repl::master::PEntry>,
) {
    on_all_locked_then(shard, outer, make, prop, || ()).await
}

/// [`on_all_locked_prop`], then `under` while every shard is still held:
/// what it reads no other client can have changed since the write.
pub async fn on_all_locked_then<R>(
    shard: &Rc<Shard>,
    outer: Option<&Tx>,
    mut make: impl FnMut() -> Op,
    prop: Option<crate::repl::master::PEntry>,
    under: impl FnOnce() -> R,
) -> R {
    let all: Vec<usize> = (0..shard.nshards()).collect();
    let own = Tx::unless_held(shard, outer, &all).await;
    let tx = outer.or(own.as_ref()).expect("a transaction is held");
    for s in all {
        tx.op(shard, s, make()).await;
    }
    if let Some(p) = prop {
        tx.emit(shard, vec![p]);
    }
    let r = under();
    if let Some(t) = own {
        t.unlock(shard).await;
    }
    r
}

/// Executes a typed op against this shard's keyspace, then replicates the
/// DELs of keys its lookups found expired.
pub fn apply_op(shard: &Shard, op: Op) -> OpReply {
    let reply = apply_op_inner(shard, op);
    super::keyspace::track_replica_ttls(false);
    let mut ks = shard.ks.borrow_mut();
    notify::drain_expired(shard, &mut ks);
    crate::repl::master::flush_expired(shard, &mut ks);
    reply
}

fn apply_op_inner(shard: &Shard, op: Op) -> OpReply {
    let mut ks = shard.ks.borrow_mut();
    // A write's lookups find every key live on a replica; reads there see
    // expired keys missing without deleting them (`cmd::expiry_cut`).
    // `Take` fetches for a command that runs on a scratch copy, whose own
    // lookups then decide.
    let write = matches!(
        op,
        Op::MSet { .. }
            | Op::Take { .. }
            | Op::Put { .. }
            | Op::Count {
                kind: CountKind::Del | CountKind::Purge | CountKind::Probe,
                ..
            }
    );
    let now = cmd::expiry_cut(shard, &mut ks, write, now_ms());
    match op {
        Op::MGet { db, keys } => {
            let (d, st) = ks.db(db as usize);
            let vals = keys
                .iter()
                .map(|k| match d.get(k, now, st) {
                    Some(e) => {
                        st.hits += 1;
                        match &e.value {
                            Value::Str(s) => Some(s.to_bytes()),
                            _ => None,
                        }
                    }
                    None => {
                        st.misses += 1;
                        None
                    }
                })
                .collect::<Vec<_>>();
            if shard.notify_flags.get() & notify::KEY_MISS != 0 {
                notify::drain_expired(shard, &mut ks);
                for (k, v) in keys.iter().zip(&vals) {
                    if v.is_none() && ks.dbs[db as usize].peek(k, now).is_none() {
                        notify::raise(shard, notify::KEY_MISS, "keymiss", db as usize, k);
                    }
                }
            }
            OpReply::Values(vals)
        }
        Op::Populate {
            db,
            prefix,
            count,
            size,
        } => {
            let (d, st) = ks.db(db as usize);
            let (me, n) = (shard.id, shard.nshards());
            let mut added = Vec::new();
            let mut key = Vec::with_capacity(prefix.len() + 21);
            let mut digits = itoa::Buffer::new();
            for j in 0..count {
                let num = digits.format(j);
                key.clear();
                key.extend_from_slice(&prefix);
                key.push(b':');
                key.extend_from_slice(num.as_bytes());
                if shard_of(&key, n) != me || d.contains(&key, now, st) {
                    continue;
                }
                let mut val = format!("value:{num}").into_bytes();
                if size != 0 {
                    val.resize(size, 0);
                }
                d.insert(&key, Entry::new(Value::Str(Str::from(&val[..]))));
                added.push(Bytes::copy_from_slice(&key));
            }
            drop(ks);
            for k in &added {
                shard.key_modified(db as usize, k);
            }
            OpReply::Int(added.len() as i64)
        }
        Op::MSet { db, pairs } => {
            let (d, st) = ks.db(db as usize);
            for (k, v) in &pairs {
                if shard.notify_flags.get() & notify::NEW != 0 && !d.contains(k, now, st) {
                    notify::raise(shard, notify::NEW, "new", db as usize, k);
                }
                d.insert(k, Entry::new(Value::Str(Str::from(&v[..]))));
                notify::raise(shard, notify::STRING, "set", db as usize, k);
            }
            drop(ks);
            for (k, _) in &pairs {
                shard.key_modified(db as usize, k);
            }
            OpReply::Done
        }
        Op::Count { db, keys, kind } => {
            let (d, st) = ks.db(db as usize);
            let mut n = 0;
            let mut gone = Vec::new();
            for k in &keys {
                let live = d.contains(k, now, st);
                if live && matches!(kind, CountKind::Del | CountKind::Purge) {
                    d.remove(k);
                    gone.push(k);
                    if kind == CountKind::Del {
                        notify::raise(shard, notify::GENERIC, "del", db as usize, k);
                    }
                } else if matches!(kind, CountKind::Exists | CountKind::Touch) {
                    // Redis's lookupKeyRead: a hit or a miss, and `keymiss`.
                    if live {
                        st.hits += 1;
                    } else {
                        st.misses += 1;
                        notify::raise(shard, notify::KEY_MISS, "keymiss", db as usize, k);
                    }
                }
                n += live as i64;
            }
            drop(ks);
            for k in gone {
                shard.key_modified(db as usize, k);
            }
            OpReply::Int(n)
        }
        Op::Take { db, key, remove } => {
            let (d, st) = ks.db(db as usize);
            let e = d.get(&key, now, st).cloned();
            if remove && e.is_some() {
                d.remove(&key);
                drop(ks);
                shard.key_modified(db as usize, &key);
            }
            OpReply::Entry(e)
        }
        Op::Put { db, key, entry, nx } => {
            let (d, st) = ks.db(db as usize);
            if nx && d.contains(&key, now, st) {
                return OpReply::Int(0);
            }
            d.insert(&key, entry);
            drop(ks);
            shard.key_modified(db as usize, &key);
            OpReply::Int(1)
        }
        Op::DbSize { db } => OpReply::Int(ks.dbs[db as usize].len() as i64),
        Op::Digest { db, key } => {
            use crate::cmd::digest;
            OpReply::Bytes(match key {
                Some(k) => {
                    let mut d = [0u8; 20];
                    // As Redis: a logically expired key still counts.
                    if let Some(e) = ks.dbs[db as usize].raw(&k) {
                        digest::value_digest(&mut d, e);
                    }
                    d.to_vec()
                }
                None => digest::shares(&ks.dbs),
            })
        }
        Op::Flush { db } => {
            shard.shared.persist.bump(shard.id, 1);
            let all: Vec<u16> = match db {
                Some(d) => vec![d],
                None => (0..ks.dbs.len() as u16).collect(),
            };
            for d in all {
                shard.touch_watched_in_db(&ks, d, None, now);
            }
            match db {
                Some(db) => ks.dbs[db as usize].clear(),
                None => ks.dbs.iter_mut().for_each(|d| d.clear()),
            }
            OpReply::Done
        }
        Op::SwapDb { a, b } => {
            shard.shared.persist.bump(shard.id, 1);
            shard.touch_watched_in_db(&ks, a, Some(b), now);
            shard.touch_watched_in_db(&ks, b, Some(a), now);
            let (a16, b16) = (a, b);
            let (a, b) = (a as usize, b as usize);
            // A snapshot in progress keeps each index's content as of the
            // cut: finish both walks, swap, and swap the parts back.
            ks.dbs[a].snap_finish();
            ks.dbs[b].snap_finish();
            ks.dbs.swap(a, b);
            let (sa, sb) = (ks.dbs[a].snap.take(), ks.dbs[b].snap.take());
            ks.dbs[a].snap = sb;
            ks.dbs[b].snap = sa;
            // Clients blocked on a key the swap brought in are served, as
            // Redis's `scanDatabaseForReadyKeys` after `dbSwapDatabases`.
            let mut wake = false;
            {
                let mut bl = shard.blocking.borrow_mut();
                for d in [a16, b16] {
                    wake |= bl.db_ready(d, |k| ks.dbs[d as usize].peek(k, now).is_some());
                }
            }
            if wake {
                shard.blocking_wake.notify();
            }
            OpReply::Done
        }
        Op::Keys { db, pattern } => {
            let all = pattern.as_ref() == b"*";
            OpReply::Keys(
                ks.dbs[db as usize].keys(now, |k, _| all || glob_match(&pattern, k, false)),
            )
        }
        Op::Scan {
            db,
            pos,
            count,
            pattern,
            typ,
        } => {
            let mut keys = Vec::new();
            let next = ks.dbs[db as usize].scan(pos, count, now, &mut keys, |k, e| {
                pattern.as_ref().is_none_or(|p| glob_match(p, k, false))
                    && typ
                        .as_ref()
                        .is_none_or(|t| t.eq_ignore_ascii_case(e.value.type_name().as_bytes()))
            });
            OpReply::Scan { keys, next }
        }
        Op::RandomKey { db } => {
            let (d, st) = ks.db(db as usize);
            OpReply::Keys(d.random_key(now, st).into_iter().collect())
        }
        Op::Info => {
            drop(ks);
            OpReply::Info(Box::new(shard_info(shard, now)))
        }
        Op::ClientList {
            id_filter,
            typ,
            caller,
        } => {
            drop(ks);
            OpReply::Text(shard.net.borrow().client_list(
                shard,
                id_filter.as_deref(),
                typ.as_deref(),
                caller,
            ))
        }
        Op::Script(job) => {
            drop(ks);
            super::Stats::add(&shard.stats.commands_processed, 1);
            OpReply::Script(crate::cmd::script::eval::run_fast(shard, *job))
        }
        Op::Exec {
            spec,
            db,
            proto,
            args,
            capture,
        } => {
            drop(ks);
            let mut out = BytesMut::new();
            let mut prop = Vec::new();
            let blocked = if capture {
                cmd::exec_local_into(shard, spec, db, proto, &args, &mut out, &mut prop)
            } else {
                cmd::exec_local(shard, spec, db, proto, &args, &mut out)
            };
            super::Stats::add(&shard.stats.commands_processed, 1);
            OpReply::Exec {
                out: out.freeze(),
                blocked,
                prop,
            }
        }
        Op::Block {
            waiter,
            keys,
            cmd,
            proto,
            closed,
        } => {
            drop(ks);
            super::blocking::park(shard, waiter, keys, cmd, proto, closed);
            OpReply::Done
        }
        Op::TryBlock {
            waiter,
            keys,
            cmd: c,
            proto,
            closed,
        } => {
            drop(ks);
            let mut out = BytesMut::new();
            let blocked = cmd::exec_local(shard, c.spec, c.db, proto, &c.args, &mut out);
            super::Stats::add(&shard.stats.commands_processed, 1);
            if blocked {
                super::blocking::park(shard, waiter, keys, Some(c), proto, closed);
            }
            OpReply::Exec {
                out: out.freeze(),
                blocked,
                prop: Vec::new(),
            }
        }
        Op::Unblock { waiter } => {
            drop(ks);
            OpReply::Int(super::blocking::unpark(shard, waiter) as i64)
        }
        Op::Publish { channel, message } => {
            drop(ks);
            // Keyspace events raised before this message go out before it.
            notify::flush(shard);
            let receivers = shard.pubsub.borrow().receivers(&channel);
            let n = receivers.len();
            if n > 0 {
                shard.net.borrow_mut().deliver(
                    &receivers,
                    &channel,
                    &message,
                    shard.pubsub_obuf.get(),
                );
                shard.wake.notify();
            }
            OpReply::Int(n as i64)
        }
        Op::PubsubChannels { pattern } => {
            OpReply::Keys(shard.pubsub.borrow().channel_names(pattern.as_deref()))
        }
        Op::PubsubNumsub { channel } => OpReply::Int(shard.pubsub.borrow().numsub(&channel) as i64),
        Op::PubsubPatterns => OpReply::Keys(shard.pubsub.borrow().pattern_names()),
        Op::Watch { db, key, client } => {
            let state = match ks.dbs[db as usize].raw_state(&key, now) {
                None => cmd::multi::WATCH_MISSING,
                Some((false, false)) => cmd::multi::WATCH_LIVE,
                Some((false, true)) => cmd::multi::WATCH_LIVE_TTL,
                Some((true, _)) => cmd::multi::WATCH_EXPIRED,
            };
            drop(ks);
            shard
                .watched
                .borrow_mut()
                .entry((db, key))
                .or_default()
                .push(client);
            OpReply::Int(state as i64)
        }
        Op::Unwatch { client, keys } => {
            drop(ks);
            let mut w = shard.watched.borrow_mut();
            for k in keys {
                if let Some(v) = w.get_mut(&k) {
                    v.retain(|&c| c != client);
                    if v.is_empty() {
                        w.remove(&k);
                    }
                }
            }
            shard.watch_dirty.borrow_mut().remove(&client);
            OpReply::Done
        }
        Op::CheckWatch { client, keys } => {
            let expired = keys.iter().any(|(db, k, state)| {
                *state == cmd::multi::WATCH_LIVE_TTL && ks.dbs[*db as usize].peek(k, now).is_none()
            });
            let dirty = expired || shard.watch_dirty.borrow().contains(&client);
            OpReply::Int(dirty as i64)
        }
        Op::RefreshConfig => {
            drop(ks);
            shard.refresh_config();
            OpReply::Done
        }
        Op::SnapBegin => {
            drop(ks);
            crate::repl::snapshot::shard_begin(shard);
            OpReply::Done
        }
        Op::SnapChunk { max_keys } => {
            drop(ks);
            let (bytes, done) = crate::repl::snapshot::shard_chunk(shard, max_keys);
            OpReply::Chunk { bytes, done }
        }
        Op::SnapEnd => {
            drop(ks);
            crate::repl::snapshot::shard_end(shard);
            OpReply::Done
        }
        Op::LoadBegin => {
            *shard.staging.borrow_mut() = Some(super::keyspace::Keyspace::new(shard.databases));
            OpReply::Done
        }
        Op::Load { entries } => {
            if let Some(st) = shard.staging.borrow_mut().as_mut() {
                for (db, k, e) in entries {
                    st.dbs[db as usize].insert(&k, e);
                }
            }
            OpReply::Done
        }
        Op::TrackExpired => {
            for d in ks.dbs.iter_mut() {
                d.expired_log.get_or_insert_with(Vec::new);
                d.forget_replica_ttls();
            }
            OpReply::Done
        }
        Op::LoadAbort => {
            *shard.staging.borrow_mut() = None;
            OpReply::Done
        }
        Op::LoadCommit => {
            let Some(mut new) = shard.staging.borrow_mut().take() else {
                return OpReply::Done;
            };
            // A snapshot running over the old data (a sub-replica's sync)
            // completes from the old data first, then stays with its index.
            for (old, fresh) in ks.dbs.iter_mut().zip(new.dbs.iter_mut()) {
                old.snap_finish();
                fresh.snap = old.snap.take();
                fresh.expired_log = old.expired_log.take();
            }
            new.stats = ks.stats;
            *ks = new;
            drop(ks);
            shard.db_modified(None);
            OpReply::Done
        }
        Op::ResetStats => {
            ks.stats.reset_counters();
            shard.stats.reset();
            cmd::stats::reset();
            OpReply::Done
        }
        Op::RdbPart => {
            drop(ks);
            OpReply::Bytes(crate::persist::serialize_part(shard))
        }
        Op::Adopt(keyspace) => {
            drop(ks);
            crate::persist::adopt(shard, keyspace);
            OpReply::Done
        }
        Op::ClientUnblock { id, error } => {
            drop(ks);
            OpReply::Int(shard.net.borrow().unblock(id, error) as i64)
        }
        Op::ClientKill { filter } => {
            drop(ks);
            let n = shard.net.borrow_mut().kill(&filter);
            if n > 0 {
                shard.wake.notify();
            }
            OpReply::Int(n as i64)
        }
    }
}

fn shard_info(shard: &Shard, now: u64) -> ShardInfo {
    let ks = shard.ks.borrow();
    let st = &shard.stats;
    ShardInfo {
        keys: ks
            .dbs
            .iter()
            .map(|d| (d.len(), d.expires_len(), d.avg_ttl(now)))
            .collect(),
        connected_clients: shard.net.borrow().clients_not_replicas(),
        hits: ks.stats.hits,
        misses: ks.stats.misses,
        expired: ks.stats.expired,
        connections_received: st.connections_received.get(),
        commands_processed: st.commands_processed.get(),
        rejected_connections: st.rejected_connections.get(),
        net_input_bytes: st.net_input_bytes.get(),
        net_output_bytes: st.net_output_bytes.get(),
        net_repl_output_bytes: st.net_repl_output_bytes.get(),
        reads_processed: st.reads_processed.get(),
        writes_processed: st.writes_processed.get(),
        inst: st.inst.borrow().rates(),
        used_memory: 0,
        blocked_clients: st.blocked_clients.get(),
        busy_clients: shard.net.borrow().busy(),
        pending_requests: shard.pending_len(),
        replica_output: shard.net.borrow().replica_output_bytes(),
        replica_ttl_keys: ks.dbs.iter().map(|d| d.replica_ttls_len() as u64).sum(),
        cmdstats: cmd::stats::snapshot(),
    }
}

/// Keys of a command grouped by owner shard: (shard, [(arg index, key)]).
fn by_shard(spec: &cmd::CmdSpec, args: &[Bytes], n: usize) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in spec.key_indices(args) {
        let s = shard_of(&args[i], n);
        match groups.iter_mut().find(|g| g.0 == s) {
            Some(g) => g.1.push(i),
            None => groups.push((s, vec![i])),
        }
    }
    groups.sort_by_key(|g| g.0);
    groups
}

/// Runs a multi-key command whose keys live on several shards, atomically.
/// Returns true when a blocking command found nothing to pop (no reply).
pub async fn exec_multi(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &'static cmd::CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
    outer: Option<&Tx>,
) -> bool {
    if spec.is_write() && shard.shared.repl.refuse_writes() {
        cmd::stats::rejected(spec, args);
        Reply::new(out, client.proto).error(crate::repl::master::NOREPLICAS);
        return false;
    }
    // A scratch command is counted where it runs (`cmd::exec_in`).
    if matches!(
        spec.kind,
        Kind::Keyed(_, Some(Multi::Scratch | Multi::Sort))
    ) {
        return multi_key(shard, client, spec, args, out, outer).await;
    }
    let call = cmd::stats::begin(spec);
    let at = out.len();
    let blocked = multi_key(shard, client, spec, args, out, outer).await;
    if !blocked {
        call.done(spec, args, &out[at..]);
    }
    blocked
}

async fn multi_key(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &'static cmd::CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
    outer: Option<&Tx>,
) -> bool {
    let mut r = Reply::new(out, client.proto);
    let Kind::Keyed(_, Some(m)) = spec.kind else {
        r.error("CROSSSLOT Keys in request don't hash to the same slot");
        return false;
    };
    let db = client.db;
    if matches!(m, Multi::MSet | Multi::MSetNx) && args.len().is_multiple_of(2) {
        r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
        return false;
    }
    if matches!(m, Multi::Scratch | Multi::Sort) {
        return exec_scratch(shard, client, spec, args, r.out, outer).await;
    }
    let groups = by_shard(spec, args, shard.nshards());
    let shards: Vec<usize> = groups.iter().map(|g| g.0).collect();
    let own = Tx::unless_held(shard, outer, &shards).await;
    let tx = outer.or(own.as_ref()).expect("a transaction is held");
    let keys_of = |idx: &[usize]| idx.iter().map(|&i| args[i].clone()).collect::<Vec<_>>();
    match m {
        Multi::MGet => {
            let mut vals: Vec<Option<Bytes>> = vec![None; args.len()];
            for (s, idx) in &groups {
                if let OpReply::Values(v) = tx
                    .op(
                        shard,
                        *s,
                        Op::MGet {
                            db,
                            keys: keys_of(idx),
                        },
                    )
                    .await
                {
                    for (&i, v) in idx.iter().zip(v) {
                        vals[i] = v;
                    }
                }
            }
            r.array(args.len() - 1);
            for v in &vals[1..] {
                r.bulk_opt(v.as_deref());
            }
        }
        Multi::MSet | Multi::MSetNx => {
            let mut exists = 0;
            if m == Multi::MSetNx {
                for (s, idx) in &groups {
                    if let OpReply::Int(n) = tx
                        .op(
                            shard,
                            *s,
                            Op::Count {
                                db,
                                keys: keys_of(idx),
                                kind: CountKind::Probe,
                            },
                        )
                        .await
                    {
                        exists += n;
                    }
                }
            }
            if exists > 0 {
                r.int(0);
            } else {
                for (s, idx) in &groups {
                    let pairs = idx
                        .iter()
                        .map(|&i| (args[i].clone(), args[i + 1].clone()))
                        .collect();
                    tx.op(shard, *s, Op::MSet { db, pairs }).await;
                }
                tx.emit(shard, vec![PEntry::new(db, args.to_vec())]);
                if m == Multi::MSet { r.ok() } else { r.int(1) }
            }
        }
        Multi::Count(kind) => {
            let mut total = 0;
            for (s, idx) in &groups {
                if let OpReply::Int(n) = tx
                    .op(
                        shard,
                        *s,
                        Op::Count {
                            db,
                            keys: keys_of(idx),
                            kind,
                        },
                    )
                    .await
                {
                    total += n;
                }
            }
            if kind == CountKind::Del && total > 0 {
                tx.emit(shard, vec![PEntry::new(db, args.to_vec())]);
            }
            r.int(total)
        }
        Multi::Scratch | Multi::Sort => unreachable!("handled by exec_scratch"),
    }
    if let Some(t) = own {
        t.unlock(shard).await;
    }
    false
}

/// Runs a multi-key command whose keys span shards on a scratch keyspace:
/// lock the owners, copy the keys in, run the ordinary handler, write back
/// every key whose entry changed (or delete it), unlock. Any command's
/// single-shard code thus works across shards with the same semantics.
async fn exec_scratch(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &'static cmd::CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
    outer: Option<&Tx>,
) -> bool {
    let n = shard.nshards();
    let db = client.db;
    let mut pairs: Vec<(u16, Bytes)> = Vec::new();
    for i in spec.key_indices(args) {
        if !pairs.iter().any(|(_, k)| *k == args[i]) {
            pairs.push((db, args[i].clone()));
        }
    }
    // COPY ... DB n writes its destination in another database.
    if spec.name == "copy"
        && let Ok((dst_db, _)) = cmd::keys::copy_opts(shard, args, db)
        && dst_db != db
    {
        pairs.push((dst_db, args[2].clone()));
    }
    // SORT (its STORE key is among `key_indices`): every shard when its
    // patterns name keys, which are known only once the source's
    // elements are.
    let sort_patterns = match spec.kind {
        Kind::Keyed(_, Some(Multi::Sort)) => cmd::sort::parse(args, !spec.is_write())
            .map(|o| o.patterns(args))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut shards: Vec<usize> = if !sort_patterns.is_empty() {
        (0..n).collect()
    } else {
        pairs.iter().map(|(_, k)| shard_of(k, n)).collect()
    };
    shards.sort_unstable();
    shards.dedup();
    let own = Tx::unless_held(shard, outer, &shards).await;
    let tx = outer.or(own.as_ref()).expect("a transaction is held");
    let mut scratch = super::keyspace::Keyspace::new(shard.databases);
    let mut before = Vec::with_capacity(pairs.len());
    for (d, k) in pairs {
        let e = copy_in(shard, tx, &mut scratch, d, &k).await;
        before.push((d, k, e));
    }
    if !sort_patterns.is_empty() {
        // `pattern_keys` has no duplicates: only the source and STORE keys
        // copied above may be named again.
        let named = before.len();
        for k in cmd::sort::pattern_keys(&sort_patterns, before[0].2.as_ref()) {
            if !before[..named].iter().any(|(d, b, _)| *d == db && *b == k) {
                let e = copy_in(shard, tx, &mut scratch, db, &k).await;
                before.push((db, k, e));
            }
        }
    }
    let mut prop = Vec::new();
    let blocked = cmd::exec_in(
        shard,
        &mut scratch,
        spec,
        db,
        client.proto,
        args,
        out,
        cmd::Emit::Into(&mut prop),
    );
    // The handler's lookups counted hits and misses on the copy.
    {
        let mut ks = shard.ks.borrow_mut();
        ks.stats.hits += scratch.stats.hits;
        ks.stats.misses += scratch.stats.misses;
    }
    if spec.is_write() && !blocked {
        let now = cmd::expiry_cut(shard, &mut scratch, true, now_ms());
        // The owners track TTLs as their `Put`s land, not the copy.
        super::keyspace::track_replica_ttls(false);
        for (d, k, old) in before {
            let new = scratch.dbs[d as usize].peek(&k, now).cloned();
            if new == old {
                continue;
            }
            let owner = shard_of(&k, n);
            match new {
                Some(entry) => {
                    tx.op(
                        shard,
                        owner,
                        Op::Put {
                            db: d,
                            key: k,
                            entry,
                            nx: false,
                        },
                    )
                    .await
                }
                None => {
                    tx.op(
                        shard,
                        owner,
                        Op::Count {
                            db: d,
                            keys: vec![k],
                            kind: CountKind::Purge,
                        },
                    )
                    .await
                }
            };
        }
        tx.emit(shard, prop);
    }
    if let Some(t) = own {
        t.unlock(shard).await;
    }
    blocked
}

/// Copies `key` of db `d` from its owner shard into `scratch`, and
/// returns the entry as it was, for `exec_scratch`'s write-back check.
async fn copy_in(
    shard: &Rc<Shard>,
    tx: &Tx,
    scratch: &mut super::keyspace::Keyspace,
    d: u16,
    key: &Bytes,
) -> Option<super::keyspace::Entry> {
    let op = Op::Take {
        db: d,
        key: key.clone(),
        remove: false,
    };
    let e = match tx.op(shard, shard_of(key, shard.nshards()), op).await {
        OpReply::Entry(e) => e,
        _ => None,
    };
    if let Some(e) = &e {
        scratch.dbs[d as usize].insert(key, e.clone());
    }
    e
}

/// SCAN over every shard. The cursor packs the shard in its low 10 bits and
/// the position inside that shard's table above them (0 = from the top).
pub async fn scan(
    shard: &Rc<Shard>,
    tx: Option<&Tx>,
    db: u16,
    cursor: u64,
    count: usize,
    pattern: Option<Bytes>,
    typ: Option<Bytes>,
) -> (u64, Vec<Bytes>) {
    let n = shard.nshards() as u64;
    let mut s = cursor & 1023;
    let mut pos = match cursor >> 10 {
        0 => None,
        p => Some(p as usize),
    };
    let mut keys = Vec::new();
    while s < n {
        let op = Op::Scan {
            db,
            pos,
            count: count.saturating_sub(keys.len()).max(1),
            pattern: pattern.clone(),
            typ: typ.clone(),
        };
        let OpReply::Scan { keys: got, next } = op_on(shard, tx, s as usize, op).await else {
            unreachable!("scan op answered otherwise");
        };
        keys.extend(got);
        match next {
            Some(p) => {
                pos = Some(p);
                if keys.len() >= count {
                    return (((p as u64) << 10) | s, keys);
                }
            }
            None => {
                s += 1;
                pos = None;
                if keys.len() >= count && s < n {
                    return (s, keys);
                }
            }
        }
    }
    (0, keys)
}

/// Helper for global commands that only read: the sum of an Int op.
pub async fn sum_ints(shard: &Rc<Shard>, tx: Option<&Tx>, make: impl FnMut(usize) -> Op) -> i64 {
    broadcast(shard, tx, make)
        .await
        .into_iter()
        .map(|r| if let OpReply::Int(n) = r { n } else { 0 })
        .sum()
}

/// Collects per-shard INFO figures.
pub async fn gather_info(shard: &Rc<Shard>, tx: Option<&Tx>) -> Vec<ShardInfo> {
    broadcast(shard, tx, |_| Op::Info)
        .await
        .into_iter()
        .filter_map(|r| {
            if let OpReply::Info(i) = r {
                Some(*i)
            } else {
                None
            }
        })
        .collect()
}

/// A SCAN position in one shard is 1-based so that 0 can mean "from the
/// top"; `Db::scan` returns indices ≥ 1 for unfinished walks, which fits.
#[cfg(test)]
mod tests {
    #[test]
    fn cursor_layout() {
        let c: u64 = (5 << 10) | 3;
        assert_eq!((c & 1023, c >> 10), (3, 5));
    }
}
