//! tether as a replication REPLICA (issue #6): full sync from a stock
//! `redis-server` 7.0 master holding every RDB encoding, partial resync
//! after a killed link, chained replication (tether → tether → stock),
//! promotion with siblings that continue by PSYNC, the read-only replica's
//! replies and INFO / ROLE, and faults injected by a scripted master in the
//! test itself: corrupt snapshots, a silent master, the stream's offsets.
//!
//! "tether" roles use `Server::start`, so `TETHER_TEST_TARGET=redis` runs
//! the tests with stock Redis in those roles, which is how the expectations
//! themselves are checked. `corrupt_snapshot_rejected` is tether-only: a
//! stock replica flushes its data before it loads a snapshot, so it cannot
//! keep its previous dataset when the snapshot turns out to be corrupt.
//!
//! Every wait polls with a deadline and panics with the last state seen;
//! the harness prints the tail of each server's log when a test panics.
mod common;

use common::{
    Background, KeyData, Kind, RawConn, Resp, Server, StockReplica, assert_same_dataset, describe,
    esc, info_int, info_section, info_value, read_keys, read_reply, scan_all_keys, send_signal,
    stock_tool, target_is_redis, wait_for,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Link up, snapshot transferred and loaded: generous for a loaded 2-core box.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// A replica reconnecting after a dropped link.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers: waiting, INFO, configuration
// ---------------------------------------------------------------------------

fn repl_info(port: u16) -> String {
    info_section(port, "replication")
}

/// (sync_full, sync_partial_ok, sync_partial_err) from INFO stats.
fn sync_counters(port: u16) -> (i64, i64, i64) {
    let st = info_section(port, "stats");
    (
        info_int(&st, "sync_full"),
        info_int(&st, "sync_partial_ok"),
        info_int(&st, "sync_partial_err"),
    )
}

/// Run a command over a fresh raw connection and expect `+OK`.
fn ok(s: &Server, args: &[&str]) {
    let r = RawConn::connect(s.port).cmds(args);
    assert_eq!(
        r,
        Resp::Simple(b"OK".to_vec()),
        "{args:?} on {} :{}",
        s.label(),
        s.port
    );
}

/// Settings for any server that serves replicas here: start a full sync at
/// once (the 7.0 default waits 5 s for more replicas to share a transfer),
/// and a backlog that covers any reconnect in these tests.
fn tune_master(s: &Server) {
    ok(s, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    ok(s, &["CONFIG", "SET", "repl-backlog-size", "64mb"]);
}

/// `REPLICAOF 127.0.0.1 <port>` (or the SLAVEOF alias), expecting +OK.
fn replicaof(replica: &Server, master_port: u16, verb: &str) {
    ok(replica, &[verb, "127.0.0.1", &master_port.to_string()]);
}

/// A "tether" server with extra arguments (stock Redis under
/// `TETHER_TEST_TARGET=redis`, like `Server::start`).
fn start_with(shards: usize, extra: &[&str]) -> Server {
    if target_is_redis() {
        let mut s = Server::spawn(Kind::StockRedis, 1, extra);
        s.shards = shards;
        s
    } else {
        Server::spawn(Kind::Tether, shards, extra)
    }
}

/// Wait until `replica` reports master_link_status:up towards `master_port`.
fn wait_link_up(replica: &Server, master_port: u16, timeout: Duration) {
    wait_for(
        &format!(
            "{} :{} to report master_link_status:up towards :{master_port}",
            replica.label(),
            replica.port
        ),
        timeout,
        || {
            let r = repl_info(replica.port);
            let port = info_value(&r, "master_port").unwrap_or_default();
            match info_value(&r, "master_link_status").as_deref() {
                Some("up") if port == master_port.to_string() => Ok(()),
                other => Err(format!(
                    "master_port {port}, master_link_status {other:?}, \
                     master_sync_in_progress {:?}",
                    info_value(&r, "master_sync_in_progress")
                )),
            }
        },
    );
}

/// Wait until the replica's link is up and its processed offset
/// (slave_repl_offset) equals the master's master_repl_offset, both read
/// in the same poll (a periodic PING may move the master in between).
fn wait_in_sync(master: &Server, replica: &Server) {
    wait_for(
        &format!(
            "{} :{} to catch up with {} :{}",
            replica.label(),
            replica.port,
            master.label(),
            master.port
        ),
        SYNC_TIMEOUT,
        || {
            let r = repl_info(replica.port);
            let link = info_value(&r, "master_link_status").unwrap_or_default();
            if link != "up" {
                return Err(format!("replica master_link_status:{link}"));
            }
            let m = info_int(&repl_info(master.port), "master_repl_offset");
            let ro = info_int(&r, "slave_repl_offset");
            if ro == m {
                Ok(())
            } else {
                Err(format!(
                    "master_repl_offset {m}, replica slave_repl_offset {ro}"
                ))
            }
        },
    );
}

/// Runs `f` for each parameter, all of them even when one fails, then
/// fails with every round's panic message.
fn rounds<T: std::fmt::Debug + Copy + std::panic::RefUnwindSafe>(
    what: &str,
    params: &[T],
    f: fn(T),
) {
    let failed: Vec<String> = params
        .iter()
        .filter_map(|&p| {
            eprintln!("--- round: {what} = {p:?}");
            std::panic::catch_unwind(|| f(p)).err().map(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("[{what} = {p:?}] {msg}")
            })
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

fn assert_no_panic(s: &Server) {
    let logs = s.logs();
    assert!(
        !logs.contains("panicked"),
        "{} :{} panicked:\n{}",
        s.label(),
        s.port,
        tail(&logs, 4000)
    );
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn db_con(port: u16, db: u32) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}")).unwrap();
    let con = c
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to :{port} db {db}: {e}"));
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    con
}

type KeyState = Option<(String, KeyData, i64)>;

/// Every key of `dbs` with its type, value and PTTL, in key order.
fn dataset(port: u16, dbs: &[u32]) -> Vec<(u32, Vec<u8>, KeyState)> {
    let mut out = Vec::new();
    for &db in dbs {
        let mut con = db_con(port, db);
        let keys: Vec<Vec<u8>> = scan_all_keys(&mut con).into_iter().collect();
        let vals = read_keys(&mut con, &keys);
        out.extend(keys.into_iter().zip(vals).map(|(k, v)| (db, k, v)));
    }
    out
}

// ---------------------------------------------------------------------------
// Data: every RDB encoding a 7.0 master writes
// ---------------------------------------------------------------------------

/// Fills `db` of a stock Redis 7.0 master (started with
/// `--enable-debug-command yes`, `list-compress-depth 1`) so that its RDB
/// holds every encoding 7.0 writes, and returns (key, OBJECT ENCODING the
/// master must report) for the keys that pin an encoding down:
///
/// - strings: int (int8/16/32 and 64-bit values, integer-looking keys),
///   embstr, raw, LZF-compressible (2000 x 'a'), incompressible, binary,
///   empty;
/// - lists (always quicklist in 7.0): listpack nodes with every listpack
///   entry encoding (7/13/16/24/32/64-bit ints, 6/12/32-bit strings),
///   many nodes with LZF-compressed interior nodes (compress depth 1), and
///   PLAIN nodes (DEBUG QUICKLIST-PACKED-THRESHOLD);
/// - hashes: listpack, hashtable (by count and by value size);
/// - sets: intset (16/32/64-bit), hashtable (strings, and > 512 ints);
/// - zsets: listpack (int, fractional, infinite scores), skiplist (by count
///   and by member size);
/// - TTLs: ten days out, absolute (year 2100), and a few seconds (they
///   expire during the sync, so the master's DELs are exercised), plus a
///   bulk of 2000 mixed keys.
fn populate_encodings(port: u16, db: u32) -> Vec<(String, &'static str)> {
    let mut con = db_con(port, db);
    let p = format!("d{db}:");
    let mut pins: Vec<(String, &'static str)> = Vec::new();
    let mut pipe = redis::pipe();
    let a2000 = "a".repeat(2000);
    // Incompressible: a byte pattern LZF cannot shorten.
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // Strings.
    let ints: [i64; 12] = [
        0,
        -1,
        127,
        -128,
        32767,
        -32768,
        65536,
        2_147_483_647,
        -2_147_483_648,
        4_294_967_296,
        i64::MAX,
        i64::MIN,
    ];
    for (i, v) in ints.iter().enumerate() {
        let k = format!("{p}int:{i}");
        pipe.cmd("SET").arg(&k).arg(v.to_string()).ignore();
        pins.push((k, "int"));
    }
    for k in ["123", "-45", "100000", "4294967296"] {
        // Integer-looking keys are int-encoded in the RDB too; one per db
        // (the dbs are separate namespaces).
        pipe.cmd("SET").arg(k).arg(format!("intkey-{db}")).ignore();
    }
    pipe.cmd("SET")
        .arg(format!("{p}embstr"))
        .arg("hello")
        .ignore();
    pins.push((format!("{p}embstr"), "embstr"));
    pipe.cmd("SET")
        .arg(format!("{p}float"))
        .arg("3.25")
        .ignore();
    pipe.cmd("SET").arg(format!("{p}lzf")).arg(&a2000).ignore();
    pins.push((format!("{p}lzf"), "raw"));
    pipe.cmd("SET")
        .arg(format!("{p}lzf:abc"))
        .arg("abcdefgh".repeat(500))
        .ignore();
    pipe.cmd("SET")
        .arg(format!("{p}noise"))
        .arg(&noise)
        .ignore();
    pins.push((format!("{p}noise"), "raw"));
    pipe.cmd("SET").arg(format!("{p}empty")).arg("").ignore();
    pipe.cmd("SET")
        .arg(format!("{p}bin:\x00\r\n").as_bytes())
        .arg(&b"\x00\x01\xfe\xff\r\n"[..])
        .ignore();

    // Lists.
    let mut cmd = redis::cmd("RPUSH");
    cmd.arg(format!("{p}list:lpenc"));
    for v in [
        0i64,
        127,
        128,
        -1,
        4095,
        -4096,
        4096,
        32767,
        -32768,
        8_388_607,
        -8_388_608,
        2_147_483_647,
        -2_147_483_648,
        i64::MAX,
        i64::MIN,
    ] {
        cmd.arg(v);
    }
    cmd.arg("x")
        .arg("b".repeat(63))
        .arg("c".repeat(64))
        .arg("d".repeat(4095))
        .arg("e".repeat(4096));
    pipe.add_command(cmd).ignore();
    pins.push((format!("{p}list:lpenc"), "quicklist"));
    pipe.cmd("RPUSH")
        .arg(format!("{p}list:small"))
        .arg("a")
        .arg("b")
        .arg("c")
        .ignore();
    let mut cmd = redis::cmd("RPUSH");
    cmd.arg(format!("{p}list:big"));
    for j in 0..5000 {
        if j % 3 == 0 {
            cmd.arg(j as i64 - 2500);
        } else {
            cmd.arg(format!("item-{j}"));
        }
    }
    pipe.add_command(cmd).ignore();
    pipe.cmd("PEXPIRE")
        .arg(format!("{p}list:big"))
        .arg(864_000_000)
        .ignore();
    let mut cmd = redis::cmd("RPUSH");
    cmd.arg(format!("{p}list:lzfelems"));
    for j in 0..10 {
        cmd.arg(format!("{j}{a2000}"));
    }
    pipe.add_command(cmd).ignore();
    let () = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("populating db {db}: {}", describe(&e)));

    // PLAIN quicklist nodes: elements at or above the packed threshold get
    // a node of their own (7.0 only does this for >= 1 GB unless told).
    let mut pipe = redis::pipe();
    pipe.cmd("DEBUG")
        .arg("QUICKLIST-PACKED-THRESHOLD")
        .arg(1000)
        .ignore();
    pipe.cmd("RPUSH")
        .arg(format!("{p}list:plain"))
        .arg("small-before")
        .arg(&a2000)
        .arg(&noise[..1500])
        .arg("small-after")
        .arg(12345)
        .ignore();
    pipe.cmd("DEBUG")
        .arg("QUICKLIST-PACKED-THRESHOLD")
        .arg(1u64 << 30)
        .ignore();
    let () = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("plain-node list in db {db}: {}", describe(&e)));
    pins.push((format!("{p}list:plain"), "quicklist"));

    let mut pipe = redis::pipe();
    // Hashes.
    pipe.cmd("HSET")
        .arg(format!("{p}hash:lp"))
        .arg("f1")
        .arg("v1")
        .arg("n")
        .arg(42)
        .arg("big")
        .arg(i64::MIN)
        .arg("neg")
        .arg(-7)
        .ignore();
    pins.push((format!("{p}hash:lp"), "listpack"));
    let mut cmd = redis::cmd("HSET");
    cmd.arg(format!("{p}hash:ht"));
    for j in 0..1000 {
        cmd.arg(format!("field-{j}")).arg(if j % 2 == 0 {
            j.to_string()
        } else {
            format!("v{j}")
        });
    }
    pipe.add_command(cmd).ignore();
    pins.push((format!("{p}hash:ht"), "hashtable"));
    pipe.cmd("HSET")
        .arg(format!("{p}hash:bigval"))
        .arg("a")
        .arg(&a2000)
        .arg("b")
        .arg("short")
        .ignore();
    pins.push((format!("{p}hash:bigval"), "hashtable"));
    pipe.cmd("PEXPIRE")
        .arg(format!("{p}hash:ht"))
        .arg(864_000_000)
        .ignore();

    // Sets.
    pipe.cmd("SADD")
        .arg(format!("{p}set:int16"))
        .arg(1)
        .arg(2)
        .arg(-300)
        .ignore();
    pins.push((format!("{p}set:int16"), "intset"));
    pipe.cmd("SADD")
        .arg(format!("{p}set:int32"))
        .arg(70000)
        .arg(-70000)
        .arg(5)
        .ignore();
    pins.push((format!("{p}set:int32"), "intset"));
    pipe.cmd("SADD")
        .arg(format!("{p}set:int64"))
        .arg(i64::MIN)
        .arg(i64::MAX)
        .arg(0)
        .ignore();
    pins.push((format!("{p}set:int64"), "intset"));
    pipe.cmd("SADD")
        .arg(format!("{p}set:str"))
        .arg("alpha")
        .arg("beta")
        .arg("gamma")
        .ignore();
    pins.push((format!("{p}set:str"), "hashtable"));
    let mut cmd = redis::cmd("SADD");
    cmd.arg(format!("{p}set:manyints"));
    for j in 0..600 {
        cmd.arg(j * 3 - 900);
    }
    pipe.add_command(cmd).ignore();
    pins.push((format!("{p}set:manyints"), "hashtable"));

    // Sorted sets.
    pipe.cmd("ZADD")
        .arg(format!("{p}zset:lp"))
        .arg(1)
        .arg("one")
        .arg("-2.5")
        .arg("neg")
        .arg("inf")
        .arg("top")
        .arg("-inf")
        .arg("bottom")
        .arg("0.1")
        .arg("tenth")
        .arg(1_000_000_000_000i64)
        .arg("huge")
        .ignore();
    pins.push((format!("{p}zset:lp"), "listpack"));
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(format!("{p}zset:sl"));
    for j in 0..500 {
        let score = if j % 10 == 0 { j / 10 } else { j } as f64 / 3.0;
        cmd.arg(score).arg(format!("m{j}"));
    }
    pipe.add_command(cmd).ignore();
    pins.push((format!("{p}zset:sl"), "skiplist"));
    pipe.cmd("ZADD")
        .arg(format!("{p}zset:bigmember"))
        .arg(1)
        .arg(&a2000)
        .arg(2)
        .arg("x")
        .ignore();
    pins.push((format!("{p}zset:bigmember"), "skiplist"));
    pipe.cmd("PEXPIRE")
        .arg(format!("{p}zset:sl"))
        .arg(864_000_000)
        .ignore();

    // TTLs, absolute and short.
    pipe.cmd("SET")
        .arg(format!("{p}exat"))
        .arg("absolute")
        .arg("EXAT")
        .arg(4_102_444_800u64) // 2100-01-01
        .ignore();
    for i in 0..50 {
        pipe.cmd("SET")
            .arg(format!("{p}short:{i}"))
            .arg(i)
            .arg("PX")
            .arg(1000 + (i % 20) * 100)
            .ignore();
    }
    // A bulk of mixed keys: ints, short strings, compressible values, TTLs.
    for i in 0..2000 {
        let k = format!("{p}k:{i}");
        match i % 10 {
            0 => pipe.cmd("SET").arg(&k).arg(format!("{i}{a2000}")),
            1..=3 => pipe.cmd("SET").arg(&k).arg(i * 7919),
            _ => pipe.cmd("SET").arg(&k).arg(format!("value-{i}")),
        };
        pipe.ignore();
        if i % 4 == 0 {
            pipe.cmd("PEXPIRE")
                .arg(&k)
                .arg(864_000_000 + i * 1000)
                .ignore();
        }
    }
    let () = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("populating db {db}: {}", describe(&e)));
    pins
}

/// Start a stock master able to produce every encoding (DEBUG enabled,
/// compressed quicklist interiors).
fn stock_master() -> Server {
    let m = Server::spawn(
        Kind::StockRedis,
        1,
        &[
            "--enable-debug-command",
            "yes",
            "--list-compress-depth",
            "1",
        ],
    );
    tune_master(&m);
    m
}

/// The pinned keys must have the encodings the test is about.
fn check_encodings(port: u16, db: u32, pins: &[(String, &'static str)]) {
    let mut con = db_con(port, db);
    let mut seen = std::collections::BTreeSet::new();
    for (k, want) in pins {
        let got: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(k)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("OBJECT ENCODING {k}: {}", describe(&e)));
        assert_eq!(
            &got, want,
            "the master stores {k} as {got}, the test needs {want}"
        );
        seen.insert(got);
    }
    for enc in [
        "int",
        "embstr",
        "raw",
        "quicklist",
        "listpack",
        "hashtable",
        "intset",
        "skiplist",
    ] {
        assert!(seen.contains(enc), "no key with encoding {enc} in db {db}");
    }
    // The plain-node list really has a node per big element.
    let dbg: String = redis::cmd("DEBUG")
        .arg("OBJECT")
        .arg(format!("d{db}:list:plain"))
        .query(&mut con)
        .unwrap_or_else(|e| panic!("DEBUG OBJECT: {}", describe(&e)));
    assert!(
        dbg.contains("ql_nodes:4"),
        "list:plain should have 4 quicklist nodes (packed, plain, plain, packed): {dbg}"
    );
}

// ---------------------------------------------------------------------------
// Background writers
// ---------------------------------------------------------------------------

fn benchmark(port: u16, tests: &str, n: u32) -> Background {
    Background::spawn(
        Command::new(stock_tool("redis-benchmark")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            tests,
            "-r",
            "10000",
            "-n",
            &n.to_string(),
            "-q",
            "-e",
        ]),
        "redis-benchmark",
    )
}

fn finish_benchmark(bench: Background) {
    let out = bench.finish(Duration::from_secs(300));
    eprintln!("redis-benchmark:\n{out}");
    assert!(
        !out.to_lowercase().contains("err"),
        "redis-benchmark saw error replies from the master:\n{out}"
    );
}

/// A thread writing to `dbs` of `port` until stopped. Besides plain
/// overwrites it sends what a replica must apply with care: multi-key
/// commands whose keys land on different tether shards (MSET, DEL, RENAME,
/// LMOVE, SMOVE, SUNIONSTORE), commands the master rewrites before
/// propagating (SET EX → PXAT, EXPIRE → PEXPIREAT, INCRBYFLOAT → SET,
/// HINCRBYFLOAT → HSET, SPOP → SREM), keys that expire (→ DEL),
/// MULTI/EXEC, and with `lua` an EVAL (propagated as MULTI/EXEC in 7.0).
struct Writer {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(port: u16, dbs: &[u32], lua: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (st, count) = (stop.clone(), ops.clone());
        let dbs = dbs.to_vec();
        let handle = thread::spawn(move || {
            let mut cons: Vec<redis::Connection> = dbs.iter().map(|&d| db_con(port, d)).collect();
            let mut n: u64 = 0;
            while !st.load(Ordering::Relaxed) {
                for con in cons.iter_mut() {
                    let mut p = redis::pipe();
                    for _ in 0..10 {
                        n += 1;
                        p.cmd("RPUSH").arg("w:journal").arg(n).ignore();
                        p.cmd("INCR").arg("w:counter").ignore();
                        p.cmd("SET").arg(format!("w:s:{}", n % 997)).arg(n).ignore();
                        p.cmd("HSET").arg("w:hash").arg(n % 301).arg(n).ignore();
                        p.cmd("SADD").arg("w:set").arg(n % 701).ignore();
                        p.cmd("ZADD")
                            .arg("w:zset")
                            .arg(n as f64 / 7.0)
                            .arg(n % 257)
                            .ignore();
                        p.cmd("SET")
                            .arg(format!("w:ex:{}", n % 50))
                            .arg(n)
                            .arg("EX")
                            .arg(1000)
                            .ignore();
                        p.cmd("SET")
                            .arg(format!("w:tmp:{}", n % 100))
                            .arg(n)
                            .arg("PX")
                            .arg(200)
                            .ignore();
                        p.cmd("EXPIRE")
                            .arg(format!("w:s:{}", (n + 1) % 997))
                            .arg(5000)
                            .ignore();
                        p.cmd("INCRBYFLOAT").arg("w:float").arg("0.5").ignore();
                        p.cmd("HINCRBYFLOAT")
                            .arg("w:hf")
                            .arg(n % 7)
                            .arg("1.25")
                            .ignore();
                        p.cmd("MSET")
                            .arg(format!("w:m:{}", n % 13))
                            .arg(n)
                            .arg(format!("w:m:{}", 13 + n % 17))
                            .arg(n)
                            .ignore();
                        p.cmd("RPUSH").arg("w:src").arg(n).ignore();
                        p.cmd("LMOVE")
                            .arg("w:src")
                            .arg("w:dst")
                            .arg("LEFT")
                            .arg("RIGHT")
                            .ignore();
                        p.cmd("SADD").arg("w:set2").arg(n % 50).ignore();
                        p.cmd("SMOVE")
                            .arg("w:set2")
                            .arg("w:set3")
                            .arg((n + 25) % 50)
                            .ignore();
                        p.cmd("SET").arg("w:ra").arg(n).ignore();
                        p.cmd("RENAME")
                            .arg("w:ra")
                            .arg(format!("w:rb:{}", n % 5))
                            .ignore();
                        p.cmd("SET").arg("w:d1").arg(n).ignore();
                        p.cmd("DEL").arg("w:d1").arg("w:d2").arg("w:d3").ignore();
                        if n.is_multiple_of(10) {
                            p.cmd("SUNIONSTORE")
                                .arg("w:union")
                                .arg("w:set2")
                                .arg("w:set3")
                                .ignore();
                            p.cmd("SPOP").arg("w:set3").ignore();
                        }
                        if lua && n.is_multiple_of(5) {
                            p.cmd("EVAL")
                                .arg(
                                    "redis.call('incr', KEYS[1]); \
                                     return redis.call('rpush', KEYS[2], ARGV[1])",
                                )
                                .arg(2)
                                .arg("w:lua")
                                .arg("w:lualist")
                                .arg(n)
                                .ignore();
                        }
                    }
                    let () = p
                        .query(con)
                        .unwrap_or_else(|e| panic!("writer: {}", describe(&e)));
                    // MULTI/EXEC: both effects or neither.
                    let mut tx = redis::pipe();
                    tx.atomic()
                        .cmd("INCR")
                        .arg("w:tx:count")
                        .ignore()
                        .cmd("RPUSH")
                        .arg("w:tx:list")
                        .arg(n)
                        .ignore();
                    let () = tx
                        .query(con)
                        .unwrap_or_else(|e| panic!("writer MULTI/EXEC: {}", describe(&e)));
                    count.fetch_add(1, Ordering::Relaxed);
                    // A steady stream, not a flood: the backlogs (64 MB)
                    // must cover a reconnect.
                    thread::sleep(Duration::from_millis(3));
                }
            }
        });
        Writer {
            stop,
            ops,
            handle: Some(handle),
        }
    }

    fn rounds(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Wait until at least `more` further pipelines went through.
    fn wait_for_more(&self, more: u64) {
        let target = self.rounds() + more;
        wait_for(
            "the writer to make progress",
            Duration::from_secs(60),
            || {
                if self.rounds() >= target {
                    Ok(())
                } else {
                    Err(format!("{} of {target} pipelines", self.rounds()))
                }
            },
        );
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.handle.take().unwrap().join() {
            std::panic::resume_unwind(e);
        }
        self.rounds()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// 1. Full sync from a stock master
// ---------------------------------------------------------------------------

/// A stock master holding every encoding in dbs 0, 5 and 15 (checked with
/// OBJECT ENCODING) gets a 4-shard tether replica by REPLICAOF while a
/// writer runs (so the snapshot is cut mid-stream); once the link is up,
/// redis-benchmark writes concurrently. The replica must reach the
/// master's offset and hold its data key by key, after one full sync.
#[test]
fn stock_master_to_tether_replica_every_encoding() {
    let master = stock_master();
    let dbs = [0, 5, 15];
    for db in dbs {
        let pins = populate_encodings(master.port, db);
        check_encodings(master.port, db, &pins);
    }
    let replica = Server::start(4);
    let writer = Writer::start(master.port, &[5, 15], true);
    writer.wait_for_more(100);

    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    let mut bench = benchmark(master.port, "set,incr,lpush,sadd,hset,zadd", 50_000);
    writer.wait_for_more(200);
    eprintln!("benchmark running with the link up: {}", bench.is_running());
    finish_benchmark(bench);
    let rounds = writer.stop();
    eprintln!("writer made {rounds} pipelines");

    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &dbs);
    let (full, _, _) = sync_counters(master.port);
    assert_eq!(full, 1, "exactly one full sync expected");
    let mut r = replica.client();
    let n: i64 = redis::cmd("LLEN")
        .arg("mylist")
        .query(&mut r)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(n > 0, "the replica has no benchmark list");
    assert_no_panic(&replica);
}

// ---------------------------------------------------------------------------
// 2. Partial resync
// ---------------------------------------------------------------------------

/// With writes flowing, the link between a stock master and a tether
/// replica is cut three ways: `CLIENT KILL TYPE replica` and `... slave` on
/// the master, `CLIENT KILL TYPE master` on the replica. Each time the
/// replica must reconnect with a partial resync (the master's
/// sync_partial_ok grows, sync_full does not) and end with its data.
/// Commands of many arguments in the master's stream (one alone, one
/// inside MULTI behind a small command) reach the replica over many reads;
/// the replica parses each once, going on where the last read left it,
/// and applies them whole.
#[test]
fn big_commands_in_the_stream() {
    let m = stock_master();
    let r = start_with(1, &[]);
    replicaof(&r, m.port, "REPLICAOF");
    wait_link_up(&r, m.port, SYNC_TIMEOUT);
    let n = 100_000;
    let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    let mut sadd: Vec<Vec<u8>> = vec![b"SADD".to_vec(), b"bigset".to_vec()];
    for i in 0..n {
        mset.push(format!("bk{i}").into_bytes());
        mset.push(format!("v{i}").into_bytes());
        sadd.push(format!("member-{i}").into_bytes());
    }
    let enc = |a: &[Vec<u8>]| common::encode(&a.iter().map(|x| x.as_slice()).collect::<Vec<_>>());
    let mut c = m.raw();
    c.send(&enc(&mset));
    c.send(&common::encode(&[b"MULTI"]));
    c.send(&common::encode(&[b"SET", b"before", b"1"]));
    c.send(&enc(&sadd));
    c.send(&common::encode(&[b"EXEC"]));
    for _ in 0..5 {
        let _ = c.read();
    }
    wait_in_sync(&m, &r);
    let mut con = db_con(r.port, 0);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, n as i64 + 2);
    let v: String = redis::cmd("GET").arg("bk99999").query(&mut con).unwrap();
    assert_eq!(v, "v99999");
    let card: i64 = redis::cmd("SCARD").arg("bigset").query(&mut con).unwrap();
    assert_eq!(card, n as i64);
    assert_no_panic(&r);
}

#[test]
fn partial_resync_after_link_kill() {
    let master = stock_master();
    let pins = populate_encodings(master.port, 0);
    check_encodings(master.port, 0, &pins);
    let replica = Server::start(4);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_in_sync(&master, &replica);
    let (full0, partial0, _) = sync_counters(master.port);
    assert_eq!(full0, 1, "one full sync to start with");

    let writer = Writer::start(master.port, &[0, 5], true);
    writer.wait_for_more(100);
    let kills: [(&Server, &str); 3] = [
        (&master, "replica"),
        (&master, "slave"),
        (&replica, "master"),
    ];
    for (round, (on, kind)) in kills.into_iter().enumerate() {
        let killed = RawConn::connect(on.port).cmds(&["CLIENT", "KILL", "TYPE", kind]);
        assert_eq!(
            killed,
            Resp::Int(1),
            "CLIENT KILL TYPE {kind} on {} should kill the one replication link",
            on.label()
        );
        writer.wait_for_more(100);
        let want = partial0 + round as i64 + 1;
        wait_for(
            &format!(
                "partial resync #{} after CLIENT KILL TYPE {kind}",
                round + 1
            ),
            RECONNECT_TIMEOUT,
            || {
                let (full, partial, err) = sync_counters(master.port);
                if full != full0 {
                    panic!(
                        "CLIENT KILL TYPE {kind} led to a full sync (sync_full {full0} -> {full}, \
                         sync_partial_err {err}); the replica's PSYNC should have continued"
                    );
                }
                if partial >= want {
                    Ok(())
                } else {
                    Err(format!("sync_partial_ok {partial}, want {want}"))
                }
            },
        );
        wait_link_up(&replica, master.port, RECONNECT_TIMEOUT);
        writer.wait_for_more(100);
    }
    let rounds = writer.stop();
    eprintln!("writer made {rounds} pipelines");
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0, 5]);
    let (full1, partial1, _) = sync_counters(master.port);
    assert_eq!(full1, full0, "no full sync expected");
    assert_eq!(partial1, partial0 + 3, "one partial resync per kill");
    assert_no_panic(&replica);
}

