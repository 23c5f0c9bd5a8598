//! `WskControlSocket`: socket options (`WskSetOption` / `WskGetOption`) and IOCTLs.
//!
//! Options, each set and read back (`WskGetOption`) unless marked "set only":
//!
//! | Level | Option | Value | Sockets | Host |
//! |-------|--------|-------|---------|------|
//! | `SOL_SOCKET` | `SO_REUSEADDR`, `SO_EXCLUSIVEADDRUSE` | 4 bytes | all | recorded (see below) |
//! | `SOL_SOCKET` | `SO_KEEPALIVE` | 4 bytes | all | host option |
//! | `SOL_SOCKET` | `SO_SNDBUF`, `SO_RCVBUF` | 4 bytes | all | host option; reads give the value set |
//! | `SOL_SOCKET` | `SO_LINGER` | `LINGER` (4 bytes) | listen, connection | recorded (see below) |
//! | `SOL_SOCKET` | `SO_BROADCAST` | 4 bytes | datagram | host option |
//! | `SOL_SOCKET` | `SO_CONDITIONAL_ACCEPT` | 4 bytes | listen, set before bind | conditional accept (`inspect`) |
//! | `IPPROTO_TCP` | `TCP_NODELAY` | 4 bytes | listen, connection | host option |
//! | `IPPROTO_TCP` | `TCP_KEEPALIVE` (`TCP_KEEPIDLE`), `TCP_KEEPINTVL`, `TCP_KEEPCNT` | 4 bytes (seconds, seconds, probes) | listen, connection | host `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`; setting one leaves `SO_KEEPALIVE` as it was, as on Windows; 0 (and values the host refuses) is `STATUS_INVALID_PARAMETER` |
//! | `IPPROTO_IP` | `IP_TTL` | 4 bytes | IPv4 | host option |
//! | `IPPROTO_IP` | `IP_MULTICAST_TTL` | 4 bytes | IPv4 datagram | host option |
//! | `IPPROTO_IP` | `IP_ADD_MEMBERSHIP`, `IP_DROP_MEMBERSHIP` | `IP_MREQ` (8 bytes) | IPv4 datagram | host membership; set only |
//! | `IPPROTO_IPV6` | `IPV6_V6ONLY` | 4 bytes | IPv6, set before bind | host option (on at creation, as on Windows) |
//! | `IPPROTO_IPV6` | `IPV6_UNICAST_HOPS` | 4 bytes | IPv6 | host option |
//! | `IPPROTO_IPV6` | `IPV6_MULTICAST_HOPS` | 4 bytes | IPv6 datagram | host option |
//! | `IPPROTO_IPV6` | `IPV6_ADD_MEMBERSHIP`, `IPV6_DROP_MEMBERSHIP` | `IPV6_MREQ` (20 bytes) | IPv6 datagram | host membership; set only |
//!
//! Verifier rules: a set without an input buffer or with one shorter than the option's value
//! is `STATUS_INVALID_PARAMETER`; a get with an output buffer shorter than the value is
//! `STATUS_BUFFER_TOO_SMALL`; an option the table does not have, or one on a socket the table
//! does not list it for (another kind, another family), is `STATUS_NOT_SUPPORTED`, as are gets
//! of the set-only options; `IPV6_V6ONLY` after bind is `STATUS_INVALID_DEVICE_STATE`, and so is
//! `SO_CONDITIONAL_ACCEPT` after bind, which the verifier also reports
//! (`WSK_CONDITIONAL_ACCEPT_AFTER_BIND`: Microsoft documents that it is set before the bind). A get
//! returns the value's size (4, or 4 for `LINGER`).
//!
//! `SO_REUSEADDR` and `SO_EXCLUSIVEADDRUSE` are recorded with Windows' rule that both cannot
//! be on, but do not change the host's binding rules (the host socket always has
//! `SO_REUSEADDR`, which on Linux only allows rebinding ports in TIME_WAIT, as Windows'
//! default does). `SO_LINGER` is recorded and read back but does not reach the host socket: a
//! lingering host close would block the provider's thread, and a WSK close without a
//! disconnect aborts the connection whatever the option says. `WskSetOption(SO_WSK_EVENT_CALLBACK)`
//! is routed to `events` before it gets here; `WskGetOption` of it is `STATUS_NOT_SUPPORTED`.
//! Setting `SO_SNDBUF` calls `WskSendBacklogEvent` again when it is enabled.
//!
//! On datagram sockets also `IP_PKTINFO` (`IPPROTO_IP`, IPv4 sockets) and `IPV6_PKTINFO`
//! (`IPPROTO_IPV6`, IPv6 sockets), 4-byte values that turn the host's packet information on:
//! `WskReceiveFrom` then returns it as control information (see `io`).
//!
//! IOCTLs: `SIO_WSK_SET_REMOTE_ADDRESS` on a bound datagram socket connects the host socket
//! (the host then sends a `WskSendTo` without a remote address there and delivers only
//! datagrams from there, as Windows documents); an input of size 0 clears it (the host socket
//! is disconnected). The address must be of the socket's family (`STATUS_INVALID_ADDRESS`)
//! and the input at least its size (`STATUS_INVALID_PARAMETER`); on a socket of another kind
//! it is `STATUS_NOT_SUPPORTED`, before bind `STATUS_INVALID_DEVICE_STATE`. Every other IOCTL
//! is `STATUS_NOT_SUPPORTED`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::SockAddr;
use wsk_sys::{
    IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IP_MREQ, IP_MULTICAST_TTL, IP_TTL, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP,
    IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP, IPV6_MREQ, IPV6_MULTICAST_HOPS, IPV6_UNICAST_HOPS, IPV6_V6ONLY, LINGER,
    NTSTATUS, SIO_WSK_SET_REMOTE_ADDRESS, SO_BROADCAST, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF,
    SO_REUSEADDR, SO_SNDBUF, SO_WSK_EVENT_CALLBACK, SOCKADDR, SOL_SOCKET, STATUS_BUFFER_TOO_SMALL,
    STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, TCP_KEEPALIVE,
    TCP_KEEPCNT, TCP_KEEPINTVL, TCP_NODELAY, ULONG, WSK_CONTROL_SOCKET_TYPE, WSK_EVENT_SEND_BACKLOG, WskGetOption,
    WskIoctl, WskSetOption,
};

