//! A bounded single-producer single-consumer ring: how an event callback (producer, at
//! DISPATCH_LEVEL) hands retained indications to the task that consumes them, and how that
//! task hands pre-allocated sockets back to the accept callback. No allocation, no lock.
//!
//! `head` is advanced only by the consumer, `tail` only by the producer. A slot between
//! `head` and `tail` belongs to the consumer; any other slot to the producer. The producer
//! publishes a slot by storing `tail` with release ordering after writing it; the consumer
//! gives a slot back by storing `head` with release ordering after reading it.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use crate::loom::{AtomicUsize, Ordering};

/// A ring of `N` slots (`N` a power of two).
pub(crate) struct Ring<T, const N: usize> {
    head: AtomicUsize,
    tail: AtomicUsize,
    slots: [UnsafeCell<MaybeUninit<T>>; N],
}

// SAFETY: slots are handed between the one producer and the one consumer through the
// release/acquire pair on `tail` / `head` (module docs); `T` crosses threads, so it must be
// `Send`.
unsafe impl<T: Send, const N: usize> Sync for Ring<T, N> {}
// SAFETY: as above.
unsafe impl<T: Send, const N: usize> Send for Ring<T, N> {}

impl<T, const N: usize> Ring<T, N> {
    const MASK: usize = {
        assert!(N.is_power_of_two(), "ring size must be a power of two");
        N - 1
    };

    pub(crate) fn new() -> Self {
        Self {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            slots: [const { UnsafeCell::new(MaybeUninit::uninit()) }; N],
        }
    }

    /// Values in the ring now (exact for the producer and the consumer themselves).
    pub(crate) fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        tail.wrapping_sub(head)
    }

    /// Whether a push would succeed now (producer side).
    pub(crate) fn has_room(&self) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        tail.wrapping_sub(head) < N
    }

    /// Appends `value`, or hands it back when the ring is full.
    ///
    /// # Safety
    /// Only one thread at a time acts as the producer.
    pub(crate) unsafe fn push(&self, value: T) -> Result<(), T> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= N {
            return Err(value);
        }
        // SAFETY: the slot at `tail` is outside [head, tail): it belongs to the producer (us,
        // by the caller's contract); the consumer released it with its store of `head`.
        unsafe { (*self.slots[tail & Self::MASK].get()).write(value) };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Takes the oldest value.
    ///
    /// # Safety
    /// Only one thread at a time acts as the consumer.
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        // SAFETY: the slot at `head` is in [head, tail): published by the producer (acquire
        // on `tail`), owned by the consumer (us); it is read once and then given back.
        let slot = unsafe { &*self.slots[head & Self::MASK].get() };
        // SAFETY: as above: initialized by the producer, read exactly once.
        let value = unsafe { slot.assume_init_read() };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(value)
    }
}

impl<T, const N: usize> Drop for Ring<T, N> {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left; drop what was never taken.
        // SAFETY: exclusive access makes us both producer and consumer.
        while unsafe { self.pop() }.is_some() {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fills_wraps_and_empties_in_order() {
        let ring: Ring<u32, 4> = Ring::new();
        for round in 0..3u32 {
            for i in 0..4 {
                // SAFETY: single-threaded test: producer and consumer in turn.
                assert!(unsafe { ring.push(round * 10 + i) }.is_ok());
            }
            assert!(!ring.has_room());
            // SAFETY: as above.
            assert_eq!(unsafe { ring.push(99) }, Err(99));
            for i in 0..4 {
                // SAFETY: as above.
                assert_eq!(unsafe { ring.pop() }, Some(round * 10 + i));
            }
            // SAFETY: as above.
            assert_eq!(unsafe { ring.pop() }, None);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A producer racing the consumer: every value arrives once, in order, none is lost when
    /// the ring is full (the producer gets it back).
    #[test]
    fn loom_spsc_in_order_no_loss() {
        loom::model(|| {
            let ring: Arc<Ring<usize, 2>> = Arc::new(Ring::new());
            let producer_ring = ring.clone();
            let producer = loom::thread::spawn(move || {
                let mut refused = 0;
                for v in 0..3 {
                    // SAFETY: this thread is the only producer.
                    if unsafe { producer_ring.push(v) }.is_err() {
                        refused += 1;
                    }
                }
                refused
            });
            let mut seen = [usize::MAX; 3];
            let mut count = 0;
            for _ in 0..3 {
                // SAFETY: this thread is the only consumer.
                if let Some(v) = unsafe { ring.pop() } {
                    seen[count] = v;
                    count += 1;
                }
            }
            let refused = producer.join().unwrap();
            // SAFETY: the producer has finished; we are the only consumer.
            while let Some(v) = unsafe { ring.pop() } {
                seen[count] = v;
                count += 1;
            }
            assert!(seen[..count].windows(2).all(|w| w[0] < w[1]), "out of order: {seen:?}");
            assert_eq!(count + refused, 3);
        });
    }
}
