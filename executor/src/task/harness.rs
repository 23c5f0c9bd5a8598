//! The vtable functions: poll, cancel, complete, join and free a task of a known type.
//!
//! Functions that may free the task take `NonNull<Header>` rather than references, and read
//! what they need before the reference count can drop.

use core::future::Future;
use core::mem::{self, ManuallyDrop};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, Waker};

use super::cell::{Cell, Header, RunCtx, Stage};
use super::state::{ToIdle, ToRunning};
use super::waker::waker_ref;
use crate::error::JoinError;
use crate::loom::Ordering::Relaxed;
use crate::platform::Platform;
use crate::scheduler::Shared;

/// The cell of a task.
fn cell<F: Future, P>(task: NonNull<Header>) -> NonNull<Cell<F, P>> {
    // INVARIANT: the header is at offset 0 of the cell.
    task.cast()
}

/// Shared access to the header.
///
/// # Safety
///
/// The task is live for `'a`.
unsafe fn header<'a>(task: NonNull<Header>) -> &'a Header {
    // SAFETY: live (caller); the header is only ever accessed through shared references.
    unsafe { task.as_ref() }
}

/// Replaces the stage.
///
/// # Safety
///
/// The task is live and the caller has the access to the stage that the table in
/// [`super`] grants it.
unsafe fn set_stage<F: Future, P>(task: NonNull<Header>, stage: Stage<F>) {
    let cell = cell::<F, P>(task);
    // SAFETY: live (caller), so the field can be borrowed.
    let slot = unsafe { &(*cell.as_ptr()).stage };
    // SAFETY: exclusive access to the stage (caller); the old stage is dropped in place.
    slot.with_mut(|s| unsafe { *s = stage });
}

/// Replaces the join waker slot.
///
/// # Safety
///
/// The task is live and the caller owns the slot (see the table in [`super`]).
unsafe fn set_join_waker<F: Future, P>(task: NonNull<Header>, waker: Option<Waker>) {
    let cell = cell::<F, P>(task);
    // SAFETY: live (caller).
    let slot = unsafe { &(*cell.as_ptr()).join_waker };
    // SAFETY: exclusive access to the slot (caller).
    slot.with_mut(|w| unsafe { *w = waker });
}

/// `Vtable::run`.
///
/// # Safety
///
/// Called by the work item on a task it popped from the run queue, with the queue's
/// reference.
pub(super) unsafe fn run<F, P>(task: NonNull<Header>, ctx: &mut RunCtx<'_>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: the queue's reference keeps the task alive.
    let transition = unsafe { header(task) }.state.transition_to_running();
    let cancelled = match transition {
        ToRunning::AlreadyComplete => {
            // SAFETY: drops the queue's reference; nothing touches the task afterwards.
            unsafe { drop_reference::<F, P>(task, 1) };
            return;
        }
        ToRunning::Run { cancelled } => cancelled,
    };
    if cancelled || ctx.shutting_down {
        // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
        unsafe { complete::<F, P>(task, Err(JoinError::cancelled()), 2, ctx) };
        return;
    }
    // SAFETY: live and not complete; we are the work item.
    unsafe { ctx.owned.insert(task) };

    // SAFETY: the queue's reference keeps the task alive.
    unsafe { header(task) }.budget.store(ctx.ready_per_poll as usize, Relaxed);
    // SAFETY: the waker borrows the queue's reference, which outlives the poll.
    let waker = ManuallyDrop::new(unsafe { waker_ref(task) });
    let mut cx = Context::from_waker(&waker);
    let cell = cell::<F, P>(task);
    // SAFETY: live.
    let stage = unsafe { &(*cell.as_ptr()).stage };
    let poll = stage.with_mut(|s| {
        // SAFETY: RUNNING gives the work item exclusive access to the stage.
        match unsafe { &mut *s } {
            // SAFETY: the future stays in the task allocation until it is dropped in place.
            Stage::Running(f) => unsafe { Pin::new_unchecked(f) }.poll(&mut cx),
            _ => unreachable!("a task that is not complete holds its future"),
        }
    });
    match poll {
        Poll::Ready(output) => {
            // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
            unsafe { complete::<F, P>(task, Ok(output), 2, ctx) }
        }
        // SAFETY: the queue's reference keeps the task alive.
        Poll::Pending => match unsafe { header(task) }.state.transition_to_idle() {
            ToIdle::Idle => {}
            // SAFETY: the queue's reference moves to the new entry; the run's unit keeps the
            // executor alive.
            ToIdle::Reschedule => unsafe { schedule::<P>(task) },
            ToIdle::Cancel => {
                // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
                unsafe { complete::<F, P>(task, Err(JoinError::cancelled()), 2, ctx) }
            }
        },
    }
}

