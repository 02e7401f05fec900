//! Socket set-up: SO_REUSEPORT listeners (one per shard per address), the
//! `unixsocket` listener (shard 0's), and the options every accepted TCP
//! socket gets (TCP_NODELAY, Redis-style keepalive: idle N, interval N/3,
//! 3 probes).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

pub const IO_URING_REMEDY: &str = "tether drives its sockets with io_uring (Linux >= 6.1). If setup failed with \
EPERM/ENOSYS, io_uring is disabled (sysctl kernel.io_uring_disabled=0, or a seccomp profile blocks it); \
with ENOMEM raise the locked-memory limit (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in systemd).";

/// Resolves a `bind` entry and the port to socket addresses.
pub fn resolve(bind: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let host = bind.trim_start_matches('-');
    let host = if host == "*" {
        "0.0.0.0"
    } else if host == "::*" {
        "::"
    } else {
        host
    };
    Ok((host, port).to_socket_addrs()?.collect())
}

/// A listening socket with SO_REUSEPORT, so every shard can bind the port.
pub fn listener(addr: SocketAddr, backlog: i32) -> std::io::Result<RawFd> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(addr))?;
    s.listen(backlog)?;
    Ok(s.into_raw_fd())
}

/// The `unixsocket` listener, as Redis's `anetUnixServer`: a stale file
/// at `path` is removed first, and `perm` (`unixsocketperm`, 0 = leave the
/// umask's) is applied to the new one. One shard accepts on it.
pub fn unix_listener(path: &str, perm: u32, backlog: i32) -> std::io::Result<RawFd> {
    let _ = std::fs::remove_file(path);
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    s.bind(&SockAddr::unix(path)?)?;
    if perm != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))?;
    }
    s.listen(backlog)?;
    Ok(s.into_raw_fd())
}

/// Fails when something else already listens on `addr` (a plain bind
/// without SO_REUSEPORT, released at once).
pub fn check_free(addr: SocketAddr) -> std::io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(addr))
}

/// Options for an accepted TCP client socket (a unix socket has neither
/// Nagle nor keepalive).
pub fn tune_client(fd: RawFd, keepalive_secs: u64) {
    // SAFETY: borrow the fd for the calls, then give it back unclosed.
    let s = unsafe { Socket::from_raw_fd(fd) };
    let _ = s.set_tcp_nodelay(true);
    if keepalive_secs > 0 {
        let ka = TcpKeepalive::new()
            .with_time(Duration::from_secs(keepalive_secs))
            .with_interval(Duration::from_secs((keepalive_secs / 3).max(1)))
            .with_retries(3);
        let _ = s.set_tcp_keepalive(&ka);
    }
    let _ = s.into_raw_fd();
}

/// Peer and local address of a socket, as `ip:port` strings, and whether
/// it is a unix socket, whose two addresses are both `<socket path>:0`, as
/// Redis 7.0 prints them.
pub fn addrs(fd: RawFd) -> (String, String, bool) {
    // SAFETY: as above, borrowed only.
    let s = unsafe { Socket::from_raw_fd(fd) };
    let local = s.local_addr();
    let r = match &local {
        Ok(l) if l.is_unix() => {
            let path = l
                .as_pathname()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            (format!("{path}:0"), format!("{path}:0"), true)
        }
        _ => {
            let f = |a: std::io::Result<SockAddr>| {
                a.ok()
                    .and_then(|a| a.as_socket())
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            };
            (f(s.peer_addr()), f(local), false)
        }
    };
    let _ = s.into_raw_fd();
    r
}

/// TCP_USER_TIMEOUT on a replication link: unacknowledged data older than
/// this fails the socket, which catches a silent drop while data is in
/// flight. Keepalive cannot: Linux only probes a connection with nothing
/// unacknowledged, and a replication link almost always has something in
/// flight (the replica's ACK each second, the master's stream and PINGs).
/// `cfg_ms` is `repl-tcp-user-timeout`: -1 is off, > 0 is used as is, 0
/// derives it from repl-timeout and, when `tcp-keepalive N` is on, caps it
/// at the time keepalive would take on an idle link (N + 3 probes of N/3),
/// so keepalive's promise holds on a busy link too.
pub fn repl_user_timeout(fd: RawFd, cfg_ms: i64, repl_timeout_secs: u64, keepalive_secs: u64) {
    let ms = match cfg_ms {
        0 => {
            let mut secs = repl_timeout_secs;
            if keepalive_secs > 0 {
                secs = secs.min(keepalive_secs + 3 * (keepalive_secs / 3).max(1));
            }
            secs.saturating_mul(1000)
        }
        n if n > 0 => n as u64,
        _ => return,
    };
    // SAFETY: borrow the fd for the call, then give it back unclosed.
    let s = unsafe { Socket::from_raw_fd(fd) };
    let _ = s.set_tcp_user_timeout(Some(Duration::from_millis(ms)));
    let _ = s.into_raw_fd();
}
