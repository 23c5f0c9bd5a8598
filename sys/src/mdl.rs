//! Memory descriptor lists.
//!
//! Binds the MDL section of `wdm.h` (`MDL`, the `MDL_*` flags, `MM_PAGE_PRIORITY`,
//! `MEMORY_CACHING_TYPE`, the `MdlMapping*` flags) under its C names, with Rust forms of its
//! macros (`MmGetSystemAddressForMdlSafe`, `MmGetMdlByteCount`, ...).

use core::ffi::c_void;

use crate::basic::*;

/// Memory descriptor list header. The page frame array follows it in the same allocation.
#[repr(C)]
#[derive(Debug)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub Process: PEPROCESS,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}

pub const MDL_MAPPED_TO_SYSTEM_VA: CSHORT = 0x0001;
pub const MDL_PAGES_LOCKED: CSHORT = 0x0002;
pub const MDL_SOURCE_IS_NONPAGED_POOL: CSHORT = 0x0004;
pub const MDL_ALLOCATED_FIXED_SIZE: CSHORT = 0x0008;
pub const MDL_PARTIAL: CSHORT = 0x0010;
pub const MDL_PARTIAL_HAS_BEEN_MAPPED: CSHORT = 0x0020;

/// `MM_PAGE_PRIORITY` values and flags for `MmGetSystemAddressForMdlSafe`.
pub const LowPagePriority: ULONG = 0;
pub const NormalPagePriority: ULONG = 16;
pub const HighPagePriority: ULONG = 32;
pub const MdlMappingNoExecute: ULONG = 0x4000_0000;

/// `MEMORY_CACHING_TYPE::MmCached`.
pub const MmCached: i32 = 1;

/// x64 page size.
pub const PAGE_SIZE: usize = 0x1000;

/// `MmGetMdlVirtualAddress`: `StartVa + ByteOffset`.
///
/// # Safety
/// `mdl` must point to a live, initialized MDL.
#[inline]
pub unsafe fn MmGetMdlVirtualAddress(mdl: *const MDL) -> *mut c_void {
    // SAFETY: the caller guarantees the MDL is live.
    let mdl = unsafe { &*mdl };
    let (start, offset) = (mdl.StartVa, mdl.ByteOffset);
    start.cast::<u8>().wrapping_add(offset as usize).cast()
}

/// `MmGetMdlByteCount`.
///
/// # Safety
/// `mdl` must point to a live, initialized MDL.
#[inline]
pub unsafe fn MmGetMdlByteCount(mdl: *const MDL) -> ULONG {
    // SAFETY: the caller guarantees the MDL is live.
    unsafe { (*mdl).ByteCount }
}

/// `MmPrepareMdlForReuse`: releases the system mapping a partial MDL (from
/// `IoBuildPartialMdl`) got of its own (`MDL_PARTIAL_HAS_BEEN_MAPPED`), so that the MDL can
/// be built again. A partial MDL that shares its source's mapping has none to release.
///
/// # Safety
/// `mdl` must point to a live MDL that no one uses. IRQL <= DISPATCH_LEVEL.
#[inline]
pub unsafe fn MmPrepareMdlForReuse(mdl: *mut MDL) {
    // SAFETY: the caller guarantees the MDL is live.
    let mdl_ref = unsafe { &*mdl };
    let (flags, mapped) = (mdl_ref.MdlFlags, mdl_ref.MappedSystemVa);
    if flags & MDL_PARTIAL_HAS_BEEN_MAPPED != 0 {
        // SAFETY: the mapping is the partial MDL's own (the flag says so), unused (caller).
        unsafe { crate::fns::MmUnmapLockedPages(mapped, mdl) };
    }
}

/// `MmGetSystemAddressForMdlSafe`: the mapped system address, mapping the pages first if
/// they are not mapped yet. Returns null on failure.
///
/// # Safety
/// `mdl` must point to a live MDL describing locked or non-paged memory. IRQL <= DISPATCH_LEVEL.
#[inline]
pub unsafe fn MmGetSystemAddressForMdlSafe(mdl: *mut MDL, priority: ULONG) -> *mut c_void {
    // SAFETY: the caller guarantees the MDL is live.
    let flags = unsafe { (*mdl).MdlFlags };
    if flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
        // SAFETY: as above.
        unsafe { (*mdl).MappedSystemVa }
    } else {
        // SAFETY: the caller guarantees the MDL describes locked pages.
        unsafe {
            crate::fns::MmMapLockedPagesSpecifyCache(
                mdl,
                KernelMode,
                MmCached,
                core::ptr::null_mut(),
                ULONG::from(FALSE),
                priority,
            )
        }
    }
}
