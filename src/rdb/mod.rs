//! RDB version 10 codec: the snapshot format of Redis 7.0, used for SAVE /
//! BGSAVE files, full-resynchronisation payloads and DUMP / RESTORE. Pure
//! functions and a resumable parser over byte buffers; no I/O, no keyspace
//! access, so it runs on whichever shard (or helper thread) calls it.
//!
//! # The file
//!
//! ```text
//! "REDIS0010"                                  magic + 4 ASCII digits of version
//! FA <str key> <str value>                     AUX field (repeated)
//! F5 <str library code>                        function library (7.0, optional)
//! FE <len db>                                  SELECTDB
//! FB <len db_size> <len expires_size>          RESIZEDB (a sizing hint)
//! [FC <u64 LE unix ms>] [F8 <len idle>] [F9 <u8 freq>]   per-key attributes
//! <u8 type> <str key> <value>                  one key
//! ...                                          more keys, more FE sections
//! FF <u64 LE crc64>                            end; CRC over every byte before it
//! ```
//!
//! The CRC is CRC-64/Jones (reflected, init 0, `crc::CRC_64_REDIS`); a
//! stored 0 means "saved with rdbchecksum no" and is not checked. Versions
//! before 5 have no CRC at all.
//!
//! # Lengths and strings
//!
//! ```text
//! 00xxxxxx                     6-bit length
//! 01xxxxxx xxxxxxxx            14-bit length (big-endian)
//! 10000000 <u32 BE>            32-bit length
//! 10000001 <u64 BE>            64-bit length
//! 11000000 <i8>                string holding a decimal integer (int8)
//! 11000001 <i16 LE>            ... int16
//! 11000010 <i32 LE>            ... int32
//! 11000011 <len clen> <len len> <clen bytes>   LZF-compressed string
//! ```
//!
//! A string is a length followed by that many bytes, or one of the `11`
//! encodings above.
//!
//! # Value types
//!
//! | type | value layout | written by |
//! |---|---|---|
//! | 0 string | `<str>` | everyone |
//! | 1 list | `<len n> n*<str>` | ≤ 3.0 (and tether) |
//! | 2 set | `<len n> n*<str>` | 7.0 (hashtable sets), tether |
//! | 3 zset | `<len n> n*(<str member> <double as text>)` | ≤ 4.0 |
//! | 4 hash | `<len n> n*(<str field> <str value>)` | 7.0 (hashtable), tether |
//! | 5 zset2 | `<len n> n*(<str member> <f64 LE>)` | 7.0 (skiplist), tether |
//! | 9 zipmap hash | `<str zipmap>` | ≤ 2.4 |
//! | 10 ziplist list | `<str ziplist>` | ≤ 3.0 |
//! | 11 intset | `<str intset>` | 7.0 |
//! | 12 ziplist zset | `<str ziplist>` member, score, ... | ≤ 6.2 |
//! | 13 ziplist hash | `<str ziplist>` field, value, ... | ≤ 6.2 |
//! | 14 quicklist | `<len nodes> nodes*<str ziplist>` | 3.2 – 6.2 |
//! | 16 listpack hash | `<str listpack>` field, value, ... | 7.0 |
//! | 17 listpack zset | `<str listpack>` member, score, ... | 7.0 |
//! | 18 quicklist2 | `<len nodes> nodes*(<len container> <str>)`; container 1 = one plain element, 2 = listpack | 7.0 |
//! | 20 listpack set | `<str listpack>` | 7.2 |
//! | 6, 7 module; 15, 19, 21 stream | rejected with a typed error | |
//!
//! The text-double of type 3 is `<u8 len> <len ASCII bytes>`, with the lengths
//! 253 = NaN, 254 = +inf, 255 = -inf standing alone.
//!
//! The compact blobs (listpack, ziplist, zipmap, intset) are described in
//! their own modules; every one is validated strictly, with bounds checks,
//! before any element is used.
//!
//! # What is where
//!
//! - [`write`]: the writer (header, SELECTDB, entries, footer, DUMP payloads).
//!   It emits only types 0, 1, 2, 4 and 5 with plain strings, which every
//!   Redis since 2.x loads (7.0 converts them to its compact encodings).
//! - [`load`]: the resumable [`Loader`], [`load_file`] and [`restore_payload`].
//! - [`lzf`], [`listpack`], [`ziplist`], [`intset`]: the nested encodings,
//!   each with a strict decoder and an encoder (the encoders build test
//!   fixtures and let a future writer emit Redis's compact types).

pub mod intset;
pub mod listpack;
pub mod load;
pub mod lzf;
pub mod write;
pub mod ziplist;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;
use crc::{CRC_64_REDIS, Crc, Digest, Table};

