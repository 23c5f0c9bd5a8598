//! MDLs: `IoAllocateMdl`, `IoFreeMdl`, `MmBuildMdlForNonPagedPool`,
//! `MmMapLockedPagesSpecifyCache` (behind `MmGetSystemAddressForMdlSafe`),
//! `MmUnmapLockedPages`, `IoBuildPartialMdl`.
//!
//! There are no page tables: the "page frame numbers" an MDL carries are the virtual page
//! numbers of the buffer, and the system address of a buffer is the buffer itself. What is
//! checked is what a driver can get wrong: the MDL is live, and the memory it describes is
//! live non-paged pool (when it is pool at all) and lies inside one allocation.

// The exports read and write MDL headers through raw pointers the caller passes; this module
// allows several unsafe operations per block, each block saying why it is sound.

use std::mem::size_of;
use std::ptr;

use wsk_sys::{
    BOOLEAN, DISPATCH_LEVEL, IRP, KPROCESSOR_MODE, KernelMode, MDL, MDL_ALLOCATED_FIXED_SIZE, MDL_MAPPED_TO_SYSTEM_VA,
    MDL_PAGES_LOCKED, MDL_PARTIAL, MDL_PARTIAL_HAS_BEEN_MAPPED, MDL_SOURCE_IS_NONPAGED_POOL, PAGE_SIZE, PVOID, ULONG,
};

use crate::irql;
use crate::pool::{self, BlockKind, FreeError, RangeClass, Request};
use crate::verifier::{Rule, bugcheck, tag_text};

/// Pool tag of MDLs (as the real memory manager's).
pub const MDL_TAG: u32 = u32::from_le_bytes(*b"Mdl ");
/// A page frame number.
type PfnNumber = u64;
/// Largest MDL the emulator builds (the header's `Size` is 16 bits).
const MAX_MDL_SIZE: usize = u16::MAX as usize;

/// Pages spanned by `length` bytes starting at `va` (`ADDRESS_AND_SIZE_TO_SPAN_PAGES`).
fn span_pages(va: usize, length: usize) -> usize {
    ((va & (PAGE_SIZE - 1)) + length).div_ceil(PAGE_SIZE)
}

/// Whether `mdl` is a live MDL from `IoAllocateMdl`, or memory the emulator does not know
/// (an MDL the driver built itself). Records a violation and returns false otherwise.
fn check_mdl(routine: &str, mdl: *mut MDL) -> bool {
    if mdl.is_null() {
        bugcheck(Rule::MdlBadPointer, format!("{routine}(NULL)"));
        return false;
    }
    if pool::in_freed_block(mdl as usize) {
        bugcheck(Rule::MdlBadPointer, format!("{routine}({mdl:p}) on an MDL already freed"));
        return false;
    }
    true
}

/// `IoAllocateMdl`: an MDL describing `Length` bytes at `VirtualAddress`, optionally attached
/// to `Irp` (as its `MdlAddress`, or at the end of its MDL chain when `SecondaryBuffer`).
/// Returns null when out of memory. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be null or a live IRP the caller owns.
#[unsafe(no_mangle)]
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "field-by-field initialization of one fresh MDL and the owning IRP's chain link"
)]
pub unsafe extern "system" fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    SecondaryBuffer: BOOLEAN,
    _ChargeQuota: BOOLEAN,
    Irp: *mut IRP,
) -> *mut MDL {
    irql::check_max("IoAllocateMdl", DISPATCH_LEVEL);
    let va = VirtualAddress as usize;
    let pages = span_pages(va, Length as usize);
    let size = size_of::<MDL>() + pages * size_of::<PfnNumber>();
    if size > MAX_MDL_SIZE {
        return ptr::null_mut();
    }
    let mdl =
        pool::allocate(Request { kind: BlockKind::Mdl, size, tag: MDL_TAG, paged: false, zeroed: true }).cast::<MDL>();
    if mdl.is_null() {
        return mdl;
    }
    // SAFETY: `mdl` is a fresh zeroed block of `size` bytes; `Irp` is null or a live IRP the
    // caller owns, whose MDL chain consists of live MDLs.
    unsafe {
        (*mdl).Size = size as u16 as i16;
        (*mdl).MdlFlags = MDL_ALLOCATED_FIXED_SIZE;
        (*mdl).StartVa = (va & !(PAGE_SIZE - 1)) as PVOID;
        (*mdl).ByteOffset = (va & (PAGE_SIZE - 1)) as ULONG;
        (*mdl).ByteCount = Length;
        if !Irp.is_null() {
            if SecondaryBuffer == 0 || (*Irp).MdlAddress.is_null() {
                (*Irp).MdlAddress = mdl;
            } else {
                let mut last = (*Irp).MdlAddress;
                while !(*last).Next.is_null() {
                    last = (*last).Next;
                }
                (*last).Next = mdl;
            }
        }
    }
    mdl
}

