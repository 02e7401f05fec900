//! Differential test for the list commands: seeded random LPUSH/LPOP/LRANGE/
//! LPOS/LMOVE/LMPOP/... sequences (wrong types, bad indices and counts,
//! bad arity, multi-key moves within and across shards included) sent to
//! stock `redis-server` and to tether with 1 and 4 shards; raw RESP replies
//! must match byte for byte. Odd seeds run in RESP3 (null forms differ).
//!
//! Blocking commands appear only right after a push to one of their keys in
//! the same pipeline, so they never block and must act like the
//! non-blocking forms.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_list`;
//! `DIFF_SEEDS=<n>` seeds (default 8), `DIFF_OPS=<n>` commands per seed
//! (default 700), `DIFF_TRACE=1` prints every command with Redis's reply.
mod common;

use common::Gen;

use std::io::Write;
use std::process::Command;

use common::{RawConn, Resp, Server, esc, read_reply, stock_tool};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// List keys, hash-tagged groups (same shard) and plain keys (spread over
/// shards); `s1`/`s2` are usually strings for WRONGTYPE.
const KEYS: &[&str] = &[
    "l1", "l2", "l3", "{t}a", "{t}b", "{t}c", "nokey", "s1", "s2",
];
const VALUES: &[&str] = &["a", "b", "c", "a", "", "1", "-1", "x y", "b"];
const INDICES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "3",
    "5",
    "-5",
    "100",
    "-100",
    "abc",
    "",
    "1.5",
    "+1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
];
const COUNTS: &[&str] = &[
    "1",
    "2",
    "3",
    "10",
    "0",
    "-1",
    "-2",
    "abc",
    "",
    "9223372036854775807",
    "-9223372036854775808",
];
const TIMEOUTS: &[&str] = &[
    "0", "1", "0.5", "0.001", "-1", "abc", "1e400", "-0.0001", "0x10",
];
const DIRS: &[&str] = &["LEFT", "RIGHT", "left", "Right", "up"];

type Cmd = Vec<Vec<u8>>;

