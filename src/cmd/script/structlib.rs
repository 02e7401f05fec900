//! The `struct` library scripts see (Roberto Ierusalimschy's struct, as
//! bundled with Redis 7.0); runs inside the Lua state of whichever core
//! runs the script.
//!
//! `struct.pack(fmt, ...)` lays values out as binary, `struct.unpack(fmt,
//! data [, pos])` reads them back followed by the position after them,
//! and `struct.size(fmt)` is the length `pack` would produce. Formats, as
//! Redis's x86-64 build reads them:
//!
//! ```text
//! >  big endian             <  little endian (the default)
//! !n align items to min(n, item size); n a power of 2, bare ! is 8
//! x  one zero byte          ' ' ignored
//! b B  8-bit     h H  16-bit     l L  64-bit     T  64-bit (size_t)
//! in In  n-byte integer, 1 <= n <= 32 (bare i is 4); lower case is signed
//! f  f32     d  f64
//! cn  n bytes of string; c0 packs the whole string, and unpacks as many
//!     bytes as the previous result says
//! s  zero-terminated string
//! ```
//!
//! Integers go through a C `long` and Lua's double, so only 64 bits of a
//! wider integer carry information. The format ends at its first NUL, as
//! a C string would. Errors keep the C library's texts.

use mlua::{Lua, MultiValue, Value};

use super::cmsgpack::{Args, arg_error, c_double_to_i64, check_stack, spread};
use super::register;

/// Widest integer `i`/`I` accept, in bytes.
const MAX_INT_SIZE: usize = 32;

/// The alignment a bare `!` asks for: that of a double on x86-64.
const MAX_ALIGN: usize = 8;

/// Installs the global `struct` table.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let table = lua.create_table()?;
    register(lua, &table, "pack", |lua, args| pack(lua, &args.into_vec()))?;
    register(lua, &table, "size", |lua, args| {
        size(&Args::new(lua, &args.into_vec(), "size"))
    })?;
    // unpack answers `(results, n)`; `spread` turns that into n values.
    let raw = lua.create_table()?;
    register(lua, &raw, "unpack", |lua, args| {
        unpack(lua, &Args::new(lua, &args.into_vec(), "unpack"))
    })?;
    table.raw_set("unpack", spread(lua, raw.raw_get("unpack")?)?)?;
    lua.globals().raw_set("struct", table)
}

/// A cursor over a format string, with the endianness and alignment
/// options seen so far.
struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
    big: bool,
    align: usize,
    /// The function being run, for "bad argument" messages.
    func: &'static str,
}

impl<'a> Format<'a> {
    fn new(fmt: &'a [u8], func: &'static str) -> Self {
        // The C library reads the format as a C string.
        let end = fmt.iter().position(|&b| b == 0).unwrap_or(fmt.len());
        Format {
            fmt: &fmt[..end],
            pos: 0,
            big: false,
            align: 1,
            func,
        }
    }

    fn next_opt(&mut self) -> Option<u8> {
        let opt = *self.fmt.get(self.pos)?;
        self.pos += 1;
        Some(opt)
    }

    /// The decimal number at the cursor, or `default` if there is none.
    fn number(&mut self, default: usize) -> Result<usize, String> {
        let mut seen = false;
        let mut a: i32 = 0;
        while let Some(&c) = self.fmt.get(self.pos).filter(|c| c.is_ascii_digit()) {
            let d = i32::from(c - b'0');
            a = a
                .checked_mul(10)
                .and_then(|a| a.checked_add(d))
                .ok_or_else(|| "integral size overflow".to_string())?;
            self.pos += 1;
            seen = true;
        }
        Ok(if seen { a as usize } else { default })
    }

    /// Bytes taken by option `opt`, reading its count if it has one; 0
    /// for options that are not aligned (including `s` and unknown ones).
    fn size(&mut self, opt: u8) -> Result<usize, String> {
        Ok(match opt {
            b'b' | b'B' | b'x' => 1,
            b'h' | b'H' => 2,
            b'f' => 4,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > MAX_INT_SIZE {
                    return Err(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    ));
                }
                size
            }
            _ => 0,
        })
    }

    /// Zero bytes needed before an item of `size` bytes at offset `len`.
    fn padding(&self, len: u64, opt: u8, size: usize) -> u64 {
        if size == 0 || opt == b'c' {
            return 0;
        }
        let size = size.min(self.align) as u64;
        (size - (len & (size - 1))) & (size - 1)
    }

    /// Applies an option that is not an item.
    fn control(&mut self, opt: u8) -> Result<(), String> {
        match opt {
            b' ' => {}
            b'>' => self.big = true,
            b'<' => self.big = false,
            b'!' => {
                let a = self.number(MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(format!("alignment {a} is not a power of 2"));
                }
                self.align = a;
            }
            _ => {
                let opt = String::from_utf8_lossy(&[opt]).into_owned();
                return Err(arg_error(
                    1,
                    self.func,
                    &format!("invalid format option '{opt}'"),
                ));
            }
        }
        Ok(())
    }
}

