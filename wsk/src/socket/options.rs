//! Socket options through `WskControlSocket` (`WskSetOption`).

use wsk_sys::{
    IPPROTO_TCP, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_RCVBUF, SO_REUSEADDR, SO_SNDBUF, SOL_SOCKET, TCP_NODELAY,
    WskSetOption,
};

use crate::error::Result;
use crate::op::OpSlot;
use crate::socket::call::{socket_call, unit};
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

/// An option that can be set on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOption {
    /// `SO_REUSEADDR`: allow binding an address in use (set before bind).
    ReuseAddress(bool),
    /// `SO_EXCLUSIVEADDRUSE`: forbid others from binding the same address (set before bind).
    ExclusiveAddressUse(bool),
    /// `SO_KEEPALIVE`.
    KeepAlive(bool),
    /// `TCP_NODELAY`: disable Nagle's algorithm.
    NoDelay(bool),
    /// `SO_SNDBUF` in bytes.
    SendBufferSize(u32),
    /// `SO_RCVBUF` in bytes.
    ReceiveBufferSize(u32),
    /// `IP_PKTINFO` (IPv4 datagram sockets): each received datagram comes with its packet
    /// information ([`RecvMeta::control`](crate::socket::control::RecvMeta::control)).
    PacketInfo(bool),
    /// `IPV6_PKTINFO`: as [`PacketInfo`](Self::PacketInfo), on IPv6 datagram sockets.
    PacketInfoV6(bool),
}

impl SocketOption {
    /// (level, option name, value as a 32-bit integer)
    ///
    /// Any IRQL.
    pub fn encode(self) -> (u32, u32, u32) {
        match self {
            SocketOption::ReuseAddress(on) => (SOL_SOCKET, SO_REUSEADDR, u32::from(on)),
            SocketOption::ExclusiveAddressUse(on) => (SOL_SOCKET, SO_EXCLUSIVEADDRUSE, u32::from(on)),
            SocketOption::KeepAlive(on) => (SOL_SOCKET, SO_KEEPALIVE, u32::from(on)),
            SocketOption::NoDelay(on) => (IPPROTO_TCP, TCP_NODELAY, u32::from(on)),
            SocketOption::SendBufferSize(n) => (SOL_SOCKET, SO_SNDBUF, n),
            SocketOption::ReceiveBufferSize(n) => (SOL_SOCKET, SO_RCVBUF, n),
            SocketOption::PacketInfo(on) => (wsk_sys::IPPROTO_IP, wsk_sys::IP_PKTINFO, u32::from(on)),
            SocketOption::PacketInfoV6(on) => (wsk_sys::IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO, u32::from(on)),
        }
    }
}

/// Sets `option` with an IRP from `slot`. IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) async fn set_option<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    option: SocketOption,
) -> Result<()> {
    let (level, name, value) = option.encode();
    // SAFETY: the option value lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |args, _| args.option[..4].copy_from_slice(&value.to_ne_bytes()),
            |socket, table, irp, args| {
                K::basic(table).WskControlSocket.map(|control| {
                    control(
                        socket,
                        WskSetOption,
                        name,
                        level,
                        4,
                        (*args).option.as_mut_ptr().cast(),
                        0,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        irp,
                    )
                })
            },
        )
    }
    .await;
    unit(done)
}
