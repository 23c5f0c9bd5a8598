//! Socket addresses (`ws2def.h` / `ws2ipdef.h`) and address-info records.
//!
//! Binds `SOCKADDR`, `SOCKADDR_IN`, `SOCKADDR_IN6`, `SOCKADDR_STORAGE`, `IN_ADDR`, `IN6_ADDR`,
//! `ADDRINFOEXW`, the `AF_*`, `SOCK_*`, `IPPROTO_*`, `SOL_*`/`SO_*` and `NS_*` constants of
//! `ws2def.h`/`ws2ipdef.h`/`ws2tcpip.h` under their C names.
//!
//! # Conversions
//!
//! The one conversion between `core::net` socket addresses and these types is here: `From`
//! [`SocketAddrV4`] / [`SocketAddrV6`] / [`SocketAddr`] into [`SOCKADDR_IN`] / [`SOCKADDR_IN6`]
//! / [`SOCKADDR_STORAGE`] and back, [`socket_addr_from_bytes`] for an address of unknown
//! family in memory of any alignment, [`read_socket_addr`] and [`write_socket_addr`] for the
//! bare `SOCKADDR` pointers WSK passes. Windows' layout: `AF_INET6` is 23, the port and the
//! IPv6 flow information are in network byte order, the scope id in host order.

use core::mem::size_of;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::basic::*;

pub type ADDRESS_FAMILY = USHORT;

pub const AF_UNSPEC: ADDRESS_FAMILY = 0;
pub const AF_INET: ADDRESS_FAMILY = 2;
/// Windows' value (differs from Linux's 10).
pub const AF_INET6: ADDRESS_FAMILY = 23;

pub const SOCK_STREAM: USHORT = 1;
pub const SOCK_DGRAM: USHORT = 2;

pub const IPPROTO_IP: ULONG = 0;
pub const IPPROTO_TCP: ULONG = 6;
pub const IPPROTO_UDP: ULONG = 17;
pub const IPPROTO_IPV6: ULONG = 41;

/// Generic address header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SOCKADDR {
    pub sa_family: ADDRESS_FAMILY,
    pub sa_data: [CHAR; 14],
}

/// IPv4 address in network byte order (4-byte aligned, as the C union with `ULONG S_addr`).
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN_ADDR {
    pub s_addr: [u8; 4],
}

/// IPv6 address in network byte order (2-byte aligned, as the C union with `USHORT[8]`).
#[repr(C, align(2))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN6_ADDR {
    pub s6_addr: [u8; 16],
}

/// IPv4 socket address. `sin_port` is in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SOCKADDR_IN {
    pub sin_family: ADDRESS_FAMILY,
    pub sin_port: USHORT,
    pub sin_addr: IN_ADDR,
    pub sin_zero: [CHAR; 8],
}

/// IPv6 socket address. `sin6_port` and `sin6_flowinfo` are in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SOCKADDR_IN6 {
    pub sin6_family: ADDRESS_FAMILY,
    pub sin6_port: USHORT,
    pub sin6_flowinfo: ULONG,
    pub sin6_addr: IN6_ADDR,
    pub sin6_scope_id: ULONG,
}

/// Storage large and aligned enough for any socket address (128 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SOCKADDR_STORAGE {
    pub ss_family: ADDRESS_FAMILY,
    pub __ss_pad1: [CHAR; 6],
    pub __ss_align: LONGLONG,
    pub __ss_pad2: [CHAR; 112],
}

impl SOCKADDR_STORAGE {
    /// All-zero storage (family `AF_UNSPEC`).
    pub const fn zeroed() -> Self {
        Self { ss_family: 0, __ss_pad1: [0; 6], __ss_align: 0, __ss_pad2: [0; 112] }
    }
}

/// `ADDRINFOEXW`, returned by `WskGetAddressInfo`.
#[repr(C)]
#[derive(Debug)]
pub struct ADDRINFOEXW {
    pub ai_flags: i32,
    pub ai_family: i32,
    pub ai_socktype: i32,
    pub ai_protocol: i32,
    pub ai_addrlen: SIZE_T,
    pub ai_canonname: *mut WCHAR,
    pub ai_addr: *mut SOCKADDR,
    pub ai_blob: PVOID,
    pub ai_bufferlen: SIZE_T,
    pub ai_provider: *mut GUID,
    pub ai_next: *mut ADDRINFOEXW,
}

