//! The common shape of a socket call: wait for the slot, enter the rundown, arm the IRP,
//! call the provider, leave the rundown, await the completion.

use wsk_sys::{IRP, NTSTATUS, WSK_SOCKET};

use crate::buf::IoBuf;
use crate::error::Error;
use crate::op::{Completion, OpArgs, OpSlot, SocketOwner};
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

/// A call that could not be issued, with the buffer handed back.
pub(crate) struct NotIssued {
    pub error: Error,
    pub buffer: Option<IoBuf>,
    pub socket_owner: Option<SocketOwner>,
}

/// Issues one socket-level call and awaits its IRP.
///
/// `prepare` fills the argument block (the slot is idle); `issue` calls the provider routine
/// from `K`'s dispatch table with the socket, the IRP and the argument block, and returns its
/// status (informational: the result comes from the IRP, which the provider always
/// completes). `issue` returns `None` when the provider lacks the routine; the IRP is then
/// completed here with `STATUS_NOT_IMPLEMENTED`. A routine that returns
/// `STATUS_NOT_IMPLEMENTED` without having completed the IRP (a stub, as in Wine's netio) is
/// treated the same way: WSK providers complete failed requests before returning, so an IRP
/// still pending after that return was never taken.
///
/// # Safety
/// `issue` must pass the IRP and pointers into the argument block to exactly one provider
/// routine.
pub(crate) async unsafe fn socket_call<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_with_owner(core, slot, buffer, None, prepare, issue) }.await
}

/// [`socket_call`] for an operation that returns a new socket (accept): `owner` is held with
/// the IRP (see [`OpSlot::arm_with_owner`]) and handed back in the completion.
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn socket_call_with_owner<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, socket_owner, false, prepare, issue) }.await
}

/// [`socket_call`] for a stream receive: data the IRP brings in after its future was dropped
/// is kept for the next receive (see [`OpSlot::arm_with`]).
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn receive_call<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: IoBuf,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, Some(buffer), None, true, prepare, issue) }.await
}

/// The body of the `socket_call` forms.
///
/// # Safety
/// As [`socket_call`].
async unsafe fn socket_call_armed_with<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    keep_data: bool,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    slot.idle().await;
    // SAFETY: forwarded contract; the slot is idle.
    unsafe { issue_call_armed_with(core, slot, buffer, socket_owner, keep_data, prepare, issue) }?;
    Ok(slot.submitted().await)
}

/// The issuing half of [`socket_call_with_owner`], for state machines that poll the slot
/// themselves ([`OpSlot::poll_submitted`]): enters the rundown, arms the IRP, calls the
/// provider, leaves. On `Ok` the IRP is in flight.
///
/// # Safety
/// As [`socket_call`]; the slot is idle.
///
/// IRQL <= DISPATCH_LEVEL (as the provider routine allows).
pub(crate) unsafe fn issue_call<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<(), NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { issue_call_armed_with(core, slot, buffer, socket_owner, false, prepare, issue) }
}

/// [`issue_call`] with `keep_data` as in [`OpSlot::arm_with`].
///
/// # Safety
/// As [`issue_call`].
unsafe fn issue_call_armed_with<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    keep_data: bool,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<(), NotIssued> {
    let guard = match core.enter() {
        Ok(guard) => guard,
        Err(error) => return Err(NotIssued { error, buffer, socket_owner }),
    };
    prepare(slot.args(), buffer.as_ref());
    let (irp, args) = slot.arm_with(buffer, socket_owner, keep_data);
    let (socket, table) = guard.dispatch();
    match issue(socket, table, irp, args) {
        None => complete_not_implemented(irp),
        Some(wsk_sys::STATUS_NOT_IMPLEMENTED) if !slot.is_complete() => complete_not_implemented(irp),
        Some(_) => {}
    }
    drop(guard);
    Ok(())
}

/// Completes an armed IRP that no provider routine took, as the provider would have.
pub(crate) fn complete_not_implemented(irp: *mut IRP) {
    // SAFETY: the IRP is armed (completion routine in the next location) and was not passed
    // to any provider routine: we play the provider, make the next location current and
    // complete it.
    unsafe {
        (*irp).IoStatus.Status = wsk_sys::STATUS_NOT_IMPLEMENTED;
    }
    // SAFETY: as above.
    unsafe {
        (*irp).IoStatus.Information = 0;
    }
    // SAFETY: as above; the IRP has the one stack location the completion routine lives in.
    unsafe { wsk_sys::IoSetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    unsafe { wsk_sys::IoCompleteRequest(irp, 0) };
}

/// `Ok(())` for a call that completed successfully, else its error.
pub(crate) fn unit(done: Result<Completion, NotIssued>) -> crate::error::Result<()> {
    match done {
        Ok(done) => done.result().map(|_| ()),
        Err(NotIssued { error, .. }) => Err(error),
    }
}

/// The byte count (or the error) of a call that took a buffer, and the buffer handed back.
pub(crate) fn with_buffer(done: Result<Completion, NotIssued>) -> (crate::error::Result<usize>, IoBuf) {
    match done {
        Ok(done) => (done.result(), done.buffer.expect("operation buffer returned by completion")),
        Err(NotIssued { error, buffer, .. }) => (Err(error), buffer.expect("buffer handed back")),
    }
}
