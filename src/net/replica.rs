//! Replica links on the master: a connection that sent SYNC/PSYNC.
//!
//! Each link lives on the shard that accepted it and is served by that
//! shard's driver and timers:
//! - **PSYNC** answers `+CONTINUE <replid>` when the id matches (replid, or
//!   replid2 up to second_repl_offset) and every shard still holds the
//!   range; else `+FULLRESYNC <replid> <offset>` and a snapshot task
//!   streams the RDB (`$EOF:<mark>` framing for `capa eof`, else `$<len>`).
//!   After an EOF-framed snapshot nothing more is sent until the replica's
//!   first ACK, since it finds the end by looking at the last 40 bytes.
//! - **Pump** (every driver turn): copies stream entries from the link's
//!   position on, merged across the shards' backlogs in offset order, into
//!   the socket's output, at most ~1 MiB beyond what the socket has taken.
//! - **Cron**: repl-timeout on replica silence, the replica output-buffer
//!   limits (hard, and soft for N seconds), the position this shard's links
//!   still need from the backlogs.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Conn, ConnTable};
use crate::repl::snapshot::{Purpose, Snapshot};
use crate::repl::{BEntry, ReplicaView, lock};
use crate::shard::Shard;

/// Output bytes beyond which the pump waits for the socket.
const PUMP_AHEAD: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The snapshot is being sent.
    Bulk,
    /// EOF-framed snapshot sent: nothing more until the first ACK.
    WaitAck,
    Online,
}

/// A replica link's state on the master.
#[derive(Debug)]
pub struct Link {
    pub state: LinkState,
    /// Next stream offset to send.
    pub pos: u64,
    /// Since when the output has been over the soft limit.
    soft_since: Option<Instant>,
}

/// A full sync to start once no borrow is held.
#[derive(Clone, Copy, Debug)]
pub struct FullSync {
    pub slot: u32,
    pub generation: u32,
    /// `$EOF:<mark>` framing, else `$<len>`.
    pub eof: bool,
    /// PSYNC, answered `+FULLRESYNC`; a SYNC replica gets no such line.
    pub psync: bool,
    /// The keys go into the snapshot (not `rdb-filter-only`).
    pub data: bool,
    /// The link closes after the snapshot (`rdb-only`).
    pub rdb_only: bool,
}

fn view_of(conn: &Conn, state: &'static str) -> ReplicaView {
    let ip = conn.client.repl.ip_address.clone().unwrap_or_else(|| {
        conn.addr
            .rsplit_once(':')
            .map_or(conn.addr.clone(), |(h, _)| h.to_string())
    });
    ReplicaView {
        ip,
        port: conn.client.repl.listening_port,
        state,
        ack_off: 0,
        ack_ms: crate::shard::now_ms(),
        lag_ms: 0,
        since_ms: crate::shard::now_ms(),
        shareable: conn.client.repl.capa_eof
            && !conn.client.repl.rdb_no_data
            && !conn.client.repl.rdb_only,
    }
}

/// One snapshot streamed to several replicas: those waiting for a full
/// sync when one starts (after `repl-diskless-sync-delay`) share it, as
/// they share Redis's one RDB transfer, instead of each waiting for the
/// one before (tether takes one snapshot at a time). The replica whose
/// sync starts it produces it and keeps every chunk here; the others,
/// on whatever shard holds their connection, send the same chunks at
/// their own pace. Only EOF-framed syncs of the whole dataset share.
pub struct SharedSync {
    /// Client ids of the replicas that take this snapshot from its producer.
    members: Vec<u64>,
    /// Replication id and offset of the cut, once taken.
    cut: std::sync::Mutex<Option<(String, u64)>>,
    chunks: std::sync::Mutex<Vec<bytes::Bytes>>,
    finished: std::sync::atomic::AtomicBool,
    failed: std::sync::atomic::AtomicBool,
}

