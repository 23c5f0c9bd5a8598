//! Conversions between `core::net` addresses and WSK's `SOCKADDR_*`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk_sys::{AF_INET, AF_INET6, IN_ADDR, IN6_ADDR, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE};

use crate::error::{Error, Result};

/// Writes `addr` into a `SOCKADDR_STORAGE` in WSK's layout (Windows `AF_INET6` = 23).
///
/// Any IRQL.
pub fn to_storage(addr: &SocketAddr) -> SOCKADDR_STORAGE {
    let mut storage = SOCKADDR_STORAGE::zeroed();
    let dst = (&raw mut storage).cast::<u8>();
    match addr {
        SocketAddr::V4(v4) => {
            let sa = SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: IN_ADDR { s_addr: v4.ip().octets() },
                sin_zero: [0; 8],
            };
            // SAFETY: SOCKADDR_STORAGE (128 bytes, align 8) holds a SOCKADDR_IN (16 bytes).
            unsafe { dst.cast::<SOCKADDR_IN>().write(sa) };
        }
        SocketAddr::V6(v6) => {
            let sa = SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: IN6_ADDR { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: SOCKADDR_STORAGE (128 bytes, align 8) holds a SOCKADDR_IN6 (28 bytes).
            unsafe { dst.cast::<SOCKADDR_IN6>().write(sa) };
        }
    }
    storage
}

/// Reads an address written by the provider. Fails for families other than IPv4/IPv6.
///
/// Any IRQL.
pub fn from_storage(storage: &SOCKADDR_STORAGE) -> Result<SocketAddr> {
    // SAFETY: every view below reads within the 128-byte storage, which is fully initialized.
    let src = (storage as *const SOCKADDR_STORAGE).cast::<u8>();
    match storage.ss_family {
        AF_INET => {
            // SAFETY: see above; SOCKADDR_IN fits and the storage is 8-byte aligned.
            let sa = unsafe { &*src.cast::<SOCKADDR_IN>() };
            let ip = Ipv4Addr::from(sa.sin_addr.s_addr);
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sa.sin_port))))
        }
        AF_INET6 => {
            // SAFETY: see above; SOCKADDR_IN6 fits and the storage is 8-byte aligned.
            let sa = unsafe { &*src.cast::<SOCKADDR_IN6>() };
            let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sa.sin6_port),
                u32::from_be(sa.sin6_flowinfo),
                sa.sin6_scope_id,
            )))
        }
        _ => Err(Error::InvalidInput("address family is neither AF_INET nor AF_INET6")),
    }
}

/// Reads a `SOCKADDR` of family `AF_INET` or `AF_INET6` that WSK passed by pointer.
///
/// # Safety
/// `address` is null or points to a valid `SOCKADDR_IN` / `SOCKADDR_IN6` (as its family says).
pub(crate) unsafe fn from_sockaddr(address: *const SOCKADDR) -> Result<SocketAddr> {
    if address.is_null() {
        return Err(Error::InvalidInput("no address"));
    }
    // SAFETY: every SOCKADDR starts with its family (caller's contract).
    let family = unsafe { address.cast::<u16>().read_unaligned() };
    let size = match family {
        AF_INET => core::mem::size_of::<SOCKADDR_IN>(),
        AF_INET6 => core::mem::size_of::<SOCKADDR_IN6>(),
        _ => return Err(Error::InvalidInput("address family is neither AF_INET nor AF_INET6")),
    };
    let mut storage = SOCKADDR_STORAGE::zeroed();
    // SAFETY: the caller guarantees `size` readable bytes for this family; the storage is
    // larger than both address types.
    unsafe { core::ptr::copy_nonoverlapping(address.cast::<u8>(), (&raw mut storage).cast::<u8>(), size) };
    from_storage(&storage)
}

/// The `SOCKADDR` pointer for a storage (for WSK calls).
pub(crate) fn as_sockaddr(storage: &mut SOCKADDR_STORAGE) -> *mut SOCKADDR {
    (storage as *mut SOCKADDR_STORAGE).cast()
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
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}
