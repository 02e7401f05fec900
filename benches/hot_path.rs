//! Micro-benchmarks of the per-request hot path: RESP parsing, reply
//! writing, hash slots, the keyspace dictionary, sorted-set updates,
//! INCRBYFLOAT's long double arithmetic and a master's encoding of writes
//! into its replication stream. Runs on one thread; no executor, no
//! sockets.
//!
//! Every group measures tether beside a baseline doing the same work the
//! dumbest way we can think of, and ends with a ratio table, because on a
//! shared 2-core box absolute times drift from run to run while ratios hold:
//!
//! ```text
//! == ratio resp_parse (16 x SET, 672 B per batch)
//!    tether/multibulk        1234.5 ns best   4.10x baseline/crlf_split
//! ```
//!
//! `cargo bench --bench hot_path -- --quick` takes about a minute.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState as SipState};
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use foldhash::fast::{FixedState, RandomState as FoldState};
use tether::resp::{ParseLimits, Proto, Reply, parse_command};
use tether::shard::key_slot;
use tether::shard::keyspace::{Db, Entry, Keyspace, KeyspaceStats, Str, Value, WARM_AHEAD};

const LIMITS: ParseLimits = ParseLimits {
    max_bulk: 512 << 20,
};
/// Requests per pipelined batch, the depth `redis-benchmark -P 16` sends.
const PIPELINE: usize = 16;
/// Keys in the keyspace groups.
const KEYS: usize = 100_000;

// ---------------------------------------------------------------------------
// Ratio bookkeeping
// ---------------------------------------------------------------------------

/// Per-iteration times (one per sample) seen by each benchmark of a group, so the group can
/// print `subject / baseline` once criterion is done with it.
#[derive(Default)]
struct Tally(RefCell<Vec<(&'static str, Vec<f64>)>>);

impl Tally {
    fn add(&self, name: &'static str, d: Duration, iters: u64) {
        let ns = d.as_nanos() as f64 / iters.max(1) as f64;
        let mut v = self.0.borrow_mut();
        match v.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => s.push(ns),
            None => v.push((name, vec![ns])),
        }
    }

    /// Best ns/iter of a benchmark over criterion's samples: on a shared
    /// box noise only ever adds time, and quick mode's first (cold) sample
    /// would otherwise weigh as much as the rest.
    fn best(&self, name: &str) -> Option<f64> {
        let v = self.0.borrow();
        let (_, s) = v.iter().find(|(n, _)| *n == name)?;
        s.iter().copied().reduce(f64::min)
    }

    /// Prints every benchmark's median and its ratio to `baseline`.
    fn report(&self, title: &str, baseline: &str) {
        let Some(base) = self.best(baseline) else {
            return;
        };
        println!("\n== ratio {title}");
        for (name, _) in self.0.borrow().iter() {
            let ns = self.best(name).unwrap_or(f64::NAN);
            if *name == baseline {
                println!("   {name:<28} {ns:>12.1} ns best   (baseline)");
            } else {
                println!(
                    "   {name:<28} {ns:>12.1} ns best   {:>6.2}x {baseline}",
                    ns / base
                );
            }
        }
        println!();
    }
}

/// Benchmarks `f` under `name`, recording its times in `tally`.
fn bench<R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    tally: &Tally,
    name: &'static str,
    mut f: impl FnMut() -> R,
) {
    bench_timed(g, tally, name, |iters| {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        t.elapsed()
    });
}

/// Like [`bench`], for routines that time themselves (to leave set-up and
/// teardown out): `f(iters)` runs `iters` times and returns the time spent.
fn bench_timed(
    g: &mut BenchmarkGroup<'_, WallTime>,
    tally: &Tally,
    name: &'static str,
    mut f: impl FnMut(u64) -> Duration,
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let d = f(iters);
            tally.add(name, d, iters);
            d
        })
    });
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

// ---------------------------------------------------------------------------
// RESP parsing
// ---------------------------------------------------------------------------

/// 16 pipelined `SET key:000000012345 xyz`, as multibulk and as inline.
fn batches() -> (Vec<u8>, Vec<u8>) {
    let (mut mb, mut inl) = (Vec::new(), Vec::new());
    for i in 0..PIPELINE {
        let k = key(12_345 + i);
        mb.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n", k.len()).as_bytes());
        mb.extend_from_slice(&k);
        mb.extend_from_slice(b"\r\n$3\r\nxyz\r\n");
        inl.extend_from_slice(b"SET ");
        inl.extend_from_slice(&k);
        inl.extend_from_slice(b" xyz\r\n");
    }
    (mb, inl)
}

/// Parses a whole batch the way a connection does: parse, consume, repeat.
fn parse_all(mut buf: &[u8]) -> usize {
    let mut nargs = 0;
    while let Ok(Some((args, used))) = parse_command(buf, LIMITS) {
        nargs += args.len();
        buf = &buf[used..];
    }
    assert!(buf.is_empty());
    nargs
}

