//! Pub/Sub: subscribers spread over every shard receive each message exactly
//! once and in publish order; confirmations, subscribed-mode restrictions
//! and PUBSUB introspection match stock redis-server byte for byte.
mod common;

use common::{Resp, Server};
use std::time::Duration;

fn cmd(c: &mut common::RawConn, args: &[&str]) -> Vec<u8> {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    c.send_cmd(&a);
    c.read_raw().1
}

/// Sends `args` and reads `n` replies, returning their raw bytes joined.
fn cmd_n(c: &mut common::RawConn, args: &[&str], n: usize) -> Vec<u8> {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    c.send_cmd(&a);
    (0..n).flat_map(|_| c.read_raw().1).collect()
}

#[test]
fn replies_match_redis() {
    let redis = Server::stock_redis();
    for shards in [1, 4] {
        let t = Server::tether(shards);
        let mut out = Vec::new();
        for s in [&redis, &t] {
            let mut c = s.raw();
            let mut p = s.raw();
            let mut log = vec![cmd_n(&mut c, &["SUBSCRIBE", "a", "b", "a"], 3)];
            log.push(cmd_n(&mut c, &["PSUBSCRIBE", "a*"], 1));
            log.push(cmd(&mut c, &["GET", "x"]));
            log.push(cmd(&mut c, &["PING"]));
            log.push(cmd(&mut c, &["PING", "hi"]));
            log.push(cmd(&mut p, &["PUBLISH", "a", "m1"]));
            log.push(cmd_n(&mut c, &["PING"], 3)); // two deliveries, then PONG
            log.push(cmd(&mut p, &["PUBSUB", "NUMSUB", "a", "b", "zz"]));
            log.push(cmd(&mut p, &["PUBSUB", "NUMPAT"]));
            // Bare UNSUBSCRIBE walks Redis's channel dict in hash order, so
            // leave it exactly one channel to name.
            log.push(cmd(&mut c, &["UNSUBSCRIBE", "b"]));
            log.push(cmd(&mut c, &["UNSUBSCRIBE"]));
            log.push(cmd_n(&mut c, &["PUNSUBSCRIBE", "a*", "nope"], 2));
            log.push(cmd(&mut c, &["UNSUBSCRIBE"]));
            log.push(cmd(&mut c, &["GET", "x"]));
            log.push(cmd(&mut p, &["PUBLISH", "a", "m2"]));
            // RESP3: pushes, and no subscribed-mode restriction.
            let hello_is_map = cmd(&mut c, &["HELLO", "3"]).starts_with(b"%");
            log.push(if hello_is_map {
                b"map".to_vec()
            } else {
                Vec::new()
            });
            log.push(cmd(&mut c, &["SUBSCRIBE", "r3"]));
            log.push(cmd(&mut c, &["GET", "x"]));
            log.push(cmd(&mut p, &["PUBLISH", "r3", "m3"]));
            log.push(c.read_raw().1);
            out.push(log.into_iter().map(|b| common::esc(&b)).collect::<Vec<_>>());
        }
        assert_eq!(out[1], out[0], "{} differs from redis", t.label());
    }
}

#[test]
fn every_subscriber_gets_every_message_once_in_order() {
    let s = Server::start(4);
    // Enough connections that the kernel spreads them over all shards.
    let mut subs: Vec<_> = (0..12).map(|_| s.raw()).collect();
    for (i, c) in subs.iter_mut().enumerate() {
        if i % 3 == 0 {
            cmd(c, &["PSUBSCRIBE", "news.*"]);
        } else {
            cmd(c, &["SUBSCRIBE", "news.1"]);
        }
    }
    let mut p = s.raw();
    let n = 200;
    for i in 0..n {
        let got = cmd(&mut p, &["PUBLISH", "news.1", &format!("m{i}")]);
        assert_eq!(got, b":12\r\n", "receiver count");
    }
    for (ci, c) in subs.iter_mut().enumerate() {
        c.set_read_timeout(Duration::from_secs(5));
        for i in 0..n {
            let msg = match c.read() {
                Resp::Array(v) | Resp::Push(v) => v.last().unwrap().as_str(),
                other => panic!("subscriber {ci}: unexpected {other:?}"),
            };
            assert_eq!(msg, format!("m{i}"), "subscriber {ci}: order or loss");
        }
        // Nothing extra (no duplicates).
        c.set_read_timeout(Duration::from_millis(200));
        assert!(c.try_read().is_err(), "subscriber {ci} got a duplicate");
    }
    let numsub = cmd(&mut p, &["PUBSUB", "NUMSUB", "news.1"]);
    assert_eq!(numsub, b"*2\r\n$6\r\nnews.1\r\n:8\r\n");
}

