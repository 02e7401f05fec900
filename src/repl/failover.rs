//! FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | FAILOVER ABORT: Redis
//! 7.0's coordinated failover, a switch of roles between a master and one
//! of its replicas that loses no acknowledged write (`failoverCommand`,
//! `updateFailoverStatus`, `abortFailover` in replication.c).
//!
//! 1. **waiting-for-sync.** The master pauses writes (a pause of its own,
//!    which CLIENT UNPAUSE leaves alone, `cmd::pause`) and waits until the
//!    target (or, without TO, any online replica) has acknowledged the
//!    whole stream. The master sends no PING meanwhile, so the offset holds
//!    still. Reads are answered; held writes run when the failover ends.
//! 2. **failover-in-progress.** The master demotes itself: it becomes a
//!    replica of the target, keeping its data, and offers its own history
//!    with `PSYNC <replid> <offset+1> FAILOVER`. The target, finding its own
//!    replication id there, promotes itself and answers `+CONTINUE` with its
//!    new id, so the old master goes on as its replica with no full sync.
//! 3. **no-failover.** On `+CONTINUE` (or `+FULLRESYNC`) the pause ends:
//!    the held writes now meet a read-only replica and get READONLY. If the
//!    target refuses the PSYNC, or cannot be reached before the PSYNC goes
//!    out, the master promotes itself back and lets the writes run.
//!
//! A TIMEOUT that runs out while waiting aborts the failover, or with
//! FORCE goes on to step 2 with the target behind. FAILOVER ABORT ends it
//! in either state. While a failover runs, SYNC/PSYNC (other than the
//! target's own) and REPLICAOF are refused, as in Redis.
//!
//! Where tether differs: Redis waits for the target's once-a-second ACK,
//! and checks once a second, so writes stay held for up to two seconds.
//! tether asks at once with a `REPLCONF GETACK *` after pausing, and
//! checks every 2 ms. A replica answers a GETACK with its offset
//! before it, one command short of the master's; so a target whose ACK
//! stops exactly at a GETACK that ends the stream counts as synced: what
//! it has not acknowledged carries no data. PINGs stop for an untimed
//! failover too (Redis stops them for a timed one), and a target that
//! cannot be reached
//! ends the failover (Redis stays a replica of it, writes paused, until
//! FAILOVER ABORT). After a PSYNC FAILOVER went out and its reply was lost,
//! the retry sends a plain PSYNC: the target may have promoted itself, and
//! a second FAILOVER request would be refused, ending in two masters.

use std::rc::Rc;

use bytes::Bytes;

use super::lock;
use crate::cmd::{eq_ic, parse_i64};
use crate::resp::Reply;
use crate::shard::Shard;

/// `master_failover_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    None,
    WaitForSync,
    InProgress,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::None => "no-failover",
            State::WaitForSync => "waiting-for-sync",
            State::InProgress => "failover-in-progress",
        }
    }
}

/// The failover under way, if any (process-wide, in `Repl::failover`).
#[derive(Debug, Default)]
pub struct Failover {
    pub state: State,
    /// TO host port; chosen when the wait ends, without TO.
    target: Option<(String, u16)>,
    /// Unix ms the wait may last until (TIMEOUT); 0 = no limit.
    end_ms: u64,
    force: bool,
    /// A PSYNC FAILOVER went out to the target (see the module doc).
    psync_sent: bool,
}

/// The current `master_failover_state`.
pub fn state(shard: &Shard) -> State {
    lock(&shard.shared.repl.failover).state
}

/// FAILOVER's arguments, or the reply that refuses them.
struct Args {
    target: Option<(String, i64)>,
    timeout: i64,
    force: bool,
}

fn parse(a: &[Bytes]) -> Result<Args, &'static str> {
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    let mut args = Args {
        target: None,
        timeout: 0,
        force: false,
    };
    let mut j = 1;
    while j < a.len() {
        if eq_ic(&a[j], "timeout") && j + 1 < a.len() && args.timeout == 0 {
            args.timeout = parse_i64(&a[j + 1]).ok_or(NOT_INT)?;
            if args.timeout <= 0 {
                return Err("ERR FAILOVER timeout must be greater than 0");
            }
            j += 2;
        } else if eq_ic(&a[j], "to") && j + 2 < a.len() && args.target.is_none() {
            let port = parse_i64(&a[j + 2]).ok_or(NOT_INT)?;
            args.target = Some((String::from_utf8_lossy(&a[j + 1]).into_owned(), port));
            j += 3;
        } else if eq_ic(&a[j], "force") && !args.force {
            args.force = true;
            j += 1;
        } else {
            return Err("ERR syntax error");
        }
    }
    Ok(args)
}

