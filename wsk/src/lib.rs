//! async/await over Winsock Kernel (WSK) for Windows kernel drivers.
//!
//! The same code runs in a driver (`x86_64-pc-windows-msvc`, `no_std`) and in host tests,
//! where the `wsk-emulator` crate provides the kernel.
//!
//! IRQL contracts are stated on every public function.

#![no_std]

pub mod error;
pub mod global;
pub mod log;
pub mod pool;
pub mod registration;
#[cfg(all(feature = "driver-runtime", windows))]
mod runtime;

pub use error::{Error, Result};
pub use global::DriverGlobal;
pub use registration::Wsk;
