//! INCRBYFLOAT's and HINCRBYFLOAT's arithmetic, done as Redis does it: in
//! C's `long double`, which on x86-64 Linux is the x87 80-bit format (a
//! 64-bit significand, a 15-bit exponent).
//!
//! Redis reads both operands with `strtold` (`string2ld`), adds them, and
//! prints the sum with `%.17Lf`, trimming trailing zeros (`ld2string`,
//! `LD_STR_HUMAN`). f64 gives the same text for ordinary values, but not
//! once the sum needs more than f64's 53 bits (`1e29` plus `100` prints
//! `99999999999999999997315645440`), nor past f64's range (`1e400` is a
//! valid increment). So this is the same in software: rustc_apfloat's x87
//! format for correctly rounded parsing and addition, and an exact decimal
//! expansion of `significand × 2^exponent`, rounded half to even at 17
//! decimals as glibc's `printf` does.

use num_bigint::BigUint;
use rustc_apfloat::ieee::X87DoubleExtended as F80;
use rustc_apfloat::{Float, Status};

/// The longest operand Redis reads (`MAX_LONG_DOUBLE_CHARS`, exclusive).
const MAX_CHARS: usize = 5 * 1024;

/// Exponents past this read as infinity or zero whatever the digits are
/// (an operand has at most 5119 of them), so they are clamped here before
/// the parser sees them.
const EXP_CLAMP: i64 = 100_000;

/// An 80-bit extended-precision value.
#[derive(Clone, Copy, Debug)]
pub struct LongDouble(F80);

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble(F80::ZERO);

    /// Reads an operand as Redis's `string2ld` does: `strtold`'s syntax
    /// (decimal, C hex floats, `inf`/`infinity` in any case) with no
    /// leading space and nothing after the number. NaN is refused, and so
    /// is a value `strtold` flags out of range (ERANGE) that came out
    /// infinite or zero; a denormal is kept.
    pub fn parse(b: &[u8]) -> Option<LongDouble> {
        if b.is_empty() || b.len() >= MAX_CHARS {
            return None;
        }
        let (neg, body) = match b[0] {
            b'-' => (true, &b[1..]),
            b'+' => (false, &b[1..]),
            _ => (false, b),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            let v = F80::INFINITY;
            return Some(LongDouble(if neg { -v } else { v }));
        }
        if let Some(v) = fast_decimal(body) {
            return Some(LongDouble(if neg { -v } else { v }));
        }
        let canonical = canonical(body)?;
        let parsed = F80::from_str_r(&canonical, rustc_apfloat::Round::NearestTiesToEven).ok()?;
        let v = parsed.value;
        if v.is_nan()
            || v.is_infinite()
            || (v.is_zero() && parsed.status.contains(Status::UNDERFLOW))
        {
            return None;
        }
        Some(LongDouble(if neg { -v } else { v }))
    }

    /// The sum, or None when it is NaN or infinite (Redis answers "increment
    /// would produce NaN or Infinity").
    pub fn checked_add(self, other: LongDouble) -> Option<LongDouble> {
        let sum = LongDouble((self.0 + other.0).value);
        sum.is_finite().then_some(sum)
    }

    pub fn is_finite(self) -> bool {
        !self.0.is_nan() && !self.0.is_infinite()
    }

    /// `%.17Lf` with trailing zeros (and a bare `.`) trimmed, and `-0`
    /// written `0`: Redis's `LD_STR_HUMAN`. Only for finite values.
    pub fn format_human(self) -> String {
        let bits = self.0.to_bits();
        let negative = (bits >> 79) & 1 == 1;
        let biased = ((bits >> 64) & 0x7fff) as i64;
        let significand = bits as u64;
        // value = significand × 2^exp; the integer bit is explicit, and a
        // zero biased exponent (denormal) scales as the smallest normal.
        let exp = biased.max(1) - 16383 - 63;
        let mut out = String::new();
        if negative {
            out.push('-');
        }
        if exp >= 64 {
            out.push_str(&(BigUint::from(significand) << exp as usize).to_string());
        } else if exp >= 0 {
            out.push_str(&((significand as u128) << exp).to_string());
        } else if exp <= -128 {
            // Below 2^-64: zero at 17 decimals.
            out.push('0');
        } else {
            // significand × 10^17 < 2^121: the 17 decimals in u128.
            let shift = (-exp) as u32;
            let scaled = significand as u128 * 10u128.pow(17);
            let mut q = scaled >> shift;
            let rem = scaled & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q += 1;
            }
            let digits = format!("{q:0>18}");
            let (int, frac) = digits.split_at(digits.len() - 17);
            out.push_str(int);
            let frac = frac.trim_end_matches('0');
            if !frac.is_empty() {
                out.push('.');
                out.push_str(frac);
            }
        }
        if out == "-0" {
            out.remove(0);
        }
        out
    }
}

