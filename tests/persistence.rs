//! RDB persistence and DUMP / RESTORE against stock Redis 7.0.
//!
//! - tether SAVEs, `redis-check-rdb` accepts the file and a stock
//!   `redis-server` started on it holds the same data, key by key (every
//!   type in small and large sizes, several databases, TTLs).
//! - stock Redis SAVEs (its compact encodings: listpack, intset, quicklist),
//!   tether with 1 and 4 shards starts on the file and holds the same data.
//! - tether restarts keep data (SAVE, SHUTDOWN [SAVE|NOSAVE], SIGTERM,
//!   DEBUG RELOAD); BGSAVE under concurrent cross-shard MSETs writes a
//!   loadable, consistent cut; LASTSAVE advances; `save 1 1` saves alone.
//! - A corrupt or truncated dump.rdb makes tether exit non-zero naming the
//!   file, never panic, never start empty.
//! - DUMP / RESTORE round trips, payloads crossing between stock Redis and
//!   tether both ways, and error replies compared byte for byte with Redis.
//!
//! Needs `redis-server`, `redis-cli` and `redis-check-rdb`; fails loudly
//! without them.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kind, Resp, Server, esc, stock_tool, wait_until};
use redis::{Connection, FromRedisValue};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A scratch directory of the test's own (servers come and go over it).
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!(
            "tether-persist-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn rdb(&self) -> PathBuf {
        self.0.join("dump.rdb")
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tether_in(shards: usize, dir: &TmpDir, extra: &[&str]) -> Server {
    let mut args = vec!["--dir", dir.s()];
    args.extend_from_slice(extra);
    Server::spawn(Kind::Tether, shards, &args)
}

fn redis_in(dir: &TmpDir) -> Server {
    Server::spawn(Kind::StockRedis, 1, &["--dir", dir.s()])
}

fn q<T: FromRedisValue>(con: &mut Connection, args: &[&[u8]]) -> T {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| {
        panic!(
            "{:?} failed: {}",
            args.iter().map(|a| esc(a)).collect::<Vec<_>>(),
            common::describe(&e)
        )
    })
}

fn qs<T: FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    q(con, &v)
}

