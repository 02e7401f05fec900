//! The per-shard socket ring: a native io_uring with `SINGLE_ISSUER |
//! COOP_TASKRUN | TASKRUN_FLAG`, multishot accept, multishot recv into a
//! registered provided-buffer ring, and sends batched per connection. Only
//! the shard's network driver touches it (single issuer).
//!
//! With COOP_TASKRUN a completion's task work waits for the shard thread's
//! next entry into the kernel (no IPI interrupts it mid-turn), and the
//! TASKRUN flag says when some is pending. An idle driver sleeps in
//! glommio's reactor; the kernel runs the pending work as that sleep is
//! interrupted, posts the completion, and the ring's registered eventfd
//! wakes the driver.
//!
//! Not DEFER_TASKRUN, which runs task work only under an `io_uring_enter`
//! with GETEVENTS on this ring: on Linux 6.18 a completion queued for a
//! thread asleep on another ring (glommio's) neither runs nor signals the
//! eventfd, so the driver slept until a timer woke it. Measured on the
//! 2-core box (kernel 6.18): PING at -c 1 answered 130 times a second
//! (p50 7 ms) and SET -P 16 -c 50 reached 59k requests a second, against
//! 26k and 1.65M with COOP_TASKRUN. Older kernels also signalled the
//! eventfd when such work was queued, which is why DEFER_TASKRUN measured
//! as well as COOP_TASKRUN when this was written.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 0;

/// What a completion belongs to, packed into `user_data`:
/// `op (8 bits) | generation (24 bits) | connection slot (32 bits)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Accept = 1,
    Recv = 2,
    Send = 3,
}

pub fn pack(op: OpKind, generation: u32, slot: u32) -> u64 {
    ((op as u64) << 56) | (((generation & 0xff_ffff) as u64) << 32) | slot as u64
}

pub fn unpack(ud: u64) -> (Option<OpKind>, u32, u32) {
    let op = match ud >> 56 {
        1 => Some(OpKind::Accept),
        2 => Some(OpKind::Recv),
        3 => Some(OpKind::Send),
        _ => None,
    };
    (op, ((ud >> 32) & 0xff_ffff) as u32, ud as u32)
}

/// A provided-buffer ring: `count` buffers of `size` bytes the kernel
/// picks from for multishot recv; we hand each back once copied out.
struct BufRing {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    mem: Vec<u8>,
    size: usize,
    count: u16,
    tail: u16,
}

impl BufRing {
    fn new(count: u16, size: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("buffer ring layout");
        // SAFETY: non-zero size layout; zeroed memory is a valid empty ring.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        assert!(
            !entries.is_null(),
            "out of memory allocating the buffer ring"
        );
        let mut r = BufRing {
            entries,
            layout,
            mem: vec![0u8; count as usize * size],
            size,
            count,
            tail: 0,
        };
        for bid in 0..count {
            r.push(bid);
        }
        r.publish();
        r
    }

    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        // SAFETY: idx < count, the ring holds count entries.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.mem.as_ptr() as u64 + bid as u64 * self.size as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives inside the first entry, which we own;
        // the kernel reads it, so store with release ordering.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.mem[start..start + len.min(self.size)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.entries as *mut u8, self.layout) };
    }
}

/// One shard's socket ring.
pub struct Ring {
    ring: IoUring,
    bufs: BufRing,
    dirty_bufs: bool,
    /// Runs before a full submission queue is submitted in the middle of a
    /// turn (see [`Ring::before_early_submit`]).
    early_submit: Option<Box<dyn FnMut()>>,
}

/// A completion, copied out of the ring.
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

impl Ring {
    /// Builds the ring; fails where io_uring is unavailable (old kernel,
    /// seccomp, RLIMIT_MEMLOCK on kernels before 5.12).
    pub fn new(entries: u32, nbufs: u16, buf_size: usize) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)?;
        let bufs = BufRing::new(nbufs, buf_size);
        // SAFETY: the ring memory lives in `bufs`, dropped after `ring`
        // (field order) so the kernel never sees it freed while registered.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, nbufs, BGID, 0)?
        };
        Ok(Ring {
            ring,
            bufs,
            dirty_bufs: false,
            early_submit: None,
        })
    }

    pub fn register_eventfd(&self, fd: RawFd) -> io::Result<()> {
        self.ring.submitter().register_eventfd(fd)
    }

    /// Sets what must happen before entries queued so far reach the kernel
    /// early: a turn's sends normally go out at its end, but a full
    /// submission queue is submitted when the next entry is pushed.
    pub fn before_early_submit(&mut self, f: impl FnMut() + 'static) {
        self.early_submit = Some(Box::new(f));
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer an entry points to outlives its completion
        // (send buffers are kept in the connection until then).
        unsafe {
            while self.ring.submission().push(&e).is_err() {
                if let Some(f) = self.early_submit.as_mut() {
                    f();
                }
                self.ring
                    .submit()
                    .expect("io_uring submit failed while draining a full SQ");
            }
        }
    }

    pub fn accept_multi(&mut self, listener: RawFd, slot: u32) {
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(pack(OpKind::Accept, 0, slot));
        self.push(e);
    }

    pub fn recv_multi(&mut self, fd: RawFd, generation: u32, slot: u32) {
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(pack(OpKind::Recv, generation, slot));
        self.push(e);
    }

    /// Cancels a connection's multishot recv (it then completes with
    /// `-ECANCELED`). The cancel's own completion carries no op and is
    /// ignored.
    pub fn cancel_recv(&mut self, generation: u32, slot: u32) {
        let e = opcode::AsyncCancel::new(pack(OpKind::Recv, generation, slot))
            .build()
            .user_data(0);
        self.push(e);
    }

    /// Queues a send of `len` bytes at `ptr`; the caller keeps the memory
    /// alive until the completion arrives.
    pub fn send(&mut self, fd: RawFd, ptr: *const u8, len: usize, generation: u32, slot: u32) {
        let e = opcode::Send::new(types::Fd(fd), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(OpKind::Send, generation, slot));
        self.push(e);
    }

    /// The bytes a recv completion delivered into buffer `bid`.
    pub fn buf_data(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.data(bid, len)
    }

    /// Hands a provided buffer back to the kernel (published at `submit`).
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.push(bid);
        self.dirty_bufs = true;
    }

    /// At most one syscall: submits queued entries and runs deferred task
    /// work so completions appear in the CQ. Never blocks.
    ///
    /// Without SQPOLL the `io-uring` crate's `submit` always enters the
    /// kernel; with nothing queued and neither TASKRUN nor CQ overflow
    /// raised that enter does nothing (pending task work raises TASKRUN,
    /// and the crate then adds GETEVENTS), so it is skipped. The driver calls this twice a turn; at low load most
    /// of those calls had nothing to do.
    pub fn submit(&mut self) -> io::Result<()> {
        if self.dirty_bufs {
            self.bufs.publish();
            self.dirty_bufs = false;
        }
        let mut sq = self.ring.submission();
        sq.sync();
        if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
            return Ok(());
        }
        drop(sq);
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Drains the completion queue into `out`.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.ring.completion();
        cq.sync();
        for c in &mut cq {
            out.push(Completion {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            });
        }
    }

    /// Whether the kernel holds deferred task work for us (TASKRUN flag).
    pub fn taskrun(&mut self) -> bool {
        let mut sq = self.ring.submission();
        sq.sync();
        sq.taskrun()
    }

    pub fn cq_empty(&mut self) -> bool {
        let mut cq = self.ring.completion();
        cq.sync();
        cq.is_empty()
    }
}
