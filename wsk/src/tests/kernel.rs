//! Stand-ins for the kernel routines that pool memory, I/O buffers, MDLs and operation IRPs
//! need, defined for the unit test binary only (`#[no_mangle]`, resolving `wsk_sys`'s
//! declarations as the emulator's exports do in the integration tests). They are the smallest
//! faithful model: pool blocks from the host allocator with their tag checked at free (and
//! counted, [`live_blocks`]), MDLs describing the caller's memory with the system address being
//! that memory, no page tables, and IRPs whose completion runs the completion routines as the
//! I/O manager does, completed by the test playing the provider ([`provider_complete`]).
//!
//! Written with strict-provenance pointer arithmetic, so that Miri
//! (`-Zmiri-strict-provenance`) can run everything built on them. Leaks are left for Miri's
//! leak check to report.

#![allow(non_snake_case, reason = "the kernel's routine and parameter names")]

extern crate std;

use core::ffi::c_void;
use core::ptr;
use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::vec::Vec;

use wsk_sys::{
    BOOLEAN, CCHAR, IO_STACK_LOCATION, IO_STATUS_BLOCK, IO_TYPE_IRP, IRP, IoGetCurrentIrpStackLocation, IoSizeOfIrp,
    IoSkipCurrentIrpStackLocation, KIRQL, KPROCESSOR_MODE, MDL, MDL_ALLOCATED_FIXED_SIZE, MDL_MAPPED_TO_SYSTEM_VA,
    MDL_PARTIAL, MDL_SOURCE_IS_NONPAGED_POOL, NT_SUCCESS, NTSTATUS, PAGE_SIZE, PASSIVE_LEVEL, POOL_TYPE, PVOID, SIZE_T,
    SL_INVOKE_ON_ERROR, SL_INVOKE_ON_SUCCESS, STATUS_MORE_PROCESSING_REQUIRED, ULONG, UNICODE_STRING,
};

/// Bytes before each pool block: its size and tag (keeps the block 16-byte aligned).
const HEADER: usize = 16;

fn pool_layout(size: usize) -> Layout {
    Layout::from_size_align(HEADER + size, 16).expect("pool block layout")
}

std::thread_local! {
    /// Pool blocks this thread allocated and has not freed, by tag.
    static LIVE_BLOCKS: RefCell<Vec<(u32, isize)>> = const { RefCell::new(Vec::new()) };
}

fn count_block(tag: u32, delta: isize) {
    LIVE_BLOCKS.with_borrow_mut(|live| match live.iter_mut().find(|(t, _)| *t == tag) {
        Some((_, n)) => *n += delta,
        None => live.push((tag, delta)),
    });
}

/// How many pool blocks with `tag` the calling thread allocated and has not freed (each
/// test runs on a thread of its own).
pub(crate) fn live_blocks(tag: u32) -> isize {
    LIVE_BLOCKS.with_borrow(|live| live.iter().find(|(t, _)| *t == tag).map_or(0, |(_, n)| *n))
}

/// The unit tests run at PASSIVE_LEVEL.
#[unsafe(no_mangle)]
extern "system" fn WskEmuGetCurrentIrql() -> KIRQL {
    PASSIVE_LEVEL
}

/// A spin lock over the word (the unit tests' threads are all at PASSIVE_LEVEL, which it
/// returns as the previous IRQL).
///
/// # Safety
/// `SpinLock` points to a live, aligned lock word used only through these two routines.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut wsk_sys::KSPIN_LOCK) -> KIRQL {
    // SAFETY: a live, aligned `usize` (caller), accessed only atomically.
    let word = unsafe { core::sync::atomic::AtomicUsize::from_ptr(SpinLock) };
    while word
        .compare_exchange_weak(0, 1, core::sync::atomic::Ordering::Acquire, core::sync::atomic::Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    PASSIVE_LEVEL
}

/// Releases a lock taken with `KeAcquireSpinLockRaiseToDpc`.
///
/// # Safety
/// The caller holds the lock.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeReleaseSpinLock(SpinLock: *mut wsk_sys::KSPIN_LOCK, _NewIrql: KIRQL) {
    // SAFETY: as in `KeAcquireSpinLockRaiseToDpc`.
    let word = unsafe { core::sync::atomic::AtomicUsize::from_ptr(SpinLock) };
    word.store(0, core::sync::atomic::Ordering::Release);
}

/// No `ExAllocatePool2` here: the pool takes the `ExAllocatePoolWithTag` path.
///
/// # Safety
/// Any arguments.
#[unsafe(no_mangle)]
unsafe extern "system" fn MmGetSystemRoutineAddress(_name: *mut UNICODE_STRING) -> PVOID {
    ptr::null_mut()
}

