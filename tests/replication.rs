//! tether as a replication master, with stock `redis-server` 7.0 as its
//! replica (issue #5): full sync of every type under writes, partial resync
//! after a killed link, the replica output-buffer limit, min-replicas / WAIT,
//! INFO replication and ROLE, and the PSYNC handshake byte by byte.
//!
//! Every test also passes with `TETHER_TEST_TARGET=redis` (stock master and
//! stock replica); `harness_compares_stock_master_and_replica` checks the
//! dataset comparison itself.
mod common;

use common::{
    Background, RawConn, Resp, Server, StockReplica, assert_same_dataset, dataset_diffs, esc,
    info_int, info_section, info_value, read_reply, stock_tool, wait_for, wait_until,
};
use std::io::{BufRead, Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Link up, snapshot transferred and loaded: generous for a loaded 2-core box.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// A replica reconnecting after a dropped link (stock retries once a second).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn repl_info(s: &Server) -> String {
    info_section(s.port, "replication")
}

fn stats(s: &Server) -> String {
    info_section(s.port, "stats")
}

/// (sync_full, sync_partial_ok, sync_partial_err) from the master's INFO stats.
fn sync_counters(master: &Server) -> (i64, i64, i64) {
    let st = stats(master);
    (
        info_int(&st, "sync_full"),
        info_int(&st, "sync_partial_ok"),
        info_int(&st, "sync_partial_err"),
    )
}

/// Run a command over a fresh raw connection and expect `+OK`.
fn ok(s: &Server, args: &[&str]) {
    let r = RawConn::connect(s.port).cmds(args);
    assert_eq!(r, Resp::Simple(b"OK".to_vec()), "{args:?} on {}", s.label());
}

/// Master settings every test here uses: start a full sync at once (the
/// 7.0 default waits 5 s for more replicas to share a diskless transfer).
fn tune_master(master: &Server) {
    ok(master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
}

/// Wait until the replica's link is up, then until its processed offset
/// equals the master's `master_repl_offset` (both read in the same poll).
fn wait_in_sync(master: &Server, replica: &Server) {
    wait_for(
        "the replica to catch up with the master",
        SYNC_TIMEOUT,
        || {
            let r = repl_info(replica);
            let link = info_value(&r, "master_link_status").unwrap_or_default();
            if link != "up" {
                return Err(format!("replica master_link_status:{link}"));
            }
            let m = info_int(&repl_info(master), "master_repl_offset");
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

fn wait_link_up(replica: &Server, timeout: Duration) {
    wait_for("the replica's master_link_status:up", timeout, || {
        let r = repl_info(replica);
        match info_value(&r, "master_link_status").as_deref() {
            Some("up") => Ok(()),
            other => Err(format!(
                "master_link_status {other:?}, master_sync_in_progress {:?}",
                info_value(&r, "master_sync_in_progress")
            )),
        }
    });
}

/// Start a stock replica of `master` and wait until it is in sync.
fn attach_replica(master: &Server) -> StockReplica {
    let replica = StockReplica::start(master.port, &[]);
    wait_link_up(&replica, SYNC_TIMEOUT);
    wait_in_sync(master, &replica);
    replica
}

fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &redis::Cmd) -> T {
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{}", common::describe(&e)))
}

/// A deterministic mix of every type in `db`: strings (integers, floats,
/// empty, binary, 1000-byte values), lists / hashes / sets / zsets both
/// small (listpack / intset encodings) and large (> 200 elements, so the
/// RDB uses the big encodings), integer sets on both sides of the intset
/// limit, zsets with fractional, equal and infinite scores; about a fifth
/// of the keys with a TTL ten days out, and `short:*` keys that expire
/// 1-4 s after creation (during the sync, so DEL propagation is exercised).
fn populate(port: u16, db: u32) {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}")).unwrap();
    let mut con = c
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let pre = format!("db{db}:");
    let big = |i: usize| -> String {
        (0..1000)
            .map(|j| (b'a' + ((i + j) % 26) as u8) as char)
            .collect()
    };
    let mut pipe = redis::pipe();
    // Strings.
    for i in 0..400 {
        let k = format!("{pre}str:{i}");
        let v = match i % 5 {
            0 => i.to_string(),
            1 => format!("-{}", i * 1_000_003),
            2 => format!("{}.25", i),
            3 => big(i),
            _ => format!("value-{i}"),
        };
        pipe.cmd("SET").arg(&k).arg(v).ignore();
        if i % 5 == 4 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
    }
    pipe.cmd("SET")
        .arg(format!("{pre}str:empty"))
        .arg("")
        .ignore();
    pipe.cmd("SET")
        .arg(format!("{pre}bin:\x00\u{ff}\r\n").as_bytes())
        .arg(&b"\x00\x01\xfe\xff\r\n"[..])
        .ignore();
    pipe.cmd("SET")
        .arg(format!("{pre}str:i64max"))
        .arg(i64::MAX.to_string())
        .ignore();
    pipe.cmd("SET")
        .arg(format!("{pre}str:exat"))
        .arg("absolute")
        .arg("EXAT")
        .arg(4_102_444_800u64) // 2100-01-01
        .ignore();
    // Lists: small, large, of big elements.
    for (i, len) in [1usize, 3, 10, 127, 128, 250, 1000, 5000]
        .iter()
        .enumerate()
    {
        let k = format!("{pre}list:{i}");
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(&k);
        for j in 0..*len {
            if j % 3 == 0 {
                cmd.arg(j as i64 - 500);
            } else {
                cmd.arg(format!("item-{j}"));
            }
        }
        pipe.add_command(cmd).ignore();
        if i % 3 == 0 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
    }
    let mut cmd = redis::cmd("RPUSH");
    cmd.arg(format!("{pre}list:big-elements"));
    for j in 0..20 {
        cmd.arg(big(j));
    }
    pipe.add_command(cmd).ignore();
    // Hashes.
    for (i, n) in [2usize, 20, 128, 129, 300, 2000].iter().enumerate() {
        let k = format!("{pre}hash:{i}");
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&k);
        for j in 0..*n {
            cmd.arg(format!("field-{j}")).arg(if j % 2 == 0 {
                j.to_string()
            } else {
                format!("v{j}")
            });
        }
        pipe.add_command(cmd).ignore();
        if i % 2 == 1 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
    }
    pipe.cmd("HSET")
        .arg(format!("{pre}hash:big-values"))
        .arg("a")
        .arg(big(1))
        .arg("b")
        .arg(big(2))
        .ignore();
    // Sets: integer sets below and above the intset limit, string sets.
    for (i, n) in [5usize, 100, 512, 513, 3000].iter().enumerate() {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(format!("{pre}intset:{i}"));
        for j in 0..*n {
            cmd.arg(j as i64 * 7 - 1000);
        }
        pipe.add_command(cmd).ignore();
    }
    pipe.cmd("SADD")
        .arg(format!("{pre}intset:wide"))
        .arg(i64::MIN)
        .arg(i64::MAX)
        .arg(0)
        .arg(-1)
        .arg(65536)
        .ignore();
    for (i, n) in [3usize, 128, 129, 400].iter().enumerate() {
        let k = format!("{pre}set:{i}");
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&k);
        for j in 0..*n {
            cmd.arg(format!("member-{j}"));
        }
        pipe.add_command(cmd).ignore();
        if i == 2 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
    }
    // Sorted sets.
    pipe.cmd("ZADD")
        .arg(format!("{pre}zset:special"))
        .arg("1.5")
        .arg("a")
        .arg("-0.25")
        .arg("b")
        .arg("1e-10")
        .arg("c")
        .arg("inf")
        .arg("d")
        .arg("-inf")
        .arg("e")
        .arg("3.141592653589793")
        .arg("f")
        .arg("0.1")
        .arg("g")
        .arg("1e300")
        .arg("h")
        .ignore();
    for (i, n) in [10usize, 128, 129, 300, 2500].iter().enumerate() {
        let k = format!("{pre}zset:{i}");
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&k);
        for j in 0..*n {
            // Fractional scores; every 10th member ties with its neighbour.
            let score = if j % 10 == 0 { j / 10 } else { j } as f64 / 3.0;
            cmd.arg(score).arg(format!("m{j}"));
        }
        pipe.add_command(cmd).ignore();
        if i % 2 == 0 {
            pipe.cmd("PEXPIRE").arg(&k).arg(864_000_000).ignore();
        }
    }
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(format!("{pre}zset:ties"));
    for j in 0..300 {
        cmd.arg(7).arg(format!("tie-{j}"));
    }
    pipe.add_command(cmd).ignore();
    // Keys that expire during the sync.
    for i in 0..200 {
        pipe.cmd("SET")
            .arg(format!("{pre}short:{i}"))
            .arg(i)
            .arg("PX")
            .arg(1000 + (i % 30) * 100)
            .ignore();
    }
    pipe.cmd("RPUSH")
        .arg(format!("{pre}short:list"))
        .arg("a")
        .arg("b")
        .ignore();
    pipe.cmd("PEXPIRE")
        .arg(format!("{pre}short:list"))
        .arg(1500)
        .ignore();
    let () = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("populating db {db}: {}", common::describe(&e)));
}