/// Splits a number's mantissa into its integer digits, its fraction
/// digits (after a `.`) and what follows (an exponent, or garbage).
/// None when there is no digit at all. `hex` takes hex digits.
fn split_mantissa(b: &[u8], hex: bool) -> Option<(&[u8], &[u8], &[u8])> {
    let is_digit = |c: &&u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    let int_len = b.iter().take_while(is_digit).count();
    let (int, rest) = b.split_at(int_len);
    let (frac, rest) = match rest {
        [b'.', tail @ ..] => tail.split_at(tail.iter().take_while(is_digit).count()),
        _ => (&rest[..0], rest),
    };
    (!int.is_empty() || !frac.is_empty()).then_some((int, frac, rest))
}

/// Reads an unsigned decimal operand without the general parser, when it
/// has no exponent and its digits fit in a u128: an integer converts with
/// one rounding; with `k <= 18` decimals, `digits × 2^s / 10^k`, for an `s`
/// that leaves at least 66 bits of quotient, is rounded to 64 bits half to
/// even with the remainder as a sticky bit, which is the correctly rounded
/// result `strtold` gives. The stored sums INCRBYFLOAT reads back
/// (`422.40000000000000147`) are of this kind; the general parser took
/// 1.2 µs on them. Anything else (hex, exponents, long numbers, more
/// decimals) returns None for the general path.
fn fast_decimal(b: &[u8]) -> Option<F80> {
    let (int, frac, rest) = split_mantissa(b, false)?;
    if !rest.is_empty() {
        return None;
    }
    let mut m: u128 = 0;
    let mut digits = 0;
    for &c in int.iter().chain(frac) {
        if m == 0 && c == b'0' {
            continue;
        }
        if digits == 38 {
            return None;
        }
        m = m * 10 + (c - b'0') as u128;
        digits += 1;
    }
    if m == 0 {
        return Some(F80::ZERO);
    }
    if frac.is_empty() {
        return Some(F80::from_u128(m).value);
    }
    let k = frac.len() as u32;
    if k > 18 {
        return None;
    }
    let p = 10u128.pow(k);
    let bits = |x: u128| 128 - x.leading_zeros();
    // q = m × 2^s / p has at least 66 bits; m × 2^s stays under 2^127.
    let s = (67 + bits(p)).saturating_sub(bits(m));
    let num = m << s;
    let (q, sticky) = (num / p, !num.is_multiple_of(p));
    let drop = bits(q) - 64;
    let mut mant = q >> drop;
    let rest = q & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    if rest > half || (rest == half && (sticky || mant & 1 == 1)) {
        mant += 1;
    }
    let mut e2 = 63 + drop as i64 - s as i64;
    if mant == 1u128 << 64 {
        mant >>= 1;
        e2 += 1;
    }
    Some(F80::from_bits((((e2 + 16383) as u128) << 64) | mant))
}