fn info_field(con: &mut Connection, field: &str) -> String {
    let text: String = qs(con, &["INFO", "persistence"]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO persistence has no {field}:\n{text}"))
        .trim()
        .to_string()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// The data set and its canonical form
// ---------------------------------------------------------------------------

/// Databases the data set uses.
const DBS: &[u64] = &[0, 1, 7, 15];

/// Writes every type, in the sizes that make Redis pick each of its
/// encodings, with and without TTLs, into several databases.
fn populate(con: &mut Connection) {
    let mut rng = fastrand::Rng::with_seed(7);
    let far = now_ms() + 3_600_000;
    for &db in DBS {
        let _: () = qs(con, &["SELECT", &db.to_string()]);
        let p = format!("d{db}");
        let k = |name: &str| format!("{p}:{name}");
        let set = |con: &mut Connection, key: String, v: &[u8]| {
            let _: () = q(con, &[b"SET", key.as_bytes(), v]);
        };
        set(con, k("empty"), b"");
        set(con, k("int"), b"12345");
        set(con, k("neg"), b"-99");
        set(con, k("i64"), b"9223372036854775807");
        set(con, k("zeros"), b"007");
        set(con, k("float"), b"3.14");
        set(con, k("lzf"), &[b'a'; 5000]);
        let binary: Vec<u8> = (0..=255u8).chain((0..2000).map(|_| rng.u8(..))).collect();
        set(con, k("binary"), &binary);
        set(con, "x".repeat(300) + &p, b"long key");
        set(con, format!("{{user1}}.a{p}"), b"tagged a");
        set(con, format!("{{user1}}.b{p}"), b"tagged b");
        for i in 0..50 {
            set(con, k(&format!("many:{i}")), format!("v{i}").as_bytes());
        }
        let _: () = qs(con, &["SET", &k("ttl"), "expiring", "PX", "3600000"]);

        let _: i64 = qs(con, &["RPUSH", &k("l:small"), "a", "1", "-2", ""]);
        for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
            let mut args = vec!["RPUSH".to_string(), k("l:big")];
            args.extend(chunk.iter().map(|i| {
                if i % 4 == 0 {
                    i.to_string()
                } else {
                    format!("{i:05}-{}", "v".repeat(60))
                }
            }));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let _: i64 = qs(con, &a);
        }
        let plain = "P".repeat(20_000);
        let _: i64 = qs(con, &["RPUSH", &k("l:plain"), "head", &plain, "tail"]);

        let _: i64 = qs(
            con,
            &["SADD", &k("s:int"), "1", "2", "3", "-5", "1099511627776"],
        );
        let _: i64 = qs(con, &["SADD", &k("s:str"), "a", "b", "c"]);
        let members: Vec<String> = (0..600).map(|i| format!("member:{i}")).collect();
        let mut a = vec!["SADD".to_string(), k("s:big")];
        a.extend(members);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let _: i64 = qs(con, &a);

        let _: i64 = qs(
            con,
            &["HSET", &k("h:small"), "name", "tether", "n", "42", "e", ""],
        );
        let big = "x".repeat(100);
        let _: i64 = qs(con, &["HSET", &k("h:bigval"), "f", &big, "g", "1"]);
        let mut a = vec!["HSET".to_string(), k("h:many")];
        for i in 0..300 {
            a.push(format!("field{i}"));
            a.push(format!("value{i}"));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let _: i64 = qs(con, &a);

        let _: i64 = qs(
            con,
            &[
                "ZADD",
                &k("z:small"),
                "1.5",
                "a",
                "+inf",
                "b",
                "-inf",
                "c",
                "0",
                "d",
                "1e300",
                "e",
                "0.1",
                "f",
                "-3",
                "g",
            ],
        );
        let mut a = vec!["ZADD".to_string(), k("z:big")];
        for i in 0..300 {
            a.push(format!("{}", (rng.f64() * 1e6 - 5e5)));
            a.push(format!("zm{i}"));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let _: i64 = qs(con, &a);

        for key in ["l:small", "s:big", "h:small", "z:big", "int"] {
            let _: i64 = qs(con, &["PEXPIREAT", &k(key), &(far + db).to_string()]);
        }
    }
    let _: () = qs(con, &["SELECT", "0"]);
}

/// A value in comparable form: type and canonical elements.
#[derive(Debug, PartialEq)]
enum Val {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    ZSet(Vec<(Vec<u8>, f64)>),
}

type Snapshot = BTreeMap<(u64, Vec<u8>), (Val, i64)>;

fn fetch_value(con: &mut Connection, key: &[u8]) -> Val {
    let ty: String = q(con, &[b"TYPE", key]);
    match ty.as_str() {
        "string" => Val::Str(q(con, &[b"GET", key])),
        "list" => Val::List(q(con, &[b"LRANGE", key, b"0", b"-1"])),
        "set" => {
            let mut m: Vec<Vec<u8>> = q(con, &[b"SMEMBERS", key]);
            m.sort();
            Val::Set(m)
        }
        "hash" => {
            let flat: Vec<Vec<u8>> = q(con, &[b"HGETALL", key]);
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = flat
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            pairs.sort();
            Val::Hash(pairs)
        }
        "zset" => {
            let flat: Vec<Vec<u8>> = q(con, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]);
            Val::ZSet(
                flat.chunks(2)
                    .map(|p| {
                        let s = String::from_utf8_lossy(&p[1]);
                        (p[0].clone(), s.parse::<f64>().unwrap())
                    })
                    .collect(),
            )
        }
        other => panic!("key {} has type {other}", esc(key)),
    }
}

/// Every key of every database: value and absolute expire time (-1 = none).
fn snapshot(con: &mut Connection) -> Snapshot {
    let mut out = Snapshot::new();
    for db in 0..16u64 {
        let _: () = qs(con, &["SELECT", &db.to_string()]);
        let keys: Vec<Vec<u8>> = qs(con, &["KEYS", "*"]);
        for k in keys {
            let v = fetch_value(con, &k);
            let exp: i64 = q(con, &[b"PEXPIRETIME", &k]);
            out.insert((db, k), (v, exp));
        }
    }
    let _: () = qs(con, &["SELECT", "0"]);
    out
}

fn assert_same(got: &Snapshot, want: &Snapshot, what: &str) {
    assert!(!want.is_empty(), "{what}: the reference data set is empty");
    for (k, w) in want {
        let name = format!("db {} key {}", k.0, esc(&k.1));
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: {name} is missing"));
        assert_eq!(g.1, w.1, "{what}: {name} expire time");
        assert!(
            g.0 == w.0,
            "{what}: {name} value differs:\n got {:?}\nwant {:?}",
            g.0,
            w.0
        );
    }
    for k in got.keys() {
        assert!(
            want.contains_key(k),
            "{what}: unexpected db {} key {}",
            k.0,
            esc(&k.1)
        );
    }
}

fn check_rdb(path: &Path) {
    let out = Command::new(stock_tool("redis-check-rdb"))
        .arg(path)
        .output()
        .expect("run redis-check-rdb");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb rejects {} ({}):\n{text}",
        path.display(),
        out.status
    );
}

// ---------------------------------------------------------------------------
// Files crossing between tether and stock Redis
// ---------------------------------------------------------------------------

#[test]
fn tether_save_loads_in_stock_redis() {
    for shards in [1, 4] {
        let dir = TmpDir::new("t2r");
        let want = {
            let t = tether_in(shards, &dir, &[]);
            let mut c = t.client();
            populate(&mut c);
            let ok: String = qs(&mut c, &["SAVE"]);
            assert_eq!(ok, "OK");
            snapshot(&mut c)
        };
        check_rdb(&dir.rdb());
        let r = redis_in(&dir);
        let got = snapshot(&mut r.client());
        assert_same(
            &got,
            &want,
            &format!("stock redis loading tether({shards})'s SAVE"),
        );
    }
}

#[test]
fn stock_redis_save_loads_in_tether() {
    let src = TmpDir::new("r2t-src");
    let want = {
        let r = redis_in(&src);
        let mut c = r.client();
        populate(&mut c);
        let _: String = qs(&mut c, &["SAVE"]);
        snapshot(&mut c)
    };
    for shards in [1, 4] {
        let dir = TmpDir::new("r2t");
        std::fs::copy(src.rdb(), dir.rdb()).unwrap();
        let t = tether_in(shards, &dir, &[]);
        let mut c = t.client();
        let got = snapshot(&mut c);
        assert_same(
            &got,
            &want,
            &format!("tether({shards}) loading stock redis's SAVE"),
        );
        assert_eq!(
            info_field(&mut c, "rdb_last_load_keys_loaded"),
            want.len().to_string()
        );
        assert!(t.logs().contains("DB loaded from disk"), "{}", t.logs());
    }
}

// ---------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------

#[test]
fn restart_keeps_data() {
    let dir = TmpDir::new("restart");
    let want = {
        let t = tether_in(4, &dir, &[]);
        let mut c = t.client();
        populate(&mut c);
        let _: String = qs(&mut c, &["SAVE"]);
        // Not saved: lost by the kill below.
        let _: () = qs(&mut c, &["SET", "after-save", "lost"]);
        let mut want = snapshot(&mut c);
        want.remove(&(0, b"after-save".to_vec()));
        want
        // Dropped here: SIGKILL.
    };
    {
        let t = tether_in(4, &dir, &[]);
        let mut c = t.client();
        assert_same(&snapshot(&mut c), &want, "after SAVE + kill + restart");

        // SHUTDOWN SAVE saves even without save points; no reply, exit.
        let _: () = qs(&mut c, &["SET", "by-shutdown-save", "kept"]);
        let mut raw = t.raw();
        raw.send_cmd(&[b"SHUTDOWN", b"SAVE"]);
        assert!(
            raw.is_closed_by_peer(Duration::from_secs(30)),
            "SHUTDOWN SAVE left the connection open"
        );
        let mut t = t;
        assert!(
            wait_until(Duration::from_secs(30), || !t.is_alive()),
            "tether still runs after SHUTDOWN SAVE"
        );
    }
    {
        // With save points, SHUTDOWN NOSAVE does not save ...
        let t = tether_in(2, &dir, &["--save", "3600 1"]);
        let mut c = t.client();
        let v: Option<String> = qs(&mut c, &["GET", "by-shutdown-save"]);
        assert_eq!(v.as_deref(), Some("kept"));
        let _: () = qs(&mut c, &["SET", "by-nosave", "lost"]);
        let mut raw = t.raw();
        raw.send_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
        assert!(raw.is_closed_by_peer(Duration::from_secs(30)));
    }
    {
        // ... and a plain SHUTDOWN does.
        let t = tether_in(2, &dir, &["--save", "3600 1"]);
        let mut c = t.client();
        let v: Option<String> = qs(&mut c, &["GET", "by-nosave"]);
        assert_eq!(v, None, "SHUTDOWN NOSAVE saved");
        let _: () = qs(&mut c, &["SET", "by-shutdown", "kept"]);
        let mut raw = t.raw();
        raw.send_cmd(&[b"SHUTDOWN"]);
        assert!(raw.is_closed_by_peer(Duration::from_secs(30)));
    }
    {
        // SIGTERM shuts down like SHUTDOWN: saves when save points exist.
        let mut t = tether_in(1, &dir, &["--save", "3600 1"]);
        let mut c = t.client();
        let v: Option<String> = qs(&mut c, &["GET", "by-shutdown"]);
        assert_eq!(
            v.as_deref(),
            Some("kept"),
            "plain SHUTDOWN with save points did not save"
        );
        let _: () = qs(&mut c, &["SET", "by-sigterm", "kept"]);
        let info: String = qs(&mut c, &["INFO", "server"]);
        let pid: i32 = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: sends a signal to the server process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert!(
            wait_until(Duration::from_secs(30), || !t.is_alive()),
            "tether ignored SIGTERM"
        );
        assert!(t.logs().contains("Received SIGTERM"), "{}", t.logs());
    }
    {
        let t = tether_in(3, &dir, &[]);
        let mut c = t.client();
        let v: Option<String> = qs(&mut c, &["GET", "by-sigterm"]);
        assert_eq!(v.as_deref(), Some("kept"), "SIGTERM did not save");
        let mut got = snapshot(&mut c);
        for k in ["by-shutdown-save", "by-shutdown", "by-sigterm"] {
            got.remove(&(0, k.as_bytes().to_vec()));
        }
        assert_same(&got, &want, "after the shutdown round trips");
    }
}

#[test]
fn flushall_with_save_points_saves_the_empty_dataset() {
    let dir = TmpDir::new("flushall");
    {
        let t = tether_in(2, &dir, &["--save", "3600 1"]);
        let mut c = t.client();
        let _: () = qs(&mut c, &["SET", "a", "1"]);
        let _: String = qs(&mut c, &["SAVE"]);
        let _: () = qs(&mut c, &["FLUSHALL"]);
        // Killed without a chance to save again.
    }
    let t = tether_in(2, &dir, &[]);
    let n: i64 = qs(&mut t.client(), &["DBSIZE"]);
    assert_eq!(n, 0, "FLUSHALL's keys came back after a restart");
}

/// That save counts as one (Redis 7.0's `flushAllDataAndResetRDB` calls
/// `rdbSave`): no change is left unsaved after FLUSHALL, and writes after
/// it count again (Redis's tcl unit/other "FLUSHALL should reset the dirty
/// counter to 0 if we enable save"). Without save points FLUSHALL counts as
/// a change, as everywhere.
#[test]
fn flushall_with_save_points_leaves_no_change_unsaved() {
    let (rdir, tdir) = (
        TmpDir::new("flushall-dirty-r"),
        TmpDir::new("flushall-dirty-t"),
    );
    let redis = Server::spawn(Kind::StockRedis, 1, &["--dir", rdir.s(), "--save", ""]);
    let t = tether_in(2, &tdir, &["--save", ""]);
    for s in [&redis, &t] {
        let mut c = s.client();
        let _: () = qs(&mut c, &["SET", "k", "v"]);
        let _: () = qs(&mut c, &["FLUSHALL"]);
        let unsaved: i64 = info_field(&mut c, "rdb_changes_since_last_save")
            .parse()
            .unwrap();
        assert!(
            unsaved >= 2,
            "{}: {unsaved} changes without save points",
            s.label()
        );
        let _: () = qs(&mut c, &["CONFIG", "SET", "save", "3600 1 300 100"]);
        for k in ["a", "b", "c"] {
            let _: () = qs(&mut c, &["SET", k, "v"]);
        }
        let _: () = qs(&mut c, &["FLUSHALL"]);
        assert_eq!(
            info_field(&mut c, "rdb_changes_since_last_save"),
            "0",
            "{}",
            s.label()
        );
        let _: () = qs(&mut c, &["SET", "after", "v"]);
        assert_eq!(
            info_field(&mut c, "rdb_changes_since_last_save"),
            "1",
            "{}",
            s.label()
        );
    }
}

#[test]
fn debug_reload_keeps_data() {
    let dir = TmpDir::new("reload");
    let t = tether_in(4, &dir, &[]);
    let mut c = t.client();
    populate(&mut c);
    let want = snapshot(&mut c);
    let _: () = qs(&mut c, &["SET", "x", "1"]);
    assert_ne!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    let ok: String = qs(&mut c, &["DEBUG", "RELOAD"]);
    assert_eq!(ok, "OK");
    let mut got = snapshot(&mut c);
    assert_eq!(
        got.remove(&(0, b"x".to_vec())).map(|v| v.0),
        Some(Val::Str(b"1".to_vec()))
    );
    assert_same(&got, &want, "after DEBUG RELOAD");
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
}

// ---------------------------------------------------------------------------
// BGSAVE, LASTSAVE and the schedule
// ---------------------------------------------------------------------------

#[test]
fn bgsave_under_concurrent_writes_is_a_consistent_cut() {
    let dir = TmpDir::new("bgsave");
    let t = tether_in(4, &dir, &[]);
    let mut c = t.client();
    // Bulk so the snapshot takes a while.
    let mut args = vec!["MSET".to_string()];
    for i in 0..20_000 {
        args.push(format!("bulk:{i}"));
        args.push(format!("value-{i}-{}", "z".repeat(40)));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: () = qs(&mut c, &a);
    let group: Vec<String> = common::keys_over_shards("grp", 4, 4);

    let lastsave0: i64 = qs(&mut c, &["LASTSAVE"]);
    std::thread::sleep(Duration::from_millis(1100));

    // Writers: each MSET writes one counter value to keys on every shard;
    // any snapshot must see the group with a single value.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (stop, group) = (stop.clone(), group.clone());
        let mut wc = t.client();
        writers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let v = format!("{w}-{n}");
                let mut a = vec!["MSET".to_string()];
                for k in &group {
                    a.push(k.clone());
                    a.push(v.clone());
                }
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let _: () = qs(&mut wc, &a);
                let _: i64 = qs(&mut wc, &["INCR", &format!("ctr:{w}")]);
                let _: i64 = qs(&mut wc, &["RPUSH", "log", &v]);
            }
            n
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut started = 0;
    for _ in 0..3 {
        let r: redis::RedisResult<String> = redis::cmd("BGSAVE").query(&mut c);
        match r {
            Ok(s) => {
                assert_eq!(s, "Background saving started");
                started += 1;
            }
            Err(e) => assert!(
                e.to_string()
                    .contains("Background save already in progress"),
                "BGSAVE: {e}"
            ),
        }
        assert!(
            wait_until(Duration::from_secs(30), || info_field(
                &mut c,
                "rdb_bgsave_in_progress"
            ) == "0"),
            "BGSAVE did not finish"
        );
        assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started >= 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0, "the writers wrote nothing");

    let lastsave1: i64 = qs(&mut c, &["LASTSAVE"]);
    assert!(
        lastsave1 > lastsave0,
        "LASTSAVE did not advance: {lastsave0} -> {lastsave1}"
    );
    assert_eq!(
        info_field(&mut c, "rdb_last_save_time"),
        lastsave1.to_string()
    );
    assert!(
        info_field(&mut c, "rdb_last_bgsave_time_sec")
            .parse::<i64>()
            .unwrap()
            >= 0
    );
    check_rdb(&dir.rdb());

    // Load the file in a second server and check the cut.
    let copy = TmpDir::new("bgsave-copy");
    std::fs::copy(dir.rdb(), copy.rdb()).unwrap();
    for (label, srv) in [
        ("tether", tether_in(2, &copy, &[])),
        ("redis", redis_in(&copy)),
    ] {
        let mut c2 = srv.client();
        let n: i64 = qs(&mut c2, &["DBSIZE"]);
        assert!(n >= 20_000, "{label}: only {n} keys loaded");
        let mut args = vec!["MGET".to_string()];
        args.extend(group.iter().cloned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let vals: Vec<Option<String>> = qs(&mut c2, &a);
        assert!(
            vals.iter().all(|v| v == &vals[0]),
            "{label}: the snapshot split an MSET across shards: {vals:?}"
        );
    }
}

#[test]
fn save_schedule_saves_by_itself() {
    let dir = TmpDir::new("sched");
    let t = tether_in(2, &dir, &["--save", "1 1"]);
    let mut c = t.client();
    let t0: i64 = qs(&mut c, &["LASTSAVE"]);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    let _: () = qs(&mut c, &["SET", "sched", "1"]);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "1");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let now: i64 = qs(&mut c, &["LASTSAVE"]);
            now > t0 && info_field(&mut c, "rdb_changes_since_last_save") == "0"
        }),
        "`save 1 1` never saved:\n{}",
        t.logs()
    );
    assert!(dir.rdb().exists());
    assert!(
        t.logs().contains("1 changes in 1 seconds. Saving..."),
        "{}",
        t.logs()
    );
    check_rdb(&dir.rdb());
}

