//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT.
//!
//! **Atomicity across shards.** Redis runs a script with nothing else in
//! between, and a script may touch any key, declared or not. tether runs
//! it under a transaction holding every shard's lock (in ascending order,
//! as every multi-shard command takes them), so no client sees a script
//! half done. Inside EXEC the transaction's locks already cover every
//! shard (EVAL is a global command there).
//!
//! **Replication.** As in Redis 7.0, a script is replicated by its
//! effects: the writes its commands made, in order, wrapped in MULTI/EXEC
//! when there is more than one (`redis.set_repl` can drop them). EVALSHA
//! therefore needs nothing loaded on a replica.
//!
//! **The cache** of scripts by SHA1 is server-wide ([`Cache`]); each
//! shard compiles a script into its own Lua state on first use.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use mlua::thread::ThreadStatus;
use mlua::{HookTriggers, MultiValue, Value, VmState};

use super::vm::{self, MARK, Vm};
use crate::cmd::{ClientState, CmdSpec, Kind, NOT_INT, Route, eq_ic, parse_i64};
use crate::resp::{Proto, Reply};
use crate::shard::Shard;
use crate::shard::dispatch::Tx;
use crate::shard::keyspace::Entry;

/// Shebang flags (`#!lua flags=...`), as Redis's `SCRIPT_FLAG_*`.
pub const NO_WRITES: u32 = 1 << 0;
pub const ALLOW_OOM: u32 = 1 << 1;
pub const ALLOW_STALE: u32 = 1 << 2;
pub const NO_CLUSTER: u32 = 1 << 3;
pub const ALLOW_CROSS_SLOT: u32 = 1 << 4;
/// No shebang: a script as before Redis 7.0 (no flags checked up front).
pub const COMPAT: u32 = 1 << 5;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

macro_rules! eval_row {
    ($name:expr, $flags:expr) => {
        CmdSpec {
            name: $name,
            arity: -3,
            flags: $flags,
            first_key: 0,
            last_key: 0,
            step: 0,
            numkeys: 2,
            kind: Kind::Global,
            stat: crate::cmd::StatSlot::new(),
        }
    };
}

/// EVAL's and EVALSHA's flags, as Redis 7.0.15's COMMAND shows them
/// (a write inside makes them `may_replicate` for CLIENT PAUSE, which
/// `pause::may_replicate` knows by name).
const EVAL_FLAGS: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const EVAL_RO_FLAGS: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];

pub static COMMANDS: [CmdSpec; 5] = [
    eval_row!("eval", EVAL_FLAGS),
    eval_row!("evalsha", EVAL_FLAGS),
    eval_row!("eval_ro", EVAL_RO_FLAGS),
    eval_row!("evalsha_ro", EVAL_RO_FLAGS),
    global!("script", -2, &[]),
];

/// What runs of a script have shown about the keys it touches, deciding
/// how its next run is locked (see [`eval`]).
pub const MODE_UNKNOWN: u8 = 0;
/// Every run so far touched only its declared keys, all on one shard.
pub const MODE_LOCAL: u8 = 1;
/// Some run touched another key, or a command spanning shards.
pub const MODE_GLOBAL: u8 = 2;

/// A cached script.
pub struct Script {
    pub body: Bytes,
    pub flags: u32,
    pub mode: AtomicU8,
}

/// The state of the script a shard is running (one at most: a script
/// runs to its end without the shard serving anything else).
#[derive(Default)]
struct Running {
    /// When it started (ms since the epoch), 0 if none.
    since: AtomicU64,
    /// It has written: SCRIPT KILL may not stop it.
    dirty: AtomicBool,
    /// SCRIPT KILL asked it to stop.
    kill: AtomicBool,
    /// Memory of this shard's Lua state (INFO).
    lua_memory: AtomicU64,
}

/// The server-wide script cache and each shard's running script.
pub struct Cache {
    scripts: RwLock<HashMap<[u8; 40], Script>>,
    /// Moved on by SCRIPT FLUSH: each shard then builds a fresh Lua state.
    generation: AtomicU64,
    running: Box<[Running]>,
    /// Bytes of the cached bodies (INFO's `used_memory_scripts_eval`).
    body_bytes: AtomicU64,
}

impl Cache {
    pub fn new(nshards: usize) -> Cache {
        Cache {
            scripts: Default::default(),
            generation: AtomicU64::new(0),
            running: (0..nshards.max(1)).map(|_| Running::default()).collect(),
            body_bytes: AtomicU64::new(0),
        }
    }

    fn get(&self, sha: &[u8; 40]) -> Option<(Bytes, u32, u8)> {
        self.scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
            .map(|s| (s.body.clone(), s.flags, s.mode.load(Ordering::Relaxed)))
    }

    fn set_mode(&self, sha: &[u8; 40], mode: u8) {
        if let Some(s) = self
            .scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
        {
            s.mode.store(mode, Ordering::Relaxed);
        }
    }

    fn insert(&self, sha: [u8; 40], body: Bytes, flags: u32) {
        let mut m = self.scripts.write().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(e) = m.entry(sha) {
            self.body_bytes
                .fetch_add(body.len() as u64 + 40, Ordering::Relaxed);
            e.insert(Script {
                body,
                flags,
                mode: AtomicU8::new(MODE_UNKNOWN),
            });
        }
    }

