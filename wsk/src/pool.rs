//! Non-paged pool allocation with a tag, fallible by construction.
//!
//! A thin layer over the executor's pool module (which resolves `ExAllocatePool2` at
//! PASSIVE_LEVEL and falls back to `ExAllocatePoolWithTag(NonPagedPoolNx)`), adding zeroing
//! and [`PoolBox`].

use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use wsk_executor::kernel::pool as kpool;

/// Pool tag of the library's allocations ("WskA" in a pool dump).
pub const TAG: u32 = u32::from_le_bytes(*b"WskA");

/// Pool allocations are 16-byte aligned on x64.
pub const POOL_ALIGN: usize = kpool::POOL_ALIGNMENT;

/// Resolves `ExAllocatePool2`. Call at PASSIVE_LEVEL (DriverEntry). Idempotent.
///
/// IRQL == PASSIVE_LEVEL (elsewhere it does nothing).
pub fn init() {
    kpool::init();
}

/// Allocates `size` zeroed bytes of non-paged pool with `tag`. Returns `None` when the pool
/// is exhausted (or a fault is injected). IRQL <= DISPATCH_LEVEL.
pub fn allocate(size: usize, tag: u32) -> Option<NonNull<u8>> {
    let size = size.max(1);
    let ptr = kpool::allocate(size, tag)?;
    // SAFETY: `ptr` is a fresh allocation of `size` bytes.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, size) };
    Some(ptr)
}

/// Frees memory from [`allocate`].
///
/// # Safety
/// `ptr` came from [`allocate`] with the same `tag` and is not used afterwards.
///
/// IRQL <= DISPATCH_LEVEL.
pub unsafe fn free(ptr: NonNull<u8>, tag: u32) {
    // SAFETY: forwarded contract.
    unsafe { kpool::free(ptr, tag) }
}

/// An owned value in non-paged pool: a fallible `Box` with a stable address, usable from
/// completion routines and DPCs.
///
/// # Invariants
/// `ptr` points to a live, initialized `T` in a pool allocation with tag `POOL_TAG` (by
/// default [`TAG`]) that this box owns.
pub struct PoolBox<T, const POOL_TAG: u32 = TAG> {
    ptr: NonNull<T>,
}

// SAFETY: `PoolBox<T>` owns its `T` exactly as `Box<T>` does.
unsafe impl<T: Send, const POOL_TAG: u32> Send for PoolBox<T, POOL_TAG> {}
// SAFETY: as above; shared access only hands out `&T`.
unsafe impl<T: Sync, const POOL_TAG: u32> Sync for PoolBox<T, POOL_TAG> {}

impl<T> PoolBox<T> {
    /// Moves `value` into pool with tag [`TAG`]. On allocation failure the value is handed
    /// back. IRQL <= DISPATCH_LEVEL.
    pub fn try_new(value: T) -> Result<Self, T> {
        Self::try_new_tagged(value)
    }

    /// Re-takes ownership of a pointer from [`PoolBox::into_raw`] of a box with tag [`TAG`].
    ///
    /// # Safety
    /// As [`PoolBox::from_raw_tagged`].
    ///
    /// Any IRQL.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        // SAFETY: forwarded contract.
        unsafe { Self::from_raw_tagged(ptr) }
    }
}

impl<T, const POOL_TAG: u32> PoolBox<T, POOL_TAG> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGN, "PoolBox<T> needs align <= 16");

    /// Moves `value` into pool with tag `POOL_TAG`. On allocation failure the value is handed
    /// back. IRQL <= DISPATCH_LEVEL.
    pub fn try_new_tagged(value: T) -> Result<Self, T> {
        let () = Self::ALIGN_OK;
        let Some(raw) = allocate(size_of::<T>().max(1), POOL_TAG) else { return Err(value) };
        let ptr = raw.cast::<T>();
        // SAFETY: `raw` is a fresh, suitably aligned (16 >= align_of::<T>()) allocation of
        // at least size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: initialized above, owned by the new box.
        Ok(Self { ptr })
    }

    /// The stable address of the value.
    ///
    /// Any IRQL.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Gives up ownership; rebuild with [`PoolBox::from_raw_tagged`] (or
    /// [`PoolBox::from_raw`]).
    ///
    /// Any IRQL.
    pub fn into_raw(this: Self) -> NonNull<T> {
        let ptr = this.ptr;
        core::mem::forget(this);
        ptr
    }

    /// Re-takes ownership of a pointer from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a box of the same type (tag) and is not owned by
    /// anything else.
    ///
    /// Any IRQL.
    pub unsafe fn from_raw_tagged(ptr: NonNull<T>) -> Self {
        // INVARIANT: the caller hands back the ownership `into_raw` gave up.
        Self { ptr }
    }
}

impl<T, const POOL_TAG: u32> Deref for PoolBox<T, POOL_TAG> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the type invariant the value is live and owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T, const POOL_TAG: u32> DerefMut for PoolBox<T, POOL_TAG> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant; `&mut self` gives exclusive access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T, const POOL_TAG: u32> Drop for PoolBox<T, POOL_TAG> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the value is live; it is dropped exactly once here.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: the allocation came from `allocate` with POOL_TAG and is not used again.
        unsafe { free(self.ptr.cast(), POOL_TAG) };
    }
}
