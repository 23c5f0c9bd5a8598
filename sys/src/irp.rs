//! I/O request packets: `IRP`, `IO_STACK_LOCATION`, `IO_STATUS_BLOCK`, and Rust versions of
//! the FORCEINLINE helpers of `wdm.h` that have no kernel export.
//!
//! Binds the I/O request section of `wdm.h` (`IRP`, `IO_STACK_LOCATION` as this project uses
//! it, `IO_STATUS_BLOCK`, `IO_COMPLETION_ROUTINE`, `DRIVER_CANCEL`, the `SL_INVOKE_*` flags)
//! under its C names.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::basic::*;
use crate::ke::KEVENT;
use crate::mdl::MDL;
use crate::object::DEVICE_OBJECT;

/// Final status and information of a request. In C, `Status` shares its 8 bytes with
/// `Pointer`; the upper half is padding here.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STATUS_BLOCK {
    pub Status: NTSTATUS,
    pub Information: ULONG_PTR,
}

/// `IRP.Overlay.AsynchronousParameters`; the union's other view is `AllocationSize`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IRP_OVERLAY {
    pub UserApcRoutine: PVOID,
    pub UserApcContext: PVOID,
}

/// `IRP.Tail.Overlay`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IRP_TAIL_OVERLAY {
    pub DriverContext: [PVOID; 4],
    pub Thread: PETHREAD,
    pub AuxiliaryBuffer: *mut i8,
    pub ListEntry: [PVOID; 2],
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    pub OriginalFileObject: PVOID,
}

/// `IRP.Tail`: the overlay, or the APC (0x58 bytes on x64) the I/O manager uses.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IRP_TAIL {
    pub Overlay: IRP_TAIL_OVERLAY,
    pub Apc: [u64; 11],
    pub CompletionKey: PVOID,
}

/// The I/O request packet. Allocate with `IoAllocateIrp`, never on the stack; the I/O stack
/// locations follow it in the same allocation. 16-byte aligned, as the WDK declares it
/// (`DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`); the size, 0xD0, is unchanged by that.
#[repr(C, align(16))]
pub struct IRP {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub MdlAddress: *mut MDL,
    pub Flags: ULONG,
    /// `AssociatedIrp` union (`MasterIrp` / `IrpCount` / `SystemBuffer`).
    pub AssociatedIrp: PVOID,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CCHAR,
    pub CurrentLocation: CCHAR,
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: UCHAR,
    pub UserIosb: *mut IO_STATUS_BLOCK,
    pub UserEvent: *mut KEVENT,
    pub Overlay: IRP_OVERLAY,
    /// Written only through [`IoSetCancelRoutine`] (an atomic exchange).
    pub CancelRoutine: Option<DRIVER_CANCEL>,
    pub UserBuffer: PVOID,
    pub Tail: IRP_TAIL,
}

/// Parameters of a stack location, as the `Others` view of the C union.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STACK_LOCATION_OTHERS {
    pub Argument1: PVOID,
    pub Argument2: PVOID,
    pub Argument3: PVOID,
    pub Argument4: PVOID,
}

/// One I/O stack location. Only the completion-related fields matter to WSK clients.
#[repr(C)]
#[derive(Debug)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: UCHAR,
    pub MinorFunction: UCHAR,
    pub Flags: UCHAR,
    pub Control: UCHAR,
    pub Parameters: IO_STACK_LOCATION_OTHERS,
    pub DeviceObject: *mut DEVICE_OBJECT,
    pub FileObject: PVOID,
    pub CompletionRoutine: Option<IO_COMPLETION_ROUTINE>,
    pub Context: PVOID,
}

/// A completion routine; called at IRQL <= DISPATCH_LEVEL. `DeviceObject` is null for IRPs a
/// driver allocated without a stack location of its own.
pub type IO_COMPLETION_ROUTINE =
    unsafe extern "system" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP, Context: PVOID) -> NTSTATUS;

/// A cancel routine; called at DISPATCH_LEVEL with the cancel spin lock held.
pub type DRIVER_CANCEL = unsafe extern "system" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP);

/// `IO_STACK_LOCATION.Control` bits.
pub const SL_PENDING_RETURNED: UCHAR = 0x01;
pub const SL_ERROR_RETURNED: UCHAR = 0x02;
pub const SL_INVOKE_ON_CANCEL: UCHAR = 0x20;
pub const SL_INVOKE_ON_SUCCESS: UCHAR = 0x40;
pub const SL_INVOKE_ON_ERROR: UCHAR = 0x80;

/// `IRP.Type` value (`IO_TYPE_IRP`).
pub const IO_TYPE_IRP: CSHORT = 6;

/// `IoSizeOfIrp`: bytes for an IRP with `stack_size` stack locations.
pub const fn IoSizeOfIrp(stack_size: CCHAR) -> usize {
    size_of::<IRP>() + (stack_size as usize) * size_of::<IO_STACK_LOCATION>()
}

