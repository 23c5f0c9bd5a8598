//! `IofCompleteRequest`: the I/O manager's completion walk.
//!
//! From the current stack location upward, each location's completion routine runs if its
//! `SL_INVOKE_ON_*` flags match the final status (`SL_INVOKE_ON_CANCEL` when `Irp->Cancel` is
//! set and the status is `STATUS_CANCELLED`), with `PendingReturned` taken from the location's
//! `SL_PENDING_RETURNED` and propagated upward when no routine runs. The walk stops as soon as a
//! routine returns `STATUS_MORE_PROCESSING_REQUIRED`: the IRP is the driver's again. A walk that
//! reaches the top hands the IRP to the I/O manager, which for a driver-allocated IRP is a bug
//! the verifier reports when the driver later frees or reuses it.
//!
//! Completion routines run at DISPATCH_LEVEL (the worst case a driver must handle).

use std::ptr;

use wsk_sys::{
    CCHAR, DISPATCH_LEVEL, IO_NO_INCREMENT, IRP, IoGetCurrentIrpStackLocation, IoMarkIrpPending, IoSetCancelRoutine,
    IoSkipCurrentIrpStackLocation, KeSetEvent, NT_SUCCESS, SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_ERROR,
    SL_INVOKE_ON_SUCCESS, SL_PENDING_RETURNED, STATUS_CANCELLED, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING,
    status_name,
};

use super::state::{self, IrpState};
use crate::counters::bump;
use crate::irql::{self, current_irql};
use crate::pool::{self, BlockKind};
use crate::verifier::{Rule, bugcheck};

/// A status as text: its name when known.
pub(crate) fn describe_status(status: i32) -> String {
    match status_name(status) {
        Some(name) => format!("{name} (0x{:08X})", status as u32),
        None => format!("0x{:08X}", status as u32),
    }
}

/// Checks that `irp` may be completed now and moves it to `Completing`. Returns the IRP's
/// tracking id (`None` for an IRP the emulator does not track), or `Err` to refuse.
fn begin(irp: *mut IRP, current_location: CCHAR, stack_count: CCHAR) -> Result<Option<u64>, ()> {
    let refusal = state::with_table(|table| {
        let Some(record) = table.get_mut(&(irp as usize)) else {
            return match pool::freed_kind(irp as usize) {
                Some(BlockKind::Irp) => {
                    Err(format!("IofCompleteRequest({irp:p}) on an IRP already freed (completed after free)"))
                }
                _ => Ok(None),
            };
        };
        if i32::from(current_location) > i32::from(stack_count) + 1 {
            return Err(format!(
                "IofCompleteRequest({irp:p}): current location {current_location} is past the end of {stack_count} \
                 stack locations"
            ));
        }
        match record.state {
            IrpState::Driver | IrpState::Provider => {}
            IrpState::Returned if current_location <= stack_count => {}
            IrpState::Returned => {
                return Err(format!(
                    "IofCompleteRequest({irp:p}): the IRP was completed already (its completion routine returned \
                     STATUS_MORE_PROCESSING_REQUIRED) and has not been passed down again"
                ));
            }
            IrpState::Completing => {
                return Err(format!("IofCompleteRequest({irp:p}) while the IRP's completion is in progress"));
            }
            IrpState::CompletedToIoManager => {
                return Err(format!("IofCompleteRequest({irp:p}): the IRP was completed to the I/O manager already"));
            }
        }
        record.state = IrpState::Completing;
        Ok(Some(record.id))
    });
    refusal.map_err(|message| bugcheck(Rule::IrpCompletedTwice, message))
}

