//! Socket options through `WskControlSocket`: set (`WskSetOption`), read back
//! (`WskGetOption`), and the fixed remote address of a datagram socket (`WskIoctl` with
//! `SIO_WSK_SET_REMOTE_ADDRESS`).
//!
//! Every option that can be set can be read back, except multicast membership (Windows has no
//! get for `IP_ADD_MEMBERSHIP` / `IPV6_ADD_MEMBERSHIP`). The value travels in the operation
//! slot's argument block (`OpArgs::option`), which is large enough for the
//! largest value, `IPV6_MREQ` (20 bytes).

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk_sys::{
    IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IP_MREQ, IP_MULTICAST_TTL, IP_TTL, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP,
    IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP, IPV6_MREQ, IPV6_MULTICAST_HOPS, IPV6_UNICAST_HOPS, IPV6_V6ONLY, LINGER,
    SIO_WSK_SET_REMOTE_ADDRESS, SO_BROADCAST, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_REUSEADDR,
    SO_SNDBUF, SOCKADDR_IN, SOCKADDR_IN6, SOL_SOCKET, TCP_KEEPALIVE, TCP_KEEPCNT, TCP_KEEPINTVL, TCP_NODELAY,
    WskGetOption, WskIoctl, WskSetOption,
};

use crate::addr;
use crate::error::{Error, Result};
use crate::op::{Busy, OpSlot};
use crate::socket::call::{socket_call, unit};
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

/// The largest option value: `IPV6_MREQ`.
pub(crate) const OPTION_VALUE_MAX: usize = size_of::<IPV6_MREQ>();

/// An option that can be set on a socket (and, except multicast membership, read back with
/// `get_option` and the matching [`OptionName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOption {
    /// `SO_REUSEADDR`: allow binding an address in use (set before bind).
    ReuseAddress(bool),
    /// `SO_EXCLUSIVEADDRUSE`: forbid others from binding the same address (set before bind).
    ExclusiveAddressUse(bool),
    /// `SO_KEEPALIVE` (listening and connection sockets, as WSK documents it): send
    /// keep-alive probes on a connection that stays idle, and drop it when they go unanswered.
    /// Off by default. Its timing is [`KeepAliveIdle`](Self::KeepAliveIdle),
    /// [`KeepAliveInterval`](Self::KeepAliveInterval) and
    /// [`KeepAliveProbes`](Self::KeepAliveProbes).
    KeepAlive(bool),
    /// `TCP_KEEPALIVE` (= `TCP_KEEPIDLE`, `IPPROTO_TCP`): seconds a connection stays idle
    /// before the first keep-alive probe. WSK's documentation lists only `SO_KEEPALIVE`; this
    /// and the two below are Winsock's `IPPROTO_TCP` options (Windows 10, version 1709 for the
    /// interval, 1703 for the count), which a provider may refuse: the error is returned, and
    /// the connection keeps the system's timing.
    KeepAliveIdle(u32),
    /// `TCP_KEEPINTVL` (`IPPROTO_TCP`): seconds between unanswered keep-alive probes.
    KeepAliveInterval(u32),
    /// `TCP_KEEPCNT` (`IPPROTO_TCP`): unanswered keep-alive probes before the connection is
    /// dropped.
    KeepAliveProbes(u32),
    /// `TCP_NODELAY`: disable Nagle's algorithm.
    NoDelay(bool),
    /// `SO_SNDBUF` in bytes.
    SendBufferSize(u32),
    /// `SO_RCVBUF` in bytes.
    ReceiveBufferSize(u32),
    /// `SO_LINGER`: `Some(seconds)` makes a close wait up to that long for unsent data (0: the
    /// close resets the connection); `None` turns lingering off.
    Linger(Option<u16>),
    /// `SO_BROADCAST`: datagrams may be sent to a broadcast address.
    Broadcast(bool),
    /// `IPV6_V6ONLY` (IPv6 sockets): `false` makes the socket dual stack, so that a listener on
    /// `[::]` also accepts IPv4 peers, which it reports as IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`). Windows' default is `true`. A listener must have it set before bind
    /// ([`TcpListener::bind_with`](crate::TcpListener::bind_with)).
    V6Only(bool),
    /// `IP_TTL`: time to live of unicast IPv4 packets.
    Ttl(u32),
    /// `IPV6_UNICAST_HOPS`: hop limit of unicast IPv6 packets.
    UnicastHops(u32),
    /// `IP_MULTICAST_TTL`: time to live of multicast IPv4 datagrams.
    MulticastTtl(u32),
    /// `IPV6_MULTICAST_HOPS`: hop limit of multicast IPv6 datagrams.
    MulticastHops(u32),
    /// `IP_ADD_MEMBERSHIP`: join the IPv4 multicast `group` on the interface with address
    /// `interface` (unspecified: the provider chooses). Set only.
    JoinMulticastV4 {
        /// The group.
        group: Ipv4Addr,
        /// The local interface's address.
        interface: Ipv4Addr,
    },
    /// `IP_DROP_MEMBERSHIP`: leave a group joined with [`SocketOption::JoinMulticastV4`]. Set only.
    LeaveMulticastV4 {
        /// The group.
        group: Ipv4Addr,
        /// The local interface's address.
        interface: Ipv4Addr,
    },
    /// `IPV6_ADD_MEMBERSHIP`: join the IPv6 multicast `group` on the interface with index
    /// `interface` (0: the provider chooses). Set only.
    JoinMulticastV6 {
        /// The group.
        group: Ipv6Addr,
        /// The local interface's index.
        interface: u32,
    },
    /// `IPV6_DROP_MEMBERSHIP`: leave a group joined with [`SocketOption::JoinMulticastV6`].
    /// Set only.
    LeaveMulticastV6 {
        /// The group.
        group: Ipv6Addr,
        /// The local interface's index.
        interface: u32,
    },
    /// `IP_PKTINFO` (IPv4 datagram sockets): each received datagram comes with its packet
    /// information ([`RecvMeta::control`](crate::socket::control::RecvMeta::control)).
    PacketInfo(bool),
    /// `IPV6_PKTINFO`: as [`PacketInfo`](Self::PacketInfo), on IPv6 datagram sockets.
    PacketInfoV6(bool),
}

