//! The public handles: [`Executor`] (owns the executor, shuts it down) and [`Spawner`].

use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::time::Duration;

use crate::config::Config;
use crate::error::{SpawnError, StartError};
use crate::importance::Importance;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::scheduler::Shared;
use crate::shutdown::{ShutdownReport, StalledShutdown};
use crate::task::{self, JoinHandle, Schedule};

/// A task executor running on one system work item.
///
/// Tasks are polled only at PASSIVE_LEVEL, in the executor's work item, a batch at a time:
/// each run stops after [`Config`]'s budget and re-queues itself, so the system worker
/// thread is given back regularly. Tasks are woken from any IRQL <= DISPATCH_LEVEL (IRP
/// completion routines, DPCs, other tasks).
///
/// Dropping the executor shuts it down as [`shutdown`](Self::shutdown) does when dropped at
/// PASSIVE_LEVEL; dropped above PASSIVE_LEVEL it cannot wait, so it leaves its tasks running
/// and its memory allocated.
pub struct Executor<P: Platform = Kernel> {
    shared: NonNull<Shared<P>>,
}

/// A cloneable handle that spawns tasks onto an [`Executor`], for use inside tasks.
///
/// Spawning fails with [`SpawnError::ShuttingDown`] once shutdown has begun. A `Spawner` keeps
/// the executor's bookkeeping memory (not its tasks) allocated until dropped.
pub struct Spawner<P: Platform = Kernel> {
    shared: NonNull<Shared<P>>,
}

// SAFETY: the handles only reach `Shared`, whose shared parts are atomics and whose
// work-item-only parts are never touched through a handle; `P: Send + Sync`.
unsafe impl<P: Platform> Send for Executor<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for Executor<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Send for Spawner<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for Spawner<P> {}

/// Spawns `future` on the executor `this`.
fn spawn_on<P, F>(
    this: NonNull<Shared<P>>,
    importance: Importance,
    future: F,
) -> Result<JoinHandle<F::Output>, SpawnError>
where
    P: Platform,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // SAFETY: the caller's handle keeps the executor allocated.
    let shared = unsafe { this.as_ref() };
    shared.begin_spawn()?;
    match task::allocate::<F, Shared<P>>(future, this, importance == Importance::High) {
        Err(future) => {
            // SAFETY: the unit reserved above; the caller's handle keeps the memory.
            unsafe { Shared::abandon_spawn(this) };
            drop(future);
            Err(SpawnError::NoMemory)
        }
        Ok(task) => {
            // SAFETY: the new task is SCHEDULED with a reference for the queue; the join
            // handle's reference keeps it (and so the executor) alive across the call.
            unsafe { Shared::schedule(this, task) };
            // SAFETY: allocated for `F`, and this is the join handle's reference.
            Ok(unsafe { task::new_join_handle(task) })
        }
    }
}

impl<P: Platform> Executor<P> {
    /// Creates an executor over `platform`. IRQL <= DISPATCH_LEVEL unless the platform says
    /// otherwise.
    pub fn with_platform(platform: P, config: Config) -> Result<Self, StartError> {
        let shared = Shared::create(platform, config).ok_or(StartError::NoMemory)?;
        Ok(Self { shared })
    }

    fn shared(&self) -> &Shared<P> {
        // SAFETY: the handle keeps the executor allocated.
        unsafe { self.shared.as_ref() }
    }

