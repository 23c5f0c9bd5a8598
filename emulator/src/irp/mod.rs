//! IRPs: allocation, initialization, reuse, free, completion, cancellation, and the hooks a
//! provider (the emulated WSK subsystem, or a test acting as one) uses to own and complete
//! them.
//!
//! Layout and stack-location arithmetic are the real kernel's: `IoAllocateIrp(n)` allocates
//! `sizeof(IRP) + n * sizeof(IO_STACK_LOCATION)`, sets `CurrentLocation = n + 1` and points
//! `CurrentStackLocation` one past the last location, so that `wsk_sys`'s inline helpers
//! (`IoSetCompletionRoutine` writes the *next* location) work unchanged.

// The exports below read and write kernel structures through raw pointers the caller passes;
// splitting every field access into its own unsafe block would bury the logic, so this module
// allows several unsafe operations per block. Each block still says why it is sound.

mod cancel;
mod complete;
pub mod provider;
pub(crate) mod state;

use std::mem::size_of;
use std::ptr;

use wsk_sys::{
    BOOLEAN, CCHAR, DEVICE_OBJECT, DISPATCH_LEVEL, IO_COMPLETION_ROUTINE, IO_STACK_LOCATION, IO_TYPE_IRP, IRP,
    IoSetCompletionRoutine, IoSizeOfIrp, NTSTATUS, PVOID, STATUS_SUCCESS, USHORT,
};

pub(crate) use cancel::check_cancel_lock_released;
pub use cancel::{IoAcquireCancelSpinLock, IoCancelIrp, IoReleaseCancelSpinLock};
pub use complete::IofCompleteRequest;

use crate::irql;
use crate::pool::{self, BlockKind, FreeError, Request};
use crate::verifier::{Rule, bugcheck};
use state::{IrpState, Lookup, Origin};

/// Pool tag of IRPs (as the real I/O manager's).
pub const IRP_TAG: u32 = u32::from_le_bytes(*b"Irp ");
/// `IRP.AllocationFlags`: charged quota.
const IRP_QUOTA_CHARGED: u8 = 0x01;
/// `IRP.AllocationFlags`: allocated with its exact size (not from a lookaside list).
const IRP_ALLOCATED_FIXED_SIZE: u8 = 0x04;
/// Largest stack size accepted (`CurrentLocation` is a `CCHAR` and must reach `StackSize + 1`).
const MAX_STACK_SIZE: CCHAR = 126;

/// Initializes the IRP header at `irp` as `IoInitializeIrp` does.
///
/// # Safety
/// `irp` must point to at least `packet_size` writable bytes, and
/// `packet_size >= IoSizeOfIrp(stack_size)` with `0 <= stack_size <= MAX_STACK_SIZE`.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "field-by-field initialization of one IRP block the caller handed over"
)]
unsafe fn initialize(irp: *mut IRP, packet_size: USHORT, stack_size: CCHAR) {
    // SAFETY: the caller guarantees `packet_size` writable bytes at `irp`, which include the
    // IRP header and `stack_size` stack locations; all fields written are plain data.
    unsafe {
        ptr::write_bytes(irp.cast::<u8>(), 0, usize::from(packet_size));
        (*irp).Type = IO_TYPE_IRP;
        (*irp).Size = packet_size;
        (*irp).StackCount = stack_size;
        (*irp).CurrentLocation = stack_size + 1;
        let list = &raw mut (*irp).ThreadListEntry;
        (*list).Flink = list;
        (*list).Blink = list;
        let first = irp.cast::<u8>().add(size_of::<IRP>()).cast::<IO_STACK_LOCATION>();
        (*irp).Tail.Overlay.CurrentStackLocation = first.add(stack_size as usize);
    }
}

fn valid_stack_size(stack_size: CCHAR) -> bool {
    (0..=MAX_STACK_SIZE).contains(&stack_size)
}