/// `NS_ALL` / `NS_DNS` name spaces for `WskGetAddressInfo`.
pub const NS_ALL: ULONG = 0;
pub const NS_DNS: ULONG = 12;

/// `ai_flags` values.
pub const AI_PASSIVE: i32 = 0x01;
pub const AI_CANONNAME: i32 = 0x02;
pub const AI_NUMERICHOST: i32 = 0x04;

/// Socket option levels and names (`ws2def.h`, `ws2ipdef.h`).
pub const SOL_SOCKET: ULONG = 0xffff;
pub const SO_REUSEADDR: ULONG = 0x0004;
pub const SO_KEEPALIVE: ULONG = 0x0008;
pub const SO_LINGER: ULONG = 0x0080;
pub const SO_EXCLUSIVEADDRUSE: ULONG = !SO_REUSEADDR;
pub const SO_SNDBUF: ULONG = 0x1001;
pub const SO_RCVBUF: ULONG = 0x1002;
pub const SO_CONDITIONAL_ACCEPT: ULONG = 0x3002;
pub const TCP_NODELAY: ULONG = 0x0001;
/// `TCP_KEEPALIVE` (`IPPROTO_TCP`, a `DWORD`): seconds a connection stays idle before the
/// first keep-alive probe (`ws2ipdef.h`; `TCP_KEEPIDLE` is the same option).
pub const TCP_KEEPALIVE: ULONG = 3;
/// `TCP_KEEPIDLE`: `ws2ipdef.h` defines it as `TCP_KEEPALIVE` (Windows 10, version 1709).
pub const TCP_KEEPIDLE: ULONG = TCP_KEEPALIVE;
/// `TCP_KEEPCNT` (`IPPROTO_TCP`, a `DWORD`): unanswered keep-alive probes before the
/// connection is dropped (Windows 10, version 1703).
pub const TCP_KEEPCNT: ULONG = 16;
/// `TCP_KEEPINTVL` (`IPPROTO_TCP`, a `DWORD`): seconds between keep-alive probes (Windows 10,
/// version 1709).
pub const TCP_KEEPINTVL: ULONG = 17;
pub const IPV6_V6ONLY: ULONG = 27;
/// `SO_BROADCAST` (`SOL_SOCKET`, a `BOOL`): datagrams may be sent to a broadcast address.
pub const SO_BROADCAST: ULONG = 0x0020;
/// `IP_TTL` (`IPPROTO_IP`, a `DWORD`): time to live of unicast IPv4 packets.
pub const IP_TTL: ULONG = 4;
/// `IP_MULTICAST_TTL` (`IPPROTO_IP`, a `DWORD`): time to live of multicast IPv4 packets.
pub const IP_MULTICAST_TTL: ULONG = 10;
/// `IP_ADD_MEMBERSHIP` (`IPPROTO_IP`, an [`IP_MREQ`]): join an IPv4 multicast group.
pub const IP_ADD_MEMBERSHIP: ULONG = 12;
/// `IP_DROP_MEMBERSHIP` (`IPPROTO_IP`, an [`IP_MREQ`]): leave an IPv4 multicast group.
pub const IP_DROP_MEMBERSHIP: ULONG = 13;
/// `IPV6_UNICAST_HOPS` (`IPPROTO_IPV6`, a `DWORD`): hop limit of unicast IPv6 packets.
pub const IPV6_UNICAST_HOPS: ULONG = 4;
/// `IPV6_MULTICAST_HOPS` (`IPPROTO_IPV6`, a `DWORD`): hop limit of multicast IPv6 packets.
pub const IPV6_MULTICAST_HOPS: ULONG = 10;
/// `IPV6_ADD_MEMBERSHIP` (`IPV6_JOIN_GROUP`; `IPPROTO_IPV6`, an [`IPV6_MREQ`]): join an IPv6
/// multicast group.
pub const IPV6_ADD_MEMBERSHIP: ULONG = 12;
/// `IPV6_DROP_MEMBERSHIP` (`IPV6_LEAVE_GROUP`; `IPPROTO_IPV6`, an [`IPV6_MREQ`]): leave an IPv6
/// multicast group.
pub const IPV6_DROP_MEMBERSHIP: ULONG = 13;

