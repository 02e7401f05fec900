//! Differential test: seeded random string/keyspace command sequences sent to
//! stock `redis-server` and to tether (1 and 4 shards); raw RESP replies must
//! match byte for byte, errors included.
//!
//! Reproduce a failure with `DIFF_SEED=<seed> cargo test --test differential`.
//! `DIFF_SEEDS=<n>` changes how many seeds run (default 12), `DIFF_OPS=<n>`
//! the commands per seed (default 800), `DIFF_TRACE=1` prints every command
//! with Redis's reply.
//!
//! Determinism rules the generator follows, so that stock Redis against stock
//! Redis always agrees (run with `TETHER_TEST_TARGET=redis` to check):
//! * no key ever expires during a run: every TTL is >= 1000 s, or is in the
//!   past / non-positive where that deletes at once (EXPIRE, GETEX) or is
//!   rejected (SET's EX 0 etc.);
//! * any two TTLs generated in one run differ by >= 1000 s, so `EXPIRE .. GT/LT`
//!   never compares two deadlines that are a few milliseconds apart;
//! * TTL/PTTL replies are compared as -2 / -1 / "positive within 10 s";
//! * KEYS replies are compared after sorting;
//! * INCRBYFLOAT increments are small dyadic numbers (wide magnitudes and
//!   long-double rounding are `diff_float`'s), and integer overflow is
//!   exercised on a dedicated key (`ovf`) that no float command touches.
mod common;

use common::{RawConn, Resp, Server, esc, read_reply};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;

const KEYS: &[&str] = &[
    "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "{u1}a", "{u1}b", "{u1}c", "{u2}a",
    "{u2}b", "{u2}c", "n1", "n2", "f1", "bin",
];

/// Values stored by SET-like commands. Numbers are small or dyadic so that
/// INCRBYFLOAT results are exact and print the same in any correct server.
const VALUES: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"42",
    b"-17",
    b"99999",
    b"1.5",
    b"-2.25",
    b"0.125",
    b"3.0e3",
    b"",
    b"hello",
    b"\x00\xff\r\nbin",
    b" 12",
    b"12 ",
    b"abc",
    b"10",
    b"007",
    b"+5",
    b"-0",
    b"1e2",
    b"0x10",
    b"hello world",
];

const APPENDS: &[&[u8]] = &[b"x", b"", b"\x00\r\n", b"ab", b" "];
const KEY_PATTERNS: &[&str] = &[
    "*",
    "k*",
    "{u1}*",
    "*a",
    "k[0-4]",
    "?",
    "k?",
    "[ab]*",
    "k[^0-5]",
    "*b*",
    "nomatch*",
    "\\{u2\\}*",
    "k[",
    "f1",
    "",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Exact,
    /// Array reply compared after sorting (KEYS).
    Sorted,
    /// Integer TTL: -2/-1 exactly, positive values within the tolerance.
    Ttl(i64),
}

struct Gen {
    rng: StdRng,
    /// Unique counter so that no two generated TTLs are equal (see module doc).
    ttl_seq: i64,
    now_secs: i64,
}

