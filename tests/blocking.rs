//! Blocking pops: waiters on other shards than the pushers are woken, FIFO
//! among waiters of one key, timeouts honoured, closed clients release
//! nothing, and under concurrency every pushed element is popped exactly
//! once (counts balance).
mod common;

use common::Server;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn woken_across_shards_and_fifo() {
    for shards in [1, 4] {
        let s = Server::start(shards);
        let ks = common::keys_over_shards("bq", 4, 1);
        let (k1, k2) = (ks[0].clone(), ks[1].clone());
        // Three waiters on k1 (blocked in order), plus one on two keys.
        let mut hs = Vec::new();
        for i in 0..3 {
            let mut c = s.raw();
            let k = k1.clone();
            hs.push(thread::spawn(move || (i, c.cmds(&["BLPOP", &k, "5"]))));
            thread::sleep(Duration::from_millis(150));
        }
        let mut multi = s.raw();
        let (a, b) = (k2.clone(), ks[2].clone());
        let mh = thread::spawn(move || multi.cmds(&["BRPOP", &a, &b, "5"]));
        thread::sleep(Duration::from_millis(150));
        let mut p = s.raw();
        p.cmds(&["RPUSH", &k1, "x0", "x1", "x2"]);
        p.cmds(&["LPUSH", &ks[2], "m"]);
        for h in hs {
            let (i, r) = h.join().unwrap();
            let got: Vec<String> = r.array().iter().map(|v| v.as_str()).collect();
            assert_eq!(
                got,
                vec![k1.clone(), format!("x{i}")],
                "{}: waiter {i} (FIFO)",
                s.label()
            );
        }
        let got: Vec<String> = mh
            .join()
            .unwrap()
            .array()
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(got, vec![ks[2].clone(), "m".to_string()], "{}", s.label());
        // BLMOVE between shards.
        let mut c = s.raw();
        let (src, dst) = (ks[1].clone(), ks[3].clone());
        let h = thread::spawn(move || c.cmds(&["BLMOVE", &src, &dst, "LEFT", "RIGHT", "5"]));
        thread::sleep(Duration::from_millis(150));
        p.cmds(&["RPUSH", &ks[1], "moved"]);
        assert_eq!(h.join().unwrap().as_str(), "moved");
        assert_eq!(p.cmds(&["LRANGE", &ks[3], "0", "-1"]).array().len(), 1);
        assert_eq!(p.cmds(&["EXISTS", &ks[1]]).as_int(), Some(0));
    }
}

