//! Unit tests of the RDB codec: round trips through the writer and the
//! loader, every legacy encoding built by hand, streaming in small chunks,
//! truncation at every length and random corruption (which must give errors,
//! never panics).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes};

use super::load::Event;
use super::write::{write_len, write_string};
use super::*;
use crate::shard::keyspace::{Entry, HashValue, SetValue, Str, Value, ZSet};

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn list(items: &[&[u8]]) -> Value {
    Value::List(Box::new(items.iter().map(|s| b(s)).collect()))
}

fn set(items: &[&[u8]]) -> Value {
    let mut s = SetValue::default();
    s.extend(items.iter().map(|m| Str::from(*m)));
    Value::Set(Box::new(s))
}

fn hash(pairs: &[(&[u8], &[u8])]) -> Value {
    let mut h = HashValue::default();
    h.extend(pairs.iter().map(|(f, v)| (Str::from(*f), Str::from(*v))));
    Value::Hash(Box::new(h))
}

fn zset(pairs: &[(&[u8], f64)]) -> Value {
    let mut z = ZSet::default();
    for (m, s) in pairs {
        z.insert(b(m), *s);
    }
    Value::ZSet(Box::new(z))
}

/// One value of every type and shape the writer must handle.
fn sample_values() -> Vec<(&'static str, Value)> {
    let mut rng = fastrand::Rng::with_seed(42);
    let binary: Vec<u8> = (0..5000).map(|_| rng.u8(..)).collect();
    let big_list: VecDeque<Bytes> = (0..300)
        .map(|i| {
            if i % 3 == 0 {
                b(i.to_string().as_bytes())
            } else {
                b(format!("element-{i}-{}", "x".repeat(i % 90)).as_bytes())
            }
        })
        .collect();
    let mut big_set = SetValue::default();
    big_set.extend((0..600).map(|i| Str::from(format!("m{i}").into_bytes())));
    let mut int_set = SetValue::default();
    int_set.extend((-300..300).map(|i: i64| Str::from((i * 1_000_003).to_string().into_bytes())));
    let mut big_hash = HashValue::default();
    big_hash.extend((0..200).map(|i| {
        (
            Str::from(format!("field:{i}").into_bytes()),
            Str::from("v".repeat(i).into_bytes()),
        )
    }));
    let mut big_z = ZSet::default();
    for i in 0..300 {
        big_z.insert(b(format!("z{i}").as_bytes()), (i as f64) * 0.37 - 50.0);
    }
    vec![
        ("str:empty", Value::Str(Str::from(b(b"")))),
        ("str:small", Value::Str(Str::from(b(b"hello")))),
        ("str:int8", Value::Str(Str::from(b(b"-7")))),
        ("str:int16", Value::Str(Str::from(b(b"12345")))),
        ("str:int32", Value::Str(Str::from(b(b"-2147483648")))),
        ("str:int64", Value::Str(Str::from(b(b"2147483648")))),
        ("str:leading-zero", Value::Str(Str::from(b(b"007")))),
        ("str:plus", Value::Str(Str::from(b(b"+5")))),
        ("str:lzf", Value::Str(Str::from(b(&[b'a'; 1000])))),
        ("str:binary", Value::Str(Str::from(Bytes::from(binary)))),
        ("list:small", list(&[b"a", b"1", b"", b"-99999999999"])),
        ("list:big", Value::List(Box::new(big_list))),
        ("list:huge-elem", list(&[&[b'q'; 20000], b"tail"])),
        ("set:ints", Value::Set(Box::new(int_set))),
        ("set:small", set(&[b"x", b"y", b"3"])),
        ("set:big", Value::Set(Box::new(big_set))),
        (
            "hash:small",
            hash(&[(b"f", b"v"), (b"n", b"42"), (b"", b"")]),
        ),
        ("hash:big", Value::Hash(Box::new(big_hash))),
        (
            "zset:small",
            zset(&[
                (b"a", 1.5),
                (b"b", f64::INFINITY),
                (b"c", f64::NEG_INFINITY),
                (b"d", -0.0),
                (b"e", 1e300),
                (b"f", 0.1 + 0.2),
                (b"g", 3.0),
            ]),
        ),
        ("zset:big", Value::ZSet(Box::new(big_z))),
    ]
}

