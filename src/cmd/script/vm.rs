//! The Lua state a shard runs scripts in, and the conversions between Lua
//! values and RESP.
//!
//! Each shard owns one LuaJIT state (a thread-local: one executor per
//! thread), built with the libraries Redis 7.0 gives scripts: base,
//! table, string, math, bit, cjson, cmsgpack and struct, with `redis.*`,
//! a deterministic `math.random`, and the globals locked as Redis locks
//! them (reading a missing global or writing any raises an error).
//! LuaJIT speaks Lua 5.1, as Redis's interpreter does, and unlike PUC Lua
//! 5.1 it can yield across `pcall` and metamethods, which the call path
//! below needs.
//!
//! **How `redis.call` reaches the keyspace.** A script runs as a Lua
//! coroutine. `redis.call(...)` yields its arguments, tagged with
//! [`MARK`], to the Rust driver (`eval::drive`), which runs the command
//! under the script's transaction (possibly on another shard, an async
//! round trip) and resumes the coroutine with `(ok, reply)`. The script
//! sees a plain function call. A user coroutine that calls `redis.call`
//! passes the yield up through the wrapped `coroutine.resume`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Function, LightUserData, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use crate::resp::Reply;

/// Tags a yield as a `redis.call`/`redis.pcall` request. Scripts cannot
/// forge a light userdata (no FFI), so no user value equals it.
pub(super) const MARK: LightUserData = LightUserData(0x7e7e_7e7e as *mut std::ffi::c_void);

/// Redis's `REDIS_LRAND48_MAX` (`INT32_MAX`).
const LRAND48_MAX: i64 = i32::MAX as i64;

/// State the `redis.*` functions change during a run.
#[derive(Default)]
pub(super) struct RunState {
    /// `redis.setresp(3)`: commands answer the script in RESP3.
    pub resp3: Cell<bool>,
    /// `redis.set_repl` flags (`REPL_AOF` 1 | `REPL_REPLICA` 2).
    pub repl: Cell<u8>,
}

/// A shard's Lua state and the functions compiled in it.
pub(super) struct Vm {
    pub lua: Lua,
    /// The coroutine body: `run(f)` calls `f` under the error handler and
    /// answers `(true, result)` or `(false, error table)`.
    pub runner: Function,
    /// The script cache generation this state was built for; SCRIPT FLUSH
    /// moves it on and every shard builds a fresh state.
    pub generation: u64,
    /// Compiled scripts by SHA1 (lowercase hex).
    pub funcs: RefCell<HashMap<[u8; 40], Function>>,
    pub run: Rc<RunState>,
    /// The environment every script runs in (see `LOCKDOWN`).
    pub env: mlua::Table,
    /// A finished coroutine kept for the next run: creating one per run
    /// (a Lua thread, its stack, its hook) cost more than the run itself.
    spare: RefCell<Option<mlua::Thread>>,
    /// Runs since the collector was last stepped (see [`Vm::ran`]).
    runs: Cell<u32>,
}

/// `lrand48` as Redis's `redisLrand48`: the 48-bit LCG, its top 31 bits.
fn lrand48(state: &Cell<u64>) -> i64 {
    let x = state.get().wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB) & ((1 << 48) - 1);
    state.set(x);
    (x >> 17) as i64
}

/// A Lua number as an `int` argument (`luaL_checkint`: truncated).
fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Number(n) => Some(*n as i32 as i64),
        Value::String(s) => s
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| n as i32 as i64),
        _ => None,
    }
}

/// The Lua side of the API: `redis.call`/`pcall`, the error handler that
/// records where a script failed, the `pcall` that unwraps error tables,
/// and the coroutine functions that pass `redis.call` yields up.
const PRELUDE: &str = r#"
local MARK, redis, raw = ...
local getinfo = debug.getinfo
local yield, co_resume, co_create = coroutine.yield, coroutine.resume, coroutine.create
local error, type, tostring, select, rawget, rawset, xpcall, pcall =
      error, type, tostring, select, rawget, rawset, xpcall, pcall
local sfind, ssub = string.find, string.sub

