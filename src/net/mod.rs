//! The network driver of one shard: accepts on the shard's SO_REUSEPORT
//! listener, reads requests, runs them and writes replies, all through the
//! shard's own io_uring (`ring`). Connections live on the shard that
//! accepted them for their whole life.
//!
//! One loop turn: handle the messages other shards left in this shard's
//! inbox (`shard::mesh`), reap completions, parse every complete request
//! of every readable connection, run what can run synchronously (keys
//! owned here, connection commands) straight into the output buffer, send
//! the rest of a pipeline to its owner shards, one batch per shard, when
//! it holds only plain one-owner commands (`remote_groups`), else hand it
//! to a slow-path task (`shard::dispatch::run_batch`), then queue one send
//! per connection with pending output and submit once. When a turn
//! finds nothing to do the driver sleeps on `Shard::wake` (after a short
//! spin when a batch awaits another shard's reply), which the ring's
//! eventfd watcher and the slow-path tasks trigger; other shards write that
//! eventfd when they leave a message for a sleeping driver.

pub mod replica;
pub mod ring;
pub mod sockopt;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::cmd::{self, ClientState, Lookup, Route};
use crate::resp::{Arg, ParseLimits, Reply, Resume, parse_command_into, parse_command_resumable};
use crate::shard::{OpReply, Shard, Stats, dispatch, shard_of};
use ring::{Completion, OpKind, Ring};

/// Most commands a slow-path batch takes at once; the rest waits a turn.
const MAX_SLOW_BATCH: usize = 1024;
/// Input a connection may run on the fast path per driver turn before the
/// others get theirs (Redis reads 16 KiB per client per event loop turn):
/// one client's deep pipeline, `redis-cli --pipe` say, must not hold the
/// shard for milliseconds while every other client waits.
const FAST_TURN_BYTES: usize = 16 * 1024;
/// Unprocessed input past which a backlogged connection stops receiving
/// (see `Conn::recv_paused`), and below which it receives again. Without
/// it, a client writing faster than its per-turn budget would pile its
/// whole pipeline up in memory.
const RECV_PAUSE: usize = 1 << 20;
const RECV_RESUME: usize = 128 * 1024;
/// How long an idle driver polls for another shard's reply before it
/// sleeps (see `Driver::await_spin`).
const AWAIT_SPIN: std::time::Duration = std::time::Duration::from_micros(20);
/// How old the newest awaited batch may be for the driver to spin for it.
const AWAIT_SPIN_WITHIN: std::time::Duration = std::time::Duration::from_micros(100);
/// Provided buffers per shard and their size.
const NBUFS: u16 = 256;
const BUF_SIZE: usize = 16 * 1024;

/// CLIENT KILL filters (new style); all given ones must match.
#[derive(Clone, Debug, Default)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub typ: Option<String>,
    pub user: Option<String>,
    pub skip_id: Option<u64>,
    /// The client running the CLIENT KILL: if it matches, it gets its
    /// reply before it is closed (Redis's `CLIENT_CLOSE_AFTER_REPLY`).
    pub me: Option<u64>,
}

/// A finished slow-path batch: (slot, generation, replies, client state).
type Finished = (u32, u32, BytesMut, ClientState);
/// A client's watched keys: (db, key, state at WATCH).
type Watching = Vec<(u16, Bytes, u8)>;
/// A slow-path batch to spawn: (slot, generation, client state, commands,
/// close signal).
type SlowBatch = (
    u32,
    u32,
    ClientState,
    Vec<Vec<Bytes>>,
    Rc<crate::shard::blocking::CloseFlag>,
);

/// One client connection.
pub struct Conn {
    fd: RawFd,
    generation: u32,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The buffer a send in flight points into, and how much of it is done.
    sending: Option<(Bytes, usize)>,
    send_inflight: bool,
    recv_armed: bool,
    /// The multishot recv was cancelled because `rbuf` holds more than
    /// [`RECV_PAUSE`] of input the fast path has not reached yet: the
    /// kernel's socket buffer, then TCP flow control, hold the rest back.
    recv_paused: bool,
    /// The last fast-path run stopped at its per-turn budget with complete
    /// requests left in `rbuf`.
    backlogged: bool,
    /// A slow-path batch of this connection is running.
    busy: bool,
    /// The busy batch is fast remote groups (`remote_groups`), which
    /// answer within a turn or two and never block: the replies already
    /// in `wbuf` (the pipeline's part before them) wait for them, so a
    /// pipeline's replies leave in one send. Sent apart, they cost the
    /// client a second wake-up and a second segment: with keys spread over
    /// two shards, half of all pipelines split that way.
    hold_replies: bool,
    /// Close once the output is flushed (QUIT, protocol error).
    close_after_flush: bool,
    /// A big request still arriving: its arguments parsed so far and
    /// where the parse goes on (see [`parse_batch`]).
    partial: Option<Box<(Vec<Arg>, Resume)>>,
    /// Shut down; the slot is freed once no operation is in flight.
    closing: bool,
    /// The peer closed its side (recv saw EOF): what it sent before is
    /// still run, as Redis runs a query buffer read before the EOF, and
    /// then the connection closes.
    peer_eof: bool,
    pub client: ClientState,
    /// Set when the connection closes, to release a blocked command.
    closed: Rc<crate::shard::blocking::CloseFlag>,
    addr: String,
    laddr: String,
    /// Accepted on the unix socket (CLIENT LIST's `U` flag).
    unix: bool,
    created: Instant,
    last_active: Instant,
    /// Set once the connection is a replica link (after SYNC/PSYNC).
    repl: Option<Box<replica::Link>>,
    /// Since when pending output has been over the soft output-buffer
    /// limit of the connection's class (see [`obuf_exceeded`]).
    obuf_soft_since: Option<Instant>,
}

/// Whether output of `queued` bytes breaks `limit` (one class of
/// `client-output-buffer-limit`), as Redis's checkClientOutputBufferLimits:
/// `Some("hard")` past the hard bytes; `Some("soft")` once past the soft
/// bytes for `soft_seconds` in a row (`since` keeps when that began).
pub fn obuf_exceeded(
    queued: u64,
    limit: crate::config::ObufLimit,
    since: &mut Option<Instant>,
) -> Option<&'static str> {
    if limit.hard_bytes > 0 && queued > limit.hard_bytes {
        return Some("hard");
    }
    if limit.soft_bytes > 0 && queued > limit.soft_bytes {
        let t = since.get_or_insert_with(Instant::now);
        if t.elapsed().as_secs() >= limit.soft_seconds {
            return Some("soft");
        }
    } else {
        *since = None;
    }
    None
}

impl Conn {
    /// Output not yet handed to the kernel: the buffer and the rest of a
    /// send in flight.
    fn queued(&self) -> u64 {
        self.wbuf.len() as u64
            + self
                .sending
                .as_ref()
                .map_or(0, |(b, o)| (b.len() - o) as u64)
    }

    /// CLIENT LIST / KILL type: "replica", "pubsub" or "normal".
    fn kind(&self) -> &'static str {
        if self.repl.is_some() {
            "replica"
        } else if !self.client.channels.is_empty() || !self.client.patterns.is_empty() {
            "pubsub"
        } else {
            "normal"
        }
    }
}

/// CLIENT's type names: `slave` is `replica`.
fn type_matches(want: &str, kind: &str) -> bool {
    want == kind || (want == "slave" && kind == "replica")
}

