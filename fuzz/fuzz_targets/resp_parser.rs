//! Fuzz target: arbitrary bytes through the RESP request parser, the way a
//! connection drives it (parse, consume `used`, repeat), checking the
//! invariants the connection relies on to `split_to(used)` safely.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::resp::{Arg, ParseLimits, parse_command};

/// Small enough that the fuzzer reaches the "invalid bulk length" branch,
/// large enough that bulk payloads still parse.
const LIMITS: ParseLimits = ParseLimits { max_bulk: 1 << 20 };

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    // Each successful parse consumes at least one byte, so this terminates.
    while let Ok(Some((args, used))) = parse_command(buf, LIMITS) {
        assert!(
            used > 0,
            "a parse that consumes nothing would spin the connection"
        );
        assert!(used <= buf.len(), "used {used} > buffered {}", buf.len());
        for arg in &args {
            if let Arg::Range(r) = arg {
                assert!(
                    r.start <= r.end && r.end <= used,
                    "argument {r:?} outside the consumed prefix 0..{used}"
                );
            }
        }
        // The parser must not look past the request it returns: the same
        // bytes, cut exactly at `used`, parse to the same request.
        assert_eq!(
            parse_command(&buf[..used], LIMITS),
            Ok(Some((args, used))),
            "result depends on bytes after the request"
        );
        // A strict prefix is never a complete request (it may be an error
        // when a header line outgrows the inline limit, never a success).
        if used > 1 {
            for cut in [used - 1, used / 2] {
                assert!(
                    !matches!(parse_command(&buf[..cut], LIMITS), Ok(Some(_))),
                    "prefix 0..{cut} of a {used}-byte request parsed as complete"
                );
            }
        }
        buf = &buf[used..];
    }
});
