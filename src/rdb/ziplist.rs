//! Ziplist and zipmap: the compact encodings of Redis before 7.0, found in
//! RDB types 9 (zipmap hash), 10 (ziplist list), 12 (ziplist zset),
//! 13 (ziplist hash) and 14 (quicklist of ziplists). Redis 7.0 still loads
//! them, so tether must too. Pure functions over byte slices.
//!
//! Ziplist:
//!
//! ```text
//! <u32 LE zlbytes> <u32 LE zltail: offset of last entry> <u16 LE count, 65535 = unknown>
//! <entry> ... <entry> FF
//!
//! entry = <prevlen> <encoding> <data>
//!   prevlen: 1 byte (< 254), or FE <u32 LE>: the previous entry's size
//!   00LLLLLL                    string, 6-bit length
//!   01LLLLLL LLLLLLLL           string, 14-bit length (big-endian)
//!   10______ <u32 BE>           string, 32-bit length (low 6 bits unused)
//!   C0 <i16> | D0 <i32> | E0 <i64> | F0 <i24> | FE <i8>   (little-endian)
//!   F1..FD                      immediate 0..12 (low nibble - 1)
//! ```
//!
//! Zipmap (Redis <= 2.4 hashes):
//!
//! ```text
//! <u8 count, 254 = unknown> (<len> field <len> <u8 free> value <free bytes>)* FF
//!   len: 1 byte (< 254), or FE <u32 LE>
//! ```
//!
//! The decoders validate like Redis's `ziplistValidateIntegrity` and
//! `zipmapValidateIntegrity` with `deep = 1`, plus a few checks Redis leaves
//! out (no bytes after a zipmap's terminator).

use super::{BlobError, Elem, canonical_int};

/// zlbytes + zltail + count.
pub const HEADER_SIZE: usize = 10;
const END: u8 = 0xFF;
const BIG_PREVLEN: u8 = 0xFE;

/// Validates a ziplist and returns its elements in order.
pub fn decode(zl: &[u8]) -> Result<Vec<Elem<'_>>, BlobError> {
    if zl.len() < HEADER_SIZE + 1 {
        return Err(BlobError::new("shorter than header plus terminator", 0));
    }
    let u32_at = |i: usize| u32::from_le_bytes([zl[i], zl[i + 1], zl[i + 2], zl[i + 3]]) as usize;
    if u32_at(0) != zl.len() {
        return Err(BlobError::new("zlbytes header differs from blob length", 0));
    }
    let end = zl.len() - 1;
    if zl[end] != END {
        return Err(BlobError::new("missing terminator", end));
    }
    let tail = u32_at(4);
    if tail > end {
        return Err(BlobError::new("tail offset outside the blob", 4));
    }
    let count = u16::from_le_bytes([zl[8], zl[9]]);
    let mut out = Vec::with_capacity((count as usize).min(1024));
    let mut p = HEADER_SIZE;
    let mut prev_size = 0usize;
    let mut last = None;
    while zl[p] != END {
        let (elem, size, prevlen) = entry(zl, p, end)?;
        if prevlen != prev_size {
            return Err(BlobError::new(
                "prevlen does not match the previous entry",
                p,
            ));
        }
        out.push(elem);
        last = Some(p);
        prev_size = size;
        p += size;
    }
    if p != end {
        return Err(BlobError::new("terminator before the end of the blob", p));
    }
    if let Some(l) = last
        && l != tail
    {
        return Err(BlobError::new(
            "tail offset does not point at the last entry",
            4,
        ));
    }
    if count != u16::MAX && count as usize != out.len() {
        return Err(BlobError::new("entry count header is wrong", 8));
    }
    Ok(out)
}

