//! Differential test for the bitmap commands (SETBIT, GETBIT, BITCOUNT,
//! BITPOS, BITOP, BITFIELD, BITFIELD_RO) and LCS: seeded random commands,
//! good and bad (offsets past the end, negative and huge ranges, BIT/BYTE
//! units, every BITFIELD type and overflow mode, wrong types, bad syntax,
//! BITOP and LCS over keys on different shards), sent to stock
//! `redis-server` and to tether (1 and 3 shards). Raw replies must match
//! byte for byte, RESP2 or RESP3 by seed; keyspace events too on even
//! seeds; and every key's value at the end.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_bits`;
//! `DIFF_SEEDS` / `DIFF_OPS` change the number of seeds / commands per seed.
mod common;

use common::Gen;

use common::Server;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// `b*` keys hash to different shards; `{t}` ones share one; `list` is
/// the wrong type.
const KEYS: &[&str] = &["b0", "b1", "b2", "b3", "{t}b1", "{t}b2", "list", "gone"];

impl Gen {
    fn key(&mut self) -> String {
        self.pick(KEYS).to_string()
    }
    /// A bit offset: mostly within a few bytes, sometimes far or bad.
    fn offset(&mut self) -> String {
        match self.rng.random_range(0..20) {
            0 => self
                .pick(&["-1", "abc", "", "4294967296", "1.5", "+3", "07"])
                .into(),
            1 => self.rng.random_range(0..5000).to_string(),
            _ => self.rng.random_range(0..80).to_string(),
        }
    }
    /// A range index: small, negative, huge, or garbage.
    fn index(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => self
                .pick(&["x", "-9223372036854775808", "9223372036854775807", ""])
                .into(),
            1..=4 => self.rng.random_range(-90..0).to_string(),
            _ => self.rng.random_range(0..90).to_string(),
        }
    }
    fn unit(&mut self) -> &'static str {
        self.pick(&["BIT", "BYTE", "bit", "byte", "BITS"])
    }
    fn field_type(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => self
                .pick(&["u64", "i65", "u0", "x8", "i", "", "I8", "u08"])
                .into(),
            1 => "i64".into(),
            2 => "u63".into(),
            _ => format!("{}{}", self.pick(&["i", "u"]), self.rng.random_range(1..17)),
        }
    }
    fn field_offset(&mut self) -> String {
        if self.chance(0.3) {
            format!("#{}", self.rng.random_range(0..10))
        } else {
            self.offset()
        }
    }
    fn value(&mut self) -> String {
        match self.rng.random_range(0..8) {
            0 => self
                .pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "abc",
                    "255",
                    "-129",
                    "65536",
                ])
                .into(),
            1..=3 => self.rng.random_range(-300..300).to_string(),
            _ => self.rng.random_range(-5..40).to_string(),
        }
    }

    fn command(&mut self) -> Vec<String> {
        let k = self.key();
        let mut c: Vec<String> = Vec::new();
        match self.rng.random_range(0..24) {
            0..=4 => {
                let bit = match self.rng.random_range(0..12) {
                    0 => self.pick(&["2", "-1", "x", ""]).to_string(),
                    n => (n % 2).to_string(),
                };
                c.extend(["SETBIT".into(), k, self.offset(), bit]);
            }
            5..=6 => c.extend(["GETBIT".into(), k, self.offset()]),
            7..=9 => {
                c.extend(["BITCOUNT".into(), k]);
                match self.rng.random_range(0..6) {
                    0 => {}
                    1 => c.push(self.index()),
                    2 | 3 => c.extend([self.index(), self.index()]),
                    _ => c.extend([self.index(), self.index(), self.unit().into()]),
                }
                if self.chance(0.03) {
                    c.push("extra".into());
                }
            }
            10..=12 => {
                let bit = match self.rng.random_range(0..10) {
                    0 => self.pick(&["2", "x", "-1"]).to_string(),
                    n => (n % 2).to_string(),
                };
                c.extend(["BITPOS".into(), k, bit]);
                match self.rng.random_range(0..5) {
                    0 => {}
                    1 => c.push(self.index()),
                    2 => c.extend([self.index(), self.index()]),
                    _ => c.extend([self.index(), self.index(), self.unit().into()]),
                }
                if self.chance(0.03) {
                    c.push("extra".into());
                }
            }
            13..=15 => {
                let op = self.pick(&["AND", "OR", "XOR", "NOT", "and", "nand"]);
                c.extend(["BITOP".into(), op.into(), self.key()]);
                let n = if op == "NOT" && self.chance(0.9) {
                    1
                } else {
                    self.rng.random_range(1..4)
                };
                for _ in 0..n {
                    c.push(self.key());
                }
            }
            16..=19 => {
                let ro = self.chance(0.2);
                c.extend([if ro { "BITFIELD_RO" } else { "BITFIELD" }.into(), k]);
                for _ in 0..self.rng.random_range(0..4) {
                    match self.rng.random_range(0..10) {
                        0 => c.extend([
                            "OVERFLOW".into(),
                            self.pick(&["WRAP", "SAT", "FAIL", "fail", "NONE"]).into(),
                        ]),
                        1..=3 => c.extend(["GET".into(), self.field_type(), self.field_offset()]),
                        4..=6 if !ro || self.chance(0.2) => c.extend([
                            "SET".into(),
                            self.field_type(),
                            self.field_offset(),
                            self.value(),
                        ]),
                        4..=8 => c.extend([
                            "INCRBY".into(),
                            self.field_type(),
                            self.field_offset(),
                            self.value(),
                        ]),
                        _ => c.push(self.pick(&["GET", "bogus", "SET"]).into()),
                    }
                }
            }
            20 => {
                let v = self.pick(&["", "a", "ohmytext", "0123456789abcdef0123456789"]);
                c.extend(["SET".into(), k, v.into()]);
            }
            21 => c.extend(["GET".into(), k]),
            22 => c.extend(["DEL".into(), k]),
            _ => {
                c.extend(["LCS".into(), k, self.key()]);
                for _ in 0..self.rng.random_range(0..3) {
                    match self.rng.random_range(0..6) {
                        0 => c.push("LEN".into()),
                        1 | 2 => c.push("IDX".into()),
                        3 => c.push("WITHMATCHLEN".into()),
                        4 => c.extend(["MINMATCHLEN".into(), self.index()]),
                        _ => c.push("bad".into()),
                    }
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
    let mut d = common::Diff::start(redis, tether, seed, "BITS", &[&["RPUSH", "list", "x"]]);
    for step in 0..ops {
        d.exact(&g.command(), step);
    }
    d.finish(KEYS);
}

#[test]
fn bit_commands_match_stock_redis() {
    common::run_diff("diff_bits", (8, 800), &[1, 3], run_seed);
}