/// The shard's connections, indexed by slot.
#[derive(Default)]
pub struct ConnTable {
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    gens: Vec<u32>,
    live: usize,
    /// Connections with input to parse or output to send this turn.
    dirty: Vec<u32>,
    /// Replies of finished slow-path batches.
    done: Vec<Finished>,
    /// WATCHes of closed connections, to drop on their owner shards.
    unwatch: Vec<(u64, Watching)>,
    /// Subscriptions of closed connections, to drop from the registry.
    unsubscribe: Vec<(u64, Vec<Bytes>, Vec<Bytes>)>,
    /// Client id -> slot, for Pub/Sub delivery.
    by_id: std::collections::HashMap<u64, u32>,
    /// Slots of replica links (pumped every turn).
    replicas: Vec<u32>,
    /// Client ids of closed replica links, to drop from the registry.
    gone_replicas: Vec<u64>,
    /// The fast path's reusable allocations.
    scratch: Scratch,
}

/// Allocations the fast path reuses from request to request: the parser's
/// argument ranges, the argument vectors of executed requests (a malloc
/// and a free per request otherwise) and the parse-ahead queue.
#[derive(Default)]
struct Scratch {
    ranges: Vec<Arg>,
    /// A parse batch's arguments, offsets into its frame, and where each
    /// request's end among them (see `parse_batch`).
    flat: Vec<Arg>,
    bounds: Vec<usize>,
    spare: Vec<Vec<Bytes>>,
    /// Requests parsed but not yet run (empty between calls).
    ahead: VecDeque<Vec<Bytes>>,
    /// The frames `ahead`'s borrowed arguments point into (empty between
    /// calls; see `parse_batch`).
    frames: Vec<Bytes>,
}

impl Scratch {
    /// Spare vectors kept: a pipeline's parse-ahead, and the requests of
    /// remote batches coming back (16 connections at depth 16).
    const SPARE: usize = 256;
    /// Vectors (and range lists) longer than this are freed, not kept.
    const MAX_ARGS: usize = 16;
    /// A batch's argument list longer than this is freed, not kept.
    const MAX_FLAT: usize = 4096;

    /// Takes back an executed request's argument vector.
    fn recycle(&mut self, mut args: Vec<Bytes>) {
        if self.spare.len() < Self::SPARE && args.capacity() <= Self::MAX_ARGS {
            args.clear();
            self.spare.push(args);
        }
    }
}

impl ConnTable {
    /// Takes back the argument vectors of requests another shard ran.
    pub fn recycle_args(&mut self, args: impl IntoIterator<Item = Vec<Bytes>>) {
        for a in args {
            self.scratch.recycle(a);
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn insert(&mut self, conn_of: impl FnOnce(u32) -> Conn) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.gens[slot as usize].wrapping_add(1) & 0xff_ffff;
        self.gens[slot as usize] = generation;
        let mut c = conn_of(generation);
        c.generation = generation;
        self.by_id.insert(c.client.id, slot);
        self.slots[slot as usize] = Some(c);
        self.live += 1;
        slot
    }

    fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Conn> {
        self.slots
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|c| c.generation == generation)
    }

    fn mark(&mut self, slot: u32) {
        self.dirty.push(slot);
    }

    /// Starts closing a connection: shut the socket down so the multishot
    /// recv ends; the slot is freed once nothing is in flight.
    fn begin_close(&mut self, slot: u32) {
        if let Some(c) = self.slots[slot as usize].as_mut()
            && !c.closing
        {
            c.closing = true;
            c.closed.set();
            // SAFETY: fd is ours until the slot is freed.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
            self.dirty.push(slot);
        }
    }

    fn try_free(&mut self, slot: u32) {
        let done = matches!(&self.slots[slot as usize], Some(c) if c.closing && !c.recv_armed && !c.send_inflight && !c.busy);
        if done {
            let mut c = self.slots[slot as usize].take().expect("checked above");
            self.by_id.remove(&c.client.id);
            if !c.client.channels.is_empty() || !c.client.patterns.is_empty() {
                self.unsubscribe.push((
                    c.client.id,
                    std::mem::take(&mut c.client.channels),
                    std::mem::take(&mut c.client.patterns),
                ));
            }
            if !c.client.watching.is_empty() {
                self.unwatch
                    .push((c.client.id, std::mem::take(&mut c.client.watching)));
            }
            if c.repl.is_some() {
                self.gone_replicas.push(c.client.id);
                self.replicas.retain(|&s| s != slot);
            }
            // SAFETY: no operation refers to the fd any more.
            unsafe { libc::close(c.fd) };
            self.free.push(slot);
            self.live -= 1;
        }
    }

    /// Connections with a slow-path batch in flight.
    pub fn busy(&self) -> usize {
        self.slots.iter().flatten().filter(|c| c.busy).count()
    }

    /// Whether the driver has work queued (checked by the shard's cron).
    pub fn has_pending(&self) -> bool {
        !self.done.is_empty() || !self.dirty.is_empty()
    }

    /// Appends a published message to each receiver's output. A receiver
    /// whose pending output passes the `pubsub` class of
    /// `client-output-buffer-limit` (`limit`: the hard bytes, or the soft
    /// bytes for longer than its seconds) is closed, as Redis closes it:
    /// a subscriber that stopped reading must not grow the server's
    /// memory without bound.
    pub fn deliver(
        &mut self,
        receivers: &[(u64, Option<Bytes>)],
        channel: &[u8],
        message: &[u8],
        limit: crate::config::ObufLimit,
    ) {
        for (id, pattern) in receivers {
            let Some(&slot) = self.by_id.get(id) else {
                continue;
            };
            let Some(c) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            if c.closing {
                continue;
            }
            match pattern {
                None => cmd::pubsub::encode(
                    c.client.proto,
                    &[Some(b"message"), Some(channel), Some(message)],
                    None,
                    &mut c.wbuf,
                ),
                Some(p) => cmd::pubsub::encode(
                    c.client.proto,
                    &[Some(b"pmessage"), Some(p), Some(channel), Some(message)],
                    None,
                    &mut c.wbuf,
                ),
            }
            let queued = c.queued();
            if let Some(which) = obuf_exceeded(queued, limit, &mut c.obuf_soft_since) {
                log::warn!(
                    "Client id={} addr={} (pubsub) scheduled to be closed ASAP for overcoming of output buffer limits: {queued} bytes pending, {which} limit. Tune 'client-output-buffer-limit pubsub <hard> <soft> <seconds>' if this subscriber is expected to fall this far behind.",
                    c.client.id,
                    c.addr,
                );
                self.begin_close(slot);
                continue;
            }
            self.dirty.push(slot);
        }
    }

    /// Appends MONITOR lines to the monitor with client id `id`; false
    /// when it is gone or no longer monitoring (`cmd::monitor`). Monitors
    /// are normal clients to `client-output-buffer-limit`, as in Redis,
    /// whose default for them is no limit.
    pub fn monitor_feed(&mut self, id: u64, lines: &[u8]) -> bool {
        let Some(&slot) = self.by_id.get(&id) else {
            return false;
        };
        let Some(c) = self.slots[slot as usize].as_mut() else {
            return false;
        };
        if c.closing || (!c.client.monitor && !c.busy) {
            return false;
        }
        c.wbuf.extend_from_slice(lines);
        self.dirty.push(slot);
        true
    }

    /// Replies of a slow-path batch still running, sent ahead of the
    /// rest (`dispatch::run_batch`).
    pub fn early(&mut self, slot: u32, generation: u32, out: &[u8]) {
        if let Some(c) = self.get(slot, generation) {
            c.wbuf.extend_from_slice(out);
            self.mark(slot);
        }
    }

    /// A slow-path batch finished: queue its replies for the driver.
    pub fn finish(&mut self, slot: u32, generation: u32, out: BytesMut, client: ClientState) {
        self.done.push((slot, generation, out, client));
    }

