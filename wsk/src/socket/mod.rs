//! Sockets: the shared core with the close contract, operation plumbing, TCP and UDP.

pub mod admission;
pub(crate) mod call;
pub mod control;
pub(crate) mod create;
pub mod events;
pub mod inspection;
pub(crate) mod kind;
pub mod options;
pub(crate) mod provider_cancel;
pub(crate) mod registry;
pub mod shared;
pub mod tcp;
#[cfg(feature = "embedded-io")]
pub mod tcp_io;
mod tcp_send;
pub mod udp;