/// The unit tests stand for Windows 10: every DDI version up to it is available.
#[unsafe(no_mangle)]
extern "system" fn RtlIsNtDdiVersionAvailable(Version: ULONG) -> BOOLEAN {
    BOOLEAN::from(Version < 0x0B00_0000)
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
    count_block(Tag, 1);
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
    count_block(Tag, -1);
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
        Size: size_of::<MDL>() as i16,
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

/// A partial MDL over `Length` bytes at `VirtualAddress` in the source's buffer (no page
/// array): the source's system address is shared when it has one, as on Windows.
///
/// # Safety
/// Both MDLs are live; the range lies in the source's buffer.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoBuildPartialMdl(
    SourceMdl: *mut MDL,
    TargetMdl: *mut MDL,
    VirtualAddress: PVOID,
    Length: ULONG,
) {
    // SAFETY: live MDLs (caller).
    let source = unsafe { &*SourceMdl };
    // SAFETY: as above; a different MDL.
    let target = unsafe { &mut *TargetMdl };
    let source_va = source.StartVa.cast::<u8>().wrapping_add(source.ByteOffset as usize);
    let skip = VirtualAddress.addr() - source_va.addr();
    assert!(skip + Length as usize <= source.ByteCount as usize, "a partial MDL outside its source");
    let offset = VirtualAddress.addr() & (PAGE_SIZE - 1);
    // The source's pointer keeps the buffer's provenance.
    target.StartVa = source_va.wrapping_add(skip).wrapping_sub(offset).cast();
    target.ByteOffset = offset as ULONG;
    target.ByteCount = Length;
    let mapped = source.MdlFlags & (MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA) != 0;
    target.MappedSystemVa =
        if mapped { source.MappedSystemVa.cast::<u8>().wrapping_add(skip).cast() } else { ptr::null_mut() };
    target.MdlFlags = (target.MdlFlags & MDL_ALLOCATED_FIXED_SIZE)
        | MDL_PARTIAL
        | (source.MdlFlags & (MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA));
}

/// Nothing is ever mapped here (see [`MmMapLockedPagesSpecifyCache`]): never called.
///
/// # Safety
/// Any arguments.
#[unsafe(no_mangle)]
unsafe extern "system" fn MmUnmapLockedPages(_BaseAddress: PVOID, _MemoryDescriptorList: *mut MDL) {
    unreachable!("the unit tests map nothing");
}

/// The layout of an IRP with `stack_size` stack locations.
fn irp_layout(stack_size: CCHAR) -> Layout {
    Layout::from_size_align(IoSizeOfIrp(stack_size), align_of::<IRP>()).expect("IRP layout")
}

/// Sets an IRP's header for a new request: no location current yet (the caller's first
/// `IoSetCompletionRoutine` writes the last one), not cancelled, stack locations cleared.
///
/// # Safety
/// `irp` is a live IRP from `IoAllocateIrp` whose `StackCount` is set.
unsafe fn reset_irp(irp: *mut IRP) {
    // SAFETY: a live IRP (caller); its stack locations follow the header in the allocation.
    let count = unsafe { (*irp).StackCount };
    let first = irp.wrapping_add(1).cast::<IO_STACK_LOCATION>();
    // SAFETY: the `count` locations after the header are in the allocation, ours to write.
    unsafe { ptr::write_bytes(first, 0, count as usize) };
    // SAFETY: a live IRP (caller).
    let irp = unsafe { &mut *irp };
    irp.CurrentLocation = count + 1;
    irp.Cancel = 0;
    irp.IoStatus = IO_STATUS_BLOCK { Status: 0, Information: 0 };
    irp.Tail.Overlay.CurrentStackLocation = first.wrapping_add(count as usize);
}

/// An IRP with `StackSize` stack locations from the host allocator.
///
/// # Safety
/// Any arguments; the IRP is freed with `IoFreeIrp`.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoAllocateIrp(StackSize: CCHAR, _ChargeQuota: BOOLEAN) -> *mut IRP {
    // SAFETY: the layout is never zero-sized (it has the header).
    let irp = unsafe { alloc_zeroed(irp_layout(StackSize)) }.cast::<IRP>();
    if irp.is_null() {
        return irp;
    }
    // SAFETY: a fresh, zeroed block of the IRP's size and alignment.
    unsafe {
        (*irp).Type = IO_TYPE_IRP;
    }
    // SAFETY: as above.
    unsafe {
        (*irp).StackCount = StackSize;
    }
    // SAFETY: a live IRP whose stack count is set.
    unsafe { reset_irp(irp) };
    irp
}

