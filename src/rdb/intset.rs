//! Intset: a sorted array of distinct integers, the blob of RDB type 11
//! (sets of small integers). Pure functions over byte slices.
//!
//! ```text
//! <u32 LE width: 2, 4 or 8> <u32 LE count> <count * width bytes, LE, strictly ascending>
//! ```
//!
//! [`decode`] checks what Redis's `intsetValidateIntegrity` checks with
//! `deep = 1`: a known width, a size that is exactly header + count * width,
//! a non-empty set, strictly ascending members.

use super::BlobError;

const HEADER_SIZE: usize = 8;

/// Validates an intset and returns its members in ascending order.
pub fn decode(is: &[u8]) -> Result<Vec<i64>, BlobError> {
    if is.len() < HEADER_SIZE {
        return Err(BlobError::new("shorter than its header", 0));
    }
    let width = u32::from_le_bytes([is[0], is[1], is[2], is[3]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(BlobError::new("unknown integer width", 0));
    }
    let count = u32::from_le_bytes([is[4], is[5], is[6], is[7]]) as usize;
    if count
        .checked_mul(width)
        .and_then(|n| n.checked_add(HEADER_SIZE))
        != Some(is.len())
    {
        return Err(BlobError::new("size does not match width times count", 4));
    }
    if count == 0 {
        return Err(BlobError::new("empty intset", 4));
    }
    let mut out: Vec<i64> = Vec::with_capacity(count);
    for (i, c) in is[HEADER_SIZE..].chunks_exact(width).enumerate() {
        let v = match width {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        };
        if out.last().is_some_and(|&last| last >= v) {
            return Err(BlobError::new(
                "members not strictly ascending",
                HEADER_SIZE + i * width,
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// Encodes a set of integers (sorted and deduplicated here) with the
/// narrowest width that holds them all, as Redis does.
pub fn encode(members: &[i64]) -> Vec<u8> {
    let mut v = members.to_vec();
    v.sort_unstable();
    v.dedup();
    let width: usize = if v.iter().all(|&x| i16::try_from(x).is_ok()) {
        2
    } else if v.iter().all(|&x| i32::try_from(x).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + v.len() * width);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes()[..width]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_width() {
        for set in [
            vec![1i64, -5, 3],
            vec![70000, -1],
            vec![1 << 40, i64::MIN, i64::MAX],
        ] {
            let mut want = set.clone();
            want.sort();
            assert_eq!(decode(&encode(&set)).unwrap(), want);
        }
    }

    #[test]
    fn rejects_corruption() {
        let is = encode(&[1, 2, 3]);
        assert!(decode(&is[..is.len() - 1]).is_err());
        let mut bad = is.clone();
        bad[0] = 3;
        assert!(decode(&bad).is_err());
        let mut bad = is.clone();
        bad[HEADER_SIZE] = 9; // 9, 2, 3: not ascending
        assert!(decode(&bad).is_err());
        assert!(decode(&encode(&[])).is_err());
    }
}
