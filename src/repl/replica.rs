//! Replication, replica side: REPLICAOF, the handshake a stock Redis 7.0
//! replica sends, snapshot load, and the applied stream.
//!
//! One link task (on the shard where REPLICAOF ran) owns the socket:
//! - **Handshake** (`syncWithMaster`): PING, AUTH, REPLCONF listening-port
//!   [ip-address], REPLCONF capa eof capa psync2, then PSYNC with our
//!   replication id and offset+1 (a demoted master offers its own history),
//!   or `PSYNC ? -1` with none. -NOMASTERLINK/-LOADING: retry later; any
//!   other error: fall back to SYNC.
//! - **Full sync**: the RDB (`$len` or `$EOF:<mark>` framing) is parsed as it
//!   arrives by the resumable loader; keys go to their owning shards'
//!   *staging* keyspaces in batches, so the old dataset keeps serving reads
//!   until the new one is complete, then every shard swaps under one
//!   transaction. A bad snapshot (CRC, encoding, a stream/module key)
//!   aborts the sync with the reason logged and the old data kept.
//! - **Stream**: commands are run through the ordinary pipeline path
//!   (`dispatch::run_batch`) by a pseudo-client flagged as the master, so
//!   they route to their owners with per-shard order kept and MULTI/EXEC
//!   applied atomically; replies are dropped, except that `REPLCONF GETACK`
//!   is answered. The processed offset counts every applied byte (SELECT,
//!   PING, newlines). The bytes are also appended verbatim to the backlog
//!   at the master's offsets, so sub-replicas see identical offsets and ids
//!   and a promotion can serve partial resyncs.
//! - **Liveness**: `REPLCONF ACK <offset>` every second, a `\n` to the
//!   master at most once a second while loading, repl-timeout on master
//!   silence, reconnect with backoff.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::lock;
use crate::cmd::ClientState;
use crate::rdb::{Event, Loader};
use crate::resp::{Arg, ParseLimits, Resume, parse_command_resumable};
use crate::shard::dispatch::Tx;
use crate::shard::keyspace::Entry;
use crate::shard::{Op, Shard, shard_of};

/// Entries per load message to a shard.
const LOAD_BATCH: usize = 1024;

/// What INFO shows of the link to our master.
#[derive(Clone, Debug, Default)]
pub struct MasterInfo {
    pub host: String,
    pub port: u16,
    /// The link's peer and local `ip:port`, for CLIENT KILL ADDR / LADDR
    /// (the master client is not in the connection table).
    pub addr: String,
    pub laddr: String,
    /// The link's socket while it is open (cleared under this lock before
    /// it closes): CLIENT KILL shuts it down at once, as Redis frees its
    /// master client, so the master sees the link drop even if this
    /// server stops right after (DEBUG SLEEP inside the same MULTI).
    pub fd: Option<std::os::fd::RawFd>,
    pub link_up: bool,
    /// Connected, and PSYNC not answered yet (ROLE's "handshake").
    pub handshake: bool,
    /// Unix ms of the last byte from the master.
    pub last_io_ms: u64,
    pub sync_in_progress: bool,
    /// Unix ms the link went down (0 = never up yet).
    pub down_since_ms: u64,
    pub sync_bytes: u64,
    pub sync_keys: u64,
    /// Bytes of the stream read (processed or not).
    pub read_offset: u64,
    /// The link has been up at least once since REPLICAOF.
    pub ever_up: bool,
}

fn info_mut(shard: &Shard, f: impl FnOnce(&mut MasterInfo)) {
    if let Some(m) = lock(&shard.shared.repl.master).as_mut() {
        f(m);
    }
}

/// REPLICAOF host port: follow a master (replacing any previous link).
pub fn replicaof(shard: &Rc<Shard>, host: String, port: u16) {
    let repl = &shard.shared.repl;
    let epoch = repl.epoch.fetch_add(1, Ordering::SeqCst) + 1;
    repl.is_replica.store(true, Ordering::SeqCst);
    // Read-only from now on: nothing local to propagate.
    repl.active.store(false, Ordering::SeqCst);
    // Blocked clients (WAITs, whose replicas are about to be dropped, and
    // pops) end now: every shard's `acks` bell rings.
    repl.ring_all(shard.id);
    shard.acks.ring();
    *lock(&repl.master) = Some(MasterInfo {
        host: host.clone(),
        port,
        down_since_ms: crate::shard::now_ms(),
        ..Default::default()
    });
    record_role(shard, epoch, Some((host.clone(), port)));
    log::info!("Connecting to MASTER {host}:{port}");
    disconnect_replicas(shard, None);
    let me = shard.clone();
    glommio::spawn_local(async move {
        // Not inline: the caller may hold the failover state
        // (`repl::failover`), which a link that fails at once takes.
        futures_lite::future::yield_now().await;
        link(me, epoch).await
    })
    .detach();
}

