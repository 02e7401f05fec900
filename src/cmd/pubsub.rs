//! Pub/Sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH,
//! PUBSUB CHANNELS / NUMSUB / NUMPAT.
//!
//! Subscriptions live on the shard that owns the subscriber's connection
//! (`Shard::pubsub`, channel -> client ids). PUBLISH goes to every shard,
//! each delivers to its own subscribers by appending the message to their
//! output buffers, and the receiver counts are summed. A publisher's
//! PUBLISHes are barriers in its pipeline, so each is delivered everywhere
//! before the next starts: per-publisher order holds.
//!
//! ```text
//! RESP2  *3\r\n$7\r\nmessage\r\n$<ch>\r\n$<msg>\r\n      (subscribe replies alike)
//! RESP3  >3\r\n$7\r\nmessage\r\n...                       (push type)
//! ```

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::{ClientState, CmdSpec, ConnCtx, Kind};
use crate::glob::glob_match;
use crate::resp::{Proto, Reply};

/// One shard's subscription registry.
#[derive(Default)]
pub struct PubSub {
    channels: HashMap<Bytes, Vec<u64>>,
    patterns: Vec<(Bytes, Vec<u64>)>,
    /// Channels in `channels` a keyspace event can be published on.
    key_channels: usize,
}

/// Whether a keyspace event can be published on channel `ch`.
fn is_key_channel(ch: &[u8]) -> bool {
    ch.starts_with(b"__keyspace@") || ch.starts_with(b"__keyevent@")
}

impl PubSub {
    fn sub(&mut self, ch: &Bytes, id: u64) {
        let v = self.channels.entry(ch.clone()).or_default();
        if v.is_empty() && is_key_channel(ch) {
            self.key_channels += 1;
        }
        if !v.contains(&id) {
            v.push(id);
        }
    }

    fn unsub(&mut self, ch: &[u8], id: u64) {
        if let Some(v) = self.channels.get_mut(ch) {
            v.retain(|&c| c != id);
            if v.is_empty() {
                self.channels.remove(ch);
                if is_key_channel(ch) {
                    self.key_channels -= 1;
                }
            }
        }
    }

    /// Whether a keyspace event could reach a subscriber here: one
    /// listens on a keyspace channel, or on any pattern.
    pub fn wants_keyspace(&self) -> bool {
        self.key_channels > 0 || !self.patterns.is_empty()
    }

    fn psub(&mut self, p: &Bytes, id: u64) {
        match self.patterns.iter_mut().find(|(q, _)| q == p) {
            Some((_, v)) if !v.contains(&id) => v.push(id),
            Some(_) => {}
            None => self.patterns.push((p.clone(), vec![id])),
        }
    }

    fn punsub(&mut self, p: &[u8], id: u64) {
        if let Some(i) = self.patterns.iter().position(|(q, _)| q == p) {
            self.patterns[i].1.retain(|&c| c != id);
            if self.patterns[i].1.is_empty() {
                self.patterns.swap_remove(i);
            }
        }
    }

    /// Drops every subscription of a client (close, RESET).
    pub fn remove_client(&mut self, id: u64, channels: &[Bytes], patterns: &[Bytes]) {
        for c in channels {
            self.unsub(c, id);
        }
        for p in patterns {
            self.punsub(p, id);
        }
    }

    /// Who receives a message on `ch`: (client, matching pattern if any).
    pub fn receivers(&self, ch: &[u8]) -> Vec<(u64, Option<Bytes>)> {
        let mut out: Vec<(u64, Option<Bytes>)> = self
            .channels
            .get(ch)
            .map(|v| v.iter().map(|&c| (c, None)).collect())
            .unwrap_or_default();
        for (p, ids) in &self.patterns {
            if glob_match(p, ch, false) {
                out.extend(ids.iter().map(|&c| (c, Some(p.clone()))));
            }
        }
        out
    }

    pub fn channel_names(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, ch: &[u8]) -> usize {
        self.channels.get(ch).map_or(0, |v| v.len())
    }

