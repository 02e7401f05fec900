//! Focused integration tests for string and keyspace commands, SCAN, expiry,
//! databases, RESP3, the wire protocol's edge cases and the server/client
//! admin commands. Each test runs against tether with 1 and with 4 shards (or
//! stock Redis with `TETHER_TEST_TARGET=redis`), on keys spread across shards.
mod common;

use common::{Resp, Server, esc, for_shards, wait_until};
use redis::{Connection, FromRedisValue};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const SHARDS: &[usize] = &[1, 4];

fn q<T: FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {}", common::describe(&e)))
}

/// Many keys without hash tags, so that they spread over every shard.
fn spread_keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

fn err(r: &Resp) -> String {
    match r {
        Resp::Error(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn ok() -> Resp {
    Resp::Simple(b"OK".to_vec())
}

fn bulk(s: &str) -> Resp {
    Resp::Bulk(s.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------

#[test]
fn string_commands() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        let keys = spread_keys("str", 64);

        // SET/GET/MSET/MGET over keys on every shard.
        for (i, k) in keys.iter().enumerate() {
            let _: () = q(&mut c, &["SET", k, &format!("v{i}")]);
        }
        let mut mget = vec!["MGET"];
        mget.extend(keys.iter().map(|s| s.as_str()));
        mget.push("str:missing");
        let got: Vec<Option<String>> = q(&mut c, &mget);
        assert_eq!(got.len(), 65);
        for (i, v) in got[..64].iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some(format!("v{i}").as_str()),
                "MGET position {i}"
            );
        }
        assert_eq!(got[64], None);

        let mut mset = vec!["MSET".to_string()];
        for (i, k) in keys.iter().enumerate() {
            mset.push(k.clone());
            mset.push(format!("m{i}"));
        }
        let mset: Vec<&str> = mset.iter().map(|s| s.as_str()).collect();
        let _: () = q(&mut c, &mset);
        let got: Vec<String> = q(&mut c, &mget[..65]);
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v, &format!("m{i}"));
        }

        // MSETNX is all-or-nothing across shards.
        let n: i64 = q(
            &mut c,
            &[
                "MSETNX", "nx:a", "1", "nx:b", "2", "nx:c", "3", "str:7", "x",
            ],
        );
        assert_eq!(n, 0);
        let n: i64 = q(&mut c, &["EXISTS", "nx:a", "nx:b", "nx:c"]);
        assert_eq!(n, 0, "MSETNX that failed must set nothing");
        assert_eq!(q::<String>(&mut c, &["GET", "str:7"]), "m7");
        let n: i64 = q(&mut c, &["MSETNX", "nx:a", "1", "nx:b", "2", "nx:c", "3"]);
        assert_eq!(n, 1);
        let v: Vec<String> = q(&mut c, &["MGET", "nx:a", "nx:b", "nx:c"]);
        assert_eq!(v, ["1", "2", "3"]);

        // SET options.
        let mut r = s.raw();
        assert_eq!(r.cmds(&["SET", "o", "1", "NX"]), ok());
        assert_eq!(r.cmds(&["SET", "o", "2", "NX"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["SET", "o", "3", "XX"]), ok());
        assert_eq!(r.cmds(&["SET", "o:none", "3", "XX"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["SET", "o", "4", "GET"]), bulk("3"));
        assert_eq!(r.cmds(&["SET", "o:new", "4", "GET"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["SET", "o", "5", "NX", "GET"]), bulk("4"));
        assert_eq!(r.cmds(&["GET", "o"]), bulk("4"));
        assert_eq!(r.cmds(&["SET", "o", "6", "EX", "100"]), ok());
        assert_eq!(r.cmds(&["SET", "o", "7", "KEEPTTL"]), ok());
        let ttl = r.cmds(&["TTL", "o"]).as_int().unwrap();
        assert!((98..=100).contains(&ttl), "KEEPTTL kept the TTL: {ttl}");
        assert_eq!(r.cmds(&["SET", "o", "8"]), ok());
        assert_eq!(
            r.cmds(&["TTL", "o"]),
            Resp::Int(-1),
            "plain SET clears the TTL"
        );
        assert_eq!(r.cmds(&["SET", "o", "9", "PX", "100000"]), ok());
        let pttl = r.cmds(&["PTTL", "o"]).as_int().unwrap();
        assert!((98_000..=100_000).contains(&pttl), "{pttl}");
        assert_eq!(
            err(&r.cmds(&["SET", "o", "1", "NX", "XX"])),
            "ERR syntax error"
        );
        assert_eq!(
            err(&r.cmds(&["SET", "o", "1", "EX", "10", "KEEPTTL"])),
            "ERR syntax error"
        );
        assert_eq!(
            err(&r.cmds(&["SET", "o", "1", "EX", "0"])),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            err(&r.cmds(&["SET", "o", "1", "EX", "x"])),
            "ERR value is not an integer or out of range"
        );

        // SETNX / GETSET / GETDEL / GETEX.
        assert_eq!(r.cmds(&["SETNX", "sn", "a"]), Resp::Int(1));
        assert_eq!(r.cmds(&["SETNX", "sn", "b"]), Resp::Int(0));
        assert_eq!(r.cmds(&["GETSET", "sn", "c"]), bulk("a"));
        assert_eq!(r.cmds(&["GETSET", "sn:none", "c"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["GETDEL", "sn"]), bulk("c"));
        assert_eq!(r.cmds(&["GETDEL", "sn"]), Resp::NilBulk);
        assert_eq!(r.cmds(&["EXISTS", "sn"]), Resp::Int(0));
        assert_eq!(r.cmds(&["SET", "gx", "v"]), ok());
        assert_eq!(r.cmds(&["GETEX", "gx", "EX", "200"]), bulk("v"));
        let ttl = r.cmds(&["TTL", "gx"]).as_int().unwrap();
        assert!((198..=200).contains(&ttl), "{ttl}");
        assert_eq!(r.cmds(&["GETEX", "gx", "PERSIST"]), bulk("v"));
        assert_eq!(r.cmds(&["TTL", "gx"]), Resp::Int(-1));
        assert_eq!(r.cmds(&["GETEX", "gx:none", "EX", "5"]), Resp::NilBulk);
        assert_eq!(
            err(&r.cmds(&["GETEX", "gx", "EX", "-1"])),
            "ERR invalid expire time in 'getex' command"
        );

        // APPEND / STRLEN / GETRANGE / SETRANGE.
        assert_eq!(r.cmds(&["APPEND", "ap", "Hello"]), Resp::Int(5));
        assert_eq!(r.cmds(&["APPEND", "ap", " World"]), Resp::Int(11));
        assert_eq!(r.cmds(&["STRLEN", "ap"]), Resp::Int(11));
        assert_eq!(r.cmds(&["STRLEN", "ap:none"]), Resp::Int(0));
        assert_eq!(r.cmds(&["GETRANGE", "ap", "0", "4"]), bulk("Hello"));
        assert_eq!(r.cmds(&["GETRANGE", "ap", "-5", "-1"]), bulk("World"));
        assert_eq!(r.cmds(&["GETRANGE", "ap", "0", "-1"]), bulk("Hello World"));
        assert_eq!(r.cmds(&["GETRANGE", "ap", "5", "2"]), bulk(""));
        assert_eq!(r.cmds(&["GETRANGE", "ap", "100", "200"]), bulk(""));
        assert_eq!(r.cmds(&["GETRANGE", "ap:none", "0", "-1"]), bulk(""));
        assert_eq!(r.cmds(&["SETRANGE", "ap", "6", "Redis"]), Resp::Int(11));
        assert_eq!(r.cmds(&["GET", "ap"]), bulk("Hello Redis"));
        assert_eq!(r.cmds(&["SETRANGE", "sr", "5", "x"]), Resp::Int(6));
        assert_eq!(r.cmds(&["GET", "sr"]), Resp::Bulk(b"\0\0\0\0\0x".to_vec()));
        assert_eq!(r.cmds(&["SETRANGE", "sr:none", "5", ""]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXISTS", "sr:none"]), Resp::Int(0));
        assert_eq!(
            err(&r.cmds(&["SETRANGE", "sr", "-1", "x"])),
            "ERR offset is out of range"
        );
        assert_eq!(
            err(&r.cmds(&["SETRANGE", "sr", "536870912", "x"])),
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );

        // Counters.
        assert_eq!(r.cmds(&["INCR", "cnt"]), Resp::Int(1));
        assert_eq!(r.cmds(&["INCRBY", "cnt", "41"]), Resp::Int(42));
        assert_eq!(r.cmds(&["DECR", "cnt"]), Resp::Int(41));
        assert_eq!(r.cmds(&["DECRBY", "cnt", "-9"]), Resp::Int(50));
        assert_eq!(r.cmds(&["INCRBY", "cnt", "-100"]), Resp::Int(-50));
        assert_eq!(r.cmds(&["GET", "cnt"]), bulk("-50"));
        assert_eq!(r.cmds(&["SET", "cnt", "abc"]), ok());
        assert_eq!(
            err(&r.cmds(&["INCR", "cnt"])),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(r.cmds(&["SET", "cnt", "9223372036854775807"]), ok());
        assert_eq!(
            err(&r.cmds(&["INCR", "cnt"])),
            "ERR increment or decrement would overflow"
        );
        assert_eq!(r.cmds(&["GET", "cnt"]), bulk("9223372036854775807"));
        // Examples from the INCRBYFLOAT documentation.
        assert_eq!(r.cmds(&["SET", "fl", "10.50"]), ok());
        assert_eq!(r.cmds(&["INCRBYFLOAT", "fl", "0.1"]), bulk("10.6"));
        assert_eq!(r.cmds(&["INCRBYFLOAT", "fl", "-5"]), bulk("5.6"));
        assert_eq!(r.cmds(&["SET", "fl", "5.0e3"]), ok());
        assert_eq!(r.cmds(&["INCRBYFLOAT", "fl", "2.0e2"]), bulk("5200"));
        assert_eq!(r.cmds(&["INCRBYFLOAT", "fl:new", "1.5"]), bulk("1.5"));
        assert_eq!(
            err(&r.cmds(&["INCRBYFLOAT", "fl", "abc"])),
            "ERR value is not a valid float"
        );
        assert_eq!(
            err(&r.cmds(&["INCRBYFLOAT", "fl", "inf"])),
            "ERR increment would produce NaN or Infinity"
        );

        // Binary safety.
        r.cmd(&[b"SET", b"bin\x00key", b"\x00\xff\r\n"]);
        assert_eq!(
            r.cmd(&[b"GET", b"bin\x00key"]),
            Resp::Bulk(b"\x00\xff\r\n".to_vec())
        );

        // Wrong type is not reachable with strings only; wrong arity is.
        assert_eq!(
            err(&r.cmds(&["GET"])),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err(&r.cmds(&["mset", "a"])),
            "ERR wrong number of arguments for 'mset' command"
        );
    });
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

#[test]
fn key_commands() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        let keys = spread_keys("key", 32);
        for k in &keys {
            assert_eq!(r.cmds(&["SET", k, k]), ok());
        }
        // Multi-key counts across shards; duplicates count twice in EXISTS.
        let mut ex = vec!["EXISTS"];
        ex.extend(keys.iter().map(|s| s.as_str()));
        ex.push("key:0");
        ex.push("key:none");
        assert_eq!(r.cmds(&ex), Resp::Int(33));
        let mut touch = ex.clone();
        touch[0] = "TOUCH";
        assert_eq!(r.cmds(&touch), Resp::Int(33));
        assert_eq!(r.cmds(&["TYPE", "key:1"]), Resp::Simple(b"string".to_vec()));
        assert_eq!(
            r.cmds(&["TYPE", "key:none"]),
            Resp::Simple(b"none".to_vec())
        );
        let mut del = vec!["DEL"];
        del.extend(keys[..10].iter().map(|s| s.as_str()));
        del.push("key:none");
        assert_eq!(r.cmds(&del), Resp::Int(10));
        let mut unlink = vec!["UNLINK"];
        unlink.extend(keys[10..20].iter().map(|s| s.as_str()));
        unlink.push("key:0");
        assert_eq!(r.cmds(&unlink), Resp::Int(10));
        assert_eq!(r.cmds(&["DBSIZE"]), Resp::Int(12));

        // KEYS with patterns (order is unspecified).
        let mut got: Vec<String> = r
            .cmds(&["KEYS", "key:2*"])
            .array()
            .iter()
            .map(|x| x.as_str())
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "key:20", "key:21", "key:22", "key:23", "key:24", "key:25", "key:26", "key:27",
                "key:28", "key:29"
            ]
        );
        assert_eq!(r.cmds(&["KEYS", "key:3?"]).array().len(), 2);
        assert_eq!(r.cmds(&["KEYS", "*"]).array().len(), 12);
        assert_eq!(r.cmds(&["KEYS", "nomatch*"]), Resp::Array(vec![]));

        // EXPIRE family with NX/XX/GT/LT.
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "100"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "200", "NX"]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXPIRE", "key:21", "200", "NX"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXPIRE", "key:22", "200", "XX"]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "200", "XX"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "100", "GT"]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "300", "GT"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "400", "LT"]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXPIRE", "key:20", "50", "LT"]), Resp::Int(1));
        // No TTL counts as infinite: GT never applies, LT always does.
        assert_eq!(r.cmds(&["EXPIRE", "key:23", "50", "GT"]), Resp::Int(0));
        assert_eq!(r.cmds(&["EXPIRE", "key:23", "50", "LT"]), Resp::Int(1));
        assert_eq!(r.cmds(&["PEXPIRE", "key:24", "123456"]), Resp::Int(1));
        let pttl = r.cmds(&["PTTL", "key:24"]).as_int().unwrap();
        assert!((120_000..=123_456).contains(&pttl), "{pttl}");
        let ttl = r.cmds(&["TTL", "key:20"]).as_int().unwrap();
        assert!((48..=50).contains(&ttl), "{ttl}");
        assert_eq!(r.cmds(&["TTL", "key:25"]), Resp::Int(-1));
        assert_eq!(r.cmds(&["TTL", "key:none"]), Resp::Int(-2));
        assert_eq!(r.cmds(&["PTTL", "key:none"]), Resp::Int(-2));
        assert_eq!(r.cmds(&["PERSIST", "key:20"]), Resp::Int(1));
        assert_eq!(r.cmds(&["PERSIST", "key:20"]), Resp::Int(0));
        assert_eq!(r.cmds(&["TTL", "key:20"]), Resp::Int(-1));
        assert_eq!(r.cmds(&["EXPIRE", "key:none", "100"]), Resp::Int(0));
        assert_eq!(
            err(&r.cmds(&["EXPIRE", "key:20", "100", "NX", "XX"])),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            err(&r.cmds(&["EXPIRE", "key:20", "100", "GT", "LT"])),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(
            err(&r.cmds(&["EXPIRE", "key:20", "100", "XY"])),
            "ERR Unsupported option XY"
        );
        // Non-positive TTL deletes at once.
        assert_eq!(r.cmds(&["EXPIRE", "key:25", "-1"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXISTS", "key:25"]), Resp::Int(0));

        // RENAME / RENAMENX across keys (different shards), TTL travels along.
        assert_eq!(r.cmds(&["SET", "rn:src", "payload", "EX", "500"]), ok());
        for i in 0..16 {
            let (a, b) = (format!("rn:{i}"), format!("rn:{}", i + 1));
            let from = if i == 0 { "rn:src".to_string() } else { a };
            assert_eq!(r.cmds(&["RENAME", &from, &b]), ok(), "RENAME {from} {b}");
        }
        assert_eq!(r.cmds(&["GET", "rn:16"]), bulk("payload"));
        let ttl = r.cmds(&["TTL", "rn:16"]).as_int().unwrap();
        assert!((490..=500).contains(&ttl), "TTL survives RENAME: {ttl}");
        assert_eq!(r.cmds(&["EXISTS", "rn:src", "rn:1", "rn:15"]), Resp::Int(0));
        assert_eq!(err(&r.cmds(&["RENAME", "rn:none", "x"])), "ERR no such key");
        assert_eq!(r.cmds(&["RENAME", "rn:16", "rn:16"]), ok());
        assert_eq!(r.cmds(&["SET", "rn:other", "o"]), ok());
        assert_eq!(r.cmds(&["RENAMENX", "rn:16", "rn:other"]), Resp::Int(0));
        assert_eq!(r.cmds(&["RENAMENX", "rn:16", "rn:fresh"]), Resp::Int(1));
        assert_eq!(
            r.cmds(&["RENAME", "rn:fresh", "rn:other"]),
            ok(),
            "RENAME overwrites"
        );
        assert_eq!(r.cmds(&["GET", "rn:other"]), bulk("payload"));

        // COPY, incl. REPLACE and DB; MOVE.
        assert_eq!(r.cmds(&["SET", "cp:a", "A", "EX", "300"]), ok());
        assert_eq!(r.cmds(&["SET", "cp:b", "B"]), ok());
        assert_eq!(r.cmds(&["COPY", "cp:a", "cp:b"]), Resp::Int(0));
        assert_eq!(r.cmds(&["COPY", "cp:a", "cp:b", "REPLACE"]), Resp::Int(1));
        assert_eq!(r.cmds(&["GET", "cp:b"]), bulk("A"));
        let ttl = r.cmds(&["TTL", "cp:b"]).as_int().unwrap();
        assert!((290..=300).contains(&ttl), "COPY copies the TTL: {ttl}");
        assert_eq!(r.cmds(&["COPY", "cp:a", "cp:c"]), Resp::Int(1));
        assert_eq!(r.cmds(&["COPY", "cp:none", "cp:d"]), Resp::Int(0));
        assert_eq!(r.cmds(&["COPY", "cp:a", "cp:a", "DB", "3"]), Resp::Int(1));
        assert_eq!(
            err(&r.cmds(&["COPY", "cp:a", "cp:a"])),
            "ERR source and destination objects are the same"
        );
        assert_eq!(
            err(&r.cmds(&["COPY", "cp:a", "x", "DB", "99"])),
            "ERR DB index is out of range"
        );
        assert_eq!(r.cmds(&["MOVE", "cp:c", "4"]), Resp::Int(1));
        assert_eq!(r.cmds(&["EXISTS", "cp:c"]), Resp::Int(0));
        assert_eq!(r.cmds(&["SET", "cp:c", "again"]), ok());
        assert_eq!(
            r.cmds(&["MOVE", "cp:c", "4"]),
            Resp::Int(0),
            "MOVE refuses to overwrite"
        );
        assert_eq!(r.cmds(&["MOVE", "cp:none", "4"]), Resp::Int(0));
        assert_eq!(r.cmds(&["SELECT", "4"]), ok());
        assert_eq!(r.cmds(&["GET", "cp:c"]), bulk("A"));
        assert_eq!(r.cmds(&["SELECT", "3"]), ok());
        assert_eq!(r.cmds(&["GET", "cp:a"]), bulk("A"));
        assert_eq!(r.cmds(&["DBSIZE"]), Resp::Int(1));
    });
}

#[test]
fn select_swapdb_flushdb_flushall() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        let mut c2 = s.client();
        for k in spread_keys("d0", 20) {
            let _: () = q(&mut c, &["SET", &k, "zero"]);
        }
        let _: () = q(&mut c, &["SELECT", "1"]);
        for k in spread_keys("d1", 30) {
            let _: () = q(&mut c, &["SET", &k, "one"]);
        }
        assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 30);
        assert_eq!(
            q::<i64>(&mut c2, &["DBSIZE"]),
            20,
            "SELECT is per connection"
        );
        let _: () = q(&mut c, &["SWAPDB", "0", "1"]);
        assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 20, "db1 now has db0's keys");
        assert_eq!(
            q::<i64>(&mut c2, &["DBSIZE"]),
            30,
            "other connections see the swap too"
        );
        assert_eq!(q::<String>(&mut c2, &["GET", "d1:5"]), "one");
        let _: () = q(&mut c, &["SELECT", "2"]);
        let _: () = q(&mut c, &["SET", "two", "2"]);
        let _: () = q(&mut c, &["FLUSHDB"]);
        assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 0);
        assert_eq!(
            q::<i64>(&mut c2, &["DBSIZE"]),
            30,
            "FLUSHDB only touches the current db"
        );
        let _: () = q(&mut c, &["SET", "two", "2"]);
        let _: () = q(&mut c, &["FLUSHALL"]);
        for db in 0..4 {
            let _: () = q(&mut c, &["SELECT", &db.to_string()]);
            assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 0, "db {db} after FLUSHALL");
        }
        let mut r = s.raw();
        assert_eq!(
            err(&r.cmds(&["SELECT", "16"])),
            "ERR DB index is out of range"
        );
        assert_eq!(
            err(&r.cmds(&["SELECT", "x"])),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(&r.cmds(&["SWAPDB", "0", "16"])),
            "ERR DB index is out of range"
        );
        assert_eq!(
            err(&r.cmds(&["SWAPDB", "x", "1"])),
            "ERR invalid first DB index"
        );
        assert_eq!(
            err(&r.cmds(&["SWAPDB", "0", "y"])),
            "ERR invalid second DB index"
        );
        assert_eq!(r.cmds(&["FLUSHALL", "ASYNC"]), ok());
        assert_eq!(r.cmds(&["FLUSHDB", "SYNC"]), ok());
    });
}

