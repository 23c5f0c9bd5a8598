//! The run queue: an intrusive multi-producer single-consumer queue (Vyukov's, with a stub
//! node).
//!
//! Producers are wakers, `abort` and `spawn` on any processor at IRQL <= DISPATCH_LEVEL; a
//! push is one swap and one store, wait-free, and allocates nothing because the link lives
//! in the task header. The consumer is the work item.
//!
//! ```text
//!   head (consumer)                                  tail (producers swap it)
//!     │                                                │
//!     ▼                                                ▼
//!   [stub or task] ──next──► [task] ──next──► ... ──► [task] ──next──► null
//! ```
//!
//! Between a producer's swap of `tail` and its store of the previous node's `next`, the
//! chain is briefly cut: [`RunQueue::pop`] then reports nothing. That is safe because the
//! producer asks for a run after finishing its push (see [`crate::scheduler`]).

use core::ptr::{self, NonNull};

use crate::loom::{AtomicPtr, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, UnsafeCell};

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
/// After [`init`](Self::init): `head` and `tail` point to the stub or to nodes in the queue;
/// the queue does not move; a node is in the queue at most once.
pub(crate) struct RunQueue {
    /// Next node to pop. Only the consumer reads or writes it.
    head: UnsafeCell<*mut Link>,
    /// Last node pushed.
    tail: AtomicPtr<Link>,
    stub: Link,
}

// SAFETY: the raw pointers are to nodes and the stub, whose sharing the queue's protocol
// synchronizes; `head` is touched by the single consumer only.
unsafe impl Send for RunQueue {}
// SAFETY: as above.
unsafe impl Sync for RunQueue {}

impl RunQueue {
    /// A queue that must be [`init`](Self::init)ed at its final address before use.
    pub(crate) fn new() -> Self {
        Self { head: UnsafeCell::new(ptr::null_mut()), tail: AtomicPtr::new(ptr::null_mut()), stub: Link::new() }
    }

    fn stub(&self) -> *mut Link {
        ptr::from_ref(&self.stub).cast_mut()
    }

    /// Points both ends at the stub.
    ///
    /// # Safety
    ///
    /// Called once, before any other method, and the queue never moves afterwards.
    pub(crate) unsafe fn init(&self) {
        let stub = self.stub();
        // SAFETY: no other access yet (caller).
        self.head.with_mut(|h| unsafe { *h = stub });
        self.tail.store(stub, Release);
    }

    /// Appends `node`. Any thread, IRQL <= DISPATCH_LEVEL; wait-free.
    ///
    /// # Safety
    ///
    /// `node` stays valid until popped and is not in the queue.
    pub(crate) unsafe fn push(&self, node: NonNull<Link>) {
        let node = node.as_ptr();
        // SAFETY: valid (caller); not in the queue, so nobody else writes its link.
        unsafe { (*node).next.store(ptr::null_mut(), Relaxed) };
        let prev = self.tail.swap(node, AcqRel);
        // SAFETY: `prev` is the stub or a node that cannot be popped before this store links
        // it to `node`, so it is still valid.
        unsafe { (*prev).next.store(node, Release) };
    }

    /// Removes the oldest node, if one can be taken now. `None` when the queue is empty or a
    /// push is half done.
    ///
    /// # Safety
    ///
    /// Only the consumer calls it.
    pub(crate) unsafe fn pop(&self) -> Option<NonNull<Link>> {
        let stub = self.stub();
        // SAFETY: single consumer (caller).
        let mut head = self.head.with(|h| unsafe { *h });
        // SAFETY: `head` is the stub or a queued node (invariant).
        let mut next = unsafe { (*head).next.load(Acquire) };
        if head == stub {
            if next.is_null() {
                return None;
            }
            // Skip the stub.
            self.set_head(next);
            head = next;
            // SAFETY: `next` is a queued node.
            next = unsafe { (*head).next.load(Acquire) };
        }
        if !next.is_null() {
            self.set_head(next);
            return NonNull::new(head);
        }
        if head != self.tail.load(Acquire) {
            // A producer swapped the tail and has not linked its node yet.
            return None;
        }
        // `head` is the last node: put the stub behind it so it can be taken.
        // SAFETY: the stub lives as long as the queue and is not in the queue now.
        unsafe { self.push(NonNull::from(&self.stub)) };
        // SAFETY: `head` is still a queued node.
        next = unsafe { (*head).next.load(Acquire) };
        if !next.is_null() {
            self.set_head(next);
            return NonNull::new(head);
        }
        None
    }

    /// Whether a pop might find something: false only if the queue is empty apart from a
    /// push in progress. Consumer only.
    ///
    /// # Safety
    ///
    /// Only the consumer calls it.
    pub(crate) unsafe fn has_ready(&self) -> bool {
        // SAFETY: single consumer (caller).
        let head = self.head.with(|h| unsafe { *h });
        head != self.stub() || !self.stub.next.load(Acquire).is_null()
    }

    fn set_head(&self, head: *mut Link) {
        // SAFETY: only the consumer calls `pop`, the only caller.
        self.head.with_mut(|h| unsafe { *h = head });
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
        let q = Box::new(RunQueue::new());
        // SAFETY: boxed, never moves.
        unsafe { q.init() };
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
        // SAFETY: in an Arc, never moves.
        unsafe { q.init() };
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
