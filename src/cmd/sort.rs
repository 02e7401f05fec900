//! SORT and SORT_RO, as Redis 7.0's `sort.c` answers them.
//!
//! ```text
//! SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET ...]]
//!          [ASC|DESC] [ALPHA] [STORE destination]
//! ```
//!
//! BY and GET patterns name other keys (`weight_*`, `obj_*->field`), which
//! may live on any shard. Such a SORT runs on a scratch copy
//! (`Multi::Sort`, see `shard::dispatch::exec_scratch`): every shard is
//! locked, the source is copied, and from its elements the keys the
//! patterns name are copied too; the handler below then finds them all
//! locally. A SORT without such patterns routes by its source and STORE
//! keys like any multi-key command. Redis Cluster refuses BY/GET patterns;
//! tether is one keyspace, so it serves them.
//!
//! Order follows Redis exactly where Redis's is defined: numeric sorts
//! break ties by the element's bytes; ALPHA compares as `strcoll` in the C
//! locale (bytes up to a NUL), or as binary strings when storing; ties
//! keep the input order (glibc's `qsort` is a merge sort). A set sorted
//! with `BY nosort` and no STORE comes out in iteration order, which
//! differs from Redis's as any set's iteration order does.

use bytes::Bytes;

use super::notify;
use super::string::keyed;
use super::{CmdSpec, Exec, Kind, Multi, NOT_INT, Route, SYNTAX, WRONGTYPE, eq_ic, parse_i64};
use crate::shard::keyspace::{Entry, Value};

pub static COMMANDS: [CmdSpec; 2] = [
    keyed!(
        "sort",
        -2,
        &["write", "denyoom", "movablekeys"],
        1,
        1,
        1,
        sort,
        Multi::Sort
    ),
    keyed!(
        "sort_ro",
        -2,
        &["readonly", "movablekeys"],
        1,
        1,
        1,
        sort_ro,
        Multi::Sort
    ),
];

/// A SORT's options, as parsed from its arguments.
#[derive(Default)]
pub struct Opts {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    /// Index of the STORE destination.
    pub store: Option<usize>,
    /// Index of the BY pattern.
    by: Option<usize>,
    /// BY names a constant key: keep the input order.
    dontsort: bool,
    /// Indexes of the GET patterns.
    gets: Vec<usize>,
}

/// Parses SORT's options (Redis's order and errors); SORT_RO takes no
/// STORE.
pub fn parse(a: &[Bytes], readonly: bool) -> Result<Opts, &'static str> {
    let mut o = Opts {
        limit: (0, -1),
        ..Default::default()
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let arg = &a[j];
        if eq_ic(arg, "asc") {
            o.desc = false;
        } else if eq_ic(arg, "desc") {
            o.desc = true;
        } else if eq_ic(arg, "alpha") {
            o.alpha = true;
        } else if eq_ic(arg, "limit") && left >= 2 {
            let (Some(s), Some(c)) = (parse_i64(&a[j + 1]), parse_i64(&a[j + 2])) else {
                return Err(NOT_INT);
            };
            o.limit = (s, c);
            j += 2;
        } else if !readonly && eq_ic(arg, "store") && left >= 1 {
            o.store = Some(j + 1);
            j += 1;
        } else if eq_ic(arg, "by") && left >= 1 {
            o.by = Some(j + 1);
            // Once a constant BY is seen, later BYs do not sort either.
            if !a[j + 1].contains(&b'*') {
                o.dontsort = true;
            }
            j += 1;
        } else if eq_ic(arg, "get") && left >= 1 {
            o.gets.push(j + 1);
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

impl Opts {
    /// The patterns that name other keys: BY with a `*`, GET other than
    /// `#` with a `*`.
    pub fn patterns<'a>(&self, a: &'a [Bytes]) -> Vec<&'a [u8]> {
        let by = self.by.filter(|_| !self.dontsort).map(|i| &a[i][..]);
        let gets = self.gets.iter().map(|&i| &a[i][..]);
        by.into_iter()
            .chain(gets)
            .filter(|p| *p != b"#" && p.contains(&b'*'))
            .collect()
    }
}

/// Where a SORT runs with more than one shard: on a scratch copy under
/// every shard's lock when a pattern names other keys, else where its
/// source and STORE keys are.
pub fn route(a: &[Bytes], readonly: bool, nshards: usize) -> Route {
    let shard_of = |k: &[u8]| crate::shard::shard_of(k, nshards);
    let Ok(o) = parse(a, readonly) else {
        return Route::Shard(shard_of(&a[1]));
    };
    if !o.patterns(a).is_empty() {
        return Route::Multi;
    }
    let src = shard_of(&a[1]);
    match o.store.map(|i| shard_of(&a[i])) {
        Some(d) if d != src => Route::Multi,
        _ => Route::Shard(src),
    }
}

