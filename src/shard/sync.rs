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
