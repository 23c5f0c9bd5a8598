//! [`Harness`], the one owner of the unsafe access to a task's cell, and the vtable functions
//! built on it: poll, cancel, complete, join and free a task of a known type.

use core::future::Future;
use core::marker::PhantomData;
use core::mem;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, Waker};

use super::cell::{Cell, Header, RunCtx, Stage};
use super::schedule::Schedule;
use super::state::{State, ToIdle, ToRunning};
use super::waker::WakerRef;
use crate::error::JoinError;
use crate::loom::Ordering::Relaxed;
use crate::platform::Platform;

/// A typed handle on a task's cell, holding one of the task's references (or more, as the
/// work item does while it runs a task).
///
/// Every access to the cell goes through it: the header through [`header`](Self::header)
/// (safe: shared and atomic), the stage and the join waker slot through the few accessors
/// whose `# Safety` names the right from the table in [`super`] ("who touches what") the
/// caller must have. Operations that give up references consume the harness, so nothing
/// touches the task after its last reference may be gone.
///
/// # Invariants
///
/// `cell` points to a `Cell<F, S>` made by [`allocate::<F, S>`](super::cell::allocate), and
/// the harness holds at least one reference to that task for as long as it exists, so the
/// cell stays allocated. (Freeing a task with no reference left is
/// [`free`](Self::free), which takes no harness.)
pub(super) struct Harness<F: Future, S> {
    cell: NonNull<Cell<F, S>>,
    _owner: PhantomData<fn() -> S>,
}

