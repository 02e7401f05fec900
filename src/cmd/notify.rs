//! Keyspace notifications (Redis 7.0 `notify.c`, `notify-keyspace-events`).
//!
//! A command that changes a key calls [`Exec::notify`](super::Exec::notify)
//! with the event's class and name where Redis calls
//! `notifyKeyspaceEvent`. When the class is on (and K or E is), the event
//! is queued on the shard and published at the end of the driver's turn
//! ([`flush`]) as Redis publishes it:
//!
//! ```text
//! K  PUBLISH __keyspace@<db>__:<key>   <event>
//! E  PUBLISH __keyevent@<db>__:<event> <key>
//! ```
//!
//! to this shard's subscribers and, in one message per flush, to every
//! other shard that has a subscriber who could match (a pattern, or a
//! channel named `__keyspace@...` / `__keyevent@...`; see
//! `PubSub::wants_keyspace`). With no such subscriber anywhere nothing is
//! queued at all.
//!
//! Events keep their order: a shard queues them in the order its commands
//! raise them, and the mesh delivers one sender's messages in order. Two
//! rules keep them ahead of what follows them: [`publish`] runs before any
//! message leaves a shard (`Shard::post`), so a command's events are sent
//! before its reply; and a shard delivers its own pending events before a
//! PUBLISH or another shard's events reach its subscribers.
//!
//! Keys deleted by expiry raise `expired` where the deletion happens (in
//! the keyspace, which knows no shard): `Db` logs them while `x` is on and
//! [`drain_expired`] queues their events before the next event of the
//! command that looked them up, so an `expired` precedes the write that
//! found the key gone, as in Redis.

use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use crate::shard::keyspace::Keyspace;
use crate::shard::{Msg, Shard};

// Redis 7.0's NOTIFY_* bits and the letters that select them.
pub const KEYSPACE: u32 = 1 << 0; // K
pub const KEYEVENT: u32 = 1 << 1; // E
pub const GENERIC: u32 = 1 << 2; // g
pub const STRING: u32 = 1 << 3; // $
pub const LIST: u32 = 1 << 4; // l
pub const SET: u32 = 1 << 5; // s
pub const HASH: u32 = 1 << 6; // h
pub const ZSET: u32 = 1 << 7; // z
pub const EXPIRED: u32 = 1 << 8; // x
pub const EVICTED: u32 = 1 << 9; // e
pub const STREAM: u32 = 1 << 10; // t
pub const KEY_MISS: u32 = 1 << 11; // m (not part of A)
pub const MODULE: u32 = 1 << 13; // d
pub const NEW: u32 = 1 << 14; // n (not part of A)
/// `A`: every class but `m` and `n`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// One queued event: `event` happened to `key` in `db`.
#[derive(Debug)]
pub struct KeyEvent {
    pub db: u16,
    pub event: &'static str,
    pub key: Bytes,
}

/// The classes a shard raises events for: the configured flags, or 0 when
/// neither K nor E is set (nothing would be published).
pub fn effective(flags: u32) -> u32 {
    if flags & (KEYSPACE | KEYEVENT) == 0 {
        0
    } else {
        flags
    }
}

/// Queues `event` for `key` when its class is on (Redis's
/// `notifyKeyspaceEvent`). One load and a branch when it is off.
#[inline]
pub fn raise(shard: &Shard, class: u32, event: &'static str, db: usize, key: &[u8]) {
    if shard.notify_flags.get() & class != 0 {
        queue(shard, event, db, key);
    }
}

#[cold]
fn queue(shard: &Shard, event: &'static str, db: usize, key: &[u8]) {
    // Nobody could receive it: no message is built (Redis builds both
    // channel names and looks them up whoever listens).
    let listeners = &shard.shared.key_listeners;
    if !listeners.iter().any(|l| l.load(Ordering::Relaxed)) {
        return;
    }
    let mut q = shard.events.borrow_mut();
    if q.is_empty() {
        // Events raised outside a driver turn (a slow-path task) still
        // get published: the driver runs a turn.
        shard.wake.notify();
    }
    q.push(KeyEvent {
        db: db as u16,
        event,
        key: Bytes::copy_from_slice(key),
    });
}