/// `Vtable::shutdown`.
///
/// # Safety
///
/// Called by the work item on a task it just took from the owned list (holding the owned
/// list's reference).
pub(super) unsafe fn shutdown<F, P>(task: NonNull<Header>, ctx: &mut RunCtx<'_>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: the owned list's reference keeps the task alive.
    if unsafe { header(task) }.state.transition_to_shutdown() {
        // SAFETY: RUNNING is now held; the owned list's reference is ours. A queue entry, if
        // any, keeps its own reference and finds the task complete when popped.
        unsafe { complete::<F, P>(task, Err(JoinError::cancelled()), 1, ctx) };
    }
}

/// Stores the output (dropping the future), publishes COMPLETE, hands the output to the join
/// handle or drops it, and drops `refs` references (the owned list's and, from `run`, the
/// queue's).
///
/// # Safety
///
/// The caller is the work item and holds RUNNING and the `refs` references.
unsafe fn complete<F, P>(task: NonNull<Header>, output: Result<F::Output, JoinError>, refs: usize, ctx: &mut RunCtx<'_>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // Drops the future here, at PASSIVE_LEVEL in the work item.
    // SAFETY: RUNNING gives exclusive access to the stage.
    unsafe { set_stage::<F, P>(task, Stage::Finished(output)) };
    // SAFETY: our references keep the task alive.
    let h = unsafe { header(task) };
    let snapshot = h.state.transition_to_complete();
    if !snapshot.is_join_interested() {
        // SAFETY: the join handle is gone and never reads the stage again.
        unsafe { set_stage::<F, P>(task, Stage::Consumed) };
    } else if snapshot.is_join_waker_set() {
        let cell = cell::<F, P>(task);
        // SAFETY: live.
        let slot = unsafe { &(*cell.as_ptr()).join_waker };
        slot.with(|w| {
            // SAFETY: COMPLETE and JOIN_WAKER set: the join handle does not write the slot.
            if let Some(w) = unsafe { &*w } {
                w.wake_by_ref();
            }
        });
        if !h.state.unset_join_waker_after_complete().is_join_interested() {
            // SAFETY: the join handle was dropped meanwhile and left the slot to us.
            unsafe { set_join_waker::<F, P>(task, None) };
        }
    }
    // SAFETY: live; we are the work item.
    unsafe { ctx.owned.remove(task) };
    // SAFETY: our `refs` references; nothing touches the task afterwards.
    unsafe { drop_reference::<F, P>(task, refs) };
}

/// Drops `n` references and frees the task if they were the last.
///
/// # Safety
///
/// The caller owns `n` references and does not touch the task afterwards.
unsafe fn drop_reference<F, P>(task: NonNull<Header>, n: usize)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: the references keep the task alive until this returns.
    if unsafe { header(task) }.state.ref_dec(n) {
        // SAFETY: no references left.
        unsafe { dealloc::<F, P>(task) };
    }
}

/// `Vtable::schedule`.
///
/// # Safety
///
/// The caller set SCHEDULED, owns a reference for the run queue, and keeps the executor
/// alive until this returns (see `Shared::schedule`).
pub(super) unsafe fn schedule<P: Platform>(task: NonNull<Header>) {
    // SAFETY: the reference keeps the task alive.
    let owner = unsafe { header(task) }.owner.cast::<Shared<P>>();
    // SAFETY: forwarded contract.
    unsafe { Shared::schedule(owner, task) };
}

