//! RDB loader: a resumable parser that turns a byte stream into [`Event`]s,
//! plus whole-buffer helpers ([`load_file`], [`load_events`]) and the DUMP
//! payload reader ([`restore_payload`]). No I/O: the caller owns the buffer,
//! so the same code serves a file read into memory and a replication socket.
//!
//! # Driving the loader
//!
//! ```text
//! loop {
//!     match loader.next(&buf)? {
//!         Some((event, n)) => { handle(event); buf.advance(n) }   // drop n bytes
//!         None => read more bytes and append them to buf          // incomplete
//!     }
//! }
//! ```
//!
//! `Ok(None)` means "incomplete": call again with the same unconsumed bytes
//! plus whatever arrived. The loader remembers how far it got, so data is
//! not parsed twice:
//!
//! - a big list, set, hash or zset is built element by element across calls
//!   (the part of the buffer already parsed is skipped on the next call, and
//!   only reported as consumed with the key's `Entry` event), and
//! - when a single string or blob is incomplete, the loader records how many
//!   bytes it needs and returns at once until the buffer is that long.
//!
//! A caller that drops consumed bytes must therefore keep every byte of the
//! current key until its event arrives; the loader never asks for a string
//! longer than `max_string` (512 MiB by default) and never preallocates
//! from an untrusted count.
//!
//! The loader keeps a running CRC-64 of every consumed byte and checks it
//! against the trailer after `FF` ([`Event::End`]). Keys are reported with
//! their expire time even when it is in the past: dropping expired keys is
//! the caller's policy (a master drops them, a replica keeps them). Empty
//! collections (which old Redis versions could write) are skipped, as Redis
//! skips them.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{
    BlobError, Crc64, DEFAULT_MAX_STRING, Elem, RDB_VERSION, RdbError, RdbErrorKind, enc, intset,
    listpack, lzf, opcode, parse_score, rdb_type, ziplist,
};
use crate::shard::keyspace::{Entry, HashValue, SetValue, Str, Value, ZSet};

/// What the loader found, in stream order.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// An AUX field (`redis-ver`, `repl-id`, ...); unknown ones are legal.
    Aux(Bytes, Bytes),
    /// A function library's source code (`FUNCTION LOAD` payload).
    Function(Bytes),
    /// Following keys belong to this database.
    SelectDb(u64),
    /// Sizing hint for the current database.
    ResizeDb { db_size: u64, expires_size: u64 },
    /// One key. `expire_at` is unix ms, 0 = no TTL; a TTL already in the
    /// past is reported as is (1 for times at or before the epoch).
    Entry {
        key: Bytes,
        value: Value,
        expire_at: u64,
    },
    /// The `FF` opcode and its trailer. `checksum_ok` is false only when a
    /// non-zero stored CRC differs from the data (a stored 0, or a version
    /// below 5 with no CRC, means "not checked").
    End { checksum_ok: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    Body,
    Done,
}

/// A value being built element by element across `next` calls.
struct InFlight {
    key: Bytes,
    partial: Partial,
}

/// Resumable RDB parser; see the module documentation.
pub struct Loader {
    phase: Phase,
    version: u32,
    /// CRC of every byte before the caller's current buffer start plus the
    /// `parsed` bytes of it.
    crc: Crc64,
    /// Stream offset of the caller's `buf[0]`.
    base: u64,
    /// Bytes at the start of the caller's buffer already parsed (and fed to
    /// the CRC) by earlier calls but not yet reported as consumed.
    parsed: usize,
    /// Buffer length below which another attempt cannot succeed.
    need: usize,
    /// Expire time set by an opcode before the next key (0 = none).
    expire_at: u64,
    inflight: Option<InFlight>,
    max_string: u64,
    failed: Option<RdbError>,
    empty_keys_skipped: u64,
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

impl Loader {
    pub fn new() -> Loader {
        Loader {
            phase: Phase::Header,
            version: 0,
            crc: Crc64::new(),
            base: 0,
            parsed: 0,
            need: 0,
            expire_at: 0,
            inflight: None,
            max_string: DEFAULT_MAX_STRING,
            failed: None,
            empty_keys_skipped: 0,
        }
    }

