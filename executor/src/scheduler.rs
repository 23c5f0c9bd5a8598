//! The executor's shared state: run queue, the "queued" flag of its work item, and the
//! counts that let shutdown wait until nothing is left.
//!
//! # The queued flag
//!
//! `run_state` ([`RunState`]) says whether the work item is queued and whether work arrived
//! since the running work item last looked: [`Shared::request_run`] is its producer side,
//! [`crate::run`] its run side. It queues the work item at most once at a time and never
//! strands a push.
//!
//! # Counting for shutdown
//!
//! `count` holds SHUTDOWN and a number of units: one per live task, one per requested run and
//! one for the `Executor` handle. Shutdown sets SHUTDOWN (refusing spawns), requests a run
//! (which cancels every task), gives up the handle's unit and waits on `event` until the
//! count reaches zero (or, with a deadline, until it does or the deadline passes: the event
//! is set exactly once, so a later wait still sees a release that came after a timed-out
//! one). Whoever releases the last unit sets the event and touches nothing afterwards. A unit is only taken by someone already holding one, or by a spawn while
//! SHUTDOWN is clear (when the handle's unit is still held), so zero is final.
//!
//! `handles` counts `Executor` and `Spawner`s and decides when this memory is freed.

use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use crate::config::Config;
use crate::error::SpawnError;
use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed, UnsafeCell};
use crate::platform::Platform;
use crate::queue::RunQueue;
use crate::run_state::{Notify, RunState};
use crate::task::owned::OwnedList;
use crate::task::{Header, Schedule};

/// `count`: shutdown has begun.
const SHUTDOWN: usize = 1;
/// `count`: one unit.
const UNIT: usize = 2;

/// State only the work item touches.
pub(crate) struct Local {
    /// Tasks polled at least once and not complete.
    pub(crate) owned: OwnedList,
    /// The work item has seen SHUTDOWN and cancelled the owned tasks.
    pub(crate) shutdown_seen: bool,
}

/// One executor: everything its tasks, wakers and handles share.
pub(crate) struct Shared<P: Platform> {
    /// Normal-importance tasks.
    queue: RunQueue,
    /// High-importance tasks ([`crate::Importance`]).
    urgent: RunQueue,
    /// Whether the work item is queued ([`RunState`]).
    pub(crate) run_state: RunState,
    count: AtomicUsize,
    handles: AtomicUsize,
    live_tasks: AtomicUsize,
    pub(crate) local: UnsafeCell<Local>,
    pub(crate) config: Config,
    event: MaybeUninit<P::Event>,
    pub(crate) platform: P,
}

impl<P: Platform> Shared<P> {
    const LAYOUT: core::alloc::Layout = core::alloc::Layout::new::<Self>();