/// Writes the new role into the config (`replicaof`), as Redis keeps it, so
/// CONFIG GET and CONFIG REWRITE follow REPLICAOF. Done by a task of its
/// own: the caller may hold the failover state, and INFO takes that under
/// the config's read lock; a role changed again meanwhile (a newer epoch)
/// writes its own.
fn record_role(shard: &Rc<Shard>, epoch: u64, to: Option<(String, u16)>) {
    let me = shard.clone();
    glommio::spawn_local(async move {
        futures_lite::future::yield_now().await;
        let mut c = me.shared.config.write().unwrap_or_else(|e| e.into_inner());
        if me.shared.repl.epoch.load(Ordering::SeqCst) == epoch {
            c.set_replicaof(to);
        }
    })
    .detach();
}

/// REPLICAOF NO ONE: become a master, keeping the history under a new id
/// (Redis's `shiftReplicationId`): replid2 = the old id, valid up to
/// offset + 1, so our former siblings resume by PSYNC. Our replicas are
/// dropped to learn the new id, but for client `keep` (the old master
/// whose PSYNC FAILOVER promotes us, `repl::failover`).
pub fn promote(shard: &Rc<Shard>, keep: Option<u64>) {
    let repl = &shard.shared.repl;
    if !repl.is_replica.swap(false, Ordering::SeqCst) {
        return;
    }
    let epoch = repl.epoch.fetch_add(1, Ordering::SeqCst) + 1;
    *lock(&repl.master) = None;
    record_role(shard, epoch, None);
    let off = repl.seq.offset();
    {
        let mut ids = lock(&repl.ids);
        ids.replid2 = std::mem::replace(&mut ids.replid, super::random_id());
        ids.second_offset = off as i64 + 1;
        log::info!(
            "Setting secondary replication ID to {}, valid up to offset: {}. New replication ID is {}",
            ids.replid2,
            off + 1,
            ids.replid
        );
    }
    repl.seq.force_select();
    if repl.backlog_on.load(Ordering::SeqCst) {
        repl.active.store(true, Ordering::SeqCst);
        // A master propagates expiries as DELs: track them from now on.
        let me = shard.clone();
        glommio::spawn_local(async move {
            // Not inline: a PSYNC FAILOVER promotes us from inside the
            // network driver, with the connection table borrowed.
            futures_lite::future::yield_now().await;
            crate::shard::dispatch::broadcast(&me, None, |_| Op::TrackExpired).await;
        })
        .detach();
    }
    disconnect_replicas(shard, keep);
    log::info!("MASTER MODE enabled");
}

/// Drops our sub-replicas (but client `keep`) so they resync against our
/// new history.
fn disconnect_replicas(shard: &Rc<Shard>, keep: Option<u64>) {
    let me = shard.clone();
    glommio::spawn_local(async move {
        // After the caller's turn (see `promote`).
        futures_lite::future::yield_now().await;
        let filter = crate::net::KillFilter {
            typ: Some("replica".into()),
            skip_id: keep,
            ..Default::default()
        };
        crate::shard::dispatch::broadcast(&me, None, |_| Op::ClientKill {
            filter: filter.clone(),
        })
        .await;
    })
    .detach();
}

