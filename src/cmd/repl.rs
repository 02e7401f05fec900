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
}

macro_rules! row {
    ($name:expr, $arity:expr, $flags:expr, $kind:expr) => {
        CmdSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: 0,
            last_key: 0,
            step: 0,
            numkeys: 0,
            kind: $kind,
        }
    };
}

pub static COMMANDS: &[CmdSpec] = &[
    row!("sync", 1, &["admin", "noscript"], Kind::Conn(sync)),
    row!("psync", -3, &["admin", "noscript"], Kind::Conn(psync)),
    row!(
        "replconf",
        -1,
        &["admin", "noscript", "loading", "stale"],
        Kind::Conn(replconf)
    ),
    row!("wait", 3, &["noscript"], Kind::Global),
    row!(
        "role",
        1,
        &["noscript", "loading", "stale", "fast"],
        Kind::Global
    ),
    row!(
        "replicaof",
        3,
        &["admin", "noscript", "stale"],
        Kind::Global
    ),
    row!("slaveof", 3, &["admin", "noscript", "stale"], Kind::Global),
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

/// REPLICAOF host port | NO ONE.
pub fn replicaof(shard: &std::rc::Rc<Shard>, r: &mut Reply<'_>, a: &[Bytes]) {
    if eq_ic(&a[1], "no") && eq_ic(&a[2], "one") {
        crate::repl::replica::promote(shard);
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

fn sync(c: &mut ConnCtx, _a: &[Bytes]) {
    if c.client.repl.is_replica {
        return;
    }
    c.client.repl.sync = Some(None);
}

fn psync(c: &mut ConnCtx, a: &[Bytes]) {
    if c.client.repl.is_replica {
        return;
    }
    let Some(off) = parse_i64(&a[2]) else {
        return c.r.error("ERR value is not an integer or out of range");
    };
    c.client.repl.sync = Some(Some((a[1].clone(), off)));
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
        } else if eq_ic(opt, "rdb-only") || eq_ic(opt, "rdb-filter-only") {
            // Accepted and ignored: every snapshot is a full one.
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

/// WAIT numreplicas timeout: asks every replica for an ACK now and waits
/// until enough of them acknowledged the stream as it was when WAIT came
/// (the client's writes are all before it), or the timeout (0 = forever).
pub async fn wait(shard: &std::rc::Rc<Shard>, r: &mut Reply<'_>, a: &[Bytes]) {
    let (Some(n), Some(t)) = (parse_i64(&a[1]), parse_i64(&a[2])) else {
        return r.error("ERR value is not an integer or out of range");
    };
    if t < 0 {
        return r.error("ERR timeout is negative");
    }
    let repl = &shard.shared.repl;
    let target = repl.seq.offset();
    let acked = |repl: &crate::repl::Repl| {
        crate::repl::lock(&repl.replicas)
            .values()
            .filter(|v| v.ack_off >= target)
            .count() as i64
    };
    if acked(repl) < n && !repl.replicas_empty() {
        crate::repl::master::emit_getack(shard);
    }
    let deadline =
        (t > 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(t as u64));
    loop {
        let got = acked(repl);
        if got >= n || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return r.int(got);
        }
        if shard.shared.shutdown.load(Ordering::Relaxed) {
            return r.int(got);
        }
        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
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
