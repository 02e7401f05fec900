//! LZF, the byte-oriented LZ77 variant Redis uses for RDB strings
//! (`rdbcompression yes`) and compressed quicklist nodes. Pure functions,
//! called by the RDB writer and loader on whatever thread runs them.
//!
//! Written here rather than taken from crates.io: the `lzf` crate is marked
//! deprecated by its author, and the format is ~60 lines. Any valid LZF
//! stream decodes with liblzf, so the compressor need not match liblzf's
//! output byte for byte (it does not).
//!
//! A stream is a sequence of runs, each introduced by a control byte:
//!
//! ```text
//! 000LLLLL <L+1 literal bytes>          literal run, 1..=32 bytes
//! LLLOOOOO OOOOOOOO                     back reference, length L+2 (L in 1..=6)
//! 111OOOOO LLLLLLLL OOOOOOOO            back reference, length L+9
//! ```
//!
//! A back reference copies `length` bytes starting `offset + 1` bytes back
//! in the output (13-bit offset, so up to 8192 bytes back); source and
//! destination may overlap, which is how runs of one byte compress.

/// Largest back-reference distance (`offset + 1`).
const MAX_OFF: usize = 1 << 13;
/// Longest back reference: 7 + 255 + 2.
const MAX_REF: usize = (1 << 8) + (1 << 3);
/// Longest literal run.
const MAX_LIT: usize = 1 << 5;

/// Why a compressed string could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LzfError {
    /// The output would exceed the length the RDB header announced.
    OutputOverrun,
    /// A literal run or a back-reference header runs past the input.
    InputOverrun,
    /// A back reference points before the start of the output.
    BadReference,
    /// The stream decoded to fewer bytes than announced.
    ShortOutput,
    /// An empty compressed stream.
    Empty,
    /// The announced length is more than this much input can expand to.
    ImpossibleLength,
}

impl LzfError {
    pub fn as_str(&self) -> &'static str {
        match self {
            LzfError::OutputOverrun => "LZF data decodes past the announced length",
            LzfError::InputOverrun => "LZF data ends inside a run",
            LzfError::BadReference => "LZF back reference before the start of the output",
            LzfError::ShortOutput => "LZF data decodes to fewer bytes than announced",
            LzfError::Empty => "empty LZF data",
            LzfError::ImpossibleLength => {
                "LZF length announces more than the compressed data can hold"
            }
        }
    }
}

/// Decodes `input` into exactly `out_len` bytes (Redis rejects a string
/// whose decompressed size differs from the stored length).
///
/// `out_len` must already have been checked against the caller's size
/// limit: it is allocated up front.
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, LzfError> {
    if input.is_empty() {
        return Err(LzfError::Empty);
    }
    // Three input bytes expand to at most MAX_REF output bytes; refuse to
    // allocate for a length the input cannot produce.
    if out_len / MAX_REF > input.len() / 3 + 1 {
        return Err(LzfError::ImpossibleLength);
    }
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            if out.len() + run > out_len {
                return Err(LzfError::OutputOverrun);
            }
            let lit = input.get(ip..ip + run).ok_or(LzfError::InputOverrun)?;
            out.extend_from_slice(lit);
            ip += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(ip).ok_or(LzfError::InputOverrun)? as usize;
                ip += 1;
            }
            let low = *input.get(ip).ok_or(LzfError::InputOverrun)? as usize;
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            len += 2;
            if out.len() + len > out_len {
                return Err(LzfError::OutputOverrun);
            }
            let Some(mut from) = out.len().checked_sub(back) else {
                return Err(LzfError::BadReference);
            };
            if back >= len {
                // No overlap: one bulk copy.
                out.extend_from_within(from..from + len);
            } else {
                for _ in 0..len {
                    let b = out[from];
                    out.push(b);
                    from += 1;
                }
            }
        }
    }
    if out.len() != out_len {
        return Err(LzfError::ShortOutput);
    }
    Ok(out)
}