/// Decodes the entry at `p`: element, whole entry size, stored prevlen.
/// The entry must end at or before `end` (the terminator's index).
fn entry(zl: &[u8], p: usize, end: usize) -> Result<(Elem<'_>, usize, usize), BlobError> {
    let overrun = || BlobError::new("entry runs past the end", p);
    // Every byte of an entry lies before the terminator.
    let get = |i: usize| -> Result<&[u8], BlobError> {
        let stop = p.checked_add(i).ok_or_else(overrun)?;
        if stop <= end {
            Ok(&zl[p..stop])
        } else {
            Err(overrun())
        }
    };
    let (prevlen, h) = if zl[p] == BIG_PREVLEN {
        let b = get(5)?;
        (u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize, 5)
    } else {
        (zl[p] as usize, 1)
    };
    let enc = get(h + 1)?[h];
    let (hdr, data_len, is_str) = match enc >> 6 {
        0 => (1, (enc & 0x3F) as usize, true),
        1 => {
            let b = get(h + 2)?;
            (2, ((enc as usize & 0x3F) << 8) | b[h + 1] as usize, true)
        }
        2 => {
            let b = get(h + 5)?;
            let n = u32::from_be_bytes([b[h + 1], b[h + 2], b[h + 3], b[h + 4]]) as usize;
            (5, n, true)
        }
        _ => {
            let n = match enc {
                0xFE => 1,
                0xC0 => 2,
                0xF0 => 3,
                0xD0 => 4,
                0xE0 => 8,
                0xF1..=0xFD => 0,
                _ => return Err(BlobError::new("invalid entry encoding", p)),
            };
            (1, n, false)
        }
    };
    let size = (h + hdr).checked_add(data_len).ok_or_else(overrun)?;
    let whole = get(size)?;
    let data = &whole[h + hdr..];
    let elem = if is_str {
        Elem::Str(data)
    } else {
        let v = match enc {
            0xFE => data[0] as i8 as i64,
            0xC0 => i16::from_le_bytes([data[0], data[1]]) as i64,
            0xF0 => (i32::from_le_bytes([0, data[0], data[1], data[2]]) >> 8) as i64,
            0xD0 => i32::from_le_bytes([data[0], data[1], data[2], data[3]]) as i64,
            0xE0 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(data);
                i64::from_le_bytes(a)
            }
            imm => (imm & 0x0F) as i64 - 1,
        };
        Elem::Int(v)
    };
    Ok((elem, size, prevlen))
}

/// Encodes a ziplist as Redis's `ziplistPush` does (strings shorter than 32
/// bytes that are canonical integers use integer encodings).
pub fn encode<'a, I>(items: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut zl = vec![0u8; HEADER_SIZE];
    let mut prev = 0usize;
    let mut tail = HEADER_SIZE;
    let mut count = 0usize;
    for s in items {
        let start = zl.len();
        tail = start;
        if prev < BIG_PREVLEN as usize {
            zl.push(prev as u8);
        } else {
            zl.push(BIG_PREVLEN);
            zl.extend_from_slice(&(prev as u32).to_le_bytes());
        }
        match canonical_int(s).filter(|_| s.len() < 32) {
            Some(v) if (0..=12).contains(&v) => zl.push(0xF1 + v as u8),
            Some(v) if i8::try_from(v).is_ok() => {
                zl.push(0xFE);
                zl.push(v as i8 as u8);
            }
            Some(v) if i16::try_from(v).is_ok() => {
                zl.push(0xC0);
                zl.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Some(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                zl.push(0xF0);
                zl.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i32::try_from(v).is_ok() => {
                zl.push(0xD0);
                zl.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Some(v) => {
                zl.push(0xE0);
                zl.extend_from_slice(&v.to_le_bytes());
            }
            None => {
                let n = s.len();
                if n <= 0x3F {
                    zl.push(n as u8);
                } else if n <= 0x3FFF {
                    zl.push(0x40 | (n >> 8) as u8);
                    zl.push(n as u8);
                } else {
                    zl.push(0x80);
                    zl.extend_from_slice(&(n as u32).to_be_bytes());
                }
                zl.extend_from_slice(s);
            }
        }
        prev = zl.len() - start;
        count += 1;
    }
    zl.push(END);
    let total = zl.len() as u32;
    zl[0..4].copy_from_slice(&total.to_le_bytes());
    zl[4..8].copy_from_slice(&(tail as u32).to_le_bytes());
    zl[8..10].copy_from_slice(&(count.min(u16::MAX as usize) as u16).to_le_bytes());
    zl
}

// ---------------------------------------------------------------------------
// Zipmap
// ---------------------------------------------------------------------------

/// A zipmap's (field, value) pairs, borrowed from the blob.
pub type ZipmapPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Validates a zipmap and returns its (field, value) pairs in order. Redis
/// rejects an empty zipmap, and so does this.
pub fn decode_zipmap(zm: &[u8]) -> Result<ZipmapPairs<'_>, BlobError> {
    if zm.len() < 2 {
        return Err(BlobError::new("shorter than count plus terminator", 0));
    }
    let end = zm.len() - 1;
    if zm[end] != END {
        return Err(BlobError::new("missing terminator", end));
    }
    let mut out = Vec::new();
    let mut p = 1;
    while zm[p] != END {
        let (field, next) = zipmap_str(zm, p, end, false)?;
        let (value, next) = zipmap_str(zm, next, end, true)?;
        out.push((field, value));
        p = next;
    }
    if p != end {
        return Err(BlobError::new("terminator before the end of the blob", p));
    }
    if out.is_empty() {
        return Err(BlobError::new("empty zipmap", 0));
    }
    if zm[0] < 254 && zm[0] as usize != out.len() {
        return Err(BlobError::new("entry count header is wrong", 0));
    }
    Ok(out)
}

/// One length-prefixed zipmap string at `p` (a value also has its `free`
/// byte and padding); the string and the index after it, which must not be
/// past `end`.
fn zipmap_str(zm: &[u8], p: usize, end: usize, value: bool) -> Result<(&[u8], usize), BlobError> {
    let overrun = || BlobError::new("entry runs past the end", p);
    let (len, mut at) = match zm[p] {
        END => return Err(BlobError::new("terminator where a length belongs", p)),
        254 => {
            let b = zm
                .get(p + 1..p + 5)
                .filter(|_| p + 5 <= end)
                .ok_or_else(overrun)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, p + 5)
        }
        n => (n as usize, p + 1),
    };
    let mut free = 0;
    if value {
        if at >= end {
            return Err(overrun());
        }
        free = zm[at] as usize;
        at += 1;
    }
    let stop = at.checked_add(len).ok_or_else(overrun)?;
    let next = stop.checked_add(free).ok_or_else(overrun)?;
    if next > end {
        return Err(overrun());
    }
    Ok((&zm[at..stop], next))
}