-- The arguments travel with their count, as values when they are few
-- (no table to build and collect per call), else as a table: a script
-- may pass thousands (unpack), more than a yield's values may number.
local function call(raise, n, ...)
  if n <= 8 then return yield(MARK, raise, n, false, ...) end
  return yield(MARK, raise, n, {...})
end

function redis.call(...)
  local ok, v = call(true, select('#', ...), ...)
  if not ok then error(v) end
  return v
end

function redis.pcall(...)
  local _, v = call(false, select('#', ...), ...)
  return v
end

-- luaPushErrorBuff: "-CODE msg" keeps its code, anything else gets ERR.
local function err_table(s)
  local code, msg
  if ssub(s, 1, 1) == '-' then
    local sp = sfind(s, ' ', 1, true)
    if sp then code, msg = ssub(s, 2, sp - 1), ssub(s, sp + 1)
    else code, msg = 'ERR', ssub(s, 2) end
  else
    code, msg = 'ERR', s
  end
  msg = msg:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. msg}
end

local function raise(msg) error(err_table(msg)) end

function redis.error_reply(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then
    return err_table('wrong number or type of arguments')
  end
  if ssub(s, 1, 1) ~= '-' then s = '-' .. s end
  return err_table(s)
end

function redis.status_reply(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then
    return err_table('wrong number or type of arguments')
  end
  return {ok = s}
end

function redis.sha1hex(...)
  if select('#', ...) ~= 1 then raise('wrong number of arguments') end
  return raw.sha1hex((...))
end

function redis.log(...)
  local n = select('#', ...)
  if n < 2 then raise('redis.log() requires two arguments or more.') end
  local level = ...
  if type(level) ~= 'number' and tonumber(level) == nil then
    raise('First argument must be a number (log level).')
  end
  level = tonumber(level)
  if level < 0 or level > 3 then raise('Invalid debug level.') end
  local parts = {}
  for i = 2, n do
    local v = select(i, ...)
    if type(v) == 'string' or type(v) == 'number' then parts[#parts + 1] = v end
  end
  raw.log(level, table.concat(parts, ' '))
end

function redis.setresp(...)
  if select('#', ...) ~= 1 then raise('redis.setresp() requires one argument.') end
  local v = tonumber((...))
  if v ~= 2 and v ~= 3 then raise('RESP version must be 2 or 3.') end
  raw.setresp(v)
end

function redis.set_repl(...)
  if select('#', ...) ~= 1 then raise('redis.set_repl() requires two arguments.') end
  local v = tonumber((...)) or 0
  if v ~= 0 and v ~= 1 and v ~= 2 and v ~= 3 then
    raise('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.')
  end
  raw.set_repl(v)
end

function redis.acl_check_cmd(...)
  if select('#', ...) == 0 then
    raise('Please specify at least one argument for this redis lib call')
  end
  if not raw.known((...)) then raise('Invalid command passed to redis.acl_check_cmd()') end
  return true
end

function redis.replicate_commands() return true end
function redis.breakpoint() return false end
function redis.debug() end

-- Redis's pcall hands back an error table's message, not the table.
local function unwrap(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type(e) == 'table' then
    local s = e.err
    if type(s) == 'string' or type(s) == 'number' then e = s end
  end
  return false, e
end
rawset(_G, 'pcall', function(...) return unwrap(pcall(...)) end)

-- A user coroutine's redis.call yields to us, not to its resumer.
local function pass(co, ok, ...)
  if ok and select('#', ...) > 0 and (...) == MARK then
    return pass(co, co_resume(co, yield(...)))
  end
  return ok, ...
end
coroutine.resume = function(co, ...) return pass(co, co_resume(co, ...)) end
coroutine.wrap = function(f)
  local co = co_create(f)
  local function ret(ok, ...)
    if ok then return ... end
    error((...), 0)
  end
  return function(...) return ret(pass(co, co_resume(co, ...))) end
end

-- Redis's __redis__err__handler: an error becomes a table with the
-- script line it was raised from (the innermost frame of user code).
local function handler(err)
  local lvl = 2
  local i = getinfo(lvl, 'Sl')
  while i and i.source ~= '@user_script' do
    lvl = lvl + 1
    i = getinfo(lvl, 'Sl')
  end
  if type(err) ~= 'table' then err = {err = 'ERR ' .. tostring(err)} end
  if i then
    rawset(err, 'source', i.source)
    rawset(err, 'line', i.currentline)
  end
  return err
end

return function(f) return xpcall(f, handler) end
"#;

/// Locks what scripts share, as Redis 7.0's read-only tables do. The
/// libraries become read-only proxies; scripts run in an environment
/// (made by the function returned, once per state), empty and read-only,
/// that reads through to the real globals, so a script can neither add a
/// global nor replace one (`redis = ...`), even by `rawset(_G, ...)` or a
/// chunk it compiles. Nothing a run does to it can be seen by the next.
/// `getfenv`, `setfenv` and `newproxy` are gone, as from Debian's Redis.
/// Binary chunks are refused: LuaJIT bytecode is not verified and could
/// break out of the sandbox.
const LOCKDOWN: &str = r#"
local real = _G
local setmetatable, getmetatable, error, tostring, rawset, rawequal, type =
      setmetatable, getmetatable, error, tostring, rawset, rawequal, type
local raw_loadstring, raw_setfenv, raw_getfenv, concat =
      loadstring, setfenv, getfenv, table.concat
local function refuse() error('Attempt to modify a readonly table', 2) end
local protected = setmetatable({}, {__mode = 'k'})
local function lock(t)
  local mt = {__index = t, __newindex = refuse}
  mt.__metatable = setmetatable({}, {__index = mt, __newindex = refuse})
  local p = setmetatable({}, mt)
  protected[p] = true
  return p
end
for _, name in ipairs({'redis', 'string', 'math', 'table', 'bit', 'cjson',
                       'cmsgpack', 'struct', 'coroutine'}) do
  local t = rawget(real, name)
  if t then rawset(real, name, lock(t)) end
end
local env
rawset(real, 'setmetatable', function(t, mt)
  if protected[t] or rawequal(t, real) then
    error('Attempt to modify a readonly table', 0)
  end
  return setmetatable(t, mt)
end)
local function compile(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then
    return nil, 'binary chunks are not accepted'
  end
  local f, e = raw_loadstring(s, name)
  if f then raw_setfenv(f, env) end
  return f, e
end
rawset(real, 'loadstring', compile)
rawset(real, 'load', function(ld, name)
  if type(ld) == 'function' then
    local parts = {}
    while true do
      local p = ld()
      if p == nil or p == '' then break end
      parts[#parts + 1] = p
    end
    ld = concat(parts)
  end
  return compile(ld, name)
end)
rawset(real, 'rawset', function(t, k, v)
  if protected[t] or rawequal(t, real) then
    error('Attempt to modify a readonly table', 0)
  end
  return rawset(t, k, v)
end)
-- Gone from Debian's Redis 7.0.15 (its Lua hardening): a script that
-- could reach a function's environment could unlock it.
rawset(real, 'getfenv', nil)
rawset(real, 'setfenv', nil)
rawset(real, 'newproxy', nil)
setmetatable(real, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __newindex = refuse,
  __metatable = false,
})
return function()
  local mt = {__index = real, __newindex = refuse}
  mt.__metatable = setmetatable({}, {__index = mt, __newindex = refuse})
  env = setmetatable({}, mt)
  protected[env] = true
  rawset(real, '_G', env)
  return env
end
"#;

impl Vm {
    /// Builds a fresh state for cache generation `generation`.
    pub fn new(generation: u64) -> mlua::Result<Vm> {
        // SAFETY: the debug library is loaded only for the error handler,
        // which keeps `debug.getinfo` in a local; the global is removed
        // before any script runs. FFI and JIT control are never loaded.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::BIT | StdLib::DEBUG,
                LuaOptions::new(),
            )
        };
        super::install_wrap(&lua)?;
        super::cjson::install(&lua)?;
        super::cmsgpack::install(&lua)?;
        super::structlib::install(&lua)?;
        let g = lua.globals();
        let run = Rc::new(RunState::default());

        let redis = lua.create_table()?;
        redis.raw_set("REDIS_VERSION", "7.0.15")?;
        redis.raw_set("REDIS_VERSION_NUM", 0x07000f)?;
        for (k, v) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            redis.raw_set(k, v)?;
        }
        g.raw_set("redis", redis.clone())?;

        // The Rust halves of redis.* (checked by the Lua halves).
        let raw = lua.create_table()?;
        raw.raw_set(
            "sha1hex",
            lua.create_function(|lua, v: Value| {
                let bytes = match &v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(_) | Value::Number(_) => {
                        v.to_string().unwrap_or_default().into_bytes()
                    }
                    _ => Vec::new(),
                };
                lua.create_string(sha1_smol::Sha1::from(bytes).digest().to_string())
            })?,
        )?;
        raw.raw_set(
            "log",
            lua.create_function(|_, (level, msg): (i64, mlua::LuaString)| {
                let msg = msg.to_string_lossy();
                match level {
                    0 => log::debug!("{msg}"),
                    1 => log::info!("{msg}"),
                    2 => log::info!("{msg}"),
                    _ => log::warn!("{msg}"),
                }
                Ok(())
            })?,
        )?;
        let r = run.clone();
        raw.raw_set(
            "setresp",
            lua.create_function(move |_, v: i64| {
                r.resp3.set(v == 3);
                Ok(())
            })?,
        )?;
        let r = run.clone();
        raw.raw_set(
            "set_repl",
            lua.create_function(move |_, v: i64| {
                r.repl.set(v as u8);
                Ok(())
            })?,
        )?;
        raw.raw_set(
            "known",
            lua.create_function(|_, v: Value| {
                Ok(match v {
                    Value::String(s) => crate::cmd::find(&s.as_bytes()).is_some(),
                    _ => false,
                })
            })?,
        )?;

        // math.random / randomseed over Redis's lrand48, so a script sees
        // the same sequence as on Redis.
        let math: Table = g.raw_get("math")?;
        let seed = Rc::new(Cell::new(0x1234_ABCD_330E_u64));
        let s = seed.clone();
        super::register(&lua, &math, "random", move |_, args| {
            let r = (lrand48(&s) % LRAND48_MAX) as f64 / LRAND48_MAX as f64;
            let args = args.into_vec();
            let v = match args.len() {
                0 => r,
                1 => {
                    let u =
                        int_arg(&args[0]).ok_or("bad argument #1 to 'random' (number expected)")?;
                    if u < 1 {
                        return Err("bad argument #1 to 'random' (interval is empty)".into());
                    }
                    (r * u as f64).floor() + 1.0
                }
                2 => {
                    let l =
                        int_arg(&args[0]).ok_or("bad argument #1 to 'random' (number expected)")?;
                    let u =
                        int_arg(&args[1]).ok_or("bad argument #2 to 'random' (number expected)")?;
                    if l > u {
                        return Err("bad argument #2 to 'random' (interval is empty)".into());
                    }
                    (r * (u - l + 1) as f64).floor() + l as f64
                }
                _ => return Err("wrong number of arguments".into()),
            };
            Ok(MultiValue::from_vec(vec![Value::Number(v)]))
        })?;
        let s = seed.clone();
        super::register(&lua, &math, "randomseed", move |_, args| {
            let v = args
                .into_vec()
                .first()
                .and_then(int_arg)
                .ok_or("bad argument #1 to 'randomseed' (number expected)")?;
            s.set((((v as i32 as u32) as u64) << 16) | 0x330E);
            Ok(MultiValue::new())
        })?;

        let runner: Function =
            lua.load(PRELUDE)
                .set_name("=tether")
                .call((Value::LightUserData(MARK), redis, raw))?;
        for k in [
            "debug", "dofile", "loadfile", "print", "jit", "module", "require", "package", "io",
            "os",
        ] {
            g.raw_set(k, Value::Nil)?;
        }
        let new_env: Function = lua.load(LOCKDOWN).set_name("=tether").eval()?;
        let env = new_env.call(())?;
        Ok(Vm {
            lua,
            runner,
            generation,
            funcs: RefCell::new(HashMap::new()),
            run,
            env,
            spare: RefCell::new(None),
            runs: Cell::new(0),
        })
    }

    /// A coroutine set to run the runner: the spare one when there is one
    /// (reset), else a new one, made by `make` (which sets its hook).
    pub fn thread(
        &self,
        make: impl FnOnce(&Lua) -> mlua::Result<mlua::Thread>,
    ) -> mlua::Result<mlua::Thread> {
        if let Some(th) = self.spare.borrow_mut().take()
            && th.reset(self.runner.clone()).is_ok()
        {
            return Ok(th);
        }
        make(&self.lua)
    }

    /// A run is over: its coroutine, if it finished cleanly, is kept for
    /// the next (one that was killed or abandoned mid-call is dropped);
    /// and every 50 runs the collector takes a step, as Redis steps it
    /// (`LUA_GC_CYCLE_PERIOD`). A step per run cost a sixth of a short
    /// script's time; between steps LuaJIT's own pacing collects.
    pub fn ran(&self, th: mlua::Thread) {
        if th.status() == mlua::thread::ThreadStatus::Finished {
            *self.spare.borrow_mut() = Some(th);
        }
        let n = self.runs.get() + 1;
        if n >= 50 {
            self.runs.set(0);
            let _ = self.lua.gc_step();
        } else {
            self.runs.set(n);
        }
    }

    /// The compiled function of script `sha`, compiling `body` (without
    /// its shebang line, whose line feed stays so line numbers hold).
    pub fn function(&self, sha: &[u8; 40], body: &[u8]) -> Result<Function, String> {
        if let Some(f) = self.funcs.borrow().get(sha) {
            return Ok(f.clone());
        }
        let code = &body[super::eval::shebang_len(body)..];
        let f = self
            .lua
            .load(code)
            .set_name("@user_script")
            .into_function()
            .map_err(|e| {
                let msg = match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                format!("ERR Error compiling script (new function): {msg}")
            })?;
        self.funcs.borrow_mut().insert(*sha, f.clone());
        Ok(f)
    }
}

/// An error table as `luaPushErrorBuff` builds it from a command's error
/// or a check's message: `-CODE msg` keeps its code, anything else is
/// prefixed with `ERR`.
pub(super) fn err_table(lua: &Lua, s: &[u8], from_reply: bool) -> mlua::Result<Value> {
    let (code, msg): (&[u8], &[u8]) = match s.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&b| b == b' ') {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", s),
    };
    let trim = |b: &u8| *b == b'\r' || *b == b'\n';
    let start = msg.iter().position(|b| !trim(b)).unwrap_or(msg.len());
    let end = msg.iter().rposition(|b| !trim(b)).map_or(start, |e| e + 1);
    let mut full = code.to_vec();
    full.push(b' ');
    full.extend_from_slice(&msg[start..end.max(start)]);
    let t = lua.create_table()?;
    t.raw_set("err", lua.create_string(full)?)?;
    if from_reply {
        t.raw_set("ignore_error_stats_update", true)?;
    }
    Ok(Value::Table(t))
}

