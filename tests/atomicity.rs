//! Cross-shard isolation hammer on a 4-shard server: multi-key commands must
//! be all-or-nothing as seen by every other client. A reader must never see a
//! half-applied MSET, a RENAME where the key is in both or neither place, or a
//! multi-key DEL that removed only some keys.
//!
//! Stock Redis is single-threaded, so it passes trivially; tether has to
//! coordinate its shards to do the same.
mod common;

use common::Server;
use redis::Connection;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const RUN_FOR: Duration = Duration::from_secs(5);

/// 8 keys, two on each of the 4 shards (DESIGN.md key ownership).
fn keys(prefix: &str) -> Vec<String> {
    common::keys_over_shards(prefix, 4, 2)
}

/// Two keys on different shards.
fn pair(prefix: &str) -> (String, String) {
    let k = common::keys_over_shards(prefix, 4, 1);
    (k[0].clone(), k[1].clone())
}

fn query<T: redis::FromRedisValue>(c: &mut Connection, cmd: &redis::Cmd, what: &str) -> T {
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{what} failed: {}", common::describe(&e)))
}

#[test]
fn mset_mget_never_half_applied() {
    let s = Server::start(4);
    let ks = keys("iso:k");
    {
        let mut c = s.client();
        let mut init = redis::cmd("MSET");
        for k in &ks {
            init.arg(k).arg("init");
        }
        let _: () = query(&mut c, &init, "initial MSET");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();

    for w in 0..4u64 {
        let (ks, stop, writes) = (ks.clone(), stop.clone(), writes.clone());
        let mut c = s.client();
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("w{w}-{n}");
                let mut cmd = redis::cmd("MSET");
                // Vary the key order so shards are visited in different orders.
                let rot = (n as usize) % ks.len();
                for i in 0..ks.len() {
                    cmd.arg(&ks[(i + rot) % ks.len()]).arg(&v);
                }
                let _: () = query(&mut c, &cmd, "MSET");
                n += 1;
            }
            writes.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for _ in 0..4 {
        let (ks, stop, reads) = (ks.clone(), stop.clone(), reads.clone());
        let mut c = s.client();
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            let mut cmd = redis::cmd("MGET");
            for k in &ks {
                cmd.arg(k);
            }
            while !stop.load(Ordering::Relaxed) {
                let vals: Vec<Option<String>> = query(&mut c, &cmd, "MGET");
                assert_eq!(vals.len(), 8);
                let first = vals[0].clone();
                assert!(first.is_some(), "MGET saw a missing key: {vals:?}");
                assert!(
                    vals.iter().all(|v| *v == first),
                    "MGET saw a half-applied MSET (torn read across shards): {vals:?}"
                );
                n += 1;
            }
            reads.fetch_add(n, Ordering::Relaxed);
        }));
    }
    thread::sleep(RUN_FOR);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("worker panicked (see message above)");
    }
    let (w, r) = (
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
    );
    eprintln!("{}: {w} MSETs, {r} MGETs", s.label());
    assert!(
        w > 100 && r > 100,
        "too little work to mean anything: {w} writes, {r} reads"
    );
}

