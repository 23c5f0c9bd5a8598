//! [`Mailbox`]: a value plus an `AtomicWaker`, for handshakes between a task and a DPC or
//! another thread.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use wsk_executor::AtomicWaker;

/// A counter posted by one side and awaited by a task: the poster stores the value and
/// wakes the registered waker (any IRQL <= DISPATCH_LEVEL); the task awaits a value.
pub struct Mailbox {
    value: AtomicU64,
    waker: AtomicWaker,
}

impl Mailbox {
    /// An empty mailbox (value 0, no waiter). Any IRQL.
    pub const fn new() -> Self {
        Self { value: AtomicU64::new(0), waker: AtomicWaker::new() }
    }

    /// Stores `value` and wakes the waiting task. IRQL <= DISPATCH_LEVEL.
    pub fn post(&self, value: u64) {
        self.value.store(value, Ordering::Release);
        self.waker.wake();
    }

    /// Adds one and wakes the waiting task; returns the new value. IRQL <= DISPATCH_LEVEL.
    pub fn increment(&self) -> u64 {
        let value = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        self.waker.wake();
        value
    }

    /// The value last posted. Any IRQL.
    pub fn load(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Completes once the value is at least `target`, with the value seen.
    pub async fn at_least(&self, target: u64) -> u64 {
        poll_fn(|cx| {
            let value = self.load();
            if value >= target {
                return Poll::Ready(value);
            }
            self.waker.register(cx.waker());
            // A post between the first check and the registration woke nobody: look again.
            let value = self.load();
            if value >= target {
                // Leave no waker behind: a registered waker keeps its task allocated.
                drop(self.waker.take());
                Poll::Ready(value)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Completes once the value differs from `seen`, with the new value.
    pub async fn changed_from(&self, seen: u64) -> u64 {
        poll_fn(|cx| {
            let value = self.load();
            if value != seen {
                return Poll::Ready(value);
            }
            self.waker.register(cx.waker());
            let value = self.load();
            if value != seen {
                drop(self.waker.take());
                Poll::Ready(value)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}
