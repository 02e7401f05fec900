//! The mesh: how shards hand each other work.
//!
//! Every shard has one inbox, a lock-free multi-producer queue any other
//! shard pushes [`Msg`]s into. The shard's network driver drains it at the
//! start of every turn (`Shard::drain_inbox`), so a message to a busy shard
//! costs a queue push and nothing else: no wake-up, no task, no syscall.
//!
//! Only a shard whose driver is about to sleep needs waking. Before it
//! sleeps the driver raises its `asleep` flag and looks at its inbox once
//! more; a sender pushes, then looks at the flag, and writes the shard's
//! eventfd only if it finds it raised (taking it down, so a burst of
//! messages costs one write). SeqCst fences on both sides make at least one
//! of the two see the other, so no message is left in a sleeping inbox.
//!
//! This replaced glommio's `shared_channel` mesh, which the profile of a
//! remote pipeline showed costing more than the hop's work: a receiver
//! only noticed a message when its executor went round its outer loop,
//! each message was a spawned task on both sides, and every pop poked the
//! sender's executor awake whether or not it waited for anything.

use std::sync::atomic::{AtomicBool, Ordering, fence};

use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;

use super::Msg;

/// One shard's receiving end.
struct Inbox {
    queue: SegQueue<Msg>,
    /// The driver sleeps, or is about to: a sender must wake it.
    asleep: AtomicBool,
}

/// Every shard's inbox.
pub struct Mesh {
    inboxes: Vec<CachePadded<Inbox>>,
}

impl Mesh {
    pub fn new(nshards: usize) -> Self {
        Mesh {
            inboxes: (0..nshards)
                .map(|_| {
                    CachePadded::new(Inbox {
                        queue: SegQueue::new(),
                        asleep: AtomicBool::new(false),
                    })
                })
                .collect(),
        }
    }

    /// Queues `msg` for shard `to`. Returns whether `to`'s driver sleeps
    /// and must be woken (the caller writes its eventfd).
    #[must_use]
    pub fn push(&self, to: usize, msg: Msg) -> bool {
        let inbox = &self.inboxes[to];
        inbox.queue.push(msg);
        fence(Ordering::SeqCst);
        inbox.asleep.load(Ordering::Relaxed) && inbox.asleep.swap(false, Ordering::Relaxed)
    }

    /// Whether shard `me`'s inbox holds a message.
    pub fn has_mail(&self, me: usize) -> bool {
        !self.inboxes[me].queue.is_empty()
    }

    /// The next message for shard `me`, if any.
    pub fn pop(&self, me: usize) -> Option<Msg> {
        self.inboxes[me].queue.pop()
    }

    /// Announces that `me`'s driver is going to sleep. Returns false, with
    /// the announcement taken back, when a message arrived in between:
    /// the driver must run another turn instead.
    pub fn sleep(&self, me: usize) -> bool {
        let inbox = &self.inboxes[me];
        inbox.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if inbox.queue.is_empty() {
            return true;
        }
        inbox.asleep.store(false, Ordering::Relaxed);
        false
    }

    /// `me`'s driver is running again: senders need not wake it.
    pub fn awake(&self, me: usize) {
        let flag = &self.inboxes[me].asleep;
        if flag.load(Ordering::Relaxed) {
            flag.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_to_a_sleeping_shard_wakes_it_once() {
        let m = Mesh::new(2);
        assert!(m.sleep(1));
        assert!(m.push(1, Msg::Unlock { tx: 1 }), "first push wakes");
        assert!(!m.push(1, Msg::Unlock { tx: 2 }), "one wake per sleep");
        assert!(!m.sleep(1), "a non-empty inbox refuses to sleep");
        assert!(matches!(m.pop(1), Some(Msg::Unlock { tx: 1 })));
        assert!(matches!(m.pop(1), Some(Msg::Unlock { tx: 2 })));
        assert!(m.pop(1).is_none());
        m.awake(1);
        assert!(
            !m.push(1, Msg::Unlock { tx: 3 }),
            "an awake shard needs no wake"
        );
        assert!(m.pop(0).is_none(), "inboxes are separate");
    }

    /// A sender and a sleeper racing on another thread: every message is
    /// either seen by the sleeper's check or announced by a wake.
    #[test]
    fn no_message_is_left_in_a_sleeping_inbox() {
        use std::sync::Arc;
        let m = Arc::new(Mesh::new(1));
        let (woke_tx, woke_rx) = std::sync::mpsc::channel::<()>();
        let sender = {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    if m.push(0, Msg::Unlock { tx: i }) {
                        woke_tx.send(()).unwrap();
                    }
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut got = 0u64;
        while got < 20_000 {
            while let Some(Msg::Unlock { tx }) = m.pop(0) {
                assert_eq!(tx, got, "in order");
                got += 1;
            }
            if got < 20_000 && m.sleep(0) {
                // Asleep: only a wake may end this, and one must come.
                woke_rx
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("a message arrived but nobody woke the sleeper");
            }
        }
        sender.join().unwrap();
    }
}