impl Gen {
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }
    fn key(&mut self) -> Vec<u8> {
        self.pick(KEYS).as_bytes().to_vec()
    }
    fn val(&mut self) -> Vec<u8> {
        self.pick(VALUES).to_vec()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
    fn int(&mut self, lo: i64, hi: i64) -> Vec<u8> {
        self.rng.random_range(lo..=hi).to_string().into_bytes()
    }
    /// A relative TTL in seconds: >= 1000 s and >= 1000 s away from every
    /// other TTL generated in this run.
    fn ttl_secs(&mut self) -> i64 {
        self.ttl_seq += 1;
        1000 * (self.rng.random_range(0..20) * 1000 + self.ttl_seq)
    }
    /// Expiry option pair for SET/GETEX, e.g. ["EX", "2000000"], sometimes bad.
    ///
    /// A deadline in the past is only generated for GETEX, which deletes the
    /// key at once. Redis 7.0's SET stores such a key and leaves it to lazy or
    /// active expiry, so DBSIZE would depend on timing.
    fn expiry_opt(&mut self, cmdname: &str) -> Vec<Vec<u8>> {
        let past_ok = cmdname == "getex";
        let t = self.ttl_secs();
        let r = self.rng.random_range(0..100);
        let (opt, v): (&str, Vec<u8>) = match r {
            0..=24 => ("EX", t.to_string().into_bytes()),
            25..=49 => ("PX", (t * 1000).to_string().into_bytes()),
            50..=62 => ("EXAT", (self.now_secs + t).to_string().into_bytes()),
            63..=75 => (
                "PXAT",
                ((self.now_secs + t) * 1000).to_string().into_bytes(),
            ),
            76..=79 => ("EX", b"0".to_vec()),
            80..=82 => ("PX", b"-5".to_vec()),
            83..=85 => ("EX", b"abc".to_vec()),
            86..=87 => ("EX", b"1.5".to_vec()),
            88..=89 => ("EX", b"9223372036854775807".to_vec()),
            90..=91 if past_ok => ("PXAT", b"1".to_vec()), // in the past: key is gone at once
            90..=91 => ("PXAT", b"0".to_vec()),
            92..=93 => ("EXAT", b"-1".to_vec()),
            94..=95 => ("PX", b"".to_vec()),
            _ => ("EX", b"9223372036854775".to_vec()),
        };
        let opt = if self.chance(0.2) {
            opt.to_lowercase()
        } else {
            opt.to_string()
        };
        vec![opt.into_bytes(), v]
    }
    fn db(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..40) {
            0 => b"16".to_vec(),
            1 => b"-1".to_vec(),
            2 => b"abc".to_vec(),
            3 => b"15".to_vec(),
            _ => self.int(0, 2),
        }
    }

    /// One command (argument vector) and how to compare its replies.
    fn command(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let k = self.key();
        let mut c: Vec<Vec<u8>> = Vec::new();
        let mut cmp = Cmp::Exact;
        macro_rules! push { ($($e:expr),*) => {{ $( c.push(AsRef::<[u8]>::as_ref(&$e).to_vec()); )* }} }
        let which = self.rng.random_range(0..100);
        match which {
            0..=7 => {
                push!("GET", k);
            }
            8..=17 => {
                let v = self.val();
                push!("SET", k, v);
                // Random option subset in random order; invalid combos are fine.
                let mut opts: Vec<Vec<Vec<u8>>> = Vec::new();
                if self.chance(0.25) {
                    opts.push(vec![if self.chance(0.5) {
                        b"NX".to_vec()
                    } else {
                        b"XX".to_vec()
                    }]);
                }
                if self.chance(0.4) {
                    opts.push(self.expiry_opt("set"));
                } else if self.chance(0.15) {
                    opts.push(vec![b"KEEPTTL".to_vec()]);
                }
                if self.chance(0.3) {
                    opts.push(vec![b"GET".to_vec()]);
                }
                if self.chance(0.04) {
                    opts.push(vec![b"NX".to_vec(), b"XX".to_vec()]);
                }
                if self.chance(0.04) {
                    opts.push(vec![b"KEEPTTL".to_vec(), b"EX".to_vec(), b"5000".to_vec()]);
                }
                if self.chance(0.03) {
                    opts.push(vec![b"BOGUS".to_vec()]);
                }
                if self.chance(0.03) {
                    opts.push(vec![b"EX".to_vec()]);
                }
                // Shuffle option groups.
                for i in (1..opts.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    opts.swap(i, j);
                }
                for o in opts {
                    c.extend(o);
                }
            }
            18..=19 => {
                let v = self.val();
                push!("SETNX", k, v);
            }
            20..=21 => {
                let v = self.val();
                push!("GETSET", k, v);
            }
            22..=23 => {
                push!("GETDEL", k);
            }
            24..=26 => {
                push!("GETEX", k);
                match self.rng.random_range(0..10) {
                    0..=4 => c.extend(self.expiry_opt("getex")),
                    5 | 6 => push!("PERSIST"),
                    7 => push!("PERSIST", "EX", "5000"),
                    8 => push!("BOGUS"),
                    _ => {}
                }
            }
            27..=29 => {
                push!("MGET");
                for _ in 0..self.rng.random_range(1..6) {
                    let k = self.key();
                    push!(k);
                }
            }
            30..=32 => {
                push!(if self.chance(0.8) { "MSET" } else { "MSETNX" });
                for _ in 0..self.rng.random_range(1..5) {
                    let (k, v) = (self.key(), self.val());
                    push!(k, v);
                }
                if self.chance(0.05) {
                    c.pop(); // odd argument count
                }
            }
            33..=34 => {
                let v = self.pick(APPENDS).to_vec();
                push!("APPEND", k, v);
            }
            35 => {
                push!("STRLEN", k);
            }
            36..=37 => {
                let a = self.int(-25, 25);
                let b = self.int(-25, 25);
                push!("GETRANGE", k, a, b);
                if self.chance(0.05) {
                    c[2] = b"x".to_vec();
                }
            }
            38..=39 => {
                let (off, v): (Vec<u8>, &[u8]) = match self.rng.random_range(0..20) {
                    0 => (b"536870912".to_vec(), b"x"),
                    1 => (b"536870912".to_vec(), b""),
                    2 => (b"-1".to_vec(), b"x"),
                    3 => (b"abc".to_vec(), b"x"),
                    4..=9 => (self.int(0, 3), b"9"),
                    _ => (self.int(0, 40), self.pick(&[&b"Z"[..], b"", b"\x00x"])),
                };
                push!("SETRANGE", k, off, v);
            }
            40..=47 => {
                // Integer family. Increments stay small so values stay small.
                match self.rng.random_range(0..8) {
                    0 => push!("INCR", k),
                    1 => push!("DECR", k),
                    2 | 3 => {
                        let n = self.int(-1000, 1000);
                        push!("INCRBY", k, n)
                    }
                    4 => {
                        let n = self.int(-1000, 1000);
                        push!("DECRBY", k, n)
                    }
                    5 => {
                        let bad =
                            self.pick(&[&b"1.5"[..], b"abc", b"", b" 1", b"99999999999999999999"]);
                        push!("INCRBY", k, bad)
                    }
                    _ => {
                        let inc = self.pick(&[
                            &b"1.5"[..],
                            b"-0.25",
                            b"0.5",
                            b"3",
                            b"-2",
                            b"1e2",
                            b"abc",
                            b"inf",
                            b"-0.125",
                            b"",
                        ]);
                        push!("INCRBYFLOAT", k, inc)
                    }
                }
            }
            48..=49 => {
                // Overflow edges on a key no float command touches.
                match self.rng.random_range(0..8) {
                    0 => push!("SET", "ovf", "9223372036854775807"),
                    1 => push!("SET", "ovf", "-9223372036854775808"),
                    2 => push!("INCR", "ovf"),
                    3 => push!("DECR", "ovf"),
                    4 => push!("INCRBY", "ovf", "9223372036854775807"),
                    5 => push!("DECRBY", "ovf", "-9223372036854775808"),
                    6 => push!("INCRBY", "ovf", "-9223372036854775808"),
                    _ => push!("GET", "ovf"),
                }
            }
            50..=53 => {
                push!(if self.chance(0.6) { "DEL" } else { "UNLINK" });
                for _ in 0..self.rng.random_range(1..4) {
                    let k = self.key();
                    push!(k);
                }
            }
            54..=55 => {
                push!(if self.chance(0.6) { "EXISTS" } else { "TOUCH" });
                for _ in 0..self.rng.random_range(1..5) {
                    let k = self.key();
                    push!(k);
                }
            }
            56 => push!("TYPE", k),
            57..=61 => {
                let name = if self.chance(0.5) {
                    "EXPIRE"
                } else {
                    "PEXPIRE"
                };
                let t = self.ttl_secs();
                let t = match self.rng.random_range(0..12) {
                    0 => b"-5".to_vec(),
                    1 => b"0".to_vec(),
                    2 => b"abc".to_vec(),
                    3 => b"9223372036854775807".to_vec(),
                    _ if name == "PEXPIRE" => (t * 1000).to_string().into_bytes(),
                    _ => t.to_string().into_bytes(),
                };
                push!(name, k, t);
                match self.rng.random_range(0..14) {
                    0 => push!("NX"),
                    1 => push!("XX"),
                    2 | 3 => push!("GT"),
                    4 | 5 => push!("LT"),
                    6 => push!("NX", "XX"),
                    7 => push!("GT", "LT"),
                    8 => push!("XX", "GT"),
                    9 => push!("foo"),
                    10 => push!("NX", "GT"),
                    _ => {}
                }
            }
            62 => push!("PERSIST", k),
            63..=65 => {
                // The two servers see each command at slightly different
                // times; on a loaded 2-core CI box that gap can reach
                // seconds, so relative TTLs get a 10 s tolerance.
                cmp = Cmp::Ttl(if self.chance(0.5) {
                    push!("TTL", k);
                    10
                } else {
                    push!("PTTL", k);
                    10_000
                });
            }
            66..=68 => {
                let k2 = self.key();
                push!(
                    if self.chance(0.6) {
                        "RENAME"
                    } else {
                        "RENAMENX"
                    },
                    k,
                    k2
                );
            }
            69..=70 => {
                let k2 = if self.chance(0.1) {
                    k.clone()
                } else {
                    self.key()
                };
                push!("COPY", k, k2);
                if self.chance(0.4) {
                    let d = self.db();
                    push!("DB", d);
                }
                if self.chance(0.4) {
                    push!("REPLACE");
                }
                if self.chance(0.04) {
                    push!("BOGUS");
                }
            }
            71 => {
                let d = self.db();
                push!("MOVE", k, d);
            }
            72..=73 => {
                let d = self.db();
                push!("SELECT", d);
            }
            74 => push!("DBSIZE"),
            75 => {
                if self.chance(0.3) {
                    push!("FLUSHDB");
                    match self.rng.random_range(0..4) {
                        0 => push!("ASYNC"),
                        1 => push!("SYNC"),
                        2 => push!("BOGUS"),
                        _ => {}
                    }
                } else {
                    push!("DBSIZE");
                }
            }
            76 => {
                let (a, b) = (self.db(), self.db());
                push!("SWAPDB", a, b);
            }
            77..=78 => {
                let p = self.pick(KEY_PATTERNS);
                push!("KEYS", p);
                cmp = Cmp::Sorted;
            }
            79..=88 => return self.bad_arity(),
            89..=91 => {
                // Unknown commands, incl. long and newline-bearing arguments
                // (Redis truncates them to 128 bytes and blanks \r \n).
                match self.rng.random_range(0..6) {
                    0 => push!("FOO"),
                    1 => push!("foo", "a", "b"),
                    2 => push!("GETT", k),
                    3 => push!("xyz", "x".repeat(150), "y"),
                    4 => push!("bad\ncmd", "a\r\nb"),
                    _ => push!("SETT", "a".repeat(60), "b".repeat(60), "c".repeat(60)),
                }
            }
            92..=93 => {
                // Syntax / option errors on valid commands.
                match self.rng.random_range(0..8) {
                    0 => push!("SET", k, "v", "EX", "10", "PX", "10000"),
                    1 => push!("SET", k, "v", "XX", "NX"),
                    2 => push!("GETEX", k, "EX"),
                    3 => push!("GETEX", k, "EX", "10", "PX", "10"),
                    4 => push!("COPY", k, "dst", "DB"),
                    5 => push!("EXPIRE", k, "5000", "GT", "GT"),
                    6 => push!("FLUSHDB", "ASYNC", "SYNC"),
                    _ => push!("SET", k, "v", "GET", "GET"),
                }
            }
            94 => {
                if self.chance(0.2) {
                    push!("FLUSHALL");
                } else {
                    push!("DBSIZE");
                }
            }
            95..=97 => {
                let v = self.val();
                push!("SET", k, v, "KEEPTTL");
            }
            _ => {
                push!("STRLEN", k);
            }
        }
        // Command names are case-insensitive; exercise that now and then.
        if self.chance(0.1) {
            c[0] = c[0].to_ascii_lowercase();
        } else if self.chance(0.03) {
            let mut name = c[0].to_ascii_lowercase();
            if let Some(ch) = name.first_mut() {
                *ch = ch.to_ascii_uppercase();
            }
            c[0] = name;
        }
        (c, cmp)
    }

    /// A known command with the wrong number of arguments.
    fn bad_arity(&mut self) -> (Vec<Vec<u8>>, Cmp) {
        let k = self.pick(KEYS).to_string();
        let forms: &[&[&str]] = &[
            &["GET"],
            &["GET", &k, "x"],
            &["SET", &k],
            &["SET"],
            &["SETNX", &k],
            &["GETSET", &k],
            &["GETDEL"],
            &["GETDEL", &k, "x"],
            &["GETEX"],
            &["MGET"],
            &["MSET"],
            &["MSET", &k],
            &["MSETNX", &k, "v", "k2"],
            &["APPEND", &k],
            &["STRLEN"],
            &["GETRANGE", &k, "0"],
            &["SETRANGE", &k, "0"],
            &["INCR"],
            &["INCR", &k, "1"],
            &["DECR"],
            &["INCRBY", &k],
            &["DECRBY", &k],
            &["INCRBYFLOAT", &k],
            &["DEL"],
            &["UNLINK"],
            &["EXISTS"],
            &["TYPE"],
            &["TYPE", &k, "x"],
            &["TOUCH"],
            &["EXPIRE", &k],
            &["PEXPIRE"],
            &["PERSIST"],
            &["TTL"],
            &["PTTL", &k, "x"],
            &["RENAME", &k],
            &["RENAMENX", &k, "a", "b"],
            &["COPY", &k],
            &["MOVE", &k],
            &["SELECT"],
            &["SELECT", "0", "1"],
            &["DBSIZE", "x"],
            &["SWAPDB", "0"],
            &["KEYS"],
            &["KEYS", "*", "x"],
        ];
        let f = forms[self.rng.random_range(0..forms.len())];
        let mut c: Vec<Vec<u8>> = f.iter().map(|s| s.as_bytes().to_vec()).collect();
        if self.chance(0.15) {
            c[0] = c[0].to_ascii_lowercase();
        }
        (c, Cmp::Exact)
    }
}