/// `struct linger`, the value of `SO_LINGER` (`winsock2.h`): `l_onoff` non-zero lingers on close
/// for up to `l_linger` seconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LINGER {
    pub l_onoff: USHORT,
    pub l_linger: USHORT,
}

/// `struct ip_mreq`, the value of `IP_ADD_MEMBERSHIP` / `IP_DROP_MEMBERSHIP` (`ws2ipdef.h`): the
/// group and the address of the local interface (`INADDR_ANY`: the provider chooses).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IP_MREQ {
    pub imr_multiaddr: IN_ADDR,
    pub imr_interface: IN_ADDR,
}

/// `struct ipv6_mreq`, the value of `IPV6_ADD_MEMBERSHIP` / `IPV6_DROP_MEMBERSHIP`
/// (`ws2ipdef.h`): the group and the index of the local interface (0: the provider chooses).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IPV6_MREQ {
    pub ipv6mr_multiaddr: IN6_ADDR,
    pub ipv6mr_interface: ULONG,
}

/// `CMSGHDR` header of control information (only its pointer is used).
#[repr(C)]
#[derive(Debug)]
pub struct CMSGHDR {
    pub cmsg_len: SIZE_T,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
}

/// Flags of a received datagram (`ws2def.h`), in `WskReceiveFrom`'s `ControlFlags`.
/// The datagram was larger than the buffer (the rest is lost).
pub const MSG_TRUNC: ULONG = 0x0100;
/// The control information was larger than the control buffer.
pub const MSG_CTRUNC: ULONG = 0x0200;
/// The datagram was received as a link-layer broadcast or sent to a broadcast address.
pub const MSG_BCAST: ULONG = 0x0400;
/// The datagram was sent to a multicast address.
pub const MSG_MCAST: ULONG = 0x0800;

/// `IP_PKTINFO` (`ws2ipdef.h`, level `IPPROTO_IP`): as an option, asks for an `IN_PKTINFO`
/// control message (the destination address and the arrival interface) with each datagram.
pub const IP_PKTINFO: ULONG = 19;
/// `IPV6_PKTINFO` (`ws2ipdef.h`, level `IPPROTO_IPV6`): as `IP_PKTINFO`, with `IN6_PKTINFO`.
pub const IPV6_PKTINFO: ULONG = 19;

/// `IN_PKTINFO` (`ws2ipdef.h`): the data of an `IP_PKTINFO` control message.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IN_PKTINFO {
    /// The datagram's destination address.
    pub ipi_addr: IN_ADDR,
    /// The interface it arrived on.
    pub ipi_ifindex: ULONG,
}

/// `IN6_PKTINFO` (`ws2ipdef.h`): the data of an `IPV6_PKTINFO` control message.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IN6_PKTINFO {
    /// The datagram's destination address.
    pub ipi6_addr: IN6_ADDR,
    /// The interface it arrived on.
    pub ipi6_ifindex: ULONG,
}

// ---- conversions with `core::net` ----------------------------------------------------------------

/// Why bytes are not an IPv4 or IPv6 socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockaddrError {
    /// The family is neither [`AF_INET`] nor [`AF_INET6`].
    Family(ADDRESS_FAMILY),
    /// Fewer bytes (`len`) than the family, or the address of that family, needs (`needed`).
    Length {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
}

impl From<SocketAddrV4> for SOCKADDR_IN {
    fn from(addr: SocketAddrV4) -> Self {
        Self {
            sin_family: AF_INET,
            sin_port: addr.port().to_be(),
            sin_addr: IN_ADDR { s_addr: addr.ip().octets() },
            sin_zero: [0; 8],
        }
    }
}

impl From<SOCKADDR_IN> for SocketAddrV4 {
    /// Takes the address and the port; the family is not looked at.
    fn from(sa: SOCKADDR_IN) -> Self {
        SocketAddrV4::new(Ipv4Addr::from(sa.sin_addr.s_addr), u16::from_be(sa.sin_port))
    }
}

