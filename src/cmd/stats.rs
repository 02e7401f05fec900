//! INFO commandstats and errorstats, as Redis 7.0 keeps them.
//!
//! Per command: `calls` (executions, a blocked command counted once, when
//! it completes), `failed_calls` (executed and answered with an error),
//! `rejected_calls` (refused before running: wrong arity, READONLY,
//! NOREPLICAS, a subscribed context, ...), and `usec`. Container commands
//! count per subcommand (`cmdstat_client|list`), as Redis 7.0 does.
//!
//! The counters live in each shard's thread (a command runs on one shard,
//! its thread the only writer), and INFO sums the shards' copies
//! ([`snapshot`] via `Op::Info`). Counting is a thread-local add per
//! command: in alternating runs of SET -P 16 (one shard) against the build
//! before, ops per CPU-second medians were 1-2 % lower, within this
//! machine's noise.
//!
//! **`usec` is sampled.** Timing every command costs two clock reads,
//! about 50 ns: over a tenth of a pipelined GET's whole cost here. So a
//! command is timed on its 1st, 65th, 129th ... call (per command, per
//! shard), and `usec` is the sampled mean times `calls`; `usec_per_call`
//! is that mean. For a command run a few times it is its first run's
//! time. Redis times every call, at microsecond resolution (so a fast
//! command there often reads 0 or 1 µs).
//!
//! Errors are counted by their code (the reply's first word: `ERR`,
//! `WRONGTYPE`, ...) for `errorstat_<CODE>:count=N`, process-wide, from
//! [`crate::resp::Reply::error`], which every error reply goes through;
//! like Redis, at most 128 distinct codes are tracked.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::CmdSpec;

/// One in this many calls of a command is timed.
const SAMPLE: u64 = 64;

/// Redis's `ERROR_STATS_NUMBER`: distinct error codes tracked.
const MAX_ERROR_CODES: usize = 128;

/// One command's counters (on one shard, or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdStat {
    pub calls: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Calls timed, and their total nanoseconds.
    pub timed: u64,
    pub timed_ns: u64,
}

impl CmdStat {
    fn add(&mut self, o: &CmdStat) {
        self.calls += o.calls;
        self.failed += o.failed;
        self.rejected += o.rejected;
        self.timed += o.timed;
        self.timed_ns += o.timed_ns;
    }

    /// Estimated microseconds over all calls (see the module doc).
    fn usec(&self) -> u64 {
        if self.timed == 0 {
            return 0;
        }
        (self.timed_ns as u128 * self.calls as u128 / self.timed as u128 / 1000) as u64
    }
}

thread_local! {
    /// This shard's counters: plain commands by [`CmdSpec::stat_slot`],
    /// container commands by `name|sub`.
    static STATS: RefCell<Vec<CmdStat>> = const { RefCell::new(Vec::new()) };
    static SUBS: RefCell<HashMap<String, CmdStat>> = RefCell::new(HashMap::new());
}

/// Commands whose statistics Redis 7.0 keeps per subcommand.
pub(super) const CONTAINERS: &[&str] = &[
    "client", "command", "config", "memory", "object", "pubsub", "cluster", "script", "acl",
    "function", "latency", "module", "slowlog", "xinfo", "xgroup",
];

#[inline]
fn is_container(spec: &CmdSpec, args: &[bytes::Bytes]) -> bool {
    args.len() > 1 && spec.stat_container()
}

fn with(spec: &CmdSpec, args: &[bytes::Bytes], f: impl FnOnce(&mut CmdStat)) {
    if is_container(spec, args) {
        let k = format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(&args[1]).to_lowercase()
        );
        SUBS.with(|s| f(s.borrow_mut().entry(k).or_default()));
    } else {
        let i = spec.stat_slot();
        STATS.with(|s| {
            let mut s = s.borrow_mut();
            if i >= s.len() {
                s.resize(i + 1, CmdStat::default());
            }
            f(&mut s[i])
        });
    }
}

/// A command about to run: [`Call::done`] counts it once it has replied.
#[must_use]
pub struct Call {
    start: Option<Instant>,
}

/// Starts counting a call of `spec` (timed if it is a sampled call).
#[inline]
pub fn begin(spec: &CmdSpec) -> Call {
    let i = spec.stat_slot();
    let n = STATS.with(|s| s.borrow().get(i).map_or(0, |c| c.calls));
    Call {
        start: n.is_multiple_of(SAMPLE).then(Instant::now),
    }
}