    /// A loader that rejects strings (and blobs, and LZF-decompressed
    /// strings) longer than `max` bytes.
    pub fn with_max_string(max: u64) -> Loader {
        Loader {
            max_string: max,
            ..Loader::new()
        }
    }

    /// The RDB version from the header (0 before it is read).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes consumed so far (reported through events).
    pub fn offset(&self) -> u64 {
        self.base
    }

    /// True once [`Event::End`] was returned.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Empty collections skipped so far.
    pub fn empty_keys_skipped(&self) -> u64 {
        self.empty_keys_skipped
    }

    /// Parses the next event from `buf`, which must start with the bytes not
    /// yet consumed. `Ok(Some((event, n)))`: the first `n` bytes of `buf`
    /// are consumed. `Ok(None)`: incomplete; call again with `buf` plus more
    /// bytes. After an error every call returns that error.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<(Event, usize)>, RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if buf.len() < self.parsed {
            return Err(self.fail(RdbError::new(
                RdbErrorKind::Misuse("buffer is shorter than the part already parsed"),
                self.base + buf.len() as u64,
            )));
        }
        loop {
            if buf.len() < self.need {
                return Ok(None);
            }
            let mut cur = Cur {
                buf,
                pos: self.parsed,
                base: self.base,
                max: self.max_string,
            };
            let r = self.step(&mut cur);
            // Whatever the step left behind `cur.pos` is a checkpoint: the
            // state in `self` accounts for it.
            if cur.pos > self.parsed {
                self.crc.update(&buf[self.parsed..cur.pos]);
                self.parsed = cur.pos;
            }
            match r {
                Ok(Some(ev)) => {
                    let n = self.parsed;
                    self.base += n as u64;
                    self.parsed = 0;
                    self.need = 0;
                    return Ok(Some((ev, n)));
                }
                Ok(None) => self.need = 0,
                Err(Halt::More(n)) => {
                    self.need = n;
                    return Ok(None);
                }
                Err(Halt::Bad(e)) => return Err(self.fail(e)),
            }
        }
    }

    fn fail(&mut self, e: RdbError) -> RdbError {
        self.failed = Some(e.clone());
        e
    }

    /// One unit of work: an opcode with its arguments, a whole simple key,
    /// the head of a collection, or as many collection elements as `cur`
    /// holds. `Ok(None)` = progress without an event. On `Halt::More`,
    /// `cur.pos` is left at the last checkpoint.
    fn step(&mut self, cur: &mut Cur) -> Result<Option<Event>, Halt> {
        if let Some(mut fl) = self.inflight.take() {
            return match fl.partial.feed(cur) {
                Ok(()) => Ok(self.finish_key(fl.key, fl.partial.finish())),
                Err(Halt::More(n)) => {
                    self.inflight = Some(fl);
                    Err(Halt::More(n))
                }
                Err(Halt::Bad(e)) => Err(Halt::Bad(e.with_key(&fl.key))),
            };
        }
        let start = cur.pos;
        let r = match self.phase {
            Phase::Header => self.header(cur),
            Phase::Body => self.body(cur),
            Phase::Done => Err(cur.bad(RdbErrorKind::Misuse("called after the end of the file"))),
        };
        if matches!(r, Err(Halt::More(_))) && self.inflight.is_none() {
            cur.pos = start;
        }
        r
    }

    fn header(&mut self, cur: &mut Cur) -> Result<Option<Event>, Halt> {
        let magic = cur.take(9)?;
        if &magic[..5] != b"REDIS" {
            return Err(Halt::Bad(RdbError::new(RdbErrorKind::BadMagic, cur.base)));
        }
        let digits = &magic[5..];
        let bad_version = || {
            Halt::Bad(RdbError::new(
                RdbErrorKind::UnsupportedVersion(String::from_utf8_lossy(digits).into_owned()),
                cur.base + 5,
            ))
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad_version());
        }
        let v = digits.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32);
        if !(1..=RDB_VERSION as u32).contains(&v) {
            return Err(bad_version());
        }
        self.version = v;
        self.phase = Phase::Body;
        Ok(None)
    }

    fn body(&mut self, cur: &mut Cur) -> Result<Option<Event>, Halt> {
        let op_at = cur.pos;
        let op = cur.u8()?;
        match op {
            opcode::EXPIRETIME_MS => {
                let ms = i64::from_le_bytes(cur.array()?);
                self.expire_at = if ms <= 0 { 1 } else { ms as u64 };
                Ok(None)
            }
            opcode::EXPIRETIME => {
                let secs = i32::from_le_bytes(cur.array()?) as i64;
                self.expire_at = if secs <= 0 { 1 } else { secs as u64 * 1000 };
                Ok(None)
            }
            opcode::IDLE => {
                cur.length()?;
                Ok(None)
            }
            opcode::FREQ => {
                cur.u8()?;
                Ok(None)
            }
            opcode::SELECTDB => Ok(Some(Event::SelectDb(cur.length()?))),
            opcode::RESIZEDB => {
                let db_size = cur.length()?;
                let expires_size = cur.length()?;
                Ok(Some(Event::ResizeDb {
                    db_size,
                    expires_size,
                }))
            }
            opcode::AUX => {
                let k = cur.string()?;
                let v = cur.string()?;
                Ok(Some(Event::Aux(k, v)))
            }
            opcode::FUNCTION2 => Ok(Some(Event::Function(cur.string()?))),
            opcode::FUNCTION_PRE_GA => Err(Halt::Bad(RdbError::new(
                RdbErrorKind::Unsupported(
                    "function library in the 7.0 release-candidate format (opcode 0xF6)".into(),
                ),
                cur.base + op_at as u64,
            ))),
            opcode::MODULE_AUX => Err(Halt::Bad(RdbError::new(
                RdbErrorKind::Unsupported("module auxiliary data (opcode 0xF7)".into()),
                cur.base + op_at as u64,
            ))),
            opcode::EOF => {
                let body_end = cur.pos;
                let checksum_ok = if self.version >= 5 {
                    let stored = u64::from_le_bytes(cur.array()?);
                    let mut c = self.crc.clone();
                    // `self.crc` covers the stream up to `parsed`; add the
                    // rest of this step up to and including the FF byte.
                    c.update(&cur.buf[self.parsed..body_end]);
                    stored == 0 || stored == c.finish()
                } else {
                    true
                };
                self.phase = Phase::Done;
                Ok(Some(Event::End { checksum_ok }))
            }
            ty if is_value_type(ty) => {
                let key = cur.string()?;
                match begin_value(ty, cur) {
                    Ok(Begun::Done(v)) => Ok(self.finish_key(key, v)),
                    Ok(Begun::Partial(partial)) => {
                        // Checkpoint after the collection's header; the
                        // elements follow in the next steps.
                        self.inflight = Some(InFlight {
                            key,
                            partial: *partial,
                        });
                        Ok(None)
                    }
                    Err(Halt::Bad(e)) => Err(Halt::Bad(e.with_key(&key))),
                    Err(more) => Err(more),
                }
            }
            other => {
                cur.pos = op_at;
                Err(cur.corrupt(format!("unknown opcode or value type {other}")))
            }
        }
    }

    /// Emits a finished key, or skips it when its collection came out empty.
    fn finish_key(&mut self, key: Bytes, value: Option<Value>) -> Option<Event> {
        let expire_at = std::mem::take(&mut self.expire_at);
        match value {
            Some(value) => Some(Event::Entry {
                key,
                value,
                expire_at,
            }),
            None => {
                self.empty_keys_skipped += 1;
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------

/// Why a parse stopped.
enum Halt {
    /// The buffer must be at least this long to go on.
    More(usize),
    Bad(RdbError),
}

/// A read position in the caller's buffer.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Stream offset of `buf[0]`, for error messages.
    base: u64,
    /// Longest string accepted.
    max: u64,
}

/// A string as stored: bytes in the buffer, decompressed bytes, or an
/// integer that stands for its decimal form.
enum RawStr<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
    Int(i64),
}

impl RawStr<'_> {
    fn into_bytes(self) -> Bytes {
        match self {
            RawStr::Slice(s) => Bytes::copy_from_slice(s),
            RawStr::Owned(v) => Bytes::from(v),
            RawStr::Int(i) => Bytes::copy_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        }
    }
}