/// Reconnects until REPLICAOF changes (the epoch moves on).
async fn link(shard: Rc<Shard>, epoch: u64) {
    let repl = &shard.shared.repl;
    let mut backoff = Duration::from_millis(100);
    while repl.epoch.load(Ordering::SeqCst) == epoch
        && !shard.shared.shutdown.load(Ordering::Relaxed)
    {
        let started = Instant::now();
        if let Err(e) = session(&shard, epoch).await
            && repl.epoch.load(Ordering::SeqCst) == epoch
        {
            let e = if repl.kill_master.swap(false, Ordering::SeqCst) {
                "link to master killed by CLIENT KILL".to_string()
            } else {
                e
            };
            log::warn!("MASTER <-> REPLICA sync: {e}");
            // A failover that could not reach its target ends here.
            super::failover::on_link_error(&shard, &e);
        }
        if repl.epoch.load(Ordering::SeqCst) != epoch {
            // REPLICAOF moved on: the INFO state belongs to the new link.
            return;
        }
        let now = crate::shard::now_ms();
        info_mut(&shard, |m| {
            if m.link_up {
                m.down_since_ms = now;
            }
            m.link_up = false;
            m.sync_in_progress = false;
            m.handshake = false;
        });
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The socket to the master with a read buffer.
struct Wire {
    s: TcpStream,
    buf: BytesMut,
    /// Where the bytes read are counted (`Repl::net_input_bytes`).
    shared: std::sync::Arc<crate::shard::Shared>,
    /// Until the master answers PSYNC: a timeout then is Redis's
    /// "Timeout connecting to the MASTER...".
    handshake: bool,
}

impl Drop for Wire {
    /// Forgets the socket in [`MasterInfo::fd`] before it closes, so a
    /// later CLIENT KILL cannot shut down a descriptor reused meanwhile.
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.s.as_raw_fd();
        if let Some(m) = lock(&self.shared.repl.master).as_mut()
            && m.fd == Some(fd)
        {
            m.fd = None;
        }
    }
}

/// CLIENT KILL matched the link to our master: the link ends at once.
/// Its socket is shut down here (the master sees the close now, whatever
/// this server does next) and the link task, woken by the EOF, reports it.
pub fn kill_link(repl: &super::Repl, m: &MasterInfo) {
    repl.kill_master.store(true, Ordering::SeqCst);
    if let Some(fd) = m.fd {
        // SAFETY: `fd` is the link's open socket: `Wire::drop` clears it
        // under the same lock the caller holds, before the socket closes.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

impl Wire {
    async fn fill(&mut self) -> Result<(), String> {
        match self.try_fill().await? {
            true => Ok(()),
            false if self.handshake => Err("Timeout connecting to the MASTER...".into()),
            false => Err("timeout reading from master (repl-timeout)".into()),
        }
    }

    /// Reads what is available; Ok(false) when the read timeout passed.
    async fn try_fill(&mut self) -> Result<bool, String> {
        let mut tmp = vec![0u8; 64 << 10];
        match self.s.read(&mut tmp).await {
            Ok(0) => Err("connection closed by master".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                let counter = &self.shared.repl.net_input_bytes;
                counter.fetch_add(n as u64, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => Err(format!(
                "connection with master lost: {e} (TCP keepalive or TCP_USER_TIMEOUT fired)"
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("error reading from master: {e}")),
        }
    }

    async fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut b = BytesMut::new();
        super::encode_cmd(&mut b, args);
        self.s
            .write_all(&b)
            .await
            .map_err(|e| format!("error writing to master: {e}"))
    }

    /// One reply line (without CRLF); empty lines are keepalives and are
    /// skipped.
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                let l = self.buf.split_to(i + 1);
                let l = String::from_utf8_lossy(&l[..i])
                    .trim_end_matches('\r')
                    .to_string();
                if l.is_empty() {
                    continue;
                }
                return Ok(l);
            }
            if self.buf.len() > 64 << 10 {
                return Err("protocol error: reply line too long".into());
            }
            self.fill().await?;
        }
    }
}

async fn session(shard: &Rc<Shard>, epoch: u64) -> Result<(), String> {
    let repl = &shard.shared.repl;
    let (host, port) = match lock(&repl.master).as_ref() {
        Some(m) => (m.host.clone(), m.port),
        None => return Ok(()),
    };
    let (timeout, keepalive, auth, user, my_port, announce_ip, user_timeout) = {
        let c = shard.shared.config();
        let ann_port = c.get_int("replica-announce-port").unwrap_or(0);
        (
            Duration::from_secs(c.get_int("repl-timeout").unwrap_or(60).max(1) as u64),
            c.tcp_keepalive(),
            c.get_str("masterauth").filter(|s| !s.is_empty()),
            c.get_str("masteruser").filter(|s| !s.is_empty()),
            if ann_port > 0 {
                ann_port as u16
            } else {
                c.port()
            },
            c.get_str("replica-announce-ip").filter(|s| !s.is_empty()),
            c.get_int("repl-tcp-user-timeout").unwrap_or(0),
        )
    };
    let addr = format!("{host}:{port}");
    let s = TcpStream::connect_timeout(addr.as_str(), timeout)
        .await
        .map_err(|e| format!("error connecting to master {addr}: {e}"))?;
    {
        use std::os::fd::AsRawFd;
        let (peer, local, _) = crate::net::sockopt::addrs(s.as_raw_fd());
        info_mut(shard, |m| {
            m.addr = peer;
            m.laddr = local;
            m.fd = Some(s.as_raw_fd());
        });
        crate::net::sockopt::tune_client(s.as_raw_fd(), keepalive);
        crate::net::sockopt::repl_user_timeout(
            s.as_raw_fd(),
            user_timeout,
            timeout.as_secs(),
            keepalive,
        );
    }
    // Handshake replies are bounded by repl-timeout, as in Redis.
    let _ = s.set_read_timeout(Some(timeout));
    let mut w = Wire {
        s,
        buf: BytesMut::new(),
        shared: shard.shared.clone(),
        handshake: true,
    };
    info_mut(shard, |m| m.handshake = true);
    log::info!("MASTER <-> REPLICA sync started");
    w.send(&[b"PING"]).await?;
    let pong = w.line().await?;
    if pong.starts_with('-')
        && !pong.starts_with("-NOAUTH")
        && !pong.starts_with("-NOPERM")
        && !pong.starts_with("-ERR operation not permitted")
    {
        return Err(format!("error reply to PING from master: '{pong}'"));
    }
    if let Some(pass) = &auth {
        match &user {
            Some(u) => w.send(&[b"AUTH", u.as_bytes(), pass.as_bytes()]).await?,
            None => w.send(&[b"AUTH", pass.as_bytes()]).await?,
        }
        let r = w.line().await?;
        if r.starts_with('-') {
            return Err(format!("unable to AUTH to MASTER: {r}"));
        }
    }
    let port_s = my_port.to_string();
    w.send(&[b"REPLCONF", b"listening-port", port_s.as_bytes()])
        .await?;
    let _ = w.line().await?;
    if let Some(ip) = &announce_ip {
        w.send(&[b"REPLCONF", b"ip-address", ip.as_bytes()]).await?;
        let _ = w.line().await?;
    }
    w.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    let _ = w.line().await?;

    // PSYNC with our history (a replica's, or a demoted master's own).
    let (replid, off) = (repl.ids().replid, repl.seq.offset());
    let history = repl.backlog_on.load(Ordering::SeqCst);
    let off_s = (off + 1).to_string();
    // A demoted master hands over in the same request (`repl::failover`).
    let failover = history && super::failover::psync_wants_failover(shard);
    if failover {
        log::info!(
            "Trying a partial resynchronization (request {replid}:{off_s}), asking the target to take over (FAILOVER)."
        );
        w.send(&[b"PSYNC", replid.as_bytes(), off_s.as_bytes(), b"FAILOVER"])
            .await?;
    } else if history {
        log::info!("Trying a partial resynchronization (request {replid}:{off_s}).");
        w.send(&[b"PSYNC", replid.as_bytes(), off_s.as_bytes()])
            .await?;
    } else {
        log::info!("Partial resynchronization not possible (no cached master)");
        w.send(&[b"PSYNC", b"?", b"-1"]).await?;
    }
    let reply = w.line().await?;
    w.handshake = false;
    info_mut(shard, |m| m.handshake = false);
    let _ = w.s.set_read_timeout(Some(timeout));
    if repl.epoch.load(Ordering::SeqCst) != epoch {
        // REPLICAOF (or a FAILOVER ABORT) moved on while we waited: the
        // reply must not touch the ids the new role has.
        return Err("the replication role changed during the handshake".into());
    }
    let accepted = reply.starts_with("+FULLRESYNC") || reply.starts_with("+CONTINUE");
    if !super::failover::on_psync_reply(shard, accepted) {
        return Err(format!("the failover target refused our PSYNC: {reply}"));
    }
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC") {
        let mut it = rest.split_whitespace();
        let id = it.next().unwrap_or("").to_string();
        let moff: u64 = it.next().and_then(|o| o.parse().ok()).unwrap_or(0);
        log::info!("Full resync from master: {id}:{moff}");
        full_load(shard, &mut w, epoch).await?;
        repl.adopt_history(id, moff);
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new = rest.trim();
        if !new.is_empty() && new != replid {
            let mut ids = lock(&repl.ids);
            ids.replid2 = std::mem::replace(&mut ids.replid, new.to_string());
            ids.second_offset = off as i64 + 1;
            log::info!("Master replication ID changed to {new}");
            drop(ids);
            // Our replicas must learn the new id too (Redis drops them).
            disconnect_replicas(shard, None);
        }
        log::info!("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.");
    } else if reply.starts_with("-NOMASTERLINK") || reply.starts_with("-LOADING") {
        return Err(format!(
            "master is currently unable to PSYNC but should be in the future: {reply}"
        ));
    } else if reply.starts_with('-') {
        log::info!("Unexpected reply to PSYNC from master: {reply}; retrying with SYNC");
        w.send(&[b"SYNC"]).await?;
        full_load(shard, &mut w, epoch).await?;
        repl.adopt_history(super::random_id(), 0);
    } else {
        return Err(format!("unexpected reply to PSYNC: '{reply}'"));
    }
    info_mut(shard, |m| {
        m.link_up = true;
        m.ever_up = true;
        m.sync_in_progress = false;
        m.last_io_ms = crate::shard::now_ms();
    });
    log::info!("MASTER <-> REPLICA sync: Finished with success");
    // A master that sent an EOF-framed snapshot waits for this first ACK.
    send_ack(&mut w, repl.seq.offset()).await?;
    stream(shard, &mut w, epoch).await
}

/// Reads the snapshot into staging keyspaces and swaps it in.
async fn full_load(shard: &Rc<Shard>, w: &mut Wire, epoch: u64) -> Result<(), String> {
    let repl = &shard.shared.repl;
    let n = shard.nshards();
    info_mut(shard, |m| {
        m.sync_in_progress = true;
        m.sync_bytes = 0;
        m.sync_keys = 0;
    });
    // `\n` lines are the master's keepalives while it prepares.
    let head = w.line().await?;
    let (mark, len) = if let Some(m) = head.strip_prefix("$EOF:") {
        if m.len() != 40 {
            return Err(format!("bad EOF mark from master: '{head}'"));
        }
        (Some(m.as_bytes().to_vec()), 0u64)
    } else if let Some(l) = head.strip_prefix('$') {
        (
            None,
            l.parse()
                .map_err(|_| format!("bad bulk length from master: '{head}'"))?,
        )
    } else if head.starts_with('-') {
        return Err(format!("master aborted the sync: {head}"));
    } else {
        return Err(format!(
            "bad protocol from master (expected the snapshot): '{head}'"
        ));
    };
    log::info!(
        "MASTER <-> REPLICA sync: receiving {}",
        if mark.is_some() {
            "streamed RDB (EOF marker)".to_string()
        } else {
            format!("{len} bytes of RDB")
        }
    );
    crate::shard::dispatch::broadcast(shard, None, |_| Op::LoadBegin).await;
    let res = load_rdb(shard, w, mark, len, n, epoch).await;
    if let Err(e) = res {
        crate::shard::dispatch::broadcast(shard, None, |_| Op::LoadAbort).await;
        return Err(format!("{e}; keeping the previous dataset and retrying"));
    }
    // Swap every shard at once, so no reader sees half of each dataset.
    let all: Vec<usize> = (0..n).collect();
    let tx = Tx::lock(shard, &all).await;
    for s in 0..n {
        tx.op(shard, s, Op::LoadCommit).await;
    }
    tx.unlock(shard).await;
    let keys = lock(&repl.master).as_ref().map_or(0, |m| m.sync_keys);
    log::info!("MASTER <-> REPLICA sync: Loading DB in memory done: {keys} keys");
    Ok(())
}

async fn load_rdb(
    shard: &Rc<Shard>,
    w: &mut Wire,
    mark: Option<Vec<u8>>,
    len: u64,
    n: usize,
    epoch: u64,
) -> Result<(), String> {
    let repl = &shard.shared.repl;
    let mut loader = Loader::new();
    let mut db = 0u16;
    let mut batches: Vec<Vec<(u16, Bytes, Entry)>> = (0..n).map(|_| Vec::new()).collect();
    let mut consumed = 0u64;
    let mut keys = 0u64;
    let mut newline_at = Instant::now();
    loop {
        if repl.epoch.load(Ordering::SeqCst) != epoch {
            return Err("REPLICAOF changed during the sync".into());
        }
        // With `$len` framing never parse past the payload.
        let avail = if mark.is_none() {
            (len - consumed).min(w.buf.len() as u64) as usize
        } else {
            w.buf.len()
        };
        match loader.next(&w.buf[..avail]) {
            Err(e) => return Err(format!("bad snapshot from master: {e}")),
            Ok(Some((ev, used))) => {
                w.buf.advance(used);
                consumed += used as u64;
                match ev {
                    Event::SelectDb(d) => {
                        if d as usize >= shard.databases {
                            return Err(format!(
                                "snapshot selects db {d}, beyond databases {}",
                                shard.databases
                            ));
                        }
                        db = d as u16;
                    }
                    Event::Entry {
                        key,
                        value,
                        expire_at,
                    } => {
                        let s = shard_of(&key, n);
                        batches[s].push((db, key, Entry { value, expire_at }));
                        keys += 1;
                        if batches[s].len() >= LOAD_BATCH {
                            let entries = std::mem::take(&mut batches[s]);
                            crate::shard::dispatch::op_on(shard, None, s, Op::Load { entries })
                                .await;
                        }
                    }
                    Event::Aux(k, v) if k.as_ref() == b"repl-stream-db" => {
                        let db = std::str::from_utf8(&v)
                            .ok()
                            .and_then(|v| v.parse::<i64>().ok())
                            .unwrap_or(0);
                        repl.stream_db.store(db, Ordering::SeqCst);
                    }
                    Event::End { checksum_ok } => {
                        if !checksum_ok {
                            return Err("snapshot CRC64 mismatch".into());
                        }
                        break;
                    }
                    _ => {}
                }
                continue;
            }
            Ok(None) => {}
        }
        // Everything the `$len` promised is here and the RDB is still not
        // complete: it was cut short.
        if mark.is_none() && (w.buf.len() as u64 >= len - consumed || consumed >= len) {
            return Err("snapshot ended before its end marker".into());
        }
        info_mut(shard, |m| {
            m.sync_bytes = consumed;
            m.sync_keys = keys;
            m.last_io_ms = crate::shard::now_ms();
        });
        // A loading replica tells its master it is alive, once a second.
        if newline_at.elapsed() >= Duration::from_secs(1) {
            newline_at = Instant::now();
            let _ = w.s.write_all(b"\n").await;
        }
        w.fill().await?;
    }
    for (s, entries) in batches.into_iter().enumerate() {
        if !entries.is_empty() {
            crate::shard::dispatch::op_on(shard, None, s, Op::Load { entries }).await;
        }
    }
    match mark {
        Some(m) => {
            while w.buf.len() < 40 {
                w.fill().await?;
            }
            if w.buf[..40] != m[..] {
                return Err("snapshot EOF marker mismatch".into());
            }
            w.buf.advance(40);
        }
        None => {
            if consumed != len {
                return Err(format!(
                    "snapshot is {len} bytes but the RDB ended at {consumed}"
                ));
            }
        }
    }
    info_mut(shard, |m| {
        m.sync_bytes = consumed;
        m.sync_keys = keys;
    });
    Ok(())
}

/// Applies the master's stream until the link fails or REPLICAOF changes.
async fn stream(shard: &Rc<Shard>, w: &mut Wire, epoch: u64) -> Result<(), String> {
    let repl = &shard.shared.repl;
    let mut client = ClientState::new(shard.next_id());
    client.repl.is_master = true;
    let db = repl.stream_db.load(Ordering::SeqCst);
    if db >= 0 && (db as usize) < shard.databases {
        client.db = db as u16;
    }
    client.name = Some(Bytes::from_static(b"master"));
    // MONITOR shows the master's commands under its address, as Redis.
    if let Ok(a) = w.s.peer_addr() {
        client.peer = Bytes::from(a.to_string());
    }
    let closed = Rc::new(crate::shard::blocking::CloseFlag::default());
    let limits = ParseLimits {
        max_bulk: shard.proto_max_bulk.get(),
    };
    let mut ack_at = Instant::now();
    // A command still arriving keeps its parse (its arguments so far and
    // where to go on) for the offset it starts at, so that each read does
    // not parse it again from its start: a 46 MB command arriving in 64 KiB
    // reads is otherwise parsed ~700 times (see `parse_command_resumable`).
    let (mut part_args, mut part_resume, mut part_at) = (Vec::new(), Resume::default(), 0usize);
    let mut args_scratch = Vec::new();
    // A batch's points outside MULTI: (commands, bytes) up to each one.
    let mut safe_points: Vec<(usize, usize)> = Vec::new();
    loop {
        if repl.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(());
        }
        if repl.kill_master.swap(false, Ordering::SeqCst) {
            return Err("link to master killed by CLIENT KILL".into());
        }
        let mut cmds: Vec<Vec<Bytes>> = Vec::new();
        // The GETACK's length when one ends this batch.
        let mut getack: Option<usize> = None;
        let mut used_total = 0usize;
        // A batch never ends inside a MULTI block: a transaction's bytes
        // are consumed and counted only with its EXEC (as Redis advances a
        // replica's offset only outside MULTI), so a link lost mid-block
        // resumes from the MULTI instead of losing the queued commands.
        // The batch ends at its last safe point (`safe_points`).
        let mut in_multi = false;
        safe_points.clear();
        // Parse what is buffered, up to a GETACK (answered after what
        // precedes it is applied).
        loop {
            let resuming = part_resume.active() && part_at == used_total;
            let mut fresh = Resume::default();
            let (ranges, resume) = if resuming {
                (&mut part_args, &mut part_resume)
            } else {
                (&mut args_scratch, &mut fresh)
            };
            match parse_command_resumable(&w.buf[used_total..], limits, ranges, resume) {
                Ok(None) => {
                    if !resuming && fresh.active() {
                        part_args = std::mem::take(&mut args_scratch);
                        part_resume = fresh;
                        part_at = used_total;
                    }
                    break;
                }
                Err(e) => return Err(format!("protocol error in the master's stream: {}", e.0)),
                Ok(Some(used)) => {
                    let frame = &w.buf[used_total..used_total + used];
                    if frame[0] != b'*' && !ranges.is_empty() {
                        // Redis refuses inline commands from its master.
                        return Err("protocol error: inline command in the master's stream".into());
                    }
                    let args: Vec<Bytes> = ranges
                        .drain(..)
                        .map(|a| match a {
                            Arg::Range(r) => Bytes::copy_from_slice(&frame[r]),
                            Arg::Owned(v) => Bytes::from(v),
                        })
                        .collect();
                    if ranges.capacity() > 1024 {
                        *ranges = Vec::new();
                    }
                    used_total += used;
                    if !args.is_empty() {
                        let name = &args[0];
                        if !in_multi
                            && args.len() >= 2
                            && name.eq_ignore_ascii_case(b"replconf")
                            && args[1].eq_ignore_ascii_case(b"getack")
                        {
                            getack = Some(used);
                            safe_points.push((cmds.len(), used_total));
                            break;
                        }
                        if name.eq_ignore_ascii_case(b"multi") {
                            in_multi = true;
                        } else if name.eq_ignore_ascii_case(b"exec")
                            || name.eq_ignore_ascii_case(b"discard")
                        {
                            in_multi = false;
                        }
                        if let crate::cmd::Lookup::Error(e) = crate::cmd::lookup(&args) {
                            // The data would silently diverge: say so loudly.
                            log::error!(
                                "The master sent a command this replica cannot apply ({e}); the dataset will differ from the master's"
                            );
                        }
                        cmds.push(args);
                    }
                    if !in_multi {
                        safe_points.push((cmds.len(), used_total));
                        if cmds.len() >= 1024 {
                            break;
                        }
                    }
                }
            }
        }
        let (safe_cmds, mut used_total) = safe_points.last().copied().unwrap_or((0, 0));
        cmds.truncate(safe_cmds);
        // CLIENT PAUSE holds the master's writes too, as Redis holds its
        // master client: what precedes the first held command is applied
        // (up to the last point outside MULTI), the rest stays buffered,
        // unapplied and uncounted, while the link goes on reading.
        let mut held = false;
        if used_total > 0
            && shard.shared.pause.maybe()
            && let Some(first) =
                crate::cmd::pause::first_held(&shard.shared.pause, crate::shard::now_ms(), &cmds)
        {
            match safe_points.iter().rev().find(|(n, _)| *n <= first) {
                Some(&(n, bytes)) if n > 0 => {
                    cmds.truncate(n);
                    used_total = bytes;
                    getack = None;
                }
                _ => held = true,
            }
        }
        if used_total > 0 && !held {
            // A snapshot cut must not fall between applying a batch and
            // counting its bytes (a sub-replica would get both the effect
            // and the commands): wait while one is being taken.
            while repl.cut_pending.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            repl.applying.store(true, Ordering::SeqCst);
            if repl.cut_pending.load(Ordering::SeqCst) {
                repl.applying.store(false, Ordering::SeqCst);
                continue;
            }
            let applied = used_total - getack.unwrap_or(0);
            let bytes = w.buf.split_to(used_total).freeze();
            // A kept parse's command moved down with the buffer's front.
            match part_at.checked_sub(used_total) {
                Some(at) => part_at = at,
                None => part_resume = Resume::default(),
            }
            if repl.epoch.load(Ordering::SeqCst) != epoch {
                repl.applying.store(false, Ordering::SeqCst);
                return Ok(());
            }
            if !cmds.is_empty() {
                let names: Vec<Bytes> = cmds.iter().map(|c| c[0].clone()).collect();
                let (out, c) = crate::shard::dispatch::run_batch(
                    shard.clone(),
                    client,
                    cmds,
                    closed.clone(),
                    None,
                )
                .await;
                client = c;
                check_master_replies(shard, &out, &names);
            }
            repl.stream_db.store(client.db as i64, Ordering::SeqCst);
            // The applied bytes, verbatim, at the master's offsets; a GETACK
            // is answered with the offset before it, as Redis does.
            super::master::append_nodb(shard, bytes.slice(..applied));
            if getack.is_some() {
                send_ack(w, repl.seq.offset()).await?;
                super::master::append_nodb(shard, bytes.slice(applied..));
            }
            repl.applying.store(false, Ordering::SeqCst);
            // Read: what was applied and what is buffered behind it.
            info_mut(shard, |m| {
                m.read_offset = repl.seq.offset() + w.buf.len() as u64;
                m.last_io_ms = crate::shard::now_ms();
            });
            continue;
        }
        if ack_at.elapsed() >= Duration::from_secs(1) {
            ack_at = Instant::now();
            send_ack(w, repl.seq.offset()).await?;
        }
        let last = lock(&repl.master).as_ref().map_or(0, |m| m.last_io_ms);
        let timeout = shard
            .shared
            .config()
            .get_int("repl-timeout")
            .unwrap_or(60)
            .max(1) as u64;
        // Wake for the next ACK or exactly when repl-timeout would expire;
        // while paused, soon enough to see the pause end.
        let left = (timeout * 1000).saturating_sub(crate::shard::now_ms().saturating_sub(last));
        let wake = if held { 5 } else { 1000 };
        let _ =
            w.s.set_read_timeout(Some(Duration::from_millis(left.clamp(5, wake))));
        if w.try_fill().await? {
            info_mut(shard, |m| {
                m.last_io_ms = crate::shard::now_ms();
                if held {
                    m.read_offset = repl.seq.offset() + w.buf.len() as u64;
                }
            });
        } else {
            if crate::shard::now_ms().saturating_sub(last) >= timeout * 1000 {
                return Err(format!(
                    "MASTER timeout: no data nor PING received for {timeout} s (repl-timeout)"
                ));
            }
        }
    }
}

