//! Socket addresses between WSK's `SOCKADDR_IN` / `SOCKADDR_IN6` (Windows layout: `AF_INET6`
//! is 23) and the host's `std::net::SocketAddr`.
//!
//! WSK passes addresses as bare `SOCKADDR` pointers: the family decides how many bytes the
//! provider reads (16 for IPv4, 28 for IPv6) or writes. The conversion itself is `wsk-sys`'s
//! ([`wsk_sys::read_socket_addr`], [`wsk_sys::write_socket_addr`]); this module adds the
//! provider's statuses and the host (`socket2`) side.

use std::net::SocketAddr;

use wsk_sys::{
    ADDRESS_FAMILY, AF_INET, AF_INET6, NTSTATUS, SOCKADDR, STATUS_INVALID_ADDRESS, STATUS_INVALID_PARAMETER,
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
    // SAFETY: a non-null pointer to a readable address of its family's size (caller's contract).
    unsafe { wsk_sys::read_socket_addr(sa) }.map_err(|_| STATUS_INVALID_ADDRESS)
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
    // SAFETY: a non-null pointer with room for `addr`'s family (caller's contract).
    unsafe { wsk_sys::write_socket_addr(sa, addr) };
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
