//! A bounded ring with one producer and one consumer at a time: how event callbacks (at
//! DISPATCH_LEVEL) hand retained indications to the task that consumes them, and how that
//! task hands pre-allocated sockets back to the accept callback. No allocation, no lock.
//!
//! `head` is advanced only by the consumer, `tail` only by the producer. A slot between
//! `head` and `tail` belongs to the consumer; any other slot to the producer. The producer
//! publishes a slot by storing `tail` with release ordering after writing it; the consumer
//! gives a slot back by storing `head` with release ordering after reading it.
//!
//! A side used by several parties that may run at once (event callbacks: Microsoft documents
//! no serialization of one socket's receive or accept callbacks) takes that side's *claim*
//! first ([`Ring::try_produce`], [`Ring::try_consume`]): a try-lock taken with one
//! compare-exchange, never waited for. A party that finds it taken does not touch the ring
//! (a callback refuses its indication). Releasing the claim (release ordering) and taking it
//! (acquire) orders one claimant's ring accesses before the next one's, so the side behaves
//! as one producer (consumer) over time. A side with one party only (the stream) uses the
//! unsafe [`Ring::push`] / [`Ring::pop`] and promises that no claimant uses that side.

use core::mem::MaybeUninit;

use crate::loom::{AtomicU32, AtomicUsize, Ordering, RaceCell};

/// A ring of `N` slots (`N` a power of two).
pub(crate) struct Ring<T, const N: usize> {
    head: AtomicUsize,
    tail: AtomicUsize,
    /// The producer claim: [`FREE`] or [`TAKEN`].
    producing: AtomicU32,
    /// The consumer claim: [`FREE`] or [`TAKEN`].
    consuming: AtomicU32,
    slots: [RaceCell<MaybeUninit<T>>; N],
}

/// A claim nobody holds.
const FREE: u32 = 0;
/// A claim held by a [`Producer`] or [`Consumer`].
const TAKEN: u32 = 1;

/// Takes `claim` if it is free (one compare-exchange; never waits).
fn try_take(claim: &AtomicU32) -> bool {
    claim.compare_exchange(FREE, TAKEN, Ordering::Acquire, Ordering::Relaxed).is_ok()
}

// SAFETY: slots are handed between the producer and the consumer of the moment through the
// release/acquire pair on `tail` / `head`, and between successive claimants of a side through
// the release/acquire pair on its claim (module docs); `T` crosses threads, so it must be
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
            producing: AtomicU32::new(FREE),
            consuming: AtomicU32::new(FREE),
            slots: core::array::from_fn(|_| RaceCell::new(MaybeUninit::uninit())),
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

    /// The producer side, if no other claimant holds it now. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_produce(&self) -> Option<Producer<'_, T, N>> {
        // A guard is built only when the claim was taken: dropping one releases the claim,
        // so one built for a refused attempt would release the holder's.
        try_take(&self.producing).then(|| Producer { ring: self })
    }

    /// The consumer side, if no other claimant holds it now. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_consume(&self) -> Option<Consumer<'_, T, N>> {
        // As in `try_produce`.
        try_take(&self.consuming).then(|| Consumer { ring: self })
    }

    /// Appends `value`, or hands it back when the ring is full.
    ///
    /// # Safety
    /// Only one thread at a time acts as the producer (a [`Producer`] counts as one).
    pub(crate) unsafe fn push(&self, value: T) -> Result<(), T> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= N {
            return Err(value);
        }
        // SAFETY: the slot at `tail` is outside [head, tail): it belongs to the producer (us,
        // by the caller's contract); the consumer released it with its store of `head`.
        self.slots[tail & Self::MASK].with_mut(|slot| unsafe { (*slot).write(value) });
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Takes the oldest value.
    ///
    /// # Safety
    /// Only one thread at a time acts as the consumer (a [`Consumer`] counts as one).
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        // SAFETY: the slot at `head` is in [head, tail): published (initialized) by the
        // producer (acquire on `tail`), owned by the consumer (us); it is read exactly once
        // and then given back (`MaybeUninit<T>` has `T`'s layout).
        let value = self.slots[head & Self::MASK].with(|slot| unsafe { slot.cast::<T>().read() });
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(value)
    }
}

/// The producer claim of a ring, held: pushes are safe. Dropping it releases the claim.
pub(crate) struct Producer<'a, T, const N: usize> {
    ring: &'a Ring<T, N>,
}

impl<T, const N: usize> Producer<'_, T, N> {
    /// Whether a push would succeed now (stays true until this producer pushes).
    pub(crate) fn has_room(&self) -> bool {
        self.ring.has_room()
    }

    /// Appends `value`, or hands it back when the ring is full.
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        // SAFETY: the claim makes us the only producer: every other pusher takes it first
        // (claimants) or is excluded by its own contract (`Ring::push` callers).
        unsafe { self.ring.push(value) }
    }
}