    fn flush(&self) {
        self.scripts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.body_bytes.store(0, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Number of cached scripts (INFO's `number_of_cached_scripts`).
    pub fn len(&self) -> usize {
        self.scripts.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory of the shards' Lua states (INFO's `used_memory_lua`).
    pub fn lua_memory(&self) -> u64 {
        self.running
            .iter()
            .map(|r| r.lua_memory.load(Ordering::Relaxed))
            .sum()
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    fn slot(&self, shard: usize) -> &Running {
        &self.running[shard.min(self.running.len() - 1)]
    }
}

/// Length of a script's shebang line (`#!...`, without its line feed),
/// 0 without one.
pub fn shebang_len(body: &[u8]) -> usize {
    if !body.starts_with(b"#!") {
        return 0;
    }
    body.iter().position(|&b| b == b'\n').unwrap_or(body.len())
}

/// The flags a script's shebang declares (Redis's
/// `evalExtractShebangFlags`), or the error to answer.
pub fn shebang_flags(body: &[u8]) -> Result<u32, String> {
    if !body.starts_with(b"#!") {
        return Ok(COMPAT);
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = 0;
    for p in parts {
        let Some(list) = p.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {p}"));
        };
        for f in list.split(',').filter(|f| !f.is_empty()) {
            flags |= match f {
                "no-writes" => NO_WRITES,
                "allow-oom" => ALLOW_OOM,
                "allow-stale" => ALLOW_STALE,
                "no-cluster" => NO_CLUSTER,
                "allow-cross-slot-keys" => ALLOW_CROSS_SLOT,
                _ => return Err(format!("ERR Unexpected flag in script shebang: {f}")),
            };
        }
    }
    Ok(flags)
}

fn sha1_hex(body: &[u8]) -> [u8; 40] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 40];
    for (i, b) in sha1_smol::Sha1::from(body)
        .digest()
        .bytes()
        .iter()
        .enumerate()
    {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

thread_local! {
    /// This shard's Lua state (one executor per thread).
    static VM: std::cell::RefCell<Option<Rc<Vm>>> = const { std::cell::RefCell::new(None) };
}

/// This shard's Lua state, rebuilt after a SCRIPT FLUSH.
fn shard_vm(shard: &Shard) -> Result<Rc<Vm>, String> {
    let generation = shard.shared.scripts.generation.load(Ordering::SeqCst);
    VM.with(|cell| {
        if let Some(vm) = cell.borrow().as_ref()
            && vm.generation == generation
        {
            return Ok(vm.clone());
        }
        let vm = Rc::new(Vm::new(generation).map_err(|e| format!("ERR Lua: {e}"))?);
        *cell.borrow_mut() = Some(vm.clone());
        Ok(vm)
    })
}

/// Compiles `body` here and caches it server-wide, answering its SHA1
/// (EVAL of a new script, SCRIPT LOAD).
fn load(shard: &Shard, body: &Bytes) -> Result<([u8; 40], u32, u8), String> {
    let sha = sha1_hex(body);
    if let Some((_, flags, mode)) = shard.shared.scripts.get(&sha) {
        return Ok((sha, flags, mode));
    }
    let flags = shebang_flags(body)?;
    shard_vm(shard)?.function(&sha, body)?;
    shard.shared.scripts.insert(sha, body.clone(), flags);
    Ok((sha, flags, MODE_UNKNOWN))
}

/// A script to run on one shard without locking the others (see
/// [`eval`]): sent there as [`crate::shard::Op::Script`].
#[derive(Debug)]
pub struct FastScript {
    sha: [u8; 40],
    body: Bytes,
    /// The script's arguments: KEYS then ARGV.
    args: Vec<Bytes>,
    numkeys: usize,
    read_only: bool,
    db: u16,
    proto: Proto,
    client_id: u64,
    repl: crate::cmd::repl::ReplClient,
}

impl FastScript {
    fn new(
        client: &ClientState,
        sha: [u8; 40],
        body: &Bytes,
        a: &[Bytes],
        numkeys: usize,
        read_only: bool,
    ) -> FastScript {
        FastScript {
            sha,
            body: body.clone(),
            args: a[3..].to_vec(),
            numkeys,
            read_only,
            db: client.db,
            proto: client.proto,
            client_id: client.id,
            repl: client.repl.clone(),
        }
    }
}

/// EVAL's key count, checked in Redis's order and words.
fn numkeys(a: &[Bytes]) -> Result<usize, &'static str> {
    let n = parse_i64(&a[2]).ok_or(NOT_INT)?;
    if n > a.len() as i64 - 3 {
        return Err("ERR Number of keys can't be greater than number of args");
    }
    if n < 0 {
        return Err("ERR Number of keys can't be negative");
    }
    Ok(n as usize)
}

/// A SHA1 argument (EVALSHA, SCRIPT EXISTS), lowercased (none: not 40 characters, so no
/// script can have it).
fn sha_arg(arg: &[u8]) -> Option<[u8; 40]> {
    let mut sha: [u8; 40] = arg.try_into().ok()?;
    sha.make_ascii_lowercase();
    Some(sha)
}

/// Runs an EVAL family command on the network driver's fast path, in
/// line with the pipeline around it, when its script is known to stay on
/// its declared keys (`MODE_LOCAL`) and those all live on this shard:
/// [`run_fast`] here and now, as the op [`eval`] would send to this shard.
/// Redis runs a pipelined script between its neighbours the same way; on
/// the slow path each EVAL was a barrier that flushed the batch before it.
///
/// Returns false, having run and written nothing, for everything else:
/// a script not cached or not yet known local, keys elsewhere, any
/// argument error or refusal (the slow path answers those), and a run
/// that reached for another shard (undone by `run_fast`; from now on the
/// script runs under every lock, starting with this call's rerun).
pub fn try_inline(
    shard: &Shard,
    client: &ClientState,
    spec: &CmdSpec,
    a: &[Bytes],
    out: &mut BytesMut,
) -> bool {
    let Ok(numkeys) = numkeys(a) else {
        return false;
    };
    let sha = if spec.name.starts_with("evalsha") {
        let Some(sha) = sha_arg(&a[1]) else {
            return false;
        };
        sha
    } else {
        sha1_hex(&a[1])
    };
    let Some((body, flags, MODE_LOCAL)) = shard.shared.scripts.get(&sha) else {
        return false;
    };
    if home_shard(&a[3..3 + numkeys], shard.nshards()) != Some(shard.id) {
        return false;
    }
    let ro = spec.name.ends_with("_ro");
    if refusal(shard, client, flags, ro).is_some() {
        return false;
    }
    let read_only = ro || (flags & COMPAT == 0 && flags & NO_WRITES != 0);
    let call = crate::cmd::stats::begin(spec);
    let job = FastScript::new(client, sha, &body, a, numkeys, read_only);
    match run_fast(shard, job) {
        Some(reply) => {
            out.extend_from_slice(&reply);
            call.done(spec, a, &reply);
            true
        }
        None => {
            shard.shared.scripts.set_mode(&sha, MODE_GLOBAL);
            false
        }
    }
}

/// EVAL script numkeys key... arg... (and EVALSHA, EVAL_RO, EVALSHA_RO).
///
/// **Locking.** A script's first run, and every run of one that has
/// touched a key it did not declare or a command spanning shards, holds
/// every shard's lock ([`Run`]): atomic whatever it touches, as on Redis.
/// A script whose runs have touched only its declared keys, all on one
/// shard (`MODE_LOCAL`), runs on that shard alone, inside one typed op
/// ([`run_fast`]): no lock message, no round trip per `redis.call`, and
/// scripts on different shards run in parallel. If such a run reaches
/// for another shard, it stops, its writes are undone from its undo log
/// and it runs again under every lock (as every run of it will from then
/// on); the client sees one run, as on Redis. Only a run that wrote a
/// value too big to log (over 512 elements or 64 KiB) cannot be undone:
/// that `redis.call` fails instead (Redis Cluster refuses undeclared keys
/// the same way).
pub async fn eval(
    shard: &Rc<Shard>,
    client: &ClientState,
    spec: &CmdSpec,
    a: &[Bytes],
    out: &mut BytesMut,
    outer: Option<&Tx>,
) {
    let mut r = Reply::new(out, client.proto);
    let by_sha = spec.name.starts_with("evalsha");
    let ro = spec.name.ends_with("_ro");
    let numkeys = match numkeys(a) {
        Ok(n) => n,
        Err(e) => return r.error(e),
    };
    let (sha, body, flags, mode) = if by_sha {
        let Some(sha) = sha_arg(&a[1]) else {
            return r.error(NOSCRIPT);
        };
        match shard.shared.scripts.get(&sha) {
            Some((body, flags, mode)) => (sha, body, flags, mode),
            None => return r.error(NOSCRIPT),
        }
    } else {
        match load(shard, &a[1]) {
            Ok((sha, flags, mode)) => (sha, a[1].clone(), flags, mode),
            Err(e) => return r.error(&e),
        }
    };
    if let Some(e) = refusal(shard, client, flags, ro) {
        return r.error(&e);
    }
    let read_only = ro || (flags & COMPAT == 0 && flags & NO_WRITES != 0);
    let keys = &a[3..3 + numkeys];
    let home = home_shard(keys, shard.nshards());

    if outer.is_none()
        && mode == MODE_LOCAL
        && let Some(home) = home
    {
        let job = FastScript::new(client, sha, &body, a, numkeys, read_only);
        let op = crate::shard::Op::Script(Box::new(job));
        match crate::shard::dispatch::op_on(shard, None, home, op).await {
            crate::shard::OpReply::Script(Some(reply)) => return r.raw(&reply),
            // It reached for another shard before writing: run it again
            // under every lock, as every run of it will be from now on.
            _ => shard.shared.scripts.set_mode(&sha, MODE_GLOBAL),
        }
    }

    let vm = match shard_vm(shard) {
        Ok(vm) => vm,
        Err(e) => return r.error(&e),
    };
    let f = match vm.function(&sha, &body) {
        Ok(f) => f,
        Err(e) => return r.error(&e),
    };
    let all: Vec<usize> = (0..shard.nshards()).collect();
    let mut own = Tx::unless_held(shard, outer, &all).await;
    if let Some(t) = own.as_mut() {
        t.collect = true;
    }
    let tx = outer.or(own.as_ref()).expect("a transaction is held");
    // Checked again under the locks: a REPLICAOF may have landed meanwhile.
    match refusal(shard, client, flags, ro) {
        Some(e) => r.error(&e),
        None => {
            let mut core = Core::new(shard, &vm, client.id, client.db, read_only, keys);
            core.client.repl = client.repl.clone();
            let mut run = Run { shard, core, tx };
            let result = run.drive(f, keys, &a[3 + numkeys..]).await;
            tx.mute.set(false);
            run.core.finish(result, &sha, &mut r);
            // What this run touched decides how the next is locked.
            if mode != MODE_GLOBAL {
                let learned = if run.core.spread || home.is_none() {
                    MODE_GLOBAL
                } else {
                    MODE_LOCAL
                };
                shard.shared.scripts.set_mode(&sha, learned);
            }
        }
    }
    if let Some(t) = own {
        let entries = std::mem::take(&mut *t.prop.borrow_mut());
        crate::repl::master::emit_all(shard, entries, false);
        t.unlock(shard).await;
    }
}

/// The one shard all of `keys` live on (none: no keys, or several shards).
fn home_shard(keys: &[Bytes], n: usize) -> Option<usize> {
    let first = crate::shard::shard_of(keys.first()?, n);
    keys.iter()
        .all(|k| crate::shard::shard_of(k, n) == first)
        .then_some(first)
}

/// Runs a `MODE_LOCAL` script on this shard, its keys' home, inside one
/// op: no other command runs here meanwhile, and every `redis.call` is
/// served here synchronously. `None` when it reached for another shard
/// before writing anything (the caller runs it again under every lock);
/// nothing was replicated or answered then.
pub fn run_fast(shard: &Shard, job: FastScript) -> Option<bytes::Bytes> {
    let mut out = BytesMut::new();
    let mut r = Reply::new(&mut out, job.proto);
    let vm = match shard_vm(shard) {
        Ok(vm) => vm,
        Err(e) => {
            r.error(&e);
            return Some(out.freeze());
        }
    };
    let f = match vm.function(&job.sha, &job.body) {
        Ok(f) => f,
        Err(e) => {
            r.error(&e);
            return Some(out.freeze());
        }
    };
    let keys = &job.args[..job.numkeys];
    let mut core = Core::new(shard, &vm, job.client_id, job.db, job.read_only, keys);
    core.client.repl = job.repl;
    let mut prop = Vec::new();
    let result = drive_fast(&mut core, f, keys, &job.args[job.numkeys..], &mut prop);
    if matches!(result, Ok(Done::Restart)) {
        core.release();
        return None;
    }
    if core.off_home {
        // It failed a call for reaching beyond its shard after a write.
        shard.shared.scripts.set_mode(&job.sha, MODE_GLOBAL);
    }
    core.finish(result, &job.sha, &mut r);
    crate::repl::master::emit_all(shard, prop, false);
    Some(out.freeze())
}

/// Redis's `scriptPrepareForRun` checks: what a replica or a read-only
/// command refuses before the script starts.
fn refusal(shard: &Shard, client: &ClientState, flags: u32, ro: bool) -> Option<String> {
    let repl = &shard.shared.repl;
    let is_replica = repl.is_replica.load(Ordering::Relaxed);
    let stale = is_replica
        && !shard.serve_stale.get()
        && !client.repl.is_master
        && !crate::cmd::repl::master_link_up(shard);
    if flags & COMPAT != 0 {
        return stale.then(|| crate::cmd::repl::MASTERDOWN.to_string());
    }
    if stale && flags & ALLOW_STALE == 0 {
        return Some("MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to 'no' and 'allow-stale' flag is not set on the script.".into());
    }
    if flags & NO_WRITES == 0 {
        if is_replica && shard.read_only.get() && !client.repl.is_master {
            return Some("READONLY Can not run script with write flag on readonly replica".into());
        }
        if ro {
            return Some("ERR Can not execute a script with write flag using *_ro command.".into());
        }
        if repl.refuse_writes() {
            return Some(crate::repl::master::NOREPLICAS.into());
        }
    }
    None
}

/// What both ways of running a script share: its client, its checks, and
/// what it has touched.
struct Core<'a> {
    shard: &'a Shard,
    vm: &'a Rc<Vm>,
    /// The script's own client: its database (SELECT inside a script does
    /// not move the caller's) and protocol (`redis.setresp`).
    client: ClientState,
    read_only: bool,
    /// A write command has run: later writes skip the checks Redis makes
    /// only before the first (a script is not stopped half done), and a
    /// fast run can no longer start again elsewhere.
    dirty: bool,
    /// The declared keys.
    keys: Vec<Bytes>,
    /// A call touched an undeclared key or spanned shards.
    spread: bool,
    /// A fast run failed a call that needed another shard, after writing.
    off_home: bool,
    /// A fast run's undo log: each key it wrote as it was before its
    /// first write (see [`Core::capture`]), and whether every write so far
    /// could be logged.
    undo: Vec<(u16, Bytes, Option<Entry>)>,
    undoable: bool,
    /// Keyspace events queued before the run began.
    events_mark: usize,
}

/// A `redis.call` that passed the checks.
enum Checked {
    /// The command, and whether it needs a shard other than this one.
    Run(&'static CmdSpec, Vec<Bytes>, bool),
    Fail(String),
}

impl<'a> Core<'a> {
    fn new(
        shard: &'a Shard,
        vm: &'a Rc<Vm>,
        client_id: u64,
        db: u16,
        read_only: bool,
        keys: &[Bytes],
    ) -> Core<'a> {
        let slot = shard.shared.scripts.slot(shard.id);
        slot.kill.store(false, Ordering::SeqCst);
        slot.dirty.store(false, Ordering::SeqCst);
        slot.since
            .store(crate::shard::now_ms().max(1), Ordering::SeqCst);
        vm.run.resp3.set(false);
        vm.run.repl.set(3);
        let mut client = ClientState::new(client_id);
        client.db = db;
        Core {
            shard,
            vm,
            client,
            read_only,
            dirty: false,
            keys: keys.to_vec(),
            spread: false,
            off_home: false,
            undo: Vec::new(),
            undoable: true,
            events_mark: shard.events.borrow().len(),
        }
    }

    /// Sets KEYS and ARGV and starts the script's coroutine, with the
    /// hook that lets SCRIPT KILL stop it.
    fn start(
        &self,
        f: &mlua::Function,
        keys: &[Bytes],
        argv: &[Bytes],
    ) -> mlua::Result<mlua::Thread> {
        let lua = &self.vm.lua;
        f.set_environment(self.vm.env.clone())?;
        let g = lua.globals();
        let strings = |items: &[Bytes]| -> mlua::Result<mlua::Table> {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, b) in items.iter().enumerate() {
                t.raw_set(i + 1, lua.create_string(b)?)?;
            }
            Ok(t)
        };
        g.raw_set("KEYS", strings(keys)?)?;
        g.raw_set("ARGV", strings(argv)?)?;
        let shared = self.shard.shared.clone();
        let me = self.shard.id;
        self.vm.thread(|lua| {
            let th = lua.create_thread(self.vm.runner.clone())?;
            th.set_hook(
                HookTriggers::new().every_nth_instruction(KILL_CHECK_EVERY),
                move |_, _| {
                    if shared.scripts.slot(me).kill.load(Ordering::Relaxed) {
                        Err(mlua::Error::runtime(
                            "Script killed by user with SCRIPT KILL...",
                        ))
                    } else {
                        Ok(VmState::Continue)
                    }
                },
            )?;
            Ok(th)
        })
    }

    /// Resumes the coroutine with `input`: the script's end, or the
    /// arguments of its next `redis.call` (`Err` carries the end).
    fn step(&self, th: &mlua::Thread, input: MultiValue) -> mlua::Result<Result<Vec<Value>, Done>> {
        let mut vals = th.resume::<MultiValue>(input)?.into_vec();
        if th.status() != ThreadStatus::Resumable {
            // run(f) answered (ok, value).
            let ok = matches!(vals.first(), Some(Value::Boolean(true)));
            let v = if vals.len() > 1 {
                vals.swap_remove(1)
            } else {
                Value::Nil
            };
            return Ok(Err(if ok { Done::Value(v) } else { Done::Error(v) }));
        }
        if !matches!(vals.first(), Some(Value::LightUserData(m)) if *m == MARK) {
            // A bare coroutine.yield in the script's own body.
            let t = vm::err_table(
                &self.vm.lua,
                b"attempt to yield across metamethod/C-call boundary",
                false,
            )?;
            return Ok(Err(Done::Error(t)));
        }
        // (MARK, raise, count, {args}) or (MARK, raise, count, false, args...)
        let n = match vals.get(2) {
            Some(Value::Integer(n)) => *n as usize,
            Some(Value::Number(n)) => *n as usize,
            _ => 0,
        };
        if let Some(Value::Table(t)) = vals.get(3) {
            let mut args = Vec::with_capacity(n);
            for i in 1..=n {
                args.push(t.raw_get::<Value>(i)?);
            }
            return Ok(Ok(args));
        }
        let mut args: Vec<Value> = vals.drain(4.min(vals.len())..).collect();
        args.resize(n, Value::Nil);
        Ok(Ok(args))
    }

    /// Redis's `scriptCall` checks on one `redis.call`, as its
    /// `luaRedisGenericCommand` words them.
    fn check(&mut self, lua_args: &[Value]) -> Checked {
        let fail = |m: &str| Checked::Fail(m.to_string());
        if lua_args.is_empty() {
            return fail("Please specify at least one argument for this redis lib call");
        }
        let mut args = Vec::with_capacity(lua_args.len());
        for v in lua_args {
            match vm::arg_bytes(v) {
                Some(b) => args.push(b),
                None => return fail("Lua redis lib command arguments must be strings or integers"),
            }
        }
        let Some(spec) = crate::cmd::find(&args[0]) else {
            return fail("Unknown Redis command called from script");
        };
        let n = args.len() as i32;
        if (spec.arity > 0 && n != spec.arity) || n < -spec.arity {
            return fail("Wrong number of args calling Redis command from script");
        }
        if spec.flags.contains(&"noscript") || !allowed_in_script(spec, &args) {
            return fail("This Redis command is not allowed from script");
        }
        let shard = self.shard;
        if crate::cmd::repl::stale_refused(shard, &self.client, spec, &args) {
            return fail("Can not execute the command on a stale replica");
        }
        let writes = spec.is_write();
        if self.read_only && (writes || crate::cmd::pause::may_replicate(spec)) {
            return fail("Write commands are not allowed from read-only scripts.");
        }
        if writes && !self.dirty {
            if crate::cmd::repl::readonly_refused(shard, &self.client, spec) {
                return Checked::Fail(format!("-{}", crate::cmd::repl::READONLY));
            }
            if shard.shared.repl.refuse_writes() {
                return Checked::Fail(format!("-{}", crate::repl::master::NOREPLICAS));
            }
        }
        // Touching anything but the declared keys, or a command spanning
        // shards, makes the script one that locks every shard; a fast run
        // must stop at a call needing another shard.
        let n = shard.nshards();
        let (spreads, away) = match crate::cmd::route(spec, &args, shard.id, n) {
            Route::Global | Route::Multi => (true, true),
            Route::Conn => (false, false),
            Route::Shard(s) => {
                let keyed = matches!(spec.kind, Kind::Keyed(..));
                let undeclared = keyed
                    && spec
                        .key_indices(&args)
                        .any(|i| !self.keys.iter().any(|k| *k == args[i]));
                (undeclared, keyed && s != shard.id)
            }
        };
        self.spread |= spreads;
        self.client.proto = if self.vm.run.resp3.get() {
            Proto::Resp3
        } else {
            Proto::Resp2
        };
        Checked::Run(spec, args, away)
    }

    /// Whether `spec` changes the dataset or the stream.
    fn writes(spec: &CmdSpec) -> bool {
        spec.is_write()
            || crate::cmd::pause::may_replicate(spec)
            || crate::repl::master::replicates(spec)
    }

    /// Before a fast run's write: logs each key the command names, as it
    /// is now, unless already logged, so [`Core::rollback`] can put it
    /// back. A value too big to copy cheaply, or a command that writes
    /// elsewhere than its keys (MOVE, COPY ... DB), makes the run one
    /// that cannot be undone.
    fn capture(&mut self, spec: &CmdSpec, args: &[Bytes]) {
        if !self.undoable || !Self::writes(spec) {
            return;
        }
        if matches!(spec.name, "move" | "copy") {
            self.undoable = false;
            return;
        }
        let db = self.client.db;
        let now = self.shard.now();
        let mut ks = self.shard.ks.borrow_mut();
        let (d, _) = ks.db(db as usize);
        for i in spec.key_indices(args) {
            let key = &args[i];
            if self.undo.iter().any(|(b, k, _)| *b == db && k == key) {
                continue;
            }
            let before = d.peek(key, now).cloned();
            if before.as_ref().is_some_and(|e| too_big_to_copy(&e.value)) {
                self.undoable = false;
                return;
            }
            self.undo.push((db, key.clone(), before));
        }
    }

    /// Puts back every key a fast run wrote, newest first, and drops the
    /// keyspace events it raised (those of keys that expired meanwhile
    /// stay: they did expire). What it would have replicated was never
    /// emitted.
    fn rollback(&mut self) {
        let mut ks = self.shard.ks.borrow_mut();
        for (db, key, before) in self.undo.drain(..).rev() {
            let (d, _) = ks.db(db as usize);
            match before {
                Some(e) => d.insert(&key, e),
                None => {
                    d.remove(&key);
                }
            }
        }
        let mark = self.events_mark;
        let mut i = 0;
        self.shard.events.borrow_mut().retain(|e| {
            i += 1;
            i <= mark || e.event == "expired"
        });
    }

    /// Records a write about to run (SCRIPT KILL's UNKILLABLE).
    fn wrote(&mut self, spec: &CmdSpec) {
        if Self::writes(spec) {
            self.dirty = true;
            self.shard
                .shared
                .scripts
                .slot(self.shard.id)
                .dirty
                .store(true, Ordering::SeqCst);
        }
    }

    /// A reply as the script sees it: `(ok, value)`.
    fn answer(&self, out: &[u8]) -> mlua::Result<(bool, Value)> {
        let mut pos = 0;
        let v = vm::reply_to_lua(&self.vm.lua, out, &mut pos)?;
        Ok((out.first() != Some(&b'-'), v))
    }

    fn fail(&self, msg: &str) -> mlua::Result<(bool, Value)> {
        Ok((false, vm::err_table(&self.vm.lua, msg.as_bytes(), false)?))
    }

    /// Marks the shard as running no script.
    fn release(&self) -> bool {
        let slot = self.shard.shared.scripts.slot(self.shard.id);
        let killed = slot.kill.swap(false, Ordering::SeqCst);
        slot.since.store(0, Ordering::SeqCst);
        slot.dirty.store(false, Ordering::SeqCst);
        slot.lua_memory
            .store(self.vm.lua.used_memory() as u64, Ordering::Relaxed);
        killed
    }

    /// Writes the script's reply and ends the run.
    fn finish(&self, result: mlua::Result<Done>, sha: &[u8; 40], r: &mut Reply<'_>) {
        let killed = self.release();
        // Lowercase hex, so always UTF-8.
        let sha = std::str::from_utf8(sha).unwrap_or_default();
        match result {
            _ if killed => r.error("ERR Script killed by user with SCRIPT KILL..."),
            Ok(Done::Value(v)) => vm::lua_to_reply(r, &v, self.vm.run.resp3.get(), 0),
            Ok(Done::Error(t)) => r.error(&error_message(&t, sha)),
            Ok(Done::Restart) => unreachable!("a restart is handled by the fast path"),
            Err(e) => {
                let msg: String = e.to_string().chars().take(100).collect();
                r.error(&format!("ERR Error running script {sha}, {msg}"))
            }
        }
    }
}

/// A run under every shard's lock, its calls served wherever their keys
/// live (awaiting other shards).
struct Run<'a> {
    shard: &'a Rc<Shard>,
    core: Core<'a>,
    tx: &'a Tx,
}

