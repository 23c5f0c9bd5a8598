//! The echo driver.
//!
//! Current scope: DriverEntry registers a WSK client and captures the provider NPI;
//! DriverUnload releases and deregisters it. The TCP echo service itself is not built yet.
//!
//! The same code is built two ways: as `echo.sys` for `x86_64-pc-windows-msvc`
//! (`cargo xtask drivers`), where [`DriverEntry`] is the image entry point, and into the
//! host binary (`cargo run -p echo-driver`), which loads [`driver::driver_entry`] into the
//! kernel emulator.

#![no_std]

pub mod driver;

/// The image entry point of `echo.sys`.
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
