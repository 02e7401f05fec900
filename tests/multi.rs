//! MULTI / EXEC / DISCARD / WATCH: replies compared byte for byte with stock
//! redis-server on scripted sessions, WATCH failing on changes made by other
//! clients on other shards (and on expiry), and an isolation hammer: readers
//! running MULTI/EXEC or MGET never see half of a cross-shard transaction.
mod common;

use common::{RawConn, Server};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Runs `script` on a fresh connection to each server and compares every
/// raw reply.
fn same_replies(redis: &Server, tether: &Server, script: &[&[&str]]) {
    let mut r = redis.raw();
    let mut t = tether.raw();
    for cmd in [&["FLUSHALL"][..]].iter().chain(script) {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        r.send_cmd(&args);
        t.send_cmd(&args);
        let (_, rb) = r.read_raw();
        let (_, tb) = t.read_raw();
        assert_eq!(
            common::esc(&tb),
            common::esc(&rb),
            "{} differs from redis on {cmd:?}",
            tether.label()
        );
    }
}

#[test]
fn multi_exec_matches_redis() {
    let redis = Server::stock_redis();
    for shards in [1, 4] {
        let tether = Server::tether(shards);
        let ks = common::keys_over_shards("mx", 4, 1);
        let (a, b, c, d) = (
            ks[0].as_str(),
            ks[1].as_str(),
            ks[2].as_str(),
            ks[3].as_str(),
        );
        same_replies(
            &redis,
            &tether,
            &[
                &["MULTI"],
                &["SET", a, "1"],
                &["INCR", a],
                &["MSET", b, "x", c, "y"],
                &["MGET", a, b, c, d],
                &["INCR", b],
                &["RENAME", b, d],
                &["SELECT", "3"],
                &["SET", a, "in3"],
                &["DBSIZE"],
                &["EXEC"],
                &["GET", a],
                &["SELECT", "0"],
                &["GET", a],
                &["EXISTS", b, d],
                // Queue-time errors abort the whole transaction.
                &["MULTI"],
                &["SET", a, "2"],
                &["GET"],
                &["NOSUCHCMD", "x"],
                &["EXEC"],
                &["GET", a],
                // Nesting, EXEC/DISCARD without MULTI, WATCH inside MULTI.
                &["EXEC"],
                &["DISCARD"],
                &["MULTI"],
                &["MULTI"],
                &["WATCH", a],
                &["SET", c, "z"],
                &["DISCARD"],
                &["GET", c],
                &["MULTI"],
                &["EXEC"],
                // WATCH by this client and a change by this client aborts.
                &["WATCH", a, b],
                &["SET", b, "mine"],
                &["MULTI"],
                &["SET", a, "never"],
                &["EXEC"],
                &["GET", a],
                // UNWATCH clears it.
                &["WATCH", a],
                &["SET", a, "5"],
                &["UNWATCH"],
                &["MULTI"],
                &["INCR", a],
                &["EXEC"],
                &["MULTI"],
                &["FLUSHDB"],
                &["SET", d, "after"],
                &["KEYS", "*"],
                &["EXEC"],
            ],
        );
    }
}

