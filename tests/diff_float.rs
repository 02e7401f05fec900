//! Differential test for INCRBYFLOAT and HINCRBYFLOAT: Redis adds in C's
//! 80-bit `long double` and prints `%.17Lf` with trailing zeros trimmed, so
//! the replies show the extended precision (1e29 + 100 is
//! `99999999999999999997315645440`) and accept magnitudes past f64's range.
//! Seeded random operands over many magnitudes and spellings (hex floats,
//! exponents, `inf`, garbage, denormals, overflow) go to stock
//! `redis-server` and to tether; raw replies must match byte for byte.
//! Keys are incremented again and again, so sums accumulate rounding.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_float`;
//! `DIFF_SEEDS=<n>` seeds (default 4), `DIFF_OPS=<n>` commands each (600).
mod common;

use common::{RawConn, Server, esc, read_reply};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const KEYS: &[&str] = &["f1", "f2", "f3", "{h}f4", "str"];
const FIXED: &[&str] = &[
    "0",
    "1",
    "-1",
    "0.1",
    "-0.1",
    "1e29",
    "1e2",
    "1e400",
    "-1e400",
    "9e4931",
    "1e4932",
    "1e-4940",
    "1e-5000",
    "0x1p-16445",
    "0x1p-16446",
    "0x1.8p1",
    "0X10",
    "inf",
    "-inf",
    "+Infinity",
    "nan",
    "1.",
    ".5",
    "1e",
    " 1",
    "1 ",
    "abc",
    "",
    "0.000000000000000015",
    "1.2345678901234567891",
    "123456789012345678901234567890",
    "-0",
    "+1.5E1",
    "0x",
    "1e99999999999",
];

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn operand(&mut self) -> String {
        let r = &mut self.rng;
        match r.random_range(0..6) {
            0 => FIXED[r.random_range(0..FIXED.len())].to_string(),
            1 => format!("{}", r.random_range(-1e6..1e6f64)),
            2 => format!(
                "{}e{}",
                r.random_range(-99_999..100_000i64),
                r.random_range(-40..40i32)
            ),
            3 => format!(
                "{:.*}",
                r.random_range(0..26usize),
                r.random_range(-1.0..1.0f64)
            ),
            4 => format!(
                "{}.{}",
                r.random_range(0..u64::MAX),
                r.random_range(0..u64::MAX)
            ),
            _ => format!(
                "{}e{}",
                r.random_range(1..10u32),
                r.random_range(-4960..4940i32)
            ),
        }
    }

    fn command(&mut self) -> Vec<String> {
        let key = KEYS[self.rng.random_range(0..KEYS.len())].to_string();
        let by = self.operand();
        match self.rng.random_range(0..10) {
            0 => vec!["SET".into(), key, self.operand()],
            1 => vec!["HSET".into(), format!("h{key}"), "f".into(), self.operand()],
            2..=3 => vec!["HINCRBYFLOAT".into(), format!("h{key}"), "f".into(), by],
            4 => vec!["GET".into(), key],
            _ => vec!["INCRBYFLOAT".into(), key, by],
        }
    }
}

fn exchange(conn: &mut RawConn, c: &[String]) -> Vec<u8> {
    let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
    conn.send_cmd(&args);
    read_reply(&mut conn.reader).expect("a reply").1
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut r = redis.raw();
    let mut t = tether.raw();
    for conn in [&mut r, &mut t] {
        conn.cmds(&["FLUSHALL"]);
        // A string key, so WRONGTYPE and "not a valid float" come up too.
        conn.cmds(&["RPUSH", "str", "x"]);
    }
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    for done in 0..ops {
        let c = g.command();
        let want = exchange(&mut r, &c);
        let got = exchange(&mut t, &c);
        assert!(
            want == got,
            "\nFLOAT MISMATCH (seed {seed}, op #{done}; reproduce with DIFF_SEED={seed})\n  {}\n  redis:  {}\n  tether: {}",
            c.iter()
                .map(|a| format!("\"{}\"", esc(a.as_bytes())))
                .collect::<Vec<_>>()
                .join(" "),
            esc(&want),
            esc(&got)
        );
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn incrbyfloat_matches_stock_redis() {
    let redis = Server::stock_redis();
    let tether = Server::tether(2);
    let seeds: Vec<u64> = match env("DIFF_SEED") {
        Some(s) => vec![s],
        None => {
            let base = fastrand::u64(..1_000_000_000);
            (0..env("DIFF_SEEDS").unwrap_or(4))
                .map(|i| base.wrapping_add(i))
                .collect()
        }
    };
    let ops = env("DIFF_OPS").unwrap_or(600) as usize;
    for seed in seeds {
        eprintln!("diff_float: seed {seed}");
        run_seed(&redis, &tether, seed, ops);
    }
}
