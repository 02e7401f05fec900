//! HyperLogLog: PFADD, PFCOUNT, PFMERGE, PFDEBUG and PFSELFTEST, byte for
//! byte as Redis 7.0's `hyperloglog.c` stores them.
//!
//! An HLL is a plain string value, so it travels through GET/SET, DUMP,
//! RDB files and replication as bytes; its layout must therefore be
//! Redis's exactly, or a stock replica (or a later PFADD there) would read
//! something else. The layout:
//!
//! - a 16-byte header: `HYLL`, the encoding (0 dense, 1 sparse), three zero
//!   bytes, and the cached cardinality as 8 little-endian bytes whose top
//!   bit set means "stale";
//! - 16384 registers (the low 14 bits of a MurmurHash64A of the element
//!   pick one; it keeps the longest run of zeros, plus one, seen in the
//!   other 50 bits);
//! - dense: 6 bits per register, LSB first, 12288 bytes;
//! - sparse: run-length opcodes, `00xxxxxx` ZERO (1-64 zero registers),
//!   `01xxxxxx yyyyyyyy` XZERO (1-16384), `1vvvvvxx` VAL (1-4 registers of
//!   value 1-32). A new HLL is sparse; it turns dense when a value passes
//!   32 or the string would pass `hll-sparse-max-bytes`.
//!
//! The estimator is Ertl's, as Redis 7.0 computes it, so PFCOUNT answers
//! the same number. PFCOUNT of one key caches the cardinality in the
//! header, a write Redis replicates; so does tether (`repl::master`).

use bytes::Bytes;

use super::notify;
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, Multi, eq_ic};
use crate::shard::keyspace::{Entry, Str, Value};

pub static COMMANDS: [CmdSpec; 5] = [
    keyed!("pfadd", -2, &["write", "denyoom", "fast"], 1, 1, 1, pfadd),
    keyed!(
        "pfcount",
        -2,
        &["readonly"],
        1,
        -1,
        1,
        pfcount,
        Multi::Scratch
    ),
    keyed!(
        "pfmerge",
        -2,
        &["write", "denyoom"],
        1,
        -1,
        1,
        pfmerge,
        Multi::Scratch
    ),
    keyed!(
        "pfdebug",
        3,
        &["write", "denyoom", "admin"],
        2,
        2,
        1,
        pfdebug
    ),
    CmdSpec {
        name: "pfselftest",
        arity: 1,
        flags: &["admin"],
        first_key: 0,
        last_key: 0,
        step: 0,
        numkeys: 0,
        kind: Kind::Keyless(pfselftest),
        stat: crate::cmd::StatSlot::new(),
    },
];

const HDR: usize = 16;
const P: u32 = 14;
const Q: u32 = 64 - P;
const REGISTERS: usize = 1 << P;
const BITS: usize = 6;
const REG_MAX: u8 = (1 << BITS) - 1;
const DENSE_SIZE: usize = HDR + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln 2, as Redis spells it (the same double).
#[allow(clippy::excessive_precision)]
const ALPHA_INF: f64 = 0.721347520444481703680;

const INVALID: &str = "INVALIDOBJ Corrupted HLL object detected";
const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// Redis's MurmurHash2, 64-bit, reading words little-endian.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut k = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element updates and the value it offers it: the run
/// of zeros (plus one) above the index bits of its hash.
fn pattern(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = regs[byte] as u16;
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) as u8) & REG_MAX
}

