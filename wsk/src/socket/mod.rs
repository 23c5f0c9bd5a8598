//! Sockets: the shared core with the close contract, operation plumbing, TCP and UDP.

pub(crate) mod call;
pub mod control;
pub(crate) mod create;
pub mod events;
pub(crate) mod kind;
pub mod options;
pub mod shared;
pub mod tcp;
#[cfg(feature = "embedded-io")]
pub mod tcp_io;
mod tcp_send;
pub mod udp;
