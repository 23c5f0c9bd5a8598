//! The common shape of a socket call: wait for the slot, enter the rundown, arm the IRP,
//! call the provider, leave the rundown, await the completion.
//!
//! A call with a deadline (`Some(timeout)`) arms the slot's timer after the provider call
//! ([`Armed::submit_with_deadline`](crate::op::Armed::submit_with_deadline)): at the deadline
//! the IRP is cancelled, and the call still awaits its completion, so what the IRP held comes
//! back to the caller.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
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

/// What a [`Call`] holds besides its buffer until it is issued: nothing (`()`, the plain
/// forms, whose futures carry no room for it) or a [`Holding`] ([`socket_call_holding`]).
pub(crate) trait Held {
    /// What the slot is to hold while the IRP is in flight.
    fn into_holding(self) -> Holding;
}

impl Held for () {
    fn into_holding(self) -> Holding {
        Holding::NOTHING
    }
}

impl Held for Holding {
    fn into_holding(self) -> Holding {
        self
    }
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
pub(crate) unsafe fn socket_call<'a, K: SocketKind, P, I>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: Option<IoBuf>,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, None, (), false, None, prepare, issue) }
}

/// [`socket_call`] with a deadline (see the module documentation); `None` waits as long as
/// the IRP takes.
///
/// # Safety
/// As [`socket_call`].
pub(crate) unsafe fn socket_call_within<'a, K: SocketKind, P, I>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: Option<IoBuf>,
    deadline: Option<Duration>,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, None, (), false, deadline, prepare, issue) }
}

/// [`socket_call`] for an operation that returns a new socket (accept): `owner` is held with
/// the IRP (see [`Armed::hold_owner`](crate::op::Armed::hold_owner)) and handed back in the
/// completion. With a deadline (see the module documentation).
///
/// # Safety
/// As [`socket_call`].
pub(crate) unsafe fn socket_call_with_owner<'a, K: SocketKind, P, I>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    deadline: Option<Duration>,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, buffer, socket_owner, (), false, deadline, prepare, issue) }
}

/// [`socket_call`] for a stream receive: data the IRP brings in after its future was dropped
/// is kept for the next receive (see [`Armed::keep_data`](crate::op::Armed::keep_data)).
/// With a deadline (see the module documentation).
///
/// # Safety
/// As [`socket_call`].
pub(crate) unsafe fn receive_call<'a, K: SocketKind, P, I>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: IoBuf,
    deadline: Option<Duration>,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, Some(buffer), None, (), true, deadline, prepare, issue) }
}

/// [`socket_call`] for a send over memory held as `holding` (a request block and/or a
/// received item) instead of an `IoBuf`: both stay alive until the IRP completed and come back
/// in the completion (or in `NotIssued`); if the future is dropped, the completion path drops
/// them after the IRP completed.
///
/// # Safety
/// As [`socket_call`].
pub(crate) unsafe fn socket_call_holding<'a, K: SocketKind, P, I>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    holding: Holding,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I, Holding>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // SAFETY: forwarded contract.
    unsafe { socket_call_armed_with(core, slot, None, None, holding, false, None, prepare, issue) }
}

/// The body of the `socket_call` forms.
///
/// # Safety
/// As [`socket_call`].
#[expect(clippy::too_many_arguments, reason = "the private body behind the named forms above")]
unsafe fn socket_call_armed_with<'a, K: SocketKind, P, I, H>(
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    holding: H,
    keep_data: bool,
    deadline: Option<Duration>,
    prepare: P,
    issue: I,
) -> Call<'a, K, P, I, H>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    // INVARIANT: the caller's contract is `socket_call`'s.
    Call { stage: Stage::Idle(Args { core, slot, buffer, socket_owner, keep_data, deadline, prepare, issue, holding }) }
}

/// The future of the `socket_call` forms: waits until the slot is idle, issues the call,
/// then waits for its IRP. Written out rather than as an `async fn`, which would keep room
/// for its arguments twice: every send and receive of a task nests one, so its size is part
/// of what each connection's task costs.
///
/// # Invariants
/// In [`Stage::Idle`] the arguments were given by a caller of an unsafe `socket_call` form,
/// who guaranteed its contract for them.
pub(crate) struct Call<'a, K: SocketKind, P, I, H = ()> {
    stage: Stage<'a, K, P, I, H>,
}

// Nothing of a `Call` is pinned in place: the closures are moved out to be called, never
// polled, and the operation in flight (`InFlight`) is `Unpin` itself.
impl<K: SocketKind, P, I, H> Unpin for Call<'_, K, P, I, H> {}

enum Stage<'a, K: SocketKind, P, I, H> {
    /// Waiting for the slot to be idle.
    Idle(Args<'a, K, P, I, H>),
    /// The IRP is in flight (dropping it cancels the IRP).
    InFlight(InFlight<'a>),
    /// Resolved.
    Done,
}

struct Args<'a, K: SocketKind, P, I, H> {
    core: &'a SocketCore<K>,
    slot: &'a mut OpSlot,
    buffer: Option<IoBuf>,
    socket_owner: Option<SocketOwner>,
    keep_data: bool,
    deadline: Option<Duration>,
    prepare: P,
    issue: I,
    holding: H,
}

impl<K: SocketKind, P, I, H: Held> Future for Call<'_, K, P, I, H>
where
    P: FnOnce(&mut OpArgs, Option<&IoBuf>),
    I: FnOnce(*mut WSK_SOCKET, &K::Dispatch, *mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
{
    type Output = Result<Completion, NotIssued>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Idle(args) => {
                    core::task::ready!(args.slot.poll_idle(cx));
                    let Stage::Idle(args) = core::mem::replace(&mut this.stage, Stage::Done) else {
                        unreachable!("matched above")
                    };
                    let Args { core, slot, buffer, socket_owner, keep_data, deadline, prepare, issue, holding } = args;
                    // SAFETY: the contract of the `socket_call` form that built this future
                    // (invariant).
                    match unsafe {
                        issue_call_armed_with(
                            core,
                            slot,
                            buffer,
                            socket_owner,
                            holding.into_holding(),
                            keep_data,
                            deadline,
                            prepare,
                            issue,
                        )
                    } {
                        Ok(in_flight) => this.stage = Stage::InFlight(in_flight),
                        Err(not_issued) => return Poll::Ready(Err(not_issued)),
                    }
                }
                Stage::InFlight(in_flight) => {
                    let done = core::task::ready!(Pin::new(in_flight).poll(cx));
                    this.stage = Stage::Done;
                    return Poll::Ready(Ok(done));
                }
                Stage::Done => panic!("socket call polled after it resolved"),
            }
        }
    }
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
