//! MONITOR: every command the server runs, as one status line per command
//! to every client in monitor mode, in Redis 7.0's format
//! (`replicationFeedMonitors`):
//!
//! ```text
//! +1733450000.123456 [0 127.0.0.1:50432] "set" "foo" "bar"
//! ```
//!
//! with `[db lua]` for a script's `redis.call`s and `[db unix:<path>]` for
//! unix-socket clients. As in Redis, admin commands (CONFIG, DEBUG,
//! MONITOR itself, ...) are never shown, nor is a command refused before
//! it ran (unknown, wrong arity, NOREPLICAS, ...); the arguments of AUTH
//! and of HELLO's AUTH are shown as `(redacted)`; a transaction's
//! commands show when EXEC runs them, between MULTI and EXEC; a script
//! shows before the commands it calls; a blocking pop shows once.
//!
//! **Where lines come from.** The shard that takes a client's request feeds
//! its line (its driver, or the slow path's batch), in request order; a
//! script's calls are fed by the shard that runs them. Lines collect in
//! the shard's `monitor_out` and leave with [`publish`]: before any message
//! this shard posts (so a line goes out before whatever it caused, as
//! `cmd::notify` does for keyspace events), and at the end of each driver
//! turn. Lines for other shards' monitors go as one `Msg::Monitor` per
//! shard; this shard's own wait in `monitor_here` for [`flush`], and are
//! delivered before any line another shard sends, so one client's lines
//! keep their order. Lines of commands on different shards have no order
//! between them beyond that, as those commands had none.
//!
//! **Cost.** With no monitor anywhere the fast path pays one relaxed load
//! of [`Shared::monitors`] per batch (`on`).

use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use super::{ClientState, CmdSpec, ConnCtx, eq_ic};
use crate::shard::{Msg, Shard};

/// The peer tag of a script's calls.
pub const LUA: &[u8] = b"lua";

/// Whether any client anywhere is in monitor mode.
#[inline]
pub fn on(shard: &Shard) -> bool {
    shard.shared.monitors.load(Ordering::Relaxed) != 0
}

/// Feeds the line of `args`, run by a client of `peer` (its address, or
/// [`LUA`]) in database `db`, if anyone monitors and Redis would show it.
#[inline]
pub fn feed(shard: &Shard, spec: &CmdSpec, db: u16, peer: &[u8], args: &[Bytes]) {
    if !on(shard) || !shown(spec, args) {
        return;
    }
    let mut out = shard.monitor_out.borrow_mut();
    line(&mut out, crate::shard::now_us(), db, peer, args);
}

/// [`feed`] for a client's command.
#[inline]
pub fn feed_client(shard: &Shard, spec: &CmdSpec, client: &ClientState, args: &[Bytes]) {
    feed(shard, spec, client.db, &client.peer, args);
}

/// EXEC's lines, after it ran: the commands it ran (`queued`, taken
/// before), then EXEC itself. An EXEC that ran nothing (EXECABORT, or
/// nil for a touched WATCH) shows alone, as in Redis.
pub fn feed_exec(
    shard: &Shard,
    client: &ClientState,
    queued: Option<Vec<Vec<Bytes>>>,
    spec: &CmdSpec,
    args: &[Bytes],
    reply: &[u8],
) {
    if !on(shard) {
        return;
    }
    let ran = reply.first() == Some(&b'*') && !reply.starts_with(b"*-1");
    if ran {
        for q in queued.iter().flatten() {
            if let super::Lookup::Found(s) = super::lookup(q) {
                feed(shard, s, client.db, &client.peer, q);
            }
        }
    }
    feed(shard, spec, client.db, &client.peer, args);
}

/// Redis leaves out admin commands and `skip_monitor` ones, but feeds the
/// scripting commands itself, ahead of what the script calls. Containers
/// are flagged per subcommand (Redis 7.0's `commands/*.json`).
fn shown(spec: &CmdSpec, args: &[Bytes]) -> bool {
    let sub = |names: &[&str]| {
        args.get(1)
            .is_some_and(|s| names.iter().any(|n| eq_ic(s, n)))
    };
    let admin = match spec.name {
        "client" => sub(&["kill", "list", "no-evict", "pause", "unblock", "unpause"]),
        "config" | "latency" | "slowlog" | "module" => !sub(&["help"]),
        "acl" => !sub(&["cat", "genpass", "help", "whoami"]),
        _ => spec.flags.contains(&"admin"),
    };
    !admin && (!spec.flags.contains(&"skip_monitor") || spec.name.starts_with("eval"))
}

/// Appends one monitor line; `now_us` is the Unix time in microseconds.
pub fn line(out: &mut BytesMut, now_us: u64, db: u16, peer: &[u8], args: &[Bytes]) {
    let mut num = itoa::Buffer::new();
    out.put_u8(b'+');
    out.put_slice(num.format(now_us / 1_000_000).as_bytes());
    out.put_u8(b'.');
    let frac = num.format(now_us % 1_000_000);
    out.put_slice(&b"000000"[frac.len()..]);
    out.put_slice(frac.as_bytes());
    out.put_slice(b" [");
    out.put_slice(num.format(db).as_bytes());
    out.put_u8(b' ');
    out.put_slice(peer);
    out.put_slice(b"]");
    let redact = redacted_from(args);
    for (i, a) in args.iter().enumerate() {
        out.put_u8(b' ');
        if i >= redact.0 && i < redact.1 {
            out.put_slice(b"\"(redacted)\"");
        } else {
            repr(out, a);
        }
    }
    out.put_slice(b"\r\n");
}

