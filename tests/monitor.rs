//! MONITOR: a monitor sees every command from clients on every shard, one
//! Redis-format line each, in each client's order; admin commands never
//! show; a transaction shows MULTI, what EXEC ran, EXEC; a script shows
//! before its calls (`[db lua]`); a blocked pop shows once; credentials
//! are redacted; RESET ends monitor mode. Runs against stock Redis too
//! (`TETHER_TEST_TARGET=redis`).
mod common;

use common::{RawConn, Resp, Server, for_shards, keys_over_shards};
use std::time::Duration;

/// Puts `m` in monitor mode.
fn monitor(s: &Server) -> RawConn {
    let mut m = s.raw();
    m.set_read_timeout(Duration::from_secs(10));
    assert_eq!(m.cmds(&["MONITOR"]), Resp::Simple(b"OK".to_vec()));
    m
}

/// Reads monitor lines until one ends with `last` (a marker command's
/// arguments), returning them without the timestamp and peer.
fn lines_until(m: &mut RawConn, last: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let line = match m.read() {
            Resp::Simple(s) => String::from_utf8(s).expect("utf-8 line"),
            other => panic!("monitor got {other:?}, not a status line"),
        };
        let (head, args) = parse(&line);
        let done = args == last;
        out.push((head, args));
        if done {
            return out;
        }
    }
}

/// Splits `1733450000.000042 [0 127.0.0.1:5000] "set" "k"` into the peer
/// part (`0 127.0.0.1:5000`) and the arguments, checking the timestamp's
/// shape as Redis writes it.
fn parse(line: &str) -> (String, String) {
    let (ts, rest) = line.split_once(' ').expect("timestamp");
    let (secs, micros) = ts.split_once('.').expect("seconds.micros");
    assert!(
        secs.parse::<u64>().is_ok() && micros.len() == 6,
        "timestamp in {line:?}"
    );
    assert!(rest.starts_with('['), "no [db peer] in {line:?}");
    let (peer, args) = rest[1..].split_once("] ").expect("closing ]");
    (peer.to_string(), args.to_string())
}

fn peer_of(c: &mut RawConn) -> String {
    let info = c.cmds(&["CLIENT", "INFO"]).as_str();
    info.split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .expect("addr=")
        .to_string()
}

#[test]
fn monitor_sees_every_shard_in_order_and_in_redis_format() {
    for_shards(&[1, 3], |s| {
        let mut c = s.raw();
        let me = peer_of(&mut c);
        let mut m = monitor(s);
        let keys = keys_over_shards("mon:", 3, 2);
        for k in &keys {
            c.cmds(&["SET", k, "v a\"l\n"]);
        }
        c.cmds(&["GET", &keys[1]]);
        // Admin commands never show.
        c.cmds(&["CONFIG", "GET", "maxmemory"]);
        c.cmds(&["CLIENT", "LIST"]);
        c.cmds(&["CLIENT", "SETNAME", "watched"]);
        c.cmds(&["SELECT", "2"]);
        c.cmds(&["SET", &keys[0], "in-db-2"]);
        c.cmds(&["SELECT", "0"]);
        // A pipeline spanning shards shows in request order.
        let mut pipe = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            pipe.extend(common::encode(&[b"INCR", format!("{k}:n{i}").as_bytes()]));
        }
        c.send(&pipe);
        for _ in &keys {
            c.read();
        }
        let script = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])";
        c.cmds(&["EVAL", script, "1", &keys[2], "from-lua"]);
        c.cmds(&["MULTI"]);
        c.cmds(&["SET", &keys[3], "x"]);
        c.cmds(&["INCR", &keys[4]]);
        c.cmds(&["EXEC"]);
        c.cmds(&["MULTI"]);
        c.cmds(&["NOSUCHCOMMAND"]);
        c.cmds(&["EXEC"]);
        c.cmds(&["AUTH", "not-the-password"]);
        c.cmds(&["PING", "end"]);
        let got = lines_until(&mut m, "\"PING\" \"end\"");
        let mut want: Vec<(String, String)> = Vec::new();
        let mut w = |peer: &str, args: String| want.push((peer.to_string(), args));
        let p0 = format!("0 {me}");
        for k in &keys {
            w(&p0, format!("\"SET\" \"{k}\" \"v a\\\"l\\n\""));
        }
        w(&p0, format!("\"GET\" \"{}\"", keys[1]));
        w(&p0, "\"CLIENT\" \"SETNAME\" \"watched\"".into());
        w(&format!("2 {me}"), "\"SELECT\" \"2\"".into());
        w(
            &format!("2 {me}"),
            format!("\"SET\" \"{}\" \"in-db-2\"", keys[0]),
        );
        w(&p0, "\"SELECT\" \"0\"".into());
        for (i, k) in keys.iter().enumerate() {
            w(&p0, format!("\"INCR\" \"{k}:n{i}\""));
        }
        w(
            &p0,
            format!("\"EVAL\" \"{script}\" \"1\" \"{}\" \"from-lua\"", keys[2]),
        );
        w("0 lua", format!("\"set\" \"{}\" \"from-lua\"", keys[2]));
        w("0 lua", format!("\"get\" \"{}\"", keys[2]));
        w(&p0, "\"MULTI\"".into());
        w(&p0, format!("\"SET\" \"{}\" \"x\"", keys[3]));
        w(&p0, format!("\"INCR\" \"{}\"", keys[4]));
        w(&p0, "\"EXEC\"".into());
        w(&p0, "\"MULTI\"".into());
        w(&p0, "\"EXEC\"".into());
        w(&p0, "\"AUTH\" \"(redacted)\"".into());
        w(&p0, "\"PING\" \"end\"".into());
        assert_eq!(got, want, "against {}", s.label());
    });
}

