//! The replication commands a master serves: SYNC, PSYNC, REPLCONF, WAIT
//! and ROLE. SYNC/PSYNC only record the request on the connection; the
//! network driver turns the connection into a replica link
//! (`net::replica`), since from then on it owns what the socket carries.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdSpec, ConnCtx, Kind, SYNTAX, eq_ic, parse_i64};
use crate::resp::Reply;
use crate::shard::Shard;

/// A replica's REPLCONF settings and pending requests.
#[derive(Clone, Debug, Default)]
pub struct ReplClient {
    pub listening_port: u16,
    pub ip_address: Option<String>,
    pub capa_eof: bool,
    pub capa_psync2: bool,
    /// PSYNC (replid, offset) or SYNC (None) waiting for the driver.
    pub sync: Option<Option<(Bytes, i64)>>,
    /// The last REPLCONF ACK offset not yet taken by the driver.
    pub ack: Option<u64>,
    /// This connection is a replica link.
    pub is_replica: bool,
    /// This pseudo-client applies our master's stream (writes allowed on
    /// a read-only replica).
    pub is_master: bool,
    /// `REPLCONF rdb-only 1`: the snapshot and no stream; the link is
    /// closed once the snapshot is sent (`redis-cli --rdb`).
    pub rdb_only: bool,
    /// `REPLCONF rdb-filter-only <filters>`: the snapshot leaves the keys
    /// out. Redis's only filter keeps functions, which tether does not
    /// have, so a filtered snapshot is an RDB with no keys; the stream
    /// follows it as usual (`redis-cli --functions-rdb`, and stream
    /// consumers that want the commands only).
    pub rdb_no_data: bool,
    /// `PSYNC <our replid> <offset> FAILOVER`: our master hands its role
    /// over to us (`repl::failover`); we promote ourselves before answering.
    pub failover: bool,
}

/// Redis's reply to a SYNC/PSYNC that asks for a filtered snapshot without
/// `capa eof`: filtered snapshots are only sent EOF-framed.
pub const FILTER_NEEDS_EOF: &str = "ERR Filtered replica requires EOF capability";

pub static COMMANDS: [CmdSpec; 8] = [
    keyless!(
        "sync",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        Kind::Conn(sync)
    ),
    keyless!(
        "psync",
        -3,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        Kind::Conn(psync)
    ),
    keyless!(
        "replconf",
        -1,
        &["admin", "noscript", "loading", "stale", "allow_busy"],
        Kind::Conn(replconf)
    ),
    keyless!("wait", 3, &["noscript"], Kind::Global),
    keyless!(
        "role",
        1,
        &["noscript", "loading", "stale", "fast"],
        Kind::Global
    ),
    keyless!(
        "replicaof",
        3,
        &["admin", "noscript", "stale", "no_async_loading"],
        Kind::Global
    ),
    keyless!(
        "slaveof",
        3,
        &["admin", "noscript", "stale", "no_async_loading"],
        Kind::Global
    ),
    keyless!(
        "failover",
        -1,
        &["admin", "noscript", "stale"],
        Kind::Global
    ),
];

pub const READONLY: &str = "READONLY You can't write against a read only replica.";

/// Whether a client's write must be refused: we are a read-only replica
/// and the client is not our master's stream.
pub fn readonly_refused(shard: &Shard, client: &super::ClientState, spec: &CmdSpec) -> bool {
    spec.is_write()
        && !client.repl.is_master
        && shard.shared.repl.is_replica.load(Ordering::Relaxed)
        && shard.read_only.get()
}

/// The error a replica answers instead of running a client's command, if
/// any: READONLY for a write on a read-only replica, else MASTERDOWN while
/// its link is down and it may not serve stale data. Every path that runs
/// a client's commands asks this one question.
pub fn refusal(
    shard: &Shard,
    client: &super::ClientState,
    spec: &CmdSpec,
    args: &[Bytes],
) -> Option<&'static str> {
    if readonly_refused(shard, client, spec) {
        Some(READONLY)
    } else if stale_refused(shard, client, spec, args) {
        Some(MASTERDOWN)
    } else {
        None
    }
}

pub const MASTERDOWN: &str =
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";