#[test]
fn rename_and_del_are_atomic_across_shards() {
    let s = Server::start(4);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();

    // RENAME ping-pong between two keys on different shards: at every
    // instant exactly one of them exists, holding the payload.
    let (left, right) = pair("rn:");
    {
        let mut c = s.client();
        let _: () = query(&mut c, redis::cmd("SET").arg(&left).arg("payload"), "SET");
    }
    {
        let (stop, left, right) = (stop.clone(), left.clone(), right.clone());
        let mut c = s.client();
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (a, b) = if n.is_multiple_of(2) {
                    (&left, &right)
                } else {
                    (&right, &left)
                };
                let _: () = query(&mut c, redis::cmd("RENAME").arg(a).arg(b), "RENAME");
                n += 1;
            }
            n
        }));
    }
    // Multi-key DEL vs MSET of 8 keys: readers see all 8 or none.
    let dks = keys("del:k");
    {
        let (stop, dks) = (stop.clone(), dks.clone());
        let mut c = s.client();
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            let mut mset = redis::cmd("MSET");
            for k in &dks {
                mset.arg(k).arg("x");
            }
            let mut del = redis::cmd("DEL");
            for k in &dks {
                del.arg(k);
            }
            while !stop.load(Ordering::Relaxed) {
                let _: () = query(&mut c, &mset, "MSET");
                let d: i64 = query(&mut c, &del, "DEL");
                assert_eq!(
                    d, 8,
                    "DEL of 8 just-set keys (only this thread writes them)"
                );
                n += 1;
            }
            n
        }));
    }
    for _ in 0..3 {
        let (stop, dks) = (stop.clone(), dks.clone());
        let (left, right) = (left.clone(), right.clone());
        let mut c = s.client();
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            let mut exists = redis::cmd("EXISTS");
            for k in &dks {
                exists.arg(k);
            }
            let mut mget = redis::cmd("MGET");
            for k in &dks {
                mget.arg(k);
            }
            while !stop.load(Ordering::Relaxed) {
                let e: i64 = query(
                    &mut c,
                    redis::cmd("EXISTS").arg(&left).arg(&right),
                    "EXISTS",
                );
                assert_eq!(e, 1, "RENAME seen half-done: {e} of {left}/{right} exist");
                let v: Vec<Option<String>> =
                    query(&mut c, redis::cmd("MGET").arg(&left).arg(&right), "MGET");
                assert_eq!(
                    v.iter().flatten().collect::<Vec<_>>(),
                    ["payload"],
                    "RENAME seen half-done by MGET: {v:?}"
                );
                let e: i64 = query(&mut c, &exists, "EXISTS");
                assert!(
                    e == 0 || e == 8,
                    "multi-key DEL/MSET seen half-done: {e} of 8 exist"
                );
                let v: Vec<Option<String>> = query(&mut c, &mget, "MGET");
                let present = v.iter().filter(|x| x.is_some()).count();
                assert!(
                    present == 0 || present == 8,
                    "MGET saw {present} of 8 keys: {v:?}"
                );
                n += 1;
            }
            n
        }));
    }
    let start = Instant::now();
    thread::sleep(RUN_FOR);
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked (see above)"))
        .collect();
    eprintln!(
        "{}: ops per thread {counts:?} in {:?}",
        s.label(),
        start.elapsed()
    );
    assert!(
        counts.iter().all(|&n| n > 50),
        "too little work to mean anything: {counts:?}"
    );
}

#[test]
fn key_placement_helper_matches_redis_cluster_slots() {
    // Known values: the CRC16-XMODEM check value and `CLUSTER KEYSLOT` results.
    assert_eq!(common::crc16(b"123456789"), 0x31C3);
    assert_eq!(common::key_slot(b"foo"), 12182);
    assert_eq!(common::key_slot(b"somekey"), 11058);
    assert_eq!(common::key_slot(b"{foo}bar"), 12182);
    assert_eq!(common::key_slot(b"{}foo"), common::crc16(b"{}foo") % 16384);
    let ks = keys("iso:k");
    let shards: Vec<usize> = ks.iter().map(|k| common::shard_of(k, 4)).collect();
    assert_eq!(shards, [0, 1, 2, 3, 0, 1, 2, 3]);
}

/// The shard serving a tether connection (`CLIENT INFO`'s `shard=`).
fn home_shard(c: &mut common::RawConn) -> usize {
    c.send_cmd(&[b"CLIENT", b"INFO"]);
    let info = c.read().as_str();
    info.split_whitespace()
        .find_map(|f| f.strip_prefix("shard="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shard= in {info}"))
}

/// Runs `f(t, connection)` for `t` in `0..n`, each on its own connection
/// and thread, all at once; fails if any of them panicked.
fn on_conns<F>(s: &Server, n: usize, f: F)
where
    F: Fn(usize, common::RawConn) + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|t| {
            let (c, f) = (s.raw(), f.clone());
            thread::spawn(move || f(t, c))
        })
        .collect();
    for t in threads {
        t.join().expect("client thread panicked");
    }
}