// ---------------------------------------------------------------------------
// SCAN
// ---------------------------------------------------------------------------

/// Full SCAN with the given extra arguments; returns every key seen (with
/// repeats) and the number of calls it took.
fn full_scan(c: &mut Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let (next, keys): (String, Vec<String>) = q(c, &args);
        calls += 1;
        assert!(calls < 100_000, "SCAN does not terminate");
        seen.extend(keys);
        if next == "0" {
            return (seen, calls);
        }
        cursor = next;
    }
}

#[test]
fn scan_visits_every_key() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        let keys = spread_keys("key", 1000);
        for chunk in keys.chunks(100) {
            let mut args = vec!["MSET"];
            for k in chunk {
                args.push(k);
                args.push("v");
            }
            let _: () = q(&mut c, &args);
        }
        let want: HashSet<String> = keys.iter().cloned().collect();
        for extra in [
            &[][..],
            &["COUNT", "7"][..],
            &["COUNT", "1000"][..],
            &["TYPE", "string"][..],
        ] {
            let (seen, calls) = full_scan(&mut c, extra);
            let got: HashSet<String> = seen.iter().cloned().collect();
            assert_eq!(
                got.len(),
                1000,
                "SCAN {extra:?} returned {} distinct keys",
                got.len()
            );
            assert_eq!(got, want, "SCAN {extra:?} key set");
            if extra == ["COUNT", "7"] {
                assert!(
                    calls > 10,
                    "COUNT 7 over 1000 keys should take many calls, took {calls}"
                );
            }
        }
        // MATCH: key:1, key:1x, key:1xx = 1 + 10 + 100.
        let (seen, _) = full_scan(&mut c, &["MATCH", "key:1*", "COUNT", "50"]);
        let got: HashSet<String> = seen.into_iter().collect();
        let want: HashSet<String> = keys
            .iter()
            .filter(|k| k.starts_with("key:1"))
            .cloned()
            .collect();
        assert_eq!(want.len(), 111);
        assert_eq!(got, want);
        let (seen, _) = full_scan(&mut c, &["MATCH", "nomatch*"]);
        assert!(seen.is_empty());
        let (seen, _) = full_scan(&mut c, &["TYPE", "list"]);
        assert!(seen.is_empty(), "no lists exist: {seen:?}");

        // Keys present for the whole scan are returned even while others come and go.
        let mut cursor = "0".to_string();
        let mut got = HashSet::new();
        let mut round = 0;
        loop {
            let (next, ks): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "20"]);
            got.extend(ks);
            let _: () = q(&mut c, &["SET", &format!("churn:{round}"), "x"]);
            let _: i64 = q(&mut c, &["DEL", &format!("churn:{}", round.max(1) - 1)]);
            round += 1;
            if next == "0" {
                break;
            }
            cursor = next;
        }
        for k in &keys {
            assert!(got.contains(k), "SCAN under mutation missed {k}");
        }

        let mut r = s.raw();
        assert_eq!(err(&r.cmds(&["SCAN", "abc"])), "ERR invalid cursor");
        assert_eq!(
            err(&r.cmds(&["SCAN", "0", "COUNT", "0"])),
            "ERR syntax error"
        );
        assert_eq!(
            err(&r.cmds(&["SCAN", "0", "BOGUS", "1"])),
            "ERR syntax error"
        );
    });
}

