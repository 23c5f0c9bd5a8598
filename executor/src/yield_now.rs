//! `yield_now`: let the other ready tasks run.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// Yields once: the task is woken at once and goes to the back of the run queue, so the
/// tasks already queued run before it continues. Counts against the run's budget like any
/// poll. IRQL: wherever the awaiting task runs.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
