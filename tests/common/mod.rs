//! Integration-test harness: starts tether (or stock `redis-server`) on a free
//! port, waits until it answers PING, kills it on drop, and offers three ways
//! to talk to it: a `redis` crate connection, raw RESP bytes over TCP, and the
//! stock `redis-cli` binary.
//!
//! Set `TETHER_TEST_TARGET=redis` to run every test against stock
//! `redis-server` in place of tether; that is how the tests themselves are
//! validated (they encode Redis behaviour, so they must pass against Redis).
#![allow(dead_code)]

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Generous: CI runs two test threads, each starting multi-shard servers,
/// on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Which program a `Server` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tether,
    StockRedis,
}

/// True when `TETHER_TEST_TARGET=redis`: "tether" servers are stock Redis.
pub fn target_is_redis() -> bool {
    std::env::var("TETHER_TEST_TARGET")
        .map(|v| v == "redis")
        .unwrap_or(false)
}

/// A running server process; killed (and its scratch dir removed) on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub kind: Kind,
    pub shards: usize,
    dir: PathBuf,
    log: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A port that was free a moment ago. Another process may grab it before the
/// server binds it; `Server::spawn` retries with a fresh port if so.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn scratch_dir() -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "tether-test-{}-{}-{}",
        std::process::id(),
        n,
        nanos
    ));
    fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Absolute path of a stock Redis tool, or a loud panic with an install hint.
pub fn stock_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found in PATH. These tests need stock Redis tools; install them with \
         `sudo apt-get install -y redis-server redis-tools` (Debian/Ubuntu). Tests never skip."
    );
}

impl Server {
    /// tether with `shards` shards, or stock Redis when `TETHER_TEST_TARGET=redis`.
    pub fn start(shards: usize) -> Server {
        if target_is_redis() {
            let mut s = Server::stock_redis();
            s.shards = shards;
            s
        } else {
            Server::tether(shards)
        }
    }

    /// Always the real tether binary.
    pub fn tether(shards: usize) -> Server {
        Server::spawn(Kind::Tether, shards, &[])
    }

    /// Always stock `redis-server`.
    pub fn stock_redis() -> Server {
        Server::spawn(Kind::StockRedis, 1, &[])
    }

    /// Start a server with extra `--name value` arguments appended.
    pub fn spawn(kind: Kind, shards: usize, extra: &[&str]) -> Server {
        let mut last_err = String::new();
        for _attempt in 0..4 {
            match Server::try_spawn(kind, shards, extra) {
                Ok(s) => return s,
                Err((msg, port_race)) => {
                    if !port_race {
                        panic!("{msg}");
                    }
                    last_err = msg;
                }
            }
        }
        panic!("server failed to start after retries:\n{last_err}");
    }

    fn try_spawn(kind: Kind, shards: usize, extra: &[&str]) -> Result<Server, (String, bool)> {
        let port = free_port();
        let dir = scratch_dir();
        let log = dir.join("server.log");
        let logf = File::create(&log).expect("create log file");
        let (program, mut args): (PathBuf, Vec<String>) = match kind {
            Kind::Tether => (
                PathBuf::from(env!("CARGO_BIN_EXE_tether")),
                vec![
                    "--port".into(),
                    port.to_string(),
                    "--shards".into(),
                    shards.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--save".into(),
                    "".into(),
                    "--dir".into(),
                    dir.to_string_lossy().into_owned(),
                ],
            ),
            Kind::StockRedis => (
                stock_tool("redis-server"),
                vec![
                    "--port".into(),
                    port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--save".into(),
                    "".into(),
                    "--appendonly".into(),
                    "no".into(),
                    "--dir".into(),
                    dir.to_string_lossy().into_owned(),
                ],
            ),
        };
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(&program)
            .args(&args)
            // Start-up phases per shard land in the log shown on failure
            // (an intermittent start-up hang is still being chased).
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,tether::shard=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
        let mut srv = Server {
            child,
            port,
            kind,
            shards,
            dir,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = srv.child.try_wait().unwrap() {
                let logs = srv.logs();
                let race = logs.contains("in use") || logs.contains("AddrInUse");
                return Err((
                    format!(
                        "{kind:?} exited during start-up ({status}) on port {port}; \
                         command: {} {:?}\n--- server output ---\n{logs}",
                        program.display(),
                        args
                    ),
                    race,
                ));
            }
            if srv.answers_ping() {
                return Ok(srv);
            }
            if Instant::now() > deadline {
                let logs = srv.logs();
                return Err((
                    format!(
                        "{kind:?} did not answer PING within {START_TIMEOUT:?} on port {port}; \
                         command: {} {:?}\n--- server output ---\n{logs}",
                        program.display(),
                        args
                    ),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<cannot read log: {e}>"))
    }

    /// True while the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A fresh `redis` crate connection (RESP2).
    pub fn client(&self) -> redis::Connection {
        let c = redis::Client::open(self.url()).unwrap();
        let con = c
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| {
                panic!(
                    "connect to {:?} :{}: {e}\n{}",
                    self.kind,
                    self.port,
                    self.logs()
                )
            });
        con.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        con
    }

    /// A raw TCP connection for protocol-level tests.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    /// Run `redis-cli -p PORT args...` and return its stdout (panics on a
    /// non-zero exit, showing stderr).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(stock_tool("redis-cli"))
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A label for messages: "tether(4 shards)" or "redis".
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Tether => format!("tether({} shards)", self.shards),
            Kind::StockRedis => format!("redis-server(as {} shards)", self.shards),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} on port {} output (test panicked) ---\n{}",
                self.label(),
                self.port,
                tail(&self.logs(), 4000)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        s
    } else {
        let mut i = s.len() - n;
        while !s.is_char_boundary(i) {
            i += 1;
        }
        &s[i..]
    }
}

/// Describe a `redis` crate error, calling out read timeouts (a hung server)
/// instead of printing a bare "Resource temporarily unavailable".
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        format!("no reply within {IO_TIMEOUT:?}: the server hung or lost the request ({e})")
    } else {
        e.to_string()
    }
}