/// The replies to a batch from the master, one per command, are dropped;
/// an error among them means this replica's dataset now differs from its
/// master's. As Redis 7.0's `afterErrorReply` for the master client: count
/// it (INFO `unexpected_error_replies`), log it as CRITICAL, and with
/// `propagation-error-behavior panic` or `panic-on-replicas` on a
/// read-only replica, crash rather than go on serving diverged data.
fn check_master_replies(shard: &Shard, out: &[u8], names: &[Bytes]) {
    // Almost every batch answers +OK, :n, +QUEUED...: no '-' anywhere.
    if !out.contains(&b'-') {
        return;
    }
    let mut at = 0;
    for name in names {
        let Some((len, err)) = reply_frame(&out[at..]) else {
            return;
        };
        at += len;
        let Some(err) = err else { continue };
        crate::resp::UNEXPECTED_ERROR_REPLIES.fetch_add(1, Ordering::Relaxed);
        let (err, name) = (String::from_utf8_lossy(err), String::from_utf8_lossy(name));
        log::error!(
            "== CRITICAL == This replica is sending an error to its master: '{err}' after processing the command '{name}'"
        );
        let (behavior, read_only) = {
            let c = shard.shared.config();
            (
                c.get_str("propagation-error-behavior").unwrap_or_default(),
                c.get_bool("replica-read-only").unwrap_or(true),
            )
        };
        if read_only && behavior != "ignore" {
            log::error!(
                "This replica panicked sending an error to its master after processing the command '{name}' (propagation-error-behavior {behavior})"
            );
            std::process::abort();
        }
    }
}

