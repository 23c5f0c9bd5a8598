//! The backend interface of the portable core.
//!
//! The executor, its tasks, `block_on` and the timers are written once, against [`Platform`].
//! The crate ships one implementation, [`Kernel`](crate::kernel::Kernel): nonpaged pool, an
//! `IO_WORKITEM`, `KEVENT`s and `KTIMER` + `KDPC`. The crate's own unit tests use a test double
//! built on `std`.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::time::Duration;

/// Called by a backend timer when it expires, with the context given to
/// [`Platform::timer_init`]. Runs at IRQL <= DISPATCH_LEVEL.
pub type TimerCallback = unsafe fn(context: NonNull<()>);

/// What the portable core needs from its environment.
///
/// Static functions serve code that is not tied to one executor (`block_on`, timers); methods
/// taking the value are the per-executor part (the work item). An executor keeps its `Platform`
/// value at a fixed address inside its own allocation from construction until it is freed.
///
/// # Safety
///
/// The core's memory safety rests on every contract below, in particular:
/// * `alloc` returns memory valid for `layout` (or `None`), `dealloc` accepts what `alloc`
///   returned; both are callable at IRQL <= DISPATCH_LEVEL on any thread.
/// * After `request_run(ctx)`, the backend calls [`run`]`::<Self>(ctx)`
///   exactly once, later, on a thread where `can_block()` is true, and never from inside
///   `request_run` itself.
/// * Events are auto-reset: `event_wait` returns once for each `event_set` that happened
///   while nobody waited (setting twice before a wait may count once), and never misses a
///   set that happened before it was called.
/// * A timer calls its callback at most once per arming, and not at all once `timer_cancel`
///   returned `true`; when `timer_cancel` returns `false` the callback has run or will run.
pub unsafe trait Platform: Send + Sync + Sized + 'static {
    /// An auto-reset event (`KEVENT` of type `SynchronizationEvent` in the kernel). It may
    /// have to stay at one address once initialized.
    type Event: Send + Sync;

    /// A one-shot timer with its callback (`KTIMER` + `KDPC` in the kernel). It may have to
    /// stay at one address once initialized.
    type Timer: Send + Sync;

    /// Allocates memory for `layout`; `None` when memory is short. IRQL <= DISPATCH_LEVEL.
    fn alloc(layout: Layout) -> Option<NonNull<u8>>;

    /// Frees memory from [`alloc`](Self::alloc). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc(layout)` with this same `layout` and is not used afterwards.
    unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout);

    /// Whether the current thread may block (PASSIVE_LEVEL in the kernel). Any IRQL.
    fn can_block() -> bool;

    /// A monotonic clock in nanoseconds, for the executor's time budget. Any IRQL.
    fn now_nanos() -> u64;

    /// Initializes an event in place, not signalled.
    ///
    /// # Safety
    ///
    /// `event` is valid for writes and stays at this address until `event_drop`.
    unsafe fn event_init(event: *mut Self::Event);

    /// Signals the event. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `event` was initialized and not yet dropped.
    unsafe fn event_set(event: *const Self::Event);

    /// Waits until the event is signalled and resets it. Only where `can_block()` is true.
    ///
    /// # Safety
    ///
    /// `event` was initialized and not yet dropped.
    unsafe fn event_wait(event: *const Self::Event);

    /// Waits until the event is signalled (and resets it) or `timeout` has passed, whichever
    /// comes first. Returns `true` if it was signalled; `false` on timeout, in which case the
    /// event is left as it was (a set that comes later is kept for the next wait). Only where
    /// `can_block()` is true.
    ///
    /// # Safety
    ///
    /// `event` was initialized and not yet dropped.
    unsafe fn event_wait_timeout(event: *const Self::Event, timeout: Duration) -> bool;

    /// Releases what `event_init` acquired. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `event` was initialized, nobody waits on it or sets it any more.
    unsafe fn event_drop(event: *mut Self::Event);

    /// Initializes a timer in place, not armed. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `timer` is valid for writes and stays at this address until `timer_drop`;
    /// `callback(context)` is sound to call from the timer's expiry at DISPATCH_LEVEL.
    unsafe fn timer_init(timer: *mut Self::Timer, callback: TimerCallback, context: NonNull<()>);

    /// Arms the timer to call its callback once after `after`. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `timer` was initialized and is not armed.
    unsafe fn timer_arm(timer: *const Self::Timer, after: Duration);

    /// Disarms the timer. `true`: it was armed and its callback will not run. `false`: it was
    /// not armed, or has expired and its callback has run or will run. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `timer` was initialized and not yet dropped.
    unsafe fn timer_cancel(timer: *const Self::Timer) -> bool;

    /// Releases what `timer_init` acquired. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// `timer` was initialized, is not armed and its callback is not running.
    unsafe fn timer_drop(timer: *mut Self::Timer);

    /// Asks for one later call of [`run`]`::<Self>(context)` at PASSIVE_LEVEL (in the kernel:
    /// `IoQueueWorkItem`). IRQL <= DISPATCH_LEVEL.
    ///
    /// `platform` is a raw pointer because the requested run may start, finish and let the
    /// executor be freed before this function returns: read what is needed from it first,
    /// and touch nothing of it once the run can start.
    ///
    /// # Safety
    ///
    /// `platform` is the executor's platform value and `context` its context, both valid
    /// when the call begins. The executor never asks for a second run while one requested
    /// earlier has not started yet, and never after [`shutdown`](Self::shutdown).
    unsafe fn request_run(platform: NonNull<Self>, context: NonNull<()>);

    /// Called once when the executor has shut down: no run is pending or will be requested and
    /// every task is freed. Releases per-executor resources and waits until no timer callback
    /// is still executing (in the kernel: `KeFlushQueuedDpcs`, `IoFreeWorkItem`). PASSIVE_LEVEL.
    ///
    /// # Safety
    ///
    /// Called at most once, after the last run returned, where `can_block()` is true.
    unsafe fn shutdown(&self);
}

/// Runs the executor whose context is `context`: one budgeted batch of polls.
///
/// Backends call this from the routine that [`Platform::request_run`] queued. PASSIVE_LEVEL.
///
/// Returns `Some(event)` when this run released the executor after shutdown: the backend must
/// then [`set`](Platform::event_set) that event as the very last thing its routine does. The
/// shutdown waiter (typically DriverUnload) returns as soon as it is set, and the driver image
/// may be unloaded then, so no code of the driver may run on this thread afterwards: the kernel
/// backend makes the set a tail jump into the kernel, so that `KeSetEvent` returns straight
/// to the routine's caller.
///
/// # Safety
///
/// `context` was passed to `P::request_run` by the executor and this is the one run that
/// request asked for.
#[must_use = "an event returned must be set, or the shutdown waiter waits forever"]
pub unsafe fn run<P: Platform>(context: NonNull<()>) -> Option<NonNull<P::Event>> {
    // SAFETY: forwarded contract.
    unsafe { crate::run::run::<P>(context) }
}