/// Compresses `input`, or returns `None` when the result would be longer
/// than `max_out` bytes (the caller then stores the string verbatim; Redis
/// asks for a saving of at least 4 bytes: `max_out = len - 4`).
pub fn compress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    let n = input.len();
    if n == 0 {
        return None;
    }
    // A hash table of recent positions (stored +1; 0 = empty), sized to the
    // input so short strings do not pay for zeroing a big table.
    let hlog = (usize::BITS - n.leading_zeros()).clamp(8, 14);
    let mut table = vec![0u32; 1 << hlog];
    let hash = |i: usize| -> usize {
        let v = (input[i] as u32) << 16 | (input[i + 1] as u32) << 8 | input[i + 2] as u32;
        (v.wrapping_mul(2654435761) >> (32 - hlog)) as usize
    };

    let mut out = Vec::with_capacity(max_out.min(n + n / 32 + 1));
    let mut lit_start = 0;
    let mut i = 0;
    while i + 2 < n {
        let h = hash(i);
        let cand = table[h] as usize;
        table[h] = (i + 1) as u32;
        if cand != 0 {
            let r = cand - 1;
            let back = i - r;
            if back <= MAX_OFF && input[r..r + 3] == input[i..i + 3] {
                let max_len = (n - i).min(MAX_REF);
                let mut len = 3;
                while len < max_len && input[r + len] == input[i + len] {
                    len += 1;
                }
                push_literals(&mut out, &input[lit_start..i]);
                let l = len - 2;
                let off = back - 1;
                if l < 7 {
                    out.push(((l << 5) | (off >> 8)) as u8);
                } else {
                    out.push(((7 << 5) | (off >> 8)) as u8);
                    out.push((l - 7) as u8);
                }
                out.push(off as u8);
                // Remember the positions the match covered, so the next
                // repetition can refer to any of them.
                let stop = (i + len).min(n.saturating_sub(2));
                for j in i + 1..stop {
                    let h = hash(j);
                    table[h] = (j + 1) as u32;
                }
                i += len;
                lit_start = i;
                if out.len() > max_out {
                    return None;
                }
                continue;
            }
        }
        i += 1;
    }
    push_literals(&mut out, &input[lit_start..]);
    (out.len() <= max_out).then_some(out)
}

fn push_literals(out: &mut Vec<u8>, lits: &[u8]) {
    for chunk in lits.chunks(MAX_LIT) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![b'a'; 1000],
            b"abcabcabcabcabcabcabcabcabcabcabcabc".to_vec(),
            (0..5000u32).map(|i| (i % 251) as u8).collect(),
            b"x".to_vec(),
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [3, 21, 100, 9000, 70000] {
            inputs.push((0..len).map(|_| rng.u8(b'a'..b'e')).collect());
        }
        for inp in inputs {
            if let Some(c) = compress(&inp, inp.len() + 64) {
                assert_eq!(decompress(&c, inp.len()).unwrap(), inp);
            }
        }
    }

    #[test]
    fn compresses_runs_well() {
        let c = compress(&[b'a'; 1000], 996).unwrap();
        assert!(c.len() < 20, "{}", c.len());
        assert!(compress(b"abcdefghijklmnopqrstuvwxyz", 22).is_none());
    }

    #[test]
    fn rejects_bad_streams() {
        assert_eq!(decompress(&[], 1), Err(LzfError::Empty));
        assert_eq!(decompress(&[5, b'a'], 6), Err(LzfError::InputOverrun));
        assert_eq!(decompress(&[0, b'a'], 2), Err(LzfError::ShortOutput));
        assert_eq!(
            decompress(&[1, b'a', b'b'], 1),
            Err(LzfError::OutputOverrun)
        );
        // Back reference 2 bytes back with only 1 byte of output.
        assert_eq!(
            decompress(&[0, b'a', 0x20, 1], 4),
            Err(LzfError::BadReference)
        );
        assert_eq!(
            decompress(&[0, b'a', 0xE0], 40),
            Err(LzfError::InputOverrun)
        );
    }
}