impl<'a> Cur<'a> {
    fn bad(&self, kind: RdbErrorKind) -> Halt {
        Halt::Bad(RdbError::new(kind, self.base + self.pos as u64))
    }

    fn corrupt(&self, what: impl Into<String>) -> Halt {
        self.bad(RdbErrorKind::Corrupt(what.into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Halt> {
        let left = self.buf.len() - self.pos;
        if left < n {
            return Err(Halt::More(self.pos.saturating_add(n)));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Halt> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Halt> {
        Ok(self.take(1)?[0])
    }

    /// A length, or (`Err`) the `11xxxxxx` string encoding code.
    fn len_or_enc(&mut self) -> Result<Result<u64, u8>, Halt> {
        let at = self.pos;
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Ok((b & 0x3F) as u64),
            1 => Ok(((b as u64 & 0x3F) << 8) | self.u8()? as u64),
            3 => Err(b),
            _ => match b {
                enc::LEN_32 => Ok(u32::from_be_bytes(self.array()?) as u64),
                enc::LEN_64 => Ok(u64::from_be_bytes(self.array()?)),
                _ => {
                    self.pos = at;
                    return Err(self.corrupt(format!("unknown length encoding 0x{b:02x}")));
                }
            },
        })
    }

    /// A plain length (an encoded-string marker here is corruption).
    fn length(&mut self) -> Result<u64, Halt> {
        let at = self.pos;
        match self.len_or_enc()? {
            Ok(n) => Ok(n),
            Err(b) => {
                self.pos = at;
                Err(self.corrupt(format!("string encoding 0x{b:02x} where a length belongs")))
            }
        }
    }

    fn check_len(&self, n: u64) -> Result<usize, Halt> {
        if n > self.max {
            return Err(self.bad(RdbErrorKind::TooLarge {
                len: n,
                limit: self.max,
            }));
        }
        usize::try_from(n).map_err(|_| {
            self.bad(RdbErrorKind::TooLarge {
                len: n,
                limit: usize::MAX as u64,
            })
        })
    }

    fn raw_string(&mut self) -> Result<RawStr<'a>, Halt> {
        let at = self.pos;
        match self.len_or_enc()? {
            Ok(n) => {
                let n = self.check_len(n)?;
                Ok(RawStr::Slice(self.take(n)?))
            }
            Err(enc::INT8) => Ok(RawStr::Int(self.u8()? as i8 as i64)),
            Err(enc::INT16) => Ok(RawStr::Int(i16::from_le_bytes(self.array()?) as i64)),
            Err(enc::INT32) => Ok(RawStr::Int(i32::from_le_bytes(self.array()?) as i64)),
            Err(enc::LZF) => {
                let clen = self.length()?;
                let len = self.length()?;
                let clen = self.check_len(clen)?;
                let len = self.check_len(len)?;
                let data = self.take(clen)?;
                lzf::decompress(data, len).map(RawStr::Owned).map_err(|e| {
                    Halt::Bad(RdbError::new(
                        RdbErrorKind::Corrupt(e.as_str().into()),
                        self.base + at as u64,
                    ))
                })
            }
            Err(b) => {
                self.pos = at;
                Err(self.corrupt(format!("unknown string encoding 0x{b:02x}")))
            }
        }
    }

    fn string(&mut self) -> Result<Bytes, Halt> {
        Ok(self.raw_string()?.into_bytes())
    }

    /// A string holding a nested blob, and the stream offset it starts at.
    fn blob(&mut self) -> Result<(Blob<'a>, u64), Halt> {
        let at = self.base + self.pos as u64;
        let b = match self.raw_string()? {
            RawStr::Slice(s) => Blob::Slice(s),
            RawStr::Owned(v) => Blob::Owned(v),
            RawStr::Int(i) => Blob::Owned(itoa::Buffer::new().format(i).as_bytes().to_vec()),
        };
        Ok((b, at))
    }

    /// A type-3 zset score: `<u8 len> <text>`, or 253/254/255 alone.
    fn text_double(&mut self) -> Result<f64, Halt> {
        let at = self.pos;
        let n = self.u8()?;
        let v = match n {
            255 => f64::NEG_INFINITY,
            254 => f64::INFINITY,
            253 => f64::NAN,
            n => {
                let t = self.take(n as usize)?;
                match parse_score(t) {
                    Some(v) => v,
                    None => {
                        self.pos = at;
                        return Err(self.corrupt(format!(
                            "invalid zset score {:?}",
                            String::from_utf8_lossy(t)
                        )));
                    }
                }
            }
        };
        Ok(v)
    }
}

enum Blob<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Blob<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Slice(s) => s,
            Blob::Owned(v) => v,
        }
    }
}