/// A subscriber that stops reading is closed once its pending output
/// passes the `pubsub` class of `client-output-buffer-limit`, as Redis
/// closes it; everyone else goes on being served. Without the limit the
/// server would buffer for it without bound.
#[test]
fn a_subscriber_that_stops_reading_is_disconnected() {
    let redis = Server::stock_redis();
    let tether = Server::tether(2);
    let payload = vec![b'x'; 64 * 1024];
    for s in [&redis, &tether] {
        let mut admin = s.raw();
        let r = admin.cmds(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 256kb 60",
        ]);
        assert_eq!(r.as_str(), "OK", "{}", s.label());
        let mut sub = s.raw();
        sub.cmds(&["SUBSCRIBE", "ch"]);
        // `sub` never reads again. The kernel's socket buffers take some
        // megabytes first; then the server's own buffer passes 1 MB.
        let mut publisher = s.raw();
        let mut sent = 0;
        loop {
            let n = publisher.cmd(&[b"PUBLISH", b"ch", &payload]);
            sent += 1;
            if n.as_int() == Some(0) {
                break;
            }
            assert!(
                sent < 2000,
                "{}: still subscribed after {} MB published",
                s.label(),
                sent * 64 / 1024
            );
        }
        assert!(
            sent > 16,
            "{}: closed after only {sent} messages",
            s.label()
        );
        assert_eq!(publisher.cmds(&["PING"]).as_str(), "PONG");
        // The other subscribers are untouched.
        let mut other = s.raw();
        other.cmds(&["SUBSCRIBE", "ch"]);
        assert_eq!(publisher.cmds(&["PUBLISH", "ch", "hi"]).as_int(), Some(1));
    }
}

/// INFO stats counts what Redis 7.0 counts there: channels and patterns
/// with a subscriber (each once, whichever shards their subscribers are
/// on), error replies, and reads and writes on client sockets.
#[test]
fn info_stats_counts_subscriptions_errors_and_socket_io() {
    let s = Server::start(4);
    let stats = |name: &str| common::info_int(&common::info_section(s.port, "stats"), name);
    assert_eq!(stats("pubsub_channels"), 0);
    assert_eq!(stats("pubsub_patterns"), 0);
    // Spread over the shards: the same channels and pattern from many
    // connections count once.
    let mut subs: Vec<_> = (0..8).map(|_| s.raw()).collect();
    for (i, c) in subs.iter_mut().enumerate() {
        cmd_n(c, &["SUBSCRIBE", "a", &format!("only{}", i % 2)], 2);
        cmd(c, &["PSUBSCRIBE", "p.*"]);
    }
    assert_eq!(stats("pubsub_channels"), 3);
    assert_eq!(stats("pubsub_patterns"), 1);
    drop(subs);
    common::wait_for(
        "the subscriptions to go",
        Duration::from_secs(10),
        || match (stats("pubsub_channels"), stats("pubsub_patterns")) {
            (0, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    let errors = stats("total_error_replies");
    let (reads, writes) = (
        stats("total_reads_processed"),
        stats("total_writes_processed"),
    );
    let mut c = s.raw();
    let mut got = Vec::new();
    for args in [
        &["SET", "k", "v"][..],
        &["LPUSH", "k", "x"],
        &["INCR", "k"],
        &["NOSUCHCOMMAND"],
        &["GET"],
        &["GET", "k"],
    ] {
        got.push(cmd(&mut c, args));
    }
    assert_eq!(
        got.iter().filter(|r| r.starts_with(b"-")).count(),
        4,
        "{got:?}"
    );
    assert_eq!(stats("total_error_replies"), errors + 4);
    // Each request was read and answered on its own (at least; the INFO
    // calls add their own).
    assert!(stats("total_reads_processed") >= reads + 6);
    assert!(stats("total_writes_processed") >= writes + 6);
    // CONFIG RESETSTAT starts them over, as Redis's resetServerStats.
    assert_eq!(cmd(&mut c, &["CONFIG", "RESETSTAT"]), b"+OK\r\n".to_vec());
    assert_eq!(stats("total_error_replies"), 0);
    assert!(stats("total_reads_processed") < 10);
    assert!(stats("total_writes_processed") < 10);
}
