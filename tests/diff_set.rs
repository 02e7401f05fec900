//! Differential test for the set family: seeded random SADD ... SSCAN
//! sequences (wrong types, bad arity, bad counts, multi-key commands over
//! keys on different shards and on one shard via hash tags) sent to stock
//! `redis-server` and to tether (1 and 4 shards), RESP2 or RESP3 by seed.
//! Raw replies must match byte for byte, except: SMEMBERS/SINTER/SUNION/
//! SDIFF are compared sorted; SRANDMEMBER by shape and membership; SPOP by
//! shape and by "popped + left = the set before", after which tether's set
//! is made equal to Redis's; SSCAN by the union of a full iteration.
//! Also: `redis-benchmark -t hset,sadd,spop` runs clean against tether.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_set`;
//! `DIFF_SEEDS` / `DIFF_OPS` change the number of seeds / commands per seed.
mod common;

use common::Gen;

use std::collections::BTreeSet;

use common::{RawConn, Resp, Server, esc, read_reply};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const KEYS: &[&str] = &[
    "s0", "s1", "s2", "s3", "s4", "{t}s1", "{t}s2", "{t}s3", "str", "{t}h",
];
const MEMBERS: &[&[u8]] = &[
    b"1", b"2", b"3", b"10", b"-5", b"a", b"b", b"c", b"", b"x y", b"\x00bin", b"007",
];
const PATTERNS: &[&str] = &["*", "1*", "[a-c]", "?", "", "*0*", "nomatch"];

#[derive(Clone, Debug)]
enum Cmp {
    Exact,
    Sorted,
    /// SRANDMEMBER on this key; count unique (>= 0).
    Rand {
        key: Vec<u8>,
        uniq: bool,
    },
    /// SPOP on this key.
    Pop {
        key: Vec<u8>,
    },
    Scan,
}