/// Pointer to `irp->Tail.Overlay` (no read or write).
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
unsafe fn tail_overlay(irp: *mut IRP) -> *mut IRP_TAIL_OVERLAY {
    // SAFETY: the caller guarantees `irp` is live; only a place is computed, nothing is read.
    unsafe { &raw mut (*irp).Tail.Overlay }
}

/// `IoGetCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn IoGetCurrentIrpStackLocation(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is live.
    let overlay = unsafe { tail_overlay(irp) };
    // SAFETY: `overlay` points into the live IRP; the field is a plain pointer.
    unsafe { (*overlay).CurrentStackLocation }
}

/// `IoGetNextIrpStackLocation`: the location the next lower driver (here: the WSK provider)
/// will own, where a caller puts its completion routine.
///
/// # Safety
/// `irp` must point to a live IRP whose current location is not the first one.
#[inline]
pub unsafe fn IoGetNextIrpStackLocation(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is live.
    let current = unsafe { IoGetCurrentIrpStackLocation(irp) };
    current.wrapping_sub(1)
}

/// Moves the current stack location by `delta` (and `CurrentLocation` with it).
///
/// # Safety
/// `irp` must point to a live IRP owned by the caller; the new location must exist.
#[inline]
unsafe fn move_stack_location(irp: *mut IRP, delta: i8) {
    // SAFETY: the caller guarantees `irp` is live and owned by the caller.
    let location = unsafe { &mut (*irp).CurrentLocation };
    *location += delta;
    // SAFETY: as above.
    let overlay = unsafe { tail_overlay(irp) };
    // SAFETY: `overlay` points into the live IRP the caller owns.
    let overlay = unsafe { &mut *overlay };
    overlay.CurrentStackLocation = overlay.CurrentStackLocation.wrapping_offset(isize::from(delta));
}

/// `IoSetNextIrpStackLocation`: what `IoCallDriver` does before calling the next driver.
///
/// # Safety
/// `irp` must point to a live IRP with a free stack location below the current one.
#[inline]
pub unsafe fn IoSetNextIrpStackLocation(irp: *mut IRP) {
    // SAFETY: forwarded contract.
    unsafe { move_stack_location(irp, -1) }
}

/// `IoSkipCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a live IRP owned by the caller.
#[inline]
pub unsafe fn IoSkipCurrentIrpStackLocation(irp: *mut IRP) {
    // SAFETY: forwarded contract.
    unsafe { move_stack_location(irp, 1) }
}

/// `IoSetCompletionRoutine`: installs `routine` in the next stack location.
///
/// # Safety
/// `irp` must point to a live IRP owned by the caller, with a next stack location
/// (`CurrentLocation > 1`).
#[inline]
pub unsafe fn IoSetCompletionRoutine(
    irp: *mut IRP,
    routine: Option<IO_COMPLETION_ROUTINE>,
    context: *mut c_void,
    invoke_on_success: bool,
    invoke_on_error: bool,
    invoke_on_cancel: bool,
) {
    // SAFETY: the caller guarantees the IRP is live and has a next stack location.
    let next = unsafe { IoGetNextIrpStackLocation(irp) };
    // SAFETY: `next` lies inside the caller's IRP allocation.
    let next = unsafe { &mut *next };
    next.CompletionRoutine = routine;
    next.Context = context;
    let mut control = 0;
    if invoke_on_success {
        control |= SL_INVOKE_ON_SUCCESS;
    }
    if invoke_on_error {
        control |= SL_INVOKE_ON_ERROR;
    }
    if invoke_on_cancel {
        control |= SL_INVOKE_ON_CANCEL;
    }
    next.Control = control;
}

/// `IoMarkIrpPending`.
///
/// # Safety
/// `irp` must point to a live IRP owned by the caller.
#[inline]
pub unsafe fn IoMarkIrpPending(irp: *mut IRP) {
    // SAFETY: the caller guarantees the IRP is live.
    let current = unsafe { IoGetCurrentIrpStackLocation(irp) };
    // SAFETY: the current location lies inside the IRP allocation.
    unsafe {
        (*current).Control |= SL_PENDING_RETURNED;
    }
}

/// `IoSetCancelRoutine`: atomically exchanges the IRP's cancel routine, returning the old one.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn IoSetCancelRoutine(irp: *mut IRP, routine: Option<DRIVER_CANCEL>) -> Option<DRIVER_CANCEL> {
    let new = routine.map_or(0usize, |f| f as usize);
    // SAFETY: `CancelRoutine` is a pointer-sized, pointer-aligned field of a live IRP, and
    // every writer goes through this atomic exchange (as the C macro's
    // InterlockedExchangePointer).
    let field = unsafe { &raw mut (*irp).CancelRoutine };
    // SAFETY: see above; the pointer is valid and aligned for the lifetime of the IRP.
    let cell = unsafe { AtomicUsize::from_ptr(field.cast::<usize>()) };
    let old = cell.swap(new, Ordering::AcqRel);
    if old == 0 {
        None
    } else {
        // SAFETY: a non-zero value in this field was stored from a `DRIVER_CANCEL`.
        Some(unsafe { core::mem::transmute::<usize, DRIVER_CANCEL>(old) })
    }
}