/// Redis's `lookupKeyByPattern`: `#` is the element itself; otherwise the
/// first `*` is replaced by the element, and `->field` after it reads a
/// hash field. A missing key, a wrong type or no `*` give `None`.
pub fn pattern_key<'p>(pat: &'p [u8], elem: &[u8]) -> Option<(Vec<u8>, Option<&'p [u8]>)> {
    let star = pat.iter().position(|&c| c == b'*')?;
    let after = &pat[star + 1..];
    let arrow = after.windows(2).position(|w| w == b"->");
    let (post, field) = match arrow {
        Some(i) if i + 2 < after.len() => (&after[..i], Some(&after[i + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pat.len() + elem.len());
    key.extend_from_slice(&pat[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(post);
    Some((key, field))
}

fn lookup(ex: &mut Exec, pat: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    if pat == b"#" {
        return Some(elem.to_vec());
    }
    let (key, field) = pattern_key(pat, elem)?;
    match (ex.lookup_read(&key).map(|e| &e.value), field) {
        (Some(Value::Str(s)), None) => Some(s.to_vec()),
        (Some(Value::Hash(h)), Some(f)) => h.get(f).map(|v| v.to_vec()),
        _ => None,
    }
}

/// A sort weight as C's `strtod` reads it for SORT: the whole string must
/// parse (leading white space allowed, an empty string is 0), and neither
/// NaN nor an overflow or underflow (`ERANGE`) is accepted.
fn weight(b: &[u8]) -> Option<f64> {
    if b.is_empty() {
        return Some(0.0);
    }
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let s = &b[start..];
    let v = super::parse_f64(s)?;
    if v.is_finite() && (v.is_normal() || v == 0.0) && !(v == 0.0 && nonzero_mantissa(s)) {
        return Some(v);
    }
    // Infinite, zero or subnormal: strtod sets ERANGE unless the text
    // spelled an infinity or a zero.
    let inf = s.iter().any(|c| c.eq_ignore_ascii_case(&b'i'));
    if v.is_infinite() && !inf {
        return None;
    }
    if (v == 0.0 || v.is_subnormal()) && nonzero_mantissa(s) {
        return None;
    }
    Some(v)
}

/// Whether a number's mantissa (before its exponent) has a non-zero
/// digit: one that reads as 0 then underflowed.
fn nonzero_mantissa(s: &[u8]) -> bool {
    let s = s
        .strip_prefix(b"-")
        .or_else(|| s.strip_prefix(b"+"))
        .unwrap_or(s);
    let (hex, digits) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    digits
        .iter()
        .take_while(|&&c| {
            if hex {
                c != b'p' && c != b'P'
            } else {
                c != b'e' && c != b'E'
            }
        })
        .any(|&c| c != b'0' && c != b'.')
}

/// `strcmp` (what `strcoll` is in the C locale): bytes up to a NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

fn sort(ex: &mut Exec, a: &[Bytes]) {
    sort_generic(ex, a, false)
}

fn sort_ro(ex: &mut Exec, a: &[Bytes]) {
    sort_generic(ex, a, true)
}

#[derive(PartialEq)]
enum Source {
    List,
    Set,
    ZSet,
}

fn sort_generic(ex: &mut Exec, a: &[Bytes], readonly: bool) {
    let o = match parse(a, readonly) {
        Ok(o) => o,
        Err(e) => return ex.r.error(e),
    };
    // List and zset elements are shared, not copied.
    let (kind, mut elems): (Source, Vec<Bytes>) = match ex.lookup_read(&a[1]).map(|e| &e.value) {
        None => (Source::List, Vec::new()),
        Some(Value::List(l)) => (Source::List, l.iter().cloned().collect()),
        Some(Value::Set(s)) => (Source::Set, s.iter().map(|e| e.to_bytes()).collect()),
        Some(Value::ZSet(z)) => (Source::ZSet, z.iter().map(|(m, _)| m.clone()).collect()),
        Some(_) => return ex.r.error(WRONGTYPE),
    };
    let (mut dontsort, mut alpha, mut by) = (o.dontsort, o.alpha, o.by);
    let store = o.store.map(|i| &a[i]);
    // A set has no order of its own: one stored must be sorted, so that
    // a replica stores the same list.
    if dontsort && kind == Source::Set && store.is_some() {
        (dontsort, alpha, by) = (false, true, None);
    }
    let n = elems.len() as i64;
    let mut start = o.limit.0.max(0).min(n);
    let count = o.limit.1.max(-1).min(n);
    let mut end = if count < 0 { n - 1 } else { start + count - 1 };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    end = end.min(n - 1);
    if dontsort {
        if o.desc && kind != Source::Set {
            elems.reverse();
        }
    } else {
        let by_pat = by.map(|i| &a[i][..]);
        let mut keyed: Vec<(Bytes, f64, Option<Vec<u8>>)> = Vec::with_capacity(elems.len());
        let mut bad_weight = false;
        for e in elems {
            let val = match by_pat {
                Some(p) => lookup(ex, p, &e),
                None => None,
            };
            let (mut score, mut cmp) = (0.0, None);
            if alpha {
                cmp = val;
            } else {
                let w = match (&val, by_pat) {
                    (Some(v), _) => Some(&v[..]),
                    (None, None) => Some(&e[..]),
                    (None, Some(_)) => None,
                };
                if let Some(w) = w {
                    match weight(w) {
                        Some(v) => score = v,
                        None => bad_weight = true,
                    }
                }
            }
            keyed.push((e, score, cmp));
        }
        if bad_weight {
            return ex
                .r
                .error("ERR One or more scores can't be converted into double");
        }
        let storing = store.is_some();
        keyed.sort_by(|x, y| {
            let c = if !alpha {
                x.1.partial_cmp(&y.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| x.0.cmp(&y.0))
            } else if by_pat.is_some() {
                match (&x.2, &y.2) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (Some(p), Some(q)) if storing => p.cmp(q),
                    (Some(p), Some(q)) => c_str(p).cmp(c_str(q)),
                }
            } else if storing {
                x.0.cmp(&y.0)
            } else {
                c_str(&x.0).cmp(c_str(&y.0))
            };
            if o.desc { c.reverse() } else { c }
        });
        elems = keyed.into_iter().map(|k| k.0).collect();
    }
    let picked: &[Bytes] = if end >= start {
        &elems[start as usize..=end as usize]
    } else {
        &[]
    };
    let gets: Vec<&[u8]> = o.gets.iter().map(|&i| &a[i][..]).collect();
    let outputlen = picked.len() * gets.len().max(1);
    let Some(dest) = store else {
        ex.r.array(outputlen);
        for e in picked {
            if gets.is_empty() {
                ex.r.bulk(e);
            }
            for g in &gets {
                let v = lookup(ex, g, e);
                ex.r.bulk_opt(v.as_deref());
            }
        }
        return;
    };
    let mut list = std::collections::VecDeque::with_capacity(outputlen);
    for e in picked {
        if gets.is_empty() {
            list.push_back(e.clone());
        }
        for g in &gets {
            let v = lookup(ex, g, e).unwrap_or_default();
            list.push_back(Bytes::from(v));
        }
    }
    if outputlen > 0 {
        ex.set_key(dest, Value::List(Box::new(list)));
        ex.modified(dest);
        ex.notify(notify::LIST, "sortstore", dest);
    } else if ex.lookup_write(dest).is_some() {
        ex.db().0.remove(dest);
        ex.modified(dest);
        ex.notify(notify::GENERIC, "del", dest);
    }
    ex.r.int(outputlen as i64)
}

/// The keys the patterns `pats` ([`Opts::patterns`]) name for the elements
/// of `source` (the source's entry, if any), sorted and without
/// duplicates: what a SORT's scratch copy must also hold.
pub fn pattern_keys(pats: &[&[u8]], source: Option<&Entry>) -> Vec<Bytes> {
    let elems: Vec<&[u8]> = match source.map(|e| &e.value) {
        Some(Value::List(l)) => l.iter().map(|e| &e[..]).collect(),
        Some(Value::Set(s)) => s.iter().map(|e| &e[..]).collect(),
        Some(Value::ZSet(z)) => z.iter().map(|(m, _)| &m[..]).collect(),
        _ => Vec::new(),
    };
    let mut keys = Vec::with_capacity(elems.len() * pats.len());
    for e in elems {
        for p in pats {
            if let Some((k, _)) = pattern_key(p, e) {
                keys.push(Bytes::from(k));
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_substitute_the_first_star_and_split_a_field() {
        assert_eq!(pattern_key(b"w_*", b"3"), Some((b"w_3".to_vec(), None)));
        assert_eq!(
            pattern_key(b"o_*->name", b"7"),
            Some((b"o_7".to_vec(), Some(&b"name"[..])))
        );
        // An empty field is no field: "->" stays in the key name.
        assert_eq!(pattern_key(b"o_*->", b"7"), Some((b"o_7->".to_vec(), None)));
        assert_eq!(pattern_key(b"a*b*c", b"X"), Some((b"aXb*c".to_vec(), None)));
        assert_eq!(pattern_key(b"nostar", b"X"), None);
    }

    #[test]
    fn weights_read_as_strtod_does() {
        assert_eq!(weight(b""), Some(0.0));
        assert_eq!(weight(b" 1.5"), Some(1.5));
        assert_eq!(weight(b"1.5 "), None);
        assert_eq!(weight(b"  "), None);
        assert_eq!(weight(b"0x10"), Some(16.0));
        assert_eq!(weight(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(weight(b"1e400"), None);
        assert_eq!(weight(b"1e-400"), None);
        assert_eq!(weight(b"0.000"), Some(0.0));
        assert_eq!(weight(b"nan"), None);
        assert_eq!(weight(b"abc"), None);
    }
}