#[test]
fn scan_type_filter_with_mixed_types() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        for i in 0..30 {
            let _: () = q(&mut c, &["SET", &format!("s{i}"), "v"]);
            let _: i64 = q(&mut c, &["RPUSH", &format!("l{i}"), "a"]);
            let _: i64 = q(&mut c, &["HSET", &format!("h{i}"), "f", "v"]);
        }
        for (ty, prefix) in [("string", "s"), ("list", "l"), ("hash", "h")] {
            let (seen, _) = full_scan(&mut c, &["TYPE", ty, "COUNT", "5"]);
            let got: HashSet<String> = seen.into_iter().collect();
            let want: HashSet<String> = (0..30).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(got, want, "SCAN TYPE {ty}");
        }
    });
}

// ---------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------

#[test]
fn lazy_expiry() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        for k in spread_keys("lazy", 16) {
            assert_eq!(r.cmds(&["SET", &k, "v", "PX", "50"]), ok());
        }
        assert_eq!(r.cmds(&["SET", "lazy:keep", "v"]), ok());
        std::thread::sleep(Duration::from_millis(150));
        for k in spread_keys("lazy", 16) {
            assert_eq!(r.cmds(&["GET", &k]), Resp::NilBulk, "{k} expired");
            assert_eq!(r.cmds(&["EXISTS", &k]), Resp::Int(0));
            assert_eq!(r.cmds(&["TTL", &k]), Resp::Int(-2));
        }
        assert_eq!(r.cmds(&["GET", "lazy:keep"]), bulk("v"));
        // An expired key is gone for writes too: SET NX succeeds, INCR starts at 1.
        assert_eq!(r.cmds(&["SET", "lazy:nx", "v", "PX", "30"]), ok());
        assert_eq!(r.cmds(&["SET", "lazy:ctr", "41", "PX", "30"]), ok());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(r.cmds(&["SET", "lazy:nx", "w", "NX"]), ok());
        assert_eq!(r.cmds(&["INCR", "lazy:ctr"]), Resp::Int(1));
        assert_eq!(r.cmds(&["TTL", "lazy:ctr"]), Resp::Int(-1));
    });
}

