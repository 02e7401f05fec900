//! Differential test for sorted sets: seeded random zset commands (wrong
//! types, bad arguments, infinities, exclusive and lex ranges, WITHSCORES,
//! LIMIT, multi-key operations over keys on different shards) sent to stock
//! `redis-server` and to tether (1 and 4 shards); raw replies must match byte
//! for byte. Then `redis-benchmark -t zadd,zpopmin` against tether.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_zset`;
//! `DIFF_SEEDS=<n>` seeds (default 6), `DIFF_OPS=<n>` commands each (400).
//!
//! Only deterministic commands are generated: sets stay under 128 members
//! (Redis's listpack, so ZSCAN returns everything in order), ZRANDMEMBER
//! asks for 0 or more members than exist, blocking pops run right after a
//! ZADD to their first key, lex ranges run on keys whose scores are all 0,
//! and scores are dyadic so sums are exact.
mod common;

use common::Gen;

use common::{RawConn, Resp, Server, esc, read_reply};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;

/// Keys spread over shards: `z*` hash apart, `{t}*` share a slot.
const KEYS: &[&str] = &["z1", "z2", "z3", "{t}a", "{t}b", "str"];
/// Keys only ever holding score 0, for lex ranges.
const LEX_KEYS: &[&str] = &["lex1", "lex2"];
const MEMBERS: &[&str] = &["a", "b", "c", "d", "m1", "m10", "m2", "", "x y", "zz"];
const SCORES: &[&str] = &[
    "0", "1", "-1", "2.5", "-3.25", "10", "7", "0.125", "inf", "-inf", "+inf", "1e3", "0x10",
    "abc", "nan", "1e400", " 1", "(1", "",
];
const BOUNDS: &[&str] = &[
    "-inf", "+inf", "inf", "(1", "1", "(2.5", "0", "10", "(-inf", "(10", "abc", "", "(", "( 1",
    "-1", "nan", "(7",
];
const LEX: &[&str] = &[
    "-", "+", "[a", "(b", "[m1", "(m2", "[", "(", "a", "", "+x", "[zz", "(c",
];
const INTS: &[&str] = &["0", "1", "-1", "2", "-2", "5", "100", "-100", "x", "1.5"];