/// One line of a RESP reply starting at `*pos` (the type byte), moving
/// `*pos` past its CRLF.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let start = *pos + 1;
    let end = buf[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(buf.len(), |i| start + i);
    *pos = (end + 2).min(buf.len());
    &buf[start..end]
}

fn num(b: &[u8]) -> i64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Converts one RESP reply (as our commands write it) at `*pos` into the
/// Lua value Redis's `redisProtocolToLuaType` gives a script.
pub(super) fn reply_to_lua(lua: &Lua, buf: &[u8], pos: &mut usize) -> mlua::Result<Value> {
    if *pos >= buf.len() {
        return Ok(Value::Nil);
    }
    let tag = buf[*pos];
    let head = line(buf, pos);
    let single = |k: &str, v: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set(k, v)?;
        Ok(Value::Table(t))
    };
    Ok(match tag {
        b'+' => single("ok", Value::String(lua.create_string(head)?))?,
        b'-' => {
            let mut e = Vec::with_capacity(head.len() + 1);
            e.push(b'-');
            e.extend_from_slice(head);
            err_table(lua, &e, true)?
        }
        b':' => Value::Number(num(head) as f64),
        b'$' | b'=' => {
            let n = num(head);
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let end = (*pos + n as usize).min(buf.len());
            let body = &buf[*pos..end];
            *pos = (end + 2).min(buf.len());
            if tag == b'$' {
                Value::String(lua.create_string(body)?)
            } else {
                let (fmt, s) = if body.len() >= 4 {
                    body.split_at(4)
                } else {
                    (body, &b""[..])
                };
                let v = lua.create_table()?;
                v.raw_set("format", lua.create_string(&fmt[..fmt.len().min(3)])?)?;
                v.raw_set("string", lua.create_string(s)?)?;
                single("verbatim_string", Value::Table(v))?
            }
        }
        b'*' | b'>' => {
            let n = num(head);
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let t = lua.create_table_with_capacity(n as usize, 0)?;
            for i in 1..=n {
                let v = reply_to_lua(lua, buf, pos)?;
                t.raw_set(i, v)?;
            }
            Value::Table(t)
        }
        b'%' | b'~' => {
            let n = num(head).max(0);
            let t = lua.create_table()?;
            for _ in 0..n {
                let k = reply_to_lua(lua, buf, pos)?;
                let v = if tag == b'%' {
                    reply_to_lua(lua, buf, pos)?
                } else {
                    Value::Boolean(true)
                };
                if !k.is_nil() {
                    t.raw_set(k, v)?;
                }
            }
            single(if tag == b'%' { "map" } else { "set" }, Value::Table(t))?
        }
        b'_' => Value::Nil,
        b'#' => Value::Boolean(head == b"t"),
        b',' => {
            let s = std::str::from_utf8(head).unwrap_or("0");
            let d = match s {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "-nan" => f64::NAN,
                _ => s.parse().unwrap_or(0.0),
            };
            single("double", Value::Number(d))?
        }
        b'(' => single("big_number", Value::String(lua.create_string(head)?))?,
        b'|' => {
            for _ in 0..num(head).max(0) * 2 {
                reply_to_lua(lua, buf, pos)?;
            }
            reply_to_lua(lua, buf, pos)?
        }
        _ => Value::Nil,
    })
}

