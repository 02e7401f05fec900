//! Stock Redis tools against tether: `redis-cli` (commands, `--scan`, INFO)
//! and `redis-benchmark` over the common commands with no error lines.
mod common;

use common::{Server, stock_tool};
use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn redis_cli_basics() {
    let s = Server::start(4);
    assert_eq!(s.cli(&["PING"]).trim(), "PONG");
    assert_eq!(s.cli(&["SET", "cli:key", "hello world"]).trim(), "OK");
    assert_eq!(s.cli(&["GET", "cli:key"]).trim(), "hello world");
    assert_eq!(s.cli(&["GET", "cli:none"]).trim(), "");
    assert_eq!(s.cli(&["INCR", "cli:n"]).trim(), "1");
    assert_eq!(s.cli(&["DBSIZE"]).trim(), "2");
    // Errors are printed as "(error) ..." only on a tty; raw mode prints the text.
    let e = s.cli(&["GET"]);
    assert!(
        e.contains("ERR wrong number of arguments for 'get' command"),
        "{e}"
    );

    // A few keys one by one; redis-cli is slow to spawn, so the rest in one MSET.
    for i in 0..20 {
        assert_eq!(s.cli(&["SET", &format!("scan:{i}"), "v"]).trim(), "OK");
    }
    let mut mset = vec!["MSET".to_string()];
    for i in 20..300 {
        mset.push(format!("scan:{i}"));
        mset.push("v".into());
    }
    let args: Vec<&str> = mset.iter().map(|s| s.as_str()).collect();
    assert_eq!(s.cli(&args).trim(), "OK");

    let out = s.cli(&["--scan"]);
    let got: HashSet<&str> = out.lines().collect();
    assert_eq!(got.len(), 302, "redis-cli --scan saw {} keys", got.len());
    let out = s.cli(&["--scan", "--pattern", "scan:1*"]);
    let got: HashSet<&str> = out.lines().collect();
    let want: HashSet<String> = (0..300)
        .map(|i| format!("scan:{i}"))
        .filter(|k| k.starts_with("scan:1"))
        .collect();
    assert_eq!(got, want.iter().map(|s| s.as_str()).collect());

    let info = s.cli(&["INFO"]);
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains("# Keyspace"), "{info}");
    assert!(info.contains("db0:keys=302,expires=0,avg_ttl="), "{info}");
    let info = s.cli(&["INFO", "server"]);
    assert!(info.contains("run_id:"), "{info}");

    // --pipe mass insertion.
    let mut payload = Vec::new();
    for i in 0..1000 {
        payload.extend(common::encode(&[
            b"SET",
            format!("pipe:{i}").as_bytes(),
            b"x",
        ]));
    }
    let mut child = Command::new(stock_tool("redis-cli"))
        .args(["-p", &s.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&payload).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-cli --pipe failed: {text}");
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
    assert_eq!(s.cli(&["DBSIZE"]).trim(), "1302");
}