impl<F, S> Harness<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    /// Takes over a reference to `task`.
    ///
    /// # Safety
    ///
    /// `task` was allocated as a `Cell<F, S>` (its vtable is `Cell::<F, S>`'s), and the caller
    /// hands over a reference to it (or several, as its contract with the callee says).
    unsafe fn from_raw(task: NonNull<Header>) -> Self {
        // INVARIANT: the header is at offset 0 of the cell; the reference is ours (caller).
        Self { cell: task.cast(), _owner: PhantomData }
    }

    /// The task as the type-erased pointer the queue, the owned list and wakers use.
    fn raw(&self) -> NonNull<Header> {
        self.cell.cast()
    }

    /// The task's header. Any IRQL.
    fn header(&self) -> &Header {
        // SAFETY: the cell is allocated while the harness exists (invariant); the header is
        // only ever accessed through shared references.
        unsafe { self.raw().as_ref() }
    }

    /// A waker for the task that borrows the harness's reference.
    fn waker_ref(&self) -> WakerRef<'_> {
        // SAFETY: a task, and the harness holds a reference while borrowed (invariant).
        unsafe { WakerRef::new(self.raw()) }
    }

    /// The task's state word.
    fn state(&self) -> &State {
        &self.header().state
    }

    /// The executor that owns the task.
    fn owner(&self) -> NonNull<S> {
        // INVARIANT (of the header): `owner` is the `S` of the cell.
        self.header().owner.cast()
    }

    /// Gives `f` the stage, mutably.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the stage: it is the work item holding RUNNING, the
    /// work item having seen COMPLETE with JOIN_INTEREST clear, or the join handle having
    /// seen COMPLETE.
    unsafe fn with_stage<R>(&self, f: impl FnOnce(&mut Stage<F>) -> R) -> R {
        // SAFETY: allocated (invariant); only the field is borrowed, not the whole cell.
        let stage = unsafe { &(*self.cell.as_ptr()).stage };
        // SAFETY: exclusive access (caller).
        stage.with_mut(|s| f(unsafe { &mut *s }))
    }

    /// Replaces the stage, dropping the old one in place.
    ///
    /// # Safety
    ///
    /// As [`with_stage`](Self::with_stage).
    unsafe fn set_stage(&self, stage: Stage<F>) {
        // SAFETY: forwarded contract.
        unsafe { self.with_stage(|s| *s = stage) };
    }

    /// Gives `f` the join waker slot, mutably.
    ///
    /// # Safety
    ///
    /// The caller owns the slot: the join handle while JOIN_WAKER is clear, the work item
    /// after clearing JOIN_WAKER once JOIN_INTEREST is clear, the join handle after
    /// dropping JOIN_INTEREST on a task that was not complete.
    unsafe fn with_join_waker<R>(&self, f: impl FnOnce(&mut Option<Waker>) -> R) -> R {
        // SAFETY: allocated (invariant); only the field is borrowed.
        let slot = unsafe { &(*self.cell.as_ptr()).join_waker };
        // SAFETY: exclusive access (caller).
        slot.with_mut(|w| f(unsafe { &mut *w }))
    }

    /// Gives `f` the join waker, read only.
    ///
    /// # Safety
    ///
    /// Nobody writes the slot meanwhile: JOIN_WAKER is set and the caller is the join handle
    /// (before COMPLETE) or the work item (after COMPLETE).
    unsafe fn peek_join_waker<R>(&self, f: impl FnOnce(Option<&Waker>) -> R) -> R {
        // SAFETY: allocated (invariant); only the field is borrowed.
        let slot = unsafe { &(*self.cell.as_ptr()).join_waker };
        // SAFETY: no writer (caller).
        slot.with(|w| f(unsafe { &*w }.as_ref()))
    }

    /// Polls the future once with a waker borrowing the harness's reference.
    ///
    /// # Safety
    ///
    /// The caller is the work item and holds RUNNING.
    unsafe fn poll_future(&self) -> Poll<F::Output> {
        let waker = self.waker_ref();
        let mut cx = Context::from_waker(&waker);
        let poll = |stage: &mut Stage<F>| match stage {
            // SAFETY: the future stays in the task allocation until it is dropped in place.
            Stage::Running(f) => unsafe { Pin::new_unchecked(f) }.poll(&mut cx),
            _ => unreachable!("a task that is not complete holds its future"),
        };
        // SAFETY: RUNNING gives the work item exclusive access to the stage (caller).
        unsafe { self.with_stage(poll) }
    }

    /// `Vtable::run` with the queue's reference.
    ///
    /// # Safety
    ///
    /// The caller is the work item and popped the task from the run queue; the harness holds
    /// the queue's reference.
    unsafe fn run(self, ctx: &mut RunCtx<'_>) {
        let cancelled = match self.state().transition_to_running() {
            ToRunning::AlreadyComplete => {
                // SAFETY: the queue's reference.
                unsafe { self.drop_references(1) };
                return;
            }
            ToRunning::Run { cancelled } => cancelled,
        };
        if cancelled || ctx.shutting_down {
            // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
            unsafe { self.complete(Err(JoinError::cancelled()), 2, ctx) };
            return;
        }
        // SAFETY: live and not complete; we are the work item.
        unsafe { ctx.owned.insert(self.raw()) };
        self.header().budget.store(ctx.ready_per_poll as usize, Relaxed);
        // SAFETY: we are the work item holding RUNNING.
        match unsafe { self.poll_future() } {
            // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
            Poll::Ready(output) => unsafe { self.complete(Ok(output), 2, ctx) },
            Poll::Pending => match self.state().transition_to_idle() {
                // The transition dropped the queue's reference.
                ToIdle::Idle => {}
                // SAFETY: SCHEDULED is kept for us; the queue's reference moves to the new entry,
                // and the run's unit keeps the executor alive.
                ToIdle::Reschedule => unsafe { self.schedule() },
                // SAFETY: RUNNING is held; the queue's and the owned list's references are ours.
                ToIdle::Cancel => unsafe { self.complete(Err(JoinError::cancelled()), 2, ctx) },
            },
        }
    }

    /// Pushes the task onto its executor's run queue, handing over the harness's reference.
    ///
    /// # Safety
    ///
    /// As [`Schedule::schedule`]: SCHEDULED was set for this push, and the executor is kept
    /// alive across the call by something besides the harness's reference.
    unsafe fn schedule(self) {
        // The harness's reference passes to the queue entry.
        let (owner, task) = (self.owner(), self.raw());
        // SAFETY: forwarded contract.
        unsafe { S::schedule(owner, task) };
    }

    /// Stores the output (dropping the future), publishes COMPLETE, hands the output to the
    /// join handle or drops it, and drops `refs` references (the owned list's and, from `run`,
    /// the queue's).
    ///
    /// # Safety
    ///
    /// The caller is the work item and holds RUNNING; the harness holds the `refs` references.
    unsafe fn complete(self, output: Result<F::Output, JoinError>, refs: usize, ctx: &mut RunCtx<'_>) {
        // Drops the future here, at PASSIVE_LEVEL in the work item.
        // SAFETY: RUNNING gives exclusive access to the stage.
        unsafe { self.set_stage(Stage::Finished(output)) };
        let snapshot = self.state().transition_to_complete();
        if !snapshot.is_join_interested() {
            // SAFETY: COMPLETE with JOIN_INTEREST clear: the join handle is gone and never
            // reads the stage again.
            unsafe { self.set_stage(Stage::Consumed) };
        } else if snapshot.is_join_waker_set() {
            // SAFETY: COMPLETE and JOIN_WAKER set: the join handle does not write the slot.
            unsafe {
                self.peek_join_waker(|w| {
                    if let Some(w) = w {
                        w.wake_by_ref();
                    }
                });
            }
            if !self.state().unset_join_waker_after_complete().is_join_interested() {
                // SAFETY: the join handle was dropped meanwhile and left the slot to us.
                unsafe { self.with_join_waker(|w| *w = None) };
            }
        }
        // SAFETY: live; we are the work item.
        unsafe { ctx.owned.remove(self.raw()) };
        // SAFETY: our `refs` references.
        unsafe { self.drop_references(refs) };
    }

    /// Drops `n` references and frees the task if they were the last.
    ///
    /// # Safety
    ///
    /// The harness holds `n` references.
    unsafe fn drop_references(self, n: usize) {
        if self.state().ref_dec(n) {
            // SAFETY: no references left; the harness is consumed and not used again.
            unsafe { Self::free(self.raw()) };
        }
    }

    /// Frees the task and tells its executor.
    ///
    /// # Safety
    ///
    /// `task` is a `Cell<F, S>` with no references left: nobody else can reach it.
    unsafe fn free(task: NonNull<Header>) {
        // SAFETY: still allocated (caller).
        let owner = unsafe { task.as_ref() }.owner.cast::<S>();
        let cell = task.cast::<Cell<F, S>>();
        // Normally the stage is `Consumed` and the slot empty: this frees memory only.
        // SAFETY: exclusive (caller); initialized by `allocate`.
        unsafe { ptr::drop_in_place(cell.as_ptr()) };
        // SAFETY: allocated by `allocate::<F, S>` with this layout.
        unsafe { S::Platform::dealloc(cell.cast(), Cell::<F, S>::LAYOUT) };
        // SAFETY: the executor outlives its tasks; this was one of them.
        unsafe { S::task_freed(owner) };
    }

    /// `true` if the task is complete; otherwise makes sure `waker` is the join waker.
    ///
    /// # Safety
    ///
    /// The harness is the join handle's.
    unsafe fn can_read_output(&self, waker: &Waker) -> bool {
        let state = self.state();
        let snapshot = state.load();
        if snapshot.is_complete() {
            return true;
        }
        if snapshot.is_join_waker_set() {
            // SAFETY: JOIN_WAKER set and not complete: nobody writes the slot.
            let same = unsafe { self.peek_join_waker(|w| w.is_some_and(|w| w.will_wake(waker))) };
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
        unsafe { self.with_join_waker(|w| *w = Some(waker.clone())) };
        match state.set_join_waker() {
            Ok(_) => false,
            Err(_) => {
                // Completed before we published; the slot is still ours.
                // SAFETY: JOIN_WAKER still clear.
                unsafe { self.with_join_waker(|w| *w = None) };
                true
            }
        }
    }
}