/// Checks `strtold`'s grammar for an unsigned finite number and rewrites it
/// in the form the apfloat parser takes: `<int>.<frac>e<exp>` (decimal) or
/// `0x<int>.<frac>p<exp>` (hex), with an explicit, clamped exponent.
/// Anything `strtold` would stop short of the end of is refused.
fn canonical(b: &[u8]) -> Option<String> {
    let (hex, b) = match b {
        [b'0', b'x' | b'X', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    let (int, frac, rest) = split_mantissa(b, hex)?;
    let exp = match rest {
        [] => 0,
        [m, tail @ ..]
            if (hex && m.eq_ignore_ascii_case(&b'p'))
                || (!hex && m.eq_ignore_ascii_case(&b'e')) =>
        {
            let (neg, digits) = match tail {
                [b'-', d @ ..] => (true, d),
                [b'+', d @ ..] => (false, d),
                d => (false, d),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let mut e: i64 = 0;
            for d in digits {
                e = (e * 10 + (d - b'0') as i64).min(EXP_CLAMP);
            }
            if neg { -e } else { e }
        }
        _ => return None,
    };
    let text = |s: &[u8]| -> String {
        if s.is_empty() {
            "0".into()
        } else {
            String::from_utf8_lossy(s).into_owned()
        }
    };
    Some(format!(
        "{}{}.{}{}{exp}",
        if hex { "0x" } else { "" },
        text(int),
        text(frac),
        if hex { 'p' } else { 'e' }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> Option<String> {
        let a = LongDouble::parse(a.as_bytes())?;
        let b = LongDouble::parse(b.as_bytes())?;
        Some(a.checked_add(b)?.format_human())
    }

    /// Expected strings are stock Redis 7.0's INCRBYFLOAT replies.
    #[test]
    fn sums_print_as_redis_prints_them() {
        for (a, b, want) in [
            ("10.5", "0.1", "10.6"),
            ("0", "3.0e3", "3000"),
            ("1e29", "1e2", "99999999999999999997315645440"),
            ("5.0e3", "2.0e2", "5200"),
            ("0", "-0.1", "-0.1"),
            ("0.1", "-0.1", "0"),
            ("0", "1e-20", "0"),
            ("0", "-1e-20", "0"),
            ("0", "0x1p-1", "0.5"),
            ("0", "0x10", "16"),
            ("0", "1.", "1"),
            ("0", ".5", "0.5"),
            ("0", "+1.5E1", "15"),
            ("3", "1e400", &format!("1{}", "0".repeat(400))),
            ("0", "1.2345678901234567891", "1.23456789012345679"),
            ("0", "0.000000000000000005", "0"),
            ("0", "0.000000000000000015", "0.00000000000000002"),
            ("0", "0.000000000000000025", "0.00000000000000002"),
        ] {
            let got = sum(a, b);
            if a == "3" {
                // 1e400 is not exact in 64 bits; only its length and lead
                // are checked here (the differential test compares digits).
                let g = got.expect("1e400 is finite in long double");
                assert_eq!(g.len(), 401, "{g}");
                assert!(g.starts_with("1000000000000000000"), "{g}");
                continue;
            }
            assert_eq!(got.as_deref(), Some(want), "{a} + {b}");
        }
    }

    /// `t` through the general parser (apfloat), the fast path's oracle.
    fn general(t: &str) -> F80 {
        F80::from_str_r(
            &canonical(t.as_bytes()).expect("valid"),
            rustc_apfloat::Round::NearestTiesToEven,
        )
        .expect("valid")
        .value
    }

    /// The fast decimal reader against the general parser, on operands
    /// of every length it takes, around rounding ties included.
    #[test]
    fn fast_decimals_round_as_the_general_parser() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut taken = 0;
        for i in 0..200_000 {
            let int_digits = rng.usize(0..22);
            let frac_digits = rng.usize(if int_digits == 0 { 1 } else { 0 }..20);
            let mut t = String::new();
            for _ in 0..int_digits {
                t.push(char::from(b'0' + rng.u8(0..10)));
            }
            if frac_digits > 0 || i % 3 == 0 {
                t.push('.');
            }
            for _ in 0..frac_digits {
                // Runs of 9s and 0s make ties and carries likely.
                let d = match rng.u8(0..4) {
                    0 => 9,
                    1 => 0,
                    _ => rng.u8(0..10),
                };
                t.push(char::from(b'0' + d));
            }
            if let Some(fast) = fast_decimal(t.as_bytes()) {
                assert_eq!(fast.to_bits(), general(&t).to_bits(), "{t}");
                taken += 1;
            }
        }
        assert!(taken > 100_000, "the fast path took only {taken} of 200000");
        // Exact ties at 64 bits: 2^64 + 1 and 2^64 + 3 need rounding.
        for t in [
            "18446744073709551617",
            "18446744073709551619",
            "1844674407370955161.7",
        ] {
            assert_eq!(
                fast_decimal(t.as_bytes()).unwrap().to_bits(),
                general(t).to_bits(),
                "{t}"
            );
        }
    }

    /// The u128 formatting paths against an all-BigUint expansion, for
    /// random finite values of every exponent.
    #[test]
    fn u128_formatting_matches_the_exact_expansion() {
        fn big(v: LongDouble) -> String {
            let bits = v.0.to_bits();
            let exp = (((bits >> 64) & 0x7fff) as i64).max(1) - 16383 - 63;
            let sig = BigUint::from(bits as u64);
            let body = if exp >= 0 {
                (sig << exp as usize).to_string()
            } else {
                let shift = (-exp) as usize;
                let scaled = sig * BigUint::from(10u64.pow(17));
                let mut q: BigUint = &scaled >> shift;
                let rem = scaled - (&q << shift);
                let half = BigUint::from(1u8) << (shift - 1);
                if rem > half || (rem == half && q.bit(0)) {
                    q += 1u8;
                }
                let digits = format!("{q:0>18}");
                let (int, frac) = digits.split_at(digits.len() - 17);
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    int.to_string()
                } else {
                    format!("{int}.{frac}")
                }
            };
            let s = if (bits >> 79) & 1 == 1 {
                format!("-{body}")
            } else {
                body
            };
            if s == "-0" { "0".into() } else { s }
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..100_000 {
            // Exponents near the u128 paths' edges more often than not.
            let biased: u128 = match rng.u8(0..3) {
                0 => rng.u128(0..0x7fff),
                _ => 16383 + 63 + rng.i64(-140..80) as u128,
            };
            let sig = rng.u64(..) | if biased == 0 { 0 } else { 1 << 63 };
            let sign = (rng.bool() as u128) << 79;
            let v = LongDouble(F80::from_bits(sign | (biased << 64) | sig as u128));
            assert_eq!(v.format_human(), big(v), "{:#x}", v.0.to_bits());
        }
    }

    #[test]
    fn operands_read_as_string2ld_reads_them() {
        for bad in [
            "",
            " 1",
            "1 ",
            "\t1",
            "nan",
            "-nan",
            "NaN",
            "1e",
            "1e+",
            "0x",
            "0xg",
            "0x1p",
            ".",
            "e5",
            "1.5f",
            "--1",
            "+-1",
            "1e5000",
            "-1e5000",
            "1e-5000",
            "0x1p99999",
            "0x1p-16446",
            "abc",
        ] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        for good in [
            "inf",
            "-INF",
            "+Infinity",
            "0e99999999999999",
            "1e-4940",
            "0X1.8P1",
            "007",
            "-0",
        ] {
            assert!(LongDouble::parse(good.as_bytes()).is_some(), "{good:?}");
        }
        assert!(
            LongDouble::parse(b"inf")
                .unwrap()
                .checked_add(LongDouble::ZERO)
                .is_none()
        );
        let long = "1".repeat(MAX_CHARS);
        assert!(LongDouble::parse(long.as_bytes()).is_none());
    }
}
