//! Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, BITFIELD and BITFIELD_RO, as Redis 7.0's `bitops.c` answers them.
//!
//! A string is a bit array whose bit 0 is the most significant bit of byte
//! 0. Writes that address a bit past the end pad the string with zero bytes
//! first (`sdsgrowzero`), and flip bits in the stored value in place, so a
//! SETBIT into a large bitmap costs O(1) here as in Redis. A write that
//! changes nothing (SETBIT of a bit already so, a BITFIELD SET of the same
//! value) is not a change: no event, no WATCH signal, not replicated.
//!
//! Argument checks come in Redis's order, because it shows: BITCOUNT of a
//! missing key answers 0 before looking at its range, BITPOS parses its bit
//! before the key, and BITFIELD parses every operation before touching
//! the key. BITOP reads keys on any shard (`Multi::Scratch`).

use bytes::Bytes;

use super::notify;
use super::string::{MAX_BUILT_STRING, keyed};
use super::{CmdSpec, Exec, Kind, Multi, NOT_INT, SYNTAX, WRONGTYPE, eq_ic, parse_i64};
use crate::shard::keyspace::{Entry, Str, Value};

const W: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];

pub static COMMANDS: [CmdSpec; 7] = [
    keyed!("setbit", 4, W, 1, 1, 1, setbit),
    keyed!("getbit", 3, RF, 1, 1, 1, getbit),
    keyed!("bitcount", -2, R, 1, 1, 1, bitcount),
    keyed!("bitpos", -3, R, 1, 1, 1, bitpos),
    keyed!("bitop", -4, W, 2, -1, 1, bitop, Multi::Scratch),
    keyed!("bitfield", -2, W, 1, 1, 1, bitfield),
    keyed!("bitfield_ro", -2, RF, 1, 1, 1, bitfield_ro),
];

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_BIT: &str = "ERR bit is not an integer or out of range";
const BAD_TYPE: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// A bit offset argument (Redis's `getBitOffsetFromArgument`): an integer
/// whose byte lies below `proto-max-bulk-len`. With `bits` > 0 (BITFIELD),
/// `#n` means the n-th field of that width, offset `n * bits`.
fn bit_offset(ex: &Exec, arg: &[u8], bits: u32) -> Option<u64> {
    let (hash, digits) = match arg.split_first() {
        Some((b'#', rest)) if bits > 0 => (true, rest),
        _ => (false, arg),
    };
    let mut off = parse_i64(digits)?;
    if hash {
        off = off.checked_mul(bits as i64)?;
    }
    // The string's size is capped as APPEND's is (`MAX_BUILT_STRING`),
    // whatever proto-max-bulk-len is raised to.
    let max = ex.shard.proto_max_bulk.get().min(MAX_BUILT_STRING);
    if off < 0 || (off as u64 >> 3) >= max {
        return None;
    }
    Some(off as u64)
}

/// Redis's `lookupStringForBitCommand`: the string at `key`, created or
/// padded with zeros so that bit `maxbit` exists, and whether it was
/// created or grew. `Err` when the key holds another type.
fn bits_for_write<'e>(
    ex: &'e mut Exec,
    key: &[u8],
    maxbit: u64,
) -> Result<(&'e mut Str, bool), ()> {
    let len = (maxbit >> 3) as usize + 1;
    let created = match ex.lookup_write(key) {
        Some(Entry {
            value: Value::Str(_),
            ..
        }) => false,
        Some(_) => return Err(()),
        None => {
            ex.insert_new(key, Value::Str(Str::zeroed(len)));
            true
        }
    };
    match ex.lookup_write(key) {
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => {
            // Redis unshares the value first: it reads `raw` from now on.
            s.mark_raw();
            let grew = s.grow_zeroed(len);
            Ok((s, created || grew))
        }
        _ => unreachable!("the string was just found or stored"),
    }
}

/// ```text
/// SETBIT key offset 0|1 -> the bit's old value
/// ```
fn setbit(ex: &mut Exec, a: &[Bytes]) {
    let Some(off) = bit_offset(ex, &a[2], 0) else {
        return ex.r.error(BAD_OFFSET);
    };
    let on = match parse_i64(&a[3]) {
        Some(v @ (0 | 1)) => v as u8,
        _ => return ex.r.error(BAD_BIT),
    };
    let Ok((s, grew)) = bits_for_write(ex, &a[1], off) else {
        return ex.r.error(WRONGTYPE);
    };
    let byte = &mut s.as_mut_bytes()[(off >> 3) as usize];
    let shift = 7 - (off & 7) as u8;
    let old = (*byte >> shift) & 1;
    let changed = grew || old != on;
    *byte = (*byte & !(1 << shift)) | (on << shift);
    if changed {
        ex.modified(&a[1]);
        ex.notify(notify::STRING, "setbit", &a[1]);
    }
    ex.r.int(old as i64)
}

