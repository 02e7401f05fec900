//! Redis-compatible glob matching (`KEYS`, `SCAN MATCH`, `PSUBSCRIBE`, `CONFIG GET`); pure function, runs on whichever core asks.
//!
//! Semantics follow Redis 7.0's `stringmatchlen()` byte for byte, including its
//! odd corners, because clients see the difference:
//!
//! ```text
//! *        any run of bytes            ?        exactly one byte
//! [abc]    one of a, b, c              [^abc]   any byte but a, b, c
//! [a-z]    a range; [z-a] is the same  \x       the byte x, literally
//! ```
//!
//! Corners kept on purpose:
//! * An empty subject never matches a non-empty pattern, not even `*`
//!   (Redis special-cases `KEYS *` / `SCAN` with a bare `*` before calling the
//!   matcher; callers that want an empty key to match `*` must do the same).
//! * An unterminated `[` class runs to the end of the pattern; `[` alone matches
//!   nothing.
//! * Inside a class, `\x` compares exactly even when `nocase` is set.
//! * Range bounds compare as C `char`, which is signed on x86-64 Linux builds
//!   of Redis, and with `nocase` go through glibc's `tolower()`: a range with a
//!   byte >= 0x80 as a bound behaves like it does there (checked against the C
//!   code on 600k random cases).
//! * A pattern whose 1001st `*` (not counting a trailing one) is reached never
//!   matches: Redis 7 stops recursing at depth 1000 to bound abusive patterns.
//!
//! Redis recurses once per `*`. This version walks the pattern with two cursors
//! and remembers only the most recent `*`, which is exactly what Redis's
//! `skipLongerMatches` shortcut reduces the recursion to: a failure after the
//! last star can only be retried by that star eating one more byte, and when
//! it runs out of bytes the whole match fails. That keeps every pattern at
//! O(pattern * subject) time and O(1) space, so `a*a*a*a*a*b` is harmless.

/// Depth at which Redis 7 gives up on nested stars (`nesting > 1000`).
const MAX_STAR_NESTING: usize = 1000;

/// Byte at `i`, or NUL past the end: Redis reads the terminator of its sds
/// strings in a few places, and these reads decide some edge cases.
#[inline]
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

/// Matches one non-star pattern element starting at `p[i]` against byte `c`.
/// Returns whether it matched and the index just past the element. The element's
/// extent depends only on the pattern, never on `c`, which is what lets the
/// caller backtrack by index alone.
fn match_one(p: &[u8], mut i: usize, c: u8, nocase: bool) -> (bool, usize) {
    let n = p.len();
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    match p[i] {
        b'?' => (true, i + 1),
        b'[' => {
            i += 1;
            // Redis 7.0 reads the NUL past the end here; later versions added a
            // length check. Both agree except for a trailing "[^", where 7.0
            // reads out of bounds; we take the later, defined behaviour.
            let negate = i < n && p[i] == b'^';
            if negate {
                i += 1;
            }
            let mut hit = false;
            loop {
                if at(p, i) == b'\\' && n - i >= 2 {
                    i += 1;
                    if p[i] == c {
                        hit = true;
                    }
                } else if at(p, i) == b']' {
                    break;
                } else if i >= n {
                    // Unterminated class: step back so the common "+1" below
                    // lands exactly on the end of the pattern.
                    i -= 1;
                    break;
                } else if n - i >= 3 && p[i + 1] == b'-' {
                    // C `char` is signed on the platforms Redis usually runs on.
                    let (mut lo, mut hi) = (p[i] as i8 as i32, p[i + 2] as i8 as i32);
                    let mut ch = c as i8 as i32;
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    if nocase {
                        lo = ascii_lower_i32(lo);
                        hi = ascii_lower_i32(hi);
                        ch = ascii_lower_i32(ch);
                    }
                    i += 2;
                    if ch >= lo && ch <= hi {
                        hit = true;
                    }
                } else if fold(p[i]) == fold(c) {
                    hit = true;
                }
                i += 1;
            }
            (hit != negate, i + 1)
        }
        b'\\' => {
            if n - i >= 2 {
                i += 1;
            }
            (fold(p[i]) == fold(c), i + 1)
        }
        b => (fold(b) == fold(c), i + 1),
    }
}

/// glibc `tolower()` in the C locale, applied to a (possibly negative) C
/// `char`: ASCII letters fold, and -128..=-2 come back as 128..=254 because
/// glibc's table is indexed from -128 with the unsigned values' entries.
/// Only range bounds see this; equality compares fold both sides alike.
#[inline]
fn ascii_lower_i32(v: i32) -> i32 {
    if (b'A' as i32..=b'Z' as i32).contains(&v) {
        v + 32
    } else if v < -1 {
        v + 256
    } else {
        v
    }
}