/// A thread writing to `db` 0 and 5 of `port` until stopped: an ever
/// growing journal list (so lost or reordered writes show), counters, and
/// overwritten strings / hash fields / set and zset members.
struct Writer {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(port: u16) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (st, count) = (stop.clone(), ops.clone());
        let handle = thread::spawn(move || {
            let open = |db: u32| {
                redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
                    .unwrap()
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .unwrap()
            };
            let mut cons = [open(0), open(5)];
            let mut n: u64 = 0;
            while !st.load(Ordering::Relaxed) {
                for con in cons.iter_mut() {
                    let mut p = redis::pipe();
                    for _ in 0..20 {
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
                    }
                    let () = p
                        .query(con)
                        .unwrap_or_else(|e| panic!("writer: {}", common::describe(&e)));
                    count.fetch_add(120, Ordering::Relaxed);
                }
            }
        });
        Writer {
            stop,
            ops,
            handle: Some(handle),
        }
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Wait until at least `more` further writes went through.
    fn wait_for_more(&self, more: u64) {
        let target = self.ops() + more;
        wait_for(
            "the writer to make progress",
            Duration::from_secs(30),
            || {
                if self.ops() >= target {
                    Ok(())
                } else {
                    Err(format!("{} of {target} writes", self.ops()))
                }
            },
        );
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.handle.take().unwrap().join() {
            std::panic::resume_unwind(e);
        }
        self.ops()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Full sync
// ---------------------------------------------------------------------------

/// A 4-shard master holding every type (small and large collections, TTLs
/// near and far) in dbs 0, 3 and 9 gets a stock replica while
/// redis-benchmark writes to it. The replica must come up during the
/// writes, catch up to the master's offset once they stop, hold exactly
/// the master's data key by key, and cost exactly one full sync.
#[test]
fn full_sync_every_type_under_writes() {
    let master = Server::start(4);
    tune_master(&master);
    let dbs = [0, 3, 9];
    for db in dbs {
        populate(master.port, db);
    }
    let (full0, _, _) = sync_counters(&master);

    let mut bench = Background::spawn(
        Command::new(stock_tool("redis-benchmark")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &master.port.to_string(),
            "-t",
            "set,incr,lpush,sadd,hset",
            "-r",
            "10000",
            "-n",
            "200000",
            "-q",
            "-e",
        ]),
        "redis-benchmark",
    );
    // Let the benchmark get going so that the snapshot is cut mid-stream.
    thread::sleep(Duration::from_millis(300));
    let replica = StockReplica::start(master.port, &[]);
    wait_link_up(&replica, SYNC_TIMEOUT);
    let during = bench.is_running();
    eprintln!("replica link up; benchmark still running: {during}");
    let out = bench.finish(Duration::from_secs(300));
    eprintln!("redis-benchmark:\n{out}");
    assert!(
        !out.to_lowercase().contains("err"),
        "redis-benchmark saw error replies from the master:\n{out}"
    );

    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &dbs);
    let (full1, _, _) = sync_counters(&master);
    assert_eq!(full1, full0 + 1, "exactly one full sync expected");
    // The benchmark's own keys made it across too (not only the snapshot).
    let mut r = replica.client();
    let n: i64 = query(&mut r, redis::cmd("LLEN").arg("mylist"));
    assert!(n > 0, "replica has no benchmark list");
}

/// The dataset comparison itself, on stock master → stock replica: after
/// a sync it finds nothing, and after writes made on the replica alone
/// (replica-read-only no) it reports each of them.
#[test]
fn harness_compares_stock_master_and_replica() {
    let master = Server::stock_redis();
    tune_master(&master);
    for db in [0, 2] {
        populate(master.port, db);
    }
    let replica = attach_replica(&master);
    assert_same_dataset(master.port, replica.port, &[0, 2]);

    ok(&replica, &["CONFIG", "SET", "replica-read-only", "no"]);
    let mut r = RawConn::connect(replica.port);
    let edits: [&[&str]; 7] = [
        &["SET", "db0:str:3", "changed"],
        &["SET", "only-on-replica", "x"],
        &["HSET", "db0:hash:1", "field-0", "other"],
        &["ZADD", "db0:zset:special", "2", "a"],
        &["PEXPIRE", "db0:str:7", "500000000"],
        &["LSET", "db0:list:6", "999", "moved"],
        &["SADD", "db0:intset:4", "2"],
    ];
    for e in edits {
        let reply = r.cmds(e);
        assert!(!reply.is_error(), "{e:?} on the replica: {reply:?}");
    }
    let diffs = dataset_diffs(master.port, replica.port, &[0, 2]);
    let text = diffs.join("\n");
    for needle in [
        "\"db0:str:3\" differs",
        "\"only-on-replica\" (string, pttl -1) only on",
        "\"db0:hash:1\" differs",
        "\"db0:zset:special\" differs",
        "\"db0:str:7\" PTTL",
        "\"db0:list:6\" differs (first difference at element 999)",
        "\"db0:intset:4\" differs",
        "DBSIZE",
    ] {
        assert!(text.contains(needle), "no `{needle}` in the diffs:\n{text}");
    }
    assert!(
        !text.contains("db 2:"),
        "db 2 was not touched but differs:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// Partial resync
// ---------------------------------------------------------------------------

/// With writes flowing the whole time, the replication link is cut three
/// ways: `CLIENT KILL TYPE replica` and `CLIENT KILL TYPE slave` on the
/// master, `CLIENT KILL TYPE master` on the replica. Each time the replica
/// must come back with a partial resync (sync_partial_ok grows, sync_full
/// does not) and end up with the master's data. With one shard, the
/// writer's pipelines are batched into multi-command backlog entries, so
/// the replica's offset usually falls inside one when the link goes.
#[test]
fn partial_resync_after_link_kill() {
    for shards in [1, 4] {
        partial_resync_case(shards);
    }
}

fn partial_resync_case(shards: usize) {
    let master = Server::start(shards);
    tune_master(&master);
    populate(master.port, 0);
    populate(master.port, 5);
    let replica = attach_replica(&master);
    let (full0, partial0, _) = sync_counters(&master);

    let writer = Writer::start(master.port);
    writer.wait_for_more(2000);
    let kills: [(&Server, &str); 3] = [
        (&master, "replica"),
        (&master, "slave"),
        (&replica.server, "master"),
    ];
    for (round, (on, kind)) in kills.into_iter().enumerate() {
        let killed = RawConn::connect(on.port).cmds(&["CLIENT", "KILL", "TYPE", kind]);
        assert_eq!(
            killed,
            Resp::Int(1),
            "CLIENT KILL TYPE {kind} on {} should kill the one link",
            on.label()
        );
        writer.wait_for_more(2000);
        let want = partial0 + round as i64 + 1;
        wait_for(
            &format!(
                "partial resync #{} after CLIENT KILL TYPE {kind}",
                round + 1
            ),
            RECONNECT_TIMEOUT,
            || {
                let (full, partial, err) = sync_counters(&master);
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
        wait_link_up(&replica, RECONNECT_TIMEOUT);
        writer.wait_for_more(2000);
    }
    let ops = writer.stop();
    eprintln!("writer made {ops} writes");
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0, 5]);
    let (full1, partial1, _) = sync_counters(&master);
    assert_eq!(full1, full0, "no full sync expected");
    assert_eq!(partial1, partial0 + 3, "one partial resync per kill");
}

// ---------------------------------------------------------------------------
// Output buffer limit
// ---------------------------------------------------------------------------

/// With `client-output-buffer-limit replica 1mb 512kb 1`, a frozen replica
/// (SIGSTOP) while 32 MB are written must be disconnected by the master
/// (connected_slaves drops to 0 while it is still frozen). Thawed, it
/// reconnects; the backlog no longer covers its offset, so it takes a full
/// sync, and ends up with the master's data.
#[test]
fn output_buffer_limit_disconnects_and_recovers() {
    let master = Server::start(4);
    tune_master(&master);
    populate(master.port, 0);
    let mut replica = attach_replica(&master);
    let (full0, _, _) = sync_counters(&master);
    ok(
        &master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 1mb 512kb 1",
        ],
    );

    replica.pause();
    // 64 x 512 KB: far beyond the limit plus both kernels' socket buffers.
    let value = vec![b'v'; 512 * 1024];
    let mut c = RawConn::connect(master.port);
    for i in 0..64 {
        let r = c.cmd(&[b"SET", format!("big:{i}").as_bytes(), &value]);
        assert_eq!(r, Resp::Simple(b"OK".to_vec()), "SET big:{i}");
    }
    wait_for(
        "the master to drop the frozen replica over its output buffer limit",
        Duration::from_secs(20),
        || {
            let info = repl_info(&master);
            match info_int(&info, "connected_slaves") {
                0 => Ok(()),
                n => Err(format!("connected_slaves:{n}\n{info}")),
            }
        },
    );
    replica.resume();

    wait_for("a full resync of the thawed replica", SYNC_TIMEOUT, || {
        let (full, _, _) = sync_counters(&master);
        if full > full0 {
            Ok(())
        } else {
            Err(format!("sync_full {full}"))
        }
    });
    wait_link_up(&replica, SYNC_TIMEOUT);
    // Some writes after the resync, then compare.
    let r = c.cmds(&["SET", "after", "resync"]);
    assert_eq!(r, Resp::Simple(b"OK".to_vec()));
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
}

/// PSYNC is answered from `repl-backlog-size` bytes of history, and from
/// older history only while a connected replica still holds it, as Redis
/// 7.0's shared replication buffer does. A laggard that reads nothing
/// (no output limit) holds 16 MB: a PSYNC from there continues. Once the
/// laggard is dropped (CLIENT KILL TYPE replica, then a cron tick), the
/// same PSYNC takes a full resync, while one inside the last megabyte
/// still continues. Before, history the shards had not yet trimmed was
/// offered to any replica: one dropped over its output buffer limit that
/// reconnected at once was owed the whole overrun again instead of a full
/// resync (the test above, on a fast machine).
#[test]
fn psync_is_served_from_the_backlog_and_what_replicas_hold() {
    let master = Server::start(2);
    tune_master(&master);
    ok(&master, &["CONFIG", "SET", "repl-backlog-size", "1mb"]);
    ok(
        &master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 0 0 0",
        ],
    );
    // A replica that never reads past its snapshot.
    let mut laggard = RawConn::connect(master.port);
    let (replid, off) = eof_full_sync(&mut laggard);
    let value = vec![b'v'; 256 * 1024];
    let mut c = RawConn::connect(master.port);
    for i in 0..64 {
        let r = c.cmd(&[b"SET", format!("held:{i}").as_bytes(), &value]);
        assert!(is_ok(&r), "SET held:{i}: {r:?}");
    }
    let master_off = info_int(&repl_info(&master), "master_repl_offset");
    assert!(
        master_off - off > 8 << 20,
        "16 MB written: {off} -> {master_off}"
    );
    let (full0, partial0, _) = sync_counters(&master);
    let psync_from = |at: i64| {
        let mut p = RawConn::connect(master.port);
        assert!(is_ok(&p.cmds(&["REPLCONF", "capa", "psync2"])));
        p.send_cmd(&[b"PSYNC", replid.as_bytes(), at.to_string().as_bytes()]);
        handshake_line(&mut p)
    };

    // Held by the laggard: continued.
    assert_eq!(psync_from(off + 1), format!("+CONTINUE {replid}"));

    // The laggard gone: a full resync from its offset.
    let mut admin = master.raw();
    let killed = admin.cmds(&["CLIENT", "KILL", "TYPE", "replica"]);
    assert!(matches!(killed, Resp::Int(n) if n >= 1), "{killed:?}");
    drop(laggard);
    thread::sleep(Duration::from_millis(300));
    let line = psync_from(off + 1);
    assert!(line.starts_with("+FULLRESYNC"), "{line}");

    // From inside the last megabyte: continued.
    assert_eq!(
        psync_from(master_off - 1000 + 1),
        format!("+CONTINUE {replid}")
    );
    let (full1, partial1, _) = sync_counters(&master);
    assert_eq!((full1, partial1), (full0 + 1, partial0 + 2));
}

