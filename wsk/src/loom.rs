//! Atomics and cells, from `loom` under `--cfg loom` and from `core` otherwise, so the
//! operation and close state machines and the event rings run unchanged under the loom model
//! checker.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// An `UnsafeCell` whose accesses loom tracks: two unsynchronized accesses of which one
/// writes fail the model (`loom::cell::UnsafeCell`); `core::cell::UnsafeCell` otherwise.
pub(crate) struct RaceCell<T> {
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))]
    inner: core::cell::UnsafeCell<T>,
}

impl<T> RaceCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(loom)]
            inner: loom::cell::UnsafeCell::new(value),
            #[cfg(not(loom))]
            inner: core::cell::UnsafeCell::new(value),
        }
    }

    /// Runs `f` with a pointer to read the contents through (a shared access).
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.inner.with(f);
        #[cfg(not(loom))]
        return f(self.inner.get());
    }

    /// Runs `f` with a pointer to write the contents through (an exclusive access).
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.inner.with_mut(f);
        #[cfg(not(loom))]
        return f(self.inner.get());
    }
}