/// An option that can be read back (`WskGetOption`): `get_option` returns its value as the
/// [`SocketOption`] of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionName {
    /// `SO_REUSEADDR`.
    ReuseAddress,
    /// `SO_EXCLUSIVEADDRUSE`.
    ExclusiveAddressUse,
    /// `SO_KEEPALIVE`.
    KeepAlive,
    /// `TCP_KEEPALIVE` (`TCP_KEEPIDLE`).
    KeepAliveIdle,
    /// `TCP_KEEPINTVL`.
    KeepAliveInterval,
    /// `TCP_KEEPCNT`.
    KeepAliveProbes,
    /// `TCP_NODELAY`.
    NoDelay,
    /// `SO_SNDBUF`.
    SendBufferSize,
    /// `SO_RCVBUF`.
    ReceiveBufferSize,
    /// `SO_LINGER`.
    Linger,
    /// `SO_BROADCAST`.
    Broadcast,
    /// `IPV6_V6ONLY`.
    V6Only,
    /// `IP_TTL`.
    Ttl,
    /// `IPV6_UNICAST_HOPS`.
    UnicastHops,
    /// `IP_MULTICAST_TTL`.
    MulticastTtl,
    /// `IPV6_MULTICAST_HOPS`.
    MulticastHops,
    /// `IP_PKTINFO`.
    PacketInfo,
    /// `IPV6_PKTINFO`.
    PacketInfoV6,
}

/// An option value as the provider reads it: level, name, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedOption {
    /// The level (`SOL_SOCKET`, `IPPROTO_TCP`, `IPPROTO_IP`, `IPPROTO_IPV6`).
    pub level: u32,
    /// The option name.
    pub name: u32,
    /// The value; its first `len` bytes count.
    pub value: [u8; OPTION_VALUE_MAX],
    /// The value's length.
    pub len: usize,
}

impl EncodedOption {
    /// The value bytes.
    ///
    /// Any IRQL.
    pub fn bytes(&self) -> &[u8] {
        &self.value[..self.len]
    }

    pub(crate) fn of(level: u32, name: u32, bytes: &[u8]) -> Self {
        let mut value = [0; OPTION_VALUE_MAX];
        value[..bytes.len()].copy_from_slice(bytes);
        Self { level, name, value, len: bytes.len() }
    }
}

