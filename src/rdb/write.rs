//! RDB writer: appends the pieces of a version-10 snapshot to any
//! [`BufMut`] (`Vec<u8>`, `BytesMut`), so several shards can each serialise
//! their own keys and the caller can concatenate the pieces, computing the
//! CRC over the whole stream with [`Crc64`]. Runs on the caller's thread.
//!
//! ```text
//! write_header     REDIS0010 FA.. FA..
//! write_select_db  FE <db> FB <keys> <expires>      (once per non-empty db)
//! write_entry      [FC <ms>] <type> <key> <value>   (per key)
//! write_footer     FF                               then the caller appends crc64 LE
//! ```
//!
//! Values use only the plain types every Redis loads: 0 string, 1 list,
//! 2 set, 4 hash, 5 zset2 (binary scores). Redis 7.0 converts them to its
//! compact encodings on load, exactly as when it reads its own hashtable and
//! skiplist values. Strings are written like `rdbSaveRawString` with
//! `rdbcompression yes`: canonical integers that fit 32 bits as `11`-encoded
//! integers, longer strings LZF-compressed when that saves at least 5 bytes.

use bytes::BufMut;

use super::{Crc64, RDB_VERSION, canonical_int, enc, lzf, opcode, rdb_type};
use crate::shard::keyspace::{Entry, Value};

/// Writer knobs.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// LZF-compress strings longer than 20 bytes when it pays (Redis's
    /// `rdbcompression`, default yes).
    pub compress: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { compress: true }
    }
}

/// Appends a length in the RDB variable-size encoding.
pub fn write_len(out: &mut impl BufMut, len: u64) {
    if len < 1 << 6 {
        out.put_u8(len as u8);
    } else if len < 1 << 14 {
        out.put_u8(0x40 | (len >> 8) as u8);
        out.put_u8(len as u8);
    } else if len <= u32::MAX as u64 {
        out.put_u8(enc::LEN_32);
        out.put_u32(len as u32);
    } else {
        out.put_u8(enc::LEN_64);
        out.put_u64(len);
    }
}

/// Appends a string: integer-encoded, LZF-compressed or verbatim, as Redis
/// chooses (`rdbSaveRawString`).
pub fn write_string(out: &mut impl BufMut, s: &[u8], opts: WriteOptions) {
    if s.len() <= 11
        && let Some(v) = canonical_int(s)
    {
        if let Ok(b) = i8::try_from(v) {
            out.put_u8(enc::INT8);
            out.put_i8(b);
            return;
        } else if let Ok(h) = i16::try_from(v) {
            out.put_u8(enc::INT16);
            out.put_i16_le(h);
            return;
        } else if let Ok(w) = i32::try_from(v) {
            out.put_u8(enc::INT32);
            out.put_i32_le(w);
            return;
        }
    }
    if opts.compress
        && s.len() > 20
        && let Some(c) = lzf::compress(s, s.len() - 5)
    {
        out.put_u8(enc::LZF);
        write_len(out, c.len() as u64);
        write_len(out, s.len() as u64);
        out.put_slice(&c);
        return;
    }
    write_len(out, s.len() as u64);
    out.put_slice(s);
}

/// The type byte [`write_entry`] uses for a value.
pub fn value_type(v: &Value) -> u8 {
    match v {
        Value::Str(_) => rdb_type::STRING,
        Value::List(_) => rdb_type::LIST,
        Value::Set(_) => rdb_type::SET,
        Value::Hash(_) => rdb_type::HASH,
        Value::ZSet(_) => rdb_type::ZSET_2,
    }
}

/// Appends a value body (no type byte).
pub fn write_value(out: &mut impl BufMut, v: &Value, opts: WriteOptions) {
    match v {
        Value::Str(s) => write_string(out, s, opts),
        Value::List(l) => {
            write_len(out, l.len() as u64);
            for e in l.iter() {
                write_string(out, e, opts);
            }
        }
        Value::Set(s) => {
            write_len(out, s.len() as u64);
            for m in s.iter() {
                write_string(out, m, opts);
            }
        }
        Value::Hash(h) => {
            write_len(out, h.len() as u64);
            for (f, v) in h.iter() {
                write_string(out, f, opts);
                write_string(out, v, opts);
            }
        }
        Value::ZSet(z) => {
            write_len(out, z.len() as u64);
            // Highest score first, like Redis: its loader then inserts every
            // member at the head of the skiplist.
            for (m, score) in z.iter_rev() {
                write_string(out, m, opts);
                out.put_f64_le(score);
            }
        }
    }
}

