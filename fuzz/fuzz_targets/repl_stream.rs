//! Fuzz target: arbitrary bytes as a master's replication stream, parsed
//! the way a replica's link task does (`repl::replica::stream`): commands
//! are parsed from the unconsumed tail of a buffer that grows in chunks,
//! each parse consumes `used` bytes, empty requests (a bare newline, `*0`)
//! are skipped, and the stream stops at the first protocol error.
//!
//! Checks: `0 < used <= buffered`; every `Arg::Range` lies inside the
//! consumed request; and the commands, the bytes counted (the replica's
//! offset) and the error do not depend on how the bytes were chunked,
//! except where Redis itself is chunk-dependent (a header line or inline
//! request that is still missing its newline when the buffer passes
//! 64 KiB: "too big ...").
//!
//! Input layout: byte 0 picks the chunk sizes, the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::resp::{Arg, ParseLimits, parse_command};

const LIMITS: ParseLimits = ParseLimits { max_bulk: 1 << 20 };

#[derive(Debug, PartialEq)]
struct Run {
    cmds: Vec<Vec<Vec<u8>>>,
    /// Bytes consumed: what the replica adds to its offset.
    offset: usize,
    error: Option<String>,
}

fn drive(input: &[u8], chunks: &[usize]) -> Run {
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut next_chunk = 0usize;
    let mut run = Run {
        cmds: Vec::new(),
        offset: 0,
        error: None,
    };
    loop {
        // Parse what is buffered (the replica's inner loop).
        let mut used_total = 0usize;
        loop {
            match parse_command(&buf[used_total..], LIMITS) {
                Ok(None) => break,
                Err(e) => {
                    run.offset += used_total;
                    run.error = Some(e.0);
                    return run;
                }
                Ok(Some((args, used))) => {
                    let avail = buf.len() - used_total;
                    assert!(used > 0, "a parse consumed nothing");
                    assert!(used <= avail, "used {used} > buffered {avail}");
                    let frame = &buf[used_total..used_total + used];
                    let args: Vec<Vec<u8>> = args
                        .into_iter()
                        .map(|a| match a {
                            Arg::Range(r) => {
                                assert!(
                                    r.start <= r.end && r.end <= used,
                                    "argument {r:?} outside the request 0..{used}"
                                );
                                frame[r].to_vec()
                            }
                            Arg::Owned(v) => v,
                        })
                        .collect();
                    used_total += used;
                    if !args.is_empty() {
                        run.cmds.push(args);
                    }
                }
            }
        }
        buf.drain(..used_total);
        run.offset += used_total;
        if fed == input.len() {
            return run;
        }
        let n = chunks[next_chunk % chunks.len()].clamp(1, input.len() - fed);
        next_chunk += 1;
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let max = [1usize, 3, 16, 512][ctl as usize & 3];
    let mut seed = (ctl as u32).wrapping_mul(2_654_435_761) | 1;
    let chunks: Vec<usize> = (0..16)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            1 + seed as usize % max
        })
        .collect();
    let whole = drive(input, &[usize::MAX]);
    let chunked = drive(input, &chunks);
    let too_big = |r: &Run| r.error.as_deref().is_some_and(|e| e.starts_with("too big"));
    if too_big(&whole) || too_big(&chunked) {
        return;
    }
    assert_eq!(whole, chunked, "chunks of at most {max} bytes");
});
