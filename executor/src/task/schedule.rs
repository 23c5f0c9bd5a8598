//! What a task needs from the executor that owns it.
//!
//! The task module knows its executor only through [`Schedule`]; the scheduler implements it.
//! So `task/` depends on this trait and the platform, and the scheduler depends on `task/`,
//! never the other way round.

use core::ptr::NonNull;

use super::cell::Header;
use crate::platform::Platform;

/// The executor side of a task: where its memory comes from, how it is queued, and whom to
/// tell when it is freed. Implemented by the executor's shared state; a task's header keeps a
/// pointer to its owner, which outlives the task.
pub(crate) trait Schedule: Sized + 'static {
    /// Where task memory is allocated and freed.
    type Platform: Platform;

    /// Pushes `task` onto the run queue and makes sure a run will see it. Any thread, IRQL <=
    /// DISPATCH_LEVEL; allocates nothing.
    ///
    /// # Safety
    ///
    /// `task` is owned by `this`; the caller set its SCHEDULED bit and hands over a reference
    /// for the queue. It also holds something else that keeps `this` alive until the call
    /// returns (another reference to the task, or the run's unit): once pushed, the task may
    /// run, complete and be freed before the call returns.
    unsafe fn schedule(this: NonNull<Self>, task: NonNull<Header>);

    /// A task owned by `this` was freed. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// Called once per task, after its memory was freed; the caller touches nothing of `this`
    /// afterwards.
    unsafe fn task_freed(this: NonNull<Self>);
}