/// Whether a client's command must be refused with [`MASTERDOWN`]: we are
/// a replica whose link to its master is not up (connecting, syncing or
/// lost), `replica-serve-stale-data` is no, and the command is not one
/// Redis 7.0 flags `stale` ([`allowed_stale`]). The guard against serving
/// stale data while the master is out of reach: reads, PING and DBSIZE
/// answer MASTERDOWN; INFO, ROLE, REPLICAOF, CONFIG and the like work.
pub fn stale_refused(
    shard: &Shard,
    client: &super::ClientState,
    spec: &CmdSpec,
    args: &[Bytes],
) -> bool {
    shard.shared.repl.is_replica.load(Ordering::Relaxed)
        && !shard.serve_stale.get()
        && !client.repl.is_master
        && !allowed_stale(spec, args)
        && !master_link_up(shard)
}

/// The replica's link to its master is up (synced and streaming).
pub fn master_link_up(shard: &Shard) -> bool {
    crate::repl::lock(&shard.shared.repl.master)
        .as_ref()
        .is_some_and(|m| m.link_up)
}

/// Commands Redis 7.0 flags `stale` (runs while a replica's link is down
/// with `replica-serve-stale-data no`): the spec's own flag (COMMAND shows
/// Redis's), and for containers, whose subcommands Redis flags one by one,
/// by subcommand.
pub fn allowed_stale(spec: &CmdSpec, args: &[Bytes]) -> bool {
    let sub = |names: &[&str]| {
        args.get(1)
            .is_some_and(|s| names.iter().any(|n| eq_ic(s, n)))
    };
    match spec.name {
        // Every subcommand of these.
        "acl" | "client" | "cluster" | "command" | "config" | "latency" | "pubsub" | "slowlog" => {
            true
        }
        "script" => sub(&["load", "help"]),
        "function" | "memory" | "module" | "object" | "xgroup" | "xinfo" => sub(&["help"]),
        _ => spec.flags.contains(&"stale"),
    }
}

/// REPLICAOF host port | NO ONE.
pub fn replicaof(shard: &std::rc::Rc<Shard>, r: &mut Reply<'_>, a: &[Bytes]) {
    if crate::repl::failover::state(shard) != crate::repl::failover::State::None {
        return r.error("ERR REPLICAOF not allowed while failing over.");
    }
    if eq_ic(&a[1], "no") && eq_ic(&a[2], "one") {
        crate::repl::replica::promote(shard, None);
        return r.ok();
    }
    let Some(port) = parse_i64(&a[2]) else {
        return r.error("ERR value is not an integer or out of range");
    };
    if !(0..=65535).contains(&port) {
        return r.error("ERR Invalid master port");
    }
    let host = String::from_utf8_lossy(&a[1]).into_owned();
    let same = crate::repl::lock(&shard.shared.repl.master)
        .as_ref()
        .is_some_and(|m| m.host.eq_ignore_ascii_case(&host) && m.port == port as u16);
    if same {
        return r.simple("OK Already connected to specified master");
    }
    crate::repl::replica::replicaof(shard, host, port as u16);
    r.ok()
}

/// Whether SYNC/PSYNC from `c` goes no further, as Redis's `syncCommand`
/// refuses it: it is a replica link already; we fail over
/// (`repl::failover`) or, as a replica, have no live link to our master
/// (both -NOMASTERLINK: the replica retries); or it asked for a filtered
/// snapshot without `capa eof` (answered [`FILTER_NEEDS_EOF`]). A PSYNC
/// FAILOVER that will promote us (`failover`) is past the second check.
fn sync_refused(c: &mut ConnCtx, failover: bool) -> bool {
    if c.client.repl.is_replica {
        return true;
    }
    if !failover {
        if crate::repl::failover::state(c.shard) != crate::repl::failover::State::None {
            c.r.error("NOMASTERLINK Can't SYNC while failing over");
            return true;
        }
        if c.shard.shared.repl.is_replica.load(Ordering::SeqCst) && !master_link_up(c.shard) {
            c.r.error("NOMASTERLINK Can't SYNC while not connected with my master");
            return true;
        }
    }
    if c.client.repl.rdb_no_data && !c.client.repl.capa_eof {
        c.r.error(FILTER_NEEDS_EOF);
        return true;
    }
    false
}

fn sync(c: &mut ConnCtx, _a: &[Bytes]) {
    if sync_refused(c, false) {
        return;
    }
    c.client.repl.sync = Some(None);
}