// ---------------------------------------------------------------------------
// 3. Chained replication
// ---------------------------------------------------------------------------

/// Reads (master_replid, master_repl_offset) of each server in one pass.
fn ids_and_offsets(servers: &[&Server]) -> Vec<(String, i64)> {
    servers
        .iter()
        .map(|s| {
            let r = repl_info(s.port);
            (
                info_value(&r, "master_replid").unwrap_or_default(),
                info_int(&r, "master_repl_offset"),
            )
        })
        .collect()
}

/// tether master (2 shards) → tether replica (4 shards, started with
/// `--replicaof`) → stock replica, with writes on the master the whole
/// time (the stock replica's full sync from the middle happens under the
/// stream). A chained replica proxies the master's bytes verbatim, so at
/// the end all three show the same master_replid and master_repl_offset
/// and hold the same data. A killed lower link resumes by PSYNC.
#[test]
fn tether_chain() {
    let top = Server::start(2);
    tune_master(&top);
    let pins = populate_small(top.port, 0);
    assert!(pins > 0);
    let writer = Writer::start(top.port, &[0, 3], false);
    writer.wait_for_more(100);

    let target = format!("127.0.0.1 {}", top.port);
    let port_s = top.port.to_string();
    let mid = if target_is_redis() {
        start_with(4, &["--replicaof", "127.0.0.1", &port_s])
    } else {
        // tether takes "host port" as one word as well.
        start_with(4, &["--replicaof", &target])
    };
    tune_master(&mid);
    wait_link_up(&mid, top.port, SYNC_TIMEOUT);
    writer.wait_for_more(100);
    let bottom = StockReplica::start(mid.port, &[]);
    wait_link_up(&bottom, mid.port, SYNC_TIMEOUT);
    writer.wait_for_more(100);

    // The lower link, killed on the middle server, resumes by PSYNC.
    let (mfull0, mpartial0, _) = sync_counters(mid.port);
    let killed = RawConn::connect(mid.port).cmds(&["CLIENT", "KILL", "TYPE", "replica"]);
    assert_eq!(
        killed,
        Resp::Int(1),
        "CLIENT KILL TYPE replica on the middle"
    );
    wait_for(
        "the stock replica to resume from the middle by PSYNC",
        RECONNECT_TIMEOUT,
        || {
            let (full, partial, _) = sync_counters(mid.port);
            if full != mfull0 {
                panic!("the stock replica took a full sync from the middle ({mfull0} -> {full})");
            }
            if partial > mpartial0 {
                Ok(())
            } else {
                Err(format!("middle sync_partial_ok {partial}"))
            }
        },
    );
    writer.wait_for_more(100);
    let rounds = writer.stop();
    eprintln!("writer made {rounds} pipelines");

    let chain: [&Server; 3] = [&top, &mid, &bottom];
    wait_in_sync(&top, &mid);
    wait_in_sync(&mid, &bottom);
    wait_for(
        "the same master_replid and master_repl_offset along the chain",
        SYNC_TIMEOUT,
        || {
            let v = ids_and_offsets(&chain);
            if v.iter().all(|x| *x == v[0]) {
                Ok(())
            } else {
                Err(format!("(replid, offset) top, middle, bottom: {v:?}"))
            }
        },
    );
    assert_same_dataset(top.port, mid.port, &[0, 3]);
    assert_same_dataset(top.port, bottom.port, &[0, 3]);
    let (full, _, _) = sync_counters(top.port);
    assert_eq!(full, 1, "the top served exactly one full sync");
    assert_no_panic(&top);
    assert_no_panic(&mid);
}