pub use load::{
    Event, LoadedKey, Loader, load_events, load_file, restore_payload, restore_payload_lenient,
};
pub use write::{
    ReplInfo, WriteOptions, default_aux, dump_payload, write_entry, write_entry_with, write_footer,
    write_header, write_select_db, write_snapshot,
};

/// The RDB version this codec writes (Redis 7.0's).
pub const RDB_VERSION: u16 = 10;

/// Longest string (or decompressed LZF string, or nested blob) the loader
/// accepts by default: Redis's default `proto-max-bulk-len`. A larger
/// length field is treated as corruption rather than allocated.
pub const DEFAULT_MAX_STRING: u64 = 512 * 1024 * 1024;

/// Opcodes that may appear where a value type byte is expected.
pub mod opcode {
    /// Function library (7.0 GA format): one string of library code.
    pub const FUNCTION2: u8 = 0xF5;
    /// Function library, 7.0 release-candidate format (not supported).
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    /// Module auxiliary data (not supported).
    pub const MODULE_AUX: u8 = 0xF7;
    /// LRU idle time of the next key, a length.
    pub const IDLE: u8 = 0xF8;
    /// LFU frequency of the next key, one byte.
    pub const FREQ: u8 = 0xF9;
    /// Auxiliary field: two strings.
    pub const AUX: u8 = 0xFA;
    /// Hash-table sizing hint: two lengths.
    pub const RESIZEDB: u8 = 0xFB;
    /// Expire time of the next key, u64 LE unix milliseconds.
    pub const EXPIRETIME_MS: u8 = 0xFC;
    /// Expire time of the next key, i32 LE unix seconds (RDB < 3).
    pub const EXPIRETIME: u8 = 0xFD;
    /// Select database: a length.
    pub const SELECTDB: u8 = 0xFE;
    /// End of file; the 8-byte CRC follows (RDB >= 5).
    pub const EOF: u8 = 0xFF;
}

/// Value type bytes (`RDB_TYPE_*`).
pub mod rdb_type {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

/// Special first bytes of a length (`RDB_32BITLEN`, `RDB_64BITLEN`) and the
/// `11xxxxxx` string encodings (`RDB_ENC_*`).
pub(crate) mod enc {
    pub const LEN_32: u8 = 0x80;
    pub const LEN_64: u8 = 0x81;
    pub const INT8: u8 = 0xC0;
    pub const INT16: u8 = 0xC1;
    pub const INT32: u8 = 0xC2;
    pub const LZF: u8 = 0xC3;
}

// ---------------------------------------------------------------------------
// CRC-64
// ---------------------------------------------------------------------------

/// CRC-64/Jones with 16-lane tables (about 8x the byte-at-a-time speed;
/// the snapshot CRC runs over every byte sent to a replica).
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Incremental CRC-64 digest as Redis computes it for RDB files and DUMP
/// payloads (`crc64(0, ...)`).
///
/// ```
/// let mut c = tether::rdb::Crc64::new();
/// c.update(b"1234");
/// c.update(b"56789");
/// assert_eq!(c.finish(), 0xe9c6d914c4b8d9ca);
/// ```
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest<'static, u64, Table<16>>,
}

impl Crc64 {
    pub fn new() -> Crc64 {
        Crc64 {
            digest: CRC64.digest(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The CRC of everything passed to `update` so far (the digest can be
    /// cloned first to keep going).
    pub fn finish(self) -> u64 {
        self.digest.finalize()
    }

    /// One-shot CRC of a buffer.
    pub fn checksum(bytes: &[u8]) -> u64 {
        CRC64.checksum(bytes)
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Crc64::new()
    }
}

impl fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crc64({:016x})", self.clone().finish())
    }
}

// ---------------------------------------------------------------------------
// Elements of the compact encodings
// ---------------------------------------------------------------------------

/// One element of a listpack or ziplist: either a byte string or an integer
/// the encoder stored in binary (it stands for its decimal string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element as the string Redis returns for it.
    pub fn to_bytes(&self) -> Bytes {
        match *self {
            Elem::Str(s) => Bytes::copy_from_slice(s),
            Elem::Int(i) => Bytes::copy_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        }
    }

    /// The element read as a sorted-set score (`zzlGetScore`): integers
    /// directly, strings as `strtod` would (`inf`, `-inf`, `1.5e3` ...).
    /// `None` for text that is not a number, or NaN.
    pub fn to_score(&self) -> Option<f64> {
        match *self {
            Elem::Int(i) => Some(i as f64),
            Elem::Str(s) => parse_score(s),
        }
    }
}

/// Parses the textual double Redis writes (`%.17g`, `inf`, `-inf`); NaN and
/// junk are `None`.
pub(crate) fn parse_score(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    let v: f64 = t.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A string that Redis would store as an integer: the canonical decimal
/// form of an `i64` (no sign on zero, no leading zeros or `+`), at most 20
/// bytes (`string2ll` semantics).
pub(crate) fn canonical_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (itoa::Buffer::new().format(v).as_bytes() == s).then_some(v)
}

/// A compact blob (listpack, ziplist, zipmap, intset) failed validation:
/// what was wrong and at which byte of the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobError {
    pub what: &'static str,
    pub at: usize,
}

