//! Replication lag as a round trip, measured without polling: stock
//! `redis-server` master + stock replica against tether master + tether
//! replica, in the same run, alternating.
//!
//! A probe connection sends `SET probe i` with `WAIT 1 1000` pipelined
//! behind it every `RL_PROBE_US` and times the WAIT's answer: the write
//! went to the replica, was applied, the replica answered the REPLCONF
//! GETACK that WAIT asked for, and the master saw that ACK. That is an
//! upper bound on the lag (write -> visible on the replica) with no poll
//! interval in it, which `perf/repl_probe.py`'s 1 ms poller cannot give.
//! Load levels: `idle` (the probe alone) and `half` (`RL_RATE` SET/s,
//! default 180000, the issue's "half of max load", paced in 1 ms ticks
//! over 8 connections; keys `key:NNNNNN` < 100000, 3-byte values, as
//! redis-benchmark -r 100000).
//!
//! Masters on core 0, replicas and this process (load and probe threads)
//! on core 1, as perf/repl_bench.sh places them; unlike its Python
//! helpers, the client side here costs little CPU and no interpreter lock
//! stands between the probe and its socket.
//!
//! A benchmark, not a test: it asserts only that replies are right.
//!
//! ```text
//! cargo bench --bench repl_lag          # or perf/repl_lag.sh (keeps a report)
//! RL_SECS=5 RL_REPEATS=3 RL_RATE=180000 RL_PROBE_US=5000 RL_LOADS="idle half"
//! RL_PROBE_US=0 RL_LOADS=idle       # closed loop: WAIT's own latency
//! TETHER_BIN=... REDIS_BIN=redis-server
//! ```

mod common;

use common::encode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KEYSPACE: u64 = 100_000;
const LOAD_CONNS: usize = 8;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Redis,
    Tether,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Tether => "tether",
        }
    }
}

