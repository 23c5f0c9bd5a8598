//! Non-paged pool allocation with a tag, fallible by construction.
//!
//! `ExAllocatePool2` exists only on Windows 10 2004 and later (and not in Wine): it is
//! resolved once with `MmGetSystemRoutineAddress` (at PASSIVE_LEVEL, by [`init`]) and
//! `ExAllocatePoolWithTag(NonPagedPoolNx)` is used where it is missing.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::{PFN_EX_ALLOCATE_POOL2, POOL_FLAG_NON_PAGED, UNICODE_STRING};

/// Pool tag of the library's allocations ("WskA" in a pool dump).
pub const TAG: u32 = u32::from_le_bytes(*b"WskA");

/// Pool allocations are 16-byte aligned on x64.
pub const POOL_ALIGN: usize = 16;

const UNRESOLVED: usize = 0;
const ABSENT: usize = 1;
static EX_ALLOCATE_POOL2: AtomicUsize = AtomicUsize::new(UNRESOLVED);

/// Resolves `ExAllocatePool2`. Call at PASSIVE_LEVEL (DriverEntry); until it has run,
/// allocations use `ExAllocatePoolWithTag`. Idempotent.
pub fn init() {
    if EX_ALLOCATE_POOL2.load(Ordering::Acquire) != UNRESOLVED || wsk_sys::KeGetCurrentIrql() != wsk_sys::PASSIVE_LEVEL
    {
        return;
    }
    let mut name = UNICODE_STRING::from_static(wsk_sys::utf16!("ExAllocatePool2"));
    // SAFETY: PASSIVE_LEVEL was checked above; `name` is a valid counted string.
    let routine = unsafe { wsk_sys::MmGetSystemRoutineAddress(&mut name) };
    let value = if routine.is_null() { ABSENT } else { routine as usize };
    EX_ALLOCATE_POOL2.store(value, Ordering::Release);
}

/// Allocates `size` zeroed bytes of non-paged pool with `tag`. Returns `None` when the pool
/// is exhausted (or a fault is injected). IRQL <= DISPATCH_LEVEL.
pub fn allocate(size: usize, tag: u32) -> Option<NonNull<u8>> {
    let resolved = EX_ALLOCATE_POOL2.load(Ordering::Acquire);
    let ptr: *mut c_void = if resolved > ABSENT {
        // SAFETY: the value was stored from the address `MmGetSystemRoutineAddress` returned
        // for "ExAllocatePool2", whose documented signature is `PFN_EX_ALLOCATE_POOL2`.
        let routine = unsafe { core::mem::transmute::<usize, PFN_EX_ALLOCATE_POOL2>(resolved) };
        // SAFETY: plain pool allocation; ExAllocatePool2 zeroes the memory.
        unsafe { routine(POOL_FLAG_NON_PAGED, size, tag) }
    } else {
        // SAFETY: plain pool allocation at IRQL <= DISPATCH_LEVEL.
        let p = unsafe { wsk_sys::ExAllocatePoolWithTag(wsk_sys::NonPagedPoolNx, size, tag) };
        if !p.is_null() {
            // SAFETY: `p` is a fresh allocation of `size` bytes.
            unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0, size) };
        }
        p
    };
    NonNull::new(ptr.cast())
}

/// Frees memory from [`allocate`].
///
/// # Safety
/// `ptr` came from [`allocate`] with the same `tag` and is not used afterwards.
pub unsafe fn free(ptr: NonNull<u8>, tag: u32) {
    // SAFETY: the caller guarantees `ptr` is a live pool allocation with this tag.
    unsafe { wsk_sys::ExFreePoolWithTag(ptr.as_ptr().cast(), tag) }
}

/// An owned value in non-paged pool: a fallible `Box` with a stable address, usable from
/// completion routines and DPCs.
///
/// # Invariants
/// `ptr` points to a live, initialized `T` in a pool allocation with tag [`TAG`] that this
/// box owns.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
}

// SAFETY: `PoolBox<T>` owns its `T` exactly as `Box<T>` does.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: as above; shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGN, "PoolBox<T> needs align <= 16");

    /// Moves `value` into pool. On allocation failure the value is handed back.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn try_new(value: T) -> Result<Self, T> {
        let () = Self::ALIGN_OK;
        let Some(raw) = allocate(size_of::<T>().max(1), TAG) else { return Err(value) };
        let ptr = raw.cast::<T>();
        // SAFETY: `raw` is a fresh, suitably aligned (16 >= align_of::<T>()) allocation of
        // at least size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: initialized above, owned by the new box.
        Ok(Self { ptr })
    }

    /// The stable address of the value.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Gives up ownership; rebuild with [`PoolBox::from_raw`].
    pub fn into_raw(this: Self) -> NonNull<T> {
        let ptr = this.ptr;
        core::mem::forget(this);
        ptr
    }

    /// Re-takes ownership of a pointer from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and is not owned by anything else.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        // INVARIANT: the caller hands back the ownership `into_raw` gave up.
        Self { ptr }
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the type invariant the value is live and owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant; `&mut self` gives exclusive access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the value is live; it is dropped exactly once here.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: the allocation came from `allocate` with TAG and is not used again.
        unsafe { free(self.ptr.cast(), TAG) };
    }
}