#[test]
fn clients_on_every_shard_reach_monitors_on_every_shard() {
    for_shards(&[3], |s| {
        // Enough connections that both sides land on every shard.
        let mut monitors: Vec<RawConn> = (0..6).map(|_| monitor(s)).collect();
        let mut clients: Vec<RawConn> = (0..6).map(|_| s.raw()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            for j in 0..20 {
                c.cmds(&["SET", &format!("c{i}:{j}"), "v"]);
            }
        }
        clients[0].cmds(&["PING", "end"]);
        for m in &mut monitors {
            let got = lines_until(m, "\"PING\" \"end\"");
            // Each client's lines arrive in its order.
            for i in 0..6 {
                let mine: Vec<&String> = got
                    .iter()
                    .map(|(_, a)| a)
                    .filter(|a| a.starts_with(&format!("\"SET\" \"c{i}:")))
                    .collect();
                let want: Vec<String> = (0..20)
                    .map(|j| format!("\"SET\" \"c{i}:{j}\" \"v\""))
                    .collect();
                assert_eq!(
                    mine,
                    want.iter().collect::<Vec<_>>(),
                    "client {i} on {}",
                    s.label()
                );
            }
        }
    });
}

#[test]
fn blocked_pop_shows_once_and_reset_ends_monitoring() {
    for_shards(&[1, 2], |s| {
        let mut m = monitor(s);
        let mut admin = s.raw();
        // CLIENT LIST shows the monitor as O.
        let list = admin.cmds(&["CLIENT", "LIST"]).as_str();
        assert!(
            list.lines()
                .any(|l| l.contains("flags=O ") && l.contains("cmd=monitor")),
            "{list}"
        );
        let mut b = s.raw();
        b.set_read_timeout(Duration::from_secs(10));
        b.send_cmd(&[b"BLPOP", b"mon:q", b"0"]);
        assert!(common::wait_until(Duration::from_secs(5), || {
            common::info_int(&common::info_section(s.port, "clients"), "blocked_clients") == 1
        }));
        admin.cmds(&["LPUSH", "mon:q", "1"]);
        assert_eq!(b.read().array().len(), 2);
        admin.cmds(&["LPUSH", "mon:q", "2"]);
        admin.cmds(&["PING", "end"]);
        let got: Vec<String> = lines_until(&mut m, "\"PING\" \"end\"")
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| !a.starts_with("\"info\"") && !a.starts_with("\"INFO\""))
            .collect();
        assert_eq!(
            got,
            [
                "\"BLPOP\" \"mon:q\" \"0\"",
                "\"LPUSH\" \"mon:q\" \"1\"",
                "\"LPUSH\" \"mon:q\" \"2\"",
                "\"PING\" \"end\""
            ],
            "against {}",
            s.label()
        );
        // A second MONITOR is ignored (no reply); RESET answers and ends it.
        m.send_cmd(&[b"MONITOR"]);
        assert_eq!(m.cmds(&["RESET"]), Resp::Simple(b"RESET".to_vec()));
        admin.cmds(&["SET", "after", "reset"]);
        assert_eq!(m.cmds(&["PING"]), Resp::Simple(b"PONG".to_vec()));
        // A closed monitor is dropped and the rest goes on.
        let gone = monitor(s);
        drop(gone);
        admin.cmds(&["SET", "k", "v"]);
        assert_eq!(admin.cmds(&["GET", "k"]), Resp::Bulk(b"v".to_vec()));
    });
}

/// MONITOR queued in MULTI is refused when EXEC runs it, as Redis refuses
/// it to a client that expects one reply per command; the client stays an
/// ordinary one.
#[test]
fn monitor_inside_exec_is_refused() {
    for_shards(&[1, 2], |s| {
        let mut c = s.raw();
        c.set_read_timeout(Duration::from_secs(10));
        c.send(b"MULTI\r\nMONITOR\r\nEXEC\r\nPING\r\n");
        assert_eq!(c.read(), Resp::Simple(b"OK".to_vec()));
        assert_eq!(c.read(), Resp::Simple(b"QUEUED".to_vec()));
        assert_eq!(
            c.read(),
            Resp::Array(vec![Resp::Error(
                b"ERR MONITOR isn't allowed for DENY BLOCKING client".to_vec()
            )]),
            "against {}",
            s.label()
        );
        assert_eq!(c.read(), Resp::Simple(b"PONG".to_vec()));
        let list = c.cmds(&["CLIENT", "LIST"]).as_str();
        assert!(!list.contains("flags=O"), "{list}");
    });
}
