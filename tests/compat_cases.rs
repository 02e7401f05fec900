//! Cases Redis 7.0.15's own tcl suite (`tests/unit/*.tcl`, run against
//! tether as an external server) found tether answering differently:
//! compared with stock redis-server on the same scripted session.
mod common;

use common::{RawConn, Resp, Server, esc};
use std::io::Read;
use std::time::Duration;

/// Runs `script` on a fresh connection to each server and compares the
/// replies: raw bytes, or, for a map-shaped reply (CONFIG GET), its pairs
/// in any order, as Redis prints them in its dict's order.
fn same_replies(redis: &Server, tether: &Server, script: &[&[&str]]) {
    let mut r = redis.raw();
    let mut t = tether.raw();
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        r.send_cmd(&args);
        t.send_cmd(&args);
        let (rr, rb) = r.read_raw();
        let (tr, tb) = t.read_raw();
        if cmd[0].eq_ignore_ascii_case("config") && cmd[1].eq_ignore_ascii_case("get") {
            assert_eq!(pairs(&tr), pairs(&rr), "{} on {cmd:?}", tether.label());
        } else {
            assert_eq!(
                esc(&tb),
                esc(&rb),
                "{} differs from redis on {cmd:?}",
                tether.label()
            );
        }
    }
}

fn pairs(r: &Resp) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .array()
        .chunks(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect();
    v.sort();
    v
}

#[test]
fn replies_match_redis() {
    let redis = Server::stock_redis();
    for shards in [1, 2] {
        let tether = Server::tether(shards);
        same_replies(
            &redis,
            &tether,
            &[
                &["FLUSHALL"],
                // CLIENT KILL's argument checks (introspection.tcl).
                &["CLIENT", "KILL"],
                &["CLIENT", "KILL", "USER", "wrong_user"],
                &["CLIENT", "KILL", "USER", "default", "SKIPME", "yes"],
                &["CLIENT", "KILL", "ID", "str"],
                // getPositiveLongFromObjectOrReply's one message (zset.tcl).
                &["ZINTERCARD", "1", "z", "LIMIT", "a"],
                &["ZINTERCARD", "1", "z", "LIMIT", "1.5"],
                &["ZINTERCARD", "1", "z", "LIMIT", "-1"],
                &["SINTERCARD", "1", "s", "LIMIT", "a"],
                // Exact names are entries of their own, aliases included.
                &["CONFIG", "GET", "slaveof", "replicaof"],
                &["CONFIG", "GET", "maxmemory", "MAXMEMORY"],
                &[
                    "CONFIG",
                    "GET",
                    "hash-max-ziplist-entries",
                    "hash-max-listpack-entries",
                ],
                &["CONFIG", "GET", "*max-*-entries"],
                // OBJECT REFCOUNT (keyspace.tcl's COPY tests).
                &["RPUSH", "l", "a"],
                &["OBJECT", "REFCOUNT", "l"],
                &["OBJECT", "REFCOUNT", "nosuch"],
                // OBJECT ENCODING at the configured thresholds (zset.tcl,
                // hash.tcl, set.tcl).
                &["CONFIG", "SET", "zset-max-listpack-entries", "0"],
                &["ZADD", "z", "1", "a"],
                &["OBJECT", "ENCODING", "z"],
                &["CONFIG", "SET", "zset-max-listpack-entries", "128"],
                &["DEL", "z"],
                &["ZADD", "z", "1", "a"],
                &["OBJECT", "ENCODING", "z"],
                &["CONFIG", "SET", "hash-max-listpack-value", "4"],
                &["HSET", "h", "f", "a-long-value"],
                &["OBJECT", "ENCODING", "h"],
                &["CONFIG", "SET", "hash-max-listpack-value", "64"],
                &["CONFIG", "SET", "set-max-intset-entries", "1"],
                &["SADD", "s", "1", "2"],
                &["OBJECT", "ENCODING", "s"],
                &["CONFIG", "SET", "set-max-intset-entries", "512"],
                &["FLUSHALL"],
            ],
        );
    }
}