// The values are written field by field at the offsets of the C structures (`wsk-sys`'s layout
// test checks them against the headers); these fix the offsets the writers below assume.
const _: () = {
    assert!(core::mem::offset_of!(LINGER, l_linger) == 2 && size_of::<LINGER>() == 4);
    assert!(core::mem::offset_of!(IP_MREQ, imr_interface) == 4 && size_of::<IP_MREQ>() == 8);
    assert!(core::mem::offset_of!(IPV6_MREQ, ipv6mr_interface) == 16 && size_of::<IPV6_MREQ>() == 20);
};

/// A `LINGER` as bytes.
fn linger_bytes(linger: Option<u16>) -> [u8; 4] {
    let ([a, b], [c, d]) = (u16::from(linger.is_some()).to_ne_bytes(), linger.unwrap_or(0).to_ne_bytes());
    [a, b, c, d]
}

/// An `IP_MREQ` as bytes (addresses in network order).
fn ip_mreq(group: Ipv4Addr, interface: Ipv4Addr) -> [u8; 8] {
    let ([a, b, c, d], [e, f, g, h]) = (group.octets(), interface.octets());
    [a, b, c, d, e, f, g, h]
}

/// An `IPV6_MREQ` as bytes (the group in network order, the interface index in host order).
fn ipv6_mreq(group: Ipv6Addr, interface: u32) -> [u8; 20] {
    let mut bytes = [0; 20];
    bytes[..16].copy_from_slice(&group.octets());
    bytes[16..].copy_from_slice(&interface.to_ne_bytes());
    bytes
}

impl SocketOption {
    /// The option's level, name and value bytes as `WskSetOption` takes them.
    ///
    /// Any IRQL.
    pub fn encode(self) -> EncodedOption {
        let int = |level, name, value: u32| EncodedOption::of(level, name, &value.to_ne_bytes());
        match self {
            SocketOption::ReuseAddress(on) => int(SOL_SOCKET, SO_REUSEADDR, u32::from(on)),
            SocketOption::ExclusiveAddressUse(on) => int(SOL_SOCKET, SO_EXCLUSIVEADDRUSE, u32::from(on)),
            SocketOption::KeepAlive(on) => int(SOL_SOCKET, SO_KEEPALIVE, u32::from(on)),
            SocketOption::KeepAliveIdle(seconds) => int(IPPROTO_TCP, TCP_KEEPALIVE, seconds),
            SocketOption::KeepAliveInterval(seconds) => int(IPPROTO_TCP, TCP_KEEPINTVL, seconds),
            SocketOption::KeepAliveProbes(n) => int(IPPROTO_TCP, TCP_KEEPCNT, n),
            SocketOption::NoDelay(on) => int(IPPROTO_TCP, TCP_NODELAY, u32::from(on)),
            SocketOption::SendBufferSize(n) => int(SOL_SOCKET, SO_SNDBUF, n),
            SocketOption::ReceiveBufferSize(n) => int(SOL_SOCKET, SO_RCVBUF, n),
            SocketOption::Linger(linger) => EncodedOption::of(SOL_SOCKET, SO_LINGER, &linger_bytes(linger)),
            SocketOption::Broadcast(on) => int(SOL_SOCKET, SO_BROADCAST, u32::from(on)),
            SocketOption::V6Only(on) => int(IPPROTO_IPV6, IPV6_V6ONLY, u32::from(on)),
            SocketOption::Ttl(n) => int(IPPROTO_IP, IP_TTL, n),
            SocketOption::UnicastHops(n) => int(IPPROTO_IPV6, IPV6_UNICAST_HOPS, n),
            SocketOption::MulticastTtl(n) => int(IPPROTO_IP, IP_MULTICAST_TTL, n),
            SocketOption::MulticastHops(n) => int(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, n),
            SocketOption::JoinMulticastV4 { group, interface } => {
                EncodedOption::of(IPPROTO_IP, IP_ADD_MEMBERSHIP, &ip_mreq(group, interface))
            }
            SocketOption::LeaveMulticastV4 { group, interface } => {
                EncodedOption::of(IPPROTO_IP, IP_DROP_MEMBERSHIP, &ip_mreq(group, interface))
            }
            SocketOption::JoinMulticastV6 { group, interface } => {
                EncodedOption::of(IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &ipv6_mreq(group, interface))
            }
            SocketOption::LeaveMulticastV6 { group, interface } => {
                EncodedOption::of(IPPROTO_IPV6, IPV6_DROP_MEMBERSHIP, &ipv6_mreq(group, interface))
            }
            SocketOption::PacketInfo(on) => int(IPPROTO_IP, wsk_sys::IP_PKTINFO, u32::from(on)),
            SocketOption::PacketInfoV6(on) => int(IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO, u32::from(on)),
        }
    }