impl Gen {
    fn key(&mut self) -> Vec<u8> {
        self.pick(KEYS).as_bytes().to_vec()
    }
    fn member(&mut self) -> Vec<u8> {
        if self.chance(0.02) {
            // Many integers: past the intset size limit now and then.
            return self.rng.random_range(0..1000).to_string().into_bytes();
        }
        self.pick(MEMBERS).to_vec()
    }
    fn count(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => "0".into(),
            1..=3 => self.rng.random_range(-6..0).to_string(),
            4 => self
                .pick(&["abc", "-9223372036854775808", "1.5", ""])
                .into(),
            _ => self.rng.random_range(1..14).to_string(),
        }
    }

    fn command(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let k = self.key();
        let mut c: Vec<Vec<u8>> = Vec::new();
        let mut cmp = Cmp::Exact;
        macro_rules! push { ($($e:expr),*) => {{ $( c.push(AsRef::<[u8]>::as_ref(&$e).to_vec()); )* }} }
        match self.rng.random_range(0..100) {
            0..=19 => {
                push!("SADD", k);
                let n = if self.chance(0.05) {
                    40
                } else {
                    self.rng.random_range(1..5)
                };
                for _ in 0..n {
                    let m = self.member();
                    push!(m);
                }
            }
            20..=26 => {
                push!("SREM", k);
                for _ in 0..self.rng.random_range(1..4) {
                    let m = self.member();
                    push!(m);
                }
            }
            27..=28 => push!("SCARD", k),
            29..=31 => {
                let m = self.member();
                push!("SISMEMBER", k, m);
            }
            32..=33 => {
                push!("SMISMEMBER", k);
                for _ in 0..self.rng.random_range(1..4) {
                    let m = self.member();
                    push!(m);
                }
            }
            34..=37 => {
                push!("SMEMBERS", k);
                cmp = Cmp::Sorted;
            }
            38..=43 => {
                push!("SPOP", k);
                if self.chance(0.7) {
                    let n = self.count();
                    push!(n);
                }
                if self.chance(0.03) {
                    push!("x");
                }
                cmp = Cmp::Pop { key: k.clone() };
            }
            44..=49 => {
                push!("SRANDMEMBER", k);
                let n = self.count();
                if self.chance(0.8) {
                    push!(n);
                }
                if self.chance(0.03) {
                    push!("x");
                }
                let uniq = !n.starts_with('-');
                cmp = Cmp::Rand {
                    key: k.clone(),
                    uniq,
                };
            }
            50..=53 => {
                let (d, m) = (self.key(), self.member());
                push!("SMOVE", k, if self.chance(0.1) { k.clone() } else { d }, m);
            }
            54..=63 => {
                let (name, store) = self.pick(&[
                    ("SINTER", false),
                    ("SUNION", false),
                    ("SDIFF", false),
                    ("SINTERSTORE", true),
                    ("SUNIONSTORE", true),
                    ("SDIFFSTORE", true),
                ]);
                push!(name);
                if store {
                    push!(k);
                } else {
                    cmp = Cmp::Sorted;
                }
                for _ in 0..self.rng.random_range(1..4) {
                    let k = self.key();
                    push!(k);
                }
            }
            64..=67 => {
                let n = self.rng.random_range(1..4);
                push!("SINTERCARD", self.pick(&["0", "-1", "x", "9"]));
                if self.chance(0.85) {
                    c[1] = n.to_string().into_bytes();
                }
                for _ in 0..n {
                    let k = self.key();
                    push!(k);
                }
                match self.rng.random_range(0..8) {
                    0..=2 => push!("LIMIT", self.pick(&["0", "1", "2", "100"])),
                    3 => push!("LIMIT", self.pick(&["-1", "abc"])),
                    4 => push!("LIMIT"),
                    5 => push!("BOGUS", "1"),
                    _ => {}
                }
            }
            68..=73 => {
                push!("SSCAN", k, "0");
                if self.chance(0.4) {
                    push!("MATCH", self.pick(PATTERNS));
                }
                if self.chance(0.5) {
                    push!("COUNT", self.pick(&["1", "3", "100"]));
                }
                cmp = Cmp::Scan;
            }
            74..=76 => match self.rng.random_range(0..7) {
                0 => push!("SSCAN", k, "abc"),
                1 => push!("SSCAN", k, "0", "COUNT", "0"),
                2 => push!("SSCAN", k, "0", "COUNT", "x"),
                3 => push!("SSCAN", k, "0", "TYPE", "set"),
                4 => push!("SSCAN", k, "-"),
                5 => push!("SSCAN", k, "0", "MATCH"),
                _ => push!("SSCAN", k, "18446744073709551616"),
            },
            77..=79 => push!("SET", k, "v"),
            80..=81 => push!("HSET", k, "f", "v"),
            82..=84 => push!("DEL", k),
            85..=96 => return self.bad_arity(),
            _ => push!("TYPE", k),
        }
        if self.chance(0.1) {
            c[0] = c[0].to_ascii_lowercase();
        }
        (c, cmp)
    }

    fn bad_arity(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let forms: &[&[&str]] = &[
            &["SADD", "s1"],
            &["SREM", "s1"],
            &["SCARD"],
            &["SCARD", "s1", "x"],
            &["SISMEMBER", "s1"],
            &["SMISMEMBER", "s1"],
            &["SMEMBERS"],
            &["SPOP"],
            &["SRANDMEMBER"],
            &["SMOVE", "s1", "s2"],
            &["SINTER"],
            &["SINTERCARD", "1"],
            &["SUNION"],
            &["SDIFF"],
            &["SINTERSTORE", "d"],
            &["SUNIONSTORE", "d"],
            &["SDIFFSTORE"],
            &["SSCAN", "s1"],
        ];
        let f = self.pick(forms);
        (
            f.iter().map(|s| s.as_bytes().to_vec()).collect(),
            Cmp::Exact,
        )
    }
}

