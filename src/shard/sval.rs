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

/// An inline value's length byte: the length in the low bits, and two
/// flags OBJECT ENCODING reads (`Str::encoding_flags`). Redis keeps how a
/// string was made: one changed in place (APPEND, SETRANGE, the bit
/// commands, an HLL) is `raw` at any length, and INCRBYFLOAT's result is
/// never `int`. Longer values are `raw` or `embstr` by length alone.
const LEN_MASK: u8 = 0x3f;
const RAW: u8 = 0x80;
const NO_INT: u8 = 0x40;

#[derive(Clone)]
pub enum Str {
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    Heap(Vec<u8>),
    /// A heap value changed in place (see `LEN_MASK`).
    Raw(Vec<u8>),
}

impl Str {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Str::Inline { len, buf } => &buf[..(*len & LEN_MASK) as usize],
            Str::Heap(v) | Str::Raw(v) => v,
        }
    }

    /// Marks the value as changed in place: OBJECT ENCODING says `raw`.
    pub fn mark_raw(&mut self) {
        match self {
            Str::Inline { len, .. } => *len |= RAW,
            Str::Heap(v) => *self = Str::Raw(std::mem::take(v)),
            Str::Raw(_) => {}
        }
    }

    /// Marks the value as made from a float (INCRBYFLOAT): never `int`
    /// (a heap value is too long to read as one anyway).
    pub fn mark_no_int(&mut self) {
        if let Str::Inline { len, .. } = self {
            *len |= NO_INT;
        }
    }

    /// (raw, no-int) as marked by [`Self::mark_raw`] and
    /// [`Self::mark_no_int`].
    pub fn encoding_flags(&self) -> (bool, bool) {
        match self {
            Str::Inline { len, .. } => (len & RAW != 0, len & NO_INT != 0),
            Str::Heap(_) => (false, false),
            Str::Raw(_) => (true, false),
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

    /// A string of `len` zero bytes (SETBIT and BITFIELD creating a key).
    pub fn zeroed(len: usize) -> Str {
        if len <= INLINE {
            Str::Inline {
                len: len as u8,
                buf: [0; INLINE],
            }
        } else {
            Str::Heap(vec![0; len])
        }
    }

    /// The bytes, writable in place: the bit commands flip bits of a
    /// stored value without copying it, so SETBIT on a large bitmap costs
    /// O(1) as in Redis.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        match self {
            Str::Inline { len, buf } => &mut buf[..(*len & LEN_MASK) as usize],
            Str::Heap(v) | Str::Raw(v) => v,
        }
    }

    /// Moves the bytes out as a `Vec` (no copy for a heap value), leaving
    /// the value empty: for code that rewrites a value wholesale (an HLL
    /// changing encoding) and stores it back with `Str::from`.
    pub fn take_vec(&mut self) -> Vec<u8> {
        match std::mem::replace(self, Str::zeroed(0)) {
            Str::Heap(v) | Str::Raw(v) => v,
            Str::Inline { len, buf } => buf[..(len & LEN_MASK) as usize].to_vec(),
        }
    }

    /// Pads the value with zero bytes up to `len` (Redis's `sdsgrowzero`);
    /// returns whether it grew. A heap value grows with `Vec`'s doubling,
    /// so SETBIT at rising offsets is amortised O(1).
    pub fn grow_zeroed(&mut self, len: usize) -> bool {
        match self {
            Str::Inline { len: n, buf } if len <= INLINE => {
                let old = (*n & LEN_MASK) as usize;
                if len <= old {
                    return false;
                }
                buf[old..len].fill(0);
                *n = (*n & !LEN_MASK) | len as u8;
                true
            }
            Str::Inline { len: n, buf } => {
                let mut v = Vec::with_capacity(len);
                v.extend_from_slice(&buf[..(*n & LEN_MASK) as usize]);
                v.resize(len, 0);
                *self = if *n & RAW != 0 {
                    Str::Raw(v)
                } else {
                    Str::Heap(v)
                };
                true
            }
            Str::Heap(v) | Str::Raw(v) if v.len() < len => {
                v.resize(len, 0);
                true
            }
            Str::Heap(_) | Str::Raw(_) => false,
        }
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

    #[test]
    fn grows_with_zeros_in_place() {
        for (start, to) in [
            (0, 0),
            (0, 5),
            (3, 30),
            (10, 31),
            (30, 31),
            (40, 1000),
            (40, 40),
        ] {
            let mut s = Str::from(&vec![0xffu8; start][..]);
            let grew = s.grow_zeroed(to);
            assert_eq!(grew, to > start);
            let mut want = vec![0xffu8; start];
            want.resize(to.max(start), 0);
            assert_eq!(s.as_bytes(), &want[..]);
            s.as_mut_bytes()[0..1.min(want.len())].fill(7);
        }
        // An inline value's spare bytes are zeroed, whatever they held.
        let mut s = Str::Inline {
            len: 1,
            buf: [9; INLINE],
        };
        s.grow_zeroed(4);
        assert_eq!(s.as_bytes(), &[9, 0, 0, 0]);
        assert_eq!(Str::zeroed(3).as_bytes(), &[0, 0, 0]);
        // The encoding flags live in the length byte and survive growth.
        let mut s = Str::from(&b"12"[..]);
        s.mark_raw();
        s.mark_no_int();
        assert_eq!(s.as_bytes(), b"12");
        assert_eq!(s.encoding_flags(), (true, true));
        s.grow_zeroed(5);
        assert_eq!(s.as_bytes(), b"12\0\0\0");
        assert_eq!(s.encoding_flags(), (true, true));
        // Past the inline size the raw mark moves to the heap variant.
        let mut big = s.clone();
        big.grow_zeroed(40);
        assert_eq!(big.encoding_flags(), (true, false));
        let mut heap = Str::from(&[7u8; 35][..]);
        assert_eq!(heap.encoding_flags(), (false, false));
        heap.mark_raw();
        assert_eq!(
            (heap.encoding_flags(), heap.as_bytes()),
            ((true, false), &[7u8; 35][..])
        );
        assert_eq!(s.clone().take_vec(), b"12\0\0\0");
        assert_eq!(Str::from(&b"12"[..]).encoding_flags(), (false, false));
        assert_eq!(Str::zeroed(100).as_bytes(), &[0; 100][..]);
    }
}