/// The naive framing floor: find every CRLF and record the line ranges,
/// with no header decoding and no validation.
fn crlf_split(buf: &[u8], lines: &mut Vec<(usize, usize)>) -> usize {
    lines.clear();
    let mut start = 0;
    for i in 1..buf.len() {
        if buf[i] == b'\n' && buf[i - 1] == b'\r' {
            lines.push((start, i - 1));
            start = i + 1;
        }
    }
    lines.len()
}

fn resp_parse(c: &mut Criterion) {
    let (mb, inl) = batches();
    assert_eq!(parse_all(&mb), 3 * PIPELINE);
    assert_eq!(parse_all(&inl), 3 * PIPELINE);
    let mut g = c.benchmark_group("resp_parse");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    let t = Tally::default();
    bench(&mut g, &t, "tether/multibulk", || parse_all(black_box(&mb)));
    bench(&mut g, &t, "tether/inline", || parse_all(black_box(&inl)));
    let mut lines = Vec::with_capacity(8 * PIPELINE);
    bench(&mut g, &t, "baseline/crlf_split", || {
        crlf_split(black_box(&mb), &mut lines)
    });
    let mut dst = Vec::with_capacity(mb.len());
    bench(&mut g, &t, "baseline/memcpy", || {
        dst.clear();
        dst.extend_from_slice(black_box(&mb));
        dst.len()
    });
    g.finish();
    t.report(
        &format!(
            "resp_parse ({PIPELINE} x SET, {} B multibulk per batch)",
            mb.len()
        ),
        "baseline/crlf_split",
    );
}

// ---------------------------------------------------------------------------
// Reply writing
// ---------------------------------------------------------------------------

fn reply(c: &mut Criterion) {
    let mut out = BytesMut::with_capacity(4096);
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    let t = Tally::default();
    bench(&mut g, &t, "tether/ok", || {
        out.clear();
        let mut r = Reply::new(&mut out, Proto::Resp2);
        for _ in 0..PIPELINE {
            r.ok();
        }
        out.len()
    });
    bench(&mut g, &t, "tether/bulk", || {
        out.clear();
        let mut r = Reply::new(&mut out, Proto::Resp2);
        for _ in 0..PIPELINE {
            r.bulk(black_box(b"xyz"));
        }
        out.len()
    });
    // The same bytes, pre-rendered, appended once per reply.
    bench(&mut g, &t, "baseline/append_bulk", || {
        out.clear();
        for _ in 0..PIPELINE {
            out.extend_from_slice(black_box(b"$3\r\nxyz\r\n"));
        }
        out.len()
    });
    g.finish();
    t.report(
        &format!("reply ({PIPELINE} replies, RESP2)"),
        "baseline/append_bulk",
    );
}

// ---------------------------------------------------------------------------
// Hash slots
// ---------------------------------------------------------------------------

fn slots(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..1024).map(key).collect();
    let mut g = c.benchmark_group("key_slot");
    g.throughput(Throughput::Elements(keys.len() as u64));
    let t = Tally::default();
    bench(&mut g, &t, "tether/key_slot", || {
        keys.iter().map(|k| key_slot(k) as u64).sum::<u64>()
    });
    // The hash the keyspace itself uses, for scale.
    let fold = FixedState::with_seed(0);
    bench(&mut g, &t, "baseline/foldhash", || {
        keys.iter()
            .map(|k| fold.hash_one(k.as_slice()) & 16383)
            .sum::<u64>()
    });
    g.finish();
    t.report("key_slot (1024 keys of 16 B)", "baseline/foldhash");
}

// ---------------------------------------------------------------------------
// Keyspace
// ---------------------------------------------------------------------------

