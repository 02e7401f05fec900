//! What a cross-shard hop costs: tether with 2 shards, driven by clients
//! that know which shard accepted each of their connections (`CLIENT INFO`
//! reports `shard=`), so every request can be made local (its key is owned
//! by the connection's shard), remote (owned by the other shard), or mixed
//! (random keys, what any ordinary client sees).
//!
//! A benchmark, not a test: it prints medians and ratios and asserts only
//! that replies are right. The robust figure is requests per server
//! CPU-second (utime + stime of the server from /proc over the phase),
//! because the client shares this small machine's cores with the shards.
//!
//! ```text
//! cargo bench --bench cross_shard             # or perf/xshard.sh
//! XS_SECS=3 XS_REPEATS=3 XS_CONNS=16 XS_DEPTHS="1 16" XS_CMDS="set get"
//! XS_MODES="local remote mixed"   (the first mode is the ratios' base)
//! ```
//!
//! Remote requests of one pipeline go to the owner as one message per
//! destination shard (`shard::dispatch::run_batch`), so at depth 16 a
//! remote batch is one message each way, not sixteen.

mod common;

use common::encode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether::shard::shard_of;

const SHARDS: usize = 2;
/// Keys per shard; values are 3 bytes, as redis-benchmark's default.
const KEYS_PER_SHARD: usize = 50_000;
const VALUE: &[u8] = b"xyz";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

/// A scratch working directory, removed on drop (the server's cwd, so a
/// stray dump lands there and not in the tree).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn start() -> Server {
    let bin = std::env::var("TETHER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tether").into());
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tether-xshard-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let child = Command::new(&bin)
        .current_dir(&dir)
        .args(["--port", &port.to_string(), "--shards", &SHARDS.to_string()])
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let server = Server {
        child,
        port,
        _dir: TempDir(dir),
    };
    for _ in 0..100 {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port))
            && call(&mut c, &[b"PING"]).starts_with(b"+PONG")
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("tether did not answer PING on port {port}");
}

/// One request, one reply read whole (replies here fit one read).
fn call(c: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut req = Vec::new();
    encode(&mut req, args);
    c.write_all(&req).expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = c.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

/// The shard that accepted this connection, from `CLIENT INFO`.
fn shard_of_conn(c: &mut TcpStream) -> usize {
    let info = call(c, &[b"CLIENT", b"INFO"]);
    let text = String::from_utf8_lossy(&info);
    text.split_whitespace()
        .find_map(|f| f.strip_prefix("shard="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no shard= in CLIENT INFO: {text}"))
}

fn server_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Local,
    Remote,
    Mixed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Remote => "remote",
            Mode::Mixed => "mixed",
        }
    }
}

/// Prebuilt pipelines for one connection, cycled; and the reply each
/// pipeline must get back, byte for byte.
fn batches(
    keys: &[Vec<Vec<u8>>],
    home: usize,
    mode: Mode,
    cmd: &str,
    depth: usize,
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for _ in 0..64 {
        let mut b = Vec::new();
        for _ in 0..depth {
            let s = match mode {
                Mode::Local => home,
                Mode::Remote => 1 - home,
                Mode::Mixed => rng.usize(0..SHARDS),
            };
            let k = &keys[s][rng.usize(0..keys[s].len())];
            match cmd {
                "set" => encode(&mut b, &[b"SET", k, VALUE]),
                _ => encode(&mut b, &[b"GET", k]),
            }
        }
        out.push(b);
    }
    let one: &[u8] = if cmd == "set" {
        b"+OK\r\n"
    } else {
        b"$3\r\nxyz\r\n"
    };
    (out, one.repeat(depth))
}

struct PhaseResult {
    rps: f64,
    ops_per_cpu: f64,
}

