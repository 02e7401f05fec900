//! Keyspace notifications against stock redis-server: one script of
//! writes (every command family, the no-op cases, errors, keys emptied,
//! TTLs set, cleared and already past, renames, moves, copies, restores,
//! blocking pops) runs on both, with `notify-keyspace-events` set, while a
//! subscriber on `__key*` collects what is published. After each command
//! the writer publishes a marker on another channel, so the events of each
//! command are cut out and compared on their own: same channels, same
//! payloads, same order (with several shards, the events of a command
//! whose keys live on several shards may interleave; those are compared as
//! sets). Expiry is timed by the servers, so it has its own test.
mod common;

use common::{Event, EventTap, RawConn, Resp, Server, show_events as show};
use std::time::Duration;

struct Session {
    writer: RawConn,
    tap: EventTap,
}

impl Session {
    fn open(s: &Server, flags: &str) -> Session {
        let mut writer = s.raw();
        writer.cmds(&["FLUSHALL"]);
        let tap = EventTap::attach(s, flags);
        Session { writer, tap }
    }

    /// Runs one command; returns its reply and the events it published.
    fn run(&mut self, args: &[&[u8]]) -> (Resp, Vec<Event>) {
        let reply = self.writer.cmd(args);
        (reply, self.tap.take())
    }
}