fn dense_put(regs: &mut [u8], i: usize, val: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = val as u16;
    regs[byte] &= !((REG_MAX as u16) << fb) as u8;
    regs[byte] |= (v << fb) as u8;
    // The last register ends inside its byte (fb <= 2): nothing spills.
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((REG_MAX as u16) >> (8 - fb)) as u8;
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// Raises register `i` to `count`; whether it changed.
fn dense_set(regs: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(regs, i) {
        dense_put(regs, i, count);
        true
    } else {
        false
    }
}

/// A sparse opcode at `s[p]`: (registers covered, value, bytes).
/// XZERO's second byte reads as 0 past the end (Redis reads the string's
/// terminator there).
fn opcode(s: &[u8], p: usize) -> (usize, u8, usize) {
    opcode_past(s, p, 0)
}

/// [`opcode`] with `past` as the byte past the string's end: what Redis's
/// buffer holds there (see [`Past`]).
fn opcode_past(s: &[u8], p: usize, past: u8) -> (usize, u8, usize) {
    let b = s[p];
    if b & 0xc0 == 0 {
        ((b & 0x3f) as usize + 1, 0, 1)
    } else if b & 0x80 == 0 {
        let lo = s.get(p + 1).copied().unwrap_or(past) as usize;
        ((((b & 0x3f) as usize) << 8 | lo) + 1, 0, 2)
    } else {
        ((b & 0x3) as usize + 1, ((b >> 2) & 0x1f) + 1, 1)
    }
}

fn val_op(val: u8, len: usize) -> u8 {
    ((val - 1) << 2 | (len as u8 - 1)) | 0x80
}

/// Appends a ZERO or XZERO opcode covering `len` registers.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let l = len - 1;
        seq.push((l >> 8) as u8 | 0x40);
        seq.push((l & 0xff) as u8);
    } else {
        seq.push(len as u8 - 1);
    }
}

/// A new, empty HLL: sparse, all registers in XZERO opcodes.
fn new_hll() -> Vec<u8> {
    let mut s = vec![0u8; HDR];
    s[..4].copy_from_slice(b"HYLL");
    s[4] = SPARSE;
    let mut left = REGISTERS;
    while left > 0 {
        let n = left.min(XZERO_MAX_LEN);
        push_zeros(&mut s, n);
        left -= n;
    }
    s
}

/// Redis's `isHLLObjectOrReply` on a string: header, magic, encoding,
/// and a dense HLL's exact length.
fn is_hll(s: &[u8]) -> bool {
    s.len() >= HDR
        && &s[..4] == b"HYLL"
        && s[4] <= SPARSE
        && (s[4] != DENSE || s.len() == DENSE_SIZE)
}

fn invalidate(s: &mut [u8]) {
    s[15] |= 0x80;
}

/// Walks a sparse HLL's opcodes, calling `f(first register, registers,
/// value)` for each. `Err` if one would run past the last register or
/// they do not cover all 16384: the overflow checks of Debian's Redis
/// 7.0.15 (CVE-2025-32023), which refuse any run past the end, where
/// upstream 7.0.15 stopped at a VAL run and could accept the HLL.
fn walk(s: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), ()> {
    let (mut p, mut idx) = (HDR, 0usize);
    while p < s.len() {
        let (run, val, len) = opcode(s, p);
        if idx + run > REGISTERS {
            return Err(());
        }
        f(idx, run, val);
        idx += run;
        p += len;
    }
    if idx == REGISTERS { Ok(()) } else { Err(()) }
}

/// Rewrites a sparse HLL as dense; `Err` if the opcodes do not cover
/// exactly the 16384 registers.
fn to_dense(s: &mut Vec<u8>) -> Result<(), ()> {
    if s[4] == DENSE {
        return Ok(());
    }
    let mut d = vec![0u8; DENSE_SIZE];
    d[..HDR].copy_from_slice(&s[..HDR]);
    d[4] = DENSE;
    walk(s, |idx, run, val| {
        if val > 0 {
            for i in idx..idx + run {
                dense_put(&mut d[HDR..], i, val);
            }
        }
    })?;
    *s = d;
    Ok(())
}

