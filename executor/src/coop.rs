//! Cooperative budget: a task that keeps finding its I/O ready yields anyway.
//!
//! Tasks are polled one at a time on the executor's work item, and a poll runs until the
//! future returns `Pending`. A future whose operations are ready whenever it looks (an IRP
//! the provider completed inside the call because the data was already there, a queue that
//! is never empty) never returns `Pending`, and no other task of the executor runs meanwhile:
//! one busy connection serves itself while every other connection waits.
//!
//! So each poll of a task gets a budget ([`Config::max_ready_per_poll`], 32 by default). A
//! leaf future that is about to return `Ready` calls [`poll_proceed`] first: while budget is
//! left it spends one unit and proceeds; once the budget is spent it wakes the task and
//! returns `Pending`, so the task goes to the back of the run queue and the tasks queued
//! before it run first. The result it was about to return stays where it was and is returned
//! at the next poll. The `wsk` crate's IRP-based operations and event streams call it.
//!
//! The budget lives in the task, reached through the context's waker: a future polled with a
//! waker that is not one of this executor's task wakers (`block_on`, a combinator that
//! substitutes its own waker, another executor) always proceeds.
//!
//! ```
//! use core::task::{Context, Poll};
//!
//! /// A leaf future's poll: spend budget only on the way to `Ready`.
//! fn poll_ready_item(cx: &mut Context<'_>, item: &mut Option<u32>) -> Poll<u32> {
//!     match item.take() {
//!         Some(value) => {
//!             if wsk_executor::coop::poll_proceed(cx).is_pending() {
//!                 *item = Some(value); // keep it for the next poll
//!                 return Poll::Pending;
//!             }
//!             Poll::Ready(value)
//!         }
//!         None => Poll::Pending, // (a real future registers cx.waker() here)
//!     }
//! }
//! # let waker = core::task::Waker::noop();
//! # let mut cx = Context::from_waker(waker);
//! # assert_eq!(poll_ready_item(&mut cx, &mut Some(7)), Poll::Ready(7));
//! ```
//!
//! IRQL: wherever the future is polled (any IRQL <= DISPATCH_LEVEL); a few relaxed atomic
//! operations and, when the budget is spent, one `wake_by_ref`.
//!
//! [`Config::max_ready_per_poll`]: crate::Config::max_ready_per_poll

use core::task::{Context, Poll};

use crate::loom::Ordering::Relaxed;
use crate::task::waker::task_of;

/// Spends one unit of the polling task's budget: `Ready(())` to go on, or `Pending` after
/// waking the task when its budget for this poll is spent. Call it just before returning
/// `Ready` from a leaf future, and keep the result for the next poll when it says `Pending`.
///
/// IRQL <= DISPATCH_LEVEL (wherever the future is polled).
pub fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let Some(task) = task_of(cx.waker()) else {
        return Poll::Ready(());
    };
    let budget = &task.budget;
    match budget.load(Relaxed) {
        0 => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        left => {
            budget.store(left - 1, Relaxed);
            Poll::Ready(())
        }
    }
}