/// A thread overwriting `keys` string keys in `db` (idempotent SETs only,
/// so replaying part of the stream twice cannot change the result) until
/// `stop` is set; returns how many pipelines it sent.
fn set_writer(port: u16, db: u32, keys: u64, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut con = db_con(port, db);
        let mut n: u64 = 0;
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut p = redis::pipe();
            for _ in 0..50 {
                n += 1;
                p.cmd("SET")
                    .arg(format!("sdb:{}", n % keys))
                    .arg(n)
                    .ignore();
            }
            let () = p
                .query(&mut con)
                .unwrap_or_else(|e| panic!("set writer: {}", describe(&e)));
            rounds += 1;
            thread::sleep(Duration::from_millis(2));
        }
        rounds
    })
}

/// The stream's current db crosses a chained full sync. The top master
/// writes only to db 3, so its stream SELECTs db 3 once and then carries
/// bare SETs; a replica that full-syncs from a replica in the middle
/// starts applying that stream mid-way, and must apply it to db 3 as
/// well: the snapshot tells it where the stream is (Redis writes the
/// master link's current db as the `repl-stream-db` AUX field, and the
/// loading replica selects it before the first command). Two rounds:
/// tether in the middle serving a stock replica (tether must write the
/// field), and a stock middle serving a tether replica (tether must honour
/// it). Only idempotent SETs are written, so this is about the db alone.
#[test]
fn chain_full_sync_keeps_stream_db() {
    rounds("tether in the middle", &[true, false], stream_db_round);
}

fn stream_db_round(tether_in_middle: bool) {
    let (top, mid) = if tether_in_middle {
        (Server::start(2), Server::start(3))
    } else {
        (Server::stock_redis(), Server::stock_redis())
    };
    tune_master(&top);
    tune_master(&mid);
    replicaof(&mid, top.port, "REPLICAOF");
    wait_link_up(&mid, top.port, SYNC_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let w = set_writer(top.port, 3, 500, stop.clone());
    // The middle must be well into the stream (past the SELECT 3 at its
    // start) before the bottom's snapshot is cut.
    wait_for("the middle to apply 100 kB of stream", SYNC_TIMEOUT, || {
        let off = info_int(&repl_info(mid.port), "slave_repl_offset");
        if off > 100_000 {
            Ok(())
        } else {
            Err(format!("middle slave_repl_offset {off}"))
        }
    });
    let bottom = if tether_in_middle {
        let mp = mid.port.to_string();
        Server::spawn(Kind::StockRedis, 1, &["--replicaof", "127.0.0.1", &mp])
    } else {
        let b = Server::start(2);
        replicaof(&b, mid.port, "REPLICAOF");
        b
    };
    wait_link_up(&bottom, mid.port, SYNC_TIMEOUT);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let rounds = w.join().expect("set writer");
    eprintln!("set writer made {rounds} pipelines");
    wait_in_sync(&top, &mid);
    wait_in_sync(&mid, &bottom);
    let db0: i64 = redis::cmd("DBSIZE")
        .query(&mut db_con(bottom.port, 0))
        .unwrap();
    assert_eq!(
        db0,
        0,
        "{} (bottom) replicating from {} (middle) has {db0} keys in db 0: the stream's db-3 \
         SETs after the snapshot went to db 0 (repl-stream-db {})",
        bottom.label(),
        mid.label(),
        if tether_in_middle {
            "not written by the middle"
        } else {
            "not honoured by the bottom"
        }
    );
    assert_same_dataset(top.port, mid.port, &[0, 3]);
    assert_same_dataset(top.port, bottom.port, &[0, 3]);
    for s in [&top, &mid, &bottom] {
        assert_no_panic(s);
    }
}

/// A smaller mixed dataset for servers that are not stock (no DEBUG, no
/// OBJECT ENCODING promises): strings, small and large collections, TTLs.
/// Returns the number of keys written.
fn populate_small(port: u16, db: u32) -> usize {
    let mut con = db_con(port, db);
    let mut pipe = redis::pipe();
    let mut n = 0;
    for i in 0..500 {
        let k = format!("p:str:{i}");
        match i % 4 {
            0 => pipe.cmd("SET").arg(&k).arg(i),
            1 => pipe.cmd("SET").arg(&k).arg("a".repeat(2000)),
            _ => pipe.cmd("SET").arg(&k).arg(format!("v{i}")),
        };
        pipe.ignore();
        if i % 5 == 0 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
        n += 1;
    }
    for (i, len) in [3usize, 300, 3000].iter().enumerate() {
        let mut l = redis::cmd("RPUSH");
        let mut h = redis::cmd("HSET");
        let mut s = redis::cmd("SADD");
        let mut z = redis::cmd("ZADD");
        l.arg(format!("p:list:{i}"));
        h.arg(format!("p:hash:{i}"));
        s.arg(format!("p:set:{i}"));
        z.arg(format!("p:zset:{i}"));
        for j in 0..*len {
            l.arg(j);
            h.arg(format!("f{j}")).arg(j);
            s.arg(if i == 1 {
                j.to_string()
            } else {
                format!("m{j}")
            });
            z.arg(j as f64 / 3.0).arg(format!("m{j}"));
        }
        for c in [l, h, s, z] {
            pipe.add_command(c).ignore();
            n += 1;
        }
    }
    let () = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("populating :{port} db {db}: {}", describe(&e)));
    n
}

// ---------------------------------------------------------------------------
// 4. Promotion: siblings continue from the promoted replica
// ---------------------------------------------------------------------------

/// M → A and M → B (tether replicas), B → S (a stock replica of B). A is
/// promoted (REPLICAOF NO ONE) and B pointed at it (SLAVEOF A): B must
/// resume by PSYNC (+CONTINUE: A's sync_partial_ok grows, sync_full does
/// not), adopt A's new replid, and pass it on to S (a replica whose
/// master changed id disconnects its sub-replicas so they learn it). A
/// keeps its old history as replid2 valid up to offset + 1. Writes to A
/// then reach B and S. Run with a stock M and with a tether M.
#[test]
fn promotion_siblings_continue() {
    rounds(
        "master M",
        &[Kind::StockRedis, Kind::Tether],
        promotion_round,
    );
}