/// Every connection sends its pipelines back to back (one in flight per
/// connection) for `secs`; returns throughput and ops per server CPU-s.
fn phase(
    server: &Server,
    conns: &mut [(TcpStream, usize)],
    keys: &Arc<Vec<Vec<Vec<u8>>>>,
    mode: Mode,
    cmd: &str,
    depth: usize,
    secs: f64,
) -> PhaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = server_cpu_secs(server.child.id());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (i, (c, home)) in conns.iter_mut().enumerate() {
            let (stop, done) = (stop.clone(), done.clone());
            let (reqs, expect) = batches(keys, *home, mode, cmd, depth, i as u64 + 1);
            s.spawn(move || {
                let mut buf = vec![0u8; expect.len()];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for r in &reqs {
                        c.write_all(r).expect("write");
                        c.read_exact(&mut buf).expect("read");
                        assert!(
                            buf == expect,
                            "wrong reply: {:?}",
                            String::from_utf8_lossy(&buf)
                        );
                        n += depth as u64;
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = server_cpu_secs(server.child.id()) - cpu0;
    let ops = done.load(Ordering::Relaxed) as f64;
    PhaseResult {
        rps: ops / wall,
        ops_per_cpu: ops / cpu.max(1e-3),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` passes
    // nothing and must not run a minutes-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = env_or("XS_SECS", 3.0);
    let repeats: usize = env_or("XS_REPEATS", 3);
    let nconns: usize = env_or("XS_CONNS", 16);
    let list = |name: &str, default: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_else(|_| default.into())
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let depths: Vec<usize> = list("XS_DEPTHS", "1 16")
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    let cmds = list("XS_CMDS", "set get");
    let modes: Vec<Mode> = list("XS_MODES", "local remote mixed")
        .iter()
        .map(|m| match m.as_str() {
            "local" => Mode::Local,
            "remote" => Mode::Remote,
            "mixed" => Mode::Mixed,
            other => panic!("XS_MODES: unknown mode {other}"),
        })
        .collect();

    let server = start();
    // Keys split by owner shard.
    let mut keys: Vec<Vec<Vec<u8>>> = vec![Vec::new(); SHARDS];
    let mut i = 0;
    while keys.iter().any(|k| k.len() < KEYS_PER_SHARD) {
        let k = format!("key:{i:012}").into_bytes();
        let s = shard_of(&k, SHARDS);
        if keys[s].len() < KEYS_PER_SHARD {
            keys[s].push(k);
        }
        i += 1;
    }
    let keys = Arc::new(keys);
    // Preload every key so GETs hit.
    let mut c = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    for chunk in keys.iter().flatten().collect::<Vec<_>>().chunks(1000) {
        let mut req = Vec::new();
        for k in chunk {
            encode(&mut req, &[b"SET", k, VALUE]);
        }
        c.write_all(&req).expect("write");
        let mut buf = vec![0u8; 5 * chunk.len()];
        c.read_exact(&mut buf).expect("read");
    }
    // Connections, half on each shard (the kernel's SO_REUSEPORT hash
    // decides where each lands; extras are dropped).
    let mut conns: Vec<(TcpStream, usize)> = Vec::new();
    let mut per = [0usize; SHARDS];
    for _ in 0..nconns * 20 {
        if conns.len() == nconns {
            break;
        }
        let mut c = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        c.set_nodelay(true).expect("nodelay");
        let s = shard_of_conn(&mut c);
        if per[s] < nconns / SHARDS {
            per[s] += 1;
            conns.push((c, s));
        }
    }
    assert_eq!(
        conns.len(),
        nconns,
        "could not balance connections over shards: {per:?}"
    );

    println!(
        "cross_shard: tether {} shards (pid {}), {} connections ({:?} per shard), {secs} s per phase, {repeats} repeats, medians",
        SHARDS,
        server.child.id(),
        nconns,
        per
    );
    println!(
        "{:<5} {:>3} {:<7} {:>12} {:>12} {:>10}",
        "test", "-P", "mode", "rps", "ops/CPU-s", "ratio"
    );
    for cmd in cmds.iter().map(String::as_str) {
        assert!(
            cmd == "set" || cmd == "get",
            "XS_CMDS: set or get, not {cmd}"
        );
        for &depth in &depths {
            let mut rps = vec![Vec::new(); modes.len()];
            let mut opc = vec![Vec::new(); modes.len()];
            for _ in 0..repeats {
                for (m, &mode) in modes.iter().enumerate() {
                    let r = phase(&server, &mut conns, &keys, mode, cmd, depth, secs);
                    rps[m].push(r.rps);
                    opc[m].push(r.ops_per_cpu);
                }
            }
            let local = median(opc[0].clone());
            for (m, &mode) in modes.iter().enumerate() {
                let o = median(opc[m].clone());
                println!(
                    "{:<5} {:>3} {:<7} {:>12.0} {:>12.0} {:>9.2}x {}",
                    cmd,
                    depth,
                    mode.name(),
                    median(rps[m].clone()),
                    o,
                    o / local,
                    modes[0].name()
                );
            }
        }
    }
}
