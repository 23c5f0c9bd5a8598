//! Workspace-level integration tests and benchmarks.
//!
//! The tests (`tests/`) load small drivers built on the workspace's crates into the emulated
//! kernel with its verifier on and check their results and the verifier's report at unload.
//! The benchmarks (`benches/`, run with `cargo xtask bench`) compare the executor with other
//! async runtimes. This library is the one test harness every test binary uses:
//!
//! * [`driver`]: a test driver's executor (DriverEntry and DriverUnload pieces), loading with
//!   the verifier on and the clean-unload check;
//! * [`harness`]: runs an async body as a task of a test driver with a WSK registration and an
//!   executor, and returns the verifier report;
//! * [`wait`]: the watchdog and bounded waits;
//! * [`mailbox`]: a value and a waker for handshakes between a task and a DPC or a thread;
//! * [`datagrams`]: host UDP senders that keep a bounded number of datagrams in flight;
//! * [`fixtures`]: a loopback address, a byte pattern and a bound listener.

pub mod datagrams;
pub mod driver;
pub mod fixtures;
pub mod harness;
pub mod mailbox;
pub mod wait;

pub use driver::{
    EXECUTOR, UnloadRecord, builder, driver_unload, load, lock, plain_driver_entry, start_executor, stop_executor,
    take_unload_record, unload_clean, with_executor,
};
pub use mailbox::Mailbox;
pub use wait::{TEST_LIMIT, Watchdog, wait_until};
