//! Stand-ins for the kernel routines that pool memory, I/O buffers and MDLs need, defined for
//! the unit test binary only (`#[no_mangle]`, resolving `wsk_sys`'s declarations as the
//! emulator's exports do in the integration tests). They are the smallest faithful model:
//! pool blocks from the host allocator with their tag checked at free, MDLs describing the
//! caller's memory with the system address being that memory, and no page tables.
//!
//! Written with strict-provenance pointer arithmetic, so that Miri
//! (`-Zmiri-strict-provenance`) can run everything built on them. Leaks are left for Miri's
//! leak check to report.

#![allow(non_snake_case, reason = "the kernel's routine and parameter names")]

extern crate std;

use core::ffi::c_void;
use core::ptr;
use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};

use wsk_sys::{
    BOOLEAN, CCHAR, IRP, KIRQL, KPROCESSOR_MODE, MDL, MDL_ALLOCATED_FIXED_SIZE, MDL_SOURCE_IS_NONPAGED_POOL, PAGE_SIZE,
    PASSIVE_LEVEL, POOL_TYPE, PVOID, SIZE_T, ULONG, UNICODE_STRING,
};

/// Bytes before each pool block: its size and tag (keeps the block 16-byte aligned).
const HEADER: usize = 16;

fn pool_layout(size: usize) -> Layout {
    Layout::from_size_align(HEADER + size, 16).expect("pool block layout")
}

/// The unit tests run at PASSIVE_LEVEL.
#[unsafe(no_mangle)]
extern "system" fn WskEmuGetCurrentIrql() -> KIRQL {
    PASSIVE_LEVEL
}

/// No `ExAllocatePool2` here: the pool takes the `ExAllocatePoolWithTag` path.
///
/// # Safety
/// Any arguments.
#[unsafe(no_mangle)]
unsafe extern "system" fn MmGetSystemRoutineAddress(_name: *mut UNICODE_STRING) -> PVOID {
    ptr::null_mut()
}

/// A 16-byte aligned block of `NumberOfBytes` (uninitialized) bytes.
///
/// # Safety
/// Any arguments; the block is freed with `ExFreePoolWithTag` and the same tag.
#[unsafe(no_mangle)]
unsafe extern "system" fn ExAllocatePoolWithTag(_PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    // SAFETY: the layout is never zero-sized (it has the header).
    let base = unsafe { alloc(pool_layout(NumberOfBytes)) };
    if base.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the header's first 16 bytes are ours, 16-byte aligned: size then tag.
    unsafe { base.cast::<usize>().write(NumberOfBytes) };
    // SAFETY: as above (offset 8 is within the header, 4-byte aligned).
    let tag = unsafe { base.add(8) }.cast::<u32>();
    // SAFETY: as above.
    unsafe { tag.write(Tag) };
    // SAFETY: within the allocation (the header precedes the block).
    unsafe { base.add(HEADER) }.cast()
}

/// Frees a block from `ExAllocatePoolWithTag`; aborts the test on a tag mismatch.
///
/// # Safety
/// `P` came from `ExAllocatePoolWithTag` and is not used afterwards.
#[unsafe(no_mangle)]
unsafe extern "system" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    // SAFETY: `P` is `HEADER` bytes into its allocation (caller).
    let base = unsafe { P.cast::<u8>().sub(HEADER) };
    // SAFETY: the header written at allocation: the size first, the tag at offset 8.
    let size = unsafe { base.cast::<usize>().read() };
    // SAFETY: as above.
    let tag = unsafe { base.add(8) }.cast::<u32>();
    // SAFETY: as above.
    let tag = unsafe { tag.read() };
    assert_eq!(tag, Tag, "pool block freed with another tag than it was allocated with");
    // SAFETY: allocated with this layout by `ExAllocatePoolWithTag`.
    unsafe { dealloc(base, pool_layout(size)) };
}

/// An MDL describing `Length` bytes at `VirtualAddress` (no page array; not chained to an
/// IRP).
///
/// # Safety
/// Any arguments; `Irp` must be null.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    _SecondaryBuffer: BOOLEAN,
    _ChargeQuota: BOOLEAN,
    Irp: *mut IRP,
) -> *mut MDL {
    assert!(Irp.is_null(), "the unit tests' IoAllocateMdl chains no MDL to an IRP");
    let offset = VirtualAddress.addr() & (PAGE_SIZE - 1);
    let mdl = MDL {
        Next: ptr::null_mut(),
        Size: core::mem::size_of::<MDL>() as i16,
        MdlFlags: MDL_ALLOCATED_FIXED_SIZE,
        Process: ptr::null_mut(),
        MappedSystemVa: ptr::null_mut(),
        // The page start keeps the buffer's provenance (out of bounds, never read through).
        StartVa: VirtualAddress.cast::<u8>().wrapping_sub(offset).cast(),
        ByteCount: Length,
        ByteOffset: offset as ULONG,
    };
    std::boxed::Box::into_raw(std::boxed::Box::new(mdl))
}