#[test]
fn save_errors_and_transactions_match_redis() {
    // The same commands to both servers, replies compared byte for byte.
    let rdir = TmpDir::new("diff-r");
    let tdir = TmpDir::new("diff-t");
    let r = redis_in(&rdir);
    let t = tether_in(4, &tdir, &["--enable-protected-configs", "yes"]);
    let script: &[&[&str]] = &[
        &["SET", "k", "v"],
        &["SAVE", "extra"],
        &["BGSAVE", "now"],
        &["BGSAVE", "SCHEDULE", "x"],
        &["LASTSAVE", "x"],
        &["SHUTDOWN", "FOO"],
        &["SHUTDOWN", "SAVE", "NOSAVE"],
        &["SHUTDOWN", "ABORT"],
        &["SHUTDOWN", "ABORT", "NOW"],
        &["MULTI"],
        &["SAVE"],
        &["SET", "k", "w"],
        &["EXEC"],
        &["MULTI"],
        &["SHUTDOWN"],
        &["EXEC"],
        &["GET", "k"],
        &["SAVE"],
    ];
    let mut rc = r.raw();
    let mut tc = t.raw();
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let want = rc.cmd_raw(&args);
        let got = tc.cmd_raw(&args);
        assert_eq!(esc(&got), esc(&want), "reply to {cmd:?}");
    }
    // MULTI / BGSAVE / EXEC schedules a save in both.
    for c in [&mut rc, &mut tc] {
        assert_eq!(c.cmds(&["MULTI"]), Resp::Simple(b"OK".to_vec()));
        assert_eq!(c.cmds(&["BGSAVE"]), Resp::Simple(b"QUEUED".to_vec()));
        assert_eq!(
            c.cmds(&["EXEC"]),
            Resp::Array(vec![Resp::Simple(b"Background saving scheduled".to_vec())])
        );
    }
    let mut con = t.client();
    assert!(
        wait_until(Duration::from_secs(10), || {
            info_field(&mut con, "rdb_saves") == "2"
                && info_field(&mut con, "rdb_bgsave_in_progress") == "0"
        }),
        "the scheduled BGSAVE never ran"
    );
    // Saving into a directory that vanished: SAVE answers a bare -ERR.
    let gone = TmpDir::new("gone");
    let _: () = qs(&mut con, &["CONFIG", "SET", "dir", gone.s()]);
    std::fs::remove_dir_all(gone.path()).unwrap();
    assert_eq!(esc(&tc.cmd_raw(&[b"SAVE"])), "-ERR\\r\\n");
    assert_eq!(
        esc(&tc.cmd_raw(&[b"SHUTDOWN", b"SAVE"])),
        "-ERR Errors trying to SHUTDOWN. Check logs.\\r\\n"
    );
    // The failed SHUTDOWN left the server running and unlocked.
    assert_eq!(
        tc.cmds(&["SET", "still", "up"]),
        Resp::Simple(b"OK".to_vec())
    );
    assert!(
        t.logs().contains("Failed opening the temp RDB file"),
        "{}",
        t.logs()
    );
}

