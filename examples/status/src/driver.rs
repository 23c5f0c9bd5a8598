//! DriverEntry and DriverUnload of the status driver.

use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::parameters::listen_address;
use wsk::pool::PoolBox;
use wsk::resolve::{Family, Resolve};
use wsk::{DriverGlobal, Error, TcpListener, Wsk, log};
use wsk_executor::{Executor, Importance, IoObject, JoinHandle};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, UNICODE_STRING};

use crate::server::{self, STATS};

/// Port used when the service key sets none.
pub const DEFAULT_PORT: u16 = 8080;
/// How long DriverEntry waits for the WSK provider.
const PROVIDER_WAIT: Duration = Duration::from_secs(1);
/// How long DriverUnload waits for background socket closes to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Everything the driver owns between DriverEntry and DriverUnload, in drop order.
struct DriverState {
    accept: Option<JoinHandle<()>>,
    executor: Option<Executor>,
    wsk: Option<Wsk>,
}

static STATE: DriverGlobal<DriverState> = DriverGlobal::new();

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` and `registry_path` are the valid arguments the I/O manager (or the
/// emulator) passes.
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    log!(always, "status: DriverEntry");
    // SAFETY: forwarded contract.
    match unsafe { start(driver_object, registry_path) } {
        Ok(()) => {
            // SAFETY: valid driver object; DriverEntry may set DriverUnload.
            unsafe { (*driver_object).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(e) => {
            log!(error, "status: DriverEntry failed: {}", e);
            e.to_status()
        }
    }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<(), Error> {
    // SAFETY: forwarded contract.
    let addr = unsafe { listen_address(registry_path, DEFAULT_PORT)? };
    let wsk = Wsk::register(PROVIDER_WAIT)?;
    if !wsk.is_ready() {
        log!(error, "status: WSK provider not ready after {:?}", PROVIDER_WAIT);
        return Err(Error::NotReady);
    }
    // SAFETY: the driver's own driver object, valid for the driver's lifetime.
    let executor = Executor::new(unsafe { IoObject::from_driver(driver_object) })?;
    let mut state = PoolBox::try_new(DriverState { accept: None, executor: Some(executor), wsk: Some(wsk) })
        .map_err(|_| Error::NoMemory)?;
    let wsk_ref = state.wsk.as_ref().ok_or(Error::NotReady)?;
    announce_localhost(wsk_ref, addr.port());
    let listener = match wsk_executor::block_on(TcpListener::bind(wsk_ref, addr)) {
        Ok(Ok(listener)) => listener,
        Ok(Err(e)) => {
            log!(error, "status: cannot listen on {}: {}", addr, e);
            stop(&mut state);
            return Err(e);
        }
        Err(e) => {
            stop(&mut state);
            return Err(e.into());
        }
    };
    let executor = state.executor.as_ref().ok_or(Error::NotReady)?;
    match executor.spawn_with(Importance::High, server::accept_loop(listener, executor.spawner())) {
        Ok(handle) => state.accept = Some(handle),
        Err(e) => {
            stop(&mut state);
            return Err(e.into());
        }
    }
    log!(always, "status: listening on {}", addr);
    drop(STATE.set(state));
    Ok(())
}

/// Resolves "localhost" for `port`, IPv4 only and one address at most, and logs the answer
/// (`status: localhost is ...`): a resolution with hints, which `cargo xtask wine-test` checks
/// under Wine's `WskGetAddressInfo`. A failure is logged; the driver serves regardless.
fn announce_localhost(wsk: &Wsk, port: u16) {
    let query = Resolve::new("localhost").port(port).family(Family::V4).max(1);
    match wsk_executor::block_on(wsk.resolve_with(&query)) {
        Ok(Ok(list)) => match list.first() {
            Some(first) => log!(always, "status: localhost is {} ({} address)", first, list.len()),
            None => log!(error, "status: localhost resolved to nothing"),
        },
        Ok(Err(e)) => log!(error, "status: cannot resolve localhost: {}", e),
        Err(e) => log!(error, "status: cannot resolve localhost: {}", e),
    }
}

/// Stop accepting, cancel every task (their sockets close), wait for the executor and the
/// sockets, deregister.
fn stop(state: &mut DriverState) {
    if let Some(accept) = state.accept.take() {
        accept.abort();
    }
    if let Some(executor) = state.executor.take()
        && let Err(executor) = executor.shutdown()
    {
        log!(error, "status: executor shutdown above PASSIVE_LEVEL; leaking it");
        core::mem::forget(executor);
    }
    wsk::wait_for_sockets_closed(CLOSE_WAIT);
    drop(state.wsk.take());
}

/// DriverUnload. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "status: DriverUnload");
    if let Some(mut state) = STATE.take() {
        stop(&mut state);
    }
    log!(
        always,
        "status: DriverUnload done: {} connections, {} requests, {} errors, {} sockets open",
        STATS.connections.load(Ordering::Relaxed),
        STATS.requests.load(Ordering::Relaxed),
        STATS.errors.load(Ordering::Relaxed),
        wsk::live_sockets()
    );
}
