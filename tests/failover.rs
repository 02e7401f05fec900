//! FAILOVER, Redis 7.0's coordinated failover: a master pauses writes,
//! waits for a replica to acknowledge its whole stream, demotes itself and
//! hands the role over with `PSYNC <replid> <offset> FAILOVER`, so no
//! acknowledged write is lost and nobody needs a full sync. Modelled on
//! Redis's own `tests/integration/failover.tcl`, plus what that suite
//! leaves out: the held writes, and a target that refuses the hand-over.
//!
//! Every test passes against stock Redis (`TETHER_TEST_TARGET=redis`), and
//! one runs tether and stock Redis against each other in both roles.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Kind, RawConn, Resp, Server, assert_same_dataset, info_int, info_section, info_value,
    send_signal, wait_for,
};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A node of the tests' choice of server (tether with 2 shards, or stock
/// Redis under `TETHER_TEST_TARGET=redis`), starting full syncs at once.
fn node() -> Server {
    let s = Server::start(2);
    tune(&s);
    s
}

fn tune(s: &Server) {
    ok(s, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
}

fn ok(s: &Server, args: &[&str]) {
    let r = RawConn::connect(s.port).cmds(args);
    assert_eq!(r, Resp::Simple(b"OK".to_vec()), "{args:?} on {}", s.label());
}

fn err(s: &Server, args: &[&str]) -> String {
    match RawConn::connect(s.port).cmds(args) {
        Resp::Error(e) => String::from_utf8_lossy(&e).into_owned(),
        other => panic!(
            "{args:?} on {}: expected an error, got {other:?}",
            s.label()
        ),
    }
}

fn repl(s: &Server) -> String {
    info_section(s.port, "replication")
}

fn failover_state(s: &Server) -> String {
    info_value(&repl(s), "master_failover_state").unwrap_or_default()
}

fn role(s: &Server) -> String {
    info_value(&repl(s), "role").unwrap_or_default()
}

/// (sync_full, sync_partial_ok) a server counted as a master.
fn syncs(s: &Server) -> (i64, i64) {
    let st = info_section(s.port, "stats");
    (info_int(&st, "sync_full"), info_int(&st, "sync_partial_ok"))
}

fn follow(replica: &Server, master: &Server) {
    ok(
        replica,
        &["REPLICAOF", "127.0.0.1", &master.port.to_string()],
    );
}

/// Waits until `replica` follows `master` with its link up and has
/// processed everything the master has, and the master lists it online
/// (a diskless sync's replica is online from its first ACK).
fn wait_synced(master: &Server, replica: &Server) {
    wait_for("the replica to catch up", SYNC_TIMEOUT, || {
        let r = repl(replica);
        let host_port = (
            info_value(&r, "master_port").unwrap_or_default(),
            info_value(&r, "master_link_status").unwrap_or_default(),
        );
        if host_port != (master.port.to_string(), "up".to_string()) {
            return Err(format!("replica's master port and link: {host_port:?}"));
        }
        let mr = repl(master);
        let listed = format!("port={},state=online", replica.port);
        if !mr
            .lines()
            .any(|l| l.starts_with("slave") && l.contains(&listed))
        {
            return Err(format!("the master does not list it online: {mr}"));
        }
        let m = info_int(&mr, "master_repl_offset");
        let o = info_int(&r, "slave_repl_offset");
        if m == o {
            Ok(())
        } else {
            Err(format!("master_repl_offset {m}, slave_repl_offset {o}"))
        }
    });
}

fn wait_failover_state(s: &Server, want: &str, timeout: Duration) {
    wait_for(
        &format!("master_failover_state:{want}"),
        timeout,
        || match failover_state(s) {
            st if st == want => Ok(()),
            st => Err(st),
        },
    );
}

/// A process stopped with SIGSTOP, continued on drop (a failed assertion
/// must not leave a frozen server behind).
struct Frozen(u32);

impl Frozen {
    fn new(s: &Server) -> Frozen {
        send_signal(s.pid(), libc::SIGSTOP);
        Frozen(s.pid())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        send_signal(self.0, libc::SIGCONT);
    }
}

/// Sends a write on its own connection, which a failover's pause holds:
/// no reply comes within `quiet`. Returns the connection to read it later.
fn held_write(s: &Server, key: &str, quiet: Duration) -> RawConn {
    let mut w = RawConn::connect(s.port);
    w.send_cmd(&[b"SET", key.as_bytes(), b"held"]);
    w.set_read_timeout(quiet);
    assert!(
        w.try_read().is_err(),
        "a write ran while the failover held writes"
    );
    w.set_read_timeout(SYNC_TIMEOUT);
    w
}

fn set_keys(s: &Server, from: usize, to: usize) {
    let mut c = RawConn::connect(s.port);
    for i in from..to {
        assert_eq!(
            c.cmds(&["SET", &format!("key:{i}"), &format!("v{i}")]),
            Resp::Simple(b"OK".to_vec())
        );
    }
}

#[test]
fn failover_to_a_named_replica_loses_no_write() {
    let (n0, n1, n2) = (node(), node(), node());
    let n1_port = n1.port.to_string();
    assert_eq!(
        err(&n0, &["FAILOVER", "TO", "127.0.0.1", &n1_port]),
        "ERR FAILOVER requires connected replicas."
    );
    follow(&n1, &n0);
    follow(&n2, &n0);
    wait_synced(&n0, &n1);
    wait_synced(&n0, &n2);

    // Refusals, each with Redis's words.
    for (args, want) in [
        (
            vec!["FAILOVER", "TO", "invalidhost", &n1_port],
            "ERR FAILOVER target HOST and PORT is not a replica.",
        ),
        (
            vec!["FAILOVER", "TO", "127.0.0.1", "invalidport"],
            "ERR value is not an integer or out of range",
        ),
        (
            vec!["FAILOVER", "FORCE", "TIMEOUT", "100"],
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        ),
        (
            vec!["FAILOVER", "TO", "127.0.0.1", &n1_port, "FORCE"],
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        ),
        (
            vec!["FAILOVER", "TIMEOUT", "0"],
            "ERR FAILOVER timeout must be greater than 0",
        ),
        (
            vec!["FAILOVER", "TIMEOUT", "10", "TIMEOUT", "20"],
            "ERR syntax error",
        ),
        (vec!["FAILOVER", "NOW"], "ERR syntax error"),
        (vec!["FAILOVER", "ABORT"], "ERR No failover in progress."),
    ] {
        assert_eq!(err(&n0, &args), want, "{args:?}");
    }
    assert_eq!(
        err(&n1, &["FAILOVER", "TO", "127.0.0.1", &n1_port]),
        "ERR FAILOVER is not valid when server is a replica."
    );
    // A PSYNC FAILOVER must name the replica's own history.
    let mut c = RawConn::connect(n1.port);
    assert_eq!(
        c.cmds(&["PSYNC", &"a".repeat(40), "1", "FAILOVER"]),
        Resp::Error(b"ERR PSYNC FAILOVER replid must match my replid.".to_vec())
    );
    assert_eq!(failover_state(&n0), "no-failover");

    // The target falls behind under writes the clients were told are done.
    set_keys(&n0, 0, 200);
    let (full0, _) = syncs(&n1);
    {
        let _frozen = Frozen::new(&n1);
        set_keys(&n0, 200, 400);
        ok(&n0, &["FAILOVER", "TO", "127.0.0.1", &n1_port]);
        assert_eq!(failover_state(&n0), "waiting-for-sync");
        // Reads go on; writes wait, and CLIENT UNPAUSE does not free them.
        assert_eq!(
            RawConn::connect(n0.port).cmds(&["GET", "key:399"]),
            Resp::Bulk(b"v399".to_vec())
        );
        ok(&n0, &["CLIENT", "UNPAUSE"]);
        let mut held = held_write(&n0, "late", Duration::from_millis(300));
        assert_eq!(
            err(&n0, &["FAILOVER", "TO", "127.0.0.1", &n1_port]),
            "ERR FAILOVER already in progress."
        );
        assert_eq!(
            err(&n0, &["REPLICAOF", "127.0.0.1", &n1_port]),
            "ERR REPLICAOF not allowed while failing over."
        );
        let mut sync = RawConn::connect(n0.port);
        assert_eq!(
            sync.cmds(&["PSYNC", "?", "-1"]),
            Resp::Error(b"NOMASTERLINK Can't SYNC while failing over".to_vec())
        );
        drop(_frozen);
        wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
        // The held write meets a replica now.
        match held.read() {
            Resp::Error(e) => assert!(e.starts_with(b"READONLY"), "{}", common::esc(&e)),
            other => panic!("the held write after the failover: {other:?}"),
        }
    }
    assert_eq!(role(&n0), "slave");
    assert_eq!(role(&n1), "master");
    follow(&n2, &n1);
    wait_synced(&n1, &n0);
    wait_synced(&n1, &n2);
    // Both came over by partial resync: the hand-over kept one history.
    assert_eq!(syncs(&n1), (full0, 2));
    assert_eq!(
        RawConn::connect(n1.port).cmds(&["DBSIZE"]),
        Resp::Int(400),
        "every acknowledged write is on the new master"
    );
    assert_same_dataset(n1.port, n0.port, &[0]);
    assert_same_dataset(n1.port, n2.port, &[0]);
}

#[test]
fn failover_timeout_and_abort_let_the_held_writes_run() {
    let (n0, n1) = (node(), node());
    let n1_port = n1.port.to_string();
    // A replica whose master is out of reach serves no SYNC.
    follow(&n1, &n0);
    wait_synced(&n0, &n1);
    let dead = common::free_port().to_string();
    ok(&n1, &["REPLICAOF", "127.0.0.1", &dead]);
    assert_eq!(
        RawConn::connect(n1.port).cmds(&["PSYNC", "?", "-1"]),
        Resp::Error(b"NOMASTERLINK Can't SYNC while not connected with my master".to_vec())
    );
    follow(&n1, &n0);
    wait_synced(&n0, &n1);
    let before = syncs(&n0);

    // A target that never catches up: the TIMEOUT ends the failover.
    {
        let _frozen = Frozen::new(&n1);
        ok(&n0, &["SET", "case", "1"]);
        let t = Instant::now();
        ok(
            &n0,
            &["FAILOVER", "TO", "127.0.0.1", &n1_port, "TIMEOUT", "500"],
        );
        let mut held = held_write(&n0, "during-timeout", Duration::from_millis(200));
        wait_failover_state(&n0, "no-failover", Duration::from_secs(10));
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(held.read(), Resp::Simple(b"OK".to_vec()));
        assert_eq!(role(&n0), "master");
    }
    wait_synced(&n0, &n1);

    // FAILOVER ABORT while waiting.
    {
        let _frozen = Frozen::new(&n1);
        ok(&n0, &["SET", "case", "2"]);
        ok(
            &n0,
            &["FAILOVER", "TO", "127.0.0.1", &n1_port, "TIMEOUT", "60000"],
        );
        assert_eq!(failover_state(&n0), "waiting-for-sync");
        let mut held = held_write(&n0, "during-abort", Duration::from_millis(300));
        ok(&n0, &["FAILOVER", "ABORT"]);
        assert_eq!(failover_state(&n0), "no-failover");
        assert_eq!(held.read(), Resp::Simple(b"OK".to_vec()));
    }
    wait_synced(&n0, &n1);
    assert_eq!(syncs(&n0), before, "the replica kept its link throughout");
    assert_eq!(role(&n0), "master");
    assert_same_dataset(n0.port, n1.port, &[0]);

    // No TO: any replica that has it all.
    ok(&n0, &["FAILOVER"]);
    wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
    assert_eq!(role(&n0), "slave");
    assert_eq!(role(&n1), "master");
    wait_synced(&n1, &n0);
    assert_eq!(syncs(&n1).1, 1);
}

#[test]
fn failover_forced_past_its_timeout_to_a_lagging_replica() {
    let (n0, n1) = (node(), node());
    let n1_port = n1.port.to_string();
    follow(&n1, &n0);
    wait_synced(&n0, &n1);
    set_keys(&n0, 0, 50);
    {
        let _frozen = Frozen::new(&n1);
        set_keys(&n0, 50, 100);
        ok(
            &n0,
            &[
                "FAILOVER",
                "TO",
                "127.0.0.1",
                &n1_port,
                "TIMEOUT",
                "100",
                "FORCE",
            ],
        );
        // Past the timeout the master gives up waiting and hands over: it
        // is a replica already, while the target (a replica too) still
        // sleeps. Never two masters.
        wait_failover_state(&n0, "failover-in-progress", Duration::from_secs(10));
        assert_eq!(role(&n0), "slave");
    }
    wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
    assert_eq!(role(&n1), "master");
    wait_synced(&n1, &n0);
    assert_same_dataset(n1.port, n0.port, &[0]);
}

/// A replica of `master` played by the test: it syncs, acknowledges every
/// byte of the stream, and listens on its own port, where it answers the
/// handshake and refuses the PSYNC that would hand it the master's role.
struct RefusingReplica {
    port: u16,
    accepted: std::sync::mpsc::Receiver<String>,
}

impl RefusingReplica {
    fn start(master: &Server) -> RefusingReplica {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, accepted) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut s = s;
            loop {
                let Ok((req, _)) = common::read_reply(&mut r) else {
                    return;
                };
                let name = req.array()[0].as_str().to_ascii_uppercase();
                let reply: &[u8] = match name.as_str() {
                    "PING" => b"+PONG\r\n",
                    "PSYNC" => {
                        let line: Vec<String> = req.array().iter().map(|a| a.as_str()).collect();
                        let _ = tx.send(line.join(" "));
                        b"-ERR this replica refuses to take over\r\n"
                    }
                    _ => b"+OK\r\n",
                };
                if s.write_all(reply).is_err() {
                    return;
                }
            }
        });
        let mut link = TcpStream::connect(("127.0.0.1", master.port)).unwrap();
        link.set_read_timeout(Some(SYNC_TIMEOUT)).unwrap();
        let mut r = BufReader::new(link.try_clone().unwrap());
        let mut line = String::new();
        for cmd in [
            vec!["REPLCONF", "listening-port", &port.to_string()],
            vec!["REPLCONF", "capa", "eof", "capa", "psync2"],
        ] {
            link.write_all(&frame(&cmd)).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("+OK"), "{cmd:?}: {line}");
        }
        link.write_all(&frame(&["PSYNC", "?", "-1"])).unwrap();
        let mut offset = loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
                break rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
            assert!(line.trim().is_empty(), "PSYNC answered {line}");
        };
        // The snapshot: `$EOF:<mark>` framing (diskless) or `$<len>`.
        line.clear();
        while line.trim().is_empty() {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        let head = line.trim_end().strip_prefix('$').unwrap().to_string();
        if let Some(mark) = head.strip_prefix("EOF:") {
            let mut tail: Vec<u8> = Vec::new();
            let mut b = [0u8; 1];
            while !tail.ends_with(mark.as_bytes()) {
                r.read_exact(&mut b).unwrap();
                tail.push(b[0]);
            }
        } else {
            let mut rdb = vec![0u8; head.parse().unwrap()];
            r.read_exact(&mut rdb).unwrap();
        }
        // The stream: count it and acknowledge it, as a replica does.
        link.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => offset += n as u64,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
                let ack = frame(&["REPLCONF", "ACK", &offset.to_string()]);
                if link.write_all(&ack).is_err() {
                    return;
                }
            }
        });
        RefusingReplica { port, accepted }
    }
}