trait RawExt {
    fn cmd_raw(&mut self, args: &[&[u8]]) -> Vec<u8>;
}

impl RawExt for common::RawConn {
    fn cmd_raw(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_raw().1
    }
}

// ---------------------------------------------------------------------------
// Corrupt files
// ---------------------------------------------------------------------------

/// Starts tether on `dir` expecting it to refuse: returns (exit code, output).
fn start_expecting_failure(dir: &TmpDir, shards: usize) -> (Option<i32>, String) {
    let log = dir.path().join("refused.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--bind",
            "127.0.0.1",
            "--shards",
            &shards.to_string(),
            "--save",
            "",
            "--dir",
            dir.s(),
        ])
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn tether");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tether started on a corrupt file instead of refusing:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn corrupt_files_refuse_to_start() {
    // A good file, from tether, with every type.
    let good = {
        let dir = TmpDir::new("good");
        let t = tether_in(2, &dir, &[]);
        let mut c = t.client();
        populate(&mut c);
        let _: String = qs(&mut c, &["SAVE"]);
        std::fs::read(dir.rdb()).unwrap()
    };
    // A stream, which tether does not support, from stock Redis.
    let stream = {
        let dir = TmpDir::new("stream");
        let r = redis_in(&dir);
        let mut c = r.client();
        let _: String = qs(&mut c, &["XADD", "st", "*", "f", "v"]);
        let _: String = qs(&mut c, &["SAVE"]);
        std::fs::read(dir.rdb()).unwrap()
    };
    let mut rng = fastrand::Rng::with_seed(99);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..12 {
        let at = rng.usize(..good.len());
        let mut b = good.clone();
        b[at] ^= 1 << rng.u32(0..8);
        cases.push((format!("bit flipped at byte {at}"), b));
    }
    for cut in [
        0,
        5,
        9,
        40,
        good.len() / 3,
        good.len() / 2,
        good.len() - 9,
        good.len() - 1,
    ] {
        cases.push((format!("truncated to {cut} bytes"), good[..cut].to_vec()));
    }
    let mut bad_magic = good.clone();
    bad_magic[..5].copy_from_slice(b"RADIS");
    cases.push(("bad magic".into(), bad_magic));
    let mut version = good.clone();
    version[5..9].copy_from_slice(b"0011");
    cases.push(("RDB version 11".into(), version));
    cases.push(("a stream key".into(), stream));

    for (i, (what, bytes)) in cases.iter().enumerate() {
        let dir = TmpDir::new("corrupt");
        std::fs::write(dir.rdb(), bytes).unwrap();
        let (code, out) = start_expecting_failure(&dir, 1 + i % 2);
        assert_eq!(code, Some(1), "{what}: exit code {code:?}\n{out}");
        assert!(
            out.contains(dir.rdb().to_str().unwrap()),
            "{what}: the error does not name the file:\n{out}"
        );
        assert!(out.contains("Fatal error loading the DB"), "{what}:\n{out}");
        assert!(!out.contains("panicked"), "{what}: tether panicked:\n{out}");
    }
}