fn is_integer_opt(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// `struct.pack(fmt, ...)`.
fn pack(lua: &Lua, args: &[Value]) -> Result<MultiValue, String> {
    let fmt = Args::new(lua, args, "pack").string(1)?;
    let fmt = fmt.as_bytes();
    // The C code then pushes a nil after the arguments, so a missing
    // argument is reported as nil rather than "no value".
    let args = Args::new(lua, args, "pack").nil_after();
    let mut f = Format::new(&fmt, "pack");
    let mut arg = 2;
    let mut out = Vec::new();
    while let Some(opt) = f.next_opt() {
        let mut size = f.size(opt)?;
        let pad = f.padding(out.len() as u64, opt, size);
        out.resize(out.len() + pad as usize, 0);
        match opt {
            _ if is_integer_opt(opt) => {
                let n = args.number(arg)?;
                arg += 1;
                put_integer(&mut out, n, f.big, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let n = args.number(arg)? as f32;
                arg += 1;
                out.extend_from_slice(&if f.big {
                    n.to_be_bytes()
                } else {
                    n.to_le_bytes()
                });
            }
            b'd' => {
                let n = args.number(arg)?;
                arg += 1;
                out.extend_from_slice(&if f.big {
                    n.to_be_bytes()
                } else {
                    n.to_le_bytes()
                });
            }
            b'c' | b's' => {
                let s = args.string(arg)?;
                let s = s.as_bytes();
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // Sic: the C code names the argument after the string.
                    return Err(args.error(arg, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => f.control(opt)?,
        }
    }
    let s = lua.create_string(out).map_err(|e| e.to_string())?;
    Ok(MultiValue::from_vec(vec![Value::String(s)]))
}

/// Appends the low `size` bytes of `n` as a C `unsigned long`, zeros
/// beyond the eighth.
fn put_integer(out: &mut Vec<u8>, n: f64, big: bool, size: usize) {
    let value = if n < 0.0 {
        c_double_to_i64(n) as u64
    } else {
        c_double_to_u64(n)
    };
    let bytes = (0..size).map(|i| value.checked_shr(8 * i as u32).unwrap_or(0) as u8);
    if big {
        let start = out.len();
        out.extend(bytes);
        out[start..].reverse();
    } else {
        out.extend(bytes);
    }
}

/// A C cast from a non-negative double to `unsigned long` as gcc emits
/// it on x86-64: values from 2^63 up are shifted down by 2^63 first, and
/// anything out of range ends up 0 or 2^63.
fn c_double_to_u64(n: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if n >= TWO_63 {
        (c_double_to_i64(n - TWO_63) as u64) ^ (1 << 63)
    } else {
        c_double_to_i64(n) as u64
    }
}

/// `struct.unpack(fmt, data [, pos])`; answers `(results, n)` for `spread`.
fn unpack(lua: &Lua, args: &Args) -> Result<MultiValue, String> {
    let lerr = |e: mlua::Error| e.to_string();
    let fmt = args.string(1)?;
    let fmt = fmt.as_bytes();
    let data = args.string(2)?;
    let data = data.as_bytes();
    let data: &[u8] = &data;
    let ld = data.len() as u64;
    // A negative position wraps to a huge size_t, as in C.
    let mut pos = args.opt_integer(3, 1)? as u64;
    if pos == 0 {
        return Err(args.error(3, "offset must be 1 or greater"));
    }
    pos -= 1;
    let out = lua.create_table().map_err(lerr)?;
    let mut n: i64 = 0;
    let mut f = Format::new(&fmt, "unpack");
    let too_short = || args.error(2, "data string too short");
    while let Some(opt) = f.next_opt() {
        let mut size = f.size(opt)? as u64;
        pos = pos.wrapping_add(f.padding(pos, opt, size as usize));
        if size > ld || pos > ld - size {
            return Err(too_short());
        }
        // Room for this result and the final position.
        check_stack(args.len() as i64 + n, 2, "too many results")?;
        let at = pos as usize;
        let result = match opt {
            _ if is_integer_opt(opt) => {
                let bytes = &data[at..at + size as usize];
                Some(Value::Number(get_integer(
                    bytes,
                    f.big,
                    opt.is_ascii_lowercase(),
                )))
            }
            b'x' => None,
            b'f' => {
                let b: [u8; 4] = data[at..at + 4].try_into().unwrap_or_default();
                let x = if f.big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
                Some(Value::Number(f64::from(x)))
            }
            b'd' => {
                let b: [u8; 8] = data[at..at + 8].try_into().unwrap_or_default();
                Some(Value::Number(if f.big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }))
            }
            b'c' => {
                if size == 0 {
                    // The length is the previous result, which is consumed.
                    let last: Value = if n == 0 {
                        Value::Nil
                    } else {
                        out.raw_get(n).map_err(lerr)?
                    };
                    let len = match last {
                        Value::Nil => None,
                        v => lua.coerce_number(v).map_err(lerr)?,
                    };
                    let Some(len) = len else {
                        return Err("format 'c0' needs a previous size".to_string());
                    };
                    size = c_double_to_u64(len);
                    out.raw_set(n, Value::Nil).map_err(lerr)?;
                    n -= 1;
                    if size > ld || pos > ld - size {
                        return Err(too_short());
                    }
                }
                let s = lua
                    .create_string(&data[at..at + size as usize])
                    .map_err(lerr)?;
                Some(Value::String(s))
            }
            b's' => {
                let Some(len) = data[at..].iter().position(|&b| b == 0) else {
                    return Err("unfinished string in data".to_string());
                };
                size = len as u64 + 1;
                Some(Value::String(
                    lua.create_string(&data[at..at + len]).map_err(lerr)?,
                ))
            }
            _ => {
                f.control(opt)?;
                None
            }
        };
        if let Some(v) = result {
            n += 1;
            out.raw_set(n, v).map_err(lerr)?;
        }
        pos = pos.wrapping_add(size);
    }
    n += 1;
    out.raw_set(n, pos.wrapping_add(1) as i64 as f64)
        .map_err(lerr)?;
    Ok(MultiValue::from_vec(vec![
        Value::Table(out),
        Value::Integer(n),
    ]))
}

/// Reads an integer of `bytes.len()` bytes into a C `unsigned long` (so
/// only the last 8 in significance count) and sign-extends it as the C
/// code does, whose mask shift x86 takes modulo 64 for widths past 8.
fn get_integer(bytes: &[u8], big: bool, signed: bool) -> f64 {
    let fold = |l: u64, &b: &u8| l << 8 | u64::from(b);
    let mut l = if big {
        bytes.iter().fold(0, fold)
    } else {
        bytes.iter().rev().fold(0, fold)
    };
    if !signed {
        return l as f64;
    }
    let shift = (bytes.len() as u32).wrapping_mul(8).wrapping_sub(1) & 63;
    let mask = u64::MAX << shift;
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

/// `struct.size(fmt)`.
fn size(args: &Args) -> Result<MultiValue, String> {
    let fmt = args.string(1)?;
    let fmt = fmt.as_bytes();
    let mut f = Format::new(&fmt, "size");
    let mut pos: u64 = 0;
    while let Some(opt) = f.next_opt() {
        let size = f.size(opt)?;
        pos = pos.wrapping_add(f.padding(pos, opt, size));
        if opt == b's' {
            return Err(args.error(1, "option 's' has no fixed size"));
        } else if opt == b'c' && size == 0 {
            return Err(args.error(1, "option 'c0' has no fixed size"));
        }
        // Letters and digits the format does not know count as nothing.
        if !opt.is_ascii_alphanumeric() {
            f.control(opt)?;
        }
        pos = pos.wrapping_add(size as u64);
    }
    Ok(MultiValue::from_vec(vec![Value::Number(pos as i64 as f64)]))
}

#[cfg(test)]
mod tests {
    //! Most expectations were produced by running the same snippet on
    //! Redis 7.0.15 and pasting its answer; see `cmsgpack::tests::run`
    //! for the notation.

    use super::*;
    use crate::cmd::script::cmsgpack::tests::{check, run, state};

    #[test]
    #[rustfmt::skip]
    fn pack_integers_floats_strings() {
        check(&[
            (r#"return struct.pack('b', 1)"#, r#"s:01"#),
            (r#"return struct.pack('bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7)"#, r#"s:fffffefffffffdffffffffffffff04000000000000000500000000000000faffffff07000000"#),
            (r#"return struct.pack('>bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7)"#, r#"s:fffffffefffffffffffffffffffd00000000000000040000000000000005fffffffa00000007"#),
            (r#"return struct.pack('<i3>i3', 0x123456, 0x123456)"#, r#"s:563412123456"#),
            (r#"return struct.pack('i1i2i5i8', 1, 2, 3, 4)"#, r#"s:01020003000000000400000000000000"#),
            (r#"return struct.pack('<i16', -1)"#, r#"s:ffffffffffffffff0000000000000000"#),
            (r#"return struct.pack('>i16', -1)"#, r#"s:0000000000000000ffffffffffffffff"#),
            (r#"return struct.pack('<i32', 2^60)"#, r#"s:0000000000000010000000000000000000000000000000000000000000000000"#),
            (r#"return struct.pack('i0', 5)"#, r#"s:"#),
            (r#"return struct.pack('i33', 5)"#, r#"ERR integral size 33 is larger than limit of 32"#),
            (r#"return struct.pack('i99999999999', 5)"#, r#"ERR integral size overflow"#),
            (r#"return struct.pack('c99999999999', 'a')"#, r#"ERR integral size overflow"#),
            (r#"return struct.pack('i2147483647', 5)"#, r#"ERR integral size 2147483647 is larger than limit of 32"#),
            (r#"return struct.pack('i2147483648', 5)"#, r#"ERR integral size overflow"#),
            (r#"return struct.pack('<L', 2^63)"#, r#"s:0000000000000080"#),
            (r#"return struct.pack('<L', 2^64)"#, r#"s:0000000000000000"#),
            (r#"return struct.pack('<L', 2^65)"#, r#"s:0000000000000000"#),
            (r#"return struct.pack('<L', 1e30)"#, r#"s:0000000000000000"#),
            (r#"return struct.pack('<L', 0/0)"#, r#"s:0000000000000080"#),
            (r#"return struct.pack('<L', 1/0)"#, r#"s:0000000000000000"#),
            (r#"return struct.pack('<L', -1/0)"#, r#"s:0000000000000080"#),
            (r#"return struct.pack('<l', -2^63)"#, r#"s:0000000000000080"#),
            (r#"return struct.pack('<l', -2^64)"#, r#"s:0000000000000080"#),
            (r#"return struct.pack('<L', -1.5)"#, r#"s:ffffffffffffffff"#),
            (r#"return struct.pack('<L', 1.9)"#, r#"s:0100000000000000"#),
            (r#"return struct.pack('<L', 2^63 + 2^12)"#, r#"s:0010000000000080"#),
            (r#"return struct.pack('<l', 2^62)"#, r#"s:0000000000000040"#),
            (r#"return struct.pack('<B', 256)"#, r#"s:00"#),
            (r#"return struct.pack('<B', '12')"#, r#"s:0c"#),
            (r#"return struct.pack('<B', ' 0x10 ')"#, r#"s:10"#),
            (r#"return struct.pack('<B', 'x')"#, r#"ERR bad argument #2 to 'pack' (number expected, got string)"#),
            (r#"return struct.pack('<B')"#, r#"ERR bad argument #2 to 'pack' (number expected, got nil)"#),
            (r#"return struct.pack('<B', nil)"#, r#"ERR bad argument #2 to 'pack' (number expected, got nil)"#),
            (r#"return struct.pack('<B', {})"#, r#"ERR bad argument #2 to 'pack' (number expected, got table)"#),
            (r#"return struct.pack('<f', 1.5)"#, r#"s:0000c03f"#),
            (r#"return struct.pack('>f', 1.5)"#, r#"s:3fc00000"#),
            (r#"return struct.pack('<d', 1.5)"#, r#"s:000000000000f83f"#),
            (r#"return struct.pack('>d', -0.1)"#, r#"s:bfb999999999999a"#),
            (r#"return struct.pack('<f', 0.1)"#, r#"s:cdcccc3d"#),
            (r#"return struct.pack('<f', 1e300)"#, r#"s:0000807f"#),
            (r#"return struct.pack('>d', 0/0)"#, r#"s:fff8000000000000"#),
            (r#"return struct.pack('<d', 1/0)"#, r#"s:000000000000f07f"#),
            (r#"return struct.pack('c', 'abc')"#, r#"s:61"#),
            (r#"return struct.pack('c3', 'abc')"#, r#"s:616263"#),
            (r#"return struct.pack('c5', 'abc')"#, r#"ERR bad argument #3 to 'pack' (string too short)"#),
            (r#"return struct.pack('Bc5', 1, 'abc')"#, r#"ERR bad argument #4 to 'pack' (string too short)"#),
            (r#"return struct.pack('c0', 'abc')"#, r#"s:616263"#),
            (r#"return struct.pack('c0c0', 'abc', 'de')"#, r#"s:6162636465"#),
            (r#"return struct.pack('s', 'abc')"#, r#"s:61626300"#),
            (r#"return struct.pack('s', 'a\0b')"#, r#"s:61006200"#),
            (r#"return struct.pack('ss', 'a', 'b')"#, r#"s:61006200"#),
            (r#"return struct.pack('c2', 12345)"#, r#"s:3132"#),
            (r#"return struct.pack('c0', 1.5)"#, r#"s:312e35"#),
            (r#"return struct.pack('s', 1e100)"#, r#"s:31652b31303000"#),
            (r#"return struct.pack('c1', {})"#, r#"ERR bad argument #2 to 'pack' (string expected, got table)"#),
            (r#"return struct.pack('c1')"#, r#"ERR bad argument #2 to 'pack' (string expected, got nil)"#),
            (r#"return struct.pack('x')"#, r#"s:00"#),
            (r#"return struct.pack('xxBx', 1)"#, r#"s:00000100"#),
            (r#"return struct.pack(' b b ', 1, 2)"#, r#"s:0102"#),
            (r#"return struct.pack('n', 1)"#, r#"ERR bad argument #1 to 'pack' (invalid format option 'n')"#),
            (r#"return struct.pack('z')"#, r#"ERR bad argument #1 to 'pack' (invalid format option 'z')"#),
            (r#"return struct.pack('q', 1)"#, r#"ERR bad argument #1 to 'pack' (invalid format option 'q')"#),
            (r#"return struct.pack('j', 1)"#, r#"ERR bad argument #1 to 'pack' (invalid format option 'j')"#),
            (r#"return struct.pack('5')"#, r#"ERR bad argument #1 to 'pack' (invalid format option '5')"#),
            (r#"return struct.pack(5)"#, r#"ERR bad argument #1 to 'pack' (invalid format option '5')"#),
            (r#"return struct.pack('b\0b', 1, 2)"#, r#"s:01"#),
            (r#"return struct.pack()"#, r#"ERR bad argument #1 to 'pack' (string expected, got no value)"#),
            (r#"return struct.pack(nil)"#, r#"ERR bad argument #1 to 'pack' (string expected, got nil)"#),
            (r#"return struct.pack('')"#, r#"s:"#),
        ]);
    }
    #[test]
    #[rustfmt::skip]
    fn pack_alignment() {
        check(&[
            (r#"return struct.pack('!')"#, r#"s:"#),
            (r#"return struct.pack('!3')"#, r#"ERR alignment 3 is not a power of 2"#),
            (r#"return struct.pack('!0')"#, r#"ERR alignment 0 is not a power of 2"#),
            (r#"return struct.pack('!16')"#, r#"s:"#),
            (r#"return struct.pack('!4 b i', 1, 2)"#, r#"s:0100000002000000"#),
            (r#"return struct.pack('! b d', 1, 2)"#, r#"s:01000000000000000000000000000040"#),
            (r#"return struct.pack('!2 b d', 1, 2)"#, r#"s:01000000000000000040"#),
            (r#"return struct.pack('!8 b h b i b l b f b d b c3 b s b x', 1,2,3,4,5,6,7,8,9,10,11,'abc',12,'z',13)"#, r#"s:0100020003000000040000000500000006000000000000000700000000000041090000000000000000000000000024400b6162630c7a000d00"#),
            (r#"return struct.pack('!8 b i3', 1, 2)"#, r#"s:010000020000"#),
            (r#"return struct.pack('!8 b i5 b i6', 1, 2, 3, 4)"#, r#"s:01000000000200000000030000000000040000000000"#),
            (r#"return struct.pack('!8 b i7', 1, 2)"#, r#"s:0100000000000002000000000000"#),
            (r#"return struct.pack('!8 b i12', 1, 2)"#, r#"s:0100000000000000020000000000000000000000"#),
            (r#"return struct.pack('!8 b i16', 1, 2)"#, r#"s:010000000000000002000000000000000000000000000000"#),
            (r#"return struct.pack('!32 b i32', 1, 2)"#, r#"s:01000000000000000000000000000000000000000000000000000000000000000200000000000000000000000000000000000000000000000000000000000000"#),
            (r#"return struct.pack('!99999999999', 1, 2)"#, r#"ERR integral size overflow"#),
            (r#"return struct.pack('>!4 b h i', 1, 2, 3)"#, r#"s:0100000200000003"#),
            (r#"return struct.pack('b', 1, 2, 3)"#, r#"s:01"#),
        ]);
    }
    #[test]
    #[rustfmt::skip]
    fn unpack() {
        check(&[
            (r#"return struct.unpack('b', '\255')"#, r#"n:-1 n:2"#),
            (r#"return struct.unpack('B', '\255')"#, r#"n:255 n:2"#),
            (r#"return struct.unpack('<bBhHlLTiI', struct.pack('<bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7))"#, r#"n:-1 n:255 n:-2 n:65535 n:-3 n:4 n:5 n:-6 n:7 n:39"#),
            (r#"return struct.unpack('>bBhHlLTiI', struct.pack('>bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7))"#, r#"n:-1 n:255 n:-2 n:65535 n:-3 n:4 n:5 n:-6 n:7 n:39"#),
            (r#"return struct.unpack('<i3', '\255\255\255')"#, r#"n:-1 n:4"#),
            (r#"return struct.unpack('<I3', '\255\255\255')"#, r#"n:16777215 n:4"#),
            (r#"return struct.unpack('<i3', '\255\255\127')"#, r#"n:8388607 n:4"#),
            (r#"return struct.unpack('<l', '\255\255\255\255\255\255\255\255')"#, r#"n:-1 n:9"#),
            (r#"return struct.unpack('<L', '\255\255\255\255\255\255\255\255')"#, r#"n:1.8446744073709552e+19 n:9"#),
            (r#"return struct.unpack('<L', '\1\0\0\0\0\0\0\128')"#, r#"n:9.2233720368547758e+18 n:9"#),
            (r#"return struct.unpack('<i9', '\255\255\255\255\255\255\255\255\255')"#, r#"n:-1 n:10"#),
            (r#"return struct.unpack('<i9', '\1\0\0\0\0\0\0\0\0')"#, r#"n:1 n:10"#),
            (r#"return struct.unpack('<i9', '\128\0\0\0\0\0\0\0\0')"#, r#"n:-128 n:10"#),
            (r#"return struct.unpack('>i9', '\0\0\0\0\0\0\0\0\128')"#, r#"n:-128 n:10"#),
            (r#"return struct.unpack('>i9', '\0\0\0\0\0\0\0\0\255')"#, r#"n:-1 n:10"#),
            (r#"return struct.unpack('>i10', '\0\0\0\0\0\0\0\0\255\255')"#, r#"n:-1 n:11"#),
            (r#"return struct.unpack('>i10', '\0\0\0\0\0\0\0\0\0\255')"#, r#"n:255 n:11"#),
            (r#"return struct.unpack('>i10', '\0\0\0\0\0\0\0\0\1\0')"#, r#"n:256 n:11"#),
            (r#"return struct.unpack('>i16', string.rep('\0', 15) .. '\128')"#, r#"n:128 n:17"#),
            (r#"return struct.unpack('>i16', string.rep('\0', 14) .. '\128\0')"#, r#"n:32768 n:17"#),
            (r#"return struct.unpack('<i16', string.rep('\255', 16))"#, r#"n:-1 n:17"#),
            (r#"return struct.unpack('<I16', string.rep('\255', 16))"#, r#"n:1.8446744073709552e+19 n:17"#),
            (r#"return struct.unpack('<i32', string.rep('\1', 32))"#, r#"n:72340172838076672 n:33"#),
            (r#"return struct.unpack('>i32', string.rep('\0', 28) .. '\128\0\0\0')"#, r#"n:2147483648 n:33"#),
            (r#"return struct.unpack('>i32', string.rep('\0', 31) .. '\128')"#, r#"n:128 n:33"#),
            (r#"return struct.unpack('>i17', string.rep('\0', 15) .. '\1\128')"#, r#"n:-128 n:18"#),
            (r#"return struct.unpack('>i17', string.rep('\0', 15) .. '\0\255')"#, r#"n:-1 n:18"#),
            (r#"return struct.unpack('>i24', string.rep('\0', 20) .. '\0\0\0\255')"#, r#"n:255 n:25"#),
            (r#"return struct.unpack('>i24', string.rep('\0', 20) .. '\0\0\128\0')"#, r#"n:32768 n:25"#),
            (r#"return struct.unpack('i0', '')"#, r#"n:0 n:1"#),
            (r#"return struct.unpack('i0i0', 'abc')"#, r#"n:0 n:0 n:1"#),
            (r#"return struct.unpack('<f', struct.pack('<f', 1.5))"#, r#"n:1.5 n:5"#),
            (r#"return struct.unpack('>d', struct.pack('>d', -0.1))"#, r#"n:-0.10000000000000001 n:9"#),
            (r#"return struct.unpack('<d', '\0\0\0\0\0\0\248\127')"#, r#"n:nan n:9"#),
            (r#"return struct.unpack('c3', 'abcdef')"#, r#"s:616263 n:4"#),
            (r#"return struct.unpack('c', 'abcdef')"#, r#"s:61 n:2"#),
            (r#"return struct.unpack('c3c3', 'abcdef')"#, r#"s:616263 s:646566 n:7"#),
            (r#"return struct.unpack('c7', 'abcdef')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('c0', 'abcdef')"#, r#"ERR format 'c0' needs a previous size"#),
            (r#"return struct.unpack('Bc0', '\3abcdef')"#, r#"s:616263 n:5"#),
            (r#"return struct.unpack('Bc0B', '\3abcdef')"#, r#"s:616263 n:100 n:6"#),
            (r#"return struct.unpack('Bc0', '\9abc')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('c1c0', '3abcdef')"#, r#"s:616263 n:5"#),
            (r#"return struct.unpack('c1c0', 'xabcdef')"#, r#"ERR format 'c0' needs a previous size"#),
            (r#"return struct.unpack('c2c0', '-1abcdef')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('fc0', struct.pack('f', 2.5) .. 'abcd')"#, r#"s:6162 n:7"#),
            (r#"return struct.unpack('dc0', struct.pack('d', 2^64) .. 'abcd')"#, r#"s: n:9"#),
            (r#"return struct.unpack('s', 'abc\0def')"#, r#"s:616263 n:5"#),
            (r#"return struct.unpack('ss', 'abc\0def\0')"#, r#"s:616263 s:646566 n:9"#),
            (r#"return struct.unpack('ss', 'abc\0def')"#, r#"ERR unfinished string in data"#),
            (r#"return struct.unpack('s', '')"#, r#"ERR unfinished string in data"#),
            (r#"return struct.unpack('x', 'a')"#, r#"n:2"#),
            (r#"return struct.unpack('xB', 'ab')"#, r#"n:98 n:3"#),
            (r#"return struct.unpack('x', '')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('', 'abc')"#, r#"n:1"#),
            (r#"return struct.unpack('B', 'abc', 2)"#, r#"n:98 n:3"#),
            (r#"return struct.unpack('B', 'abc', 3)"#, r#"n:99 n:4"#),
            (r#"return struct.unpack('B', 'abc', 4)"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('', 'abc', 4)"#, r#"n:4"#),
            (r#"return struct.unpack('', 'abc', 5)"#, r#"n:5"#),
            (r#"return struct.unpack('z', 'abc', 5)"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('z', 'abc')"#, r#"ERR bad argument #1 to 'unpack' (invalid format option 'z')"#),
            (r#"return struct.unpack(' ', 'abc', 4)"#, r#"n:4"#),
            (r#"return struct.unpack('B', 'abc', 0)"#, r#"ERR bad argument #3 to 'unpack' (offset must be 1 or greater)"#),
            (r#"return struct.unpack('B', 'abc', -1)"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('', 'abc', -1)"#, r#"n:-1"#),
            (r#"return struct.unpack('', 'abc', 2.7)"#, r#"n:2"#),
            (r#"return struct.unpack('', 'abc', '2')"#, r#"n:2"#),
            (r#"return struct.unpack('', 'abc', 'x')"#, r#"ERR bad argument #3 to 'unpack' (number expected, got string)"#),
            (r#"return struct.unpack('', 'abc', 2^63)"#, r#"n:-9.2233720368547758e+18"#),
            (r#"return struct.unpack('', 'abc', 1e30)"#, r#"n:-9.2233720368547758e+18"#),
            (r#"return struct.unpack('B', 'abc', nil)"#, r#"n:97 n:2"#),
            (r#"return struct.unpack('B')"#, r#"ERR bad argument #2 to 'unpack' (string expected, got no value)"#),
            (r#"return struct.unpack('B', nil)"#, r#"ERR bad argument #2 to 'unpack' (string expected, got nil)"#),
            (r#"return struct.unpack('B', 12)"#, r#"n:49 n:2"#),
            (r#"return struct.unpack(nil, 'a')"#, r#"ERR bad argument #1 to 'unpack' (string expected, got nil)"#),
            (r#"return struct.unpack('n', 'abc')"#, r#"ERR bad argument #1 to 'unpack' (invalid format option 'n')"#),
            (r#"return struct.unpack('!3', 'abc')"#, r#"ERR alignment 3 is not a power of 2"#),
            (r#"return struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2))"#, r#"n:1 n:2 n:9"#),
            (r#"return struct.unpack('!4 b i', '\1\0\0\0\2\0\0')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('!8 b d', '\1')"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
            (r#"return struct.unpack('c0', 'abc')"#, r#"ERR format 'c0' needs a previous size"#),
            (r#"return struct.unpack('i33', 'abc')"#, r#"ERR integral size 33 is larger than limit of 32"#),
            (r#"return struct.unpack('b', 'abc', 1, 'extra', 'args')"#, r#"n:97 n:2"#),
        ]);
    }
    #[test]
    #[rustfmt::skip]
    fn unpack_result_limit() {
        check(&[
            (r#"return select('#', struct.unpack(string.rep('B', 7995), string.rep('a', 8000)))"#, r#"n:7996"#),
            (r#"return select('#', struct.unpack(string.rep('B', 7996), string.rep('a', 8000)))"#, r#"n:7997"#),
            (r#"return select('#', struct.unpack(string.rep('B', 7995), string.rep('a', 8000), 1))"#, r#"n:7996"#),
            (r#"return select('#', struct.unpack(string.rep('B', 7996), string.rep('a', 8000), 1))"#, r#"n:7997"#),
            (r#"return select('#', struct.unpack(string.rep('c1', 7996), string.rep('a', 8000)))"#, r#"n:7997"#),
            (r#"return select('#', struct.unpack(string.rep('c1', 7997), string.rep('a', 8000)))"#, r#"n:7998"#),
            (r#"return #table.concat({struct.unpack(string.rep('c1', 7996), string.rep('a', 8000))}, '', 1, 7996)"#, r#"n:7996"#),
            (r#"return select('#', struct.unpack(string.rep('x', 100000), string.rep('a', 100000)))"#, r#"n:1"#),
        ]);
    }
    #[test]
    #[rustfmt::skip]
    fn size() {
        check(&[
            (r#"return struct.size('')"#, r#"n:0"#),
            (r#"return struct.size('bBhHlLTiIfdx')"#, r#"n:51"#),
            (r#"return struct.size('i3c5')"#, r#"n:8"#),
            (r#"return struct.size('!8 b d')"#, r#"n:16"#),
            (r#"return struct.size('!8 b i3 b i5')"#, r#"n:12"#),
            (r#"return struct.size('s')"#, r#"ERR bad argument #1 to 'size' (option 's' has no fixed size)"#),
            (r#"return struct.size('c0')"#, r#"ERR bad argument #1 to 'size' (option 'c0' has no fixed size)"#),
            (r#"return struct.size('c')"#, r#"n:1"#),
            (r#"return struct.size('n')"#, r#"n:0"#),
            (r#"return struct.size('5')"#, r#"n:0"#),
            (r#"return struct.size('z9')"#, r#"n:0"#),
            (r#"return struct.size('?')"#, r#"ERR bad argument #1 to 'size' (invalid format option '?')"#),
            (r#"return struct.size('!3')"#, r#"ERR alignment 3 is not a power of 2"#),
            (r#"return struct.size('i33')"#, r#"ERR integral size 33 is larger than limit of 32"#),
            (r#"return struct.size('c2147483647c2147483647c2147483647')"#, r#"n:6442450941"#),
            (r#"return struct.size()"#, r#"ERR bad argument #1 to 'size' (string expected, got no value)"#),
            (r#"return struct.size(12)"#, r#"n:0"#),
            (r#"return struct.size('b\0b')"#, r#"n:1"#),
            (r#"local t = {} for k in pairs(struct) do t[#t+1] = k end table.sort(t) return table.concat(t, ',')"#, r#"s:7061636b2c73697a652c756e7061636b"#),
        ]);
    }
    #[test]
    #[rustfmt::skip]
    fn mixed_formats() {
        check(&[
            (r#"return struct.pack('>!4 h i3 b i6', 1, 2, 3, 4)"#, r#"s:0001000002030000000000000004"#),
            (r#"return struct.unpack('>!4 h i3 b i6', struct.pack('>!4 h i3 b i6', 1, -2, 3, -4))"#, r#"n:1 n:-2 n:3 n:-4 n:15"#),
            (r#"return struct.pack('<I2 >I2 <I2', 258, 258, 258)"#, r#"s:020101020201"#),
            (r#"return struct.unpack('<!2 b xx h', 'a\0\0\0\1\0')"#, r#"n:97 n:1 n:7"#),
            (r#"return struct.size('!2 b h !4 b i !8 b d')"#, r#"n:24"#),
            (r#"return struct.pack('!2 b h !4 b i !8 b d', 1, 2, 3, 4, 5, 6)"#, r#"s:010002000300000004000000050000000000000000001840"#),
            (r#"return struct.unpack('B', 'abc', 3.9)"#, r#"n:99 n:4"#),
            (r#"return struct.unpack('c2 c1', 'abc', 2)"#, r#"ERR bad argument #2 to 'unpack' (data string too short)"#),
        ]);
    }

    #[test]
    fn known_differences() {
        // Redis puts the raw byte in the message; ours must be UTF-8.
        check(&[(
            r#"return struct.pack('\255')"#,
            "ERR bad argument #1 to 'pack' (invalid format option '\u{fffd}')",
        )]);
    }

    #[test]
    fn wide_integers_keep_64_bits() {
        assert_eq!(get_integer(&[0xff; 9], false, true), -1.0);
        assert_eq!(get_integer(&[1, 0, 0, 0, 0, 0, 0, 0, 0], false, true), 1.0);
        assert_eq!(get_integer(&[], false, true), 0.0);
        assert_eq!(get_integer(&[0x80], true, true), -128.0);
        assert_eq!(get_integer(&[0x80], true, false), 128.0);
        let mut out = Vec::new();
        put_integer(&mut out, -1.0, true, 10);
        assert_eq!(out, [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c_double_to_u64(f64::NAN), 1 << 63);
        assert_eq!(
            c_double_to_u64(9_223_372_036_854_779_904.0),
            (1 << 63) + 4096
        );
        assert_eq!(c_double_to_u64(f64::INFINITY), 0);
    }

    /// Random formats and data only ever produce results or errors.
    #[test]
    fn random_formats_raise_cleanly() {
        let lua = state();
        let chunk = lua
            .load(
                "local fmt, data = ...
                 pcall(struct.size, fmt)
                 pcall(struct.unpack, fmt, data)
                 pcall(struct.unpack, fmt, data, #data)
                 pcall(struct.pack, fmt, 1, 'abc', -2.5, 'x', 7, 'longer string', 3)",
            )
            .into_function()
            .unwrap();
        let alphabet = b"<>!=xbBhHlLTiIfdcs 0123456789zn\0";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let fmt: Vec<u8> = (0..next() % 12)
                .map(|_| alphabet[next() as usize % alphabet.len()])
                .collect();
            let data: Vec<u8> = (0..next() % 48).map(|_| next() as u8).collect();
            let fmt = lua.create_string(&fmt).unwrap();
            let data = lua.create_string(&data).unwrap();
            chunk.call::<()>((fmt, data)).unwrap();
        }
    }

    #[test]
    fn install_sets_a_global_table() {
        let lua = state();
        assert_eq!(
            run(
                &lua,
                "return type(struct.pack), type(struct.unpack), type(struct.size)"
            ),
            "s:66756e6374696f6e s:66756e6374696f6e s:66756e6374696f6e"
        );
    }
}
