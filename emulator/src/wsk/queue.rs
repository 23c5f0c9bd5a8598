//! Pending operations: per-socket queues of IRPs, the cancel routine, and completion.
//!
//! # Who owns a queued IRP
//!
//! A queued IRP is cancelable: its cancel routine is set and `DriverContext[0]` holds a
//! reference to its socket. Whoever clears the cancel routine (an atomic exchange) owns the
//! IRP and is the only one that may complete it:
//!
//! ```text
//!   queued (cancel routine set) --claim: exchange -> NULL got the routine--> owned by the provider
//!        |                                   |  I/O would block: rearm (routine set again;
//!        |                                   |  if Cancel was set meanwhile, claim again)
//!        | IoCancelIrp took the routine      v
//!        v                              complete (status of the I/O)
//!   owned by the cancel routine --> removes the op from its queue --> complete STATUS_CANCELLED
//! ```
//!
//! A provider path that fails to claim an op marks it `cancel_owned` and leaves it in the
//! queue for the cancel routine to remove. All queue changes happen under the socket's lock;
//! IRPs are completed after it is released (completion routines may call back into the
//! provider). `State::inflight` counts IRPs taken out of the queues and not yet completed: a
//! pending close completes only once it is zero and the queues are empty, so every cancelled
//! IRP completes before the close IRP, and nothing touches the client's memory afterwards.

// This module reads and writes IRP fields the provider owns through raw pointers; several
// unsafe operations per block keep the ownership reasoning in one place.

use std::collections::VecDeque;
use std::sync::Arc;

use wsk_sys::{
    DEVICE_OBJECT, DRIVER_CANCEL, IRP, IoReleaseCancelSpinLock, IoSetCancelRoutine, NTSTATUS, STATUS_CANCELLED,
    STATUS_INVALID_HANDLE, STATUS_PENDING, STATUS_SUCCESS,
};

use super::io::{self, Step};
use super::model::{Action, Actions, Irp, Kind, Op, OpKind, Queue, State};
use super::processors::{self, Job};
use super::socket::{self, Socket};
use super::{events, loopback, reactor};
use crate::irp::provider;
use crate::sync::lock;

/// Stores a socket reference in the IRP for the cancel routine.
///
/// # Safety
/// The provider owns `irp`.
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "one write of a union field of an IRP the provider owns")]
unsafe fn attach_context(irp: *mut IRP, socket: &Arc<Socket>) {
    let context = Arc::into_raw(Arc::clone(socket)).cast_mut().cast();
    // SAFETY: the provider owns the IRP; `DriverContext` belongs to its current owner.
    unsafe { (*irp).Tail.Overlay.DriverContext[0] = context };
}

/// Takes back the socket reference stored by [`attach_context`].
///
/// # Safety
/// The caller owns `irp`, and [`attach_context`] was called for it since it was queued.
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "one exchange of a union field of an IRP the provider owns")]
unsafe fn detach_context(irp: *mut IRP) -> Option<Arc<Socket>> {
    // SAFETY: the caller owns the IRP.
    let context = unsafe { std::mem::replace(&mut (*irp).Tail.Overlay.DriverContext[0], std::ptr::null_mut()) };
    // SAFETY: a non-null context is a reference from `Arc::into_raw` in `attach_context`,
    // taken back exactly once (it is cleared above).
    (!context.is_null()).then(|| unsafe { Arc::from_raw(context.cast_const().cast::<Socket>()) })
}

/// Takes a queued IRP out of the cancelable state. `true`: the caller owns it now.
///
/// With the `wine-uncancelable-irps` quirk no IRP ever has a cancel routine (see [`rearm`]),
/// so the provider always owns its queued IRPs.
///
/// # Safety
/// `irp` is a queued IRP (not completed).
unsafe fn claim(irp: *mut IRP) -> bool {
    if crate::quirks::get().wine_uncancelable_irps {
        return true;
    }
    // SAFETY: the IRP is live while queued; the exchange is atomic.
    unsafe { IoSetCancelRoutine(irp, None).is_some() }
}

/// The outcome of making an owned IRP cancelable again.
enum Rearm {
    /// Cancelable; it stays queued.
    Armed,
    /// It was cancelled meanwhile and the caller still owns it: complete it cancelled.
    CancelNow,
    /// It was cancelled meanwhile and the cancel routine owns it.
    CancelOwned,
}

