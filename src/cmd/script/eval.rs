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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use mlua::thread::ThreadStatus;
use mlua::{HookTriggers, MultiValue, Value, VmState};

use super::vm::{self, MARK, Vm};
use crate::cmd::{ClientState, CmdSpec, Kind, NOT_INT, eq_ic, parse_i64};
use crate::resp::{Proto, Reply};
use crate::shard::Shard;
use crate::shard::dispatch::Tx;

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

pub static COMMANDS: [CmdSpec; 5] = [
    eval_row!(
        "eval",
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys"
        ]
    ),
    eval_row!(
        "evalsha",
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys"
        ]
    ),
    eval_row!(
        "eval_ro",
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "no_mandatory_keys",
            "readonly"
        ]
    ),
    eval_row!(
        "evalsha_ro",
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "no_mandatory_keys",
            "readonly"
        ]
    ),
    CmdSpec {
        name: "script",
        arity: -2,
        flags: &[],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Global,
        stat: crate::cmd::StatSlot::new(),
    },
];

/// A cached script.
pub struct Script {
    pub body: Bytes,
    pub flags: u32,
}

/// The server-wide script cache and the state of the running script.
#[derive(Default)]
pub struct Cache {
    scripts: RwLock<HashMap<[u8; 40], Script>>,
    /// Moved on by SCRIPT FLUSH: each shard then builds a fresh Lua state.
    generation: AtomicU64,
    /// When the running script started (ms since the epoch), 0 if none.
    running_since: AtomicU64,
    /// The running script has written: SCRIPT KILL may not stop it.
    dirty: AtomicBool,
    /// SCRIPT KILL asked the running script to stop.
    kill: AtomicBool,
    /// Memory of every shard's Lua state, by shard (INFO).
    lua_memory: RwLock<Vec<u64>>,
    /// Bytes of the cached bodies (INFO's `used_memory_scripts_eval`).
    body_bytes: AtomicU64,
}

impl Cache {
    fn get(&self, sha: &[u8; 40]) -> Option<(Bytes, u32)> {
        self.scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
            .map(|s| (s.body.clone(), s.flags))
    }