    /// The name to read this option back with; `None` for multicast membership (set only).
    ///
    /// Any IRQL.
    pub fn name(self) -> Option<OptionName> {
        Some(match self {
            SocketOption::ReuseAddress(_) => OptionName::ReuseAddress,
            SocketOption::ExclusiveAddressUse(_) => OptionName::ExclusiveAddressUse,
            SocketOption::KeepAlive(_) => OptionName::KeepAlive,
            SocketOption::KeepAliveIdle(_) => OptionName::KeepAliveIdle,
            SocketOption::KeepAliveInterval(_) => OptionName::KeepAliveInterval,
            SocketOption::KeepAliveProbes(_) => OptionName::KeepAliveProbes,
            SocketOption::NoDelay(_) => OptionName::NoDelay,
            SocketOption::SendBufferSize(_) => OptionName::SendBufferSize,
            SocketOption::ReceiveBufferSize(_) => OptionName::ReceiveBufferSize,
            SocketOption::Linger(_) => OptionName::Linger,
            SocketOption::Broadcast(_) => OptionName::Broadcast,
            SocketOption::V6Only(_) => OptionName::V6Only,
            SocketOption::Ttl(_) => OptionName::Ttl,
            SocketOption::UnicastHops(_) => OptionName::UnicastHops,
            SocketOption::MulticastTtl(_) => OptionName::MulticastTtl,
            SocketOption::MulticastHops(_) => OptionName::MulticastHops,
            SocketOption::PacketInfo(_) => OptionName::PacketInfo,
            SocketOption::PacketInfoV6(_) => OptionName::PacketInfoV6,
            SocketOption::JoinMulticastV4 { .. }
            | SocketOption::LeaveMulticastV4 { .. }
            | SocketOption::JoinMulticastV6 { .. }
            | SocketOption::LeaveMulticastV6 { .. } => return None,
        })
    }
}

impl OptionName {
    /// (level, option name, size of the value) as `WskGetOption` takes them.
    ///
    /// Any IRQL.
    pub fn encode(self) -> (u32, u32, usize) {
        match self {
            OptionName::ReuseAddress => (SOL_SOCKET, SO_REUSEADDR, 4),
            OptionName::ExclusiveAddressUse => (SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 4),
            OptionName::KeepAlive => (SOL_SOCKET, SO_KEEPALIVE, 4),
            OptionName::KeepAliveIdle => (IPPROTO_TCP, TCP_KEEPALIVE, 4),
            OptionName::KeepAliveInterval => (IPPROTO_TCP, TCP_KEEPINTVL, 4),
            OptionName::KeepAliveProbes => (IPPROTO_TCP, TCP_KEEPCNT, 4),
            OptionName::NoDelay => (IPPROTO_TCP, TCP_NODELAY, 4),
            OptionName::SendBufferSize => (SOL_SOCKET, SO_SNDBUF, 4),
            OptionName::ReceiveBufferSize => (SOL_SOCKET, SO_RCVBUF, 4),
            OptionName::Linger => (SOL_SOCKET, SO_LINGER, size_of::<LINGER>()),
            OptionName::Broadcast => (SOL_SOCKET, SO_BROADCAST, 4),
            OptionName::V6Only => (IPPROTO_IPV6, IPV6_V6ONLY, 4),
            OptionName::Ttl => (IPPROTO_IP, IP_TTL, 4),
            OptionName::UnicastHops => (IPPROTO_IPV6, IPV6_UNICAST_HOPS, 4),
            OptionName::MulticastTtl => (IPPROTO_IP, IP_MULTICAST_TTL, 4),
            OptionName::MulticastHops => (IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 4),
            OptionName::PacketInfo => (IPPROTO_IP, wsk_sys::IP_PKTINFO, 4),
            OptionName::PacketInfoV6 => (IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO, 4),
        }
    }

