//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT.
//!
//! Replies are compared byte for byte with stock `redis-server` over
//! scripted sessions (tether with 1 and 3 shards, RESP2 and RESP3): the
//! value conversions both ways, `redis.call`/`pcall` and their errors,
//! the `redis.*` helpers, the locked globals, shebang flags, the script
//! cache and `math.random`'s sequence. Then what sharding could break:
//! a script's writes to keys on several shards are atomic to readers on
//! every shard, inside MULTI too, and a script's write fails a WATCH.
mod common;

use common::{RawConn, Server, esc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Runs each command on a fresh connection to both servers (after
/// FLUSHALL and SCRIPT FLUSH, RESP3 when asked) and compares raw replies.
fn same_replies(redis: &Server, tether: &Server, resp3: bool, script: &[&[&str]]) {
    let mut r = redis.raw();
    let mut t = tether.raw();
    let reset: &[&[&str]] = &[&["FLUSHALL"], &["SCRIPT", "FLUSH"]];
    let hello: &[&[&str]] = if resp3 { &[&["HELLO", "3"]] } else { &[] };
    for (i, cmd) in reset.iter().chain(hello).chain(script).enumerate() {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        r.send_cmd(&args);
        t.send_cmd(&args);
        let (_, rb) = r.read_raw();
        let (_, tb) = t.read_raw();
        if i < reset.len() + hello.len() {
            continue;
        }
        assert_eq!(
            esc(&tb),
            esc(&rb),
            "{} (resp3 {resp3}) differs from redis on {cmd:?}",
            tether.label()
        );
    }
}

/// Values and errors crossing between Lua and RESP, both ways.
const CONVERSIONS: &[&[&str]] = &[
    &["EVAL", "return 1", "0"],
    &["EVAL", "return 3.99", "0"],
    &["EVAL", "return -3.99", "0"],
    &["EVAL", "return 1/0", "0"],
    &["EVAL", "return 'str'", "0"],
    &["EVAL", "return true", "0"],
    &["EVAL", "return false", "0"],
    &["EVAL", "return nil", "0"],
    &["EVAL", "return {1, 2, {3, 'x', {}}, 'y'}", "0"],
    &["EVAL", "return {1, nil, 3}", "0"],
    &["EVAL", "return {err = 'CUSTOM failure'}", "0"],
    &["EVAL", "return {ok = 'FINE\\r\\nX'}", "0"],
    &["EVAL", "return redis.error_reply('My Error')", "0"],
    &["EVAL", "return redis.error_reply('-CODE detail')", "0"],
    &["EVAL", "return redis.error_reply('plain')", "0"],
    &["EVAL", "return redis.error_reply(7)", "0"],
    &["EVAL", "return redis.status_reply('PONG')", "0"],
    &["EVAL", "return redis.status_reply()", "0"],
    &[
        "EVAL",
        "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}",
        "2",
        "k1",
        "k2",
        "a1",
        "a2",
    ],
    &[
        "EVAL",
        "local r = redis.call('set', KEYS[1], 1.5) return r",
        "1",
        "f",
    ],
    &[
        "EVAL",
        "redis.call('set', 'g', 0.1) redis.call('set', 'h', 1e20) redis.call('set', 'i', 3) return redis.call('mget', 'f', 'g', 'h', 'i')",
        "0",
    ],
    &[
        "EVAL",
        "local r = redis.call('get', 'nokey') return {type(r), tostring(r)}",
        "0",
    ],
    &[
        "EVAL",
        "local r = redis.call('lrange', 'nokey', 0, -1) return {type(r), #r}",
        "0",
    ],
    &[
        "EVAL",
        "redis.call('hset', 'h1', 'f', 'v', 'g', 'w') return redis.call('hgetall', 'h1')",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) redis.call('hset', 'h2', 'f', 'v') return redis.call('hgetall', 'h2')",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) local m = redis.call('hgetall', 'h2') return m.map.f",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) redis.call('zadd', 'z', 1.5, 'm') return redis.call('zscore', 'z', 'm')",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) local d = redis.call('zscore', 'z', 'm') return {type(d), d.double}",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) return redis.call('zscore', 'z', 'nomember')",
        "0",
    ],
    &[
        "EVAL",
        "redis.setresp(3) return redis.call('get', 'nokey')",
        "0",
    ],
    &["EVAL", "redis.setresp(3) return {double = 2.5}", "0"],
    &["EVAL", "redis.setresp(3) return true", "0"],
    &["EVAL", "redis.setresp(3) return false", "0"],
    &["EVAL", "return {map = {a = 1}}", "0"],
    &["EVAL", "return {set = {x = true}}", "0"],
    &[
        "EVAL",
        "local s = redis.call('ping') return {type(s), s.ok}",
        "0",
    ],
    &[
        "EVAL",
        "local e = redis.pcall('incr', 'f') return {type(e), e.err}",
        "0",
    ],
    &["EVAL", "return redis.pcall('incr', 'f')", "0"],
    &[
        "EVAL",
        "local ok, e = pcall(redis.call, 'incr', 'f') return {tostring(ok), e}",
        "0",
    ],
    &["EVAL", "redis.call('incr', 'f') return 1", "0"],
    &[
        "EVAL",
        "local x = redis.call('nosuchcommand') return x",
        "0",
    ],
    &["EVAL", "local x = redis.call('get') return x", "0"],
    &["EVAL", "local x = redis.call() return x", "0"],
    &["EVAL", "local x = redis.call({}) return x", "0"],
    &[
        "EVAL",
        "local x = redis.call('eval', 'return 1', 0) return x",
        "0",
    ],
    &["EVAL", "local x = redis.call('multi') return x", "0"],
    &[
        "EVAL",
        "local x = redis.call('blpop', 'l', 0) return x",
        "0",
    ],
    &[
        "EVAL",
        "local x = redis.call('subscribe', 'c') return x",
        "0",
    ],
    &["EVAL", "return redis.call('select', 7)", "0"],
    &[
        "EVAL",
        "redis.call('select', 7) redis.call('set', 'in7', 1) return redis.call('dbsize')",
        "0",
    ],
    &["DBSIZE"],
    &["SELECT", "7"],
    &["GET", "in7"],
    &[
        "EVAL",
        "return tostring(10/3) .. ' ' .. tostring(1e100) .. ' ' .. tostring(-0.0)",
        "0",
    ],
    &[
        "EVAL",
        "return string.format('%d %5.2f %s %q', 3, 3.14159, 'x', 'a\\nb')",
        "0",
    ],
    &["EVAL", "return {unpack({1, 2, 3})}", "0"],
    &[
        "EVAL",
        "return {bit.band(7, 3), bit.bor(1, 2), bit.bxor(5, 1), bit.tohex(255), bit.lshift(1, 4)}",
        "0",
    ],
    &["EVAL", "return loadstring('return 41 + 1')()", "0"],
    &["EVAL", "return redis.sha1hex('')", "0"],
    &["EVAL", "return redis.REDIS_VERSION_NUM > 0", "0"],
    &[
        "EVAL",
        "return {redis.LOG_WARNING, redis.REPL_ALL, redis.REPL_NONE}",
        "0",
    ],
    &[
        "EVAL",
        "redis.log(redis.LOG_WARNING, 'from a script') return 1",
        "0",
    ],
    &["EVAL", "redis.log(10, 'x') return 1", "0"],
    &["EVAL", "redis.setresp(4) return 1", "0"],
    &["EVAL", "error('boom') return 1", "0"],
    &["EVAL", "error({err = 'MINE custom'}) return 1", "0"],
    &["EVAL", "local t = {} local x = t.a.b return x", "0"],
    &["EVAL", "local x = undefined_global return x", "0"],
    &["EVAL", "newglobal = 1 return 1", "0"],
    &["EVAL", "redis.call = nil return 1", "0"],
    &["EVAL", "string.foo = 1 return 1", "0"],
    &[
        "EVAL",
        "local co = coroutine.wrap(function() return redis.call('ping') end) return co()",
        "0",
    ],
    &[
        "EVAL",
        "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return redis.call('echo', b) end) local _, x = coroutine.resume(co, 1) local _, y = coroutine.resume(co, 'e') return {x, y}",
        "0",
    ],
    &["EVAL", "return 1", "-1"],
    &["EVAL", "return 1", "2", "k"],
    &["EVAL", "return 1", "x"],
    &["EVAL", "return 1 +", "0"],
    &["EVAL", "#!lua\nreturn 1", "0"],
    &[
        "EVAL",
        "#!lua flags=no-writes\nreturn redis.call('get', 'f')",
        "0",
    ],
    &[
        "EVAL",
        "#!lua flags=no-writes\nlocal x = redis.call('set', 'f', 1) return x",
        "0",
    ],
    &["EVAL", "#!lua flags=no-writes,allow-stale\nreturn 2", "0"],
    &["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
    &["EVAL", "#!lua name=x\nreturn 1", "0"],
    &["EVAL", "#!python\nreturn 1", "0"],
    &["EVAL", "#!lua", "0"],
    &["EVAL_RO", "return redis.call('get', 'f')", "0"],
    &[
        "EVAL_RO",
        "local x = redis.call('set', 'f', 1) return x",
        "0",
    ],
    &[
        "EVAL_RO",
        "local x = redis.call('publish', 'c', 'm') return x",
        "0",
    ],
    &["EVAL_RO", "#!lua\nreturn 1", "0"],
    &["EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"],
];

