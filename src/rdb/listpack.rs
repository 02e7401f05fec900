//! Listpack: Redis 7's compact sequence of strings and integers, the blob
//! inside RDB types 16 (hash), 17 (zset), 18 (quicklist node) and 20 (set).
//! Pure functions over byte slices.
//!
//! ```text
//! <u32 LE total bytes> <u16 LE element count (65535 = unknown)>
//! <entry> ... <entry> FF
//!
//! entry = <encoding + data> <backlen>
//!   0xxxxxxx                         7-bit unsigned int
//!   10LLLLLL <L bytes>               string, 6-bit length
//!   110xxxxx xxxxxxxx                13-bit signed int (big-endian bits)
//!   1110LLLL LLLLLLLL <L bytes>      string, 12-bit length
//!   F0 <u32 LE L> <L bytes>          string, 32-bit length
//!   F1 <i16 LE> | F2 <i24 LE> | F3 <i32 LE> | F4 <i64 LE>
//! backlen = length of <encoding + data>, 7 bits per byte, written so it can
//!   be read right-to-left: the last byte carries the low 7 bits and has the
//!   high bit set when more bytes follow to its left.
//! ```
//!
//! [`decode`] validates like Redis's `lpValidateIntegrity` with `deep = 1`:
//! header size and total bytes, terminator, every entry inside the blob,
//! every back-length, the element count.

use super::{BlobError, Elem, canonical_int};

/// Header: total bytes (u32) + element count (u16).
pub const HEADER_SIZE: usize = 6;
/// The terminator byte.
pub const EOF: u8 = 0xFF;
/// Element count meaning "too many to count in 16 bits".
pub const COUNT_UNKNOWN: u16 = u16::MAX;

/// Validates a listpack and returns its elements in order.
pub fn decode(lp: &[u8]) -> Result<Vec<Elem<'_>>, BlobError> {
    if lp.len() < HEADER_SIZE + 1 {
        return Err(BlobError::new("shorter than header plus terminator", 0));
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]) as usize;
    if total != lp.len() {
        return Err(BlobError::new(
            "total-bytes header differs from blob length",
            0,
        ));
    }
    let end = lp.len() - 1;
    if lp[end] != EOF {
        return Err(BlobError::new("missing terminator", end));
    }
    let count = u16::from_le_bytes([lp[4], lp[5]]);
    let mut out = Vec::with_capacity((count as usize).min(1024));
    let mut p = HEADER_SIZE;
    // `lp[end]` is EOF, so the scan stops at `end` at the latest provided
    // every entry is checked to end before it.
    while lp[p] != EOF {
        let (elem, len) = entry(lp, p, end)?;
        let back = backlen_size(len);
        if p + len + back > end {
            return Err(BlobError::new("entry back-length runs past the end", p));
        }
        if decode_backlen(&lp[p + len..p + len + back]) != Some(len) {
            return Err(BlobError::new(
                "entry back-length does not match the entry",
                p,
            ));
        }
        out.push(elem);
        p += len + back;
    }
    if p != end {
        return Err(BlobError::new("terminator before the end of the blob", p));
    }
    if count != COUNT_UNKNOWN && count as usize != out.len() {
        return Err(BlobError::new("element count header is wrong", 4));
    }
    Ok(out)
}

/// Decodes the entry at `p` (whose encoding and data must end before
/// `end`): the element and the size of encoding + data.
fn entry(lp: &[u8], p: usize, end: usize) -> Result<(Elem<'_>, usize), BlobError> {
    let overrun = || BlobError::new("entry runs past the end", p);
    let byte = |i: usize| -> Result<u8, BlobError> {
        if p + i < end {
            Ok(lp[p + i])
        } else {
            Err(overrun())
        }
    };
    let b = lp[p];
    let (elem, len) = if b & 0x80 == 0 {
        (Elem::Int(b as i64), 1)
    } else if b & 0xC0 == 0x80 {
        let n = (b & 0x3F) as usize;
        (
            Elem::Str(string(lp, p + 1, n, end).ok_or_else(overrun)?),
            1 + n,
        )
    } else if b & 0xE0 == 0xC0 {
        let u = ((b as i64 & 0x1F) << 8) | byte(1)? as i64;
        let v = if u >= 1 << 12 { u - (1 << 13) } else { u };
        (Elem::Int(v), 2)
    } else if b & 0xF0 == 0xE0 {
        let n = ((b as usize & 0x0F) << 8) | byte(1)? as usize;
        (
            Elem::Str(string(lp, p + 2, n, end).ok_or_else(overrun)?),
            2 + n,
        )
    } else {
        match b {
            0xF0 => {
                let n = u32::from_le_bytes([byte(1)?, byte(2)?, byte(3)?, byte(4)?]) as usize;
                let s = string(lp, p + 5, n, end).ok_or_else(overrun)?;
                (Elem::Str(s), 5 + n)
            }
            0xF1 => (
                Elem::Int(i16::from_le_bytes([byte(1)?, byte(2)?]) as i64),
                3,
            ),
            0xF2 => {
                let v = i32::from_le_bytes([0, byte(1)?, byte(2)?, byte(3)?]) >> 8;
                (Elem::Int(v as i64), 4)
            }
            0xF3 => {
                let v = i32::from_le_bytes([byte(1)?, byte(2)?, byte(3)?, byte(4)?]);
                (Elem::Int(v as i64), 5)
            }
            0xF4 => {
                let mut a = [0u8; 8];
                for (i, x) in a.iter_mut().enumerate() {
                    *x = byte(i + 1)?;
                }
                (Elem::Int(i64::from_le_bytes(a)), 9)
            }
            _ => return Err(BlobError::new("invalid entry encoding", p)),
        }
    };
    Ok((elem, len))
}

