//! The RDB codec against stock Redis 7.0 (`redis-server`, `redis-check-rdb`).
//!
//! - Redis writes, tether reads: a keyspace with every type in both its
//!   compact encoding (listpack, intset, integer strings) and its big one
//!   (hashtable, skiplist, multi-node quicklist with LZF-compressed and plain
//!   nodes), TTLs and several databases is SAVEd by Redis and loaded with
//!   `tether::rdb::load_file`; every key's DUMP is decoded with
//!   `restore_payload`.
//! - Legacy encodings (zipmap, ziplist, quicklist v1, text-score zsets)
//!   cannot be produced by Redis 7.0, so fixtures built with tether's
//!   encoders are RESTOREd into Redis with deep payload sanitisation: Redis
//!   and tether must decode them to the same thing.
//! - tether writes, Redis reads: a snapshot from `write_snapshot` passes
//!   `redis-check-rdb` and is loaded by `redis-server` at start-up; every
//!   key, value and TTL is read back. `dump_payload` output is RESTOREd.
//!
//! Needs `redis-server` and `redis-check-rdb` (Debian: `redis-server`,
//! `redis-tools`); the test fails loudly without them rather than skip.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use tether::rdb::{
    self, Crc64, Event, LoadedKey, Loader, WriteOptions, dump_payload, intset, listpack, load_file,
    restore_payload, write_snapshot, ziplist,
};
use tether::shard::keyspace::{Entry, HashValue, SetValue, Str, Value, ZSet};

// ---------------------------------------------------------------------------
// Stock Redis process guard
// ---------------------------------------------------------------------------