/// The script cache: SCRIPT LOAD / EXISTS / FLUSH and EVALSHA.
const CACHE: &[&[&str]] = &[
    &["SCRIPT", "LOAD", "return 'loaded'"],
    &["EVALSHA", "b53ba2e17ec9e9e1d1d4bef8a0a2d1aa6c44ffd8", "0"],
    &[
        "SCRIPT",
        "EXISTS",
        "b53ba2e17ec9e9e1d1d4bef8a0a2d1aa6c44ffd8",
        "0000000000000000000000000000000000000000",
    ],
    &["EVAL", "return 'evaled'", "0"],
    &[
        "SCRIPT",
        "EXISTS",
        "a3b1e8c4b1b5b4aa0b4b0e46e7e1d1e7a5e4c3b2",
    ],
    &["EVALSHA", "nosuchsha", "0"],
    &[
        "EVALSHA_RO",
        "b53ba2e17ec9e9e1d1d4bef8a0a2d1aa6c44ffd8",
        "0",
    ],
    &["SCRIPT", "LOAD", "return +"],
    &["SCRIPT", "LOAD", "#!lua flags=bogus\nreturn 1"],
    &["SCRIPT", "FLUSH", "BOGUS"],
    &["SCRIPT", "FLUSH", "ASYNC"],
    &["EVALSHA", "b53ba2e17ec9e9e1d1d4bef8a0a2d1aa6c44ffd8", "0"],
    &["SCRIPT", "EXISTS"],
    &["SCRIPT", "KILL"],
    &["SCRIPT", "NOSUCH"],
];