/// Instructions between two checks for SCRIPT KILL.
const KILL_CHECK_EVERY: u32 = 10_000;

impl Run<'_> {
    /// Runs the script's coroutine to its end, serving each `redis.call`.
    async fn drive(
        &mut self,
        f: mlua::Function,
        keys: &[Bytes],
        argv: &[Bytes],
    ) -> mlua::Result<Done> {
        let th = self.core.start(&f, keys, argv)?;
        let mut input = MultiValue::from_vec(vec![Value::Function(f)]);
        loop {
            let lua_args = match self.core.step(&th, std::mem::take(&mut input))? {
                Ok(args) => args,
                Err(done) => {
                    self.core.vm.ran(th);
                    return Ok(done);
                }
            };
            let (ok, v) = match self.core.check(&lua_args) {
                Checked::Fail(m) => self.core.fail(&m)?,
                Checked::Run(spec, args, _) => {
                    let db = self.core.client.db;
                    crate::cmd::monitor::feed(
                        self.shard,
                        spec,
                        db,
                        crate::cmd::monitor::LUA,
                        &args,
                    );
                    self.core.wrote(spec);
                    self.tx.mute.set(self.core.vm.run.repl.get() & 2 == 0);
                    let mut out = BytesMut::new();
                    crate::cmd::multi::run_held(
                        self.shard,
                        &mut self.core.client,
                        self.tx,
                        spec,
                        &args,
                        &mut out,
                    )
                    .await;
                    self.tx.mute.set(false);
                    self.core.answer(&out)?
                }
            };
            input = MultiValue::from_vec(vec![Value::Boolean(ok), v]);
        }
    }
}

