//! Conversions between `core::net` addresses and WSK's `SOCKADDR_*`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk_sys::{SOCKADDR, SOCKADDR_STORAGE, SockaddrError};

use crate::error::{Error, Result};

/// Writes `addr` into a `SOCKADDR_STORAGE` in WSK's layout (Windows `AF_INET6` = 23).
///
/// Any IRQL.
pub fn to_storage(addr: &SocketAddr) -> SOCKADDR_STORAGE {
    SOCKADDR_STORAGE::from(*addr)
}

/// Reads an address written by the provider. Fails for families other than IPv4/IPv6.
///
/// Any IRQL.
pub fn from_storage(storage: &SOCKADDR_STORAGE) -> Result<SocketAddr> {
    SocketAddr::try_from(storage).map_err(invalid)
}

/// Reads a `SOCKADDR` of family `AF_INET` or `AF_INET6` that WSK passed by pointer.
///
/// # Safety
/// `address` is null or points to a valid `SOCKADDR_IN` / `SOCKADDR_IN6` (as its family says).
pub(crate) unsafe fn from_sockaddr(address: *const SOCKADDR) -> Result<SocketAddr> {
    if address.is_null() {
        return Err(Error::InvalidInput("no address"));
    }
    // SAFETY: a non-null pointer to a readable address of its family's size (caller's contract).
    unsafe { wsk_sys::read_socket_addr(address) }.map_err(invalid)
}

/// The error for an address that is not IPv4 or IPv6. A storage and a provider's address are
/// read with their family's length, so the family is the only thing that can be wrong.
fn invalid(_: SockaddrError) -> Error {
    Error::InvalidInput("address family is neither AF_INET nor AF_INET6")
}

/// The `SOCKADDR` pointer for a storage (for WSK calls).
pub(crate) fn as_sockaddr(storage: &mut SOCKADDR_STORAGE) -> *mut SOCKADDR {
    core::ptr::from_mut::<SOCKADDR_STORAGE>(storage).cast()
}

/// The unspecified address of `addr`'s family, port 0.
///
/// Any IRQL.
pub fn unspecified_like(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// WSK's address family for `addr`.
///
/// Any IRQL.
pub fn family(addr: &SocketAddr) -> u16 {
    wsk_sys::address_family(addr)
}
