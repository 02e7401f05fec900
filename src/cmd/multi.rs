//! MULTI / EXEC / DISCARD / WATCH / UNWATCH.
//!
//! While a client is in MULTI its commands are checked (name, arity) and
//! queued on its connection. EXEC takes the transaction lock of every shard
//! the queued commands or the watched keys live on (all of them if a global
//! command is queued), checks the WATCHes, runs the queue in order under
//! that lock and releases it: no other client can observe or interleave
//! with a partial transaction, across shards included.
//!
//! WATCH registers `(db, key) -> client` on the key's owner shard; any
//! modification there (`Shard::key_modified`) marks the client dirty. A
//! watched key that had a TTL and has expired by EXEC time also fails the
//! transaction, as in Redis 7.0.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::{ClientState, CmdSpec, Kind, Lookup, Route, eq_ic, lookup, route};
use crate::resp::Reply;
use crate::shard::dispatch::{self, Tx};
use crate::shard::{Op, OpReply, Shard, shard_of};

/// Watch state of a key when WATCH ran, deciding whether its expiry later
/// counts as a modification.
pub const WATCH_MISSING: u8 = 0;
pub const WATCH_LIVE: u8 = 1;
pub const WATCH_LIVE_TTL: u8 = 2;
pub const WATCH_EXPIRED: u8 = 3;

/// Commands that run at once even inside MULTI, as in Redis.
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Queues `args` if the client is in MULTI. Returns false when the command
/// must run now (not in MULTI, or an exempt command).
pub fn queue(shard: &Shard, client: &mut ClientState, args: &[Bytes], out: &mut BytesMut) -> bool {
    if client.multi.is_none() {
        return false;
    }
    let mut r = Reply::new(out, client.proto);
    match lookup(args) {
        Lookup::Error(e) => {
            client.multi_dirty = true;
            r.error(&e);
        }
        Lookup::Found(spec) if exempt(spec.name) => return false,
        // Refused when queued, as Redis: the EXEC then aborts.
        Lookup::Found(spec) if let Some(e) = super::repl::refusal(shard, client, spec, args) => {
            super::stats::rejected(spec, args);
            client.multi_dirty = true;
            r.error(e);
        }
        Lookup::Found(spec) if spec.flags.contains(&"no_multi") => {
            super::stats::rejected(spec, args);
            client.multi_dirty = true;
            r.error("ERR Command not allowed inside a transaction");
        }
        Lookup::Found(_) => {
            if let Some(q) = client.multi.as_mut() {
                q.push(args.to_vec());
            }
            r.simple("QUEUED");
        }
    }
    true
}

/// MULTI (a connection command).
pub fn multi(c: &mut super::ConnCtx, _: &[Bytes]) {
    if c.client.multi.is_some() {
        return c.r.error("ERR MULTI calls can not be nested");
    }
    c.client.multi = Some(Vec::new());
    c.client.multi_dirty = false;
    c.r.ok()
}

/// WATCH key [key ...]
pub async fn watch(shard: &Rc<Shard>, client: &mut ClientState, a: &[Bytes], r: &mut Reply<'_>) {
    if client.multi.is_some() {
        return r.error("ERR WATCH inside MULTI is not allowed");
    }
    let n = shard.nshards();
    let db = client.db;
    for k in &a[1..] {
        if client
            .watching
            .iter()
            .any(|(d, key, _)| *d == db && key == k)
        {
            continue;
        }
        let owner = shard_of(k, n);
        let state = match dispatch::op_on(
            shard,
            None,
            owner,
            Op::Watch {
                db,
                key: k.clone(),
                client: client.id,
            },
        )
        .await
        {
            OpReply::Int(s) => s as u8,
            _ => WATCH_MISSING,
        };
        client.watching.push((db, k.clone(), state));
    }
    r.ok()
}