impl SharedSync {
    fn chunk(&self, i: usize) -> Option<bytes::Bytes> {
        lock(&self.chunks).get(i).cloned()
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// Where a full sync's snapshot comes from.
enum Source {
    /// Taken here; shared with the members of `Some`.
    Own(Option<std::sync::Arc<SharedSync>>),
    /// Another replica's, shared.
    Joined(std::sync::Arc<SharedSync>),
}

/// Joins the shared snapshot that lists `id`, or starts one for the
/// replicas waiting now (see [`SharedSync`]).
fn source(repl: &crate::repl::Repl, id: u64, shareable: bool) -> Source {
    if !shareable {
        return Source::Own(None);
    }
    let mut reg = lock(&repl.shared_sync);
    if let Some(share) = reg.as_ref() {
        if share.members.contains(&id) {
            return Source::Joined(share.clone());
        }
        // Started without us: ours comes after it.
        return Source::Own(None);
    }
    let members: Vec<u64> = lock(&repl.replicas)
        .iter()
        .filter(|(k, v)| **k != id && v.state == "wait_bgsave" && v.shareable)
        .map(|(&k, _)| k)
        .collect();
    if members.is_empty() {
        return Source::Own(None);
    }
    log::info!(
        "Full sync snapshot shared by {} replicas",
        members.len() + 1
    );
    let share = std::sync::Arc::new(SharedSync {
        members,
        cut: Default::default(),
        chunks: Default::default(),
        finished: Default::default(),
        failed: Default::default(),
    });
    *reg = Some(share.clone());
    Source::Own(Some(share))
}

/// A producer is done with its shared snapshot: later syncs start anew.
fn retire(repl: &crate::repl::Repl, share: &std::sync::Arc<SharedSync>) {
    let mut reg = lock(&repl.shared_sync);
    if reg
        .as_ref()
        .is_some_and(|s| std::sync::Arc::ptr_eq(s, share))
    {
        *reg = None;
    }
}

/// `repl-diskless-sync-delay` and `-max-replicas`, as Redis's
/// replicationCron applies them: a diskless full sync starts once the
/// replica waiting longest has waited `delay` seconds (later ones start
/// with it, as they would join Redis's one transfer), or once
/// `max-replicas` replicas wait. Meanwhile the replica gets a `\n` a
/// second, which keeps its handshake read alive (it waits for
/// `+FULLRESYNC`, sent when the sync starts). The replicas waiting when
/// one starts share its snapshot ([`SharedSync`]).
/// Returns false if the replica went away meanwhile.
async fn diskless_delay(shard: &Rc<Shard>, slot: u32, generation: u32, client_id: u64) -> bool {
    let mut last_newline = Instant::now();
    loop {
        let (diskless, delay, max) = {
            let c = shard.shared.config();
            (
                c.get_bool("repl-diskless-sync").unwrap_or(true),
                c.get_int("repl-diskless-sync-delay").unwrap_or(5).max(0) as u64,
                c.get_int("repl-diskless-sync-max-replicas")
                    .unwrap_or(0)
                    .max(0) as usize,
            )
        };
        if !diskless || delay == 0 {
            return true;
        }
        // A sync that started with us among its members: go now.
        if lock(&shard.shared.repl.shared_sync)
            .as_ref()
            .is_some_and(|s| s.members.contains(&client_id))
        {
            return true;
        }
        let (oldest, waiting) = {
            let views = lock(&shard.shared.repl.replicas);
            let mine = views.get(&client_id).map(|v| v.since_ms);
            let Some(mine) = mine else {
                return false;
            };
            let waiting = views.values().filter(|v| v.state == "wait_bgsave");
            let (oldest, n) = waiting.fold((mine, 0), |(o, n), v| (o.min(v.since_ms), n + 1));
            (oldest, n)
        };
        if crate::shard::now_ms().saturating_sub(oldest) >= delay * 1000
            || (max > 0 && waiting >= max)
        {
            return true;
        }
        if last_newline.elapsed() >= Duration::from_secs(1) {
            last_newline = Instant::now();
            if !push_out(shard, slot, generation, b"\n") {
                return false;
            }
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Handles a SYNC/PSYNC just parsed on `slot`. Returns a full sync to
/// spawn, or None when the link continues from the backlog.
pub fn on_sync(shard: &std::rc::Rc<Shard>, net: &mut ConnTable, slot: u32) -> Option<FullSync> {
    let conn = net.slots[slot as usize].as_mut()?;
    let req = conn.client.repl.sync.take()?;
    let repl = &shard.shared.repl;
    conn.client.repl.is_replica = true;
    if std::mem::take(&mut conn.client.repl.failover) {
        // Our master hands over (`repl::failover`): we become the master,
        // and its PSYNC continues from the history we share.
        log::info!(
            "MASTER MODE enabled (failover request from 'id={} addr={}')",
            conn.client.id,
            conn.addr
        );
        crate::repl::replica::promote(shard, Some(conn.client.id));
    }
    {
        let c = shard.shared.config();
        crate::net::sockopt::repl_user_timeout(
            conn.fd,
            c.get_int("repl-tcp-user-timeout").unwrap_or(0),
            c.get_int("repl-timeout").unwrap_or(60).max(1) as u64,
            c.tcp_keepalive(),
        );
    }
    let id = conn.client.id;
    if let Some((rid, off)) = &req {
        let ids = repl.ids();
        let master = repl.seq.offset();
        let id_ok = rid.as_ref() == ids.replid.as_bytes()
            || (rid.as_ref() == ids.replid2.as_bytes() && *off <= ids.second_offset);
        let want = (*off - 1).max(0) as u64;
        // History is served back to `repl-backlog-size` bytes, and further
        // only while a connected replica still holds it, as in Redis 7.0
        // (its shared replication buffer keeps blocks a replica refers to,
        // and trims the rest before the next event loop turn). The shards
        // may keep more until their next write; a replica just dropped
        // over its output buffer limit must not be owed that overrun again
        // at once (the memory the limit guards) but take a full resync.
        let size = shard
            .shared
            .config()
            .get_int("repl-backlog-size")
            .unwrap_or(1 << 20)
            .max(0) as u64;
        if repl.backlog_on.load(Ordering::SeqCst)
            && id_ok
            && *off >= 1
            && want >= repl.first_offset()
            && want <= master
            && (master - want <= size || want >= repl.keep())
        {
            conn.wbuf.extend_from_slice(
                if conn.client.repl.capa_psync2 {
                    format!("+CONTINUE {}\r\n", ids.replid)
                } else {
                    "+CONTINUE\r\n".to_string()
                }
                .as_bytes(),
            );
            conn.repl = Some(Box::new(Link {
                state: LinkState::Online,
                pos: want,
                soft_since: None,
            }));
            repl.hold[shard.id].fetch_min(want, Ordering::SeqCst);
            let mut v = view_of(conn, "online");
            v.ack_off = want;
            lock(&repl.replicas).insert(id, v);
            repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            log::info!(
                "Partial resynchronization request from {} accepted. Sending {} bytes of backlog starting from offset {}.",
                conn.addr,
                master - want,
                want + 1
            );
            net.replicas.push(slot);
            net.mark(slot);
            return None;
        }
        if rid.as_ref() != b"?" {
            repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
        }
    }
    repl.sync_full.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "Replica {} asks for synchronization; starting a full resync",
        conn.addr
    );
    // The EOF framing goes to replicas that announced it (`capa eof`). A
    // bare SYNC without it predates the framing.
    let eof = conn.client.repl.capa_eof;
    conn.repl = Some(Box::new(Link {
        state: LinkState::Bulk,
        pos: u64::MAX,
        soft_since: None,
    }));
    lock(&repl.replicas).insert(id, view_of(conn, "wait_bgsave"));
    net.replicas.push(slot);
    Some(FullSync {
        slot,
        generation: conn.generation,
        eof,
        psync: req.is_some(),
        data: !conn.client.repl.rdb_no_data,
        rdb_only: conn.client.repl.rdb_only,
    })
}

/// Output not yet taken by the socket, or None when the link is gone.
fn pending(shard: &Shard, slot: u32, generation: u32) -> Option<usize> {
    let mut net = shard.net.borrow_mut();
    let c = net.get(slot, generation)?;
    if c.closing {
        return None;
    }
    Some(c.queued() as usize)
}

/// Appends to the link's output; false when the link is gone.
fn push_out(shard: &Shard, slot: u32, generation: u32, bytes: &[u8]) -> bool {
    let mut net = shard.net.borrow_mut();
    let Some(c) = net.get(slot, generation) else {
        return false;
    };
    if c.closing {
        return false;
    }
    c.wbuf.extend_from_slice(bytes);
    net.mark(slot);
    drop(net);
    shard.wake.notify();
    true
}

fn set_link(shard: &Shard, slot: u32, generation: u32, f: impl FnOnce(&mut Link)) {
    let mut net = shard.net.borrow_mut();
    if let Some(c) = net.get(slot, generation)
        && let Some(l) = c.repl.as_mut()
    {
        f(l);
    }
}

/// Streams a snapshot to a replica, then hands the link to the pump.
///
/// A filtered snapshot (`rdb-filter-only`) holds no keys; an `rdb-only`
/// link gets no stream and is closed once the snapshot has been sent, as
/// Redis 7.0 does.
pub async fn full_sync(shard: Rc<Shard>, fs: FullSync) {
    let FullSync {
        slot,
        generation,
        eof,
        psync,
        data,
        rdb_only,
    } = fs;
    let Some(id) = shard
        .net
        .borrow_mut()
        .get(slot, generation)
        .map(|c| c.client.id)
    else {
        return;
    };
    if !diskless_delay(&shard, slot, generation, id).await {
        log::warn!("Replica link closed while its full sync waited to start");
        return;
    }
    // Hold the backlog from the current offset on (the cut can only be
    // later), so nothing the link will need is trimmed meanwhile.
    let now_off = shard.shared.repl.seq.offset();
    set_link(&shard, slot, generation, |l| l.pos = now_off);
    shard.shared.repl.hold[shard.id].fetch_min(now_off, Ordering::SeqCst);
    let share = match source(&shard.shared.repl, id, eof && data && !rdb_only) {
        Source::Joined(share) => {
            let started = Instant::now();
            if joined(&shard, slot, generation, id, &share, psync).await {
                log::info!(
                    "Synchronization with replica succeeded (shared snapshot sent in {} ms)",
                    started.elapsed().as_millis()
                );
                set_link(&shard, slot, generation, |l| l.state = LinkState::WaitAck);
            } else {
                log::warn!("Shared full sync abandoned; the replica will sync again");
                close_link(&shard, slot, generation);
            }
            shard.wake.notify();
            return;
        }
        Source::Own(share) => share,
    };
    let purpose = if data {
        Purpose::Replication
    } else {
        Purpose::ReplicationNoData
    };
    let snap = Snapshot::begin(&shard, purpose).await;
    let off = snap.offset;
    set_link(&shard, slot, generation, |l| l.pos = off);
    if let Some(share) = &share {
        *lock(&share.cut) = Some((snap.replid.clone(), off));
    }
    if let Some(v) = lock(&shard.shared.repl.replicas).get_mut(&id) {
        v.state = "send_bulk";
    }
    let head = if psync {
        format!("+FULLRESYNC {} {}\r\n", snap.replid, off)
    } else {
        String::new()
    };
    let started = Instant::now();
    let ok = if eof {
        let ok = stream_eof(&shard, slot, generation, snap, head, share.as_ref()).await;
        if let Some(share) = &share {
            // A failed producer fails its members: they sync again.
            if ok {
                share.finished.store(true, Ordering::SeqCst);
            } else {
                share.fail();
            }
            retire(&shard.shared.repl, share);
        }
        ok
    } else {
        // `$<len>` needs the whole file first; meanwhile a `\n` a second
        // tells the replica we are alive (it skips them before the `$`).
        let mut alive = push_out(&shard, slot, generation, head.as_bytes());
        let mut bytes = Vec::new();
        let mut tick = Instant::now();
        let mut snap = snap;
        while alive && let Some(b) = snap.next(&shard).await {
            bytes.extend_from_slice(&b);
            if tick.elapsed().as_secs() >= 1 {
                tick = Instant::now();
                alive = push_out(&shard, slot, generation, b"\n");
            }
        }
        snap.end(&shard).await;
        alive
            && push_out(
                &shard,
                slot,
                generation,
                format!("${}\r\n", bytes.len()).as_bytes(),
            )
            && push_out(&shard, slot, generation, &bytes)
    };
    if !ok {
        log::warn!("Replica link closed during the full sync; snapshot abandoned");
        return;
    }
    log::info!(
        "Synchronization with replica succeeded (snapshot at offset {off} sent in {} ms)",
        started.elapsed().as_millis()
    );
    if rdb_only {
        log::info!("RDB transfer completed, rdb only replica should be disconnected asap");
        close_link(&shard, slot, generation);
        shard.wake.notify();
        return;
    }
    set_link(&shard, slot, generation, |l| {
        l.state = if eof {
            LinkState::WaitAck
        } else {
            LinkState::Online
        }
    });
    if !eof && let Some(v) = lock(&shard.shared.repl.replicas).get_mut(&id) {
        v.state = "online";
    }
    shard.wake.notify();
}

/// The EOF-marker framing: `$EOF:<40 random chars>\r\n`, the RDB, the mark.
async fn stream_eof(
    shard: &Rc<Shard>,
    slot: u32,
    generation: u32,
    mut snap: Snapshot,
    head: String,
    share: Option<&std::sync::Arc<SharedSync>>,
) -> bool {
    let mark = crate::repl::random_id();
    let mut ok = push_out(shard, slot, generation, head.as_bytes())
        && push_out(
            shard,
            slot,
            generation,
            format!("$EOF:{mark}\r\n").as_bytes(),
        );
    while ok {
        // Backpressure: let the socket take what is queued first.
        if !room(shard, slot, generation).await {
            ok = false;
            break;
        }
        match snap.next(shard).await {
            Some(b) => {
                if let Some(share) = share {
                    lock(&share.chunks).push(b.clone());
                }
                ok = push_out(shard, slot, generation, &b)
            }
            None => break,
        }
    }
    snap.end(shard).await;
    ok && push_out(shard, slot, generation, mark.as_bytes())
}

/// Waits until the link can take more without queueing past
/// [`PUMP_AHEAD`] x 4; false when the link is gone.
async fn room(shard: &Shard, slot: u32, generation: u32) -> bool {
    loop {
        match pending(shard, slot, generation) {
            None => return false,
            Some(n) if n > 4 * PUMP_AHEAD => {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await
            }
            Some(_) => return true,
        }
    }
}

/// A member's side of a [`SharedSync`]: waits for the producer's cut, then
/// sends `+FULLRESYNC`, the EOF-framed snapshot chunk by chunk as the
/// producer makes them, and the mark. False if the link or the producer
/// failed.
async fn joined(
    shard: &Rc<Shard>,
    slot: u32,
    generation: u32,
    id: u64,
    share: &SharedSync,
    psync: bool,
) -> bool {
    let (replid, off) = loop {
        if let Some(cut) = lock(&share.cut).clone() {
            break cut;
        }
        if share.failed.load(Ordering::SeqCst) || pending(shard, slot, generation).is_none() {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    };
    // The stream from the cut on must stay in the backlog for us.
    shard.shared.repl.hold[shard.id].fetch_min(off, Ordering::SeqCst);
    set_link(shard, slot, generation, |l| l.pos = off);
    if let Some(v) = lock(&shard.shared.repl.replicas).get_mut(&id) {
        v.state = "send_bulk";
    }
    let mark = crate::repl::random_id();
    let head = if psync {
        format!("+FULLRESYNC {replid} {off}\r\n$EOF:{mark}\r\n")
    } else {
        format!("$EOF:{mark}\r\n")
    };
    if !push_out(shard, slot, generation, head.as_bytes()) {
        return false;
    }
    let mut i = 0;
    loop {
        if !room(shard, slot, generation).await {
            return false;
        }
        // Read before the chunk: `finished` is set after the last one is
        // in, so finished and no chunk `i` means there is none to come.
        let finished = share.finished.load(Ordering::SeqCst);
        match share.chunk(i) {
            Some(b) => {
                if !push_out(shard, slot, generation, &b) {
                    return false;
                }
                i += 1;
            }
            None if finished => break,
            None if share.failed.load(Ordering::SeqCst) => return false,
            None => glommio::timer::sleep(Duration::from_millis(1)).await,
        }
    }
    push_out(shard, slot, generation, mark.as_bytes())
}

/// Ends a link once its output is out: a sync that cannot go on (the
/// replica reconnects), or an `rdb-only` transfer that is complete.
fn close_link(shard: &Shard, slot: u32, generation: u32) {
    let mut net = shard.net.borrow_mut();
    if let Some(c) = net.get(slot, generation) {
        c.close_after_flush = true;
        net.mark(slot);
    }
}

/// A REPLCONF ACK arrived on a link.
pub fn on_ack(shard: &Shard, conn: &mut Conn, off: u64) {
    let repl = &shard.shared.repl;
    let now = crate::shard::now_ms();
    if let Some(l) = conn.repl.as_mut()
        && l.state == LinkState::WaitAck
    {
        l.state = LinkState::Online;
    }
    if let Some(v) = lock(&repl.replicas).get_mut(&conn.client.id) {
        v.ack_off = off;
        v.ack_ms = now;
        v.lag_ms = repl.lag_ms(off, now);
        if conn
            .repl
            .as_ref()
            .is_some_and(|l| l.state == LinkState::Online)
        {
            v.state = "online";
        }
    }
    if repl.wake_waits(shard.id) {
        shard.acks.ring();
    }
}

/// Copies stream entries into an online link's output (see module doc).
/// Returns false when the link must close (its range left the backlog).
pub fn pump(shard: &Shard, conn: &mut Conn) -> bool {
    let repl = &shard.shared.repl;
    let Some(l) = conn.repl.as_mut() else {
        return true;
    };
    if l.state != LinkState::Online {
        return true;
    }
    // What this turn wrote so far goes out with this pump.
    crate::repl::master::seal(shard);
    let mut scratch: Vec<BEntry> = Vec::new();
    loop {
        let queued = conn.wbuf.len() + conn.sending.as_ref().map_or(0, |(b, o)| b.len() - o);
        if queued >= PUMP_AHEAD {
            return true;
        }
        let target = repl.seq.offset();
        if l.pos >= target {
            // Caught up: ask to be woken, then look once more (an append
            // between the check and the flag would otherwise be missed).
            repl.want_wake[shard.id].store(true, Ordering::SeqCst);
            if repl.seq.offset() <= l.pos {
                return true;
            }
        }
        if l.pos < repl.first_offset() {
            log::warn!(
                "Replica {} fell out of the backlog (needs offset {}, backlog starts at {}); disconnecting it. Raise repl-backlog-size or client-output-buffer-limit replica.",
                conn.addr,
                l.pos + 1,
                repl.first_offset() + 1
            );
            return false;
        }
        scratch.clear();
        for b in &repl.backlogs {
            lock(b).read_from(l.pos, PUMP_AHEAD as u64, &mut scratch);
        }
        scratch.sort_unstable_by_key(|e| e.off);
        let before = l.pos;
        // Straight into the output buffer: the stream bytes are copied once.
        let start = conn.wbuf.len();
        for e in &scratch {
            if e.off > l.pos {
                break; // a gap: allocated, not yet appended
            }
            if e.off < l.pos {
                // Resuming inside an entry (see `Backlog::read_from`).
                let mut whole = BytesMut::new();
                e.write_to(&mut whole);
                conn.wbuf
                    .extend_from_slice(&whole[(l.pos - e.off) as usize..]);
            } else {
                e.write_to(&mut conn.wbuf);
            }
            l.pos = e.off + e.len();
            if conn.wbuf.len() - start >= PUMP_AHEAD {
                break;
            }
        }
        if l.pos == before {
            repl.want_wake[shard.id].store(true, Ordering::SeqCst);
            return true;
        }
    }
}

/// Per-tick checks of this shard's links; returns the slots to close.
pub fn cron(shard: &Shard, net: &mut ConnTable) {
    let repl = &shard.shared.repl;
    let (timeout, mut limit, backlog) = {
        let c = shard.shared.config();
        (
            c.get_int("repl-timeout").unwrap_or(60).max(1) as u64,
            c.client_output_buffer_limits()[1],
            c.get_int("repl-backlog-size").unwrap_or(1 << 20).max(0) as u64,
        )
    };
    // As Redis 7.0's checkClientOutputBufferLimits: a replica's hard limit
    // below repl-backlog-size is taken as repl-backlog-size. A replica
    // resuming by PSYNC may be owed the whole backlog at once, and
    // closing it for that would only make it reconnect and resume again,
    // a loop; what it is owed is in the backlog anyway.
    if limit.hard_bytes != 0 && limit.hard_bytes < backlog {
        limit.hard_bytes = backlog;
    }
    let master = repl.seq.offset();
    let mut keep = u64::MAX;
    let mut close = Vec::new();
    net.replicas.retain(|&s| {
        net.slots[s as usize]
            .as_ref()
            .is_some_and(|c| c.repl.is_some() && !c.closing)
    });
    for &s in &net.replicas {
        let Some(c) = net.slots[s as usize].as_mut() else {
            continue;
        };
        let Some(l) = c.repl.as_mut() else { continue };
        // As Redis: the ACK timeout applies to online replicas; a transfer
        // in progress is bounded by the socket (TCP_USER_TIMEOUT, errors).
        if l.state == LinkState::Online && c.last_active.elapsed().as_secs() >= timeout {
            log::warn!(
                "Disconnecting timedout replica {} (no ACK or data for {timeout} s: repl-timeout)",
                c.addr
            );
            close.push(s);
            continue;
        }
        if l.state == LinkState::Bulk {
            keep = keep.min(l.pos);
            continue;
        }
        let queued = c.wbuf.len() as u64
            + c.sending.as_ref().map_or(0, |(b, o)| (b.len() - o) as u64)
            + master.saturating_sub(l.pos);
        if let Some(which) = super::obuf_exceeded(queued, limit, &mut l.soft_since) {
            log::warn!(
                "Client id={} addr={} (replica) scheduled to be closed ASAP for overcoming of output buffer limits: {} bytes pending, {} limit {} bytes. Tune 'client-output-buffer-limit replica <hard> <soft> <seconds>' (or repl-backlog-size) if this replica is expected to lag this far.",
                c.client.id,
                c.addr,
                queued,
                which,
                if which == "hard" {
                    limit.hard_bytes
                } else {
                    limit.soft_bytes
                },
            );
            close.push(s);
            continue;
        }
        keep = keep.min(l.pos);
    }
    // What a link closed here no longer holds is let go at once (see
    // `on_sync`): it must not be offered to that replica reconnecting.
    repl.hold[shard.id].store(keep, Ordering::SeqCst);
    for s in close {
        net.begin_close(s);
    }
}

/// A link's connection is going away: forget the replica.
pub fn on_close(shard: &Shard, conn: &Conn) {
    if conn.repl.is_some() {
        lock(&shard.shared.repl.replicas).remove(&conn.client.id);
    }
}

/// Words for how a replica's socket ended, naming the liveness check that
/// fired when the kernel reports a timeout.
pub fn socket_end(result: i32) -> String {
    match -result {
        0 => "closed by the replica".into(),
        libc::ETIMEDOUT => "timed out (TCP keepalive or TCP_USER_TIMEOUT fired)".into(),
        e => std::io::Error::from_raw_os_error(e).to_string(),
    }
}