/// The text a terminal would show: within each line, only what follows the
/// last carriage return (redis-benchmark redraws its progress with `\r`).
fn as_displayed(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            l.rsplit('\r')
                .find(|seg| !seg.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Run a command with a deadline; on timeout kill it and return None.
fn output_with_deadline(
    cmd: &mut Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    (status, out, err)
}

/// Runs stock redis-benchmark against `s` with `args`, within `limit`, and
/// checks what every benchmark test here checks: it finished (no stall),
/// exited 0, printed no error or warning line, and reported a result line
/// for each of `expected`. Returns the output as displayed.
fn run_benchmark_clean(s: &Server, args: &[&str], limit: Duration, expected: &[&str]) -> String {
    let (status, stdout, stderr) = output_with_deadline(
        Command::new(stock_tool("redis-benchmark"))
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
            .args(args),
        limit,
    );
    let lines = as_displayed(&stdout);
    let shown = lines.join("\n");
    let Some(status) = status else {
        panic!(
            "redis-benchmark did not finish within {limit:?} against {} (stalled); last output:\n{}\n{stderr}",
            s.label(),
            lines.last().cloned().unwrap_or_default()
        );
    };
    assert!(
        status.success(),
        "redis-benchmark failed ({status}):\n{shown}\n{stderr}"
    );
    for l in lines.iter().map(|l| l.as_str()).chain(stderr.lines()) {
        let low = l.to_lowercase();
        assert!(
            !low.contains("err") && !low.contains("warning"),
            "redis-benchmark printed an error line: {l:?}\nfull output:\n{shown}\n{stderr}"
        );
    }
    for test in expected {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no result line for {test}:\n{shown}"
        );
    }
    shown
}

#[test]
fn redis_benchmark_runs_clean() {
    let s = Server::start(4);
    // Stock Redis needs ~6 s on this 2-CPU box; allow a slow debug build 20x.
    let shown = run_benchmark_clean(
        &s,
        &["-t", "ping,set,get,incr,mset", "-n", "100000", "-q"],
        Duration::from_secs(150),
        &[
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "MSET (10 keys)",
        ],
    );
    eprintln!("{} redis-benchmark:\n{shown}", s.label());
    // Everything the benchmark wrote is really there.
    assert_eq!(
        s.cli(&["STRLEN", "key:__rand_int__"]).trim(),
        "3",
        "-d defaults to 3 bytes"
    );
    let n: i64 = s
        .cli(&["GET", "counter:__rand_int__"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, 100000, "INCR ran 100000 times on one key");
}

/// The whole default suite (no `-t`), as a user's first run would: every
/// test reports a result and nothing prints an error.
#[test]
fn redis_benchmark_default_suite_runs_clean() {
    let s = Server::start(2);
    run_benchmark_clean(
        &s,
        &["-n", "5000", "-q"],
        Duration::from_secs(240),
        &[
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "LPUSH",
            "RPUSH",
            "LPOP",
            "RPOP",
            "SADD",
            "HSET",
            "SPOP",
            "ZADD",
            "ZPOPMIN",
            "LPUSH (needed to benchmark LRANGE)",
            "LRANGE_100 (first 100 elements)",
            "LRANGE_300 (first 300 elements)",
            "LRANGE_500 (first 500 elements)",
            "LRANGE_600 (first 600 elements)",
            "MSET (10 keys)",
        ],
    );
}

/// `COMMAND` describes every command tether implements as stock Redis 7.0
/// does: name, arity, flags and key positions (the first six fields,
/// which clients and tools read to route and classify commands). The
/// containers MEMORY, OBJECT and PUBSUB are left out: Redis gives their
/// key positions per subcommand, tether keeps the one its routing uses.
#[test]
fn command_table_matches_stock_redis() {
    let tether = Server::tether(1);
    let redis = Server::stock_redis();
    let rows = |s: &Server| -> Vec<common::Resp> { s.raw().cmds(&["COMMAND"]).array().to_vec() };
    let theirs: std::collections::HashMap<String, Vec<common::Resp>> = rows(&redis)
        .into_iter()
        .map(|r| (r.array()[0].as_str(), r.array()[..6].to_vec()))
        .collect();
    let ours = rows(&tether);
    assert!(ours.len() > 150, "tether lists {} commands", ours.len());
    let mut diffs = Vec::new();
    for row in &ours {
        let name = row.array()[0].as_str();
        if ["memory", "object", "pubsub"].contains(&name.as_str()) {
            continue;
        }
        match theirs.get(&name) {
            None => diffs.push(format!("{name}: not a Redis 7.0 command")),
            Some(want) if want[..] != row.array()[..6] => diffs.push(format!(
                "{name}: tether {:?}, redis {:?}",
                &row.array()[..6],
                want
            )),
            Some(_) => {}
        }
    }
    assert!(
        diffs.is_empty(),
        "COMMAND rows differ:\n{}",
        diffs.join("\n")
    );
}