/// `IoFreeMdl`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Mdl` must be an MDL from `IoAllocateMdl` that nothing uses any more.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeMdl(Mdl: *mut MDL) {
    irql::check_max("IoFreeMdl", DISPATCH_LEVEL);
    match pool::free(Mdl.cast(), BlockKind::Mdl) {
        Ok(_) => {}
        Err(FreeError::AlreadyFreed { .. }) => {
            bugcheck(Rule::MdlDoubleFree, format!("IoFreeMdl({Mdl:p}) on an MDL already freed"));
        }
        Err(FreeError::WrongKind(kind)) => {
            bugcheck(Rule::MdlBadPointer, format!("IoFreeMdl({Mdl:p}) on {}", kind.describe()));
        }
        Err(FreeError::Null) => bugcheck(Rule::MdlBadPointer, "IoFreeMdl(NULL)"),
        Err(FreeError::NotAllocated(_)) => {
            bugcheck(Rule::MdlBadPointer, format!("IoFreeMdl({Mdl:p}): not an MDL from IoAllocateMdl"));
        }
    }
}

/// Checks the buffer an MDL describes against the pool. Returns false on a violation.
fn check_described_memory(routine: &str, mdl: *mut MDL, va: usize, length: usize) -> bool {
    match pool::classify(va, length) {
        RangeClass::Unknown => true,
        RangeClass::Freed { base, size, tag } => {
            bugcheck(
                Rule::MdlForFreedPool,
                format!(
                    "{routine}({mdl:p}): the buffer 0x{va:x} lies in freed pool (block 0x{base:x}, tag '{}', {size} bytes)",
                    tag_text(tag)
                ),
            );
            false
        }
        RangeClass::Live { paged: true, base, .. } => {
            bugcheck(
                Rule::MdlForPagedPool,
                format!("{routine}({mdl:p}): the buffer 0x{va:x} lies in paged pool (block 0x{base:x})"),
            );
            false
        }
        RangeClass::Live { fits: false, base, size, .. } => {
            bugcheck(
                Rule::MdlBeyondAllocation,
                format!(
                    "{routine}({mdl:p}): {length} bytes at 0x{va:x} reach past the end of pool block 0x{base:x} \
                     ({size} bytes)"
                ),
            );
            false
        }
        RangeClass::Live { .. } => true,
    }
}

/// `MmBuildMdlForNonPagedPool`: fills the MDL's page array for a non-paged buffer and sets its
/// `MappedSystemVa`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `MemoryDescriptorList` must be a live MDL describing non-paged memory.
#[unsafe(no_mangle)]
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "reads and page-array writes of one live MDL under one invariant"
)]
pub unsafe extern "system" fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: *mut MDL) {
    irql::check_max("MmBuildMdlForNonPagedPool", DISPATCH_LEVEL);
    let mdl = MemoryDescriptorList;
    if !check_mdl("MmBuildMdlForNonPagedPool", mdl) {
        return;
    }
    // SAFETY: `mdl` is a live MDL (checked above); its page array follows the header and has
    // room for the pages it spans (it was sized for them by `IoAllocateMdl`).
    unsafe {
        let start = (*mdl).StartVa as usize;
        let va = start + (*mdl).ByteOffset as usize;
        let length = (*mdl).ByteCount as usize;
        if !check_described_memory("MmBuildMdlForNonPagedPool", mdl, va, length) {
            return;
        }
        let pages = span_pages(va, length);
        let room = (usize::from((*mdl).Size as u16)).saturating_sub(size_of::<MDL>()) / size_of::<PfnNumber>();
        let frames = mdl.add(1).cast::<PfnNumber>();
        for page in 0..pages.min(room) {
            frames.add(page).write_unaligned((start / PAGE_SIZE + page) as PfnNumber);
        }
        (*mdl).MappedSystemVa = va as PVOID;
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
    }
}

/// `MmMapLockedPagesSpecifyCache` (kernel-mode mappings only): the system address of the
/// buffer the MDL describes. User-mode mappings are not emulated (null is returned).
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `MemoryDescriptorList` must be a live MDL describing locked or non-paged memory.
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "reads and flag writes of one live MDL")]
pub unsafe extern "system" fn MmMapLockedPagesSpecifyCache(
    MemoryDescriptorList: *mut MDL,
    AccessMode: KPROCESSOR_MODE,
    _CacheType: i32,
    _RequestedAddress: PVOID,
    _BugCheckOnFailure: ULONG,
    _Priority: ULONG,
) -> PVOID {
    irql::check_max("MmMapLockedPagesSpecifyCache", DISPATCH_LEVEL);
    let mdl = MemoryDescriptorList;
    if AccessMode != KernelMode || !check_mdl("MmMapLockedPagesSpecifyCache", mdl) {
        return ptr::null_mut();
    }
    // SAFETY: `mdl` is a live MDL (checked above).
    unsafe {
        if (*mdl).MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL) == 0 {
            bugcheck(
                Rule::MdlNotLocked,
                format!("MmMapLockedPagesSpecifyCache({mdl:p}): the MDL describes no locked or non-paged pages"),
            );
            return ptr::null_mut();
        }
        if crate::adversary::mapping_fails() || crate::fault::should_fail(crate::fault::AllocationKind::Mapping) {
            // Out of system PTEs (on purpose): the MDL stays unmapped.
            return ptr::null_mut();
        }
        let va = (*mdl).StartVa as usize + (*mdl).ByteOffset as usize;
        (*mdl).MappedSystemVa = va as PVOID;
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        if (*mdl).MdlFlags & MDL_PARTIAL != 0 {
            // A partial MDL's mapping of its own, which `MmPrepareMdlForReuse` releases.
            (*mdl).MdlFlags |= MDL_PARTIAL_HAS_BEEN_MAPPED;
        }
        va as PVOID
    }
}

