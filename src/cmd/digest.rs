//! DEBUG DIGEST and DEBUG DIGEST-VALUE: Redis 7.0's dataset digest
//! (`debug.c`), bit for bit, so a tether replica can be checked against a
//! stock master (and Redis's replication tests compare master and replica
//! with it).
//!
//! A key's digest starts at zero, mixes in the key, its type and its value,
//! and an expiring key also XORs in `!!expire!!`. Mixing is
//! `d = SHA1(d xor SHA1(data))`, which keeps order (lists, a zset or hash
//! element's two halves); unordered things (keys, set members, zset and
//! hash elements) are XORed together, so iteration order does not matter.
//! That is what lets every shard digest its own keys: the dataset digest
//! mixes each non-empty database's number in turn, then XORs in the
//! database's keys, whichever shard holds them.

use sha1_smol::Sha1;

use crate::shard::keyspace::{Db, Entry, Value};

pub type Digest = [u8; 20];

fn sha1(data: &[u8]) -> Digest {
    Sha1::from(data).digest().bytes()
}

/// `xorDigest`: d ^= SHA1(data).
fn xor_digest(d: &mut Digest, data: &[u8]) {
    for (a, b) in d.iter_mut().zip(sha1(data)) {
        *a ^= b;
    }
}

/// `mixDigest`: d = SHA1(d ^ SHA1(data)).
fn mix_digest(d: &mut Digest, data: &[u8]) {
    xor_digest(d, data);
    *d = sha1(d);
}

/// Redis's type codes (`OBJ_STRING` ...), as `htonl` puts them.
fn type_code(v: &Value) -> u32 {
    match v {
        Value::Str(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
    }
}

/// `xorObjectDigest`: mixes a value (and whether it expires) into `d`.
pub fn value_digest(d: &mut Digest, e: &Entry) {
    mix_digest(d, &type_code(&e.value).to_be_bytes());
    match &e.value {
        Value::Str(s) => mix_digest(d, s.as_bytes()),
        Value::List(l) => l.iter().for_each(|x| mix_digest(d, x)),
        Value::Set(s) => s.iter().for_each(|m| xor_digest(d, m.as_bytes())),
        Value::ZSet(z) => {
            for (m, score) in z.iter() {
                let mut el = [0u8; 20];
                mix_digest(&mut el, m);
                mix_digest(&mut el, super::zset::format_score(score).as_bytes());
                xor_digest(d, &el);
            }
        }
        Value::Hash(h) => {
            for (f, v) in h.iter() {
                let mut el = [0u8; 20];
                mix_digest(&mut el, f.as_bytes());
                mix_digest(&mut el, v.as_bytes());
                xor_digest(d, &el);
            }
        }
    }
    if e.expire_at != 0 {
        xor_digest(d, b"!!expire!!");
    }
}

/// One database's share: the XOR of its keys' digests (each hashed once
/// more, as `xorDigest` does), and how many keys
/// (Redis skips an empty database; expired keys not yet deleted count, as
/// they are still in its dict).
fn db_digest(db: &Db) -> (Digest, u64) {
    let mut acc = [0u8; 20];
    let mut n = 0;
    for (k, e) in db.iter() {
        let mut d = [0u8; 20];
        mix_digest(&mut d, k);
        value_digest(&mut d, e);
        xor_digest(&mut acc, &d);
        n += 1;
    }
    (acc, n)
}

/// A shard's shares for DEBUG DIGEST, as the bytes its reply carries: per
/// database, [`db_digest`]'s 20 bytes and its key count (8, little-endian).
pub fn shares(dbs: &[Db]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dbs.len() * 28);
    for db in dbs {
        let (x, n) = db_digest(db);
        out.extend_from_slice(&x);
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

/// Adds one shard's [`shares`] into the per-database totals.
pub fn add_shares(total: &mut [(Digest, u64)], shares: &[u8]) {
    for (acc, part) in total.iter_mut().zip(shares.chunks_exact(28)) {
        for (x, y) in acc.0.iter_mut().zip(&part[..20]) {
            *x ^= y;
        }
        acc.1 += u64::from_le_bytes(part[20..].try_into().expect("8 bytes"));
    }
}

/// `computeDatasetDigest` from every database's shares, summed over shards.
pub fn dataset_digest(dbs: &[(Digest, u64)]) -> Digest {
    let mut out = [0u8; 20];
    for (j, (keys, n)) in dbs.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        mix_digest(&mut out, &(j as u32).to_be_bytes());
        for (a, b) in out.iter_mut().zip(keys) {
            *a ^= b;
        }
    }
    out
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Against what stock Redis 7.0.15 printed for the same data
    /// (`tests/compat_cases.rs` compares whole datasets).
    #[test]
    fn digests_match_redis() {
        assert_eq!(hex(&dataset_digest(&[([0; 20], 0); 16])), "0".repeat(40));
        let list: std::collections::VecDeque<Bytes> =
            ["a", "b", "c", "1"].into_iter().map(Bytes::from).collect();
        let mut d = [0u8; 20];
        value_digest(&mut d, &Entry::new(Value::List(Box::new(list))));
        // RPUSH l a b c 1; DEBUG DIGEST-VALUE l
        assert_eq!(hex(&d), "e093abdde6c4844ba87b7ed2172d25e2334a432b");
    }
}