impl From<SocketAddrV6> for SOCKADDR_IN6 {
    fn from(addr: SocketAddrV6) -> Self {
        Self {
            sin6_family: AF_INET6,
            sin6_port: addr.port().to_be(),
            sin6_flowinfo: addr.flowinfo().to_be(),
            sin6_addr: IN6_ADDR { s6_addr: addr.ip().octets() },
            sin6_scope_id: addr.scope_id(),
        }
    }
}

impl From<SOCKADDR_IN6> for SocketAddrV6 {
    /// Takes the address, port, flow information and scope id; the family is not looked at.
    fn from(sa: SOCKADDR_IN6) -> Self {
        SocketAddrV6::new(
            Ipv6Addr::from(sa.sin6_addr.s6_addr),
            u16::from_be(sa.sin6_port),
            u32::from_be(sa.sin6_flowinfo),
            sa.sin6_scope_id,
        )
    }
}

impl From<SocketAddr> for SOCKADDR_STORAGE {
    /// The `SOCKADDR_IN` or `SOCKADDR_IN6` of `addr`, the rest of the storage zero.
    fn from(addr: SocketAddr) -> Self {
        let mut storage = SOCKADDR_STORAGE::zeroed();
        // SAFETY: a SOCKADDR_STORAGE (128 bytes) has room for either address type.
        unsafe { write_socket_addr((&raw mut storage).cast::<SOCKADDR>(), &addr) };
        storage
    }
}

impl TryFrom<&SOCKADDR_STORAGE> for SocketAddr {
    type Error = SockaddrError;

    /// Reads the address the storage's family says it holds.
    fn try_from(storage: &SOCKADDR_STORAGE) -> Result<Self, SockaddrError> {
        // SAFETY: SOCKADDR_STORAGE has no padding (2 + 6 + 8 + 112 bytes of integers), so all
        // of its bytes are initialized, and the slice lives as long as the borrow.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref::<SOCKADDR_STORAGE>(storage).cast::<u8>(),
                size_of::<SOCKADDR_STORAGE>(),
            )
        };
        socket_addr_from_bytes(bytes)
    }
}

/// The family of `addr`: [`AF_INET`] or [`AF_INET6`].
///
/// Any IRQL.
pub const fn address_family(addr: &SocketAddr) -> ADDRESS_FAMILY {
    match addr {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    }
}

/// The size of the address type of `family` (`SOCKADDR_IN`: 16, `SOCKADDR_IN6`: 28), or the
/// error for another family.
///
/// Any IRQL.
pub const fn sockaddr_len(family: ADDRESS_FAMILY) -> Result<usize, SockaddrError> {
    match family {
        AF_INET => Ok(size_of::<SOCKADDR_IN>()),
        AF_INET6 => Ok(size_of::<SOCKADDR_IN6>()),
        _ => Err(SockaddrError::Family(family)),
    }
}

/// Reads a `SOCKADDR_IN` or `SOCKADDR_IN6`, as its family (the first two bytes, in host order)
/// says, from `bytes` of any alignment; bytes past the address are ignored.
///
/// Any IRQL.
pub fn socket_addr_from_bytes(bytes: &[u8]) -> Result<SocketAddr, SockaddrError> {
    let Some(&[low, high]) = bytes.first_chunk::<2>() else {
        return Err(SockaddrError::Length { len: bytes.len(), needed: size_of::<ADDRESS_FAMILY>() });
    };
    let family = ADDRESS_FAMILY::from_ne_bytes([low, high]);
    let needed = sockaddr_len(family)?;
    if bytes.len() < needed {
        return Err(SockaddrError::Length { len: bytes.len(), needed });
    }
    let at = bytes.as_ptr();
    if family == AF_INET {
        // SAFETY: `needed` (the size of SOCKADDR_IN) bytes are readable at `at`; unaligned
        // reads, and every bit pattern is a valid SOCKADDR_IN (integers only).
        Ok(SocketAddr::V4(unsafe { at.cast::<SOCKADDR_IN>().read_unaligned() }.into()))
    } else {
        // SAFETY: as above, for SOCKADDR_IN6.
        Ok(SocketAddr::V6(unsafe { at.cast::<SOCKADDR_IN6>().read_unaligned() }.into()))
    }
}