/// Queues `expired` for the keys the keyspace deleted by expiry since the
/// last call (a no-op unless `x` is on and one was deleted).
#[inline]
pub fn drain_expired(shard: &Shard, ks: &mut Keyspace) {
    if std::mem::take(&mut ks.stats.notes_pending) {
        drain_notes(shard, ks);
    }
}

#[cold]
#[inline(never)]
fn drain_notes(shard: &Shard, ks: &mut Keyspace) {
    for (i, d) in ks.dbs.iter_mut().enumerate() {
        for k in std::mem::take(&mut d.expired_notes) {
            raise(shard, EXPIRED, "expired", i, &k);
        }
    }
}

/// One message as published: (channel, payload).
pub type Published = Vec<(Bytes, Bytes)>;

/// Publishes the queued events (see the module doc). Called by the
/// network driver once per turn with nothing borrowed, and before any
/// other message is delivered here (a PUBLISH, another shard's events),
/// so this shard's subscribers see everything in order. Returns whether it
/// delivered anything to this shard's own subscribers (their output is
/// then waiting to be sent).
pub fn flush(shard: &Shard) -> bool {
    publish(shard);
    let msgs = std::mem::take(&mut *shard.events_here.borrow_mut());
    !msgs.is_empty() && deliver(shard, &msgs)
}

/// Turns the queued events into messages: posted at once to the other
/// shards that have listeners, kept for this shard's own subscribers
/// until [`flush`] (which may need the connection table this runs
/// under). `Shard::post` calls this before any message leaves, so a
/// command's events are on their way before its reply is: a client that
/// writes again after the reply cannot have its next events overtake
/// them.
pub fn publish(shard: &Shard) {
    let events = {
        let mut q = shard.events.borrow_mut();
        if q.is_empty() {
            return;
        }
        std::mem::take(&mut *q)
    };
    let flags = shard.notify_flags.get();
    let mut msgs = Vec::with_capacity(events.len() * 2);
    for e in events {
        let db = itoa::Buffer::new().format(e.db).to_owned();
        if flags & KEYSPACE != 0 {
            let mut ch = BytesMut::with_capacity(16 + db.len() + e.key.len());
            ch.put_slice(b"__keyspace@");
            ch.put_slice(db.as_bytes());
            ch.put_slice(b"__:");
            ch.put_slice(&e.key);
            msgs.push((ch.freeze(), Bytes::from_static(e.event.as_bytes())));
        }
        if flags & KEYEVENT != 0 {
            let mut ch = BytesMut::with_capacity(16 + db.len() + e.event.len());
            ch.put_slice(b"__keyevent@");
            ch.put_slice(db.as_bytes());
            ch.put_slice(b"__:");
            ch.put_slice(e.event.as_bytes());
            msgs.push((ch.freeze(), e.key));
        }
    }
    let listeners = &shard.shared.key_listeners;
    for (i, l) in listeners.iter().enumerate() {
        if i != shard.id && l.load(Ordering::Relaxed) {
            shard.post(i, Msg::Notify { msgs: msgs.clone() });
        }
    }
    if listeners[shard.id].load(Ordering::Relaxed) {
        shard.events_here.borrow_mut().extend(msgs);
    }
}

/// Hands published messages to this shard's subscribers. Returns whether
/// anyone received one.
pub fn deliver(shard: &Shard, msgs: &Published) -> bool {
    let mut any = false;
    for (ch, msg) in msgs {
        let receivers = shard.pubsub.borrow().receivers(ch);
        if !receivers.is_empty() {
            let limit = shard.pubsub_obuf.get();
            shard.net.borrow_mut().deliver(&receivers, ch, msg, limit);
            any = true;
        }
    }
    any
}

/// Stores whether this shard has a subscriber keyspace events could
/// reach; call after every change to its subscriptions.
pub fn listeners_changed(shard: &Shard) {
    let wants = shard.pubsub.borrow().wants_keyspace();
    shard.shared.key_listeners[shard.id].store(wants, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_raised_without_k_or_e() {
        assert_eq!(effective(ALL), 0);
        assert_eq!(effective(ALL | KEYSPACE), ALL | KEYSPACE);
        assert_eq!(effective(KEYEVENT | KEY_MISS), KEYEVENT | KEY_MISS);
    }
}