/// Forgets every WATCH of the client (UNWATCH, EXEC, DISCARD, RESET, close).
pub async fn unwatch_all(
    shard: &Rc<Shard>,
    tx: Option<&Tx>,
    client_id: u64,
    watching: Vec<(u16, Bytes, u8)>,
) {
    if watching.is_empty() {
        return;
    }
    let n = shard.nshards();
    let mut per: Vec<Vec<(u16, Bytes)>> = (0..n).map(|_| Vec::new()).collect();
    for (d, k, _) in watching {
        per[shard_of(&k, n)].push((d, k));
    }
    for (s, keys) in per.into_iter().enumerate() {
        if !keys.is_empty() {
            dispatch::op_on(
                shard,
                tx,
                s,
                Op::Unwatch {
                    client: client_id,
                    keys,
                },
            )
            .await;
        }
    }
}

/// DISCARD
pub async fn discard(shard: &Rc<Shard>, client: &mut ClientState, r: &mut Reply<'_>) {
    if client.multi.take().is_none() {
        return r.error("ERR DISCARD without MULTI");
    }
    client.multi_dirty = false;
    unwatch_all(shard, None, client.id, std::mem::take(&mut client.watching)).await;
    r.ok()
}

/// The shards a queued command needs locked; `None` means all of them.
fn shards_of(
    spec: &'static CmdSpec,
    args: &[Bytes],
    here: usize,
    n: usize,
    out: &mut Vec<usize>,
) -> Option<()> {
    match route(spec, args, here, n) {
        Route::Global => None,
        Route::Conn => Some(()),
        Route::Shard(s) => {
            if matches!(spec.kind, Kind::Keyed(..)) {
                out.push(s);
            }
            Some(())
        }
        // A SORT whose patterns name keys anywhere locks every shard.
        Route::Multi if matches!(spec.kind, Kind::Keyed(_, Some(super::Multi::Sort))) => None,
        Route::Multi => {
            out.extend(spec.key_indices(args).map(|i| shard_of(&args[i], n)));
            if spec.name == "copy" {
                out.push(shard_of(&args[2], n));
            }
            Some(())
        }
    }
}

/// EXEC
pub async fn exec(shard: &Rc<Shard>, client: &mut ClientState, out: &mut BytesMut) {
    let Some(queue) = client.multi.take() else {
        return Reply::new(out, client.proto).error("ERR EXEC without MULTI");
    };
    let watching = std::mem::take(&mut client.watching);
    if std::mem::take(&mut client.multi_dirty) {
        unwatch_all(shard, None, client.id, watching).await;
        return Reply::new(out, client.proto)
            .error("EXECABORT Transaction discarded because of previous errors.");
    }
    let refused = |client: &ClientState| {
        queue.iter().any(|args| {
            matches!(lookup(args), Lookup::Found(spec) if super::repl::readonly_refused(shard, client, spec))
        })
    };
    const EXEC_READONLY: &str = "EXECABORT Transaction discarded because of previous errors: READONLY You can't write against a read only replica.";
    if refused(client) {
        unwatch_all(shard, None, client.id, watching).await;
        return Reply::new(out, client.proto).error(EXEC_READONLY);
    }
    // Queued while the link was up, which has gone down since.
    let stale = queue.iter().any(|args| {
        matches!(lookup(args), Lookup::Found(spec) if super::repl::stale_refused(shard, client, spec, args))
    });
    if stale {
        unwatch_all(shard, None, client.id, watching).await;
        return Reply::new(out, client.proto).error(&format!(
            "EXECABORT Transaction discarded because of: {}",
            super::repl::MASTERDOWN
        ));
    }
    let n = shard.nshards();
    let mut needed = Vec::new();
    let mut all = false;
    for args in &queue {
        if let Lookup::Found(spec) = lookup(args)
            && shards_of(spec, args, shard.id, n, &mut needed).is_none()
        {
            all = true;
        }
    }
    needed.extend(watching.iter().map(|(_, k, _)| shard_of(k, n)));
    if all {
        needed = (0..n).collect();
    }
    needed.sort_unstable();
    needed.dedup();
    let mut tx = Tx::lock(shard, &needed).await;
    tx.collect = true;
    // We may have become a replica while waiting for the locks (REPLICAOF,
    // a FAILOVER's demotion): writes run now would be answered and never
    // replicated. Redis runs EXEC at once, so it never meets this.
    if refused(client) {
        unwatch_all(shard, Some(&tx), client.id, watching).await;
        tx.unlock(shard).await;
        return Reply::new(out, client.proto).error(EXEC_READONLY);
    }

    // WATCH check, per owner shard, under the lock.
    let mut per: Vec<Vec<(u16, Bytes, u8)>> = (0..n).map(|_| Vec::new()).collect();
    for w in &watching {
        per[shard_of(&w.1, n)].push(w.clone());
    }
    let mut aborted = false;
    for (s, keys) in per.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        if let OpReply::Int(1) = tx
            .op(
                shard,
                s,
                Op::CheckWatch {
                    client: client.id,
                    keys,
                },
            )
            .await
        {
            aborted = true;
        }
    }
    if aborted {
        unwatch_all(shard, Some(&tx), client.id, watching).await;
        tx.unlock(shard).await;
        return Reply::new(out, client.proto).null_array();
    }

    Reply::new(out, client.proto).array(queue.len());
    for args in queue {
        let Lookup::Found(spec) = lookup(&args) else {
            unreachable!("queued commands passed lookup")
        };
        super::note_cmd(client, spec, &args);
        run_held(shard, client, &tx, spec, &args, out).await;
    }
    unwatch_all(shard, Some(&tx), client.id, watching).await;
    tx.unlock(shard).await;
}

