//! Fuzz target: arbitrary bytes through the resumable RDB loader, fed the
//! way a replica's socket feeds it (the unconsumed bytes plus whatever
//! arrived, in chunks of any size), must never panic, never claim more
//! bytes than it was given, and must not depend on the chunking: one call
//! over the whole input and the chunked run give the same events and the
//! same outcome.
//!
//! Input layout: byte 0 is a control byte; bit 0 set prepends the
//! `REDIS0010` header (so the fuzzer spends its time past the magic),
//! bits 1..=2 choose the largest chunk (1, 7, 64 or 4096 bytes) and the
//! rest seed the chunk sizes. Bytes 1.. are the RDB stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::rdb::load::{Event, Loader};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// `Event::End` was returned.
    End,
    /// The input ran out with the loader wanting more.
    Incomplete,
    /// The loader failed with this error kind.
    Failed(String),
}

/// Drives a fresh loader over `input`, growing its buffer by `chunks`
/// (sizes, cycled), as `repl::replica::load_rdb` does. Returns the events
/// and how it ended.
fn drive(input: &[u8], chunks: &[usize]) -> (Vec<Event>, Outcome) {
    let mut loader = Loader::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut consumed = 0u64;
    let mut events = Vec::new();
    let mut next_chunk = 0usize;
    loop {
        match loader.next(&buf) {
            Ok(Some((ev, used))) => {
                assert!(
                    used <= buf.len(),
                    "used {used} > buffered {} (event {ev:?})",
                    buf.len()
                );
                consumed += used as u64;
                assert_eq!(loader.offset(), consumed, "offset() after {ev:?}");
                buf.drain(..used);
                let end = matches!(ev, Event::End { .. });
                events.push(ev);
                // Every event but the first can only follow consumed bytes;
                // a loop of zero-byte events would spin the replica.
                assert!(
                    events.len() as u64 <= consumed + 1,
                    "{} events from {consumed} bytes",
                    events.len()
                );
                if end {
                    assert!(loader.is_done());
                    return (events, Outcome::End);
                }
            }
            Ok(None) => {
                if fed == input.len() {
                    return (events, Outcome::Incomplete);
                }
                let n = chunks[next_chunk % chunks.len()].clamp(1, input.len() - fed);
                next_chunk += 1;
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Err(e) => {
                // Errors are sticky.
                assert_eq!(loader.next(&buf).err(), Some(e.clone()), "a second call");
                return (events, Outcome::Failed(format!("{:?}", e.kind)));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let input: Vec<u8> = if ctl & 1 == 1 {
        let mut v = b"REDIS0010".to_vec();
        v.extend_from_slice(rest);
        v
    } else {
        rest.to_vec()
    };
    let max = [1usize, 7, 64, 4096][(ctl as usize >> 1) & 3];
    let mut seed = (ctl as u32).wrapping_mul(2_654_435_761) | 1;
    let chunks: Vec<usize> = (0..16)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            1 + seed as usize % max
        })
        .collect();

    let whole = drive(&input, &[usize::MAX]);
    let chunked = drive(&input, &chunks);
    // A `TooLarge` or a truncation can be noticed at different points, but
    // the events before the end and the kind of ending must agree.
    assert_eq!(
        whole.0, chunked.0,
        "events differ between one buffer and chunks of at most {max}"
    );
    assert_eq!(
        whole.1, chunked.1,
        "outcome differs between one buffer and chunks of at most {max}"
    );
});