/// Reinitializes an IRP the caller owns for another request.
///
/// # Safety
/// `Irp` came from `IoAllocateIrp` and is not pending anywhere.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoReuseIrp(Irp: *mut IRP, Iostatus: NTSTATUS) {
    // SAFETY: forwarded contract.
    unsafe { reset_irp(Irp) };
    // SAFETY: as above.
    unsafe {
        (*Irp).IoStatus.Status = Iostatus;
    }
}

/// Frees an IRP from `IoAllocateIrp`.
///
/// # Safety
/// `Irp` came from `IoAllocateIrp` and is not used afterwards.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoFreeIrp(Irp: *mut IRP) {
    // SAFETY: a live IRP (caller).
    let count = unsafe { (*Irp).StackCount };
    // SAFETY: allocated by `IoAllocateIrp` with this layout.
    unsafe { dealloc(Irp.cast(), irp_layout(count)) };
}

/// Completes `Irp`: runs the completion routines from the current location up, as the I/O
/// manager does, and stops where one returns `STATUS_MORE_PROCESSING_REQUIRED`.
///
/// # Safety
/// `Irp` is a live IRP from `IoAllocateIrp`, owned by the caller and not yet completed.
#[unsafe(no_mangle)]
unsafe extern "system" fn IofCompleteRequest(Irp: *mut IRP, _PriorityBoost: CCHAR) {
    // SAFETY: a live IRP (caller).
    let count = unsafe { (*Irp).StackCount };
    // SAFETY: as above.
    while (1..=count).contains(&unsafe { (*Irp).CurrentLocation }) {
        // SAFETY: a live IRP (caller).
        let location = unsafe { IoGetCurrentIrpStackLocation(Irp) };
        // SAFETY: the current location is one of the IRP's (checked above).
        let location = unsafe { &mut *location };
        let (routine, context, control) = (location.CompletionRoutine.take(), location.Context, location.Control);
        // SAFETY: a live IRP we complete; the location above it exists or is the end.
        unsafe { IoSkipCurrentIrpStackLocation(Irp) };
        // SAFETY: as above.
        let status = unsafe { (*Irp).IoStatus.Status };
        let wanted = if NT_SUCCESS(status) { SL_INVOKE_ON_SUCCESS } else { SL_INVOKE_ON_ERROR };
        if let Some(routine) = routine.filter(|_| control & wanted != 0) {
            // SAFETY: the routine and context the IRP's owner installed, called as the I/O
            // manager does (no device object for a driver-allocated IRP).
            if unsafe { routine(ptr::null_mut(), Irp, context) } == STATUS_MORE_PROCESSING_REQUIRED {
                return;
            }
        }
    }
}

/// Marks the IRP cancelled; the stand-in providers of the unit tests set no cancel routine,
/// so nothing else happens (the test completes the IRP itself, as a provider would).
///
/// # Safety
/// `Irp` is a live IRP from `IoAllocateIrp`.
#[unsafe(no_mangle)]
unsafe extern "system" fn IoCancelIrp(Irp: *mut IRP) -> BOOLEAN {
    // SAFETY: a live IRP (caller).
    unsafe {
        (*Irp).Cancel = 1;
    }
    0
}

/// Completes an IRP a test's stand-in provider took, with `status` and `information`, as a
/// WSK provider does: the caller's location (holding its completion routine) becomes current
/// and the request is completed.
///
/// # Safety
/// `irp` was handed to the stand-in provider and not completed yet.
pub(crate) unsafe fn provider_complete(irp: *mut IRP, status: NTSTATUS, information: usize) {
    // SAFETY: the provider owns the live IRP (caller).
    unsafe {
        (*irp).IoStatus = IO_STATUS_BLOCK { Status: status, Information: information };
    }
    // SAFETY: as above; the IRP has the location its owner's completion routine lives in.
    unsafe { wsk_sys::IoSetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    unsafe { wsk_sys::IoCompleteRequest(irp, 0) };
}

/// A hand-built MDL over `bytes` (as a provider's indication carries), marked non-paged pool
/// with its system address set, or, with `mapped == false`, with neither (so that mapping it
/// fails, see [`MmMapLockedPagesSpecifyCache`]).
pub(crate) fn mdl_over(bytes: &mut [u8], mapped: bool) -> MDL {
    // One pointer for both fields: a second `as_mut_ptr` would invalidate the first.
    let start = bytes.as_mut_ptr().cast::<c_void>();
    MDL {
        Next: ptr::null_mut(),
        Size: size_of::<MDL>() as i16,
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
