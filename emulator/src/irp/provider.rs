//! Hooks for a provider: the code an IRP is handed to (the emulated WSK subsystem, or a test
//! playing a lower driver).
//!
//! A provider routine that receives an IRP calls [`accept`] first: like `IoCallDriver`, it
//! steps the IRP to the next stack location (the one the client's completion routine is in)
//! and marks the IRP as owned by the provider, so that the verifier catches a client that
//! frees or reuses it before completion. The provider then either completes it at once with
//! [`complete`] and returns the status, or marks it pending ([`mark_pending`]), returns
//! `STATUS_PENDING`, and completes it later from any thread; [`complete`] raises that thread
//! to DISPATCH_LEVEL for the completion routines, as a real provider completing from its DPC
//! would.
//!
//! ```text
//!   client: IoAllocateIrp -> IoSetCompletionRoutine -> WskXxx(..., irp)
//!   provider: accept(irp) -> [mark_pending -> return STATUS_PENDING ... later:]
//!             complete(irp, status, information) -> completion routine -> MORE_PROCESSING_REQUIRED
//! ```

use wsk_sys::{IRP, IoMarkIrpPending, IoSetNextIrpStackLocation, NTSTATUS, STATUS_INVALID_PARAMETER, ULONG_PTR};

use super::complete::IofCompleteRequest;
use super::state::{self, IrpState};
use crate::pool::{self, BlockKind};
use crate::verifier::{Rule, bugcheck};

/// Takes ownership of `irp` for a provider: checks that the client may pass it down, steps it
/// to the next stack location and marks it owned by the provider.
///
/// On `Err` the verifier has recorded why; the provider must return the status without
/// completing the IRP.
///
/// # Safety
/// `irp` must point to a live IRP that the client just passed to the provider.
pub unsafe fn accept(irp: *mut IRP) -> Result<(), NTSTATUS> {
    if irp.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let refusal = state::with_table(|table| {
        let Some(record) = table.get_mut(&(irp as usize)) else {
            return match pool::freed_kind(irp as usize) {
                Some(BlockKind::Irp) => {
                    Some((Rule::IrpUseAfterFree, format!("IRP {irp:p} passed to the provider after it was freed")))
                }
                _ => None,
            };
        };
        match record.state {
            IrpState::Provider => Some((
                Rule::IrpReusedWhileOwnedByProvider,
                format!("IRP {irp:p} passed to the provider again while the provider still owns it"),
            )),
            IrpState::CompletedToIoManager => Some((
                Rule::CompletionRoutineDidNotReturnMoreProcessing,
                format!(
                    "IRP {irp:p} passed to the provider after its completion reached the I/O manager (a completion \
                     routine did not return STATUS_MORE_PROCESSING_REQUIRED)"
                ),
            )),
            IrpState::Driver | IrpState::Returned | IrpState::Completing => {
                record.state = IrpState::Provider;
                None
            }
        }
    });
    if let Some((rule, message)) = refusal {
        bugcheck(rule, message);
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller guarantees a live IRP.
    let location = unsafe { (*irp).CurrentLocation };
    if location <= 1 {
        bugcheck(
            Rule::IrpNoStackLocation,
            format!("IRP {irp:p} passed to the provider with no stack location left (CurrentLocation {location})"),
        );
        state::with_table(|table| {
            if let Some(record) = table.get_mut(&(irp as usize)) {
                record.state = IrpState::Driver;
            }
        });
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the IRP is live, now owned by the provider, and has a next stack location.
    unsafe { IoSetNextIrpStackLocation(irp) };
    Ok(())
}

/// Marks the provider's stack location pending (`IoMarkIrpPending`), before the provider
/// returns `STATUS_PENDING`.
///
/// # Safety
/// `irp` must be an IRP the provider accepted and has not completed.
pub unsafe fn mark_pending(irp: *mut IRP) {
    // SAFETY: forwarded contract; the current location is the provider's.
    unsafe { IoMarkIrpPending(irp) }
}

/// Whether the IRP was cancelled (`Irp->Cancel`).
///
/// # Safety
/// `irp` must be an IRP the provider accepted and has not completed.
pub unsafe fn is_cancelled(irp: *mut IRP) -> bool {
    // SAFETY: forwarded contract.
    unsafe { (*irp).Cancel != 0 }
}

/// Completes an IRP the provider accepted: sets `IoStatus` and runs the completion walk at
/// DISPATCH_LEVEL. Completing an IRP the provider does not own is `IRP_COMPLETED_TWICE`.
///
/// # Safety
/// `irp` must be an IRP the provider accepted; the provider must not touch it afterwards.
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "two status writes to one IRP the provider owns")]
pub unsafe fn complete(irp: *mut IRP, status: NTSTATUS, information: ULONG_PTR) {
    let owned = state::with_table(|table| match table.get(&(irp as usize)) {
        Some(record) => record.state == IrpState::Provider,
        None => pool::freed_kind(irp as usize) != Some(BlockKind::Irp),
    });
    if !owned {
        bugcheck(Rule::IrpCompletedTwice, format!("provider completed IRP {irp:p} which it does not own"));
        return;
    }
    // SAFETY: the provider owns the live IRP until it completes it here.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = information;
    }
    // SAFETY: as above; ownership passes to the completion walk.
    unsafe { IofCompleteRequest(irp, 0) }
}

std::thread_local! {
    /// The next completion on this thread runs its routines at the caller's IRQL.
    static AT_CALLER_IRQL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Completes an IRP inside the call that passed it ([`complete`] otherwise). With the
/// adversary's `caller_irql_completions`, the completion routines run at the caller's IRQL
/// (PASSIVE_LEVEL from a task), as `IoCompleteRequest` runs them on Windows; otherwise at
/// DISPATCH_LEVEL like every other completion of the emulator.
///
/// # Safety
/// As [`complete`].
pub unsafe fn complete_inline(irp: *mut IRP, status: NTSTATUS, information: ULONG_PTR) {
    let keep = crate::adversary::get().caller_irql_completions;
    if keep && crate::irql::current_irql() < wsk_sys::DISPATCH_LEVEL {
        crate::adversary::count(crate::adversary::Event::CallerIrqlCompletion);
    }
    AT_CALLER_IRQL.with(|flag| flag.set(keep));
    // SAFETY: forwarded contract.
    unsafe { complete(irp, status, information) };
    AT_CALLER_IRQL.with(|flag| flag.set(false));
}

/// Whether the completion starting now keeps the caller's IRQL (read once by
/// `IofCompleteRequest`, so completions nested in its routines raise as usual).
pub(crate) fn take_caller_irql() -> bool {
    AT_CALLER_IRQL.with(|flag| flag.replace(false))
}
