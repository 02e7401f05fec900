//! CLIENT PAUSE / CLIENT UNPAUSE: holding clients' commands for a while,
//! as an operator does around a manual failover (pause writes, wait for
//! the replica to reach the master's offset, promote it, repoint clients).
//!
//! As in Redis 7.0 (`processCommand`, `pauseClients`):
//! - `ALL` holds every command of every client but replicas; `WRITE`
//!   holds writes, the commands that may replicate (PUBLISH, SPUBLISH), and
//!   an EXEC whose queue holds one. A held command waits, and the commands
//!   its client sent after it wait behind it, until the pause ends; it
//!   then runs. A command with a syntax or arity error is answered at once,
//!   as is one a refusal answers (READONLY on a read-only replica).
//! - A new pause keeps the later end and the stricter mode of the two.
//! - While paused, the dataset stays still: keys whose TTL passed read as
//!   missing but are not deleted, lazily or by the active cycle, so no DEL
//!   enters the stream. A replica applies its master's stream up to the
//!   first command the pause holds and keeps reading the rest; its offset
//!   stops there.
//! - A pause set inside MULTI starts when the transaction ends.
//! - A shutdown that waits for its replicas pauses writes of its own
//!   (`persist::prepare_shutdown`), and so does a FAILOVER
//!   (`repl::failover`); CLIENT UNPAUSE leaves those alone.
//!
//! The state is two words shared by every shard ([`Pause`]); a command
//! checks them with relaxed loads. Held commands wait on the slow path
//! (`shard::dispatch::run_batch`), counted in `blocked_clients`, polling
//! every few milliseconds, so an UNPAUSE takes effect within one poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{CmdSpec, eq_ic, parse_i64};
use crate::resp::Reply;

/// How long a held command sleeps between looks at the pause.
const POLL: Duration = Duration::from_millis(2);

/// What a pause holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Write,
    All,
}

/// The pauses in force, by purpose, as Redis keeps them: CLIENT PAUSE's,
/// and the write pauses of a shutdown that waits for its replicas
/// (`persist::prepare_shutdown`) and of a FAILOVER (`repl::failover`).
/// CLIENT UNPAUSE lifts only the first.
///
/// CLIENT PAUSE's is one word: its end (Unix ms) shifted left by one, with
/// the low bit set for `ALL`; 0 when none was set or it was lifted. The
/// other word holds one bit per purpose ([`SHUTDOWN`], [`FAILOVER`]) while
/// it lasts: those pauses have no end of their own.
#[derive(Default, Debug)]
pub struct Pause(AtomicU64, AtomicU64);

/// The write pause of a shutdown waiting for its replicas.
const SHUTDOWN: u64 = 1;
/// The write pause of a FAILOVER, from its start until it ends.
const FAILOVER: u64 = 2;

impl Pause {
    /// The strictest mode in force at `now`, if any. A CLIENT PAUSE found
    /// run out is cleared, so that [`Pause::maybe`] is false again and
    /// commands go back to the fast path.
    pub fn mode(&self, now: u64) -> Option<Mode> {
        let w = self.0.load(Ordering::Relaxed);
        let client = if w == 0 {
            None
        } else if w >> 1 <= now {
            let _ = self
                .0
                .compare_exchange(w, 0, Ordering::SeqCst, Ordering::Relaxed);
            None
        } else {
            Some(if w & 1 == 1 { Mode::All } else { Mode::Write })
        };
        let shutdown = (self.1.load(Ordering::Relaxed) != 0).then_some(Mode::Write);
        client.max(shutdown)
    }

    /// Whether any pause was set and not lifted (it may have run out): the
    /// cheap first look on the hot path.
    pub fn maybe(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0 || self.1.load(Ordering::Relaxed) != 0
    }

    /// Holds writes for a shutdown that waits for its replicas, until
    /// [`Pause::end_shutdown`].
    pub fn begin_shutdown(&self) {
        self.1.fetch_or(SHUTDOWN, Ordering::SeqCst);
    }

    pub fn end_shutdown(&self) {
        self.1.fetch_and(!SHUTDOWN, Ordering::SeqCst);
    }

    /// Holds writes while a FAILOVER runs, until [`Pause::end_failover`].
    pub fn begin_failover(&self) {
        self.1.fetch_or(FAILOVER, Ordering::SeqCst);
    }

    pub fn end_failover(&self) {
        self.1.fetch_and(!FAILOVER, Ordering::SeqCst);
    }

