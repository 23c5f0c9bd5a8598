//! Timers: [`Sleep`] and [`Timeout`], backed by the platform's one-shot timer (`KTIMER` +
//! `KDPC` in the kernel).
//!
//! No thread blocks while a timer runs: the expiry runs as a DPC and wakes the task. A timer
//! allocates one small block when first polled, shared with its DPC and freed by whichever
//! lets go last, so it stays valid until the DPC can no longer run (see the `timer` module).

pub(crate) mod timer;

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::kernel::Kernel;
use crate::platform::Platform;
use timer::TimerRef;

/// Future that completes after a duration; see [`sleep`](crate::sleep).
///
/// Poll it at IRQL <= DISPATCH_LEVEL (normally in a task, at PASSIVE_LEVEL); drop it at
/// IRQL <= DISPATCH_LEVEL.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep<P: Platform = Kernel> {
    /// When it completes, on `P::now_nanos`'s clock.
    deadline: u64,
    timer: Option<TimerRef<P>>,
    done: bool,
    _platform: PhantomData<fn() -> P>,
}

impl<P: Platform> Sleep<P> {
    /// A sleep of `duration`, counted from now. Any IRQL.
    pub fn new(duration: Duration) -> Self {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Self { deadline: P::now_nanos().saturating_add(nanos), timer: None, done: false, _platform: PhantomData }
    }

    /// Whether the sleep has completed. Any IRQL.
    pub fn is_elapsed(&self) -> bool {
        self.done || self.timer.as_ref().is_some_and(TimerRef::is_fired)
    }

    fn finish(&mut self) -> Poll<()> {
        self.done = true;
        // Free the timer now rather than when the future is dropped.
        self.timer = None;
        Poll::Ready(())
    }
}

impl<P: Platform> Future for Sleep<P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(());
        }
        if let Some(timer) = &this.timer {
            if timer.is_fired() {
                return this.finish();
            }
            timer.register(cx.waker());
            if timer.is_fired() {
                return this.finish();
            }
            return Poll::Pending;
        }
        let remaining = this.deadline.saturating_sub(P::now_nanos());
        if remaining == 0 {
            return this.finish();
        }
        match TimerRef::start(Duration::from_nanos(remaining), cx.waker()) {
            Some(timer) => this.timer = Some(timer),
            // Memory is short: try again at the next poll rather than fail or block.
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    }
}

impl<P: Platform> fmt::Debug for Sleep<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline_nanos", &self.deadline)
            .field("armed", &self.timer.is_some())
            .field("elapsed", &self.is_elapsed())
            .finish()
    }
}

/// The time given to [`timeout`](crate::timeout) ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl core::error::Error for Elapsed {}

/// Future that runs `F` with a time limit; see [`timeout`](crate::timeout).
#[must_use = "futures do nothing unless awaited"]
pub struct Timeout<F, P: Platform = Kernel> {
    future: F,
    sleep: Sleep<P>,
}

impl<F: Future, P: Platform> Timeout<F, P> {
    /// Runs `future` for at most `duration`, counted from now. Any IRQL.
    pub fn new(duration: Duration, future: F) -> Self {
        Self { future, sleep: Sleep::new(duration) }
    }

    /// The wrapped future. Any IRQL.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The wrapped future, without the time limit. Any IRQL.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future, P: Platform> Future for Timeout<F, P> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is never moved out of a pinned `Timeout` (structural pinning);
        // `sleep` is `Unpin` and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F, P: Platform> fmt::Debug for Timeout<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout").field("sleep", &self.sleep).finish_non_exhaustive()
    }
}