/// FLUSHALL, FLUSHDB and SWAPDB fail a WATCH only when its key exists in
/// the database emptied or in the one replacing it, as Redis 7.0's
/// `touchAllWatchedKeysInDb` (`tests/unit/multi.tcl`: "FLUSHALL does not
/// touch non affected keys").
#[test]
fn flush_and_swapdb_fail_only_watches_of_existing_keys() {
    let redis = Server::stock_redis();
    for shards in [1, 4] {
        let tether = Server::tether(shards);
        let ks = common::keys_over_shards("fw", 4, 1);
        let (x, y, z) = (ks[0].as_str(), ks[1].as_str(), ks[2].as_str());
        same_replies(
            &redis,
            &tether,
            &[
                &["WATCH", x],
                &["FLUSHALL"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                &["SET", x, "30"],
                &["WATCH", x],
                &["FLUSHDB"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                &["WATCH", x],
                &["FLUSHDB"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                &["SET", z, "1"],
                &["WATCH", x],
                &["FLUSHALL"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                // SWAPDB: a key the swap brings in, or takes away, fails it.
                &["SELECT", "1"],
                &["SET", y, "1"],
                &["SELECT", "0"],
                &["WATCH", y],
                &["SWAPDB", "0", "1"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                &["WATCH", y],
                &["SWAPDB", "0", "1"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
                &["WATCH", z],
                &["SWAPDB", "0", "1"],
                &["MULTI"],
                &["PING"],
                &["EXEC"],
            ],
        );
    }
}

#[test]
fn watch_sees_other_clients_and_expiry() {
    for shards in [1, 4] {
        let s = Server::start(shards);
        let ks = common::keys_over_shards("wk", 4, 1);
        let (a, b) = (ks[0].as_str(), ks[1].as_str());
        let mut me = s.raw();
        let mut other = s.raw();
        // Another client's write on another shard aborts EXEC.
        me.cmds(&["WATCH", a, b]);
        me.cmds(&["MULTI"]);
        me.cmds(&["SET", a, "1"]);
        other.cmds(&["SET", b, "2"]);
        let (_, raw) = me.send_and_read(&["EXEC"]);
        assert_eq!(
            raw,
            b"*-1\r\n",
            "{}: EXEC after a watched key changed",
            s.label()
        );
        assert!(other.cmds(&["GET", a]).as_bytes().is_none());
        // A failed SETNX by another client is no modification.
        other.cmds(&["SET", a, "held"]);
        me.cmds(&["WATCH", a]);
        other.cmds(&["SETNX", a, "x"]);
        me.cmds(&["MULTI"]);
        me.cmds(&["GET", a]);
        let (_, raw) = me.send_and_read(&["EXEC"]);
        assert_eq!(raw, b"*1\r\n$4\r\nheld\r\n", "{}", s.label());
        // A watched key that expires fails the transaction.
        other.cmds(&["SET", b, "v", "PX", "100"]);
        me.cmds(&["WATCH", b]);
        thread::sleep(Duration::from_millis(250));
        me.cmds(&["MULTI"]);
        me.cmds(&["SET", a, "after-expiry"]);
        let (_, raw) = me.send_and_read(&["EXEC"]);
        assert_eq!(raw, b"*-1\r\n", "{}: watched key expired", s.label());
        // FLUSHALL by another client touches every watched key.
        me.cmds(&["WATCH", a]);
        other.cmds(&["FLUSHALL"]);
        me.cmds(&["MULTI"]);
        me.cmds(&["PING"]);
        let (_, raw) = me.send_and_read(&["EXEC"]);
        assert_eq!(raw, b"*-1\r\n", "{}: FLUSHALL", s.label());
    }
}

#[test]
fn transactions_are_isolated_across_shards() {
    let s = Server::start(4);
    let ks = common::keys_over_shards("tx", 4, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for w in 0..3 {
        let (ks, stop, done) = (ks.clone(), stop.clone(), done.clone());
        let mut c = s.raw();
        hs.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.cmds(&["MULTI"]);
                let v = format!("w{w}-{n}");
                for k in &ks {
                    c.cmds(&["SET", k, &v]);
                }
                let r = c.cmds(&["EXEC"]);
                assert_eq!(r.array().len(), ks.len());
                n += 1;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for reader in 0..3 {
        let (ks, stop, bad) = (ks.clone(), stop.clone(), bad.clone());
        let mut c = s.raw();
        hs.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let vals: Vec<Option<Vec<u8>>> = if reader % 2 == 0 {
                    c.cmds(&["MULTI"]);
                    for k in &ks {
                        c.cmds(&["GET", k]);
                    }
                    c.cmds(&["EXEC"])
                        .array()
                        .iter()
                        .map(|v| v.as_bytes().map(|b| b.to_vec()))
                        .collect()
                } else {
                    let mut args = vec!["MGET"];
                    args.extend(ks.iter().map(|k| k.as_str()));
                    c.cmds(&args)
                        .array()
                        .iter()
                        .map(|v| v.as_bytes().map(|b| b.to_vec()))
                        .collect()
                };
                if vals.windows(2).any(|w| w[0] != w[1]) {
                    eprintln!("partial transaction seen: {vals:?}");
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().expect("worker panicked");
    }
    assert!(
        done.load(Ordering::Relaxed) > 10,
        "too few transactions ran"
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "readers saw partial transactions"
    );
}

/// `RawConn::cmds` panics on nothing; this keeps the raw bytes for nulls.
trait SendAndRead {
    fn send_and_read(&mut self, args: &[&str]) -> (common::Resp, Vec<u8>);
}

impl SendAndRead for RawConn {
    fn send_and_read(&mut self, args: &[&str]) -> (common::Resp, Vec<u8>) {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send_cmd(&a);
        self.read_raw()
    }
}