/// `IoAllocateIrp`: an IRP with `StackSize` stack locations, or null. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// Callable with any arguments; free the IRP with `IoFreeIrp`.
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "initialization of one fresh IRP block")]
pub unsafe extern "system" fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> *mut IRP {
    irql::check_max("IoAllocateIrp", DISPATCH_LEVEL);
    if !valid_stack_size(StackSize) {
        return ptr::null_mut();
    }
    let size = IoSizeOfIrp(StackSize);
    let irp =
        pool::allocate(Request { kind: BlockKind::Irp, size, tag: IRP_TAG, paged: false, zeroed: true }).cast::<IRP>();
    if irp.is_null() {
        return irp;
    }
    // SAFETY: `irp` is a fresh block of `IoSizeOfIrp(StackSize)` bytes (fits a USHORT for a
    // valid stack size) and the stack size is valid.
    unsafe {
        initialize(irp, size as USHORT, StackSize);
        (*irp).AllocationFlags = IRP_ALLOCATED_FIXED_SIZE | if ChargeQuota != 0 { IRP_QUOTA_CHARGED } else { 0 };
    }
    state::track(irp, Origin::Allocated);
    irp
}

/// Checks that the driver may reinitialize `irp` (`IoReuseIrp` / `IoInitializeIrp`), and moves
/// a tracked IRP back to the `Driver` state. Returns false when the call must be refused.
fn reclaim_for_reinitialization(routine: &str, irp: *mut IRP) -> bool {
    let refusal = state::with_table(|table| {
        let record = table.get_mut(&(irp as usize))?;
        match record.state {
            IrpState::Provider => Some((
                Rule::IrpReusedWhileOwnedByProvider,
                format!("{routine}({irp:p}) while a provider owns the IRP (it has not completed it)"),
            )),
            IrpState::CompletedToIoManager => Some((
                Rule::CompletionRoutineDidNotReturnMoreProcessing,
                format!(
                    "{routine}({irp:p}): the IRP's completion did not stop with STATUS_MORE_PROCESSING_REQUIRED, \
                     so the I/O manager completed (and would have freed) it"
                ),
            )),
            IrpState::Driver | IrpState::Returned | IrpState::Completing => {
                record.state = IrpState::Driver;
                None
            }
        }
    });
    match refusal {
        Some((rule, message)) => {
            bugcheck(rule, message);
            false
        }
        None => true,
    }
}

/// `IoInitializeIrp`: initializes an IRP in memory the driver allocated. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must point to `PacketSize` writable bytes of non-paged memory owned by the caller.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoInitializeIrp(Irp: *mut IRP, PacketSize: USHORT, StackSize: CCHAR) {
    irql::check_max("IoInitializeIrp", DISPATCH_LEVEL);
    if Irp.is_null() || !valid_stack_size(StackSize) || usize::from(PacketSize) < IoSizeOfIrp(StackSize) {
        bugcheck(
            Rule::IrpInitializeTooSmall,
            format!(
                "IoInitializeIrp({Irp:p}, {PacketSize}, {StackSize}): a packet of {StackSize} stack locations needs {} bytes",
                IoSizeOfIrp(StackSize.max(0))
            ),
        );
        return;
    }
    match state::lookup(Irp) {
        Lookup::Tracked => {
            if !reclaim_for_reinitialization("IoInitializeIrp", Irp) {
                return;
            }
        }
        Lookup::Freed => {
            bugcheck(Rule::IrpUseAfterFree, format!("IoInitializeIrp({Irp:p}) on an IRP already freed"));
            return;
        }
        Lookup::Unknown => {
            state::track(Irp, Origin::Initialized);
        }
    }
    // SAFETY: the caller guarantees `PacketSize` writable bytes; the size was checked.
    unsafe { initialize(Irp, PacketSize, StackSize) };
}

/// `IoReuseIrp`: reinitializes an IRP for another request, keeping its allocation flags and
/// setting `IoStatus.Status`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be an IRP the caller owns (not pending in a provider).
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "reinitialization of one IRP the caller owns")]
pub unsafe extern "system" fn IoReuseIrp(Irp: *mut IRP, Iostatus: NTSTATUS) {
    irql::check_max("IoReuseIrp", DISPATCH_LEVEL);
    if Irp.is_null() {
        bugcheck(Rule::IrpBadPointer, "IoReuseIrp(NULL)");
        return;
    }
    match state::lookup(Irp) {
        Lookup::Freed => {
            bugcheck(Rule::IrpUseAfterFree, format!("IoReuseIrp({Irp:p}) on an IRP already freed"));
            return;
        }
        Lookup::Tracked => {
            if !reclaim_for_reinitialization("IoReuseIrp", Irp) {
                return;
            }
        }
        Lookup::Unknown => {}
    }
    // SAFETY: the caller owns the live IRP; `Size` and `StackCount` were set when it was
    // initialized and describe its memory.
    unsafe {
        if (*Irp).Type != IO_TYPE_IRP || !valid_stack_size((*Irp).StackCount) {
            bugcheck(Rule::IrpBadPointer, format!("IoReuseIrp({Irp:p}): not an initialized IRP"));
            return;
        }
        let flags = (*Irp).AllocationFlags;
        initialize(Irp, (*Irp).Size, (*Irp).StackCount);
        (*Irp).AllocationFlags = flags;
        (*Irp).IoStatus.Status = Iostatus;
    }
}

