//! A slot for the state a driver keeps between DriverEntry and DriverUnload.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::pool::PoolBox;

/// Holds one pool-allocated `T` in a `static`: DriverEntry stores it, DriverUnload takes it
/// back and drops it. Callable at IRQL <= DISPATCH_LEVEL (dropping `T` has its own contract).
///
/// ```ignore
/// static STATE: DriverGlobal<MyState> = DriverGlobal::new();
/// // DriverEntry:  STATE.set(PoolBox::try_new(state)?);
/// // DriverUnload: drop(STATE.take());
/// ```
pub struct DriverGlobal<T> {
    ptr: AtomicPtr<T>,
}

// SAFETY: the slot hands its `T` from one thread to another (DriverEntry -> DriverUnload).
unsafe impl<T: Send> Sync for DriverGlobal<T> {}

impl<T> DriverGlobal<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Self { ptr: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Stores `value`; a value already there is returned to the caller.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn set(&self, value: PoolBox<T>) -> Option<PoolBox<T>> {
        let old = self.ptr.swap(PoolBox::into_raw(value).as_ptr(), Ordering::AcqRel);
        // SAFETY: every non-null pointer in the slot came from `PoolBox::into_raw` and is
        // taken out exactly once (by this swap).
        NonNull::new(old).map(|p| unsafe { PoolBox::from_raw(p) })
    }

    /// Takes the value out, leaving the slot empty.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn take(&self) -> Option<PoolBox<T>> {
        let old = self.ptr.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `set`.
        NonNull::new(old).map(|p| unsafe { PoolBox::from_raw(p) })
    }
}

impl<T> Default for DriverGlobal<T> {
    fn default() -> Self {
        Self::new()
    }
}
