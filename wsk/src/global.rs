//! A slot for the state a driver keeps between DriverEntry and DriverUnload.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::pool::PoolBox;

/// Holds one pool-allocated `T` in a `static`: DriverEntry stores it, DriverUnload takes it
/// back and drops it. Callable at IRQL <= DISPATCH_LEVEL (dropping `T` has its own contract).
///
/// ```ignore
/// static STATE: DriverGlobal<MyState> = DriverGlobal::new();
/// // DriverEntry:  let _ = STATE.set(PoolBox::try_new(state)?);
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

    /// Stores `value`: `true` if the slot was empty. A value already there came from an
    /// earlier DriverEntry whose DriverUnload never ran: Windows never starts a driver image
    /// again without unloading it, but a host test process loads a driver again after a load
    /// that crashed (bugchecked). That value is leaked, not dropped, and `false` returned:
    /// dropping it could wait for work of the crashed load that never runs (an executor's
    /// drop waits for its tasks), and hang the new load's DriverEntry.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    #[must_use = "`false` means a value of an earlier load was leaked: worth a log line"]
    pub fn set(&self, value: PoolBox<T>) -> bool {
        self.ptr.swap(PoolBox::into_raw(value).as_ptr(), Ordering::AcqRel).is_null()
    }

    /// Whether a value is stored. Any IRQL.
    pub fn is_set(&self) -> bool {
        !self.ptr.load(Ordering::Acquire).is_null()
    }

    /// For the top of DriverEntry: fails if a value is stored, which means an earlier load
    /// whose DriverUnload never ran (it crashed: see [`set`](Self::set)). The library's
    /// state from that load (its sockets, caches and budget) is stale: DriverEntry fails
    /// before using the library rather than run on it (or hang in it).
    ///
    /// Any IRQL.
    pub fn ensure_empty(&self) -> crate::Result<()> {
        if self.is_set() {
            return Err(crate::Error::InvalidInput("an earlier load never unloaded (it crashed): its state is stale"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use core::sync::atomic::AtomicUsize;

    use super::*;

    struct Counted(&'static AtomicUsize);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A value left by an earlier load (its DriverUnload never ran) is neither dropped nor
    /// handed back when a new one is stored: its drop could hang the new DriverEntry.
    #[test]
    fn a_value_of_an_earlier_load_is_leaked_not_dropped() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        static SLOT: DriverGlobal<Counted> = DriverGlobal::new();
        assert!(!SLOT.is_set());
        assert!(SLOT.set(PoolBox::try_new(Counted(&DROPS)).ok().unwrap()), "an empty slot");
        assert!(SLOT.is_set());
        assert!(SLOT.ensure_empty().is_err(), "DriverEntry would fail");
        let earlier = SLOT.ptr.load(Ordering::Acquire);
        assert!(!SLOT.set(PoolBox::try_new(Counted(&DROPS)).ok().unwrap()), "the slot held one");
        assert_eq!(DROPS.load(Ordering::SeqCst), 0, "the earlier value was dropped");
        drop(SLOT.take());
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the stored value is dropped when taken");
        // The test frees what a crashed load would leak (Miri checks for leaks).
        // SAFETY: from `PoolBox::into_raw` in `set`, no longer in the slot or anywhere else.
        drop(unsafe { PoolBox::from_raw(NonNull::new(earlier).unwrap()) });
    }
}