/// PSYNC replid offset [FAILOVER]. With FAILOVER (from our own master,
/// `repl::failover`) the id must be ours: we promote ourselves when the
/// link is set up (`net::replica::on_sync`), then serve the PSYNC from our
/// history as any other.
fn psync(c: &mut ConnCtx, a: &[Bytes]) {
    let failover = a.len() > 3 && eq_ic(&a[3], "failover");
    if failover && a[1].as_ref() != c.shard.shared.repl.ids().replid.as_bytes() {
        return c.r.error("ERR PSYNC FAILOVER replid must match my replid.");
    }
    if sync_refused(c, failover) {
        return;
    }
    let Some(off) = parse_i64(&a[2]) else {
        return c.r.error("ERR value is not an integer or out of range");
    };
    c.client.repl.failover = failover;
    c.client.repl.sync = Some(Some((Bytes::copy_from_slice(&a[1]), off)));
}

fn replconf(c: &mut ConnCtx, a: &[Bytes]) {
    if a.len().is_multiple_of(2) {
        return c.r.error(SYNTAX);
    }
    let mut i = 1;
    while i < a.len() {
        let (opt, val) = (&a[i], &a[i + 1]);
        if eq_ic(opt, "listening-port") {
            match parse_i64(val) {
                Some(p) if (0..=65535).contains(&p) => c.client.repl.listening_port = p as u16,
                _ => return c.r.error("ERR value is not an integer or out of range"),
            }
        } else if eq_ic(opt, "ip-address") {
            c.client.repl.ip_address = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "capa") {
            if eq_ic(val, "eof") {
                c.client.repl.capa_eof = true;
            } else if eq_ic(val, "psync2") {
                c.client.repl.capa_psync2 = true;
            }
        } else if eq_ic(opt, "ack") {
            // Only a replica acks, and an ACK gets no reply.
            if c.client.repl.is_replica
                && let Some(off) = parse_i64(val)
                && off >= 0
            {
                c.client.repl.ack = Some(off as u64);
            }
            return;
        } else if eq_ic(opt, "getack") {
            // A master asking us: we are never a replica (yet).
            return;
        } else if eq_ic(opt, "rdb-only") {
            match parse_i64(val) {
                Some(v @ (0 | 1)) => c.client.repl.rdb_only = v == 1,
                Some(_) => {
                    return c
                        .r
                        .error("ERR value is out of range, value must between 0 and 1");
                }
                None => return c.r.error("ERR value is not an integer or out of range"),
            }
        } else if eq_ic(opt, "rdb-filter-only") {
            // As Redis: any filter list leaves the keys out, even one that
            // is then refused; "functions" is the only filter known.
            let Some(filters) = crate::config::split_args(val) else {
                return c.r.error("ERR Missing rdb-filter-only values");
            };
            c.client.repl.rdb_no_data = true;
            if let Some(f) = filters.iter().find(|f| !eq_ic(f, "functions")) {
                return c.r.error(&format!(
                    "ERR Unsupported rdb-filter-only option: {}",
                    String::from_utf8_lossy(f)
                ));
            }
        } else {
            return c.r.error(&format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            ));
        }
        i += 2;
    }
    c.r.ok()
}

/// What a blocked WAIT answers when its server turns into a replica
/// (Redis's `disconnectAllBlockedClients`); the client is then closed.
pub const UNBLOCKED: &str =
    "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";

pub const WAIT_ON_REPLICA: &str = "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.";