use super::addr::{self, Family};
use super::model::{Kind, Phase, State};
use super::socket::Socket;
use super::{reactor, status};
use crate::sync::lock;

/// A `WskControlSocket` request.
pub(crate) struct Request {
    pub kind: WSK_CONTROL_SOCKET_TYPE,
    pub code: ULONG,
    pub level: ULONG,
    pub input: *const u8,
    pub input_size: usize,
    pub output: *mut u8,
    pub output_size: usize,
}

/// Runs `request` on `socket`; returns the number of output bytes.
///
/// # Safety
/// The input and output buffers must be null or valid for their sizes.
pub(crate) unsafe fn control(socket: &Socket, request: &Request) -> Result<usize, NTSTATUS> {
    match request.kind {
        kind if kind == WskSetOption => {
            let size = value_size(request.level, request.code).ok_or(STATUS_NOT_SUPPORTED)?;
            if request.input.is_null() || request.input_size < size {
                return Err(STATUS_INVALID_PARAMETER);
            }
            // SAFETY: `size` readable bytes (checked above, caller's contract).
            let input = unsafe { std::slice::from_raw_parts(request.input, size) };
            set(socket, request.level, request.code, input).map(|()| 0)
        }
        kind if kind == WskGetOption => {
            let size = value_size(request.level, request.code)
                .filter(|_| !is_membership(request.level, request.code))
                .ok_or(STATUS_NOT_SUPPORTED)?;
            if request.output.is_null() || request.output_size < size {
                return Err(STATUS_BUFFER_TOO_SMALL);
            }
            let value = get(socket, request.level, request.code)?;
            // SAFETY: at least `size` (4) writable bytes (checked above, caller's contract).
            unsafe { request.output.cast::<u32>().write_unaligned(value) };
            Ok(size)
        }
        // SAFETY: forwarded contract.
        kind if kind == WskIoctl => unsafe { ioctl(socket, request) },
        _ => Err(STATUS_INVALID_PARAMETER),
    }
}

/// The size of an option's value, `None` for an option the provider does not have.
fn value_size(level: ULONG, code: ULONG) -> Option<usize> {
    match (level, code) {
        (
            SOL_SOCKET,
            SO_REUSEADDR
            | SO_EXCLUSIVEADDRUSE
            | SO_KEEPALIVE
            | SO_SNDBUF
            | SO_RCVBUF
            | SO_BROADCAST
            | wsk_sys::SO_CONDITIONAL_ACCEPT,
        )
        | (IPPROTO_TCP, TCP_NODELAY | TCP_KEEPALIVE | TCP_KEEPINTVL | TCP_KEEPCNT)
        | (IPPROTO_IP, IP_TTL | IP_MULTICAST_TTL | wsk_sys::IP_PKTINFO)
        | (IPPROTO_IPV6, IPV6_V6ONLY | IPV6_UNICAST_HOPS | IPV6_MULTICAST_HOPS | wsk_sys::IPV6_PKTINFO) => Some(4),
        (SOL_SOCKET, SO_LINGER) => Some(size_of::<LINGER>()),
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) => Some(size_of::<IP_MREQ>()),
        (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) => Some(size_of::<IPV6_MREQ>()),
        _ => None,
    }
}

