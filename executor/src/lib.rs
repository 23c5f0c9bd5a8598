//! An async executor for Windows kernel drivers.
//!
//! Tasks run on one system work item per [`Executor`] at PASSIVE_LEVEL; they are woken from
//! any IRQL <= DISPATCH_LEVEL (IRP completion routines, DPCs, other tasks) without allocating,
//! blocking or taking locks. Timers are `KTIMER`s with DPCs, so no thread blocks while a task
//! sleeps. `block_on` serves PASSIVE_LEVEL code outside the executor (`DriverEntry`,
//! `DriverUnload`).
//!
//! ```text
//!   completion routine / DPC          run queue (lock-free, intrusive)      work item (PASSIVE)
//!   waker.wake() ──push task──────────► [t3] [t7] [t1] ──pop──────────────► poll, budgeted,
//!             └──queue work item (if not queued) ───────────────────────────► re-queue if more
//! ```
//!
//! # Use in a driver
//!
//! ```no_run
//! # use wsk_executor::{Executor, IoObject};
//! # fn example(driver: *mut wsk_sys::DRIVER_OBJECT) -> Result<(), Box<dyn std::error::Error>> {
//! // DriverEntry (PASSIVE_LEVEL):
//! // SAFETY: the driver's own driver object.
//! let executor = Executor::new(unsafe { IoObject::from_driver(driver) })?;
//! let handle = executor.spawn(async {
//!     wsk_executor::sleep(core::time::Duration::from_millis(10)).await;
//!     42
//! })?;
//! // DriverUnload (PASSIVE_LEVEL): cancel what is left and wait until it is gone.
//! drop(handle);
//! executor.shutdown().expect("DriverUnload runs at PASSIVE_LEVEL");
//! # Ok(()) }
//! ```
//!
//! # IRQL
//!
//! Every public function states the highest IRQL it may be called at. Calling one that must
//! wait above PASSIVE_LEVEL returns an error; it never bugchecks.
//!
//! # Structure
//!
//! The executor is a portable core written against [`platform::Platform`] (memory, the work
//! item, events, timers, a clock), with atomics from a shim that lets the loom model checker
//! explore it; [`kernel`] is the Windows backend.

#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

mod atomic_waker;
mod block_on;
mod config;
pub mod coop;
mod error;
mod executor;
mod importance;
pub mod kernel;
mod loom;
pub mod platform;
mod queue;
mod run;
mod run_state;
mod scheduler;
mod shutdown;
mod task;
pub mod time;
mod yield_now;

#[cfg(test)]
mod tests;

use core::future::Future;
use core::time::Duration;

pub use atomic_waker::AtomicWaker;
pub use block_on::block_on_with;
pub use config::Config;
pub use error::{BlockOnError, JoinError, SpawnError, StartError};
pub use executor::{Executor, Spawner};
pub use importance::Importance;
pub use kernel::{IoObject, Kernel, pool};
pub use shutdown::{ShutdownReport, StalledShutdown};
pub use task::JoinHandle;
pub use time::{Elapsed, Sleep, Timeout};
pub use yield_now::{YieldNow, yield_now};

/// Runs `future` to completion on the calling thread. PASSIVE_LEVEL only; see
/// [`block_on_with`] for the details and errors.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, BlockOnError> {
    block_on_with::<Kernel, F>(future)
}

/// Completes after `duration`, counted from this call, without blocking a thread: a
/// `KTIMER`'s DPC wakes the task. Any IRQL to create; poll at IRQL <= DISPATCH_LEVEL.
///
/// The timer is allocated at the first poll. If pool memory is short then, the sleep does
/// not fail: it yields and retries at the next poll.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::new(duration)
}

/// Runs `future` for at most `duration`: `Err(Elapsed)` if the time runs out first, in which
/// case `future` is dropped with the `Timeout`. Any IRQL to create; poll at IRQL <=
/// DISPATCH_LEVEL.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout::new(duration, future)
}