// ---------------------------------------------------------------------------
// min-replicas and WAIT
// ---------------------------------------------------------------------------

fn is_ok(r: &Resp) -> bool {
    matches!(r, Resp::Simple(s) if s == b"OK")
}

/// WAIT counts a live replica; min-replicas-to-write 1 with
/// min-replicas-max-lag 2 refuses writes with -NOREPLICAS once a frozen
/// replica has not acked for over 2 s (reads still served), WAIT then times
/// out with 0 after its timeout, and writes resume once the replica thaws.
///
/// Note Redis's WAIT counts replicas that acked the offset of *this
/// client's* last write: a client whose last write was already acked gets
/// its answer at once, so each WAIT here follows a fresh write.
#[test]
fn min_replicas_and_wait() {
    let master = Server::start(4);
    tune_master(&master);
    let mut replica = attach_replica(&master);
    let mut c = RawConn::connect(master.port);

    assert!(is_ok(&c.cmds(&["SET", "w", "1"])));
    assert_eq!(c.cmds(&["WAIT", "1", "1000"]), Resp::Int(1), "WAIT 1 1000");

    ok(&master, &["CONFIG", "SET", "min-replicas-to-write", "1"]);
    ok(&master, &["CONFIG", "SET", "min-replicas-max-lag", "2"]);
    let r = c.cmds(&["SET", "w", "2"]);
    assert!(is_ok(&r), "write with a live replica: {r:?}");

    replica.pause();
    let paused_at = Instant::now();
    // Writes go through until the last ACK is more than 2 s old.
    let mut refused = Resp::Null;
    let mut accepted = 0;
    wait_for(
        "writes to be refused with a frozen replica",
        Duration::from_secs(15),
        || {
            let r = c.cmds(&["SET", "w", "3"]);
            if r.is_error() {
                refused = r;
                Ok(())
            } else {
                accepted += 1;
                Err(format!("SET answered {r:?}"))
            }
        },
    );
    let after = paused_at.elapsed();
    assert!(
        refused.as_str().starts_with("NOREPLICAS"),
        "writes must be refused with -NOREPLICAS, got {refused:?}"
    );
    assert!(
        after >= Duration::from_millis(500),
        "writes refused {after:?} after the replica froze; max-lag is 2 s"
    );
    eprintln!("writes refused {after:?} after SIGSTOP: {refused:?}");
    for cmd in [
        &["INCR", "n"][..],
        &["LPUSH", "l", "x"],
        &["DEL", "w"],
        &["HSET", "h", "f", "v"],
    ] {
        let r = c.cmds(cmd);
        assert!(
            r.as_str().starts_with("NOREPLICAS"),
            "{cmd:?} with too few good replicas: {r:?}"
        );
    }
    // Reads go on.
    let last = if accepted > 0 { "3" } else { "2" };
    assert_eq!(c.cmds(&["GET", "w"]), Resp::Bulk(last.as_bytes().to_vec()));
    assert_eq!(c.cmds(&["EXISTS", "n"]), Resp::Int(0));

    // WAIT times out: allow writes, write, wait for the frozen replica.
    ok(&master, &["CONFIG", "SET", "min-replicas-to-write", "0"]);
    assert!(is_ok(&c.cmds(&["SET", "w", "4"])));
    let t = Instant::now();
    let r = c.cmds(&["WAIT", "1", "500"]);
    let took = t.elapsed();
    assert_eq!(r, Resp::Int(0), "WAIT 1 500 with a frozen replica");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "WAIT 1 500 returned after {took:?}"
    );
    ok(&master, &["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let r = c.cmds(&["SET", "w", "5"]);
    assert!(
        r.as_str().starts_with("NOREPLICAS"),
        "still frozen, writes must be refused again: {r:?}"
    );

    replica.resume();
    wait_for(
        "writes to be accepted after the replica thawed",
        Duration::from_secs(15),
        || {
            let r = c.cmds(&["SET", "w", "6"]);
            if is_ok(&r) {
                Ok(())
            } else {
                Err(format!("SET answered {r:?}"))
            }
        },
    );
    assert_eq!(
        c.cmds(&["WAIT", "1", "5000"]),
        Resp::Int(1),
        "WAIT after thaw"
    );
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
}

/// WAIT answers when the replica's ACK comes back, not at the replica's
/// next periodic ACK (one a second): 60 write + `WAIT 1 0` pairs from
/// connections spread over the master's shards (most of them not the
/// shard serving the replica link) must finish far inside the ~30 s that
/// periodic ACKs alone would take; a lost wake-up with no timeout would
/// hang. Also Redis's edges: argument errors, no blocking inside MULTI,
/// `blocked_clients` while blocked, a closed client's WAIT released, a
/// blocked WAIT ended with -UNBLOCKED when its server becomes a replica,
/// and WAIT refused on a replica.
#[test]
fn wait_answers_on_the_ack() {
    let master = Server::start(4);
    tune_master(&master);
    let mut c = RawConn::connect(master.port);

    // No replica yet: MULTI answers at once, a plain WAIT blocks.
    assert_eq!(
        c.cmds(&["WAIT", "x", "0"]).as_str(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        c.cmds(&["WAIT", "1", "1.5"]).as_str(),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        c.cmds(&["WAIT", "1", "-1"]).as_str(),
        "ERR timeout is negative"
    );
    assert_eq!(c.cmds(&["WAIT", "0", "0"]), Resp::Int(0));
    assert!(is_ok(&c.cmds(&["MULTI"])));
    c.cmds(&["SET", "w", "1"]);
    c.cmds(&["WAIT", "1", "0"]);
    let r = c.cmds(&["EXEC"]);
    assert_eq!(
        r.array().get(1),
        Some(&Resp::Int(0)),
        "WAIT in MULTI: {r:?}"
    );

    let blocked = || info_int(&info_section(master.port, "clients"), "blocked_clients");
    let blocked_becomes = |want: i64, what: &str| {
        wait_for(what, Duration::from_secs(10), || match blocked() {
            n if n == want => Ok(()),
            n => Err(format!("blocked_clients:{n}")),
        })
    };
    let mut waiter = RawConn::connect(master.port);
    waiter.send_cmd(&[b"WAIT", b"1", b"0"]);
    blocked_becomes(1, "the WAIT to count as blocked");
    waiter.shutdown();
    drop(waiter);
    blocked_becomes(0, "the closed client's WAIT to end");

    let _replica = attach_replica(&master);
    let mut conns: Vec<RawConn> = (0..6).map(|_| RawConn::connect(master.port)).collect();
    let t = Instant::now();
    for i in 0..60 {
        let conn = &mut conns[i % 6];
        assert!(is_ok(&conn.cmds(&["SET", &format!("w{i}"), "v"])));
        assert_eq!(conn.cmds(&["WAIT", "1", "0"]), Resp::Int(1), "WAIT {i}");
    }
    let took = t.elapsed();
    eprintln!("60 SET + WAIT 1 0 round trips: {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "60 WAITs took {took:?}: answered by periodic ACKs, not by the requested ones"
    );
    assert_eq!(blocked(), 0);

    // Becoming a replica ends a blocked WAIT with -UNBLOCKED and closes
    // its client (Redis's disconnectAllBlockedClients).
    let replica_port = common::free_port().to_string();
    let other = Server::start(2);
    let mut blocked_there = RawConn::connect(other.port);
    blocked_there.send_cmd(&[b"WAIT", b"1", b"0"]);
    wait_for(
        "WAIT to block on the future replica",
        Duration::from_secs(10),
        || match info_int(&info_section(other.port, "clients"), "blocked_clients") {
            1 => Ok(()),
            n => Err(format!("blocked_clients:{n}")),
        },
    );
    ok(&other, &["REPLICAOF", "127.0.0.1", &replica_port]);
    let r = blocked_there.read();
    assert!(
        r.as_str()
            .starts_with("UNBLOCKED force unblock from blocking operation"),
        "a WAIT blocked across REPLICAOF: {r:?}"
    );
    assert!(
        blocked_there.is_closed_by_peer(Duration::from_secs(5)),
        "the unblocked WAIT's client must be closed"
    );
    let r = RawConn::connect(other.port).cmds(&["WAIT", "0", "0"]);
    assert!(
        r.as_str()
            .starts_with("ERR WAIT cannot be used with replica instances"),
        "WAIT on a replica: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// INFO replication and ROLE
// ---------------------------------------------------------------------------

/// `key=value,key=value` pairs of a `slaveN:` INFO line.
fn slave_line_fields(line: &str) -> Vec<(String, String)> {
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The master's INFO replication carries every Redis field with a
/// plausible value and agrees with the replica's offsets and replid; ROLE
/// answers `["master", offset, [[ip, port, offset]]]`; INFO stats has the
/// sync counters. tether adds `lag_ms` to the slave line.
#[test]
fn info_replication_fields() {
    let master = Server::start(4);
    tune_master(&master);
    populate(master.port, 0);
    let replica = attach_replica(&master);
    let mut c = RawConn::connect(master.port);
    for i in 0..100 {
        assert!(is_ok(&c.cmds(&["SET", &format!("k{i}"), "v"])));
    }
    assert_eq!(c.cmds(&["WAIT", "1", "5000"]), Resp::Int(1));

    // Read master and replica until they agree (the master's periodic PING
    // may land between the two reads).
    let mut info = String::new();
    let mut rinfo = String::new();
    wait_for(
        "the slave0 line to show the replica online at the master's offset",
        SYNC_TIMEOUT,
        || {
            info = repl_info(&master);
            rinfo = repl_info(&replica);
            let off = info_int(&info, "master_repl_offset");
            let roff = info_int(&rinfo, "slave_repl_offset");
            let slave0 = info_value(&info, "slave0").unwrap_or_default();
            let f = slave_line_fields(&slave0);
            let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if roff == off
                && get("state") == Some("online")
                && get("offset") == Some(&off.to_string())
            {
                Ok(())
            } else {
                Err(format!("master:\n{info}\nreplica slave_repl_offset:{roff}"))
            }
        },
    );
    for field in [
        "role",
        "connected_slaves",
        "slave0",
        "master_replid",
        "master_replid2",
        "master_repl_offset",
        "second_repl_offset",
        "repl_backlog_active",
        "repl_backlog_size",
        "repl_backlog_first_byte_offset",
        "repl_backlog_histlen",
    ] {
        assert!(
            info_value(&info, field).is_some(),
            "INFO replication lacks `{field}`:\n{info}"
        );
    }
    assert_eq!(info_value(&info, "role").unwrap(), "master", "{info}");
    assert_eq!(info_int(&info, "connected_slaves"), 1, "{info}");
    let off = info_int(&info, "master_repl_offset");
    assert!(off > 0, "{info}");

    let slave0 = info_value(&info, "slave0").unwrap();
    let f = slave_line_fields(&slave0);
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    let mut want = vec!["ip", "port", "state", "offset", "lag"];
    if master.kind == common::Kind::Tether {
        want.push("lag_ms");
    }
    assert!(names.len() >= want.len(), "slave0 fields: {slave0}");
    assert_eq!(
        &names[..want.len()],
        &want[..],
        "slave0 fields (Redis's order, extras after): {slave0}"
    );
    let get = |k: &str| f.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("ip"), "127.0.0.1", "{slave0}");
    assert_eq!(get("port"), replica.port.to_string(), "{slave0}");
    assert_eq!(get("state"), "online", "{slave0}");
    assert_eq!(get("offset"), off.to_string(), "{slave0}");
    let lag: i64 = get("lag").parse().expect("lag is an integer");
    assert!((0..=5).contains(&lag), "lag in seconds: {slave0}");
    if master.kind == common::Kind::Tether {
        let lag_ms: i64 = get("lag_ms").parse().expect("lag_ms is an integer");
        assert!((0..=5000).contains(&lag_ms), "lag_ms: {slave0}");
    }

    let replid = info_value(&info, "master_replid").unwrap();
    assert!(is_hex40(&replid), "master_replid: {replid:?}");
    assert_eq!(
        info_value(&info, "master_replid2").unwrap(),
        "0".repeat(40),
        "a master never promoted has no replid2"
    );
    assert_eq!(info_int(&info, "second_repl_offset"), -1, "{info}");
    assert_eq!(
        info_value(&rinfo, "master_replid").as_deref(),
        Some(replid.as_str()),
        "the replica adopts the master's replid"
    );
    assert_eq!(info_int(&rinfo, "master_repl_offset"), off);
    assert_eq!(info_int(&info, "repl_backlog_active"), 1, "{info}");
    let size = info_int(&info, "repl_backlog_size");
    match c.cmds(&["CONFIG", "GET", "repl-backlog-size"]) {
        Resp::Array(v) if v.len() == 2 => {
            assert_eq!(v[1].as_str(), size.to_string(), "INFO vs CONFIG GET")
        }
        other => panic!("CONFIG GET repl-backlog-size: {other:?}"),
    }
    let first = info_int(&info, "repl_backlog_first_byte_offset");
    let histlen = info_int(&info, "repl_backlog_histlen");
    assert!(first >= 1 && histlen > 0, "{info}");
    assert_eq!(
        first + histlen - 1,
        off,
        "the backlog holds [first_byte_offset, master_repl_offset]:\n{info}"
    );

    let st = stats(&master);
    for field in ["sync_full", "sync_partial_ok", "sync_partial_err"] {
        info_int(&st, field);
    }
    assert_eq!(info_int(&st, "sync_full"), 1, "{st}");

    // ROLE, read until the replica's acked offset matches (acks are 1 s apart).
    let mut role = Resp::Null;
    wait_for(
        "ROLE to show the replica at the master offset",
        SYNC_TIMEOUT,
        || {
            role = c.cmds(&["ROLE"]);
            let a = role.array();
            let reps = a.get(2).map(|r| r.array()).unwrap_or(&[]);
            match (a.get(1), reps.first().map(|r| r.array())) {
                (Some(Resp::Int(o)), Some([_, _, Resp::Bulk(ro)]))
                    if ro.as_slice() == o.to_string().as_bytes() =>
                {
                    Ok(())
                }
                _ => Err(format!("{role:?}")),
            }
        },
    );
    let a = role.array();
    assert_eq!(a.len(), 3, "ROLE: {role:?}");
    assert_eq!(a[0], Resp::Bulk(b"master".to_vec()), "ROLE: {role:?}");
    let Resp::Int(roff) = a[1] else {
        panic!("ROLE offset must be an integer: {role:?}")
    };
    assert!(roff >= off, "ROLE: {role:?}, INFO offset {off}");
    let reps = a[2].array();
    assert_eq!(reps.len(), 1, "ROLE: {role:?}");
    assert_eq!(
        reps[0],
        Resp::Array(vec![
            Resp::Bulk(b"127.0.0.1".to_vec()),
            Resp::Bulk(replica.port.to_string().into_bytes()),
            Resp::Bulk(roff.to_string().into_bytes()),
        ]),
        "ROLE replica entry is [ip, port, offset] as bulk strings"
    );
}

// ---------------------------------------------------------------------------
// The PSYNC handshake on the wire
// ---------------------------------------------------------------------------

/// One handshake line without its CRLF, skipping the bare "\n" keepalives a
/// master sends while it prepares a snapshot (before +FULLRESYNC, too).
fn handshake_line(c: &mut RawConn) -> String {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let mut line = Vec::new();
        let n = c
            .reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| panic!("reading a handshake line: {e}"));
        assert!(
            n > 0,
            "the master closed the connection during the handshake"
        );
        if line == b"\n" {
            assert!(
                Instant::now() < deadline,
                "only keepalives for {SYNC_TIMEOUT:?}"
            );
            continue;
        }
        assert!(
            line.ends_with(b"\r\n"),
            "handshake line not CRLF terminated: \"{}\"",
            esc(&line)
        );
        line.truncate(line.len() - 2);
        return String::from_utf8(line).expect("handshake line is text");
    }
}

fn read_n(c: &mut RawConn, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    c.reader
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} payload bytes: {e}"));
    buf
}

/// An EOF-framed payload: everything up to the 40-byte mark. The master
/// sends nothing after the mark until the replica's first REPLCONF ACK, so
/// the mark ends a read.
fn read_until_mark(c: &mut RawConn, mark: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while !data.ends_with(mark) {
        let buf = c
            .reader
            .fill_buf()
            .unwrap_or_else(|e| panic!("reading the EOF-framed payload: {e}"));
        assert!(!buf.is_empty(), "connection closed before the EOF mark");
        data.extend_from_slice(buf);
        let n = buf.len();
        c.reader.consume(n);
        assert!(data.len() < 1 << 30, "no EOF mark after 1 GB");
    }
    data.truncate(data.len() - mark.len());
    data
}

/// An RDB file: version 10 header, 0xFF end opcode, CRC64 (or 0 = unchecked).
fn check_rdb(payload: &[u8]) {
    assert!(
        payload.starts_with(b"REDIS0010"),
        "payload must start with REDIS0010: \"{}\"",
        esc(&payload[..payload.len().min(40)])
    );
    assert!(payload.len() >= 18, "payload too short: {}", payload.len());
    let (body, crc) = payload.split_at(payload.len() - 8);
    assert_eq!(body[body.len() - 1], 0xFF, "no EOF opcode before the CRC");
    let stored = u64::from_le_bytes(crc.try_into().unwrap());
    let want = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(body);
    assert!(
        stored == 0 || stored == want,
        "RDB CRC64 {stored:016x}, computed {want:016x}"
    );
}

/// Sends `REPLCONF ACK <offset>` every 300 ms on a clone of a raw replica
/// link, as a real replica does once a second, until dropped. One ACK is
/// not enough: Redis starts the stream only on an ACK that arrives after it
/// has noticed the end of a diskless transfer, and ignores earlier ones.
struct Acker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Acker {
    fn start(link: &RawConn, offset: i64) -> Acker {
        let mut stream = link.stream.try_clone().expect("clone the replica link");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let ack = common::encode(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()]);
        let handle = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if stream.write_all(&ack).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(300));
            }
        });
        Acker {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `+FULLRESYNC <replid> <offset>` → (replid, offset).
fn parse_fullresync(line: &str) -> (String, i64) {
    let parts: Vec<&str> = line.split(' ').collect();
    assert!(
        parts.len() == 3 && parts[0] == "+FULLRESYNC" && is_hex40(parts[1]),
        "expected +FULLRESYNC <40 hex> <offset>, got {line:?}"
    );
    let off = parts[2].parse().expect("FULLRESYNC offset is an integer");
    assert!(off >= 0, "{line}");
    (parts[1].to_string(), off)
}

/// Read replication-stream commands until one equals `want`
/// (case-insensitive name); returns the exact bytes read.
/// `REPLCONF capa eof capa psync2`, then `PSYNC ? -1` on `c`: checks the
/// `$EOF:<40-byte mark>` framing and the RDB it frames, and returns the
/// `+FULLRESYNC` line's replid and offset. The stream follows on `c`.
fn eof_full_sync(c: &mut RawConn) -> (String, i64) {
    let (replid, off, _) = eof_full_sync_rdb(c);
    (replid, off)
}

/// [`eof_full_sync`], also returning the RDB.
fn eof_full_sync_rdb(c: &mut RawConn) -> (String, i64, Vec<u8>) {
    assert!(is_ok(
        &c.cmds(&["REPLCONF", "capa", "eof", "capa", "psync2"])
    ));
    c.send_cmd(&[b"PSYNC", b"?", b"-1"]);
    let (replid, off) = parse_fullresync(&handshake_line(c));
    (replid, off, eof_rdb(c))
}

/// An `$EOF:<40-byte mark>` framed RDB, checked.
fn eof_rdb(c: &mut RawConn) -> Vec<u8> {
    let framing = handshake_line(c);
    let mark = framing
        .strip_prefix("$EOF:")
        .unwrap_or_else(|| panic!("after capa eof expected $EOF:<mark>, got {framing:?}"));
    assert_eq!(mark.len(), 40, "EOF mark must be 40 bytes: {framing:?}");
    let rdb = read_until_mark(c, mark.as_bytes());
    check_rdb(&rdb);
    rdb
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn stream_until(c: &mut RawConn, want: &[&str]) -> Vec<u8> {
    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in the stream; saw {seen:?}"
        );
        let (cmd, bytes) = read_reply(&mut c.reader)
            .unwrap_or_else(|e| panic!("reading the replication stream (saw {seen:?}): {e}"));
        raw.extend_from_slice(&bytes);
        let args: Vec<String> = cmd.array().iter().map(|a| a.as_str()).collect();
        let hit = args.len() == want.len()
            && args[0].eq_ignore_ascii_case(want[0])
            && args[1..] == want[1..];
        seen.push(args);
        if hit {
            return raw;
        }
    }
}

