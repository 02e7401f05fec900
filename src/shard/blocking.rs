//! Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
//! BZPOPMAX, BZMPOP).
//!
//! A blocking command's handler pops when it can; when every key is empty
//! it writes nothing and sets `would_block`. The client is then parked on
//! the shard that owns its keys: each key keeps a FIFO of waiters. When a
//! key changes (`Shard::key_modified`) it is marked ready and the shard's
//! ready task, once no transaction holds the shard, re-runs the waiters'
//! commands in blocking order, exactly as Redis's
//! `handleClientsBlockedOnKeys`: keys are served in the order they became
//! ready, a waiter pops from the ready key only (its command cut down to
//! that key) and only when the key holds the type it pops, the first
//! waiter gets the first element, and a waiter that still finds nothing
//! stays parked. SWAPDB marks every waited-on key it brings in ready.
//!
//! A command whose keys span shards cannot be served by one owner: its
//! owners only notify it, and the coordinator retries through the
//! multi-shard path. The waiting side races the reply against the timeout
//! and the connection's close; on either it unregisters, and because a
//! shard's inbox is FIFO, a reply sent before the unregistration is still
//! seen and delivered. When the server becomes a replica (REPLICAOF), a
//! blocked client gets Redis's `-UNBLOCKED ...` error and is closed, as
//! Redis's `disconnectAllBlockedClients` does; an element already popped
//! for it is delivered instead.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};

use super::dispatch::{self, exec_multi};
use super::keyspace::Value;
use super::sync::Notify;
use super::{Msg, Op, OpReply, Shard, ShardCmd, shard_of};
use crate::cmd::{self, ClientState, Route};
use crate::resp::{Proto, Reply};

/// Who is waiting: the coordinator's shard and its pending-reply id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Waiter {
    pub shard: usize,
    pub id: u64,
}

/// A parked command on its owner shard.
pub struct Parked {
    keys: Vec<(u16, Bytes)>,
    /// The command to re-run here; `None` when its keys span shards (the
    /// owner then only notifies).
    cmd: Option<ShardCmd>,
    proto: Proto,
    /// Set (by the connection's shard) when the client has gone: it must
    /// not be served, or the popped element would be lost.
    closed: Arc<AtomicBool>,
}

/// Per-shard blocking state.
#[derive(Default)]
pub struct Blocking {
    by_key: HashMap<(u16, Bytes), VecDeque<Waiter>>,
    parked: HashMap<Waiter, Parked>,
    /// Keys to serve, in the order they became ready (Redis's
    /// `ready_keys` list): FIFO, so of two keys a transaction filled, the
    /// first filled serves first.
    ready: VecDeque<(u16, Bytes)>,
}

impl Blocking {
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// A key changed: if somebody waits on it, queue it for serving.
    /// Returns true when the ready task must be woken.
    pub fn key_ready(&mut self, db: u16, key: &[u8]) -> bool {
        if self.by_key.is_empty() {
            return false;
        }
        if let Some((k, _)) = self
            .by_key
            .get_key_value(&(db, Bytes::copy_from_slice(key)))
        {
            let k = k.clone();
            if !self.ready.contains(&k) {
                self.ready.push_back(k);
                return true;
            }
        }
        false
    }

    /// Queues every waited-on key of database `db` that `present` says
    /// exists (after SWAPDB). Returns true when the ready task must be
    /// woken.
    pub fn db_ready(&mut self, db: u16, present: impl Fn(&[u8]) -> bool) -> bool {
        let mut wake = false;
        for k in self.by_key.keys() {
            if k.0 == db && present(&k.1) && !self.ready.contains(k) {
                self.ready.push_back(k.clone());
                wake = true;
            }
        }
        wake
    }

    fn park(&mut self, w: Waiter, p: Parked) {
        for k in &p.keys {
            self.by_key.entry(k.clone()).or_default().push_back(w);
        }
        self.parked.insert(w, p);
    }

