//! Pieces shared by the executor's integration tests.
//!
//! * A test driver's executor lives in [`EXECUTOR`]: its DriverEntry calls [`start_executor`]
//!   (which also installs [`driver_unload`]); the test body reaches it with [`with_executor`].
//!   The emulator loads one driver at a time per process, so one slot serves every test of a
//!   binary.
//! * [`driver_unload`] shuts the executor down and leaves an [`UnloadRecord`] under the
//!   driver's name, so a test can check what its own unload saw.
//! * [`load`] / [`unload_clean`] load with the verifier on and assert a clean report.
//! * [`Watchdog`] turns a hang into a failure: no test waits without a bound.
//! * [`Mailbox`] is a value plus an `AtomicWaker`, for handshakes between a task and a DPC or
//!   another thread.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use wsk_emulator::{Kernel, KernelBuilder, LoadedDriver, VerifierReport};
use wsk_executor::{AtomicWaker, Config, Executor, IoObject, StartError};
use wsk_sys::{
    DRIVER_INITIALIZE, DRIVER_OBJECT, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};

/// How long any single test may take, waiting for the emulator's driver slot included, before
/// the watchdog aborts the process.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// The loaded test driver's executor.
pub static EXECUTOR: Mutex<Option<Executor>> = Mutex::new(None);

/// What [`driver_unload`] saw, by driver name.
static UNLOADS: Mutex<BTreeMap<String, UnloadRecord>> = Mutex::new(BTreeMap::new());

/// What a test driver's unload routine saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnloadRecord {
    /// The driver still had an executor (DriverEntry succeeded and nobody took it).
    pub had_executor: bool,
    /// `Executor::live_tasks()` just before shutdown.
    pub live_tasks_before_shutdown: usize,
    /// `Executor::shutdown()` returned `Ok` (it only returns once every task is freed).
    pub shutdown_ok: bool,
    /// How long shutdown took, in microseconds.
    pub shutdown_micros: u128,
    /// `kernel::live_timers()` after shutdown. Read here, while the driver is still loaded: the
    /// count is process-wide, and once unload returns the next test's driver may arm timers.
    pub live_timers_after_shutdown: usize,
}

/// Locks a test mutex, ignoring poisoning (a failed test must not fail the next ones). It may
/// sleep: PASSIVE_LEVEL or APC_LEVEL only (at DISPATCH_LEVEL the emulator reports
/// `BLOCKED_AT_DISPATCH_LEVEL`).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    wsk_emulator::assert_may_block("common::lock");
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// DriverEntry's part: creates the executor for `driver` with `config`, stores it in
/// [`EXECUTOR`] and sets [`driver_unload`] as the unload routine. PASSIVE_LEVEL.
///
/// # Safety
///
/// `driver` is the driver object DriverEntry received.
pub unsafe fn start_executor(driver: *mut DRIVER_OBJECT, config: Config) -> NTSTATUS {
    // SAFETY: the caller passes the driver's own driver object.
    let io = unsafe { IoObject::from_driver(driver) };
    match Executor::with_config(io, config) {
        Ok(executor) => {
            *lock(&EXECUTOR) = Some(executor);
            // SAFETY: the driver object is valid, and DriverEntry owns its fields.
            unsafe { (*driver).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(StartError::NoMemory) => STATUS_INSUFFICIENT_RESOURCES,
        Err(StartError::NotPassive) => STATUS_UNSUCCESSFUL,
    }
}

/// The simplest test driver: an executor with the default configuration.
///
/// # Safety
///
/// Called as DriverEntry, by the (emulated) I/O manager.
pub unsafe extern "system" fn plain_driver_entry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *mut wsk_sys::UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: DriverEntry's own driver object.
    unsafe { start_executor(driver, Config::new()) }
}

/// The test drivers' DriverUnload: shuts the executor down (cancelling every task and waiting
/// until all are freed) and records what it saw under the driver's name. PASSIVE_LEVEL.
///
/// # Safety
///
/// Called as DriverUnload, by the (emulated) I/O manager.
pub unsafe extern "system" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the I/O manager passes the live driver object.
    let name = unsafe { driver_name(driver) };
    let executor = lock(&EXECUTOR).take();
    let mut record = UnloadRecord {
        had_executor: executor.is_some(),
        live_tasks_before_shutdown: 0,
        shutdown_ok: false,
        shutdown_micros: 0,
        live_timers_after_shutdown: 0,
    };
    if let Some(executor) = executor {
        record.live_tasks_before_shutdown = executor.live_tasks();
        let start = Instant::now();
        match executor.shutdown() {
            Ok(()) => record.shutdown_ok = true,
            // Refused (not PASSIVE_LEVEL): leave it allocated, so that the verifier reports it
            // as a leak, and out of the slot the next test's driver uses.
            Err(executor) => std::mem::forget(executor),
        }
        record.shutdown_micros = start.elapsed().as_micros();
    }
    record.live_timers_after_shutdown = wsk_executor::kernel::live_timers();
    lock(&UNLOADS).insert(name, record);
}