/// Frees an MDL from `IoAllocateMdl`.
///
/// # Safety
/// `Mdl` came from `IoAllocateMdl` and is not used afterwards.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoFreeMdl(Mdl: *mut MDL) {
    // SAFETY: boxed by `IoAllocateMdl` (caller).
    drop(unsafe { std::boxed::Box::from_raw(Mdl) });
}

/// Sets the system address of non-paged memory: the memory itself.
///
/// # Safety
/// `MemoryDescriptorList` is a live MDL from `IoAllocateMdl`.
#[unsafe(no_mangle)]
unsafe extern "system" fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: *mut MDL) {
    // SAFETY: a live MDL (caller).
    let mdl = unsafe { &mut *MemoryDescriptorList };
    mdl.MappedSystemVa = mdl.StartVa.cast::<u8>().wrapping_add(mdl.ByteOffset as usize).cast();
    mdl.MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
}

/// Mapping an MDL that is neither mapped nor non-paged pool fails here, as when the system
/// runs out of PTEs: the tests use it for the unmappable-indication paths.
///
/// # Safety
/// Any arguments.
#[unsafe(no_mangle)]
unsafe extern "system" fn MmMapLockedPagesSpecifyCache(
    _MemoryDescriptorList: *mut MDL,
    _AccessMode: KPROCESSOR_MODE,
    _CacheType: i32,
    _RequestedAddress: PVOID,
    _BugCheckOnFailure: ULONG,
    _Priority: ULONG,
) -> PVOID {
    ptr::null_mut()
}

/// The IRP a socket core reserves for its close: zeroed memory of an IRP's size. The unit
/// tests never issue it (they create no socket), they only allocate and free it.
///
/// # Safety
/// Any arguments; free the IRP with [`IoFreeIrp`].
#[unsafe(no_mangle)]
unsafe extern "system" fn IoAllocateIrp(_StackSize: CCHAR, _ChargeQuota: BOOLEAN) -> *mut IRP {
    // SAFETY: a layout of non-zero size.
    unsafe { alloc_zeroed(Layout::new::<IRP>()) }.cast::<IRP>()
}

/// Frees an IRP from [`IoAllocateIrp`].
///
/// # Safety
/// `Irp` came from [`IoAllocateIrp`] and is not used afterwards.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoFreeIrp(Irp: *mut IRP) {
    // SAFETY: allocated with this layout by `IoAllocateIrp` (caller).
    unsafe { dealloc(Irp.cast::<u8>(), Layout::new::<IRP>()) };
}

/// A hand-built MDL over `bytes` (as a provider's indication carries), marked non-paged pool
/// with its system address set, or, with `mapped == false`, with neither (so that mapping it
/// fails, see [`MmMapLockedPagesSpecifyCache`]).
pub(crate) fn mdl_over(bytes: &mut [u8], mapped: bool) -> MDL {
    // One pointer for both fields: a second `as_mut_ptr` would invalidate the first.
    let start = bytes.as_mut_ptr().cast::<c_void>();
    MDL {
        Next: ptr::null_mut(),
        Size: core::mem::size_of::<MDL>() as i16,
        MdlFlags: if mapped { MDL_SOURCE_IS_NONPAGED_POOL } else { 0 },
        Process: ptr::null_mut(),
        MappedSystemVa: if mapped { start } else { ptr::null_mut() },
        StartVa: start,
        ByteCount: bytes.len() as ULONG,
        ByteOffset: 0,
    }
}

/// Links `mdls` into a chain in order; returns its head. The chain is used through raw
/// pointers only: the caller does not touch `mdls` again while it uses the chain.
pub(crate) fn chain(mdls: &mut [MDL]) -> *mut MDL {
    let base = mdls.as_mut_ptr();
    for i in 1..mdls.len() {
        let (prev, next) = (base.wrapping_add(i - 1), base.wrapping_add(i));
        // SAFETY: `i - 1` and `i` are in bounds of `mdls`, which `base` covers.
        unsafe { (*prev).Next = next };
    }
    if mdls.is_empty() { ptr::null_mut() } else { base }
}