/// The handshake as a replica speaks it, over raw sockets: REPLCONF
/// argument rules (even argc → error, unknown capa ignored, ACK / GETACK
/// unanswered); `PSYNC ? -1` after `capa eof` → +FULLRESYNC and an
/// `$EOF:<mark>` RDB; `PSYNC <replid> <offset+1>` → +CONTINUE <replid> and
/// the same stream bytes as the first link; a wrong replid → +FULLRESYNC;
/// without `capa eof` a `$<len>` RDB of exactly len bytes with no trailing
/// CRLF; legacy SYNC → the bare `$<len>` RDB; and the sync counters.
#[test]
fn psync_wire_level() {
    let master = Server::start(4);
    let mut admin = RawConn::connect(master.port);
    assert!(is_ok(&admin.cmds(&["SET", "before", "sync"])));

    // REPLCONF rules, on a connection that never syncs.
    let mut c = RawConn::connect(master.port);
    let r = c.cmds(&["REPLCONF", "listening-port"]);
    assert!(
        r.as_str().starts_with("ERR"),
        "REPLCONF with an even argc is an error: {r:?}"
    );
    assert!(is_ok(&c.cmds(&["REPLCONF", "listening-port", "6380"])));
    assert!(is_ok(
        &c.cmds(&["REPLCONF", "capa", "eof", "capa", "psync2"])
    ));
    assert!(
        is_ok(&c.cmds(&["REPLCONF", "capa", "some-future-capa"])),
        "unknown capas are ignored"
    );
    c.send_cmd(&[b"REPLCONF", b"ACK", b"0"]);
    c.send_cmd(&[b"REPLCONF", b"GETACK", b"*"]);
    assert_eq!(
        c.cmds(&["PING"]),
        Resp::Simple(b"PONG".to_vec()),
        "REPLCONF ACK / GETACK get no reply"
    );
    drop(c);
    let (full0, partial0, err0) = sync_counters(&master);

    // A: diskless, EOF-framed.
    let mut a = RawConn::connect(master.port);
    assert!(is_ok(&a.cmds(&["REPLCONF", "listening-port", "6381"])));
    let (replid, off) = eof_full_sync(&mut a);
    let ack_a = Acker::start(&a, off);

    // B: continue from right after A's snapshot.
    let mut b = RawConn::connect(master.port);
    assert!(is_ok(&b.cmds(&["REPLCONF", "capa", "psync2"])));
    b.send_cmd(&[
        b"PSYNC",
        replid.as_bytes(),
        (off + 1).to_string().as_bytes(),
    ]);
    assert_eq!(handshake_line(&mut b), format!("+CONTINUE {replid}"));

    // One write reaches both links, at the same stream position.
    assert!(is_ok(&admin.cmds(&["SET", "psync:k", "v"])));
    let want = ["SET", "psync:k", "v"];
    let sa = stream_until(&mut a, &want);
    let sb = stream_until(&mut b, &want);
    assert_eq!(
        esc(&sa),
        esc(&sb),
        "links at the same offset must receive the same bytes"
    );

    // C: an unknown replid cannot continue.
    let mut cc = RawConn::connect(master.port);
    cc.send_cmd(&[b"PSYNC", "f".repeat(40).as_bytes(), b"1"]);
    let (replid_c, off_c) = parse_fullresync(&handshake_line(&mut cc));
    assert_eq!(replid_c, replid, "same master, same replid");
    assert!(off_c >= off, "offsets only grow: {off_c} < {off}");
    drop(cc);

    // D: no capa eof → disk-style framing, exactly len bytes, then the stream.
    let mut d = RawConn::connect(master.port);
    d.send_cmd(&[b"PSYNC", b"?", b"-1"]);
    let (_, off_d) = parse_fullresync(&handshake_line(&mut d));
    let framing = handshake_line(&mut d);
    let len: usize = framing
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("without capa eof expected $<len>, got {framing:?}"));
    let payload = read_n(&mut d, len);
    check_rdb(&payload);
    let ack_d = Acker::start(&d, off_d);
    assert!(is_ok(&admin.cmds(&["SET", "psync:d", "after"])));
    // A trailing CRLF after the payload would fail to parse as a command here.
    stream_until(&mut d, &["SET", "psync:d", "after"]);

    // E: legacy SYNC → bulk RDB, no +FULLRESYNC line.
    let mut e = RawConn::connect(master.port);
    e.send_cmd(&[b"SYNC"]);
    let framing = handshake_line(&mut e);
    let len: usize = framing
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("SYNC: expected $<len>, got {framing:?}"));
    check_rdb(&read_n(&mut e, len));

    let (full1, partial1, err1) = sync_counters(&master);
    assert_eq!(full1 - full0, 4, "A, C, D and E are full syncs");
    assert_eq!(partial1 - partial0, 1, "B continued");
    assert_eq!(
        err1 - err0,
        1,
        "C asked for an unknown replid (PSYNC ? is no error)"
    );
    drop((ack_a, ack_d));
    drop((a, b, d, e));
}