#[test]
fn active_expiry_removes_untouched_keys() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        for k in spread_keys("act", 200) {
            assert_eq!(r.cmds(&["SET", &k, "v", "PX", "100"]), ok());
        }
        assert_eq!(r.cmds(&["SET", "act:persistent", "v"]), ok());
        // DBSIZE does not touch keys, so only the active cycle can shrink it.
        std::thread::sleep(Duration::from_millis(1500));
        let mut last = -1;
        let gone = wait_until(Duration::from_secs(3), || {
            last = r.cmds(&["DBSIZE"]).as_int().unwrap();
            last == 1
        });
        assert!(
            gone,
            "active expiry left {last} keys (want 1) ~4.5 s after a 100 ms TTL"
        );
        let info = r.cmds(&["INFO", "stats"]).as_str();
        let expired: i64 = info_field(&info, "expired_keys").parse().unwrap();
        assert!(expired >= 200, "expired_keys = {expired}");
    });
}

fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------

#[test]
fn resp3_hello_and_types() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        let hello = r.cmds(&["HELLO", "3"]);
        let Resp::Map(fields) = &hello else {
            panic!("HELLO 3 must reply with a map: {hello:?}")
        };
        let m: HashMap<String, Resp> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(m.get("proto"), Some(&Resp::Int(3)), "{hello:?}");
        for f in ["server", "version", "id", "mode", "role", "modules"] {
            assert!(m.contains_key(f), "HELLO map lacks {f}: {hello:?}");
        }
        assert_eq!(m["role"], bulk("master"));
        // Null is `_`, maps are `%`, everything else unchanged.
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"GET", b"r3:none"])),
            b"_\r\n"
        );
        assert_eq!(r.cmds(&["SET", "r3:a", "1"]), ok());
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"MGET", b"r3:a", b"r3:none"])),
            b"*2\r\n$1\r\n1\r\n_\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"CONFIG", b"GET", b"databases"])),
            b"%1\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"EXISTS", b"r3:a"])),
            b":1\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"SET", b"r3:a", b"2", b"NX"])),
            b"_\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"INCRBYFLOAT", b"r3:a", b"0.5"])),
            b"$3\r\n1.5\r\n"
        );
        let e = r.cmds(&["HELLO", "4"]);
        assert!(err(&e).starts_with("NOPROTO"), "{e:?}");
        // Back to RESP2.
        let h2 = r.cmds(&["HELLO", "2"]);
        assert!(
            matches!(h2, Resp::Array(_)),
            "HELLO 2 replies with an array: {h2:?}"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"GET", b"r3:none"])),
            b"$-1\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"CONFIG", b"GET", b"databases"])),
            b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
        );
    });
}