impl Gen {
    fn key(&mut self) -> &'static str {
        if self.chance(0.1) {
            self.pick(LEX_KEYS)
        } else {
            self.pick(KEYS)
        }
    }
    fn score(&mut self) -> &'static str {
        if self.chance(0.85) {
            self.pick(&SCORES[..13])
        } else {
            self.pick(SCORES)
        }
    }
    fn keys(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.key().to_string()).collect()
    }

    /// One or two commands (a blocking pop comes after a ZADD that feeds it).
    fn commands(&mut self) -> Vec<Vec<String>> {
        let s = |x: &[&str]| x.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let k = self.key();
        let r = self.rng.random_range(0..100);
        let c: Vec<String> = match r {
            0..=19 => {
                let mut c = s(&["ZADD", k]);
                for o in ["NX", "XX", "GT", "LT", "CH", "INCR"] {
                    if self.chance(0.12) {
                        c.push(o.into());
                    }
                }
                let n = if self.chance(0.9) {
                    self.rng.random_range(1..5)
                } else {
                    0
                };
                for _ in 0..n {
                    let sc = if LEX_KEYS.contains(&k) {
                        "0"
                    } else {
                        self.score()
                    };
                    c.push(sc.into());
                    c.push(self.pick(MEMBERS).into());
                }
                if self.chance(0.05) {
                    c.push("a".into());
                }
                c
            }
            20..=23 if !LEX_KEYS.contains(&k) => {
                let (sc, m) = (self.score(), self.pick(MEMBERS));
                s(&["ZINCRBY", k, sc, m])
            }
            20..=27 => {
                let mut c = s(&["ZREM", k]);
                for _ in 0..self.rng.random_range(1..4) {
                    c.push(self.pick(MEMBERS).into());
                }
                c
            }
            28..=30 => s(&["ZCARD", k]),
            31..=33 => s(&["ZSCORE", k, self.pick(MEMBERS)]),
            34..=35 => s(&["ZMSCORE", k, self.pick(MEMBERS), self.pick(MEMBERS)]),
            36..=38 => {
                let cmd = if self.chance(0.5) {
                    "ZRANK"
                } else {
                    "ZREVRANK"
                };
                s(&[cmd, k, self.pick(MEMBERS)])
            }
            39..=41 => s(&["ZCOUNT", k, self.pick(BOUNDS), self.pick(BOUNDS)]),
            42..=43 => s(&[
                "ZLEXCOUNT",
                self.pick(LEX_KEYS),
                self.pick(LEX),
                self.pick(LEX),
            ]),
            44..=58 => self.range(k),
            59..=62 => {
                let r = self.rng.random_range(0..3);
                match r {
                    0 => s(&["ZREMRANGEBYRANK", k, self.pick(INTS), self.pick(INTS)]),
                    1 => s(&["ZREMRANGEBYSCORE", k, self.pick(BOUNDS), self.pick(BOUNDS)]),
                    _ => {
                        let lk = self.pick(LEX_KEYS);
                        s(&["ZREMRANGEBYLEX", lk, self.pick(LEX), self.pick(LEX)])
                    }
                }
            }
            63..=67 => {
                let cmd = if self.chance(0.5) {
                    "ZPOPMIN"
                } else {
                    "ZPOPMAX"
                };
                let mut c = s(&[cmd, k]);
                if self.chance(0.5) {
                    c.push(self.pick(INTS).into());
                }
                c
            }
            68..=71 => {
                let nk = self.rng.random_range(1..4);
                let mut c = s(&["ZMPOP", &nk.to_string()]);
                c.extend(self.keys(nk));
                c.push(self.pick(&["MIN", "MAX", "max", "mid"]).into());
                if self.chance(0.4) {
                    c.push("COUNT".into());
                    c.push(self.pick(INTS).into());
                }
                c
            }
            72..=75 => {
                // A blocking pop that must not block: feed its first key.
                let feed = self.pick(&KEYS[..5]);
                let bad = self.chance(0.2);
                let timeout = if bad {
                    self.pick(&["-1", "abc", "-0.5"])
                } else {
                    "0"
                };
                let mut c = if self.chance(0.6) {
                    let cmd = if self.chance(0.5) {
                        "BZPOPMIN"
                    } else {
                        "BZPOPMAX"
                    };
                    s(&[cmd, feed])
                } else {
                    s(&[
                        "BZMPOP",
                        timeout,
                        "2",
                        feed,
                        self.key(),
                        self.pick(&["MIN", "MAX"]),
                    ])
                };
                if c[0] != "BZMPOP" {
                    c.push(self.key().into());
                    c.push(timeout.into());
                }
                return vec![s(&["ZADD", feed, "5", "fed"]), c];
            }
            76..=78 => {
                let mut c = s(&["ZRANDMEMBER", k]);
                if self.chance(0.8) {
                    c.push(self.pick(&["0", "1000", "500", "x"]).into());
                    if self.chance(0.5) {
                        c.push(self.pick(&["WITHSCORES", "withscores", "bad"]).into());
                    }
                }
                if c.len() == 2 {
                    // A single random member is only deterministic when absent.
                    c[1] = "missing".into();
                }
                c
            }
            79..=81 => {
                let mut c = s(&["ZSCAN", k, self.pick(&["0", "0", "x", "-1", ""])]);
                if self.chance(0.4) {
                    c.extend(s(&["MATCH", self.pick(&["m*", "*", "[ab]", "x*"])]));
                }
                if self.chance(0.3) {
                    c.extend(s(&["COUNT", self.pick(&["5", "0", "x"])]));
                }
                c
            }
            _ => self.setop(),
        };
        vec![c]
    }

    fn range(&mut self, k: &str) -> Vec<String> {
        let s = |x: &[&str]| x.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let lk = self.pick(LEX_KEYS);
        let r = self.rng.random_range(0..8);
        let mut c = match r {
            0 => s(&["ZRANGE", k, self.pick(INTS), self.pick(INTS)]),
            1 => s(&["ZREVRANGE", k, self.pick(INTS), self.pick(INTS)]),
            2 => s(&["ZRANGEBYSCORE", k, self.pick(BOUNDS), self.pick(BOUNDS)]),
            3 => s(&["ZREVRANGEBYSCORE", k, self.pick(BOUNDS), self.pick(BOUNDS)]),
            4 => s(&["ZRANGEBYLEX", lk, self.pick(LEX), self.pick(LEX)]),
            5 => s(&["ZREVRANGEBYLEX", lk, self.pick(LEX), self.pick(LEX)]),
            6 => {
                let dst = self.pick(&KEYS[..5]);
                let by = self.pick(&["", "BYSCORE", "BYLEX"]);
                let src = if by == "BYLEX" { lk } else { k };
                let (lo, hi) = match by {
                    "BYSCORE" => (self.pick(BOUNDS), self.pick(BOUNDS)),
                    "BYLEX" => (self.pick(LEX), self.pick(LEX)),
                    _ => (self.pick(INTS), self.pick(INTS)),
                };
                let mut c = s(&["ZRANGESTORE", dst, src, lo, hi]);
                if !by.is_empty() {
                    c.push(by.into());
                }
                c
            }
            _ => {
                let by = self.pick(&["", "BYSCORE", "BYLEX"]);
                let src = if by == "BYLEX" { lk } else { k };
                let (lo, hi) = match by {
                    "BYSCORE" => (self.pick(BOUNDS), self.pick(BOUNDS)),
                    "BYLEX" => (self.pick(LEX), self.pick(LEX)),
                    _ => (self.pick(INTS), self.pick(INTS)),
                };
                let mut c = s(&["ZRANGE", src, lo, hi]);
                if !by.is_empty() {
                    c.push(by.into());
                }
                if self.chance(0.4) {
                    c.push("REV".into());
                }
                c
            }
        };
        if self.chance(0.4) && c[0] != "ZRANGESTORE" {
            c.push("WITHSCORES".into());
        }
        if self.chance(0.3) {
            c.extend(s(&["LIMIT", self.pick(INTS), self.pick(INTS)]));
        }
        if self.chance(0.03) {
            c.push("BOGUS".into());
        }
        c
    }

    fn setop(&mut self) -> Vec<String> {
        let ops = [
            "ZUNIONSTORE",
            "ZINTERSTORE",
            "ZDIFFSTORE",
            "ZUNION",
            "ZINTER",
            "ZDIFF",
            "ZINTERCARD",
        ];
        let op = self.pick(&ops);
        let mut c = vec![op.to_string()];
        if op.ends_with("STORE") {
            c.push(self.pick(&KEYS[..5]).into());
        }
        let nk: usize = self.rng.random_range(1..4);
        let announced = match self.rng.random_range(0..20) {
            0 => "0".to_string(),
            1 => "9".to_string(),
            2 => "x".to_string(),
            _ => nk.to_string(),
        };
        c.push(announced);
        c.extend(self.keys(nk));
        if self.chance(0.3) {
            c.push("WEIGHTS".into());
            for _ in 0..nk {
                c.push(
                    self.pick(&["1", "2", "3", "0.5", "x", "inf", "0", "-1"])
                        .into(),
                );
            }
        }
        if self.chance(0.3) {
            c.push("AGGREGATE".into());
            c.push(self.pick(&["SUM", "MIN", "max", "avg"]).into());
        }
        if self.chance(0.3) {
            c.push("WITHSCORES".into());
        }
        if op == "ZINTERCARD" && self.chance(0.5) {
            c.push("LIMIT".into());
            c.push(self.pick(&["0", "1", "2", "-1"]).into());
        }
        c
    }
}

