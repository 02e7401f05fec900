//! Differential test for HyperLogLog (PFADD, PFCOUNT, PFMERGE, PFDEBUG):
//! an HLL is a string whose bytes a stock replica, an RDB file or a later
//! PFADD elsewhere reads, so tether must build Redis's bytes exactly.
//! Seeded random element streams (short and long, crossing the sparse ->
//! dense promotion at several `hll-sparse-max-bytes`), unions over keys on
//! different shards, corrupted HLLs (SETRANGE/APPEND into them), wrong
//! types; sent to stock `redis-server` and to tether (1 and 3 shards). Raw
//! replies must match byte for byte, including GET of every HLL; keyspace
//! events too on even seeds.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_hll`;
//! `DIFF_SEEDS` / `DIFF_OPS` change the number of seeds / commands per seed.
mod common;

use common::Gen;

use common::Server;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// `h*` keys hash to different shards; `{t}` ones share one; `list` is
/// the wrong type, `str` a string that is no HLL.
const KEYS: &[&str] = &["h0", "h1", "h2", "{t}h1", "{t}h2", "list", "str", "gone"];

impl Gen {
    fn key(&mut self) -> String {
        self.pick(KEYS).to_string()
    }
    fn element(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => self.pick(&["", "a", "b", "x y", "\u{0}"]).to_string(),
            1..=3 => self.rng.random_range(0..50).to_string(),
            _ => format!("e{}", self.rng.random_range(0..1_000_000u32)),
        }
    }

    fn command(&mut self) -> Vec<String> {
        let k = self.key();
        let mut c: Vec<String> = Vec::new();
        match self.rng.random_range(0..30) {
            0..=9 => {
                c.extend(["PFADD".into(), k]);
                let n = match self.rng.random_range(0..10) {
                    0 => 0,
                    1..=6 => self.rng.random_range(1..8),
                    _ => self.rng.random_range(50..400),
                };
                for _ in 0..n {
                    c.push(self.element());
                }
            }
            10..=14 => {
                c.extend(["PFCOUNT".into(), k]);
                for _ in 0..self.rng.random_range(0..3) {
                    c.push(self.key());
                }
            }
            15..=16 => {
                c.extend(["PFMERGE".into(), k]);
                for _ in 0..self.rng.random_range(0..3) {
                    c.push(self.key());
                }
            }
            17..=19 => c.extend(["GET".into(), k]),
            20..=21 => {
                let sub = self.pick(&["ENCODING", "DECODE", "TODENSE", "GETREG", "bogus"]);
                c.extend(["PFDEBUG".into(), sub.into(), k]);
            }
            22 => {
                // Corruption: a byte anywhere, or a bad tail.
                if self.rng.random_bool(0.5) {
                    let at = self.rng.random_range(0..40).to_string();
                    let b = (self.rng.random_range(0..256u32) as u8 as char).to_string();
                    c.extend(["SETRANGE".into(), k, at, b]);
                } else {
                    c.extend(["APPEND".into(), k, self.pick(&["x", "\u{7f}", "ab"]).into()]);
                }
            }
            23 => c.extend(["DEL".into(), k]),
            24 => {
                let v = self.pick(&["0", "20", "100", "3000", "12000"]);
                c.extend([
                    "CONFIG".into(),
                    "SET".into(),
                    "hll-sparse-max-bytes".into(),
                    v.into(),
                ]);
            }
            25 => c.extend(["PFCOUNT".into(), k]),
            _ => {
                c.extend(["PFADD".into(), k]);
                for _ in 0..self.rng.random_range(1..4) {
                    c.push(self.element());
                }
            }
        }
        c
    }
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let setup: &[&[&str]] = &[
        &["RPUSH", "list", "x"],
        &["SET", "str", "not an hll at all, long enough"],
        &["CONFIG", "SET", "hll-sparse-max-bytes", "3000"],
    ];
    let mut d = common::Diff::start(redis, tether, seed, "HLL", setup);
    for step in 0..ops {
        let c = g.command();
        d.exact(&c, step);
        // The stored bytes after every HLL command, not only the replies.
        let touched = match c[0].as_str() {
            "PFADD" | "PFMERGE" | "PFCOUNT" => Some(&c[1]),
            "PFDEBUG" => Some(&c[2]),
            _ => None,
        };
        if let Some(k) = touched {
            let get = vec!["GET".to_string(), k.clone()];
            let (want, got) = d.both(&get);
            if want.1 != got.1 {
                d.fail(
                    &c,
                    &format!("stored bytes after op #{step}"),
                    &want.1,
                    &got.1,
                );
            }
            d.events
                .check(|| format!("seed {seed} op #{step}: GET {k}"));
        }
    }
    d.finish(KEYS);
}

#[test]
fn hyperloglog_matches_stock_redis() {
    common::run_diff("diff_hll", (8, 500), &[1, 3], run_seed);
}
