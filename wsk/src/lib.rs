//! async/await over Winsock Kernel (WSK) for Windows kernel drivers.
//!
//! The same code runs in a driver (`x86_64-pc-windows-msvc`, `no_std`) and in host tests,
//! where the `wsk-emulator` crate provides the kernel.
//!
//! IRQL contracts are stated on every public function.
//!
//! # Examples
//!
//! A TCP server: accept connections, one task each.
//!
//! ```no_run
//! # use wsk::{IoBuf, TcpListener, Wsk};
//! # async fn serve(wsk: Wsk, executor: wsk_executor::Executor, addr: core::net::SocketAddr) -> wsk::Result<()> {
//! let mut listener = TcpListener::bind(&wsk, addr).await?;
//! loop {
//!     let (mut stream, peer) = listener.accept().await?;
//!     executor.spawn(async move {
//!         let (n, buf) = stream.recv(IoBuf::with_capacity(4096)?).await;
//!         // ...
//!         stream.close().await
//!     })?;
//! }
//! # }
//! ```
//!
//! Receiving through WSK's event callbacks, without an IRP per receive and without copying
//! (the items hold WSK's own buffers until dropped):
//!
//! ```no_run
//! # use wsk::events::{ConnectionEvent, EventConfig};
//! # async fn receive(stream: wsk::TcpStream) -> wsk::Result<()> {
//! let (mut events, mut writer) = stream.into_events(EventConfig::default())?;
//! while let Some(event) = wsk::events::next(&mut events).await {
//!     match event? {
//!         ConnectionEvent::Data(data) => { /* data.segments(): WSK's buffers; drop = WskRelease */ }
//!         ConnectionEvent::Disconnected { abortive } => break,
//!         ConnectionEvent::SendBacklog(ideal) => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The README shows the same snippets (a test keeps them identical).

#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod addr;
pub mod budget;
pub mod buf;
pub mod buf_pool;
pub mod client_control;
#[cfg(all(feature = "driver-runtime", windows))]
mod driver_runtime;
pub mod error;
pub mod global;
pub mod idle;
pub mod log;
mod loom;
mod op;
pub mod parameters;
pub mod pool;
#[cfg(test)]
mod readme;
pub mod registration;
pub mod resolve;
pub mod send_chain;
pub mod service;
mod shadow;
pub mod socket;
#[cfg(test)]
mod tests;
pub mod unload;

pub use buf::IoBuf;
pub use client_control::{StaticEvents, Transport};
pub use error::{Error, ErrorKind, Result};
pub use global::DriverGlobal;
pub use registration::Wsk;
pub use send_chain::SendChain;
pub use socket::admission::{Admission, PeerLimit, PerPeerLimit, Verdict};
pub use socket::events;
pub use socket::inspection::Inspection;
pub use socket::options::{EncodedOption, OptionName, SocketOption};
pub use socket::shared::{abort_all_sockets, live_sockets, open_sockets, wait_for_sockets_closed};
pub use socket::tcp::{Closer, TcpListener, TcpReadHalf, TcpSocket, TcpStream, TcpWriteHalf};
pub use socket::udp::{UdpRecvHalf, UdpReuniteError, UdpSendHalf, UdpSocket};