/// Reads the socket address a `SOCKADDR` pointer from WSK points to: its family first, then as
/// many bytes as that family's address type has. Fails for another family, having read only
/// the family.
///
/// Any IRQL.
///
/// # Safety
/// `sa` is non-null and points to two readable bytes, and, if they are `AF_INET` or
/// `AF_INET6`, to a readable `SOCKADDR_IN` or `SOCKADDR_IN6`; no alignment is needed.
pub unsafe fn read_socket_addr(sa: *const SOCKADDR) -> Result<SocketAddr, SockaddrError> {
    // SAFETY: the family is readable (caller's contract); an unaligned read.
    let family = unsafe { sa.cast::<ADDRESS_FAMILY>().read_unaligned() };
    let len = sockaddr_len(family)?;
    // SAFETY: `len` bytes of the family's address type are readable (caller's contract) and
    // stay so for this call.
    let bytes = unsafe { core::slice::from_raw_parts(sa.cast::<u8>(), len) };
    socket_addr_from_bytes(bytes)
}

/// Writes `addr` at `sa` as a `SOCKADDR_IN` (16 bytes) or `SOCKADDR_IN6` (28 bytes).
///
/// Any IRQL.
///
/// # Safety
/// `sa` is non-null and points to writable memory of the size of `addr`'s address type; no
/// alignment is needed.
pub unsafe fn write_socket_addr(sa: *mut SOCKADDR, addr: &SocketAddr) {
    match *addr {
        // SAFETY: room for a SOCKADDR_IN (caller's contract); an unaligned write.
        SocketAddr::V4(v4) => unsafe { sa.cast::<SOCKADDR_IN>().write_unaligned(v4.into()) },
        // SAFETY: room for a SOCKADDR_IN6 (caller's contract); an unaligned write.
        SocketAddr::V6(v6) => unsafe { sa.cast::<SOCKADDR_IN6>().write_unaligned(v6.into()) },
    }
}

