//! DriverEntry and DriverUnload of the echo driver.

use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::parameters::Parameters;
use wsk::pool::PoolBox;
use wsk::{DriverGlobal, Error, TcpListener, Wsk, log};
use wsk_executor::{Executor, Importance, IoObject, JoinHandle};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, UNICODE_STRING};

use crate::server::{self, STATS};

/// Port used when the service key sets none.
pub const DEFAULT_PORT: u16 = 7007;
/// How long DriverEntry waits for the WSK provider.
const PROVIDER_WAIT: Duration = Duration::from_secs(1);
/// How long DriverUnload waits for background socket closes to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Everything the driver owns between DriverEntry and DriverUnload. Field order is drop
/// order: tasks first, then the executor, then the WSK registration.
struct DriverState {
    accept: Option<JoinHandle<()>>,
    executor: Option<Executor>,
    wsk: Option<Wsk>,
}

static STATE: DriverGlobal<DriverState> = DriverGlobal::new();

/// Reads `ReceiveEvents` (REG_DWORD; 0: receive with IRPs, otherwise with event callbacks
/// where the provider has them; default 1).
///
/// # Safety
/// `registry_path` is DriverEntry's argument.
unsafe fn receive_events(registry_path: *mut UNICODE_STRING) -> Result<bool, Error> {
    // SAFETY: forwarded contract.
    let params = unsafe { Parameters::open(registry_path)? };
    Ok(match params {
        Some(params) => params.dword("ReceiveEvents")?.is_none_or(|v| v != 0),
        None => true,
    })
}

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` and `registry_path` are the valid arguments the I/O manager (or the
/// emulator) passes.
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    log!(always, "echo: DriverEntry");
    // SAFETY: forwarded contract.
    match unsafe { start(driver_object, registry_path) } {
        Ok(()) => {
            // SAFETY: valid driver object; DriverEntry may set DriverUnload.
            unsafe { (*driver_object).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(e) => {
            log!(error, "echo: DriverEntry failed: {}", e);
            e.to_status()
        }
    }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<(), Error> {
    // SAFETY: forwarded contract.
    let addr = unsafe { wsk::parameters::listen_address(registry_path, DEFAULT_PORT)? };
    // SAFETY: forwarded contract.
    let events = unsafe { receive_events(registry_path)? };
    server::RECEIVE_EVENTS.store(events, Ordering::Relaxed);
    let wsk = Wsk::register(PROVIDER_WAIT)?;
    log!(always, "echo: WskRegister ok");
    if !wsk.is_ready() {
        log!(error, "echo: WSK provider not ready after {:?}", PROVIDER_WAIT);
        return Err(Error::NotReady);
    }
    log!(always, "echo: WskCaptureProviderNPI ok");
    // SAFETY: the driver's own driver object, valid for the driver's lifetime.
    let executor = Executor::new(unsafe { IoObject::from_driver(driver_object) })?;
    let mut state = PoolBox::try_new(DriverState { accept: None, executor: Some(executor), wsk: Some(wsk) })
        .map_err(|_| Error::NoMemory)?;
    let wsk_ref = state.wsk.as_ref().ok_or(Error::NotReady)?;
    let listener = match wsk_executor::block_on(TcpListener::bind(wsk_ref, addr)) {
        Ok(Ok(listener)) => listener,
        Ok(Err(e)) => {
            log!(error, "echo: cannot listen on {}: {}", addr, e);
            stop(&mut state);
            return Err(e);
        }
        Err(e) => {
            stop(&mut state);
            return Err(e.into());
        }
    };
    let executor = state.executor.as_ref().ok_or(Error::NotReady)?;
    // High importance: under load the next accept is issued after at most one connection's
    // turn, not after every busy connection's (see `Importance`).
    let accept = executor.spawn_with(Importance::High, server::accept_loop(listener, executor.spawner()));
    match accept {
        Ok(handle) => state.accept = Some(handle),
        Err(e) => {
            stop(&mut state);
            return Err(e.into());
        }
    }
    log!(always, "echo: listening on {}", addr);
    drop(STATE.set(state));
    Ok(())
}

/// The unload protocol: stop accepting, cancel every task (their sockets close), wait for the
/// executor to be idle and every socket to be closed, deregister.
fn stop(state: &mut DriverState) {
    if let Some(accept) = state.accept.take() {
        accept.abort();
    }
    if let Some(executor) = state.executor.take()
        && let Err(executor) = executor.shutdown()
    {
        log!(error, "echo: executor shutdown above PASSIVE_LEVEL; leaking it");
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
    log!(always, "echo: DriverUnload");
    if let Some(mut state) = STATE.take() {
        stop(&mut state);
    }
    let open = wsk::live_sockets();
    log!(
        always,
        "echo: DriverUnload done: {} connections, {} bytes echoed, {} sockets open",
        STATS.connections.load(Ordering::Relaxed),
        STATS.bytes.load(Ordering::Relaxed),
        open
    );
}