/// CLIENT KILL SKIPME no kills the caller too, after its reply
/// (introspection.tcl: "CLIENT KILL SKIPME YES/NO will kill all clients").
#[test]
fn client_kill_of_self_answers_first() {
    for shards in [1, 2] {
        let s = Server::start(shards);
        let mut others: Vec<_> = (0..3).map(|_| s.raw()).collect();
        let mut me = s.raw();
        // Every connection is registered once it answered something.
        for o in &mut others {
            assert_eq!(o.cmds(&["PING"]).as_str(), "PONG");
        }
        let n = me.cmds(&["CLIENT", "KILL", "SKIPME", "no"]).as_int();
        assert!(n.is_some_and(|n| n >= 4), "{}: killed {n:?}", s.label());
        // Then the caller's own connection is closed.
        me.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let got = me.reader.read(&mut buf);
        assert!(
            matches!(got, Ok(0)) || got.is_err(),
            "{}: caller not closed: {got:?}",
            s.label()
        );
        drop(others);
    }
}

/// tether binds its listeners at start-up: CONFIG SET port/bind takes the
/// value in force (so a tool setting back what CONFIG GET * printed works)
/// and refuses another, instead of answering OK and staying where it was.
/// Its own knobs (`shards`, `cpus`) answer exact names only.
#[test]
fn listeners_and_own_knobs_in_config() {
    if common::target_is_redis() {
        return;
    }
    let s = Server::tether(2);
    let mut c = s.raw();
    let port = c.cmds(&["CONFIG", "GET", "port"]).array()[1].as_str();
    assert_eq!(c.cmds(&["CONFIG", "SET", "port", &port]).as_str(), "OK");
    let e = c.cmds(&["CONFIG", "SET", "port", "1"]);
    assert!(e.is_error() && e.as_str().contains("restart"), "{e:?}");
    let bind = c.cmds(&["CONFIG", "GET", "bind"]).array()[1].as_str();
    assert_eq!(c.cmds(&["CONFIG", "SET", "bind", &bind]).as_str(), "OK");
    assert!(c.cmds(&["CONFIG", "SET", "bind", "0.0.0.0"]).is_error());
    assert_eq!(c.cmds(&["PING"]).as_str(), "PONG");
    let all = c.cmds(&["CONFIG", "GET", "*"]);
    let names: Vec<String> = all.array().chunks(2).map(|p| p[0].as_str()).collect();
    assert!(!names.iter().any(|n| n == "shards" || n == "cpus"));
    assert_eq!(
        c.cmds(&["CONFIG", "GET", "shards"]).array()[1].as_str(),
        "2"
    );
    // INFO memory carries 7.0's lazyfree and defrag counters.
    let info = c.cmds(&["INFO", "memory"]).as_str();
    for f in [
        "active_defrag_running:0",
        "lazyfree_pending_objects:0",
        "lazyfreed_objects:0",
    ] {
        assert!(info.contains(f), "INFO memory lacks {f}");
    }
}

/// Everything a connection receives for `script` (pipelined at once),
/// up to and including the reply to a final `PING end`.
fn session_bytes(s: &Server, script: &[&[&str]]) -> Vec<u8> {
    let mut c = s.raw();
    let mut all: Vec<&[&str]> = script.to_vec();
    all.push(&["PING", "end"]);
    for cmd in &all {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        c.send_cmd(&args);
    }
    read_until_end(&mut c, &s.label())
}

