//! The driver's live socket cores, and [`abort_all_sockets`], which makes every open socket of
//! the driver end (the last step of the unload protocol before `WskDeregister`).
//!
//! # The list
//!
//! Every core is linked into one intrusive, doubly linked list from its allocation
//! (`SocketCore::new`) until it is freed. The list is guarded by an executive spin lock
//! (`KeAcquireSpinLockRaiseToDpc`): cores are created and freed at any IRQL <= DISPATCH_LEVEL
//! (a close completion frees its core), so a lock taken at PASSIVE_LEVEL must raise the IRQL,
//! or a DPC spinning on it on the same processor would never let the holder finish. The lock
//! is held only to link, unlink or step to the next core; nothing else is done under it.
//!
//! A walker holds a reference on the core it stands on: a referenced core is not freed, so it
//! stays linked and its `next` link stays valid the next time the lock is taken. A core whose
//! reference count is already zero is being freed and is skipped (its references are never
//! raised from zero).
//!
//! # Aborting
//!
//! [`abort_all_sockets`] walks the list and, for every core that was created and is not
//! closing yet, begins a close as a dropped last owner would (`BACKGROUND`, see
//! `socket::shared`): no new call into the socket is accepted (the owner's later calls fail
//! with [`Error::Closed`](crate::Error::Closed)), an installed event stream is told to wind
//! down, and `WskCloseSocket` is issued by this walker if no call is in progress, otherwise by
//! the last call to leave. The close contract holds: the close is claimed through the same
//! rundown word as every other closer, so it is issued exactly once and never with a call in
//! progress.
//!
//! What the documentation of `WskCloseSocket` promises and this relies on: the close cancels
//! the socket's pending IRPs (their operations resolve `Err(Cancelled)`, which releases the
//! wakers of their tasks), completes only after in-flight event callbacks returned, and aborts
//! a connection that was not disconnected in both directions. What it does not promise: a
//! bound on how long the close takes. The caller waits with a limit
//! ([`wait_for_sockets_closed`](crate::wait_for_sockets_closed)); a provider that never
//! completes a close keeps that socket counted open.

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

use wsk_sys::{KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock};

/// The links of one core in the list.
///
/// # Invariants
/// Read and written only with the list's lock held.
pub(crate) struct Links<T> {
    prev: UnsafeCell<*mut T>,
    next: UnsafeCell<*mut T>,
}

impl<T> Links<T> {
    /// Not linked.
    pub(crate) const fn new() -> Self {
        Self { prev: UnsafeCell::new(ptr::null_mut()), next: UnsafeCell::new(ptr::null_mut()) }
    }
}

/// What an element of a [`Registry`] gives it.
///
/// # Safety
/// `links` returns the same `Links` of the element every time, inside the element's memory.
pub(crate) unsafe trait Linked: Sized {
    /// The element's links.
    fn links(&self) -> &Links<Self>;
}

/// An intrusive list of live elements under a raising spin lock. A `static` (the host's
/// memory, not loom's: a static is never part of a loom model).
pub(crate) struct Registry<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    head: UnsafeCell<*mut T>,
}

// SAFETY: every access to `head` and to the links of elements goes through the spin lock.
unsafe impl<T> Sync for Registry<T> {}

/// The lock, held; released (and the IRQL restored) on drop.
struct Held<'a, T> {
    registry: &'a Registry<T>,
    previous: wsk_sys::KIRQL,
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // SAFETY: we hold the lock (taken in `Registry::lock`), and restore the IRQL it saved.
        unsafe { KeReleaseSpinLock(self.registry.lock.get(), self.previous) };
    }
}

impl<T: Linked> Registry<T> {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        Self { lock: UnsafeCell::new(0), head: UnsafeCell::new(ptr::null_mut()) }
    }

    /// Takes the lock. IRQL <= DISPATCH_LEVEL.
    fn lock(&self) -> Held<'_, T> {
        // SAFETY: a zero-initialized spin lock in static (nonpaged) memory; IRQL <=
        // DISPATCH_LEVEL (every caller's contract).
        let previous = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        Held { registry: self, previous }
    }

    /// Links `element` at the head. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `element` is live, not linked, and stays at its address until [`unlink`](Self::unlink).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one splice of the list under its lock: every access shares the lock's invariant"
    )]
    pub(crate) unsafe fn link(&self, element: NonNull<T>) {
        let _held = self.lock();
        // SAFETY: the lock is held (the links' and head's invariant); `element` is live
        // (caller) and the head, if any, is a linked (so live) element.
        unsafe {
            let links = element.as_ref().links();
            let head = *self.head.get();
            *links.prev.get() = ptr::null_mut();
            *links.next.get() = head;
            if let Some(head) = NonNull::new(head) {
                *head.as_ref().links().prev.get() = element.as_ptr();
            }
            *self.head.get() = element.as_ptr();
        }
    }

    /// Unlinks `element`. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `element` is live and linked in this registry.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one splice of the list under its lock: every access shares the lock's invariant"
    )]
    pub(crate) unsafe fn unlink(&self, element: NonNull<T>) {
        let _held = self.lock();
        // SAFETY: the lock is held; `element` and its neighbours are linked, so live.
        unsafe {
            let links = element.as_ref().links();
            let (prev, next) = (*links.prev.get(), *links.next.get());
            match NonNull::new(prev) {
                Some(prev) => *prev.as_ref().links().next.get() = next,
                None => *self.head.get() = next,
            }
            if let Some(next) = NonNull::new(next) {
                *next.as_ref().links().prev.get() = prev;
            }
            *links.prev.get() = ptr::null_mut();
            *links.next.get() = ptr::null_mut();
        }
    }

    /// The first element after `after` (from the head when `None`) for which `take` returns
    /// `Some` (called under the lock, for example to take a reference), with what it returned.
    /// IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `after`, if given, is linked in this registry (the caller keeps it from being freed).
    pub(crate) unsafe fn next_where<R>(
        &self,
        after: Option<NonNull<T>>,
        mut take: impl FnMut(&T) -> Option<R>,
    ) -> Option<R> {
        let _held = self.lock();
        let mut cursor = match after {
            Some(after) => {
                // SAFETY: `after` is linked (caller), so live while the lock is held.
                let after = unsafe { after.as_ref() };
                // SAFETY: the lock is held.
                unsafe { *after.links().next.get() }
            }
            // SAFETY: the lock is held.
            None => unsafe { *self.head.get() },
        };
        while let Some(element) = NonNull::new(cursor) {
            // SAFETY: a linked element is live while the lock is held (it is unlinked, under
            // the lock, before it is freed).
            let element = unsafe { element.as_ref() };
            if let Some(taken) = take(element) {
                return Some(taken);
            }
            // SAFETY: the lock is held.
            cursor = unsafe { *element.links().next.get() };
        }
        None
    }
}