/// The snapshot options that `redis-cli --rdb` and `--functions-rdb` send,
/// and that stream consumers wanting commands only send:
/// - `REPLCONF rdb-filter-only <filters>` leaves the keys out of the
///   snapshot (Redis's one filter keeps functions, and tether has none), and
///   the stream follows the snapshot as usual. It needs `capa eof`.
/// - `REPLCONF rdb-only 1` gets the whole snapshot, then the master closes
///   the link, which no longer counts as a replica.
/// - Bad values get Redis's errors.
#[test]
fn snapshot_filters_and_rdb_only() {
    let master = Server::start(2);
    let keys = common::keys_over_shards("filt:", 2, 3);
    let mut admin = RawConn::connect(master.port);
    for k in &keys {
        assert!(is_ok(&admin.cmds(&["SET", k, "v"])));
    }

    let mut c = RawConn::connect(master.port);
    for (args, want) in [
        (
            ["REPLCONF", "rdb-only", "2"],
            "ERR value is out of range, value must between 0 and 1",
        ),
        (
            ["REPLCONF", "rdb-only", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            ["REPLCONF", "rdb-filter-only", "functions bar"],
            "ERR Unsupported rdb-filter-only option: bar",
        ),
        (
            ["REPLCONF", "rdb-filter-only", "\"a"],
            "ERR Missing rdb-filter-only values",
        ),
    ] {
        assert_eq!(c.cmds(&args), Resp::Error(want.into()), "{args:?}");
    }

    // A filter without capa eof: SYNC and PSYNC are refused, and the
    // connection stays an ordinary client.
    let mut f = RawConn::connect(master.port);
    assert!(is_ok(&f.cmds(&[
        "REPLCONF",
        "rdb-filter-only",
        "functions"
    ])));
    for sync in [&["SYNC"][..], &["PSYNC", "?", "-1"]] {
        assert_eq!(
            f.cmds(sync),
            Resp::Error(b"ERR Filtered replica requires EOF capability".to_vec()),
            "{sync:?}"
        );
    }
    assert_eq!(f.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));

    // Filtered: an RDB without the keys, then the stream.
    let mut s = RawConn::connect(master.port);
    assert!(is_ok(&s.cmds(&["REPLCONF", "rdb-filter-only", ""])));
    let (_, off, rdb) = eof_full_sync_rdb(&mut s);
    for k in &keys {
        assert!(
            !contains(&rdb, k.as_bytes()),
            "filtered snapshot holds {k}: \"{}\"",
            esc(&rdb)
        );
    }
    let _ack = Acker::start(&s, off);
    assert!(is_ok(&admin.cmds(&["SET", "filt:after", "v"])));
    stream_until(&mut s, &["SET", "filt:after", "v"]);

    // rdb-only, as redis-cli --rdb asks: every key, then the link closes.
    let mut r = RawConn::connect(master.port);
    assert!(is_ok(&r.cmds(&["REPLCONF", "capa", "eof"])));
    assert!(is_ok(&r.cmds(&["REPLCONF", "rdb-only", "1"])));
    r.send_cmd(&[b"SYNC"]);
    let rdb = eof_rdb(&mut r);
    for k in &keys {
        assert!(contains(&rdb, k.as_bytes()), "snapshot lacks {k}");
    }
    assert!(
        r.is_closed_by_peer(Duration::from_secs(10)),
        "the master keeps an rdb-only link open after its snapshot"
    );
    wait_for("only the filtered link counted", SYNC_TIMEOUT, || {
        let info = repl_info(&master);
        match info_int(&info, "connected_slaves") {
            1 => Ok(()),
            n => Err(format!("connected_slaves:{n}")),
        }
    });
}