    /// The reply of `group`, one of the batches the driver sent other
    /// shards for a connection's pipeline remainder
    /// (`Shard::post_conn_batch`). Once every group has answered, the
    /// replies go into the connection in request order, those of the
    /// commands run here in between, and the connection is free to go on
    /// with its input.
    pub fn finish_remote(
        &mut self,
        slot: u32,
        generation: u32,
        group: u8,
        gather: &RefCell<Gather>,
        reply: OpReply,
    ) {
        let OpReply::Batch { out, ends, cmds } = reply else {
            unreachable!("a batch answered with {reply:?}");
        };
        self.recycle_args(cmds.into_iter().map(|c| c.args));
        let mut g = gather.borrow_mut();
        g.remote[group as usize] = (out, ends);
        g.left -= 1;
        if g.left > 0 {
            return;
        }
        if let Some(c) = self.get(slot, generation) {
            c.busy = false;
            c.hold_replies = false;
            g.merge_into(&mut c.wbuf);
            self.mark(slot);
        }
    }

    /// CLIENT LIST lines for this shard's connections. `caller` is the
    /// asking client and the RESP length of the command it runs: its
    /// `qbuf` counts that command, as Redis's query buffer still holds it
    /// while it runs, where tether has already taken it out.
    pub fn client_list(
        &self,
        shard: &Shard,
        ids: Option<&[u64]>,
        typ: Option<&str>,
        caller: (u64, usize),
    ) -> String {
        let mut s = String::new();
        for c in self.slots.iter().flatten() {
            if c.closing
                || ids.is_some_and(|ids| !ids.contains(&c.client.id))
                || typ.is_some_and(|t| !type_matches(t, c.kind()))
            {
                continue;
            }
            let cl = &c.client;
            let _ = writeln!(
                s,
                "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp=0 obl=0 oll=0 omem=0 tot-mem={} events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={} shard={}",
                cl.id,
                c.addr,
                c.laddr,
                c.fd,
                cl.name
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                c.created.elapsed().as_secs(),
                c.last_active.elapsed().as_secs(),
                // Redis's letters in its order; N when there is none.
                match (c.kind(), c.unix) {
                    _ if cl.monitor && c.unix => "OU",
                    _ if cl.monitor => "O",
                    ("replica", false) => "S",
                    ("replica", true) => "SU",
                    ("pubsub", false) => "P",
                    ("pubsub", true) => "PU",
                    (_, false) => "N",
                    (_, true) => "U",
                },
                cl.db,
                c.rbuf.len() + if cl.id == caller.0 { caller.1 } else { 0 },
                c.rbuf.capacity().saturating_sub(c.rbuf.len()),
                c.rbuf.capacity(),
                c.rbuf.capacity() + c.wbuf.capacity(),
                match &cl.last_sub {
                    Some(sub) => format!("{}|{}", cl.last_cmd, String::from_utf8_lossy(sub)),
                    None => cl.last_cmd.to_string(),
                },
                if cl.proto == crate::resp::Proto::Resp3 {
                    3
                } else {
                    2
                },
                cl.lib_name
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                cl.lib_ver
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                shard.id,
            );
        }
        s
    }

    /// CLIENT KILL on this shard: marks matching connections for closing.
    pub fn kill(&mut self, f: &KillFilter) -> usize {
        let mut victims = Vec::new();
        for (i, c) in self.slots.iter().enumerate() {
            let Some(c) = c else { continue };
            let ok = !c.closing
                && f.skip_id != Some(c.client.id)
                && f.id.is_none_or(|id| id == c.client.id)
                && f.addr.as_ref().is_none_or(|a| *a == c.addr)
                && f.laddr.as_ref().is_none_or(|a| *a == c.laddr)
                && f.typ.as_ref().is_none_or(|t| type_matches(t, c.kind()))
                && f.user.as_ref().is_none_or(|u| u == "default");
            if ok {
                victims.push(i as u32);
            }
        }
        for &v in &victims {
            if let Some(c) = self.slots[v as usize].as_mut() {
                c.close_after_flush = true;
                if f.me == Some(c.client.id) {
                    // Busy running the kill: closes once its reply is sent.
                    continue;
                }
            }
            self.begin_close(v);
        }
        victims.len()
    }

    /// INFO's `connected_clients`: every connection but replicas', as Redis
    /// counts (`connected_slaves` has those).
    pub fn clients_not_replicas(&self) -> usize {
        self.len().saturating_sub(self.replicas.len())
    }

    /// Output queued for this shard's replicas and not yet written to their
    /// sockets (INFO's `mem_clients_slaves`).
    pub fn replica_output_bytes(&self) -> u64 {
        self.replicas
            .iter()
            .filter_map(|&s| self.slots.get(s as usize)?.as_ref())
            .map(Conn::queued)
            .sum()
    }

    /// CLIENT UNBLOCK: asks connection `id`'s blocking pop or WAIT to end as
    /// if timed out (or with -UNBLOCKED); false if it is not blocked here.
    pub fn unblock(&self, id: u64, error: bool) -> bool {
        self.slots
            .iter()
            .flatten()
            .find(|c| c.client.id == id && !c.closing)
            .is_some_and(|c| c.closed.request_unblock(error))
    }

    /// Gives back the output buffers a burst left large and empty (a big
    /// reply, a big write streamed to a replica), as Redis's client cron
    /// shrinks reply buffers: an idle connection keeps at most
    /// [`OBUF_KEEP`] of spare output capacity.
    pub fn shrink_output_buffers(&mut self) {
        for c in self.slots.iter_mut().flatten() {
            if c.wbuf.is_empty() && c.wbuf.capacity() > OBUF_KEEP && !c.closing {
                c.wbuf = BytesMut::new();
            }
        }
    }

    /// Closes connections idle longer than `timeout` seconds (0 = never).
    pub fn reap_idle(&mut self, timeout: u64) -> usize {
        if timeout == 0 {
            return 0;
        }
        let stale: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| {
                        !c.closing
                            && !c.busy
                            && c.repl.is_none()
                            && c.last_active.elapsed().as_secs() >= timeout
                    })
                    .map(|_| i as u32)
            })
            .collect();
        for &s in &stale {
            self.begin_close(s);
        }
        stale.len()
    }
}

/// Spare output capacity an idle connection keeps (see
/// [`ConnTable::shrink_output_buffers`]).
const OBUF_KEEP: usize = 64 << 10;

/// Sets up the shard's ring and serves connections until shutdown.
pub async fn serve(shard: Rc<Shard>, listeners: Vec<RawFd>) {
    let mut ring = match Ring::new(1024, NBUFS, BUF_SIZE) {
        Ok(r) => r,
        Err(e) => {
            log::error!(
                "shard {}: io_uring setup failed: {e}. {}",
                shard.id,
                sockopt::IO_URING_REMEDY
            );
            shard.shared.request_shutdown();
            return;
        }
    };
    // Replies queued so far may leave before the turn ends: the writes
    // they answer must be in the replication stream first
    // (`repl::master::batch_begin`).
    let me = shard.clone();
    ring.before_early_submit(move || crate::repl::master::seal(&me));
    // The eventfd the ring signals when completions are pending; a watcher
    // task reads it through glommio's reactor and wakes the driver.
    // SAFETY: plain eventfd creation.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 || ring.register_eventfd(efd).is_err() {
        log::error!("shard {}: cannot register the ring's eventfd", shard.id);
        shard.shared.request_shutdown();
        return;
    }
    shard.shared.repl.wake_fd[shard.id].store(efd, std::sync::atomic::Ordering::SeqCst);
    let watcher = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            // SAFETY: efd is a valid eventfd owned by this task from now on.
            let file = unsafe { glommio::io::BufferedFile::from_raw_fd(efd) };
            loop {
                if file.read_at(0, 8).await.is_err() {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                shard.wake.notify();
            }
        })
    };
    for (i, &l) in listeners.iter().enumerate() {
        ring.accept_multi(l, i as u32);
    }
    let mut driver = Driver {
        shard: shard.clone(),
        ring,
        listeners,
        cqes: Vec::with_capacity(1024),
        turn_time: None,
        dirty_spare: Vec::new(),
        turn: 0,
        seen_in: Vec::new(),
        slow: Vec::new(),
        full_syncs: Vec::new(),
    };
    driver.run().await;
    drop(watcher);
}