/// `Vtable::dealloc`.
///
/// # Safety
///
/// No references are left: nobody else can reach the task.
pub(super) unsafe fn dealloc<F, P>(task: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: still allocated.
    let owner = unsafe { header(task) }.owner.cast::<Shared<P>>();
    let cell = cell::<F, P>(task);
    // Normally the stage is `Consumed` and the slot empty: this frees memory only.
    // SAFETY: exclusive; initialized by `allocate`.
    unsafe { ptr::drop_in_place(cell.as_ptr()) };
    // SAFETY: allocated by `allocate::<F, P>` with this layout.
    unsafe { P::dealloc(cell.cast(), Cell::<F, P>::LAYOUT) };
    // SAFETY: the executor outlives its tasks; this was one of them.
    unsafe { Shared::task_freed(owner) };
}

/// `Vtable::try_read_output`.
///
/// # Safety
///
/// Called by the live join handle of the task, `dst` points to a
/// `Poll<Result<F::Output, JoinError>>`.
pub(super) unsafe fn try_read_output<F, P>(task: NonNull<Header>, dst: NonNull<()>, waker: &Waker)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: forwarded contract.
    if unsafe { can_read_output::<F, P>(task, waker) } {
        let cell = cell::<F, P>(task);
        // SAFETY: live (the join handle's reference).
        let stage = unsafe { &(*cell.as_ptr()).stage };
        // SAFETY: COMPLETE with join interest: the join handle owns the stage.
        let stage = stage.with_mut(|s| mem::replace(unsafe { &mut *s }, Stage::Consumed));
        let output = match stage {
            Stage::Finished(output) => output,
            _ => Err(JoinError::output_taken()),
        };
        // SAFETY: `dst` is a valid, initialized `Poll<...>` of this type (caller).
        unsafe { *dst.cast::<Poll<Result<F::Output, JoinError>>>().as_ptr() = Poll::Ready(output) };
    }
}

/// `true` if the task is complete; otherwise makes sure `waker` is the join waker.
///
/// # Safety
///
/// Called by the live join handle of the task.
unsafe fn can_read_output<F, P>(task: NonNull<Header>, waker: &Waker) -> bool
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: the join handle's reference keeps the task alive.
    let state = &unsafe { header(task) }.state;
    let snapshot = state.load();
    if snapshot.is_complete() {
        return true;
    }
    if snapshot.is_join_waker_set() {
        let cell = cell::<F, P>(task);
        // SAFETY: live.
        let slot = unsafe { &(*cell.as_ptr()).join_waker };
        // SAFETY: JOIN_WAKER set and not complete: nobody writes the slot, reading is fine.
        let same = slot.with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)));
        if same {
            return false;
        }
        if state.unset_join_waker().is_err() {
            // Completed meanwhile.
            return true;
        }
    }
    // JOIN_WAKER is clear: the slot is ours.
    // SAFETY: see above.
    unsafe { set_join_waker::<F, P>(task, Some(waker.clone())) };
    match state.set_join_waker() {
        Ok(_) => false,
        Err(_) => {
            // Completed before we published; the slot is still ours.
            // SAFETY: JOIN_WAKER still clear.
            unsafe { set_join_waker::<F, P>(task, None) };
            true
        }
    }
}

/// `Vtable::drop_join_handle`.
///
/// # Safety
///
/// Called once, by the join handle, which gives up its reference.
pub(super) unsafe fn drop_join_handle<F, P>(task: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: Platform,
{
    // SAFETY: the join handle's reference keeps the task alive.
    let dropped = unsafe { header(task) }.state.transition_to_join_handle_dropped();
    if dropped.drop_output {
        // The output is dropped on the caller's thread.
        // SAFETY: COMPLETE: the join handle owns the stage.
        unsafe { set_stage::<F, P>(task, Stage::Consumed) };
    }
    if dropped.drop_waker {
        // SAFETY: the transition left the slot to the join handle.
        unsafe { set_join_waker::<F, P>(task, None) };
    }
    // SAFETY: the join handle's reference; nothing touches the task afterwards.
    unsafe { drop_reference::<F, P>(task, 1) };
}