    /// The option with the value the provider wrote: `bytes` are the `len` bytes it returned.
    /// An integer option returned in fewer than 4 bytes (a one-byte `BOOL`) is read from those
    /// bytes. `None` when the provider returned no byte or fewer than a `LINGER`.
    ///
    /// Any IRQL.
    pub fn decode(self, bytes: &[u8]) -> Option<SocketOption> {
        if self == OptionName::Linger {
            let onoff = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
            let seconds = u16::from_ne_bytes([*bytes.get(2)?, *bytes.get(3)?]);
            return Some(SocketOption::Linger((onoff != 0).then_some(seconds)));
        }
        if bytes.is_empty() {
            return None;
        }
        let mut word = [0; 4];
        let len = bytes.len().min(4);
        word[..len].copy_from_slice(&bytes[..len]);
        let n = u32::from_ne_bytes(word);
        let on = n != 0;
        Some(match self {
            OptionName::ReuseAddress => SocketOption::ReuseAddress(on),
            OptionName::ExclusiveAddressUse => SocketOption::ExclusiveAddressUse(on),
            OptionName::KeepAlive => SocketOption::KeepAlive(on),
            OptionName::KeepAliveIdle => SocketOption::KeepAliveIdle(n),
            OptionName::KeepAliveInterval => SocketOption::KeepAliveInterval(n),
            OptionName::KeepAliveProbes => SocketOption::KeepAliveProbes(n),
            OptionName::NoDelay => SocketOption::NoDelay(on),
            OptionName::SendBufferSize => SocketOption::SendBufferSize(n),
            OptionName::ReceiveBufferSize => SocketOption::ReceiveBufferSize(n),
            OptionName::Broadcast => SocketOption::Broadcast(on),
            OptionName::V6Only => SocketOption::V6Only(on),
            OptionName::Ttl => SocketOption::Ttl(n),
            OptionName::UnicastHops => SocketOption::UnicastHops(n),
            OptionName::MulticastTtl => SocketOption::MulticastTtl(n),
            OptionName::MulticastHops => SocketOption::MulticastHops(n),
            OptionName::PacketInfo => SocketOption::PacketInfo(on),
            OptionName::PacketInfoV6 => SocketOption::PacketInfoV6(on),
            OptionName::Linger => return None,
        })
    }
}

/// Sets `option` with an IRP from `slot`. IRQL == PASSIVE_LEVEL (task context).
pub(crate) async fn set_option<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    option: SocketOption,
) -> Result<()> {
    set_encoded(core, slot, option.encode()).await
}