/// The fast path's coroutine loop: every call is served here, at once.
fn drive_fast(
    core: &mut Core<'_>,
    f: mlua::Function,
    keys: &[Bytes],
    argv: &[Bytes],
    prop: &mut Vec<crate::repl::master::PEntry>,
) -> mlua::Result<Done> {
    let th = core.start(&f, keys, argv)?;
    let mut input = MultiValue::from_vec(vec![Value::Function(f)]);
    // A run that restarts on the slow path shows its calls from there.
    let shown = core.shard.monitor_out.borrow().len();
    let unshow = |core: &Core<'_>| {
        let mut out = core.shard.monitor_out.borrow_mut();
        let at = shown.min(out.len());
        out.truncate(at);
    };
    loop {
        let lua_args = match core.step(&th, std::mem::take(&mut input))? {
            Ok(args) => args,
            Err(done) => {
                core.vm.ran(th);
                return Ok(done);
            }
        };
        let (ok, v) = match core.check(&lua_args) {
            Checked::Fail(m) => core.fail(&m)?,
            Checked::Run(_, _, true) if !core.dirty => {
                unshow(core);
                return Ok(Done::Restart);
            }
            Checked::Run(_, _, true) if core.undoable => {
                unshow(core);
                core.rollback();
                return Ok(Done::Restart);
            }
            Checked::Run(_, _, true) => {
                core.off_home = true;
                core.fail(OFF_HOME)?
            }
            Checked::Run(spec, args, false) => {
                core.capture(spec, &args);
                core.wrote(spec);
                let shard = core.shard;
                crate::cmd::monitor::feed(
                    shard,
                    spec,
                    core.client.db,
                    crate::cmd::monitor::LUA,
                    &args,
                );
                let mut out = BytesMut::new();
                match crate::cmd::route(spec, &args, shard.id, shard.nshards()) {
                    Route::Conn => crate::cmd::server::exec_conn(
                        shard,
                        &mut core.client,
                        spec,
                        &args,
                        &mut out,
                    ),
                    _ => {
                        let mut p = Vec::new();
                        let blocked = crate::cmd::exec_local_into(
                            shard,
                            spec,
                            core.client.db,
                            core.client.proto,
                            &args,
                            &mut out,
                            &mut p,
                        );
                        if core.vm.run.repl.get() & 2 != 0 {
                            prop.extend(p);
                        }
                        if blocked {
                            let mut r = Reply::new(&mut out, core.client.proto);
                            if eq_ic(&args[0], "blmove") || eq_ic(&args[0], "brpoplpush") {
                                r.null()
                            } else {
                                r.null_array()
                            }
                        }
                    }
                }
                core.answer(&out)?
            }
        };
        input = MultiValue::from_vec(vec![Value::Boolean(ok), v]);
    }
}