/// `n` bytes at `at`, ending strictly before `end`.
fn string(lp: &[u8], at: usize, n: usize, end: usize) -> Option<&[u8]> {
    let stop = at.checked_add(n)?;
    (stop < end).then(|| &lp[at..stop])
}

/// Bytes the back-length of an entry of `len` bytes takes.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

/// Reads a back-length right to left; `None` unless it uses exactly all of
/// `b`.
fn decode_backlen(b: &[u8]) -> Option<usize> {
    let mut v = 0usize;
    for (i, &x) in b.iter().rev().enumerate() {
        v |= ((x & 0x7F) as usize) << (7 * i);
        let more = x & 0x80 != 0;
        if more != (i + 1 < b.len()) {
            return None;
        }
    }
    Some(v)
}

fn push_backlen(out: &mut Vec<u8>, len: usize) {
    let n = backlen_size(len);
    for i in (0..n).rev() {
        let mut x = ((len >> (7 * i)) & 0x7F) as u8;
        // Every byte but the leftmost flags "more bytes to the left".
        if i < n - 1 {
            x |= 0x80;
        }
        out.push(x);
    }
}

/// Encodes elements as Redis's `lpAppend` does: strings that are canonical
/// integers are stored in the smallest integer encoding.
pub fn encode<'a, I>(items: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut lp = vec![0u8; HEADER_SIZE];
    let mut count = 0usize;
    for s in items {
        let start = lp.len();
        match canonical_int(s) {
            Some(v) => push_int(&mut lp, v),
            None => push_str(&mut lp, s),
        }
        let len = lp.len() - start;
        push_backlen(&mut lp, len);
        count += 1;
    }
    lp.push(EOF);
    let total = lp.len() as u32;
    lp[0..4].copy_from_slice(&total.to_le_bytes());
    let c = if count < COUNT_UNKNOWN as usize {
        count as u16
    } else {
        COUNT_UNKNOWN
    };
    lp[4..6].copy_from_slice(&c.to_le_bytes());
    lp
}

fn push_int(lp: &mut Vec<u8>, v: i64) {
    if (0..=127).contains(&v) {
        lp.push(v as u8);
    } else if (-4096..=4095).contains(&v) {
        let u = (v as u16) & 0x1FFF;
        lp.push(0xC0 | (u >> 8) as u8);
        lp.push(u as u8);
    } else if i16::try_from(v).is_ok() {
        lp.push(0xF1);
        lp.extend_from_slice(&(v as i16).to_le_bytes());
    } else if (-(1 << 23)..(1 << 23)).contains(&v) {
        lp.push(0xF2);
        lp.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
    } else if i32::try_from(v).is_ok() {
        lp.push(0xF3);
        lp.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        lp.push(0xF4);
        lp.extend_from_slice(&v.to_le_bytes());
    }
}

fn push_str(lp: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 64 {
        lp.push(0x80 | n as u8);
    } else if n < 4096 {
        lp.push(0xE0 | (n >> 8) as u8);
        lp.push(n as u8);
    } else {
        lp.push(0xF0);
        lp.extend_from_slice(&(n as u32).to_le_bytes());
    }
    lp.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_encoding() {
        let long = vec![b'z'; 5000];
        let mid = vec![b'y'; 300];
        let items: Vec<&[u8]> = vec![
            b"",
            b"0",
            b"127",
            b"128",
            b"-1",
            b"-4096",
            b"4095",
            b"-4097",
            b"32767",
            b"-32768",
            b"8388607",
            b"-8388608",
            b"2147483647",
            b"-2147483649",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"007",
            b"hello",
            &mid,
            &long,
        ];
        let lp = encode(items.iter().copied());
        let got: Vec<Vec<u8>> = decode(&lp)
            .unwrap()
            .iter()
            .map(|e| e.to_bytes().to_vec())
            .collect();
        let want: Vec<Vec<u8>> = items.iter().map(|s| s.to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn backlen_round_trip() {
        for len in [1, 127, 128, 16382, 16383, 2097150, 2097151, 268435455] {
            let mut b = Vec::new();
            push_backlen(&mut b, len);
            assert_eq!(b.len(), backlen_size(len));
            assert_eq!(decode_backlen(&b), Some(len), "{len}");
        }
    }

    #[test]
    fn rejects_corruption() {
        let lp = encode([b"a".as_slice(), b"bb", b"12"]);
        assert!(decode(&lp).is_ok());
        assert!(decode(&lp[..lp.len() - 1]).is_err());
        let mut bad = lp.clone();
        bad[4] = 7; // count
        assert!(decode(&bad).is_err());
        let mut bad = lp.clone();
        bad[HEADER_SIZE + 2] = 9; // first backlen
        assert!(decode(&bad).is_err());
        let mut bad = lp.clone();
        bad[HEADER_SIZE] = 0xF5; // invalid encoding
        assert!(decode(&bad).is_err());
        let mut bad = lp.clone();
        bad[HEADER_SIZE] = 0xBF; // 63-byte string: overruns
        assert!(decode(&bad).is_err());
    }
}