/// ```text
/// GETBIT key offset -> 0|1 (0 past the end or for a missing key)
/// ```
fn getbit(ex: &mut Exec, a: &[Bytes]) {
    let Some(off) = bit_offset(ex, &a[2], 0) else {
        return ex.r.error(BAD_OFFSET);
    };
    let (e, r) = ex.lookup_read_with_reply(&a[1]);
    match e.map(|e| &e.value) {
        None => r.int(0),
        Some(Value::Str(s)) => {
            let bit = s
                .get((off >> 3) as usize)
                .map_or(0, |b| (b >> (7 - (off & 7))) & 1);
            r.int(bit as i64)
        }
        Some(_) => r.error(WRONGTYPE),
    }
}

/// Redis's index arithmetic for BITCOUNT and BITPOS ranges over a string
/// of `len` bytes: negative indexes count from the end, then both clamp
/// into the string. Indexes are bits with `isbit`, else bytes. Returns the
/// inclusive range in bits, `None` when it is empty.
fn bit_range(len: usize, mut start: i64, mut end: i64, isbit: bool) -> Option<(u64, u64)> {
    let total = if isbit { len as i64 * 8 } else { len as i64 };
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if isbit {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    })
}

/// The BIT|BYTE unit argument: `Some(true)` for BIT.
fn unit(arg: &[u8]) -> Option<bool> {
    if eq_ic(arg, "bit") {
        Some(true)
    } else if eq_ic(arg, "byte") {
        Some(false)
    } else {
        None
    }
}

/// Set bits of `s` within the inclusive bit range `[from, to]`.
fn popcount(s: &[u8], from: u64, to: u64) -> u64 {
    let (first, last) = ((from >> 3) as usize, (to >> 3) as usize);
    let bytes = &s[first..=last];
    let mut words = bytes.chunks_exact(8);
    let mut n: u64 = (&mut words)
        .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")).count_ones() as u64)
        .sum();
    n += words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum::<u64>();
    // Take off the bits of the edge bytes outside the range.
    let head = (from & 7) as u32;
    if head > 0 {
        n -= (s[first] >> (8 - head)).count_ones() as u64;
    }
    let tail = 7 - (to & 7) as u32;
    if tail > 0 {
        n -= (s[last] & ((1u8 << tail) - 1)).count_ones() as u64;
    }
    n
}

/// ```text
/// BITCOUNT key [start end [BYTE|BIT]] -> set bits in the range
/// ```
fn bitcount(ex: &mut Exec, a: &[Bytes]) {
    let (e, r) = ex.lookup_read_with_reply(&a[1]);
    let s: &[u8] = match e.map(|e| &e.value) {
        None => return r.int(0),
        Some(Value::Str(s)) => s,
        Some(_) => return r.error(WRONGTYPE),
    };
    let range = match a.len() {
        2 => bit_range(s.len(), 0, -1, false),
        4 | 5 => {
            let (Some(start), Some(end)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
                return r.error(NOT_INT);
            };
            if start < 0 && end < 0 && start > end {
                return r.int(0);
            }
            let isbit = match a.get(4) {
                None => false,
                Some(u) => match unit(u) {
                    Some(b) => b,
                    None => return r.error(SYNTAX),
                },
            };
            bit_range(s.len(), start, end, isbit)
        }
        _ => return r.error(SYNTAX),
    };
    r.int(range.map_or(0, |(from, to)| popcount(s, from, to)) as i64)
}

/// Index of the first byte of `s` other than `skip`, a word at a time.
fn first_not(s: &[u8], skip: u8) -> Option<usize> {
    let all = u64::from_ne_bytes([skip; 8]);
    let mut words = s.chunks_exact(8);
    let at = (&mut words)
        .take_while(|w| u64::from_ne_bytes((*w).try_into().expect("8 bytes")) == all)
        .count()
        * 8;
    s[at..].iter().position(|&b| b != skip).map(|p| at + p)
}