/// The script. `$DUMP` is replaced by the server's own `DUMP dumped`.
const SCRIPT: &[&[&str]] = &[
    // strings
    &["SET", "s1", "v"],
    &["SET", "s1", "v2", "EX", "100"],
    &["SET", "s1", "v3", "KEEPTTL"],
    &["SET", "s1", "v4", "NX"],
    &["SET", "s1", "v4", "XX", "GET"],
    &["SET", "nx1", "v", "XX"],
    &["SETNX", "s1", "x"],
    &["SETNX", "s2", "x"],
    &["SETEX", "s3", "100", "v"],
    &["PSETEX", "s4", "100000", "v"],
    &["GETSET", "s2", "y"],
    &["MSET", "m1", "a", "m2", "b", "m3", "c"],
    &["MSETNX", "m1", "a", "n1", "b"],
    &["MSETNX", "n1", "a", "n2", "b"],
    &["APPEND", "s5", "ab"],
    &["APPEND", "s5", "cd"],
    &["SETRANGE", "s6", "3", "xy"],
    &["SETRANGE", "s6", "0", ""],
    &["SETRANGE", "s7", "0", ""],
    &["INCR", "c1"],
    &["INCRBY", "c1", "5"],
    &["DECR", "c1"],
    &["DECRBY", "c1", "2"],
    &["INCRBYFLOAT", "c2", "1.5"],
    &["INCR", "s1"],
    &["GETDEL", "s2"],
    &["GETDEL", "nokey"],
    &["GETEX", "s1", "PX", "100000"],
    &["GETEX", "s1", "PERSIST"],
    &["GETEX", "s1", "PERSIST"],
    &["GETEX", "s5", "PXAT", "1"],
    &["GET", "nokey"],
    &["MGET", "s1", "nokey", "m1"],
    &["EXISTS", "s1", "nokey"],
    &["TOUCH", "s1", "nokey"],
    &["STRLEN", "nokey"],
    // keys
    &["DEL", "m1", "m2", "nokey"],
    &["UNLINK", "m3"],
    &["DEL", "nokey"],
    &["EXPIRE", "s1", "100"],
    &["EXPIRE", "s1", "100", "NX"],
    &["PEXPIRE", "s1", "-1"],
    &["EXPIREAT", "s3", "1"],
    &["EXPIRE", "nokey", "100"],
    &["PERSIST", "s4"],
    &["PERSIST", "s4"],
    &["RENAME", "s4", "r1"],
    &["RENAME", "r1", "r1"],
    &["RENAMENX", "r1", "c1"],
    &["RENAMENX", "r1", "r2"],
    &["RENAME", "r2", "c1"],
    &["RENAME", "nokey", "r3"],
    &["COPY", "c1", "cp1"],
    &["COPY", "c1", "cp1"],
    &["COPY", "c1", "cp1", "REPLACE"],
    &["COPY", "c1", "cp2", "DB", "3"],
    &["MOVE", "cp1", "5"],
    &["MOVE", "cp1", "5"],
    &["SET", "dumped", "payload"],
    &["RESTORE", "rk", "0", "$DUMP"],
    &["RESTORE", "rk", "0", "$DUMP", "REPLACE"],
    &["RESTORE", "rk", "1", "$DUMP", "REPLACE", "ABSTTL"],
    &["RESTORE", "rk2", "1", "$DUMP", "ABSTTL"],
    // lists
    &["LPUSH", "l1", "a", "b", "c"],
    &["RPUSH", "l1", "d"],
    &["LPUSHX", "l1", "e"],
    &["LPUSHX", "nol", "e"],
    &["RPUSHX", "l1", "f"],
    &["LINSERT", "l1", "BEFORE", "a", "z"],
    &["LINSERT", "l1", "BEFORE", "nope", "z"],
    &["LSET", "l1", "0", "q"],
    &["LSET", "l1", "99", "q"],
    &["LREM", "l1", "0", "nope"],
    &["LREM", "l1", "1", "q"],
    &["LTRIM", "l1", "0", "2"],
    &["LPOP", "l1"],
    &["RPOP", "l1", "2"],
    &["LPOP", "l1"],
    &["LRANGE", "nol", "0", "-1"],
    &["LMOVE", "l2", "l3", "LEFT", "RIGHT"],
    &["RPUSH", "l2", "x", "y", "w"],
    &["LMOVE", "l2", "l3", "LEFT", "RIGHT"],
    &["RPOPLPUSH", "l2", "l3"],
    &["LMOVE", "l2", "l2", "LEFT", "RIGHT"],
    &["LMOVE", "l2", "l3", "LEFT", "LEFT"],
    &["LMPOP", "2", "nol", "l3", "LEFT", "COUNT", "5"],
    &["RPUSH", "l4", "a", "b"],
    &["BLPOP", "l4", "0"],
    &["BRPOP", "l4", "0"],
    &["BLMOVE", "nol", "l5", "LEFT", "LEFT", "0.01"],
    &["LPUSH", "s1", "x"],
    // hashes
    &["HSET", "h1", "a", "1", "b", "2"],
    &["HSET", "h1", "a", "1"],
    &["HSETNX", "h1", "a", "1"],
    &["HSETNX", "h1", "c", "3"],
    &["HDEL", "h1", "zz"],
    &["HDEL", "h1", "a"],
    &["HDEL", "h1", "b", "c"],
    &["HINCRBY", "h2", "f", "1"],
    &["HINCRBYFLOAT", "h2", "g", "1.5"],
    &["HMSET", "h3", "x", "1"],
    &["HGET", "nohash", "x"],
    // sets
    &["SADD", "st1", "a", "b", "c"],
    &["SADD", "st1", "a"],
    &["SREM", "st1", "zz"],
    &["SREM", "st1", "a"],
    &["SPOP", "st1", "5"],
    &["SADD", "st2", "a", "b"],
    &["SADD", "st3", "b", "c"],
    &["SMOVE", "st2", "st3", "a"],
    &["SMOVE", "st2", "st3", "zz"],
    &["SMOVE", "st2", "st3", "b"],
    &["SMOVE", "st3", "st3", "b"],
    &["SINTERSTORE", "si", "st3", "nokey"],
    &["SUNIONSTORE", "su", "st3", "st3"],
    &["SDIFFSTORE", "su", "st3", "st3"],
    &["SINTERSTORE", "si", "st3", "st3"],
    &["SADD", "st4", "x"],
    &["SPOP", "st4"],
    &["SISMEMBER", "noset", "x"],
    // sorted sets
    &["ZADD", "z1", "1", "a", "2", "b"],
    &["ZADD", "z1", "1", "a"],
    &["ZADD", "z1", "XX", "5", "c"],
    &["ZADD", "z1", "INCR", "3", "a"],
    &["ZADD", "z1", "NX", "INCR", "3", "a"],
    &["ZINCRBY", "z1", "1", "b"],
    &["ZREM", "z1", "nope"],
    &["ZREM", "z1", "a"],
    &[
        "ZADD", "z2", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
    ],
    &["ZREMRANGEBYSCORE", "z2", "1", "1"],
    &["ZREMRANGEBYSCORE", "z2", "100", "200"],
    &["ZREMRANGEBYRANK", "z2", "0", "0"],
    &["ZREMRANGEBYLEX", "z2", "[a", "[c"],
    &["ZPOPMIN", "z2"],
    &["ZPOPMAX", "z2", "5"],
    &["ZADD", "z3", "1", "a", "2", "b", "3", "c"],
    &["ZUNIONSTORE", "zu", "2", "z1", "z3"],
    &["ZINTERSTORE", "zi", "2", "z1", "nokey"],
    &["ZDIFFSTORE", "zu", "1", "nokey"],
    &["ZRANGESTORE", "zr", "z3", "0", "-1"],
    &["ZRANGESTORE", "zr", "nokey", "0", "-1"],
    &["ZMPOP", "1", "z3", "MIN"],
    &["BZPOPMAX", "z3", "0"],
    &["BZPOPMIN", "z3", "0"],
    &["BZPOPMIN", "nozset", "0.01"],
    &["ZSCORE", "nozset", "a"],
    // reads of missing keys (keymiss)
    &["TTL", "nokey"],
    &["PTTL", "nokey"],
    &["EXPIRETIME", "nokey"],
    &["TYPE", "nokey"],
    &["DUMP", "nokey"],
    &["OBJECT", "ENCODING", "nokey"],
    &["GETRANGE", "nokey", "0", "1"],
    &["LINDEX", "nokey", "0"],
    &["LLEN", "nokey"],
    &["HGETALL", "nokey"],
    &["HLEN", "nokey"],
    &["SMEMBERS", "nokey"],
    &["SCARD", "nokey"],
    &["SUNION", "nokey", "st3"],
    &["ZRANGE", "nokey", "0", "-1"],
    &["ZCARD", "nokey"],
    &["ZUNION", "2", "nokey", "z1"],
    &["TTL", "c1"],
    &["TYPE", "c1"],
    // the database is part of the channel
    &["SELECT", "3"],
    &["SET", "s1", "in3"],
    &["DEL", "cp2", "s1"],
    &["SELECT", "0"],
    &["FLUSHDB"],
];

