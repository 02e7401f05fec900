//! Stock `redis-sentinel` 7.0 failing over tether: three sentinels
//! (quorum 2) watch a 2-shard tether master with two 2-shard tether
//! replicas, one of them with `replica-priority 0` (never to be promoted).
//! They must find the replicas and each other through the master (INFO
//! replication, the `__sentinel__:hello` channel), agree that a stopped
//! master is down, promote the other replica (`REPLICAOF NO ONE` inside
//! MULTI with `CONFIG REWRITE` and `CLIENT KILL`), point the sibling at
//! it, and turn the old master, once it answers again, into a replica of
//! the new one. The data written before the failover is on the new
//! master, and writes there reach both the others.
//!
//! `TETHER_TEST_TARGET=redis` runs the same with stock servers. The
//! timeline (failover seen by every sentinel, old master converted) is
//! printed with `--nocapture`.
mod common;

use common::{Resp, Server, info_int, info_section, info_value, send_signal, stock_tool, wait_for};
use std::fs::{self, File};
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "tethermaster";
/// Sentinels' `down-after-milliseconds`.
const DOWN_AFTER_MS: u64 = 1000;

/// One `redis-sentinel` process with its own config file (it rewrites it).
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sentinel {
    fn start(master_port: u16, quorum: u32) -> Sentinel {
        let port = common::free_port();
        let dir =
            std::env::temp_dir().join(format!("tether-sentinel-{}-{port}", std::process::id()));
        fs::create_dir_all(&dir).expect("sentinel dir");
        let conf = dir.join("sentinel.conf");
        fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n\
                 sentinel monitor {NAME} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {NAME} 10000\n\
                 sentinel parallel-syncs {NAME} 1\n",
                dir.display()
            ),
        )
        .expect("write sentinel.conf");
        let log = File::create(dir.join("sentinel.log")).expect("sentinel log");
        let child = Command::new(stock_tool("redis-sentinel"))
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-sentinel");
        let s = Sentinel { child, port, dir };
        wait_for("redis-sentinel to answer", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        s
    }

    fn cmd(&self, args: &[&str]) -> Resp {
        common::RawConn::connect(self.port).cmds(args)
    }

    /// `SENTINEL MASTER <name>` as field → value.
    fn master_fields(&self) -> Vec<(String, String)> {
        self.cmd(&["SENTINEL", "MASTER", NAME])
            .array()
            .chunks(2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect()
    }

    fn field(&self, name: &str) -> String {
        self.master_fields()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// The master's port this sentinel currently names.
    fn master_port(&self) -> String {
        match self.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME]) {
            Resp::Array(a) if a.len() == 2 => a[1].as_str(),
            other => format!("{other:?}"),
        }
    }

    fn log(&self) -> String {
        let mut s = String::new();
        let _ =
            File::open(self.dir.join("sentinel.log")).and_then(|mut f| f.read_to_string(&mut s));
        s
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(3000)..];
            eprintln!("--- redis-sentinel :{} log ---\n{tail}", self.port);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn role(s: &Server) -> String {
    info_value(&info_section(s.port, "replication"), "role").unwrap_or_default()
}

/// Waits until `r` replicates the server on `master_port` with its link
/// up and (when `offset_of` is given) at that server's offset.
fn wait_replicating(r: &Server, master_port: u16, offset_of: Option<&Server>) {
    wait_for(
        &format!(":{} to replicate :{master_port}", r.port),
        Duration::from_secs(60),
        || {
            let ri = info_section(r.port, "replication");
            let (port, link) = (
                info_value(&ri, "master_port").unwrap_or_default(),
                info_value(&ri, "master_link_status").unwrap_or_default(),
            );
            let at: i64 = info_value(&ri, "slave_repl_offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            let want = offset_of.map_or(at, |m| {
                info_int(&info_section(m.port, "replication"), "master_repl_offset")
            });
            (port == master_port.to_string() && link == "up" && at == want)
                .then_some(())
                .ok_or(format!(
                    "master_port {port}, link {link}, offset {at} of {want}"
                ))
        },
    );
}

#[test]
fn sentinels_fail_over_a_stopped_master() {
    let master = Server::start(2);
    let replica = Server::start(2);
    let never = Server::start(2);
    let cmd = |s: &Server, args: &[&str]| s.raw().cmds(args);
    let ok = Resp::Simple(b"OK".to_vec());
    let set = |s: &Server, args: &[&str]| assert_eq!(cmd(s, args), ok, "{args:?}");
    set(&master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    set(&never, &["CONFIG", "SET", "replica-priority", "0"]);
    for r in [&replica, &never] {
        set(r, &["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    }
    for i in 0..100 {
        set(&master, &["SET", &format!("k{i}"), &i.to_string()]);
    }
    for r in [&replica, &never] {
        wait_replicating(r, master.port, Some(&master));
    }

    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port, 2)).collect();
    // Each finds the replicas (INFO) and the two others (hello messages
    // published through the master and the replicas).
    wait_for(
        "every sentinel to see 2 replicas and 2 other sentinels",
        Duration::from_secs(30),
        || {
            for s in &sentinels {
                let (slaves, others) = (s.field("num-slaves"), s.field("num-other-sentinels"));
                if slaves != "2" || others != "2" {
                    return Err(format!(
                        "sentinel :{} num-slaves {slaves}, num-other-sentinels {others}",
                        s.port
                    ));
                }
            }
            Ok(())
        },
    );

    let stopped = Instant::now();
    send_signal(master.pid(), libc::SIGSTOP);
    let new_port = replica.port.to_string();
    wait_for(
        "the sentinels to fail over to the replica with a priority",
        Duration::from_secs(60),
        || {
            for s in &sentinels {
                let p = s.master_port();
                if p != new_port {
                    return Err(format!("sentinel :{} names :{p}", s.port));
                }
            }
            Ok(())
        },
    );
    let failed_over = stopped.elapsed();
    assert_eq!(role(&replica), "master");
    for i in 0..100 {
        assert_eq!(
            cmd(&replica, &["GET", &format!("k{i}")]),
            Resp::Bulk(i.to_string().into_bytes()),
            "k{i} on the new master"
        );
    }
    set(&replica, &["SET", "after", "failover"]);
    // The sibling follows the new master.
    wait_replicating(&never, replica.port, Some(&replica));

    // The old master comes back and is made a replica of the new one.
    send_signal(master.pid(), libc::SIGCONT);
    let resumed = Instant::now();
    wait_replicating(&master, replica.port, None);
    let converted = resumed.elapsed();
    for r in [&master, &never] {
        wait_for(
            "the write to reach the others",
            Duration::from_secs(30),
            || match cmd(r, &["GET", "after"]) {
                Resp::Bulk(b) if b == b"failover" => Ok(()),
                other => Err(format!(":{} GET after: {other:?}", r.port)),
            },
        );
    }
    // The old master is a read-only replica now.
    match cmd(&master, &["SET", "x", "y"]) {
        Resp::Error(e) => assert!(
            e.starts_with(b"READONLY"),
            "{}",
            String::from_utf8_lossy(&e)
        ),
        other => panic!("a write on the demoted master answered {other:?}"),
    }
    eprintln!(
        "{}: down-after {DOWN_AFTER_MS} ms; stop -> all sentinels name the new master {:.2} s; \
         old master resumed -> replicating the new one {:.2} s",
        master.label(),
        failed_over.as_secs_f64(),
        converted.as_secs_f64()
    );
}
