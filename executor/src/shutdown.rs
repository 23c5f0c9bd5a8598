//! Shutdown with a deadline: what [`Executor::shutdown_within`](crate::Executor::shutdown_within)
//! reports, and the handle to an executor whose tasks were not all freed in time.
//!
//! The choices at the deadline are on [`StalledShutdown`].

use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::time::Duration;

use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::scheduler::Shared;

/// What [`Executor::shutdown_within`](crate::Executor::shutdown_within) did.
#[must_use = "a stalled shutdown is waited for (or leaked) explicitly"]
pub struct ShutdownReport<P: Platform = Kernel> {
    /// Tasks alive (not yet freed) when shutdown began: each was cancelled.
    pub cancelled: usize,
    /// `None`: every task was freed within the limit and the executor released. `Some`: tasks
    /// were still alive at the deadline (see [`StalledShutdown`]).
    pub stalled: Option<StalledShutdown<P>>,
}

impl<P: Platform> ShutdownReport<P> {
    /// Tasks still alive (not freed); 0 once the shutdown finished. Any IRQL.
    pub fn live_tasks(&self) -> usize {
        self.stalled.as_ref().map_or(0, StalledShutdown::live_tasks)
    }
}

impl<P: Platform> fmt::Debug for ShutdownReport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("cancelled", &self.cancelled)
            .field("live_tasks", &self.live_tasks())
            .finish()
    }
}

/// An executor whose shutdown passed its deadline with tasks still alive. Spawning is refused,
/// every task was cancelled, and nothing is freed until the last task is.
///
/// # The choice at the deadline
///
/// A task that is still alive at the deadline cannot be freed: its memory (and the executor's,
/// which its wakers reach) may still be touched by whoever holds its waker, typically a
/// completion routine of an operation that has not completed yet. So the deadline never frees
/// anything; it hands the decision to the caller, as this value:
///
/// * remove what keeps the tasks alive and [`wait_within`](Self::wait_within) again
///   (the unload protocol of `wsk::service` aborts the driver's sockets: closing a socket
///   completes its pending operations, which drop their wakers);
/// * [`wait`](Self::wait) without limit (the behaviour of
///   [`Executor::shutdown`](crate::Executor::shutdown));
/// * [`leak`](Self::leak): give up and keep everything allocated forever. Safe for
///   memory, but a task woken after the driver image is gone would run code that is no
///   longer there: only for a driver that knows nothing will wake those tasks any more.
///
/// Dropping it waits without limit (at PASSIVE_LEVEL; above it, it leaks):
/// the default never frees memory under a task and never lets the driver image go while a task
/// could still run.
///
/// # Invariants
///
/// `shared` is an executor after `set_shutdown`, whose `Executor` handle's unit was given up
/// (not as the last unit) and whose release has not been seen by a wait yet; this value holds
/// the handle's place (the memory stays allocated while it lives).
pub struct StalledShutdown<P: Platform = Kernel> {
    shared: NonNull<Shared<P>>,
}

// SAFETY: as the `Executor` handle it stands for: it only reaches the executor's atomics and
// event, and `P: Send + Sync`.
unsafe impl<P: Platform> Send for StalledShutdown<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for StalledShutdown<P> {}

impl<P: Platform> StalledShutdown<P> {
    /// Wraps the handle of an executor whose shutdown waits for its units.
    ///
    /// # Safety
    ///
    /// As the type invariant: the `Executor` handle's place, its unit given up (not the last),
    /// no wait has seen the release.
    pub(crate) unsafe fn new(shared: NonNull<Shared<P>>) -> Self {
        // INVARIANT: the caller's contract.
        Self { shared }
    }

    /// Tasks not freed yet. Any IRQL.
    pub fn live_tasks(&self) -> usize {
        // SAFETY: the handle's place keeps the memory allocated.
        unsafe { self.shared.as_ref() }.live_tasks()
    }

    /// Waits at most `limit` for the remaining tasks to be freed; then releases the executor
    /// (as [`Executor::shutdown`](crate::Executor::shutdown) does) and returns `Ok`. Gives
    /// itself back if tasks are still alive at the deadline, and at once (without waiting)
    /// above PASSIVE_LEVEL. PASSIVE_LEVEL.
    pub fn wait_within(self, limit: Duration) -> Result<(), Self> {
        self.wait_for(Some(limit))
    }

    /// Waits without limit for the remaining tasks to be freed, then releases the executor.
    /// Above PASSIVE_LEVEL it does not wait and gives itself back. PASSIVE_LEVEL.
    pub fn wait(self) -> Result<(), Self> {
        self.wait_for(None)
    }

    fn wait_for(self, limit: Option<Duration>) -> Result<(), Self> {
        if !P::can_block() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: by the invariant the unit was given up and no wait saw the release; a
        // thread that can block; our place keeps the memory.
        if !unsafe { Shared::wait_released(this.shared, limit) } {
            return Err(ManuallyDrop::into_inner(this));
        }
        // SAFETY: every unit is released and the release seen; the handle's place is given up
        // here (it is not dropped).
        unsafe { crate::executor::finish_shutdown(this.shared) };
        Ok(())
    }

    /// Gives up: the executor's memory, its work item and every task still alive stay
    /// allocated forever (the verifier reports them as leaks at unload). Returns how many tasks
    /// were alive. Any IRQL.
    ///
    /// Memory-safe (nothing is freed under a task), but if such a task is woken after the
    /// driver image is unloaded, the executor's run would execute code that is gone: leak only
    /// what nothing can wake any more.
    pub fn leak(self) -> usize {
        let live = self.live_tasks();
        core::mem::forget(self);
        live
    }
}

impl<P: Platform> Drop for StalledShutdown<P> {
    /// Waits without limit at PASSIVE_LEVEL (see [`wait`](Self::wait)); leaks above it.
    fn drop(&mut self) {
        let this = StalledShutdown { shared: self.shared };
        if let Err(this) = this.wait() {
            core::mem::forget(this);
        }
    }
}

impl<P: Platform> fmt::Debug for StalledShutdown<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StalledShutdown").field("live_tasks", &self.live_tasks()).finish()
    }
}
