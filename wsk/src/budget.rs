//! The driver-wide budget of what the library holds on the driver's behalf: indications
//! retained by event streams (WSK's memory, kept until the stream's items are dropped) and the
//! buffers of the event streams' copy paths (a connection stream's fallback receives).
//!
//! The budget is enforced with backpressure, never by failing work already accepted:
//!
//! * a receive callback that would retain more than the budget allows refuses the indication
//!   (`STATUS_DATA_NOT_ACCEPTED`): WSK keeps the data, and the stream takes it again once
//!   its own items were released (see `socket::events`). A socket that holds nothing
//!   retained takes its next indication whatever the budget: otherwise sockets whose peers
//!   never read (their streams blocked in a send, holding their share) could fill the
//!   budget and stall every other connection, and refusing would not give the memory back
//!   (WSK keeps refused data buffered). So what is retained stays within the limit plus one
//!   indication per socket that holds nothing else;
//! * a fallback receive waits until its buffer fits the budget: the stream is queued here and
//!   woken when budget is given back (`Budget::release`), then takes its buffer.
//!
//! The limit defaults to [`DEFAULT_LIMIT`]; a driver sets its own with [`set_limit`] (from
//! DriverEntry, before its first connection, or at any time: a lower limit applies to what is
//! charged next and takes back nothing).
//!
//! # Waiting without a lock
//!
//! A party that must wait embeds a `Waiter` and queues it (`Budget::wait`) on an
//! intrusive list of the budget's, pushed with a compare-exchange. `Budget::release` takes
//! the whole list at once (one swap: no node is ever unlinked from the middle, so there is no
//! ABA) and calls each node's wake routine, which clears its `queued` flag and wakes its
//! task. A waiter re-checks the budget after queueing itself, so a release between its
//! failed charge and its queueing is not missed (loom model
//! `loom_a_waiter_is_woken_or_charged`). The node's memory must stay valid while queued: the
//! embedding party keeps a reference for the list (an owner reference on the socket, dropped
//! by the wake routine). Nothing waits and nothing allocates: every step is usable at
//! DISPATCH_LEVEL.

use core::ptr::NonNull;

use crate::loom::{AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence};

/// The default limit: 16 MiB.
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// A node of the budget's wait list (see the module docs).
pub(crate) struct Waiter {
    next: AtomicPtr<Waiter>,
    /// 1 while on a list (from the queueing until the wake routine ran).
    queued: AtomicU32,
    /// Wakes the waiting party and drops the reference it kept for the list.
    wake: unsafe fn(NonNull<Waiter>),
}

impl Waiter {
    /// A node that is not queued, woken through `wake`.
    pub(crate) fn new(wake: unsafe fn(NonNull<Waiter>)) -> Self {
        Self { next: AtomicPtr::new(core::ptr::null_mut()), queued: AtomicU32::new(0), wake }
    }

    /// Whether the node is on a list now. Any IRQL.
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire) != 0
    }

    /// For the wake routine, before it wakes its party: the node may be queued again from now
    /// on. Any IRQL.
    pub(crate) fn dequeued(&self) {
        self.queued.store(0, Ordering::Release);
    }
}

/// A byte budget with a wait list (see the module docs).
pub struct Budget {
    limit: AtomicUsize,
    used: AtomicUsize,
    peak: AtomicUsize,
    waiters: AtomicPtr<Waiter>,
}