    fn unpark(&mut self, w: Waiter) -> bool {
        let Some(p) = self.parked.remove(&w) else {
            return false;
        };
        for k in p.keys {
            if let Some(q) = self.by_key.get_mut(&k) {
                q.retain(|x| *x != w);
                if q.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        true
    }
}

/// The blocking commands and where their timeout argument is.
pub fn timeout_index(name: &str, argc: usize) -> Option<usize> {
    match name {
        "blpop" | "brpop" | "brpoplpush" | "blmove" | "bzpopmin" | "bzpopmax" => Some(argc - 1),
        "blmpop" | "bzmpop" => Some(1),
        _ => None,
    }
}

/// Handles Op::Block on the owner: park the waiter, or serve it at once if
/// its keys became non-empty since the coordinator looked.
pub fn park(
    shard: &Shard,
    w: Waiter,
    keys: Vec<(u16, Bytes)>,
    cmd: Option<ShardCmd>,
    proto: Proto,
    closed: Arc<AtomicBool>,
) {
    // A push may have landed between the coordinator's try and this
    // registration. A waiter we can serve here is simply tried once more
    // (it stays parked if still empty); a notify-only waiter is notified
    // at once if one of its keys exists now, else it would spin.
    let now = shard.now();
    let serve_here = cmd.is_some();
    let present: Vec<(u16, Bytes)> = {
        let ks = shard.ks.borrow();
        keys.iter()
            .filter(|(db, k)| ks.dbs[*db as usize].peek(k, now).is_some())
            .cloned()
            .collect()
    };
    let mut b = shard.blocking.borrow_mut();
    b.park(
        w,
        Parked {
            keys,
            cmd,
            proto,
            closed,
        },
    );
    let mut wake = false;
    if serve_here || !present.is_empty() {
        for (db, k) in present {
            wake |= b.key_ready(db, &k);
        }
    }
    drop(b);
    if wake {
        shard.blocking_wake.notify();
    }
}

pub fn unpark(shard: &Shard, w: Waiter) -> bool {
    shard.blocking.borrow_mut().unpark(w)
}

/// The shard's ready task: serves waiters of keys that changed.
pub async fn serve_ready(shard: Rc<Shard>) {
    loop {
        shard.blocking_wake.wait().await;
        loop {
            let Some(key) = shard.blocking.borrow_mut().ready.pop_front() else {
                break;
            };
            serve_key(&shard, key).await;
        }
    }
}

async fn serve_key(shard: &Rc<Shard>, key: (u16, Bytes)) {
    let waiters: Vec<Waiter> = shard
        .blocking
        .borrow()
        .by_key
        .get(&key)
        .map(|q| q.iter().copied().collect())
        .unwrap_or_default();
    for w in waiters {
        // Stop once the key is gone (popped empty) or holds nothing left.
        let cmd = {
            let b = shard.blocking.borrow();
            match b.parked.get(&w) {
                None => continue,
                Some(p) if p.closed.load(Ordering::Acquire) => {
                    drop(b);
                    shard.blocking.borrow_mut().unpark(w);
                    continue;
                }
                Some(p) => (p.cmd.clone(), p.proto),
            }
        };
        match cmd {
            (Some(c), proto) => {
                // Never run while a transaction holds this shard.
                shard.wait_gate().await;
                if !shard.blocking.borrow().parked.contains_key(&w) {
                    continue;
                }
                // Served only from a key of the kind it waits for: a key
                // that is now, say, a string leaves it blocked (Redis's
                // `handleClientsBlockedOnKeys` serves list waiters from
                // lists only), and it pops from this key, not from the
                // first non-empty one of its list.
                if !holds_kind(shard, c.spec.name, &key) {
                    continue;
                }
                let args = narrow_to_key(c.spec.name, &c.args, &key.1);
                let mut out = BytesMut::new();
                let blocked = cmd::exec_local(shard, c.spec, c.db, proto, &args, &mut out);
                if blocked {
                    continue;
                }
                shard.blocking.borrow_mut().unpark(w);
                deliver(
                    shard,
                    w,
                    OpReply::Exec {
                        out: out.freeze(),
                        blocked: false,
                        prop: Vec::new(),
                    },
                )
                .await;
            }
            (None, _) => {
                shard.blocking.borrow_mut().unpark(w);
                deliver(shard, w, OpReply::Done).await;
            }
        }
    }
}

/// Whether `key` now holds the type the blocking command `name` pops:
/// a list for the list pops, a sorted set for the sorted-set ones.
fn holds_kind(shard: &Shard, name: &str, key: &(u16, Bytes)) -> bool {
    let ks = shard.ks.borrow();
    let Some(e) = ks.dbs[key.0 as usize].peek(&key.1, shard.now()) else {
        return false;
    };
    match e.value {
        Value::List(_) => !name.starts_with("bz"),
        Value::ZSet(_) => name.starts_with("bz"),
        _ => false,
    }
}

/// A blocking command's arguments with its key list cut down to the key
/// being served: `BLPOP a b 0` served for `b` runs as `BLPOP b 0`, and
/// `BLMPOP 0 2 a b LEFT` as `BLMPOP 0 1 b LEFT`. Single-key forms (BLMOVE,
/// BRPOPLPUSH) are unchanged.
fn narrow_to_key(name: &str, args: &[Bytes], key: &Bytes) -> Vec<Bytes> {
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" if args.len() > 3 => {
            vec![args[0].clone(), key.clone(), args[args.len() - 1].clone()]
        }
        "blmpop" | "bzmpop" => {
            let n = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| 3 + n <= args.len());
            match n {
                Some(n) if n > 1 => {
                    let mut v = vec![
                        args[0].clone(),
                        args[1].clone(),
                        Bytes::from_static(b"1"),
                        key.clone(),
                    ];
                    v.extend_from_slice(&args[3 + n..]);
                    v
                }
                _ => args.to_vec(),
            }
        }
        _ => args.to_vec(),
    }
}