    /// Spawns a task. It is polled first in the work item's next run. IRQL <= DISPATCH_LEVEL.
    ///
    /// Allocates exactly once (task header, future and output together). On error the future
    /// is dropped on the calling thread.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(self.shared, Importance::Normal, future)
    }

    /// [`spawn`](Self::spawn) with an [`Importance`]. IRQL <= DISPATCH_LEVEL.
    pub fn spawn_with<F>(&self, importance: Importance, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(self.shared, importance, future)
    }

    /// A handle for spawning from tasks. Any IRQL.
    pub fn spawner(&self) -> Spawner<P> {
        self.shared().add_handle();
        Spawner { shared: self.shared }
    }

    /// Tasks spawned and not yet freed (a task is freed once it completed and its join handle
    /// and every waker are gone). Any IRQL.
    pub fn live_tasks(&self) -> usize {
        self.shared().live_tasks()
    }

    /// Shuts the executor down. PASSIVE_LEVEL.
    ///
    /// Refuses new spawns, cancels every task (their futures are dropped at PASSIVE_LEVEL in
    /// the work item), then waits until the work item is idle and every task is freed, and
    /// releases the work item. Timer callbacks still executing are waited for. Drivers call
    /// this before `DriverUnload` returns.
    ///
    /// Waiting for every task to be freed means every `JoinHandle` and `Waker` must go away:
    /// those held by tasks go with their futures, others (in a device extension, in a pending
    /// IRP's context) must be dropped by the driver, or the wait does not end.
    ///
    /// Must not be called (nor the executor dropped) from one of its own tasks: it would wait
    /// for itself.
    ///
    /// Above PASSIVE_LEVEL it does nothing and gives the executor back as `Err`.
    pub fn shutdown(self) -> Result<(), Self> {
        if !P::can_block() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: PASSIVE_LEVEL; the handle is consumed.
        unsafe { shutdown(this.shared, || {}) };
        Ok(())
    }

    /// [`shutdown`](Self::shutdown) with a bound on the wait: refuses new spawns, cancels every
    /// task, and waits at most `limit` until every task is freed. PASSIVE_LEVEL.
    ///
    /// The report says how many tasks were alive when shutdown began (each was cancelled) and,
    /// if some are still not freed at the deadline, holds the executor in a
    /// [`StalledShutdown`]: spawning stays refused, the tasks still alive keep their memory
    /// and the executor's (nothing is freed under them), and the caller decides what comes
    /// next: remove what keeps them alive (for example abort the sockets whose pending
    /// operations hold their wakers) and wait again, wait without limit, or leak. See
    /// [`StalledShutdown`] for each choice.
    ///
    /// A task is not freed while its `JoinHandle` or one of its `Waker`s lives. Cancelling
    /// drops the futures (and with them what they hold); what is left at the deadline is held
    /// elsewhere: wakers registered with operations that have not completed yet, or handles
    /// the driver keeps.
    ///
    /// Must not be called from one of the executor's own tasks. Above PASSIVE_LEVEL it does
    /// nothing and gives the executor back as `Err`.
    pub fn shutdown_within(self, limit: Duration) -> Result<ShutdownReport<P>, Self> {
        if !P::can_block() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        let shared = this.shared;
        let cancelled = this.live_tasks();
        // SAFETY: PASSIVE_LEVEL; the handle is consumed (its memory reference moves to the
        // report's stalled handle when the wait does not finish).
        let finished = unsafe { begin_shutdown(shared, || {}) };
        let stalled = if finished {
            // SAFETY: every unit is released; the handle is given up here.
            unsafe { finish_shutdown(shared) };
            None
        } else {
            // SAFETY: the handle's unit was given up and the event not waited for yet.
            let stalled = unsafe { StalledShutdown::new(shared) };
            stalled.wait_within(limit).err()
        };
        Ok(ShutdownReport { cancelled, stalled })
    }

    /// [`shutdown`](Self::shutdown) with `drive` called between requesting the cancelling run
    /// and waiting, for tests whose runs are performed by the test itself.
    #[cfg(test)]
    pub(crate) fn shutdown_driven(self, drive: impl FnOnce()) {
        assert!(P::can_block());
        let this = ManuallyDrop::new(self);
        // SAFETY: as in `shutdown`.
        unsafe { shutdown(this.shared, drive) };
    }
}