impl Gen {
    fn n(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.random_range(lo..=hi)
    }
    /// A key; the string keys rarely, so multi-key commands still succeed.
    fn key(&mut self) -> &'static str {
        if self.chance(0.08) {
            self.pick(&["s1", "s2"])
        } else {
            self.pick(&KEYS[..7])
        }
    }
    /// Mostly valid, sometimes from a list of bad values (`good` first).
    fn mostly<'a>(&mut self, xs: &[&'a str], good: usize) -> &'a str {
        if self.chance(0.85) {
            self.pick(&xs[..good])
        } else {
            self.pick(xs)
        }
    }
    /// Mostly in-range positions, sometimes a malformed one.
    fn idx(&mut self) -> &'static str {
        if self.chance(0.7) {
            self.pick(&INDICES[..8])
        } else {
            self.pick(INDICES)
        }
    }

    /// One step: usually a single command, sometimes a push followed by a
    /// blocking command on that key (so it never blocks).
    fn step(&mut self) -> Vec<Cmd> {
        let mut c: Vec<String> = Vec::new();
        macro_rules! push { ($($e:expr),*) => {{ $( c.push($e.to_string()); )* }} }
        let k = self.key();
        match self.rng.random_range(0..100) {
            0..=13 => {
                push!(self.pick(&["LPUSH", "RPUSH", "lpush", "RPUSH"]), k);
                for _ in 0..self.n(1, 4) {
                    push!(self.pick(VALUES));
                }
            }
            14..=17 => {
                push!(self.pick(&["LPUSHX", "RPUSHX"]), k);
                for _ in 0..self.n(1, 3) {
                    push!(self.pick(VALUES));
                }
            }
            18..=27 => {
                push!(self.pick(&["LPOP", "RPOP"]), k);
                if self.chance(0.5) {
                    push!(self.mostly(COUNTS, 5));
                }
                if self.chance(0.03) {
                    push!("1");
                }
            }
            28..=30 => push!("LLEN", k),
            31..=38 => push!("LRANGE", k, self.idx(), self.idx()),
            39..=42 => push!("LINDEX", k, self.idx()),
            43..=46 => push!("LSET", k, self.idx(), self.pick(VALUES)),
            47..=50 => push!(
                "LINSERT",
                k,
                self.mostly(&["BEFORE", "AFTER", "after", "middle"], 3),
                self.pick(VALUES),
                self.pick(VALUES)
            ),
            51..=54 => push!("LREM", k, self.pick(COUNTS), self.pick(VALUES)),
            55..=57 => push!("LTRIM", k, self.idx(), self.idx()),
            58..=65 => {
                push!("LPOS", k, self.pick(VALUES));
                for _ in 0..self.n(0, 3) {
                    let opt = self.mostly(&["RANK", "COUNT", "MAXLEN", "count", "BOGUS"], 4);
                    push!(opt);
                    if self.chance(0.97) {
                        let v = if opt.eq_ignore_ascii_case("rank") {
                            self.mostly(
                                &[
                                    "1",
                                    "2",
                                    "-1",
                                    "-2",
                                    "3",
                                    "0",
                                    "abc",
                                    "-9223372036854775808",
                                ],
                                5,
                            )
                        } else {
                            self.mostly(
                                &["0", "1", "2", "3", "-1", "abc", "9223372036854775807"],
                                4,
                            )
                        };
                        push!(v);
                    }
                }
            }
            66..=72 => {
                let (from, to) = (self.mostly(DIRS, 4), self.mostly(DIRS, 4));
                push!("LMOVE", k, self.key(), from, to)
            }
            73..=75 => push!("RPOPLPUSH", k, self.key()),
            76..=82 => {
                let nk = self.n(1, 3);
                let numkeys = if self.chance(0.9) {
                    nk.to_string()
                } else {
                    self.pick(&["0", "-1", "abc", "4", "9223372036854775807"])
                        .to_string()
                };
                push!("LMPOP", numkeys);
                for _ in 0..nk {
                    push!(self.key());
                }
                if self.chance(0.97) {
                    push!(self.mostly(DIRS, 4));
                }
                if self.chance(0.4) {
                    push!(self.pick(&["COUNT", "count", "COUNT"]));
                    if self.chance(0.95) {
                        push!(self.mostly(COUNTS, 4));
                    }
                }
            }
            83..=89 => return self.blocking(k),
            90..=91 => push!("SET", self.pick(&["s1", "s2"]), "str"),
            92..=93 => push!("DEL", k),
            94 => push!("TYPE", k),
            _ => return vec![self.bad_arity(k)],
        }
        vec![c.into_iter().map(String::into_bytes).collect()]
    }

    /// `RPUSH k v` then a blocking command naming `k`: it finds data (or a
    /// WRONGTYPE / argument error) and must not block.
    fn blocking(&mut self, k: &str) -> Vec<Cmd> {
        let pre: Cmd = vec![b"RPUSH".to_vec(), k.into(), self.pick(VALUES).into()];
        let t = self.mostly(TIMEOUTS, 4);
        let mut c: Vec<String> = Vec::new();
        match self.rng.random_range(0..5) {
            0 | 1 => {
                c.push(self.pick(&["BLPOP", "BRPOP"]).into());
                for _ in 0..self.n(0, 2) {
                    c.push(self.key().into());
                }
                c.push(k.into());
                c.push(t.into());
            }
            2 => {
                let (from, to) = (self.pick(&DIRS[..4]), self.mostly(DIRS, 4));
                c.extend(["BLMOVE", k, self.key(), from, to, t].map(String::from));
            }
            3 => c.extend(["BRPOPLPUSH", k, self.key(), t].map(String::from)),
            _ => {
                let extra = self.n(0, 2);
                c.extend(["BLMPOP".into(), t.into(), (extra + 1).to_string()]);
                for _ in 0..extra {
                    c.push(self.key().into());
                }
                c.push(k.into());
                c.push(self.pick(&DIRS[..4]).into());
                if self.chance(0.4) {
                    c.push("COUNT".into());
                    c.push(self.mostly(&["1", "2", "5", "0", "-1"], 3).into());
                }
            }
        }
        vec![pre, c.into_iter().map(String::into_bytes).collect()]
    }

    fn bad_arity(&mut self, k: &str) -> Cmd {
        let forms: &[&[&str]] = &[
            &["LPUSH", k],
            &["RPUSHX"],
            &["LPOP"],
            &["RPOP", k, "1", "2"],
            &["LLEN"],
            &["LRANGE", k, "0"],
            &["LINDEX", k],
            &["LSET", k, "0"],
            &["LINSERT", k, "BEFORE", "a"],
            &["LREM", k, "0"],
            &["LTRIM", k],
            &["LPOS", k],
            &["LMOVE", k, "l1", "LEFT"],
            &["RPOPLPUSH", k],
            &["LMPOP", "1", k],
            &["LMPOP", "1"],
            &["BLPOP", k],
            &["BRPOP"],
            &["BLMOVE", k, "l1", "LEFT", "LEFT"],
            &["BRPOPLPUSH", k, "l1"],
            &["BLMPOP", "0", "1", k],
        ];
        let f = forms[self.rng.random_range(0..forms.len())];
        f.iter().map(|s| s.as_bytes().to_vec()).collect()
    }
}