struct Proc {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts a server of `kind` pinned to `cpu` (a replica of `master` when
/// given) and waits for PONG.
fn spawn(kind: Kind, cpu: usize, master: Option<u16>) -> Proc {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tether-rlag-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cmd = Command::new("taskset");
    cmd.current_dir(&dir).arg("-c").arg(cpu.to_string());
    let replicaof = master.map(|m| format!("127.0.0.1 {m}"));
    match kind {
        Kind::Redis => {
            let bin = std::env::var("REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
            cmd.args([bin.as_str(), "--appendonly", "no", "--daemonize", "no"])
                .args(["--repl-diskless-sync", "yes"]);
        }
        Kind::Tether => {
            let bin =
                std::env::var("TETHER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tether").into());
            cmd.args([bin.as_str(), "--shards", "1"]);
        }
    }
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--repl-diskless-sync-delay", "0"]);
    if let Some(r) = &replicaof {
        cmd.args(["--replicaof", r]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
    let p = Proc { child, port, dir };
    for _ in 0..100 {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port))
            && call(&mut c, &[b"PING"]).starts_with(b"+PONG")
        {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not answer PING on port {port}", kind.name());
}

/// One request, one reply (read until the reply is complete enough for
/// PING / INFO: a bulk's announced length).
fn call(c: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut req = Vec::new();
    encode(&mut req, args);
    c.write_all(&req).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = c.read(&mut chunk).expect("read");
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            if buf[0] != b'$' {
                return buf;
            }
            let len: usize = std::str::from_utf8(&buf[1..i])
                .unwrap()
                .parse()
                .unwrap_or(0);
            if buf.len() >= i + 2 + len + 2 {
                return buf;
            }
        }
    }
}

fn info(port: u16, section: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    String::from_utf8_lossy(&call(&mut c, &[b"INFO", section.as_bytes()])).into_owned()
}

/// Waits until the replica's link is up and the master lists it online.
fn wait_linked(master: u16, replica: u16) {
    for _ in 0..600 {
        if info(replica, "replication").contains("master_link_status:up")
            && info(master, "replication").contains("state=online")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("replica on {replica} never came online at master {master}");
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// The pinned `taskset` execs the server, so the child's pid is its pid.
fn pid(p: &Proc) -> u32 {
    p.child.id()
}

/// Paced SET load: every 1 ms tick each connection sends what is due and
/// reads its replies. Returns the SETs answered.
fn load(port: u16, rate: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>, conn: usize) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_nodelay(true).ok();
    // Pre-encoded requests on random keys (an LCG per connection).
    let mut reqs = Vec::new();
    let mut offs = vec![0usize];
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ conn as u64;
    for _ in 0..4096 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("key:{:06}", (x >> 33) % KEYSPACE);
        encode(&mut reqs, &[b"SET", key.as_bytes(), b"xyz"]);
        offs.push(reqs.len());
    }
    let share = rate as f64 / LOAD_CONNS as f64;
    let t0 = Instant::now();
    let (mut sent, mut pos) = (0u64, 0usize);
    let mut chunk = vec![0u8; 1 << 16];
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (share * t0.elapsed().as_secs_f64()) as u64;
        let mut n = due.saturating_sub(sent).min(2000) as usize;
        sent += n as u64;
        let mut want = 5 * n; // "+OK\r\n" each
        while n > 0 {
            let take = n.min(4096 - pos);
            c.write_all(&reqs[offs[pos]..offs[pos + take]])
                .expect("write");
            pos = (pos + take) % 4096;
            n -= take;
        }
        while want > 0 {
            let got = c.read(&mut chunk).expect("read");
            assert!(got > 0 && chunk[0] == b'+', "load: unexpected reply");
            want = want.saturating_sub(got);
        }
        tick += 1;
        let next = t0 + Duration::from_micros(1000 * tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    done.fetch_add(sent, Ordering::Relaxed);
}

struct Probe {
    set_us: Vec<f64>,
    ack_us: Vec<f64>,
    unacked: usize,
}

/// `SET probe i` + `WAIT 1 1000` every `every`, until `stop`.
fn probe(port: u16, every: Duration, stop: &AtomicBool) -> Probe {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_nodelay(true).ok();
    let mut p = Probe {
        set_us: Vec::new(),
        ack_us: Vec::new(),
        unacked: 0,
    };
    let mut chunk = [0u8; 256];
    let t0 = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let mut req = Vec::new();
        encode(&mut req, &[b"SET", b"probe", i.to_string().as_bytes()]);
        encode(&mut req, &[b"WAIT", b"1", b"1000"]);
        let sent = Instant::now();
        c.write_all(&req).expect("write");
        let mut buf = Vec::new();
        let mut set_seen = false;
        loop {
            let n = c.read(&mut chunk).expect("read");
            assert!(n > 0, "probe: connection closed");
            buf.extend_from_slice(&chunk[..n]);
            if !set_seen && buf.starts_with(b"+OK\r\n") {
                set_seen = true;
                p.set_us.push(sent.elapsed().as_secs_f64() * 1e6);
            }
            if set_seen && buf.len() > 5 && buf[5..].ends_with(b"\r\n") {
                break;
            }
        }
        assert!(
            buf.starts_with(b"+OK\r\n:"),
            "probe: {:?}",
            String::from_utf8_lossy(&buf)
        );
        if &buf[5..] == b":1\r\n" {
            p.ack_us.push(sent.elapsed().as_secs_f64() * 1e6);
        } else {
            p.unacked += 1;
        }
        let next = t0 + every * (i as u32);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    p
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    pct(&mut v, 50.0)
}

struct Run {
    kind: Kind,
    load: &'static str,
    rate: f64,
    set_p99: f64,
    ack_p50: f64,
    ack_p99: f64,
    ack_p999: f64,
    ack_max: f64,
    probes: usize,
    unacked: usize,
    master_cpu: f64,
    replica_cpu: f64,
}

fn run(kind: Kind, load_name: &'static str, master: &Proc, replica: &Proc) -> Run {
    let secs: f64 = env_or("RL_SECS", 5.0);
    let rate: u64 = if load_name == "half" {
        env_or("RL_RATE", 180_000)
    } else {
        0
    };
    let every = Duration::from_micros(env_or("RL_PROBE_US", 5000));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (m0, r0) = (cpu_secs(pid(master)), cpu_secs(pid(replica)));
    let loaders: Vec<_> = (0..if rate > 0 { LOAD_CONNS } else { 0 })
        .map(|i| {
            let (stop, done, port) = (stop.clone(), done.clone(), master.port);
            std::thread::spawn(move || load(port, rate, stop, done, i))
        })
        .collect();
    let t0 = Instant::now();
    let prober = {
        let (stop, port) = (stop.clone(), master.port);
        std::thread::spawn(move || probe(port, every, &stop))
    };
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut p = prober.join().expect("probe thread");
    for l in loaders {
        l.join().expect("load thread");
    }
    let took = t0.elapsed().as_secs_f64();
    Run {
        kind,
        load: load_name,
        rate: done.load(Ordering::Relaxed) as f64 / took,
        set_p99: pct(&mut p.set_us, 99.0),
        ack_p50: pct(&mut p.ack_us, 50.0),
        ack_p99: pct(&mut p.ack_us, 99.0),
        ack_p999: pct(&mut p.ack_us, 99.9),
        ack_max: p.ack_us.iter().cloned().fold(0.0, f64::max),
        probes: p.ack_us.len() + p.unacked,
        unacked: p.unacked,
        master_cpu: cpu_secs(pid(master)) - m0,
        replica_cpu: cpu_secs(pid(replica)) - r0,
    }
}

fn main() {
    // Load and probe threads inherit core 1 (the replicas' core).
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.get(1).copied()) {
        core_affinity::set_for_current(core);
    }
    let repeats: usize = env_or("RL_REPEATS", 3);
    let loads: Vec<&'static str> = std::env::var("RL_LOADS")
        .unwrap_or_else(|_| "idle half".into())
        .split_whitespace()
        .map(|l| match l {
            "idle" => "idle",
            "half" => "half",
            other => panic!("RL_LOADS: unknown level {other} (idle, half)"),
        })
        .collect();
    let kinds = [Kind::Redis, Kind::Tether];
    let pairs: Vec<(Proc, Proc)> = kinds
        .iter()
        .map(|&k| {
            let m = spawn(k, 0, None);
            let r = spawn(k, 1, Some(m.port));
            wait_linked(m.port, r.port);
            (m, r)
        })
        .collect();
    println!(
        "repl_lag: SET + WAIT 1 1000 round trip, master core 0, replica + clients core 1; {} s per run, {} repeats, probe every {} us, half = {} SET/s",
        env_or("RL_SECS", 5.0),
        repeats,
        env_or("RL_PROBE_US", 5000),
        env_or("RL_RATE", 180_000)
    );
    let mut runs = Vec::new();
    for rep in 1..=repeats {
        for &l in &loads {
            for (k, (m, r)) in kinds.iter().zip(&pairs) {
                let x = run(*k, l, m, r);
                println!(
                    "  run {rep} {:<6} {:<4}: write/s {:>7.0}  ACK us p50 {:>6.0} p99 {:>6.0} p99.9 {:>6.0} max {:>6.0}  SET p99 {:>5.0} us  probes {} ({} WAITs answered 0)  CPU-s master {:.2} replica {:.2}",
                    k.name(),
                    l,
                    x.rate,
                    x.ack_p50,
                    x.ack_p99,
                    x.ack_p999,
                    x.ack_max,
                    x.set_p99,
                    x.probes,
                    x.unacked,
                    x.master_cpu,
                    x.replica_cpu
                );
                runs.push(x);
            }
        }
    }
    println!();
    println!(
        "{:<5} {:<7} | {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>8} | {:>10} {:>11}",
        "load",
        "server",
        "write/s",
        "ACK p50",
        "ACK p99",
        "p99.9",
        "max",
        "SET p99",
        "master CPU",
        "replica CPU"
    );
    let mut med: std::collections::HashMap<(&str, &str), (f64, f64)> = Default::default();
    for &l in &loads {
        for k in kinds {
            let rs: Vec<&Run> = runs.iter().filter(|r| r.kind == k && r.load == l).collect();
            let m = |f: fn(&Run) -> f64| median(rs.iter().map(|r| f(r)).collect());
            let (p50, p99) = (m(|r| r.ack_p50), m(|r| r.ack_p99));
            med.insert((k.name(), l), (p50, p99));
            println!(
                "{:<5} {:<7} | {:>8.0} | {:>6.0}us {:>6.0}us {:>6.0}us {:>6.0}us | {:>6.0}us | {:>9.2}s {:>10.2}s",
                l,
                k.name(),
                m(|r| r.rate),
                p50,
                p99,
                m(|r| r.ack_p999),
                rs.iter().map(|r| r.ack_max).fold(0.0, f64::max),
                m(|r| r.set_p99),
                m(|r| r.master_cpu),
                m(|r| r.replica_cpu)
            );
        }
    }
    println!("(medians over runs; max = max over runs; ACK = SET sent -> WAIT 1 answered 1)");
    for &l in &loads {
        if let (Some(t), Some(r)) = (med.get(&("tether", l)), med.get(&("redis", l))) {
            println!(
                "tether/redis {l}: ACK p50 {:.2}x, p99 {:.2}x (lower is better)",
                t.0 / r.0,
                t.1 / r.1
            );
        }
    }
}