struct Driver {
    shard: Rc<Shard>,
    ring: Ring,
    listeners: Vec<RawFd>,
    cqes: Vec<Completion>,
    /// The dirty list of the turn before, kept for its capacity.
    dirty_spare: Vec<u32>,
    /// Turns counted, and per connection slot the last turn that ran it.
    turn: u64,
    seen_in: Vec<u64>,
    /// This turn's clock reading for `last_active`, taken at its first
    /// read (second granularity suffices for idle times and CLIENT LIST).
    turn_time: Option<Instant>,
    /// Slow-path batches to spawn once no borrow is held.
    slow: Vec<SlowBatch>,
    /// Full syncs to start once no borrow is held.
    full_syncs: Vec<replica::FullSync>,
}

impl Driver {
    async fn run(&mut self) {
        loop {
            if self
                .shard
                .shared
                .shutdown
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                self.close_all();
                return;
            }
            self.shard.shared.sleep_if_asked();
            self.shard.wake.take();
            let me = self.shard.id;
            self.shard.shared.mesh.awake(me);
            let mut progress = self.shard.drain_inbox();
            let kick = &self.shard.shared.repl.ack_kick[me];
            if kick.load(std::sync::atomic::Ordering::Relaxed)
                && kick.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                self.shard.acks.ring();
            }
            if let Err(e) = self.ring.submit() {
                log::error!("shard {}: io_uring submit failed: {e}", self.shard.id);
            }
            progress |= self.finish_batches();
            self.cqes.clear();
            self.turn_time = None;
            let mut cqes = std::mem::take(&mut self.cqes);
            self.ring.reap(&mut cqes);
            progress |= !cqes.is_empty();
            for c in &cqes {
                self.on_completion(c);
            }
            self.cqes = cqes;
            self.process_dirty();
            // Keyspace events the turn raised, for subscribers here and
            // on other shards; those here are sent next turn.
            progress |= crate::cmd::notify::flush(&self.shard);
            // MONITOR lines, likewise.
            progress |= crate::cmd::monitor::flush(&self.shard);
            // Connections left with input past their turn's budget.
            progress |= !self.shard.net.borrow().dirty.is_empty();
            if let Err(e) = self.ring.submit() {
                log::error!("shard {}: io_uring submit failed: {e}", self.shard.id);
            }
            if !progress && self.ring.cq_empty() && self.await_spin() {
                continue;
            }
            if !progress && self.ring.cq_empty() {
                // Announce the sleep (a message arriving from now on
                // wakes us); one that came in meanwhile means another turn.
                if self.shard.shared.mesh.sleep(me) {
                    self.shard.wake.wait().await;
                }
            } else if glommio::executor().need_preempt() {
                glommio::executor().yield_task_queue_now().await;
            } else {
                glommio::executor().yield_now().await;
            }
        }
    }

    /// Before sleeping while a connection's batch awaits another shard's
    /// reply, polls for up to [`AWAIT_SPIN`] for that reply (or any other
    /// message, or ring work). Returns whether something arrived.
    ///
    /// A sleep costs both shards CPU: this driver parks in glommio's
    /// reactor (an io_uring_enter and a context switch each way), and the
    /// replying shard must write our eventfd, a syscall and an IPI. A
    /// remote GET round trip with the other shard awake is shorter than
    /// that, so at pipeline depth 1, where a driver otherwise sleeps on
    /// nearly every remote request, waiting in a spin costs no more CPU than
    /// sleeping and answers sooner: on the 2-core bench box remote GET -P 1
    /// ops per CPU-second rose 10-25 % (`benches/cross_shard.rs`; SET and
    /// mixed keys within noise), and p50 latency at `-c 1` against 2 shards
    /// fell from 0.09 to 0.08 ms. Bounded like this
    /// (twice about what a sleep and wake cost) it cannot waste more than
    /// the sleep would have; a driver with nothing outstanding never spins,
    /// nor does one whose newest batch has waited for longer than
    /// [`AWAIT_SPIN_WITHIN`]: the other shard is busy with something long
    /// (a KEYS, a big DEL) and spinning on each wake until it answers would
    /// only burn CPU. Nor does any driver when shards share cores
    /// (`Shared::cores_shared`): the shard it waits for may need this very
    /// core to answer. 4 shards on this 2-core box spent 14 % of their CPU
    /// spinning, for nothing.
    fn await_spin(&mut self) -> bool {
        if self.shard.shared.cores_shared || self.shard.conn_batches.borrow().is_empty() {
            return false;
        }
        let start = Instant::now();
        match self.shard.conn_batch_sent.get() {
            Some(sent) if start.saturating_duration_since(sent) < AWAIT_SPIN_WITHIN => {}
            _ => return false,
        }
        let me = self.shard.id;
        loop {
            for _ in 0..64 {
                if self.shard.shared.mesh.has_mail(me) || self.ring.taskrun() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= AWAIT_SPIN {
                return false;
            }
        }
    }

    fn close_all(&mut self) {
        for &l in &self.listeners {
            // SAFETY: our listening sockets; nothing reads them afterwards.
            unsafe { libc::close(l) };
        }
        let net = self.shard.net.borrow_mut();
        for c in net.slots.iter().flatten() {
            // SAFETY: the process is exiting; close without waiting for io.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
    }

    /// Applies the results of finished slow-path batches.
    fn finish_batches(&mut self) -> bool {
        let mut net = self.shard.net.borrow_mut();
        let done = std::mem::take(&mut net.done);
        let any = !done.is_empty();
        for (slot, generation, out, client) in done {
            if let Some(c) = net.get(slot, generation) {
                c.busy = false;
                c.wbuf.extend_from_slice(&out);
                if client.close_after_reply {
                    c.close_after_flush = true;
                }
                c.client = client;
                net.mark(slot);
            }
        }
        any
    }

    fn on_completion(&mut self, c: &Completion) {
        let (op, generation, slot) = ring::unpack(c.user_data);
        match op {
            Some(OpKind::Accept) => self.on_accept(c, slot),
            Some(OpKind::Recv) => self.on_recv(c, generation, slot),
            Some(OpKind::Send) => self.on_send(c, generation, slot),
            None => {}
        }
    }

    fn on_accept(&mut self, c: &Completion, listener_idx: u32) {
        if !c.more() {
            self.ring
                .accept_multi(self.listeners[listener_idx as usize], listener_idx);
        }
        if c.result < 0 {
            log::warn!(
                "shard {}: accept failed: {}",
                self.shard.id,
                std::io::Error::from_raw_os_error(-c.result)
            );
            return;
        }
        let fd = c.result;
        let cfg = self.shard.shared.config();
        let maxclients = cfg.maxclients() as usize;
        let keepalive = cfg.tcp_keepalive();
        drop(cfg);
        let total: usize = self.shard.net.borrow().len() * self.shard.nshards();
        if total >= maxclients {
            let msg = b"-ERR max number of clients reached\r\n";
            // SAFETY: best-effort error on a socket we own, then close it.
            unsafe {
                libc::send(
                    fd,
                    msg.as_ptr() as *const _,
                    msg.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                );
                libc::close(fd);
            }
            Stats::add(&self.shard.stats.rejected_connections, 1);
            return;
        }
        let (addr, laddr, unix) = sockopt::addrs(fd);
        if !unix {
            sockopt::tune_client(fd, keepalive);
        }
        let id = self
            .shard
            .shared
            .next_client_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let slot = self.shard.net.borrow_mut().insert(|generation| Conn {
            fd,
            generation,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            sending: None,
            send_inflight: false,
            recv_armed: true,
            recv_paused: false,
            backlogged: false,
            partial: None,
            busy: false,
            hold_replies: false,
            close_after_flush: false,
            closing: false,
            peer_eof: false,
            client: ClientState {
                peer: monitor_peer(&self.shard, &addr, unix),
                ..ClientState::new(id)
            },
            closed: Rc::default(),
            addr,
            laddr,
            unix,
            created: now,
            last_active: now,
            repl: None,
            obuf_soft_since: None,
        });
        let generation = self.shard.net.borrow_mut().gens[slot as usize];
        Stats::add(&self.shard.stats.connections_received, 1);
        self.ring.recv_multi(fd, generation, slot);
    }

    fn on_recv(&mut self, c: &Completion, generation: u32, slot: u32) {
        let data_len = c.result.max(0) as usize;
        let mut net = self.shard.net.borrow_mut();
        let Some(conn) = net.get(slot, generation) else {
            if let Some(bid) = c.buffer() {
                self.ring.recycle(bid);
            }
            return;
        };
        if let Some(bid) = c.buffer() {
            if !conn.closing {
                conn.rbuf
                    .extend_from_slice(self.ring.buf_data(bid, data_len));
                conn.last_active = *self.turn_time.get_or_insert_with(Instant::now);
            }
            self.ring.recycle(bid);
        }
        let more = c.more();
        // EOF, or an error other than "out of provided buffers" or our own
        // cancel (a pause).
        let close = c.result == 0
            || (c.result < 0 && c.result != -libc::ENOBUFS && c.result != -libc::ECANCELED);
        if more && conn.backlogged && !conn.recv_paused && conn.rbuf.len() > RECV_PAUSE {
            conn.recv_paused = true;
            self.ring.cancel_recv(generation, slot);
        }
        if !more {
            conn.recv_armed = false;
            if !close && !conn.closing && !conn.recv_paused {
                // Re-arm (ENOBUFS or the kernel ended the multishot).
                conn.recv_armed = true;
                let fd = conn.fd;
                self.ring.recv_multi(fd, generation, slot);
            }
        }
        Stats::add(&self.shard.stats.net_input_bytes, data_len as u64);
        Stats::add(&self.shard.stats.reads_processed, 1);
        if c.result == 0 && conn.repl.is_none() && !conn.closing {
            // EOF: requests received before it still run (a client may
            // pipeline writes and close without reading). A blocked
            // command ends now, as it would on a close.
            conn.peer_eof = true;
            conn.closed.set();
        } else if close {
            if conn.repl.is_some() && !conn.closing {
                log::warn!(
                    "Connection with replica {} lost: {}",
                    conn.addr,
                    replica::socket_end(c.result)
                );
            }
            net.begin_close(slot);
        } else {
            let limit = self.shard.query_buf_limit.get() as usize;
            let conn = net.get(slot, generation).expect("present above");
            if conn.rbuf.len() > limit && !conn.closing {
                log::warn!(
                    "closing client {} ({}): query buffer {} bytes exceeds client-query-buffer-limit",
                    conn.client.id,
                    conn.addr,
                    conn.rbuf.len()
                );
                net.begin_close(slot);
            }
        }
        net.mark(slot);
    }

    fn on_send(&mut self, c: &Completion, generation: u32, slot: u32) {
        let mut net = self.shard.net.borrow_mut();
        let Some(conn) = net.get(slot, generation) else {
            return;
        };
        conn.send_inflight = false;
        Stats::add(&self.shard.stats.writes_processed, 1);
        let Some((buf, off)) = conn.sending.take() else {
            return;
        };
        if c.result < 0 {
            if conn.repl.is_some() && !conn.closing {
                log::warn!(
                    "Connection with replica {} lost: {}",
                    conn.addr,
                    replica::socket_end(c.result)
                );
            }
            net.begin_close(slot);
        } else {
            let off = off + c.result as usize;
            let st = &self.shard.stats;
            let counter = if conn.repl.is_some() {
                &st.net_repl_output_bytes
            } else {
                &st.net_output_bytes
            };
            Stats::add(counter, c.result as u64);
            if off < buf.len() {
                conn.sending = Some((buf, off));
            }
        }
        net.mark(slot);
    }

    /// Parses and runs input, queues output, finishes closes.
    fn process_dirty(&mut self) {
        // The turn's list, swapped with last turn's (emptied) so neither
        // is reallocated: process_conn marks connections for next turn.
        let mut dirty = std::mem::take(&mut self.dirty_spare);
        {
            let mut net = self.shard.net.borrow_mut();
            let ConnTable {
                dirty: marked,
                replicas,
                ..
            } = &mut *net;
            // Replica links are pumped every turn.
            marked.extend_from_slice(replicas);
            std::mem::swap(marked, &mut dirty);
        }
        self.shard.clock.set(crate::shard::now_ms());
        if dirty.len() > 1 {
            self.warm_first_keys(&dirty);
        }
        // The turn's writes go into the replication stream as one batch
        // (see `repl::master::batch_begin`).
        let batching = self
            .shard
            .shared
            .repl
            .active
            .load(std::sync::atomic::Ordering::Relaxed);
        if batching {
            crate::repl::master::batch_begin(&self.shard);
        }
        // A connection marked twice runs once: `seen_in` holds, per slot,
        // the last turn that ran it.
        self.turn += 1;
        for &slot in &dirty {
            let i = slot as usize;
            if self.seen_in.len() <= i {
                self.seen_in.resize(i + 1, 0);
            }
            if self.seen_in[i] == self.turn {
                continue;
            }
            self.seen_in[i] = self.turn;
            self.process_conn(slot);
        }
        if batching {
            crate::repl::master::batch_end(&self.shard);
        }
        dirty.clear();
        self.dirty_spare = dirty;
        self.shard.clock.set(0);
        let gone = std::mem::take(&mut self.shard.net.borrow_mut().unsubscribe);
        for (id, chans, pats) in gone {
            self.shard
                .pubsub
                .borrow_mut()
                .remove_client(id, &chans, &pats);
            crate::cmd::notify::listeners_changed(&self.shard);
        }
        let gone = std::mem::take(&mut self.shard.net.borrow_mut().gone_replicas);
        for id in gone {
            crate::repl::lock(&self.shard.shared.repl.replicas).remove(&id);
        }
        for fs in self.full_syncs.drain(..) {
            let me = self.shard.clone();
            glommio::spawn_local(replica::full_sync(me, fs)).detach();
        }
        let unwatch = std::mem::take(&mut self.shard.net.borrow_mut().unwatch);
        for (id, keys) in unwatch {
            let me = self.shard.clone();
            glommio::spawn_local(async move { cmd::multi::unwatch_all(&me, None, id, keys).await })
                .detach();
        }
        // Spawn slow-path batches only now, with no RefCell borrowed:
        // glommio runs a freshly spawned task right away.
        for (slot, generation, client, cmds, closed) in self.slow.drain(..) {
            let me = self.shard.clone();
            glommio::spawn_local(async move {
                let conn = Some((slot, generation));
                let (out, client) =
                    dispatch::run_batch(me.clone(), client, cmds, closed, conn).await;
                me.net.borrow_mut().finish(slot, generation, out, client);
                me.wake.notify();
            })
            .detach();
        }
    }

    /// Prefetches the first key of each dirty connection's first request.
    /// At -P 1 a turn finds one request on each of several connections,
    /// and the kernel's networking between turns has evicted the keyspace
    /// from cache: each lookup is two misses to memory. Parsing the first
    /// requests twice (here, then for real) costs far less than running
    /// those misses one after another; `run_fast` warms the rest of a
    /// pipeline itself.
    fn warm_first_keys(&mut self, dirty: &[u32]) {
        let shard = &self.shard;
        let mut net_ref = shard.net.borrow_mut();
        let net = &mut *net_ref;
        let limits = ParseLimits {
            max_bulk: shard.proto_max_bulk.get(),
        };
        let n = shard.nshards();
        let ranges = &mut net.scratch.ranges;
        let slots = &net.slots;
        let keys = dirty.iter().filter_map(|&slot| {
            let conn = slots.get(slot as usize)?.as_ref()?;
            // Big input is a pipeline (warmed by `run_fast`) or a big
            // request still arriving, which this would parse every turn.
            if conn.busy || conn.rbuf.is_empty() || conn.rbuf.len() > 1024 {
                return None;
            }
            parse_command_into(&conn.rbuf, limits, ranges).ok()??;
            let key = match ranges.get(1)? {
                Arg::Range(r) => &conn.rbuf[r.clone()],
                Arg::Owned(_) => return None,
            };
            // A key another shard owns is not in this keyspace: looking
            // it up would only miss the cache for nothing.
            (shard_of(key, n) == shard.id).then_some((conn.client.db, key))
        });
        shard.ks.borrow().warm(keys);
    }

    fn process_conn(&mut self, slot: u32) {
        let shard = self.shard.clone();
        let mut net_ref = shard.net.borrow_mut();
        let net = &mut *net_ref;
        let Some(conn) = net.slots.get_mut(slot as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if !conn.closing
            && !conn.busy
            && !conn.close_after_flush
            && !conn.rbuf.is_empty()
            && let Some(cmds) = run_fast(&shard, conn, &mut net.dirty, &mut net.scratch, slot)
        {
            conn.busy = true;
            let frames = &net.scratch.frames;
            match remote_groups(&shard, &mut conn.client, cmds) {
                Ok(mut split) => {
                    let proto = conn.client.proto;
                    // Arguments still borrow the request's frames: a
                    // command that may keep one gets it counted. The
                    // frames stay with the batches until their replies are
                    // back.
                    let mut borrowed = false;
                    let remote = split.groups.iter_mut().flat_map(|g| &mut g.1);
                    for c in split.local.iter_mut().chain(remote) {
                        if c.spec.borrows_args() {
                            borrowed = true;
                        } else {
                            own_args(&mut c.args, frames);
                        }
                    }
                    let frames = if borrowed {
                        std::mem::take(&mut net.scratch.frames)
                    } else {
                        Vec::new()
                    };
                    let mut g = Gather {
                        at: split.at,
                        local: Default::default(),
                        remote: vec![Default::default(); split.groups.len()],
                        left: split.groups.len(),
                        frames,
                    };
                    // The commands this shard owns run now; their replies
                    // wait for the remote ones, to go out in order.
                    if !split.local.is_empty() {
                        let (out, ends) = &mut g.local;
                        out.reserve(64 * split.local.len());
                        dispatch::exec_group(&shard, proto, &split.local, out, ends);
                        for c in split.local {
                            net.scratch.recycle(c.args);
                        }
                    }
                    let g = Rc::new(RefCell::new(g));
                    let conn_id = (slot, conn.generation);
                    conn.hold_replies = true;
                    for (i, (to, cmds)) in split.groups.into_iter().enumerate() {
                        shard.post_conn_batch(to, conn_id, i as u8, &g, proto, cmds);
                    }
                }
                Err(mut cmds) => {
                    for args in &mut cmds {
                        own_args(args, frames);
                    }
                    self.slow.push((
                        slot,
                        conn.generation,
                        conn.client.clone(),
                        cmds,
                        conn.closed.clone(),
                    ))
                }
            }
            net.scratch.frames.clear();
        }
        let conn = net.slots[slot as usize].as_mut().expect("present");
        if conn.recv_paused
            && !conn.recv_armed
            && !conn.closing
            && (!conn.backlogged || conn.rbuf.len() < RECV_RESUME)
        {
            conn.recv_paused = false;
            conn.recv_armed = true;
            self.ring.recv_multi(conn.fd, conn.generation, slot);
        }
        if !conn.busy {
            if conn.client.repl.sync.is_some()
                && let Some(fs) = replica::on_sync(&shard, net, slot)
            {
                self.full_syncs.push(fs);
            }
            let conn = net.slots[slot as usize].as_mut().expect("present");
            if let Some(off) = conn.client.repl.ack.take() {
                replica::on_ack(&shard, conn, off);
            }
            if conn.repl.is_some() && !conn.closing && !replica::pump(&shard, conn) {
                net.begin_close(slot);
            }
        }
        let conn = net.slots[slot as usize].as_mut().expect("present");
        // After EOF, once what was received has run: close, after the
        // replies (a half-closed peer still reads them).
        if conn.peer_eof && !conn.busy && !conn.backlogged {
            conn.close_after_flush = true;
        }
        if !conn.send_inflight && !conn.closing && !conn.hold_replies {
            if conn.sending.is_none() && !conn.wbuf.is_empty() {
                conn.sending = Some((conn.wbuf.split().freeze(), 0));
            }
            // A fresh buffer, or the rest of a partial send.
            if let Some((buf, off)) = &conn.sending {
                let rest = &buf[*off..];
                self.ring
                    .send(conn.fd, rest.as_ptr(), rest.len(), conn.generation, slot);
                conn.send_inflight = true;
            }
        }
        if conn.close_after_flush
            && conn.sending.is_none()
            && !conn.send_inflight
            && conn.wbuf.is_empty()
            && !conn.busy
        {
            net.begin_close(slot);
        }
        net.try_free(slot);
    }
}

/// How MONITOR lines name a client (`cmd::monitor`): its address, or
/// `unix:` and the server's socket path, as Redis writes them.
fn monitor_peer(shard: &Shard, addr: &str, unix: bool) -> Bytes {
    if unix {
        let path = shard.shared.config().unix_socket().map(|(p, _)| p);
        Bytes::from(format!("unix:{}", path.unwrap_or_default()))
    } else {
        Bytes::copy_from_slice(addr.as_bytes())
    }
}

/// Where a request of a split remainder ran: on this shard.
const HERE: u8 = u8::MAX;

/// A pipeline remainder's replies, gathered while its groups run on other
/// shards (see `remote_groups`), and the request frames their arguments
/// borrow (see `cmd::BORROWS_ARGS`), kept until every group has answered.
pub struct Gather {
    /// Per request of the remainder, in order: [`HERE`] or its group.
    at: Vec<u8>,
    /// Output and reply ends of the commands run here, and of each group.
    local: (BytesMut, Vec<u32>),
    remote: Vec<(BytesMut, Vec<u32>)>,
    /// Groups yet to answer.
    left: usize,
    frames: Vec<Bytes>,
}

impl Gather {
    /// Appends every reply to `wbuf`, in request order.
    fn merge_into(&mut self, wbuf: &mut BytesMut) {
        if self.local.1.is_empty() && self.remote.len() == 1 {
            let out = &mut self.remote[0].0;
            match wbuf.is_empty() {
                true => std::mem::swap(wbuf, out),
                false => wbuf.extend_from_slice(out),
            }
            return;
        }
        // Per part (the groups, then this shard): its next reply, and
        // where that reply starts.
        let mut next = vec![(0usize, 0usize); self.remote.len() + 1];
        for &a in &self.at {
            let (part, (out, ends)) = match a {
                HERE => (self.remote.len(), &self.local),
                g => (g as usize, &self.remote[g as usize]),
            };
            let (i, start) = &mut next[part];
            let end = ends[*i] as usize;
            wbuf.extend_from_slice(&out[*start..end]);
            (*i, *start) = (*i + 1, end);
        }
    }

    /// Lets go of the frames without freeing them: for a shard that goes
    /// away while another may still read its batches' arguments.
    pub fn leak_frames(&mut self) {
        std::mem::forget(std::mem::take(&mut self.frames));
    }
}

/// A pipeline remainder split between this shard and the others it uses.
struct Split {
    /// Per other shard, in order of first use: the shard, its commands.
    groups: Vec<(usize, Vec<crate::shard::ShardCmd>)>,
    local: Vec<crate::shard::ShardCmd>,
    /// Per request, in order: [`HERE`] or its index in `groups`.
    at: Vec<u8>,
}

/// The slow path's common case, taken without it: every command of the
/// rest of the pipeline is a plain one-key-owner command, on a connection
/// with no MULTI, no subscriptions and no refusal in play, with this
/// shard's gate open. Then the driver runs this shard's part at once and
/// sends each other shard its part as one batch; the replies go into the
/// connection in request order when the last owner answers
/// (`Shard::post_conn_batch`), with no task, no per-command reply slot and
/// one copy less. As with `run_batch`, each shard's part runs in order,
/// and the parts run at once. Anything else comes back untouched for
/// `dispatch::run_batch`, as does everything while clients may be paused
/// (`cmd::pause`).
fn remote_groups(
    shard: &Shard,
    client: &mut ClientState,
    cmds: Vec<Vec<Bytes>>,
) -> Result<Split, Vec<Vec<Bytes>>> {
    let n = shard.nshards();
    // CLIENT REPLY OFF / SKIP: only the slow path drops silenced replies.
    if client.multi.is_some()
        || client.close_after_reply
        || client.reply_mode != cmd::ReplyMode::On
        || !client.channels.is_empty()
        || !client.patterns.is_empty()
        || !shard.gate_open()
        || shard.shared.pause.maybe()
    {
        return Err(cmds);
    }
    let mut to: Vec<usize> = Vec::new();
    let mut specs = Vec::with_capacity(cmds.len());
    let mut at = Vec::with_capacity(cmds.len());
    for args in &cmds {
        let Lookup::Found(spec) = cmd::lookup(args) else {
            return Err(cmds);
        };
        if crate::shard::blocking::timeout_index(spec.name, args.len()).is_some()
            || cmd::repl::refusal(shard, client, spec, args).is_some()
        {
            return Err(cmds);
        }
        match cmd::route(spec, args, shard.id, n) {
            Route::Shard(s) if s == shard.id => at.push(HERE),
            Route::Shard(s) => match to.iter().position(|&t| t == s) {
                Some(g) => at.push(g as u8),
                None if to.len() < HERE as usize => {
                    at.push(to.len() as u8);
                    to.push(s);
                }
                None => return Err(cmds),
            },
            _ => return Err(cmds),
        }
        specs.push(spec);
    }
    if to.is_empty() {
        return Err(cmds);
    }
    let db = client.db;
    let mut split = Split {
        groups: to.into_iter().map(|s| (s, Vec::new())).collect(),
        local: Vec::new(),
        at,
    };
    for ((args, spec), &a) in cmds.into_iter().zip(specs).zip(&split.at) {
        cmd::note_cmd(client, spec, &args);
        cmd::monitor::feed_client(shard, spec, client, &args);
        let c = crate::shard::ShardCmd { spec, db, args };
        match a {
            HERE => split.local.push(c),
            g => split.groups[g as usize].1.push(c),
        }
    }
    Ok(split)
}

/// Requests parsed ahead of execution on the fast path, so that their keys
/// are looked up together first (`Keyspace::warm`).
const PARSE_AHEAD: usize = crate::shard::keyspace::WARM_AHEAD;

/// An incomplete request with at least this many arguments parsed keeps
/// its parse in its connection ([`Conn::partial`]) instead of being
/// parsed again from its start after the next read.
const STASH_ARGS: usize = 64;

/// Why [`parse_batch`] stopped short of its request or byte limit.
enum ParseStop {
    /// The buffer ends inside a request.
    Incomplete,
    /// A protocol error, after the requests before it.
    Error(String),
}

/// Parses complete requests off the front of `rbuf` into `ahead` (skipping
/// empty inline lines) until `max` of them are parsed or `budget` bytes
/// taken, and returns the bytes taken and why it stopped, if early.
///
/// The batch is split off `rbuf` in one piece, so all its arguments share
/// one frame: the buffer's atomic reference count moves once per batch,
/// and once more only per argument that must be counted (below). A split
/// per request cost two more atomic operations per request, a tenth of a
/// pipelined GET's time in user space.
///
/// The arguments *borrow* the frame: each is a `Bytes` made with
/// `from_static` over its bytes, so making and dropping one touches no
/// reference count, and the frame itself is kept in `scratch.frames` until
/// the pipeline's remainder, if any, has left [`Driver::process_conn`].
/// Before that, every request either runs with a command in
/// [`cmd::BORROWS_ARGS`] (whose handlers keep nothing), here or on the
/// other shard of a remote group that takes the frames with it
/// (`Shard::post_conn_batch`), or has its arguments turned into counted
/// slices of the frame ([`own_args`]) before they go anywhere else. Per argument that saves an
/// atomic increment and decrement: about 9 % of SET -P 16's server CPU.
///
/// A big request arriving over many reads goes on from `partial`, where the
/// last call left it, so its parse is linear, not quadratic. It was parsed
/// from `off`, where the batch is split, so its offsets hold for the buffer
/// the next call sees.
fn parse_batch(
    rbuf: &mut BytesMut,
    limits: ParseLimits,
    scratch: &mut Scratch,
    partial: &mut Option<Box<(Vec<Arg>, Resume)>>,
    ahead: &mut VecDeque<Vec<Bytes>>,
    max: usize,
    budget: usize,
) -> (usize, Option<ParseStop>) {
    let Scratch {
        ranges: shared,
        spare,
        flat,
        bounds,
        frames,
        ..
    } = scratch;
    if shared.capacity() > Scratch::MAX_ARGS {
        *shared = Vec::new();
    }
    let mut off = 0;
    let mut stop = None;
    while bounds.len() < max && off < budget {
        let mut stash = if off == 0 { partial.take() } else { None };
        let mut fresh = Resume::default();
        let (ranges, resume) = match stash.as_mut() {
            Some(p) => (&mut p.0, &mut p.1),
            None => (&mut *shared, &mut fresh),
        };
        match parse_command_resumable(&rbuf[off..], limits, ranges, resume) {
            Ok(Some(used)) => {
                if !ranges.is_empty() {
                    flat.extend(ranges.drain(..).map(|a| match a {
                        Arg::Range(r) => Arg::Range(r.start + off..r.end + off),
                        owned => owned,
                    }));
                    bounds.push(flat.len());
                }
                off += used;
            }
            Ok(None) => {
                if resume.active() && ranges.len() >= STASH_ARGS {
                    let resume = *resume;
                    *partial =
                        Some(stash.unwrap_or_else(|| Box::new((std::mem::take(shared), resume))));
                } else {
                    ranges.clear();
                }
                stop = Some(ParseStop::Incomplete);
                break;
            }
            Err(e) => {
                ranges.clear();
                stop = Some(ParseStop::Error(e.0));
                break;
            }
        }
    }
    if off > 0 {
        let frame = rbuf.split_to(off).freeze();
        let mut args_of = flat.drain(..);
        let mut start = 0;
        for &end in bounds.iter() {
            let mut args = spare.pop().unwrap_or_default();
            args.extend(args_of.by_ref().take(end - start).map(|a| match a {
                Arg::Range(r) => {
                    let bytes: &[u8] = &frame[r];
                    // SAFETY: not truly 'static: the bytes live as long as
                    // `frame`, which `frames` keeps until `run_fast` ends,
                    // and by then no borrowed argument is left (see above).
                    Bytes::from_static(unsafe { &*std::ptr::from_ref(bytes) })
                }
                Arg::Owned(v) => Bytes::from(v),
            }));
            ahead.push_back(args);
            start = end;
        }
        frames.push(frame);
    }
    bounds.clear();
    flat.clear();
    if flat.capacity() > Scratch::MAX_FLAT {
        *flat = Vec::new();
    }
    (off, stop)
}

/// Turns a request's borrowed arguments (see [`parse_batch`]) into counted
/// slices of their frame, so they may outlive the frames. Arguments that
/// own their bytes (an inline request's unescaped words) stay as they are.
/// Where a parsed request's first key is, for warming the table ahead of
/// a pipeline: after the command name, or after EVAL's script and key
/// count. A wrong guess only warms a slot for nothing.
fn first_key_at(req: &[Bytes]) -> usize {
    match req.first() {
        Some(name) if name.len() >= 4 && name[..4].eq_ignore_ascii_case(b"eval") => 3,
        _ => 1,
    }
}

fn own_args(args: &mut [Bytes], frames: &[Bytes]) {
    for a in args.iter_mut() {
        let (p, n) = (a.as_ptr() as usize, a.len());
        if n == 0 {
            *a = Bytes::new();
            continue;
        }
        if let Some(f) = frames.iter().find(|f| {
            let start = f.as_ptr() as usize;
            start <= p && p + n <= start + f.len()
        }) {
            *a = f.slice_ref(a);
        }
    }
}

/// Runs the connection's complete requests synchronously while they can
/// (keys on this shard, connection commands). Returns the remainder of the
/// pipeline, from the first request that needs another shard, for the slow
/// path. Stops after [`FAST_TURN_BYTES`] of input, marking the connection
/// in `dirty` to go on next turn.
///
/// The remainder's arguments may still borrow `scratch.frames`, which is
/// then left for the caller to clear once it has owned them or handed
/// the frames on with them (`process_conn`).
fn run_fast(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    dirty: &mut Vec<u32>,
    scratch: &mut Scratch,
    slot: u32,
) -> Option<Vec<Vec<Bytes>>> {
    let limits = ParseLimits {
        max_bulk: shard.proto_max_bulk.get(),
    };
    let n = shard.nshards();
    let mut executed = 0u64;
    let mut consumed = 0usize;
    let mut slow: Option<Vec<Vec<Bytes>>> = None;
    conn.backlogged = false;
    if shard.repl_batching.get() {
        crate::repl::master::batch_warm(shard);
    }
    let mut ahead = std::mem::take(&mut scratch.ahead);
    let mut parse_error = None;
    let monitored = cmd::monitor::on(shard);
    let mut incomplete = false;
    loop {
        if ahead.is_empty() {
            if let Some(e) = parse_error.take() {
                if slow.is_none() {
                    Reply::new(&mut conn.wbuf, conn.client.proto)
                        .error(&format!("ERR Protocol error: {e}"));
                    conn.close_after_flush = true;
                    conn.rbuf.clear();
                    conn.partial = None;
                }
                break;
            }
            if incomplete {
                break;
            }
            if consumed >= FAST_TURN_BYTES && slow.is_none() {
                conn.backlogged = true;
                dirty.push(slot);
                break;
            }
            let budget = match slow {
                Some(_) => usize::MAX,
                None => FAST_TURN_BYTES.saturating_sub(consumed),
            };
            let room = PARSE_AHEAD - ahead.len();
            let (used, stop) = parse_batch(
                &mut conn.rbuf,
                limits,
                scratch,
                &mut conn.partial,
                &mut ahead,
                room,
                budget,
            );
            consumed += used;
            match stop {
                Some(ParseStop::Incomplete) => incomplete = true,
                Some(ParseStop::Error(e)) => parse_error = Some(e),
                None => {}
            }
            if slow.is_none() && ahead.len() > 1 {
                let db = conn.client.db;
                shard.ks.borrow().warm(
                    ahead
                        .iter()
                        .filter_map(|r| Some((db, r.get(first_key_at(r))?.as_ref())))
                        .filter(|(_, key)| shard_of(key, n) == shard.id),
                );
            }
            continue;
        }
        // Borrowed arguments (see `parse_batch`): every way out of this
        // loop but a BORROWS_ARGS command run here owns them first.
        let mut args = ahead.pop_front().expect("not empty");
        if let Some(batch) = slow.as_mut() {
            batch.push(args);
            if batch.len() >= MAX_SLOW_BATCH {
                batch.extend(ahead.drain(..));
                break;
            }
            continue;
        }
        // While clients may be paused, the slow path decides what waits;
        // it also drops what CLIENT REPLY OFF / SKIP silences.
        if (shard.shared.pause.maybe() && !conn.client.repl.is_replica)
            || conn.client.reply_mode != cmd::ReplyMode::On
        {
            own_args(&mut args, &scratch.frames);
            slow = Some(vec![args]);
            continue;
        }
        if conn.client.multi.is_some() {
            own_args(&mut args, &scratch.frames);
            if cmd::multi::queue(shard, &mut conn.client, &args, &mut conn.wbuf) {
                continue;
            }
        }
        let spec = match cmd::lookup(&args) {
            Lookup::Error(e) => {
                Reply::new(&mut conn.wbuf, conn.client.proto).error(&e);
                continue;
            }
            Lookup::Found(spec) => spec,
        };
        cmd::note_cmd(&mut conn.client, spec, &args);
        if cmd::pubsub::subscribed_guard(&conn.client, spec, &args, &mut conn.wbuf) {
            cmd::stats::rejected(spec, &args);
            continue;
        }
        if let Some(e) = cmd::repl::refusal(shard, &conn.client, spec, &args) {
            cmd::stats::rejected(spec, &args);
            Reply::new(&mut conn.wbuf, conn.client.proto).error(e);
            continue;
        }
        let route = cmd::route(spec, &args, shard.id, n);
        // A script known to stay on keys of this shard runs in line, as
        // any command here does (`eval::try_inline`).
        // (Not while monitored: the slow path shows a script before its calls.)
        if matches!(route, Route::Global)
            && spec.name.starts_with("eval")
            && shard.gate_open()
            && !monitored
        {
            own_args(&mut args, &scratch.frames);
            let (client, out) = (&conn.client, &mut conn.wbuf);
            if cmd::script::eval::try_inline(shard, client, spec, &args, out) {
                executed += 1;
                scratch.recycle(args);
                continue;
            }
        }
        match route {
            _ if crate::shard::blocking::timeout_index(spec.name, args.len()).is_some() => {
                own_args(&mut args, &scratch.frames);
                slow = Some(vec![args])
            }
            Route::Shard(s) if s == shard.id && shard.gate_open() => {
                if !spec.borrows_args() {
                    own_args(&mut args, &scratch.frames);
                }
                if monitored {
                    cmd::monitor::feed_client(shard, spec, &conn.client, &args);
                }
                cmd::exec_local(
                    shard,
                    spec,
                    conn.client.db,
                    conn.client.proto,
                    &args,
                    &mut conn.wbuf,
                );
                executed += 1;
                scratch.recycle(args);
            }
            Route::Conn => {
                own_args(&mut args, &scratch.frames);
                cmd::server::exec_conn(shard, &mut conn.client, spec, &args, &mut conn.wbuf);
                // After it ran, as Redis: SELECT shows the database it chose.
                if monitored {
                    cmd::monitor::feed_client(shard, spec, &conn.client, &args);
                }
                executed += 1;
                scratch.recycle(args);
                if conn.client.close_after_reply {
                    conn.close_after_flush = true;
                    conn.rbuf.clear();
                    conn.partial = None;
                    break;
                }
            }
            _ => slow = Some(vec![args]),
        }
    }
    Stats::add(&shard.stats.commands_processed, executed);
    // Requests parsed after a QUIT are dropped, as Redis drops them.
    ahead.clear();
    scratch.ahead = ahead;
    // No borrowed argument is left but in `slow`: what ran was dropped or
    // recycled, the rest dropped just above.
    if slow.is_none() {
        scratch.frames.clear();
    }
    slow
}
