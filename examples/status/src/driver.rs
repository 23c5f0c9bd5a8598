//! DriverEntry and DriverUnload of the status driver: a [`TcpService`] serving each
//! connection with [`server::serve`].

use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::parameters::listen_address;
use wsk::pool::PoolBox;
use wsk::resolve::{Family, Resolve};
use wsk::service::{self, Service, TcpService};
use wsk::{DriverGlobal, Error, Wsk, log};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

use crate::server::{self, STATS};

/// Port used when the service key sets none.
pub const DEFAULT_PORT: u16 = 8080;
/// How long DriverUnload waits for background socket closes to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The registration, the executor and the accept task, between DriverEntry and DriverUnload.
static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` and `registry_path` are the valid arguments the I/O manager (or the
/// emulator) passes.
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    let start_driver = || unsafe { start(driver_object, registry_path) };
    // SAFETY: forwarded contract.
    unsafe { service::driver_entry(driver_object, "status", driver_unload, start_driver) }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<(), Error> {
    SERVICE.ensure_empty()?;
    // SAFETY: forwarded contract.
    let addr = unsafe { listen_address(registry_path, DEFAULT_PORT)? };
    // SAFETY: DriverEntry's own driver object (forwarded contract).
    let service = unsafe { Service::start(driver_object, "status")? };
    announce_localhost(service.wsk()?, addr.port());
    let service = TcpService::listen(service, addr, &[], server::COUNTERS, server::serve)?;
    let service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
    // Empty: checked at the top.
    let _ = SERVICE.set(service);
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

/// DriverUnload. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "status: DriverUnload");
    if let Some(mut service) = SERVICE.take() {
        let outcome = service.stop(CLOSE_WAIT);
        log!(always, "status: stop: {}", outcome);
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