/// Everything `c` receives up to and including the reply to `PING end`.
fn read_until_end(c: &mut RawConn, label: &str) -> Vec<u8> {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"$3\r\nend\r\n") {
        match c.reader.read(&mut buf) {
            Ok(0) | Err(_) => panic!("{label}: session ended early: {}", esc(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// CLIENT REPLY OFF / SKIP / ON (introspection.tcl, pubsub.tcl): the
/// silenced replies are not sent, ON and RESET answer, and Pub/Sub
/// confirmations and messages still arrive.
#[test]
fn client_reply_modes() {
    let redis = Server::stock_redis();
    for shards in [1, 2] {
        let tether = Server::tether(shards);
        for script in [
            &[
                &["FLUSHALL"][..],
                &["CLIENT", "REPLY", "OFF"],
                &["PING", "a"],
                &["SET", "k1", "v"],
                &["GET", "nosuchkey"],
                &["CLIENT", "REPLY", "SKIP"],
                &["CLIENT", "REPLY", "ON"],
                &["PING", "b"],
                &["CLIENT", "REPLY", "SKIP"],
                &["PING", "c"],
                &["PING", "d"],
                &["CLIENT", "REPLY", "SKIP"],
                &["CLIENT", "REPLY", "ON"],
                &["PING", "e"],
                &["CLIENT", "REPLY", "MAYBE"],
                &["CLIENT", "REPLY", "OFF"],
                &["MULTI"],
                &["INCR", "n"],
                &["EXEC"],
                &["RESET"],
                &["GET", "n"],
            ][..],
            &[
                &["CLIENT", "REPLY", "OFF"][..],
                &["SUBSCRIBE", "ch"],
                &["PING", "hidden"],
                &["UNSUBSCRIBE", "ch"],
                &["CLIENT", "REPLY", "ON"],
            ][..],
        ] {
            let (t, r) = (
                session_bytes(&tether, script),
                session_bytes(&redis, script),
            );
            assert_eq!(esc(&t), esc(&r), "{} on {script:?}", tether.label());
        }
    }
}

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tether-{tag}-{}.sock", std::process::id()))
}

/// One command over a unix socket connection, its reply parsed.
fn unix_cmd(c: &mut std::io::BufReader<std::os::unix::net::UnixStream>, args: &[&str]) -> Resp {
    use std::io::Write;
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.get_mut().write_all(&common::encode(&v)).unwrap();
    common::read_reply(c).unwrap().0
}

/// Sends a command whose reply may never come (SHUTDOWN).
fn send_only(c: &mut std::io::BufReader<std::os::unix::net::UnixStream>, args: &[&str]) {
    use std::io::Write;
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.get_mut().write_all(&common::encode(&v)).unwrap();
}

/// `unixsocket` / `unixsocketperm`: the socket is created with the mode
/// asked for, serves like TCP, shows in CLIENT LIST as Redis 7.0 shows it
/// (`addr=<path>:0`, flag `U`), and is removed at shutdown. `port 0`
/// listens on the socket alone; with no socket either, the server refuses
/// to start, as Redis does.
#[test]
fn unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    for (i, kind) in [common::Kind::StockRedis, common::Kind::Tether]
        .into_iter()
        .enumerate()
    {
        let path = sock_path(&format!("u{i}"));
        let p = path.to_str().unwrap();
        let s = Server::spawn(kind, 2, &["--unixsocket", p, "--unixsocketperm", "700"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", s.label());
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut c = std::io::BufReader::new(stream);
        assert_eq!(unix_cmd(&mut c, &["SET", "k", "v"]).as_str(), "OK");
        assert_eq!(unix_cmd(&mut c, &["GET", "k"]).as_str(), "v");
        let info = unix_cmd(&mut c, &["CLIENT", "INFO"]).as_str();
        assert!(
            info.contains(&format!(" addr={p}:0 laddr={p}:0 ")),
            "{}: {info}",
            s.label()
        );
        assert!(info.contains(" flags=U "), "{}: {info}", s.label());
        let perm = unix_cmd(&mut c, &["CONFIG", "GET", "unixsocketperm"]);
        assert_eq!(perm.array()[1].as_str(), "700", "{}", s.label());
        // TCP still serves, and sees the same data.
        assert_eq!(s.raw().cmds(&["GET", "k"]).as_str(), "v");
        send_only(&mut c, &["SHUTDOWN", "NOSAVE"]);
        assert!(
            common::wait_until(Duration::from_secs(10), || !path.exists()),
            "{}: socket file left behind",
            s.label()
        );
    }

    // Port 0: the unix socket only.
    let tether = env!("CARGO_BIN_EXE_tether");
    let path = sock_path("p0");
    let mut child = std::process::Command::new(tether)
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--unixsocket",
            path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    }));
    let mut c = std::io::BufReader::new(std::os::unix::net::UnixStream::connect(&path).unwrap());
    assert_eq!(unix_cmd(&mut c, &["PING"]).as_str(), "PONG");
    send_only(&mut c, &["SHUTDOWN", "NOSAVE"]);
    assert!(child.wait().unwrap().success());
    // Nowhere to listen.
    let out = std::process::Command::new(tether)
        .args(["--port", "0", "--save", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Configured to not listen anywhere"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mixed dataset written the same way to both servers (every type,
/// TTLs, several databases, integers and floats that print in more than
/// one way).
fn fill(c: &mut common::RawConn) {
    c.cmds(&["FLUSHALL"]);
    for db in ["0", "5"] {
        c.cmds(&["SELECT", db]);
        for i in 0..200 {
            let (k, v) = (format!("k{i}"), format!("v{}", i * 7));
            match i % 6 {
                0 => c.cmds(&["SET", &k, &v]),
                1 => c.cmds(&["SET", &k, &(i * 1000).to_string(), "EX", "1000"]),
                2 => c.cmds(&["RPUSH", &k, "a", &v, "12", "a"]),
                3 => c.cmds(&["SADD", &k, "1", "2", &v, &i.to_string()]),
                4 => c.cmds(&["ZADD", &k, "1.5", "a", "-0", "b", "1e20", &v, "0.1", "c"]),
                _ => c.cmds(&["HSET", &k, "f", &v, "n", "42"]),
            };
        }
    }
    // A big set and hash (hashtable encodings in Redis).
    c.cmds(&["SELECT", "0"]);
    for i in 0..600 {
        let m = format!("m{i}");
        c.cmds(&["SADD", "bigset", &m]);
        c.cmds(&["HSET", "bighash", &m, &i.to_string()]);
        c.cmds(&["ZADD", "bigz", &i.to_string(), &m]);
    }
}

fn digest(c: &mut common::RawConn) -> String {
    let d = c.cmds(&["DEBUG", "DIGEST"]);
    assert!(!d.is_error(), "{d:?}");
    d.as_str()
}

/// DEBUG DIGEST and DIGEST-VALUE are Redis 7.0's, bit for bit: the same
/// data gives the same digests on stock Redis and on tether (any number of
/// shards), and a tether replica of a stock master digests like it.
#[test]
fn debug_digest_matches_redis() {
    let redis = Server::spawn(
        common::Kind::StockRedis,
        1,
        &["--enable-debug-command", "yes"],
    );
    let mut r = redis.raw();
    fill(&mut r);
    let want = digest(&mut r);
    assert_ne!(want, "0".repeat(40));
    let keys = [
        "k0", "k1", "k2", "k3", "k4", "k5", "bigset", "bighash", "bigz", "nosuch",
    ];
    let mut args = vec!["DEBUG", "DIGEST-VALUE"];
    args.extend(keys);
    let want_values = r.cmds(&args);
    for shards in [1, 3] {
        let t = Server::tether(shards);
        let mut c = t.raw();
        fill(&mut c);
        assert_eq!(digest(&mut c), want, "{}", t.label());
        assert_eq!(c.cmds(&args), want_values, "{}", t.label());
        // One changed element changes it.
        c.cmds(&["SELECT", "5"]);
        c.cmds(&["LSET", "k2", "0", "b"]);
        assert_ne!(digest(&mut c), want, "{}", t.label());
    }

    // A tether replica of the stock master.
    let replica = Server::tether(2);
    let mut c = replica.raw();
    c.cmds(&["REPLICAOF", "127.0.0.1", &redis.port.to_string()]);
    assert!(
        common::wait_until(Duration::from_secs(60), || digest(&mut c) == want),
        "the replica's digest never matched the master's"
    );
    r.cmds(&["SELECT", "0"]);
    r.cmds(&["SADD", "bigset", "one-more"]);
    let want = digest(&mut r);
    assert!(
        common::wait_until(Duration::from_secs(30), || digest(&mut c) == want),
        "the replica's digest did not follow the stream"
    );
}

/// DEBUG SET-ACTIVE-EXPIRE 0 stops the active expiry cycle (lookups still
/// expire), and 1 starts it again; Redis's replication tests rely on it.
#[test]
fn debug_set_active_expire() {
    let redis = Server::spawn(
        common::Kind::StockRedis,
        1,
        &["--enable-debug-command", "yes"],
    );
    let tether = Server::tether(2);
    for s in [&redis, &tether] {
        let mut c = s.raw();
        c.cmds(&["FLUSHALL"]);
        assert_eq!(c.cmds(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).as_str(), "OK");
        for i in 0..20 {
            c.cmds(&["SET", &format!("k{i}"), "v", "PX", "20"]);
        }
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            c.cmds(&["DBSIZE"]).as_int(),
            Some(20),
            "{}: expired actively",
            s.label()
        );
        assert_eq!(c.cmds(&["GET", "k0"]), Resp::NilBulk, "{}", s.label());
        assert_eq!(
            c.cmds(&["DBSIZE"]).as_int(),
            Some(19),
            "{}: lookup expiry",
            s.label()
        );
        assert_eq!(c.cmds(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]).as_str(), "OK");
        assert!(
            common::wait_until(Duration::from_secs(5), || c.cmds(&["DBSIZE"]).as_int()
                == Some(0)),
            "{}: the cycle did not resume",
            s.label()
        );
    }
}

/// A client may pipeline requests and close (or half-close) without
/// reading: everything it sent before the EOF still runs, slow-path and
/// multi-key commands included, as in Redis; a half-closed client still
/// gets its replies.
#[test]
fn requests_sent_before_eof_run() {
    use std::io::Write;
    use std::net::Shutdown;
    let redis = Server::stock_redis();
    for s in [&redis, &Server::tether(1), &Server::tether(3)] {
        let script: &[&[&str]] = &[
            &["SET", "a", "1"],
            &["FLUSHALL"],
            &["SET", "b", "1"],
            &["MSET", "c", "1", "d", "1"],
            &["INCR", "n"],
        ];
        let mut bytes = Vec::new();
        for cmd in script {
            let v: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            bytes.extend(common::encode(&v));
        }
        // Closed without reading.
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(&bytes).unwrap();
        drop(c);
        let mut q = s.raw();
        assert!(
            common::wait_until(Duration::from_secs(5), || {
                q.cmds(&["EXISTS", "a", "b", "c", "d", "n"]).as_int() == Some(4)
            }),
            "{}: the requests before the close did not all run",
            s.label()
        );
        // Half-closed: the replies still come.
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(&bytes).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert_eq!(
            esc(&got),
            esc(b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n:1\r\n"),
            "{}: replies to a half-closed client",
            s.label()
        );
    }
}

/// DEBUG SLEEP stops the whole server, as Redis's single thread does:
/// a client on any shard gets no answer until the sleep ends. Redis's
/// replication tests rely on it (a sleeping replica does not reconnect).
#[test]
fn debug_sleep_stops_every_client() {
    let redis = Server::spawn(
        common::Kind::StockRedis,
        1,
        &["--enable-debug-command", "yes"],
    );
    let tether = Server::tether(2);
    for s in [&redis, &tether] {
        // Several connections: with 2 shards they land on both.
        let mut others: Vec<_> = (0..6).map(|_| s.raw()).collect();
        for o in &mut others {
            assert_eq!(o.cmds(&["PING"]).as_str(), "PONG");
        }
        let mut sleeper = s.raw();
        let start = std::time::Instant::now();
        sleeper.send_cmd(&[b"DEBUG", b"SLEEP", b"0.6"]);
        std::thread::sleep(Duration::from_millis(100));
        for o in &mut others {
            assert_eq!(o.cmds(&["PING"]).as_str(), "PONG");
            assert!(
                start.elapsed() >= Duration::from_millis(550),
                "{}: a PING was answered during DEBUG SLEEP",
                s.label()
            );
        }
        assert_eq!(sleeper.read_raw().0.as_str(), "OK", "{}", s.label());
        assert!(start.elapsed() >= Duration::from_millis(550));
    }
}

/// DEBUG POPULATE fills the selected db as Redis's does (keys spread over
/// every shard): `prefix:j` = `value:j`, cut or zero-padded to a size,
/// existing keys kept; its argument errors are Redis's.
#[test]
fn debug_populate_matches_redis() {
    let redis = Server::spawn(
        common::Kind::StockRedis,
        1,
        &["--enable-debug-command", "yes"],
    );
    let tether = Server::tether(2);
    same_replies(
        &redis,
        &tether,
        &[
            &["SELECT", "3"],
            &["SET", "key:7", "mine"],
            &["DEBUG", "POPULATE", "1000"],
            &["DBSIZE"],
            &["GET", "key:7"],
            &["GET", "key:999"],
            &["EXISTS", "key:1000"],
            &["DEBUG", "POPULATE", "20", "p", "3"],
            &["DEBUG", "POPULATE", "20", "q", "12"],
            &["MGET", "p:0", "p:19", "q:0", "q:19"],
            &["DBSIZE"],
            &["DEBUG", "POPULATE", "0"],
            &["DEBUG", "POPULATE", "-1"],
            &["DEBUG", "POPULATE", "x"],
            &["DEBUG", "POPULATE", "5", "r", "-3"],
            &["DEBUG", "POPULATE", "5", "r", "3", "extra"],
            &["DBSIZE"],
            &["SELECT", "0"],
            &["DBSIZE"],
        ],
    );
}

/// `name -> (calls, rejected_calls, failed_calls)` from INFO commandstats
/// (INFO's own entry left out: each server counts its earlier INFOs), and
/// the `errorstat_*` lines.
fn command_stats(c: &mut common::RawConn) -> (Vec<(String, [u64; 3])>, Vec<String>) {
    let text = c.cmds(&["INFO", "commandstats"]).as_str();
    let mut v = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("cmdstat_")) {
        let (name, fields) = line["cmdstat_".len()..].split_once(':').unwrap();
        if name == "info" {
            continue;
        }
        let get = |f: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX)
        };
        v.push((
            name.to_string(),
            [get("calls"), get("rejected_calls"), get("failed_calls")],
        ));
    }
    v.sort();
    let errs = c.cmds(&["INFO", "errorstats"]).as_str();
    let mut e: Vec<String> = errs
        .lines()
        .filter(|l| l.starts_with("errorstat_"))
        .map(str::to_string)
        .collect();
    e.sort();
    (v, e)
}