/// Run `f` once for each shard count, each time against a fresh server.
pub fn for_shards(counts: &[usize], mut f: impl FnMut(&Server)) {
    for &n in counts {
        let s = Server::start(n);
        eprintln!("--- running against {} on port {}", s.label(), s.port);
        f(&s);
    }
}

// ---------------------------------------------------------------------------
// RESP: encoding, and a reader that returns both the parsed reply and the
// exact bytes it came from (for byte-for-byte differential comparison).
// ---------------------------------------------------------------------------

/// A parsed RESP2/RESP3 reply.
#[derive(Clone, PartialEq)]
pub enum Resp {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    NilBulk,
    Array(Vec<Resp>),
    /// `*-1`
    NilArray,
    /// RESP3 `_`
    Null,
    Double(Vec<u8>),
    Bool(bool),
    BlobError(Vec<u8>),
    Verbatim(Vec<u8>),
    BigNumber(Vec<u8>),
    Map(Vec<(Resp, Resp)>),
    Set(Vec<Resp>),
    Push(Vec<Resp>),
    Attribute(Vec<(Resp, Resp)>),
}

impl Resp {
    pub fn is_error(&self) -> bool {
        matches!(self, Resp::Error(_) | Resp::BlobError(_))
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Simple(b) | Resp::Bulk(b) | Resp::Verbatim(b) | Resp::Error(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> String {
        String::from_utf8_lossy(self.as_bytes().unwrap_or(b"")).into_owned()
    }
    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(v) | Resp::Set(v) | Resp::Push(v) => v,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

pub fn esc(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(b) => write!(f, "+{}", esc(b)),
            Resp::Error(b) => write!(f, "-{}", esc(b)),
            Resp::Int(i) => write!(f, ":{i}"),
            Resp::Bulk(b) => write!(f, "\"{}\"", esc(b)),
            Resp::NilBulk => write!(f, "$-1"),
            Resp::NilArray => write!(f, "*-1"),
            Resp::Null => write!(f, "_"),
            Resp::Array(v) => f.debug_list().entries(v).finish(),
            Resp::Double(b) => write!(f, ",{}", esc(b)),
            Resp::Bool(b) => write!(f, "#{}", if *b { 't' } else { 'f' }),
            Resp::BlobError(b) => write!(f, "!{}", esc(b)),
            Resp::Verbatim(b) => write!(f, "={}", esc(b)),
            Resp::BigNumber(b) => write!(f, "({}", esc(b)),
            Resp::Map(v) => f
                .debug_map()
                .entries(v.iter().map(|(k, v)| (k, v)))
                .finish(),
            Resp::Set(v) => write!(f, "~{v:?}"),
            Resp::Push(v) => write!(f, ">{v:?}"),
            Resp::Attribute(v) => write!(f, "|{v:?}"),
        }
    }
}

/// Encode a command as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Read one reply; returns the parse and the exact bytes consumed.
pub fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<(Resp, Vec<u8>)> {
    let mut raw = Vec::new();
    let v = read_value(r, &mut raw)?;
    Ok((v, raw))
}

fn read_line<R: BufRead>(r: &mut R, raw: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed while reading a reply",
        ));
    }
    raw.extend_from_slice(&line);
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "reply line not CRLF terminated: {}",
            esc(&line)
        )));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse_int(b: &[u8]) -> std::io::Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad integer in reply: {}", esc(b))))
}