async fn deliver(shard: &Rc<Shard>, w: Waiter, reply: OpReply) {
    if w.shard == shard.id {
        shard.complete(w.id, reply);
    } else {
        shard.post(w.shard, Msg::Reply { id: w.id, reply });
    }
}

/// Runs a blocking command for a client: try, park, wait for a serve or a
/// notification, the timeout or the connection closing.
pub async fn exec_blocking(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &'static cmd::CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
    closed: &CloseFlag,
) -> bool {
    let n = shard.nshards();
    let epoch = shard.shared.repl.epoch.load(Ordering::SeqCst);
    let timeout = timeout_index(spec.name, args.len())
        .and_then(|i| args.get(i))
        .and_then(|t| cmd::list::parse_timeout(t).ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis);
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let _blocked = BlockedCount::new(&shard.stats.blocked_clients);
    let _unblockable = closed.blocking();
    let owners = owners_of(spec, args, client.db, n);
    loop {
        // A retry after the server became a replica must not pop: the
        // client is unblocked instead (the wait below ends for that too).
        if became_replica(shard, epoch) {
            Reply::new(out, client.proto).error(crate::cmd::repl::UNBLOCKED);
            return true;
        }
        let slot = shard.new_pending();
        let w = Waiter {
            shard: shard.id,
            id: slot.0,
        };
        // 1. Try; 2. park on every owner. Keys on one shard do both there
        // in one step (`Op::TryBlock`).
        let mut attempt = BytesMut::new();
        let blocked = match cmd::route(spec, args, shard.id, n) {
            Route::Shard(s) if owners.len() == 1 && owners[0].0 == s => {
                let op = Op::TryBlock {
                    waiter: w,
                    keys: owners[0].1.clone(),
                    cmd: ShardCmd {
                        spec,
                        db: client.db,
                        args: args.to_vec(),
                    },
                    proto: client.proto,
                    closed: closed.shared(),
                };
                exec_reply(dispatch::op_on(shard, None, s, op).await, &mut attempt)
            }
            Route::Shard(s) => {
                let op = Op::Exec {
                    spec,
                    db: client.db,
                    proto: client.proto,
                    args: args.to_vec(),
                    capture: false,
                };
                exec_reply(dispatch::op_on(shard, None, s, op).await, &mut attempt)
                    && park_on(shard, client, spec, args, w, &owners, closed).await
            }
            _ => {
                exec_multi(shard, client, spec, args, &mut attempt, None).await
                    && park_on(shard, client, spec, args, w, &owners, closed).await
            }
        };
        if !blocked {
            shard.forget_pending(slot.0);
            out.extend_from_slice(&attempt);
            return false;
        }
        // 3. Wait.
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let got = wait_any(shard, &slot.1, remaining, closed, epoch).await;
        // 4. Unpark everywhere; a reply sent before that is still in the slot.
        for (s, _) in &owners {
            dispatch::op_on(shard, None, *s, Op::Unblock { waiter: w }).await;
        }
        let got = got.or_else(|| slot.1.try_take());
        shard.forget_pending(slot.0);
        match got {
            Some(OpReply::Exec { out: o, .. }) => {
                out.extend_from_slice(&o);
                return false;
            }
            // Notified: retry (the loop's next wait ends at the deadline).
            Some(_) => continue,
            None => {
                if closed.is_set() {
                    return false;
                }
                // CLIENT UNBLOCK: a timeout's reply, or Redis's error.
                // These end the call here: it counts as one (`cmd::stats`).
                let at = out.len();
                match closed.take_unblock() {
                    Some(true) => {
                        Reply::new(out, client.proto).error(UNBLOCKED_BY_CLIENT);
                        cmd::stats::completed(spec, args, &out[at..]);
                        return false;
                    }
                    Some(false) => {
                        Reply::new(out, client.proto).null_array();
                        cmd::stats::completed(spec, args, &out[at..]);
                        return false;
                    }
                    None => {}
                }
                // Became a replica: the loop's first check answers.
                if !became_replica(shard, epoch)
                    && deadline.is_some_and(|d| std::time::Instant::now() >= d)
                {
                    // Redis answers every blocking timeout with a null array.
                    Reply::new(out, client.proto).null_array();
                    cmd::stats::completed(spec, args, &out[at..]);
                    return false;
                }
            }
        }
    }
}

