//! Differential test for the hash family: seeded random HSET ... HSCAN
//! sequences (wrong types, bad arity, bad numbers included) sent to stock
//! `redis-server` and to tether (1 and 4 shards), RESP2 or RESP3 by seed.
//! Raw replies must match byte for byte, except: HKEYS/HVALS/HGETALL are
//! compared sorted; HRANDFIELD by shape and membership (sorted when it
//! returns the whole hash); HSCAN by the union of a full iteration.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_hash`;
//! `DIFF_SEEDS` / `DIFF_OPS` change the number of seeds / commands per seed.
mod common;

use common::Gen;

use std::collections::BTreeSet;

use common::{RawConn, Resp, Server, esc, read_reply};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const KEYS: &[&str] = &["h0", "h1", "h2", "h3", "{t}h1", "{t}h2", "str", "{t}str"];
const FIELDS: &[&[u8]] = &[
    b"f0",
    b"f1",
    b"f2",
    b"f3",
    b"n",
    b"fl",
    b"",
    b"\x00\r\n",
    b"big",
];
const VALUES: &[&[u8]] = &[
    b"0",
    b"1",
    b"-17",
    b"42",
    b"1.5",
    b"-2.25",
    b"3.0e3",
    b"",
    b"abc",
    b" 12",
    b"0x10",
    b"\x00\xffbin",
];
const INCRS: &[&[u8]] = &[b"1", b"-1", b"100", b"abc", b"", b"1.5", b" 1"];
/// Integer extremes, only ever stored in or added to field `n`, which no
/// float command touches (tether's floats are doubles, Redis's long doubles).
const EXTREMES: &[&[u8]] = &[b"9223372036854775807", b"-9223372036854775808", b"-2"];
const FINCRS: &[&[u8]] = &[
    b"1.5", b"-0.25", b"3", b"1e2", b"abc", b"inf", b"-0.125", b"", b"0x10",
];
const PATTERNS: &[&str] = &["*", "f*", "f[0-1]", "?", "", "*l*", "nomatch"];

#[derive(Clone, Debug)]
enum Cmp {
    Exact,
    Sorted,
    /// HRANDFIELD on this key; `withvalues`, count unique and >= 0.
    Rand {
        key: Vec<u8>,
        withvalues: bool,
        uniq: bool,
    },
    Scan,
}

impl Gen {
    fn field(&mut self) -> Vec<u8> {
        self.pick(FIELDS).to_vec()
    }
    fn value(&mut self) -> Vec<u8> {
        if self.chance(0.03) {
            return vec![b'v'; 100]; // past the listpack value limit
        }
        self.pick(VALUES).to_vec()
    }

    fn command(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let k = self.pick(KEYS).as_bytes().to_vec();
        let mut c: Vec<Vec<u8>> = Vec::new();
        let mut cmp = Cmp::Exact;
        macro_rules! push { ($($e:expr),*) => {{ $( c.push(AsRef::<[u8]>::as_ref(&$e).to_vec()); )* }} }
        match self.rng.random_range(0..100) {
            0..=17 => {
                push!(if self.chance(0.8) { "HSET" } else { "HMSET" }, k);
                for _ in 0..self.rng.random_range(1..4) {
                    let (f, v) = (self.field(), self.value());
                    push!(f, v);
                }
                if self.chance(0.05) {
                    c.pop();
                }
            }
            18..=20 => {
                let (f, v) = (self.field(), self.value());
                push!("HSETNX", k, f, v);
            }
            21..=27 => {
                let f = self.field();
                push!("HGET", k, f);
            }
            28..=30 => {
                push!("HMGET", k);
                for _ in 0..self.rng.random_range(1..4) {
                    let f = self.field();
                    push!(f);
                }
            }
            31..=36 => {
                push!("HDEL", k);
                for _ in 0..self.rng.random_range(1..3) {
                    let f = self.field();
                    push!(f);
                }
            }
            37..=39 => push!("HLEN", k),
            40..=41 => {
                let f = self.field();
                push!("HSTRLEN", k, f);
            }
            42..=43 => {
                let f = self.field();
                push!("HEXISTS", k, f);
            }
            44..=49 => {
                push!(self.pick(&["HKEYS", "HVALS", "HGETALL"]), k);
                cmp = Cmp::Sorted;
            }
            50..=57 => {
                let (f, n) = match self.chance(0.3) {
                    true => (b"n".to_vec(), self.pick(EXTREMES)),
                    false => (self.field(), self.pick(INCRS)),
                };
                push!("HINCRBY", k, f, n);
            }
            58..=59 => {
                let n = self.pick(EXTREMES);
                push!("HSET", k, "n", n);
            }
            60..=63 => {
                let mut f = self.field();
                if f == b"n" {
                    f = b"f1".to_vec();
                }
                let n = self.pick(FINCRS);
                push!("HINCRBYFLOAT", k, f, n);
            }
            64..=71 => {
                push!("HRANDFIELD", k);
                let n: i64 = match self.rng.random_range(0..10) {
                    0 => 0,
                    1..=3 => self.rng.random_range(-6..0),
                    _ => self.rng.random_range(1..12),
                };
                let mut withvalues = false;
                match self.rng.random_range(0..12) {
                    0..=3 => {}
                    4..=8 => {
                        push!(n.to_string(), "WITHVALUES");
                        withvalues = true;
                    }
                    9 => push!(self.pick(&["abc", "-9223372036854775808", "1.5"])),
                    10 => push!("3", "WITHVALUES", "x"),
                    _ => push!("2", "bogus"),
                }
                if c.len() == 2 && self.chance(0.7) {
                    push!(n.to_string());
                }
                cmp = Cmp::Rand {
                    key: k.clone(),
                    withvalues,
                    uniq: n >= 0,
                };
            }
            72..=77 => {
                push!("HSCAN", k, "0");
                if self.chance(0.4) {
                    push!("MATCH", self.pick(PATTERNS));
                }
                if self.chance(0.5) {
                    push!("COUNT", self.pick(&["1", "3", "100"]));
                }
                cmp = Cmp::Scan;
            }
            78..=80 => match self.rng.random_range(0..7) {
                0 => push!("HSCAN", k, "abc"),
                1 => push!("HSCAN", k, "0", "COUNT", "0"),
                2 => push!("HSCAN", k, "0", "COUNT", "x"),
                3 => push!("HSCAN", k, "0", "TYPE", "hash"),
                4 => push!("HSCAN", k, " 0"),
                5 => push!("HSCAN", k, "0", "MATCH"),
                _ => push!("HSCAN", k, "18446744073709551616"),
            },
            81..=83 => {
                let v = self.value();
                push!("SET", k, v);
            }
            84..=85 => push!("DEL", k),
            86..=87 => {
                push!("SADD", k, "m");
            }
            88..=97 => return self.bad_arity(),
            _ => push!("TYPE", k),
        }
        if self.chance(0.1) {
            c[0] = c[0].to_ascii_lowercase();
        }
        (c, cmp)
    }