// ---------------------------------------------------------------------------
// DUMP / RESTORE
// ---------------------------------------------------------------------------

/// Every key of db 0 as (key, DUMP payload).
fn dump_all(con: &mut Connection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let _: () = qs(con, &["SELECT", "0"]);
    let mut keys: Vec<Vec<u8>> = qs(con, &["KEYS", "*"]);
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let p: Vec<u8> = q(con, &[b"DUMP", &k]);
            (k, p)
        })
        .collect()
}

#[test]
fn dump_restore_round_trips_and_crosses_with_redis() {
    let (rdir, tdir) = (TmpDir::new("dr-r"), TmpDir::new("dr-t"));
    let r = redis_in(&rdir);
    let t = tether_in(4, &tdir, &[]);
    let (mut rc, mut tc) = (r.client(), t.client());
    populate(&mut rc);
    populate(&mut tc);
    let want = snapshot(&mut tc);
    let want0: BTreeMap<Vec<u8>, Val> = want
        .into_iter()
        .filter(|((db, _), _)| *db == 0)
        .map(|((_, k), (v, _))| (k, v))
        .collect();

    // (source, destination) pairs: tether -> tether, redis -> tether,
    // tether -> redis.
    let from_t = dump_all(&mut tc);
    let from_r = dump_all(&mut rc);
    assert_eq!(from_t.len(), want0.len());
    for (label, src_is_tether, dst_is_tether) in [
        ("tether->tether", true, true),
        ("redis->tether", false, true),
        ("tether->redis", true, false),
    ] {
        let src = if src_is_tether { &from_t } else { &from_r };
        let dst = if dst_is_tether { &mut tc } else { &mut rc };
        for (k, payload) in src.iter() {
            let mut nk = b"restored:".to_vec();
            nk.extend_from_slice(k);
            let ok: String = q(dst, &[b"RESTORE", &nk, b"0", payload]);
            assert_eq!(ok, "OK");
            let got = fetch_value(dst, &nk);
            assert_eq!(&got, &want0[k], "{label}: key {}", esc(k));
            // REPLACE with a relative TTL, then ABSTTL.
            let ok: String = q(dst, &[b"RESTORE", &nk, b"100000", payload, b"REPLACE"]);
            assert_eq!(ok, "OK");
            let pttl: i64 = q(dst, &[b"PTTL", &nk]);
            assert!(pttl > 90_000 && pttl <= 100_000, "{label}: PTTL {pttl}");
            let at = (now_ms() + 500_000).to_string();
            let ok: String = q(
                dst,
                &[
                    b"RESTORE",
                    &nk,
                    at.as_bytes(),
                    payload,
                    b"REPLACE",
                    b"ABSTTL",
                ],
            );
            assert_eq!(ok, "OK");
            let exp: i64 = q(dst, &[b"PEXPIRETIME", &nk]);
            assert_eq!(exp.to_string(), at, "{label}: ABSTTL");
            let _: i64 = q(dst, &[b"DEL", &nk]);
        }
    }
}