#[test]
fn inline_commands() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        assert_eq!(r.roundtrip_bytes(b"PING\r\n"), b"+PONG\r\n");
        assert_eq!(
            r.roundtrip_bytes(b"ping\n"),
            b"+PONG\r\n",
            "bare LF ends an inline command"
        );
        assert_eq!(
            r.roundtrip_bytes(b"\r\n\r\nPING\r\n"),
            b"+PONG\r\n",
            "empty lines are skipped"
        );
        assert_eq!(r.roundtrip_bytes(b"SET inl bar\r\n"), b"+OK\r\n");
        assert_eq!(r.roundtrip_bytes(b"GET inl\r\n"), b"$3\r\nbar\r\n");
        assert_eq!(
            r.roundtrip_bytes(b"SET inl \"hello world\"\r\n"),
            b"+OK\r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(b"GET   inl  \r\n"),
            b"$11\r\nhello world\r\n"
        );
        assert_eq!(r.roundtrip_bytes(b"SET inl \"a\\x41\\n\"\r\n"), b"+OK\r\n");
        assert_eq!(r.cmds(&["GET", "inl"]), bulk("aA\n"));
        assert_eq!(r.roundtrip_bytes(b"SET inl 'x y'\r\n"), b"+OK\r\n");
        assert_eq!(r.cmds(&["GET", "inl"]), bulk("x y"));
        // Pipelined inline commands, mixed with multibulk.
        r.send(b"PING\r\nINCR inl:n\r\n*2\r\n$4\r\nINCR\r\n$5\r\ninl:n\r\nGET inl:n\r\n");
        assert_eq!(r.read(), Resp::Simple(b"PONG".to_vec()));
        assert_eq!(r.read(), Resp::Int(1));
        assert_eq!(r.read(), Resp::Int(2));
        assert_eq!(r.read(), bulk("2"));
        // Arity errors work inline too.
        assert_eq!(
            r.roundtrip_bytes(b"GET\r\n"),
            b"-ERR wrong number of arguments for 'get' command\r\n"
        );
        // Unbalanced quotes are a protocol error that closes the connection.
        assert_eq!(
            r.roundtrip_bytes(b"SET inl \"abc\r\n"),
            b"-ERR Protocol error: unbalanced quotes in request\r\n"
        );
        assert!(r.is_closed_by_peer(Duration::from_secs(5)));
    });
}

#[test]
fn protocol_error_closes_only_that_connection() {
    for_shards(SHARDS, |s| {
        let mut good = s.raw();
        assert_eq!(good.cmds(&["SET", "pe", "still-here"]), ok());
        let cases: &[(&[u8], &str)] = &[
            (
                b"*1\r\n$abc\r\n",
                "-ERR Protocol error: invalid bulk length\r\n",
            ),
            (
                b"*abc\r\n",
                "-ERR Protocol error: invalid multibulk length\r\n",
            ),
            (
                b"*1\r\nfoo\r\n",
                "-ERR Protocol error: expected '$', got 'f'\r\n",
            ),
            (
                b"*1\r\n$-1\r\n",
                "-ERR Protocol error: invalid bulk length\r\n",
            ),
            (b"*1\r\n$3\r\nPINGX\r\n", ""), // bad trailer: just must not crash the server
        ];
        for (bytes, want) in cases {
            let mut bad = s.raw();
            bad.send(b"PING\r\n");
            assert_eq!(bad.read(), Resp::Simple(b"PONG".to_vec()));
            bad.send(bytes);
            if !want.is_empty() {
                let (_, raw) = bad.read_raw();
                assert_eq!(esc(&raw), esc(want.as_bytes()), "reply to {}", esc(bytes));
                assert!(
                    bad.is_closed_by_peer(Duration::from_secs(5)),
                    "connection must close after {}",
                    esc(bytes)
                );
            }
            // Others are unaffected.
            assert_eq!(good.cmds(&["GET", "pe"]), bulk("still-here"));
            assert_eq!(s.raw().cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
        }
    });
}

#[test]
fn proto_max_bulk_len() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        assert_eq!(
            r.cmds(&["CONFIG", "GET", "proto-max-bulk-len"]),
            Resp::Array(vec![bulk("proto-max-bulk-len"), bulk("536870912")])
        );
        let mut bad = s.raw();
        assert_eq!(
            bad.roundtrip_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n"),
            b"-ERR Protocol error: invalid bulk length\r\n"
        );
        assert!(bad.is_closed_by_peer(Duration::from_secs(5)));

        assert_eq!(
            r.cmds(&["CONFIG", "SET", "proto-max-bulk-len", "1048576"]),
            ok()
        );
        let mut bad = s.raw();
        assert_eq!(
            bad.roundtrip_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n"),
            b"-ERR Protocol error: invalid bulk length\r\n"
        );
        assert!(bad.is_closed_by_peer(Duration::from_secs(5)));
        // Exactly the limit is fine.
        let big = vec![b'x'; 1048576];
        assert_eq!(r.cmd(&[b"SET", b"pmbl", &big]), ok());
        assert_eq!(r.cmds(&["STRLEN", "pmbl"]), Resp::Int(1048576));
        // Values built server-side are capped by the same limit.
        assert_eq!(
            err(&r.cmds(&["SETRANGE", "pmbl", "1048576", "x"])),
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
        assert_eq!(
            err(&r.cmds(&["APPEND", "pmbl", "x"])),
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
    });
}

#[test]
fn unknown_command_error_text() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"foo", b"a", b"b"])),
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(&common::encode(&[b"FOO"])),
            b"-ERR unknown command 'FOO', with args beginning with: \r\n"
        );
        assert_eq!(
            r.roundtrip_bytes(b"foo a b\r\n"),
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
        );
        // The connection stays usable.
        assert_eq!(r.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
        assert_eq!(
            err(&r.cmds(&["CONFIG", "NOPE"])),
            "ERR unknown subcommand 'NOPE'. Try CONFIG HELP."
        );
        assert_eq!(
            err(&r.cmds(&["CLIENT", "NOPE"])),
            "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."
        );
    });
}

// ---------------------------------------------------------------------------
// Server and client administration
// ---------------------------------------------------------------------------

