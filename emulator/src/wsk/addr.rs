//! Socket addresses between WSK's `SOCKADDR_IN` / `SOCKADDR_IN6` (Windows layout: `AF_INET6`
//! is 23) and the host's `std::net::SocketAddr`.
//!
//! WSK passes addresses as bare `SOCKADDR` pointers: the family decides how many bytes the
//! provider reads (16 for IPv4, 28 for IPv6) or writes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk_sys::{
    ADDRESS_FAMILY, AF_INET, AF_INET6, IN_ADDR, IN6_ADDR, NTSTATUS, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6,
    STATUS_INVALID_ADDRESS, STATUS_INVALID_PARAMETER,
};

/// An address family the provider supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of a WSK `ADDRESS_FAMILY` value.
    pub(crate) fn from_wsk(family: ADDRESS_FAMILY) -> Option<Family> {
        match family {
            AF_INET => Some(Family::V4),
            AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The WSK (Windows) value.
    pub(crate) fn wsk(self) -> ADDRESS_FAMILY {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }

    /// The host domain.
    pub(crate) fn domain(self) -> socket2::Domain {
        match self {
            Family::V4 => socket2::Domain::IPV4,
            Family::V6 => socket2::Domain::IPV6,
        }
    }

    /// The family of a host address.
    pub(crate) fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// Reads the address at `sa`. A null pointer is `STATUS_INVALID_PARAMETER`; a family other
/// than `AF_INET` / `AF_INET6` is `STATUS_INVALID_ADDRESS`.
///
/// # Safety
/// `sa` must be null or point to a readable address of the size its family implies.
pub(crate) unsafe fn read(sa: *const SOCKADDR) -> Result<SocketAddr, NTSTATUS> {
    if sa.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller guarantees a readable address; the family is its first field.
    let family = unsafe { sa.cast::<ADDRESS_FAMILY>().read_unaligned() };
    match Family::from_wsk(family) {
        Some(Family::V4) => {
            // SAFETY: an `AF_INET` address is a `SOCKADDR_IN` (caller's contract).
            let v4 = unsafe { sa.cast::<SOCKADDR_IN>().read_unaligned() };
            let ip = Ipv4Addr::from(v4.sin_addr.s_addr);
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(v4.sin_port))))
        }
        Some(Family::V6) => {
            // SAFETY: an `AF_INET6` address is a `SOCKADDR_IN6` (caller's contract).
            let v6 = unsafe { sa.cast::<SOCKADDR_IN6>().read_unaligned() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            )))
        }
        None => Err(STATUS_INVALID_ADDRESS),
    }
}

/// Writes `addr` at `sa` in WSK's layout (16 bytes for IPv4, 28 for IPv6). Does nothing for
/// a null pointer.
///
/// # Safety
/// `sa` must be null or point to writable memory large enough for `addr`'s family.
pub(crate) unsafe fn write(sa: *mut SOCKADDR, addr: &SocketAddr) {
    if sa.is_null() {
        return;
    }
    match addr {
        SocketAddr::V4(v4) => {
            let value = SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: IN_ADDR { s_addr: v4.ip().octets() },
                sin_zero: [0; 8],
            };
            // SAFETY: the caller guarantees room for a `SOCKADDR_IN`.
            unsafe { sa.cast::<SOCKADDR_IN>().write_unaligned(value) };
        }
        SocketAddr::V6(v6) => {
            let value = SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: IN6_ADDR { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: the caller guarantees room for a `SOCKADDR_IN6`.
            unsafe { sa.cast::<SOCKADDR_IN6>().write_unaligned(value) };
        }
    }
}

/// The host address of a `socket2` address (IPv4-mapped IPv6 addresses stay IPv6).
pub(crate) fn from_host(addr: &socket2::SockAddr) -> Option<SocketAddr> {
    addr.as_socket()
}

/// Whether `addr` can be a remote address: Windows refuses the unspecified address and port 0
/// (`WSAEADDRNOTAVAIL`), where Linux would connect to the local host.
pub(crate) fn valid_remote(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}