/// Shuts down and drops the executor handle.
///
/// # Safety
///
/// `this` is the `Executor` handle's, given up here; PASSIVE_LEVEL.
unsafe fn shutdown<P: Platform>(this: NonNull<Shared<P>>, before_wait: impl FnOnce()) {
    // SAFETY: forwarded contract.
    if !unsafe { begin_shutdown(this, before_wait) } {
        // SAFETY: the handle's unit was given up and was not the last; PASSIVE_LEVEL.
        let released = unsafe { Shared::wait_released(this, None) };
        debug_assert!(released);
    }
    // SAFETY: every unit is released; the handle is given up.
    unsafe { finish_shutdown(this) };
}

/// Refuses spawns, requests the run that cancels every task and gives up the handle's unit.
/// Returns whether that was the last unit (every task freed already).
///
/// # Safety
///
/// `this` is the `Executor` handle's; called once; PASSIVE_LEVEL. The handle keeps the memory
/// until [`finish_shutdown`].
unsafe fn begin_shutdown<P: Platform>(this: NonNull<Shared<P>>, before_wait: impl FnOnce()) -> bool {
    // SAFETY: the handle keeps the executor allocated.
    let shared = unsafe { this.as_ref() };
    shared.set_shutdown();
    // The run cancels every task.
    // SAFETY: the handle's unit keeps the executor alive during the call.
    unsafe { Shared::request_run(this) };
    before_wait();
    // SAFETY: called once, by the handle, after `set_shutdown`.
    unsafe { Shared::release_handle_unit(this) }
}

/// Releases the work item and drops the handle, once every unit is released.
///
/// # Safety
///
/// `this` is the `Executor` handle's (its unit given up), given up here; every unit was
/// released (and the release seen); PASSIVE_LEVEL.
pub(crate) unsafe fn finish_shutdown<P: Platform>(this: NonNull<Shared<P>>) {
    // SAFETY: the handle keeps the executor allocated.
    let shared = unsafe { this.as_ref() };
    // SAFETY: no run is pending or will be requested; every task is freed.
    unsafe { shared.platform.shutdown() };
    // SAFETY: the handle's; nothing is touched afterwards.
    unsafe { Shared::drop_handle(this) };
}

impl<P: Platform> Drop for Executor<P> {
    fn drop(&mut self) {
        if P::can_block() {
            // SAFETY: PASSIVE_LEVEL; the handle is being dropped.
            unsafe { shutdown(self.shared, || {}) };
        }
        // Otherwise leak: tasks keep running and the memory stays allocated.
    }
}

impl<P: Platform> fmt::Debug for Executor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("live_tasks", &self.live_tasks())
            .field("shutting_down", &self.shared().is_shutting_down())
            .finish()
    }
}

impl<P: Platform> Spawner<P> {
    /// Spawns a task, as [`Executor::spawn`]. IRQL <= DISPATCH_LEVEL.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(self.shared, Importance::Normal, future)
    }

    /// Spawns a task, as [`Executor::spawn_with`]. IRQL <= DISPATCH_LEVEL.
    pub fn spawn_with<F>(&self, importance: Importance, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(self.shared, importance, future)
    }

    /// Whether the executor is shutting down (spawns fail). Any IRQL.
    pub fn is_shutting_down(&self) -> bool {
        // SAFETY: the handle keeps the executor allocated.
        unsafe { self.shared.as_ref() }.is_shutting_down()
    }
}

impl<P: Platform> Clone for Spawner<P> {
    /// Any IRQL.
    fn clone(&self) -> Self {
        // SAFETY: the handle keeps the executor allocated.
        unsafe { self.shared.as_ref() }.add_handle();
        Self { shared: self.shared }
    }
}

impl<P: Platform> Drop for Spawner<P> {
    /// IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: the handle's; if it is the last, the executor handle is gone, so shutdown
        // finished.
        unsafe { Shared::drop_handle(self.shared) };
    }
}

impl<P: Platform> fmt::Debug for Spawner<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawner").field("shutting_down", &self.is_shutting_down()).finish()
    }
}
