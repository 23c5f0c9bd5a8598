//! DriverEntry and DriverUnload of the stress driver.

use wsk::pool::PoolBox;
use wsk::{DriverGlobal, Wsk, log};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, UNICODE_STRING};

/// How long DriverEntry waits for the WSK provider before continuing without it.
const PROVIDER_WAIT_MS: u32 = 1_000;

/// Everything the driver owns between DriverEntry and DriverUnload.
struct DriverState {
    #[expect(dead_code, reason = "held until unload, where dropping it deregisters")]
    wsk: Wsk,
}

static STATE: DriverGlobal<DriverState> = DriverGlobal::new();

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` must be the valid driver object the I/O manager (or emulator) passes.
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    _registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    log!(always, "stress: DriverEntry");
    let wsk = match Wsk::register(PROVIDER_WAIT_MS) {
        Ok(wsk) => wsk,
        Err(e) => {
            log!(error, "stress: WskRegister failed: {}", e);
            return e.to_status();
        }
    };
    log!(always, "stress: WskRegister ok");
    if wsk.is_ready() {
        log!(always, "stress: WskCaptureProviderNPI ok");
    } else {
        log!(error, "stress: WSK provider not ready after {} ms", PROVIDER_WAIT_MS);
    }
    let state = match PoolBox::try_new(DriverState { wsk }) {
        Ok(state) => state,
        Err(_) => return STATUS_INSUFFICIENT_RESOURCES,
    };
    drop(STATE.set(state));
    // SAFETY: the caller passes a valid driver object; DriverEntry may set DriverUnload.
    unsafe { (*driver_object).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

/// DriverUnload. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "stress: DriverUnload");
    drop(STATE.take());
    log!(always, "stress: DriverUnload done");
}