/// The first bit equal to `bit` within the inclusive bit range
/// `[from, to]` of `s`.
fn first_bit(s: &[u8], bit: bool, from: u64, to: u64) -> Option<u64> {
    let (first, last) = ((from >> 3) as usize, (to >> 3) as usize);
    // In-range bits of a byte, turned so that a match reads as a 1.
    let matches = |i: usize| {
        let mut m = if bit { s[i] } else { !s[i] };
        if i == first {
            m &= 0xff >> (from & 7);
        }
        if i == last {
            m &= 0xff << (7 - (to & 7));
        }
        m
    };
    let hit = |i: usize, m: u8| Some(i as u64 * 8 + m.leading_zeros() as u64);
    let m = matches(first);
    if m != 0 {
        return hit(first, m);
    }
    if last == first {
        return None;
    }
    let skip = if bit { 0 } else { 0xff };
    if let Some(p) = first_not(&s[first + 1..last], skip) {
        let i = first + 1 + p;
        return hit(i, matches(i));
    }
    let m = matches(last);
    if m != 0 { hit(last, m) } else { None }
}

/// ```text
/// BITPOS key 0|1 [start [end [BYTE|BIT]]] -> first such bit, or -1
/// ```
/// Looking for a 0 with no end given, the string counts as padded with
/// zeros on the right: a string of all ones answers its length in bits.
fn bitpos(ex: &mut Exec, a: &[Bytes]) {
    let bit = match parse_i64(&a[2]) {
        Some(b @ (0 | 1)) => b == 1,
        Some(_) => return ex.r.error("ERR The bit argument must be 1 or 0."),
        None => return ex.r.error(NOT_INT),
    };
    let (e, r) = ex.lookup_read_with_reply(&a[1]);
    let s: &[u8] = match e.map(|e| &e.value) {
        None => return r.int(if bit { -1 } else { 0 }),
        Some(Value::Str(s)) => s,
        Some(_) => return r.error(WRONGTYPE),
    };
    let (range, end_given) = match a.len() {
        3 => (bit_range(s.len(), 0, -1, false), false),
        4..=6 => {
            let Some(start) = parse_i64(&a[3]) else {
                return r.error(NOT_INT);
            };
            let isbit = match a.get(5) {
                None => false,
                Some(u) => match unit(u) {
                    Some(b) => b,
                    None => return r.error(SYNTAX),
                },
            };
            let end = match a.get(4) {
                None => -1,
                Some(e) => match parse_i64(e) {
                    Some(e) => e,
                    None => return r.error(NOT_INT),
                },
            };
            (bit_range(s.len(), start, end, isbit), a.len() >= 5)
        }
        _ => return r.error(SYNTAX),
    };
    let Some((from, to)) = range else {
        return r.int(-1);
    };
    match first_bit(s, bit, from, to) {
        Some(p) => r.int(p as i64),
        None if bit || end_given => r.int(-1),
        None => r.int(to as i64 + 1),
    }
}

/// ```text
/// BITOP AND|OR|XOR|NOT destkey key [key ...] -> length of the result
/// ```
/// Missing keys read as empty strings and shorter ones as zero-padded.
/// An empty result deletes `destkey`; otherwise it replaces the key and
/// its TTL.
fn bitop(ex: &mut Exec, a: &[Bytes]) {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = match &a[1] {
        o if eq_ic(o, "and") => Op::And,
        o if eq_ic(o, "or") => Op::Or,
        o if eq_ic(o, "xor") => Op::Xor,
        o if eq_ic(o, "not") => Op::Not,
        _ => return ex.r.error(SYNTAX),
    };
    if op == Op::Not && a.len() != 4 {
        return ex
            .r
            .error("ERR BITOP NOT must be called with a single source key.");
    }
    let mut srcs: Vec<Vec<u8>> = Vec::with_capacity(a.len() - 3);
    for key in &a[3..] {
        match ex.lookup_read(key).map(|e| &e.value) {
            None => srcs.push(Vec::new()),
            Some(Value::Str(s)) => srcs.push(s.to_vec()),
            Some(_) => return ex.r.error(WRONGTYPE),
        }
    }
    let maxlen = srcs.iter().map(Vec::len).max().unwrap_or(0);
    let dest = &a[2];
    if maxlen == 0 {
        if ex.lookup_write(dest).is_some() {
            ex.db().0.remove(dest);
            ex.modified(dest);
            ex.notify(notify::GENERIC, "del", dest);
        }
        return ex.r.int(0);
    }
    let mut res = std::mem::take(&mut srcs[0]);
    res.resize(maxlen, 0);
    // A source shorter than the result reads as zeros past its end.
    for src in &srcs[1..] {
        let pairs = res.iter_mut().zip(src);
        match op {
            Op::And => {
                pairs.for_each(|(r, s)| *r &= s);
                res[src.len()..].fill(0);
            }
            Op::Or => pairs.for_each(|(r, s)| *r |= s),
            Op::Xor => pairs.for_each(|(r, s)| *r ^= s),
            Op::Not => unreachable!("NOT takes one source"),
        }
    }
    if op == Op::Not {
        res.iter_mut().for_each(|b| *b = !*b);
    }
    let mut value = Str::from(res);
    value.mark_raw();
    ex.set_key(dest, Value::Str(value));
    ex.modified(dest);
    ex.notify(notify::STRING, "set", dest);
    ex.r.int(maxlen as i64)
}