/// Redis's `hllSparseSet`: raises register `index` of a sparse HLL to
/// `count`, splitting the opcode that covers it and merging equal VAL
/// neighbours after; promotes to dense when `count` is too big for VAL
/// or the string would pass `max_bytes`. Whether it changed; `Err` on a
/// corrupt HLL.
///
/// `past` is the byte Redis's buffer holds just past the string (see
/// [`Past`]), kept up to date across the adds of one command.
fn sparse_set(
    s: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
    past: &mut Past,
) -> Result<bool, ()> {
    if count > VAL_MAX_VALUE {
        *past = 0;
        return promote(s, index, count);
    }
    let end = s.len();
    let (mut p, mut first, mut span) = (HDR, 0usize, 0usize);
    let mut prev = None;
    let mut oplen = 1;
    while p < end {
        let op = opcode_past(s, p, *past);
        span = op.0;
        oplen = op.2;
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(());
    }
    let (runlen, curval, _) = opcode_past(s, p, *past);
    let is_val = s[p] & 0x80 != 0;
    if is_val {
        if curval >= count {
            return Ok(false);
        }
        if runlen == 1 {
            s[p] = val_op(count, 1);
            merge_vals(s, prev.unwrap_or(HDR), past);
            return Ok(true);
        }
    }
    if oplen == 1 && !is_val && runlen == 1 {
        s[p] = val_op(count, 1);
        merge_vals(s, prev.unwrap_or(HDR), past);
        return Ok(true);
    }
    // The general case: split the opcode into up to three.
    let last = first + span - 1;
    let mut seq = Vec::with_capacity(5);
    if is_val {
        if index != first {
            seq.push(val_op(curval, index - first));
        }
        seq.push(val_op(count, 1));
        if index != last {
            seq.push(val_op(curval, last - index));
        }
    } else {
        if index != first {
            push_zeros(&mut seq, index - first);
        }
        seq.push(val_op(count, 1));
        if index != last {
            push_zeros(&mut seq, last - index);
        }
    }
    if seq.len() > oplen && s.len() + seq.len() - oplen > max_bytes {
        *past = 0;
        return promote(s, index, count);
    }
    // An XZERO cut short by the string's end is one byte: Redis still
    // counts it as two, so its string ends one byte short of the new
    // sequence, whose last byte stays in the buffer just past the end
    // (written over the terminator). Corrupt input only, but the bytes
    // must stay Redis's.
    let new_len = s.len() + seq.len() - oplen;
    let stop = (p + oplen).min(s.len());
    *past = if p + oplen > s.len() {
        seq[seq.len() - 1]
    } else {
        0
    };
    s.splice(p..stop, seq);
    s.truncate(new_len);
    merge_vals(s, prev.unwrap_or(HDR), past);
    Ok(true)
}

/// The byte Redis's sparse HLL buffer holds just past the string's end,
/// which it reads as the second byte of an XZERO cut short by the end (a
/// corrupt HLL). Redis writes its terminator, 0, whenever it resizes the
/// string; only an XZERO so cut, rewritten by `hllSparseSet`, leaves the
/// new sequence's last byte there instead. tether tracks it through the
/// adds of one command; a command starts from 0.
type Past = u8;

/// Step 4 of `hllSparseSet`: merges adjacent VAL opcodes of one value
/// (up to 4 registers) among the 5 opcodes from `p`, then marks the
/// cached cardinality stale.
/// A merge shortens the string, and Redis writes its terminator at the
/// new end (`past` becomes 0).
fn merge_vals(s: &mut Vec<u8>, mut p: usize, past: &mut Past) {
    let mut scan = 5;
    while p < s.len() && scan > 0 {
        scan -= 1;
        let b = s[p];
        if b & 0xc0 == 0x40 {
            p += 2;
            continue;
        } else if b & 0xc0 == 0 {
            p += 1;
            continue;
        }
        if p + 1 < s.len() && s[p + 1] & 0x80 != 0 {
            let (l1, v1, _) = opcode(s, p);
            let (l2, v2, _) = opcode(s, p + 1);
            if v1 == v2 && l1 + l2 <= VAL_MAX_LEN {
                s[p + 1] = val_op(v1, l1 + l2);
                s.remove(p);
                *past = 0;
                continue;
            }
        }
        p += 1;
    }
    invalidate(s);
}