/// Sets an option given as level, name and value bytes (`set_option`, and options the
/// library sets itself, such as `SO_CONDITIONAL_ACCEPT`). IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) async fn set_encoded<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    encoded: EncodedOption,
) -> Result<()> {
    // SAFETY: the option value lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |args, _| args.option = encoded.value,
            |socket, table, irp, args| {
                K::basic(table).WskControlSocket.map(|control| {
                    control(
                        socket,
                        WskSetOption,
                        encoded.name,
                        encoded.level,
                        encoded.len,
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

/// Reads option `name` back with an IRP from `slot` (`WskGetOption`; the provider reports the
/// value's length in the IRP's `Information`). IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) async fn get_option<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    name: OptionName,
) -> Result<SocketOption> {
    let (level, code, size) = name.encode();
    // SAFETY: the output buffer lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |args, _| args.option = [0; OPTION_VALUE_MAX],
            |socket, table, irp, args| {
                K::basic(table).WskControlSocket.map(|control| {
                    control(
                        socket,
                        WskGetOption,
                        code,
                        level,
                        0,
                        core::ptr::null_mut(),
                        size,
                        (*args).option.as_mut_ptr().cast(),
                        core::ptr::null_mut(),
                        irp,
                    )
                })
            },
        )
    }
    .await;
    let returned = match done {
        Ok(done) => done.result()?,
        Err(not_issued) => return Err(not_issued.error),
    };
    let args = slot.args().ok_or(Busy.error())?;
    name.decode(&args.option[..returned.min(size)])
        .ok_or(Error::InvalidInput("the provider returned a short option value"))
}

/// Sets (`Some`) or clears (`None`) the fixed remote address of a datagram socket
/// (`WskIoctl` with `SIO_WSK_SET_REMOTE_ADDRESS`) with an IRP from `slot`.
/// IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) async fn set_remote_address<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    remote: Option<SocketAddr>,
) -> Result<()> {
    let len = match remote {
        Some(SocketAddr::V4(_)) => size_of::<SOCKADDR_IN>(),
        Some(SocketAddr::V6(_)) => size_of::<SOCKADDR_IN6>(),
        None => 0,
    };
    // SAFETY: the address lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |args, _| {
                if let Some(remote) = remote {
                    args.addr = addr::to_storage(&remote);
                }
            },
            |socket, table, irp, args| {
                let input = if len == 0 { core::ptr::null_mut() } else { (&raw mut (*args).addr).cast() };
                K::basic(table).WskControlSocket.map(|control| {
                    control(
                        socket,
                        WskIoctl,
                        SIO_WSK_SET_REMOTE_ADDRESS,
                        0,
                        len,
                        input,
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

#[cfg(test)]
mod tests {
    use core::net::Ipv6Addr;

    use super::{OptionName, SocketOption};

    #[test]
    fn a_value_read_back_decodes_to_the_option_set() {
        let options = [
            SocketOption::KeepAlive(true),
            SocketOption::KeepAliveIdle(30),
            SocketOption::KeepAliveInterval(5),
            SocketOption::KeepAliveProbes(4),
            SocketOption::SendBufferSize(65_536),
            SocketOption::Linger(Some(7)),
            SocketOption::Linger(None),
            SocketOption::Broadcast(true),
            SocketOption::V6Only(false),
            SocketOption::Ttl(33),
            SocketOption::MulticastHops(5),
        ];
        for option in options {
            let encoded = option.encode();
            let name = option.name().unwrap();
            assert_eq!(name.encode(), (encoded.level, encoded.name, encoded.len));
            assert_eq!(name.decode(encoded.bytes()), Some(option));
        }
    }

    /// The keep-alive timing options are `DWORD`s at `IPPROTO_TCP` under Windows' names.
    #[test]
    fn keep_alive_timing_is_at_ipproto_tcp() {
        let at = |option: SocketOption| {
            let e = option.encode();
            (e.level, e.name, e.bytes().to_vec())
        };
        assert_eq!(at(SocketOption::KeepAliveIdle(30)), (wsk_sys::IPPROTO_TCP, 3, 30u32.to_ne_bytes().to_vec()));
        assert_eq!(at(SocketOption::KeepAliveInterval(5)), (wsk_sys::IPPROTO_TCP, 17, 5u32.to_ne_bytes().to_vec()));
        assert_eq!(at(SocketOption::KeepAliveProbes(4)), (wsk_sys::IPPROTO_TCP, 16, 4u32.to_ne_bytes().to_vec()));
        assert_eq!(wsk_sys::TCP_KEEPIDLE, wsk_sys::TCP_KEEPALIVE);
    }

    #[test]
    fn membership_values_are_the_documented_structures() {
        let join =
            SocketOption::JoinMulticastV6 { group: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x1234), interface: 3 };
        let encoded = join.encode();
        assert_eq!(
            (encoded.level, encoded.name, encoded.len),
            (wsk_sys::IPPROTO_IPV6, wsk_sys::IPV6_ADD_MEMBERSHIP, 20)
        );
        assert_eq!(&encoded.bytes()[..2], &[0xff, 0x02]);
        assert_eq!(&encoded.bytes()[16..], &3u32.to_ne_bytes());
        assert_eq!(join.name(), None);
        let leave = SocketOption::LeaveMulticastV4 { group: [239, 1, 2, 3].into(), interface: [127, 0, 0, 1].into() };
        assert_eq!(leave.encode().bytes(), &[239, 1, 2, 3, 127, 0, 0, 1]);
    }

    #[test]
    fn a_one_byte_bool_and_a_short_linger_decode_as_documented() {
        assert_eq!(OptionName::KeepAlive.decode(&[1]), Some(SocketOption::KeepAlive(true)));
        assert_eq!(OptionName::KeepAlive.decode(&[]), None);
        assert_eq!(OptionName::Linger.decode(&[1, 0]), None);
    }
}