fn show_cmd(c: &[Vec<u8>]) -> String {
    c.iter()
        .map(|a| format!("\"{}\"", esc(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn key_of(x: &Resp) -> String {
    format!("{x:?}")
}

/// The reply with collection elements sorted (pairs kept together for
/// maps and flat RESP2 field/value arrays when `pairs`).
fn sorted(r: &Resp, pairs: bool) -> Resp {
    match r {
        Resp::Array(v) if pairs && v.iter().all(|x| matches!(x, Resp::Bulk(_))) => {
            let mut p: Vec<Resp> = v.chunks(2).map(|c| Resp::Array(c.to_vec())).collect();
            p.sort_by_key(key_of);
            Resp::Array(p)
        }
        Resp::Array(v) | Resp::Set(v) => {
            let mut v = v.clone();
            v.sort_by_key(key_of);
            if matches!(r, Resp::Set(_)) {
                Resp::Set(v)
            } else {
                Resp::Array(v)
            }
        }
        Resp::Map(v) => {
            let mut v = v.clone();
            v.sort_by_key(|(a, b)| (key_of(a), key_of(b)));
            Resp::Map(v)
        }
        other => other.clone(),
    }
}

/// The reply with every bulk emptied: its shape (types, lengths, nesting).
fn shape(r: &Resp) -> Resp {
    match r {
        Resp::Bulk(_) => Resp::Bulk(Vec::new()),
        Resp::Array(v) => Resp::Array(v.iter().map(shape).collect()),
        Resp::Set(v) => Resp::Set(v.iter().map(shape).collect()),
        other => other.clone(),
    }
}

fn bulks(r: &Resp) -> Vec<Vec<u8>> {
    match r {
        Resp::Bulk(b) => vec![b.clone()],
        Resp::Array(v) | Resp::Set(v) => v.iter().flat_map(bulks).collect(),
        Resp::Map(v) => v
            .iter()
            .flat_map(|(a, b)| [bulks(a), bulks(b)].concat())
            .collect(),
        _ => Vec::new(),
    }
}

struct Run<'a> {
    r: RawConn,
    t: RawConn,
    label: String,
    seed: u64,
    history: Vec<String>,
    events: common::EventCheck,
    _srv: std::marker::PhantomData<&'a Server>,
}

impl Run<'_> {
    fn fail(&self, cmd: &[Vec<u8>], what: &str, ra: &[u8], ta: &[u8]) -> ! {
        let recent = self.history[self.history.len().saturating_sub(25)..].join("\n    ");
        panic!(
            "\nDIFFERENTIAL MISMATCH ({what}; seed {}, {}; reproduce with DIFF_SEED={})\n\
             command: {}\nredis:   {}\ntether:  {}\npreceding commands:\n    {recent}\n",
            self.seed,
            self.label,
            self.seed,
            show_cmd(cmd),
            esc(ra),
            esc(ta)
        );
    }

    fn both(&mut self, cmd: &[Vec<u8>]) -> ((Resp, Vec<u8>), (Resp, Vec<u8>)) {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        self.r.send_cmd(&args);
        self.t.send_cmd(&args);
        (self.r.read_raw(), self.t.read_raw())
    }

    fn batch(&mut self, batch: &[(Vec<Vec<u8>>, Cmp)]) {
        let mut buf = Vec::new();
        for (c, _) in batch {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
            buf.extend(common::encode(&args));
        }
        self.r.send(&buf);
        self.t.send(&buf);
        for (c, cmp) in batch {
            let ra = read_reply(&mut self.r.reader).expect("redis reply");
            let ta = read_reply(&mut self.t.reader).expect("tether reply");
            let pairs = false;
            let ok = match cmp {
                Cmp::Sorted => sorted(&ra.0, pairs) == sorted(&ta.0, pairs),
                _ => ra.1 == ta.1,
            };
            if !ok {
                self.fail(c, "reply", &ra.1, &ta.1);
            }
            self.history
                .push(format!("{}  ->  {}", show_cmd(c), esc(&ra.1)));
        }
    }

    /// SRANDMEMBER: same shape; every returned member is in the set;
    /// distinct for a count >= 0; the whole set when count >= size.
    fn rand(&mut self, c: &[Vec<u8>], key: &[u8], uniq: bool) {
        let (ra, ta) = self.both(c);
        if (ra.0.is_error() || ta.0.is_error() || shape(&ra.0) != shape(&ta.0)) && ra.1 != ta.1 {
            self.fail(c, "shape", &ra.1, &ta.1);
        }
        self.t.cmd(&[b"SMEMBERS", key]); // the same lookups on both sides
        let state: BTreeSet<Vec<u8>> = bulks(&self.r.cmd(&[b"SMEMBERS", key]))
            .into_iter()
            .collect();
        let got = bulks(&ta.0);
        if !ta.0.is_error() && got.iter().any(|m| !state.contains(m)) {
            self.fail(c, "not a member", &ra.1, &ta.1);
        }
        let distinct: BTreeSet<_> = got.iter().collect();
        if uniq && distinct.len() != got.len() {
            self.fail(c, "repeats", &ra.1, &ta.1);
        }
        if uniq && got.len() == state.len() && sorted(&ra.0, false) != sorted(&ta.0, false) {
            self.fail(c, "whole set", &ra.1, &ta.1);
        }
        self.history
            .push(format!("{}  ->  {}", show_cmd(c), esc(&ra.1)));
    }

    /// SPOP: same shape; on each side the popped members plus those left
    /// make the set as it was, with no member both popped and left. Then
    /// tether's set is rewritten to Redis's so the runs stay in step.
    fn pop(&mut self, c: &[Vec<u8>], key: &[u8]) {
        let before = self.r.cmd(&[b"SMEMBERS", key]);
        self.t.cmd(&[b"SMEMBERS", key]); // the same lookups on both sides
        let (ra, ta) = self.both(c);
        if (ra.0.is_error() || ta.0.is_error() || shape(&ra.0) != shape(&ta.0)) && ra.1 != ta.1 {
            self.fail(c, "shape", &ra.1, &ta.1);
        }
        let rleft = self.r.cmd(&[b"SMEMBERS", key]);
        let tleft = self.t.cmd(&[b"SMEMBERS", key]);
        if !ta.0.is_error() {
            let before: BTreeSet<Vec<u8>> = bulks(&before).into_iter().collect();
            let popped = bulks(&ta.0);
            let left = bulks(&tleft);
            let mut all: BTreeSet<Vec<u8>> = popped.iter().cloned().collect();
            let n = all.len();
            all.extend(left.iter().cloned());
            if n != popped.len() || all.len() != n + left.len() || all != before {
                self.fail(c, "popped + left != before", &ra.1, &ta.1);
            }
        }
        // Resync: tether's set := Redis's (its events are not compared).
        let events_ctx = format!("{}  ->  {}", show_cmd(c), esc(&ra.1));
        self.events.check(|| events_ctx);
        let members = bulks(&rleft);
        if !matches!(rleft, Resp::Error(_)) && bulks(&tleft) != members {
            self.t.cmd(&[b"DEL", key]);
            if !members.is_empty() {
                let mut args: Vec<&[u8]> = vec![b"SADD", key];
                args.extend(members.iter().map(|m| m.as_slice()));
                self.t.cmd(&args);
            }
            self.events.skip();
        }
        self.history
            .push(format!("{}  ->  {}", show_cmd(c), esc(&ra.1)));
    }

    /// SSCAN from cursor 0 to the end on each side; unions must match.
    fn scan(&mut self, c: &[Vec<u8>]) {
        let mut all = Vec::new();
        let mut raws = Vec::new();
        for side in 0..2 {
            let mut cmd = c.to_vec();
            let mut seen = BTreeSet::new();
            let mut first = None;
            for round in 0.. {
                assert!(round < 10_000, "SSCAN never ended: {}", show_cmd(c));
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                let conn = if side == 0 { &mut self.r } else { &mut self.t };
                let (rep, raw) = {
                    conn.send_cmd(&args);
                    conn.read_raw()
                };
                first.get_or_insert(raw.clone());
                if rep.is_error() {
                    seen.insert((raw, Vec::<u8>::new()));
                    break;
                }
                let parts = rep.array();
                for m in bulks(&parts[1]) {
                    seen.insert((m, Vec::new()));
                }
                if parts[0].as_bytes() == Some(b"0") {
                    break;
                }
                cmd[2] = parts[0].as_bytes().unwrap().to_vec();
            }
            all.push(seen);
            raws.push(first.unwrap());
        }
        if all[0] != all[1] {
            self.fail(c, "full scan", &raws[0], &raws[1]);
        }
        self.history
            .push(format!("{}  ->  {}", show_cmd(c), esc(&raws[0])));
    }

    /// Every key agrees at the end: type and sorted contents.
    fn final_check(&mut self) {
        let rk = sorted(&self.r.cmds(&["KEYS", "*"]), false);
        let tk = sorted(&self.t.cmds(&["KEYS", "*"]), false);
        assert_eq!(
            rk, tk,
            "seed {}: final KEYS differ ({})",
            self.seed, self.label
        );
        for k in bulks(&rk) {
            let typ = self.r.cmd(&[b"TYPE", &k]);
            let read: &[u8] = match typ.as_bytes() {
                Some(b"set") => b"SMEMBERS",
                Some(b"hash") => b"HGETALL",
                _ => b"GET",
            };
            for probe in [&b"TYPE"[..], read] {
                let c = vec![probe.to_vec(), k.clone()];
                let (ra, ta) = self.both(&c);
                if sorted(&ra.0, probe == b"HGETALL") != sorted(&ta.0, probe == b"HGETALL") {
                    self.fail(&c, "final state", &ra.1, &ta.1);
                }
            }
        }
    }
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let mut run = Run {
        r: redis.raw(),
        t: tether.raw(),
        label: tether.label(),
        seed,
        history: Vec::new(),
        events: common::EventCheck::new(redis, tether, seed),
        _srv: std::marker::PhantomData,
    };
    let resp3 = seed % 2 == 1;
    for conn in [&mut run.r, &mut run.t] {
        assert!(!conn.cmds(&["FLUSHALL"]).is_error());
        if resp3 {
            assert!(!conn.cmds(&["HELLO", "3"]).is_error());
        }
    }
    let mut batch = Vec::new();
    for _ in 0..ops {
        let (c, cmp) = g.command();
        match cmp {
            Cmp::Exact | Cmp::Sorted => {
                batch.push((c, cmp));
                if g.chance(0.3) {
                    run.batch(&std::mem::take(&mut batch));
                }
            }
            Cmp::Rand { key, uniq } => {
                run.batch(&std::mem::take(&mut batch));
                run.rand(&c, &key, uniq);
            }
            Cmp::Pop { key } => {
                run.batch(&std::mem::take(&mut batch));
                run.pop(&c, &key);
            }
            Cmp::Scan => {
                run.batch(&std::mem::take(&mut batch));
                run.scan(&c);
            }
        }
        run.events.check(|| {
            let h = &run.history;
            format!(
                "seed {seed} (DIFF_SEED={seed}):\n    {}",
                h[h.len().saturating_sub(8)..].join("\n    ")
            )
        });
    }
    run.batch(&batch);
    run.events.check(|| {
        let h = &run.history;
        format!(
            "seed {seed} (DIFF_SEED={seed}):\n    {}",
            h[h.len().saturating_sub(8)..].join("\n    ")
        )
    });
    run.final_check();
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn set_commands_match_redis() {
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (0..env_num("DIFF_SEEDS", 16))
                .map(|i| base.wrapping_mul(31).wrapping_add(i))
                .collect()
        }
    };
    let ops = env_num("DIFF_OPS", 700) as usize;
    let redis = Server::stock_redis();
    for shards in [1, 4] {
        let tether = Server::start(shards);
        for &seed in &seeds {
            run_seed(&redis, &tether, seed, ops);
        }
    }
}

/// `redis-benchmark -t hset,sadd,spop` against tether: every request
/// answered, no error replies.
#[test]
fn redis_benchmark_hset_sadd_spop() {
    let tether = Server::start(4);
    let out = std::process::Command::new(common::stock_tool("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &tether.port.to_string()])
        .args(["-t", "hset,sadd,spop", "-n", "20000", "-q"])
        .output()
        .expect("run redis-benchmark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redis-benchmark failed:\n{text}");
    for t in ["HSET", "SADD", "SPOP"] {
        assert!(
            text.lines()
                .any(|l| l.contains(t) && l.contains("requests per second")),
            "no {t} result in:\n{text}"
        );
    }
    assert!(
        !text.contains("ERR") && !text.contains("rror"),
        "errors:\n{text}"
    );
    let mut c = tether.raw();
    assert_eq!(c.cmds(&["TYPE", "myhash"]).as_str(), "hash", "{text}");
}
