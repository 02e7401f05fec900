//! String values as the keyspace stores them: up to 30 bytes inline in the
//! entry (counters, flags, short tokens, the 3- and 16-byte values of the
//! benchmarks), longer ones in one exact-size heap block. Set members are
//! `Str`s too, so a membership test of a short member reads no heap block
//! beyond the set's own entry.
//!
//! Redis keeps short strings "embstr", in one allocation with their object
//! header. Here a short value costs no allocation at all: a 16-byte value
//! used to be a 32-byte `Bytes` handle *plus* a 32-byte malloc chunk, and
//! every GET or SET touched a reference count. A `Str` is 32 bytes and
//! leaves `Value` at 32 bytes (its tag byte has room for `Value`'s own).

use std::ops::Deref;

use bytes::Bytes;

const INLINE: usize = 30;

#[derive(Clone)]
pub enum Str {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Str {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Str::Inline { len, buf } => &buf[..*len as usize],
            Str::Heap(v) => v,
        }
    }

    /// A `Bytes` copy, for code that keeps the value beyond the entry.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }

    /// Whether the value is stored inline (OBJECT ENCODING says embstr).
    pub fn is_inline(&self) -> bool {
        matches!(self, Str::Inline { .. })
    }
}

impl Deref for Str {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Str {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for Str {
    fn from(b: &[u8]) -> Str {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Str::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Str::Heap(b.to_vec())
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Str {
    fn from(b: &[u8; N]) -> Str {
        Str::from(&b[..])
    }
}

impl From<Vec<u8>> for Str {
    fn from(v: Vec<u8>) -> Str {
        if v.len() <= INLINE {
            Str::from(&v[..])
        } else {
            Str::Heap(v)
        }
    }
}

impl From<Bytes> for Str {
    fn from(b: Bytes) -> Str {
        if b.len() <= INLINE {
            Str::from(&b[..])
        } else {
            // Takes the buffer over without a copy when `b` owns it alone.
            Str::Heap(Vec::from(b))
        }
    }
}

impl From<&Bytes> for Str {
    fn from(b: &Bytes) -> Str {
        Str::from(&b[..])
    }
}

impl PartialEq for Str {
    fn eq(&self, o: &Str) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for Str {}

/// Hashes as the bytes do, so a set of `Str` is looked up by `&[u8]`.
impl std::hash::Hash for Str {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h)
    }
}

impl std::borrow::Borrow<[u8]> for Str {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::keyspace::{Entry, Value};

    #[test]
    fn sizes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Str>(), 32);
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        for len in [0, 1, 16, 30, 31, 100, 5000] {
            let b = vec![b'v'; len];
            let s = Str::from(&b[..]);
            assert_eq!(s.as_bytes(), &b[..]);
            assert_eq!(s.is_inline(), len <= INLINE);
            assert_eq!(Str::from(Bytes::from(b.clone())), s);
            assert_eq!(Str::from(b.clone()).to_bytes(), Bytes::from(b));
        }
    }
}