/// Values a fast run copies into its undo log before writing them: up to
/// 512 elements or 64 KiB (a bigger one makes the run one that cannot be
/// undone, so that it copies nothing big per run).
fn too_big_to_copy(v: &crate::shard::keyspace::Value) -> bool {
    use crate::shard::keyspace::Value as V;
    match v {
        V::Str(s) => s.len() > 64 << 10,
        V::List(l) => l.len() > 512,
        V::Hash(h) => h.len() > 512,
        V::Set(x) => x.len() > 512,
        V::ZSet(z) => z.len() > 512,
    }
}

/// The error of a `redis.call` a script run on its keys' shard alone
/// makes to a key elsewhere, after a write too big to undo.
const OFF_HOME: &str = "Script attempted to access a key it did not declare, on another shard, after a write too big to undo: tether ran it on its declared keys' shard alone, as earlier runs touched nothing else; it will hold every shard from its next run on. Declare every key in KEYS";

/// Commands Redis 7.0 flags `noscript` by subcommand, or that only make
/// sense on a real connection, which the table's flags do not say.
fn allowed_in_script(spec: &CmdSpec, args: &[Bytes]) -> bool {
    match spec.name {
        "client" => args.get(1).is_some_and(|s| {
            [
                "getname", "id", "info", "list", "setname", "getredir", "help",
            ]
            .iter()
            .any(|n| eq_ic(s, n))
        }),
        "hello" | "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe"
        | "sunsubscribe" | "monitor" | "sync" | "psync" | "replconf" | "auth" | "reset"
        | "quit" | "wait" | "failover" => false,
        _ => true,
    }
}