fn substitute(cmd: &[&str], dump: &[u8]) -> Vec<Vec<u8>> {
    cmd.iter()
        .map(|a| {
            if *a == "$DUMP" {
                dump.to_vec()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

/// Runs the script on `s`: per command, its reply and events.
fn record(s: &Server, flags: &str) -> Vec<(String, Resp, Vec<Event>)> {
    let mut sess = Session::open(s, flags);
    let mut dump = Vec::new();
    let mut out = Vec::new();
    for cmd in SCRIPT {
        if cmd[0] == "RESTORE" && dump.is_empty() {
            dump = sess
                .writer
                .cmds(&["DUMP", "dumped"])
                .as_bytes()
                .expect("a DUMP payload")
                .to_vec();
        }
        let args = substitute(cmd, &dump);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let (reply, events) = sess.run(&refs);
        // The lookups' hit and miss counts agree with the events.
        let info = sess.writer.cmds(&["INFO", "stats"]).as_str();
        let stats: Vec<&str> = info
            .lines()
            .filter(|l| l.starts_with("keyspace_"))
            .collect();
        let reply = Resp::Array(vec![reply, Resp::Bulk(stats.join(" ").into_bytes())]);
        out.push((cmd.join(" "), reply, events));
    }
    out
}

/// `r` with its arrays' items in order (a reply and the stats after it).
fn sorted(r: &Resp) -> Resp {
    match r {
        Resp::Array(v) if v.len() == 2 && matches!(v[0], Resp::Array(_)) => {
            Resp::Array(vec![sorted(&v[0]), v[1].clone()])
        }
        Resp::Array(v) => {
            let mut v = v.clone();
            v.sort_by_key(|x| x.as_bytes().map(|b| b.to_vec()));
            Resp::Array(v)
        }
        other => other.clone(),
    }
}

fn compare(flags: &str, shards: &[usize]) {
    let redis = Server::stock_redis();
    let want = record(&redis, flags);
    for &n in shards {
        let t = Server::tether(n);
        let got = record(&t, flags);
        for ((cmd, wr, we), (_, gr, ge)) in want.iter().zip(&got) {
            // Sets come in no particular order: compared as sets.
            let unordered = ["SPOP", "SUNION", "SMEMBERS"];
            let (wr, gr) = if unordered.iter().any(|c| cmd.starts_with(c)) {
                (sorted(wr), sorted(gr))
            } else {
                (wr.clone(), gr.clone())
            };
            assert_eq!(wr, gr, "{}: reply to `{cmd}`", t.label());
            let (mut we, mut ge) = (we.clone(), ge.clone());
            if n > 1 {
                we.sort();
                ge.sort();
            }
            assert!(
                we == ge,
                "{} with notify-keyspace-events {flags}: `{cmd}`\n  redis:  {}\n  tether: {}",
                t.label(),
                show(&we),
                show(&ge)
            );
        }
    }
}

#[test]
fn events_match_stock_redis() {
    compare("KEA", &[1, 4]);
}

#[test]
fn keymiss_and_new_events_match_stock_redis() {
    compare("KEmn", &[1, 4]);
}

#[test]
fn one_kind_of_channel_and_class_at_a_time() {
    compare("Kl", &[1]);
    compare("Eg$", &[2]);
    compare("Azs", &[1]);
}

/// `expired` comes from the servers' own clocks: a key whose TTL passed is
/// deleted by a lookup or by the active cycle, and either way one
/// `expired` is published for it (before the event of a write that found
/// it gone).
#[test]
fn expired_keys_publish_expired() {
    let redis = Server::stock_redis();
    for s in [&redis, &Server::tether(1), &Server::tether(4)] {
        let mut sess = Session::open(s, "KEA");
        // TTLs of 100 ms: a stall that long between a command and its
        // marker would put the event in the wrong window.
        let (_, ev) = sess.run(&[b"SET", b"t1", b"v", b"PX", b"100"]);
        assert_eq!(ev.len(), 4, "{}: {}", s.label(), show(&ev));
        std::thread::sleep(Duration::from_millis(250));
        let (_, ev) = sess.run(&[b"SET", b"t1", b"w"]);
        let want: Vec<Event> = [
            ("__keyspace@0__:t1", "expired"),
            ("__keyevent@0__:expired", "t1"),
            ("__keyspace@0__:t1", "set"),
            ("__keyevent@0__:set", "t1"),
        ]
        .iter()
        .map(|(c, m)| (c.as_bytes().to_vec(), m.as_bytes().to_vec()))
        .collect();
        assert_eq!(show(&ev), show(&want), "{}", s.label());
        // Nobody looks at t2: the active cycle deletes it.
        sess.run(&[b"SET", b"t2", b"v", b"PX", b"100"]);
        sess.tap.sub.set_read_timeout(Duration::from_secs(3));
        let msg = sess.tap.sub.read();
        let parts = msg.array();
        assert_eq!(parts[2].as_str(), "__keyspace@0__:t2", "{}", s.label());
        assert_eq!(parts[3].as_str(), "expired", "{}", s.label());
    }
}

/// Subscribers on every shard get each event once, and a subscriber that
/// listens on one exact channel gets only that channel's events.
#[test]
fn every_shards_subscribers_get_events() {
    let t = Server::tether(4);
    let mut w = t.raw();
    w.cmds(&["CONFIG", "SET", "notify-keyspace-events", "KE$"]);
    // Enough connections that each shard has subscribers.
    let mut subs: Vec<RawConn> = (0..8).map(|_| t.raw()).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        if i % 2 == 0 {
            s.cmds(&["SUBSCRIBE", "__keyevent@0__:set"]);
        } else {
            s.cmds(&["SUBSCRIBE", "__keyspace@0__:k7"]);
        }
    }
    for i in 0..20 {
        w.cmds(&["SET", &format!("k{i}"), "v"]);
    }
    for (i, s) in subs.iter_mut().enumerate() {
        if i % 2 == 0 {
            for k in 0..20 {
                let m = s.read();
                assert_eq!(m.array()[2].as_str(), format!("k{k}"), "subscriber {i}");
            }
        } else {
            let m = s.read();
            assert_eq!(m.array()[1].as_str(), "__keyspace@0__:k7");
            assert_eq!(m.array()[2].as_str(), "set");
        }
        assert!(
            s.is_closed_by_peer(Duration::from_millis(200)) || {
                // Nothing more may arrive: a read must time out.
                s.set_read_timeout(Duration::from_millis(100));
                s.try_read().is_err()
            },
            "subscriber {i} got an extra message"
        );
    }
    // Off again: nothing is published.
    w.cmds(&["CONFIG", "SET", "notify-keyspace-events", ""]);
    w.cmds(&["SET", "k7", "again"]);
    subs[1].set_read_timeout(Duration::from_millis(300));
    assert!(
        subs[1].try_read().is_err(),
        "an event after notifications went off"
    );
}

/// A replica publishes the events of the writes it applies from its
/// master's stream (as Redis's replicas do): subscribers on a tether
/// replica see a tether master's writes.
#[test]
fn a_replica_publishes_what_it_applies() {
    let master = Server::tether(2);
    let upstream = format!("127.0.0.1 {}", master.port);
    let replica = Server::spawn(common::Kind::Tether, 2, &["--replicaof", &upstream]);
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            replica
                .raw()
                .cmds(&["INFO", "replication"])
                .as_str()
                .contains("master_link_status:up")
        }),
        "the replica never linked"
    );
    let mut tap = EventTap::attach(&replica, "KEA");
    let mut w = master.raw();
    for c in [
        &["SET", "a", "1"][..],
        &["LPUSH", "l", "x", "y"],
        &["EXPIRE", "a", "100"],
        &["DEL", "a", "l"],
    ] {
        w.cmds(c);
    }
    let mut got = Vec::new();
    tap.sub.set_read_timeout(Duration::from_secs(10));
    while got.len() < 10 {
        let m = tap.sub.read();
        let p = m.array();
        got.push(format!("{} {}", p[2].as_str(), p[3].as_str()));
    }
    got.sort();
    let mut want: Vec<String> = [
        ("a", "set"),
        ("l", "lpush"),
        ("a", "expire"),
        ("a", "del"),
        ("l", "del"),
    ]
    .iter()
    .flat_map(|(k, e)| {
        [
            format!("__keyspace@0__:{k} {e}"),
            format!("__keyevent@0__:{e} {k}"),
        ]
    })
    .collect();
    want.sort();
    assert_eq!(got, want);
}