impl BlobError {
    pub(crate) fn new(what: &'static str, at: usize) -> BlobError {
        BlobError { what, at }
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {} of the blob)", self.what, self.at)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What went wrong while reading RDB data.
#[derive(Clone, Debug, PartialEq)]
pub enum RdbErrorKind {
    /// The first 5 bytes are not `REDIS`.
    BadMagic,
    /// The header's version is not 1..=10 (or its digits are not digits).
    UnsupportedVersion(String),
    /// The data is malformed (the text says how).
    Corrupt(String),
    /// A nested listpack / ziplist / zipmap / intset failed validation.
    BadBlob {
        /// "listpack", "ziplist", ...
        blob: &'static str,
        error: BlobError,
    },
    /// Well-formed data this codec does not handle (streams, modules,
    /// pre-GA function libraries).
    Unsupported(String),
    /// A length field above the configured limit (the limit is the second
    /// number).
    TooLarge { len: u64, limit: u64 },
    /// A whole-input reader (`load_file`, `restore_payload`) ran out of bytes.
    Truncated,
    /// The file's stored CRC does not match its contents.
    ChecksumMismatch { stored: u64, computed: u64 },
    /// DUMP payload footer: RDB version above 10, or a wrong CRC. Redis
    /// answers RESTORE with `-ERR DUMP payload version or checksum are wrong`.
    PayloadFooter(&'static str),
    /// The `Loader` was driven wrongly (a buffer shorter than the part
    /// already parsed, a call after the end or after an error).
    Misuse(&'static str),
}

/// An RDB decoding error: the kind, the absolute byte offset in the stream
/// (or payload) where it was detected, and the key being read, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct RdbError {
    pub kind: RdbErrorKind,
    pub offset: u64,
    pub key: Option<Bytes>,
}

impl RdbError {
    pub(crate) fn new(kind: RdbErrorKind, offset: u64) -> RdbError {
        RdbError {
            kind,
            offset,
            key: None,
        }
    }

    pub(crate) fn with_key(mut self, key: &Bytes) -> RdbError {
        if self.key.is_none() {
            self.key = Some(key.clone());
        }
        self
    }

    /// True when RESTORE must answer `DUMP payload version or checksum are
    /// wrong`; any other error from [`restore_payload`] is `Bad data format`.
    pub fn is_payload_footer(&self) -> bool {
        matches!(self.kind, RdbErrorKind::PayloadFooter(_))
    }
}

impl fmt::Display for RdbErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdbErrorKind::BadMagic => write!(f, "not an RDB file (no REDIS signature)"),
            RdbErrorKind::UnsupportedVersion(v) => {
                write!(
                    f,
                    "can't handle RDB format version {v:?} (supported: 1..=10)"
                )
            }
            RdbErrorKind::Corrupt(s) => write!(f, "corrupt RDB data: {s}"),
            RdbErrorKind::BadBlob { blob, error } => {
                write!(f, "{blob} integrity check failed: {error}")
            }
            RdbErrorKind::Unsupported(s) => write!(f, "unsupported RDB content: {s}"),
            RdbErrorKind::TooLarge { len, limit } => {
                write!(f, "length {len} exceeds the limit of {limit} bytes")
            }
            RdbErrorKind::Truncated => write!(f, "unexpected end of data"),
            RdbErrorKind::ChecksumMismatch { stored, computed } => write!(
                f,
                "wrong RDB checksum: file says {stored:016x}, contents give {computed:016x}"
            ),
            RdbErrorKind::PayloadFooter(s) => {
                write!(f, "DUMP payload version or checksum are wrong ({s})")
            }
            RdbErrorKind::Misuse(s) => write!(f, "RDB loader misuse: {s}"),
        }
    }
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.kind, self.offset)?;
        if let Some(k) = &self.key {
            let shown = &k[..k.len().min(128)];
            write!(f, " (key {:?})", String::from_utf8_lossy(shown))?;
        }
        Ok(())
    }
}

impl std::error::Error for RdbError {}