#[test]
fn config_get_set_round_trip() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        let port: Vec<String> = q(&mut c, &["CONFIG", "GET", "port"]);
        assert_eq!(port, ["port".to_string(), s.port.to_string()]);
        let dbs: Vec<String> = q(&mut c, &["CONFIG", "GET", "databases"]);
        assert_eq!(dbs, ["databases", "16"]);
        for (name, set, want) in [
            ("timeout", "123", "123"),
            ("maxmemory", "10mb", "10485760"),
            ("maxmemory-policy", "allkeys-lru", "allkeys-lru"),
            ("proto-max-bulk-len", "2mb", "2097152"),
        ] {
            let _: () = q(&mut c, &["CONFIG", "SET", name, set]);
            let got: Vec<String> = q(&mut c, &["CONFIG", "GET", name]);
            assert_eq!(got, [name, want], "CONFIG GET {name} after SET {set}");
        }
        // Several parameters in one SET (7.0), and glob patterns in GET.
        let _: () = q(&mut c, &["CONFIG", "SET", "timeout", "0", "maxmemory", "0"]);
        let got: HashMap<String, String> = q(&mut c, &["CONFIG", "GET", "maxmemory*"]);
        assert_eq!(got.get("maxmemory").map(|s| s.as_str()), Some("0"));
        assert_eq!(
            got.get("maxmemory-policy").map(|s| s.as_str()),
            Some("allkeys-lru")
        );
        let got: Vec<String> = q(&mut c, &["CONFIG", "GET", "no-such-option"]);
        assert!(got.is_empty());
        let mut r = s.raw();
        assert_eq!(
            err(&r.cmds(&["CONFIG", "SET", "no-such-option", "1"])),
            "ERR Unknown option or number of arguments for CONFIG SET - 'no-such-option'"
        );
        let e = err(&r.cmds(&["CONFIG", "SET", "timeout", "abc"]));
        assert!(
            e.starts_with("ERR CONFIG SET failed (possibly related to argument 'timeout')"),
            "{e}"
        );
        let got: Vec<String> = q(&mut c, &["CONFIG", "GET", "timeout"]);
        assert_eq!(got, ["timeout", "0"], "a failed SET changes nothing");
    });
}

#[test]
fn info_fields() {
    for_shards(SHARDS, |s| {
        let mut c = s.client();
        let _: () = q(&mut c, &["SET", "i:a", "1"]);
        let _: () = q(&mut c, &["SET", "i:b", "1"]);
        let _: () = q(&mut c, &["SET", "i:c", "1", "EX", "1000"]);
        let _: () = q(&mut c, &["SELECT", "2"]);
        let _: () = q(&mut c, &["SET", "i:d", "1"]);
        let info: String = q(&mut c, &["INFO"]);
        assert!(info.contains("\r\n"), "INFO lines end with CRLF");
        assert!(info.contains("# Server\r\n"), "{info}");
        let v = info_field(&info, "redis_version");
        assert!(
            v.starts_with("7."),
            "redis_version {v} (clients gate features on it)"
        );
        let run_id = info_field(&info, "run_id");
        assert_eq!(run_id.len(), 40, "run_id {run_id}");
        assert!(
            run_id.chars().all(|c| c.is_ascii_hexdigit()),
            "run_id {run_id}"
        );
        assert_eq!(info_field(&info, "tcp_port"), s.port.to_string());
        assert!(info.contains("# Keyspace\r\n"), "{info}");
        let db0 = info_field(&info, "db0");
        assert!(db0.starts_with("keys=3,expires=1,avg_ttl="), "db0:{db0}");
        let db2 = info_field(&info, "db2");
        assert!(db2.starts_with("keys=1,expires=0,avg_ttl="), "db2:{db2}");
        assert!(!info.contains("\r\ndb1:"), "empty databases are not listed");
        let ks: String = q(&mut c, &["INFO", "keyspace"]);
        assert!(ks.starts_with("# Keyspace\r\n"), "{ks}");
        assert!(
            !ks.contains("# Server"),
            "INFO keyspace shows only that section"
        );
        // The run id is stable for the life of the process.
        let info2: String = q(&mut c, &["INFO", "server"]);
        assert_eq!(info_field(&info2, "run_id"), run_id);
    });
}

#[test]
fn client_commands() {
    for_shards(SHARDS, |s| {
        let mut a = s.raw();
        let mut b = s.raw();
        let id_a = a
            .cmds(&["CLIENT", "ID"])
            .as_int()
            .expect("CLIENT ID is an integer");
        let id_b = b.cmds(&["CLIENT", "ID"]).as_int().unwrap();
        assert_ne!(id_a, id_b);
        assert_eq!(a.cmds(&["CLIENT", "GETNAME"]), Resp::NilBulk);
        assert_eq!(a.cmds(&["CLIENT", "SETNAME", "alpha"]), ok());
        assert_eq!(a.cmds(&["CLIENT", "GETNAME"]), bulk("alpha"));
        assert_eq!(
            err(&a.cmds(&["CLIENT", "SETNAME", "has space"])),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(b.cmds(&["CLIENT", "SETNAME", "beta"]), ok());
        let list = a.cmds(&["CLIENT", "LIST"]).as_str();
        let line_a = list
            .lines()
            .find(|l| l.starts_with(&format!("id={id_a} ")))
            .unwrap_or_else(|| panic!("CLIENT LIST lacks id={id_a}:\n{list}"));
        assert!(line_a.contains(" name=alpha "), "{line_a}");
        assert!(line_a.contains(" addr=127.0.0.1:"), "{line_a}");
        assert!(line_a.contains(" cmd=client|list"), "{line_a}");
        let line_b = list
            .lines()
            .find(|l| l.starts_with(&format!("id={id_b} ")))
            .unwrap_or_else(|| panic!("CLIENT LIST lacks id={id_b}:\n{list}"));
        assert!(line_b.contains(" name=beta "), "{line_b}");
        let only_b = a
            .cmds(&["CLIENT", "LIST", "ID", &id_b.to_string()])
            .as_str();
        assert_eq!(only_b.lines().count(), 1, "{only_b}");

        // KILL ID closes that connection only.
        assert_eq!(
            a.cmds(&["CLIENT", "KILL", "ID", &id_b.to_string()]),
            Resp::Int(1)
        );
        assert!(
            b.is_closed_by_peer(Duration::from_secs(5)),
            "killed client is disconnected"
        );
        assert_eq!(a.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
        assert_eq!(a.cmds(&["CLIENT", "KILL", "ID", "999999"]), Resp::Int(0));
        // Old form: KILL addr.
        let mut cc = s.raw();
        let id_c = cc.cmds(&["CLIENT", "ID"]).as_int().unwrap();
        let list = a
            .cmds(&["CLIENT", "LIST", "ID", &id_c.to_string()])
            .as_str();
        let addr = list
            .split(' ')
            .find_map(|f| f.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {list}"))
            .to_string();
        assert_eq!(a.cmds(&["CLIENT", "KILL", &addr]), ok());
        assert!(cc.is_closed_by_peer(Duration::from_secs(5)));
        assert_eq!(
            err(&a.cmds(&["CLIENT", "KILL", "127.0.0.1:1"])),
            "ERR No such client"
        );
    });
}

#[test]
fn quit_closes_after_ok() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        assert_eq!(r.cmds(&["SET", "qk", "v"]), ok());
        assert_eq!(r.roundtrip_bytes(&common::encode(&[b"QUIT"])), b"+OK\r\n");
        assert!(r.is_closed_by_peer(Duration::from_secs(5)));
        // Pipelined commands after QUIT are not executed.
        let mut r = s.raw();
        r.send(b"QUIT\r\nSET qk changed\r\n");
        assert_eq!(r.read(), ok());
        assert!(r.is_closed_by_peer(Duration::from_secs(5)));
        assert_eq!(s.raw().cmds(&["GET", "qk"]), bulk("v"));
    });
}