/// `MmUnmapLockedPages` of a kernel-mode mapping made by `MmMapLockedPagesSpecifyCache`: the
/// MDL is no longer mapped. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `MemoryDescriptorList` must be a live MDL mapped at `BaseAddress`.
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "reads and flag writes of one live MDL")]
pub unsafe extern "system" fn MmUnmapLockedPages(BaseAddress: PVOID, MemoryDescriptorList: *mut MDL) {
    irql::check_max("MmUnmapLockedPages", DISPATCH_LEVEL);
    let mdl = MemoryDescriptorList;
    if !check_mdl("MmUnmapLockedPages", mdl) {
        return;
    }
    // SAFETY: `mdl` is a live MDL (checked above).
    unsafe {
        if (*mdl).MdlFlags & MDL_MAPPED_TO_SYSTEM_VA == 0 || (*mdl).MappedSystemVa != BaseAddress {
            bugcheck(
                Rule::MdlBadPointer,
                format!("MmUnmapLockedPages({BaseAddress:p}, {mdl:p}): the MDL is not mapped there"),
            );
            return;
        }
        (*mdl).MdlFlags &= !(MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED);
        (*mdl).MappedSystemVa = ptr::null_mut();
    }
}

/// `IoBuildPartialMdl`: `TargetMdl` describes `Length` bytes at `VirtualAddress` (0: up to the
/// end of the source's buffer) inside the buffer `SourceMdl` describes. The page frames are
/// the source's; a source mapped into system space (or non-paged pool) shares its mapping
/// with the partial MDL, as Microsoft documents, so it needs no mapping of its own. A range
/// outside the source's buffer, or a target too small for the pages, is
/// `MDL_PARTIAL_OUT_OF_RANGE`. `Next` is left as it was. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// Both MDLs must be live; the source must describe locked or non-paged memory.
#[unsafe(no_mangle)]
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "reads of the source and field and page-array writes of the target, both live MDLs"
)]
pub unsafe extern "system" fn IoBuildPartialMdl(
    SourceMdl: *mut MDL,
    TargetMdl: *mut MDL,
    VirtualAddress: PVOID,
    Length: ULONG,
) {
    irql::check_max("IoBuildPartialMdl", DISPATCH_LEVEL);
    if !check_mdl("IoBuildPartialMdl", SourceMdl) || !check_mdl("IoBuildPartialMdl", TargetMdl) {
        return;
    }
    // SAFETY: both MDLs are live (checked above); the target's page array has the room its
    // `Size` gives, checked before it is written.
    unsafe {
        let source_va = (*SourceMdl).StartVa as usize + (*SourceMdl).ByteOffset as usize;
        let source_end = source_va + (*SourceMdl).ByteCount as usize;
        let va = VirtualAddress as usize;
        let length = if Length == 0 { source_end.saturating_sub(va) } else { Length as usize };
        if va < source_va || va + length > source_end {
            bugcheck(
                Rule::MdlPartialOutOfRange,
                format!(
                    "IoBuildPartialMdl({SourceMdl:p}, {TargetMdl:p}): {length} bytes at 0x{va:x} are not inside the \
                     source's 0x{source_va:x}..0x{source_end:x}"
                ),
            );
            return;
        }
        let pages = span_pages(va, length);
        let room = (usize::from((*TargetMdl).Size as u16)).saturating_sub(size_of::<MDL>()) / size_of::<PfnNumber>();
        if pages > room {
            bugcheck(
                Rule::MdlPartialOutOfRange,
                format!("IoBuildPartialMdl({TargetMdl:p}): the target has room for {room} pages, {pages} needed"),
            );
            return;
        }
        let start = va & !(PAGE_SIZE - 1);
        let frames = TargetMdl.add(1).cast::<PfnNumber>();
        for page in 0..pages {
            frames.add(page).write_unaligned((start / PAGE_SIZE + page) as PfnNumber);
        }
        let source_flags = (*SourceMdl).MdlFlags;
        let mapped = source_flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0;
        (*TargetMdl).StartVa = start as PVOID;
        (*TargetMdl).ByteOffset = (va - start) as ULONG;
        (*TargetMdl).ByteCount = length as ULONG;
        (*TargetMdl).MappedSystemVa =
            if mapped { ((*SourceMdl).MappedSystemVa as usize + (va - source_va)) as PVOID } else { ptr::null_mut() };
        (*TargetMdl).MdlFlags = ((*TargetMdl).MdlFlags & MDL_ALLOCATED_FIXED_SIZE)
            | MDL_PARTIAL
            | (source_flags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA));
    }
}
