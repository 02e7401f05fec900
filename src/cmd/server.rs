//! Server and connection commands: PING, ECHO, SELECT, HELLO, CLIENT,
//! CONFIG, INFO, COMMAND, DBSIZE, FLUSH*, SWAPDB, KEYS, SCAN, RANDOMKEY,
//! DEBUG, SHUTDOWN, MEMORY, TIME. Global ones run as async coordinators
//! over every shard (see `shard::dispatch`).

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::{
    ClientState, CmdSpec, ConnCtx, DB_RANGE, Exec, Kind, NOT_INT, SYNTAX, all, eq_ic, parse_db,
    parse_i64, sanitize, unknown_subcommand,
};
use crate::net::KillFilter;
use crate::resp::{Proto, Reply};
use crate::shard::dispatch::{self, Tx};
use crate::shard::{Op, OpReply, Shard};

const VERSION: &str = "7.0.15";

/// Flags of the connection-state commands anyone may send at any time
/// (HELLO, RESET, QUIT), as Redis 7.0 lists them.
const SESSION: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

pub static COMMANDS: [CmdSpec; 31] = [
    CmdSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Keyless(ping),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "echo",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Keyless(echo),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Keyless(time),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "lastsave",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Keyless(lastsave),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "memory",
        arity: -2,
        flags: &["readonly"],
        first_key: 2,
        last_key: 2,
        step: 1,
        numkeys: 0,
        kind: Kind::Keyed(memory, None),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Conn(select),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "auth",
        arity: -2,
        flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Conn(auth),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "monitor",
        arity: 1,
        flags: &["admin", "noscript", "loading", "stale"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Conn(super::monitor::monitor),
        stat: crate::cmd::StatSlot::new(),
    },
    CmdSpec {
        name: "quit",
        arity: -1,
        flags: SESSION,
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Conn(quit),
        stat: crate::cmd::StatSlot::new(),
    },
    global!("dbsize", 1, &["readonly", "fast"]),
    global!("flushdb", -1, &["write"]),
    global!("flushall", -1, &["write"]),
    global!("swapdb", 3, &["write", "fast"]),
    global!("keys", 2, &["readonly"]),
    global!("scan", -2, &["readonly"]),
    global!("randomkey", 1, &["readonly"]),
    global!("info", -1, &["loading", "stale"]),
    global!("client", -2, &[]),
    global!("config", -2, &[]),
    global!("command", -1, &["loading", "stale"]),
    global!("debug", -2, &["admin", "noscript", "loading", "stale"]),
    global!(
        "shutdown",
        -1,
        &[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "allow_busy"
        ]
    ),
    global!(
        "save",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"]
    ),
    global!("bgsave", -1, &["admin", "noscript", "no_async_loading"]),
    global!("hello", -1, SESSION),
    global!("reset", 1, SESSION),
    global!("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"]),
    global!(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"]
    ),
    // Keys 1..: as COMMAND shows them; WATCH itself runs as a global command.
    CmdSpec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 1,
        last_key: -1,
        step: 1,
        numkeys: 0,
        kind: Kind::Global,
        stat: crate::cmd::StatSlot::new(),
    },
    global!(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"]
    ),
    CmdSpec {
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Conn(super::multi::multi),
        stat: crate::cmd::StatSlot::new(),
    },
];

fn ping(ex: &mut Exec, a: &[Bytes]) {
    match a.len() {
        1 => ex.r.simple("PONG"),
        2 => ex.r.bulk(&a[1]),
        _ => {
            ex.r.error("ERR wrong number of arguments for 'ping' command")
        }
    }
}

fn echo(ex: &mut Exec, a: &[Bytes]) {
    ex.r.bulk(&a[1])
}

fn time(ex: &mut Exec, _: &[Bytes]) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ex.r.array(2);
    ex.r.bulk_int(d.as_secs() as i64);
    ex.r.bulk_int(d.subsec_micros() as i64);
}

fn lastsave(ex: &mut Exec, _: &[Bytes]) {
    ex.r.int(ex.shard.shared.lastsave.load(Ordering::Relaxed) as i64)
}

