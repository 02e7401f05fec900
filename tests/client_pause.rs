//! CLIENT PAUSE and CLIENT UNPAUSE, as an operator uses them around a
//! manual failover: writes wait while reads go on, the dataset stays still
//! (no key expires), and a paused replica keeps reading its master's
//! stream without applying it.
//!
//! Every test also passes with `TETHER_TEST_TARGET=redis` (stock Redis in
//! every role), which is how the expectations themselves are checked.
mod common;

use common::{RawConn, Resp, Server, encode, for_shards, info_int, info_section, wait_for};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn ok(r: &Resp) -> bool {
    *r == Resp::Simple(b"OK".to_vec())
}

fn bulk(s: &str) -> Resp {
    Resp::Bulk(s.as_bytes().to_vec())
}

fn blocked_clients(s: &Server) -> i64 {
    info_int(&info_section(s.port, "clients"), "blocked_clients")
}

fn wait_blocked(s: &Server, n: i64) {
    wait_for(
        &format!("blocked_clients:{n}"),
        WAIT,
        || match blocked_clients(s) {
            b if b == n => Ok(()),
            b => Err(format!("blocked_clients:{b}")),
        },
    );
}

/// Nothing has been answered on `c` for a moment.
fn assert_silent(c: &mut RawConn, what: &str) {
    c.set_read_timeout(Duration::from_millis(200));
    if let Ok((r, _)) = c.try_read() {
        panic!("{what} was answered during the pause: {r:?}");
    }
    c.set_read_timeout(WAIT);
}

fn expired_keys(s: &Server) -> i64 {
    info_int(&info_section(s.port, "stats"), "expired_keys")
}

/// `WRITE` holds writes, PUBLISH, and an EXEC that queued a write, each
/// with what its client pipelined behind it, until CLIENT UNPAUSE; reads,
/// admin commands, read-only transactions and commands with arity errors
/// are answered at once. `ALL` holds everything, CLIENT UNPAUSE included,
/// until the pause runs out.
#[test]
fn a_write_pause_holds_writes_until_unpause() {
    for_shards(&[1, 2], |s| {
        let mut admin = RawConn::connect(s.port);
        assert!(ok(&admin.cmds(&["SET", "foo", "before"])));
        // A transaction queued before the pause; its EXEC comes during it.
        let mut tx = RawConn::connect(s.port);
        assert!(ok(&tx.cmds(&["MULTI"])));
        assert_eq!(
            tx.cmds(&["SET", "tx", "v"]),
            Resp::Simple(b"QUEUED".to_vec())
        );
        assert!(ok(&admin.cmds(&["CLIENT", "PAUSE", "60000", "WRITE"])));

        let mut r = RawConn::connect(s.port);
        assert_eq!(r.cmds(&["GET", "foo"]), bulk("before"));
        assert_eq!(r.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
        assert!(
            r.cmds(&["INFO", "server"])
                .as_str()
                .contains("redis_version")
        );
        assert!(ok(&r.cmds(&["MULTI"])));
        r.cmds(&["GET", "foo"]);
        r.cmds(&["PING"]);
        assert_eq!(
            r.cmds(&["EXEC"]),
            Resp::Array(vec![bulk("before"), Resp::Simple(b"PONG".to_vec())]),
            "a read-only transaction is not held"
        );
        assert_eq!(
            r.cmds(&["SET", "foo"]),
            Resp::Error(b"ERR wrong number of arguments for 'set' command".to_vec()),
            "an arity error is answered at once"
        );
        assert_eq!(blocked_clients(s), 0, "nothing held so far");

        let mut w = RawConn::connect(s.port);
        let mut pipeline = encode(&[b"SET", b"foo", b"during"]);
        pipeline.extend(encode(&[b"GET", b"foo"]));
        w.send(&pipeline);
        let mut p = RawConn::connect(s.port);
        p.send_cmd(&[b"PUBLISH", b"ch", b"m"]);
        tx.send_cmd(&[b"EXEC"]);
        wait_blocked(s, 3);
        assert_silent(&mut w, "a SET");
        assert_silent(&mut p, "a PUBLISH");
        assert_silent(&mut tx, "an EXEC of a SET");
        assert_eq!(admin.cmds(&["GET", "foo"]), bulk("before"));
        assert_eq!(admin.cmds(&["EXISTS", "tx"]), Resp::Int(0));

        assert!(ok(&admin.cmds(&["CLIENT", "UNPAUSE"])));
        assert!(ok(&w.read()), "the held SET runs after UNPAUSE");
        assert_eq!(w.read(), bulk("during"), "and what was pipelined behind it");
        assert_eq!(p.read(), Resp::Int(0));
        assert_eq!(tx.read(), Resp::Array(vec![Resp::Simple(b"OK".to_vec())]));
        wait_blocked(s, 0);

        // ALL: reads wait too, and so does CLIENT UNPAUSE; the pause ends
        // when it runs out.
        let started = Instant::now();
        assert!(ok(&admin.cmds(&["CLIENT", "PAUSE", "1500", "ALL"])));
        let mut g = RawConn::connect(s.port);
        g.send_cmd(&[b"GET", b"foo"]);
        let mut u = RawConn::connect(s.port);
        u.send_cmd(&[b"CLIENT", b"UNPAUSE"]);
        assert_eq!(g.read(), bulk("during"));
        assert!(ok(&u.read()));
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "an ALL pause of 1500 ms answered a read after {:?}",
            started.elapsed()
        );
    });
}