/// The argument range shown as `(redacted)`: AUTH's arguments, and the
/// user name and password after HELLO's AUTH (Redis's
/// `redactClientCommandArgument` callers that tether has).
fn redacted_from(args: &[Bytes]) -> (usize, usize) {
    let Some(name) = args.first() else {
        return (0, 0);
    };
    if eq_ic(name, "auth") {
        return (1, args.len());
    }
    if eq_ic(name, "hello")
        && let Some(i) = args.iter().skip(2).position(|a| eq_ic(a, "auth"))
    {
        let at = i + 2;
        return (at + 1, (at + 3).min(args.len()));
    }
    (0, 0)
}

/// Redis's `sdscatrepr`: a quoted string with `\\`, `\"`, `\n`, `\r`,
/// `\t`, `\a` and `\b` escaped, other unprintable bytes as `\xHH`.
fn repr(out: &mut BytesMut, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    for &c in s {
        match c {
            b'\\' | b'"' => {
                out.put_u8(b'\\');
                out.put_u8(c);
            }
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            0x07 => out.put_slice(b"\\a"),
            0x08 => out.put_slice(b"\\b"),
            0x20..=0x7e => out.put_u8(c),
            _ => {
                out.put_slice(b"\\x");
                out.put_u8(HEX[(c >> 4) as usize]);
                out.put_u8(HEX[(c & 15) as usize]);
            }
        }
    }
    out.put_u8(b'"');
}

/// Sends the lines fed so far on their way: to every other shard with a
/// monitor, and into `monitor_here` for this shard's own. `Shard::post`
/// calls it before any message leaves.
pub fn publish(shard: &Shard) {
    let lines = {
        let mut out = shard.monitor_out.borrow_mut();
        if out.is_empty() {
            return;
        }
        out.split().freeze()
    };
    let counts = &shard.shared.monitors_on;
    for (i, n) in counts.iter().enumerate() {
        if i != shard.id && n.load(Ordering::Relaxed) != 0 {
            shard.post(
                i,
                Msg::Monitor {
                    lines: lines.clone(),
                },
            );
        }
    }
    if counts[shard.id].load(Ordering::Relaxed) != 0 {
        shard.monitor_here.borrow_mut().extend_from_slice(&lines);
    }
}

/// Publishes what was fed and delivers this shard's share to its own
/// monitors. The network driver calls it once per turn, with nothing
/// borrowed; returns whether a monitor here has output waiting.
pub fn flush(shard: &Shard) -> bool {
    if shard.monitor_out.borrow().is_empty() && shard.monitor_here.borrow().is_empty() {
        return false;
    }
    publish(shard);
    let here = shard.monitor_here.borrow_mut().split().freeze();
    deliver(shard, &here)
}

/// Lines from another shard (`Msg::Monitor`): this shard's own pending
/// lines first, then these.
pub fn receive(shard: &Shard, lines: &Bytes) {
    flush(shard);
    deliver(shard, lines);
}

/// Appends `lines` to each monitor of this shard. Monitors that went away
/// leave the list (and the counts) here.
fn deliver(shard: &Shard, lines: &[u8]) -> bool {
    if lines.is_empty() {
        return false;
    }
    let mut ids = shard.monitor_ids.borrow_mut();
    let before = ids.len();
    let mut net = shard.net.borrow_mut();
    ids.retain(|&id| net.monitor_feed(id, lines));
    let gone = before - ids.len();
    drop(net);
    if gone > 0 {
        forget(shard, gone);
    }
    !ids.is_empty()
}

fn forget(shard: &Shard, n: usize) {
    shard.shared.monitors_on[shard.id].fetch_sub(n as u32, Ordering::Relaxed);
    shard.shared.monitors.fetch_sub(n as u32, Ordering::Relaxed);
}

/// MONITOR: the connection turns into a monitor on its own shard. A
/// client already monitoring gets no reply, as in Redis.
pub fn monitor(c: &mut ConnCtx, _: &[Bytes]) {
    if c.client.monitor {
        return;
    }
    c.client.monitor = true;
    c.shard.monitor_ids.borrow_mut().push(c.client.id);
    c.shard.shared.monitors_on[c.shard.id].fetch_add(1, Ordering::Relaxed);
    c.shard.shared.monitors.fetch_add(1, Ordering::Relaxed);
    c.r.ok()
}

/// RESET ends monitor mode.
pub fn stop(shard: &Shard, client: &mut ClientState) {
    if !std::mem::take(&mut client.monitor) {
        return;
    }
    let mut ids = shard.monitor_ids.borrow_mut();
    if let Some(i) = ids.iter().position(|&id| id == client.id) {
        ids.swap_remove(i);
        drop(ids);
        forget(shard, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn lines_read_as_redis_writes_them() {
        let mut out = BytesMut::new();
        line(
            &mut out,
            1_733_450_000_000_042,
            3,
            b"127.0.0.1:5000",
            &[
                b("set"),
                b("k\"\\"),
                Bytes::from_static(b"\n\r\t\x07\x08\x00\xff ~"),
            ],
        );
        assert_eq!(
            &out[..],
            &b"+1733450000.000042 [3 127.0.0.1:5000] \"set\" \"k\\\"\\\\\" \"\\n\\r\\t\\a\\b\\x00\\xff ~\"\r\n"[..]
        );
    }

    #[test]
    fn credentials_are_redacted() {
        let mut out = BytesMut::new();
        line(&mut out, 0, 0, LUA, &[b("AUTH"), b("u"), b("p")]);
        assert_eq!(
            &out[..],
            b"+0.000000 [0 lua] \"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"
        );
        out.clear();
        let hello = [
            b("hello"),
            b("3"),
            b("AUTH"),
            b("u"),
            b("p"),
            b("SETNAME"),
            b("n"),
        ];
        line(&mut out, 0, 0, LUA, &hello);
        assert_eq!(
            &out[..],
            &b"+0.000000 [0 lua] \"hello\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"[..]
        );
    }
}
