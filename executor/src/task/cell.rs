//! The task allocation: header, stage (future or output) and join waker slot.

use core::alloc::Layout;
use core::future::Future;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::task::Waker;

use super::harness;
use super::owned::{OwnedLinks, OwnedList};
use super::schedule::Schedule;
use super::state::State;
use crate::error::JoinError;
use crate::loom::{AtomicUsize, UnsafeCell};
use crate::platform::Platform;
use crate::queue::Link;

/// Type-erased operations on a task, one table per future type and owner type.
pub(crate) struct Vtable {
    /// Work item: poll (or cancel) a task popped from the run queue; consumes the queue's
    /// reference.
    pub(crate) run: unsafe fn(NonNull<Header>, &mut RunCtx<'_>),
    /// Work item at shutdown: cancel a task taken from the owned list.
    pub(crate) shutdown: unsafe fn(NonNull<Header>, &mut RunCtx<'_>),
    /// Push onto the executor's run queue and request a run; consumes one reference and
    /// needs another held across the call (see [`Schedule::schedule`]).
    pub(crate) schedule: unsafe fn(NonNull<Header>),
    /// Free the memory (last reference gone).
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// Join handle: write `Poll<Result<Output, JoinError>>` to the pointer if complete,
    /// otherwise register the waker.
    pub(crate) try_read_output: unsafe fn(NonNull<Header>, NonNull<()>, &Waker),
    /// Join handle dropped; consumes its reference.
    pub(crate) drop_join_handle: unsafe fn(NonNull<Header>),
}

/// What the work item lends a task while running it.
pub(crate) struct RunCtx<'a> {
    /// Tasks that have been polled and are not complete.
    pub(crate) owned: &'a mut OwnedList,
    /// The executor is shutting down: cancel instead of polling.
    pub(crate) shutting_down: bool,
    /// Operations a task may find ready per poll ([`crate::coop`]).
    pub(crate) ready_per_poll: u32,
}

/// The part of a task every pointer to it can see.
///
/// # Invariants
///
/// `link` is at offset 0, so a `*mut Link` popped from the run queue is the task's address.
#[repr(C)]
pub(crate) struct Header {
    /// Run queue link.
    pub(crate) link: Link,
    /// Lifecycle, join and reference bits.
    pub(crate) state: State,
    /// Operations for this task's future type.
    pub(crate) vtable: &'static Vtable,
    /// The executor that owns the task (the `S` of its `Cell<F, S>`); outlives it.
    pub(crate) owner: NonNull<()>,
    /// Queued in the executor's high-importance run queue ([`crate::Importance`]); set at
    /// spawn, read only.
    pub(crate) high: bool,
    /// Links of the executor's owned list; only the work item touches them.
    pub(crate) owned: UnsafeCell<OwnedLinks>,
    /// What is left of the current poll's budget ([`crate::coop`]): set by the work item
    /// before each poll, spent by the futures the poll reaches. Relaxed loads and stores: only
    /// the thread polling with the task's waker reads it, and a count that is off by one when
    /// a waker is (unusually) polled with on two threads at once is harmless.
    pub(crate) budget: AtomicUsize,
}

/// What the `stage` of a task holds.
pub(crate) enum Stage<F: Future> {
    /// The future, until it completes or is cancelled.
    Running(F),
    /// The output, until the join handle takes it or it is dropped.
    Finished(Result<F::Output, JoinError>),
    /// Nothing.
    Consumed,
}

/// The whole task allocation, for a future `F` owned by an executor `S`.
///
/// Only [`Harness`](super::harness::Harness) reaches into it (see there for who may touch
/// which field when).
///
/// # Invariants
///
/// `header` is at offset 0, so a `NonNull<Header>` is the address of the cell. Every
/// [`Header`] is the header of a cell: headers are built only by [`allocate`].
#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(super) header: Header,
    pub(super) stage: UnsafeCell<Stage<F>>,
    pub(super) join_waker: UnsafeCell<Option<Waker>>,
    _owner: PhantomData<fn() -> S>,
}

impl<F, S> Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    const VTABLE: Vtable = Vtable {
        run: harness::run::<F, S>,
        shutdown: harness::shutdown::<F, S>,
        schedule: harness::schedule::<S>,
        dealloc: harness::dealloc::<F, S>,
        try_read_output: harness::try_read_output::<F, S>,
        drop_join_handle: harness::drop_join_handle::<F, S>,
    };

    /// The layout the task is allocated with.
    pub(crate) const LAYOUT: Layout = Layout::new::<Self>();
}

/// Allocates a task for `future` owned by the executor `owner`. Gives the future back when
/// memory is short. IRQL <= DISPATCH_LEVEL.
///
/// The task starts SCHEDULED with three references (see [`super`]); the caller pushes it.
pub(crate) fn allocate<F, S>(future: F, owner: NonNull<S>, high: bool) -> Result<NonNull<Header>, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let Some(mem) = S::Platform::alloc(Cell::<F, S>::LAYOUT) else {
        return Err(future);
    };
    let cell = mem.cast::<Cell<F, S>>();
    let value = Cell::<F, S> {
        header: Header {
            link: Link::new(),
            state: State::new(),
            vtable: &Cell::<F, S>::VTABLE,
            owner: owner.cast(),
            high,
            owned: UnsafeCell::new(OwnedLinks::new()),
            budget: AtomicUsize::new(0),
        },
        stage: UnsafeCell::new(Stage::Running(future)),
        join_waker: UnsafeCell::new(None),
        _owner: PhantomData,
    };
    // SAFETY: `mem` is fresh memory of `Cell<F, S>`'s layout.
    unsafe { cell.as_ptr().write(value) };
    Ok(cell.cast())
}
