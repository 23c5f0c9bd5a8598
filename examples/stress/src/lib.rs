//! The stress driver.
//!
//! Current scope: the driver lifecycle only (WSK registration in DriverEntry, deregistration
//! in DriverUnload), so that `stress.sys` is built and image-checked with the echo driver.
//! The socket churn it is meant to run is not built yet.

#![no_std]

pub mod driver;

/// The image entry point of `stress.sys`.
///
/// # Safety
/// Called once by the I/O manager at PASSIVE_LEVEL with a valid driver object and registry
/// path.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver_object: *mut wsk_sys::DRIVER_OBJECT,
    registry_path: *mut wsk_sys::UNICODE_STRING,
) -> wsk_sys::NTSTATUS {
    // SAFETY: forwarded contract.
    unsafe { driver::driver_entry(driver_object, registry_path) }
}