    fn insert(&self, sha: [u8; 40], body: Bytes, flags: u32) {
        let mut m = self.scripts.write().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(e) = m.entry(sha) {
            self.body_bytes
                .fetch_add(body.len() as u64 + 40, Ordering::Relaxed);
            e.insert(Script { body, flags });
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
        self.lua_memory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .sum()
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    fn set_lua_memory(&self, shard: usize, bytes: u64) {
        let mut v = self.lua_memory.write().unwrap_or_else(|e| e.into_inner());
        if v.len() <= shard {
            v.resize(shard + 1, 0);
        }
        v[shard] = bytes;
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
    let hex = sha1_smol::Sha1::from(body).digest().to_string();
    let mut out = [0u8; 40];
    out.copy_from_slice(hex.as_bytes());
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
fn load(shard: &Shard, body: &Bytes) -> Result<([u8; 40], u32), String> {
    let sha = sha1_hex(body);
    if let Some((_, flags)) = shard.shared.scripts.get(&sha) {
        return Ok((sha, flags));
    }
    let flags = shebang_flags(body)?;
    shard_vm(shard)?.function(&sha, body)?;
    shard.shared.scripts.insert(sha, body.clone(), flags);
    Ok((sha, flags))
}

/// EVAL script numkeys key... arg... (and EVALSHA, EVAL_RO, EVALSHA_RO).
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
    let Some(numkeys) = parse_i64(&a[2]) else {
        return r.error(NOT_INT);
    };
    if numkeys > a.len() as i64 - 3 {
        return r.error("ERR Number of keys can't be greater than number of args");
    }
    if numkeys < 0 {
        return r.error("ERR Number of keys can't be negative");
    }
    let (sha, body, flags) = if by_sha {
        if a[1].len() != 40 {
            return r.error(NOSCRIPT);
        }
        let mut sha = [0u8; 40];
        sha.copy_from_slice(&a[1].to_ascii_lowercase());
        match shard.shared.scripts.get(&sha) {
            Some((body, flags)) => (sha, body, flags),
            None => return r.error(NOSCRIPT),
        }
    } else {
        match load(shard, &a[1]) {
            Ok((sha, flags)) => (sha, a[1].clone(), flags),
            Err(e) => return r.error(&e),
        }
    };
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
    // Checked under the locks: a REPLICAOF may have landed while waiting.
    match refusal(shard, client, flags, ro) {
        Some(e) => r.error(&e),
        None => {
            let read_only = ro || (flags & COMPAT == 0 && flags & NO_WRITES != 0);
            let keys = &a[3..3 + numkeys as usize];
            let argv = &a[3 + numkeys as usize..];
            let sha_str = String::from_utf8_lossy(&sha).into_owned();
            let mut run = Run {
                shard,
                vm: &vm,
                tx,
                client: ClientState::new(client.id),
                read_only,
                dirty: false,
            };
            run.client.db = client.db;
            run.client.repl = client.repl.clone();
            run.go(f, &sha_str, keys, argv, &mut r).await;
            shard
                .shared
                .scripts
                .set_lua_memory(shard.id, vm.lua.used_memory() as u64);
        }
    }
    if let Some(t) = own {
        let entries = std::mem::take(&mut *t.prop.borrow_mut());
        crate::repl::master::emit_all(shard, entries, false);
        t.unlock(shard).await;
    }
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

/// One script run: the driver of its coroutine.
struct Run<'a> {
    shard: &'a Rc<Shard>,
    vm: &'a Rc<Vm>,
    tx: &'a Tx,
    /// The script's own client: its database (SELECT inside a script does
    /// not move the caller's) and protocol (`redis.setresp`).
    client: ClientState,
    read_only: bool,
    /// A write command has run: later writes skip the checks Redis makes
    /// only before the first (a script is not stopped half done).
    dirty: bool,
}

/// Instructions between two checks for SCRIPT KILL.
const KILL_CHECK_EVERY: u32 = 10_000;

impl Run<'_> {
    async fn go(
        &mut self,
        f: mlua::Function,
        sha: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        r: &mut Reply<'_>,
    ) {
        let cache = &self.shard.shared.scripts;
        cache.kill.store(false, Ordering::SeqCst);
        cache.dirty.store(false, Ordering::SeqCst);
        cache
            .running_since
            .store(crate::shard::now_ms().max(1), Ordering::SeqCst);
        self.vm.run.resp3.set(false);
        self.vm.run.repl.set(3);
        let result = self.drive(f, keys, argv).await;
        let killed = cache.kill.swap(false, Ordering::SeqCst);
        cache.running_since.store(0, Ordering::SeqCst);
        cache.dirty.store(false, Ordering::SeqCst);
        self.tx.mute.set(false);
        match result {
            _ if killed => r.error("ERR Script killed by user with SCRIPT KILL..."),
            Ok(Done::Value(v)) => vm::lua_to_reply(r, &v, self.vm.run.resp3.get(), 0),
            Ok(Done::Error(t)) => r.error(&error_message(&t, sha)),
            Err(e) => {
                let msg: String = e.to_string().chars().take(100).collect();
                r.error(&format!("ERR Error running script {sha}, {msg}"))
            }
        }
        // Redis steps the collector every 50 scripts; a step per script
        // keeps the state small at little cost.
        let _ = self.vm.lua.gc_step();
    }

    /// Runs the script's coroutine to its end, serving each `redis.call`.
    async fn drive(
        &mut self,
        f: mlua::Function,
        keys: &[Bytes],
        argv: &[Bytes],
    ) -> mlua::Result<Done> {
        let lua = &self.vm.lua;
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
        let th = lua.create_thread(self.vm.runner.clone())?;
        let shared = self.shard.shared.clone();
        th.set_hook(
            HookTriggers::new().every_nth_instruction(KILL_CHECK_EVERY),
            move |_, _| {
                if shared.scripts.kill.load(Ordering::Relaxed) {
                    Err(mlua::Error::runtime(
                        "Script killed by user with SCRIPT KILL...",
                    ))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )?;
        let mut input = MultiValue::from_vec(vec![Value::Function(f)]);
        loop {
            let got: MultiValue = th.resume(input)?;
            let mut vals = got.into_vec();
            match th.status() {
                ThreadStatus::Resumable => {}
                _ => {
                    // run(f) answered (ok, value).
                    let ok = matches!(vals.first(), Some(Value::Boolean(true)));
                    let v = if vals.len() > 1 {
                        vals.swap_remove(1)
                    } else {
                        Value::Nil
                    };
                    return Ok(if ok { Done::Value(v) } else { Done::Error(v) });
                }
            }
            let is_call = matches!(vals.first(), Some(Value::LightUserData(m)) if *m == MARK);
            if !is_call {
                // A bare coroutine.yield in the script's own body.
                let t = vm::err_table(
                    lua,
                    b"attempt to yield across metamethod/C-call boundary",
                    false,
                )?;
                return Ok(Done::Error(t));
            }
            let (ok, v) = self.call(&vals[2..]).await?;
            input = MultiValue::from_vec(vec![Value::Boolean(ok), v]);
        }
    }

    /// Serves one `redis.call`/`redis.pcall`: `(true, reply)` or `(false,
    /// error table)`, as Redis's `luaRedisGenericCommand` and `scriptCall`.
    async fn call(&mut self, lua_args: &[Value]) -> mlua::Result<(bool, Value)> {
        let lua = &self.vm.lua;
        let fail = |msg: &str| -> mlua::Result<(bool, Value)> {
            Ok((false, vm::err_table(lua, msg.as_bytes(), false)?))
        };
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
                return fail(&format!("-{}", crate::cmd::repl::READONLY));
            }
            if shard.shared.repl.refuse_writes() {
                return fail(&format!("-{}", crate::repl::master::NOREPLICAS));
            }
        }
        if writes {
            self.dirty = true;
            shard.shared.scripts.dirty.store(true, Ordering::SeqCst);
        }
        self.client.proto = if self.vm.run.resp3.get() {
            Proto::Resp3
        } else {
            Proto::Resp2
        };
        self.tx.mute.set(self.vm.run.repl.get() & 2 == 0);
        let mut out = BytesMut::new();
        crate::cmd::multi::run_held(shard, &mut self.client, self.tx, spec, &args, &mut out).await;
        self.tx.mute.set(false);
        let mut pos = 0;
        let v = vm::reply_to_lua(lua, &out, &mut pos)?;
        let is_err = out.first() == Some(&b'-');
        Ok((!is_err, v))
    }
}

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
                let found = s.len() == 40 && {
                    let mut sha = [0u8; 40];
                    sha.copy_from_slice(&s.to_ascii_lowercase());
                    cache.get(&sha).is_some()
                };
                r.int(found as i64);
            }
        }
        "load" => match load(shard, &a[2]) {
            Ok((sha, _)) => r.bulk(&sha),
            Err(e) => r.error(&e),
        },
        "kill" => {
            if cache.running_since.load(Ordering::SeqCst) == 0 {
                r.error("NOTBUSY No scripts in execution right now.")
            } else if cache.dirty.load(Ordering::SeqCst) {
                r.error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")
            } else {
                cache.kill.store(true, Ordering::SeqCst);
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