#[test]
fn restore_errors_match_redis() {
    let (rdir, tdir) = (TmpDir::new("re-r"), TmpDir::new("re-t"));
    let r = redis_in(&rdir);
    let t = tether_in(4, &tdir, &[]);
    let (mut rraw, mut traw) = (r.raw(), t.raw());

    // Payloads built by hand, valid for both servers.
    let footer = |body: &[u8], version: u16| {
        let mut p = body.to_vec();
        p.extend_from_slice(&version.to_le_bytes());
        let crc = tether::rdb::Crc64::checksum(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    };
    let good = footer(b"\x00\x05hello", 10); // string "hello"
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    let v11 = footer(b"\x00\x05hello", 11);
    let v9 = footer(b"\x00\x05hello", 9);
    let short_value = footer(b"\x00\x09hello", 10); // length says 9, 5 bytes follow
    let trailing = footer(b"\x00\x05helloXX", 10);
    let bad_type = footer(b"\x63\x05hello", 10); // type 99
    let empty_list = footer(b"\x01\x00", 10);
    let stream = footer(b"\x13\x00", 10); // type 19, truncated stream
    let zero_crc = {
        let mut p = b"\x00\x05hello\x0a\x00".to_vec();
        p.extend_from_slice(&[0; 8]);
        p
    };
    let payloads: BTreeMap<&str, Vec<u8>> = [
        ("$good", good),
        ("$bad_crc", bad_crc),
        ("$v11", v11),
        ("$v9", v9),
        ("$short_value", short_value),
        ("$trailing", trailing),
        ("$bad_type", bad_type),
        ("$empty_list", empty_list),
        ("$stream", stream),
        ("$zero_crc", zero_crc),
    ]
    .into_iter()
    .collect();
    let script: &[&[&str]] = &[
        &["SET", "exists", "v"],
        &["RESTORE", "exists", "0", "$good"],
        &["RESTORE", "exists", "-1", "$good"],
        &["RESTORE", "exists", "0", "junk"],
        &["RESTORE", "new", "-1", "$good"],
        &["RESTORE", "new", "abc", "$good"],
        &["RESTORE", "new", "0", "junk"],
        &["RESTORE", "new", "0", ""],
        &["RESTORE", "new", "0", "$bad_crc"],
        &["RESTORE", "new", "0", "$v11"],
        &["RESTORE", "new", "0", "$short_value"],
        &["RESTORE", "new", "0", "$trailing"],
        &["RESTORE", "new", "0", "$bad_type"],
        &["RESTORE", "new", "0", "$empty_list"],
        &["RESTORE", "new", "0", "$stream"],
        &["RESTORE", "new", "0", "$zero_crc"],
        &["RESTORE", "new", "0", "$good", "bogus"],
        &["RESTORE", "new", "0", "$good", "IDLETIME"],
        &["RESTORE", "new", "0", "$good", "IDLETIME", "-1"],
        &["RESTORE", "new", "0", "$good", "IDLETIME", "x"],
        &["RESTORE", "new", "0", "$good", "FREQ", "256"],
        &["RESTORE", "new", "0", "$good", "FREQ", "-1"],
        &["RESTORE", "new", "0", "$good", "IDLETIME", "1", "FREQ", "1"],
        &["RESTORE", "new", "0", "$good", "FREQ", "1", "IDLETIME", "1"],
        &["RESTORE", "new"],
        &["RESTORE", "new", "0"],
        &["DUMP"],
        &["DUMP", "a", "b"],
        &["DUMP", "missing"],
        &["RESTORE", "new", "0", "$v9", "IDLETIME", "5"],
        &["GET", "new"],
        &[
            "RESTORE", "new2", "0", "$good", "FREQ", "5", "REPLACE", "ABSTTL",
        ],
        &["GET", "new2"],
        &["PTTL", "new2"],
        // ABSTTL in the past (1970): OK, but nothing is stored ...
        &["RESTORE", "past", "1000", "$good", "ABSTTL"],
        &["EXISTS", "past"],
        // ... and with REPLACE the old key goes.
        &["RESTORE", "exists", "1000", "$good", "ABSTTL", "REPLACE"],
        &["EXISTS", "exists"],
        &["RESTORE", "new", "0", "$good", "REPLACE"],
        &["RESTORE", "new", "0", "$good"],
        &["TYPE", "new"],
        // TTLs at the edge of the 64-bit range.
        &["RESTORE", "huge", "9223372036854775807", "$good"],
        &["EXISTS", "huge"],
        &["RESTORE", "huge2", "9223372036854775000", "$good", "ABSTTL"],
        &["PEXPIRETIME", "huge2"],
        &["RESTORE", "huge3", "9223372036854775808", "$good"],
    ];
    let script: Vec<Vec<&[u8]>> = script
        .iter()
        .map(|c| {
            c.iter()
                .map(|a| payloads.get(a).map_or(a.as_bytes(), |p| p.as_slice()))
                .collect()
        })
        .collect();
    for cmd in &script {
        let want = rraw.cmd_raw(cmd);
        let got = traw.cmd_raw(cmd);
        assert_eq!(
            esc(&got),
            esc(&want),
            "reply to {:?}",
            cmd.iter().map(|a| esc(a)).collect::<Vec<_>>()
        );
    }
    // COMMAND INFO rows for the new commands match Redis's first six fields.
    for name in ["dump", "restore", "save", "bgsave", "lastsave", "shutdown"] {
        let head = |raw: &mut common::RawConn| -> Vec<Resp> {
            let r = raw.cmds(&["COMMAND", "INFO", name]);
            r.array()[0].array()[..6].to_vec()
        };
        assert_eq!(head(&mut traw), head(&mut rraw), "COMMAND INFO {name}");
    }
}