/// `Vtable::run`.
///
/// # Safety
///
/// Called by the work item on a `Cell<F, S>` task it popped from the run queue, with the
/// queue's reference.
pub(super) unsafe fn run<F, S>(task: NonNull<Header>, ctx: &mut RunCtx<'_>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Cell<F, S>` (its vtable); the queue's reference passes to the harness.
    let harness = unsafe { Harness::<F, S>::from_raw(task) };
    // SAFETY: we are the work item that popped it, and that is the queue's reference.
    unsafe { harness.run(ctx) }
}

/// `Vtable::shutdown`.
///
/// # Safety
///
/// Called by the work item on a `Cell<F, S>` task it just took from the owned list (holding
/// the owned list's reference).
pub(super) unsafe fn shutdown<F, S>(task: NonNull<Header>, ctx: &mut RunCtx<'_>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Cell<F, S>`; the owned list's reference passes to the harness.
    let harness = unsafe { Harness::<F, S>::from_raw(task) };
    if harness.state().transition_to_shutdown() {
        // SAFETY: RUNNING is now held; the owned list's reference is ours. A queue entry, if
        // any, keeps its own reference and finds the task complete when popped.
        unsafe { harness.complete(Err(JoinError::cancelled()), 1, ctx) };
    }
}

/// `Vtable::schedule`.
///
/// # Safety
///
/// As [`Schedule::schedule`], for a task owned by an `S`.
pub(super) unsafe fn schedule<S: Schedule>(task: NonNull<Header>) {
    // SAFETY: the reference handed over keeps the task alive.
    let owner = unsafe { task.as_ref() }.owner.cast::<S>();
    // SAFETY: forwarded contract.
    unsafe { S::schedule(owner, task) };
}

