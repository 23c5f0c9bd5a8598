//! Tests of the portable core over a std (or loom) test platform.

mod platform;

#[cfg(not(loom))]
mod block_on_tests;
#[cfg(not(loom))]
mod executor_tests;
#[cfg(loom)]
mod loom_models;
#[cfg(not(loom))]
mod time_tests;

#[cfg(not(loom))]
mod util {
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll, Waker};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wakes.
    #[derive(Default)]
    pub(crate) struct CountWaker(pub(crate) AtomicUsize);

    impl Wake for CountWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountWaker {
        pub(crate) fn new() -> (Arc<Self>, Waker) {
            let w = Arc::new(Self::default());
            (w.clone(), Waker::from(w))
        }

        pub(crate) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Polls `f` once with `waker`.
    pub(crate) fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    /// Sets a flag (counts) when dropped.
    pub(crate) struct DropFlag(pub(crate) Arc<AtomicUsize>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that is pending until its flag is set, storing its waker.
    pub(crate) struct Gate {
        pub(crate) open: Arc<std::sync::atomic::AtomicBool>,
        pub(crate) waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Gate {
        pub(crate) fn new() -> Self {
            Self { open: Arc::default(), waker: Arc::default() }
        }

        /// Opens the gate from anywhere and wakes the waiting task.
        pub(crate) fn opener(&self) -> impl FnOnce() + Send + 'static {
            let open = self.open.clone();
            let waker = self.waker.clone();
            move || {
                open.store(true, Ordering::SeqCst);
                if let Some(w) = waker.lock().unwrap().take() {
                    w.wake();
                }
            }
        }
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.open.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
        }
    }

    /// A future that never completes.
    pub(crate) fn pending_forever() -> core::future::Pending<()> {
        core::future::pending()
    }
}
