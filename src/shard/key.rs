//! Keys as the keyspace stores them: up to 22 bytes inline in the table
//! entry, longer ones in one exact-size heap block. Short keys (the common
//! case: `user:1234`, `key:000000012345`) then cost no allocation and no
//! extra cache miss on lookup, and an entry is 24 bytes of key instead of
//! a 32-byte `Bytes` plus its heap block.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

const INLINE: usize = 22;

#[derive(Clone)]
pub enum Key {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    pub fn new(b: &[u8]) -> Key {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Key::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Key::Heap(b.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, buf } => &buf[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

// Hash and Eq must agree with `[u8]`'s so lookups by `&[u8]` work.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_round_trip() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        for len in [0, 1, 22, 23, 100] {
            let b = vec![b'k'; len];
            assert_eq!(Key::new(&b).as_bytes(), &b[..]);
        }
        assert!(matches!(Key::new(&[1; 22]), Key::Inline { .. }));
        assert!(matches!(Key::new(&[1; 23]), Key::Heap(_)));
    }
}