/// How a script ended.
enum Done {
    Value(Value),
    /// The error table the handler built.
    Error(Value),
    /// A fast run reached for another shard before writing: run it again
    /// under every lock.
    Restart,
}

/// The error reply of a failed script, as Redis's `luaCallFunction`
/// words it: the message, then where in the script it was raised.
fn error_message(t: &Value, sha: &str) -> String {
    let Value::Table(t) = t else {
        return "ERR unknown error".into();
    };
    let msg = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => s.to_string_lossy(),
        Ok(Value::Integer(i)) => i.to_string(),
        Ok(Value::Number(n)) => n.to_string(),
        _ => "ERR unknown error".into(),
    };
    let source = t.raw_get::<Option<String>>("source").ok().flatten();
    let line = match t.raw_get::<Value>("line") {
        Ok(Value::Integer(i)) => Some(i.to_string()),
        Ok(Value::Number(n)) => Some((n as i64).to_string()),
        Ok(Value::String(s)) => Some(s.to_string_lossy()),
        _ => None,
    };
    match (source, line) {
        (Some(s), Some(l)) => format!("{msg} script: {sha}, on {s}:{l}."),
        _ => msg,
    }
}

/// SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP.
pub fn script_cmd(shard: &Shard, a: &[Bytes], r: &mut Reply<'_>) {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    let arity_ok = match sub.as_str() {
        "load" => a.len() == 3,
        "kill" | "help" => a.len() == 2,
        "exists" => a.len() >= 3,
        "flush" => a.len() >= 2,
        _ => true,
    };
    if !arity_ok {
        return r.error(&format!(
            "ERR wrong number of arguments for 'script|{sub}' command"
        ));
    }
    let cache = &shard.shared.scripts;
    match sub.as_str() {
        "help" => r.lines(&[
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
            "HELP",
            "    Prints this help.",
        ]),
        "flush" => {
            let ok =
                a.len() == 2 || (a.len() == 3 && (eq_ic(&a[2], "sync") || eq_ic(&a[2], "async")));
            if !ok {
                return r.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            cache.flush();
            r.ok()
        }
        "exists" => {
            r.array(a.len() - 2);
            for s in &a[2..] {
                let found = sha_arg(s).is_some_and(|sha| cache.get(&sha).is_some());
                r.int(found as i64);
            }
        }
        "load" => match load(shard, &a[2]) {
            Ok((sha, _, _)) => r.bulk(&sha),
            Err(e) => r.error(&e),
        },
        "kill" => {
            // A shard runs one script at a time; several shards may each
            // run one (scripts on different shards' keys).
            let running: Vec<&Running> = cache
                .running
                .iter()
                .filter(|s| s.since.load(Ordering::SeqCst) != 0)
                .collect();
            if running.is_empty() {
                r.error("NOTBUSY No scripts in execution right now.")
            } else if running.iter().any(|s| s.dirty.load(Ordering::SeqCst)) {
                r.error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")
            } else {
                for s in running {
                    s.kill.store(true, Ordering::SeqCst);
                }
                r.ok()
            }
        }
        _ => r.error(&crate::cmd::unknown_subcommand(&a[1], "script")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_parse_as_redis_does() {
        assert_eq!(shebang_flags(b"return 1"), Ok(COMPAT));
        assert_eq!(shebang_flags(b"#!lua\nreturn 1"), Ok(0));
        assert_eq!(
            shebang_flags(b"#!lua flags=no-writes,allow-stale\nreturn 1"),
            Ok(NO_WRITES | ALLOW_STALE)
        );
        assert_eq!(
            shebang_flags(b"#!lua"),
            Err("ERR Invalid script shebang".into())
        );
        assert_eq!(
            shebang_flags(b"#!py\n"),
            Err("ERR Unexpected engine in script shebang: #!py".into())
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=bad\n"),
            Err("ERR Unexpected flag in script shebang: bad".into())
        );
        assert_eq!(
            shebang_flags(b"#!lua x=1\n"),
            Err("ERR Unknown lua shebang option: x=1".into())
        );
        assert_eq!(shebang_len(b"#!lua\nreturn 1"), 5);
    }
}
