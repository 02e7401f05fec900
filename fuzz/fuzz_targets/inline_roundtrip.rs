//! Fuzz target: arbitrary argument vectors, encoded both as a multibulk
//! request and as a quoted inline line (`"a\x00b" plain "c d"\r\n`), must
//! parse back to exactly the same arguments and consume the whole request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::resp::{Arg, ParseLimits, parse_command};

const LIMITS: ParseLimits = ParseLimits { max_bulk: 1 << 20 };

fn resolve(buf: &[u8], args: Vec<Arg>) -> Vec<Vec<u8>> {
    args.into_iter()
        .map(|a| match a {
            Arg::Range(r) => buf[r].to_vec(),
            Arg::Owned(v) => v,
        })
        .collect()
}

/// `*<n>\r\n$<len>\r\n<arg>\r\n...`
fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Tokens with no whitespace, quote or backslash go bare (except a leading
/// `*`, which would make the line multibulk); the rest are double-quoted
/// with every byte outside printable ASCII, `"` and `\` as `\xHH`.
fn inline(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let bare = !a.is_empty()
            && !(i == 0 && a[0] == b'*')
            && a.iter()
                .all(|&b| b.is_ascii_graphic() && !b"\"'\\".contains(&b));
        if bare {
            out.extend_from_slice(a);
            continue;
        }
        out.push(b'"');
        for &b in a {
            if (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\' {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    out
}

fuzz_target!(|args: Vec<Vec<u8>>| {
    for (kind, req) in [("multibulk", multibulk(&args)), ("inline", inline(&args))] {
        let (parsed, used) = match parse_command(&req, LIMITS) {
            Ok(Some(p)) => p,
            // Arguments over max_bulk are rejected by design.
            Err(_) if kind == "multibulk" && args.iter().any(|a| a.len() > 1 << 20) => continue,
            other => panic!("{kind} {req:?} parsed as {other:?}"),
        };
        assert_eq!(used, req.len(), "{kind} request not fully consumed");
        assert_eq!(resolve(&req, parsed), args, "{kind} {req:?}");
    }
});
