//! `SOCKADDR` <-> `SocketAddr`: the raw views of `SOCKADDR_STORAGE` and of a provider's
//! address pointer.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk_sys::{AF_INET, AF_INET6, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6};

use crate::addr::{from_sockaddr, from_storage, to_storage};

fn v4() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 0x1234))
}

fn v6() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9), 0xabcd, 0x0102_0304, 5))
}

#[test]
fn storage_round_trips_both_families_in_network_order() {
    for addr in [v4(), v6()] {
        let storage = to_storage(&addr);
        assert_eq!(from_storage(&storage).unwrap(), addr);
    }
    let storage = to_storage(&v4());
    assert_eq!(storage.ss_family, AF_INET);
    // SAFETY: the storage holds a SOCKADDR_IN (written by `to_storage`), aligned.
    let sin = unsafe { &*(&raw const storage).cast::<SOCKADDR_IN>() };
    assert_eq!(sin.sin_port.to_ne_bytes(), [0x12, 0x34], "port in network byte order");
    assert_eq!(sin.sin_addr.s_addr, [192, 0, 2, 7]);
    let storage = to_storage(&v6());
    assert_eq!(storage.ss_family, AF_INET6);
    assert_eq!(AF_INET6, 23, "Windows' AF_INET6");
    // SAFETY: as above, a SOCKADDR_IN6.
    let sin6 = unsafe { &*(&raw const storage).cast::<SOCKADDR_IN6>() };
    assert_eq!(sin6.sin6_flowinfo.to_ne_bytes(), [1, 2, 3, 4]);
    assert_eq!(sin6.sin6_scope_id, 5, "scope id in host order");
}

#[test]
fn an_unknown_family_is_an_error() {
    let mut storage = to_storage(&v4());
    storage.ss_family = 2 + 100;
    assert!(from_storage(&storage).is_err());
}

/// A provider's pointer need not be aligned: the bytes are copied out, never referenced.
#[test]
fn a_provider_address_is_read_from_unaligned_memory() {
    for addr in [v4(), v6()] {
        let storage = to_storage(&addr);
        let size = if addr.is_ipv4() { size_of::<SOCKADDR_IN>() } else { size_of::<SOCKADDR_IN6>() };
        // One byte in: misaligned for every field wider than a byte.
        let mut bytes = [0u8; 1 + 28];
        // SAFETY: `size` bytes of the storage are initialized (it is zeroed and then written).
        let src = unsafe { core::slice::from_raw_parts((&raw const storage).cast::<u8>(), size) };
        bytes[1..1 + size].copy_from_slice(src);
        let at = bytes[1..].as_ptr().cast::<SOCKADDR>();
        // SAFETY: `size` valid bytes of a SOCKADDR_IN(6) at `at`, as its family says.
        assert_eq!(unsafe { from_sockaddr(at) }.unwrap(), addr);
    }
}

#[test]
fn a_null_or_foreign_provider_address_is_an_error() {
    // SAFETY: null is allowed.
    assert!(unsafe { from_sockaddr(core::ptr::null()) }.is_err());
    // A family other than IPv4/IPv6 is refused after reading only the family (2 bytes).
    let family = [0x11u8, 0];
    // SAFETY: the family is readable; nothing past it is read for an unknown family.
    assert!(unsafe { from_sockaddr(family.as_ptr().cast()) }.is_err());
}
