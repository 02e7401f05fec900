//! Fault lab (issue #7): master, middle box and replica each in their own
//! network namespace, joined by veth links; `nft` rules in the middle box
//! drop the replication traffic silently (no RST, no ICMP) or reset one side
//! of it, and each test measures how long both ends take to notice, how the
//! replica comes back (PSYNC `+CONTINUE` or a full resync) and compares the
//! two datasets key by key afterwards.
//!
//! ```text
//!   ns tl-<pid>-<n>-m        ns tl-<pid>-<n>-x (ip_forward=1)        ns tl-<pid>-<n>-r
//!   master                   middle box: table inet lab,             replica
//!   10.77.0.1:6379 vm ══ vxm 10.77.0.2    chain fw (forward hook)    10.77.0.5 vxr ══ vr 10.77.0.6:6379
//!   default via 10.77.0.2                                            default via 10.77.0.5
//! ```
//!
//! The test process stays in the root namespace. It reaches each server
//! through a loopback proxy (`NsProxy`) whose connecting thread has joined
//! the server's namespace with setns(2), so those connections never cross
//! the middle box and every helper of `tests/common` works on the proxy's
//! port (INFO, `assert_same_dataset`, the `redis` crate). Only addresses
//! inside the lab's namespaces carry lab traffic.
//!
//! Scenarios (each with repl-timeout of a few seconds, bounded run time):
//! 1. symmetric silent drop while writes continue;
//! 2. half-open: the middle box answers the master's segments with a TCP
//!    reset and drops the replica's silently, so the master sees its link
//!    end while the replica's socket stays ESTABLISHED (2a: detection by the
//!    repl-timeout heartbeat with keepalive off; 2b: by TCP keepalive with
//!    the heartbeat timeout set high);
//! 3. busy link: a large stream in flight when the drop starts (3a: an
//!    online link carrying big values; 3b: a diskless full sync), detected
//!    by TCP_USER_TIMEOUT;
//! 4. a partition longer than the backlog covers: full resync.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `tc` with the tbf
//! qdisc; `tests/run.sh` installs the packages. A missing tool fails the
//! test with the install hint: tests never skip. Lab tests run one at a
//! time (a process-wide lock), whatever `--test-threads` says, because
//! their bounds are timings. Detection bounds are the issue's
//! repl-timeout + 1 s plus `POLL_SLACK` for reading INFO every 100 ms
//! through the proxies.
mod common;

use common::{
    Kind, RawConn, Resp, assert_same_dataset, info_int, info_section, info_value, stock_tool,
    wait_for,
};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const MASTER_IP: &str = "10.77.0.1";
const X_MASTER_SIDE: &str = "10.77.0.2";
const X_REPLICA_SIDE: &str = "10.77.0.5";
const REPLICA_IP: &str = "10.77.0.6";
/// Every server listens on this port inside its own namespace.
const PORT: u16 = 6379;

/// repl-timeout for the heartbeat scenarios, in seconds.
const REPL_TIMEOUT: u64 = 3;
/// Measurement slack on top of a detection bound: INFO is polled every
/// 100 ms through the proxies, on a loaded 2-core machine.
const POLL_SLACK: Duration = Duration::from_millis(500);
/// "After heal the replica reconnects within a few seconds": a connect
/// attempt made during the partition can wait up to repl-timeout for its
/// SYN, then the reconnect backoff (<= 1 s), handshake and PSYNC.
const RECOVER_BOUND: Duration = Duration::from_secs(10);
/// Start-up of a server, or an initial sync of a small dataset.
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// Absolute path of a system tool (sbin dirs included), or a loud panic.
fn sys_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found (PATH and /usr/sbin, /sbin). The fault lab needs iproute2 and \
         nftables: `apt-get install -y iproute2 nftables` (tests/run.sh installs them). \
         Tests never skip."
    );
}

/// Runs a tool, panicking with its output on failure; returns stdout.
fn run(prog: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", prog.display()));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\nstdin: {}\nstdout: {}\nstderr: {}",
        prog.display(),
        out.status,
        stdin.unwrap_or(""),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The calling thread joins network namespace `ns` (setns(2) changes only
/// the calling thread; threads it spawns afterwards start in `ns` too).
fn enter_netns(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open /run/netns/{ns}: {e}"));
    // SAFETY: setns(2) on a namespace fd we own; no memory is shared.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({ns}): {}", std::io::Error::last_os_error());
}

// ---------------------------------------------------------------------------
// NsProxy: 127.0.0.1:<port> in the root namespace -> <ip>:6379 in a lab one
// ---------------------------------------------------------------------------

/// A TCP forwarder from a root-namespace loopback port to a server inside a
/// lab namespace. The listener is created before the accept thread joins
/// the namespace, so it stays in the root one; the outgoing connections are
/// created after, so they start inside the lab namespace and are local
/// there (they never cross the middle box).
struct NsProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl NsProxy {
    fn new(ns: &str, target: SocketAddr) -> NsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, flag) = (ns.to_string(), stop.clone());
        let accept = thread::spawn(move || {
            enter_netns(&ns);
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                // Refused (server not up yet, or killed): dropping the
                // client shows it an EOF.
                if let Ok(up) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    splice(client, up);
                }
            }
        });
        NsProxy {
            port,
            stop,
            accept: Some(accept),
        }
    }
}