/// Redis 7.0's graceful shutdown, against a replica stopped (SIGSTOP) so
/// that it lags:
/// - SHUTDOWN waits instead of exiting, counted as a blocked client; reads
///   are answered meanwhile and writes wait; SHUTDOWN ABORT from another
///   client ends it: the SHUTDOWN is told it failed and the held write runs;
/// - SIGTERM waits the same way, until the resumed replica has acknowledged
///   everything: then the master exits, and every acknowledged write is on
///   the replica;
/// - SHUTDOWN NOW does not wait, nor does SIGTERM with
///   `shutdown-on-sigterm now`.
#[test]
fn shutdown_waits_for_a_lagging_replica() {
    let mut master = Server::start(2);
    tune_master(&master);
    ok(&master, &["CONFIG", "SET", "shutdown-timeout", "60"]);
    let mut replica = attach_replica(&master);
    // connected_clients leaves replicas out (INFO's own connection only).
    let clients = info_section(master.port, "clients");
    assert_eq!(info_int(&clients, "connected_clients"), 1, "{clients}");
    replica.pause();
    let mut c = RawConn::connect(master.port);
    for i in 0..100 {
        assert!(is_ok(&c.cmds(&["SET", &format!("k{i}"), "v"])));
    }
    // What replication holds in memory.
    let mem = info_section(master.port, "memory");
    let backlog = info_int(&mem, "mem_replication_backlog");
    assert!(backlog > 0, "{mem}");
    assert!(info_int(&mem, "mem_total_replication_buffers") > 0, "{mem}");

    let mut sd = RawConn::connect(master.port);
    sd.send_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
    wait_for(
        "SHUTDOWN to wait as a blocked client",
        SYNC_TIMEOUT,
        || match info_int(&info_section(master.port, "clients"), "blocked_clients") {
            1 => Ok(()),
            n => Err(format!("blocked_clients:{n}")),
        },
    );
    assert_eq!(c.cmds(&["GET", "k0"]), Resp::Bulk(b"v".to_vec()));
    // INFO says a shutdown is under way, and how long it may still wait.
    let left = info_int(
        &info_section(master.port, "server"),
        "shutdown_in_milliseconds",
    );
    assert!(
        (1..=60_000).contains(&left),
        "shutdown_in_milliseconds:{left}"
    );
    let mut w = RawConn::connect(master.port);
    w.send_cmd(&[b"SET", b"late", b"x"]);
    w.set_read_timeout(Duration::from_millis(300));
    assert!(
        w.try_read().is_err(),
        "a write ran during the shutdown's wait"
    );
    w.set_read_timeout(SYNC_TIMEOUT);
    assert!(is_ok(&c.cmds(&["SHUTDOWN", "ABORT"])));
    assert_eq!(
        sd.read(),
        Resp::Error(b"ERR Errors trying to SHUTDOWN. Check logs.".to_vec())
    );
    assert!(is_ok(&w.read()), "the held write runs after the abort");
    assert!(master.is_alive());
    let server = info_section(master.port, "server");
    assert!(!server.contains("shutdown_in_milliseconds"), "{server}");
    assert_eq!(
        c.cmds(&["SHUTDOWN", "ABORT"]),
        Resp::Error(b"ERR No shutdown in progress.".to_vec())
    );

    common::send_signal(master.pid(), libc::SIGTERM);
    thread::sleep(Duration::from_millis(500));
    assert!(master.is_alive(), "SIGTERM did not wait for the replica");
    replica.resume();
    wait_for("the master to exit", SYNC_TIMEOUT, || {
        if master.is_alive() {
            Err("still running".into())
        } else {
            Ok(())
        }
    });
    let mut r = RawConn::connect(replica.port);
    assert_eq!(r.cmds(&["DBSIZE"]), Resp::Int(101));
    assert_eq!(r.cmds(&["GET", "late"]), Resp::Bulk(b"x".to_vec()));

    // NOW: no wait, even with a replica that is behind; for SIGTERM,
    // shutdown-on-sigterm says so.
    for by_signal in [false, true] {
        let mut master = Server::start(2);
        tune_master(&master);
        ok(
            &master,
            &["CONFIG", "SET", "shutdown-on-sigterm", "nosave now"],
        );
        let mut replica = attach_replica(&master);
        replica.pause();
        let mut c = RawConn::connect(master.port);
        assert!(is_ok(&c.cmds(&["SET", "a", "b"])));
        if by_signal {
            common::send_signal(master.pid(), libc::SIGTERM);
        } else {
            c.send_cmd(&[b"SHUTDOWN", b"NOW", b"NOSAVE"]);
        }
        wait_for("a shutdown NOW to exit", Duration::from_secs(5), || {
            if master.is_alive() {
                Err("still running".into())
            } else {
                Ok(())
            }
        });
    }
}

/// INFO stats counts replication traffic, as Redis 7.0 does: a master's
/// bytes to its replicas (snapshot and stream) in
/// total_net_repl_output_bytes, a replica's bytes from its master in
/// total_net_repl_input_bytes, each also once in total_net_output_bytes /
/// total_net_input_bytes; and the instantaneous rates (ops/s, kbps) move
/// while writes flow.
#[test]
fn info_stats_count_replication_traffic() {
    let master = Server::start(2);
    tune_master(&master);
    let replica = Server::start(2);
    ok(
        &replica,
        &["REPLICAOF", "127.0.0.1", &master.port.to_string()],
    );
    wait_in_sync(&master, &replica);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, port) = (stop.clone(), master.port);
        thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let value = vec![b'x'; 1000];
            let mut batch = Vec::new();
            for i in 0..50 {
                batch.extend(common::encode(&[
                    b"SET",
                    format!("k{i}").as_bytes(),
                    &value,
                ]));
            }
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < SYNC_TIMEOUT {
                c.send(&batch);
                for _ in 0..50 {
                    assert!(is_ok(&c.read()));
                }
            }
        })
    };
    let stat = |s: &Server, name: &str| -> f64 {
        info_value(&info_section(s.port, "stats"), name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO stats has no number for {name}"))
    };
    wait_for("instantaneous rates under load", SYNC_TIMEOUT, || {
        let rates = [
            stat(&master, "instantaneous_ops_per_sec"),
            stat(&master, "instantaneous_input_kbps"),
            stat(&master, "instantaneous_output_repl_kbps"),
            stat(&replica, "instantaneous_input_repl_kbps"),
        ];
        if rates.iter().all(|r| *r > 0.0) {
            Ok(())
        } else {
            Err(format!(
                "master ops/s, input kbps, repl output kbps; replica repl input kbps: {rates:?}"
            ))
        }
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    wait_in_sync(&master, &replica);

    let stream = info_int(&repl_info(&master), "master_repl_offset") as f64;
    assert!(
        stream > 1e6,
        "a megabyte or more went into the stream: {stream}"
    );
    let repl_out = stat(&master, "total_net_repl_output_bytes");
    let out = stat(&master, "total_net_output_bytes");
    let repl_in = stat(&replica, "total_net_repl_input_bytes");
    let input = stat(&replica, "total_net_input_bytes");
    assert!(
        repl_out >= stream,
        "the master sent its replica the stream ({stream} bytes) and more, counted {repl_out}"
    );
    assert!(
        repl_in >= stream,
        "the replica read the stream ({stream} bytes) and more, counted {repl_in}"
    );
    // The rest is replies (+OK) and INFO calls: far less than the stream.
    for (what, total, repl) in [("output", out, repl_out), ("input", input, repl_in)] {
        assert!(
            total >= repl && total - repl < stream / 10.0,
            "total_net_{what}_bytes {total} must hold the replication bytes ({repl}) once"
        );
    }
}

/// PUBLISH on the master reaches subscribers of its replica: Redis puts
/// PUBLISH into the replication stream, and so must tether.
#[test]
fn publish_reaches_replica_subscribers() {
    let master = Server::start(4);
    let replica = attach_replica(&master);
    let mut sub = std::net::TcpStream::connect(("127.0.0.1", replica.port)).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
        .unwrap();
    let mut r = std::io::BufReader::new(sub.try_clone().unwrap());
    let (first, _) = common::read_reply(&mut r).expect("SUBSCRIBE reply");
    assert!(format!("{first:?}").contains("subscribe"), "{first:?}");
    let c = redis::Client::open(format!("redis://127.0.0.1:{}/", master.port)).unwrap();
    let mut con = c.get_connection().unwrap();
    let _: i64 = query(&mut con, redis::cmd("PUBLISH").arg("news").arg("hello"));
    let (msg, _) = common::read_reply(&mut r).expect("message on the replica");
    let shown = format!("{msg:?}");
    assert!(
        shown.contains("message") && shown.contains("hello"),
        "the replica's subscriber got {shown}"
    );
}

/// Keys deleted by expiry reach the stream as DEL in their own database,
/// whatever deleted them: a read in that db, a command of another db that
/// looked into it (MOVE checks its target db), or the active expiry cycle
/// (`hz 1` makes the reads usually come first). A replica waits for these
/// DELs: it never expires keys itself.
#[test]
fn expired_keys_reach_the_stream_as_del_in_their_db() {
    let master = Server::start(2);
    let mut db0 = RawConn::connect(master.port);
    let mut db7 = RawConn::connect(master.port);
    assert!(is_ok(&db7.cmds(&["SELECT", "7"])));
    assert!(is_ok(&db0.cmds(&["CONFIG", "SET", "hz", "1"])));

    let mut a = RawConn::connect(master.port);
    let (_, off) = eof_full_sync(&mut a);
    let _ack = Acker::start(&a, off);

    for k in ["exp:read", "exp:moved", "exp:idle"] {
        assert!(is_ok(&db7.cmds(&["SET", k, "v", "PX", "50"])));
    }
    assert!(is_ok(&db0.cmds(&["SET", "exp:moved", "fresh"])));
    thread::sleep(Duration::from_millis(120));
    assert_eq!(db7.cmds(&["GET", "exp:read"]), Resp::NilBulk);
    assert_eq!(db0.cmds(&["MOVE", "exp:moved", "7"]), Resp::Int(1));

    let mut want = vec!["exp:read", "exp:moved", "exp:idle"];
    let mut db = -1i64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !want.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no DEL of {want:?} in the stream; saw {seen:?}"
        );
        let (cmd, _) = read_reply(&mut a.reader)
            .unwrap_or_else(|e| panic!("reading the stream (saw {seen:?}): {e}"));
        let args: Vec<String> = cmd.array().iter().map(|a| a.as_str()).collect();
        if args.len() == 2 && args[0].eq_ignore_ascii_case("select") {
            db = args[1].parse().expect("SELECT <db>");
        }
        if args.len() == 2
            && args[0].eq_ignore_ascii_case("del")
            && let Some(i) = want.iter().position(|k| *k == args[1])
        {
            assert_eq!(db, 7, "DEL {} went to db {db}; stream {seen:?}", args[1]);
            want.remove(i);
        }
        seen.push(args);
    }
}