/// Multicast membership options: set only.
fn is_membership(level: ULONG, code: ULONG) -> bool {
    matches!(
        (level, code),
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP)
            | (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP)
    )
}

/// `WskIoctl`: `SIO_WSK_SET_REMOTE_ADDRESS` (see the module documentation).
///
/// # Safety
/// As [`control`].
unsafe fn ioctl(socket: &Socket, request: &Request) -> Result<usize, NTSTATUS> {
    if request.code != SIO_WSK_SET_REMOTE_ADDRESS || socket.kind != Kind::Datagram {
        return Err(STATUS_NOT_SUPPORTED);
    }
    let remote = if request.input_size == 0 {
        None
    } else {
        let needed = match socket.family {
            Family::V4 => size_of::<wsk_sys::SOCKADDR_IN>(),
            Family::V6 => size_of::<wsk_sys::SOCKADDR_IN6>(),
        };
        if request.input.is_null() || request.input_size < needed {
            return Err(STATUS_INVALID_PARAMETER);
        }
        // SAFETY: at least the family's address size is readable (checked above, caller's
        // contract); `addr::read` reads the size the address's own family implies, which is
        // at most that when the families agree, and refuses other families.
        let remote = unsafe { addr::read(request.input.cast::<SOCKADDR>()) }?;
        if Family::of(&remote) != socket.family || !addr::valid_remote(&remote) {
            return Err(STATUS_INVALID_ADDRESS);
        }
        Some(remote)
    };
    let mut state = lock(&socket.state);
    if state.phase == Phase::Created {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
    match remote {
        Some(remote) => host.connect(&SockAddr::from(remote)).map_err(|e| status::from_io(&e))?,
        None => disconnect(host).map_err(|e| status::from_io(&e))?,
    }
    state.recorded.remote = remote;
    Ok(0)
}

/// Dissolves a datagram socket's association (`connect` to `AF_UNSPEC`), keeping its local
/// address: Linux releases a port the system chose at bind, so it is bound again.
fn disconnect(host: &socket2::Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let bound = host.local_addr()?;
    let unspecified = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    // SAFETY: a live descriptor and a readable `sockaddr` of the size given.
    let done = unsafe {
        libc::connect(host.as_raw_fd(), &raw const unspecified, size_of::<libc::sockaddr>() as libc::socklen_t)
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if host.local_addr()?.as_socket().is_some_and(|now| now.port() == 0) {
        host.bind(&bound)?;
    }
    Ok(())
}

/// The fixed remote address of a datagram socket (`SIO_WSK_SET_REMOTE_ADDRESS`), where a
/// `WskSendTo` without a remote address goes.
pub(crate) fn fixed_remote(state: &State) -> Option<SocketAddr> {
    state.recorded.remote
}

fn is_stream(socket: &Socket) -> bool {
    matches!(socket.kind, Kind::Listen | Kind::Connection)
}

fn is_datagram(socket: &Socket) -> bool {
    socket.kind == Kind::Datagram
}

fn u32_of(input: &[u8]) -> u32 {
    u32::from_ne_bytes([input[0], input[1], input[2], input[3]])
}

fn set(socket: &Socket, level: ULONG, code: ULONG, input: &[u8]) -> Result<(), NTSTATUS> {
    let value = u32_of(input);
    let on = value != 0;
    let v4 = socket.family == Family::V4;
    let v6 = socket.family == Family::V6;
    let io = |e: std::io::Error| status::from_io(&e);
    let mut state = lock(&socket.state);
    match (level, code) {
        // Handled by `events::control` before it gets here.
        (SOL_SOCKET, SO_WSK_EVENT_CALLBACK) => Err(STATUS_NOT_SUPPORTED),
        (SOL_SOCKET, SO_REUSEADDR) => {
            if on && state.recorded.exclusive_address_use {
                return Err(STATUS_INVALID_PARAMETER);
            }
            state.recorded.reuse_address = on;
            Ok(())
        }
        (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
            if on && state.recorded.reuse_address {
                return Err(STATUS_INVALID_PARAMETER);
            }
            if state.phase != Phase::Created {
                return Err(STATUS_INVALID_DEVICE_STATE);
            }
            state.recorded.exclusive_address_use = on;
            Ok(())
        }
        (SOL_SOCKET, wsk_sys::SO_CONDITIONAL_ACCEPT) if socket.kind == Kind::Listen => {
            if state.phase != Phase::Created {
                if crate::kernel::verifier() {
                    crate::verifier::bugcheck(
                        crate::verifier::Rule::WskConditionalAcceptAfterBind,
                        format!(
                            "SO_CONDITIONAL_ACCEPT set on listening socket 0x{:x} after its bind; it must be set \
                             before",
                            socket.key
                        ),
                    );
                }
                return Err(STATUS_INVALID_DEVICE_STATE);
            }
            state.inspect.on = on;
            Ok(())
        }
        (SOL_SOCKET, SO_KEEPALIVE) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_keepalive(on).map_err(io)
        }
        (SOL_SOCKET, SO_SNDBUF) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_send_buffer_size(value as usize).map_err(io)?;
            state.recorded.send_buffer = Some(value);
            if state.events.enabled & WSK_EVENT_SEND_BACKLOG != 0 {
                // The ideal backlog changed: tell the client (WskSendBacklogEvent).
                state.events.backlog_due = true;
                reactor::kick(socket.key);
            }
            Ok(())
        }
        (SOL_SOCKET, SO_RCVBUF) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_recv_buffer_size(value as usize).map_err(io)?;
            state.recorded.receive_buffer = Some(value);
            Ok(())
        }
        (SOL_SOCKET, SO_LINGER) if is_stream(socket) => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            let l_onoff = u16::from_ne_bytes([input[0], input[1]]);
            let l_linger = u16::from_ne_bytes([input[2], input[3]]);
            state.recorded.linger = LINGER { l_onoff, l_linger };
            Ok(())
        }
        (SOL_SOCKET, SO_BROADCAST) if is_datagram(socket) => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?.set_broadcast(on).map_err(io)
        }
        (IPPROTO_TCP, TCP_NODELAY) if is_stream(socket) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_nodelay(on).map_err(io)
        }
        (IPPROTO_TCP, TCP_KEEPALIVE | TCP_KEEPINTVL | TCP_KEEPCNT) if is_stream(socket) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            set_keepalive_timing(host, code, value)
        }
        (IPPROTO_IP, IP_TTL) if v4 => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?.set_ttl(value).map_err(io)
        }
        (IPPROTO_IP, IP_MULTICAST_TTL) if v4 && is_datagram(socket) => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?.set_multicast_ttl_v4(value).map_err(io)
        }
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) if v4 && is_datagram(socket) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            let group = Ipv4Addr::new(input[0], input[1], input[2], input[3]);
            let interface = Ipv4Addr::new(input[4], input[5], input[6], input[7]);
            if code == IP_ADD_MEMBERSHIP {
                host.join_multicast_v4(&group, &interface).map_err(io)
            } else {
                host.leave_multicast_v4(&group, &interface).map_err(io)
            }
        }
        (IPPROTO_IPV6, IPV6_V6ONLY) if v6 => {
            if state.phase != Phase::Created {
                return Err(STATUS_INVALID_DEVICE_STATE);
            }
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_only_v6(on).map_err(io)
        }
        (IPPROTO_IPV6, IPV6_UNICAST_HOPS) if v6 => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?.set_unicast_hops_v6(value).map_err(io)
        }
        (IPPROTO_IPV6, IPV6_MULTICAST_HOPS) if v6 && is_datagram(socket) => {
            state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?.set_multicast_hops_v6(value).map_err(io)
        }
        (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) if v6 && is_datagram(socket) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            let mut octets = [0; 16];
            octets.copy_from_slice(&input[..16]);
            let group = Ipv6Addr::from(octets);
            let interface = u32_of(&input[16..20]);
            if code == IPV6_ADD_MEMBERSHIP {
                host.join_multicast_v6(&group, interface).map_err(io)
            } else {
                host.leave_multicast_v6(&group, interface).map_err(io)
            }
        }
        (IPPROTO_IP, wsk_sys::IP_PKTINFO) | (IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO)
            if packet_info_applies(socket, level) =>
        {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            super::io::set_packet_info(host, socket.family, on).map_err(|e| status::from_io(&e))
        }
        _ => Err(STATUS_NOT_SUPPORTED),
    }
}