impl Budget {
    /// A budget of `limit` bytes, nothing charged. Any IRQL.
    #[cfg(not(loom))]
    pub const fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            waiters: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// A budget of `limit` bytes, nothing charged. Any IRQL.
    #[cfg(loom)]
    pub fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            waiters: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The limit in bytes. Any IRQL.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit in bytes. Any IRQL.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // A higher limit may let waiters through.
        self.wake_waiters();
    }

    /// Bytes charged now. Any IRQL.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes charged at once since load. Any IRQL.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Charges `bytes` if they fit the limit, or if nothing is charged at all (a charge larger
    /// than the whole limit must still go through once); `false` (nothing charged) otherwise.
    /// With `force`, charges them whatever the limit (the first list a socket retains, see
    /// the module docs) and returns `true`. Any IRQL; never waits.
    pub(crate) fn try_charge(&self, bytes: usize, force: bool) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let next = used.saturating_add(bytes);
            if !force && used != 0 && next > self.limit.load(Ordering::Relaxed) {
                return false;
            }
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => used = actual,
            }
        }
    }

    /// Gives back `bytes` charged earlier and wakes the waiters. Any IRQL <= DISPATCH_LEVEL.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        // A waiter writes the list, then reads `used` (its charge again); we wrote `used`,
        // now we read the list. Without a SeqCst fence on each side both could read the old
        // values and the waiter would be stranded (the loom model finds that interleaving).
        fence(Ordering::SeqCst);
        self.wake_waiters();
    }

    /// Queues `waiter` (unless it is queued already): its wake routine runs at the next
    /// release. The caller then tries its charge again (see the module docs).
    /// Any IRQL <= DISPATCH_LEVEL; never waits.
    ///
    /// # Safety
    /// `waiter` stays valid until its wake routine ran, and `keep` (run when the node is
    /// queued now) takes what keeps it valid, which the wake routine gives back.
    pub(crate) unsafe fn wait(&self, waiter: NonNull<Waiter>, keep: impl FnOnce()) {
        // SAFETY: valid while queued and now (caller).
        let node = unsafe { waiter.as_ref() };
        if node.queued.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return;
        }
        keep();
        let mut head = self.waiters.load(Ordering::Relaxed);
        loop {
            node.next.store(head, Ordering::Relaxed);
            // Release: the node's fields (and what `keep` stored) before the walker's use.
            match self.waiters.compare_exchange_weak(head, waiter.as_ptr(), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    // See `release`: our read of `used` (the caller's charge again) comes
                    // after this fence.
                    fence(Ordering::SeqCst);
                    return;
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes the whole wait list and runs each node's wake routine. Any IRQL <= DISPATCH_LEVEL.
    pub(crate) fn wake_waiters(&self) {
        if self.waiters.load(Ordering::Acquire).is_null() {
            return;
        }
        let mut node = NonNull::new(self.waiters.swap(core::ptr::null_mut(), Ordering::AcqRel));
        while let Some(waiter) = node {
            // SAFETY: queued nodes stay valid until their wake routine ran (`wait`'s
            // contract); the next pointer is read before it runs (the node may be queued
            // again from then on).
            let queued = unsafe { waiter.as_ref() };
            let (next, wake) = (queued.next.load(Ordering::Relaxed), queued.wake);
            // SAFETY: the node was taken off the list by the swap: its wake routine runs once
            // for this queueing.
            unsafe { wake(waiter) };
            node = NonNull::new(next);
        }
    }
}

#[cfg(not(loom))]
static GLOBAL: Budget = Budget::new(DEFAULT_LIMIT);

/// The driver-wide budget. Any IRQL.
#[cfg(not(loom))]
pub fn global() -> &'static Budget {
    &GLOBAL
}

/// The driver-wide budget (a fresh one per model run under loom).
#[cfg(loom)]
pub fn global() -> &'static Budget {
    extern crate std;
    std::boxed::Box::leak(std::boxed::Box::new(Budget::new(DEFAULT_LIMIT)))
}

/// Sets the driver-wide limit in bytes (see the module docs). Any IRQL.
pub fn set_limit(bytes: usize) {
    global().set_limit(bytes);
}

/// The driver-wide limit in bytes. Any IRQL.
pub fn limit() -> usize {
    global().limit()
}

/// Bytes charged to the driver-wide budget now. Any IRQL.
pub fn used() -> usize {
    global().used()
}

