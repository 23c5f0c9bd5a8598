//! Bounds on waiting: no test waits without one.
//!
//! * [`Watchdog`] turns a hang into a failure (it aborts the process after its limit).
//! * [`wait_until`] polls a condition with a deadline.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single test may take, waiting for the emulator's driver slot included, before
/// the watchdog aborts the process.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Aborts the process if it is not dropped within its limit: a hung test fails instead of
/// hanging the run.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching `what` for at most `limit`.
    pub fn new(what: &str, limit: Duration) -> Self {
        let (done, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = thread::Builder::new()
            .name(format!("watchdog {what}"))
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    eprintln!("watchdog: `{what}` did not finish within {} s; aborting", limit.as_secs());
                    std::process::abort();
                }
            })
            .expect("cannot start the watchdog thread");
        Self { done: Some(done), thread: Some(thread) }
    }

    /// The watchdog for one test, with [`TEST_LIMIT`].
    pub fn test(what: &str) -> Self {
        Self::new(what, TEST_LIMIT)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits (sleeping briefly between checks) until `condition` holds; panics after `limit`.
/// PASSIVE_LEVEL or APC_LEVEL only (at DISPATCH_LEVEL the emulator reports
/// `BLOCKED_AT_DISPATCH_LEVEL`).
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    wsk_emulator::assert_may_block(what);
    let deadline = Instant::now() + limit;
    let mut spins = 0u32;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {} s waiting for {what}", limit.as_secs());
        spins += 1;
        if spins < 64 {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(100));
        }
    }
}