/// Appends the magic, version and AUX fields.
///
/// ```text
/// "REDIS0010" (FA <str key> <str value>)*
/// ```
pub fn write_header<K, V>(out: &mut impl BufMut, aux: &[(K, V)])
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    out.put_slice(b"REDIS");
    out.put_slice(format!("{RDB_VERSION:04}").as_bytes());
    for (k, v) in aux {
        out.put_u8(opcode::AUX);
        write_string(out, k.as_ref(), WriteOptions::default());
        write_string(out, v.as_ref(), WriteOptions::default());
    }
}

/// Replication fields of the header (what a master puts in the snapshot it
/// sends for a full resync).
#[derive(Clone, Debug)]
pub struct ReplInfo {
    /// The db the replication stream has SELECTed (`-1` = none yet).
    pub stream_db: i64,
    /// The 40-character replication id.
    pub repl_id: String,
    /// The replication offset the snapshot corresponds to.
    pub offset: i64,
}

/// The AUX fields Redis 7.0.15 writes, in its order: `redis-ver`,
/// `redis-bits`, `ctime` (unix seconds), `used-mem`, the replication trio
/// when given, `aof-base` 0.
pub fn default_aux(
    ctime_secs: u64,
    used_mem: u64,
    repl: Option<&ReplInfo>,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut aux = vec![
        ("redis-ver", b"7.0.15".to_vec()),
        ("redis-bits", b"64".to_vec()),
        ("ctime", ctime_secs.to_string().into_bytes()),
        ("used-mem", used_mem.to_string().into_bytes()),
    ];
    if let Some(r) = repl {
        aux.push(("repl-stream-db", r.stream_db.to_string().into_bytes()));
        aux.push(("repl-id", r.repl_id.clone().into_bytes()));
        aux.push(("repl-offset", r.offset.to_string().into_bytes()));
    }
    aux.push(("aof-base", b"0".to_vec()));
    aux
}

/// Appends SELECTDB and the RESIZEDB sizing hint for a database section.
pub fn write_select_db(out: &mut impl BufMut, db: u64, db_size: u64, expires_size: u64) {
    out.put_u8(opcode::SELECTDB);
    write_len(out, db);
    out.put_u8(opcode::RESIZEDB);
    write_len(out, db_size);
    write_len(out, expires_size);
}

/// Appends one key: its expire (if any), type, name and value.
pub fn write_entry(out: &mut impl BufMut, key: &[u8], entry: &Entry) {
    write_entry_with(out, key, entry, WriteOptions::default());
}

/// [`write_entry`] with explicit options.
pub fn write_entry_with(out: &mut impl BufMut, key: &[u8], entry: &Entry, opts: WriteOptions) {
    if entry.expire_at != 0 {
        out.put_u8(opcode::EXPIRETIME_MS);
        out.put_u64_le(entry.expire_at);
    }
    out.put_u8(value_type(&entry.value));
    write_string(out, key, opts);
    write_value(out, &entry.value, opts);
}

/// Appends the end-of-file opcode; the caller appends the CRC-64 of the
/// whole stream (this byte included) as 8 little-endian bytes.
pub fn write_footer(out: &mut impl BufMut) {
    out.put_u8(opcode::EOF);
}

/// A whole RDB file in one buffer, CRC included: header with `aux`, then
/// each database (skipped when empty) in the order given. For tests and for
/// saving small data sets; large snapshots should stream the pieces.
pub fn write_snapshot<'a, K, A, B>(
    dbs: impl IntoIterator<Item = (u64, &'a [(K, Entry)])>,
    aux: &[(A, B)],
) -> Vec<u8>
where
    K: AsRef<[u8]> + 'a,
    A: AsRef<[u8]>,
    B: AsRef<[u8]>,
{
    let mut out = Vec::new();
    write_header(&mut out, aux);
    for (db, entries) in dbs {
        if entries.is_empty() {
            continue;
        }
        let expires = entries.iter().filter(|(_, e)| e.expire_at != 0).count();
        write_select_db(&mut out, db, entries.len() as u64, expires as u64);
        for (k, e) in entries {
            write_entry(&mut out, k.as_ref(), e);
        }
    }
    write_footer(&mut out);
    let crc = Crc64::checksum(&out);
    out.put_u64_le(crc);
    out
}

/// A DUMP payload: type byte, value, RDB version (u16 LE), CRC-64 (u64 LE)
/// of everything before the CRC.
///
/// ```text
/// <type> <value> 0A 00 <crc64 LE>
/// ```
pub fn dump_payload(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u8(value_type(value));
    write_value(&mut out, value, WriteOptions::default());
    out.put_u16_le(RDB_VERSION);
    let crc = Crc64::checksum(&out);
    out.put_u64_le(crc);
    out
}