fn promote(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, ()> {
    to_dense(s)?;
    let changed = dense_set(&mut s[HDR..], index, count);
    debug_assert!(changed, "a promotion always raises the register");
    Ok(changed)
}

/// Adds one element: whether a register changed; `Err` on a corrupt HLL.
fn add(s: &mut Vec<u8>, ele: &[u8], max_bytes: usize, past: &mut Past) -> Result<bool, ()> {
    let (index, count) = pattern(ele);
    match s[4] {
        DENSE => Ok(dense_set(&mut s[HDR..], index, count)),
        _ => sparse_set(s, index, count, max_bytes, past),
    }
}

/// Raises `max` to this HLL's registers; `Err` on a corrupt sparse one.
fn merge_into(max: &mut [u8; REGISTERS], s: &[u8]) -> Result<(), ()> {
    if s[4] == DENSE {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(&s[HDR..], i));
        }
        return Ok(());
    }
    walk(s, |i, run, val| {
        for m in &mut max[i..i + run] {
            *m = (*m).max(val);
        }
    })
}

/// Histogram of register values; `Err` when a sparse HLL's opcodes do not
/// cover exactly the 16384 registers.
fn histogram(s: &[u8]) -> Result<[u32; 64], ()> {
    let mut h = [0u32; 64];
    if s[4] == DENSE {
        for i in 0..REGISTERS {
            h[dense_get(&s[HDR..], i) as usize] += 1;
        }
        return Ok(h);
    }
    walk(s, |_, run, val| h[val as usize] += run as u32)?;
    Ok(h)
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// The estimate from a register histogram (Ertl, arXiv:1702.01284), in
/// Redis's order of operations so that it rounds the same.
fn estimate(h: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - h[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += h[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// The HLL at `key`, for writing: `Ok(None)` when missing, `Err(reply)`
/// when the key holds something else.
fn hll_at<'e>(ex: &'e mut Exec, key: &[u8]) -> Result<Option<&'e mut Str>, &'static str> {
    match ex.lookup_write(key) {
        None => Ok(None),
        Some(Entry {
            value: Value::Str(s),
            ..
        }) if is_hll(s) => Ok(Some(s)),
        Some(Entry {
            value: Value::Str(_),
            ..
        }) => Err(NOT_HLL),
        Some(_) => Err(super::WRONGTYPE),
    }
}

/// The HLL at `key`, created empty (raising `new`) when missing, as
/// Redis's PFADD and PFMERGE do before they add. Whether it was created.
fn hll_or_new(ex: &mut Exec, key: &[u8]) -> Result<bool, &'static str> {
    if hll_at(ex, key)?.is_some() {
        return Ok(false);
    }
    let mut s = Str::from(new_hll());
    s.mark_raw();
    ex.insert_new(key, Value::Str(s));
    Ok(true)
}

/// Runs `f` on the bytes of the HLL at `key` (which must exist), moved
/// out of the entry and stored back after, so a dense HLL is not copied.
fn edit<T>(ex: &mut Exec, key: &[u8], f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let Ok(Some(s)) = hll_at(ex, key) else {
        unreachable!("edit of a checked HLL");
    };
    let mut v = s.take_vec();
    let out = f(&mut v);
    *s = Str::from(v);
    s.mark_raw();
    out
}

fn sparse_max(ex: &Exec) -> usize {
    ex.shard.hll_sparse_max.get() as usize
}

/// ```text
/// PFADD key [element ...] -> 1 if a register changed (or the key was
/// created), else 0
/// ```
fn pfadd(ex: &mut Exec, a: &[Bytes]) {
    let key = &a[1];
    let max = sparse_max(ex);
    let created = match hll_or_new(ex, key) {
        Ok(c) => c,
        Err(e) => return ex.r.error(e),
    };
    let result = edit(ex, key, |v| {
        let mut updated = created;
        let mut past = 0;
        for ele in &a[2..] {
            // A corrupt HLL stops the adds; as in Redis, what was added
            // stays, unannounced and unreplicated.
            updated |= add(v, ele, max, &mut past)?;
        }
        if updated {
            invalidate(v);
        }
        Ok::<bool, ()>(updated)
    });
    match result {
        Err(()) => ex.r.error(INVALID),
        Ok(updated) => {
            if updated {
                ex.modified(key);
                ex.notify(notify::STRING, "pfadd", key);
            }
            ex.r.int(updated as i64)
        }
    }
}

/// ```text
/// PFCOUNT key [key ...] -> estimated cardinality (of the union)
/// ```
/// One key: the cached estimate, or a fresh one written to the cache (a
/// change, replicated as Redis does). Several keys: the estimate of their
/// union, computed on a copy; nothing is written.
fn pfcount(ex: &mut Exec, a: &[Bytes]) {
    if a.len() > 2 {
        let mut max = [0u8; REGISTERS];
        for key in &a[1..] {
            match ex.lookup_read(key).map(|e| &e.value) {
                None => continue,
                Some(Value::Str(s)) if is_hll(s) => {
                    if merge_into(&mut max, s).is_err() {
                        return ex.r.error(INVALID);
                    }
                }
                Some(Value::Str(_)) => return ex.r.error(NOT_HLL),
                Some(_) => return ex.r.error(super::WRONGTYPE),
            }
        }
        let mut h = [0u32; 64];
        for &r in &max {
            h[r as usize] += 1;
        }
        return ex.r.int(estimate(&h) as i64);
    }
    let key = &a[1];
    let bytes = match ex.lookup_read(key).map(|e| &mut e.value) {
        None => return ex.r.int(0),
        Some(Value::Str(s)) if is_hll(s) => {
            // Redis unshares the value here even to read the cache.
            s.mark_raw();
            s.as_mut_bytes()
        }
        Some(Value::Str(_)) => return ex.r.error(NOT_HLL),
        Some(_) => return ex.r.error(super::WRONGTYPE),
    };
    if bytes[15] & 0x80 == 0 {
        let card = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        return ex.r.int(card as i64);
    }
    let Ok(h) = histogram(bytes) else {
        return ex.r.error(INVALID);
    };
    let card = estimate(&h);
    bytes[8..16].copy_from_slice(&card.to_le_bytes());
    ex.modified(key);
    ex.r.int(card as i64)
}

/// ```text
/// PFMERGE destkey [sourcekey ...] -> OK
/// ```
/// The destination's own registers count too; it turns dense if any
/// input is dense.
fn pfmerge(ex: &mut Exec, a: &[Bytes]) {
    let mut max = [0u8; REGISTERS];
    let mut use_dense = false;
    for key in &a[1..] {
        match ex.lookup_read(key).map(|e| &e.value) {
            None => continue,
            Some(Value::Str(s)) if is_hll(s) => {
                use_dense |= s[4] == DENSE;
                if merge_into(&mut max, s).is_err() {
                    return ex.r.error(INVALID);
                }
            }
            Some(Value::Str(_)) => return ex.r.error(NOT_HLL),
            Some(_) => return ex.r.error(super::WRONGTYPE),
        }
    }
    let dest = &a[1];
    let sparse_max = sparse_max(ex);
    if let Err(e) = hll_or_new(ex, dest) {
        return ex.r.error(e);
    }
    let merged = edit(ex, dest, |v| {
        if use_dense {
            to_dense(v)?;
        }
        let mut past = 0;
        for (i, &m) in max.iter().enumerate() {
            if m == 0 {
                continue;
            }
            if v[4] == DENSE {
                dense_set(&mut v[HDR..], i, m);
            } else {
                // As in Redis, a failure here goes unreported: the
                // destination was checked with the sources above.
                let _ = sparse_set(v, i, m, sparse_max, &mut past);
            }
        }
        invalidate(v);
        Ok::<(), ()>(())
    });
    if merged.is_err() {
        return ex.r.error(INVALID);
    }
    ex.modified(dest);
    ex.notify(notify::STRING, "pfadd", dest);
    ex.r.ok()
}

/// ```text
/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key
/// ```
/// GETREG and TODENSE turn a sparse HLL dense, a change Redis replicates
/// (with no event).
fn pfdebug(ex: &mut Exec, a: &[Bytes]) {
    let (sub, key) = (&a[1], &a[2]);
    let v = match hll_at(ex, key) {
        Ok(Some(s)) => {
            s.mark_raw();
            s.to_vec()
        }
        Ok(None) => return ex.r.error("ERR The specified key does not exist"),
        Err(e) => return ex.r.error(e),
    };
    if eq_ic(sub, "getreg") || eq_ic(sub, "todense") {
        let sparse = v[4] == SPARSE;
        let mut dense = v;
        if sparse {
            if to_dense(&mut dense).is_err() {
                return ex.r.error(INVALID);
            }
            edit(ex, key, |s| s.clone_from(&dense));
            ex.dirty = true;
        }
        if eq_ic(sub, "todense") {
            return ex.r.int(sparse as i64);
        }
        ex.r.array(REGISTERS);
        for i in 0..REGISTERS {
            ex.r.int(dense_get(&dense[HDR..], i) as i64);
        }
    } else if eq_ic(sub, "decode") {
        if v[4] != SPARSE {
            return ex.r.error("ERR HLL encoding is not sparse");
        }
        let mut out = Vec::new();
        let mut p = HDR;
        while p < v.len() {
            let (run, val, len) = opcode(&v, p);
            out.push(match (val, len) {
                (0, 1) => format!("z:{run}"),
                (0, _) => format!("Z:{run}"),
                _ => format!("v:{val},{run}"),
            });
            p += len;
        }
        ex.r.bulk(out.join(" ").as_bytes());
    } else if eq_ic(sub, "encoding") {
        ex.r.simple(if v[4] == DENSE { "dense" } else { "sparse" });
    } else {
        ex.r.error(&format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(sub)
        ));
    }
}

/// PFSELFTEST: Redis's check of the register code and of the estimate's
/// error, dense against sparse, up to 10 million elements (a second or
/// so, blocking this shard as it blocks Redis).
fn pfselftest(ex: &mut Exec, _a: &[Bytes]) {
    let mut rng = fastrand::Rng::new();
    let mut dense = vec![0u8; DENSE_SIZE];
    let mut bytes = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = rng.u8(..) & REG_MAX;
            dense_put(&mut dense[HDR..], i, *b);
        }
        for (i, &b) in bytes.iter().enumerate() {
            let got = dense_get(&dense[HDR..], i);
            if got != b {
                return ex.r.error(&format!(
                    "TESTFAILED Register {i} should be {b} but is {got}"
                ));
            }
        }
    }
    dense[HDR..].fill(0);
    dense[..4].copy_from_slice(b"HYLL");
    let mut sparse = new_hll();
    let max_bytes = sparse_max(ex);
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let seed = rng.u64(..);
    let mut checkpoint: u64 = 1;
    for j in 1..=10_000_000u64 {
        let ele = (j ^ seed).to_ne_bytes();
        let (index, count) = pattern(&ele);
        dense_set(&mut dense[HDR..], index, count);
        if add(&mut sparse, &ele, max_bytes, &mut 0).is_err() {
            return ex.r.error("TESTFAILED sparse HLL corrupted");
        }
        if j != checkpoint {
            continue;
        }
        if j < max_bytes as u64 / 2 && sparse[4] != SPARSE {
            return ex.r.error("TESTFAILED sparse encoding not used");
        }
        let (Ok(hd), Ok(hs)) = (histogram(&dense), histogram(&sparse)) else {
            return ex.r.error("TESTFAILED invalid HLL");
        };
        let card = estimate(&hd);
        if card != estimate(&hs) {
            return ex.r.error("TESTFAILED dense/sparse disagree");
        }
        let abserr = checkpoint.abs_diff(card);
        let maxerr = if j == 10 {
            1
        } else {
            (relerr * 6.0 * checkpoint as f64).ceil() as u64
        };
        if abserr > maxerr {
            return ex.r.error(&format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{abserr}"
            ));
        }
        checkpoint *= 10;
    }
    ex.r.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_registers_round_trip_without_touching_neighbours() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        let mut rng = fastrand::Rng::with_seed(7);
        let vals: Vec<u8> = (0..REGISTERS).map(|_| rng.u8(..) & REG_MAX).collect();
        for (i, &v) in vals.iter().enumerate() {
            dense_put(&mut regs, i, v);
        }
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(dense_get(&regs, i), v, "register {i}");
        }
    }

    #[test]
    fn sparse_and_dense_agree_and_promote() {
        let mut sparse = new_hll();
        assert_eq!(sparse.len(), 18);
        let mut dense = new_hll();
        to_dense(&mut dense).unwrap();
        for j in 0..5000u32 {
            let e = j.to_le_bytes();
            add(&mut sparse, &e, 3000, &mut 0).unwrap();
            add(&mut dense, &e, 3000, &mut 0).unwrap();
            if j % 97 == 0 {
                assert_eq!(
                    estimate(&histogram(&sparse).unwrap()),
                    estimate(&histogram(&dense).unwrap())
                );
                let mut d = sparse.clone();
                to_dense(&mut d).unwrap();
                assert_eq!(d[HDR..], dense[HDR..], "after {j}");
            }
        }
        assert_eq!(sparse[4], DENSE, "5000 elements outgrow 3000 sparse bytes");
        let card = estimate(&histogram(&dense).unwrap());
        assert!(card.abs_diff(5000) < 5000 * 3 / 100, "{card}");
    }

    /// An HLL whose last opcode is an XZERO cut short (APPEND "\x7f"):
    /// Redis reads its missing byte from the buffer past the string, 0 at
    /// first, then the last byte of the sequence the first add wrote over
    /// it. Bytes from stock Redis 7.0.15 (diff_hll seed 567772813).
    #[test]
    fn adds_past_a_cut_xzero_read_what_redis_left_there() {
        let mut s = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
        s.extend_from_slice(b"Mk\x80F\x91\x80@\xa5\x88\xc2\xb8\x7f");
        let mut past = 0;
        for e in [
            "e869598", "e255216", "e207976", "e794376", "e415242", "", "e748376",
        ] {
            add(&mut s, e.as_bytes(), 3000, &mut past).unwrap();
        }
        invalidate(&mut s);
        let mut want = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
        want.extend_from_slice(
            b"Mk\x80F\x91\x80@\xa5\x88\xc2\xb8B\x86\x84B\xd7\x8cM\n\x88D\xa3\x80Ar\x80L\x00\x80FM\x9cS",
        );
        assert_eq!(s, want);
    }

    #[test]
    fn corrupt_sparse_is_an_error_not_a_panic() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..3000 {
            let mut s = new_hll();
            for j in 0..rng.usize(..300) {
                add(&mut s, &(j as u64).to_le_bytes(), 3000, &mut 0).unwrap();
            }
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..s.len());
                s[at] = rng.u8(..);
            }
            if !is_hll(&s) {
                continue;
            }
            let _ = histogram(&s);
            let _ = add(&mut s.clone(), b"x", 3000, &mut 0);
            let mut max = [0u8; REGISTERS];
            let _ = merge_into(&mut max, &s);
            let _ = to_dense(&mut s.clone());
        }
    }
}
