//! Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT), as in Redis 7.0.

pub mod cjson;
pub mod cmsgpack;
pub mod eval;
pub mod structlib;
pub mod vm;

use mlua::{Lua, MultiValue, Table, Value};

/// Registry key of the Lua helper that turns a Rust function answering
/// `(true, results...)` or `(false, message)` into one that returns the
/// results or raises `message` as a Lua error with no position, as a C
/// library's `luaL_error` does.
const WRAP: &str = "tether.wrap";

/// Installs `f` as `table[name]`. `f` answers its results, or `Err(msg)`
/// to raise `msg` in the script (catchable by `pcall`).
pub(crate) fn register(
    lua: &Lua,
    table: &Table,
    name: &str,
    f: impl Fn(&Lua, MultiValue) -> Result<MultiValue, String> + 'static,
) -> mlua::Result<()> {
    let raw = lua.create_function(move |lua, args: MultiValue| {
        Ok(match f(lua, args) {
            Ok(mut vals) => {
                vals.push_front(Value::Boolean(true));
                vals
            }
            Err(msg) => MultiValue::from_vec(vec![
                Value::Boolean(false),
                Value::String(lua.create_string(msg)?),
            ]),
        })
    })?;
    let wrap: mlua::Function = lua.named_registry_value(WRAP)?;
    table.raw_set(name, wrap.call::<mlua::Function>(raw)?)
}

/// Sets up [`WRAP`] in a fresh state; [`register`] needs it.
pub(crate) fn install_wrap(lua: &Lua) -> mlua::Result<()> {
    // luaL_error prefixes the position of the library function's caller
    // ("user_script:3: ..."), when that caller is script code: level 3
    // from `where` (the wrapper tail-calls `check`).
    let wrap: mlua::Function = lua
        .load(
            "local error, getinfo = error, debug and debug.getinfo
             local function where()
               local i = getinfo and getinfo(3, 'Sl')
               if i and i.source == '@user_script' then
                 return 'user_script:' .. i.currentline .. ': '
               end
               return ''
             end
             local function check(ok, ...)
               if ok then return ... end
               error(where() .. (...), 0)
             end
             return function(f) return function(...) return check(f(...)) end end",
        )
        .set_name("=tether")
        .eval()?;
    lua.set_named_registry_value(WRAP, wrap)
}