/// A write a client saw acknowledged is in the stream before the write it
/// sends next, whichever shards the two keys live on.
///
/// A shard sequences a turn's local writes as one batch, at the turn's end
/// or before anything leaves the shard (`repl::master::batch_begin`).
/// Were a reply sent before its batch is sequenced, the client's next
/// write, on the other shard, could take the earlier offset, and a replica
/// would apply the two in the wrong order. Several clients write at once
/// so that turns hold more than one connection; half start on each shard's
/// key. (A pipeline's parts for two shards run concurrently by design, so
/// each write here waits for the previous reply.)
#[test]
fn acknowledged_writes_reach_the_stream_in_order_across_shards() {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 300;
    let master = Server::start(2);
    let mut link = RawConn::connect(master.port);
    let (_, off) = eof_full_sync(&mut link);
    let _ack = Acker::start(&link, off);

    // Per client, one key on shard 0 and one on shard 1.
    let pairs: Vec<[String; 2]> = (0..CLIENTS)
        .map(|c| {
            let on = |s: usize| {
                (0..)
                    .map(|n| format!("ord:{c}:{n}"))
                    .find(|k| common::shard_of(k, 2) == s)
                    .expect("a key on every shard")
            };
            if c % 2 == 0 {
                [on(0), on(1)]
            } else {
                [on(1), on(0)]
            }
        })
        .collect();
    let writers: Vec<_> = pairs
        .iter()
        .cloned()
        .map(|keys| {
            let port = master.port;
            thread::spawn(move || {
                let mut c = RawConn::connect(port);
                for i in 0..ROUNDS {
                    for k in &keys {
                        assert!(is_ok(&c.cmds(&["SET", k, &i.to_string()])));
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }

    // Each client's writes, as the stream orders them.
    let mut got: Vec<Vec<(usize, String)>> = vec![Vec::new(); CLIENTS];
    let mut left = CLIENTS * 2 * ROUNDS;
    let deadline = Instant::now() + Duration::from_secs(30);
    while left > 0 {
        assert!(
            Instant::now() < deadline,
            "{left} writes never reached the stream"
        );
        let (cmd, _) = read_reply(&mut link.reader).expect("reading the stream");
        let args: Vec<String> = cmd.array().iter().map(|a| a.as_str()).collect();
        if args.len() == 3
            && args[0].eq_ignore_ascii_case("set")
            && let Some(c) = pairs.iter().position(|p| p.contains(&args[1]))
        {
            let which = usize::from(pairs[c][1] == args[1]);
            got[c].push((which, args[2].clone()));
            left -= 1;
        }
    }
    let want: Vec<(usize, String)> = (0..ROUNDS)
        .flat_map(|i| [(0, i.to_string()), (1, i.to_string())])
        .collect();
    for (c, seq) in got.iter().enumerate() {
        if let Some(at) = seq.iter().zip(&want).position(|(g, w)| g != w) {
            let around =
                |v: &[(usize, String)]| v[at.saturating_sub(2)..(at + 3).min(v.len())].to_vec();
            panic!(
                "client {c} (keys {:?}): the stream differs from the order of its acknowledged writes at write {at}: got {:?}, sent {:?}",
                pairs[c],
                around(seq),
                around(&want)
            );
        }
    }
}

/// `repl-backlog-ttl`: a master left without replicas for that long frees
/// its backlog (INFO: repl_backlog_active:0, histlen 0) and takes a new
/// replication id, so a returning replica full-syncs; the next replica
/// starts the backlog again. Redis's integration/replication-psync.tcl
/// "backlog expired" case.
#[test]
fn backlog_freed_after_ttl_without_replicas() {
    let master = Server::start(2);
    tune_master(&master);
    ok(&master, &["CONFIG", "SET", "repl-backlog-ttl", "1"]);
    let replica = attach_replica(&master);
    let mut c = RawConn::connect(master.port);
    assert!(is_ok(&c.cmds(&["SET", "k", "v"])));
    wait_in_sync(&master, &replica);
    let before = info_section(master.port, "replication");
    let old_id = common::info_value(&before, "master_replid").unwrap();
    drop(replica);
    wait_for("the backlog to be freed", SYNC_TIMEOUT, || {
        let r = info_section(master.port, "replication");
        match common::info_value(&r, "repl_backlog_active").as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("repl_backlog_active {other:?}")),
        }
    });
    let after = info_section(master.port, "replication");
    assert_ne!(
        common::info_value(&after, "master_replid").unwrap(),
        old_id,
        "{after}"
    );
    assert_eq!(info_int(&after, "repl_backlog_histlen"), 0, "{after}");
    // Writes meanwhile, then a new replica: it syncs, and has everything.
    assert!(is_ok(&c.cmds(&["SET", "k2", "v2"])));
    let (full, _, _) = sync_counters(&master);
    let replica = attach_replica(&master);
    assert_eq!(sync_counters(&master).0, full + 1);
    assert_eq!(
        info_int(
            &info_section(master.port, "replication"),
            "repl_backlog_active"
        ),
        1
    );
    let mut r = RawConn::connect(replica.port);
    assert_eq!(r.cmds(&["GET", "k2"]), Resp::Bulk(b"v2".to_vec()));
}

/// Bitmap writes reach a stock replica as the master applied them:
/// SETBIT growing a key, BITFIELD across types and overflow modes, BITOP
/// over keys on different shards (and one that deletes its destination).
/// A SETBIT that changes nothing is not replicated, as in Redis. A
/// BITFIELD whose every write overflowed under FAIL still created its key
/// on the master; it is replicated so the replica has the key too (Redis
/// 7.0 leaves its replica without it; with `TETHER_TEST_TARGET=redis`
/// that key is left out of the comparison).
#[test]
fn bit_commands_reach_the_replica() {
    let master = Server::start(3);
    tune_master(&master);
    let replica = attach_replica(&master);
    let mut c = master.raw();
    let script: &[&[&str]] = &[
        &["SETBIT", "bm:a", "7", "1"],
        &["SETBIT", "bm:a", "1000", "1"],
        &["SETBIT", "bm:b", "3", "1"],
        &[
            "BITFIELD", "bm:c", "SET", "i8", "#2", "-100", "INCRBY", "u4", "3", "20",
        ],
        &[
            "BITFIELD", "bm:c", "OVERFLOW", "SAT", "INCRBY", "i8", "#2", "-100",
        ],
        &["BITOP", "OR", "bm:or", "bm:a", "bm:b", "bm:c"],
        &["BITOP", "XOR", "bm:xor", "bm:a", "bm:c"],
        &["BITOP", "NOT", "bm:not", "bm:b"],
        &["SET", "bm:gone", "x"],
        &["BITOP", "AND", "bm:gone", "nosuch1", "nosuch2"],
        &["SETBIT", "bm:big", "80000", "1"],
    ];
    for cmd in script {
        let r = c.cmds(cmd);
        assert!(!r.is_error(), "{cmd:?}: {r:?}");
    }
    wait_in_sync(&master, &replica);
    let before = info_int(&repl_info(&master), "master_repl_offset");
    // The bit is already set: no change, nothing replicated.
    assert_eq!(c.cmds(&["SETBIT", "bm:a", "7", "1"]).as_int(), Some(1));
    assert_eq!(
        info_int(&repl_info(&master), "master_repl_offset"),
        before,
        "an unchanged SETBIT was replicated"
    );
    // Every write fails, yet the key now exists on the master.
    let r = c.cmds(&[
        "BITFIELD", "bm:fail", "OVERFLOW", "FAIL", "INCRBY", "u2", "100", "9",
    ]);
    assert_eq!(r.array().len(), 1, "{r:?}");
    assert!(matches!(r.array()[0], Resp::NilBulk), "{r:?}");
    if common::target_is_redis() {
        c.cmds(&["DEL", "bm:fail"]);
    }
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
    let mut r = replica.raw();
    assert_eq!(r.cmds(&["BITCOUNT", "bm:or"]).as_int(), Some(5));
    assert_eq!(r.cmds(&["EXISTS", "bm:gone"]).as_int(), Some(0));
}

/// HyperLogLogs are strings a stock replica stores byte for byte: PFADD
/// (sparse, then past the promotion to dense), PFMERGE over keys on
/// different shards, PFDEBUG TODENSE, and PFCOUNT, whose cached
/// cardinality is part of the value and is replicated as Redis does.
/// Without that, the replica's copy keeps a stale cache byte and the
/// comparison below finds it.
#[test]
fn hyperloglogs_reach_the_replica_byte_for_byte() {
    let master = Server::start(3);
    tune_master(&master);
    let replica = attach_replica(&master);
    let mut c = master.raw();
    let mut add = |key: &str, from: usize, n: usize| {
        let els: Vec<String> = (from..from + n).map(|i| format!("el:{i}")).collect();
        let mut args: Vec<&str> = vec!["PFADD", key];
        args.extend(els.iter().map(|s| s.as_str()));
        let r = c.cmds(&args);
        assert!(!r.is_error(), "{r:?}");
    };
    add("hll:a", 0, 50);
    add("hll:b", 25, 60);
    add("hll:big", 0, 3000);
    let mut c = master.raw();
    for cmd in [
        &["PFMERGE", "hll:u", "hll:a", "hll:b"][..],
        &["PFADD", "hll:d", "x", "y"],
        &["PFDEBUG", "TODENSE", "hll:d"],
    ] {
        assert!(!c.cmds(cmd).is_error(), "{cmd:?}");
    }
    assert_eq!(
        c.cmds(&["PFDEBUG", "ENCODING", "hll:big"]).as_str(),
        "dense",
        "3000 elements make a dense HLL"
    );
    let before = info_int(&repl_info(&master), "master_repl_offset");
    let n = c.cmds(&["PFCOUNT", "hll:u"]).as_int().expect("a count");
    assert!((80..=90).contains(&n), "PFCOUNT hll:u = {n}");
    assert!(
        info_int(&repl_info(&master), "master_repl_offset") > before,
        "PFCOUNT's cache write was not replicated"
    );
    for k in ["hll:a", "hll:big", "hll:d"] {
        c.cmds(&["PFCOUNT", k]);
    }
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
    let mut r = replica.raw();
    for k in ["hll:a", "hll:u", "hll:big", "hll:d"] {
        let want = c.cmds(&["GET", k]);
        assert_eq!(r.cmds(&["GET", k]), want, "{k}");
    }
}

/// SORT ... STORE, with BY and GET patterns naming keys on every shard
/// and the destination on another shard than the source, runs on a
/// scratch copy under every shard's lock: its stored list reaches a stock
/// replica, which re-runs the SORT, equal to the master's.
#[test]
fn sort_store_reaches_the_replica() {
    let master = Server::start(3);
    tune_master(&master);
    let replica = attach_replica(&master);
    let mut c = master.raw();
    for i in 0..40 {
        let (i, w) = (i.to_string(), ((i * 37) % 41).to_string());
        c.cmds(&["RPUSH", "src", &i]);
        c.cmds(&["SET", &format!("w_{i}"), &w]);
        c.cmds(&["HSET", &format!("o_{i}"), "name", &format!("n{w}")]);
    }
    let stored = c.cmds(&[
        "SORT",
        "src",
        "BY",
        "w_*",
        "DESC",
        "LIMIT",
        "2",
        "30",
        "GET",
        "#",
        "GET",
        "o_*->name",
        "STORE",
        "{elsewhere}dst",
    ]);
    assert_eq!(stored.as_int(), Some(60), "{stored:?}");
    // The third-heaviest element comes first, then its hash's name.
    let mut by_weight: Vec<(i64, i64)> = (0..40).map(|i| ((i * 37) % 41, i)).collect();
    by_weight.sort_unstable_by(|a, b| b.cmp(a));
    let (w, i) = by_weight[2];
    let first = c.cmds(&["LRANGE", "{elsewhere}dst", "0", "1"]);
    let got: Vec<String> = first.array().iter().map(|x| x.as_str()).collect();
    assert_eq!(got, vec![i.to_string(), format!("n{w}")]);
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
}

/// Commands whose effect is not the command as written replicate as what
/// they did, in Redis 7.0's words: GETDEL as DEL; a SET with any TTL
/// option as SET key value PXAT ms; LMPOP, BLMPOP, BLPOP,
/// BZPOPMAX and ZMPOP as the [LR]POP / ZPOPMIN|MAX (with the count popped)
/// on the key they popped, whether they ran at once or were served after
/// blocking. Read off the replication stream as a replica sees it.
#[test]
fn pops_and_getdel_replicate_as_redis_words_them() {
    let master = Server::start(2);
    tune_master(&master);
    let mut s = master.raw();
    let (_, off) = eof_full_sync(&mut s);
    // A diskless master streams once the replica has acknowledged the load.
    let _ack = Acker::start(&s, off);
    let mut c = master.raw();
    let mut run = |cmd: &[&str], want: &[&str]| {
        let r = c.cmds(cmd);
        assert!(!r.is_error(), "{cmd:?}: {r:?}");
        stream_until(&mut s, want);
    };
    run(&["SET", "gd", "v"], &["SET", "gd", "v"]);
    run(&["GETDEL", "gd"], &["DEL", "gd"]);
    // Any SET with a TTL goes out as SET ... PXAT, a given PXAT too.
    let at = (std::time::SystemTime::now() + Duration::from_secs(600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    run(
        &["SET", "px", "v", "pxat", &at, "GET"],
        &["SET", "px", "v", "PXAT", &at],
    );
    run(
        &["RPUSH", "l", "a", "b", "c"],
        &["RPUSH", "l", "a", "b", "c"],
    );
    run(
        &["LMPOP", "2", "nokey", "l", "LEFT", "COUNT", "5"],
        &["LPOP", "l", "3"],
    );
    run(&["RPUSH", "l2", "x"], &["RPUSH", "l2", "x"]);
    run(&["BLPOP", "nokey", "l2", "0"], &["LPOP", "l2"]);
    run(
        &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
        &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
    );
    run(&["BZPOPMAX", "z", "0"], &["ZPOPMAX", "z"]);
    run(
        &["ZMPOP", "1", "z", "MIN", "COUNT", "10"],
        &["ZPOPMIN", "z", "2"],
    );
    // Served after blocking.
    let mut blocked = master.raw();
    blocked.send_cmd(&[b"BLMPOP", b"0", b"1", b"bl", b"RIGHT", b"COUNT", b"2"]);
    assert!(wait_until(Duration::from_secs(10), || {
        info_int(&info_section(master.port, "clients"), "blocked_clients") == 1
    }));
    let mut c = master.raw();
    assert!(!c.cmds(&["RPUSH", "bl", "1", "2", "3"]).is_error());
    stream_until(&mut s, &["RPOP", "bl", "2"]);
    assert_eq!(blocked.read().array()[0].as_str(), "bl");
}

/// Scripts replicate as their effects, as in Redis 7.0: one write goes
/// out alone, several as one MULTI/EXEC (across shards too), a read-only
/// script sends nothing, and `redis.set_repl(redis.REPL_NONE)` drops the
/// writes after it. A stock replica ends with the master's data, EVALSHA
/// needing nothing loaded there.
#[test]
fn scripts_replicate_as_their_effects() {
    let master = Server::start(2);
    tune_master(&master);
    let mut s = master.raw();
    let (_, off) = eof_full_sync(&mut s);
    let _ack = Acker::start(&s, off);
    let keys = common::keys_over_shards("sc", 2, 1);
    let (a, b) = (keys[0].as_str(), keys[1].as_str());
    let mut c = master.raw();
    let mut eval = |args: &[&str]| {
        let mut full = vec!["EVAL"];
        full.extend_from_slice(args);
        let r = c.cmds(&full);
        assert!(!r.is_error(), "{args:?}: {r:?}");
    };
    let args_of = |raw: &[u8]| -> Vec<Vec<String>> {
        let mut rd = std::io::BufReader::new(raw);
        let mut out = Vec::new();
        while let Ok((cmd, _)) = read_reply(&mut rd) {
            out.push(cmd.array().iter().map(|x| x.as_str()).collect());
        }
        out
    };
    eval(&["return redis.call('set', KEYS[1], 'one')", "1", a]);
    let raw = stream_until(&mut s, &["SET", a, "one"]);
    assert!(
        !args_of(&raw)
            .iter()
            .any(|c| c[0].eq_ignore_ascii_case("multi")),
        "a single write is not wrapped: {:?}",
        args_of(&raw)
    );
    eval(&[
        "redis.call('set', KEYS[1], 'x') redis.call('get', KEYS[2]) redis.call('incr', KEYS[2]) return 1",
        "2",
        a,
        b,
    ]);
    let raw = stream_until(&mut s, &["EXEC"]);
    let cmds: Vec<Vec<String>> = args_of(&raw)
        .into_iter()
        .filter(|c| !c[0].eq_ignore_ascii_case("ping") && !c[0].eq_ignore_ascii_case("select"))
        .collect();
    let want: Vec<Vec<String>> = [
        vec!["MULTI"],
        vec!["set", a, "x"],
        vec!["incr", b],
        vec!["EXEC"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    let lower = |v: &[Vec<String>]| -> Vec<Vec<String>> {
        v.iter()
            .map(|c| {
                let mut c = c.clone();
                c[0] = c[0].to_ascii_lowercase();
                c
            })
            .collect()
    };
    assert_eq!(lower(&cmds), lower(&want));
    // Reads send nothing; REPL_NONE drops what follows it.
    eval(&["return redis.call('get', KEYS[1])", "1", a]);
    eval(&[
        "redis.set_repl(redis.REPL_NONE) redis.call('set', KEYS[1], 'hidden') redis.set_repl(redis.REPL_ALL) redis.call('set', KEYS[2], 'shown') return 1",
        "2",
        a,
        b,
    ]);
    let raw = stream_until(&mut s, &["set", b, "shown"]);
    assert!(
        !args_of(&raw).iter().flatten().any(|x| x == "hidden"),
        "REPL_NONE writes reached the stream: {:?}",
        args_of(&raw)
    );
    drop(_ack);
    drop(s);

    // A stock replica gets the same data, EVALSHA included.
    let replica = attach_replica(&master);
    let mut c = master.raw();
    let sha = c
        .cmds(&[
            "SCRIPT",
            "LOAD",
            "redis.call('rpush', KEYS[1], ARGV[1]) redis.call('hincrby', KEYS[2], 'n', 1) return 1",
        ])
        .as_str();
    let (l, h) = (format!("{{{a}}}l"), format!("{{{b}}}h"));
    for i in 0..20 {
        let r = c.cmds(&["EVALSHA", &sha, "2", &l, &h, &i.to_string()]);
        assert!(!r.is_error(), "{r:?}");
    }
    c.cmds(&["DEL", &l]);
    let r = c.cmds(&["EVALSHA", &sha, "2", &l, &h, "last"]);
    assert!(!r.is_error(), "{r:?}");
    wait_in_sync(&master, &replica);
    assert_same_dataset(master.port, replica.port, &[0]);
}
