//! Tagged, fallible nonpaged pool allocation: the one place the executor and the library
//! allocate pool, with the one table of their tags ([`tag`]) and owned values in pool
//! ([`PoolBox`], [`AnyPoolBox`]).
//!
//! Uses `ExAllocatePool2` (Windows 10 2004 and later) when the running kernel exports it, and
//! `ExAllocatePoolWithTag(NonPagedPoolNx)` otherwise. The export is looked up with
//! `MmGetSystemRoutineAddress`, which needs PASSIVE_LEVEL: [`init`] does it, and an
//! allocation made at PASSIVE_LEVEL before `init` does it too; until then the fallback is
//! used. Failure is always reported as `None`, never a bugcheck.

use core::alloc::Layout;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use wsk_sys::{
    ExAllocatePoolWithTag, ExFreePoolWithTag, KeGetCurrentIrql, MmGetSystemRoutineAddress, NonPagedPoolNx,
    PASSIVE_LEVEL, PFN_EX_ALLOCATE_POOL2, POOL_FLAG_NON_PAGED, POOL_FLAG_UNINITIALIZED, UNICODE_STRING,
};

mod boxed;
pub mod tag;

pub use boxed::{AnyPoolBox, PoolBox};

/// Alignment every pool block has (`MEMORY_ALLOCATION_ALIGNMENT`).
pub const POOL_ALIGNMENT: usize = 2 * size_of::<usize>();

const UNRESOLVED: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;

static POOL2_STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
static POOL2: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Looks up `ExAllocatePool2`. PASSIVE_LEVEL; does nothing above it or once done.
pub fn init() {
    if POOL2_STATE.load(Ordering::Acquire) != UNRESOLVED || KeGetCurrentIrql() != PASSIVE_LEVEL {
        return;
    }
    let mut name = UNICODE_STRING::from_static(wsk_sys::utf16!("ExAllocatePool2"));
    // SAFETY: PASSIVE_LEVEL (checked); `name` is a valid counted string.
    let f = unsafe { MmGetSystemRoutineAddress(&raw mut name) };
    if f.is_null() {
        POOL2_STATE.store(ABSENT, Ordering::Release);
    } else {
        POOL2.store(f, Ordering::Relaxed);
        POOL2_STATE.store(PRESENT, Ordering::Release);
    }
}

/// Allocates `size` bytes (at least 1) of nonpaged, non-executable pool with `tag`, aligned
/// to [`POOL_ALIGNMENT`], uninitialized. `None` when memory is short. IRQL <= DISPATCH_LEVEL.
pub fn allocate(size: usize, tag: u32) -> Option<NonNull<u8>> {
    let size = size.max(1);
    let mut state = POOL2_STATE.load(Ordering::Acquire);
    if state == UNRESOLVED {
        init();
        state = POOL2_STATE.load(Ordering::Acquire);
    }
    let p = if state == PRESENT {
        let f = POOL2.load(Ordering::Relaxed);
        // SAFETY: `f` is the kernel's `ExAllocatePool2` export, whose type this is.
        let f = unsafe { core::mem::transmute::<*mut c_void, PFN_EX_ALLOCATE_POOL2>(f) };
        // SAFETY: valid flags for nonpaged pool; IRQL <= DISPATCH_LEVEL (caller).
        unsafe { f(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, size, tag) }
    } else {
        // SAFETY: nonpaged pool at IRQL <= DISPATCH_LEVEL (caller).
        unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, size, tag) }
    };
    NonNull::new(p.cast())
}

/// [`allocate`], the bytes zeroed. IRQL <= DISPATCH_LEVEL.
pub fn allocate_zeroed(size: usize, tag: u32) -> Option<NonNull<u8>> {
    let size = size.max(1);
    let ptr = allocate(size, tag)?;
    // SAFETY: `ptr` is a fresh allocation of `size` bytes.
    unsafe { ptr::write_bytes(ptr.as_ptr(), 0, size) };
    Some(ptr)
}

/// Frees a block from [`allocate`] or [`allocate_zeroed`]. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
///
/// `ptr` came from `allocate(_, tag)` with this `tag` and is not used afterwards.
pub unsafe fn free(ptr: NonNull<u8>, tag: u32) {
    // SAFETY: forwarded contract.
    unsafe { ExFreePoolWithTag(ptr.as_ptr().cast(), tag) };
}

/// Allocates for `layout`, over-allocating when its alignment exceeds [`POOL_ALIGNMENT`].
/// IRQL <= DISPATCH_LEVEL.
pub fn allocate_layout(layout: Layout, tag: u32) -> Option<NonNull<u8>> {
    if layout.align() <= POOL_ALIGNMENT {
        return allocate(layout.size(), tag);
    }
    // Room to align, plus a word before the aligned block for the original pointer.
    let size = layout.size().checked_add(layout.align())?;
    let raw = allocate(size, tag)?;
    let mut offset = raw.as_ptr().align_offset(layout.align());
    if offset < size_of::<*mut u8>() {
        offset += layout.align();
    }
    // SAFETY: `size_of::<*mut u8>() <= offset <= align` (the alignment is a power of two
    // above two words), so the word before `aligned` and the `layout.size()` bytes from it
    // lie within the `size + align` bytes allocated.
    let aligned = unsafe { raw.as_ptr().add(offset) };
    // SAFETY: the word before `aligned` is in the allocation and pointer-aligned (`aligned`
    // is aligned to more than a pointer).
    let word = unsafe { aligned.cast::<*mut u8>().sub(1) };
    // SAFETY: as above: in the allocation, pointer-aligned, ours to write.
    unsafe { word.write(raw.as_ptr()) };
    NonNull::new(aligned)
}

/// Frees a block from [`allocate_layout`]. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
///
/// `ptr` came from `allocate_layout(layout, tag)` with the same `layout` and `tag`.
pub unsafe fn free_layout(ptr: NonNull<u8>, layout: Layout, tag: u32) {
    if layout.align() <= POOL_ALIGNMENT {
        // SAFETY: forwarded contract.
        unsafe { free(ptr, tag) };
        return;
    }
    // SAFETY: `allocate_layout` stored the original pointer in the word before the block,
    // which is inside the same allocation.
    let word = unsafe { ptr.as_ptr().cast::<*mut u8>().sub(1) };
    // SAFETY: as above: initialized and pointer-aligned.
    let raw = unsafe { word.read() };
    // SAFETY: `allocate` returned it, so it is not null.
    let raw = unsafe { NonNull::new_unchecked(raw) };
    // SAFETY: the original block, from `allocate` with `tag`.
    unsafe { free(raw, tag) };
}