/// The shards owning a blocking command's keys, each with its keys.
fn owners_of(
    spec: &cmd::CmdSpec,
    args: &[Bytes],
    db: u16,
    n: usize,
) -> Vec<(usize, Vec<(u16, Bytes)>)> {
    let mut owners: Vec<(usize, Vec<(u16, Bytes)>)> = Vec::new();
    for i in spec.key_indices(args) {
        let s = shard_of(&args[i], n);
        let k = (db, args[i].clone());
        match owners.iter_mut().find(|o| o.0 == s) {
            Some(o) => o.1.push(k),
            None => owners.push((s, vec![k])),
        }
    }
    owners
}

/// Appends an `Op::Exec`/`Op::TryBlock` reply's output; true when the
/// command found nothing to pop.
fn exec_reply(reply: OpReply, out: &mut BytesMut) -> bool {
    match reply {
        OpReply::Exec {
            out: o, blocked, ..
        } => {
            out.extend_from_slice(&o);
            blocked
        }
        other => unreachable!("exec answered {other:?}"),
    }
}

/// Parks waiter `w` on every owner after a try that found nothing: the
/// owner serves it itself when all the keys are its own, else only
/// notifies. Always true (still blocked).
async fn park_on(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &'static cmd::CmdSpec,
    args: &[Bytes],
    w: Waiter,
    owners: &[(usize, Vec<(u16, Bytes)>)],
    closed: &CloseFlag,
) -> bool {
    let single = owners.len() == 1;
    for (s, keys) in owners {
        let cmd = single.then(|| ShardCmd {
            spec,
            db: client.db,
            args: args.to_vec(),
        });
        let op = Op::Block {
            waiter: w,
            keys: keys.clone(),
            cmd,
            proto: client.proto,
            closed: closed.shared(),
        };
        dispatch::op_on(shard, None, *s, op).await;
    }
    true
}