/// Many connections pipelining to keys on the other shard at once must
/// each get exactly their own replies, in order, through the driver's
/// cross-shard batches (`net::remote_groups`).
#[test]
fn concurrent_remote_batches_get_their_own_replies() {
    let s = Server::start(2);
    const CONNS: usize = 12;
    const ROUNDS: i64 = 300;
    on_conns(&s, CONNS, move |t, mut c| {
        let home = home_shard(&mut c);
        // Counters owned by the other shard, distinct per connection.
        let keys: Vec<String> = (0..)
            .map(|i| format!("remote:{t}:{i}"))
            .filter(|k| common::shard_of(k, 2) != home)
            .take(4)
            .collect();
        let step = t as i64 + 1;
        let step_arg = step.to_string();
        for round in 1..=ROUNDS {
            // Depth 1 and depth 4 pipelines alternate.
            let depth = if round % 2 == 0 { 4 } else { 1 };
            let mut req = Vec::new();
            for k in &keys[..depth] {
                req.extend(common::encode(&[
                    b"INCRBY",
                    k.as_bytes(),
                    step_arg.as_bytes(),
                ]));
            }
            c.send(&req);
            for (i, k) in keys[..depth].iter().enumerate() {
                // keys[0] is bumped every round, the others on even ones.
                let want = step * if i == 0 { round } else { round / 2 };
                let got = c.read().as_int();
                assert_eq!(got, Some(want), "conn {t} round {round} key {k}");
            }
        }
    });
}

/// A request for another shard must wake that shard's sleeping driver, and
/// its reply must wake ours: `shard::mesh` writes a driver's eventfd only
/// when the driver announced its sleep. With `hz 1` the once-a-second cron
/// tick is the only other thing that would ever run a sleeping driver, so a
/// lost wake-up shows as a request taking up to a second. Each request
/// follows a pause in which both drivers fall asleep.
#[test]
fn remote_requests_wake_sleeping_shards() {
    let s = Server::spawn(common::Kind::Tether, 2, &["--hz", "1"]);
    let mut c = s.raw();
    let home = home_shard(&mut c);
    let key = (0..)
        .map(|i| format!("sleepy:{i}"))
        .find(|k| common::shard_of(k, 2) != home)
        .expect("a remote key");
    const ROUNDS: usize = 30;
    let mut slow = Vec::new();
    let started = Instant::now();
    for i in 1..=ROUNDS {
        thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        c.send_cmd(&[b"INCR", key.as_bytes()]);
        assert_eq!(c.read().as_int(), Some(i as i64));
        let took = t.elapsed();
        if took > Duration::from_millis(300) {
            slow.push(took);
        }
    }
    // Lost wake-ups would cost about half a second each (the wait for the
    // next tick), so nearly every round would be slow; allow a few rounds
    // to be slowed by a loaded machine.
    assert!(
        slow.len() <= 3,
        "{} of {ROUNDS} remote requests took over 300 ms ({slow:?}, {:?} in all): \
         a sleeping shard was not woken",
        slow.len(),
        started.elapsed()
    );
}

/// Pipelines that mix keys of the connection's own shard and of others
/// (the driver runs its own part at once, sends each other shard its part
/// and merges the replies in order, `net::remote_groups`) must answer
/// every request in order, with each key's commands applied in order. With
/// 4 shards a pipeline spans up to four.
#[test]
fn mixed_pipelines_answer_in_request_order() {
    common::for_shards(&[2, 4], mixed_pipelines);
}