/// Copies both ways until either side ends, then shuts both down, so that
/// neither thread outlives the connection (they pin the namespace).
fn splice(a: TcpStream, b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let pairs = [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)];
    for (from, to) in pairs {
        thread::spawn(move || {
            let _ = std::io::copy(&mut &from, &mut &to);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
}

impl Drop for NsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Node: a server inside a lab namespace
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Master,
    Replica,
}

/// A tether or stock redis-server process in a lab namespace, started with
/// `ip netns exec`, bound to the namespace address, reachable at
/// `127.0.0.1:<port()>` from the test through its proxy.
struct Node {
    kind: Kind,
    role: Role,
    ip: &'static str,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    proxy: Option<NsProxy>,
}

impl Node {
    /// The proxy port: use it with every `tests/common` helper.
    fn port(&self) -> u16 {
        self.proxy.as_ref().unwrap().port
    }

    fn label(&self) -> String {
        let k = match self.kind {
            Kind::Tether => "tether",
            Kind::StockRedis => "redis-server",
        };
        format!("{k} {:?} {}:{PORT}", self.role, self.ip)
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<cannot read log: {e}>"))
    }

    /// Log text written since `from` (a byte length of `logs()`).
    fn logs_since(&self, from: usize) -> String {
        let l = self.logs();
        l.get(from..).unwrap_or("").to_string()
    }

    fn repl(&self) -> String {
        info_section(self.port(), "replication")
    }

    fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After the server: its connections end, and so do the proxy's.
        self.proxy.take();
        if thread::panicking() {
            let l = self.logs();
            let start = l.len().saturating_sub(5000);
            let start = (start..l.len())
                .find(|&i| l.is_char_boundary(i))
                .unwrap_or(l.len());
            eprintln!(
                "--- {} log (test panicked) ---\n{}",
                self.label(),
                &l[start..]
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `PING` through the proxy answers `+PONG`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------
// Lab: three namespaces, two veth links, the middle box's nft table
// ---------------------------------------------------------------------------

/// Lab tests measure time: one at a time in this process.
static LAB_LOCK: Mutex<()> = Mutex::new(());
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// What the middle box does to the replication traffic.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Silently drop both directions.
    Both,
    /// The story: the master's segments are answered with a TCP reset
    /// (its side of the link ends), the replica's are dropped silently
    /// (its socket stays ESTABLISHED).
    HalfOpen,
}

/// The namespaces, links and rules of one test; removed on drop, panics
/// included. Owns the servers so that they (and the proxies that pin the
/// namespaces) go before the namespaces do.
struct Lab {
    ns_m: String,
    ns_x: String,
    ns_r: String,
    ip: PathBuf,
    nft: PathBuf,
    tc: PathBuf,
    master: Option<Node>,
    replica: Option<Node>,
    /// Last field: released after `Drop::drop` has cleaned up.
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    fn new() -> Lab {
        let serial = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: geteuid(2) has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the fault lab creates network namespaces: run the tests as root (tests/run.sh does)"
        );
        let (ip, nft, tc) = (sys_tool("ip"), sys_tool("nft"), sys_tool("tc"));
        remove_stale_labs(&ip);
        let prefix = format!(
            "tl-{}-{}",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            ns_m: format!("{prefix}-m"),
            ns_x: format!("{prefix}-x"),
            ns_r: format!("{prefix}-r"),
            ip,
            nft,
            tc,
            master: None,
            replica: None,
            _serial: serial,
        };
        lab.build();
        lab
    }

    fn ipc(&self, args: &[&str]) -> String {
        run(&self.ip, args, None)
    }

    /// `ip netns exec <ns> <prog> args...`.
    fn exec(&self, ns: &str, prog: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let p = prog.to_string_lossy();
        let mut full = vec!["netns", "exec", ns, p.as_ref()];
        full.extend_from_slice(args);
        run(&self.ip, &full, stdin)
    }

    fn build(&mut self) {
        let (m, x, r) = (self.ns_m.clone(), self.ns_x.clone(), self.ns_r.clone());
        for ns in [&m, &x, &r] {
            self.ipc(&["netns", "add", ns]);
            self.ipc(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Created directly inside the namespaces: no name in the root one.
        self.ipc(&[
            "link", "add", "vm", "netns", &m, "type", "veth", "peer", "name", "vxm", "netns", &x,
        ]);
        self.ipc(&[
            "link", "add", "vr", "netns", &r, "type", "veth", "peer", "name", "vxr", "netns", &x,
        ]);
        for (ns, dev, addr) in [
            (&m, "vm", MASTER_IP),
            (&x, "vxm", X_MASTER_SIDE),
            (&x, "vxr", X_REPLICA_SIDE),
            (&r, "vr", REPLICA_IP),
        ] {
            self.ipc(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
            self.ipc(&["-n", ns, "link", "set", dev, "up"]);
        }
        self.ipc(&["-n", &m, "route", "add", "default", "via", X_MASTER_SIDE]);
        self.ipc(&["-n", &r, "route", "add", "default", "via", X_REPLICA_SIDE]);
        self.exec(
            &x,
            Path::new("/bin/sh"),
            &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            None,
        );
        let nft = self.nft.clone();
        self.exec(
            &x,
            &nft,
            &["-f", "-"],
            Some(
                "table inet lab {\n  chain fw {\n    type filter hook forward priority 0; policy accept;\n  }\n}\n",
            ),
        );
    }

    /// Installs the middle box's rules for `cut`; returns when they are in.
    fn cut(&self, cut: Cut) -> Instant {
        let rules = match cut {
            Cut::Both => format!(
                "add rule inet lab fw ip saddr {MASTER_IP} ip daddr {REPLICA_IP} drop\n\
                 add rule inet lab fw ip saddr {REPLICA_IP} ip daddr {MASTER_IP} drop\n"
            ),
            Cut::HalfOpen => format!(
                "add rule inet lab fw ip saddr {MASTER_IP} ip daddr {REPLICA_IP} meta l4proto tcp reject with tcp reset\n\
                 add rule inet lab fw ip saddr {REPLICA_IP} ip daddr {MASTER_IP} drop\n"
            ),
        };
        self.exec(&self.ns_x, &self.nft, &["-f", "-"], Some(&rules));
        Instant::now()
    }

    /// Removes every rule (and any shaping); returns when done.
    fn heal(&self) -> Instant {
        self.exec(
            &self.ns_x,
            &self.nft,
            &["flush", "chain", "inet", "lab", "fw"],
            None,
        );
        self.unshape();
        Instant::now()
    }

    /// Rate-limits the master -> replica direction (egress of the middle
    /// box towards the replica), so a stream piles up in the master's
    /// socket: the "large stream in flight".
    fn shape(&self, rate: &str) {
        self.exec(
            &self.ns_x,
            &self.tc,
            &[
                "qdisc", "add", "dev", "vxr", "root", "tbf", "rate", rate, "burst", "64kb",
                "latency", "200ms",
            ],
            None,
        );
    }

    fn unshape(&self) {
        let _ = Command::new(&self.ip)
            .args(["netns", "exec", &self.ns_x])
            .arg(&self.tc)
            .args(["qdisc", "del", "dev", "vxr", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `ss -tnoi` in the master's or replica's namespace (for messages).
    fn ss(&self, role: Role) -> String {
        let ns = match role {
            Role::Master => &self.ns_m,
            Role::Replica => &self.ns_r,
        };
        let ss = sys_tool("ss");
        self.exec(ns, &ss, &["-tnoi"], None)
    }

    /// Send-Q of the master's replication socket(s), summed: bytes the
    /// replica has not acknowledged yet.
    fn master_send_q(&self) -> u64 {
        self.ss(Role::Master)
            .lines()
            .filter(|l| l.contains(&format!("{MASTER_IP}:{PORT}")) && l.contains(REPLICA_IP))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum()
    }

    fn master(&self) -> &Node {
        self.master.as_ref().expect("master started")
    }

    fn replica(&self) -> &Node {
        self.replica.as_ref().expect("replica started")
    }

    /// Starts a server in the master's or the replica's namespace. Common
    /// settings: no persistence, a full sync starts at once, a PING into the
    /// stream every second; `extra` comes last and wins. A replica follows
    /// the master from its first second.
    fn start(&mut self, role: Role, kind: Kind, extra: &[&str]) {
        let (ns, ip) = match role {
            Role::Master => (self.ns_m.clone(), MASTER_IP),
            Role::Replica => (self.ns_r.clone(), REPLICA_IP),
        };
        let dir = std::env::temp_dir().join(&ns);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let port = PORT.to_string();
        let dir_s = dir.to_string_lossy().into_owned();
        let master_addr = format!("{MASTER_IP} {PORT}");
        let (program, mut args): (PathBuf, Vec<&str>) = match kind {
            Kind::Tether => (
                PathBuf::from(env!("CARGO_BIN_EXE_tether")),
                vec!["--shards", "2"],
            ),
            Kind::StockRedis => (
                stock_tool("redis-server"),
                // Our proxied connections come from the namespace address,
                // not loopback.
                vec!["--appendonly", "no", "--protected-mode", "no"],
            ),
        };
        args.extend_from_slice(&[
            "--bind",
            ip,
            "--port",
            &port,
            "--save",
            "",
            "--dir",
            &dir_s,
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "1",
        ]);
        if role == Role::Replica {
            match kind {
                Kind::Tether => args.extend_from_slice(&["--replicaof", &master_addr]),
                Kind::StockRedis => args.extend_from_slice(&["--replicaof", MASTER_IP, "6379"]),
            }
        }
        args.extend_from_slice(extra);
        let logf = File::create(&log).unwrap();
        // `ip netns exec` execs the program in place: the child is the server.
        let child = Command::new(&self.ip)
            .args(["netns", "exec", &ns])
            .arg(&program)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
        let target: SocketAddr = format!("{ip}:{PORT}").parse().unwrap();
        let mut node = Node {
            kind,
            role,
            ip,
            child,
            dir,
            log,
            proxy: Some(NsProxy::new(&ns, target)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !answers_ping(node.port()) {
            assert!(
                node.is_alive(),
                "{} exited during start-up; args {args:?}\n{}",
                node.label(),
                node.logs()
            );
            assert!(
                Instant::now() < deadline,
                "{} did not answer PING within {START_TIMEOUT:?}; args {args:?}\n{}",
                node.label(),
                node.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
        match role {
            Role::Master => self.master = Some(node),
            Role::Replica => self.replica = Some(node),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.replica.take();
        self.master.take();
        for ns in [&self.ns_m, &self.ns_x, &self.ns_r] {
            remove_netns(&self.ip, ns);
        }
    }
}

/// Kills what still runs in `ns` (only this suite starts processes in a
/// `tl-` namespace) and deletes it; deleting the namespace removes its
/// veths. Never panics: it runs in Drop.
fn remove_netns(ip: &Path, ns: &str) {
    if let Ok(out) = Command::new(ip).args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    match Command::new(ip).args(["netns", "del", ns]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "fault lab: `ip netns del {ns}` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("fault lab: `ip netns del {ns}`: {e}"),
    }
}

/// Namespaces left by a test process that no longer exists (killed before
/// its Drop ran): `tl-<pid>-...` whose pid is gone.
fn remove_stale_labs(ip: &Path) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("tl-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_netns(ip, &name);
        }
    }
}

// ---------------------------------------------------------------------------
// Writes, INFO, waiting
// ---------------------------------------------------------------------------

fn connect(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let con = c
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to proxy :{port}: {e}"));
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    con
}

/// One acknowledged `SET`: key, value, when the `+OK` arrived.
type Acked = (String, Vec<u8>, Instant);

/// A client writing to the master (through its proxy, so never across the
/// middle box) until stopped: `SET k:<n>` with a `value_size`-byte value
/// every `interval`, and every 16th time an `RPUSH`, `HINCRBY` and `SADD`
/// so the dataset has more than strings. It records every acknowledged SET.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<Vec<Acked>, String>>>,
}

impl Writer {
    fn start(port: u16, value_size: usize, interval: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut con = connect(port);
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                let key = format!("k:{n:08}");
                let mut value = format!("{n}:").into_bytes();
                value.resize(value_size.max(value.len()), b'a' + (n % 26) as u8);
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .query::<()>(&mut con)
                    .map_err(|e| format!("SET {key} failed: {e}"))?;
                acked.push((key, value, Instant::now()));
                if n.is_multiple_of(16) {
                    redis::pipe()
                        .cmd("RPUSH")
                        .arg("list")
                        .arg(n)
                        .ignore()
                        .cmd("HINCRBY")
                        .arg("hash")
                        .arg(format!("f{}", n % 100))
                        .arg(1)
                        .ignore()
                        .cmd("SADD")
                        .arg("set")
                        .arg(n % 1000)
                        .ignore()
                        .query::<()>(&mut con)
                        .map_err(|e| format!("pipeline after k:{n:08} failed: {e}"))?;
                }
                n += 1;
                if !interval.is_zero() {
                    thread::sleep(interval);
                }
            }
            Ok(acked)
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the writer; every SET it got `+OK` for.
    fn stop(mut self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().unwrap().join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                panic!("writer to the master failed (it never crosses the middle box): {e}")
            }
            Err(_) => panic!("writer thread panicked"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// (sync_full, sync_partial_ok) from the master's INFO stats.
fn sync_counters(n: &Node) -> (i64, i64) {
    let st = info_section(n.port(), "stats");
    (info_int(&st, "sync_full"), info_int(&st, "sync_partial_ok"))
}

fn link_status(replica: &Node) -> String {
    info_value(&replica.repl(), "master_link_status").unwrap_or_default()
}

/// `slaveN:` lines of the master's INFO with state=online.
fn online_replicas(master: &Node) -> usize {
    master
        .repl()
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count()
}

/// Replica link up and master reporting it online.
fn wait_linked(lab: &Lab, timeout: Duration) {
    wait_for("the replica's link to come up", timeout, || {
        let st = link_status(lab.replica());
        let on = online_replicas(lab.master());
        if st == "up" && on == 1 {
            Ok(())
        } else {
            Err(format!(
                "replica master_link_status:{st}, master online replicas {on}"
            ))
        }
    });
}

/// Replica caught up with the master's offset (read in the same poll).
fn wait_caught_up(lab: &Lab, timeout: Duration) {
    wait_for("the replica to catch up", timeout, || {
        let r = lab.replica().repl();
        let m = info_int(&lab.master().repl(), "master_repl_offset");
        let ro = info_int(&r, "slave_repl_offset");
        let link = info_value(&r, "master_link_status").unwrap_or_default();
        if link == "up" && ro == m {
            Ok(())
        } else {
            Err(format!(
                "link {link}, master_repl_offset {m}, replica slave_repl_offset {ro}"
            ))
        }
    });
}

/// Time from the cut until each side reported the link gone.
#[derive(Debug, Default)]
struct Detection {
    master: Option<Duration>,
    replica: Option<Duration>,
}

/// How a side noticed, from its log since the cut: (pattern, name).
const MECHANISMS: &[(&str, &str)] = &[
    ("Disconnecting timedout replica", "repl-timeout (no ACK)"),
    ("MASTER timeout", "repl-timeout (master silent)"),
    ("timeout reading from master", "repl-timeout (read)"),
    (
        "TCP keepalive or TCP_USER_TIMEOUT",
        "TCP keepalive / TCP_USER_TIMEOUT",
    ),
    ("Connection reset by peer", "TCP reset"),
    ("closed by the replica", "EOF"),
    ("connection closed by master", "EOF"),
    ("Connection with replica", "socket closed"),
    ("Connection with master lost", "socket closed"),
];

/// The first log line that names a way of noticing; within a line the
/// table's order decides (specific causes before "socket closed").
fn mechanism(log: &str) -> String {
    log.lines()
        .find_map(|l| MECHANISMS.iter().find(|(pat, _)| l.contains(pat)))
        .map_or("<nothing in the log>".into(), |(_, n)| n.to_string())
}

/// Polls both sides every 100 ms from `t0` until each is down or `limit`
/// passes. `replica_down` decides for the replica (link down, or a sync
/// abandoned); the master is down when it lists no replica.
fn watch_detection(
    lab: &Lab,
    t0: Instant,
    limit: Duration,
    replica_down: impl Fn(&Node) -> bool,
) -> Detection {
    let mut d = Detection::default();
    while t0.elapsed() < limit && (d.master.is_none() || d.replica.is_none()) {
        if d.master.is_none() && info_int(&lab.master().repl(), "connected_slaves") == 0 {
            d.master = Some(t0.elapsed());
        }
        if d.replica.is_none() && replica_down(lab.replica()) {
            d.replica = Some(t0.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    d
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("not detected".into(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    Partial,
    Full,
}

/// How each side noticed the cut (see `MECHANISMS`).
struct Measured {
    master_mech: String,
    replica_mech: String,
    /// Bytes the replica had not acknowledged, read right after the cut.
    send_q: u64,
}

/// Asserts the master's sync counters moved as `expect` says between
/// `before` and now.
fn assert_resync(lab: &Lab, before: (i64, i64), expect: Resync) {
    let after = sync_counters(lab.master());
    let (full, partial) = (after.0 - before.0, after.1 - before.1);
    let ok = match expect {
        Resync::Partial => full == 0 && partial == 1,
        Resync::Full => full == 1 && partial == 0,
    };
    assert!(
        ok,
        "expected one {expect:?} resync after the heal; the master counted {full} full and \
         {partial} partial (sync_full {} -> {}, sync_partial_ok {} -> {})\nreplica log since start:\n{}",
        before.0,
        after.0,
        before.1,
        after.1,
        lab.replica().logs()
    );
}

/// Every SET acknowledged before `t0` reads back the same on the replica.
fn assert_acked_on_replica(lab: &Lab, acked: &[Acked], t0: Instant) {
    let before: Vec<&Acked> = acked.iter().filter(|(_, _, t)| *t < t0).collect();
    assert!(
        !before.is_empty(),
        "the writer got no SET acknowledged before the cut"
    );
    let mut con = connect(lab.replica().port());
    for chunk in before.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
        let got: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut con)
            .expect("MGET on the replica");
        for ((k, v, _), g) in chunk.iter().zip(got) {
            assert!(
                g.as_deref() == Some(v.as_slice()),
                "{k}, acknowledged by the master before the partition, reads {} on the replica",
                match &g {
                    None => "nil".to_string(),
                    Some(g) => format!("a different value ({} bytes)", g.len()),
                }
            );
        }
    }
    eprintln!(
        "[fault-lab]   {} SETs acknowledged before the cut are all on the replica ({} in total)",
        before.len(),
        acked.len()
    );
}

fn assert_detected(
    what: &str,
    got: Option<Duration>,
    bound: Duration,
    lab: &Lab,
    role: Role,
    log: &str,
    hint: &str,
) {
    assert!(
        got.is_some_and(|d| d <= bound),
        "{what}: {} should have noticed the cut within {:.1} s; it took {}.{hint}\n\
         its log since the cut:\n{log}\n--- ss -tnoi in its namespace ---\n{}",
        match role {
            Role::Master => lab.master().label(),
            Role::Replica => lab.replica().label(),
        },
        bound.as_secs_f64(),
        secs(got),
        lab.ss(role)
    );
}

// ---------------------------------------------------------------------------
// The scenario runner
// ---------------------------------------------------------------------------

/// One scenario: start the pair, write, cut, measure detection against the
/// bounds, optionally hold the partition, heal, measure recovery, check the
/// resync type and the data.
struct Plan<'a> {
    name: &'a str,
    replica_kind: Kind,
    master_args: &'a [&'a str],
    replica_args: &'a [&'a str],
    cut: Cut,
    /// Writer: value size and pause between writes.
    value_size: usize,
    interval: Duration,
    /// Stop the writer right after the cut (else it runs until recovery).
    stop_writes_at_cut: bool,
    /// tbf rate on the master -> replica direction, removed by the heal.
    shape: Option<&'a str>,
    /// How long the writer runs before the cut.
    warmup: Duration,
    master_bound: Duration,
    replica_bound: Duration,
    /// Before healing, once both sides noticed: wait until this holds.
    hold_until: Option<&'a dyn Fn(&Lab) -> bool>,
    resync: Resync,
    /// Added to a detection failure's message.
    hint: &'a str,
}

impl Default for Plan<'_> {
    fn default() -> Self {
        Plan {
            name: "",
            replica_kind: Kind::Tether,
            master_args: &[],
            replica_args: &[],
            cut: Cut::Both,
            value_size: 64,
            interval: Duration::from_millis(3),
            stop_writes_at_cut: false,
            shape: None,
            warmup: Duration::from_secs(1),
            master_bound: Duration::from_secs(REPL_TIMEOUT + 1) + POLL_SLACK,
            replica_bound: Duration::from_secs(REPL_TIMEOUT + 1) + POLL_SLACK,
            hold_until: None,
            resync: Resync::Partial,
            hint: "",
        }
    }
}

fn run_plan(p: &Plan) -> Measured {
    let started = Instant::now();
    let mut lab = Lab::new();
    lab.start(Role::Master, Kind::Tether, p.master_args);
    lab.start(Role::Replica, p.replica_kind, p.replica_args);
    wait_linked(&lab, START_TIMEOUT);
    if let Some(rate) = p.shape {
        lab.shape(rate);
    }
    let writer = Writer::start(lab.master().port(), p.value_size, p.interval);
    thread::sleep(p.warmup);
    let counters = sync_counters(lab.master());
    let (mlog, rlog) = (lab.master().logs().len(), lab.replica().logs().len());

    let t0 = lab.cut(p.cut);
    let send_q = lab.master_send_q();
    let mut writer = Some(writer);
    let mut acked = Vec::new();
    if p.stop_writes_at_cut {
        acked = writer.take().unwrap().stop();
    }
    let limit = p.master_bound.max(p.replica_bound) + Duration::from_secs(2);
    let d = watch_detection(&lab, t0, limit, |r| link_status(r) == "down");
    let (ml, rl) = (
        lab.master().logs_since(mlog),
        lab.replica().logs_since(rlog),
    );
    let (mm, rm) = (mechanism(&ml), mechanism(&rl));
    eprintln!(
        "[fault-lab] {}: master noticed after {} ({mm}), replica after {} ({rm}); \
         master Send-Q at the cut {send_q} bytes",
        p.name,
        secs(d.master),
        secs(d.replica)
    );
    assert_detected(
        p.name,
        d.master,
        p.master_bound,
        &lab,
        Role::Master,
        &ml,
        p.hint,
    );
    assert_detected(
        p.name,
        d.replica,
        p.replica_bound,
        &lab,
        Role::Replica,
        &rl,
        p.hint,
    );
    if let Some(hold) = p.hold_until {
        wait_for(
            "the partition's hold condition",
            Duration::from_secs(20),
            || {
                if hold(&lab) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            },
        );
    }

    let healed = lab.heal();
    wait_linked(&lab, RECOVER_BOUND);
    let recovery = healed.elapsed();
    if let Some(w) = writer.take() {
        acked = w.stop();
    }
    wait_caught_up(&lab, Duration::from_secs(20));
    eprintln!(
        "[fault-lab] {}: link back {:.2} s after the heal; checking data",
        p.name,
        recovery.as_secs_f64()
    );
    assert_resync(&lab, counters, p.resync);
    assert_same_dataset(lab.master().port(), lab.replica().port(), &[0]);
    assert_acked_on_replica(&lab, &acked, t0);
    eprintln!(
        "[fault-lab] {}: passed in {:.1} s",
        p.name,
        started.elapsed().as_secs_f64()
    );
    Measured {
        master_mech: mm,
        replica_mech: rm,
        send_q,
    }
}

/// The one timeout the heartbeat scenarios use, on both ends.
fn hb_args() -> Vec<String> {
    vec!["--repl-timeout".into(), REPL_TIMEOUT.to_string()]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

// ---------------------------------------------------------------------------
// 1. Symmetric silent drop while writes continue
// ---------------------------------------------------------------------------

fn symmetric_drop(replica_kind: Kind, name: &str) {
    let args = hb_args();
    let args = strs(&args);
    run_plan(&Plan {
        name,
        replica_kind,
        master_args: &args,
        replica_args: &args,
        cut: Cut::Both,
        // A stock replica's clock for repl-timeout is whole seconds
        // (`lastinteraction` is a unixtime checked by a 1 Hz cron).
        replica_bound: Duration::from_secs(
            REPL_TIMEOUT + if replica_kind == Kind::Tether { 1 } else { 2 },
        ) + POLL_SLACK,
        resync: Resync::Partial,
        ..Plan::default()
    });
}

#[test]
fn s1_symmetric_drop_tether_replica() {
    symmetric_drop(Kind::Tether, "1 symmetric drop, tether -> tether");
}

#[test]
fn s1_symmetric_drop_stock_replica() {
    symmetric_drop(
        Kind::StockRedis,
        "1 symmetric drop, tether -> stock replica",
    );
}

// ---------------------------------------------------------------------------
// 2. Half-open: the master's side reset, the replica's dropped silently
// ---------------------------------------------------------------------------

/// 2a: keepalive off and TCP_USER_TIMEOUT off on both ends, so only the
/// replica's repl-timeout heartbeat (no data nor PING from the master) can
/// notice; the master notices from the reset of its next PING.
fn half_open_heartbeat(replica_kind: Kind, name: &str) {
    let mut args = hb_args();
    args.extend(["--tcp-keepalive".into(), "0".into()]);
    let mut targs = args.clone();
    targs.extend(["--repl-tcp-user-timeout".into(), "-1".into()]);
    let (targs, args) = (strs(&targs), strs(&args));
    let m = run_plan(&Plan {
        name,
        replica_kind,
        master_args: &targs,
        replica_args: if replica_kind == Kind::Tether {
            &targs[..]
        } else {
            &args[..]
        },
        cut: Cut::HalfOpen,
        // The next PING (every second) meets the reset.
        master_bound: Duration::from_secs(1) + POLL_SLACK + Duration::from_millis(500),
        replica_bound: Duration::from_secs(
            REPL_TIMEOUT + if replica_kind == Kind::Tether { 1 } else { 2 },
        ) + POLL_SLACK,
        resync: Resync::Partial,
        ..Plan::default()
    });
    assert_eq!(m.master_mech, "TCP reset", "{name}: how the master noticed");
    assert!(
        m.replica_mech.starts_with("repl-timeout"),
        "{name}: with keepalive and TCP_USER_TIMEOUT off only the heartbeat can notice; \
         the replica's log says {}",
        m.replica_mech
    );
}

#[test]
fn s2a_half_open_heartbeat_tether_replica() {
    half_open_heartbeat(Kind::Tether, "2a half-open, heartbeat, tether -> tether");
}

#[test]
fn s2a_half_open_heartbeat_stock_replica() {
    half_open_heartbeat(
        Kind::StockRedis,
        "2a half-open, heartbeat, tether -> stock replica",
    );
}

/// 2b: the heartbeat timeout set high (30 s, beyond the bound), tcp-keepalive
/// 2 (idle 2 s, then 3 probes 1 s apart) and repl-tcp-user-timeout at its
/// default: the replica must notice within the time keepalive promises.
///
/// Linux sends keepalive probes only on a socket with nothing
/// unacknowledged, and the replica writes `REPLCONF ACK` every second, so
/// across this drop its socket always has data in flight (ss: the
/// retransmission timer, `unacked:1`). tether therefore caps the link's
/// TCP_USER_TIMEOUT at the keepalive time (2 + 3 x 1 s) when tcp-keepalive
/// is on. The bound adds the ACK cadence (the first unacknowledged ACK
/// leaves up to 1 s after the cut) and the retransmission timer's
/// granularity (the kernel checks the user timeout when an RTO expires).
#[test]
fn s2b_half_open_keepalive_tether_replica() {
    let args = ["--repl-timeout", "30", "--tcp-keepalive", "2"];
    let keepalive_bound =
        Duration::from_secs(2 + 3) + Duration::from_secs(1) + Duration::from_secs(2) + POLL_SLACK;
    let m = run_plan(&Plan {
        name: "2b half-open, keepalive, tether -> tether",
        master_args: &args,
        replica_args: &args,
        cut: Cut::HalfOpen,
        master_bound: Duration::from_secs(1) + POLL_SLACK + Duration::from_millis(500),
        replica_bound: keepalive_bound,
        resync: Resync::Partial,
        hint: "\nKeepalive cannot probe a socket with unacknowledged data (the replica's \
               REPLCONF ACK is in flight across this drop); TCP_USER_TIMEOUT, capped at the \
               keepalive time when tcp-keepalive is on, must bound it.",
        ..Plan::default()
    });
    assert_eq!(m.master_mech, "TCP reset");
    assert_eq!(m.replica_mech, "TCP keepalive / TCP_USER_TIMEOUT");
}

// ---------------------------------------------------------------------------
// 3. Busy link: a large stream in flight when the drop starts
// ---------------------------------------------------------------------------

/// 3a: an online link shaped to 16 Mbit/s while the master streams 16 KiB
/// values at ~4 MB/s, so megabytes sit unacknowledged in the master's
/// socket when the drop starts (keepalive never probes a socket with data
/// in flight). repl-timeout 30 is out of reach; repl-tcp-user-timeout 2000
/// must end both sockets within 2 s of their first unacknowledged byte.
#[test]
fn s3a_busy_link_tcp_user_timeout() {
    let args = [
        "--repl-timeout",
        "30",
        "--repl-tcp-user-timeout",
        "2000",
        "--tcp-keepalive",
        "1",
        "--repl-backlog-size",
        "64mb",
    ];
    let m = run_plan(&Plan {
        name: "3a busy link, TCP_USER_TIMEOUT, tether -> tether",
        master_args: &args,
        replica_args: &args,
        cut: Cut::Both,
        value_size: 16 << 10,
        interval: Duration::from_millis(4),
        stop_writes_at_cut: true,
        shape: Some("16mbit"),
        warmup: Duration::from_secs(2),
        // The master's oldest unacknowledged segment left before the cut.
        master_bound: Duration::from_secs(2 + 1) + POLL_SLACK,
        // The replica has data in flight only from its next REPLCONF ACK,
        // up to 2 s after the cut (once a second, checked on a 1 s read
        // timeout), then 2 s of TCP_USER_TIMEOUT.
        replica_bound: Duration::from_secs(2 + 2) + POLL_SLACK,
        resync: Resync::Partial,
        ..Plan::default()
    });
    assert!(
        m.send_q >= 256 << 10,
        "the premise: a large stream in flight at the cut; the master's Send-Q was {} bytes",
        m.send_q
    );
    assert_eq!(
        m.master_mech, "TCP keepalive / TCP_USER_TIMEOUT",
        "how the master noticed"
    );
    assert_eq!(
        m.replica_mech, "TCP keepalive / TCP_USER_TIMEOUT",
        "how the replica noticed"
    );
}

/// 3b: the drop lands in the middle of a diskless full sync (8 MiB through
/// a 16 Mbit/s link). The master applies no repl-timeout to a transfer in
/// progress (as Redis), so TCP_USER_TIMEOUT (2 s) is what must end it; the
/// replica, waiting for the next chunk, notices by its own socket
/// (keepalive bounded by TCP_USER_TIMEOUT), well before repl-timeout 30.
/// After the heal the sync starts over and completes.
#[test]
fn s3b_busy_full_sync_tcp_user_timeout() {
    let started = Instant::now();
    let args = [
        "--repl-timeout",
        "30",
        "--repl-tcp-user-timeout",
        "2000",
        "--tcp-keepalive",
        "1",
    ];
    let mut lab = Lab::new();
    lab.start(Role::Master, Kind::Tether, &args);
    // 2048 x 4 KiB of noise (the RDB compresses repeated bytes): ~4 s
    // through the shaped link.
    let mut con = connect(lab.master().port());
    let mut pipe = redis::pipe();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..2048 {
        let v: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        pipe.cmd("SET").arg(format!("big:{i:05}")).arg(v).ignore();
    }
    pipe.query::<()>(&mut con).expect("load the master");
    lab.shape("16mbit");
    lab.start(Role::Replica, Kind::Tether, &args);
    wait_for(
        "1 MiB of the snapshot to reach the replica",
        START_TIMEOUT,
        || {
            let r = lab.replica().repl();
            let got = info_value(&r, "master_sync_read_bytes")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if got >= 1 << 20 {
                Ok(())
            } else {
                Err(format!(
                    "master_sync_in_progress {:?}, master_sync_read_bytes {got}",
                    info_value(&r, "master_sync_in_progress")
                ))
            }
        },
    );
    let counters = sync_counters(lab.master());
    let (mlog, rlog) = (lab.master().logs().len(), lab.replica().logs().len());
    let t0 = lab.cut(Cut::Both);
    let send_q = lab.master_send_q();
    let bound = Duration::from_secs(2 + 1) + POLL_SLACK;
    let d = watch_detection(&lab, t0, bound + Duration::from_secs(3), |r| {
        let i = r.repl();
        info_value(&i, "master_sync_in_progress").as_deref() == Some("0")
            && info_value(&i, "master_link_status").as_deref() == Some("down")
    });
    let (ml, rl) = (
        lab.master().logs_since(mlog),
        lab.replica().logs_since(rlog),
    );
    let (mm, rm) = (mechanism(&ml), mechanism(&rl));
    let name = "3b busy full sync, TCP_USER_TIMEOUT, tether -> tether";
    eprintln!(
        "[fault-lab] {name}: master noticed after {} ({mm}), replica abandoned the sync after {} ({rm}); \
         master Send-Q at the cut {send_q} bytes",
        secs(d.master),
        secs(d.replica)
    );
    assert!(
        send_q >= 256 << 10,
        "the premise: a large stream in flight at the cut; the master's Send-Q was {send_q} bytes"
    );
    assert_detected(name, d.master, bound, &lab, Role::Master, &ml, "");
    assert_detected(name, d.replica, bound, &lab, Role::Replica, &rl, "");
    assert_eq!(
        mm, "TCP keepalive / TCP_USER_TIMEOUT",
        "how the master noticed"
    );
    let healed = lab.heal();
    wait_linked(&lab, Duration::from_secs(20));
    eprintln!(
        "[fault-lab] {name}: link back {:.2} s after the heal",
        healed.elapsed().as_secs_f64()
    );
    wait_caught_up(&lab, Duration::from_secs(20));
    assert_resync(&lab, counters, Resync::Full);
    assert_same_dataset(lab.master().port(), lab.replica().port(), &[0]);
    let n: i64 = redis::cmd("DBSIZE")
        .query(&mut connect(lab.replica().port()))
        .unwrap();
    assert_eq!(n, 2048, "replica DBSIZE after the second full sync");
    eprintln!(
        "[fault-lab] {name}: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 4. A partition longer than the backlog covers
// ---------------------------------------------------------------------------

/// The master keeps writing through the partition until its 16 KiB backlog
/// (tether's minimum) no longer holds the replica's next offset; after the
/// heal PSYNC must fall back to a full resync, and nothing acknowledged
/// before the partition may be missing.
fn backlog_overrun(replica_kind: Kind, name: &str) {
    let mut args = hb_args();
    args.extend(["--repl-backlog-size".into(), "16kb".into()]);
    let args = strs(&args);
    let replica_offset = std::cell::Cell::new(0i64);
    let hold = |lab: &Lab| {
        if replica_offset.get() == 0 {
            replica_offset.set(info_int(&lab.replica().repl(), "slave_repl_offset"));
        }
        let first = info_int(&lab.master().repl(), "repl_backlog_first_byte_offset");
        // PSYNC asks for offset + 1; the backlog starts at `first`.
        first > replica_offset.get() + 1
    };
    run_plan(&Plan {
        name,
        replica_kind,
        master_args: &args,
        replica_args: &args,
        cut: Cut::Both,
        value_size: 256,
        interval: Duration::from_millis(2),
        replica_bound: Duration::from_secs(
            REPL_TIMEOUT + if replica_kind == Kind::Tether { 1 } else { 2 },
        ) + POLL_SLACK,
        hold_until: Some(&hold),
        resync: Resync::Full,
        ..Plan::default()
    });
}

#[test]
fn s4_backlog_overrun_full_resync_tether_replica() {
    backlog_overrun(Kind::Tether, "4 backlog overrun, tether -> tether");
}

#[test]
fn s4_backlog_overrun_full_resync_stock_replica() {
    backlog_overrun(
        Kind::StockRedis,
        "4 backlog overrun, tether -> stock replica",
    );
}

/// The lab itself: links, forwarding, a drop that is silent (a connect
/// across it times out instead of being refused), and cleanup on drop.
#[test]
fn lab_builds_drops_silently_and_cleans_up() {
    let names;
    {
        let mut lab = Lab::new();
        names = [lab.ns_m.clone(), lab.ns_x.clone(), lab.ns_r.clone()];
        lab.start(Role::Master, Kind::Tether, &[]);
        lab.start(Role::Replica, Kind::Tether, &[]);
        wait_linked(&lab, START_TIMEOUT);
        // PING the master from a thread inside the replica's namespace:
        // this one crosses the middle box.
        let probe_from = |ns: &str, ip: &str| {
            let (ns, ip) = (ns.to_string(), ip.to_string());
            thread::spawn(move || {
                enter_netns(&ns);
                let started = Instant::now();
                let target: SocketAddr = format!("{ip}:{PORT}").parse().unwrap();
                let r = TcpStream::connect_timeout(&target, Duration::from_secs(2)).and_then(
                    |mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        s.write_all(b"PING\r\n")?;
                        let mut buf = [0u8; 7];
                        s.read_exact(&mut buf)?;
                        Ok(String::from_utf8_lossy(&buf).trim().to_string())
                    },
                );
                (r, started.elapsed())
            })
            .join()
            .unwrap()
        };
        let probe = || probe_from(&lab.ns_r, MASTER_IP);
        let (r, _) = probe();
        assert_eq!(
            r.unwrap(),
            "+PONG",
            "the replica's namespace reaches the master"
        );
        lab.cut(Cut::Both);
        let (r, took) = probe();
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut)
                && took >= Duration::from_millis(1900),
            "across a silent drop a connect must hang until its timeout (2 s), not be \
             refused or answered: {r:?} after {took:?}"
        );
        lab.heal();
        assert_eq!(probe().0.unwrap(), "+PONG", "after the heal");
        // Half-open rules: the replica's SYN vanishes, the master's is reset.
        lab.cut(Cut::HalfOpen);
        let (r, _) = probe();
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "half-open: replica -> master must be dropped silently: {r:?}"
        );
        let (r, took) = probe_from(&lab.ns_m, REPLICA_IP);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
                && took < Duration::from_secs(1),
            "half-open: master -> replica must be reset at once: {r:?} after {took:?}"
        );
        lab.heal();
        let r = RawConn::connect(lab.master().port()).cmds(&["ROLE"]);
        assert!(
            matches!(&r, Resp::Array(v) if v[0].as_str() == "master"),
            "{r:?}"
        );
    }
    for ns in names {
        assert!(
            !Path::new(&format!("/run/netns/{ns}")).exists(),
            "namespace {ns} still exists after the lab was dropped"
        );
    }
}