/// `IoFreeIrp`: frees an IRP from `IoAllocateIrp`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be an IRP from `IoAllocateIrp` that the caller owns.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeIrp(Irp: *mut IRP) {
    irql::check_max("IoFreeIrp", DISPATCH_LEVEL);
    if Irp.is_null() {
        bugcheck(Rule::IrpBadPointer, "IoFreeIrp(NULL)");
        return;
    }
    let refusal = state::with_table(|table| {
        let Some(record) = table.get(&(Irp as usize)).copied() else {
            return Some(match pool::freed_kind(Irp as usize) {
                Some(BlockKind::Irp) => (Rule::IrpDoubleFree, format!("IoFreeIrp({Irp:p}) on an IRP already freed")),
                _ => (Rule::IrpBadPointer, format!("IoFreeIrp({Irp:p}): not an IRP from IoAllocateIrp")),
            });
        };
        match (record.origin, record.state) {
            (Origin::Initialized, _) => Some((
                Rule::IrpBadPointer,
                format!("IoFreeIrp({Irp:p}) on an IRP initialized with IoInitializeIrp in the driver's own memory"),
            )),
            (_, IrpState::Provider) => Some((
                Rule::IrpFreedWhileOwnedByProvider,
                format!("IoFreeIrp({Irp:p}) while a provider owns the IRP (it has not completed it)"),
            )),
            (_, IrpState::CompletedToIoManager) => {
                table.remove(&(Irp as usize));
                Some((
                    Rule::CompletionRoutineDidNotReturnMoreProcessing,
                    format!(
                        "IoFreeIrp({Irp:p}): the IRP's completion did not stop with STATUS_MORE_PROCESSING_REQUIRED, \
                         so the I/O manager completed and freed it already"
                    ),
                ))
            }
            (_, IrpState::Driver | IrpState::Returned | IrpState::Completing) => {
                table.remove(&(Irp as usize));
                None
            }
        }
    });
    let release = match &refusal {
        None => true,
        Some((rule, _)) => *rule == Rule::CompletionRoutineDidNotReturnMoreProcessing,
    };
    if let Some((rule, message)) = refusal {
        bugcheck(rule, message);
    }
    if release {
        match pool::free(Irp.cast(), BlockKind::Irp) {
            Ok(_) => {}
            Err(FreeError::AlreadyFreed { .. }) => {
                bugcheck(Rule::IrpDoubleFree, format!("IoFreeIrp({Irp:p}) on an IRP already freed"));
            }
            Err(error) => bugcheck(Rule::IrpBadPointer, format!("IoFreeIrp({Irp:p}): {error:?}")),
        }
    }
}

/// `IoSetCompletionRoutineEx`: as `IoSetCompletionRoutine`. The real routine also allocates
/// a small block that keeps the driver loaded until the routine has run; the emulator keeps
/// every driver loaded until unload anyway, so it allocates nothing and always succeeds.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be a live IRP the caller owns with a next stack location.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoSetCompletionRoutineEx(
    _DeviceObject: *mut DEVICE_OBJECT,
    Irp: *mut IRP,
    CompletionRoutine: IO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: BOOLEAN,
    InvokeOnError: BOOLEAN,
    InvokeOnCancel: BOOLEAN,
) -> NTSTATUS {
    irql::check_max("IoSetCompletionRoutineEx", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    unsafe {
        IoSetCompletionRoutine(
            Irp,
            Some(CompletionRoutine),
            Context,
            InvokeOnSuccess != 0,
            InvokeOnError != 0,
            InvokeOnCancel != 0,
        );
    }
    STATUS_SUCCESS
}