fn show(c: &[Vec<u8>]) -> String {
    c.iter()
        .map(|a| format!("\"{}\"", esc(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn send(conn: &mut RawConn, batch: &[Cmd]) {
    let mut buf = Vec::new();
    for c in batch {
        let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
        buf.extend(common::encode(&args));
    }
    conn.stream.write_all(&buf).expect("send batch");
}

fn read(conn: &mut RawConn, who: &str, cmd: &[Vec<u8>]) -> (Resp, Vec<u8>) {
    read_reply(&mut conn.reader)
        .unwrap_or_else(|e| panic!("{who}: reading the reply to {} failed: {e}", show(cmd)))
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let resp3 = seed % 2 == 1;
    let mut r = redis.raw();
    let mut t = tether.raw();
    for c in [&mut r, &mut t] {
        assert_eq!(c.cmds(&["FLUSHALL"]), Resp::Simple(b"OK".to_vec()));
        if resp3 {
            assert!(!c.cmds(&["HELLO", "3"]).is_error(), "HELLO 3");
        }
    }
    let mut events = common::EventCheck::new(redis, tether, seed);
    let trace = std::env::var_os("DIFF_TRACE").is_some();
    let mut history: Vec<String> = Vec::new();
    let mut done = 0;
    while done < ops {
        let steps = if g.chance(0.7) { 1 } else { g.n(2, 8) };
        let batch: Vec<Cmd> = (0..steps).flat_map(|_| g.step()).collect();
        send(&mut r, &batch);
        send(&mut t, &batch);
        for (i, cmd) in batch.iter().enumerate() {
            let ra = read(&mut r, "redis-server", cmd);
            let ta = read(&mut t, &tether.label(), cmd);
            if ra.1 != ta.1 {
                let recent = history[history.len().saturating_sub(30)..].join("\n    ");
                panic!(
                    "\nLIST DIFFERENTIAL MISMATCH (seed {seed}, {}, op #{}, {}; reproduce with \
                     DIFF_SEED={seed})\ncommand: {}\nredis:   {}\ntether:  {}\n\
                     preceding commands (with redis replies):\n    {recent}\n",
                    if resp3 { "RESP3" } else { "RESP2" },
                    done + i,
                    tether.label(),
                    show(cmd),
                    esc(&ra.1),
                    esc(&ta.1),
                );
            }
            let line = format!("{}  ->  {}", show(cmd), esc(&ra.1));
            if trace {
                eprintln!("{line}");
            }
            history.push(line);
        }
        events.check(|| {
            format!(
                "seed {seed} (reproduce with DIFF_SEED={seed}), op #{}:\n    {}",
                done,
                history[history.len().saturating_sub(batch.len())..].join("\n    ")
            )
        });
        done += batch.len();
    }
    // Final state: every key has the same type and contents.
    for k in KEYS {
        let kb = k.as_bytes();
        let ty = r.cmd(&[b"TYPE", kb]);
        assert_eq!(ty, t.cmd(&[b"TYPE", kb]), "seed {seed}: TYPE {k}");
        let probe: &[&[u8]] = match ty.as_str().as_str() {
            "list" => &[b"LRANGE", kb, b"0", b"-1"],
            _ => &[b"GET", kb],
        };
        assert_eq!(
            r.cmd(probe),
            t.cmd(probe),
            "seed {seed}: final value of {k}"
        );
    }
}

fn seeds() -> Vec<u64> {
    let count: u64 = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let fixed = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    match fixed {
        Some(s) if std::env::var("DIFF_SEEDS").is_err() => vec![s],
        Some(s) => (s..s + count).collect(),
        None => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000;
            (base..base + count).collect()
        }
    }
}

fn differential(shards: usize) {
    let ops: usize = std::env::var("DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(700);
    let redis = Server::stock_redis();
    let tether = Server::start(shards);
    for seed in seeds() {
        eprintln!("diff_list: {} seed {seed} ({ops} ops)", tether.label());
        run_seed(&redis, &tether, seed, ops);
    }
}

#[test]
fn list_differential_one_shard() {
    differential(1);
}

#[test]
fn list_differential_four_shards() {
    differential(4);
}

/// `redis-benchmark` list tests run clean: every test reports a rate and
/// nothing mentions an error.
#[test]
fn list_benchmark_runs_clean() {
    let s = Server::start(4);
    let out = Command::new(stock_tool("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
        .args(["-t", "lpush,rpush,lpop,rpop,lrange", "-n", "20000", "-q"])
        .output()
        .expect("run redis-benchmark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redis-benchmark failed:\n{text}");
    assert!(
        !text.to_ascii_lowercase().contains("err"),
        "redis-benchmark reported errors:\n{text}"
    );
    for name in ["LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE_100", "LRANGE_600"] {
        assert!(
            text.contains(&format!("{name}: ")) || text.contains(&format!("{name} (")),
            "no result line for {name}:\n{text}"
        );
    }
}
