//! The status driver: an HTTP/1.1 endpoint in a kernel driver.
//!
//! DriverEntry reads `Port` and `Address` from the service key's `Parameters` and starts a
//! [`wsk::service::TcpService`] (registers with WSK, listens, and spawns an accept loop); each
//! connection is served by its own task ([`server::serve`]), which
//! reads requests through the `wsk` stream's `embedded_io_async::Read`, parses them with
//! [`httparse`] (a `no_std` HTTP parser) and writes responses through `embedded_io_async::Write`.
//! `GET /` answers a greeting, `GET /status` the driver's counters, anything else 404; methods
//! other than `GET` and `HEAD` get 405. Connections are kept alive as HTTP/1.1 asks.
//! DriverUnload stops accepting, cancels every task (closing their sockets), waits until the
//! executor is idle and every socket is closed, and deregisters.
//!
//! Built as `wskstatus.sys` for `x86_64-pc-windows-msvc` (`cargo xtask drivers`) and into the
//! host binary (`cargo run -p status-driver`), which loads [`driver::driver_entry`] into the
//! kernel emulator.

#![no_std]

pub mod driver;
pub mod http;
pub mod server;

/// The image entry point of `wskstatus.sys`.
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