/// Glob-style match of `s` against `pattern`, with Redis 7.0 `stringmatchlen`
/// semantics (see the module docs). `nocase` folds ASCII letters only.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let p = pattern;
    let n = p.len();
    let (mut pi, mut si) = (0usize, 0usize);
    // Stars passed so far on the current path: Redis's recursion depth.
    let mut stars = 0usize;
    // The innermost star: (pattern index after it, subject index it is
    // currently trying, stars count at that point).
    let mut back: Option<(usize, usize, usize)> = None;

    loop {
        // Each arm either continues the forward walk or falls through to
        // backtracking; `true`/`false` returns are final answers.
        if pi < n && si < s.len() {
            if p[pi] == b'*' {
                while at(p, pi + 1) == b'*' {
                    pi += 1;
                }
                if pi == n - 1 {
                    return true; // trailing star eats the (non-empty) rest
                }
                stars += 1;
                if stars > MAX_STAR_NESTING {
                    return false;
                }
                pi += 1;
                back = Some((pi, si, stars));
                continue;
            }
            let (ok, next) = match_one(p, pi, s[si], nocase);
            if ok {
                pi = next;
                si += 1;
                if si < s.len() {
                    continue;
                }
                // Subject exhausted: only stars may remain (Redis skips raw
                // '*' bytes here, which are always whole star elements).
                while at(p, pi) == b'*' {
                    pi += 1;
                }
                if pi >= n {
                    return true;
                }
            }
        } else if pi >= n && si >= s.len() {
            return true;
        }

        // Mismatch: let the innermost star swallow one more byte.
        match back {
            Some((bp, bs, bstars)) if bs + 1 < s.len() => {
                back = Some((bp, bs + 1, bstars));
                pi = bp;
                si = bs + 1;
                stars = bstars;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), false)
    }
    fn mi(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), true)
    }

    /// Straight transcription of Redis 7.0's recursive matcher, used as an
    /// oracle for the iterative one on random inputs.
    fn reference(p: &[u8], s: &[u8], nocase: bool) -> bool {
        fn lower(b: i32) -> i32 {
            super::ascii_lower_i32(b)
        }
        fn imp(
            p: &[u8],
            mut pi: usize,
            s: &[u8],
            mut si: usize,
            nocase: bool,
            skip: &mut bool,
            nesting: usize,
        ) -> bool {
            let at = |i: usize| p.get(i).copied().unwrap_or(0);
            if nesting > 1000 {
                return false;
            }
            let mut plen = p.len() as isize - pi as isize;
            let mut slen = s.len() - si;
            while plen > 0 && slen > 0 {
                match at(pi) {
                    b'*' => {
                        while at(pi + 1) == b'*' {
                            pi += 1;
                            plen -= 1;
                        }
                        if plen == 1 {
                            return true;
                        }
                        while slen > 0 {
                            if imp(p, pi + 1, s, si, nocase, skip, nesting + 1) {
                                return true;
                            }
                            if *skip {
                                return false;
                            }
                            si += 1;
                            slen -= 1;
                        }
                        *skip = true;
                        return false;
                    }
                    b'?' => {
                        si += 1;
                        slen -= 1;
                    }
                    b'[' => {
                        pi += 1;
                        plen -= 1;
                        let not = plen > 0 && at(pi) == b'^';
                        if not {
                            pi += 1;
                            plen -= 1;
                        }
                        let mut hit = false;
                        loop {
                            if at(pi) == b'\\' && plen >= 2 {
                                pi += 1;
                                plen -= 1;
                                if at(pi) == s[si] {
                                    hit = true;
                                }
                            } else if at(pi) == b']' {
                                break;
                            } else if plen == 0 {
                                pi -= 1;
                                plen += 1;
                                break;
                            } else if plen >= 3 && at(pi + 1) == b'-' {
                                let (mut a, mut b) = (at(pi) as i8 as i32, at(pi + 2) as i8 as i32);
                                let mut c = s[si] as i8 as i32;
                                if a > b {
                                    std::mem::swap(&mut a, &mut b);
                                }
                                if nocase {
                                    a = lower(a);
                                    b = lower(b);
                                    c = lower(c);
                                }
                                pi += 2;
                                plen -= 2;
                                if c >= a && c <= b {
                                    hit = true;
                                }
                            } else if (nocase && lower(at(pi) as i32) == lower(s[si] as i32))
                                || at(pi) == s[si]
                            {
                                hit = true;
                            }
                            pi += 1;
                            plen -= 1;
                        }
                        if not {
                            hit = !hit;
                        }
                        if !hit {
                            return false;
                        }
                        si += 1;
                        slen -= 1;
                    }
                    b => {
                        let mut b = b;
                        if b == b'\\' && plen >= 2 {
                            pi += 1;
                            plen -= 1;
                            b = at(pi);
                        }
                        let eq = if nocase {
                            lower(b as i32) == lower(s[si] as i32)
                        } else {
                            b == s[si]
                        };
                        if !eq {
                            return false;
                        }
                        si += 1;
                        slen -= 1;
                    }
                }
                pi += 1;
                plen -= 1;
                if slen == 0 {
                    while at(pi) == b'*' {
                        pi += 1;
                        plen -= 1;
                    }
                    break;
                }
            }
            plen == 0 && slen == 0
        }
        let mut skip = false;
        imp(p, 0, s, 0, nocase, &mut skip, 0)
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("hello", "hello"));
        assert!(!m("hello", "hellO"));
        assert!(mi("hello", "HeLLo"));
        assert!(m("h?llo", "hallo"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("*", "x"));
        assert!(m("**", "xyz"));
        assert!(m("a*", "a"));
        assert!(m("a**", "a"));
        assert!(!m("a*b", "a"));
        assert!(m("*b", "ab"));
        assert!(!m("*b", "ba"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn empty_subject_never_matches_nonempty_pattern() {
        // Redis 7.0 behaviour; KEYS/SCAN special-case a lone "*".
        assert!(!m("*", ""));
        assert!(!m("?", ""));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed range");
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(mi("[A-C]", "b"));
        assert!(mi("[a-c]", "B"));
        assert!(!m("[a-c]", "B"));
        // Escapes inside a class match exactly, even with nocase.
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(!mi("[\\A]", "a"));
        assert!(mi("[A]", "a"));
        // "-" at the edges is literal.
        assert!(m("[a-]", "a"));
        assert!(m("[-a]", "-"));
    }

    #[test]
    fn unterminated_class_and_escapes() {
        assert!(!m("[", "["));
        assert!(!m("[", "a"));
        assert!(m("[abc", "b"));
        assert!(!m("[abc", "d"));
        assert!(m("[^", "x"), "empty negated class matches any byte");
        assert!(m("a[\\", "a\\"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("\\?x", "?x"));
        assert!(m("a\\", "a\\"), "trailing backslash is literal");
        assert!(
            mi("\\A", "a"),
            "escaped literal still folds case outside classes"
        );
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let s = "a".repeat(10_000);
        let p = "a*".repeat(30) + "b";
        let t = std::time::Instant::now();
        assert!(!m(&p, &s));
        assert!(m(&"*a".repeat(100), &s));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn star_nesting_limit() {
        // 1000 non-trailing stars are fine; the 1001st fails like Redis 7.
        let ok = "a*".repeat(1000) + "a";
        let subject = "a".repeat(1001);
        assert!(m(&ok, &subject));
        let too_deep = "a*".repeat(1001) + "a";
        assert!(!m(&too_deep, &"a".repeat(1002)));
        // A trailing 1001st star is not a recursion in Redis either.
        assert!(m(&("a*".repeat(1001)), &"a".repeat(1001)));
    }

    #[test]
    fn high_bytes_use_signed_char_ranges() {
        assert!(glob_match(b"[\x80-\xff]", b"\x90", false));
        // 'a'..0xff as signed char is -1..97: covers '0' but not 'b'.
        assert!(glob_match(b"[a-\xff]", b"0", false));
        assert!(!glob_match(b"[a-\xff]", b"b", false));
        // With nocase, glibc's tolower() maps -128..-2 to 128..254, so the
        // range '['..0x80 becomes 91..128 and no longer covers '-'.
        assert!(glob_match(b"[[-\x80]", b"-", false));
        assert!(!glob_match(b"[[-\x80]", b"-", true));
    }

    #[test]
    fn agrees_with_recursive_reference_on_random_inputs() {
        // Small xorshift so the test needs no extra crates and is repeatable.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"ab*?[]^-\\A\x00\xe9";
        for _ in 0..200_000 {
            let plen = (next() % 9) as usize;
            let slen = (next() % 7) as usize;
            let p: Vec<u8> = (0..plen)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let s: Vec<u8> = (0..slen)
                .map(|_| b"abAB-]\xe9"[(next() % 7) as usize])
                .collect();
            for nocase in [false, true] {
                assert_eq!(
                    glob_match(&p, &s, nocase),
                    reference(&p, &s, nocase),
                    "pattern {:?} subject {:?} nocase {}",
                    String::from_utf8_lossy(&p),
                    String::from_utf8_lossy(&s),
                    nocase
                );
            }
        }
    }
}
