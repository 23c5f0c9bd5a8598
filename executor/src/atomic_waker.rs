//! `AtomicWaker`: one waker slot shared by a future and whoever completes its operation.
//!
//! The future registers its waker from the thread that polls it; a completion routine, DPC
//! or other task wakes it from any IRQL <= DISPATCH_LEVEL on any processor. Both sides are a
//! few atomic operations: no lock, no allocation, no blocking.
//!
//! ```text
//!   state: WAITING (0) ──register──► REGISTERING ──done──► WAITING
//!             │                          │ wake meanwhile: REGISTERING|WAKING,
//!             │                          └─► the registering side wakes the new waker
//!             └──wake──► WAKING (take the waker, clear) ──► WAITING
//! ```

use core::fmt;
use core::task::Waker;

use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Release, UnsafeCell};

const WAITING: usize = 0;
const REGISTERING: usize = 1;
const WAKING: usize = 2;

/// A waker slot that can be registered and woken concurrently.
///
/// Registration is meant for one task at a time (the one awaiting the operation); concurrent
/// `register` calls are tolerated but one of them may be ignored.
pub struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the slot is accessed only by whoever moved `state` out of WAITING (see the
// diagram), so accesses never overlap; `Waker` is `Send + Sync`.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    /// An empty slot. Any IRQL.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { state: AtomicUsize::new(WAITING), waker: UnsafeCell::new(None) }
    }

    /// An empty slot. Any IRQL.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { state: AtomicUsize::new(WAITING), waker: UnsafeCell::new(None) }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake). If a wake happens while
    /// registering, `waker` is woken at once. IRQL <= DISPATCH_LEVEL.
    pub fn register(&self, waker: &Waker) {
        match self.state.compare_exchange(WAITING, REGISTERING, Acquire, Acquire) {
            Ok(_) => {
                // The old waker, if replaced, is dropped after the slot is released.
                let old = self.waker.with_mut(|slot| {
                    // SAFETY: REGISTERING gives exclusive access to the slot.
                    let slot = unsafe { &mut *slot };
                    match slot {
                        Some(w) if w.will_wake(waker) => None,
                        _ => slot.replace(waker.clone()),
                    }
                });
                if self.state.compare_exchange(REGISTERING, WAITING, AcqRel, Acquire).is_err() {
                    // A wake arrived while we held the slot and left the waking to us.
                    // SAFETY: still REGISTERING (with WAKING): the slot is ours.
                    let woken = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                    self.state.swap(WAITING, AcqRel);
                    if let Some(w) = woken {
                        w.wake();
                    }
                }
                drop(old);
            }
            Err(WAKING) => {
                // A wake is taking the previous waker right now: wake this one directly.
                waker.wake_by_ref();
            }
            Err(_) => {
                // Another register is in progress (misuse); it wins.
            }
        }
    }

    /// Takes the registered waker and wakes it. Any processor, IRQL <= DISPATCH_LEVEL.
    pub fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    /// Takes the registered waker, if any, without waking it. IRQL <= DISPATCH_LEVEL.
    pub fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, AcqRel) {
            WAITING => {
                // SAFETY: we moved the state from WAITING to WAKING: the slot is ours.
                let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                self.state.fetch_and(!WAKING, Release);
                w
            }
            // REGISTERING: the registering side sees WAKING and wakes. WAKING: another wake
            // is taking the waker.
            _ => None,
        }
    }
}

impl Default for AtomicWaker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicWaker").finish_non_exhaustive()
    }
}