    /// Allocates and initializes the shared state; one handle. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn create(platform: P, config: Config) -> Option<NonNull<Self>> {
        let mem = P::alloc(Self::LAYOUT)?.cast::<Self>();
        let value = Self {
            queue: RunQueue::new(),
            urgent: RunQueue::new(),
            run_state: RunState::new(),
            count: AtomicUsize::new(UNIT),
            handles: AtomicUsize::new(1),
            live_tasks: AtomicUsize::new(0),
            local: UnsafeCell::new(Local { owned: OwnedList::new(), shutdown_seen: false }),
            config,
            event: MaybeUninit::uninit(),
            platform,
        };
        let this = mem.as_ptr();
        // SAFETY: fresh memory of this layout.
        unsafe { this.write(value) };
        // SAFETY: the event is at its final address and stays there until `drop_handle`.
        unsafe { P::event_init(Self::event(mem)) };
        Some(mem)
    }

    fn event(this: NonNull<Self>) -> *mut P::Event {
        // SAFETY: in bounds of the live allocation; no reference is created.
        unsafe { ptr::addr_of_mut!((*this.as_ptr()).event) }.cast()
    }

    /// Whether shutdown has begun. Any IRQL.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.count.load(Acquire) & SHUTDOWN != 0
    }

    /// Tasks allocated and not yet freed. Any IRQL.
    pub(crate) fn live_tasks(&self) -> usize {
        self.live_tasks.load(Acquire)
    }

    /// Reserves a unit for a new task unless shutting down.
    pub(crate) fn begin_spawn(&self) -> Result<(), SpawnError> {
        let mut cur = self.count.load(Relaxed);
        loop {
            if cur & SHUTDOWN != 0 {
                return Err(SpawnError::ShuttingDown);
            }
            match self.count.compare_exchange_weak(cur, cur + UNIT, AcqRel, Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.live_tasks.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Undoes [`begin_spawn`](Self::begin_spawn) after an allocation failure.
    ///
    /// # Safety
    ///
    /// The caller holds a unit besides the one it gives back (its handle's).
    pub(crate) unsafe fn abandon_spawn(this: NonNull<Self>) {
        // SAFETY: forwarded contract; the same accounting as a freed task.
        unsafe { <Self as Schedule>::task_freed(this) };
    }

    /// Releases one unit; the last one wakes the shutdown waiter.
    ///
    /// # Safety
    ///
    /// The caller owns a unit and touches nothing of the executor afterwards.
    pub(crate) unsafe fn release_unit(this: NonNull<Self>) {
        // SAFETY: forwarded contract.
        if let Some(event) = unsafe { Self::release_unit_deferred(this) } {
            // SAFETY: the waiter is blocked on the event until this call (see
            // `release_unit_deferred`); initialized in `create`.
            unsafe { P::event_set(event.as_ptr()) };
        }
    }

    /// Releases one unit, leaving the shutdown waiter's wake to the caller: when this was the
    /// last unit of a shut-down executor, returns the event the caller must set, as the last
    /// thing it does with the executor (the waiter may free everything, and the driver may
    /// unload, as soon as it is set).
    ///
    /// # Safety
    ///
    /// The caller owns a unit and touches nothing of the executor afterwards but that event.
    pub(crate) unsafe fn release_unit_deferred(this: NonNull<Self>) -> Option<NonNull<P::Event>> {
        // SAFETY: our unit keeps the executor alive.
        let prev = unsafe { this.as_ref() }.count.fetch_sub(UNIT, AcqRel);
        debug_assert!(prev >= UNIT);
        // The shutdown waiter is blocked on the event until it is set, so the executor is
        // still there.
        (prev == SHUTDOWN | UNIT).then(|| NonNull::new(Self::event(this)).expect("the event is inside the executor"))
    }

    /// Takes the next task to poll: a high-importance one first, unless the previous task
    /// taken (`after_high`, updated here) was one and a normal task is ready.
    ///
    /// # Safety
    ///
    /// Only the work item calls it (the queues' single consumer).
    pub(crate) unsafe fn pop(&self, after_high: &mut bool) -> Option<NonNull<Header>> {
        let (first, second) = if *after_high { (&self.queue, &self.urgent) } else { (&self.urgent, &self.queue) };
        // SAFETY: single consumer (caller).
        let (link, from_first) = match unsafe { first.pop() } {
            Some(link) => (Some(link), true),
            // SAFETY: as above.
            None => (unsafe { second.pop() }, false),
        };
        // Taken from the urgent queue: it was first and not after a high task, or second
        // after one.
        *after_high = link.is_some() && (from_first != *after_high);
        // The link is at offset 0 of the header.
        link.map(NonNull::cast)
    }

    /// Whether a [`pop`](Self::pop) might find something.
    ///
    /// # Safety
    ///
    /// Only the work item calls it.
    pub(crate) unsafe fn has_ready(&self) -> bool {
        // SAFETY: single consumer (caller).
        let urgent = unsafe { self.urgent.has_ready() };
        // SAFETY: as above.
        urgent || unsafe { self.queue.has_ready() }
    }

    /// Marks work as pending and queues the work item if it is not queued.
    ///
    /// # Safety
    ///
    /// The caller holds a unit (a task reference, the handle, or the run itself).
    pub(crate) unsafe fn request_run(this: NonNull<Self>) {
        // SAFETY: the caller's unit keeps the executor alive.
        let shared = unsafe { this.as_ref() };
        if shared.run_state.notify() == Notify::Queue {
            shared.count.fetch_add(UNIT, Relaxed);
            let platform = NonNull::from(&shared.platform);
            // SAFETY: QUEUED was clear: no run is pending; not shut down (units remain).
            unsafe { P::request_run(platform, this.cast()) };
        }
    }

    /// Begins shutdown: refuses new spawns. Returns `false` if it had begun already.
    pub(crate) fn set_shutdown(&self) -> bool {
        self.count.fetch_or(SHUTDOWN, AcqRel) & SHUTDOWN == 0
    }

    /// Gives up the handle's unit; returns `true` if it was the last one (then the event is
    /// never set and there is nothing to wait for).
    ///
    /// # Safety
    ///
    /// Called once, by the `Executor` handle, after [`set_shutdown`](Self::set_shutdown). The
    /// handle keeps the memory (not a unit) afterwards.
    pub(crate) unsafe fn release_handle_unit(this: NonNull<Self>) -> bool {
        // SAFETY: the handle keeps the executor allocated.
        let prev = unsafe { this.as_ref() }.count.fetch_sub(UNIT, AcqRel);
        prev == SHUTDOWN | UNIT
    }

    /// Waits, at most `limit` (`None`: without limit), until the last unit is released.
    /// Returns whether it was. After a `false` it may be called again: the release sets the
    /// event exactly once, and a set that comes while nobody waits is kept for the next wait.
    ///
    /// # Safety
    ///
    /// The handle's unit was given up with [`release_handle_unit`](Self::release_handle_unit),
    /// which returned `false`, and no earlier call of this function returned `true`; the
    /// caller's handle keeps the memory; a thread that can block.
    pub(crate) unsafe fn wait_released(this: NonNull<Self>, limit: Option<core::time::Duration>) -> bool {
        let event = Self::event(this);
        match limit {
            // SAFETY: initialized; the last unit's release sets it exactly once.
            None => unsafe { P::event_wait(event) },
            Some(limit) => {
                // SAFETY: as above.
                if !unsafe { P::event_wait_timeout(event, limit) } {
                    return false;
                }
            }
        }
        // SAFETY: the handle keeps the executor allocated.
        let count = unsafe { this.as_ref() }.count.load(Acquire);
        debug_assert_eq!(count, SHUTDOWN);
        true
    }

    /// Adds a handle.
    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Relaxed);
    }

    /// Drops a handle; frees the executor with the last one. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// The caller owns a handle and touches nothing of the executor afterwards. When it is
    /// the last handle, no unit is left (shutdown finished).
    pub(crate) unsafe fn drop_handle(this: NonNull<Self>) {
        // SAFETY: our handle keeps the executor allocated.
        if unsafe { this.as_ref() }.handles.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        // SAFETY: nobody else can reach the executor; the event is not in use.
        unsafe { P::event_drop(Self::event(this)) };
        // SAFETY: initialized in `create`; dropped once.
        unsafe { ptr::drop_in_place(this.as_ptr()) };
        // SAFETY: allocated in `create` with this layout.
        unsafe { P::dealloc(this.cast(), Self::LAYOUT) };
    }
}