fn mixed_pipelines(s: &Server) {
    let shards = s.shards;
    const CONNS: usize = 8;
    const ROUNDS: i64 = 200;
    // Which of 5 keys each request touches: 0 and 1 on the connection's
    // shard, 2, 3 and 4 on the next, the previous and the opposite one (with
    // 2 shards: the other, the other and this one).
    const PATTERNS: [&[usize]; 7] = [
        &[2, 0],
        &[0, 2, 1, 3],
        &[2, 3, 0],
        &[0, 1, 2],
        &[3, 0, 3, 1, 2],
        &[4, 2, 3, 4, 0],
        &[3, 4, 2],
    ];
    on_conns(s, CONNS, move |t, mut c| {
        let home = home_shard(&mut c);
        // `tag` keeps the keys apart where the shards coincide.
        let on = |tag: &'static str, shard: usize, n: usize| {
            (0..)
                .map(move |i| format!("mixed:{t}:{tag}:{i}"))
                .filter(move |k| common::shard_of(k, shards) == shard)
                .take(n)
        };
        let keys: Vec<String> = on("home", home, 2)
            .chain(on("next", (home + 1) % shards, 1))
            .chain(on("prev", (home + shards - 1) % shards, 1))
            .chain(on("opposite", (home + 2) % shards, 1))
            .collect();
        let mut counts = [0i64; 5];
        for round in 0..ROUNDS {
            let pattern = PATTERNS[round as usize % PATTERNS.len()];
            let mut req = Vec::new();
            for &k in pattern {
                req.extend(common::encode(&[b"INCR", keys[k].as_bytes()]));
            }
            // A read of the first key after its writes.
            req.extend(common::encode(&[b"GET", keys[pattern[0]].as_bytes()]));
            c.send(&req);
            for &k in pattern {
                counts[k] += 1;
                let got = c.read().as_int();
                assert_eq!(got, Some(counts[k]), "conn {t} round {round} key {k}");
            }
            let got = c.read().as_str();
            assert_eq!(
                got,
                counts[pattern[0]].to_string(),
                "conn {t} round {round} GET"
            );
        }
    });
}

/// Requests sent to another shard from the network driver carry their
/// arguments uncounted, borrowing the request buffer they were read into
/// (`Shard::post_conn_batch`); the connection's shard keeps that buffer
/// until every owner's reply is back (with 4 shards a pipeline goes to up
/// to three, which answer at different times). Here each client streams pipelines
/// without waiting, so new input keeps arriving while the owner still runs
/// the last batch: a buffer let go too early would be reused under the
/// owner, which would then store, or look up, bytes of later requests.
/// Every `GET` must return the value its `SET` just stored, and every key
/// must end with its last value.
#[test]
fn remote_batches_keep_their_request_bytes() {
    common::for_shards(&[2, 4], stream_remote_writes);
}

fn stream_remote_writes(s: &Server) {
    let shards = s.shards;
    const CONNS: usize = 6;
    const ROUNDS: usize = 1500;
    const KEYS: usize = 24;
    let value = |t: usize, round: usize, j: usize| -> String {
        // 10 to about 400 bytes, different for every write.
        let pad = "x".repeat((round * 7 + j * 13) % 390);
        format!("v:{t}:{round}:{j}:{pad}")
    };
    on_conns(s, CONNS, move |t, mut c| {
        let home = home_shard(&mut c);
        // Mostly other shards' keys, a few of this one's.
        let keys: Vec<String> = (0..)
            .map(|i| format!("borrow:{t}:{i}"))
            .filter(|k| common::shard_of(k, shards) != home || k.ends_with('7'))
            .take(KEYS)
            .collect();
        let mut writer = c.stream.try_clone().expect("clone stream");
        let wkeys = keys.clone();
        let sender = thread::spawn(move || {
            for round in 0..ROUNDS {
                let mut req = Vec::new();
                for j in 0..4 {
                    let k = wkeys[(round * 5 + j) % KEYS].as_bytes();
                    let v = value(t, round, j);
                    req.extend(common::encode(&[b"SET", k, v.as_bytes()]));
                    req.extend(common::encode(&[b"GET", k]));
                }
                writer.write_all(&req).expect("send");
            }
        });
        let mut last = vec![None; KEYS];
        for round in 0..ROUNDS {
            for j in 0..4 {
                let at = (round * 5 + j) % KEYS;
                let want = value(t, round, j);
                assert_eq!(c.read().as_str(), "OK", "conn {t} round {round} SET {j}");
                let got = c.read().as_str();
                assert_eq!(got, want, "conn {t} round {round}: GET {}", keys[at]);
                last[at] = Some(want);
            }
        }
        sender.join().expect("sender panicked");
        for (k, want) in keys.iter().zip(&last) {
            let got = c.cmd(&[b"GET", k.as_bytes()]);
            let want = want.as_ref().map(|w| w.as_bytes());
            assert_eq!(got.as_bytes(), want, "conn {t}: final {k}");
        }
    });
}