fn sample_db(ttl_base: u64) -> Vec<(Bytes, Entry)> {
    sample_values()
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let expire_at = if i % 3 == 0 { ttl_base + i as u64 } else { 0 };
            (
                b(k.as_bytes()),
                Entry {
                    value: v,
                    expire_at,
                },
            )
        })
        .collect()
}

fn sample_file() -> Vec<u8> {
    let db0 = sample_db(4_000_000_000_000);
    let db3: Vec<(Bytes, Entry)> = vec![(
        b(b"only-in-3"),
        Entry {
            value: Value::Str(Str::from(b(b"three"))),
            expire_at: 1,
        },
    )];
    let empty: Vec<(Bytes, Entry)> = vec![];
    let repl = ReplInfo {
        stream_db: 0,
        repl_id: "8371445ee0bd3d8e4a1b8f9c3e1f6c8d2a7b9e01".into(),
        offset: 12345,
    };
    write_snapshot(
        [(0, &db0[..]), (1, &empty[..]), (3, &db3[..])],
        &default_aux(1_700_000_000, 1_000_000, Some(&repl)),
    )
}

fn sorted(mut keys: Vec<LoadedKey>) -> Vec<LoadedKey> {
    keys.sort_by(|a, b| (a.db, &a.key).cmp(&(b.db, &b.key)));
    keys
}

/// Wraps body bytes into a version-10 file with a correct CRC.
fn file_with(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_header::<&str, &[u8]>(&mut out, &[]);
    body(&mut out);
    write_footer(&mut out);
    let crc = Crc64::checksum(&out);
    out.put_u64_le(crc);
    out
}

// ---------------------------------------------------------------------------

