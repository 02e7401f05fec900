//! The keyspace at a size where its dictionary is many segments (see
//! `shard::table`), and clients that write faster than a shard's per-turn
//! budget: SCAN's guarantee while the table grows and splits under the
//! cursor, RANDOMKEY across segments, and deep pipelines (far beyond the
//! receive pause threshold, with a huge value at the end) answered whole.
//! Runs against tether (1 and 2 shards) or stock Redis with
//! `TETHER_TEST_TARGET=redis`.
mod common;

use common::{Resp, encode, for_shards, read_reply};
use redis::Connection;
use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const SHARDS: &[usize] = &[1, 2];

fn fill(c: &mut Connection, prefix: &str, from: usize, to: usize) {
    for start in (from..to).step_by(1000) {
        let mut p = redis::pipe();
        for i in start..(start + 1000).min(to) {
            p.cmd("SET").arg(format!("{prefix}:{i}")).arg(i).ignore();
        }
        let _: () = p.query(c).expect("fill");
    }
}

#[test]
fn scan_keeps_its_guarantee_while_the_table_grows() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        // ~20k keys per shard: several segments each, and growth below
        // happens while the cursor is inside the table.
        fill(&mut c, "old", 0, 40_000);
        let mut cursor = 0u64;
        let mut seen = HashSet::new();
        let mut next_new = 0;
        let mut calls = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(200)
                .query(&mut c)
                .expect("SCAN");
            seen.extend(keys);
            calls += 1;
            if calls < 300 {
                // Grow by 200 keys a call (60k in all: more splits than
                // the table had segments) and delete odd old keys.
                fill(&mut c, "new", next_new, next_new + 200);
                next_new += 200;
                let odd = format!("old:{}", (calls * 7919 % 20_000) * 2 + 1);
                let _: i64 = redis::cmd("DEL").arg(odd).query(&mut c).unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
            assert!(calls < 100_000, "SCAN never ended");
        }
        for i in (0..40_000).step_by(2) {
            assert!(seen.contains(&format!("old:{i}")), "SCAN missed old:{i}");
        }
        let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert!(size > 90_000, "dbsize {size}");
        // RANDOMKEY draws from every part of the table.
        let mut prefixes = HashSet::new();
        for _ in 0..200 {
            let k: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
            prefixes.insert(k.split(':').next().unwrap().to_string());
        }
        assert_eq!(prefixes.len(), 2, "{prefixes:?}");
    });
}

#[test]
fn a_deep_pipeline_is_answered_whole_and_in_order() {
    for_shards(SHARDS, |s| {
        // 300k SETs (~13 MB, far past the point where a backlogged client
        // stops being read) and a 6 MB value at the end, written without
        // waiting while another thread reads the replies.
        let n = 300_000usize;
        let mut req = Vec::with_capacity(14 << 20);
        for i in 0..n {
            req.extend_from_slice(&encode(&[b"SET", format!("p:{i}").as_bytes(), b"v"]));
        }
        let big = vec![b'x'; 6 << 20];
        req.extend_from_slice(&encode(&[b"SET", b"big", &big]));
        req.extend_from_slice(&encode(&[b"STRLEN", b"big"]));
        let stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&req).unwrap());
        let mut r = BufReader::new(stream);
        for i in 0..=n {
            let (reply, _) = read_reply(&mut r).expect("reply");
            assert_eq!(reply, Resp::Simple(b"OK".to_vec()), "reply {i}");
        }
        let (reply, _) = read_reply(&mut r).expect("STRLEN reply");
        assert_eq!(reply, Resp::Int(6 << 20));
        writer.join().unwrap();
        let mut c = s.client();
        let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, n + 1);
    });
}