/// `IofCompleteRequest` (`IoCompleteRequest`): completes `Irp` with the status in its
/// `IoStatus`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be a live IRP owned by the caller (a provider, or the driver completing its own
/// request), not yet completed.
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "plain header reads of one live IRP")]
pub unsafe extern "system" fn IofCompleteRequest(Irp: *mut IRP, _PriorityBoost: CCHAR) {
    irql::check_max("IofCompleteRequest", DISPATCH_LEVEL);
    if Irp.is_null() {
        bugcheck(Rule::IrpBadPointer, "IofCompleteRequest(NULL)");
        return;
    }
    bump::irps_completed(1);
    // SAFETY: the caller guarantees a live IRP; these are plain header fields.
    let (status, stack_count, current_location) =
        unsafe { ((*Irp).IoStatus.Status, (*Irp).StackCount, (*Irp).CurrentLocation) };
    if status == STATUS_PENDING {
        bugcheck(Rule::IrpCompletedWithPending, format!("IofCompleteRequest({Irp:p}) with STATUS_PENDING"));
        return;
    }
    let Ok(id) = begin(Irp, current_location, stack_count) else { return };
    // SAFETY: the IRP is live; `IoSetCancelRoutine` exchanges the field atomically.
    if let Some(routine) = unsafe { IoSetCancelRoutine(Irp, None) } {
        bugcheck(
            Rule::IrpCompletedWithCancelRoutine,
            format!("IofCompleteRequest({Irp:p}) with cancel routine {:p} still set", routine as *const ()),
        );
    }
    // A provider's completion runs at DISPATCH_LEVEL, as from its DPC; one made inside the
    // dispatch call may keep the caller's IRQL (`provider::complete_inline`).
    let irql = if super::provider::take_caller_irql() { current_irql() } else { current_irql().max(DISPATCH_LEVEL) };
    let _dispatch = irql::enter_irql(irql);
    // SAFETY: the caller gave up the IRP to this routine; it stays live until a completion
    // routine takes it back (checked through the tracking table after every routine).
    unsafe { walk(Irp, id, stack_count) }
}

/// Runs the completion walk. Returns when a routine took the IRP back or the walk finished.
///
/// # Safety
/// `irp` must be live and in the `Completing` state (or untracked when `id` is `None`).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the completion walk reads and writes the stack locations of one IRP under one invariant (location checked inside the IRP at each step)"
)]
unsafe fn walk(irp: *mut IRP, id: Option<u64>, stack_count: CCHAR) {
    // SAFETY: (whole loop) the IRP is live while it is in the `Completing` state; every
    // location read lies between the IRP header and its last stack location because
    // `CurrentLocation <= StackCount` is checked before each step.
    unsafe {
        while (*irp).CurrentLocation <= stack_count && (*irp).CurrentLocation >= 1 {
            let location = IoGetCurrentIrpStackLocation(irp);
            let control = (*location).Control;
            let routine = (*location).CompletionRoutine.take();
            let context = std::mem::replace(&mut (*location).Context, ptr::null_mut());
            (*location).Control = 0;
            (*irp).PendingReturned = u8::from(control & SL_PENDING_RETURNED != 0);
            IoSkipCurrentIrpStackLocation(irp);
            let status = (*irp).IoStatus.Status;
            let invoke = (NT_SUCCESS(status) && control & SL_INVOKE_ON_SUCCESS != 0)
                || (!NT_SUCCESS(status) && control & SL_INVOKE_ON_ERROR != 0)
                || ((*irp).Cancel != 0 && status == STATUS_CANCELLED && control & SL_INVOKE_ON_CANCEL != 0);
            match routine {
                Some(routine) if invoke => {
                    let device = if (*irp).CurrentLocation > stack_count {
                        ptr::null_mut()
                    } else {
                        (*IoGetCurrentIrpStackLocation(irp)).DeviceObject
                    };
                    let irql = current_irql();
                    let result = routine(device, irp, context);
                    super::check_cancel_lock_released("a completion routine");
                    irql::check_restored("a completion routine", irql);
                    if result == STATUS_MORE_PROCESSING_REQUIRED {
                        if let Some(id) = id {
                            state::transition(irp, id, IrpState::Completing, IrpState::Returned);
                        }
                        return;
                    }
                    if let Some(id) = id
                        && !state::is(irp, id, IrpState::Completing)
                    {
                        bugcheck(
                            Rule::CompletionRoutineDidNotReturnMoreProcessing,
                            format!(
                                "completion routine {:p} freed or reused IRP {irp:p} but returned {}; the I/O \
                                 manager goes on completing it",
                                routine as *const (),
                                describe_status(result)
                            ),
                        );
                        return;
                    }
                }
                _ => {
                    if (*irp).PendingReturned != 0 && (*irp).CurrentLocation <= stack_count {
                        IoMarkIrpPending(irp);
                    }
                }
            }
        }
        // The walk reached the top: the I/O manager finishes the request.
        if let Some(id) = id {
            state::transition(irp, id, IrpState::Completing, IrpState::CompletedToIoManager);
        }
        let iosb = (*irp).UserIosb;
        if !iosb.is_null() {
            *iosb = (*irp).IoStatus;
        }
        let event = (*irp).UserEvent;
        if !event.is_null() {
            KeSetEvent(event, IO_NO_INCREMENT, 0);
        }
    }
}