/// `WskGetNameInfo` flags (`ws2def.h`): the host's relative name only (no domain).
pub const NI_NOFQDN: ULONG = 0x01;
/// `WskGetNameInfo` flags: the numeric form of the host address, no reverse lookup.
pub const NI_NUMERICHOST: ULONG = 0x02;
/// `WskGetNameInfo` flags: a host without a name is an error (instead of its numeric form).
pub const NI_NAMEREQD: ULONG = 0x04;
/// `WskGetNameInfo` flags: the numeric form of the port, no service name.
pub const NI_NUMERICSERV: ULONG = 0x08;
/// `WskGetNameInfo` flags: the service is a datagram service.
pub const NI_DGRAM: ULONG = 0x10;
/// Longest host name `WskGetNameInfo` returns, in characters with the terminating NUL.
pub const NI_MAXHOST: usize = 1025;
/// Longest service name `WskGetNameInfo` returns, in characters with the terminating NUL.
pub const NI_MAXSERV: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 0x1234))
    }

    fn v6() -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9), 0xabcd, 0x0102_0304, 5))
    }

    /// The storage's bytes.
    fn bytes_of(storage: &SOCKADDR_STORAGE) -> [u8; 128] {
        let mut bytes = [0u8; 128];
        // SAFETY: SOCKADDR_STORAGE is 128 bytes without padding, all initialized.
        let src =
            unsafe { core::slice::from_raw_parts(core::ptr::from_ref::<SOCKADDR_STORAGE>(storage).cast::<u8>(), 128) };
        bytes.copy_from_slice(src);
        bytes
    }

    #[test]
    fn storage_round_trips_both_families() {
        for addr in [v4(), v6()] {
            let storage = SOCKADDR_STORAGE::from(addr);
            assert_eq!(SocketAddr::try_from(&storage), Ok(addr));
        }
    }

    #[test]
    fn v4_is_windows_layout_in_network_order() {
        let bytes = bytes_of(&SOCKADDR_STORAGE::from(v4()));
        assert_eq!(bytes[..2], AF_INET.to_ne_bytes());
        assert_eq!(bytes[2..4], [0x12, 0x34], "port in network byte order");
        assert_eq!(bytes[4..8], [192, 0, 2, 7]);
        assert!(bytes[8..].iter().all(|&b| b == 0), "sin_zero and the rest of the storage are zero");
    }

    #[test]
    fn v6_keeps_flowinfo_and_scope_id_in_windows_layout() {
        assert_eq!(AF_INET6, 23, "Windows' AF_INET6");
        let bytes = bytes_of(&SOCKADDR_STORAGE::from(v6()));
        assert_eq!(bytes[..2], 23u16.to_ne_bytes());
        assert_eq!(bytes[2..4], [0xab, 0xcd], "port in network byte order");
        assert_eq!(bytes[4..8], [1, 2, 3, 4], "flow information in network byte order");
        assert_eq!(bytes[8..24], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(bytes[24..28], 5u32.to_ne_bytes(), "scope id in host order");
        assert!(bytes[28..].iter().all(|&b| b == 0));
        let SocketAddr::V6(back) = SocketAddr::try_from(&SOCKADDR_STORAGE::from(v6())).unwrap() else {
            panic!("an IPv6 address read back as IPv4")
        };
        assert_eq!((back.flowinfo(), back.scope_id()), (0x0102_0304, 5));
    }

    #[test]
    fn families_other_than_inet_and_inet6_are_refused() {
        let mut storage = SOCKADDR_STORAGE::from(v4());
        for family in [AF_UNSPEC, 10, 2 + 100] {
            storage.ss_family = family;
            assert_eq!(SocketAddr::try_from(&storage), Err(SockaddrError::Family(family)));
        }
    }

    #[test]
    fn short_bytes_are_refused() {
        let bytes = bytes_of(&SOCKADDR_STORAGE::from(v4()));
        assert_eq!(socket_addr_from_bytes(&bytes[..1]), Err(SockaddrError::Length { len: 1, needed: 2 }));
        assert_eq!(socket_addr_from_bytes(&bytes[..15]), Err(SockaddrError::Length { len: 15, needed: 16 }));
        assert_eq!(socket_addr_from_bytes(&bytes[..16]), Ok(v4()));
        let bytes = bytes_of(&SOCKADDR_STORAGE::from(v6()));
        assert_eq!(socket_addr_from_bytes(&bytes[..27]), Err(SockaddrError::Length { len: 27, needed: 28 }));
        assert_eq!(socket_addr_from_bytes(&bytes[..28]), Ok(v6()));
    }

    /// A provider's pointer need not be aligned: reads and writes are unaligned.
    #[test]
    fn pointers_round_trip_at_any_alignment() {
        for addr in [v4(), v6()] {
            let len = sockaddr_len(address_family(&addr)).unwrap();
            // One byte in: misaligned for every field wider than a byte.
            let mut bytes = [0xeeu8; 1 + 28];
            let at = bytes[1..].as_mut_ptr().cast::<SOCKADDR>();
            // SAFETY: 28 writable bytes at `at`, enough for either address type.
            unsafe { write_socket_addr(at, &addr) };
            assert!(bytes[1 + len..].iter().all(|&b| b == 0xee), "nothing past the address is written");
            // SAFETY: `at` holds the address just written.
            assert_eq!(unsafe { read_socket_addr(at) }, Ok(addr));
        }
    }

    #[test]
    fn a_pointer_to_another_family_is_refused_after_its_family() {
        // Only the two family bytes exist: nothing past them may be read.
        let family = [0x11u8, 0];
        // SAFETY: the family is readable; nothing past it is read for an unknown family.
        assert_eq!(unsafe { read_socket_addr(family.as_ptr().cast()) }, Err(SockaddrError::Family(0x11)));
    }

    #[test]
    fn family_and_length_of_each_family() {
        assert_eq!(address_family(&v4()), AF_INET);
        assert_eq!(address_family(&v6()), AF_INET6);
        assert_eq!(sockaddr_len(AF_INET), Ok(16));
        assert_eq!(sockaddr_len(AF_INET6), Ok(28));
        assert_eq!(sockaddr_len(10), Err(SockaddrError::Family(10)));
    }
}
