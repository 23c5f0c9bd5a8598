//! The stress driver: hammers the `wsk` library and the WSK contract.
//!
//! On load it listens on 127.0.0.1 (`Port`, default 7008) and runs `Clients` workers (default
//! 16) for `Seconds` (default 10; 0 = until unload) or `Operations` operations, with `Seed`
//! (all REG_DWORD values of the service key's `Parameters`). Each worker connects to the
//! driver's own listener and runs random scenarios: exchanges of random sizes with content
//! checks, receives cancelled by dropping them, close racing a receive pending in another
//! task, abortive disconnects, peer resets from the server side, and sockets dropped without
//! close. Unload in the middle of traffic is part of the design: DriverUnload stops
//! everything and waits until every socket is closed.
//!
//! The host binary (`cargo run -p stress-driver -- --help`) runs it on the emulator with the
//! verifier and fault injection.

#![no_std]

pub mod driver;
pub mod rng;
pub mod scenario;
pub mod stats;
pub mod workload;

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