fn frame(args: &[&str]) -> Vec<u8> {
    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    common::encode(&parts)
}

#[test]
fn failover_refused_by_its_target_leaves_the_master_in_charge() {
    let n0 = node();
    let (_, partial0) = syncs(&n0);
    let target = RefusingReplica::start(&n0);
    wait_for("the test's replica to be online", SYNC_TIMEOUT, || {
        let r = repl(&n0);
        match info_value(&r, "slave0") {
            Some(l) if l.contains("state=online") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    ok(&n0, &["SET", "before", "1"]);
    let replid = info_value(&repl(&n0), "master_replid").unwrap();
    ok(
        &n0,
        &["FAILOVER", "TO", "127.0.0.1", &target.port.to_string()],
    );
    let psync = target
        .accepted
        .recv_timeout(SYNC_TIMEOUT)
        .expect("the master's PSYNC");
    assert!(
        psync.starts_with(&format!("PSYNC {replid} ")) && psync.ends_with(" FAILOVER"),
        "{psync}"
    );
    wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
    wait_for(
        "the master to be a master again",
        SYNC_TIMEOUT,
        || match role(&n0).as_str() {
            "master" => Ok(()),
            r => Err(r.to_string()),
        },
    );
    ok(&n0, &["SET", "after", "2"]);
    assert_eq!(
        RawConn::connect(n0.port).cmds(&["MGET", "before", "after"]),
        Resp::Array(vec![Resp::Bulk(b"1".to_vec()), Resp::Bulk(b"2".to_vec())])
    );
    // Its history goes on under a new id, the old one kept as replid2.
    let r = repl(&n0);
    assert_eq!(
        info_value(&r, "master_replid2").as_deref(),
        Some(replid.as_str())
    );
    assert_eq!(syncs(&n0).1, partial0);
    if n0.kind == Kind::Tether {
        assert!(
            n0.logs().contains("Failover target rejected psync request"),
            "{}",
            n0.logs()
        );
    }
}

/// Writers that keep writing through the hand-over lose nothing: every
/// write the old master acknowledged is on the new one, and from the
/// pause on the writers are held, then told READONLY; nothing they were
/// told was written is missing, on any shard.
#[test]
fn failover_under_write_load_keeps_every_acknowledged_write() {
    let (n0, n1) = (node(), node());
    follow(&n1, &n0);
    wait_synced(&n0, &n1);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let port = n0.port;
            thread::spawn(move || {
                let mut c = RawConn::connect(port);
                let mut acked = Vec::new();
                for i in 0.. {
                    let key = format!("w{w}:{i}");
                    match c.cmds(&["SET", &key, "v"]) {
                        Resp::Simple(s) if s == b"OK" => acked.push(key),
                        Resp::Error(e) if e.starts_with(b"READONLY") => return acked,
                        other => panic!("SET {key}: {other:?}"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    wait_for("the writers to get going", SYNC_TIMEOUT, || match info_int(
        &repl(&n0),
        "master_repl_offset",
    ) {
        o if o > 20_000 => Ok(()),
        o => Err(format!("offset {o}")),
    });
    ok(&n0, &["FAILOVER"]);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("a writer failed"))
        .collect();
    wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
    assert_eq!(role(&n1), "master");
    let mut c = RawConn::connect(n1.port);
    let missing: Vec<&String> = acked
        .iter()
        .filter(|k| c.cmds(&["EXISTS", k]) != Resp::Int(1))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing on the new master, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    wait_synced(&n1, &n0);
    assert_same_dataset(n1.port, n0.port, &[0]);
}

/// A big transaction already running when FAILOVER comes in: its writes
/// were accepted before the pause, so the hand-over waits for them to
/// reach the target; a transaction answered OK is on the new master.
#[test]
fn failover_waits_for_a_transaction_under_way() {
    let (n0, n1) = (node(), node());
    follow(&n1, &n0);
    wait_synced(&n0, &n1);
    let n = 50_000;
    let mut tx = RawConn::connect(n0.port);
    let mut batch = common::encode(&[b"MULTI"]);
    for i in 0..n {
        let key = format!("tx:{i}");
        batch.extend(common::encode(&[b"SET", key.as_bytes(), b"v"]));
    }
    tx.send(&batch);
    for _ in 0..=n {
        let r = tx.read();
        assert!(
            matches!(&r, Resp::Simple(s) if s == b"OK" || s == b"QUEUED"),
            "{r:?}"
        );
    }
    tx.send_cmd(&[b"EXEC"]);
    thread::sleep(Duration::from_millis(5));
    ok(&n0, &["FAILOVER"]);
    let exec = tx.read();
    wait_failover_state(&n0, "no-failover", SYNC_TIMEOUT);
    assert_eq!(role(&n1), "master");
    let want = match exec {
        Resp::Array(v) => {
            assert_eq!(v.len(), n);
            n as i64
        }
        // Held by the pause, then refused by the demoted master.
        Resp::Error(e) => {
            assert!(
                e.starts_with(b"READONLY") || e.starts_with(b"EXECABORT"),
                "{e:?}"
            );
            0
        }
        other => panic!("EXEC: {other:?}"),
    };
    assert_eq!(RawConn::connect(n1.port).cmds(&["DBSIZE"]), Resp::Int(want));
    wait_synced(&n1, &n0);
    assert_same_dataset(n1.port, n0.port, &[0]);
}

/// tether and stock Redis 7.0 hand the master role to each other.
#[test]
fn failover_between_tether_and_stock_redis() {
    for tether_first in [true, false] {
        let tether = Server::tether(2);
        let redis = Server::stock_redis();
        tune(&tether);
        tune(&redis);
        let (master, replica) = if tether_first {
            (&tether, &redis)
        } else {
            (&redis, &tether)
        };
        follow(replica, master);
        wait_synced(master, replica);
        set_keys(master, 0, 300);
        ok(master, &["FAILOVER"]);
        wait_failover_state(master, "no-failover", SYNC_TIMEOUT);
        assert_eq!(role(master), "slave", "{} handed over", master.label());
        assert_eq!(role(replica), "master", "{} took over", replica.label());
        wait_synced(replica, master);
        assert_eq!(syncs(replica), (0, 1), "{}", replica.label());
        assert_same_dataset(replica.port, master.port, &[0]);
    }
}