/// MEMORY USAGE key [SAMPLES n]: an estimate of key + value + entry
/// overhead in bytes (the Rust structures, not Redis's allocator sizes).
fn memory(ex: &mut Exec, a: &[Bytes]) {
    let sub = &a[1];
    if eq_ic(sub, "usage") && a.len() >= 3 {
        if a.len() == 5 && eq_ic(&a[3], "samples") {
            if parse_i64(&a[4]).is_none() {
                return ex.r.error(NOT_INT);
            }
        } else if a.len() != 3 {
            return ex.r.error(SYNTAX);
        }
        let key_len = a[2].len();
        match ex.lookup_write(&a[2]) {
            None => ex.r.null(),
            Some(e) => {
                let n = key_len
                    + e.value.mem_usage()
                    + std::mem::size_of::<crate::shard::keyspace::Entry>()
                    + 48;
                ex.r.int(n as i64)
            }
        }
    } else if eq_ic(sub, "help") && a.len() == 2 {
        ex.r.array(3);
        ex.r.simple("MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
        ex.r.simple("USAGE <key> [SAMPLES <count>]");
        ex.r.simple("    Return memory in bytes used by <key> and its value.");
    } else {
        ex.r.error(&unknown_subcommand(sub, "memory"))
    }
}

fn select(c: &mut ConnCtx, a: &[Bytes]) {
    match parse_db(c.shard, &a[1]) {
        Ok(db) => {
            c.client.db = db;
            c.r.ok()
        }
        Err(e) => c.r.error(e),
    }
}

/// AUTH as Redis 7.0 answers it with its default configuration, the only
/// one tether has: the `default` user takes no password (`nopass`), so
/// `AUTH default <anything>` succeeds, the one-argument form is refused
/// with Redis's hint, and any other user does not exist. (tether refuses
/// to start with `requirepass` set rather than run unprotected.)
fn auth(c: &mut ConnCtx, a: &[Bytes]) {
    match a.len() {
        2 => c.r.error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        3 if a[1].as_ref() == b"default" => c.r.ok(),
        3 => c
            .r
            .error("WRONGPASS invalid username-password pair or user is disabled."),
        _ => c.r.error(SYNTAX),
    }
}

fn quit(c: &mut ConnCtx, _: &[Bytes]) {
    c.client.close_after_reply = true;
    c.r.ok()
}

/// Runs a connection-state command against `client`.
pub fn exec_conn(
    shard: &Shard,
    client: &mut ClientState,
    spec: &CmdSpec,
    args: &[Bytes],
    out: &mut BytesMut,
) {
    let Kind::Conn(f) = spec.kind else {
        unreachable!("{} is not a connection command", spec.name)
    };
    let proto = client.proto;
    let call = super::stats::begin(spec);
    let at = out.len();
    let mut c = ConnCtx {
        shard,
        client,
        r: Reply::new(out, proto),
    };
    f(&mut c, args);
    call.done(spec, args, &out[at..]);
}

/// Runs a global command (every shard, or server-wide state).
/// `tx` is set inside EXEC, where every shard is already held; `closed`
/// lets a command that blocks (WAIT) end when its client goes away.
pub async fn exec_global(
    shard: &Rc<Shard>,
    client: &mut ClientState,
    spec: &CmdSpec,
    a: &[Bytes],
    out: &mut BytesMut,
    tx: Option<&Tx>,
    closed: Option<&crate::shard::blocking::CloseFlag>,
) {
    let call = super::stats::begin(spec);
    let at = out.len();
    global(shard, client, spec, a, out, tx, closed).await;
    call.done(spec, a, &out[at..]);
}

async fn global(
    shard: &Rc<Shard>,
    client: &mut ClientState,
    spec: &CmdSpec,
    a: &[Bytes],
    out: &mut BytesMut,
    tx: Option<&Tx>,
    closed: Option<&crate::shard::blocking::CloseFlag>,
) {
    let mut r = Reply::new(out, client.proto);
    let db = client.db;
    match spec.name {
        "dbsize" => {
            let n = dispatch::sum_ints(shard, tx, |_| Op::DbSize { db }).await;
            r.int(n)
        }
        "flushdb" | "flushall" => {
            if a.len() > 2 || (a.len() == 2 && !(eq_ic(&a[1], "async") || eq_ic(&a[1], "sync"))) {
                return r.error(SYNTAX);
            }
            let which = if spec.name == "flushdb" {
                Some(db)
            } else {
                None
            };
            if shard.shared.repl.refuse_writes() {
                return r.error(crate::repl::master::NOREPLICAS);
            }
            let prop = crate::repl::master::PEntry::new(db, a.to_vec());
            let flush = || Op::Flush { db: which };
            // The changes the empty snapshot covers: all up to the flush.
            let covered = || shard.shared.persist.dirty_total();
            let covered = dispatch::on_all_locked_then(shard, tx, flush, Some(prop), covered).await;
            if which.is_none() {
                crate::persist::save_after_flushall(shard, covered).await;
            }
            r.ok()
        }
        "swapdb" => {
            let (Some(x), Some(y)) = (parse_i64(&a[1]), parse_i64(&a[2])) else {
                return r.error(if parse_i64(&a[1]).is_none() {
                    "ERR invalid first DB index"
                } else {
                    "ERR invalid second DB index"
                });
            };
            let n = shard.ks.borrow().dbs.len() as i64;
            if x < 0 || y < 0 || x >= n || y >= n {
                return r.error(DB_RANGE);
            }
            if shard.shared.repl.refuse_writes() {
                return r.error(crate::repl::master::NOREPLICAS);
            }
            let prop = crate::repl::master::PEntry::new(db, a.to_vec());
            dispatch::on_all_locked_prop(
                shard,
                tx,
                || Op::SwapDb {
                    a: x as u16,
                    b: y as u16,
                },
                Some(prop),
            )
            .await;
            r.ok()
        }
        "keys" => {
            let pattern = a[1].clone();
            let mut keys = Vec::new();
            for rep in dispatch::broadcast(shard, tx, |_| Op::Keys {
                db,
                pattern: pattern.clone(),
            })
            .await
            {
                if let OpReply::Keys(k) = rep {
                    keys.extend(k);
                }
            }
            r.array(keys.len());
            for k in keys {
                r.bulk(&k);
            }
        }
        "scan" => scan(shard, tx, db, a, &mut r).await,
        "randomkey" => {
            let n = shard.nshards();
            let start = fastrand::usize(..n);
            for i in 0..n {
                if let OpReply::Keys(k) =
                    dispatch::op_on(shard, tx, (start + i) % n, Op::RandomKey { db }).await
                    && let Some(k) = k.first()
                {
                    return r.bulk(k);
                }
            }
            r.null()
        }
        "info" => {
            let text = info(shard, tx, a).await;
            r.text(&text)
        }
        "client" => client_cmd(shard, tx, client, a, &mut r).await,
        "config" => {
            if a.len() == 2 && eq_ic(&a[1], "resetstat") {
                dispatch::broadcast(shard, tx, |_| Op::ResetStats).await;
                // Server-wide counters, as Redis's resetServerStats.
                let repl = &shard.shared.repl;
                for c in [
                    &repl.sync_full,
                    &repl.sync_partial_ok,
                    &repl.sync_partial_err,
                    &repl.net_input_bytes,
                ] {
                    c.store(0, Ordering::Relaxed);
                }
                crate::resp::ERROR_REPLIES.store(0, Ordering::Relaxed);
                super::stats::reset_errors();
                crate::resp::UNEXPECTED_ERROR_REPLIES.store(0, Ordering::Relaxed);
                return r.ok();
            }
            config_cmd(shard, a, &mut r);
            if eq_ic(&a[1], "set") && r.out.ends_with(b"+OK\r\n") {
                // Every shard applies the change before the client hears OK.
                dispatch::broadcast(shard, tx, |_| Op::RefreshConfig).await;
            }
        }
        "command" => command_cmd(a, &mut r),
        "debug" if eq_ic(&a[1], "reload") => {
            crate::persist::debug_reload(shard, a, tx.is_some(), &mut r).await
        }
        "debug" => debug_cmd(shard, tx, client, a, &mut r).await,
        "save" => crate::persist::save_cmd(shard, tx.is_some(), &mut r).await,
        "bgsave" => crate::persist::bgsave_cmd(shard, a, tx.is_some(), &mut r),
        "shutdown" => crate::persist::shutdown_cmd(shard, client, a, tx.is_some(), &mut r).await,
        "hello" => hello(shard, client, a, &mut r),
        "publish" => {
            let (channel, message) = (a[1].clone(), a[2].clone());
            let n = dispatch::sum_ints(shard, tx, |_| Op::Publish {
                channel: channel.clone(),
                message: message.clone(),
            })
            .await;
            // Replicas deliver it to their own subscribers, as in Redis.
            let prop = vec![crate::repl::master::PEntry::new(db, a.to_vec())];
            match tx {
                Some(t) => t.emit(shard, prop),
                None => crate::repl::master::emit_all(shard, prop, false),
            }
            r.int(n)
        }
        "pubsub" => pubsub_cmd(shard, tx, a, &mut r).await,
        "reset" => {
            let id = client.id;
            shard
                .pubsub
                .borrow_mut()
                .remove_client(id, &client.channels, &client.patterns);
            super::notify::listeners_changed(shard);
            let watching = std::mem::take(&mut client.watching);
            super::multi::unwatch_all(shard, tx, id, watching).await;
            super::monitor::stop(shard, client);
            *client = ClientState {
                peer: std::mem::take(&mut client.peer),
                ..ClientState::new(id)
            };
            r.simple("RESET")
        }
        "exec" => Box::pin(super::multi::exec(shard, client, r.out)).await,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => {
            Box::pin(super::script::eval::eval(shard, client, spec, a, r.out, tx)).await
        }
        "script" => super::script::eval::script_cmd(shard, a, &mut r),
        "wait" => {
            if super::repl::wait(shard, &mut r, a, tx.is_some(), closed).await {
                client.close_after_reply = true;
            }
        }
        "role" => super::repl::role(shard, &mut r),
        "replicaof" | "slaveof" => super::repl::replicaof(shard, &mut r, a),
        "failover" => crate::repl::failover::command(shard, &mut r, a),
        "discard" => super::multi::discard(shard, client, &mut r).await,
        "watch" => super::multi::watch(shard, client, a, &mut r).await,
        "unwatch" => {
            let watching = std::mem::take(&mut client.watching);
            super::multi::unwatch_all(shard, tx, client.id, watching).await;
            r.ok()
        }
        other => r.error(&format!("ERR unknown command '{other}'")),
    }
}

/// Channels (or, with `patterns`, patterns) with a subscriber on any
/// shard, each once (INFO's `pubsub_channels` / `pubsub_patterns`).
async fn pubsub_count(shard: &Rc<Shard>, tx: Option<&Tx>, patterns: bool) -> usize {
    let mut names: Vec<Bytes> = Vec::new();
    let reps = if patterns {
        dispatch::broadcast(shard, tx, |_| Op::PubsubPatterns).await
    } else {
        dispatch::broadcast(shard, tx, |_| Op::PubsubChannels { pattern: None }).await
    };
    for rep in reps {
        if let OpReply::Keys(k) = rep {
            names.extend(k);
        }
    }
    names.sort();
    names.dedup();
    names.len()
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT, over all shards.
async fn pubsub_cmd(shard: &Rc<Shard>, tx: Option<&Tx>, a: &[Bytes], r: &mut Reply<'_>) {
    let sub = a[1].to_ascii_lowercase();
    match (sub.as_slice(), a.len()) {
        (b"channels", 2 | 3) => {
            let pattern = a.get(2).cloned();
            let mut names: Vec<Bytes> = Vec::new();
            for rep in dispatch::broadcast(shard, tx, |_| Op::PubsubChannels {
                pattern: pattern.clone(),
            })
            .await
            {
                if let OpReply::Keys(k) = rep {
                    names.extend(k);
                }
            }
            names.sort();
            names.dedup();
            r.array(names.len());
            for n in names {
                r.bulk(&n);
            }
        }
        (b"numsub", _) => {
            r.array(2 * (a.len() - 2));
            for ch in &a[2..] {
                let n = dispatch::sum_ints(shard, tx, |_| Op::PubsubNumsub {
                    channel: ch.clone(),
                })
                .await;
                r.bulk(ch);
                r.int(n);
            }
        }
        (b"numpat", 2) => {
            let mut pats: Vec<Bytes> = Vec::new();
            for rep in dispatch::broadcast(shard, tx, |_| Op::PubsubPatterns).await {
                if let OpReply::Keys(k) = rep {
                    pats.extend(k);
                }
            }
            pats.sort();
            pats.dedup();
            r.int(pats.len() as i64)
        }
        (b"help", 2) => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "NUMPAT",
                "NUMSUB [<channel> ...]",
                "HELP",
            ];
            r.lines(&lines);
        }
        (b"channels" | b"numpat" | b"help", _) => r.error(&format!(
            "ERR wrong number of arguments for 'pubsub|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => r.error(&unknown_subcommand(&a[1], "pubsub")),
    }
}

async fn scan(shard: &Rc<Shard>, tx: Option<&Tx>, db: u16, a: &[Bytes], r: &mut Reply<'_>) {
    let cursor = match super::set::parse_cursor(&a[1]) {
        Some(c) => c,
        None => return r.error("ERR invalid cursor"),
    };
    let (mut count, mut pattern, mut typ) = (10usize, None, None);
    let mut i = 2;
    while i < a.len() {
        if i + 1 >= a.len() {
            return r.error(SYNTAX);
        }
        let v = &a[i + 1];
        if eq_ic(&a[i], "count") {
            match parse_i64(v) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return r.error(SYNTAX),
                None => return r.error(NOT_INT),
            }
        } else if eq_ic(&a[i], "match") {
            pattern = if v.as_ref() == b"*" {
                None
            } else {
                Some(v.clone())
            };
        } else if eq_ic(&a[i], "type") {
            typ = Some(v.clone());
        } else {
            return r.error(SYNTAX);
        }
        i += 2;
    }
    let (next, keys) = dispatch::scan(shard, tx, db, cursor, count, pattern, typ).await;
    r.array(2);
    r.bulk(next.to_string().as_bytes());
    r.array(keys.len());
    for k in keys {
        r.bulk(&k);
    }
}

fn hello(shard: &Shard, client: &mut ClientState, a: &[Bytes], r: &mut Reply<'_>) {
    let mut proto = client.proto;
    let mut i = 1;
    if a.len() > 1 {
        match parse_i64(&a[1]) {
            Some(2) => proto = Proto::Resp2,
            Some(3) => proto = Proto::Resp3,
            Some(_) => return r.error("NOPROTO unsupported protocol version"),
            None => return r.error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut name = None;
    while i < a.len() {
        if eq_ic(&a[i], "auth") && i + 2 < a.len() {
            if a[i + 1].as_ref() != b"default" {
                return r.error("WRONGPASS invalid username-password pair or user is disabled.");
            }
            i += 3;
        } else if eq_ic(&a[i], "setname") && i + 1 < a.len() {
            if a[i + 1].iter().any(|&c| c <= b' ' || c > b'~') {
                return r.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            name = Some(Bytes::copy_from_slice(&a[i + 1]));
            i += 2;
        } else {
            return r.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                sanitize(&a[i], 128)
            ));
        }
    }
    client.proto = proto;
    if name.is_some() {
        client.name = name;
    }
    r.proto = proto;
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(if proto == Proto::Resp3 { 3 } else { 2 });
    r.bulk(b"id");
    r.int(client.id as i64);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    let _ = shard;
}

async fn client_cmd(
    shard: &Rc<Shard>,
    tx: Option<&Tx>,
    client: &mut ClientState,
    a: &[Bytes],
    r: &mut Reply<'_>,
) {
    let sub = a[1].to_ascii_lowercase();
    match (sub.as_slice(), a.len()) {
        (b"id", 2) => r.int(client.id as i64),
        (b"getname", 2) => r.bulk_opt(client.name.as_deref()),
        (b"setname", 3) => {
            if a[2].iter().any(|&c| c <= b' ' || c > b'~') {
                return r.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            client.name = if a[2].is_empty() {
                None
            } else {
                Some(Bytes::copy_from_slice(&a[2]))
            };
            r.ok()
        }
        (b"setinfo", 4) => {
            if eq_ic(&a[2], "lib-name") {
                client.lib_name = Some(Bytes::copy_from_slice(&a[3]));
            } else if eq_ic(&a[2], "lib-ver") {
                client.lib_ver = Some(Bytes::copy_from_slice(&a[3]));
            } else {
                return r.error(&format!(
                    "ERR Unrecognized option '{}'",
                    sanitize(&a[2], 64)
                ));
            }
            r.ok()
        }
        (b"info", 2) => {
            let text = shard.net.borrow().client_list(
                shard,
                Some(&[client.id]),
                None,
                (client.id, resp_len(a)),
            );
            r.text(&text)
        }
        (b"list", _) => {
            let (mut ids, mut typ) = (None, None);
            let mut i = 2;
            while i < a.len() {
                if eq_ic(&a[i], "type") && i + 1 < a.len() {
                    let t = String::from_utf8_lossy(&a[i + 1]).to_lowercase();
                    if !["normal", "master", "replica", "slave", "pubsub"].contains(&t.as_str()) {
                        return r.error(&format!("ERR Unknown client type '{t}'"));
                    }
                    typ = Some(t);
                    i += 2;
                } else if eq_ic(&a[i], "id") && i + 1 < a.len() {
                    let mut v = Vec::new();
                    for x in &a[i + 1..] {
                        match parse_i64(x) {
                            Some(n) if n > 0 => v.push(n as u64),
                            _ => return r.error("ERR Invalid client ID"),
                        }
                    }
                    ids = Some(v);
                    i = a.len();
                } else {
                    return r.error(SYNTAX);
                }
            }
            let mut text = String::new();
            let caller = (client.id, resp_len(a));
            for rep in dispatch::broadcast(shard, tx, |_| Op::ClientList {
                id_filter: ids.clone(),
                typ: typ.clone(),
                caller,
            })
            .await
            {
                if let OpReply::Text(t) = rep {
                    text.push_str(&t);
                }
            }
            r.text(&text)
        }
        (b"kill", 2) => r.error("ERR wrong number of arguments for 'client|kill' command"),
        (b"kill", n) => {
            let old_style = n == 3;
            let mut f = KillFilter {
                skip_id: Some(client.id),
                me: Some(client.id),
                ..Default::default()
            };
            if old_style {
                f.addr = Some(String::from_utf8_lossy(&a[2]).into_owned());
                f.skip_id = None;
            } else {
                if n % 2 != 0 {
                    return r.error(SYNTAX);
                }
                for p in a[2..].chunks(2) {
                    let v = String::from_utf8_lossy(&p[1]).into_owned();
                    match p[0].to_ascii_lowercase().as_slice() {
                        b"id" => match parse_i64(&p[1]) {
                            Some(id) if id > 0 => f.id = Some(id as u64),
                            _ => return r.error("ERR client-id should be greater than 0"),
                        },
                        b"addr" => f.addr = Some(v),
                        b"laddr" => f.laddr = Some(v),
                        b"type" => {
                            let t = v.to_lowercase();
                            if !["normal", "master", "replica", "slave", "pubsub"]
                                .contains(&t.as_str())
                            {
                                return r.error(&format!("ERR Unknown client type '{v}'"));
                            }
                            f.typ = Some(t);
                        }
                        // tether has one user, `default` (no ACL).
                        b"user" if v == "default" => f.user = Some(v),
                        b"user" => return r.error(&format!("ERR No such user '{v}'")),
                        // MAXAGE arrived in Redis 7.4; 7.0 calls it a syntax error.
                        b"skipme" => match v.to_lowercase().as_str() {
                            "yes" => f.skip_id = Some(client.id),
                            "no" => f.skip_id = None,
                            _ => return r.error(SYNTAX),
                        },
                        _ => return r.error(SYNTAX),
                    }
                }
            }
            let mut killed =
                dispatch::sum_ints(shard, tx, |_| Op::ClientKill { filter: f.clone() }).await;
            // Our link to our master is not a connection of the table; it
            // matches as Redis's master client would (TYPE master, its
            // addresses, or no narrower filter: SKIPME no kills it too).
            let repl = &shard.shared.repl;
            let master = crate::repl::lock(&repl.master);
            if let Some(m) = master.as_ref().filter(|m| {
                m.link_up
                    && f.typ.as_deref().is_none_or(|t| t == "master")
                    && f.id.is_none()
                    && f.addr.as_ref().is_none_or(|a| *a == m.addr)
                    && f.laddr.as_ref().is_none_or(|a| *a == m.laddr)
            }) {
                crate::repl::replica::kill_link(repl, m);
                killed += 1;
            }
            drop(master);
            if old_style {
                if killed == 0 {
                    r.error("ERR No such client")
                } else {
                    r.ok()
                }
            } else {
                r.int(killed)
            }
        }
        // OFF and SKIP answer nothing; the slow path drops what follows
        // (see `ReplyMode`).
        (b"reply", 3) => {
            if eq_ic(&a[2], "on") {
                client.reply_mode = super::ReplyMode::On;
                r.ok()
            } else if eq_ic(&a[2], "off") {
                client.reply_mode = super::ReplyMode::Off;
            } else if eq_ic(&a[2], "skip") {
                if client.reply_mode != super::ReplyMode::Off {
                    client.reply_mode = super::ReplyMode::SkipNext;
                }
            } else {
                r.error(SYNTAX)
            }
        }
        (b"unblock", 3 | 4) => {
            let error = match a.get(3) {
                None => false,
                Some(w) if eq_ic(w, "timeout") => false,
                Some(w) if eq_ic(w, "error") => true,
                Some(_) => return r.error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
            };
            let Some(id) = parse_i64(&a[2]) else {
                return r.error("ERR value is not an integer or out of range");
            };
            let n = if id > 0 {
                let id = id as u64;
                dispatch::sum_ints(shard, tx, |_| Op::ClientUnblock { id, error }).await
            } else {
                0
            };
            r.int(n.min(1))
        }
        (b"pause", 3 | 4) => crate::cmd::pause::client_pause(&shard.shared.pause, a, r),
        (b"pause", _) => r.error(&super::subcommand_syntax_error(&a[1], "client")),
        (b"unpause", 2) => {
            shard.shared.pause.lift();
            r.ok()
        }
        (b"unpause", _) => r.error("ERR wrong number of arguments for 'client|unpause' command"),
        (b"help", 2) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "ID",
                "INFO",
                "KILL <ip:port>",
                "KILL <option> <value> [<option> <value> [...]]",
                "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID id [id ...]]",
                "PAUSE <timeout> [WRITE|ALL]",
                "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "UNPAUSE",
                "    Stop the current client pause, resuming traffic.",
                "REPLY (ON|OFF|SKIP)",
                "    Control the replies sent to the current connection.",
                "SETNAME <name>",
                "SETINFO <option> <value>",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "HELP",
            ];
            r.lines(&lines);
        }
        _ => r.error(&unknown_subcommand(&a[1], "client")),
    }
}

fn config_cmd(shard: &Shard, a: &[Bytes], r: &mut Reply<'_>) {
    let sub = a[1].to_ascii_lowercase();
    let wrong = || {
        format!(
            "ERR wrong number of arguments for 'config|{}' command",
            String::from_utf8_lossy(&sub)
        )
    };
    match sub.as_slice() {
        b"get" => {
            if a.len() < 3 {
                return r.error(&wrong());
            }
            let pats: Vec<&[u8]> = a[2..].iter().map(|b| b.as_ref()).collect();
            let pairs = shard.shared.config().get(&pats);
            r.map(pairs.len());
            for (k, v) in pairs {
                r.bulk(k.as_bytes());
                r.bulk(v.as_bytes());
            }
        }
        b"set" => {
            if a.len() < 4 || !a.len().is_multiple_of(2) {
                return r.error(&wrong());
            }
            let pairs: Vec<(&[u8], &[u8])> = a[2..]
                .chunks(2)
                .map(|p| (p[0].as_ref(), p[1].as_ref()))
                .collect();
            let res = shard
                .shared
                .config
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set(&pairs);
            match res {
                Ok(()) => r.ok(),
                Err(e) => r.error(&e),
            }
        }
        b"rewrite" if a.len() == 2 => match shard.shared.config().rewrite() {
            Ok(()) => r.ok(),
            Err(e) => r.error(&e),
        },
        b"help" if a.len() == 2 => {
            let lines = [
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "SET <directive> <value>",
                "RESETSTAT",
                "REWRITE",
                "HELP",
            ];
            r.lines(&lines);
        }
        b"resetstat" | b"rewrite" | b"help" => r.error(&wrong()),
        _ => r.error(&unknown_subcommand(&a[1], "config")),
    }
}

/// One command's COMMAND INFO entry (Redis 7.0 shape: name, arity, flags,
/// first key, last key, step, ACL categories, tips, key specs, subcommands).
fn command_entry(spec: &CmdSpec, r: &mut Reply<'_>) {
    r.array(10);
    r.bulk(spec.name.as_bytes());
    r.int(spec.arity as i64);
    r.set_header(spec.flags.len());
    for f in spec.flags {
        r.simple(f);
    }
    r.int(spec.first_key as i64);
    r.int(spec.last_key as i64);
    r.int(spec.step as i64);
    r.set_header(0);
    r.set_header(0);
    r.array(0);
    r.array(0);
}

fn command_cmd(a: &[Bytes], r: &mut Reply<'_>) {
    if a.len() == 1 {
        let specs: Vec<_> = all().collect();
        r.array(specs.len());
        for s in specs {
            command_entry(s, r);
        }
        return;
    }
    let sub = a[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"count" if a.len() == 2 => r.int(all().count() as i64),
        b"info" => {
            let names: Vec<&Bytes> = a[2..].iter().collect();
            if names.is_empty() {
                let specs: Vec<_> = all().collect();
                r.array(specs.len());
                for s in specs {
                    command_entry(s, r);
                }
                return;
            }
            r.array(names.len());
            for n in names {
                match super::find(n) {
                    Some(s) => command_entry(s, r),
                    None => r.null_array(),
                }
            }
        }
        b"docs" => {
            // Names and a summary line are enough for redis-cli's hints.
            let specs: Vec<&CmdSpec> = if a.len() == 2 {
                all().collect()
            } else {
                a[2..].iter().filter_map(|n| super::find(n)).collect()
            };
            r.map(specs.len());
            for s in specs {
                r.bulk(s.name.as_bytes());
                r.map(2);
                r.bulk(b"summary");
                r.bulk(format!("{} command", s.name.to_uppercase()).as_bytes());
                r.bulk(b"group");
                r.bulk(b"generic");
            }
        }
        b"list" if a.len() == 2 => {
            let specs: Vec<_> = all().collect();
            r.array(specs.len());
            for s in specs {
                r.bulk(s.name.as_bytes());
            }
        }
        b"getkeys" if a.len() >= 3 => match super::find(&a[2]) {
            Some(s) if s.first_key > 0 || s.numkeys > 0 => {
                let keys: Vec<usize> = s.key_indices(&a[2..]).collect();
                if keys.is_empty() {
                    return r.error("ERR The command has no key arguments");
                }
                r.array(keys.len());
                for i in keys {
                    r.bulk(&a[2 + i]);
                }
            }
            Some(_) => r.error("ERR The command has no key arguments"),
            None => r.error("ERR Invalid command specified"),
        },
        _ => r.error(&unknown_subcommand(&a[1], "command")),
    }
}

async fn debug_cmd(
    shard: &Rc<Shard>,
    tx: Option<&Tx>,
    client: &ClientState,
    a: &[Bytes],
    r: &mut Reply<'_>,
) {
    use super::digest;
    if eq_ic(&a[1], "digest") && a.len() == 2 {
        let mut dbs = vec![([0u8; 20], 0u64); shard.databases];
        for rep in dispatch::broadcast(shard, tx, |_| Op::Digest { db: 0, key: None }).await {
            if let OpReply::Bytes(b) = rep {
                digest::add_shares(&mut dbs, &b);
            }
        }
        return r.simple(&digest::hex(&digest::dataset_digest(&dbs)));
    }
    if eq_ic(&a[1], "populate") && (3..=5).contains(&a.len()) {
        // As Redis 7.0: keys `prefix:j` (default `key`), values `value:j`,
        // existing keys kept, nothing replicated (it does not mark the
        // dataset dirty).
        // getPositiveLongFromObjectOrReply: one message for both faults.
        let positive = |b: &Bytes| match super::parse_i64(b) {
            Some(v) if v >= 0 => Ok(v),
            _ => Err("ERR value is out of range, must be positive"),
        };
        let count = match positive(&a[2]) {
            Ok(v) => v as u64,
            Err(e) => return r.error(e),
        };
        let size = match a.get(4).map(positive) {
            None => 0,
            Some(Ok(v)) => v as usize,
            Some(Err(e)) => return r.error(e),
        };
        if size > shard.shared.config().proto_max_bulk_len() as usize {
            return r.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        }
        let prefix = a
            .get(3)
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"key"));
        let db = client.db;
        dispatch::broadcast(shard, tx, |_| Op::Populate {
            db,
            prefix: prefix.clone(),
            count,
            size,
        })
        .await;
        return r.ok();
    }
    if eq_ic(&a[1], "set-active-expire") && a.len() == 3 {
        // As Redis: atoi, so anything but a non-zero number turns it off.
        let on = std::str::from_utf8(&a[2])
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .is_some_and(|n| n != 0);
        shard.shared.active_expire.store(on, Ordering::Relaxed);
        return r.ok();
    }
    if eq_ic(&a[1], "digest-value") {
        r.array(a.len() - 2);
        for k in &a[2..] {
            let owner = crate::shard::shard_of(k, shard.nshards());
            let op = Op::Digest {
                db: client.db,
                key: Some(k.clone()),
            };
            let d = match dispatch::op_on(shard, tx, owner, op).await {
                OpReply::Bytes(b) if b.len() == 20 => b,
                _ => vec![0; 20],
            };
            r.simple(&digest::hex(&d));
        }
        return;
    }
    if eq_ic(&a[1], "sleep") && a.len() == 3 {
        // Bounded (a year) so `inf` or 1e300 cannot overflow the timer.
        let secs = super::parse_f64(&a[2])
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 365.0 * 86400.0);
        shard
            .shared
            .debug_sleep(shard.id, std::time::Duration::from_secs_f64(secs));
        return r.ok();
    }
    r.error(&super::subcommand_syntax_error(&a[1], "debug"))
}