/// CLIENT UNBLOCK id ERROR's reply to the blocked client.
pub const UNBLOCKED_BY_CLIENT: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// Whether the server turned into a replica (REPLICAOF) since `epoch`.
fn became_replica(shard: &Shard, epoch: u64) -> bool {
    let repl = &shard.shared.repl;
    repl.is_replica.load(Ordering::SeqCst) && repl.epoch.load(Ordering::SeqCst) != epoch
}

/// Waits for a reply in `slot`, the timeout, the close signal, or the
/// server turning into a replica since `epoch` (REPLICAOF rings every
/// shard's `acks` bell; see `repl::replica::replicaof`).
async fn wait_any(
    shard: &Shard,
    slot: &super::sync::Oneshot<OpReply>,
    timeout: Option<std::time::Duration>,
    closed: &CloseFlag,
    epoch: u64,
) -> Option<OpReply> {
    use futures_lite::future::or;
    let reply = async { Some(slot.recv().await) };
    let demoted = async {
        loop {
            let rung = shard.acks.generation();
            if became_replica(shard, epoch) {
                return;
            }
            shard.acks.changed(rung).await;
        }
    };
    let stop = async {
        match timeout {
            Some(t) => {
                or(glommio::timer::sleep(t), or(closed.wait(), demoted)).await;
            }
            None => or(closed.wait(), demoted).await,
        }
        None
    };
    or(reply, stop).await
}

/// Set when a connection closes; wakes whatever it is blocked on. Also
/// carries CLIENT UNBLOCK's request to the blocked command.
#[derive(Default)]
pub struct CloseFlag {
    set: std::cell::Cell<bool>,
    wake: Notify,
    /// The same fact for owner shards holding this client's parked pops.
    shared: Arc<AtomicBool>,
    /// Blocking calls (a pop or WAIT) waiting now: CLIENT UNBLOCK counts
    /// only while one is.
    blocked: std::cell::Cell<u32>,
    /// CLIENT UNBLOCK's request: 0 none, 1 as a timeout, 2 with an error.
    unblock: std::cell::Cell<u8>,
}

/// A blocking call's registration with its connection's [`CloseFlag`];
/// dropping it also drops a request that came too late.
pub struct BlockedOn<'a>(&'a CloseFlag);

impl Drop for BlockedOn<'_> {
    fn drop(&mut self) {
        self.0.blocked.set(self.0.blocked.get() - 1);
        if self.0.blocked.get() == 0 {
            self.0.unblock.set(0);
        }
    }
}

impl CloseFlag {
    pub fn set(&self) {
        self.set.set(true);
        self.shared.store(true, Ordering::Release);
        self.wake.notify();
    }

    pub fn shared(&self) -> Arc<AtomicBool> {
        self.shared.clone()
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Until the connection closes or CLIENT UNBLOCK asks.
    pub async fn wait(&self) {
        while !self.set.get() && self.unblock.get() == 0 {
            self.wake.wait().await;
        }
    }

    /// Registers a blocking call for CLIENT UNBLOCK.
    pub fn blocking(&self) -> BlockedOn<'_> {
        self.blocked.set(self.blocked.get() + 1);
        BlockedOn(self)
    }

    /// CLIENT UNBLOCK: false when nothing is blocked.
    pub fn request_unblock(&self, error: bool) -> bool {
        if self.blocked.get() == 0 {
            return false;
        }
        self.unblock.set(if error { 2 } else { 1 });
        self.wake.notify();
        true
    }

    /// The pending CLIENT UNBLOCK request, if any (taken): Some(true) to
    /// answer with the -UNBLOCKED error, Some(false) as a timeout.
    pub fn take_unblock(&self) -> Option<bool> {
        match self.unblock.replace(0) {
            0 => None,
            u => Some(u == 2),
        }
    }
}

/// Counts a client in INFO's `blocked_clients` for as long as it lives,
/// however the blocking call returns (blocking pops, WAIT).
pub struct BlockedCount<'a>(&'a std::cell::Cell<u64>);

impl<'a> BlockedCount<'a> {
    pub fn new(counter: &'a std::cell::Cell<u64>) -> Self {
        counter.set(counter.get() + 1);
        BlockedCount(counter)
    }
}

impl Drop for BlockedCount<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
