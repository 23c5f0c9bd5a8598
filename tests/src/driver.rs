//! The test drivers' executor: DriverEntry and DriverUnload pieces, loading with the verifier
//! on, and the clean-unload check.
//!
//! * A test driver's executor lives in [`EXECUTOR`]: its DriverEntry calls [`start_executor`]
//!   (which also installs [`driver_unload`]); the test body reaches it with [`with_executor`].
//!   The emulator loads one driver at a time per process, so one slot serves every test of a
//!   binary.
//! * [`driver_unload`] (or a driver's own unload routine, through [`stop_executor`]) shuts the
//!   executor down and leaves an [`UnloadRecord`] under the driver's name, so a test can check
//!   what its own unload saw.
//! * [`load`] / [`unload_clean`] load with the verifier on and assert a clean report.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wsk_emulator::{Kernel, KernelBuilder, LoadedDriver, VerifierReport};
use wsk_executor::{Config, Executor, IoObject, StartError};
use wsk_sys::{
    DRIVER_INITIALIZE, DRIVER_OBJECT, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};

/// The loaded test driver's executor.
pub static EXECUTOR: Mutex<Option<Executor>> = Mutex::new(None);

/// What [`stop_executor`] saw, by driver name.
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
    wsk_emulator::assert_may_block("wsk_tests::lock");
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// The test drivers' DriverUnload: shuts the executor down (see [`stop_executor`]).
/// PASSIVE_LEVEL.
///
/// # Safety
///
/// Called as DriverUnload, by the (emulated) I/O manager.
pub unsafe extern "system" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the I/O manager passes the live driver object.
    unsafe { stop_executor(driver) };
}

/// DriverUnload's part: shuts the executor in [`EXECUTOR`] down (cancelling every task and
/// waiting until all are freed) and records what it saw under the driver's name (see
/// [`take_unload_record`]). PASSIVE_LEVEL.
///
/// # Safety
///
/// `driver` is the live driver object DriverUnload received.
pub unsafe fn stop_executor(driver: *mut DRIVER_OBJECT) {
    // SAFETY: live (caller).
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
    report.assert_clean();
    report.assert_unloaded();
    let record = take_unload_record(&name).unwrap_or_else(|| panic!("driver `{name}`: no unload record"));
    assert!(record.had_executor && record.shutdown_ok, "driver `{name}`: {record:?}");
    assert_eq!(record.live_timers_after_shutdown, 0, "driver `{name}`: executor timers left after shutdown");
    (report, record)
}
