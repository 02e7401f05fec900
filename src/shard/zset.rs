//! Sorted-set storage: a member -> score dictionary plus an ordered index of
//! (score, member) pairs. Placeholder ordering by `BTreeSet` until the
//! order-statistic structure lands; owned by one shard.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

/// A score with a total order (scores are never NaN: ZADD rejects it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// A sorted set.
#[derive(Clone, Debug, Default)]
pub struct ZSet {
    dict: HashMap<Bytes, f64>,
    order: BTreeSet<(Score, Bytes)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    /// Members in ascending (score, member) order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, f64)> {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.dict.get(member).copied()
    }

    /// Sets a member's score; true when the member is new.
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        match self.dict.insert(member.clone(), score) {
            Some(old) => {
                self.order.remove(&(Score(old), member.clone()));
                self.order.insert((Score(score), member));
                false
            }
            None => {
                self.order.insert((Score(score), member));
                true
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.dict.remove_entry(member) {
            Some((m, s)) => {
                self.order.remove(&(Score(s), m));
                true
            }
            None => false,
        }
    }
}

impl PartialEq for ZSet {
    fn eq(&self, o: &Self) -> bool {
        self.dict == o.dict
    }
}
