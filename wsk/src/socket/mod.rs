//! Sockets: the shared core with the close contract, operation plumbing, TCP and UDP.

pub(crate) mod call;
pub mod shared;
pub(crate) mod create;
pub mod events;
pub mod options;
pub mod tcp;
#[cfg(feature = "embedded-io")]
pub mod tcp_io;
pub mod udp;