/// The executor's side of its tasks: they allocate from `P`, are pushed onto this executor's
/// run queues and count as its units.
impl<P: Platform> Schedule for Shared<P> {
    type Platform = P;

    /// Pushes the task onto the queue of its importance and makes sure a run will see it
    /// ([`RunState`]). Any thread, IRQL <= DISPATCH_LEVEL.
    unsafe fn schedule(this: NonNull<Self>, task: NonNull<Header>) {
        // SAFETY: kept alive by the caller.
        let shared = unsafe { this.as_ref() };
        // SAFETY: the reference handed over keeps the task alive.
        let queue = if unsafe { task.as_ref() }.high { &shared.urgent } else { &shared.queue };
        // SAFETY: a SCHEDULED task is pushed only by whoever set SCHEDULED, so it is in no
        // queue; its reference keeps it valid until popped. The link is at offset 0.
        unsafe { queue.push(task.cast()) };
        // SAFETY: the caller's other reference or unit keeps the executor alive.
        unsafe { Self::request_run(this) };
    }

    /// Gives up the task's unit; the last unit wakes the shutdown waiter. IRQL <=
    /// DISPATCH_LEVEL.
    unsafe fn task_freed(this: NonNull<Self>) {
        // SAFETY: the task's unit keeps the executor alive.
        unsafe { this.as_ref() }.live_tasks.fetch_sub(1, Relaxed);
        // SAFETY: that unit is ours to release; the caller touches nothing afterwards.
        unsafe { Self::release_unit(this) };
    }
}