/// Makes an owned IRP cancelable (again), watching for a cancel that came meanwhile.
///
/// With the `wine-uncancelable-irps` quirk it sets no cancel routine, as Wine's netio does:
/// `IoCancelIrp` then finds none, returns FALSE, and the IRP completes only when its operation
/// does or `WskCloseSocket` completes it.
///
/// # Safety
/// The caller owns `irp` and has attached the socket context.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "arming the cancel routine and reading `Cancel` after it is one ordered step on one IRP"
)]
unsafe fn rearm(irp: *mut IRP) -> Rearm {
    if crate::quirks::get().wine_uncancelable_irps {
        return Rearm::Armed;
    }
    // SAFETY: the caller owns the live IRP; the routine is exchanged atomically and `Cancel`
    // is read after it (IoCancelIrp writes `Cancel` before exchanging the routine).
    unsafe {
        IoSetCancelRoutine(irp, Some(cancel_routine as DRIVER_CANCEL));
        let cancel = std::sync::atomic::AtomicU8::from_ptr(&raw mut (*irp).Cancel);
        if cancel.load(std::sync::atomic::Ordering::Acquire) == 0 {
            Rearm::Armed
        } else if claim(irp) {
            Rearm::CancelNow
        } else {
            Rearm::CancelOwned
        }
    }
}

/// Records the cancellation of an owned op: completes it with `STATUS_CANCELLED`; a
/// `WskSocketConnect` socket never handed out goes away with it.
fn cancelled(op: Op, state: &mut State, actions: &mut Actions, queued: bool) {
    if let OpKind::Connect { create: true } = op.kind {
        state.closing = true;
        state.close_host(false);
        actions.push(Action::Retire);
    }
    state.inflight += 1;
    actions.push(Action::Complete { irp: op.irp, status: STATUS_CANCELLED, info: 0, queued });
}

/// The cancel routine of every queued IRP. Called by `IoCancelIrp` with the cancel spin
/// lock held, at DISPATCH_LEVEL.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the cancel routine releases the spin lock and takes its IRP's context under one invariant (it won the routine exchange)"
)]
unsafe extern "system" fn cancel_routine(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: IoCancelIrp holds the cancel spin lock for us and stored the IRQL to return to;
    // the IRP is ours (we won the exchange of the cancel routine).
    let socket = unsafe {
        IoReleaseCancelSpinLock((*irp).CancelIrql);
        detach_context(irp)
    };
    let Some(socket) = socket else { return };
    let mut actions = Actions::new();
    {
        let mut state = lock(&socket.state);
        let mut found = None;
        for queue in Queue::ALL {
            let ops = state.queue(queue);
            if let Some(at) = ops.iter().position(|op| op.irp.0 == irp) {
                found = ops.remove(at);
                break;
            }
        }
        match found {
            Some(op) => cancelled(op, &mut state, &mut actions, false),
            None => {
                state.inflight += 1;
                actions.push(Action::Complete { irp: Irp(irp), status: STATUS_CANCELLED, info: 0, queued: false });
            }
        }
    }
    run(&socket, actions);
}

/// Performs `actions` (no lock held), then settles the socket's in-flight count and a
/// pending close.
pub(crate) fn run(socket: &Arc<Socket>, actions: Actions) {
    let mut completed = 0;
    let processors = processors::active();
    for action in actions {
        match action {
            Action::Complete { irp, status, info, queued: true } if processors && crate::adversary::chance(500_000) => {
                // Another processor completes it, later (it settles the in-flight count).
                crate::adversary::count(crate::adversary::Event::MovedCompletion);
                processors::post(Job::Complete { socket: Arc::clone(socket), irp, status, info });
            }
            Action::Complete { irp, status, info, queued } => {
                if queued {
                    // SAFETY: the provider owns the IRP (claimed) and attached a context when
                    // it was queued.
                    drop(unsafe { detach_context(irp.0) });
                    // SAFETY: the provider owns the IRP and does not touch it afterwards.
                    unsafe { provider::complete(irp.0, status, info) };
                } else {
                    // Completed inside the call that passed it (or the cancel that took it).
                    // SAFETY: as above.
                    unsafe { provider::complete_inline(irp.0, status, info) };
                }
                completed += 1;
            }
            Action::Retire => socket::retire(socket),
        }
    }
    if completed > 0 {
        finish(socket, completed);
    }
    // What the completed operations made ready on in-memory peers.
    loopback::run_pending();
}