fn promotion_round(m_kind: Kind) {
    let m = match m_kind {
        Kind::StockRedis => stock_master(),
        Kind::Tether => {
            let m = Server::start(2);
            tune_master(&m);
            m
        }
    };
    populate_small(m.port, 0);
    let a = Server::start(2);
    let b = Server::start(3);
    tune_master(&a);
    tune_master(&b);
    replicaof(&a, m.port, "REPLICAOF");
    replicaof(&b, m.port, "REPLICAOF");
    wait_link_up(&a, m.port, SYNC_TIMEOUT);
    wait_link_up(&b, m.port, SYNC_TIMEOUT);
    let s = StockReplica::start(b.port, &[]);
    wait_link_up(&s, b.port, SYNC_TIMEOUT);

    let writer = Writer::start(m.port, &[0, 2], m_kind == Kind::StockRedis);
    writer.wait_for_more(150);
    // No PINGs from M from now on: A and B must stop at the same offset.
    ok(&m, &["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    writer.wait_for_more(50);
    writer.stop();
    wait_in_sync(&m, &a);
    wait_in_sync(&m, &b);
    wait_in_sync(&b, &s);
    let old_id = info_value(&repl_info(m.port), "master_replid").unwrap();
    let off = info_int(&repl_info(a.port), "master_repl_offset");
    assert_eq!(
        off,
        info_int(&repl_info(b.port), "master_repl_offset"),
        "A and B at the same offset before the promotion"
    );
    let (afull0, apartial0, _) = sync_counters(a.port);

    ok(&a, &["REPLICAOF", "NO", "ONE"]);
    let ainfo = repl_info(a.port);
    let new_id = info_value(&ainfo, "master_replid").unwrap();
    assert_eq!(
        info_value(&ainfo, "role").as_deref(),
        Some("master"),
        "{ainfo}"
    );
    assert_ne!(
        new_id, old_id,
        "a promoted replica takes a new replid:\n{ainfo}"
    );
    assert_eq!(
        info_value(&ainfo, "master_replid2").as_deref(),
        Some(old_id.as_str()),
        "replid2 of the promoted replica is its old master's id:\n{ainfo}"
    );
    assert_eq!(
        info_int(&ainfo, "second_repl_offset"),
        off + 1,
        "second_repl_offset = offset at promotion + 1:\n{ainfo}"
    );
    assert_eq!(info_int(&ainfo, "master_repl_offset"), off, "{ainfo}");

    replicaof(&b, a.port, "SLAVEOF");
    wait_link_up(&b, a.port, RECONNECT_TIMEOUT);
    // From here on, failures are collected so one run shows them all.
    let mut problems: Vec<String> = Vec::new();
    // The link stays up: nothing may mark it down (the link to M that
    // SLAVEOF replaced winds down meanwhile).
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        let r = repl_info(b.port);
        let st = info_value(&r, "master_link_status").unwrap_or_default();
        if st != "up" {
            problems.push(format!(
                "B's master_link_status went back to {st:?} {:?} after SLAVEOF A came up, \
                 with no disconnect in the logs:\n{r}",
                since.elapsed()
            ));
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    wait_for("B's PSYNC to be accepted by A", RECONNECT_TIMEOUT, || {
        let (full, partial, err) = sync_counters(a.port);
        if full != afull0 {
            panic!(
                "B took a full sync from A (sync_full {afull0} -> {full}, \
                     sync_partial_err {err}); it should have continued with +CONTINUE"
            );
        }
        if partial > apartial0 {
            Ok(())
        } else {
            Err(format!("A's sync_partial_ok {partial}"))
        }
    });
    let binfo = repl_info(b.port);
    assert_eq!(
        info_value(&binfo, "master_replid").as_deref(),
        Some(new_id.as_str()),
        "B adopts A's new replid from +CONTINUE:\n{binfo}"
    );
    assert_eq!(
        info_value(&binfo, "master_replid2").as_deref(),
        Some(old_id.as_str()),
        "B keeps the old id as replid2:\n{binfo}"
    );
    assert_eq!(
        info_int(&binfo, "second_repl_offset"),
        off + 1,
        "B's second_repl_offset:\n{binfo}"
    );

    // Writes to A reach B, and through B the stock replica. (Offsets, not
    // master_link_status, decide "in sync" here: see the check above.)
    let writer = Writer::start(a.port, &[0, 2], false);
    writer.wait_for_more(150);
    writer.stop();
    let chain: [&Server; 3] = [&a, &b, &s];
    let mut last = Vec::new();
    let same = common::wait_until(Duration::from_secs(20), || {
        last = ids_and_offsets(&chain);
        last.iter().all(|x| *x == last[0]) && last[0].0 == new_id
    });
    if !same {
        problems.push(format!(
            "(master_replid, master_repl_offset) of A, B and B's stock replica S never all \
             matched A's new id {new_id}: {last:?} (a replica whose master's id changes on \
             +CONTINUE must disconnect its own replicas so they learn the new id)"
        ));
    }
    for (x, name) in [(&b, "B"), (&s.server, "S")] {
        let mut diffs = Vec::new();
        let equal = common::wait_until(Duration::from_secs(15), || {
            diffs = common::dataset_diffs(a.port, x.port, &[0, 2]);
            diffs.is_empty()
        });
        if !equal {
            problems.push(format!(
                "A and {name} hold different data after 15 s (DBSIZE counting keys that \
                 SCAN no longer returns means expired keys were never deleted by a DEL \
                 from A):\n    {}",
                diffs
                    .iter()
                    .take(6)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
    }
    let (afull, _, _) = sync_counters(a.port);
    if afull != afull0 {
        problems.push(format!("A served a full sync ({afull0} -> {afull})"));
    }
    for x in [&a, &b] {
        assert_no_panic(x);
    }
    assert!(
        problems.is_empty(),
        "after the promotion:\n  {}\n--- B's log tail ---\n{}",
        problems.join("\n  "),
        tail(&b.logs(), 2000)
    );
}

// ---------------------------------------------------------------------------
// 5. A read-only replica: write refusals, ROLE, INFO replication
// ---------------------------------------------------------------------------

const READONLY: &str = "READONLY You can't write against a read only replica.";

/// Compare one INFO field; record a mismatch instead of stopping, so one
/// run lists every wrong field.
fn expect_field(
    info: &str,
    name: &str,
    ok: impl Fn(&str) -> bool,
    want: &str,
    errs: &mut Vec<String>,
) {
    match info_value(info, name) {
        None => errs.push(format!("`{name}` missing (want {want})")),
        Some(v) if !ok(&v) => errs.push(format!("`{name}:{v}` (want {want})")),
        Some(_) => {}
    }
}

/// A replica (pointed first at a port nobody listens on, then at a stock
/// master): writes from a normal client get the exact READONLY error, in
/// and out of MULTI, and change nothing; reads work (also while the link
/// is down: replica-serve-stale-data); ROLE and INFO replication show
/// Redis's fields in each state (never connected, up, down).
#[test]
fn readonly_replica_and_role() {
    let replica = Server::start(2);
    let mut errs: Vec<String> = Vec::new();

    // Never connected: the master's port is closed.
    let dead = common::free_port();
    replicaof(&replica, dead, "REPLICAOF");
    thread::sleep(Duration::from_millis(1500));
    let info = repl_info(replica.port);
    let d = dead.to_string();
    expect_field(&info, "role", |v| v == "slave", "slave", &mut errs);
    expect_field(
        &info,
        "master_host",
        |v| v == "127.0.0.1",
        "127.0.0.1",
        &mut errs,
    );
    expect_field(&info, "master_port", |v| v == d, &d, &mut errs);
    expect_field(
        &info,
        "master_link_status",
        |v| v == "down",
        "down",
        &mut errs,
    );
    expect_field(
        &info,
        "master_last_io_seconds_ago",
        |v| v == "-1",
        "-1",
        &mut errs,
    );
    expect_field(
        &info,
        "master_sync_in_progress",
        |v| v == "0",
        "0",
        &mut errs,
    );
    expect_field(
        &info,
        "master_link_down_since_seconds",
        |v| v == "-1",
        "-1 (never connected)",
        &mut errs,
    );
    let role = RawConn::connect(replica.port).cmds(&["ROLE"]);
    match role.array() {
        [
            Resp::Bulk(r),
            Resp::Bulk(h),
            Resp::Int(p),
            Resp::Bulk(st),
            Resp::Int(_),
        ] if r == b"slave" && h == b"127.0.0.1" && *p == dead as i64 => {
            let st = String::from_utf8_lossy(st);
            if !["connect", "connecting", "handshake"].contains(&st.as_ref()) {
                errs.push(format!("ROLE state while never connected: {st:?}"));
            }
        }
        _ => errs.push(format!("ROLE while never connected: {role:?}")),
    }
    if !errs.is_empty() {
        errs.insert(0, format!("never connected, INFO:\n{info}"));
    }

    let master = stock_master();
    let mut mc = RawConn::connect(master.port);
    for (k, v) in [("k1", "v1"), ("k2", "v2")] {
        assert_eq!(mc.cmds(&["SET", k, v]), Resp::Simple(b"OK".to_vec()));
    }
    mc.cmds(&["RPUSH", "list", "a", "b"]);
    mc.cmds(&["HSET", "hash", "f", "v"]);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_in_sync(&master, &replica);

    // Writes are refused with Redis's exact error, and change nothing.
    let mut c = RawConn::connect(replica.port);
    let writes: [&[&str]; 16] = [
        &["SET", "k1", "x"],
        &["SET", "new", "x"],
        &["DEL", "k1"],
        &["INCR", "counter"],
        &["LPUSH", "list", "c"],
        &["HSET", "hash", "f", "w"],
        &["SADD", "set", "m"],
        &["ZADD", "zset", "1", "m"],
        &["EXPIRE", "k1", "100"],
        &["RENAME", "k1", "k3"],
        &["MSET", "k1", "a", "k2", "b"],
        &["APPEND", "k2", "more"],
        &["GETDEL", "k2"],
        &["FLUSHDB"],
        &["FLUSHALL"],
        &["LMOVE", "list", "list2", "LEFT", "RIGHT"],
    ];
    for w in writes {
        let r = c.cmds(w);
        if r != Resp::Error(READONLY.as_bytes().to_vec()) {
            errs.push(format!(
                "{w:?} on the replica answered {r:?}, want -{READONLY}"
            ));
        }
    }
    c.cmds(&["MULTI"]);
    let queued = c.cmds(&["SET", "k1", "x"]);
    let exec = c.cmds(&["EXEC"]);
    if !queued.is_error() || !exec.is_error() {
        errs.push(format!(
            "MULTI; SET; EXEC on the replica answered {queued:?} then {exec:?}, want \
             -{READONLY} then -EXECABORT"
        ));
    }
    // Reads work.
    assert_eq!(c.cmds(&["GET", "k1"]), Resp::Bulk(b"v1".to_vec()));
    assert_eq!(c.cmds(&["GET", "k2"]), Resp::Bulk(b"v2".to_vec()));
    assert_eq!(c.cmds(&["LLEN", "list"]), Resp::Int(2));
    assert_eq!(c.cmds(&["HGET", "hash", "f"]), Resp::Bulk(b"v".to_vec()));
    assert_eq!(c.cmds(&["EXISTS", "new", "counter", "k3"]), Resp::Int(0));
    assert_eq!(c.cmds(&["DBSIZE"]), Resp::Int(4));

    // ROLE and INFO once in sync (read until they agree with the master:
    // its PING every 10 s moves the offset).
    let mut role = Resp::Null;
    let mut info = String::new();
    wait_for("ROLE and INFO at the master's offset", SYNC_TIMEOUT, || {
        let moff = info_int(&repl_info(master.port), "master_repl_offset");
        role = c.cmds(&["ROLE"]);
        info = repl_info(replica.port);
        let roff = info_int(&info, "slave_repl_offset");
        match role.array().get(4) {
            Some(Resp::Int(o)) if *o == moff && roff == moff => Ok(()),
            _ => Err(format!(
                "master offset {moff}, ROLE {role:?}, INFO slave_repl_offset {roff}"
            )),
        }
    });
    let moff = info_int(&info, "slave_repl_offset");
    assert_eq!(
        role,
        Resp::Array(vec![
            Resp::Bulk(b"slave".to_vec()),
            Resp::Bulk(b"127.0.0.1".to_vec()),
            Resp::Int(master.port as i64),
            Resp::Bulk(b"connected".to_vec()),
            Resp::Int(moff),
        ]),
        "ROLE on a connected replica"
    );
    let mp = master.port.to_string();
    let mid = info_value(&repl_info(master.port), "master_replid").unwrap();
    let mut up_errs = Vec::new();
    let e = &mut up_errs;
    expect_field(&info, "role", |v| v == "slave", "slave", e);
    expect_field(&info, "master_host", |v| v == "127.0.0.1", "127.0.0.1", e);
    expect_field(&info, "master_port", |v| v == mp, &mp, e);
    expect_field(&info, "master_link_status", |v| v == "up", "up", e);
    expect_field(
        &info,
        "master_last_io_seconds_ago",
        |v| v.parse::<i64>().is_ok_and(|s| (0..=11).contains(&s)),
        "0..=11 (the master pings every 10 s)",
        e,
    );
    expect_field(&info, "master_sync_in_progress", |v| v == "0", "0", e);
    expect_field(
        &info,
        "slave_read_repl_offset",
        |v| v.parse::<i64>().is_ok_and(|o| o >= moff),
        ">= slave_repl_offset",
        e,
    );
    expect_field(&info, "slave_priority", |v| v == "100", "100", e);
    expect_field(&info, "slave_read_only", |v| v == "1", "1", e);
    expect_field(&info, "replica_announced", |v| v == "1", "1", e);
    expect_field(&info, "master_replid", |v| v == mid, &mid, e);
    expect_field(
        &info,
        "master_repl_offset",
        |v| v == moff.to_string(),
        "slave_repl_offset",
        e,
    );
    expect_field(&info, "connected_slaves", |v| v == "0", "0", e);
    if info_value(&info, "master_link_down_since_seconds").is_some() {
        e.push("master_link_down_since_seconds shown while the link is up".into());
    }
    // The INFO order Redis uses (Sentinel and tools parse by name, but a
    // human diffing two INFOs should see the same layout).
    let order = [
        "role",
        "master_host",
        "master_port",
        "master_link_status",
        "master_last_io_seconds_ago",
        "master_sync_in_progress",
        "slave_read_repl_offset",
        "slave_repl_offset",
        "slave_priority",
        "slave_read_only",
        "replica_announced",
        "connected_slaves",
    ];
    let names: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .filter(|n| order.contains(n))
        .collect();
    if names != order {
        e.push(format!(
            "INFO replication field order {names:?}, Redis: {order:?}"
        ));
    }
    ok(&replica, &["CONFIG", "SET", "replica-priority", "42"]);
    ok(&replica, &["CONFIG", "SET", "replica-announced", "no"]);
    let info2 = repl_info(replica.port);
    expect_field(
        &info2,
        "slave_priority",
        |v| v == "42",
        "42 after CONFIG SET",
        e,
    );
    expect_field(
        &info2,
        "replica_announced",
        |v| v == "0",
        "0 after CONFIG SET",
        e,
    );
    if !up_errs.is_empty() {
        errs.push(format!("link up, INFO:\n{info}"));
        errs.extend(up_errs);
    }

    // replica-read-only no: a local write is accepted (and stays local).
    ok(&replica, &["CONFIG", "SET", "replica-read-only", "no"]);
    let r = c.cmds(&["SET", "local-only", "1"]);
    if r != Resp::Simple(b"OK".to_vec()) {
        errs.push(format!("SET with replica-read-only no answered {r:?}"));
    }
    expect_field(
        &repl_info(replica.port),
        "slave_read_only",
        |v| v == "0",
        "0",
        &mut errs,
    );
    ok(&replica, &["CONFIG", "SET", "replica-read-only", "yes"]);

    // The master goes away: the link is down, reads still work.
    drop(mc);
    drop(master);
    wait_for("master_link_status:down", RECONNECT_TIMEOUT, || {
        let r = repl_info(replica.port);
        match info_value(&r, "master_link_status").as_deref() {
            Some("down") => Ok(()),
            other => Err(format!("master_link_status {other:?}")),
        }
    });
    thread::sleep(Duration::from_millis(1200));
    let info = repl_info(replica.port);
    let mut down_errs = Vec::new();
    let e = &mut down_errs;
    expect_field(
        &info,
        "master_link_down_since_seconds",
        |v| v.parse::<i64>().is_ok_and(|s| (0..=30).contains(&s)),
        "0..=30 seconds",
        e,
    );
    expect_field(&info, "master_sync_in_progress", |v| v == "0", "0", e);
    expect_field(&info, "master_port", |v| v == mp, &mp, e);
    let role = c.cmds(&["ROLE"]);
    match role.array() {
        [Resp::Bulk(r), _, _, Resp::Bulk(st), Resp::Int(_)] if r == b"slave" => {
            let st = String::from_utf8_lossy(st);
            if !["connect", "connecting", "handshake"].contains(&st.as_ref()) {
                e.push(format!("ROLE state with the master gone: {st:?}"));
            }
        }
        _ => e.push(format!("ROLE with the master gone: {role:?}")),
    }
    if !down_errs.is_empty() {
        errs.push(format!("link down, INFO:\n{info}"));
        errs.extend(down_errs);
    }
    assert_eq!(
        c.cmds(&["GET", "k1"]),
        Resp::Bulk(b"v1".to_vec()),
        "stale reads"
    );
    let r = c.cmds(&["SET", "k1", "x"]);
    if r != Resp::Error(READONLY.as_bytes().to_vec()) {
        errs.push(format!("SET with the link down answered {r:?}"));
    }
    assert_no_panic(&replica);
    assert!(
        errs.is_empty(),
        "replica replies differ from Redis 7.0:\n  {}",
        errs.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// A scripted master
// ---------------------------------------------------------------------------

/// A listener the replica under test connects to; the test plays the
/// master's side of the protocol by hand.
struct FakeMaster {
    listener: TcpListener,
    port: u16,
}

impl FakeMaster {
    fn new() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake master");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        FakeMaster { listener, port }
    }

    /// The next connection within `timeout`, or None.
    fn accept(&self, timeout: Duration) -> Option<Peer> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                    s.set_nodelay(true).unwrap();
                    return Some(Peer {
                        reader: BufReader::new(s.try_clone().unwrap()),
                        stream: s,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("fake master accept: {e}"),
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn expect_connection(&self, timeout: Duration, why: &str, replica: &Server) -> Peer {
        self.accept(timeout).unwrap_or_else(|| {
            panic!(
                "no connection to the fake master within {timeout:?} ({why}); replica log tail:\n{}",
                tail(&replica.logs(), 3000)
            )
        })
    }
}

/// The replica's connection, seen from the master.
struct Peer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    /// One command from the replica, as strings.
    fn read_cmd(&mut self) -> Vec<String> {
        let (v, raw) = read_reply(&mut self.reader)
            .unwrap_or_else(|e| panic!("fake master: reading a command from the replica: {e}"));
        match v {
            Resp::Array(a) => a.iter().map(|x| x.as_str()).collect(),
            _ => panic!("fake master: the replica sent {}", esc(&raw)),
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.stream
            .write_all(b)
            .unwrap_or_else(|e| panic!("fake master: send: {e}"));
    }

    /// Answers PING, AUTH and REPLCONF like a master, up to PSYNC / SYNC;
    /// returns every command the replica sent, the last one the sync.
    fn handshake(&mut self) -> Vec<Vec<String>> {
        let mut seen = Vec::new();
        loop {
            let cmd = self.read_cmd();
            let name = cmd
                .first()
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default();
            seen.push(cmd);
            match name.as_str() {
                "PING" => self.send(b"+PONG\r\n"),
                "AUTH" | "REPLCONF" => self.send(b"+OK\r\n"),
                "PSYNC" | "SYNC" => return seen,
                _ => panic!("fake master: unexpected handshake command {seen:?}"),
            }
        }
    }

    /// Reads until the replica closes the connection (Ok with the bytes it
    /// sent meanwhile), or Err after `timeout` with what it sent so far.
    fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        loop {
            let mut buf = [0u8; 4096];
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(got),
            }
            if Instant::now() > deadline {
                return Err(got);
            }
        }
    }

    /// Reads commands until one named `name` (case-insensitive) arrives;
    /// bare newlines are skipped.
    fn read_until_cmd(&mut self, name: &str, timeout: Duration) -> Vec<String> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        loop {
            let buf = self.reader.fill_buf().unwrap_or_else(|e| {
                panic!("fake master: waiting for {name} from the replica: {e}")
            });
            assert!(
                !buf.is_empty(),
                "the replica closed the link before sending {name}"
            );
            if buf[0] == b'\n' {
                self.reader.consume(1);
                continue;
            }
            let cmd = self.read_cmd();
            if cmd.first().is_some_and(|c| c.eq_ignore_ascii_case(name)) {
                return cmd;
            }
        }
    }
}

/// Commands in bytes a replica sent (multibulk, with bare newlines).
fn parse_cmds(mut b: &[u8]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b[0] == b'\n' {
            b = &b[1..];
            continue;
        }
        let mut r = BufReader::new(b);
        match read_reply(&mut r) {
            Ok((Resp::Array(a), raw)) => {
                out.push(a.iter().map(|x| x.as_str()).collect());
                b = &b[raw.len()..];
            }
            _ => break,
        }
    }
    out
}

fn encode_cmd(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    common::encode(&v)
}

/// `$<len>\r\n<rdb>`: a disk-style snapshot.
fn bulk(rdb: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", rdb.len()).into_bytes();
    v.extend_from_slice(rdb);
    v
}

const REPLID: &str = "0123456789abcdef0123456789abcdef01234567";

/// SAVE on a stock server and return the file's bytes.
fn save_rdb(s: &Server) -> Vec<u8> {
    ok(s, &["SAVE"]);
    let mut c = RawConn::connect(s.port);
    let get = |c: &mut RawConn, what: &str| -> String {
        match c.cmds(&["CONFIG", "GET", what]) {
            Resp::Array(v) if v.len() == 2 => v[1].as_str(),
            other => panic!("CONFIG GET {what}: {other:?}"),
        }
    };
    let path = std::path::Path::new(&get(&mut c, "dir")).join(get(&mut c, "dbfilename"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Log text written after `from` bytes.
fn log_since(s: &Server, from: usize) -> String {
    let l = s.logs();
    l.get(from..).unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------
// 6. Corrupt snapshots
// ---------------------------------------------------------------------------

/// tether, holding data of its own, follows a scripted master that answers
/// +FULLRESYNC with a broken snapshot, a different one on each attempt:
/// wrong CRC, an unknown type byte, a stream key, bad magic, a `$len` cut
/// short, the connection closed mid-transfer, a wrong EOF mark, a garbage
/// bulk length. Each time tether must log why, drop the link, keep
/// serving its previous data (a reader polls it the whole time: never a
/// half-loaded dataset) and connect again. Finally a good snapshot loads
/// and replaces the data exactly. Tether-only: stock Redis empties its
/// dataset before loading, so it has nothing to keep.
#[test]
fn corrupt_snapshot_rejected() {
    // The snapshot source: a stock server whose data the good snapshot
    // holds (and still holds at the end, for the comparison).
    let src = Server::stock_redis();
    {
        let mut c = db_con(src.port, 0);
        let mut p = redis::pipe();
        for i in 0..500 {
            p.cmd("SET").arg(format!("new:{i}")).arg(i).ignore();
        }
        p.cmd("HSET").arg("new:hash").arg("f").arg("v").ignore();
        p.cmd("RPUSH").arg("new:list").arg("a").arg("b").ignore();
        let mut z = redis::cmd("ZADD");
        z.arg("new:zset");
        for j in 0..300 {
            z.arg(j).arg(format!("m{j}"));
        }
        p.add_command(z).ignore();
        let () = p.query(&mut c).unwrap();
        let mut c2 = db_con(src.port, 2);
        let () = redis::cmd("SET")
            .arg("new:db2")
            .arg("x")
            .query(&mut c2)
            .unwrap();
    }
    let mut sc = RawConn::connect(src.port);
    assert!(!sc.cmds(&["XADD", "new:stream", "*", "f", "v"]).is_error());
    let rdb_stream = save_rdb(&src);
    assert_eq!(sc.cmds(&["DEL", "new:stream"]), Resp::Int(1));
    let good = save_rdb(&src);

    // Corruptions of the good snapshot.
    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 0xff;
    let mut bad_type = good.clone();
    let at = good
        .windows(9)
        .position(|w| w == b"\x08new:hash")
        .expect("the key new:hash in the RDB");
    assert!(at >= 1);
    bad_type[at - 1] = 0xEE; // the type byte before <len 8> "new:hash"
    let mut bad_magic = good.clone();
    bad_magic[..5].copy_from_slice(b"REDIX");
    let half = good.len() / 2;
    let mut eof_framed = format!("$EOF:{}\r\n", "x".repeat(40)).into_bytes();
    eof_framed.extend_from_slice(&good);
    eof_framed.extend_from_slice("y".repeat(40).as_bytes());
    let mut cut_conn = format!("${}\r\n", good.len()).into_bytes();
    cut_conn.extend_from_slice(&good[..half]);

    struct Variant {
        name: &'static str,
        bytes: Vec<u8>,
        /// The master closes the connection after sending.
        close: bool,
        /// The master streams PINGs after the payload.
        stream_after: bool,
        /// Text the replica's log must show (case-insensitive).
        log: &'static str,
    }
    let variants = [
        Variant {
            name: "wrong CRC64",
            bytes: bulk(&bad_crc),
            close: false,
            stream_after: false,
            log: "crc",
        },
        Variant {
            name: "unknown type byte",
            bytes: bulk(&bad_type),
            close: false,
            stream_after: false,
            log: "bad snapshot",
        },
        Variant {
            name: "a stream key",
            bytes: bulk(&rdb_stream),
            close: false,
            stream_after: false,
            log: "stream",
        },
        Variant {
            name: "bad magic",
            bytes: bulk(&bad_magic),
            close: false,
            stream_after: false,
            log: "bad snapshot",
        },
        Variant {
            name: "$len cut short",
            bytes: bulk(&good[..half]),
            close: false,
            stream_after: true,
            log: "ended",
        },
        Variant {
            name: "connection closed mid-transfer",
            bytes: cut_conn,
            close: true,
            stream_after: false,
            log: "closed",
        },
        Variant {
            name: "wrong EOF mark",
            bytes: eof_framed,
            close: false,
            stream_after: false,
            log: "mark",
        },
        Variant {
            name: "garbage bulk length",
            bytes: b"$12ab\r\n".to_vec(),
            close: false,
            stream_after: false,
            log: "length",
        },
    ];

    let mut t = Server::tether(3);
    let old_dbs = [0u32, 2];
    {
        let mut c = db_con(t.port, 0);
        let mut p = redis::pipe();
        for i in 0..300 {
            p.cmd("SET").arg(format!("old:{i}")).arg(i).ignore();
        }
        // Overlaps with the snapshot's keys: must keep the old value.
        p.cmd("SET").arg("new:0").arg("old value").ignore();
        p.cmd("RPUSH").arg("old:list").arg("x").arg("y").ignore();
        let () = p.query(&mut c).unwrap();
        let mut c2 = db_con(t.port, 2);
        let () = redis::cmd("SET")
            .arg("old:db2")
            .arg("z")
            .query(&mut c2)
            .unwrap();
    }
    let before = dataset(t.port, &old_dbs);
    assert_eq!(before.len(), 303);
    ok(&t, &["CONFIG", "SET", "repl-timeout", "5"]);

    // A reader polls the old data the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let port = t.port;
    let stop2 = stop.clone();
    let reader = thread::spawn(move || -> Result<u64, String> {
        let mut c = db_con(port, 0);
        let mut polls = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            let (n, v, x): (i64, Option<String>, i64) = redis::pipe()
                .cmd("DBSIZE")
                .cmd("GET")
                .arg("new:0")
                .cmd("EXISTS")
                .arg("new:1")
                .arg("new:499")
                .arg("new:zset")
                .query(&mut c)
                .map_err(|e| format!("reader: {}", describe(&e)))?;
            if n != 302 || v.as_deref() != Some("old value") || x != 0 {
                return Err(format!(
                    "poll {polls}: DBSIZE {n}, GET new:0 {v:?}, EXISTS new:* {x} \
                     (want 302, \"old value\", 0)"
                ));
            }
            polls += 1;
            thread::sleep(Duration::from_millis(2));
        }
        Ok(polls)
    });

    let fake = FakeMaster::new();
    replicaof(&t, fake.port, "REPLICAOF");
    let mut problems = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let why = if i == 0 {
            "after REPLICAOF".to_string()
        } else {
            format!("retry after \"{}\"", variants[i - 1].name)
        };
        let mut peer = fake.expect_connection(RECONNECT_TIMEOUT, &why, &t);
        let log_at = t.logs().len();
        let hs = peer.handshake();
        let psync = hs.last().unwrap();
        assert_eq!(psync[0].to_ascii_uppercase(), "PSYNC", "handshake: {hs:?}");
        peer.send(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes());
        peer.send(&v.bytes);
        if v.close {
            drop(peer);
        } else if v.stream_after {
            // A real master streams commands right after a `$len` payload:
            // the replica must not take them for more snapshot (and keep
            // waiting, with data flowing, so repl-timeout never fires).
            let start = Instant::now();
            let ping = encode_cmd(&["PING"]);
            let closed = loop {
                let _ = peer.stream.write_all(&ping);
                if peer.wait_closed(Duration::from_millis(200)).is_ok() {
                    break true;
                }
                if start.elapsed() > Duration::from_secs(15) {
                    break false;
                }
            };
            if !closed {
                problems.push(format!(
                    "\"{}\": the replica was still loading after 15 s while the master \
                     streamed PINGs after the payload (repl-timeout 5 s never fires with data \
                     flowing)",
                    v.name
                ));
                continue;
            }
        } else if let Err(sent) = peer.wait_closed(Duration::from_secs(20)) {
            problems.push(format!(
                "\"{}\": the replica kept the link open for 20 s (sent {})",
                v.name,
                esc(&sent)
            ));
            continue;
        }
        // The reason is logged (the line may follow the close by a moment).
        let mut new_log = String::new();
        let logged = common::wait_until(Duration::from_secs(5), || {
            new_log = log_since(&t, log_at);
            new_log.to_lowercase().contains(v.log)
        });
        if !logged {
            problems.push(format!(
                "\"{}\": no log line mentioning \"{}\"; the log said:\n{}",
                v.name,
                v.log,
                tail(&new_log, 1500)
            ));
        }
        let now = dataset(t.port, &old_dbs);
        if now != before {
            let diff: Vec<String> = before
                .iter()
                .map(|x| format!("{x:?}"))
                .zip(now.iter().map(|x| format!("{x:?}")))
                .filter(|(a, b)| a != b)
                .take(5)
                .map(|(a, b)| format!("{a} -> {b}"))
                .collect();
            problems.push(format!(
                "\"{}\": the dataset changed ({} keys before, {} after): {diff:?}",
                v.name,
                before.len(),
                now.len()
            ));
        }
        assert!(t.is_alive(), "tether exited after \"{}\"", v.name);
    }
    stop.store(true, Ordering::Relaxed);
    match reader.join().unwrap() {
        Ok(polls) => eprintln!("reader: {polls} polls, always the old data"),
        Err(e) => problems.push(format!("the old data was not served throughout: {e}")),
    }

    // A good snapshot replaces the data exactly.
    let mut peer = fake.expect_connection(RECONNECT_TIMEOUT, "retry before the good snapshot", &t);
    peer.handshake();
    peer.send(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes());
    peer.send(&bulk(&good));
    wait_link_up(&t, fake.port, SYNC_TIMEOUT);
    assert_same_dataset(src.port, t.port, &[0, 2]);
    let info = repl_info(t.port);
    assert_eq!(
        info_value(&info, "master_replid").as_deref(),
        Some(REPLID),
        "{info}"
    );
    assert_no_panic(&t);
    drop(peer);
    assert!(
        problems.is_empty(),
        "corrupt snapshots:\n  {}\n--- tether log tail ---\n{}",
        problems.join("\n  "),
        tail(&t.logs(), 4000)
    );
}

// ---------------------------------------------------------------------------
// 7. A silent master
// ---------------------------------------------------------------------------

/// An empty RDB written by stock Redis.
fn empty_rdb() -> Vec<u8> {
    let s = Server::stock_redis();
    save_rdb(&s)
}

/// With `repl-timeout 2`, a master that completes a full sync and then
/// sends nothing is dropped after the timeout (the replica keeps sending
/// `REPLCONF ACK 0` meanwhile) and reconnected with `PSYNC <id> 1`. A
/// master that never answers PING, and one that stops in the middle of
/// the snapshot, are dropped too.
#[test]
fn replica_timeout_reconnects() {
    let rdb = empty_rdb();
    let r = Server::start(2);
    ok(&r, &["CONFIG", "SET", "repl-timeout", "2"]);
    let fake = FakeMaster::new();
    replicaof(&r, fake.port, "REPLICAOF");

    let mut p1 = fake.expect_connection(RECONNECT_TIMEOUT, "after REPLICAOF", &r);
    let hs = p1.handshake();
    // `PSYNC ? -1`, or (stock) a former master offering its own history.
    assert_eq!(hs.last().unwrap()[0], "PSYNC", "handshake {hs:?}");
    p1.send(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes());
    p1.send(&bulk(&rdb));
    wait_link_up(&r, fake.port, SYNC_TIMEOUT);
    let up = Instant::now();
    let log_at = r.logs().len();
    let sent = p1
        .wait_closed(Duration::from_secs(15))
        .unwrap_or_else(|sent| {
            panic!(
                "the replica did not drop a master silent for 15 s (repl-timeout 2); it sent {}",
                esc(&sent)
            )
        });
    let after = up.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "dropped after {after:?}, before repl-timeout (2 s) passed; sent {}",
        esc(&sent)
    );
    let acks = parse_cmds(&sent);
    assert!(
        acks.iter().any(|c| c == &["REPLCONF", "ACK", "0"]),
        "no REPLCONF ACK 0 while the master was silent: {acks:?}"
    );
    let mut p2 = fake.expect_connection(Duration::from_secs(10), "reconnect after the timeout", &r);
    let reconnect = up.elapsed();
    let hs = p2.handshake();
    assert_eq!(
        hs.last().unwrap(),
        &["PSYNC", REPLID, "1"],
        "the reconnecting replica offers its history: {hs:?}"
    );
    let log = log_since(&r, log_at);
    assert!(
        log.to_lowercase().contains("timeout"),
        "no log line about the timeout:\n{log}"
    );
    eprintln!("dropped {after:?} after the link came up, reconnected at {reconnect:?}");

    // A master that never answers the PSYNC: dropped, and tried again.
    let t0 = Instant::now();
    let waited = p2.wait_closed(Duration::from_secs(15));
    assert!(
        waited.is_ok(),
        "the replica waited over 15 s for a PSYNC reply (repl-timeout 2)"
    );
    eprintln!("silent PSYNC reply: dropped after {:?}", t0.elapsed());
    let mut p3 = fake.expect_connection(
        Duration::from_secs(10),
        "reconnect after a silent handshake",
        &r,
    );
    // One that stops in the middle of the snapshot.
    p3.handshake();
    p3.send(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes());
    let mut partial = format!("${}\r\n", rdb.len() + 1000).into_bytes();
    partial.extend_from_slice(&rdb[..rdb.len() - 10]);
    p3.send(&partial);
    let t0 = Instant::now();
    assert!(
        p3.wait_closed(Duration::from_secs(15)).is_ok(),
        "the replica waited over 15 s on a stalled snapshot (repl-timeout 2)"
    );
    let stalled = t0.elapsed();
    assert!(
        stalled >= Duration::from_millis(1500),
        "dropped a stalled transfer after {stalled:?}, before repl-timeout"
    );
    fake.expect_connection(
        Duration::from_secs(10),
        "reconnect after a stalled transfer",
        &r,
    );
    assert_no_panic(&r);
}

// ---------------------------------------------------------------------------
// 8. The stream, byte by byte
// ---------------------------------------------------------------------------

/// After `+FULLRESYNC <id> 1000` and an empty snapshot, the scripted
/// master streams SELECT, SET, PING, MULTI/EXEC and `REPLCONF GETACK *`.
/// The replica applies them (in the right db), counts every byte from
/// 1000 on, and answers GETACK with its offset before the GETACK (Redis
/// updates the applied offset after the command). An inline command from
/// a master is a protocol error: not applied, the link dropped, and the
/// replica comes back with PSYNC at the offset before it.
#[test]
fn stream_offsets_getack_and_inline() {
    let rdb = empty_rdb();
    let r = Server::start(2);
    let fake = FakeMaster::new();
    replicaof(&r, fake.port, "REPLICAOF");
    let mut p = fake.expect_connection(RECONNECT_TIMEOUT, "after REPLICAOF", &r);
    let hs = p.handshake();
    assert!(
        hs.iter().any(|c| c.len() >= 3
            && c[0] == "REPLCONF"
            && c[1] == "capa"
            && c.contains(&"eof".to_string())),
        "the replica announces capa eof: {hs:?}"
    );
    p.send(format!("+FULLRESYNC {REPLID} 1000\r\n").as_bytes());
    // Diskless framing: a master sends nothing after the mark until the
    // replica's first ACK, which Redis sends as soon as the load is done.
    let mark = "m".repeat(40);
    let mut snap = format!("$EOF:{mark}\r\n").into_bytes();
    snap.extend_from_slice(&rdb);
    snap.extend_from_slice(mark.as_bytes());
    let sent_at = Instant::now();
    p.send(&snap);
    let first = p.read_until_cmd("REPLCONF", Duration::from_secs(10));
    let first_after = sent_at.elapsed();
    let mut errs = Vec::new();
    if first != ["REPLCONF", "ACK", "1000"] {
        errs.push(format!(
            "first ACK after the snapshot: {first:?}, want REPLCONF ACK 1000"
        ));
    }
    if first_after > Duration::from_millis(500) {
        errs.push(format!(
            "the first REPLCONF ACK came {first_after:?} after an EOF-marked snapshot; Redis \
             sends it at once (the master streams nothing until it arrives)"
        ));
    }
    wait_link_up(&r, fake.port, SYNC_TIMEOUT);

    let mut stream = Vec::new();
    for c in [
        &["SELECT", "0"][..],
        &["SET", "k", "v"],
        &["PING"],
        &["SELECT", "3"],
        &["SET", "k3", "v3"],
        &["MULTI"],
        &["INCR", "n"],
        &["RPUSH", "l", "a", "b"],
        &["EXEC"],
    ] {
        stream.extend(encode_cmd(c));
    }
    let getack = encode_cmd(&["REPLCONF", "GETACK", "*"]);
    let before_getack = 1000 + stream.len() as i64;
    p.send(&stream);
    p.send(&getack);
    // The answer to GETACK: the first ACK past 1000 (the periodic ACKs
    // sent before the stream arrived say 1000).
    let ack = loop {
        let a = p.read_until_cmd("REPLCONF", Duration::from_secs(10));
        if a.get(2).map(String::as_str) != Some("1000") {
            break a;
        }
    };
    let after_getack = before_getack + getack.len() as i64;
    assert_eq!(
        ack.get(1).map(|s| s.to_ascii_uppercase()).as_deref(),
        Some("ACK"),
        "{ack:?}"
    );
    let acked: i64 = ack[2].parse().unwrap();
    if acked != before_getack {
        errs.push(format!(
            "GETACK answered ACK {acked}; Redis acks the offset before the GETACK: {before_getack} \
             (1000 + {} stream bytes; {after_getack} would include the GETACK)",
            stream.len()
        ));
    }
    let mut c = RawConn::connect(r.port);
    assert_eq!(
        c.cmds(&["GET", "k"]),
        Resp::Bulk(b"v".to_vec()),
        "SET in db 0"
    );
    assert_eq!(c.cmds(&["SELECT", "3"]), Resp::Simple(b"OK".to_vec()));
    assert_eq!(
        c.cmds(&["GET", "k3"]),
        Resp::Bulk(b"v3".to_vec()),
        "SET in db 3"
    );
    assert_eq!(
        c.cmds(&["GET", "n"]),
        Resp::Bulk(b"1".to_vec()),
        "INCR in MULTI"
    );
    assert_eq!(c.cmds(&["LLEN", "l"]), Resp::Int(2), "RPUSH in MULTI");
    wait_for(
        "slave_repl_offset to count every byte",
        Duration::from_secs(10),
        || {
            let off = info_int(&repl_info(r.port), "slave_repl_offset");
            if off == after_getack {
                Ok(())
            } else {
                Err(format!("slave_repl_offset {off}, want {after_getack}"))
            }
        },
    );

    // Inline from the master: a protocol error.
    p.send(b"SET inline 1\r\n");
    let closed = p.wait_closed(Duration::from_secs(5));
    thread::sleep(Duration::from_millis(200));
    let applied = c.cmds(&["EXISTS", "inline"]) == Resp::Int(1);
    if applied || closed.is_err() {
        errs.push(format!(
            "an inline command from the master was {} and the link was {}; Redis treats it as \
             a protocol error (\"Master using the inline protocol. Desync?\"), applies nothing \
             and drops the link",
            if applied { "applied" } else { "not applied" },
            if closed.is_ok() { "dropped" } else { "kept" }
        ));
    } else {
        let mut p2 =
            fake.expect_connection(RECONNECT_TIMEOUT, "reconnect after the protocol error", &r);
        let hs = p2.handshake();
        // Redis does not cache a master that broke the protocol, so it
        // asks for a full sync; continuing right before the bad bytes
        // would be sound too.
        let want = (after_getack + 1).to_string();
        let psync = hs.last().unwrap();
        if psync != &["PSYNC", "?", "-1"] && psync != &["PSYNC", REPLID, want.as_str()] {
            errs.push(format!(
                "after the protocol error the replica sent {psync:?}, want PSYNC ? -1 \
                 (or PSYNC {REPLID} {want})"
            ));
        }
    }
    assert_no_panic(&r);
    assert!(
        errs.is_empty(),
        "stream handling differs from Redis:\n  {}",
        errs.join("\n  ")
    );
}

/// A replica leaves expiry to its master (Redis 7.0's `expireIfNeeded`
/// with `masterhost` set), with 1 and 2 shards:
///
/// - a client reading a key whose TTL passed finds it missing (GET, EXISTS,
///   TTL, KEYS, SCAN, MGET across shards), but the key stays (DBSIZE, no
///   `expired_keys`) until the master's DEL arrives;
/// - a writable replica's clients find them missing for writes too;
/// - the master's writes find every key live, so they apply as they did
///   on the master: a PERSIST, an APPEND and a SUNIONSTORE that the
///   master ran just before the TTL passed, and that the replica applies
///   just after (stopped with SIGSTOP meanwhile), keep the key instead
///   of finding it gone. A replica that expired keys itself ends up
///   without the persisted key for good.
///
/// The master is stock Redis with active expiry off, so only an access on
/// the master expires a key there.
#[test]
fn a_replica_leaves_expiry_to_its_master() {
    rounds("shards", &[1usize, 2], |shards| {
        let master = stock_master();
        let mc = |args: &[&str]| RawConn::connect(master.port).cmds(args);
        ok(&master, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
        let replica = start_with(shards, &[]);
        replicaof(&replica, master.port, "REPLICAOF");
        wait_link_up(&replica, master.port, SYNC_TIMEOUT);
        let rc = |args: &[&str]| RawConn::connect(replica.port).cmds(args);

        // Hidden, not deleted.
        for k in ["gone:a", "gone:b", "gone:c"] {
            ok(&master, &["SET", k, "v", "PX", "150"]);
        }
        ok(&master, &["SET", "live", "v"]);
        wait_in_sync(&master, &replica);
        thread::sleep(Duration::from_millis(250));
        assert_eq!(rc(&["GET", "gone:a"]), Resp::NilBulk);
        assert_eq!(rc(&["EXISTS", "gone:a", "gone:b", "live"]), Resp::Int(1));
        assert_eq!(rc(&["TTL", "gone:b"]), Resp::Int(-2));
        let mget = rc(&["MGET", "gone:a", "gone:b", "gone:c", "live"]);
        assert_eq!(
            mget,
            Resp::Array(vec![
                Resp::NilBulk,
                Resp::NilBulk,
                Resp::NilBulk,
                Resp::Bulk(b"v".to_vec())
            ])
        );
        assert_eq!(rc(&["KEYS", "*"]).array().len(), 1, "KEYS lists only live");
        let scanned = scan_all_keys(&mut db_con(replica.port, 0));
        assert_eq!(
            scanned.into_iter().collect::<Vec<_>>(),
            vec![b"live".to_vec()],
            "SCAN lists only live keys"
        );
        assert_eq!(
            rc(&["DBSIZE"]),
            Resp::Int(4),
            "expired keys stay until the DEL"
        );
        let stats = info_section(replica.port, "stats");
        assert_eq!(info_int(&stats, "expired_keys"), 0, "{stats}");
        // The master's own access expires one; its DEL reaches the replica.
        assert_eq!(mc(&["GET", "gone:a"]), Resp::NilBulk);
        wait_in_sync(&master, &replica);
        assert_eq!(rc(&["DBSIZE"]), Resp::Int(3));
        // A writable replica's own clients find expired keys missing when
        // they write too (Redis deletes them first); the master's DELs
        // then clobber what they wrote, as on Redis.
        ok(&replica, &["CONFIG", "SET", "replica-read-only", "no"]);
        assert_eq!(
            rc(&["SET", "gone:b", "mine", "NX"]),
            Resp::Simple(b"OK".to_vec())
        );
        assert_eq!(rc(&["INCR", "gone:c"]), Resp::Int(1));
        ok(&replica, &["CONFIG", "SET", "replica-read-only", "yes"]);
        assert_eq!(mc(&["GET", "gone:b"]), Resp::NilBulk);
        assert_eq!(mc(&["GET", "gone:c"]), Resp::NilBulk);
        wait_in_sync(&master, &replica);
        assert_eq!(rc(&["DBSIZE"]), Resp::Int(1));

        // The master's writes land on keys the replica's clock has expired.
        ok(&master, &["SET", "kept", "v", "PX", "400"]);
        ok(&master, &["SET", "grown", "ab", "PX", "400"]);
        // Source and destination on different shards of a 2-shard replica.
        let (src, dst) = (0..)
            .map(|n| (format!("src{n}"), format!("dst{n}")))
            .find(|(s, d)| common::shard_of(s, 2) != common::shard_of(d, 2))
            .expect("a pair on two shards");
        assert_eq!(mc(&["SADD", &src, "x"]), Resp::Int(1));
        assert_eq!(mc(&["PEXPIRE", &src, "400"]), Resp::Int(1));
        wait_in_sync(&master, &replica);
        send_signal(replica.pid(), libc::SIGSTOP);
        assert_eq!(mc(&["PERSIST", "kept"]), Resp::Int(1));
        assert_eq!(mc(&["APPEND", "grown", "cd"]), Resp::Int(4));
        assert_eq!(mc(&["SUNIONSTORE", &dst, &src]), Resp::Int(1));
        thread::sleep(Duration::from_millis(600));
        send_signal(replica.pid(), libc::SIGCONT);
        wait_in_sync(&master, &replica);
        assert_eq!(rc(&["GET", "kept"]), Resp::Bulk(b"v".to_vec()));
        assert_eq!(rc(&["TTL", "kept"]), Resp::Int(-1));
        assert_eq!(rc(&["SMEMBERS", &dst]).array().len(), 1);
        // `grown` expired on both clocks: hidden on the replica, and the
        // master's next access sends the DEL.
        assert_eq!(rc(&["GET", "grown"]), Resp::NilBulk);
        assert_eq!(mc(&["GET", "grown"]), Resp::NilBulk);
        wait_in_sync(&master, &replica);
        assert_same_dataset(master.port, replica.port, &[0]);
    });
}

/// `replica-serve-stale-data no`: while its link to the master is down, a
/// replica answers data commands, PING and DBSIZE with MASTERDOWN (inside
/// MULTI too, where EXEC then aborts), and still answers INFO, ROLE, ECHO
/// and CONFIG; writes stay READONLY. Switched back to yes it serves the
/// stale data; once the link is up again it serves reads. The master is
/// stopped (SIGSTOP) and the link killed, so the replica cannot reconnect
/// until the master resumes.
#[test]
fn a_replica_refuses_stale_reads_when_told_to() {
    rounds("shards", &[1usize, 2], |shards| {
        let master = stock_master();
        let replica = start_with(shards, &["--replica-serve-stale-data", "no"]);
        replicaof(&replica, master.port, "REPLICAOF");
        wait_link_up(&replica, master.port, SYNC_TIMEOUT);
        ok(&master, &["SET", "k", "v"]);
        wait_in_sync(&master, &replica);
        let rc = |args: &[&str]| RawConn::connect(replica.port).cmds(args);
        assert_eq!(rc(&["GET", "k"]), Resp::Bulk(b"v".to_vec()));

        send_signal(master.pid(), libc::SIGSTOP);
        rc(&["CLIENT", "KILL", "TYPE", "master"]);
        wait_for("the replica's link to go down", SYNC_TIMEOUT, || {
            let s = info_value(&repl_info(replica.port), "master_link_status");
            (s.as_deref() == Some("down"))
                .then_some(())
                .ok_or(format!("master_link_status {s:?}"))
        });
        let masterdown = Resp::Error(
            b"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
                .to_vec(),
        );
        for c in [
            &["GET", "k"][..],
            &["MGET", "k", "x", "y"],
            &["EXISTS", "k"],
            &["DBSIZE"],
            &["PING"],
        ] {
            assert_eq!(rc(c), masterdown, "{c:?}");
        }
        // A pipeline whose reads span the shards: each one is refused.
        let mut p = RawConn::connect(replica.port);
        let keys: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let pipe: Vec<u8> = keys
            .iter()
            .flat_map(|k| common::encode(&[b"GET", k.as_bytes()]))
            .collect();
        p.send(&pipe);
        for k in &keys {
            assert_eq!(p.read(), masterdown, "pipelined GET {k}");
        }
        assert_eq!(
            rc(&["SET", "k", "w"]),
            Resp::Error(b"READONLY You can't write against a read only replica.".to_vec())
        );
        assert_eq!(rc(&["ECHO", "e"]), Resp::Bulk(b"e".to_vec()));
        assert_eq!(rc(&["ROLE"]).array()[0], Resp::Bulk(b"slave".to_vec()));
        let mut m = RawConn::connect(replica.port);
        assert_eq!(m.cmds(&["MULTI"]), Resp::Simple(b"OK".to_vec()));
        assert_eq!(m.cmds(&["GET", "k"]), masterdown);
        match m.cmds(&["EXEC"]) {
            Resp::Error(e) => assert!(e.starts_with(b"EXECABORT"), "{}", esc(&e)),
            other => panic!("EXEC after a refused GET answered {other:?}"),
        }
        ok(
            &replica,
            &["CONFIG", "SET", "replica-serve-stale-data", "yes"],
        );
        assert_eq!(rc(&["GET", "k"]), Resp::Bulk(b"v".to_vec()));
        ok(
            &replica,
            &["CONFIG", "SET", "replica-serve-stale-data", "no"],
        );
        assert_eq!(rc(&["GET", "k"]), masterdown);

        send_signal(master.pid(), libc::SIGCONT);
        wait_link_up(&replica, master.port, SYNC_TIMEOUT);
        assert_eq!(rc(&["GET", "k"]), Resp::Bulk(b"v".to_vec()));
        assert_eq!(rc(&["PING"]), Resp::Simple(b"PONG".to_vec()));
    });
}

/// Keys whose TTL passed are saved, and the loader decides, as in Redis
/// 7.0: a replica holding an expired key (its master has not sent the DEL
/// yet) writes it to its RDB; a server loading that file as a master
/// leaves the key out (and counts it in `rdb_last_load_keys_expired`),
/// one loading it as a replica keeps it for its master's DEL.
#[test]
fn expired_keys_are_saved_and_the_loader_decides() {
    rounds("shards", &[1usize, 2], |shards| {
        let master = stock_master();
        let mc = |args: &[&str]| RawConn::connect(master.port).cmds(args);
        ok(&master, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
        ok(&master, &["SET", "live", "v"]);
        ok(&master, &["SET", "gone", "v", "PX", "50"]);
        let replica = start_with(shards, &[]);
        replicaof(&replica, master.port, "REPLICAOF");
        wait_in_sync(&master, &replica);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(mc(&["DBSIZE"]), Resp::Int(2), "the master keeps it too");
        ok(&replica, &["SAVE"]);
        let dir = match RawConn::connect(replica.port).cmds(&["CONFIG", "GET", "dir"]) {
            Resp::Array(a) if a.len() == 2 => a[1].as_str(),
            other => panic!("CONFIG GET dir: {other:?}"),
        };
        let rdb = std::path::Path::new(&dir).join("dump.rdb");
        let out = Command::new(stock_tool("redis-check-rdb"))
            .arg(&rdb)
            .output()
            .expect("run redis-check-rdb");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("2 keys read") && text.contains("1 already expired"),
            "redis-check-rdb {}:\n{text}",
            rdb.display()
        );

        for (as_replica, want) in [(false, 1), (true, 2)] {
            let copy = std::env::temp_dir().join(format!(
                "tether-expired-rdb-{}-{shards}-{as_replica}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir_all(&copy).expect("dir for the copy");
            std::fs::copy(&rdb, copy.join("dump.rdb")).expect("copy the RDB");
            let dir_arg = copy.to_string_lossy().into_owned();
            let mut extra = vec!["--dir", dir_arg.as_str()];
            if as_replica {
                // A master that is not there: the link stays down and the
                // loaded data stays as it was loaded.
                extra.extend(["--replicaof", "127.0.0.1 1"]);
            }
            let s = start_with(shards, &extra);
            assert_eq!(
                RawConn::connect(s.port).cmds(&["DBSIZE"]),
                Resp::Int(want),
                "keys loaded {}",
                if as_replica {
                    "as a replica"
                } else {
                    "as a master"
                }
            );
            if !as_replica {
                let p = info_section(s.port, "persistence");
                assert_eq!(info_int(&p, "rdb_last_load_keys_expired"), 1, "{p}");
            }
            drop(s);
            let _ = std::fs::remove_dir_all(&copy);
        }
    });
}

/// A command from the master that fails on the replica means the datasets
/// diverged. As Redis 7.0's `afterErrorReply`: the replica counts it in
/// INFO's `unexpected_error_replies`, logs it as CRITICAL and goes on by
/// default; with `propagation-error-behavior panic` a read-only replica
/// crashes instead of serving diverged data.
#[test]
fn errors_from_the_master_are_counted_and_can_panic() {
    let rdb = empty_rdb();
    let mut r = Server::start(2);
    let fake = FakeMaster::new();
    replicaof(&r, fake.port, "REPLICAOF");
    let mut p = fake.expect_connection(RECONNECT_TIMEOUT, "after REPLICAOF", &r);
    p.handshake();
    p.send(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes());
    p.send(&bulk(&rdb));
    wait_link_up(&r, fake.port, SYNC_TIMEOUT);

    let mut stream = encode_cmd(&["SELECT", "0"]);
    stream.extend(encode_cmd(&["SET", "k", "abc"]));
    stream.extend(encode_cmd(&["INCR", "k"]));
    stream.extend(encode_cmd(&["SET", "after", "1"]));
    p.send(&stream);
    let mut c = RawConn::connect(r.port);
    wait_for("the stream applied", Duration::from_secs(10), || {
        match c.cmds(&["GET", "after"]) {
            Resp::Bulk(v) if v == b"1" => Ok(()),
            other => Err(format!("GET after: {other:?}")),
        }
    });
    let stats = c.cmds(&["INFO", "stats"]).as_str();
    assert_eq!(info_int(&stats, "unexpected_error_replies"), 1, "{stats}");
    let log = r.logs();
    assert!(
        log.contains("== CRITICAL == This replica is sending an error to its master"),
        "no CRITICAL line in the log:\n{}",
        tail(&log, 3000)
    );

    assert_eq!(
        c.cmds(&["CONFIG", "SET", "propagation-error-behavior", "panic"]),
        Resp::Simple(b"OK".to_vec())
    );
    p.send(&encode_cmd(&["INCR", "k"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.is_alive() {
        assert!(
            Instant::now() < deadline,
            "the replica did not panic on an error with propagation-error-behavior panic"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// CLIENT KILL on a replica reaches its link to the master as Redis's
/// master client: by ADDR (new and old style), and not by TYPE normal. The
/// link comes back with a partial resync. Redis's
/// integration/replication-psync.tcl breaks links this way.
#[test]
fn client_kill_addr_drops_the_master_link() {
    let master = Server::start(1);
    tune_master(&master);
    let replica = Server::start(2);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    let addr = format!("127.0.0.1:{}", master.port);
    let mut c = RawConn::connect(replica.port);
    assert_eq!(
        c.cmds(&["CLIENT", "KILL", "TYPE", "normal"]).as_int(),
        Some(0)
    );
    for old_style in [false, true] {
        RawConn::connect(master.port).cmds(&["SET", "k", if old_style { "b" } else { "a" }]);
        wait_in_sync(&master, &replica);
        let before = sync_counters(master.port);
        let r = if old_style {
            c.cmds(&["CLIENT", "KILL", &addr])
        } else {
            c.cmds(&["CLIENT", "KILL", "ADDR", &addr])
        };
        let want = if old_style {
            Resp::Simple(b"OK".to_vec())
        } else {
            Resp::Int(1)
        };
        assert_eq!(
            r,
            want,
            "{}: CLIENT KILL of the master link",
            replica.label()
        );
        wait_for("a partial resync after the kill", SYNC_TIMEOUT, || {
            let now = sync_counters(master.port);
            if now.1 > before.1 {
                Ok(())
            } else {
                Err(format!("sync counters {before:?} -> {now:?}"))
            }
        });
        wait_link_up(&replica, master.port, SYNC_TIMEOUT);
        assert_eq!(sync_counters(master.port).0, before.0, "no full sync");
    }
}

/// Starts tether (stock Redis under `TETHER_TEST_TARGET=redis`) on `port`
/// with `dir` as its working directory, for tests that restart a server
/// from its own files. Retried while the port is still held by the
/// previous process's closing sockets (EADDRINUSE at start-up).
fn start_in(
    dir: &std::path::Path,
    port: u16,
    args: &[&str],
    starts: &std::cell::Cell<u32>,
) -> std::process::Child {
    let program = if target_is_redis() {
        stock_tool("redis-server")
    } else {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_tether"))
    };
    for _ in 0..50 {
        starts.set(starts.get() + 1);
        let log = std::fs::File::create(dir.join(format!("log-{}", starts.get()))).unwrap();
        let mut child = std::process::Command::new(&program)
            .args(["--port", &port.to_string(), "--dir", dir.to_str().unwrap()])
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_none() {
            return child;
        }
    }
    panic!("the server would not start; logs in {}", dir.display());
}

/// A replica restarted from the RDB its SHUTDOWN saved resumes by partial
/// resync, in the database its master's stream had selected: the file
/// records the replication id, offset and stream db (Redis's
/// `rdbPopulateSaveInfo`), and the loader hands them to the link.
/// Redis's integration/psync2.tcl "Partial resync after restart using RDB
/// aux fields".
#[test]
fn restarted_replica_resumes_by_psync() {
    let master = Server::start(2);
    tune_master(&master);
    let dir = std::env::temp_dir().join(format!("tether-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::free_port();
    let follow = format!("127.0.0.1 {}", master.port);
    let starts = std::cell::Cell::new(0);
    let start = || start_in(&dir, port, &["--save", "", "--replicaof", &follow], &starts);
    let up = |what: &str| {
        wait_for(what, SYNC_TIMEOUT, || {
            let r =
                std::panic::catch_unwind(|| repl_info(port)).map_err(|_| "not up".to_string())?;
            match info_value(&r, "master_link_status").as_deref() {
                Some("up") => Ok(()),
                other => Err(format!("master_link_status {other:?}")),
            }
        })
    };
    let mut child = start();
    up("the replica's first sync");
    let mut m = RawConn::connect(master.port);
    m.cmds(&["SELECT", "3"]);
    m.cmds(&["SET", "a", "1"]);
    let m_off = || info_int(&repl_info(master.port), "master_repl_offset");
    wait_for("the replica to catch up", SYNC_TIMEOUT, || {
        let r = info_int(&repl_info(port), "slave_repl_offset");
        if r == m_off() {
            Ok(())
        } else {
            Err(format!("{r} of {}", m_off()))
        }
    });
    RawConn::connect(port).send_cmd(&[b"SHUTDOWN", b"SAVE"]);
    assert!(child.wait().unwrap().success());
    // Written while the replica is down, in the stream's db 3.
    m.cmds(&["SET", "b", "2"]);
    let (full, partial, _) = sync_counters(master.port);
    let mut child = start();
    up("the restarted replica's link");
    let after = sync_counters(master.port);
    assert_eq!(
        (after.0, after.1),
        (full, partial + 1),
        "sync counters (full, partial)"
    );
    m.cmds(&["SET", "c", "3"]);
    wait_for("the stream to continue in db 3", SYNC_TIMEOUT, || {
        let mut c = RawConn::connect(port);
        c.cmds(&["SELECT", "3"]);
        match c.cmds(&["MGET", "a", "b", "c"]) {
            Resp::Array(v) if v.iter().all(|x| matches!(x, Resp::Bulk(_))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A writable replica deletes the keys its own clients gave a TTL once it
/// passes (Redis's `expireSlaveKeys`; `replication-3.tcl`, "Slave is able
/// to evict keys created in writable slaves"), while keys from its master
/// stay until the master's DEL: expired, they only read as missing.
#[test]
fn writable_replica_expires_its_own_ttl_keys() {
    let master = start_with(2, &["--enable-debug-command", "yes"]);
    let replica = Server::start(2);
    tune_master(&master);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    let mut m = RawConn::connect(master.port);
    assert_eq!(m.cmds(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).as_str(), "OK");
    for k in ["m1", "m2", "m3"] {
        assert_eq!(m.cmds(&["SET", k, "v", "PX", "50"]).as_str(), "OK");
    }
    wait_in_sync(&master, &replica);
    ok(&replica, &["CONFIG", "SET", "replica-read-only", "no"]);
    let mut r = RawConn::connect(replica.port);
    for i in 0..20 {
        let k = format!("r{i}");
        match i % 3 {
            0 => assert_eq!(r.cmds(&["SET", &k, "v", "PX", "100"]).as_str(), "OK"),
            1 => {
                r.cmds(&["RPUSH", &k, "a"]);
                assert_eq!(r.cmds(&["PEXPIRE", &k, "100"]).as_int(), Some(1));
            }
            _ => {
                r.cmds(&["SET", &k, "v"]);
                assert_eq!(r.cmds(&["EXPIRE", &k, "1"]).as_int(), Some(1));
                // Made persistent again: it must stay.
                assert_eq!(r.cmds(&["PERSIST", &k]).as_int(), Some(1));
            }
        }
    }
    let tracked = || {
        info_int(
            &info_section(replica.port, "stats"),
            "slave_expires_tracked_keys",
        )
    };
    assert!(tracked() > 0, "slave_expires_tracked_keys");
    // Without a TTL: stays.
    r.cmds(&["SET", "plain", "v"]);
    assert_eq!(r.cmds(&["DBSIZE"]).as_int(), Some(24));
    // 6 persisted + plain + the master's 3, which only the master expires.
    let left = 6 + 1 + 3;
    assert!(
        common::wait_until(Duration::from_secs(5), || r.cmds(&["DBSIZE"]).as_int()
            == Some(left)),
        "{}: DBSIZE {:?}, want {left}",
        replica.label(),
        r.cmds(&["DBSIZE"])
    );
    assert_eq!(r.cmds(&["EXISTS", "m1", "m2", "m3"]).as_int(), Some(0));
    assert_eq!(r.cmds(&["EXISTS", "r2", "plain"]).as_int(), Some(2));
    assert!(
        common::wait_until(Duration::from_secs(2), || tracked() == 0),
        "slave_expires_tracked_keys {} once all are gone or persistent",
        tracked()
    );
    // The master's DELs still arrive, and nothing the replica expired
    // went the other way.
    assert_eq!(m.cmds(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]).as_str(), "OK");
    assert!(
        common::wait_until(Duration::from_secs(5), || r.cmds(&["DBSIZE"]).as_int()
            == Some(7)),
        "the master's expiries did not reach the replica"
    );
    assert_eq!(m.cmds(&["DBSIZE"]).as_int(), Some(0));
}

/// A master restarted from the RDB its SHUTDOWN saved keeps its stream
/// history: the file records the replication id and offset, the restarted
/// master takes that id as `master_replid2` (valid up to the offset) and
/// goes on from the offset, so its replica continues by PSYNC. Keys that
/// expired while it was down are left out of the load and reach the
/// replica as DELs. Redis 7.0's `loadDataFromDisk`;
/// integration/psync2-master-restart.tcl.
#[test]
fn restarted_master_keeps_history() {
    let dir = std::env::temp_dir().join(format!("tether-mrestart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::free_port();
    let starts = std::cell::Cell::new(0);
    let args = [
        "--save",
        "",
        "--repl-diskless-sync-delay",
        "0",
        "--repl-backlog-size",
        "64mb",
    ];
    let mut child = start_in(&dir, port, &args, &starts);
    let replica = Server::start(2);
    replicaof(&replica, port, "REPLICAOF");
    wait_link_up(&replica, port, SYNC_TIMEOUT);
    let mut m = RawConn::connect(port);
    for i in 0..50 {
        m.cmds(&["SET", &format!("k{i}"), "v"]);
        m.cmds(&["SET", &format!("t{i}"), "v", "PX", "300"]);
    }
    m.cmds(&["SELECT", "2"]);
    m.cmds(&["RPUSH", "list", "a", "b"]);
    let in_sync = |what: &str| {
        wait_for(what, SYNC_TIMEOUT, || {
            let mo = info_int(&repl_info(port), "master_repl_offset");
            let ro = info_int(&repl_info(replica.port), "slave_repl_offset");
            if mo == ro {
                Ok(())
            } else {
                Err(format!("master {mo}, replica {ro}"))
            }
        })
    };
    in_sync("the replica to catch up");
    let old = repl_info(port);
    let (old_id, old_off) = (
        info_value(&old, "master_replid").unwrap(),
        info_int(&old, "master_repl_offset"),
    );
    m.send_cmd(&[b"SHUTDOWN", b"SAVE"]);
    assert!(child.wait().unwrap().success());
    // The t* keys expire while the master is down.
    thread::sleep(Duration::from_millis(500));
    let mut child = start_in(&dir, port, &args, &starts);
    let info = repl_info(port);
    assert_eq!(
        info_value(&info, "master_replid2").as_deref(),
        Some(&*old_id)
    );
    // SHUTDOWN's REPLCONF GETACK went into the stream after `old_off`.
    let second = info_int(&info, "second_repl_offset");
    assert!(
        second > old_off,
        "second_repl_offset {second}, was at {old_off}"
    );
    // Beyond it: the DELs of the keys that expired meanwhile.
    assert!(info_int(&info, "master_repl_offset") >= second - 1);
    assert_ne!(
        info_value(&info, "master_replid").as_deref(),
        Some(&*old_id)
    );
    wait_link_up(&replica, port, SYNC_TIMEOUT);
    let (full, partial, _) = sync_counters(port);
    assert_eq!((full, partial), (0, 1), "sync counters (full, partial ok)");
    let mut m = RawConn::connect(port);
    m.cmds(&["SET", "after", "restart"]);
    in_sync("the replica to follow the restarted master");
    let mut r = RawConn::connect(replica.port);
    assert_eq!(r.cmds(&["DBSIZE"]).as_int(), Some(51), "db 0: t* dropped");
    assert_eq!(r.cmds(&["GET", "after"]).as_str(), "restart");
    r.cmds(&["SELECT", "2"]);
    assert_eq!(r.cmds(&["LLEN", "list"]).as_int(), Some(2));
    assert_eq!(
        info_value(&repl_info(replica.port), "master_replid"),
        info_value(&repl_info(port), "master_replid")
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CLIENT KILL of a replica's link to its master closes the socket at
/// once, as Redis frees its master client: the master sees the replica
/// go even when the replica stops right after (DEBUG SLEEP in the same
/// MULTI, as replication-psync.tcl's "backlog expired" cases do) and no
/// master traffic would wake the link.
#[test]
fn killed_master_link_closes_at_once() {
    let master = start_with(1, &["--repl-ping-replica-period", "60"]);
    let replica = start_with(2, &["--enable-debug-command", "yes"]);
    tune_master(&master);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    wait_in_sync(&master, &replica);
    let slaves = || info_int(&repl_info(master.port), "connected_slaves");
    assert_eq!(slaves(), 1);
    let mut r = RawConn::connect(replica.port);
    let start = Instant::now();
    for cmd in [
        &["MULTI"][..],
        &["CLIENT", "KILL", "TYPE", "master"],
        &["DEBUG", "SLEEP", "2"],
        &["EXEC"],
    ] {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        r.send_cmd(&args);
    }
    assert!(
        common::wait_until(Duration::from_millis(1500), || slaves() == 0),
        "{}: the master still counts the replica while it sleeps",
        replica.label()
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    for want in ["OK", "QUEUED", "QUEUED"] {
        assert_eq!(r.read_raw().0.as_str(), want);
    }
    match r.read_raw().0 {
        Resp::Array(v) => assert_eq!(v.len(), 2, "EXEC: {v:?}"),
        other => panic!("EXEC answered {other:?}"),
    }
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    // CONFIG RESETSTAT zeroes the sync counters, as Redis's
    // resetServerStats (psync2-master-restart.tcl relies on it).
    let (full, partial, _) = sync_counters(master.port);
    assert!(full + partial >= 2, "({full}, {partial})");
    ok(&master, &["CONFIG", "RESETSTAT"]);
    assert_eq!(sync_counters(master.port), (0, 0, 0));
}

/// `repl-diskless-sync-delay` holds a new replica's full sync, as in
/// Redis: the replica stays in the handshake (ROLE "handshake") while the
/// master sends it a newline a second, which keeps it from timing out;
/// when the master stops (DEBUG SLEEP) the replica detects it within
/// `repl-timeout` ("Timeout connecting to the MASTER..."), and once the
/// delay is lifted the sync goes through. replication.tcl's first tests.
#[test]
fn diskless_delay_holds_the_handshake() {
    let master = start_with(
        1,
        &[
            "--repl-diskless-sync-delay",
            "1000",
            "--enable-debug-command",
            "yes",
        ],
    );
    let replica = Server::start(2);
    ok(&replica, &["CONFIG", "SET", "repl-timeout", "2"]);
    replicaof(&replica, master.port, "REPLICAOF");
    let state = || match RawConn::connect(replica.port).cmds(&["ROLE"]).array() {
        [_, _, _, Resp::Bulk(st), _] => String::from_utf8_lossy(st).into_owned(),
        other => panic!("ROLE: {other:?}"),
    };
    wait_for(
        "the replica to enter the handshake",
        SYNC_TIMEOUT,
        || match state() {
            s if s == "handshake" => Ok(()),
            s => Err(s),
        },
    );
    // Longer than repl-timeout: the master's newlines keep it waiting.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(state(), "handshake");
    assert!(!replica.logs().contains("Timeout connecting to the MASTER"));
    let port = master.port;
    let sleeper = thread::spawn(move || RawConn::connect(port).cmds(&["DEBUG", "SLEEP", "4"]));
    wait_for("the replica to detect the timeout", SYNC_TIMEOUT, || {
        if replica.logs().contains("Timeout connecting to the MASTER") {
            Ok(())
        } else {
            Err(state())
        }
    });
    assert_eq!(sleeper.join().unwrap().as_str(), "OK");
    ok(&master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
}

/// GETSET reaches the replica as SET, and SET's GET option is dropped, as
/// Redis 7.0 propagates them: the replica's commandstats count three SETs
/// and no GETSET (replication.tcl, "GETSET replication").
#[test]
fn getset_replicates_as_set() {
    let master = Server::start(2);
    let replica = Server::start(2);
    tune_master(&master);
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    ok(&replica, &["CONFIG", "RESETSTAT"]);
    let mut m = RawConn::connect(master.port);
    assert_eq!(m.cmds(&["SET", "test", "foo"]).as_str(), "OK");
    assert_eq!(m.cmds(&["GETSET", "test", "bar"]).as_str(), "foo");
    assert_eq!(m.cmds(&["SET", "test", "vaz", "GET"]).as_str(), "bar");
    wait_in_sync(&master, &replica);
    assert_eq!(
        RawConn::connect(replica.port)
            .cmds(&["GET", "test"])
            .as_str(),
        "vaz"
    );
    let stats = RawConn::connect(replica.port)
        .cmds(&["INFO", "commandstats"])
        .as_str();
    assert!(stats.contains("cmdstat_set:calls=3,"), "{stats}");
    assert!(!stats.contains("cmdstat_getset"), "{stats}");
}

/// `rdb-key-save-delay` (Redis's testing knob, which its replication tests
/// use to keep a full sync going) paces the snapshot key by key while the
/// master goes on serving: 200 keys at 5 ms take a second to reach the
/// replica, PINGs meanwhile are answered at once, and the replica ends up
/// with every key.
#[test]
fn rdb_key_save_delay_paces_the_snapshot() {
    let master = Server::start(2);
    let replica = Server::start(2);
    tune_master(&master);
    let mut m = RawConn::connect(master.port);
    for i in 0..200 {
        m.cmds(&["SET", &format!("k{i}"), "v"]);
    }
    ok(&master, &["CONFIG", "SET", "rdb-key-save-delay", "5000"]);
    let start = Instant::now();
    replicaof(&replica, master.port, "REPLICAOF");
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(m.cmds(&["PING"]).as_str(), "PONG");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the master stalled"
    );
    assert_ne!(
        info_value(&repl_info(replica.port), "master_link_status").as_deref(),
        Some("up"),
        "the sync should still be going"
    );
    // A full sync's snapshot shows as an RDB save in progress, as Redis's
    // child does.
    let persistence = info_section(master.port, "persistence");
    assert_eq!(info_int(&persistence, "rdb_bgsave_in_progress"), 1);
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_millis(800));
    assert_eq!(
        info_int(
            &info_section(master.port, "persistence"),
            "rdb_bgsave_in_progress"
        ),
        0
    );
    ok(&master, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    assert_eq!(
        RawConn::connect(replica.port).cmds(&["DBSIZE"]).as_int(),
        Some(200)
    );
}

/// Replicas waiting for a full sync together share one snapshot, as they
/// share Redis's one RDB transfer, instead of each waiting for the one
/// before (tether takes one snapshot at a time): with a 1 s
/// `repl-diskless-sync-delay`, two tether replicas and a stock one that
/// ask at once are served from one snapshot, paced here so all three are
/// in it together, and each then follows the stream from its cut.
#[test]
fn waiting_replicas_share_one_snapshot() {
    let master = Server::tether(2);
    ok(&master, &["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    let mut m = RawConn::connect(master.port);
    for i in 0..200 {
        m.cmds(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    ok(&master, &["CONFIG", "SET", "repl-diskless-sync-delay", "1"]);
    ok(&master, &["CONFIG", "SET", "rdb-key-save-delay", "2000"]);
    let replicas = [Server::tether(2), Server::tether(1), Server::stock_redis()];
    for r in &replicas {
        replicaof(r, master.port, "REPLICAOF");
    }
    // Written while the snapshot is produced: reaches them by the stream.
    thread::sleep(Duration::from_millis(1200));
    m.cmds(&["SET", "during", "sync"]);
    for r in &replicas {
        wait_link_up(r, master.port, SYNC_TIMEOUT);
    }
    m.cmds(&["SET", "after", "sync"]);
    for r in &replicas {
        wait_in_sync(&master, r);
        let mut c = RawConn::connect(r.port);
        assert_eq!(c.cmds(&["DBSIZE"]).as_int(), Some(202), "{}", r.label());
        assert_eq!(c.cmds(&["GET", "k199"]).as_str(), "v199", "{}", r.label());
        assert_eq!(c.cmds(&["GET", "during"]).as_str(), "sync", "{}", r.label());
    }
    assert!(
        master
            .logs()
            .contains("Full sync snapshot shared by 3 replicas"),
        "{}",
        master.logs()
    );
    assert_eq!(sync_counters(master.port).0, 3);
}

/// A replica's hard output-buffer limit below `repl-backlog-size` counts as
/// the backlog size, as in Redis 7.0: a replica that resumes by PSYNC and
/// is owed more than its limit at once is served, not dropped into a
/// reconnect-and-resume loop (replication-buffer.tcl, "Partial
/// resynchronization is successful even client-output-buffer-limit is
/// less than repl-backlog-size").
#[test]
fn obuf_limit_below_backlog_does_not_loop() {
    let master = start_with(1, &["--enable-debug-command", "yes"]);
    let replica = Server::start(2);
    tune_master(&master);
    ok(&master, &["CONFIG", "SET", "repl-backlog-size", "100mb"]);
    ok(
        &master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 512k 0 0",
        ],
    );
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    wait_in_sync(&master, &replica);
    let big = "A".repeat(10 << 20);
    let mut m = RawConn::connect(master.port);
    m.cmds(&["MULTI"]);
    m.cmds(&["CLIENT", "KILL", "TYPE", "replica"]);
    m.cmds(&["SET", "key", &big]);
    m.cmds(&["SET", "key", &big]);
    // The replica reconnects meanwhile and is owed 20 MB at once.
    m.cmds(&["DEBUG", "SLEEP", "2"]);
    assert!(matches!(m.cmds(&["EXEC"]), Resp::Array(_)));
    m.cmds(&["SET", "key", &big]);
    wait_in_sync(&master, &replica);
    thread::sleep(Duration::from_millis(500));
    let (full, partial, _) = sync_counters(master.port);
    assert_eq!((full, partial), (1, 1), "sync counters (full, partial ok)");
    assert_eq!(info_int(&repl_info(master.port), "connected_slaves"), 1);
}

/// A replica's output buffer shrinks back once a big write has gone out,
/// as Redis's client cron shrinks reply buffers: CLIENT LIST's `tot-mem`
/// for the replica falls below the write's size (replication-buffer.tcl,
/// "Replica client-output-buffer size is limited ..."), and so does a
/// normal client's after a big reply.
#[test]
fn output_buffers_shrink_after_a_burst() {
    let master = Server::start(1);
    let replica = Server::start(1);
    tune_master(&master);
    // The tcl test's settings: a small backlog, so that Redis's count (its
    // shared replication buffer) stays small as well.
    ok(&master, &["CONFIG", "SET", "repl-backlog-size", "16384"]);
    ok(
        &master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 32768 32768 60",
        ],
    );
    replicaof(&replica, master.port, "REPLICAOF");
    wait_link_up(&replica, master.port, SYNC_TIMEOUT);
    let size = 256 << 10;
    let mut m = RawConn::connect(master.port);
    m.cmds(&["SET", "key", &"x".repeat(size)]);
    m.cmds(&["SET", "key1", "1"]);
    wait_in_sync(&master, &replica);
    assert_eq!(m.cmds(&["GET", "key"]).as_str().len(), size);
    let tot_mem = |typ: &str| {
        let list = RawConn::connect(master.port)
            .cmds(&["CLIENT", "LIST", "TYPE", typ])
            .as_str();
        list.lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("tot-mem=")))
            .map(|v| v.parse::<usize>().unwrap())
            .max()
            .unwrap_or(usize::MAX)
    };
    wait_for(
        "the replica's output buffer to shrink",
        SYNC_TIMEOUT,
        || match tot_mem("replica") {
            t if t < size => Ok(()),
            t => Err(format!("tot-mem={t}")),
        },
    );
    wait_for(
        "the client's output buffer to shrink",
        SYNC_TIMEOUT,
        || match tot_mem("normal") {
            t if t < size => Ok(()),
            t => Err(format!("tot-mem={t}")),
        },
    );
}
