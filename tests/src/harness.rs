//! Runs an async test body inside a driver loaded into the emulator (verifier on): the
//! driver registers with WSK and starts an executor; the body runs as a task; unload shuts
//! everything down and returns the verifier report.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use wsk::Wsk;
use wsk_emulator::{Kernel, VerifierReport};
use wsk_executor::{Config, Spawner};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, UNICODE_STRING};

use crate::driver::{self, lock};

/// What a test body gets.
pub struct Env {
    /// The registration (lives until unload, after every task is gone).
    pub wsk: &'static Wsk,
    /// Spawns further tasks.
    pub spawner: Spawner,
}

/// The driver's WSK registration (lives until unload, after every task is gone).
static REGISTRATION: Mutex<Option<Box<Wsk>>> = Mutex::new(None);

/// The driver's name prefix: each run loads `sockets-N`, so that its unload record (filed
/// under the driver's name) cannot be taken by another test's run, which may load and unload
/// its own driver between this run's unload and its look at the record.
const DRIVER: &str = "sockets";

/// Runs so far (the `N` of the driver names).
static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    let Ok(wsk) = Wsk::register(Duration::from_secs(1)) else { return STATUS_UNSUCCESSFUL };
    *lock(&REGISTRATION) = Some(Box::new(wsk));
    // SAFETY: the emulator passes DriverEntry's own driver object.
    let status = unsafe { driver::start_executor(driver, Config::new()) };
    if status != STATUS_SUCCESS {
        drop(lock(&REGISTRATION).take());
        return status;
    }
    // SAFETY: valid driver object; replaces the unload routine `start_executor` set.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

unsafe extern "system" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the I/O manager passes the live driver object.
    unsafe { driver::stop_executor(driver) };
    // Background closes finish shortly after their owners are gone.
    wsk::wait_for_sockets_closed(Duration::from_secs(10));
    drop(lock(&REGISTRATION).take());
}

type Body<T> = Box<dyn FnOnce(Env) -> Pin<Box<dyn Future<Output = T> + Send>> + Send>;

/// Loads the driver, runs `body` as a task (bounded by `limit`), unloads, and returns the
/// body's output with the verifier report.
pub fn run<T, F, Fut>(limit: Duration, body: F) -> (T, VerifierReport)
where
    T: Send + 'static,
    F: FnOnce(Env) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    run_with(Kernel::builder().verifier(true), limit, body)
}

/// [`run`] with a kernel configured by the caller (verifier, site capture, faults).
pub fn run_with<T, F, Fut>(kernel: wsk_emulator::KernelBuilder, limit: Duration, body: F) -> (T, VerifierReport)
where
    T: Send + 'static,
    F: FnOnce(Env) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let body: Body<T> = Box::new(move |env| Box::pin(body(env)));
    let name = std::format!("{DRIVER}-{}", RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let driver = kernel.load(&name, driver_entry).expect("test driver loads");
    let (tx, rx) = mpsc::channel();
    {
        let wsk: &'static Wsk = {
            let guard = lock(&REGISTRATION);
            let ptr: *const Wsk = &raw const **guard.as_ref().expect("registration");
            // SAFETY: the registration lives in a Box until unload, which first shuts down the
            // executor, so no task outlives it.
            unsafe { &*ptr }
        };
        let task = driver::with_executor(|executor| {
            let env = Env { wsk, spawner: executor.spawner() };
            executor.spawn(async move {
                let out = body(env).await;
                let _ = tx.send(out);
            })
        })
        .expect("spawn test body");
        drop(task);
    }
    let out = rx.recv_timeout(limit);
    let report = driver.unload();
    if report.unload_called {
        let record = driver::take_unload_record(&name).unwrap_or_else(|| panic!("no unload record; report: {report}"));
        assert!(
            record.had_executor && record.shutdown_ok,
            "unload runs at PASSIVE_LEVEL: {record:?}; report: {report}"
        );
    }
    match out {
        Ok(out) => (out, report),
        Err(_) => panic!("test body did not finish within {limit:?}; report: {report}"),
    }
}

/// [`run`], asserting a clean report.
pub fn run_clean<T, F, Fut>(limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Env) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (out, report) = run(limit, body);
    report.assert_clean();
    out
}