/// Completes a queued IRP the provider claimed, on a processor ([`processors::Job::Complete`]),
/// and settles the socket's in-flight count as [`run`] does.
pub(crate) fn complete_late(socket: &Arc<Socket>, irp: Irp, status: NTSTATUS, info: usize) {
    // SAFETY: the provider owns the IRP (claimed) and attached a context when it was queued.
    drop(unsafe { detach_context(irp.0) });
    // SAFETY: the provider owns the IRP and does not touch it afterwards.
    unsafe { provider::complete(irp.0, status, info) };
    finish(socket, 1);
}

/// `completed` IRPs taken out of the queues have completed; completes a pending close that
/// was waiting for them.
fn finish(socket: &Arc<Socket>, completed: usize) {
    let (close, kick) = {
        let mut state = lock(&socket.state);
        state.inflight -= completed;
        let kick = events::after_completions(&mut state);
        (state.take_close_if_ready(), kick)
    };
    if kick {
        reactor::kick(socket.key);
    }
    if let Some(irp) = close {
        complete_close(socket, irp);
    }
}

/// Completes a socket's close: indications the client still retains are reclaimed (a
/// violation), the close IRP completes, and then the socket is retired.
///
/// Retiring comes last: `WskDeregister` waits until every socket of the client is closed, and
/// a close is complete when its IRP's completion routine has returned; a retired socket no
/// longer holds deregistration back (test `deregister_waits_for_sockets_to_close`).
pub(crate) fn complete_close(socket: &Arc<Socket>, irp: Irp) {
    events::reclaim_at_close(socket);
    // SAFETY: the close IRP was accepted by `close` (and marked pending if it waited); it is
    // completed once, by whoever took it from the socket.
    unsafe { provider::complete(irp.0, STATUS_SUCCESS, 0) };
    socket::retire(socket);
}

/// Whether a live (not cancel-owned) op waits in `queue`.
pub(crate) fn busy(state: &mut State, queue: Queue) -> bool {
    state.queue(queue).iter().any(|op| !op.cancel_owned)
}

/// Runs a new operation on an accepted IRP: at once when nothing waits ahead of it and the
/// host can do it now (completing the IRP before returning its status), else queued
/// (`STATUS_PENDING`, completed later from the reactor thread).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "marking pending, attaching the context and arming the cancel routine are one ordered step on one owned IRP"
)]
pub(crate) fn submit(socket: &Arc<Socket>, irp: Irp, queue: Queue, kind: OpKind) -> NTSTATUS {
    let mut actions = Actions::new();
    let mut op = Op { irp, kind, cancel_owned: false };
    let immediate = {
        let mut state = lock(&socket.state);
        let mut immediate = None;
        if state.closing {
            state.inflight += 1;
            immediate = Some((STATUS_INVALID_HANDLE, 0));
        } else if !busy(&mut state, queue)
            && !late()
            && let Step::Done(status, info) = io::attempt(socket, &mut state, &mut op, &mut actions)
        {
            state.inflight += 1;
            immediate = Some((status, info));
        }
        if immediate.is_none() {
            // SAFETY: the provider owns the IRP; it is marked pending before anyone can
            // complete it, and the context is attached before it becomes cancelable.
            let rearmed = unsafe {
                provider::mark_pending(irp.0);
                attach_context(irp.0, socket);
                rearm(irp.0)
            };
            match rearmed {
                Rearm::Armed => state.queue(queue).push_back(op),
                Rearm::CancelNow => cancelled(op, &mut state, &mut actions, true),
                Rearm::CancelOwned => {
                    op.cancel_owned = true;
                    state.queue(queue).push_back(op);
                }
            }
        }
        immediate
    };
    match immediate {
        Some((status, info)) => {
            actions.insert(0, Action::Complete { irp, status, info, queued: false });
            run(socket, actions);
            status
        }
        None => {
            run(socket, actions);
            if processors::active() {
                // A processor looks at the socket again: an op left pending on purpose (or
                // one whose readiness edge came before it was queued) is served there.
                processors::post(Job::Ready(socket.key, false));
                if matches!(queue, Queue::Receive | Queue::Accept)
                    && crate::adversary::chance(crate::adversary::get().provider_cancel_ppm)
                {
                    // The provider cancels it on its own: half the time inside this call, half
                    // from a processor after a random delay (unless it completed first).
                    if crate::adversary::roll() & 1 == 0 {
                        adversary_cancels(socket, queue);
                    } else {
                        processors::post(Job::ProviderCancel(socket.key, queue));
                    }
                }
            }
            STATUS_PENDING
        }
    }
}