#[test]
fn timeouts_and_errors() {
    let s = Server::start(4);
    let mut c = s.raw();
    let t = Instant::now();
    let (_, raw) = {
        c.send_cmd(&[b"BLPOP", b"nothing", b"0.3"]);
        c.read_raw()
    };
    let waited = t.elapsed();
    assert_eq!(raw, b"*-1\r\n");
    assert!(
        waited >= Duration::from_millis(250),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned after {waited:?}");
    c.send_cmd(&[b"BLMOVE", b"a", b"b", b"LEFT", b"LEFT", b"0.2"]);
    assert_eq!(c.read_raw().1, b"*-1\r\n");
    // Redis 7.0's C cast makes an infinite timeout "negative"; no crash.
    c.send_cmd(&[b"BLPOP", b"k", b"inf"]);
    assert_eq!(c.read_raw().1, b"-ERR timeout is negative\r\n");
    assert_eq!(
        common::esc(&c.roundtrip_bytes(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$2\r\n-1\r\n")),
        "-ERR timeout is negative\\r\\n"
    );
    assert_eq!(
        common::esc(&c.roundtrip_bytes(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$3\r\nabc\r\n")),
        "-ERR timeout is not a float or out of range\\r\\n"
    );
    // Inside MULTI a blocking pop answers at once.
    c.cmds(&["MULTI"]);
    c.cmds(&["BLPOP", "empty", "0"]);
    c.send_cmd(&[b"EXEC"]);
    assert_eq!(c.read_raw().1, b"*1\r\n*-1\r\n");
}

#[test]
fn closed_waiter_takes_nothing() {
    let s = Server::start(4);
    {
        let mut c = s.raw();
        c.send_cmd(&[b"BLPOP", b"gone", b"0"]);
        thread::sleep(Duration::from_millis(150));
        c.shutdown();
    }
    thread::sleep(Duration::from_millis(150));
    let mut p = s.raw();
    p.cmds(&["RPUSH", "gone", "keep"]);
    thread::sleep(Duration::from_millis(150));
    assert_eq!(
        p.cmds(&["LLEN", "gone"]).as_int(),
        Some(1),
        "a closed client popped the element"
    );
}

#[test]
fn no_element_lost_under_concurrency() {
    let s = Server::start(4);
    let ks = common::keys_over_shards("cq", 4, 1);
    let per_pusher = 300;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut hs = Vec::new();
    for w in 0..4 {
        let (ks, seen) = (ks.clone(), seen.clone());
        let mut c = s.raw();
        hs.push(thread::spawn(move || {
            loop {
                let r = c.cmds(&["BLPOP", &ks[w % 4], &ks[(w + 1) % 4], "1"]);
                if r == common::Resp::NilArray {
                    return; // timed out: everything drained
                }
                let v = r.array()[1].as_str();
                assert!(seen.lock().unwrap().insert(v.clone()), "{v} popped twice");
            }
        }));
    }
    for p in 0..2 {
        let ks = ks.clone();
        let mut c = s.raw();
        hs.push(thread::spawn(move || {
            for i in 0..per_pusher {
                c.cmds(&["RPUSH", &ks[i % 4], &format!("p{p}-{i}")]);
            }
        }));
    }
    for h in hs {
        h.join().expect("worker panicked");
    }
    let mut c = s.raw();
    let left: i64 = ks
        .iter()
        .map(|k| c.cmds(&["LLEN", k]).as_int().unwrap())
        .sum();
    assert_eq!(
        seen.lock().unwrap().len() as i64 + left,
        2 * per_pusher as i64,
        "pushed != popped + left"
    );
}

/// When its server becomes a replica (REPLICAOF), every client blocked in
/// a pop gets `-UNBLOCKED ...` and is closed, as Redis's
/// `disconnectAllBlockedClients` does; the command pipelined behind it
/// never runs. Pops blocked on keys of the connection's own shard, of
/// another shard and of several shards all end. Passes against stock Redis.
#[test]
fn replicaof_unblocks_blocked_pops() {
    let s = Server::start(4);
    let ks = common::keys_over_shards("demote", 4, 1);
    let pops: Vec<Vec<String>> = vec![
        vec!["BLPOP".into(), ks[0].clone(), "0".into()],
        vec!["BRPOP".into(), ks[1].clone(), "0".into()],
        vec!["BZPOPMIN".into(), ks[2].clone(), "0".into()],
        vec![
            "BLMOVE".into(),
            ks[3].clone(),
            ks[0].clone(),
            "LEFT".into(),
            "RIGHT".into(),
            "0".into(),
        ],
        vec!["BLPOP".into(), ks[1].clone(), ks[2].clone(), "0".into()],
    ];
    let mut conns = Vec::new();
    for p in &pops {
        let mut c = s.raw();
        let mut req = Vec::new();
        let args: Vec<&[u8]> = p.iter().map(|a| a.as_bytes()).collect();
        req.extend(common::encode(&args));
        // Must never run: the client is closed after the error.
        req.extend(common::encode(&[b"SET", b"ran-after-unblock", b"1"]));
        c.send(&req);
        conns.push(c);
    }
    let mut admin = s.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = admin.cmds(&["INFO", "clients"]).as_str();
        if info.contains(&format!("blocked_clients:{}", pops.len())) {
            break;
        }
        assert!(Instant::now() < deadline, "pops never all blocked: {info}");
        thread::sleep(Duration::from_millis(20));
    }
    let nobody = common::free_port().to_string();
    assert_eq!(
        admin.cmds(&["REPLICAOF", "127.0.0.1", &nobody]).as_str(),
        "OK"
    );
    for (c, p) in conns.iter_mut().zip(&pops) {
        let r = c.read();
        assert!(
            r.as_str().starts_with(
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"
            ),
            "{}: {p:?} across REPLICAOF answered {r:?}",
            s.label()
        );
        assert!(
            c.is_closed_by_peer(Duration::from_secs(5)),
            "{}: {p:?}: an unblocked client must be closed",
            s.label()
        );
    }
    assert_eq!(
        admin.cmds(&["EXISTS", "ran-after-unblock"]).as_int(),
        Some(0)
    );
    let info = admin.cmds(&["INFO", "clients"]).as_str();
    assert!(info.contains("blocked_clients:0"), "{info}");
    admin.cmds(&["REPLICAOF", "NO", "ONE"]);
}

/// Runs `args` (a blocking command) on a fresh connection in a thread,
/// given time to block; returns the connection's client id and the thread.
fn blocked(
    s: &Server,
    args: &'static [&'static str],
) -> (String, thread::JoinHandle<common::Resp>) {
    let mut c = s.raw();
    let id = c.cmds(&["CLIENT", "ID"]).as_int().unwrap().to_string();
    let h = thread::spawn(move || c.cmds(args));
    thread::sleep(Duration::from_millis(150));
    (id, h)
}

/// As Redis's `handleClientsBlockedOnKeys`: a waiter is served only from a
/// key of the type it pops (a transaction that leaves its key a string
/// leaves it blocked), from the key that became ready (not the first
/// non-empty key of its list), keys in the order they became ready, and
/// SWAPDB serves waiters whose key it brings in. Redis's
/// `tests/unit/type/list.tcl` and `zset.tcl` cases, plus the ready order.
#[test]
fn served_by_kind_from_the_ready_key_in_ready_order() {
    for shards in [1, 2] {
        let s = Server::start(shards);
        let mut p = s.raw();
        let pop = |args| blocked(&s, args).1;
        let strs =
            |r: common::Resp| -> Vec<String> { r.array().iter().map(|v| v.as_str()).collect() };

        // LPUSH + DEL + SET in one transaction: not served, still blocked.
        for (blk, push) in [
            (&["BLPOP", "bk", "5"][..], &["LPUSH", "bk", "a"][..]),
            (&["BZPOPMIN", "bk", "5"][..], &["ZADD", "bk", "1", "a"][..]),
        ] {
            p.cmds(&["DEL", "bk"]);
            let h = pop(blk);
            p.cmds(&["MULTI"]);
            p.cmds(push);
            p.cmds(&["DEL", "bk"]);
            p.cmds(&["SET", "bk", "foo"]);
            assert_eq!(p.cmds(&["EXEC"]).array().len(), 3, "{}", s.label());
            thread::sleep(Duration::from_millis(100));
            assert!(
                !h.is_finished(),
                "{}: {blk:?} served by a string",
                s.label()
            );
            p.cmds(&["DEL", "bk"]);
            let b = if blk[0] == "BLPOP" {
                &["LPUSH", "bk", "b"][..]
            } else {
                &["ZADD", "bk", "2", "b"][..]
            };
            p.cmds(b);
            let got = strs(h.join().unwrap());
            assert_eq!(
                &got[..2],
                &["bk".to_string(), "b".to_string()],
                "{}: {blk:?}",
                s.label()
            );
        }

        // Two keys filled by one transaction: the first filled serves, and
        // from itself, though the other key comes first in BLPOP's list.
        p.cmds(&["DEL", "{t}a", "{t}b"]);
        let h = pop(&["BLPOP", "{t}a", "{t}b", "5"]);
        p.cmds(&["MULTI"]);
        p.cmds(&["RPUSH", "{t}b", "x"]);
        p.cmds(&["RPUSH", "{t}a", "y"]);
        p.cmds(&["EXEC"]);
        assert_eq!(strs(h.join().unwrap()), vec!["{t}b", "x"], "{}", s.label());
        assert_eq!(strs(p.cmds(&["LRANGE", "{t}a", "0", "-1"])), vec!["y"]);
        // The same through BLMPOP, whose reply names the key.
        p.cmds(&["DEL", "{t}a", "{t}b"]);
        let h = pop(&["BLMPOP", "5", "2", "{t}a", "{t}b", "LEFT", "COUNT", "5"]);
        p.cmds(&["MULTI"]);
        p.cmds(&["RPUSH", "{t}b", "x1", "x2"]);
        p.cmds(&["RPUSH", "{t}a", "y"]);
        p.cmds(&["EXEC"]);
        let r = h.join().unwrap();
        let r = r.array();
        assert_eq!(r[0].as_str(), "{t}b", "{}", s.label());
        assert_eq!(
            r[1].array().iter().map(|v| v.as_str()).collect::<Vec<_>>(),
            vec!["x1", "x2"]
        );

        // SWAPDB brings a list in under a blocked key.
        p.cmds(&["FLUSHALL"]);
        p.cmds(&["SELECT", "1"]);
        p.cmds(&["RPUSH", "sk", "hello"]);
        p.cmds(&["SELECT", "0"]);
        let h = pop(&["BRPOP", "sk", "5"]);
        p.cmds(&["SWAPDB", "1", "0"]);
        assert_eq!(
            strs(h.join().unwrap()),
            vec!["sk", "hello"],
            "{}",
            s.label()
        );
    }
}

/// CLIENT UNBLOCK ends a blocking pop (as a timeout, or with -UNBLOCKED)
/// and a WAIT (with its count so far), answers 0 for a client that is not
/// blocked, and checks its reason word, as Redis 7.0's `clientCommand`.
#[test]
fn client_unblock_releases_pops_and_wait() {
    for shards in [1, 2] {
        let s = Server::start(shards);
        let mut p = s.raw();
        let block = |args| blocked(&s, args);
        let (id, h) = block(&["BLPOP", "ub", "0"]);
        assert_eq!(p.cmds(&["CLIENT", "UNBLOCK", &id]).as_int(), Some(1));
        assert_eq!(h.join().unwrap(), common::Resp::NilArray, "{}", s.label());
        let (id, h) = block(&["BZPOPMIN", "ub", "0"]);
        assert_eq!(
            p.cmds(&["CLIENT", "UNBLOCK", &id, "ERROR"]).as_int(),
            Some(1)
        );
        let r = h.join().unwrap();
        assert_eq!(
            r.as_str(),
            "UNBLOCKED client unblocked via CLIENT UNBLOCK",
            "{}",
            s.label()
        );
        assert!(r.is_error());
        // WAIT with no replica: the count so far, 0.
        let (id, h) = block(&["WAIT", "1", "0"]);
        assert_eq!(
            p.cmds(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]).as_int(),
            Some(1)
        );
        assert_eq!(h.join().unwrap().as_int(), Some(0), "{}", s.label());
        // Not blocked, no such client, a bad reason.
        let me = p.cmds(&["CLIENT", "ID"]).as_int().unwrap().to_string();
        assert_eq!(p.cmds(&["CLIENT", "UNBLOCK", &me]).as_int(), Some(0));
        assert_eq!(p.cmds(&["CLIENT", "UNBLOCK", "999999"]).as_int(), Some(0));
        let e = p.cmds(&["CLIENT", "UNBLOCK", &me, "LATER"]);
        assert_eq!(
            e.as_str(),
            "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
        );
        // An unblocked client blocks again as usual.
        let (_, h) = block(&["BLPOP", "ub", "5"]);
        p.cmds(&["RPUSH", "ub", "x"]);
        let got: Vec<String> = h
            .join()
            .unwrap()
            .array()
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(got, vec!["ub", "x"]);
    }
}

/// The replies to a pipeline's requests before a blocking pop go out at
/// once, as Redis's do, while the pop waits: the driver holds replies back
/// only for a remote batch, which cannot block (`net::Conn`'s
/// `hold_replies`). Every order of the keys' shards is tried: the writes
/// on the connection's shard, on the other, or both, and the pop's list
/// on either. The same holds before a WAIT and before a write that CLIENT
/// PAUSE WRITE holds back.
#[test]
fn replies_before_a_waiting_command_go_out() {
    for shards in [1, 2] {
        let s = Server::start(shards);
        let ks = common::keys_over_shards("held", 2, 2);
        for (round, list) in [&ks[0], &ks[1]].into_iter().enumerate() {
            let mut c = s.raw();
            let mut req = Vec::new();
            for k in &ks[2..] {
                req.extend(common::encode(&[b"INCR", k.as_bytes()]));
            }
            req.extend(common::encode(&[b"BLPOP", list.as_bytes(), b"0"]));
            c.set_read_timeout(Duration::from_secs(3));
            c.send(&req);
            for k in &ks[2..] {
                let got = c.read().as_int();
                assert_eq!(got, Some(round as i64 + 1), "{}: INCR {k}", s.label());
            }
            let mut p = s.raw();
            p.cmds(&["RPUSH", list, "v"]);
            let got: Vec<String> = c.read().array().iter().map(|v| v.as_str()).collect();
            assert_eq!(got, vec![list.to_string(), "v".into()], "{}", s.label());
        }
        // WAIT for a replica that does not exist waits out its timeout.
        let mut c = s.raw();
        c.set_read_timeout(Duration::from_secs(2));
        let mut req = Vec::new();
        for k in &ks {
            req.extend(common::encode(&[b"INCR", k.as_bytes()]));
        }
        req.extend(common::encode(&[b"WAIT", b"1", b"3000"]));
        c.send(&req);
        for k in &ks {
            assert!(
                c.read().as_int().is_some(),
                "{}: INCR {k} before WAIT",
                s.label()
            );
        }
        c.set_read_timeout(Duration::from_secs(10));
        assert_eq!(c.read().as_int(), Some(0), "{}: WAIT", s.label());
        // Reads before a write that CLIENT PAUSE WRITE holds.
        let mut p = s.raw();
        assert_eq!(p.cmds(&["CLIENT", "PAUSE", "3000", "WRITE"]).as_str(), "OK");
        c.set_read_timeout(Duration::from_secs(2));
        let mut req = Vec::new();
        for k in &ks {
            req.extend(common::encode(&[b"GET", k.as_bytes()]));
        }
        req.extend(common::encode(&[b"INCR", ks[0].as_bytes()]));
        c.send(&req);
        for k in &ks {
            assert!(
                !c.read().is_error(),
                "{}: GET {k} before the paused write",
                s.label()
            );
        }
        assert_eq!(p.cmds(&["CLIENT", "UNPAUSE"]).as_str(), "OK");
        c.set_read_timeout(Duration::from_secs(10));
        assert!(
            c.read().as_int().is_some(),
            "{}: the paused INCR",
            s.label()
        );
    }
}