/// A request of many arguments arriving over many reads, with a small
/// request pipelined behind it: the parse goes on where each read left it
/// (a half-parsed request is kept per connection), and the result is the
/// same as for one read. A second connection interleaves its own requests
/// meanwhile, so a kept parse belongs to its connection only.
#[test]
fn big_request_in_pieces() {
    for_shards(SHARDS, |s| {
        let n = 30_000;
        let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in 0..n {
            args.push(format!("{{pc}}k{i}").into_bytes());
            args.push(format!("v{i}").into_bytes());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let mut req = common::encode(&refs);
        req.extend_from_slice(&common::encode(&[b"GET", b"{pc}k29999"]));
        let mut r = s.raw();
        let mut other = s.raw();
        for (i, piece) in req.chunks(1000).enumerate() {
            r.send(piece);
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
                assert_eq!(other.cmds(&["SET", "{pc}other", &i.to_string()]), ok());
            }
        }
        assert_eq!(r.read(), ok());
        assert_eq!(r.read(), bulk("v29999"));
        assert_eq!(r.cmds(&["GET", "{pc}k0"]), bulk("v0"));
        assert_eq!(r.cmds(&["GET", "{pc}k15000"]), bulk("v15000"));
        assert_eq!(
            r.cmds(&["EXISTS", "{pc}k29999", "{pc}k30000"]),
            Resp::Int(1)
        );
    });
}

#[test]
fn server_survives_abrupt_disconnects() {
    let mut s = Server::start(4);
    for _ in 0..50 {
        let mut r = s.raw();
        r.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc"); // half a command
        r.shutdown();
    }
    assert_eq!(s.raw().cmds(&["GET", "k"]), Resp::NilBulk);
    assert!(s.is_alive());
}

#[test]
fn pipelined_replies_keep_order_across_shards() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        // One write holding 3000 commands on keys spread over every shard,
        // mixing single-key, multi-key and keyless commands.
        let mut buf = Vec::new();
        for i in 0..1000 {
            let k = format!("pl:{i}");
            let prev = format!("pl:{}", i.max(1) - 1);
            buf.extend(common::encode(&[
                b"SET",
                k.as_bytes(),
                i.to_string().as_bytes(),
            ]));
            buf.extend(common::encode(&[b"MGET", k.as_bytes(), prev.as_bytes()]));
            buf.extend(common::encode(&[b"PING", i.to_string().as_bytes()]));
        }
        r.send(&buf);
        for i in 0..1000 {
            assert_eq!(r.read(), ok(), "reply #{} (SET pl:{i})", 3 * i);
            let prev = if i == 0 { 0 } else { i - 1 };
            assert_eq!(
                r.read(),
                Resp::Array(vec![bulk(&i.to_string()), bulk(&prev.to_string())]),
                "reply #{} (MGET pl:{i} pl:{prev})",
                3 * i + 1
            );
            assert_eq!(
                r.read(),
                bulk(&i.to_string()),
                "reply #{} (PING {i})",
                3 * i + 2
            );
        }
    });
}

/// The fast path runs GET, SET, MSET, INCRBY ... on arguments that borrow
/// the request buffer, and hands every other request counted copies (see
/// `net::parse_batch`). Whatever the path, what a write stored must be its
/// own: here one pipeline mixes borrowed-path writes with the paths that
/// must copy (MULTI's queue, a cross-shard MSET, a blocking pop, an inline
/// request, CLIENT SETNAME, a list push), then a second pipeline of other
/// bytes reuses the buffers, and every value is read back.
#[test]
fn pipelined_writes_outlive_their_request_buffer() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        let keys = spread_keys("own", 40);
        let val = |i: usize| format!("value-{i}-{}", "v".repeat(i % 7 * 9));
        let mut buf = Vec::new();
        let mut expect = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let v = val(i);
            match i % 8 {
                0 => buf.extend(common::encode(&[b"SET", k.as_bytes(), v.as_bytes()])),
                1 => buf.extend(common::encode(&[
                    b"SETEX",
                    k.as_bytes(),
                    b"1000",
                    v.as_bytes(),
                ])),
                2 => buf.extend(common::encode(&[b"SETNX", k.as_bytes(), v.as_bytes()])),
                3 => {
                    buf.extend(common::encode(&[b"MULTI"]));
                    buf.extend(common::encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
                    buf.extend(common::encode(&[b"EXEC"]));
                }
                4 => buf.extend(format!("SET {k} \"{v}\"\r\n").into_bytes()),
                5 => {
                    // Keys of every shard in one MSET.
                    let other = format!("{k}:pair");
                    buf.extend(common::encode(&[
                        b"MSET",
                        k.as_bytes(),
                        v.as_bytes(),
                        other.as_bytes(),
                        v.as_bytes(),
                    ]));
                    expect.push((other, Some(v.clone())));
                }
                6 => {
                    buf.extend(common::encode(&[b"RPUSH", k.as_bytes(), v.as_bytes()]));
                    buf.extend(common::encode(&[b"BLPOP", k.as_bytes(), b"1"]));
                    buf.extend(common::encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
                }
                _ => {
                    buf.extend(common::encode(&[b"CLIENT", b"SETNAME", v.as_bytes()]));
                    buf.extend(common::encode(&[b"INCRBY", k.as_bytes(), b"12345"]));
                    expect.push((k.clone(), Some("12345".into())));
                    continue;
                }
            }
            expect.push((k.clone(), Some(v)));
        }
        // Collections keep copies too.
        for i in 0..keys.len() {
            let v = val(i);
            buf.extend(common::encode(&[b"RPUSH", b"own:list", v.as_bytes()]));
            buf.extend(common::encode(&[b"SADD", b"own:set", v.as_bytes()]));
            buf.extend(common::encode(&[
                b"HSET",
                b"own:hash",
                v.as_bytes(),
                v.as_bytes(),
            ]));
            // Added, then re-scored: both paths store the member.
            for score in [i, i + 100] {
                let score = score.to_string();
                buf.extend(common::encode(&[
                    b"ZADD",
                    b"own:zset",
                    score.as_bytes(),
                    v.as_bytes(),
                ]));
            }
        }
        buf.extend(common::encode(&[b"PING", b"end"]));
        r.send(&buf);
        while r.read() != bulk("end") {}
        // Other bytes through the same buffers.
        let mut noise = Vec::new();
        for i in 0..2000 {
            let k = format!("noise:{i}");
            noise.extend(common::encode(&[b"SET", k.as_bytes(), &[b'#'; 40]]));
        }
        noise.extend(common::encode(&[b"PING", b"end"]));
        r.send(&noise);
        while r.read() != bulk("end") {}
        for (k, v) in &expect {
            let want = v.as_deref().map_or(Resp::NilBulk, bulk);
            assert_eq!(r.cmds(&["GET", k]), want, "GET {k}");
        }
        let all: Vec<Resp> = (0..keys.len()).map(|i| bulk(&val(i))).collect();
        assert_eq!(r.cmds(&["LRANGE", "own:list", "0", "-1"]), Resp::Array(all));
        for i in 0..keys.len() {
            let v = val(i);
            assert_eq!(r.cmds(&["SISMEMBER", "own:set", &v]), Resp::Int(1), "{v}");
            assert_eq!(r.cmds(&["HGET", "own:hash", &v]), bulk(&v), "HGET {v}");
        }
        assert_eq!(r.cmds(&["SCARD", "own:set"]), Resp::Int(keys.len() as i64));
        let zset: Vec<Resp> = (0..keys.len())
            .flat_map(|i| [bulk(&val(i)), bulk(&(i + 100).to_string())])
            .collect();
        assert_eq!(
            r.cmds(&["ZRANGE", "own:zset", "0", "-1", "WITHSCORES"]),
            Resp::Array(zset)
        );
        assert_eq!(
            r.cmds(&["CLIENT", "GETNAME"]),
            bulk(&val(keys.len() - 1)),
            "CLIENT GETNAME"
        );
        // A queued command runs after its request buffer took new bytes:
        // the next read lands where MULTI and SET were.
        let mut m = s.raw();
        m.send(&common::encode(&[b"MULTI"]));
        assert_eq!(m.read(), ok());
        m.send(&common::encode(&[b"SET", b"queued:key", b"queued-value"]));
        assert_eq!(m.read(), Resp::Simple(b"QUEUED".to_vec()));
        let mut exec = common::encode(&[b"EXEC"]);
        exec.extend(common::encode(&[b"PING", &[b'#'; 64]]));
        m.send(&exec);
        assert_eq!(m.read(), Resp::Array(vec![ok()]));
        assert_eq!(m.read(), Resp::Bulk(vec![b'#'; 64]));
        assert_eq!(m.cmds(&["GET", "queued:key"]), bulk("queued-value"));
    });
}