    pub fn pattern_names(&self) -> Vec<Bytes> {
        self.patterns.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// Encodes a pub/sub message or (un)subscribe confirmation.
pub fn encode(proto: Proto, parts: &[Option<&[u8]>], count: Option<i64>, out: &mut BytesMut) {
    let mut r = Reply::new(out, proto);
    r.push(parts.len() + count.is_some() as usize);
    for p in parts {
        match p {
            Some(b) => r.bulk(b),
            None => r.null(),
        }
    }
    if let Some(n) = count {
        r.int(n);
    }
}

fn count(c: &ClientState) -> i64 {
    (c.channels.len() + c.patterns.len()) as i64
}

fn subscribe(c: &mut ConnCtx, a: &[Bytes]) {
    let proto = c.client.proto;
    for ch in &a[1..] {
        if !c.client.channels.contains(ch) {
            // A copy: a slice would keep the whole request buffer alive
            // for as long as the subscription.
            let ch = Bytes::copy_from_slice(ch);
            c.shard.pubsub.borrow_mut().sub(&ch, c.client.id);
            c.client.channels.push(ch);
        }
        encode(
            proto,
            &[Some(b"subscribe"), Some(ch)],
            Some(count(c.client)),
            c.r.out,
        );
    }
    super::notify::listeners_changed(c.shard);
}

fn psubscribe(c: &mut ConnCtx, a: &[Bytes]) {
    let proto = c.client.proto;
    for p in &a[1..] {
        if !c.client.patterns.contains(p) {
            let p = Bytes::copy_from_slice(p);
            c.shard.pubsub.borrow_mut().psub(&p, c.client.id);
            c.client.patterns.push(p);
        }
        encode(
            proto,
            &[Some(b"psubscribe"), Some(p)],
            Some(count(c.client)),
            c.r.out,
        );
    }
    super::notify::listeners_changed(c.shard);
}

fn unsubscribe(c: &mut ConnCtx, a: &[Bytes]) {
    let proto = c.client.proto;
    let targets: Vec<Bytes> = if a.len() > 1 {
        a[1..].to_vec()
    } else {
        c.client.channels.clone()
    };
    if targets.is_empty() {
        return encode(
            proto,
            &[Some(b"unsubscribe"), None],
            Some(count(c.client)),
            c.r.out,
        );
    }
    for ch in targets {
        c.client.channels.retain(|x| *x != ch);
        c.shard.pubsub.borrow_mut().unsub(&ch, c.client.id);
        encode(
            proto,
            &[Some(b"unsubscribe"), Some(&ch)],
            Some(count(c.client)),
            c.r.out,
        );
    }
    super::notify::listeners_changed(c.shard);
}

fn punsubscribe(c: &mut ConnCtx, a: &[Bytes]) {
    let proto = c.client.proto;
    let targets: Vec<Bytes> = if a.len() > 1 {
        a[1..].to_vec()
    } else {
        c.client.patterns.clone()
    };
    if targets.is_empty() {
        return encode(
            proto,
            &[Some(b"punsubscribe"), None],
            Some(count(c.client)),
            c.r.out,
        );
    }
    for p in targets {
        c.client.patterns.retain(|x| *x != p);
        c.shard.pubsub.borrow_mut().punsub(&p, c.client.id);
        encode(
            proto,
            &[Some(b"punsubscribe"), Some(&p)],
            Some(count(c.client)),
            c.r.out,
        );
    }
    super::notify::listeners_changed(c.shard);
}

/// In RESP2 a subscribed client may only run these (Redis's words below).
pub fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// Checks RESP2 subscribed-mode restrictions; answers PING the subscribed
/// way. Returns true when it wrote the reply itself.
pub fn subscribed_guard(
    client: &ClientState,
    spec: &CmdSpec,
    a: &[Bytes],
    out: &mut BytesMut,
) -> bool {
    if client.proto != Proto::Resp2 || (client.channels.is_empty() && client.patterns.is_empty()) {
        return false;
    }
    if !allowed_when_subscribed(spec.name) {
        Reply::new(out, client.proto).error(&format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
        return true;
    }
    if spec.name == "ping" && a.len() <= 2 {
        let msg: &[u8] = a.get(1).map_or(b"", |m| m);
        let mut r = Reply::new(out, client.proto);
        r.array(2);
        r.bulk(b"pong");
        r.bulk(msg);
        return true;
    }
    false
}

macro_rules! conn {
    ($name:expr, $arity:expr, $f:expr) => {
        keyless!(
            $name,
            $arity,
            &["pubsub", "noscript", "loading", "stale"],
            Kind::Conn($f)
        )
    };
}

pub static COMMANDS: [CmdSpec; 6] = [
    conn!("subscribe", -2, subscribe),
    conn!("psubscribe", -2, psubscribe),
    conn!("unsubscribe", -1, unsubscribe),
    conn!("punsubscribe", -1, punsubscribe),
    global!("publish", 3, &["pubsub", "loading", "stale", "fast"]),
    global!("pubsub", -2, &["pubsub"]),
];
