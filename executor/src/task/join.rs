//! `JoinHandle`: await a task's output, or abort it.

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use super::cell::Header;
use super::state::ToNotified;
use crate::error::JoinError;

/// An owned permission to await a spawned task's output and to abort it.
///
/// Awaiting it yields `Ok(output)`, or `Err` if the task was cancelled (by
/// [`abort`](Self::abort) or by the executor's shutdown). Dropping it detaches the task, which
/// keeps running; its output is then dropped by the executor.
///
/// Poll and drop it at IRQL <= DISPATCH_LEVEL. If the task completed and its output was not
/// taken, dropping the handle drops the output on the current thread, at the current IRQL.
/// A handle that outlives the executor's shutdown makes the shutdown wait for it.
pub struct JoinHandle<T> {
    task: NonNull<Header>,
    _output: PhantomData<T>,
}

// SAFETY: the handle only moves `T` out of the task (so `T: Send`); every access to the task
// it makes is synchronized through the task's state word.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: through `&JoinHandle` only `abort` and `is_finished` are reachable, both atomic.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

/// Wraps the join handle's reference of a freshly allocated task.
///
/// # Safety
///
/// `task` was allocated for a future whose output is `T`, and the caller hands over the
/// join handle's reference.
pub(crate) unsafe fn new_join_handle<T>(task: NonNull<Header>) -> JoinHandle<T> {
    JoinHandle { task, _output: PhantomData }
}

impl<T> JoinHandle<T> {
    fn header(&self) -> &Header {
        // SAFETY: the handle's reference keeps the task alive.
        unsafe { self.task.as_ref() }
    }

    /// Requests cancellation. The executor drops the task's future at PASSIVE_LEVEL in its
    /// work item the next time it gets to it (at once if the task is idle); awaiting the
    /// handle then yields a cancelled [`JoinError`]. No effect on a task that completed.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn abort(&self) {
        let header = self.header();
        match header.state.transition_to_cancelled() {
            ToNotified::DoNothing | ToNotified::Dealloc => {}
            // SAFETY: SCHEDULED was set by us with a new reference for the run queue.
            ToNotified::Submit => unsafe { (header.vtable.schedule)(self.task) },
        }
    }

    /// Whether the task has completed (with output or cancelled). Any IRQL.
    pub fn is_finished(&self) -> bool {
        self.header().state.load().is_complete()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// IRQL <= DISPATCH_LEVEL.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ret: Poll<Result<T, JoinError>> = Poll::Pending;
        let dst = NonNull::from(&mut ret).cast::<()>();
        // SAFETY: we are the live join handle and `dst` is a `Poll<Result<T, JoinError>>`,
        // the type `try_read_output` of this task writes.
        unsafe { (self.header().vtable.try_read_output)(self.task, dst, cx.waker()) };
        ret
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: called once; the handle's reference is given up.
        unsafe { (self.header().vtable.drop_join_handle)(self.task) };
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("task", &self.task).field("finished", &self.is_finished()).finish()
    }
}
