//! Socket addresses (`ws2def.h` / `ws2ipdef.h`) and address-info records.
//!
//! Binds `SOCKADDR`, `SOCKADDR_IN`, `SOCKADDR_IN6`, `SOCKADDR_STORAGE`, `IN_ADDR`, `IN6_ADDR`,
//! `ADDRINFOEXW`, the `AF_*`, `SOCK_*`, `IPPROTO_*`, `SOL_*`/`SO_*` and `NS_*` constants of
//! `ws2def.h`/`ws2ipdef.h`/`ws2tcpip.h` under their C names.

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
pub const IPV6_V6ONLY: ULONG = 27;

/// `CMSGHDR` header of control information (only its pointer is used).
#[repr(C)]
#[derive(Debug)]
pub struct CMSGHDR {
    pub cmsg_len: SIZE_T,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
}