/// Encodes a zipmap (no free space), for test fixtures.
pub fn encode_zipmap<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut zm = vec![0u8];
    let mut count = 0usize;
    let push_len = |zm: &mut Vec<u8>, n: usize| {
        if n < 254 {
            zm.push(n as u8);
        } else {
            zm.push(254);
            zm.extend_from_slice(&(n as u32).to_le_bytes());
        }
    };
    for (f, v) in pairs {
        push_len(&mut zm, f.len());
        zm.extend_from_slice(f);
        push_len(&mut zm, v.len());
        zm.push(0);
        zm.extend_from_slice(v);
        count += 1;
    }
    zm.push(END);
    zm[0] = count.min(254) as u8;
    zm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ziplist_round_trip() {
        let big = vec![b'q'; 20000];
        let mid = vec![b'm'; 300];
        let items: Vec<&[u8]> = vec![
            b"0",
            b"12",
            b"13",
            b"-128",
            b"127",
            b"-32768",
            b"8388607",
            b"-8388609",
            b"2147483647",
            b"9223372036854775807",
            b"",
            b"hello",
            &mid,
            b"after-a-big-prevlen",
            &big,
            b"x",
        ];
        let zl = encode(items.iter().copied());
        let got: Vec<Vec<u8>> = decode(&zl)
            .unwrap()
            .iter()
            .map(|e| e.to_bytes().to_vec())
            .collect();
        assert_eq!(got, items.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
        assert_eq!(decode(&encode([])).unwrap(), vec![]);
    }

    #[test]
    fn ziplist_matches_redis_example() {
        // From ziplist.c: the ziplist holding "2" and "5".
        let zl = [
            0x0f, 0, 0, 0, 0x0c, 0, 0, 0, 2, 0, 0x00, 0xf3, 0x02, 0xf6, 0xff,
        ];
        assert_eq!(encode([b"2".as_slice(), b"5"]), zl);
        assert_eq!(decode(&zl).unwrap(), vec![Elem::Int(2), Elem::Int(5)]);
    }

    #[test]
    fn ziplist_rejects_corruption() {
        let zl = encode([b"a".as_slice(), b"bb", b"7"]);
        let mut bad = zl.clone();
        bad[4] = 0; // tail
        assert!(decode(&bad).is_err());
        let mut bad = zl.clone();
        bad[HEADER_SIZE + 2 + 1] = 9; // second prevlen
        assert!(decode(&bad).is_err());
        let mut bad = zl.clone();
        bad[HEADER_SIZE + 1] = 0xC5; // invalid encoding
        assert!(decode(&bad).is_err());
        let mut bad = zl.clone();
        bad[HEADER_SIZE + 1] = 0x3F; // long string: overrun
        assert!(decode(&bad).is_err());
        assert!(decode(&zl[..zl.len() - 1]).is_err());
    }

    #[test]
    fn zipmap_round_trip_and_example() {
        // From zipmap.c: "foo" => "bar", "hello" => "world".
        let zm = b"\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff";
        assert_eq!(
            encode_zipmap([(b"foo".as_slice(), b"bar".as_slice()), (b"hello", b"world")]),
            zm
        );
        let got = decode_zipmap(zm).unwrap();
        assert_eq!(got, vec![(&b"foo"[..], &b"bar"[..]), (b"hello", b"world")]);
        // Free bytes after a value are skipped.
        let padded = b"\x01\x01a\x01\x02b__\xff";
        assert_eq!(decode_zipmap(padded).unwrap(), vec![(&b"a"[..], &b"b"[..])]);
        let long = vec![b'v'; 300];
        let zm = encode_zipmap([(b"k".as_slice(), long.as_slice())]);
        assert_eq!(decode_zipmap(&zm).unwrap()[0].1, &long[..]);
        assert!(decode_zipmap(b"\x00\xff").is_err());
        assert!(decode_zipmap(b"\x01\x03foo\x03\x00ba\xff").is_err());
    }
}