impl Call {
    /// The call completed; `reply` holds what it wrote (an error reply
    /// starts with `-`). A call that blocked instead counts nothing: it
    /// counts when it completes.
    #[inline]
    pub fn done(self, spec: &CmdSpec, args: &[bytes::Bytes], reply: &[u8]) {
        let failed = reply.first() == Some(&b'-');
        if failed && is_container(spec, args) && unknown_subcommand(reply) {
            // Redis refuses these before the command runs.
            return;
        }
        let ns = self.start.map(|t| t.elapsed().as_nanos() as u64);
        with(spec, args, |c| {
            c.calls += 1;
            c.failed += failed as u64;
            if let Some(ns) = ns {
                c.timed += 1;
                c.timed_ns += ns;
            }
        });
    }
}

/// A call that ended without running its command again (a blocked
/// command's timeout or CLIENT UNBLOCK): counted, untimed.
pub fn completed(spec: &CmdSpec, args: &[bytes::Bytes], reply: &[u8]) {
    Call { start: None }.done(spec, args, reply);
}

fn unknown_subcommand(reply: &[u8]) -> bool {
    reply.starts_with(b"-ERR unknown subcommand")
}

/// A call of `spec` refused before it ran.
pub fn rejected(spec: &CmdSpec, args: &[bytes::Bytes]) {
    with(spec, args, |c| c.rejected += 1);
}

/// This shard's counters, for INFO.
pub fn snapshot() -> Vec<(String, CmdStat)> {
    let names = super::by_stat_slot();
    let mut v: Vec<(String, CmdStat)> = STATS.with(|s| {
        s.borrow()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != CmdStat::default())
            .map(|(i, c)| (names[i].name.to_string(), *c))
            .collect()
    });
    SUBS.with(|s| v.extend(s.borrow().iter().map(|(k, c)| (k.clone(), *c))));
    v
}

/// CONFIG RESETSTAT, on this shard.
pub fn reset() {
    STATS.with(|s| s.borrow_mut().clear());
    SUBS.with(|s| s.borrow_mut().clear());
}

/// INFO's `# Commandstats` section from every shard's [`snapshot`].
pub fn commandstats(shards: &[Vec<(String, CmdStat)>]) -> String {
    let mut all: BTreeMap<&str, CmdStat> = BTreeMap::new();
    for s in shards {
        for (k, c) in s {
            all.entry(k).or_default().add(c);
        }
    }
    let mut out = String::from("# Commandstats\r\n");
    for (name, c) in all {
        let usec = c.usec();
        let per_call = if c.calls == 0 {
            0.0
        } else {
            usec as f64 / c.calls as f64
        };
        out.push_str(&format!(
            "cmdstat_{name}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            c.calls, c.rejected, c.failed
        ));
    }
    out.push_str("\r\n");
    out
}

static ERRORS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Counts an error reply by its code (`msg` without the leading `-`).
pub fn error(msg: &str) {
    let code = msg.split(' ').next().unwrap_or("");
    let mut m = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = m.get_mut(code) {
        *n += 1;
    } else if m.len() < MAX_ERROR_CODES {
        m.insert(code.to_string(), 1);
    }
}

/// INFO's `# Errorstats` section.
pub fn errorstats() -> String {
    let m = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from("# Errorstats\r\n");
    for (code, n) in m.iter() {
        out.push_str(&format!("errorstat_{code}:count={n}\r\n"));
    }
    out.push_str("\r\n");
    out
}

/// CONFIG RESETSTAT: the error counts.
pub fn reset_errors() {
    ERRORS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usec_scales_the_sampled_mean() {
        let c = CmdStat {
            calls: 32,
            timed: 2,
            timed_ns: 4000,
            ..Default::default()
        };
        assert_eq!(c.usec(), 64);
        assert_eq!(CmdStat::default().usec(), 0);
    }

    #[test]
    fn error_codes_are_first_words() {
        // Codes no other test writes (the counts are process-wide).
        error("TESTCODEA syntax error");
        error("TESTCODEB Operation against a key");
        error("TESTCODEA x");
        let s = errorstats();
        assert!(s.contains("errorstat_TESTCODEA:count=2\r\n"), "{s}");
        assert!(s.contains("errorstat_TESTCODEB:count=1\r\n"), "{s}");
    }
}
