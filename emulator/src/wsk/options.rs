//! `WskControlSocket`: socket options (`WskSetOption` / `WskGetOption`) and IOCTLs.
//!
//! Supported: `SO_REUSEADDR`, `SO_EXCLUSIVEADDRUSE`, `SO_KEEPALIVE`, `SO_SNDBUF`, `SO_RCVBUF`
//! (level `SOL_SOCKET`), `TCP_NODELAY` (`IPPROTO_TCP`), `IPV6_V6ONLY` (`IPPROTO_IPV6`), each
//! a 4-byte value. `SO_REUSEADDR` and `SO_EXCLUSIVEADDRUSE` are recorded with Windows' rule
//! that both cannot be on, but do not change the host's binding rules (the host socket always
//! has `SO_REUSEADDR`, which on Linux only allows rebinding ports in TIME_WAIT, as Windows'
//! default does). `WskSetOption(SO_WSK_EVENT_CALLBACK)` is routed to `events` before it gets
//! here; `WskGetOption` of it, other options and every IOCTL answer `STATUS_NOT_SUPPORTED`.
//! Setting `SO_SNDBUF` calls `WskSendBacklogEvent` again when it is enabled.
//!
//! On datagram sockets also `IP_PKTINFO` (`IPPROTO_IP`, IPv4 sockets) and `IPV6_PKTINFO`
//! (`IPPROTO_IPV6`, IPv6 sockets), 4-byte values that turn the host's packet information on:
//! `WskReceiveFrom` then returns it as control information (see `io`).

use wsk_sys::{
    IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, NTSTATUS, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_RCVBUF, SO_REUSEADDR,
    SO_SNDBUF, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, TCP_NODELAY, ULONG, WSK_CONTROL_SOCKET_TYPE,
    WSK_EVENT_SEND_BACKLOG, WskGetOption, WskIoctl, WskSetOption,
};

use super::addr::Family;
use super::model::{Kind, Phase};
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
            if request.input.is_null() || request.input_size < 4 {
                return Err(STATUS_INVALID_PARAMETER);
            }
            // SAFETY: at least 4 readable bytes (checked above, caller's contract).
            let value = unsafe { request.input.cast::<u32>().read_unaligned() };
            set(socket, request.level, request.code, value).map(|()| 0)
        }
        kind if kind == WskGetOption => {
            if request.output.is_null() || request.output_size < 4 {
                return Err(STATUS_BUFFER_TOO_SMALL);
            }
            let value = get(socket, request.level, request.code)?;
            // SAFETY: at least 4 writable bytes (checked above, caller's contract).
            unsafe { request.output.cast::<u32>().write_unaligned(value) };
            Ok(4)
        }
        kind if kind == WskIoctl => Err(STATUS_NOT_SUPPORTED),
        _ => Err(STATUS_INVALID_PARAMETER),
    }
}

fn is_stream(socket: &Socket) -> bool {
    matches!(socket.kind, Kind::Listen | Kind::Connection)
}

fn set(socket: &Socket, level: ULONG, code: ULONG, value: u32) -> Result<(), NTSTATUS> {
    let on = value != 0;
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
        (SOL_SOCKET, SO_KEEPALIVE) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_keepalive(on).map_err(|e| status::from_io(&e))
        }
        (SOL_SOCKET, SO_SNDBUF) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_send_buffer_size(value as usize).map_err(|e| status::from_io(&e))?;
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
            host.set_recv_buffer_size(value as usize).map_err(|e| status::from_io(&e))?;
            state.recorded.receive_buffer = Some(value);
            Ok(())
        }
        (IPPROTO_TCP, TCP_NODELAY) if is_stream(socket) => {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_nodelay(on).map_err(|e| status::from_io(&e))
        }
        (IPPROTO_IPV6, IPV6_V6ONLY) if socket.family == Family::V6 => {
            if state.phase != Phase::Created {
                return Err(STATUS_INVALID_DEVICE_STATE);
            }
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            host.set_only_v6(on).map_err(|e| status::from_io(&e))
        }
        (wsk_sys::IPPROTO_IP, wsk_sys::IP_PKTINFO) | (IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO)
            if packet_info_applies(socket, level) =>
        {
            let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
            super::io::set_packet_info(host, socket.family, on).map_err(|e| status::from_io(&e))
        }
        _ => Err(STATUS_NOT_SUPPORTED),
    }
}

/// `IP_PKTINFO` applies to IPv4 datagram sockets, `IPV6_PKTINFO` to IPv6 ones.
fn packet_info_applies(socket: &Socket, level: ULONG) -> bool {
    socket.kind == Kind::Datagram && (socket.family == Family::V6) == (level == IPPROTO_IPV6)
}

fn get(socket: &Socket, level: ULONG, code: ULONG) -> Result<u32, NTSTATUS> {
    let state = lock(&socket.state);
    let host = || state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE);
    let io = |e: std::io::Error| status::from_io(&e);
    match (level, code) {
        (SOL_SOCKET, SO_REUSEADDR) => Ok(u32::from(state.recorded.reuse_address)),
        (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => Ok(u32::from(state.recorded.exclusive_address_use)),
        (SOL_SOCKET, SO_KEEPALIVE) => host()?.keepalive().map(u32::from).map_err(io),
        (SOL_SOCKET, SO_SNDBUF) => match state.recorded.send_buffer {
            Some(value) => Ok(value),
            None => host()?.send_buffer_size().map(|n| n as u32).map_err(io),
        },
        (SOL_SOCKET, SO_RCVBUF) => match state.recorded.receive_buffer {
            Some(value) => Ok(value),
            None => host()?.recv_buffer_size().map(|n| n as u32).map_err(io),
        },
        (IPPROTO_TCP, TCP_NODELAY) if is_stream(socket) => host()?.nodelay().map(u32::from).map_err(io),
        (IPPROTO_IPV6, IPV6_V6ONLY) if socket.family == Family::V6 => host()?.only_v6().map(u32::from).map_err(io),
        (wsk_sys::IPPROTO_IP, wsk_sys::IP_PKTINFO) | (IPPROTO_IPV6, wsk_sys::IPV6_PKTINFO)
            if packet_info_applies(socket, level) =>
        {
            super::io::packet_info(host()?, socket.family).map(u32::from).map_err(io)
        }
        _ => Err(STATUS_NOT_SUPPORTED),
    }
}