/// The FAILOVER command.
pub fn command(shard: &Rc<Shard>, r: &mut Reply<'_>, a: &[Bytes]) {
    let repl = &shard.shared.repl;
    let mut f = lock(&repl.failover);
    if a.len() == 2 && eq_ic(&a[1], "abort") {
        if f.state == State::None {
            return r.error("ERR No failover in progress.");
        }
        abort(shard, &mut f, "Failover manually aborted");
        return r.ok();
    }
    let args = match parse(a) {
        Ok(args) => args,
        Err(e) => return r.error(e),
    };
    if f.state != State::None {
        return r.error("ERR FAILOVER already in progress.");
    }
    if repl.is_replica.load(std::sync::atomic::Ordering::SeqCst) {
        return r.error("ERR FAILOVER is not valid when server is a replica.");
    }
    if repl.replicas_empty() {
        return r.error("ERR FAILOVER requires connected replicas.");
    }
    if args.force && (args.timeout == 0 || args.target.is_none()) {
        return r.error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        );
    }
    f.target = None;
    if let Some((host, port)) = &args.target {
        let online = {
            let views = lock(&repl.replicas);
            let found = views
                .values()
                .find(|v| v.ip.eq_ignore_ascii_case(host) && i64::from(v.port) == *port);
            match found {
                None => return r.error("ERR FAILOVER target HOST and PORT is not a replica."),
                Some(v) => v.state == "online",
            }
        };
        if !online {
            return r.error("ERR FAILOVER target replica is not online.");
        }
        log::info!("FAILOVER requested to {host}:{port}.");
        // `port` matched a replica's listening port, which is a u16.
        f.target = Some((host.clone(), *port as u16));
    } else {
        log::info!("FAILOVER requested to any replica.");
    }
    let now = crate::shard::now_ms();
    f.end_ms = if args.timeout > 0 {
        now.saturating_add(args.timeout as u64)
    } else {
        0
    };
    f.force = args.force;
    f.psync_sent = false;
    f.state = State::WaitForSync;
    shard.shared.pause.begin_failover();
    // Writes are held from here on: the GETACK ends the stream, unless a
    // write already under way lands behind it (then the target's next
    // ACK, a second later, must cover that write too).
    super::master::emit_getack(shard);
    // The watcher may run at once, inline: the state must be free.
    drop(f);
    glommio::spawn_local(watch(shard.clone())).detach();
    r.ok()
}

/// How often a waiting failover looks at its target's ACK.
const POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Moves a waiting failover on, every [`POLL`], as a task of the
/// FAILOVER's shard: aborts or forces it when its TIMEOUT runs out, and
/// demotes this master once the target has acknowledged the whole stream.
///
/// Before demoting it waits for writes accepted before the pause to be in
/// the stream ([`writes_settled`]), then looks again: a write that passed
/// its pause check just before the pause began, and ran on another shard
/// or in a transaction after the target's ACK, would otherwise be
/// answered OK here and never reach the target.
async fn watch(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(POLL).await;
        match step(&shard, false) {
            Step::Over => return,
            Step::Wait => continue,
            Step::Ready => {}
        }
        if writes_settled(&shard).await && step(&shard, true) == Step::Over {
            return;
        }
    }
}

#[derive(PartialEq, Eq)]
enum Step {
    /// The failover ended, or moved past waiting.
    Over,
    Wait,
    /// The target is synced (or the TIMEOUT forces the hand-over).
    Ready,
}

/// One look at a waiting failover; with `demote_now`, a target found
/// ready is handed the role (`Over`).
fn step(shard: &Rc<Shard>, demote_now: bool) -> Step {
    let repl = &shard.shared.repl;
    let mut f = lock(&repl.failover);
    if f.state != State::WaitForSync {
        return Step::Over;
    }
    if f.end_ms != 0 && f.end_ms <= crate::shard::now_ms() {
        if !f.force {
            abort(shard, &mut f, "Replica never caught up before timeout");
            return Step::Over;
        }
        if !demote_now {
            return Step::Ready;
        }
        let (host, port) = f.target.clone().expect("FORCE requires TO");
        log::info!("FAILOVER to {host}:{port} time out exceeded, failing over.");
        demote(shard, &mut f, host, port);
        return Step::Over;
    }
    let off = repl.seq.offset();
    let short = trailing_getack(repl, off);
    let synced = {
        let views = lock(&repl.replicas);
        let mut online = views
            .values()
            .filter(|v| v.state == "online" && (v.ack_off == off || Some(v.ack_off) == short));
        match &f.target {
            Some((host, port)) => online
                .find(|v| v.ip.eq_ignore_ascii_case(host) && v.port == *port)
                .map(|_| (host.clone(), *port)),
            None => online.next().map(|v| (v.ip.clone(), v.port)),
        }
    };
    match synced {
        None => Step::Wait,
        Some(_) if !demote_now => Step::Ready,
        Some((host, port)) => {
            log::info!("Failover target {host}:{port} is synced, failing over.");
            demote(shard, &mut f, host, port);
            Step::Over
        }
    }
}