/// One of the keep-alive timing options on the host socket. The host call also turns
/// `SO_KEEPALIVE` on; Windows' options do not, so its previous state is restored.
fn set_keepalive_timing(host: &socket2::Socket, code: ULONG, value: u32) -> Result<(), NTSTATUS> {
    if value == 0 {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let io = |e: std::io::Error| status::from_io(&e);
    let was_on = host.keepalive().map_err(io)?;
    let seconds = std::time::Duration::from_secs(u64::from(value));
    let timing = match code {
        TCP_KEEPALIVE => socket2::TcpKeepalive::new().with_time(seconds),
        TCP_KEEPINTVL => socket2::TcpKeepalive::new().with_interval(seconds),
        _ => socket2::TcpKeepalive::new().with_retries(value),
    };
    let set = host.set_tcp_keepalive(&timing).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => STATUS_INVALID_PARAMETER,
        _ => status::from_io(&e),
    });
    if !was_on {
        host.set_keepalive(false).map_err(io)?;
    }
    set
}

/// `IP_PKTINFO` applies to IPv4 datagram sockets, `IPV6_PKTINFO` to IPv6 ones.
fn packet_info_applies(socket: &Socket, level: ULONG) -> bool {
    socket.kind == Kind::Datagram && (socket.family == Family::V6) == (level == IPPROTO_IPV6)
}