/// Lua tables nested deeper than this answer an error element, as
/// Redis's conversion does when the Lua stack runs out.
const MAX_REPLY_DEPTH: usize = 1000;

/// Writes a script's result as Redis's `luaReplyToRedisReply` does.
/// `resp3` is the script's protocol (`redis.setresp`), which decides how
/// a boolean is written; the client's own protocol shapes the rest.
pub(super) fn lua_to_reply(r: &mut Reply<'_>, v: &Value, resp3: bool, depth: usize) {
    if depth > MAX_REPLY_DEPTH {
        return r.error("ERR reached lua stack limit");
    }
    match v {
        Value::String(s) => r.bulk(&s.as_bytes()),
        Value::Boolean(b) => {
            if resp3 {
                r.boolean(*b)
            } else if *b {
                r.int(1)
            } else {
                r.null()
            }
        }
        Value::Integer(i) => r.int(*i),
        Value::Number(n) => r.int(c_llong(*n)),
        Value::Table(t) => table_reply(r, t, resp3, depth),
        _ => r.null(),
    }
}

/// `(long long)d` as x86-64 computes it: out of range and NaN give
/// `LLONG_MIN`, where Rust's `as` would saturate.
fn c_llong(d: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if d.is_nan() || !(-LIMIT..LIMIT).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

fn table_reply(r: &mut Reply<'_>, t: &Table, resp3: bool, depth: usize) {
    let field = |k: &str| t.raw_get::<Value>(k).unwrap_or(Value::Nil);
    if let Value::String(e) = field("err") {
        return r.error(&e.to_string_lossy());
    }
    if let Value::String(s) = field("ok") {
        let s: String = s
            .to_string_lossy()
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        return r.simple(&s);
    }
    match field("double") {
        Value::Number(d) => return r.double(d),
        Value::Integer(i) => return r.double(i as f64),
        _ => {}
    }
    if let Value::String(s) = field("big_number") {
        let s: Vec<u8> = s
            .as_bytes()
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        return match r.proto {
            crate::resp::Proto::Resp2 => r.bulk(&s),
            crate::resp::Proto::Resp3 => {
                r.raw(b"(");
                r.raw(&s);
                r.raw(b"\r\n")
            }
        };
    }
    if let Value::Table(vt) = field("verbatim_string")
        && let (Ok(Value::String(fmt)), Ok(Value::String(s))) =
            (vt.raw_get::<Value>("format"), vt.raw_get::<Value>("string"))
    {
        let s = s.as_bytes();
        return match r.proto {
            crate::resp::Proto::Resp2 => r.bulk(&s),
            crate::resp::Proto::Resp3 => {
                let fmt = fmt.as_bytes();
                let mut body = fmt[..fmt.len().min(3)].to_vec();
                body.resize(3, b' ');
                body.push(b':');
                body.extend_from_slice(&s);
                r.raw(format!("={}\r\n", body.len()).as_bytes());
                r.raw(&body);
                r.raw(b"\r\n")
            }
        };
    }
    if let Value::Table(m) = field("map") {
        let pairs: Vec<(Value, Value)> = m.pairs::<Value, Value>().filter_map(Result::ok).collect();
        r.map(pairs.len());
        for (k, v) in &pairs {
            lua_to_reply(r, k, resp3, depth + 1);
            lua_to_reply(r, v, resp3, depth + 1);
        }
        return;
    }
    if let Value::Table(s) = field("set") {
        let keys: Vec<Value> = s
            .pairs::<Value, Value>()
            .filter_map(|p| p.ok().map(|p| p.0))
            .collect();
        r.set_header(keys.len());
        for k in &keys {
            lua_to_reply(r, k, resp3, depth + 1);
        }
        return;
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    r.array(items.len());
    for v in &items {
        lua_to_reply(r, v, resp3, depth + 1);
    }
}

/// A `redis.call` argument as Redis's `luaArgsToRedisArgv` takes it:
/// strings as they are, numbers as `%.17g`; anything else is refused.
pub(super) fn arg_bytes(v: &Value) -> Option<bytes::Bytes> {
    match v {
        Value::String(s) => Some(bytes::Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(i) => Some(crate::cmd::zset::format_score(*i as f64).into()),
        Value::Number(n) => Some(crate::cmd::zset::format_score(*n).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrand48_matches_redis_first_values() {
        // redisLrand48 from its initial state (x = 0x1234ABCD330E).
        let s = Cell::new(0x1234_ABCD_330E_u64);
        let first: Vec<i64> = (0..3).map(|_| lrand48(&s)).collect();
        // Computed with the same LCG by hand: a = 0x5DEECE66D, c = 0xB.
        let mut x: u64 = 0x1234_ABCD_330E;
        for v in first {
            x = (x.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & ((1 << 48) - 1);
            assert_eq!(v, (x >> 17) as i64);
        }
    }

    #[test]
    fn error_tables_keep_or_add_a_code() {
        let lua = Lua::new();
        let code = |s: &[u8]| match err_table(&lua, s, false).unwrap() {
            Value::Table(t) => t.raw_get::<String>("err").unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(code(b"-WRONGTYPE Operation"), "WRONGTYPE Operation");
        assert_eq!(code(b"-NOSPACE"), "ERR NOSPACE");
        assert_eq!(code(b"plain message\r\n"), "ERR plain message");
    }

    #[test]
    fn replies_convert_as_redis_does() {
        let lua = Lua::new();
        let conv = |b: &[u8]| {
            let mut pos = 0;
            let v = reply_to_lua(&lua, b, &mut pos).unwrap();
            assert_eq!(pos, b.len());
            v
        };
        assert!(matches!(conv(b"$-1\r\n"), Value::Boolean(false)));
        assert!(matches!(conv(b"*-1\r\n"), Value::Boolean(false)));
        assert!(matches!(conv(b"_\r\n"), Value::Nil));
        assert!(matches!(conv(b":7\r\n"), Value::Number(n) if n == 7.0));
        let Value::Table(t) = conv(b"*2\r\n$1\r\na\r\n:1\r\n") else {
            panic!()
        };
        assert_eq!(t.raw_len(), 2);
        let Value::Table(t) = conv(b"%1\r\n+k\r\n,1.5\r\n") else {
            panic!()
        };
        assert!(matches!(
            t.raw_get::<Value>("map").unwrap(),
            Value::Table(_)
        ));
    }
}
