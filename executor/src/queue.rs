//! The run queue: an intrusive multi-producer single-consumer queue built as a transfer
//! stack.
//!
//! Producers are wakers, `abort` and `spawn` on any processor at IRQL <= DISPATCH_LEVEL. A
//! push links the node in front of `pushed` with one compare-and-swap (a Treiber push); the
//! node's link lives in the task header, so nothing is allocated. The consumer, the work
//! item, takes the whole stack with one swap, reverses it into `ready` (oldest first) and
//! pops from there; it takes the stack again only when `ready` is empty, so the order is
//! first in, first out.
//!
//! ```text
//!   producers:  pushed ──► [t9] ──► [t8] ──► null       (newest first, CAS on `pushed`)
//!                              │
//!               swap(null) when `ready` is empty, reverse
//!                              ▼
//!   consumer:   ready  ──► [t3] ──► [t5] ──► null       (oldest first, consumer only)
//! ```
//!
//! # Why a transfer stack
//!
//! A push is complete the moment its compare-and-swap succeeds: there is no state in which a
//! node has been published but not linked. The queue this replaces (a swap of the tail, then a
//! store linking the previous node) had such a state, and a producer preempted between the two
//! (a waker called at PASSIVE_LEVEL can be) hid every later push from the consumer until it
//! resumed, even pushes whose run request the work item was already serving. Raising the IRQL
//! around the push would close that window too, but needs a kernel call the platform layer
//! does not have, and is one more thing each caller could get wrong; the transfer stack closes
//! it by construction (loom model `loom_run_queue_completed_push_is_seen`). The price is that
//! a push is lock-free rather than wait-free: a compare-and-swap that loses to another push
//! retries (each failure means another push succeeded), with no lock and no allocation, so
//! wakers stay callable at DISPATCH_LEVEL on any processor. ABA cannot arise: the consumer
//! never removes a single node from `pushed`, only the whole stack, so a producer's
//! compare-and-swap succeeds only if `pushed` is still the node it linked behind.

use core::ptr::{self, NonNull};

use crate::loom::{AtomicPtr, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, UnsafeCell};

/// The link a queued node carries.
#[repr(C)]
pub(crate) struct Link {
    next: AtomicPtr<Link>,
}

impl Link {
    pub(crate) fn new() -> Self {
        Self { next: AtomicPtr::new(ptr::null_mut()) }
    }
}

/// Intrusive MPSC queue of [`Link`]s.
///
/// # Invariants
///
/// `pushed` and `ready` are null-terminated chains of distinct nodes that are in the queue;
/// a node is in at most one of them, at most once. Only the consumer reads or writes `ready`
/// and the links of the nodes in it.
pub(crate) struct RunQueue {
    /// Nodes pushed since the consumer last took them, newest first.
    pushed: AtomicPtr<Link>,
    /// Nodes taken by the consumer and not popped yet, oldest first. Consumer only.
    ready: UnsafeCell<*mut Link>,
}

// SAFETY: the raw pointers are to nodes, whose sharing the queue's protocol synchronizes;
// `ready` is touched by the single consumer only.
unsafe impl Send for RunQueue {}
// SAFETY: as above.
unsafe impl Sync for RunQueue {}