/// Inserts or looks up all of `keys` in a fresh map per iteration. Baselines
/// are `HashMap<Vec<u8>, Vec<u8>>` with std's SipHash and with foldhash (the
/// keyspace's hasher); all three copy key and value out of the request as a
/// SET does, so each pays for its own allocations.
fn keyspace(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let mut order: Vec<usize> = (0..KEYS).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    let shuffled: Vec<&[u8]> = order.iter().map(|&i| keys[i].as_slice()).collect();
    let val = b"xyz";
    let now = 1_700_000_000_000;

    // -- insert: time only the inserts, not building or dropping the map.
    let mut g = c.benchmark_group("keyspace_insert");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    let t = Tally::default();
    fn fill<M: Default>(iters: u64, mut one: impl FnMut(&mut M)) -> Duration {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let mut m = M::default();
            let t = Instant::now();
            one(&mut m);
            spent += t.elapsed();
            black_box(&m);
        }
        spent
    }
    bench_timed(&mut g, &t, "tether/Db", |iters| {
        fill::<Db>(iters, |db| {
            for k in &keys {
                db.insert(k, Entry::new(Value::Str(Str::from(val))));
            }
        })
    });
    bench_timed(&mut g, &t, "baseline/HashMap_sip", |iters| {
        fill::<HashMap<Vec<u8>, Vec<u8>, SipState>>(iters, |m| {
            for k in &keys {
                m.insert(k.clone(), val.to_vec());
            }
        })
    });
    bench_timed(&mut g, &t, "baseline/HashMap_fold", |iters| {
        fill::<HashMap<Vec<u8>, Vec<u8>, FoldState>>(iters, |m| {
            for k in &keys {
                m.insert(k.clone(), val.to_vec());
            }
        })
    });
    g.finish();
    t.report(
        &format!("keyspace_insert ({KEYS} SETs into an empty map)"),
        "baseline/HashMap_sip",
    );

    // -- get: every key once, in shuffled order, all hits.
    let mut db = Db::default();
    let mut sip: HashMap<Vec<u8>, Vec<u8>, SipState> = HashMap::default();
    let mut fold: HashMap<Vec<u8>, Vec<u8>, FoldState> = HashMap::default();
    for k in &keys {
        db.insert(k, Entry::new(Value::Str(Str::from(val))));
        sip.insert(k.clone(), val.to_vec());
        fold.insert(k.clone(), val.to_vec());
    }
    // Each iteration does GET_BATCH lookups, walking the shuffled order
    // round-robin, so criterion sees many short iterations over a table
    // that is still far larger than the cache.
    const GET_BATCH: usize = 1024;
    let mut g = c.benchmark_group("keyspace_get");
    g.throughput(Throughput::Elements(GET_BATCH as u64));
    let t = Tally::default();
    let mut stats = KeyspaceStats::default();
    let batches = || shuffled.chunks_exact(GET_BATCH).cycle();
    let mut next = batches();
    bench(&mut g, &t, "tether/Db", || {
        let mut n = 0;
        for k in next.next().unwrap() {
            if let Some(Entry {
                value: Value::Str(v),
                ..
            }) = db.get(k, now, &mut stats)
            {
                n += v.len();
            }
        }
        n
    });
    // As the fast path runs a pipeline: the keys of WARM_AHEAD requests
    // are prefetched together, then the requests run.
    let mut ks = Keyspace::new(1);
    for k in &keys {
        ks.db(0).0.insert(k, Entry::new(Value::Str(Str::from(val))));
    }
    let mut next = batches();
    bench(&mut g, &t, "tether/Keyspace_warmed", || {
        let mut n = 0;
        for run in next.next().unwrap().chunks(WARM_AHEAD) {
            ks.warm(run.iter().map(|k| (0, *k)));
            let (db, stats) = ks.db(0);
            for k in run {
                if let Some(Entry {
                    value: Value::Str(v),
                    ..
                }) = db.get(k, now, stats)
                {
                    n += v.len();
                }
            }
        }
        n
    });
    let mut next = batches();
    bench(&mut g, &t, "baseline/HashMap_sip", || {
        let b = next.next().unwrap();
        b.iter()
            .filter_map(|k| sip.get(*k))
            .map(Vec::len)
            .sum::<usize>()
    });
    let mut next = batches();
    bench(&mut g, &t, "baseline/HashMap_fold", || {
        let b = next.next().unwrap();
        b.iter()
            .filter_map(|k| fold.get(*k))
            .map(Vec::len)
            .sum::<usize>()
    });
    g.finish();
    assert_eq!(stats.expired, 0);
    t.report(
        &format!("keyspace_get ({GET_BATCH} GET hits per iter, shuffled over {KEYS} keys)"),
        "baseline/HashMap_sip",
    );
}

/// ZADD's hot case, as `redis-benchmark -t zadd` drives it: a random member
/// of a 100k-member sorted set gets a new random score, which moves it in
/// the order tree (one descent to unlink, one to relink). Baseline: the
/// same on a `BTreeSet<(score, member)>` beside a `HashMap` of scores; the
/// sorted set also keeps ranks, which `BTreeSet` cannot answer.
fn zset(c: &mut Criterion) {
    use std::collections::BTreeSet;
    use tether::shard::zset::ZSet;
    const UPDATES: usize = 1024;
    let members: Vec<bytes::Bytes> = (0..KEYS)
        .map(|i| bytes::Bytes::from(format!("element:{i:06}")))
        .collect();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut z = ZSet::default();
    let mut scores: HashMap<bytes::Bytes, u64, FoldState> = HashMap::default();
    let mut tree = BTreeSet::new();
    for m in &members {
        let s = rng.u64(0..KEYS as u64);
        z.insert(m.clone(), s as f64);
        scores.insert(m.clone(), s);
        tree.insert((s, m.clone()));
    }
    let mut g = c.benchmark_group("zset_update");
    g.throughput(Throughput::Elements(UPDATES as u64));
    let t = Tally::default();
    bench(&mut g, &t, "tether/ZSet", || {
        for _ in 0..UPDATES {
            let m = &members[rng.usize(0..KEYS)];
            z.insert(m.clone(), rng.u64(0..KEYS as u64) as f64);
        }
        z.len()
    });
    bench(&mut g, &t, "baseline/BTreeSet", || {
        for _ in 0..UPDATES {
            let m = &members[rng.usize(0..KEYS)];
            let s = rng.u64(0..KEYS as u64);
            let old = scores.insert(m.clone(), s).expect("present");
            tree.remove(&(old, m.clone()));
            tree.insert((s, m.clone()));
        }
        tree.len()
    });
    g.finish();
    t.report(
        &format!("zset_update ({UPDATES} score changes per iter, {KEYS} members)"),
        "baseline/BTreeSet",
    );
}

