//! The echo driver.
//!
//! A TCP echo server: DriverEntry reads `Port` and `Address` from the service key's
//! `Parameters` and starts a [`wsk::service::TcpService`] (registers with WSK, listens, and
//! spawns an accept loop); each connection is echoed by its own task ([`server::serve`]) until
//! the peer finishes sending, then disconnected gracefully and closed. DriverUnload stops the
//! service: it stops accepting, cancels every task (closing their sockets), waits until the
//! executor is idle and every socket is closed, and deregisters.
//!
//! The same code is built two ways: as `echo.sys` for `x86_64-pc-windows-msvc`
//! (`cargo xtask drivers`), where `DriverEntry` is the image entry point, and into the
//! host binary (`cargo run -p echo-driver`), which loads [`driver::driver_entry`] into the
//! kernel emulator.
//!
//! The blocking baseline of the echo benchmark ([`blocking`]) is behind the
//! `blocking-baseline` feature (on by default, for the host binary); `echo.sys` is built
//! without it.

#![no_std]

#[cfg(feature = "blocking-baseline")]
pub mod blocking;
pub mod driver;
pub mod server;

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