/// The length of the RESP2 reply at the start of `b` and the first error
/// message in it (itself, or an element of an array such as EXEC's);
/// `None` if it is incomplete or not RESP.
fn reply_frame(b: &[u8]) -> Option<(usize, Option<&[u8]>)> {
    let eol = b.windows(2).position(|w| w == b"\r\n")?;
    let line = &b[1..eol];
    let head = eol + 2;
    let num = || std::str::from_utf8(line).ok()?.parse::<i64>().ok();
    match b.first()? {
        b'-' => Some((head, Some(line))),
        b'+' | b':' => Some((head, None)),
        b'$' => match num()? {
            n if n < 0 => Some((head, None)),
            n => {
                let end = head.checked_add(n as usize)?.checked_add(2)?;
                (end <= b.len()).then_some((end, None))
            }
        },
        b'*' => {
            let mut at = head;
            let mut first = None;
            for _ in 0..num()?.max(0) {
                let (len, err) = reply_frame(&b[at..])?;
                at += len;
                first = first.or(err);
            }
            Some((at, first))
        }
        _ => None,
    }
}

async fn send_ack(w: &mut Wire, off: u64) -> Result<(), String> {
    let o = off.to_string();
    w.send(&[b"REPLCONF", b"ACK", o.as_bytes()]).await
}

#[cfg(test)]
mod tests {
    use super::reply_frame;

    #[test]
    fn reply_frames_and_their_errors() {
        assert_eq!(reply_frame(b"+OK\r\n:1\r\n"), Some((5, None)));
        assert_eq!(reply_frame(b"-ERR x\r\n"), Some((8, Some(&b"ERR x"[..]))));
        assert_eq!(
            reply_frame(b"$3\r\n-a-\r\n"),
            Some((9, None)),
            "a bulk's bytes are data"
        );
        assert_eq!(reply_frame(b"$-1\r\n"), Some((5, None)));
        // EXEC's array: its first failed command.
        let exec = b"*3\r\n+OK\r\n-WRONGTYPE w\r\n*1\r\n-ERR e\r\n";
        assert_eq!(
            reply_frame(exec),
            Some((exec.len(), Some(&b"WRONGTYPE w"[..])))
        );
        assert_eq!(reply_frame(b"*-1\r\n"), Some((5, None)));
        assert_eq!(reply_frame(b"$5\r\nab"), None, "incomplete");
        assert_eq!(reply_frame(b"*2\r\n+OK\r\n"), None, "incomplete");
        assert_eq!(reply_frame(b"?x\r\n"), None);
    }
}
