//! Single-core synchronisation helpers: a wake flag for the network driver
//! and a one-shot slot for replies. Neither is `Send`; both live on one shard.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A level-triggered wake-up: `notify` sets a flag and wakes the waiter;
/// `wait` completes once the flag is set and clears it. Missed wake-ups are
/// impossible because the flag persists until consumed.
#[derive(Default)]
pub struct Notify {
    inner: RefCell<(bool, Option<Waker>)>,
}

impl Notify {
    pub fn notify(&self) {
        let waker = {
            let mut i = self.inner.borrow_mut();
            i.0 = true;
            i.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            let mut i = self.inner.borrow_mut();
            if i.0 {
                i.0 = false;
                Poll::Ready(())
            } else {
                i.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Consumes a pending notification without waiting.
    pub fn take(&self) -> bool {
        std::mem::take(&mut self.inner.borrow_mut().0)
    }
}

/// A single-use reply slot shared by a requester and whoever answers.
pub struct Oneshot<T> {
    inner: Rc<RefCell<(Option<T>, Option<Waker>)>>,
}

impl<T> Clone for Oneshot<T> {
    fn clone(&self) -> Self {
        Oneshot {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            inner: Rc::new(RefCell::new((None, None))),
        }
    }
}

impl<T> Oneshot<T> {
    pub fn send(&self, v: T) {
        let w = {
            let mut i = self.inner.borrow_mut();
            i.0 = Some(v);
            i.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Takes the value if one arrived, without waiting.
    pub fn try_take(&self) -> Option<T> {
        self.inner.borrow_mut().0.take()
    }

    pub fn recv(&self) -> impl Future<Output = T> + '_ {
        OneshotRecv { slot: self }
    }
}

struct OneshotRecv<'a, T> {
    slot: &'a Oneshot<T>,
}

impl<T> Future for OneshotRecv<'_, T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut i = self.slot.inner.borrow_mut();
        match i.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                i.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A broadcast wake-up for any number of waiters on one shard: `ring`
/// bumps a generation and wakes everyone registered; a [`Bell::changed`]
/// future completes once the generation differs from the one its waiter
/// read before checking its condition, so a ring between the check and
/// the wait is never missed. A waiter's registration is removed when its
/// future is dropped (a timeout, a closed client), so abandoned waits do
/// not pile up between rings.
#[derive(Default)]
pub struct Bell {
    inner: RefCell<BellInner>,
}

#[derive(Default)]
struct BellInner {
    generation: u64,
    next_id: u64,
    waiters: Vec<(u64, Waker)>,
}

impl Bell {
    pub fn generation(&self) -> u64 {
        self.inner.borrow().generation
    }

    pub fn ring(&self) {
        let waiters = {
            let mut i = self.inner.borrow_mut();
            i.generation += 1;
            std::mem::take(&mut i.waiters)
        };
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// Completes once the bell rang after `since` was read.
    pub fn changed(&self, since: u64) -> BellWait<'_> {
        BellWait {
            bell: self,
            since,
            id: None,
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.inner.borrow().waiters.len()
    }
}

pub struct BellWait<'a> {
    bell: &'a Bell,
    since: u64,
    id: Option<u64>,
}

impl Future for BellWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut i = this.bell.inner.borrow_mut();
        if i.generation != this.since {
            return Poll::Ready(());
        }
        let id = *this.id.get_or_insert_with(|| {
            i.next_id += 1;
            i.next_id
        });
        match i.waiters.iter_mut().find(|(w, _)| *w == id) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => i.waiters.push((id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for BellWait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.bell
                .inner
                .borrow_mut()
                .waiters
                .retain(|(w, _)| *w != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll_once(f: &mut Pin<&mut BellWait<'_>>, c: &Arc<Count>) -> Poll<()> {
        let waker = Waker::from(c.clone());
        f.as_mut().poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn bell_wakes_every_waiter_and_forgets_dropped_ones() {
        let bell = Bell::default();
        let c = Arc::new(Count(Default::default()));
        let g = bell.generation();
        let mut a = std::pin::pin!(bell.changed(g));
        assert!(poll_once(&mut a, &c).is_pending());
        assert!(
            poll_once(&mut a, &c).is_pending(),
            "re-polled: one registration"
        );
        {
            let mut b = std::pin::pin!(bell.changed(g));
            assert!(poll_once(&mut b, &c).is_pending());
            assert_eq!(bell.registered(), 2);
        }
        assert_eq!(bell.registered(), 1, "a dropped wait unregisters");
        bell.ring();
        assert_eq!(c.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(poll_once(&mut a, &c).is_ready());
        // A ring between reading the generation and waiting is not missed.
        let g = bell.generation();
        bell.ring();
        let mut late = std::pin::pin!(bell.changed(g));
        assert!(poll_once(&mut late, &c).is_ready());
    }
}