/// Whether the adversary has an operation that might complete inside its call left pending
/// instead (`late_completion_ppm`), to be completed by a processor. Only with processors
/// (the I/O thread would need a readiness edge to find it).
fn late() -> bool {
    let adversary = crate::adversary::get();
    let late = adversary.processors > 0 && crate::adversary::chance(adversary.late_completion_ppm);
    if late {
        crate::adversary::count(crate::adversary::Event::LateCompletion);
    }
    late
}

/// Moves the ops of `queue` forward as far as the host allows (reactor thread).
fn drive(socket: &Arc<Socket>, state: &mut State, queue: Queue, actions: &mut Actions) {
    let mut ops = std::mem::take(state.queue(queue));
    let mut at = 0;
    while at < ops.len() {
        if ops[at].cancel_owned {
            at += 1;
            continue;
        }
        // SAFETY: a queued op's IRP is live until someone who claimed it completes it.
        if !unsafe { claim(ops[at].irp.0) } {
            ops[at].cancel_owned = true;
            at += 1;
            continue;
        }
        match io::attempt(socket, state, &mut ops[at], actions) {
            Step::Done(status, info) => {
                let Some(op) = ops.remove(at) else { break };
                state.inflight += 1;
                actions.push(Action::Complete { irp: op.irp, status, info, queued: true });
            }
            // SAFETY: claimed above; the context is still attached.
            Step::Blocked => match unsafe { rearm(ops[at].irp.0) } {
                Rearm::Armed => break,
                Rearm::CancelNow => {
                    let Some(op) = ops.remove(at) else { break };
                    cancelled(op, state, actions, true);
                }
                Rearm::CancelOwned => {
                    ops[at].cancel_owned = true;
                    at += 1;
                }
            },
        }
    }
    let added = std::mem::replace(state.queue(queue), ops);
    state.queue(queue).extend(added);
}

/// The reactor saw the socket become ready: moves every queue forward.
pub(crate) fn progress(socket: &Arc<Socket>) {
    progress_after(socket, None);
}

/// A readiness event of the host socket came (`closed`: it reported the read side closed or
/// an error; see `State::host_ready`): moves every queue forward.
pub(crate) fn ready(socket: &Arc<Socket>, closed: bool) {
    progress_after(socket, Some(closed));
}

fn progress_after(socket: &Arc<Socket>, readiness: Option<bool>) {
    let mut actions = Actions::new();
    {
        let mut state = lock(&socket.state);
        if let Some(closed) = readiness {
            state.host_ready(closed);
        }
        if state.host.is_none() && state.memory.is_none() {
            return;
        }
        for queue in Queue::ALL {
            drive(socket, &mut state, queue, &mut actions);
        }
    }
    run(socket, actions);
}

/// Fails every pending send and receive with `status` (after an abortive disconnect).
pub(crate) fn fail_transfers(state: &mut State, status: NTSTATUS, actions: &mut Actions) {
    for queue in [Queue::Send, Queue::Receive] {
        let ops = std::mem::take(state.queue(queue));
        let mut keep = VecDeque::new();
        for mut op in ops {
            // SAFETY: a queued op's IRP is live until someone who claimed it completes it.
            if !op.cancel_owned && unsafe { claim(op.irp.0) } {
                state.inflight += 1;
                actions.push(Action::Complete { irp: op.irp, status, info: 0, queued: true });
            } else {
                op.cancel_owned = true;
                keep.push_back(op);
            }
        }
        *state.queue(queue) = keep;
    }
}

/// Cancels every queued op whose IRP the provider can claim (the others are left, marked
/// cancel-owned, for their cancel routines).
fn cancel_all(state: &mut State, actions: &mut Actions) {
    for queue in Queue::ALL {
        cancel_queue(state, queue, actions);
    }
}