/// Decodes a ziplist or listpack of (field, value) or (member, score)
/// pairs, rejecting an odd entry count; returns the entries and the blob's
/// name for later messages.
fn paired_blob<'b>(
    blob: &'b [u8],
    ziplist: bool,
    what: &str,
    at: u64,
) -> Result<(Vec<Elem<'b>>, &'static str), Halt> {
    let (elems, name) = if ziplist {
        (
            ziplist::decode(blob).map_err(blob_err("ziplist", at))?,
            "ziplist",
        )
    } else {
        (
            listpack::decode(blob).map_err(blob_err("listpack", at))?,
            "listpack",
        )
    };
    if elems.len() % 2 != 0 {
        return Err(Halt::Bad(RdbError::new(
            RdbErrorKind::Corrupt(format!("{what} {name} with an odd number of entries")),
            at,
        )));
    }
    Ok((elems, name))
}

fn blob_err(blob: &'static str, at: u64) -> impl FnOnce(BlobError) -> Halt {
    move |error| Halt::Bad(RdbError::new(RdbErrorKind::BadBlob { blob, error }, at))
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// The start of a value: complete (`None` = an empty collection, skipped),
/// or a collection whose elements follow.
enum Begun {
    Done(Option<Value>),
    Partial(Box<Partial>),
}

/// A collection being loaded; `left` counts elements (pairs for hashes and
/// zsets, nodes for quicklists) still to read.
enum Partial {
    List {
        left: u64,
        items: VecDeque<Bytes>,
    },
    Quicklist {
        left: u64,
        v2: bool,
        items: VecDeque<Bytes>,
    },
    Set {
        left: u64,
        set: SetValue,
    },
    Hash {
        left: u64,
        map: HashValue,
    },
    ZSet {
        left: u64,
        binary: bool,
        z: ZSet,
    },
}

/// Value types (`rdbIsObjectType`): 0-7 and 9-21.
fn is_value_type(ty: u8) -> bool {
    matches!(ty, 0..=7 | 9..=21)
}

/// Collections grow as elements arrive; an untrusted count reserves at most
/// this many slots up front.
const PREALLOC_CAP: u64 = 4096;

fn cap(n: u64) -> usize {
    n.min(PREALLOC_CAP) as usize
}

/// Reads the part of a value that must be read at once: a whole string or
/// blob-encoded value, or a collection's element count.
fn begin_value(ty: u8, cur: &mut Cur) -> Result<Begun, Halt> {
    use rdb_type as t;
    let at = cur.pos;
    let partial = match ty {
        t::STRING => return Ok(Begun::Done(Some(Value::Str(Str::from(cur.string()?))))),
        t::LIST => {
            let left = cur.length()?;
            Partial::List {
                left,
                items: VecDeque::with_capacity(cap(left)),
            }
        }
        t::SET => {
            let left = cur.length()?;
            Partial::Set {
                left,
                set: SetValue::with_capacity(cap(left)),
            }
        }
        t::HASH => {
            let left = cur.length()?;
            Partial::Hash {
                left,
                map: HashValue::with_capacity(cap(left)),
            }
        }
        t::ZSET | t::ZSET_2 => Partial::ZSet {
            left: cur.length()?,
            binary: ty == t::ZSET_2,
            z: ZSet::default(),
        },
        t::LIST_QUICKLIST | t::LIST_QUICKLIST_2 => Partial::Quicklist {
            left: cur.length()?,
            v2: ty == t::LIST_QUICKLIST_2,
            items: VecDeque::new(),
        },
        t::HASH_ZIPMAP
        | t::LIST_ZIPLIST
        | t::SET_INTSET
        | t::ZSET_ZIPLIST
        | t::HASH_ZIPLIST
        | t::HASH_LISTPACK
        | t::ZSET_LISTPACK
        | t::SET_LISTPACK => {
            let (blob, blob_at) = cur.blob()?;
            return decode_blob_value(ty, &blob, blob_at).map(Begun::Done);
        }
        t::MODULE_PRE_GA | t::MODULE_2 => {
            cur.pos = at;
            return Err(cur.bad(RdbErrorKind::Unsupported(format!(
                "module value (type {ty}); tether has no modules"
            ))));
        }
        t::STREAM_LISTPACKS | t::STREAM_LISTPACKS_2 | t::STREAM_LISTPACKS_3 => {
            cur.pos = at;
            return Err(cur.bad(RdbErrorKind::Unsupported(format!(
                "stream value (type {ty}); tether has no streams"
            ))));
        }
        _ => return Err(cur.corrupt(format!("unknown value type {ty}"))),
    };
    if partial.left() == 0 {
        return Ok(Begun::Done(None));
    }
    Ok(Begun::Partial(Box::new(partial)))
}

/// Decodes a blob-encoded value (types 9-13, 16, 17, 20). `None` for an
/// empty collection.
fn decode_blob_value(ty: u8, blob: &[u8], at: u64) -> Result<Option<Value>, Halt> {
    use rdb_type as t;
    let corrupt = |s: &str| Halt::Bad(RdbError::new(RdbErrorKind::Corrupt(s.into()), at));
    let v = match ty {
        t::SET_INTSET => {
            let members = intset::decode(blob).map_err(blob_err("intset", at))?;
            let mut set = SetValue::with_capacity(members.len());
            set.extend(
                members
                    .into_iter()
                    .map(|m| Str::from(Elem::Int(m).to_bytes())),
            );
            Value::Set(Box::new(set))
        }
        t::SET_LISTPACK => {
            let elems = listpack::decode(blob).map_err(blob_err("listpack", at))?;
            let mut set = SetValue::with_capacity(elems.len());
            for e in elems {
                if !set.insert(Str::from(e.to_bytes())) {
                    return Err(corrupt("duplicate set member in listpack"));
                }
            }
            Value::Set(Box::new(set))
        }
        t::LIST_ZIPLIST => {
            let elems = ziplist::decode(blob).map_err(blob_err("ziplist", at))?;
            Value::List(Box::new(elems.iter().map(Elem::to_bytes).collect()))
        }
        t::HASH_ZIPMAP => {
            let pairs = ziplist::decode_zipmap(blob).map_err(blob_err("zipmap", at))?;
            let mut map = HashValue::with_capacity(pairs.len());
            for (f, v) in pairs {
                if map.insert(Str::from(f), Str::from(v)).is_some() {
                    return Err(corrupt("duplicate hash field in zipmap"));
                }
            }
            Value::Hash(Box::new(map))
        }
        t::HASH_ZIPLIST | t::HASH_LISTPACK => {
            let (elems, name) = paired_blob(blob, ty == t::HASH_ZIPLIST, "hash", at)?;
            let mut map = HashValue::with_capacity(elems.len() / 2);
            for pair in elems.chunks_exact(2) {
                if map
                    .insert(Str::from(pair[0].to_bytes()), Str::from(pair[1].to_bytes()))
                    .is_some()
                {
                    return Err(corrupt(&format!("duplicate hash field in {name}")));
                }
            }
            Value::Hash(Box::new(map))
        }
        t::ZSET_ZIPLIST | t::ZSET_LISTPACK => {
            let (elems, name) = paired_blob(blob, ty == t::ZSET_ZIPLIST, "zset", at)?;
            let mut z = ZSet::default();
            for pair in elems.chunks_exact(2) {
                let Some(score) = pair[1].to_score() else {
                    return Err(corrupt(&format!("invalid score in zset {name}")));
                };
                if !z.insert(pair[0].to_bytes(), score) {
                    return Err(corrupt(&format!("duplicate zset member in {name}")));
                }
            }
            Value::ZSet(Box::new(z))
        }
        _ => return Err(corrupt("not a blob-encoded type")),
    };
    Ok((!v.is_empty_collection()).then_some(v))
}

impl Partial {
    fn left(&self) -> u64 {
        match self {
            Partial::List { left, .. }
            | Partial::Quicklist { left, .. }
            | Partial::Set { left, .. }
            | Partial::Hash { left, .. }
            | Partial::ZSet { left, .. } => *left,
        }
    }

    /// Reads elements until none are left (`Ok`) or the buffer runs out
    /// (`Halt::More`, with `cur.pos` after the last complete element).
    fn feed(&mut self, cur: &mut Cur) -> Result<(), Halt> {
        while self.left() > 0 {
            let at = cur.pos;
            if let Err(h) = self.element(cur) {
                if matches!(h, Halt::More(_)) {
                    cur.pos = at;
                }
                return Err(h);
            }
        }
        Ok(())
    }

    /// Reads one element (pair, node) and decrements `left`; on error the
    /// collection is unchanged.
    fn element(&mut self, cur: &mut Cur) -> Result<(), Halt> {
        let at = cur.pos;
        match self {
            Partial::List { left, items } => {
                items.push_back(cur.string()?);
                *left -= 1;
            }
            Partial::Set { left, set } => {
                let m = cur.string()?;
                if !set.insert(Str::from(m)) {
                    cur.pos = at;
                    return Err(cur.corrupt("duplicate set member"));
                }
                *left -= 1;
            }
            Partial::Hash { left, map } => {
                let f = cur.string()?;
                let v = cur.string()?;
                if map.contains_key(&f[..]) {
                    cur.pos = at;
                    return Err(cur.corrupt("duplicate hash field"));
                }
                map.insert(Str::from(f), Str::from(v));
                *left -= 1;
            }
            Partial::ZSet { left, binary, z } => {
                let m = cur.string()?;
                let score = if *binary {
                    f64::from_le_bytes(cur.array()?)
                } else {
                    cur.text_double()?
                };
                if score.is_nan() {
                    cur.pos = at;
                    return Err(cur.corrupt("zset score is NaN"));
                }
                if z.score(&m).is_some() {
                    cur.pos = at;
                    return Err(cur.corrupt("duplicate zset member"));
                }
                z.insert(m, score);
                *left -= 1;
            }
            Partial::Quicklist { left, v2, items } => {
                // container: 1 = a single plain element, 2 = a listpack.
                let container = if *v2 { cur.length()? } else { 2 };
                if container != 1 && container != 2 {
                    cur.pos = at;
                    return Err(cur.corrupt(format!("quicklist node container {container}")));
                }
                let (blob, blob_at) = cur.blob()?;
                if blob.is_empty() {
                    cur.pos = at;
                    return Err(cur.corrupt("empty quicklist node"));
                }
                if container == 1 {
                    items.push_back(match blob {
                        Blob::Slice(s) => Bytes::copy_from_slice(s),
                        Blob::Owned(v) => Bytes::from(v),
                    });
                } else if *v2 {
                    let elems = listpack::decode(&blob).map_err(blob_err("listpack", blob_at))?;
                    items.extend(elems.iter().map(Elem::to_bytes));
                } else {
                    let elems = ziplist::decode(&blob).map_err(blob_err("ziplist", blob_at))?;
                    items.extend(elems.iter().map(Elem::to_bytes));
                }
                *left -= 1;
            }
        }
        Ok(())
    }

    /// The finished value, or `None` for an empty collection.
    fn finish(self) -> Option<Value> {
        let v = match self {
            Partial::List { items, .. } | Partial::Quicklist { items, .. } => {
                Value::List(Box::new(items))
            }
            Partial::Set { set, .. } => Value::Set(Box::new(set)),
            Partial::Hash { map, .. } => Value::Hash(Box::new(map)),
            Partial::ZSet { z, .. } => Value::ZSet(Box::new(z)),
        };
        (!v.is_empty_collection()).then_some(v)
    }
}

// ---------------------------------------------------------------------------
// Whole-buffer helpers
// ---------------------------------------------------------------------------

/// One key of a loaded file.
#[derive(Debug, PartialEq)]
pub struct LoadedKey {
    pub db: u64,
    pub key: Bytes,
    pub entry: Entry,
}

/// Runs a [`Loader`] over a complete file, passing every event to `f`.
/// Fails on truncation, on a checksum mismatch, or on any decoding error.
/// Bytes after the CRC trailer are ignored (Redis stops reading there too).
pub fn load_events(bytes: &[u8], mut f: impl FnMut(Event)) -> Result<(), RdbError> {
    let mut loader = Loader::new();
    let mut pos = 0;
    loop {
        match loader.next(&bytes[pos..])? {
            Some((ev, n)) => {
                let at = pos;
                pos += n;
                if let Event::End { checksum_ok } = ev {
                    if !checksum_ok {
                        let stored_at = pos - 8;
                        let mut stored = [0u8; 8];
                        stored.copy_from_slice(&bytes[stored_at..pos]);
                        let computed = Crc64::checksum(&bytes[..stored_at]);
                        return Err(RdbError::new(
                            RdbErrorKind::ChecksumMismatch {
                                stored: u64::from_le_bytes(stored),
                                computed,
                            },
                            at as u64,
                        ));
                    }
                    f(ev);
                    return Ok(());
                }
                f(ev);
            }
            None => {
                return Err(RdbError::new(RdbErrorKind::Truncated, bytes.len() as u64));
            }
        }
    }
}

/// Loads a complete RDB file into a list of keys with their database.
pub fn load_file(bytes: &[u8]) -> Result<Vec<LoadedKey>, RdbError> {
    let mut db = 0;
    let mut keys = Vec::new();
    load_events(bytes, |ev| match ev {
        Event::SelectDb(d) => db = d,
        Event::Entry {
            key,
            value,
            expire_at,
        } => keys.push(LoadedKey {
            db,
            key,
            entry: Entry { value, expire_at },
        }),
        _ => {}
    })?;
    Ok(keys)
}

/// Decodes a DUMP payload (`<type> <value> <u16 LE version> <u64 LE crc>`).
///
/// A version above 10 or a CRC mismatch gives an error for which
/// [`RdbError::is_payload_footer`] is true (RESTORE's `DUMP payload version
/// or checksum are wrong`); anything else wrong is `Bad data format`,
/// including an empty collection and bytes left over after the value.
pub fn restore_payload(payload: &[u8]) -> Result<Value, RdbError> {
    decode_payload(payload, true)
}

/// [`restore_payload`] with Redis 7.0's reading of the value, for RESTORE:
/// `restoreCommand` parses the value from the *whole* payload, footer
/// included, and ignores what is left after it. So a value may read into
/// the 10-byte footer, and trailing bytes pass; both give the same replies
/// as Redis. Every value is still validated strictly (Redis checks nested
/// blobs deeply only with `sanitize-dump-payload yes`).
pub fn restore_payload_lenient(payload: &[u8]) -> Result<Value, RdbError> {
    decode_payload(payload, false)
}

/// The footer check and value decoding of [`restore_payload`]; `exact`
/// confines the value to the body and requires it to fill the body.
fn decode_payload(payload: &[u8], exact: bool) -> Result<Value, RdbError> {
    let footer = |s| RdbError::new(RdbErrorKind::PayloadFooter(s), 0);
    if payload.len() < 10 {
        return Err(footer("payload shorter than its footer"));
    }
    let body_len = payload.len() - 10;
    let version = u16::from_le_bytes([payload[body_len], payload[body_len + 1]]);
    if version > RDB_VERSION {
        return Err(footer("RDB version above 10"));
    }
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&payload[payload.len() - 8..]);
    if Crc64::checksum(&payload[..payload.len() - 8]) != u64::from_le_bytes(stored) {
        return Err(footer("CRC mismatch"));
    }
    let body = if exact { &payload[..body_len] } else { payload };
    let truncated = |_| RdbError::new(RdbErrorKind::Truncated, body.len() as u64);
    let mut cur = Cur {
        buf: body,
        pos: 0,
        base: 0,
        max: DEFAULT_MAX_STRING,
    };
    let unwrap = |h: Halt| match h {
        Halt::More(n) => truncated(n),
        Halt::Bad(e) => e,
    };
    let ty = cur.u8().map_err(unwrap)?;
    let value = match begin_value(ty, &mut cur).map_err(unwrap)? {
        Begun::Done(v) => v,
        Begun::Partial(mut p) => {
            p.feed(&mut cur).map_err(unwrap)?;
            p.finish()
        }
    };
    let Some(value) = value else {
        return Err(RdbError::new(
            RdbErrorKind::Corrupt("empty collection".into()),
            cur.pos as u64,
        ));
    };
    if exact && cur.pos != body.len() {
        return Err(RdbError::new(
            RdbErrorKind::Corrupt(format!("{} bytes after the value", body.len() - cur.pos)),
            cur.pos as u64,
        ));
    }
    Ok(value)
}
