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
use wsk_executor::{Executor, IoObject, Spawner};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, UNICODE_STRING};

/// What a test body gets.
pub struct Env {
    /// The registration (lives until unload, after every task is gone).
    pub wsk: &'static Wsk,
    /// Spawns further tasks.
    pub spawner: Spawner,
}

struct DriverState {
    executor: Option<Executor>,
    wsk: Option<Box<Wsk>>,
}

static STATE: Mutex<Option<DriverState>> = Mutex::new(None);

unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    let Ok(wsk) = Wsk::register(std::time::Duration::from_secs(1)) else { return STATUS_UNSUCCESSFUL };
    // SAFETY: the emulator passes a valid driver object.
    let Ok(executor) = Executor::new(unsafe { IoObject::from_driver(driver) }) else { return STATUS_UNSUCCESSFUL };
    *STATE.lock().unwrap() = Some(DriverState { executor: Some(executor), wsk: Some(Box::new(wsk)) });
    // SAFETY: valid driver object.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    let Some(mut state) = STATE.lock().unwrap().take() else { return };
    if let Some(executor) = state.executor.take() {
        assert!(executor.shutdown().is_ok(), "unload runs at PASSIVE_LEVEL");
    }
    // Background closes finish shortly after their owners are gone.
    wsk::wait_for_sockets_closed(Duration::from_secs(10));
    drop(state.wsk.take());
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
    let driver = kernel.load("sockets", driver_entry).expect("test driver loads");
    let (tx, rx) = mpsc::channel();
    {
        let guard = STATE.lock().unwrap();
        let state = guard.as_ref().expect("driver state");
        let wsk: &'static Wsk = {
            let ptr: *const Wsk = &**state.wsk.as_ref().expect("registration");
            // SAFETY: the registration lives in a Box until unload, which first shuts down the
            // executor, so no task outlives it.
            unsafe { &*ptr }
        };
        let executor = state.executor.as_ref().expect("executor");
        let env = Env { wsk, spawner: executor.spawner() };
        let task = executor
            .spawn(async move {
                let out = body(env).await;
                let _ = tx.send(out);
            })
            .expect("spawn test body");
        drop(task);
    }
    let out = rx.recv_timeout(limit);
    let report = driver.unload();
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
    assert!(report.is_clean(), "verifier report not clean:\n{report}");
    out
}