/// What BITFIELD does on overflow (its OVERFLOW subcommand).
#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq)]
enum FieldOp {
    Get,
    Set(i64),
    Incr(i64),
}

struct Field {
    op: FieldOp,
    offset: u64,
    bits: u32,
    signed: bool,
    overflow: Overflow,
}

/// A bitfield type, `i1`..`i64` or `u1`..`u63`: (signed, bits).
fn field_type(arg: &[u8]) -> Option<(bool, u32)> {
    let (signed, n) = match arg.split_first()? {
        (b'i', n) => (true, n),
        (b'u', n) => (false, n),
        _ => return None,
    };
    let bits = parse_i64(n)?;
    let max = if signed { 64 } else { 63 };
    (1..=max).contains(&bits).then_some((signed, bits as u32))
}

/// Reads `bits` bits at bit `offset` of `p`, as an unsigned integer.
fn get_field(p: &[u8], offset: u64, bits: u32) -> u64 {
    (offset..offset + bits as u64).fold(0, |v, o| {
        (v << 1) | ((p[(o >> 3) as usize] >> (7 - (o & 7))) & 1) as u64
    })
}

/// Writes the low `bits` bits of `value` at bit `offset` of `p`.
fn set_field(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..bits as u64 {
        let bit = ((value >> (bits as u64 - 1 - j)) & 1) as u8;
        let o = offset + j;
        let shift = 7 - (o & 7);
        let b = &mut p[(o >> 3) as usize];
        *b = (*b & !(1 << shift)) | (bit << shift);
    }
}