/// The most bytes charged to the driver-wide budget at once since load. Any IRQL.
pub fn peak() -> usize {
    global().peak()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize as Count;
    use core::sync::atomic::Ordering;

    #[test]
    fn charges_fit_the_limit_unless_forced() {
        let budget = Budget::new(100);
        assert!(budget.try_charge(60, false));
        assert!(!budget.try_charge(50, false), "over the limit");
        assert_eq!(budget.used(), 60, "a refused charge takes nothing");
        assert!(budget.try_charge(50, true), "forced");
        assert_eq!((budget.used(), budget.peak()), (110, 110));
        budget.release(110);
        assert_eq!((budget.used(), budget.peak()), (0, 110));
        budget.set_limit(10);
        assert!(budget.try_charge(11, false), "larger than the limit, with nothing charged");
        assert!(!budget.try_charge(1, false));
        budget.release(11);
        assert_eq!(budget.limit(), 10);
    }

    static WOKEN: Count = Count::new(0);

    unsafe fn wake(waiter: NonNull<Waiter>) {
        // SAFETY: the test's nodes live on its stack until after the wakes.
        unsafe { waiter.as_ref() }.dequeued();
        WOKEN.fetch_add(1, Ordering::Relaxed);
    }

    /// Every queued node is woken once by the next release; a node queued twice is woken
    /// once; a node can queue again after its wake.
    #[test]
    fn a_release_wakes_each_waiter_once() {
        let budget = Budget::new(10);
        let (a, b) = (Waiter::new(wake), Waiter::new(wake));
        let mut kept = 0;
        // SAFETY: the nodes outlive the wakes below.
        unsafe {
            budget.wait(NonNull::from(&a), || kept += 1);
        }
        // SAFETY: as above.
        unsafe {
            budget.wait(NonNull::from(&a), || kept += 1);
        }
        // SAFETY: as above.
        unsafe {
            budget.wait(NonNull::from(&b), || kept += 1);
        }
        assert_eq!(kept, 2, "a queued node is not queued (or kept) twice");
        assert!(a.is_queued() && b.is_queued());
        budget.release(0);
        assert_eq!(WOKEN.load(Ordering::Relaxed), 0, "releasing nothing wakes nobody");
        assert!(budget.try_charge(5, false));
        budget.release(5);
        assert_eq!(WOKEN.load(Ordering::Relaxed), 2);
        assert!(!a.is_queued() && !b.is_queued());
        // SAFETY: as above.
        unsafe {
            budget.wait(NonNull::from(&a), || kept += 1);
        }
        budget.set_limit(20);
        assert_eq!(WOKEN.load(Ordering::Relaxed), 3, "a raised limit wakes waiters");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    /// The waiter of the model below: a node and a flag its wake routine sets.
    #[repr(C)]
    struct Party {
        node: Waiter,
        woken: AtomicBool,
    }

    unsafe fn wake(waiter: NonNull<Waiter>) {
        // SAFETY: the node is the first field of a `Party` that outlives the model's threads.
        let party = unsafe { waiter.cast::<Party>().as_ref() };
        party.node.dequeued();
        party.woken.store(true, Ordering::SeqCst);
    }

    /// A party holding the whole budget releases it while another fails to charge and
    /// queues itself: the waiter ends either charged (its re-check after queueing saw the
    /// release) or woken (the release found it queued): never stranded.
    #[test]
    fn loom_a_waiter_is_woken_or_charged() {
        loom::model(|| {
            let budget = Arc::new(Budget::new(10));
            assert!(budget.try_charge(10, false));
            let party = Arc::new(Party { node: Waiter::new(wake), woken: AtomicBool::new(false) });
            let releaser = {
                let budget = budget.clone();
                loom::thread::spawn(move || budget.release(10))
            };
            let charged = budget.try_charge(5, false) || {
                // SAFETY: `party` outlives the threads (joined below before it is dropped).
                unsafe { budget.wait(NonNull::from(&party.node), || {}) };
                budget.try_charge(5, false)
            };
            releaser.join().unwrap();
            assert!(charged || party.woken.load(Ordering::SeqCst), "the waiter was stranded");
        });
    }
}