fn show_cmd(c: &[Vec<u8>]) -> String {
    c.iter()
        .map(|a| format!("\"{}\"", esc(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sort_array(r: &Resp) -> Resp {
    match r {
        Resp::Array(v) => {
            let mut v = v.clone();
            v.sort_by_key(|x| format!("{x:?}"));
            Resp::Array(v)
        }
        other => other.clone(),
    }
}

fn replies_match(cmp: Cmp, a: &(Resp, Vec<u8>), b: &(Resp, Vec<u8>)) -> bool {
    match cmp {
        Cmp::Exact => a.1 == b.1,
        Cmp::Sorted => sort_array(&a.0) == sort_array(&b.0),
        Cmp::Ttl(tol) => match (&a.0, &b.0) {
            (Resp::Int(x), Resp::Int(y)) if *x >= 0 && *y >= 0 => (x - y).abs() <= tol,
            _ => a.1 == b.1,
        },
    }
}

struct Side {
    conn: RawConn,
}

impl Side {
    fn send_batch(&mut self, batch: &[(Vec<Vec<u8>>, Cmp)]) {
        let mut buf = Vec::new();
        for (c, _) in batch {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
            buf.extend(common::encode(&args));
        }
        self.conn.stream.write_all(&buf).expect("send batch");
    }
    fn read(&mut self, what: &str, cmd: &[Vec<u8>]) -> (Resp, Vec<u8>) {
        read_reply(&mut self.conn.reader).unwrap_or_else(|e| {
            panic!("{what}: reading the reply to {} failed: {e}", show_cmd(cmd))
        })
    }
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        ttl_seq: 0,
        now_secs,
    };
    let mut r = Side { conn: redis.raw() };
    let mut t = Side { conn: tether.raw() };
    // Fresh state on both sides.
    for s in [&mut r, &mut t] {
        let rep = s.conn.cmds(&["FLUSHALL"]);
        assert_eq!(
            rep,
            Resp::Simple(b"OK".to_vec()),
            "FLUSHALL before seed {seed}"
        );
    }
    let mut events = common::EventCheck::new(redis, tether, seed);
    let trace = std::env::var_os("DIFF_TRACE").is_some();
    let mut history: Vec<String> = Vec::new();
    let mut done = 0;
    while done < ops {
        let n = if g.chance(0.7) {
            1
        } else {
            g.rng.random_range(2..10)
        };
        let batch: Vec<(Vec<Vec<u8>>, Cmp)> = (0..n).map(|_| g.command()).collect();
        r.send_batch(&batch);
        t.send_batch(&batch);
        for (i, (cmd, cmp)) in batch.iter().enumerate() {
            let ra = r.read("redis-server", cmd);
            let ta = t.read(&tether.label(), cmd);
            if !replies_match(*cmp, &ra, &ta) {
                let recent = history[history.len().saturating_sub(25)..].join("\n    ");
                panic!(
                    "\nDIFFERENTIAL MISMATCH (seed {seed}, op #{}, {}; reproduce with DIFF_SEED={seed})\n\
                     command: {}\n\
                     redis:   {}\n\
                     tether:  {}\n\
                     (parsed: redis {:?} / tether {:?})\n\
                     preceding commands (with redis replies):\n    {recent}\n",
                    done + i,
                    tether.label(),
                    show_cmd(cmd),
                    esc(&ra.1),
                    esc(&ta.1),
                    ra.0,
                    ta.0,
                );
            }
            if trace {
                eprintln!("{}  ->  {}", show_cmd(cmd), esc(&ra.1));
            }
            history.push(format!("{}  ->  {}", show_cmd(cmd), esc(&ra.1)));
        }
        events.check(|| {
            format!(
                "seed {seed} (reproduce with DIFF_SEED={seed}), op #{}:\n    {}",
                done,
                history[history.len().saturating_sub(n)..].join("\n    ")
            )
        });
        done += n;
    }
    // Final state check: every DB's key set and values agree.
    for db in 0..3 {
        let sel = db.to_string();
        for s in [&mut r, &mut t] {
            s.conn.cmds(&["SELECT", &sel]);
        }
        let rk = sort_array(&r.conn.cmds(&["KEYS", "*"]));
        let tk = sort_array(&t.conn.cmds(&["KEYS", "*"]));
        assert_eq!(
            rk,
            tk,
            "seed {seed}: final KEYS * differ in db {db} ({})",
            tether.label()
        );
        for k in rk.array() {
            let kb = k.as_bytes().unwrap();
            let rv = r.conn.cmd(&[b"GET", kb]);
            let tv = t.conn.cmd(&[b"GET", kb]);
            assert_eq!(
                rv,
                tv,
                "seed {seed}: final value of {} in db {db} differs",
                esc(kb)
            );
        }
    }
}

fn seeds() -> Vec<u64> {
    let count: u64 = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    match std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(s) => {
            if std::env::var("DIFF_SEEDS").is_ok() {
                (s..s + count).collect()
            } else {
                vec![s]
            }
        }
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
        .unwrap_or(800);
    let redis = Server::stock_redis();
    let tether = Server::start(shards);
    for seed in seeds() {
        eprintln!("differential: {} seed {seed} ({ops} ops)", tether.label());
        run_seed(&redis, &tether, seed, ops);
    }
}

#[test]
fn differential_one_shard() {
    differential(1);
}

#[test]
fn differential_four_shards() {
    differential(4);
}