/// [`cancel_all`] for one queue; returns how many ops it completes.
fn cancel_queue(state: &mut State, queue: Queue, actions: &mut Actions) -> usize {
    let ops = std::mem::take(state.queue(queue));
    let mut keep = VecDeque::new();
    let mut cancelled = 0;
    for mut op in ops {
        // SAFETY: a queued op's IRP is live until someone who claimed it completes it.
        if !op.cancel_owned && unsafe { claim(op.irp.0) } {
            state.inflight += 1;
            actions.push(Action::Complete { irp: op.irp, status: STATUS_CANCELLED, info: 0, queued: true });
            cancelled += 1;
        } else {
            op.cancel_owned = true;
            keep.push_back(op);
        }
    }
    *state.queue(queue) = keep;
    cancelled
}

/// Completes the pending IRPs of `socket`'s `queue` with `STATUS_CANCELLED` although nobody
/// cancelled them or closed the socket, which stays open (see
/// [`super::cancel_pending_accepts`] and [`super::cancel_pending_receives`]). Returns how many.
pub(crate) fn provider_cancels(socket: &Arc<Socket>, queue: Queue) -> usize {
    let mut actions = Actions::new();
    let cancelled = cancel_queue(&mut lock(&socket.state), queue, &mut actions);
    run(socket, actions);
    cancelled
}

/// [`provider_cancels`] for the adversary (`Adversary::provider_cancel_ppm`), counted.
pub(crate) fn adversary_cancels(socket: &Arc<Socket>, queue: Queue) {
    for _ in 0..provider_cancels(socket, queue) {
        crate::adversary::count(crate::adversary::Event::ProviderCancel);
    }
}

/// `WskCloseSocket` on an accepted close IRP: cancels every pending IRP, closes the host
/// socket (resetting a connection not disconnected in both directions), and completes the
/// close IRP once every cancelled IRP has completed and no event callback of the socket runs.
pub(crate) fn close(socket: &Arc<Socket>, irp: Irp) -> NTSTATUS {
    let mut actions = Actions::new();
    let pending = {
        let mut state = lock(&socket.state);
        state.closing = true;
        let abortive = socket.kind == Kind::Connection && !io::disconnected_both_ways(&state);
        state.close_host(abortive);
        cancel_all(&mut state, &mut actions);
        let pending = state.inflight > 0
            || Queue::ALL.iter().any(|&q| !state.queue(q).is_empty())
            || !state.events.running.is_empty();
        if pending {
            // SAFETY: the provider owns the close IRP until it completes it.
            unsafe { provider::mark_pending(irp.0) };
            state.close_irp = Some(irp);
        }
        pending
    };
    let status = if pending {
        run(socket, actions);
        STATUS_PENDING
    } else {
        complete_close(socket, irp);
        STATUS_SUCCESS
    };
    // The reset or FIN reaches an in-memory peer now.
    loopback::run_pending();
    status
}

/// Drops a connection the client refused in its accept callback: resets it, cancels anything
/// the client queued on it meanwhile, and retires the socket (never handed out: no leak).
pub(crate) fn discard(socket: &Arc<Socket>) {
    let mut actions = Actions::new();
    {
        let mut state = lock(&socket.state);
        if state.closing {
            return;
        }
        state.closing = true;
        state.close_host(true);
        cancel_all(&mut state, &mut actions);
    }
    run(socket, actions);
    socket::retire(socket);
    events::reclaim_at_close(socket);
}

/// Abandons a queued op at teardown: takes it out of the cancelable state if it can and drops
/// its socket reference. The IRP itself is the driver's leak.
///
/// # Safety
/// The op's IRP was never completed.
pub(crate) unsafe fn abandon(op: Op) {
    // SAFETY: forwarded contract.
    if !op.cancel_owned && unsafe { claim(op.irp.0) } {
        // SAFETY: claimed: the provider owns it and attached a context when it was queued.
        drop(unsafe { detach_context(op.irp.0) });
    }
}

/// Completes an accepted IRP at once with `status` and returns it.
///
/// # Safety
/// The provider accepted `irp` and has not completed it.
pub(crate) unsafe fn complete_now(irp: *mut IRP, status: NTSTATUS, info: usize) -> NTSTATUS {
    // SAFETY: forwarded contract.
    unsafe { provider::complete_inline(irp, status, info) };
    status
}