/// Runs one command of a transaction (EXEC's queue, a script's
/// `redis.call`) under `tx`, which holds every shard it needs, appending
/// its reply to `out`. A blocking command that finds nothing answers at
/// once with its timeout reply, as Redis does inside MULTI and scripts.
pub async fn run_held(
    shard: &Rc<Shard>,
    client: &mut ClientState,
    tx: &Tx,
    spec: &'static CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
) {
    let n = shard.nshards();
    let pops_one = eq_ic(&args[0], "blmove") || eq_ic(&args[0], "brpoplpush");
    let blocked = match route(spec, args, shard.id, n) {
        // A monitor's stream cannot start inside EXEC, whose client
        // expects one reply per command (Redis: CLIENT_DENY_BLOCKING).
        Route::Conn if spec.name == "monitor" => {
            Reply::new(out, client.proto)
                .error("ERR MONITOR isn't allowed for DENY BLOCKING client");
            false
        }
        Route::Conn => {
            super::server::exec_conn(shard, client, spec, args, out);
            false
        }
        Route::Shard(s) if matches!(spec.kind, Kind::Keyed(..)) => {
            match tx
                .op(
                    shard,
                    s,
                    Op::Exec {
                        spec,
                        db: client.db,
                        proto: client.proto,
                        args: args.to_vec(),
                        capture: true,
                    },
                )
                .await
            {
                OpReply::Exec {
                    out: o,
                    blocked,
                    prop,
                } => {
                    out.extend_from_slice(&o);
                    tx.emit(shard, prop);
                    blocked
                }
                other => unreachable!("exec op answered {other:?}"),
            }
        }
        Route::Shard(_) => {
            let mut prop = Vec::new();
            let blocked =
                super::exec_local_into(shard, spec, client.db, client.proto, args, out, &mut prop);
            tx.emit(shard, prop);
            blocked
        }
        Route::Multi => dispatch::exec_multi(shard, client, spec, args, out, Some(tx)).await,
        Route::Global => {
            Box::pin(super::server::exec_global(
                shard,
                client,
                spec,
                args,
                out,
                Some(tx),
                None,
            ))
            .await;
            false
        }
    };
    if blocked {
        let mut r = Reply::new(out, client.proto);
        if pops_one { r.null() } else { r.null_array() }
    }
}