#[test]
fn eval_replies_match_redis() {
    let redis = Server::stock_redis();
    for shards in [1, 3] {
        let tether = Server::start(shards);
        for resp3 in [false, true] {
            same_replies(&redis, &tether, resp3, CONVERSIONS);
            same_replies(&redis, &tether, resp3, CACHE);
        }
    }
}

/// `math.random` follows Redis's lrand48 from the same start, so a fresh
/// server gives a script the numbers a fresh Redis does.
#[test]
fn math_random_matches_a_fresh_redis() {
    let script =
        "return {math.random(1000), math.random(1000), tostring(math.random()), math.random(3, 9)}";
    let redis = Server::stock_redis();
    let tether = Server::start(1);
    let want = redis.raw().cmds(&["EVAL", script, "0"]);
    let got = tether.raw().cmds(&["EVAL", script, "0"]);
    assert_eq!(got, want);
    let seeded = "math.randomseed(42) return {math.random(100), math.random(100)}";
    assert_eq!(
        tether.raw().cmds(&["EVAL", seeded, "0"]),
        redis.raw().cmds(&["EVAL", seeded, "0"])
    );
}

/// Transfers between keys on three shards, by script, while readers on
/// other connections sum them by MGET and by a script: nobody may see a
/// transfer half done. Then the same inside MULTI/EXEC.
#[test]
fn scripts_are_atomic_across_shards() {
    let tether = Server::start(3);
    let keys = common::keys_over_shards("acct", 3, 1);
    let mut c = tether.raw();
    for k in &keys {
        assert!(!c.cmds(&["SET", k, "1000"]).is_error());
    }
    let transfer = "local amount = tonumber(ARGV[1])
        redis.call('decrby', KEYS[1], amount)
        for i = 1, 50 do redis.call('ping') end
        redis.call('incrby', KEYS[2], amount)
        return redis.call('get', KEYS[2])";
    let sum = "local s = 0 for _, k in ipairs(KEYS) do s = s + tonumber(redis.call('get', k)) end return s";
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for by_script in [false, true] {
        let stop = stop.clone();
        let keys = keys.clone();
        let port = tether.port;
        readers.push(thread::spawn(move || {
            let mut r = RawConn::connect(port);
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let total = if by_script {
                    let mut a = vec!["EVAL", sum, "3"];
                    a.extend(keys.iter().map(|k| k.as_str()));
                    r.cmds(&a).as_int().expect("sum")
                } else {
                    let mut a = vec!["MGET"];
                    a.extend(keys.iter().map(|k| k.as_str()));
                    r.cmds(&a)
                        .array()
                        .iter()
                        .map(|v| v.as_str().parse::<i64>().expect("number"))
                        .sum()
                };
                assert_eq!(total, 3000, "a reader saw a transfer half done");
                seen += 1;
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..2 {
        let keys = keys.clone();
        let port = tether.port;
        writers.push(thread::spawn(move || {
            let mut c = RawConn::connect(port);
            for i in 0..300 {
                let (from, to) = (&keys[(i + w) % 3], &keys[(i + w + 1) % 3]);
                let amount = (i % 7 + 1).to_string();
                let r = if i % 5 == 0 {
                    // The same inside a transaction.
                    assert!(!c.cmds(&["MULTI"]).is_error());
                    c.cmds(&["EVAL", transfer, "2", from, to, &amount]);
                    c.cmds(&["EXEC"])
                } else {
                    c.cmds(&["EVAL", transfer, "2", from, to, &amount])
                };
                assert!(!r.is_error(), "transfer: {r:?}");
            }
        }));
    }
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    let mut total = 0;
    for k in &keys {
        total += c.cmds(&["GET", k]).as_str().parse::<i64>().unwrap();
    }
    assert_eq!(total, 3000);
}

/// A script's write is a modification like any other: it fails another
/// client's WATCH of that key, on any shard.
#[test]
fn a_script_write_fails_a_watch() {
    let tether = Server::start(3);
    let keys = common::keys_over_shards("w", 3, 1);
    let mut watcher = tether.raw();
    let mut other = tether.raw();
    for k in &keys {
        assert!(!watcher.cmds(&["WATCH", k]).is_error());
        assert!(!watcher.cmds(&["MULTI"]).is_error());
        assert!(!watcher.cmds(&["SET", k, "from-tx"]).is_error());
        let r = other.cmds(&[
            "EVAL",
            "return redis.call('set', KEYS[1], 'from-script')",
            "1",
            k,
        ]);
        assert!(!r.is_error(), "{r:?}");
        assert_eq!(watcher.cmds(&["EXEC"]), common::Resp::NilArray, "{k}");
        assert_eq!(watcher.cmds(&["GET", k]).as_str(), "from-script");
        // A read-only script does not.
        assert!(!watcher.cmds(&["WATCH", k]).is_error());
        assert!(!watcher.cmds(&["MULTI"]).is_error());
        assert!(!watcher.cmds(&["SET", k, "from-tx"]).is_error());
        other.cmds(&["EVAL", "return redis.call('get', KEYS[1])", "1", k]);
        assert!(!watcher.cmds(&["EXEC"]).is_error());
        assert_eq!(watcher.cmds(&["GET", k]).as_str(), "from-tx");
    }
}

/// INFO counts the cached scripts and the Lua states' memory.
#[test]
fn info_reports_scripts() {
    let tether = Server::start(2);
    let mut c = tether.raw();
    assert!(!c.cmds(&["SCRIPT", "FLUSH"]).is_error());
    for i in 0..3 {
        c.cmds(&["EVAL", &format!("return {i}"), "0"]);
    }
    let info = common::info_section(tether.port, "memory");
    assert_eq!(common::info_int(&info, "number_of_cached_scripts"), 3);
    assert!(common::info_int(&info, "used_memory_lua") > 0);
    assert!(!c.cmds(&["SCRIPT", "FLUSH"]).is_error());
    let info = common::info_section(tether.port, "memory");
    assert_eq!(common::info_int(&info, "number_of_cached_scripts"), 0);
}

/// A busy loop can be stopped by SCRIPT KILL from a connection another
/// shard serves; one that wrote cannot.
#[test]
fn script_kill_stops_a_read_only_loop() {
    let tether = Server::start(2);
    // Find a connection served by each shard: CLIENT ID's high bits say.
    let port = tether.port;
    let mut looper = RawConn::connect(port);
    looper.send_cmd(&[b"EVAL", b"while true do end", b"0"]);
    thread::sleep(Duration::from_millis(300));
    // Try connections until one is served by another shard (the loop's
    // shard cannot answer while the script runs).
    let mut killed = false;
    for _ in 0..20 {
        let mut k = RawConn::connect(port);
        k.set_read_timeout(Duration::from_millis(500));
        k.send_cmd(&[b"SCRIPT", b"KILL"]);
        if let Ok((r, _)) = k.try_read() {
            assert_eq!(r.as_str(), "OK", "{r:?}");
            killed = true;
            break;
        }
    }
    assert!(killed, "no connection reached a free shard");
    looper.set_read_timeout(Duration::from_secs(10));
    let r = looper.read();
    assert!(
        r.is_error() && r.as_str().contains("killed by user"),
        "{r:?}"
    );
    // Not busy any more; the server serves again.
    let mut c = tether.raw();
    let r = c.cmds(&["SCRIPT", "KILL"]);
    assert!(r.as_str().starts_with("NOTBUSY"), "{r:?}");
    assert_eq!(c.cmds(&["PING"]).as_str(), "PONG");
}

/// Scripts whose declared keys share a shard run there alone once their
/// runs have shown they touch nothing else. Such runs stay atomic; one
/// that then reaches for another shard before writing is run again under
/// every lock (same answer as Redis), and one that reaches after writing
/// fails that call, once: the script locks every shard from then on.
#[test]
fn one_shard_scripts_run_alone_and_fall_back() {
    let tether = Server::start(3);
    let mut c = tether.raw();
    // Keys co-located by a hash tag, and one on another shard.
    let (a, b) = ("{acct}a", "{acct}b");
    let far = common::keys_over_shards("far", 3, 1)
        .into_iter()
        .find(|k| common::shard_of(k, 3) != common::shard_of(a, 3))
        .expect("a key on another shard");
    assert!(
        !c.cmds(&["MSET", a, "500", b, "500", &far, "farvalue"])
            .is_error()
    );

    let transfer = "redis.call('decrby', KEYS[1], ARGV[1])
        for i = 1, 20 do redis.call('ping') end
        redis.call('incrby', KEYS[2], ARGV[1])
        return 1";
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let port = tether.port;
        thread::spawn(move || {
            let mut r = RawConn::connect(port);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = r.cmds(&["MGET", a, b]);
                let sum: i64 = v
                    .array()
                    .iter()
                    .map(|x| x.as_str().parse::<i64>().unwrap())
                    .sum();
                assert_eq!(sum, 1000, "a reader saw a transfer half done");
                let v = r.cmds(&[
                    "EVAL",
                    "return redis.call('get', KEYS[1]) + redis.call('get', KEYS[2])",
                    "2",
                    a,
                    b,
                ]);
                assert_eq!(v.as_int(), Some(1000), "{v:?}");
                n += 1;
            }
            n
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let port = tether.port;
            thread::spawn(move || {
                let mut c = RawConn::connect(port);
                for i in 0..400 {
                    let (from, to) = if (i + w) % 2 == 0 { (a, b) } else { (b, a) };
                    let r = c.cmds(&["EVAL", transfer, "2", from, to, "3"]);
                    assert_eq!(r.as_int(), Some(1), "{r:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);

    // Reaching further before writing: answered as Redis answers.
    let reach = "if ARGV[1] == 'far' then return redis.call('get', ARGV[2]) end
        return redis.call('incr', KEYS[1])";
    for i in 1..=3 {
        assert_eq!(
            c.cmds(&["EVAL", reach, "1", "{acct}n", "near", "x"])
                .as_int(),
            Some(i)
        );
    }
    let r = c.cmds(&["EVAL", reach, "1", "{acct}n", "far", &far]);
    assert_eq!(r.as_str(), "farvalue", "{r:?}");
    assert_eq!(
        c.cmds(&["EVAL", reach, "1", "{acct}n", "near", "x"])
            .as_int(),
        Some(4)
    );

    // Reaching further after a write: the run's writes are undone and it
    // runs again under every lock; same answer.
    let late = "redis.call('incr', KEYS[1])
        if ARGV[1] == 'far' then return redis.call('get', ARGV[2]) end
        return redis.call('get', KEYS[1])";
    for _ in 0..3 {
        assert!(
            !c.cmds(&["EVAL", late, "1", "{acct}m", "near", "x"])
                .is_error()
        );
    }
    let r = c.cmds(&["EVAL", late, "1", "{acct}m", "far", &far]);
    assert_eq!(r.as_str(), "farvalue", "{r:?}");
    assert_eq!(c.cmds(&["GET", "{acct}m"]).as_str(), "4");

    // Unless a write was too big to log (a list past 512 elements): then
    // that call fails, once, and the script holds every shard from then
    // on. (Stock Redis, one thread, answers it at once.)
    let big: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    let mut push = vec!["RPUSH", "{acct}list"];
    push.extend(big.iter().map(|s| s.as_str()));
    assert!(!c.cmds(&push).is_error());
    let grow = "redis.call('rpush', KEYS[1], 'x')
        if ARGV[1] == 'far' then return redis.call('get', ARGV[2]) end
        return redis.call('llen', KEYS[1])";
    for _ in 0..3 {
        assert!(
            !c.cmds(&["EVAL", grow, "1", "{acct}list", "near", "x"])
                .is_error()
        );
    }
    if !common::target_is_redis() {
        let r = c.cmds(&["EVAL", grow, "1", "{acct}list", "far", &far]);
        assert!(
            r.is_error() && r.as_str().contains("did not declare"),
            "{r:?}"
        );
    }
    let r = c.cmds(&["EVAL", grow, "1", "{acct}list", "far", &far]);
    assert_eq!(r.as_str(), "farvalue", "{r:?}");
}

/// What one script does to the shared Lua state cannot reach the next:
/// globals cannot be replaced (`redis = ...`, `rawset(_G, ...)`),
/// library tables and `_G`'s metatable are read-only, bytecode does not
/// load (LuaJIT does not verify it), and, as in Debian's Redis 7.0.15,
/// getfenv, setfenv and newproxy do not exist.
#[test]
fn scripts_cannot_change_what_the_next_one_sees() {
    let tether = Server::start(1);
    let mut c = tether.raw();
    for (script, refused) in [
        ("redis = function() return 1 end", true),
        ("pcall = nil", true),
        ("local g = getmetatable(_G) g.__index = {}", true),
        ("string.upper = nil", true),
        ("_G = {}", true),
        ("setmetatable(_G, {})", true),
        ("rawset(_G, 'redis', nil) rawset(_G, 'KEYS', 1)", true),
        ("local f = loadstring('redis = nil') return f and f()", true),
    ] {
        let r = c.cmds(&["EVAL", script, "0"]);
        assert_eq!(r.is_error(), refused, "{script}: {r:?}");
        if refused {
            assert!(r.as_str().contains("readonly table"), "{script}: {r:?}");
        }
        // The next script still sees the real thing.
        let r = c.cmds(&[
            "EVAL",
            "return {type(redis.call), string.upper('a'), #KEYS, tostring(pcall(error))}",
            "1",
            "k",
        ]);
        let got: Vec<String> = r
            .array()
            .iter()
            .map(|v| match v {
                common::Resp::Int(i) => i.to_string(),
                other => other.as_str(),
            })
            .collect();
        assert_eq!(got, vec!["function", "A", "1", "false"], "after {script}");
    }
    let r = c.cmds(&[
        "EVAL",
        "return loadstring(string.dump(function() return 1 end))()",
        "0",
    ]);
    assert!(
        r.is_error() && r.as_str().contains("attempt to call a nil value"),
        "{r:?}"
    );
}

/// Pipelined scripts run in request order among the commands around
/// them: once a script is known to stay on its declared keys, a call whose
/// keys are on the connection's shard runs in line with its neighbours
/// (no barrier). That includes a run that writes, then reaches another
/// shard, and is undone and rerun under every lock. The whole pipeline's
/// replies match Redis byte for byte, and a stock replica of tether ends
/// with the master's data, so the stream kept the order too.
#[test]
fn pipelined_scripts_keep_request_order() {
    let redis = Server::stock_redis();
    let incr = "redis.call('incr', KEYS[1]) return redis.call('get', KEYS[1])";
    let set_or_reach = "redis.call('set', KEYS[1], ARGV[1])
        if ARGV[2] == 'far' then return redis.call('get', ARGV[3]) end
        return redis.call('get', KEYS[1])";
    let read = "return redis.call('get', KEYS[1])";
    for shards in [1, 3] {
        let tether = Server::spawn(
            common::Kind::Tether,
            shards,
            &["--repl-diskless-sync-delay", "0"],
        );
        let replica = common::StockReplica::start(tether.port, &[]);
        let far = common::keys_over_shards("far", shards, 1)
            .into_iter()
            .find(|k| {
                shards == 1 || common::shard_of(k, shards) != common::shard_of("{p}a", shards)
            })
            .expect("a key on another shard");
        // A connection lands on a shard at random; with 3 shards, rounds
        // on fresh connections make one on the keys' shard (the in-line
        // path) all but certain (1 - (2/3)^8).
        for _round in 0..if shards == 1 { 1 } else { 8 } {
            let mut shas = Vec::new();
            let mut sessions = Vec::new();
            for server in [&redis, &tether] {
                let mut c = server.raw();
                assert!(!c.cmds(&["FLUSHALL"]).is_error());
                assert!(!c.cmds(&["SCRIPT", "FLUSH"]).is_error());
                assert!(!c.cmds(&["SET", &far, "farvalue"]).is_error());
                shas = [incr, set_or_reach, read]
                    .iter()
                    .map(|s| c.cmds(&["SCRIPT", "LOAD", s]).as_str())
                    .collect();
                // A first run each: tether learns they stay on their keys.
                assert!(!c.cmds(&["EVALSHA", &shas[0], "1", "{p}a"]).is_error());
                let r = c.cmds(&["EVALSHA", &shas[1], "1", "{p}b", "v", "near", "x"]);
                assert!(!r.is_error());
                assert!(!c.cmds(&["EVAL_RO", read, "1", "{p}a"]).is_error());
                sessions.push(c);
            }
            let (s_incr, s_set, s_read) = (&shas[0], &shas[1], &shas[2]);
            let unknown = "0".repeat(40);
            let pipeline: Vec<Vec<&str>> = vec![
                vec!["SET", "{p}a", "10"],
                vec!["EVALSHA", s_incr, "1", "{p}a"],
                vec!["INCR", "{p}a"],
                vec!["EVALSHA", s_incr, "1", "{p}a"],
                vec!["GET", "{p}a"],
                vec!["EVAL", incr, "1", "{p}a"],
                vec!["EVALSHA", s_set, "1", "{p}b", "one", "near", "x"],
                vec!["APPEND", "{p}b", "X"],
                vec!["EVALSHA", s_set, "1", "{p}b", "two", "far", &far],
                vec!["GET", "{p}b"],
                vec!["EVALSHA", s_set, "1", "{p}b", "three", "near", "x"],
                vec!["EVALSHA_RO", s_read, "1", "{p}a"],
                vec!["EVALSHA_RO", s_incr, "1", "{p}a"],
                vec!["EVALSHA", s_incr, "x", "{p}a"],
                vec!["EVALSHA", s_incr, "5", "{p}a"],
                vec!["EVALSHA", &unknown, "1", "{p}a"],
                vec!["MULTI"],
                vec!["EVALSHA", s_incr, "1", "{p}a"],
                vec!["SET", "{p}c", "in-multi"],
                vec!["EXEC"],
                vec!["EVALSHA", s_incr, "1", "{p}a"],
                vec!["MGET", "{p}a", "{p}b", "{p}c"],
            ];
            let bytes: Vec<u8> = pipeline
                .iter()
                .flat_map(|cmd| {
                    let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
                    common::encode(&args)
                })
                .collect();
            let mut replies = Vec::new();
            for c in sessions.iter_mut() {
                c.send(&bytes);
                replies.push(
                    pipeline
                        .iter()
                        .map(|_| esc(&c.read_raw().1))
                        .collect::<Vec<_>>(),
                );
            }
            for (i, cmd) in pipeline.iter().enumerate() {
                assert_eq!(
                    replies[1][i],
                    replies[0][i],
                    "{} differs from redis on {cmd:?}",
                    tether.label()
                );
            }
        }
        common::wait_for(
            "the replica to hold the master's data",
            Duration::from_secs(20),
            || {
                let diffs = common::dataset_diffs(tether.port, replica.port, &[0]);
                if diffs.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{diffs:?}"))
                }
            },
        );
    }
}