/// INFO commandstats counts calls, failed calls (an error reply) and
/// rejected calls (refused before running: arity, a subscribed context)
/// per command and per container subcommand as Redis 7.0 does, once per
/// call whichever shard ran it, inside MULTI/EXEC too; errorstats counts
/// error replies by code; CONFIG RESETSTAT clears both. Redis's
/// replication tests read a replica's commandstats to see what its master
/// propagated.
#[test]
fn command_and_error_stats_match_redis() {
    let redis = Server::stock_redis();
    let tether = Server::tether(2);
    let mut got = Vec::new();
    for s in [&redis, &tether] {
        let mut c = s.raw();
        c.cmds(&["SET", "before", "reset"]);
        c.cmds(&["CONFIG", "RESETSTAT"]);
        for cmd in [
            &["SET", "a", "1"][..],
            &["GET", "a"],
            &["GET", "a"],
            &["INCR", "a"],
            &["LPUSH", "a", "x"],
            &["GET"],
            &["NOSUCHCOMMAND", "x"],
            &["MSET", "k1", "1", "k2", "2", "k3", "3", "k4", "4"],
            &["MGET", "k1", "k2", "k3", "k4"],
            &["DEL", "k1", "k2", "k3"],
            &["CLIENT", "ID"],
            &["CLIENT", "NOSUCH"],
            &["CONFIG", "GET", "maxmemory"],
            &["MULTI"],
            &["SET", "b", "1"],
            &["LPUSH", "b", "x"],
            &["EXEC"],
            &["EXEC"],
            &["BLPOP", "empty", "0.05"],
            &["HSET", "h", "f", "v"],
            &["HGET", "h", "f"],
            &["ZADD", "z", "nan", "m"],
        ] {
            c.cmds(cmd);
        }
        let mut sub = s.raw();
        sub.cmds(&["SUBSCRIBE", "ch"]);
        sub.send_cmd(&[b"GET", b"a"]);
        sub.read_raw();
        got.push(command_stats(&mut c));
        c.cmds(&["CONFIG", "RESETSTAT"]);
        let (after, errs) = command_stats(&mut c);
        assert_eq!(
            after,
            vec![("config|resetstat".to_string(), [1, 0, 0])],
            "{}",
            s.label()
        );
        assert!(errs.is_empty(), "{}: {errs:?}", s.label());
    }
    // The script reached both: commands, subcommands, failures, rejections.
    let (cmds, errs) = &got[0];
    let find = |n: &str| cmds.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    assert_eq!(find("get"), Some([2, 2, 0]), "{cmds:?}");
    assert_eq!(find("lpush"), Some([2, 0, 2]), "{cmds:?}");
    assert_eq!(find("client|id"), Some([1, 0, 0]), "{cmds:?}");
    assert!(errs.len() >= 2, "{errs:?}");
    assert_eq!(got[1], got[0], "tether (left) vs redis (right)");
}