/// Whether no shard has a client command under way other than those the
/// pause holds (and blocked pops): every write that got past its pause
/// check is then in the stream. Each shard answers at the start of its
/// next turn, so a fast-path turn running now has ended and sealed its
/// writes by then; a slow-path batch or a transaction keeps its
/// connection busy until it is done; a held command counts as blocked.
async fn writes_settled(shard: &Rc<Shard>) -> bool {
    crate::shard::dispatch::gather_info(shard, None)
        .await
        .iter()
        .all(|i| i.busy_clients as u64 <= i.blocked_clients)
}

/// Where the stream's last command starts when it is a `REPLCONF GETACK *`
/// (as `master::emit_getack` writes it, an entry of its own) ending at
/// `off`: an ACK there means everything with data was received.
fn trailing_getack(repl: &super::Repl, off: u64) -> Option<u64> {
    let mut getack = bytes::BytesMut::new();
    super::encode_cmd(&mut getack, &super::master::GETACK);
    repl.backlogs.iter().find_map(|b| {
        let b = lock(b);
        let e = b.entries.back()?;
        (e.off + e.len() == off && e.select.is_none() && e.body[..] == getack[..]).then_some(e.off)
    })
}

/// Step 2: become a replica of the target (the link task sends it the
/// PSYNC FAILOVER). The pause stays until the target answers.
fn demote(shard: &Rc<Shard>, f: &mut Failover, host: String, port: u16) {
    f.state = State::InProgress;
    f.target = Some((host.clone(), port));
    f.psync_sent = false;
    super::replica::replicaof(shard, host, port);
}

/// Ends the failover, back to master if it had demoted us, and lets the
/// held writes run (`abortFailover`).
fn abort(shard: &Rc<Shard>, f: &mut Failover, reason: &str) {
    match &f.target {
        Some((host, port)) => log::info!("FAILOVER to {host}:{port} aborted: {reason}"),
        None => log::info!("FAILOVER to any replica aborted: {reason}"),
    }
    if f.state == State::InProgress {
        super::replica::promote(shard, None);
    }
    clear(shard, f);
}

fn clear(shard: &Shard, f: &mut Failover) {
    *f = Failover::default();
    shard.shared.pause.end_failover();
}

/// For the replica link about to send PSYNC: whether to add FAILOVER (a
/// failover is in progress and has not sent it yet; the first attempt
/// that gets this far takes it).
pub fn psync_wants_failover(shard: &Shard) -> bool {
    let mut f = lock(&shard.shared.repl.failover);
    if f.state == State::InProgress && !f.psync_sent {
        f.psync_sent = true;
        true
    } else {
        false
    }
}

/// The target answered our PSYNC: `+CONTINUE`/`+FULLRESYNC` (`accepted`)
/// ends the failover as done; anything else aborts it, and we are a master
/// again. Returns false in that case: the link must stop.
pub fn on_psync_reply(shard: &Rc<Shard>, accepted: bool) -> bool {
    let mut f = lock(&shard.shared.repl.failover);
    if f.state != State::InProgress {
        return true;
    }
    if accepted {
        clear(shard, &mut f);
        true
    } else {
        abort(shard, &mut f, "Failover target rejected psync request");
        false
    }
}

/// The link to the target failed. Before the PSYNC went out the target
/// cannot have promoted itself: the failover ends and we are a master
/// again. After it, the target may have: we stay its replica and retry.
pub fn on_link_error(shard: &Rc<Shard>, err: &str) {
    let mut f = lock(&shard.shared.repl.failover);
    if f.state == State::InProgress && !f.psync_sent {
        abort(shard, &mut f, &format!("Failed to reach the target: {err}"));
    }
}
