//! The timer allocation shared by a [`Sleep`](super::Sleep) and its armed backend timer.
//!
//! ```text
//!   start():  refs = 2 (future + armed timer), register waker, arm
//!
//!   expiry (DPC, DISPATCH_LEVEL, any CPU):  set FIRED, wake, drop the armed reference
//!   future dropped:  timer_cancel() == true  -> the callback will not run: drop the armed
//!                                               reference for it
//!                    timer_cancel() == false -> the callback ran or will run and drops it
//!                    then drop the future's reference
//!   last reference:  timer_drop, free (at PASSIVE in the work item or in the DPC)
//! ```
//!
//! So the memory the backend timer and its DPC use lives until the DPC can no longer run,
//! and nobody blocks waiting for it.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::task::Waker;
use core::time::Duration;

use crate::atomic_waker::AtomicWaker;
use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};
use crate::platform::Platform;

const FIRED: usize = 1;
const REF_ONE: usize = 2;

/// The allocation.
#[repr(C)]
struct TimerCell<P: Platform> {
    /// FIRED and the reference count (at most 2).
    state: AtomicUsize,
    waker: AtomicWaker,
    raw: MaybeUninit<P::Timer>,
}

/// The future's reference to an armed timer.
pub(crate) struct TimerRef<P: Platform> {
    cell: NonNull<TimerCell<P>>,
}

// SAFETY: the cell is shared through atomics and the backend's thread-safe timer.
unsafe impl<P: Platform> Send for TimerRef<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for TimerRef<P> {}

impl<P: Platform> TimerCell<P> {
    const LAYOUT: Layout = Layout::new::<Self>();

    fn raw(cell: NonNull<Self>) -> *mut P::Timer {
        // SAFETY: in bounds of the live allocation; no reference is created.
        unsafe { ptr::addr_of_mut!((*cell.as_ptr()).raw) }.cast()
    }

    /// Drops a reference; the last one frees the cell. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// The caller gives up a reference and does not touch the cell afterwards.
    unsafe fn release(cell: NonNull<Self>) {
        // SAFETY: our reference keeps it alive.
        let prev = unsafe { cell.as_ref() }.state.fetch_sub(REF_ONE, AcqRel);
        debug_assert!(prev >= REF_ONE);
        if prev & !FIRED != REF_ONE {
            return;
        }
        // SAFETY: last reference: the timer is disarmed (cancelled, or fired and this is its
        // callback's last action).
        unsafe { P::timer_drop(Self::raw(cell)) };
        // SAFETY: initialized in `start`; drops a waker still registered, if any.
        unsafe { ptr::drop_in_place(cell.as_ptr()) };
        // SAFETY: allocated with this layout.
        unsafe { P::dealloc(cell.cast(), Self::LAYOUT) };
    }
}

/// The backend timer's callback: runs once, at IRQL <= DISPATCH_LEVEL, with the armed
/// reference.
///
/// # Safety
///
/// `context` is the cell armed in [`TimerRef::start`], called once per arming.
unsafe fn fire<P: Platform>(context: NonNull<()>) {
    let cell = context.cast::<TimerCell<P>>();
    // SAFETY: the armed reference keeps the cell alive.
    let c = unsafe { cell.as_ref() };
    c.state.fetch_or(FIRED, AcqRel);
    c.waker.wake();
    // SAFETY: the armed reference, given up; nothing is touched afterwards.
    unsafe { TimerCell::release(cell) };
}

impl<P: Platform> TimerRef<P> {
    /// Allocates and arms a timer that wakes `waker` after `after`. `None` when memory is
    /// short. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn start(after: Duration, waker: &Waker) -> Option<Self> {
        let cell = P::alloc(TimerCell::<P>::LAYOUT)?.cast::<TimerCell<P>>();
        let value = TimerCell::<P> {
            state: AtomicUsize::new(2 * REF_ONE),
            waker: AtomicWaker::new(),
            raw: MaybeUninit::uninit(),
        };
        // SAFETY: fresh memory of this layout.
        unsafe { cell.as_ptr().write(value) };
        // SAFETY: initialized just above.
        unsafe { cell.as_ref() }.waker.register(waker);
        // SAFETY: the raw timer stays at this address until `release` drops it; `fire` may
        // run from the expiry with the armed reference.
        unsafe { P::timer_init(TimerCell::raw(cell), fire::<P>, cell.cast()) };
        // SAFETY: initialized, not armed.
        unsafe { P::timer_arm(TimerCell::raw(cell), after) };
        Some(Self { cell })
    }

    fn cell(&self) -> &TimerCell<P> {
        // SAFETY: the future's reference keeps the cell alive.
        unsafe { self.cell.as_ref() }
    }

    /// Whether the timer expired. Any IRQL.
    pub(crate) fn is_fired(&self) -> bool {
        self.cell().state.load(Acquire) & FIRED != 0
    }

    /// Makes `waker` the one the expiry wakes. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn register(&self, waker: &Waker) {
        self.cell().waker.register(waker);
    }
}

impl<P: Platform> Drop for TimerRef<P> {
    /// IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: the future's reference keeps the cell alive; initialized in `start`.
        if unsafe { P::timer_cancel(TimerCell::raw(self.cell)) } {
            // The callback will not run: release its reference for it.
            // SAFETY: the armed reference, which the callback can no longer use.
            unsafe { TimerCell::release(self.cell) };
        }
        // SAFETY: the future's reference, given up.
        unsafe { TimerCell::release(self.cell) };
    }
}

#[cfg(test)]
impl<P: Platform> TimerRef<P> {
    /// The backend timer, for tests that fire it by hand.
    pub(crate) fn raw_timer(&self) -> *const P::Timer {
        TimerCell::raw(self.cell)
    }
}
