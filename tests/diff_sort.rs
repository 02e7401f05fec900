//! Differential test for SORT and SORT_RO: seeded random lists, sets and
//! sorted sets of numbers and words, sorted with every option (BY weight
//! keys and hash fields on any shard, BY nosort, LIMIT in and out of
//! range, GET # / keys / hash fields / missing keys, ASC/DESC, ALPHA,
//! STORE to a key on another shard), plus bad syntax and wrong types,
//! sent to stock `redis-server` and to tether (1 and 3 shards). Raw
//! replies and stored lists must match byte for byte, keyspace events too
//! on even seeds. Where Redis's own order is not defined (a set read with
//! BY nosort; ALPHA BY ties over a set, or under LIMIT, which Redis
//! sorts with an unstable partial quicksort), items are compared sorted,
//! or only counted when LIMIT cuts them.
//!
//! Reproduce with `DIFF_SEED=<seed> cargo test --test diff_sort`;
//! `DIFF_SEEDS` / `DIFF_OPS` change the number of seeds / commands per seed.
mod common;

use common::Gen;

use common::{Resp, Server, show_args};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SOURCES: &[&str] = &["l1", "l2", "s1", "s2", "z1", "str", "missing"];
const ELEMS: &[&str] = &[
    "1", "2", "3", "10", "-4", "2.5", "007", "apple", "Banana", "cherry", "", "x y", "1e3", "inf",
];

impl Gen {
    /// Setup: sources, a distinct weight and a hash per element (a few
    /// missing), in the same order on both servers.
    fn setup(&mut self) -> Vec<Vec<String>> {
        let mut cmds = Vec::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for src in ["l1", "l2"] {
            let mut c = s(&["RPUSH", src]);
            for _ in 0..self.rng.random_range(0..12) {
                c.push(self.pick(ELEMS).into());
            }
            if c.len() > 2 {
                cmds.push(c);
            }
        }
        for src in ["s1", "s2"] {
            let mut c = s(&["SADD", src]);
            for _ in 0..self.rng.random_range(1..10) {
                c.push(self.pick(ELEMS).into());
            }
            cmds.push(c);
        }
        let mut z = s(&["ZADD", "z1"]);
        for e in ELEMS {
            if self.chance(0.6) {
                z.push(self.rng.random_range(-5..5).to_string());
                z.push(e.to_string());
            }
        }
        if z.len() > 2 {
            cmds.push(z);
        }
        cmds.push(s(&["SET", "str", "x"]));
        let mut ws: Vec<i64> = (0..ELEMS.len() as i64 * 3).collect();
        for e in ELEMS {
            if self.chance(0.1) {
                continue;
            }
            let i = self.rng.random_range(0..ws.len());
            let w = ws.swap_remove(i);
            let wv = if self.chance(0.03) {
                "notanumber".to_string()
            } else {
                format!("{}.{}", w - 20, self.rng.random_range(0..10))
            };
            cmds.push(vec!["SET".into(), format!("w_{e}"), wv]);
            cmds.push(vec![
                "HSET".into(),
                format!("o_{e}"),
                "name".into(),
                format!("n{}{}", w, e),
                "id".into(),
                w.to_string(),
            ]);
        }
        cmds
    }

    /// A SORT, and whether its order is Redis's to define (`false`: set
    /// order or unstable ties decide it).
    fn command(&mut self) -> (Vec<String>, bool) {
        let ro = self.chance(0.15);
        let src = self.pick(SOURCES);
        let mut c: Vec<String> = vec![if ro { "SORT_RO" } else { "SORT" }.into(), src.into()];
        let (mut by, mut alpha, mut limit, mut store) = (None, false, false, false);
        for _ in 0..self.rng.random_range(0..5) {
            match self.rng.random_range(0..14) {
                0 | 1 => {
                    let p =
                        self.pick(&["w_*", "o_*->id", "o_*->name", "nosort", "nokey_*", "o_*->"]);
                    by = Some(p);
                    c.extend(["BY".into(), p.into()]);
                }
                2 => c.push(self.pick(&["ASC", "desc"]).into()),
                3 | 4 => {
                    alpha = true;
                    c.push("ALPHA".into());
                }
                5 | 6 => {
                    limit = true;
                    let a = self.rng.random_range(-2..8).to_string();
                    let b = self.rng.random_range(-2..8).to_string();
                    c.extend(["LIMIT".into(), a, b]);
                }
                7..=9 => {
                    let p =
                        self.pick(&["#", "w_*", "o_*->name", "nokey_*", "fixed", "o_*->nofield"]);
                    c.extend(["GET".into(), p.into()]);
                }
                10 if !ro || self.chance(0.3) => {
                    store = true;
                    let d = self.pick(&["dst", "{x}dst2", "l2", "w_1"]);
                    c.extend(["STORE".into(), d.into()]);
                }
                11 => c.push(self.pick(&["bogus", "LIMIT"]).into()),
                _ => {}
            }
        }
        let set_like = src.starts_with('s') || src.starts_with('z');
        let nosort = c.iter().any(|a| a == "nosort");
        let unordered = (nosort && src.starts_with('s') && !store)
            || (alpha && !nosort && by.is_some() && (set_like || limit));
        (c, !unordered)
    }
}

/// A reply's items as sorted strings (nested arrays flattened).
fn items(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = match r {
        Resp::Array(xs) | Resp::Set(xs) => xs.iter().map(|x| format!("{x:?}")).collect(),
        other => vec![format!("{other:?}")],
    };
    v.sort();
    v
}

fn run_seed(redis: &Server, tether: &Server, seed: u64, ops: usize) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let mut d = common::Diff::start(redis, tether, seed, "SORT", &[]);
    for c in g.setup() {
        d.exact(&c, 0);
    }
    for step in 0..ops {
        let (c, ordered) = g.command();
        let ((rw, want), (tg, got)) = d.both(&c);
        let limited = c.iter().any(|a| a.eq_ignore_ascii_case("limit"));
        let same = if ordered {
            want == got
        } else if limited {
            rw.is_error() == tg.is_error() && items(&rw).len() == items(&tg).len()
        } else {
            items(&rw) == items(&tg)
        };
        if !same {
            d.fail(&c, &format!("op #{step}, ordered {ordered}"), &want, &got);
        }
        // Pattern lookups follow the source's order: a set's differs.
        // Under LIMIT, which elements reach GET depends on that order too.
        let src_ordered = ordered && !c[1].starts_with('s') && !c[1].starts_with('z');
        if !ordered && limited {
            d.events.skip();
        } else {
            d.events.check_order(src_ordered, || {
                format!("seed {seed} op #{step}: {}", show_args(&c))
            });
        }
        // What a STORE wrote (when its order is defined).
        let Some(i) = c.iter().rposition(|a| a == "STORE") else {
            continue;
        };
        let Some(dest) = c.get(i + 1) else {
            continue;
        };
        if ordered {
            d.exact(
                &["LRANGE".into(), dest.clone(), "0".into(), "-1".into()],
                step,
            );
        }
        // Drop what was stored over a source or weight, and any list
        // whose order was not Redis's to define, so later steps agree.
        if !ordered || dest == "l2" || dest == "w_1" {
            d.both(&["DEL".into(), dest.clone()]);
            d.events.skip();
        }
    }
}

#[test]
fn sort_matches_stock_redis() {
    common::run_diff("diff_sort", (12, 300), &[1, 3], run_seed);
}