fn get(socket: &Socket, level: ULONG, code: ULONG) -> Result<u32, NTSTATUS> {
    let state = lock(&socket.state);
    let host = || state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE);
    let io = |e: std::io::Error| status::from_io(&e);
    let v4 = socket.family == Family::V4;
    let v6 = socket.family == Family::V6;
    match (level, code) {
        (SOL_SOCKET, SO_REUSEADDR) => Ok(u32::from(state.recorded.reuse_address)),
        (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => Ok(u32::from(state.recorded.exclusive_address_use)),
        (SOL_SOCKET, SO_KEEPALIVE) => host()?.keepalive().map(u32::from).map_err(io),
        (SOL_SOCKET, wsk_sys::SO_CONDITIONAL_ACCEPT) if socket.kind == Kind::Listen => Ok(u32::from(state.inspect.on)),
        (SOL_SOCKET, SO_SNDBUF) => match state.recorded.send_buffer {
            Some(value) => Ok(value),
            None => host()?.send_buffer_size().map(|n| n as u32).map_err(io),
        },
        (SOL_SOCKET, SO_RCVBUF) => match state.recorded.receive_buffer {
            Some(value) => Ok(value),
            None => host()?.recv_buffer_size().map(|n| n as u32).map_err(io),
        },
        (IPPROTO_TCP, TCP_NODELAY) if is_stream(socket) => host()?.nodelay().map(u32::from).map_err(io),
        (IPPROTO_TCP, TCP_KEEPALIVE) if is_stream(socket) => {
            host()?.keepalive_time().map(|d| d.as_secs() as u32).map_err(io)
        }
        (IPPROTO_TCP, TCP_KEEPINTVL) if is_stream(socket) => {
            host()?.keepalive_interval().map(|d| d.as_secs() as u32).map_err(io)
        }
        (IPPROTO_TCP, TCP_KEEPCNT) if is_stream(socket) => host()?.keepalive_retries().map_err(io),
        (SOL_SOCKET, SO_LINGER) if is_stream(socket) => {
            host()?;
            // The `LINGER` bytes, written as one 4-byte value.
            let LINGER { l_onoff, l_linger } = state.recorded.linger;
            let ([a, b], [c, d]) = (l_onoff.to_ne_bytes(), l_linger.to_ne_bytes());
            Ok(u32::from_ne_bytes([a, b, c, d]))
        }
        (SOL_SOCKET, SO_BROADCAST) if is_datagram(socket) => host()?.broadcast().map(u32::from).map_err(io),
        (IPPROTO_IP, IP_TTL) if v4 => host()?.ttl().map_err(io),
        (IPPROTO_IP, IP_MULTICAST_TTL) if v4 && is_datagram(socket) => host()?.multicast_ttl_v4().map_err(io),
        (IPPROTO_IPV6, IPV6_V6ONLY) if v6 => host()?.only_v6().map(u32::from).map_err(io),
        (IPPROTO_IPV6, IPV6_UNICAST_HOPS) if v6 => host()?.unicast_hops_v6().map_err(io),
        (IPPROTO_IPV6, IPV6_MULTICAST_HOPS) if v6 && is_datagram(socket) => host()?.multicast_hops_v6().map_err(io),
        (IPPROTO_IP, wsk_sys::IP_PKTINFO) | (IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO)
            if packet_info_applies(socket, level) =>
        {
            super::io::packet_info(host()?, socket.family).map(u32::from).map_err(io)
        }
        _ => Err(STATUS_NOT_SUPPORTED),
    }
}
