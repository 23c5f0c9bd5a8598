//! The common shape of a socket call: wait for the slot, enter the rundown, arm the IRP,
//! call the provider, leave the rundown, await the completion.
//!
//! A call with a deadline (`Some(timeout)`) arms the slot's timer after the provider call
//! ([`Armed::submit_with_deadline`](crate::op::Armed::submit_with_deadline)): at the deadline
//! the IRP is cancelled, and the call still awaits its completion, so what the IRP held comes
//! back to the caller.

use core::time::Duration;

use wsk_sys::{IRP, NTSTATUS, WSK_SOCKET};

use crate::buf::IoBuf;
use crate::error::Error;
use crate::op::{Completion, InFlight, OpArgs, OpSlot, SocketOwner};
use crate::pool::AnyPoolBox;
use crate::socket::events::Received;
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

/// A call that could not be issued, with the buffer handed back.
pub(crate) struct NotIssued {
    pub error: Error,
    pub buffer: Option<IoBuf>,
    pub socket_owner: Option<SocketOwner>,
    /// The request block given to [`socket_call_holding`], handed back.
    pub block: Option<AnyPoolBox>,
    /// The received item given to [`socket_call_holding`], handed back (not released).
    pub item: Option<Received>,
}

/// What a send over memory the caller does not hand over as an `IoBuf` holds while its IRP is
/// in flight: a request block (a [`SendChain`](crate::send_chain::SendChain)'s pieces) and/or
/// a received item (see [`Armed::hold_item`](crate::op::Armed::hold_item)).
pub(crate) struct Holding {
    pub block: Option<AnyPoolBox>,
    pub item: Option<Received>,
}

impl Holding {
    const NOTHING: Holding = Holding { block: None, item: None };
}

/// Issues one socket-level call and awaits its IRP.
///
/// `prepare` fills the argument block (the slot is armed); `issue` calls the provider routine
/// from `K`'s dispatch table with the socket, the IRP and the argument block, and returns its
/// status, or `None` when the provider lacks the routine (see
/// [`Armed::submit`](crate::op::Armed::submit), which completes an IRP no routine took with
/// `STATUS_NOT_IMPLEMENTED`).
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
    unsafe { socket_call_armed_with(core, slot, buffer, None, false, None, prepare, issue) }.await
}

/// [`socket_call`] with a deadline (see the module documentation); `None` waits as long as
/// the IRP takes.
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn socket_call_within<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    deadline: Option<Duration>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, None, false, deadline, prepare, issue) }.await
}

/// [`socket_call`] for an operation that returns a new socket (accept): `owner` is held with
/// the IRP (see [`Armed::hold_owner`](crate::op::Armed::hold_owner)) and handed back in the
/// completion. With a deadline (see the module documentation).
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn socket_call_with_owner<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    deadline: Option<Duration>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, socket_owner, false, deadline, prepare, issue) }.await
}

/// [`socket_call`] for a stream receive: data the IRP brings in after its future was dropped
/// is kept for the next receive (see [`Armed::keep_data`](crate::op::Armed::keep_data)).
/// With a deadline (see the module documentation).
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn receive_call<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: IoBuf,
    deadline: Option<Duration>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, Some(buffer), None, true, deadline, prepare, issue) }.await
}

/// [`socket_call`] for a send over memory held as `holding` (a request block and/or a
/// received item) instead of an `IoBuf`: both stay alive until the IRP completed and come back
/// in the completion (or in `NotIssued`); if the future is dropped, the completion path drops
/// them after the IRP completed.
///
/// # Safety
/// As [`socket_call`].
pub(crate) async unsafe fn socket_call_holding<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    holding: Holding,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    slot.idle().await;
    // SAFETY: forwarded contract.
    let in_flight = unsafe { issue_call_armed_with(core, slot, None, None, holding, false, None, prepare, issue) }?;
    Ok(in_flight.await)
}

/// The body of the `socket_call` forms.
///
/// # Safety
/// As [`socket_call`].
#[expect(clippy::too_many_arguments, reason = "the private body behind the named forms above")]
async unsafe fn socket_call_armed_with<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    keep_data: bool,
    deadline: Option<Duration>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<Completion, NotIssued> {
    slot.idle().await;
    // SAFETY: forwarded contract. Nothing else to hold: this future's state stays as small
    // as the plain forms need (the holding form has a body of its own).
    let in_flight = unsafe {
        issue_call_armed_with(core, slot, buffer, socket_owner, Holding::NOTHING, keep_data, deadline, prepare, issue)
    }?;
    Ok(in_flight.await)
}

/// The issuing half of [`socket_call_with_owner`], for state machines that poll the slot
/// themselves ([`OpSlot::poll_submitted`]): enters the rundown, arms the IRP, calls the
/// provider, leaves. On `Ok` the IRP is in flight. A slot that is not idle is refused
/// (`NotIssued`, the buffer handed back).
///
/// # Safety
/// As [`socket_call`].
///
/// IRQL <= DISPATCH_LEVEL (as the provider routine allows).
#[expect(
    clippy::result_large_err,
    reason = "the refusal hands back by value what the call was given; boxing it could fail for want of memory"
)]
pub(crate) unsafe fn issue_call<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<(), NotIssued> {
    // SAFETY: forwarded contract.
    unsafe { issue_call_armed_with(core, slot, buffer, socket_owner, Holding::NOTHING, false, None, prepare, issue) }
        .map(InFlight::detach)
}

/// [`issue_call`] with `keep_data` (see [`Armed::keep_data`](crate::op::Armed::keep_data))
/// and an optional deadline, returning the operation in flight.
///
/// # Safety
/// As [`issue_call`].
#[expect(clippy::too_many_arguments, reason = "the private body behind the named forms above")]
#[expect(
    clippy::result_large_err,
    reason = "the refusal hands back by value what the call was given; boxing it could fail for want of memory"
)]
unsafe fn issue_call_armed_with<'s, K: SocketKind>(
    core: &SocketCore<K>,
    slot: &'s mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    holding: Holding,
    keep_data: bool,
    deadline: Option<Duration>,
    prepare: impl FnOnce(&mut OpArgs, Option<&IoBuf>),
    issue: impl FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
) -> Result<InFlight<'s>, NotIssued> {
    let mut armed = match slot.arm() {
        Ok(armed) => armed,
        Err(busy) => {
            let Holding { block, item } = holding;
            return Err(NotIssued { error: busy.error(), buffer, socket_owner, block, item });
        }
    };
    armed.hold_buffer(buffer);
    armed.hold_owner(socket_owner);
    armed.hold_any_block(holding.block);
    armed.hold_item(holding.item);
    if keep_data {
        armed.keep_data();
    }
    let guard = match core.enter() {
        Ok(guard) => guard,
        Err(error) => {
            let withdrawn = armed.withdraw();
            return Err(NotIssued {
                error,
                buffer: withdrawn.buffer,
                socket_owner: withdrawn.socket_owner,
                block: withdrawn.block,
                item: withdrawn.item,
            });
        }
    };
    let (args, buffer) = armed.args();
    prepare(args, buffer);
    let (socket, table) = guard.dispatch();
    let call = |irp, args| issue(socket, table, irp, args);
    let in_flight = match deadline {
        // SAFETY: the caller guarantees `issue` passes the IRP and pointers into the argument
        // block to exactly one provider routine (and returns its status), or returns `None`.
        Some(after) => unsafe { armed.submit_with_deadline(after, call) },
        // SAFETY: as above.
        None => unsafe { armed.submit(call) },
    };
    drop(guard);
    Ok(in_flight)
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