/// CLIENT PAUSE's arguments, and CLIENT UNPAUSE's, as Redis checks them.
#[test]
fn client_pause_arguments() {
    let s = Server::start(1);
    let mut c = RawConn::connect(s.port);
    for (args, want) in [
        (&["CLIENT", "PAUSE", "-1"][..], "ERR timeout is negative"),
        (
            &["CLIENT", "PAUSE", "x"],
            "ERR timeout is not an integer or out of range",
        ),
        (
            &["CLIENT", "PAUSE", "10", "foo"],
            "ERR CLIENT PAUSE mode must be WRITE or ALL",
        ),
        (
            &["CLIENT", "PAUSE", "10", "WRITE", "x"],
            "ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.",
        ),
        (
            &["CLIENT", "UNPAUSE", "x"],
            "ERR wrong number of arguments for 'client|unpause' command",
        ),
    ] {
        assert_eq!(c.cmds(args), Resp::Error(want.into()), "{args:?}");
    }
    assert!(
        ok(&c.cmds(&["CLIENT", "UNPAUSE"])),
        "no pause to lift is fine"
    );
}

/// While clients are paused no key expires, lazily or actively: keys whose
/// TTL passed read as missing, stay counted by DBSIZE, and are deleted
/// (and counted in expired_keys) only after the pause. A pause set inside
/// MULTI starts when EXEC ends, so the transaction's later writes run.
#[test]
fn a_paused_server_keeps_its_expired_keys() {
    for_shards(&[1, 2], |s| {
        let mut c = RawConn::connect(s.port);
        let before = expired_keys(s);
        assert!(ok(&c.cmds(&["MULTI"])));
        for args in [
            &["SET", "foo", "bar", "PX", "50"][..],
            &["SET", "bar", "foo", "PX", "50"],
            &["CLIENT", "PAUSE", "60000", "WRITE"],
            &["SET", "after", "v"],
        ] {
            assert_eq!(c.cmds(args), Resp::Simple(b"QUEUED".to_vec()), "{args:?}");
        }
        assert_eq!(
            c.cmds(&["EXEC"]),
            Resp::Array(vec![Resp::Simple(b"OK".to_vec()); 4])
        );
        let mut r = RawConn::connect(s.port);
        wait_for("both keys to read as expired", WAIT, || {
            match (r.cmds(&["GET", "foo"]), r.cmds(&["GET", "bar"])) {
                (Resp::NilBulk, Resp::NilBulk) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        // A few active-expiry cycles (hz 10) go by.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(r.cmds(&["GET", "after"]), bulk("v"));
        assert_eq!(r.cmds(&["DBSIZE"]), Resp::Int(3), "expired keys stay");
        assert_eq!(expired_keys(s), before, "nothing expired during the pause");
        assert!(
            matches!(r.cmds(&["RANDOMKEY"]), Resp::Bulk(_)),
            "RANDOMKEY answers while expired keys are kept"
        );

        assert!(ok(&r.cmds(&["CLIENT", "UNPAUSE"])));
        assert_eq!(r.cmds(&["GET", "foo"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["GET", "bar"]), Resp::NilBulk);
        assert_eq!(expired_keys(s), before + 2);
        assert_eq!(r.cmds(&["DBSIZE"]), Resp::Int(1));
    });
}

/// A paused replica goes on reading its master's stream but does not apply
/// its writes: its processed offset stops before them while its read
/// offset reaches the master's, and it catches up after CLIENT UNPAUSE.
#[test]
fn a_paused_replica_reads_its_stream_but_does_not_apply_it() {
    let master = Server::start(2);
    let mut m = RawConn::connect(master.port);
    // No PINGs: they are not writes, so a WRITE pause lets them through
    // and they would move the replica's offset.
    for args in [
        &["CONFIG", "SET", "repl-ping-replica-period", "3600"][..],
        &["CONFIG", "SET", "repl-diskless-sync-delay", "0"],
        &["SET", "foo", "bar"],
    ] {
        assert!(ok(&m.cmds(args)), "{args:?}");
    }
    let replica = Server::start(2);
    let mut r = RawConn::connect(replica.port);
    assert!(ok(&r.cmds(&[
        "REPLICAOF",
        "127.0.0.1",
        &master.port.to_string()
    ])));
    let offsets = || {
        let mi = info_section(master.port, "replication");
        let ri = info_section(replica.port, "replication");
        (
            info_int(&mi, "master_repl_offset"),
            info_int(&ri, "slave_read_repl_offset"),
            info_int(&ri, "slave_repl_offset"),
        )
    };
    wait_for("the replica to catch up", WAIT, || {
        let up = info_section(replica.port, "replication").contains("master_link_status:up");
        match offsets() {
            (m, _, applied) if up && m == applied && r.cmds(&["GET", "foo"]) == bulk("bar") => {
                Ok(())
            }
            o => Err(format!("link up {up}, (master, read, applied) {o:?}")),
        }
    });
    let (paused_at, _, _) = offsets();

    assert!(ok(&r.cmds(&["CLIENT", "PAUSE", "100000", "WRITE"])));
    assert!(ok(&m.cmds(&["SET", "foo2", "bar2"])));
    wait_for("the replica to read the write", WAIT, || match offsets() {
        (m, read, _) if m == read && m > paused_at => Ok(()),
        o => Err(format!("(master, read, applied) {o:?}")),
    });
    // Exactly the SET is held: what the master sent before it (its SELECT)
    // is applied, as Redis runs its master's commands up to the first one
    // the pause holds.
    let set_len = encode(&[b"SET", b"foo2", b"bar2"]).len() as i64;
    std::thread::sleep(Duration::from_millis(300));
    let (m_now, _, applied) = offsets();
    assert_eq!(
        m_now - applied,
        set_len,
        "a paused replica's offset must stop right before its master's write"
    );
    assert_eq!(r.cmds(&["GET", "foo2"]), Resp::NilBulk);
    assert_eq!(
        r.cmds(&["SET", "mine", "x"]),
        Resp::Error(b"READONLY You can't write against a read only replica.".to_vec()),
        "a write a read-only replica refuses is refused at once, not held"
    );

    assert!(ok(&r.cmds(&["CLIENT", "UNPAUSE"])));
    wait_for(
        "the replica to apply after UNPAUSE",
        WAIT,
        || match offsets() {
            (m, _, applied) if m == applied => Ok(()),
            o => Err(format!("(master, read, applied) {o:?}")),
        },
    );
    assert_eq!(r.cmds(&["GET", "foo2"]), bulk("bar2"));
}