/// The length of `args` as a RESP multibulk request.
fn resp_len(args: &[Bytes]) -> usize {
    let digits = |n: usize| itoa::Buffer::new().format(n).len();
    3 + digits(args.len())
        + args
            .iter()
            .map(|a| 5 + digits(a.len()) + a.len())
            .sum::<usize>()
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn cpu_times() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

/// INFO [section ...]: Redis's field names, summed over shards.
async fn info(shard: &Rc<Shard>, tx: Option<&Tx>, a: &[Bytes]) -> String {
    let want: Vec<String> = a[1..]
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let all_sections = want.iter().any(|w| w == "all" || w == "everything");
    let default = want.is_empty() || want.iter().any(|w| w == "default");
    let show = |s: &str| {
        all_sections
            || want.iter().any(|w| w == s)
            || (default && s != "commandstats" && s != "latencystats")
    };
    let infos = dispatch::gather_info(shard, tx).await;
    // Gathered before the config is locked: no lock across an await.
    let pubsub = if show("stats") {
        (
            pubsub_count(shard, tx, false).await,
            pubsub_count(shard, tx, true).await,
        )
    } else {
        (0, 0)
    };
    let sum = |f: fn(&crate::shard::ShardInfo) -> u64| infos.iter().map(f).sum::<u64>();
    // Bytes per second as Redis prints its instantaneous kbps.
    let kbps = |bytes_per_sec: u64| format!("{:.2}", bytes_per_sec as f64 / 1024.0);
    let shared = &shard.shared;
    let cfg = shared.config();
    let mut s = String::new();
    let uptime = shared.started.elapsed().as_secs();
    if show("server") {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let uname = {
            let mut u: libc::utsname = unsafe { std::mem::zeroed() };
            // SAFETY: uname fills the struct we own.
            unsafe { libc::uname(&mut u) };
            let f = |c: &[libc::c_char]| {
                unsafe { std::ffi::CStr::from_ptr(c.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            };
            format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
        };
        let _ = write!(
            s,
            "# Server\r\nredis_version:{VERSION}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{uname}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{now_us}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:0\r\n{}tether_version:{}\r\ntether_shards:{}\r\n\r\n",
            std::process::id(),
            shared.run_id,
            cfg.port(),
            uptime / 86400,
            cfg.hz(),
            cfg.hz(),
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            cfg.config_file()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            // Only while a shutdown waits for its replicas, as in Redis.
            match shared.persist.shutdown_deadline_ms.load(Ordering::SeqCst) {
                0 => String::new(),
                d => format!(
                    "shutdown_in_milliseconds:{}\r\n",
                    d.saturating_sub(crate::shard::now_ms())
                ),
            },
            env!("CARGO_PKG_VERSION"),
            shared.nshards,
        );
    }
    if show("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\ntether_busy_clients:{}\r\ntether_pending_requests:{}\r\n\r\n",
            infos.iter().map(|i| i.connected_clients).sum::<usize>(),
            cfg.maxclients(),
            infos.iter().map(|i| i.blocked_clients).sum::<u64>(),
            infos.iter().map(|i| i.busy_clients).sum::<usize>(),
            infos.iter().map(|i| i.pending_requests).sum::<usize>(),
        );
    }
    if show("memory") {
        // tether frees in the foreground (FLUSHALL ASYNC and UNLINK
        // included) and never defragments: the lazyfree and defrag
        // counters are truly 0.
        // Replication's memory: the backlogs' bytes, and what replicas
        // have queued and not yet taken (tether copies a replica's output
        // out of the backlog, so the total is the sum).
        let rss = rss_bytes();
        let backlog = shared.repl.backlog_bytes();
        let replica_out: u64 = infos.iter().map(|i| i.replica_output).sum();
        let lua = shared.scripts.lua_memory();
        let scripts = shared.scripts.body_bytes();
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_replication_backlog:{backlog}\r\nmem_total_replication_buffers:{}\r\nmem_clients_slaves:{replica_out}\r\nused_memory_lua:{lua}\r\nused_memory_vm_eval:{lua}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{scripts}\r\nnumber_of_cached_scripts:{}\r\nmem_allocator:libc\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:0\r\n\r\n",
            human(rss),
            human(rss),
            cfg.maxmemory(),
            human(cfg.maxmemory()),
            cfg.get_str("maxmemory-policy")
                .unwrap_or_else(|| "noeviction".into()),
            backlog + replica_out,
            human(lua),
            shared.scripts.len(),
        );
    }
    if show("persistence") {
        s.push_str(&crate::persist::info_section(shared));
    }
    if show("stats") {
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ntotal_net_repl_input_bytes:{}\r\ntotal_net_repl_output_bytes:{}\r\ninstantaneous_input_kbps:{}\r\ninstantaneous_output_kbps:{}\r\ninstantaneous_input_repl_kbps:{}\r\ninstantaneous_output_repl_kbps:{}\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nevicted_keys:0\r\nevicted_clients:0\r\ntotal_eviction_exceeded_time:0\r\ncurrent_eviction_exceeded_time:0\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\nslave_expires_tracked_keys:{}\r\ntracking_total_keys:0\r\ntracking_total_items:0\r\ntracking_total_prefixes:0\r\nunexpected_error_replies:{}\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:0\r\ntotal_reads_processed:{}\r\ntotal_writes_processed:{}\r\nio_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\n\r\n",
            sum(|i| i.connections_received),
            sum(|i| i.commands_processed),
            sum(|i| i.inst.ops),
            sum(|i| i.net_input_bytes) + shared.repl.net_input_bytes.load(Ordering::Relaxed),
            sum(|i| i.net_output_bytes + i.net_repl_output_bytes),
            shared.repl.net_input_bytes.load(Ordering::Relaxed),
            sum(|i| i.net_repl_output_bytes),
            kbps(sum(|i| i.inst.input)),
            kbps(sum(|i| i.inst.output)),
            kbps(sum(|i| i.inst.repl_input)),
            kbps(sum(|i| i.inst.repl_output)),
            sum(|i| i.rejected_connections),
            shared.repl.sync_full.load(Ordering::Relaxed),
            shared.repl.sync_partial_ok.load(Ordering::Relaxed),
            shared.repl.sync_partial_err.load(Ordering::Relaxed),
            sum(|i| i.expired),
            sum(|i| i.hits),
            sum(|i| i.misses),
            pubsub.0,
            pubsub.1,
            sum(|i| i.replica_ttl_keys),
            crate::resp::UNEXPECTED_ERROR_REPLIES.load(Ordering::Relaxed),
            crate::resp::ERROR_REPLIES.load(Ordering::Relaxed),
            sum(|i| i.reads_processed),
            sum(|i| i.writes_processed),
        );
    }
    if show("replication") {
        s.push_str(&crate::repl::master::info_replication(shared, &cfg));
    }
    if show("cpu") {
        let (sys, user) = cpu_times();
        let _ = write!(
            s,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n\r\n"
        );
    }
    if show("commandstats") {
        let shards: Vec<_> = infos.iter().map(|i| i.cmdstats.clone()).collect();
        s.push_str(&super::stats::commandstats(&shards));
    }
    if show("errorstats") {
        s.push_str(&super::stats::errorstats());
    }
    if show("keyspace") {
        s.push_str("# Keyspace\r\n");
        let ndb = infos.first().map_or(0, |i| i.keys.len());
        for db in 0..ndb {
            let keys: usize = infos.iter().map(|i| i.keys[db].0).sum();
            let expires: usize = infos.iter().map(|i| i.keys[db].1).sum();
            if keys == 0 {
                continue;
            }
            let with_ttl: Vec<u64> = infos
                .iter()
                .filter(|i| i.keys[db].1 > 0)
                .map(|i| i.keys[db].2)
                .collect();
            let avg = if with_ttl.is_empty() {
                0
            } else {
                with_ttl.iter().sum::<u64>() / with_ttl.len() as u64
            };
            let _ = write!(s, "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n");
        }
        s.push_str("\r\n");
    }
    while s.ends_with("\r\n\r\n") {
        s.truncate(s.len() - 2);
    }
    s
}