/// WAIT numreplicas timeout (`waitCommand`): how many online replicas
/// acknowledged the stream up to this call. The target is the stream's
/// offset when WAIT runs rather than the client's last write (Redis's
/// `c->woff`): every earlier write of the client is before it, so an
/// answer is never too optimistic, only possibly stricter.
///
/// When too few replicas acked, one `REPLCONF GETACK *` goes into the
/// stream unless one already follows the target (the WAITs of many
/// clients share it, as Redis sends one per event loop), and the call
/// sleeps on its shard's `acks` bell. Every incoming ACK rings the bells
/// of the shards with blocked WAITs ([`crate::repl::Repl::wake_waits`]),
/// so WAIT answers one replica round trip after the call, as Redis does,
/// and until then costs nothing. It also ends at the timeout (0 = none),
/// when its client closes, or at shutdown. Inside MULTI it never blocks.
/// Returns true when it ended because the server became a replica: it
/// answered -UNBLOCKED and, as in Redis, the client is to be closed.
pub async fn wait(
    shard: &std::rc::Rc<Shard>,
    r: &mut Reply<'_>,
    a: &[Bytes],
    in_multi: bool,
    closed: Option<&crate::shard::blocking::CloseFlag>,
) -> bool {
    let repl = &shard.shared.repl;
    if repl.is_replica.load(Ordering::Relaxed) {
        r.error(WAIT_ON_REPLICA);
        return false;
    }
    let Some(n) = parse_i64(&a[1]) else {
        r.error("ERR value is not an integer or out of range");
        return false;
    };
    let Some(t) = parse_i64(&a[2]) else {
        r.error("ERR timeout is not an integer or out of range");
        return false;
    };
    if t < 0 {
        r.error("ERR timeout is negative");
        return false;
    }
    let target = repl.seq.offset();
    let got = repl.count_acked(target);
    if got >= n || in_multi {
        r.int(got);
        return false;
    }
    // Counted before the acks are read again (see `wake_waits`).
    let waiters = &repl.ack_waiters[shard.id];
    waiters.fetch_add(1, Ordering::SeqCst);
    let _waiting = Waiting(waiters);
    let _blocked = crate::shard::blocking::BlockedCount::new(&shard.stats.blocked_clients);
    let _unblockable = closed.map(|c| c.blocking());
    std::sync::atomic::fence(Ordering::SeqCst);
    // A GETACK at or after the target that is still ahead of the stream's
    // end (offsets restart when the role changes) is answered for us too.
    let asked = repl.getack_at.load(Ordering::SeqCst);
    if !(target..=repl.seq.offset()).contains(&asked) && !repl.replicas_empty() {
        crate::repl::master::emit_getack(shard);
    }
    let timer = std::time::Duration::from_millis(t as u64);
    let deadline = (t > 0)
        .then(|| std::time::Instant::now().checked_add(timer))
        .flatten();
    loop {
        let rung = shard.acks.generation();
        if repl.is_replica.load(Ordering::SeqCst) {
            r.error(UNBLOCKED);
            return true;
        }
        let got = repl.count_acked(target);
        // CLIENT UNBLOCK: answered as a timeout (the count so far), or
        // with Redis's error.
        if let Some(error) = closed.and_then(|c| c.take_unblock()) {
            if error {
                r.error(crate::shard::blocking::UNBLOCKED_BY_CLIENT);
            } else {
                r.int(got);
            }
            return false;
        }
        let expired = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if got >= n
            || expired
            || closed.is_some_and(|c| c.is_set())
            || shard.shared.shutdown.load(Ordering::Relaxed)
        {
            r.int(got);
            return false;
        }
        let timeout = async {
            match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    glommio::timer::sleep(left).await
                }
                None => std::future::pending().await,
            }
        };
        let gone = async {
            match closed {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        use futures_lite::future::or;
        or(shard.acks.changed(rung), or(timeout, gone)).await;
    }
}

/// A blocked WAIT's place in its shard's `ack_waiters`, given up however
/// the call ends.
struct Waiting<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// ROLE on a master: ["master", offset, [[ip, port, acked offset], ...]];
/// on a replica: ["slave", host, port, state, offset].
pub fn role(shard: &Shard, r: &mut Reply<'_>) {
    let repl = &shard.shared.repl;
    if let Some(m) = crate::repl::lock(&repl.master).clone() {
        r.array(5);
        r.bulk(b"slave");
        r.bulk(m.host.as_bytes());
        r.int(m.port as i64);
        // Redis's state names; the offset is -1 until the link is up.
        r.bulk(if m.link_up {
            b"connected".as_slice()
        } else if m.sync_in_progress {
            b"sync"
        } else if m.handshake {
            b"handshake"
        } else {
            b"connect"
        });
        r.int(if m.link_up {
            repl.seq.offset() as i64
        } else {
            -1
        });
        return;
    }
    // As Redis, only replicas past their full sync are listed.
    let views: Vec<_> = crate::repl::lock(&repl.replicas)
        .values()
        .filter(|v| v.state == "online")
        .cloned()
        .collect();
    r.array(3);
    r.bulk(b"master");
    r.int(repl.seq.offset() as i64);
    r.array(views.len());
    for v in views {
        r.array(3);
        r.bulk(v.ip.as_bytes());
        r.bulk(v.port.to_string().as_bytes());
        r.bulk(v.ack_off.to_string().as_bytes());
    }
}