impl<T, const N: usize> Drop for Producer<'_, T, N> {
    fn drop(&mut self) {
        self.ring.producing.store(FREE, Ordering::Release);
    }
}

/// The consumer claim of a ring, held: pops are safe. Dropping it releases the claim.
pub(crate) struct Consumer<'a, T, const N: usize> {
    ring: &'a Ring<T, N>,
}

impl<T, const N: usize> Consumer<'_, T, N> {
    /// Takes the oldest value.
    pub(crate) fn pop(&self) -> Option<T> {
        // SAFETY: the claim makes us the only consumer (as for `Producer::push`).
        unsafe { self.ring.pop() }
    }
}

impl<T, const N: usize> Drop for Consumer<'_, T, N> {
    fn drop(&mut self) {
        self.ring.consuming.store(FREE, Ordering::Release);
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

    #[test]
    fn a_claim_is_exclusive_until_dropped() {
        let ring: Ring<u32, 4> = Ring::new();
        let producer = ring.try_produce().expect("free at first");
        assert!(ring.try_produce().is_none(), "a second producer while the first holds the claim");
        assert!(ring.try_produce().is_none(), "a refused claimant must leave the holder's claim alone");
        // The sides are claimed independently.
        let consumer = ring.try_consume().expect("consumer side free");
        assert!(ring.try_consume().is_none());
        assert!(ring.try_consume().is_none(), "a refused claimant must leave the holder's claim alone");
        assert_eq!(producer.push(7), Ok(()));
        assert_eq!(consumer.pop(), Some(7));
        drop(producer);
        drop(consumer);
        let producer = ring.try_produce().expect("free again after the drop");
        assert_eq!(producer.push(8), Ok(()));
        assert!(ring.try_consume().expect("free again").pop() == Some(8));
    }

    #[test]
    fn values_left_in_the_ring_are_dropped_with_it() {
        extern crate std;
        use std::rc::Rc;
        let value = Rc::new(());
        {
            let ring: Ring<Rc<()>, 4> = Ring::new();
            let producer = ring.try_produce().unwrap();
            for _ in 0..3 {
                assert!(producer.push(value.clone()).is_ok());
            }
            drop(ring.try_consume().unwrap().pop());
            assert_eq!(Rc::strong_count(&value), 3);
            drop(producer);
        }
        assert_eq!(Rc::strong_count(&value), 1, "the ring's drop must drop what it still holds");
    }

    /// Two claiming producers on threads and a consumer: every value arrives exactly once, each
    /// producer's in its order. Under Miri, its race detector also checks the slot accesses.
    #[test]
    fn claimed_producers_on_threads_lose_nothing() {
        extern crate std;
        use std::sync::Arc;
        use std::vec::Vec;
        const PER_PRODUCER: usize = 40;
        let ring: Arc<Ring<usize, 4>> = Arc::new(Ring::new());
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    let mut v = 0;
                    while v < PER_PRODUCER {
                        if let Some(producer) = ring.try_produce()
                            && producer.push(p * 1000 + v).is_ok()
                        {
                            v += 1;
                        }
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        let mut next = [0usize; 2];
        while next != [PER_PRODUCER; 2] {
            // SAFETY: this thread is the only consumer.
            match unsafe { ring.pop() } {
                Some(v) => {
                    let (p, i) = (v / 1000, v % 1000);
                    assert_eq!(i, next[p], "producer {p}'s values out of order or duplicated");
                    next[p] += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        // SAFETY: as above.
        assert_eq!(unsafe { ring.pop() }, None);
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

    /// Two producers that each claim the producer side before pushing, racing one consumer:
    /// a producer that finds the claim taken or the ring full keeps its value; every value
    /// pushed arrives exactly once; no slot is written while another party uses it (loom
    /// checks the slot cells). Without the claim, both producers can write the same slot and
    /// one value is lost (this model then fails).
    #[test]
    fn loom_two_claimed_producers_one_consumer() {
        loom::model(|| {
            let ring: Arc<Ring<usize, 2>> = Arc::new(Ring::new());
            let spawn_producer = |value: usize| {
                let ring = ring.clone();
                // A refused producer tries once more: a refusal must not have freed the claim
                // of the producer holding it.
                loom::thread::spawn(move || {
                    (0..2)
                        .find_map(|_| ring.try_produce().map(|producer| producer.push(value).is_ok()))
                        .unwrap_or(false)
                })
            };
            let a = spawn_producer(1);
            let b = spawn_producer(2);
            // SAFETY: this thread is the only consumer.
            let early = unsafe { ring.pop() };
            let pushed = [a.join().unwrap(), b.join().unwrap()];
            let mut seen = [false; 3];
            // SAFETY: as above.
            for v in early.into_iter().chain(core::iter::from_fn(|| unsafe { ring.pop() })) {
                assert!(!seen[v], "value {v} delivered twice");
                seen[v] = true;
            }
            assert_eq!([seen[1], seen[2]], pushed, "a pushed value was lost (or a refused one appeared)");
        });
    }
}