/// Absolute path of a stock Redis binary, or a panic that says how to get it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/bin".into(), "/usr/local/bin".into()]);
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found: this test needs stock Redis 7.0 tools \
         (`apt-get install -y redis-server redis-tools`). It never skips."
    );
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d =
            std::env::temp_dir().join(format!("tether-rdb-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running `redis-server`, killed on drop (its log is printed if the test
/// is failing).
struct Redis {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Redis {
    /// Starts Redis with its working dir `dir` and extra `--name value` args.
    fn start(dir: &Path, extra: &[&str]) -> Redis {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("redis-{attempt}.log"));
            let logf = fs::File::create(&log).unwrap();
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().unwrap(),
                "--enable-debug-command",
                "yes",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            let child = Command::new(tool("redis-server"))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf)
                .spawn()
                .expect("spawn redis-server");
            let mut r = Redis { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = r.child.try_wait().unwrap() {
                    last = format!("redis-server exited ({status}):\n{}", r.logs());
                    break;
                }
                if r.answers_ping() {
                    return r;
                }
                if Instant::now() > deadline {
                    panic!("redis-server did not answer PING in 30 s:\n{}", r.logs());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last.contains("in use") {
                panic!("{last}");
            }
        }
        panic!("redis-server could not get a port: {last}");
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn con(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        let con = c
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect to redis-server");
        con.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        con
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let l = self.logs();
            eprintln!(
                "--- redis-server log ---\n{}",
                &l[l.len().saturating_sub(4000)..]
            );
        }
    }
}

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, c: &redis::Cmd) -> T {
    c.query(con).unwrap_or_else(|e| {
        panic!(
            "{:?} failed: {e}",
            String::from_utf8_lossy(&c.get_packed_command())
        )
    })
}

fn cmd(name: &str) -> redis::Cmd {
    redis::cmd(name)
}

// ---------------------------------------------------------------------------
// The model keyspace
// ---------------------------------------------------------------------------

/// (db, key) -> entry, ordered for readable diffs.
type Model = BTreeMap<(u64, Vec<u8>), Entry>;

fn bs(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

fn list<I: IntoIterator<Item = Bytes>>(items: I) -> Value {
    Value::List(Box::new(items.into_iter().collect::<VecDeque<_>>()))
}

fn set<I: IntoIterator<Item = Bytes>>(items: I) -> Value {
    let mut s = SetValue::default();
    s.extend(items.into_iter().map(Str::from));
    Value::Set(Box::new(s))
}

fn hash<I: IntoIterator<Item = (Bytes, Bytes)>>(pairs: I) -> Value {
    let mut h = HashValue::default();
    h.extend(pairs.into_iter().map(|(f, v)| (Str::from(f), Str::from(v))));
    Value::Hash(Box::new(h))
}

fn zset<I: IntoIterator<Item = (Bytes, f64)>>(pairs: I) -> Value {
    let mut z = ZSet::default();
    for (m, s) in pairs {
        z.insert(m, s);
    }
    Value::ZSet(Box::new(z))
}

/// Far enough ahead that no key expires while the test runs.
const TTL_BASE: u64 = 4_102_444_800_000; // 2100-01-01

/// Every type in small and big encodings, TTLs, three databases.
fn model() -> Model {
    let mut rng = fastrand::Rng::with_seed(2024);
    let mut m = Model::new();
    let mut put = |db: u64, key: &str, value: Value, ttl: bool| {
        let expire_at = if ttl {
            TTL_BASE + m.len() as u64 * 1001
        } else {
            0
        };
        m.insert((db, key.as_bytes().to_vec()), Entry { value, expire_at });
    };
    let binary: Vec<u8> = (0..3000).map(|_| rng.u8(..)).collect();
    let text: String = (0..100_000).map(|_| rng.alphanumeric()).collect();

    put(0, "s:empty", Value::Str(Str::from(bs(""))), false);
    put(0, "s:small", Value::Str(Str::from(bs("hello"))), false);
    put(0, "s:int", Value::Str(Str::from(bs("12345"))), true);
    put(0, "s:neg", Value::Str(Str::from(bs("-7"))), false);
    put(
        0,
        "s:i64",
        Value::Str(Str::from(bs("9223372036854775807"))),
        false,
    );
    put(0, "s:float", Value::Str(Str::from(bs("3.14"))), false);
    put(0, "s:zeros", Value::Str(Str::from(bs("007"))), false);
    put(0, "s:lzf", Value::Str(Str::from(bs([b'a'; 1000]))), true);
    put(0, "s:binary", Value::Str(Str::from(bs(&binary))), false);
    put(0, "s:big", Value::Str(Str::from(bs(&text))), false);
    put(
        0,
        &"k".repeat(300),
        Value::Str(Str::from(bs("long key"))),
        false,
    );

    put(
        0,
        "l:small",
        list([bs("a"), bs("1"), bs("-2"), bs("")]),
        true,
    );
    put(
        0,
        "l:big",
        list((0..1000).map(|i| {
            if i % 4 == 0 {
                bs(i.to_string())
            } else {
                bs(format!("{i:05}-{}", "v".repeat(95)))
            }
        })),
        false,
    );
    put(
        0,
        "l:plain",
        list([
            bs("head"),
            bs("P".repeat(20_000)),
            bs("mid"),
            bs("Q".repeat(5000)),
            bs("tail"),
        ]),
        false,
    );
    put(
        0,
        "l:compressible",
        list((0..300).map(|_| bs("c".repeat(200)))),
        false,
    );

    put(
        0,
        "set:int",
        set(["1", "2", "3", "-5", "100000", "1099511627776"].map(bs)),
        false,
    );
    put(
        0,
        "set:bigint",
        set((0..600).map(|i| bs((i * 7919).to_string()))),
        true,
    );
    put(0, "set:str", set(["a", "b", "c"].map(bs)), false);
    put(
        0,
        "set:big",
        set((0..300).map(|i| bs(format!("member:{i}")))),
        false,
    );

    put(
        0,
        "h:small",
        hash([
            (bs("name"), bs("tether")),
            (bs("n"), bs("42")),
            (bs("e"), bs("")),
        ]),
        true,
    );
    put(
        0,
        "h:bigval",
        hash([(bs("f"), bs("x".repeat(100))), (bs("g"), bs("1"))]),
        false,
    );
    put(
        0,
        "h:many",
        hash((0..200).map(|i| (bs(format!("field{i}")), bs(format!("value{i}"))))),
        false,
    );

    put(
        0,
        "z:small",
        zset([
            (bs("a"), 1.5),
            (bs("b"), f64::INFINITY),
            (bs("c"), f64::NEG_INFINITY),
            (bs("d"), 0.0),
            (bs("e"), 1e300),
            (bs("f"), 0.1),
            (bs("g"), 12345678901.0),
            (bs("h"), -3.0),
        ]),
        false,
    );
    put(
        0,
        "z:big",
        zset((0..200).map(|i| (bs(format!("zm{i}")), rng.f64() * 1e6 - 5e5))),
        true,
    );
    put(
        0,
        "z:longmember",
        zset([(bs("m".repeat(100)), 2.0), (bs("x"), 1.0)]),
        false,
    );

    put(1, "db1:str", Value::Str(Str::from(bs("one"))), true);
    put(1, "db1:list", list([bs("x"), bs("y")]), false);
    put(9, "db9:hash", hash([(bs("k"), bs("v"))]), false);
    put(9, "db9:set", set(["only"].map(bs)), true);
    m
}

fn fmt_score(s: f64) -> String {
    if s == f64::INFINITY {
        "+inf".into()
    } else if s == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{s}")
    }
}

/// Writes the model into Redis with ordinary commands.
fn populate(con: &mut redis::Connection, m: &Model) {
    for ((db, key), e) in m {
        let _: () = q(con, cmd("SELECT").arg(*db));
        let k = &key[..];
        match &e.value {
            Value::Str(s) => {
                let _: () = q(con, cmd("SET").arg(k).arg(&s[..]));
            }
            Value::List(l) => {
                for chunk in l.iter().collect::<Vec<_>>().chunks(100) {
                    let mut c = cmd("RPUSH");
                    c.arg(k);
                    for x in chunk {
                        c.arg(&x[..]);
                    }
                    let _: i64 = q(con, &c);
                }
            }
            Value::Set(s) => {
                let mut c = cmd("SADD");
                c.arg(k);
                for x in s.iter() {
                    c.arg(&x[..]);
                }
                let _: i64 = q(con, &c);
            }
            Value::Hash(h) => {
                let mut c = cmd("HSET");
                c.arg(k);
                for (f, v) in h.iter() {
                    c.arg(&f[..]).arg(&v[..]);
                }
                let _: i64 = q(con, &c);
            }
            Value::ZSet(z) => {
                let mut c = cmd("ZADD");
                c.arg(k);
                for (mem, s) in z.iter() {
                    c.arg(fmt_score(s)).arg(&mem[..]);
                }
                let _: i64 = q(con, &c);
            }
        }
        if e.expire_at != 0 {
            let _: i64 = q(con, cmd("PEXPIREAT").arg(k).arg(e.expire_at));
        }
    }
    let _: () = q(con, cmd("SELECT").arg(0));
}

/// Reads one key back from Redis into the value model.
fn fetch(con: &mut redis::Connection, key: &[u8]) -> Entry {
    let ty: String = q(con, cmd("TYPE").arg(key));
    let value = match ty.as_str() {
        "string" => Value::Str(Str::from(bs(q::<Vec<u8>>(con, cmd("GET").arg(key))))),
        "list" => list(
            q::<Vec<Vec<u8>>>(con, cmd("LRANGE").arg(key).arg(0).arg(-1))
                .into_iter()
                .map(Bytes::from),
        ),
        "set" => set(q::<Vec<Vec<u8>>>(con, cmd("SMEMBERS").arg(key))
            .into_iter()
            .map(Bytes::from)),
        "hash" => {
            let flat: Vec<Vec<u8>> = q(con, cmd("HGETALL").arg(key));
            hash(flat.chunks(2).map(|p| (bs(&p[0]), bs(&p[1]))))
        }
        "zset" => {
            let flat: Vec<Vec<u8>> =
                q(con, cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"));
            zset(flat.chunks(2).map(|p| {
                let s: f64 = std::str::from_utf8(&p[1]).unwrap().parse().unwrap();
                (bs(&p[0]), s)
            }))
        }
        other => panic!("key {:?} has type {other}", String::from_utf8_lossy(key)),
    };
    let pexp: i64 = q(con, cmd("PEXPIRETIME").arg(key));
    Entry {
        value,
        expire_at: if pexp < 0 { 0 } else { pexp as u64 },
    }
}

/// Every key of databases 0..16 as Redis sees it.
fn fetch_all(con: &mut redis::Connection) -> Model {
    let mut m = Model::new();
    for db in 0..16u64 {
        let _: () = q(con, cmd("SELECT").arg(db));
        let keys: Vec<Vec<u8>> = q(con, cmd("KEYS").arg("*"));
        for k in keys {
            let e = fetch(con, &k);
            m.insert((db, k), e);
        }
    }
    let _: () = q(con, cmd("SELECT").arg(0));
    m
}

fn to_model(keys: Vec<LoadedKey>) -> Model {
    let mut m = Model::new();
    for k in keys {
        let prev = m.insert((k.db, k.key.to_vec()), k.entry);
        assert!(prev.is_none(), "duplicate key {:?} in db {}", k.key, k.db);
    }
    m
}

/// Compares two models key by key, naming the first difference.
fn assert_same(got: &Model, want: &Model, what: &str) {
    for (k, w) in want {
        let name = format!("db {} key {:?}", k.0, String::from_utf8_lossy(&k.1));
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: {name} missing"));
        assert_eq!(g.expire_at, w.expire_at, "{what}: {name} TTL");
        assert!(
            g.value == w.value,
            "{what}: {name} value differs:\n got {:?}\nwant {:?}",
            g.value,
            w.value
        );
    }
    for k in got.keys() {
        assert!(
            want.contains_key(k),
            "{what}: unexpected db {} key {:?}",
            k.0,
            String::from_utf8_lossy(&k.1)
        );
    }
}

// ---------------------------------------------------------------------------
// Redis writes, tether reads
// ---------------------------------------------------------------------------

#[test]
fn stock_redis_snapshot_and_dumps_decode() {
    let dir = TempDir::new("from-redis");
    // Explicit thresholds (distributions change the defaults) so that the
    // model's small and big values get the compact and the big encodings.
    let redis = Redis::start(
        dir.path(),
        &[
            "--hash-max-listpack-entries",
            "128",
            "--hash-max-listpack-value",
            "64",
            "--zset-max-listpack-entries",
            "128",
            "--zset-max-listpack-value",
            "64",
            "--set-max-intset-entries",
            "512",
            "--list-max-listpack-size",
            "-2",
        ],
    );
    let mut con = redis.con();
    // Plain quicklist nodes for elements of 1000+ bytes, and LZF-compressed
    // interior quicklist nodes.
    let _: () = q(
        &mut con,
        cmd("DEBUG").arg("QUICKLIST-PACKED-THRESHOLD").arg(1000),
    );
    let _: () = q(
        &mut con,
        cmd("CONFIG").arg("SET").arg("list-compress-depth").arg(1),
    );
    let want = model();
    populate(&mut con, &want);

    // The test covers what it means to cover.
    for (key, enc) in [
        ("set:int", "intset"),
        ("set:bigint", "hashtable"),
        ("set:big", "hashtable"),
        ("h:small", "listpack"),
        ("h:bigval", "hashtable"),
        ("h:many", "hashtable"),
        ("z:small", "listpack"),
        ("z:big", "skiplist"),
        ("z:longmember", "skiplist"),
        ("l:big", "quicklist"),
        ("s:int", "int"),
        ("s:big", "raw"),
    ] {
        let got: String = q(&mut con, cmd("OBJECT").arg("ENCODING").arg(key));
        assert_eq!(got, enc, "encoding of {key}");
    }
    assert_same(&fetch_all(&mut con), &want, "redis after populate");

    let _: () = q(&mut con, &cmd("SAVE"));
    let file = fs::read(dir.path().join("dump.rdb")).expect("read dump.rdb");
    let loaded = load_file(&file).unwrap_or_else(|e| panic!("loading Redis's dump.rdb: {e}"));
    assert_same(&to_model(loaded), &want, "load_file(dump.rdb)");

    // The streaming loader in 1000-byte chunks sees the same keys.
    let mut loader = Loader::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut db = 0;
    let mut streamed = Model::new();
    let mut aux = BTreeMap::new();
    loop {
        match loader.next(&buf).unwrap() {
            Some((ev, n)) => {
                buf.drain(..n);
                match ev {
                    Event::SelectDb(d) => db = d,
                    Event::Aux(k, v) => {
                        aux.insert(k, v);
                    }
                    Event::Entry {
                        key,
                        value,
                        expire_at,
                    } => {
                        streamed.insert((db, key.to_vec()), Entry { value, expire_at });
                    }
                    Event::End { checksum_ok } => {
                        assert!(checksum_ok);
                        break;
                    }
                    _ => {}
                }
            }
            None => {
                assert!(fed < file.len(), "loader wants more than the file has");
                let stop = (fed + 1000).min(file.len());
                buf.extend_from_slice(&file[fed..stop]);
                fed = stop;
            }
        }
    }
    assert_same(&streamed, &want, "streamed dump.rdb");
    assert_eq!(
        aux.get(&bs("redis-ver")),
        Some(&bs("7.0.15")),
        "aux {aux:?}"
    );

    // DUMP every key and decode the payload. The payload's type byte is the
    // one SAVE wrote, which shows the test met every 7.0 encoding.
    let mut types_seen = std::collections::BTreeSet::new();
    for ((db, key), w) in &want {
        let _: () = q(&mut con, cmd("SELECT").arg(*db));
        let payload: Vec<u8> = q(&mut con, cmd("DUMP").arg(&key[..]));
        types_seen.insert(payload[0]);
        let v = restore_payload(&payload).unwrap_or_else(|e| {
            panic!(
                "restore_payload(DUMP {:?}): {e}",
                String::from_utf8_lossy(key)
            )
        });
        assert!(
            v == w.value,
            "DUMP {:?} decoded to {v:?}",
            String::from_utf8_lossy(key)
        );
    }
    use rdb::rdb_type as t;
    let all_70 = [
        t::STRING,
        t::LIST_QUICKLIST_2,
        t::SET,
        t::SET_INTSET,
        t::HASH,
        t::HASH_LISTPACK,
        t::ZSET_2,
        t::ZSET_LISTPACK,
    ];
    assert_eq!(
        types_seen,
        all_70.into_iter().collect(),
        "RDB types Redis wrote"
    );
}

/// Payload with a version-10 footer around a body (type byte + value).
fn payload(body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.put_u16_le(10);
    let crc = Crc64::checksum(&p);
    p.put_u64_le(crc);
    p
}

fn rdb_str(out: &mut Vec<u8>, s: &[u8]) {
    rdb::write::write_string(out, s, WriteOptions::default());
}

/// DUMP payloads in every encoding Redis 7.0 reads but no longer writes
/// (plus its current compact ones), with the value each stands for.
fn legacy_payloads() -> Vec<(&'static str, Vec<u8>, Value)> {
    use rdb::rdb_type as t;
    use rdb::write::write_len;
    let mut out = Vec::new();
    let long = "L".repeat(300);

    let mut p = vec![t::HASH_ZIPMAP];
    rdb_str(
        &mut p,
        &ziplist::encode_zipmap([(&b"f1"[..], &b"v1"[..]), (b"f2", long.as_bytes())]),
    );
    out.push((
        "zipmap",
        p,
        hash([(bs("f1"), bs("v1")), (bs("f2"), bs(&long))]),
    ));

    let items = ["1", "-300", "70000", "5000000000", "hello", &long];
    let mut p = vec![t::LIST_ZIPLIST];
    rdb_str(&mut p, &ziplist::encode(items.iter().map(|s| s.as_bytes())));
    out.push(("ziplist-list", p, list(items.map(bs))));

    let mut p = vec![t::ZSET_ZIPLIST];
    rdb_str(
        &mut p,
        &ziplist::encode(["m1", "1", "m2", "2.5", "m3", "-inf"].map(str::as_bytes)),
    );
    out.push((
        "ziplist-zset",
        p,
        zset([
            (bs("m1"), 1.0),
            (bs("m2"), 2.5),
            (bs("m3"), f64::NEG_INFINITY),
        ]),
    ));

    let mut p = vec![t::HASH_ZIPLIST];
    rdb_str(
        &mut p,
        &ziplist::encode(["k", "v", "n", "12", "big", &long].map(str::as_bytes)),
    );
    out.push((
        "ziplist-hash",
        p,
        hash([
            (bs("k"), bs("v")),
            (bs("n"), bs("12")),
            (bs("big"), bs(&long)),
        ]),
    ));

    let mut p = vec![t::LIST_QUICKLIST];
    write_len(&mut p, 2);
    rdb_str(&mut p, &ziplist::encode(["a", "b"].map(str::as_bytes)));
    rdb_str(&mut p, &ziplist::encode(["3", &long].map(str::as_bytes)));
    out.push(("quicklist", p, list(["a", "b", "3", &long].map(bs))));

    // Type 3: scores as `<u8 len> <text>`, or 254 alone for +inf.
    let mut p = vec![t::ZSET];
    write_len(&mut p, 4);
    for (m, s) in [("a", "1.5"), ("b", "-2"), ("c", "1e+300")] {
        rdb_str(&mut p, m.as_bytes());
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    rdb_str(&mut p, b"d");
    p.push(254);
    out.push((
        "zset-text-scores",
        p,
        zset([
            (bs("a"), 1.5),
            (bs("b"), -2.0),
            (bs("c"), 1e300),
            (bs("d"), f64::INFINITY),
        ]),
    ));

    let mut p = vec![t::SET_INTSET];
    rdb_str(&mut p, &intset::encode(&[5, -70000, 1 << 40]));
    out.push(("intset", p, set(["5", "-70000", "1099511627776"].map(bs))));

    let mut p = vec![t::HASH_LISTPACK];
    rdb_str(
        &mut p,
        &listpack::encode(["f", "1", "g", "two", "h", &long].map(str::as_bytes)),
    );
    out.push((
        "lp-hash",
        p,
        hash([
            (bs("f"), bs("1")),
            (bs("g"), bs("two")),
            (bs("h"), bs(&long)),
        ]),
    ));

    let mut p = vec![t::ZSET_LISTPACK];
    rdb_str(
        &mut p,
        &listpack::encode(["x", "-3", "y", "inf", "z", "0.25"].map(str::as_bytes)),
    );
    out.push((
        "lp-zset",
        p,
        zset([(bs("x"), -3.0), (bs("y"), f64::INFINITY), (bs("z"), 0.25)]),
    ));

    let mut p = vec![t::LIST_QUICKLIST_2];
    write_len(&mut p, 2);
    write_len(&mut p, 1); // plain node
    rdb::write::write_string(&mut p, long.as_bytes(), WriteOptions { compress: false });
    write_len(&mut p, 2); // packed node, LZF-compressed by write_string
    let rep = "r".repeat(40);
    rdb_str(
        &mut p,
        &listpack::encode(["7", "eight", &rep, &rep].map(str::as_bytes)),
    );
    out.push((
        "quicklist2",
        p,
        list([long.as_str(), "7", "eight", &rep, &rep].map(bs)),
    ));
    out
}

#[test]
fn legacy_encodings_decode_like_redis() {
    let dir = TempDir::new("legacy");
    let redis = Redis::start(dir.path(), &["--sanitize-dump-payload", "yes"]);
    let mut con = redis.con();
    for (name, body, want) in legacy_payloads() {
        let p = payload(&body);
        let ours = restore_payload(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ours == want, "{name}: tether decoded {ours:?}");
        let key = format!("legacy:{name}");
        let r: redis::RedisResult<()> = cmd("RESTORE").arg(&key).arg(0).arg(&p).query(&mut con);
        r.unwrap_or_else(|e| panic!("{name}: Redis rejected the fixture: {e}"));
        let theirs = fetch(&mut con, key.as_bytes());
        assert!(
            theirs.value == want,
            "{name}: Redis decoded {:?}",
            theirs.value
        );
    }
    // Redis and tether reject the same corrupt fixture.
    let mut bad = vec![rdb::rdb_type::HASH_ZIPLIST];
    let mut zl = ziplist::encode(["k", "v"].map(str::as_bytes));
    zl[4] = 0; // tail offset
    rdb::write::write_string(&mut bad, &zl, WriteOptions { compress: false });
    let p = payload(&bad);
    assert!(restore_payload(&p).is_err());
    let r: redis::RedisResult<()> = cmd("RESTORE").arg("bad").arg(0).arg(&p).query(&mut con);
    assert!(r.is_err(), "Redis accepted a corrupt ziplist");
}

// ---------------------------------------------------------------------------
// tether writes, Redis reads
// ---------------------------------------------------------------------------

#[test]
fn stock_redis_loads_our_snapshot_and_payloads() {
    let dir = TempDir::new("to-redis");
    let want = model();
    let mut by_db: BTreeMap<u64, Vec<(Bytes, Entry)>> = BTreeMap::new();
    for ((db, key), e) in &want {
        by_db.entry(*db).or_default().push((bs(key), e.clone()));
    }
    let repl = rdb::ReplInfo {
        stream_db: 0,
        repl_id: "0123456789abcdef0123456789abcdef01234567".into(),
        offset: 0,
    };
    let aux = rdb::default_aux(1_700_000_000, 1 << 20, Some(&repl));
    let file = write_snapshot(by_db.iter().map(|(db, v)| (*db, &v[..])), &aux);
    let path = dir.path().join("ours.rdb");
    fs::write(&path, &file).unwrap();

    // redis-check-rdb accepts it.
    let out = Command::new(tool("redis-check-rdb"))
        .arg(&path)
        .output()
        .expect("run redis-check-rdb");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-check-rdb failed ({}):\n{text}",
        out.status
    );
    assert!(text.contains("RDB looks OK"), "{text}");

    // Our own loader agrees with our writer.
    assert_same(
        &to_model(load_file(&file).unwrap()),
        &want,
        "load_file(ours.rdb)",
    );

    // redis-server loads it at start-up.
    let redis = Redis::start(dir.path(), &["--dbfilename", "ours.rdb"]);
    assert!(
        redis.logs().contains("DB loaded from disk"),
        "{}",
        redis.logs()
    );
    let mut con = redis.con();
    assert_same(&fetch_all(&mut con), &want, "redis-server loading ours.rdb");

    // RESTORE our DUMP payloads (into a db of their own).
    let _: () = q(&mut con, cmd("SELECT").arg(15));
    for ((db, key), w) in &want {
        let p = dump_payload(&w.value);
        let k = [format!("r{db}:").as_bytes(), &key[..]].concat();
        let r: redis::RedisResult<()> = cmd("RESTORE").arg(&k[..]).arg(0).arg(&p).query(&mut con);
        r.unwrap_or_else(|e| panic!("RESTORE of {:?}: {e}", String::from_utf8_lossy(key)));
        let got = fetch(&mut con, &k);
        assert!(
            got.value == w.value,
            "RESTORE {:?} gave {:?}",
            String::from_utf8_lossy(key),
            got.value
        );
        assert_eq!(got.expire_at, 0);
    }
    // A wrong CRC gets Redis's footer error; tether flags the same case.
    let mut p = dump_payload(&Value::Str(Str::from(bs("x"))));
    *p.last_mut().unwrap() ^= 0xFF;
    let r: redis::RedisResult<()> = cmd("RESTORE").arg("crc").arg(0).arg(&p).query(&mut con);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("DUMP payload version or checksum are wrong"),
        "{e}"
    );
    assert!(restore_payload(&p).unwrap_err().is_payload_footer());
}