/// `Vtable::dealloc`.
///
/// # Safety
///
/// A `Cell<F, S>` task with no references left: nobody else can reach it.
pub(super) unsafe fn dealloc<F, S>(task: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Cell<F, S>` with no references left (caller).
    unsafe { Harness::<F, S>::free(task) }
}

/// `Vtable::try_read_output`.
///
/// # Safety
///
/// Called by the live join handle of a `Cell<F, S>` task; `dst` points to a
/// `Poll<Result<F::Output, JoinError>>`.
pub(super) unsafe fn try_read_output<F, S>(task: NonNull<Header>, dst: NonNull<()>, waker: &Waker)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Cell<F, S>`; the join handle lends its reference for this call.
    let harness = unsafe { Harness::<F, S>::from_raw(task) };
    // SAFETY: the join handle's harness.
    if unsafe { harness.can_read_output(waker) } {
        // SAFETY: COMPLETE with JOIN_INTEREST: the join handle owns the stage.
        let stage = unsafe { harness.with_stage(|s| mem::replace(s, Stage::Consumed)) };
        let output = match stage {
            Stage::Finished(output) => output,
            _ => Err(JoinError::output_taken()),
        };
        // SAFETY: `dst` is a valid, initialized `Poll<...>` of this type (caller).
        unsafe { *dst.cast::<Poll<Result<F::Output, JoinError>>>().as_ptr() = Poll::Ready(output) };
    }
}

/// `Vtable::drop_join_handle`.
///
/// # Safety
///
/// Called once, by the join handle of a `Cell<F, S>` task, which gives up its reference.
pub(super) unsafe fn drop_join_handle<F, S>(task: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Cell<F, S>`; the join handle's reference passes to the harness.
    let harness = unsafe { Harness::<F, S>::from_raw(task) };
    let dropped = harness.state().transition_to_join_handle_dropped();
    if dropped.drop_output {
        // The output is dropped on the caller's thread.
        // SAFETY: COMPLETE: the join handle owns the stage.
        unsafe { harness.set_stage(Stage::Consumed) };
    }
    if dropped.drop_waker {
        // SAFETY: the transition left the slot to the join handle.
        unsafe { harness.with_join_waker(|w| *w = None) };
    }
    // SAFETY: the join handle's reference.
    unsafe { harness.drop_references(1) };
}