    fn bad_arity(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let forms: &[&[&str]] = &[
            &["HSET", "h1"],
            &["HSET", "h1", "f"],
            &["HSET", "h1", "f", "v", "g"],
            &["HMSET", "h1", "f"],
            &["HMSET", "h1", "f", "v", "g"],
            &["HSETNX", "h1", "f"],
            &["HGET", "h1"],
            &["HMGET", "h1"],
            &["HDEL", "h1"],
            &["HLEN"],
            &["HLEN", "h1", "x"],
            &["HSTRLEN", "h1"],
            &["HEXISTS", "h1"],
            &["HKEYS"],
            &["HVALS", "h1", "x"],
            &["HGETALL"],
            &["HINCRBY", "h1", "f"],
            &["HINCRBYFLOAT", "h1", "f", "1", "2"],
            &["HRANDFIELD"],
            &["HSCAN", "h1"],
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
            let pairs = c[0].eq_ignore_ascii_case(b"hgetall");
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

    /// HRANDFIELD: same shape; every returned field (and value) is in the
    /// hash; distinct for a count >= 0; the whole hash when count >= size.
    fn rand(&mut self, c: &[Vec<u8>], key: &[u8], withvalues: bool, uniq: bool) {
        let (ra, ta) = self.both(c);
        if (ra.0.is_error() || ta.0.is_error() || shape(&ra.0) != shape(&ta.0)) && ra.1 != ta.1 {
            self.fail(c, "shape", &ra.1, &ta.1);
        }
        let state = self.r.cmd(&[b"HGETALL", key]);
        self.t.cmd(&[b"HGETALL", key]); // the same lookups on both sides
        let pairs: BTreeSet<(Vec<u8>, Vec<u8>)> = bulks(&state)
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        let items = bulks(&ta.0);
        let step = if withvalues { 2 } else { 1 };
        let got: Vec<&[Vec<u8>]> = items.chunks(step).collect();
        for it in &got {
            let found = pairs
                .iter()
                .any(|(f, v)| *f == it[0] && (!withvalues || *v == it[1]));
            if !found && !matches!(ta.0, Resp::Error(_)) {
                self.fail(c, "not a member", &ra.1, &ta.1);
            }
        }
        let distinct: BTreeSet<_> = got.iter().collect();
        if uniq && distinct.len() != got.len() {
            self.fail(c, "repeats", &ra.1, &ta.1);
        }
        if uniq
            && got.len() == pairs.len()
            && sorted(&ra.0, withvalues) != sorted(&ta.0, withvalues)
        {
            self.fail(c, "whole hash", &ra.1, &ta.1);
        }
        self.history
            .push(format!("{}  ->  {}", show_cmd(c), esc(&ra.1)));
    }

    /// HSCAN from cursor 0 to the end on each side; unions must match.
    fn scan(&mut self, c: &[Vec<u8>]) {
        let mut all = Vec::new();
        let mut raws = Vec::new();
        for side in 0..2 {
            let mut cmd = c.to_vec();
            let mut seen = BTreeSet::new();
            let mut first = None;
            for round in 0.. {
                assert!(round < 10_000, "HSCAN never ended: {}", show_cmd(c));
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                let conn = if side == 0 { &mut self.r } else { &mut self.t };
                let (rep, raw) = {
                    conn.send_cmd(&args);
                    conn.read_raw()
                };
                first.get_or_insert(raw.clone());
                if rep.is_error() {
                    seen.insert((raw, Vec::new()));
                    break;
                }
                let parts = rep.array();
                for p in bulks(&parts[1]).chunks(2) {
                    seen.insert((p[0].clone(), p[1].clone()));
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
            for probe in [&b"TYPE"[..], b"HGETALL"] {
                let c = vec![probe.to_vec(), k.clone()];
                let (ra, ta) = self.both(&c);
                if sorted(&ra.0, true) != sorted(&ta.0, true) {
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
            Cmp::Rand {
                key,
                withvalues,
                uniq,
            } => {
                run.batch(&std::mem::take(&mut batch));
                run.rand(&c, &key, withvalues, uniq);
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
fn hash_commands_match_redis() {
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