/// INCRBYFLOAT's arithmetic on the value it reads back: parse the stored
/// sum and the increment, add, print, in 80-bit long double as Redis does
/// (`cmd::ldouble`). Baseline: the same in f64 with Rust's shortest
/// round-trip printing, which is what tether did before and which differs
/// from Redis past 53 bits.
fn incrbyfloat(c: &mut Criterion) {
    use tether::cmd::ldouble::LongDouble;
    const OPS: usize = 256;
    let stored: Vec<String> = (0..OPS)
        .map(|i| format!("{}.{:017}", 400 + i, 40_000_000_000_000_147u64 + i as u64))
        .collect();
    let mut g = c.benchmark_group("incrbyfloat");
    g.throughput(Throughput::Elements(OPS as u64));
    let t = Tally::default();
    bench(&mut g, &t, "tether/long_double", || {
        let mut n = 0;
        for s in &stored {
            let old = LongDouble::parse(black_box(s.as_bytes())).expect("valid");
            let by = LongDouble::parse(black_box(b"1.1")).expect("valid");
            n += old.checked_add(by).expect("finite").format_human().len();
        }
        n
    });
    bench(&mut g, &t, "baseline/f64", || {
        let mut n = 0;
        for s in &stored {
            let old: f64 = black_box(s.as_str()).parse().expect("valid");
            let by: f64 = black_box("1.1").parse().expect("valid");
            n += format!("{}", old + by).len();
        }
        n
    });
    g.finish();
    t.report(
        &format!("incrbyfloat ({OPS} parse+parse+add+print per iter)"),
        "baseline/f64",
    );
}

/// A master's encoding of 16 pipelined SETs (16-byte keys, 3-byte values,
/// as `redis-benchmark -t set -P 16 -r`) into its replication stream
/// (`repl::encode_cmd`, a write cursor). Baseline: the same RESP built with
/// a `BytesMut::extend_from_slice` per piece, which is how tether encoded
/// before 3b5d171.
fn repl_encode(c: &mut Criterion) {
    let cmds: Vec<Vec<bytes::Bytes>> = (0..PIPELINE)
        .map(|i| {
            vec![
                bytes::Bytes::from_static(b"SET"),
                bytes::Bytes::from(key(i * 7919 % KEYS)),
                bytes::Bytes::from_static(b"xxx"),
            ]
        })
        .collect();
    fn plain(out: &mut BytesMut, args: &[bytes::Bytes]) {
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b"*");
        out.extend_from_slice(b.format(args.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        for a in args {
            out.extend_from_slice(b"$");
            out.extend_from_slice(b.format(a.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }
    let mut g = c.benchmark_group("repl_encode");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    let t = Tally::default();
    let mut out = BytesMut::with_capacity(64 << 10);
    let mut check = BytesMut::new();
    for c in &cmds {
        tether::repl::encode_cmd(&mut out, c);
        plain(&mut check, c);
    }
    assert_eq!(out, check, "both encoders must write the same stream");
    bench(&mut g, &t, "tether/cursor", || {
        out.clear();
        for c in &cmds {
            tether::repl::encode_cmd(&mut out, black_box(c));
        }
        out.len()
    });
    bench(&mut g, &t, "baseline/extend_from_slice", || {
        check.clear();
        for c in &cmds {
            plain(&mut check, black_box(c));
        }
        check.len()
    });
    g.finish();
    t.report(
        &format!("repl_encode ({PIPELINE} x SET, 3-byte values, per batch)"),
        "baseline/extend_from_slice",
    );
}

fn config() -> Criterion {
    // Short defaults so a full run stays near a minute; CLI flags
    // (`--quick`, `--measurement-time`, ...) still override these.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = resp_parse, reply, slots, keyspace, zset, incrbyfloat, repl_encode
}
criterion_main!(hot_path);