/// CLIENT LIST / CLIENT INFO show the caller's `qbuf` holding the command
/// running (its RESP length, 26 bytes for `CLIENT LIST`), as Redis's query
/// buffer does (introspection.tcl).
#[test]
fn client_list_counts_the_running_command() {
    let redis = Server::stock_redis();
    let tether = Server::tether(2);
    for s in [&redis, &tether] {
        let mut c = s.raw();
        for sub in ["LIST", "INFO"] {
            let text = c.cmds(&["CLIENT", sub]).as_str();
            assert!(
                text.contains(" qbuf=26 "),
                "{} CLIENT {sub}: {text}",
                s.label()
            );
        }
    }
}

/// AUTH answers as Redis 7.0 does with no password configured (the only
/// configuration tether has): the default user takes any password, the
/// one-argument form gets Redis's hint, other users do not exist; inside
/// MULTI it queues and fails at EXEC (info.tcl's errorstats cases).
#[test]
fn auth_without_passwords_matches_redis() {
    let redis = Server::stock_redis();
    let tether = Server::tether(2);
    same_replies(
        &redis,
        &tether,
        &[
            &["AUTH", "k"],
            &["AUTH", "default", "anything"],
            &["AUTH", "DEFAULT", "anything"],
            &["AUTH", "bob", "x"],
            &["AUTH", "a", "b", "c"],
            &["HELLO", "2", "AUTH", "DEFAULT", "x"],
            &["HELLO", "2", "AUTH", "bob", "x"],
            &["MULTI"],
            &["SET", "a", "b"],
            &["AUTH", "a"],
            &["EXEC"],
        ],
    );
}

/// CLIENT REPLY OFF silences commands on keys another shard owns too,
/// when they arrive in reads of their own (the driver once sent such a
/// lone remote read to its owner on the fast path, which does not drop
/// replies, so every one of them was answered).
#[test]
fn client_reply_off_silences_remote_keys_read_alone() {
    let tether = Server::start(2);
    let keys = common::keys_over_shards("silent", 2, 4);
    for _ in 0..20 {
        let mut c = tether.raw();
        c.send_cmd(&[b"CLIENT", b"REPLY", b"OFF"]);
        for k in &keys {
            std::thread::sleep(Duration::from_millis(2));
            c.send_cmd(&[b"GET", k.as_bytes()]);
        }
        std::thread::sleep(Duration::from_millis(2));
        c.send_cmd(&[b"CLIENT", b"REPLY", b"ON"]);
        c.send_cmd(&[b"PING", b"end"]);
        let got = read_until_end(&mut c, &tether.label());
        assert_eq!(esc(&got), esc(b"+OK\r\n$3\r\nend\r\n"));
    }
}