fn read_blob<R: BufRead>(r: &mut R, raw: &mut Vec<u8>, len: i64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize + 2];
    r.read_exact(&mut buf)?;
    raw.extend_from_slice(&buf);
    if !buf.ends_with(b"\r\n") {
        return Err(bad(format!("bulk not CRLF terminated: {}", esc(&buf))));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

fn read_value<R: BufRead>(r: &mut R, raw: &mut Vec<u8>) -> std::io::Result<Resp> {
    let line = read_line(r, raw)?;
    if line.is_empty() {
        return Err(bad("empty reply line".into()));
    }
    let (t, rest) = (line[0], &line[1..]);
    Ok(match t {
        b'+' => Resp::Simple(rest.to_vec()),
        b'-' => Resp::Error(rest.to_vec()),
        b':' => Resp::Int(parse_int(rest)?),
        b'_' => Resp::Null,
        b',' => Resp::Double(rest.to_vec()),
        b'#' => Resp::Bool(rest == b"t"),
        b'(' => Resp::BigNumber(rest.to_vec()),
        b'$' | b'!' | b'=' => {
            let n = parse_int(rest)?;
            if n < 0 {
                Resp::NilBulk
            } else {
                let b = read_blob(r, raw, n)?;
                match t {
                    b'$' => Resp::Bulk(b),
                    b'!' => Resp::BlobError(b),
                    _ => Resp::Verbatim(b),
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let n = parse_int(rest)?;
            if n < 0 {
                Resp::NilArray
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_value(r, raw)?);
                }
                match t {
                    b'*' => Resp::Array(v),
                    b'~' => Resp::Set(v),
                    _ => Resp::Push(v),
                }
            }
        }
        b'%' | b'|' => {
            let n = parse_int(rest)?;
            let mut v = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let k = read_value(r, raw)?;
                let val = read_value(r, raw)?;
                v.push((k, val));
            }
            if t == b'%' {
                Resp::Map(v)
            } else {
                Resp::Attribute(v)
            }
        }
        _ => return Err(bad(format!("unknown reply type byte: {}", esc(&line)))),
    })
}

/// A raw TCP connection: send arbitrary bytes, read RESP replies.
pub struct RawConn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("raw connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw send");
    }

    /// Send a command as a multibulk (no reply read).
    pub fn send_cmd(&mut self, args: &[&[u8]]) {
        self.send(&encode(args));
    }

    pub fn read(&mut self) -> Resp {
        self.read_raw().0
    }

    pub fn read_raw(&mut self) -> (Resp, Vec<u8>) {
        read_reply(&mut self.reader).unwrap_or_else(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                panic!(
                    "no reply within the read timeout: the server hung or lost the request ({e})"
                )
            }
            panic!("reading a reply failed: {e}")
        })
    }

    pub fn try_read(&mut self) -> std::io::Result<(Resp, Vec<u8>)> {
        read_reply(&mut self.reader)
    }

    /// Send one command and read its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Resp {
        self.send_cmd(args);
        self.read()
    }

    /// Same as `cmd` with string arguments.
    pub fn cmds(&mut self, args: &[&str]) -> Resp {
        let v: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd(&v)
    }

    /// Send bytes and return the exact bytes of one reply.
    pub fn roundtrip_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.send(bytes);
        self.read_raw().1
    }

    /// True if the server closed the connection (EOF) within the timeout.
    pub fn is_closed_by_peer(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let r = match self.reader.fill_buf() {
            Ok(buf) => buf.is_empty(),
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        r
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Poll `f` until it returns true or `timeout` elapses; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------
// Key placement (DESIGN.md "Key ownership"): slot = CRC16(hashtag(key)) mod
// 16384, shard = slot mod N. Used only to pick keys that are guaranteed to
// span shards; correctness assertions never depend on it.
// ---------------------------------------------------------------------------

/// CRC16-XMODEM, the Redis Cluster key-slot checksum.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|o| {
            key[o + 1..]
                .iter()
                .position(|&b| b == b'}')
                .filter(|&l| l > 0)
                .map(|l| &key[o + 1..o + 1 + l])
        })
        .unwrap_or(key);
    crc16(tagged) % 16384
}

pub fn shard_of(key: &str, nshards: usize) -> usize {
    key_slot(key.as_bytes()) as usize % nshards
}

/// `per_shard` keys named `{prefix}{n}` for each of `nshards` shards, in
/// round-robin shard order (key i lives on shard i % nshards).
pub fn keys_over_shards(prefix: &str, nshards: usize, per_shard: usize) -> Vec<String> {
    let mut buckets: Vec<Vec<String>> = vec![Vec::new(); nshards];
    let mut n = 0;
    while buckets.iter().any(|b| b.len() < per_shard) {
        let k = format!("{prefix}{n}");
        let b = &mut buckets[shard_of(&k, nshards)];
        if b.len() < per_shard {
            b.push(k);
        }
        n += 1;
    }
    (0..per_shard)
        .flat_map(|i| buckets.iter().map(move |b| b[i].clone()))
        .collect::<Vec<_>>()
}