impl RunQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self { pushed: AtomicPtr::new(ptr::null_mut()), ready: UnsafeCell::new(ptr::null_mut()) }
    }

    /// Appends `node`. Any thread, IRQL <= DISPATCH_LEVEL; lock-free, allocates nothing.
    ///
    /// Once this returns, the next [`pop`](Self::pop)s see the node whatever other pushes are
    /// in progress.
    ///
    /// # Safety
    ///
    /// `node` stays valid until popped and is not in the queue.
    pub(crate) unsafe fn push(&self, node: NonNull<Link>) {
        let node = node.as_ptr();
        let mut head = self.pushed.load(Relaxed);
        loop {
            // SAFETY: valid (caller); not in the queue, so nobody else reads or writes its link.
            unsafe { (*node).next.store(head, Relaxed) };
            // Release: the consumer's acquiring swap sees the link and what the producer wrote
            // before pushing.
            match self.pushed.compare_exchange_weak(head, node, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Removes the oldest node; `None` when the queue is empty.
    ///
    /// # Safety
    ///
    /// Only the consumer calls it.
    pub(crate) unsafe fn pop(&self) -> Option<NonNull<Link>> {
        // SAFETY: single consumer (caller).
        let mut first = self.ready.with(|r| unsafe { *r });
        if first.is_null() {
            first = self.take_pushed();
        }
        let first = NonNull::new(first)?;
        // SAFETY: a node in the queue is valid; its link is the consumer's while in `ready`.
        let next = unsafe { first.as_ref() }.next.load(Relaxed);
        // SAFETY: single consumer (caller).
        self.ready.with_mut(|r| unsafe { *r = next });
        Some(first)
    }

    /// Takes every pushed node and returns them oldest first.
    fn take_pushed(&self) -> *mut Link {
        // Acquire: pairs with the pushes' release.
        let mut node = self.pushed.swap(ptr::null_mut(), Acquire);
        let mut reversed = ptr::null_mut();
        while !node.is_null() {
            // SAFETY: a node taken from `pushed` is valid (it is in the queue until popped), and
            // its link is now the consumer's alone: no producer reaches it any more.
            let link = unsafe { &(*node).next };
            let next = link.load(Relaxed);
            link.store(reversed, Relaxed);
            reversed = node;
            node = next;
        }
        reversed
    }

    /// Whether a [`pop`](Self::pop) would find something. Consumer only.
    ///
    /// # Safety
    ///
    /// Only the consumer calls it.
    pub(crate) unsafe fn has_ready(&self) -> bool {
        // SAFETY: single consumer (caller).
        let ready = self.ready.with(|r| unsafe { *r });
        !ready.is_null() || !self.pushed.load(Acquire).is_null()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    fn nodes(n: usize) -> Vec<NonNull<Link>> {
        (0..n).map(|_| NonNull::from(Box::leak(Box::new(Link::new())))).collect()
    }

    fn free(nodes: Vec<NonNull<Link>>) {
        for n in nodes {
            // SAFETY: leaked by `nodes`, no longer queued.
            drop(unsafe { Box::from_raw(n.as_ptr()) });
        }
    }

    #[test]
    fn fifo_and_reuse() {
        let q = RunQueue::new();
        let ns = nodes(3);
        let push = |n: NonNull<Link>| {
            // SAFETY: this thread is the only producer and consumer; the nodes outlive the
            // queue's use and are pushed only when not queued.
            unsafe { q.push(n) }
        };
        // SAFETY: as above.
        let pop = || unsafe { q.pop() };
        // SAFETY: as above.
        let ready = || unsafe { q.has_ready() };
        assert!(!ready());
        assert_eq!(pop(), None);
        for n in &ns {
            push(*n);
        }
        assert!(ready());
        assert_eq!(pop(), Some(ns[0]));
        push(ns[0]);
        assert_eq!(pop(), Some(ns[1]));
        assert_eq!(pop(), Some(ns[2]));
        assert_eq!(pop(), Some(ns[0]));
        assert_eq!(pop(), None);
        assert!(!ready());
        push(ns[1]);
        assert_eq!(pop(), Some(ns[1]));
        assert_eq!(pop(), None);
        free(ns);
    }

    #[test]
    fn many_producers() {
        use std::sync::Arc;
        struct SendPtr(NonNull<Link>);
        // SAFETY: test-only wrapper; the nodes are shared through the queue's protocol.
        unsafe impl Send for SendPtr {}
        let q = Arc::new(RunQueue::new());
        let per = if cfg!(miri) { 5 } else { 200 };
        let all = nodes(4 * per);
        let handles: Vec<_> = all
            .chunks(per)
            .map(|c| {
                let c: Vec<SendPtr> = c.iter().map(|n| SendPtr(*n)).collect();
                let q = q.clone();
                std::thread::spawn(move || {
                    for n in c {
                        // SAFETY: each node pushed once; nodes outlive the test.
                        unsafe { q.push(n.0) };
                    }
                })
            })
            .collect();
        let mut got = 0;
        while got < all.len() {
            // SAFETY: this thread is the only consumer.
            if unsafe { q.pop() }.is_some() {
                got += 1;
            } else {
                std::thread::yield_now();
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: single consumer.
        assert_eq!(unsafe { q.pop() }, None);
        free(all);
    }
}
