//! async/await over Winsock Kernel (WSK) for Windows kernel drivers.
//!
//! The same code runs in a driver (`x86_64-pc-windows-msvc`, `no_std`) and in host tests,
//! where the `wsk-emulator` crate provides the kernel.
//!
//! IRQL contracts are stated on every public function.

#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod addr;
pub mod buf;
pub mod error;
pub mod global;
pub mod log;
mod loom;
mod op;
pub mod pool;
pub mod registration;
pub mod registry;
pub mod resolve;
#[cfg(all(feature = "driver-runtime", windows))]
mod runtime;
pub mod socket;
#[cfg(test)]
mod tests;

pub use buf::IoBuf;
pub use error::{Error, Result};
pub use global::DriverGlobal;
pub use registration::Wsk;
pub use socket::events;
pub use socket::options::SocketOption;
pub use socket::shared::{live_sockets, wait_for_sockets_closed};
pub use socket::tcp::{Closer, TcpListener, TcpReadHalf, TcpSocket, TcpStream, TcpWriteHalf};
pub use socket::udp::UdpSocket;