#[test]
fn large_values_round_trip() {
    for_shards(SHARDS, |s| {
        let mut r = s.raw();
        let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        // Dribble the command in small writes to exercise partial reads.
        let cmd = common::encode(&[b"SET", b"big", &big]);
        for chunk in cmd.chunks(1 << 20) {
            r.send(chunk);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(r.read(), ok());
        assert_eq!(r.cmds(&["STRLEN", "big"]), Resp::Int(big.len() as i64));
        assert!(
            r.cmd(&[b"GET", b"big"]) == Resp::Bulk(big.clone()),
            "GET big returned other bytes"
        );
        assert_eq!(
            r.cmds(&["APPEND", "big", "!"]),
            Resp::Int(big.len() as i64 + 1)
        );
        assert_eq!(
            r.cmds(&["GETRANGE", "big", "-2", "-1"]),
            Resp::Bulk(vec![big[big.len() - 1], b'!'])
        );
    });
}

/// One pipeline of mixed requests (plain, 300-argument MSETs, a 200 KiB
/// value, inline commands, empty lines, multi-key reads across shards),
/// written in seeded random chunks with pauses, so requests end and begin
/// anywhere within a read, and big ones arrive over many reads. The reply
/// stream must equal stock Redis's for the same pipeline, byte for byte.
#[test]
fn pipelines_cut_at_any_byte_answer_as_redis() {
    let mut pipeline = Vec::new();
    for i in 0..40u32 {
        let k = format!("ck:{i}");
        pipeline.extend(common::encode(&[
            b"SET",
            k.as_bytes(),
            i.to_string().as_bytes(),
        ]));
        pipeline.extend(common::encode(&[b"INCR", k.as_bytes()]));
        if i % 7 == 0 {
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for j in 0..150u32 {
                args.push(format!("cm:{i}:{j}").into_bytes());
                args.push(format!("v{j}").into_bytes());
            }
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            pipeline.extend(common::encode(&refs));
            pipeline.extend(format!("MGET cm:{i}:0 cm:{i}:149 ck:{i}\r\n").as_bytes());
        }
        if i % 13 == 5 {
            let big: Vec<u8> = (0..200 * 1024u32).map(|b| b'a' + (b % 26) as u8).collect();
            pipeline.extend(common::encode(&[b"SET", b"cbig", &big]));
            pipeline.extend(common::encode(&[b"STRLEN", b"cbig"]));
        }
        if i % 5 == 0 {
            pipeline.extend(b"\r\nPING\r\n");
        }
        pipeline.extend(common::encode(&[b"GET", k.as_bytes()]));
    }
    pipeline.extend(common::encode(&[b"PING", b"end"]));
    let replies = |s: &Server, seed: u64| -> Vec<u8> {
        let mut r = s.raw();
        r.cmds(&["FLUSHALL"]);
        let mut rng = seed;
        let mut at = 0;
        while at < pipeline.len() {
            // xorshift: chunks of 1 byte to 64 KiB, most of them small.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = match rng % 4 {
                0 => 1 + (rng >> 8) as usize % 8,
                1 => 1 + (rng >> 8) as usize % 512,
                2 => 1 + (rng >> 8) as usize % 8192,
                _ => 1 + (rng >> 8) as usize % 65536,
            };
            let end = (at + len).min(pipeline.len());
            r.send(&pipeline[at..end]);
            at = end;
            if rng.is_multiple_of(16) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let mut out = Vec::new();
        loop {
            let (reply, raw) = r.read_raw();
            out.extend(raw);
            if reply == Resp::Bulk(b"end".to_vec()) {
                return out;
            }
        }
    };
    let redis = Server::stock_redis();
    let want = replies(&redis, 1);
    for_shards(SHARDS, |s| {
        for seed in [0x9e3779b97f4a7c15u64, 12345, 777] {
            let got = replies(s, seed);
            assert!(
                got == want,
                "replies differ from stock Redis (seed {seed}, {} shards): first difference at byte {}",
                s.shards,
                got.iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()))
            );
        }
    });
}

/// CONFIG SET client-query-buffer-limit takes effect at once on every
/// shard: a client whose unprocessed input passes the new limit is closed,
/// one below it is not, and the others go on.
#[test]
fn query_buffer_limit_follows_config_set() {
    for_shards(SHARDS, |s| {
        let mut admin = s.raw();
        assert_eq!(
            admin.cmds(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
            ok()
        );
        // A bulk announced at 3 MB, of which 2 MB arrive: incomplete input
        // past the limit.
        let mut big = s.raw();
        big.send(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$3145728\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..32 {
            // The server may close as soon as it has read past the limit,
            // before the rest is written: a failed write is that close.
            use std::io::Write;
            if big.stream.write_all(&chunk).is_err() {
                break;
            }
        }
        assert!(
            big.is_closed_by_peer(Duration::from_secs(5)),
            "a client with 2 MB of unprocessed input stayed open under a 1 MB limit"
        );
        // Under the limit: 512 KB of an incomplete bulk, then the rest.
        let mut small = s.raw();
        small.send(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$786432\r\n");
        small.send(&vec![b'y'; 512 * 1024]);
        small.send(&vec![b'y'; 256 * 1024]);
        small.send(b"\r\n");
        assert_eq!(small.read(), ok());
        assert_eq!(admin.cmds(&["STRLEN", "q"]), Resp::Int(786432));
        assert_eq!(
            admin.cmds(&["CONFIG", "SET", "client-query-buffer-limit", "1gb"]),
            ok()
        );
    });
}