/// The driver's name, from `\Driver\NAME`.
///
/// # Safety
///
/// `driver` is a live driver object.
unsafe fn driver_name(driver: *mut DRIVER_OBJECT) -> String {
    // SAFETY: live (caller); the name is a counted string of `Length` bytes.
    let name = unsafe { &(*driver).DriverName };
    if name.Buffer.is_null() {
        return String::new();
    }
    // SAFETY: `Buffer` holds `Length / 2` UTF-16 units while the driver object lives.
    let units = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    let full = String::from_utf16_lossy(units);
    full.rsplit('\\').next().unwrap_or_default().to_owned()
}

/// What the last unload of driver `name` saw; taken, so that a later load of the same name
/// cannot find a stale record.
pub fn take_unload_record(name: &str) -> Option<UnloadRecord> {
    lock(&UNLOADS).remove(name)
}

/// Runs `f` with the loaded test driver's executor. Panics if there is none. Takes a lock that
/// may sleep (see [`lock`]).
pub fn with_executor<R>(f: impl FnOnce(&Executor) -> R) -> R {
    let guard = lock(&EXECUTOR);
    f(guard.as_ref().expect("the test driver has no executor (DriverEntry failed or unload ran)"))
}

/// The builder every test uses: verifier on, a bounded unload.
pub fn builder() -> KernelBuilder {
    Kernel::builder().verifier(true).unload_timeout(Duration::from_secs(60))
}

/// Loads `entry` as driver `name` with the verifier on. Panics (with the report) if
/// DriverEntry fails.
pub fn load(name: &str, entry: DRIVER_INITIALIZE) -> LoadedDriver {
    builder().load(name, entry).unwrap_or_else(|e| panic!("driver `{name}` did not load: {e}"))
}

/// Unloads `driver`, asserts a clean verifier report, that DriverUnload ran and shut the
/// executor down, and that no executor timer is left. Returns the report and the record.
pub fn unload_clean(driver: LoadedDriver) -> (VerifierReport, UnloadRecord) {
    let name = driver.name().to_owned();
    let report = driver.unload();
    assert!(report.is_clean(), "driver `{name}`:\n{report}");
    assert!(report.unload_called, "driver `{name}`: DriverUnload was not called\n{report}");
    let record = take_unload_record(&name).unwrap_or_else(|| panic!("driver `{name}`: no unload record"));
    assert!(record.had_executor && record.shutdown_ok, "driver `{name}`: {record:?}");
    assert_eq!(record.live_timers_after_shutdown, 0, "driver `{name}`: executor timers left after shutdown");
    (report, record)
}

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

/// A counter posted by one side and awaited by a task: the poster stores the value and
/// wakes the registered waker (any IRQL <= DISPATCH_LEVEL); the task awaits a value.
pub struct Mailbox {
    value: AtomicU64,
    waker: AtomicWaker,
}

impl Mailbox {
    pub const fn new() -> Self {
        Self { value: AtomicU64::new(0), waker: AtomicWaker::new() }
    }

    /// Stores `value` and wakes the waiting task. IRQL <= DISPATCH_LEVEL.
    pub fn post(&self, value: u64) {
        self.value.store(value, Ordering::Release);
        self.waker.wake();
    }

    /// Adds one and wakes the waiting task; returns the new value. IRQL <= DISPATCH_LEVEL.
    pub fn increment(&self) -> u64 {
        let value = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        self.waker.wake();
        value
    }

    pub fn load(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Completes once the value is at least `target`, with the value seen.
    pub async fn at_least(&self, target: u64) -> u64 {
        poll_fn(|cx| {
            let value = self.load();
            if value >= target {
                return Poll::Ready(value);
            }
            self.waker.register(cx.waker());
            // A post between the first check and the registration woke nobody: look again.
            let value = self.load();
            if value >= target {
                // Leave no waker behind: a registered waker keeps its task allocated.
                drop(self.waker.take());
                Poll::Ready(value)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Completes once the value differs from `seen`, with the new value.
    pub async fn changed_from(&self, seen: u64) -> u64 {
        poll_fn(|cx| {
            let value = self.load();
            if value != seen {
                return Poll::Ready(value);
            }
            self.waker.register(cx.waker());
            let value = self.load();
            if value != seen {
                drop(self.waker.take());
                Poll::Ready(value)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}
