//! DriverEntry and DriverUnload of the stress driver.

use core::net::{Ipv4Addr, SocketAddr};
use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::parameters::Parameters;
use wsk::pool::PoolBox;
use wsk::service::{self, Service};
use wsk::{DriverGlobal, Error, TcpListener, log};
use wsk_executor::Importance;
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

use crate::stats::{OP_NAMES, STATS};
use crate::workload::{self, Config, STOP, WskRef};

/// Default of the service key's `Port` parameter: the TCP port the listener binds.
pub const DEFAULT_PORT: u16 = 7008;
/// Default of the `Clients` parameter: concurrent client connections.
pub const DEFAULT_CLIENTS: u32 = 16;
/// Default of the `Seconds` parameter: how long the workers run, in seconds (0: no time limit).
pub const DEFAULT_SECONDS: u32 = 10;

const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// The registration and the executor, between DriverEntry and DriverUnload. The service stays
/// in its pool block until unload, so the tasks may borrow its registration through
/// [`WskRef`]: the executor (and every task) goes before the registration.
static SERVICE: DriverGlobal<Service> = DriverGlobal::new();

struct Settings {
    port: u16,
    seconds: u32,
    config: Config,
}

/// # Safety
/// `registry_path` is DriverEntry's argument.
unsafe fn settings(registry_path: *mut UNICODE_STRING) -> Result<Settings, Error> {
    let mut s = Settings {
        port: DEFAULT_PORT,
        seconds: DEFAULT_SECONDS,
        config: Config { clients: DEFAULT_CLIENTS, operations: 0, seed: 1, mix: workload::MIX_ALL },
    };
    // SAFETY: forwarded contract.
    if let Some(params) = unsafe { Parameters::open(registry_path)? } {
        if let Some(v) = params.dword("Port")? {
            s.port = u16::try_from(v).map_err(|_| Error::InvalidInput("Port must be below 65536"))?;
        }
        if let Some(v) = params.dword("Clients")? {
            s.config.clients = v.max(1);
        }
        if let Some(v) = params.dword("Seconds")? {
            s.seconds = v;
        }
        if let Some(v) = params.dword("Operations")? {
            s.config.operations = u64::from(v);
        }
        if let Some(v) = params.dword("Seed")? {
            s.config.seed = u64::from(v);
        }
        if let Some(v) = params.dword("Mix")? {
            s.config.mix = if v & workload::MIX_ALL == 0 { workload::MIX_ALL } else { v & workload::MIX_ALL };
        }
    }
    Ok(s)
}

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Valid arguments from the I/O manager (or the emulator).
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    let start_driver = || unsafe { start(driver_object, registry_path) };
    // SAFETY: forwarded contract.
    unsafe { service::driver_entry(driver_object, "stress", driver_unload, start_driver) }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<(), Error> {
    SERVICE.ensure_empty()?;
    // SAFETY: forwarded contract.
    let settings = unsafe { settings(registry_path)? };
    STOP.store(false, Ordering::Release);
    // SAFETY: DriverEntry's own driver object (forwarded contract).
    let service = unsafe { Service::start(driver_object, "stress")? };
    let mut service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
    if let Err(e) = spawn_workload(&service, &settings) {
        let _ = stop(&mut service);
        return Err(e);
    }
    // Empty: checked at the top.
    let _ = SERVICE.set(service);
    Ok(())
}

/// Spawns the accept loop, the clients and the timer that ends the run.
///
/// `service` stays where it is until the executor is shut down.
fn spawn_workload(service: &Service, settings: &Settings) -> Result<(), Error> {
    let (executor, wsk) = (service.executor()?, service.wsk()?);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
    let listener = wsk_executor::block_on(TcpListener::bind(wsk, addr))??;
    let spawner = executor.spawner();
    executor.spawn_with(
        Importance::High,
        workload::accept_loop(listener, executor.spawner(), settings.config.seed, settings.config.mix),
    )?;
    // SAFETY: `wsk` lives in the service's pool block, which stays in place until the
    // executor is shut down (DriverUnload, or DriverEntry's failure path).
    let wsk_ref = unsafe { WskRef::new(wsk) };
    for id in 0..settings.config.clients {
        executor.spawn(workload::client(wsk_ref, addr, spawner.clone(), settings.config, u64::from(id)))?;
    }
    if settings.seconds != 0 {
        let seconds = settings.seconds;
        executor.spawn(async move {
            wsk_executor::sleep(Duration::from_secs(u64::from(seconds))).await;
            STOP.store(true, Ordering::Release);
        })?;
    }
    log!(
        always,
        "stress: running {} clients against {} for {} s (seed {})",
        settings.config.clients,
        addr,
        settings.seconds,
        settings.config.seed
    );
    Ok(())
}

/// Stops the workers and then the service ([`Service::stop`], each of its waits bounded by
/// [`CLOSE_WAIT`]); returns what it did.
fn stop(service: &mut Service) -> service::StopOutcome {
    STOP.store(true, Ordering::Release);
    service.stop(CLOSE_WAIT)
}

/// DriverUnload. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "stress: DriverUnload");
    if let Some(mut service) = SERVICE.take() {
        let outcome = stop(&mut service);
        log!(always, "stress: stop: {}", outcome);
    }
    for (name, count) in OP_NAMES.iter().zip(STATS.ops.iter()) {
        log!(always, "stress: {:>10} {}", name, count.load(Ordering::Relaxed));
    }
    log!(
        always,
        "stress: DriverUnload done: {} bytes checked, {} data errors, {} hangs, {} sockets open",
        STATS.bytes.load(Ordering::Relaxed),
        STATS.data_errors.load(Ordering::Relaxed),
        STATS.hangs.load(Ordering::Relaxed),
        wsk::live_sockets()
    );
}