/// Sign-extends a `bits`-wide field read by [`get_field`].
fn signed_field(v: u64, bits: u32) -> i64 {
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// Whether `value + incr` overflows a `bits`-wide unsigned field, and
/// what to store then under WRAP or SAT (Redis's
/// `checkUnsignedBitfieldOverflow`). `None`: no overflow.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<Option<u64>> {
    let max = (1u64 << bits) - 1; // bits <= 63
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrapped = || value.wrapping_add(incr as u64) & max;
    let limit = |sat: u64| match ow {
        Overflow::Wrap => Some(wrapped()),
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (incr > 0 && incr > maxincr) {
        Some(limit(max))
    } else if incr < 0 && incr < minincr {
        Some(limit(0))
    } else {
        None
    }
}

/// [`unsigned_overflow`] for a signed field (Redis's
/// `checkSignedBitfieldOverflow`).
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<Option<i64>> {
    let max: i64 = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrapped = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    let limit = |sat: i64| match ow {
        Overflow::Wrap => Some(wrapped()),
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(limit(max))
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(limit(min))
    } else {
        None
    }
}

/// Parses BITFIELD's operations, replying with the error if one is bad.
fn parse_fields(ex: &mut Exec, a: &[Bytes]) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let rem = a.len() - j - 1;
        let sub = &a[j];
        let op = if eq_ic(sub, "get") && rem >= 2 {
            FieldOp::Get
        } else if eq_ic(sub, "set") && rem >= 3 {
            FieldOp::Set(0)
        } else if eq_ic(sub, "incrby") && rem >= 3 {
            FieldOp::Incr(0)
        } else if eq_ic(sub, "overflow") && rem >= 1 {
            overflow = match &a[j + 1] {
                o if eq_ic(o, "wrap") => Overflow::Wrap,
                o if eq_ic(o, "sat") => Overflow::Sat,
                o if eq_ic(o, "fail") => Overflow::Fail,
                _ => {
                    ex.r.error("ERR Invalid OVERFLOW type specified");
                    return None;
                }
            };
            j += 2;
            continue;
        } else {
            ex.r.error(SYNTAX);
            return None;
        };
        let Some((signed, bits)) = field_type(&a[j + 1]) else {
            ex.r.error(BAD_TYPE);
            return None;
        };
        let Some(offset) = bit_offset(ex, &a[j + 2], bits) else {
            ex.r.error(BAD_OFFSET);
            return None;
        };
        let op = match op {
            FieldOp::Get => op,
            _ => {
                let Some(v) = parse_i64(&a[j + 3]) else {
                    ex.r.error(NOT_INT);
                    return None;
                };
                if matches!(op, FieldOp::Set(_)) {
                    FieldOp::Set(v)
                } else {
                    FieldOp::Incr(v)
                }
            }
        };
        fields.push(Field {
            op,
            offset,
            bits,
            signed,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Some(fields)
}

/// A GET field read from `p`, which may be shorter than the field: bytes
/// past its end read as zeros.
fn read_field(p: &[u8], f: &Field) -> i64 {
    let byte = (f.offset >> 3) as usize;
    let mut buf = [0u8; 9];
    if let Some(rest) = p.get(byte..) {
        let n = rest.len().min(9);
        buf[..n].copy_from_slice(&rest[..n]);
    }
    let v = get_field(&buf, f.offset & 7, f.bits);
    if f.signed {
        signed_field(v, f.bits)
    } else {
        v as i64
    }
}

/// A SET or INCRBY field applied to `p`: the reply (None: it overflowed
/// under FAIL and wrote nothing) and whether the field's bits changed.
fn write_field(p: &mut [u8], f: &Field) -> (Option<i64>, bool) {
    let (arg, incr) = match f.op {
        FieldOp::Set(v) => (v, false),
        FieldOp::Incr(v) => (v, true),
        FieldOp::Get => unreachable!("GET is read_field's"),
    };
    let raw = get_field(p, f.offset, f.bits);
    let (old, new, reply) = if f.signed {
        let old = signed_field(raw, f.bits);
        let (cand, by) = if incr { (old, arg) } else { (arg, 0) };
        let new = match signed_overflow(cand, by, f.bits, f.overflow) {
            None => cand.wrapping_add(by),
            Some(Some(limit)) => limit,
            Some(None) => return (None, false),
        };
        (old as u64, new as u64, if incr { new } else { old })
    } else {
        let (cand, by) = if incr { (raw, arg) } else { (arg as u64, 0) };
        let new = match unsigned_overflow(cand, by, f.bits, f.overflow) {
            None => cand.wrapping_add(by as u64),
            Some(Some(limit)) => limit,
            Some(None) => return (None, false),
        };
        (raw, new, if incr { new as i64 } else { raw as i64 })
    };
    set_field(p, f.offset, f.bits, new);
    let mask = if f.bits == 64 {
        u64::MAX
    } else {
        (1 << f.bits) - 1
    };
    (Some(reply), old & mask != new & mask)
}

/// ```text
/// BITFIELD key [GET type offset] [SET type offset value]
///              [INCRBY type offset increment] [OVERFLOW WRAP|SAT|FAIL] ...
/// ```
/// One reply per GET/SET/INCRBY: SET answers the old value, INCRBY the
/// new one, and an overflow under FAIL a null (writing nothing).
fn bitfield(ex: &mut Exec, a: &[Bytes]) {
    bitfield_generic(ex, a, false)
}

/// BITFIELD with GET operations only, allowed on a read-only replica.
fn bitfield_ro(ex: &mut Exec, a: &[Bytes]) {
    bitfield_generic(ex, a, true)
}

fn bitfield_generic(ex: &mut Exec, a: &[Bytes], ro: bool) {
    let Some(fields) = parse_fields(ex, a) else {
        return;
    };
    let highest = fields
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + f.bits as u64 - 1)
        .max();
    let Some(highest) = highest else {
        let (e, r) = ex.lookup_read_with_reply(&a[1]);
        let s: &[u8] = match e.map(|e| &e.value) {
            None => &[],
            Some(Value::Str(s)) => s,
            Some(_) => return r.error(WRONGTYPE),
        };
        r.array(fields.len());
        for f in &fields {
            r.int(read_field(s, f));
        }
        return;
    };
    if ro {
        return ex
            .r
            .error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let Ok((s, grew)) = bits_for_write(ex, &a[1], highest) else {
        return ex.r.error(WRONGTYPE);
    };
    let p = s.as_mut_bytes();
    let mut replies = Vec::with_capacity(fields.len());
    let mut changed = false;
    for f in &fields {
        if f.op == FieldOp::Get {
            replies.push(Some(read_field(p, f)));
        } else {
            let (reply, bits_changed) = write_field(p, f);
            changed |= reply.is_some() && (grew || bits_changed);
            replies.push(reply);
        }
    }
    if changed {
        ex.modified(&a[1]);
        ex.notify(notify::STRING, "setbit", &a[1]);
    } else if grew {
        // Every write overflowed under FAIL, yet the key was created or
        // padded. Redis counts no change there and replicates nothing,
        // which leaves its replicas without the key; replicating the
        // command (no event, as in Redis) keeps them equal.
        ex.dirty = true;
    }
    ex.r.array(replies.len());
    for reply in replies {
        match reply {
            Some(v) => ex.r.int(v),
            None => ex.r.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit by bit, the reference the word-at-a-time code must agree with.
    fn bit(s: &[u8], i: u64) -> bool {
        (s[(i >> 3) as usize] >> (7 - (i & 7))) & 1 == 1
    }

    #[test]
    fn popcount_and_first_bit_match_a_bit_by_bit_scan() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..3000 {
            let len = (next() % 40 + 1) as usize;
            let fill = next() % 4;
            let s: Vec<u8> = (0..len)
                .map(|_| match fill {
                    0 => 0,
                    1 => 0xff,
                    _ => next() as u8,
                })
                .collect();
            let nbits = len as u64 * 8;
            let from = next() % nbits;
            let to = from + next() % (nbits - from);
            let want = (from..=to).filter(|&i| bit(&s, i)).count() as u64;
            assert_eq!(popcount(&s, from, to), want, "{s:?} {from}..={to}");
            for b in [false, true] {
                let want = (from..=to).find(|&i| bit(&s, i) == b);
                assert_eq!(first_bit(&s, b, from, to), want, "{s:?} {b} {from}..={to}");
            }
        }
    }

    #[test]
    fn ranges_follow_redis_index_arithmetic() {
        assert_eq!(bit_range(3, 0, -1, false), Some((0, 23)));
        assert_eq!(bit_range(3, 1, 1, false), Some((8, 15)));
        assert_eq!(bit_range(3, 5, 100, true), Some((5, 23)));
        assert_eq!(bit_range(3, -100, -1, true), Some((0, 23)));
        assert_eq!(bit_range(3, 3, 10, false), None);
        assert_eq!(bit_range(0, 0, -1, false), None);
        assert_eq!(bit_range(3, i64::MIN, i64::MAX, false), Some((0, 23)));
    }

    #[test]
    fn fields_round_trip_and_sign_extend() {
        let mut p = [0u8; 10];
        set_field(&mut p, 7, 5, 23);
        assert_eq!(&p[..2], &[0b0000_0001, 0b0111_0000]);
        assert_eq!(get_field(&p, 7, 5), 23);
        set_field(&mut p, 3, 64, u64::MAX - 5);
        assert_eq!(get_field(&p, 3, 64), u64::MAX - 5);
        assert_eq!(signed_field(0b111, 3), -1);
        assert_eq!(signed_field(0b011, 3), 3);
    }

    #[test]
    fn overflow_checks_wrap_saturate_and_fail() {
        use Overflow::*;
        assert_eq!(unsigned_overflow(250, 10, 8, Wrap), Some(Some(4)));
        assert_eq!(unsigned_overflow(250, 10, 8, Sat), Some(Some(255)));
        assert_eq!(unsigned_overflow(250, 10, 8, Fail), Some(None));
        assert_eq!(unsigned_overflow(5, -10, 8, Sat), Some(Some(0)));
        assert_eq!(unsigned_overflow(5, -10, 8, Wrap), Some(Some(251)));
        assert_eq!(unsigned_overflow(5, 10, 8, Wrap), None);
        assert_eq!(signed_overflow(120, 10, 8, Wrap), Some(Some(-126)));
        assert_eq!(signed_overflow(120, 10, 8, Sat), Some(Some(127)));
        assert_eq!(signed_overflow(-120, -10, 8, Sat), Some(Some(-128)));
        assert_eq!(signed_overflow(i64::MAX, 1, 64, Wrap), Some(Some(i64::MIN)));
        assert_eq!(signed_overflow(i64::MIN, -1, 64, Sat), Some(Some(i64::MIN)));
        assert_eq!(signed_overflow(0, i64::MAX, 64, Wrap), None);
    }
}