    /// Pauses until `end` in `mode`; a pause in force keeps its end if later
    /// and its mode if stricter.
    pub fn set(&self, now: u64, end: u64, mode: Mode) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                let (mut end, mut all) = (end, mode == Mode::All);
                if w != 0 && w >> 1 > now {
                    end = end.max(w >> 1);
                    all |= w & 1 == 1;
                }
                Some(end << 1 | all as u64)
            });
    }

    /// CLIENT UNPAUSE: lifts CLIENT PAUSE's pause (not a shutdown's).
    pub fn lift(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// Commands that are not writes but go into the stream, which a `WRITE`
/// pause holds too (Redis's `may_replicate`).
pub(crate) fn may_replicate(spec: &CmdSpec) -> bool {
    matches!(spec.name, "publish" | "spublish" | "eval" | "evalsha")
}

/// Whether a pause in `mode` holds `spec` from a client whose MULTI queue
/// is `queued`.
pub fn holds(mode: Mode, spec: &CmdSpec, queued: Option<&[Vec<Bytes>]>) -> bool {
    let writes = |s: &CmdSpec| s.is_write() || may_replicate(s);
    match mode {
        Mode::All => true,
        Mode::Write if spec.name == "exec" => queued.is_some_and(|q| {
            q.iter().any(|args| match super::lookup(args) {
                super::Lookup::Found(s) => writes(s),
                super::Lookup::Error(_) => false,
            })
        }),
        Mode::Write => writes(spec),
    }
}

/// The first of a replica's batch of its master's commands that a pause at
/// `now` holds: the replica applies what precedes it and leaves the rest
/// for after the pause.
pub fn first_held(pause: &Pause, now: u64, cmds: &[Vec<Bytes>]) -> Option<usize> {
    let mode = pause.mode(now)?;
    cmds.iter().position(|args| match super::lookup(args) {
        super::Lookup::Found(s) => holds(mode, s, None),
        super::Lookup::Error(_) => mode == Mode::All,
    })
}

/// Waits while the pause holds `spec` (with `client`'s MULTI queue); false
/// when `closed` ended the wait first.
pub async fn wait(
    shard: &crate::shard::Shard,
    spec: &CmdSpec,
    client: &super::ClientState,
    closed: &crate::shard::blocking::CloseFlag,
) -> bool {
    let pause = &shard.shared.pause;
    let held = |now| {
        pause
            .mode(now)
            .is_some_and(|m| holds(m, spec, client.multi.as_deref()))
    };
    if !held(crate::shard::now_ms()) {
        return true;
    }
    let _blocked = crate::shard::blocking::BlockedCount::new(&shard.stats.blocked_clients);
    while held(crate::shard::now_ms()) {
        if closed.is_set() || shard.shared.shutdown.load(Ordering::Relaxed) {
            return false;
        }
        glommio::timer::sleep(POLL).await;
    }
    true
}

/// CLIENT PAUSE timeout [WRITE|ALL].
pub fn client_pause(pause: &Pause, a: &[Bytes], r: &mut Reply<'_>) {
    let timeout = match parse_i64(&a[2]) {
        Some(t) if t < 0 => return r.error("ERR timeout is negative"),
        Some(t) => t as u64,
        None => return r.error("ERR timeout is not an integer or out of range"),
    };
    let mode = match a.get(3) {
        None => Mode::All,
        Some(m) if eq_ic(m, "all") => Mode::All,
        Some(m) if eq_ic(m, "write") => Mode::Write,
        Some(_) => return r.error("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let now = crate::shard::now_ms();
    let Some(end) = now.checked_add(timeout).filter(|e| *e < 1 << 62) else {
        return r.error("ERR timeout is out of range");
    };
    pause.set(now, end, mode);
    r.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_pause_keeps_the_later_end_and_the_stricter_mode() {
        let p = Pause::default();
        assert_eq!(p.mode(100), None);
        p.set(100, 300, Mode::All);
        p.set(100, 150, Mode::Write);
        assert_eq!(p.mode(200), Some(Mode::All), "ALL until 300 holds");
        assert_eq!(p.mode(300), None, "ends at its end");
        assert!(!p.maybe(), "an ended pause is cleared once seen");
        p.set(400, 500, Mode::Write);
        p.set(400, 450, Mode::All);
        assert_eq!(p.mode(460), Some(Mode::All), "stricter mode, later end");
        p.set(600, 700, Mode::Write);
        assert_eq!(
            p.mode(650),
            Some(Mode::Write),
            "an ended pause does not carry its mode over"
        );
        p.lift();
        assert_eq!(p.mode(650), None);
        assert!(!p.maybe());
    }

    #[test]
    fn unpause_leaves_a_shutdown_pause_in_place() {
        let p = Pause::default();
        p.begin_shutdown();
        assert_eq!(p.mode(0), Some(Mode::Write));
        p.set(0, 100, Mode::All);
        assert_eq!(p.mode(50), Some(Mode::All), "the stricter of the two");
        p.lift();
        assert_eq!(p.mode(50), Some(Mode::Write));
        p.end_shutdown();
        assert_eq!(p.mode(50), None);
    }
}