#[test]
fn crc64_check_value() {
    assert_eq!(Crc64::checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    let mut c = Crc64::new();
    for chunk in b"123456789".chunks(2) {
        c.update(chunk);
    }
    assert_eq!(c.finish(), 0xe9c6d914c4b8d9ca);
}

#[test]
fn strings_are_encoded_like_redis() {
    let enc = |s: &[u8]| {
        let mut v = Vec::new();
        write_string(&mut v, s, WriteOptions::default());
        v
    };
    assert_eq!(enc(b"-7"), [0xC0, 0xF9]);
    assert_eq!(enc(b"12345"), [0xC1, 0x39, 0x30]);
    assert_eq!(enc(b"-2147483648"), [0xC2, 0, 0, 0, 0x80]);
    assert_eq!(enc(b"2147483648")[0], 10);
    assert_eq!(enc(b"007")[0], 3);
    assert_eq!(enc(&[b'a'; 1000])[0], 0xC3);
    assert_eq!(enc(&[b'a'; 20])[0], 20, "20 bytes are never compressed");
    let mut v = Vec::new();
    write_string(&mut v, &[b'a'; 1000], WriteOptions { compress: false });
    assert_eq!(v[0], 0x43);
    assert_eq!(v[1], 0xE8);
    let mut l = Vec::new();
    write_len(&mut l, 70000);
    assert_eq!(l, [0x80, 0, 1, 0x11, 0x70]);
    let mut l = Vec::new();
    write_len(&mut l, 1 << 40);
    assert_eq!(l, [0x81, 0, 0, 1, 0, 0, 0, 0, 0]);
}

#[test]
fn snapshot_round_trip() {
    let file = sample_file();
    assert_eq!(&file[..9], b"REDIS0010");
    let keys = sorted(load_file(&file).unwrap());
    let mut want: Vec<LoadedKey> = sample_db(4_000_000_000_000)
        .into_iter()
        .map(|(key, entry)| LoadedKey { db: 0, key, entry })
        .collect();
    want.push(LoadedKey {
        db: 3,
        key: b(b"only-in-3"),
        entry: Entry {
            value: Value::Str(Str::from(b(b"three"))),
            expire_at: 1,
        },
    });
    assert_eq!(keys, sorted(want));

    let mut events = Vec::new();
    load_events(&file, |e| events.push(e)).unwrap();
    assert_eq!(events[0], Event::Aux(b(b"redis-ver"), b(b"7.0.15")));
    assert!(events.contains(&Event::Aux(b(b"redis-bits"), b(b"64"))));
    assert!(events.contains(&Event::Aux(b(b"repl-offset"), b(b"12345"))));
    assert!(events.contains(&Event::SelectDb(3)));
    assert!(
        !events.contains(&Event::SelectDb(1)),
        "empty dbs are skipped"
    );
    assert!(events.contains(&Event::ResizeDb {
        db_size: 1,
        expires_size: 1
    }));
    assert_eq!(events.last(), Some(&Event::End { checksum_ok: true }));
}

#[test]
fn dump_restore_round_trip() {
    for (name, v) in sample_values() {
        let p = dump_payload(&v);
        assert_eq!(&p[p.len() - 10..p.len() - 8], [10, 0], "{name}");
        assert_eq!(restore_payload(&p).unwrap(), v, "{name}");
    }
}

#[test]
fn restore_rejects_bad_payloads() {
    let p = dump_payload(&Value::Str(Str::from(b(b"hello"))));
    // Wrong CRC.
    let mut bad = p.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(restore_payload(&bad).unwrap_err().is_payload_footer());
    // Version 11 (with a CRC that matches it).
    let mut v11 = p[..p.len() - 10].to_vec();
    v11.put_u16_le(11);
    let crc = Crc64::checksum(&v11);
    v11.put_u64_le(crc);
    assert!(restore_payload(&v11).unwrap_err().is_payload_footer());
    // An older version is fine.
    let mut v9 = p[..p.len() - 10].to_vec();
    v9.put_u16_le(9);
    let crc = Crc64::checksum(&v9);
    v9.put_u64_le(crc);
    assert_eq!(
        restore_payload(&v9).unwrap(),
        Value::Str(Str::from(b(b"hello")))
    );
    // Trailing junk inside the checksummed body: bad data, not the footer.
    let mut junk = p[..p.len() - 10].to_vec();
    junk.push(0);
    junk.put_u16_le(10);
    let crc = Crc64::checksum(&junk);
    junk.put_u64_le(crc);
    let e = restore_payload(&junk).unwrap_err();
    assert!(!e.is_payload_footer(), "{e}");
    // Too short.
    assert!(restore_payload(b"short").unwrap_err().is_payload_footer());
}

/// Payload with a valid footer around an arbitrary body.
fn payload(body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.put_u16_le(10);
    let crc = Crc64::checksum(&p);
    p.put_u64_le(crc);
    p
}

#[test]
fn restore_of_stream_or_module_or_empty_fails() {
    for ty in [6u8, 7, 15, 19, 21] {
        let e = restore_payload(&payload(&[ty, 0])).unwrap_err();
        assert!(matches!(e.kind, RdbErrorKind::Unsupported(_)), "{e}");
    }
    let e = restore_payload(&payload(&[rdb_type::SET, 0])).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = restore_payload(&payload(&[8, 0])).unwrap_err();
    assert!(e.to_string().contains("unknown value type 8"), "{e}");
}

/// Feeds `file` to a Loader in chunks of `chunk` bytes, following the
/// contract: keep unconsumed bytes, append new ones.
fn stream_events(file: &[u8], chunk: usize) -> Vec<Event> {
    let mut loader = Loader::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut events = Vec::new();
    loop {
        match loader.next(&buf).unwrap() {
            Some((ev, n)) => {
                buf.drain(..n);
                let end = matches!(ev, Event::End { .. });
                events.push(ev);
                if end {
                    assert!(buf.is_empty() && fed == file.len());
                    return events;
                }
            }
            None => {
                assert!(fed < file.len(), "loader wants more than the file holds");
                let stop = (fed + chunk).min(file.len());
                buf.extend_from_slice(&file[fed..stop]);
                fed = stop;
            }
        }
    }
}

#[test]
fn streaming_in_chunks_matches_whole_buffer() {
    let file = sample_file();
    let mut whole = Vec::new();
    load_events(&file, |e| whole.push(e)).unwrap();
    for chunk in [1, 2, 3, 7, 64, 1000, 4096, file.len()] {
        assert_eq!(stream_events(&file, chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn loader_does_not_reparse_big_collections() {
    // A 100k-element list fed 1 KB at a time finishes quickly only if
    // already-parsed elements are not parsed again on every call.
    let big: VecDeque<Bytes> = (0..100_000)
        .map(|i| b(format!("e{i}").as_bytes()))
        .collect();
    let db = [(b(b"big"), Entry::new(Value::List(Box::new(big.clone()))))];
    let file = write_snapshot([(0, &db[..])], &default_aux(0, 0, None));
    let t = std::time::Instant::now();
    let events = stream_events(&file, 1024);
    assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());
    assert!(events.contains(&Event::Entry {
        key: b(b"big"),
        value: Value::List(Box::new(big)),
        expire_at: 0
    }));
}

#[test]
fn loader_misuse_is_an_error() {
    let file = sample_file();
    let mut l = Loader::new();
    // Feed a prefix that ends inside the big list so progress is kept.
    let cut = file.len() / 2;
    let mut consumed = 0;
    while let Some((_, n)) = l.next(&file[consumed..cut]).unwrap() {
        consumed += n;
    }
    assert!(l.next(&[]).is_err());
}

#[test]
fn every_truncation_is_incomplete_or_error() {
    // Small file with every value type, so each prefix is fast to try.
    let db: Vec<(Bytes, Entry)> = sample_values()
        .into_iter()
        .filter(|(k, _)| k.contains("small") || k.starts_with("str"))
        .map(|(k, v)| {
            (
                b(k.as_bytes()),
                Entry {
                    value: v,
                    expire_at: 7,
                },
            )
        })
        .collect();
    let file = write_snapshot([(0, &db[..])], &default_aux(0, 0, None));
    for cut in 0..file.len() {
        let prefix = &file[..cut];
        let e = load_file(prefix).unwrap_err();
        assert_eq!(e.kind, RdbErrorKind::Truncated, "cut {cut}: {e}");
        // The raw loader reports "incomplete" rather than an error.
        let mut l = Loader::new();
        let mut pos = 0;
        while let Some((_, n)) = l.next(&prefix[pos..]).unwrap() {
            pos += n;
        }
    }
    for (name, v) in sample_values() {
        let p = dump_payload(&v);
        for cut in 0..p.len() {
            assert!(restore_payload(&p[..cut]).is_err(), "{name} cut {cut}");
            // Truncated body with a valid footer: bad data, no panic.
            if cut < p.len() - 10 {
                assert!(
                    restore_payload(&payload(&p[..cut])).is_err(),
                    "{name} cut {cut}"
                );
            }
        }
    }
}

/// A file holding one key of every legacy and compact encoding.
fn legacy_file() -> (Vec<u8>, Vec<(&'static str, Value)>) {
    let opts = WriteOptions::default();
    let mut want = Vec::new();
    let file = file_with(|o| {
        let key = |o: &mut Vec<u8>, ty: u8, name: &'static str| {
            o.put_u8(ty);
            write_string(o, name.as_bytes(), opts);
        };
        // 3: zset with text scores.
        key(o, rdb_type::ZSET, "zset3");
        write_len(o, 4);
        for (m, s) in [
            (&b"a"[..], &b"\x031.5"[..]),
            (b"b", b"\xfe"),
            (b"c", b"\xff"),
            (b"d", b"\x130.30000000000000004"),
        ] {
            write_string(o, m, opts);
            o.put_slice(s);
        }
        want.push((
            "zset3",
            zset(&[
                (b"a", 1.5),
                (b"b", f64::INFINITY),
                (b"c", f64::NEG_INFINITY),
                (b"d", 0.30000000000000004),
            ]),
        ));
        // 9: zipmap hash.
        key(o, rdb_type::HASH_ZIPMAP, "zipmap");
        let long = vec![b'L'; 300];
        write_string(
            o,
            &ziplist::encode_zipmap([(&b"f1"[..], &b"v1"[..]), (b"f2", &long)]),
            opts,
        );
        want.push(("zipmap", hash(&[(b"f1", b"v1"), (b"f2", &long)])));
        // 10: ziplist list (with a compressible element: LZF blob).
        key(o, rdb_type::LIST_ZIPLIST, "ziplist-list");
        let items: Vec<&[u8]> = vec![b"1", b"-300", b"hello", &[b'z'; 100]];
        write_string(o, &ziplist::encode(items.iter().copied()), opts);
        want.push(("ziplist-list", list(&items)));
        // 11: intset.
        key(o, rdb_type::SET_INTSET, "intset");
        write_string(o, &intset::encode(&[5, -70000, 1 << 40]), opts);
        want.push(("intset", set(&[b"5", b"-70000", b"1099511627776"])));
        // 12: ziplist zset.
        key(o, rdb_type::ZSET_ZIPLIST, "ziplist-zset");
        write_string(
            o,
            &ziplist::encode([&b"m1"[..], b"1", b"m2", b"2.5", b"m3", b"-inf"]),
            opts,
        );
        want.push((
            "ziplist-zset",
            zset(&[(b"m1", 1.0), (b"m2", 2.5), (b"m3", f64::NEG_INFINITY)]),
        ));
        // 13: ziplist hash.
        key(o, rdb_type::HASH_ZIPLIST, "ziplist-hash");
        write_string(o, &ziplist::encode([&b"k"[..], b"v", b"n", b"12"]), opts);
        want.push(("ziplist-hash", hash(&[(b"k", b"v"), (b"n", b"12")])));
        // 14: quicklist of ziplists (with an empty node, which is skipped).
        key(o, rdb_type::LIST_QUICKLIST, "quicklist");
        write_len(o, 3);
        write_string(o, &ziplist::encode([&b"a"[..], b"b"]), opts);
        write_string(o, &ziplist::encode([]), opts);
        write_string(o, &ziplist::encode([&b"3"[..]]), opts);
        want.push(("quicklist", list(&[b"a", b"b", b"3"])));
        // 16: listpack hash.
        key(o, rdb_type::HASH_LISTPACK, "lp-hash");
        write_string(o, &listpack::encode([&b"f"[..], b"1", b"g", b"two"]), opts);
        want.push(("lp-hash", hash(&[(b"f", b"1"), (b"g", b"two")])));
        // 17: listpack zset.
        key(o, rdb_type::ZSET_LISTPACK, "lp-zset");
        write_string(o, &listpack::encode([&b"x"[..], b"-3", b"y", b"inf"]), opts);
        want.push(("lp-zset", zset(&[(b"x", -3.0), (b"y", f64::INFINITY)])));
        // 18: quicklist2 with a plain node, a packed node and an LZF-compressed
        // packed node.
        key(o, rdb_type::LIST_QUICKLIST_2, "quicklist2");
        write_len(o, 3);
        write_len(o, 1);
        write_string(o, &[b'P'; 50], WriteOptions { compress: false });
        write_len(o, 2);
        write_string(o, &listpack::encode([&b"7"[..], b"eight"]), opts);
        write_len(o, 2);
        let rep = [b'r'; 40];
        let lp = listpack::encode([&rep[..], &rep[..], &rep[..]]);
        let mut compressed = Vec::new();
        write_string(&mut compressed, &lp, opts);
        assert_eq!(compressed[0], 0xC3, "fixture must exercise LZF");
        o.put_slice(&compressed);
        want.push((
            "quicklist2",
            list(&[&[b'P'; 50], b"7", b"eight", &rep, &rep, &rep]),
        ));
        // 20: listpack set.
        key(o, rdb_type::SET_LISTPACK, "lp-set");
        write_string(o, &listpack::encode([&b"s1"[..], b"99"]), opts);
        want.push(("lp-set", set(&[b"s1", b"99"])));
        // An empty legacy set is skipped.
        key(o, rdb_type::SET, "empty");
        write_len(o, 0);
        // Old-style expire in seconds, idle and freq before a key.
        o.put_u8(opcode::EXPIRETIME);
        o.put_i32_le(2_000_000_000);
        o.put_u8(opcode::IDLE);
        write_len(o, 1000);
        o.put_u8(opcode::FREQ);
        o.put_u8(5);
        key(o, rdb_type::STRING, "secs");
        write_string(o, b"v", opts);
        want.push(("secs", Value::Str(Str::from(b(b"v")))));
    });
    (file, want)
}

#[test]
fn decodes_every_legacy_encoding() {
    let (file, want) = legacy_file();
    let mut l = Loader::new();
    let mut pos = 0;
    let mut got = Vec::new();
    while let Some((ev, n)) = l.next(&file[pos..]).unwrap() {
        pos += n;
        match ev {
            Event::Entry {
                key,
                value,
                expire_at,
            } => {
                if &key[..] == b"secs" {
                    assert_eq!(expire_at, 2_000_000_000_000);
                } else {
                    assert_eq!(expire_at, 0);
                }
                got.push((String::from_utf8(key.to_vec()).unwrap(), value));
            }
            Event::End { checksum_ok } => {
                assert!(checksum_ok);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(l.empty_keys_skipped(), 1);
    let want: Vec<(String, Value)> = want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(got, want);
}

#[test]
fn old_versions_and_checksums() {
    // Version 4: no CRC after FF.
    let mut v4 = b"REDIS0004".to_vec();
    v4.extend_from_slice(&[opcode::SELECTDB, 0, 0, 1, b'k', 1, b'v', opcode::EOF]);
    let keys = load_file(&v4).unwrap();
    assert_eq!(keys[0].entry.value, Value::Str(Str::from(b(b"v"))));
    // Stored CRC 0: not checked.
    let mut f = sample_file();
    let n = f.len();
    f[n - 8..].fill(0);
    assert!(load_file(&f).is_ok());
    // A wrong CRC.
    f[n - 1] = 1;
    let e = load_file(&f).unwrap_err();
    assert!(
        matches!(e.kind, RdbErrorKind::ChecksumMismatch { .. }),
        "{e}"
    );
    let mut events = Vec::new();
    let mut l = Loader::new();
    let mut pos = 0;
    while !l.is_done() {
        let (ev, n) = l.next(&f[pos..]).unwrap().unwrap();
        pos += n;
        events.push(ev);
    }
    assert_eq!(events.last(), Some(&Event::End { checksum_ok: false }));
}

#[test]
fn header_errors() {
    let e = load_file(b"REDIX0010\xff").unwrap_err();
    assert_eq!(e.kind, RdbErrorKind::BadMagic);
    let e = load_file(b"REDIS0011\xff").unwrap_err();
    assert!(matches!(e.kind, RdbErrorKind::UnsupportedVersion(_)), "{e}");
    assert!(e.to_string().contains("0011"), "{e}");
    let e = load_file(b"REDIS00a1\xff").unwrap_err();
    assert!(matches!(e.kind, RdbErrorKind::UnsupportedVersion(_)), "{e}");
    let e = load_file(b"REDIS0000\xff").unwrap_err();
    assert!(matches!(e.kind, RdbErrorKind::UnsupportedVersion(_)), "{e}");
}

#[test]
fn content_errors_name_key_and_offset() {
    let opts = WriteOptions::default();
    // Stream value: the error names the key and the type.
    let f = file_with(|o| {
        o.put_u8(rdb_type::STREAM_LISTPACKS_2);
        write_string(o, b"mystream", opts);
        o.put_slice(&[0; 20]);
    });
    let e = load_file(&f).unwrap_err();
    assert!(matches!(e.kind, RdbErrorKind::Unsupported(_)));
    let msg = e.to_string();
    assert!(msg.contains("stream") && msg.contains("mystream"), "{msg}");
    // Module value.
    let f = file_with(|o| {
        o.put_u8(rdb_type::MODULE_2);
        write_string(o, b"mod", opts);
    });
    let msg = load_file(&f).unwrap_err().to_string();
    assert!(msg.contains("module") && msg.contains("mod"), "{msg}");
    // Module AUX opcode.
    let f = file_with(|o| o.put_u8(opcode::MODULE_AUX));
    let e = load_file(&f).unwrap_err();
    assert!(matches!(e.kind, RdbErrorKind::Unsupported(_)), "{e}");
    assert_eq!(e.offset, 9);
    // Unknown opcode.
    let f = file_with(|o| o.put_u8(8));
    let e = load_file(&f).unwrap_err();
    assert!(
        e.to_string().contains("unknown opcode or value type 8"),
        "{e}"
    );
    assert_eq!(e.offset, 9);
    // Duplicate set member.
    let f = file_with(|o| {
        o.put_u8(rdb_type::SET);
        write_string(o, b"dupset", opts);
        write_len(o, 2);
        write_string(o, b"a", opts);
        write_string(o, b"a", opts);
    });
    let e = load_file(&f).unwrap_err();
    assert_eq!(e.key.as_deref(), Some(&b"dupset"[..]));
    assert!(e.to_string().contains("duplicate set member"), "{e}");
    // NaN score.
    let f = file_with(|o| {
        o.put_u8(rdb_type::ZSET);
        write_string(o, b"nan", opts);
        write_len(o, 1);
        write_string(o, b"m", opts);
        o.put_u8(253);
    });
    assert!(load_file(&f).unwrap_err().to_string().contains("NaN"));
    // Corrupt listpack names the blob.
    let f = file_with(|o| {
        o.put_u8(rdb_type::HASH_LISTPACK);
        write_string(o, b"lp", opts);
        let mut lp = listpack::encode([&b"a"[..], b"b"]);
        lp[4] = 3;
        write_string(o, &lp, WriteOptions { compress: false });
    });
    let e = load_file(&f).unwrap_err();
    assert!(
        matches!(
            e.kind,
            RdbErrorKind::BadBlob {
                blob: "listpack",
                ..
            }
        ),
        "{e}"
    );
    // Odd listpack hash.
    let f = file_with(|o| {
        o.put_u8(rdb_type::HASH_LISTPACK);
        write_string(o, b"odd", opts);
        write_string(o, &listpack::encode([&b"a"[..]]), opts);
    });
    assert!(
        load_file(&f)
            .unwrap_err()
            .to_string()
            .contains("odd number")
    );
    // A length above the limit fails at once instead of waiting for data.
    let f = file_with(|o| {
        o.put_u8(rdb_type::STRING);
        write_string(o, b"huge", opts);
        write_len(o, 1 << 40);
    });
    let mut l = Loader::new();
    let mut pos = 0;
    let e = loop {
        match l.next(&f[pos..]) {
            Ok(Some((_, n))) => pos += n,
            Ok(None) => panic!("waited for a 1 TiB string"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e.kind, RdbErrorKind::TooLarge { .. }), "{e}");
    // A smaller configured limit.
    let mut l = Loader::with_max_string(4);
    let small = file_with(|o| {
        o.put_u8(rdb_type::STRING);
        write_string(o, b"k", opts);
        write_string(o, b"12345", WriteOptions { compress: false });
        o.put_u8(rdb_type::STRING);
        write_string(o, b"k2", opts);
        write_string(o, b"abcde", opts);
    });
    let mut pos = 0;
    let e = loop {
        match l.next(&small[pos..]) {
            Ok(Some((_, n))) => pos += n,
            Ok(None) => panic!("incomplete"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.key.as_deref(), Some(&b"k2"[..]), "{e}");
}

#[test]
fn function_library_is_reported() {
    let f = file_with(|o| {
        o.put_u8(opcode::FUNCTION2);
        write_string(
            o,
            b"#!lua name=lib\nredis.register_function('f', function() return 1 end)",
            WriteOptions::default(),
        );
    });
    let mut events = Vec::new();
    load_events(&f, |e| events.push(e)).unwrap();
    assert!(matches!(&events[0], Event::Function(code) if code.starts_with(b"#!lua")));
}

/// Applies random corruption to `data` and runs `f`; `f` must not panic.
fn fuzz(data: &[u8], rounds: usize, seed: u64, mut f: impl FnMut(&[u8])) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..rounds {
        let mut d = data.to_vec();
        match rng.u8(0..4) {
            0 => {
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..d.len());
                    d[i] ^= 1 << rng.u8(0..8);
                }
            }
            1 => {
                let i = rng.usize(..d.len());
                d[i] = rng.u8(..);
            }
            2 => {
                let i = rng.usize(..d.len());
                d[i] =
                    [0x00, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xC3, 0xFE, 0xFF][rng.usize(..10)];
            }
            _ => {
                let i = rng.usize(..d.len());
                let n = rng.usize(1..8).min(d.len() - i);
                d.drain(i..i + n);
                if d.is_empty() {
                    continue;
                }
            }
        }
        f(&d);
    }
}

/// Drives a Loader over `d` fed `chunk` bytes at a time; the events and how
/// it ended (`Some(error)`, or `None` for done / still incomplete).
fn run_chunked(d: &[u8], chunk: usize) -> (Vec<Event>, Option<RdbError>) {
    let mut l = Loader::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut events = Vec::new();
    loop {
        match l.next(&buf) {
            Ok(Some((ev, n))) => {
                buf.drain(..n);
                events.push(ev);
                if l.is_done() {
                    return (events, None);
                }
            }
            Ok(None) if fed < d.len() => {
                let stop = (fed + chunk).min(d.len());
                buf.extend_from_slice(&d[fed..stop]);
                fed = stop;
            }
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let (legacy, _) = legacy_file();
    let small: Vec<(Bytes, Entry)> = sample_values()
        .into_iter()
        .filter(|(k, _)| !k.contains("big") && !k.contains("binary"))
        .map(|(k, v)| (b(k.as_bytes()), Entry::new(v)))
        .collect();
    let file = write_snapshot([(0, &small[..])], &default_aux(0, 0, None));
    for (seed, f) in [(1, &legacy), (2, &file)] {
        fuzz(f, 3000, seed, |d| {
            let _ = load_file(d);
            // Streaming in odd-sized chunks ends exactly like one pass over
            // the whole buffer: same events, same error (or both incomplete).
            assert_eq!(run_chunked(d, d.len()), run_chunked(d, 13));
        });
    }
    // Payloads with a recomputed footer, so corruption reaches the decoder.
    for (name, v) in sample_values() {
        if name.contains("big") || name.contains("binary") {
            continue;
        }
        let p = dump_payload(&v);
        let body = &p[..p.len() - 10];
        fuzz(body, 300, name.len() as u64, |d| {
            let _ = restore_payload(&payload(d));
        });
    }
    // The blob decoders directly.
    let blobs = [
        listpack::encode([&b"a"[..], b"123", b"-5000", &[b'x'; 70], b"99999999999"]),
        ziplist::encode([&b"a"[..], b"7", b"-300", &[b'x'; 300], b"70000"]),
        ziplist::encode_zipmap([(&b"f"[..], &b"v"[..]), (b"g", &[b'w'; 260])]),
        intset::encode(&[1, 2, 1 << 33]),
    ];
    for (i, blob) in blobs.iter().enumerate() {
        fuzz(blob, 3000, 100 + i as u64, |d| {
            let _ = listpack::decode(d);
            let _ = ziplist::decode(d);
            let _ = ziplist::decode_zipmap(d);
            let _ = intset::decode(d);
        });
    }
}

#[test]
fn error_display_is_informative() {
    let e = RdbError {
        kind: RdbErrorKind::Corrupt("duplicate hash field".into()),
        offset: 1234,
        key: Some(b(b"user:1")),
    };
    assert_eq!(
        e.to_string(),
        "corrupt RDB data: duplicate hash field at offset 1234 (key \"user:1\")"
    );
}

#[test]
fn lenient_restore_reads_like_redis() {
    // Trailing bytes after the value pass.
    let mut body = vec![rdb_type::STRING, 5];
    body.extend_from_slice(b"helloXX");
    assert_eq!(
        restore_payload_lenient(&payload(&body)).unwrap(),
        Value::Str(Str::from(b(b"hello")))
    );
    assert!(restore_payload(&payload(&body)).is_err());
    // A value may read into the footer (length 7 = "hello" + the version).
    let p = payload(&[rdb_type::STRING, 7, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(
        restore_payload_lenient(&p).unwrap(),
        Value::Str(Str::from(b(b"hello\x0a\x00")))
    );
    // But not beyond the payload, and the footer is still checked.
    let p = payload(&[rdb_type::STRING, 40, b'h']);
    assert!(!restore_payload_lenient(&p).unwrap_err().is_payload_footer());
    let mut bad = payload(&[rdb_type::STRING, 1, b'h']);
    *bad.last_mut().unwrap() ^= 1;
    assert!(
        restore_payload_lenient(&bad)
            .unwrap_err()
            .is_payload_footer()
    );
}