fn show(c: &[String]) -> String {
    c.iter()
        .map(|a| format!("\"{}\"", esc(a.as_bytes())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn send(conn: &mut RawConn, c: &[String]) {
    let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
    conn.stream.write_all(&common::encode(&args)).expect("send");
}

/// Sends `c` to both servers; their raw replies.
fn exchange(r: &mut RawConn, t: &mut RawConn, c: &[String]) -> (Vec<u8>, Vec<u8>) {
    send(r, c);
    send(t, c);
    let ra = read_reply(&mut r.reader).expect("redis reply");
    let ta = read_reply(&mut t.reader)
        .unwrap_or_else(|e| panic!("tether: no reply to {}: {e}", show(c)));
    (ra.1, ta.1)
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let mut r = redis.raw();
    let mut t = tether.raw();
    // Odd seeds speak RESP3, so pair replies and doubles are checked too.
    let resp3 = seed % 2 == 1;
    for c in [&mut r, &mut t] {
        assert_eq!(c.cmds(&["FLUSHALL"]), Resp::Simple(b"OK".to_vec()));
        c.cmds(&["SET", "str", "v"]);
        if resp3 {
            c.cmds(&["HELLO", "3"]);
        }
    }
    let mut events = common::EventCheck::new(redis, tether, seed);
    let mut history: Vec<String> = Vec::new();
    let mut done = 0;
    while done < ops {
        for c in g.commands() {
            let (ra, ta) = exchange(&mut r, &mut t, &c);
            if ra != ta {
                let recent = history[history.len().saturating_sub(30)..].join("\n    ");
                panic!(
                    "\nZSET MISMATCH (seed {seed}, op #{done}, {}, resp{}; reproduce with DIFF_SEED={seed})\n\
                     command: {}\nredis:   {}\ntether:  {}\npreceding:\n    {recent}\n",
                    tether.label(),
                    if resp3 { 3 } else { 2 },
                    show(&c),
                    esc(&ra),
                    esc(&ta),
                );
            }
            history.push(format!("{}  ->  {}", show(&c), esc(&ra)));
            done += 1;
            events.check(|| format!("seed {seed} (DIFF_SEED={seed}): {}", history[done - 1]));
        }
    }
    // Final state: every key's full contents agree.
    for k in KEYS.iter().chain(LEX_KEYS) {
        let cmd = ["ZRANGE", k, "0", "-1", "WITHSCORES"];
        let (a, b) = (r.cmds(&cmd), t.cmds(&cmd));
        assert_eq!(a, b, "seed {seed}: final contents of {k} differ");
    }
}

fn seeds() -> Vec<u64> {
    let env = |n: &str| std::env::var(n).ok().and_then(|s| s.parse::<u64>().ok());
    match env("DIFF_SEED") {
        Some(s) => vec![s],
        None => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000;
            (base..base + env("DIFF_SEEDS").unwrap_or(6)).collect()
        }
    }
}

fn differential(shards: usize) {
    let ops = std::env::var("DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let redis = Server::stock_redis();
    let tether = Server::tether(shards);
    for seed in seeds() {
        eprintln!("diff_zset: {} seed {seed} ({ops} ops)", tether.label());
        run_seed(&redis, &tether, seed, ops);
    }
}

#[test]
fn zset_differential_one_shard() {
    differential(1);
}

#[test]
fn zset_differential_four_shards() {
    differential(4);
}

/// `redis-benchmark -t zadd,zpopmin` runs clean against tether.
#[test]
fn zset_benchmark_runs_clean() {
    let s = Server::tether(2);
    let out = std::process::Command::new(common::stock_tool("redis-benchmark"))
        .args([
            "-p",
            &s.port.to_string(),
            "-t",
            "zadd,zpopmin",
            "-n",
            "20000",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed:\n{text}");
    assert!(
        !text.to_lowercase().contains("error"),
        "errors in redis-benchmark output:\n{text}"
    );
    for t in ["ZADD", "ZPOPMIN"] {
        assert!(text.contains(t), "no {t} result in:\n{text}");
    }
    let mut c = s.raw();
    assert_eq!(c.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
}

/// Scores print as Redis 7.0's `%.17g`.
#[test]
fn zset_score_formatting() {
    let redis = Server::stock_redis();
    let tether = Server::tether(1);
    let cmds: &[&[&str]] = &[
        &[
            "ZADD", "f", "1.1", "a", "0.1", "b", "-0", "c", "1e17", "d", "1e-5", "e",
        ],
        &[
            "ZADD",
            "f",
            "123456789.123",
            "g",
            "3e300",
            "h",
            "-2.5e-7",
            "i",
        ],
        &["ZRANGE", "f", "0", "-1", "WITHSCORES"],
        &["ZSCORE", "f", "a"],
        &["ZINCRBY", "f", "0.2", "b"],
        &["ZSCAN", "f", "0"],
    ];
    let (mut r, mut t) = (redis.raw(), tether.raw());
    for c in cmds {
        let (a, b) = (r.cmds(c), t.cmds(c));
        assert_eq!(a, b, "{c:?}");
    }
}

/// Sorted sets of thousands of members (Redis's skiplist encoding; a tree
/// of several levels in tether), updated, ranked, ranged and trimmed by
/// seeded random commands: raw replies match stock Redis byte for byte.
/// The random commands above keep sets under ten members; this one covers
/// node splits, merges and rank arithmetic across levels.
#[test]
fn zset_large_sets_differential() {
    let redis = Server::stock_redis();
    let tether = Server::tether(1);
    for seed in seeds() {
        eprintln!("diff_zset large: seed {seed}");
        large_sets_seed(&redis, &tether, seed);
    }
}

fn large_sets_seed(redis: &Server, tether: &Server, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut r, mut t) = (redis.raw(), tether.raw());
    let mut history: Vec<String> = Vec::new();
    let mut both = |c: Vec<String>, history: &mut Vec<String>| {
        let (ra, ta) = exchange(&mut r, &mut t, &c);
        if ra != ta {
            let recent = history[history.len().saturating_sub(20)..].join("\n    ");
            panic!(
                "\nLARGE ZSET MISMATCH (seed {seed}; reproduce with DIFF_SEED={seed})\n\
                 command: {}\nredis:   {}\ntether:  {}\npreceding:\n    {recent}\n",
                show(&c),
                esc(&ra),
                esc(&ta),
            );
        }
        let mut shown = esc(&ra);
        shown.truncate(120);
        history.push(format!("{}  ->  {shown}", show(&c)));
    };
    both(vec!["FLUSHALL".into()], &mut history);
    // Scores from a small range, so ties (ordered by member) are common;
    // `lex` holds only score 0.
    let member = |rng: &mut StdRng| format!("m{}", rng.random_range(0..6000));
    let score = |rng: &mut StdRng| (rng.random_range(0..800) as f64 / 4.0).to_string();
    let bound = |rng: &mut StdRng| {
        let ex = if rng.random_bool(0.3) { "(" } else { "" };
        format!("{ex}{}", rng.random_range(-4..820) as f64 / 4.0)
    };
    let lex = |rng: &mut StdRng| match rng.random_range(0..12) {
        0 => "-".to_string(),
        1 => "+".to_string(),
        _ => {
            let ex = if rng.random_bool(0.5) { "(" } else { "[" };
            format!("{ex}m{}", rng.random_range(0..6000))
        }
    };
    for _ in 0..10 {
        for k in ["big", "lex"] {
            let mut c = vec!["ZADD".to_string(), k.to_string()];
            for _ in 0..400 {
                c.push(if k == "lex" {
                    "0".into()
                } else {
                    score(&mut rng)
                });
                c.push(member(&mut rng));
            }
            both(c, &mut history);
        }
    }
    let s = |x: &[&str]| x.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    for _ in 0..3000 {
        let rank = |rng: &mut StdRng| rng.random_range(-4500..4500).to_string();
        let c = match rng.random_range(0..100) {
            0..=29 => {
                let (sc, m) = (score(&mut rng), member(&mut rng));
                s(&["ZADD", "big", &sc, &m])
            }
            30..=34 => {
                let m = member(&mut rng);
                s(&["ZADD", "lex", "0", &m])
            }
            35..=39 => {
                let m = member(&mut rng);
                s(&["ZINCRBY", "big", "7.25", &m])
            }
            40..=49 => {
                let (k, m) = (
                    if rng.random_bool(0.7) { "big" } else { "lex" },
                    member(&mut rng),
                );
                s(&["ZREM", k, &m])
            }
            50..=57 => {
                let cmd = if rng.random_bool(0.5) {
                    "ZRANK"
                } else {
                    "ZREVRANK"
                };
                let m = member(&mut rng);
                s(&[cmd, "big", &m])
            }
            58..=63 => s(&["ZCOUNT", "big", &bound(&mut rng), &bound(&mut rng)]),
            64..=66 => s(&["ZLEXCOUNT", "lex", &lex(&mut rng), &lex(&mut rng)]),
            67..=72 => {
                let a: i64 = rng.random_range(-4500..4500);
                let b = a + rng.random_range(0..12);
                let cmd = if rng.random_bool(0.5) {
                    "ZRANGE"
                } else {
                    "ZREVRANGE"
                };
                s(&[cmd, "big", &a.to_string(), &b.to_string(), "WITHSCORES"])
            }
            73..=78 => {
                let (lo, hi) = (bound(&mut rng), bound(&mut rng));
                let off = rng.random_range(0..30).to_string();
                if rng.random_bool(0.5) {
                    s(&[
                        "ZRANGEBYSCORE",
                        "big",
                        &lo,
                        &hi,
                        "WITHSCORES",
                        "LIMIT",
                        &off,
                        "8",
                    ])
                } else {
                    s(&["ZREVRANGEBYSCORE", "big", &hi, &lo, "LIMIT", &off, "8"])
                }
            }
            79..=82 => {
                let (lo, hi) = (lex(&mut rng), lex(&mut rng));
                if rng.random_bool(0.5) {
                    s(&["ZRANGEBYLEX", "lex", &lo, &hi, "LIMIT", "0", "6"])
                } else {
                    s(&["ZREVRANGEBYLEX", "lex", &hi, &lo, "LIMIT", "3", "6"])
                }
            }
            83..=85 => {
                let a: i64 = rng.random_range(-4500..4500);
                let b = a + rng.random_range(0..70);
                s(&["ZREMRANGEBYRANK", "big", &a.to_string(), &b.to_string()])
            }
            86..=88 => {
                let lo: i64 = rng.random_range(0..800);
                let hi = lo + rng.random_range(0..6);
                let (lo, hi) = (
                    (lo as f64 / 4.0).to_string(),
                    format!("({}", hi as f64 / 4.0),
                );
                s(&["ZREMRANGEBYSCORE", "big", &lo, &hi])
            }
            89..=90 => {
                let lo = format!("[m{}", rng.random_range(0..6000));
                let hi = format!("(m{}", rng.random_range(0..6000));
                s(&["ZREMRANGEBYLEX", "lex", &lo, &hi])
            }
            91..=94 => {
                let cmd = if rng.random_bool(0.5) {
                    "ZPOPMIN"
                } else {
                    "ZPOPMAX"
                };
                let n = rng.random_range(1..20).to_string();
                s(&[cmd, "big", &n])
            }
            95..=97 => s(&["ZRANGE", "big", &rank(&mut rng), &rank(&mut rng), "REV"]),
            _ => s(&["ZCARD", if rng.random_bool(0.5) { "big" } else { "lex" }]),
        };
        both(c, &mut history);
    }
    for k in ["big", "lex"] {
        both(s(&["ZCARD", k]), &mut history);
        both(s(&["ZRANGE", k, "0", "-1", "WITHSCORES"]), &mut history);
    }
}
